-- Rule-based ICP score over the reference schema.
\set VERBOSITY default
\i sql/include/reference_schema.sql

-- Fixed dates relative to today keep funding recency deterministic.
INSERT INTO account_signals (account_id, account_name, industry, engineering_role_count,
                             has_open_engineering_roles, total_open_roles, has_engineering_blog)
VALUES (1, 'Ideal Inc',   'devtools', 40, true,  120, true),
       (2, 'Okay Ltd',    'saas',      5, true,   12, false),
       (3, 'Nope GmbH',   'retail',    0, false,   2, false),
       (4, 'Unknown LLC', NULL,     NULL, NULL,  NULL, NULL),
       (5, 'Huge Corp',   'fintech', 300, true, 2000, true);
INSERT INTO research_runs (account_id, company_size, funding_amount_usd, funding_date, tech_stack, fit_verdict, created_at)
VALUES (1, 300,  25000000, current_date - 90,  '{PostgreSQL,python,kubernetes,aws,go}', 'fit', now() - interval '2 days'),
       (2, 40,     500000, current_date - 400, '{python,react}', 'unsure', now() - interval '1 day'),
       (3, 8,        NULL, NULL,               '{php}', 'not_fit', now()),
       (5, 50000, 1000000000, current_date - 2000, '{java,aws}', NULL, now()),
       -- an older run of account 2 is ignored (the latest counts)
       (2, 9999,       NULL, NULL, '{}', 'fit', now() - interval '30 days');

SELECT account_id, score, priority, round(probability::numeric, 4) AS probability,
       model, model_version, factor_method
FROM icpml.icp_score_batch(ARRAY[1, 2, 3, 4, 5]);

-- the top factors, largest contribution first (icpml.top_factors of them)
SELECT f->>'factor' AS factor, f->'value' AS value, round((f->>'contribution')::numeric, 4) AS contribution
FROM icpml.icp_score(1), jsonb_array_elements(factors) AS f;
SET icpml.top_factors = 8;
SELECT jsonb_array_length(factors) AS n_factors FROM icpml.icp_score(1);
SELECT jsonb_array_length(factors) AS n_factors FROM icpml.icp_score(4);  -- nothing known: no factors
SET icpml.top_factors = 0;
SELECT factors FROM icpml.icp_score(1);
RESET icpml.top_factors;

-- named parameters (how PostgREST calls it)
SELECT score, priority FROM icpml.icp_score(account_id => 2);
SELECT count(*) FROM icpml.icp_score_batch(account_ids => ARRAY[1, 2]);

-- the batch keeps input order and duplicates; unknown ids and NULLs give NULL scores
SELECT account_id, score, priority, model
FROM icpml.icp_score_batch(ARRAY[3, 1, 999, NULL, 3]);
SELECT count(*) FROM icpml.icp_score_batch('{}');
SELECT * FROM icpml.icp_score_batch(NULL);

-- scores rise with the probability, 1..10, and tiers follow rule_settings
SELECT bool_and(score BETWEEN 1 AND 10) AS in_range,
       bool_and(score = least(10, 1 + floor(probability * 10)::int)) AS score_from_probability
FROM icpml.icp_score_batch(ARRAY[1, 2, 3, 4, 5]);

-- configuration: weights and settings are tables; a change is seen at once
UPDATE icpml.rule_weights SET weight = 0 WHERE factor = 'tech_stack_alignment';
SELECT score, round(probability::numeric, 4) AS probability FROM icpml.icp_score(1);
UPDATE icpml.rule_settings SET target_stack = '{PHP}', high_min_score = 6, medium_min_score = 2;
UPDATE icpml.rule_weights SET weight = 5 WHERE factor = 'tech_stack_alignment';
SELECT account_id, score, priority FROM icpml.icp_score_batch(ARRAY[1, 2, 3]);
UPDATE icpml.rule_weights SET weight = 2 WHERE factor = 'tech_stack_alignment';
UPDATE icpml.rule_settings SET target_stack = DEFAULT, high_min_score = DEFAULT, medium_min_score = DEFAULT;
SELECT score, priority FROM icpml.icp_score(1);
-- bad configuration is refused by the tables
UPDATE icpml.rule_weights SET weight = 'NaN' WHERE factor = 'bias';
INSERT INTO icpml.rule_weights VALUES ('shoe_size', 1, 'no such factor');
UPDATE icpml.rule_settings SET medium_min_score = 9;
INSERT INTO icpml.rule_settings DEFAULT VALUES;
DELETE FROM icpml.rule_settings;
SELECT score FROM icpml.icp_score(1);
INSERT INTO icpml.rule_settings DEFAULT VALUES;
SELECT score FROM icpml.icp_score(1);

SET client_min_messages = warning;
DROP VIEW account_features;
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
