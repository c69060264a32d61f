/*
 * model_cache.c — the per-backend cache of the deployed ICP model.
 *
 * Loading: ModelStoreLoadDeployed() reads the deployed version (as the
 * extension owner), the stored UBJSON blob is checked and compiled into a
 * native tree array without XGBoost (tree.c), and the plans that read the
 * model's own feature columns (by name, from the relation the model was
 * trained on) as the caller are prepared when first used.  Everything
 * lives in one memory context; it is built as a child of the current
 * context and moved under CacheMemoryContext only when complete, so an
 * ERROR while loading leaks nothing.  The XGBoost booster is loaded only
 * when asked for (exact SHAP), and its handle is freed by the context's
 * reset callback.  A second slot keeps one other stored version, for
 * score_all(version => v) and score_changed() on challenger sets.
 *
 * Invalidation: icpml.models and icpml.deployments carry statement
 * triggers that queue a relcache invalidation; our hook marks the cache
 * stale, so a deploy, rollback or delete that commits in any session is
 * seen on this backend's next call.  A valid cache costs no query at all.
 * "No model deployed" is cached the same way.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "catalog.h"
#include "factors.h"
#include "icpml.h"
#include "model_cache.h"
#include "model_store.h"
#include "tree.h"

struct ModelCache
{
	MemoryContext cxt;
	ModelRecord *rec;
	XgbBooster *booster;		/* loaded on first use (ModelCacheBooster) */
	TreeModel  *tree;
	char	   *select_list;	/* key, then SpecSelectList */
	SPIPlanPtr	plans[RELATION_NSCOPES];	/* prepared on first use */
	float	   *row;			/* nfeatures scratch */
	double	   *contrib;		/* nfeatures + 1 scratch */
};

/* the deployed model; and one other version (score_all(version => v)) */
static ModelCache *model_cache = NULL;
static bool model_cache_valid = false;
static ModelCache *version_cache = NULL;
static bool version_cache_valid = false;
static int32 version_requested = 0;

/* Invalidation hook: reload on next use. */
static void
ModelCacheInvalidate(void)
{
	model_cache_valid = false;
	version_cache_valid = false;
}

/* Drop a cache (plans and memory, booster freed by its context). */
static void
ModelCacheRelease(ModelCache **cache)
{
	int			i;

	if (*cache == NULL)
		return;
	for (i = 0; i < RELATION_NSCOPES; i++)
		if ((*cache)->plans[i])
			SPI_freeplan((*cache)->plans[i]);
	MemoryContextDelete((*cache)->cxt);
	*cache = NULL;
}

/*
 * Build a cache for a version (0: the deployed one; NULL when none is
 * deployed).  The plans are prepared when first asked for.
 */
static ModelCache *
ModelCacheLoad(int32 version)
{
	MemoryContext cxt,
				oldcxt;
	ModelCache *mc;
	ModelRecord *rec;
	StringInfoData sel;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "icpml model cache",
								ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(cxt);
	rec = version > 0 ? ModelStoreLoad(version) : ModelStoreLoadDeployed();
	if (rec == NULL)
	{
		MemoryContextSwitchTo(oldcxt);
		MemoryContextDelete(cxt);
		return NULL;
	}

	mc = palloc0(sizeof(ModelCache));
	mc->cxt = cxt;
	mc->rec = rec;
	/* a model edited in the table since its deploy never scores */
	ModelStoreValidate(rec, false, NULL, &mc->tree);
	/* the stored relation is a name to resolve and quote, never SQL */
	rec->spec->relation = RelationResolveStored(rec->spec->relation, rec->version);
	mc->row = palloc(sizeof(float) * Max(rec->spec->nfeatures, 1));
	mc->contrib = palloc(sizeof(double) * (rec->spec->nfeatures + 1));

	initStringInfo(&sel);
	appendStringInfo(&sel, "f.%s::pg_catalog.int8, %s", quote_identifier(rec->spec->key),
					 SpecSelectList(rec->spec, "f"));
	mc->select_list = sel.data;
	MemoryContextSwitchTo(oldcxt);

	/* complete: keep it beyond this transaction */
	MemoryContextSetParent(cxt, CacheMemoryContext);
	return mc;
}

