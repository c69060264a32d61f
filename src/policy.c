/*
 * policy.c — the ranking policies of recommend_accounts: how each one
 * scores the candidates' context vectors and picks the k it lists, with
 * the propensity each listed row is logged with.
 *
 * Every policy starts from the posterior mean (PolicyMean): theta_g from
 * the shared state's Cholesky factor, the user's theta_u from a ridge
 * regression whose prior (strength personalization_prior) is centred on
 * theta_g, theta_u = A_u^-1 (personalization_prior theta_g + b_u), so a
 * user without history gets the shared model; theta = (1 - w) theta_g +
 * w theta_u with w = personalization_weight (0 without personalization),
 * and mu = theta' x per candidate.  Then, one function each:
 *
 *   linucb          mu + alpha sqrt(x' (A_g^-1 + w A_u^-1) x + theta_e^2 s_e^2),
 *                   s_e the standard error of the account engagement;
 *                   the inverses come from the factors once per call
 *   thompson        theta~ drawn from N(theta_g, v^2 A_g^-1) (and the
 *                   user's around it), scored theta~' x with each
 *                   account's engagement drawn from its own posterior;
 *                   propensity: the share of 20 extra draws that put the
 *                   listed item in its slot given the items above it
 *   greedy          mu
 *   epsilon_greedy  each slot at random with probability epsilon, else the
 *                   best mu not listed yet; exact propensities
 *   icp             the ICP probability
 *   random          each slot uniformly among the candidates not listed yet
 *
 * Under linucb, thompson and epsilon_greedy the first exploit_slots slots
 * (bandit_settings) are the best mu, propensity 1: exploration only below
 * the most examined ranks, and a new deployment's top slots are its prior's
 * ICP ranking.  A listed row "explores" when its mu is below the k-th best mu.  Ties in
 * every order go to the higher ICP probability, then the lower account id.
 * Costs: O(d^3) per call for the factors' inverses, then each candidate
 * only the products of its non-zero context entries (about 20 of 64).
 */
#include "postgres.h"

#include <math.h>

#include "bandit.h"
#include "context.h"
#include "policy.h"
#include "recommend.h"

/* extra posterior draws that estimate a Thompson propensity */
#define POLICY_TS_SAMPLES 20

/* The posterior every policy ranks with (PolicyMean). */
typedef struct PolicyPosterior
{
	const BanditState *g;		/* the shared state */
	const BanditState *u;		/* the user's state */
	double		theta_g[BANDIT_MAX_DIM];
	double		w;				/* weight of the user's model */
} PolicyPosterior;

typedef void (*PolicyFunction) (RecommendCall *call, const PolicyPosterior *post, int kk);

/* Sort order of candidates: a score (desc), then ICP probability (desc), then id. */
static int
PolicyCompare(const void *a, const void *b, void *arg)
{
	RecommendCall *call = (RecommendCall *) ((void **) arg)[0];
	const double *key = (const double *) ((void **) arg)[1];
	int			ia = *(const int *) a;
	int			ib = *(const int *) b;
	RecommendRow *ra = &call->rows[call->cand[ia]];
	RecommendRow *rb = &call->rows[call->cand[ib]];

	if (key[ia] != key[ib])
		return key[ia] > key[ib] ? -1 : 1;
	if (ra->probability != rb->probability)
		return ra->probability > rb->probability ? -1 : 1;
	return ra->account_id < rb->account_id ? -1 : (ra->account_id > rb->account_id ? 1 : 0);
}

/* The m best candidate indices by key (desc, ties as PolicyCompare), best first. */
static int *
PolicyTop(RecommendCall *call, const double *key, int m)
{
	int		   *top = palloc(sizeof(int) * Max(m, 1));
	void	   *arg[2] = {call, (void *) key};
	int			ntop = 0,
				c;

	/* insertion into a list of the m best so far, best first */
	for (c = 0; c < call->ncand; c++)
	{
		int			p = ntop;

		if (ntop == m && PolicyCompare(&c, &top[m - 1], arg) >= 0)
			continue;
		if (ntop < m)
			ntop++;
		while (p > 0 && PolicyCompare(&c, &top[p - 1], arg) < 0)
		{
			if (p < m)
				top[p] = top[p - 1];
			p--;
		}
		top[p] = c;
	}
	return top;
}

