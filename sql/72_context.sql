-- The recommender's context beyond the account's own signals: vocabulary
-- slots (industries, technologies), fatigue from ignored impressions, the
-- account engagement every user's feedback builds, and the position-based
-- update (an impression at rank r counts with its examination probability).
\set VERBOSITY default
SET icpml.nthread = 1;
\i sql/include/reference_schema.sql
TRUNCATE icpml.recommendations, icpml.bandit_state, icpml.account_feedback;
UPDATE icpml.bandit_settings SET industries = NULL, technologies = NULL;
-- accounts acted on stay candidates here (the context of accounts the user acted on; exclude_recent: 76_retrieval)
UPDATE icpml.bandit_settings SET exclude_recent = '0';

-- 30 accounts in three industries (saas most frequent), three stacks
INSERT INTO account_signals (account_id, account_name, industry, engineering_role_count,
                             has_open_engineering_roles, total_open_roles, has_engineering_blog)
SELECT g, 'acct ' || g, (ARRAY['saas', 'saas', 'fintech', 'devtools'])[1 + g % 4],
       (g * 7) % 30, g % 3 <> 0, (g * 11) % 80, g % 2 = 0
FROM generate_series(1, 30) g;
INSERT INTO research_runs (account_id, company_size, tech_stack, created_at)
SELECT g, 10 + (g * 37) % 2000,
       CASE g % 3 WHEN 0 THEN '{postgresql,go}' WHEN 1 THEN '{python,aws,postgresql}' ELSE '{php}' END::text[],
       now() - (g % 40) * interval '1 day'
FROM generate_series(1, 30) g;

-- the first score_all() fills the vocabularies, most frequent first
SELECT icpml.score_all();
SELECT industries, technologies FROM icpml.bandit_settings;

-- a listed account's industry and technologies light their slots (context
-- entries 28..39 and 40..63, 1-based) and nothing else
SELECT icpml.enable_online_feedback();
CREATE TEMP TABLE l1 AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000a', 3, policy => 'greedy');
SELECT l1.rank, f.industry, f.tech_stack,
       (SELECT array_agg(s.industries[i - 27] ORDER BY i) FROM generate_series(28, 39) i
        WHERE r.context[i] = 1) AS industry_slots,
       (SELECT array_agg(s.technologies[i - 39] ORDER BY i) FROM generate_series(40, 63) i
        WHERE r.context[i] = 1) AS technology_slots,
       array_length(r.context, 1) AS dim
FROM l1 JOIN icpml.recommendations r USING (recommendation_id)
JOIN account_features f ON f.account_id = l1.account_id
CROSS JOIN icpml.bandit_settings s
ORDER BY l1.rank;

-- fatigue: user a acts on the first account (a view rewards it) and ignores
-- the other two; in the next list the two ignored ones carry fatigue
-- 1 - exp(-0.9 / 10) (one list since, fatigue_decay 0.9) and ignored
-- 1 - exp(-e(rank) / 3) (e(2) = 1/log2(3), e(3) = 1/2), the viewed one 0
-- (the next list holds all 30 accounts)
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-00000000000a', account_id, 'view' FROM l1 WHERE rank = 1;
CREATE TEMP TABLE l2 AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000a', 30, policy => 'greedy');
SELECT l1.rank AS rank_before, round(r.context[21]::numeric, 4) AS fatigue,
       round(r.context[22]::numeric, 4) AS ignored
FROM l1 JOIN l2 USING (account_id)
JOIN icpml.recommendations r ON r.recommendation_id = l2.recommendation_id
ORDER BY l1.rank;
SELECT count(*) FILTER (WHERE r.context[21] > 0 OR r.context[22] > 0) AS fatigued_new_accounts
FROM l2 JOIN icpml.recommendations r USING (recommendation_id)
WHERE l2.account_id NOT IN (SELECT account_id FROM l1);
-- another user is not fatigued by user a's lists
CREATE TEMP TABLE lb AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000b', 30, policy => 'greedy');
SELECT count(*) AS listed, count(*) FILTER (WHERE r.context[21] > 0 OR r.context[22] > 0) AS fatigued_for_b
FROM lb JOIN icpml.recommendations r USING (recommendation_id);

-- position-based update: the view at rank 1 added x x' to A; expiring the
-- ignored impressions of l1 (ranks 2 and 3) adds (1/log2(3))^2 x x' and
-- (1/log2(4))^2 x x': the bias entry of A is lambda + 1 + 0.3982 + 0.25
TRUNCATE icpml.recommendations;
TRUNCATE icpml.bandit_state, icpml.account_feedback;
CREATE TEMP TABLE l3 AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000c', 3, policy => 'greedy');
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT '00000000-0000-0000-0000-00000000000c', account_id, 'view' FROM l3 WHERE rank = 1;
SELECT * FROM icpml.process_feedback(as_of => now() + interval '8 days');
SELECT scope, n, round(a[1][1]::numeric, 4) AS a_bias FROM icpml.bandit_state ORDER BY scope;
UPDATE icpml.bandit_settings SET position_bias = 0;
SELECT icpml.rebuild_bandit_state();
SELECT scope, n, round(a[1][1]::numeric, 4) AS a_bias_without_correction
FROM icpml.bandit_state ORDER BY scope;
UPDATE icpml.bandit_settings SET position_bias = 1;
SELECT icpml.rebuild_bandit_state();

