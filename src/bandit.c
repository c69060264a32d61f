/*
 * bandit.c — the contextual bandit's numerics, settings and state storage.
 *
 * Model: ridge regression of the reward on the context vector x.  A state
 * holds the sufficient statistics A = lambda I + sum x x' and b = sum r x
 * and the lower Cholesky factor L of A (A = L L').  theta = A^-1 b and the
 * uncertainty x' A^-1 x = |L^-1 x|^2 come from triangular solves, O(d^2),
 * never from an explicit inverse.  An update adds x x' to A and updates L
 * by a rank-1 Cholesky update; every refactor_every updates L is recomputed
 * from A so that rounding cannot accumulate.  With forgetting (gamma < 1)
 * an update is A <- gamma A + (1 - gamma) lambda I + x x', b <- gamma b + r x
 * (the data are forgotten, the prior is not), which is not a rank-1 change:
 * L is then recomputed on every update (d <= 64: microseconds).
 *
 * A and b are updated by exactly the same floating-point operations
 * whichever path (trigger, batch, rebuild) applies them, so a rebuild from
 * the log reproduces the online state bit for bit when it replays the same
 * updates in the same order.
 *
 * Settings (icpml.bandit_settings, icpml.reward_map) are read as the
 * extension owner and cached per backend until a write to either commits
 * (relcache invalidation, see catalog.c).
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "icpml.h"
#include "bandit.h"
#include "features.h"

char	   *icpml_interactions_relation = NULL;

const char *const BanditContextNames[BANDIT_DIM] = {
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

const char *const BanditOwnTypes[BANDIT_NOWN_TYPES] = {
	"view", "research", "save", "contact", "meeting"
};

static const char *const PolicyNames[] = {
	"linucb", "thompson", "greedy", "epsilon_greedy", "icp", "random"
};

static BanditSettings bandit_settings;
static bool bandit_settings_valid = false;
static MemoryContext bandit_cxt = NULL;

static SPIPlanPtr plan_load = NULL;
static SPIPlanPtr plan_load_lock = NULL;
static SPIPlanPtr plan_insert_prior = NULL;
static SPIPlanPtr plan_store = NULL;

/* Define the recommender's GUCs (called from _PG_init). */
void
BanditDefineGucs(void)
{
	DefineCustomStringVariable("icpml.interactions_relation",
							   "Table of user interactions (user_id, account_id, interaction_type, created_at) the recommender learns from.",
							   "Read as the calling user, so row-level security applies.",
							   &icpml_interactions_relation,
							   "public.user_interactions",
							   PGC_USERSET, 0,
							   RelationNameCheckHook, NULL, NULL);
}

/* Parse a policy name; false when unknown. */
bool
BanditPolicyFromName(const char *name, BanditPolicy *out)
{
	int			i;

	for (i = 0; i < lengthof(PolicyNames); i++)
		if (strcmp(name, PolicyNames[i]) == 0)
		{
			*out = (BanditPolicy) i;
			return true;
		}
	return false;
}

/* The SQL name of a policy. */
const char *
BanditPolicyName(BanditPolicy policy)
{
	return PolicyNames[policy];
}

/* Invalidation hook: reload the settings on next use. */
static void
BanditInvalidate(void)
{
	bandit_settings_valid = false;
}

/* Copy a text[] datum into a palloc'd C string array (current context). */
static int
BanditTextArray(Datum d, char ***out)
{
	Datum	   *elems;
	bool	   *enulls;
	int			n,
				i,
				m = 0;

	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &enulls, &n);
	*out = palloc(sizeof(char *) * Max(n, 1));
	for (i = 0; i < n; i++)
		if (!enulls[i])
			(*out)[m++] = TextDatumGetCString(elems[i]);
	return m;
}

/* ERROR unless lo <= v <= hi (so never NaN or infinite). */
static void
BanditCheckRange(const char *name, double v, double lo, double hi)
{
	if (!(v >= lo && v <= hi))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("icpml.bandit_settings.%s is %g, outside [%g, %g]", name, v, lo, hi),
				 errhint("Set it back to a value in range; the table's CHECK constraints say the same.")));
}

/*
 * The settings as the recommender needs them: finite and in the ranges of
 * the table's CHECK constraints (checked again here: a value out of range
 * would give NaN scores, and NaN is never served or logged).
 */
