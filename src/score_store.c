/*
 * score_store.c — the materialised scores: score_all(), score_changed() and
 * what they write (icpml.account_scores, icpml.version_scores,
 * icpml.score_runs; the queue icpml.score_queue).
 * This file holds a run and score_all(); score_changed() and the change
 * queue are in score_store_changed.c (score_store.h is shared).
 *
 * Sets.  icpml.account_scores is the served set: one row per account of the
 * deployed model's relation (the rules' when no model is deployed), what
 * recommend_accounts retrieves from and dashboards read.
 * icpml.version_scores holds challenger sets: the scores of other stored
 * versions, keyed by (model_version, account_id), for experiments between
 * model versions.
 *
 * A run (ScoreRun) brings one set up to date for some accounts (all of them
 * for score_all, the queued ones for score_changed):
 *   1. existing: the set's current rows for those accounts are read, as the
 *      extension owner, into a hash table;
 *   2. scan: the feature rows are read as the caller (row-level security
 *      applies) and streamed to a callback that scores each row natively
 *      and keeps it only when its score, priority, probability, model or
 *      version differs from the stored row, or there is none;
 *   3. write: the kept rows are upserted in batches, as the owner; when the
 *      table has no pages at all (a first fill), they are appended with the
 *      table AM's multi-insert instead and the table's indexes rebuilt once
 *      by sorting (REINDEX), rather than one B-tree insertion per row and
 *      index;
 *   4. delete: stored rows of accounts the read did not return (gone, or
 *      hidden from the role that runs it) are deleted;
 *   5. log: one row in icpml.score_runs.
 * The served set's runs feed the recommender's candidates (candidates.c),
 * in the same transaction, as the caller: every account a scoring run read
 * goes to CandidatesStore with its score, changed or not (the signals the
 * recommender reads may have changed where the score did not; it skips
 * rows equal to its own), an adopt passes the rows it wrote, deleted rows
 * go to CandidatesForget, and a full run or an adopt ends with
 * CandidatesPrune.
 * Unchanged rows are not written at all, so scored_at is when a row's score
 * last changed; the run log says when the set was last checked.
 *
 * Adopting: after deploy_model(v), the served set holds another version's
 * scores.  When v's set is materialised in version_scores (an experiment's
 * challenger, kept current by score_changed), the served set adopts it: the
 * same diff with v's rows as the source (no feature read, no tree walk),
 * then v's challenger rows are dropped.  Otherwise everything is rescored.
 * score_changed() notices the deploy by itself (the run log names the
 * served set's version and relation), so a deploy reaches retrieval within
 * one scheduled run.
 *
 * Concurrency: score_all and score_changed hold a transaction-level
 * advisory lock (key hashtext('icpml.score_all')) while they run, and take
 * SHARE ROW EXCLUSIVE on the table they write (readers go on).  A busy lock
 * makes score_changed return at once ("skipped").  The queue is popped
 * with FOR UPDATE SKIP LOCKED in the run's transaction and the queue
 * trigger upserts its rows, so a change committed while a run scores an
 * account is either seen by the run's read (a later statement) or waits
 * for the run to commit and queues the account again.
 *
 * Memory: the hash table of stored rows and the rows to write live in the
 * run's memory context (about 48 bytes per account of the set); each
 * scanned row is scored in a context reset after the row.
 */
#include "postgres.h"

#include <math.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "candidates.h"
#include "catalog.h"
#include "icpml.h"
#include "score.h"
#include "score_store.h"
#include "spi_scan.h"

PG_FUNCTION_INFO_V1(score_all);

/* rows per multi-insert call of the bulk path */
#define SCORE_STORE_MULTI_INSERT 1000
/* run log rows kept */
#define SCORE_STORE_RUNS_KEPT 1000

/* A stored row of the set (and whether this run read the account). */
typedef struct ScoreSetEntry
{
	int64		account_id;
	double		probability;
	int32		score;
	int32		model_version;	/* 0: NULL (the rules) */
	char		priority;		/* 'h', 'm', 'l' */
	char		model;			/* 'x' xgboost, 'r' rules, '?' anything else */
	bool		stored;			/* a row exists in the table */
	bool		seen;			/* read by this run */
	char		status;			/* simplehash's */
} ScoreSetEntry;

#define SH_PREFIX		scoreset
#define SH_ELEMENT_TYPE	ScoreSetEntry
#define SH_KEY_TYPE		int64
#define SH_KEY			account_id
#define SH_HASH_KEY(tb, key)	((uint32) IcpmlMix64((uint64) (key)))
#define SH_EQUAL(tb, a, b)	((a) == (b))
#define SH_SCOPE		static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/* plans kept for the backend, prepared as the owner */
static SPIPlanPtr plan_served_all = NULL;
static SPIPlanPtr plan_served_ids = NULL;
static SPIPlanPtr plan_version_all = NULL;
static SPIPlanPtr plan_version_ids = NULL;

static const char *
ScoreStoreModelName(char model)
{
	return model == 'x' ? "xgboost" : "rules";
}

/*
 * Take the scoring lock (transaction-level advisory lock); with `wait`
 * false, returns false at once when another run holds it.
 */
