/*
 * rules.c — the rule-based baseline ICP score.
 *
 * A logistic model with documented, configurable weights over the seed
 * plan's signals.  Each factor maps its raw input to [0, 1]; the logit is
 * the bias plus the weighted factors, the probability its sigmoid, and the
 * score 1 + floor(10p).  Missing inputs (NULL, NaN, +-Infinity, negative
 * counts) contribute 0: the rules neither reward nor punish what is unknown.
 *
 * Weights come from icpml.rule_weights and the rest from icpml.rule_settings,
 * read as the extension owner and cached per backend until a write to either
 * table commits (relcache invalidation, see catalog.c).
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/formatting.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "factors.h"
#include "icpml.h"
#include "rules.h"
#include "signals.h"

/* every one optional: a relation without it gives its factors no contribution */
const RelationColumn RulesColumns[RULE_NCOLUMNS] = {
	{"engineering_role_count", FLOAT8OID, true},
	{"has_open_engineering_roles", BOOLOID, true},
	{"total_open_roles", FLOAT8OID, true},
	{"has_engineering_blog", BOOLOID, true},
	{"company_size", FLOAT8OID, true},
	{"funding_amount_usd", FLOAT8OID, true},
	{"funding_date", DATEOID, true},
	{"tech_stack", TEXTARRAYOID, true},
};

static const char *const RulesFactorNames[RULE_NFACTORS] = {
	"engineering_roles",
	"open_engineering_roles",
	"total_open_roles",
	"engineering_blog",
	"company_size_fit",
	"recent_funding",
	"funding_amount",
	"tech_stack_alignment",
};

/* Which RulesColumns entry feeds each factor (for the "value" in factors). */
static const int RulesFactorColumn[RULE_NFACTORS] = {0, 1, 2, 3, 4, 6, 5, 7};

typedef struct RulesConfig
{
	bool		valid;
	double		bias;
	double		weight[RULE_NFACTORS];
	SignalScaling scaling;		/* the rest of icpml.rule_settings */
	int			high_min_score;
	int			medium_min_score;
} RulesConfig;

static RulesConfig rules_config;
static MemoryContext rules_cxt = NULL;
static RelationReader rules_reader = {RulesColumns, RULE_NCOLUMNS,
	"The rule-based score gives the factors that read them no contribution; explain_icp_score lists them as unavailable."
};

/* Invalidation hook: reload the configuration on next use. */
static void
RulesInvalidate(void)
{
	rules_config.valid = false;
}

/* Load icpml.rule_weights and icpml.rule_settings (inside SPI_connect). */
static void
RulesLoadConfig(void)
{
	CatalogOwnerState owner;
	int			ret;
	uint64		i;
	RulesConfig cfg;
	MemoryContext oldcxt;

	CatalogRegisterInvalidation(RulesInvalidate);
	(void) CatalogRelid("rule_weights");
	(void) CatalogRelid("rule_settings");

	if (rules_cxt == NULL)
		rules_cxt = AllocSetContextCreate(TopMemoryContext, "icpml rules",
										  ALLOCSET_SMALL_SIZES);
	MemoryContextReset(rules_cxt);
	memset(&cfg, 0, sizeof(cfg));

	CatalogSwitchToOwner(&owner);

	ret = SPI_execute("SELECT factor, weight FROM icpml.rule_weights", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading icpml.rule_weights failed: %s", SPI_result_code_string(ret));
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *factor = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		bool		isnull;
		double		w = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[i],
													 SPI_tuptable->tupdesc, 2, &isnull));
		int			f;

		if (strcmp(factor, "bias") == 0)
		{
			cfg.bias = w;
			continue;
		}
		for (f = 0; f < RULE_NFACTORS; f++)
			if (strcmp(factor, RulesFactorNames[f]) == 0)
				cfg.weight[f] = w;
	}

	ret = SPI_execute("SELECT target_stack, size_min, size_max, funding_window_days,"
					  " engineering_roles_cap, open_roles_cap, high_min_score, medium_min_score"
					  " FROM icpml.rule_settings", true, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("icpml.rule_settings must hold exactly one row"),
				 errhint("Restore it with: INSERT INTO icpml.rule_settings DEFAULT VALUES.")));
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		stack = SPI_getbinval(tup, desc, 1, &isnull);

		oldcxt = MemoryContextSwitchTo(rules_cxt);
		if (!isnull)
		{
			Datum	   *elems;
			bool	   *enulls;
			int			n,
						j;

			deconstruct_array(DatumGetArrayTypeP(stack), TEXTOID, -1, false,
							  TYPALIGN_INT, &elems, &enulls, &n);
			cfg.scaling.target_stack = palloc(sizeof(char *) * Max(n, 1));
			for (j = 0; j < n; j++)
				if (!enulls[j])
					cfg.scaling.target_stack[cfg.scaling.n_target_stack++] =
						str_tolower(TextDatumGetCString(elems[j]),
									VARSIZE_ANY_EXHDR(elems[j]), DEFAULT_COLLATION_OID);
		}
		MemoryContextSwitchTo(oldcxt);
		cfg.scaling.size_min = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		cfg.scaling.size_max = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		cfg.scaling.funding_window_days = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		cfg.scaling.roles_cap = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
		cfg.scaling.open_roles_cap = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
		cfg.high_min_score = DatumGetInt32(SPI_getbinval(tup, desc, 7, &isnull));
		cfg.medium_min_score = DatumGetInt32(SPI_getbinval(tup, desc, 8, &isnull));
	}

	CatalogRestoreUser(&owner);

	cfg.valid = true;
	rules_config = cfg;
}

