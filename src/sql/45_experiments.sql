-- ---------------------------------------------------------------------------
-- Experiments: A/B tests between recommendation policies.  While one runs,
-- recommend_accounts(policy => NULL) serves every user the policy of the
-- variant the user is assigned to (a hash of the experiment's name and the
-- user id, split by weight: the same user always gets the same variant) and
-- logs the experiment and the variant with every served row.
-- ---------------------------------------------------------------------------

CREATE TABLE icpml.experiments (
  name        text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  variants    text[] NOT NULL
                CHECK (cardinality(variants) BETWEEN 2 AND 8 AND array_position(variants, NULL) IS NULL
                       AND variants <@ ARRAY['linucb', 'thompson', 'greedy', 'epsilon_greedy', 'icp', 'random']),
  weights     double precision[] NOT NULL
                CHECK (array_position(weights, NULL) IS NULL AND 0 < ALL (weights)
                       AND 'Infinity' > ALL (weights)),
  status      text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'stopped')),
  description text,
  started_at  timestamptz NOT NULL DEFAULT now(),
  stopped_at  timestamptz,
  CHECK (cardinality(weights) = cardinality(variants)),
  CHECK ((status = 'stopped') = (stopped_at IS NOT NULL))
);

COMMENT ON TABLE icpml.experiments IS
  'A/B tests between recommendation policies: variants (policy names), their weights, running or stopped; at most one runs at a time';

CREATE UNIQUE INDEX experiments_one_running ON icpml.experiments ((true)) WHERE status = 'running';

CREATE TRIGGER experiments_invalidate
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON icpml.experiments
  FOR EACH STATEMENT EXECUTE FUNCTION icpml.invalidate_cache();

-- Distinct variants, and an experiment's design fixed once it exists:
-- changing variants or weights would move users between variants and void
-- the comparison and the sample-ratio check.
CREATE FUNCTION icpml.experiments_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF (SELECT count(DISTINCT v) FROM unnest(NEW.variants) AS v) <> cardinality(NEW.variants) THEN
    RAISE EXCEPTION 'variants must be distinct: %', NEW.variants
      USING ERRCODE = 'check_violation';
  END IF;
  IF TG_OP = 'UPDATE' AND (NEW.name, NEW.variants, NEW.weights, NEW.started_at)
                          IS DISTINCT FROM (OLD.name, OLD.variants, OLD.weights, OLD.started_at) THEN
    RAISE EXCEPTION 'the design of experiment "%" cannot change once it exists', OLD.name
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Stop it and start a new experiment under another name.';
  END IF;
  RETURN NEW;
END
$$;

COMMENT ON FUNCTION icpml.experiments_guard() IS
  'Trigger on icpml.experiments: distinct variants; name, variants, weights and start fixed once inserted';

CREATE TRIGGER experiments_guard
  BEFORE INSERT OR UPDATE ON icpml.experiments
  FOR EACH ROW EXECUTE FUNCTION icpml.experiments_guard();

CREATE INDEX recommendations_experiment_idx ON icpml.recommendations
  (experiment, variant, user_id) WHERE experiment IS NOT NULL;

CREATE FUNCTION icpml.start_experiment(
  name text,
  variants text[],
  weights double precision[] DEFAULT NULL,
  description text DEFAULT NULL)
RETURNS icpml.experiments
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  policies constant text[] := ARRAY['linucb', 'thompson', 'greedy', 'epsilon_greedy', 'icp', 'random'];
  w double precision[] := weights;
  v text;
  running text;
  result icpml.experiments;
