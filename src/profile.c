/*
 * profile.c — icpml.user_profiles: one compact row per sales user, so that
 * recommend_accounts learns what it needs about the user from one index
 * probe instead of reading the user's interactions (the history) and
 * probing them once per candidate (exclusions, own engagement).
 *
 * A row holds
 *   sticky_*  every account the user ever had an interaction of a "sticky"
 *             type with (dismiss, and bandit_settings.exclude_worked_types
 *             when the row was built), sorted, with a bit per type: the
 *             exclusions, exact and for all time;
 *   recent_*  the user's most recent interactions (max(history_limit,
 *             PROFILE_MIN_RECENT)), newest first, each with its account's
 *             industry, size band and technologies as account_candidates
 *             knew them when the interaction was recorded: the user-level
 *             context (industry and size shares, technology affinity,
 *             activity), the affinity source of retrieval, and the own
 *             engagement entries (decayed sums over these interactions).
 *
 * Who writes it: statement triggers on the interactions relation, installed
 * by enable_online_feedback() (which builds every row first):
 *   INSERT    the new rows are folded into their users' rows (one read and
 *             one write per user, users locked in uuid order);
 *   UPDATE, DELETE  the users' rows are marked invalid (valid = false);
 *   TRUNCATE  the table is emptied.
 * icpml.rebuild_user_profiles() rebuilds rows from the interactions (as
 * the caller, under a lock that makes concurrent inserts wait).  A user
 * without a row has had no interaction since the triggers were installed.
 *
 * Who reads it: recommend_accounts, through ProfileLoad, only while all four
 * triggers are installed and enabled; otherwise, or when the user's row is
 * invalid or was built for other exclusion types, recommend.c reads the
 * interactions live (exact, slower).  The row is read and written as the
 * extension owner; account attributes come from account_candidates, so a
 * user's history counts accounts the user can no longer see (the user saw
 * them when acting on them).
 *
 * This file holds the writers (the triggers, the fold, the rebuild);
 * the reader for recommend_accounts is profile_read.c.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "icpml.h"
#include "catalog.h"
#include "bandit.h"
#include "context.h"
#include "profile.h"
#include "recommend.h"
#include "relation.h"
#include "spi_scan.h"

PG_FUNCTION_INFO_V1(profile_trigger);
PG_FUNCTION_INFO_V1(rebuild_user_profiles);



/* One interaction of a profile being built (the recent ring). */
typedef struct ProfileEntry
{
	int64		account_id;
	int16		type;			/* index in types */
	int16		industry;		/* index in industries, -1 unknown */
	int16		size_band;		/* -1 unknown */
	TimestampTz at;
	uint64		techs;			/* bits of technologies | PROFILE_TECH_KNOWN */
	int64		seq;			/* arrival order, for ties */
} ProfileEntry;

/* A profile in memory, read from its row or built from scratch. */
typedef struct ProfileBuild
{
	pg_uuid_t	user;
	bool		valid;
	int			ntypes;
	char	   *types[PROFILE_MAX_TYPES];
	int			nsticky_types;
	char	   *sticky_types[PROFILE_MAX_TYPES];
	int			nsticky;
	int			sticky_cap;
	int64	   *sticky_ids;
	int32	   *sticky_masks;
	int			nindustries;
	char	  **industries;		/* PROFILE_MAX_INDUSTRIES */
	int			ntech;
	char	   *techs[PROFILE_MAX_TECH];
	int			nrecent;
	int			recent_cap;		/* entries kept */
	ProfileEntry *recent;		/* newest first */
	int64		next_seq;
} ProfileBuild;

/* Attributes of an account, from account_candidates. */
typedef struct ProfileAttrs
{
	int64		account_id;		/* hash key */
	char	   *industry;
	int			size_band;
	ArrayType  *tech_stack;		/* NULL unknown */
} ProfileAttrs;

static SPIPlanPtr plan_attrs = NULL;

/* ---------------------------------------------------------------------
 * Arrays of a row
 * --------------------------------------------------------------------- */

/* A 1-D array without NULLs of the given element type, or NULL. */
ArrayType *
ProfileArray(Datum d, bool isnull, Oid elemtype)
{
	ArrayType  *a;

	if (isnull)
		return NULL;
	a = DatumGetArrayTypeP(d);
	if (ARR_ELEMTYPE(a) != elemtype || ARR_HASNULL(a) || ARR_NDIM(a) > 1)
		return NULL;
	return a;
}

