/*
 * policy.h — the ranking policies of recommend_accounts (policy.c).
 */
#ifndef ICPML_POLICY_H
#define ICPML_POLICY_H

#include "postgres.h"

struct RecommendCall;

/*
 * Score the candidates' context vectors under call->policy with the states
 * in call->global and call->user, and choose min(k, candidates) of them:
 * fills call->theta, mu, score, explore, chosen, propensity, explored and
 * nchosen.  No SQL; the only randomness is call->rng.
 */
extern void PolicyRank(struct RecommendCall *call);

#endif							/* ICPML_POLICY_H */
