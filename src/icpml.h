/*
 * icpml.h — what every module shares: the GUCs (defined in icpml.c), the
 * schema and role names, and the score of one account with its helpers.
 *
 * The module map (which file does what, and their prefixes) is
 * src/README.md.
 */
#ifndef ICPML_H
#define ICPML_H

#include "postgres.h"

#include <math.h>

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
IcpmlScoreFromProbability(double p)
{
	int			s = (int) (p * 10.0) + 1;

	return s < 1 ? 1 : (s > 10 ? 10 : s);
}

/*
 * splitmix64's finaliser: every input bit reaches every output bit.  The
 * hash of the score tables' int64 keys (cast to uint32), the experiments'
 * variant assignment and the training's shuffle stream: their values (and
 * so outputs and iteration orders) depend on it bit for bit.
 */
static inline uint64
IcpmlMix64(uint64 h)
{
	h ^= h >> 30;
	h *= UINT64CONST(0xbf58476d1ce4e5b9);
	h ^= h >> 27;
	h *= UINT64CONST(0x94d049bb133111eb);
	h ^= h >> 31;
	return h;
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
