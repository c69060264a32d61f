"""Ground-truth world of the icpml recommendation simulator.

A B2B world built on the reference generator's hidden truth
(icpml_ref.account_truth, icpml_ref.user_taste), in which the ICP score
explains only part of what a sales user gets out of an account.

Static utility of account a for user u (logit scale):

    z(u,a) = B0 + B_FIT * fit_weight(u) * fit_logit(a)        true ICP fit
                + B_AFF * affinity(u,a)                         hidden taste
                + B_INT * intent(a)                             buying window
                + SIGMA * eps(u,a)                              idiosyncratic

  fit_logit   icpml_ref.account_truth.fit_logit (true fit, incl. hidden quality)
  fit_weight  icpml_ref.user_taste.fit_weight (0.4..1.2: how much u cares)
  affinity    icpml_ref.affinity_score over u's taste (industries, size,
              stack) and a's true attributes, about -1..2.7
  intent      exp(-days from a's latest research run to the generator's
              as_of / INTENT_DAYS), 0 if never researched (research recency,
              visible in the database)
  eps         N(0,1) per (u,a), fixed by the seed, visible nowhere

  mu0(u,a) = MU_MAX * sigmoid(z(u,a))

Dynamic state (per world, i.e. per policy run):

  fatigue     every list shown to u first decays f(u,.) by FATIGUE_DECAY; an
              impression the user does not act on adds 1 to f(u,a);
              mu = mu0 * exp(-FATIGUE_RATE * f(u,a))
  closed      after a 'dismiss', a 'meeting' (the account is in the
              pipeline) or any other type the recommender excludes
              (bandit_settings.exclude_worked_types, default contact and
              meeting) mu(u,a) = 0 for good: the recommender will not show
              it again, nor may the oracle. The generator's history counts.

User behaviour for a served list of k accounts:

  the user examines rank r with probability W[r] = 1 / log2(r + 1)
  (position bias, DCG weights); if examined, one interaction type is drawn
  from the funnel  P(type | mu)  with  sum_type P * reward_map(type) = mu,
  where "none" (no interaction) and 'dismiss' have reward 0. So the expected
  reward of a list is  sum_r W[r] * mu(u, a_r)  and that is what the
  simulator scores (low variance); realised rewards are reported too.

Funnel: a piecewise-linear interpolation in mu between anchor distributions
(ANCHORS) whose expectations increase from 0 to 1; expectation is linear in
the mixture weights, hence exactly mu.

Every random draw is from numpy's PCG64 seeded by (seed, stream), and the
per-round draws (which user, examination and action uniforms) do not depend
on the policy: all policies face identical worlds (common random numbers).
"""

import os

import numpy as np

# Utility model (see the module docstring); tuned so that on the reference
# data (10k accounts, 20 users, seed 42) a linear fit on the ICP probability
# explains about half of the variance of mu0 (printed by describe()).
B0 = -1.6
B_FIT = 1.0
B_AFF = 0.8
B_INT = 1.0
SIGMA = 0.4
MU_MAX = 0.6
INTENT_DAYS = 30.0
FATIGUE_RATE = 0.04
FATIGUE_DECAY = 0.9

# Any of the above can be overridden from the environment for sensitivity
# runs, e.g. WORLD_SIGMA=0 WORLD_FATIGUE_RATE=0 (reported with the figures).
OVERRIDES = {}
for _name in ("B0", "B_FIT", "B_AFF", "B_INT", "SIGMA", "MU_MAX", "INTENT_DAYS",
              "FATIGUE_RATE", "FATIGUE_DECAY"):
    _v = os.environ.get("WORLD_" + _name)
    if _v is not None:
        globals()[_name] = float(_v)
        OVERRIDES[_name] = float(_v)

K_MAX = 100
# examination probability of rank r = 1..K_MAX (index r - 1)
W = 1.0 / np.log2(np.arange(2, K_MAX + 2))