bool
ScoreStoreLock(bool wait)
{
	int			ret;
	bool		isnull;

	ret = SPI_execute(wait ? "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('icpml.score_all')::pg_catalog.int8), true"
					  : "SELECT true, pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('icpml.score_all')::pg_catalog.int8)",
					  false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "taking the scoring lock failed: %s", SPI_result_code_string(ret));
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
}

/* A new run in its own memory context (a child of the current one). */
ScoreRun *
ScoreStoreRunBegin(ScoreTarget target, int32 set_version, const char *kind, bool full,
				   ScoreSource *source, int batch_size)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "icpml score run",
											  ALLOCSET_DEFAULT_SIZES);
	ScoreRun   *run = MemoryContextAllocZero(cxt, sizeof(ScoreRun));

	run->cxt = cxt;
	run->rowcxt = AllocSetContextCreate(cxt, "icpml score row", ALLOCSET_SMALL_SIZES);
	run->target = target;
	run->set_version = set_version;
	run->kind = kind;
	run->full = full;
	run->source = source;
	run->batch_size = batch_size;
	run->started_at = GetCurrentTimestamp();
	run->at = GetCurrentTransactionStartTimestamp();
	if (source != NULL)
	{
		run->model_version = ScoreSourceModelVersion(source);
		run->model = run->model_version > 0 ? 'x' : 'r';
		/* the served set's candidates are refreshed for every account read */
		run->candidates_all = (target == SCORE_SERVED);
	}
	run->set = scoreset_create(cxt, 1024, NULL);
	return run;
}

/* One stored row of the set (SpiScan callback). */
static void
ScoreStoreExistingRow(TupleTableSlot *slot, void *arg)
{
	ScoreRun   *run = (ScoreRun *) arg;
	ScoreSetEntry *e;
	bool		found;

	e = scoreset_insert(run->set, DatumGetInt64(slot->tts_values[0]), &found);
	e->stored = true;
	e->seen = false;
	e->probability = DatumGetFloat8(slot->tts_values[1]);
	e->score = DatumGetInt32(slot->tts_values[2]);
	e->priority = *VARDATA_ANY(DatumGetPointer(slot->tts_values[3]));
	if (slot->tts_isnull[4])
		e->model = '?';
	else
	{
		text	   *m = DatumGetTextPP(slot->tts_values[4]);

		e->model = (VARSIZE_ANY_EXHDR(m) == 7 && memcmp(VARDATA_ANY(m), "xgboost", 7) == 0) ? 'x' :
			(VARSIZE_ANY_EXHDR(m) == 5 && memcmp(VARDATA_ANY(m), "rules", 5) == 0) ? 'r' : '?';
	}
	e->model_version = slot->tts_isnull[5] ? 0 : DatumGetInt32(slot->tts_values[5]);
}

/*
 * Oid of one of icpml's scores tables, InvalidOid when the installed SQL
 * predates it (a library newer than ALTER EXTENSION icpml UPDATE ran for).
 * Not CatalogRelid: no backend cache depends on these tables.
 */
static Oid
ScoreStoreTable(const char *name)
{
	return get_relname_relid(name, get_namespace_oid(ICPML_SCHEMA, false));
}

/* Prepare the plans reading a set's stored rows (once per backend, as the owner). */
static void
ScoreStorePreparePlans(ScoreTarget target)
{
	Oid			t_ids[1] = {INT8ARRAYOID};
	Oid			t_version[2] = {INT4OID, INT8ARRAYOID};

	if (target == SCORE_SERVED && plan_served_all == NULL)
	{
		plan_served_all = CatalogKeepPlan("SELECT s.account_id, s.probability, s.score, s.priority, s.model, s.model_version"
										  " FROM icpml.account_scores AS s", 0, NULL, 0);
		plan_served_ids = CatalogKeepPlan("SELECT s.account_id, s.probability, s.score, s.priority, s.model, s.model_version"
										  " FROM icpml.account_scores AS s"
										  " WHERE s.account_id OPERATOR(pg_catalog.=) ANY ($1)", 1, t_ids, 0);
	}
	if (target == SCORE_VERSION && plan_version_all == NULL)
	{
		plan_version_all = CatalogKeepPlan("SELECT s.account_id, s.probability, s.score, s.priority, 'xgboost'::pg_catalog.text,"
										   " s.model_version FROM icpml.version_scores AS s"
										   " WHERE s.model_version OPERATOR(pg_catalog.=) $1", 1, t_version, 0);
		plan_version_ids = CatalogKeepPlan("SELECT s.account_id, s.probability, s.score, s.priority, 'xgboost'::pg_catalog.text,"
										   " s.model_version FROM icpml.version_scores AS s"
										   " WHERE s.model_version OPERATOR(pg_catalog.=) $1"
										   " AND s.account_id OPERATOR(pg_catalog.=) ANY ($2)", 2, t_version, 0);
	}
}

/*
 * Read the set's stored rows (all of them, or those of `ids`) into the
 * run's hash table, as the owner.
 */
