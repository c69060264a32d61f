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

/* Load the deployed model now (icpml.prewarm). */
extern void ModelCachePrewarm(void);

/* Plans reading the model's features: key (int8) then SpecSelectList. */
extern SPIPlanPtr ModelCachePlan(ModelCache *mc, RelationScope scope);
extern const char *ModelCacheRelation(ModelCache *mc);

/* Score one row read with ModelCachePlan (native tree walk, Saabas factors). */
extern void ModelCacheScoreTuple(ModelCache *mc, HeapTuple tuple, TupleDesc desc,
								 IcpScore *out, bool factors);

/* The loaded booster and spec, for exact SHAP and verification. */
extern XgbBooster *ModelCacheBooster(ModelCache *mc);
extern const FeatureSpec *ModelCacheSpec(ModelCache *mc);
extern int32 ModelCacheVersion(ModelCache *mc);

/* Feature j's value as text (level name for categoricals); NULL when missing. */
extern char *ModelCacheFeatureValue(ModelCache *mc, int j, float v);

/* Encode a row read with ModelCachePlan into the model's feature vector. */
extern void ModelCacheEncode(ModelCache *mc, HeapTuple tuple, TupleDesc desc, float *row);

#endif							/* ICPML_MODEL_CACHE_H */