static void
BanditCheckSettings(const BanditSettings *cfg)
{
	BanditCheckRange("alpha", cfg->alpha, 0.0, BANDIT_MAX_ALPHA);
	BanditCheckRange("v", cfg->v, 0.0, BANDIT_MAX_V);
	BanditCheckRange("epsilon", cfg->epsilon, 0.0, 1.0);
	BanditCheckRange("lambda", cfg->lambda, BANDIT_MIN_LAMBDA, BANDIT_MAX_LAMBDA);
	BanditCheckRange("icp_prior", cfg->icp_prior, -BANDIT_MAX_ABS_ICP_PRIOR, BANDIT_MAX_ABS_ICP_PRIOR);
	BanditCheckRange("gamma", cfg->gamma, BANDIT_MIN_GAMMA, 1.0);
	BanditCheckRange("personalization_weight", cfg->personalization_weight, 0.0, 1.0);
	BanditCheckRange("fatigue_decay", cfg->fatigue_decay, 0.0, nextafter(1.0, 0.0));
	BanditCheckRange("position_bias", cfg->position_bias, 0.0, 4.0);
	BanditCheckRange("personalization_prior", cfg->personalization_prior,
					 BANDIT_MIN_LAMBDA, BANDIT_MAX_LAMBDA);
}

