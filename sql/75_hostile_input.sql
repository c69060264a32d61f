-- Hostile and careless input, each answered with a clear error and nothing
-- half-written: the recommender's settings and state out of range (NaN is
-- never served or logged), a fresh experiment's results, icpml's SQL
-- functions in a session that has not loaded the library, the resource
-- settings, icpml's tables granted by mistake (row-level security), stored
-- relation names that are not names, interaction columns of user-defined
-- types, and batch feedback reading the interactions as the caller.  Each
-- of these misbehaved on icpml 0.3.0.
\set VERBOSITY terse
SET icpml.nthread = 1;
\i sql/include/reference_generator.sql
SET client_min_messages = warning;
TRUNCATE icpml.recommendations, icpml.bandit_state, icpml.account_feedback, icpml.account_scores,
         icpml.models, icpml.deployments RESTART IDENTITY;
RESET client_min_messages;
SELECT sum(row_count) > 0 AS generated
FROM icpml_ref.generate(accounts => 300, users => 2, interactions => 600, seed => 9,
                        as_of => '2026-01-01 00:00+00');
SELECT icpml.score_all() > 0 AS scored;

-- 1. settings: finite and in range, or refused (0.3.0 took v = 1e308 and
--    then served and logged NaN scores)
CREATE FUNCTION pg_temp.try_setting(col text, val text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('UPDATE icpml.bandit_settings SET %I = %L', col, val);
  RETURN 'accepted';
EXCEPTION WHEN check_violation OR numeric_value_out_of_range THEN
  RETURN 'refused';
END
$$;
SELECT col, string_agg(val || ' ' || pg_temp.try_setting(col, val), ', ' ORDER BY ord) AS outcomes
FROM unnest(ARRAY['alpha', 'v', 'lambda', 'icp_prior', 'gamma', 'personalization_prior', 'epsilon',
                  'personalization_weight', 'fatigue_decay', 'position_bias']) WITH ORDINALITY AS c(col, cord),
     unnest(ARRAY['1e308', 'NaN', 'Infinity', '-Infinity', '-1', '0.5']) WITH ORDINALITY AS v(val, ord)
GROUP BY col, cord ORDER BY cord;
UPDATE icpml.bandit_settings SET alpha = DEFAULT, v = DEFAULT, lambda = DEFAULT, icp_prior = DEFAULT,
  gamma = DEFAULT, personalization_prior = DEFAULT, epsilon = DEFAULT, personalization_weight = DEFAULT,
  fatigue_decay = DEFAULT, position_bias = DEFAULT;
UPDATE icpml.reward_map SET reward = 1e308 WHERE interaction_type = 'meeting';
UPDATE icpml.reward_map SET reward = 'NaN' WHERE interaction_type = 'meeting';
SELECT interaction_type, reward FROM icpml.reward_map WHERE interaction_type = 'meeting';

-- the recommender checks again what it reads: with the constraint gone
-- (a superuser's doing), 1e308 is an error, not a NaN served and logged
BEGIN;
ALTER TABLE icpml.bandit_settings DROP CONSTRAINT bandit_settings_v_check;
UPDATE icpml.bandit_settings SET v = 1e308;
SELECT count(*) FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000a', 5,
                                              policy => 'thompson', seed => 1);
ROLLBACK;
-- nor a state with NaN in it
BEGIN;
SELECT count(*) AS listed FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000a', 5,
                                                        policy => 'linucb', seed => 1);
INSERT INTO icpml.bandit_state (scope, dim, a, b, chol, n, version)
SELECT 'global', 64, a, b, chol, 1, 1
FROM (SELECT array_agg(CASE WHEN i % 65 = 0 THEN 1 ELSE 0 END::float8) AS a,
             array_agg(CASE WHEN i % 65 = 0 THEN 1 ELSE 0 END::float8) AS chol
      FROM generate_series(0, 64 * 64 - 1) i) m,
     (SELECT array_fill('NaN'::float8, ARRAY[64]) AS b) bb
ON CONFLICT (scope) DO UPDATE SET b = excluded.b;
SELECT count(*) FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000a', 5,
                                              policy => 'linucb', seed => 1);
ROLLBACK;
SELECT count(*) AS logged, count(*) FILTER (WHERE score = 'NaN' OR expected_reward = 'NaN') AS nan_logged
FROM icpml.recommendations;

-- 2. a fresh experiment's results: rows, no division by zero (0.3.0: 22012)
SELECT name FROM icpml.start_experiment('fresh', ARRAY['linucb', 'greedy']);
SELECT variant, users, impressions, reward_per_impression, srm_p_value FROM icpml.experiment_results('fresh');
SELECT (icpml.stop_experiment('fresh')).status;
DELETE FROM icpml.experiments;

-- 3. icpml's SQL functions in a session that has not loaded the library
--    (0.3.0: unrecognized configuration parameter, 42704)
\c -
SELECT count(*) AS icpml_loaded FROM pg_settings WHERE name LIKE 'icpml.%';
SELECT icpml.enable_online_feedback();
\c -
SELECT icpml.disable_online_feedback();
\c -
SELECT industry_slots IS NOT NULL AS vocabulary FROM icpml.set_bandit_vocabulary();
\c -
SET icpml.interactions_relation = 'public.no_such_relation';
SELECT icpml.enable_online_feedback();
RESET icpml.interactions_relation;

