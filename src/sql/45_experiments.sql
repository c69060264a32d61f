-- ---------------------------------------------------------------------------
-- Experiments: A/B tests between recommendation policies.  While one runs,
-- recommend_accounts(policy => NULL) serves every user the policy of the
-- variant the user is assigned to (a hash of the experiment's name and the
-- user id, split by weight: the same user always gets the same variant) and
-- logs the experiment and the variant with every served row.
--
-- Variants are labels, each serving a policy (policies; two variants may
-- serve the same one: an A/A test).  With separate_state (the default) each
-- variant ranks with and trains its own shared bandit state
-- (bandit_state scope variant:<experiment>/<variant>, starting from the
-- prior), so no variant learns from another's traffic; users keep their own
-- state (a user is in one variant).  A holdout share of users, decided by a
-- second hash before the split, is served holdout_policy and logged with
-- variant 'holdout'; its feedback trains no state at all.  A variant may
-- name a model version (model_versions): its users get the candidates and
-- scores of that version's materialised scores (icpml.version_scores,
-- score_all(version => v)) while it is not the deployed one
-- (docs/experiments.md).
-- ---------------------------------------------------------------------------

CREATE TABLE icpml.experiments (
  name           text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  variants       text[] NOT NULL
                   CHECK (cardinality(variants) BETWEEN 2 AND 8 AND array_position(variants, NULL) IS NULL),
  weights        double precision[] NOT NULL
                   CHECK (array_position(weights, NULL) IS NULL AND 0 < ALL (weights)
                          AND 1e6 >= ALL (weights)),
  status         text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'stopped')),
  description    text,
  started_at     timestamptz NOT NULL DEFAULT now(),
  stopped_at     timestamptz,
  policies       text[] NOT NULL
                   CHECK (array_position(policies, NULL) IS NULL
                          AND policies <@ ARRAY['linucb', 'thompson', 'greedy', 'epsilon_greedy', 'icp', 'random']),
  separate_state boolean NOT NULL DEFAULT true,
  holdout        double precision NOT NULL DEFAULT 0 CHECK (holdout >= 0 AND holdout < 1),
  holdout_policy text NOT NULL DEFAULT 'icp'
                   CHECK (holdout_policy IN ('linucb', 'thompson', 'greedy', 'epsilon_greedy', 'icp', 'random')),
  promoted       text,
  model_versions integer[],
  CHECK (cardinality(weights) = cardinality(variants)),
  CHECK ((status = 'stopped') = (stopped_at IS NOT NULL)),
  CONSTRAINT experiments_variant_labels_check
    CHECK (cardinality(policies) = cardinality(variants)
           AND NOT 'holdout' = ANY (variants)
           AND (promoted IS NULL OR promoted = ANY (variants))),
  CONSTRAINT experiments_model_versions_check
    CHECK (model_versions IS NULL OR cardinality(model_versions) = cardinality(variants))
);

COMMENT ON TABLE icpml.experiments IS
  'A/B tests between recommendation policies: variants (labels), the policy each serves, their weights, running or stopped; at most one runs at a time';
COMMENT ON COLUMN icpml.experiments.policies IS
  'The policy each variant serves (two variants may serve the same policy: an A/A test)';
COMMENT ON COLUMN icpml.experiments.separate_state IS
  'Each variant ranks with and trains its own shared bandit state (scope variant:<experiment>/<variant>); false: every variant shares the global state';
COMMENT ON COLUMN icpml.experiments.holdout IS
  'Share of users held out (decided before the split): served holdout_policy, logged with variant holdout, their feedback trains no state';
COMMENT ON COLUMN icpml.experiments.holdout_policy IS
  'The fixed baseline policy the holdout is served';
COMMENT ON COLUMN icpml.experiments.promoted IS
  'The variant promote_variant() made the default, NULL when none was promoted';
COMMENT ON COLUMN icpml.experiments.model_versions IS
  'The model version each variant serves scores and candidates from (NULL, or a NULL element: the deployed model); one that is not deployed reads its icpml.version_scores';

CREATE UNIQUE INDEX experiments_one_running ON icpml.experiments ((true)) WHERE status = 'running';

CREATE TRIGGER experiments_invalidate
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON icpml.experiments
  FOR EACH STATEMENT EXECUTE FUNCTION icpml.invalidate_cache();

