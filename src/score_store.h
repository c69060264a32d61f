/*
 * score_store.h — the materialised scores, shared by score_store.c (a run:
 * the stored set, the scan, the write, the log; score_all) and
 * score_store_changed.c (the change queue and score_changed).
 */
#ifndef ICPML_SCORE_STORE_H
#define ICPML_SCORE_STORE_H

#include "nodes/pg_list.h"
#include "utils/array.h"
#include "utils/timestamp.h"

#include "score.h"

/* The set a run writes. */
typedef enum ScoreTarget
{
	SCORE_SERVED,				/* icpml.account_scores */
	SCORE_VERSION				/* icpml.version_scores, one model_version */
} ScoreTarget;

/* A row to write. */
typedef struct ScoreRow
{
	int64		account_id;
	double		probability;
	int32		score;
	char		priority;
} ScoreRow;

/* One run over one set (see the header comment). */
typedef struct ScoreRun
{
	ScoreTarget target;
	int32		set_version;	/* SCORE_VERSION: its model_version */
	const char *kind;			/* "all", "changed", "adopt" */
	bool		full;			/* every account: unseen stored rows go */
	bool		candidates_all;	/* CandidatesStore every account read, not only those written */
	char		model;			/* 'x' or 'r', of the rows written */
	int32		model_version;	/* 0 for the rules */
	const char *relation;		/* what was read (NULL when adopting) */
	TimestampTz started_at;
	TimestampTz at;				/* scored_at of the rows written */
	int			batch_size;
	ScoreSource *source;		/* NULL when adopting */
	struct scoreset_hash *set;
	ScoreRow   *rows;			/* to write */
	int64		nrows;
	int64		caprows;
	int64		rows_read;
	int64		rows_written;
	int64		rows_deleted;
	bool		duplicate;		/* a key read twice: ERROR after the read */
	int64		duplicate_key;
	MemoryContext cxt;
	MemoryContext rowcxt;
} ScoreRun;

extern bool ScoreStoreLock(bool wait);
extern ScoreRun *ScoreStoreRunBegin(ScoreTarget target, int32 set_version, const char *kind, bool full,
				   ScoreSource *source, int batch_size);
extern void ScoreStoreLoadSet(ScoreRun *run, ArrayType *ids);
extern void ScoreStoreScan(ScoreRun *run, ArrayType *ids);
extern void ScoreStoreScanVersion(ScoreRun *run, int32 version);
extern void ScoreStoreWrite(ScoreRun *run, Datum *asked, int nasked);
extern int64 ScoreStoreLog(ScoreRun *run);
extern ScoreRun *ScoreStoreRunServedAll(ScoreSource *source, int batch_size);
extern int64 ScoreStoreDropVersion(int32 version);

#endif							/* ICPML_SCORE_STORE_H */
