#!/usr/bin/env bash
# icpml benchmark (figures, not a test): see test/bench/README.md.
#
#   bash test/bench/run.sh DBNAME
#
# Needs PGHOST/PGPORT/PGUSER of a running PostgreSQL 15 where icpml is
# installed (a superuser: it creates extensions), gcc, libxgboost-dev,
# pgbench and Debian's python3-xgboost, python3-numpy, python3-psycopg2.
# test/run bench provides all of that.  DBNAME's reference tables are
# REGENERATED (truncated) at each size.
#
# Environment (see docs/benchmarks.md): ICPML_BENCH_SIZES ("10000 100000 1000000"),
# ICPML_BENCH_SECONDS (pgbench seconds per figure, 20), ICPML_BENCH_SLICES (4),
# ICPML_BENCH_CLIENTS ("1 8"), ICPML_BENCH_PIN (1), ICPML_BENCH_REPS (3),
# ICPML_BENCH_TRAIN_NTHREAD (1), ICPML_BENCH_TRAIN_REPEAT (0 = auto),
# ICPML_BENCH_JSON (also write the results there).
set -euo pipefail

db=${1:?usage: run.sh DBNAME}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=/usr/bin/python3        # Debian's, with python3-xgboost (not a pyenv/venv one)

tmp=$(mktemp -d /tmp/icpml_bench_bin.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
gcc -O2 -Wall -o "$tmp/predict_standalone" "$here/predict_standalone.c" -lxgboost -lm

psql() { command psql -X -q -v ON_ERROR_STOP=1 -d "$db" "$@"; }
psql -c "SET client_min_messages = warning" \
     -c "CREATE EXTENSION IF NOT EXISTS icpml" \
     -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" \
     -f "$root/reference/icpml_reference_schema.sql" \
     -f "$root/reference/icpml_generate.sql"

"$py" "$here/bench.py" "$db" "$tmp/predict_standalone"
