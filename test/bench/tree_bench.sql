-- Native tree evaluator micro-benchmark (figures, not a test).
--
--   psql -X -d DBNAME -f test/bench/tree_bench.sql
--
-- Needs icpml installed and a role allowed to run its administration
-- functions.  Each model is trained in-process on 10000 synthetic rows;
-- timings are taken inside the backend (wall clock and this thread's CPU
-- time: on a busy machine trust cpu_ns).  XGBoost runs with nthread 1.
\pset footer off
SET icpml.nthread = 1;

\echo '== 100 trees, depth 6, 12 numeric features (the issue 3 reference model)'
SELECT method, calls, round(ns_per_row::numeric, 1) AS ns_per_row,
       round(cpu_ns_per_row::numeric, 1) AS cpu_ns_per_row
FROM icpml.benchmark_tree_evaluator(rounds => 100, max_depth => 6, features => 12,
                                    calls => 200000, categorical => false);

\echo '== the same with categorical features (every third column)'
SELECT method, calls, round(ns_per_row::numeric, 1) AS ns_per_row,
       round(cpu_ns_per_row::numeric, 1) AS cpu_ns_per_row
FROM icpml.benchmark_tree_evaluator(rounds => 100, max_depth => 6, features => 12,
                                    calls => 200000, categorical => true);

\echo '== 300 trees, depth 8, 30 features'
SELECT method, calls, round(ns_per_row::numeric, 1) AS ns_per_row,
       round(cpu_ns_per_row::numeric, 1) AS cpu_ns_per_row
FROM icpml.benchmark_tree_evaluator(rounds => 300, max_depth => 8, features => 30,
                                    calls => 50000, categorical => true);
