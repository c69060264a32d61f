/*
 * score.c — icp_score and icp_score_batch, the SQL entry points for ICP
 * scoring.
 *
 * Both are STABLE and SECURITY INVOKER: the feature rows are read as the
 * caller through SPI in read-only mode, so the caller's privileges and
 * row-level security decide what can be scored (a hidden account is
 * indistinguishable from an unknown one), and nothing is written, so they
 * work on a hot standby.
 */
#include "postgres.h"

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

#include "icpml.h"
#include "features.h"
#include "rules.h"

#define ICP_RESULT_NATTS 8

PG_FUNCTION_INFO_V1(icp_score);
PG_FUNCTION_INFO_V1(icp_score_batch);

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
		values[6] = JsonbPGetDatum(s->factors);
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
	FeatureReader *reader;
	SPIPlanPtr	plan;
	Datum		arg = Int64GetDatum(account_id);
	int			ret;
	IcpScore	s;
	HeapTuple	result;
	MemoryContext callcxt = CurrentMemoryContext;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "icp_score must return a composite type (please report a bug)");
	ScoreCheckDesc(desc);
	desc = BlessTupleDesc(desc);

	SPI_connect();
	reader = RulesReader();
	plan = FeatureReaderPlan(reader, false);
	ret = SPI_execute_plan(plan, &arg, NULL, true, 2);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading features failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("account " INT64_FORMAT " not found in %s", account_id,
						reader->relation_display),
				 errhint("Check the account id. Rows that row-level security hides from you count as not found.")));
	if (SPI_processed > 1)
		ereport(ERROR,
				(errcode(ERRCODE_CARDINALITY_VIOLATION),
				 errmsg("feature relation %s has more than one row for account " INT64_FORMAT,
						reader->relation_display, account_id),
				 errhint("icpml.feature_relation must hold one row per account; make icpml.feature_key unique.")));

	{
		MemoryContext spicxt = MemoryContextSwitchTo(callcxt);

		RulesScoreTuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, &s);
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
	FeatureReader *reader;
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
	reader = RulesReader();
	plan = FeatureReaderPlan(reader, true);
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
			ereport(ERROR,
					(errcode(ERRCODE_CARDINALITY_VIOLATION),
					 errmsg("feature relation %s has more than one row for account " INT64_FORMAT,
							reader->relation_display, key),
					 errhint("icpml.feature_relation must hold one row per account; make icpml.feature_key unique.")));
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
			RulesScoreTuple(tuptable->vals[e->row], tuptable->tupdesc, &s);
		tuplestore_puttuple(rsinfo->setResult, ScoreFormTuple(rsinfo->setDesc, &s));
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(rowcxt);
	}
	SPI_finish();

	return (Datum) 0;
}
