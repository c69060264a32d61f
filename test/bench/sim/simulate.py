#!/usr/bin/python3
"""icpml recommendation simulator: drives icpml.recommend_accounts against a
known ground truth and reports reward, regret, candidate recall and the
reward the product recorded, per policy.

Scenarios (--scenario; README.md describes both):
  production  (default) world of production.py: full-funnel logging over
              simulated days, a position-bias curve the model does not
              assume, partly hidden and drifting tastes, niche users,
              accounts arriving and changing during the run, nightly
              score_all()
  classic     the static world of world.py (the 0.1.0 - 0.3.0 figures)

A run is one policy (or one offline reference) over its own world and its
own copy of the base database (CREATE DATABASE ... TEMPLATE <base>). For
each round t (the user of the round is drawn from common random numbers,
so every run faces the same users and the same examination and action
draws):

  1. world.advance(t): SQL that makes the product's tables follow the world
     (accounts arriving, signals changing)
  2. the interactions due at round t (funnel steps of earlier impressions)
     are inserted into public.user_interactions (the online trigger rewards)
  3. every --feedback-every rounds, icpml.process_feedback expires
     unanswered impressions: classic: at once (as_of = now() + window);
     production: those served more than the simulated window ago (as_of =
     wall-clock time of that round's call + reward_window)
  4. maintenance calls that are due (--maintenance), then account_scores is
     re-read for the retrieval mirror
  5. recommend_accounts(user, k, policy, M, seed) (prepared); steps 1-3 and 5
     go to the server in one round trip
  6. the simulated user examines and acts (world.serve_round); the steps it
     logs are queued for their rounds

Extension points (README "Extending the simulator"): scenarios (SCENARIOS),
rankers (ProductPolicy with settings overrides, Reference), maintenance
schedules, and observers (on_round / on_day / finish) for anything measured
while a run goes on (e.g. daily experiment_results for A/A tests).

Prints markdown tables; writes JSON with --json. Connection from PGHOST /
PGPORT / PGUSER.
"""

import argparse
import json
import multiprocessing as mp
import os
import re
import sys
import time
from collections import defaultdict

import numpy as np
import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import production as P  # noqa: E402
import world as W  # noqa: E402

POLICIES = ["linucb", "thompson", "greedy", "epsilon_greedy", "icp", "random"]

REFERENCES = {
    "knows_taste": "ranks the M candidates by the model's current ICP view weighted by the user's true "
                   "fit weight, plus the user's true current taste (visible and hidden parts, drift "
                   "included) and intent, times fatigue; not the per-pair noise, not the true fit",
    "true_structured": "ranks the M candidates by the true expected reward without its per-pair noise "
                       "(knows fit incl. hidden quality, taste, intent and fatigue)",
    "true_mu0": "ranks the M candidates by the true utility without fatigue (knows the per-pair noise too)",
    "true_fit": "ranks the M candidates by the true fit (a perfect ICP score, no personalisation)",
}


# ---------------------------------------------------------------------------
# scenarios

class ClassicScenario:
    """world.py: the static world of the 0.1.0 - 0.3.0 figures."""
    name = "classic"
    references = "true_mu0,true_fit,true_structured"
    maintenance = ""
    dynamic = False

    def load(self, cur):
        return W.load_world_data(cur)

    def world(self, data, seed, settings):
        return W.World(data, seed, close_types=settings["close_types"])

    def draws(self, seed, T, world, k):
        users, u_exam, u_act = W.round_draws(seed, T, world.n_users, world.activity, k)
        return users, u_exam, u_act, None

    def describe(self, world, data, m):
        return W.describe(world, data)

    def expire_as_of(self, t, settings, wall):
        """process_feedback's as_of that expires every unanswered impression."""
        return f"now() + interval '{settings['window_s'] + 1.0} seconds'"

    def expire_sql(self, t, args, settings, wall):
        if not (args.feedback_every > 0 and t > 0 and t % args.feedback_every == 0):
            return ""
        return f"select icpml.process_feedback(as_of => {self.expire_as_of(t, settings, wall)});"

    def overrides(self):
        return W.OVERRIDES


class ProductionScenario:
    """production.py: the production effects of issue #11."""
    name = "production"
    references = "knows_taste,true_structured"
    maintenance = "select icpml.score_all()@1d"
    dynamic = True

    def load(self, cur):
        return P.load_world_data(cur)

    def world(self, data, seed, settings):
        return P.ProductionWorld(data, seed, close_types=settings["close_types"],
                                 db_close_types=settings["close_types"],
                                 window_days=settings["window_s"] / 86400.0)

    def draws(self, seed, T, world, k):
        return P.round_draws(seed, T, world.n_users, world.activity, k)

    def describe(self, world, data, m):
        return P.describe(world, m)

    def expire_as_of(self, t, settings, wall):
        """process_feedback's as_of that expires the impressions served
        before round t - window_rounds (it expires served_at < as_of -
        reward_window): the wall-clock time of that round's call plus the
        window; '-infinity' before the first window has passed."""
        w = int(round(settings["window_s"] / 86400.0 * P.RUN["ROUNDS_PER_DAY"]))
        if t - w < 0 or wall[t - w] is None:
            return "'-infinity'::timestamptz"
        return f"'{wall[t - w]}'::timestamptz + interval '{settings['window_s']} seconds'"

    def expire_sql(self, t, args, settings, wall):
        if not (args.feedback_every > 0 and t > 0 and t % args.feedback_every == 0):
            return ""
        as_of = self.expire_as_of(t, settings, wall)
        if "infinity" in as_of:
            return ""
        return f"select icpml.process_feedback(as_of => {as_of});"

    def overrides(self):
        return P.RUN_OVERRIDES


