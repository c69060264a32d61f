-- Off-policy evaluation: the sampled candidate log recommend_accounts writes
-- (its marginal propensities checked against hand-computed values), then
-- icpml.evaluate_policy() on a handmade log with known numbers.
\set VERBOSITY default
SET icpml.nthread = 1;
SET TimeZone = 'UTC';
SET client_min_messages = warning;
DROP TABLE IF EXISTS user_interactions, research_runs, sales_users, account_signals CASCADE;
RESET client_min_messages;
\i sql/include/reference_schema.sql
TRUNCATE icpml.recommendations, icpml.bandit_state, icpml.account_feedback, icpml.account_scores,
         icpml.account_candidates, icpml.user_profiles, icpml.recommendation_candidates;

INSERT INTO account_signals (account_id, account_name, industry, engineering_role_count,
                             has_open_engineering_roles, total_open_roles)
SELECT g, 'acct ' || g, (ARRAY['saas', 'fintech', 'retail'])[1 + g % 3], (g * 7) % 30, g % 3 <> 0, (g * 11) % 80
FROM generate_series(1, 60) g;
INSERT INTO sales_users (user_id, display_name)
VALUES ('00000000-0000-0000-0000-000000000001', 'Ada');
SELECT icpml.score_all();

-- off by default: nothing is logged
SELECT sample_rate, retention, thompson_draws FROM icpml.candidate_log_settings;
SELECT count(*) AS listed FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 2,
                                                       policy => 'random', candidates => 3, seed => 1);
SELECT count(*) AS logged_lists FROM icpml.recommendation_candidates;

-- every list: the candidates, the served ids in rank order, random's
-- marginal 1/M at every rank
UPDATE icpml.candidate_log_settings SET sample_rate = 1;
CREATE TEMP TABLE listed AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 2, policy => 'random',
                                       candidates => 3, seed => 2);
SELECT c.policy, c.epsilon, cardinality(c.account_ids) AS candidates, c.served_ids = l.ids AS same_ids,
       c.list_id = l.ids[1] AS list_id, c.propensity, c.examination, c.sources,
       (SELECT array_agg(c.account_ids[s] ORDER BY o) FROM unnest(c.served) WITH ORDINALITY AS u(s, o))
         = l.accounts AS served_accounts
FROM icpml.recommendation_candidates AS c,
     (SELECT array_agg(recommendation_id ORDER BY rank) AS ids, array_agg(account_id ORDER BY rank) AS accounts
      FROM listed) AS l;

-- epsilon-greedy with epsilon 0.5, k = 2 of M = 3: the marginal of the
-- candidate the greedy order (mu, then ICP probability, then id) ranks r,
-- at rank j: (r, j) = (1, 1) 2/3, (2 or 3, 1) 1/6, (1, 2) 1/4, (2, 2) 13/24,
-- (3, 2) 5/24.  Rank 1's equals the logged conditional propensity.  No
-- exploit slots here (below: one).
UPDATE icpml.bandit_settings SET epsilon = 0.5, exploit_slots = 0;
TRUNCATE icpml.recommendation_candidates;
SELECT count(*) AS listed
FROM generate_series(1, 30) AS s,
     LATERAL icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 2, policy => 'epsilon_greedy',
                                      candidates => 3, seed => s);
WITH served AS (
  SELECT c.list_id, u.o AS j, c.propensity[u.o] AS p, c.served_ids[u.o] AS id,
         (SELECT 1 + count(*) FROM generate_series(1, 3) AS i
          WHERE i <> u.s AND (c.mu[i], c.probability[i], -c.account_ids[i])
                             > (c.mu[u.s], c.probability[u.s], -c.account_ids[u.s])) AS r
  FROM icpml.recommendation_candidates AS c, unnest(c.served) WITH ORDINALITY AS u(s, o)
)
SELECT j, r, count(*) > 0 AS seen,
       bool_and(abs(p - CASE WHEN j = 1 THEN CASE WHEN r = 1 THEN 2 / 3.0 ELSE 1 / 6.0 END
                             WHEN r = 1 THEN 1 / 4.0 WHEN r = 2 THEN 13 / 24.0 ELSE 5 / 24.0 END) < 1e-12)
         AS hand_computed,
       bool_and(j > 1 OR abs(p - rec.propensity) < 1e-12) AS rank1_as_logged
