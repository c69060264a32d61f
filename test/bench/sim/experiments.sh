#!/usr/bin/env bash
# Repeated A/A and A/B tests with daily peeking on simulator logs (issue #13):
# false positives of the fixed-horizon and the sequential p-values, how soon
# a real difference is found, how much CUPED narrows the interval.  Figures,
# not a test; docs/experiments.md has the results.
#
#   PGHOST=... PGPORT=... PGUSER=... test/bench/sim/experiments.sh
#
# Builds a base database like run.sh (reference data, trained and deployed
# ICP model, scores, online feedback), runs simulate.py once per policy in
# POLICIES (kept databases, the same world and rounds), then
# experiments.py: A/A on the first policy's log, A/B composing the first
# and the second.  Creates and drops icpml_exp_*.
#
# Environment (defaults in brackets):
#   POLICIES [linucb,icp]  the A/A policy first, the A/B treatment second
#   USERS [200] ACCOUNTS [10000] HISTORY [30000] SEED [42]
#   ROUNDS_PER_DAY [= USERS]  PRE_DAYS [14] DAYS [28]  REPLICATES [200]
#   EXPECTED_LIFT [0.1]       experiment_results' mSPRT tuning
#   OUT [a temp dir]          JSON results and the report
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
PY=${PYTHON:-/usr/bin/python3}
export PYTHONDONTWRITEBYTECODE=1
POLICIES=${POLICIES:-linucb,icp}
USERS=${USERS:-200}
ACCOUNTS=${ACCOUNTS:-10000}
HISTORY=${HISTORY:-30000}
SEED=${SEED:-42}
ROUNDS_PER_DAY=${ROUNDS_PER_DAY:-$USERS}
PRE_DAYS=${PRE_DAYS:-14}
DAYS=${DAYS:-28}
REPLICATES=${REPLICATES:-200}
EXPECTED_LIFT=${EXPECTED_LIFT:-0.1}
OUT=${OUT:-$(mktemp -d /tmp/icpml_experiments.XXXXXX)}
mkdir -p "$OUT"
rounds=$(( (PRE_DAYS + DAYS) * ROUNDS_PER_DAY ))
psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
say() { printf '\n== %s\n' "$*" >&2; }

base=icpml_exp_base
if [ "${REUSE_BASE:-0}" != 1 ]; then
  dropdb --if-exists "$base"
  createdb "$base"
  psql_q -d "$base" -f "$repo/reference/icpml_reference_schema.sql" -f "$repo/reference/icpml_generate.sql" >/dev/null
  psql_q -d "$base" -c "select * from icpml_ref.generate(accounts => $ACCOUNTS, users => $USERS,
                          interactions => $HISTORY, seed => $SEED)" >/dev/null
  psql_q -d "$base" -c "create extension icpml"
  psql_q -d "$base" -c "select version, round(cv_roc_auc::numeric, 3) as cv_auc
                        from icpml.train_icp_model(deploy => 'always', seed => $SEED)" >&2
  PGOPTIONS="${PGOPTIONS:-} -c synchronous_commit=on" \
  psql_q -d "$base" -c "select icpml.score_all()" -c "select icpml.enable_online_feedback()" \
                    -c "vacuum analyze" >/dev/null
fi

if [ "${REUSE_LOGS:-0}" != 1 ]; then
  say "simulator: $rounds rounds ($PRE_DAYS + $DAYS days of $ROUNDS_PER_DAY) × {$POLICIES}"
  "$PY" "$here/simulate.py" --scenario classic --rounds "$rounds" --seed "$SEED" --policies "$POLICIES" --reference "" \
        --base-db "$base" --db-prefix icpml_exp --keep-dbs --json "$OUT/sim.json" | tee "$OUT/sim.md"
fi

a=${POLICIES%%,*}
b=${POLICIES#*,}; b=${b%%,*}
common=(--rounds-per-day "$ROUNDS_PER_DAY" --pre-days "$PRE_DAYS" --days "$DAYS"
        --replicates "$REPLICATES" --expected-lift "$EXPECTED_LIFT")
say "A/A on the $a log"
"$PY" "$here/experiments.py" --db "icpml_exp_$a" "${common[@]}" --prefix aa --json "$OUT/aa.json" | tee "$OUT/aa.md"
if [ "$b" != "$a" ]; then
  say "A/B: $a (control) against $b"
  "$PY" "$here/experiments.py" --db "icpml_exp_$a" --db-b "icpml_exp_$b" "${common[@]}" --prefix ab \
        --json "$OUT/ab.json" | tee "$OUT/ab.md"
fi
cat "$OUT/aa.md" "$OUT/ab.md" 2>/dev/null >"$OUT/report.md" || true
echo "Command: POLICIES=$POLICIES USERS=$USERS SEED=$SEED PRE_DAYS=$PRE_DAYS DAYS=$DAYS REPLICATES=$REPLICATES test/bench/sim/experiments.sh" >>"$OUT/report.md"
say "report: $OUT/report.md (databases icpml_exp_* kept; dropdb them when done)"
