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