/*
 * The slots of a list of kk that go by mu whatever the policy explores,
 * for the exploring policies (none for the others): the first
 * exploit_slots (the most examined ranks), and of the slots below them
 * the share warm_start / (n + warm_start), n the impressions the shared
 * model has learnt from: a new deployment explores nowhere (its mu is the
 * ICP ranking, from the ICP prior, plus what it learns), and opens the
 * lower slots to exploration as evidence comes in.
 */
int
PolicyExploitSlots(RecommendCall *call, int kk)
{
	const BanditSettings *cfg = call->cfg;
	int			n;

	switch (call->policy)
	{
		case POLICY_LINUCB:
		case POLICY_THOMPSON:
		case POLICY_EPSILON_GREEDY:
			break;
		default:
			return 0;
	}
	n = Min(cfg->exploit_slots, kk);
	if (cfg->warm_start > 0)
	{
		double		learnt = (double) Max(call->global_state.n, 0);

		n += (int) floor((kk - n) * cfg->warm_start / (learnt + cfg->warm_start));
	}
	return Min(n, kk);
}

/*
 * List the kk best candidates by score, the first PolicyExploitSlots by mu;
 * a row explores when its mu is below the k-th best mu (never under the
 * icp policy).  Propensity 1.
 */
static void
PolicyListTop(RecommendCall *call, int kk)
{
	int			n_exploit = PolicyExploitSlots(call, kk);
	int		   *greedy = PolicyTop(call, call->mu, Min(2 * kk, call->ncand));
	double		kth_mu = call->mu[greedy[kk - 1]];
	int		   *order = PolicyTop(call, call->score, Min(kk + n_exploit, call->ncand));
	int			j,
				o = 0;

	for (j = 0; j < kk; j++)
	{
		int			pick;

		if (j < n_exploit)
			pick = greedy[j];
		else
		{
			/* the best score not listed above */
			for (;;)
			{
				int			a;
				bool		above = false;

				pick = order[o++];
				for (a = 0; a < n_exploit; a++)
					if (call->chosen[a] == pick)
						above = true;
				if (!above)
					break;
			}
		}
		call->chosen[j] = pick;
		call->propensity[j] = 1.0;
		call->explored[j] = call->policy != POLICY_ICP &&
			call->mu[pick] < kth_mu;
	}
	call->nchosen = kk;
}

/*
 * List kk candidates, each slot at random (uniformly among those not
 * listed yet) with probability eps_rest (0 in the PolicyExploitSlots
 * first), else the best mu not listed yet; the propensity is exact.  Walks the greedy order past the items taken at
 * random (at most k - 1 of them), so it needs the best 2k.
 */
static void
PolicyListEpsilon(RecommendCall *call, int kk, double eps_rest)
{
	int			n_exploit = PolicyExploitSlots(call, kk);
	int		   *greedy = PolicyTop(call, call->mu, Min(2 * kk, call->ncand));
	bool	   *taken = palloc0(sizeof(bool) * call->ncand);
	int			gp = 0,
				j;

	for (j = 0; j < kk; j++)
	{
		int			remaining = call->ncand - j;
		double		eps = j < n_exploit ? 0.0 : eps_rest;
		int			best,
					pick;

		while (taken[greedy[gp]])
			gp++;
		best = greedy[gp];
		if (eps > 0.0 && (eps >= 1.0 || pg_prng_double(&call->rng) < eps))
		{
			int			r = (int) pg_prng_uint64_range(&call->rng, 0, remaining - 1);

			for (pick = 0; pick < call->ncand; pick++)
				if (!taken[pick] && r-- == 0)
					break;
			call->explored[j] = true;
		}
		else
		{
			pick = best;
			call->explored[j] = false;
		}
		taken[pick] = true;
		call->chosen[j] = pick;
		call->propensity[j] = eps / remaining + (pick == best ? 1.0 - eps : 0.0);
	}
	call->nchosen = kk;
}

/*
 * The posterior mean: theta_g, theta_u and their blend call->theta (see the
 * file comment), and mu = theta' x of every candidate.
 */
