-- Scoring with a deployed model: native evaluation equals XGBoost, scores
-- are monotonic in the probability, exact SHAP sums to the margin, missing
-- values score, the batch and the materialised table agree with icp_score.
\set VERBOSITY default
SET client_min_messages = warning;
\i sql/include/reference_generator.sql
SELECT count(*) FROM icpml_ref.generate(accounts => 4000, users => 5, interactions => 2000, seed => 3,
                                        as_of => '2026-01-01 00:00+00');
RESET client_min_messages;
SET icpml.nthread = 1;

SELECT version, deployed FROM icpml.train_icp_model(folds => 3, n_rounds => 40, deploy => 'always');
SELECT icpml.prewarm();

-- one account: the deployed model, its version, Saabas factors
SELECT model, model_version, factor_method, jsonb_array_length(factors) AS n_factors,
       score BETWEEN 1 AND 10 AS score_in_range, priority IN ('high', 'medium', 'low') AS tier_ok
FROM icpml.icp_score(17);

-- the native path equals XGBoost on real rows of the relation
SELECT model_version, n_rows, n_trees, max_abs_margin_diff < 1e-5 AS margins_equal,
       max_abs_contrib_diff < 1e-5 AS saabas_equal, max_abs_probability_diff < 1e-6 AS probabilities_equal,
       max_abs_shap_sum_diff < 1e-4 AS shap_sums_to_margin
FROM icpml.verify_model(rows => 4000);

-- a backend that only scores never loads XGBoost: the native evaluator reads
-- the stored blob itself, and libxgboost is opened by the first call that
-- needs it (explain_icp_score's exact SHAP here)
\c
SET icpml.nthread = 1;
CREATE FUNCTION pg_temp.xgboost_loaded() RETURNS boolean LANGUAGE sql AS
  $$ SELECT pg_read_file('/proc/' || pg_backend_pid() || '/maps') LIKE '%libxgboost%' $$;
SELECT model, score BETWEEN 1 AND 10 AS scored, jsonb_array_length(factors) AS n_factors
FROM icpml.icp_score(17);
SELECT count(*) AS scored FROM icpml.icp_score_batch(ARRAY[1, 2, 3]::bigint[]);
SELECT pg_temp.xgboost_loaded() AS xgboost_loaded_by_scoring;
SELECT count(*) > 0 AS explained FROM icpml.explain_icp_score(17);
SELECT pg_temp.xgboost_loaded() AS xgboost_loaded_by_explaining;

-- the scoring path reads the stored UBJSON itself: a blob edited after its
-- deploy (truncated, hostile lengths, nesting, trailing bytes) is refused
-- with the error XGBoost's loader gives, never read out of bounds
CREATE FUNCTION pg_temp.score_with_blob(blob bytea) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  detail text;
BEGIN
  UPDATE icpml.models SET model = blob WHERE status = 'deployed';
  PERFORM icpml.icp_score(17);
  RETURN 'scored';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
  RETURN SQLSTATE || ': ' || SQLERRM || coalesce(' (' || nullif(detail, '') || ')', '');
END
$$;
SELECT what, pg_temp.score_with_blob(blob) AS outcome
FROM (VALUES
  ('the stored blob', (SELECT model FROM icpml.models WHERE status = 'deployed')),
  ('truncated', (SELECT substring(model FOR 200) FROM icpml.models WHERE status = 'deployed')),
  ('a key length beyond the blob', '\x7b4c7fffffffffffffff'::bytea),
  ('a negative length', '\x7b4cffffffffffffffff'::bytea),
  ('a null member', '\x7b4c0000000000000001615a7d'::bytea),
  ('an unknown type marker', '\x7b4c000000000000000161587d'::bytea),
  ('nested too deeply', ('\x7b4c000000000000000161'::bytea || decode(repeat('5b', 100), 'hex'))),
  ('trailing bytes', (SELECT model || '\x00'::bytea FROM icpml.models WHERE status = 'deployed')),
  ('neither UBJSON nor JSON', '\x0123456789'::bytea),
  ('JSON text without a learner', convert_to('{"version": [1, 7, 4]}', 'UTF8'))
) AS t(what, blob);

-- exact TreeSHAP from explain_icp_score sums to the logit of icp_score's probability
SELECT bool_and(abs(x.total - ln(s.probability / (1 - s.probability))) < 1e-4) AS shap_sums_to_logit,
       bool_and(x.method = 'tree_shap') AS exact_shap, min(x.n) AS rows_per_account
FROM generate_series(1, 60) g
CROSS JOIN LATERAL (SELECT sum(contribution) AS total, min(method) AS method, count(*) AS n
                    FROM icpml.explain_icp_score(g)) x
CROSS JOIN LATERAL icpml.icp_score(g) s;
-- icp_score reports at most icpml.top_factors (3) factors per account
SELECT bool_and(jsonb_array_length(factors) <= 3) AS at_most_top_factors
FROM icpml.icp_score_batch(ARRAY(SELECT generate_series(1, 200)::bigint));

-- batch, single and materialised scores agree
SELECT icpml.score_all();
SELECT count(*) AS mismatches
FROM icpml.account_scores a
JOIN icpml.icp_score_batch(ARRAY(SELECT generate_series(1, 4000)::bigint)) b USING (account_id)
WHERE (a.score, a.priority, a.probability, a.model, a.model_version)
      IS DISTINCT FROM (b.score, b.priority, b.probability, b.model, b.model_version);
SELECT bool_and(s.probability = b.probability) AS single_equals_batch
FROM generate_series(1, 100) g
CROSS JOIN LATERAL icpml.icp_score(g) s
JOIN icpml.account_scores b ON b.account_id = g;

-- scores never decrease as the probability rises; priorities follow the scores
SELECT count(*) AS inversions
FROM (SELECT score, max(score) OVER (ORDER BY probability, score ROWS UNBOUNDED PRECEDING) AS running_max
      FROM icpml.account_scores) x
WHERE score < running_max;
SELECT priority, min(score), max(score) FROM icpml.account_scores GROUP BY 1 ORDER BY 2;

-- keep the model's probabilities to compare with the rules' below
CREATE TEMP TABLE model_p AS SELECT account_id, probability FROM icpml.account_scores;

-- an account whose every feature is missing still scores (missing = XGBoost's default branches)
INSERT INTO account_signals (account_id) VALUES (999999);
SELECT account_id, model, score BETWEEN 1 AND 10 AS scored,
       (SELECT count(*) FROM icpml.explain_icp_score(999999) WHERE value IS NOT NULL) AS known_values
FROM icpml.icp_score(999999);

-- undeploy: back to the rules at once, in this backend too
SELECT (icpml.undeploy_model()).action;
SELECT model, model_version, factor_method FROM icpml.icp_score(17);
SELECT icpml.prewarm();

-- the model tracks the hidden ground truth more closely than the rules
SELECT icpml.score_all();
SELECT corr(m.probability, icpml_ref.true_fit_probability(m.account_id))
       > corr(r.probability, icpml_ref.true_fit_probability(r.account_id)) AS model_closer_to_truth
FROM model_p m JOIN icpml.account_scores r USING (account_id);

SET client_min_messages = warning;
DROP SCHEMA icpml_ref CASCADE;
DROP VIEW account_features;
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
TRUNCATE icpml.account_scores;
DELETE FROM icpml.deployments;
DELETE FROM icpml.models;
