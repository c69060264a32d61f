/*
 * ope.c — off-policy evaluation: the sampled log of the candidates each
 * served list was chosen from (OpeLogCandidates, called by recommend.c
 * after it logs a list) and evaluate_policy(), which estimates from that
 * log what another ranking policy would have earned.
 *
 * The estimand (docs/experiments.md): the expected total reward of a list,
 * V(pi) = E[sum over ranks j of y_j], where y_j is the reward the log
 * records for the account at rank j, under the assumption that the reward
 * at a rank depends on the context, the account and the rank only (not on
 * the other accounts of the list: the position-based model is one case).
 * Then for any target pi whose (account, rank) pairs the logger could
 * serve, the item-position IPS estimator
 *
 *     V_ips = 1/n sum_lists sum_j  pi(a_j at j) / mu(a_j at j) * y_j
 *
 * is unbiased, where mu(a at j) is the logging policy's marginal
 * probability of listing a at rank j (not the probability conditioned on
 * the rows above it, which recommendations.propensity holds: the two agree
 * only at rank 1).  Those marginals are exact for epsilon_greedy and random
 * (OpeRankMarginals), estimated from posterior draws for thompson, and
 * useless for deterministic loggers (linucb, greedy, icp: NULL, the list
 * can only evaluate the logger itself).  SNIPS divides each rank's sum by
 * the sum of its weights (E[weight] = 1 per rank); DR adds the direct
 * method, the logging model's expected reward of each candidate times the
 * examination of the rank (what the bandit itself regresses on), to the
 * IPS correction of its error.  Weights above `clip` are clipped (a bias
 * towards the logger for variance).  Intervals: the normal approximation
 * over lists (SNIPS: the delta method).
 *
 * Target policies are rankings of the logged candidates computed from what
 * the log keeps per candidate: icp (the ICP probability), greedy (mu),
 * linucb (mu + alpha * width), each optionally an epsilon-mix (epsilon
 * from params; epsilon_greedy is greedy with bandit_settings.epsilon,
 * random the mix with epsilon 1).  A learning target is evaluated with the
 * logging model's state at each list (what its ranking rule would have
 * served then), not with the state it would have learnt from its own
 * traffic.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "bandit.h"
#include "catalog.h"
#include "context.h"
#include "experiments.h"
#include "ope.h"
#include "policy.h"
#include "recommend.h"
#include "spi_scan.h"

PG_FUNCTION_INFO_V1(evaluate_policy);

/* Columns of evaluate_policy's result. */
#define OPE_NATTS 11

static SPIPlanPtr plan_settings = NULL;
static SPIPlanPtr plan_insert = NULL;
static SPIPlanPtr plan_read = NULL;

/* See ope.h. */
void
OpeRankMarginals(int r, int k, int m, double eps_below, int exploit, double *out)
{
	/* p[c]: probability that c of the r - 1 better ones are listed and it is not */
	double		p[RECOMMEND_MAX_K + 2];
	double		q[RECOMMEND_MAX_K + 2];
	int			j,
				c;

	if (r > k + 1)
		r = k + 1;
	memset(p, 0, sizeof(p));
	p[0] = 1.0;
	for (j = 1; j <= k; j++)
	{
		double		left = (double) (m - j + 1);	/* candidates not listed yet */
		double		eps = j <= exploit ? 0.0 : eps_below;

		out[j - 1] = 0.0;
		memset(q, 0, sizeof(q));
		for (c = 0; c < r; c++)
		{
			double		better = (double) (r - 1 - c);	/* better ones not listed */

			if (p[c] == 0.0)
				continue;
			if (eps > 0.0)
			{
				out[j - 1] += p[c] * eps / left;
				q[c + 1] += p[c] * eps * better / left;
				q[c] += p[c] * eps * Max(left - 1.0 - better, 0.0) / left;
			}
			if (eps < 1.0)
			{
				if (c < r - 1)
					q[c + 1] += p[c] * (1.0 - eps);
				else
					out[j - 1] += p[c] * (1.0 - eps);
			}
		}
		memcpy(p, q, sizeof(p));
	}
}

/* Order of candidates: key (desc), then ICP probability (desc), then account id. */
typedef struct OpeOrder
{
	const double *key;
	const double *probability;
	const int64 *account_id;
} OpeOrder;

/* Does candidate a come before b under o? */
static inline bool
OpeBefore(const OpeOrder *o, int a, int b)
{
	if (o->key[a] != o->key[b])
		return o->key[a] > o->key[b];
	if (o->probability[a] != o->probability[b])
		return o->probability[a] > o->probability[b];
	return o->account_id[a] < o->account_id[b];
}

