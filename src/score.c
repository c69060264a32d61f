/*
 * score.c — icp_score and icp_score_batch, the SQL entry points for ICP
 * scoring.
 *
 * Both are STABLE and SECURITY INVOKER: the feature rows are read as the
 * caller through SPI in read-only mode, so the caller's privileges and
 * row-level security decide what can be scored (a hidden account is
 * indistinguishable from an unknown one), and nothing is written, so they
 * work on a hot standby.
 *
 * A ScoreSource hides which model scores: the deployed XGBoost model (through
 * the backend's model cache, evaluated natively) or, when none is
 * deployed, the rules.  score_all() runs the same scorer over every row
 * with a cursor and replaces icpml.account_scores as the extension owner.
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
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "icpml.h"
#include "candidates.h"
#include "model_cache.h"
#include "relation.h"
#include "rules.h"

#define ICP_RESULT_NATTS 8

PG_FUNCTION_INFO_V1(icp_score);
PG_FUNCTION_INFO_V1(icp_score_batch);
PG_FUNCTION_INFO_V1(score_all);
PG_FUNCTION_INFO_V1(explain_icp_score);
PG_FUNCTION_INFO_V1(prewarm);

/* The deployed model, or the rules when none is deployed. */
typedef struct ScoreSource
{
	ModelCache *model;
	RelationReader *rules;
} ScoreSource;

/* Pick the scorer (inside SPI_connect). */
static void
ScoreInit(ScoreSource *sc)
{
	sc->model = ModelCacheGet();
	sc->rules = sc->model ? NULL : RulesReader();
}

/* The plan reading features for the chosen scorer. */
static SPIPlanPtr
ScorePlan(ScoreSource *sc, RelationScope scope)
{
	return sc->model ? ModelCachePlan(sc->model, scope) : RelationReaderPlan(sc->rules, scope);
}

/* Relation the scorer reads, for messages (after ScorePlan). */
static const char *
ScoreRelation(ScoreSource *sc)
{
	return sc->model ? ModelCacheRelation(sc->model) : sc->rules->relation_display;
}

/* Score one feature row read with ScorePlan. */
static void
ScoreTuple(ScoreSource *sc, HeapTuple tuple, TupleDesc desc, IcpScore *out, bool factors)
{
	if (sc->model)
		ModelCacheScoreTuple(sc->model, tuple, desc, out, factors);
	else
		RulesScoreTuple(tuple, desc, out, factors);
}

