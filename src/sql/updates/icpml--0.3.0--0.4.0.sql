-- icpml 0.3.0 -> 0.4.0
\echo Use "ALTER EXTENSION icpml UPDATE TO '0.4.0'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Experiments and bandit health (#13 items 5 and 6): the retrieval source of
-- each served row, peeking-safe (mSPRT) and CUPED statistics in
-- experiment_results (new parameters and OUT columns: DROP + CREATE), and
-- icpml.bandit_health().  Administrative: nothing for PUBLIC.
-- ---------------------------------------------------------------------------
ALTER TABLE icpml.recommendations ADD COLUMN source text;
COMMENT ON COLUMN icpml.recommendations.source IS
  'The retrieval source the account came from (e.g. icp, affinity, fresh, explore); NULL when not logged (rows served before sources existed)';

DROP FUNCTION icpml.experiment_results(text);

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
-- weights (chi-square): a small p (< 0.001) means assignment or logging is
-- broken and the comparison should not be trusted.  as_of: the results as
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
    SELECT u.variant, u.weight, u.ord
    FROM icpml.experiments AS e,
         ROWS FROM (pg_catalog.unnest(e.variants), pg_catalog.unnest(e.weights)) WITH ORDINALITY AS u(variant, weight, ord)
    WHERE e.name OPERATOR(pg_catalog.=) experiment_results.name
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
    SELECT v.variant, v.weight, v.ord, COALESCE(a.users, 0) AS users,
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
             icpml.chi_square_sf(pg_catalog.sum(((m.users OPERATOR(pg_catalog.-) (t.total OPERATOR(pg_catalog.*) m.weight OPERATOR(pg_catalog./) t.wsum)) OPERATOR(pg_catalog.^) 2)
                                                OPERATOR(pg_catalog./) (NULLIF(t.total, 0) OPERATOR(pg_catalog.*) m.weight OPERATOR(pg_catalog./) t.wsum)),
                                 pg_catalog.count(*)::integer OPERATOR(pg_catalog.-) 1) END AS p
    FROM m, (SELECT pg_catalog.sum(m2.users)::double precision AS total,
                    pg_catalog.sum(m2.weight) AS wsum FROM m AS m2) AS t
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
  'Per variant: users served, impressions, finalized impressions, reward, reward per finalized impression with a 95 % confidence interval (delta method over users), lift and two-sided p-value against the first variant, the sample-ratio-mismatch p-value of the user split; always-valid (sequential, mSPRT) interval and p-value; CUPED-adjusted rate, interval and p-values with a pre-period covariate (docs/experiments.md)';

-- Bandit health: what the log of served recommendations says about the
-- recommender over a window (docs/experiments.md).

CREATE FUNCTION icpml.bandit_health(
  since timestamptz DEFAULT NULL,
  until timestamptz DEFAULT NULL)
RETURNS TABLE (metric text, scope text, value double precision, impressions bigint,
               ci_low double precision, ci_high double precision, status text, note text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t1 timestamptz := COALESCE(bandit_health.until, pg_catalog.now());
  t0 timestamptz := COALESCE(bandit_health.since, t1 OPERATOR(pg_catalog.-) interval '7 days');
  cfg icpml.bandit_settings;
BEGIN
  IF t0 OPERATOR(pg_catalog.>=) t1 THEN
    RAISE EXCEPTION 'the window is empty: since % is not before until %', t0, t1
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Omit both for the last 7 days.';
  END IF;
  SELECT * INTO cfg FROM icpml.bandit_settings AS s;

  -- served: impressions and share per policy
  RETURN QUERY
  SELECT 'served'::text, r.policy, (pg_catalog.count(*)::double precision
           OPERATOR(pg_catalog./) pg_catalog.sum(pg_catalog.count(*)) OVER ())::double precision,
         pg_catalog.count(*), NULL::double precision, NULL::double precision, NULL::text,
         pg_catalog.format('%s finalized, %s pending, %s users', pg_catalog.count(*) FILTER (WHERE r.status OPERATOR(pg_catalog.<>) 'pending'),
                           pg_catalog.count(*) FILTER (WHERE r.status OPERATOR(pg_catalog.=) 'pending'),
                           pg_catalog.count(DISTINCT r.user_id))
  FROM icpml.recommendations AS r
  WHERE r.served_at OPERATOR(pg_catalog.>=) t0 AND r.served_at OPERATOR(pg_catalog.<) t1
  GROUP BY r.policy ORDER BY r.policy;

  -- exploration: share of served rows listed above a row of the same list
  -- (one user, one call: the same served_at) that the policy's own model
  -- expects to earn more; a lower bound (candidates not listed are not in
  -- the log).  LinUCB's bonus share: how much of its ranking value is
  -- uncertainty.
  RETURN QUERY
  WITH lists AS (
    SELECT r.policy, r.score, r.expected_reward,
           pg_catalog.max(r.expected_reward) OVER (PARTITION BY r.user_id, r.served_at ORDER BY r.rank DESC
                                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS best_below
    FROM icpml.recommendations AS r
    WHERE r.served_at OPERATOR(pg_catalog.>=) t0 AND r.served_at OPERATOR(pg_catalog.<) t1
  )
  SELECT 'exploration'::text, l.policy,
         pg_catalog.avg(CASE WHEN l.best_below OPERATOR(pg_catalog.>) l.expected_reward THEN 1 ELSE 0 END)::double precision,
         pg_catalog.count(*), NULL::double precision, NULL::double precision,
         CASE WHEN l.policy IN ('linucb', 'thompson', 'epsilon_greedy') AND pg_catalog.count(*) OPERATOR(pg_catalog.>=) 500 THEN
           CASE WHEN pg_catalog.avg(CASE WHEN l.best_below OPERATOR(pg_catalog.>) l.expected_reward THEN 1 ELSE 0 END) OPERATOR(pg_catalog.<) 0.01
                THEN 'warn' ELSE 'ok' END END,
         CASE WHEN l.policy IN ('linucb', 'thompson', 'epsilon_greedy') AND pg_catalog.count(*) OPERATOR(pg_catalog.>=) 500
                   AND pg_catalog.avg(CASE WHEN l.best_below OPERATOR(pg_catalog.>) l.expected_reward THEN 1 ELSE 0 END) OPERATOR(pg_catalog.<) 0.01
              THEN 'the policy ranks by expected reward alone: it has stopped exploring (raise alpha, v or epsilon)'
              WHEN l.policy OPERATOR(pg_catalog.=) 'linucb' THEN
                pg_catalog.format('uncertainty bonus: %s of the ranking value',
                                  pg_catalog.round((pg_catalog.sum(l.score OPERATOR(pg_catalog.-) l.expected_reward)
                                                    OPERATOR(pg_catalog./) NULLIF(pg_catalog.sum(pg_catalog.abs(l.score)), 0))::numeric, 3))
              WHEN l.policy IN ('icp', 'random') THEN 'this policy does not rank by the model''s expected reward'
              ELSE 'share of listed items ranked above an item the model expects to earn more' END
  FROM lists AS l
  GROUP BY l.policy ORDER BY l.policy;

  -- propensities: effective sample size of the inverse-propensity weights
  -- (sum w)^2 / sum w^2 as a share of the impressions, and the share logged
  -- with propensity >= 0.99 (deterministic choices)
  RETURN QUERY
  SELECT 'propensity_ess'::text, r.policy,
         (pg_catalog.sum(1 OPERATOR(pg_catalog./) r.propensity) OPERATOR(pg_catalog.^) 2) OPERATOR(pg_catalog./) pg_catalog.sum(1 OPERATOR(pg_catalog./) (r.propensity OPERATOR(pg_catalog.*) r.propensity))
           OPERATOR(pg_catalog./) pg_catalog.count(*),
         pg_catalog.count(*), NULL::double precision, NULL::double precision,
         CASE WHEN pg_catalog.count(*) OPERATOR(pg_catalog.>=) 100 THEN
           CASE WHEN ((pg_catalog.sum(1 OPERATOR(pg_catalog./) r.propensity) OPERATOR(pg_catalog.^) 2) OPERATOR(pg_catalog./) pg_catalog.sum(1 OPERATOR(pg_catalog./) (r.propensity OPERATOR(pg_catalog.*) r.propensity))
                       OPERATOR(pg_catalog./) pg_catalog.count(*)) OPERATOR(pg_catalog.<) 0.1
                     OR (r.policy IN ('thompson', 'epsilon_greedy')
                         AND pg_catalog.avg(CASE WHEN r.propensity OPERATOR(pg_catalog.>=) 0.99 THEN 1 ELSE 0 END) OPERATOR(pg_catalog.>) 0.95)
                THEN 'warn' ELSE 'ok' END END,
         pg_catalog.format('min propensity %s; %s of rows deterministic (propensity >= 0.99)%s',
                           pg_catalog.round(pg_catalog.min(r.propensity)::numeric, 4),
                           pg_catalog.round(pg_catalog.avg(CASE WHEN r.propensity OPERATOR(pg_catalog.>=) 0.99 THEN 1 ELSE 0 END), 3),
                           CASE WHEN r.policy IN ('linucb', 'greedy', 'icp') THEN
                             ': a deterministic policy; evaluating other policies off-policy needs an exploration mix'
                                WHEN r.policy IN ('thompson', 'epsilon_greedy')
                                     AND pg_catalog.avg(CASE WHEN r.propensity OPERATOR(pg_catalog.>=) 0.99 THEN 1 ELSE 0 END) OPERATOR(pg_catalog.>) 0.95 THEN
                             ': propensities collapsed, the policy hardly randomises any more'
                                ELSE '' END)
  FROM icpml.recommendations AS r
  WHERE r.served_at OPERATOR(pg_catalog.>=) t0 AND r.served_at OPERATOR(pg_catalog.<) t1
  GROUP BY r.policy ORDER BY r.policy;

  -- reward per finalized impression by retrieval source and by rank (a
  -- rough 95 % interval: impressions as units)
  RETURN QUERY
  SELECT 'reward_by_source'::text, COALESCE(r.source, '(not logged)'),
         pg_catalog.avg(r.reward), pg_catalog.count(*),
         pg_catalog.avg(r.reward) OPERATOR(pg_catalog.-) (1.959963984540054 OPERATOR(pg_catalog.*) pg_catalog.sqrt(pg_catalog.var_samp(r.reward) OPERATOR(pg_catalog./) pg_catalog.count(*))),
         pg_catalog.avg(r.reward) OPERATOR(pg_catalog.+) (1.959963984540054 OPERATOR(pg_catalog.*) pg_catalog.sqrt(pg_catalog.var_samp(r.reward) OPERATOR(pg_catalog./) pg_catalog.count(*))),
         NULL::text,
         pg_catalog.format('%s of finalized impressions', pg_catalog.round(pg_catalog.count(*)::numeric
                                                                            OPERATOR(pg_catalog./) pg_catalog.sum(pg_catalog.count(*)) OVER (), 3))
  FROM icpml.recommendations AS r
  WHERE r.served_at OPERATOR(pg_catalog.>=) t0 AND r.served_at OPERATOR(pg_catalog.<) t1 AND r.status OPERATOR(pg_catalog.<>) 'pending'
  GROUP BY r.source ORDER BY r.source NULLS LAST;

  RETURN QUERY
  WITH by_rank AS (
    SELECT r.rank, pg_catalog.avg(r.reward) AS rate, pg_catalog.count(*) AS n,
           pg_catalog.var_samp(r.reward) AS var
    FROM icpml.recommendations AS r
    WHERE r.served_at OPERATOR(pg_catalog.>=) t0 AND r.served_at OPERATOR(pg_catalog.<) t1 AND r.status OPERATOR(pg_catalog.<>) 'pending'
    GROUP BY r.rank
  )
  SELECT 'reward_by_rank'::text, b.rank::text, b.rate, b.n,
         b.rate OPERATOR(pg_catalog.-) (1.959963984540054 OPERATOR(pg_catalog.*) pg_catalog.sqrt(b.var OPERATOR(pg_catalog./) b.n)),
         b.rate OPERATOR(pg_catalog.+) (1.959963984540054 OPERATOR(pg_catalog.*) pg_catalog.sqrt(b.var OPERATOR(pg_catalog./) b.n)),
         NULL::text,
         pg_catalog.format('%s of rank 1''s rate; the model assumes rank %s is examined %s as often',
                           COALESCE(pg_catalog.round((b.rate OPERATOR(pg_catalog./) NULLIF(f.rate, 0))::numeric, 3)::text, 'n/a'), b.rank,
                           pg_catalog.round(((1 OPERATOR(pg_catalog./) pg_catalog.log(2::numeric, (b.rank OPERATOR(pg_catalog.+) 1)::numeric))::double precision
                                             OPERATOR(pg_catalog.^) cfg.position_bias)::numeric, 3))
  FROM by_rank AS b LEFT JOIN by_rank AS f ON f.rank OPERATOR(pg_catalog.=) 1
  ORDER BY b.rank;

  -- splits that should follow a design: each experiment's users against its
  -- weights (chi-square), and epsilon-greedy's random picks against epsilon
  -- (a random pick other than the greedy item is logged with propensity
  -- epsilon / remaining < 1 - epsilon; its expected share is about epsilon)
  RETURN QUERY
  WITH u AS (
    SELECT r.experiment, r.variant, pg_catalog.count(DISTINCT r.user_id) AS users
    FROM icpml.recommendations AS r
    WHERE r.served_at OPERATOR(pg_catalog.>=) t0 AND r.served_at OPERATOR(pg_catalog.<) t1 AND r.experiment IS NOT NULL
    GROUP BY r.experiment, r.variant
  ), d AS (
    SELECT e.name, x.variant, x.weight OPERATOR(pg_catalog./) pg_catalog.sum(x.weight) OVER (PARTITION BY e.name) AS share,
           COALESCE(u.users, 0) AS users
    FROM icpml.experiments AS e
    CROSS JOIN LATERAL ROWS FROM (pg_catalog.unnest(e.variants), pg_catalog.unnest(e.weights)) AS x(variant, weight)
    LEFT JOIN u ON u.experiment OPERATOR(pg_catalog.=) e.name AND u.variant OPERATOR(pg_catalog.=) x.variant
    WHERE e.name IN (SELECT u2.experiment FROM u AS u2)
  ), d2 AS (
    SELECT d.*, pg_catalog.sum(d.users) OVER (PARTITION BY d.name) OPERATOR(pg_catalog.*) d.share AS expected
    FROM d
  ), t AS (
    SELECT d2.name, pg_catalog.sum(d2.users) AS total, pg_catalog.count(*) AS k,
           pg_catalog.sum(((d2.users OPERATOR(pg_catalog.-) d2.expected) OPERATOR(pg_catalog.^) 2) OPERATOR(pg_catalog./) d2.expected) AS chi2
    FROM d2 GROUP BY d2.name
  )
  SELECT 'split_srm'::text, 'experiment ' OPERATOR(pg_catalog.||) t.name,
         icpml.chi_square_sf(t.chi2, t.k::integer OPERATOR(pg_catalog.-) 1), t.total::bigint,
         NULL::double precision, NULL::double precision,
         CASE WHEN icpml.chi_square_sf(t.chi2, t.k::integer OPERATOR(pg_catalog.-) 1) OPERATOR(pg_catalog.<) 0.001 THEN 'warn' ELSE 'ok' END,
         CASE WHEN icpml.chi_square_sf(t.chi2, t.k::integer OPERATOR(pg_catalog.-) 1) OPERATOR(pg_catalog.<) 0.001
              THEN 'users per variant do not match the weights: check assignment and callers passing policy'
              ELSE 'users per variant match the weights (p-value of the chi-square test)' END
  FROM t ORDER BY t.name;

  RETURN QUERY
  WITH g AS (
    SELECT pg_catalog.count(*) AS n,
           pg_catalog.count(*) FILTER (WHERE r.propensity OPERATOR(pg_catalog.<) (1 OPERATOR(pg_catalog.-) cfg.epsilon)) AS random_picks
    FROM icpml.recommendations AS r
    WHERE r.served_at OPERATOR(pg_catalog.>=) t0 AND r.served_at OPERATOR(pg_catalog.<) t1 AND r.policy OPERATOR(pg_catalog.=) 'epsilon_greedy'
  )
  SELECT 'exploration_split'::text, 'epsilon_greedy'::text,
         g.random_picks::double precision OPERATOR(pg_catalog./) g.n, g.n, NULL::double precision, NULL::double precision,
         CASE WHEN cfg.epsilon OPERATOR(pg_catalog.>) 0 AND cfg.epsilon OPERATOR(pg_catalog.<) 0.5
                   AND (2 OPERATOR(pg_catalog.*) icpml.normal_sf(pg_catalog.abs(g.random_picks OPERATOR(pg_catalog.-) (g.n OPERATOR(pg_catalog.*) cfg.epsilon))
                                           OPERATOR(pg_catalog./) pg_catalog.sqrt(g.n OPERATOR(pg_catalog.*) cfg.epsilon OPERATOR(pg_catalog.*) (1 OPERATOR(pg_catalog.-) cfg.epsilon)))) OPERATOR(pg_catalog.<) 0.001
              THEN 'warn' WHEN cfg.epsilon OPERATOR(pg_catalog.>) 0 AND cfg.epsilon OPERATOR(pg_catalog.<) 0.5 THEN 'ok' END,
         pg_catalog.format('share of random picks; epsilon is %s (a random pick of the greedy item counts as greedy)',
                           cfg.epsilon)
  FROM g WHERE g.n OPERATOR(pg_catalog.>) 0;

  -- reward trend: reward per finalized impression by day served, and the
  -- least-squares slope per day over the window (weighted by impressions)
  RETURN QUERY
  WITH day AS (
    SELECT pg_catalog.date_trunc('day', r.served_at) AS d, pg_catalog.avg(r.reward) AS rate,
           pg_catalog.count(*) AS n, pg_catalog.avg(r.context[2]) AS icp
    FROM icpml.recommendations AS r
    WHERE r.served_at OPERATOR(pg_catalog.>=) t0 AND r.served_at OPERATOR(pg_catalog.<) t1 AND r.status OPERATOR(pg_catalog.<>) 'pending'
    GROUP BY 1
  )
  SELECT 'reward_trend'::text, pg_catalog.to_char(day.d, 'YYYY-MM-DD'), day.rate, day.n,
         NULL::double precision, NULL::double precision, NULL::text,
         pg_catalog.format('mean ICP probability served %s', pg_catalog.round(day.icp::numeric, 3))
  FROM day ORDER BY day.d;

  RETURN QUERY
  WITH pts AS (
    SELECT pg_catalog.date_part('epoch', r.served_at OPERATOR(pg_catalog.-) t0) OPERATOR(pg_catalog./) 86400 AS x, r.reward AS y
    FROM icpml.recommendations AS r
    WHERE r.served_at OPERATOR(pg_catalog.>=) t0 AND r.served_at OPERATOR(pg_catalog.<) t1 AND r.status OPERATOR(pg_catalog.<>) 'pending'
  ), fit AS (
    SELECT pg_catalog.regr_slope(p.y, p.x) AS slope, pg_catalog.regr_count(p.y, p.x) AS n,
           pg_catalog.regr_sxx(p.y, p.x) AS sxx, pg_catalog.regr_syy(p.y, p.x) AS syy,
           pg_catalog.regr_sxy(p.y, p.x) AS sxy, pg_catalog.avg(p.y) AS mean_y,
           pg_catalog.max(p.x) OPERATOR(pg_catalog.-) pg_catalog.min(p.x) AS span
    FROM pts AS p
  ), se AS (
    SELECT f.*, CASE WHEN f.n OPERATOR(pg_catalog.>) 2 AND f.sxx OPERATOR(pg_catalog.>) 0 AND f.span OPERATOR(pg_catalog.>=) 2 THEN
                  pg_catalog.sqrt(GREATEST(f.syy OPERATOR(pg_catalog.-) (f.sxy OPERATOR(pg_catalog.*) f.sxy OPERATOR(pg_catalog./) f.sxx), 0) OPERATOR(pg_catalog./) (f.n OPERATOR(pg_catalog.-) 2) OPERATOR(pg_catalog./) f.sxx) END AS se
    FROM fit AS f
  )
  SELECT 'reward_slope'::text, 'per day'::text, CASE WHEN s.span OPERATOR(pg_catalog.>=) 2 THEN s.slope END, s.n,
         s.slope OPERATOR(pg_catalog.-) (1.959963984540054 OPERATOR(pg_catalog.*) s.se), s.slope OPERATOR(pg_catalog.+) (1.959963984540054 OPERATOR(pg_catalog.*) s.se),
         CASE WHEN s.se IS NOT NULL THEN
           CASE WHEN (s.slope OPERATOR(pg_catalog.+) (1.959963984540054 OPERATOR(pg_catalog.*) s.se)) OPERATOR(pg_catalog.<) 0 THEN 'warn' ELSE 'ok' END END,
         CASE WHEN s.span OPERATOR(pg_catalog.<) 2 THEN 'needs rows served over at least two days'
              WHEN s.se IS NOT NULL AND (s.slope OPERATOR(pg_catalog.+) (1.959963984540054 OPERATOR(pg_catalog.*) s.se)) OPERATOR(pg_catalog.<) 0 THEN
           pg_catalog.format('reward per impression is falling (mean %s): check drift, the vocabulary and the ICP model',
                             pg_catalog.round(s.mean_y::numeric, 4))
              ELSE pg_catalog.format('change of reward per impression per day (mean %s)',
                                     pg_catalog.round(s.mean_y::numeric, 4)) END
  FROM se AS s WHERE s.n OPERATOR(pg_catalog.>) 0;

  -- feedback that nobody finalizes: impressions older than the reward
  -- window still pending (process_feedback is not scheduled)
  RETURN QUERY
  SELECT 'stale_pending'::text, 'all time'::text, pg_catalog.count(*)::double precision, pg_catalog.count(*),
         NULL::double precision, NULL::double precision,
         CASE WHEN pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 THEN 'warn' ELSE 'ok' END,
         CASE WHEN pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 THEN
           'impressions past the reward window still pending: schedule SELECT icpml.process_feedback()'
              ELSE 'every impression past the reward window is finalized' END
  FROM icpml.recommendations AS r
  WHERE r.status OPERATOR(pg_catalog.=) 'pending' AND r.served_at OPERATOR(pg_catalog.<) (t1 OPERATOR(pg_catalog.-) cfg.reward_window);
END
$$;

COMMENT ON FUNCTION icpml.bandit_health(timestamptz, timestamptz) IS
  'Health of the recommender over a window (default the last 7 days): served mix, exploration, propensity effective sample size, reward by source and by rank, experiment and exploration splits, reward trend and slope, stale pending impressions; status warn where a threshold is crossed (docs/experiments.md)';

REVOKE ALL ON FUNCTION icpml.sequential_halfwidth(double precision, double precision, double precision),
  icpml.msprt_p_value(double precision, double precision, double precision),
  icpml.experiment_results(text, double precision, interval, timestamptz),
  icpml.bandit_health(timestamptz, timestamptz) FROM PUBLIC;
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'service_role') THEN
    GRANT EXECUTE ON FUNCTION icpml.sequential_halfwidth(double precision, double precision, double precision),
      icpml.msprt_p_value(double precision, double precision, double precision),
      icpml.experiment_results(text, double precision, interval, timestamptz),
      icpml.bandit_health(timestamptz, timestamptz) TO service_role;
  END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- Security and reliability (issue #9)
--
-- Every statement icpml runs with the owner's rights qualifies its
-- operators and functions (the C side pins search_path too); relation
-- names icpml stores are checked to be names; the recommender's settings
-- are kept in sane ranges; enable/disable_online_feedback() and
-- set_bandit_vocabulary() work in a new session; scheduled jobs run as icpml_jobs, never as a superuser;
-- row-level security on every table; icpml_admin makes administrators.
-- ---------------------------------------------------------------------------

-- icpml's roles (cluster-wide; see 99_privileges.sql)
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) 'icpml_admin') THEN
    CREATE ROLE icpml_admin NOLOGIN;
    COMMENT ON ROLE icpml_admin IS 'icpml administrators: its members may train, deploy, schedule and read icpml''s tables (icpml.grant_admin())';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) 'icpml_jobs') THEN
    CREATE ROLE icpml_jobs LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    COMMENT ON ROLE icpml_jobs IS 'The role icpml''s pg_cron jobs run as: an icpml administrator, not a superuser';
  END IF;
