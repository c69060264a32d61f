/*
 * train.c — icpml.train_icp_model(): cross-validated XGBoost training of
 * the ICP model, stored as a new version through the model store.
 *
 * Phases:
 *   1. validate the arguments; take the training advisory lock (no wait)
 *   2. infer the feature spec (spec.c) over the labelled rows
 *   3. read key, label, features (and the rules' columns when the relation
 *      has them) through an SPI cursor, 10k rows per fetch, as the caller;
 *      rows are then put in key order, so nothing depends on scan order
 *   4. minimum data guard (50 labelled rows, 20 keys, both classes)
 *   5. stratified shuffled k-fold (TrainAssignFolds); per fold a booster
 *      trained one round at a time, interrupts checked between rounds;
 *      out-of-fold (OOF) predictions; metrics per fold for the model and
 *      for the rules on the same folds; optionally a 3x3 grid over
 *      max_depth x eta chosen by mean CV ROC AUC
 *   6. refit on every labelled row; UBJSON blob, feature importance, score
 *      cut-offs from isotonic regression of the label on the OOF
 *      probabilities
 *   7. ModelStoreInsert + ModelStoreApplyPolicy (model_store.c, as owner)
 *
 * Memory: everything lives in the "icpml training" context, a child of the
 * function's context; XGBoost handles belong to it (or to a per-fold child)
 * through reset callbacks, so an ERROR or a cancel anywhere frees them.
 *
 * metrics jsonb (read by the model store's SRFs):
 *   {"folds": k, "seed": s,
 *    "cv": {"model": {"roc_auc", "pr_auc", "log_loss", "brier",
 *                     "precision_at_10", "lift_at_10": mean over folds,
 *                     "roc_auc_folds": [per fold]},
 *           "rules": {same keys} | null},
 *    "roc": [{"threshold", "fpr", "tpr"}, ... at most 101 points, OOF],
 *    "calibration": [{"bin": 1..10, "mean_predicted", "observed_rate", "n"}]
 *                   (OOF, equal-width bins; empty bins have n 0 and nulls),
 *    "importance": [{"feature", "gain", "weight"}] by gain, descending,
 *    "search": [{"params": {"max_depth", "eta"}, "cv_roc_auc"}] | null}
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/md5.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "parser/parse_coerce.h"
#include "portability/instr_time.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "icpml.h"
#include "features.h"
#include "metrics.h"
#include "model.h"
#include "rules.h"
#include "spec.h"
#include "train.h"
#include "xgb.h"

PG_FUNCTION_INFO_V1(train_icp_model);
PG_FUNCTION_INFO_V1(cv_folds);
PG_FUNCTION_INFO_V1(binary_metrics);

#define TRAIN_FETCH_ROWS 10000
#define TRAIN_MAX_FOLDS 20
#define TRAIN_MAX_ROUNDS 10000
#define TRAIN_ROC_POINTS 101
#define TRAIN_RESULT_NATTS 13

/* The XGBoost parameters a caller may set, with their ranges. */
typedef struct TrainParamDef
{
	const char *name;
	bool		integer;
	double		min;
	bool		min_open;		/* value must be > min rather than >= */
	double		max;
} TrainParamDef;

static const TrainParamDef TrainParamDefs[] = {
	{"max_depth", true, 1, false, 32},
	{"eta", false, 0, true, 1},
	{"min_child_weight", false, 0, false, 1e9},
	{"subsample", false, 0, true, 1},
	{"colsample_bytree", false, 0, true, 1},
	{"lambda", false, 0, false, 1e9},
	{"alpha", false, 0, false, 1e9},
	{"gamma", false, 0, false, 1e9},
	{"max_bin", true, 2, false, 1024},
	{"scale_pos_weight", false, 0, true, 1e9},
	{"max_cat_to_onehot", true, 1, false, 64},
};

#define TRAIN_NPARAMS lengthof(TrainParamDefs)
#define TRAIN_P_MAX_DEPTH 0
#define TRAIN_P_ETA 1

/* A parameter setting: value per TrainParamDefs entry, when set. */
typedef struct TrainParams
{
	bool		set[TRAIN_NPARAMS];
	double		value[TRAIN_NPARAMS];
} TrainParams;

/* The search grid (search => true): max_depth x eta. */
static const int TrainGridDepth[] = {3, 5, 7};
static const double TrainGridEta[] = {0.05, 0.1, 0.3};

/* Validated arguments of a training. */
typedef struct TrainArgs
{
	Oid			relid;
	char	   *relation;		/* quoted, qualified */
	char	   *key;
	char	   *label;
	bool		label_is_bool;
	List	   *exclude;
	int			folds;
	int			n_rounds;
	TrainParams params;
	bool		search;
	int32		seed;
	char	   *deploy;
	bool		rules;			/* relation has every rule column */
} TrainArgs;

/* Labelled rows in key order. */
typedef struct TrainData
{
	FeatureSpec *spec;			/* NULL: keys and labels only */
	int			nfeat;
	int64		n;
	int64		npos;
	int64		nkeys;
	int64	   *keys;
	float	   *label;
	float	   *x;				/* n x nfeat, row-major, NaN = missing */
	double	   *rules;			/* rules' probability per row, or NULL */
	int		   *fold;
} TrainData;

/* Result of cross-validating one parameter setting. */
typedef struct TrainCv
{
	TrainParams params;
	double	   *oof;			/* out-of-fold probability per row */
	MetricSet  *per_fold;
	MetricSet	mean;
} TrainCv;

/* ---------------------------------------------------------------------
 * Seeded randomness: splitmix64 (never random(), so runs are reproducible)
 * --------------------------------------------------------------------- */

