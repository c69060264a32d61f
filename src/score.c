/*
 * score.c — icp_score, icp_score_batch, explain_icp_score and prewarm, the
 * SQL entry points that score accounts on request, and the ScoreSource
 * they share with score_store.c (see score.h).
 *
 * They are STABLE and SECURITY INVOKER: the feature rows are read as the
 * caller through SPI in read-only mode, so the caller's privileges and
 * row-level security decide what can be scored (a hidden account is
 * indistinguishable from an unknown one), and nothing is written, so they
 * work on a hot standby.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "icpml.h"
#include "model_cache.h"
#include "relation.h"
#include "rules.h"
#include "score.h"
#include "spi_scan.h"

#define ICP_RESULT_NATTS 8

PG_FUNCTION_INFO_V1(icp_score);
PG_FUNCTION_INFO_V1(icp_score_batch);
PG_FUNCTION_INFO_V1(explain_icp_score);
PG_FUNCTION_INFO_V1(prewarm);

/* The deployed model, or the rules when none is deployed (see score.h). */
void
ScoreSourceDeployed(ScoreSource *sc)
{
	sc->model = ModelCacheGet();
	sc->rules = sc->model ? NULL : RulesReader();
}

/* A stored model version (see score.h). */
void
ScoreSourceVersion(ScoreSource *sc, int32 version)
{
	sc->model = ModelCacheGetVersion(version);
	sc->rules = NULL;
}

/* The plan reading features for the chosen scorer. */
SPIPlanPtr
ScoreSourcePlan(ScoreSource *sc, RelationScope scope)
{
	return sc->model ? ModelCachePlan(sc->model, scope) : RelationReaderPlan(sc->rules, scope);
}

/* Relation the scorer reads, for messages (after ScoreSourcePlan). */
const char *
ScoreSourceRelation(ScoreSource *sc)
{
	return sc->model ? ModelCacheRelation(sc->model) : sc->rules->relation_display;
}

/* The scorer's model version, 0 for the rules. */
int32
ScoreSourceModelVersion(ScoreSource *sc)
{
	return sc->model ? ModelCacheVersion(sc->model) : 0;
}

/* Score one feature row read with ScoreSourcePlan. */
void
ScoreSourceScore(ScoreSource *sc, HeapTuple tuple, TupleDesc desc, IcpScore *out, bool factors)
{
	if (sc->model)
		ModelCacheScoreTuple(sc->model, tuple, desc, out, factors);
	else
		RulesScoreTuple(tuple, desc, out, factors);
}

/* Score one feature row from a slot read with ScoreSourcePlan. */
void
ScoreSourceScoreSlot(ScoreSource *sc, TupleTableSlot *slot, IcpScore *out, bool factors)
{
	if (sc->model)
		ModelCacheScoreValues(sc->model, slot->tts_values, slot->tts_isnull, out, factors);
	else
		RulesScoreTuple(heap_form_tuple(slot->tts_tupleDescriptor, slot->tts_values, slot->tts_isnull),
						slot->tts_tupleDescriptor, out, factors);
}

/* ERROR for a feature relation with two rows for one key. */
void
ScoreDuplicateKey(ScoreSource *sc, int64 key)
{
	ereport(ERROR,
			(errcode(ERRCODE_CARDINALITY_VIOLATION),
			 errmsg("feature relation %s has more than one row for account " INT64_FORMAT,
					ScoreSourceRelation(sc), key),
			 errhint("The feature relation must hold one row per account; make its key unique.")));
}

/*
 * Read one account's feature row as the caller into SPI_tuptable->vals[0];
 * an unknown (or hidden) account or a duplicated key is an ERROR.
 */
static void
ScoreReadOne(ScoreSource *sc, int64 account_id)
{
	Datum		arg = Int64GetDatum(account_id);
	int			ret = SPI_execute_plan(ScoreSourcePlan(sc, RELATION_ONE), &arg, NULL, true, 2);

	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading features failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("account " INT64_FORMAT " not found in %s", account_id,
						ScoreSourceRelation(sc)),
				 errhint("Check the account id. Rows that row-level security hides from you count as not found.")));
	if (SPI_processed > 1)
		ScoreDuplicateKey(sc, account_id);
}

/* Form an icpml.icp_score_result tuple from an IcpScore. */
static HeapTuple
ScoreFormTuple(TupleDesc desc, const IcpScore *s)
{
	Datum		values[ICP_RESULT_NATTS];
	bool		nulls[ICP_RESULT_NATTS];

	memset(nulls, !s->found, sizeof(nulls));
	values[0] = Int64GetDatum(s->account_id);
	nulls[0] = false;
	if (s->found)
	{
		values[1] = Int32GetDatum(s->score);
		values[2] = CStringGetTextDatum(s->priority);
		values[3] = Float8GetDatum(s->probability);
		values[4] = CStringGetTextDatum(s->model);
		values[5] = Int32GetDatum(s->model_version);
		nulls[5] = (s->model_version == 0);
		values[6] = s->factors ? JsonbPGetDatum(s->factors) : (Datum) 0;
		nulls[6] = (s->factors == NULL);
		values[7] = CStringGetTextDatum(s->factor_method);
	}
	return heap_form_tuple(desc, values, nulls);
}