OUTCOMES = ["none", "dismiss", "view", "research", "save", "contact", "meeting"]
REWARD = np.array([0.0, 0.0, 0.1, 0.3, 0.5, 0.7, 1.0])
#                      none  dismiss view  research save  contact meeting
_ANCHORS = np.array([
    [0.50, 0.50, 0.00, 0.00, 0.00, 0.00, 0.00],
    [0.45, 0.10, 0.35, 0.07, 0.03, 0.00, 0.00],
    [0.25, 0.03, 0.35, 0.20, 0.10, 0.05, 0.02],
    [0.10, 0.00, 0.20, 0.25, 0.20, 0.15, 0.10],
    [0.00, 0.00, 0.05, 0.15, 0.25, 0.30, 0.25],
    [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 1.00],
])
ANCHORS = _ANCHORS / _ANCHORS.sum(axis=1, keepdims=True)
ANCHOR_MU = ANCHORS @ REWARD          # increasing, 0 .. 1
assert np.all(np.diff(ANCHOR_MU) > 0) and ANCHOR_MU[0] == 0 and ANCHOR_MU[-1] == 1

DISMISS = OUTCOMES.index("dismiss")
MEETING = OUTCOMES.index("meeting")
NONE = OUTCOMES.index("none")

# Streams of the per-run random draws.
STREAM_EPS, STREAM_USER, STREAM_EXAM, STREAM_ACT = 1, 2, 3, 4


def funnel(mu):
    """Outcome distribution (len(OUTCOMES)) given expected reward mu in [0, 1]."""
    mu = min(max(float(mu), 0.0), 1.0)
    i = int(np.searchsorted(ANCHOR_MU, mu, side="right")) - 1
    if i >= len(ANCHOR_MU) - 1:
        return ANCHORS[-1].copy()
    lam = (mu - ANCHOR_MU[i]) / (ANCHOR_MU[i + 1] - ANCHOR_MU[i])
    return (1.0 - lam) * ANCHORS[i] + lam * ANCHORS[i + 1]


def draw_outcome(mu, u):
    """Index into OUTCOMES for expected reward mu and a uniform u in [0, 1)."""
    p = np.cumsum(funnel(mu))
    return int(min(np.searchsorted(p, u * p[-1], side="right"), len(OUTCOMES) - 1))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def load_world_data(cur):
    """Read the generator's truth and the observed data a world needs."""
    cur.execute("""
        select t.account_id, t.fit_logit,
               coalesce(extract(epoch from g.as_of - f.researched_at) / 86400.0, -1)
        from icpml_ref.account_truth t
        join public.account_features f using (account_id)
        cross join icpml_ref.generation_info g
        order by t.account_id""")
    rows = cur.fetchall()
    account_ids = np.array([r[0] for r in rows], dtype=np.int64)
    fit_logit = np.array([r[1] for r in rows], dtype=np.float64)
    age = np.array([float(r[2]) for r in rows], dtype=np.float64)
    intent = np.where(age >= 0, np.exp(-np.maximum(age, 0) / INTENT_DAYS), 0.0)

    cur.execute("""select user_idx, user_id::text, fit_weight, activity
                   from icpml_ref.user_taste order by user_idx""")
    urows = cur.fetchall()
    user_ids = [r[1] for r in urows]
    fit_weight = np.array([r[2] for r in urows], dtype=np.float64)
    activity = np.array([r[3] for r in urows], dtype=np.float64)

    cur.execute("""
        select icpml_ref.affinity_score(u.pref_industries, u.size_center, u.pref_tech,
                                        a.industry, a.company_size, a.tech_stack)
        from icpml_ref.user_taste u cross join icpml_ref.account_truth a
        order by u.user_idx, a.account_id""")
    aff = np.array([r[0] for r in cur.fetchall()], dtype=np.float64)
    aff = aff.reshape(len(user_ids), len(account_ids))

    # what the users already did in the generated history
    cur.execute("""
        select distinct u.user_idx, i.account_id, i.interaction_type
        from public.user_interactions i
        join icpml_ref.user_taste u using (user_id)""")
    history = cur.fetchall()

    # the ICP probability the 'icp' policy ranks by (for describe())
    cur.execute("""select count(*), string_agg(distinct model || coalesce(' v' || model_version, ''), ', ')
                   from icpml.account_scores""")
    n_scores, icp_source = cur.fetchone()
    if n_scores > 0:
        cur.execute("""select a.account_id, coalesce(s.probability, 0)
                       from icpml_ref.account_truth a
                       left join icpml.account_scores s using (account_id)
                       order by a.account_id""")
    else:
        cur.execute("""select s.account_id, s.probability
                       from icpml.icp_score_batch(array(select account_id
                            from icpml_ref.account_truth order by 1)) s
                       order by s.account_id""")
    icp = np.array([r[1] for r in cur.fetchall()], dtype=np.float64)
    if n_scores == 0:
        icp_source = "icp_score_batch"

    return dict(scenario="classic", scores=None,
                account_ids=account_ids, fit_logit=fit_logit, intent=intent,
                user_ids=user_ids, fit_weight=fit_weight, activity=activity,
                affinity=aff, history=history, icp=icp,
                icp_source=icp_source)