void
ScoreStoreLoadSet(ScoreRun *run, ArrayType *ids)
{
	CatalogOwnerState owner;
	Datum		args[2];
	SPIPlanPtr	plan;
	MemoryContext oldcxt;

	ScoreStorePreparePlans(run->target);
	if (run->target == SCORE_SERVED)
	{
		plan = ids ? plan_served_ids : plan_served_all;
		args[0] = PointerGetDatum(ids);
	}
	else
	{
		plan = ids ? plan_version_ids : plan_version_all;
		args[0] = Int32GetDatum(run->set_version);
		args[1] = PointerGetDatum(ids);
	}
	oldcxt = MemoryContextSwitchTo(run->cxt);
	CatalogSwitchToOwner(&owner);
	(void) SpiScan(plan, args, false, ScoreStoreExistingRow, run,
				   run->target == SCORE_SERVED ? "icpml.account_scores" : "icpml.version_scores");
	CatalogRestoreUser(&owner);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * One account's new score: compare it with the stored row, keep it to
 * write when anything differs.  A key read twice is an ERROR.
 */
static void
ScoreStoreConsider(ScoreRun *run, int64 account_id, double probability, int32 score,
				   char priority)
{
	ScoreSetEntry *e;
	bool		found;

	e = scoreset_insert(run->set, account_id, &found);
	if (!found)
		e->stored = false;
	else if (e->seen)
	{
		/* reported when the read is over (an error here would name its SQL) */
		if (!run->duplicate)
		{
			run->duplicate = true;
			run->duplicate_key = account_id;
		}
		return;
	}
	e->seen = true;
	run->rows_read++;
	if (e->stored && e->probability == probability && e->score == score &&
		e->priority == priority && e->model == run->model &&
		e->model_version == run->model_version)
		return;					/* unchanged: nothing to write */
	/* the entry now holds the account's new score (CandidatesStore reads it) */
	e->probability = probability;
	e->score = score;
	e->priority = priority;

	if (run->nrows == run->caprows)
	{
		run->caprows = run->caprows ? run->caprows * 2 : 4096;
		run->rows = run->rows ?
			repalloc_huge(run->rows, sizeof(ScoreRow) * run->caprows) :
			MemoryContextAllocHuge(run->cxt, sizeof(ScoreRow) * run->caprows);
	}
	run->rows[run->nrows].account_id = account_id;
	run->rows[run->nrows].probability = probability;
	run->rows[run->nrows].score = score;
	run->rows[run->nrows].priority = priority;
	run->nrows++;
}

/* One feature row read as the caller: score it natively (SpiScan callback). */
static void
ScoreStoreScanRow(TupleTableSlot *slot, void *arg)
{
	ScoreRun   *run = (ScoreRun *) arg;
	MemoryContext oldcxt;
	IcpScore	s;

	/* a row without a key cannot be stored: it has no account */
	if (slot->tts_isnull[0])
		return;
	if ((run->rows_read & 1023) == 0)
		CHECK_FOR_INTERRUPTS();
	oldcxt = MemoryContextSwitchTo(run->rowcxt);
	ScoreSourceScoreSlot(run->source, slot, &s, false);
	MemoryContextSwitchTo(oldcxt);
	ScoreStoreConsider(run, s.account_id, s.probability, s.score, s.priority[0]);
	MemoryContextReset(run->rowcxt);
}

/*
 * Read and score the source's feature rows as the caller: all of them, or
 * those of `ids`.
 */
void
ScoreStoreScan(ScoreRun *run, ArrayType *ids)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(run->cxt);
	Datum		arg = PointerGetDatum(ids);
	SPIPlanPtr	plan;

	if (ids == NULL)
		plan = ScoreSourcePlan(run->source, RELATION_ALL);
	else
		plan = ScoreSourcePlan(run->source, ArrayGetNItems(ARR_NDIM(ids), ARR_DIMS(ids)) >= RELATION_LARGE_ARRAY ?
							   RELATION_MANY_LARGE : RELATION_MANY);
	run->relation = pstrdup(ScoreSourceRelation(run->source));
	ScoreScanNoJit(plan, &arg, ScoreStoreScanRow, run, run->relation);
	MemoryContextSwitchTo(oldcxt);
	if (run->duplicate)
		ScoreDuplicateKey(run->source, run->duplicate_key);
}

/* One stored challenger row (SpiScan callback): the adopted set's source. */
static void
ScoreStoreAdoptRow(TupleTableSlot *slot, void *arg)
{
	ScoreRun   *run = (ScoreRun *) arg;

	ScoreStoreConsider(run, DatumGetInt64(slot->tts_values[0]),
					   DatumGetFloat8(slot->tts_values[1]), DatumGetInt32(slot->tts_values[2]),
					   *VARDATA_ANY(DatumGetPointer(slot->tts_values[3])));
}

/* Read version v's challenger rows as the served set's new rows (as the owner). */
void
ScoreStoreScanVersion(ScoreRun *run, int32 version)
{
	CatalogOwnerState owner;
	Datum		arg = Int32GetDatum(version);
	MemoryContext oldcxt = MemoryContextSwitchTo(run->cxt);

	ScoreStorePreparePlans(SCORE_VERSION);
	CatalogSwitchToOwner(&owner);
	(void) SpiScan(plan_version_all, &arg, false, ScoreStoreAdoptRow, run, "icpml.version_scores");
	CatalogRestoreUser(&owner);
	MemoryContextSwitchTo(oldcxt);
	if (run->duplicate)
		elog(ERROR, "account " INT64_FORMAT " is stored twice for version %d (please report a bug)",
			 run->duplicate_key, version);
}