/* Load icpml.bandit_settings and icpml.reward_map (inside SPI_connect). */
static void
BanditLoadSettings(void)
{
	CatalogOwnerState owner;
	int			ret;
	uint64		i;
	BanditSettings cfg;
	MemoryContext oldcxt;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	char	   *policy;
	bool		cfg_has_experiments;

	CatalogRegisterInvalidation(BanditInvalidate);
	(void) CatalogRelid("bandit_settings");
	(void) CatalogRelid("reward_map");
	cfg_has_experiments = OidIsValid(CatalogRelidIfExists("experiments"));

	if (bandit_cxt == NULL)
		bandit_cxt = AllocSetContextCreate(TopMemoryContext, "icpml bandit settings",
										   ALLOCSET_SMALL_SIZES);
	MemoryContextReset(bandit_cxt);
	memset(&cfg, 0, sizeof(cfg));

	CatalogSwitchToOwner(&owner);

	ret = SPI_execute("SELECT default_policy, alpha, v, epsilon, lambda, candidates,"
					  " reward_window, gamma, refactor_every, personalization,"
					  " personalization_weight, exclude_dismissed, exclude_worked_types,"
					  " history_limit, icp_prior, fatigue_decay, position_bias,"
					  " coalesce(industries, '{}'), coalesce(technologies, '{}'), personalization_prior"
					  " FROM icpml.bandit_settings", true, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("icpml.bandit_settings must hold exactly one row"),
				 errhint("Restore it with: INSERT INTO icpml.bandit_settings DEFAULT VALUES.")));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	policy = SPI_getvalue(tup, desc, 1);
	if (!BanditPolicyFromName(policy, &cfg.default_policy))
		elog(ERROR, "unknown default_policy \"%s\" in icpml.bandit_settings (please report a bug)", policy);
	cfg.alpha = DatumGetFloat8(SPI_getbinval(tup, desc, 2, &isnull));
	cfg.v = DatumGetFloat8(SPI_getbinval(tup, desc, 3, &isnull));
	cfg.epsilon = DatumGetFloat8(SPI_getbinval(tup, desc, 4, &isnull));
	cfg.lambda = DatumGetFloat8(SPI_getbinval(tup, desc, 5, &isnull));
	cfg.candidates = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
	cfg.reward_window = *DatumGetIntervalP(SPI_getbinval(tup, desc, 7, &isnull));
	cfg.gamma = DatumGetFloat8(SPI_getbinval(tup, desc, 8, &isnull));
	cfg.refactor_every = DatumGetInt32(SPI_getbinval(tup, desc, 9, &isnull));
	cfg.personalization = DatumGetBool(SPI_getbinval(tup, desc, 10, &isnull));
	cfg.personalization_weight = DatumGetFloat8(SPI_getbinval(tup, desc, 11, &isnull));
	cfg.exclude_dismissed = DatumGetBool(SPI_getbinval(tup, desc, 12, &isnull));
	oldcxt = MemoryContextSwitchTo(bandit_cxt);
	cfg.n_worked_types = BanditTextArray(SPI_getbinval(tup, desc, 13, &isnull),
										 &cfg.worked_types);
	MemoryContextSwitchTo(oldcxt);
	cfg.history_limit = DatumGetInt32(SPI_getbinval(tup, desc, 14, &isnull));
	cfg.icp_prior = DatumGetFloat8(SPI_getbinval(tup, desc, 15, &isnull));
	cfg.fatigue_decay = DatumGetFloat8(SPI_getbinval(tup, desc, 16, &isnull));
	cfg.position_bias = DatumGetFloat8(SPI_getbinval(tup, desc, 17, &isnull));
	oldcxt = MemoryContextSwitchTo(bandit_cxt);
	cfg.n_industries = BanditTextArray(SPI_getbinval(tup, desc, 18, &isnull), &cfg.industries);
	cfg.n_technologies = BanditTextArray(SPI_getbinval(tup, desc, 19, &isnull), &cfg.technologies);
	MemoryContextSwitchTo(oldcxt);
	cfg.n_industries = Min(cfg.n_industries, CTX_NINDUSTRY_SLOTS);
	cfg.n_technologies = Min(cfg.n_technologies, CTX_NTECH_SLOTS);
	for (i = 0; i < (uint64) cfg.n_technologies; i++)
		cfg.technology_lengths[i] = strlen(cfg.technologies[i]);
	cfg.personalization_prior = DatumGetFloat8(SPI_getbinval(tup, desc, 20, &isnull));
	BanditCheckSettings(&cfg);

	ret = SPI_execute("SELECT interaction_type, reward FROM icpml.reward_map"
					  " ORDER BY interaction_type", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading icpml.reward_map failed: %s", SPI_result_code_string(ret));
	oldcxt = MemoryContextSwitchTo(bandit_cxt);
	cfg.n_rewards = (int) SPI_processed;
	cfg.reward_types = palloc(sizeof(char *) * Max(cfg.n_rewards, 1));
	cfg.rewards = palloc(sizeof(double) * Max(cfg.n_rewards, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		cfg.reward_types[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		cfg.rewards[i] = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[i],
													  SPI_tuptable->tupdesc, 2, &isnull));
		if (!(fabs(cfg.rewards[i]) <= BANDIT_MAX_ABS_REWARD))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("icpml.reward_map gives interaction type \"%s\" the reward %g, outside [-%g, %g]",
							cfg.reward_types[i], cfg.rewards[i], BANDIT_MAX_ABS_REWARD, BANDIT_MAX_ABS_REWARD),
					 errhint("Rewards are small numbers, typically between 0 and 1.")));
	}
	MemoryContextSwitchTo(oldcxt);

	cfg.has_experiments = cfg_has_experiments;
	if (cfg.has_experiments)
	{
		ret = SPI_execute("SELECT name, variants, weights FROM icpml.experiments"
						  " WHERE status OPERATOR(pg_catalog.=) 'running'", true, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "reading icpml.experiments failed: %s", SPI_result_code_string(ret));
	}
	if (cfg.has_experiments && SPI_processed == 1)
	{
		HeapTuple	etup = SPI_tuptable->vals[0];
		TupleDesc	edesc = SPI_tuptable->tupdesc;
		ArrayType  *warr;
		Datum	   *welems;
		bool	   *wnulls;
		int			nw;

		oldcxt = MemoryContextSwitchTo(bandit_cxt);
		cfg.experiment = SPI_getvalue(etup, edesc, 1);
		cfg.n_variants = BanditTextArray(SPI_getbinval(etup, edesc, 2, &isnull), &cfg.variants);
		warr = DatumGetArrayTypeP(SPI_getbinval(etup, edesc, 3, &isnull));
		deconstruct_array(warr, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
						  &welems, &wnulls, &nw);
		if (nw != cfg.n_variants)
			elog(ERROR, "experiment \"%s\" has %d variants and %d weights (please report a bug)",
				 cfg.experiment, cfg.n_variants, nw);
		cfg.variant_weights = palloc(sizeof(double) * nw);
		cfg.variant_policies = palloc(sizeof(BanditPolicy) * nw);
		for (i = 0; i < (uint64) nw; i++)
		{
			cfg.variant_weights[i] = DatumGetFloat8(welems[i]);
			if (!BanditPolicyFromName(cfg.variants[i], &cfg.variant_policies[i]))
				elog(ERROR, "unknown policy \"%s\" in experiment \"%s\" (please report a bug)",
					 cfg.variants[i], cfg.experiment);
		}
		MemoryContextSwitchTo(oldcxt);
	}

	CatalogRestoreUser(&owner);

	bandit_settings = cfg;
}

