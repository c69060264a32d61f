"""The 'production' scenario of the icpml recommendation simulator.

The classic world (world.py) is static and polite: one interaction per
examined account, the position-bias curve the model assumes, tastes the
history reveals in full, no new accounts, no change over time. This world
adds what a real deployment has (issue #11):

  funnel      a user who engages with a listed account logs every funnel
              step up to the deepest one (view -> research -> save ->
              contact -> meeting; research and save only sometimes), spread
              over simulated days. The true reward of an impression is the
              reward of its deepest step; the product may record less.
  exam curve  rank r is examined with probability EXAM_TOP * EXAM_DECAY^(r-1)
              (steeper than the 1/log2(r+1) the model assumes).
  hidden      part of each user's taste (a second-choice industry, two
              more technologies, a liking or dislike for hiring accounts,
              and a 3-dimensional latent factor) never shaped the history
              the product starts from; the history reflects only the
              visible part.
  niche       NICHE_SHARE of the users care little about ICP fit and like
              large accounts in industries and stacks the ICP model ranks
              low: their best accounts lie outside the ICP top M.
  drift       DRIFT_SHARE of the users move to a new taste (visible and
              hidden part) over DRIFT_DAYS, starting between DRIFT_FIRST
              and DRIFT_LAST; FIT_EVENTS accounts start or stop hiring
              engineers during the run (account_signals is updated: the
              context sees it at once, the ICP score after the next
              scoring, the truth at once).
  arrivals    ARRIVALS accounts (drawn in proportion to their true fit
              probability, as prospecting lists aimed at the ICP would
              supply them) exist in the truth but not in the product's
              tables at the start; each is inserted (account_signals and its
              research runs) on its arrival day. The product sees it once it
              is scored (today: the next score_all()).

Static utility (logit scale), for user u, account a, day d:

  z(u,a,d) = B0 + B_FIT * fit_weight(u) * fit_logit(a,d)
                + B_AFF * visible(u,a,d) + B_HID * hidden(u,a,d)
                + B_LAT * lat(u) . lat(a) + B_INT * intent(a)
                + SIGMA * eps(u,a)
  mu(u,a,d) = MU_MAX * sigmoid(z) * exp(-FATIGUE_RATE * fatigue(u,a))

  visible  icpml_ref.affinity_score over the user's (visible) taste
  hidden   1.0 * [industry = hidden industry] + 0.5 * (hidden technologies
           in the stack) + gamma(u) * [hiring engineers] - HID_CENTER
  drift    visible and hidden taste are (1 - l) * old + l * new, l going
           linearly from 0 to 1 over the user's drift period

Simulated time: ROUNDS_PER_DAY rounds make a day (100 users each get about
one list a working day). The product's reward window (bandit_settings,
7 days) is mapped onto rounds: impressions expire with reward 0 once
window_days * ROUNDS_PER_DAY rounds have passed (simulate.py passes
process_feedback the wall-clock time the impression of that round was
served at, plus the window).

Setup (run.sh, before CREATE EXTENSION): `production.py setup` stashes the
arriving accounts in schema icpml_sim, draws the signal events (and their
true fit, via icpml_ref.true_fit_logit), and writes the history (funnel
sequences drawn from the visible taste only) into public.user_interactions.
After training and score_all, `production.py precompute` stores what the
deployed model will say of every arriving or changing account (a
transaction that applies everything, calls icp_score_batch and rolls back).
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import world as W  # noqa: E402

# Fixed when the base database is built (stored in icpml_sim.info).
SETUP = dict(
    ARRIVALS=1000,          # accounts arriving during the run
    ARRIVAL_DAYS=200.0,     # arrival days uniform over [0, ARRIVAL_DAYS)
    FIT_EVENTS=2000,        # accounts that start / stop hiring during the run
    NICHE_SHARE=0.4,        # users whose best accounts lie outside the ICP top
    HISTORY_SEQUENCES=12000,  # funnel sequences in the starting history
    HISTORY_DAYS=180.0,
)

# May be overridden at simulation time (WORLD_<NAME>).
RUN = dict(
    ROUNDS_PER_DAY=100.0,
    B0=-2.4, B_FIT=1.0, B_AFF=1.0, B_HID=1.0, B_LAT=0.25, B_INT=1.0, SIGMA=0.4,
    MU_MAX=0.6, HID_CENTER=0.3,
    FATIGUE_RATE=0.04, FATIGUE_DECAY=0.9,
    EXAM_TOP=0.95, EXAM_DECAY=0.72,
    DRIFT_SHARE=0.5, DRIFT_DAYS=30.0, DRIFT_FIRST=20.0, DRIFT_LAST=160.0,
    STEP_RESEARCH=0.8, STEP_SAVE=0.4,           # P(logged | the user goes deeper)
    DELAY_RESEARCH=0.5, DELAY_SAVE=0.5,         # mean days to reach a step
    DELAY_CONTACT=2.0, DELAY_MEETING=3.0,
    FUNNEL=1.0,             # 0: log only the deepest step (ablation)
    DELAY_SCALE=1.0,        # multiplies every step's delay (0: all logged with the next round)
    EXAM_MODEL=0.0,         # 1: examination follows the model's 1/log2(r+1) (ablation)
)

LAT_DIM = 3
NICHE_INDUSTRIES = ["manufacturing", "healthcare", "retail", "education", "logistics"]
NICHE_TECH = ["java", "dotnet", "azure", "mysql", "php"]

# streams of the scenario's draws (the classic world uses 1..4)
S_NICHE, S_HIDDEN, S_DRIFT, S_ARRIVE, S_EVENTS, S_HISTORY, S_LAT, S_STEP = range(20, 28)

RUN_OVERRIDES = {}
for _n in RUN:
    _v = os.environ.get("WORLD_" + _n)
    if _v is not None:
        RUN[_n] = float(_v)
        RUN_OVERRIDES[_n] = float(_v)


def _setup_params():
    p = dict(SETUP)
    for n in p:
        v = os.environ.get("WORLD_" + n)
        if v is not None:
            p[n] = type(p[n])(float(v))
    return p


# ---------------------------------------------------------------------------
# truth and tastes

def load_truth(cur):
    """Every generated account's true attributes (arriving ones included),
    the users' generator taste and the industry / technology vocabularies."""
    cur.execute("select industry from icpml_ref.industries order by idx")
    industries = [r[0] for r in cur.fetchall()]
    cur.execute("select icpml_ref.tech_vocabulary()")
    vocab = list(cur.fetchone()[0])
    cur.execute("""select t.account_id, t.industry, t.company_size, t.tech_stack,
                          t.engineering_role_count > 0 or t.has_open_engineering_roles,
                          t.fit_logit, t.hidden_quality
                   from icpml_ref.account_truth t order by t.account_id""")
    rows = cur.fetchall()
    ind_pos = {n: i for i, n in enumerate(industries)}
    tech_pos = {n: i for i, n in enumerate(vocab)}
    n = len(rows)
    stack = np.zeros((n, len(vocab)), dtype=bool)
    for j, r in enumerate(rows):
        for term in r[3]:
            stack[j, tech_pos[term]] = True
    cur.execute("""select user_idx, user_id::text, pref_industries, size_center, pref_tech,
                          fit_weight, activity from icpml_ref.user_taste order by user_idx""")
    urows = cur.fetchall()
    cur.execute("select as_of from icpml_ref.generation_info")
    as_of = cur.fetchone()[0]
    return dict(
        industries=industries, vocab=vocab, as_of=as_of,
        account_ids=np.array([r[0] for r in rows], dtype=np.int64),
        ind=np.array([ind_pos[r[1]] for r in rows], dtype=np.int64),
        ln_size=np.log(np.maximum(np.array([r[2] for r in rows], dtype=np.float64), 1.0)),
        stack=stack,
        hiring=np.array([bool(r[4]) for r in rows]),
        fit_logit=np.array([r[5] for r in rows], dtype=np.float64),
        user_ids=[r[1] for r in urows],
        gen_taste=[dict(ind=[ind_pos[i] for i in r[2]], size=float(r[3]),
                        tech=[tech_pos[t] for t in r[4]]) for r in urows],
        fit_weight=np.array([r[5] for r in urows], dtype=np.float64),
        activity=np.array([r[6] for r in urows], dtype=np.float64),
    )


