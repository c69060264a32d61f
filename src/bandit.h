/*
 * bandit.h — the contextual bandit: linear algebra over small dense
 * matrices, the ridge-regression state (A, b, Cholesky factor), the
 * recommender's settings and reward map, and state storage.
 *
 * Shared by recommend.c (serving) and feedback.c (updates, rebuild).
 */
#ifndef ICPML_BANDIT_H
#define ICPML_BANDIT_H

#include "postgres.h"

#include "common/pg_prng.h"
#include "executor/spi.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/* Largest context dimension the state tables accept. */
#define BANDIT_MAX_DIM 64

/*
 * The context vector (recommend.c builds it; every entry in [0, 1]):
 *   0  bias                      1
 *   1  icp_probability           ICP probability from icpml.account_scores
 *   2  icp_logit                 (logit(probability) + 6) / 12, clamped
 *   3  engineering_roles         log(1 + n) / log(1 + 50), capped at 1
 *   4  open_engineering_roles    1 when hiring engineers
 *   5  total_open_roles          log(1 + n) / log(1 + 200), capped at 1
 *   6  engineering_blog          1 when it has an engineering blog
 *   7  recent_funding            1 - age / 548 days for a round in the last 18 months
 *   8..12 size bands             company_size in [1,50) [50,200) [200,1000)
 *                                [1000,5000) [5000,inf); all 0 when unknown
 *   13 research_recency          exp(-days since the last research run / 30)
 *   14..18 own engagement        per type view, research, save, contact,
 *                                meeting: 1 - exp(-sum of exp(-age / 30 days))
 *                                over this user's interactions with the account
 *   19 dismissed                 1 when this user dismissed the account
 *   20 fatigue                   1 - exp(-f / 10), f = sum over this user's
 *                                unrewarded impressions of the account of
 *                                fatigue_decay ^ (lists served to the user since)
 *   21 ignored                   1 - exp(-e / 3), e = sum over the same impressions
 *                                of examination(rank), not decayed: evidence
 *                                that this user does not want the account
 *   22 industry_share            share of the user's recent interactions with
 *                                accounts of this industry
 *   23 industry_reward           mean reward of those, shrunk towards the
 *                                user's overall mean (2 pseudo-counts), clamped
 *   24 size_band_share           share of the user's recent interactions with
 *                                accounts of this size band
 *   25 user_activity             1 - exp(-interactions in the last 30 days / 20)
 *   26 technology_affinity       0.5 + 0.5 * clamp(sum over the vocabulary
 *                                technologies t in the account's stack of
 *                                (share of the user's recent interactions with
 *                                accounts using t - share of the candidates
 *                                using t), -1, 1); 0.5 when unknown
 *   27..38 industry slots        1 when the industry is bandit_settings.industries[i]
 *   39..62 technology slots      1 when the tech stack holds technologies[i]
 *   63 account_engagement        what all users did with the account when it
 *                                was recommended: (reward + 3 m0) / (examined
 *                                + 3), capped at 1 (icpml.account_feedback;
 *                                examined = impressions weighted by
 *                                examination(rank); m0 = the candidates'
 *                                pooled reward / examined).  LinUCB adds its
 *                                standard error to the uncertainty, Thompson
 *                                sampling draws it.
 */
#define BANDIT_DIM 64

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

#define CTX_BIAS 0
#define CTX_ICP 1
#define CTX_ICP_LOGIT 2
#define CTX_ENG_ROLES 3
#define CTX_OPEN_ENG 4
#define CTX_OPEN_ROLES 5
#define CTX_BLOG 6
#define CTX_FUNDING 7
#define CTX_SIZE_BAND 8
#define CTX_NSIZE_BANDS 5
#define CTX_RESEARCH 13
#define CTX_OWN 14
#define CTX_DISMISSED 19
#define CTX_FATIGUE 20
#define CTX_IGNORED 21
#define CTX_INDUSTRY_SHARE 22
#define CTX_INDUSTRY_REWARD 23
#define CTX_SIZE_SHARE 24
#define CTX_ACTIVITY 25
#define CTX_TECH_AFFINITY 26
#define CTX_INDUSTRY_SLOT 27
#define CTX_NINDUSTRY_SLOTS 12
#define CTX_TECH_SLOT 39
#define CTX_NTECH_SLOTS 24

