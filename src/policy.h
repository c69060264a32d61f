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

/*
 * How many of the first slots of a list of kk call->policy fills by mu
 * whatever it explores (bandit_settings.exploit_slots and warm_start); 0 for
 * the policies that do not explore.  ope.c logs it with the candidates.
 */
extern int	PolicyExploitSlots(struct RecommendCall *call, int kk);

#endif							/* ICPML_POLICY_H */