/* The table a run writes, locked against other writers (not readers). */
static Oid
ScoreStoreTargetRelid(ScoreRun *run)
{
	const char *name = run->target == SCORE_SERVED ? "account_scores" : "version_scores";
	Oid			relid = ScoreStoreTable(name);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.%s\" does not exist", ICPML_SCHEMA, name),
				 errhint("Run ALTER EXTENSION icpml UPDATE.")));

	LockRelationOid(relid, ShareRowExclusiveLock);
	return relid;
}

/*
 * The bulk path of a first fill: append the rows with the table AM's
 * multi-insert (constraints checked), then rebuild every index of the
 * table once, by sorting.  Only for a table with no pages, which the lock
 * taken by ScoreStoreTargetRelid keeps empty of anyone else's rows; the
 * rebuild holds ACCESS EXCLUSIVE on the indexes until commit, so readers
 * of a first fill wait for it rather than see an empty table.  Returns
 * false (nothing done) when the table is not empty or has triggers.
 */
static bool
ScoreStoreBulkFill(ScoreRun *run, Oid relid)
{
	Relation	rel = table_open(relid, ShareRowExclusiveLock);
	TupleDesc	desc = RelationGetDescr(rel);
	AttrNumber	att_id = InvalidAttrNumber,
				att_score = InvalidAttrNumber,
				att_priority = InvalidAttrNumber,
				att_probability = InvalidAttrNumber,
				att_model = InvalidAttrNumber,
				att_version = InvalidAttrNumber,
				att_at = InvalidAttrNumber;
	TupleTableSlot *slots[SCORE_STORE_MULTI_INSERT];
	BulkInsertState bis;
	CommandId	cid;
	EState	   *estate;
	ResultRelInfo *rri;
	Datum		model_datum,
				prio_datum[3];
	int64		i;
	int			k,
				n;
	ReindexParams params = {0};

	if (RelationGetNumberOfBlocks(rel) != 0 || rel->trigdesc != NULL)
	{
		table_close(rel, NoLock);
		return false;
	}
	for (k = 0; k < desc->natts; k++)
	{
		const char *name = NameStr(TupleDescAttr(desc, k)->attname);

		if (TupleDescAttr(desc, k)->attisdropped)
			continue;
		if (strcmp(name, "account_id") == 0)
			att_id = k + 1;
		else if (strcmp(name, "score") == 0)
			att_score = k + 1;
		else if (strcmp(name, "priority") == 0)
			att_priority = k + 1;
		else if (strcmp(name, "probability") == 0)
			att_probability = k + 1;
		else if (strcmp(name, "model") == 0)
			att_model = k + 1;
		else if (strcmp(name, "model_version") == 0)
			att_version = k + 1;
		else if (strcmp(name, "scored_at") == 0)
			att_at = k + 1;
	}
	if (att_id == InvalidAttrNumber || att_score == InvalidAttrNumber ||
		att_priority == InvalidAttrNumber || att_probability == InvalidAttrNumber ||
		att_version == InvalidAttrNumber || att_at == InvalidAttrNumber ||
		(run->target == SCORE_SERVED && att_model == InvalidAttrNumber))
		elog(ERROR, "%s lacks a column score_all writes (please report a bug)",
			 RelationGetRelationName(rel));

	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	model_datum = CStringGetTextDatum(ScoreStoreModelName(run->model));
	prio_datum[0] = CStringGetTextDatum("high");
	prio_datum[1] = CStringGetTextDatum("medium");
	prio_datum[2] = CStringGetTextDatum("low");
	for (k = 0; k < SCORE_STORE_MULTI_INSERT; k++)
		slots[k] = table_slot_create(rel, NULL);
	bis = GetBulkInsertState();
	cid = GetCurrentCommandId(true);

	for (i = 0; i < run->nrows; i += n)
	{
		CHECK_FOR_INTERRUPTS();
		n = (int) Min(SCORE_STORE_MULTI_INSERT, run->nrows - i);
		for (k = 0; k < n; k++)
		{
			TupleTableSlot *slot = slots[k];
			const ScoreRow *r = &run->rows[i + k];
			int			version = run->target == SCORE_SERVED ? run->model_version : run->set_version;

			ExecClearTuple(slot);
			memset(slot->tts_isnull, true, sizeof(bool) * desc->natts);
			slot->tts_values[att_id - 1] = Int64GetDatum(r->account_id);
			slot->tts_values[att_score - 1] = Int32GetDatum(r->score);
			slot->tts_values[att_priority - 1] =
				prio_datum[r->priority == 'h' ? 0 : r->priority == 'm' ? 1 : 2];
			slot->tts_values[att_probability - 1] = Float8GetDatum(r->probability);
			slot->tts_values[att_version - 1] = Int32GetDatum(version);
			slot->tts_values[att_at - 1] = TimestampTzGetDatum(run->at);
			slot->tts_isnull[att_id - 1] = slot->tts_isnull[att_score - 1] =
				slot->tts_isnull[att_priority - 1] = slot->tts_isnull[att_probability - 1] =
				slot->tts_isnull[att_at - 1] = false;
			slot->tts_isnull[att_version - 1] = (version == 0);
			if (att_model != InvalidAttrNumber)
			{
				slot->tts_values[att_model - 1] = model_datum;
				slot->tts_isnull[att_model - 1] = false;
			}
			ExecStoreVirtualTuple(slot);
			if (rel->rd_att->constr)
				ExecConstraints(rri, slot, estate);
		}
		table_multi_insert(rel, slots, n, cid, 0, bis);
	}
	FreeBulkInsertState(bis);
	for (k = 0; k < SCORE_STORE_MULTI_INSERT; k++)
		ExecDropSingleTupleTableSlot(slots[k]);
	FreeExecutorState(estate);
	table_close(rel, NoLock);

	/* the rows are there; the indexes, built by sorting, see them */
	CommandCounterIncrement();
	(void) reindex_relation(relid, 0, &params);
	CommandCounterIncrement();
	run->rows_written += run->nrows;
	return true;
}

