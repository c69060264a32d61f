#!/usr/bin/env bash
# Feedback writers under contention (figures, not a test): throughput and
# latency of interactions that reward pending impressions (the online
# feedback trigger), CLIENTS concurrent writers, one sales user each.
#
#   bash test/bench/feedback_contention.sh DB [SECONDS] [CLIENTS]
#
# Needs PGHOST/PGPORT/PGUSER of a running PostgreSQL 15 where icpml is
# installed (a superuser; it creates and drops database DB) and pgbench.
# Every transaction inserts one 'save' for one of its user's pending
# impressions (so each one finalizes an impression and updates the bandit);
# a second script logs a funnel (view, research, contact) for one impression
# in three transactions.  When icpml.bandit_settings has state_updates, each
# script runs once per mode ('immediate': every writer updates the shared
# state under its row lock, as 0.3.0 did; 'queued': writers append and the
# state is folded in batches), side by side in one run.  Prints one table
# with the load average before and after each run.  ICPML_BENCH_VARIANTS=N
# (N >= 1) logs the impressions as an experiment's N variants with their own
# states (state_scope variant:bench/v0 ... ; the writers of one variant update
# its row directly), to compare with the one global state.
set -euo pipefail

db=${1:?usage: feedback_contention.sh DB [SECONDS] [CLIENTS]}
secs=${2:-20}
clients=${3:-16}
per_user=${ICPML_BENCH_PENDING:-6000}   # at most the 6000 accounts: one impression per (user, account)
variants=${ICPML_BENCH_VARIANTS:-0}     # >= 1: impressions train N variant states (by user)
here=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d /tmp/icpml_fb_bench.XXXXXX)
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
q() { psql -X -q -v ON_ERROR_STOP=1 -d "$db" "$@"; }

dropdb --if-exists "$db" 2>/dev/null || true
createdb "$db"
q -c "ALTER DATABASE $db SET icpml.nthread = 1" >/dev/null
q -f "$here/reference/icpml_reference_schema.sql" >/dev/null
q -f "$here/reference/icpml_generate.sql" >/dev/null
q >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION icpml;
SELECT * FROM icpml_ref.generate(accounts => 6000, users => $clients, interactions => 3000, seed => 7);
SELECT icpml.score_all();
SELECT icpml.enable_online_feedback();
CREATE TABLE bench_users AS SELECT (row_number() OVER (ORDER BY user_id))::int - 1 AS n, user_id FROM sales_users;
-- a context to copy into the synthetic impressions
CREATE TEMP TABLE served AS
  SELECT recommendation_id FROM icpml.recommend_accounts((SELECT user_id FROM bench_users WHERE n = 0), 1);
CREATE TABLE bench_ctx AS SELECT context FROM icpml.recommendations JOIN served USING (recommendation_id);
SQL
# ICPML_BENCH_SETUP_SQL: more SQL to run after the setup (for experiments)
[ -n "${ICPML_BENCH_SETUP_SQL:-}" ] && q -c "$ICPML_BENCH_SETUP_SQL" >/dev/null
has_modes=$(q -Atc "SELECT count(*) FROM pg_attribute WHERE attrelid = 'icpml.bandit_settings'::regclass AND attname = 'state_updates'")

cat >"$tmp/save.sql" <<'SQL'
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT r.user_id, r.account_id, 'save' FROM icpml.recommendations AS r
WHERE r.user_id = (SELECT user_id FROM bench_users WHERE n = :client_id) AND r.status = 'pending'
LIMIT 1;
SQL
cat >"$tmp/funnel.sql" <<'SQL'
\set a random(1, 6000)
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT user_id, :a, 'view' FROM bench_users WHERE n = :client_id;
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT user_id, :a, 'research' FROM bench_users WHERE n = :client_id;
INSERT INTO user_interactions (user_id, account_id, interaction_type)
SELECT user_id, :a, 'contact' FROM bench_users WHERE n = :client_id;
SQL

