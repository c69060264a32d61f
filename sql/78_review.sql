-- The surfaces new in 0.4.0 probed as an attacker and as a careless
-- operator would (docs/security.md): who chooses the relations icpml reads
-- on a caller's behalf, the model-health thresholds, the score queue
-- triggers icpml puts on the user's tables.  Each case misbehaved before
-- its fix.
\set VERBOSITY terse
SET icpml.nthread = 1;
\i sql/include/reference_generator.sql
SET client_min_messages = warning;
TRUNCATE icpml.recommendations, icpml.bandit_state, icpml.account_feedback, icpml.account_scores,
         icpml.account_candidates, icpml.user_profiles, icpml.models, icpml.deployments RESTART IDENTITY;
RESET client_min_messages;
SELECT sum(row_count) > 0 AS generated
FROM icpml_ref.generate(accounts => 400, users => 2, interactions => 600, seed => 9,
                        as_of => '2026-01-01 00:00+00');
SELECT icpml.score_all() > 0 AS scored;

-- A sales rep who may score and see only the even accounts.
CREATE ROLE icpml_rv_rep NOLOGIN;
SELECT icpml.grant_scoring('icpml_rv_rep');
GRANT SELECT ON public.account_signals, public.research_runs, public.account_features,
                public.user_interactions TO icpml_rv_rep;
ALTER TABLE public.account_signals ENABLE ROW LEVEL SECURITY;
CREATE POLICY rv_even ON public.account_signals FOR SELECT TO icpml_rv_rep USING (account_id % 2 = 0);
-- a table of every account id, which the rep can read
CREATE TABLE public.rv_everything AS SELECT g::bigint AS account_id FROM generate_series(1, 1000) g;
GRANT SELECT ON public.rv_everything TO icpml_rv_rep;
SELECT user_id AS rep FROM public.sales_users ORDER BY user_id LIMIT 1 \gset
SELECT format('{"sub": "%s"}', :'rep') AS claims \gset

-- 1. recommend_accounts checks which accounts a caller may see by reading
--    the feature relation's key as the caller.  Before 0.4.0 final the
--    caller could point icpml.feature_relation (or feature_key) elsewhere,
--    and was served the hidden accounts with their materialised signals
--    (industry, hiring, funding).  Now these are superuser settings.
SET ROLE icpml_rv_rep;
SET request.jwt.claims = :'claims';
SELECT count(*) > 0 AS listed, count(*) FILTER (WHERE account_id % 2 = 1) AS hidden_listed
FROM icpml.recommend_accounts(:'rep', 20, seed => 1);
SET icpml.feature_relation = 'public.rv_everything';
SET icpml.feature_key = 'engineering_role_count';
SET icpml.interactions_relation = 'public.rv_everything';
ALTER ROLE icpml_rv_rep SET icpml.feature_relation = 'public.rv_everything';
SELECT count(*) FILTER (WHERE account_id % 2 = 1) AS hidden_listed
FROM icpml.recommend_accounts(:'rep', 20, seed => 1);
RESET ROLE;
-- nor by setting it in a new session before icpml's library is loaded (a
-- placeholder, re-checked when the library defines the setting)
\c -
SET SESSION AUTHORIZATION icpml_rv_rep;
SET icpml.feature_relation = 'public.rv_everything';
SET request.jwt.claims = :'claims';
SELECT count(*) FILTER (WHERE account_id % 2 = 1) AS hidden_listed
FROM icpml.recommend_accounts(:'rep', 20, seed => 1);
SHOW icpml.feature_relation;
RESET SESSION AUTHORIZATION;
RESET request.jwt.claims;
-- administrators may set them (icpml_admin holds SET on them)
SELECT p.parname, has_parameter_privilege('icpml_admin', p.parname, 'SET') AS admin_sets,
       has_parameter_privilege('icpml_rv_rep', p.parname, 'SET') AS rep_sets,
       (SELECT context FROM pg_settings WHERE name = p.parname) AS context