/* The current settings (inside SPI_connect; see CatalogLoadFresh). */
const BanditSettings *
BanditGetSettings(void)
{
	while (!bandit_settings_valid)
		bandit_settings_valid = CatalogLoadFresh(BanditLoadSettings);
	return &bandit_settings;
}

/* Reward of an interaction type; false when reward_map does not list it. */
bool
BanditReward(const BanditSettings *cfg, const char *type, double *reward)
{
	int			i;

	for (i = 0; i < cfg->n_rewards; i++)
		if (strcmp(cfg->reward_types[i], type) == 0)
		{
			*reward = cfg->rewards[i];
			return true;
		}
	return false;
}

/* Lower Cholesky factor of a symmetric positive definite A; false if not SPD. */
bool
BanditCholesky(const double *A, double *L, int d)
{
	int			i,
				j,
				k;

	memset(L, 0, sizeof(double) * d * d);
	for (j = 0; j < d; j++)
	{
		double		s = A[j * d + j];

		for (k = 0; k < j; k++)
			s -= L[j * d + k] * L[j * d + k];
		if (!(s > 0.0) || !isfinite(s))
			return false;
		L[j * d + j] = sqrt(s);
		for (i = j + 1; i < d; i++)
		{
			double		t = A[i * d + j];

			for (k = 0; k < j; k++)
				t -= L[i * d + k] * L[j * d + k];
			L[i * d + j] = t / L[j * d + j];
		}
	}
	return true;
}

/* Rank-1 update in place: L L' <- L L' + x x'. */
void
BanditCholUpdate(double *L, const double *x, int d)
{
	double		w[BANDIT_MAX_DIM];
	int			i,
				k;

	memcpy(w, x, sizeof(double) * d);
	for (k = 0; k < d; k++)
	{
		double		lkk = L[k * d + k];
		double		r = sqrt(lkk * lkk + w[k] * w[k]);
		double		c = r / lkk;
		double		s = w[k] / lkk;

		L[k * d + k] = r;
		for (i = k + 1; i < d; i++)
		{
			L[i * d + k] = (L[i * d + k] + s * w[i]) / c;
			w[i] = c * w[i] - s * L[i * d + k];
		}
	}
}

/* Solve L out = rhs (forward substitution). */
void
BanditForwardSolve(const double *L, const double *rhs, double *out, int d)
{
	int			i,
				k;

	for (i = 0; i < d; i++)
	{
		double		s = rhs[i];

		for (k = 0; k < i; k++)
			s -= L[i * d + k] * out[k];
		out[i] = s / L[i * d + i];
	}
}

/* Solve L' out = rhs (back substitution). */
void
BanditBackSolve(const double *L, const double *rhs, double *out, int d)
{
	int			i,
				k;

	for (i = d - 1; i >= 0; i--)
	{
		double		s = rhs[i];

		for (k = i + 1; k < d; k++)
			s -= L[k * d + i] * out[k];
		out[i] = s / L[i * d + i];
	}
}

/* Solve A out = rhs with A = L L'. */
void
BanditSolve(const double *L, const double *rhs, double *out, int d)
{
	double		z[BANDIT_MAX_DIM];

	BanditForwardSolve(L, rhs, z, d);
	BanditBackSolve(L, z, out, d);
}

/*
 * A^-1 = L^-T L^-1 from the Cholesky factor (d x d, row-major), added to
 * out with weight w: for serving, where every candidate's x' A^-1 x then
 * costs only the products of its non-zero entries.
 */
void
BanditAddInverse(const double *L, int d, double w, double *out)
{
	double		linv[BANDIT_MAX_DIM * BANDIT_MAX_DIM];
	int			i,
				j,
				k;

	/* column j of L^-1 by forward substitution (zero above the diagonal) */
	memset(linv, 0, sizeof(double) * d * d);
	for (j = 0; j < d; j++)
	{
		linv[j * d + j] = 1.0 / L[j * d + j];
		for (i = j + 1; i < d; i++)
		{
			double		s = 0.0;

			for (k = j; k < i; k++)
				s += L[i * d + k] * linv[k * d + j];
			linv[i * d + j] = -s / L[i * d + i];
		}
	}
	/* (L^-T L^-1)_ij = sum over r >= max(i, j) of linv_ri linv_rj */
	for (i = 0; i < d; i++)
		for (j = 0; j <= i; j++)
		{
			double		s = 0.0;

			for (k = i; k < d; k++)
				s += linv[k * d + i] * linv[k * d + j];
			out[i * d + j] += w * s;
			if (j != i)
				out[j * d + i] += w * s;
		}
}

