-- recommend_accounts: bounds and bad input, cold start, policies, determinism
-- with a seed, exclusions, logging, row-level security and the JWT subject.
\set VERBOSITY default
SET icpml.nthread = 1;
\i sql/include/reference_schema.sql
TRUNCATE icpml.recommendations, icpml.bandit_state, icpml.account_feedback;
-- the vocabularies come from this test's accounts (the first score_all() below)
UPDATE icpml.bandit_settings SET industries = NULL, technologies = NULL;

-- 60 accounts in four industries; every fifth never researched
INSERT INTO account_signals (account_id, account_name, industry, engineering_role_count,
                             has_open_engineering_roles, total_open_roles, has_engineering_blog)
SELECT g, 'acct ' || g, (ARRAY['saas', 'fintech', 'devtools', 'retail'])[1 + g % 4],
       (g * 7) % 30, g % 3 <> 0, (g * 11) % 80, g % 2 = 0
FROM generate_series(1, 60) g;
INSERT INTO research_runs (account_id, company_size, funding_amount_usd, funding_date, tech_stack, created_at)
SELECT g, 10 + (g * 37) % 2000, CASE WHEN g % 3 = 0 THEN 2000000 * (g % 7 + 1) END,
       CASE WHEN g % 3 = 0 THEN current_date - (g * 13) % 700 END,
       CASE g % 3 WHEN 0 THEN '{postgresql,go}' WHEN 1 THEN '{python,aws,kubernetes}' ELSE '{php}' END::text[],
       now() - (g % 40) * interval '1 day'
FROM generate_series(1, 60) g WHERE g % 5 <> 0;
INSERT INTO sales_users (user_id, display_name)
VALUES ('00000000-0000-0000-0000-000000000001', 'Ada'), ('00000000-0000-0000-0000-000000000002', 'Ben');
SELECT icpml.score_all();

-- bad input: clear errors
SELECT * FROM icpml.recommend_accounts(NULL, 5);
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', NULL);
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 0);
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 101);
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 10, candidates => 9);
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 10, candidates => 5001);
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 5, policy => 'ucb');
SELECT * FROM icpml.recommend_accounts('not-a-uuid', 5);
-- nothing was logged by the failed calls
SELECT count(*) AS logged FROM icpml.recommendations;

-- before any scoring (nothing in account_scores nor account_candidates):
-- a cold start from the rules, not an error (in a transaction rolled back,
-- so that the rest of this file sees no impressions)
BEGIN;
TRUNCATE icpml.account_scores, icpml.account_candidates;
CREATE TEMP TABLE cold_list AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 5, policy => 'icp');
SELECT r.rank, r.account_id, r.icp_score, r.priority, l.source,
       round(r.ranking_score::numeric, 4) = round(r.score::numeric, 4) AS deprecated_score_same
FROM cold_list AS r JOIN icpml.recommendations AS l USING (recommendation_id) ORDER BY r.rank;
-- the same order as the rules' own ranking of the relation
SELECT s.account_id, s.score FROM account_features AS f, icpml.icp_score(f.account_id) AS s
ORDER BY s.probability DESC, s.account_id LIMIT 5;
ROLLBACK;

-- cold start: empty history, no state; the first exploit_slots (2) rows by
-- the expected reward, the others by ICP fit plus uncertainty, every row
-- explained
SELECT rank, account_id, icp_score, priority, round(expected_reward::numeric, 4) AS mu,
       round(exploration::numeric, 4) AS explore, reason->>'summary' AS summary
FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 5, policy => 'linucb');
SELECT rank, account_id, icp_score, round(ranking_score::numeric, 4) AS ranking_score
FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 5, policy => 'icp');
SELECT jsonb_object_keys(reason) AS reason_keys
FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 1, policy => 'linucb')
ORDER BY 1;
SELECT reason->'top_signals'->0->>'signal' AS top_signal, reason->>'policy' AS policy
FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 1, policy => 'greedy');