/* text[] -> palloc'd C strings; -1 when malformed or longer than max. */
int
ProfileTextArray(Datum d, bool isnull, char **out, int max)
{
	ArrayType  *a = ProfileArray(d, isnull, TEXTOID);
	Datum	   *elems;
	bool	   *nulls;
	int			n,
				i;

	if (a == NULL)
		return -1;
	deconstruct_array(a, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n > max)
		return -1;
	for (i = 0; i < n; i++)
		out[i] = TextDatumGetCString(elems[i]);
	return n;
}


/* Index of a type name in a list, -1 none. */
int
ProfileFind(char **list, int n, const char *name)
{
	int			i;

	for (i = 0; i < n; i++)
		if (strcmp(list[i], name) == 0)
			return i;
	return -1;
}


/* ---------------------------------------------------------------------
 * A profile in memory: read, fold, write
 * --------------------------------------------------------------------- */

/* Entries a profile keeps. */
static int
ProfileRecentCap(const BanditSettings *cfg)
{
	return Max(cfg->history_limit, PROFILE_MIN_RECENT);
}

/* An empty, valid profile whose sticky types are today's. */
static void
ProfileInit(ProfileBuild *b, const pg_uuid_t *user, const BanditSettings *cfg)
{
	int			i;

	memset(b, 0, sizeof(ProfileBuild));
	b->user = *user;
	b->valid = true;
	b->sticky_types[b->nsticky_types++] = pstrdup("dismiss");
	for (i = 0; i < cfg->n_worked_types && b->nsticky_types < 32; i++)
		if (ProfileFind(b->sticky_types, b->nsticky_types, cfg->worked_types[i]) < 0)
			b->sticky_types[b->nsticky_types++] = pstrdup(cfg->worked_types[i]);
	b->industries = palloc(sizeof(char *) * PROFILE_MAX_INDUSTRIES);
	b->recent_cap = ProfileRecentCap(cfg);
	b->recent = palloc(sizeof(ProfileEntry) * (b->recent_cap + 1));
	b->sticky_cap = 16;
	b->sticky_ids = palloc(sizeof(int64) * b->sticky_cap);
	b->sticky_masks = palloc(sizeof(int32) * b->sticky_cap);
}

/*
 * Read a profile row (the PROFILE_SELECT columns) into b; false when the
 * row is invalid or malformed (b is then a fresh, invalid profile).
 */
static bool
ProfileFromRow(ProfileBuild *b, HeapTuple tup, TupleDesc desc, const pg_uuid_t *user,
			   const BanditSettings *cfg)
{
	Datum		v[PROFILE_NCOLS];
	bool		nl[PROFILE_NCOLS];
	ArrayType  *a_sid,
			   *a_smask,
			   *a_rid,
			   *a_rtype,
			   *a_rat,
			   *a_rind,
			   *a_rband,
			   *a_rtech;
	int			n,
				i;

	ProfileInit(b, user, cfg);
	heap_deform_tuple(tup, desc, v, nl);
	b->nsticky_types = 0;
	b->ntypes = ProfileTextArray(v[1], nl[1], b->types, PROFILE_MAX_TYPES);
	b->nsticky_types = ProfileTextArray(v[2], nl[2], b->sticky_types, 32);
	b->nindustries = ProfileTextArray(v[5], nl[5], b->industries, PROFILE_MAX_INDUSTRIES);
	b->ntech = ProfileTextArray(v[6], nl[6], b->techs, PROFILE_MAX_TECH);
	a_sid = ProfileArray(v[3], nl[3], INT8OID);
	a_smask = ProfileArray(v[4], nl[4], INT4OID);
	a_rid = ProfileArray(v[7], nl[7], INT8OID);
	a_rtype = ProfileArray(v[8], nl[8], INT2OID);
	a_rat = ProfileArray(v[9], nl[9], TIMESTAMPTZOID);
	a_rind = ProfileArray(v[10], nl[10], INT2OID);
	a_rband = ProfileArray(v[11], nl[11], INT2OID);
	a_rtech = ProfileArray(v[12], nl[12], INT8OID);
	n = a_rid ? ProfileArrayLength(a_rid) : -1;
	if (nl[0] || !DatumGetBool(v[0]) || b->ntypes < 0 || b->nsticky_types < 0 ||
		b->nindustries < 0 || b->ntech < 0 || !a_sid || !a_smask || !a_rid || !a_rtype ||
		!a_rat || !a_rind || !a_rband || !a_rtech ||
		ProfileArrayLength(a_sid) != ProfileArrayLength(a_smask) ||
		ProfileArrayLength(a_rtype) != n || ProfileArrayLength(a_rat) != n ||
		ProfileArrayLength(a_rind) != n || ProfileArrayLength(a_rband) != n ||
		ProfileArrayLength(a_rtech) != n)
	{
		ProfileInit(b, user, cfg);
		b->valid = false;
		return false;
	}

	b->nsticky = ProfileArrayLength(a_sid);
	b->sticky_cap = Max(b->nsticky * 2, 16);
	b->sticky_ids = repalloc(b->sticky_ids, sizeof(int64) * b->sticky_cap);
	b->sticky_masks = repalloc(b->sticky_masks, sizeof(int32) * b->sticky_cap);
	memcpy(b->sticky_ids, ARR_DATA_PTR(a_sid), sizeof(int64) * b->nsticky);
	memcpy(b->sticky_masks, ARR_DATA_PTR(a_smask), sizeof(int32) * b->nsticky);

	b->nrecent = Min(n, b->recent_cap);
	for (i = 0; i < b->nrecent; i++)
	{
		ProfileEntry *e = &b->recent[i];

		e->account_id = ((const int64 *) ARR_DATA_PTR(a_rid))[i];
		e->type = ((const int16 *) ARR_DATA_PTR(a_rtype))[i];
		e->at = ((const TimestampTz *) ARR_DATA_PTR(a_rat))[i];
		e->industry = ((const int16 *) ARR_DATA_PTR(a_rind))[i];
		e->size_band = ((const int16 *) ARR_DATA_PTR(a_rband))[i];
		e->techs = (uint64) ((const int64 *) ARR_DATA_PTR(a_rtech))[i];
		e->seq = -i;			/* older entries first in ties */
	}
	b->next_seq = 1;
	return true;
}