def visible_affinity(truth, taste):
    """icpml_ref.affinity_score of one taste over every account (numpy)."""
    ind_mask = np.zeros(len(truth["industries"]), dtype=bool)
    ind_mask[taste["ind"]] = True
    t1, t2 = taste["tech"]
    return (1.2 * ind_mask[truth["ind"]]
            + np.exp(-((truth["ln_size"] - taste["size"]) / 1.2) ** 2)
            + 0.5 * (truth["stack"][:, t1].astype(float) + truth["stack"][:, t2])
            - 1.0)


def hidden_static(truth, h):
    """The hidden taste without its hiring term (which changes with events)."""
    t1, t2 = h["tech"]
    return (1.0 * (truth["ind"] == h["ind"])
            + 0.5 * (truth["stack"][:, t1].astype(float) + truth["stack"][:, t2]))


def _general_taste(rng, truth, weights):
    k = 3 if rng.random() < 0.5 else 2
    ind = sorted(set(int(i) for i in rng.choice(len(truth["industries"]), size=k, p=weights)))
    return dict(ind=ind, size=float(np.log(20.0) + rng.random() * (np.log(5000.0) - np.log(20.0))),
                tech=[int(t) for t in rng.integers(0, len(truth["vocab"]), size=2)])


def _hidden_taste(rng, truth, weights, visible):
    choices = [i for i in range(len(truth["industries"])) if i not in visible["ind"]]
    w = np.array([weights[i] for i in choices])
    return dict(ind=int(choices[rng.choice(len(choices), p=w / w.sum())]),
                tech=[int(t) for t in rng.integers(0, len(truth["vocab"]), size=2)],
                gamma=float(rng.normal(0.0, 0.6)))