END
$$;
GRANT SET ON PARAMETER icpml.nthread, icpml.max_batch_size TO icpml_admin;

-- The recommender's settings in sane ranges (checked again in C): a value
-- outside them gave NaN scores.  Stop with a clear message instead of a
-- failed constraint when a setting is out of range.
DO $$
DECLARE
  s icpml.bandit_settings;
  bad pg_catalog.text[] := '{}';
BEGIN
  FOR s IN SELECT * FROM icpml.bandit_settings LOOP
    IF NOT (s.alpha OPERATOR(pg_catalog.>=) 0 AND s.alpha OPERATOR(pg_catalog.<=) 100) THEN
      bad := bad OPERATOR(pg_catalog.||) pg_catalog.format('alpha = %s (0 to 100)', s.alpha);
    END IF;
    IF NOT (s.v OPERATOR(pg_catalog.>=) 0 AND s.v OPERATOR(pg_catalog.<=) 100) THEN
      bad := bad OPERATOR(pg_catalog.||) pg_catalog.format('v = %s (0 to 100)', s.v);
    END IF;
    IF NOT (s.lambda OPERATOR(pg_catalog.>=) 1e-6 AND s.lambda OPERATOR(pg_catalog.<=) 1e9) THEN
      bad := bad OPERATOR(pg_catalog.||) pg_catalog.format('lambda = %s (1e-6 to 1e9)', s.lambda);
    END IF;
    IF NOT (s.icp_prior OPERATOR(pg_catalog.>=) -100 AND s.icp_prior OPERATOR(pg_catalog.<=) 100) THEN
      bad := bad OPERATOR(pg_catalog.||) pg_catalog.format('icp_prior = %s (-100 to 100)', s.icp_prior);
    END IF;
    IF NOT (s.gamma OPERATOR(pg_catalog.>=) 1e-6 AND s.gamma OPERATOR(pg_catalog.<=) 1) THEN
      bad := bad OPERATOR(pg_catalog.||) pg_catalog.format('gamma = %s (1e-6 to 1)', s.gamma);
    END IF;
    IF NOT (s.personalization_prior OPERATOR(pg_catalog.>=) 1e-6
            AND s.personalization_prior OPERATOR(pg_catalog.<=) 1e9) THEN
      bad := bad OPERATOR(pg_catalog.||) pg_catalog.format('personalization_prior = %s (1e-6 to 1e9)', s.personalization_prior);
    END IF;
  END LOOP;
  IF EXISTS (SELECT FROM icpml.reward_map AS m
             WHERE NOT (m.reward OPERATOR(pg_catalog.>=) -1000 AND m.reward OPERATOR(pg_catalog.<=) 1000)) THEN
    bad := bad OPERATOR(pg_catalog.||) 'a reward of icpml.reward_map outside -1000 to 1000'::pg_catalog.text;
  END IF;
  IF pg_catalog.cardinality(bad) OPERATOR(pg_catalog.>) 0 THEN
    RAISE EXCEPTION 'icpml 0.4.0 keeps the recommender''s settings in sane ranges: %',
                    pg_catalog.array_to_string(bad, ', ')
      USING ERRCODE = 'check_violation',
            HINT = 'UPDATE icpml.bandit_settings (or icpml.reward_map) to values in range, then run ALTER EXTENSION icpml UPDATE again.';
  END IF;
END
$$;
ALTER TABLE icpml.bandit_settings
  DROP CONSTRAINT bandit_settings_alpha_check,
  ADD CONSTRAINT bandit_settings_alpha_check CHECK (alpha >= 0 AND alpha <= 100),
  DROP CONSTRAINT bandit_settings_v_check,
  ADD CONSTRAINT bandit_settings_v_check CHECK (v >= 0 AND v <= 100),
  DROP CONSTRAINT bandit_settings_lambda_check,
  ADD CONSTRAINT bandit_settings_lambda_check CHECK (lambda >= 1e-6 AND lambda <= 1e9),
  DROP CONSTRAINT bandit_settings_icp_prior_check,
  ADD CONSTRAINT bandit_settings_icp_prior_check CHECK (icp_prior >= -100 AND icp_prior <= 100),
  DROP CONSTRAINT bandit_settings_gamma_check,
  ADD CONSTRAINT bandit_settings_gamma_check CHECK (gamma >= 1e-6 AND gamma <= 1),
  DROP CONSTRAINT bandit_settings_personalization_prior_check,
  ADD CONSTRAINT bandit_settings_personalization_prior_check
    CHECK (personalization_prior >= 1e-6 AND personalization_prior <= 1e9);
ALTER TABLE icpml.reward_map
  DROP CONSTRAINT reward_map_reward_check,
  ADD CONSTRAINT reward_map_reward_check CHECK (reward >= -1000 AND reward <= 1000);
COMMENT ON TABLE icpml.bandit_settings IS
  'One row: the recommender''s policy and its parameters (see the column comments); every number is finite and in a sane range (CHECK constraints, checked again by the recommender)';

-- The model store: readers with qualified operators, relation names checked on write
CREATE OR REPLACE FUNCTION icpml.model_version_or_deployed(version integer)
RETURNS integer
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v integer;
BEGIN
  IF model_version_or_deployed.version IS NULL THEN
    SELECT m.version INTO v FROM icpml.models AS m WHERE m.status OPERATOR(pg_catalog.=) 'deployed';
    IF NOT FOUND THEN
      RAISE EXCEPTION 'no model is deployed'
        USING ERRCODE = 'no_data_found',
              HINT = 'Pass a version (see icpml.list_models()), or deploy one with icpml.deploy_model(version => ...).';
    END IF;
    RETURN v;
  END IF;
  PERFORM FROM icpml.models AS m WHERE m.version OPERATOR(pg_catalog.=) model_version_or_deployed.version;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'model version % does not exist', model_version_or_deployed.version
      USING ERRCODE = 'no_data_found',
            HINT = 'List the stored versions with SELECT * FROM icpml.list_models().';
  END IF;
  RETURN model_version_or_deployed.version;
END
$$;

-- describe_model() is replaced once, in the "Watching a deployed model" section below.

CREATE OR REPLACE FUNCTION icpml.model_roc_curve(version integer DEFAULT NULL)
RETURNS TABLE (threshold double precision, fpr double precision, tpr double precision)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT (p.e OPERATOR(pg_catalog.->>) 'threshold')::double precision,
         (p.e OPERATOR(pg_catalog.->>) 'fpr')::double precision,
         (p.e OPERATOR(pg_catalog.->>) 'tpr')::double precision
  FROM icpml.models AS m,
       LATERAL pg_catalog.jsonb_array_elements(
         CASE WHEN pg_catalog.jsonb_typeof(m.metrics OPERATOR(pg_catalog.->) 'roc') OPERATOR(pg_catalog.=) 'array'
              THEN m.metrics OPERATOR(pg_catalog.->) 'roc' ELSE '[]'::pg_catalog.jsonb END)
         WITH ORDINALITY AS p(e, i)
  WHERE m.version OPERATOR(pg_catalog.=) icpml.model_version_or_deployed(model_roc_curve.version)
  ORDER BY p.i
$$;

CREATE OR REPLACE FUNCTION icpml.model_calibration(version integer DEFAULT NULL)
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
         CASE WHEN pg_catalog.jsonb_typeof(m.metrics OPERATOR(pg_catalog.->) 'calibration') OPERATOR(pg_catalog.=) 'array'
              THEN m.metrics OPERATOR(pg_catalog.->) 'calibration' ELSE '[]'::pg_catalog.jsonb END)
         WITH ORDINALITY AS c(e, i)
  WHERE m.version OPERATOR(pg_catalog.=) icpml.model_version_or_deployed(model_calibration.version)
  ORDER BY c.i
$$;

CREATE OR REPLACE FUNCTION icpml.model_feature_importance(version integer DEFAULT NULL)
RETURNS TABLE (feature text, gain double precision, weight double precision)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT f.e OPERATOR(pg_catalog.->>) 'feature',
         (f.e OPERATOR(pg_catalog.->>) 'gain')::double precision,
         (f.e OPERATOR(pg_catalog.->>) 'weight')::double precision
  FROM icpml.models AS m,
       LATERAL pg_catalog.jsonb_array_elements(
         CASE WHEN pg_catalog.jsonb_typeof(m.metrics OPERATOR(pg_catalog.->) 'importance') OPERATOR(pg_catalog.=) 'array'
              THEN m.metrics OPERATOR(pg_catalog.->) 'importance' ELSE '[]'::pg_catalog.jsonb END)
         WITH ORDINALITY AS f(e, i)
  WHERE m.version OPERATOR(pg_catalog.=) icpml.model_version_or_deployed(model_feature_importance.version)
  ORDER BY (f.e OPERATOR(pg_catalog.->>) 'gain')::double precision DESC NULLS LAST, f.i
$$;

CREATE FUNCTION icpml.is_relation_name(name text)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RETURN pg_catalog.cardinality(pg_catalog.parse_ident(is_relation_name.name)) OPERATOR(pg_catalog.<=) 3;
EXCEPTION WHEN invalid_parameter_value OR invalid_name THEN
  RETURN false;
END
$$;

COMMENT ON FUNCTION icpml.is_relation_name(text) IS
  'Whether text is a relation name (1 to 3 identifiers, quoted where needed) and nothing else: how icpml checks the names it stores';

CREATE FUNCTION icpml.models_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  spec pg_catalog.jsonb := NEW.spec;
  col pg_catalog.jsonb;
  kinds constant pg_catalog.text[] := ARRAY['numeric', 'boolean', 'categorical', 'age_days', 'tags'];
  problem pg_catalog.text;
  prev double precision;
  c double precision;
BEGIN
  IF pg_catalog.jsonb_typeof(spec) OPERATOR(pg_catalog.<>) 'object' THEN
    problem := 'the spec is not a JSON object';
  ELSIF COALESCE(pg_catalog.jsonb_typeof(spec OPERATOR(pg_catalog.->) 'relation'), '') OPERATOR(pg_catalog.<>) 'string'
        OR NOT icpml.is_relation_name(spec OPERATOR(pg_catalog.->>) 'relation') THEN
    problem := pg_catalog.format('the spec''s relation %s is not a table or view name',
                                 spec OPERATOR(pg_catalog.->) 'relation');
  ELSIF COALESCE(pg_catalog.jsonb_typeof(spec OPERATOR(pg_catalog.->) 'key'), '') OPERATOR(pg_catalog.<>) 'string'
        OR (spec OPERATOR(pg_catalog.->>) 'key') OPERATOR(pg_catalog.=) '' THEN
    problem := 'the spec has no key column';
  ELSIF COALESCE(pg_catalog.jsonb_typeof(spec OPERATOR(pg_catalog.->) 'columns'), '') OPERATOR(pg_catalog.<>) 'array'
        OR pg_catalog.jsonb_array_length(spec OPERATOR(pg_catalog.->) 'columns') OPERATOR(pg_catalog.=) 0 THEN
    problem := 'the spec has no columns';
  ELSIF NEW.relation IS NOT NULL AND NOT icpml.is_relation_name(NEW.relation) THEN
    problem := pg_catalog.format('relation %L is not a table or view name', NEW.relation);
  END IF;
  IF problem IS NULL THEN
    FOR col IN SELECT e FROM pg_catalog.jsonb_array_elements(spec OPERATOR(pg_catalog.->) 'columns') AS e LOOP
      IF COALESCE(pg_catalog.jsonb_typeof(col OPERATOR(pg_catalog.->) 'name'), '') OPERATOR(pg_catalog.<>) 'string'
         OR NOT (col OPERATOR(pg_catalog.->>) 'kind') OPERATOR(pg_catalog.=) ANY (kinds) THEN
        problem := pg_catalog.format('a column of the spec has no name or an unknown kind: %s', col);
        EXIT;
      END IF;
      IF (col OPERATOR(pg_catalog.->>) 'kind') OPERATOR(pg_catalog.=) ANY (ARRAY['categorical', 'tags'])
         AND (COALESCE(pg_catalog.jsonb_typeof(col OPERATOR(pg_catalog.->) 'levels'), '') OPERATOR(pg_catalog.<>) 'array'
              OR EXISTS (SELECT FROM pg_catalog.jsonb_array_elements(col OPERATOR(pg_catalog.->) 'levels') AS l
                         WHERE pg_catalog.jsonb_typeof(l) OPERATOR(pg_catalog.<>) 'string')) THEN
        problem := pg_catalog.format('column %s of the spec needs an array of text levels', col OPERATOR(pg_catalog.->) 'name');
        EXIT;
      END IF;
    END LOOP;
  END IF;
  IF problem IS NULL THEN
    FOREACH c IN ARRAY NEW.score_cutoffs LOOP
      IF c OPERATOR(pg_catalog.=) 'NaN'::double precision OR c OPERATOR(pg_catalog.=) '-Infinity'::double precision
         OR (c OPERATOR(pg_catalog.<>) 'Infinity'::double precision
             AND (c OPERATOR(pg_catalog.<) 0 OR c OPERATOR(pg_catalog.>) 1)) THEN
        problem := pg_catalog.format('score cut-off %s is not a probability (or Infinity)', c);
      ELSIF prev IS NOT NULL AND c OPERATOR(pg_catalog.<) prev THEN
        problem := pg_catalog.format('score cut-offs decrease (%s after %s)', c, prev);
      END IF;
      EXIT WHEN problem IS NOT NULL;
      prev := c;
    END LOOP;
  END IF;
  IF problem IS NOT NULL THEN
    RAISE EXCEPTION 'invalid model version %: %', NEW.version, problem
      USING ERRCODE = 'check_violation',
            HINT = 'Models are written by icpml.train_icp_model(); a spec names its relation, it is never SQL.';
  END IF;
  RETURN NEW;
END
$$;

COMMENT ON FUNCTION icpml.models_guard() IS
  'Trigger on icpml.models: relation names are names, the spec has its shape, the score cut-offs are non-decreasing probabilities (or Infinity)';

CREATE TRIGGER models_guard
  BEFORE INSERT OR UPDATE ON icpml.models
  FOR EACH ROW EXECUTE FUNCTION icpml.models_guard();

-- Online feedback and the vocabularies: set_bandit_vocabulary() is replaced once, in the Feedback section
-- below; enable/disable_online_feedback() once, in the Retrieval section below.

-- Experiments, qualified (experiments_guard() and start_experiment() are replaced in the variants section below).

CREATE OR REPLACE FUNCTION icpml.stop_experiment(name text)
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

-- Training and scheduling: run_training() is replaced once, in the "Watching a deployed model" section below (DROP + CREATE).

