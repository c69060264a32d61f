-- Retrieval: the candidates the scoring functions materialise, the sources
-- and their quotas, the per-user profiles the triggers keep, and the
-- visibility check (full under row-level security, deferred without).
\set VERBOSITY default
SET icpml.nthread = 1;
\i sql/include/reference_schema.sql
TRUNCATE icpml.recommendations, icpml.bandit_state, icpml.account_feedback, icpml.account_scores,
         icpml.account_candidates, icpml.user_profiles;
UPDATE icpml.bandit_settings SET industries = NULL, technologies = NULL;
-- what a user acted on stays a candidate until the exclude_recent part below
UPDATE icpml.bandit_settings SET exclude_recent = '0';

-- 600 accounts: ids 1..200 are manufacturing and healthcare, large, not
-- hiring: the rules rank them low; the others are small tech companies
INSERT INTO account_signals (account_id, account_name, industry, engineering_role_count,
                             has_open_engineering_roles, total_open_roles, has_engineering_blog)
SELECT g, 'acct ' || g,
       (ARRAY['manufacturing', 'healthcare', 'saas', 'fintech', 'devtools', 'retail'])[1 + (g - 1) / 100],
       CASE WHEN g <= 200 THEN 0 ELSE (g * 7) % 30 END, g > 200 AND g % 3 <> 0, (g * 11) % 80,
       g > 200 AND g % 2 = 0
FROM generate_series(1, 600) g;
INSERT INTO research_runs (account_id, company_size, funding_amount_usd, funding_date, tech_stack, created_at)
SELECT g, CASE WHEN g <= 200 THEN 2000 + g * 10 ELSE 20 + (g * 37) % 900 END,
       CASE WHEN g % 3 = 0 THEN 2000000 END, CASE WHEN g % 3 = 0 THEN current_date - (g * 13) % 700 END,
       CASE WHEN g <= 200 THEN '{java,dotnet}' WHEN g % 2 = 0 THEN '{postgresql,go}' ELSE '{python,aws}' END::text[],
       now() - (g % 300) * interval '1 day'
FROM generate_series(1, 600) g;
INSERT INTO sales_users (user_id, display_name)
VALUES ('00000000-0000-0000-0000-000000000001', 'Ada'), ('00000000-0000-0000-0000-000000000002', 'Ben');
SELECT icpml.score_all();

-- account_candidates: every scored account with the recommender's signals
SELECT count(*) AS candidates, count(c.industry) AS with_industry, count(c.size_band) AS with_size_band,
       count(c.tech_stack) AS with_stack,
       bool_and(c.probability = s.probability AND c.score = s.score AND c.priority = s.priority) AS same_scores
FROM icpml.account_candidates AS c JOIN icpml.account_scores AS s USING (account_id);
SELECT account_id, industry, size_band, tech_stack, researched_at IS NOT NULL AS researched
FROM icpml.account_candidates WHERE account_id IN (1, 301) ORDER BY account_id;
-- a rescore that changes nothing rewrites nothing
SELECT max(updated_at) AS written_at FROM icpml.account_candidates \gset
SELECT icpml.score_all();
SELECT count(*) FILTER (WHERE updated_at > :'written_at') AS rewritten FROM icpml.account_candidates;
-- a changed signal is written by the next scoring; a deleted account leaves
UPDATE account_signals SET industry = 'retail' WHERE account_id = 300;
DELETE FROM account_signals WHERE account_id = 599;
SELECT icpml.score_all();
SELECT count(*) FILTER (WHERE updated_at > :'written_at') AS rewritten,
       count(*) FILTER (WHERE account_id = 599) AS deleted_still_there,
       min(industry) FILTER (WHERE account_id = 300) AS new_industry