/*
 * n independent standard normal draws into out (Marsaglia's polar method:
 * two draws per accepted point of the unit disc, no trigonometry).
 */
void
BanditNormals(pg_prng_state *rng, double *out, int n)
{
	int			i = 0;

	while (i < n)
	{
		double		u = 2.0 * pg_prng_double(rng) - 1.0;
		double		v = 2.0 * pg_prng_double(rng) - 1.0;
		double		s = u * u + v * v;
		double		f;

		if (s >= 1.0 || s == 0.0)
			continue;
		f = sqrt(-2.0 * log(s) / s);
		out[i++] = u * f;
		if (i < n)
			out[i++] = v * f;
	}
}

/* "user:<uuid>" for a user id. */
void
BanditUserScope(const pg_uuid_t *user, char *scope)
{
	static const char hex[] = "0123456789abcdef";
	char	   *p;
	int			i;

	strcpy(scope, "user:");
	p = scope + 5;
	for (i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[user->data[i] >> 4];
		*p++ = hex[user->data[i] & 0x0F];
	}
	*p = '\0';
}

/* Allocate the arrays of a state (current memory context). */
static void
BanditStateAlloc(BanditState *s, const char *scope, int d)
{
	memset(s, 0, sizeof(*s));
	strlcpy(s->scope, scope, sizeof(s->scope));
	s->d = d;
	s->A = palloc0(sizeof(double) * d * d);
	s->b = palloc0(sizeof(double) * d);
	s->L = palloc0(sizeof(double) * d * d);
}

/*
 * A fresh state at the prior: A = lambda I, L = sqrt(lambda) I, and b = 0,
 * except for the global state, whose prior mean theta_0 = icp_prior on the
 * ICP probability (b = lambda theta_0): before any feedback the expected
 * reward follows the ICP score.  A user's prior is centred on the global
 * model instead (see recommend.c), so its b starts at 0.
 */
void
BanditStateInitPrior(BanditState *s, const char *scope, int d, const BanditSettings *cfg)
{
	int			i;
	double		lambda = BanditPriorLambda(cfg, scope);

	BanditStateAlloc(s, scope, d);
	for (i = 0; i < d; i++)
	{
		s->A[i * d + i] = lambda;
		s->L[i * d + i] = sqrt(lambda);
	}
	if (strcmp(scope, "global") == 0 && d > CTX_ICP)
		s->b[CTX_ICP] = cfg->lambda * cfg->icp_prior;
}

/*
 * Examination probability of list position `rank` (1-based) under the
 * position-based model: (1 / log2(rank + 1)) ^ position_bias (1 at rank 1;
 * position_bias = 0 turns the correction off).
 */
double
BanditExamination(const BanditSettings *cfg, int rank)
{
	if (cfg->position_bias <= 0.0 || rank <= 1)
		return 1.0;
	return pow(1.0 / log2((double) rank + 1.0), cfg->position_bias);
}

/*
 * Ridge strength of a state's prior: lambda for the shared model,
 * personalization_prior for a user's (how strongly the user's weights are
 * pulled towards the shared model's).
 */
double
BanditPriorLambda(const BanditSettings *cfg, const char *scope)
{
	return strcmp(scope, "global") == 0 ? cfg->lambda : cfg->personalization_prior;
}

/* One observation (x, r): update A, b, n and the Cholesky factor. */
void
BanditStateUpdate(BanditState *s, const double *x, double r, const BanditSettings *cfg)
{
	int			d = s->d;
	int			i,
				j;
	bool		refactor;

	if (cfg->gamma < 1.0)
	{
		double		keep = (1.0 - cfg->gamma) * BanditPriorLambda(cfg, s->scope);

		for (i = 0; i < d * d; i++)
			s->A[i] *= cfg->gamma;
		for (i = 0; i < d; i++)
		{
			s->A[i * d + i] += keep;
			s->b[i] *= cfg->gamma;
		}
	}
	for (i = 0; i < d; i++)
	{
		for (j = 0; j < d; j++)
			s->A[i * d + j] += x[i] * x[j];
		s->b[i] += r * x[i];
	}
	s->n++;

	refactor = cfg->gamma < 1.0 || ++s->updates_since_refactor >= cfg->refactor_every;
	if (refactor)
	{
		if (!BanditCholesky(s->A, s->L, d))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("bandit state \"%s\" is not positive definite", s->scope),
					 errhint("Run SELECT icpml.rebuild_bandit_state() to recompute it from the log.")));
		s->updates_since_refactor = 0;
	}
	else
		BanditCholUpdate(s->L, x, d);
	s->dirty = true;
}

