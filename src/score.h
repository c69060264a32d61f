/*
 * score.h — which model scores a row, shared by the scoring entry points
 * (score.c: icp_score, icp_score_batch, explain_icp_score, prewarm) and
 * the materialised scores (score_store.c: score_all, score_changed).
 *
 * A ScoreSource hides whether the deployed XGBoost model (through the
 * backend's model cache, evaluated natively), another stored version, or,
 * when no model is deployed, the rules score: the plan that reads its
 * feature rows as the caller, the relation it reads, and the scoring of
 * one row read with that plan.
 */
#ifndef ICPML_SCORE_H
#define ICPML_SCORE_H

#include "postgres.h"

#include "executor/spi.h"
#include "executor/tuptable.h"

#include "icpml.h"
#include "model_cache.h"
#include "relation.h"
#include "spi_scan.h"

typedef struct ScoreSource
{
	ModelCache *model;			/* NULL: the rules */
	RelationReader *rules;
} ScoreSource;

/* The deployed model, or the rules when none is (inside SPI_connect). */
extern void ScoreSourceDeployed(ScoreSource *sc);

/* A stored model version, deployed or not (inside SPI_connect). */
extern void ScoreSourceVersion(ScoreSource *sc, int32 version);

/* The plan reading the source's feature rows as the caller: key, then its columns. */
extern SPIPlanPtr ScoreSourcePlan(ScoreSource *sc, RelationScope scope);

/* The relation it reads (quoted, qualified), for messages and the run log. */
extern const char *ScoreSourceRelation(ScoreSource *sc);

/* Its model version, 0 for the rules. */
extern int32 ScoreSourceModelVersion(ScoreSource *sc);

/* Score one row read with ScoreSourcePlan; factors only when asked for. */
extern void ScoreSourceScore(ScoreSource *sc, HeapTuple tuple, TupleDesc desc, IcpScore *out,
							 bool factors);

/* The same from a slot read with that plan (every attribute deformed). */
extern void ScoreSourceScoreSlot(ScoreSource *sc, TupleTableSlot *slot, IcpScore *out,
								 bool factors);

/*
 * Stream the rows of a read-only plan to a callback (SpiScan) with JIT
 * compilation off: the work per row is icpml's own.
 */
extern void ScoreScanNoJit(SPIPlanPtr plan, Datum *args, SpiRowCallback callback, void *arg,
						   const char *what);

/* ERROR for a feature relation with two rows for one key. */
extern void ScoreDuplicateKey(ScoreSource *sc, int64 key) pg_attribute_noreturn();

#endif							/* ICPML_SCORE_H */
