-- Bad input: clear errors or documented NULLs, never a crash.
\set VERBOSITY default
\i sql/include/reference_schema.sql
INSERT INTO account_signals (account_id, engineering_role_count, has_open_engineering_roles,
                             total_open_roles, has_engineering_blog)
VALUES (1, 10, true, 20, true);

-- unknown account
SELECT * FROM icpml.icp_score(424242);
-- NULL id: STRICT, one row of NULLs
SELECT * FROM icpml.icp_score(NULL);
-- arrays: multi-dimensional, over the limit
SELECT * FROM icpml.icp_score_batch(ARRAY[[1, 2], [3, 4]]);
SET icpml.max_batch_size = 3;
SELECT * FROM icpml.icp_score_batch(ARRAY[1, 2, 3, 4]);
SELECT count(*) FROM icpml.icp_score_batch(ARRAY[1, 2, 3]);
RESET icpml.max_batch_size;
-- a large batch works (and is interruptible)
SELECT count(*), count(score) FROM icpml.icp_score_batch(ARRAY(SELECT g FROM generate_series(1, 50000) g));

-- NaN, Infinity and negative values are missing (they contribute nothing)
CREATE TABLE odd_features (
  id bigint PRIMARY KEY,
  engineering_role_count double precision,
  has_open_engineering_roles boolean,
  total_open_roles numeric,
  has_engineering_blog boolean,
  company_size real,
  funding_amount_usd double precision,
  funding_date date,
  tech_stack text[]
);
INSERT INTO odd_features VALUES
  (1, NULL,        NULL, NULL, NULL, NULL,        NULL,       NULL,       NULL),
  (2, 'NaN',       NULL, 'NaN', NULL, 'Infinity', 'NaN',      'infinity', '{}'),
  (3, '-Infinity', NULL, -5,   NULL, -100,        -1,         current_date - 10, '{NULL,go}'),
  (4, 'Infinity',  NULL, NULL, NULL, NULL,        '-Infinity', current_date + 30, NULL);
SET icpml.feature_relation = 'odd_features';
SET icpml.feature_key = 'id';
SET icpml.top_factors = 8;
SELECT account_id, score, round(probability::numeric, 4) AS probability,
       (SELECT string_agg(format('%s=%s', f->>'factor', round((f->>'contribution')::numeric, 4)), ', ')
        FROM jsonb_array_elements(factors) f) AS factors
FROM icpml.icp_score_batch(ARRAY[1, 2, 3, 4]);
-- raw values are reported as JSON (dates in ISO format whatever DateStyle says)
SET DateStyle = 'German';
SELECT factors->0->'value' = to_jsonb(to_char(current_date - 10, 'YYYY-MM-DD')) AS iso_date
FROM icpml.icp_score(3);
RESET DateStyle;

-- duplicate keys in the feature relation
CREATE TABLE dup_features AS SELECT * FROM odd_features;
INSERT INTO dup_features SELECT * FROM odd_features WHERE id = 1;
SET icpml.feature_relation = 'dup_features';
SELECT * FROM icpml.icp_score(1);
SELECT * FROM icpml.icp_score_batch(ARRAY[1]);

-- missing relation, bad name, missing column, wrong type, non-integer key
SET icpml.feature_relation = 'no_such_table';
SELECT * FROM icpml.icp_score(1);
-- a setting names a relation, it is never SQL: refused when set
SET icpml.feature_relation = 'a.b.c.d';
SET icpml.feature_relation = '';
SET icpml.feature_relation = 'public.account_features; SELECT 1';
SET icpml.interactions_relation = 'x WHERE true';
SET icpml.feature_key = '';
SHOW icpml.feature_relation;
SET icpml.feature_relation = 'odd_features';
-- a rule column the relation lacks reads as NULL (a NOTICE), the key does not (12_rules_columns)
ALTER TABLE odd_features RENAME COLUMN tech_stack TO stack;
SELECT * FROM icpml.icp_score(1);
ALTER TABLE odd_features RENAME COLUMN stack TO tech_stack;
ALTER TABLE odd_features ALTER COLUMN has_engineering_blog TYPE point USING NULL;
SELECT * FROM icpml.icp_score(1);
ALTER TABLE odd_features ALTER COLUMN has_engineering_blog TYPE boolean USING NULL;
SET icpml.feature_key = 'tech_stack';
SELECT * FROM icpml.icp_score(1);
SET icpml.feature_key = 'no_such_key';
SELECT * FROM icpml.icp_score(1);
SET icpml.feature_key = 'id';
SELECT score FROM icpml.icp_score(1);
-- the relation is dropped and created again under the same name
DROP TABLE odd_features;
SELECT * FROM icpml.icp_score(1);
CREATE TABLE odd_features AS SELECT * FROM dup_features WHERE id > 1;
SELECT account_id, score FROM icpml.icp_score(2);

SET client_min_messages = warning;
DROP VIEW account_features;
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
