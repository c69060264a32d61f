/*
 * feedback_rebuild.c — rebuild_bandit_state(): every state row and
 * icpml.account_feedback recomputed from the log.
 *
 * The log is two tables: icpml.recommendations (each finalized impression:
 * its first reward, or 0 when it expired, numbered finalize_seq) and
 * icpml.feedback_events (each later change of a reward, numbered
 * update_seq; an impression's first event carries its first reward and the
 * same number as finalize_seq).  The replay applies them in number order,
 * per state: the global state in one stream (impressions whose state_scope
 * is NULL), every experiment variant's own state in its own (state_scope
 * variant:<experiment>/<variant>), every user's state in its own; holdout
 * impressions (state_scope 'none') train no state and count in no
 * account's sums.
 * Immediate updates were numbered in the order they were applied, so the
 * replay repeats exactly the same floating-point operations; queued updates
 * may have been folded in another order, which changes only rounding (A and
 * b are sums).  Impressions logged with a context of another dimension (an
 * older context layout; the upgrade finalized them) are skipped.
 *
 * The rebuild holds the global row (immediate writers and process_feedback
 * wait) and bandit_queue EXCLUSIVE (queued writers wait in FeedbackBegin,
 * before they lock anything else), so no update can be half in the log and
 * half in the state while it reads: what it replays is what committed, and
 * the queue it empties holds nothing that it does not replay.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/uuid.h"

#include "bandit.h"
#include "catalog.h"
#include "feedback.h"

PG_FUNCTION_INFO_V1(rebuild_bandit_state);

#define FEEDBACK_SAME_DIM(c) " AND pg_catalog.cardinality(" c ") OPERATOR(pg_catalog.=) " CppAsString2(BANDIT_DIM)

/*
 * The log as one stream of updates: (seq, context, reward, rank, first,
 * user_id, scope); reward is the first reward (first) or the change.  A
 * first reward is its first event's (0.3.0 rows have no events: their
 * reward).  scope is the impression's state_scope (NULL: global).
 */
#define FEEDBACK_LOG_STREAM \
	"SELECT r.finalize_seq AS seq, r.context, COALESCE(f.delta, r.reward, 0) AS reward," \
	" r.rank, true AS first, r.user_id, r.state_scope AS scope FROM icpml.recommendations AS r" \
	" LEFT JOIN icpml.feedback_events AS f" \
	" ON f.recommendation_id OPERATOR(pg_catalog.=) r.recommendation_id" \
	" AND f.update_seq OPERATOR(pg_catalog.=) r.finalize_seq" \
	" WHERE r.finalize_seq IS NOT NULL" FEEDBACK_SAME_DIM("r.context") \
	" UNION ALL SELECT e.update_seq, r.context, e.delta, r.rank, false, r.user_id, r.state_scope" \
	" FROM icpml.feedback_events AS e JOIN icpml.recommendations AS r" \
	" ON r.recommendation_id OPERATOR(pg_catalog.=) e.recommendation_id" \
	" WHERE e.update_seq IS NOT NULL AND e.update_seq OPERATOR(pg_catalog.<>) r.finalize_seq" \
	FEEDBACK_SAME_DIM("r.context")

/* The streams FeedbackReplay replays. */
typedef enum FeedbackStream
{
	STREAM_GLOBAL,				/* the global state's */
	STREAM_USERS,				/* every user's state, one after the other */
	STREAM_VARIANTS				/* every experiment variant's own state */
} FeedbackStream;