SCENARIOS = {"production": ProductionScenario(), "classic": ClassicScenario()}


# ---------------------------------------------------------------------------
# the database side of a run

def connect(dbname):
    conn = psycopg2.connect(dbname=dbname, application_name="icpml_sim")
    conn.autocommit = True
    return conn


def read_settings(cur):
    """The recommender settings the world must mirror."""
    cur.execute("""select candidates, extract(epoch from reward_window),
                          exclude_dismissed, exclude_worked_types, position_bias
                   from icpml.bandit_settings""")
    m, window, excl_dismissed, worked, pb = cur.fetchone()
    close = set(worked or [])
    if excl_dismissed:
        close.add("dismiss")
    return dict(candidates=int(m), window_s=float(window), close_types=sorted(close),
                position_bias=float(pb))


class Database:
    """A fresh copy of the base database for one run."""

    def __init__(self, args, label):
        self.args = args
        self.name = f"{args.db_prefix}_{re.sub('[^a-z0-9_]', '_', label.lower())}"[:63]
        admin = connect(args.admin_db)
        acur = admin.cursor()
        acur.execute(f'drop database if exists "{self.name}"')
        acur.execute(f'create database "{self.name}" template "{args.base_db}"')
        admin.close()
        self.conn = connect(self.name)
        self.cur = self.conn.cursor()
        self.seconds = 0.0

    def execute(self, sql, params=None):
        t0 = time.perf_counter()
        self.cur.execute(sql, params)
        self.seconds += time.perf_counter() - t0

    def scores(self):
        self.execute("select account_id, probability from icpml.account_scores")
        return self.cur.fetchall()

    def close(self):
        self.conn.close()
        if not self.args.keep_dbs:
            admin = connect(self.args.admin_db)
            admin.cursor().execute(f'drop database if exists "{self.name}"')
            admin.close()


# ---------------------------------------------------------------------------
# rankers: who builds the list

class ProductPolicy:
    """icpml.recommend_accounts with a policy, optionally with settings
    changed first (spec 'linucb/alpha=0.5/position_bias=0')."""
    offline = False

    def __init__(self, spec):
        parts = spec.split("/")
        self.label, self.policy = spec, parts[0]
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy}")
        self.settings = []
        for p in parts[1:]:
            k, _, v = p.partition("=")
            if not re.fullmatch(r"[a-z_]+", k) or not v:
                raise ValueError(f"bad setting {p!r} in {spec!r} (name=value)")
            self.settings.append((k, v))

    def start(self, run):
        db = run.db
        for k, v in self.settings:
            db.execute(f"update icpml.bandit_settings set {k} = %s", (v,))
        if self.settings:
            db.execute("select icpml.rebuild_bandit_state()")
        if run.args.set_nthread:
            db.execute("set icpml.nthread = 1")
        if run.args.ope:
            db.execute("update icpml.candidate_log_settings set sample_rate = 1")
        db.execute("""prepare rec(uuid, integer, text, integer, bigint) as
                      select r.account_id, now()::text from icpml.recommend_accounts(
                          user_id => $1, k => $2, policy => $3, candidates => $4, seed => $5) r
                      order by r.rank""")

    def rank(self, run, t, u, sql):
        db = run.db
        seed_t = run.args.seed * 1000003 + t
        sql += db.cur.mogrify("execute rec(%s, %s, %s, %s, %s)",
                              (run.world.user_ids[u], run.k, self.policy, run.m, seed_t)).decode()
        db.execute(sql)
        rows = db.cur.fetchall()
        return [r[0] for r in rows], (rows[0][1] if rows else None)


class Reference:
    """An offline policy with access to the truth: ranks the mirrored
    candidates by world.ref_key(name, u). Uses a database only to follow
    the product's account_scores in a dynamic scenario."""
    offline = True

    def __init__(self, name):
        if name not in REFERENCES:
            raise ValueError(f"unknown reference {name}")
        self.name, self.label = name, "ref:" + name

    def start(self, run):
        pass

    def rank(self, run, t, u, sql):
        if sql and run.db is not None:
            run.db.execute(sql)
        idx = np.flatnonzero(run.cand)
        key = run.world.ref_key(self.name, u)[idx]
        top = idx[np.lexsort((run.world.account_ids[idx], -key))[:run.k]]
        return list(run.world.account_ids[top]), None


