-- Smoke test of an installed icpml (test/run image, test/run portable): loads the
-- reference data from the files the installation put in the extension directory,
-- creates pg_cron and icpml, and checks scoring, training, recommending, feedback,
-- scheduling and the scoring grant.  Each check raises an error when it fails
-- (run with ON_ERROR_STOP); psql -v extdir=<sharedir>/extension.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
\pset footer off

\echo '-- reference data (from the installed extension directory)'
\i :extdir/icpml_reference_schema.sql
\i :extdir/icpml_generate.sql
SELECT * FROM icpml_ref.generate(accounts => 2000, users => 4, interactions => 10000, seed => 42);

\echo '-- extensions (pg_cron preloaded)'
SHOW shared_preload_libraries;
CREATE EXTENSION IF NOT EXISTS pg_cron;   -- the image's init script may have made them
CREATE EXTENSION IF NOT EXISTS icpml;
SET icpml.nthread = 1;
SELECT extname, extversion FROM pg_extension WHERE extname IN ('icpml', 'pg_cron') ORDER BY 1;
SELECT icpml.xgboost_version() AS xgboost;

\echo '-- rule-based scores'
SELECT account_id, score, priority, round(probability::numeric, 3) AS probability, model
FROM icpml.icp_score_batch(ARRAY[1, 2, 3]);
DO $$
BEGIN
  IF (SELECT count(*) FROM icpml.icp_score_batch(ARRAY[1, 2, 3])
      WHERE score BETWEEN 1 AND 10 AND model = 'rules') <> 3 THEN
    RAISE EXCEPTION 'smoke: rule-based scores are wrong';
  END IF;
END
$$;

\echo '-- training (XGBoost, 3-fold CV, deployed)'
SELECT version, deployed, n_rows, round(cv_roc_auc::numeric, 3) AS cv_auc,
       round(rules_cv_roc_auc::numeric, 3) AS rules_cv_auc
FROM icpml.train_icp_model(folds => 3, n_rounds => 20, deploy => 'always');
SELECT account_id, score, priority, round(probability::numeric, 3) AS probability, model, model_version
FROM icpml.icp_score_batch(ARRAY[1, 2, 3]);
SELECT n_rows, n_trees, max_abs_probability_diff < 1e-6 AS native_agrees_with_xgboost
FROM icpml.verify_model(rows => 500);
DO $$
BEGIN
  IF (SELECT count(*) FROM icpml.icp_score_batch(ARRAY[1, 2, 3]) WHERE model_version = 1) <> 3 THEN
    RAISE EXCEPTION 'smoke: the deployed model does not score';
  END IF;
  IF NOT (SELECT n_rows > 0 AND max_abs_probability_diff < 1e-6 FROM icpml.verify_model(rows => 500)) THEN
    RAISE EXCEPTION 'smoke: XGBoost and the native evaluator disagree';
  END IF;
END
$$;
SELECT icpml.score_all() AS accounts_scored;

\echo '-- recommendations and feedback'
SELECT user_id AS smoke_user FROM sales_users ORDER BY user_id LIMIT 1 \gset
SELECT icpml.enable_online_feedback() AS feedback_trigger;
SELECT rank, account_id, icp_score, priority FROM icpml.recommend_accounts(:'smoke_user', 5, seed => 1);
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT r.user_id, r.account_id, 'meeting'
FROM icpml.recommendations r WHERE r.user_id = :'smoke_user' AND r.status = 'pending'
ORDER BY r.recommendation_id LIMIT 2;
SELECT status, count(*) FROM icpml.recommendations GROUP BY status ORDER BY status;
DO $$
BEGIN
  IF (SELECT count(*) FROM icpml.recommendations) <> 5 THEN
    RAISE EXCEPTION 'smoke: recommend_accounts did not serve and log 5 accounts';
  END IF;
  IF (SELECT count(*) FROM icpml.recommendations WHERE status = 'rewarded') <> 2 THEN
    RAISE EXCEPTION 'smoke: feedback was not attributed';
  END IF;
  IF (SELECT coalesce(sum(n), 0) FROM icpml.bandit_state) = 0 THEN
    RAISE EXCEPTION 'smoke: the bandit did not learn from feedback';
  END IF;
END
$$;

\echo '-- scheduled retraining (pg_cron)'
SELECT icpml.schedule_retraining(cron => '0 3 * * *') > 0 AS scheduled;
SELECT jobname, schedule FROM cron.job;

\echo '-- a scoring role (grant_scoring)'
CREATE ROLE smoke_app;
SELECT icpml.grant_scoring('smoke_app');
GRANT SELECT ON account_features, account_signals, research_runs TO smoke_app;
SET ROLE smoke_app;
SELECT account_id, score, model_version FROM icpml.icp_score(1);
RESET ROLE;

\echo 'smoke: ok'