/* Next value of a splitmix64 stream. */
static inline uint64
TrainSplitmix64(uint64 *state)
{
	uint64		z = (*state += UINT64CONST(0x9E3779B97F4A7C15));

	z = (z ^ (z >> 30)) * UINT64CONST(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64CONST(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

/* Fisher-Yates shuffle of n int64 with the stream. */
static void
TrainShuffle(int64 *a, int64 n, uint64 *state)
{
	int64		i;

	for (i = n - 1; i > 0; i--)
	{
		int64		j = (int64) (TrainSplitmix64(state) % (uint64) (i + 1));
		int64		t = a[i];

		a[i] = a[j];
		a[j] = t;
	}
}

/* Stratified shuffled k-fold over the keys (see train.h). */
void
TrainAssignFolds(const int64 *keys, const float *labels, int64 n, int k, int32 seed, int *fold)
{
	int64	   *first = palloc_extended(sizeof(int64) * Max(n, 1), MCXT_ALLOC_HUGE);
	int64	   *pos = palloc_extended(sizeof(int64) * Max(n, 1), MCXT_ALLOC_HUGE);
	int64	   *neg = palloc_extended(sizeof(int64) * Max(n, 1), MCXT_ALLOC_HUGE);
	int		   *keyfold = palloc_extended(sizeof(int) * Max(n, 1), MCXT_ALLOC_HUGE);
	int64		nk = 0,
				np = 0,
				nn = 0,
				i,
				j,
				counter = 0;
	uint64		state = (uint64) (uint32) seed ^ UINT64CONST(0x6963706d6c000000);

	/* keys: runs of equal keys; a key is positive when any row is */
	for (i = 0; i < n; i = j)
	{
		bool		positive = false;

		for (j = i; j < n && keys[j] == keys[i]; j++)
			positive |= labels[j] > 0.5f;
		first[nk] = i;
		if (positive)
			pos[np++] = nk;
		else
			neg[nn++] = nk;
		nk++;
	}
	TrainShuffle(pos, np, &state);
	TrainShuffle(neg, nn, &state);
	for (i = 0; i < np; i++)
		keyfold[pos[i]] = (int) (counter++ % k);
	for (i = 0; i < nn; i++)
		keyfold[neg[i]] = (int) (counter++ % k);
	for (i = 0; i < nk; i++)
	{
		int64		end = i + 1 < nk ? first[i + 1] : n;

		for (j = first[i]; j < end; j++)
			fold[j] = keyfold[i];
	}
	pfree(first);
	pfree(pos);
	pfree(neg);
	pfree(keyfold);
}

/* ---------------------------------------------------------------------
 * Arguments
 * --------------------------------------------------------------------- */

/* ERROR unless a required argument is given. */
static void
TrainRequire(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", name),
				 errhint("Omit the argument to use its default.")));
}

/* Resolve and check the key and label columns of a relation. */
static void
TrainCheckColumns(TrainArgs *a)
{
	AttrNumber	att;
	Oid			type;

	if (strcmp(a->key, a->label) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key_column and label_column are both \"%s\"", a->key),
				 errhint("Name the account key and the label column separately.")));

	att = get_attnum(a->relid, a->key);
	if (att == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("key column \"%s\" does not exist in %s", a->key, a->relation),
				 errhint("Pass key_column => the relation's account key column.")));
	type = getBaseType(get_atttype(a->relid, att));
	if (type != INT2OID && type != INT4OID && type != INT8OID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("key column \"%s\" of %s has type %s, not an integer type",
						a->key, a->relation, format_type_be(type)),
				 errhint("Account keys are bigint; expose an integer key in a view.")));

	att = get_attnum(a->relid, a->label);
	if (att == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("label column \"%s\" does not exist in %s", a->label, a->relation),
				 errhint("Pass label_column => a boolean (or 0/1) column; rows where it is NULL are not used.")));
	type = getBaseType(get_atttype(a->relid, att));
	a->label_is_bool = (type == BOOLOID);
	if (!a->label_is_bool && type != INT2OID && type != INT4OID && type != INT8OID &&
		type != FLOAT4OID && type != FLOAT8OID && type != NUMERICOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("label column \"%s\" of %s has type %s, not boolean or numeric",
						a->label, a->relation, format_type_be(type)),
				 errhint("The label must be boolean, or numeric holding 0 and 1 (NULL = unlabelled).")));
}

/* Does the relation have every column the rules read, of a usable type? */
static bool
TrainRelationHasRuleColumns(Oid relid)
{
	int			i;

	for (i = 0; i < RULE_NCOLUMNS; i++)
	{
		AttrNumber	att = get_attnum(relid, RuleColumns[i].name);
		Oid			from,
					to = RuleColumns[i].type;

		if (att == InvalidAttrNumber)
			return false;
		from = get_atttype(relid, att);
		if (from != to && !can_coerce_type(1, &from, &to, COERCION_ASSIGNMENT))
			return false;
	}
	return true;
}

/* Parse and check params jsonb against the whitelist. */
static void
TrainParseParams(Jsonb *json, TrainParams *p)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	if (!JB_ROOT_IS_OBJECT(json))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("params must be a JSON object"),
				 errhint("Pass e.g. params => '{\"max_depth\": 4, \"eta\": 0.1}'.")));

	it = JsonbIteratorInit(&json->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		int			i;
		double		d;
		const TrainParamDef *def;

		if (tok == WJB_KEY)
		{
			key = pnstrdup(v.val.string.val, v.val.string.len);
			continue;
		}
		if (tok != WJB_VALUE)
			continue;
		for (i = 0; i < TRAIN_NPARAMS; i++)
			if (strcmp(key, TrainParamDefs[i].name) == 0)
				break;
		if (i == TRAIN_NPARAMS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown XGBoost parameter \"%s\" in params", key),
					 errhint("Allowed: max_depth, eta, min_child_weight, subsample, colsample_bytree, lambda, alpha, gamma, max_bin, scale_pos_weight, max_cat_to_onehot.")));
		def = &TrainParamDefs[i];
		if (v.type != jbvNumeric)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("parameter \"%s\" must be a number", key)));
		d = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
											   NumericGetDatum(v.val.numeric)));
		if (isnan(d) || d < def->min || (def->min_open && d <= def->min) || d > def->max ||
			(def->integer && d != floor(d)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("parameter \"%s\" is %g, outside its range", key, d),
					 errhint("%s must be %s%s %g and at most %g.", key,
							 def->integer ? "an integer " : "",
							 def->min_open ? "greater than" : "at least", def->min, def->max)));
		p->set[i] = true;
		p->value[i] = d;
	}
}