def draw_tastes(seed, truth, setup, cur=None):
    """Every user's visible taste (generator's, or a niche one), hidden taste,
    latent factor and drift; deterministic in (seed, truth, setup)."""
    n_users = len(truth["user_ids"])
    if cur is not None:
        cur.execute("select weight from icpml_ref.industries order by idx")
        weights = np.array([r[0] for r in cur.fetchall()], dtype=np.float64)
    else:
        weights = truth["industry_weights"]
    weights = weights / weights.sum()
    truth["industry_weights"] = weights
    rn = np.random.default_rng([seed, S_NICHE])
    niche = np.zeros(n_users, dtype=bool)
    niche[rn.permutation(n_users)[:int(round(setup["NICHE_SHARE"] * n_users))]] = True
    ipos = {n: i for i, n in enumerate(truth["industries"])}
    tpos = {n: i for i, n in enumerate(truth["vocab"])}
    visible, fit_weight = [], truth["fit_weight"].copy()
    for u in range(n_users):
        if niche[u]:
            ind = sorted(set(ipos[i] for i in rn.choice(NICHE_INDUSTRIES, size=2, replace=False)))
            visible.append(dict(ind=ind, size=float(np.log(rn.uniform(2000.0, 20000.0))),
                                tech=[tpos[t] for t in rn.choice(NICHE_TECH, size=2, replace=False)]))
            fit_weight[u] = rn.uniform(0.05, 0.3)
        else:
            visible.append(truth["gen_taste"][u])
    rh = np.random.default_rng([seed, S_HIDDEN])
    hidden = [_hidden_taste(rh, truth, weights, visible[u]) for u in range(n_users)]
    lat_u = rh.standard_normal((n_users, LAT_DIM))
    lat_u /= np.linalg.norm(lat_u, axis=1, keepdims=True)
    rd = np.random.default_rng([seed, S_DRIFT])
    drifting = rd.random(n_users) < RUN["DRIFT_SHARE"]
    drift_start = rd.uniform(RUN["DRIFT_FIRST"], RUN["DRIFT_LAST"], size=n_users)
    new_visible = [_general_taste(rd, truth, weights) for _ in range(n_users)]
    new_hidden = [_hidden_taste(rd, truth, weights, new_visible[u]) for u in range(n_users)]
    lat_a = np.random.default_rng([seed, S_LAT]).standard_normal((len(truth["account_ids"]), LAT_DIM))
    return dict(niche=niche, visible=visible, fit_weight=fit_weight, hidden=hidden,
                lat_u=lat_u, lat_a=lat_a, drifting=drifting, drift_start=drift_start,
                new_visible=new_visible, new_hidden=new_hidden)


# ---------------------------------------------------------------------------
# setup (run.sh): before CREATE EXTENSION, and after scoring

def _sql_array(xs):
    return "{" + ",".join(str(int(x)) for x in xs) + "}"