/* ERROR for a feature relation with two rows for one key. */
static void
ScoreDuplicateKey(ScoreSource *sc, int64 key)
{
	ereport(ERROR,
			(errcode(ERRCODE_CARDINALITY_VIOLATION),
			 errmsg("feature relation %s has more than one row for account " INT64_FORMAT,
					ScoreRelation(sc), key),
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
	int			ret = SPI_execute_plan(ScorePlan(sc, RELATION_ONE), &arg, NULL, true, 2);

	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading features failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("account " INT64_FORMAT " not found in %s", account_id,
						ScoreRelation(sc)),
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

/*
 * icp_score(account_id bigint) → icpml.icp_score_result
 * An unknown account (or one hidden by row-level security) is an error.
 */
Datum
icp_score(PG_FUNCTION_ARGS)
{
	int64		account_id = PG_GETARG_INT64(0);
	TupleDesc	desc;
	ScoreSource	sc;
	IcpScore	s;
	HeapTuple	result;
	MemoryContext callcxt = CurrentMemoryContext;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "icp_score must return a composite type (please report a bug)");
	ScoreCheckDesc(desc);
	desc = BlessTupleDesc(desc);

	SPI_connect();
	ScoreInit(&sc);
	ScoreReadOne(&sc, account_id);

	{
		MemoryContext spicxt = MemoryContextSwitchTo(callcxt);

		ScoreTuple(&sc, SPI_tuptable->vals[0], SPI_tuptable->tupdesc, &s, true);
		result = ScoreFormTuple(desc, &s);
		MemoryContextSwitchTo(spicxt);
	}
	SPI_finish();

	PG_RETURN_DATUM(HeapTupleGetDatum(result));
}

typedef struct ScoreHashEntry
{
	int64		key;
	int			row;
} ScoreHashEntry;

/*
 * icp_score_batch(account_ids bigint[]) → setof icpml.icp_score_result
 * One row per array element, in order (duplicates repeated).  Unknown or
 * hidden ids, and NULL elements, give a row whose score columns are NULL.
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
	ScoreSource	sc;
	SPIPlanPtr	plan;
	Datum		arg;
	int			ret;
	HTAB	   *rows;
	HASHCTL		ctl;
	SPITupleTable *tuptable;
	MemoryContext rowcxt;

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

	SPI_connect();
	ScoreInit(&sc);
	plan = ScorePlan(&sc, RELATION_MANY);
	arg = PointerGetDatum(ids);
	ret = SPI_execute_plan(plan, &arg, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading features failed: %s", SPI_result_code_string(ret));
	tuptable = SPI_tuptable;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(ScoreHashEntry);
	ctl.hcxt = CurrentMemoryContext;
	rows = hash_create("icpml batch rows", Max(SPI_processed, 16), &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (i = 0; i < (int) SPI_processed; i++)
	{
		bool		isnull,
					found;
		int64		key = DatumGetInt64(heap_getattr(tuptable->vals[i], 1,
													 tuptable->tupdesc, &isnull));
		ScoreHashEntry *e = hash_search(rows, &key, HASH_ENTER, &found);

		if (found)
			ScoreDuplicateKey(&sc, key);
		e->row = i;
	}

	/* per-row scratch memory, reset after each row is in the tuplestore */
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "icpml batch row",
								   ALLOCSET_DEFAULT_SIZES);
	for (i = 0; i < n; i++)
	{
		IcpScore	s;
		ScoreHashEntry *e;
		MemoryContext oldcxt;

		/* large batches: let cancel and statement_timeout in */
		CHECK_FOR_INTERRUPTS();

		memset(&s, 0, sizeof(s));
		if (enulls[i])
		{
			Datum		values[ICP_RESULT_NATTS];
			bool		nulls[ICP_RESULT_NATTS];

			memset(nulls, true, sizeof(nulls));
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
			continue;
		}
		s.account_id = DatumGetInt64(elems[i]);
		e = hash_search(rows, &s.account_id, HASH_FIND, NULL);
		oldcxt = MemoryContextSwitchTo(rowcxt);
		if (e)
			ScoreTuple(&sc, tuptable->vals[e->row], tuptable->tupdesc, &s, true);
		tuplestore_puttuple(rsinfo->setResult, ScoreFormTuple(rsinfo->setDesc, &s));
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(rowcxt);
	}
	SPI_finish();

	return (Datum) 0;
}

