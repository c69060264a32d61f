/*
 * bandit.h — the contextual bandit: its settings (bandit_settings.c), the
 * linear algebra over small dense matrices (bandit_linalg.c) and the
 * ridge-regression state, in memory and in icpml.bandit_state
 * (bandit_state.c).
 *
 * Used by the recommender (recommend.c, context.c, policy.c) and by the
 * feedback that updates the state (feedback.c).  The context vector the
 * state is a regression on is laid out in context.h.
 */
#ifndef ICPML_BANDIT_H
#define ICPML_BANDIT_H

#include "postgres.h"

#include "common/pg_prng.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/* Largest context dimension the state tables accept. */
#define BANDIT_MAX_DIM 64

/* Dimension of the context vector (context.h lays out its entries). */
#define BANDIT_DIM 64

StaticAssertDecl(BANDIT_DIM <= BANDIT_MAX_DIM, "context dimension");

/*
 * Sane ranges of the settings (icpml.bandit_settings has the same CHECK
 * constraints; BanditGetSettings checks them again): outside them the
 * numbers overflow into NaN scores.
 */
#define BANDIT_MAX_ALPHA 100.0
#define BANDIT_MAX_V 100.0
#define BANDIT_MIN_LAMBDA 1e-6	/* lambda and personalization_prior */
#define BANDIT_MAX_LAMBDA 1e9
#define BANDIT_MAX_ABS_ICP_PRIOR 100.0
#define BANDIT_MIN_GAMMA 1e-6
#define BANDIT_MAX_ABS_REWARD 1000.0

/* Vocabulary sizes: each industry and technology has a context slot. */
#define BANDIT_MAX_INDUSTRIES 12
#define BANDIT_MAX_TECHNOLOGIES 24

/* The ranking policies (policy.c), in the order of their SQL names. */
typedef enum BanditPolicy
{
	POLICY_LINUCB,
	POLICY_THOMPSON,
	POLICY_GREEDY,
	POLICY_EPSILON_GREEDY,
	POLICY_ICP,
	POLICY_RANDOM
} BanditPolicy;

#define BANDIT_NPOLICIES (POLICY_RANDOM + 1)

/*
 * How an impression's reward follows from the interactions attributed to
 * it within the window (bandit_settings.reward_aggregate).
 */
typedef enum BanditRewardAggregate
{
	REWARD_MAX,					/* the best one */
	REWARD_SUM,					/* their sum, at most reward_cap */
	REWARD_FIRST				/* the first one (0.3.0) */
} BanditRewardAggregate;

/* icpml.bandit_settings and icpml.reward_map, cached per backend. */
typedef struct BanditSettings
{
	BanditPolicy default_policy;
	double		alpha;
	double		v;
	double		epsilon;
	double		lambda;
	double		icp_prior;
	int			candidates;
	Interval	reward_window;
	double		gamma;
	int			refactor_every;
	bool		personalization;
	double		personalization_weight;
	double		personalization_prior;
	bool		exclude_dismissed;
	int			n_worked_types;
	char	  **worked_types;
	int			history_limit;
	double		fatigue_decay;
	double		position_bias;
	int			n_industries;
	char	  **industries;
	int			n_technologies;
	char	  **technologies;
	int			technology_lengths[BANDIT_MAX_TECHNOLOGIES];	/* strlen of each */
	/* retrieval sources: shares of the candidates (retrieval.c) */
	double		affinity_share;
	double		fresh_share;
	double		explore_share;
	Interval	fresh_window;
	Interval	exclude_recent;	/* accounts the user acted on this recently are left out */
	int			exploit_slots;	/* the first slots of a list go by mu (policy.c) */
	int			warm_start;		/* impressions learnt over which exploration opens */
	int			n_rewards;
	char	  **reward_types;
	double	   *rewards;
	/*
	 * Feedback (feedback.c): the reward aggregate, whether writers queue
	 * their updates of the shared state, how long an interaction waits for
	 * a list being served to its user, whether a later step of a funnel
	 * credits the impression the funnel started from (attribution 'funnel').  has_feedback_log is false when the
	 * installed SQL predates icpml.feedback_events (0.3.0 objects with this
	 * library): online feedback then waits for ALTER EXTENSION UPDATE.
	 */
	bool		has_feedback_log;
	BanditRewardAggregate reward_aggregate;
	double		reward_cap;
	bool		queue_updates;
	int			attribution_wait_ms;
	bool		funnel_attribution;
	/*
	 * The running experiment (icpml.experiments), experiment NULL when none;
	 * has_experiments false when the installed SQL predates experiments
	 * (0.2.0 objects with this library: the log has no experiment columns).
	 */
	bool		has_experiments;
	char	   *experiment;
	int			n_variants;
	char	  **variants;		/* labels (0.3.0: policy names) */
	BanditPolicy *variant_policies;
	double	   *variant_weights;
	/*
	 * Per-variant states and the holdout (0.4.0 SQL; before: shared state,
	 * no holdout).  variant_scopes[i] is the bandit_state scope variant i
	 * ranks with and trains, "global" when the variants share it.
	 */
	char	  **variant_scopes;
	/*
	 * The model version whose scores variant i serves when it is not the
	 * deployed one (icpml.version_scores), else 0: the deployed model's.
	 */
	int32	   *variant_versions;
	double		holdout;		/* share of users held out, 0 none */
	BanditPolicy holdout_policy;
} BanditSettings;

