-- Training: metrics, argument checks, minimum data guard, cross-validation of
-- the model and the rules on the same folds, determinism, custom relations,
-- row-level security.
\set VERBOSITY default
\i sql/include/reference_generator.sql
SET icpml.nthread = 1;

-- 1. metrics: icpml.binary_metrics against the same definitions in SQL, on
--    40 rows with tied probabilities (ties count half / as one threshold)
CREATE TEMP TABLE m AS
SELECT g AS i, g % 3 = 0 AS y, round(((g * 37) % 23) / 22.0, 2)::float8 AS p
FROM generate_series(1, 40) g;
WITH pos AS (SELECT p FROM m WHERE y), neg AS (SELECT p FROM m WHERE NOT y),
auc AS (
  SELECT avg(CASE WHEN pos.p > neg.p THEN 1.0 WHEN pos.p = neg.p THEN 0.5 ELSE 0.0 END) AS v
  FROM pos, neg),
grp AS (SELECT p, sum(y::int) AS np, count(*) AS n FROM m GROUP BY p),
cum AS (
  SELECT p, np, n, sum(np) OVER w AS tp, sum(n) OVER w AS k
  FROM grp WINDOW w AS (ORDER BY p DESC)),
pr AS (
  SELECT tp / (SELECT count(*) FROM m WHERE y) AS recall, tp / k AS prec, p FROM cum),
ap AS (
  SELECT sum((recall - coalesce(lag_recall, 0)) * prec) AS v
  FROM (SELECT recall, prec, lag(recall) OVER (ORDER BY p DESC) AS lag_recall FROM pr) s),
top AS (   -- ceil(40 / 10) = 4 rows; a tie straddling the cut counts pro rata
  SELECT sum(np * greatest(0, least(n, 4 - (k - n)))::numeric / n) / 4 AS v FROM cum),
ll AS (
  SELECT avg(-CASE WHEN y THEN ln(least(greatest(p, 1e-15), 1 - 1e-15))
                   ELSE ln(1 - least(greatest(p, 1e-15), 1 - 1e-15)) END) AS v,
         avg((p - y::int) ^ 2) AS brier, avg(y::int) AS base
  FROM m)
SELECT abs(b.roc_auc - auc.v) < 1e-12 AS roc_auc_ok,
       abs(b.pr_auc - ap.v) < 1e-12 AS pr_auc_ok,
       abs(b.log_loss - ll.v) < 1e-12 AS log_loss_ok,
       abs(b.brier - ll.brier) < 1e-12 AS brier_ok,
       abs(b.precision_at_10 - top.v) < 1e-12 AS precision_ok,
       abs(b.lift_at_10 - top.v / ll.base) < 1e-12 AS lift_ok,
       round(b.roc_auc::numeric, 6) AS roc_auc, round(b.pr_auc::numeric, 6) AS pr_auc,
       round(b.precision_at_10::numeric, 6) AS precision_at_10
FROM icpml.binary_metrics(ARRAY(SELECT y FROM m ORDER BY i), ARRAY(SELECT p FROM m ORDER BY i)) b,
     auc, ap, top, ll;
-- perfect and inverted rankings; one class only gives NULLs
SELECT roc_auc, pr_auc, precision_at_10 FROM icpml.binary_metrics('{t,f,f,f}', '{0.9,0.1,0.2,0.3}');
SELECT roc_auc FROM icpml.binary_metrics('{t,f}', '{0.1,0.9}');
SELECT roc_auc, pr_auc FROM icpml.binary_metrics('{f,f}', '{0.1,0.9}');
SELECT * FROM icpml.binary_metrics('{t}', '{0.1,0.9}');
SELECT * FROM icpml.binary_metrics('{t,f}', '{0.1,1.5}');

-- 2. argument checks, before anything is read
CREATE TABLE small_features (id integer PRIMARY KEY, x double precision, grp text,
                             fit boolean, fit_num numeric, note json);