def setup(conn, seed):
    """Stash the arriving accounts, draw the signal events, write the history."""
    p = _setup_params()
    cur = conn.cursor()
    truth = load_truth(cur)
    tastes = draw_tastes(seed, truth, p, cur)
    ids = truth["account_ids"]
    n = len(ids)
    # arrivals come from prospecting lists aimed at the ICP: drawn without
    # replacement with probability proportional to the true fit probability
    ra = np.random.default_rng([seed, S_ARRIVE])
    wfit = W.sigmoid(truth["fit_logit"])
    arr_idx = np.sort(ra.choice(n, size=p["ARRIVALS"], replace=False, p=wfit / wfit.sum()))
    arr_day = ra.uniform(0.0, p["ARRIVAL_DAYS"], size=arr_idx.size)
    base = np.ones(n, dtype=bool)
    base[arr_idx] = False

    cur.execute("""
        drop schema if exists icpml_sim cascade;
        create schema icpml_sim;
        create table icpml_sim.info (key text primary key, value jsonb not null);
        create table icpml_sim.arrivals (account_id bigint primary key, day float8 not null);
        create table icpml_sim.signal_events (
            event_id integer primary key, day float8 not null, account_id bigint not null unique,
            engineering_role_count integer not null, has_open_engineering_roles boolean not null,
            total_open_roles integer not null, fit_logit float8);
        create table icpml_sim.icp_fresh (account_id bigint primary key, probability float8 not null);
    """)
    cur.execute("insert into icpml_sim.arrivals select unnest(%s::bigint[]), unnest(%s::float8[])",
                ([int(x) for x in ids[arr_idx]], [float(d) for d in arr_day]))
    cur.execute("""
        create table icpml_sim.arrival_signals as
            select s.* from public.account_signals s join icpml_sim.arrivals a using (account_id);
        create table icpml_sim.arrival_research as
            select r.* from public.research_runs r join icpml_sim.arrivals a using (account_id);
        delete from public.account_signals s using icpml_sim.arrivals a where s.account_id = a.account_id;
    """)

    # signal events: base accounts that start or stop hiring engineers
    re_ = np.random.default_rng([seed, S_EVENTS])
    ev_idx = re_.permutation(np.flatnonzero(base))[:p["FIT_EVENTS"]]
    ev_day = np.sort(re_.uniform(0.0, p["ARRIVAL_DAYS"], size=ev_idx.size))
    ev_n = re_.standard_normal(ev_idx.size)
    cur.execute("""select t.account_id, t.engineering_role_count, t.total_open_roles, t.company_size,
                          i.tech_level
                   from icpml_ref.account_truth t join icpml_ref.industries i using (industry)
                   order by t.account_id""")
    tr = cur.fetchall()
    rows = []
    for e, (i, day) in enumerate(zip(ev_idx, ev_day)):
        _, eng, total, size, tech_level = tr[i]
        if truth["hiring"][i]:
            new_eng, new_total, hiring = 0, max(0, total - eng), False
        else:
            new_eng = max(1, int(round(np.exp(np.log(0.4 + 0.012 * size * tech_level) + 0.6 * ev_n[e]))))
            new_eng = min(new_eng, 5000)
            new_total, hiring = total + new_eng, True
        rows.append((e + 1, float(day), int(ids[i]), new_eng, hiring, new_total))
    cur.executemany("insert into icpml_sim.signal_events values (%s, %s, %s, %s, %s, %s, null)", rows)
    cur.execute("""
        update icpml_sim.signal_events e
        set fit_logit = icpml_ref.true_fit_logit(t.industry, e.engineering_role_count,
                            e.has_open_engineering_roles, e.total_open_roles, t.has_engineering_blog,
                            t.company_size, t.funding_amount_usd, t.funding_date, t.tech_stack,
                            (g.as_of at time zone 'UTC')::date) + 0.5 * t.hidden_quality
        from icpml_ref.account_truth t cross join icpml_ref.generation_info g
        where t.account_id = e.account_id""")

    # the history: funnel sequences drawn from the visible taste only
    hist = history_rows(seed, truth, tastes, base, p, intent_of(cur, truth))
    cur.execute("delete from public.user_interactions")
    cur.executemany("""insert into public.user_interactions (user_id, account_id, interaction_type, created_at)
                       values (%s, %s, %s, %s)""", hist)
    cur.execute("insert into icpml_sim.info values ('setup', %s)",
                (json.dumps(dict(seed=seed, **p)),))
    cur.execute("analyze public.user_interactions")
    return dict(arrivals=int(arr_idx.size), events=len(rows), history_rows=len(hist),
                niche_users=int(tastes["niche"].sum()))


def intent_of(cur, truth):
    """Research recency exp(-days / 30) at the generator's as_of, from the
    latest research run (public tables and the stash)."""
    cur.execute("""
        select account_id, extract(epoch from g.as_of - max(created_at)) / 86400.0
        from (select account_id, created_at from public.research_runs
              union all
              select account_id, created_at from icpml_sim.arrival_research) r
        cross join icpml_ref.generation_info g
        group by account_id, g.as_of""")
    pos = {int(a): i for i, a in enumerate(truth["account_ids"])}
    intent = np.zeros(len(pos))
    for a, age in cur.fetchall():
        intent[pos[int(a)]] = np.exp(-max(float(age), 0.0) / 30.0)
    return intent


def history_rows(seed, truth, tastes, base, p, intent):
    """(user_id, account_id, type, created_at) rows of the starting history:
    per user, sequences over distinct base accounts sampled proportionally
    to exp(fit_weight * fit_logit + visible affinity) (Gumbel top-n), the
    deepest step drawn from the world's funnel at the visible-only expected
    reward, and every step logged as the funnel logs it."""
    import datetime
    rng = np.random.default_rng([seed, S_HISTORY])
    act = truth["activity"]
    n_seq = np.floor(p["HISTORY_SEQUENCES"] * np.cumsum(act) / act.sum()).astype(int)
    n_seq = np.diff(np.concatenate([[0], n_seq]))
    as_of = truth["as_of"]
    rows = []
    base_idx = np.flatnonzero(base)
    for u, uid in enumerate(truth["user_ids"]):
        vis = visible_affinity(truth, tastes["visible"][u])
        score = tastes["fit_weight"][u] * truth["fit_logit"] + vis
        g = score[base_idx] - np.log(-np.log(rng.random(base_idx.size)))
        pick = base_idx[np.argsort(-g, kind="stable")[:n_seq[u]]]
        z = (RUN["B0"] + RUN["B_FIT"] * tastes["fit_weight"][u] * truth["fit_logit"][pick]
             + RUN["B_AFF"] * vis[pick] + RUN["B_INT"] * intent[pick])
        mu = RUN["MU_MAX"] * W.sigmoid(z)
        for j, i in enumerate(pick):
            o = W.draw_outcome(mu[j], rng.random())
            if o == W.NONE:
                o = W.OUTCOMES.index("view")    # a history row exists: at least a view
            steps = funnel_steps(o, rng.random(4), rng.random(4))
            start = float(rng.random()) * p["HISTORY_DAYS"]
            for name, delay_days in steps:
                age = max(start - delay_days, 1.0 / 1440)
                rows.append((uid, int(truth["account_ids"][i]), name,
                             as_of - datetime.timedelta(days=age)))
    return rows