CREATE OR REPLACE VIEW icpml.training_history WITH (security_invoker = true) AS
  SELECT r.run_id, r.started_at, r.finished_at,
         r.finished_at OPERATOR(pg_catalog.-) r.started_at AS duration,
         r.status, r.triggered_by, r.deploy_policy, r.run_by, r.version, r.deployed,
         r.deploy_reason,
         (r.metrics OPERATOR(pg_catalog.#>>) '{model,roc_auc}')::double precision AS cv_roc_auc,
         (r.metrics OPERATOR(pg_catalog.#>>) '{rules,roc_auc}')::double precision AS rules_cv_roc_auc,
         r.error
  FROM icpml.training_runs AS r
  ORDER BY r.run_id DESC;

CREATE OR REPLACE FUNCTION icpml.require_pg_cron()
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension AS x WHERE x.extname OPERATOR(pg_catalog.=) 'pg_cron')
     OR pg_catalog.to_regnamespace('cron') IS NULL THEN
    RAISE EXCEPTION 'pg_cron is not installed in database "%"', pg_catalog.current_database()
      USING ERRCODE = 'feature_not_supported',
            HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, restart PostgreSQL and run CREATE EXTENSION pg_cron; or call icpml.run_training() from your own scheduler.';
  END IF;
END
$$;

DROP FUNCTION icpml.schedule_retraining(text, text, text);
DROP FUNCTION icpml.unschedule_retraining(text);
-- schedule_retraining() (dropped above) is created once, with its final signature, in the "Watching a deployed model" section below.

CREATE FUNCTION icpml.unschedule_retraining(job_name text DEFAULT 'icpml-retrain',
                                            run_as name DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_role pg_catalog.name;
  v_job bigint;
BEGIN
  PERFORM icpml.require_pg_cron();
  v_role := COALESCE(unschedule_retraining.run_as,
                     CASE WHEN (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r
                                WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
                          THEN 'icpml_jobs'::pg_catalog.name ELSE CURRENT_USER END);
  SELECT j.jobid INTO v_job FROM cron.job AS j
  WHERE j.jobname OPERATOR(pg_catalog.=) unschedule_retraining.job_name
    AND j.username OPERATOR(pg_catalog.=) v_role::pg_catalog.text;
  IF NOT FOUND THEN
    RAISE NOTICE 'no pg_cron job named "%" runs as %', unschedule_retraining.job_name, v_role;
    RETURN false;
  END IF;
  RETURN cron.unschedule(v_job);
END
$$;

COMMENT ON FUNCTION icpml.unschedule_retraining(text, name) IS
  'Remove the retraining job of that name that runs as run_as (default as for schedule_retraining); false (with a notice) when there is none';

-- Backups: the settings trigger: replace_settings_row() is defined once, in the "Watching a deployed model" section below.

-- Privileges
CREATE OR REPLACE FUNCTION icpml.grant_scoring(role_name name)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) role_name) THEN
    RAISE EXCEPTION 'role "%" does not exist', role_name
      USING ERRCODE = 'undefined_object',
            HINT = 'Create the role first, or check its spelling.';
  END IF;
  EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA icpml TO %I', role_name);
  EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION icpml.icp_score(bigint), icpml.icp_score_batch(bigint[]),'
                            ' icpml.explain_icp_score(bigint), icpml.prewarm(), icpml.xgboost_version(),'
                            ' icpml.recommend_accounts(uuid, integer, text, integer, bigint) TO %I', role_name);
END
$$;

CREATE OR REPLACE FUNCTION icpml.grant_admin(role_name name)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) role_name) THEN
    RAISE EXCEPTION 'role "%" does not exist', role_name
      USING ERRCODE = 'undefined_object',
            HINT = 'Create the role first, or check its spelling.';
  END IF;
  EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA icpml TO %I', role_name);
  EXECUTE pg_catalog.format('GRANT EXECUTE ON ALL ROUTINES IN SCHEMA icpml TO %I', role_name);
  EXECUTE pg_catalog.format('GRANT ALL ON ALL TABLES IN SCHEMA icpml TO %I', role_name);
  EXECUTE pg_catalog.format('GRANT ALL ON ALL SEQUENCES IN SCHEMA icpml TO %I', role_name);
  IF role_name OPERATOR(pg_catalog.<>) 'icpml_admin' THEN
    IF pg_catalog.pg_has_role('icpml_admin', 'MEMBER WITH ADMIN OPTION') THEN
      EXECUTE pg_catalog.format('GRANT icpml_admin TO %I', role_name);
    ELSE
      RAISE NOTICE 'role "%" was granted icpml''s objects but not membership in icpml_admin', role_name
        USING HINT = 'A superuser runs: GRANT icpml_admin TO ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(role_name) OPERATOR(pg_catalog.||) ';';
    END IF;
  END IF;
END
$$;

COMMENT ON FUNCTION icpml.grant_admin(name) IS
  'Let a role administer icpml (training, deploys, configuration, internal tables): every privilege and membership in icpml_admin';

REVOKE ALL ON FUNCTION icpml.is_relation_name(text), icpml.models_guard(),
  icpml.unschedule_retraining(text, name) FROM PUBLIC;
ALTER TABLE icpml.rule_weights ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.rule_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.models ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.deployments ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.training_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.account_scores ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.bandit_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.reward_map ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.bandit_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.account_feedback ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.recommendations ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.experiments ENABLE ROW LEVEL SECURITY;
CREATE POLICY administrators ON icpml.rule_weights TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.rule_settings TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.models TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.deployments TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.training_runs TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.account_scores TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.bandit_settings TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.reward_map TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.bandit_state TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.account_feedback TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.recommendations TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.experiments TO icpml_admin USING (true) WITH CHECK (true);

-- Supabase's roles when present, then icpml's own (the order of a fresh install)
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) 'authenticated') THEN
    PERFORM icpml.grant_scoring('authenticated');
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) 'service_role') THEN
    PERFORM icpml.grant_admin('service_role');
  END IF;
END
$$;
SELECT icpml.grant_admin('icpml_admin');
SELECT icpml.grant_admin('icpml_jobs');

-- ---------------------------------------------------------------------------
-- The exported scorer for hosted Supabase (#15 item 4): export_scorer_sql()
-- writes a deployed model (or the rules) as plain SQL.  Administrative.
-- ---------------------------------------------------------------------------
CREATE FUNCTION icpml.export_scorer_sql(version integer DEFAULT NULL,
                                        relation text DEFAULT NULL,
                                        rules boolean DEFAULT false)
RETURNS text
AS 'MODULE_PATHNAME', 'export_scorer_sql'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.export_scorer_sql(integer, text, boolean) IS
  'A SQL script that installs icpml.icp_score and icpml.icp_score_batch for a model version (default: the deployed one, else the rules; rules => true: the rules) into a database without the icpml extension, reading relation (default: the model''s own); the same probabilities as the C path';

REVOKE ALL ON FUNCTION icpml.export_scorer_sql(integer, text, boolean) FROM PUBLIC;
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) 'service_role') THEN
    GRANT EXECUTE ON FUNCTION icpml.export_scorer_sql(integer, text, boolean) TO service_role;
  END IF;
END
$$;
GRANT EXECUTE ON FUNCTION icpml.export_scorer_sql(integer, text, boolean) TO icpml_admin;
GRANT EXECUTE ON FUNCTION icpml.export_scorer_sql(integer, text, boolean) TO icpml_jobs;

-- ---------------------------------------------------------------------------
-- Parameters and text as users write them (#14 item 4): XGBoost's aliases in
-- params, more whitelisted parameters, and train_icp_model(encoding => ...)
-- (fold_text, max_levels, max_tags, min_count), recorded in the spec.  A new
-- argument: DROP + CREATE.
-- ---------------------------------------------------------------------------
DROP FUNCTION icpml.train_icp_model(text, text, text, text[], integer, integer, jsonb, boolean, integer, text);

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

REVOKE ALL ON FUNCTION icpml.train_icp_model(text, text, text, text[], integer, integer, jsonb, boolean, integer, text, jsonb) FROM PUBLIC;
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) 'service_role') THEN
    GRANT EXECUTE ON FUNCTION icpml.train_icp_model(text, text, text, text[], integer, integer, jsonb, boolean, integer, text, jsonb) TO service_role;
  END IF;
END
$$;
GRANT EXECUTE ON FUNCTION icpml.train_icp_model(text, text, text, text[], integer, integer, jsonb, boolean, integer, text, jsonb) TO icpml_admin;
GRANT EXECUTE ON FUNCTION icpml.train_icp_model(text, text, text, text[], integer, integer, jsonb, boolean, integer, text, jsonb) TO icpml_jobs;

-- ---------------------------------------------------------------------------
-- Feedback (#9.5, #9.7, #11.1): attribution by commit order (the log's own
-- sequence, a barrier on lists being served), an impression's reward over
-- its window (max, capped sum or first; later changes update b only, each
-- logged in icpml.feedback_events), and updates of the shared model queued
-- in icpml.bandit_queue and folded in batches.  Pending and rewarded
-- impressions keep their state; 0.3.0's rewarded impressions have no events
-- (rebuild_bandit_state replays their reward).
-- ---------------------------------------------------------------------------
ALTER TABLE icpml.bandit_settings
  ADD COLUMN reward_aggregate text NOT NULL DEFAULT 'max' CHECK (reward_aggregate IN ('max', 'sum', 'first')),
  ADD COLUMN reward_cap double precision NOT NULL DEFAULT 1.0
    CHECK (reward_cap > 0 AND reward_cap <= 1000),
  ADD COLUMN state_updates text NOT NULL DEFAULT 'queued' CHECK (state_updates IN ('queued', 'immediate')),
  ADD COLUMN attribution_wait interval NOT NULL DEFAULT '5 seconds'
    CHECK (attribution_wait >= '0' AND attribution_wait <= '1 minute');
COMMENT ON COLUMN icpml.bandit_settings.reward_aggregate IS
  'Reward of an impression from the interactions attributed to it within reward_window: max (the best one), sum (capped at reward_cap) or first (the first one only); a later interaction that changes it updates the bandit by the difference, the impression still counts once';
COMMENT ON COLUMN icpml.bandit_settings.reward_cap IS
  'reward_aggregate sum: an impression''s reward is at most this';
COMMENT ON COLUMN icpml.bandit_settings.state_updates IS
  'How feedback updates the shared model: queued (writers append to icpml.bandit_queue, whoever holds the shared row folds it; no writer waits for another) or immediate (each writer updates it under its row lock, in order); forgetting (gamma < 1) is always immediate';
COMMENT ON COLUMN icpml.bandit_settings.attribution_wait IS
  'Longest an interaction waits for a list being served to the same user to commit before it is attributed (0: never wait; the list''s impressions are then not seen by it)';
COMMENT ON COLUMN icpml.recommendations.reward IS
  'The impression''s reward: the aggregate (bandit_settings.reward_aggregate) of the interactions attributed to it so far (icpml.feedback_events); 0 when it expired, NULL while pending';
COMMENT ON COLUMN icpml.recommendations.reward_interaction_id IS
  'The interaction that last changed the reward';
COMMENT ON COLUMN icpml.recommendations.finalized_at IS
  'When the impression was first rewarded or expired (its reward may still rise within reward_window)';

DROP INDEX icpml.recommendations_pending_idx;
-- attribution: the most recent open impression of (user, account)
CREATE INDEX recommendations_open_idx ON icpml.recommendations
  (user_id, account_id, recommendation_id DESC) WHERE status <> 'expired';
CREATE INDEX recommendations_rewarded_served_idx ON icpml.recommendations
  (served_at) WHERE status = 'rewarded';

CREATE TABLE icpml.feedback_events (
  recommendation_id bigint NOT NULL,
  interaction_id    bigint NOT NULL,
  interaction_type  text NOT NULL,
  reward            double precision NOT NULL,
  delta             double precision NOT NULL,
  update_seq        bigint,
  created_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (recommendation_id, interaction_id)
);

CREATE INDEX feedback_events_interaction_idx ON icpml.feedback_events (interaction_id);

COMMENT ON TABLE icpml.feedback_events IS
  'Every interaction attributed to an impression: its reward (reward_map), the change it made to the impression''s reward (delta) and the state update that change was (update_seq: the impression''s finalize_seq for the first, a later number from recommendations_finalize_seq for an improvement, NULL when it changed nothing)';

CREATE TABLE icpml.bandit_queue (
  update_seq        bigint PRIMARY KEY,
  recommendation_id bigint NOT NULL,
  first             boolean NOT NULL,
  reward            double precision NOT NULL
);

COMMENT ON TABLE icpml.bandit_queue IS
  'Updates of the shared (global) bandit state not yet folded into it: the first reward of an impression (first: counted in A and b) or the change of its reward (b only); folded in update_seq order by whoever holds the global state row (a feedback writer, process_feedback, rebuild_bandit_state)';

SELECT pg_catalog.pg_extension_config_dump('icpml.feedback_events', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.bandit_queue', '');
ALTER TABLE icpml.feedback_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.bandit_queue ENABLE ROW LEVEL SECURITY;
CREATE POLICY administrators ON icpml.feedback_events TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.bandit_queue TO icpml_admin USING (true) WITH CHECK (true);

DROP FUNCTION icpml.process_feedback(timestamptz);
CREATE FUNCTION icpml.process_feedback(as_of timestamptz DEFAULT now(),
                                       attribute boolean DEFAULT true)
RETURNS TABLE(rewarded bigint, expired bigint, improved bigint, folded bigint)
AS 'MODULE_PATHNAME', 'process_feedback'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION icpml.process_feedback(timestamptz, boolean) IS
  'Batch feedback (pg_cron): attribute interactions up to as_of not yet attributed (unless attribute => false), expire impressions older than reward_window with reward 0, fold the queued updates into the shared model; returns impressions rewarded, expired, rewards improved, queued updates folded';
REVOKE ALL ON FUNCTION icpml.process_feedback(timestamptz, boolean) FROM PUBLIC;

-- a reset of the vocabulary also drops the queued updates
CREATE OR REPLACE FUNCTION icpml.set_bandit_vocabulary(
  industries text[] DEFAULT NULL,
  technologies text[] DEFAULT NULL,
  reset boolean DEFAULT false)
RETURNS TABLE(industry_slots text[], technology_slots text[])
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_variable
DECLARE
  rel pg_catalog.regclass;
  v_ind pg_catalog.text[] := industries;
  v_tech pg_catalog.text[] := technologies;
  old_ind pg_catalog.text[];
  old_tech pg_catalog.text[];
  learned boolean;
BEGIN
  IF v_ind IS NULL OR v_tech IS NULL THEN
    rel := COALESCE(pg_catalog.current_setting('icpml.feature_relation', true),
                    'public.account_features')::pg_catalog.regclass;
  END IF;
  IF v_ind IS NULL THEN
    v_ind := '{}';
    IF EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
               WHERE a.attrelid OPERATOR(pg_catalog.=) rel AND a.attname OPERATOR(pg_catalog.=) 'industry'
                 AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped) THEN
      EXECUTE pg_catalog.format(
        'SELECT pg_catalog.array_agg(v ORDER BY n DESC, v) FROM (SELECT f.industry::pg_catalog.text AS v,'
        ' pg_catalog.count(*) AS n FROM %s AS f WHERE f.industry IS NOT NULL GROUP BY 1'
        ' ORDER BY 2 DESC, 1 LIMIT 12) AS s', rel) INTO v_ind;
    END IF;
  END IF;
  IF v_tech IS NULL THEN
    v_tech := '{}';
    IF EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
               WHERE a.attrelid OPERATOR(pg_catalog.=) rel AND a.attname OPERATOR(pg_catalog.=) 'tech_stack'
                 AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped) THEN
      EXECUTE pg_catalog.format(
        'SELECT pg_catalog.array_agg(v ORDER BY n DESC, v) FROM (SELECT t.v, pg_catalog.count(*) AS n'
        ' FROM %s AS f, pg_catalog.unnest(f.tech_stack::pg_catalog.text[]) AS t(v)'
        ' WHERE t.v IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 24) AS s', rel) INTO v_tech;
    END IF;
  END IF;
  v_ind := COALESCE(v_ind, '{}');
  v_tech := COALESCE(v_tech, '{}');
  IF pg_catalog.cardinality(v_ind) OPERATOR(pg_catalog.>) 12
     OR pg_catalog.cardinality(v_tech) OPERATOR(pg_catalog.>) 24 THEN
    RAISE EXCEPTION 'too many vocabulary entries: % industries, % technologies',
        pg_catalog.cardinality(v_ind), pg_catalog.cardinality(v_tech)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'The context has 12 industry slots and 24 technology slots; pass the most common ones.';
  END IF;
  IF pg_catalog.array_position(v_ind, NULL) IS NOT NULL OR pg_catalog.array_position(v_tech, NULL) IS NOT NULL
     OR (SELECT pg_catalog.count(DISTINCT e) OPERATOR(pg_catalog.<>) pg_catalog.cardinality(v_ind)
         FROM pg_catalog.unnest(v_ind) AS e)
     OR (SELECT pg_catalog.count(DISTINCT e) OPERATOR(pg_catalog.<>) pg_catalog.cardinality(v_tech)
         FROM pg_catalog.unnest(v_tech) AS e) THEN
    RAISE EXCEPTION 'vocabulary entries must be distinct and not NULL'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;

  SELECT s.industries, s.technologies INTO old_ind, old_tech
  FROM icpml.bandit_settings AS s FOR UPDATE;
  -- "IS DISTINCT FROM", spelt with the qualified operator
  IF (old_ind IS NULL) OPERATOR(pg_catalog.<>) (v_ind IS NULL)
     OR (old_tech IS NULL) OPERATOR(pg_catalog.<>) (v_tech IS NULL)
     OR old_ind OPERATOR(pg_catalog.<>) v_ind OR old_tech OPERATOR(pg_catalog.<>) v_tech THEN
    learned := EXISTS (SELECT FROM icpml.bandit_state AS st WHERE st.n OPERATOR(pg_catalog.>) 0);
    IF learned AND (old_ind IS NOT NULL OR old_tech IS NOT NULL) AND NOT reset THEN
      RAISE EXCEPTION 'the bandit has learned with another vocabulary'
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Pass reset => true to restart the bandit from its prior (icpml.recommendations is kept), or keep the current vocabulary.';
    END IF;
    IF reset THEN
      DELETE FROM icpml.bandit_state;
      DELETE FROM icpml.bandit_queue;
    END IF;
    UPDATE icpml.bandit_settings AS s SET industries = v_ind, technologies = v_tech;
  END IF;
  RETURN QUERY SELECT v_ind, v_tech;
END
$$;

-- the new objects to Supabase's roles when present, then icpml's own (the
-- order of a fresh install)

