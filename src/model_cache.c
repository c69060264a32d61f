/*
 * model_cache.c — TEMPORARY placeholder while the model store and the tree
 * evaluator land (the real file is src/model_cache.c.wip): no model is
 * ever deployed, so scoring uses the rules.
 */
#include "postgres.h"

#include "model_cache.h"

ModelCache *
ModelCacheGet(void)
{
	return NULL;
}

void
ModelCachePrewarm(void)
{
}

SPIPlanPtr
ModelCachePlan(ModelCache *mc, FeatureScope scope)
{
	elog(ERROR, "no model cache");
}

const char *
ModelCacheRelation(ModelCache *mc)
{
	elog(ERROR, "no model cache");
}

void
ModelCacheScoreTuple(ModelCache *mc, HeapTuple tuple, TupleDesc desc, IcpScore *out, bool factors)
{
	elog(ERROR, "no model cache");
}

XgbBooster *
ModelCacheBooster(ModelCache *mc)
{
	elog(ERROR, "no model cache");
}

const FeatureSpec *
ModelCacheSpec(ModelCache *mc)
{
	elog(ERROR, "no model cache");
}

int32
ModelCacheVersion(ModelCache *mc)
{
	elog(ERROR, "no model cache");
}

void
ModelCacheEncode(ModelCache *mc, HeapTuple tuple, TupleDesc desc, float *row)
{
	elog(ERROR, "no model cache");
}