/* Validate every argument of train_icp_model / cv_folds into *a. */
static void
TrainParseArgs(FunctionCallInfo fcinfo, TrainArgs *a, bool training)
{
	char	   *relation;
	int			folds_arg = training ? 4 : 3;
	int			seed_arg = training ? 8 : 4;

	memset(a, 0, sizeof(*a));
	relation = PG_ARGISNULL(0) ? icpml_feature_relation : text_to_cstring(PG_GETARG_TEXT_PP(0));
	a->key = PG_ARGISNULL(1) ? pstrdup(icpml_feature_key) : text_to_cstring(PG_GETARG_TEXT_PP(1));
	TrainRequire(fcinfo, 2, "label_column");
	a->label = text_to_cstring(PG_GETARG_TEXT_PP(2));
	TrainRequire(fcinfo, folds_arg, "folds");
	a->folds = PG_GETARG_INT32(folds_arg);
	TrainRequire(fcinfo, seed_arg, "seed");
	a->seed = PG_GETARG_INT32(seed_arg);
	if (a->folds < 2 || a->folds > TRAIN_MAX_FOLDS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("folds must be between 2 and %d, not %d", TRAIN_MAX_FOLDS, a->folds)));

	if (training)
	{
		TrainRequire(fcinfo, 3, "exclude_columns");
		TrainRequire(fcinfo, 5, "n_rounds");
		TrainRequire(fcinfo, 6, "params");
		TrainRequire(fcinfo, 7, "search");
		TrainRequire(fcinfo, 9, "deploy");
		a->n_rounds = PG_GETARG_INT32(5);
		a->search = PG_GETARG_BOOL(7);
		a->deploy = text_to_cstring(PG_GETARG_TEXT_PP(9));
		if (a->n_rounds < 1 || a->n_rounds > TRAIN_MAX_ROUNDS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("n_rounds must be between 1 and %d, not %d", TRAIN_MAX_ROUNDS, a->n_rounds)));
		if (strcmp(a->deploy, "best") != 0 && strcmp(a->deploy, "always") != 0 &&
			strcmp(a->deploy, "never") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown deploy policy \"%s\"", a->deploy),
					 errhint("Use 'best' (deploy only if it beats the deployed model, or the rules), 'always' or 'never'.")));

		/* icpml's defaults; the caller's params override them */
		a->params.set[TRAIN_P_MAX_DEPTH] = true;
		a->params.value[TRAIN_P_MAX_DEPTH] = 3;
		a->params.set[TRAIN_P_ETA] = true;
		a->params.value[TRAIN_P_ETA] = 0.1;
		{
			TrainParams given;

			memset(&given, 0, sizeof(given));
			TrainParseParams(PG_GETARG_JSONB_P(6), &given);
			if (a->search && (given.set[TRAIN_P_MAX_DEPTH] || given.set[TRAIN_P_ETA]))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("params sets max_depth or eta, which search => true chooses"),
						 errhint("Drop them from params, or train with search => false.")));
			for (int i = 0; i < TRAIN_NPARAMS; i++)
				if (given.set[i])
				{
					a->params.set[i] = true;
					a->params.value[i] = given.value[i];
				}
		}
	}

	a->relid = FeatureResolveRelation(relation, &a->relation);
	TrainCheckColumns(a);

	if (training)
	{
		ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(3);
		Datum	   *elems;
		bool	   *enulls;
		int			n,
					i;

		deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &n);
		for (i = 0; i < n; i++)
		{
			char	   *name;

			if (enulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("exclude_columns must not contain NULL")));
			name = TextDatumGetCString(elems[i]);
			if (get_attnum(a->relid, name) == InvalidAttrNumber)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("exclude_columns names column \"%s\", which %s does not have",
								name, a->relation)));
			a->exclude = lappend(a->exclude, name);
		}
		a->rules = TrainRelationHasRuleColumns(a->relid);
	}
}

/* ---------------------------------------------------------------------
 * Reading the labelled rows
 * --------------------------------------------------------------------- */

/* The WHERE condition selecting labelled rows (alias f). */
static char *
TrainRowFilter(const TrainArgs *a)
{
	return psprintf("f.%s IS NOT NULL AND f.%s IS NOT NULL",
					quote_identifier(a->label), quote_identifier(a->key));
}

/* qsort_arg comparator: by key, then by read position (stable). */
static int
TrainKeyCmp(const void *x, const void *y, void *arg)
{
	const int64 *keys = (const int64 *) arg;
	int64		i = *(const int64 *) x;
	int64		j = *(const int64 *) y;

	if (keys[i] != keys[j])
		return keys[i] < keys[j] ? -1 : 1;
	return i < j ? -1 : (i > j ? 1 : 0);
}

/* Permute the rows of d into key order. */
static void
TrainSortByKey(TrainData *d)
{
	int64	   *perm = palloc_extended(sizeof(int64) * Max(d->n, 1), MCXT_ALLOC_HUGE);
	int64	   *keys = palloc_extended(sizeof(int64) * Max(d->n, 1), MCXT_ALLOC_HUGE);
	float	   *label = palloc_extended(sizeof(float) * Max(d->n, 1), MCXT_ALLOC_HUGE);
	float	   *x = NULL;
	double	   *rules = NULL;
	int64		i;

	for (i = 0; i < d->n; i++)
		perm[i] = i;
	qsort_arg(perm, d->n, sizeof(int64), TrainKeyCmp, d->keys);
	if (d->nfeat > 0)
		x = palloc_extended(sizeof(float) * Max(d->n * d->nfeat, 1), MCXT_ALLOC_HUGE);
	if (d->rules)
		rules = palloc_extended(sizeof(double) * Max(d->n, 1), MCXT_ALLOC_HUGE);
	for (i = 0; i < d->n; i++)
	{
		int64		p = perm[i];

		keys[i] = d->keys[p];
		label[i] = d->label[p];
		if (x)
			memcpy(x + i * d->nfeat, d->x + p * d->nfeat, sizeof(float) * d->nfeat);
		if (rules)
			rules[i] = d->rules[p];
	}
	pfree(d->keys);
	pfree(d->label);
	d->keys = keys;
	d->label = label;
	if (x)
	{
		pfree(d->x);
		d->x = x;
	}
	if (rules)
	{
		pfree(d->rules);
		d->rules = rules;
	}
	pfree(perm);
}

/*
 * Read the labelled rows (as the caller) through a cursor, in batches:
 * key, label, the spec's columns and, with `rules`, the rule columns.
 * Inside SPI_connect; results are allocated in `cxt`.
 */