FROM served JOIN icpml.recommendations AS rec ON rec.recommendation_id = served.id
GROUP BY j, r ORDER BY j, r;
-- one exploit slot: rank 1 is always the best mu (1), rank 2 an epsilon-mix
-- of the two left: (2, 2) 0.5 + 0.5 / 2 = 0.75, (3, 2) 0.25
UPDATE icpml.bandit_settings SET exploit_slots = 1;
TRUNCATE icpml.recommendation_candidates;
SELECT count(*) AS listed
FROM generate_series(1, 20) AS s,
     LATERAL icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 2, policy => 'epsilon_greedy',
                                      candidates => 3, seed => s);
WITH served AS (
  SELECT c.exploit_slots, u.o AS j, c.propensity[u.o] AS p,
         (SELECT 1 + count(*) FROM generate_series(1, 3) AS i
          WHERE i <> u.s AND (c.mu[i], c.probability[i], -c.account_ids[i])
                             > (c.mu[u.s], c.probability[u.s], -c.account_ids[u.s])) AS r
  FROM icpml.recommendation_candidates AS c, unnest(c.served) WITH ORDINALITY AS u(s, o)
)
SELECT exploit_slots, j, r, count(*) > 0 AS seen,
       bool_and(abs(p - CASE WHEN j = 1 THEN 1 WHEN r = 2 THEN 0.75 ELSE 0.25 END) < 1e-12) AS hand_computed
FROM served GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
UPDATE icpml.bandit_settings SET exploit_slots = DEFAULT;

-- deterministic loggers have no usable propensity; Thompson's is estimated
-- from posterior draws (never 0); every candidate has a posterior width
TRUNCATE icpml.recommendation_candidates;
SELECT count(*) AS listed FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 3, policy => 'linucb',
                                                       candidates => 10, seed => 3);
SELECT count(*) AS listed FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 3, policy => 'thompson',
                                                       candidates => 10, seed => 3);
SELECT policy, propensity IS NULL AS no_propensity, epsilon,
       (SELECT bool_and(p > 0 AND p <= 1) FROM unnest(propensity) AS p) AS in_range,
       (SELECT bool_and(w > 0) FROM unnest(width) AS w) AS widths, cardinality(mu) AS candidates
FROM icpml.recommendation_candidates ORDER BY policy;

-- a sampling rate logs a share of the lists, drawn from the seed
TRUNCATE icpml.recommendation_candidates;
UPDATE icpml.candidate_log_settings SET sample_rate = 0.3;
SELECT count(*) AS listed
FROM generate_series(1, 40) AS s,
     LATERAL icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 1, policy => 'random',
                                      candidates => 3, seed => s);
SELECT count(*) AS logged_of_40 FROM icpml.recommendation_candidates;
\set VERBOSITY terse
UPDATE icpml.candidate_log_settings SET sample_rate = 1.5;
UPDATE icpml.candidate_log_settings SET retention = '-1 day';
\set VERBOSITY default

-- retention: prune_candidate_log() drops what is older
UPDATE icpml.recommendation_candidates SET served_at = served_at - interval '40 days'
WHERE list_id = (SELECT min(list_id) FROM icpml.recommendation_candidates);
SELECT icpml.prune_candidate_log() AS pruned;
SELECT icpml.prune_candidate_log(now() + interval '31 days') AS pruned_the_rest;
SELECT count(*) AS left_over FROM icpml.recommendation_candidates;
-- inside an experiment a list is logged with its experiment and variant,
-- the holdout's as variant 'holdout'
UPDATE icpml.candidate_log_settings SET sample_rate = 1;
SELECT name FROM icpml.start_experiment('ope-x', ARRAY['a', 'b'], policies => ARRAY['random', 'epsilon_greedy'],
                                        holdout => 0.4, holdout_policy => 'random');
INSERT INTO sales_users (user_id, display_name)
SELECT ('00000000-0000-0000-0000-0000000000' || lpad(g::text, 2, '0'))::uuid, 'u' || g FROM generate_series(10, 29) g;
SELECT count(*) > 0 AS listed
FROM sales_users AS u, LATERAL icpml.recommend_accounts(u.user_id, 2, candidates => 3, seed => 1) AS r;
SELECT c.experiment, c.variant, c.policy, count(*) > 0 AS lists,
       bool_and(c.variant = r.variant AND c.experiment = r.experiment) AS as_logged
FROM icpml.recommendation_candidates AS c JOIN icpml.recommendations AS r ON r.recommendation_id = c.list_id
WHERE c.experiment IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2;
SELECT name FROM icpml.stop_experiment('ope-x');
DELETE FROM icpml.experiments;
UPDATE icpml.candidate_log_settings SET sample_rate = DEFAULT;
UPDATE icpml.bandit_settings SET epsilon = DEFAULT;

