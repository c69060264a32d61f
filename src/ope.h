/*
 * ope.h — off-policy evaluation (ope.c): the sampled candidate log that
 * recommend_accounts writes, and evaluate_policy().
 */
#ifndef ICPML_OPE_H
#define ICPML_OPE_H

#include "postgres.h"

struct RecommendCall;

/*
 * Log the candidates of a served list into icpml.recommendation_candidates
 * when candidate_log_settings.sample_rate draws it (as the owner), with the
 * logging policy's marginal propensity of each served row; ids[j] is the
 * recommendation_id of rank j + 1.  Call after the list is logged.  Nothing
 * happens while the installed SQL has no candidate log (0.3.0).
 */
extern void OpeLogCandidates(struct RecommendCall *call, const int64 *ids);

/*
 * The probability that an epsilon-mix of a ranking lists its r-th best
 * candidate (1-based; r > k: any candidate outside the best k) at each rank
 * 1..k of a list of k chosen from m: each rank below the first `exploit`
 * at random (uniformly among the candidates not listed yet) with
 * probability eps, else the best one not listed yet.  out[0..k-1].  Exact;
 * O(k * min(r, k + 1)).
 */
extern void OpeRankMarginals(int r, int k, int m, double eps, int exploit, double *out);

#endif							/* ICPML_OPE_H */