/* Replace the cache by the deployed model (see CatalogLoadFresh). */
static void
ModelCacheReload(void)
{
	CatalogRegisterInvalidation(ModelCacheInvalidate);
	(void) CatalogRelid("models");
	(void) CatalogRelid("deployments");
	ModelCacheRelease(&model_cache);
	model_cache = ModelCacheLoad(0);
}

/* Replace the other version's cache by version_requested. */
static void
ModelCacheReloadVersion(void)
{
	CatalogRegisterInvalidation(ModelCacheInvalidate);
	(void) CatalogRelid("models");
	(void) CatalogRelid("deployments");
	ModelCacheRelease(&version_cache);
	version_cache = ModelCacheLoad(version_requested);
}

/* The deployed model (see model_cache.h). */
ModelCache *
ModelCacheGet(void)
{
	while (!model_cache_valid)
		model_cache_valid = CatalogLoadFresh(ModelCacheReload);
	return model_cache;
}

/* A stored version, deployed or not (see model_cache.h). */
ModelCache *
ModelCacheGetVersion(int32 version)
{
	ModelCache *deployed = ModelCacheGet();

	if (deployed != NULL && deployed->rec->version == version)
		return deployed;
	if (version_cache_valid && version_cache != NULL && version_cache->rec->version == version)
		return version_cache;
	version_requested = version;
	version_cache_valid = false;
	while (!version_cache_valid)
		version_cache_valid = CatalogLoadFresh(ModelCacheReloadVersion);
	return version_cache;
}

/* Load the deployed model and the rules' configuration now. */
void
ModelCachePrewarm(void)
{
	ModelCache *mc = ModelCacheGet();

	if (mc != NULL)
		(void) ModelCachePlan(mc, RELATION_ONE);
}

/* The plan reading the model's features for a scope, prepared on first use. */
SPIPlanPtr
ModelCachePlan(ModelCache *mc, RelationScope scope)
{
	if (mc->plans[scope] == NULL)
		mc->plans[scope] = RelationPlanBuild(mc->select_list, mc->rec->spec->relation,
											 mc->rec->spec->key, scope);
	return mc->plans[scope];
}

const char *
ModelCacheRelation(ModelCache *mc)
{
	return mc->rec->spec->relation;
}

/*
 * The XGBoost booster of the cached model, loaded on first use (exact SHAP
 * for explain_icp_score): scoring itself never needs it.
 */
XgbBooster *
ModelCacheBooster(ModelCache *mc)
{
	if (mc->booster == NULL)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(mc->cxt);

		mc->booster = XgbBoosterLoad(mc->rec->blob, mc->rec->bloblen);
		MemoryContextSwitchTo(oldcxt);
	}
	return mc->booster;
}

const FeatureSpec *
ModelCacheSpec(ModelCache *mc)
{
	return mc->rec->spec;
}

int32
ModelCacheVersion(ModelCache *mc)
{
	return mc->rec->version;
}

void
ModelCacheEncode(ModelCache *mc, HeapTuple tuple, TupleDesc desc, float *row)
{
	SpecEncodeRow(mc->rec->spec, tuple, desc, 2, row);
}

/* The spec column that feature j belongs to. */
static const SpecColumn *
ModelCacheColumnOf(const FeatureSpec *spec, int j)
{
	int			c;

	for (c = 0; c < spec->ncolumns; c++)
	{
		const SpecColumn *col = &spec->columns[c];

		if (j >= col->first_feature && j < col->first_feature + col->nfeatures)
			return col;
	}
	elog(ERROR, "feature %d is outside the model's spec (please report a bug)", j);
	return NULL;				/* keep compiler quiet */
}

