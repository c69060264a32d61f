#!/usr/bin/python3
"""icpml recommendation simulator: drives icpml.recommend_accounts against a
known ground truth (world.py) and reports reward and regret per policy.

For each policy, from a fresh copy of the same database (CREATE DATABASE ...
TEMPLATE <base>) and the same world (seed), for T rounds:

  1. pick the round's user (seeded, proportional to the generator's activity)
  2. SELECT * FROM icpml.recommend_accounts(user, k, policy, M, seed_t)
  3. the simulated user examines and acts on the list (world.serve); each
     action is one row inserted into public.user_interactions (the online
     feedback trigger rewards the impression at once)
  4. icpml.process_feedback(as_of => now() + reward_window) expires the
     impressions the user did not act on (reward 0), every FEEDBACK_EVERY
     rounds (default 20: a user gets a list every ~100 rounds on average,
     so the zeros arrive before most users see their next list)

Steps 3 and 4 of round t and step 2 of round t+1 go to the server in one
round trip (one implicit transaction, statements in that order).

Expected reward of a list = sum_r W[r] * mu(u, a_r) (W: examination
probability of rank r); the oracle's = the same for the true top-k by mu
among (a) every account the user could still be shown ("global") and (b) the
M candidates the retrieval stage hands the ranker ("candidates": the open
accounts among the top M by ICP probability, paging further down when fewer
than M / 2 survive, as recommend.c retrieves them).
Normalised regret = 1 - cumulative reward / cumulative oracle reward.

Prints a markdown table; writes JSON next to it when --json is given.
Connection from the usual PGHOST / PGPORT / PGUSER environment.
"""

import argparse
import json
import multiprocessing as mp
import os
import sys
import time

import numpy as np
import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import world as W  # noqa: E402

POLICIES = ["linucb", "thompson", "greedy", "epsilon_greedy", "icp", "random"]


def connect(dbname):
    conn = psycopg2.connect(dbname=dbname, application_name="icpml_sim")
    conn.autocommit = True
    return conn


def read_settings(cur):
    """The recommender settings the world must mirror."""
    cur.execute("""select candidates, extract(epoch from reward_window),
                          exclude_dismissed, exclude_worked_types
                   from icpml.bandit_settings""")
    m, window, excl_dismissed, worked = cur.fetchone()
    close = set(worked or [])
    if excl_dismissed:
        close.add("dismiss")
    return dict(candidates=int(m), window_s=float(window), close_types=sorted(close))


