-- A/B experiments between recommendation policies: starting and stopping,
-- bad input, the hashed assignment of users, what recommend_accounts serves
-- and logs while one runs, and the per-variant results (confidence
-- intervals, p-values, sample-ratio check) on a log with known numbers.
\set VERBOSITY default
SET icpml.nthread = 1;
\i sql/include/reference_schema.sql
TRUNCATE icpml.recommendations, icpml.bandit_state, icpml.account_feedback;
DELETE FROM icpml.experiments;

INSERT INTO account_signals (account_id, account_name, industry, engineering_role_count,
                             has_open_engineering_roles, total_open_roles, has_engineering_blog)
SELECT g, 'acct ' || g, (ARRAY['saas', 'fintech'])[1 + g % 2], (g * 7) % 30, g % 3 <> 0,
       (g * 11) % 80, g % 2 = 0
FROM generate_series(1, 40) g
ON CONFLICT (account_id) DO NOTHING;
SELECT icpml.score_all() > 0 AS scored;

-- bad input: clear errors, nothing written
SELECT * FROM icpml.start_experiment('Bad Name', ARRAY['linucb', 'thompson']);
SELECT * FROM icpml.start_experiment('e1', ARRAY['linucb']);
SELECT * FROM icpml.start_experiment('e1', ARRAY['linucb', 'bandit']);
SELECT * FROM icpml.start_experiment('e1', ARRAY['linucb', 'linucb']);
SELECT * FROM icpml.start_experiment('e1', ARRAY['linucb', 'thompson'], weights => ARRAY[1, 0]);
SELECT * FROM icpml.start_experiment('e1', ARRAY['linucb', 'thompson'], weights => ARRAY[1, 2, 3]);
SELECT * FROM icpml.start_experiment('e1', ARRAY['linucb', 'thompson'], weights => ARRAY[1, 'NaN'::float8]);
SELECT * FROM icpml.stop_experiment('e1');
SELECT * FROM icpml.experiment_results('e1');
SELECT icpml.experiment_variant('e1', '00000000-0000-0000-0000-000000000001');
SELECT count(*) AS experiments FROM icpml.experiments;

-- start one: weights default to an even split; only one may run at a time
SELECT name, variants, weights, status, stopped_at IS NULL AS open
FROM icpml.start_experiment('ucb-vs-ts', ARRAY['linucb', 'thompson'], description => 'first test');
SELECT * FROM icpml.start_experiment('another', ARRAY['greedy', 'icp']);
SELECT * FROM icpml.start_experiment('ucb-vs-ts', ARRAY['greedy', 'icp']);
-- the table guards itself against direct writes: the design of a running
-- experiment cannot change (it would move users between variants), and
-- variants and weights must be valid
\set VERBOSITY terse
UPDATE icpml.experiments SET weights = ARRAY[1, 3] WHERE name = 'ucb-vs-ts';
UPDATE icpml.experiments SET variants = ARRAY['linucb', 'bandit'] WHERE name = 'ucb-vs-ts';
INSERT INTO icpml.experiments (name, variants, weights, status, stopped_at, policies)
VALUES ('direct', ARRAY['greedy', 'greedy'], ARRAY[1, 1], 'stopped', now(), ARRAY['greedy', 'greedy']);
INSERT INTO icpml.experiments (name, variants, weights, status, stopped_at, policies)
VALUES ('direct', ARRAY['greedy', 'icp'], ARRAY[1, 'NaN'::float8], 'stopped', now(), ARRAY['greedy', 'icp']);
\set VERBOSITY default
UPDATE icpml.experiments SET description = 'first test, annotated' WHERE name = 'ucb-vs-ts';

-- assignment is a pure function of (experiment, user): stable, and close to
-- the weights over many users (exact counts: the hash is fixed)
SELECT icpml.experiment_variant('ucb-vs-ts', '00000000-0000-0000-0000-000000000001') =
       icpml.experiment_variant('ucb-vs-ts', '00000000-0000-0000-0000-000000000001') AS stable;
SELECT icpml.experiment_variant('ucb-vs-ts', md5('user' || g)::uuid) AS variant, count(*)
FROM generate_series(1, 2000) g GROUP BY 1 ORDER BY 1;
SELECT icpml.experiment_variant('nope', '00000000-0000-0000-0000-000000000001');