FROM icpml.account_candidates;
-- refresh_candidates() re-reads the signals without rescoring
TRUNCATE icpml.account_candidates;
SELECT icpml.refresh_candidates() AS refreshed;
SELECT count(*) AS candidates FROM icpml.account_candidates;
-- a new account is fresh (the first fill's are not: first_scored_at -infinity)
INSERT INTO account_signals (account_id, account_name, industry, engineering_role_count)
VALUES (700, 'brand new', 'retail', 0);
SELECT icpml.score_all();
SELECT account_id, first_scored_at > '-infinity' AS new FROM icpml.account_candidates
WHERE account_id IN (1, 700) ORDER BY account_id;

-- the sources.  Ada saved large manufacturing accounts: her affinity
-- segments.  Candidates 100: affinity 30, fresh 5, explore 5, icp the rest
INSERT INTO user_interactions (user_id, account_id, interaction_type, created_at)
SELECT '00000000-0000-0000-0000-000000000001', g, 'save', now() - g * interval '1 hour'
FROM generate_series(1, 10) g;
SELECT source, count(*) AS n
FROM icpml.retrieve_candidates('00000000-0000-0000-0000-000000000001', 100, seed => 1)
GROUP BY source ORDER BY source;
-- the affinity candidates are her segment's, below the icp slice
SELECT count(*) AS affinity, count(*) FILTER (WHERE c.industry = 'manufacturing') AS manufacturing,
       max(c.probability) <= (SELECT min(i.probability)
                              FROM icpml.retrieve_candidates('00000000-0000-0000-0000-000000000001', 100, seed => 1) AS i
                              WHERE i.source = 'icp') AS below_icp
FROM icpml.retrieve_candidates('00000000-0000-0000-0000-000000000001', 100, seed => 1) AS r
JOIN icpml.account_candidates AS c USING (account_id) WHERE r.source = 'affinity';
-- the accounts she saved are candidates no more... unless saving does not
-- exclude (exclude_worked_types: contact, meeting); dismissed ones never are
SELECT count(*) AS saved_and_candidates
FROM icpml.retrieve_candidates('00000000-0000-0000-0000-000000000001', 600, seed => 1)
WHERE account_id BETWEEN 1 AND 10;
INSERT INTO user_interactions (user_id, account_id, interaction_type)
VALUES ('00000000-0000-0000-0000-000000000001', 1, 'dismiss'), ('00000000-0000-0000-0000-000000000001', 2, 'contact');
SELECT array_agg(account_id ORDER BY account_id) AS saved_and_candidates
FROM icpml.retrieve_candidates('00000000-0000-0000-0000-000000000001', 600, seed => 1)
WHERE account_id BETWEEN 1 AND 10;
-- exclude_recent: what she acted on within it is in her pipeline already
-- (saved 1 to 10 hours ago: 3 to 5 are left out, 6 to 10 stay)
UPDATE icpml.bandit_settings SET exclude_recent = '5 hours 30 minutes';
SELECT array_agg(account_id ORDER BY account_id) AS not_recent
FROM icpml.retrieve_candidates('00000000-0000-0000-0000-000000000001', 600, seed => 1)
WHERE account_id BETWEEN 1 AND 10;
-- the default, 7 days (the reward window): none of them
UPDATE icpml.bandit_settings SET exclude_recent = DEFAULT;
SELECT count(*) AS saved_and_candidates
FROM icpml.retrieve_candidates('00000000-0000-0000-0000-000000000001', 600, seed => 1)
WHERE account_id BETWEEN 1 AND 10;
UPDATE icpml.bandit_settings SET exclude_recent = '0';
\set VERBOSITY terse
UPDATE icpml.bandit_settings SET exclude_recent = '-1 day';
\set VERBOSITY default
-- the fresh source starts with the new account (below the icp slice)
SELECT account_id FROM icpml.retrieve_candidates('00000000-0000-0000-0000-000000000001', 100, seed => 1)
WHERE source = 'fresh' AND account_id = 700;
-- Ben has no history: no affinity source, icp takes its share
SELECT source, count(*) AS n
FROM icpml.retrieve_candidates('00000000-0000-0000-0000-000000000002', 100, seed => 1)
GROUP BY source ORDER BY source;
-- the same seed gives the same candidates (the explore sample is drawn
-- from it); recommend_accounts logs each listed row's source
SELECT (SELECT array_agg(account_id ORDER BY account_id)
        FROM icpml.retrieve_candidates('00000000-0000-0000-0000-000000000002', 100, seed => 7))
     = (SELECT array_agg(account_id ORDER BY account_id)
        FROM icpml.retrieve_candidates('00000000-0000-0000-0000-000000000002', 100, seed => 7)) AS same;
CREATE TEMP TABLE listed AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 50, policy => 'random',
                                       candidates => 100, seed => 3);
SELECT r.source, count(*) AS n FROM listed JOIN icpml.recommendations AS r USING (recommendation_id)
GROUP BY r.source ORDER BY r.source;
-- the shares: settings, checked
\set VERBOSITY terse
UPDATE icpml.bandit_settings SET affinity_share = 0.9, fresh_share = 0.2;
UPDATE icpml.bandit_settings SET explore_share = 1.5;
\set VERBOSITY default
UPDATE icpml.bandit_settings SET affinity_share = 0, fresh_share = 0, explore_share = 0;
SELECT source, count(*) AS n
FROM icpml.retrieve_candidates('00000000-0000-0000-0000-000000000001', 100, seed => 1)
GROUP BY source ORDER BY source;
UPDATE icpml.bandit_settings SET affinity_share = DEFAULT, fresh_share = DEFAULT, explore_share = DEFAULT;