/* Result descriptor check: must be icpml.icp_score_result. */
static void
ScoreCheckDesc(TupleDesc desc)
{
	if (desc->natts != ICP_RESULT_NATTS)
		elog(ERROR, "icpml.icp_score_result has %d columns, expected %d (please report a bug)",
			 desc->natts, ICP_RESULT_NATTS);
}

/* What the single-row read found: the score, and how many rows. */
typedef struct ScoreOneScan
{
	ScoreSource *sc;
	IcpScore   *out;
	int			nrows;
} ScoreOneScan;

/* The account's feature row: score it (SpiScan callback). */
static void
ScoreOneRow(TupleTableSlot *slot, void *arg)
{
	ScoreOneScan *scan = (ScoreOneScan *) arg;

	/* a second row is reported when the read is over */
	if (scan->nrows++ == 0)
		ScoreSourceScoreSlot(scan->sc, slot, scan->out, true);
}

/*
 * icp_score(account_id bigint) → icpml.icp_score_result
 * An unknown account (or one hidden by row-level security) is an error.
 * The feature row is scored as it is read (no copy of it is made).
 */
Datum
icp_score(PG_FUNCTION_ARGS)
{
	int64		account_id = PG_GETARG_INT64(0);
	TupleDesc	desc;
	ScoreSource sc;
	IcpScore	s;
	ScoreOneScan scan;
	HeapTuple	result;
	Datum		arg = Int64GetDatum(account_id);
	MemoryContext callcxt = CurrentMemoryContext;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "icp_score must return a composite type (please report a bug)");
	ScoreCheckDesc(desc);
	desc = BlessTupleDesc(desc);

	SPI_connect();
	ScoreSourceDeployed(&sc);
	memset(&s, 0, sizeof(s));
	s.account_id = account_id;
	scan.sc = &sc;
	scan.out = &s;
	scan.nrows = 0;
	/* the callback runs in the caller's context: the result outlives SPI */
	MemoryContextSwitchTo(callcxt);
	(void) SpiScan(ScoreSourcePlan(&sc, RELATION_ONE), &arg, true, ScoreOneRow, &scan,
				   ScoreSourceRelation(&sc));
	if (scan.nrows == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("account " INT64_FORMAT " not found in %s", account_id,
						ScoreSourceRelation(&sc)),
				 errhint("Check the account id. Rows that row-level security hides from you count as not found.")));
	if (scan.nrows > 1)
		ScoreDuplicateKey(&sc, account_id);
	result = ScoreFormTuple(desc, &s);
	SPI_finish();

	PG_RETURN_DATUM(HeapTupleGetDatum(result));
}

/* One scored account of a batch, by key (the result's columns but the key). */
typedef struct ScoreBatchEntry
{
	int64		key;
	double		probability;
	int32		score;
	int32		model_version;
	const char *priority;		/* static strings */
	const char *model;
	const char *factor_method;
	Jsonb	   *factors;		/* in the batch's context */
	char		status;			/* simplehash's */
} ScoreBatchEntry;

#define SH_PREFIX		scorebatch
#define SH_ELEMENT_TYPE	ScoreBatchEntry
#define SH_KEY_TYPE		int64
#define SH_KEY			key
#define SH_HASH_KEY(tb, k)	((uint32) IcpmlMix64((uint64) (k)))
#define SH_EQUAL(tb, a, b)	((a) == (b))
#define SH_SCOPE		static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

typedef struct ScoreBatchScan
{
	ScoreSource *sc;
	scorebatch_hash *rows;
	MemoryContext rowcxt;		/* per-row scratch */
	MemoryContext keepcxt;		/* the factors kept */
	uint64		nrows;
	bool		duplicate;		/* a key read twice: ERROR after the read */
	int64		duplicate_key;
} ScoreBatchScan;