-- account engagement: every user's feedback summed per account (examined
-- weighted like the update), and another user's context reads it as
-- (reward + 3 m0) / (examined + 3), m0 = the candidates' pooled rate
-- 0.1 / (1 + 0.6309 + 0.5) = 0.0469: an account nobody has seen gets m0
SELECT l3.rank, f.impressions, round(f.examined::numeric, 4) AS examined, f.reward
FROM l3 JOIN icpml.account_feedback f USING (account_id) ORDER BY l3.rank;
CREATE TEMP TABLE ld AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000d', 30, policy => 'greedy');
SELECT l3.rank, round(r.context[64]::numeric, 4) AS account_engagement
FROM ld JOIN icpml.recommendations r USING (recommendation_id)
JOIN l3 ON l3.account_id = ld.account_id
ORDER BY l3.rank;
SELECT count(*) AS unseen, count(*) FILTER (WHERE round(r.context[64]::numeric, 4) = 0.0469) AS at_m0
FROM ld JOIN icpml.recommendations r USING (recommendation_id)
WHERE ld.account_id NOT IN (SELECT account_id FROM l3);
-- rebuild recomputes the sums from the log: the same numbers
CREATE TEMP TABLE online_feedback AS SELECT * FROM icpml.account_feedback;
SELECT * FROM icpml.process_feedback(as_of => now() + interval '8 days');
CREATE TEMP TABLE online_all AS SELECT * FROM icpml.account_feedback;
SELECT icpml.rebuild_bandit_state();
SELECT count(*) AS accounts,
       count(*) FILTER (WHERE o.impressions = r.impressions AND abs(o.examined - r.examined) < 1e-9
                          AND abs(o.reward - r.reward) < 1e-9) AS same
FROM online_all o FULL JOIN icpml.account_feedback r USING (account_id);

-- vocabulary: explicit lists, bad lists, and a change after learning
SELECT * FROM icpml.set_bandit_vocabulary(industries => ARRAY['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm']);
SELECT * FROM icpml.set_bandit_vocabulary(technologies => ARRAY['go', 'go']);
SELECT * FROM icpml.set_bandit_vocabulary(industries => ARRAY['saas', NULL]);
-- the same vocabulary again: nothing changes, no reset needed
SELECT * FROM icpml.set_bandit_vocabulary();
SELECT count(*) AS states FROM icpml.bandit_state;
SELECT * FROM icpml.set_bandit_vocabulary(industries => ARRAY['fintech', 'saas']);
SELECT * FROM icpml.set_bandit_vocabulary(industries => ARRAY['fintech', 'saas'], reset => true);
SELECT count(*) AS states FROM icpml.bandit_state;
SELECT industries, technologies FROM icpml.bandit_settings;

-- a feature relation without tech_stack: the derived technology vocabulary is empty
CREATE VIEW no_stack AS SELECT account_id, industry, engineering_role_count FROM account_features;
SET icpml.feature_relation = 'no_stack';
SELECT * FROM icpml.set_bandit_vocabulary(industries => '{}');
RESET icpml.feature_relation;
SELECT icpml.disable_online_feedback();

-- the role counts are scaled as the rules scale them, with the caps of
-- icpml.rule_settings: entry 4 is log(1 + n) / log(1 + engineering_roles_cap),
-- entry 6 log(1 + n) / log(1 + open_roles_cap), both capped at 1 (the
-- context is stored as real[]: compared to 1e-6)
CREATE TEMP TABLE le AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000e', 30, policy => 'greedy');
SELECT count(*) AS accounts,
       count(*) FILTER (WHERE abs(r.context[4] - least(1, ln(1 + f.engineering_role_count) / ln(51))) < 1e-6
                          AND abs(r.context[6] - least(1, ln(1 + f.total_open_roles) / ln(201))) < 1e-6) AS default_caps
FROM le JOIN icpml.recommendations r USING (recommendation_id)
JOIN account_features f ON f.account_id = le.account_id;
UPDATE icpml.rule_settings SET engineering_roles_cap = 10, open_roles_cap = 20;
CREATE TEMP TABLE le2 AS
SELECT * FROM icpml.recommend_accounts('00000000-0000-0000-0000-00000000000e', 30, policy => 'greedy');
SELECT count(*) AS accounts,
       count(*) FILTER (WHERE abs(r.context[4] - least(1, ln(1 + f.engineering_role_count) / ln(11))) < 1e-6
                          AND abs(r.context[6] - least(1, ln(1 + f.total_open_roles) / ln(21))) < 1e-6) AS new_caps,
       count(*) FILTER (WHERE f.engineering_role_count >= 10 AND r.context[4] = 1) AS capped
FROM le2 JOIN icpml.recommendations r USING (recommendation_id)
JOIN account_features f ON f.account_id = le2.account_id;
UPDATE icpml.rule_settings SET engineering_roles_cap = DEFAULT, open_roles_cap = DEFAULT;
UPDATE icpml.bandit_settings SET exclude_recent = DEFAULT;