-- profiles: enable_online_feedback() installs the triggers and builds a row
-- per user with interactions
SELECT icpml.enable_online_feedback();
SELECT user_id, valid, types, sticky_types, sticky_accounts, cardinality(recent_accounts) AS recent,
       recent_accounts[1:3] AS newest, industries
FROM icpml.user_profiles ORDER BY user_id;
-- the profile path and the live path (no triggers) give the same list
BEGIN;
SELECT string_agg(account_id || ':' || round(ranking_score::numeric, 6), ',' ORDER BY rank) AS via_profile
FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 10, policy => 'linucb', seed => 5) \gset
ROLLBACK;
BEGIN;
SELECT icpml.set_profile_triggers('user_interactions', false);
SELECT string_agg(account_id || ':' || round(ranking_score::numeric, 6), ',' ORDER BY rank) AS via_live
FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000001', 10, policy => 'linucb', seed => 5) \gset
ROLLBACK;
SELECT :'via_profile' = :'via_live' AS same_list, :'via_profile' <> '' AS listed;
-- exclude_recent reads the same from the profile and live
UPDATE icpml.bandit_settings SET exclude_recent = '5 hours 30 minutes';
SELECT array_agg(account_id ORDER BY account_id) AS not_recent_via_profile
FROM icpml.retrieve_candidates('00000000-0000-0000-0000-000000000001', 600, seed => 1)
WHERE account_id BETWEEN 1 AND 10;
BEGIN;
SELECT icpml.set_profile_triggers('user_interactions', false);
SELECT array_agg(account_id ORDER BY account_id) AS not_recent_live
FROM icpml.retrieve_candidates('00000000-0000-0000-0000-000000000001', 600, seed => 1)
WHERE account_id BETWEEN 1 AND 10;
ROLLBACK;
UPDATE icpml.bandit_settings SET exclude_recent = '0';
-- a new interaction is in the profile at once (the trigger), a dismissal
-- excludes at once
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-000000000002', r.account_id, 'dismiss'
FROM icpml.retrieve_candidates('00000000-0000-0000-0000-000000000002', 10, seed => 1) AS r
ORDER BY r.probability DESC, r.account_id LIMIT 1
RETURNING account_id AS dismissed \gset
SELECT user_id, valid, sticky_accounts = ARRAY[:dismissed::bigint] AS sticky_is_dismissed,
       recent_accounts[1] = :dismissed AS newest_is_dismissed
FROM icpml.user_profiles WHERE user_id = '00000000-0000-0000-0000-000000000002';
SELECT count(*) FILTER (WHERE account_id = :dismissed) AS dismissed_listed
FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000002', 100, policy => 'icp', candidates => 100);
-- an UPDATE or DELETE marks the user's row for a rebuild (recommendations
-- read the interactions live meanwhile); rebuild_user_profiles() restores it
UPDATE user_interactions SET interaction_type = 'view'
WHERE user_id = '00000000-0000-0000-0000-000000000002' AND account_id = :dismissed;
SELECT user_id, valid FROM icpml.user_profiles ORDER BY user_id;
SELECT count(*) FILTER (WHERE account_id = :dismissed) AS undismissed_listed
FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000002', 100, policy => 'icp', candidates => 100);
SELECT icpml.rebuild_user_profiles(only_invalid => true) AS rebuilt;
SELECT user_id, valid, sticky_accounts FROM icpml.user_profiles ORDER BY user_id;
-- under REPEATABLE READ a rebuild could miss a concurrent insert: refused
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT icpml.rebuild_user_profiles();
ROLLBACK;
-- TRUNCATE empties the profiles with the interactions
BEGIN;
TRUNCATE user_interactions;
SELECT count(*) AS profiles FROM icpml.user_profiles;
ROLLBACK;
-- disable_online_feedback() drops the triggers (the rows stay, unused)
SELECT icpml.disable_online_feedback();
SELECT count(*) AS profile_triggers FROM pg_trigger
WHERE tgrelid = 'user_interactions'::regclass AND tgname LIKE 'icpml_profile%';
SELECT icpml.enable_online_feedback();

