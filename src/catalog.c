/*
 * catalog.c — access to icpml's own tables.
 *
 * icpml's tables (rule weights, models, bandit state, logs) are not granted
 * to application roles.  Functions that application roles call run as the
 * caller (so row-level security applies to user data) and switch to the
 * extension's owner only around reads and writes of icpml's own tables,
 * the way pg_cron does for its metadata.  While it is the owner, search_path
 * is pinned to pg_catalog, pg_temp and every statement qualifies its
 * operators and functions, so nothing the caller defined runs with the
 * owner's rights.
 *
 * Backend caches of those tables are invalidated through the relcache: a
 * statement trigger on each table calls icpml.invalidate_cache(), which
 * queues a relcache invalidation for the table; it is delivered to every
 * backend when (and only if) the writing transaction commits.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "icpml.h"

#define ICPML_MAX_INVAL_HOOKS 8

#define ICPML_MAX_WATCHED 32

static CatalogInvalidateHook inval_hooks[ICPML_MAX_INVAL_HOOKS];
static int	n_inval_hooks = 0;
static Oid	watched[ICPML_MAX_WATCHED];
static int	n_watched = 0;
static bool relcache_callback_registered = false;
static Oid	cached_owner = InvalidOid;
static Oid	cached_namespace = InvalidOid;
static uint64 catalog_resets = 0;	/* how often the callback reset the caches */

PG_FUNCTION_INFO_V1(invalidate_cache);

/*
 * Relcache callback: an invalidation of a watched icpml table (or a full
 * reset) drops every cache.  Only compares oids: no catalog access here.
 */
static void
CatalogRelcacheCallback(Datum arg, Oid relid)
{
	int			i;

	if (OidIsValid(relid))
	{
		for (i = 0; i < n_watched; i++)
			if (watched[i] == relid)
				break;
		if (i == n_watched)
			return;
	}

	cached_owner = InvalidOid;
	cached_namespace = InvalidOid;
	n_watched = 0;
	catalog_resets++;
	for (i = 0; i < n_inval_hooks; i++)
		inval_hooks[i] ();
}

/*
 * Run a backend cache's loader with the latest snapshot (not the caller's:
 * a REPEATABLE READ transaction must not fill a backend-wide cache with rows
 * older than the last invalidation).  Returns false when an invalidation
 * arrived while it ran (its queries accept them): the tables it watched may
 * be unwatched and its rows stale, so the caller loads again.
 */
bool
CatalogLoadFresh(CatalogInvalidateHook load)
{
	uint64		seen = catalog_resets;

	/* on ERROR, (sub)transaction abort pops the snapshot */
	PushActiveSnapshot(GetLatestSnapshot());
	load();
	PopActiveSnapshot();
	return seen == catalog_resets;
}

/* Watch one of icpml's tables: its invalidation resets the caches. */
static void
CatalogWatch(Oid relid)
{
	int			i;

	for (i = 0; i < n_watched; i++)
		if (watched[i] == relid)
			return;
	if (n_watched < ICPML_MAX_WATCHED)
		watched[n_watched++] = relid;
}

/* Register a function to call whenever one of icpml's tables changes. */
void
CatalogRegisterInvalidation(CatalogInvalidateHook hook)
{
	int			i;

	for (i = 0; i < n_inval_hooks; i++)
		if (inval_hooks[i] == hook)
			return;
	if (n_inval_hooks >= ICPML_MAX_INVAL_HOOKS)
		elog(ERROR, "too many icpml invalidation hooks (please report a bug)");
	inval_hooks[n_inval_hooks++] = hook;

	if (!relcache_callback_registered)
	{
		CacheRegisterRelcacheCallback(CatalogRelcacheCallback, (Datum) 0);
		relcache_callback_registered = true;
	}
}

/* Namespace oid of schema icpml, with a clear error when absent. */
static Oid
CatalogNamespace(void)
{
	if (!OidIsValid(cached_namespace))
	{
		Oid			nsp = get_namespace_oid(ICPML_SCHEMA, true);

		if (!OidIsValid(nsp))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("schema \"%s\" does not exist", ICPML_SCHEMA),
					 errhint("Run CREATE EXTENSION icpml.")));
		cached_namespace = nsp;
	}
	return cached_namespace;
}

/* Oid of one of icpml's own tables (now watched for changes); ERROR if missing. */
Oid
CatalogRelid(const char *relname)
{
	Oid			relid = get_relname_relid(relname, CatalogNamespace());

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.%s\" does not exist", ICPML_SCHEMA, relname),
				 errhint("The icpml extension is damaged or not fully installed; run ALTER EXTENSION icpml UPDATE or reinstall it.")));
	CatalogWatch(relid);
	return relid;
}

/*
 * Oid of one of icpml's own tables that older versions of the schema lack
 * (watched when present), or InvalidOid: for a library newer than the
 * installed SQL, before ALTER EXTENSION icpml UPDATE.
 */
