-- pgTAP: schema and privileges after CREATE EXTENSION on a Supabase-like cluster.
BEGIN;
\ir include/setup.sql

SELECT plan(38);

SELECT has_schema('icpml');
SELECT has_table('icpml', 'rule_weights', 'rule weights are a table');
SELECT has_table('icpml', 'rule_settings', 'rule settings are a table');
SELECT has_function('icpml', 'icp_score', ARRAY['bigint']);
SELECT has_function('icpml', 'icp_score_batch', ARRAY['bigint[]']);
SELECT volatility_is('icpml', 'icp_score', ARRAY['bigint'], 'stable', 'icp_score is STABLE');
SELECT volatility_is('icpml', 'icp_score_batch', ARRAY['bigint[]'], 'stable', 'icp_score_batch is STABLE');
SELECT is(
  (SELECT count(*)::int FROM pg_proc WHERE pronamespace = 'icpml'::regnamespace
   GROUP BY proname HAVING count(*) > 1 LIMIT 1), NULL,
  'no overloaded function names (PostgREST cannot choose between overloads)');
SELECT is(
  (SELECT array_agg(proname::text ORDER BY proname) FROM pg_proc
   WHERE pronamespace = 'icpml'::regnamespace AND prosecdef
     AND NOT coalesce(proconfig::text[] @> ARRAY['search_path=pg_catalog, pg_temp'], false)),
  NULL, 'every SECURITY DEFINER function pins search_path');

-- PUBLIC and anon: nothing
SELECT ok(NOT has_function_privilege('public', 'icpml.icp_score(bigint)', 'execute'), 'PUBLIC cannot score');
SELECT ok(NOT has_schema_privilege('anon', 'icpml', 'usage'), 'anon has no USAGE on icpml');
SELECT ok(NOT has_function_privilege('anon', 'icpml.icp_score(bigint)', 'execute'), 'anon cannot score');
SELECT ok(NOT has_function_privilege('anon', 'icpml.icp_score_batch(bigint[])', 'execute'), 'anon cannot batch-score');
SELECT ok(NOT has_table_privilege('anon', 'icpml.rule_weights', 'select'), 'anon cannot read rule weights');

-- authenticated: scoring only
SELECT ok(has_schema_privilege('authenticated', 'icpml', 'usage'), 'authenticated has USAGE on icpml');
SELECT ok(has_function_privilege('authenticated', 'icpml.icp_score(bigint)', 'execute'), 'authenticated can score');
SELECT ok(has_function_privilege('authenticated', 'icpml.icp_score_batch(bigint[])', 'execute'), 'authenticated can batch-score');
SELECT ok(NOT has_table_privilege('authenticated', 'icpml.rule_weights', 'select,update'), 'authenticated cannot read or change rule weights');
SELECT ok(NOT has_table_privilege('authenticated', 'icpml.rule_settings', 'select,update'), 'authenticated cannot read or change rule settings');
SELECT ok(NOT has_function_privilege('authenticated', 'icpml.grant_admin(name)', 'execute'), 'authenticated cannot grant itself admin');
SELECT ok(has_function_privilege('authenticated', 'icpml.recommend_accounts(uuid, integer, text, integer, bigint)', 'execute'), 'authenticated can get recommendations');
SELECT ok(NOT has_table_privilege('authenticated', 'icpml.recommendations', 'select,insert,update'), 'authenticated cannot read or forge the recommendation log');
SELECT ok(NOT has_table_privilege('authenticated', 'icpml.bandit_state', 'select,update'), 'authenticated cannot read or change bandit state');
SELECT ok(NOT has_function_privilege('authenticated', 'icpml.process_feedback(timestamp with time zone, boolean)', 'execute'), 'authenticated cannot run batch feedback');
SELECT ok(NOT has_function_privilege('anon', 'icpml.recommend_accounts(uuid, integer, text, integer, bigint)', 'execute'), 'anon cannot get recommendations');
SELECT ok(NOT has_function_privilege('authenticated', 'icpml.start_experiment(text, text[], double precision[], text, text[], boolean, double precision, text, integer[])', 'execute'), 'authenticated cannot start experiments');
SELECT ok(NOT has_table_privilege('authenticated', 'icpml.experiments', 'select,insert,update'), 'authenticated cannot read or change experiments');
SELECT ok(has_function_privilege('service_role', 'icpml.experiment_results(text, double precision, interval, timestamptz)', 'execute'), 'service_role reads experiment results');
SELECT ok(NOT has_function_privilege('authenticated', 'icpml.bandit_health(timestamptz, timestamptz)', 'execute'), 'authenticated cannot read bandit health (every user''s log)');
SELECT ok(has_function_privilege('service_role', 'icpml.bandit_health(timestamptz, timestamptz)', 'execute'), 'service_role reads bandit health');
SELECT ok(has_table_privilege('service_role', 'icpml.experiments', 'select,update'), 'service_role administers experiments');

-- service_role: administration
SELECT ok(has_table_privilege('service_role', 'icpml.rule_weights', 'select,update'), 'service_role administers rule weights');
SELECT ok(has_function_privilege('service_role', 'icpml.grant_scoring(name)', 'execute'), 'service_role can grant scoring');

-- no icpml table is readable by PUBLIC
SELECT is(
  (SELECT array_agg(c.relname::text) FROM pg_class c
   WHERE c.relnamespace = 'icpml'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p')
     AND has_table_privilege('public', c.oid, 'select')),
  NULL, 'no icpml table or view is readable by PUBLIC');
SELECT is(
  (SELECT array_agg(p.oid::regprocedure::text) FROM pg_proc p
   WHERE p.pronamespace = 'icpml'::regnamespace AND has_function_privilege('public', p.oid, 'execute')),
  NULL, 'no icpml function is executable by PUBLIC');

-- authenticated and anon, over every object (new ones included): exactly
-- the scoring set, and no table, view or sequence (docs/security.md)
SELECT is(
  (SELECT array_agg(p.oid::regprocedure::text ORDER BY p.oid::regprocedure::text) FROM pg_proc p
   WHERE p.pronamespace = 'icpml'::regnamespace AND has_function_privilege('authenticated', p.oid, 'execute')),
  ARRAY['icpml.explain_icp_score(bigint)', 'icpml.icp_score(bigint)', 'icpml.icp_score_batch(bigint[])',
        'icpml.prewarm()', 'icpml.recommend_accounts(uuid,integer,text,integer,bigint)', 'icpml.xgboost_version()'],
  'authenticated executes the scoring functions and recommend_accounts, nothing else');
SELECT is(
  (SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_class c
   WHERE c.relnamespace = 'icpml'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p', 'S')
     AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege('authenticated', c.oid, 'usage,select,update')
              ELSE has_any_column_privilege('authenticated', c.oid, 'select,insert,update,references')
                   OR has_table_privilege('authenticated', c.oid, 'delete,truncate,trigger') END),
  NULL, 'authenticated has no privilege on any icpml table, view or sequence');
SELECT is(
  (SELECT array_agg(p.oid::regprocedure::text) FROM pg_proc p
   WHERE p.pronamespace = 'icpml'::regnamespace AND has_function_privilege('anon', p.oid, 'execute')),
  NULL, 'anon executes nothing');

SELECT * FROM finish();
ROLLBACK;