def funnel_steps(o, u_incl, u_delay):
    """The logged steps [(type, delay in days)] of a deepest outcome o.
    u_incl, u_delay: 4 uniforms each (research, save, contact, meeting)."""
    name = W.OUTCOMES[o]
    if name in ("none",):
        return []
    if name == "dismiss" or RUN["FUNNEL"] == 0:
        return [(name, 0.0)]
    depth = W.OUTCOMES.index(name)
    steps = [("view", 0.0)]
    t = 0.0
    for j, (step, p_incl, mean) in enumerate((
            ("research", RUN["STEP_RESEARCH"], RUN["DELAY_RESEARCH"]),
            ("save", RUN["STEP_SAVE"], RUN["DELAY_SAVE"]),
            ("contact", 1.0, RUN["DELAY_CONTACT"]),
            ("meeting", 1.0, RUN["DELAY_MEETING"]))):
        d = W.OUTCOMES.index(step)
        if d > depth:
            break
        t += -mean * RUN["DELAY_SCALE"] * np.log1p(-u_delay[j])
        if d == depth or u_incl[j] < p_incl:
            steps.append((step, t))
    return steps


def precompute(conn):
    """What the deployed model says of every arriving or changing account
    (icp_score_batch inside a transaction that is rolled back)."""
    cur = conn.cursor()
    conn.autocommit = False
    cur.execute("""
        insert into public.account_signals select * from icpml_sim.arrival_signals;
        insert into public.research_runs overriding system value select * from icpml_sim.arrival_research;
        update public.account_signals s
           set engineering_role_count = e.engineering_role_count,
               has_open_engineering_roles = e.has_open_engineering_roles,
               total_open_roles = e.total_open_roles
          from icpml_sim.signal_events e where e.account_id = s.account_id;
        select b.account_id, b.probability from icpml.icp_score_batch(array(
            select account_id from icpml_sim.arrivals
            union all select account_id from icpml_sim.signal_events order by 1)) b""")
    res = cur.fetchall()
    conn.rollback()
    conn.autocommit = True
    cur.execute("truncate icpml_sim.icp_fresh")
    cur.executemany("insert into icpml_sim.icp_fresh values (%s, %s)", [(int(a), float(p)) for a, p in res])
    return len(res)


# ---------------------------------------------------------------------------
# the world

def load_world_data(cur):
    """Everything a ProductionWorld needs from the base database."""
    cur.execute("select value from icpml_sim.info where key = 'setup'")
    row = cur.fetchone()
    if row is None:
        raise SystemExit("this database was not set up for the production scenario "
                         "(run.sh SCENARIO=production builds it)")
    setup_p = row[0]
    truth = load_truth(cur)
    tastes = draw_tastes(int(setup_p["seed"]), truth, setup_p, cur)
    truth["intent"] = intent_of(cur, truth)
    cur.execute("select account_id, day from icpml_sim.arrivals order by day, account_id")
    arrivals = cur.fetchall()
    cur.execute("""select e.event_id, e.day, e.account_id, e.has_open_engineering_roles, e.fit_logit,
                          f.probability
                   from icpml_sim.signal_events e left join icpml_sim.icp_fresh f using (account_id)
                   order by e.day, e.event_id""")
    events = cur.fetchall()
    cur.execute("""select a.account_id, f.probability from icpml_sim.arrivals a
                   left join icpml_sim.icp_fresh f using (account_id)""")
    arrival_icp = dict(cur.fetchall())
    cur.execute("""
        select distinct u.user_idx, i.account_id, i.interaction_type
        from public.user_interactions i join icpml_ref.user_taste u using (user_id)""")
    history = cur.fetchall()
    cur.execute("select account_id, probability from icpml.account_scores")
    scores = cur.fetchall()
    cur.execute("""select count(*), string_agg(distinct model || coalesce(' v' || model_version, ''), ', ')
                   from icpml.account_scores""")
    n_scores, icp_source = cur.fetchone()
    return dict(scenario="production", setup=setup_p, truth=truth, tastes=tastes,
                arrivals=arrivals, events=events, arrival_icp=arrival_icp, history=history,
                scores=scores, icp_source=icp_source,
                account_ids=truth["account_ids"], user_ids=truth["user_ids"],
                activity=truth["activity"])


def _logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