-- evaluate_policy on a handmade log: 3 candidates (accounts 101, 102, 103:
-- ICP probability 0.9, 0.5, 0.1; mu 0.2, 0.4, 0.1; width 0.1, 0.1, 0.5),
-- lists of 2 served by random (marginal 1/3), examination 1 and 0.5:
--   L1 101, 102 rewards 1, 0      L2 102, 101 rewards 0.5, 0
--   L3 103, 101 rewards 0, 1      L4 101, 103 rewards 0.3, 0.1
-- and two lists that cannot count: L5 a reward pending, L6 served by linucb.
TRUNCATE icpml.recommendations, icpml.recommendation_candidates;
INSERT INTO icpml.recommendations (recommendation_id, user_id, account_id, rank, policy, context, score,
                                   expected_reward, propensity, state_version, status, reward, finalize_seq, served_at)
SELECT 10 * l + j, '00000000-0000-0000-0000-000000000001', a, j, 'random', '{1}', 0, 0, 1 / 3.0, 1,
       CASE WHEN y IS NULL THEN 'pending' WHEN y > 0 THEN 'rewarded' ELSE 'expired' END, y,
       CASE WHEN y IS NOT NULL THEN 10 * l + j END, '2026-03-01 10:00+00'::timestamptz + l * interval '1 hour'
FROM (VALUES (1, 1, 101, 1.0), (1, 2, 102, 0), (2, 1, 102, 0.5), (2, 2, 101, 0), (3, 1, 103, 0), (3, 2, 101, 1),
             (4, 1, 101, 0.3), (4, 2, 103, 0.1), (5, 1, 101, 1), (5, 2, 102, NULL), (6, 1, 101, 1), (6, 2, 102, 0))
     AS v(l, j, a, y);
INSERT INTO icpml.recommendation_candidates (list_id, served_at, user_id, policy, state_version, epsilon,
                                             served_ids, served, propensity, examination, account_ids, sources,
                                             mu, width, probability)
SELECT 10 * l + 1, '2026-03-01 10:00+00'::timestamptz + l * interval '1 hour',
       '00000000-0000-0000-0000-000000000001', CASE WHEN l = 6 THEN 'linucb' ELSE 'random' END, 1,
       CASE WHEN l <> 6 THEN 1 END, ARRAY[10 * l + 1, 10 * l + 2], s,
       CASE WHEN l <> 6 THEN ARRAY[1 / 3.0, 1 / 3.0]::float8[] END, '{1, 0.5}',
       '{101, 102, 103}', '{icp, icp, explore}', '{0.2, 0.4, 0.1}', '{0.1, 0.1, 0.5}', '{0.9, 0.5, 0.1}'
FROM (VALUES (1, '{1, 2}'::int[]), (2, '{2, 1}'), (3, '{3, 1}'), (4, '{1, 3}'), (5, '{1, 2}'), (6, '{1, 2}'))
     AS v(l, s);

-- Target icp lists 101, 102 (weight 3 where the log agrees, else 0):
-- IPS per list 3, 0, 0, 0.9: 0.975, se sqrt(2.0025 / 4) = 0.70755.
-- SNIPS: rank 1 (3 + 0.9) / 6 = 0.65, rank 2 0 / 3: 0.65; its influence
-- per list sum over ranks (w y - R w) / mean w: 0.7, 0, 0, -0.7, se
-- sqrt(0.98 / 3 / 4) = 0.28577.
-- DM per list 1 * 0.2 + 0.5 * 0.4 = 0.4.  DR per list 0.4 + 3 (1 - 0.2)
-- + 3 (0 - 0.2) = 2.2, 0.4, 0.4, 0.4 + 3 (0.3 - 0.2) = 0.7: 0.925.
-- Logged per list 1, 0.5, 1, 0.4: 0.725.  ESS 9^2 / 27 = 3.
SELECT estimator, round(value::numeric, 6) AS value, round(std_error::numeric, 5) AS se,
       round(ci_low::numeric, 4) AS ci_low, round(ci_high::numeric, 4) AS ci_high, lists, impressions,
       round(effective_sample_size::numeric, 4) AS ess, clipped, skipped
FROM icpml.evaluate_policy('icp', since => '2026-03-01', until => '2026-03-02');
-- the IPS interval by hand: 0.975 -+ 1.959964 * 0.707549
SELECT round((0.975 - 1.959964 * sqrt(2.0025 / 4))::numeric, 4) AS ci_low,
       round((0.975 + 1.959964 * sqrt(2.0025 / 4))::numeric, 4) AS ci_high;
