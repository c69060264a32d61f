-- ---------------------------------------------------------------------------
-- Maintenance that runs itself (docs/operations.md): one call schedules
-- every recurring job with pg_cron, each idempotent, logged and locked.
--
--   icpml-feedback  every minute  CALL icpml.run_maintenance('feedback'):
--                                 process_feedback() -- impressions past
--                                 their window expire, queued updates of the
--                                 shared bandit state are folded (and, when
--                                 the online trigger is off, interactions
--                                 are attributed)
--   icpml-scoring   every minute  CALL icpml.run_maintenance('scoring'):
--                                 score_changed() -- accounts changed since
--                                 the last run are scored
--   icpml-retrain   nightly       CALL icpml.run_training(...) (60_schedule.sql)
--
-- A run takes a session-level advisory lock per job (a second run of the
-- same job while one is in progress is logged as skipped), is recorded in
-- icpml.maintenance_runs (running -> succeeded / failed, abandoned when its
-- backend died) and commits between its steps.  The jobs run as icpml_jobs
-- when a superuser schedules them (never as a superuser), as the caller
-- otherwise.
-- ---------------------------------------------------------------------------

CREATE TABLE icpml.maintenance_runs (
  run_id        bigserial PRIMARY KEY,
  job           text NOT NULL CHECK (job IN ('feedback', 'scoring')),
  started_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  finished_at   timestamptz,
  status        text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'succeeded', 'failed', 'skipped', 'abandoned')),
  triggered_by  text NOT NULL CHECK (triggered_by IN ('manual', 'schedule')),
  run_by        name NOT NULL DEFAULT CURRENT_USER,
  pid           integer NOT NULL DEFAULT pg_catalog.pg_backend_pid(),
  result        jsonb,
  error         text,
  CHECK ((status = 'running') = (finished_at IS NULL))
);

CREATE INDEX maintenance_runs_job_idx ON icpml.maintenance_runs (job, started_at);

COMMENT ON TABLE icpml.maintenance_runs IS
  'One row per icpml.run_maintenance() call (scheduled or manual): the job, start, end, outcome (skipped: another run of the job held its lock), what it did (result) or the error; runs older than 30 days are deleted by the job''s next run';

-- The advisory lock key a job's runs hold (session level) while they run.
CREATE FUNCTION icpml.maintenance_lock_key(job text)
RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.hashtext('icpml.run_maintenance:' OPERATOR(pg_catalog.||) job)::bigint $$;

COMMENT ON FUNCTION icpml.maintenance_lock_key(text) IS
  'Advisory lock key a run of a maintenance job holds while it runs: hashtext(''icpml.run_maintenance:'' || job)';

CREATE PROCEDURE icpml.run_maintenance(job text, triggered_by text DEFAULT 'schedule')
LANGUAGE plpgsql
-- No SET clause and no SECURITY DEFINER: either would forbid the COMMITs
-- below.  It runs as the caller, and every function, operator and type it
-- names is schema-qualified instead.
AS $$
DECLARE
  v_key       bigint;
  v_run_id    bigint;
  v_result    pg_catalog.jsonb;
  v_online    boolean;
  v_state     pg_catalog.text;
  v_message   pg_catalog.text;
  v_detail    pg_catalog.text;
  v_hint      pg_catalog.text;
