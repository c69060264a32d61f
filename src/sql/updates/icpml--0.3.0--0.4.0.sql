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
    WHEN NOT (tau2 > 0 AND variance >= 0 AND alpha > 0 AND alpha < 1) THEN NULL
    WHEN variance = 0 THEN 0::double precision
    ELSE pg_catalog.sqrt(variance * (variance + tau2) / tau2
                         * (2 * pg_catalog.ln(1 / alpha) + pg_catalog.ln((variance + tau2) / variance)))
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
    WHEN NOT (tau2 > 0 AND variance > 0) THEN NULL
    ELSE pg_catalog.exp(-GREATEST(0.5 * pg_catalog.ln(variance / (variance + tau2))
                                  + estimate * estimate * tau2 / (2 * variance * (variance + tau2)), 0))
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
  SELECT e.started_at INTO started FROM icpml.experiments AS e WHERE e.name = experiment_results.name;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'experiment "%" does not exist', experiment_results.name
      USING ERRCODE = 'undefined_object',
            HINT = 'SELECT name, status FROM icpml.experiments lists them.';
  END IF;
  IF experiment_results.expected_lift IS NULL
     OR NOT (experiment_results.expected_lift > 0 AND experiment_results.expected_lift < 'Infinity') THEN
    RAISE EXCEPTION 'expected_lift must be a positive number, not %', experiment_results.expected_lift
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'The relative lift the sequential test is tuned for, e.g. 0.1 for 10 %.';
  END IF;
  IF experiment_results.pre_period IS NULL OR experiment_results.pre_period <= interval '0' THEN
    RAISE EXCEPTION 'pre_period must be a positive interval, not %', experiment_results.pre_period
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'How far before the start the CUPED covariate looks, e.g. ''28 days''.';
  END IF;
  RETURN QUERY
  WITH v AS (
    SELECT u.variant, u.weight, u.ord
    FROM icpml.experiments AS e,
         ROWS FROM (pg_catalog.unnest(e.variants), pg_catalog.unnest(e.weights)) WITH ORDINALITY AS u(variant, weight, ord)
    WHERE e.name = experiment_results.name
  ), served AS (
    SELECT r.variant, r.user_id, r.reward,
           r.status <> 'pending' AND (experiment_results.as_of IS NULL
                                      OR r.finalized_at <= experiment_results.as_of) AS fin
    FROM icpml.recommendations AS r
    WHERE r.experiment = experiment_results.name
      AND (experiment_results.as_of IS NULL OR r.served_at <= experiment_results.as_of)
  ), per_user AS (
    SELECT w.variant, w.user_id, pg_catalog.count(*) AS shown,
           pg_catalog.count(*) FILTER (WHERE w.fin) AS n,
           COALESCE(pg_catalog.sum(w.reward) FILTER (WHERE w.fin), 0) AS rw
    FROM served AS w
    GROUP BY w.variant, w.user_id
  ), agg AS (
    SELECT p.variant, pg_catalog.count(*) AS users, pg_catalog.sum(p.shown)::bigint AS impressions,
           pg_catalog.sum(p.n)::bigint AS finalized, pg_catalog.sum(p.rw) AS reward,
           pg_catalog.avg(p.n) FILTER (WHERE p.n > 0) AS mean_n
    FROM per_user AS p GROUP BY p.variant
  ), pre AS (
    -- the CUPED covariate: each user's reward per impression served in the
    -- pre-period, as known when the experiment started
    SELECT q.user_id,
           COALESCE(pg_catalog.sum(q.reward) FILTER (WHERE q.status <> 'pending' AND q.finalized_at < started), 0)
             / pg_catalog.count(*) AS x
    FROM icpml.recommendations AS q
    WHERE q.user_id IN (SELECT p.user_id FROM per_user AS p)
      AND q.served_at >= started - experiment_results.pre_period AND q.served_at < started
    GROUP BY q.user_id
  ), lin AS (
    SELECT p.variant, (p.rw - a.reward / a.finalized * p.n) / a.mean_n AS y, pre.x AS x_raw
    FROM per_user AS p
    JOIN agg AS a ON a.variant = p.variant
    LEFT JOIN pre ON pre.user_id = p.user_id
    WHERE p.n > 0
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
    SELECT pg_catalog.sum(s.cov_yx * (s.k - 1)) / NULLIF(pg_catalog.sum(s.var_x * (s.k - 1)), 0) AS theta,
           (SELECT pg_catalog.avg(l.x) FROM lin_x AS l) AS mean_x_all,
           (SELECT pg_catalog.sum(a.reward) / NULLIF(pg_catalog.sum(a.finalized), 0) FROM agg AS a)
             * experiment_results.expected_lift AS tau
    FROM vstat AS s
  ), m AS (
    SELECT v.variant, v.weight, v.ord, COALESCE(a.users, 0) AS users,
           COALESCE(a.impressions, 0) AS impressions, COALESCE(a.finalized, 0) AS finalized,
           COALESCE(a.reward, 0) AS reward,
           CASE WHEN a.finalized > 0 THEN a.reward / a.finalized END AS rate,
           CASE WHEN s.k > 1 THEN s.var_y / s.k END AS var_rate,
           CASE WHEN s.k > 1 AND pl.theta IS NOT NULL THEN
             a.reward / a.finalized - pl.theta * (s.mean_x - pl.mean_x_all) END AS cuped_rate,
           CASE WHEN s.k > 1 AND pl.theta IS NOT NULL THEN
             GREATEST(s.var_y - 2 * pl.theta * s.cov_yx + pl.theta * pl.theta * s.var_x, 0) / s.k END AS var_cuped,
           COALESCE(s.kx, 0) AS kx,
           pl.tau * pl.tau AS tau2
    FROM v
    LEFT JOIN agg AS a ON a.variant = v.variant
    LEFT JOIN vstat AS s ON s.variant = v.variant
    CROSS JOIN pooled AS pl
  ), srm AS (
    SELECT CASE WHEN t.total > 0 THEN
             icpml.chi_square_sf(pg_catalog.sum((m.users - t.total * m.weight / t.wsum) ^ 2
                                                / (NULLIF(t.total, 0) * m.weight / t.wsum)),
                                 pg_catalog.count(*)::integer - 1) END AS p
    FROM m, (SELECT pg_catalog.sum(m2.users)::double precision AS total,
                    pg_catalog.sum(m2.weight) AS wsum FROM m AS m2) AS t
    GROUP BY t.total
  ), cmp AS (
    SELECT m.*, c.rate AS c_rate,
           CASE WHEN m.ord > 1 THEN m.rate - c.rate END AS diff,
           CASE WHEN m.ord > 1 THEN m.var_rate + c.var_rate END AS var_diff,
           CASE WHEN m.ord > 1 THEN m.cuped_rate - c.cuped_rate END AS cuped_diff,
           CASE WHEN m.ord > 1 THEN m.var_cuped + c.var_cuped END AS var_cuped_diff
    FROM m CROSS JOIN (SELECT m3.rate, m3.var_rate, m3.cuped_rate, m3.var_cuped FROM m AS m3 WHERE m3.ord = 1) AS c
  )
  SELECT x.variant, x.weight, x.users, x.impressions, x.finalized, x.reward, x.rate,
         x.rate - 1.959963984540054 * pg_catalog.sqrt(x.var_rate),
         x.rate + 1.959963984540054 * pg_catalog.sqrt(x.var_rate),
         CASE WHEN x.ord > 1 AND x.c_rate > 0 THEN x.rate / x.c_rate - 1 END,
         CASE WHEN x.var_diff > 0 THEN
           2 * icpml.normal_sf(pg_catalog.abs(x.diff) / pg_catalog.sqrt(x.var_diff)) END,
         srm.p,
         x.rate - icpml.sequential_halfwidth(x.var_rate, x.tau2),
         x.rate + icpml.sequential_halfwidth(x.var_rate, x.tau2),
         icpml.msprt_p_value(x.diff, x.var_diff, x.tau2),
         x.cuped_rate,
         x.cuped_rate - 1.959963984540054 * pg_catalog.sqrt(x.var_cuped),
         x.cuped_rate + 1.959963984540054 * pg_catalog.sqrt(x.var_cuped),
         CASE WHEN x.var_cuped_diff > 0 THEN
           2 * icpml.normal_sf(pg_catalog.abs(x.cuped_diff) / pg_catalog.sqrt(x.var_cuped_diff)) END,
         icpml.msprt_p_value(x.cuped_diff, x.var_cuped_diff, x.tau2),
         CASE WHEN x.ord > 1 AND x.var_diff > 0 THEN 1 - x.var_cuped_diff / x.var_diff
              WHEN x.ord = 1 AND x.var_rate > 0 THEN 1 - x.var_cuped / x.var_rate END,
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
  t0 timestamptz := COALESCE(bandit_health.since, t1 - interval '7 days');
  cfg icpml.bandit_settings;