-- clipping at 2: IPS (2 * 1 + 2 * 0.3) / 4 = 0.65, three weights clipped
SELECT estimator, round(value::numeric, 6) AS value, clipped
FROM icpml.evaluate_policy('icp', since => '2026-03-01', until => '2026-03-02', clip => 2)
WHERE estimator IN ('ips', 'dr');
-- epsilon-greedy (epsilon 0.5) over mu: greedy order 102, 101, 103; its
-- marginals times 3: L1 0.5 * 1 + 0.75 * 0, L2 2 * 0.5 + 1.625 * 0,
-- L3 0.5 * 0 + 1.625 * 1, L4 0.5 * 0.3 + 0.625 * 0.1: IPS 3.3375 / 4 = 0.834375
SELECT estimator, round(value::numeric, 6) AS value
FROM icpml.evaluate_policy('epsilon_greedy', '{"epsilon": 0.5, "exploit_slots": 0}', '2026-03-01', '2026-03-02')
WHERE estimator = 'ips';
-- random on its own log: every weight 1, IPS = the logged average
SELECT estimator, round(value::numeric, 6) AS value, round(effective_sample_size::numeric, 4) AS ess
FROM icpml.evaluate_policy('random', since => '2026-03-01', until => '2026-03-02')
WHERE estimator IN ('ips', 'snips', 'logged');
-- linucb with alpha 1 ranks by mu + width: 103 (0.6), 102 (0.5), 101 (0.3):
-- only L3's rank 1 agrees (weight 3, reward 0): IPS 0.  As served, with
-- bandit_settings.exploit_slots (2) ranks by mu first, it is greedy (102,
-- 101: L2 agrees twice, 3 * 0.5, L3 at rank 2, 3 * 1): IPS 4.5 / 4 = 1.125
SELECT p.params, e.estimator, round(e.value::numeric, 6) AS value, e.unsupported
FROM unnest(ARRAY['{"alpha": 1, "exploit_slots": 0}', '{"alpha": 1}']::jsonb[]) AS p(params),
     icpml.evaluate_policy('linucb', p.params, '2026-03-01', '2026-03-02') AS e
WHERE e.estimator = 'ips';
SELECT estimator, round(value::numeric, 6) AS value FROM icpml.evaluate_policy('greedy', since => '2026-03-01', until => '2026-03-02')
WHERE estimator = 'ips';
-- a logger that never explores rank 1 (exploit_slots 1: its best mu, 102,
-- always there) cannot evaluate icp (101 first): rank 1 and rank 2 (102,
-- which this logger never lists below rank 1) are out of its reach, 2 per
-- list; greedy stays within it
UPDATE icpml.recommendation_candidates SET exploit_slots = 1;
SELECT p.policy, e.unsupported
FROM unnest(ARRAY['icp', 'greedy']) AS p(policy),
     icpml.evaluate_policy(p.policy, since => '2026-03-01', until => '2026-03-02') AS e
WHERE e.estimator = 'ips';
UPDATE icpml.recommendation_candidates SET exploit_slots = 0;
-- an empty window
SELECT estimator, value, lists FROM icpml.evaluate_policy('icp', since => '2020-01-01', until => '2020-01-02')
WHERE estimator = 'ips';

-- bad input
\set VERBOSITY terse
SELECT * FROM icpml.evaluate_policy('bogus');
SELECT * FROM icpml.evaluate_policy('thompson');
SELECT * FROM icpml.evaluate_policy(NULL);
SELECT * FROM icpml.evaluate_policy('icp', '{"alpha": 1}');
SELECT * FROM icpml.evaluate_policy('linucb', '{"beta": 1}');
SELECT * FROM icpml.evaluate_policy('greedy', '{"epsilon": 2}');
SELECT * FROM icpml.evaluate_policy('greedy', '{"epsilon": "a lot"}');
SELECT * FROM icpml.evaluate_policy('greedy', '[1]');
SELECT * FROM icpml.evaluate_policy('greedy', '{"exploit_slots": 1.5}');
SELECT * FROM icpml.evaluate_policy('icp', clip => 0);
SELECT * FROM icpml.evaluate_policy('icp', confidence => 1);
SELECT * FROM icpml.evaluate_policy('icp', since => '2026-03-02', until => '2026-03-01');
\set VERBOSITY default

-- administrative only
SELECT has_function_privilege('public', 'icpml.evaluate_policy(text, jsonb, timestamptz, timestamptz, float8, float8)',
                              'EXECUTE') AS public_may_evaluate,
       has_table_privilege('public', 'icpml.recommendation_candidates', 'SELECT') AS public_may_read;

SET client_min_messages = warning;
TRUNCATE icpml.recommendations, icpml.bandit_state, icpml.account_feedback, icpml.account_scores,
         icpml.account_candidates, icpml.user_profiles, icpml.recommendation_candidates;
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
RESET client_min_messages;