-- Distinct variants, and an experiment's design fixed once it exists:
-- changing variants, policies, weights, the state option or the holdout
-- would move users between variants or states and void the comparison and
-- the sample-ratio check.
CREATE FUNCTION icpml.experiments_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF (SELECT pg_catalog.count(DISTINCT v) FROM pg_catalog.unnest(NEW.variants) AS v)
     OPERATOR(pg_catalog.<>) pg_catalog.cardinality(NEW.variants) THEN
    RAISE EXCEPTION 'variants must be distinct: %', NEW.variants
      USING ERRCODE = 'check_violation';
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.unnest(NEW.variants) AS v
             WHERE v OPERATOR(pg_catalog.!~) '^[a-z0-9][a-z0-9_-]{0,62}$') THEN
    RAISE EXCEPTION 'invalid variant name in %', NEW.variants
      USING ERRCODE = 'check_violation';
  END IF;
  -- (these columns are NOT NULL: <> is IS DISTINCT FROM here)
  IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE'
     AND (NEW.name OPERATOR(pg_catalog.<>) OLD.name OR NEW.variants OPERATOR(pg_catalog.<>) OLD.variants
          OR NEW.weights OPERATOR(pg_catalog.<>) OLD.weights
          OR NEW.started_at OPERATOR(pg_catalog.<>) OLD.started_at
          OR NEW.policies OPERATOR(pg_catalog.<>) OLD.policies
          OR NEW.separate_state OPERATOR(pg_catalog.<>) OLD.separate_state
          OR NEW.holdout OPERATOR(pg_catalog.<>) OLD.holdout
          OR NEW.holdout_policy OPERATOR(pg_catalog.<>) OLD.holdout_policy
          OR (NEW.model_versions IS NULL) OPERATOR(pg_catalog.<>) (OLD.model_versions IS NULL)
          OR NEW.model_versions OPERATOR(pg_catalog.<>) OLD.model_versions) THEN
    RAISE EXCEPTION 'the design of experiment "%" cannot change once it exists', OLD.name
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Stop it and start a new experiment under another name.';
  END IF;
  RETURN NEW;
END
$$;

COMMENT ON FUNCTION icpml.experiments_guard() IS
  'Trigger on icpml.experiments: distinct variant names; name, variants, policies, model versions, weights, state option, holdout and start fixed once inserted';

CREATE TRIGGER experiments_guard
  BEFORE INSERT OR UPDATE ON icpml.experiments
  FOR EACH ROW EXECUTE FUNCTION icpml.experiments_guard();

CREATE INDEX recommendations_experiment_idx ON icpml.recommendations
  (experiment, variant, user_id) WHERE experiment IS NOT NULL;

CREATE FUNCTION icpml.start_experiment(
  name text,
  variants text[],
  weights double precision[] DEFAULT NULL,
  description text DEFAULT NULL,
  policies text[] DEFAULT NULL,
  separate_state boolean DEFAULT true,
  holdout double precision DEFAULT 0,
  holdout_policy text DEFAULT 'icp',
  model_versions integer[] DEFAULT NULL)
RETURNS icpml.experiments
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  known constant pg_catalog.text[] := ARRAY['linucb', 'thompson', 'greedy', 'epsilon_greedy', 'icp', 'random'];
  w double precision[] := weights;
  p pg_catalog.text[] := policies;
  v pg_catalog.text;
  mv integer;
  deployed integer;
  running pg_catalog.text;
  result icpml.experiments;
