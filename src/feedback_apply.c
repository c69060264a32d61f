/*
 * feedback_apply.c — one transaction's updates of the bandit: the user's
 * state, the shared (global) state directly or through icpml.bandit_queue,
 * and the per-account sums of icpml.account_feedback.
 *
 * An update is either the first reward of an impression ("first": A += z z',
 * b += r z, n + 1, the account's impressions and examined weight + 1) or a
 * later change of its reward (b += delta z, the account's reward + delta),
 * z the logged context scaled by the examination probability of its rank.
 * Each is drawn a number from icpml.recommendations_finalize_seq by the
 * caller while it holds the user's state row, so a user's updates are
 * numbered in the order they were applied to the user's state.
 *
 * The global state, two ways (bandit_settings.state_updates):
 *   immediate  the writer locks the global row first (FeedbackBegin) and
 *              applies its updates at once, in the order it numbers them:
 *              writers are serialised on that row, and the log's numbers
 *              are the order of the global updates (exact replay, also
 *              with forgetting, which is why gamma < 1 is always immediate)
 *   queued     the writer appends its updates to icpml.bandit_queue; at the
 *              end it tries the global row (SKIP LOCKED) and, when it gets
 *              it, folds every queued update it can see (its own and those
 *              of writers that committed) in number order; otherwise a
 *              later writer, process_feedback() or rebuild_bandit_state()
 *              does.  No writer waits for another.  A and b are sums, so
 *              the folded state equals the replay in number order up to
 *              rounding; the Cholesky factor too.
 * A queue row and the update it stands for commit together; the fold
 * deletes what it applies under the global row lock: each update reaches
 * the global state exactly once.
 *
 * Experiments with separate states: an impression whose state_scope names
 * a variant (variant:<experiment>/<variant>) updates that state instead of
 * the global one, always directly: the writer collects those updates and
 * applies them in FeedbackFinish, locking the variant rows last, in scope
 * order, each row's updates in number order.  A holdout impression (scope
 * "none") updates no state, not even its user's or account_feedback.
 *
 * Lock order (no cycles): the global row (immediate writers,
 * process_feedback, rebuild) -> bandit_queue (ROW EXCLUSIVE for queued
 * writers, taken in FeedbackBegin; EXCLUSIVE for rebuild) -> a user's state
 * row -> the user's impressions -> variant state rows (in scope order).  A
 * queued writer never waits for the global row.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/uuid.h"

#include "bandit.h"
#include "catalog.h"
#include "feedback.h"

typedef struct UserStateEntry
{
	char		scope[48];		/* hash key */
	BanditState state;
} UserStateEntry;

/* One update of an experiment variant's own state, applied in FeedbackFinish. */
typedef struct FeedbackVariantUpdate
{
	char		scope[BANDIT_SCOPE_LEN];
	int64		seq;
	int64		account_id;
	int			rank;
	bool		first;
	double		reward;
	double		x[BANDIT_DIM];	/* the context, scaled by examination */
} FeedbackVariantUpdate;

/* Per-account sums of finalized impressions, flushed to icpml.account_feedback. */
typedef struct AccountFeedbackEntry
{
	int64		account_id;		/* hash key */
	int64		n;
	double		examined;
	double		reward;
} AccountFeedbackEntry;

/* An empty hash of per-account sums (AccountFeedbackEntry by account id). */
HTAB *
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

/*
 * Count an update in its account's sums: a first reward adds an impression
 * (served at rank) and its reward, a change adds the change.
 */
void
FeedbackAccountAdd(HTAB *accounts, const BanditSettings *cfg, int64 account_id, int rank,
				   double reward, bool first)
{
	bool		found;
	AccountFeedbackEntry *a = hash_search(accounts, &account_id, HASH_ENTER, &found);

	if (!found)
		a->n = 0, a->examined = 0.0, a->reward = 0.0;
	if (first)
	{
		a->n++;
		a->examined += BanditExamination(cfg, rank);
	}
	a->reward += reward;
}

/* Add the per-account sums of a hash to icpml.account_feedback (one statement). */
void
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

/*
 * Prepare a transaction's updates (inside SPI, as the owner).  lock_global:
 * hold the global row from here on whatever the settings say (the batch
 * paths do).
 */
