/*
 * bandit_settings.c — the recommender's settings: icpml.bandit_settings,
 * icpml.reward_map, the running experiment (icpml.experiments), and the
 * policies' SQL names.
 *
 * The settings are read as the extension owner and cached per backend
 * until a write to any of these tables commits (relcache invalidation, see
 * catalog.c); the loader runs with the latest snapshot (CatalogLoadFresh).
 * A library newer than the installed SQL (0.2.0 objects: no experiments
 * table) reads no experiment.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "bandit.h"
#include "catalog.h"
#include "icpml.h"
#include "model_store.h"

/* SQL names of the policies, in BanditPolicy order. */
static const char *const BanditPolicyNames[BANDIT_NPOLICIES] = {
	"linucb", "thompson", "greedy", "epsilon_greedy", "icp", "random"
};

static BanditSettings bandit_settings;
static bool bandit_settings_valid = false;
static MemoryContext bandit_cxt = NULL;

/* Parse a policy name; false when unknown. */
bool
BanditPolicyFromName(const char *name, BanditPolicy *out)
{
	int			i;

	for (i = 0; i < lengthof(BanditPolicyNames); i++)
		if (strcmp(name, BanditPolicyNames[i]) == 0)
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
	return BanditPolicyNames[policy];
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
	BanditCheckRange("reward_cap", cfg->reward_cap, nextafter(0.0, 1.0), BANDIT_MAX_ABS_REWARD);
	BanditCheckRange("affinity_share", cfg->affinity_share, 0.0, 1.0);
	BanditCheckRange("fresh_share", cfg->fresh_share, 0.0, 1.0);
	BanditCheckRange("explore_share", cfg->explore_share, 0.0, 1.0);
	BanditCheckRange("affinity_share + fresh_share + explore_share",
					 cfg->affinity_share + cfg->fresh_share + cfg->explore_share, 0.0, 1.0);
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
	bool		cfg_has_feedback_log;
	bool		has_sources;
	int32		deployed = 0;

	CatalogRegisterInvalidation(BanditInvalidate);
	has_sources = get_attnum(CatalogRelid("bandit_settings"), "affinity_share") != InvalidAttrNumber;
	(void) CatalogRelid("reward_map");
	cfg_has_experiments = OidIsValid(CatalogRelidIfExists("experiments"));
	cfg_has_feedback_log = OidIsValid(CatalogRelidIfExists("feedback_events"));

	if (bandit_cxt == NULL)
		bandit_cxt = AllocSetContextCreate(TopMemoryContext, "icpml bandit settings",
										   ALLOCSET_SMALL_SIZES);
	MemoryContextReset(bandit_cxt);
	memset(&cfg, 0, sizeof(cfg));

	CatalogSwitchToOwner(&owner);

	/* the retrieval sources' settings (0.4.0 SQL; before: the icp source alone) */
	ret = SPI_execute(psprintf("SELECT default_policy, alpha, v, epsilon, lambda, candidates,"
							   " reward_window, gamma, refactor_every, personalization,"
							   " personalization_weight, exclude_dismissed, exclude_worked_types,"
							   " history_limit, icp_prior, fatigue_decay, position_bias,"
							   " coalesce(industries, '{}'), coalesce(technologies, '{}'), personalization_prior, %s"
							   " FROM icpml.bandit_settings",
							   has_sources ? "affinity_share, fresh_share, explore_share, fresh_window, exclude_recent,"
							   " exploit_slots, warm_start" :
							   "0::pg_catalog.float8, 0::pg_catalog.float8, 0::pg_catalog.float8,"
							   " '0'::pg_catalog.interval, '0'::pg_catalog.interval, 0, 0"), true, 0);
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
	cfg.n_industries = Min(cfg.n_industries, BANDIT_MAX_INDUSTRIES);
	cfg.n_technologies = Min(cfg.n_technologies, BANDIT_MAX_TECHNOLOGIES);
	for (i = 0; i < (uint64) cfg.n_technologies; i++)
		cfg.technology_lengths[i] = strlen(cfg.technologies[i]);
	cfg.personalization_prior = DatumGetFloat8(SPI_getbinval(tup, desc, 20, &isnull));
	cfg.affinity_share = DatumGetFloat8(SPI_getbinval(tup, desc, 21, &isnull));
	cfg.fresh_share = DatumGetFloat8(SPI_getbinval(tup, desc, 22, &isnull));
	cfg.explore_share = DatumGetFloat8(SPI_getbinval(tup, desc, 23, &isnull));
	cfg.fresh_window = *DatumGetIntervalP(SPI_getbinval(tup, desc, 24, &isnull));
	cfg.exclude_recent = *DatumGetIntervalP(SPI_getbinval(tup, desc, 25, &isnull));
	cfg.exploit_slots = DatumGetInt32(SPI_getbinval(tup, desc, 26, &isnull));
	cfg.warm_start = DatumGetInt32(SPI_getbinval(tup, desc, 27, &isnull));

	/* feedback settings; 0.3.0's objects have none: its behaviour */
	cfg.has_feedback_log = cfg_has_feedback_log;
	cfg.reward_aggregate = REWARD_FIRST;
	cfg.reward_cap = 1.0;
	cfg.queue_updates = false;
	cfg.attribution_wait_ms = 0;
	cfg.funnel_attribution = false;
	if (cfg.has_feedback_log)
	{
		char	   *aggregate;
		Interval   *wait;

		ret = SPI_execute("SELECT reward_aggregate, reward_cap, state_updates, attribution_wait,"
						  " attribution OPERATOR(pg_catalog.=) 'funnel' FROM icpml.bandit_settings", true, 0);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "reading icpml.bandit_settings failed (please report a bug)");
		tup = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		aggregate = SPI_getvalue(tup, desc, 1);
		if (strcmp(aggregate, "max") == 0)
			cfg.reward_aggregate = REWARD_MAX;
		else if (strcmp(aggregate, "sum") == 0)
			cfg.reward_aggregate = REWARD_SUM;
		else if (strcmp(aggregate, "first") == 0)
			cfg.reward_aggregate = REWARD_FIRST;
		else
			elog(ERROR, "unknown reward_aggregate \"%s\" in icpml.bandit_settings (please report a bug)",
				 aggregate);
		cfg.reward_cap = DatumGetFloat8(SPI_getbinval(tup, desc, 2, &isnull));
		cfg.queue_updates = strcmp(SPI_getvalue(tup, desc, 3), "queued") == 0;
		wait = DatumGetIntervalP(SPI_getbinval(tup, desc, 4, &isnull));
		/* at most a minute (CHECK): no overflow */
		cfg.attribution_wait_ms = (int) Max(0, Min(60000,
												   (wait->time + (int64) wait->day * USECS_PER_DAY +
													(int64) wait->month * 30 * USECS_PER_DAY) / 1000));
		cfg.funnel_attribution = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
	}
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
		/* labels with policies, separate states, holdout, model versions: 0.4.0 SQL */
		bool		labels = get_attnum(CatalogRelid("experiments"), "policies") != InvalidAttrNumber;

		/*
		 * The deployed version, which a variant's model version is compared
		 * with (a deploy invalidates these settings too: models' trigger).
		 * Read first: a query switches back to SPI's context.
		 */
		if (labels)
			deployed = ModelStoreDeployedVersion();

		ret = SPI_execute(labels ?
						  "SELECT name, variants, weights, policies, separate_state, holdout,"
						  " holdout_policy, model_versions FROM icpml.experiments"
						  " WHERE status OPERATOR(pg_catalog.=) 'running'" :
						  "SELECT name, variants, weights, variants, false, 0::pg_catalog.float8,"
						  " 'icp'::pg_catalog.text, NULL::pg_catalog.int4[] FROM icpml.experiments"
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
		int			nw,
					np;
		char	  **policies;
		bool		separate;
		char	   *holdout_policy;
		Datum	   *velems = NULL;
		bool	   *vnulls = NULL;
		int			nv = 0;

		oldcxt = MemoryContextSwitchTo(bandit_cxt);
		cfg.experiment = SPI_getvalue(etup, edesc, 1);
		cfg.n_variants = BanditTextArray(SPI_getbinval(etup, edesc, 2, &isnull), &cfg.variants);
		warr = DatumGetArrayTypeP(SPI_getbinval(etup, edesc, 3, &isnull));
		deconstruct_array(warr, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
						  &welems, &wnulls, &nw);
		if (nw != cfg.n_variants)
			elog(ERROR, "experiment \"%s\" has %d variants and %d weights (please report a bug)",
				 cfg.experiment, cfg.n_variants, nw);
		np = BanditTextArray(SPI_getbinval(etup, edesc, 4, &isnull), &policies);
		if (np != cfg.n_variants)
			elog(ERROR, "experiment \"%s\" has %d variants and %d policies (please report a bug)",
				 cfg.experiment, cfg.n_variants, np);
		separate = DatumGetBool(SPI_getbinval(etup, edesc, 5, &isnull));
		cfg.holdout = DatumGetFloat8(SPI_getbinval(etup, edesc, 6, &isnull));
		holdout_policy = SPI_getvalue(etup, edesc, 7);
		if (!(cfg.holdout >= 0.0 && cfg.holdout < 1.0) ||
			!BanditPolicyFromName(holdout_policy, &cfg.holdout_policy))
			elog(ERROR, "experiment \"%s\" has an invalid holdout (please report a bug)",
				 cfg.experiment);
		if (!heap_attisnull(etup, 8, edesc))
		{
			deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(etup, edesc, 8, &isnull)),
							  INT4OID, 4, true, TYPALIGN_INT, &velems, &vnulls, &nv);
			if (nv != nw)
				elog(ERROR, "experiment \"%s\" has %d variants and %d model versions (please report a bug)",
					 cfg.experiment, nw, nv);
		}
		cfg.variant_weights = palloc(sizeof(double) * nw);
		cfg.variant_policies = palloc(sizeof(BanditPolicy) * nw);
		cfg.variant_scopes = palloc(sizeof(char *) * nw);
		cfg.variant_versions = palloc0(sizeof(int32) * nw);
		for (i = 0; i < (uint64) nw; i++)
		{
			cfg.variant_weights[i] = DatumGetFloat8(welems[i]);
			if (!BanditPolicyFromName(policies[i], &cfg.variant_policies[i]))
				elog(ERROR, "unknown policy \"%s\" in experiment \"%s\" (please report a bug)",
					 policies[i], cfg.experiment);
			cfg.variant_scopes[i] = separate ?
				psprintf("variant:%s/%s", cfg.experiment, cfg.variants[i]) : "global";
			if (strlen(cfg.variant_scopes[i]) >= BANDIT_SCOPE_LEN)
				elog(ERROR, "the state scope of variant \"%s\" is too long (please report a bug)",
					 cfg.variants[i]);
			if (velems != NULL && !vnulls[i] && DatumGetInt32(velems[i]) != deployed)
				cfg.variant_versions[i] = DatumGetInt32(velems[i]);
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
