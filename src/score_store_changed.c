/*
 * score_store_changed.c — score_changed(): the incremental path of the
 * materialised scores.  It pops the change queue (icpml.score_queue) and
 * rescores the queued accounts in the served set and in every challenger
 * set, with the runs of score_store.c (see its header comment for the
 * sets, a run, adopting and the concurrency rules); it notices a deploy
 * from the run log (icpml.score_runs) and adopts or rescores the served
 * set instead.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "catalog.h"
#include "icpml.h"
#include "score.h"
#include "score_store.h"

PG_FUNCTION_INFO_V1(score_changed);

/* What the served set holds, from the run log: model, version and relation. */
typedef struct ScoreServedState
{
	bool		known;
	char		model;
	int32		model_version;
	char	   *relation;
} ScoreServedState;

static void
ScoreStoreServedState(ScoreServedState *st)
{
	CatalogOwnerState owner;
	int			ret;

	memset(st, 0, sizeof(*st));
	CatalogSwitchToOwner(&owner);
	/* an emptied table (TRUNCATE) is refilled whatever the log says */
	ret = SPI_execute("SELECT r.model, r.model_version, r.relation FROM icpml.score_runs AS r"
					  " WHERE r.target OPERATOR(pg_catalog.=) 'served' AND r.kind OPERATOR(pg_catalog.<>) 'changed'"
					  " AND EXISTS (SELECT FROM icpml.account_scores)"
					  " ORDER BY r.run_id DESC LIMIT 1", false, 1);
	CatalogRestoreUser(&owner);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading icpml.score_runs failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		bool		isnull;
		char	   *model = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		Datum		v = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);

		st->known = true;
		st->model = (model && strcmp(model, "xgboost") == 0) ? 'x' : 'r';
		st->model_version = isnull ? 0 : DatumGetInt32(v);
		st->relation = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	}
}

/* Is version v's challenger set complete (a full run of it logged, rows stored)? */
static bool
ScoreStoreVersionComplete(int32 version)
{
	CatalogOwnerState owner;
	Datum		arg = Int32GetDatum(version);
	Oid			type = INT4OID;
	int			ret;

	CatalogSwitchToOwner(&owner);
	ret = SPI_execute_with_args("SELECT FROM icpml.score_runs AS r"
								" WHERE r.target OPERATOR(pg_catalog.=) 'version' AND r.kind OPERATOR(pg_catalog.=) 'all'"
								" AND r.set_version OPERATOR(pg_catalog.=) $1"
								" AND EXISTS (SELECT FROM icpml.version_scores AS s"
								"             WHERE s.model_version OPERATOR(pg_catalog.=) $1)"
								" LIMIT 1", 1, &type, &arg, NULL, false, 1);
	CatalogRestoreUser(&owner);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading icpml.score_runs failed: %s", SPI_result_code_string(ret));
	return SPI_processed == 1;
}