-- ---------------------------------------------------------------------------
-- Retrieval (#11 items 3-5, #12 item 3): icpml.account_candidates (the
-- candidates' signals, materialised by the scoring functions), user_profiles
-- (one compact row per user, kept by triggers enable_online_feedback()
-- installs), the retrieval sources' settings, recommend_accounts' ranking
-- value renamed ranking_score (score stays as a deprecated last column; the
-- result changes, so DROP + CREATE, keeping the grants).  After the update:
-- SELECT icpml.refresh_candidates(); and, when online feedback is on,
-- SELECT icpml.enable_online_feedback(); (docs/upgrading.md).  Until then
-- recommend_accounts reads as 0.3.0 did.
-- ---------------------------------------------------------------------------
ALTER TABLE icpml.bandit_settings
  ADD COLUMN affinity_share double precision NOT NULL DEFAULT 0.3
    CHECK (affinity_share BETWEEN 0 AND 1),
  ADD COLUMN fresh_share double precision NOT NULL DEFAULT 0.05
    CHECK (fresh_share BETWEEN 0 AND 1),
  ADD COLUMN explore_share double precision NOT NULL DEFAULT 0.05
    CHECK (explore_share BETWEEN 0 AND 1),
  ADD COLUMN fresh_window interval NOT NULL DEFAULT '30 days' CHECK (fresh_window >= '0'),
  ADD COLUMN exclude_recent interval NOT NULL DEFAULT '7 days' CHECK (exclude_recent >= '0'),
  ADD COLUMN exploit_slots integer NOT NULL DEFAULT 2 CHECK (exploit_slots BETWEEN 0 AND 100),
  ADD COLUMN warm_start integer NOT NULL DEFAULT 0 CHECK (warm_start >= 0),
  ADD CONSTRAINT bandit_settings_source_shares_check
    CHECK (affinity_share + fresh_share + explore_share <= 1);
COMMENT ON COLUMN icpml.bandit_settings.affinity_share IS
  'Retrieval: share of the candidates from the user''s own segments (industries and size bands of the accounts in the user''s recent history); the icp source (top by ICP probability) takes what the three shares leave';
COMMENT ON COLUMN icpml.bandit_settings.fresh_share IS
  'Retrieval: share of the candidates from the newest accounts (first scored or researched within fresh_window), outside the ICP top';
COMMENT ON COLUMN icpml.bandit_settings.explore_share IS
  'Retrieval: share of the candidates drawn at random from outside the ICP top';
COMMENT ON COLUMN icpml.bandit_settings.fresh_window IS
  'Retrieval: an account counts as fresh this long after its first scoring or its latest research run';
COMMENT ON COLUMN icpml.bandit_settings.exclude_recent IS
  'Retrieval: an account the user had any interaction with this recently is not recommended (it is in the user''s pipeline already; 0: no such exclusion)';
COMMENT ON COLUMN icpml.bandit_settings.exploit_slots IS
  'Safe exploration: the first this many slots of a list go by the expected reward (posterior mean) under linucb, thompson and epsilon_greedy; they explore below';
COMMENT ON COLUMN icpml.bandit_settings.warm_start IS
  'Warm start: below exploit_slots, the share warm_start / (n + warm_start) of the slots also goes by the expected reward, n the impressions the shared model learnt from (0: off)';

CREATE TABLE icpml.account_candidates (
  account_id        bigint PRIMARY KEY,
  probability       double precision NOT NULL,
  score             integer NOT NULL CHECK (score BETWEEN 1 AND 10),
  priority          text NOT NULL CHECK (priority IN ('high', 'medium', 'low')),
  industry          text,
  size_band         smallint CHECK (size_band BETWEEN 0 AND 4),
  engineering_roles real,
  hiring            boolean,
  open_roles        real,
  blog              boolean,
  funding_date      date,
  researched_at     timestamptz,
  tech_stack        text[],
  signature         bigint NOT NULL,
  explore_key       integer NOT NULL,
  first_scored_at   timestamptz NOT NULL,
  updated_at        timestamptz NOT NULL,
  fresh_at          timestamptz GENERATED ALWAYS AS (GREATEST(first_scored_at, researched_at)) STORED
);

CREATE INDEX account_candidates_probability_idx
  ON icpml.account_candidates (probability DESC, account_id);
CREATE INDEX account_candidates_segment_idx
  ON icpml.account_candidates (industry, size_band, probability DESC, account_id);
CREATE INDEX account_candidates_fresh_idx
  ON icpml.account_candidates (fresh_at DESC, account_id);
CREATE INDEX account_candidates_explore_idx
  ON icpml.account_candidates (explore_key, account_id);

COMMENT ON TABLE icpml.account_candidates IS
  'What recommend_accounts retrieves from: every scored account with its probability, score and priority and the raw signals of the recommender''s context, as of its last scoring (the scoring functions write it; icpml.refresh_candidates() re-reads it)';
COMMENT ON COLUMN icpml.account_candidates.size_band IS
  'Company size band 0..4 (under 50, 50-199, 200-999, 1000-4999, 5000 and more); NULL when unknown';
COMMENT ON COLUMN icpml.account_candidates.signature IS
  'A hash of the row''s values: a rescore that changes nothing does not rewrite the row';
COMMENT ON COLUMN icpml.account_candidates.explore_key IS
  'A fixed hash of the account id: the "explore" source reads a random run of accounts in this order';
COMMENT ON COLUMN icpml.account_candidates.first_scored_at IS
  'When the account was first scored (with fresh_at, the "fresh" source); -infinity for the accounts of the table''s first fill';
COMMENT ON COLUMN icpml.account_candidates.updated_at IS
  'When the row''s values last changed';
COMMENT ON COLUMN icpml.account_candidates.fresh_at IS
  'The later of first_scored_at and researched_at: new accounts and fresh research come first in the "fresh" source';

CREATE FUNCTION icpml.refresh_candidates()
RETURNS bigint
AS 'MODULE_PATHNAME', 'refresh_candidates'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.refresh_candidates() IS
  'Re-read the recommender''s signals of every account in icpml.account_scores from icpml.feature_relation (as the caller) into icpml.account_candidates, without rescoring; returns the rows written';

CREATE TABLE icpml.user_profiles (
  user_id           uuid PRIMARY KEY,
  valid             boolean NOT NULL DEFAULT true,
  types             text[] NOT NULL DEFAULT '{}',
  sticky_types      text[] NOT NULL DEFAULT '{}',
  sticky_accounts   bigint[] NOT NULL DEFAULT '{}',
  sticky_masks      integer[] NOT NULL DEFAULT '{}',
  industries        text[] NOT NULL DEFAULT '{}',
  technologies      text[] NOT NULL DEFAULT '{}',
  recent_accounts   bigint[] NOT NULL DEFAULT '{}',
  recent_types      smallint[] NOT NULL DEFAULT '{}',
  recent_at         timestamptz[] NOT NULL DEFAULT '{}',
  recent_industries smallint[] NOT NULL DEFAULT '{}',
  recent_size_bands smallint[] NOT NULL DEFAULT '{}',
  recent_techs      bigint[] NOT NULL DEFAULT '{}',
  updated_at        timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE icpml.user_profiles
  ALTER COLUMN sticky_accounts SET STORAGE EXTERNAL,
  ALTER COLUMN sticky_masks SET STORAGE EXTERNAL,
  ALTER COLUMN recent_accounts SET STORAGE EXTERNAL,
  ALTER COLUMN recent_at SET STORAGE EXTERNAL,
  ALTER COLUMN recent_techs SET STORAGE EXTERNAL;

COMMENT ON TABLE icpml.user_profiles IS
  'One row per sales user, what recommend_accounts needs to know about the user in one read: the accounts the user dismissed or worked (sticky_*, all time) and the user''s most recent interactions with the attributes of those accounts (recent_*); kept current by the icpml_profile trigger on the interactions relation (enable_online_feedback() installs it and builds the rows)';
COMMENT ON COLUMN icpml.user_profiles.valid IS
  'false after an UPDATE or DELETE of the user''s interactions: recommend_accounts reads the interactions themselves until icpml.rebuild_user_profiles() rebuilds the row';
COMMENT ON COLUMN icpml.user_profiles.types IS
  'The interaction types of recent_types (recent_types[i] indexes this array, 0-based)';
COMMENT ON COLUMN icpml.user_profiles.sticky_types IS
  'The interaction types that exclude an account (dismiss and bandit_settings.exclude_worked_types when the row was built): bit i of sticky_masks is sticky_types[i + 1]';
COMMENT ON COLUMN icpml.user_profiles.sticky_accounts IS
  'Every account the user ever had an interaction of a sticky type with, sorted; sticky_masks says which types';
COMMENT ON COLUMN icpml.user_profiles.recent_accounts IS
  'The user''s most recent interactions (at least 1000, or bandit_settings.history_limit), newest first: account, type, time, and the account''s industry (index into industries, -1 unknown), size band (-1 unknown) and technologies (bits of technologies) when the interaction was recorded';

CREATE FUNCTION icpml.profile_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'profile_trigger'
LANGUAGE C
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION icpml.profile_trigger() IS
  'Statement triggers on the interactions relation (enable_online_feedback() installs them): new interactions update their users'' rows of icpml.user_profiles; an UPDATE or DELETE marks the users'' rows for a rebuild; TRUNCATE empties the table';

-- Install or drop the four profile triggers on the interactions relation;
-- enable_online_feedback() (which then builds every profile with
-- rebuild_user_profiles()) and disable_online_feedback() call it.  The
-- caller must own the relation.
CREATE FUNCTION icpml.set_profile_triggers(rel regclass, enabled boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  nsp pg_catalog.name;
  tab pg_catalog.name;
  trg pg_catalog.name;
BEGIN
  SELECT n.nspname, c.relname INTO nsp, tab FROM pg_catalog.pg_class AS c
  JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
  WHERE c.oid OPERATOR(pg_catalog.=) rel;
  FOR trg IN SELECT t.tgname FROM pg_catalog.pg_trigger AS t
             WHERE t.tgrelid OPERATOR(pg_catalog.=) rel
               AND t.tgname OPERATOR(pg_catalog.=) ANY (ARRAY['icpml_profile_insert', 'icpml_profile_update',
                                                             'icpml_profile_delete', 'icpml_profile_truncate'])
  LOOP
    EXECUTE pg_catalog.format('DROP TRIGGER %I ON %I.%I', trg, nsp, tab);
  END LOOP;
  IF NOT enabled THEN
    RETURN;
  END IF;
  EXECUTE pg_catalog.format('CREATE TRIGGER icpml_profile_insert AFTER INSERT ON %I.%I'
    ' REFERENCING NEW TABLE AS icpml_new FOR EACH STATEMENT EXECUTE FUNCTION icpml.profile_trigger()', nsp, tab);
  EXECUTE pg_catalog.format('CREATE TRIGGER icpml_profile_update AFTER UPDATE ON %I.%I'
    ' REFERENCING OLD TABLE AS icpml_old NEW TABLE AS icpml_new FOR EACH STATEMENT'
    ' EXECUTE FUNCTION icpml.profile_trigger()', nsp, tab);
  EXECUTE pg_catalog.format('CREATE TRIGGER icpml_profile_delete AFTER DELETE ON %I.%I'
    ' REFERENCING OLD TABLE AS icpml_old FOR EACH STATEMENT EXECUTE FUNCTION icpml.profile_trigger()', nsp, tab);
  EXECUTE pg_catalog.format('CREATE TRIGGER icpml_profile_truncate AFTER TRUNCATE ON %I.%I'
    ' FOR EACH STATEMENT EXECUTE FUNCTION icpml.profile_trigger()', nsp, tab);
END
$$;

COMMENT ON FUNCTION icpml.set_profile_triggers(regclass, boolean) IS
  'Install (enabled => true) or drop the triggers that keep icpml.user_profiles current on an interactions relation; enable_online_feedback() and disable_online_feedback() call it (after installing, rebuild_user_profiles() builds the rows)';

CREATE FUNCTION icpml.rebuild_user_profiles(only_invalid boolean DEFAULT false)
RETURNS bigint
AS 'MODULE_PATHNAME', 'rebuild_user_profiles'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION icpml.rebuild_user_profiles(boolean) IS
  'Rebuild icpml.user_profiles from the interactions relation (read as the caller: run it as a role that sees every interaction); only_invalid => true rebuilds only the rows an UPDATE or DELETE invalidated; returns the users rebuilt';

CREATE FUNCTION icpml.retrieve_candidates(
  user_id uuid,
  candidates integer DEFAULT NULL,
  seed bigint DEFAULT NULL)
RETURNS TABLE(account_id bigint, source text, probability double precision)
AS 'MODULE_PATHNAME', 'retrieve_candidates'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.retrieve_candidates(uuid, integer, bigint) IS
  'The candidates recommend_accounts(user_id, candidates => M, seed => s) would rank, with the source that admitted each, without ranking or logging anything: what retrieval does for a user';

-- recommend_accounts: the same grants after DROP + CREATE (your own roles' too)
SELECT pg_catalog.set_config('icpml_update.recommend_grants',
  COALESCE((SELECT pg_catalog.array_agg(r.rolname::pg_catalog.text ORDER BY a.n)::pg_catalog.text
            FROM pg_catalog.pg_proc AS p,
                 pg_catalog.aclexplode(p.proacl) WITH ORDINALITY AS a(grantor, grantee, privilege_type, is_grantable, n),
                 pg_catalog.pg_roles AS r
            WHERE p.oid OPERATOR(pg_catalog.=) 'icpml.recommend_accounts(uuid, integer, text, integer, bigint)'::pg_catalog.regprocedure
              AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
              AND r.oid OPERATOR(pg_catalog.=) a.grantee AND a.grantee OPERATOR(pg_catalog.<>) p.proowner), '{}'),
  true);
DROP FUNCTION icpml.recommend_accounts(uuid, integer, text, integer, bigint);
CREATE FUNCTION icpml.recommend_accounts(
  user_id uuid,
  k integer DEFAULT 10,
  policy text DEFAULT NULL,
  candidates integer DEFAULT NULL,
  seed bigint DEFAULT NULL)
RETURNS TABLE(rank integer, account_id bigint, ranking_score double precision,
              expected_reward double precision, exploration double precision,
              icp_score integer, priority text, reason jsonb, recommendation_id bigint,
              score double precision)
AS 'MODULE_PATHNAME', 'recommend_accounts'
LANGUAGE C VOLATILE
ROWS 10;

COMMENT ON FUNCTION icpml.recommend_accounts(uuid, integer, text, integer, bigint) IS
  'The k (1..100) accounts this user should work next, ranked by the bandit policy over M (k..5000) candidates the caller may see; every row is logged for feedback. ranking_score is the value the policy ranked by (not the ICP score: that is icp_score); score is the same value under its 0.3 name, deprecated, removed in 0.5';
REVOKE ALL ON FUNCTION icpml.recommend_accounts(uuid, integer, text, integer, bigint) FROM PUBLIC;
DO $$
DECLARE
  g pg_catalog.text;
BEGIN
  FOREACH g IN ARRAY pg_catalog.current_setting('icpml_update.recommend_grants')::pg_catalog.text[] LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION icpml.recommend_accounts(uuid, integer, text, integer, bigint) TO %I', g);
  END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION icpml.enable_online_feedback()
RETURNS regclass
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  rel pg_catalog.regclass;
  col pg_catalog.text;
  typ pg_catalog.oid;
  base pg_catalog.oid;
  kind pg_catalog."char";
BEGIN
  rel := COALESCE(pg_catalog.current_setting('icpml.interactions_relation', true),
                  'public.user_interactions')::pg_catalog.regclass;
  FOREACH col IN ARRAY ARRAY['interaction_id', 'user_id', 'account_id', 'interaction_type', 'created_at']::pg_catalog.text[] LOOP
    SELECT a.atttypid INTO typ FROM pg_catalog.pg_attribute AS a
    WHERE a.attrelid OPERATOR(pg_catalog.=) rel AND a.attname OPERATOR(pg_catalog.=) col
      AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'column "%" does not exist in interactions relation %', col, rel
        USING ERRCODE = 'undefined_column',
              HINT = 'The interactions relation needs interaction_id, user_id, account_id, interaction_type and created_at.';
    END IF;
    -- the trigger reads these columns as the extension owner: built-in
    -- types (or domains over them) only
    LOOP
      SELECT t.typtype, t.typbasetype INTO kind, base FROM pg_catalog.pg_type AS t
      WHERE t.oid OPERATOR(pg_catalog.=) typ;
      EXIT WHEN kind OPERATOR(pg_catalog.<>) 'd';
      typ := base;
    END LOOP;
    IF typ OPERATOR(pg_catalog.>=) 16384::pg_catalog.oid THEN
      RAISE EXCEPTION 'column "%" of interactions relation % has a user-defined type', col, rel
        USING ERRCODE = 'datatype_mismatch',
              HINT = 'The online feedback trigger reads these columns as the extension owner; use built-in types (uuid, bigint, text, timestamptz).';
    END IF;
  END LOOP;
  EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS icpml_feedback ON %I.%I',
                            (SELECT n.nspname FROM pg_catalog.pg_class AS c
                             JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                             WHERE c.oid OPERATOR(pg_catalog.=) rel),
                            (SELECT c.relname FROM pg_catalog.pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) rel));
  EXECUTE pg_catalog.format(
    'CREATE TRIGGER icpml_feedback AFTER INSERT ON %I.%I REFERENCING NEW TABLE AS icpml_new '
    'FOR EACH STATEMENT EXECUTE FUNCTION icpml.feedback_trigger()',
    (SELECT n.nspname FROM pg_catalog.pg_class AS c
     JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
     WHERE c.oid OPERATOR(pg_catalog.=) rel),
    (SELECT c.relname FROM pg_catalog.pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) rel));
  -- and the recommender's per-user profiles (42_retrieval.sql): the
  -- triggers that keep them current, then every row built
  PERFORM icpml.set_profile_triggers(rel, true);
  PERFORM icpml.rebuild_user_profiles();
  RETURN rel;
END
$$;

COMMENT ON FUNCTION icpml.enable_online_feedback() IS
  'Install the feedback trigger on icpml.interactions_relation: new interactions reward recommendations at once; also builds icpml.user_profiles and installs the triggers that keep it current';

CREATE OR REPLACE FUNCTION icpml.disable_online_feedback()
RETURNS regclass
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
  rel pg_catalog.regclass;
BEGIN
  rel := COALESCE(pg_catalog.current_setting('icpml.interactions_relation', true),
                  'public.user_interactions')::pg_catalog.regclass;
  EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS icpml_feedback ON %I.%I',
                            (SELECT n.nspname FROM pg_catalog.pg_class AS c
                             JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                             WHERE c.oid OPERATOR(pg_catalog.=) rel),
                            (SELECT c.relname FROM pg_catalog.pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) rel));
  PERFORM icpml.set_profile_triggers(rel, false);
  RETURN rel;
END
$$;

REVOKE ALL ON FUNCTION icpml.refresh_candidates(), icpml.profile_trigger(),
  icpml.set_profile_triggers(regclass, boolean), icpml.rebuild_user_profiles(boolean),
  icpml.retrieve_candidates(uuid, integer, bigint) FROM PUBLIC;
ALTER TABLE icpml.account_candidates ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.user_profiles ENABLE ROW LEVEL SECURITY;
CREATE POLICY administrators ON icpml.account_candidates TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.user_profiles TO icpml_admin USING (true) WITH CHECK (true);
SELECT pg_catalog.pg_extension_config_dump('icpml.account_candidates', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.user_profiles', '');
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) 'service_role') THEN
    PERFORM icpml.grant_admin('service_role');
  END IF;
END
$$;
SELECT icpml.grant_admin('icpml_admin');
SELECT icpml.grant_admin('icpml_jobs');