static TrainData *
TrainReadData(const TrainArgs *a, FeatureSpec *spec, bool rules, MemoryContext cxt)
{
	StringInfoData sql;
	TrainData  *d;
	Portal		portal;
	int64		cap = 1024;
	int			i;
	int			rules_first = 0;
	MemoryContext batchcxt,
				oldcxt;

	oldcxt = MemoryContextSwitchTo(cxt);
	d = palloc0(sizeof(TrainData));
	d->spec = spec;
	d->nfeat = spec ? spec->nfeatures : 0;
	d->keys = palloc_extended(sizeof(int64) * cap, MCXT_ALLOC_HUGE);
	d->label = palloc_extended(sizeof(float) * cap, MCXT_ALLOC_HUGE);
	if (d->nfeat > 0)
		d->x = palloc_extended(sizeof(float) * cap * d->nfeat, MCXT_ALLOC_HUGE);
	if (rules)
		d->rules = palloc_extended(sizeof(double) * cap, MCXT_ALLOC_HUGE);

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT f.%s::pg_catalog.int8, ", quote_identifier(a->key));
	if (a->label_is_bool)
		appendStringInfo(&sql, "f.%s::pg_catalog.int4::pg_catalog.float8", quote_identifier(a->label));
	else
		appendStringInfo(&sql, "f.%s::pg_catalog.float8", quote_identifier(a->label));
	if (spec)
		appendStringInfo(&sql, ", %s", SpecSelectList(spec, "f"));
	if (rules)
	{
		rules_first = 3 + (spec ? spec->ncolumns : 0);
		for (i = 0; i < RULE_NCOLUMNS; i++)
			appendStringInfo(&sql, ", f.%s::%s", quote_identifier(RuleColumns[i].name),
							 format_type_be_qualified(RuleColumns[i].type));
	}
	appendStringInfo(&sql, " FROM %s AS f WHERE %s", a->relation, TrainRowFilter(a));
	MemoryContextSwitchTo(oldcxt);

	batchcxt = AllocSetContextCreate(cxt, "icpml training batch", ALLOCSET_DEFAULT_SIZES);
	portal = SPI_cursor_open_with_args(NULL, sql.data, 0, NULL, NULL, NULL, true,
									   CURSOR_OPT_NO_SCROLL);
	for (;;)
	{
		uint64		r;
		SPITupleTable *tt;

		/* reading a big relation takes a while: let cancel in per batch */
		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, TRAIN_FETCH_ROWS);
		if (SPI_processed == 0)
			break;
		tt = SPI_tuptable;
		if (d->n + (int64) SPI_processed > cap)
		{
			while (d->n + (int64) SPI_processed > cap)
				cap *= 2;
			d->keys = repalloc_huge(d->keys, sizeof(int64) * cap);
			d->label = repalloc_huge(d->label, sizeof(float) * cap);
			if (d->nfeat > 0)
				d->x = repalloc_huge(d->x, sizeof(float) * cap * d->nfeat);
			if (rules)
				d->rules = repalloc_huge(d->rules, sizeof(double) * cap);
		}
		oldcxt = MemoryContextSwitchTo(batchcxt);
		for (r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = tt->vals[r];
			bool		isnull;
			double		y;

			d->keys[d->n] = DatumGetInt64(heap_getattr(tup, 1, tt->tupdesc, &isnull));
			y = DatumGetFloat8(heap_getattr(tup, 2, tt->tupdesc, &isnull));
			if (y != 0.0 && y != 1.0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("label column \"%s\" holds %g for key " INT64_FORMAT ", not 0 or 1",
								a->label, y, d->keys[d->n]),
						 errhint("A numeric label must be 0 (no fit) or 1 (fit); NULL marks unlabelled rows.")));
			d->label[d->n] = (float) y;
			d->npos += y == 1.0;
			if (spec)
				SpecEncodeRow(spec, tup, tt->tupdesc, 3, d->x + d->n * d->nfeat);
			if (rules)
			{
				Datum		values[RULE_NCOLUMNS];
				bool		nulls[RULE_NCOLUMNS];

				for (i = 0; i < RULE_NCOLUMNS; i++)
					values[i] = heap_getattr(tup, rules_first + i, tt->tupdesc, &nulls[i]);
				d->rules[d->n] = RulesProbability(values, nulls, NULL);
			}
			d->n++;
		}
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(batchcxt);
		SPI_freetuptable(tt);
	}
	SPI_cursor_close(portal);
	MemoryContextDelete(batchcxt);

	oldcxt = MemoryContextSwitchTo(cxt);
	TrainSortByKey(d);
	for (int64 j = 0; j < d->n; j++)
		if (j == 0 || d->keys[j] != d->keys[j - 1])
			d->nkeys++;
	MemoryContextSwitchTo(oldcxt);
	return d;
}

/*
 * Settings for the reading queries, undone by AtEOXact_GUC(true, level)
 * (or by the transaction's abort): jit = off, because compiling these
 * plain scans costs a quarter second per query and gains nothing.
 */
static int
TrainReadSettings(void)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return level;
}

/* Minimum data guard: ERROR (nothing written) below the minimums. */
static void
TrainGuard(const TrainArgs *a, const TrainData *d)
{
	int64		nneg = d->n - d->npos;

	if (d->n < TRAIN_MIN_ROWS || d->nkeys < TRAIN_MIN_KEYS || d->npos == 0 || nneg == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("not enough labelled data to train: " INT64_FORMAT " labelled rows (" INT64_FORMAT " positive, " INT64_FORMAT " negative) over " INT64_FORMAT " distinct keys in %s",
						d->n, d->npos, nneg, d->nkeys, a->relation),
				 errdetail("Training needs at least %d labelled rows, %d distinct keys and both classes.",
						   TRAIN_MIN_ROWS, TRAIN_MIN_KEYS),
				 errhint("Scoring keeps using the rules until enough rows have a label in column \"%s\".",
						 a->label)));
}

/* Check every fold can hold both classes. */
static void
TrainGuardFolds(const TrainArgs *a, const TrainData *d)
{
	int64		kpos = 0,
				kneg = 0,
				i,
				j;

	for (i = 0; i < d->n; i = j)
	{
		bool		positive = false;

		for (j = i; j < d->n && d->keys[j] == d->keys[i]; j++)
			positive |= d->label[j] > 0.5f;
		if (positive)
			kpos++;
		else
			kneg++;
	}
	if (Min(kpos, kneg) < a->folds)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("folds (%d) is more than the " INT64_FORMAT " keys of the smaller class",
						a->folds, Min(kpos, kneg)),
				 errhint("Use fewer folds, or label more accounts of the rarer class.")));
}

/* ---------------------------------------------------------------------
 * Boosting
 * --------------------------------------------------------------------- */

/* Format a parameter value for XGBoost. */
static char *
TrainParamText(int i, double v)
{
	if (TrainParamDefs[i].integer)
		return psprintf("%d", (int) v);
	return psprintf("%.15g", v);
}

/* Set icpml's fixed params and the chosen ones on a booster. */
static void
TrainSetParams(XgbBooster *b, const TrainParams *p, int32 seed)
{
	int			i;

	XgbBoosterSetParam(b, "objective", "binary:logistic");
	XgbBoosterSetParam(b, "tree_method", "hist");
	XgbBoosterSetParam(b, "nthread", psprintf("%d", icpml_nthread));
	XgbBoosterSetParam(b, "seed", psprintf("%d", seed));
	for (i = 0; i < TRAIN_NPARAMS; i++)
		if (p->set[i])
			XgbBoosterSetParam(b, TrainParamDefs[i].name, TrainParamText(i, p->value[i]));
}

/* A DMatrix of rows (all when `rows` is NULL) with labels and feature types. */
static XgbMatrix *
TrainMatrix(const TrainData *d, const int64 *rows, int64 nrows)
{
	XgbMatrix  *m;

	if (rows == NULL)
	{
		m = XgbMatrixFromDense(d->x, d->n, d->nfeat, NAN);
		XgbMatrixSetLabels(m, d->label, d->n);
	}
	else
	{
		float	   *x = palloc_extended(sizeof(float) * Max(nrows * d->nfeat, 1), MCXT_ALLOC_HUGE);
		float	   *y = palloc_extended(sizeof(float) * Max(nrows, 1), MCXT_ALLOC_HUGE);
		int64		i;

		for (i = 0; i < nrows; i++)
		{
			memcpy(x + i * d->nfeat, d->x + rows[i] * d->nfeat, sizeof(float) * d->nfeat);
			y[i] = d->label[rows[i]];
		}
		m = XgbMatrixFromDense(x, nrows, d->nfeat, NAN);
		XgbMatrixSetLabels(m, y, nrows);
		pfree(x);
		pfree(y);
	}
	XgbMatrixSetFeatureTypes(m, d->spec->feature_types, d->nfeat);
	return m;
}