/* Copy a float8[] of exactly n elements into out; ERROR otherwise. */
static void
BanditReadArray(Datum d, double *out, int n, const char *scope, const char *what)
{
	ArrayType  *arr = DatumGetArrayTypeP(d);
	int			i;

	if (ARR_ELEMTYPE(arr) != FLOAT8OID || ARR_HASNULL(arr) ||
		ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr)) != n)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("column %s of bandit state \"%s\" does not hold %d numbers", what, scope, n),
				 errhint("Run SELECT icpml.rebuild_bandit_state() to recompute the state from the log.")));
	memcpy(out, ARR_DATA_PTR(arr), sizeof(double) * n);
	/* NaN or infinity here would be served and logged as NaN scores */
	for (i = 0; i < n; i++)
		if (!isfinite(out[i]))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("column %s of bandit state \"%s\" holds a non-finite number", what, scope),
					 errhint("Run SELECT icpml.rebuild_bandit_state() to recompute the state from the log.")));
}

/* A float8[] datum of n elements, 2-D (rows x rows) when square. */
static Datum
BanditMakeArray(const double *v, int rows, bool square)
{
	int			n = square ? rows * rows : rows;
	Datum	   *elems = palloc(sizeof(Datum) * n);
	int			dims[2] = {rows, rows};
	int			lbs[2] = {1, 1};
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = Float8GetDatum(v[i]);
	return PointerGetDatum(construct_md_array(elems, NULL, square ? 2 : 1, dims, lbs,
											  FLOAT8OID, sizeof(float8),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* Prepare a plan (with SPI cursor options, 0 for none) and keep it. */
SPIPlanPtr
BanditKeepPlan(const char *sql, int nargs, Oid *argtypes, int cursor_options)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, cursor_options);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/*
 * Quoted, schema-qualified name of icpml.interactions_relation (resolved
 * with the caller's search_path), after checking that it exists and has
 * the columns the recommender reads; ERROR with a hint otherwise.
 */
char *
BanditInteractionsRelation(void)
{
	static const char *const needed[] = {
		"interaction_id", "user_id", "account_id", "interaction_type", "created_at"
	};
	Oid			relid;
	char	   *display;
	int			i;

	relid = RelationResolve(icpml_interactions_relation, "interactions",
							"icpml.interactions_relation",
							"Set icpml.interactions_relation to the table of user interactions, e.g. public.user_interactions.",
							&display);
	for (i = 0; i < lengthof(needed); i++)
		if (get_attnum(relid, needed[i]) == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" does not exist in interactions relation %s", needed[i], display),
					 errhint("The interactions relation needs interaction_id, user_id (uuid), account_id, interaction_type and created_at; expose them in a view.")));
	return display;
}