/* The kk best of m candidates under o, best first, into top[]. */
static void
OpeTop(const OpeOrder *o, int m, int kk, int *top)
{
	int			ntop = 0,
				c;

	for (c = 0; c < m; c++)
	{
		int			p = ntop;

		if (ntop == kk && !OpeBefore(o, c, top[kk - 1]))
			continue;
		if (ntop < kk)
			ntop++;
		while (p > 0 && OpeBefore(o, c, top[p - 1]))
		{
			if (p < kk)
				top[p] = top[p - 1];
			p--;
		}
		top[p] = c;
	}
}

/* 1-based rank of candidate c under o among m (k + 1 when outside the best k). */
static int
OpeRankOf(const OpeOrder *o, int m, int k, int c)
{
	int			r = 1,
				i;

	for (i = 0; i < m && r <= k; i++)
		if (i != c && OpeBefore(o, i, c))
			r++;
	return r;
}

/* ------------------------------------------------------------------------
 * Logging
 * ------------------------------------------------------------------------
 */

typedef struct OpeSettings
{
	double		sample_rate;
	int			thompson_draws;
	bool		found;
} OpeSettings;

/* The candidate_log_settings row. */
static void
OpeSettingsRow(TupleTableSlot *slot, void *arg)
{
	OpeSettings *s = (OpeSettings *) arg;

	s->sample_rate = DatumGetFloat8(slot->tts_values[0]);
	s->thompson_draws = DatumGetInt32(slot->tts_values[1]);
	s->found = true;
}

/*
 * Thompson's marginals, estimated: the share of `draws` posterior draws
 * (as policy.c draws them, from a stream of their own) whose ranking puts
 * each served account at its rank (below the first `exploit`, which go by
 * mu: probability 1); the served draw counts as one, so no estimate is 0.
 */
static void
OpeThompsonMarginals(RecommendCall *call, int exploit, int draws, pg_prng_state *rng, double *out)
{
	const BanditSettings *cfg = call->cfg;
	const BanditState *g = &call->global_state;
	const BanditState *u = &call->user_state;
	double		w = cfg->personalization ? cfg->personalization_weight : 0.0;
	int			d = BANDIT_DIM;
	int			kk = call->nchosen;
	double		theta_g[BANDIT_MAX_DIM];
	double	   *s = palloc(sizeof(double) * call->ncand);
	double	   *z = palloc(sizeof(double) * call->ncand);
	int		   *top = palloc(sizeof(int) * kk);
	int			hits[RECOMMEND_MAX_K];
	OpeOrder	o;
	int64	   *ids = palloc(sizeof(int64) * call->ncand);
	double	   *prob = palloc(sizeof(double) * call->ncand);
	int			smp,
				c,
				i,
				j;

	for (c = 0; c < call->ncand; c++)
	{
		ids[c] = call->rows[call->cand[c]].account_id;
		prob[c] = call->rows[call->cand[c]].probability;
	}
	o.key = s;
	o.probability = prob;
	o.account_id = ids;
	memset(hits, 0, sizeof(hits));
	BanditSolve(g->L, g->b, theta_g, d);
	for (smp = 0; smp < draws; smp++)
	{
		double		tg[BANDIT_MAX_DIM],
					th[BANDIT_MAX_DIM];

		CHECK_FOR_INTERRUPTS();
		BanditDrawTheta(g, theta_g, cfg->v, rng, tg);
		if (w > 0.0)
		{
			double		rhs[BANDIT_MAX_DIM],
						tu_mean[BANDIT_MAX_DIM],
						tu[BANDIT_MAX_DIM];

			for (i = 0; i < d; i++)
				rhs[i] = cfg->personalization_prior * tg[i] + u->b[i];
			BanditSolve(u->L, rhs, tu_mean, d);
			BanditDrawTheta(u, tu_mean, cfg->v, rng, tu);
			for (i = 0; i < d; i++)
				th[i] = (1.0 - w) * tg[i] + w * tu[i];
		}
		else
			memcpy(th, tg, sizeof(double) * d);
		BanditNormals(rng, z, call->ncand);
		for (c = 0; c < call->ncand; c++)
			s[c] = BanditSparseDot(call->X + c * BANDIT_DIM, call->nz + c * BANDIT_DIM,
								   call->nnz[c], th) +
				th[CTX_ACCOUNT_ENGAGEMENT] * call->eng_sd[c] * z[c];
		/* the first exploit ranks went by mu: the draw orders the others */
		for (j = 0; j < exploit; j++)
			s[call->chosen[j]] = -DBL_MAX;
		OpeTop(&o, call->ncand, kk, top);
		for (j = exploit; j < kk; j++)
			if (top[j - exploit] == call->chosen[j])
				hits[j]++;
	}
	for (j = 0; j < kk; j++)
		out[j] = j < exploit ? 1.0 : (hits[j] + 1.0) / (draws + 1.0);
}

