-- pgTAP: icpml's security invariants after CREATE EXTENSION on a Supabase-like
-- cluster (docs/security.md): pinned search paths and qualified bodies,
-- row-level security, the roles, the resource settings, the scheduled jobs'
-- role, the settings' ranges and the models' guard.
BEGIN;
\ir include/setup.sql

SELECT plan(32);

-- The functions that cannot pin search_path (run_training and
-- run_maintenance commit;
-- the other three resolve the configured relation with the caller's path).
CREATE TEMP TABLE unpinned_by_design (proname name);
INSERT INTO unpinned_by_design VALUES
  ('run_training'), ('run_maintenance'), ('enable_online_feedback'), ('disable_online_feedback'),
  ('set_bandit_vocabulary');

-- a body without its literals, comments, qualified operators, assignments,
-- named arguments, casts, subscripts and RAISE/SET/DIAGNOSTICS option syntax
-- (what is left of an operator is one; a function call is a name glued to
-- its parenthesis, as icpml writes them)
CREATE FUNCTION pg_temp.stripped(body text) RETURNS text LANGUAGE sql AS $$
  SELECT regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(
         regexp_replace(regexp_replace(
           body,
           '\$[a-z_]*\$', ' ', 'g'),
           '''([^'']|'''')*''', ' ', 'g'),
           '--[^\n]*|#variable_conflict[^\n]*', ' ', 'g'),
           'OPERATOR\(pg_catalog\.[^)]+\)', ' ', 'g'),
           ':=|=>|::|\(\*\)|\[[^]]*\]|\.\*', ' ', 'g'),
           '[0-9]+(\.[0-9]+)?e-?[0-9]+', ' ', 'g'),
           '\m(ERRCODE|HINT|DETAIL|MESSAGE)\s*=', ' ', 'gi'),
           '(\mSET|,|DIAGNOSTICS)\s*[a-z_]+\s*=', ' ', 'gi')
$$;

SELECT is(
  (SELECT array_agg(p.oid::regprocedure::text ORDER BY 1) FROM pg_proc AS p
   WHERE p.pronamespace = 'icpml'::regnamespace
     AND p.prolang <> (SELECT oid FROM pg_language WHERE lanname = 'c')
     AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)
     AND p.proname NOT IN (SELECT proname FROM unpinned_by_design)),
  NULL, 'every SQL and PL/pgSQL function pins search_path, but the five that cannot');
SELECT is(
  (SELECT array_agg(p.proname::text ORDER BY 1) FROM pg_proc AS p
   WHERE p.pronamespace = 'icpml'::regnamespace AND p.proname IN (SELECT proname FROM unpinned_by_design)
     AND (p.prosecdef OR p.proconfig IS NOT NULL)),
  NULL, 'the five unpinned functions run as the caller, with no SET clause');
SELECT is(
  (SELECT array_agg(DISTINCT p.proname::text) FROM pg_proc AS p,
          regexp_matches(pg_temp.stripped(p.prosrc), '[-+*/<>=!~|^%#@&]+', 'g') AS m
   WHERE p.pronamespace = 'icpml'::regnamespace AND p.proname IN (SELECT proname FROM unpinned_by_design)),
  NULL, 'the unpinned bodies name every operator as OPERATOR(pg_catalog....)');
SELECT is(
  (SELECT array_agg(DISTINCT p.proname::text || ': ' || m[2]) FROM pg_proc AS p,
          regexp_matches(pg_temp.stripped(p.prosrc), '(^|[^.a-z_0-9"])([a-z_][a-z_0-9]*)\(', 'gi') AS m
   WHERE p.pronamespace = 'icpml'::regnamespace AND p.proname IN (SELECT proname FROM unpinned_by_design)
     AND upper(m[2]) NOT IN ('ANY', 'ALL', 'AND', 'OR', 'NOT', 'IF', 'ELSIF', 'EXISTS', 'COALESCE',
                             'GREATEST', 'LEAST', 'ARRAY', 'IN', 'VALUES', 'ROW', 'AS', 'ON', 'THEN',
                             'WHEN', 'RETURN', 'SELECT', 'WHERE', 'FROM')),
  NULL, 'the unpinned bodies schema-qualify every function they call');
SELECT ok(pg_temp.stripped('SELECT a = b') ~ '=', 'the body check sees an unqualified operator');
SELECT ok(pg_temp.stripped('SELECT a OPERATOR(pg_catalog.=) b') !~ '=', 'the body check accepts a qualified one');

-- row-level security: on every table, not forced (icpml's C code reads as
-- the owner), one permissive policy for icpml_admin, none for anyone else
SELECT is(
  (SELECT array_agg(c.relname::text ORDER BY 1) FROM pg_class AS c
   WHERE c.relnamespace = 'icpml'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relrowsecurity),
  NULL, 'row-level security is enabled on every icpml table');
SELECT is(
  (SELECT array_agg(c.relname::text ORDER BY 1) FROM pg_class AS c
   WHERE c.relnamespace = 'icpml'::regnamespace AND c.relkind IN ('r', 'p') AND c.relforcerowsecurity),
  NULL, 'no icpml table forces row-level security on its owner');
SELECT is(
  (SELECT array_agg(c.relname::text ORDER BY 1) FROM pg_class AS c
   WHERE c.relnamespace = 'icpml'::regnamespace AND c.relkind IN ('r', 'p')
     AND NOT EXISTS (SELECT FROM pg_policy AS p WHERE p.polrelid = c.oid AND p.polname = 'administrators'
                       AND p.polroles = ARRAY['icpml_admin'::regrole::oid] AND p.polcmd = '*')),
  NULL, 'every icpml table has the administrators policy, for icpml_admin only');