def make_ranker(spec):
    return Reference(spec[4:]) if spec.startswith("ref:") else ProductPolicy(spec)


# ---------------------------------------------------------------------------
# retrieval mirror

def candidate_mask(world, u, m, k):
    """The retrieval stage's candidate set for user u, as recommend.c builds
    it: pages of the account order (account_scores: ICP probability desc,
    account id), the first of m accounts, doubling; the accounts the product
    would still show the user survive (at most m); stop once max(k, m / 2)
    survive, the table ends, 10 m were scanned with at least k survivors,
    or 20 m were scanned."""
    order = world.icp_order
    n = order.size
    page, offset, cand = m, 0, []
    ncand = 0
    while True:
        chunk = order[offset:offset + page]
        nfetched = chunk.size
        alive = chunk[world.db_open[u, chunk]][:m - ncand]
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


# ---------------------------------------------------------------------------
# maintenance

def parse_maintenance(text, rounds_per_day):
    """'SQL@PERIOD;SQL@PERIOD' (PERIOD in rounds, or days with a 'd') ->
    [(sql, period in rounds)]. In the SQL, {expire_as_of} becomes the
    timestamptz expression the scenario passes process_feedback (simulated
    time mapped onto the wall clock), for product calls that take an as_of."""
    out = []
    for item in [s.strip() for s in (text or "").split(";") if s.strip()]:
        sql, _, period = item.rpartition("@")
        if not sql:
            raise ValueError(f"maintenance {item!r}: SQL@PERIOD")
        rounds = (float(period[:-1]) * rounds_per_day) if period.endswith("d") else float(period)
        if rounds < 1:
            raise ValueError(f"maintenance {item!r}: period below one round")
        out.append((sql.strip().rstrip(";") + ";", int(round(rounds))))
    return out


# ---------------------------------------------------------------------------
# observers: what is measured while a run goes on

class Observer:
    """Called for every round (after the user acted), at every simulated
    day boundary (before the round that starts the day) and at the end;
    finish() returns what goes into the run's result under its name."""
    name = None

    def on_round(self, run):
        pass

    def on_day(self, run, day):
        pass

    def finish(self, run):
        return None


class Trace(Observer):
    """Per-impression truth for later analysis (e.g. off-policy estimators
    checked against on-policy truth): round, user, account, rank, true mu,
    examination probability; saved as <dir>/<label>.npz."""
    name = "trace"

    def __init__(self, directory):
        self.dir, self.rows = directory, []

    def on_round(self, run):
        for r, a in enumerate(run.shown):
            self.rows.append((run.t, run.u, int(a), r + 1, float(run.mus[r]), float(run.world.exam[r])))

    def finish(self, run):
        os.makedirs(self.dir, exist_ok=True)
        path = os.path.join(self.dir, re.sub("[^A-Za-z0-9_.-]", "_", run.label) + ".npz")
        a = np.array(self.rows, dtype=np.float64).reshape(-1, 6)
        np.savez_compressed(path, round=a[:, 0].astype(np.int64), user=a[:, 1].astype(np.int64),
                            account=a[:, 2].astype(np.int64), rank=a[:, 3].astype(np.int64),
                            mu=a[:, 4], exam=a[:, 5])
        return path


class OpeTruth(Observer):
    """The truth off-policy estimates are checked against (--ope DIR, with
    candidate logging switched on in the run's database): for every list
    whose candidates the product logged (icpml.recommendation_candidates),
    every candidate's true mu as the list was served, and the true reward
    (deepest funnel step) of each served rank; saved as <dir>/<label>.npz.
    test/bench/sim/ope.py reads it with the kept database."""
    name = "ope"

    def __init__(self, directory):
        self.dir, self.last = directory, 0
        self.lists, self.mu, self.rewards = [], [], []

    def on_round(self, run):
        if run.db is None or run.ranker.offline:
            return
        run.db.execute("select c.list_id, c.account_ids from icpml.recommendation_candidates as c"
                       " where c.list_id > %s order by c.list_id desc limit 1", (self.last,))
        row = run.db.cur.fetchone()
        if row is None:
            return
        self.last = row[0]
        w = run.world
        idx = np.array([w.index.get(int(a), -1) for a in row[1]], dtype=np.int64)
        self.lists.append(row[0])
        self.mu.append(np.where(idx >= 0, w.mu_served[np.maximum(idx, 0)], 0.0).astype(np.float64))
        self.rewards.append(np.asarray(w.item_reward, dtype=np.float64).copy())

    def finish(self, run):
        os.makedirs(self.dir, exist_ok=True)
        path = os.path.join(self.dir, re.sub("[^A-Za-z0-9_.-]", "_", run.label) + ".npz")
        np.savez_compressed(path, list_id=np.array(self.lists, dtype=np.int64),
                            ncand=np.array([m.size for m in self.mu], dtype=np.int64),
                            mu=np.concatenate(self.mu) if self.mu else np.zeros(0),
                            nserved=np.array([r.size for r in self.rewards], dtype=np.int64),
                            reward=np.concatenate(self.rewards) if self.rewards else np.zeros(0),
                            exam=np.asarray(run.world.exam, dtype=np.float64),
                            db=np.array(run.db.name if run.db is not None else ""))
        return path