/* One feature row of a batch: score it now, keep only the result (SpiScan callback). */
static void
ScoreBatchRow(TupleTableSlot *slot, void *arg)
{
	ScoreBatchScan *scan = (ScoreBatchScan *) arg;
	ScoreBatchEntry *e;
	IcpScore	s;
	bool		found;
	MemoryContext oldcxt;

	if (slot->tts_isnull[0])
		return;
	/* large batches: let cancel and statement_timeout in */
	if ((scan->nrows++ & 1023) == 0)
		CHECK_FOR_INTERRUPTS();
	e = scorebatch_insert(scan->rows, DatumGetInt64(slot->tts_values[0]), &found);
	if (found)
	{
		/* reported when the read is over (an error here would name its SQL) */
		if (!scan->duplicate)
		{
			scan->duplicate = true;
			scan->duplicate_key = e->key;
		}
		return;
	}
	oldcxt = MemoryContextSwitchTo(scan->rowcxt);
	memset(&s, 0, sizeof(s));
	ScoreSourceScoreSlot(scan->sc, slot, &s, true);
	MemoryContextSwitchTo(oldcxt);
	e->probability = s.probability;
	e->score = s.score;
	e->model_version = s.model_version;
	e->priority = s.priority;
	e->model = s.model;
	e->factor_method = s.factor_method;
	e->factors = NULL;
	if (s.factors)
	{
		e->factors = MemoryContextAlloc(scan->keepcxt, VARSIZE(s.factors));
		memcpy(e->factors, s.factors, VARSIZE(s.factors));
	}
	MemoryContextReset(scan->rowcxt);
}

/*
 * icp_score_batch(account_ids bigint[]) → setof icpml.icp_score_result
 * One row per array element, in order (duplicates repeated).  Unknown or
 * hidden ids, and NULL elements, give a row whose score columns are NULL.
 * Rows are scored as they are read and only their results kept; a large
 * array is read with a plan made for its size (the planner may then read
 * the whole relation).
 */
Datum
icp_score_batch(PG_FUNCTION_ARGS)
{
	ArrayType  *ids = PG_GETARG_ARRAYTYPE_P(0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum	   *elems;
	bool	   *enulls;
	int			n,
				i;
	ScoreSource sc;
	ScoreBatchScan scan;
	Datum		arg;
	Datum		text_high,
				text_medium,
				text_low,
				text_model,
				text_method;
	MemoryContext callcxt;

	if (ARR_NDIM(ids) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("account_ids must be a one-dimensional array"),
				 errhint("Pass a flat bigint[] such as ARRAY[1, 2, 3].")));

	deconstruct_array(ids, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &enulls, &n);
	if (n > icpml_max_batch_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("account_ids has %d elements, more than icpml.max_batch_size (%d)",
						n, icpml_max_batch_size),
				 errhint("Score in chunks, or raise icpml.max_batch_size.")));

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	ScoreCheckDesc(rsinfo->setDesc);
	if (n == 0)
		return (Datum) 0;

	callcxt = CurrentMemoryContext;
	SPI_connect();
	ScoreSourceDeployed(&sc);
	MemoryContextSwitchTo(callcxt);

	scan.sc = &sc;
	scan.rows = scorebatch_create(callcxt, Max(n, 16), NULL);
	scan.rowcxt = AllocSetContextCreate(callcxt, "icpml batch row", ALLOCSET_DEFAULT_SIZES);
	scan.keepcxt = AllocSetContextCreate(callcxt, "icpml batch results", ALLOCSET_DEFAULT_SIZES);
	scan.nrows = 0;
	scan.duplicate = false;
	arg = PointerGetDatum(ids);
	ScoreScanNoJit(ScoreSourcePlan(&sc, n >= RELATION_LARGE_ARRAY ? RELATION_MANY_LARGE : RELATION_MANY),
				   &arg, ScoreBatchRow, &scan, ScoreSourceRelation(&sc));
	if (scan.duplicate)
		ScoreDuplicateKey(&sc, scan.duplicate_key);

	/* the result's text columns take a few values: build each once */
	text_high = CStringGetTextDatum("high");
	text_medium = CStringGetTextDatum("medium");
	text_low = CStringGetTextDatum("low");
	text_model = sc.model ? CStringGetTextDatum("xgboost") : CStringGetTextDatum("rules");
	text_method = sc.model ? CStringGetTextDatum("saabas") : CStringGetTextDatum("rule_weights");
	for (i = 0; i < n; i++)
	{
		ScoreBatchEntry *e = NULL;
		Datum		values[ICP_RESULT_NATTS];
		bool		nulls[ICP_RESULT_NATTS];

		if ((i & 1023) == 0)
			CHECK_FOR_INTERRUPTS();
		if (!enulls[i])
			e = scorebatch_lookup(scan.rows, DatumGetInt64(elems[i]));
		memset(nulls, e == NULL, sizeof(nulls));
		values[0] = elems[i];
		nulls[0] = enulls[i];
		if (e)
		{
			values[1] = Int32GetDatum(e->score);
			values[2] = e->priority[0] == 'h' ? text_high : e->priority[0] == 'm' ? text_medium : text_low;
			values[3] = Float8GetDatum(e->probability);
			values[4] = text_model;	/* one source scored every row */
			values[5] = Int32GetDatum(e->model_version);
			nulls[5] = (e->model_version == 0);
			values[6] = PointerGetDatum(e->factors);
			nulls[6] = (e->factors == NULL);
			values[7] = text_method;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	MemoryContextDelete(scan.keepcxt);
	MemoryContextDelete(scan.rowcxt);
	SPI_finish();

	return (Datum) 0;
}

/*
 * Run a read of many rows (SpiScan, read-only) with JIT compilation off:
 * the work per row is icpml's own C, and compiling the plan's expressions
 * costs more than it saves at the sizes scoring reads.
 */
void
ScoreScanNoJit(SPIPlanPtr plan, Datum *args, SpiRowCallback callback, void *arg, const char *what)
{
	int			nest = NewGUCNestLevel();

	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) SpiScan(plan, args, true, callback, arg, what);
	AtEOXact_GUC(true, nest);
}

