/*
 * context.c — the recommender's context vector: the one definition of its
 * entries, their names and their scaling, and the code that computes them.
 *
 * recommend_accounts (recommend.c) reads the user's recent history, the
 * candidates' feature rows, the user's interactions with them and the
 * user's unrewarded impressions, keeping per account the few raw numbers
 * below (some, like the decayed interaction sums, accumulated as the rows
 * stream by with ContextRecencyWeight); ContextBuild then turns them into
 * one vector per candidate.  Every entry is in [0, 1], rounded to float4
 * (the log stores real[]), and the non-zero entries are indexed so that
 * ranking (policy.c) costs each candidate only its ~20 non-zero entries.
 *
 *  #  name                    value
 *  0  bias                    1
 *  1  icp_probability         ICP probability from icpml.account_scores
 *  2  icp_logit               (logit(probability) + 6) / 12, clamped
 *  3  engineering_roles       log(1 + n) / log(1 + engineering_roles_cap),
 *                             capped at 1 (as the rules scale it: signals.c,
 *                             icpml.rule_settings; the cap is 50 by default)
 *  4  open_engineering_roles  1 when hiring engineers
 *  5  total_open_roles        log(1 + n) / log(1 + open_roles_cap), capped
 *                             at 1 (likewise; 200 by default)
 *  6  engineering_blog        1 when it has an engineering blog
 *  7  recent_funding          1 - age / 548 days for a round in the last
 *                             18 months
 *  8  size_under_50           company_size in [1, 50); the five size bands
 *  9  size_50_199             [50, 200)         are all 0 when the size
 * 10  size_200_999            [200, 1000)       is unknown
 * 11  size_1000_4999          [1000, 5000)
 * 12  size_5000_plus          [5000, inf)
 * 13  research_recency        exp(-days since the last research run / 30)
 * 14  you_viewed              per interaction type view, research, save,
 * 15  you_researched          contact, meeting: 1 - exp(-sum of
 * 16  you_saved               exp(-age / 30 days)) over this user's
 * 17  you_contacted           interactions of that type with the account
 * 18  you_met
 * 19  you_dismissed           1 when this user dismissed the account
 * 20  fatigue                 1 - exp(-f / 10), f = sum over this user's
 *                             unrewarded impressions of the account of
 *                             fatigue_decay ^ (lists served to the user since)
 * 21  ignored                 1 - exp(-e / 3), e = sum over the same
 *                             impressions of examination(rank), not decayed:
 *                             evidence that this user does not want it
 * 22  industry_share          share of the user's recent interactions with
 *                             accounts of this industry
 * 23  industry_reward         mean reward of those, shrunk towards the
 *                             user's overall mean (2 pseudo-counts), clamped
 * 24  size_band_share         share of the user's recent interactions with
 *                             accounts of this size band
 * 25  user_activity           1 - exp(-interactions in the last 30 days / 20)
 * 26  technology_affinity     0.5 + 0.5 * clamp(sum over the vocabulary
 *                             technologies t in the account's stack of
 *                             (share of the user's recent interactions with
 *                             accounts using t - share of the candidates
 *                             using t), -1, 1); 0.5 when unknown
 * 27..38  industry_1..12      1 when the industry is
 *                             bandit_settings.industries[i]
 * 39..62  technology_1..24    1 when the tech stack holds
 *                             bandit_settings.technologies[i]
 * 63  account_engagement      what all users did with the account when it
 *                             was recommended: (reward + 3 m0) / (examined
 *                             + 3), capped at 1 (icpml.account_feedback;
 *                             examined = impressions weighted by
 *                             examination(rank); m0 = the candidates'
 *                             pooled reward / examined).  LinUCB adds its
 *                             standard error to the uncertainty, Thompson
 *                             sampling draws it (policy.c).
 *
 * "Recent interactions" are the user's last bandit_settings.history_limit
 * interactions with accounts the caller can see.  Changing this layout
 * changes BANDIT_DIM's meaning: logged contexts and states of another
 * layout are skipped by rebuild_bandit_state().
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "context.h"
#include "recommend.h"
#include "signals.h"

/*
 * The entries' names, as the table above and docs/recommender.md list them
 * (test/t/050_docs_context.pl checks that the two agree).
 */