-- ---------------------------------------------------------------------------
-- Funnel attribution (#11.1, the simulator's finding 1): a later step of a
-- funnel credits the impression the funnel started from, not a re-show
-- (bandit_settings.attribution; feedback.c).  Existing rows take the default.
-- ---------------------------------------------------------------------------
ALTER TABLE icpml.bandit_settings
  ADD COLUMN attribution text NOT NULL DEFAULT 'funnel' CHECK (attribution IN ('funnel', 'latest'));
COMMENT ON COLUMN icpml.bandit_settings.attribution IS
  'Which impression of the (user, account) in the window an interaction credits: funnel (the most recent one an interaction rewarded already -- a later step of a funnel follows the impression it started from, and a re-show meanwhile expires with 0 --, else the most recent one) or latest (always the most recent one)';

-- ---------------------------------------------------------------------------
-- Models belong to a dataset (#14 item 1): icpml.models.dataset and
-- spec_fingerprint (set by a trigger, filled for existing rows here), policy
-- best compares only models of one dataset, deploy_model(replace_dataset =>)
-- for another, list_models shows the key and the dataset (DROP + CREATE).
-- ---------------------------------------------------------------------------
ALTER TABLE icpml.models ADD COLUMN dataset text, ADD COLUMN spec_fingerprint text;
COMMENT ON COLUMN icpml.models.dataset IS
  'What the model was trained on: md5 of its relation, key, label and spec_fingerprint (set by a trigger); deploy policy best compares only models of one dataset';
COMMENT ON COLUMN icpml.models.spec_fingerprint IS
  'md5 of the feature columns the model reads, name:kind in spec order (levels left out); set by a trigger';

-- The dataset a model belongs to, from its own row (so training, restores and
-- hand-made rows agree): relation, key, label and the feature columns' names
-- and kinds.  After models_guard (triggers fire in name order).
CREATE FUNCTION icpml.models_dataset()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  NEW.spec_fingerprint := pg_catalog.md5(COALESCE(
    (SELECT pg_catalog.string_agg((c.e OPERATOR(pg_catalog.->>) 'name') OPERATOR(pg_catalog.||) ':'
                                  OPERATOR(pg_catalog.||) (c.e OPERATOR(pg_catalog.->>) 'kind'), ',' ORDER BY c.i)
     FROM pg_catalog.jsonb_array_elements(NEW.spec OPERATOR(pg_catalog.->) 'columns') WITH ORDINALITY AS c(e, i)),
    ''));
  NEW.dataset := pg_catalog.md5(pg_catalog.concat_ws('|', NEW.spec OPERATOR(pg_catalog.->>) 'relation',
                                                     NEW.spec OPERATOR(pg_catalog.->>) 'key',
                                                     NEW.label_column, NEW.spec_fingerprint));
  RETURN NEW;
END
$$;

COMMENT ON FUNCTION icpml.models_dataset() IS
  'Trigger on icpml.models: sets dataset (md5 of relation, key, label and the feature columns) and spec_fingerprint (md5 of the columns'' names and kinds)';

CREATE TRIGGER models_guard_dataset
  BEFORE INSERT OR UPDATE ON icpml.models
  FOR EACH ROW EXECUTE FUNCTION icpml.models_dataset();

-- the trigger fills them for the models that exist
UPDATE icpml.models SET spec = spec;

DROP FUNCTION icpml.deploy_model(integer, text);
CREATE FUNCTION icpml.deploy_model(version integer, reason text DEFAULT NULL,
                                   replace_dataset boolean DEFAULT false)
RETURNS icpml.deployments
AS 'MODULE_PATHNAME', 'deploy_model'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.deploy_model(integer, text, boolean) IS
  'Deploy a stored model version (the deployed one is retired); a version of another dataset than the deployed one needs replace_dataset => true, and the logged reason says what it replaces; returns the history row, NULL when it was already deployed';

DROP FUNCTION icpml.list_models();
CREATE FUNCTION icpml.list_models()
RETURNS TABLE (version integer, created_at timestamptz, created_by name, status text,
               relation text, label_column text, n_rows bigint, n_positive bigint,
               cv_roc_auc double precision, rules_cv_roc_auc double precision,
               xgboost_version text, model_bytes integer, key_column text, dataset text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT m.version, m.created_at, m.created_by, m.status, m.relation, m.label_column,
         m.n_rows, m.n_positive, m.cv_roc_auc, m.rules_cv_roc_auc, m.xgboost_version,
         pg_catalog.octet_length(m.model), m.key_column, pg_catalog.left(m.dataset, 8)
  FROM icpml.models AS m
  ORDER BY m.version
$$;

COMMENT ON FUNCTION icpml.list_models() IS
  'Stored model versions, oldest first, with status, data size, cross-validated ROC AUC (model and rules) and the dataset each belongs to (the first 8 characters of icpml.models.dataset)';

REVOKE ALL ON FUNCTION icpml.models_dataset(), icpml.deploy_model(integer, text, boolean), icpml.list_models() FROM PUBLIC;
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) 'service_role') THEN
    GRANT EXECUTE ON FUNCTION icpml.models_dataset(), icpml.deploy_model(integer, text, boolean), icpml.list_models() TO service_role;
  END IF;
END
$$;
GRANT EXECUTE ON FUNCTION icpml.models_dataset(), icpml.deploy_model(integer, text, boolean), icpml.list_models() TO icpml_admin;
GRANT EXECUTE ON FUNCTION icpml.models_dataset(), icpml.deploy_model(integer, text, boolean), icpml.list_models() TO icpml_jobs;

-- ---------------------------------------------------------------------------
-- Maintenance that runs itself (#11.2, #9.5): schedule_maintenance() /
-- unschedule_maintenance() over pg_cron, run_maintenance() (the jobs' body:
-- logged in icpml.maintenance_runs, one run of a job at a time),
-- job_role(), unschedule_job(), the maintenance_history view.
-- ---------------------------------------------------------------------------
CREATE TABLE icpml.maintenance_runs (
  run_id        bigserial PRIMARY KEY,
  job           text NOT NULL CHECK (job IN ('feedback', 'scoring')),
  started_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  finished_at   timestamptz,
  status        text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'succeeded', 'failed', 'skipped', 'abandoned')),
  triggered_by  text NOT NULL CHECK (triggered_by IN ('manual', 'schedule')),
  run_by        name NOT NULL DEFAULT CURRENT_USER,
  pid           integer NOT NULL DEFAULT pg_catalog.pg_backend_pid(),
  result        jsonb,
  error         text,
  CHECK ((status = 'running') = (finished_at IS NULL))
);

CREATE INDEX maintenance_runs_job_idx ON icpml.maintenance_runs (job, started_at);

COMMENT ON TABLE icpml.maintenance_runs IS
  'One row per icpml.run_maintenance() call (scheduled or manual): the job, start, end, outcome (skipped: another run of the job held its lock), what it did (result) or the error; runs older than 30 days are deleted by the job''s next run';

-- The advisory lock key a job's runs hold (session level) while they run.
CREATE FUNCTION icpml.maintenance_lock_key(job text)
RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.hashtext('icpml.run_maintenance:' OPERATOR(pg_catalog.||) job)::bigint $$;

COMMENT ON FUNCTION icpml.maintenance_lock_key(text) IS
  'Advisory lock key a run of a maintenance job holds while it runs: hashtext(''icpml.run_maintenance:'' || job)';

CREATE PROCEDURE icpml.run_maintenance(job text, triggered_by text DEFAULT 'schedule')
LANGUAGE plpgsql
-- No SET clause and no SECURITY DEFINER: either would forbid the COMMITs
-- below.  It runs as the caller, and every function, operator and type it
-- names is schema-qualified instead.
AS $$
DECLARE
  v_key       bigint;
  v_run_id    bigint;
  v_result    pg_catalog.jsonb;
  v_online    boolean;
  v_state     pg_catalog.text;
  v_message   pg_catalog.text;
  v_detail    pg_catalog.text;
  v_hint      pg_catalog.text;
BEGIN
  IF run_maintenance.job IS NULL
     OR NOT run_maintenance.job OPERATOR(pg_catalog.=) ANY (ARRAY['feedback', 'scoring']) THEN
    RAISE EXCEPTION 'unknown maintenance job "%"', run_maintenance.job
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'The jobs are ''feedback'' (expiry and the bandit''s queued updates) and ''scoring'' (accounts changed since the last run); retraining is CALL icpml.run_training().';
  END IF;
  IF run_maintenance.triggered_by IS NULL
     OR NOT run_maintenance.triggered_by OPERATOR(pg_catalog.=) ANY (ARRAY['manual', 'schedule']) THEN
    RAISE EXCEPTION 'triggered_by must be ''manual'' or ''schedule'', not "%"', run_maintenance.triggered_by
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Leave it out for scheduled runs; pass triggered_by => ''manual'' otherwise.';
  END IF;
  v_key := icpml.maintenance_lock_key(run_maintenance.job);

  -- Fails here, before any lock is taken, when called inside a transaction
  -- block (the COMMITs below need their own transactions).
  COMMIT;

  -- One run of a job at a time: a second one is logged as skipped, not queued.
  IF NOT pg_catalog.pg_try_advisory_lock(v_key) THEN
    INSERT INTO icpml.maintenance_runs (job, triggered_by, status, finished_at, error)
    VALUES (run_maintenance.job, run_maintenance.triggered_by, 'skipped', pg_catalog.clock_timestamp(),
            'another run of this job was in progress');
    COMMIT;
    RETURN;
  END IF;

  -- The lock is held across this procedure's transactions (session level)
  -- and released on every way out; a backend that exits releases it.
  BEGIN
    -- the lock is ours: a 'running' row of this job is left over from a run
    -- whose backend exited
    UPDATE icpml.maintenance_runs AS r
       SET status = 'abandoned', finished_at = pg_catalog.clock_timestamp(),
           error = 'the run ended without recording an outcome (its backend exited)'
     WHERE r.job OPERATOR(pg_catalog.=) run_maintenance.job AND r.status OPERATOR(pg_catalog.=) 'running';
    INSERT INTO icpml.maintenance_runs (job, triggered_by)
    VALUES (run_maintenance.job, run_maintenance.triggered_by)
    RETURNING run_id INTO v_run_id;
  EXCEPTION
    WHEN OTHERS OR query_canceled THEN
      PERFORM pg_catalog.pg_advisory_unlock(v_key);
      RAISE;
  END;
  COMMIT;   -- the 'running' row is visible while the job runs

  BEGIN
    IF run_maintenance.job OPERATOR(pg_catalog.=) 'feedback' THEN
      -- with the online trigger on, interactions are attributed as they
      -- arrive: expire and fold only (the job then needs no right on the
      -- interactions relation); without it, attribute in batch too
      v_online := EXISTS (
        SELECT FROM pg_catalog.pg_trigger AS t
        WHERE t.tgname OPERATOR(pg_catalog.=) 'icpml_feedback'
          AND t.tgrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(
                COALESCE(pg_catalog.current_setting('icpml.interactions_relation', true),
                         'public.user_interactions')));
      SELECT pg_catalog.to_jsonb(f) OPERATOR(pg_catalog.||)
             pg_catalog.jsonb_build_object('attributed_in_batch', NOT v_online)
        INTO v_result
        FROM icpml.process_feedback(attribute => NOT v_online) AS f;
    ELSE
      v_result := icpml.score_changed();
    END IF;
  EXCEPTION
    WHEN OTHERS OR query_canceled THEN
      GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                              v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
  END;

  BEGIN
    UPDATE icpml.maintenance_runs AS r
       SET status = CASE WHEN v_state IS NULL THEN 'succeeded' ELSE 'failed' END,
           finished_at = pg_catalog.clock_timestamp(), result = v_result, error = v_message
     WHERE r.run_id OPERATOR(pg_catalog.=) v_run_id;
    -- the log keeps 30 days
    DELETE FROM icpml.maintenance_runs AS r
     WHERE r.job OPERATOR(pg_catalog.=) run_maintenance.job
       AND r.started_at OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) '30 days'::pg_catalog.interval);
  EXCEPTION
    WHEN OTHERS OR query_canceled THEN
      PERFORM pg_catalog.pg_advisory_unlock(v_key);
      RAISE;
  END;
  COMMIT;
  PERFORM pg_catalog.pg_advisory_unlock(v_key);

  -- A failure is recorded, then reported to the caller too (pg_cron shows
  -- it in cron.job_run_details).
  IF v_state IS NOT NULL THEN
    IF v_detail OPERATOR(pg_catalog.<>) '' AND v_hint OPERATOR(pg_catalog.<>) '' THEN
      RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message, DETAIL = v_detail, HINT = v_hint;
    ELSIF v_detail OPERATOR(pg_catalog.<>) '' THEN
      RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message, DETAIL = v_detail;
    ELSIF v_hint OPERATOR(pg_catalog.<>) '' THEN
      RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message, HINT = v_hint;
    ELSE
      RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message;
    END IF;
  END IF;
END
$$;

-- REVOKE ... ON ALL FUNCTIONS (99_privileges.sql) does not cover procedures.
REVOKE ALL ON PROCEDURE icpml.run_maintenance(text, text) FROM PUBLIC;

COMMENT ON PROCEDURE icpml.run_maintenance(text, text) IS
  'Run one maintenance job now and record it in icpml.maintenance_runs: feedback (process_feedback: expiry, the queued bandit updates, batch attribution when the online trigger is off) or scoring (score_changed); one run of a job at a time (a second is logged as skipped); call outside a transaction block';

-- Who a scheduled job runs as: run_as, or icpml_jobs when a superuser
-- schedules, the caller otherwise; never a superuser (docs/security.md).
-- An error with a hint when that role cannot be used.
CREATE FUNCTION icpml.job_role(run_as name DEFAULT NULL)
RETURNS name
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_super boolean := (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r
                      WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER);
  v_role pg_catalog.name;
BEGIN
  v_role := COALESCE(job_role.run_as,
                     CASE WHEN v_super THEN 'icpml_jobs'::pg_catalog.name ELSE CURRENT_USER END);
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) v_role) THEN
    RAISE EXCEPTION 'role "%" does not exist', v_role
      USING ERRCODE = 'undefined_object',
            HINT = 'Scheduled jobs run as icpml_jobs by default; ALTER EXTENSION icpml UPDATE creates it.';
  END IF;
  IF (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) v_role) THEN
    RAISE EXCEPTION 'icpml''s scheduled jobs do not run as a superuser ("%")', v_role
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = 'A superuser''s job would run the code of every view, policy and function the user''s relations reach with a superuser''s rights.',
            HINT = 'Leave run_as out: the jobs then run as icpml_jobs; grant it SELECT on the relations they read (docs/security.md).';
  END IF;
  IF v_role OPERATOR(pg_catalog.<>) CURRENT_USER AND NOT v_super THEN
    RAISE EXCEPTION 'only a superuser can schedule a job to run as another role ("%")', v_role
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'Leave run_as out: the jobs then run as you.';
  END IF;
  RETURN v_role;
END
$$;

COMMENT ON FUNCTION icpml.job_role(name) IS
  'The role a scheduled job runs as: run_as, else icpml_jobs when a superuser schedules, else the caller; an error when it does not exist, is a superuser, or is another role and the caller is not a superuser';

CREATE FUNCTION icpml.schedule_maintenance(feedback_cron text DEFAULT '* * * * *',
                                           scoring_cron text DEFAULT '* * * * *',
                                           retrain_cron text DEFAULT '0 3 * * *',
                                           deploy text DEFAULT 'best',
                                           run_as name DEFAULT NULL)