/* The rules' reader; loads the configuration too (inside SPI_connect). */
RelationReader *
RulesReader(void)
{
	while (!rules_config.valid)
		rules_config.valid = CatalogLoadFresh(RulesLoadConfig);
	return &rules_reader;
}

/*
 * The scaling of the signals (icpml.rule_settings), for the recommender's
 * context (inside SPI_connect; loads the configuration when needed).
 */
const SignalScaling *
RulesScaling(void)
{
	(void) RulesReader();
	return &rules_config.scaling;
}

/* The weights and tiers of the loaded configuration (inside SPI_connect). */
void
RulesGetWeights(RulesWeights *out)
{
	(void) RulesReader();
	out->bias = rules_config.bias;
	memcpy(out->weight, rules_config.weight, sizeof(out->weight));
	out->high_min_score = rules_config.high_min_score;
	out->medium_min_score = rules_config.medium_min_score;
}

/* A factor's name ("engineering_roles", ...). */
const char *
RulesFactorName(int factor)
{
	return RulesFactorNames[factor];
}

/* The RulesColumns entry a factor's "value" shows. */
int
RulesFactorInput(int factor)
{
	return RulesFactorColumn[factor];
}

/*
 * The rules' probability for one row (see rules.h).  Factor mappings (the
 * transforms are signals.c's, scaled by icpml.rule_settings):
 *   engineering_roles      log(1+n)/log(1+engineering_roles_cap), capped at 1
 *   open_engineering_roles 1 if true
 *   total_open_roles       log(1+n)/log(1+open_roles_cap), capped at 1
 *   engineering_blog       1 if true
 *   company_size_fit       1 inside [size_min, size_max]; size/size_min below;
 *                          1 - log10(size/size_max) above (0 at 10x)
 *   recent_funding         1 - age/funding_window_days for a round inside the window
 *   funding_amount         log10(1+usd)/8 (capped at 1), for a round inside the window
 *   tech_stack_alignment   share of target_stack found in tech_stack
 */
