-- Nothing corrupt or mismatched scores.  A model is a blob and the spec that
-- encodes rows for it; on icpml 0.3.0, 18 of 18 corrupted or mismatched
-- models below deployed, and then every icp_score failed (XX001) or scored
-- silently wrong while verify_model saw no difference.  Now a write to
-- icpml.models checks names, the spec's shape and the cut-offs
-- (models_guard); deploy_model, rollback_model and apply_deploy_policy load
-- the blob, match its features, its feature types and the spec digest
-- training saved in it, compile it and compare the native evaluator with
-- XGBoost on probing rows, and refuse with nothing changed; the model cache
-- and verify_model check the same (without the probe) before scoring.
\set VERBOSITY terse
SET icpml.nthread = 1;
\i sql/include/reference_generator.sql
SET client_min_messages = warning;
TRUNCATE icpml.models, icpml.deployments, icpml.training_runs RESTART IDENTITY;
RESET client_min_messages;
SELECT sum(row_count) > 0 AS generated
FROM icpml_ref.generate(accounts => 800, users => 2, interactions => 200, seed => 21,
                        as_of => '2026-01-01 00:00+00');
-- version 1 (deployed) and version 2, trained on fewer columns
SELECT version, deployed FROM icpml.train_icp_model(n_rounds => 15, folds => 3, deploy => 'always');
SELECT version, deployed FROM icpml.train_icp_model(n_rounds => 15, folds => 3, deploy => 'never',
                                                    exclude_columns => ARRAY['industry', 'tech_stack']);
SELECT version, jsonb_array_length(spec -> 'features') AS features FROM icpml.models ORDER BY version;

-- a column of version 1's spec, by name, and the spec with it replaced
CREATE FUNCTION pg_temp.col(spec jsonb, name text) RETURNS integer LANGUAGE sql AS $$
  SELECT (i - 1)::integer FROM jsonb_array_elements(spec -> 'columns') WITH ORDINALITY AS c(e, i)
  WHERE e ->> 'name' = name
$$;
CREATE FUNCTION pg_temp.set_col(spec jsonb, name text, col jsonb) RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_set(spec, ARRAY['columns', pg_temp.col(spec, name)::text], col)
$$;
CREATE TEMP TABLE v1 AS SELECT * FROM icpml.models WHERE version = 1;
CREATE TEMP TABLE v2 AS SELECT * FROM icpml.models WHERE version = 2;

