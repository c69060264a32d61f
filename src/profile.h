/*
 * profile.h — icpml.user_profiles, one compact row per sales user
 * (profile.c): what recommend_accounts reads about the user in one index
 * probe instead of reading the user's interactions.
 */
#ifndef ICPML_PROFILE_H
#define ICPML_PROFILE_H

#include "postgres.h"

struct RecommendCall;

/* Names of the statement triggers enable_online_feedback() installs. */
#define PROFILE_TRIGGER_INSERT "icpml_profile_insert"
#define PROFILE_TRIGGER_UPDATE "icpml_profile_update"
#define PROFILE_TRIGGER_DELETE "icpml_profile_delete"
#define PROFILE_TRIGGER_TRUNCATE "icpml_profile_truncate"

/* Interactions a profile keeps at least (more when history_limit is larger). */
#define PROFILE_MIN_RECENT 1000

/*
 * Load the user's profile for a recommend_accounts call (inside SPI; reads
 * as the owner): fills call->hist (the last history_limit interactions,
 * with their accounts' attributes), call->n_30d and call->profile, and
 * returns true.  Returns false, touching nothing, when the profile cannot be
 * trusted: the triggers are not installed on the interactions relation, the
 * row was invalidated, or it was built for other exclusion types.
 */
extern bool ProfileLoad(struct RecommendCall *call);

/*
 * The user's own interactions with rows[first..nrows-1] from the loaded
 * profile: own (decayed) engagement, dismissed, worked.
 */
extern void ProfileMarkRows(struct RecommendCall *call, int first);

#endif							/* ICPML_PROFILE_H */