BEGIN
  IF run_maintenance.job IS NULL
     OR NOT run_maintenance.job OPERATOR(pg_catalog.=) ANY (ARRAY['feedback', 'scoring']) THEN
    RAISE EXCEPTION 'unknown maintenance job "%"', run_maintenance.job
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'The jobs are ''feedback'' (expiry and the bandit''s queued updates) and ''scoring'' (accounts changed since the last run); retraining is CALL icpml.run_training().';
  END IF;
  IF run_maintenance.triggered_by IS NULL
     OR NOT run_maintenance.triggered_by OPERATOR(pg_catalog.=) ANY (ARRAY['manual', 'schedule']) THEN
    RAISE EXCEPTION 'triggered_by must be ''manual'' or ''schedule'', not "%"', run_maintenance.triggered_by
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Leave it out for scheduled runs; pass triggered_by => ''manual'' otherwise.';
  END IF;
  v_key := icpml.maintenance_lock_key(run_maintenance.job);

  -- Fails here, before any lock is taken, when called inside a transaction
  -- block (the COMMITs below need their own transactions).
  COMMIT;

  -- One run of a job at a time: a second one is logged as skipped, not queued.
  IF NOT pg_catalog.pg_try_advisory_lock(v_key) THEN
    INSERT INTO icpml.maintenance_runs (job, triggered_by, status, finished_at, error)
    VALUES (run_maintenance.job, run_maintenance.triggered_by, 'skipped', pg_catalog.clock_timestamp(),
            'another run of this job was in progress');
    COMMIT;
    RETURN;
  END IF;

  -- The lock is held across this procedure's transactions (session level)
  -- and released on every way out; a backend that exits releases it.
  BEGIN
    -- the lock is ours: a 'running' row of this job is left over from a run
    -- whose backend exited
    UPDATE icpml.maintenance_runs AS r
       SET status = 'abandoned', finished_at = pg_catalog.clock_timestamp(),
           error = 'the run ended without recording an outcome (its backend exited)'
     WHERE r.job OPERATOR(pg_catalog.=) run_maintenance.job AND r.status OPERATOR(pg_catalog.=) 'running';
    INSERT INTO icpml.maintenance_runs (job, triggered_by)
    VALUES (run_maintenance.job, run_maintenance.triggered_by)
    RETURNING run_id INTO v_run_id;
  EXCEPTION
    WHEN OTHERS OR query_canceled THEN
      PERFORM pg_catalog.pg_advisory_unlock(v_key);
      RAISE;
  END;
  COMMIT;   -- the 'running' row is visible while the job runs

  BEGIN
    IF run_maintenance.job OPERATOR(pg_catalog.=) 'feedback' THEN
      -- with the online trigger on, interactions are attributed as they
      -- arrive: expire and fold only (the job then needs no right on the
      -- interactions relation); without it, attribute in batch too
      v_online := EXISTS (
        SELECT FROM pg_catalog.pg_trigger AS t
        WHERE t.tgname OPERATOR(pg_catalog.=) 'icpml_feedback'
          AND t.tgrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(
                COALESCE(pg_catalog.current_setting('icpml.interactions_relation', true),
                         'public.user_interactions')));
      SELECT pg_catalog.to_jsonb(f) OPERATOR(pg_catalog.||)
             pg_catalog.jsonb_build_object('attributed_in_batch', NOT v_online)
        INTO v_result
        FROM icpml.process_feedback(attribute => NOT v_online) AS f;
    ELSE
      v_result := icpml.score_changed();
    END IF;
  EXCEPTION
    WHEN OTHERS OR query_canceled THEN
      GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                              v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
  END;

  BEGIN
    UPDATE icpml.maintenance_runs AS r
       SET status = CASE WHEN v_state IS NULL THEN 'succeeded' ELSE 'failed' END,
           finished_at = pg_catalog.clock_timestamp(), result = v_result, error = v_message
     WHERE r.run_id OPERATOR(pg_catalog.=) v_run_id;
    -- the log keeps 30 days
    DELETE FROM icpml.maintenance_runs AS r
     WHERE r.job OPERATOR(pg_catalog.=) run_maintenance.job
       AND r.started_at OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) '30 days'::pg_catalog.interval);
  EXCEPTION
    WHEN OTHERS OR query_canceled THEN
      PERFORM pg_catalog.pg_advisory_unlock(v_key);
      RAISE;
  END;
  COMMIT;
  PERFORM pg_catalog.pg_advisory_unlock(v_key);

  -- A failure is recorded, then reported to the caller too (pg_cron shows
  -- it in cron.job_run_details).
  IF v_state IS NOT NULL THEN
    IF v_detail OPERATOR(pg_catalog.<>) '' AND v_hint OPERATOR(pg_catalog.<>) '' THEN
      RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message, DETAIL = v_detail, HINT = v_hint;
    ELSIF v_detail OPERATOR(pg_catalog.<>) '' THEN
      RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message, DETAIL = v_detail;
    ELSIF v_hint OPERATOR(pg_catalog.<>) '' THEN
      RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message, HINT = v_hint;
    ELSE
      RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message;
    END IF;
  END IF;