-- 4. the resource settings: administrators and superusers only (0.3.0: any
--    session could raise them)
\set VERBOSITY terse
CREATE ROLE icpml_hi_rep;
CREATE ROLE icpml_hi_admin;
SELECT icpml.grant_scoring('icpml_hi_rep');
SELECT icpml.grant_admin('icpml_hi_admin');
SELECT icpml.prewarm() IS NOT NULL AS loaded;
SET ROLE icpml_hi_rep;
SET icpml.max_batch_size = 100000000;
SET icpml.nthread = 64;
SELECT set_config('icpml.nthread', '8', false);
SHOW icpml.max_batch_size;
RESET ROLE;
SET ROLE icpml_hi_admin;
SET icpml.nthread = 2;
SHOW icpml.nthread;
RESET icpml.nthread;
RESET ROLE;
SELECT name, context FROM pg_settings WHERE name IN ('icpml.nthread', 'icpml.max_batch_size') ORDER BY 1;

-- 5. icpml's tables granted by mistake show no rows (row-level security:
--    0.3.0 had it off); an administrator sees them; the run log's view reads
--    as its reader
GRANT USAGE ON SCHEMA icpml TO icpml_hi_rep;
GRANT SELECT ON icpml.bandit_settings, icpml.reward_map, icpml.account_scores, icpml.training_runs,
                icpml.training_history TO icpml_hi_rep;
INSERT INTO icpml.training_runs (triggered_by, deploy_policy, status, finished_at)
VALUES ('manual', 'never', 'failed', now());
SET ROLE icpml_hi_rep;
SELECT (SELECT count(*) FROM icpml.bandit_settings) AS settings_rows,
       (SELECT count(*) FROM icpml.reward_map) AS reward_rows,
       (SELECT count(*) FROM icpml.account_scores) AS score_rows,
       (SELECT count(*) FROM icpml.training_history) AS history_rows;
UPDATE icpml.bandit_settings SET alpha = 1;
RESET ROLE;
SET ROLE icpml_hi_admin;
SELECT (SELECT count(*) FROM icpml.bandit_settings) AS settings_rows,
       (SELECT count(*) > 0 FROM icpml.account_scores) AS scores_visible,
       (SELECT count(*) FROM icpml.training_history) AS history_rows;
RESET ROLE;
REVOKE ALL ON ALL TABLES IN SCHEMA icpml FROM icpml_hi_rep;
DELETE FROM icpml.training_runs;

-- 6. stored relation names are names: refused on write, and resolved (not
--    pasted) on read when a superuser forced one past the trigger
UPDATE icpml.models SET relation = 'x; DROP TABLE account_signals';
SELECT version FROM icpml.train_icp_model(n_rounds => 5, folds => 3, deploy => 'always');
UPDATE icpml.models SET relation = 'public.account_features; DROP TABLE account_signals' WHERE version = 1;
UPDATE icpml.models SET spec = jsonb_set(spec, '{relation}', '"account_features WHERE false UNION SELECT 1"') WHERE version = 1;
BEGIN;
ALTER TABLE icpml.models DISABLE TRIGGER models_guard;
UPDATE icpml.models SET spec = jsonb_set(spec, '{relation}', '"account_features f, pg_sleep(0) x"') WHERE version = 1;
SELECT * FROM icpml.icp_score(5);
ROLLBACK;
BEGIN;
ALTER TABLE icpml.models DISABLE TRIGGER models_guard;
UPDATE icpml.models SET spec = jsonb_set(spec, '{relation}', '"public.no_such_relation"') WHERE version = 1;
SELECT * FROM icpml.icp_score(5);
ROLLBACK;
SELECT model, model_version FROM icpml.icp_score(5);
SELECT icpml.is_relation_name(n) AS ok, n
FROM unnest(ARRAY['public.account_features', 'account_features', '"My Schema"."My View"', 'a.b.c',
                  'a.b.c.d', '', 'x; drop table y', 'f WHERE true', '"unterminated']) AS n;

-- 7. interaction columns of user-defined types: the feedback trigger reads
--    them as the extension owner, so they are refused
CREATE TYPE shady_id AS (v bigint);
CREATE TABLE shady_interactions (interaction_id bigint, user_id uuid, account_id shady_id,
                                 interaction_type text, created_at timestamptz);
SET icpml.interactions_relation = 'shady_interactions';
SELECT icpml.enable_online_feedback();
CREATE TRIGGER icpml_feedback AFTER INSERT ON shady_interactions REFERENCING NEW TABLE AS icpml_new
  FOR EACH STATEMENT EXECUTE FUNCTION icpml.feedback_trigger();
INSERT INTO shady_interactions VALUES (1, '00000000-0000-0000-0000-00000000000a', ROW(1), 'contact', now());
RESET icpml.interactions_relation;
DROP TABLE shady_interactions;
DROP TYPE shady_id;

-- 8. batch feedback reads the interactions as its caller: an administrator
--    without SELECT on them is refused, not served by the owner's rights
SET ROLE icpml_hi_admin;
SELECT * FROM icpml.process_feedback();
RESET ROLE;

SET client_min_messages = warning;
REVOKE ALL ON ALL TABLES IN SCHEMA icpml FROM icpml_hi_admin;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA icpml FROM icpml_hi_admin;
REVOKE ALL ON ALL ROUTINES IN SCHEMA icpml FROM icpml_hi_rep, icpml_hi_admin;
REVOKE ALL ON SCHEMA icpml FROM icpml_hi_rep, icpml_hi_admin;
DROP ROLE icpml_hi_rep, icpml_hi_admin;
TRUNCATE icpml.recommendations, icpml.bandit_state, icpml.account_feedback, icpml.account_scores,
         icpml.models, icpml.deployments, icpml.training_runs RESTART IDENTITY;
UPDATE icpml.bandit_settings SET industries = NULL, technologies = NULL;
DROP SCHEMA icpml_ref CASCADE;
-- (with the views over them, 72_context's no_stack included)
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
RESET client_min_messages;