/* Replay the log's updates into the global state or every user's or variant's; the first rewards replayed. */
static int64
FeedbackReplay(FeedbackStream stream, const BanditSettings *cfg, BanditState *global)
{
	Portal		portal;
	int64		count = 0;
	BanditState user;
	char		scope[BANDIT_SCOPE_LEN] = "";
	bool		per_user = stream != STREAM_GLOBAL;
	MemoryContext replaycxt = AllocSetContextCreate(CurrentMemoryContext, "icpml replay",
													ALLOCSET_DEFAULT_SIZES);

	portal = SPI_cursor_open_with_args(NULL,
									   stream == STREAM_USERS ?
									   "SELECT s.context, s.reward, s.rank, s.first, s.user_id FROM ("
									   FEEDBACK_LOG_STREAM ") AS s"
									   " WHERE (s.scope IS NULL OR s.scope OPERATOR(pg_catalog.<>) '" BANDIT_SCOPE_NONE "')"
									   " ORDER BY s.user_id, s.seq" :
									   stream == STREAM_VARIANTS ?
									   "SELECT s.context, s.reward, s.rank, s.first, s.scope FROM ("
									   FEEDBACK_LOG_STREAM ") AS s"
									   " WHERE s.scope OPERATOR(pg_catalog.~~) 'variant:%'"
									   " ORDER BY s.scope, s.seq" :
									   "SELECT s.context, s.reward, s.rank, s.first FROM ("
									   FEEDBACK_LOG_STREAM ") AS s WHERE s.scope IS NULL ORDER BY s.seq",
									   0, NULL, NULL, NULL, true, 0);
	memset(&user, 0, sizeof(user));
	for (;;)
	{
		uint64		i,
					n;
		SPITupleTable *tt;

		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, FEEDBACK_BATCH);
		/* storing a state runs a query: keep this batch's own pointers */
		tt = SPI_tuptable;
		n = SPI_processed;
		if (n == 0)
			break;
		for (i = 0; i < n; i++)
		{
			HeapTuple	tup = tt->vals[i];
			TupleDesc	desc = tt->tupdesc;
			bool		isnull,
						first;
			double		x[BANDIT_DIM];
			double		r;
			BanditState *s = global;

			FeedbackContext(SPI_getbinval(tup, desc, 1, &isnull), x);
			r = DatumGetFloat8(SPI_getbinval(tup, desc, 2, &isnull));
			if (isnull)
				r = 0.0;
			FeedbackExamine(cfg, DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull)), x);
			first = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
			if (per_user)
			{
				char		next[BANDIT_SCOPE_LEN];

				if (stream == STREAM_USERS)
					BanditUserScope(DatumGetUUIDP(SPI_getbinval(tup, desc, 5, &isnull)), next);
				else
					strlcpy(next, SPI_getvalue(tup, desc, 5), sizeof(next));
				if (strcmp(next, scope) != 0)
				{
					MemoryContext old;

					if (scope[0] != '\0')
						BanditStateStore(&user);
					MemoryContextReset(replaycxt);
					strlcpy(scope, next, sizeof(scope));
					old = MemoryContextSwitchTo(replaycxt);
					BanditStateInitPrior(&user, scope, BANDIT_DIM, cfg);
					MemoryContextSwitchTo(old);
				}
				s = &user;
			}
			if (first)
			{
				BanditStateUpdate(s, x, r, cfg);
				count++;
			}
			else
				BanditStateAddReward(s, x, r);
		}
		SPI_freetuptable(tt);
	}
	if (per_user && scope[0] != '\0')
		BanditStateStore(&user);
	SPI_cursor_close(portal);
	MemoryContextDelete(replaycxt);
	return count;
}

/*
 * The per-account sums of every finalized impression (its current reward),
 * read through a cursor (the accounts' hash is the only thing kept).
 */
static HTAB *
FeedbackReplayAccounts(const BanditSettings *cfg)
{
	HTAB	   *accounts = FeedbackAccountsCreate();
	Portal		portal = SPI_cursor_open_with_args(NULL, "SELECT account_id, rank, reward"
												   " FROM icpml.recommendations"
												   " WHERE finalize_seq IS NOT NULL"
												   " AND (state_scope IS NULL OR state_scope OPERATOR(pg_catalog.<>) '" BANDIT_SCOPE_NONE "')",
												   0, NULL, NULL, NULL, true, 0);

	for (;;)
	{
		uint64		i;

		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, FEEDBACK_BATCH);
		if (SPI_processed == 0)
			break;
		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			int64		id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
			int			rank = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
			double		reward = DatumGetFloat8(SPI_getbinval(tup, desc, 3, &isnull));

			FeedbackAccountAdd(accounts, cfg, id, rank, isnull ? 0.0 : reward, true);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	return accounts;
}

/*
 * rebuild_bandit_state() → bigint
 * Recompute every state row from the log, in update order (uses the
 * current lambda, gamma, refactor_every and position_bias); returns the
 * number of impressions replayed.
 */
Datum
rebuild_bandit_state(PG_FUNCTION_ARGS)
{
	CatalogOwnerState owner;
	const BanditSettings *cfg;
	BanditState locked;
	BanditState global;
	int64		count;
	int			ret;

	SPI_connect();
	CatalogSwitchToOwner(&owner);
	cfg = BanditGetSettings();
	if (!cfg->has_feedback_log)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("icpml's SQL objects are older than its library"),
				 errhint("Run ALTER EXTENSION icpml UPDATE.")));

	/* the global row, then the queue: every writer is out until commit */
	(void) BanditStateLoad(&locked, "global", true, false, cfg);
	LockRelationOid(CatalogRelid("bandit_queue"), ExclusiveLock);
	if (SPI_execute("DELETE FROM icpml.bandit_queue", false, 0) != SPI_OK_DELETE)
		elog(ERROR, "clearing icpml.bandit_queue failed");

	ret = SPI_execute("DELETE FROM icpml.bandit_state WHERE scope OPERATOR(pg_catalog.<>) 'global'",
					  false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "clearing icpml.bandit_state failed: %s", SPI_result_code_string(ret));

	/* the per-account sums, from every finalized impression (any context size) */
	if (SPI_execute("DELETE FROM icpml.account_feedback", false, 0) != SPI_OK_DELETE)
		elog(ERROR, "clearing icpml.account_feedback failed");
	FeedbackFlushAccounts(FeedbackReplayAccounts(cfg));

	BanditStateInitPrior(&global, "global", BANDIT_DIM, cfg);
	count = FeedbackReplay(STREAM_GLOBAL, cfg, &global);
	count += FeedbackReplay(STREAM_VARIANTS, cfg, NULL);
	(void) FeedbackReplay(STREAM_USERS, cfg, NULL);
	BanditStateStore(&global);

	CatalogRestoreUser(&owner);
	SPI_finish();
	PG_RETURN_INT64(count);
}