/* Index of a name in a growing list (added when missing); -1 when full. */
static int
ProfileIntern(char **list, int *n, int max, const char *name)
{
	int			i = ProfileFind(list, *n, name);

	if (i >= 0)
		return i;
	if (*n >= max)
		return -1;
	list[*n] = pstrdup(name);
	return (*n)++;
}

/* One interaction to fold: account, type, time, attributes. */
typedef struct ProfileNew
{
	int64		account_id;
	const char *type;
	TimestampTz at;
	const ProfileAttrs *attrs;	/* NULL: unknown */
	int64		order;			/* input order, for ties */
} ProfileNew;

/* Sort (account, bit) pairs by account. */
static int
ProfileCompareSticky(const void *a, const void *b)
{
	int64		x = ((const int64 *) a)[0],
				y = ((const int64 *) b)[0];

	return x < y ? -1 : (x > y ? 1 : 0);
}

/* Newest first; among equal times, the later input first. */
static int
ProfileCompareNewest(const void *a, const void *b)
{
	const ProfileEntry *x = (const ProfileEntry *) a;
	const ProfileEntry *y = (const ProfileEntry *) b;

	if (x->at != y->at)
		return x->at > y->at ? -1 : 1;
	return x->seq > y->seq ? -1 : (x->seq < y->seq ? 1 : 0);
}

/* The technologies of a stack as bits of b->techs (interned). */
static uint64
ProfileTechBits(ProfileBuild *b, ArrayType *stack)
{
	Datum	   *elems;
	bool	   *enulls;
	int			n,
				i;
	uint64		bits = PROFILE_TECH_KNOWN;

	deconstruct_array(stack, TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &n);
	for (i = 0; i < n; i++)
	{
		int			k;

		if (enulls[i])
			continue;
		k = ProfileIntern(b->techs, &b->ntech, PROFILE_MAX_TECH, TextDatumGetCString(elems[i]));
		if (k >= 0)
			bits |= (uint64) 1 << k;
	}
	return bits;
}

/*
 * Fold interactions into a profile: their types, the sticky accounts
 * (merged, sorted) and the recent ring (merged, newest first, at most
 * recent_cap entries).  O(n log n + recent_cap + sticky).
 */