class World:
    """One simulated world: static utilities, per-user fatigue, closed pairs."""

    def __init__(self, data, seed, close_types=("contact", "dismiss", "meeting")):
        self.seed = seed
        self.account_ids = data["account_ids"]
        self.user_ids = data["user_ids"]
        self.n_users = len(self.user_ids)
        self.n_accounts = len(self.account_ids)
        self.index = {int(a): i for i, a in enumerate(self.account_ids)}
        eps = np.random.default_rng([seed, STREAM_EPS]).standard_normal(
            (self.n_users, self.n_accounts))
        z = (B0 + B_FIT * data["fit_weight"][:, None] * data["fit_logit"][None, :]
             + B_AFF * data["affinity"]
             + B_INT * data["intent"][None, :]
             + SIGMA * eps)
        self.mu0 = MU_MAX * sigmoid(z)
        # the same without the idiosyncratic part: what the observable
        # structure (fit, taste, intent) determines
        self.mu0_structured = MU_MAX * sigmoid(z - SIGMA * eps)
        self.icp = data["icp"]
        # accounts in retrieval order (ICP probability desc, account id)
        self.icp_order = np.lexsort((self.account_ids, -self.icp))
        self.activity = data["activity"]
        # a pair closes for good on these outcomes (the recommender's
        # exclusions, plus dismiss and meeting which always end it)
        self.close = {OUTCOMES.index(t) for t in set(close_types) | {"dismiss", "meeting"}
                      if t in OUTCOMES}
        self.open = np.ones((self.n_users, self.n_accounts), dtype=bool)
        uidx = {i + 1: i for i in range(self.n_users)}
        for user_idx, account_id, itype in data["history"]:
            if OUTCOMES.index(itype) in self.close:
                self.open[uidx[user_idx], self.index[int(account_id)]] = False
        self.visible = self.open
        self.fatigue = np.zeros((self.n_users, self.n_accounts))
        # the generic interface simulate.py drives (production.py has the same)
        self.exam = W
        self.db_open = self.open          # the product excludes what the world closes, at once
        self.scored = np.ones(self.n_accounts, dtype=bool)
        self.window_rounds = None         # feedback expires at once (wall clock)
        self.stats = {}
        self.affinity = data["affinity"]
        self.fit_weight = data["fit_weight"]
        self.fit_logit = data["fit_logit"]
        self.intent = data["intent"]
        self.fitp = sigmoid(data["fit_logit"])

    def mu(self, u):
        """Current expected reward of every account for user u (0: closed)."""
        return self.mu0[u] * np.exp(-FATIGUE_RATE * self.fatigue[u]) * self.open[u]

    def fatigue_factor(self, u):
        """exp(-FATIGUE_RATE * f(u, .)) after the decay a new list brings."""
        return np.exp(-FATIGUE_RATE * FATIGUE_DECAY * self.fatigue[u]) * self.open[u]

    def oracle(self, u, k, eligible=None):
        """Expected reward of the best list of k for user u: the true top-k
        by mu (over eligible accounts, default all), best at rank 1."""
        m = self.mu(u)
        if eligible is not None:
            m = m * eligible
        kk = min(k, m.size)
        top = np.partition(m, m.size - kk)[m.size - kk:]
        top = np.sort(top)[::-1]
        return float(np.dot(W[:kk], top))

    # -- the generic interface (simulate.py) ---------------------------------
    def advance(self, t):
        """Nothing changes over time in this world: no SQL to apply."""
        return ""

    def set_scores(self, rows):
        """The product's account_scores changed (a maintenance call)."""
        icp = np.zeros(self.n_accounts)
        for a, p in rows:
            i = self.index.get(int(a))
            if i is not None:
                icp[i] = 0.0 if p is None else p
        self.icp = icp
        self.icp_order = np.lexsort((self.account_ids, -self.icp))

    def eligible(self, u):
        return self.open[u]

    def mu_static(self, u):
        """Expected reward without fatigue (0 where closed)."""
        return self.mu0[u] * self.open[u]

    def oracle_list(self, m, k):
        """Expected reward of the best list of k by m (best first) and its indices."""
        kk = min(k, m.size)
        top = np.argpartition(m, m.size - kk)[m.size - kk:]
        top = top[np.argsort(-m[top], kind="stable")]
        return float(np.dot(W[:kk], m[top])), top

    def ref_key(self, name, u):
        """Ranking key of an offline reference policy (higher first)."""
        if name == "true_mu0":
            return self.mu0[u]
        if name == "true_structured":
            return self.mu0_structured[u] * self.fatigue_factor(u)
        if name == "true_fit":
            return self.fitp
        if name == "knows_taste":
            p = np.clip(self.icp, 1e-6, 1 - 1e-6)
            z = (B0 + B_FIT * self.fit_weight[u] * np.log(p / (1 - p))
                 + B_AFF * self.affinity[u] + B_INT * self.intent)
            return sigmoid(z) * self.fatigue_factor(u)
        raise KeyError(name)

    def serve_round(self, u, t, accounts, u_exam, u_act, u_step=None):
        """serve() for the generic driver: each acted account is logged
        with the next round; returns (expected, realised, events, mus)."""
        expected, acted, realised, mus = self.serve(u, accounts, u_exam, u_act)
        got = {a: REWARD[o] for a, o in acted}
        self.item_reward = np.array([got.get(int(a), 0.0) for a in accounts])
        return expected, realised, [(t + 1, a, OUTCOMES[o]) for a, o in acted], mus

    def logged(self, u, account_id, itype):
        """An interaction reached the product (serve() already closed it)."""

    def serve(self, u, accounts, u_exam, u_act):
        """User u sees accounts (ranked list of account ids); returns
        (expected reward, [(account_id, outcome index)] of acted items,
        realised reward, mu of each shown item) and updates the state."""
        self.fatigue[u] *= FATIGUE_DECAY
        m = self.mu(u)
        self.mu_served = m          # every account's mu as this list was served (--ope)
        idx = [self.index.get(int(a), -1) for a in accounts]
        mus = np.array([m[i] if i >= 0 else 0.0 for i in idx])
        expected = float(np.dot(W[:len(idx)], mus))
        acted = []
        realised = 0.0
        for r, i in enumerate(idx):
            if i < 0:
                continue
            o = NONE
            if u_exam[r] < W[r]:
                o = draw_outcome(mus[r], u_act[r])
            if o == NONE:
                self.fatigue[u, i] += 1.0
                continue
            acted.append((int(accounts[r]), o))
            realised += REWARD[o]
            if o in self.close:
                self.open[u, i] = False
        return expected, acted, realised, mus


