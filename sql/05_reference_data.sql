-- The reference schema loads twice without harm, and the generator is
-- deterministic by seed, realistic in shape, and carries a learnable truth.
SET client_min_messages = warning;
\set ECHO none
\i reference/icpml_reference_schema.sql
\i reference/icpml_reference_schema.sql
\i reference/icpml_generate.sql
\set ECHO all
RESET client_min_messages;

CREATE TEMP TABLE digests (run int, t text, digest text);
SELECT * FROM icpml_ref.generate(accounts => 3000, users => 8, interactions => 30000, seed => 7,
                                 as_of => '2026-01-01 00:00+00');
INSERT INTO digests
SELECT 1, 'account_signals', md5(string_agg(x::text, '|' ORDER BY x.account_id)) FROM account_signals x
UNION ALL SELECT 1, 'research_runs', md5(string_agg(x::text, '|' ORDER BY x.research_run_id)) FROM research_runs x
UNION ALL SELECT 1, 'user_interactions', md5(string_agg(x::text, '|' ORDER BY x.interaction_id)) FROM user_interactions x;

-- shape: researched share, verdict mix, funnel, missing values, skewed sizes
SELECT round(avg((researched_at IS NOT NULL)::int), 1) AS researched_share,
       round(avg(is_fit::int), 1) AS fit_share_of_labelled,
       round(avg((engineering_role_count IS NULL)::int), 2) < 0.10 AS some_missing,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY company_size) < avg(company_size) AS size_right_skewed
FROM account_features;
SELECT interaction_type, count(*) > 0 AS present
FROM user_interactions GROUP BY 1 ORDER BY count(*) DESC;
-- the hidden truth separates the verdicts (rank-based AUC well above 0.5)
WITH r AS (
  SELECT is_fit, rank() OVER (ORDER BY icpml_ref.true_fit_probability(account_id)) AS rk
  FROM account_features WHERE is_fit IS NOT NULL)
SELECT ((sum(rk) FILTER (WHERE is_fit) - count(*) FILTER (WHERE is_fit) * (count(*) FILTER (WHERE is_fit) + 1) / 2.0)
        / (count(*) FILTER (WHERE is_fit) * count(*) FILTER (WHERE NOT is_fit))) > 0.75 AS truth_auc_above_075
FROM r;

-- same seed and as_of: identical bytes; another seed: different data
SELECT * FROM icpml_ref.generate(accounts => 3000, users => 8, interactions => 30000, seed => 7,
                                 as_of => '2026-01-01 00:00+00');
INSERT INTO digests
SELECT 2, 'account_signals', md5(string_agg(x::text, '|' ORDER BY x.account_id)) FROM account_signals x
UNION ALL SELECT 2, 'research_runs', md5(string_agg(x::text, '|' ORDER BY x.research_run_id)) FROM research_runs x
UNION ALL SELECT 2, 'user_interactions', md5(string_agg(x::text, '|' ORDER BY x.interaction_id)) FROM user_interactions x;
SELECT * FROM icpml_ref.generate(accounts => 3000, users => 8, interactions => 30000, seed => 8,
                                 as_of => '2026-01-01 00:00+00');
INSERT INTO digests
SELECT 3, 'account_signals', md5(string_agg(x::text, '|' ORDER BY x.account_id)) FROM account_signals x;
SELECT t, count(DISTINCT digest) FILTER (WHERE run IN (1, 2)) AS distinct_same_seed,
       count(DISTINCT digest) AS distinct_all
FROM digests GROUP BY t ORDER BY t;

SELECT * FROM icpml_ref.generate(accounts => 0);

SET client_min_messages = warning;
DROP SCHEMA icpml_ref CASCADE;
DROP VIEW account_features;
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