SELECT * FROM icpml.train_icp_model(relation => 'no_such_table');
SELECT * FROM icpml.train_icp_model(relation => 'small_features');              -- no account_id
SELECT * FROM icpml.train_icp_model(relation => 'small_features', key_column => 'id');  -- no is_fit
SELECT * FROM icpml.train_icp_model(relation => 'small_features', key_column => 'grp', label_column => 'fit');
SELECT * FROM icpml.train_icp_model(relation => 'small_features', key_column => 'id', label_column => 'grp');
SELECT * FROM icpml.train_icp_model(relation => 'small_features', key_column => 'id', label_column => 'id');
SELECT * FROM icpml.train_icp_model(relation => 'small_features', key_column => 'id', label_column => NULL);
SELECT * FROM icpml.train_icp_model(folds => 1);
SELECT * FROM icpml.train_icp_model(folds => 21);
SELECT * FROM icpml.train_icp_model(n_rounds => 0);
SELECT * FROM icpml.train_icp_model(deploy => 'sometimes');
SELECT * FROM icpml.train_icp_model(params => '[1]');
SELECT * FROM icpml.train_icp_model(params => '{"booster": "gblinear"}');
SELECT * FROM icpml.train_icp_model(params => '{"max_depth": 2.5}');
SELECT * FROM icpml.train_icp_model(params => '{"eta": 0}');
SELECT * FROM icpml.train_icp_model(params => '{"subsample": "half"}');
SELECT * FROM icpml.train_icp_model(params => '{"eta": 0.2}', search => true);
SELECT * FROM icpml.train_icp_model(relation => 'small_features', key_column => 'id',
                                    label_column => 'fit', exclude_columns => '{nope}');

-- 3. minimum data guard: nothing is written
INSERT INTO small_features
SELECT g, g, 'g' || g % 4, g % 2 = 0, g % 2, NULL FROM generate_series(1, 40) g;
SELECT * FROM icpml.train_icp_model(relation => 'small_features', key_column => 'id', label_column => 'fit');
INSERT INTO small_features
SELECT g, g, 'g' || g % 4, true, 1, NULL FROM generate_series(41, 100) g;
UPDATE small_features SET fit = true, fit_num = 1;
SELECT * FROM icpml.train_icp_model(relation => 'small_features', key_column => 'id', label_column => 'fit');
-- a numeric label must hold 0 and 1
UPDATE small_features SET fit_num = 2 WHERE id = 7;
SELECT * FROM icpml.train_icp_model(relation => 'small_features', key_column => 'id', label_column => 'fit_num');
-- 60 rows over 10 keys: too few distinct keys
CREATE VIEW dup_keys AS SELECT id % 10 AS id, x, id % 2 = 0 AS fit FROM small_features WHERE id <= 60;
SELECT * FROM icpml.train_icp_model(relation => 'dup_keys', key_column => 'id', label_column => 'fit');
-- more folds than keys of the rarer class
UPDATE small_features SET fit = (id <= 3);
SELECT * FROM icpml.train_icp_model(relation => 'small_features', key_column => 'id', label_column => 'fit');
SELECT count(*) AS models FROM icpml.models;

-- 4. zero-argument training on generated reference data: the model is
--    cross-validated against the rules on the same folds and deployed
SELECT count(*) FROM icpml_ref.generate(accounts => 3000, users => 0, interactions => 0,
                                        seed => 11, as_of => current_date::timestamptz);
SELECT version, deployed,
       regexp_replace(deploy_reason, '[0-9]+\.[0-9]+', 'N', 'g') AS deploy_reason,
       n_rows, n_positive,
       cv_roc_auc > rules_cv_roc_auc AS beats_rules,
       cv_roc_auc BETWEEN 0.7 AND 0.95 AS plausible_auc,
       cv_pr_auc > n_positive::float8 / n_rows AS pr_auc_above_base_rate,
       cv_lift_at_10 > 1.5 AS lifts, cv_log_loss < 0.6 AS log_loss_ok,
       cv_brier < 0.2 AS brier_ok, seconds > 0 AS timed