/* Pop up to max_rows queued accounts (as the owner); *more when some are left. */
static ArrayType *
ScoreStorePopQueue(int32 max_rows, int *n, bool *more)
{
	static SPIPlanPtr pop_plan = NULL;
	CatalogOwnerState owner;
	Datum		arg = Int32GetDatum(max_rows);
	Datum	   *ids;
	ArrayType  *result;
	uint64		i;
	int			ret;

	if (pop_plan == NULL)
	{
		Oid			type = INT4OID;

		pop_plan = CatalogKeepPlan("DELETE FROM icpml.score_queue AS q"
								   " WHERE q.account_id OPERATOR(pg_catalog.=) ANY (ARRAY("
								   "   SELECT q2.account_id FROM icpml.score_queue AS q2"
								   "   LIMIT $1 FOR UPDATE SKIP LOCKED))"
								   " RETURNING q.account_id", 1, &type, 0);
	}
	CatalogSwitchToOwner(&owner);
	ret = SPI_execute_plan(pop_plan, &arg, NULL, false, 0);
	if (ret != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "reading icpml.score_queue failed: %s", SPI_result_code_string(ret));
	*n = (int) SPI_processed;
	ids = palloc(sizeof(Datum) * Max(*n, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		ids[i] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
	}
	result = construct_array(ids, *n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	ret = SPI_execute("SELECT EXISTS (SELECT FROM icpml.score_queue)", false, 1);
	*more = false;
	if (ret == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;

		*more = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	CatalogRestoreUser(&owner);
	return result;
}

/* The versions with challenger rows (a loose index scan), as the owner. */
static List *
ScoreStoreChallengers(void)
{
	CatalogOwnerState owner;
	List	   *versions = NIL;
	uint64		i;
	int			ret;

	CatalogSwitchToOwner(&owner);
	ret = SPI_execute("WITH RECURSIVE v(m) AS ("
					  "  SELECT pg_catalog.min(s.model_version) FROM icpml.version_scores AS s"
					  "  UNION ALL"
					  "  SELECT (SELECT pg_catalog.min(s.model_version) FROM icpml.version_scores AS s"
					  "          WHERE s.model_version OPERATOR(pg_catalog.>) v.m)"
					  "  FROM v WHERE v.m IS NOT NULL)"
					  " SELECT v.m, EXISTS (SELECT FROM icpml.models AS m WHERE m.version OPERATOR(pg_catalog.=) v.m)"
					  " FROM v WHERE v.m IS NOT NULL", false, 0);
	CatalogRestoreUser(&owner);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading icpml.version_scores failed: %s", SPI_result_code_string(ret));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int32		v = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		bool		exists = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));

		/* a deleted model's challenger rows are dropped (-v marks them) */
		versions = lappend_int(versions, exists ? v : -v);
	}
	return versions;
}

/* The jsonb score_changed returns. */
static Datum
ScoreStoreResult(int64 run_id, const char *kind, int nqueued, bool more, int64 read,
				 int64 written, int64 deleted, List *versions, const char *reason)
{
	StringInfoData buf;
	ListCell   *lc;
	bool		first = true;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"kind\": \"%s\"", kind);
	if (run_id > 0)
		appendStringInfo(&buf, ", \"run_id\": " INT64_FORMAT, run_id);
	appendStringInfo(&buf, ", \"queued\": %d, \"more\": %s, \"scored\": " INT64_FORMAT
					 ", \"written\": " INT64_FORMAT ", \"deleted\": " INT64_FORMAT ", \"versions\": [",
					 nqueued, more ? "true" : "false", read, written, deleted);
	foreach(lc, versions)
	{
		appendStringInfo(&buf, "%s%d", first ? "" : ", ", lfirst_int(lc));
		first = false;
	}
	appendStringInfoChar(&buf, ']');
	if (reason)
	{
		appendStringInfoString(&buf, ", \"reason\": ");
		escape_json(&buf, reason);
	}
	appendStringInfoChar(&buf, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/*
 * score_changed(max_rows integer) → jsonb
 * Incremental scoring, safe to run every minute: rescore the accounts
 * queued since the last run (at most max_rows) in the served set and in
 * every challenger set.  When the served set belongs to another model,
 * version or relation than the deployed one (a deploy happened), or is
 * empty, it adopts the deployed version's challenger set or rescores
 * everything instead.
 */
Datum
score_changed(PG_FUNCTION_ARGS)
{
	int32		max_rows = PG_ARGISNULL(0) ? 100000 : PG_GETARG_INT32(0);
	ScoreSource source;
	ScoreServedState served;
	int32		deployed;
	const char *relation;
	ArrayType  *ids;
	Datum	   *asked;
	int			nasked;
	bool		more;
	List	   *versions,
			   *done = NIL;
	ListCell   *lc;
	ScoreRun   *run;
	int64		run_id,
				read = 0,
				written = 0,
				deleted = 0;
	Datum		result;
	MemoryContext callcxt = CurrentMemoryContext;

	if (max_rows < 1 || max_rows > 10000000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows must be between 1 and 10000000"),
				 errhint("The default, 100000, suits a run every minute.")));

	SPI_connect();
	if (!ScoreStoreLock(false))
	{
		MemoryContextSwitchTo(callcxt);
		result = ScoreStoreResult(0, "skipped", 0, false, 0, 0, 0, NIL,
								  "another score_all() or score_changed() is running");
		SPI_finish();
		PG_RETURN_DATUM(result);
	}

	ScoreSourceDeployed(&source);
	deployed = ScoreSourceModelVersion(&source);
	(void) ScoreSourcePlan(&source, RELATION_MANY);
	relation = ScoreSourceRelation(&source);
	ScoreStoreServedState(&served);

	if (!served.known || served.model != (deployed > 0 ? 'x' : 'r') ||
		served.model_version != deployed ||
		served.relation == NULL || strcmp(served.relation, relation) != 0)
	{
		/* a deploy (or nothing scored yet): adopt or rescore the served set */
		if (deployed > 0 && ScoreStoreVersionComplete(deployed))
		{
			run = ScoreStoreRunBegin(SCORE_SERVED, 0, "adopt", true, NULL, 10000);
			run->model = 'x';
			run->model_version = deployed;
			ScoreStoreLoadSet(run, NULL);
			ScoreStoreScanVersion(run, deployed);
			run->relation = pstrdup(relation);
			ScoreStoreWrite(run, NULL, 0);
			(void) ScoreStoreDropVersion(deployed);
		}
		else
		{
			run = ScoreStoreRunServedAll(&source, 10000);
			if (deployed > 0)
				(void) ScoreStoreDropVersion(deployed);
		}
		run_id = ScoreStoreLog(run);
		MemoryContextSwitchTo(callcxt);
		result = ScoreStoreResult(run_id, run->kind, 0, false, run->rows_read, run->rows_written,
								  run->rows_deleted, NIL, NULL);
		SPI_finish();
		PG_RETURN_DATUM(result);
	}

	ids = ScoreStorePopQueue(max_rows, &nasked, &more);
	if (nasked == 0)
	{
		MemoryContextSwitchTo(callcxt);
		result = ScoreStoreResult(0, "changed", 0, more, 0, 0, 0, NIL, NULL);
		SPI_finish();
		PG_RETURN_DATUM(result);
	}
	deconstruct_array(ids, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &asked, NULL, &nasked);

	/* the served set */
	run = ScoreStoreRunBegin(SCORE_SERVED, 0, "changed", false, &source, 10000);
	ScoreStoreLoadSet(run, ids);
	ScoreStoreScan(run, ids);
	ScoreStoreWrite(run, asked, nasked);
	read += run->rows_read;
	written += run->rows_written;
	deleted += run->rows_deleted;
	run_id = ScoreStoreLog(run);

	/* every challenger set */
	versions = ScoreStoreChallengers();
	foreach(lc, versions)
	{
		int32		v = lfirst_int(lc);
		ScoreSource vsource;
		ScoreRun   *vrun;

		if (v < 0)
		{
			deleted += ScoreStoreDropVersion(-v);
			continue;
		}
		if (v == deployed)
			continue;
		ScoreSourceVersion(&vsource, v);
		vrun = ScoreStoreRunBegin(SCORE_VERSION, v, "changed", false, &vsource, 10000);
		ScoreStoreLoadSet(vrun, ids);
		ScoreStoreScan(vrun, ids);
		ScoreStoreWrite(vrun, asked, nasked);
		written += vrun->rows_written;
		deleted += vrun->rows_deleted;
		(void) ScoreStoreLog(vrun);
		done = lappend_int(done, v);
	}

	MemoryContextSwitchTo(callcxt);
	result = ScoreStoreResult(run_id, "changed", nasked, more, read, written, deleted, done, NULL);
	SPI_finish();
	PG_RETURN_DATUM(result);
}