-- every policy: k distinct accounts, ranks 1..k
SELECT p AS policy, count(*) AS n, count(DISTINCT r.account_id) AS distinct_accounts,
       min(r.rank) AS first, max(r.rank) AS last
FROM unnest(ARRAY['linucb', 'thompson', 'greedy', 'epsilon_greedy', 'icp', 'random']) p
CROSS JOIN LATERAL icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 7,
                                            policy => p, seed => 11) r
GROUP BY p ORDER BY p;
-- k larger than what there is to recommend: all of it
SELECT count(*) FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000002', 100, policy => 'greedy');

-- a fixed seed gives the same list; different seeds differ
SELECT p AS policy,
       (SELECT array_agg(account_id ORDER BY rank) FROM icpml.recommend_accounts(
          '00000000-0000-0000-0000-000000000001', 10, policy => p, seed => 42))
     = (SELECT array_agg(account_id ORDER BY rank) FROM icpml.recommend_accounts(
          '00000000-0000-0000-0000-000000000001', 10, policy => p, seed => 42)) AS same_seed_same_list,
       (SELECT array_agg(account_id ORDER BY rank) FROM icpml.recommend_accounts(
          '00000000-0000-0000-0000-000000000001', 10, policy => p, seed => 42))
     = (SELECT array_agg(account_id ORDER BY rank) FROM icpml.recommend_accounts(
          '00000000-0000-0000-0000-000000000001', 10, policy => p, seed => 43)) AS other_seed_same_list
FROM unnest(ARRAY['thompson', 'epsilon_greedy', 'random']) p ORDER BY p;

-- logging: each served row with its context (23 entries), score and propensity
TRUNCATE icpml.recommendations;
CREATE TEMP TABLE served AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 5,
                                       policy => 'epsilon_greedy', seed => 5);
SELECT r.rank, r.account_id = s.account_id AS same_account, r.policy, r.status,
       array_length(r.context, 1) AS dim, r.context[1] AS bias,
       abs(r.score - s.ranking_score) < 1e-12 AS same_score, round(r.propensity::numeric, 4) AS propensity,
       r.state_version
FROM icpml.recommendations r JOIN served s USING (recommendation_id)
ORDER BY r.rank;
-- propensities: 1 for deterministic policies, estimated in (0, 1] for Thompson
CREATE TEMP TABLE served_ids AS
SELECT 'greedy' AS policy, recommendation_id
FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 5, policy => 'greedy');
INSERT INTO served_ids
SELECT 'thompson', recommendation_id
FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 5, policy => 'thompson', seed => 3);
SELECT s.policy, count(*) AS n, min(r.propensity) > 0 AS positive, max(r.propensity) <= 1 AS at_most_one,
       bool_and(r.propensity = 1) AS all_one
FROM served_ids s JOIN icpml.recommendations r USING (recommendation_id)
GROUP BY s.policy ORDER BY s.policy;

-- the user's own history: a dismissed account and a contacted one are never
-- recommended; a viewed one gets "you viewed it before" (once it is older
-- than exclude_recent: 1 day here, the interactions are 2 days old)
UPDATE icpml.bandit_settings SET exclude_recent = '1 day';
CREATE TEMP TABLE top AS
SELECT account_id FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 3, policy => 'greedy')
ORDER BY rank;
INSERT INTO user_interactions (user_id, account_id, interaction_type, created_at)
SELECT '00000000-0000-0000-0000-000000000001', account_id, t, now() - interval '2 days'
FROM (SELECT account_id, (ARRAY['dismiss', 'contact', 'view'])[row_number() OVER (ORDER BY account_id)] AS t
      FROM top) x;
SELECT r.account_id, i.interaction_type, r.reason->>'summary' LIKE '%you viewed it before%' AS says_viewed
FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 60, policy => 'greedy') r
JOIN user_interactions i USING (account_id)
ORDER BY 1;
UPDATE icpml.bandit_settings SET exclude_dismissed = false, exclude_worked_types = '{}';
SELECT count(*) AS listed_again
FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 60, policy => 'greedy') r
JOIN user_interactions i USING (account_id);
UPDATE icpml.bandit_settings SET exclude_dismissed = true, exclude_worked_types = '{contact,meeting}',
                                 exclude_recent = DEFAULT;
