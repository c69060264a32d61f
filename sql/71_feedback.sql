-- Feedback: rewards by trigger and in batch, exactly once per impression,
-- expiry, the reward map, the reward over the window (a funnel of
-- interactions: the best, a capped sum, the first), later steps of a funnel
-- following the impression it started from, online state == rebuilt
-- state (also with forgetting), and lists that change with what users do.
\set VERBOSITY default
SET icpml.nthread = 1;
\i sql/include/reference_schema.sql
TRUNCATE icpml.recommendations, icpml.bandit_state, icpml.account_feedback;
-- the vocabularies come from this test's accounts (the first score_all() below)
UPDATE icpml.bandit_settings SET industries = NULL, technologies = NULL;
-- accounts acted on stay candidates here (learning from what users do; exclude_recent: 76_retrieval)
UPDATE icpml.bandit_settings SET exclude_recent = '0';

INSERT INTO account_signals (account_id, account_name, industry, engineering_role_count,
                             has_open_engineering_roles, total_open_roles, has_engineering_blog)
SELECT g, 'acct ' || g, (ARRAY['saas', 'fintech', 'devtools', 'retail'])[1 + g % 4],
       (g * 7) % 30, g % 3 <> 0, (g * 11) % 80, g % 2 = 0
FROM generate_series(1, 40) g;
INSERT INTO research_runs (account_id, company_size, funding_date, created_at)
SELECT g, 10 + (g * 37) % 2000, CASE WHEN g % 3 = 0 THEN current_date - (g * 13) % 700 END,
       now() - (g % 40) * interval '1 day'
FROM generate_series(1, 40) g WHERE g % 5 <> 0;
SELECT icpml.score_all();

-- the trigger goes on icpml.interactions_relation; enabling twice is harmless
SELECT icpml.enable_online_feedback();
SELECT icpml.enable_online_feedback();
SELECT tgname, tgrelid::regclass AS relation FROM pg_trigger WHERE tgname = 'icpml_feedback';

CREATE TEMP TABLE l1 AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000a', 5, policy => 'greedy');
SELECT count(*) AS states FROM icpml.bandit_state;

-- a contact with the first listed account rewards that impression (0.7),
-- and the global and the user's state take exactly one update
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-00000000000a', account_id, 'contact' FROM l1 WHERE rank = 1;
SELECT l1.rank, r.status, r.reward, r.reward_interaction_id IS NOT NULL AS attributed
FROM l1 JOIN icpml.recommendations r USING (recommendation_id) ORDER BY l1.rank;
SELECT scope, n FROM icpml.bandit_state ORDER BY scope;

-- a second, better interaction with the same account within the window:
-- the impression's reward becomes the better one (reward_aggregate 'max'),
-- and the state's count does not change (b alone takes the difference)
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-00000000000a', account_id, 'meeting' FROM l1 WHERE rank = 1;
-- another user's interaction with a listed account, and one with an account
-- that was not listed: nothing
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-00000000000b'::uuid, account_id, 'meeting' FROM l1 WHERE rank = 2
UNION ALL
SELECT '00000000-0000-0000-0000-00000000000a'::uuid, a, 'meeting'
FROM generate_series(1, 40) a WHERE a NOT IN (SELECT account_id FROM l1) AND a <= 3;
-- an interaction dated before the impression was served: nothing
INSERT INTO user_interactions (user_id, account_id, interaction_type, created_at)
SELECT '00000000-0000-0000-0000-00000000000a', account_id, 'meeting', now() - interval '1 hour'
FROM l1 WHERE rank = 2;
SELECT scope, n FROM icpml.bandit_state ORDER BY scope;

-- several interactions in one statement: each impression counted once,
-- the best of its interactions is its reward
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-00000000000a', l1.account_id, t.type
FROM l1 JOIN (VALUES (2, 1, 'view'), (3, 2, 'save'), (3, 3, 'view')) AS t(rank, ord, type) USING (rank)
ORDER BY t.ord;
-- a type that reward_map does not list rewards nothing: the impression stays pending
DELETE FROM icpml.reward_map WHERE interaction_type = 'research';
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-00000000000a', account_id, 'research' FROM l1 WHERE rank = 4;
-- reward_map changes are seen at once
INSERT INTO icpml.reward_map VALUES ('research', 0.4);
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-00000000000a', account_id, 'research' FROM l1 WHERE rank = 5;
UPDATE icpml.reward_map SET reward = 0.3 WHERE interaction_type = 'research';
SELECT l1.rank, r.status, r.reward FROM l1 JOIN icpml.recommendations r USING (recommendation_id)
ORDER BY l1.rank;
SELECT scope, n FROM icpml.bandit_state ORDER BY scope;

