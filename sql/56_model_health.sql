-- Watching a deployed model (#14 items 5 and 6): training statistics stored
-- with the model, model_health() per-feature drift (PSI), score tiers and
-- checks on labels that arrived after training, retraining_needed(),
-- run_training(retrain => 'needed'), and the model card.
\set VERBOSITY default
SET client_min_messages = warning;
TRUNCATE icpml.models, icpml.deployments, icpml.training_runs RESTART IDENTITY;
RESET client_min_messages;
\i sql/include/reference_generator.sql
SELECT count(*) FROM icpml_ref.generate(accounts => 3000, users => 0, interactions => 0,
                                        seed => 13, as_of => '2025-06-01 00:00+00');
SET icpml.nthread = 1;
-- the reference accounts, ages as numbers (what model_health sees does not move with the clock)
CREATE TABLE accounts AS
SELECT account_id, industry, engineering_role_count, has_open_engineering_roles, total_open_roles,
       has_engineering_blog, company_size, funding_amount_usd,
       '2025-06-01'::date - funding_date AS funding_age, tech_stack, is_fit
FROM account_features;
ALTER TABLE accounts ADD PRIMARY KEY (account_id);
SELECT version, deployed FROM icpml.train_icp_model(relation => 'accounts', key_column => 'account_id',
  label_column => 'is_fit', folds => 3, n_rounds => 40, deploy => 'always');

-- what training recorded: the population and the labels it learnt from
SELECT (training_stats->>'rows')::int AS population, (training_stats->>'labelled')::int AS labelled,
       jsonb_array_length(training_stats->'columns') AS columns,
       length(training_labels) / 9 AS training_labels
FROM icpml.models WHERE version = 1;

-- unchanged data: no drift, nothing new, no retraining
SELECT check_name, item, round(statistic::numeric, 4) AS psi, status
FROM icpml.model_health() WHERE check_name = 'drift';
SELECT check_name, item, round(training::numeric, 4) AS training, round(current::numeric, 4) AS current, n, status
FROM icpml.model_health() WHERE check_name IN ('scores', 'labels', 'summary');
SELECT * FROM icpml.retraining_needed();
-- another sample of the same population (the generator with another seed): no drift either
SELECT count(*) FROM icpml_ref.generate(accounts => 3000, users => 0, interactions => 0,
                                        seed => 14, as_of => '2025-06-01 00:00+00');
CREATE TABLE resampled AS
SELECT account_id, industry, engineering_role_count, has_open_engineering_roles, total_open_roles,
       has_engineering_blog, company_size, funding_amount_usd,
       '2025-06-01'::date - funding_date AS funding_age, tech_stack, is_fit
FROM account_features;
SELECT count(*) FILTER (WHERE status <> 'ok') AS drifted, round(max(statistic)::numeric, 2) AS max_psi
FROM icpml.model_health(relation => 'resampled') WHERE check_name = 'drift';

-- a shifted copy: bigger companies, a new industry for a third of the accounts
CREATE TABLE shifted AS SELECT * FROM accounts;
UPDATE shifted SET company_size = company_size * 6,
                   industry = CASE WHEN account_id % 3 = 0 THEN 'crypto' ELSE industry END;
SELECT item, round(statistic::numeric, 2) AS psi, status, detail
FROM icpml.model_health(relation => 'shifted') WHERE check_name = 'drift' AND status <> 'ok';
SELECT status, detail FROM icpml.model_health(relation => 'shifted') WHERE check_name = 'summary';
-- a relation without the label column: the label checks say so
CREATE VIEW unlabelled AS SELECT account_id, industry, engineering_role_count, has_open_engineering_roles,
  total_open_roles, has_engineering_blog, company_size, funding_amount_usd, funding_age, tech_stack FROM accounts;
SELECT check_name, item, status, detail FROM icpml.model_health(relation => 'unlabelled') WHERE check_name = 'labels';
-- ... and one without the model's columns is an error naming the column
SELECT * FROM icpml.model_health(relation => 'icpml.health_settings');

-- new labels that contradict the model: decay on them alone
UPDATE accounts AS a SET is_fit = s.probability < 0.2
FROM icpml.icp_score_batch(ARRAY(SELECT account_id FROM accounts WHERE is_fit IS NULL)) AS s
WHERE s.account_id = a.account_id;
SELECT check_name, item, round(training::numeric, 2) AS training, round(current::numeric, 2) AS current,
       n, status
FROM icpml.model_health() WHERE check_name IN ('labels', 'calibration');
SELECT needed, regexp_replace(reason, '[0-9]+\.[0-9]+', 'N', 'g') AS reason FROM icpml.retraining_needed();

-- the retraining policy: trains when needed (and says why), else skips
CALL icpml.run_training(retrain => 'needed', triggered_by => 'manual');
SELECT run_id, status, version, deployed, regexp_replace(reason, '[0-9]+\.[0-9]+', 'N', 'g') AS reason
FROM icpml.training_history;
CALL icpml.run_training(retrain => 'needed', triggered_by => 'manual');
SELECT run_id, status, version, regexp_replace(reason, '[0-9]+\.[0-9]+', 'N', 'g') AS reason
FROM icpml.training_history LIMIT 1;
-- the retrained model repeats the deployed recipe (relation, label, columns, parameters)
SELECT m.version, m.relation, m.label_column, m.dataset = d.dataset AS same_dataset,
       m.params - 'seed' = d.params - 'seed' AS same_params
FROM icpml.models AS m, icpml.models AS d WHERE m.version = 2 AND d.version = 1;
CALL icpml.run_training(retrain => 'sometimes');
-- the model's age alone makes retraining due
UPDATE icpml.health_settings SET max_model_age = '0 seconds';
SELECT needed, regexp_replace(reason, '[0-9]+', 'N', 'g') AS reason FROM icpml.retraining_needed();
UPDATE icpml.health_settings SET max_model_age = DEFAULT;
-- thresholds are settings (checked: the alert is at least the watch level); a tight one
-- flags the smallest drift
UPDATE icpml.health_settings SET psi_watch = 0.000001, psi_alert = 0.000001;
SELECT count(*) FILTER (WHERE status = 'drift') > 0 AS flagged
FROM icpml.model_health(relation => 'shifted') WHERE check_name = 'drift';
UPDATE icpml.health_settings SET psi_alert = 0.01, psi_watch = 0.1;
UPDATE icpml.health_settings SET psi_watch = DEFAULT, psi_alert = DEFAULT;

-- a model trained before icpml 0.4.0 (no statistics): drift is unknown, labels still checked
UPDATE icpml.models SET training_stats = NULL, training_labels = NULL WHERE version = 2;
SELECT check_name, item, status FROM icpml.model_health(version => 2) WHERE check_name IN ('drift', 'summary');

-- the model card
SELECT jsonb_object_keys(icpml.describe_model(version => 1)->'card') AS card ORDER BY 1;
SELECT c->'rows' AS rows, round((c->>'label_rate')::numeric, 3) AS label_rate,
       c->'dataset'->>'relation' AS relation, c->>'xgboost_version' = icpml.xgboost_version() AS xgboost,
       jsonb_array_length(c->'top_features') AS top_features,
       jsonb_array_length(c->'training_statistics') AS columns,
       c->'training_statistics'->0 ? 'top' AS category_shares
FROM (SELECT icpml.describe_model(version => 1)->'card' AS c) AS x;
SELECT icpml.describe_model(version => 1) ? 'training_labels' AS labels_shown;

SELECT count(*) FROM icpml.undeploy_model();
SET client_min_messages = warning;
TRUNCATE icpml.models, icpml.deployments, icpml.training_runs RESTART IDENTITY;
DROP TABLE accounts, shifted, resampled CASCADE;
DROP SCHEMA icpml_ref CASCADE;
DROP VIEW account_features;
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
RESET client_min_messages;
