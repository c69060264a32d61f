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
  deploy          text    DEFAULT 'best',
  encoding        jsonb   DEFAULT '{}')
RETURNS TABLE (version integer, deployed boolean, deploy_reason text,
               n_rows bigint, n_positive bigint,
               cv_roc_auc double precision, cv_pr_auc double precision,
               cv_log_loss double precision, cv_brier double precision,
               cv_precision_at_10 double precision, cv_lift_at_10 double precision,
               rules_cv_roc_auc double precision, seconds double precision)
AS 'MODULE_PATHNAME', 'train_icp_model'
LANGUAGE C VOLATILE
ROWS 1;

COMMENT ON FUNCTION icpml.train_icp_model(text, text, text, text[], integer, integer, jsonb, boolean, integer, text, jsonb) IS
  'Train the ICP model on the labelled rows of a relation (default icpml.feature_relation, read as the caller): stratified k-fold CV of the model and of the rules on the same folds, refit on all rows, store as a new version, deploy by policy best/always/never; params takes XGBoost''s names and aliases, encoding how text becomes levels (fold_text, max_levels, max_tags, min_count)';

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
