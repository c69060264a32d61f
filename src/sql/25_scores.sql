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