/* Train n_rounds on dtrain, one round at a time. */
static XgbBooster *
TrainBoost(XgbMatrix *dtrain, const TrainParams *p, int n_rounds, int32 seed)
{
	XgbBooster *b = XgbBoosterCreate(&dtrain, 1);
	int			it;

	TrainSetParams(b, p, seed);
	for (it = 0; it < n_rounds; it++)
	{
		/* boosting can run for minutes: honour cancel between rounds */
		CHECK_FOR_INTERRUPTS();
		XgbBoosterUpdateOneIter(b, it, dtrain);
	}
	return b;
}

/* Metrics of the rows of one fold. */
static void
TrainFoldMetrics(const TrainData *d, const double *prob, int f, MetricSet *out)
{
	int64		nf = 0,
				i;
	float	   *y = palloc_extended(sizeof(float) * Max(d->n, 1), MCXT_ALLOC_HUGE);
	double	   *p = palloc_extended(sizeof(double) * Max(d->n, 1), MCXT_ALLOC_HUGE);

	for (i = 0; i < d->n; i++)
		if (d->fold[i] == f)
		{
			y[nf] = d->label[i];
			p[nf] = prob[i];
			nf++;
		}
	MetricsCompute(y, p, nf, out);
	pfree(y);
	pfree(p);
}

/* Mean of per-fold metrics. */
static void
TrainMeanMetrics(const MetricSet *per_fold, int k, MetricSet *mean)
{
	int			f;

	memset(mean, 0, sizeof(*mean));
	for (f = 0; f < k; f++)
	{
		mean->roc_auc += per_fold[f].roc_auc / k;
		mean->pr_auc += per_fold[f].pr_auc / k;
		mean->log_loss += per_fold[f].log_loss / k;
		mean->brier += per_fold[f].brier / k;
		mean->precision_at_10 += per_fold[f].precision_at_10 / k;
		mean->lift_at_10 += per_fold[f].lift_at_10 / k;
	}
}

/* Cross-validate one parameter setting: OOF predictions and fold metrics. */
static void
TrainCrossValidate(const TrainArgs *a, const TrainData *d, TrainCv *cv, MemoryContext cxt)
{
	int			f;
	int64	   *tr = MemoryContextAllocExtended(cxt, sizeof(int64) * Max(d->n, 1), MCXT_ALLOC_HUGE);
	int64	   *te = MemoryContextAllocExtended(cxt, sizeof(int64) * Max(d->n, 1), MCXT_ALLOC_HUGE);

	cv->oof = MemoryContextAllocExtended(cxt, sizeof(double) * Max(d->n, 1), MCXT_ALLOC_HUGE);
	cv->per_fold = MemoryContextAlloc(cxt, sizeof(MetricSet) * a->folds);
	for (f = 0; f < a->folds; f++)
	{
		MemoryContext foldcxt = AllocSetContextCreate(cxt, "icpml training fold",
													  ALLOCSET_DEFAULT_SIZES);
		MemoryContext oldcxt = MemoryContextSwitchTo(foldcxt);
		int64		ntr = 0,
					nte = 0,
					i;
		XgbMatrix  *dtr,
				   *dte;
		XgbBooster *b;
		float	   *pred;
		uint64		len;

		for (i = 0; i < d->n; i++)
		{
			if (d->fold[i] == f)
				te[nte++] = i;
			else
				tr[ntr++] = i;
		}
		dtr = TrainMatrix(d, tr, ntr);
		b = TrainBoost(dtr, &cv->params, a->n_rounds, a->seed);
		dte = TrainMatrix(d, te, nte);
		pred = XgbBoosterPredict(b, dte, XGB_PREDICT_VALUE, &len);
		if (len != (uint64) nte)
			elog(ERROR, "XGBoost returned " UINT64_FORMAT " predictions for " INT64_FORMAT " rows (please report a bug)",
				 len, nte);
		for (i = 0; i < nte; i++)
			cv->oof[te[i]] = pred[i];
		MemoryContextSwitchTo(oldcxt);
		/* frees the booster and both matrices (reset callbacks) */
		MemoryContextDelete(foldcxt);
		TrainFoldMetrics(d, cv->oof, f, &cv->per_fold[f]);
	}
	TrainMeanMetrics(cv->per_fold, a->folds, &cv->mean);
	pfree(tr);
	pfree(te);
}

/* ---------------------------------------------------------------------
 * Outputs: cut-offs, metrics jsonb, params jsonb
 * --------------------------------------------------------------------- */

/*
 * Score cut-offs from the OOF predictions: isotonic regression of the
 * label on the probability gives a calibrated fit rate; cutoff[k-1] is
 * the smallest OOF probability whose calibrated rate is at least k/10
 * (+Infinity when none is: that score is never reached).
 */
static void
TrainCutoffs(const TrainData *d, const double *oof, double *cutoffs)
{
	double	   *fitted = palloc_extended(sizeof(double) * d->n, MCXT_ALLOC_HUGE);
	int64		i;
	int			k;

	MetricsIsotonic(d->label, oof, d->n, fitted);
	for (k = 1; k <= ICPML_NSCORE_CUTOFFS; k++)
	{
		double		best = get_float8_infinity();

		for (i = 0; i < d->n; i++)
			if (fitted[i] >= k / 10.0 - 1e-12 && oof[i] < best)
				best = oof[i];
		cutoffs[k - 1] = best;
	}
	pfree(fitted);
}

/* Append a JSON number, or null when not finite. */
static void
TrainJsonNumber(StringInfo buf, double v)
{
	if (isnan(v) || isinf(v))
		appendStringInfoString(buf, "null");
	else
		appendStringInfo(buf, "%.15g", v);
}

/* Append a metric set as a JSON object (roc_auc_folds when per_fold). */
static void
TrainJsonMetrics(StringInfo buf, const MetricSet *mean, const MetricSet *per_fold, int k)
{
	int			i;

	appendStringInfoChar(buf, '{');
	for (i = 0; i < METRICS_NKEYS; i++)
	{
		appendStringInfo(buf, "%s\"%s\": ", i > 0 ? ", " : "", MetricNames[i]);
		TrainJsonNumber(buf, MetricGet(mean, i));
	}
	if (per_fold)
	{
		appendStringInfoString(buf, ", \"roc_auc_folds\": [");
		for (i = 0; i < k; i++)
		{
			if (i > 0)
				appendStringInfoString(buf, ", ");
			TrainJsonNumber(buf, per_fold[i].roc_auc);
		}
		appendStringInfoChar(buf, ']');
	}
	appendStringInfoChar(buf, '}');
}