BEGIN
  IF t0 >= t1 THEN
    RAISE EXCEPTION 'the window is empty: since % is not before until %', t0, t1
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Omit both for the last 7 days.';
  END IF;
  SELECT * INTO cfg FROM icpml.bandit_settings AS s;

  -- served: impressions and share per policy
  RETURN QUERY
  SELECT 'served'::text, r.policy, (pg_catalog.count(*)::double precision
           / pg_catalog.sum(pg_catalog.count(*)) OVER ())::double precision,
         pg_catalog.count(*), NULL::double precision, NULL::double precision, NULL::text,
         pg_catalog.format('%s finalized, %s pending, %s users', pg_catalog.count(*) FILTER (WHERE r.status <> 'pending'),
                           pg_catalog.count(*) FILTER (WHERE r.status = 'pending'),
                           pg_catalog.count(DISTINCT r.user_id))
  FROM icpml.recommendations AS r
  WHERE r.served_at >= t0 AND r.served_at < t1
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
    WHERE r.served_at >= t0 AND r.served_at < t1
  )
  SELECT 'exploration'::text, l.policy,
         pg_catalog.avg(CASE WHEN l.best_below > l.expected_reward THEN 1 ELSE 0 END)::double precision,
         pg_catalog.count(*), NULL::double precision, NULL::double precision,
         CASE WHEN l.policy IN ('linucb', 'thompson', 'epsilon_greedy') AND pg_catalog.count(*) >= 500 THEN
           CASE WHEN pg_catalog.avg(CASE WHEN l.best_below > l.expected_reward THEN 1 ELSE 0 END) < 0.01
                THEN 'warn' ELSE 'ok' END END,
         CASE WHEN l.policy IN ('linucb', 'thompson', 'epsilon_greedy') AND pg_catalog.count(*) >= 500
                   AND pg_catalog.avg(CASE WHEN l.best_below > l.expected_reward THEN 1 ELSE 0 END) < 0.01
              THEN 'the policy ranks by expected reward alone: it has stopped exploring (raise alpha, v or epsilon)'
              WHEN l.policy = 'linucb' THEN
                pg_catalog.format('uncertainty bonus: %s of the ranking value',
                                  pg_catalog.round((pg_catalog.sum(l.score - l.expected_reward)
                                                    / NULLIF(pg_catalog.sum(pg_catalog.abs(l.score)), 0))::numeric, 3))
              WHEN l.policy IN ('icp', 'random') THEN 'this policy does not rank by the model''s expected reward'
              ELSE 'share of listed items ranked above an item the model expects to earn more' END
  FROM lists AS l
  GROUP BY l.policy ORDER BY l.policy;

  -- propensities: effective sample size of the inverse-propensity weights
  -- (sum w)^2 / sum w^2 as a share of the impressions, and the share logged
  -- with propensity >= 0.99 (deterministic choices)
  RETURN QUERY
  SELECT 'propensity_ess'::text, r.policy,
         pg_catalog.sum(1 / r.propensity) ^ 2 / pg_catalog.sum(1 / (r.propensity * r.propensity))
           / pg_catalog.count(*),
         pg_catalog.count(*), NULL::double precision, NULL::double precision,
         CASE WHEN pg_catalog.count(*) >= 100 THEN
           CASE WHEN pg_catalog.sum(1 / r.propensity) ^ 2 / pg_catalog.sum(1 / (r.propensity * r.propensity))
                       / pg_catalog.count(*) < 0.1
                     OR (r.policy IN ('thompson', 'epsilon_greedy')
                         AND pg_catalog.avg(CASE WHEN r.propensity >= 0.99 THEN 1 ELSE 0 END) > 0.95)
                THEN 'warn' ELSE 'ok' END END,
         pg_catalog.format('min propensity %s; %s of rows deterministic (propensity >= 0.99)%s',
                           pg_catalog.round(pg_catalog.min(r.propensity)::numeric, 4),
                           pg_catalog.round(pg_catalog.avg(CASE WHEN r.propensity >= 0.99 THEN 1 ELSE 0 END), 3),
                           CASE WHEN r.policy IN ('linucb', 'greedy', 'icp') THEN
                             ': a deterministic policy; evaluating other policies off-policy needs an exploration mix'
                                WHEN r.policy IN ('thompson', 'epsilon_greedy')
                                     AND pg_catalog.avg(CASE WHEN r.propensity >= 0.99 THEN 1 ELSE 0 END) > 0.95 THEN
                             ': propensities collapsed, the policy hardly randomises any more'
                                ELSE '' END)
  FROM icpml.recommendations AS r
  WHERE r.served_at >= t0 AND r.served_at < t1
  GROUP BY r.policy ORDER BY r.policy;

  -- reward per finalized impression by retrieval source and by rank (a
  -- rough 95 % interval: impressions as units)
  RETURN QUERY
  SELECT 'reward_by_source'::text, COALESCE(r.source, '(not logged)'),
         pg_catalog.avg(r.reward), pg_catalog.count(*),
         pg_catalog.avg(r.reward) - 1.959963984540054 * pg_catalog.sqrt(pg_catalog.var_samp(r.reward) / pg_catalog.count(*)),
         pg_catalog.avg(r.reward) + 1.959963984540054 * pg_catalog.sqrt(pg_catalog.var_samp(r.reward) / pg_catalog.count(*)),
         NULL::text,
         pg_catalog.format('%s of finalized impressions', pg_catalog.round(pg_catalog.count(*)::numeric
                                                                            / pg_catalog.sum(pg_catalog.count(*)) OVER (), 3))
  FROM icpml.recommendations AS r
  WHERE r.served_at >= t0 AND r.served_at < t1 AND r.status <> 'pending'
  GROUP BY r.source ORDER BY r.source NULLS LAST;

  RETURN QUERY
  WITH by_rank AS (
    SELECT r.rank, pg_catalog.avg(r.reward) AS rate, pg_catalog.count(*) AS n,
           pg_catalog.var_samp(r.reward) AS var
    FROM icpml.recommendations AS r
    WHERE r.served_at >= t0 AND r.served_at < t1 AND r.status <> 'pending'
    GROUP BY r.rank
  )
  SELECT 'reward_by_rank'::text, b.rank::text, b.rate, b.n,
         b.rate - 1.959963984540054 * pg_catalog.sqrt(b.var / b.n),
         b.rate + 1.959963984540054 * pg_catalog.sqrt(b.var / b.n),
         NULL::text,
         pg_catalog.format('%s of rank 1''s rate; the model assumes rank %s is examined %s as often',
                           COALESCE(pg_catalog.round((b.rate / NULLIF(f.rate, 0))::numeric, 3)::text, 'n/a'), b.rank,
                           pg_catalog.round(((1 / pg_catalog.log(2::numeric, (b.rank + 1)::numeric))::double precision
                                             ^ cfg.position_bias)::numeric, 3))
  FROM by_rank AS b LEFT JOIN by_rank AS f ON f.rank = 1
  ORDER BY b.rank;

  -- splits that should follow a design: each experiment's users against its
  -- weights (chi-square), and epsilon-greedy's random picks against epsilon
  -- (a random pick other than the greedy item is logged with propensity
  -- epsilon / remaining < 1 - epsilon; its expected share is about epsilon)
  RETURN QUERY
  WITH u AS (
    SELECT r.experiment, r.variant, pg_catalog.count(DISTINCT r.user_id) AS users
    FROM icpml.recommendations AS r
    WHERE r.served_at >= t0 AND r.served_at < t1 AND r.experiment IS NOT NULL
    GROUP BY r.experiment, r.variant
  ), d AS (
    SELECT e.name, x.variant, x.weight / pg_catalog.sum(x.weight) OVER (PARTITION BY e.name) AS share,
           COALESCE(u.users, 0) AS users
    FROM icpml.experiments AS e
    CROSS JOIN LATERAL ROWS FROM (pg_catalog.unnest(e.variants), pg_catalog.unnest(e.weights)) AS x(variant, weight)
    LEFT JOIN u ON u.experiment = e.name AND u.variant = x.variant
    WHERE e.name IN (SELECT u2.experiment FROM u AS u2)
  ), d2 AS (
    SELECT d.*, pg_catalog.sum(d.users) OVER (PARTITION BY d.name) * d.share AS expected
    FROM d
  ), t AS (
    SELECT d2.name, pg_catalog.sum(d2.users) AS total, pg_catalog.count(*) AS k,
           pg_catalog.sum((d2.users - d2.expected) ^ 2 / d2.expected) AS chi2
    FROM d2 GROUP BY d2.name
  )
  SELECT 'split_srm'::text, 'experiment ' || t.name,
         icpml.chi_square_sf(t.chi2, t.k::integer - 1), t.total::bigint,
         NULL::double precision, NULL::double precision,
         CASE WHEN icpml.chi_square_sf(t.chi2, t.k::integer - 1) < 0.001 THEN 'warn' ELSE 'ok' END,
         CASE WHEN icpml.chi_square_sf(t.chi2, t.k::integer - 1) < 0.001
              THEN 'users per variant do not match the weights: check assignment and callers passing policy'
              ELSE 'users per variant match the weights (p-value of the chi-square test)' END
  FROM t ORDER BY t.name;

  RETURN QUERY
  WITH g AS (
    SELECT pg_catalog.count(*) AS n,
           pg_catalog.count(*) FILTER (WHERE r.propensity < 1 - cfg.epsilon) AS random_picks
    FROM icpml.recommendations AS r
    WHERE r.served_at >= t0 AND r.served_at < t1 AND r.policy = 'epsilon_greedy'
  )
  SELECT 'exploration_split'::text, 'epsilon_greedy'::text,
         g.random_picks::double precision / g.n, g.n, NULL::double precision, NULL::double precision,
         CASE WHEN cfg.epsilon > 0 AND cfg.epsilon < 0.5
                   AND 2 * icpml.normal_sf(pg_catalog.abs(g.random_picks - g.n * cfg.epsilon)
                                           / pg_catalog.sqrt(g.n * cfg.epsilon * (1 - cfg.epsilon))) < 0.001
              THEN 'warn' WHEN cfg.epsilon > 0 AND cfg.epsilon < 0.5 THEN 'ok' END,
         pg_catalog.format('share of random picks; epsilon is %s (a random pick of the greedy item counts as greedy)',
                           cfg.epsilon)
  FROM g WHERE g.n > 0;

  -- reward trend: reward per finalized impression by day served, and the
  -- least-squares slope per day over the window (weighted by impressions)
  RETURN QUERY
  WITH day AS (
    SELECT pg_catalog.date_trunc('day', r.served_at) AS d, pg_catalog.avg(r.reward) AS rate,
           pg_catalog.count(*) AS n, pg_catalog.avg(r.context[2]) AS icp
    FROM icpml.recommendations AS r
    WHERE r.served_at >= t0 AND r.served_at < t1 AND r.status <> 'pending'
    GROUP BY 1
  )
  SELECT 'reward_trend'::text, pg_catalog.to_char(day.d, 'YYYY-MM-DD'), day.rate, day.n,
         NULL::double precision, NULL::double precision, NULL::text,
         pg_catalog.format('mean ICP probability served %s', pg_catalog.round(day.icp::numeric, 3))
  FROM day ORDER BY day.d;

  RETURN QUERY
  WITH pts AS (
    SELECT pg_catalog.date_part('epoch', r.served_at - t0) / 86400 AS x, r.reward AS y
    FROM icpml.recommendations AS r
    WHERE r.served_at >= t0 AND r.served_at < t1 AND r.status <> 'pending'
  ), fit AS (
    SELECT pg_catalog.regr_slope(p.y, p.x) AS slope, pg_catalog.regr_count(p.y, p.x) AS n,
           pg_catalog.regr_sxx(p.y, p.x) AS sxx, pg_catalog.regr_syy(p.y, p.x) AS syy,
           pg_catalog.regr_sxy(p.y, p.x) AS sxy, pg_catalog.avg(p.y) AS mean_y,
           pg_catalog.max(p.x) - pg_catalog.min(p.x) AS span
    FROM pts AS p
  ), se AS (
    SELECT f.*, CASE WHEN f.n > 2 AND f.sxx > 0 AND f.span >= 2 THEN
                  pg_catalog.sqrt(GREATEST(f.syy - f.sxy * f.sxy / f.sxx, 0) / (f.n - 2) / f.sxx) END AS se
    FROM fit AS f
  )
  SELECT 'reward_slope'::text, 'per day'::text, CASE WHEN s.span >= 2 THEN s.slope END, s.n,
         s.slope - 1.959963984540054 * s.se, s.slope + 1.959963984540054 * s.se,
         CASE WHEN s.se IS NOT NULL THEN
           CASE WHEN s.slope + 1.959963984540054 * s.se < 0 THEN 'warn' ELSE 'ok' END END,
         CASE WHEN s.span < 2 THEN 'needs rows served over at least two days'
              WHEN s.se IS NOT NULL AND s.slope + 1.959963984540054 * s.se < 0 THEN
           pg_catalog.format('reward per impression is falling (mean %s): check drift, the vocabulary and the ICP model',
                             pg_catalog.round(s.mean_y::numeric, 4))
              ELSE pg_catalog.format('change of reward per impression per day (mean %s)',
                                     pg_catalog.round(s.mean_y::numeric, 4)) END
  FROM se AS s WHERE s.n > 0;

  -- feedback that nobody finalizes: impressions older than the reward
  -- window still pending (process_feedback is not scheduled)
  RETURN QUERY
  SELECT 'stale_pending'::text, 'all time'::text, pg_catalog.count(*)::double precision, pg_catalog.count(*),
         NULL::double precision, NULL::double precision,
         CASE WHEN pg_catalog.count(*) > 0 THEN 'warn' ELSE 'ok' END,
         CASE WHEN pg_catalog.count(*) > 0 THEN
           'impressions past the reward window still pending: schedule SELECT icpml.process_feedback()'
              ELSE 'every impression past the reward window is finalized' END
  FROM icpml.recommendations AS r
  WHERE r.status = 'pending' AND r.served_at < t1 - cfg.reward_window;
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
