/*
 * model_cache.h — the per-backend cache of the deployed ICP model.
 */
#ifndef ICPML_MODEL_CACHE_H
#define ICPML_MODEL_CACHE_H

#include "executor/spi.h"
#include "relation.h"
#include "icpml.h"
#include "spec.h"
#include "xgb.h"

typedef struct ModelCache ModelCache;

/*
 * The deployed model, loaded once per backend and kept until a change to
 * icpml.models or icpml.deployments commits anywhere; NULL when no model
 * is deployed (the rules score).  Call inside SPI_connect.
 */
extern ModelCache *ModelCacheGet(void);

/*
 * A stored version, deployed or not (the deployed one's cache when it is);
 * kept like the deployed one.  ERROR when the version does not exist.
 * Call inside SPI_connect.
 */
extern ModelCache *ModelCacheGetVersion(int32 version);

/* Load the deployed model now (icpml.prewarm). */
extern void ModelCachePrewarm(void);

/*
 * The plan reading the model's features for a scope: key (int8) then
 * SpecSelectList; prepared on first use, so inside SPI_connect.
 */
extern SPIPlanPtr ModelCachePlan(ModelCache *mc, RelationScope scope);
extern const char *ModelCacheRelation(ModelCache *mc);

/* Score one row read with ModelCachePlan (native tree walk, Saabas factors). */
extern void ModelCacheScoreTuple(ModelCache *mc, HeapTuple tuple, TupleDesc desc,
								 IcpScore *out, bool factors);

/* The same from the row's deformed attributes (a slot's tts_values, tts_isnull). */
extern void ModelCacheScoreValues(ModelCache *mc, const Datum *values, const bool *nulls,
								  IcpScore *out, bool factors);

/* The booster (loaded by the first call: exact SHAP) and the spec. */
extern XgbBooster *ModelCacheBooster(ModelCache *mc);
extern const FeatureSpec *ModelCacheSpec(ModelCache *mc);
extern int32 ModelCacheVersion(ModelCache *mc);

/* Feature j's value as text (level name for categoricals); NULL when missing. */
extern char *ModelCacheFeatureValue(ModelCache *mc, int j, float v);

/* Encode a row read with ModelCachePlan into the model's feature vector. */
extern void ModelCacheEncode(ModelCache *mc, HeapTuple tuple, TupleDesc desc, float *row);

#endif							/* ICPML_MODEL_CACHE_H */
