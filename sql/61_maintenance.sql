-- Maintenance that runs itself: schedule_maintenance() / unschedule_maintenance()
-- over pg_cron, run_maintenance() (the jobs' body): idempotent, logged, one
-- run of a job at a time, never inside a transaction block.  (The lock
-- between sessions: test/isolation/specs/maintenance_lock.spec; the jobs
-- really running from pg_cron: test/t/060_maintenance_cron.pl.)
\set VERBOSITY default
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_cron;
\i sql/include/reference_schema.sql
TRUNCATE icpml.maintenance_runs, icpml.recommendations, icpml.bandit_state, icpml.account_feedback,
         icpml.feedback_events, icpml.bandit_queue;
RESET client_min_messages;
SET icpml.nthread = 1;

-- one call: the feedback job every minute, retraining at night (incremental
-- scoring too when this version has it); a superuser's jobs run as icpml_jobs
SELECT job_name, schedule, command FROM icpml.schedule_maintenance() ORDER BY 1;
SELECT jobname, schedule, command, username, database = current_database() AS here
FROM cron.job ORDER BY jobname;
-- again, with other schedules: the same jobs, replaced; NULL leaves a job out
SELECT job_name, schedule FROM icpml.schedule_maintenance(feedback_cron => '*/5 * * * *',
                                                         retrain_cron => NULL) ORDER BY 1;
SELECT jobname, schedule FROM cron.job ORDER BY jobname;

-- bad schedules, policies and roles: nothing changes
SELECT * FROM icpml.schedule_maintenance(feedback_cron => '* * *');
SELECT * FROM icpml.schedule_maintenance(retrain_cron => '@daily');
SELECT * FROM icpml.schedule_maintenance(deploy => 'sometimes');
SELECT * FROM icpml.schedule_maintenance(run_as => current_user);
SELECT * FROM icpml.schedule_maintenance(run_as => 'no_such_role');
SELECT jobname, schedule FROM cron.job ORDER BY jobname;

SELECT * FROM icpml.unschedule_maintenance() ORDER BY 1;
SELECT * FROM icpml.unschedule_maintenance() ORDER BY 1;
SELECT count(*) AS jobs_left FROM cron.job;

-- the feedback job: a list served nine days ago and one served now; the
-- online trigger is on, so the job expires and folds (it does not read the
-- interactions relation)
INSERT INTO account_signals (account_id, account_name, industry, engineering_role_count,
                             has_open_engineering_roles, total_open_roles, has_engineering_blog)
SELECT g, 'acct ' || g, 'saas', g, true, g, true FROM generate_series(1, 12) g;
SELECT icpml.score_all() > 0 AS scored;
SELECT icpml.enable_online_feedback();
SELECT count(*) AS listed FROM icpml.recommend_accounts('00000000-0000-0000-0000-0000000000e1', 4, policy => 'icp');
UPDATE icpml.recommendations SET served_at = served_at - interval '9 days';
SELECT count(*) AS listed FROM icpml.recommend_accounts('00000000-0000-0000-0000-0000000000e1', 4, policy => 'icp');
-- a 'running' row left by a run whose backend died is marked abandoned by the next run
INSERT INTO icpml.maintenance_runs (job, triggered_by, started_at)
VALUES ('feedback', 'schedule', clock_timestamp() - interval '1 hour');
CALL icpml.run_maintenance(job => 'feedback', triggered_by => 'manual');
-- idempotent: a second run finds nothing to do
CALL icpml.run_maintenance(job => 'feedback');
SELECT run_id, job, status, triggered_by, run_by = current_user AS by_me,
       result ->> 'expired' AS expired, result ->> 'attributed_in_batch' AS batch, error
FROM icpml.maintenance_runs ORDER BY run_id;
SELECT status, count(*) FROM icpml.recommendations GROUP BY status ORDER BY status;
SELECT n FROM icpml.bandit_state WHERE scope = 'global';
-- as the jobs' role (an administrator, not a superuser, without any right on
-- the interactions relation: the trigger is on)
SET ROLE icpml_jobs;
CALL icpml.run_maintenance(job => 'feedback');
RESET ROLE;
-- with the trigger off the job attributes in batch, which reads the
-- interactions relation as the job's role: without SELECT on it the run
-- fails, is recorded as failed, and the error reaches the caller
SELECT icpml.disable_online_feedback();
SET ROLE icpml_jobs;
CALL icpml.run_maintenance(job => 'feedback');
RESET ROLE;
GRANT SELECT ON user_interactions TO icpml_jobs;
SET ROLE icpml_jobs;
CALL icpml.run_maintenance(job => 'feedback');
RESET ROLE;
REVOKE SELECT ON user_interactions FROM icpml_jobs;
SELECT run_id, status, run_by, result ->> 'attributed_in_batch' AS batch, left(error, 50) AS error
FROM icpml.maintenance_runs WHERE run_by = 'icpml_jobs' ORDER BY run_id;
-- every run is in the history, with the training runs
SELECT log, job, status, duration >= interval '0' AS timed FROM icpml.maintenance_history
WHERE log = 'maintenance' ORDER BY run_id;

-- bad arguments, and no CALL inside a transaction block (nothing recorded)
CALL icpml.run_maintenance(job => 'vacuum');
CALL icpml.run_maintenance(job => 'feedback', triggered_by => 'cron');
BEGIN;
CALL icpml.run_maintenance(job => 'feedback');
ROLLBACK;
SELECT count(*) AS runs FROM icpml.maintenance_runs;
-- no advisory lock is left behind on any way out
SELECT count(*) AS locks_held FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
SELECT icpml.maintenance_lock_key('feedback') = hashtext('icpml.run_maintenance:feedback')::bigint AS lock_key;

-- the log keeps 30 days
UPDATE icpml.maintenance_runs SET started_at = started_at - interval '31 days', finished_at = finished_at - interval '31 days'
WHERE run_id = (SELECT min(run_id) FROM icpml.maintenance_runs);
CALL icpml.run_maintenance(job => 'feedback');
SELECT count(*) FILTER (WHERE started_at < now() - interval '30 days') AS older_than_30_days, count(*) AS runs
FROM icpml.maintenance_runs;

-- without pg_cron: a clear error
DROP EXTENSION pg_cron;
SELECT * FROM icpml.schedule_maintenance();
SELECT * FROM icpml.unschedule_maintenance();

SET client_min_messages = warning;
DROP VIEW account_features;
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
RESET client_min_messages;
TRUNCATE icpml.account_scores, icpml.recommendations, icpml.bandit_state, icpml.account_feedback,
         icpml.feedback_events, icpml.maintenance_runs, icpml.score_queue;