-- while it runs, recommend_accounts(policy => NULL) serves the user's variant
-- and logs it; an explicit policy is outside the experiment
SELECT u, icpml.experiment_variant('ucb-vs-ts', u) AS assigned
FROM (VALUES ('00000000-0000-0000-0000-000000000001'::uuid), ('00000000-0000-0000-0000-000000000002'),
             ('00000000-0000-0000-0000-000000000003'), ('00000000-0000-0000-0000-000000000004')) v(u)
ORDER BY u;
SELECT count(*) FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 3, seed => 1);
SELECT count(*) FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000002', 3, seed => 1);
SELECT count(*) FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000003', 3, seed => 1);
SELECT count(*) FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000004', 3, policy => 'icp');
SELECT user_id, policy, experiment, variant, count(*)
FROM icpml.recommendations GROUP BY 1, 2, 3, 4 ORDER BY 1;
SELECT reason->>'experiment' AS experiment, reason->>'variant' AS variant, reason->>'policy' AS policy
FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000003', 1, seed => 1);

-- results on a log with known numbers (rows written directly): control
-- linucb, 4 users with 2 finalized impressions each (rewards 1+0, 0+0,
-- 1+1, 1+0: 4 of 8), treatment thompson, 4 users (1+1, 1+1, 0+1, 1+0:
-- 6 of 8) and one pending impression
TRUNCATE icpml.recommendations;
INSERT INTO icpml.recommendations (user_id, account_id, rank, policy, context, score, expected_reward,
                                   propensity, state_version, status, reward, finalized_at,
                                   finalize_seq, experiment, variant)
SELECT ('00000000-0000-0000-0000-0000000000' || lpad(u::text, 2, '0'))::uuid, 1, i, v, '{0}', 0, 0, 1, 1,
       CASE WHEN r > 0 THEN 'rewarded' ELSE 'expired' END, r, now(),
       nextval('icpml.recommendations_finalize_seq'), 'ucb-vs-ts', v
FROM (VALUES (1, 'linucb', 1, 1), (1, 'linucb', 2, 0), (2, 'linucb', 1, 0), (2, 'linucb', 2, 0),
             (3, 'linucb', 1, 1), (3, 'linucb', 2, 1), (4, 'linucb', 1, 1), (4, 'linucb', 2, 0),
             (5, 'thompson', 1, 1), (5, 'thompson', 2, 1), (6, 'thompson', 1, 1), (6, 'thompson', 2, 1),
             (7, 'thompson', 1, 0), (7, 'thompson', 2, 1), (8, 'thompson', 1, 1), (8, 'thompson', 2, 0))
     AS t(u, v, i, r);
INSERT INTO icpml.recommendations (user_id, account_id, rank, policy, context, score, expected_reward,
                                   propensity, state_version, experiment, variant)
VALUES ('00000000-0000-0000-0000-000000000008', 2, 3, 'thompson', '{0}', 0, 0, 1, 1, 'ucb-vs-ts', 'thompson');
-- per user the reward sums are 1, 0, 2, 1 (control) and 2, 2, 1, 1; every
-- user has 2 finalized impressions, so se = sd(sums) / (2 sqrt(4)):
-- control 0.5 +- 1.96 * 0.8165 / 4 = [0.100, 0.900], treatment 0.75 +-
-- 1.96 * 0.57735 / 4 = [0.467, 1.033]; z = 0.25 / 0.25 = 1, p = 0.3173;
-- 4 users each: no sample-ratio mismatch (p = 1)
SELECT variant, weight, users, impressions, finalized, reward, round(reward_per_impression::numeric, 4) AS rate,
       round(ci_low::numeric, 4) AS ci_low, round(ci_high::numeric, 4) AS ci_high,
       round(lift::numeric, 4) AS lift, round(p_value::numeric, 4) AS p_value,
       round(srm_p_value::numeric, 4) AS srm_p_value
FROM icpml.experiment_results('ucb-vs-ts');

-- Peeking-safe and variance-reduced statistics on the same log
-- (docs/experiments.md has the formulas).  Pre-period rows (outside the
-- experiment, before it started) give each user a CUPED covariate x, the
-- reward per impression as known at the start: control users 1-4 have
-- x = 1, 0, 0.5, 0.5, treatment users 5-7 x = 1, 1, 1/3 (user 7 has a
-- third pre-period impression still pending at the start: it counts with
-- reward 0), user 8 none (imputed: the mean of the others, 13/21).  A
-- rewarded row older than pre_period (user 2) and one served after the
-- start outside the experiment (user 1) are ignored.
INSERT INTO icpml.recommendations (user_id, account_id, rank, policy, context, score, expected_reward,
                                   propensity, state_version, status, reward, served_at, finalized_at,
                                   finalize_seq)
