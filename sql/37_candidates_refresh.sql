-- The recommender's candidates follow every scoring run, writing only what
-- changed: a rescore that changes nothing leaves every account_candidates
-- row untouched (not rewritten, not even row-locked: xmax stays 0, the
-- tuple stays where it was); a changed signal rewrites exactly its
-- account's row; the first fill and refresh_candidates() fill an empty table.
\set VERBOSITY default
SET icpml.nthread = 1;
\i sql/include/reference_schema.sql
TRUNCATE icpml.recommendations, icpml.bandit_state, icpml.account_feedback, icpml.account_scores,
         icpml.account_candidates, icpml.user_profiles;
UPDATE icpml.bandit_settings SET industries = NULL, technologies = NULL;
INSERT INTO account_signals (account_id, account_name, industry, engineering_role_count,
                             has_open_engineering_roles, total_open_roles, has_engineering_blog)
SELECT g, 'acct ' || g, (ARRAY['saas', 'fintech', 'retail'])[1 + g % 3], (g * 7) % 30,
       g % 3 <> 0, (g * 11) % 80, g % 2 = 0
FROM generate_series(1, 300) g;
INSERT INTO research_runs (account_id, company_size, funding_date, tech_stack, created_at)
SELECT g, 20 + (g * 37) % 900, CASE WHEN g % 3 = 0 THEN date '2026-01-01' - g END,
       CASE WHEN g % 2 = 0 THEN '{postgresql,go}' ELSE '{python,aws}' END::text[],
       timestamptz '2026-01-01 00:00+00' - g * interval '1 day'
FROM generate_series(1, 300) g;

-- the first fill: every scored account is a candidate
SELECT icpml.score_all();
SELECT count(*) AS candidates,
       bool_and(c.probability = s.probability AND c.score = s.score AND c.priority = s.priority) AS same_scores
FROM icpml.account_candidates AS c JOIN icpml.account_scores AS s USING (account_id);
CREATE TEMP TABLE before_rescore AS
SELECT account_id, ctid::text AS at, xmin::text AS written_by FROM icpml.account_candidates;

-- nothing changed: no row rewritten, none locked
SELECT icpml.score_all();
SELECT count(*) AS candidates,
       count(*) FILTER (WHERE c.ctid::text <> b.at OR c.xmin::text <> b.written_by) AS rewritten,
       count(*) FILTER (WHERE c.xmax::text <> '0') AS locked
FROM icpml.account_candidates AS c JOIN before_rescore AS b USING (account_id);

-- one signal changed: exactly that row is rewritten, with the new value
UPDATE account_signals SET industry = 'devtools' WHERE account_id = 42;
SELECT icpml.score_all();
SELECT count(*) FILTER (WHERE c.ctid::text <> b.at OR c.xmin::text <> b.written_by) AS rewritten,
       min(c.account_id) FILTER (WHERE c.ctid::text <> b.at) AS which,
       min(c.industry) FILTER (WHERE c.account_id = 42) AS industry,
       count(*) FILTER (WHERE c.xmax::text <> '0' AND c.account_id <> 42) AS others_locked
FROM icpml.account_candidates AS c JOIN before_rescore AS b USING (account_id);

-- a score change alone (not a signal the candidates keep) is written too
UPDATE account_signals SET engineering_role_count = 29, has_open_engineering_roles = true,
                           has_engineering_blog = true WHERE account_id = 43;
SELECT icpml.score_all();
SELECT count(*) FILTER (WHERE c.ctid::text <> b.at OR c.xmin::text <> b.written_by) AS rewritten,
       bool_and(c.probability = s.probability AND c.score = s.score AND c.priority = s.priority) AS same_scores
FROM icpml.account_candidates AS c JOIN before_rescore AS b USING (account_id)
JOIN icpml.account_scores AS s USING (account_id);

-- refresh_candidates() into an empty table, then again: nothing rewritten
TRUNCATE icpml.account_candidates;
SELECT icpml.refresh_candidates() AS refreshed;
TRUNCATE before_rescore;
INSERT INTO before_rescore SELECT account_id, ctid::text, xmin::text FROM icpml.account_candidates;
SELECT icpml.refresh_candidates() AS refreshed;
SELECT count(*) AS candidates,
       count(*) FILTER (WHERE c.ctid::text <> b.at OR c.xmin::text <> b.written_by) AS rewritten,
       count(*) FILTER (WHERE c.xmax::text <> '0') AS locked
FROM icpml.account_candidates AS c JOIN before_rescore AS b USING (account_id);

DROP TABLE before_rescore;
TRUNCATE icpml.account_scores, icpml.account_candidates;
SET client_min_messages = warning;
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
RESET client_min_messages;
