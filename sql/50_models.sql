-- Model store: list, describe, deploy, rollback, undeploy, delete, deploy
-- policies, evaluation outputs; deploys are transactional.
\set VERBOSITY default
SET client_min_messages = warning;
TRUNCATE icpml.models, icpml.deployments RESTART IDENTITY;
RESET client_min_messages;

-- Stored versions made by hand (training makes them for real; see below):
-- a one-tree XGBoost model (JSON) over company_size, with the digest of
-- the spec it goes with, as training records it (see 52_model_validation).
CREATE FUNCTION pg_temp.tiny_model(spec jsonb)
RETURNS bytea LANGUAGE sql AS $$
  SELECT convert_to(format(
    '{"learner":{"attributes":{"icpml_spec_md5":"%s"},"feature_names":[],"feature_types":["q"],'
    '"gradient_booster":{"model":{"gbtree_model_param":{"num_parallel_tree":"1","num_trees":"1",'
    '"size_leaf_vector":"0"},"tree_info":[0],"trees":[{"base_weights":[-0E0,-8.5714287E-1,8.5714287E-1],'
    '"categories":[],"categories_nodes":[],"categories_segments":[],"categories_sizes":[],'
    '"default_left":[1,0,0],"id":0,"left_children":[1,-1,-1],"loss_changes":[2.5714285E0,0E0,0E0],'
    '"parents":[2147483647,0,0],"right_children":[2,-1,-1],'
    '"split_conditions":[1.75E2,-4.2857143E-1,4.2857143E-1],"split_indices":[0,0,0],"split_type":[0,0,0],'
    '"sum_hessian":[1.5E0,7.5E-1,7.5E-1],"tree_param":{"num_deleted":"0","num_feature":"1",'
    '"num_nodes":"3","size_leaf_vector":"0"}}]},"name":"gbtree"},"learner_model_param":{"base_score":"5E-1",'
    '"boost_from_average":"0","num_class":"0","num_feature":"1","num_target":"1"},'
    '"objective":{"name":"binary:logistic","reg_loss_param":{"scale_pos_weight":"1"}}},"version":[1,7,4]}',
    md5(spec::text)), 'UTF8')
$$;

CREATE FUNCTION pg_temp.add_model(auc double precision, rules_auc double precision)
RETURNS integer LANGUAGE sql AS $$
  WITH s(spec) AS (
    SELECT '{"format": 1, "relation": "public.account_features", "key": "account_id",
             "columns": [{"name": "company_size", "kind": "numeric"}],
             "features": [{"name": "company_size", "type": "q"}]}'::jsonb)
  INSERT INTO icpml.models (relation, key_column, label_column, model, spec, params, metrics,
                            n_rows, n_positive, seed, data_fingerprint, score_cutoffs,
                            cv_roc_auc, rules_cv_roc_auc)
  SELECT 'public.account_features', 'account_id', 'is_fit', pg_temp.tiny_model(s.spec), s.spec,
          '{"max_depth": 4, "eta": 0.1, "n_rounds": 50}',
          jsonb_build_object('folds', 5, 'seed', 42,
            'cv', jsonb_build_object('model', jsonb_build_object('roc_auc', auc),
                                     'rules', CASE WHEN rules_auc IS NOT NULL
                                                   THEN jsonb_build_object('roc_auc', rules_auc) END),
            'roc', '[{"threshold": 1.0, "fpr": 0, "tpr": 0}, {"threshold": 0.5, "fpr": 0.1, "tpr": 0.6},
                     {"threshold": 0.0, "fpr": 1, "tpr": 1}]'::jsonb,
            'calibration', '[{"bin": 1, "mean_predicted": 0.05, "observed_rate": 0.04, "n": 120},
                             {"bin": 2, "mean_predicted": 0.15, "observed_rate": 0.18, "n": 80}]'::jsonb,
            'importance', '[{"feature": "industry", "gain": 2.5, "weight": 10},
                            {"feature": "company_size", "gain": 7.25, "weight": 31}]'::jsonb),
          200, 60, 42, md5('rows'), '{0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9}', auc, rules_auc
  FROM s
  RETURNING version
$$;

SELECT pg_temp.add_model(0.80, 0.70) AS v1, pg_temp.add_model(0.75, 0.70) AS v2,
       pg_temp.add_model(0.85, NULL) AS v3, pg_temp.add_model(0.60, 0.70) AS v4;

SELECT version, status, relation, label_column, n_rows, n_positive, cv_roc_auc, rules_cv_roc_auc,
       xgboost_version IS NULL AS no_xgb_version, model_bytes, created_by = current_user AS by_me
FROM icpml.list_models();

