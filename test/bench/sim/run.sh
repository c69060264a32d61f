#!/usr/bin/env bash
# icpml recommendation benchmark: the simulator (reward and regret of every
# policy against a known ground truth) and pgbench latency of
# recommend_accounts at 10k and 1M accounts. Figures, not a test.
#
#   PGHOST=... PGPORT=... PGUSER=... test/bench/sim/run.sh
#
# Needs a role that may create databases and the icpml extension, pgbench,
# python3 with numpy and psycopg2 (Debian: python3-numpy python3-psycopg2).
# Creates and drops its own databases (icpml_sim_*, icpml_lat_*).
#
# Environment (defaults in brackets):
#   SCENARIO [production]  production (the effects of issue #11: funnel
#                          logging, position-bias curve, hidden and drifting
#                          tastes, niche users, arriving accounts) or classic
#                          (the static world of the 0.1.0-0.3.0 figures)
#   ROUNDS [5000]          simulator rounds per policy (the full run: 20000)
#   POLICIES [all six]     comma-separated subset of
#                          linucb,thompson,greedy,epsilon_greedy,icp,random;
#                          a policy may carry settings: linucb/alpha=0.5
#   REFERENCE [scenario's] offline reference policies (knows_taste,
#                          true_structured, true_mu0, true_fit; empty: none)
#   JOBS [1]               runs simulated in parallel (one backend each)
#   SEED [42]              generator and simulator seed
#   SIM_ACCOUNTS [10000] SIM_USERS [100] SIM_HISTORY [30000]
#                          the simulated world's reference data (production:
#                          SIM_ACCOUNTS at the start, WORLD_ARRIVALS [1000]
#                          more arrive; its history is its own, see
#                          production.py)
#   FEEDBACK_EVERY [20]    run process_feedback every N rounds (the online
#                          trigger rewards at once; classic: expire everything
#                          unanswered, production: what is older than the
#                          simulated reward window)
#   EXPIRE [scenario]      now: process_feedback expires every unanswered
#                          impression at once, whatever the scenario
#   MAINTENANCE [scenario's] 'SQL@PERIOD;...' run during the simulation
#                          (PERIOD in rounds or days, e.g. 1d); production:
#                          'select icpml.score_all()@1d'
#   WORLD_<PARAM>          world parameters (world.py, production.py)
#   BASE_DB [icpml_sim_<scenario>_base]  KEEP_BASE [0]  REUSE_BASE [0]
#                          keep the prepared base database / reuse a kept one
#   ICP_MODEL [trained]    the simulator's ICP score: trained (train_icp_model,
#                          deployed) or rules; the latency databases use rules
#   LAT_ACCOUNTS ["10000 1000000"]  account-table sizes for pgbench
#   LAT_SECONDS [20]       measured seconds per recommend_accounts run
#   LAT_POLICIES [linucb,thompson]
#   SIM [1] LATENCY [1]    set to 0 to skip a part
#   OUT [a temp dir]       where the JSON results and the report go
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
PY=${PYTHON:-/usr/bin/python3}
export PYTHONDONTWRITEBYTECODE=1
ROUNDS=${ROUNDS:-5000}
SEED=${SEED:-42}
JOBS=${JOBS:-1}
POLICIES=${POLICIES:-linucb,thompson,greedy,epsilon_greedy,icp,random}
SIM_ACCOUNTS=${SIM_ACCOUNTS:-10000}
SIM_USERS=${SIM_USERS:-100}
SIM_HISTORY=${SIM_HISTORY:-30000}
LAT_ACCOUNTS=${LAT_ACCOUNTS:-"10000 1000000"}
LAT_POLICIES=${LAT_POLICIES:-linucb,thompson}
LAT_USERS=${LAT_USERS:-100}
ICP_MODEL=${ICP_MODEL:-trained}
SIM=${SIM:-1}
LATENCY=${LATENCY:-1}
OUT=${OUT:-$(mktemp -d /tmp/icpml_simbench.XXXXXX)}
mkdir -p "$OUT"
FEEDBACK_EVERY=${FEEDBACK_EVERY:-20}
SCENARIO=${SCENARIO:-production}
BASE_DB=${BASE_DB:-icpml_sim_${SCENARIO}_base}
KEEP_BASE=${KEEP_BASE:-0}
REUSE_BASE=${REUSE_BASE:-0}
export ROUNDS SEED JOBS POLICIES FEEDBACK_EVERY SCENARIO

psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
say() { printf '\n== %s\n' "$*" >&2; }

