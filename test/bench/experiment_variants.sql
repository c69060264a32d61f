-- recommend_accounts latency by experiment variant (figures, not a test):
-- no experiment, an A/A test on the shared state, an A/A test with separate
-- states and a holdout, champion against a challenger model version.
--
--   createdb DB && psql -X -d DB -v accounts=20000 -f test/bench/experiment_variants.sql
--
-- Run from the top of the tree (it loads the reference schema and generator)
-- as a superuser in an empty database: it creates the extension, generates
-- :accounts accounts, trains a champion and a challenger, materialises both
-- score sets, then times recommend_accounts(user, 10) for fresh users (no
-- history) of each variant: the best of 30 calls per user and the mean over
-- 400 users, with the load average.
\set ON_ERROR_STOP 1
\if :{?accounts}
\else
\set accounts 20000
\endif
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS icpml;
\set QUIET on
\i reference/icpml_reference_schema.sql
\i reference/icpml_generate.sql
\set QUIET off
SELECT count(*) AS generated FROM icpml_ref.generate(accounts => :accounts, users => 20, interactions => 5000, seed => 3);
RESET client_min_messages;
SET icpml.nthread = 1;
SELECT version AS champion FROM icpml.train_icp_model(folds => 3, n_rounds => 40, deploy => 'always') \gset
SELECT version AS challenger FROM icpml.train_icp_model(folds => 3, n_rounds => 10, deploy => 'never') \gset
SELECT icpml.score_all() AS served_set, icpml.score_all(version => :challenger) AS challenger_set;
DELETE FROM icpml.experiments;

CREATE TEMP TABLE bench_users AS SELECT g, md5('bench' || g)::uuid AS user_id FROM generate_series(1, 400) g;
CREATE TEMP TABLE figures (setup text, variant text, users int, mean_ms numeric, best_ms numeric, load text);

-- per variant of the running experiment (or none): the mean over its users
-- and the best of 30 calls for its first user
CREATE FUNCTION pg_temp.bench(setup text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE r record; t0 timestamptz; best numeric; i int;
BEGIN
  FOR r IN SELECT COALESCE(icpml.experiment_variant(e.name, u.user_id), '(none)') AS v,
                  array_agg(u.user_id ORDER BY u.g) AS us
           FROM bench_users AS u LEFT JOIN icpml.experiments AS e ON e.status = 'running'
           GROUP BY 1 ORDER BY 1 LOOP
    t0 := clock_timestamp();
    FOR i IN 1 .. cardinality(r.us) LOOP
      PERFORM * FROM icpml.recommend_accounts(r.us[i], 10, seed => i);
    END LOOP;
    INSERT INTO figures VALUES (setup, r.v, cardinality(r.us),
      round((extract(epoch FROM clock_timestamp() - t0) * 1000 / cardinality(r.us))::numeric, 2), NULL,
      pg_catalog.pg_read_file('/proc/loadavg'));
    best := 1e9;
    FOR i IN 1 .. 30 LOOP
      t0 := clock_timestamp();
      PERFORM * FROM icpml.recommend_accounts(r.us[1], 10, seed => 1);
      best := least(best, (extract(epoch FROM clock_timestamp() - t0) * 1000)::numeric);
    END LOOP;
    UPDATE figures SET best_ms = round(best, 2) WHERE figures.setup = bench.setup AND variant = r.v;
  END LOOP;
END $$;

SELECT count(*) AS warm FROM icpml.recommend_accounts((SELECT user_id FROM bench_users WHERE g = 1), 10);
SELECT pg_temp.bench('no experiment');
SELECT name FROM icpml.start_experiment('bench-aa-shared', ARRAY['a', 'b'], policies => ARRAY['linucb', 'linucb'],
                                        separate_state => false);
SELECT pg_temp.bench('A/A, shared state');
SELECT name FROM icpml.stop_experiment('bench-aa-shared');
SELECT name FROM icpml.start_experiment('bench-aa-separate', ARRAY['a', 'b'], policies => ARRAY['linucb', 'linucb'],
                                        holdout => 0.2);
SELECT pg_temp.bench('A/A, separate states, 20 % holdout');
SELECT name FROM icpml.stop_experiment('bench-aa-separate');
SELECT name FROM icpml.start_experiment('bench-models', ARRAY['champion', 'challenger'],
                                        policies => ARRAY['linucb', 'linucb'], model_versions => ARRAY[NULL, :challenger]);
SELECT pg_temp.bench('champion vs challenger');
SELECT name FROM icpml.stop_experiment('bench-models');

\echo 'recommend_accounts(user, 10), candidates = bandit_settings.candidates, fresh users'
SELECT :accounts AS accounts, setup, variant, users, mean_ms, best_ms, split_part(load, ' ', 1) AS load_1min
FROM figures ORDER BY setup = 'no experiment' DESC, setup, variant;
