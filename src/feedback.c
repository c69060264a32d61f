/*
 * feedback.c — rewards for served recommendations, bandit updates, rebuild.
 *
 * An impression (one row of icpml.recommendations) is finalized exactly
 * once: pending -> rewarded (the first interaction of the same user with
 * the same account within reward_window after it was served, reward from
 * icpml.reward_map) or pending -> expired (nothing within the window,
 * reward 0).  Finalizing updates the global state and the user's state with
 * (context, reward) once.
 *
 * Locking protocol (every writer of the bandit state follows it, so there
 * is no deadlock and no lost or double update):
 *   1. lock the global state row (SELECT ... FOR UPDATE; created at the
 *      prior when missing); held to the end of the transaction, so writers
 *      are serialized;
 *   2. finalize the impression with one UPDATE ... WHERE status = 'pending'
 *      (under READ COMMITTED it sees every commit made before step 1
 *      returned, so an impression another session rewarded is skipped);
 *   3. lock and update the user's state row; write the rows back.
 * The finalize_seq of an impression is drawn under that lock, so it orders
 * the updates exactly as they were applied: rebuild_bandit_state() replays
 * the log in finalize_seq order and reproduces the online state.
 *
 * The trigger is a statement trigger with a transition table: one query
 * finds the new interactions that match a pending impression; a statement
 * with none (the common case, e.g. bulk loads) takes no lock at all.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "bandit.h"
#include "catalog.h"
#include "icpml.h"
#include "relation.h"
#include "spi_scan.h"

#define FEEDBACK_BATCH 10000

PG_FUNCTION_INFO_V1(feedback_trigger);
PG_FUNCTION_INFO_V1(process_feedback);
PG_FUNCTION_INFO_V1(rebuild_bandit_state);

typedef struct UserStateEntry
{
	char		scope[48];		/* hash key */
	BanditState state;
} UserStateEntry;

/* Per-account sums of finalized impressions, flushed to icpml.account_feedback. */
typedef struct AccountFeedbackEntry
{
	int64		account_id;		/* hash key */
	int64		n;
	double		examined;
	double		reward;
} AccountFeedbackEntry;

typedef struct FeedbackCtx
{
	const BanditSettings *cfg;
	BanditState global;
	HTAB	   *accounts;
	HTAB	   *users;
	int64		rewarded;
	int64		expired;
} FeedbackCtx;

static SPIPlanPtr plan_attribute = NULL;

/* An empty hash of per-account sums (AccountFeedbackEntry by account id). */
static HTAB *
FeedbackAccountsCreate(void)
{
	HASHCTL		hctl;

	memset(&hctl, 0, sizeof(hctl));
	hctl.keysize = sizeof(int64);
	hctl.entrysize = sizeof(AccountFeedbackEntry);
	hctl.hcxt = CurrentMemoryContext;
	return hash_create("icpml feedback accounts", 256, &hctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* Count one finalized impression (served at rank) in its account's sums. */
static void
FeedbackAccountAdd(HTAB *accounts, const BanditSettings *cfg, int64 account_id, int rank,
				   double reward)
{
	bool		found;
	AccountFeedbackEntry *a = hash_search(accounts, &account_id, HASH_ENTER, &found);

	if (!found)
		a->n = 0, a->examined = 0.0, a->reward = 0.0;
	a->n++;
	a->examined += BanditExamination(cfg, rank);
	a->reward += reward;
}

/* Lock the global state and prepare for updates (inside SPI, as the owner). */
static void
FeedbackBegin(FeedbackCtx *ctx)
{
	HASHCTL		hctl;

	memset(&hctl, 0, sizeof(hctl));
	hctl.keysize = 48;
	hctl.entrysize = sizeof(UserStateEntry);
	hctl.hcxt = CurrentMemoryContext;
	ctx->users = hash_create("icpml feedback users", 64, &hctl,
							 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	ctx->accounts = FeedbackAccountsCreate();
	(void) BanditStateLoad(&ctx->global, "global", true, true, ctx->cfg);
}

/* The context vector stored with an impression, as doubles. */
static void
FeedbackContext(Datum d, double *x)
{
	ArrayType  *arr = DatumGetArrayTypeP(d);
	float4	   *v;
	int			i;

	if (ARR_ELEMTYPE(arr) != FLOAT4OID || ARR_HASNULL(arr) || ARR_NDIM(arr) != 1 ||
		ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr)) != BANDIT_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("a logged recommendation has a context of the wrong shape"),
				 errhint("Contexts must be real[] of %d numbers; delete recommendations logged by another icpml version.",
						 BANDIT_DIM)));
	v = (float4 *) ARR_DATA_PTR(arr);
	for (i = 0; i < BANDIT_DIM; i++)
		x[i] = (double) v[i];
}