static const char *const ContextEntryNames[] = {
	"bias",
	"icp_probability",
	"icp_logit",
	"engineering_roles",
	"open_engineering_roles",
	"total_open_roles",
	"engineering_blog",
	"recent_funding",
	"size_under_50",
	"size_50_199",
	"size_200_999",
	"size_1000_4999",
	"size_5000_plus",
	"research_recency",
	"you_viewed",
	"you_researched",
	"you_saved",
	"you_contacted",
	"you_met",
	"you_dismissed",
	"fatigue",
	"ignored",
	"industry_share",
	"industry_reward",
	"size_band_share",
	"user_activity",
	"technology_affinity",
	"industry_1",
	"industry_2",
	"industry_3",
	"industry_4",
	"industry_5",
	"industry_6",
	"industry_7",
	"industry_8",
	"industry_9",
	"industry_10",
	"industry_11",
	"industry_12",
	"technology_1",
	"technology_2",
	"technology_3",
	"technology_4",
	"technology_5",
	"technology_6",
	"technology_7",
	"technology_8",
	"technology_9",
	"technology_10",
	"technology_11",
	"technology_12",
	"technology_13",
	"technology_14",
	"technology_15",
	"technology_16",
	"technology_17",
	"technology_18",
	"technology_19",
	"technology_20",
	"technology_21",
	"technology_22",
	"technology_23",
	"technology_24",
	"account_engagement",
};

StaticAssertDecl(lengthof(ContextEntryNames) == BANDIT_DIM, "a name per context entry");

/* Interaction types with an entry of their own (CTX_OWN + i). */
static const char *const ContextOwnTypes[CTX_NOWN_TYPES] = {
	"view", "research", "save", "contact", "meeting"
};

/* Round to float4 the way the logged real[] context stores it. */
static inline double
ContextRound(double v)
{
	return (double) (float4) v;
}

/* Index of an interaction type among ContextOwnTypes (entries 14..18), or -1. */
int
ContextOwnType(const char *type)
{
	int			t;

	for (t = 0; t < CTX_NOWN_TYPES; t++)
		if (strcmp(type, ContextOwnTypes[t]) == 0)
			return t;
	return -1;
}

/*
 * The weight of an interaction or a research run age_days old in the
 * decayed sums (entries 13..18): exp(-age / 30 days).
 */
double
ContextRecencyWeight(double age_days)
{
	return exp(-age_days / 30.0);
}

/* recent_funding (entry 7) of a round age_days old: 1 - age / 548 days. */
double
ContextFundingRecency(double age_days)
{
	return SignalRecency(age_days, 548.0);
}

/* Index of an industry in bandit_settings.industries (its one-hot slot), or -1. */
int
ContextIndustrySlot(const BanditSettings *cfg, const char *name)
{
	int			j;

	for (j = 0; j < cfg->n_industries; j++)
		if (strcmp(name, cfg->industries[j]) == 0)
			return j;
	return -1;
}

/* Bit i set when the text[] stack holds cfg->technologies[i] (entry 39 + i). */
uint32
ContextTechnologySlots(const BanditSettings *cfg, Datum stack)
{
	ArrayType  *arr = DatumGetArrayTypeP(stack);
	ArrayIterator it;
	Datum		elem;
	bool		isnull;
	uint32		mask = 0;
	int			j;

	if (ARR_NDIM(arr) == 0 || cfg->n_technologies == 0)
		return 0;
	/* on the serving path for every candidate: no copy of the elements */
	it = array_create_iterator(arr, 0, NULL);
	while (array_iterate(it, &elem, &isnull))
	{
		text	   *t;
		int			len;

		if (isnull)
			continue;
		t = (text *) DatumGetPointer(elem);
		len = VARSIZE_ANY_EXHDR(t);
		for (j = 0; j < cfg->n_technologies; j++)
			if (cfg->technology_lengths[j] == len && memcmp(VARDATA_ANY(t), cfg->technologies[j], len) == 0)
				mask |= (uint32) 1 << j;
	}
	array_free_iterator(it);
	return mask;
}

/*
 * User-level aggregates of the history: its items carry their accounts'
 * attributes (from the profile, or read by retrieval.c).
 */
