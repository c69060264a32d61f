-- Materialised scores, explanations and prewarm, with the rules scoring.
\set VERBOSITY default
\i sql/include/reference_schema.sql

INSERT INTO account_signals (account_id, industry, engineering_role_count, has_open_engineering_roles,
                             total_open_roles, has_engineering_blog)
SELECT g, (ARRAY['saas', 'fintech', 'retail'])[1 + g % 3], (g * 7) % 45, g % 4 <> 0, (g * 11) % 150, g % 3 = 0
FROM generate_series(1, 2500) g;
INSERT INTO research_runs (account_id, company_size, funding_amount_usd, funding_date, tech_stack)
SELECT g, 10 + (g * 37) % 3000, CASE WHEN g % 5 = 0 THEN 1000000 * (g % 17) END,
       CASE WHEN g % 5 = 0 THEN current_date - (g % 700) END,
       CASE g % 4 WHEN 0 THEN '{postgresql,go}' WHEN 1 THEN '{python,aws,kubernetes}' WHEN 2 THEN '{php}'::text[] END
FROM generate_series(1, 2500) g WHERE g % 10 <> 0;

SELECT icpml.prewarm();

-- score_all: one row per account, equal to icp_score_batch
SELECT icpml.score_all();
SELECT count(*), min(score), max(score), count(DISTINCT priority) AS tiers, min(model), max(model)
FROM icpml.account_scores;
SELECT count(*) AS mismatches
FROM icpml.account_scores s
JOIN icpml.icp_score_batch(ARRAY(SELECT generate_series(1, 2500)::bigint)) b USING (account_id)
WHERE (s.score, s.priority, s.probability) IS DISTINCT FROM (b.score, b.priority, b.probability);
SELECT priority, count(*) FROM icpml.account_scores GROUP BY 1 ORDER BY 1;

-- a second refresh: accounts that left the relation leave the table
DELETE FROM account_signals WHERE account_id > 2000;
SELECT icpml.score_all(batch_size => 100);
SELECT count(*), max(account_id) FROM icpml.account_scores;
SELECT icpml.score_all(batch_size => 5);

-- explain: every factor plus the bias, summing to the logit of the probability
SELECT feature, value, round(contribution::numeric, 4) AS contribution, method
FROM icpml.explain_icp_score(4);
SELECT round(sum(e.contribution)::numeric, 9) = round(ln(s.probability / (1 - s.probability))::numeric, 9) AS sums_to_logit
FROM icpml.explain_icp_score(4) e, icpml.icp_score(4) s
GROUP BY s.probability;
SELECT bool_and(abs(x.total - ln(s.probability / (1 - s.probability))) < 1e-9) AS all_sum_to_logit
FROM generate_series(1, 200) g
CROSS JOIN LATERAL (SELECT sum(contribution) AS total FROM icpml.explain_icp_score(g)) x
CROSS JOIN LATERAL icpml.icp_score(g) s;
SELECT * FROM icpml.explain_icp_score(999999);

SET client_min_messages = warning;
DROP VIEW account_features;
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
RESET client_min_messages;
TRUNCATE icpml.account_scores;