double
RulesProbability(Datum *values, bool *nulls, double *contrib)
{
	double		f[RULE_NFACTORS];
	bool		have[RULE_NFACTORS];
	double		v,
				logit;
	int			i;

	memset(have, 0, sizeof(have));

	if ((have[RULE_ENGINEERING_ROLES] = SignalCount(values[0], nulls[0], &v)))
		f[RULE_ENGINEERING_ROLES] = SignalLogScale(v, rules_config.scaling.roles_cap);
	if ((have[RULE_OPEN_ENGINEERING_ROLES] = !nulls[1]))
		f[RULE_OPEN_ENGINEERING_ROLES] = DatumGetBool(values[1]) ? 1.0 : 0.0;
	if ((have[RULE_TOTAL_OPEN_ROLES] = SignalCount(values[2], nulls[2], &v)))
		f[RULE_TOTAL_OPEN_ROLES] = SignalLogScale(v, rules_config.scaling.open_roles_cap);
	if ((have[RULE_ENGINEERING_BLOG] = !nulls[3]))
		f[RULE_ENGINEERING_BLOG] = DatumGetBool(values[3]) ? 1.0 : 0.0;
	if ((have[RULE_COMPANY_SIZE_FIT] = SignalCount(values[4], nulls[4], &v)))
		f[RULE_COMPANY_SIZE_FIT] = SignalSizeFit(&rules_config.scaling, v);
	if (!nulls[6] && !DATE_NOT_FINITE(DatumGetDateADT(values[6])))
	{
		DateADT		today = DatumGetDateADT(DirectFunctionCall1(timestamptz_date,
																TimestampTzGetDatum(GetCurrentTransactionStartTimestamp())));
		double		recency = SignalRecency((double) (today - DatumGetDateADT(values[6])),
											rules_config.scaling.funding_window_days);

		have[RULE_RECENT_FUNDING] = true;
		f[RULE_RECENT_FUNDING] = recency;
		if ((have[RULE_FUNDING_AMOUNT] = SignalCount(values[5], nulls[5], &v)))
			f[RULE_FUNDING_AMOUNT] = recency > 0 ? SignalFundingAmount(v) : 0.0;
	}
	if (!nulls[7])
		have[RULE_TECH_STACK_ALIGNMENT] = SignalStackAlignment(&rules_config.scaling, values[7],
															   &f[RULE_TECH_STACK_ALIGNMENT]);

	logit = rules_config.bias;
	for (i = 0; i < RULE_NFACTORS; i++)
	{
		double		c = have[i] ? rules_config.weight[i] * f[i] : 0.0;

		logit += c;
		if (contrib)
			contrib[i] = c;
	}
	return 1.0 / (1.0 + exp(-logit));
}

/* Append the raw input of RulesColumns[col] as a JSON value. */
static void
RulesAppendValue(StringInfo buf, Datum value, bool isnull, int col)
{
	Oid			type = RulesColumns[col].type;

	if (isnull)
		appendStringInfoString(buf, "null");
	else if (type == FLOAT8OID)
	{
		double		v = DatumGetFloat8(value);

		if (isnan(v) || isinf(v))
			appendStringInfoString(buf, "null");
		else
			appendStringInfo(buf, "%.15g", v);
	}
	else if (type == BOOLOID)
		appendStringInfoString(buf, DatumGetBool(value) ? "true" : "false");
	else if (type == DATEOID)
	{
		int			y,
					m,
					d;

		j2date(DatumGetDateADT(value) + POSTGRES_EPOCH_JDATE, &y, &m, &d);
		appendStringInfo(buf, "\"%04d-%02d-%02d\"", y, m, d);
	}
	else
	{
		Datum	   *elems;
		bool	   *enulls;
		int			n,
					i;

		deconstruct_array(DatumGetArrayTypeP(value), TEXTOID, -1, false,
						  TYPALIGN_INT, &elems, &enulls, &n);
		appendStringInfoChar(buf, '[');
		for (i = 0; i < n; i++)
		{
			if (i > 0)
				appendStringInfoChar(buf, ',');
			if (enulls[i])
				appendStringInfoString(buf, "null");
			else
				escape_json(buf, TextDatumGetCString(elems[i]));
		}
		appendStringInfoChar(buf, ']');
	}
}