SELECT is(
  (SELECT count(*)::int FROM pg_policy AS p JOIN pg_class AS c ON c.oid = p.polrelid
   WHERE c.relnamespace = 'icpml'::regnamespace AND p.polname <> 'administrators'),
  0, 'no other policy on icpml tables');
SELECT ok(
  (SELECT c.reloptions @> ARRAY['security_invoker=true'] FROM pg_class AS c WHERE c.oid = 'icpml.training_history'::regclass),
  'training_history reads its table as the caller (security_invoker)');
SELECT is(
  (SELECT array_agg(c.relname::text) FROM pg_class AS c
   WHERE c.relnamespace = 'icpml'::regnamespace AND c.relkind = 'v'
     AND NOT coalesce(c.reloptions @> ARRAY['security_invoker=true'], false)),
  NULL, 'every icpml view is security_invoker');

-- what a table granted by mistake shows: nothing
INSERT INTO icpml.training_runs (triggered_by, deploy_policy, status, finished_at)
VALUES ('manual', 'never', 'failed', now());
GRANT SELECT ON icpml.reward_map, icpml.training_runs, icpml.training_history TO authenticated;
GRANT USAGE ON SCHEMA icpml TO authenticated;
SET LOCAL ROLE authenticated;
SELECT is((SELECT count(*)::int FROM icpml.reward_map), 0, 'authenticated sees no reward_map row even when granted the table');
SELECT is((SELECT count(*)::int FROM icpml.training_history), 0, 'nor any training run through the view');
RESET ROLE;
SET LOCAL ROLE service_role;
SELECT ok((SELECT count(*) FROM icpml.reward_map) > 0, 'service_role (an administrator) sees reward_map');
RESET ROLE;

-- the roles
SELECT ok(NOT (SELECT rolcanlogin OR rolsuper FROM pg_roles WHERE rolname = 'icpml_admin'), 'icpml_admin is a group role, not a superuser');
SELECT ok((SELECT rolcanlogin AND NOT rolsuper AND NOT rolbypassrls AND NOT rolcreaterole AND NOT rolcreatedb
           FROM pg_roles WHERE rolname = 'icpml_jobs'), 'icpml_jobs logs in (pg_cron) and has no special attribute');
SELECT ok(pg_has_role('icpml_jobs', 'icpml_admin', 'MEMBER'), 'icpml_jobs is an administrator');
SELECT ok(pg_has_role('service_role', 'icpml_admin', 'MEMBER'), 'service_role is an administrator');
SELECT ok(NOT pg_has_role('authenticated', 'icpml_admin', 'MEMBER'), 'authenticated is not');
SELECT ok(has_function_privilege('icpml_jobs', 'icpml.run_training(text,text,text)', 'execute'), 'icpml_jobs may run the training');

-- the resource settings (the library defines them)
SELECT ok(icpml.xgboost_version() IS NOT NULL, 'the library is loaded');
SELECT is((SELECT array_agg(context ORDER BY name) FROM pg_settings WHERE name IN ('icpml.nthread', 'icpml.max_batch_size')),
          ARRAY['superuser', 'superuser'], 'icpml.nthread and icpml.max_batch_size are superuser settings');
SELECT ok(has_parameter_privilege('icpml_admin', 'icpml.nthread', 'SET')
          AND has_parameter_privilege('icpml_admin', 'icpml.max_batch_size', 'SET'), 'icpml_admin may set them');
SELECT ok(NOT has_parameter_privilege('authenticated', 'icpml.nthread', 'SET'), 'authenticated may not');
-- the relations icpml reads on a caller's behalf decide what the caller sees
-- (recommend_accounts' visibility check): administrators choose them
SELECT is((SELECT array_agg(context ORDER BY name) FROM pg_settings
           WHERE name IN ('icpml.feature_relation', 'icpml.feature_key', 'icpml.interactions_relation')),
          ARRAY['superuser', 'superuser', 'superuser'],
          'icpml.feature_relation, feature_key and interactions_relation are superuser settings');
SELECT ok(has_parameter_privilege('icpml_admin', 'icpml.feature_relation', 'SET')
          AND has_parameter_privilege('icpml_admin', 'icpml.feature_key', 'SET')
          AND has_parameter_privilege('icpml_admin', 'icpml.interactions_relation', 'SET')
          AND NOT has_parameter_privilege('authenticated', 'icpml.feature_relation', 'SET'),
          'icpml_admin may set them, authenticated may not');

-- scheduling defaults to a role that is not the caller's superuser self
SELECT is((SELECT pg_get_function_arguments('icpml.schedule_retraining(text,text,text,name,text)'::regprocedure)),
          'cron text DEFAULT ''0 3 * * *''::text, deploy text DEFAULT ''best''::text, job_name text DEFAULT ''icpml-retrain''::text, run_as name DEFAULT NULL::name, retrain text DEFAULT ''always''::text',
          'schedule_retraining takes run_as');

-- settings in range, models checked on write
SELECT throws_ok($$UPDATE icpml.bandit_settings SET v = 1e308$$, '23514', NULL, 'v = 1e308 is refused');
SELECT throws_ok($$UPDATE icpml.bandit_settings SET alpha = 'NaN'$$, '23514', NULL, 'alpha = NaN is refused');
SELECT has_trigger('icpml', 'models', 'models_guard', 'icpml.models checks every write');
SELECT ok(NOT icpml.is_relation_name('public.account_features; SELECT 1') AND icpml.is_relation_name('"a b".c'),
          'a relation name is a name');

SELECT * FROM finish();
ROLLBACK;