BEGIN
  IF name IS NULL OR name OPERATOR(pg_catalog.!~) '^[a-z0-9][a-z0-9_-]{0,62}$' THEN
    RAISE EXCEPTION 'invalid experiment name "%"', name
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use 1 to 63 lower-case letters, digits, _ or -, starting with a letter or digit.';
  END IF;
  IF variants IS NULL OR pg_catalog.cardinality(variants) OPERATOR(pg_catalog.<) 2
     OR pg_catalog.cardinality(variants) OPERATOR(pg_catalog.>) 8
     OR pg_catalog.array_ndims(variants) OPERATOR(pg_catalog.<>) 1 THEN
    RAISE EXCEPTION 'an experiment needs 2 to 8 variants, not %', COALESCE(pg_catalog.cardinality(variants), 0)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Pass the policies to compare, the control first: ARRAY[''linucb'', ''thompson''].';
  END IF;
  IF p IS NULL THEN
    -- the variants name their policies (0.3.0's form)
    FOREACH v IN ARRAY variants LOOP
      IF v IS NULL OR NOT v OPERATOR(pg_catalog.=) ANY (known) THEN
        RAISE EXCEPTION 'unknown policy "%" in variants', v
          USING ERRCODE = 'invalid_parameter_value',
                HINT = 'A variant is a policy (linucb, thompson, greedy, epsilon_greedy, icp or random), or a label with policies => ARRAY[...] saying what each serves.';
      END IF;
    END LOOP;
    p := variants;
  ELSE
    FOREACH v IN ARRAY variants LOOP
      IF v IS NULL OR v OPERATOR(pg_catalog.!~) '^[a-z0-9][a-z0-9_-]{0,62}$' OR v OPERATOR(pg_catalog.=) 'holdout' THEN
        RAISE EXCEPTION 'invalid variant name "%"', v
          USING ERRCODE = 'invalid_parameter_value',
                HINT = 'Use 1 to 63 lower-case letters, digits, _ or -, starting with a letter or digit; holdout is reserved.';
      END IF;
    END LOOP;
    IF pg_catalog.array_ndims(p) OPERATOR(pg_catalog.<>) 1
       OR pg_catalog.cardinality(p) OPERATOR(pg_catalog.<>) pg_catalog.cardinality(variants) THEN
      RAISE EXCEPTION 'policies must name % policies, one per variant', pg_catalog.cardinality(variants)
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'policies[i] is the policy variants[i] serves; omit it when the variants are policy names.';
    END IF;
    FOREACH v IN ARRAY p LOOP
      IF v IS NULL OR NOT v OPERATOR(pg_catalog.=) ANY (known) THEN
        RAISE EXCEPTION 'unknown policy "%" in policies', v
          USING ERRCODE = 'invalid_parameter_value',
                HINT = 'A policy is linucb, thompson, greedy, epsilon_greedy, icp or random.';
      END IF;
    END LOOP;
  END IF;
  IF (SELECT pg_catalog.count(DISTINCT u) FROM pg_catalog.unnest(variants) AS u)
     OPERATOR(pg_catalog.<>) pg_catalog.cardinality(variants) THEN
    RAISE EXCEPTION 'variants must be distinct: %', variants
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'List each variant once; weights set how many users each gets (two variants may serve one policy through policies).';
  END IF;
  IF w IS NULL THEN
    w := pg_catalog.array_fill(1.0::double precision, ARRAY[pg_catalog.cardinality(variants)]);
  END IF;
  IF pg_catalog.array_ndims(w) OPERATOR(pg_catalog.<>) 1
     OR pg_catalog.cardinality(w) OPERATOR(pg_catalog.<>) pg_catalog.cardinality(variants)
     OR EXISTS (SELECT FROM pg_catalog.unnest(w) AS x
                WHERE x IS NULL OR NOT (x OPERATOR(pg_catalog.>) 0
                                        AND x OPERATOR(pg_catalog.<=) 1e6::double precision)) THEN
    RAISE EXCEPTION 'weights must be % positive numbers up to 1e6, one per variant', pg_catalog.cardinality(variants)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Weights are relative shares (e.g. 1, 1, 2); omit them for an even split.';
  END IF;
  IF separate_state IS NULL THEN
    RAISE EXCEPTION 'separate_state must not be NULL'
      USING ERRCODE = 'null_value_not_allowed',
            HINT = 'true: each variant learns in its own state (the default); false: the variants share the global state.';
  END IF;
  IF holdout IS NULL OR NOT (holdout OPERATOR(pg_catalog.>=) 0 AND holdout OPERATOR(pg_catalog.<) 1) THEN
    RAISE EXCEPTION 'holdout must be a share in [0, 1), not %', holdout
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'The share of users held out, e.g. 0.05; 0 for none.';
  END IF;
  IF holdout_policy IS NULL OR NOT holdout_policy OPERATOR(pg_catalog.=) ANY (known) THEN
    RAISE EXCEPTION 'unknown holdout policy "%"', holdout_policy
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'The holdout is served a fixed baseline: icp (the default), random, or another policy.';
  END IF;
  IF model_versions IS NOT NULL THEN
    IF pg_catalog.array_ndims(model_versions) OPERATOR(pg_catalog.<>) 1
       OR pg_catalog.cardinality(model_versions) OPERATOR(pg_catalog.<>) pg_catalog.cardinality(variants) THEN
      RAISE EXCEPTION 'model_versions must name % versions, one per variant', pg_catalog.cardinality(variants)
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'model_versions[i] is the model version variants[i] serves; NULL for the deployed model.';
    END IF;
    SELECT m.version INTO deployed FROM icpml.models AS m WHERE m.status OPERATOR(pg_catalog.=) 'deployed';
    FOREACH mv IN ARRAY model_versions LOOP
      CONTINUE WHEN mv IS NULL OR mv OPERATOR(pg_catalog.=) deployed;
      IF NOT EXISTS (SELECT FROM icpml.models AS m WHERE m.version OPERATOR(pg_catalog.=) mv) THEN
        RAISE EXCEPTION 'model version % does not exist', mv
          USING ERRCODE = 'undefined_object',
                HINT = 'SELECT * FROM icpml.list_models() lists the stored versions.';
      END IF;
      IF NOT EXISTS (SELECT FROM icpml.version_scores AS s WHERE s.model_version OPERATOR(pg_catalog.=) mv) THEN
        RAISE EXCEPTION 'model version % has no materialised scores', mv
          USING ERRCODE = 'object_not_in_prerequisite_state',
                HINT = pg_catalog.format('Score every account with it first: SELECT icpml.score_all(version => %s);', mv);
      END IF;
    END LOOP;
  END IF;

  -- one start at a time: the checks below and the insert see the same table
  LOCK TABLE icpml.experiments IN SHARE ROW EXCLUSIVE MODE;
  IF EXISTS (SELECT FROM icpml.experiments AS e WHERE e.name OPERATOR(pg_catalog.=) start_experiment.name) THEN
    RAISE EXCEPTION 'experiment "%" already exists', name
      USING ERRCODE = 'duplicate_object',
            HINT = 'Choose another name; the results of the old one stay in icpml.experiment_results().';
  END IF;
  SELECT e.name INTO running FROM icpml.experiments AS e WHERE e.status OPERATOR(pg_catalog.=) 'running';
  IF FOUND THEN
    RAISE EXCEPTION 'experiment "%" is running', running
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = pg_catalog.format('Stop it first: SELECT icpml.stop_experiment(%L).', running);
  END IF;

  BEGIN
    INSERT INTO icpml.experiments AS e (name, variants, weights, description, policies, separate_state,
                                        holdout, holdout_policy, model_versions)
    VALUES (start_experiment.name, start_experiment.variants, w, start_experiment.description, p,
            start_experiment.separate_state, start_experiment.holdout, start_experiment.holdout_policy,
            start_experiment.model_versions)
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

COMMENT ON FUNCTION icpml.start_experiment(text, text[], double precision[], text, text[], boolean, double precision, text, integer[]) IS
  'Start an A/B test (the first variant is the control; weights default to an even split; variants are policy names, or labels with policies => saying what each serves): recommend_accounts(policy => NULL) serves each user the policy of their hashed variant, and the candidates and scores of its model version (model_versions; NULL: the deployed model); separate_state gives each variant its own shared bandit state; a holdout share is served holdout_policy and trains nothing';

CREATE FUNCTION icpml.stop_experiment(name text)
RETURNS icpml.experiments
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  result icpml.experiments;
BEGIN
  UPDATE icpml.experiments AS e SET status = 'stopped', stopped_at = pg_catalog.now()
  WHERE e.name OPERATOR(pg_catalog.=) stop_experiment.name AND e.status OPERATOR(pg_catalog.=) 'running'
  RETURNING e.* INTO result;
  IF NOT FOUND THEN
    IF EXISTS (SELECT FROM icpml.experiments AS e WHERE e.name OPERATOR(pg_catalog.=) stop_experiment.name) THEN
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

-- Promote an experiment's winner in one call: the experiment stops (if it
-- runs), the variant's model version is deployed (when it names one that
-- is not; the scores it materialised become the served ones at once, by
-- score_changed()), the variant's policy becomes
-- bandit_settings.default_policy, and
-- with separate states the variant's impressions join the global state's
-- stream (their state_scope becomes NULL) and the states are rebuilt from
-- the log, so the shared model continues from what it had plus what the
-- winner learned (rebuild_bandit_state() reads the whole log once).  The
-- other variants' impressions keep their own scopes; the holdout's train
-- nothing.
CREATE FUNCTION icpml.promote_variant(experiment text, variant text)
RETURNS icpml.experiments
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  e icpml.experiments;
  i integer;
  scope pg_catalog.text;
  mv integer;