static void
PolicyMean(RecommendCall *call, PolicyPosterior *post)
{
	const BanditSettings *cfg = call->cfg;
	double		theta_u[BANDIT_MAX_DIM];
	double		rhs[BANDIT_MAX_DIM];
	int			d = BANDIT_DIM;
	int			c,
				i;

	BanditSolve(post->g->L, post->g->b, post->theta_g, d);
	for (i = 0; i < d; i++)
		rhs[i] = cfg->personalization_prior * post->theta_g[i] + post->u->b[i];
	BanditSolve(post->u->L, rhs, theta_u, d);
	for (i = 0; i < d; i++)
		call->theta[i] = (1.0 - post->w) * post->theta_g[i] + post->w * theta_u[i];

	for (c = 0; c < call->ncand; c++)
		call->mu[c] = BanditSparseDot(call->X + c * BANDIT_DIM, call->nz + c * BANDIT_DIM,
									  call->nnz[c], call->theta);
}

/*
 * LinUCB: mu plus alpha times the standard deviation of the expected
 * reward, x' (A_g^-1 + w A_u^-1) x: the shared model's uncertainty plus
 * the user's deviation from it (the user's prior is centred on the shared
 * model), and the uncertainty of the account's engagement.  The inverses
 * come from the Cholesky factors once per call (O(d^3)); each candidate
 * then costs the products of its non-zero entries only.
 */
static void
PolicyLinUCB(RecommendCall *call, const PolicyPosterior *post, int kk)
{
	int			d = BANDIT_DIM;
	double	   *M = palloc0(sizeof(double) * d * d);
	double		eng_w = call->theta[CTX_ACCOUNT_ENGAGEMENT];
	int			c;

	BanditAddInverse(post->g->L, d, 1.0, M);
	if (post->w > 0.0)
		BanditAddInverse(post->u->L, d, post->w, M);
	for (c = 0; c < call->ncand; c++)
	{
		double		q = BanditSparseQuad(call->X + c * BANDIT_DIM, call->nz + c * BANDIT_DIM,
										 call->nnz[c], M, d);

		/* and the uncertainty of the account's engagement */
		q += eng_w * eng_w * call->eng_sd[c] * call->eng_sd[c];
		call->explore[c] = call->cfg->alpha * sqrt(Max(q, 0.0));
		call->score[c] = call->mu[c] + call->explore[c];
	}
	PolicyListTop(call, kk);
}

/*
 * One posterior draw of the blended parameter vector: theta_g~ from
 * N(theta_g, v^2 A_g^-1), then (with personalization) the user's theta_u~
 * from N(A_u^-1 (personalization_prior theta_g~ + b_u), v^2 A_u^-1).
 */
static void
PolicyThompsonTheta(RecommendCall *call, const PolicyPosterior *post, double *out)
{
	const BanditState *g = post->g;
	const BanditState *u = post->u;
	double		w = post->w;
	double		tg[BANDIT_MAX_DIM];
	double		rhs[BANDIT_MAX_DIM];
	double		tu_mean[BANDIT_MAX_DIM];
	double		tu[BANDIT_MAX_DIM];
	int			i,
				d = g->d;

	BanditDrawTheta(g, post->theta_g, call->cfg->v, &call->rng, tg);
	if (w <= 0.0)
	{
		memcpy(out, tg, sizeof(double) * d);
		return;
	}
	for (i = 0; i < d; i++)
		rhs[i] = call->cfg->personalization_prior * tg[i] + u->b[i];
	BanditSolve(u->L, rhs, tu_mean, d);
	BanditDrawTheta(u, tu_mean, call->cfg->v, &call->rng, tu);
	for (i = 0; i < d; i++)
		out[i] = (1.0 - w) * tg[i] + w * tu[i];
}

/*
 * Thompson scores of one posterior draw th: th' x, with each account's
 * engagement drawn from its own posterior (mean x[engagement], sd eng_sd).
 */
static void
PolicyThompsonScores(RecommendCall *call, const double *th, double *out)
{
	int			c;

	BanditNormals(&call->rng, out, call->ncand);
	for (c = 0; c < call->ncand; c++)
		out[c] = BanditSparseDot(call->X + c * BANDIT_DIM, call->nz + c * BANDIT_DIM,
								 call->nnz[c], th) +
			th[CTX_ACCOUNT_ENGAGEMENT] * call->eng_sd[c] * out[c];
}

/*
 * Thompson's propensities: the probability that the draw puts each listed
 * item at its rank, given the items above it, estimated from extra
 * posterior draws; the draw that was served counts as one of them, so it
 * is never 0.
 */