-- the state is consistent: chol * chol' = A
SELECT scope,
       (SELECT max(abs(s.a[i][j] - (SELECT sum(s.chol[i][k] * s.chol[j][k]) FROM generate_series(1, s.dim) k)))
        FROM generate_series(1, s.dim) i, generate_series(1, s.dim) j) < 1e-9 AS chol_matches_a,
       dim, array_length(b, 1) AS b_len
FROM icpml.bandit_state s ORDER BY scope;

-- batch feedback with the trigger off
SELECT icpml.disable_online_feedback();
SELECT count(*) AS triggers FROM pg_trigger WHERE tgname = 'icpml_feedback';
CREATE TEMP TABLE l2 AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000b', 4, policy => 'greedy');
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-00000000000b', account_id,
       CASE rank WHEN 1 THEN 'meeting' ELSE 'dismiss' END
FROM l2 WHERE rank <= 2;
SELECT l2.rank, r.status FROM l2 JOIN icpml.recommendations r USING (recommendation_id) ORDER BY l2.rank;
-- three: the two above, and the research interaction of user a that was
-- not rewarding when it happened (reward_map lists research again)
SELECT * FROM icpml.process_feedback();
-- idempotent
SELECT * FROM icpml.process_feedback();
SELECT l2.rank, r.status, r.reward FROM l2 JOIN icpml.recommendations r USING (recommendation_id)
ORDER BY l2.rank;
-- past the window everything still pending expires with reward 0, once
SELECT * FROM icpml.process_feedback(as_of => now() + interval '8 days');
SELECT * FROM icpml.process_feedback(as_of => now() + interval '8 days');
SELECT status, count(*), sum(reward) AS total_reward FROM icpml.recommendations GROUP BY status ORDER BY status;
-- every finalized impression updated the global state once
SELECT (SELECT n FROM icpml.bandit_state WHERE scope = 'global')
     = (SELECT count(*) FROM icpml.recommendations WHERE status <> 'pending') AS one_update_each;

-- the funnel of one recommendation: view, research, contact (each its own
-- statement) end with the contact's reward; the impression is counted once
-- in the shared and the user's state, its account's feedback sums the
-- reward once, and every interaction is in the event log with the change it
-- made; a dismissal later changes nothing
SELECT icpml.enable_online_feedback();
CREATE TEMP TABLE n0 AS SELECT n FROM icpml.bandit_state WHERE scope = 'global';
CREATE TEMP TABLE l3 AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000d', 3, policy => 'greedy');
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-00000000000d', account_id, 'view' FROM l3 WHERE rank = 1;
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-00000000000d', account_id, 'research' FROM l3 WHERE rank = 1;
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-00000000000d', account_id, 'contact' FROM l3 WHERE rank = 1;
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-00000000000d', account_id, 'dismiss' FROM l3 WHERE rank = 1;
SELECT l3.rank, r.status, r.reward FROM l3 JOIN icpml.recommendations r USING (recommendation_id)
ORDER BY l3.rank;
SELECT e.interaction_type, e.reward, round(e.delta::numeric, 6) AS delta,
       e.update_seq = r.finalize_seq AS first, e.update_seq IS NULL AS no_change
FROM l3 JOIN icpml.recommendations r USING (recommendation_id)
JOIN icpml.feedback_events e USING (recommendation_id)
ORDER BY e.interaction_id;
SELECT (SELECT n FROM icpml.bandit_state WHERE scope = 'global') - (SELECT n FROM n0) AS global_updates,
       (SELECT n FROM icpml.bandit_state WHERE scope = 'user:00000000-0000-0000-0000-00000000000d') AS user_updates,
       (SELECT round(f.reward::numeric, 6) = (SELECT round(sum(r.reward)::numeric, 6) FROM icpml.recommendations r
                                                WHERE r.account_id = f.account_id AND r.status <> 'pending')
        FROM icpml.account_feedback f JOIN l3 USING (account_id) WHERE l3.rank = 1) AS account_sums_rewards;