BEGIN
  SELECT x.* INTO e FROM icpml.experiments AS x
  WHERE x.name OPERATOR(pg_catalog.=) promote_variant.experiment FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'experiment "%" does not exist', experiment
      USING ERRCODE = 'undefined_object',
            HINT = 'SELECT name, status FROM icpml.experiments lists them.';
  END IF;
  i := pg_catalog.array_position(e.variants, promote_variant.variant);
  IF i IS NULL THEN
    RAISE EXCEPTION 'experiment "%" has no variant "%"', experiment, variant
      USING ERRCODE = 'invalid_parameter_value',
            HINT = pg_catalog.format('Its variants are %s; the holdout cannot be promoted.',
                                     pg_catalog.array_to_string(e.variants, ', '));
  END IF;
  IF e.promoted IS NOT NULL THEN
    RAISE EXCEPTION 'experiment "%" already promoted variant "%"', experiment, e.promoted
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'A promotion happens once; set icpml.bandit_settings.default_policy to change the policy again.';
  END IF;

  mv := e.model_versions[i];
  IF mv IS NOT NULL AND NOT EXISTS (SELECT FROM icpml.models AS m
                                    WHERE m.version OPERATOR(pg_catalog.=) mv
                                      AND m.status OPERATOR(pg_catalog.=) 'deployed') THEN
    PERFORM icpml.deploy_model(mv, reason => pg_catalog.format('experiment %s promoted variant %s',
                                                                e.name, promote_variant.variant));
    -- the version's materialised scores become the served set now (adopt)
    PERFORM icpml.score_changed();
  END IF;

  UPDATE icpml.experiments AS x
  SET promoted = promote_variant.variant,
      status = 'stopped',
      stopped_at = COALESCE(x.stopped_at, pg_catalog.now())
  WHERE x.name OPERATOR(pg_catalog.=) e.name
  RETURNING x.* INTO e;

  UPDATE icpml.bandit_settings SET default_policy = e.policies[i];

  IF e.separate_state THEN
    scope := 'variant:' OPERATOR(pg_catalog.||) e.name OPERATOR(pg_catalog.||) '/'
             OPERATOR(pg_catalog.||) promote_variant.variant;
    UPDATE icpml.recommendations AS r SET state_scope = NULL
    WHERE r.experiment OPERATOR(pg_catalog.=) e.name AND r.state_scope OPERATOR(pg_catalog.=) scope;
    PERFORM icpml.rebuild_bandit_state();
  END IF;
  RETURN e;
