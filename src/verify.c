/*
 * verify.c — icpml.verify_model(): check a stored model's native evaluation
 * against XGBoost on rows of the relation it was trained on.
 *
 * icp_score evaluates deployed trees natively (tree.c) for speed; this
 * function is the proof on real data, e.g. after an XGBoost upgrade:
 * margins, probabilities and Saabas contributions of both paths, and the
 * exact SHAP values summing to the margin.  Rows are read as the caller.
 *
 * ModelValidate is the gate every stored model passes before it scores:
 * deploy_model, rollback_model, the deploy policies (training included)
 * run it with the probe comparison, the model cache (every backend that
 * loads the deployed model) without it, verify_model before reading rows.
 * A spec edited after training (levels, kinds, columns, relation) no
 * longer matches the digest training saved in the booster.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "icpml.h"
#include "features.h"
#include "model.h"
#include "tree.h"
#include "verify.h"
#include "xgb.h"

PG_FUNCTION_INFO_V1(verify_model);

/* ERROR for a stored model that fails validation. */
static void
ModelInvalid(const ModelRecord *rec, const char *problem)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("model version %d failed validation: %s", rec->version, problem),
			 errhint("The stored model or its spec was edited, truncated or mixed with another model's; deploy another version or retrain.")));
}

/* See verify.h. */
void
ModelValidate(const ModelRecord *rec, bool probe, XgbBooster **booster_out,
			  TreeModel **tree_out)
{
	const FeatureSpec *spec = rec->spec;
	XgbBooster *booster;
	TreeModel  *tree;
	char	   *digest;
	char	  **types;
	int			ntypes,
				k,
				nf;

	for (k = 0; k < ICPML_NSCORE_CUTOFFS; k++)
	{
		double		c = rec->score_cutoffs[k];

		if (isnan(c) || (isinf(c) && c < 0))
			ModelInvalid(rec, psprintf("score cut-off %d is %g", k + 1, c));
		if (!isinf(c) && (c < 0.0 || c > 1.0))
			ModelInvalid(rec, psprintf("score cut-off %d (%g) is not a probability", k + 1, c));
		if (k > 0 && c < rec->score_cutoffs[k - 1])
			ModelInvalid(rec, psprintf("score cut-offs decrease (%g after %g)",
									   c, rec->score_cutoffs[k - 1]));
	}
	SpecValidate(spec);
	nf = spec->nfeatures;

	if (rec->bloblen == 0)
		ModelInvalid(rec, "the model blob is empty");
	booster = XgbBoosterLoad(rec->blob, rec->bloblen);
	if (XgbBoosterNumFeatures(booster) != nf)
		ModelInvalid(rec, psprintf("the booster has %d features, its spec %d",
								   XgbBoosterNumFeatures(booster), nf));
	types = XgbBoosterFeatureTypes(booster, &ntypes);
	if (ntypes != 0)
	{
		if (ntypes != nf)
			ModelInvalid(rec, psprintf("the booster records %d feature types, its spec has %d features",
									   ntypes, nf));
		for (k = 0; k < nf; k++)
			if (strcmp(types[k], spec->feature_types[k]) != 0)
				ModelInvalid(rec, psprintf("feature %d (\"%s\") has type \"%s\" in its spec, \"%s\" in the booster",
										   k + 1, spec->feature_names[k], spec->feature_types[k],
										   types[k]));
	}
	digest = XgbBoosterGetAttr(booster, ICPML_SPEC_DIGEST_ATTR);
	if (digest != NULL && rec->spec_json != NULL &&
		strcmp(digest, SpecDigest(rec->spec_json)) != 0)
		ModelInvalid(rec, "its feature spec is not the one it was trained with");

	tree = TreeModelFromBooster(booster, nf);

	if (probe)
	{
		float	   *X = TreeModelProbeRows(tree, MODEL_VALIDATE_PROBE_ROWS, 1);
		double		margin_diff,
					contrib_diff;
		char		buf[32];

		snprintf(buf, sizeof(buf), "%d", icpml_nthread);
		XgbBoosterSetParam(booster, "nthread", buf);
		TreeVerifyMatrix(booster, tree, X, MODEL_VALIDATE_PROBE_ROWS, nf,
						 &margin_diff, &contrib_diff);
		/* the native evaluator is bit-identical to XGBoost on a sound model */
		if (!(margin_diff <= 1e-6) || !(contrib_diff <= 1e-5))
			ModelInvalid(rec, psprintf("the native evaluator differs from XGBoost (margin %g, contributions %g)",
									   margin_diff, contrib_diff));
		pfree(X);
	}

	if (booster_out)
		*booster_out = booster;
	else
		XgbBoosterFree(booster);
	if (tree_out)
		*tree_out = tree;
	else
		TreeModelFree(tree);
}

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
	char	   *relation;
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
	ModelValidate(rec, false, &booster, &tree);
	relation = RelationResolveStored(rec->spec->relation, rec->version);

	SPI_connect();
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT f.%s::pg_catalog.int8, %s FROM %s AS f LIMIT $1",
					 quote_identifier(rec->spec->key), SpecSelectList(rec->spec, "f"),
					 relation);
	arg = Int32GetDatum(rows);
	if (SPI_execute_with_args(sql.data, 1, &argtype, &arg, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading the model's relation failed");
	n = (int64) SPI_processed;
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("relation %s has no rows to verify model version %d on",
						relation, rec->version)));

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