-- describe: everything but the blob, plus its size
SELECT jsonb_pretty(icpml.describe_model(version => 1)
                    - 'created_at' - 'created_by' - 'metrics' - 'spec'
                    #- '{card,data_window,trained_at}');
SELECT icpml.describe_model(version => 1) ? 'model' AS has_blob;
SELECT icpml.describe_model(version => 99);
-- nothing deployed yet: the default (deployed) version is an error
SELECT icpml.describe_model();
SELECT * FROM icpml.model_roc_curve();

-- deploy: returns the history row; the deployed one becomes retired
SELECT version, action, previous_version, reason, by = current_user AS by_me
FROM icpml.deploy_model(version => 1);
SELECT version, action, previous_version, reason
FROM icpml.deploy_model(version => 2, reason => 'try the smaller model');
SELECT version, status FROM icpml.list_models();
-- deploying the deployed version changes nothing
SELECT icpml.deploy_model(version => 2) IS NULL AS no_change;
SELECT icpml.deploy_model(version => 99);
SELECT icpml.deploy_model(version => NULL);

-- the deployed version cannot be deleted; unknown versions are an error
SELECT icpml.delete_model(version => 2);
SELECT icpml.delete_model(version => 99);

-- transactional: a rolled-back deploy changes nothing
BEGIN;
SELECT version, action, previous_version FROM icpml.deploy_model(version => 3);
SELECT version FROM icpml.list_models() WHERE status = 'deployed';
ROLLBACK;
SELECT version, status FROM icpml.list_models();
SELECT count(*) AS history_rows FROM icpml.deployments;

-- rollback walks back through the history: 3 -> 2 -> 1, then nothing left
SELECT version, action, previous_version FROM icpml.deploy_model(version => 3);
SELECT version, action, previous_version FROM icpml.rollback_model();
SELECT version, action, previous_version, reason FROM icpml.rollback_model(reason => 'regression in v2');
SELECT icpml.rollback_model();
SELECT version, status FROM icpml.list_models();

-- undeploy: back to the rules (the rules score), and rollback undoes it
SELECT version, action, previous_version FROM icpml.undeploy_model();
SELECT icpml.undeploy_model() IS NULL AS nothing_to_undeploy;
SELECT version, action, previous_version FROM icpml.rollback_model();

-- deleted versions are skipped by rollback: deploy 3, 4, then 2; delete 4
-- and 3; roll back: 1 (deployed before 3)
SELECT version FROM icpml.deploy_model(version => 3);
SELECT version FROM icpml.deploy_model(version => 4);
SELECT version FROM icpml.deploy_model(version => 2);
SELECT icpml.delete_model(version => 4);
SELECT icpml.delete_model(version => 3);
SELECT version, action, previous_version FROM icpml.rollback_model();
SELECT version, status FROM icpml.list_models();

SELECT id, version, action, previous_version, reason FROM icpml.deployments ORDER BY id;

-- deploy policies, as training applies them to a new version
SELECT version, action, previous_version FROM icpml.undeploy_model();
SELECT pg_temp.add_model(0.65, 0.70) AS v5, pg_temp.add_model(0.72, 0.70) AS v6,
       pg_temp.add_model(NULL, 0.70) AS v7, pg_temp.add_model(0.71, 'NaN') AS v8;
-- nothing deployed: best compares with the rules on the same folds
SELECT * FROM icpml.apply_deploy_policy(version => 5);
SELECT * FROM icpml.apply_deploy_policy(version => 6, policy => 'best');
-- a deployed model is the yardstick once there is one
SELECT * FROM icpml.apply_deploy_policy(version => 1, policy => 'best');
SELECT * FROM icpml.apply_deploy_policy(version => 6, policy => 'best');
SELECT * FROM icpml.apply_deploy_policy(version => 7, policy => 'best');
SELECT * FROM icpml.apply_deploy_policy(version => 5, policy => 'never');
SELECT * FROM icpml.apply_deploy_policy(version => 5, policy => 'always');
SELECT * FROM icpml.apply_deploy_policy(version => 5, policy => 'always');
-- nothing deployed and no rules baseline (NaN): best deploys
SELECT version, action, previous_version FROM icpml.undeploy_model();
SELECT * FROM icpml.apply_deploy_policy(version => 8);
SELECT * FROM icpml.apply_deploy_policy(version => 8, policy => 'sometimes');
SELECT * FROM icpml.apply_deploy_policy(version => 42);
SELECT version, action, previous_version, reason FROM icpml.deployments WHERE id > 12 ORDER BY id;

-- evaluation outputs, ready to chart (the deployed version by default)
SELECT * FROM icpml.model_roc_curve();
SELECT * FROM icpml.model_calibration(version => 1);
SELECT * FROM icpml.model_feature_importance(version => 1);
SELECT count(*) FROM icpml.model_roc_curve(version => 99);
-- a version without metrics has empty outputs
UPDATE icpml.models SET metrics = NULL WHERE version = 6;
SELECT count(*) AS roc_points FROM icpml.model_roc_curve(version => 6);

-- the store is for administrators only
CREATE ROLE icpml_models_rep;
SELECT icpml.grant_scoring('icpml_models_rep');
SET ROLE icpml_models_rep;
SELECT * FROM icpml.list_models();
SELECT icpml.deploy_model(version => 1);
SELECT count(*) FROM icpml.models;
RESET ROLE;
CREATE ROLE icpml_models_admin;
SELECT icpml.grant_admin('icpml_models_admin');
SET ROLE icpml_models_admin;
SELECT count(*) FROM icpml.list_models();
SELECT version, action, by FROM icpml.deploy_model(version => 1);
RESET ROLE;
REVOKE ALL ON ALL TABLES IN SCHEMA icpml FROM icpml_models_admin;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA icpml FROM icpml_models_admin;
REVOKE ALL ON ALL ROUTINES IN SCHEMA icpml FROM icpml_models_admin, icpml_models_rep;
REVOKE ALL ON SCHEMA icpml FROM icpml_models_admin, icpml_models_rep;
DROP ROLE icpml_models_admin;
DROP ROLE icpml_models_rep;

-- A trained model: its evaluation outputs are consistent and chartable
SET client_min_messages = warning;
TRUNCATE icpml.models, icpml.deployments RESTART IDENTITY;
\i sql/include/reference_generator.sql
RESET client_min_messages;
SET icpml.nthread = 1;
SELECT sum(row_count) > 0 AS generated
FROM icpml_ref.generate(accounts => 2000, users => 5, interactions => 5000, seed => 42,
                        as_of => '2026-01-01 00:00+00');
SELECT version, deployed FROM icpml.train_icp_model(deploy => 'always');

-- ROC: from (0,0) to (1,1), thresholds falling while both rates rise; its
-- area (pooled out-of-fold predictions) is close to the mean fold AUC
WITH r AS (
  SELECT threshold, fpr, tpr, row_number() OVER () AS i FROM icpml.model_roc_curve()),
s AS (
  SELECT *, lag(threshold) OVER w AS t0, lag(fpr) OVER w AS f0, lag(tpr) OVER w AS p0
  FROM r WINDOW w AS (ORDER BY i))
SELECT count(*) > 10 AS many_points,
       bool_and(t0 IS NULL OR (threshold <= t0 AND fpr >= f0 AND tpr >= p0)) AS monotone,
       bool_and((i > 1 OR (fpr = 0 AND tpr = 0))) AS starts_at_origin,
       max(fpr) = 1 AND max(tpr) = 1 AS ends_at_one,
       abs(sum(coalesce((fpr - f0) * (tpr + p0) / 2, 0))
           - (SELECT cv_roc_auc FROM icpml.list_models() WHERE status = 'deployed')) < 0.03 AS area_near_cv_auc
FROM s;
-- calibration: bins cover every labelled row once; rates are rates
SELECT count(*) AS bins,
       sum(n) = (SELECT n_rows FROM icpml.list_models() WHERE status = 'deployed') AS covers_all_rows,
       bool_and(mean_predicted BETWEEN 0 AND 1 AND observed_rate BETWEEN 0 AND 1) AS rates
FROM icpml.model_calibration();
-- importance: features of the model's own spec, most gain first
WITH f AS (SELECT feature, gain, weight, row_number() OVER () AS i
           FROM icpml.model_feature_importance())
SELECT count(*) > 5 AS features,
       bool_and(feature IN (SELECT e ->> 'name' FROM icpml.models m,
                            jsonb_array_elements(m.spec -> 'features') e
                            WHERE m.status = 'deployed')) AS all_in_spec,
       bool_and(gain > 0 AND weight >= 1) AS positive,
       (SELECT bool_and(a.gain >= b.gain) FROM f a JOIN f b ON b.i = a.i + 1) AS sorted
FROM f;
-- describe: the blob's size, the XGBoost that wrote it, nine cut-offs
SELECT (d ->> 'model_bytes')::int > 1000 AS has_blob,
       d ->> 'xgboost_version' = icpml.xgboost_version() AS same_xgboost,
       d -> 'metrics' -> 'folds' AS folds,
       jsonb_array_length(d -> 'score_cutoffs') AS cutoffs,
       d ->> 'relation' AS relation, d ->> 'label_column' AS label
FROM icpml.describe_model() AS d;

-- the deployed model scores; a corrupt blob gives a clear error, not a crash
SELECT model, model_version FROM icpml.icp_score(5);
UPDATE icpml.models SET model = '\x0123456789abcdef' WHERE status = 'deployed';
-- (XGBoost's own text after the colon carries a time and addresses: cut)
DO $$
DECLARE
  hint text;
BEGIN
  PERFORM icpml.icp_score(5);
  RAISE NOTICE 'scored with a corrupt model';
EXCEPTION WHEN data_corrupted THEN
  GET STACKED DIAGNOSTICS hint = PG_EXCEPTION_HINT;
  RAISE NOTICE 'data_corrupted: %; hint: %', split_part(SQLERRM, ':', 1), hint;
END
$$;
-- back to the rules: scoring works again
SELECT action FROM icpml.undeploy_model();
SELECT model, model_version FROM icpml.icp_score(5);

-- leave the rules scoring for the tests after this one
SET client_min_messages = warning;
TRUNCATE icpml.models, icpml.deployments RESTART IDENTITY;
DROP SCHEMA icpml_ref CASCADE;
DROP VIEW account_features;
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
RESET client_min_messages;
