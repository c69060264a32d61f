#!/usr/bin/env python3
"""Off-policy evaluation checked against the simulator's truth (issue #13).

Reads one kept simulator database whose lists were served by an exploring
logger with candidate logging on (simulate.py --ope DIR --keep-dbs), and the
truth OpeTruth saved for it (every candidate's true mu as each list was
served, the true reward of each served rank).  For each target policy and
each block of --block consecutive logged lists it prints:

  truth        the target's expected reward per list on those requests:
               sum over ranks j of exam_world(j) * sum over candidates a of
               pi(a at j) * mu_true(a), pi computed from the logged candidates
               (independently of the C code)
  sql          icpml.evaluate_policy over the block, as the product runs it:
               first on the rewards the product recorded, then on the true
               rewards (each impression's deepest funnel step) written into
               the log, which separates the estimator from the attribution
  resampled    --repeats logs drawn again from the same requests (the logger's
               epsilon-greedy draws over the logged mu, the user's examination
               and funnel draws with the world's curve and true mu): the
               share of 95 % intervals that cover the truth and of estimates
               within 5 % of it, with this file's replica of the estimators
               (checked against the SQL on the real log first)

  PGHOST=... PGPORT=... /usr/bin/python3 test/bench/sim/ope.py --db icpml_ope_epsilon_greedy_epsilon_0_3 \\
      --truth /tmp/ope/epsilon_greedy_epsilon_0.3.npz --targets greedy,epsilon_greedy/epsilon=0.1,linucb/alpha=0.25
"""
import argparse
import datetime
import os
import sys

import numpy as np
import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import world as W  # noqa: E402


def rank_marginals(r, k, m, eps_below, exploit=0):
    """The probability that an epsilon-mix lists its r-th best candidate
    (r > k: any outside the best k) at ranks 1..k of k out of m, the first
    `exploit` ranks never at random (ope.c's OpeRankMarginals, written again)."""
    r = min(r, k + 1)
    p = np.zeros(r + 1)
    p[0] = 1.0
    out = np.zeros(k)
    for j in range(1, k + 1):
        left = m - j + 1
        eps = 0.0 if j <= exploit else eps_below
        q = np.zeros(r + 1)
        for c in range(r):
            if p[c] == 0:
                continue
            better = r - 1 - c
            if eps > 0:
                out[j - 1] += p[c] * eps / left
                q[c + 1] += p[c] * eps * better / left
                q[c] += p[c] * eps * max(left - 1 - better, 0) / left
            if eps < 1:
                if c < r - 1:
                    q[c + 1] += p[c] * (1 - eps)
                else:
                    out[j - 1] += p[c] * (1 - eps)
        p = q
    return out


_tables = {}


def table(k, m, eps, exploit=0):
    """(k + 1) x k: row r - 1 = rank_marginals(r, k, m, eps, exploit)."""
    key = (k, m, round(eps, 12), exploit)
    if key not in _tables:
        _tables[key] = np.array([rank_marginals(r, k, m, eps, exploit) for r in range(1, k + 2)])
    return _tables[key]


def order(key, prob, ids):
    """Candidate indices best first: key desc, ICP probability desc, id asc (policy.c's order)."""
    return np.lexsort((ids, -prob, -key))


