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