/* Append the OOF ROC curve, at most TRAIN_ROC_POINTS points. */
static void
TrainJsonRoc(StringInfo buf, const TrainData *d, const double *oof)
{
	int64	   *order = MetricsOrderDesc(oof, d->n);
	int64		npos = d->npos,
				nneg = d->n - d->npos;
	double	   *thr = palloc(sizeof(double) * (d->n + 1));
	double	   *fpr = palloc(sizeof(double) * (d->n + 1));
	double	   *tpr = palloc(sizeof(double) * (d->n + 1));
	int64		npts = 0,
				i = 0,
				j;
	double		tp = 0,
				fp = 0;
	int			p;
	int64		last = -1;

	if (d->n > 0 && oof[order[0]] < 1.0)
	{
		thr[0] = 1.0;
		fpr[0] = tpr[0] = 0.0;
		npts = 1;
	}
	while (i < d->n)
	{
		for (j = i; j < d->n && oof[order[j]] == oof[order[i]]; j++)
		{
			if (d->label[order[j]] > 0.5f)
				tp++;
			else
				fp++;
		}
		thr[npts] = oof[order[i]];
		fpr[npts] = fp / nneg;
		tpr[npts] = tp / npos;
		npts++;
		i = j;
	}
	appendStringInfoChar(buf, '[');
	for (p = 0; p < TRAIN_ROC_POINTS; p++)
	{
		int64		idx = npts <= TRAIN_ROC_POINTS ? p :
			(int64) llround((double) p * (npts - 1) / (TRAIN_ROC_POINTS - 1));

		if (idx >= npts)
			break;
		if (idx == last)
			continue;
		last = idx;
		if (p > 0)
			appendStringInfoString(buf, ", ");
		appendStringInfoString(buf, "{\"threshold\": ");
		TrainJsonNumber(buf, thr[idx]);
		appendStringInfoString(buf, ", \"fpr\": ");
		TrainJsonNumber(buf, fpr[idx]);
		appendStringInfoString(buf, ", \"tpr\": ");
		TrainJsonNumber(buf, tpr[idx]);
		appendStringInfoChar(buf, '}');
	}
	appendStringInfoChar(buf, ']');
	pfree(order);
	pfree(thr);
	pfree(fpr);
	pfree(tpr);
}

/* Append 10 equal-width calibration bins of the OOF predictions. */
static void
TrainJsonCalibration(StringInfo buf, const TrainData *d, const double *oof)
{
	double		sum_p[10] = {0},
				sum_y[10] = {0};
	int64		n[10] = {0},
				i;
	int			b;

	for (i = 0; i < d->n; i++)
	{
		b = (int) floor(oof[i] * 10.0);
		b = Min(Max(b, 0), 9);
		sum_p[b] += oof[i];
		sum_y[b] += d->label[i];
		n[b]++;
	}
	appendStringInfoChar(buf, '[');
	for (b = 0; b < 10; b++)
	{
		appendStringInfo(buf, "%s{\"bin\": %d, \"mean_predicted\": ", b > 0 ? ", " : "", b + 1);
		TrainJsonNumber(buf, n[b] > 0 ? sum_p[b] / n[b] : get_float8_nan());
		appendStringInfoString(buf, ", \"observed_rate\": ");
		TrainJsonNumber(buf, n[b] > 0 ? sum_y[b] / n[b] : get_float8_nan());
		appendStringInfo(buf, ", \"n\": " INT64_FORMAT "}", n[b]);
	}
	appendStringInfoChar(buf, ']');
}

/* Feature index of an XGBoost importance name ("f12"), or -1. */
static int
TrainFeatureIndex(const FeatureSpec *spec, const char *name)
{
	int			i;

	if (name[0] == 'f' && name[1] >= '0' && name[1] <= '9')
	{
		char	   *end;
		long		v = strtol(name + 1, &end, 10);

		if (*end == '\0' && v >= 0 && v < spec->nfeatures)
			return (int) v;
	}
	for (i = 0; i < spec->nfeatures; i++)
		if (strcmp(spec->feature_names[i], name) == 0)
			return i;
	return -1;
}

typedef struct TrainImportance
{
	int			feature;
	double		gain;
	double		weight;
} TrainImportance;

/* qsort comparator: gain descending, then feature index. */
static int
TrainImportanceCmp(const void *x, const void *y)
{
	const TrainImportance *a = (const TrainImportance *) x;
	const TrainImportance *b = (const TrainImportance *) y;

	if (a->gain != b->gain)
		return a->gain > b->gain ? -1 : 1;
	return a->feature - b->feature;
}

/* Append feature importance (gain and weight) by gain, descending. */
static void
TrainJsonImportance(StringInfo buf, XgbBooster *b, const FeatureSpec *spec)
{
	TrainImportance *imp = palloc0(sizeof(TrainImportance) * Max(spec->nfeatures, 1));
	bool	   *used = palloc0(sizeof(bool) * Max(spec->nfeatures, 1));
	char	  **names;
	float	   *scores;
	int			n,
				i,
				nimp = 0;

	for (i = 0; i < spec->nfeatures; i++)
		imp[i].feature = i;
	n = XgbBoosterFeatureScore(b, "gain", &names, &scores);
	for (i = 0; i < n; i++)
	{
		int			f = TrainFeatureIndex(spec, names[i]);

		if (f >= 0)
		{
			imp[f].gain = scores[i];
			used[f] = true;
		}
	}
	n = XgbBoosterFeatureScore(b, "weight", &names, &scores);
	for (i = 0; i < n; i++)
	{
		int			f = TrainFeatureIndex(spec, names[i]);

		if (f >= 0)
		{
			imp[f].weight = scores[i];
			used[f] = true;
		}
	}
	for (i = 0; i < spec->nfeatures; i++)
		if (used[i])
			imp[nimp++] = imp[i];
	qsort(imp, nimp, sizeof(TrainImportance), TrainImportanceCmp);

	appendStringInfoChar(buf, '[');
	for (i = 0; i < nimp; i++)
	{
		appendStringInfo(buf, "%s{\"feature\": ", i > 0 ? ", " : "");
		escape_json(buf, spec->feature_names[imp[i].feature]);
		appendStringInfoString(buf, ", \"gain\": ");
		TrainJsonNumber(buf, imp[i].gain);
		appendStringInfoString(buf, ", \"weight\": ");
		TrainJsonNumber(buf, imp[i].weight);
		appendStringInfoChar(buf, '}');
	}
	appendStringInfoChar(buf, ']');
}

/* Append a params object (the settable ones that are set). */
static void
TrainJsonParams(StringInfo buf, const TrainParams *p)
{
	int			i,
				n = 0;

	for (i = 0; i < TRAIN_NPARAMS; i++)
		if (p->set[i])
		{
			appendStringInfo(buf, "%s\"%s\": %s", n++ > 0 ? ", " : "",
							 TrainParamDefs[i].name, TrainParamText(i, p->value[i]));
		}
}