static void
ContextHistoryStats(RecommendCall *call)
{
	int			j;
	double		total = 0.0;

	call->n_known = 0;
	call->n_tech_known = 0;
	memset(call->size_count, 0, sizeof(call->size_count));
	memset(call->tech_count, 0, sizeof(call->tech_count));
	for (j = 0; j < call->nhist; j++)
	{
		RecommendHistItem *h = &call->hist[j];
		double		r = 0.0;

		if (!h->known)
			continue;			/* hidden from the caller, or gone */
		(void) BanditReward(call->cfg, h->type, &r);
		call->n_known++;
		if (h->tech_known)
		{
			int			t;

			call->n_tech_known++;
			for (t = 0; t < CTX_NTECH_SLOTS; t++)
				if (h->tech_slots & ((uint32) 1 << t))
					call->tech_count[t]++;
		}
		total += r;
		if (h->size_band >= 0)
			call->size_count[h->size_band]++;
		if (h->industry >= 0)
		{
			RecommendIndustry *s = &call->industries[h->industry];
			int			t = ContextOwnType(h->type);

			s->n++;
			s->reward += r;
			if (t >= 2 && t > s->best_type)
				s->best_type = t;	/* save, contact or meeting */
		}
	}
	call->mean_reward = call->n_known > 0 ? total / call->n_known : 0.0;
}

/*
 * Every candidate's account_engagement: what all users did with it when it
 * was recommended (icpml.account_feedback, joined by the retrieval query).
 */
static void
ContextEngagement(RecommendCall *call)
{
	int			c;
	double		sum_e = 0.0,
				sum_r = 0.0,
				m0,
				v0;

	for (c = 0; c < call->ncand; c++)
	{
		RecommendRow *r = &call->rows[call->cand[c]];

		sum_e += r->fb_examined;
		sum_r += r->fb_reward;
	}

	/*
	 * Shrink each account towards the candidates' pooled rate m0 (3 pseudo
	 * impressions), so that an account nobody has seen yet is average, not
	 * bad; its standard error sqrt(m0 (1 - m0) / (examined + 3)) bounds the
	 * spread of rewards in [0, 1] with mean m0.
	 */
	m0 = sum_e >= 1.0 ? Min(1.0, Max(0.0, sum_r / sum_e)) : 0.0;
	v0 = Max(m0 * (1.0 - m0), 1e-6);
	for (c = 0; c < call->ncand; c++)
	{
		RecommendRow *r = &call->rows[call->cand[c]];

		r->engagement = Min(1.0, Max(0.0, (r->fb_reward + 3.0 * m0) / (r->fb_examined + 3.0)));
		r->engagement_sd = sqrt(v0 / (r->fb_examined + 3.0));
	}
}

/*
 * The context vectors (ncand x BANDIT_DIM doubles, up to 2.5 MB) and their
 * non-zero indices live in buffers kept for the backend's life: a fresh
 * allocation of that size is fresh memory from the kernel on every call,
 * and faulting its pages in cost more than building the vectors.  Only
 * one call uses them at a time (recommend_accounts does not nest).
 */
static double *ctx_x = NULL;
static int *ctx_nz = NULL;
static int	ctx_cap = 0;

/* Point call->X, nz, nnz and eng_sd at zeroed room for call->ncand vectors. */
static void
ContextScratch(RecommendCall *call)
{
	int			n = Max(call->ncand, 1);

	if (n > ctx_cap)
	{
		if (ctx_x != NULL)
		{
			pfree(ctx_x);
			pfree(ctx_nz);
		}
		ctx_cap = Max(n, 1024);
		ctx_x = MemoryContextAlloc(TopMemoryContext, sizeof(double) * ctx_cap * BANDIT_DIM);
		ctx_nz = MemoryContextAlloc(TopMemoryContext, sizeof(int) * ctx_cap * BANDIT_DIM);
	}
	call->X = ctx_x;
	memset(call->X, 0, sizeof(double) * n * BANDIT_DIM);
	call->nz = ctx_nz;
	call->eng_sd = palloc0(sizeof(double) * n);
	call->nnz = palloc0(sizeof(int) * n);
}

