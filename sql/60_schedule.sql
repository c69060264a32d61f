-- Scheduled retraining over pg_cron, and the log of training runs.
\set VERBOSITY default
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_cron;
\i sql/include/reference_generator.sql
TRUNCATE icpml.training_runs, icpml.models, icpml.deployments RESTART IDENTITY;
RESET client_min_messages;
SET icpml.nthread = 1;

-- schedule: a pg_cron job that calls icpml.run_training; a superuser's job
-- runs as icpml_jobs (an administrator that is not a superuser)
SELECT icpml.schedule_retraining() > 0 AS scheduled;
SELECT jobname, schedule, command, database = current_database() AS here,
       username, active
FROM cron.job ORDER BY jobname;
SELECT rolname, rolsuper, rolcanlogin, rolbypassrls, pg_has_role(oid, 'icpml_admin', 'MEMBER') AS administrator
FROM pg_roles WHERE rolname = 'icpml_jobs';
-- the same name again replaces the job; another name adds one
SELECT icpml.schedule_retraining(cron => '30 2 * * 1', deploy => 'always') > 0 AS rescheduled;
SELECT icpml.schedule_retraining(cron => ' */15  *  * * * ', deploy => 'never',
                                 job_name => 'icpml-retrain-often') > 0 AS scheduled;
SELECT jobname, schedule, command FROM cron.job ORDER BY jobname;

-- five-field schedules and known policies only
SELECT icpml.schedule_retraining(cron => '0 3 * *');
SELECT icpml.schedule_retraining(cron => '@daily');
SELECT icpml.schedule_retraining(cron => '0 3 * * * *');
SELECT icpml.schedule_retraining(cron => NULL);
SELECT icpml.schedule_retraining(cron => '61 3 * * *');
SELECT icpml.schedule_retraining(deploy => 'sometimes');
SELECT icpml.schedule_retraining(job_name => '');

SELECT icpml.unschedule_retraining();
SELECT icpml.unschedule_retraining(job_name => 'icpml-retrain-often');
SELECT icpml.unschedule_retraining();
SELECT count(*) AS jobs_left FROM cron.job;

-- never as a superuser; only a superuser schedules for another role; the
-- role must be allowed to run the training
SELECT icpml.schedule_retraining(run_as => current_user);
SELECT icpml.schedule_retraining(run_as => 'no_such_role');
CREATE ROLE icpml_sched_admin LOGIN;
CREATE ROLE icpml_sched_nobody LOGIN;
SELECT icpml.grant_admin('icpml_sched_admin');
SELECT icpml.schedule_retraining(run_as => 'icpml_sched_nobody');
GRANT USAGE ON SCHEMA cron TO icpml_sched_admin;
SET ROLE icpml_sched_admin;
SELECT icpml.schedule_retraining(run_as => 'icpml_jobs');
SELECT icpml.schedule_retraining(job_name => 'mine') > 0 AS scheduled_as_myself;
SELECT jobname, username FROM cron.job ORDER BY jobname;
SELECT icpml.unschedule_retraining(job_name => 'mine');
RESET ROLE;
SELECT count(*) AS jobs_left FROM cron.job;
REVOKE ALL ON SCHEMA cron FROM icpml_sched_admin;
REVOKE ALL ON ALL TABLES IN SCHEMA icpml FROM icpml_sched_admin;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA icpml FROM icpml_sched_admin;
REVOKE ALL ON ALL ROUTINES IN SCHEMA icpml FROM icpml_sched_admin;
REVOKE ALL ON SCHEMA icpml FROM icpml_sched_admin;
DROP ROLE icpml_sched_admin, icpml_sched_nobody;

-- run_training records each run.  Too little data: the run fails, the
-- failure is recorded, and the error still reaches the caller.
SELECT * FROM icpml_ref.generate(accounts => 30, users => 2, interactions => 50, seed => 3,
                                 as_of => '2026-01-01 00:00+00');
CALL icpml.run_training(triggered_by => 'manual');
SELECT run_id, status, triggered_by, deploy_policy, version, deployed, error,
       finished_at >= started_at AS timed
FROM icpml.training_history;

-- enough data: the run succeeds, stores a version and deploys it (best: it
-- beats the rules on the same folds)
SELECT * FROM icpml_ref.generate(accounts => 2000, users => 5, interactions => 5000, seed => 42,
                                 as_of => '2026-01-01 00:00+00');
CALL icpml.run_training();
SELECT run_id, status, triggered_by, deploy_policy, version, deployed, deploy_reason ~ '^policy best: CV ROC AUC' AS compared,
       cv_roc_auc > rules_cv_roc_auc AS beats_rules, error
FROM icpml.training_history WHERE run_id = 2;
SELECT r.metrics -> 'model' ->> 'roc_auc' = m.metrics -> 'cv' -> 'model' ->> 'roc_auc' AS same_metrics
FROM icpml.training_runs r JOIN icpml.models m USING (version);
SELECT version, status FROM icpml.list_models();

-- a 'running' row whose backend went away is marked abandoned by the next run
INSERT INTO icpml.training_runs (triggered_by, deploy_policy, started_at)
VALUES ('schedule', 'best', clock_timestamp() - interval '1 hour');
CALL icpml.run_training(deploy => 'never', triggered_by => 'manual');
SELECT run_id, status, triggered_by, deploy_policy, version, deployed,
       regexp_replace(deploy_reason, '[0-9]\.[0-9]{4}', 'x.xxxx', 'g') AS deploy_reason, error
FROM icpml.training_history ORDER BY run_id;

-- the jobs' role trains with its own privileges: the feature relation must
-- be granted to it (how a superuser's scheduled training reads relations
-- that other roles own, without a superuser's rights: docs/security.md)
SET ROLE icpml_jobs;
CALL icpml.run_training(deploy => 'never');
RESET ROLE;
GRANT SELECT ON account_features, account_signals, research_runs TO icpml_jobs;
SET ROLE icpml_jobs;
CALL icpml.run_training(deploy => 'never');
RESET ROLE;
REVOKE SELECT ON account_features, account_signals, research_runs FROM icpml_jobs;
SELECT run_id, status, run_by, version, deployed, left(error, 45) AS error
FROM icpml.training_history WHERE run_by = 'icpml_jobs' ORDER BY run_id;

-- bad arguments, and no CALL inside a transaction block (nothing recorded)
CALL icpml.run_training(deploy => 'sometimes');
CALL icpml.run_training(triggered_by => 'cron');
BEGIN;
CALL icpml.run_training();
ROLLBACK;
SELECT count(*) AS runs FROM icpml.training_runs;

-- no advisory lock is left behind on any way out (this session holds none)
SELECT count(*) AS locks_held FROM pg_locks
WHERE locktype = 'advisory' AND pid = pg_backend_pid();
SELECT icpml.training_lock_key() = hashtext('icpml.train_icp_model')::bigint AS lock_key;

-- without pg_cron: a clear error
DROP EXTENSION pg_cron;
SELECT icpml.schedule_retraining();
SELECT icpml.unschedule_retraining();

SET client_min_messages = warning;
TRUNCATE icpml.training_runs, icpml.models, icpml.deployments RESTART IDENTITY;
DROP SCHEMA icpml_ref CASCADE;
DROP VIEW account_features;
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