# ---------------------------------------------------------------------------
# one run

class Run:
    def __init__(self, args, spec, data, settings, scenario):
        self.args, self.label, self.scenario, self.settings = args, spec, scenario, settings
        self.ranker = make_ranker(spec)
        self.k = args.k
        self.m = settings["candidates"] if args.candidates is None else args.candidates
        self.T = args.rounds
        self.world = scenario.world(data, args.seed, settings)
        self.rpd = int(getattr(self.world, "rpd", args.rounds_per_day))
        self.maintenance = parse_maintenance(args.maintenance, self.rpd)
        # whose clock expires unanswered impressions: the scenario's, or
        # (--expire now) every one at once, as in the classic world
        self.expiry = SCENARIOS["classic"] if args.expire == "now" else scenario
        self.db = None
        if not self.ranker.offline or scenario.dynamic or self.maintenance:
            self.db = Database(args, spec)
        self.observers = [Trace(args.trace)] if args.trace else []
        if args.ope and not self.ranker.offline:
            self.observers.append(OpeTruth(args.ope))
        self.t = self.u = 0
        self.shown, self.mus, self.cand = [], None, None

    def run(self):
        args, world, T, k, m = self.args, self.world, self.T, self.k, self.m
        users, u_exam, u_act, u_step = self.scenario.draws(args.seed, T, world, k)
        if self.db is not None:
            self.ranker.start(self)
        self.recent_days = self.exclude_recent_days()
        self.product_recall = (args.recall == "product" and not self.ranker.offline)
        nwin = (T + args.window - 1) // args.window
        acc = {n: np.zeros(nwin) for n in ("reward", "realised", "oracle", "oracle_cand", "recall",
                                           "recall_unscored", "rounds")}
        counts = defaultdict(int)
        checks = dict(shown_excluded=0, shown_outside_candidates=0)
        segments = getattr(world, "segments", None)     # a label per user (production: niche / others)
        seg_recall = defaultdict(lambda: [0.0, 0])
        queue = defaultdict(list)           # round -> [(user, account_id, type)]
        impressions = []                    # (user, account_id, true reward), in serving order
        wall = [None] * T                   # wall-clock time of each round's call
        maint_s = 0.0
        t0 = time.time()
        py_s = 0.0
        marks = set([max(1, T // 10) * i for i in range(1, 11)] + [T])
        for t in range(T):
            p0 = time.perf_counter()
            db_before = self.db.seconds if self.db is not None else 0.0
            u = int(users[t])
            self.t, self.u = t, u
            if t > 0 and t % self.rpd == 0:
                for o in self.observers:
                    o.on_day(self, t // self.rpd)
            sql = world.advance(t)
            due = queue.pop(t, None)
            if due:
                for uu, a, itype in due:
                    world.logged(uu, a, itype)
                if not self.ranker.offline:
                    sql += ("insert into public.user_interactions (user_id, account_id, interaction_type) values "
                            + ",".join(self.db.cur.mogrify("(%s, %s, %s)", (world.user_ids[uu], a, itype)).decode()
                                       for uu, a, itype in due) + ";")
            if not self.ranker.offline:
                sql += self.expiry.expire_sql(t, args, self.settings, wall)
                sql += self.exclude_recent_sql(t, wall)
            maint = [s.replace("{expire_as_of}", self.expiry.expire_as_of(t, self.settings, wall))
                     for s, period in self.maintenance if t > 0 and t % period == 0]
            if maint:
                m0 = time.perf_counter()
                self.db.execute(sql + "".join(maint))
                sql = ""
                world.set_scores(self.db.scores())
                maint_s += time.perf_counter() - m0
            if self.product_recall:
                # the product's own candidates: retrieve_candidates with the seed the call gets
                if sql:
                    self.db.execute(sql)
                    sql = ""
                cand = self.product_candidates(t, u)
            else:
                cand = candidate_mask(world, u, m, k)
            self.cand = cand
            shown, wall[t] = self.ranker.rank(self, t, u, sql)
            self.shown = shown

            # the oracles and recall see the state the list was served in
            mu = world.mu(u)
            o_glob, _ = world.oracle_list(mu, k)
            o_cand, _ = world.oracle_list(mu[cand], k)
            ms = world.mu_static(u)
            _, best = world.oracle_list(ms, k)
            best = best[ms[best] > 0]
            for a in shown:
                i = world.index.get(int(a), -1)
                if i < 0 or not world.db_open[u, i]:
                    checks["shown_excluded"] += 1
                elif not cand[i]:
                    checks["shown_outside_candidates"] += 1
            expected, realised, events, mus = world.serve_round(
                u, t, shown, u_exam[t], u_act[t], None if u_step is None else u_step[t])
            self.mus = mus
            if not self.ranker.offline:
                impressions.extend((u, int(a), float(x)) for a, x in zip(shown, world.item_reward))
            for due_t, a, itype in events:
                queue[due_t].append((u, a, itype))
                counts[itype] += 1
            counts["impressions"] += len(shown)
            w = t // args.window
            acc["reward"][w] += expected
            acc["realised"][w] += realised
            acc["oracle"][w] += o_glob
            acc["oracle_cand"][w] += o_cand
            if best.size:
                acc["recall"][w] += cand[best].mean()
                acc["recall_unscored"][w] += (~world.scored[best]).mean()
                if segments is not None:
                    seg_recall[segments[u]][0] += cand[best].mean()
                    seg_recall[segments[u]][1] += 1
            acc["rounds"][w] += 1
            for o in self.observers:
                o.on_round(self)
            py_s += time.perf_counter() - p0 - ((self.db.seconds - db_before) if self.db is not None else 0.0)
            if args.verbose and t + 1 in marks:
                done = slice(0, w + 1)
                print(f"  {self.label:28s} {t + 1:7d} rounds  reward {acc['reward'][done].sum():9.1f}  "
                      f"of cand. oracle {acc['reward'][done].sum() / acc['oracle_cand'][done].sum():.3f}  "
                      f"recall {acc['recall'][done].sum() / acc['rounds'][done].sum():.3f}  "
                      f"{time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        elapsed = time.time() - t0

        res = dict(policy=self.label, rounds=T, k=k, candidates=m,
                   reward=float(acc["reward"].sum()), realised=float(acc["realised"].sum()),
                   oracle=float(acc["oracle"].sum()), oracle_cand=float(acc["oracle_cand"].sum()),
                   recall=float(acc["recall"].sum() / max(1, acc["rounds"].sum())),
                   recall_unscored=float(acc["recall_unscored"].sum() / max(1, acc["rounds"].sum())),
                   recall_by_segment={k: v[0] / v[1] for k, v in sorted(seg_recall.items()) if v[1]},
                   windows={n: [round(float(x), 4) for x in v] for n, v in acc.items()},
                   window=args.window, logged=dict(counts), world_stats=dict(world.stats),
                   elapsed_s=elapsed, ms_per_round=1000 * elapsed / T,
                   py_ms_per_round=1000 * py_s / T, maintenance_s=maint_s, **checks)
        res["regret"] = 1 - res["reward"] / res["oracle"]
        res["regret_cand"] = 1 - res["reward"] / res["oracle_cand"]
        if self.db is not None:
            res["db_ms_per_round"] = 1000 * (self.db.seconds - maint_s) / T
            if not self.ranker.offline:
                res.update(self.recorded(queue, impressions))
            self.db.close()
        for o in self.observers:
            res[o.name] = o.finish(self)
        return res

    def product_candidates(self, t, u):
        """The candidate set recommend_accounts ranks this round (the same
        seed gives the same candidates) as a mask over the world's accounts."""
        seed_t = self.args.seed * 1000003 + t
        self.db.execute("select account_id from icpml.retrieve_candidates(%s, %s, %s)",
                        (self.world.user_ids[u], self.m, seed_t))
        mask = np.zeros(self.world.n_accounts, dtype=bool)
        for (a,) in self.db.cur.fetchall():
            i = self.world.index.get(int(a), -1)
            if i >= 0:
                mask[i] = True
        return mask

    def exclude_recent_days(self):
        """bandit_settings.exclude_recent of a product run, in days (0: none
        or not a product run). The simulator treats it as simulated time."""
        if self.ranker.offline or self.db is None:
            return 0.0
        self.db.execute("select coalesce((select extract(epoch from exclude_recent) / 86400.0 "
                        "from icpml.bandit_settings), 0)")
        return float(self.db.cur.fetchone()[0])

    def exclude_recent_sql(self, t, wall):
        """Every feedback_every rounds, set exclude_recent to the wall-clock
        interval that covers its simulated days: since the call of the round
        that many days back (the starting history is dated in real days)."""
        fe = max(1, self.args.feedback_every)
        if self.recent_days <= 0 or t % fe != 0:
            return ""
        back = int(round(self.recent_days * self.rpd))
        if t >= back and wall[t - back] is not None:
            expr = f"greatest(now() - '{wall[t - back]}'::timestamptz, interval '0')"
        elif t > 0 and wall[0] is not None:
            expr = (f"(now() - '{wall[0]}'::timestamptz) + interval '{(back - t) / self.rpd * 86400.0} seconds'")
        else:
            expr = f"interval '{self.recent_days * 86400.0} seconds'"
        return f"update icpml.bandit_settings set exclude_recent = {expr};"

    def recorded(self, queue, impressions):
        """Flush the steps still to come, expire everything, and read what
        the product recorded: the reward it learnt from, against the truth,
        impression by impression (icpml.recommendations in id order is the
        serving order)."""
        rest = [e for t in sorted(queue) for e in queue[t]]
        db, world = self.db, self.world
        db.execute("select count(*) filter (where status = 'pending'), count(*) filter (where status = 'expired') "
                   "from icpml.recommendations")
        pending_at_end, expired_in_run = db.cur.fetchone()
        for i in range(0, len(rest), 1000):
            db.execute("insert into public.user_interactions (user_id, account_id, interaction_type) values "
                       + ",".join(db.cur.mogrify("(%s, %s, %s)", (world.user_ids[uu], a, itype)).decode()
                                  for uu, a, itype in rest[i:i + 1000]))
        db.execute(f"select icpml.process_feedback(as_of => now() + interval "
                   f"'{self.settings['window_s'] + 1.0} seconds')")
        db.execute("""select count(*), count(*) filter (where status = 'rewarded'),
                             count(*) filter (where status = 'expired'), coalesce(sum(reward), 0)
                      from icpml.recommendations""")
        n, rewarded, expired, total = db.cur.fetchone()
        db.execute("""select i.interaction_type, count(*), sum(r.reward)
                      from icpml.recommendations r
                      join public.user_interactions i on i.interaction_id = r.reward_interaction_id
                      group by 1 order by 1""")
        by_type = {t: dict(n=int(c), reward=float(s)) for t, c, s in db.cur.fetchall()}
        db.execute("""select user_id::text, account_id, coalesce(reward, 0) from icpml.recommendations
                      order by recommendation_id""")
        rows = db.cur.fetchall()
        aligned = len(rows) == len(impressions) and all(
            r[0] == world.user_ids[i[0]] and r[1] == i[1] for r, i in zip(rows, impressions))
        split = {}
        if aligned:
            rec = np.array([float(r[2]) for r in rows])
            true = np.array([i[2] for i in impressions])
            acted = true > 0
            split = dict(recorded_on_acted=float(rec[acted].sum()), true_on_acted=float(true[acted].sum()),
                         recorded_on_unacted=float(rec[~acted].sum()),
                         unacted_rewarded=int((rec[~acted] > 0).sum()),
                         acted_impressions=int(acted.sum()))
        return dict(impressions=n, rewarded=rewarded, expired=expired, recorded_reward=float(total),
                    pending_at_end=pending_at_end, expired_in_run=expired_in_run,
                    recorded_by_type=by_type, recorded_aligned=aligned, **split)


def _worker(payload):
    args, spec, data, settings, scenario_name = payload
    return Run(args, spec, data, settings, SCENARIOS[scenario_name]).run()


# ---------------------------------------------------------------------------
# report

def fmt_pct(x, signed=True):
    if x is None:
        return "–"
    return f"{100 * x:+.1f} %" if signed else f"{100 * x:.1f} %"


def curve_stats(r, base, skip):
    """Windows (after the first `skip` rounds) in which r earned less than
    base, and the lowest ratio of a window's reward to base's."""
    if base is None or r is base:
        return None, None, None
    a = np.array(r["windows"]["reward"])
    b = np.array(base["windows"]["reward"])
    first = skip // r["window"]
    if first >= a.size:
        return None, None, None
    ratio = a[first:] / np.maximum(b[first:], 1e-12)
    return int((ratio < 1).sum()), int(ratio.size), float(ratio.min())


def curve_table(by, order):
    """Reward per round over ranges of rounds (from the window sums)."""
    T = by[order[0]]["rounds"]
    w = by[order[0]]["window"]
    edges = [e for e in (0, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000) if e < T] + [T]
    edges = sorted(set(e - e % w for e in edges))
    if edges[-1] != T:
        edges.append(T)
    head = "| policy | " + " | ".join(f"{a}–{b}" for a, b in zip(edges, edges[1:])) + " |"
    out = [head, "|---|" + "---:|" * (len(edges) - 1)]
    for p in order:
        r = by[p]
        v = np.array(r["windows"]["reward"])
        n = np.array(r["windows"]["rounds"])
        cells = []
        for a, b in zip(edges, edges[1:]):
            s = slice(a // w, (b + w - 1) // w)
            cells.append(f"{v[s].sum() / max(1, n[s].sum()):.3f}")
        out.append(f"| {p} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def report(args, results, desc, settings, scenario):
    by = {r["policy"]: r for r in results}
    order = [p for p in by if not p.startswith("ref:")] + [p for p in by if p.startswith("ref:")]
    out = []
    desc_txt = (f"ICP probability explains {100 * desc['r2_mu0_on_icp_probability']:.0f} % of the variance "
                f"of the true expected reward (true fit probability: "
                f"{100 * desc['r2_mu0_on_true_fit_probability']:.0f} %; ICP from {desc.get('icp_source')})")
    extra = ""
    if scenario.name == "production":
        extra = (f"; {desc['niche_users']} niche and {desc['drifting_users']} drifting users, "
                 f"{desc['arriving_accounts']} accounts arriving and {desc['signal_events']} signal changes "
                 f"over the run's days, {desc['rounds_per_day']:.0f} rounds a day, hidden share of the taste "
                 f"variance {100 * desc['hidden_share_of_taste_variance']:.0f} %, "
                 f"users' true top 10 inside the ICP top {by[order[0]]['candidates']} at the start "
                 f"{100 * desc['recall_top10_in_top_M_at_start']:.0f} %")
    out.append(f"Simulator, scenario {scenario.name}: {args.rounds} rounds, k = {args.k}, "
               f"M = {results[0]['candidates']}, seed {args.seed}, {desc['accounts']} accounts, "
               f"{desc['users']} users; {desc_txt}{extra}."
               + (f" World overrides: {scenario.overrides()}." if scenario.overrides() else "")
               + (f" Maintenance: `{args.maintenance}`." if args.maintenance else " No maintenance calls.")
               + (" Unanswered impressions expire at once (--expire now)." if args.expire == "now" else ""))
    out.append("")

    def rel(p, base):
        if base not in by or by[base]["reward"] <= 0:
            return None
        return by[p]["reward"] / by[base]["reward"] - 1

    def share(p, base):
        if base not in by or by[base]["reward"] <= 0:
            return None
        return by[p]["reward"] / by[base]["reward"]

    kt = "ref:knows_taste" if "ref:knows_taste" in by else None
    out.append("| policy | cum. true reward (expected) | realised | vs random | vs icp | vs ε-greedy "
               "| of knows-taste | of candidate oracle | of global oracle | candidate recall "
               "| recorded / true reward (on acted impressions; credited to unacted) "
               "| 100-round windows below icp (after 100) | worst window / icp | ms/round (db, py) |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in order:
        r = by[p]
        below, nw, worst = curve_stats(r, by.get("icp"), 100)
        rec = "–"
        if "recorded_reward" in r and r["realised"] > 0:
            rec = f"{100 * r['recorded_reward'] / r['realised']:.0f} %"
            if r.get("true_on_acted"):
                rec += (f" ({100 * r['recorded_on_acted'] / r['true_on_acted']:.0f} %; "
                        f"{100 * r['recorded_on_unacted'] / r['realised']:.0f} %)")
        ms = f"{r['ms_per_round']:.1f}"
        if "db_ms_per_round" in r:
            ms += f" ({r['db_ms_per_round']:.1f}, {r['py_ms_per_round']:.1f})"
        out.append(f"| {p} | {r['reward']:.1f} | {r['realised']:.1f} | {fmt_pct(rel(p, 'random'))} "
                   f"| {fmt_pct(rel(p, 'icp'))} | {fmt_pct(rel(p, 'epsilon_greedy'))} "
                   f"| {fmt_pct(share(p, kt) if kt else None, False)} "
                   f"| {fmt_pct(r['reward'] / r['oracle_cand'], False)} | {fmt_pct(r['reward'] / r['oracle'], False)} "
                   f"| {fmt_pct(r['recall'], False)} | {rec} "
                   f"| {'–' if below is None else f'{below} / {nw}'} | {'–' if worst is None else f'{worst:.2f}'} "
                   f"| {ms} |")
    out.append("")
    out.append("Reward per round over ranges of rounds (expected true reward):")
    out.append("")
    out.append(curve_table(by, order))
    out.append("")
    prod = [p for p in order if "recorded_reward" in by[p]]
    if prod:
        out.append("What the product recorded (after flushing every queued step and expiring the rest): "
                   + "; ".join(f"{p}: {by[p]['recorded_reward']:.0f} of {by[p]['realised']:.0f} true, credited to "
                               + ", ".join(f"{t} {v['n']}" for t, v in by[p]["recorded_by_type"].items())
                               for p in prod) + ".")
        out.append("")
    out.append(f"Candidate check (shown accounts the product should have excluded / outside the candidate set: "
               f"{'what retrieve_candidates returned' if args.recall == 'product' else 'the ICP-top mirror'}"
               "): " + ", ".join(f"{p} {by[p]['shown_excluded']}/{by[p]['shown_outside_candidates']}"
                                    for p in prod) + ".")
    if scenario.name == "production":
        out.append("")
        segs = sorted({k for p in order for k in by[p].get("recall_by_segment", {})})
        if segs:
            out.append("Candidate recall by user segment: " + "; ".join(
                f"{p} " + ", ".join(f"{k} {100 * by[p]['recall_by_segment'].get(k, 0):.1f} %" for k in segs)
                for p in order) + ".")
            out.append("")
        out.append("Share of users' true top 10 that had arrived but was not scored yet (invisible to retrieval): "
                   + ", ".join(f"{p} {100 * by[p]['recall_unscored']:.1f} %" for p in order) + ". "
                   + "Shown while the user's funnel on it was still running (no value): "
                   + ", ".join(f"{p} {by[p]['world_stats'].get('shown_busy', 0)}" for p in order) + ".")
    refs = [p for p in order if p.startswith("ref:")]
    if refs:
        out.append("")
        out.append("Reference rows (offline, same world and draws): "
                   + "; ".join(f"`{p}` {REFERENCES[p[4:]]}" for p in refs) + ".")
    return "\n".join(out)


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default=os.environ.get("SCENARIO", "production"), choices=sorted(SCENARIOS))
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", 5000)))
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--candidates", type=int, default=None, help="M (default: bandit_settings.candidates)")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("SEED", 42)))
    ap.add_argument("--policies", default=os.environ.get("POLICIES", ",".join(POLICIES)),
                    help="comma-separated runs: a policy, optionally with settings (linucb/alpha=0.5)")
    ap.add_argument("--reference", default=os.environ.get("REFERENCE"),
                    help="offline reference policies (default: the scenario's; empty: none)")
    ap.add_argument("--base-db", default="icpml_sim_base")
    ap.add_argument("--db-prefix", default="icpml_sim")
    ap.add_argument("--admin-db", default="postgres")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("JOBS", 1)))
    ap.add_argument("--feedback-every", type=int, default=int(os.environ.get("FEEDBACK_EVERY", 20)),
                    help="run process_feedback every N rounds (0: never)")
    ap.add_argument("--expire", default=os.environ.get("EXPIRE", "scenario"), choices=["scenario", "now"],
                    help="process_feedback expires what is older than the scenario's simulated window "
                         "(production: 7 days of rounds), or every unanswered impression at once")
    ap.add_argument("--maintenance", default=os.environ.get("MAINTENANCE"),
                    help="'SQL@PERIOD;...' (PERIOD in rounds, or days: 1d); default: the scenario's")
    ap.add_argument("--rounds-per-day", type=int, default=100, help="day length for on_day (classic)")
    ap.add_argument("--recall", default=os.environ.get("RECALL", "product"), choices=["product", "mirror"],
                    help="candidates of a product run: what retrieve_candidates returns (product), or the "
                         "ICP-top mirror (mirror; references always use the mirror)")
    ap.add_argument("--window", type=int, default=100, help="rounds per window of the reward curve")
    ap.add_argument("--trace", default=os.environ.get("TRACE"), help="directory for per-impression truth")
    ap.add_argument("--ope", default=os.environ.get("OPE"),
                    help="directory for the off-policy truth of every list (logs every list's candidates)")
    ap.add_argument("--keep-dbs", action="store_true", default=os.environ.get("KEEP_DBS") == "1")
    ap.add_argument("--set-nthread", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    scenario = SCENARIOS[args.scenario]
    if args.reference is None:
        args.reference = scenario.references
    if args.maintenance is None:
        args.maintenance = scenario.maintenance
    specs = [p.strip() for p in args.policies.split(",") if p.strip()]
    specs += ["ref:" + r.strip() for r in args.reference.split(",") if r.strip()]
    try:
        for s in specs:
            make_ranker(s)
        parse_maintenance(args.maintenance, args.rounds_per_day)
    except ValueError as e:
        ap.error(str(e))

    base = connect(args.base_db)
    cur = base.cursor()
    settings = read_settings(cur)
    data = scenario.load(cur)
    base.close()
    m = settings["candidates"] if args.candidates is None else args.candidates
    desc = scenario.describe(scenario.world(data, args.seed, settings), data, m)
    print(f"world: {json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in desc.items()})}",
          file=sys.stderr)
    print(f"settings: {settings}", file=sys.stderr)

    t0 = time.time()
    payloads = [(args, s, data, settings, scenario.name) for s in specs]
    if args.jobs > 1:
        with mp.get_context("fork").Pool(args.jobs) as pool:
            results = pool.map(_worker, payloads, chunksize=1)
    else:
        results = [_worker(pl) for pl in payloads]
    total = time.time() - t0

    text = report(args, results, desc, settings, scenario)
    print(text)
    print(f"\n({len(specs)} runs × {args.rounds} rounds in {total:.0f} s, {args.jobs} job(s); per run: "
          + ", ".join(f"{r['policy']} {r['elapsed_s']:.0f} s" for r in results) + ")")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(args=vars(args), scenario=scenario.name, settings=settings, world=desc,
                           results=results, overrides=scenario.overrides(),
                           run_params=P.RUN if scenario.name == "production" else
                           {n: getattr(W, n) for n in ("B0", "B_FIT", "B_AFF", "B_INT", "SIGMA", "MU_MAX",
                                                       "INTENT_DAYS", "FATIGUE_RATE", "FATIGUE_DECAY")},
                           total_s=total), f, indent=1, default=str)


if __name__ == "__main__":
    main()