-- another user is not affected by Ada's dismissals
SELECT count(*) AS listed_for_ben
FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000002', 60, policy => 'greedy') r
JOIN user_interactions i USING (account_id);

-- a new account, never interacted with, never researched, can be recommended
INSERT INTO account_signals (account_id, account_name, industry, engineering_role_count,
                             has_open_engineering_roles, total_open_roles, has_engineering_blog)
VALUES (1000, 'brand new', 'devtools', 40, true, 90, true);
SELECT icpml.score_all();
SELECT rank, account_id, reason->>'summary' AS summary
FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000002', 60, policy => 'icp')
WHERE account_id = 1000;

-- row-level security: accounts hidden from the caller never appear, also
-- when retrieval has to page past them
CREATE ROLE icpml_test_rep;
SELECT icpml.grant_scoring('icpml_test_rep');
GRANT EXECUTE ON FUNCTION icpml.recommend_accounts(uuid, integer, text, integer, bigint) TO icpml_test_rep;
GRANT SELECT ON account_signals, research_runs, account_features, user_interactions TO icpml_test_rep;
ALTER TABLE account_signals ENABLE ROW LEVEL SECURITY;
CREATE POLICY odd_only ON account_signals FOR SELECT TO icpml_test_rep USING (account_id % 2 = 1);
SET ROLE icpml_test_rep;
-- not an administrator: the identity check needs a JWT subject (docs/security.md)
SELECT count(*) FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000002', 3);
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-000000000002", "role": "authenticated"}';
SELECT count(*) AS listed, count(*) FILTER (WHERE account_id % 2 = 0) AS hidden_listed
FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000002', 100, policy => 'linucb');
SELECT count(*) AS listed, count(*) FILTER (WHERE account_id % 2 = 0) AS hidden_listed
FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000002', 10, candidates => 10, policy => 'icp');
-- icpml's own tables stay closed to the caller
SELECT count(*) FROM icpml.recommendations;
SELECT count(*) FROM icpml.bandit_state;

-- the JWT subject must match user_id for an unprivileged caller
-- (every shape of the claims: 33_identity)
SELECT count(*) FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000002', 3);
SELECT count(*) FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 3);
SET request.jwt.claims = '';
SET request.jwt.claim.sub = '00000000-0000-0000-0000-000000000002';
SELECT count(*) FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 3);
RESET request.jwt.claim.sub;
RESET ROLE;
-- a privileged caller may ask for anyone
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-000000000002"}';
SELECT count(*) FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 3);
RESET request.jwt.claims;

-- a caller who can see no account at all gets an empty list, quickly
CREATE VIEW no_accounts AS SELECT * FROM account_features WHERE false;
SET icpml.feature_relation = 'no_accounts';
SELECT count(*) FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 5, candidates => 5);
RESET icpml.feature_relation;
DROP VIEW no_accounts;

-- the calls above were logged as the extension owner, for the caller's user
SELECT user_id, count(*) > 0 AS logged FROM icpml.recommendations GROUP BY 1 ORDER BY 1;

-- a missing interactions relation: a clear error
SET icpml.interactions_relation = 'public.no_such_table';
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 3);
RESET icpml.interactions_relation;

DROP POLICY odd_only ON account_signals;
ALTER TABLE account_signals DISABLE ROW LEVEL SECURITY;
REVOKE ALL ON account_signals, research_runs, account_features, user_interactions FROM icpml_test_rep;
REVOKE ALL ON SCHEMA icpml FROM icpml_test_rep;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA icpml FROM icpml_test_rep;
DROP ROLE icpml_test_rep;

SET client_min_messages = warning;
DROP VIEW account_features;
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
RESET client_min_messages;
TRUNCATE icpml.account_scores, icpml.recommendations, icpml.bandit_state;
