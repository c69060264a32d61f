-- icpml demo: what `test/run demo` shows.  Loads generated reference data,
-- scores accounts with the rules, trains and deploys a model, scores again,
-- recommends accounts to a sales user and learns from what the user does.
\set ON_ERROR_STOP 1
\pset footer off
SET client_min_messages = warning;
\set ECHO none

\echo
\echo '== 1. Phase 1 data: the reference schema and 20,000 generated accounts'
\i reference/icpml_reference_schema.sql
\i reference/icpml_generate.sql
SELECT * FROM icpml_ref.generate(accounts => 20000, users => 12, interactions => 150000, seed => 42);
CREATE EXTENSION icpml;
SET icpml.nthread = 1;

\echo
\echo '== 2. Rule-based ICP scores (no model yet): select * from icpml.icp_score(account_id)'
SELECT account_id, score, priority, round(probability::numeric, 3) AS probability, model,
       (SELECT string_agg(format('%s %s', f->>'factor', to_char((f->>'contribution')::numeric, 'SG0.00')), ', ')
        FROM jsonb_array_elements(factors) f) AS top_factors
FROM icpml.icp_score_batch(ARRAY[1, 2, 3, 4, 5, 6, 7, 8]);

\echo
\echo '== 3. The whole table, materialised: icpml.score_all()'
\timing on
SELECT icpml.score_all() AS accounts_scored;
\timing off
SELECT priority, count(*) AS accounts, round(avg(probability)::numeric, 3) AS mean_probability,
       round(avg(icpml_ref.true_fit_probability(account_id))::numeric, 3) AS hidden_true_fit_rate
FROM icpml.account_scores GROUP BY priority ORDER BY min(score) DESC;