RETURNS TABLE(job_name text, schedule text, command text, jobid bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_role pg_catalog.name;
  v_job pg_catalog.text;
  v_cron pg_catalog.text;
  v_command pg_catalog.text;
  v_fields pg_catalog.text[];
  v_id bigint;
  v_message pg_catalog.text;
BEGIN
  -- every schedule is checked before anything is scheduled
  FOREACH v_cron IN ARRAY ARRAY[schedule_maintenance.feedback_cron, schedule_maintenance.scoring_cron,
                                schedule_maintenance.retrain_cron] LOOP
    CONTINUE WHEN v_cron IS NULL;
    v_fields := pg_catalog.regexp_split_to_array(pg_catalog.btrim(v_cron), '\s+');
    IF pg_catalog.cardinality(v_fields) OPERATOR(pg_catalog.<>) 5 OR v_fields[1] OPERATOR(pg_catalog.=) '' THEN
      RAISE EXCEPTION 'cron schedule "%" does not have five fields', v_cron
        USING ERRCODE = 'invalid_parameter_value',
              DETAIL = 'A schedule is minute, hour, day of month, month and day of week, separated by spaces.',
              HINT = 'For example ''* * * * *'' runs every minute, ''0 3 * * *'' every night at 03:00 (GMT by default); NULL leaves a job out.';
    END IF;
  END LOOP;
  IF schedule_maintenance.deploy IS NULL
     OR NOT schedule_maintenance.deploy OPERATOR(pg_catalog.=) ANY (ARRAY['best', 'always', 'never']) THEN
    RAISE EXCEPTION 'unknown deploy policy "%"', schedule_maintenance.deploy
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use ''best'' (deploy if cross-validation beats the deployed model, or the rules), ''always'' or ''never''.';
  END IF;
  v_role := icpml.job_role(schedule_maintenance.run_as);
  IF NOT pg_catalog.has_function_privilege(v_role, 'icpml.run_maintenance(text, text)', 'EXECUTE') THEN
    RAISE EXCEPTION 'role "%" may not run icpml.run_maintenance()', v_role
      USING ERRCODE = 'insufficient_privilege',
            HINT = pg_catalog.format('Make it an administrator: SELECT icpml.grant_admin(%L).', v_role);
  END IF;
  PERFORM icpml.require_pg_cron();

  -- the two jobs of this file; NULL: not scheduled (an existing one removed)
  FOREACH v_job IN ARRAY ARRAY['feedback', 'scoring'] LOOP
    v_cron := CASE v_job WHEN 'feedback' THEN schedule_maintenance.feedback_cron
                         ELSE schedule_maintenance.scoring_cron END;
    v_command := pg_catalog.format('CALL icpml.run_maintenance(job => %L)', v_job);
    IF v_job OPERATOR(pg_catalog.=) 'scoring' AND v_cron IS NOT NULL THEN
      -- score_changed() scores the accounts the queue triggers saw change:
      -- put them on the tables behind the scored relation (idempotent);
      -- a caller who does not own them is told, the job scores deploys
      BEGIN
        -- the library defines icpml.feature_relation: load it first (a new
        -- session may not have called any of its functions yet)
        PERFORM icpml.normal_sf(0);
        PERFORM FROM icpml.enable_score_queue();
      EXCEPTION
        WHEN OTHERS THEN
          GET STACKED DIAGNOSTICS v_message = MESSAGE_TEXT;
          RAISE NOTICE 'changed accounts are not queued for icpml-scoring: %', v_message
            USING HINT = 'Run SELECT * FROM icpml.enable_score_queue() as the owner of the feature tables; until then the job only follows deploys.';
      END;
    END IF;
    IF v_cron IS NULL THEN
      PERFORM icpml.unschedule_job('icpml-' OPERATOR(pg_catalog.||) v_job, v_role);
      CONTINUE;
    END IF;
    v_cron := pg_catalog.array_to_string(pg_catalog.regexp_split_to_array(pg_catalog.btrim(v_cron), '\s+'), ' ');
    -- pg_cron replaces the role's job of the same name
    IF v_role OPERATOR(pg_catalog.=) CURRENT_USER THEN
      v_id := cron.schedule('icpml-' OPERATOR(pg_catalog.||) v_job, v_cron, v_command);
    ELSE
      v_id := cron.schedule_in_database('icpml-' OPERATOR(pg_catalog.||) v_job, v_cron, v_command,
                                        pg_catalog.current_database(), v_role);
    END IF;
    job_name := 'icpml-' OPERATOR(pg_catalog.||) v_job;
    schedule := v_cron;
    command := v_command;
    jobid := v_id;
    RETURN NEXT;
  END LOOP;

  -- retraining: schedule_retraining's job
  IF schedule_maintenance.retrain_cron IS NULL THEN
    PERFORM icpml.unschedule_job('icpml-retrain', v_role);
  ELSE
    jobid := icpml.schedule_retraining(cron => schedule_maintenance.retrain_cron,
                                       deploy => schedule_maintenance.deploy,
                                       run_as => schedule_maintenance.run_as);
    SELECT j.jobname, j.schedule, j.command INTO job_name, schedule, command
    FROM cron.job AS j WHERE j.jobid OPERATOR(pg_catalog.=) schedule_maintenance.jobid;
    RETURN NEXT;
  END IF;
END
$$;

COMMENT ON FUNCTION icpml.schedule_maintenance(text, text, text, text, name) IS
  'Schedule everything icpml needs to run by itself with pg_cron (five-field schedules, GMT): icpml-feedback (expiry and the bandit''s queued updates, every minute), icpml-scoring (accounts changed since the last run, every minute), icpml-retrain (nightly, deploy policy deploy); NULL leaves a job out (and removes it); run_as as for schedule_retraining; calling it again replaces the jobs; returns them';

-- Remove a job of that name that runs as the role; false when there is none.
CREATE FUNCTION icpml.unschedule_job(job_name text, run_as name)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_job bigint;
BEGIN
  PERFORM icpml.require_pg_cron();
  SELECT j.jobid INTO v_job FROM cron.job AS j
  WHERE j.jobname OPERATOR(pg_catalog.=) unschedule_job.job_name
    AND j.username OPERATOR(pg_catalog.=) unschedule_job.run_as::pg_catalog.text;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  RETURN cron.unschedule(v_job);
END
$$;

COMMENT ON FUNCTION icpml.unschedule_job(text, name) IS
  'Remove the pg_cron job of that name that runs as run_as; false when there is none';

CREATE FUNCTION icpml.unschedule_maintenance(run_as name DEFAULT NULL)
RETURNS TABLE(job_name text, removed boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_role pg_catalog.name;
BEGIN
  PERFORM icpml.require_pg_cron();
  v_role := COALESCE(unschedule_maintenance.run_as,
                     CASE WHEN (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r
                                WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
                          THEN 'icpml_jobs'::pg_catalog.name ELSE CURRENT_USER END);
  FOREACH job_name IN ARRAY ARRAY['icpml-feedback', 'icpml-scoring', 'icpml-retrain'] LOOP
    removed := icpml.unschedule_job(job_name, v_role);
    RETURN NEXT;
  END LOOP;
END
$$;

COMMENT ON FUNCTION icpml.unschedule_maintenance(name) IS
  'Remove the jobs schedule_maintenance() created (icpml-feedback, icpml-scoring, icpml-retrain) that run as run_as (default as for schedule_maintenance); says which existed';

-- Every run of every job, newest first: maintenance_runs and the training
-- runs.  security_invoker: reading it is reading the two tables as oneself.
CREATE VIEW icpml.maintenance_history WITH (security_invoker = true) AS
  SELECT 'maintenance'::pg_catalog.text AS log, r.run_id, r.job, r.started_at, r.finished_at,
         r.finished_at OPERATOR(pg_catalog.-) r.started_at AS duration,
         r.status, r.triggered_by, r.run_by, r.result, r.error
  FROM icpml.maintenance_runs AS r
  UNION ALL
  SELECT 'training', t.run_id, 'retrain', t.started_at, t.finished_at,
         t.finished_at OPERATOR(pg_catalog.-) t.started_at,
         t.status, t.triggered_by, t.run_by,
         pg_catalog.jsonb_build_object('version', t.version, 'deployed', t.deployed,
                                       'deploy_reason', t.deploy_reason),
         t.error
  FROM icpml.training_runs AS t
  ORDER BY 4 DESC, 2 DESC;

COMMENT ON VIEW icpml.maintenance_history IS
  'Every run of the scheduled jobs, newest first: feedback and scoring (icpml.maintenance_runs) and retraining (icpml.training_runs)';

ALTER TABLE icpml.maintenance_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY administrators ON icpml.maintenance_runs TO icpml_admin USING (true) WITH CHECK (true);
REVOKE ALL ON FUNCTION icpml.maintenance_lock_key(text), icpml.job_role(name),
  icpml.schedule_maintenance(text, text, text, text, name), icpml.unschedule_job(text, name),
  icpml.unschedule_maintenance(name) FROM PUBLIC;
-- the new objects to Supabase's roles when present, then icpml's own (the
-- order of a fresh install)
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) 'service_role') THEN
    PERFORM icpml.grant_admin('service_role');
  END IF;
END
$$;
SELECT icpml.grant_admin('icpml_admin');
SELECT icpml.grant_admin('icpml_jobs');

-- ---------------------------------------------------------------------------
-- Watching a deployed model (#14 items 5 and 6): training statistics and
-- labels stored with each model, icpml.model_health() and
-- retraining_needed() with icpml.health_settings, run_training(retrain =>
-- 'needed') that repeats the deployed recipe and logs why it ran or was
-- skipped (training_runs.reason, status 'skipped'), schedule_retraining(
-- retrain =>), and the model card in describe_model.
-- ---------------------------------------------------------------------------
ALTER TABLE icpml.models ADD COLUMN training_stats jsonb, ADD COLUMN training_labels bytea;
ALTER TABLE icpml.training_runs ADD COLUMN reason text;
ALTER TABLE icpml.training_runs DROP CONSTRAINT training_runs_status_check,
  ADD CONSTRAINT training_runs_status_check
    CHECK (status IN ('running', 'succeeded', 'failed', 'abandoned', 'skipped'));
COMMENT ON TABLE icpml.training_runs IS
  'One row per icpml.run_training() call (scheduled or manual): start, end, outcome, model version, metrics, error, and why it trained or was skipped';
COMMENT ON COLUMN icpml.training_runs.reason IS
  'Why the run trained (retrain => always, or model_health''s verdict with retrain => needed) or was skipped (status skipped)';

COMMENT ON COLUMN icpml.models.training_stats IS
  'The population the model scored at training (every row of its relation): per feature column its distribution (bins at the labelled rows'' deciles, level and token shares, missing share) and data window, the share of each score and tier, row and label counts; model_health compares with it';
COMMENT ON COLUMN icpml.models.training_labels IS
  'The (key, label) pairs the model was trained on (8-byte big-endian key, one byte 0/1, in key order), so that model_health tells new labels apart';

CREATE TABLE icpml.health_settings (
  singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  psi_watch        double precision NOT NULL DEFAULT 0.1 CHECK (psi_watch > 0),
  psi_alert        double precision NOT NULL DEFAULT 0.25,
  auc_drop         double precision NOT NULL DEFAULT 0.05 CHECK (auc_drop >= 0),
  brier_rise       double precision NOT NULL DEFAULT 0.03 CHECK (brier_rise >= 0),
  calibration_gap  double precision NOT NULL DEFAULT 0.15 CHECK (calibration_gap > 0),
  min_new_labels   integer NOT NULL DEFAULT 50 CHECK (min_new_labels > 0),
  max_model_age    interval DEFAULT '30 days',
  CHECK (psi_alert >= psi_watch)
);

COMMENT ON TABLE icpml.health_settings IS
  'One row: the thresholds of model_health (PSI watch and alert, AUC drop, Brier rise, calibration gap, new labels needed) and the age after which retraining is due anyway (NULL: never)';

INSERT INTO icpml.health_settings DEFAULT VALUES;

CREATE FUNCTION icpml.model_health(version integer DEFAULT NULL, relation text DEFAULT NULL)
RETURNS TABLE (check_name text, item text, training double precision,
               current double precision, statistic double precision, n bigint,
               status text, detail text)
AS 'MODULE_PATHNAME', 'model_health'
LANGUAGE C STABLE;

COMMENT ON FUNCTION icpml.model_health(integer, text) IS
  'How a model (the deployed one by default) fares on its relation now (or another with its columns), read as the caller: drift of every feature (PSI) and of the score tiers against training, ROC AUC, Brier and calibration per tier on labels that arrived after training, and whether retraining is needed (the summary row); thresholds in icpml.health_settings';

CREATE FUNCTION icpml.retraining_needed(version integer DEFAULT NULL,
                                        OUT needed boolean, OUT reason text)
RETURNS record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT h.status OPERATOR(pg_catalog.=) 'needed', h.detail
  FROM icpml.model_health(retraining_needed.version) AS h
  WHERE h.check_name OPERATOR(pg_catalog.=) 'summary'
$$;

COMMENT ON FUNCTION icpml.retraining_needed(integer) IS
  'model_health''s verdict for a model (the deployed one by default): whether retraining is needed (a feature drifted, new labels show decay, or the model is older than health_settings.max_model_age) and why';

CREATE OR REPLACE FUNCTION icpml.replace_settings_row()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- only a COPY (how pg_dump's data is restored); INSERT keeps its meaning
  -- (a duplicate key fails, ON CONFLICT works)
  IF pg_catalog.current_query() OPERATOR(pg_catalog.!~*) '^\s*copy\s' THEN
    RETURN NEW;
  END IF;
  IF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'rule_weights' THEN
    DELETE FROM icpml.rule_weights AS t WHERE t.factor OPERATOR(pg_catalog.=) NEW.factor;
  ELSIF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'rule_settings' THEN
    DELETE FROM icpml.rule_settings AS t WHERE t.singleton OPERATOR(pg_catalog.=) NEW.singleton;
  ELSIF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'bandit_settings' THEN
    DELETE FROM icpml.bandit_settings AS t WHERE t.singleton OPERATOR(pg_catalog.=) NEW.singleton;
  ELSIF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'reward_map' THEN
    DELETE FROM icpml.reward_map AS t WHERE t.interaction_type OPERATOR(pg_catalog.=) NEW.interaction_type;
  ELSIF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'health_settings' THEN
    DELETE FROM icpml.health_settings AS t WHERE t.singleton OPERATOR(pg_catalog.=) NEW.singleton;
  ELSE
    RAISE EXCEPTION 'icpml.replace_settings_row() is not a trigger of %', TG_TABLE_NAME
      USING ERRCODE = 'triggered_action_exception';
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER health_settings_replace BEFORE INSERT ON icpml.health_settings
  FOR EACH ROW EXECUTE FUNCTION icpml.replace_settings_row();
SELECT pg_catalog.pg_extension_config_dump('icpml.health_settings', '');
ALTER TABLE icpml.health_settings ENABLE ROW LEVEL SECURITY;
CREATE POLICY administrators ON icpml.health_settings TO icpml_admin USING (true) WITH CHECK (true);

-- The model card describe_model adds: what a reviewer reads before a deploy.
CREATE FUNCTION icpml.model_card(version integer)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT pg_catalog.jsonb_build_object(
    'dataset', pg_catalog.jsonb_build_object(
      'id', m.dataset, 'relation', m.spec OPERATOR(pg_catalog.->>) 'relation',
      'key', m.spec OPERATOR(pg_catalog.->>) 'key', 'label', m.label_column,
      'feature_columns', pg_catalog.jsonb_array_length(m.spec OPERATOR(pg_catalog.->) 'columns'),
      'features', pg_catalog.jsonb_array_length(m.spec OPERATOR(pg_catalog.->) 'features'),
      'encoding', COALESCE(m.spec OPERATOR(pg_catalog.->) 'encoding',
                           '{"fold_text": false, "max_levels": 64, "max_tags": 32, "min_count": 5}'::pg_catalog.jsonb)),
    'data_window', pg_catalog.jsonb_build_object(
      'trained_at', m.created_at,
      'population_as_of', m.training_stats OPERATOR(pg_catalog.->) 'as_of',
      'dates', (SELECT pg_catalog.jsonb_object_agg(c OPERATOR(pg_catalog.->>) 'name', c OPERATOR(pg_catalog.->) 'window')
                FROM pg_catalog.jsonb_array_elements(m.training_stats OPERATOR(pg_catalog.->) 'columns') AS c
                WHERE c OPERATOR(pg_catalog.?) 'window')),
    'rows', pg_catalog.jsonb_build_object(
      'labelled', m.n_rows, 'positive', m.n_positive,
      'population', m.training_stats OPERATOR(pg_catalog.->) 'rows'),
    'label_rate', m.n_positive::pg_catalog.float8 OPERATOR(pg_catalog./) NULLIF(m.n_rows, 0),
    'cv', (m.metrics OPERATOR(pg_catalog.->) 'cv')
          OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('folds', m.metrics OPERATOR(pg_catalog.->) 'folds'),
    'top_features', (SELECT pg_catalog.jsonb_agg(f.e ORDER BY f.i)
                     FROM pg_catalog.jsonb_array_elements(
                            CASE WHEN pg_catalog.jsonb_typeof(m.metrics OPERATOR(pg_catalog.->) 'importance') OPERATOR(pg_catalog.=) 'array'
                                 THEN m.metrics OPERATOR(pg_catalog.->) 'importance' ELSE '[]'::pg_catalog.jsonb END)
                          WITH ORDINALITY AS f(e, i)
                     WHERE f.i OPERATOR(pg_catalog.<=) 10),
    'training_statistics', (
      SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'column', c.e OPERATOR(pg_catalog.->>) 'name', 'kind', c.e OPERATOR(pg_catalog.->>) 'kind',
               'missing', c.e OPERATOR(pg_catalog.->) 'missing')
             OPERATOR(pg_catalog.||) CASE
               WHEN c.e OPERATOR(pg_catalog.->>) 'kind' OPERATOR(pg_catalog.=) ANY (ARRAY['numeric', 'age_days'])
                 THEN pg_catalog.jsonb_build_object('deciles', c.e OPERATOR(pg_catalog.->) 'edges')
               WHEN c.e OPERATOR(pg_catalog.->>) 'kind' OPERATOR(pg_catalog.=) 'boolean'
                 THEN pg_catalog.jsonb_build_object('true', (c.e OPERATOR(pg_catalog.->) 'shares') OPERATOR(pg_catalog.->) 0)
               ELSE pg_catalog.jsonb_build_object('top', (
                 SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('value', l.v, 'share', l.s) ORDER BY l.s DESC, l.i)
                 FROM (SELECT lv.v, (c.e OPERATOR(pg_catalog.->) 'shares' OPERATOR(pg_catalog.->>) (lv.i OPERATOR(pg_catalog.-) 1)::integer)::pg_catalog.float8 AS s, lv.i
                       FROM pg_catalog.jsonb_array_elements_text(s.sc OPERATOR(pg_catalog.->) 'levels') WITH ORDINALITY AS lv(v, i)
                       ORDER BY 2 DESC, lv.i LIMIT 5) AS l))
             END ORDER BY c.i)
      FROM pg_catalog.jsonb_array_elements(m.training_stats OPERATOR(pg_catalog.->) 'columns') WITH ORDINALITY AS c(e, i)
      LEFT JOIN pg_catalog.jsonb_array_elements(m.spec OPERATOR(pg_catalog.->) 'columns') WITH ORDINALITY AS s(sc, j)
             ON s.j OPERATOR(pg_catalog.=) c.i),
    'scores_at_training', m.training_stats OPERATOR(pg_catalog.->) 'scores',
    'score_cutoffs', pg_catalog.to_jsonb(m.score_cutoffs),
    'params', m.params,
    'xgboost_version', m.xgboost_version)
  FROM icpml.models AS m
  WHERE m.version OPERATOR(pg_catalog.=) model_card.version
$$;

COMMENT ON FUNCTION icpml.model_card(integer) IS
  'A model version''s card (describe_model''s "card"): dataset and text encoding, data window, row counts, label rate, cross-validated metrics (model, rules, deployed recipe), top features, training statistics per column, score distribution at training, parameters, XGBoost version';