class ProductionWorld:
    """One simulated world of the production scenario (per run)."""

    scenario = "production"

    def __init__(self, data, seed, close_types=("contact", "dismiss", "meeting"), db_close_types=None,
                 window_days=7.0):
        R = RUN
        self.seed = seed
        truth, tastes = data["truth"], data["tastes"]
        self.truth = truth
        self.account_ids = truth["account_ids"]
        self.user_ids = truth["user_ids"]
        self.activity = truth["activity"]
        self.n_users, self.n_accounts = len(self.user_ids), len(self.account_ids)
        self.index = {int(a): i for i, a in enumerate(self.account_ids)}
        self.rpd = R["ROUNDS_PER_DAY"]
        self.window_rounds = int(round(window_days * self.rpd))
        k_max = W.K_MAX
        self.exam = R["EXAM_TOP"] * R["EXAM_DECAY"] ** np.arange(k_max)
        if R["EXAM_MODEL"]:
            self.exam = W.W.copy()
        self.fit_weight = tastes["fit_weight"]
        self.niche = tastes["niche"]
        self.segments = np.where(self.niche, "niche", "others")
        self.icp_source = data["icp_source"]

        eps = np.random.default_rng([seed, W.STREAM_EPS]).standard_normal((self.n_users, self.n_accounts))
        self.eps_term = R["SIGMA"] * eps
        lat = tastes["lat_u"] @ tastes["lat_a"].T
        common = R["B0"] + R["B_INT"] * truth["intent"][None, :] + R["B_LAT"] * lat - R["B_HID"] * R["HID_CENTER"]
        vis0 = np.array([visible_affinity(truth, t) for t in tastes["visible"]])
        hid0 = np.array([hidden_static(truth, h) for h in tastes["hidden"]])
        # time-independent taste part, and its change for drifting users
        self.base = common + R["B_AFF"] * vis0 + R["B_HID"] * hid0
        self.drift_delta = {}
        for u in np.flatnonzero(tastes["drifting"]):
            vis1 = visible_affinity(truth, tastes["new_visible"][u])
            hid1 = hidden_static(truth, tastes["new_hidden"][u])
            self.drift_delta[int(u)] = R["B_AFF"] * (vis1 - vis0[u]) + R["B_HID"] * (hid1 - hid0[u])
        self.drift_start = tastes["drift_start"] * self.rpd
        self.drift_len = R["DRIFT_DAYS"] * self.rpd
        self.gamma0 = np.array([h["gamma"] for h in tastes["hidden"]])
        self.gamma1 = np.array([h["gamma"] for h in tastes["new_hidden"]])
        self.vis0, self.hid0, self.lat = vis0, hid0, lat  # for describe()

        # dynamic account state
        self.fit = truth["fit_logit"].copy()
        self.hiring = truth["hiring"].astype(float)
        self.arrived = np.ones(self.n_accounts, dtype=bool)
        self.arrival_round = {}
        for a, day in data["arrivals"]:
            i = self.index[int(a)]
            self.arrived[i] = False
            self.arrival_round.setdefault(int(np.ceil(day * self.rpd)), []).append(i)
        self.event_round = {}
        for ev_id, day, a, hiring, fit, prob in data["events"]:
            self.event_round.setdefault(int(np.ceil(day * self.rpd)), []).append(
                (int(ev_id), self.index[int(a)], float(hiring), float(fit), prob))
        # the model's current ICP view of every account (what score_all would store now)
        self.icp_fresh = np.full(self.n_accounts, np.nan)
        for a, p in data["scores"]:
            self.icp_fresh[self.index[int(a)]] = p
        for a, p in data["arrival_icp"].items():
            if p is not None:
                self.icp_fresh[self.index[int(a)]] = p
        # what the product's account_scores hold (the retrieval mirror)
        self.set_scores([(a, p) for a, p in data["scores"]])

        self.close = {W.OUTCOMES.index(t) for t in set(close_types) | {"dismiss", "meeting"}
                      if t in W.OUTCOMES}
        self.db_close = set(db_close_types if db_close_types is not None else close_types)
        self.open = np.ones((self.n_users, self.n_accounts), dtype=bool)     # truth
        self.db_open = np.ones((self.n_users, self.n_accounts), dtype=bool)  # the product's exclusions
        for user_idx, account_id, itype in data["history"]:
            u, i = user_idx - 1, self.index[int(account_id)]
            if W.OUTCOMES.index(itype) in self.close:
                self.open[u, i] = False
            if itype in self.db_close:
                self.db_open[u, i] = False
        self.busy_until = np.zeros((self.n_users, self.n_accounts), dtype=np.int64)
        self.fatigue = np.zeros((self.n_users, self.n_accounts))
        self.t = 0
        self._z = (None, None)
        self.stats = dict(arrived=0, events=0, shown_busy=0, shown_unarrived=0)

    # -- time ---------------------------------------------------------------
    def advance(self, t):
        """Move to round t; returns the SQL that makes the product's tables
        match (arrivals, signal updates), or ''."""
        self.t = t
        self._z = (None, None)
        sql = []
        arr = self.arrival_round.get(t)
        if arr:
            self.arrived[arr] = True
            self.stats["arrived"] += len(arr)
            ids = _sql_array(self.account_ids[arr])
            sql.append(f"insert into public.account_signals select * from icpml_sim.arrival_signals "
                       f"where account_id = any('{ids}'::bigint[]);"
                       f"insert into public.research_runs overriding system value select * from "
                       f"icpml_sim.arrival_research where account_id = any('{ids}'::bigint[]);")
        ev = self.event_round.get(t)
        if ev:
            for _, i, hiring, fit, prob in ev:
                self.hiring[i] = hiring
                self.fit[i] = fit
                if prob is not None:
                    self.icp_fresh[i] = prob
            self.stats["events"] += len(ev)
            sql.append("update public.account_signals s set engineering_role_count = e.engineering_role_count, "
                       "has_open_engineering_roles = e.has_open_engineering_roles, "
                       "total_open_roles = e.total_open_roles, updated_at = now() "
                       "from icpml_sim.signal_events e where s.account_id = e.account_id "
                       f"and e.event_id = any('{_sql_array([e[0] for e in ev])}'::int[]);")
        return "".join(sql)

    def set_scores(self, rows):
        """The product's account_scores (after a maintenance call)."""
        icp = np.full(self.n_accounts, np.nan)
        for a, p in rows:
            i = self.index.get(int(a))
            if i is not None:
                icp[i] = 0.0 if p is None else p
        self.icp = icp
        scored = np.flatnonzero(~np.isnan(icp))
        self.icp_order = scored[np.lexsort((self.account_ids[scored], -icp[scored]))]
        self.scored = ~np.isnan(icp)

    def drift(self, u):
        if u not in self.drift_delta:
            return 0.0
        return float(np.clip((self.t - self.drift_start[u]) / self.drift_len, 0.0, 1.0))

    def z_structured(self, u):
        """z(u, ., t) without the per-pair noise (cached per round)."""
        if self._z[0] == u:
            return self._z[1]
        lam = self.drift(u)
        gamma = (1 - lam) * self.gamma0[u] + lam * self.gamma1[u]
        z = (self.base[u] + RUN["B_FIT"] * self.fit_weight[u] * self.fit
             + RUN["B_HID"] * gamma * self.hiring)
        if lam > 0:
            z = z + lam * self.drift_delta[u]
        self._z = (u, z)
        return z

    # -- truth --------------------------------------------------------------
    def eligible(self, u):
        """Accounts that can still bring user u something: arrived, not
        closed, no funnel in progress."""
        return self.arrived & self.open[u] & (self.busy_until[u] <= self.t)

    def mu(self, u):
        z = self.z_structured(u) + self.eps_term[u]
        return (RUN["MU_MAX"] * W.sigmoid(z) * np.exp(-RUN["FATIGUE_RATE"] * self.fatigue[u])
                * self.eligible(u))

    def mu_static(self, u):
        """Expected reward without fatigue (0 where not eligible)."""
        z = self.z_structured(u) + self.eps_term[u]
        return RUN["MU_MAX"] * W.sigmoid(z) * self.eligible(u)

    def fatigue_factor(self, u):
        return np.exp(-RUN["FATIGUE_RATE"] * RUN["FATIGUE_DECAY"] * self.fatigue[u]) * self.eligible(u)

    def oracle_list(self, m, k):
        """Expected reward of the best list of k by m (best first) and its indices."""
        kk = min(k, m.size)
        top = np.argpartition(m, m.size - kk)[m.size - kk:]
        top = top[np.argsort(-m[top], kind="stable")]
        return float(np.dot(self.exam[:kk], m[top])), top

    # reference rankings: a key per account, higher first
    def ref_key(self, name, u):
        if name == "knows_taste":
            lam = self.drift(u)
            gamma = (1 - lam) * self.gamma0[u] + lam * self.gamma1[u]
            icp = np.where(np.isnan(self.icp_fresh), 0.0, self.icp_fresh)
            z = (self.base[u] + RUN["B_FIT"] * self.fit_weight[u] * _logit(icp)
                 + RUN["B_HID"] * gamma * self.hiring)
            if lam > 0:
                z = z + lam * self.drift_delta[u]
            return W.sigmoid(z) * self.fatigue_factor(u)
        if name == "true_structured":
            return W.sigmoid(self.z_structured(u)) * self.fatigue_factor(u)
        if name == "true_mu0":
            return W.sigmoid(self.z_structured(u) + self.eps_term[u])
        if name == "true_fit":
            return self.fit
        raise KeyError(name)

    # -- the user -----------------------------------------------------------
    def serve_round(self, u, t, accounts, u_exam, u_act, u_step):
        """User u sees the ranked list; returns (expected reward, realised
        reward, [(due round, account_id, type)] to log, mu of each item)."""
        self.fatigue[u] *= RUN["FATIGUE_DECAY"]
        m = self.mu(u)
        self.mu_served = m          # every account's mu as this list was served (--ope)
        idx = [self.index.get(int(a), -1) for a in accounts]
        mus = np.array([m[i] if i >= 0 else 0.0 for i in idx])
        expected = float(np.dot(self.exam[:len(idx)], mus))
        elig = self.eligible(u)
        events, realised = [], 0.0
        self.item_reward = np.zeros(len(idx))
        cap = max(1, self.window_rounds - 1)
        for r, i in enumerate(idx):
            if i < 0 or not elig[i]:
                if i >= 0 and not self.arrived[i]:
                    self.stats["shown_unarrived"] += 1
                else:
                    self.stats["shown_busy"] += 1
                continue
            o = W.NONE
            if u_exam[r] < self.exam[r]:
                o = W.draw_outcome(mus[r], u_act[r])
            if o == W.NONE:
                self.fatigue[u, i] += 1.0
                continue
            realised += W.REWARD[o]
            self.item_reward[r] = W.REWARD[o]
            last = 1
            for name, days in funnel_steps(o, u_step[r, :4], u_step[r, 4:]):
                d = min(cap, 1 + int(round(days * self.rpd)))
                events.append((t + d, int(accounts[r]), name))
                last = max(last, d)
            if o in self.close:
                self.open[u, i] = False
            else:
                self.busy_until[u, i] = t + last + 1
        return expected, realised, events, mus

    def logged(self, u, account_id, itype):
        """An interaction reached the product's table: its exclusions."""
        if itype in self.db_close:
            self.db_open[u, self.index[int(account_id)]] = False


