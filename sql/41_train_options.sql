-- Parameters and text as users write them (#14 item 4): XGBoost's aliases
-- (stored under the canonical names), unknown keys refused with the valid
-- ones, text categories and tag tokens optionally case- and
-- whitespace-folded (recorded in the spec, applied when scoring), and the
-- level limits as options.
\set VERBOSITY default
SET icpml.nthread = 1;
SET client_min_messages = warning;
TRUNCATE icpml.models, icpml.deployments RESTART IDENTITY;
RESET client_min_messages;

CREATE TABLE messy (
  lead_id bigint PRIMARY KEY,
  won boolean,
  industry text,
  stack text[],
  employees integer
);
-- the same three industries and stacks as people type them
INSERT INTO messy
SELECT g, CASE WHEN g <= 300 THEN (g % 3 = 0 AND g % 7 <> 0) OR (g % 3 = 1 AND g % 5 = 0) END,
       CASE g % 4
         WHEN 0 THEN b.industry
         WHEN 1 THEN upper(b.industry)
         WHEN 2 THEN '  ' || lower(b.industry) || ' '
         ELSE replace(b.industry, ' ', E'  \t ')
       END,
       ARRAY[CASE g % 2 WHEN 0 THEN b.tech ELSE ' ' || upper(b.tech) END, 'SQL'],
       10 + (g * 37) % 900
FROM generate_series(1, 306) g,
     LATERAL (SELECT (ARRAY['Health Care', 'Fintech', 'Retail Goods'])[1 + g % 3] AS industry,
                     (ARRAY['Google Cloud', 'AWS', 'Azure'])[1 + g % 3] AS tech) b;

-- XGBoost's aliases are accepted and stored under the canonical names
SELECT version AS v_alias FROM icpml.train_icp_model(
  relation => 'messy', key_column => 'lead_id', label_column => 'won', folds => 3, n_rounds => 10,
  params => '{"learning_rate": 0.2, "reg_lambda": 2, "reg_alpha": 0.5, "min_split_loss": 0.1,
              "max_leaves": 8, "colsample_bynode": 0.9}', deploy => 'never') \gset
SELECT params FROM icpml.models WHERE version = :v_alias;
-- one parameter under two names, an unknown key, an alias of what search chooses
SELECT version FROM icpml.train_icp_model(relation => 'messy', key_column => 'lead_id',
  label_column => 'won', params => '{"eta": 0.2, "learning_rate": 0.3}');
SELECT version FROM icpml.train_icp_model(relation => 'messy', key_column => 'lead_id',
  label_column => 'won', params => '{"learning_rat": 0.2}');
SELECT version FROM icpml.train_icp_model(relation => 'messy', key_column => 'lead_id',
  label_column => 'won', search => true, params => '{"learning_rate": 0.2}');
SELECT version FROM icpml.train_icp_model(relation => 'messy', key_column => 'lead_id',
  label_column => 'won', params => '{"max_leaves": -1}');

-- text as written: each spelling is its own level (or missing when rarer than min_count)
SELECT version AS v_plain FROM icpml.train_icp_model(
  relation => 'messy', key_column => 'lead_id', label_column => 'won', folds => 3, n_rounds => 10,
  deploy => 'never') \gset
-- folded: one level per industry and per technology, recorded in the spec
SELECT version AS v_fold FROM icpml.train_icp_model(
  relation => 'messy', key_column => 'lead_id', label_column => 'won', folds => 3, n_rounds => 10,
  encoding => '{"fold_text": true}', deploy => 'always') \gset
SELECT m.version = :v_fold AS folded, c->>'name' AS column, c->'levels' AS levels
FROM icpml.models AS m, jsonb_array_elements(m.spec->'columns') AS c
WHERE m.version IN (:v_plain, :v_fold) AND c->>'kind' IN ('categorical', 'tags')
ORDER BY 1, 2;
SELECT version, spec->'encoding' AS encoding FROM icpml.models
WHERE version IN (:v_plain, :v_fold) ORDER BY version;

-- scoring folds too: two new leads written differently score the same
INSERT INTO messy VALUES (401, NULL, ' HEALTH   care', '{" google CLOUD",sql}', 500),
                         (402, NULL, 'health care', '{"Google Cloud",SQL}', 500);
SELECT count(DISTINCT probability) AS distinct_probabilities, min(model) AS model
FROM icpml.icp_score_batch(ARRAY[401, 402]);
SELECT f->>'factor' AS factor, f->'value' AS value
FROM icpml.icp_score(401), jsonb_array_elements(factors) AS f
WHERE f->>'factor' IN ('industry', 'stack=google cloud');
-- the exported scorer folds the same way
SELECT count(*) AS folds_in_export
FROM regexp_matches(icpml.export_scorer_sql(), 'regexp_replace', 'g');

-- the level limits: keep rarer values, fewer levels, fewer tokens
SELECT version AS v_limits FROM icpml.train_icp_model(
  relation => 'messy', key_column => 'lead_id', label_column => 'won', folds => 3, n_rounds => 10,
  encoding => '{"max_levels": 2, "max_tags": 1, "min_count": 1}', deploy => 'never') \gset
SELECT c->>'name' AS column, jsonb_array_length(c->'levels') AS n_levels
FROM icpml.models AS m, jsonb_array_elements(m.spec->'columns') AS c
WHERE m.version = :v_limits AND c->>'kind' IN ('categorical', 'tags') ORDER BY 1;
SELECT spec->'encoding' AS encoding FROM icpml.models WHERE version = :v_limits;
-- values rarer than min_count: the column is skipped, and the message says how to keep it
SELECT version FROM icpml.train_icp_model(relation => 'messy', key_column => 'lead_id',
  label_column => 'won', folds => 3, n_rounds => 5, encoding => '{"min_count": 200}', deploy => 'never');

-- bad options
SELECT version FROM icpml.train_icp_model(relation => 'messy', key_column => 'lead_id',
  label_column => 'won', encoding => '{"fold_case": true}');
SELECT version FROM icpml.train_icp_model(relation => 'messy', key_column => 'lead_id',
  label_column => 'won', encoding => '{"max_levels": 5000}');
SELECT version FROM icpml.train_icp_model(relation => 'messy', key_column => 'lead_id',
  label_column => 'won', encoding => '{"fold_text": "yes"}');
SELECT version FROM icpml.train_icp_model(relation => 'messy', key_column => 'lead_id',
  label_column => 'won', encoding => '[]');
SELECT version FROM icpml.train_icp_model(relation => 'messy', key_column => 'lead_id',
  label_column => 'won', encoding => NULL);

-- clean up: the rules score again
SELECT count(*) FROM icpml.undeploy_model();
SELECT count(icpml.delete_model(version)) FROM icpml.models;
DROP TABLE messy;