#define CTX_ACCOUNT_ENGAGEMENT 63

StaticAssertDecl(CTX_ACCOUNT_ENGAGEMENT + 1 == BANDIT_DIM, "context layout");
StaticAssertDecl(BANDIT_DIM <= BANDIT_MAX_DIM, "context dimension");

extern const char *const BanditContextNames[BANDIT_DIM];

/* Interaction types with a context feature of their own (CTX_OWN + i). */
#define BANDIT_NOWN_TYPES 5
extern const char *const BanditOwnTypes[BANDIT_NOWN_TYPES];

typedef enum BanditPolicy
{
	POLICY_LINUCB,
	POLICY_THOMPSON,
	POLICY_GREEDY,
	POLICY_EPSILON_GREEDY,
	POLICY_ICP,
	POLICY_RANDOM
} BanditPolicy;

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
	int			technology_lengths[CTX_NTECH_SLOTS];	/* strlen of each */
	int			n_rewards;
	char	  **reward_types;
	double	   *rewards;
	/*
	 * The running experiment (icpml.experiments), experiment NULL when none;
	 * has_experiments false when the installed SQL predates experiments
	 * (0.2.0 objects with this library: the log has no experiment columns).
	 */
	bool		has_experiments;
	char	   *experiment;
	int			n_variants;
	char	  **variants;		/* policy names */
	BanditPolicy *variant_policies;
	double	   *variant_weights;
} BanditSettings;

/*
 * One state row: A = lambda I + sum x x' (d x d, row-major), b = sum r x,
 * L = lower Cholesky factor of A (row-major, upper part zero).
 */
typedef struct BanditState
{
	char		scope[48];		/* "global" or "user:<uuid>" */
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

/* GUC icpml.interactions_relation (bandit.c). */
extern char *icpml_interactions_relation;
extern void BanditDefineGucs(void);

/* Policies by name. */
extern bool BanditPolicyFromName(const char *name, BanditPolicy *out);
extern const char *BanditPolicyName(BanditPolicy policy);

/* SPI helpers (inside SPI_connect). */
extern SPIPlanPtr BanditKeepPlan(const char *sql, int nargs, Oid *argtypes, int cursor_options);
extern char *BanditInteractionsRelation(void);

/* Settings and reward map (inside SPI_connect; read as the extension owner). */
extern const BanditSettings *BanditGetSettings(void);
extern bool BanditReward(const BanditSettings *cfg, const char *type, double *reward);

/* Experiments (experiments.c): the variant index a user is assigned to. */
extern int	ExperimentAssign(const char *experiment, const pg_uuid_t *user,
							 const double *weights, int n);

/* Linear algebra (d <= BANDIT_MAX_DIM). */
extern bool BanditCholesky(const double *A, double *L, int d);
extern void BanditCholUpdate(double *L, const double *x, int d);
extern void BanditForwardSolve(const double *L, const double *rhs, double *out, int d);
extern void BanditBackSolve(const double *L, const double *rhs, double *out, int d);
extern void BanditSolve(const double *L, const double *rhs, double *out, int d);
extern void BanditAddInverse(const double *L, int d, double w, double *out);
extern void BanditNormals(pg_prng_state *rng, double *out, int n);

/* State in memory. */
extern void BanditStateInitPrior(BanditState *s, const char *scope, int d,
								 const BanditSettings *cfg);
extern void BanditStateUpdate(BanditState *s, const double *x, double r,
							  const BanditSettings *cfg);
extern double BanditExamination(const BanditSettings *cfg, int rank);
extern double BanditPriorLambda(const BanditSettings *cfg, const char *scope);
extern void BanditUserScope(const pg_uuid_t *user, char *scope);

/*
 * State storage (inside SPI_connect; the caller has switched to the
 * extension owner).  Load returns false when the row does not exist (the
 * state is then the prior).  for_update locks the row; for the global row
 * a missing row is created first so that it can be locked.
 */
extern bool BanditStateLoad(BanditState *s, const char *scope, bool for_update,
							bool with_a, const BanditSettings *cfg);
extern void BanditStateStore(BanditState *s);

#endif							/* ICPML_BANDIT_H */
