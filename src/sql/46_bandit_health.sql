-- ---------------------------------------------------------------------------
-- Bandit health: what the log of served recommendations says about the
-- recommender over a window, one row per (metric, scope), with a status
-- where a threshold applies ('ok' or 'warn') and a note saying what to do.
-- Administrative (it reads every user's log): not granted to authenticated.
-- docs/experiments.md lists the metrics and their thresholds.
-- ---------------------------------------------------------------------------

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