/* The state of one user, locked and read on first use. */
static BanditState *
FeedbackUserState(FeedbackCtx *ctx, Datum user)
{
	char		scope[48];
	bool		found;
	UserStateEntry *e;

	BanditUserScope(DatumGetUUIDP(user), scope);
	e = hash_search(ctx->users, scope, HASH_ENTER, &found);
	if (!found)
		(void) BanditStateLoad(&e->state, scope, true, true, ctx->cfg);
	return &e->state;
}

/*
 * Scale a logged context by the examination probability of the rank it was
 * served at (position-based model: E[reward] = examination(rank) * x' theta,
 * so the regression is on examination(rank) * x).
 */
static void
FeedbackExamine(const BanditSettings *cfg, int rank, double *x)
{
	double		e = BanditExamination(cfg, rank);
	int			i;

	if (e == 1.0)
		return;
	for (i = 0; i < BANDIT_DIM; i++)
		x[i] *= e;
}

/* Apply one finalized impression to the global and the user's state. */
static void
FeedbackApply(FeedbackCtx *ctx, Datum user, Datum account, Datum context, int rank,
			  double reward)
{
	double		x[BANDIT_DIM];
	FeedbackAccountAdd(ctx->accounts, ctx->cfg, DatumGetInt64(account), rank, reward);
	FeedbackContext(context, x);
	FeedbackExamine(ctx->cfg, rank, x);
	BanditStateUpdate(&ctx->global, x, reward, ctx->cfg);
	BanditStateUpdate(FeedbackUserState(ctx, user), x, reward, ctx->cfg);
}