END
$$;

COMMENT ON FUNCTION icpml.promote_variant(text, text) IS
  'Promote an experiment''s winning variant: stop the experiment, deploy its model version (if it names one), make its policy the default, and (separate states) merge what it learned into the global bandit state (its impressions join the global stream; the states are rebuilt from the log)';

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

-- Always-valid (sequential) statistics: the normal-mixture sequential
-- probability ratio test (mSPRT).  For an estimate with variance V of a
-- quantity whose true value is theta0 under the null, mixing the
-- alternative over N(theta0, tau2) gives the likelihood ratio
--   Lambda = sqrt(V / (V + tau2)) * exp(d^2 tau2 / (2 V (V + tau2))),  d = estimate - theta0,
-- a martingale under the null: P(Lambda ever >= 1/alpha) <= alpha however
-- often it is looked at.  1/Lambda is an always-valid p-value and
-- {theta0 : Lambda < 1/alpha} an always-valid confidence interval
-- (docs/experiments.md).
CREATE FUNCTION icpml.sequential_halfwidth(variance double precision, tau2 double precision,
                                           alpha double precision DEFAULT 0.05)
RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE
    WHEN NOT (tau2 OPERATOR(pg_catalog.>) 0 AND variance OPERATOR(pg_catalog.>=) 0 AND alpha OPERATOR(pg_catalog.>) 0 AND alpha OPERATOR(pg_catalog.<) 1) THEN NULL
    WHEN variance OPERATOR(pg_catalog.=) 0 THEN 0::double precision
    ELSE pg_catalog.sqrt(variance OPERATOR(pg_catalog.*) (variance OPERATOR(pg_catalog.+) tau2) OPERATOR(pg_catalog./) tau2
                         OPERATOR(pg_catalog.*) ((2 OPERATOR(pg_catalog.*) pg_catalog.ln(1 OPERATOR(pg_catalog./) alpha)) OPERATOR(pg_catalog.+) pg_catalog.ln((variance OPERATOR(pg_catalog.+) tau2) OPERATOR(pg_catalog./) variance)))
  END
$$;

COMMENT ON FUNCTION icpml.sequential_halfwidth(double precision, double precision, double precision) IS
  'Half-width of the always-valid (1 - alpha) confidence interval of an estimate with this variance, normal mixture of variance tau2 (mSPRT); internal helper of experiment_results';

CREATE FUNCTION icpml.msprt_p_value(estimate double precision, variance double precision,
                                    tau2 double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE
    WHEN NOT (tau2 OPERATOR(pg_catalog.>) 0 AND variance OPERATOR(pg_catalog.>) 0) THEN NULL
    ELSE pg_catalog.exp((OPERATOR(pg_catalog.-) GREATEST((0.5 OPERATOR(pg_catalog.*) pg_catalog.ln(variance OPERATOR(pg_catalog./) (variance OPERATOR(pg_catalog.+) tau2)))
                                  OPERATOR(pg_catalog.+) (estimate OPERATOR(pg_catalog.*) estimate OPERATOR(pg_catalog.*) tau2 OPERATOR(pg_catalog./) (2 OPERATOR(pg_catalog.*) variance OPERATOR(pg_catalog.*) (variance OPERATOR(pg_catalog.+) tau2))), 0)))
  END
$$;

COMMENT ON FUNCTION icpml.msprt_p_value(double precision, double precision, double precision) IS
  'Always-valid p-value min(1, 1/Lambda) of the normal-mixture SPRT that the true value of an estimate with this variance is 0, mixture variance tau2; internal helper of experiment_results';

-- Per-variant results.  The unit of randomisation is the user, so the
-- reward per finalized impression (a ratio of two per-user sums) gets its
-- standard error from the delta method over users: with per-user sums R_i,
-- N_i (N_i > 0) of a variant, rate = sum R / sum N, the linearised metric
-- y_i = (R_i - rate N_i) / mean(N) has mean 0 and se^2 = var(y) / k.  Each
-- variant is compared with the first (the control) by a two-sided z-test
-- (fixed horizon) and by the mSPRT above (always valid, tau = expected_lift
-- x the pooled rate).  CUPED: x_i = the user's reward per impression in the
-- pre_period before the experiment started (known before it started; users
-- without one get the mean), theta = the pooled within-variant regression
-- slope of y on x, and a variant's adjusted rate is rate - theta (mean x of
-- the variant - mean x of all), with variance var(y - theta x) / k.  The
-- sample-ratio check compares the users each variant served with the
-- weights and the holdout share (chi-square): a small p (< 0.001) means
-- assignment or logging is broken and the comparison should not be
-- trusted.  The holdout, when there is one, is the last row (weight NULL),
-- compared with the control like a variant.  as_of: the results as
-- they stood then (impressions served and finalized by that time).
CREATE FUNCTION icpml.experiment_results(
  name text,
  expected_lift double precision DEFAULT 0.1,
  pre_period interval DEFAULT '28 days',
  as_of timestamptz DEFAULT NULL)
