/*
 * profile_read.c — the serving side of icpml.user_profiles: ProfileLoad and
 * ProfileMarkRows, what recommend_accounts reads about the user, only while
 * the profile triggers are installed and enabled.  What a row holds and who
 * writes it: profile.c.
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

/* The loaded profile of a recommend_accounts call. */
typedef struct ProfileData
{
	int			nsticky;
	const int64 *sticky_ids;
	const int32 *sticky_masks;
	uint32		dismiss_bits;	/* sticky types that are "dismiss" */
	uint32		worked_bits;	/* sticky types in exclude_worked_types */
	int			nrecent;
	const int64 *recent_ids;
	int		   *recent_own;		/* own type (ContextOwnTypes) per entry, -1 */
	double	   *recent_age;		/* days */
} ProfileData;

static SPIPlanPtr plan_read = NULL;

/* ---------------------------------------------------------------------
 * Are the triggers installed?
 * --------------------------------------------------------------------- */

static char *profile_rel_setting = NULL;
static List *profile_rel_names = NULL;

/*
 * True when the four profile triggers are installed and enabled on the
 * interactions relation (its relcache entry; cheap).
 */
static bool
ProfileTriggersInstalled(void)
{
	Oid			relid;
	Relation	rel;
	int			found = 0,
				i;

	if (icpml_interactions_relation == NULL || !RelationNameIsValid(icpml_interactions_relation))
		return false;
	if (profile_rel_setting == NULL || strcmp(profile_rel_setting, icpml_interactions_relation) != 0)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		if (profile_rel_setting)
			pfree(profile_rel_setting);
		profile_rel_setting = pstrdup(icpml_interactions_relation);
		profile_rel_names = stringToQualifiedNameList(icpml_interactions_relation);
		MemoryContextSwitchTo(old);
	}
	relid = RangeVarGetRelid(makeRangeVarFromNameList(profile_rel_names), AccessShareLock, true);
	if (!OidIsValid(relid))
		return false;
	rel = table_open(relid, NoLock);
	if (rel->trigdesc != NULL)
		for (i = 0; i < rel->trigdesc->numtriggers; i++)
		{
			Trigger    *t = &rel->trigdesc->triggers[i];

			if (t->tgenabled == TRIGGER_DISABLED)
				continue;
			if (strcmp(t->tgname, PROFILE_TRIGGER_INSERT) == 0 ||
				strcmp(t->tgname, PROFILE_TRIGGER_UPDATE) == 0 ||
				strcmp(t->tgname, PROFILE_TRIGGER_DELETE) == 0 ||
				strcmp(t->tgname, PROFILE_TRIGGER_TRUNCATE) == 0)
				found++;
		}
	table_close(rel, NoLock);
	return found == 4;
}

/* ---------------------------------------------------------------------
 * Reading for recommend_accounts
 * --------------------------------------------------------------------- */