/* Feature j's encoded value as text (level name for categoricals); NULL if missing. */
char *
ModelCacheFeatureValue(ModelCache *mc, int j, float v)
{
	const SpecColumn *col;

	if (isnan(v))
		return NULL;
	col = ModelCacheColumnOf(mc->rec->spec, j);
	if (col->kind == SPEC_CATEGORICAL && v >= 0 && v < col->nlevels)
		return pstrdup(col->levels[(int) v]);
	if (col->kind == SPEC_BOOLEAN || col->kind == SPEC_TAGS)
		return pstrdup(v != 0 ? "true" : "false");
	return psprintf("%.9g", v);
}

/* Push feature j's encoded value into a factors jsonb (same rendering as above). */
static void
ModelCachePushValue(FactorsBuilder *fb, const FeatureSpec *spec, int j, float v)
{
	const SpecColumn *col;

	if (isnan(v))
	{
		FactorsValueNull(fb);
		return;
	}
	col = ModelCacheColumnOf(spec, j);
	if (col->kind == SPEC_CATEGORICAL && v >= 0 && v < col->nlevels)
		FactorsValueString(fb, col->levels[(int) v]);
	else if (col->kind == SPEC_BOOLEAN || col->kind == SPEC_TAGS)
		FactorsValueBool(fb, v != 0);
	else
		FactorsValueNumber(fb, v, 9);
}

/* Score one row read with ModelCachePlan (see model_cache.h). */
void
ModelCacheScoreTuple(ModelCache *mc, HeapTuple tuple, TupleDesc desc, IcpScore *out,
					 bool factors)
{
	Datum	   *values = palloc(sizeof(Datum) * desc->natts);
	bool	   *nulls = palloc(sizeof(bool) * desc->natts);

	heap_deform_tuple(tuple, desc, values, nulls);
	ModelCacheScoreValues(mc, values, nulls, out, factors);
	pfree(values);
	pfree(nulls);
}

/* Score one row: native margin, calibrated cut-offs, Saabas factors. */
void
ModelCacheScoreValues(ModelCache *mc, const Datum *values, const bool *nulls, IcpScore *out,
					  bool factors)
{
	const ModelRecord *rec = mc->rec;
	const FeatureSpec *spec = rec->spec;
	double		margin;
	int			k;

	out->account_id = DatumGetInt64(values[0]);
	SpecEncodeValues(spec, values, nulls, 2, mc->row);
	margin = factors && icpml_top_factors > 0
		? TreeModelSaabas(mc->tree, mc->row, mc->contrib)
		: TreeModelMargin(mc->tree, mc->row);

	out->found = true;
	out->probability = TreeModelProbability(margin);	/* XGBoost's own float sigmoid */
	out->score = 1;
	for (k = 0; k < ICPML_NSCORE_CUTOFFS; k++)
		if (out->probability >= rec->score_cutoffs[k])
			out->score++;
	out->priority = out->score >= rec->high_min_score ? "high" :
		out->score >= rec->medium_min_score ? "medium" : "low";
	out->model = "xgboost";
	out->model_version = rec->version;
	out->factor_method = "saabas";
	out->factors = NULL;

	if (factors)
	{
		FactorsBuilder fb;
		int			ntop = Min(icpml_top_factors, spec->nfeatures);
		int			t;

		FactorsBegin(&fb);
		/* top-n by |contribution| by selection: n is small (<= 32) */
		for (t = 0; t < ntop; t++)
		{
			int			best = -1,
						j;

			for (j = 0; j < spec->nfeatures; j++)
				if (mc->contrib[j] != 0.0 &&
					(best < 0 || fabs(mc->contrib[j]) > fabs(mc->contrib[best])))
					best = j;
			if (best < 0)
				break;
			FactorsItemBegin(&fb, spec->feature_names[best]);
			ModelCachePushValue(&fb, spec, best, mc->row[best]);
			FactorsItemEnd(&fb, mc->contrib[best]);
			mc->contrib[best] = 0.0;
		}
		out->factors = FactorsEnd(&fb);
	}
}
