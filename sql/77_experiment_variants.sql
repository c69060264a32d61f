-- Experiment variants (#13 items 3, 4): variants as labels serving a policy
-- (a true A/A test), each variant's own bandit state, a holdout that never
-- trains anything, the states rebuilt from the log per scope, and
-- promote_variant().
\set VERBOSITY default
SET icpml.nthread = 1;
\i sql/include/reference_schema.sql
TRUNCATE icpml.recommendations, icpml.bandit_state, icpml.account_feedback, icpml.feedback_events;
DELETE FROM icpml.experiments;
UPDATE icpml.bandit_settings SET industries = NULL, technologies = NULL, default_policy = 'icp';

INSERT INTO account_signals (account_id, account_name, industry, engineering_role_count,
                             has_open_engineering_roles, total_open_roles, has_engineering_blog)
SELECT g, 'acct ' || g, (ARRAY['saas', 'fintech', 'devtools'])[1 + g % 3], (g * 7) % 30, g % 3 <> 0,
       (g * 11) % 80, g % 2 = 0
FROM generate_series(1, 40) g
ON CONFLICT (account_id) DO NOTHING;
SELECT icpml.score_all() > 0 AS scored;
SELECT icpml.enable_online_feedback() IS NOT NULL AS online;

-- bad input: clear errors, nothing written
\set VERBOSITY terse
SELECT * FROM icpml.start_experiment('aa', ARRAY['a', 'b'], policies => ARRAY['linucb']);
SELECT * FROM icpml.start_experiment('aa', ARRAY['a', 'b'], policies => ARRAY['linucb', 'bandit']);
SELECT * FROM icpml.start_experiment('aa', ARRAY['a', 'holdout'], policies => ARRAY['linucb', 'linucb']);
SELECT * FROM icpml.start_experiment('aa', ARRAY['a', 'B'], policies => ARRAY['linucb', 'linucb']);
SELECT * FROM icpml.start_experiment('aa', ARRAY['a', 'a'], policies => ARRAY['linucb', 'linucb']);
SELECT * FROM icpml.start_experiment('aa', ARRAY['a', 'b'], policies => ARRAY['linucb', 'linucb'], holdout => 1);
SELECT * FROM icpml.start_experiment('aa', ARRAY['a', 'b'], policies => ARRAY['linucb', 'linucb'], holdout => -0.1);
SELECT * FROM icpml.start_experiment('aa', ARRAY['a', 'b'], policies => ARRAY['linucb', 'linucb'], holdout_policy => 'best');
SELECT * FROM icpml.start_experiment('aa', ARRAY['a', 'b'], policies => ARRAY['linucb', 'linucb'], separate_state => NULL);
\set VERBOSITY default
SELECT count(*) AS experiments FROM icpml.experiments;

-- an A/A test: two variants serving the same policy, each learning in its
-- own state, and a 30 % holdout served rank-by-ICP
SELECT name, variants, policies, separate_state, holdout, holdout_policy, promoted
FROM icpml.start_experiment('aa', ARRAY['a', 'b'], policies => ARRAY['linucb', 'linucb'],
                            holdout => 0.3, holdout_policy => 'icp');
-- the design is fixed once it exists
\set VERBOSITY terse
UPDATE icpml.experiments SET policies = ARRAY['linucb', 'greedy'] WHERE name = 'aa';
UPDATE icpml.experiments SET holdout = 0 WHERE name = 'aa';
UPDATE icpml.experiments SET separate_state = false WHERE name = 'aa';
\set VERBOSITY default

-- the holdout is decided by its own hash before the split: over many users
-- close to 30 %, and the others split as without a holdout
SELECT icpml.experiment_variant('aa', md5('u' || g)::uuid) AS variant, count(*)
FROM generate_series(1, 3000) g GROUP BY 1 ORDER BY 1;
CREATE TEMP TABLE users AS
SELECT g, md5('vu' || g)::uuid AS user_id, icpml.experiment_variant('aa', md5('vu' || g)::uuid) AS variant
FROM generate_series(1, 12) g;
SELECT variant, count(*) FROM users GROUP BY 1 ORDER BY 1;

-- serving: each user gets the variant's policy (the holdout: icp), logged
-- with the variant and the state its feedback will train
CREATE TEMP TABLE served AS
SELECT u.g, u.variant, r.*
FROM users AS u, LATERAL icpml.recommend_accounts(u.user_id, 3, seed => u.g) AS r;
SELECT s.variant, r.policy, r.variant AS logged_variant, r.state_scope, count(*)
FROM served AS s JOIN icpml.recommendations AS r USING (recommendation_id)
GROUP BY 1, 2, 3, 4 ORDER BY 1;
SELECT DISTINCT s.variant, s.reason->>'variant' AS reason_variant, s.reason->>'policy' AS reason_policy
FROM served AS s ORDER BY 1;
SELECT count(*) AS states_before_feedback FROM icpml.bandit_state;

-- feedback: every user contacts the account listed first
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT u.user_id, s.account_id, 'contact'
FROM served AS s JOIN users AS u USING (g) WHERE s.rank = 1;
-- the rest expires (reward 0)
SELECT expired > 0 AS expired FROM icpml.process_feedback(as_of => now() + interval '30 days');

-- each variant's own state took exactly its users' impressions (first
-- rewards and expiries); the global state took none; the holdout trained
-- no state at all: not the shared ones, not its users' own, and not the
-- per-account sums
SELECT scope, n FROM icpml.bandit_state WHERE scope NOT LIKE 'user:%' ORDER BY scope;
SELECT r.state_scope, count(*) AS finalized
FROM icpml.recommendations AS r WHERE r.status <> 'pending' GROUP BY 1 ORDER BY 1;
SELECT u.variant, count(b.scope) AS user_states, sum(b.n) AS user_updates
FROM users AS u LEFT JOIN icpml.bandit_state AS b ON b.scope = 'user:' || u.user_id
GROUP BY 1 ORDER BY 1;
SELECT sum(f.impressions) AS account_feedback_impressions,
       (SELECT count(*) FROM icpml.recommendations WHERE state_scope IS DISTINCT FROM 'none') AS trained_impressions
FROM icpml.account_feedback AS f;
-- a later, better interaction of a held-out user changes its impression's
-- reward (the results see it) but still no state
CREATE TEMP TABLE before_states AS SELECT scope, n, b FROM icpml.bandit_state;
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT u.user_id, s.account_id, 'meeting'
FROM served AS s JOIN users AS u USING (g) WHERE s.rank = 1 AND u.variant = 'holdout';
SELECT r.reward FROM icpml.recommendations AS r
WHERE r.variant = 'holdout' AND r.rank = 1 GROUP BY 1;
SELECT count(*) AS changed_states
FROM icpml.bandit_state AS b FULL JOIN before_states AS o USING (scope)
WHERE b.b IS DISTINCT FROM o.b OR b.n IS DISTINCT FROM o.n;

-- the variants' states differ (their users did different things) and a
-- variant ranks with its own: the state version logged is that state's
SELECT (SELECT b FROM icpml.bandit_state WHERE scope = 'variant:aa/a')
       <> (SELECT b FROM icpml.bandit_state WHERE scope = 'variant:aa/b') AS states_differ;
CREATE TEMP TABLE l1 AS
SELECT * FROM icpml.recommend_accounts((SELECT user_id FROM users WHERE variant = 'b' ORDER BY g LIMIT 1), 1, seed => 7);
SELECT r.state_version = (SELECT version FROM icpml.bandit_state WHERE scope = 'variant:aa/b') AS own_state,
       r.state_version <> (SELECT version FROM icpml.bandit_state WHERE scope = 'variant:aa/a') AS not_a
FROM l1 JOIN icpml.recommendations AS r USING (recommendation_id);

-- rebuild_bandit_state() replays each scope from the log: the same states
-- (a held-out user's row, which expiry locked, is at the prior: n = 0)
CREATE TEMP TABLE online AS SELECT scope, n, a, b FROM icpml.bandit_state;
SELECT icpml.rebuild_bandit_state() AS replayed;
SELECT o.scope, o.n = s.n AS same_n,
       (SELECT max(abs(x - y)) FROM unnest(o.a, s.a) AS t(x, y)) < 1e-9 AS same_a,
       (SELECT max(abs(x - y)) FROM unnest(o.b, s.b) AS t(x, y)) < 1e-9 AS same_b
FROM online AS o FULL JOIN icpml.bandit_state AS s USING (scope)
WHERE o.scope NOT LIKE 'user:%' OR s.scope NOT LIKE 'user:%'
ORDER BY 1;
SELECT count(*) FILTER (WHERE s.scope IS NULL AND o.n = 0) AS prior_rows_not_rebuilt,
       count(*) FILTER (WHERE COALESCE(o.n, 0) <> COALESCE(s.n, 0)
                        OR (SELECT max(abs(x - y)) FROM unnest(o.b, s.b) AS t(x, y)) >= 1e-9) AS user_states_differing
FROM online AS o FULL JOIN icpml.bandit_state AS s USING (scope)
WHERE o.scope LIKE 'user:%' OR s.scope LIKE 'user:%';

-- the results: one row per variant, then the holdout (weight NULL),
-- compared with the control
SELECT variant, weight, users, impressions, finalized, round(reward::numeric, 2) AS reward,
       srm_p_value IS NOT NULL AS srm_checked
FROM icpml.experiment_results('aa');

-- promote_variant: bad input first
\set VERBOSITY terse
SELECT * FROM icpml.promote_variant('nope', 'a');
SELECT * FROM icpml.promote_variant('aa', 'holdout');
SELECT * FROM icpml.promote_variant('aa', 'c');
\set VERBOSITY default
-- the winner: the experiment stops, its policy becomes the default, and the
-- global state takes what variant b learned (rebuilt: the same as replaying
-- the global stream with b's impressions in it); a's state stays its own
CREATE TEMP TABLE b_state AS SELECT n FROM icpml.bandit_state WHERE scope = 'variant:aa/b';
SELECT name, status, stopped_at IS NOT NULL AS stopped, promoted FROM icpml.promote_variant('aa', 'b');
SELECT default_policy FROM icpml.bandit_settings;
SELECT scope, n FROM icpml.bandit_state WHERE scope NOT LIKE 'user:%' ORDER BY scope;
SELECT (SELECT n FROM icpml.bandit_state WHERE scope = 'global') = (SELECT n FROM b_state) AS global_took_b;
SELECT state_scope, count(*) FROM icpml.recommendations WHERE experiment = 'aa' GROUP BY 1 ORDER BY 1;
\set VERBOSITY terse
SELECT * FROM icpml.promote_variant('aa', 'a');
\set VERBOSITY default
-- after the experiment, recommend_accounts serves the new default on the
-- global state
CREATE TEMP TABLE l2 AS
SELECT * FROM icpml.recommend_accounts((SELECT user_id FROM users WHERE variant = 'a' ORDER BY g LIMIT 1), 1, seed => 3);
SELECT r.variant IS NULL AS outside, r.state_scope IS NULL AS trains_global, r.policy,
       r.state_version = (SELECT version FROM icpml.bandit_state WHERE scope = 'global') AS global_state
FROM l2 JOIN icpml.recommendations AS r USING (recommendation_id);

-- separate_state => false: every variant ranks with and trains the global
-- state (0.3.0's behaviour, and that of experiments that existed before the
-- update); no holdout
SELECT name, separate_state, holdout
FROM icpml.start_experiment('shared', ARRAY['greedy', 'icp'], separate_state => false);
CREATE TEMP TABLE l3 AS
SELECT l.* FROM users AS u, LATERAL icpml.recommend_accounts(u.user_id, 2, seed => u.g) AS l;
SELECT r.variant, r.policy, r.state_scope IS NULL AS trains_global, count(*)
FROM l3 JOIN icpml.recommendations AS r USING (recommendation_id)
GROUP BY 1, 2, 3 ORDER BY 1;
SELECT name FROM icpml.stop_experiment('shared');

SELECT icpml.disable_online_feedback() IS NOT NULL AS offline;
UPDATE icpml.bandit_settings SET default_policy = 'linucb', industries = NULL, technologies = NULL;
DELETE FROM icpml.experiments;
TRUNCATE icpml.recommendations, icpml.bandit_state, icpml.account_feedback, icpml.feedback_events;