/* Push the raw input of RulesColumns[col] into a factors jsonb (as RulesAppendValue renders it). */
static void
RulesPushValue(FactorsBuilder *fb, Datum value, bool isnull, int col)
{
	Oid			type = RulesColumns[col].type;

	if (isnull)
		FactorsValueNull(fb);
	else if (type == FLOAT8OID)
		FactorsValueNumber(fb, DatumGetFloat8(value), 15);
	else if (type == BOOLOID)
		FactorsValueBool(fb, DatumGetBool(value));
	else if (type == DATEOID)
	{
		int			y,
					m,
					d;

		j2date(DatumGetDateADT(value) + POSTGRES_EPOCH_JDATE, &y, &m, &d);
		FactorsValueString(fb, psprintf("%04d-%02d-%02d", y, m, d));
	}
	else
	{
		Datum	   *elems;
		bool	   *enulls;
		int			n;

		deconstruct_array(DatumGetArrayTypeP(value), TEXTOID, -1, false,
						  TYPALIGN_INT, &elems, &enulls, &n);
		FactorsValueTextArray(fb, elems, enulls, n);
	}
}

/* Score a feature tuple (key + RulesColumns) into *out. */
void
RulesScoreTuple(HeapTuple tuple, TupleDesc desc, IcpScore *out, bool factors)
{
	Datum		values[RULE_NCOLUMNS];
	bool		nulls[RULE_NCOLUMNS];
	double		contrib[RULE_NFACTORS];
	int			order[RULE_NFACTORS];
	int			i,
				n;
	FactorsBuilder fb;
	bool		isnull;

	out->account_id = DatumGetInt64(heap_getattr(tuple, 1, desc, &isnull));
	for (i = 0; i < RULE_NCOLUMNS; i++)
		values[i] = heap_getattr(tuple, i + 2, desc, &nulls[i]);

	out->found = true;
	out->probability = RulesProbability(values, nulls, contrib);
	out->score = IcpmlScoreFromProbability(out->probability);
	out->priority = out->score >= rules_config.high_min_score ? "high" :
		out->score >= rules_config.medium_min_score ? "medium" : "low";
	out->model = "rules";
	out->model_version = 0;
	out->factor_method = "rule_weights";
	out->factors = NULL;
	if (!factors)
		return;

	/* order the non-zero factors by |contribution|, largest first */
	for (i = 0, n = 0; i < RULE_NFACTORS; i++)
		if (contrib[i] != 0.0)
			order[n++] = i;
	IcpmlOrderByMagnitude(contrib, order, n);

	FactorsBegin(&fb);
	for (i = 0; i < Min(n, icpml_top_factors); i++)
	{
		int			fct = order[i];
		int			col = RulesFactorColumn[fct];

		FactorsItemBegin(&fb, RulesFactorNames[fct]);
		RulesPushValue(&fb, values[col], nulls[col], col);
		FactorsItemEnd(&fb, contrib[fct]);
	}
	out->factors = FactorsEnd(&fb);
}

/*
 * Whether a factor cannot be computed because the feature relation lacks
 * one of its columns (RulesColumns entries; funding_amount needs the date).
 * After the reader's plans are built.
 */
bool
RulesFactorUnavailable(int factor)
{
	int			col = RulesFactorColumn[factor];

	return rules_reader.missing[col] ||
		(factor == RULE_FUNDING_AMOUNT && rules_reader.missing[RulesFactorColumn[RULE_RECENT_FUNDING]]);
}

/* See rules.h; a missing input's value is NULL. */
double
RulesExplainTuple(HeapTuple tuple, TupleDesc desc, const char **names, char **values,
				  double *contrib)
{
	Datum		v[RULE_NCOLUMNS];
	bool		n[RULE_NCOLUMNS];
	int			i;

	for (i = 0; i < RULE_NCOLUMNS; i++)
		v[i] = heap_getattr(tuple, i + 2, desc, &n[i]);
	(void) RulesProbability(v, n, contrib);
	for (i = 0; i < RULE_NFACTORS; i++)
	{
		StringInfoData buf;
		int			col = RulesFactorColumn[i];

		initStringInfo(&buf);
		RulesAppendValue(&buf, v[col], n[col], col);
		names[i] = RulesFactorNames[i];
		values[i] = strcmp(buf.data, "null") == 0 ? NULL : buf.data;
	}
	return rules_config.bias;
}