BEGIN
  IF name IS NULL OR name !~ '^[a-z0-9][a-z0-9_-]{0,62}$' THEN
    RAISE EXCEPTION 'invalid experiment name "%"', name
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use 1 to 63 lower-case letters, digits, _ or -, starting with a letter or digit.';
  END IF;
  IF variants IS NULL OR cardinality(variants) NOT BETWEEN 2 AND 8 OR array_ndims(variants) <> 1 THEN
    RAISE EXCEPTION 'an experiment needs 2 to 8 variants, not %', coalesce(cardinality(variants), 0)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Pass the policies to compare, the control first: ARRAY[''linucb'', ''thompson''].';
  END IF;
  FOREACH v IN ARRAY variants LOOP
    IF v IS NULL OR NOT v = ANY (policies) THEN
      RAISE EXCEPTION 'unknown policy "%" in variants', v
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'A variant is a policy: linucb, thompson, greedy, epsilon_greedy, icp or random.';
    END IF;
  END LOOP;
  IF (SELECT count(DISTINCT u) FROM unnest(variants) AS u) <> cardinality(variants) THEN
    RAISE EXCEPTION 'variants must be distinct: %', variants
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'List each policy once; weights set how many users each gets.';
  END IF;
  IF w IS NULL THEN
    w := array_fill(1.0::double precision, ARRAY[cardinality(variants)]);
  END IF;
  IF array_ndims(w) <> 1 OR cardinality(w) <> cardinality(variants)
     OR EXISTS (SELECT FROM unnest(w) AS x WHERE x IS NULL OR NOT (x > 0 AND x < 'Infinity')) THEN
    RAISE EXCEPTION 'weights must be % positive finite numbers, one per variant', cardinality(variants)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Omit weights for an even split.';
  END IF;

  -- one start at a time: the checks below and the insert see the same table
  LOCK TABLE icpml.experiments IN SHARE ROW EXCLUSIVE MODE;
  IF EXISTS (SELECT FROM icpml.experiments AS e WHERE e.name = start_experiment.name) THEN
    RAISE EXCEPTION 'experiment "%" already exists', name
      USING ERRCODE = 'duplicate_object',
            HINT = 'Choose another name; the results of the old one stay in icpml.experiment_results().';
  END IF;
  SELECT e.name INTO running FROM icpml.experiments AS e WHERE e.status = 'running';
  IF FOUND THEN
    RAISE EXCEPTION 'experiment "%" is running', running
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = format('Stop it first: SELECT icpml.stop_experiment(%L).', running);
  END IF;

  BEGIN
    INSERT INTO icpml.experiments AS e (name, variants, weights, description)
    VALUES (start_experiment.name, start_experiment.variants, w, start_experiment.description)
    RETURNING e.* INTO result;
  EXCEPTION WHEN unique_violation THEN
    -- a concurrent start committed after this transaction's snapshot
    RAISE EXCEPTION 'experiment "%" cannot start: another experiment started meanwhile, or the name was taken', name
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'SELECT name, status FROM icpml.experiments shows the experiments; stop the running one first.';
  END;
  RETURN result;
END
$$;

COMMENT ON FUNCTION icpml.start_experiment(text, text[], double precision[], text) IS
  'Start an A/B test between recommendation policies (the first variant is the control; weights default to an even split): recommend_accounts(policy => NULL) serves each user the policy of their hashed variant';

CREATE FUNCTION icpml.stop_experiment(name text)
RETURNS icpml.experiments
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  result icpml.experiments;
BEGIN
  UPDATE icpml.experiments AS e SET status = 'stopped', stopped_at = now()
  WHERE e.name = stop_experiment.name AND e.status = 'running'
  RETURNING e.* INTO result;
  IF NOT FOUND THEN
    IF EXISTS (SELECT FROM icpml.experiments AS e WHERE e.name = stop_experiment.name) THEN
      RAISE EXCEPTION 'experiment "%" is not running', name
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Its results stay in icpml.experiment_results().';
    END IF;
    RAISE EXCEPTION 'experiment "%" does not exist', name
      USING ERRCODE = 'undefined_object',
            HINT = 'SELECT name, status FROM icpml.experiments lists them.';
  END IF;
  RETURN result;
END
$$;

COMMENT ON FUNCTION icpml.stop_experiment(text) IS
  'Stop the running experiment: recommend_accounts goes back to the default policy; the results stay';

CREATE FUNCTION icpml.experiment_variant(experiment text, user_id uuid)
RETURNS text
AS 'MODULE_PATHNAME', 'experiment_variant'
LANGUAGE C STABLE STRICT;

COMMENT ON FUNCTION icpml.experiment_variant(text, uuid) IS
  'The variant an experiment assigns to a user (deterministic: a hash of the experiment name and the user id, split by weight)';

-- Upper tail probabilities for the results (internal helpers).
CREATE FUNCTION icpml.normal_sf(z double precision)
RETURNS double precision
AS 'MODULE_PATHNAME', 'normal_sf'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION icpml.normal_sf(double precision) IS
  'P(Z > z) for a standard normal Z (internal helper of experiment_results)';

CREATE FUNCTION icpml.chi_square_sf(x double precision, df integer)
RETURNS double precision
AS 'MODULE_PATHNAME', 'chi_square_sf'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION icpml.chi_square_sf(double precision, integer) IS
  'P(X > x) for X chi-square with df degrees of freedom (internal helper of experiment_results)';