-- visibility without row-level security: an account deleted since it was
-- scored is never listed (the listed rows are checked after ranking)
SELECT account_id AS top FROM icpml.account_candidates ORDER BY probability DESC, account_id LIMIT 1 \gset
DELETE FROM account_signals WHERE account_id = :top;
SELECT count(*) FILTER (WHERE account_id = :top) AS deleted_listed, count(*) AS listed
FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000002', 100, policy => 'icp', candidates => 100);
SELECT count(*) AS deleted_in_candidates FROM icpml.account_candidates WHERE account_id = :top;

-- safe exploration: the first exploit_slots slots go by the expected reward
-- (the greedy list's), the exploring policies explore below them
UPDATE icpml.bandit_settings SET exploit_slots = 2, epsilon = 1;
BEGIN;
SELECT string_agg(account_id::text, ',' ORDER BY rank) AS greedy_top
FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000002', 2, policy => 'greedy', candidates => 100) \gset
ROLLBACK;
BEGIN;
CREATE TEMP TABLE safe ON COMMIT DROP AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000002', 6, policy => 'linucb',
                                       candidates => 100, seed => 3);
SELECT 'linucb' AS policy,
       string_agg(l.account_id::text, ',' ORDER BY l.rank) FILTER (WHERE l.rank <= 2) = :'greedy_top' AS top_is_greedy,
       bool_and(r.propensity = 1) FILTER (WHERE l.rank <= 2) AS top_propensity_one,
       bool_and(r.propensity < 1) FILTER (WHERE l.rank > 2) AS below_propensity_below_one
FROM safe AS l JOIN icpml.recommendations AS r USING (recommendation_id);
ROLLBACK;
BEGIN;
CREATE TEMP TABLE safe ON COMMIT DROP AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000002', 6, policy => 'thompson',
                                       candidates => 100, seed => 3);
SELECT 'thompson' AS policy,
       string_agg(l.account_id::text, ',' ORDER BY l.rank) FILTER (WHERE l.rank <= 2) = :'greedy_top' AS top_is_greedy,
       bool_and(r.propensity = 1) FILTER (WHERE l.rank <= 2) AS top_propensity_one,
       bool_and(r.propensity < 1) FILTER (WHERE l.rank > 2) AS below_propensity_below_one
FROM safe AS l JOIN icpml.recommendations AS r USING (recommendation_id);
ROLLBACK;
BEGIN;
CREATE TEMP TABLE safe ON COMMIT DROP AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000002', 6, policy => 'epsilon_greedy',
                                       candidates => 100, seed => 3);
SELECT 'epsilon_greedy' AS policy,
       string_agg(l.account_id::text, ',' ORDER BY l.rank) FILTER (WHERE l.rank <= 2) = :'greedy_top' AS top_is_greedy,
       bool_and(r.propensity = 1) FILTER (WHERE l.rank <= 2) AS top_propensity_one,
       bool_and(r.propensity < 1) FILTER (WHERE l.rank > 2) AS below_propensity_below_one
FROM safe AS l JOIN icpml.recommendations AS r USING (recommendation_id);
ROLLBACK;
-- warm start: below exploit_slots, the share warm_start / (n + warm_start)
-- of the slots goes by mu too, n the impressions the shared model learnt
-- (here warm_start = n: half of them)
BEGIN;
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT user_id, account_id, 'save' FROM icpml.recommendations
WHERE status = 'pending' AND user_id = '00000000-0000-0000-0000-000000000002'
ORDER BY recommendation_id LIMIT 3;
SELECT n AS learnt FROM icpml.bandit_state WHERE scope = 'global' \gset
UPDATE icpml.bandit_settings SET exploit_slots = 0, warm_start = :learnt;
CREATE TEMP TABLE safe ON COMMIT DROP AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-000000000002', 6, policy => 'epsilon_greedy',
                                       candidates => 100, seed => 3);
SELECT :learnt > 0 AS learnt, count(*) FILTER (WHERE r.propensity = 1) AS greedy_slots,
       count(*) FILTER (WHERE r.propensity < 1) AS random_slots
FROM safe AS l JOIN icpml.recommendations AS r USING (recommendation_id);
ROLLBACK;
UPDATE icpml.bandit_settings SET exploit_slots = DEFAULT, epsilon = DEFAULT, warm_start = DEFAULT;

SET client_min_messages = warning;
SELECT icpml.disable_online_feedback();
TRUNCATE icpml.recommendations, icpml.bandit_state, icpml.account_feedback, icpml.account_scores,
         icpml.account_candidates, icpml.user_profiles;
UPDATE icpml.bandit_settings SET industries = NULL, technologies = NULL;
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
RESET client_min_messages;
UPDATE icpml.bandit_settings SET exclude_recent = DEFAULT;