/* Load the user's profile (see profile.h). */
bool
ProfileLoad(RecommendCall *call)
{
	const BanditSettings *cfg = call->cfg;
	CatalogOwnerState owner;
	Datum		arg;
	int			ret;
	HeapTuple	tup;
	TupleDesc	desc;
	Datum		v[PROFILE_NCOLS];
	bool		nl[PROFILE_NCOLS];
	char	   *types[PROFILE_MAX_TYPES];
	char	   *sticky_types[PROFILE_MAX_TYPES];
	char	  **industries;
	char	   *techs[PROFILE_MAX_TECH];
	int			ntypes,
				nsticky_types,
				nind,
				ntech,
				i,
				n;
	ArrayType  *a_sid,
			   *a_smask,
			   *a_rid,
			   *a_rtype,
			   *a_rat,
			   *a_rind,
			   *a_rband,
			   *a_rtech;
	int			tech_slot[PROFILE_MAX_TECH];
	int		   *ind_index;
	ProfileData *p;

	if (!OidIsValid(CatalogRelidIfExists("user_profiles")) || !ProfileTriggersInstalled())
		return false;

	if (plan_read == NULL)
	{
		Oid			argtype = UUIDOID;

		plan_read = CatalogKeepPlan("SELECT " PROFILE_SELECT " FROM icpml.user_profiles AS p"
									" WHERE p.user_id OPERATOR(pg_catalog.=) $1", 1, &argtype, 0);
	}
	arg = UUIDPGetDatum(call->user);
	CatalogSwitchToOwner(&owner);
	ret = SPI_execute_plan(plan_read, &arg, NULL, true, 1);
	CatalogRestoreUser(&owner);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading icpml.user_profiles failed: %s", SPI_result_code_string(ret));

	p = palloc0(sizeof(ProfileData));
	call->nhist = 0;
	call->n_30d = 0;
	call->hist_cap = 1;
	call->hist = palloc(sizeof(RecommendHistItem));
	if (SPI_processed == 0)
	{
		/* no interaction since the triggers were installed */
		call->profile = p;
		return true;
	}

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	heap_deform_tuple(tup, desc, v, nl);
	if (nl[0] || !DatumGetBool(v[0]))
		return false;			/* invalidated: read live until rebuilt */

	industries = palloc(sizeof(char *) * PROFILE_MAX_INDUSTRIES);
	ntypes = ProfileTextArray(v[1], nl[1], types, PROFILE_MAX_TYPES);
	nsticky_types = ProfileTextArray(v[2], nl[2], sticky_types, 32);
	nind = ProfileTextArray(v[5], nl[5], industries, PROFILE_MAX_INDUSTRIES);
	ntech = ProfileTextArray(v[6], nl[6], techs, PROFILE_MAX_TECH);
	a_sid = ProfileArray(v[3], nl[3], INT8OID);
	a_smask = ProfileArray(v[4], nl[4], INT4OID);
	a_rid = ProfileArray(v[7], nl[7], INT8OID);
	a_rtype = ProfileArray(v[8], nl[8], INT2OID);
	a_rat = ProfileArray(v[9], nl[9], TIMESTAMPTZOID);
	a_rind = ProfileArray(v[10], nl[10], INT2OID);
	a_rband = ProfileArray(v[11], nl[11], INT2OID);
	a_rtech = ProfileArray(v[12], nl[12], INT8OID);
	if (ntypes < 0 || nsticky_types < 0 || nind < 0 || ntech < 0 || !a_sid || !a_smask ||
		!a_rid || !a_rtype || !a_rat || !a_rind || !a_rband || !a_rtech ||
		ProfileArrayLength(a_sid) != ProfileArrayLength(a_smask))
		return false;
	n = ProfileArrayLength(a_rid);
	if (ProfileArrayLength(a_rtype) != n || ProfileArrayLength(a_rat) != n ||
		ProfileArrayLength(a_rind) != n || ProfileArrayLength(a_rband) != n ||
		ProfileArrayLength(a_rtech) != n)
		return false;

	/* the exclusion types this row was built for must cover today's */
	if (ProfileFind(sticky_types, nsticky_types, "dismiss") < 0)
		return false;
	for (i = 0; i < cfg->n_worked_types; i++)
	{
		int			t = ProfileFind(sticky_types, nsticky_types, cfg->worked_types[i]);

		if (t < 0)
			return false;
		p->worked_bits |= (uint32) 1 << t;
	}
	p->dismiss_bits = (uint32) 1 << ProfileFind(sticky_types, nsticky_types, "dismiss");
	p->nsticky = ProfileArrayLength(a_sid);
	p->sticky_ids = (const int64 *) ARR_DATA_PTR(a_sid);
	p->sticky_masks = (const int32 *) ARR_DATA_PTR(a_smask);

	/* the profile's technologies and industries in this call's terms */
	for (i = 0; i < ntech; i++)
	{
		int			j;

		tech_slot[i] = -1;
		for (j = 0; j < cfg->n_technologies; j++)
			if (strcmp(techs[i], cfg->technologies[j]) == 0)
				tech_slot[i] = j;
	}
	ind_index = palloc(sizeof(int) * Max(nind, 1));
	for (i = 0; i < nind; i++)
		ind_index[i] = RecommendIndustryIndex(call, industries[i], strlen(industries[i]));

	/* the recent interactions: history (first history_limit) and own engagement */
	p->nrecent = n;
	p->recent_ids = (const int64 *) ARR_DATA_PTR(a_rid);
	p->recent_own = palloc(sizeof(int) * Max(n, 1));
	p->recent_age = palloc(sizeof(double) * Max(n, 1));
	call->hist_cap = Max(Min(n, cfg->history_limit), 1);
	call->hist = palloc(sizeof(RecommendHistItem) * call->hist_cap);
	{
		const int16 *rtype = (const int16 *) ARR_DATA_PTR(a_rtype);
		const TimestampTz *rat = (const TimestampTz *) ARR_DATA_PTR(a_rat);
		const int16 *rind = (const int16 *) ARR_DATA_PTR(a_rind);
		const int16 *rband = (const int16 *) ARR_DATA_PTR(a_rband);
		const int64 *rtech = (const int64 *) ARR_DATA_PTR(a_rtech);
		int			own_of_type[PROFILE_MAX_TYPES];

		for (i = 0; i < ntypes; i++)
			own_of_type[i] = ContextOwnType(types[i]);
		for (i = 0; i < n; i++)
		{
			int			t = rtype[i];
			double		age = (double) (call->now - rat[i]) / (double) USECS_PER_DAY;

			p->recent_own[i] = (t >= 0 && t < ntypes) ? own_of_type[t] : -1;
			p->recent_age[i] = Max(age, 0.0);
			if (i < cfg->history_limit && t >= 0 && t < ntypes)
			{
				RecommendHistItem *h = &call->hist[call->nhist++];
				uint64		bits = (uint64) rtech[i];
				int			b;

				h->account_id = p->recent_ids[i];
				h->type = types[t];
				h->age_days = age;
				h->industry = (rind[i] >= 0 && rind[i] < nind) ? ind_index[rind[i]] : -1;
				h->size_band = (rband[i] >= 0 && rband[i] < CTX_NSIZE_BANDS) ? rband[i] : -1;
				h->known = true;
				h->tech_known = (bits & PROFILE_TECH_KNOWN) != 0;
				h->tech_slots = 0;
				for (b = 0; b < ntech; b++)
					if ((bits & ((uint64) 1 << b)) && tech_slot[b] >= 0)
						h->tech_slots |= (uint32) 1 << tech_slot[b];
				if (age <= 30.0)
					call->n_30d++;
			}
		}
	}
	call->profile = p;
	return true;
}