SELECT ('00000000-0000-0000-0000-0000000000' || lpad(u::text, 2, '0'))::uuid, 9, i, 'linucb', '{0}', 0, 0, 1, 1,
       CASE WHEN r > 0 THEN 'rewarded' ELSE 'expired' END, r, e.started_at - d * interval '1 day',
       e.started_at - (d - 1) * interval '1 day', nextval('icpml.recommendations_finalize_seq')
FROM icpml.experiments AS e,
     (VALUES (1, 1, 1, 2), (1, 2, 1, 2), (2, 1, 0, 2), (2, 2, 0, 2), (3, 1, 1, 2), (3, 2, 0, 2),
             (4, 1, 0, 2), (4, 2, 1, 2), (5, 1, 1, 2), (5, 2, 1, 2), (6, 1, 1, 2), (6, 2, 1, 2),
             (7, 1, 1, 2), (7, 2, 0, 2), (2, 3, 1, 40), (1, 3, 0, -1)) AS t(u, i, r, d)
WHERE e.name = 'ucb-vs-ts';
INSERT INTO icpml.recommendations (user_id, account_id, rank, policy, context, score, expected_reward,
                                   propensity, state_version, served_at)
SELECT '00000000-0000-0000-0000-000000000007', 9, 3, 'linucb', '{0}', 0, 0, 1, 1, e.started_at - interval '1 hour'
FROM icpml.experiments AS e WHERE e.name = 'ucb-vs-ts';
-- Linearised metric y_i = (R_i - rate N_i) / mean(N): control (R - 1) / 2,
-- treatment (R - 1.5) / 2.  theta = pooled within-variant slope of y on x
-- = 0.62796; the adjusted rates are rate - theta (mean x of the variant -
-- mean x of all 8 users, 0.619): control 0.5 + 0.0748 = 0.5748, treatment
-- 0.75 - 0.0748 = 0.6752; variances var(y - theta x) / 4 give 95 %
-- intervals [0.2245, 0.9250] and [0.5547, 0.7957], p = 0.5949 (z-test of
-- the adjusted difference), and remove 23.4 % of the control's variance
-- and 42.9 % of the difference's.  Sequential (mSPRT, tau = expected_lift
-- x the pooled rate 0.625): V = 1/24 (control), 1/48 (treatment);
-- half-width sqrt(V (V + tau^2) / tau^2 (2 ln 20 + ln((V + tau^2) / V))):
-- with expected_lift 0.1 (tau^2 = 0.0039) [-1.2193, 2.2193] and [-0.1518,
-- 1.6518], with expected_lift 1 (tau^2 = 0.3906) [-0.1198, 1.1198] and
-- [0.3062, 1.1938]; four users a variant are far too few for the
-- sequential test: its p-values stay 1.
SELECT variant, round(seq_ci_low::numeric, 4) AS seq_low, round(seq_ci_high::numeric, 4) AS seq_high,
       round(seq_p_value::numeric, 4) AS seq_p, round(cuped_reward_per_impression::numeric, 4) AS cuped_rate,
       round(cuped_ci_low::numeric, 4) AS cuped_low, round(cuped_ci_high::numeric, 4) AS cuped_high,
       round(cuped_p_value::numeric, 4) AS cuped_p, round(cuped_seq_p_value::numeric, 4) AS cuped_seq_p,
       round(variance_reduction::numeric, 4) AS var_reduction, covariate_users
FROM icpml.experiment_results('ucb-vs-ts');
SELECT variant, round(seq_ci_low::numeric, 4) AS seq_low, round(seq_ci_high::numeric, 4) AS seq_high,
       round(reward_per_impression::numeric, 4) AS rate, round(p_value::numeric, 4) AS p
FROM icpml.experiment_results('ucb-vs-ts', expected_lift => 1);
-- a pre_period of one hour sees only user 7's pending impression (x = 0
-- for user 7, imputed 0 for everyone else: no variation, no CUPED)
SELECT variant, cuped_reward_per_impression, variance_reduction, covariate_users
FROM icpml.experiment_results('ucb-vs-ts', pre_period => '1 hour');
-- as it stood before anything was served: no users, no statistics, no
-- division by zero
SELECT variant, users, impressions, finalized, reward, reward_per_impression, ci_low, p_value,
       srm_p_value, seq_ci_low, seq_p_value, cuped_reward_per_impression, covariate_users