/* The variant a held-out user is logged with, and the scope it trains. */
#define BANDIT_HOLDOUT "holdout"
#define BANDIT_SCOPE_NONE "none"

/* Longest scope: "variant:" + experiment (63) + "/" + variant (63). */
#define BANDIT_SCOPE_LEN 144

/*
 * One state row: A = lambda I + sum x x' (d x d, row-major), b = sum r x,
 * L = lower Cholesky factor of A (row-major, upper part zero).
 */
typedef struct BanditState
{
	char		scope[BANDIT_SCOPE_LEN];	/* "global", "variant:<e>/<v>" or "user:<uuid>" */
	int			d;
	double	   *A;
	double	   *b;
	double	   *L;
	int64		n;
	int			updates_since_refactor;
	int64		version;
	bool		exists;			/* a row exists in icpml.bandit_state */
	bool		dirty;			/* changed since it was read */
} BanditState;

/* bandit_settings.c ---------------------------------------------------- */

/* Policies by name. */
extern bool BanditPolicyFromName(const char *name, BanditPolicy *out);
extern const char *BanditPolicyName(BanditPolicy policy);

/* Settings and reward map (inside SPI_connect; read as the extension owner). */
extern const BanditSettings *BanditGetSettings(void);
extern bool BanditReward(const BanditSettings *cfg, const char *type, double *reward);

/* bandit_linalg.c (d <= BANDIT_MAX_DIM) --------------------------------- */

extern bool BanditCholesky(const double *A, double *L, int d);
extern void BanditCholUpdate(double *L, const double *x, int d);
extern void BanditForwardSolve(const double *L, const double *rhs, double *out, int d);
extern void BanditBackSolve(const double *L, const double *rhs, double *out, int d);
extern void BanditSolve(const double *L, const double *rhs, double *out, int d);
extern void BanditAddInverse(const double *L, int d, double w, double *out);
extern void BanditNormals(pg_prng_state *rng, double *out, int n);
extern void BanditDrawTheta(const BanditState *s, const double *mean, double v,
							pg_prng_state *rng, double *out);
extern double BanditSparseQuad(const double *x, const int *nz, int nnz, const double *M,
							   int d);

/*
 * theta' x over the non-zero entries of x (their indices nz[0..nnz-1]):
 * on the serving path for every candidate, so inline.
 */
static inline double
BanditSparseDot(const double *x, const int *nz, int nnz, const double *theta)
{
	double		s = 0.0;
	int			i;

	for (i = 0; i < nnz; i++)
		s += theta[nz[i]] * x[nz[i]];
	return s;
}

/* bandit_state.c -------------------------------------------------------- */

/* State in memory. */
extern void BanditStateInitPrior(BanditState *s, const char *scope, int d,
								 const BanditSettings *cfg);
extern void BanditStateUpdate(BanditState *s, const double *x, double r,
							  const BanditSettings *cfg);
extern void BanditStateAddReward(BanditState *s, const double *x, double delta);
extern double BanditExamination(const BanditSettings *cfg, int rank);
extern double BanditPriorLambda(const BanditSettings *cfg, const char *scope);
extern bool BanditScopeIsShared(const char *scope);
extern void BanditUserScope(const pg_uuid_t *user, char *scope);

/*
 * State storage (inside SPI_connect; the caller has switched to the
 * extension owner).  Load returns false when the row does not exist (the
 * state is then the prior).  for_update locks the row; a missing row is
 * created first so that it can be locked.  LoadIfFree locks it only if no
 * one else holds it (false then).
 */
extern bool BanditStateLoad(BanditState *s, const char *scope, bool for_update,
							bool with_a, const BanditSettings *cfg);
extern bool BanditStateLoadIfFree(BanditState *s, const char *scope,
								  const BanditSettings *cfg);
extern void BanditStateStore(BanditState *s);

#endif							/* ICPML_BANDIT_H */