def parse_target(spec, settings):
    parts = spec.split("/")
    name, params = parts[0], {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        params[k] = float(v)
    eps = params.get("epsilon", settings["epsilon"] if name == "epsilon_greedy" else 1.0 if name == "random" else 0.0)
    alpha = params.get("alpha", settings["alpha"])
    exploit = int(params.get("exploit_slots", settings["exploit_slots"] if name in ("linucb", "epsilon_greedy") else 0))
    return dict(spec=spec, name=name, params=params, eps=eps, alpha=alpha, exploit=exploit)


def target_key(t, L):
    if t["name"] == "icp":
        return L["prob"]
    if t["name"] == "linucb":
        return L["mu"] + t["alpha"] * L["width"]
    return L["mu"]


def funnel_rewards(mu, u):
    """Reward of the funnel outcome drawn with uniform u for expected reward mu (vectorised W.draw_outcome)."""
    mu = np.clip(mu, 0.0, 1.0)
    i = np.clip(np.searchsorted(W.ANCHOR_MU, mu, side="right") - 1, 0, len(W.ANCHOR_MU) - 2)
    lam = np.clip((mu - W.ANCHOR_MU[i]) / (W.ANCHOR_MU[i + 1] - W.ANCHOR_MU[i]), 0.0, 1.0)
    probs = (1 - lam)[:, None] * W.ANCHORS[i] + lam[:, None] * W.ANCHORS[i + 1]
    c = np.cumsum(probs, axis=1)
    o = np.minimum((c < (u * c[:, -1])[:, None]).sum(axis=1), len(W.REWARD) - 1)
    return W.REWARD[o]


def load(cur, truth):
    cur.execute("""select c.list_id, c.served_at, c.served, c.propensity, c.examination, c.account_ids, c.mu,
                          c.width, c.probability, c.epsilon, c.exploit_slots,
                          array(select r.reward from unnest(c.served_ids) with ordinality as s(id, o)
                                left join icpml.recommendations as r on r.recommendation_id = s.id order by s.o),
                          c.served_ids
                   from icpml.recommendation_candidates as c order by c.list_id""")
    rows = cur.fetchall()
    # an NpzFile decompresses an array again at every truth[...]: read each once
    # (a slice of a fresh copy per list kept 5000 full copies alive: 22 GB at 50k impressions)
    t_ids, t_mu, t_reward = truth["list_id"], truth["mu"], truth["reward"]
    t_off = np.concatenate([[0], np.cumsum(truth["ncand"])])
    r_off = np.concatenate([[0], np.cumsum(truth["nserved"])])
    pos = {int(x): i for i, x in enumerate(t_ids)}
    lists = []
    for row in rows:
        i = pos.get(int(row[0]))
        if i is None or row[3] is None or any(y is None for y in row[11]):
            continue
        mu_true = t_mu[t_off[i]:t_off[i + 1]]
        if mu_true.size != len(row[5]):
            continue
        lists.append(dict(list_id=row[0], served_at=row[1], served=np.array(row[2]) - 1,
                          prop=np.array(row[3], dtype=float), exam=np.array(row[4], dtype=float),
                          ids=np.array(row[5], dtype=np.int64), mu=np.array(row[6], dtype=float),
                          width=np.array(row[7], dtype=float), prob=np.array(row[8], dtype=float),
                          eps=float(row[9]), exploit=int(row[10]), y_rec=np.array(row[11], dtype=float),
                          y_true=t_reward[r_off[i]:r_off[i + 1]].astype(float),
                          mu_true=mu_true, served_ids=list(row[12])))
    return lists


def prepare(t, L, exam_world):
    """Per list and target: the target's rank of every candidate (k + 1
    outside its best k), its marginals, the direct method and the truth."""
    k, m = L["served"].size, L["ids"].size
    n = min(t["exploit"], k)
    first = order(L["mu"], L["prob"], L["ids"])[:n]
    rest = order(target_key(t, L), L["prob"], L["ids"])
    top = np.concatenate([first, rest[~np.isin(rest, first)]])[:k]
    rank = np.full(m, k + 1)
    rank[top] = np.arange(1, k + 1)
    T = table(k, m, t["eps"], n)
    tail_log = L["mu"].sum() - L["mu"][top].sum()
    tail_true = L["mu_true"].sum() - L["mu_true"][top].sum()
    dm = float(L["exam"] @ (T[:k].T @ L["mu"][top] + T[k] * tail_log))
    truth = float(exam_world[:k] @ (T[:k].T @ L["mu_true"][top] + T[k] * tail_true))
    return rank, T, dm, truth


def estimate(lists, t, ys, exam_world, clip):
    """ips, snips, dr (value, se) and the truth over lists (the real log's draws, rewards ys[i])."""
    n = len(lists)
    ips, dr, truth = np.zeros(n), np.zeros(n), np.zeros(n)
    k = max(L["served"].size for L in lists)
    A, B = [], []
    for i, L in enumerate(lists):
        rank, T, dm, tr = prepare(t, L, exam_world)
        kk = L["served"].size
        w = np.minimum(T[rank[L["served"]] - 1, np.arange(kk)] / L["prop"], clip)
        y = ys[i]
        ips[i] = w @ y
        dr[i] = dm + w @ (y - L["exam"] * L["mu"][L["served"]])
        truth[i] = tr
        a, b = np.zeros(k), np.zeros(k)
        a[:kk], b[:kk] = w * y, w
        A.append(a)
        B.append(b)
    A, B = np.array(A), np.array(B)
    sa, sb = A.sum(0), B.sum(0)
    R = np.divide(sa, sb, out=np.zeros_like(sa), where=sb > 0)
    psi = ((A - R * B) / np.where(sb > 0, sb / n, 1.0)).sum(1)
    se = lambda v: float(v.std(ddof=1) / np.sqrt(n))  # noqa: E731
    return dict(ips=(ips.mean(), se(ips)), snips=(R.sum(), se(psi)), dr=(dr.mean(), se(dr))), truth.mean()


def resample(lists, targets, exam_world, repeats, clip, seed):
    """repeats new logs of the same requests: per target and estimator an
    array of (value, se) over the repeats, and the block's truth."""
    rng = np.random.default_rng(seed)
    n = len(lists)
    k = max(L["served"].size for L in lists)
    prep = [[prepare(t, L, exam_world) for L in lists] for t in targets]
    nt = len(targets)
    # per target and repeat: sums over lists (ips, dr: value and square; snips: per rank and cross-products)
    s_ips, s_ips2 = np.zeros((nt, repeats)), np.zeros((nt, repeats))
    s_dr, s_dr2 = np.zeros((nt, repeats)), np.zeros((nt, repeats))
    sa, sb = np.zeros((nt, repeats, k)), np.zeros((nt, repeats, k))
    saa, sab, sbb = (np.zeros((nt, repeats, k, k)) for _ in range(3))
    for i, L in enumerate(lists):
        kk, m = L["served"].size, L["ids"].size
        g = order(L["mu"], L["prob"], L["ids"])
        head = g[:kk]
        tail = g[kk:]
        TL = table(kk, m, L["eps"], L["exploit"])
        taken = np.zeros((repeats, kk), dtype=bool)
        items = np.full((repeats, kk), -1, dtype=np.int64)
        lrank = np.zeros((repeats, kk), dtype=np.int64)
        rows = np.arange(repeats)
        for j in range(kk):
            rnd = rng.random(repeats) < (0.0 if j < L["exploit"] else L["eps"])
            free = ~taken
            h_left = free.sum(1)
            u = rng.random(repeats)
            pick_head = rnd & (u * (m - j) < h_left)
            pick_tail = rnd & ~pick_head
            # greedy: the best head item not listed; a random head pick: uniform among those not listed
            nth = np.where(pick_head, np.minimum((rng.random(repeats) * h_left).astype(np.int64), h_left - 1), 0)
            hr = np.argmax(np.cumsum(free, axis=1) > nth[:, None], axis=1)
            h = ~pick_tail
            taken[rows[h], hr[h]] = True
            items[h, j] = head[hr[h]]
            lrank[h, j] = hr[h] + 1
            todo = np.flatnonzero(pick_tail)
            while todo.size:
                c = tail[rng.integers(tail.size, size=todo.size)]
                ok = ~(items[todo, :j] == c[:, None]).any(1)
                items[todo[ok], j] = c[ok]
                lrank[todo[ok], j] = kk + 1
                todo = todo[~ok]
        prop = TL[lrank - 1, np.arange(kk)[None, :]]
        examined = rng.random((repeats, kk)) < exam_world[None, :kk]
        y = np.where(examined, funnel_rewards(L["mu_true"][items].ravel(),
                                              rng.random(repeats * kk)).reshape(repeats, kk), 0.0)
        q = L["exam"][None, :] * L["mu"][items]
        for ti in range(nt):
            rank, T, dm, _ = prep[ti][i]
            w = np.minimum(T[rank[items] - 1, np.arange(kk)[None, :]] / prop, clip)
            v = (w * y).sum(1)
            s_ips[ti] += v
            s_ips2[ti] += v * v
            v = dm + (w * (y - q)).sum(1)
            s_dr[ti] += v
            s_dr2[ti] += v * v
            a, b = np.zeros((repeats, k)), np.zeros((repeats, k))
            a[:, :kk], b[:, :kk] = w * y, w
            sa[ti] += a
            sb[ti] += b
            saa[ti] += np.einsum("rj,rl->rjl", a, a)
            sab[ti] += np.einsum("rj,rl->rjl", a, b)
            sbb[ti] += np.einsum("rj,rl->rjl", b, b)
    out = []

    def moments(s1, s2):
        mean = s1 / n
        return mean, np.sqrt(np.maximum(s2 - n * mean * mean, 0) / (n - 1) / n)

    for ti in range(nt):
        truth = np.mean([p[3] for p in prep[ti]])
        R = np.divide(sa[ti], sb[ti], out=np.zeros_like(sa[ti]), where=sb[ti] > 0)
        c = np.divide(n, sb[ti], out=np.zeros_like(sb[ti]), where=sb[ti] > 0)
        # sum over lists of psi^2, psi_i = sum_j c_j (a_ij - R_j b_ij)
        psi2 = np.einsum("rj,rl,rjl->r", c, c, saa[ti] - R[:, None, :] * sab[ti]
                         - R[:, :, None] * np.swapaxes(sab[ti], 1, 2) + R[:, :, None] * R[:, None, :] * sbb[ti])
        res = dict(ips=moments(s_ips[ti], s_ips2[ti]),
                   snips=(R.sum(1), np.sqrt(np.maximum(psi2, 0) / (n - 1) / n)),
                   dr=moments(s_dr[ti], s_dr2[ti]))
        out.append((res, truth))
    return out


def sql_eval(cur, t, since, until, clip):
    params = "{" + ", ".join(f'"{k}": {v}' for k, v in t["params"].items()) + "}"
    cur.execute("select estimator, value, std_error, effective_sample_size, unsupported from icpml.evaluate_policy("
                "%s, %s::jsonb, %s, %s, clip => %s)", (t["name"], params, since, until, clip))
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in cur.fetchall()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True)
    ap.add_argument("--truth", required=True)
    ap.add_argument("--targets", default="greedy,epsilon_greedy/epsilon=0.1,icp,linucb/alpha=0.25")
    ap.add_argument("--block", type=int, default=5000, help="lists per block (k = 10: 50k impressions)")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--clip", type=float, default=100.0)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    truth = np.load(args.truth)
    conn = psycopg2.connect(dbname=args.db)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("select epsilon, alpha, exploit_slots from icpml.bandit_settings")
    eps, alpha, exploit = cur.fetchone()
    settings = dict(epsilon=eps, alpha=alpha, exploit_slots=exploit)
    targets = [parse_target(s, settings) for s in args.targets.split(",") if s.strip()]
    lists = load(cur, truth)
    exam_world = truth["exam"]
    print(f"{len(lists)} logged lists with truth ({sum(L['served'].size for L in lists)} impressions), "
          f"logger epsilon {lists[0]['eps'] if lists else '-'}, M = {lists[0]['ids'].size if lists else '-'}")
    starts = [b for b in range(0, len(lists), args.block) if len(lists[b:b + args.block]) >= args.block // 2]
    blocks = [lists[b:b + args.block] for b in starts]
    cur.execute("select 1 from pg_attribute where attrelid = 'icpml.recommendations'::regclass"
                " and attname = 'recorded_reward'")
    if cur.fetchone() is None:
        cur.execute("alter table icpml.recommendations add column recorded_reward float8")
        cur.execute("update icpml.recommendations set recorded_reward = reward")

    print("\n| target | block | lists | truth | estimator | SQL, recorded reward | SQL, true reward | "
          "rel. error (true reward) | ESS | unsupported | replica − SQL |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for bi, blk in enumerate(blocks):
        since = blk[0]["served_at"]
        nxt = starts[bi] + len(blk)
        until = lists[nxt]["served_at"] if nxt < len(lists) else blk[-1]["served_at"] + datetime.timedelta(seconds=1)
        cur.execute("update icpml.recommendations set reward = recorded_reward")
        rec = {t["spec"]: sql_eval(cur, t, since, until, args.clip) for t in targets}
        ids = [i for L in blk for i in L["served_ids"]]
        ys = [y for L in blk for y in L["y_true"]]
        cur.execute("update icpml.recommendations as r set reward = v.y from unnest(%s::bigint[], %s::float8[])"
                    " as v(id, y) where r.recommendation_id = v.id", (ids, ys))
        tru = {t["spec"]: sql_eval(cur, t, since, until, args.clip) for t in targets}
        for t in targets:
            est, tr = estimate(blk, t, [L["y_true"] for L in blk], exam_world, args.clip)
            for e in ("ips", "snips", "dr"):
                v_rec, v_tru = rec[t["spec"]][e][0], tru[t["spec"]][e][0]
                print(f"| {t['spec']} | {bi + 1} | {len(blk)} | {tr:.4f} | {e} | {v_rec:.4f} | "
                      f"{v_tru:.4f} ± {1.96 * tru[t['spec']][e][1]:.4f} | {100 * (v_tru - tr) / tr:+.1f} % | "
                      f"{tru[t['spec']][e][2] or 0:.0f} | {tru[t['spec']][e][3]:.3f} | {abs(est[e][0] - v_tru):.1e} |")
    cur.execute("update icpml.recommendations set reward = recorded_reward")

    if args.repeats > 0:
        print(f"\nresampled: {args.repeats} logs of each block's requests")
        print("\n| target | block | truth | estimator | mean estimate | mean rel. error | "
              "within 5 % | 95 % interval covers | mean half-width |")
        print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
        for bi, blk in enumerate(blocks):
            res = resample(blk, targets, exam_world, args.repeats, args.clip, args.seed + bi)
            for t, (r, tr) in zip(targets, res):
                for e in ("ips", "snips", "dr"):
                    v, se = r[e]
                    rel = (v - tr) / tr
                    cover = np.mean(np.abs(v - tr) <= 1.96 * se)
                    print(f"| {t['spec']} | {bi + 1} | {tr:.4f} | {e} | {v.mean():.4f} | {100 * rel.mean():+.1f} % | "
                          f"{100 * np.mean(np.abs(rel) <= 0.05):.0f} % | {100 * cover:.0f} % | "
                          f"{100 * np.mean(1.96 * se) / tr:.1f} % |")


if __name__ == "__main__":
    main()