# fresh pending impressions: per_user per sales user, one per account, the
# same logged context
reset_log() {
  q >/dev/null <<SQL
SET client_min_messages = warning;
TRUNCATE icpml.recommendations, icpml.bandit_state, icpml.account_feedback;
$( [ "$has_modes" = 1 ] && echo "TRUNCATE icpml.bandit_queue, icpml.feedback_events;" )
TRUNCATE user_interactions;
INSERT INTO icpml.recommendations (user_id, account_id, rank, policy, context, score,
                                   expected_reward, propensity, state_version$( [ "$variants" -ge 1 ] && echo ", experiment, variant, state_scope" ))
SELECT u.user_id, 1 + g, 1 + g % 10, 'linucb', c.context, 0.5, 0.5, 1, 0$( [ "$variants" -ge 1 ] &&
  echo ", 'bench', 'v' || u.n % $variants, 'variant:bench/v' || u.n % $variants" )
FROM bench_users AS u, generate_series(0, $per_user - 1) AS g, bench_ctx AS c;
SELECT icpml.rebuild_bandit_state();   -- the shared state row exists at the prior
VACUUM ANALYZE icpml.recommendations;
CHECKPOINT;
SQL
}

run() { # label script mode
  local label=$1 script=$2 mode=$3 la0 la1 n tps p50 p99
  reset_log
  if [ "$mode" != "-" ]; then q -c "UPDATE icpml.bandit_settings SET state_updates = '$mode'" >/dev/null; fi
  la0=$(cut -d' ' -f1-3 /proc/loadavg)
  rm -f "$tmp"/pgbench_log.*
  (cd "$tmp" && pgbench -n -c "$clients" -j "$clients" -T "$secs" -f "$script" -l "$db" >"$tmp/out.txt" 2>&1) ||
    { cat "$tmp/out.txt" >&2; exit 1; }
  la1=$(cut -d' ' -f1-3 /proc/loadavg)
  tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$tmp/out.txt" | head -1)
  # per-transaction latencies (microseconds, 3rd field) from every client's log
  cat "$tmp"/pgbench_log.* | awk '{print $3}' | sort -n >"$tmp/lat.txt"
  n=$(wc -l <"$tmp/lat.txt")
  p50=$(awk -v n="$n" 'NR == int(n * 0.50 + 0.5) {printf "%.1f", $1 / 1000}' "$tmp/lat.txt")
  p99=$(awk -v n="$n" 'NR == int(n * 0.99 + 0.5) {printf "%.1f", $1 / 1000}' "$tmp/lat.txt")
  if [ "$has_modes" = 1 ]; then q -c "SELECT icpml.process_feedback()" >/dev/null; fi
  local fin
  fin=$(q -Atc "SELECT count(*) FILTER (WHERE status = 'rewarded') || ' rewarded, global n ' || coalesce((SELECT n FROM icpml.bandit_state WHERE scope = 'global'), 0) || coalesce(', variants n ' || (SELECT sum(n) FROM icpml.bandit_state WHERE scope LIKE 'variant:%'), '') FROM icpml.recommendations")
  printf '| %-8s | %-9s | %8s | %9s | %9s | %-16s | %-16s | %s |\n' "$label" "$mode" "$tps" "$p50" "$p99" "$la0" "$la1" "$fin"
}

echo "feedback writers: $clients clients, $secs s per run, $(nproc) CPUs, commit $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?')$( [ "$variants" -ge 1 ] && echo ", impressions of $variants variants with their own states" )"
echo
printf '| %-8s | %-9s | %8s | %9s | %9s | %-16s | %-16s | %s |\n' script mode tps "p50 ms" "p99 ms" "load before" "load after" "state"
echo '|----------|-----------|----------|-----------|-----------|------------------|------------------|-------|'
if [ "$has_modes" = 1 ]; then
  for s in save funnel; do
    for m in immediate queued; do run "$s" "$tmp/$s.sql" "$m"; done
  done
else
  for s in save funnel; do run "$s" "$tmp/$s.sql" -; done
fi
dropdb "$db"