/* Upsert one batch of scores into icpml.account_scores, as the owner. */
static void
ScoreAllWrite(SPIPlanPtr upsert, Datum *ids, Datum *scores, Datum *priorities,
			  Datum *probs, int n, const char *model, int32 version, TimestampTz at)
{
	Datum		args[7];
	char		nulls[7] = "       ";
	CatalogOwnerState owner;
	int			ret;

	args[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_array(scores, n, INT4OID, 4, true, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_array(priorities, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[3] = PointerGetDatum(construct_array(probs, n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[4] = CStringGetTextDatum(model);
	args[5] = Int32GetDatum(version);
	if (version == 0)
		nulls[5] = 'n';
	args[6] = TimestampTzGetDatum(at);

	CatalogSwitchToOwner(&owner);
	ret = SPI_execute_plan(upsert, args, nulls, false, 0);
	CatalogRestoreUser(&owner);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "writing icpml.account_scores failed: %s", SPI_result_code_string(ret));
}

/*
 * The first score_all() also fills the recommender's industry and technology
 * vocabularies (icpml.set_bandit_vocabulary(), as the caller) while they
 * were never set, so that the context's one-hot slots mean something.
 */
static void
ScoreAllFillVocabulary(void)
{
	CatalogOwnerState owner;
	int			ret;
	bool		unset = false;

	CatalogSwitchToOwner(&owner);
	ret = SPI_execute("SELECT industries IS NULL AND technologies IS NULL FROM icpml.bandit_settings",
					  true, 0);
	CatalogRestoreUser(&owner);
	if (ret == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		unset = !isnull && DatumGetBool(d);
	}
	if (unset && SPI_execute("SELECT FROM icpml.set_bandit_vocabulary()", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "filling the recommender vocabulary failed");
}

/*
 * score_all(batch_size integer) → bigint
 * Score every row of the scorer's relation (read as the caller through a
 * cursor) and make icpml.account_scores hold exactly those rows.
 */
Datum
score_all(PG_FUNCTION_ARGS)
{
	int32		batch_size = PG_GETARG_INT32(0);
	ScoreSource	sc;
	Portal		portal;
	SPIPlanPtr	upsert;
	SPIPlanPtr	prune;
	Oid			argtypes[7] = {INT8ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, FLOAT8ARRAYOID,
	TEXTOID, INT4OID, TIMESTAMPTZOID};
	TimestampTz at = GetCurrentTransactionStartTimestamp();
	MemoryContext batchcxt;
	int64		total = 0;
	Datum	   *ids,
			   *scores,
			   *priorities,
			   *probs;
	CatalogOwnerState owner;
	Datum		atarg;

	if (batch_size < 100 || batch_size > 1000000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be between 100 and 1000000"),
				 errhint("The default, 10000, suits most tables.")));

	SPI_connect();
	(void) CatalogRelid("account_scores");
	ScoreInit(&sc);

	/* prepared as the owner, under the pinned search_path it runs with */
	CatalogSwitchToOwner(&owner);
	upsert = SPI_prepare("INSERT INTO icpml.account_scores AS s"
						 " (account_id, score, priority, probability, model, model_version, scored_at)"
						 " SELECT u.a, u.s, u.p, u.pr, $5, $6, $7"
						 " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
						 " pg_catalog.unnest($3), pg_catalog.unnest($4)) AS u(a, s, p, pr)"
						 " ON CONFLICT (account_id) DO UPDATE SET score = excluded.score,"
						 " priority = excluded.priority, probability = excluded.probability,"
						 " model = excluded.model, model_version = excluded.model_version,"
						 " scored_at = excluded.scored_at",
						 7, argtypes);
	CatalogRestoreUser(&owner);
	if (upsert == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));

	portal = SPI_cursor_open(NULL, ScorePlan(&sc, RELATION_ALL), NULL, NULL, true);
	batchcxt = AllocSetContextCreate(CurrentMemoryContext, "icpml score_all batch",
									 ALLOCSET_DEFAULT_SIZES);
	ids = palloc(sizeof(Datum) * batch_size);
	scores = palloc(sizeof(Datum) * batch_size);
	priorities = palloc(sizeof(Datum) * batch_size);
	probs = palloc(sizeof(Datum) * batch_size);

	for (;;)
	{
		SPITupleTable *tuptable;
		uint64		n,
					i;
		MemoryContext oldcxt;
		const char *model = "rules";
		int32		version = 0;

		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, batch_size);
		tuptable = SPI_tuptable;
		n = SPI_processed;
		if (n == 0)
			break;

		oldcxt = MemoryContextSwitchTo(batchcxt);
		for (i = 0; i < n; i++)
		{
			IcpScore	s;

			ScoreTuple(&sc, tuptable->vals[i], tuptable->tupdesc, &s, false);
			ids[i] = Int64GetDatum(s.account_id);
			scores[i] = Int32GetDatum(s.score);
			priorities[i] = CStringGetTextDatum(s.priority);
			probs[i] = Float8GetDatum(s.probability);
			model = s.model;
			version = s.model_version;
		}
		MemoryContextSwitchTo(oldcxt);
		ScoreAllWrite(upsert, ids, scores, priorities, probs, (int) n, model, version, at);
		/* the recommender's candidates (candidates.c), from the same batch */
		CandidatesStore(PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
						PointerGetDatum(construct_array(probs, n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
						PointerGetDatum(construct_array(scores, n, INT4OID, 4, true, TYPALIGN_INT)),
						PointerGetDatum(construct_array(priorities, n, TEXTOID, -1, false, TYPALIGN_INT)));
		SPI_freetuptable(tuptable);
		MemoryContextReset(batchcxt);
		total += n;
	}
	SPI_cursor_close(portal);

	/* accounts no longer in the relation leave the table */
	atarg = TimestampTzGetDatum(at);
	argtypes[0] = TIMESTAMPTZOID;
	CatalogSwitchToOwner(&owner);
	prune = SPI_prepare("DELETE FROM icpml.account_scores WHERE scored_at OPERATOR(pg_catalog.<>) $1",
						1, argtypes);
	if (SPI_execute_plan(prune, &atarg, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "pruning icpml.account_scores failed");
	CatalogRestoreUser(&owner);
	CandidatesPrune();

	ScoreAllFillVocabulary();

	SPI_finish();
	PG_RETURN_INT64(total);
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
	ScoreInit(&sc);
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
	ScoreInit(&sc);
	(void) ScorePlan(&sc, RELATION_ONE);
	what = sc.model ? psprintf("xgboost v%d", ModelCacheVersion(sc.model)) : "rules";
	what = MemoryContextStrdup(TopTransactionContext, what);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(what));
}
