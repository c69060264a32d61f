/*
 * verify.c — icpml.verify_model(): check a stored model's native evaluation
 * against XGBoost on rows of the relation it was trained on.
 *
 * icp_score evaluates deployed trees natively (tree.c) for speed; this
 * function is the proof on real data, e.g. after an XGBoost upgrade:
 * margins, probabilities and Saabas contributions of both paths, and the
 * exact SHAP values summing to the margin.  Rows are read as the caller.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "icpml.h"
#include "model.h"
#include "tree.h"
#include "xgb.h"

PG_FUNCTION_INFO_V1(verify_model);

/*
 * verify_model(version integer DEFAULT NULL → the deployed one, rows integer DEFAULT 10000)
 * → (version, n_rows, n_trees, max_abs_margin_diff, max_abs_contrib_diff,
 *    max_abs_probability_diff, max_abs_shap_sum_diff)
 */
Datum
verify_model(PG_FUNCTION_ARGS)
{
	int32		rows = PG_ARGISNULL(1) ? 10000 : PG_GETARG_INT32(1);
	ModelRecord *rec;
	XgbBooster *booster;
	TreeModel  *tree;
	TupleDesc	desc;
	StringInfoData sql;
	Datum		arg;
	Oid			argtype = INT4OID;
	float	   *X;
	int64		n,
				i;
	int			nf;
	TreeVerifyResult res;
	Datum		values[7];
	bool		nulls[7] = {false};
	MemoryContext callcxt = CurrentMemoryContext;

	if (rows < 1 || rows > 1000000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rows must be between 1 and 1000000")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "verify_model must return a composite type (please report a bug)");

	rec = PG_ARGISNULL(0) ? ModelStoreLoadDeployed() : ModelStoreLoad(PG_GETARG_INT32(0));
	if (rec == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("no model is deployed"),
				 errhint("Pass a version: SELECT * FROM icpml.verify_model(version => 1).")));
	nf = rec->spec->nfeatures;
	booster = XgbBoosterLoad(rec->blob, rec->bloblen);
	tree = TreeModelFromBooster(booster, nf);

	SPI_connect();
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT f.%s::pg_catalog.int8, %s FROM %s AS f LIMIT $1",
					 quote_identifier(rec->spec->key), SpecSelectList(rec->spec, "f"),
					 rec->spec->relation);
	arg = Int32GetDatum(rows);
	if (SPI_execute_with_args(sql.data, 1, &argtype, &arg, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading the model's relation failed");
	n = (int64) SPI_processed;
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("relation %s has no rows to verify model version %d on",
						rec->spec->relation, rec->version)));

	X = MemoryContextAlloc(callcxt, sizeof(float) * n * Max(nf, 1));
	for (i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		SpecEncodeRow(rec->spec, SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, X + i * nf);
	}
	SPI_finish();

	TreeVerify(booster, tree, X, n, nf, Min(n, 300), &res);

	values[0] = Int32GetDatum(rec->version);
	values[1] = Int64GetDatum(res.n_rows);
	values[2] = Int32GetDatum(res.n_trees);
	values[3] = Float8GetDatum(res.max_margin_diff);
	values[4] = Float8GetDatum(res.max_contrib_diff);
	values[5] = Float8GetDatum(res.max_probability_diff);
	values[6] = Float8GetDatum(res.max_shap_sum_diff);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
