-- pgTAP: the model store, its history, the training run log and their privileges.
BEGIN;
\ir include/setup.sql

SELECT plan(73);

-- tables, keys, the one-deployed rule, cache invalidation, pg_dump
SELECT has_table('icpml', 'models', 'models is a table');
SELECT has_table('icpml', 'deployments', 'deployments is a table');
SELECT has_table('icpml', 'training_runs', 'training_runs is a table');
SELECT has_view('icpml', 'training_history', 'training_history is a view');
SELECT has_pk('icpml', 'models', 'models has a primary key');
SELECT col_is_pk('icpml', 'models', 'version', 'models are keyed by version');
SELECT col_not_null('icpml', 'models', 'model', 'a model always has its blob');
SELECT col_not_null('icpml', 'models', 'spec', 'a model always has its feature spec');
SELECT col_type_is('icpml', 'models', 'model', 'bytea', 'the blob is bytea');
SELECT col_type_is('icpml', 'models', 'score_cutoffs', 'double precision[]', 'cut-offs are float8[]');
SELECT index_is_unique('icpml', 'models', 'models_one_deployed', 'at most one deployed model (unique index)');
SELECT is((SELECT pg_get_expr(i.indpred, i.indrelid) FROM pg_index i
           WHERE i.indexrelid = 'icpml.models_one_deployed'::regclass),
          '(status = ''deployed''::text)', 'the unique index covers deployed rows only');
SELECT has_trigger('icpml', 'models', 'models_invalidate', 'models changes invalidate backend caches');
SELECT has_trigger('icpml', 'deployments', 'deployments_invalidate', 'deployments invalidate backend caches');
SELECT trigger_is('icpml', 'models', 'models_invalidate', 'icpml', 'invalidate_cache',
                  'the models trigger calls icpml.invalidate_cache()');
SELECT set_has(
  $$SELECT unnest(extconfig)::regclass::text FROM pg_extension WHERE extname = 'icpml'$$,
  $$VALUES ('icpml.models'), ('icpml.deployments'), ('icpml.training_runs')$$,
  'pg_dump keeps models, deployments and training runs');

-- functions exist, with named parameters and no overloads
SELECT has_function('icpml', 'deploy_model', ARRAY['integer', 'text', 'boolean']);
SELECT has_function('icpml', 'rollback_model', ARRAY['text']);
SELECT has_function('icpml', 'undeploy_model', ARRAY['text']);
SELECT has_function('icpml', 'delete_model', ARRAY['integer']);
SELECT has_function('icpml', 'apply_deploy_policy', ARRAY['integer', 'text']);
SELECT has_function('icpml', 'list_models', ARRAY[]::text[]);
SELECT has_function('icpml', 'describe_model', ARRAY['integer']);
SELECT has_function('icpml', 'model_roc_curve', ARRAY['integer']);
SELECT has_function('icpml', 'model_calibration', ARRAY['integer']);
SELECT has_function('icpml', 'model_feature_importance', ARRAY['integer']);
SELECT has_function('icpml', 'schedule_retraining', ARRAY['text', 'text', 'text', 'name', 'text']);
SELECT has_function('icpml', 'unschedule_retraining', ARRAY['text', 'name']);
SELECT is((SELECT prokind::text FROM pg_proc WHERE oid = 'icpml.run_training(text,text,text)'::regprocedure),
          'p', 'run_training is a procedure (it commits between steps)');
SELECT is((SELECT proargnames FROM pg_proc WHERE oid = 'icpml.deploy_model(integer,text,boolean)'::regprocedure),
          ARRAY['version', 'reason', 'replace_dataset'], 'deploy_model has named parameters');

-- volatility: writers VOLATILE, readers STABLE
SELECT volatility_is('icpml', 'deploy_model', ARRAY['integer', 'text', 'boolean'], 'volatile', 'deploy_model is VOLATILE');
SELECT volatility_is('icpml', 'rollback_model', ARRAY['text'], 'volatile', 'rollback_model is VOLATILE');
SELECT volatility_is('icpml', 'undeploy_model', ARRAY['text'], 'volatile', 'undeploy_model is VOLATILE');
SELECT volatility_is('icpml', 'delete_model', ARRAY['integer'], 'volatile', 'delete_model is VOLATILE');
SELECT volatility_is('icpml', 'apply_deploy_policy', ARRAY['integer', 'text'], 'volatile', 'apply_deploy_policy is VOLATILE');
SELECT volatility_is('icpml', 'schedule_retraining', ARRAY['text', 'text', 'text', 'name', 'text'], 'volatile', 'schedule_retraining is VOLATILE');
SELECT volatility_is('icpml', 'unschedule_retraining', ARRAY['text', 'name'], 'volatile', 'unschedule_retraining is VOLATILE');
SELECT volatility_is('icpml', 'list_models', ARRAY[]::text[], 'stable', 'list_models is STABLE');
SELECT volatility_is('icpml', 'describe_model', ARRAY['integer'], 'stable', 'describe_model is STABLE');
SELECT volatility_is('icpml', 'model_roc_curve', ARRAY['integer'], 'stable', 'model_roc_curve is STABLE');
SELECT volatility_is('icpml', 'model_calibration', ARRAY['integer'], 'stable', 'model_calibration is STABLE');
SELECT volatility_is('icpml', 'model_feature_importance', ARRAY['integer'], 'stable', 'model_feature_importance is STABLE');