/* One row of explain_icp_score's result. */
static void
ScoreExplainPut(ReturnSetInfo *rsinfo, const char *feature, const char *value,
				double contribution, const char *method)
{
	Datum		values[4];
	bool		nulls[4] = {false, value == NULL, false, false};

	values[0] = CStringGetTextDatum(feature);
	values[1] = value ? CStringGetTextDatum(value) : (Datum) 0;
	values[2] = Float8GetDatum(contribution);
	values[3] = CStringGetTextDatum(method);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * explain_icp_score(account_id bigint) → setof (feature, value, contribution, method)
 * Every feature's contribution to the account's score, plus a "(bias)"
 * row; contributions sum to the logit of icp_score's probability.  With a
 * deployed model these are exact TreeSHAP values computed by XGBoost
 * (pred_contribs), slower than icp_score's per-path (Saabas) factors.
 */
Datum
explain_icp_score(PG_FUNCTION_ARGS)
{
	int64		account_id = PG_GETARG_INT64(0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ScoreSource	sc;
	HeapTuple	tuple;
	TupleDesc	desc;
	MemoryContext callcxt = CurrentMemoryContext;
	MemoryContext spicxt;
	int			i;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);

	SPI_connect();
	ScoreSourceDeployed(&sc);
	ScoreReadOne(&sc, account_id);
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	spicxt = MemoryContextSwitchTo(callcxt);

	if (sc.model)
	{
		const FeatureSpec *spec = ModelCacheSpec(sc.model);
		float	   *row = palloc(sizeof(float) * Max(spec->nfeatures, 1));
		float	   *shap;
		uint64		len;

		ModelCacheEncode(sc.model, tuple, desc, row);
		shap = XgbBoosterPredictDense(ModelCacheBooster(sc.model), row, 1, spec->nfeatures,
									  XGB_PREDICT_CONTRIBS, &len);
		if (len != (uint64) spec->nfeatures + 1)
			elog(ERROR, "XGBoost returned %llu contributions for %d features (please report a bug)",
				 (unsigned long long) len, spec->nfeatures);
		for (i = 0; i < spec->nfeatures; i++)
			ScoreExplainPut(rsinfo, spec->feature_names[i],
							ModelCacheFeatureValue(sc.model, i, row[i]), shap[i], "tree_shap");
		ScoreExplainPut(rsinfo, "(bias)", NULL, shap[spec->nfeatures], "tree_shap");
	}
	else
	{
		const char *names[RULE_NFACTORS];
		char	   *values[RULE_NFACTORS];
		double		contrib[RULE_NFACTORS];
		double		bias = RulesExplainTuple(tuple, desc, names, values, contrib);

		for (i = 0; i < RULE_NFACTORS; i++)
			ScoreExplainPut(rsinfo, names[i], values[i], contrib[i],
							RulesFactorUnavailable(i) ? "unavailable" : "rule_weights");
		ScoreExplainPut(rsinfo, "(bias)", NULL, bias, "rule_weights");
	}
	MemoryContextSwitchTo(spicxt);
	SPI_finish();
	return (Datum) 0;
}

/*
 * prewarm() → text
 * Load the deployed model (or the rules' configuration) into this
 * backend's cache now, so a pooled connection's first score is fast.
 * Returns what will score: "xgboost v<N>" or "rules".
 */
Datum
prewarm(PG_FUNCTION_ARGS)
{
	ScoreSource	sc;
	char	   *what;

	SPI_connect();
	ScoreSourceDeployed(&sc);
	(void) ScoreSourcePlan(&sc, RELATION_ONE);
	what = sc.model ? psprintf("xgboost v%d", ModelCacheVersion(sc.model)) : "rules";
	what = MemoryContextStrdup(TopTransactionContext, what);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(what));
}