FROM unnest(ARRAY['icpml.feature_relation', 'icpml.feature_key', 'icpml.interactions_relation']) AS p(parname);

-- 2. model-health thresholds: finite and in range (NaN passed "> 0" and
--    silenced every drift and decay alert; a negative age retrained nightly)
CREATE FUNCTION pg_temp.try_health(col text, val text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('UPDATE icpml.health_settings SET %I = %L', col, val);
  RETURN 'accepted';
EXCEPTION WHEN check_violation OR numeric_value_out_of_range THEN
  RETURN 'refused';
END
$$;
SELECT col, string_agg(val || ' ' || pg_temp.try_health(col, val), ', ' ORDER BY ord) AS outcomes
FROM unnest(ARRAY['psi_watch', 'psi_alert', 'auc_drop', 'brier_rise', 'calibration_gap'])
       WITH ORDINALITY AS c(col, cord),
     unnest(ARRAY['NaN', 'Infinity', '-1', '1e308', '0.2']) WITH ORDINALITY AS v(val, ord)
GROUP BY col, cord ORDER BY cord;
SELECT pg_temp.try_health('max_model_age', '-5 days') AS negative_age,
       pg_temp.try_health('max_model_age', '0 seconds') AS zero_age;
UPDATE icpml.health_settings SET psi_watch = DEFAULT, psi_alert = DEFAULT, auc_drop = DEFAULT,
  brier_rise = DEFAULT, calibration_gap = DEFAULT, max_model_age = DEFAULT;

-- 3. the score queue triggers read the key column of the user's table with
--    the extension owner's rights: a table owner who made the key a type of
--    its own, with a cast of its own, ran that cast as the owner (a
--    superuser).  Now a key of a user-defined type is refused at every
--    firing, as the feedback and profile triggers refuse theirs.
CREATE ROLE icpml_rv_owner NOLOGIN;
GRANT CREATE ON SCHEMA public TO icpml_rv_owner;
SET ROLE icpml_rv_owner;
CREATE TYPE public.rv_key AS ENUM ('1', '2', '3');
CREATE TABLE public.rv_scored (account_id bigint, signal integer);
CREATE TABLE public.rv_witness (was_superuser boolean);
CREATE FUNCTION public.rv_key_to_int8(k public.rv_key) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.rv_witness SELECT r.rolsuper FROM pg_roles AS r WHERE r.rolname = current_user;
  RETURN k::text::bigint;
END
$$;
CREATE CAST (public.rv_key AS bigint) WITH FUNCTION public.rv_key_to_int8(public.rv_key);
RESET ROLE;
SELECT table_name, queued FROM icpml.enable_score_queue('public.rv_scored', 'account_id');
SET ROLE icpml_rv_owner;
INSERT INTO public.rv_scored VALUES (1, 1);
ALTER TABLE public.rv_scored ALTER COLUMN account_id TYPE public.rv_key USING account_id::text::public.rv_key;
INSERT INTO public.rv_scored VALUES ('2', 1);
UPDATE public.rv_scored SET signal = 2;
DELETE FROM public.rv_scored;
RESET ROLE;
SELECT count(*) AS casts_run, count(*) FILTER (WHERE was_superuser) AS as_superuser FROM public.rv_witness;
-- a key column renamed under the trigger: a clear error, not a raw one
ALTER TABLE public.rv_scored ALTER COLUMN account_id TYPE bigint USING account_id::text::bigint;
INSERT INTO public.rv_scored VALUES (3, 1);
ALTER TABLE public.rv_scored RENAME COLUMN account_id TO id;
INSERT INTO public.rv_scored VALUES (4, 1);
SELECT account_id FROM icpml.score_queue WHERE account_id IN (1, 2, 3, 4) ORDER BY 1;
SELECT * FROM icpml.disable_score_queue('public.rv_scored');
DROP TABLE public.rv_scored, public.rv_witness;
DROP CAST (public.rv_key AS bigint);
DROP FUNCTION public.rv_key_to_int8(public.rv_key);
DROP TYPE public.rv_key;
REVOKE CREATE ON SCHEMA public FROM icpml_rv_owner;
DROP ROLE icpml_rv_owner;

-- 4. experiment weights are relative shares up to 1e6: finite weights near
--    the float limit summed to Infinity, every user went to the last variant
--    and experiment_results failed (float8 overflow)
SELECT name FROM icpml.start_experiment('rv-huge', ARRAY['icp', 'random'], weights => ARRAY[1e308, 1e308]);
INSERT INTO icpml.experiments (name, variants, weights, policies)
VALUES ('rv-huge', ARRAY['a', 'b'], ARRAY[1e308, 1e308], ARRAY['icp', 'random']);
SELECT name, weights FROM icpml.start_experiment('rv-wide', ARRAY['icp', 'random'], weights => ARRAY[1e6, 1e6]);
SELECT v.variant, count(*) AS users
FROM generate_series(1, 400) g,
     LATERAL (SELECT icpml.experiment_variant('rv-wide', md5(g::text)::uuid) AS variant) v
GROUP BY 1 ORDER BY 1;
SELECT variant, users FROM icpml.experiment_results('rv-wide') ORDER BY variant;
SELECT (icpml.stop_experiment('rv-wide')).status;
DELETE FROM icpml.experiments WHERE name = 'rv-wide';

-- 6. A listed account's reason shows its signals as the caller reads them.
--    With all research hidden from the rep (row-level security on
--    research_runs, which the feature view joins for funding and research),
--    no reason of the rep's list mentions funding or research; an
--    administrator's list, who reads all research, does.  Before the fix the
--    reasons came from account_candidates, as the scorer read them, and the
--    rep's said "recently funded".
ALTER TABLE public.research_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY rv_no_research ON public.research_runs FOR SELECT TO icpml_rv_rep USING (false);
SET request.jwt.claims = :'claims';
SET ROLE icpml_rv_rep;
SELECT count(*) AS listed,
       count(*) FILTER (WHERE reason->>'summary' LIKE '%funded%') AS funded_summaries,
       count(*) FILTER (WHERE EXISTS (SELECT FROM jsonb_array_elements(reason->'top_signals') AS s
                                      WHERE s->>'signal' IN ('recent_funding', 'research_recency'))) AS research_signals
FROM icpml.recommend_accounts(:'rep', 100, candidates => 400, seed => 1);
RESET ROLE;
SELECT count(*) AS listed,
       count(*) FILTER (WHERE reason->>'summary' LIKE '%funded%') > 0 AS funded_summaries,
       count(*) FILTER (WHERE EXISTS (SELECT FROM jsonb_array_elements(reason->'top_signals') AS s
                                      WHERE s->>'signal' IN ('recent_funding', 'research_recency'))) > 0 AS research_signals
FROM icpml.recommend_accounts(:'rep', 100, candidates => 400, seed => 1);
RESET request.jwt.claims;
DROP POLICY rv_no_research ON public.research_runs;
ALTER TABLE public.research_runs DISABLE ROW LEVEL SECURITY;

-- 7. enable_score_queue() with no model deployed, in a new session that has
--    not loaded icpml's library: it read icpml.feature_relation without
--    missing_ok and failed with "unrecognized configuration parameter".
\c -
SELECT count(*) FROM icpml.models WHERE status = 'deployed';
SELECT table_name, queued FROM icpml.enable_score_queue() ORDER BY 1::text;
SELECT count(*) > 0 AS removed FROM icpml.disable_score_queue();

-- clean up
ALTER TABLE public.account_signals DISABLE ROW LEVEL SECURITY;
DROP POLICY rv_even ON public.account_signals;
DROP TABLE public.rv_everything;
REVOKE ALL ON public.account_signals, public.research_runs, public.account_features,
              public.user_interactions FROM icpml_rv_rep;
ALTER ROLE icpml_rv_rep RESET ALL;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA icpml FROM icpml_rv_rep;
REVOKE USAGE ON SCHEMA icpml FROM icpml_rv_rep;
DROP ROLE icpml_rv_rep;