void
FeedbackBegin(FeedbackCtx *ctx, const BanditSettings *cfg, bool lock_global)
{
	HASHCTL		hctl;

	memset(ctx, 0, sizeof(*ctx));
	ctx->cfg = cfg;
	memset(&hctl, 0, sizeof(hctl));
	hctl.keysize = 48;
	hctl.entrysize = sizeof(UserStateEntry);
	hctl.hcxt = CurrentMemoryContext;
	ctx->users = hash_create("icpml feedback users", 64, &hctl,
							 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	ctx->accounts = FeedbackAccountsCreate();
	ctx->immediate = lock_global || !cfg->queue_updates || cfg->gamma < 1.0;
	if (ctx->immediate)
	{
		(void) BanditStateLoad(&ctx->global, "global", true, true, cfg);
		ctx->have_global = true;
	}
	else
	{
		/* before any user state: rebuild_bandit_state takes it EXCLUSIVE */
		LockRelationOid(CatalogRelid("bandit_queue"), RowExclusiveLock);
	}
}

/* The state of one user, locked and read on first use. */
BanditState *
FeedbackUserState(FeedbackCtx *ctx, const pg_uuid_t *user)
{
	char		scope[48];
	bool		found;
	UserStateEntry *e;

	BanditUserScope(user, scope);
	e = hash_search(ctx->users, scope, HASH_ENTER, &found);
	if (!found)
		(void) BanditStateLoad(&e->state, scope, true, true, ctx->cfg);
	return &e->state;
}

/* The context vector stored with an impression, as doubles. */
void
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

/*
 * Scale a logged context by the examination probability of the rank it was
 * served at (position-based model: E[reward] = examination(rank) * x' theta,
 * so the regression is on examination(rank) * x).
 */
void
FeedbackExamine(const BanditSettings *cfg, int rank, double *x)
{
	double		e = BanditExamination(cfg, rank);
	int			i;

	if (e == 1.0)
		return;
	for (i = 0; i < BANDIT_DIM; i++)
		x[i] *= e;
}

/* One update of one state: a new observation, or a change of its reward. */
static void
FeedbackUpdate(BanditState *s, const double *x, double reward, bool first,
			   const BanditSettings *cfg)
{
	if (first)
		BanditStateUpdate(s, x, reward, cfg);
	else
		BanditStateAddReward(s, x, reward);
}

/*
 * Apply one update numbered update_seq: to the user's state at once; to the
 * global state at once or through the queue, or, when scope names an
 * experiment variant's state, to that state in FeedbackFinish; to nothing
 * when scope is "none" (the holdout).  scope NULL is the global state.
 * reward is the first reward when first, else the change of the reward.
 */
void
FeedbackApply(FeedbackCtx *ctx, const pg_uuid_t *user, int64 recommendation_id,
			  int64 account_id, Datum context, int rank, double reward, bool first,
			  int64 update_seq, const char *scope)
{
	double		x[BANDIT_DIM];

	if (scope != NULL && strcmp(scope, BANDIT_SCOPE_NONE) == 0)
		return;					/* held out: its feedback trains nothing */
	FeedbackContext(context, x);
	FeedbackExamine(ctx->cfg, rank, x);
	FeedbackUpdate(FeedbackUserState(ctx, user), x, reward, first, ctx->cfg);
	if (scope != NULL && strcmp(scope, "global") != 0)
	{
		FeedbackVariantUpdate *u;

		if (ctx->nvariant == ctx->maxvariant)
		{
			ctx->maxvariant = Max(16, ctx->maxvariant * 2);
			ctx->v_updates = ctx->v_updates == NULL ?
				palloc(sizeof(FeedbackVariantUpdate) * ctx->maxvariant) :
				repalloc(ctx->v_updates, sizeof(FeedbackVariantUpdate) * ctx->maxvariant);
		}
		u = &ctx->v_updates[ctx->nvariant++];
		if (strlcpy(u->scope, scope, sizeof(u->scope)) >= sizeof(u->scope))
			elog(ERROR, "bandit state scope \"%s\" is too long (please report a bug)", scope);
		u->seq = update_seq;
		u->account_id = account_id;
		u->rank = rank;
		u->first = first;
		u->reward = reward;
		memcpy(u->x, x, sizeof(x));
		return;
	}
	if (ctx->have_global)
	{
		FeedbackUpdate(&ctx->global, x, reward, first, ctx->cfg);
		FeedbackAccountAdd(ctx->accounts, ctx->cfg, account_id, rank, reward, first);
		return;
	}
	if (ctx->nqueued == ctx->maxqueued)
	{
		ctx->maxqueued = Max(16, ctx->maxqueued * 2);
		if (ctx->q_seq == NULL)
		{
			ctx->q_seq = palloc(sizeof(int64) * ctx->maxqueued);
			ctx->q_id = palloc(sizeof(int64) * ctx->maxqueued);
			ctx->q_first = palloc(sizeof(bool) * ctx->maxqueued);
			ctx->q_reward = palloc(sizeof(double) * ctx->maxqueued);
		}
		else
		{
			ctx->q_seq = repalloc(ctx->q_seq, sizeof(int64) * ctx->maxqueued);
			ctx->q_id = repalloc(ctx->q_id, sizeof(int64) * ctx->maxqueued);
			ctx->q_first = repalloc(ctx->q_first, sizeof(bool) * ctx->maxqueued);
			ctx->q_reward = repalloc(ctx->q_reward, sizeof(double) * ctx->maxqueued);
		}
	}
	ctx->q_seq[ctx->nqueued] = update_seq;
	ctx->q_id[ctx->nqueued] = recommendation_id;
	ctx->q_first[ctx->nqueued] = first;
	ctx->q_reward[ctx->nqueued] = reward;
	ctx->nqueued++;
}

/* Append the transaction's queued updates to icpml.bandit_queue (one statement). */
static void
FeedbackWriteQueue(FeedbackCtx *ctx)
{
	static SPIPlanPtr plan = NULL;
	Datum	   *seq,
			   *id,
			   *first,
			   *rw;
	Datum		args[4];
	int			i,
				ret;

	if (ctx->nqueued == 0)
		return;
	if (plan == NULL)
	{
		Oid			argtypes[4] = {INT8ARRAYOID, INT8ARRAYOID, BOOLARRAYOID, FLOAT8ARRAYOID};

		plan = CatalogKeepPlan("INSERT INTO icpml.bandit_queue (update_seq, recommendation_id, first, reward)"
							   " SELECT u.s, u.i, u.f, u.r FROM ROWS FROM (pg_catalog.unnest($1),"
							   " pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4))"
							   " AS u(s, i, f, r)", 4, argtypes, 0);
	}
	seq = palloc(sizeof(Datum) * ctx->nqueued);
	id = palloc(sizeof(Datum) * ctx->nqueued);
	first = palloc(sizeof(Datum) * ctx->nqueued);
	rw = palloc(sizeof(Datum) * ctx->nqueued);
	for (i = 0; i < ctx->nqueued; i++)
	{
		seq[i] = Int64GetDatum(ctx->q_seq[i]);
		id[i] = Int64GetDatum(ctx->q_id[i]);
		first[i] = BoolGetDatum(ctx->q_first[i]);
		rw[i] = Float8GetDatum(ctx->q_reward[i]);
	}
	args[0] = PointerGetDatum(construct_array(seq, i, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_array(id, i, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[2] = PointerGetDatum(construct_array(first, i, BOOLOID, 1, true, TYPALIGN_CHAR));
	args[3] = PointerGetDatum(construct_array(rw, i, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	ret = SPI_execute_plan(plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "writing icpml.bandit_queue failed: %s", SPI_result_code_string(ret));
}

/*
 * Fold the queued updates this transaction can see into the global state
 * (held), oldest number first, in batches; each is deleted as it is applied.
 */
static void
FeedbackFold(FeedbackCtx *ctx)
{
	static SPIPlanPtr plan = NULL;

	Assert(ctx->have_global);
	if (plan == NULL)
		plan = CatalogKeepPlan("WITH d AS (DELETE FROM icpml.bandit_queue AS q"
							   " WHERE q.update_seq OPERATOR(pg_catalog.=) ANY (SELECT o.update_seq"
							   " FROM icpml.bandit_queue AS o ORDER BY o.update_seq"
							   " LIMIT " CppAsString2(FEEDBACK_BATCH) ")"
							   " RETURNING q.update_seq, q.recommendation_id, q.first, q.reward)"
							   " SELECT d.update_seq, d.first, d.reward, r.context, r.rank, r.account_id"
							   " FROM d LEFT JOIN icpml.recommendations AS r"
							   " ON r.recommendation_id OPERATOR(pg_catalog.=) d.recommendation_id"
							   " ORDER BY d.update_seq", 0, NULL, 0);
	for (;;)
	{
		SPITupleTable *tt;
		uint64		n,
					i;
		int			ret;

		CHECK_FOR_INTERRUPTS();
		ret = SPI_execute_plan(plan, NULL, NULL, false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "folding icpml.bandit_queue failed: %s", SPI_result_code_string(ret));
		tt = SPI_tuptable;
		n = SPI_processed;
		for (i = 0; i < n; i++)
		{
			HeapTuple	tup = tt->vals[i];
			bool		first,
						isnull;
			double		reward,
						x[BANDIT_DIM];
			Datum		context;
			int			rank;

			first = DatumGetBool(SPI_getbinval(tup, tt->tupdesc, 2, &isnull));
			reward = DatumGetFloat8(SPI_getbinval(tup, tt->tupdesc, 3, &isnull));
			context = SPI_getbinval(tup, tt->tupdesc, 4, &isnull);
			if (isnull)
				continue;		/* its impression was deleted from the log */
			rank = DatumGetInt32(SPI_getbinval(tup, tt->tupdesc, 5, &isnull));
			FeedbackContext(context, x);
			FeedbackExamine(ctx->cfg, rank, x);
			FeedbackUpdate(&ctx->global, x, reward, first, ctx->cfg);
			FeedbackAccountAdd(ctx->accounts, ctx->cfg,
							   DatumGetInt64(SPI_getbinval(tup, tt->tupdesc, 6, &isnull)),
							   rank, reward, first);
			ctx->folded++;
		}
		SPI_freetuptable(tt);
		if (n < FEEDBACK_BATCH)
			break;
	}
}

/* Order of variant updates: by scope, then by number. */
static int
FeedbackCompareVariantUpdates(const void *a, const void *b)
{
	const FeedbackVariantUpdate *x = (const FeedbackVariantUpdate *) a;
	const FeedbackVariantUpdate *y = (const FeedbackVariantUpdate *) b;
	int			c = strcmp(x->scope, y->scope);

	if (c != 0)
		return c;
	return x->seq < y->seq ? -1 : x->seq > y->seq ? 1 : 0;
}

/*
 * Apply the collected updates of experiment variants' own states: each
 * row locked (created from the prior when missing) in scope order, its
 * updates in number order, written back.
 */
static void
FeedbackApplyVariants(FeedbackCtx *ctx)
{
	BanditState state;
	int			i = 0;

	if (ctx->nvariant == 0)
		return;
	qsort(ctx->v_updates, ctx->nvariant, sizeof(FeedbackVariantUpdate),
		  FeedbackCompareVariantUpdates);
	while (i < ctx->nvariant)
	{
		const char *scope = ctx->v_updates[i].scope;

		CHECK_FOR_INTERRUPTS();
		(void) BanditStateLoad(&state, scope, true, true, ctx->cfg);
		for (; i < ctx->nvariant && strcmp(ctx->v_updates[i].scope, scope) == 0; i++)
		{
			FeedbackVariantUpdate *u = &ctx->v_updates[i];

			FeedbackUpdate(&state, u->x, u->reward, u->first, ctx->cfg);
			FeedbackAccountAdd(ctx->accounts, ctx->cfg, u->account_id, u->rank, u->reward, u->first);
		}
		BanditStateStore(&state);
	}
	ctx->nvariant = 0;
}

/*
 * Write back what the transaction changed: its queue rows, every user
 * state, the variants' own states, then (when the global row is held or
 * free) the folded global state, and the account sums.
 */
void
FeedbackFinish(FeedbackCtx *ctx)
{
	HASH_SEQ_STATUS seq;
	UserStateEntry *e;

	FeedbackWriteQueue(ctx);
	hash_seq_init(&seq, ctx->users);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (e->state.dirty)
			BanditStateStore(&e->state);
	FeedbackApplyVariants(ctx);
	/* a writer that queued folds if no one else is folding: it never waits */
	if (!ctx->have_global && ctx->nqueued > 0)
		ctx->have_global = BanditStateLoadIfFree(&ctx->global, "global", ctx->cfg);
	if (ctx->have_global)
		FeedbackFold(ctx);
	if (ctx->have_global && ctx->global.dirty)
		BanditStateStore(&ctx->global);
	FeedbackFlushAccounts(ctx->accounts);
}