# prepare DB ACCOUNTS USERS INTERACTIONS ICP_MODEL [SCENARIO]: reference data +
# icpml + account_scores (ICP_MODEL trained: train_icp_model and deploy it
# first; rules: the rule-based score). SCENARIO production: the generator
# makes ACCOUNTS + arrivals accounts and no history; production.py setup
# stashes the arriving accounts, draws the signal changes and writes its
# own history; after scoring, production.py precompute stores what the
# model will say of the accounts that arrive or change.
prepare() {
  local db=$1 n=$2 users=$3 inter=$4 model=$5 scenario=${6:-classic} t0=$SECONDS
  dropdb --if-exists "$db"
  createdb "$db"
  psql_q -d "$db" -f "$repo/reference/icpml_reference_schema.sql" \
                  -f "$repo/reference/icpml_generate.sql" >/dev/null
  if [ "$scenario" = production ]; then
    local arrivals
    arrivals=$("$PY" -c "import sys; sys.path.insert(0, '$here'); import production; print(production._setup_params()['ARRIVALS'])")
    psql_q -d "$db" -c "select * from icpml_ref.generate(accounts => $((n + arrivals)), users => $users,
                          interactions => 0, seed => $SEED)" >/dev/null
    "$PY" "$here/production.py" setup --db "$db" --seed "$SEED" >&2
  else
    psql_q -d "$db" -c "select * from icpml_ref.generate(accounts => $n, users => $users,
                          interactions => $inter, seed => $SEED)" >/dev/null
  fi
  psql_q -d "$db" -c "create extension icpml"
  if [ "$model" = trained ]; then
    psql_q -d "$db" -c "select version, deployed, n_rows, round(cv_roc_auc::numeric, 3) as cv_auc,
                               round(rules_cv_roc_auc::numeric, 3) as rules_cv_auc
                        from icpml.train_icp_model(deploy => 'always', seed => $SEED)" >&2 \
      || say "$db: training failed, the ICP score is the rule-based one"
  fi
  # synchronous_commit = on: VACUUM sets the visibility map (which the
  # retrieval's index-only scan needs) only for rows whose commit is flushed
  PGOPTIONS="${PGOPTIONS:-} -c synchronous_commit=on" \
  psql_q -d "$db" -c "select icpml.score_all()" \
                  -c "select icpml.enable_online_feedback()" \
                  -c "vacuum analyze" >/dev/null
  if [ "$scenario" = production ]; then
    "$PY" "$here/production.py" precompute --db "$db" >&2
  fi
  say "$db: $n accounts, $users users, ICP $model, scenario $scenario, scored ($((SECONDS - t0)) s)"
}

report=$OUT/report.md
: >"$report"

if [ "$SIM" = 1 ]; then
  say "simulator: scenario $SCENARIO, $ROUNDS rounds × {$POLICIES}, $JOBS job(s)"
  if [ "$REUSE_BASE" = 1 ] && psql_q -d "$BASE_DB" -c "select 1" >/dev/null 2>&1; then
    say "reusing $BASE_DB"
  else
    prepare "$BASE_DB" "$SIM_ACCOUNTS" "$SIM_USERS" "$SIM_HISTORY" "$ICP_MODEL" "$SCENARIO"
  fi
  "$PY" "$here/simulate.py" --scenario "$SCENARIO" --rounds "$ROUNDS" --seed "$SEED" --policies "$POLICIES" \
        --jobs "$JOBS" --base-db "$BASE_DB" --json "$OUT/sim.json" --verbose \
        | tee -a "$report"
  [ "$KEEP_BASE" = 1 ] || [ "$REUSE_BASE" = 1 ] || dropdb --if-exists "$BASE_DB"
  overrides=$(env | grep -E '^(WORLD_[A-Z_]+|MAINTENANCE|REFERENCE|EXPIRE)=' | sort | sed "s/=\(.*\)/='\1'/" | tr '\n' ' ' || true)
  cat >>"$report" <<EOF

Command: \`${overrides}SCENARIO=$SCENARIO ROUNDS=$ROUNDS POLICIES=$POLICIES JOBS=$JOBS SEED=$SEED ICP_MODEL=$ICP_MODEL FEEDBACK_EVERY=$FEEDBACK_EVERY LATENCY=0 test/bench/sim/run.sh\`
EOF
fi

if [ "$LATENCY" = 1 ]; then
  : >"$OUT/latency.jsonl"
  for n in $LAT_ACCOUNTS; do
    db=icpml_lat_$n
    say "latency: $n accounts"
    prepare "$db" "$n" "$LAT_USERS" "$((n < 100000 ? 3 * n : n))" rules
    "$PY" "$here/latency.py" "$db" --users "$LAT_USERS" --accounts "$n" --seed "$SEED" \
          --policies "$LAT_POLICIES" >>"$OUT/latency.jsonl"
    dropdb --if-exists "$db"
  done
  {
    echo
    echo "Latency (pgbench, 1 client, prepared, per-transaction log; ${LAT_SECONDS:-20} s per recommend run):"
    echo
    "$PY" - "$OUT/latency.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| accounts | query | transactions | p50 ms | p99 ms | mean ms | load avg (cores) |")
print("|---:|---|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['accounts']:,} | {r['query']} | {r['n']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} "
          f"| {r['mean_ms']:.3f} | {r.get('load1', 0):.1f} ({r.get('cores', '?')}) |")
EOF
    echo
    echo "Command: \`LAT_ACCOUNTS=\"$LAT_ACCOUNTS\" SIM=0 test/bench/sim/run.sh\`"
  } | tee -a "$report"
fi

say "report: $report"