/* jsonb from text built here (always valid). */
static Jsonb *
TrainJsonb(const char *text)
{
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
}

/* md5 over "key:label\n" of the rows in key order. */
static char *
TrainFingerprint(const TrainData *d)
{
	StringInfoData buf;
	char	   *hex = palloc(33);
	const char *errstr = NULL;
	int64		i;

	initStringInfo(&buf);
	for (i = 0; i < d->n; i++)
		appendStringInfo(&buf, INT64_FORMAT ":%d\n", d->keys[i], (int) d->label[i]);
	if (!pg_md5_hash(buf.data, buf.len, hex, &errstr))
		elog(ERROR, "could not compute the training fingerprint: %s", errstr);
	pfree(buf.data);
	return hex;
}

/* ---------------------------------------------------------------------
 * SQL entry points
 * --------------------------------------------------------------------- */

/* Seconds since start. */
static double
TrainElapsed(instr_time start)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	return INSTR_TIME_GET_DOUBLE(now);
}

/*
 * icpml.train_icp_model(relation, key_column, label_column, exclude_columns,
 * folds, n_rounds, params, search, seed, deploy) → one row: the version,
 * whether it was deployed and why, and its cross-validation metrics.
 */
Datum
train_icp_model(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TrainArgs	a;
	TrainData  *d;
	FeatureSpec *spec;
	MemoryContext traincxt,
				oldcxt;
	instr_time	start;
	TrainCv    *cvs;
	int			ncv,
				best,
				i;
	MetricSet  *rules_fold = NULL;
	MetricSet	rules_mean;
	XgbMatrix  *dall;
	XgbBooster *booster;
	ModelRecord rec;
	StringInfoData js;
	const char *reason = NULL;
	bool		deployed;
	Datum		values[TRAIN_RESULT_NATTS];
	bool		nulls[TRAIN_RESULT_NATTS];
	int64		lockkey;
	double		read_seconds,
				cv_seconds;
	int			guclevel;

	INSTR_TIME_SET_CURRENT(start);
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	if (rsinfo->setDesc->natts != TRAIN_RESULT_NATTS)
		elog(ERROR, "train_icp_model must return %d columns (please report a bug)", TRAIN_RESULT_NATTS);

	traincxt = AllocSetContextCreate(CurrentMemoryContext, "icpml training",
									 ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(traincxt);

	TrainParseArgs(fcinfo, &a, true);

	/* two trainings never overlap; the lock goes with the transaction */
	lockkey = (int64) DatumGetInt32(DirectFunctionCall1Coll(hashtext, DEFAULT_COLLATION_OID,
															CStringGetTextDatum(ICPML_TRAIN_LOCK_NAME)));
	if (!DatumGetBool(DirectFunctionCall1(pg_try_advisory_xact_lock_int8,
										  Int64GetDatum(lockkey))))
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("another icpml training is running"),
				 errhint("Wait for it to finish; trainings run one at a time.")));

	SPI_connect();
	MemoryContextSwitchTo(traincxt);
	if (a.rules)
		(void) RulesReader();	/* loads the rules' configuration */

	guclevel = TrainReadSettings();
	spec = SpecInfer(a.relid, a.relation, a.key, a.label, a.exclude, TrainRowFilter(&a));
	d = TrainReadData(&a, spec, a.rules, traincxt);
	AtEOXact_GUC(true, guclevel);
	read_seconds = TrainElapsed(start);
	TrainGuard(&a, d);
	TrainGuardFolds(&a, d);

	d->fold = palloc_extended(sizeof(int) * d->n, MCXT_ALLOC_HUGE);
	TrainAssignFolds(d->keys, d->label, d->n, a.folds, a.seed, d->fold);

	/* the rules on the same folds */
	if (d->rules)
	{
		rules_fold = palloc(sizeof(MetricSet) * a.folds);
		for (i = 0; i < a.folds; i++)
			TrainFoldMetrics(d, d->rules, i, &rules_fold[i]);
		TrainMeanMetrics(rules_fold, a.folds, &rules_mean);
	}

	/* cross-validation: one setting, or the grid */
	ncv = a.search ? lengthof(TrainGridDepth) * lengthof(TrainGridEta) : 1;
	cvs = palloc0(sizeof(TrainCv) * ncv);
	best = 0;
	for (i = 0; i < ncv; i++)
	{
		cvs[i].params = a.params;
		if (a.search)
		{
			cvs[i].params.set[TRAIN_P_MAX_DEPTH] = true;
			cvs[i].params.value[TRAIN_P_MAX_DEPTH] = TrainGridDepth[i / lengthof(TrainGridEta)];
			cvs[i].params.set[TRAIN_P_ETA] = true;
			cvs[i].params.value[TRAIN_P_ETA] = TrainGridEta[i % lengthof(TrainGridEta)];
		}
		TrainCrossValidate(&a, d, &cvs[i], traincxt);
		/* keep only the best setting's OOF predictions */
		if (i > 0 && cvs[i].mean.roc_auc > cvs[best].mean.roc_auc)
		{
			pfree(cvs[best].oof);
			cvs[best].oof = NULL;
			best = i;
		}
		else if (i != best)
		{
			pfree(cvs[i].oof);
			cvs[i].oof = NULL;
		}
	}

	cv_seconds = TrainElapsed(start) - read_seconds;

	/* refit on every labelled row with the chosen setting */
	dall = TrainMatrix(d, NULL, d->n);
	booster = TrainBoost(dall, &cvs[best].params, a.n_rounds, a.seed);
	ereport(DEBUG1,
			(errmsg_internal("icpml training: " INT64_FORMAT " rows x %d features; reading %.3f s, cross-validation %.3f s, refit %.3f s",
							 d->n, d->nfeat, read_seconds, cv_seconds,
							 TrainElapsed(start) - read_seconds - cv_seconds)));

	memset(&rec, 0, sizeof(rec));
	/* the spec travels with the booster: an edited spec no longer matches */
	XgbBoosterSetAttr(booster, ICPML_SPEC_DIGEST_ATTR, SpecDigest(SpecToJsonb(spec)));
	rec.blob = XgbBoosterSave(booster, "ubj", &rec.bloblen);
	rec.spec = spec;
	rec.label = a.label;
	rec.n_rows = d->n;
	rec.n_positive = d->npos;
	rec.seed = a.seed;
	rec.fingerprint = TrainFingerprint(d);
	rec.xgboost_version = XgbVersionString();
	TrainCutoffs(d, cvs[best].oof, rec.score_cutoffs);
	rec.high_min_score = 8;
	rec.medium_min_score = 5;
	rec.cv_auc = cvs[best].mean.roc_auc;
	rec.rules_cv_auc = d->rules ? rules_mean.roc_auc : get_float8_nan();

	initStringInfo(&js);
	appendStringInfoString(&js, "{\"objective\": \"binary:logistic\", \"tree_method\": \"hist\", ");
	TrainJsonParams(&js, &cvs[best].params);
	appendStringInfo(&js, ", \"seed\": %d, \"n_rounds\": %d, \"folds\": %d, \"search\": %s}",
					 a.seed, a.n_rounds, a.folds, a.search ? "true" : "false");
	rec.params = TrainJsonb(js.data);

	resetStringInfo(&js);
	appendStringInfo(&js, "{\"folds\": %d, \"seed\": %d, \"cv\": {\"model\": ", a.folds, a.seed);
	TrainJsonMetrics(&js, &cvs[best].mean, cvs[best].per_fold, a.folds);
	appendStringInfoString(&js, ", \"rules\": ");
	if (d->rules)
		TrainJsonMetrics(&js, &rules_mean, rules_fold, a.folds);
	else
		appendStringInfoString(&js, "null");
	appendStringInfoString(&js, "}, \"roc\": ");
	TrainJsonRoc(&js, d, cvs[best].oof);
	appendStringInfoString(&js, ", \"calibration\": ");
	TrainJsonCalibration(&js, d, cvs[best].oof);
	appendStringInfoString(&js, ", \"importance\": ");
	TrainJsonImportance(&js, booster, spec);
	appendStringInfoString(&js, ", \"search\": ");
	if (a.search)
	{
		appendStringInfoChar(&js, '[');
		for (i = 0; i < ncv; i++)
		{
			appendStringInfo(&js, "%s{\"params\": {", i > 0 ? ", " : "");
			appendStringInfo(&js, "\"max_depth\": %d, \"eta\": %s}, \"cv_roc_auc\": ",
							 (int) cvs[i].params.value[TRAIN_P_MAX_DEPTH],
							 TrainParamText(TRAIN_P_ETA, cvs[i].params.value[TRAIN_P_ETA]));
			TrainJsonNumber(&js, cvs[i].mean.roc_auc);
			appendStringInfoChar(&js, '}');
		}
		appendStringInfoChar(&js, ']');
	}
	else
		appendStringInfoString(&js, "null");
	appendStringInfoChar(&js, '}');
	rec.metrics = TrainJsonb(js.data);

	/* the model store writes as the extension owner */
	rec.version = ModelStoreInsert(&rec);
	deployed = ModelStoreApplyPolicy(rec.version, a.deploy, &reason);

	SPI_finish();
	MemoryContextSwitchTo(oldcxt);

	memset(nulls, 0, sizeof(nulls));
	values[0] = Int32GetDatum(rec.version);
	values[1] = BoolGetDatum(deployed);
	values[2] = CStringGetTextDatum(reason ? reason : "");
	nulls[2] = (reason == NULL);
	values[3] = Int64GetDatum(d->n);
	values[4] = Int64GetDatum(d->npos);
	values[5] = Float8GetDatum(cvs[best].mean.roc_auc);
	values[6] = Float8GetDatum(cvs[best].mean.pr_auc);
	values[7] = Float8GetDatum(cvs[best].mean.log_loss);
	values[8] = Float8GetDatum(cvs[best].mean.brier);
	values[9] = Float8GetDatum(cvs[best].mean.precision_at_10);
	values[10] = Float8GetDatum(cvs[best].mean.lift_at_10);
	values[11] = Float8GetDatum(d->rules ? rules_mean.roc_auc : 0.0);
	nulls[11] = (d->rules == NULL);
	values[12] = Float8GetDatum(TrainElapsed(start));
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);

	/* frees the data and every XGBoost handle */
	MemoryContextDelete(traincxt);
	return (Datum) 0;
}

