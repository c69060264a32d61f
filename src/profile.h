/*
 * profile.h — icpml.user_profiles, one compact row per sales user
 * (profile.c): what recommend_accounts reads about the user in one index
 * probe instead of reading the user's interactions.
 */
#ifndef ICPML_PROFILE_H
#define ICPML_PROFILE_H

#include "postgres.h"

#include "utils/array.h"

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

/* Profile-local technology vocabulary: 63 names, bit 63 = stack known. */
#define PROFILE_MAX_TECH 63
#define PROFILE_TECH_KNOWN ((uint64) 1 << 63)
/* Distinct interaction types and industries a row names. */
#define PROFILE_MAX_TYPES 32
#define PROFILE_MAX_INDUSTRIES 1000

/* The columns every read of a row selects, in this order. */
#define PROFILE_SELECT "p.valid, p.types, p.sticky_types, p.sticky_accounts, p.sticky_masks," \
	" p.industries, p.technologies, p.recent_accounts, p.recent_types, p.recent_at," \
	" p.recent_industries, p.recent_size_bands, p.recent_techs"
#define PROFILE_NCOLS 13

/* Arrays of a row, shared by profile.c and profile_read.c. */
extern ArrayType *ProfileArray(Datum d, bool isnull, Oid elemtype);
extern int	ProfileTextArray(Datum d, bool isnull, char **out, int max);
extern int	ProfileFind(char **list, int n, const char *name);

static inline int
ProfileArrayLength(ArrayType *a)
{
	return ARR_NDIM(a) == 0 ? 0 : ARR_DIMS(a)[0];
}

#endif							/* ICPML_PROFILE_H */