def round_draws(seed, rounds, n_users, activity, k):
    """Per-round draws shared by all policies: the user (probability
    proportional to activity), examination and action uniforms."""
    p = activity / activity.sum()
    users = np.random.default_rng([seed, STREAM_USER]).choice(n_users, size=rounds, p=p)
    u_exam = np.random.default_rng([seed, STREAM_EXAM]).random((rounds, k))
    u_act = np.random.default_rng([seed, STREAM_ACT]).random((rounds, k))
    return users, u_exam, u_act


def describe(world, data):
    """Statistics of the world: how much of mu0 the ICP score explains."""
    mu0 = world.mu0.ravel()
    icp = np.broadcast_to(world.icp[None, :], world.mu0.shape).ravel()
    fitp = np.broadcast_to(sigmoid(data["fit_logit"])[None, :], world.mu0.shape).ravel()

    def r2(x, y):
        c = np.corrcoef(x, y)[0, 1]
        return float(c * c)

    top10 = np.sort(world.mu0, axis=1)[:, -10:]
    # share of each user's true top 10 that is in the global top-ICP decile
    icp_rank = np.argsort(-world.icp)
    top_icp = np.zeros(world.n_accounts, dtype=bool)
    top_icp[icp_rank[: max(1, world.n_accounts // 10)]] = True
    best = np.argsort(-world.mu0, axis=1)[:, :10]
    share = float(top_icp[best].mean())
    return {
        "accounts": world.n_accounts,
        "users": world.n_users,
        "pairs": int(mu0.size),
        "icp_source": data.get("icp_source"),
        "mu0_mean": float(mu0.mean()),
        "mu0_p50": float(np.median(mu0)),
        "mu0_p99": float(np.quantile(mu0, 0.99)),
        "top10_mu0_mean": float(top10.mean()),
        "r2_mu0_on_icp_probability": r2(icp, mu0),
        "r2_mu0_on_true_fit_probability": r2(fitp, mu0),
        "user_top10_in_icp_top_decile": share,
    }