-- internal tables: closed to anon and authenticated, open to service_role
SELECT ok(NOT has_table_privilege('anon', 'icpml.models', 'select'), 'anon cannot read models');
SELECT ok(NOT has_table_privilege('anon', 'icpml.deployments', 'select'), 'anon cannot read deployments');
SELECT ok(NOT has_table_privilege('anon', 'icpml.training_runs', 'select'), 'anon cannot read training runs');
SELECT ok(NOT has_table_privilege('authenticated', 'icpml.models', 'select,insert,update,delete'), 'authenticated cannot read or change models');
SELECT ok(NOT has_table_privilege('authenticated', 'icpml.deployments', 'select,insert,update,delete'), 'authenticated cannot read or change deployments');
SELECT ok(NOT has_table_privilege('authenticated', 'icpml.training_runs', 'select,insert,update,delete'), 'authenticated cannot read or change training runs');
SELECT ok(NOT has_table_privilege('authenticated', 'icpml.training_history', 'select'), 'authenticated cannot read the training history');
SELECT ok(has_table_privilege('service_role', 'icpml.models', 'select'), 'service_role reads models');
SELECT ok(has_table_privilege('service_role', 'icpml.training_history', 'select'), 'service_role reads the training history');

-- administration: not for authenticated (nor anon), for service_role
SELECT ok(NOT has_function_privilege('authenticated', 'icpml.deploy_model(integer,text,boolean)', 'execute'), 'authenticated cannot deploy');
SELECT ok(NOT has_function_privilege('authenticated', 'icpml.rollback_model(text)', 'execute'), 'authenticated cannot roll back');
SELECT ok(NOT has_function_privilege('authenticated', 'icpml.undeploy_model(text)', 'execute'), 'authenticated cannot undeploy');
SELECT ok(NOT has_function_privilege('authenticated', 'icpml.delete_model(integer)', 'execute'), 'authenticated cannot delete models');
SELECT ok(NOT has_function_privilege('authenticated', 'icpml.apply_deploy_policy(integer,text)', 'execute'), 'authenticated cannot apply deploy policies');
SELECT ok(NOT has_function_privilege('authenticated', 'icpml.list_models()', 'execute'), 'authenticated cannot list models');
SELECT ok(NOT has_function_privilege('authenticated', 'icpml.describe_model(integer)', 'execute'), 'authenticated cannot describe models');
SELECT ok(NOT has_function_privilege('authenticated', 'icpml.model_roc_curve(integer)', 'execute'), 'authenticated cannot read ROC curves');
SELECT ok(NOT has_function_privilege('authenticated', 'icpml.model_calibration(integer)', 'execute'), 'authenticated cannot read calibration');
SELECT ok(NOT has_function_privilege('authenticated', 'icpml.model_feature_importance(integer)', 'execute'), 'authenticated cannot read feature importance');
SELECT ok(NOT has_function_privilege('authenticated', 'icpml.schedule_retraining(text,text,text,name,text)', 'execute'), 'authenticated cannot schedule retraining');
SELECT ok(NOT has_function_privilege('authenticated', 'icpml.unschedule_retraining(text,name)', 'execute'), 'authenticated cannot unschedule retraining');
SELECT ok(NOT has_function_privilege('authenticated', 'icpml.run_training(text,text,text)', 'execute'), 'authenticated cannot run training');
SELECT ok(NOT has_function_privilege('anon', 'icpml.run_training(text,text,text)', 'execute'), 'anon cannot run training');
SELECT ok(NOT has_function_privilege('public', 'icpml.run_training(text,text,text)', 'execute'), 'PUBLIC cannot run training (procedures are revoked too)');
SELECT ok(has_function_privilege('service_role', 'icpml.deploy_model(integer,text,boolean)', 'execute'), 'service_role deploys');
SELECT ok(has_function_privilege('service_role', 'icpml.model_roc_curve(integer)', 'execute'), 'service_role reads evaluation outputs');
SELECT ok(has_function_privilege('service_role', 'icpml.schedule_retraining(text,text,text,name,text)', 'execute'), 'service_role schedules retraining');
SELECT ok(has_function_privilege('service_role', 'icpml.run_training(text,text,text)', 'execute'), 'service_role runs training');

-- SECURITY DEFINER readers pin search_path; the C writers switch to the owner themselves
SELECT is(
  (SELECT array_agg(p.proname::text ORDER BY p.proname) FROM pg_proc p
   WHERE p.pronamespace = 'icpml'::regnamespace AND p.prosecdef
     AND p.proname IN ('list_models', 'describe_model', 'model_roc_curve', 'model_calibration',
                       'model_feature_importance', 'model_version_or_deployed')
     AND p.proconfig::text[] @> ARRAY['search_path=pg_catalog, pg_temp']),
  ARRAY['describe_model', 'list_models', 'model_calibration', 'model_feature_importance',
        'model_roc_curve', 'model_version_or_deployed'],
  'the store''s SECURITY DEFINER readers pin search_path');

-- behaviour: a deploy needs an existing version; the deployed one stays
SELECT throws_ok('SELECT icpml.deploy_model(version => 1)', 'P0002',
                 'model version 1 does not exist', 'deploying an unknown version fails clearly');
SELECT throws_ok('SELECT icpml.rollback_model()', '55000', NULL, 'nothing to roll back to on a fresh install');

SELECT * FROM finish();
ROLLBACK;