-- Per-variant results.  The unit of randomisation is the user, so the
-- reward per finalized impression (a ratio of two per-user sums) gets its
-- standard error from the delta method over users; each variant is compared
-- with the first (the control) by a two-sided z-test.  The sample-ratio
-- check compares the users each variant served with the weights
-- (chi-square): a small p (< 0.001) means assignment or logging is broken
-- and the comparison should not be trusted.
CREATE FUNCTION icpml.experiment_results(name text)
RETURNS TABLE (variant text, weight double precision, users bigint, impressions bigint,
               finalized bigint, reward double precision, reward_per_impression double precision,
               ci_low double precision, ci_high double precision, lift double precision,
               p_value double precision, srm_p_value double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM icpml.experiments AS e WHERE e.name = experiment_results.name) THEN
    RAISE EXCEPTION 'experiment "%" does not exist', name
      USING ERRCODE = 'undefined_object',
            HINT = 'SELECT name, status FROM icpml.experiments lists them.';
  END IF;
  RETURN QUERY
  WITH v AS (
    SELECT u.variant, u.weight, u.ord
    FROM icpml.experiments AS e,
         unnest(e.variants, e.weights) WITH ORDINALITY AS u(variant, weight, ord)
    WHERE e.name = experiment_results.name
  ), per_user AS (
    SELECT r.variant, r.user_id, count(*) AS shown,
           count(*) FILTER (WHERE r.status <> 'pending') AS n,
           coalesce(sum(r.reward) FILTER (WHERE r.status <> 'pending'), 0) AS rw
    FROM icpml.recommendations AS r
    WHERE r.experiment = experiment_results.name
    GROUP BY r.variant, r.user_id
  ), agg AS (
    SELECT p.variant, count(*) AS users, sum(p.shown)::bigint AS impressions,
           sum(p.n)::bigint AS finalized, sum(p.rw) AS reward,
           count(*) FILTER (WHERE p.n > 0) AS k,
           avg(p.n) FILTER (WHERE p.n > 0) AS mean_n,
           var_samp(p.n) FILTER (WHERE p.n > 0) AS var_n,
           var_samp(p.rw) FILTER (WHERE p.n > 0) AS var_r,
           covar_samp(p.rw, p.n) FILTER (WHERE p.n > 0) AS cov_rn
    FROM per_user AS p GROUP BY p.variant
  ), m AS (
    SELECT v.variant, v.weight, v.ord, coalesce(a.users, 0) AS users,
           coalesce(a.impressions, 0) AS impressions, coalesce(a.finalized, 0) AS finalized,
           coalesce(a.reward, 0) AS reward,
           CASE WHEN a.finalized > 0 THEN a.reward / a.finalized END AS rate,
           a.k, a.mean_n, a.var_n, a.var_r, a.cov_rn
    FROM v LEFT JOIN agg AS a ON a.variant = v.variant
  ), se AS (
    SELECT m.*,
           CASE WHEN m.k > 1 THEN
             sqrt(greatest(m.var_r - 2 * m.rate * m.cov_rn + m.rate * m.rate * m.var_n, 0)
                  / (m.k * m.mean_n * m.mean_n)) END AS se
    FROM m
  ), srm AS (
    SELECT CASE WHEN sum(se.users) > 0 THEN
             icpml.chi_square_sf(sum((se.users - t.total * se.weight / t.wsum) ^ 2
                                     / (t.total * se.weight / t.wsum)), count(*)::integer - 1) END AS p
    FROM se, (SELECT sum(s2.users)::double precision AS total, sum(s2.weight) AS wsum FROM se AS s2) AS t
  )
  SELECT se.variant, se.weight, se.users, se.impressions, se.finalized, se.reward, se.rate,
         se.rate - 1.959963984540054 * se.se, se.rate + 1.959963984540054 * se.se,
         CASE WHEN se.ord > 1 AND c.rate > 0 THEN se.rate / c.rate - 1 END,
         CASE WHEN se.ord > 1 AND se.se IS NOT NULL AND c.se IS NOT NULL
                   AND se.se * se.se + c.se * c.se > 0 THEN
           2 * icpml.normal_sf(abs(se.rate - c.rate) / sqrt(se.se * se.se + c.se * c.se)) END,
         srm.p
  FROM se CROSS JOIN srm CROSS JOIN (SELECT s3.rate, s3.se FROM se AS s3 WHERE s3.ord = 1) AS c
  ORDER BY se.ord;
END
$$;

COMMENT ON FUNCTION icpml.experiment_results(text) IS
  'Per variant: users served, impressions, finalized impressions, reward, reward per finalized impression with a 95 % confidence interval (delta method over users), lift and two-sided p-value against the first variant, and the sample-ratio-mismatch p-value of the user split';