/* Add the per-account sums of a hash to icpml.account_feedback (one statement). */
static void
FeedbackFlushAccounts(HTAB *accounts)
{
	static SPIPlanPtr plan = NULL;
	long		n = hash_get_num_entries(accounts);
	Datum	   *ids,
			   *cnt,
			   *ex,
			   *rw;
	Datum		args[4];
	HASH_SEQ_STATUS seq;
	AccountFeedbackEntry *a;
	int			i = 0;

	if (n == 0)
		return;
	if (plan == NULL)
	{
		Oid			argtypes[4] = {INT8ARRAYOID, INT8ARRAYOID, FLOAT8ARRAYOID, FLOAT8ARRAYOID};

		plan = CatalogKeepPlan("INSERT INTO icpml.account_feedback AS f (account_id, impressions, examined, reward)"
							   " SELECT u.a, u.n, u.e, u.r FROM ROWS FROM (pg_catalog.unnest($1),"
							   " pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4))"
							   " AS u(a, n, e, r) ORDER BY u.a"
							   " ON CONFLICT (account_id) DO UPDATE SET"
							   " impressions = f.impressions OPERATOR(pg_catalog.+) excluded.impressions,"
							   " examined = f.examined OPERATOR(pg_catalog.+) excluded.examined,"
							   " reward = f.reward OPERATOR(pg_catalog.+) excluded.reward", 4, argtypes, 0);
	}
	ids = palloc(sizeof(Datum) * n);
	cnt = palloc(sizeof(Datum) * n);
	ex = palloc(sizeof(Datum) * n);
	rw = palloc(sizeof(Datum) * n);
	hash_seq_init(&seq, accounts);
	while ((a = hash_seq_search(&seq)) != NULL)
	{
		ids[i] = Int64GetDatum(a->account_id);
		cnt[i] = Int64GetDatum(a->n);
		ex[i] = Float8GetDatum(a->examined);
		rw[i] = Float8GetDatum(a->reward);
		i++;
	}
	args[0] = PointerGetDatum(construct_array(ids, i, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_array(cnt, i, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[2] = PointerGetDatum(construct_array(ex, i, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[3] = PointerGetDatum(construct_array(rw, i, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	if (SPI_execute_plan(plan, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "writing icpml.account_feedback failed");
}

/* Write back every changed state row and the account sums. */
static void
FeedbackFinish(FeedbackCtx *ctx)
{
	HASH_SEQ_STATUS seq;
	UserStateEntry *e;

	FeedbackFlushAccounts(ctx->accounts);
	if (ctx->global.dirty)
		BanditStateStore(&ctx->global);
	hash_seq_init(&seq, ctx->users);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (e->state.dirty)
			BanditStateStore(&e->state);
}

/*
 * Attribute one interaction: reward the most recent pending impression of
 * (user, account) served within the window before it.  Returns true when
 * one was rewarded (and the state updated).
 */
static bool
FeedbackAttribute(FeedbackCtx *ctx, Datum interaction_id, Datum user, Datum account,
				  const char *type, Datum created_at)
{
	Datum		args[6];
	double		reward;
	int			ret;
	bool		isnull;
	Datum		ruser,
				rctx;
	int			rank;

	if (!BanditReward(ctx->cfg, type, &reward))
		return false;			/* not a rewarding type */

	if (plan_attribute == NULL)
	{
		Oid			argtypes[6] = {UUIDOID, INT8OID, TIMESTAMPTZOID, INT8OID, FLOAT8OID, INTERVALOID};

		plan_attribute = CatalogKeepPlan("UPDATE icpml.recommendations AS r SET status = 'rewarded',"
										 " reward = $5, reward_interaction_id = $4, finalized_at = pg_catalog.now(),"
										 " finalize_seq = pg_catalog.nextval('icpml.recommendations_finalize_seq')"
										 " WHERE r.recommendation_id OPERATOR(pg_catalog.=) (SELECT p.recommendation_id"
										 " FROM icpml.recommendations AS p WHERE p.status OPERATOR(pg_catalog.=) 'pending'"
										 " AND p.user_id OPERATOR(pg_catalog.=) $1 AND p.account_id OPERATOR(pg_catalog.=) $2"
										 " AND p.served_at OPERATOR(pg_catalog.<=) $3"
										 " AND p.served_at OPERATOR(pg_catalog.>=) ($3 OPERATOR(pg_catalog.-) $6)"
										 " ORDER BY p.served_at DESC, p.recommendation_id DESC LIMIT 1 FOR UPDATE)"
										 " AND r.status OPERATOR(pg_catalog.=) 'pending'"
										 " RETURNING r.user_id, r.context, r.rank", 6, argtypes, 0);
	}
	args[0] = user;
	args[1] = account;
	args[2] = created_at;
	args[3] = interaction_id;
	args[4] = Float8GetDatum(reward);
	args[5] = IntervalPGetDatum(&ctx->cfg->reward_window);
	ret = SPI_execute_plan(plan_attribute, args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "rewarding a recommendation failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		return false;
	ruser = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	rctx = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	rank = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	FeedbackApply(ctx, ruser, account, rctx, rank, reward);
	ctx->rewarded++;
	return true;
}

/*
 * Attribute the interactions of an SPI result (columns interaction_id,
 * user_id, account_id, interaction_type, created_at, in the order they
 * happened).  The result is copied first: attribution runs queries.
 */
static void
FeedbackAttributeAll(FeedbackCtx *ctx, SPITupleTable *tuptable, uint64 n)
{
	uint64		i;

	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = tuptable->vals[i];
		TupleDesc	desc = tuptable->tupdesc;
		bool		nulls[5];
		Datum		v[5];
		int			j;

		CHECK_FOR_INTERRUPTS();
		for (j = 0; j < 5; j++)
			v[j] = SPI_getbinval(tup, desc, j + 1, &nulls[j]);
		if (nulls[1] || nulls[2] || nulls[3] || nulls[4])
			continue;
		(void) FeedbackAttribute(ctx, v[0], v[1], v[2], TextDatumGetCString(v[3]), v[4]);
	}
}

/* Does any row of a query result have a rewarding interaction type? */
static bool
FeedbackAnyRewarding(const BanditSettings *cfg, SPITupleTable *tuptable, uint64 n)
{
	uint64		i;
	double		r;

	for (i = 0; i < n; i++)
	{
		char	   *type = SPI_getvalue(tuptable->vals[i], tuptable->tupdesc, 4);

		if (type != NULL && BanditReward(cfg, type, &r))
			return true;
	}
	return false;
}

/*
 * The trigger reads the new rows as the extension owner: every column it
 * reads must be of a built-in type (or a domain over one), so that no cast
 * or operator the table's owner defined runs with the owner's rights.
 */
static void
FeedbackCheckColumnTypes(TupleDesc desc, const char *relname)
{
	static const char *const columns[] = {
		"interaction_id", "user_id", "account_id", "interaction_type", "created_at"
	};
	int			c,
				i;

	for (c = 0; c < lengthof(columns); c++)
	{
		for (i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped && strcmp(NameStr(att->attname), columns[c]) == 0)
				break;
		}
		if (i == desc->natts)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" does not exist in interactions relation \"%s\"",
							columns[c], relname),
					 errhint("The interactions relation needs interaction_id, user_id, account_id, interaction_type and created_at.")));
		if (getBaseType(TupleDescAttr(desc, i)->atttypid) >= FirstNormalObjectId)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" of interactions relation \"%s\" has a user-defined type",
							columns[c], relname),
					 errhint("The online feedback trigger reads these columns as the extension owner; use built-in types (uuid, bigint, text, timestamptz).")));
	}
}

/*
 * AFTER INSERT ... REFERENCING NEW TABLE AS icpml_new FOR EACH STATEMENT
 * trigger on the interactions relation (see enable_online_feedback()).
 */
Datum
feedback_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	FeedbackCtx ctx;
	CatalogOwnerState owner;
	int			ret;
	Datum		arg;
	Oid			argtype = INTERVALOID;
	SPITupleTable *matches;
	uint64		nmatches;

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

	FeedbackCheckColumnTypes(RelationGetDescr(trigdata->tg_relation),
							 RelationGetRelationName(trigdata->tg_relation));

	SPI_connect();
	if (SPI_register_trigger_data(trigdata) != SPI_OK_TD_REGISTER)
		elog(ERROR, "SPI_register_trigger_data failed (please report a bug)");
	CatalogSwitchToOwner(&owner);

	memset(&ctx, 0, sizeof(ctx));
	ctx.cfg = BanditGetSettings();

	/* the new interactions that may reward a pending impression, in order */
	arg = IntervalPGetDatum(&ctx.cfg->reward_window);
	ret = SPI_execute_with_args("SELECT n.interaction_id::pg_catalog.int8, n.user_id::pg_catalog.uuid,"
								" n.account_id::pg_catalog.int8, n.interaction_type::pg_catalog.text,"
								" n.created_at::pg_catalog.timestamptz FROM icpml_new AS n"
								" WHERE EXISTS (SELECT FROM icpml.recommendations AS p"
								" WHERE p.status OPERATOR(pg_catalog.=) 'pending'"
								" AND p.user_id OPERATOR(pg_catalog.=) n.user_id"
								" AND p.account_id OPERATOR(pg_catalog.=) n.account_id"
								" AND p.served_at OPERATOR(pg_catalog.<=) n.created_at"
								" AND p.served_at OPERATOR(pg_catalog.>=) (n.created_at OPERATOR(pg_catalog.-) $1))"
								" ORDER BY n.created_at, n.interaction_id",
								1, &argtype, &arg, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading new interactions failed: %s", SPI_result_code_string(ret));
	matches = SPI_tuptable;
	nmatches = SPI_processed;

	if (nmatches > 0 && FeedbackAnyRewarding(ctx.cfg, matches, nmatches))
	{
		FeedbackBegin(&ctx);
		FeedbackAttributeAll(&ctx, matches, nmatches);
		FeedbackFinish(&ctx);
	}

	CatalogRestoreUser(&owner);
	SPI_finish();
	return PointerGetDatum(NULL);
}

/* Order finalized rows by finalize_seq (column 3). */
typedef struct ExpiredRow
{
	int64		seq;
	Datum		user;
	Datum		context;
	Datum		account;
	int			rank;
} ExpiredRow;

static int
FeedbackCompareSeq(const void *a, const void *b)
{
	int64		sa = ((const ExpiredRow *) a)->seq;
	int64		sb = ((const ExpiredRow *) b)->seq;

	return sa < sb ? -1 : (sa > sb ? 1 : 0);
}

/*
 * process_feedback(as_of timestamptz) → table(rewarded bigint, expired bigint)
 * Batch feedback for pg_cron, for administrators.  The interactions are
 * read as the caller (a relation the caller names must never be read with
 * the owner's rights: its view or cast code would run as the owner), the
 * rest runs as the extension owner.
 */
Datum
process_feedback(PG_FUNCTION_ARGS)
{
	TimestampTz as_of = PG_GETARG_TIMESTAMPTZ(0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	FeedbackCtx ctx;
	CatalogOwnerState owner;
	int			ret;
	char	   *rel;
	Datum		args[2];
	Oid			argtypes[2] = {TIMESTAMPTZOID, INTERVALOID};
	Datum		values[2];
	bool		nulls[2] = {false, false};

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	rel = RelationResolveInteractions();	/* with the caller's search_path */
	CatalogSwitchToOwner(&owner);
	memset(&ctx, 0, sizeof(ctx));
	ctx.cfg = BanditGetSettings();
	FeedbackBegin(&ctx);

	/*
	 * 1. interactions up to as_of that match a pending impression, in order.
	 * The (user, account) semi-join and the lower time bound are implied by
	 * the EXISTS; they let the planner start from the pending impressions
	 * (few) instead of scanning every interaction ever logged.
	 */
	args[0] = TimestampTzGetDatum(as_of);
	args[1] = IntervalPGetDatum(&ctx.cfg->reward_window);
	CatalogRestoreUser(&owner);
	ret = SPI_execute_with_args(psprintf("SELECT i.interaction_id::pg_catalog.int8, i.user_id::pg_catalog.uuid,"
										 " i.account_id::pg_catalog.int8, i.interaction_type::pg_catalog.text,"
										 " i.created_at::pg_catalog.timestamptz FROM %s AS i"
										 " WHERE (i.user_id, i.account_id) OPERATOR(pg_catalog.=) ANY"
										 " (SELECT p.user_id, p.account_id FROM icpml.recommendations AS p"
										 " WHERE p.status OPERATOR(pg_catalog.=) 'pending')"
										 " AND i.created_at OPERATOR(pg_catalog.<=) $1"
										 " AND i.created_at OPERATOR(pg_catalog.>=) (SELECT pg_catalog.min(p.served_at)"
										 " FROM icpml.recommendations AS p WHERE p.status OPERATOR(pg_catalog.=) 'pending')"
										 " AND EXISTS (SELECT FROM icpml.recommendations AS p"
										 " WHERE p.status OPERATOR(pg_catalog.=) 'pending'"
										 " AND p.user_id OPERATOR(pg_catalog.=) i.user_id"
										 " AND p.account_id OPERATOR(pg_catalog.=) i.account_id"
										 " AND p.served_at OPERATOR(pg_catalog.<=) i.created_at"
										 " AND p.served_at OPERATOR(pg_catalog.>=) (i.created_at OPERATOR(pg_catalog.-) $2))"
										 " AND NOT EXISTS (SELECT FROM icpml.recommendations AS q"
										 " WHERE q.reward_interaction_id OPERATOR(pg_catalog.=) i.interaction_id)"
										 " ORDER BY i.created_at, i.interaction_id", rel),
								2, argtypes, args, NULL, false, 0);
	CatalogSwitchToOwner(&owner);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading interactions failed: %s", SPI_result_code_string(ret));
	FeedbackAttributeAll(&ctx, SPI_tuptable, SPI_processed);

	/* 2. expire what is older than the window, in batches */
	for (;;)
	{
		uint64		n,
					i;
		ExpiredRow *rows;
		SPITupleTable *tt;

		CHECK_FOR_INTERRUPTS();
		ret = SPI_execute_with_args("UPDATE icpml.recommendations AS r SET status = 'expired', reward = 0,"
									" finalized_at = pg_catalog.now(),"
									" finalize_seq = pg_catalog.nextval('icpml.recommendations_finalize_seq')"
									" WHERE r.recommendation_id OPERATOR(pg_catalog.=) ANY (SELECT p.recommendation_id"
									" FROM icpml.recommendations AS p WHERE p.status OPERATOR(pg_catalog.=) 'pending'"
									" AND p.served_at OPERATOR(pg_catalog.<) ($1 OPERATOR(pg_catalog.-) $2)"
									" ORDER BY p.recommendation_id"
									" LIMIT " CppAsString2(FEEDBACK_BATCH) " FOR UPDATE)"
									" AND r.status OPERATOR(pg_catalog.=) 'pending'"
									" RETURNING r.user_id, r.context, r.finalize_seq, r.rank, r.account_id",
									2, argtypes, args, NULL, false, 0);
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

			rows[i].user = SPI_getbinval(tup, desc, 1, &isnull);
			rows[i].context = SPI_getbinval(tup, desc, 2, &isnull);
			rows[i].seq = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
			rows[i].rank = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
			rows[i].account = SPI_getbinval(tup, desc, 5, &isnull);
		}
		/* apply in the order the sequence numbered them */
		qsort(rows, n, sizeof(ExpiredRow), FeedbackCompareSeq);
		for (i = 0; i < n; i++)
			FeedbackApply(&ctx, rows[i].user, rows[i].account, rows[i].context, rows[i].rank, 0.0);
		ctx.expired += n;
		SPI_freetuptable(tt);
		pfree(rows);
		if (n < FEEDBACK_BATCH)
			break;
	}

	FeedbackFinish(&ctx);
	CatalogRestoreUser(&owner);

	values[0] = Int64GetDatum(ctx.rewarded);
	values[1] = Int64GetDatum(ctx.expired);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	SPI_finish();
	return (Datum) 0;
}

/*
 * Replays skip impressions logged with a context of another dimension (by
 * an icpml version with another context layout; the upgrade finalizes them).
 */
#define FEEDBACK_SAME_DIM " AND pg_catalog.cardinality(context) OPERATOR(pg_catalog.=) " CppAsString2(BANDIT_DIM)

/* Replay finalized impressions from a query into states; returns the count. */
static int64
FeedbackReplay(const char *sql, bool per_user, const BanditSettings *cfg, BanditState *global)
{
	Portal		portal;
	int64		count = 0;
	BanditState user;
	char		scope[48] = "";
	MemoryContext replaycxt = AllocSetContextCreate(CurrentMemoryContext, "icpml replay",
													ALLOCSET_DEFAULT_SIZES);

	portal = SPI_cursor_open_with_args(NULL, sql, 0, NULL, NULL, NULL, true, 0);
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
			bool		isnull;
			double		x[BANDIT_DIM];
			double		r;

			FeedbackContext(SPI_getbinval(tup, desc, 1, &isnull), x);
			r = DatumGetFloat8(SPI_getbinval(tup, desc, 2, &isnull));
			if (isnull)
				r = 0.0;
			FeedbackExamine(cfg, DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull)), x);
			if (per_user)
			{
				char		next[48];

				BanditUserScope(DatumGetUUIDP(SPI_getbinval(tup, desc, 4, &isnull)), next);
				if (strcmp(next, scope) != 0)
				{
					if (scope[0] != '\0')
						BanditStateStore(&user);
					MemoryContextReset(replaycxt);
					strlcpy(scope, next, sizeof(scope));
					{
						MemoryContext old = MemoryContextSwitchTo(replaycxt);

						BanditStateInitPrior(&user, scope, BANDIT_DIM, cfg);
						MemoryContextSwitchTo(old);
					}
				}
				BanditStateUpdate(&user, x, r, cfg);
			}
			else
				BanditStateUpdate(global, x, r, cfg);
			count++;
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
 * The per-account sums of every finalized impression, read through a
 * cursor (the accounts' hash is the only thing kept).
 */
static HTAB *
FeedbackReplayAccounts(const BanditSettings *cfg)
{
	HTAB	   *accounts = FeedbackAccountsCreate();
	Portal		portal = SPI_cursor_open_with_args(NULL, "SELECT account_id, rank, reward"
												   " FROM icpml.recommendations"
												   " WHERE finalize_seq IS NOT NULL",
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

			FeedbackAccountAdd(accounts, cfg, id, rank, isnull ? 0.0 : reward);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	return accounts;
}

/*
 * rebuild_bandit_state() → bigint
 * Recompute every state row from the finalized log, in finalization order
 * (uses the current lambda, gamma, refactor_every and position_bias).
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

	/* the global row lock keeps every feedback writer out until commit */
	(void) BanditStateLoad(&locked, "global", true, false, cfg);

	ret = SPI_execute("DELETE FROM icpml.bandit_state WHERE scope OPERATOR(pg_catalog.<>) 'global'",
					  false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "clearing icpml.bandit_state failed: %s", SPI_result_code_string(ret));

	/* the per-account sums, from every finalized impression (any context size) */
	if (SPI_execute("DELETE FROM icpml.account_feedback", false, 0) != SPI_OK_DELETE)
		elog(ERROR, "clearing icpml.account_feedback failed");
	FeedbackFlushAccounts(FeedbackReplayAccounts(cfg));

	BanditStateInitPrior(&global, "global", BANDIT_DIM, cfg);
	count = FeedbackReplay("SELECT context, reward, rank FROM icpml.recommendations"
						   " WHERE finalize_seq IS NOT NULL" FEEDBACK_SAME_DIM
						   " ORDER BY finalize_seq",
						   false, cfg, &global);
	(void) FeedbackReplay("SELECT context, reward, rank, user_id FROM icpml.recommendations"
						  " WHERE finalize_seq IS NOT NULL" FEEDBACK_SAME_DIM
						  " ORDER BY user_id, finalize_seq",
						  true, cfg, NULL);
	BanditStateStore(&global);

	CatalogRestoreUser(&owner);
	SPI_finish();
	PG_RETURN_INT64(count);
}