def round_draws(seed, rounds, n_users, activity, k):
    """Per-round draws shared by every policy (common random numbers)."""
    users, u_exam, u_act = W.round_draws(seed, rounds, n_users, activity, k)
    u_step = np.random.default_rng([seed, S_STEP]).random((rounds, k, 8))
    return users, u_exam, u_act, u_step


def describe(world, M=1000):
    """Statistics of the world at the start: how much of the true expected
    reward the ICP score explains, and where each user's best accounts are."""
    n_u = world.n_users
    mu0 = np.empty((n_u, world.n_accounts))
    for u in range(n_u):
        world._z = (None, None)
        mu0[u] = RUN["MU_MAX"] * W.sigmoid(world.z_structured(u) + world.eps_term[u])
    world._z = (None, None)
    avail = world.arrived
    icp = np.where(np.isnan(world.icp_fresh), 0.0, world.icp_fresh)

    def r2(x, y):
        c = np.corrcoef(x, y)[0, 1]
        return float(c * c)

    sub = mu0[:, avail]
    icp_b = np.broadcast_to(icp[avail][None, :], sub.shape).ravel()
    fitp = np.broadcast_to(W.sigmoid(world.fit[avail])[None, :], sub.shape).ravel()
    # each user's true top 10 (open, arrived) inside the top M of account_scores
    top_m = np.zeros(world.n_accounts, dtype=bool)
    rec = []
    for u in range(n_u):
        elig = world.db_open[u] & world.scored
        cand = world.icp_order[elig[world.icp_order]][:M]
        top_m[:] = False
        top_m[cand] = True
        m = mu0[u] * (world.open[u] & avail)
        best = np.argpartition(m, m.size - 10)[m.size - 10:]
        rec.append(top_m[best].mean())
    rec = np.array(rec)
    # share of the taste variance that is hidden
    hid = RUN["B_HID"] * world.hid0 + RUN["B_LAT"] * world.lat
    vis = RUN["B_AFF"] * world.vis0
    return {
        "scenario": "production", "icp_source": world.icp_source,
        "accounts": int(avail.sum()), "arriving_accounts": int((~avail).sum()),
        "users": n_u, "niche_users": int(world.niche.sum()),
        "drifting_users": len(world.drift_delta),
        "signal_events": sum(len(v) for v in world.event_round.values()),
        "rounds_per_day": world.rpd, "window_rounds": world.window_rounds,
        "exam": [round(float(x), 3) for x in world.exam[:10]],
        "mu0_mean": float(sub.mean()), "mu0_p99": float(np.quantile(sub, 0.99)),
        "r2_mu0_on_icp_probability": r2(icp_b, sub.ravel()),
        "r2_mu0_on_true_fit_probability": r2(fitp, sub.ravel()),
        "hidden_share_of_taste_variance": float(np.var(hid - hid.mean(axis=1, keepdims=True))
                                                / (np.var(hid - hid.mean(axis=1, keepdims=True))
                                                   + np.var(vis - vis.mean(axis=1, keepdims=True)))),
        "recall_top10_in_top_M_at_start": float(rec.mean()),
        "recall_niche": float(rec[world.niche].mean()) if world.niche.any() else None,
        "recall_others": float(rec[~world.niche].mean()) if (~world.niche).any() else None,
    }


def main():
    import argparse
    import psycopg2
    ap = argparse.ArgumentParser(description="production scenario: database setup")
    ap.add_argument("command", choices=["setup", "precompute", "describe"])
    ap.add_argument("--db", required=True)
    ap.add_argument("--seed", type=int, default=int(os.environ.get("SEED", 42)))
    args = ap.parse_args()
    conn = psycopg2.connect(dbname=args.db, application_name="icpml_sim_setup")
    conn.autocommit = True
    if args.command == "setup":
        print(json.dumps(setup(conn, args.seed)))
    elif args.command == "precompute":
        print(json.dumps(dict(icp_fresh=precompute(conn))))
    else:
        data = load_world_data(conn.cursor())
        print(json.dumps(describe(ProductionWorld(data, args.seed)), indent=1))


if __name__ == "__main__":
    main()