Oid
CatalogRelidIfExists(const char *relname)
{
	Oid			relid = get_relname_relid(relname, CatalogNamespace());

	if (OidIsValid(relid))
		CatalogWatch(relid);
	return relid;
}

/* Role owning the icpml extension (the owner of its internal tables). */
Oid
CatalogExtensionOwner(void)
{
	if (!OidIsValid(cached_owner))
	{
		Relation	rel;
		ScanKeyData key;
		SysScanDesc scan;
		HeapTuple	tup;
		Oid			owner = InvalidOid;

		rel = table_open(ExtensionRelationId, AccessShareLock);
		ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
					F_NAMEEQ, CStringGetDatum("icpml"));
		scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
		tup = systable_getnext(scan);
		if (HeapTupleIsValid(tup))
			owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
		systable_endscan(scan);
		table_close(rel, AccessShareLock);

		if (!OidIsValid(owner))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("extension \"icpml\" is not installed in this database"),
					 errhint("Run CREATE EXTENSION icpml.")));
		cached_owner = owner;
	}
	return cached_owner;
}

/*
 * The search_path every statement run as the extension owner sees: the
 * caller's own path could put its operators and functions ahead of
 * pg_catalog's, and they would then run with the owner's rights.  pg_temp
 * last: it is never searched for functions or operators, and an unqualified
 * table name never resolves there first.
 */
#define CATALOG_PINNED_PATH "pg_catalog, pg_temp"

/*
 * Become the extension owner for access to icpml's own tables, with
 * search_path pinned to pg_catalog, pg_temp (a GUC nest level, as a
 * function's SET clause does).  When the path already is exactly that (a
 * nested switch, a pinned SECURITY DEFINER caller) no nest level is
 * opened: the common hot path costs a string comparison.  Plans executed
 * here must be prepared here too (CatalogKeepPlan): the plan cache
 * re-plans a plan whose search_path or role differs.
 *
 * An ERROR before CatalogRestoreUser is fine: (sub)transaction abort
 * restores the user and pops the GUC nest level.  Switches nest strictly
 * (last in, first out).
 */
void
CatalogSwitchToOwner(CatalogOwnerState *save)
{
	Oid			owner = CatalogExtensionOwner();

	GetUserIdAndSecContext(&save->saveUserId, &save->saveSecContext);
	SetUserIdAndSecContext(owner, save->saveSecContext | SECURITY_LOCAL_USERID_CHANGE);

	if (namespace_search_path != NULL &&
		strcmp(namespace_search_path, CATALOG_PINNED_PATH) == 0)
		save->gucNestLevel = 0;
	else
	{
		save->gucNestLevel = NewGUCNestLevel();
		(void) set_config_option("search_path", CATALOG_PINNED_PATH,
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	}
}

/* Undo CatalogSwitchToOwner: the caller's search_path, then its role. */
void
CatalogRestoreUser(const CatalogOwnerState *save)
{
	if (save->gucNestLevel > 0)
		AtEOXact_GUC(true, save->gucNestLevel);
	SetUserIdAndSecContext(save->saveUserId, save->saveSecContext);
}

/*
 * Prepare and keep a plan over icpml's own tables as the extension owner,
 * under the pinned search_path: executed the same way (inside
 * CatalogSwitchToOwner), it is never re-planned for a role or path change,
 * and its names resolved in pg_catalog only.
 */
SPIPlanPtr
CatalogKeepPlan(const char *sql, int nargs, Oid *argtypes, int cursor_options)
{
	CatalogOwnerState owner;
	SPIPlanPtr	plan;

	CatalogSwitchToOwner(&owner);
	plan = SPI_prepare_cursor(sql, nargs, argtypes, cursor_options);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	CatalogRestoreUser(&owner);
	return plan;
}

/*
 * Is a role an icpml administrator?  A superuser, a role with the
 * privileges of the extension owner, or a member (even without INHERIT:
 * it may SET ROLE) of service_role (Supabase) or icpml_admin (the role
 * icpml.grant_admin() grants).  Administrators may ask for any user's
 * recommendations; docs/security.md lists what else they may do.
 */
bool
CatalogIsAdministrator(Oid roleid)
{
	static const char *const admin_roles[] = {"service_role", ICPML_ADMIN_ROLE};
	int			i;

	if (superuser_arg(roleid))
		return true;
	if (has_privs_of_role(roleid, CatalogExtensionOwner()))
		return true;
	for (i = 0; i < lengthof(admin_roles); i++)
	{
		Oid			r = get_role_oid(admin_roles[i], true);

		if (OidIsValid(r) && is_member_of_role(roleid, r))
			return true;
	}
	return false;
}

/*
 * Statement trigger on icpml's tables: queue a relcache invalidation so
 * every backend reloads its cache after this transaction commits.
 */
Datum
invalidate_cache(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("icpml.invalidate_cache() must be called as a trigger")));

	CacheInvalidateRelcache(trigdata->tg_relation);
	PG_RETURN_POINTER(NULL);
}