/* Read (and optionally lock) a state row; false when there is none. */
bool
BanditStateLoad(BanditState *s, const char *scope, bool for_update, bool with_a,
				const BanditSettings *cfg)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	int			ret;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	int			d;
	SPIPlanPtr	plan;

	if (plan_load == NULL)
		plan_load = CatalogKeepPlan("SELECT dim, a, b, chol, n, updates_since_refactor, version"
								   " FROM icpml.bandit_state WHERE scope OPERATOR(pg_catalog.=) $1", 1, argtypes, 0);
	if (plan_load_lock == NULL)
		plan_load_lock = CatalogKeepPlan("SELECT dim, a, b, chol, n, updates_since_refactor, version"
									    " FROM icpml.bandit_state WHERE scope OPERATOR(pg_catalog.=) $1 FOR UPDATE",
									    1, argtypes, 0);
	plan = for_update ? plan_load_lock : plan_load;
	args[0] = CStringGetTextDatum(scope);

	ret = SPI_execute_plan(plan, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading icpml.bandit_state failed: %s", SPI_result_code_string(ret));

	if (SPI_processed == 0 && for_update && strcmp(scope, "global") == 0)
	{
		/* create the global row at the prior so that it can be locked */
		Oid			itypes[5] = {TEXTOID, INT4OID, FLOAT8ARRAYOID, FLOAT8ARRAYOID, FLOAT8ARRAYOID};
		Datum		iargs[5];
		BanditState prior;

		if (plan_insert_prior == NULL)
			plan_insert_prior = CatalogKeepPlan("INSERT INTO icpml.bandit_state"
											   " (scope, dim, a, b, chol, version)"
											   " VALUES ($1, $2, $3, $4, $5,"
											   " pg_catalog.nextval('icpml.bandit_state_version_seq'))"
											   " ON CONFLICT (scope) DO NOTHING", 5, itypes, 0);
		BanditStateInitPrior(&prior, scope, BANDIT_DIM, cfg);
		iargs[0] = args[0];
		iargs[1] = Int32GetDatum(BANDIT_DIM);
		iargs[2] = BanditMakeArray(prior.A, BANDIT_DIM, true);
		iargs[3] = BanditMakeArray(prior.b, BANDIT_DIM, false);
		iargs[4] = BanditMakeArray(prior.L, BANDIT_DIM, true);
		ret = SPI_execute_plan(plan_insert_prior, iargs, NULL, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "creating the global bandit state failed: %s", SPI_result_code_string(ret));
		ret = SPI_execute_plan(plan, args, NULL, false, 1);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "locking the global bandit state failed (please report a bug)");
	}

	if (SPI_processed == 0)
	{
		BanditStateInitPrior(s, scope, BANDIT_DIM, cfg);
		return false;
	}

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	d = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	if (d != BANDIT_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("bandit state \"%s\" has dimension %d, this version of icpml uses %d",
						scope, d, BANDIT_DIM),
				 errhint("Run SELECT icpml.rebuild_bandit_state() after the upgrade.")));
	BanditStateAlloc(s, scope, d);
	if (with_a)
		BanditReadArray(SPI_getbinval(tup, desc, 2, &isnull), s->A, d * d, scope, "a");
	BanditReadArray(SPI_getbinval(tup, desc, 3, &isnull), s->b, d, scope, "b");
	BanditReadArray(SPI_getbinval(tup, desc, 4, &isnull), s->L, d * d, scope, "chol");
	s->n = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
	s->updates_since_refactor = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
	s->version = DatumGetInt64(SPI_getbinval(tup, desc, 7, &isnull));
	s->exists = true;
	return true;
}

/* Write a state row (insert or update); takes a new version. */
void
BanditStateStore(BanditState *s)
{
	Oid			argtypes[7] = {TEXTOID, INT4OID, FLOAT8ARRAYOID, FLOAT8ARRAYOID,
	FLOAT8ARRAYOID, INT8OID, INT4OID};
	Datum		args[7];
	int			ret;
	bool		isnull;

	if (plan_store == NULL)
		plan_store = CatalogKeepPlan("INSERT INTO icpml.bandit_state AS s"
								    " (scope, dim, a, b, chol, n, updates_since_refactor, version, updated_at)"
								    " VALUES ($1, $2, $3, $4, $5, $6, $7,"
								    " pg_catalog.nextval('icpml.bandit_state_version_seq'), pg_catalog.now())"
								    " ON CONFLICT (scope) DO UPDATE SET dim = excluded.dim, a = excluded.a,"
								    " b = excluded.b, chol = excluded.chol, n = excluded.n,"
								    " updates_since_refactor = excluded.updates_since_refactor,"
								    " version = excluded.version, updated_at = excluded.updated_at"
								    " RETURNING version", 7, argtypes, 0);
	args[0] = CStringGetTextDatum(s->scope);
	args[1] = Int32GetDatum(s->d);
	args[2] = BanditMakeArray(s->A, s->d, true);
	args[3] = BanditMakeArray(s->b, s->d, false);
	args[4] = BanditMakeArray(s->L, s->d, true);
	args[5] = Int64GetDatum(s->n);
	args[6] = Int32GetDatum(s->updates_since_refactor);
	ret = SPI_execute_plan(plan_store, args, NULL, false, 1);
	if (ret != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "writing icpml.bandit_state failed: %s", SPI_result_code_string(ret));
	s->version = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	s->exists = true;
	s->dirty = false;
}