-- why verify_tree_model refuses a blob (the error's detail)
CREATE FUNCTION pg_temp.blob_problem(blob bytea) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  detail text;
BEGIN
  PERFORM * FROM icpml.verify_tree_model(blob, rows => 10);
  RETURN 'loaded';
EXCEPTION WHEN data_corrupted THEN
  GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
  RETURN detail;
END
$$;

-- store a copy of version 1 with another blob, spec or cut-offs and try to
-- deploy it: what refused it, and at which step
CREATE FUNCTION pg_temp.attempt(a_model bytea, a_spec jsonb, a_cutoffs double precision[])
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  v integer;
  step text := 'write';
BEGIN
  INSERT INTO icpml.models (relation, key_column, label_column, model, spec, params, metrics, n_rows,
                            n_positive, seed, data_fingerprint, xgboost_version, score_cutoffs,
                            cv_roc_auc, rules_cv_roc_auc)
  SELECT v1.relation, v1.key_column, v1.label_column, a_model, a_spec, v1.params, v1.metrics, v1.n_rows,
         v1.n_positive, v1.seed, v1.data_fingerprint, v1.xgboost_version, a_cutoffs, v1.cv_roc_auc,
         v1.rules_cv_roc_auc
  FROM v1 RETURNING version INTO v;
  step := 'deploy';
  PERFORM icpml.deploy_model(version => v);
  RETURN 'DEPLOYED version ' || v;
EXCEPTION WHEN OTHERS THEN
  -- XGBoost's own detail carries addresses: the message up to a colon
  RETURN format('refused on %s (%s): %s', step, SQLSTATE, split_part(SQLERRM, ': XGBoost', 1));
END
$$;

SELECT n, what,
       pg_temp.attempt(coalesce(model, (SELECT model FROM v1)), coalesce(spec, (SELECT spec FROM v1)),
                       coalesce(cutoffs, (SELECT score_cutoffs FROM v1))) AS outcome
FROM (VALUES
  (1, 'random bytes', decode(repeat('5a17c3e9', 256), 'hex'), NULL::jsonb, NULL::double precision[]),
  (2, 'truncated UBJSON', (SELECT substring(model FOR octet_length(model) / 2) FROM v1), NULL, NULL),
  (3, 'empty blob', ''::bytea, NULL, NULL),
  (4, 'another model''s blob', (SELECT model FROM v2), NULL, NULL),
  (5, 'another model''s spec', NULL, (SELECT spec FROM v2), NULL),
  (6, 'categorical levels reordered', NULL,
      (SELECT pg_temp.set_col(spec, 'industry',
                jsonb_set(spec -> 'columns' -> pg_temp.col(spec, 'industry'), '{levels}',
                          (SELECT jsonb_agg(l ORDER BY l DESC)
                           FROM jsonb_array_elements(spec -> 'columns' -> pg_temp.col(spec, 'industry') -> 'levels') AS l)))
       FROM v1), NULL),
  (7, 'a level renamed', NULL,
      (SELECT jsonb_set(spec, ARRAY['columns', pg_temp.col(spec, 'industry')::text, 'levels', '0'], '"crypto"') FROM v1), NULL),
  (8, 'a categorical level dropped', NULL,
      (SELECT spec #- ARRAY['columns', pg_temp.col(spec, 'industry')::text, 'levels', '0'] FROM v1), NULL),
  (9, 'a tag dropped', NULL,
      (SELECT spec #- ARRAY['columns', pg_temp.col(spec, 'tech_stack')::text, 'levels', '0'] FROM v1), NULL),
  (10, 'a level listed twice', NULL,
      (SELECT jsonb_set(spec, ARRAY['columns', pg_temp.col(spec, 'industry')::text, 'levels', '1'],
                        spec -> 'columns' -> pg_temp.col(spec, 'industry') -> 'levels' -> 0) FROM v1), NULL),
  (11, 'numeric made boolean', NULL,
      (SELECT jsonb_set(spec, ARRAY['columns', pg_temp.col(spec, 'company_size')::text, 'kind'], '"boolean"') FROM v1), NULL),
  (12, 'numeric made age_days', NULL,
      (SELECT jsonb_set(spec, ARRAY['columns', pg_temp.col(spec, 'company_size')::text, 'kind'], '"age_days"') FROM v1), NULL),
  (13, 'an unknown kind', NULL,
      (SELECT jsonb_set(spec, ARRAY['columns', pg_temp.col(spec, 'company_size')::text, 'kind'], '"text"') FROM v1), NULL),
  (14, 'two columns swapped', NULL,
      (SELECT jsonb_set(jsonb_set(spec, ARRAY['columns', pg_temp.col(spec, 'company_size')::text, 'name'], '"total_open_roles"'),
                        ARRAY['columns', pg_temp.col(spec, 'total_open_roles')::text, 'name'], '"company_size"') FROM v1), NULL),
  (15, 'a column dropped', NULL,
      (SELECT spec #- ARRAY['columns', pg_temp.col(spec, 'company_size')::text] FROM v1), NULL),
  (16, 'another relation', NULL,
      (SELECT jsonb_set(spec, '{relation}', '"public.account_signals"') FROM v1), NULL),
  (17, 'SQL as the relation', NULL,
      (SELECT jsonb_set(spec, '{relation}', '"public.account_features f, pg_sleep(1) x --"') FROM v1), NULL),
  (18, 'NaN cut-off', NULL, NULL, '{0.1,0.2,NaN,0.4,0.5,0.6,0.7,0.8,0.9}'),
  (19, 'decreasing cut-offs', NULL, NULL, '{0.9,0.8,0.7,0.6,0.5,0.4,0.3,0.2,0.1}'),
  (20, 'a cut-off beyond 1', NULL, NULL, '{0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,1.5}'),
  (21, 'no columns', NULL, (SELECT jsonb_set(spec, '{columns}', '[]') FROM v1), NULL),
  -- blobs that XGBoost's own readers would read out of bounds or recurse on
  -- without end: refused before XGBoost sees them
  (22, 'JSON nested 100000 deep', convert_to('{"learner": ' || repeat('[', 100000), 'UTF8'), NULL, NULL),
  (23, 'UBJSON string longer than the blob', '\x7b4c7fffffffffffffff'::bytea, NULL, NULL),
  (24, 'UBJSON typed array longer than the blob',
       '\x7b4c00000000000000016b5b2464234c000000ffffffffff'::bytea, NULL, NULL),
  (25, 'UBJSON nested 100000 deep',
       '\x7b4c00000000000000016b'::bytea || decode(repeat('5b', 100000), 'hex'), NULL, NULL),
  (26, 'XGBoost''s old binary format', '\x62696e66000000000000000000000000'::bytea, NULL, NULL)
) AS t(n, what, model, spec, cutoffs)
ORDER BY n;

-- what the blobs were refused for (XGBoost's own message, when it had one,
-- carries addresses: left out above)
SELECT n, regexp_replace(icpml_blob_problem, '^.*: ', '') AS problem
FROM (SELECT 22 AS n, convert_to('{"learner": ' || repeat('[', 100000), 'UTF8') AS b
      UNION ALL SELECT 23, '\x7b4c7fffffffffffffff'::bytea
      UNION ALL SELECT 24, '\x7b4c00000000000000016b5b2464234c000000ffffffffff'::bytea
      UNION ALL SELECT 25, '\x7b4c00000000000000016b'::bytea || decode(repeat('5b', 100000), 'hex')
      UNION ALL SELECT 26, '\x62696e66000000000000000000000000'::bytea) AS t,
     LATERAL (SELECT pg_temp.blob_problem(t.b) AS icpml_blob_problem) AS p
ORDER BY n;

-- nothing changed: version 1 is still the one deployed, one deploy logged,
-- and it scores
SELECT version, status FROM icpml.models WHERE status <> 'trained' ORDER BY version;
SELECT count(*) AS deploys FROM icpml.deployments;
SELECT model, model_version FROM icpml.icp_score(5);

-- the same gate on rollback and on the deploy policy: a version edited in
-- the table after it was deployed once is refused, nothing changes
-- (version 2 reads fewer columns: another dataset, replaced on request)
SELECT version, action FROM icpml.deploy_model(version => 2, replace_dataset => true);
UPDATE icpml.models SET spec = (SELECT jsonb_set(spec, ARRAY['columns', pg_temp.col(spec, 'company_size')::text, 'kind'], '"age_days"') FROM v1)
WHERE version = 1;
SELECT icpml.rollback_model();
SELECT * FROM icpml.apply_deploy_policy(version => 1, policy => 'always');
SELECT version, status FROM icpml.models WHERE status <> 'trained' ORDER BY version;
-- verify_model sees the edit too
SELECT * FROM icpml.verify_model(version => 1, rows => 10);
SELECT n_trees > 0 AS verified, max_abs_margin_diff = 0 AS margins_equal FROM icpml.verify_model(version => 2, rows => 200);

-- and the model cache: a version made 'deployed' by hand, bypassing
-- deploy_model, never scores (a clear error instead of a wrong score)
BEGIN;
UPDATE icpml.models SET status = 'retired' WHERE version = 2;
UPDATE icpml.models SET status = 'deployed' WHERE version = 1;
SELECT * FROM icpml.icp_score(5);
ROLLBACK;

-- the same version with its spec restored deploys again
UPDATE icpml.models SET spec = (SELECT spec FROM v1) WHERE version = 1;
SELECT version, action FROM icpml.rollback_model();
SELECT model, model_version FROM icpml.icp_score(5);

SET client_min_messages = warning;
TRUNCATE icpml.models, icpml.deployments, icpml.training_runs RESTART IDENTITY;
DROP SCHEMA icpml_ref CASCADE;
DROP VIEW account_features;
DROP TABLE user_interactions, research_runs, sales_users, account_signals CASCADE;
RESET client_min_messages;
