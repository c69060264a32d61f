-- icpml install script, assembled by the Makefile from sql/parts/*.sql.
\echo Use "CREATE EXTENSION icpml" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Core
-- ---------------------------------------------------------------------------

CREATE FUNCTION icpml.xgboost_version()
RETURNS text
AS 'MODULE_PATHNAME', 'xgboost_version'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION icpml.xgboost_version() IS
  'Version of the XGBoost library icpml is linked against, as loaded at run time';

-- Statement trigger on icpml's tables: backends drop their caches after the
-- writing transaction commits (relcache invalidation).
CREATE FUNCTION icpml.invalidate_cache()
RETURNS trigger
AS 'MODULE_PATHNAME', 'invalidate_cache'
LANGUAGE C;
-- ---------------------------------------------------------------------------
-- Rule-based ICP score (the baseline before there is a model)
-- ---------------------------------------------------------------------------

CREATE TABLE icpml.rule_weights (
  factor      text PRIMARY KEY CHECK (factor IN (
                'bias', 'engineering_roles', 'open_engineering_roles',
                'total_open_roles', 'engineering_blog', 'company_size_fit',
                'recent_funding', 'funding_amount', 'tech_stack_alignment')),
  weight      double precision NOT NULL
                CHECK (weight NOT IN ('NaN', 'Infinity', '-Infinity')),
  description text NOT NULL
);

COMMENT ON TABLE icpml.rule_weights IS
  'Weights (logit units) of the rule-based ICP score; each factor is scaled to [0, 1] first';

INSERT INTO icpml.rule_weights (factor, weight, description) VALUES
  ('bias',                   -3.0, 'intercept: an account with no signals scores p = 0.05'),
  ('engineering_roles',       1.5, 'log(1 + engineering_role_count) / log(1 + engineering_roles_cap), capped at 1'),
  ('open_engineering_roles',  0.8, '1 when has_open_engineering_roles'),
  ('total_open_roles',        0.5, 'log(1 + total_open_roles) / log(1 + open_roles_cap), capped at 1'),
  ('engineering_blog',        0.7, '1 when has_engineering_blog'),
  ('company_size_fit',        1.2, '1 inside [size_min, size_max]; size/size_min below; 1 - log10(size/size_max) above'),
  ('recent_funding',          1.0, '1 - age/funding_window_days for a round inside the window, else 0'),
  ('funding_amount',          0.5, 'log10(1 + funding_amount_usd) / 8, capped at 1, for a round inside the window'),
  ('tech_stack_alignment',    2.0, 'share of rule_settings.target_stack found in tech_stack (case-insensitive)');

CREATE TABLE icpml.rule_settings (
  singleton           boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  target_stack        text[]  NOT NULL DEFAULT '{postgresql,python,kubernetes,aws,go}',
  size_min            integer NOT NULL DEFAULT 50 CHECK (size_min > 0),
  size_max            integer NOT NULL DEFAULT 1000 CHECK (size_max >= size_min),
  funding_window_days integer NOT NULL DEFAULT 540 CHECK (funding_window_days > 0),
  engineering_roles_cap integer NOT NULL DEFAULT 50 CHECK (engineering_roles_cap > 0),
  open_roles_cap      integer NOT NULL DEFAULT 200 CHECK (open_roles_cap > 0),
  high_min_score      integer NOT NULL DEFAULT 8 CHECK (high_min_score BETWEEN 1 AND 10),
  medium_min_score    integer NOT NULL DEFAULT 5,
  CHECK (medium_min_score BETWEEN 1 AND high_min_score)
);

COMMENT ON TABLE icpml.rule_settings IS
  'One row: target tech stack, company size band, funding window, scaling caps and priority tiers of the rule-based score';

INSERT INTO icpml.rule_settings DEFAULT VALUES;

CREATE TRIGGER rule_weights_invalidate
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON icpml.rule_weights
  FOR EACH STATEMENT EXECUTE FUNCTION icpml.invalidate_cache();
CREATE TRIGGER rule_settings_invalidate
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON icpml.rule_settings
  FOR EACH STATEMENT EXECUTE FUNCTION icpml.invalidate_cache();

CREATE TYPE icpml.icp_score_result AS (
  account_id    bigint,
  score         integer,
  priority      text,
  probability   double precision,
  model         text,
  model_version integer,
  factors       jsonb,
  factor_method text
);

COMMENT ON TYPE icpml.icp_score_result IS
  'One ICP score: score 1-10, priority high/medium/low, probability, the model that produced it and its top factors';

CREATE FUNCTION icpml.icp_score(account_id bigint)
RETURNS icpml.icp_score_result
AS 'MODULE_PATHNAME', 'icp_score'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION icpml.icp_score(bigint) IS
  'ICP score of one account, read from icpml.feature_relation as the caller (row-level security applies)';

CREATE FUNCTION icpml.icp_score_batch(account_ids bigint[])
RETURNS SETOF icpml.icp_score_result
AS 'MODULE_PATHNAME', 'icp_score_batch'
LANGUAGE C STABLE STRICT PARALLEL SAFE
ROWS 100;

COMMENT ON FUNCTION icpml.icp_score_batch(bigint[]) IS
  'ICP scores of many accounts, one row per element in order; unknown ids give NULL scores';
-- ---------------------------------------------------------------------------
-- Model store: versioned ICP models, deployments and their history
--
-- Written only through icpml's own functions (train_icp_model, deploy_model,
-- rollback_model, undeploy_model, delete_model; C code in model_store.c,
-- running as the extension owner).  Not granted to any application role;
-- icpml.grant_admin(role) opens them to administrators.
-- ---------------------------------------------------------------------------

CREATE TABLE icpml.models (
  version           serial PRIMARY KEY CHECK (version > 0),
  created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
  created_by        name NOT NULL DEFAULT CURRENT_USER,
  status            text NOT NULL DEFAULT 'trained'
                      CHECK (status IN ('trained', 'deployed', 'retired')),
  relation          text,
  key_column        text,
  label_column      text,
  model             bytea NOT NULL,
  spec              jsonb NOT NULL,
  params            jsonb,
  metrics           jsonb,
  n_rows            bigint CHECK (n_rows >= 0),
  n_positive        bigint CHECK (n_positive >= 0),
  seed              integer,
  data_fingerprint  text,
  xgboost_version   text,
  score_cutoffs     double precision[] NOT NULL
                      CHECK (pg_catalog.cardinality(score_cutoffs) = 9
                             AND pg_catalog.array_position(score_cutoffs, NULL) IS NULL),
  high_min_score    integer NOT NULL DEFAULT 8 CHECK (high_min_score BETWEEN 1 AND 10),
  medium_min_score  integer NOT NULL DEFAULT 5,
  cv_roc_auc        double precision,
  rules_cv_roc_auc  double precision,
  CHECK (medium_min_score BETWEEN 1 AND high_min_score)
);

-- At most one deployed model: the one scoring uses.
CREATE UNIQUE INDEX models_one_deployed ON icpml.models ((true)) WHERE status = 'deployed';

COMMENT ON TABLE icpml.models IS
  'Versioned ICP models: XGBoost UBJSON blob, feature spec, params, cross-validated metrics and score cut-offs; at most one is deployed';
COMMENT ON COLUMN icpml.models.status IS
  'trained (never deployed), deployed (scoring uses it; at most one), retired (was deployed)';
COMMENT ON COLUMN icpml.models.model IS
  'The booster as XGBoost UBJSON (XGBoosterSaveModelToBuffer), loaded from memory: no temporary files';
COMMENT ON COLUMN icpml.models.spec IS
  'Feature spec: relation, key, columns with their kinds and category levels, feature names and types';
COMMENT ON COLUMN icpml.models.metrics IS
  'Cross-validation of the model and of the rules on the same folds, ROC points, calibration bins, feature importance';
COMMENT ON COLUMN icpml.models.score_cutoffs IS
  'Nine increasing probabilities: score = 1 + number of cut-offs at or below the probability';
COMMENT ON COLUMN icpml.models.cv_roc_auc IS
  'Mean cross-validated ROC AUC: the yardstick of the deploy policy best';
COMMENT ON COLUMN icpml.models.rules_cv_roc_auc IS
  'ROC AUC of the rule-based score on the same folds; NULL when the relation lacks the rules'' signals';

CREATE TABLE icpml.deployments (
  id                bigserial PRIMARY KEY,
  version           integer,
  action            text NOT NULL CHECK (action IN ('deploy', 'rollback', 'undeploy')),
  previous_version  integer,
  reason            text,
  at                timestamptz NOT NULL DEFAULT pg_catalog.now(),
  by                name NOT NULL DEFAULT CURRENT_USER,
  CHECK ((action = 'undeploy') = (version IS NULL))
);

COMMENT ON TABLE icpml.deployments IS
  'Deployment history: which version was deployed (NULL after undeploy), which one it replaced, why, when and by whom';

CREATE TABLE icpml.training_runs (
  run_id         bigserial PRIMARY KEY,
  started_at     timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  finished_at    timestamptz,
  status         text NOT NULL DEFAULT 'running'
                   CHECK (status IN ('running', 'succeeded', 'failed', 'abandoned')),
  triggered_by   text NOT NULL CHECK (triggered_by IN ('manual', 'schedule')),
  deploy_policy  text NOT NULL,
  run_by         name NOT NULL DEFAULT CURRENT_USER,
  pid            integer NOT NULL DEFAULT pg_catalog.pg_backend_pid(),
  version        integer,
  deployed       boolean,
  deploy_reason  text,
  metrics        jsonb,
  error          text,
  CHECK ((status = 'running') = (finished_at IS NULL))
);

COMMENT ON TABLE icpml.training_runs IS
  'One row per icpml.run_training() call (scheduled or manual): start, end, outcome, model version, metrics, error';

-- pg_dump keeps the models, the history and the run log with the extension.
SELECT pg_catalog.pg_extension_config_dump('icpml.models', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.models_version_seq', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.deployments', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.deployments_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.training_runs', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.training_runs_run_id_seq', '');

-- Backends drop their cached booster when a change commits (see catalog.c).
CREATE TRIGGER models_invalidate
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON icpml.models
  FOR EACH STATEMENT EXECUTE FUNCTION icpml.invalidate_cache();
CREATE TRIGGER deployments_invalidate
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON icpml.deployments
  FOR EACH STATEMENT EXECUTE FUNCTION icpml.invalidate_cache();

-- ---------------------------------------------------------------------------
-- Deploying (C, model_store.c: runs as the extension owner, records the caller)
-- ---------------------------------------------------------------------------

CREATE FUNCTION icpml.deploy_model(version integer, reason text DEFAULT NULL)
RETURNS icpml.deployments
AS 'MODULE_PATHNAME', 'deploy_model'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.deploy_model(integer, text) IS
  'Deploy a stored model version (the deployed one is retired); returns the history row, NULL when it was already deployed';

CREATE FUNCTION icpml.rollback_model(reason text DEFAULT NULL)
RETURNS icpml.deployments
AS 'MODULE_PATHNAME', 'rollback_model'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.rollback_model(text) IS
  'Undo the latest deploy or undeploy: re-deploy the version that was deployed before it (deleted versions are skipped)';

CREATE FUNCTION icpml.undeploy_model(reason text DEFAULT NULL)
RETURNS icpml.deployments
AS 'MODULE_PATHNAME', 'undeploy_model'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.undeploy_model(text) IS
  'Retire the deployed model: scoring goes back to the rules; NULL when nothing was deployed';

CREATE FUNCTION icpml.delete_model(version integer)
RETURNS void
AS 'MODULE_PATHNAME', 'delete_model'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.delete_model(integer) IS
  'Delete a stored model version that is not deployed (its deployment history stays)';

CREATE FUNCTION icpml.apply_deploy_policy(version integer, policy text DEFAULT 'best',
                                          OUT deployed boolean, OUT reason text)
RETURNS record
AS 'MODULE_PATHNAME', 'apply_deploy_policy'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.apply_deploy_policy(integer, text) IS
  'Apply a deploy policy to a stored version, as training does: best (deploy if its CV ROC AUC beats the deployed model''s, or the rules'' on the same folds when none is deployed), always, never; says what was compared';

-- ---------------------------------------------------------------------------
-- Reading the store (SQL, SECURITY DEFINER: EXECUTE is the gate)
-- ---------------------------------------------------------------------------

CREATE FUNCTION icpml.list_models()
RETURNS TABLE (version integer, created_at timestamptz, created_by name, status text,
               relation text, label_column text, n_rows bigint, n_positive bigint,
               cv_roc_auc double precision, rules_cv_roc_auc double precision,
               xgboost_version text, model_bytes integer)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT m.version, m.created_at, m.created_by, m.status, m.relation, m.label_column,
         m.n_rows, m.n_positive, m.cv_roc_auc, m.rules_cv_roc_auc, m.xgboost_version,
         pg_catalog.octet_length(m.model)
  FROM icpml.models AS m
  ORDER BY m.version
$$;

COMMENT ON FUNCTION icpml.list_models() IS
  'Stored model versions, oldest first, with status, data size and cross-validated ROC AUC (model and rules)';

-- The version a reader means: the given one (which must exist) or the deployed one.
CREATE FUNCTION icpml.model_version_or_deployed(version integer)
RETURNS integer
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v integer;
BEGIN
  IF model_version_or_deployed.version IS NULL THEN
    SELECT m.version INTO v FROM icpml.models AS m WHERE m.status = 'deployed';
    IF NOT FOUND THEN
      RAISE EXCEPTION 'no model is deployed'
        USING ERRCODE = 'no_data_found',
              HINT = 'Pass a version (see icpml.list_models()), or deploy one with icpml.deploy_model(version => ...).';
    END IF;
    RETURN v;
  END IF;
  PERFORM FROM icpml.models AS m WHERE m.version = model_version_or_deployed.version;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'model version % does not exist', model_version_or_deployed.version
      USING ERRCODE = 'no_data_found',
            HINT = 'List the stored versions with SELECT * FROM icpml.list_models().';
  END IF;
  RETURN model_version_or_deployed.version;
END
$$;

COMMENT ON FUNCTION icpml.model_version_or_deployed(integer) IS
  'The given model version if it exists, the deployed one when NULL; an error otherwise';

CREATE FUNCTION icpml.describe_model(version integer DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT (pg_catalog.to_jsonb(m) OPERATOR(pg_catalog.-) 'model')
         OPERATOR(pg_catalog.||)
         pg_catalog.jsonb_build_object('model_bytes', pg_catalog.octet_length(m.model))
  FROM icpml.models AS m
  WHERE m.version = icpml.model_version_or_deployed(describe_model.version)
$$;

COMMENT ON FUNCTION icpml.describe_model(integer) IS
  'Everything stored about a model version (the deployed one by default) except the blob, plus the blob size in model_bytes';

CREATE FUNCTION icpml.model_roc_curve(version integer DEFAULT NULL)
RETURNS TABLE (threshold double precision, fpr double precision, tpr double precision)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT (p.e OPERATOR(pg_catalog.->>) 'threshold')::double precision,
         (p.e OPERATOR(pg_catalog.->>) 'fpr')::double precision,
         (p.e OPERATOR(pg_catalog.->>) 'tpr')::double precision
  FROM icpml.models AS m,
       LATERAL pg_catalog.jsonb_array_elements(
         CASE WHEN pg_catalog.jsonb_typeof(m.metrics OPERATOR(pg_catalog.->) 'roc') = 'array'
              THEN m.metrics OPERATOR(pg_catalog.->) 'roc' ELSE '[]'::jsonb END)
         WITH ORDINALITY AS p(e, i)
  WHERE m.version = icpml.model_version_or_deployed(model_roc_curve.version)
  ORDER BY p.i
$$;

COMMENT ON FUNCTION icpml.model_roc_curve(integer) IS
  'ROC curve of a model version (deployed by default) from its out-of-fold predictions: one point per threshold';

CREATE FUNCTION icpml.model_calibration(version integer DEFAULT NULL)
RETURNS TABLE (bin integer, mean_predicted double precision, observed_rate double precision,
               n bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT (c.e OPERATOR(pg_catalog.->>) 'bin')::integer,
         (c.e OPERATOR(pg_catalog.->>) 'mean_predicted')::double precision,
         (c.e OPERATOR(pg_catalog.->>) 'observed_rate')::double precision,
         (c.e OPERATOR(pg_catalog.->>) 'n')::bigint
  FROM icpml.models AS m,
       LATERAL pg_catalog.jsonb_array_elements(
         CASE WHEN pg_catalog.jsonb_typeof(m.metrics OPERATOR(pg_catalog.->) 'calibration') = 'array'
              THEN m.metrics OPERATOR(pg_catalog.->) 'calibration' ELSE '[]'::jsonb END)
         WITH ORDINALITY AS c(e, i)
  WHERE m.version = icpml.model_version_or_deployed(model_calibration.version)
  ORDER BY c.i
$$;

COMMENT ON FUNCTION icpml.model_calibration(integer) IS
  'Calibration of a model version (deployed by default): out-of-fold predictions in bins, mean predicted vs observed rate';

CREATE FUNCTION icpml.model_feature_importance(version integer DEFAULT NULL)
RETURNS TABLE (feature text, gain double precision, weight double precision)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT f.e OPERATOR(pg_catalog.->>) 'feature',
         (f.e OPERATOR(pg_catalog.->>) 'gain')::double precision,
         (f.e OPERATOR(pg_catalog.->>) 'weight')::double precision
  FROM icpml.models AS m,
       LATERAL pg_catalog.jsonb_array_elements(
         CASE WHEN pg_catalog.jsonb_typeof(m.metrics OPERATOR(pg_catalog.->) 'importance') = 'array'
              THEN m.metrics OPERATOR(pg_catalog.->) 'importance' ELSE '[]'::jsonb END)
         WITH ORDINALITY AS f(e, i)
  WHERE m.version = icpml.model_version_or_deployed(model_feature_importance.version)
  ORDER BY (f.e OPERATOR(pg_catalog.->>) 'gain')::double precision DESC NULLS LAST, f.i
$$;

COMMENT ON FUNCTION icpml.model_feature_importance(integer) IS
  'Feature importance of a model version (deployed by default): total gain and split count per feature, most important first';
-- ---------------------------------------------------------------------------
-- Materialised scores: icpml.score_all() refreshes one row per account, for
-- dashboards and for the recommender's retrieval stage.
-- ---------------------------------------------------------------------------

CREATE TABLE icpml.account_scores (
  account_id    bigint PRIMARY KEY,
  score         integer NOT NULL CHECK (score BETWEEN 1 AND 10),
  priority      text NOT NULL CHECK (priority IN ('high', 'medium', 'low')),
  probability   double precision NOT NULL,
  model         text NOT NULL,
  model_version integer,
  scored_at     timestamptz NOT NULL
);

CREATE INDEX account_scores_probability_idx
  ON icpml.account_scores (probability DESC, account_id);
CREATE INDEX account_scores_priority_idx
  ON icpml.account_scores (priority, score DESC);

COMMENT ON TABLE icpml.account_scores IS
  'ICP score of every account as of the last icpml.score_all(); read by dashboards and by recommend_accounts retrieval';

CREATE FUNCTION icpml.score_all(batch_size integer DEFAULT 10000)
RETURNS bigint
AS 'MODULE_PATHNAME', 'score_all'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION icpml.score_all(integer) IS
  'Score every account of the feature relation (as the caller) and replace icpml.account_scores; returns the number of rows scored';

CREATE FUNCTION icpml.explain_icp_score(account_id bigint)
RETURNS TABLE(feature text, value text, contribution double precision, method text)
AS 'MODULE_PATHNAME', 'explain_icp_score'
LANGUAGE C STABLE STRICT PARALLEL SAFE
ROWS 32;

COMMENT ON FUNCTION icpml.explain_icp_score(bigint) IS
  'Every feature''s contribution to an account''s score plus a (bias) row, summing to the logit of its probability: exact TreeSHAP with a deployed model, rule weights otherwise';

CREATE FUNCTION icpml.prewarm()
RETURNS text
AS 'MODULE_PATHNAME', 'prewarm'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.prewarm() IS
  'Load the deployed model (or the rules) into this backend now, for pooled connections; returns what scores';

CREATE FUNCTION icpml.verify_model(
  version integer DEFAULT NULL,
  rows    integer DEFAULT 10000,
  OUT model_version integer,
  OUT n_rows bigint,
  OUT n_trees integer,
  OUT max_abs_margin_diff double precision,
  OUT max_abs_contrib_diff double precision,
  OUT max_abs_probability_diff double precision,
  OUT max_abs_shap_sum_diff double precision)
AS 'MODULE_PATHNAME', 'verify_model'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.verify_model(integer, integer) IS
  'Compare icp_score''s native tree evaluation of a stored model (default: the deployed one) with XGBoost on rows of its relation: largest differences of margin, Saabas contributions and probability, and of exact SHAP sums against the margin';
-- ---------------------------------------------------------------------------
-- Training: cross-validated XGBoost ICP model (C, train.c)
-- ---------------------------------------------------------------------------

CREATE FUNCTION icpml.train_icp_model(
  relation        text    DEFAULT NULL,
  key_column      text    DEFAULT NULL,
  label_column    text    DEFAULT 'is_fit',
  exclude_columns text[]  DEFAULT '{}',
  folds           integer DEFAULT 5,
  n_rounds        integer DEFAULT 100,
  params          jsonb   DEFAULT '{}',
  search          boolean DEFAULT false,
  seed            integer DEFAULT 42,
  deploy          text    DEFAULT 'best')
RETURNS TABLE (version integer, deployed boolean, deploy_reason text,
               n_rows bigint, n_positive bigint,
               cv_roc_auc double precision, cv_pr_auc double precision,
               cv_log_loss double precision, cv_brier double precision,
               cv_precision_at_10 double precision, cv_lift_at_10 double precision,
               rules_cv_roc_auc double precision, seconds double precision)
AS 'MODULE_PATHNAME', 'train_icp_model'
LANGUAGE C VOLATILE
ROWS 1;

COMMENT ON FUNCTION icpml.train_icp_model(text, text, text, text[], integer, integer, jsonb, boolean, integer, text) IS
  'Train the ICP model on the labelled rows of a relation (default icpml.feature_relation, read as the caller): stratified k-fold CV of the model and of the rules on the same folds, refit on all rows, store as a new version, deploy by policy best/always/never';

CREATE FUNCTION icpml.cv_folds(
  relation     text    DEFAULT NULL,
  key_column   text    DEFAULT NULL,
  label_column text    DEFAULT 'is_fit',
  folds        integer DEFAULT 5,
  seed         integer DEFAULT 42)
RETURNS TABLE (key bigint, fold integer)
AS 'MODULE_PATHNAME', 'cv_folds'
LANGUAGE C STABLE;

COMMENT ON FUNCTION icpml.cv_folds(text, text, text, integer, integer) IS
  'Cross-validation fold (1..folds) of every labelled key, exactly as train_icp_model assigns them for the same arguments (stratified, shuffled, seeded)';

CREATE FUNCTION icpml.binary_metrics(labels boolean[], probabilities double precision[],
                                     OUT roc_auc double precision, OUT pr_auc double precision,
                                     OUT log_loss double precision, OUT brier double precision,
                                     OUT precision_at_10 double precision,
                                     OUT lift_at_10 double precision)
RETURNS record
AS 'MODULE_PATHNAME', 'binary_metrics'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION icpml.binary_metrics(boolean[], double precision[]) IS
  'The metrics train_icp_model reports (ROC AUC, average precision, log loss, Brier, precision and lift at the top decile) for any labels and predicted probabilities';
-- ---------------------------------------------------------------------------
-- Native tree evaluator: verification against XGBoost, and its benchmark
-- (administration only; scoring uses the evaluator through icp_score)
-- ---------------------------------------------------------------------------

CREATE FUNCTION icpml.verify_tree_evaluator(
  rows        integer DEFAULT 2000,
  features    integer DEFAULT 12,
  rounds      integer DEFAULT 50,
  max_depth   integer DEFAULT 6,
  categorical boolean DEFAULT true,
  seed        integer DEFAULT 1)
RETURNS TABLE (
  n_rows                   bigint,
  n_trees                  integer,
  n_categorical_splits     integer,
  max_abs_margin_diff      double precision,
  max_abs_contrib_diff     double precision,
  max_abs_probability_diff double precision,
  max_abs_shap_sum_diff    double precision)
AS 'MODULE_PATHNAME', 'verify_tree_evaluator'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION icpml.verify_tree_evaluator(integer, integer, integer, integer, boolean, integer) IS
  'Train a booster on seeded synthetic data (missing values, partition-based categorical splits) and compare icpml''s native tree evaluator with XGBoost on the training rows plus as many rows probing the model''s thresholds and category sets: largest differences of margin, Saabas contributions and probability (0 = bit-identical), and of the sum of XGBoost''s exact SHAP values against the margin (first 300 rows)';

CREATE FUNCTION icpml.verify_tree_model(
  model bytea,
  rows  integer DEFAULT 2000,
  seed  integer DEFAULT 1)
RETURNS TABLE (
  n_rows                   bigint,
  n_trees                  integer,
  n_categorical_splits     integer,
  max_abs_margin_diff      double precision,
  max_abs_contrib_diff     double precision,
  max_abs_probability_diff double precision,
  max_abs_shap_sum_diff    double precision)
AS 'MODULE_PATHNAME', 'verify_tree_model'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION icpml.verify_tree_model(bytea, integer, integer) IS
  'Compare icpml''s native tree evaluator with XGBoost on a saved XGBoost model (UBJSON or JSON), over seeded rows probing the model''s own thresholds and category sets; run it after upgrading XGBoost';

CREATE FUNCTION icpml.benchmark_tree_evaluator(
  rounds      integer DEFAULT 100,
  max_depth   integer DEFAULT 6,
  features    integer DEFAULT 12,
  calls       integer DEFAULT 100000,
  categorical boolean DEFAULT false,
  seed        integer DEFAULT 1)
RETURNS TABLE (
  method      text,
  calls       bigint,
  ns_per_row  double precision,
  cpu_ns_per_row double precision)
AS 'MODULE_PATHNAME', 'benchmark_tree_evaluator'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION icpml.benchmark_tree_evaluator(integer, integer, integer, integer, boolean, integer) IS
  'Nanoseconds per row of the native tree evaluator (margin; margin with Saabas contributions) against XGBoost''s predict (one row per call, and batch) for a booster trained on synthetic data, measured inside this backend';
-- ---------------------------------------------------------------------------
-- Account recommendations: a contextual bandit whose state lives in tables
--
--   recommend_accounts()   retrieval of M candidates (account_scores, RLS as
--                          the caller) -> context vectors -> bandit ranking ->
--                          every served item logged in icpml.recommendations
--   feedback               user_interactions -> reward_map -> the impression
--                          that showed the account (within reward_window) ->
--                          one update of the bandit state per impression
--   rebuild                the state recomputed from the finalized log
-- ---------------------------------------------------------------------------

CREATE TABLE icpml.bandit_settings (
  singleton              boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  default_policy         text NOT NULL DEFAULT 'linucb'
                           CHECK (default_policy IN ('linucb', 'thompson', 'greedy',
                                                     'epsilon_greedy', 'icp', 'random')),
  alpha                  double precision NOT NULL DEFAULT 0.25
                           CHECK (alpha >= 0 AND alpha < 'Infinity'),
  v                      double precision NOT NULL DEFAULT 0.1
                           CHECK (v >= 0 AND v < 'Infinity'),
  epsilon                double precision NOT NULL DEFAULT 0.1
                           CHECK (epsilon BETWEEN 0 AND 1),
  lambda                 double precision NOT NULL DEFAULT 1.0
                           CHECK (lambda > 0 AND lambda < 'Infinity'),
  icp_prior              double precision NOT NULL DEFAULT 0.3
                           CHECK (icp_prior > '-Infinity' AND icp_prior < 'Infinity'),
  candidates             integer NOT NULL DEFAULT 1000 CHECK (candidates BETWEEN 1 AND 5000),
  reward_window          interval NOT NULL DEFAULT '7 days' CHECK (reward_window > '0'),
  gamma                  double precision NOT NULL DEFAULT 1.0 CHECK (gamma > 0 AND gamma <= 1),
  refactor_every         integer NOT NULL DEFAULT 100 CHECK (refactor_every >= 1),
  personalization        boolean NOT NULL DEFAULT true,
  personalization_weight double precision NOT NULL DEFAULT 0.5
                           CHECK (personalization_weight BETWEEN 0 AND 1),
  exclude_dismissed      boolean NOT NULL DEFAULT true,
  exclude_worked_types   text[] NOT NULL DEFAULT '{contact,meeting}',
  history_limit          integer NOT NULL DEFAULT 200 CHECK (history_limit BETWEEN 0 AND 100000)
);

COMMENT ON TABLE icpml.bandit_settings IS
  'One row: the recommender''s policy and its parameters (see the column comments)';
COMMENT ON COLUMN icpml.bandit_settings.default_policy IS
  'Policy recommend_accounts uses when called with policy => NULL: linucb, thompson, greedy, epsilon_greedy, icp (rank by ICP probability) or random';
COMMENT ON COLUMN icpml.bandit_settings.alpha IS
  'LinUCB: score = expected reward + alpha * sqrt(x'' A^-1 x)';
COMMENT ON COLUMN icpml.bandit_settings.v IS
  'Thompson sampling: theta is drawn from N(theta_hat, v^2 A^-1)';
COMMENT ON COLUMN icpml.bandit_settings.epsilon IS
  'epsilon_greedy: each slot is a uniformly random remaining candidate with probability epsilon';
COMMENT ON COLUMN icpml.bandit_settings.lambda IS
  'Ridge prior: a new state starts at A = lambda * I (changing it needs rebuild_bandit_state())';
COMMENT ON COLUMN icpml.bandit_settings.icp_prior IS
  'Prior mean of the shared model''s weight on the ICP probability: before any feedback the expected reward is icp_prior * probability (changing it needs rebuild_bandit_state())';
COMMENT ON COLUMN icpml.bandit_settings.candidates IS
  'Default number M of candidates retrieved before ranking (1..5000; recommend_accounts accepts k..5000)';
COMMENT ON COLUMN icpml.bandit_settings.reward_window IS
  'An interaction rewards an impression of the same (user, account) served at most this long before it; unrewarded impressions expire with reward 0 after it';
COMMENT ON COLUMN icpml.bandit_settings.gamma IS
  'Forgetting factor: each update does A <- gamma * A + (1 - gamma) * lambda * I + x x'', b <- gamma * b + r x (1 = no forgetting; the prior is never forgotten)';
COMMENT ON COLUMN icpml.bandit_settings.refactor_every IS
  'The Cholesky factor gets rank-1 updates and is recomputed from A every this many updates (every update when gamma < 1)';
COMMENT ON COLUMN icpml.bandit_settings.personalization IS
  'Blend a per-user model (prior centred on the shared model) into the shared model';
COMMENT ON COLUMN icpml.bandit_settings.personalization_weight IS
  'Weight w of the per-user model: theta = (1 - w) * theta_global + w * theta_user';
COMMENT ON COLUMN icpml.bandit_settings.exclude_dismissed IS
  'Never recommend an account the user dismissed';
COMMENT ON COLUMN icpml.bandit_settings.exclude_worked_types IS
  'Never recommend an account the user already has an interaction of one of these types with';
COMMENT ON COLUMN icpml.bandit_settings.history_limit IS
  'How many of the user''s most recent interactions feed the user-level context features';

INSERT INTO icpml.bandit_settings DEFAULT VALUES;

CREATE TABLE icpml.reward_map (
  interaction_type text PRIMARY KEY,
  reward           double precision NOT NULL
                     CHECK (reward > '-Infinity' AND reward < 'Infinity')
);

COMMENT ON TABLE icpml.reward_map IS
  'Reward of an impression by the interaction that followed it; types not listed here reward nothing (the impression stays pending and expires with 0)';

INSERT INTO icpml.reward_map (interaction_type, reward) VALUES
  ('view', 0.1), ('research', 0.3), ('save', 0.5), ('contact', 0.7), ('meeting', 1.0),
  ('dismiss', 0.0);

CREATE TRIGGER bandit_settings_invalidate
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON icpml.bandit_settings
  FOR EACH STATEMENT EXECUTE FUNCTION icpml.invalidate_cache();
CREATE TRIGGER reward_map_invalidate
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON icpml.reward_map
  FOR EACH STATEMENT EXECUTE FUNCTION icpml.invalidate_cache();

-- Every write of a state row takes a new version from this sequence.
CREATE SEQUENCE icpml.bandit_state_version_seq;

CREATE TABLE icpml.bandit_state (
  scope                  text PRIMARY KEY
                           CHECK (scope = 'global' OR scope ~ '^user:[0-9a-f-]{36}$'),
  dim                    integer NOT NULL CHECK (dim BETWEEN 1 AND 64),
  a                      double precision[] NOT NULL,
  b                      double precision[] NOT NULL,
  chol                   double precision[] NOT NULL,
  n                      bigint NOT NULL DEFAULT 0,
  updates_since_refactor integer NOT NULL DEFAULT 0,
  version                bigint NOT NULL,
  updated_at             timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE icpml.bandit_state IS
  'Sufficient statistics of the ridge-regression bandit: A = lambda I + sum x x'' (dim x dim), b = sum r x, chol = lower Cholesky factor of A, n = updates; scope global (shared model) or user:<uuid> (personalisation)';

CREATE SEQUENCE icpml.recommendations_finalize_seq;

CREATE TABLE icpml.recommendations (
  recommendation_id     bigserial PRIMARY KEY,
  served_at             timestamptz NOT NULL DEFAULT now(),
  user_id               uuid NOT NULL,
  account_id            bigint NOT NULL,
  rank                  integer NOT NULL,
  policy                text NOT NULL,
  context               real[] NOT NULL,
  score                 double precision NOT NULL,
  expected_reward       double precision NOT NULL,
  propensity            double precision NOT NULL CHECK (propensity > 0 AND propensity <= 1),
  state_version         bigint NOT NULL,
  status                text NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'rewarded', 'expired')),
  reward                double precision,
  reward_interaction_id bigint,
  finalized_at          timestamptz,
  finalize_seq          bigint UNIQUE,
  CHECK ((status = 'pending') = (finalize_seq IS NULL))
);

COMMENT ON TABLE icpml.recommendations IS
  'Every served recommendation (one row per listed account) with its context vector and propensity; status pending -> rewarded (an interaction within reward_window) or expired (reward 0); finalize_seq orders the state updates';

CREATE INDEX recommendations_pending_idx ON icpml.recommendations
  (user_id, account_id, served_at DESC) WHERE status = 'pending';
CREATE INDEX recommendations_pending_served_idx ON icpml.recommendations
  (served_at) WHERE status = 'pending';
CREATE INDEX recommendations_reward_interaction_idx ON icpml.recommendations
  (reward_interaction_id) WHERE reward_interaction_id IS NOT NULL;
CREATE INDEX recommendations_user_finalized_idx ON icpml.recommendations
  (user_id, finalize_seq) WHERE finalize_seq IS NOT NULL;
CREATE INDEX recommendations_user_served_idx ON icpml.recommendations
  (user_id, served_at DESC);

CREATE FUNCTION icpml.recommend_accounts(
  user_id uuid,
  k integer DEFAULT 10,
  policy text DEFAULT NULL,
  candidates integer DEFAULT NULL,
  seed bigint DEFAULT NULL)
RETURNS TABLE(rank integer, account_id bigint, score double precision,
              expected_reward double precision, exploration double precision,
              icp_score integer, priority text, reason jsonb, recommendation_id bigint)
AS 'MODULE_PATHNAME', 'recommend_accounts'
LANGUAGE C VOLATILE
ROWS 10;

COMMENT ON FUNCTION icpml.recommend_accounts(uuid, integer, text, integer, bigint) IS
  'The k (1..100) accounts this user should work next, ranked by the bandit policy over M (k..5000) candidates the caller may see; every row is logged for feedback';

-- Statement trigger on the interactions relation (installed by
-- enable_online_feedback): attributes new interactions to pending impressions.
CREATE FUNCTION icpml.feedback_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'feedback_trigger'
LANGUAGE C
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION icpml.feedback_trigger() IS
  'AFTER INSERT statement trigger on the interactions relation: rewards pending recommendations and updates the bandit once per impression';

CREATE FUNCTION icpml.process_feedback(as_of timestamptz DEFAULT now())
RETURNS TABLE(rewarded bigint, expired bigint)
AS 'MODULE_PATHNAME', 'process_feedback'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION icpml.process_feedback(timestamptz) IS
  'Batch feedback (pg_cron): attribute interactions up to as_of not yet attributed, expire impressions older than reward_window with reward 0';

CREATE FUNCTION icpml.rebuild_bandit_state()
RETURNS bigint
AS 'MODULE_PATHNAME', 'rebuild_bandit_state'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.rebuild_bandit_state() IS
  'Recompute every bandit state row from the finalized recommendations, in finalization order; returns the number of impressions replayed';

-- enable/disable resolve icpml.interactions_relation with the caller's
-- search_path (like recommend_accounts does), so they do not pin one; every
-- name they use is schema-qualified.
CREATE FUNCTION icpml.enable_online_feedback()
RETURNS regclass
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  rel regclass;
  col text;
BEGIN
  rel := pg_catalog.current_setting('icpml.interactions_relation')::regclass;
  FOREACH col IN ARRAY ARRAY['interaction_id', 'user_id', 'account_id', 'interaction_type', 'created_at'] LOOP
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute
                   WHERE attrelid = rel AND attname = col AND attnum > 0 AND NOT attisdropped) THEN
      RAISE EXCEPTION 'column "%" does not exist in interactions relation %', col, rel
        USING ERRCODE = 'undefined_column',
              HINT = 'The interactions relation needs interaction_id, user_id, account_id, interaction_type and created_at.';
    END IF;
  END LOOP;
  EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS icpml_feedback ON %s', rel);
  EXECUTE pg_catalog.format(
    'CREATE TRIGGER icpml_feedback AFTER INSERT ON %s REFERENCING NEW TABLE AS icpml_new '
    'FOR EACH STATEMENT EXECUTE FUNCTION icpml.feedback_trigger()', rel);
  RETURN rel;
END
$$;

COMMENT ON FUNCTION icpml.enable_online_feedback() IS
  'Install the feedback trigger on icpml.interactions_relation: new interactions reward recommendations at once';

CREATE FUNCTION icpml.disable_online_feedback()
RETURNS regclass
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  rel regclass;
BEGIN
  rel := pg_catalog.current_setting('icpml.interactions_relation')::regclass;
  EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS icpml_feedback ON %s', rel);
  RETURN rel;
END
$$;

COMMENT ON FUNCTION icpml.disable_online_feedback() IS
  'Remove the feedback trigger from icpml.interactions_relation (use process_feedback() from pg_cron instead)';
-- ---------------------------------------------------------------------------
-- Scheduled retraining over pg_cron, and the run log
--
-- pg_cron is optional: it is looked up when schedule_retraining() is called,
-- never when icpml is installed.  The job runs CALL icpml.run_training(...)
-- as the role that scheduled it (pg_cron runs a job as its owner), so the
-- feature relation is read with that role's privileges.
-- ---------------------------------------------------------------------------

-- One training at a time: the key train_icp_model holds (transaction-level)
-- while it trains, and the key run_training holds (session-level) across its
-- transactions.
CREATE FUNCTION icpml.training_lock_key()
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.hashtext('icpml.train_icp_model')::bigint $$;

COMMENT ON FUNCTION icpml.training_lock_key() IS
  'Advisory lock key held while a model trains: hashtext(''icpml.train_icp_model'')';

CREATE PROCEDURE icpml.run_training(deploy text DEFAULT 'best',
                                    triggered_by text DEFAULT 'schedule')
LANGUAGE plpgsql
-- No SET clause and no SECURITY DEFINER: either would forbid the COMMITs
-- below.  Every name is schema-qualified instead.
AS $$
DECLARE
  v_run_key   constant bigint := pg_catalog.hashtext('icpml.run_training')::bigint;
  v_run_id    bigint;
  v_result    jsonb;
  v_version   integer;
  v_state     text;
  v_message   text;
  v_detail    text;
  v_hint      text;
BEGIN
  IF run_training.deploy IS NULL OR run_training.deploy NOT IN ('best', 'always', 'never') THEN
    RAISE EXCEPTION 'unknown deploy policy "%"', run_training.deploy
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use ''best'' (deploy if cross-validation beats the deployed model, or the rules), ''always'' or ''never''.';
  END IF;
  IF run_training.triggered_by IS NULL OR run_training.triggered_by NOT IN ('manual', 'schedule') THEN
    RAISE EXCEPTION 'triggered_by must be ''manual'' or ''schedule'', not "%"', run_training.triggered_by
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Leave it out for scheduled runs; pass triggered_by => ''manual'' otherwise.';
  END IF;

  -- Fails here, before any lock is taken, when called inside a transaction
  -- block (the COMMITs below need their own transactions).
  COMMIT;

  -- The run lock is held across this procedure's transactions (session
  -- level) and released on every way out; a backend that exits releases it.
  BEGIN
    IF NOT pg_catalog.pg_try_advisory_lock(v_run_key) THEN
      RAISE EXCEPTION 'another icpml.run_training() is in progress'
        USING ERRCODE = 'lock_not_available',
              HINT = 'See the row with status ''running'' in icpml.training_history; only one training runs at a time.';
    END IF;
    IF NOT pg_catalog.pg_try_advisory_xact_lock(icpml.training_lock_key()) THEN
      RAISE EXCEPTION 'a model is being trained in another session'
        USING ERRCODE = 'lock_not_available',
              HINT = 'Wait for that icpml.train_icp_model() call to finish; only one training runs at a time.';
    END IF;

    -- Nobody trains (both locks are ours): a 'running' row is left over
    -- from a run whose backend exited.
    UPDATE icpml.training_runs AS r
       SET status = 'abandoned', finished_at = pg_catalog.clock_timestamp(),
           error = 'the run ended without recording an outcome (its backend exited)'
     WHERE r.status = 'running';

    INSERT INTO icpml.training_runs (triggered_by, deploy_policy)
    VALUES (run_training.triggered_by, run_training.deploy)
    RETURNING run_id INTO v_run_id;
  EXCEPTION
    WHEN OTHERS OR query_canceled THEN
      -- session-level advisory locks survive the rollback: release ours
      PERFORM pg_catalog.pg_advisory_unlock(v_run_key);
      RAISE;
  END;
  COMMIT;   -- the 'running' row is visible while the model trains

  BEGIN
    SELECT pg_catalog.to_jsonb(t) INTO v_result
      FROM icpml.train_icp_model(deploy => run_training.deploy) AS t;
  EXCEPTION
    WHEN OTHERS OR query_canceled THEN
      GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                              v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
  END;

  BEGIN
    IF v_state IS NULL THEN
      -- train_icp_model's row: version, deployed, deploy_reason, cv_* figures
      v_version := (v_result OPERATOR(pg_catalog.->>) 'version')::integer;
      UPDATE icpml.training_runs AS r
         SET status = 'succeeded', finished_at = pg_catalog.clock_timestamp(),
             version = v_version,
             deployed = (v_result OPERATOR(pg_catalog.->>) 'deployed')::boolean,
             deploy_reason = v_result OPERATOR(pg_catalog.->>) 'deploy_reason',
             metrics = COALESCE(
                         (SELECT m.metrics OPERATOR(pg_catalog.->) 'cv' FROM icpml.models AS m
                           WHERE m.version = v_version),
                         v_result)
       WHERE r.run_id = v_run_id;
    ELSE
      UPDATE icpml.training_runs AS r
         SET status = 'failed', finished_at = pg_catalog.clock_timestamp(),
             error = v_message
       WHERE r.run_id = v_run_id;
    END IF;
  EXCEPTION
    WHEN OTHERS OR query_canceled THEN
      PERFORM pg_catalog.pg_advisory_unlock(v_run_key);
      RAISE;
  END;
  COMMIT;
  PERFORM pg_catalog.pg_advisory_unlock(v_run_key);

  -- A failure is recorded, then reported to the caller too (pg_cron shows
  -- it in cron.job_run_details).
  IF v_state IS NOT NULL THEN
    IF v_detail <> '' AND v_hint <> '' THEN
      RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message, DETAIL = v_detail, HINT = v_hint;
    ELSIF v_detail <> '' THEN
      RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message, DETAIL = v_detail;
    ELSIF v_hint <> '' THEN
      RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message, HINT = v_hint;
    ELSE
      RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message;
    END IF;
  END IF;
END
$$;

-- REVOKE ... ON ALL FUNCTIONS (99_privileges.sql) does not cover procedures.
REVOKE ALL ON PROCEDURE icpml.run_training(text, text) FROM PUBLIC;

COMMENT ON PROCEDURE icpml.run_training(text, text) IS
  'Train a model with icpml.train_icp_model(deploy => ...) and record the run in icpml.training_runs; never overlaps another training; call outside a transaction block';

CREATE VIEW icpml.training_history AS
  SELECT r.run_id, r.started_at, r.finished_at,
         r.finished_at OPERATOR(pg_catalog.-) r.started_at AS duration,
         r.status, r.triggered_by, r.deploy_policy, r.run_by, r.version, r.deployed,
         r.deploy_reason,
         (r.metrics #>> '{model,roc_auc}')::double precision AS cv_roc_auc,
         (r.metrics #>> '{rules,roc_auc}')::double precision AS rules_cv_roc_auc,
         r.error
  FROM icpml.training_runs AS r
  ORDER BY r.run_id DESC;

COMMENT ON VIEW icpml.training_history IS
  'Training runs, newest first: duration, outcome, model version, whether it was deployed, CV ROC AUC of the model and the rules, error';

-- An error with a hint unless pg_cron is installed in this database.
CREATE FUNCTION icpml.require_pg_cron()
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_cron')
     OR pg_catalog.to_regnamespace('cron') IS NULL THEN
    RAISE EXCEPTION 'pg_cron is not installed in database "%"', pg_catalog.current_database()
      USING ERRCODE = 'feature_not_supported',
            HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, restart PostgreSQL and run CREATE EXTENSION pg_cron; or call icpml.run_training() from your own scheduler.';
  END IF;
END
$$;

COMMENT ON FUNCTION icpml.require_pg_cron() IS
  'An error with a hint unless the pg_cron extension is installed in this database';

CREATE FUNCTION icpml.schedule_retraining(cron text DEFAULT '0 3 * * *',
                                          deploy text DEFAULT 'best',
                                          job_name text DEFAULT 'icpml-retrain')
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_fields text[];
BEGIN
  v_fields := pg_catalog.regexp_split_to_array(pg_catalog.btrim(coalesce(schedule_retraining.cron, '')), '\s+');
  IF schedule_retraining.cron IS NULL OR pg_catalog.cardinality(v_fields) <> 5
     OR v_fields[1] = '' THEN
    RAISE EXCEPTION 'cron schedule "%" does not have five fields', schedule_retraining.cron
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A schedule is minute, hour, day of month, month and day of week, separated by spaces.',
            HINT = 'For example ''0 3 * * *'' runs every night at 03:00 (in the time zone pg_cron uses, GMT by default).';
  END IF;
  IF schedule_retraining.deploy IS NULL OR schedule_retraining.deploy NOT IN ('best', 'always', 'never') THEN
    RAISE EXCEPTION 'unknown deploy policy "%"', schedule_retraining.deploy
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use ''best'' (deploy if cross-validation beats the deployed model, or the rules), ''always'' or ''never''.';
  END IF;
  IF schedule_retraining.job_name IS NULL OR schedule_retraining.job_name = '' THEN
    RAISE EXCEPTION 'job_name must not be empty'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Leave it out to use ''icpml-retrain''.';
  END IF;
  PERFORM icpml.require_pg_cron();

  -- pg_cron replaces the caller's job of the same name.
  RETURN cron.schedule(schedule_retraining.job_name,
                       pg_catalog.array_to_string(v_fields, ' '),
                       pg_catalog.format('CALL icpml.run_training(deploy => %L)',
                                         schedule_retraining.deploy));
END
$$;

COMMENT ON FUNCTION icpml.schedule_retraining(text, text, text) IS
  'Schedule CALL icpml.run_training(deploy => ...) with pg_cron (five-field cron schedule, GMT); returns the job id; rescheduling a job name replaces it';

CREATE FUNCTION icpml.unschedule_retraining(job_name text DEFAULT 'icpml-retrain')
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM icpml.require_pg_cron();
  IF NOT EXISTS (SELECT FROM cron.job AS j
                 WHERE j.jobname = unschedule_retraining.job_name
                   AND j.username = CURRENT_USER) THEN
    RAISE NOTICE 'no pg_cron job named "%" is scheduled by %', unschedule_retraining.job_name, CURRENT_USER;
    RETURN false;
  END IF;
  RETURN cron.unschedule(unschedule_retraining.job_name);
END
$$;

COMMENT ON FUNCTION icpml.unschedule_retraining(text) IS
  'Remove the retraining job of that name scheduled by the current role; false (with a notice) when there is none';
-- ---------------------------------------------------------------------------
-- Privileges (kept last: it covers every object above)
--
--   PUBLIC          nothing
--   anon            nothing
--   authenticated   USAGE on the schema, EXECUTE on scoring and recommend_accounts
--   service_role    everything (administration, training, internal tables)
--
-- Roles that do not exist (plain PostgreSQL) are skipped; grant the same to
-- your own roles with icpml.grant_scoring(role).
-- ---------------------------------------------------------------------------

REVOKE ALL ON ALL ROUTINES IN SCHEMA icpml FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA icpml FROM PUBLIC;
REVOKE ALL ON SCHEMA icpml FROM PUBLIC;

-- Scoring entry points: the set grant_scoring() hands out.
CREATE FUNCTION icpml.grant_scoring(role_name name)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
    RAISE EXCEPTION 'role "%" does not exist', role_name
      USING ERRCODE = 'undefined_object',
            HINT = 'Create the role first, or check its spelling.';
  END IF;
  EXECUTE format('GRANT USAGE ON SCHEMA icpml TO %I', role_name);
  EXECUTE format('GRANT EXECUTE ON FUNCTION icpml.icp_score(bigint), icpml.icp_score_batch(bigint[]),'
                 ' icpml.explain_icp_score(bigint), icpml.prewarm(), icpml.xgboost_version(),'
                 ' icpml.recommend_accounts(uuid, integer, text, integer, bigint) TO %I', role_name);
END
$$;
REVOKE ALL ON FUNCTION icpml.grant_scoring(name) FROM PUBLIC;

COMMENT ON FUNCTION icpml.grant_scoring(name) IS
  'Let a role score accounts (USAGE on icpml, EXECUTE on the scoring functions); nothing else';

-- Full administration for a role: every function and internal table.
CREATE FUNCTION icpml.grant_admin(role_name name)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
    RAISE EXCEPTION 'role "%" does not exist', role_name
      USING ERRCODE = 'undefined_object',
            HINT = 'Create the role first, or check its spelling.';
  END IF;
  EXECUTE format('GRANT USAGE ON SCHEMA icpml TO %I', role_name);
  EXECUTE format('GRANT EXECUTE ON ALL ROUTINES IN SCHEMA icpml TO %I', role_name);
  EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA icpml TO %I', role_name);
  EXECUTE format('GRANT ALL ON ALL SEQUENCES IN SCHEMA icpml TO %I', role_name);
END
$$;
REVOKE ALL ON FUNCTION icpml.grant_admin(name) FROM PUBLIC;

COMMENT ON FUNCTION icpml.grant_admin(name) IS
  'Let a role administer icpml (training, deploys, configuration, internal tables)';

-- Supabase's roles, when present.
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'authenticated') THEN
    PERFORM icpml.grant_scoring('authenticated');
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'service_role') THEN
    PERFORM icpml.grant_admin('service_role');
  END IF;
END
$$;
