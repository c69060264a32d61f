-- ---------------------------------------------------------------------------
-- Scheduled retraining over pg_cron, and the run log
--
-- pg_cron is optional: it is looked up when schedule_retraining() is called,
-- never when icpml is installed.  The job runs CALL icpml.run_training(...)
-- as the role it is scheduled for, so the feature relation is read with that
-- role's privileges: by default icpml_jobs, a role that is not a superuser,
-- when a superuser schedules (a superuser's job would run the code of every
-- view and function the relation reaches with a superuser's rights), and the
-- caller otherwise (pg_cron lets only superusers schedule for another role).
-- ---------------------------------------------------------------------------

-- One training at a time: the key train_icp_model holds (transaction-level)
-- while it trains, and the key run_training holds (session-level) across its
-- transactions.
CREATE FUNCTION icpml.training_lock_key()
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.hashtext('icpml.train_icp_model')::bigint $$;

COMMENT ON FUNCTION icpml.training_lock_key() IS
  'Advisory lock key held while a model trains: hashtext(''icpml.train_icp_model'')';

CREATE PROCEDURE icpml.run_training(deploy text DEFAULT 'best',
                                    triggered_by text DEFAULT 'schedule',
                                    retrain text DEFAULT 'always')
LANGUAGE plpgsql
-- No SET clause and no SECURITY DEFINER: either would forbid the COMMITs
-- below.  It runs as the caller, and every function, operator and type it
-- names is schema-qualified instead.
AS $$
DECLARE
  v_run_key   constant bigint := pg_catalog.hashtext('icpml.run_training')::bigint;
  v_run_id    bigint;
  v_result    pg_catalog.jsonb;
  v_version   integer;
  v_state     pg_catalog.text;
  v_message   pg_catalog.text;
  v_detail    pg_catalog.text;
  v_hint      pg_catalog.text;
  v_reason    pg_catalog.text;
  v_needed    boolean := true;
  v_why       pg_catalog.text;
  v_model     record;
  v_params    pg_catalog.jsonb;
  v_exclude   pg_catalog.text[];
BEGIN
  IF run_training.deploy IS NULL
     OR NOT run_training.deploy OPERATOR(pg_catalog.=) ANY (ARRAY['best', 'always', 'never']) THEN
    RAISE EXCEPTION 'unknown deploy policy "%"', run_training.deploy
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use ''best'' (deploy if cross-validation beats the deployed model, or the rules), ''always'' or ''never''.';
  END IF;
  IF run_training.triggered_by IS NULL
     OR NOT run_training.triggered_by OPERATOR(pg_catalog.=) ANY (ARRAY['manual', 'schedule']) THEN
    RAISE EXCEPTION 'triggered_by must be ''manual'' or ''schedule'', not "%"', run_training.triggered_by
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Leave it out for scheduled runs; pass triggered_by => ''manual'' otherwise.';
  END IF;
  IF run_training.retrain IS NULL
     OR NOT run_training.retrain OPERATOR(pg_catalog.=) ANY (ARRAY['always', 'needed']) THEN
    RAISE EXCEPTION 'retrain must be ''always'' or ''needed'', not "%"', run_training.retrain
      USING ERRCODE = 'invalid_parameter_value',
            HINT = '''needed'' trains only when icpml.retraining_needed() says so (drift, decay on new labels, or age).';
  END IF;

  -- Fails here, before any lock is taken, when called inside a transaction
  -- block (the COMMITs below need their own transactions).
  COMMIT;

  -- The run lock is held across this procedure's transactions (session
  -- level) and released on every way out; a backend that exits releases it.
  BEGIN
    IF NOT pg_catalog.pg_try_advisory_lock(v_run_key) THEN
      RAISE EXCEPTION 'another icpml.run_training() is in progress'
        USING ERRCODE = 'lock_not_available',
              HINT = 'See the row with status ''running'' in icpml.training_history; only one training runs at a time.';
    END IF;
    IF NOT pg_catalog.pg_try_advisory_xact_lock(icpml.training_lock_key()) THEN
      RAISE EXCEPTION 'a model is being trained in another session'
        USING ERRCODE = 'lock_not_available',
              HINT = 'Wait for that icpml.train_icp_model() call to finish; only one training runs at a time.';
    END IF;

    -- Nobody trains (both locks are ours): a 'running' row is left over
    -- from a run whose backend exited.
    UPDATE icpml.training_runs AS r
       SET status = 'abandoned', finished_at = pg_catalog.clock_timestamp(),
           error = 'the run ended without recording an outcome (its backend exited)'
     WHERE r.status OPERATOR(pg_catalog.=) 'running';

    INSERT INTO icpml.training_runs (triggered_by, deploy_policy)
    VALUES (run_training.triggered_by, run_training.deploy)
    RETURNING run_id INTO v_run_id;
  EXCEPTION
    WHEN OTHERS OR query_canceled THEN
      -- session-level advisory locks survive the rollback: release ours
      PERFORM pg_catalog.pg_advisory_unlock(v_run_key);
      RAISE;
  END;
  COMMIT;   -- the 'running' row is visible while the model trains

  BEGIN
    -- the deployed model's recipe is what retraining repeats
    SELECT m.version, m.spec, m.label_column, m.params INTO v_model
      FROM icpml.models AS m WHERE m.status OPERATOR(pg_catalog.=) 'deployed';

    -- whether to train at all
    IF run_training.retrain OPERATOR(pg_catalog.=) 'always' THEN
      v_reason := 'retrain => always';
    ELSIF v_model.version IS NULL THEN
      v_reason := 'retrain => needed: no model is deployed';
    ELSE
      BEGIN
        SELECT h.needed, h.reason INTO v_needed, v_why FROM icpml.retraining_needed(v_model.version) AS h;
        v_reason := pg_catalog.format('retrain => needed: %s (model_health of version %s)',
                                      CASE WHEN v_needed THEN v_why ELSE 'not needed: ' OPERATOR(pg_catalog.||) v_why END,
                                      v_model.version);
      EXCEPTION WHEN OTHERS THEN
        -- a health check that fails does not stop the schedule
        GET STACKED DIAGNOSTICS v_why = MESSAGE_TEXT;
        v_needed := true;
        v_reason := 'retrain => needed: the health check failed (' OPERATOR(pg_catalog.||) v_why OPERATOR(pg_catalog.||) '); trained';
      END;
    END IF;

    IF v_needed AND v_model.version IS NULL THEN
      SELECT pg_catalog.to_jsonb(t) INTO v_result
        FROM icpml.train_icp_model(deploy => run_training.deploy) AS t;
    ELSIF v_needed THEN
      -- the same columns as the deployed model: the relation's others are left out
      v_exclude := ARRAY(
        SELECT a.attname::pg_catalog.text FROM pg_catalog.pg_attribute AS a
        WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(v_model.spec OPERATOR(pg_catalog.->>) 'relation')
          AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
          AND a.attname::pg_catalog.text OPERATOR(pg_catalog.<>) (v_model.spec OPERATOR(pg_catalog.->>) 'key')
          AND a.attname::pg_catalog.text OPERATOR(pg_catalog.<>) v_model.label_column
          AND NOT EXISTS (SELECT FROM pg_catalog.jsonb_array_elements(v_model.spec OPERATOR(pg_catalog.->) 'columns') AS c
                          WHERE c OPERATOR(pg_catalog.->>) 'name' OPERATOR(pg_catalog.=) a.attname::pg_catalog.text)
        ORDER BY a.attnum);
      v_params := v_model.params OPERATOR(pg_catalog.-)
                  ARRAY['objective', 'tree_method', 'seed', 'n_rounds', 'folds', 'search']::pg_catalog.text[];
      IF COALESCE((v_model.params OPERATOR(pg_catalog.->>) 'search')::boolean, false) THEN
        v_params := v_params OPERATOR(pg_catalog.-) ARRAY['max_depth', 'eta']::pg_catalog.text[];
      END IF;
      SELECT pg_catalog.to_jsonb(t) INTO v_result
        FROM icpml.train_icp_model(
               relation => v_model.spec OPERATOR(pg_catalog.->>) 'relation',
               key_column => v_model.spec OPERATOR(pg_catalog.->>) 'key',
               label_column => v_model.label_column,
               exclude_columns => v_exclude,
               folds => COALESCE((v_model.params OPERATOR(pg_catalog.->>) 'folds')::integer, 5),
               n_rounds => COALESCE((v_model.params OPERATOR(pg_catalog.->>) 'n_rounds')::integer, 100),
               params => v_params,
               search => COALESCE((v_model.params OPERATOR(pg_catalog.->>) 'search')::boolean, false),
               seed => COALESCE((v_model.params OPERATOR(pg_catalog.->>) 'seed')::integer, 42),
               deploy => run_training.deploy,
               encoding => COALESCE(v_model.spec OPERATOR(pg_catalog.->) 'encoding', '{}'::pg_catalog.jsonb)) AS t;
    END IF;
  EXCEPTION
    WHEN OTHERS OR query_canceled THEN
      GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                              v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
  END;

  BEGIN
    IF v_state IS NULL AND NOT v_needed THEN
      UPDATE icpml.training_runs AS r
         SET status = 'skipped', finished_at = pg_catalog.clock_timestamp(), reason = v_reason
       WHERE r.run_id OPERATOR(pg_catalog.=) v_run_id;
    ELSIF v_state IS NULL THEN
      -- train_icp_model's row: version, deployed, deploy_reason, cv_* figures
      v_version := (v_result OPERATOR(pg_catalog.->>) 'version')::integer;
      UPDATE icpml.training_runs AS r
         SET status = 'succeeded', finished_at = pg_catalog.clock_timestamp(),
             version = v_version,
             deployed = (v_result OPERATOR(pg_catalog.->>) 'deployed')::boolean,
             deploy_reason = v_result OPERATOR(pg_catalog.->>) 'deploy_reason',
             metrics = COALESCE(
                         (SELECT m.metrics OPERATOR(pg_catalog.->) 'cv' FROM icpml.models AS m
                           WHERE m.version OPERATOR(pg_catalog.=) v_version),
                         v_result),
             reason = v_reason
       WHERE r.run_id OPERATOR(pg_catalog.=) v_run_id;
    ELSE
      UPDATE icpml.training_runs AS r
         SET status = 'failed', finished_at = pg_catalog.clock_timestamp(), reason = v_reason,
             error = v_message
       WHERE r.run_id OPERATOR(pg_catalog.=) v_run_id;
    END IF;
  EXCEPTION
    WHEN OTHERS OR query_canceled THEN
      PERFORM pg_catalog.pg_advisory_unlock(v_run_key);
      RAISE;
  END;
  COMMIT;
  PERFORM pg_catalog.pg_advisory_unlock(v_run_key);

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
REVOKE ALL ON PROCEDURE icpml.run_training(text, text, text) FROM PUBLIC;

COMMENT ON PROCEDURE icpml.run_training(text, text, text) IS
  'Train a model (the deployed model''s recipe: relation, key, label, columns, parameters, encoding; the defaults when none is deployed) with icpml.train_icp_model(deploy => ...) and record the run and why in icpml.training_runs; retrain => needed trains only when icpml.retraining_needed() says so (else the run is skipped); never overlaps another training; call outside a transaction block';

-- security_invoker: reading the view is reading icpml.training_runs as
-- oneself (grants and row-level security of the reader, not of the owner)
CREATE VIEW icpml.training_history WITH (security_invoker = true) AS
  SELECT r.run_id, r.started_at, r.finished_at,
         r.finished_at OPERATOR(pg_catalog.-) r.started_at AS duration,
         r.status, r.triggered_by, r.deploy_policy, r.run_by, r.version, r.deployed,
         r.deploy_reason,
         (r.metrics OPERATOR(pg_catalog.#>>) '{model,roc_auc}')::double precision AS cv_roc_auc,
         (r.metrics OPERATOR(pg_catalog.#>>) '{rules,roc_auc}')::double precision AS rules_cv_roc_auc,
         r.error, r.reason
  FROM icpml.training_runs AS r
  ORDER BY r.run_id DESC;

COMMENT ON VIEW icpml.training_history IS
  'Training runs, newest first: duration, outcome, model version, whether it was deployed, CV ROC AUC of the model and the rules, error';

-- An error with a hint unless pg_cron is installed in this database.
CREATE FUNCTION icpml.require_pg_cron()
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension AS x WHERE x.extname OPERATOR(pg_catalog.=) 'pg_cron')
     OR pg_catalog.to_regnamespace('cron') IS NULL THEN
    RAISE EXCEPTION 'pg_cron is not installed in database "%"', pg_catalog.current_database()
      USING ERRCODE = 'feature_not_supported',
            HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, restart PostgreSQL and run CREATE EXTENSION pg_cron; or call icpml.run_training() from your own scheduler.';
  END IF;
END
$$;

COMMENT ON FUNCTION icpml.require_pg_cron() IS
  'An error with a hint unless the pg_cron extension is installed in this database';

CREATE FUNCTION icpml.schedule_retraining(cron text DEFAULT '0 3 * * *',
                                          deploy text DEFAULT 'best',
                                          job_name text DEFAULT 'icpml-retrain',
                                          run_as name DEFAULT NULL,
                                          retrain text DEFAULT 'always')
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_fields pg_catalog.text[];
  v_super boolean := (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r
                      WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER);
  v_role pg_catalog.name;
  v_command pg_catalog.text;
BEGIN
  v_fields := pg_catalog.regexp_split_to_array(pg_catalog.btrim(COALESCE(schedule_retraining.cron, '')), '\s+');
  IF schedule_retraining.cron IS NULL OR pg_catalog.cardinality(v_fields) OPERATOR(pg_catalog.<>) 5
     OR v_fields[1] OPERATOR(pg_catalog.=) '' THEN
    RAISE EXCEPTION 'cron schedule "%" does not have five fields', schedule_retraining.cron
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A schedule is minute, hour, day of month, month and day of week, separated by spaces.',
            HINT = 'For example ''0 3 * * *'' runs every night at 03:00 (in the time zone pg_cron uses, GMT by default).';
  END IF;
  IF schedule_retraining.deploy IS NULL
     OR NOT schedule_retraining.deploy OPERATOR(pg_catalog.=) ANY (ARRAY['best', 'always', 'never']) THEN
    RAISE EXCEPTION 'unknown deploy policy "%"', schedule_retraining.deploy
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use ''best'' (deploy if cross-validation beats the deployed model, or the rules), ''always'' or ''never''.';
  END IF;
  IF schedule_retraining.retrain IS NULL
     OR NOT schedule_retraining.retrain OPERATOR(pg_catalog.=) ANY (ARRAY['always', 'needed']) THEN
    RAISE EXCEPTION 'retrain must be ''always'' or ''needed'', not "%"', schedule_retraining.retrain
      USING ERRCODE = 'invalid_parameter_value',
            HINT = '''needed'' trains only when icpml.retraining_needed() says so (drift, decay on new labels, or age).';
  END IF;
  v_command := pg_catalog.format('CALL icpml.run_training(deploy => %L%s)', schedule_retraining.deploy,
                                 CASE WHEN schedule_retraining.retrain OPERATOR(pg_catalog.=) 'needed'
                                      THEN ', retrain => ''needed''' ELSE '' END);
  IF schedule_retraining.job_name IS NULL OR schedule_retraining.job_name OPERATOR(pg_catalog.=) '' THEN
    RAISE EXCEPTION 'job_name must not be empty'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Leave it out to use ''icpml-retrain''.';
  END IF;

  -- who the job runs as: never a superuser (docs/security.md)
  v_role := COALESCE(schedule_retraining.run_as,
                     CASE WHEN v_super THEN 'icpml_jobs'::pg_catalog.name ELSE CURRENT_USER END);
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) v_role) THEN
    RAISE EXCEPTION 'role "%" does not exist', v_role
      USING ERRCODE = 'undefined_object',
            HINT = 'Scheduled jobs run as icpml_jobs by default; ALTER EXTENSION icpml UPDATE creates it.';
  END IF;
  IF (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) v_role) THEN
    RAISE EXCEPTION 'icpml''s scheduled jobs do not run as a superuser ("%")', v_role
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = 'A superuser''s job would run the code of every view, policy and function the feature relation reaches with a superuser''s rights.',
            HINT = 'Leave run_as out: the job then runs as icpml_jobs; grant it SELECT on the feature relation (docs/security.md).';
  END IF;
  IF v_role OPERATOR(pg_catalog.<>) CURRENT_USER AND NOT v_super THEN
    RAISE EXCEPTION 'only a superuser can schedule a job to run as another role ("%")', v_role
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'Leave run_as out: the job then runs as you.';
  END IF;
  IF NOT pg_catalog.has_function_privilege(v_role, 'icpml.run_training(text, text, text)', 'EXECUTE') THEN
    RAISE EXCEPTION 'role "%" may not run icpml.run_training()', v_role
      USING ERRCODE = 'insufficient_privilege',
            HINT = pg_catalog.format('Make it an administrator: SELECT icpml.grant_admin(%L).', v_role);
  END IF;
  PERFORM icpml.require_pg_cron();

  -- pg_cron replaces the role's job of the same name
  IF v_role OPERATOR(pg_catalog.=) CURRENT_USER THEN
    RETURN cron.schedule(schedule_retraining.job_name,
                         pg_catalog.array_to_string(v_fields, ' '), v_command);
  END IF;
  RETURN cron.schedule_in_database(schedule_retraining.job_name,
                                   pg_catalog.array_to_string(v_fields, ' '),
                                   v_command, pg_catalog.current_database(), v_role);