CREATE OR REPLACE FUNCTION icpml.describe_model(version integer DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT (pg_catalog.to_jsonb(m) OPERATOR(pg_catalog.-) 'model' OPERATOR(pg_catalog.-) 'training_labels')
         OPERATOR(pg_catalog.||)
         pg_catalog.jsonb_build_object('model_bytes', pg_catalog.octet_length(m.model),
                                       'card', icpml.model_card(m.version))
  FROM icpml.models AS m
  WHERE m.version OPERATOR(pg_catalog.=) icpml.model_version_or_deployed(describe_model.version)
$$;

COMMENT ON FUNCTION icpml.describe_model(integer) IS
  'Everything stored about a model version (the deployed one by default) except the blob and the training labels, plus the blob size in model_bytes and its model card in card (icpml.model_card)';

DROP PROCEDURE icpml.run_training(text, text);
CREATE PROCEDURE icpml.run_training(deploy text DEFAULT 'best',
                                    triggered_by text DEFAULT 'schedule',
                                    retrain text DEFAULT 'always')
LANGUAGE plpgsql
-- No SET clause and no SECURITY DEFINER: either would forbid the COMMITs
-- below.  It runs as the caller, and every function, operator and type it
-- names is schema-qualified instead.
AS $$
DECLARE
  v_run_key   constant bigint := pg_catalog.hashtext('icpml.run_training')::bigint;
  v_run_id    bigint;
  v_result    pg_catalog.jsonb;
  v_version   integer;
  v_state     pg_catalog.text;
  v_message   pg_catalog.text;
  v_detail    pg_catalog.text;
  v_hint      pg_catalog.text;
  v_reason    pg_catalog.text;
  v_needed    boolean := true;
  v_why       pg_catalog.text;
  v_model     record;
  v_params    pg_catalog.jsonb;
  v_exclude   pg_catalog.text[];
BEGIN
  IF run_training.deploy IS NULL
     OR NOT run_training.deploy OPERATOR(pg_catalog.=) ANY (ARRAY['best', 'always', 'never']) THEN
    RAISE EXCEPTION 'unknown deploy policy "%"', run_training.deploy
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use ''best'' (deploy if cross-validation beats the deployed model, or the rules), ''always'' or ''never''.';
  END IF;
  IF run_training.triggered_by IS NULL
     OR NOT run_training.triggered_by OPERATOR(pg_catalog.=) ANY (ARRAY['manual', 'schedule']) THEN
    RAISE EXCEPTION 'triggered_by must be ''manual'' or ''schedule'', not "%"', run_training.triggered_by
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Leave it out for scheduled runs; pass triggered_by => ''manual'' otherwise.';
  END IF;
  IF run_training.retrain IS NULL
     OR NOT run_training.retrain OPERATOR(pg_catalog.=) ANY (ARRAY['always', 'needed']) THEN
    RAISE EXCEPTION 'retrain must be ''always'' or ''needed'', not "%"', run_training.retrain
      USING ERRCODE = 'invalid_parameter_value',
            HINT = '''needed'' trains only when icpml.retraining_needed() says so (drift, decay on new labels, or age).';
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
     WHERE r.status OPERATOR(pg_catalog.=) 'running';

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
    -- the deployed model's recipe is what retraining repeats
    SELECT m.version, m.spec, m.label_column, m.params INTO v_model
      FROM icpml.models AS m WHERE m.status OPERATOR(pg_catalog.=) 'deployed';

    -- whether to train at all
    IF run_training.retrain OPERATOR(pg_catalog.=) 'always' THEN
      v_reason := 'retrain => always';
    ELSIF v_model.version IS NULL THEN
      v_reason := 'retrain => needed: no model is deployed';
    ELSE
      BEGIN
        SELECT h.needed, h.reason INTO v_needed, v_why FROM icpml.retraining_needed(v_model.version) AS h;
        v_reason := pg_catalog.format('retrain => needed: %s (model_health of version %s)',
                                      CASE WHEN v_needed THEN v_why ELSE 'not needed: ' OPERATOR(pg_catalog.||) v_why END,
                                      v_model.version);
      EXCEPTION WHEN OTHERS THEN
        -- a health check that fails does not stop the schedule
        GET STACKED DIAGNOSTICS v_why = MESSAGE_TEXT;
        v_needed := true;
        v_reason := 'retrain => needed: the health check failed (' OPERATOR(pg_catalog.||) v_why OPERATOR(pg_catalog.||) '); trained';
      END;
    END IF;

    IF v_needed AND v_model.version IS NULL THEN
      SELECT pg_catalog.to_jsonb(t) INTO v_result
        FROM icpml.train_icp_model(deploy => run_training.deploy) AS t;
    ELSIF v_needed THEN
      -- the same columns as the deployed model: the relation's others are left out
      v_exclude := ARRAY(
        SELECT a.attname::pg_catalog.text FROM pg_catalog.pg_attribute AS a
        WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(v_model.spec OPERATOR(pg_catalog.->>) 'relation')
          AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
          AND a.attname::pg_catalog.text OPERATOR(pg_catalog.<>) (v_model.spec OPERATOR(pg_catalog.->>) 'key')
          AND a.attname::pg_catalog.text OPERATOR(pg_catalog.<>) v_model.label_column
          AND NOT EXISTS (SELECT FROM pg_catalog.jsonb_array_elements(v_model.spec OPERATOR(pg_catalog.->) 'columns') AS c
                          WHERE c OPERATOR(pg_catalog.->>) 'name' OPERATOR(pg_catalog.=) a.attname::pg_catalog.text)
        ORDER BY a.attnum);
      v_params := v_model.params OPERATOR(pg_catalog.-)
                  ARRAY['objective', 'tree_method', 'seed', 'n_rounds', 'folds', 'search']::pg_catalog.text[];
      IF COALESCE((v_model.params OPERATOR(pg_catalog.->>) 'search')::boolean, false) THEN
        v_params := v_params OPERATOR(pg_catalog.-) ARRAY['max_depth', 'eta']::pg_catalog.text[];
      END IF;
      SELECT pg_catalog.to_jsonb(t) INTO v_result
        FROM icpml.train_icp_model(
               relation => v_model.spec OPERATOR(pg_catalog.->>) 'relation',
               key_column => v_model.spec OPERATOR(pg_catalog.->>) 'key',
               label_column => v_model.label_column,
               exclude_columns => v_exclude,
               folds => COALESCE((v_model.params OPERATOR(pg_catalog.->>) 'folds')::integer, 5),
               n_rounds => COALESCE((v_model.params OPERATOR(pg_catalog.->>) 'n_rounds')::integer, 100),
               params => v_params,
               search => COALESCE((v_model.params OPERATOR(pg_catalog.->>) 'search')::boolean, false),
               seed => COALESCE((v_model.params OPERATOR(pg_catalog.->>) 'seed')::integer, 42),
               deploy => run_training.deploy,
               encoding => COALESCE(v_model.spec OPERATOR(pg_catalog.->) 'encoding', '{}'::pg_catalog.jsonb)) AS t;
    END IF;
  EXCEPTION
    WHEN OTHERS OR query_canceled THEN
      GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                              v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
  END;

  BEGIN
    IF v_state IS NULL AND NOT v_needed THEN
      UPDATE icpml.training_runs AS r
         SET status = 'skipped', finished_at = pg_catalog.clock_timestamp(), reason = v_reason
       WHERE r.run_id OPERATOR(pg_catalog.=) v_run_id;
    ELSIF v_state IS NULL THEN
      -- train_icp_model's row: version, deployed, deploy_reason, cv_* figures
      v_version := (v_result OPERATOR(pg_catalog.->>) 'version')::integer;
      UPDATE icpml.training_runs AS r
         SET status = 'succeeded', finished_at = pg_catalog.clock_timestamp(),
             version = v_version,
             deployed = (v_result OPERATOR(pg_catalog.->>) 'deployed')::boolean,
             deploy_reason = v_result OPERATOR(pg_catalog.->>) 'deploy_reason',
             metrics = COALESCE(
                         (SELECT m.metrics OPERATOR(pg_catalog.->) 'cv' FROM icpml.models AS m
                           WHERE m.version OPERATOR(pg_catalog.=) v_version),
                         v_result),
             reason = v_reason
       WHERE r.run_id OPERATOR(pg_catalog.=) v_run_id;
    ELSE
      UPDATE icpml.training_runs AS r
         SET status = 'failed', finished_at = pg_catalog.clock_timestamp(), reason = v_reason,
             error = v_message
       WHERE r.run_id OPERATOR(pg_catalog.=) v_run_id;
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
    IF v_detail OPERATOR(pg_catalog.<>) '' AND v_hint OPERATOR(pg_catalog.<>) '' THEN
      RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message, DETAIL = v_detail, HINT = v_hint;
    ELSIF v_detail OPERATOR(pg_catalog.<>) '' THEN
      RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message, DETAIL = v_detail;
    ELSIF v_hint OPERATOR(pg_catalog.<>) '' THEN
      RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message, HINT = v_hint;
    ELSE
      RAISE EXCEPTION USING ERRCODE = v_state, MESSAGE = v_message;
    END IF;
  END IF;
END
$$;

-- REVOKE ... ON ALL FUNCTIONS (99_privileges.sql) does not cover procedures.
REVOKE ALL ON PROCEDURE icpml.run_training(text, text, text) FROM PUBLIC;

COMMENT ON PROCEDURE icpml.run_training(text, text, text) IS
  'Train a model (the deployed model''s recipe: relation, key, label, columns, parameters, encoding; the defaults when none is deployed) with icpml.train_icp_model(deploy => ...) and record the run and why in icpml.training_runs; retrain => needed trains only when icpml.retraining_needed() says so (else the run is skipped); never overlaps another training; call outside a transaction block';

CREATE FUNCTION icpml.schedule_retraining(cron text DEFAULT '0 3 * * *',
                                          deploy text DEFAULT 'best',
                                          job_name text DEFAULT 'icpml-retrain',
                                          run_as name DEFAULT NULL,
                                          retrain text DEFAULT 'always')
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_fields pg_catalog.text[];
  v_super boolean := (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r
                      WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER);
  v_role pg_catalog.name;
  v_command pg_catalog.text;
BEGIN
  v_fields := pg_catalog.regexp_split_to_array(pg_catalog.btrim(COALESCE(schedule_retraining.cron, '')), '\s+');
  IF schedule_retraining.cron IS NULL OR pg_catalog.cardinality(v_fields) OPERATOR(pg_catalog.<>) 5
     OR v_fields[1] OPERATOR(pg_catalog.=) '' THEN
    RAISE EXCEPTION 'cron schedule "%" does not have five fields', schedule_retraining.cron
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'A schedule is minute, hour, day of month, month and day of week, separated by spaces.',
            HINT = 'For example ''0 3 * * *'' runs every night at 03:00 (in the time zone pg_cron uses, GMT by default).';
  END IF;
  IF schedule_retraining.deploy IS NULL
     OR NOT schedule_retraining.deploy OPERATOR(pg_catalog.=) ANY (ARRAY['best', 'always', 'never']) THEN
    RAISE EXCEPTION 'unknown deploy policy "%"', schedule_retraining.deploy
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use ''best'' (deploy if cross-validation beats the deployed model, or the rules), ''always'' or ''never''.';
  END IF;
  IF schedule_retraining.retrain IS NULL
     OR NOT schedule_retraining.retrain OPERATOR(pg_catalog.=) ANY (ARRAY['always', 'needed']) THEN
    RAISE EXCEPTION 'retrain must be ''always'' or ''needed'', not "%"', schedule_retraining.retrain
      USING ERRCODE = 'invalid_parameter_value',
            HINT = '''needed'' trains only when icpml.retraining_needed() says so (drift, decay on new labels, or age).';
  END IF;
  v_command := pg_catalog.format('CALL icpml.run_training(deploy => %L%s)', schedule_retraining.deploy,
                                 CASE WHEN schedule_retraining.retrain OPERATOR(pg_catalog.=) 'needed'
                                      THEN ', retrain => ''needed''' ELSE '' END);
  IF schedule_retraining.job_name IS NULL OR schedule_retraining.job_name OPERATOR(pg_catalog.=) '' THEN
    RAISE EXCEPTION 'job_name must not be empty'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Leave it out to use ''icpml-retrain''.';
  END IF;

  -- who the job runs as: never a superuser (docs/security.md)
  v_role := COALESCE(schedule_retraining.run_as,
                     CASE WHEN v_super THEN 'icpml_jobs'::pg_catalog.name ELSE CURRENT_USER END);
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) v_role) THEN
    RAISE EXCEPTION 'role "%" does not exist', v_role
      USING ERRCODE = 'undefined_object',
            HINT = 'Scheduled jobs run as icpml_jobs by default; ALTER EXTENSION icpml UPDATE creates it.';
  END IF;
  IF (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) v_role) THEN
    RAISE EXCEPTION 'icpml''s scheduled jobs do not run as a superuser ("%")', v_role
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = 'A superuser''s job would run the code of every view, policy and function the feature relation reaches with a superuser''s rights.',
            HINT = 'Leave run_as out: the job then runs as icpml_jobs; grant it SELECT on the feature relation (docs/security.md).';
  END IF;
  IF v_role OPERATOR(pg_catalog.<>) CURRENT_USER AND NOT v_super THEN
    RAISE EXCEPTION 'only a superuser can schedule a job to run as another role ("%")', v_role
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'Leave run_as out: the job then runs as you.';
  END IF;
  IF NOT pg_catalog.has_function_privilege(v_role, 'icpml.run_training(text, text, text)', 'EXECUTE') THEN
    RAISE EXCEPTION 'role "%" may not run icpml.run_training()', v_role
      USING ERRCODE = 'insufficient_privilege',
            HINT = pg_catalog.format('Make it an administrator: SELECT icpml.grant_admin(%L).', v_role);
  END IF;
  PERFORM icpml.require_pg_cron();

  -- pg_cron replaces the role's job of the same name
  IF v_role OPERATOR(pg_catalog.=) CURRENT_USER THEN
    RETURN cron.schedule(schedule_retraining.job_name,
                         pg_catalog.array_to_string(v_fields, ' '), v_command);
  END IF;
  RETURN cron.schedule_in_database(schedule_retraining.job_name,
                                   pg_catalog.array_to_string(v_fields, ' '),
                                   v_command, pg_catalog.current_database(), v_role);
END
$$;

COMMENT ON FUNCTION icpml.schedule_retraining(text, text, text, name, text) IS
  'Schedule CALL icpml.run_training(deploy => ..., retrain => ...) with pg_cron (five-field cron schedule, GMT) to run as run_as (default: icpml_jobs when a superuser schedules, the caller otherwise; never a superuser); retrain => needed trains only when model_health says so; returns the job id; rescheduling a job name replaces it';

CREATE OR REPLACE VIEW icpml.training_history WITH (security_invoker = true) AS
  SELECT r.run_id, r.started_at, r.finished_at,
         r.finished_at OPERATOR(pg_catalog.-) r.started_at AS duration,
         r.status, r.triggered_by, r.deploy_policy, r.run_by, r.version, r.deployed,
         r.deploy_reason,
         (r.metrics OPERATOR(pg_catalog.#>>) '{model,roc_auc}')::double precision AS cv_roc_auc,
         (r.metrics OPERATOR(pg_catalog.#>>) '{rules,roc_auc}')::double precision AS rules_cv_roc_auc,
         r.error, r.reason
  FROM icpml.training_runs AS r
  ORDER BY r.run_id DESC;

REVOKE ALL ON FUNCTION icpml.model_health(integer, text), icpml.retraining_needed(integer), icpml.model_card(integer), icpml.schedule_retraining(text, text, text, name, text) FROM PUBLIC;
REVOKE ALL ON PROCEDURE icpml.run_training(text, text, text) FROM PUBLIC;
REVOKE ALL ON TABLE icpml.health_settings FROM PUBLIC;
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) 'service_role') THEN
    GRANT EXECUTE ON FUNCTION icpml.model_health(integer, text), icpml.retraining_needed(integer), icpml.model_card(integer), icpml.schedule_retraining(text, text, text, name, text) TO service_role;
    GRANT EXECUTE ON PROCEDURE icpml.run_training(text, text, text) TO service_role;
    GRANT ALL ON TABLE icpml.health_settings TO service_role;
  END IF;
END
$$;
GRANT EXECUTE ON FUNCTION icpml.model_health(integer, text), icpml.retraining_needed(integer), icpml.model_card(integer), icpml.schedule_retraining(text, text, text, name, text) TO icpml_admin;
GRANT EXECUTE ON PROCEDURE icpml.run_training(text, text, text) TO icpml_admin;
GRANT ALL ON TABLE icpml.health_settings TO icpml_admin;
GRANT EXECUTE ON FUNCTION icpml.model_health(integer, text), icpml.retraining_needed(integer), icpml.model_card(integer), icpml.schedule_retraining(text, text, text, name, text) TO icpml_jobs;
GRANT EXECUTE ON PROCEDURE icpml.run_training(text, text, text) TO icpml_jobs;
GRANT ALL ON TABLE icpml.health_settings TO icpml_jobs;

-- ---------------------------------------------------------------------------
-- Experiment variants (#13 items 3, 4; variants lane): variants are labels,
-- each serving a policy (two may serve the same: a true A/A test) and,
-- optionally, a model version (model_versions: its candidates and scores
-- come from icpml.version_scores); each variant ranks with and trains its
-- own shared bandit state (separate_state, the default for new experiments;
-- experiments that exist keep sharing the global state, as they ran); a
-- holdout share of users served a fixed baseline whose feedback trains
-- nothing; the state each served row trains (recommendations.state_scope,
-- NULL = global for every row logged so far); promote_variant().
-- start_experiment gains arguments: DROP + CREATE.
-- ---------------------------------------------------------------------------
ALTER TABLE icpml.bandit_state DROP CONSTRAINT bandit_state_scope_check,
  ADD CONSTRAINT bandit_state_scope_check
    CHECK (scope = 'global' OR scope ~ '^user:[0-9a-f-]{36}$'
           OR scope ~ '^variant:[a-z0-9][a-z0-9_-]{0,62}/[a-z0-9][a-z0-9_-]{0,62}$');
COMMENT ON TABLE icpml.bandit_state IS
  'Sufficient statistics of the ridge-regression bandit: A = lambda I + sum x x'' (dim x dim), b = sum r x, chol = lower Cholesky factor of A, n = updates; scope global (shared model), variant:<experiment>/<variant> (an experiment variant''s own shared model) or user:<uuid> (personalisation)';

ALTER TABLE icpml.recommendations ADD COLUMN state_scope text;
COMMENT ON COLUMN icpml.recommendations.state_scope IS
  'The shared bandit state this impression''s feedback trains: NULL the global one, variant:<experiment>/<variant> an experiment variant''s own, none a holdout impression (trains no state at all)';
COMMENT ON COLUMN icpml.recommendations.variant IS
  'The experiment''s variant the user is assigned to (holdout for a held-out user); NULL outside experiments';

ALTER TABLE icpml.experiments DROP CONSTRAINT experiments_variants_check,
  ADD CONSTRAINT experiments_variants_check
    CHECK (cardinality(variants) BETWEEN 2 AND 8 AND array_position(variants, NULL) IS NULL);
ALTER TABLE icpml.experiments
  ADD COLUMN policies text[]
    CHECK (array_position(policies, NULL) IS NULL
           AND policies <@ ARRAY['linucb', 'thompson', 'greedy', 'epsilon_greedy', 'icp', 'random']),
  ADD COLUMN separate_state boolean NOT NULL DEFAULT false,
  ADD COLUMN holdout double precision NOT NULL DEFAULT 0 CHECK (holdout >= 0 AND holdout < 1),
  ADD COLUMN holdout_policy text NOT NULL DEFAULT 'icp'
    CHECK (holdout_policy IN ('linucb', 'thompson', 'greedy', 'epsilon_greedy', 'icp', 'random')),
  ADD COLUMN promoted text,
  ADD COLUMN model_versions integer[];
-- 0.3.0's variants are policy names; those experiments shared the global state
UPDATE icpml.experiments SET policies = variants;
ALTER TABLE icpml.experiments ALTER COLUMN policies SET NOT NULL,
  ALTER COLUMN separate_state SET DEFAULT true,
  ADD CONSTRAINT experiments_variant_labels_check
    CHECK (cardinality(policies) = cardinality(variants)
           AND NOT 'holdout' = ANY (variants)
           AND (promoted IS NULL OR promoted = ANY (variants))),
  ADD CONSTRAINT experiments_model_versions_check
    CHECK (model_versions IS NULL OR cardinality(model_versions) = cardinality(variants));
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

CREATE OR REPLACE FUNCTION icpml.experiments_guard()
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

DROP FUNCTION icpml.start_experiment(text, text[], double precision[], text);

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
                                        AND x OPERATOR(pg_catalog.<) 'Infinity'::double precision)) THEN
    RAISE EXCEPTION 'weights must be % positive finite numbers, one per variant', pg_catalog.cardinality(variants)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Omit weights for an even split.';
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

CREATE OR REPLACE FUNCTION icpml.experiment_results(
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

REVOKE ALL ON FUNCTION icpml.start_experiment(text, text[], double precision[], text, text[], boolean, double precision, text, integer[]),
  icpml.promote_variant(text, text) FROM PUBLIC;
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) 'service_role') THEN
    GRANT EXECUTE ON FUNCTION icpml.start_experiment(text, text[], double precision[], text, text[], boolean, double precision, text, integer[]),
      icpml.promote_variant(text, text) TO service_role;
  END IF;
END
$$;
GRANT EXECUTE ON FUNCTION icpml.start_experiment(text, text[], double precision[], text, text[], boolean, double precision, text, integer[]),
  icpml.promote_variant(text, text) TO icpml_admin;
GRANT EXECUTE ON FUNCTION icpml.start_experiment(text, text[], double precision[], text, text[], boolean, double precision, text, integer[]),
  icpml.promote_variant(text, text) TO icpml_jobs;

-- ---------------------------------------------------------------------------
-- Review of the 0.4.0 surfaces (review lane): the relations icpml reads on a
-- caller's behalf (icpml.feature_relation, feature_key,
-- interactions_relation) are superuser settings now, SET granted to
-- icpml_admin as for the resource settings (docs/security.md).
-- ---------------------------------------------------------------------------
GRANT SET ON PARAMETER icpml.feature_relation, icpml.feature_key, icpml.interactions_relation TO icpml_admin;
-- icpml.health_settings: finite thresholds in range (NaN passed "> 0" and
-- silenced every drift and decay alert; a negative max_model_age retrained
-- every night)
ALTER TABLE icpml.health_settings
  DROP CONSTRAINT health_settings_psi_watch_check,
  DROP CONSTRAINT health_settings_auc_drop_check,
  DROP CONSTRAINT health_settings_brier_rise_check,
  DROP CONSTRAINT health_settings_calibration_gap_check,
  ADD CONSTRAINT health_settings_psi_watch_check CHECK (psi_watch > 0 AND psi_watch <= 10),
  ADD CONSTRAINT health_settings_psi_alert_check CHECK (psi_alert > 0 AND psi_alert <= 10),
  ADD CONSTRAINT health_settings_auc_drop_check CHECK (auc_drop >= 0 AND auc_drop <= 1),
  ADD CONSTRAINT health_settings_brier_rise_check CHECK (brier_rise >= 0 AND brier_rise <= 1),
  ADD CONSTRAINT health_settings_calibration_gap_check CHECK (calibration_gap > 0 AND calibration_gap <= 1),
  ADD CONSTRAINT health_settings_max_model_age_check CHECK (max_model_age >= '0');
COMMENT ON TABLE icpml.health_settings IS
  'One row: the thresholds of model_health (PSI watch and alert, AUC drop, Brier rise, calibration gap, new labels needed) and the age after which retraining is due anyway (NULL: never); every number finite and in range (NaN would silence every alert)';