RETURNS TABLE (variant text, weight double precision, users bigint, impressions bigint,
               finalized bigint, reward double precision, reward_per_impression double precision,
               ci_low double precision, ci_high double precision, lift double precision,
               p_value double precision, srm_p_value double precision,
               seq_ci_low double precision, seq_ci_high double precision, seq_p_value double precision,
               cuped_reward_per_impression double precision, cuped_ci_low double precision,
               cuped_ci_high double precision, cuped_p_value double precision,
               cuped_seq_p_value double precision, variance_reduction double precision,
               covariate_users bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  started timestamptz;
BEGIN
  SELECT e.started_at INTO started FROM icpml.experiments AS e WHERE e.name OPERATOR(pg_catalog.=) experiment_results.name;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'experiment "%" does not exist', experiment_results.name
      USING ERRCODE = 'undefined_object',
            HINT = 'SELECT name, status FROM icpml.experiments lists them.';
  END IF;
  IF experiment_results.expected_lift IS NULL
     OR NOT (experiment_results.expected_lift OPERATOR(pg_catalog.>) 0 AND experiment_results.expected_lift OPERATOR(pg_catalog.<) 'Infinity') THEN
    RAISE EXCEPTION 'expected_lift must be a positive number, not %', experiment_results.expected_lift
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'The relative lift the sequential test is tuned for, e.g. 0.1 for 10 %.';
  END IF;
  IF experiment_results.pre_period IS NULL OR experiment_results.pre_period OPERATOR(pg_catalog.<=) interval '0' THEN
    RAISE EXCEPTION 'pre_period must be a positive interval, not %', experiment_results.pre_period
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'How far before the start the CUPED covariate looks, e.g. ''28 days''.';
  END IF;
  RETURN QUERY
  WITH v AS (
    -- the variants, then the holdout (when there is one); share: the
    -- expected share of the users, for the sample-ratio check
    SELECT u.variant, u.weight, u.ord,
           ((1 OPERATOR(pg_catalog.-) e.holdout) OPERATOR(pg_catalog.*) u.weight)
             OPERATOR(pg_catalog./) (SELECT pg_catalog.sum(x) FROM pg_catalog.unnest(e.weights) AS x) AS share
    FROM icpml.experiments AS e,
         ROWS FROM (pg_catalog.unnest(e.variants), pg_catalog.unnest(e.weights)) WITH ORDINALITY AS u(variant, weight, ord)
    WHERE e.name OPERATOR(pg_catalog.=) experiment_results.name
    UNION ALL
    SELECT 'holdout', NULL, pg_catalog.cardinality(e.variants) OPERATOR(pg_catalog.+) 1, e.holdout
    FROM icpml.experiments AS e
    WHERE e.name OPERATOR(pg_catalog.=) experiment_results.name AND e.holdout OPERATOR(pg_catalog.>) 0
  ), served AS (
    SELECT r.variant, r.user_id, r.reward,
           r.status OPERATOR(pg_catalog.<>) 'pending' AND (experiment_results.as_of IS NULL
                                      OR r.finalized_at OPERATOR(pg_catalog.<=) experiment_results.as_of) AS fin
    FROM icpml.recommendations AS r
    WHERE r.experiment OPERATOR(pg_catalog.=) experiment_results.name
      AND (experiment_results.as_of IS NULL OR r.served_at OPERATOR(pg_catalog.<=) experiment_results.as_of)
  ), per_user AS (
    SELECT w.variant, w.user_id, pg_catalog.count(*) AS shown,
           pg_catalog.count(*) FILTER (WHERE w.fin) AS n,
           COALESCE(pg_catalog.sum(w.reward) FILTER (WHERE w.fin), 0) AS rw
    FROM served AS w
    GROUP BY w.variant, w.user_id
  ), agg AS (
    SELECT p.variant, pg_catalog.count(*) AS users, pg_catalog.sum(p.shown)::bigint AS impressions,
           pg_catalog.sum(p.n)::bigint AS finalized, pg_catalog.sum(p.rw) AS reward,
           pg_catalog.avg(p.n) FILTER (WHERE p.n OPERATOR(pg_catalog.>) 0) AS mean_n
    FROM per_user AS p GROUP BY p.variant
  ), pre AS (
    -- the CUPED covariate: each user's reward per impression served in the
    -- pre-period, as known when the experiment started
    SELECT q.user_id,
           COALESCE(pg_catalog.sum(q.reward) FILTER (WHERE q.status OPERATOR(pg_catalog.<>) 'pending' AND q.finalized_at OPERATOR(pg_catalog.<) started), 0)
             OPERATOR(pg_catalog./) pg_catalog.count(*) AS x
    FROM icpml.recommendations AS q
    WHERE q.user_id IN (SELECT p.user_id FROM per_user AS p)
      AND q.served_at OPERATOR(pg_catalog.>=) (started OPERATOR(pg_catalog.-) experiment_results.pre_period) AND q.served_at OPERATOR(pg_catalog.<) started
    GROUP BY q.user_id
  ), lin AS (
    SELECT p.variant, (p.rw OPERATOR(pg_catalog.-) (a.reward OPERATOR(pg_catalog./) a.finalized OPERATOR(pg_catalog.*) p.n)) OPERATOR(pg_catalog./) a.mean_n AS y, pre.x AS x_raw
    FROM per_user AS p
    JOIN agg AS a ON a.variant OPERATOR(pg_catalog.=) p.variant
    LEFT JOIN pre ON pre.user_id OPERATOR(pg_catalog.=) p.user_id
    WHERE p.n OPERATOR(pg_catalog.>) 0
  ), lin_x AS (
    SELECT l.variant, l.y, l.x_raw, COALESCE(l.x_raw, m.mx) AS x
    FROM lin AS l, (SELECT pg_catalog.avg(l2.x_raw) AS mx FROM lin AS l2) AS m
  ), vstat AS (
    SELECT l.variant, pg_catalog.count(*) AS k, pg_catalog.count(l.x_raw) AS kx,
           pg_catalog.var_samp(l.y) AS var_y, pg_catalog.avg(l.x) AS mean_x,
           pg_catalog.var_samp(l.x) AS var_x, pg_catalog.covar_samp(l.y, l.x) AS cov_yx
    FROM lin_x AS l GROUP BY l.variant
  ), pooled AS (
    -- theta: the within-variant regression slope of y on x; tau: the mixture
    -- scale of the sequential test
    SELECT pg_catalog.sum(s.cov_yx OPERATOR(pg_catalog.*) (s.k OPERATOR(pg_catalog.-) 1)) OPERATOR(pg_catalog./) NULLIF(pg_catalog.sum(s.var_x OPERATOR(pg_catalog.*) (s.k OPERATOR(pg_catalog.-) 1)), 0) AS theta,
           (SELECT pg_catalog.avg(l.x) FROM lin_x AS l) AS mean_x_all,
           (SELECT pg_catalog.sum(a.reward) OPERATOR(pg_catalog./) NULLIF(pg_catalog.sum(a.finalized), 0) FROM agg AS a)
             OPERATOR(pg_catalog.*) experiment_results.expected_lift AS tau
    FROM vstat AS s
  ), m AS (
    SELECT v.variant, v.weight, v.ord, v.share, COALESCE(a.users, 0) AS users,
           COALESCE(a.impressions, 0) AS impressions, COALESCE(a.finalized, 0) AS finalized,
           COALESCE(a.reward, 0) AS reward,
           CASE WHEN a.finalized OPERATOR(pg_catalog.>) 0 THEN a.reward OPERATOR(pg_catalog./) a.finalized END AS rate,
           CASE WHEN s.k OPERATOR(pg_catalog.>) 1 THEN s.var_y OPERATOR(pg_catalog./) s.k END AS var_rate,
           CASE WHEN s.k OPERATOR(pg_catalog.>) 1 AND pl.theta IS NOT NULL THEN
             (a.reward OPERATOR(pg_catalog./) a.finalized) OPERATOR(pg_catalog.-) (pl.theta OPERATOR(pg_catalog.*) (s.mean_x OPERATOR(pg_catalog.-) pl.mean_x_all)) END AS cuped_rate,
           CASE WHEN s.k OPERATOR(pg_catalog.>) 1 AND pl.theta IS NOT NULL THEN
             GREATEST(s.var_y OPERATOR(pg_catalog.-) (2 OPERATOR(pg_catalog.*) pl.theta OPERATOR(pg_catalog.*) s.cov_yx) OPERATOR(pg_catalog.+) (pl.theta OPERATOR(pg_catalog.*) pl.theta OPERATOR(pg_catalog.*) s.var_x), 0) OPERATOR(pg_catalog./) s.k END AS var_cuped,
           COALESCE(s.kx, 0) AS kx,
           pl.tau OPERATOR(pg_catalog.*) pl.tau AS tau2
    FROM v
    LEFT JOIN agg AS a ON a.variant OPERATOR(pg_catalog.=) v.variant
    LEFT JOIN vstat AS s ON s.variant OPERATOR(pg_catalog.=) v.variant
    CROSS JOIN pooled AS pl
  ), srm AS (
    SELECT CASE WHEN t.total OPERATOR(pg_catalog.>) 0 THEN
             icpml.chi_square_sf(pg_catalog.sum(((m.users OPERATOR(pg_catalog.-) (t.total OPERATOR(pg_catalog.*) m.share)) OPERATOR(pg_catalog.^) 2)
                                                OPERATOR(pg_catalog./) (NULLIF(t.total, 0) OPERATOR(pg_catalog.*) m.share)),
                                 pg_catalog.count(*)::integer OPERATOR(pg_catalog.-) 1) END AS p
    FROM m, (SELECT pg_catalog.sum(m2.users)::double precision AS total FROM m AS m2) AS t
    GROUP BY t.total
  ), cmp AS (
    SELECT m.*, c.rate AS c_rate,
           CASE WHEN m.ord OPERATOR(pg_catalog.>) 1 THEN m.rate OPERATOR(pg_catalog.-) c.rate END AS diff,
           CASE WHEN m.ord OPERATOR(pg_catalog.>) 1 THEN m.var_rate OPERATOR(pg_catalog.+) c.var_rate END AS var_diff,
           CASE WHEN m.ord OPERATOR(pg_catalog.>) 1 THEN m.cuped_rate OPERATOR(pg_catalog.-) c.cuped_rate END AS cuped_diff,
           CASE WHEN m.ord OPERATOR(pg_catalog.>) 1 THEN m.var_cuped OPERATOR(pg_catalog.+) c.var_cuped END AS var_cuped_diff
    FROM m CROSS JOIN (SELECT m3.rate, m3.var_rate, m3.cuped_rate, m3.var_cuped FROM m AS m3 WHERE m3.ord OPERATOR(pg_catalog.=) 1) AS c
  )
  SELECT x.variant, x.weight, x.users, x.impressions, x.finalized, x.reward, x.rate,
         x.rate OPERATOR(pg_catalog.-) (1.959963984540054 OPERATOR(pg_catalog.*) pg_catalog.sqrt(x.var_rate)),
         x.rate OPERATOR(pg_catalog.+) (1.959963984540054 OPERATOR(pg_catalog.*) pg_catalog.sqrt(x.var_rate)),
         CASE WHEN x.ord OPERATOR(pg_catalog.>) 1 AND x.c_rate OPERATOR(pg_catalog.>) 0 THEN (x.rate OPERATOR(pg_catalog./) x.c_rate) OPERATOR(pg_catalog.-) 1 END,
         CASE WHEN x.var_diff OPERATOR(pg_catalog.>) 0 THEN
           2 OPERATOR(pg_catalog.*) icpml.normal_sf(pg_catalog.abs(x.diff) OPERATOR(pg_catalog./) pg_catalog.sqrt(x.var_diff)) END,
         srm.p,
         x.rate OPERATOR(pg_catalog.-) icpml.sequential_halfwidth(x.var_rate, x.tau2),
         x.rate OPERATOR(pg_catalog.+) icpml.sequential_halfwidth(x.var_rate, x.tau2),
         icpml.msprt_p_value(x.diff, x.var_diff, x.tau2),
         x.cuped_rate,
         x.cuped_rate OPERATOR(pg_catalog.-) (1.959963984540054 OPERATOR(pg_catalog.*) pg_catalog.sqrt(x.var_cuped)),
         x.cuped_rate OPERATOR(pg_catalog.+) (1.959963984540054 OPERATOR(pg_catalog.*) pg_catalog.sqrt(x.var_cuped)),
         CASE WHEN x.var_cuped_diff OPERATOR(pg_catalog.>) 0 THEN
           2 OPERATOR(pg_catalog.*) icpml.normal_sf(pg_catalog.abs(x.cuped_diff) OPERATOR(pg_catalog./) pg_catalog.sqrt(x.var_cuped_diff)) END,
         icpml.msprt_p_value(x.cuped_diff, x.var_cuped_diff, x.tau2),
         CASE WHEN x.ord OPERATOR(pg_catalog.>) 1 AND x.var_diff OPERATOR(pg_catalog.>) 0 THEN 1 OPERATOR(pg_catalog.-) (x.var_cuped_diff OPERATOR(pg_catalog./) x.var_diff)
              WHEN x.ord OPERATOR(pg_catalog.=) 1 AND x.var_rate OPERATOR(pg_catalog.>) 0 THEN 1 OPERATOR(pg_catalog.-) (x.var_cuped OPERATOR(pg_catalog./) x.var_rate) END,
         x.kx
  FROM cmp AS x CROSS JOIN srm
  ORDER BY x.ord;
END
$$;

COMMENT ON FUNCTION icpml.experiment_results(text, double precision, interval, timestamptz) IS
  'Per variant (the holdout last, weight NULL): users served, impressions, finalized impressions, reward, reward per finalized impression with a 95 % confidence interval (delta method over users), lift and two-sided p-value against the first variant, the sample-ratio-mismatch p-value of the user split; always-valid (sequential, mSPRT) interval and p-value; CUPED-adjusted rate, interval and p-values with a pre-period covariate (docs/experiments.md)';