FROM icpml.experiment_results('ucb-vs-ts', as_of => '2000-01-01');
SELECT * FROM icpml.experiment_results('ucb-vs-ts', expected_lift => 0);
SELECT * FROM icpml.experiment_results('ucb-vs-ts', pre_period => '-1 day');
-- the helpers against hand-computed values: V = 0.01, tau^2 = 0.04,
-- estimate 0.5: half-width sqrt(0.01 * 0.05 / 0.04 * (2 ln 20 + ln 5)) =
-- 0.308236 (the fixed-horizon one is 0.196); log Lambda = 0.5 ln(0.2) +
-- 0.25 * 0.04 / (2 * 0.01 * 0.05) = 9.195281, p = exp(-9.195281) = 0.000101
SELECT round(icpml.sequential_halfwidth(0.01, 0.04)::numeric, 6) AS halfwidth,
       round(icpml.sequential_halfwidth(0.01, 0.04, alpha => 0.1)::numeric, 6) AS halfwidth90,
       icpml.sequential_halfwidth(0, 0.04) AS zero_variance, icpml.sequential_halfwidth(0.01, 0) AS no_tau,
       round(icpml.msprt_p_value(0.5, 0.01, 0.04)::numeric, 6) AS p,
       icpml.msprt_p_value(0.01, 0.01, 0.04) AS p_small_effect, icpml.msprt_p_value(0.5, 0, 0.04) AS p_no_variance;

-- a sample-ratio mismatch: 56 + 36 more users make 60 in one variant and
-- 40 in the other of a 50/50 split (chi-square 4, 1 degree of freedom:
-- p = 0.0455)
INSERT INTO icpml.recommendations (user_id, account_id, rank, policy, context, score, expected_reward,
                                   propensity, state_version, experiment, variant)
SELECT md5('srm' || g)::uuid, 1, 1, v, '{0}', 0, 0, 1, 1, 'ucb-vs-ts', v
FROM generate_series(1, 92) g, LATERAL (SELECT CASE WHEN g <= 56 THEN 'linucb' ELSE 'thompson' END AS v) x;
SELECT variant, users, round(srm_p_value::numeric, 4) AS srm_p_value FROM icpml.experiment_results('ucb-vs-ts');

-- the tail functions behind the results
SELECT round(icpml.normal_sf(0)::numeric, 6) AS half, round(icpml.normal_sf(1.959963985)::numeric, 6) AS p025,
       round(icpml.chi_square_sf(4, 1)::numeric, 6) AS chi1, round(icpml.chi_square_sf(7.814728, 3)::numeric, 6) AS chi3,
       round(icpml.chi_square_sf(30, 7)::numeric, 8) AS chi7, icpml.chi_square_sf(0, 2) AS chi0,
       icpml.chi_square_sf('Infinity', 3) AS chi_inf;
SELECT icpml.chi_square_sf(1, 0);

-- stop: the default policy again, outside any experiment; results stay
SELECT name, status, stopped_at IS NOT NULL AS stopped FROM icpml.stop_experiment('ucb-vs-ts');
SELECT * FROM icpml.stop_experiment('ucb-vs-ts');
SELECT * FROM icpml.stop_experiment('never-started');
SELECT reason->>'experiment' IS NULL AS outside, reason->>'policy' AS policy
FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 1, seed => 1);
SELECT count(*) AS variants FROM icpml.experiment_results('ucb-vs-ts');
-- a stopped experiment's name stays taken; a new one may start
SELECT * FROM icpml.start_experiment('ucb-vs-ts', ARRAY['greedy', 'icp']);
SELECT name, variants, weights, status FROM icpml.start_experiment('greedy-vs-icp', ARRAY['greedy', 'icp'], weights => ARRAY[3, 1]);
SELECT icpml.experiment_variant('greedy-vs-icp', md5('user' || g)::uuid) AS variant, count(*)
FROM generate_series(1, 2000) g GROUP BY 1 ORDER BY 1;
-- two experiments split the same users independently (expected 750 / 250 /
-- 750 / 250 of 2000)
SELECT icpml.experiment_variant('ucb-vs-ts', md5('user' || g)::uuid) AS first,
       icpml.experiment_variant('greedy-vs-icp', md5('user' || g)::uuid) AS second, count(*)
FROM generate_series(1, 2000) g GROUP BY 1, 2 ORDER BY 1, 2;
SELECT name FROM icpml.stop_experiment('greedy-vs-icp');
