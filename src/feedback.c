/*
 * feedback.c — which impression an interaction rewards, and by how much:
 * the online trigger and process_feedback(); the updates themselves are
 * applied by feedback_apply.c, the log is replayed by feedback_rebuild.c.
 *
 * Attribution.  An interaction (user, account, type, created_at) with a
 * reward in icpml.reward_map credits an impression of the same user and
 * account that was served within reward_window before created_at and has
 * not expired: the one whose funnel it continues, i.e. the most recent of
 * them that an interaction rewarded already (bandit_settings.attribution
 * 'funnel'), else the most recent one -- most recent in the order the
 * impressions were logged (recommendation_id), not by timestamps.  So the
 * first step of a funnel credits the impression the user saw last, and the
 * later steps (research, contact...) follow it instead of going to a
 * re-show of the account the user is already working on, which expires
 * with 0 (attribution 'latest': every step credits the most recent
 * impression).  Online "most recent" means
 * "every impression logged before the interaction was processed", which
 * needs commit order, not transaction start:
 *   - recommend_accounts takes a shared transaction-level advisory lock on
 *     its user (FeedbackLockServing) before it logs, held until it commits;
 *   - the trigger reads how far the log's id sequence has gone, then waits
 *     for that lock exclusively on each user it has interactions of, and
 *     lets go at once (a barrier: nothing is held).  Every list logged
 *     before the trigger started has then committed (or rolled back), so
 *     its rows are visible to the trigger's next statement; lists logged
 *     after it have larger ids and are not credited.  The wait is bounded by
 *     bandit_settings.attribution_wait (an idle serving transaction must not
 *     block the application's writes); past it the list is not seen.
 * Batch attribution (process_feedback, for interactions the trigger did not
 * see) has only timestamps: the same rule with served_at <= created_at.
 *
 * Reward over the window.  An impression is counted in the bandit once, by
 * its first reward (or its expiry with 0); a later interaction attributed
 * to it changes its reward to the aggregate (bandit_settings.
 * reward_aggregate: the best one, a capped sum, or the first), and the
 * change is applied to b only, numbered like any other update.  Every
 * attributed interaction is logged in icpml.feedback_events with the change
 * it made, which makes it idempotent (process_feedback skips attributed
 * interactions) and replayable (rebuild_bandit_state).
 *
 * Exactly once.  The impression row is locked (FOR UPDATE) while its reward
 * is read and changed, after the user's state row (feedback_apply.c has the
 * lock order), so two interactions of one impression are applied one after
 * the other and each sees the other's change.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "bandit.h"
#include "catalog.h"
#include "feedback.h"
#include "icpml.h"
#include "relation.h"

PG_FUNCTION_INFO_V1(feedback_trigger);
PG_FUNCTION_INFO_V1(process_feedback);

/* One interaction to attribute, copied out of an SPI result. */
typedef struct FeedbackInteraction
{
	int64		interaction_id;
	pg_uuid_t	user;
	int64		account_id;
	char	   *type;
	TimestampTz created_at;
} FeedbackInteraction;

/* The feedback_events rows of a transaction, written in one statement. */
typedef struct FeedbackEvents
{
	int			n;
	int			max;
	Datum	   *rec;
	Datum	   *interaction;
	Datum	   *type;
	Datum	   *reward;
	Datum	   *delta;
	Datum	   *seq;
	bool	   *seq_null;
} FeedbackEvents;

/* The advisory lock tag of "a list is being served to this user". */
static void
FeedbackUserLockTag(LOCKTAG *tag, const pg_uuid_t *user)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) FEEDBACK_LOCK_CLASS,
						 hash_bytes(user->data, UUID_LEN), 2);
}

/*
 * recommend_accounts, before it logs a list for user: the shared lock the
 * feedback trigger waits for, held until the serving transaction ends.
 */
void
FeedbackLockServing(const pg_uuid_t *user)
{
	LOCKTAG		tag;

	FeedbackUserLockTag(&tag, user);
	(void) LockAcquire(&tag, ShareLock, false, false);
}

/*
 * Wait until no list is being served to user (see the top of the file), at
 * most wait_ms; nothing stays locked.  Waits in the lock manager (so that
 * deadlocks are detected and the wait shows in pg_locks), with lock_timeout
 * set for the wait only, inside a subtransaction whose abort ends a wait
 * that timed out.
 */