class Checkpoints:
    """Regret at every tenth of the run, overall and over the last tenth."""

    def __init__(self, T, name, verbose):
        self.marks = set([max(1, T // 10) * i for i in range(1, 11)] + [T])
        self.name, self.verbose, self.rows = name, verbose, []
        self.last = dict(reward=0.0, oracle=0.0, oracle_cand=0.0, t=0)

    def update(self, t, cum, t0):
        if t + 1 not in self.marks:
            return
        last = self.last
        d_r = cum["reward"] - last["reward"]
        d_o = cum["oracle"] - last["oracle"]
        d_c = cum["oracle_cand"] - last["oracle_cand"]
        c = dict(rounds=t + 1,
                 regret=1 - cum["reward"] / cum["oracle"],
                 regret_cand=1 - cum["reward"] / cum["oracle_cand"],
                 window_regret=1 - d_r / d_o if d_o > 0 else None,
                 window_regret_cand=1 - d_r / d_c if d_c > 0 else None,
                 reward_per_round=d_r / (t + 1 - last["t"]),
                 oracle_cand_per_round=d_c / (t + 1 - last["t"]),
                 elapsed_s=time.time() - t0)
        self.rows.append(c)
        self.last = dict(reward=cum["reward"], oracle=cum["oracle"],
                         oracle_cand=cum["oracle_cand"], t=t + 1)
        if self.verbose:
            print(f"  {self.name:15s} {t + 1:7d} rounds  regret {c['regret']:.3f} "
                  f"(candidates {c['regret_cand']:.3f}, last window {c['window_regret_cand']:.3f}; "
                  f"reward/round {c['reward_per_round']:.3f}, oracle {c['oracle_cand_per_round']:.3f})  "
                  f"{c['elapsed_s']:.0f} s", file=sys.stderr, flush=True)


def candidate_mask(world, u, m, k):
    """The retrieval stage's candidate set for user u, as recommend.c builds
    it: pages of the account order (ICP probability desc, account id), the
    first of m accounts, doubling; the accounts the user may still be shown
    survive (at most m); stop once max(k, m / 2) survive, the table ends,
    10 m were scanned with at least k survivors, or 20 m were scanned."""
    order = world.icp_order
    n = order.size
    page, offset, cand = m, 0, []
    ncand = 0
    while True:
        chunk = order[offset:offset + page]
        nfetched = chunk.size
        alive = chunk[world.open[u, chunk]][:m - ncand]
        cand.append(alive)
        ncand += alive.size
        offset += nfetched
        if ncand >= max(k, m // 2) or nfetched < page or offset >= n:
            break
        if offset >= 10 * m and ncand >= k:
            break
        if offset >= 20 * m:
            break
        page = min(page * 2, 50000)
    mask = np.zeros(world.n_accounts, dtype=bool)
    mask[np.concatenate(cand)] = True
    return mask


def run_policy(args, policy, data, settings):
    """One policy over its own copy of the database; returns its figures."""
    db = f"{args.db_prefix}_{policy}"
    admin = connect(args.admin_db)
    acur = admin.cursor()
    acur.execute(f'drop database if exists "{db}"')
    acur.execute(f'create database "{db}" template "{args.base_db}"')
    admin.close()

    conn = connect(db)
    cur = conn.cursor()
    cur.execute("set icpml.nthread = 1") if args.set_nthread else None
    cur.execute("""prepare rec(uuid, integer, text, integer, bigint) as
                   select r.account_id from icpml.recommend_accounts(
                       user_id => $1, k => $2, policy => $3, candidates => $4, seed => $5) r
                   order by r.rank""")
    window = f"{settings['window_s'] + 1.0} seconds"
    expire_sql = (f"select icpml.process_feedback(as_of => now() + interval '{window}');"
                  if args.feedback_every > 0 else "")

    world = W.World(data, args.seed, close_types=settings["close_types"])
    k, m, T = args.k, settings["candidates"] if args.candidates is None else args.candidates, args.rounds
    users, u_exam, u_act = W.round_draws(args.seed, T, world.n_users, world.activity, k)

    cum = dict(reward=0.0, realised=0.0, oracle=0.0, oracle_cand=0.0)
    counts = {o: 0 for o in W.OUTCOMES}
    ck = Checkpoints(T, policy, args.verbose)
    checks = dict(shown_closed=0, shown_outside_candidates=0)
    pending_sql = ""
    t0 = time.time()
    db_time = 0.0
    for t in range(T):
        u = int(users[t])
        sql = pending_sql
        if args.feedback_every > 0 and t > 0 and t % args.feedback_every == 0:
            sql += expire_sql
        seed_t = args.seed * 1000003 + t
        sql += cur.mogrify("execute rec(%s, %s, %s, %s, %s)",
                           (world.user_ids[u], k, policy, m, seed_t)).decode()
        q0 = time.perf_counter()
        cur.execute(sql)
        shown = [r[0] for r in cur.fetchall()]
        db_time += time.perf_counter() - q0

        # the oracles see the state the list was served in
        cand = candidate_mask(world, u, m, k)
        cum["oracle"] += world.oracle(u, k)
        cum["oracle_cand"] += world.oracle(u, k, cand)
        # consistency of the mirrored retrieval: shown accounts that the
        # world considers closed, or outside the mirrored candidate set
        for a in shown:
            i = world.index.get(int(a), -1)
            if i < 0 or not world.open[u, i]:
                checks["shown_closed"] += 1
            elif not cand[i]:
                checks["shown_outside_candidates"] += 1
        expected, acted, realised, _ = world.serve(u, shown, u_exam[t], u_act[t])
        cum["reward"] += expected
        cum["realised"] += realised
        for _, o in acted:
            counts[W.OUTCOMES[o]] += 1
        counts["none"] += len(shown) - len(acted)
        if acted:
            pending_sql = "insert into public.user_interactions (user_id, account_id, interaction_type) values " + ",".join(
                cur.mogrify("(%s, %s, %s)", (world.user_ids[u], a, W.OUTCOMES[o])).decode()
                for a, o in acted) + ";"
        else:
            pending_sql = ""
        ck.update(t, cum, t0)
    if pending_sql:
        cur.execute(pending_sql)
    elapsed = time.time() - t0
    cur.execute("select count(*), count(*) filter (where status = 'rewarded'), "
                "count(*) filter (where status = 'expired') from icpml.recommendations")
    n_rec, n_rewarded, n_expired = cur.fetchone()
    conn.close()
    if not args.keep_dbs:
        admin = connect(args.admin_db)
        admin.cursor().execute(f'drop database if exists "{db}"')
        admin.close()
    return dict(policy=policy, rounds=T, k=k, candidates=m,
                reward=cum["reward"], realised=cum["realised"],
                oracle=cum["oracle"], oracle_cand=cum["oracle_cand"],
                regret=1 - cum["reward"] / cum["oracle"],
                regret_cand=1 - cum["reward"] / cum["oracle_cand"],
                outcomes=counts, impressions=n_rec, rewarded=n_rewarded, expired=n_expired,
                elapsed_s=elapsed, ms_per_round=1000 * elapsed / T,
                db_ms_per_round=1000 * db_time / T, checkpoints=ck.rows, **checks)


REFERENCES = {
    "true_mu0": "ranks the M candidates by the true static utility mu0 (knows taste and noise, blind to fatigue)",
    "true_fit": "ranks the M candidates by the true fit probability (a perfect ICP score, no personalisation)",
    "true_structured": "ranks the M candidates by the true expected reward without its idiosyncratic part (knows fit, taste, intent and fatigue; not the per-pair noise)",
}


def run_reference(args, name, data, settings):
    """An offline policy with access to the truth, same world and draws, no
    database: brackets what a policy could reach."""
    world = W.World(data, args.seed, close_types=settings["close_types"])
    k, m, T = args.k, settings["candidates"] if args.candidates is None else args.candidates, args.rounds
    users, u_exam, u_act = W.round_draws(args.seed, T, world.n_users, world.activity, k)
    fitp = W.sigmoid(data["fit_logit"])
    cum = dict(reward=0.0, realised=0.0, oracle=0.0, oracle_cand=0.0)
    counts = {o: 0 for o in W.OUTCOMES}
    t0 = time.time()
    ck = Checkpoints(T, "ref:" + name, args.verbose)
    for t in range(T):
        u = int(users[t])
        cand = candidate_mask(world, u, m, k)
        idx = np.flatnonzero(cand)
        if name == "true_mu0":
            key = world.mu0[u, idx]
        elif name == "true_structured":
            key = (world.mu0_structured[u] * world.fatigue_factor(u))[idx]
        else:
            key = fitp[idx]
        top = idx[np.lexsort((world.account_ids[idx], -key))[:k]]
        cum["oracle"] += world.oracle(u, k)
        cum["oracle_cand"] += world.oracle(u, k, cand)
        expected, acted, realised, _ = world.serve(u, world.account_ids[top], u_exam[t], u_act[t])
        cum["reward"] += expected
        cum["realised"] += realised
        for _, o in acted:
            counts[W.OUTCOMES[o]] += 1
        counts["none"] += k - len(acted)
        ck.update(t, cum, t0)
    elapsed = time.time() - t0
    return dict(policy="ref:" + name, rounds=T, k=k, candidates=m,
                reward=cum["reward"], realised=cum["realised"],
                oracle=cum["oracle"], oracle_cand=cum["oracle_cand"],
                regret=1 - cum["reward"] / cum["oracle"],
                regret_cand=1 - cum["reward"] / cum["oracle_cand"],
                outcomes=counts, elapsed_s=elapsed, ms_per_round=1000 * elapsed / T,
                checkpoints=ck.rows)


def _worker(payload):
    args, policy, data, settings = payload
    if policy.startswith("ref:"):
        return run_reference(args, policy[4:], data, settings)
    return run_policy(args, policy, data, settings)


def fmt_pct(x):
    return "–" if x is None else f"{100 * x:+.1f} %"


def report(args, results, desc, settings):
    by = {r["policy"]: r for r in results}
    out = []
    out.append(f"Simulator: {args.rounds} rounds, k = {args.k}, M = {results[0]['candidates']}, "
               f"seed {args.seed}, world: {desc['accounts']} accounts, {desc['users']} users; "
               f"ICP probability explains {100 * desc['r2_mu0_on_icp_probability']:.0f} % of the variance of "
               f"the true expected reward (true fit probability: {100 * desc['r2_mu0_on_true_fit_probability']:.0f} %; "
               f"ICP from {desc['icp_source']})."
               + (f" World overrides: {W.OVERRIDES}." if W.OVERRIDES else ""))
    out.append("")
    out.append("| policy | cum. expected reward | realised reward | vs random | vs icp | vs greedy | vs ε-greedy "
               "| norm. regret (global oracle) | norm. regret (candidate oracle) | last 10 % regret (cand.) | ms/round |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def rel(p, base):
        if base not in by or by[base]["reward"] <= 0:
            return None
        return by[p]["reward"] / by[base]["reward"] - 1

    for p in [p for p in POLICIES if p in by] + [p for p in by if p.startswith("ref:")]:
        r = by[p]
        last = r["checkpoints"][-1]["window_regret_cand"] if r["checkpoints"] else None
        out.append(f"| {p} | {r['reward']:.1f} | {r['realised']:.1f} | {fmt_pct(rel(p, 'random'))} "
                   f"| {fmt_pct(rel(p, 'icp'))} | {fmt_pct(rel(p, 'greedy'))} | {fmt_pct(rel(p, 'epsilon_greedy'))} "
                   f"| {100 * r['regret']:.1f} % | {100 * r['regret_cand']:.1f} % "
                   f"| {'–' if last is None else f'{100 * last:.1f} %'} | {r['ms_per_round']:.2f} |")
    bad = {p: (by[p].get("shown_closed", 0), by[p].get("shown_outside_candidates", 0)) for p in by}
    out.append("")
    out.append("Mirror check (shown accounts the world had closed / outside the mirrored candidate set): "
               + ", ".join(f"{p} {a}/{b}" for p, (a, b) in bad.items() if not p.startswith("ref:")) + ".")
    refs = [p for p in by if p.startswith("ref:")]
    if refs:
        out.append("")
        out.append("Reference rows (offline, no database, same world and draws): "
                   + "; ".join(f"`{p}` {REFERENCES[p[4:]]}" for p in refs) + ".")
    out.append("")
    out.append("Interactions the simulated users logged (per policy): "
               + "; ".join(f"{p}: " + ", ".join(f"{k} {v}" for k, v in by[p]["outcomes"].items()
                                                   if k != "none")
                           for p in POLICIES if p in by))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", 5000)))
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--candidates", type=int, default=None, help="M (default: bandit_settings.candidates)")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("SEED", 42)))
    ap.add_argument("--policies", default=os.environ.get("POLICIES", ",".join(POLICIES)))
    ap.add_argument("--base-db", default="icpml_sim_base")
    ap.add_argument("--db-prefix", default="icpml_sim")
    ap.add_argument("--admin-db", default="postgres")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("JOBS", 1)))
    ap.add_argument("--feedback-every", type=int, default=int(os.environ.get("FEEDBACK_EVERY", 20)),
                    help="expire unrewarded impressions every N rounds (0: never)")
    ap.add_argument("--reference", default=os.environ.get("REFERENCE", "true_mu0,true_fit,true_structured"),
                    help="offline reference policies with access to the truth (empty: none)")
    ap.add_argument("--keep-dbs", action="store_true")
    ap.add_argument("--set-nthread", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    for p in policies:
        if p not in POLICIES:
            ap.error(f"unknown policy {p}")
    for r in [r for r in args.reference.split(",") if r.strip()]:
        if r not in REFERENCES:
            ap.error(f"unknown reference policy {r}")

    base = connect(args.base_db)
    cur = base.cursor()
    settings = read_settings(cur)
    data = W.load_world_data(cur)
    base.close()
    desc = W.describe(W.World(data, args.seed, close_types=settings["close_types"]), data)
    print(f"world: {json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in desc.items()})}",
          file=sys.stderr)
    print(f"settings: {settings}", file=sys.stderr)

    t0 = time.time()
    payloads = [(args, p, data, settings) for p in policies]
    payloads += [(args, "ref:" + r, data, settings)
                 for r in args.reference.split(",") if r.strip()]
    if args.jobs > 1:
        with mp.get_context("fork").Pool(args.jobs) as pool:
            results = pool.map(_worker, payloads, chunksize=1)
    else:
        results = [_worker(pl) for pl in payloads]
    total = time.time() - t0

    text = report(args, results, desc, settings)
    print(text)
    print(f"\n({len(policies)} policies × {args.rounds} rounds in {total:.0f} s, {args.jobs} job(s))")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(args=vars(args), settings=settings, world=desc, results=results,
                           world_params={n: getattr(W, n) for n in ("B0", "B_FIT", "B_AFF", "B_INT", "SIGMA",
                                                                   "MU_MAX", "INTENT_DAYS", "FATIGUE_RATE",
                                                                   "FATIGUE_DECAY")},
                           total_s=total), f, indent=1)


if __name__ == "__main__":
    main()