/*
 * icpml.cv_folds(relation, key_column, label_column, folds, seed) →
 * (key, fold 1..k) per distinct labelled key: the fold assignment
 * train_icp_model uses with the same arguments.
 */
Datum
cv_folds(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TrainArgs	a;
	TrainData  *d;
	MemoryContext cxt,
				oldcxt;
	int64		i;
	int			guclevel;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	cxt = AllocSetContextCreate(CurrentMemoryContext, "icpml cv_folds", ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(cxt);
	TrainParseArgs(fcinfo, &a, false);

	SPI_connect();
	guclevel = TrainReadSettings();
	d = TrainReadData(&a, NULL, false, cxt);
	AtEOXact_GUC(true, guclevel);
	SPI_finish();

	MemoryContextSwitchTo(cxt);
	d->fold = palloc_extended(sizeof(int) * Max(d->n, 1), MCXT_ALLOC_HUGE);
	TrainAssignFolds(d->keys, d->label, d->n, a.folds, a.seed, d->fold);
	MemoryContextSwitchTo(oldcxt);
	for (i = 0; i < d->n; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		if (i > 0 && d->keys[i] == d->keys[i - 1])
			continue;
		values[0] = Int64GetDatum(d->keys[i]);
		values[1] = Int32GetDatum(d->fold[i] + 1);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	MemoryContextDelete(cxt);
	return (Datum) 0;
}

/*
 * icpml.binary_metrics(labels boolean[], probabilities float8[]) → one row
 * of the metrics train_icp_model reports, for any predictions.
 */
Datum
binary_metrics(PG_FUNCTION_ARGS)
{
	ArrayType  *la = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *pa = PG_GETARG_ARRAYTYPE_P(1);
	Datum	   *le,
			   *pe;
	bool	   *ln,
			   *pn;
	int			nl,
				np,
				i;
	float	   *y;
	double	   *p;
	MetricSet	m;
	TupleDesc	desc;
	Datum		values[METRICS_NKEYS];
	bool		nulls[METRICS_NKEYS];

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "binary_metrics must return a row (please report a bug)");
	deconstruct_array(la, BOOLOID, 1, true, TYPALIGN_CHAR, &le, &ln, &nl);
	deconstruct_array(pa, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &pe, &pn, &np);
	if (nl != np)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("labels has %d elements but probabilities has %d", nl, np),
				 errhint("Pass one probability per label.")));
	y = palloc(sizeof(float) * Max(nl, 1));
	p = palloc(sizeof(double) * Max(nl, 1));
	for (i = 0; i < nl; i++)
	{
		if (ln[i] || pn[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("labels and probabilities must not contain NULL")));
		y[i] = DatumGetBool(le[i]) ? 1.0f : 0.0f;
		p[i] = DatumGetFloat8(pe[i]);
		if (isnan(p[i]) || p[i] < 0.0 || p[i] > 1.0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("probability %g is not between 0 and 1", p[i])));
	}
	MetricsCompute(y, p, nl, &m);
	for (i = 0; i < METRICS_NKEYS; i++)
	{
		double		v = MetricGet(&m, i);

		values[i] = Float8GetDatum(v);
		nulls[i] = isnan(v);
	}
	desc = BlessTupleDesc(desc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