FROM icpml.train_icp_model();
SELECT version, status, relation, key_column, label_column, n_rows, seed,
       length(data_fingerprint) AS fingerprint_len, xgboost_version = icpml.xgboost_version() AS same_xgb,
       octet_length(model) > 1000 AS has_blob,
       round(cv_roc_auc::numeric, 12) = round((metrics #>> '{cv,model,roc_auc}')::numeric, 12) AS auc_stored
FROM icpml.models;
-- the spec: kinds per column, category levels most frequent first, at most 32 tags
SELECT c->>'name' AS column, c->>'kind' AS kind, jsonb_array_length(c->'levels') AS levels
FROM icpml.models, jsonb_array_elements(spec->'columns') AS c WHERE version = 1;
SELECT spec #>> '{columns,0,levels,0}' AS most_frequent_industry,
       jsonb_array_length(spec->'features') AS n_features,
       spec->'features'->0 AS first_feature
FROM icpml.models WHERE version = 1;
SELECT params FROM icpml.models WHERE version = 1;
-- metrics layout: both sides on the same 5 folds, ROC points, 10 calibration bins, importance
SELECT jsonb_object_keys(metrics) AS key FROM icpml.models WHERE version = 1 ORDER BY 1;
SELECT side, (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(metrics #> ARRAY['cv', side]) k) AS keys,
       jsonb_array_length(metrics #> ARRAY['cv', side, 'roc_auc_folds']) AS folds
FROM icpml.models, unnest(ARRAY['model', 'rules']) side WHERE version = 1;
SELECT jsonb_array_length(metrics->'roc') BETWEEN 2 AND 101 AS roc_points,
       (metrics #>> '{roc,0,fpr}')::float8 = 0 AND (metrics #>> '{roc,-1,tpr}')::float8 = 1 AS roc_ends,
       jsonb_array_length(metrics->'calibration') AS bins,
       (SELECT sum((b->>'n')::int) FROM jsonb_array_elements(metrics->'calibration') b) = n_rows AS bins_cover_rows,
       metrics->'search' AS search
FROM icpml.models WHERE version = 1;
-- importance is sorted by gain and names real features
SELECT bool_and(gain >= next_gain OR next_gain IS NULL) AS sorted,
       bool_and(feature IN (SELECT f->>'name' FROM icpml.models, jsonb_array_elements(spec->'features') f
                            WHERE version = 1)) AS known_features
FROM (SELECT (e->>'gain')::float8 AS gain, e->>'feature' AS feature,
             lead((e->>'gain')::float8) OVER (ORDER BY ord) AS next_gain
      FROM icpml.models, jsonb_array_elements(metrics->'importance') WITH ORDINALITY AS x(e, ord)
      WHERE version = 1) s;
-- score cut-offs: nine, non-decreasing; a calibrated score is monotonic
SELECT cardinality(score_cutoffs) AS n,
       (SELECT bool_and(a <= b) FROM unnest(score_cutoffs[1:8], score_cutoffs[2:9]) AS u(a, b)) AS non_decreasing,
       score_cutoffs[1] > 0 AS first_positive
FROM icpml.models WHERE version = 1;

-- 5. deterministic: the same seed gives the same folds, metrics, importance
--    and cut-offs (the blobs differ in the last bits of thresholds on age
--    features, which are relative to now())
SELECT version, deployed,
       regexp_replace(deploy_reason, '[0-9]+\.[0-9]+', 'N', 'g') AS deploy_reason
FROM icpml.train_icp_model(deploy => 'never');
SELECT a.metrics = b.metrics AS same_metrics,
       a.score_cutoffs = b.score_cutoffs AS same_cutoffs, a.data_fingerprint = b.data_fingerprint AS same_data
FROM icpml.models a, icpml.models b WHERE a.version = 1 AND b.version = 2;
-- another seed: other folds, the same data
SELECT (SELECT array_agg(fold ORDER BY key) FROM icpml.cv_folds(seed => 42))
    <> (SELECT array_agg(fold ORDER BY key) FROM icpml.cv_folds(seed => 43)) AS other_folds;
-- folds are stratified: positive and total counts per fold differ by at most one
SELECT max(n) - min(n) <= 1 AS sizes_balanced, max(np) - min(np) <= 1 AS positives_balanced,
       count(*) AS folds
FROM (SELECT c.fold, count(*) AS n, count(*) FILTER (WHERE f.is_fit) AS np
      FROM icpml.cv_folds() c JOIN account_features f ON f.account_id = c.key GROUP BY c.fold) s;
SELECT count(*) = (SELECT count(*) FROM account_features WHERE is_fit IS NOT NULL) AS every_labelled_key
FROM icpml.cv_folds(folds => 3);

-- 6. policy best: the same recipe on the same rows is nothing new: not deployed
SELECT version, deployed, regexp_replace(deploy_reason, '[0-9]+\.[0-9]+', 'N', 'g') AS deploy_reason
FROM icpml.train_icp_model(deploy => 'best');

-- 7. search: a 3 x 3 grid over max_depth x eta, chosen by mean CV ROC AUC
SELECT version, deployed FROM icpml.train_icp_model(search => true, n_rounds => 20, deploy => 'never');
SELECT jsonb_array_length(metrics->'search') AS settings,
       (SELECT max((s->>'cv_roc_auc')::numeric) FROM jsonb_array_elements(metrics->'search') s)
         = round(cv_roc_auc::numeric, 15) AS chose_best,
       (SELECT s->'params' FROM jsonb_array_elements(metrics->'search') s
        ORDER BY (s->>'cv_roc_auc')::float8 DESC LIMIT 1)
         = jsonb_build_object('max_depth', params->'max_depth', 'eta', params->'eta') AS params_recorded
FROM icpml.models WHERE version = 4;

-- 8. any relation: own key, 0/1 label, text, timestamp, text[] columns;
--    unusable types are skipped with a notice; no rule columns = no rules baseline
CREATE TABLE leads (
  lead_id integer PRIMARY KEY,
  converted smallint,
  channel varchar(10),
  employees numeric,
  first_seen timestamptz,
  interests varchar[],
  raw json,
  secret double precision
);
INSERT INTO leads
SELECT g, CASE WHEN g % 10 = 0 THEN NULL ELSE ((g * 7919) % 100 < 20 + 40 * (g % 3 = 0)::int)::int END,
       (ARRAY['web', 'event', 'referral', 'rare' || g])[1 + g % 4],
       CASE WHEN g % 17 = 0 THEN 'NaN'::numeric ELSE 10 + g % 500 END,
       now() - make_interval(days => g % 300),
       ARRAY[(ARRAY['Python', 'GO', 'java'])[1 + g % 3], 'Rust'],
       '{}', g
FROM generate_series(1, 400) g;
SELECT n_rows, n_positive, rules_cv_roc_auc, deployed,
       regexp_replace(deploy_reason, '[0-9]+\.[0-9]+', 'N', 'g') AS deploy_reason
FROM icpml.train_icp_model(relation => 'public.leads', key_column => 'lead_id',
                           label_column => 'converted', exclude_columns => '{secret}',
                           folds => 3, n_rounds => 20, params => '{"max_depth": 2, "min_child_weight": 2}',
                           deploy => 'never');
SELECT c->>'name' AS column, c->>'kind' AS kind, c->'levels' AS levels
FROM icpml.models, jsonb_array_elements(spec->'columns') AS c WHERE version = 5;
SELECT relation, key_column, label_column, metrics #> '{cv,rules}' AS rules,
       params->>'max_depth' AS max_depth, params->>'min_child_weight' AS min_child_weight
FROM icpml.models WHERE version = 5;

-- 9. training reads as the caller: row-level security limits the rows
CREATE ROLE icpml_test_trainer;
GRANT USAGE ON SCHEMA icpml TO icpml_test_trainer;
GRANT EXECUTE ON FUNCTION icpml.train_icp_model(text, text, text, text[], integer, integer, jsonb, boolean, integer, text, jsonb)
  TO icpml_test_trainer;
GRANT SELECT ON leads TO icpml_test_trainer;
ALTER TABLE leads ENABLE ROW LEVEL SECURITY;
CREATE POLICY first_300 ON leads FOR SELECT TO icpml_test_trainer USING (lead_id <= 300);
SET ROLE icpml_test_trainer;
SELECT n_rows, deployed FROM icpml.train_icp_model(relation => 'public.leads', key_column => 'lead_id',
                           label_column => 'converted', folds => 3, n_rounds => 5, deploy => 'never');
-- the store itself stays closed to the caller
SELECT count(*) FROM icpml.models;
RESET ROLE;
SELECT version, n_rows, created_by FROM icpml.models WHERE version = 6;

-- clean up: scoring goes back to the rules for the tests that follow
SELECT count(*) FROM icpml.undeploy_model();
SELECT count(icpml.delete_model(version)) FROM icpml.models;
DROP POLICY first_300 ON leads;
DROP TABLE leads, small_features CASCADE;
DROP OWNED BY icpml_test_trainer;
DROP ROLE icpml_test_trainer;