static void
ProfileFoldMany(ProfileBuild *b, const ProfileNew *items, int n)
{
	int64	   *pairs = palloc(sizeof(int64) * 2 * Max(n, 1));
	int			npairs = 0;
	ProfileEntry *fresh = palloc(sizeof(ProfileEntry) * Max(n, 1));
	int			nfresh = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		const ProfileNew *it = &items[i];
		int			t = ProfileIntern(b->types, &b->ntypes, PROFILE_MAX_TYPES, it->type);
		int			s = ProfileFind(b->sticky_types, b->nsticky_types, it->type);
		ProfileEntry *e;

		if (s >= 0)
		{
			pairs[2 * npairs] = it->account_id;
			pairs[2 * npairs + 1] = s;
			npairs++;
		}
		if (t < 0)
			continue;			/* more than PROFILE_MAX_TYPES types: not kept */
		e = &fresh[nfresh++];
		e->account_id = it->account_id;
		e->type = (int16) t;
		e->at = it->at;
		e->seq = b->next_seq + it->order;
		e->industry = -1;
		e->size_band = -1;
		e->techs = 0;
		if (it->attrs != NULL)
		{
			if (it->attrs->industry != NULL)
				e->industry = (int16) ProfileIntern(b->industries, &b->nindustries,
													PROFILE_MAX_INDUSTRIES, it->attrs->industry);
			e->size_band = (int16) it->attrs->size_band;
			if (it->attrs->tech_stack != NULL)
				e->techs = ProfileTechBits(b, it->attrs->tech_stack);
		}
	}
	b->next_seq += n;

	/* sticky accounts: sort the new pairs, merge into the sorted arrays */
	if (npairs > 0)
	{
		int64	   *ids;
		int32	   *masks;
		int			m = 0,
					a = 0,
					p = 0;

		qsort(pairs, npairs, sizeof(int64) * 2, ProfileCompareSticky);
		ids = palloc(sizeof(int64) * (b->nsticky + npairs));
		masks = palloc(sizeof(int32) * (b->nsticky + npairs));
		while (a < b->nsticky || p < npairs)
		{
			int64		id;
			int32		mask = 0;

			if (p >= npairs || (a < b->nsticky && b->sticky_ids[a] < pairs[2 * p]))
				id = b->sticky_ids[a];
			else
				id = pairs[2 * p];
			if (a < b->nsticky && b->sticky_ids[a] == id)
				mask |= b->sticky_masks[a++];
			while (p < npairs && pairs[2 * p] == id)
			{
				mask |= (int32) ((uint32) 1 << pairs[2 * p + 1]);
				p++;
			}
			ids[m] = id;
			masks[m] = mask;
			m++;
		}
		b->sticky_ids = ids;
		b->sticky_masks = masks;
		b->nsticky = m;
		b->sticky_cap = b->nsticky + npairs;
	}

	/* the ring: the new entries newest first, merged with the kept ones */
	if (nfresh > 0)
	{
		ProfileEntry *merged = palloc(sizeof(ProfileEntry) * (b->recent_cap + 1));
		int			m = 0,
					a = 0,
					f = 0;

		qsort(fresh, nfresh, sizeof(ProfileEntry), ProfileCompareNewest);
		while (m < b->recent_cap && (a < b->nrecent || f < nfresh))
		{
			if (f >= nfresh || (a < b->nrecent && ProfileCompareNewest(&b->recent[a], &fresh[f]) <= 0))
				merged[m++] = b->recent[a++];
			else
				merged[m++] = fresh[f++];
		}
		b->recent = merged;
		b->nrecent = m;
	}
}

/* Write a profile (upsert, as the owner; the caller has switched). */
static void
ProfileWrite(ProfileBuild *b)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[14];
	Datum	   *d;
	int			i,
				ret;

	if (plan == NULL)
	{
		Oid			argtypes[14] = {UUIDOID, BOOLOID, TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID,
			INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID, INT2ARRAYOID, TIMESTAMPTZARRAYOID,
		INT2ARRAYOID, INT2ARRAYOID, INT8ARRAYOID};

		plan = CatalogKeepPlan("INSERT INTO icpml.user_profiles AS p (user_id, valid, types, sticky_types,"
							   " sticky_accounts, sticky_masks, industries, technologies, recent_accounts,"
							   " recent_types, recent_at, recent_industries, recent_size_bands, recent_techs,"
							   " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
							   " pg_catalog.now())"
							   " ON CONFLICT (user_id) DO UPDATE SET valid = excluded.valid, types = excluded.types,"
							   " sticky_types = excluded.sticky_types, sticky_accounts = excluded.sticky_accounts,"
							   " sticky_masks = excluded.sticky_masks, industries = excluded.industries,"
							   " technologies = excluded.technologies, recent_accounts = excluded.recent_accounts,"
							   " recent_types = excluded.recent_types, recent_at = excluded.recent_at,"
							   " recent_industries = excluded.recent_industries,"
							   " recent_size_bands = excluded.recent_size_bands,"
							   " recent_techs = excluded.recent_techs, updated_at = excluded.updated_at",
							   14, argtypes, 0);
	}