-- ---------------------------------------------------------------------------
-- Materialised scores (scoring lane: #12 items 1, 2, 4; #11 item 2; #14
-- item 2): score_all() writes only what changed (scored_at = when a row's
-- score last changed) and fills an empty table in bulk; one index less on
-- account_scores; challenger sets (version_scores, score_all(version => v));
-- the run log (score_runs); incremental scoring (score_changed(), fed by
-- the queue triggers enable_score_queue() puts on the user's tables).
-- ---------------------------------------------------------------------------

-- retrieval reads by probability only; nothing reads by priority
DROP INDEX icpml.account_scores_priority_idx;

COMMENT ON TABLE icpml.account_scores IS
  'The served scores: one row per account of the deployed model''s relation (or the rules''), kept by score_all() and score_changed(); read by dashboards and by recommend_accounts retrieval';
COMMENT ON COLUMN icpml.account_scores.scored_at IS
  'When this row''s score last changed (runs that find it unchanged do not rewrite it; icpml.score_runs says when the set was last checked)';

CREATE TABLE icpml.version_scores (
  model_version integer NOT NULL,
  account_id    bigint NOT NULL,
  score         integer NOT NULL CHECK (score BETWEEN 1 AND 10),
  priority      text NOT NULL CHECK (priority IN ('high', 'medium', 'low')),
  probability   double precision NOT NULL,
  scored_at     timestamptz NOT NULL,
  PRIMARY KEY (model_version, account_id)
);

CREATE INDEX version_scores_probability_idx
  ON icpml.version_scores (model_version, probability DESC, account_id);

COMMENT ON TABLE icpml.version_scores IS
  'Challenger scores: stored model versions other than the deployed one, filled by score_all(version => v) and kept current by score_changed(); a deploy of v adopts its rows as the served set';

CREATE TABLE icpml.score_runs (
  run_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind          text NOT NULL CHECK (kind IN ('all', 'changed', 'adopt')),
  target        text NOT NULL CHECK (target IN ('served', 'version')),
  set_version   integer,
  model         text NOT NULL,
  model_version integer,
  relation      text,
  started_at    timestamptz NOT NULL,
  finished_at   timestamptz NOT NULL,
  rows_read     bigint NOT NULL,
  rows_written  bigint NOT NULL,
  rows_deleted  bigint NOT NULL,
  run_by        name NOT NULL DEFAULT CURRENT_USER,
  CHECK ((target = 'version') = (set_version IS NOT NULL))
);

COMMENT ON TABLE icpml.score_runs IS
  'Runs of score_all() (kind all), score_changed() (changed) and adoptions of a challenger set after a deploy (adopt): which set, model and relation, rows read, written (changed) and deleted; the last 1000 are kept';

CREATE TABLE icpml.score_queue (
  account_id bigint PRIMARY KEY,
  queued_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE icpml.score_queue IS
  'Accounts changed since score_changed() last ran, queued by the triggers icpml.enable_score_queue() puts on the tables behind the feature relation';

SELECT pg_catalog.pg_extension_config_dump('icpml.version_scores', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.score_runs', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.score_runs_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.score_queue', '');

DROP FUNCTION icpml.score_all(integer);
CREATE FUNCTION icpml.score_all(batch_size integer DEFAULT 10000, version integer DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'score_all'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.score_all(integer, integer) IS
  'Score every account of the deployed model''s relation (or the rules'', as the caller) and make icpml.account_scores hold exactly those scores, writing only what changed; version => v fills version v''s challenger set in icpml.version_scores instead; returns the number of accounts scored';

CREATE FUNCTION icpml.score_changed(max_rows integer DEFAULT 100000)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'score_changed'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION icpml.score_changed(integer) IS
  'Incremental scoring (schedule it every minute): rescore the accounts in icpml.score_queue (at most max_rows) in the served and challenger sets; after a deploy, adopt or rescore the served set; returns what it did as jsonb';

CREATE FUNCTION icpml.drop_version_scores(version integer)
RETURNS bigint
LANGUAGE sql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
  WITH d AS (DELETE FROM icpml.version_scores AS s
             WHERE s.model_version OPERATOR(pg_catalog.=) drop_version_scores.version RETURNING 1)
  SELECT pg_catalog.count(*) FROM d
$$;

COMMENT ON FUNCTION icpml.drop_version_scores(integer) IS
  'Delete a version''s challenger scores (icpml.version_scores) when its experiment is over; returns the rows deleted';

-- The queue trigger: statement-level, with transition tables, on each table
-- behind the feature relation that carries the account key (TG_ARGV[0]
-- names that column).  Owner's rights (it writes icpml.score_queue), so its
-- search_path is pinned and every name qualified; the column name comes
-- from the trigger's definition (enable_score_queue), quoted.  An upsert,
-- not DO NOTHING: a queued row being popped by score_changed() is locked,
-- so a change committed meanwhile waits and queues the account again.
CREATE FUNCTION icpml.score_queue_trigger()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_LEVEL OPERATOR(pg_catalog.<>) 'STATEMENT' OR TG_NARGS OPERATOR(pg_catalog.<>) 1 THEN
    RAISE EXCEPTION 'icpml.score_queue_trigger() must be a statement trigger with the key column as its argument'
      USING ERRCODE = 'triggered_action_exception';
  END IF;
  IF TG_OP OPERATOR(pg_catalog.=) 'TRUNCATE' THEN
    -- every account scored so far: score_changed() deletes those that are gone
    INSERT INTO icpml.score_queue AS q (account_id)
    SELECT s.account_id FROM icpml.account_scores AS s
    ON CONFLICT (account_id) DO UPDATE SET queued_at = excluded.queued_at;
  ELSIF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    EXECUTE pg_catalog.format(
      'INSERT INTO icpml.score_queue AS q (account_id)'
      ' SELECT DISTINCT n.%1$I::pg_catalog.int8 FROM new_rows AS n WHERE n.%1$I IS NOT NULL'
      ' ON CONFLICT (account_id) DO UPDATE SET queued_at = excluded.queued_at', TG_ARGV[0]);
  ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    EXECUTE pg_catalog.format(
      'INSERT INTO icpml.score_queue AS q (account_id)'
      ' SELECT DISTINCT o.%1$I::pg_catalog.int8 FROM old_rows AS o WHERE o.%1$I IS NOT NULL'
      ' ON CONFLICT (account_id) DO UPDATE SET queued_at = excluded.queued_at', TG_ARGV[0]);
  ELSE
    -- an update may move a row from one account to another: both change
    EXECUTE pg_catalog.format(
      'INSERT INTO icpml.score_queue AS q (account_id)'
      ' SELECT DISTINCT k.a FROM (SELECT n.%1$I::pg_catalog.int8 FROM new_rows AS n'
      '   UNION ALL SELECT o.%1$I::pg_catalog.int8 FROM old_rows AS o) AS k(a) WHERE k.a IS NOT NULL'
      ' ON CONFLICT (account_id) DO UPDATE SET queued_at = excluded.queued_at', TG_ARGV[0]);
  END IF;
  RETURN NULL;
END
$$;

COMMENT ON FUNCTION icpml.score_queue_trigger() IS
  'Statement trigger that enable_score_queue() puts on the tables behind the feature relation: queues the accounts a statement inserted, updated, deleted or truncated for score_changed()';

-- The tables whose rows feed a relation, following views down to tables
-- (pg_depend of the views' rewrite rules), with the key column's name.
CREATE FUNCTION icpml.score_queue_tables(relation regclass, key_column name)
RETURNS TABLE(table_name regclass, has_key boolean)
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
  WITH RECURSIVE r(oid, depth) AS (
    SELECT score_queue_tables.relation::pg_catalog.oid, 0
    UNION
    SELECT d.refobjid, r.depth OPERATOR(pg_catalog.+) 1
    FROM r
    JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) r.oid
    JOIN pg_catalog.pg_rewrite AS w ON w.ev_class OPERATOR(pg_catalog.=) r.oid
    JOIN pg_catalog.pg_depend AS d ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                                   AND d.objid OPERATOR(pg_catalog.=) w.oid
                                   AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                                   AND d.refobjid OPERATOR(pg_catalog.<>) r.oid
    WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{v,m}') AND r.depth OPERATOR(pg_catalog.<) 16
  )
  SELECT DISTINCT c.oid::pg_catalog.regclass,
         EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
                 WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid
                   AND a.attname OPERATOR(pg_catalog.=) score_queue_tables.key_column
                   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)
  FROM r JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) r.oid
  WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}')
$$;

COMMENT ON FUNCTION icpml.score_queue_tables(regclass, name) IS
  'The tables a relation reads (through views), and whether each has the key column: where enable_score_queue() puts its triggers';

-- Put the queue triggers on the tables behind the scored relation (default:
-- the deployed model's relation and key, else icpml.feature_relation and
-- icpml.feature_key).  Runs as the caller, who must own those tables (or
-- hold TRIGGER on them).  Tables without the key column are reported and
-- skipped: their changes reach the scores at the next score_all().
CREATE FUNCTION icpml.enable_score_queue(relation regclass DEFAULT NULL, key_column name DEFAULT NULL)
RETURNS TABLE(table_name regclass, queued boolean, note text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
  v_rel pg_catalog.regclass := relation;
  v_key pg_catalog.name := key_column;
  t record;
  tg record;
  op pg_catalog.text;
BEGIN
  IF v_rel IS NULL THEN
    SELECT m.relation::pg_catalog.regclass, m.key_column INTO v_rel, v_key
    FROM icpml.models AS m WHERE m.status OPERATOR(pg_catalog.=) 'deployed';
    IF v_rel IS NULL THEN
      -- (resolved with the pinned search_path: a schema-qualified name)
      -- (missing_ok and the built-in defaults: icpml's library may not be loaded yet)
      v_rel := pg_catalog.to_regclass(COALESCE(NULLIF(pg_catalog.current_setting('icpml.feature_relation', true), ''),
                                               'public.account_features'));
      IF v_rel IS NULL THEN
        RAISE EXCEPTION 'relation "%" (icpml.feature_relation) was not found',
          COALESCE(NULLIF(pg_catalog.current_setting('icpml.feature_relation', true), ''), 'public.account_features')
          USING ERRCODE = 'undefined_table',
                HINT = 'Pass the relation: SELECT * FROM icpml.enable_score_queue(''myschema.my_features'').';
      END IF;
    END IF;
  END IF;
  v_key := COALESCE(key_column, v_key, NULLIF(pg_catalog.current_setting('icpml.feature_key', true), ''), 'account_id');
  FOR t IN SELECT * FROM icpml.score_queue_tables(v_rel, v_key) AS q ORDER BY q.table_name::pg_catalog.text LOOP
    IF NOT t.has_key THEN
      RETURN QUERY SELECT t.table_name, false,
        pg_catalog.format('no column %I: changes here reach the scores at the next score_all()', v_key);
      CONTINUE;
    END IF;
    -- again: replace this function's own triggers (an earlier key column)
    FOR tg IN SELECT g.tgname FROM pg_catalog.pg_trigger AS g
              WHERE g.tgrelid OPERATOR(pg_catalog.=) t.table_name
                AND g.tgfoid OPERATOR(pg_catalog.=) 'icpml.score_queue_trigger()'::pg_catalog.regprocedure LOOP
      EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', tg.tgname, t.table_name);
    END LOOP;
    FOREACH op IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
      EXECUTE pg_catalog.format(
        'CREATE TRIGGER %I AFTER %s ON %s REFERENCING %s TABLE AS %s FOR EACH STATEMENT'
        ' EXECUTE FUNCTION icpml.score_queue_trigger(%L)',
        'icpml_score_queue_' OPERATOR(pg_catalog.||) op, op, t.table_name,
        CASE op WHEN 'delete' THEN 'OLD' WHEN 'insert' THEN 'NEW' ELSE 'OLD TABLE AS old_rows NEW' END,
        CASE op WHEN 'delete' THEN 'old_rows' ELSE 'new_rows' END, v_key);
    END LOOP;
    EXECUTE pg_catalog.format('CREATE TRIGGER icpml_score_queue_truncate AFTER TRUNCATE ON %s'
                              ' FOR EACH STATEMENT EXECUTE FUNCTION icpml.score_queue_trigger(%L)',
                              t.table_name, v_key);
    RETURN QUERY SELECT t.table_name, true, NULL::pg_catalog.text;
  END LOOP;
END
$$;

COMMENT ON FUNCTION icpml.enable_score_queue(regclass, name) IS
  'Queue changed accounts for score_changed(): statement triggers on every table behind the relation (default: the deployed model''s) that has the key column; returns each table and whether it is queued';

CREATE FUNCTION icpml.disable_score_queue(relation regclass DEFAULT NULL)
RETURNS TABLE(table_name regclass)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
  t record;
  tg record;
BEGIN
  FOR t IN SELECT DISTINCT g.tgrelid::pg_catalog.regclass AS rel
           FROM pg_catalog.pg_trigger AS g
           WHERE g.tgfoid OPERATOR(pg_catalog.=) 'icpml.score_queue_trigger()'::pg_catalog.regprocedure
             AND (relation IS NULL OR g.tgrelid OPERATOR(pg_catalog.=) relation
                  OR g.tgrelid OPERATOR(pg_catalog.=) ANY (SELECT q.table_name FROM icpml.score_queue_tables(relation, 'account_id') AS q))
           ORDER BY 1 LOOP
    FOR tg IN SELECT g.tgname FROM pg_catalog.pg_trigger AS g
              WHERE g.tgrelid OPERATOR(pg_catalog.=) t.rel
                AND g.tgfoid OPERATOR(pg_catalog.=) 'icpml.score_queue_trigger()'::pg_catalog.regprocedure LOOP
      EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', tg.tgname, t.rel);
    END LOOP;
    RETURN QUERY SELECT t.rel;
  END LOOP;
END
$$;

COMMENT ON FUNCTION icpml.disable_score_queue(regclass) IS
  'Remove the score queue triggers (from every table, or from those behind one relation); returns the tables';

REVOKE ALL ON FUNCTION icpml.score_all(integer, integer), icpml.score_changed(integer),
  icpml.drop_version_scores(integer), icpml.score_queue_trigger(),
  icpml.score_queue_tables(regclass, name), icpml.enable_score_queue(regclass, name),
  icpml.disable_score_queue(regclass) FROM PUBLIC;
ALTER TABLE icpml.version_scores ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.score_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.score_queue ENABLE ROW LEVEL SECURITY;
CREATE POLICY administrators ON icpml.version_scores TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.score_runs TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.score_queue TO icpml_admin USING (true) WITH CHECK (true);
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) 'service_role') THEN
    PERFORM icpml.grant_admin('service_role');
  END IF;
END
$$;
SELECT icpml.grant_admin('icpml_admin');
SELECT icpml.grant_admin('icpml_jobs');

-- ---------------------------------------------------------------------------
-- Review of the 0.4.0 surfaces (review lane), after the score store: the
-- score queue trigger reads the key column with the owner's rights, so it
-- refuses a key of a user-defined type (whose cast the table's owner wrote)
-- at every firing, and says so when the key column is gone.
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION icpml.score_queue_trigger()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_base pg_catalog.oid;
  v_next pg_catalog.oid;
BEGIN
  IF TG_LEVEL OPERATOR(pg_catalog.<>) 'STATEMENT' OR TG_NARGS OPERATOR(pg_catalog.<>) 1 THEN
    RAISE EXCEPTION 'icpml.score_queue_trigger() must be a statement trigger with the key column as its argument'
      USING ERRCODE = 'triggered_action_exception';
  END IF;
  -- The key column is read with the owner's rights: a cast, operator or
  -- function of a type the table's owner defined would run as the owner.
  -- Only a column of a built-in type (a domain followed to its base) is
  -- read, checked at every firing (the column may change type after the
  -- trigger was put there), as the feedback and profile triggers do.
  IF TG_OP OPERATOR(pg_catalog.<>) 'TRUNCATE' THEN
    SELECT a.atttypid INTO v_base FROM pg_catalog.pg_attribute AS a
    WHERE a.attrelid OPERATOR(pg_catalog.=) TG_RELID AND a.attname OPERATOR(pg_catalog.=) TG_ARGV[0]
      AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
    -- a domain of the user's: down to its base type
    WHILE v_base OPERATOR(pg_catalog.>=) 16384::pg_catalog.oid LOOP
      SELECT t.typbasetype INTO v_next FROM pg_catalog.pg_type AS t
      WHERE t.oid OPERATOR(pg_catalog.=) v_base AND t.typtype OPERATOR(pg_catalog.=) 'd';
      EXIT WHEN NOT FOUND;
      v_base := v_next;
    END LOOP;
    IF v_base IS NULL THEN
      RAISE EXCEPTION 'column "%" of "%" does not exist: the score queue trigger cannot queue its accounts',
                      TG_ARGV[0], TG_RELID::pg_catalog.regclass
        USING ERRCODE = 'undefined_column',
              HINT = 'Put the triggers there again for the new key column with icpml.enable_score_queue(), or remove them with icpml.disable_score_queue().';
    END IF;
    IF v_base OPERATOR(pg_catalog.>=) 16384::pg_catalog.oid THEN
      RAISE EXCEPTION 'column "%" of "%" has a user-defined type', TG_ARGV[0], TG_RELID::pg_catalog.regclass
        USING ERRCODE = 'datatype_mismatch',
              HINT = 'The score queue trigger reads the key with the extension owner''s rights; use a bigint key (or a domain over one), or remove the triggers with icpml.disable_score_queue().';
    END IF;
  END IF;
  IF TG_OP OPERATOR(pg_catalog.=) 'TRUNCATE' THEN
    -- every account scored so far: score_changed() deletes those that are gone
    INSERT INTO icpml.score_queue AS q (account_id)
    SELECT s.account_id FROM icpml.account_scores AS s
    ON CONFLICT (account_id) DO UPDATE SET queued_at = excluded.queued_at;
  ELSIF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    EXECUTE pg_catalog.format(
      'INSERT INTO icpml.score_queue AS q (account_id)'
      ' SELECT DISTINCT n.%1$I::pg_catalog.int8 FROM new_rows AS n WHERE n.%1$I IS NOT NULL'
      ' ON CONFLICT (account_id) DO UPDATE SET queued_at = excluded.queued_at', TG_ARGV[0]);
  ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    EXECUTE pg_catalog.format(
      'INSERT INTO icpml.score_queue AS q (account_id)'
      ' SELECT DISTINCT o.%1$I::pg_catalog.int8 FROM old_rows AS o WHERE o.%1$I IS NOT NULL'
      ' ON CONFLICT (account_id) DO UPDATE SET queued_at = excluded.queued_at', TG_ARGV[0]);
  ELSE
    -- an update may move a row from one account to another: both change
    EXECUTE pg_catalog.format(
      'INSERT INTO icpml.score_queue AS q (account_id)'
      ' SELECT DISTINCT k.a FROM (SELECT n.%1$I::pg_catalog.int8 FROM new_rows AS n'
      '   UNION ALL SELECT o.%1$I::pg_catalog.int8 FROM old_rows AS o) AS k(a) WHERE k.a IS NOT NULL'
      ' ON CONFLICT (account_id) DO UPDATE SET queued_at = excluded.queued_at', TG_ARGV[0]);
  END IF;
  RETURN NULL;
END
$$;

-- ---------------------------------------------------------------------------
-- Review (review lane): experiment weights are relative shares up to 1e6.
-- Finite weights near the float limit summed to Infinity: every user went to
-- the last variant, and experiment_results failed (float8 overflow).
-- ---------------------------------------------------------------------------
ALTER TABLE icpml.experiments DROP CONSTRAINT experiments_weights_check,
  ADD CONSTRAINT experiments_weights_check
    CHECK (array_position(weights, NULL) IS NULL AND 0 < ALL (weights) AND 1e6 >= ALL (weights));
CREATE OR REPLACE FUNCTION icpml.start_experiment(
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

-- ---------------------------------------------------------------------------
-- Off-policy evaluation (issue #13 items 1-2, ope lane): src/sql/47_ope.sql
-- (candidate_log_settings, recommendation_candidates, prune_candidate_log,
-- evaluate_policy) and its privileges from 99_privileges.sql.
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

SELECT pg_catalog.pg_extension_config_dump('icpml.candidate_log_settings', '');
SELECT pg_catalog.pg_extension_config_dump('icpml.recommendation_candidates', '');

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

ALTER TABLE icpml.candidate_log_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE icpml.recommendation_candidates ENABLE ROW LEVEL SECURITY;
CREATE POLICY administrators ON icpml.candidate_log_settings TO icpml_admin USING (true) WITH CHECK (true);
CREATE POLICY administrators ON icpml.recommendation_candidates TO icpml_admin USING (true) WITH CHECK (true);
REVOKE ALL ON TABLE icpml.candidate_log_settings, icpml.recommendation_candidates FROM PUBLIC;
REVOKE ALL ON FUNCTION icpml.prune_candidate_log(timestamptz),
  icpml.evaluate_policy(text, jsonb, timestamptz, timestamptz, double precision, double precision),
  icpml.candidate_log_settings_replace() FROM PUBLIC;
DO $$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) 'service_role') THEN
    GRANT ALL ON TABLE icpml.candidate_log_settings, icpml.recommendation_candidates TO service_role;
    GRANT EXECUTE ON FUNCTION icpml.prune_candidate_log(timestamptz),
      icpml.evaluate_policy(text, jsonb, timestamptz, timestamptz, double precision, double precision),
      icpml.candidate_log_settings_replace() TO service_role;
  END IF;
END
$$;
GRANT ALL ON TABLE icpml.candidate_log_settings, icpml.recommendation_candidates TO icpml_admin;
GRANT EXECUTE ON FUNCTION icpml.prune_candidate_log(timestamptz),
  icpml.evaluate_policy(text, jsonb, timestamptz, timestamptz, double precision, double precision),
  icpml.candidate_log_settings_replace() TO icpml_admin;
GRANT ALL ON TABLE icpml.candidate_log_settings, icpml.recommendation_candidates TO icpml_jobs;
GRANT EXECUTE ON FUNCTION icpml.prune_candidate_log(timestamptz),
  icpml.evaluate_policy(text, jsonb, timestamptz, timestamptz, double precision, double precision),
  icpml.candidate_log_settings_replace() TO icpml_jobs;