/* Upsert the rows to write in batches (as the owner). */
static void
ScoreStoreUpsert(ScoreRun *run)
{
	static SPIPlanPtr upsert_served = NULL;
	static SPIPlanPtr upsert_version = NULL;
	Datum	   *ids,
			   *scores,
			   *priorities,
			   *probs;
	Datum		prio_datum[3];
	int64		i;
	int			n,
				k;
	CatalogOwnerState owner;
	MemoryContext batchcxt,
				oldcxt;

	if (upsert_served == NULL)
	{
		Oid			types_served[7] = {INT8ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, FLOAT8ARRAYOID,
		TEXTOID, INT4OID, TIMESTAMPTZOID};
		Oid			types_version[6] = {INT8ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, FLOAT8ARRAYOID,
		INT4OID, TIMESTAMPTZOID};

		upsert_served = CatalogKeepPlan("INSERT INTO icpml.account_scores AS s"
										" (account_id, score, priority, probability, model, model_version, scored_at)"
										" SELECT u.a, u.s, u.p, u.pr, $5, $6, $7"
										" FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
										" pg_catalog.unnest($3), pg_catalog.unnest($4)) AS u(a, s, p, pr)"
										" ON CONFLICT (account_id) DO UPDATE SET score = excluded.score,"
										" priority = excluded.priority, probability = excluded.probability,"
										" model = excluded.model, model_version = excluded.model_version,"
										" scored_at = excluded.scored_at",
										7, types_served, 0);
		upsert_version = CatalogKeepPlan("INSERT INTO icpml.version_scores AS s"
										 " (model_version, account_id, score, priority, probability, scored_at)"
										 " SELECT $5, u.a, u.s, u.p, u.pr, $6"
										 " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
										 " pg_catalog.unnest($3), pg_catalog.unnest($4)) AS u(a, s, p, pr)"
										 " ON CONFLICT (model_version, account_id) DO UPDATE SET score = excluded.score,"
										 " priority = excluded.priority, probability = excluded.probability,"
										 " scored_at = excluded.scored_at",
										 6, types_version, 0);
	}

	batchcxt = AllocSetContextCreate(run->cxt, "icpml score batch", ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(run->cxt);
	ids = palloc(sizeof(Datum) * run->batch_size);
	scores = palloc(sizeof(Datum) * run->batch_size);
	priorities = palloc(sizeof(Datum) * run->batch_size);
	probs = palloc(sizeof(Datum) * run->batch_size);
	prio_datum[0] = CStringGetTextDatum("high");
	prio_datum[1] = CStringGetTextDatum("medium");
	prio_datum[2] = CStringGetTextDatum("low");
	MemoryContextSwitchTo(oldcxt);

	for (i = 0; i < run->nrows; i += n)
	{
		Datum		args[7];
		char		nulls[7] = "       ";
		int			ret;

		CHECK_FOR_INTERRUPTS();
		n = (int) Min(run->batch_size, run->nrows - i);
		for (k = 0; k < n; k++)
		{
			const ScoreRow *r = &run->rows[i + k];

			ids[k] = Int64GetDatum(r->account_id);
			scores[k] = Int32GetDatum(r->score);
			priorities[k] = prio_datum[r->priority == 'h' ? 0 : r->priority == 'm' ? 1 : 2];
			probs[k] = Float8GetDatum(r->probability);
		}
		oldcxt = MemoryContextSwitchTo(batchcxt);
		args[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[1] = PointerGetDatum(construct_array(scores, n, INT4OID, 4, true, TYPALIGN_INT));
		args[2] = PointerGetDatum(construct_array(priorities, n, TEXTOID, -1, false, TYPALIGN_INT));
		args[3] = PointerGetDatum(construct_array(probs, n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		CatalogSwitchToOwner(&owner);
		if (run->target == SCORE_SERVED)
		{
			args[4] = CStringGetTextDatum(ScoreStoreModelName(run->model));
			args[5] = Int32GetDatum(run->model_version);
			if (run->model_version == 0)
				nulls[5] = 'n';
			args[6] = TimestampTzGetDatum(run->at);
			ret = SPI_execute_plan(upsert_served, args, nulls, false, 0);
		}
		else
		{
			args[4] = Int32GetDatum(run->set_version);
			args[5] = TimestampTzGetDatum(run->at);
			ret = SPI_execute_plan(upsert_version, args, nulls, false, 0);
		}
		CatalogRestoreUser(&owner);
		MemoryContextSwitchTo(oldcxt);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "writing the scores failed: %s", SPI_result_code_string(ret));
		run->rows_written += n;
		MemoryContextReset(batchcxt);
	}
}

/* Delete the stored rows of these accounts from the run's set (as the owner). */
static void
ScoreStoreDeleteIds(ScoreRun *run, Datum *ids, int64 nids)
{
	static SPIPlanPtr delete_served = NULL;
	static SPIPlanPtr delete_version = NULL;
	CatalogOwnerState owner;
	int64		i;
	int			n;

	if (delete_served == NULL)
	{
		Oid			types[2] = {INT8ARRAYOID, INT4OID};

		delete_served = CatalogKeepPlan("DELETE FROM icpml.account_scores AS s"
										" WHERE s.account_id OPERATOR(pg_catalog.=) ANY ($1)", 1, types, 0);
		delete_version = CatalogKeepPlan("DELETE FROM icpml.version_scores AS s"
										 " WHERE s.model_version OPERATOR(pg_catalog.=) $2"
										 " AND s.account_id OPERATOR(pg_catalog.=) ANY ($1)", 2, types, 0);
	}
	for (i = 0; i < nids; i += n)
	{
		Datum		args[2];
		int			ret;

		n = (int) Min(run->batch_size, nids - i);
		args[0] = PointerGetDatum(construct_array(ids + i, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[1] = Int32GetDatum(run->set_version);
		CatalogSwitchToOwner(&owner);
		ret = SPI_execute_plan(run->target == SCORE_SERVED ? delete_served : delete_version,
							   args, NULL, false, 0);
		CatalogRestoreUser(&owner);
		if (ret != SPI_OK_DELETE)
			elog(ERROR, "deleting scores failed: %s", SPI_result_code_string(ret));
		run->rows_deleted += SPI_processed;
		/* the recommender's candidates follow (a full run prunes them at its end) */
		if (run->target == SCORE_SERVED && !run->full)
			CandidatesForget(args[0]);
	}
}

/*
 * Pass rows of the served set to the recommender's candidates
 * (CandidatesStore), in batches, as the caller.
 */
static void
ScoreStoreCandidates(ScoreRun *run, const ScoreRow *rows, int64 nrows)
{
	MemoryContext batchcxt = AllocSetContextCreate(run->cxt, "icpml score candidates",
												   ALLOCSET_DEFAULT_SIZES);
	MemoryContext oldcxt = MemoryContextSwitchTo(batchcxt);
	Datum	   *ids = palloc(sizeof(Datum) * run->batch_size);
	Datum	   *probs = palloc(sizeof(Datum) * run->batch_size);
	Datum	   *scores = palloc(sizeof(Datum) * run->batch_size);
	Datum	   *priorities = palloc(sizeof(Datum) * run->batch_size);
	Datum		prio_datum[3];
	int64		i;
	int			n,
				k;

	MemoryContextSwitchTo(run->cxt);
	prio_datum[0] = CStringGetTextDatum("high");
	prio_datum[1] = CStringGetTextDatum("medium");
	prio_datum[2] = CStringGetTextDatum("low");
	for (i = 0; i < nrows; i += n)
	{
		MemoryContext callcxt = AllocSetContextCreate(batchcxt, "icpml score candidates batch",
													  ALLOCSET_DEFAULT_SIZES);

		CHECK_FOR_INTERRUPTS();
		n = (int) Min(run->batch_size, nrows - i);
		for (k = 0; k < n; k++)
		{
			const ScoreRow *r = &rows[i + k];

			ids[k] = Int64GetDatum(r->account_id);
			probs[k] = Float8GetDatum(r->probability);
			scores[k] = Int32GetDatum(r->score);
			priorities[k] = prio_datum[r->priority == 'h' ? 0 : r->priority == 'm' ? 1 : 2];
		}
		MemoryContextSwitchTo(callcxt);
		CandidatesStore(PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
						PointerGetDatum(construct_array(probs, n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
						PointerGetDatum(construct_array(scores, n, INT4OID, 4, true, TYPALIGN_INT)),
						PointerGetDatum(construct_array(priorities, n, TEXTOID, -1, false, TYPALIGN_INT)));
		MemoryContextSwitchTo(run->cxt);
		MemoryContextDelete(callcxt);
	}
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(batchcxt);
}

/*
 * Write the run: the changed rows (bulk on an empty table, upserts
 * otherwise), then delete the stored rows the run did not read — every one
 * in a full run; in a partial run only those of the accounts it was asked
 * for (`asked`, NULL in a full run).
 */
void
ScoreStoreWrite(ScoreRun *run, Datum *asked, int nasked)
{
	Oid			relid = ScoreStoreTargetRelid(run);
	Datum	   *gone;
	int64		ngone = 0;
	MemoryContext oldcxt;

	if (run->nrows > 0 && !ScoreStoreBulkFill(run, relid))
		ScoreStoreUpsert(run);
	if (run->target == SCORE_SERVED)
	{
		if (run->candidates_all)
		{
			/* every account read, with its new score (changed or not) */
			scoreset_iterator it;
			ScoreSetEntry *e;
			ScoreRow   *all;
			int64		nall = 0;

			all = MemoryContextAllocHuge(run->cxt, sizeof(ScoreRow) * Max(run->rows_read, 1));
			scoreset_start_iterate(run->set, &it);
			while ((e = scoreset_iterate(run->set, &it)) != NULL)
				if (e->seen && nall < run->rows_read)
				{
					all[nall].account_id = e->account_id;
					all[nall].probability = e->probability;
					all[nall].score = e->score;
					all[nall].priority = e->priority;
					nall++;
				}
			ScoreStoreCandidates(run, all, nall);
			pfree(all);
		}
		else
			ScoreStoreCandidates(run, run->rows, run->nrows);
	}

	oldcxt = MemoryContextSwitchTo(run->cxt);
	if (asked == NULL)
	{
		scoreset_iterator it;
		ScoreSetEntry *e;

		gone = palloc(sizeof(Datum) * Max(run->set->members, 1));
		scoreset_start_iterate(run->set, &it);
		while ((e = scoreset_iterate(run->set, &it)) != NULL)
			if (e->stored && !e->seen)
				gone[ngone++] = Int64GetDatum(e->account_id);
	}
	else
	{
		int			i;

		gone = palloc(sizeof(Datum) * Max(nasked, 1));
		for (i = 0; i < nasked; i++)
		{
			ScoreSetEntry *e = scoreset_lookup(run->set, DatumGetInt64(asked[i]));

			if (e != NULL && e->stored && !e->seen)
			{
				gone[ngone++] = asked[i];
				e->stored = false;	/* an id asked for twice is deleted once */
			}
		}
	}
	MemoryContextSwitchTo(oldcxt);
	if (ngone > 0)
		ScoreStoreDeleteIds(run, gone, ngone);
	if (run->target == SCORE_SERVED && run->full)
		CandidatesPrune();
}

/* Log the run in icpml.score_runs (as the owner); returns its run_id. */
int64
ScoreStoreLog(ScoreRun *run)
{
	static SPIPlanPtr log_plan = NULL;
	static SPIPlanPtr prune_plan = NULL;
	CatalogOwnerState owner;
	Datum		args[10];
	char		nulls[10] = "          ";
	int64		run_id;
	bool		isnull;
	int			ret;

	if (!OidIsValid(ScoreStoreTable("score_runs")))
		return 0;				/* the installed SQL predates the run log */
	if (log_plan == NULL)
	{
		Oid			types[10] = {TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID, TIMESTAMPTZOID,
		INT8OID, INT8OID, INT8OID, INT4OID};
		Oid			prune_types[1] = {INT8OID};

		log_plan = CatalogKeepPlan("INSERT INTO icpml.score_runs (kind, target, model, model_version, relation,"
								   " started_at, finished_at, rows_read, rows_written, rows_deleted, set_version)"
								   " VALUES ($1, $2, $3, $4, $5, $6, pg_catalog.clock_timestamp(), $7, $8, $9, $10)"
								   " RETURNING run_id", 10, types, 0);
		prune_plan = CatalogKeepPlan("DELETE FROM icpml.score_runs AS r"
									 " WHERE r.run_id OPERATOR(pg_catalog.<=) $1", 1, prune_types, 0);
	}
	args[0] = CStringGetTextDatum(run->kind);
	args[1] = CStringGetTextDatum(run->target == SCORE_SERVED ? "served" : "version");
	args[2] = CStringGetTextDatum(ScoreStoreModelName(run->model));
	args[3] = Int32GetDatum(run->model_version);
	nulls[3] = run->model_version == 0 ? 'n' : ' ';
	if (run->relation)
		args[4] = CStringGetTextDatum(run->relation);
	else
		nulls[4] = 'n';
	args[5] = TimestampTzGetDatum(run->started_at);
	args[6] = Int64GetDatum(run->rows_read);
	args[7] = Int64GetDatum(run->rows_written);
	args[8] = Int64GetDatum(run->rows_deleted);
	args[9] = Int32GetDatum(run->set_version);
	nulls[9] = run->target == SCORE_SERVED ? 'n' : ' ';

	CatalogSwitchToOwner(&owner);
	ret = SPI_execute_plan(log_plan, args, nulls, false, 1);
	if (ret != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "logging the scoring run failed: %s", SPI_result_code_string(ret));
	run_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	/* the log keeps the last runs */
	if (run_id > SCORE_STORE_RUNS_KEPT)
	{
		Datum		cut = Int64GetDatum(run_id - SCORE_STORE_RUNS_KEPT);

		if (SPI_execute_plan(prune_plan, &cut, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "pruning icpml.score_runs failed");
	}
	CatalogRestoreUser(&owner);
	return run_id;
}

/*
 * Fill the recommender's industry and technology vocabularies from the
 * relation just scored while they were never set (set_bandit_vocabulary(),
 * as the caller, with icpml.feature_relation pointed at that relation for
 * the call).  In a subtransaction: whatever fails there is a WARNING, never
 * a failed scoring run.
 */
static void
ScoreStoreFillVocabulary(const char *relation)
{
	CatalogOwnerState owner;
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	int			ret;
	bool		unset = false;

	CatalogSwitchToOwner(&owner);
	ret = SPI_execute("SELECT s.industries IS NULL AND s.technologies IS NULL FROM icpml.bandit_settings AS s",
					  true, 0);
	CatalogRestoreUser(&owner);
	if (ret == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		unset = !isnull && DatumGetBool(d);
	}
	if (!unset)
		return;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		int			nest = NewGUCNestLevel();

		/*
		 * icpml.feature_relation is a superuser setting; this is icpml
		 * pointing it, for one call, at the relation it just read as the
		 * caller (a resolved stored name, not caller text)
		 */
		(void) set_config_option("icpml.feature_relation", relation, PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		if (SPI_execute("SELECT FROM icpml.set_bandit_vocabulary()", false, 0) != SPI_OK_SELECT)
			elog(ERROR, "set_bandit_vocabulary() failed");
		AtEOXact_GUC(true, nest);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		ereport(WARNING,
				(errmsg("the recommender's vocabulary was not filled from %s: %s", relation, edata->message),
				 errhint("The scores were written. Set the vocabulary with icpml.set_bandit_vocabulary(industries => ..., technologies => ...).")));
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

/*
 * A full run of the served set: every account of the source's relation;
 * then the vocabulary, and the deployed version's challenger rows go (the
 * served set has them now).
 */
ScoreRun *
ScoreStoreRunServedAll(ScoreSource *source, int batch_size)
{
	ScoreRun   *run = ScoreStoreRunBegin(SCORE_SERVED, 0, "all", true, source, batch_size);

	ScoreStoreLoadSet(run, NULL);
	ScoreStoreScan(run, NULL);
	ScoreStoreWrite(run, NULL, 0);
	ScoreStoreFillVocabulary(run->relation);
	return run;
}

/* Delete every challenger row of a version (as the owner); returns how many. */
int64
ScoreStoreDropVersion(int32 version)
{
	static SPIPlanPtr drop_plan = NULL;
	CatalogOwnerState owner;
	Datum		arg = Int32GetDatum(version);
	int			ret;

	if (!OidIsValid(ScoreStoreTable("version_scores")))
		return 0;				/* the installed SQL predates challenger sets */
	if (drop_plan == NULL)
	{
		Oid			type = INT4OID;

		drop_plan = CatalogKeepPlan("DELETE FROM icpml.version_scores AS s"
									" WHERE s.model_version OPERATOR(pg_catalog.=) $1", 1, &type, 0);
	}
	CatalogSwitchToOwner(&owner);
	ret = SPI_execute_plan(drop_plan, &arg, NULL, false, 0);
	CatalogRestoreUser(&owner);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "dropping challenger scores failed: %s", SPI_result_code_string(ret));
	return (int64) SPI_processed;
}

/*
 * score_all(batch_size integer, version integer) → bigint
 * Bring a whole set up to date and return the number of accounts read:
 * the served set (version NULL or the deployed one) or a challenger set.
 */
Datum
score_all(PG_FUNCTION_ARGS)
{
	int32		batch_size = PG_ARGISNULL(0) ? 10000 : PG_GETARG_INT32(0);
	/* the 0.3.0 signature (one argument) until ALTER EXTENSION icpml UPDATE */
	bool		challenger = PG_NARGS() > 1 && !PG_ARGISNULL(1);
	int32		version = challenger ? PG_GETARG_INT32(1) : 0;
	ScoreSource source;
	ScoreRun   *run;
	int64		total;

	if (batch_size < 100 || batch_size > 1000000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be between 100 and 1000000"),
				 errhint("The default, 10000, suits most tables.")));
	if (challenger && version <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("version must be a stored model version"),
				 errhint("Pass a version listed by SELECT * FROM icpml.list_models(), or NULL for the deployed model.")));

	SPI_connect();
	(void) ScoreStoreLock(true);
	ScoreSourceDeployed(&source);
	if (challenger && (source.model == NULL || ScoreSourceModelVersion(&source) != version))
	{
		ScoreSourceVersion(&source, version);
		run = ScoreStoreRunBegin(SCORE_VERSION, version, "all", true, &source, batch_size);
		ScoreStoreLoadSet(run, NULL);
		ScoreStoreScan(run, NULL);
		ScoreStoreWrite(run, NULL, 0);
	}
	else
	{
		run = ScoreStoreRunServedAll(&source, batch_size);
		if (run->model_version > 0)
			(void) ScoreStoreDropVersion(run->model_version);
	}
	(void) ScoreStoreLog(run);
	total = run->rows_read;
	SPI_finish();
	PG_RETURN_INT64(total);
}