END
$$;

-- REVOKE ... ON ALL FUNCTIONS (99_privileges.sql) does not cover procedures.
REVOKE ALL ON PROCEDURE icpml.run_maintenance(text, text) FROM PUBLIC;

COMMENT ON PROCEDURE icpml.run_maintenance(text, text) IS
  'Run one maintenance job now and record it in icpml.maintenance_runs: feedback (process_feedback: expiry, the queued bandit updates, batch attribution when the online trigger is off) or scoring (score_changed); one run of a job at a time (a second is logged as skipped); call outside a transaction block';

-- Who a scheduled job runs as: run_as, or icpml_jobs when a superuser
-- schedules, the caller otherwise; never a superuser (docs/security.md).
-- An error with a hint when that role cannot be used.
CREATE FUNCTION icpml.job_role(run_as name DEFAULT NULL)
RETURNS name
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_super boolean := (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r
                      WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER);
  v_role pg_catalog.name;
BEGIN
  v_role := COALESCE(job_role.run_as,
                     CASE WHEN v_super THEN 'icpml_jobs'::pg_catalog.name ELSE CURRENT_USER END);
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) v_role) THEN
    RAISE EXCEPTION 'role "%" does not exist', v_role
      USING ERRCODE = 'undefined_object',
            HINT = 'Scheduled jobs run as icpml_jobs by default; ALTER EXTENSION icpml UPDATE creates it.';
  END IF;
  IF (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) v_role) THEN
    RAISE EXCEPTION 'icpml''s scheduled jobs do not run as a superuser ("%")', v_role
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = 'A superuser''s job would run the code of every view, policy and function the user''s relations reach with a superuser''s rights.',
            HINT = 'Leave run_as out: the jobs then run as icpml_jobs; grant it SELECT on the relations they read (docs/security.md).';
  END IF;
  IF v_role OPERATOR(pg_catalog.<>) CURRENT_USER AND NOT v_super THEN
    RAISE EXCEPTION 'only a superuser can schedule a job to run as another role ("%")', v_role
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'Leave run_as out: the jobs then run as you.';
  END IF;
  RETURN v_role;
END
$$;

COMMENT ON FUNCTION icpml.job_role(name) IS
  'The role a scheduled job runs as: run_as, else icpml_jobs when a superuser schedules, else the caller; an error when it does not exist, is a superuser, or is another role and the caller is not a superuser';

CREATE FUNCTION icpml.schedule_maintenance(feedback_cron text DEFAULT '* * * * *',
                                           scoring_cron text DEFAULT '* * * * *',
                                           retrain_cron text DEFAULT '0 3 * * *',
                                           deploy text DEFAULT 'best',
                                           run_as name DEFAULT NULL)
