#!/usr/bin/env bash
# icpml benchmark (figures, not a test): see test/bench/README.md.
#
#   bash test/bench/run.sh MAINTENANCE_DB [OUT_DIR]
#
# Needs PGHOST/PGPORT/PGUSER of a running PostgreSQL 15 where icpml is
# installed (a superuser: it creates databases and extensions), gcc,
# libxgboost-dev, pgbench, wrk, gnuplot and Debian's python3-xgboost,
# python3-numpy, python3-psycopg2, python3-fastapi, python3-uvicorn,
# python3-httptools, python3-uvloop (and postgresql-plpython3-15 for the
# PL/Python peer).  test/run bench provides all of that.  It creates (and
# drops) one database per size, icpml_bench_<accounts>.
#
# Environment: see README.md (ICPML_BENCH_QUICK, ICPML_BENCH_SIZES, ...).
set -euo pipefail

db=${1:?usage: run.sh MAINTENANCE_DB [OUT_DIR]}
here=$(cd "$(dirname "$0")" && pwd)
out=${2:-${ICPML_BENCH_OUT:-$(mktemp -d /tmp/icpml_bench_out.XXXXXX)}}
py=/usr/bin/python3        # Debian's, with python3-xgboost (not a pyenv/venv one)
export PYTHONDONTWRITEBYTECODE=1
mkdir -p "$out"

tmp=$(mktemp -d /tmp/icpml_bench_bin.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
gcc -O2 -Wall -o "$tmp/predict_standalone" "$here/predict_standalone.c" -lxgboost -lm

"$py" "$here/bench.py" "$db" "$tmp/predict_standalone" "$out" 2>&1 | tee "$out/bench.log"
exit "${PIPESTATUS[0]}"
