-- Models belong to a dataset (#14 item 1): relation, key, label and the
-- feature columns.  Deploy policy best compares a candidate only with a
-- deployed model of the same dataset, on the candidate's own folds (the
-- deployed model's recipe cross-validated on them); deploying a model of
-- another dataset is explicit and says what it replaces.
\set VERBOSITY default
SET client_min_messages = warning;
TRUNCATE icpml.models, icpml.deployments RESTART IDENTITY;
RESET client_min_messages;
\i sql/include/reference_generator.sql
SELECT count(*) FROM icpml_ref.generate(accounts => 1500, users => 0, interactions => 0,
                                        seed => 11, as_of => '2025-06-01 00:00+00');
SET icpml.nthread = 1;
-- ages relative to a fixed day, so that the results do not depend on today
CREATE TABLE accounts AS
SELECT account_id, industry, engineering_role_count, has_open_engineering_roles, total_open_roles,
       has_engineering_blog, company_size, funding_amount_usd,
       '2025-06-01'::date - funding_date AS funding_age, tech_stack, is_fit
FROM account_features;
-- another dataset: the same accounts with another label, a scoring team's conversions
CREATE TABLE conversions AS
SELECT account_id AS lead_id, industry, company_size, engineering_role_count,
       (company_size BETWEEN 40 AND 2000 AND engineering_role_count > 2) AS converted
FROM account_features;

-- A: the accounts' fit, deployed
SELECT version, deployed, deploy_reason
FROM icpml.train_icp_model(relation => 'accounts', key_column => 'account_id', label_column => 'is_fit',
                           folds => 3, n_rounds => 20, deploy => 'always');
-- B: another dataset; best does not compare it with A
SELECT version, deployed, deploy_reason
FROM icpml.train_icp_model(relation => 'conversions', key_column => 'lead_id', label_column => 'converted',
                           folds => 3, n_rounds => 20);
SELECT version, status, relation, key_column, label_column, dataset IS NOT NULL AS has_dataset
FROM icpml.list_models();
SELECT count(DISTINCT dataset) AS datasets FROM icpml.list_models();

-- deploying B is explicit, and the log says what it replaced
SELECT icpml.deploy_model(version => 2);
SELECT version, action, previous_version, regexp_replace(reason, 'dataset [0-9a-f]+', 'dataset X') AS reason
FROM icpml.deploy_model(version => 2, replace_dataset => true, reason => 'the sales team scores conversions now');
-- a rollback may cross datasets (it is explicit), and says so
SELECT version, action, regexp_replace(reason, 'dataset [0-9a-f]+', 'dataset X', 'g') AS reason
FROM icpml.rollback_model();

-- the same recipe on the same rows: nothing new, not deployed
SELECT version, deployed, deploy_reason
FROM icpml.train_icp_model(relation => 'accounts', key_column => 'account_id', label_column => 'is_fit',
                           folds => 3, n_rounds => 20);
-- new labels arrive: the same recipe, retrained on the current rows, is deployed
UPDATE accounts SET is_fit = NOT is_fit WHERE account_id % 97 = 0 AND is_fit IS NOT NULL;
SELECT version, deployed, regexp_replace(deploy_reason, '[0-9]+\.[0-9]+', 'N', 'g') AS reason
FROM icpml.train_icp_model(relation => 'accounts', key_column => 'account_id', label_column => 'is_fit',
                           folds => 3, n_rounds => 20);

-- another recipe: the deployed recipe is cross-validated on the candidate's folds
SELECT version AS candidate, deployed, regexp_replace(deploy_reason, '[0-9]+\.[0-9]+', 'N', 'g') AS reason
FROM icpml.train_icp_model(relation => 'accounts', key_column => 'account_id', label_column => 'is_fit',
                           folds => 3, n_rounds => 20, seed => 5, params => '{"max_depth": 1}') \gset
SELECT :'reason' AS reason;
SELECT metrics->'cv'->'deployed'->>'version' AS compared_with,
       metrics->'cv'->'deployed'->>'same_recipe' AS same_recipe
FROM icpml.models WHERE version = :candidate;
-- ... and its figure is what that recipe gets on these folds (seed 5's; the metrics
-- jsonb keeps 15 significant digits)
SELECT round((SELECT (metrics->'cv'->'deployed'->>'roc_auc')::numeric FROM icpml.models WHERE version = :candidate), 12)
       = round(t.cv_roc_auc::numeric, 12) AS same_figure
FROM icpml.train_icp_model(relation => 'accounts', key_column => 'account_id', label_column => 'is_fit',
                           folds => 3, n_rounds => 20, seed => 5, params => '{"max_depth": 3, "eta": 0.1}',
                           deploy => 'never') AS t;
SELECT (SELECT cv_roc_auc FROM icpml.models WHERE version = 4) <>
       (SELECT (metrics->'cv'->'deployed'->>'roc_auc')::float8 FROM icpml.models WHERE version = :candidate)
       AS differs_from_its_own_folds;

-- more feature columns make another dataset (the spec fingerprint)
ALTER TABLE accounts ADD COLUMN lucky boolean;
UPDATE accounts SET lucky = account_id % 3 = 0;
SELECT version, deployed, regexp_replace(deploy_reason, 'dataset [0-9a-f]+', 'dataset X', 'g') AS reason
FROM icpml.train_icp_model(relation => 'accounts', key_column => 'account_id', label_column => 'is_fit',
                           folds => 3, n_rounds => 20);
-- policy always replaces another dataset and says so
SELECT version, deployed, regexp_replace(deploy_reason, 'dataset [0-9a-f]+', 'dataset X', 'g') AS reason
FROM icpml.train_icp_model(relation => 'conversions', key_column => 'lead_id', label_column => 'converted',
                           folds => 3, n_rounds => 20, deploy => 'always');
-- apply_deploy_policy (stored figures, no CV): best refuses another dataset too
SELECT deployed, regexp_replace(reason, 'dataset [0-9a-f]+', 'dataset X', 'g') AS reason
FROM icpml.apply_deploy_policy(version => 1, policy => 'best');

-- the dataset comes from the row itself: a hand edit of the label changes it
SELECT dataset = (SELECT dataset FROM icpml.models WHERE version = 1) AS same_before
FROM icpml.models WHERE version = 3;
UPDATE icpml.models SET label_column = 'other' WHERE version = 3;
SELECT dataset = (SELECT dataset FROM icpml.models WHERE version = 1) AS same_after
FROM icpml.models WHERE version = 3;

SELECT count(*) FROM icpml.undeploy_model();
SELECT count(icpml.delete_model(version)) FROM icpml.models;
DROP TABLE accounts, conversions;
SET client_min_messages = warning;
DROP VIEW account_features;
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
DROP SCHEMA icpml_ref CASCADE;
RESET client_min_messages;
-- the tests after this one number their model versions from 1
SELECT setval('icpml.models_version_seq', 1, false);
