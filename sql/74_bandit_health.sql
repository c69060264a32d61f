-- Bandit health on a handmade log with known numbers: served mix,
-- exploration, propensity effective sample size, reward by source and by
-- rank, experiment and exploration splits, reward trend, stale feedback.
\set VERBOSITY default
SET TimeZone = 'UTC';
TRUNCATE icpml.recommendations, icpml.bandit_state, icpml.account_feedback;
DELETE FROM icpml.experiments;
SELECT name FROM icpml.start_experiment('hx', ARRAY['linucb', 'thompson']);
SELECT name FROM icpml.stop_experiment('hx');

-- user a: a LinUCB list of 3 (rank 2 listed above rank 3, which the model
-- expects to earn more: one explored row of 3; bonus 0.1 + 0.25 + 0.05);
-- user b: epsilon-greedy, rank 1 greedy (propensity 0.9 + 0.1/1000), rank 2
-- a random pick (0.1/999) the model prefers; user c: Thompson, pending;
-- users e and f: one LinUCB row each, expired; user d: pending since
-- before the reward window (stale).  a, e and f are in variant linucb of
-- experiment hx, c in thompson.  Every context has ICP probability 0.8.
INSERT INTO icpml.recommendations (user_id, account_id, rank, policy, context, score, expected_reward,
                                   propensity, state_version, status, reward, served_at, finalized_at,
                                   finalize_seq, experiment, variant, source)
SELECT ('00000000-0000-0000-0000-00000000000' || u)::uuid, 10 + rank, rank, policy, '{1, 0.8}', score, mu, p, 1,
       CASE WHEN r IS NULL THEN 'pending' WHEN r > 0 THEN 'rewarded' ELSE 'expired' END, r,
       t::timestamptz, CASE WHEN r IS NOT NULL THEN t::timestamptz + interval '1 day' END,
       CASE WHEN r IS NOT NULL THEN nextval('icpml.recommendations_finalize_seq') END,
       CASE WHEN x IS NOT NULL THEN 'hx' END, x, src
FROM (VALUES ('a', 1, 'linucb', 0.6, 0.5, 1.0, 'icp', 1.0, '2026-03-02 10:00+00', 'linucb'),
             ('a', 2, 'linucb', 0.55, 0.3, 1.0, 'affinity', 0.0, '2026-03-02 10:00+00', 'linucb'),
             ('a', 3, 'linucb', 0.45, 0.4, 1.0, NULL, 0.5, '2026-03-02 10:00+00', 'linucb'),
             ('b', 1, 'epsilon_greedy', 0.2, 0.2, 0.9001, 'icp', 0.0, '2026-03-03 10:00+00', NULL),
             ('b', 2, 'epsilon_greedy', 0.3, 0.3, 0.1 / 999, 'explore', 1.0, '2026-03-03 10:00+00', NULL),
             ('c', 1, 'thompson', 0.35, 0.3, 0.5, 'icp', NULL, '2026-03-04 10:00+00', 'thompson'),
             ('c', 2, 'thompson', 0.3, 0.1, 0.25, 'affinity', NULL, '2026-03-04 10:00+00', 'thompson'),
             ('e', 1, 'linucb', 0.2, 0.1, 1.0, 'icp', 0.0, '2026-03-05 10:00+00', 'linucb'),
             ('f', 1, 'linucb', 0.2, 0.1, 1.0, 'icp', 0.0, '2026-03-05 10:00+00', 'linucb'),
             ('d', 1, 'linucb', 0.2, 0.1, 1.0, 'icp', NULL, '2026-02-20 10:00+00', NULL))
     AS v(u, rank, policy, score, mu, p, src, r, t, x);

