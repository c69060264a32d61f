/*
 * feedback.h — rewards for served recommendations and the bandit updates
 * they make: attribution and the SQL entry points (feedback.c), applying
 * updates to the states (feedback_apply.c), the rebuild from the log
 * (feedback_rebuild.c).
 *
 * recommend.c calls FeedbackLockServing before it logs a list; the rest is
 * the feedback module's own.
 */
#ifndef ICPML_FEEDBACK_H
#define ICPML_FEEDBACK_H

#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/uuid.h"

#include "bandit.h"

/* Rows per batch of the batch paths (expiry, replay). */
#define FEEDBACK_BATCH 10000

/*
 * The advisory lock class of "a list is being served to this user"
 * ('icpf'): pg_locks shows it as an advisory lock with classid 1768124518,
 * objid the hash of the user id and objsubid 2.
 */
#define FEEDBACK_LOCK_CLASS 0x69637066

/* feedback.c: the serving side of attribution by commit order. */
extern void FeedbackLockServing(const pg_uuid_t *user);

/*
 * feedback_apply.c: one transaction's updates of the bandit.  A writer
 * begins (locking the global state when it updates it directly), applies
 * finalized impressions and reward changes (each counted once in the
 * user's state at once; in the global state at once or through the queue,
 * or in the experiment variant's own state named by the impression's
 * state_scope at the end; a holdout impression, scope "none", in no state),
 * then finishes (queue rows, variant states, a fold when the global row is
 * free, every changed row written back).
 */
typedef struct FeedbackCtx
{
	const BanditSettings *cfg;
	bool		immediate;		/* update the global state directly */
	bool		have_global;	/* the global row is locked and loaded */
	BanditState global;
	HTAB	   *users;			/* user states locked so far, by scope */
	HTAB	   *accounts;		/* account_feedback sums to add */
	/* queue rows to append (update_seq, recommendation_id, first, reward) */
	int			nqueued;
	int			maxqueued;
	int64	   *q_seq;
	int64	   *q_id;
	bool	   *q_first;
	double	   *q_reward;
	/* updates of experiment variants' own states, applied in FeedbackFinish */
	int			nvariant;
	int			maxvariant;
	struct FeedbackVariantUpdate *v_updates;
	/* counts for the caller */
	int64		rewarded;		/* impressions rewarded for the first time */
	int64		improved;		/* later interactions that changed a reward */
	int64		expired;
	int64		folded;			/* queued updates folded into the global state */
} FeedbackCtx;

extern void FeedbackBegin(FeedbackCtx *ctx, const BanditSettings *cfg, bool lock_global);
extern BanditState *FeedbackUserState(FeedbackCtx *ctx, const pg_uuid_t *user);
extern void FeedbackContext(Datum d, double *x);
extern void FeedbackExamine(const BanditSettings *cfg, int rank, double *x);
extern void FeedbackApply(FeedbackCtx *ctx, const pg_uuid_t *user, int64 recommendation_id,
						  int64 account_id, Datum context, int rank, double reward,
						  bool first, int64 update_seq, const char *scope);
extern void FeedbackFinish(FeedbackCtx *ctx);

/* Per-account sums of finalized impressions (feedback_apply.c). */
extern HTAB *FeedbackAccountsCreate(void);
extern void FeedbackAccountAdd(HTAB *accounts, const BanditSettings *cfg, int64 account_id,
							   int rank, double reward, bool first);
extern void FeedbackFlushAccounts(HTAB *accounts);

#endif							/* ICPML_FEEDBACK_H */