/* The context vector of every candidate (the table above). */
static void
ContextVectors(RecommendCall *call)
{
	int			c,
				t;
	double		activity = 1.0 - exp(-call->n_30d / 20.0);
	double		tech_lift[CTX_NTECH_SLOTS];
	int			tech_cand[CTX_NTECH_SLOTS];
	int			n_stack = 0;

	/* share of the user's history using each technology, over the candidates' */
	memset(tech_cand, 0, sizeof(tech_cand));
	for (c = 0; c < call->ncand; c++)
	{
		RecommendRow *r = &call->rows[call->cand[c]];

		if (!r->tech_known)
			continue;
		n_stack++;
		for (t = 0; t < CTX_NTECH_SLOTS; t++)
			if (r->tech_slots & ((uint32) 1 << t))
				tech_cand[t]++;
	}
	for (t = 0; t < CTX_NTECH_SLOTS; t++)
		tech_lift[t] = call->n_tech_known > 0 && n_stack > 0 ?
			(double) call->tech_count[t] / call->n_tech_known - (double) tech_cand[t] / n_stack : 0.0;

	ContextScratch(call);
	for (c = 0; c < call->ncand; c++)
	{
		RecommendRow *r = &call->rows[call->cand[c]];
		double	   *x = call->X + c * BANDIT_DIM;
		int			ind = r->ind;

		x[CTX_BIAS] = 1.0;
		x[CTX_ICP] = Min(1.0, Max(0.0, r->probability));
		{
			double		p = Min(1.0 - 1e-6, Max(1e-6, r->probability));

			x[CTX_ICP_LOGIT] = Min(1.0, Max(0.0, (log(p / (1.0 - p)) + 6.0) / 12.0));
		}
		x[CTX_ENG_ROLES] = SignalLogScale(r->eng_roles, call->scaling->roles_cap);
		x[CTX_OPEN_ENG] = r->hiring ? 1.0 : 0.0;
		x[CTX_OPEN_ROLES] = SignalLogScale(r->open_roles, call->scaling->open_roles_cap);
		x[CTX_BLOG] = r->blog ? 1.0 : 0.0;
		x[CTX_FUNDING] = r->funding;
		if (r->size_band >= 0)
			x[CTX_SIZE_BAND + r->size_band] = 1.0;
		x[CTX_RESEARCH] = r->research;
		/* most candidates have no own history: skip the exp() of a 0 */
		if (r->own_best >= 0)
			for (t = 0; t < CTX_NOWN_TYPES; t++)
				x[CTX_OWN + t] = r->own[t] > 0.0 ? 1.0 - exp(-r->own[t]) : 0.0;
		x[CTX_DISMISSED] = r->dismissed ? 1.0 : 0.0;
		if (r->fatigue > 0.0)
			x[CTX_FATIGUE] = 1.0 - exp(-r->fatigue / 10.0);
		if (r->ignored > 0.0)
			x[CTX_IGNORED] = 1.0 - exp(-r->ignored / 3.0);
		if (r->industry_slot >= 0)
			x[CTX_INDUSTRY_SLOT + r->industry_slot] = 1.0;
		{
			double		lift = 0.0;

			for (t = 0; t < CTX_NTECH_SLOTS; t++)
				if (r->tech_slots & ((uint32) 1 << t))
				{
					x[CTX_TECH_SLOT + t] = 1.0;
					lift += tech_lift[t];
				}
			x[CTX_TECH_AFFINITY] = 0.5 + 0.5 * Min(1.0, Max(-1.0, lift));
		}
		x[CTX_ACCOUNT_ENGAGEMENT] = r->engagement;
		call->eng_sd[c] = r->engagement_sd;
		if (call->n_known > 0)
		{
			double		n_ind = ind >= 0 ? call->industries[ind].n : 0;
			double		r_ind = ind >= 0 ? call->industries[ind].reward : 0;
			double		shrunk = (r_ind + 2.0 * call->mean_reward) / (n_ind + 2.0);

			x[CTX_INDUSTRY_SHARE] = n_ind / call->n_known;
			x[CTX_INDUSTRY_REWARD] = Min(1.0, Max(0.0, shrunk));
			if (r->size_band >= 0)
				x[CTX_SIZE_SHARE] = (double) call->size_count[r->size_band] / call->n_known;
		}
		x[CTX_ACTIVITY] = activity;
		call->nnz[c] = 0;
		for (t = 0; t < BANDIT_DIM; t++)
		{
			x[t] = ContextRound(x[t]);
			if (x[t] != 0.0)
				call->nz[c * BANDIT_DIM + call->nnz[c]++] = t;
		}
	}
}

/* Name of context entry i for people; vocabulary slots name their value. */
const char *
ContextSignalName(const BanditSettings *cfg, int i)
{
	if (i >= CTX_INDUSTRY_SLOT && i < CTX_INDUSTRY_SLOT + cfg->n_industries)
		return psprintf("industry=%s", cfg->industries[i - CTX_INDUSTRY_SLOT]);
	if (i >= CTX_TECH_SLOT && i < CTX_TECH_SLOT + cfg->n_technologies)
		return psprintf("technology=%s", cfg->technologies[i - CTX_TECH_SLOT]);
	return ContextEntryNames[i];
}

/* Build every candidate's context vector (see context.h). */
void
ContextBuild(RecommendCall *call)
{
	ContextHistoryStats(call);
	ContextEngagement(call);
	ContextVectors(call);
}