-- Expected (hand-computed): served linucb 5/9, epsilon_greedy 2/9,
-- thompson 2/9.  Exploration: linucb 1/5 (bonus 0.6 / 2.0 = 0.3),
-- epsilon_greedy 1/2, thompson 0.  Propensity ESS / n: linucb 1,
-- epsilon_greedy (1.111 + 9990)^2 / (1.234 + 9990^2) / 2 = 0.5001, thompson
-- (2 + 4)^2 / (4 + 16) / 2 = 0.9.  Reward by source (7 finalized): icp
-- 1, 0, 0, 0 -> 0.25 +- 1.96 * 0.5 / 2, affinity 0, explore 1, not logged
-- 0.5.  By rank: 0.25 (4), 0.5 (2), 0.5 (1); examination assumed 1,
-- 1 / log2(3) = 0.631, 0.5.  Experiment hx: 3 users against 1, chi-square
-- 1, p = 0.3173.  Epsilon split: 1 random pick of 2, z = 0.8 / 0.424, p =
-- 0.059.  Days: 03-02 0.5 (3), 03-03 0.5 (2), 03-05 0 (2).  Slope: least
-- squares of the 7 rewards on days since the start of the window (1.417,
-- 2.417, 4.417): -0.1711 per day, se 0.1384.  One stale pending row.
SELECT metric, scope, round(value::numeric, 4) AS value, impressions,
       round(ci_low::numeric, 4) AS ci_low, round(ci_high::numeric, 4) AS ci_high, status, note
FROM icpml.bandit_health(since => '2026-03-01 00:00+00', until => '2026-03-08 00:00+00');

-- thresholds: 600 LinUCB rows ranked by expected reward (no exploration),
-- Thompson sampling whose 150 propensities are all 1 (collapsed), 150
-- epsilon-greedy rows one of which has propensity 1e-6 (ESS about 1 of
-- 150) and 1 random pick in 150 (epsilon is 0.1: a broken split), and a
-- reward that falls from 1 on the first day to 0 on the sixth
TRUNCATE icpml.recommendations;
INSERT INTO icpml.recommendations (user_id, account_id, rank, policy, context, score, expected_reward,
                                   propensity, state_version, status, reward, served_at, finalized_at,
                                   finalize_seq)
SELECT md5(g::text)::uuid, 1 + g % 2, 1 + g % 2, pol, '{1, 0.5}', 0.5 - 0.1 * (g % 2), 0.5 - 0.1 * (g % 2),
       CASE WHEN pol = 'epsilon_greedy' AND g = 0 THEN 1e-6 WHEN pol = 'epsilon_greedy' THEN 0.9 ELSE 1 END, 1,
       CASE WHEN g / 100 = 0 THEN 'rewarded' ELSE 'expired' END, CASE WHEN g / 100 = 0 THEN 1 ELSE 0 END,
       '2026-03-01 12:00+00'::timestamptz + (g / 100) * interval '1 day', '2026-03-07 12:00+00',
       nextval('icpml.recommendations_finalize_seq')
FROM (SELECT 'linucb' AS pol, g FROM generate_series(0, 599) g
      UNION ALL SELECT 'thompson', g FROM generate_series(0, 149) g
      UNION ALL SELECT 'epsilon_greedy', g FROM generate_series(0, 149) g) AS x
ORDER BY pol, g;
SELECT metric, scope, round(value::numeric, 4) AS value, impressions, status
FROM icpml.bandit_health(since => '2026-03-01 00:00+00', until => '2026-03-08 00:00+00')
WHERE metric IN ('exploration', 'propensity_ess', 'exploration_split', 'reward_slope', 'stale_pending');

-- a window with nothing in it: only the stale check (nothing pending
-- before it)
SELECT metric, scope, value, status
FROM icpml.bandit_health(since => '2020-01-01 00:00+00', until => '2020-01-08 00:00+00');
SELECT * FROM icpml.bandit_health(since => '2026-03-08', until => '2026-03-01');
-- defaults: the last 7 days (nothing served then, the stale row counts)
SELECT metric, value, status FROM icpml.bandit_health();

TRUNCATE icpml.recommendations;
DELETE FROM icpml.experiments;
RESET TimeZone;