RETURNS TABLE(job_name text, schedule text, command text, jobid bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_role pg_catalog.name;
  v_job pg_catalog.text;
  v_cron pg_catalog.text;
  v_command pg_catalog.text;
  v_fields pg_catalog.text[];
  v_id bigint;
  v_message pg_catalog.text;
BEGIN
  -- every schedule is checked before anything is scheduled
  FOREACH v_cron IN ARRAY ARRAY[schedule_maintenance.feedback_cron, schedule_maintenance.scoring_cron,
                                schedule_maintenance.retrain_cron] LOOP
    CONTINUE WHEN v_cron IS NULL;
    v_fields := pg_catalog.regexp_split_to_array(pg_catalog.btrim(v_cron), '\s+');
    IF pg_catalog.cardinality(v_fields) OPERATOR(pg_catalog.<>) 5 OR v_fields[1] OPERATOR(pg_catalog.=) '' THEN
      RAISE EXCEPTION 'cron schedule "%" does not have five fields', v_cron
        USING ERRCODE = 'invalid_parameter_value',
              DETAIL = 'A schedule is minute, hour, day of month, month and day of week, separated by spaces.',
              HINT = 'For example ''* * * * *'' runs every minute, ''0 3 * * *'' every night at 03:00 (GMT by default); NULL leaves a job out.';
    END IF;
  END LOOP;
  IF schedule_maintenance.deploy IS NULL
     OR NOT schedule_maintenance.deploy OPERATOR(pg_catalog.=) ANY (ARRAY['best', 'always', 'never']) THEN
    RAISE EXCEPTION 'unknown deploy policy "%"', schedule_maintenance.deploy
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use ''best'' (deploy if cross-validation beats the deployed model, or the rules), ''always'' or ''never''.';
  END IF;
  v_role := icpml.job_role(schedule_maintenance.run_as);
  IF NOT pg_catalog.has_function_privilege(v_role, 'icpml.run_maintenance(text, text)', 'EXECUTE') THEN
    RAISE EXCEPTION 'role "%" may not run icpml.run_maintenance()', v_role
      USING ERRCODE = 'insufficient_privilege',
            HINT = pg_catalog.format('Make it an administrator: SELECT icpml.grant_admin(%L).', v_role);
  END IF;
  PERFORM icpml.require_pg_cron();

  -- the two jobs of this file; NULL: not scheduled (an existing one removed)
  FOREACH v_job IN ARRAY ARRAY['feedback', 'scoring'] LOOP
    v_cron := CASE v_job WHEN 'feedback' THEN schedule_maintenance.feedback_cron
                         ELSE schedule_maintenance.scoring_cron END;
    v_command := pg_catalog.format('CALL icpml.run_maintenance(job => %L)', v_job);
    IF v_job OPERATOR(pg_catalog.=) 'scoring' AND v_cron IS NOT NULL THEN
      -- score_changed() scores the accounts the queue triggers saw change:
      -- put them on the tables behind the scored relation (idempotent);
      -- a caller who does not own them is told, the job scores deploys
      BEGIN
        -- the library defines icpml.feature_relation: load it first (a new
        -- session may not have called any of its functions yet)
        PERFORM icpml.normal_sf(0);
        PERFORM FROM icpml.enable_score_queue();
      EXCEPTION
        WHEN OTHERS THEN
          GET STACKED DIAGNOSTICS v_message = MESSAGE_TEXT;
          RAISE NOTICE 'changed accounts are not queued for icpml-scoring: %', v_message
            USING HINT = 'Run SELECT * FROM icpml.enable_score_queue() as the owner of the feature tables; until then the job only follows deploys.';
      END;
    END IF;
    IF v_cron IS NULL THEN
      PERFORM icpml.unschedule_job('icpml-' OPERATOR(pg_catalog.||) v_job, v_role);
      CONTINUE;
    END IF;
    v_cron := pg_catalog.array_to_string(pg_catalog.regexp_split_to_array(pg_catalog.btrim(v_cron), '\s+'), ' ');
    -- pg_cron replaces the role's job of the same name
    IF v_role OPERATOR(pg_catalog.=) CURRENT_USER THEN
      v_id := cron.schedule('icpml-' OPERATOR(pg_catalog.||) v_job, v_cron, v_command);
    ELSE
      v_id := cron.schedule_in_database('icpml-' OPERATOR(pg_catalog.||) v_job, v_cron, v_command,
                                        pg_catalog.current_database(), v_role);
    END IF;
    job_name := 'icpml-' OPERATOR(pg_catalog.||) v_job;
    schedule := v_cron;
    command := v_command;
    jobid := v_id;
    RETURN NEXT;
  END LOOP;

  -- retraining: schedule_retraining's job
  IF schedule_maintenance.retrain_cron IS NULL THEN
    PERFORM icpml.unschedule_job('icpml-retrain', v_role);
  ELSE
    jobid := icpml.schedule_retraining(cron => schedule_maintenance.retrain_cron,
                                       deploy => schedule_maintenance.deploy,
                                       run_as => schedule_maintenance.run_as);
    SELECT j.jobname, j.schedule, j.command INTO job_name, schedule, command
    FROM cron.job AS j WHERE j.jobid OPERATOR(pg_catalog.=) schedule_maintenance.jobid;
    RETURN NEXT;
  END IF;
END
$$;

COMMENT ON FUNCTION icpml.schedule_maintenance(text, text, text, text, name) IS
  'Schedule everything icpml needs to run by itself with pg_cron (five-field schedules, GMT): icpml-feedback (expiry and the bandit''s queued updates, every minute), icpml-scoring (accounts changed since the last run, every minute), icpml-retrain (nightly, deploy policy deploy); NULL leaves a job out (and removes it); run_as as for schedule_retraining; calling it again replaces the jobs; returns them';

-- Remove a job of that name that runs as the role; false when there is none.
CREATE FUNCTION icpml.unschedule_job(job_name text, run_as name)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_job bigint;
BEGIN
  PERFORM icpml.require_pg_cron();
  SELECT j.jobid INTO v_job FROM cron.job AS j
  WHERE j.jobname OPERATOR(pg_catalog.=) unschedule_job.job_name
    AND j.username OPERATOR(pg_catalog.=) unschedule_job.run_as::pg_catalog.text;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  RETURN cron.unschedule(v_job);
END
$$;

COMMENT ON FUNCTION icpml.unschedule_job(text, name) IS
  'Remove the pg_cron job of that name that runs as run_as; false when there is none';

CREATE FUNCTION icpml.unschedule_maintenance(run_as name DEFAULT NULL)
RETURNS TABLE(job_name text, removed boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_role pg_catalog.name;
BEGIN
  PERFORM icpml.require_pg_cron();
  v_role := COALESCE(unschedule_maintenance.run_as,
                     CASE WHEN (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r
                                WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
                          THEN 'icpml_jobs'::pg_catalog.name ELSE CURRENT_USER END);
  FOREACH job_name IN ARRAY ARRAY['icpml-feedback', 'icpml-scoring', 'icpml-retrain'] LOOP
    removed := icpml.unschedule_job(job_name, v_role);
    RETURN NEXT;
  END LOOP;
END
$$;

COMMENT ON FUNCTION icpml.unschedule_maintenance(name) IS
  'Remove the jobs schedule_maintenance() created (icpml-feedback, icpml-scoring, icpml-retrain) that run as run_as (default as for schedule_maintenance); says which existed';

-- Every run of every job, newest first: maintenance_runs and the training
-- runs.  security_invoker: reading it is reading the two tables as oneself.
CREATE VIEW icpml.maintenance_history WITH (security_invoker = true) AS
  SELECT 'maintenance'::pg_catalog.text AS log, r.run_id, r.job, r.started_at, r.finished_at,
         r.finished_at OPERATOR(pg_catalog.-) r.started_at AS duration,
         r.status, r.triggered_by, r.run_by, r.result, r.error
  FROM icpml.maintenance_runs AS r
  UNION ALL
  SELECT 'training', t.run_id, 'retrain', t.started_at, t.finished_at,
         t.finished_at OPERATOR(pg_catalog.-) t.started_at,
         t.status, t.triggered_by, t.run_by,
         pg_catalog.jsonb_build_object('version', t.version, 'deployed', t.deployed,
                                       'deploy_reason', t.deploy_reason),
         t.error
  FROM icpml.training_runs AS t
  ORDER BY 4 DESC, 2 DESC;

COMMENT ON VIEW icpml.maintenance_history IS
  'Every run of the scheduled jobs, newest first: feedback and scoring (icpml.maintenance_runs) and retraining (icpml.training_runs)';