-- a capped sum (here 0.1 + 0.3 + 0.7, at most 0.9), and the first
-- interaction alone (0.3.0's rule)
UPDATE icpml.bandit_settings SET reward_aggregate = 'sum', reward_cap = 0.9;
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-00000000000d', account_id, t FROM l3, unnest(ARRAY['view', 'research']) AS t
WHERE rank = 2;
SELECT r.reward FROM l3 JOIN icpml.recommendations r USING (recommendation_id) WHERE l3.rank = 2;
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-00000000000d', account_id, 'contact' FROM l3 WHERE rank = 2;
UPDATE icpml.bandit_settings SET reward_aggregate = 'first';
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-00000000000d', account_id, t FROM l3, unnest(ARRAY['view', 'meeting']) AS t
WHERE rank = 3;
SELECT l3.rank, r.status, round(r.reward::numeric, 6) AS reward FROM l3 JOIN icpml.recommendations r USING (recommendation_id)
WHERE l3.rank > 1 ORDER BY l3.rank;
UPDATE icpml.bandit_settings SET reward_aggregate = DEFAULT, reward_cap = DEFAULT;
-- a later step of a funnel credits the impression the funnel started from
-- (attribution 'funnel'), not a re-show meanwhile: user e views the first
-- account of list l4, both accounts are shown again (l5); the research and
-- the contact that follow raise l4's impression to the contact's 0.7 and
-- l5's re-show stays pending (it expires with 0); the first interaction
-- with the other account, which nobody acted on, credits the most recent
-- impression (l5's); with attribution 'latest' a later step credits the
-- re-show
CREATE TEMP TABLE l4 AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000e', 2, policy => 'icp');
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-00000000000e', account_id, 'view' FROM l4 WHERE rank = 1;
CREATE TEMP TABLE l5 AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000e', 2, policy => 'icp');
SELECT count(*) AS reshown FROM l4 JOIN l5 USING (account_id);
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-00000000000e', account_id, t FROM l4, unnest(ARRAY['research', 'contact']) AS t
WHERE rank = 1;
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-00000000000e', account_id, 'view' FROM l4 WHERE rank = 2;
SELECT l.list, l.rank, r.status, r.reward,
       (SELECT string_agg(e.interaction_type, ' ' ORDER BY e.interaction_id)
        FROM icpml.feedback_events AS e WHERE e.recommendation_id = r.recommendation_id) AS events
FROM (SELECT 'l4' AS list, * FROM l4 UNION ALL SELECT 'l5', * FROM l5) AS l
JOIN icpml.recommendations r USING (recommendation_id) ORDER BY l.rank, l.list;
UPDATE icpml.bandit_settings SET attribution = 'latest';
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-00000000000e', account_id, 'save' FROM l4 WHERE rank = 1;
UPDATE icpml.bandit_settings SET attribution = DEFAULT;
\set VERBOSITY terse
UPDATE icpml.bandit_settings SET attribution = 'oldest';
\set VERBOSITY default
SELECT l.list, l.rank, r.status, r.reward
FROM (SELECT 'l4' AS list, * FROM l4 UNION ALL SELECT 'l5', * FROM l5) AS l
JOIN icpml.recommendations r USING (recommendation_id) WHERE l.rank = 1 ORDER BY l.list;
-- nothing was left queued: with no contention each writer folds its own update
SELECT count(*) AS queued FROM icpml.bandit_queue;
-- the batch does not count any of them again
SELECT rewarded, improved FROM icpml.process_feedback();
SELECT icpml.disable_online_feedback();

-- online == rebuild
CREATE TEMP TABLE online AS SELECT * FROM icpml.bandit_state;
SELECT icpml.rebuild_bandit_state();
SELECT scope, o.n = r.n AS same_n,
       (SELECT max(abs(x - y)) FROM unnest(o.a, r.a) u(x, y)) < 1e-9 AS same_a,
       (SELECT max(abs(x - y)) FROM unnest(o.b, r.b) u(x, y)) < 1e-9 AS same_b,
       (SELECT max(abs(x - y)) FROM unnest(o.chol, r.chol) u(x, y)) < 1e-9 AS same_chol
FROM online o FULL JOIN icpml.bandit_state r USING (scope) ORDER BY scope;

-- what users do changes the state and the lists: many rounds of Thompson
-- sampling, users viewing every account shown to them and then saving the
-- devtools ones (a later, better reward), with forgetting (gamma < 1) and
-- frequent refactoring
UPDATE icpml.bandit_settings SET gamma = 0.97, refactor_every = 3;
SELECT icpml.rebuild_bandit_state() AS replayed;
SELECT icpml.enable_online_feedback();
CREATE TEMP TABLE before AS
SELECT account_id, expected_reward
FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000a', 40, policy => 'greedy');
DO $$
DECLARE
  i int;
  u uuid;
BEGIN
  FOR i IN 1..30 LOOP
    u := CASE WHEN i % 2 = 0 THEN '00000000-0000-0000-0000-00000000000a'::uuid
              ELSE '00000000-0000-0000-0000-00000000000b'::uuid END;
    CREATE TEMP TABLE round_list AS
    SELECT r.account_id, a.industry
    FROM icpml.recommend_accounts(u, 3, policy => 'thompson', seed => i) r
    JOIN account_signals a USING (account_id);
    INSERT INTO user_interactions (user_id, account_id, interaction_type)
    SELECT u, account_id, 'view' FROM round_list;
    -- then the devtools accounts are saved: a later, better reward
    INSERT INTO user_interactions (user_id, account_id, interaction_type)
    SELECT u, account_id, 'save' FROM round_list WHERE industry = 'devtools';
    DROP TABLE round_list;
  END LOOP;
END
$$;
SELECT status, count(*) FROM icpml.recommendations GROUP BY status ORDER BY status;
SELECT (SELECT n FROM icpml.bandit_state WHERE scope = 'global')
     = (SELECT count(*) FROM icpml.recommendations WHERE status <> 'pending') AS one_update_each;
-- the expected reward of devtools accounts rose more than that of the rest
-- (every shown account was at least viewed), and they lead the list
SELECT avg(r.expected_reward - b.expected_reward) FILTER (WHERE a.industry = 'devtools')
     > avg(r.expected_reward - b.expected_reward) FILTER (WHERE a.industry <> 'devtools') AS devtools_rose_more
FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000a', 40, policy => 'greedy') r
JOIN before b USING (account_id)
JOIN account_signals a USING (account_id);
SELECT count(*) FILTER (WHERE a.industry = 'devtools') AS devtools_in_top_5
FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000a', 5, policy => 'greedy') r
JOIN account_signals a USING (account_id);
-- and the rebuild reproduces the online state with forgetting too
DROP TABLE online;
CREATE TEMP TABLE online AS SELECT * FROM icpml.bandit_state;
SELECT icpml.rebuild_bandit_state() = (SELECT count(*) FROM icpml.recommendations WHERE status <> 'pending')
  AS replayed_all;
SELECT scope, o.n = r.n AS same_n,
       (SELECT max(abs(x - y)) FROM unnest(o.a, r.a) u(x, y)) < 1e-9 AS same_a,
       (SELECT max(abs(x - y)) FROM unnest(o.b, r.b) u(x, y)) < 1e-9 AS same_b
FROM online o FULL JOIN icpml.bandit_state r USING (scope) ORDER BY scope;

-- the trigger refuses to be installed any other way
CREATE TRIGGER wrong AFTER INSERT ON user_interactions FOR EACH ROW EXECUTE FUNCTION icpml.feedback_trigger();
INSERT INTO user_interactions (user_id, account_id, interaction_type)
VALUES ('00000000-0000-0000-0000-00000000000a', 1, 'view');
DROP TRIGGER wrong ON user_interactions;

UPDATE icpml.bandit_settings SET gamma = 1, refactor_every = 100;
SELECT icpml.disable_online_feedback();
SET client_min_messages = warning;
DROP VIEW account_features;
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
RESET client_min_messages;
TRUNCATE icpml.account_scores, icpml.recommendations, icpml.bandit_state;
UPDATE icpml.bandit_settings SET exclude_recent = DEFAULT;
