/*
 * icpml.h — declarations shared across icpml's modules.
 *
 * Module map (one responsibility per file):
 *   icpml.c      PG_MODULE_MAGIC, _PG_init, GUCs only
 *   catalog.c    the extension's own tables: owner switching, relcache invalidation
 *   features.c   resolving and reading the configured feature relation as the caller
 *   rules.c      the rule-based baseline ICP score
 *   score.c      icp_score / icp_score_batch (SQL entry points)
 *   xgb.c        the only file that includes <xgboost/c_api.h>
 *   tree.c       native evaluator for XGBoost trees (fast scoring, Saabas, verifier)
 *   spec.c       feature specs: inference, encoding of rows for a model
 *   train.c      train_icp_model: cross-validation, metrics, refit
 *   metrics.c    ROC/PR AUC, log loss, Brier, precision at top decile, isotonic
 *   model_store.c the only file touching icpml.models / icpml.deployments
 *   model_cache.c per-backend cache of the deployed model
 *   verify.c     verify_model: native evaluation vs XGBoost on real rows
 *   bandit.c, recommend.c, feedback.c  contextual bandit recommendations
 */
#ifndef ICPML_H
#define ICPML_H

#include "postgres.h"

#include <math.h>

#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"

#define ICPML_SCHEMA "icpml"
/* members of this role are icpml administrators (icpml.grant_admin()) */
#define ICPML_ADMIN_ROLE "icpml_admin"

/* GUCs (icpml.c) */
extern int	icpml_nthread;
extern char *icpml_feature_relation;
extern char *icpml_feature_key;
extern int	icpml_top_factors;
extern int	icpml_max_batch_size;
extern char *icpml_interactions_relation;

/* catalog.c */
extern Oid	CatalogExtensionOwner(void);
extern Oid	CatalogRelid(const char *relname);
extern Oid	CatalogRelidIfExists(const char *relname);

/* What CatalogSwitchToOwner saved: the caller's role and search_path level. */
typedef struct CatalogOwnerState
{
	Oid			saveUserId;
	int			saveSecContext;
	int			gucNestLevel;	/* 0: the search_path was pinned already */
} CatalogOwnerState;

extern void CatalogSwitchToOwner(CatalogOwnerState *save);
extern void CatalogRestoreUser(const CatalogOwnerState *save);
extern SPIPlanPtr CatalogKeepPlan(const char *sql, int nargs, Oid *argtypes,
								  int cursor_options);
extern bool CatalogIsAdministrator(Oid roleid);
typedef void (*CatalogInvalidateHook) (void);
extern void CatalogRegisterInvalidation(CatalogInvalidateHook hook);
extern bool CatalogLoadFresh(CatalogInvalidateHook load);

/*
 * One scored account.  Strings and the jsonb are palloc'd in the caller's
 * memory context.
 */
typedef struct IcpScore
{
	int64		account_id;
	bool		found;			/* false: unknown (or hidden by RLS) */
	int			score;			/* 1..10 */
	const char *priority;		/* "high" / "medium" / "low" */
	double		probability;
	const char *model;			/* "rules" or "xgboost" */
	int32		model_version;	/* 0 when the rules produced it */
	Jsonb	   *factors;
	const char *factor_method;
} IcpScore;

/* Score 1..10 from a probability: 1 + floor(10p), clamped to 1..10. */
static inline int
IcpScoreFromProbability(double p)
{
	int			s = (int) (p * 10.0) + 1;

	return s < 1 ? 1 : (s > 10 ? 10 : s);
}

/*
 * Sort order[0..n-1] (indexes into contrib) by |contrib|, largest first;
 * stable, for the handful of factors an explanation shows.
 */
static inline void
IcpmlOrderByMagnitude(const double *contrib, int *order, int n)
{
	int			i,
				j;

	for (i = 1; i < n; i++)
		for (j = i; j > 0 && fabs(contrib[order[j]]) > fabs(contrib[order[j - 1]]); j--)
		{
			int			t = order[j];

			order[j] = order[j - 1];
			order[j - 1] = t;
		}
}

#endif							/* ICPML_H */