/* See ope.h. */
void
OpeLogCandidates(RecommendCall *call, const int64 *ids)
{
	const BanditSettings *cfg = call->cfg;
	OpeSettings set = {0, 0, false};
	pg_prng_state rng = call->retrieval_rng;	/* a copy: serving's streams stay as they are */
	int			m = call->ncand,
				kk = call->nchosen,
				d = BANDIT_DIM,
				c,
				j;
	double		w = cfg->personalization ? cfg->personalization_weight : 0.0;
	double		eng_w = call->theta[CTX_ACCOUNT_ENGAGEMENT];
	double	   *cov;
	Datum	   *acc,
			   *src,
			   *mu,
			   *width,
			   *prob,
			   *sid,
			   *served,
			   *prop,
			   *exam;
	double		marg[RECOMMEND_MAX_K];
	double		eps = -1.0;
	int			exploit = PolicyExploitSlots(call, kk);
	bool		has_prop = true;
	Datum		args[18];
	char		nulls[18];
	CatalogOwnerState owner;
	int			ret;

	if (kk == 0 || !OidIsValid(CatalogRelidIfExists("recommendation_candidates")))
		return;
	if (plan_settings == NULL)
		plan_settings = CatalogKeepPlan("SELECT s.sample_rate, s.thompson_draws FROM icpml.candidate_log_settings AS s",
										0, NULL, 0);
	(void) RecommendOwnerScan(plan_settings, NULL, true, OpeSettingsRow, &set,
							  "icpml.candidate_log_settings");
	if (!set.found || set.sample_rate <= 0.0)
		return;
	if (set.sample_rate < 1.0 && pg_prng_double(&rng) >= set.sample_rate)
		return;

	/* the logging policy's marginal propensity of each served row */
	if (call->policy == POLICY_EPSILON_GREEDY || call->policy == POLICY_RANDOM)
	{
		OpeOrder	o;
		double	   *pr = palloc(sizeof(double) * m);
		int64	   *ac = palloc(sizeof(int64) * m);

		eps = call->policy == POLICY_RANDOM ? 1.0 : cfg->epsilon;
		for (c = 0; c < m; c++)
		{
			pr[c] = call->rows[call->cand[c]].probability;
			ac[c] = call->rows[call->cand[c]].account_id;
		}
		o.key = call->mu;
		o.probability = pr;
		o.account_id = ac;
		for (j = 0; j < kk; j++)
		{
			double		out[RECOMMEND_MAX_K];

			OpeRankMarginals(OpeRankOf(&o, m, kk, call->chosen[j]), kk, m, eps, exploit, out);
			marg[j] = out[j];
		}
	}
	else if (call->policy == POLICY_THOMPSON)
		OpeThompsonMarginals(call, exploit, set.thompson_draws, &rng, marg);
	else
		has_prop = false;

	/* posterior covariance of the expected reward: A_g^-1 + w A_u^-1 */
	cov = palloc0(sizeof(double) * d * d);
	BanditAddInverse(call->global_state.L, d, 1.0, cov);
	if (w > 0.0)
		BanditAddInverse(call->user_state.L, d, w, cov);

	acc = palloc(sizeof(Datum) * m);
	src = palloc(sizeof(Datum) * m);
	mu = palloc(sizeof(Datum) * m);
	width = palloc(sizeof(Datum) * m);
	prob = palloc(sizeof(Datum) * m);
	for (c = 0; c < m; c++)
	{
		RecommendRow *r = &call->rows[call->cand[c]];
		double		q = BanditSparseQuad(call->X + c * BANDIT_DIM, call->nz + c * BANDIT_DIM,
										 call->nnz[c], cov, d) +
			eng_w * eng_w * call->eng_sd[c] * call->eng_sd[c];

		acc[c] = Int64GetDatum(r->account_id);
		src[c] = CStringGetTextDatum(RecommendSourceNames[r->source]);
		mu[c] = Float8GetDatum(call->mu[c]);
		width[c] = Float4GetDatum((float4) sqrt(Max(q, 0.0)));
		prob[c] = Float8GetDatum(r->probability);
	}
	sid = palloc(sizeof(Datum) * kk);
	served = palloc(sizeof(Datum) * kk);
	prop = palloc(sizeof(Datum) * kk);
	exam = palloc(sizeof(Datum) * kk);
	for (j = 0; j < kk; j++)
	{
		sid[j] = Int64GetDatum(ids[j]);
		served[j] = Int32GetDatum(call->chosen[j] + 1);
		prop[j] = Float8GetDatum(has_prop ? marg[j] : 0.0);
		exam[j] = Float8GetDatum(BanditExamination(cfg, j + 1));
	}

	if (plan_insert == NULL)
	{
		Oid			argtypes[18] = {INT8OID, TIMESTAMPTZOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID,
			INT8OID, FLOAT8OID, INT8ARRAYOID, INT4ARRAYOID, FLOAT8ARRAYOID, FLOAT8ARRAYOID,
		INT8ARRAYOID, TEXTARRAYOID, FLOAT8ARRAYOID, FLOAT4ARRAYOID, FLOAT8ARRAYOID, INT4OID};

		plan_insert = CatalogKeepPlan("INSERT INTO icpml.recommendation_candidates (list_id, served_at,"
									  " user_id, policy, experiment, variant, state_version, epsilon,"
									  " served_ids, served, propensity, examination, account_ids, sources,"
									  " mu, width, probability, exploit_slots)"
									  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
									  " $14, $15, $16, $17, $18)", 18, argtypes, 0);
	}
	memset(nulls, ' ', sizeof(nulls));
	args[0] = Int64GetDatum(ids[0]);
	args[1] = TimestampTzGetDatum(call->now);
	args[2] = UUIDPGetDatum(call->user);
	args[3] = CStringGetTextDatum(BanditPolicyName(call->policy));
	if (call->variant >= 0 || call->variant == EXPERIMENT_HOLDOUT)
	{
		args[4] = CStringGetTextDatum(cfg->experiment);
		args[5] = CStringGetTextDatum(call->variant == EXPERIMENT_HOLDOUT ? BANDIT_HOLDOUT :
									  cfg->variants[call->variant]);
	}
	else
	{
		args[4] = args[5] = (Datum) 0;
		nulls[4] = nulls[5] = 'n';
	}
	args[6] = Int64GetDatum(call->state_version);
	args[7] = Float8GetDatum(eps);
	if (eps < 0.0)
		nulls[7] = 'n';
	args[8] = PointerGetDatum(construct_array(sid, kk, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[9] = PointerGetDatum(construct_array(served, kk, INT4OID, 4, true, TYPALIGN_INT));
	args[10] = PointerGetDatum(construct_array(prop, kk, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	if (!has_prop)
		nulls[10] = 'n';
	args[11] = PointerGetDatum(construct_array(exam, kk, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[12] = PointerGetDatum(construct_array(acc, m, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[13] = PointerGetDatum(construct_array(src, m, TEXTOID, -1, false, TYPALIGN_INT));
	args[14] = PointerGetDatum(construct_array(mu, m, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[15] = PointerGetDatum(construct_array(width, m, FLOAT4OID, 4, true, TYPALIGN_INT));
	args[16] = PointerGetDatum(construct_array(prob, m, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[17] = Int32GetDatum(exploit);

	CatalogSwitchToOwner(&owner);
	ret = SPI_execute_plan(plan_insert, args, nulls, false, 0);
	CatalogRestoreUser(&owner);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "logging the candidates failed: %s", SPI_result_code_string(ret));
}

/* ------------------------------------------------------------------------
 * evaluate_policy
 * ------------------------------------------------------------------------
 */

/* The target policy: a ranking key, optionally an epsilon-mix. */
typedef enum OpeKey
{
	OPE_KEY_ICP,
	OPE_KEY_MU,
	OPE_KEY_UCB
} OpeKey;

/* Running sums of one per-list estimate. */
typedef struct OpeSum
{
	double		s,
				ss;
} OpeSum;

/* One (list, rank) record kept for SNIPS's second pass. */
typedef struct OpeRec
{
	int			list;
	int			rank;			/* 0-based */
	double		wy;				/* clipped weight * reward */
	double		w;				/* clipped weight */
} OpeRec;

typedef struct OpeEval
{
	OpeKey		key;
	double		alpha;
	double		eps;
	int			exploit;		/* the target's first ranks that go by mu */
	double		clip;
	double		unsupported;	/* sum over lists: the target's ranks the logger could not serve */

	int64		lists;
	int64		impressions;
	int64		clipped;
	int64		skipped;
	OpeSum		ips,
				dr,
				dm,
				logged;
	double		sw,
				sw2;			/* weights, for the effective sample size */

	OpeRec	   *recs;			/* in cxt */
	int			nrecs,
				recs_cap;
	int			maxk;
	MemoryContext cxt;			/* the call's */
	MemoryContext rowcxt;		/* one list's arrays, reset after each */
} OpeEval;

/* Add one list's value to a running sum. */
static void
OpeAdd(OpeSum *s, double v)
{
	s->s += v;
	s->ss += v * v;
}

/* A float8[]/float4[]/int8[]/int4[] of the row as a palloc'd double array; NULL when null. */
static double *
OpeDoubles(TupleTableSlot *slot, int att, Oid elemtype, int *n)
{
	ArrayType  *arr;
	Datum	   *v;
	bool	   *isnull;
	double	   *out;
	int			i;
	int16		len;
	bool		byval;
	char		align;

	if (slot->tts_isnull[att])
		return NULL;
	arr = DatumGetArrayTypeP(slot->tts_values[att]);
	get_typlenbyvalalign(elemtype, &len, &byval, &align);
	deconstruct_array(arr, elemtype, len, byval, align, &v, &isnull, n);
	out = palloc(sizeof(double) * Max(*n, 1));
	for (i = 0; i < *n; i++)
	{
		if (isnull[i])
			return NULL;
		switch (elemtype)
		{
			case FLOAT8OID:
				out[i] = DatumGetFloat8(v[i]);
				break;
			case FLOAT4OID:
				out[i] = DatumGetFloat4(v[i]);
				break;
			case INT8OID:
				out[i] = (double) DatumGetInt64(v[i]);
				break;
			default:
				out[i] = (double) DatumGetInt32(v[i]);
				break;
		}
	}
	return out;
}

/*
 * One logged list: served, propensity, examination, account_ids, mu,
 * width, probability, rewards.
 */
static void
OpeEvalList(OpeEval *ev, TupleTableSlot *slot)
{
	int			k,
				k2,
				k3,
				m,
				m2,
				m3,
				m4,
				kr,
				j,
				c;
	double	   *served = OpeDoubles(slot, 0, INT4OID, &k);
	double	   *prop = OpeDoubles(slot, 1, FLOAT8OID, &k2);
	double	   *exam = OpeDoubles(slot, 2, FLOAT8OID, &k3);
	double	   *accd = OpeDoubles(slot, 3, INT8OID, &m);
	double	   *mu = OpeDoubles(slot, 4, FLOAT8OID, &m2);
	double	   *width = OpeDoubles(slot, 5, FLOAT4OID, &m3);
	double	   *prob = OpeDoubles(slot, 6, FLOAT8OID, &m4);
	double	   *y = OpeDoubles(slot, 7, FLOAT8OID, &kr);
	int			logger_exploit = slot->tts_isnull[8] ? 0 : DatumGetInt32(slot->tts_values[8]);
	double		logger_eps = slot->tts_isnull[9] ? -1.0 : DatumGetFloat8(slot->tts_values[9]);
	int		   *gtop;
	int			nt;
	double		uns = 0.0;
	int64	   *acc;
	double	   *key;
	int		   *top;
	double		head_mu = 0.0,
				all_mu = 0.0,
				dm = 0.0,
				corr = 0.0,
				ips = 0.0,
				logged = 0.0;
	double		marg[RECOMMEND_MAX_K + 1][RECOMMEND_MAX_K];
	OpeOrder	o;
	int			list;

	/* a list the logger chose deterministically, with a row still pending, or damaged */
	if (served == NULL || prop == NULL || exam == NULL || accd == NULL || mu == NULL ||
		width == NULL || prob == NULL || y == NULL || k < 1 || k > RECOMMEND_MAX_K ||
		k2 != k || k3 != k || kr != k || m2 != m || m3 != m || m4 != m || m < k)
	{
		ev->skipped++;
		return;
	}
	for (j = 0; j < k; j++)
		if (!(prop[j] > 0.0) || served[j] < 1 || served[j] > m)
		{
			ev->skipped++;
			return;
		}

	acc = palloc(sizeof(int64) * m);
	key = palloc(sizeof(double) * m);
	for (c = 0; c < m; c++)
	{
		acc[c] = (int64) accd[c];
		key[c] = ev->key == OPE_KEY_ICP ? prob[c] :
			ev->key == OPE_KEY_MU ? mu[c] : mu[c] + ev->alpha * width[c];
		all_mu += mu[c];
	}
	o.key = key;
	o.probability = prob;
	o.account_id = acc;

	/*
	 * The target's order: its first `exploit` ranks by mu, then by its key
	 * (the same when the key is mu); its marginals by rank in that order, any
	 * candidate outside its best k in row k.
	 */
	top = palloc(sizeof(int) * k);
	gtop = palloc(sizeof(int) * k);
	{
		OpeOrder	om = {mu, prob, acc};
		int			n = Min(k + k, m),
					filled,
					i,
					a;
		int		   *kt = palloc(sizeof(int) * n);

		OpeTop(&om, m, k, gtop);	/* the logging model's greedy order */
		nt = Min(ev->exploit, k);
		for (filled = 0; filled < nt; filled++)
			top[filled] = gtop[filled];
		OpeTop(&o, m, n, kt);
		for (i = 0; i < n && filled < k; i++)
		{
			bool		listed = false;

			for (a = 0; a < nt; a++)
				if (top[a] == kt[i])
					listed = true;
			if (!listed)
				top[filled++] = kt[i];
		}
	}
	for (c = 0; c <= k; c++)
		OpeRankMarginals(c + 1, k, m, ev->eps, nt, marg[c]);
	for (c = 0; c < k; c++)
		head_mu += mu[top[c]];

	/*
	 * What the logger could not serve: its first logger_exploit ranks (all
	 * of them when it never explored) are its greedy ones; below, any
	 * candidate but those
	 */
	for (j = 0; j < k; j++)
	{
		int			i,
					a;

		for (i = 0; i < k; i++)
		{
			int			r = k + 1;
			bool		outside;

			if (j < logger_exploit || logger_eps == 0.0)
				outside = i == j;	/* 1 - pi(gtop[j] at j) below */
			else
				outside = i < logger_exploit;
			if (!outside)
				continue;
			for (a = 0; a < k; a++)
				if (top[a] == gtop[i])
					r = a + 1;
			if (j < logger_exploit || logger_eps == 0.0)
				uns += 1.0 - marg[r - 1][j];
			else
				uns += marg[r - 1][j];
		}
	}

	/* direct method: sum over ranks of examination * sum over candidates of pi * mu */
	for (j = 0; j < k; j++)
	{
		double		v = 0.0;

		for (c = 0; c < k; c++)
			v += marg[c][j] * mu[top[c]];
		if (m > k)
			v += marg[k][j] * (all_mu - head_mu);
		dm += exam[j] * v;
	}

	list = (int) ev->lists;
	for (j = 0; j < k; j++)
	{
		int			sc = (int) served[j] - 1;
		int			r = k + 1;
		double		wgt;

		for (c = 0; c < k; c++)
			if (top[c] == sc)
				r = c + 1;
		wgt = marg[r - 1][j] / prop[j];
		if (wgt > ev->clip)
		{
			wgt = ev->clip;
			ev->clipped++;
		}
		ips += wgt * y[j];
		corr += wgt * (y[j] - exam[j] * mu[sc]);
		logged += y[j];
		ev->sw += wgt;
		ev->sw2 += wgt * wgt;
		if (ev->nrecs == ev->recs_cap)
		{
			ev->recs_cap = Max(1024, ev->recs_cap * 2);
			ev->recs = ev->recs == NULL ?
				MemoryContextAllocHuge(ev->cxt, sizeof(OpeRec) * ev->recs_cap) :
				repalloc_huge(ev->recs, sizeof(OpeRec) * ev->recs_cap);
		}
		ev->recs[ev->nrecs].list = list;
		ev->recs[ev->nrecs].rank = j;
		ev->recs[ev->nrecs].wy = wgt * y[j];
		ev->recs[ev->nrecs].w = wgt;
		ev->nrecs++;
	}
	ev->maxk = Max(ev->maxk, k);
	ev->lists++;
	ev->impressions += k;
	OpeAdd(&ev->ips, ips);
	OpeAdd(&ev->dr, dm + corr);
	OpeAdd(&ev->dm, dm);
	OpeAdd(&ev->logged, logged);
	ev->unsupported += uns;
}

/* One logged list, its arrays in a context reset after it. */
static void
OpeEvalRow(TupleTableSlot *slot, void *arg)
{
	OpeEval    *ev = (OpeEval *) arg;
	MemoryContext old = MemoryContextSwitchTo(ev->rowcxt);

	CHECK_FOR_INTERRUPTS();
	OpeEvalList(ev, slot);
	MemoryContextSwitchTo(old);
	MemoryContextReset(ev->rowcxt);
}

/* The standard normal quantile (bisection on erfc; |error| < 1e-12). */
static double
OpeNormalQuantile(double p)
{
	double		lo = -40.0,
				hi = 40.0;
	int			i;

	for (i = 0; i < 200; i++)
	{
		double		mid = 0.5 * (lo + hi);

		if (0.5 * erfc(-mid / M_SQRT2) < p)
			lo = mid;
		else
			hi = mid;
	}
	return 0.5 * (lo + hi);
}

/* One result row. */
static void
OpeEmit(ReturnSetInfo *rsinfo, const char *name, const OpeEval *ev, double value, double se,
		double z, bool with_ess)
{
	Datum		values[OPE_NATTS];
	bool		nulls[OPE_NATTS];

	memset(nulls, 0, sizeof(nulls));
	values[0] = CStringGetTextDatum(name);
	values[1] = Float8GetDatum(value);
	values[2] = Float8GetDatum(se);
	values[3] = Float8GetDatum(value - z * se);
	values[4] = Float8GetDatum(value + z * se);
	if (ev->lists == 0)
		nulls[1] = nulls[2] = nulls[3] = nulls[4] = true;
	else if (ev->lists < 2)
		nulls[2] = nulls[3] = nulls[4] = true;
	values[5] = Int64GetDatum(ev->lists);
	values[6] = Int64GetDatum(ev->impressions);
	values[7] = Float8GetDatum(ev->sw2 > 0.0 ? ev->sw * ev->sw / ev->sw2 : 0.0);
	nulls[7] = !with_ess || ev->sw2 <= 0.0;
	values[8] = Int64GetDatum(ev->clipped);
	values[9] = Int64GetDatum(ev->skipped);
	values[10] = Float8GetDatum(ev->lists > 0 ? ev->unsupported / ev->lists : 0.0);
	nulls[10] = ev->lists == 0;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* Mean and standard error of a per-list sum. */
static void
OpeMoments(const OpeSum *s, int64 n, double *mean, double *se)
{
	double		var;

	*mean = n > 0 ? s->s / n : 0.0;
	var = n > 1 ? (s->ss - n * (*mean) * (*mean)) / (n - 1) : 0.0;
	*se = sqrt(Max(var, 0.0) / Max(n, 1));
}

/* A number in params, or def when absent. */
static double
OpeParam(Jsonb *params, const char *name, double def, double lo, double hi)
{
	JsonbValue	vbuf;
	JsonbValue *v;
	double		x;

	v = getKeyJsonValueFromContainer(&params->root, name, strlen(name), &vbuf);
	if (v == NULL)
		return def;
	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("params.%s must be a number", name),
				 errhint("For example '{\"%s\": %g}'.", name, def)));
	x = DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)));
	if (!(x >= lo && x <= hi))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("params.%s must be between %g and %g, not %g", name, lo, hi, x)));
	return x;
}

/*
 * evaluate_policy(policy text, params jsonb, since timestamptz, until
 * timestamptz, clip float8, confidence float8) → table(estimator, value,
 * std_error, ci_low, ci_high, lists, impressions, effective_sample_size,
 * clipped, skipped)
 */
Datum
evaluate_policy(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const BanditSettings *cfg;
	OpeEval		ev;
	char	   *name;
	BanditPolicy policy;
	Jsonb	   *params;
	TimestampTz until,
				since;
	double		confidence,
				z,
				mean,
				se;
	Datum		args[2];

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("policy must not be NULL"),
				 errhint("Name the policy to evaluate: icp, greedy, linucb, epsilon_greedy or random.")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!BanditPolicyFromName(name, &policy))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown policy \"%s\"", name),
				 errhint("Evaluate icp, greedy, linucb, epsilon_greedy or random.")));
	if (policy == POLICY_THOMPSON)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("thompson cannot be evaluated off-policy yet"),
				 errdetail("Its ranking is a posterior draw whose distribution over lists the log does not keep."),
				 errhint("Evaluate linucb (a deterministic ranking by mean plus alpha times the posterior width) or an epsilon-mix of it instead.")));
	memset(&ev, 0, sizeof(ev));
	ev.clip = PG_ARGISNULL(4) ? 100.0 : PG_GETARG_FLOAT8(4);
	if (!(ev.clip > 0.0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("clip must be positive"),
				 errhint("clip caps each importance weight; 100 is the default, a very large value means no clipping.")));
	confidence = PG_ARGISNULL(5) ? 0.95 : PG_GETARG_FLOAT8(5);
	if (!(confidence > 0.0 && confidence < 1.0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("confidence must be between 0 and 1, not %g", confidence),
				 errhint("0.95 gives 95 %% intervals.")));
	until = PG_ARGISNULL(3) ? GetCurrentTransactionStartTimestamp() : PG_GETARG_TIMESTAMPTZ(3);
	since = PG_ARGISNULL(2) ? until - (int64) 30 * USECS_PER_DAY : PG_GETARG_TIMESTAMPTZ(2);
	if (since >= until)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the window is empty: since is not before until"),
				 errhint("Omit both for the last 30 days.")));

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	cfg = BanditGetSettings();
	params = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	if (params != NULL && (!JB_ROOT_IS_OBJECT(params) || JB_ROOT_IS_SCALAR(params)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("params must be a JSON object"),
				 errhint("For example '{\"alpha\": 0.5}' or '{\"epsilon\": 0.1}'.")));
	if (params != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(&params->root);
		JsonbValue	v;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
			if (tok == WJB_KEY)
			{
				char	   *key = pnstrdup(v.val.string.val, v.val.string.len);

				if (strcmp(key, "alpha") != 0 && strcmp(key, "epsilon") != 0 &&
					strcmp(key, "exploit_slots") != 0)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("unknown parameter \"%s\"", key),
							 errhint("params takes alpha (linucb), epsilon (the share of ranks filled at random) and exploit_slots (the first ranks that go by the expected reward).")));
				if (strcmp(key, "alpha") == 0 && policy != POLICY_LINUCB)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("alpha applies to linucb only")));
			}
	}
	ev.key = policy == POLICY_ICP ? OPE_KEY_ICP : policy == POLICY_LINUCB ? OPE_KEY_UCB : OPE_KEY_MU;
	ev.alpha = cfg->alpha;
	ev.eps = policy == POLICY_EPSILON_GREEDY ? cfg->epsilon : policy == POLICY_RANDOM ? 1.0 : 0.0;
	/* as recommend_accounts serves them: linucb and epsilon_greedy keep their first ranks on mu */
	ev.exploit = policy == POLICY_LINUCB || policy == POLICY_EPSILON_GREEDY ? cfg->exploit_slots : 0;
	if (params != NULL)
	{
		double		x;

		ev.alpha = OpeParam(params, "alpha", ev.alpha, 0.0, BANDIT_MAX_ALPHA);
		ev.eps = OpeParam(params, "epsilon", ev.eps, 0.0, 1.0);
		x = OpeParam(params, "exploit_slots", ev.exploit, 0.0, RECOMMEND_MAX_K);
		if (x != floor(x))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("params.exploit_slots must be a whole number, not %g", x)));
		ev.exploit = (int) x;
	}

	if (plan_read == NULL)
	{
		Oid			argtypes[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};

		plan_read = CatalogKeepPlan("SELECT c.served, c.propensity, c.examination, c.account_ids, c.mu,"
									" c.width, c.probability,"
									" ARRAY(SELECT r.reward FROM pg_catalog.unnest(c.served_ids) WITH ORDINALITY AS s(id, o)"
									" LEFT JOIN icpml.recommendations AS r"
									" ON r.recommendation_id OPERATOR(pg_catalog.=) s.id ORDER BY s.o),"
									" c.exploit_slots, c.epsilon"
									" FROM icpml.recommendation_candidates AS c"
									" WHERE c.served_at OPERATOR(pg_catalog.>=) $1"
									" AND c.served_at OPERATOR(pg_catalog.<) $2"
									" ORDER BY c.list_id", 2, argtypes, 0);
	}
	args[0] = TimestampTzGetDatum(since);
	args[1] = TimestampTzGetDatum(until);
	ev.cxt = CurrentMemoryContext;
	ev.rowcxt = AllocSetContextCreate(CurrentMemoryContext, "icpml evaluate_policy list",
									  ALLOCSET_DEFAULT_SIZES);
	(void) RecommendOwnerScan(plan_read, args, true, OpeEvalRow, &ev, "icpml.recommendation_candidates");

	z = OpeNormalQuantile(0.5 + confidence / 2.0);
	OpeMoments(&ev.ips, ev.lists, &mean, &se);
	OpeEmit(rsinfo, "ips", &ev, mean, se, z, true);

	/* SNIPS: per rank sum(w y) / sum(w); delta-method influence per list */
	{
		double	   *swy = palloc0(sizeof(double) * Max(ev.maxk, 1));
		double	   *sw = palloc0(sizeof(double) * Max(ev.maxk, 1));
		double	   *psi = palloc0(sizeof(double) * Max(ev.lists, 1));
		OpeSum		s = {0, 0};
		double		v = 0.0;
		int			i,
					j;

		for (i = 0; i < ev.nrecs; i++)
		{
			swy[ev.recs[i].rank] += ev.recs[i].wy;
			sw[ev.recs[i].rank] += ev.recs[i].w;
		}
		for (j = 0; j < ev.maxk; j++)
			if (sw[j] > 0.0)
				v += swy[j] / sw[j];
		for (i = 0; i < ev.nrecs; i++)
		{
			int			r = ev.recs[i].rank;

			if (sw[r] > 0.0)
				psi[ev.recs[i].list] += (ev.recs[i].wy - swy[r] / sw[r] * ev.recs[i].w) /
					(sw[r] / ev.lists);
		}
		for (i = 0; i < ev.lists; i++)
			OpeAdd(&s, psi[i]);
		OpeMoments(&s, ev.lists, &mean, &se);
		OpeEmit(rsinfo, "snips", &ev, v, se, z, true);
	}

	OpeMoments(&ev.dr, ev.lists, &mean, &se);
	OpeEmit(rsinfo, "dr", &ev, mean, se, z, true);
	OpeMoments(&ev.dm, ev.lists, &mean, &se);
	OpeEmit(rsinfo, "dm", &ev, mean, se, z, false);
	OpeMoments(&ev.logged, ev.lists, &mean, &se);
	OpeEmit(rsinfo, "logged", &ev, mean, se, z, false);

	SPI_finish();
	return (Datum) 0;
}