static void
PolicyThompsonPropensity(RecommendCall *call, const PolicyPosterior *post, int kk)
{
	int			hits[RECOMMEND_MAX_K];
	double	   *s = palloc(sizeof(double) * call->ncand);
	int		   *top = palloc(sizeof(int) * kk);
	int			smp,
				c,
				j;

	memset(hits, 0, sizeof(hits));
	for (smp = 0; smp < POLICY_TS_SAMPLES; smp++)
	{
		double		th[BANDIT_MAX_DIM];
		int			ntop = 0;

		PolicyThompsonTheta(call, post, th);
		PolicyThompsonScores(call, th, s);
		/* this draw's top kk, best first (insertion into a short list) */
		for (c = 0; c < call->ncand; c++)
		{
			int			p = ntop;

			if (ntop == kk && s[c] <= s[top[kk - 1]])
				continue;
			if (ntop < kk)
				ntop++;
			while (p > 0 && s[c] > s[top[p - 1]])
			{
				if (p < kk)
					top[p] = top[p - 1];
				p--;
			}
			top[p] = c;
		}
		/* slot j: the best of this draw that is not listed above j */
		for (j = 0; j < kk; j++)
		{
			int			q;

			for (q = 0; q < ntop; q++)
			{
				int			a;
				bool		above = false;

				for (a = 0; a < j; a++)
					if (call->chosen[a] == top[q])
						above = true;
				if (!above)
					break;
			}
			if (q < ntop && top[q] == call->chosen[j])
				hits[j]++;
		}
	}
	for (j = 0; j < kk; j++)
		call->propensity[j] = j < PolicyExploitSlots(call, kk) ? 1.0 :
			(hits[j] + 1.0) / (POLICY_TS_SAMPLES + 1.0);
}

/*
 * Thompson sampling: one posterior draw per call ranks the candidates; the
 * exploration a row shows is its draw's score minus its mu.
 */
static void
PolicyThompson(RecommendCall *call, const PolicyPosterior *post, int kk)
{
	double		th[BANDIT_MAX_DIM];
	int			c;

	PolicyThompsonTheta(call, post, th);
	PolicyThompsonScores(call, th, call->score);
	for (c = 0; c < call->ncand; c++)
		call->explore[c] = call->score[c] - call->mu[c];
	PolicyListTop(call, kk);
	PolicyThompsonPropensity(call, post, kk);
}

/* Greedy: the best expected reward mu. */
static void
PolicyGreedy(RecommendCall *call, const PolicyPosterior *post, int kk)
{
	memcpy(call->score, call->mu, sizeof(double) * call->ncand);
	PolicyListTop(call, kk);
}

/* Epsilon-greedy: each slot at random with probability epsilon, else greedy. */
static void
PolicyEpsilonGreedy(RecommendCall *call, const PolicyPosterior *post, int kk)
{
	memcpy(call->score, call->mu, sizeof(double) * call->ncand);
	PolicyListEpsilon(call, kk, call->cfg->epsilon);
}

/* ICP: the materialised ICP probability, no learning. */
static void
PolicyIcp(RecommendCall *call, const PolicyPosterior *post, int kk)
{
	int			c;

	for (c = 0; c < call->ncand; c++)
		call->score[c] = call->rows[call->cand[c]].probability;
	PolicyListTop(call, kk);
}

/* Random: every slot uniformly among the candidates not listed yet. */
static void
PolicyRandom(RecommendCall *call, const PolicyPosterior *post, int kk)
{
	memcpy(call->score, call->mu, sizeof(double) * call->ncand);
	PolicyListEpsilon(call, kk, 1.0);
}

/* The policies, in BanditPolicy order. */
static const PolicyFunction PolicyFunctions[BANDIT_NPOLICIES] = {
	PolicyLinUCB,
	PolicyThompson,
	PolicyGreedy,
	PolicyEpsilonGreedy,
	PolicyIcp,
	PolicyRandom
};

/* Rank the candidates under call->policy and choose k of them (see policy.h). */
void
PolicyRank(RecommendCall *call)
{
	PolicyPosterior post;
	int			kk = Min(call->k, call->ncand);

	call->nchosen = 0;
	call->mu = palloc0(sizeof(double) * Max(call->ncand, 1));
	call->score = palloc0(sizeof(double) * Max(call->ncand, 1));
	call->explore = palloc0(sizeof(double) * Max(call->ncand, 1));
	if (call->ncand == 0)
		return;

	post.g = &call->global_state;
	post.u = &call->user_state;
	post.w = call->cfg->personalization ? call->cfg->personalization_weight : 0.0;
	PolicyMean(call, &post);
	PolicyFunctions[call->policy] (call, &post, kk);
}