END
$$;

COMMENT ON FUNCTION icpml.schedule_retraining(text, text, text, name, text) IS
  'Schedule CALL icpml.run_training(deploy => ..., retrain => ...) with pg_cron (five-field cron schedule, GMT) to run as run_as (default: icpml_jobs when a superuser schedules, the caller otherwise; never a superuser); retrain => needed trains only when model_health says so; returns the job id; rescheduling a job name replaces it';

CREATE FUNCTION icpml.unschedule_retraining(job_name text DEFAULT 'icpml-retrain',
                                            run_as name DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_role pg_catalog.name;
  v_job bigint;
BEGIN
  PERFORM icpml.require_pg_cron();
  v_role := COALESCE(unschedule_retraining.run_as,
                     CASE WHEN (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r
                                WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
                          THEN 'icpml_jobs'::pg_catalog.name ELSE CURRENT_USER END);
  SELECT j.jobid INTO v_job FROM cron.job AS j
  WHERE j.jobname OPERATOR(pg_catalog.=) unschedule_retraining.job_name
    AND j.username OPERATOR(pg_catalog.=) v_role::pg_catalog.text;
  IF NOT FOUND THEN
    RAISE NOTICE 'no pg_cron job named "%" runs as %', unschedule_retraining.job_name, v_role;
    RETURN false;
  END IF;
  RETURN cron.unschedule(v_job);
END
$$;

COMMENT ON FUNCTION icpml.unschedule_retraining(text, name) IS
  'Remove the retraining job of that name that runs as run_as (default as for schedule_retraining); false (with a notice) when there is none';