static void
FeedbackBarrier(const pg_uuid_t *user, int wait_ms)
{
	LOCKTAG		tag;
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;

	FeedbackUserLockTag(&tag, user);
	if (LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL)
	{
		LockRelease(&tag, ExclusiveLock, true);
		return;
	}
	if (wait_ms <= 0)
		return;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		int			nest = NewGUCNestLevel();
		char		timeout[32];

		snprintf(timeout, sizeof(timeout), "%d", wait_ms);
		(void) set_config_option("lock_timeout", timeout, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		(void) LockAcquire(&tag, ExclusiveLock, true, false);
		LockRelease(&tag, ExclusiveLock, true);
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
		if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
			ReThrowError(edata);
		/* a serving transaction stayed open: go on without its list */
		elog(DEBUG1, "icpml feedback: a list being served was not waited for longer than %d ms", wait_ms);
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

/*
 * How far the log's id sequence has gone: every impression logged so far
 * has an id at most this (read before the barrier; the sequence does not
 * cache, so ids follow the order they were drawn in).
 */
static int64
FeedbackLogPosition(void)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;
	int			ret;

	if (plan == NULL)
		plan = CatalogKeepPlan("SELECT CASE WHEN s.is_called THEN s.last_value"
							   " ELSE s.last_value OPERATOR(pg_catalog.-) 1 END"
							   " FROM icpml.recommendations_recommendation_id_seq AS s", 0, NULL, 0);
	ret = SPI_execute_plan(plan, NULL, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "reading icpml.recommendations_recommendation_id_seq failed (please report a bug)");
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* The interaction types reward_map lists, as a text[] datum. */
static Datum
FeedbackRewardingTypes(const BanditSettings *cfg)
{
	Datum	   *t = palloc(sizeof(Datum) * Max(cfg->n_rewards, 1));
	int			i;

	for (i = 0; i < cfg->n_rewards; i++)
		t[i] = CStringGetTextDatum(cfg->reward_types[i]);
	return PointerGetDatum(construct_array(t, cfg->n_rewards, TEXTOID, -1, false, TYPALIGN_INT));
}

/* Add one feedback_events row. */
static void
FeedbackEventAdd(FeedbackEvents *ev, int64 rec, const FeedbackInteraction *x, double reward,
				 double delta, int64 seq, bool has_seq)
{
	if (ev->n == ev->max)
	{
		ev->max = Max(16, ev->max * 2);
#define FEEDBACK_GROW(f, t) (ev->f = ev->f ? repalloc(ev->f, sizeof(t) * ev->max) : palloc(sizeof(t) * ev->max))
		FEEDBACK_GROW(rec, Datum);
		FEEDBACK_GROW(interaction, Datum);
		FEEDBACK_GROW(type, Datum);
		FEEDBACK_GROW(reward, Datum);
		FEEDBACK_GROW(delta, Datum);
		FEEDBACK_GROW(seq, Datum);
		FEEDBACK_GROW(seq_null, bool);
#undef FEEDBACK_GROW
	}
	ev->rec[ev->n] = Int64GetDatum(rec);
	ev->interaction[ev->n] = Int64GetDatum(x->interaction_id);
	ev->type[ev->n] = CStringGetTextDatum(x->type);
	ev->reward[ev->n] = Float8GetDatum(reward);
	ev->delta[ev->n] = Float8GetDatum(delta);
	ev->seq[ev->n] = Int64GetDatum(seq);
	ev->seq_null[ev->n] = !has_seq;
	ev->n++;
}

/* Write the events of a transaction to icpml.feedback_events (one statement). */
static void
FeedbackEventsWrite(FeedbackEvents *ev)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[6];
	int			dims[1];
	int			lbs[1] = {1};
	int			ret;

	if (ev->n == 0)
		return;
	if (plan == NULL)
	{
		Oid			argtypes[6] = {INT8ARRAYOID, INT8ARRAYOID, TEXTARRAYOID, FLOAT8ARRAYOID,
		FLOAT8ARRAYOID, INT8ARRAYOID};

		plan = CatalogKeepPlan("INSERT INTO icpml.feedback_events (recommendation_id, interaction_id,"
							   " interaction_type, reward, delta, update_seq)"
							   " SELECT u.r, u.i, u.t, u.w, u.d, u.s FROM ROWS FROM (pg_catalog.unnest($1),"
							   " pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4),"
							   " pg_catalog.unnest($5), pg_catalog.unnest($6)) AS u(r, i, t, w, d, s)",
							   6, argtypes, 0);
	}
	dims[0] = ev->n;
	args[0] = PointerGetDatum(construct_array(ev->rec, ev->n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_array(ev->interaction, ev->n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[2] = PointerGetDatum(construct_array(ev->type, ev->n, TEXTOID, -1, false, TYPALIGN_INT));
	args[3] = PointerGetDatum(construct_array(ev->reward, ev->n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[4] = PointerGetDatum(construct_array(ev->delta, ev->n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[5] = PointerGetDatum(construct_md_array(ev->seq, ev->seq_null, 1, dims, lbs, INT8OID, 8,
												 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	ret = SPI_execute_plan(plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "writing icpml.feedback_events failed: %s", SPI_result_code_string(ret));
	ev->n = 0;
}

/* An impression's reward after one more interaction (previous: pending or not). */
static double
FeedbackAggregate(const BanditSettings *cfg, bool pending, double previous, double reward)
{
	switch (cfg->reward_aggregate)
	{
		case REWARD_MAX:
			return pending ? reward : Max(previous, reward);
		case REWARD_SUM:
			return Min((pending ? 0.0 : previous) + reward, cfg->reward_cap);
		case REWARD_FIRST:
			return pending ? reward : previous;
	}
	elog(ERROR, "unknown reward aggregate %d (please report a bug)", (int) cfg->reward_aggregate);
	return 0.0;					/* keep compiler quiet */
}

/*
 * Attribute one interaction (see the top of the file): bound is the largest
 * impression id it may credit.  Returns true when it changed a reward.
 */
static bool
FeedbackAttribute(FeedbackCtx *ctx, FeedbackEvents *ev, const FeedbackInteraction *x, int64 bound)
{
	static SPIPlanPtr plan_target = NULL;
	static SPIPlanPtr plan_first = NULL;
	static SPIPlanPtr plan_change = NULL;
	const BanditSettings *cfg = ctx->cfg;
	Datum		args[6];
	double		reward,
				previous,
				aggregate;
	bool		pending,
				isnull;
	int64		rec,
				seq;
	Datum		context;
	int			rank,
				ret;
	HeapTuple	tup;
	TupleDesc	desc;
	char	   *scope;

	if (!BanditReward(cfg, x->type, &reward))
		return false;			/* not a rewarding type */

	if (plan_target == NULL)
	{
		Oid			argtypes[6] = {UUIDOID, INT8OID, INT8OID, TIMESTAMPTZOID, INTERVALOID, BOOLOID};
		Oid			ftypes[3] = {INT8OID, FLOAT8OID, INT8OID};

		/*
		 * The impressions of the pair in the window, newest first; with $6
		 * (attribution 'funnel') the ones already rewarded come first.
		 */
		plan_target = CatalogKeepPlan("SELECT p.recommendation_id, p.status OPERATOR(pg_catalog.=) 'pending',"
									  " p.reward, p.context, p.rank, p.state_scope FROM icpml.recommendations AS p"
									  " WHERE p.user_id OPERATOR(pg_catalog.=) $1"
									  " AND p.account_id OPERATOR(pg_catalog.=) $2"
									  " AND p.status OPERATOR(pg_catalog.<>) 'expired'"
									  " AND p.recommendation_id OPERATOR(pg_catalog.<=) $3"
									  " AND p.served_at OPERATOR(pg_catalog.<=) $4"
									  " AND p.served_at OPERATOR(pg_catalog.>=) ($4 OPERATOR(pg_catalog.-) $5)"
									  " ORDER BY ($6 AND p.status OPERATOR(pg_catalog.=) 'rewarded') DESC,"
									  " p.recommendation_id DESC LIMIT 1 FOR UPDATE", 6, argtypes, 0);
		plan_first = CatalogKeepPlan("UPDATE icpml.recommendations AS r SET status = 'rewarded', reward = $2,"
									 " reward_interaction_id = $3, finalized_at = pg_catalog.now(),"
									 " finalize_seq = pg_catalog.nextval('icpml.recommendations_finalize_seq')"
									 " WHERE r.recommendation_id OPERATOR(pg_catalog.=) $1"
									 " RETURNING r.finalize_seq", 3, ftypes, 0);
		plan_change = CatalogKeepPlan("UPDATE icpml.recommendations AS r SET reward = $2,"
									  " reward_interaction_id = $3"
									  " WHERE r.recommendation_id OPERATOR(pg_catalog.=) $1"
									  " RETURNING pg_catalog.nextval('icpml.recommendations_finalize_seq')",
									  3, ftypes, 0);
	}

	args[0] = UUIDPGetDatum(&x->user);
	args[1] = Int64GetDatum(x->account_id);
	args[2] = Int64GetDatum(bound);
	args[3] = TimestampTzGetDatum(x->created_at);
	args[4] = IntervalPGetDatum(&cfg->reward_window);
	args[5] = BoolGetDatum(cfg->funnel_attribution);

	/*
	 * The user's state row is locked already (FeedbackAttributeAll), so this
	 * statement sees every earlier attribution to the user's impressions.
	 */
	ret = SPI_execute_plan(plan_target, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "finding the impression of an interaction failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	rec = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	pending = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));
	previous = DatumGetFloat8(SPI_getbinval(tup, desc, 3, &isnull));
	if (pending || isnull)
		previous = 0.0;
	context = SPI_getbinval(tup, desc, 4, &isnull);
	rank = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
	scope = SPI_getvalue(tup, desc, 6);	/* NULL: the global state */
	aggregate = FeedbackAggregate(cfg, pending, previous, reward);

	if (!pending && aggregate == previous)
	{
		/* attributed, but the impression's reward stays what it was */
		FeedbackEventAdd(ev, rec, x, reward, 0.0, 0, false);
		return false;
	}

	args[0] = Int64GetDatum(rec);
	args[1] = Float8GetDatum(aggregate);
	args[2] = Int64GetDatum(x->interaction_id);
	ret = SPI_execute_plan(pending ? plan_first : plan_change, args, NULL, false, 1);
	if (ret != SPI_OK_UPDATE_RETURNING || SPI_processed != 1)
		elog(ERROR, "rewarding a recommendation failed: %s", SPI_result_code_string(ret));
	seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	/* the change: the whole reward for a first one, the difference after */
	FeedbackApply(ctx, &x->user, rec, x->account_id, context, rank,
				  aggregate - previous, pending, seq, scope);
	FeedbackEventAdd(ev, rec, x, reward, aggregate - previous, seq, true);
	if (pending)
		ctx->rewarded++;
	else
		ctx->improved++;
	return true;
}

/*
 * Copy the interactions of an SPI result (columns interaction_id, user_id,
 * account_id, interaction_type, created_at): attribution runs queries.
 * Rows with a NULL in any column are left out.
 */
static FeedbackInteraction *
FeedbackCopyInteractions(SPITupleTable *tt, uint64 n, int *count)
{
	FeedbackInteraction *xs = palloc(sizeof(FeedbackInteraction) * Max(n, 1));
	uint64		i;
	int			m = 0;

	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = tt->vals[i];
		bool		nulls[5];
		Datum		v[5];
		int			j;

		for (j = 0; j < 5; j++)
			v[j] = SPI_getbinval(tup, tt->tupdesc, j + 1, &nulls[j]);
		if (nulls[0] || nulls[1] || nulls[2] || nulls[3] || nulls[4])
			continue;
		xs[m].interaction_id = DatumGetInt64(v[0]);
		memcpy(&xs[m].user, DatumGetUUIDP(v[1]), sizeof(pg_uuid_t));
		xs[m].account_id = DatumGetInt64(v[2]);
		xs[m].type = TextDatumGetCString(v[3]);
		xs[m].created_at = DatumGetTimestampTz(v[4]);
		m++;
	}
	*count = m;
	return xs;
}

/* Order user ids as uuid_cmp does. */
static int
FeedbackCompareUsers(const void *a, const void *b)
{
	return memcmp(a, b, UUID_LEN);
}

/*
 * Attribute interactions in order; the events are written at the end.  The
 * state rows of their users are locked first, in user id order (the order
 * every writer locks several users in: no deadlock between two statements
 * with interactions of the same users).
 */
static void
FeedbackAttributeAll(FeedbackCtx *ctx, const FeedbackInteraction *xs, int n, int64 bound)
{
	FeedbackEvents ev;
	pg_uuid_t  *users = palloc(sizeof(pg_uuid_t) * Max(n, 1));
	double		r;
	int			i,
				nusers = 0;

	for (i = 0; i < n; i++)
		if (BanditReward(ctx->cfg, xs[i].type, &r))
			users[nusers++] = xs[i].user;
	qsort(users, nusers, sizeof(pg_uuid_t), FeedbackCompareUsers);
	for (i = 0; i < nusers; i++)
		if (i == 0 || memcmp(&users[i], &users[i - 1], UUID_LEN) != 0)
			(void) FeedbackUserState(ctx, &users[i]);
	pfree(users);

	memset(&ev, 0, sizeof(ev));
	for (i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		(void) FeedbackAttribute(ctx, &ev, &xs[i], bound);
	}
	FeedbackEventsWrite(&ev);
}

/*
 * AFTER INSERT ... REFERENCING NEW TABLE AS icpml_new FOR EACH STATEMENT
 * trigger on the interactions relation (see enable_online_feedback()).
 * A statement with no rewarding interaction takes no lock; one whose
 * interactions match no impression takes only the barriers.
 */
Datum
feedback_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	static bool warned = false;
	const BanditSettings *cfg;
	FeedbackCtx ctx;
	CatalogOwnerState owner;
	int			ret,
				i,
				nusers,
				nx;
	Datum		args[3];
	Oid			argtypes[3] = {TEXTARRAYOID, INT8OID, INTERVALOID};
	pg_uuid_t  *users;
	FeedbackInteraction *xs;
	int64		bound;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("icpml.feedback_trigger() must be called as a trigger")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) || !TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) || trigdata->tg_newtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("icpml.feedback_trigger() must be an AFTER INSERT statement trigger with a transition table"),
				 errhint("Install it with SELECT icpml.enable_online_feedback().")));

	{
		static const char *const columns[] = {
			"interaction_id", "user_id", "account_id", "interaction_type", "created_at"
		};

		RelationCheckBuiltinColumns(RelationGetDescr(trigdata->tg_relation),
									RelationGetRelationName(trigdata->tg_relation),
									columns, lengthof(columns), "online feedback trigger");
	}

	SPI_connect();
	if (SPI_register_trigger_data(trigdata) != SPI_OK_TD_REGISTER)
		elog(ERROR, "SPI_register_trigger_data failed (please report a bug)");
	CatalogSwitchToOwner(&owner);
	cfg = BanditGetSettings();

	if (!cfg->has_feedback_log)
	{
		/*
		 * This library with 0.3.0's objects: never fail the application's
		 * insert; process_feedback() attributes it after the update.
		 */
		if (!warned)
			ereport(WARNING,
					(errmsg("icpml's online feedback is paused until ALTER EXTENSION icpml UPDATE"),
					 errhint("Then run SELECT icpml.process_feedback() to attribute the interactions inserted meanwhile.")));
		warned = true;
		CatalogRestoreUser(&owner);
		SPI_finish();
		return PointerGetDatum(NULL);
	}
	if (cfg->n_rewards == 0)
	{
		CatalogRestoreUser(&owner);
		SPI_finish();
		return PointerGetDatum(NULL);
	}
	args[0] = FeedbackRewardingTypes(cfg);

	/* 1. the users with a rewarding interaction in this statement */
	ret = SPI_execute_with_args("SELECT DISTINCT n.user_id::pg_catalog.uuid FROM icpml_new AS n"
								" WHERE n.interaction_type::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1)"
								" AND n.user_id IS NOT NULL ORDER BY 1",
								1, argtypes, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading new interactions failed: %s", SPI_result_code_string(ret));
	nusers = (int) SPI_processed;
	users = palloc(sizeof(pg_uuid_t) * Max(nusers, 1));
	for (i = 0; i < nusers; i++)
	{
		bool		isnull;

		memcpy(&users[i], DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull)),
			   sizeof(pg_uuid_t));
	}

	/* 2. every list logged so far for them has committed (or is not waited for) */
	if (nusers > 0)
	{
		bound = FeedbackLogPosition();
		for (i = 0; i < nusers; i++)
			FeedbackBarrier(&users[i], cfg->attribution_wait_ms);

		/* 3. the interactions that credit an impression, in order */
		args[1] = Int64GetDatum(bound);
		args[2] = IntervalPGetDatum(&cfg->reward_window);
		ret = SPI_execute_with_args("SELECT n.interaction_id::pg_catalog.int8, n.user_id::pg_catalog.uuid,"
									" n.account_id::pg_catalog.int8, n.interaction_type::pg_catalog.text,"
									" n.created_at::pg_catalog.timestamptz FROM icpml_new AS n"
									" WHERE n.interaction_type::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1)"
									" AND EXISTS (SELECT FROM icpml.recommendations AS p"
									" WHERE p.user_id OPERATOR(pg_catalog.=) n.user_id::pg_catalog.uuid"
									" AND p.account_id OPERATOR(pg_catalog.=) n.account_id::pg_catalog.int8"
									" AND p.status OPERATOR(pg_catalog.<>) 'expired'"
									" AND p.recommendation_id OPERATOR(pg_catalog.<=) $2"
									" AND p.served_at OPERATOR(pg_catalog.<=) n.created_at::pg_catalog.timestamptz"
									" AND p.served_at OPERATOR(pg_catalog.>=)"
									" (n.created_at::pg_catalog.timestamptz OPERATOR(pg_catalog.-) $3))"
									" ORDER BY 5, 1",
									3, argtypes, args, NULL, false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "reading new interactions failed: %s", SPI_result_code_string(ret));
		xs = FeedbackCopyInteractions(SPI_tuptable, SPI_processed, &nx);
		if (nx > 0)
		{
			FeedbackBegin(&ctx, cfg, false);
			FeedbackAttributeAll(&ctx, xs, nx, bound);
			FeedbackFinish(&ctx);
		}
	}

	CatalogRestoreUser(&owner);
	SPI_finish();
	return PointerGetDatum(NULL);
}

/* Expired impressions, ordered by the number each was drawn (column 3). */
typedef struct ExpiredRow
{
	int64		seq;
	int64		id;
	int64		account;
	pg_uuid_t	user;
	Datum		context;
	int			rank;
	char	   *scope;			/* the state it trains, NULL global */
} ExpiredRow;

static int
FeedbackCompareSeq(const void *a, const void *b)
{
	int64		sa = ((const ExpiredRow *) a)->seq;
	int64		sb = ((const ExpiredRow *) b)->seq;

	return sa < sb ? -1 : (sa > sb ? 1 : 0);
}

/*
 * Expire the impressions served before cutoff that are still pending, with
 * reward 0, in batches: the users' state rows are locked before their
 * impressions (the lock order).  Returns how many.
 */
static int64
FeedbackExpire(FeedbackCtx *ctx, TimestampTz cutoff)
{
	static SPIPlanPtr plan_users = NULL;
	static SPIPlanPtr plan_expire = NULL;
	int64		total = 0;

	if (plan_users == NULL)
	{
		Oid			utypes[1] = {TIMESTAMPTZOID};
		Oid			etypes[2] = {TIMESTAMPTZOID, UUIDARRAYOID};

		plan_users = CatalogKeepPlan("SELECT DISTINCT o.user_id FROM (SELECT p.user_id FROM icpml.recommendations AS p"
									 " WHERE p.status OPERATOR(pg_catalog.=) 'pending'"
									 " AND p.served_at OPERATOR(pg_catalog.<) $1"
									 " ORDER BY p.recommendation_id LIMIT " CppAsString2(FEEDBACK_BATCH) ") AS o"
									 " ORDER BY 1", 1, utypes, 0);
		plan_expire = CatalogKeepPlan("UPDATE icpml.recommendations AS r SET status = 'expired', reward = 0,"
									  " finalized_at = pg_catalog.now(),"
									  " finalize_seq = pg_catalog.nextval('icpml.recommendations_finalize_seq')"
									  " WHERE r.recommendation_id OPERATOR(pg_catalog.=) ANY (SELECT p.recommendation_id"
									  " FROM icpml.recommendations AS p WHERE p.status OPERATOR(pg_catalog.=) 'pending'"
									  " AND p.served_at OPERATOR(pg_catalog.<) $1"
									  " AND p.user_id OPERATOR(pg_catalog.=) ANY ($2)"
									  " ORDER BY p.recommendation_id"
									  " LIMIT " CppAsString2(FEEDBACK_BATCH) " FOR UPDATE)"
									  " AND r.status OPERATOR(pg_catalog.=) 'pending'"
									  " RETURNING r.user_id, r.context, r.finalize_seq, r.rank, r.account_id,"
									  " r.recommendation_id, r.state_scope", 2, etypes, 0);
	}
	for (;;)
	{
		Datum		args[2];
		Datum	   *uds;
		uint64		n,
					i;
		int			nusers,
					ret;
		ExpiredRow *rows;
		SPITupleTable *tt;
		pg_uuid_t  *users;

		CHECK_FOR_INTERRUPTS();
		args[0] = TimestampTzGetDatum(cutoff);
		ret = SPI_execute_plan(plan_users, args, NULL, false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "reading pending recommendations failed: %s", SPI_result_code_string(ret));
		nusers = (int) SPI_processed;
		if (nusers == 0)
			break;
		users = palloc(sizeof(pg_uuid_t) * nusers);
		uds = palloc(sizeof(Datum) * nusers);
		for (i = 0; i < (uint64) nusers; i++)
		{
			bool		isnull;

			memcpy(&users[i], DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull)),
				   sizeof(pg_uuid_t));
			uds[i] = UUIDPGetDatum(&users[i]);
		}
		SPI_freetuptable(SPI_tuptable);
		for (i = 0; i < (uint64) nusers; i++)
			(void) FeedbackUserState(ctx, &users[i]);

		args[1] = PointerGetDatum(construct_array(uds, nusers, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
		ret = SPI_execute_plan(plan_expire, args, NULL, false, 0);
		if (ret != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "expiring recommendations failed: %s", SPI_result_code_string(ret));
		n = SPI_processed;
		tt = SPI_tuptable;
		if (n == 0)
			break;
		rows = palloc(sizeof(ExpiredRow) * n);
		for (i = 0; i < n; i++)
		{
			bool		isnull;
			HeapTuple	tup = tt->vals[i];
			TupleDesc	desc = tt->tupdesc;

			memcpy(&rows[i].user, DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull)), sizeof(pg_uuid_t));
			rows[i].context = SPI_getbinval(tup, desc, 2, &isnull);
			rows[i].seq = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
			rows[i].rank = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
			rows[i].account = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
			rows[i].id = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
			rows[i].scope = SPI_getvalue(tup, desc, 7);
		}
		/* apply in the order the sequence numbered them */
		qsort(rows, n, sizeof(ExpiredRow), FeedbackCompareSeq);
		for (i = 0; i < n; i++)
			FeedbackApply(ctx, &rows[i].user, rows[i].id, rows[i].account, rows[i].context,
						  rows[i].rank, 0.0, true, rows[i].seq, rows[i].scope);
		total += n;
		SPI_freetuptable(tt);
		pfree(rows);
	}
	return total;
}

/*
 * The interactions up to as_of that credit an impression and were not
 * attributed yet, in order (read as the caller: a relation the caller names
 * is never read with the owner's rights).  The (user, account) semi-join
 * and the lower time bound are implied by the EXISTS; they let the planner
 * start from the open impressions instead of every interaction ever logged.
 * Interactions older than both the oldest pending impression and one window
 * before as_of are not looked at.
 */
static FeedbackInteraction *
FeedbackUnattributed(const char *rel, TimestampTz as_of, const BanditSettings *cfg,
					 CatalogOwnerState *owner, int *count)
{
	Datum		args[3];
	Oid			argtypes[3] = {TIMESTAMPTZOID, INTERVALOID, TIMESTAMPTZOID};
	TimestampTz since;
	bool		isnull;
	int			ret;

	args[0] = TimestampTzGetDatum(as_of);
	args[1] = IntervalPGetDatum(&cfg->reward_window);
	ret = SPI_execute_with_args("SELECT LEAST((SELECT pg_catalog.min(p.served_at)"
								" FROM icpml.recommendations AS p WHERE p.status OPERATOR(pg_catalog.=) 'pending'),"
								" $1 OPERATOR(pg_catalog.-) $2)", 2, argtypes, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "reading pending recommendations failed: %s", SPI_result_code_string(ret));
	since = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	args[2] = TimestampTzGetDatum(since);

	CatalogRestoreUser(owner);
	ret = SPI_execute_with_args(psprintf("SELECT i.interaction_id::pg_catalog.int8, i.user_id::pg_catalog.uuid,"
										 " i.account_id::pg_catalog.int8, i.interaction_type::pg_catalog.text,"
										 " i.created_at::pg_catalog.timestamptz FROM %s AS i"
										 " WHERE (i.user_id, i.account_id) OPERATOR(pg_catalog.=) ANY"
										 " (SELECT p.user_id, p.account_id FROM icpml.recommendations AS p"
										 " WHERE p.status OPERATOR(pg_catalog.=) 'pending'"
										 " OR (p.status OPERATOR(pg_catalog.=) 'rewarded'"
										 " AND p.served_at OPERATOR(pg_catalog.>=) ($3 OPERATOR(pg_catalog.-) $2)))"
										 " AND i.created_at OPERATOR(pg_catalog.<=) $1"
										 " AND i.created_at OPERATOR(pg_catalog.>=) $3"
										 " AND EXISTS (SELECT FROM icpml.recommendations AS p"
										 " WHERE p.user_id OPERATOR(pg_catalog.=) i.user_id"
										 " AND p.account_id OPERATOR(pg_catalog.=) i.account_id"
										 " AND p.status OPERATOR(pg_catalog.<>) 'expired'"
										 " AND p.served_at OPERATOR(pg_catalog.<=) i.created_at"
										 " AND p.served_at OPERATOR(pg_catalog.>=) (i.created_at OPERATOR(pg_catalog.-) $2))"
										 " AND NOT EXISTS (SELECT FROM icpml.feedback_events AS e"
										 " WHERE e.interaction_id OPERATOR(pg_catalog.=) i.interaction_id)"
										 " AND NOT EXISTS (SELECT FROM icpml.recommendations AS q"
										 " WHERE q.reward_interaction_id OPERATOR(pg_catalog.=) i.interaction_id)"
										 " ORDER BY i.created_at, i.interaction_id", rel),
								3, argtypes, args, NULL, false, 0);
	CatalogSwitchToOwner(owner);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading interactions failed: %s", SPI_result_code_string(ret));
	return FeedbackCopyInteractions(SPI_tuptable, SPI_processed, count);
}

/*
 * process_feedback(as_of timestamptz, attribute boolean)
 *   → table(rewarded bigint, expired bigint, improved bigint, folded bigint)
 * Batch feedback for pg_cron, for administrators: attribute what the
 * trigger did not (unless attribute is false), expire what is older than
 * the window, fold the queue.  Holds the global state row throughout.
 */
Datum
process_feedback(PG_FUNCTION_ARGS)
{
	TimestampTz as_of = PG_GETARG_TIMESTAMPTZ(0);
	bool		attribute = PG_GETARG_BOOL(1);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const BanditSettings *cfg;
	FeedbackCtx ctx;
	CatalogOwnerState owner;
	char	   *rel = NULL;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	TimestampTz cutoff;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	if (attribute)
		rel = RelationResolveInteractions();	/* with the caller's search_path */
	CatalogSwitchToOwner(&owner);
	cfg = BanditGetSettings();
	if (!cfg->has_feedback_log)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("icpml's SQL objects are older than its library"),
				 errhint("Run ALTER EXTENSION icpml UPDATE.")));
	FeedbackBegin(&ctx, cfg, true);

	if (attribute)
	{
		int			nx;
		FeedbackInteraction *xs = FeedbackUnattributed(rel, as_of, cfg, &owner, &nx);

		FeedbackAttributeAll(&ctx, xs, nx, PG_INT64_MAX);
	}
	cutoff = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
													 TimestampTzGetDatum(as_of),
													 IntervalPGetDatum(&cfg->reward_window)));
	ctx.expired = FeedbackExpire(&ctx, cutoff);
	FeedbackFinish(&ctx);
	CatalogRestoreUser(&owner);

	values[0] = Int64GetDatum(ctx.rewarded);
	values[1] = Int64GetDatum(ctx.expired);
	values[2] = Int64GetDatum(ctx.improved);
	values[3] = Int64GetDatum(ctx.folded);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	SPI_finish();
	return (Datum) 0;
}
