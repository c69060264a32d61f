-- ---------------------------------------------------------------------------
-- Off-policy evaluation (issue #13 items 1-2): an opt-in, sampled log of the
-- candidates each served list was chosen from (src/ope.c writes it from
-- recommend_accounts' logging step), and icpml.evaluate_policy(), which
-- estimates from that log what another ranking policy would have earned
-- (IPS, self-normalised IPS, doubly robust).  docs/experiments.md says what
-- is estimated and how the logging policy's propensities are made
-- meaningful.  Administrative: nothing for PUBLIC.
-- ---------------------------------------------------------------------------

CREATE TABLE icpml.candidate_log_settings (
  singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  sample_rate     double precision NOT NULL DEFAULT 0
                    CHECK (sample_rate >= 0 AND sample_rate <= 1),
  retention       interval NOT NULL DEFAULT '30 days'
                    CHECK (retention > interval '0'),
  thompson_draws  integer NOT NULL DEFAULT 200
                    CHECK (thompson_draws BETWEEN 1 AND 10000)
);
INSERT INTO icpml.candidate_log_settings DEFAULT VALUES;

COMMENT ON TABLE icpml.candidate_log_settings IS
  'Candidate logging for off-policy evaluation (one row): the share of served lists whose candidates are logged (0 = off), how long they are kept (icpml.prune_candidate_log()), and the posterior draws that estimate a Thompson list''s propensities';

CREATE TABLE icpml.recommendation_candidates (
  list_id        bigint PRIMARY KEY,
  served_at      timestamptz NOT NULL,
  user_id        uuid NOT NULL,
  policy         text NOT NULL,
  experiment     text,
  variant        text,
  state_version  bigint NOT NULL,
  epsilon        double precision,
  served_ids     bigint[] NOT NULL,
  served         integer[] NOT NULL,
  propensity     double precision[],
  examination    double precision[] NOT NULL,
  account_ids    bigint[] NOT NULL,
  sources        text[] NOT NULL,
  mu             double precision[] NOT NULL,
  width          real[] NOT NULL,
  probability    double precision[] NOT NULL,
  exploit_slots  integer NOT NULL DEFAULT 0 CHECK (exploit_slots >= 0),
  CHECK (pg_catalog.cardinality(served_ids) = pg_catalog.cardinality(served)
         AND pg_catalog.cardinality(served) = pg_catalog.cardinality(examination)
         AND (propensity IS NULL OR pg_catalog.cardinality(propensity) = pg_catalog.cardinality(served))),
  CHECK (pg_catalog.cardinality(account_ids) = pg_catalog.cardinality(mu)
         AND pg_catalog.cardinality(mu) = pg_catalog.cardinality(width)
         AND pg_catalog.cardinality(mu) = pg_catalog.cardinality(probability)
         AND pg_catalog.cardinality(mu) = pg_catalog.cardinality(sources))
);
CREATE INDEX recommendation_candidates_served_at_idx ON icpml.recommendation_candidates (served_at);

COMMENT ON TABLE icpml.recommendation_candidates IS
  'One row per sampled served list (candidate_log_settings.sample_rate): every candidate the policy ranked, with what a ranking policy needs to rank them again, and the logging policy''s propensity of each served row';
COMMENT ON COLUMN icpml.recommendation_candidates.list_id IS
  'The recommendation_id of the list''s rank-1 row';
COMMENT ON COLUMN icpml.recommendation_candidates.epsilon IS
  'The share of slots the logging policy filled at random (epsilon_greedy: bandit_settings.epsilon; random: 1); NULL for the other policies';
COMMENT ON COLUMN icpml.recommendation_candidates.served_ids IS
  'recommendation_id of the row served at each rank (icpml.recommendations)';
COMMENT ON COLUMN icpml.recommendation_candidates.served IS
  'Index (1-based) into the candidate arrays of the account served at each rank';
COMMENT ON COLUMN icpml.recommendation_candidates.propensity IS
  'Per rank: the logging policy''s probability of listing that rank''s account at that rank (the marginal, not conditioned on the rows above): exact for epsilon_greedy and random, estimated from thompson_draws posterior draws for thompson; NULL for deterministic policies (linucb, greedy, icp), whose lists cannot evaluate another policy';
COMMENT ON COLUMN icpml.recommendation_candidates.examination IS
  'Per rank: the examination probability the bandit assumed (bandit_settings.position_bias) when the list was served';
COMMENT ON COLUMN icpml.recommendation_candidates.mu IS
  'Per candidate: the logging model''s expected reward if examined (theta'' x); the direct method of the doubly robust estimator';
COMMENT ON COLUMN icpml.recommendation_candidates.width IS
  'Per candidate: the standard deviation of the expected reward under the logging posterior (LinUCB''s exploration bonus divided by alpha)';
COMMENT ON COLUMN icpml.recommendation_candidates.probability IS
  'Per candidate: the ICP probability the icp policy ranks by';
COMMENT ON COLUMN icpml.recommendation_candidates.exploit_slots IS
  'How many of the first ranks the logging policy filled by mu whatever it explores (bandit_settings.exploit_slots, warm_start): never explored, so a target that differs there cannot be evaluated (evaluate_policy''s unsupported)';

-- Lists older than the retention go.
CREATE FUNCTION icpml.prune_candidate_log(as_of timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  n bigint;
BEGIN
  DELETE FROM icpml.recommendation_candidates AS c
  WHERE c.served_at OPERATOR(pg_catalog.<) (COALESCE(prune_candidate_log.as_of, pg_catalog.now())
          OPERATOR(pg_catalog.-) (SELECT s.retention FROM icpml.candidate_log_settings AS s));
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;

COMMENT ON FUNCTION icpml.prune_candidate_log(timestamptz) IS
  'Delete the logged candidate lists served before as_of (default now) minus candidate_log_settings.retention; returns how many went';

CREATE FUNCTION icpml.evaluate_policy(
  policy text,
  params jsonb DEFAULT '{}',
  since timestamptz DEFAULT NULL,
  until timestamptz DEFAULT NULL,
  clip double precision DEFAULT 100,
  confidence double precision DEFAULT 0.95)
RETURNS TABLE (estimator text, value double precision, std_error double precision,
               ci_low double precision, ci_high double precision, lists bigint,
               impressions bigint, effective_sample_size double precision,
               clipped bigint, skipped bigint, unsupported double precision)
AS 'MODULE_PATHNAME', 'evaluate_policy'
LANGUAGE C STABLE;

COMMENT ON FUNCTION icpml.evaluate_policy(text, jsonb, timestamptz, timestamptz, double precision, double precision) IS
  'Off-policy estimate, from the logged candidate lists served in [since, until) (default the last 30 days), of the reward per list a ranking policy (icp, greedy, linucb, epsilon_greedy, random; params: alpha, epsilon, exploit_slots) would have earned: one row each for ips, snips, dr (doubly robust, the logging model as direct method), dm and logged (the logging policy''s own average), with a normal confidence interval; weights above clip are clipped; unsupported: the target''s ranks per list the logger could not have served (docs/experiments.md)';

-- pg_dump keeps both: 90_dump.sql registers them (after the others, in the
-- order the update script does)

-- as icpml.replace_settings_row() (90_dump.sql) for the other settings
-- tables: a restored row replaces the default CREATE EXTENSION inserted
CREATE FUNCTION icpml.candidate_log_settings_replace()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF pg_catalog.current_query() OPERATOR(pg_catalog.~*) '^\s*copy\s' THEN
    DELETE FROM icpml.candidate_log_settings AS t WHERE t.singleton OPERATOR(pg_catalog.=) NEW.singleton;
  END IF;
  RETURN NEW;
END
$$;

COMMENT ON FUNCTION icpml.candidate_log_settings_replace() IS
  'Trigger on icpml.candidate_log_settings: a row that a COPY brings in (a pg_dump being restored) replaces the default row';

CREATE TRIGGER candidate_log_settings_replace BEFORE INSERT ON icpml.candidate_log_settings
  FOR EACH ROW EXECUTE FUNCTION icpml.candidate_log_settings_replace();