#define TEXTS(list, n) ({ \
		Datum *t_ = palloc(sizeof(Datum) * Max((n), 1)); \
		for (i = 0; i < (n); i++) t_[i] = CStringGetTextDatum((list)[i]); \
		PointerGetDatum(construct_array(t_, (n), TEXTOID, -1, false, TYPALIGN_INT)); })

	args[0] = UUIDPGetDatum(&b->user);
	args[1] = BoolGetDatum(b->valid);
	args[2] = TEXTS(b->types, b->ntypes);
	args[3] = TEXTS(b->sticky_types, b->nsticky_types);
	d = palloc(sizeof(Datum) * Max(b->nsticky, 1));
	for (i = 0; i < b->nsticky; i++)
		d[i] = Int64GetDatum(b->sticky_ids[i]);
	args[4] = PointerGetDatum(construct_array(d, b->nsticky, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	d = palloc(sizeof(Datum) * Max(b->nsticky, 1));
	for (i = 0; i < b->nsticky; i++)
		d[i] = Int32GetDatum(b->sticky_masks[i]);
	args[5] = PointerGetDatum(construct_array(d, b->nsticky, INT4OID, 4, true, TYPALIGN_INT));
	args[6] = TEXTS(b->industries, b->nindustries);
	args[7] = TEXTS(b->techs, b->ntech);
#undef TEXTS
	{
		Datum	   *ids = palloc(sizeof(Datum) * Max(b->nrecent, 1));
		Datum	   *types = palloc(sizeof(Datum) * Max(b->nrecent, 1));
		Datum	   *ats = palloc(sizeof(Datum) * Max(b->nrecent, 1));
		Datum	   *inds = palloc(sizeof(Datum) * Max(b->nrecent, 1));
		Datum	   *bands = palloc(sizeof(Datum) * Max(b->nrecent, 1));
		Datum	   *techs = palloc(sizeof(Datum) * Max(b->nrecent, 1));

		for (i = 0; i < b->nrecent; i++)
		{
			ids[i] = Int64GetDatum(b->recent[i].account_id);
			types[i] = Int16GetDatum(b->recent[i].type);
			ats[i] = TimestampTzGetDatum(b->recent[i].at);
			inds[i] = Int16GetDatum(b->recent[i].industry);
			bands[i] = Int16GetDatum(b->recent[i].size_band);
			techs[i] = Int64GetDatum((int64) b->recent[i].techs);
		}
		args[8] = PointerGetDatum(construct_array(ids, b->nrecent, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[9] = PointerGetDatum(construct_array(types, b->nrecent, INT2OID, 2, true, TYPALIGN_SHORT));
		args[10] = PointerGetDatum(construct_array(ats, b->nrecent, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[11] = PointerGetDatum(construct_array(inds, b->nrecent, INT2OID, 2, true, TYPALIGN_SHORT));
		args[12] = PointerGetDatum(construct_array(bands, b->nrecent, INT2OID, 2, true, TYPALIGN_SHORT));
		args[13] = PointerGetDatum(construct_array(techs, b->nrecent, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	}
	ret = SPI_execute_plan(plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "writing icpml.user_profiles failed: %s", SPI_result_code_string(ret));
}

/* ---------------------------------------------------------------------
 * Account attributes (account_candidates, as the owner)
 * --------------------------------------------------------------------- */

static void
ProfileAttrsRow(TupleTableSlot *slot, void *arg)
{
	HTAB	   *h = (HTAB *) arg;
	int64		id;
	bool		found;
	ProfileAttrs *a;

	if (slot->tts_isnull[0])
		return;
	id = DatumGetInt64(slot->tts_values[0]);
	a = hash_search(h, &id, HASH_ENTER, &found);
	a->industry = slot->tts_isnull[1] ? NULL : TextDatumGetCString(slot->tts_values[1]);
	a->size_band = slot->tts_isnull[2] ? -1 : DatumGetInt16(slot->tts_values[2]);
	a->tech_stack = slot->tts_isnull[3] ? NULL : DatumGetArrayTypePCopy(slot->tts_values[3]);
}

/* Attributes of ids[0..n-1] into a new hash (the caller has switched to the owner). */
static HTAB *
ProfileReadAttrs(Datum *ids, int n)
{
	HASHCTL		ctl;
	HTAB	   *h;
	Datum		arg;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(ProfileAttrs);
	ctl.hcxt = CurrentMemoryContext;
	h = hash_create("icpml profile attributes", Max(n, 16), &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	if (n == 0 || !OidIsValid(CatalogRelidIfExists("account_candidates")))
		return h;
	if (plan_attrs == NULL)
	{
		Oid			argtype = INT8ARRAYOID;

		plan_attrs = CatalogKeepPlan("SELECT c.account_id, c.industry, c.size_band, c.tech_stack"
									 " FROM icpml.account_candidates AS c"
									 " WHERE c.account_id OPERATOR(pg_catalog.=) ANY ($1)", 1, &argtype, 0);
	}
	arg = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	(void) SpiScan(plan_attrs, &arg, true, ProfileAttrsRow, h, "icpml.account_candidates");
	return h;
}

/* ---------------------------------------------------------------------
 * One user's new interactions, as the triggers and the rebuild see them
 * --------------------------------------------------------------------- */

typedef struct ProfileInteraction
{
	pg_uuid_t	user;
	int64		account_id;
	char	   *type;
	TimestampTz at;
	int64		order;			/* input order */
} ProfileInteraction;

static int
ProfileInteractionCompare(const void *a, const void *b)
{
	const ProfileInteraction *x = (const ProfileInteraction *) a;
	const ProfileInteraction *y = (const ProfileInteraction *) b;
	int			c = memcmp(x->user.data, y->user.data, UUID_LEN);

	if (c != 0)
		return c;
	if (x->at != y->at)
		return x->at < y->at ? -1 : 1;
	return x->order < y->order ? -1 : (x->order > y->order ? 1 : 0);
}

/*
 * Fold interactions (sorted by user, then time) into their users' rows, one
 * user at a time in uuid order (as the owner; the caller has switched).
 * A user without a row gets one (new users); an invalid row stays invalid.
 */
static void
ProfileFoldAll(ProfileInteraction *items, int n, const BanditSettings *cfg)
{
	static SPIPlanPtr plan_lock = NULL;
	static SPIPlanPtr plan_ensure = NULL;
	int			i = 0;
	Datum	   *ids;
	HTAB	   *attrs;
	int			j;

	if (plan_ensure == NULL)
	{
		Oid			argtype = UUIDOID;

		plan_ensure = CatalogKeepPlan("INSERT INTO icpml.user_profiles AS p (user_id, sticky_types)"
									  " VALUES ($1, '{dismiss}') ON CONFLICT (user_id) DO NOTHING",
									  1, &argtype, 0);
		plan_lock = CatalogKeepPlan("SELECT " PROFILE_SELECT " FROM icpml.user_profiles AS p"
									" WHERE p.user_id OPERATOR(pg_catalog.=) $1 FOR UPDATE", 1, &argtype, 0);
	}

	/* every account's attributes in one read */
	ids = palloc(sizeof(Datum) * Max(n, 1));
	for (j = 0; j < n; j++)
		ids[j] = Int64GetDatum(items[j].account_id);
	attrs = ProfileReadAttrs(ids, n);

	while (i < n)
	{
		int			end = i;
		Datum		arg = UUIDPGetDatum(&items[i].user);
		ProfileBuild b;
		bool		fresh;
		int			ret;

		CHECK_FOR_INTERRUPTS();
		while (end < n && memcmp(items[end].user.data, items[i].user.data, UUID_LEN) == 0)
			end++;

		ret = SPI_execute_plan(plan_ensure, &arg, NULL, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "writing icpml.user_profiles failed: %s", SPI_result_code_string(ret));
		fresh = SPI_processed == 1;
		ret = SPI_execute_plan(plan_lock, &arg, NULL, false, 1);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "reading icpml.user_profiles failed: %s", SPI_result_code_string(ret));
		if (fresh)
			ProfileInit(&b, &items[i].user, cfg);
		else if (!ProfileFromRow(&b, SPI_tuptable->vals[0], SPI_tuptable->tupdesc, &items[i].user, cfg))
		{
			i = end;
			continue;			/* invalid: stays so until rebuilt */
		}
		{
			ProfileNew *batch = palloc(sizeof(ProfileNew) * (end - i));

			for (j = i; j < end; j++)
			{
				ProfileNew *it = &batch[j - i];

				it->account_id = items[j].account_id;
				it->type = items[j].type;
				it->at = items[j].at;
				it->order = items[j].order;
				it->attrs = hash_search(attrs, &items[j].account_id, HASH_FIND, NULL);
			}
			ProfileFoldMany(&b, batch, end - i);
		}
		ProfileWrite(&b);
		i = end;
	}
}

/* Read (user, account, type, time) rows of a query into an array, sorted. */
static ProfileInteraction *
ProfileCollect(const char *sql, int *n_out)
{
	ProfileInteraction *items;
	uint64		i,
				n;
	int			m = 0;

	if (SPI_execute(sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading new interactions failed");
	n = SPI_processed;
	items = palloc(sizeof(ProfileInteraction) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		nl[4];
		Datum		v[4];
		int			c;

		for (c = 0; c < 4; c++)
			v[c] = SPI_getbinval(tup, desc, c + 1, &nl[c]);
		if (nl[0] || nl[1] || nl[2] || nl[3])
			continue;
		items[m].user = *DatumGetUUIDP(v[0]);
		items[m].account_id = DatumGetInt64(v[1]);
		items[m].type = TextDatumGetCString(v[2]);
		items[m].at = DatumGetTimestampTz(v[3]);
		items[m].order = (int64) i;
		m++;
	}
	qsort(items, m, sizeof(ProfileInteraction), ProfileInteractionCompare);
	*n_out = m;
	return items;
}

/* Mark the rows of the users a query returns invalid. */
static void
ProfileInvalidate(const char *sql)
{
	char	   *q = psprintf("UPDATE icpml.user_profiles AS p SET valid = false, updated_at = pg_catalog.now()"
							 " WHERE p.user_id OPERATOR(pg_catalog.=) ANY (ARRAY(%s))", sql);

	if (SPI_execute(q, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "invalidating icpml.user_profiles failed");
}

/*
 * profile_trigger(): AFTER INSERT (REFERENCING NEW TABLE AS icpml_new),
 * AFTER UPDATE (OLD TABLE AS icpml_old NEW TABLE AS icpml_new), AFTER
 * DELETE (OLD TABLE AS icpml_old) and AFTER TRUNCATE statement triggers on
 * the interactions relation.  SECURITY DEFINER: runs as the owner.
 */
Datum
profile_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	const BanditSettings *cfg;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("icpml.profile_trigger() must be called as a trigger")));
	if (!TRIGGER_FIRED_AFTER(td->tg_event) || !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) ||
		(TRIGGER_FIRED_BY_INSERT(td->tg_event) && td->tg_newtable == NULL) ||
		(TRIGGER_FIRED_BY_DELETE(td->tg_event) && td->tg_oldtable == NULL) ||
		(TRIGGER_FIRED_BY_UPDATE(td->tg_event) && (td->tg_oldtable == NULL || td->tg_newtable == NULL)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("icpml.profile_trigger() must be an AFTER statement trigger with the transition tables of its event"),
				 errhint("Install it with SELECT icpml.enable_online_feedback().")));

	SPI_connect();
	if (SPI_register_trigger_data(td) != SPI_OK_TD_REGISTER)
		elog(ERROR, "registering the transition tables failed");
	if (!OidIsValid(CatalogRelidIfExists("user_profiles")))
	{
		SPI_finish();
		return PointerGetDatum(NULL);
	}
	{
		static const char *const columns[] = {
			"user_id", "account_id", "interaction_type", "created_at"
		};

		RelationCheckBuiltinColumns(RelationGetDescr(td->tg_relation),
									RelationGetRelationName(td->tg_relation),
									columns, lengthof(columns), "profile trigger");
	}

	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		if (SPI_execute("DELETE FROM icpml.user_profiles", false, 0) != SPI_OK_DELETE)
			elog(ERROR, "emptying icpml.user_profiles failed");
	}
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
		ProfileInvalidate("SELECT DISTINCT o.user_id::pg_catalog.uuid FROM icpml_old AS o");
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		ProfileInvalidate("SELECT o.user_id::pg_catalog.uuid FROM icpml_old AS o UNION"
						  " SELECT n.user_id::pg_catalog.uuid FROM icpml_new AS n");
	else
	{
		int			n;
		ProfileInteraction *items;

		items = ProfileCollect("SELECT n.user_id::pg_catalog.uuid, n.account_id::pg_catalog.int8,"
							   " n.interaction_type::pg_catalog.text, n.created_at::pg_catalog.timestamptz"
							   " FROM icpml_new AS n", &n);
		if (n > 0)
		{
			cfg = BanditGetSettings();
			ProfileFoldAll(items, n, cfg);
		}
	}
	SPI_finish();
	return PointerGetDatum(NULL);
}

/*
 * rebuild_user_profiles(only_invalid boolean) → bigint
 * Rebuild rows from the interactions relation, read as the caller in
 * (user, time) order; written as the owner.  A lock on user_profiles makes
 * the triggers of concurrent inserts wait until the rebuild commits (then
 * they fold on top of it).
 */
Datum
rebuild_user_profiles(PG_FUNCTION_ARGS)
{
	bool		only_invalid = PG_GETARG_BOOL(0);
	const BanditSettings *cfg;
	CatalogOwnerState owner;
	char	   *display;
	Portal		portal;
	SPIPlanPtr	plan;
	int64		users = 0;
	ProfileBuild b;
	bool		have = false;
	List	   *pending = NIL;
	Datum		invalid = (Datum) 0;
	MemoryContext usercxt;

	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("rebuild_user_profiles() must run in a READ COMMITTED transaction"),
				 errhint("Under REPEATABLE READ or SERIALIZABLE it could miss interactions committed while it waits for its lock.")));

	SPI_connect();
	(void) CatalogRelid("user_profiles");
	cfg = BanditGetSettings();
	display = RelationResolveInteractions();

	CatalogSwitchToOwner(&owner);
	if (SPI_execute("LOCK TABLE icpml.user_profiles IN SHARE ROW EXCLUSIVE MODE", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "locking icpml.user_profiles failed");
	if (only_invalid)
	{
		if (SPI_execute("SELECT pg_catalog.array_agg(p.user_id) FROM icpml.user_profiles AS p WHERE NOT p.valid",
						false, 0) != SPI_OK_SELECT)
			elog(ERROR, "reading icpml.user_profiles failed");
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			if (isnull)
			{
				CatalogRestoreUser(&owner);
				SPI_finish();
				PG_RETURN_INT64(0);
			}
			invalid = PointerGetDatum(DatumGetArrayTypePCopy(d));
		}
	}
	else if (SPI_execute("DELETE FROM icpml.user_profiles", false, 0) != SPI_OK_DELETE)
		elog(ERROR, "emptying icpml.user_profiles failed");
	CatalogRestoreUser(&owner);

	/* the interactions, as the caller, user by user, oldest first */
	{
		Oid			argtype = UUIDARRAYOID;
		char	   *sql = psprintf("SELECT i.user_id::pg_catalog.uuid, i.account_id::pg_catalog.int8,"
								   " i.interaction_type::pg_catalog.text, i.created_at::pg_catalog.timestamptz"
								   " FROM %s AS i%s ORDER BY 1, 4",
								   display, only_invalid ? " WHERE i.user_id OPERATOR(pg_catalog.=) ANY ($1)" : "");

		plan = SPI_prepare(sql, only_invalid ? 1 : 0, &argtype);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		/* not read-only: a new snapshot, taken after the lock was granted */
		portal = SPI_cursor_open(NULL, plan, only_invalid ? &invalid : NULL, NULL, false);
	}
	usercxt = AllocSetContextCreate(CurrentMemoryContext, "icpml profile rebuild", ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		uint64		n,
					i;
		SPITupleTable *tt;

		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, 10000);
		n = SPI_processed;
		tt = SPI_tuptable;
		for (i = 0; i <= n; i++)
		{
			bool		nl[4] = {true, true, true, true};
			Datum		v[4];
			int			c;

			if (i < n)
				for (c = 0; c < 4; c++)
					v[c] = SPI_getbinval(tt->vals[i], tt->tupdesc, c + 1, &nl[c]);
			if (i < n && (nl[0] || nl[1] || nl[2] || nl[3]))
				continue;
			/* a new user (or the end): write the previous one */
			if (have && (i == n ? n == 0 : memcmp(DatumGetUUIDP(v[0])->data, b.user.data, UUID_LEN) != 0))
			{
				MemoryContext old = MemoryContextSwitchTo(usercxt);
				HTAB	   *attrs;
				Datum	   *ids;
				ListCell   *lc;
				int			j = 0;

				/* oldest first: only the newest recent_cap need attributes */
				int			cutoff = list_length(pending) - b.recent_cap;

				ids = palloc(sizeof(Datum) * Max(list_length(pending), 1));
				foreach(lc, pending)
				{
					if (foreach_current_index(lc) >= cutoff)
						ids[j++] = Int64GetDatum(((ProfileInteraction *) lfirst(lc))->account_id);
				}
				CatalogSwitchToOwner(&owner);
				attrs = ProfileReadAttrs(ids, j);
				{
					ProfileNew *batch = palloc(sizeof(ProfileNew) * Max(list_length(pending), 1));
					int			k = 0;

					foreach(lc, pending)
					{
						ProfileInteraction *it = (ProfileInteraction *) lfirst(lc);
						ProfileNew *nw = &batch[k];

						nw->account_id = it->account_id;
						nw->type = it->type;
						nw->at = it->at;
						nw->attrs = k >= cutoff ? hash_search(attrs, &it->account_id, HASH_FIND, NULL) : NULL;
						nw->order = k++;
					}
					ProfileFoldMany(&b, batch, k);
				}
				ProfileWrite(&b);
				CatalogRestoreUser(&owner);
				MemoryContextSwitchTo(old);
				MemoryContextReset(usercxt);
				pending = NIL;
				have = false;
				users++;
			}
			if (i == n)
				break;
			if (!have)
			{
				MemoryContext old = MemoryContextSwitchTo(usercxt);

				ProfileInit(&b, DatumGetUUIDP(v[0]), cfg);
				MemoryContextSwitchTo(old);
				have = true;
			}
			{
				MemoryContext old = MemoryContextSwitchTo(usercxt);
				ProfileInteraction *it = palloc(sizeof(ProfileInteraction));

				it->account_id = DatumGetInt64(v[1]);
				it->type = TextDatumGetCString(v[2]);
				it->at = DatumGetTimestampTz(v[3]);
				pending = lappend(pending, it);
				MemoryContextSwitchTo(old);
			}
		}
		SPI_freetuptable(tt);
		if (n == 0)
			break;
	}
	SPI_cursor_close(portal);
	SPI_finish();
	PG_RETURN_INT64(users);
}