/* Position of id in the sorted sticky accounts, or -1. */
static int
ProfileStickyFind(const ProfileData *p, int64 id)
{
	int			lo = 0,
				hi = p->nsticky - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (p->sticky_ids[mid] == id)
			return mid;
		if (p->sticky_ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/* Own engagement, dismissed and worked of rows[first..] (see profile.h). */
void
ProfileMarkRows(RecommendCall *call, int first)
{
	ProfileData *p = call->profile;
	int			j;

	for (j = first; j < call->nrows; j++)
	{
		RecommendRow *r = &call->rows[j];
		int			s = ProfileStickyFind(p, r->account_id);

		if (s >= 0)
		{
			uint32		m = (uint32) p->sticky_masks[s];

			r->dismissed = (m & p->dismiss_bits) != 0;
			r->worked = (m & p->worked_bits) != 0;
		}
	}
	for (j = 0; j < p->nrecent; j++)
	{
		RecommendAccount *e;
		RecommendRow *r;
		int			t = p->recent_own[j];

		if (t < 0 && p->recent_age[j] >= call->exclude_recent_days)
			continue;
		e = hash_search(call->accounts, &p->recent_ids[j], HASH_FIND, NULL);
		if (e == NULL || e->row < first)
			continue;
		r = &call->rows[e->row];
		if (p->recent_age[j] < call->exclude_recent_days)
			r->recent = true;	/* in the user's pipeline: not news */
		if (t < 0)
			continue;
		r->own[t] += ContextRecencyWeight(p->recent_age[j]);
		if (t > r->own_best)
			r->own_best = t;
	}
}
