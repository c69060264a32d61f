/*
 * relation.c — the user's relations icpml reads: resolving
 * icpml.feature_relation and icpml.interactions_relation (or a relation a
 * training names), checking their columns, and the prepared plans that read
 * feature rows by key (one, many, all).
 *
 * Reads always run as the calling user (no privilege switch), so the
 * caller's grants and row-level security decide what can be scored.  The
 * relation and key come from GUCs; identifiers are quoted with
 * quote_identifier and values are passed as parameters, never pasted.
 * Missing relations or columns, and columns of a type that cannot be read,
 * get a clear error before any query runs.
 */
#include "postgres.h"

#include "access/transam.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "parser/parse_coerce.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/varlena.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"

#include "icpml.h"
#include "relation.h"
#include "spi_scan.h"

/*
 * Resolve the relation a setting names (with the caller's search_path):
 * `kind` ("feature", "interactions") names it in messages, `guc` is the
 * setting to fix and `empty_hint` what to set it to.  ERROR with a hint
 * when it is empty, missing or not a table or view; *display gets the
 * quoted, schema-qualified name.
 */
Oid
RelationResolve(const char *setting, const char *kind, const char *guc,
				const char *empty_hint, char **display)
{
	List	   *names;
	RangeVar   *rv;
	Oid			relid;
	char		relkind;

	if (setting == NULL || setting[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is empty", guc),
				 errhint("%s", empty_hint)));

	names = stringToQualifiedNameList(setting);
	rv = makeRangeVarFromNameList(names);
	relid = RangeVarGetRelid(rv, NoLock, true);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("%s relation \"%s\" does not exist", kind, setting),
				 errhint("Load the reference schema (icpml_reference_schema.sql) or set %s to your own table or view.", guc)));

	relkind = get_rel_relkind(relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_VIEW &&
		relkind != RELKIND_MATVIEW && relkind != RELKIND_PARTITIONED_TABLE &&
		relkind != RELKIND_FOREIGN_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("%s relation \"%s\" is not a table or view", kind, setting)));

	*display = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
										  get_rel_name(relid));
	return relid;
}

/* Is text a syntactically valid (1 to 3 part) relation name? */
bool
RelationNameIsValid(const char *name)
{
	char	   *copy;
	List	   *parts = NIL;
	bool		ok;

	if (name == NULL || name[0] == '\0')
		return false;
	copy = pstrdup(name);
	ok = SplitIdentifierString(copy, '.', &parts) &&
		list_length(parts) >= 1 && list_length(parts) <= 3;
	list_free(parts);
	pfree(copy);
	return ok;
}

/*
 * GUC check hook of icpml.feature_relation and icpml.interactions_relation:
 * a setting names a relation, it is never SQL.
 */
bool
RelationNameCheckHook(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || RelationNameIsValid(*newval))
		return true;
	GUC_check_errdetail("\"%s\" is not a table or view name.", *newval);
	GUC_check_errhint("Use a name such as public.account_features (double-quote identifiers with special characters).");
	return false;
}

/* GUC check hook of icpml.feature_key: a column name, not empty. */
bool
RelationColumnCheckHook(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || ((*newval)[0] != '\0' && strlen(*newval) < NAMEDATALEN))
		return true;
	GUC_check_errdetail("A column name of 1 to %d bytes is required.", NAMEDATALEN - 1);
	return false;
}

/*
 * The relation a stored model spec names (see relation.h).  Resolved with
 * the caller's search_path, as the caller (scoring reads it as the caller);
 * training stores schema-qualified names, so the path does not matter for
 * them.
 */
char *
RelationResolveStored(const char *stored, int32 version)
{
	RangeVar   *rv;
	Oid			relid;
	char		relkind;

	if (!RelationNameIsValid(stored))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("model version %d names its relation \"%s\", which is not a table or view name",
						version, stored ? stored : ""),
				 errhint("The model's spec was edited or is corrupt; deploy another version.")));
	rv = makeRangeVarFromNameList(stringToQualifiedNameList(stored));
	relid = RangeVarGetRelid(rv, NoLock, true);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s\" of model version %d does not exist", stored, version),
				 errhint("Restore the relation the model was trained on, or deploy another version.")));
	relkind = get_rel_relkind(relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_VIEW &&
		relkind != RELKIND_MATVIEW && relkind != RELKIND_PARTITIONED_TABLE &&
		relkind != RELKIND_FOREIGN_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("relation \"%s\" of model version %d is not a table or view", stored, version)));
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/* Resolve a feature relation (icpml.feature_relation or a training argument). */
Oid
RelationResolveFeatures(const char *setting, char **display)
{
	return RelationResolve(setting, "feature", "icpml.feature_relation",
						   "Set icpml.feature_relation to the table or view that holds one feature row per account, e.g. public.account_features.",
						   display);
}

/*
 * Quoted, schema-qualified name of icpml.interactions_relation (resolved
 * with the caller's search_path), after checking that it exists and has
 * the columns the recommender reads; ERROR with a hint otherwise.
 */
char *
RelationResolveInteractions(void)
{
	static const char *const needed[] = {
		"interaction_id", "user_id", "account_id", "interaction_type", "created_at"
	};
	Oid			relid;
	char	   *display;
	int			i;

	relid = RelationResolve(icpml_interactions_relation, "interactions",
							"icpml.interactions_relation",
							"Set icpml.interactions_relation to the table of user interactions, e.g. public.user_interactions.",
							&display);
	for (i = 0; i < lengthof(needed); i++)
		if (get_attnum(relid, needed[i]) == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" does not exist in interactions relation %s", needed[i], display),
					 errhint("The interactions relation needs interaction_id, user_id (uuid), account_id, interaction_type and created_at; expose them in a view.")));
	return display;
}

/*
 * A trigger reads these columns of the interactions relation's transition
 * table as the extension owner: each must exist and be of a built-in type
 * (or a domain over one), so that no cast or operator the table's owner
 * defined runs with the owner's rights.  `reader` names the trigger in the
 * hint ("profile trigger").
 */
void
RelationCheckBuiltinColumns(TupleDesc desc, const char *relname,
							const char *const *columns, int ncolumns,
							const char *reader)
{
	int			c,
				i;

	for (c = 0; c < ncolumns; c++)
	{
		for (i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped && strcmp(NameStr(att->attname), columns[c]) == 0)
				break;
		}
		if (i == desc->natts)
		{
			StringInfoData needs;
			int			k;

			initStringInfo(&needs);
			for (k = 0; k < ncolumns; k++)
				appendStringInfo(&needs, "%s%s",
								 k == 0 ? "" : (k == ncolumns - 1 ? " and " : ", "),
								 columns[k]);
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" does not exist in interactions relation \"%s\"",
							columns[c], relname),
					 errhint("The interactions relation needs %s.", needs.data)));
		}
		if (getBaseType(TupleDescAttr(desc, i)->atttypid) >= FirstNormalObjectId)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" of interactions relation \"%s\" has a user-defined type",
							columns[c], relname),
					 errhint("The %s reads these columns as the extension owner; use built-in types (uuid, bigint, text, timestamptz).",
							 reader)));
	}
}

/* Check that column `name` exists in relid and can be read as `type`. */
static void
RelationCheckColumn(Oid relid, const char *display, const char *name, Oid type)
{
	AttrNumber	attnum = get_attnum(relid, name);
	Oid			atttype;

	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" does not exist in feature relation %s", name, display),
				 errhint("Expose the column under this name in a view over your tables and point icpml.feature_relation at the view.")));

	atttype = get_atttype(relid, attnum);
	if (atttype != type &&
		!can_coerce_type(1, &atttype, &type, COERCION_ASSIGNMENT))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of feature relation %s has type %s, which cannot be read as %s",
						name, display, format_type_be(atttype), format_type_be(type)),
				 errhint("Cast the column in a view over your table.")));
}

/*
 * Build the one/many/all plans for a select list over a resolved relation.
 * Old plans in plans[] are freed first.
 */
void
RelationPlansBuild(const char *select_list, const char *relation_display,
				   const char *key, SPIPlanPtr plans[RELATION_NSCOPES])
{
	int			i;

	for (i = 0; i < RELATION_NSCOPES; i++)
	{
		if (plans[i])
			SPI_freeplan(plans[i]);
		plans[i] = NULL;
	}
	for (i = 0; i < RELATION_NSCOPES; i++)
		plans[i] = RelationPlanBuild(select_list, relation_display, key, (RelationScope) i);
}

/* Prepare and keep the plan of one scope (see relation.h). */
SPIPlanPtr
RelationPlanBuild(const char *select_list, const char *relation_display, const char *key,
				  RelationScope scope)
{
	char	   *base = psprintf("SELECT %s FROM %s AS f", select_list, relation_display);
	const char *qkey = quote_identifier(key);
	Oid			one = INT8OID,
				many = INT8ARRAYOID;

	switch (scope)
	{
		case RELATION_ONE:
			return SpiKeepPlan(psprintf("%s WHERE f.%s OPERATOR(pg_catalog.=) $1", base, qkey), 1, &one, 0);
		case RELATION_MANY:
			return SpiKeepPlan(psprintf("%s WHERE f.%s OPERATOR(pg_catalog.=) ANY ($1)", base, qkey), 1, &many, 0);
		case RELATION_MANY_LARGE:
			/* the array's size known to the planner: it may read everything instead */
			return SpiKeepPlan(psprintf("%s WHERE f.%s OPERATOR(pg_catalog.=) ANY ($1)", base, qkey), 1, &many,
							   CURSOR_OPT_CUSTOM_PLAN);
		case RELATION_ALL:
			break;
	}
	return SpiKeepPlan(base, 0, NULL, 0);
}

/*
 * Readers whose relation's definition may change under them (a column added,
 * dropped or retyped): a relcache invalidation of that relation marks them
 * stale, so the next call checks the columns again (and reports missing
 * optional ones again) instead of running stale plans.
 */
#define RELATION_MAX_READERS 8
static RelationReader *relation_readers[RELATION_MAX_READERS];
static int	relation_nreaders = 0;

/* Relcache callback: mark the readers of relid (or all, for InvalidOid) stale. */
static void
RelationReaderInvalidate(Datum arg, Oid relid)
{
	int			i;

	for (i = 0; i < relation_nreaders; i++)
		if (relid == InvalidOid || relation_readers[i]->relid == relid)
			relation_readers[i]->stale = true;
}

/* Remember a reader for RelationReaderInvalidate (readers are static: never freed). */
static void
RelationWatchReader(RelationReader *reader)
{
	int			i;

	for (i = 0; i < relation_nreaders; i++)
		if (relation_readers[i] == reader)
			return;
	if (relation_nreaders == 0)
		CacheRegisterRelcacheCallback(RelationReaderInvalidate, (Datum) 0);
	if (relation_nreaders < RELATION_MAX_READERS)
		relation_readers[relation_nreaders++] = reader;
}

/* Build (or rebuild) the plans of a reader for the current settings. */
static void
RelationReaderBuild(RelationReader *reader)
{
	char	   *display;
	Oid			relid;
	StringInfoData sql;
	StringInfoData missing;
	int			i;
	SPIPlanPtr	plans[RELATION_NSCOPES] = {reader->plan_one, reader->plan_many, reader->plan_all,
	reader->plan_many_large};
	MemoryContext oldcxt;

	relid = RelationResolveFeatures(icpml_feature_relation, &display);
	RelationCheckColumn(relid, display, icpml_feature_key, INT8OID);
	if (reader->ncols > RELATION_MAX_COLUMNS)
		elog(ERROR, "a relation reader has %d columns, more than %d (please report a bug)",
			 reader->ncols, RELATION_MAX_COLUMNS);
	initStringInfo(&missing);
	for (i = 0; i < reader->ncols; i++)
	{
		/* an optional column the relation lacks reads as NULL */
		reader->missing[i] = reader->cols[i].optional &&
			get_attnum(relid, reader->cols[i].name) == InvalidAttrNumber;
		if (reader->missing[i])
			appendStringInfo(&missing, "%s\"%s\"", missing.len > 0 ? ", " : "",
							 reader->cols[i].name);
		else
			RelationCheckColumn(relid, display, reader->cols[i].name, reader->cols[i].type);
	}

	initStringInfo(&sql);
	appendStringInfo(&sql, "f.%s::pg_catalog.int8", quote_identifier(icpml_feature_key));
	for (i = 0; i < reader->ncols; i++)
	{
		if (reader->missing[i])
			appendStringInfo(&sql, ", NULL::%s", format_type_be_qualified(reader->cols[i].type));
		else
			appendStringInfo(&sql, ", f.%s::%s", quote_identifier(reader->cols[i].name),
							 format_type_be_qualified(reader->cols[i].type));
	}
	/* once per build: a new backend, or a change of the relation setting */
	if (missing.len > 0)
		ereport(NOTICE,
				(errmsg("feature relation %s has no column %s", display, missing.data),
				 errdetail("%s", reader->missing_note ? reader->missing_note : "They read as NULL."),
				 errhint("Only the key column is required; add the columns to the relation (a view over your tables) to use them.")));

	reader->plan_one = reader->plan_many = reader->plan_all = reader->plan_many_large = NULL;
	RelationPlansBuild(sql.data, display, icpml_feature_key, plans);
	reader->plan_one = plans[RELATION_ONE];
	reader->plan_many = plans[RELATION_MANY];
	reader->plan_all = plans[RELATION_ALL];
	reader->plan_many_large = plans[RELATION_MANY_LARGE];

	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	if (reader->relation_setting)
		pfree(reader->relation_setting);
	if (reader->key_setting)
		pfree(reader->key_setting);
	if (reader->relation_display)
		pfree(reader->relation_display);
	reader->relation_setting = pstrdup(icpml_feature_relation);
	reader->key_setting = pstrdup(icpml_feature_key);
	reader->relation_display = pstrdup(display);
	MemoryContextSwitchTo(oldcxt);
	reader->relid = relid;
	reader->stale = false;
	RelationWatchReader(reader);
}

/*
 * The prepared plan for one key ($1 int8), many keys ($1 int8[]) or all.  Must be
 * called inside SPI_connect.  Saved plans are re-planned by the plan cache
 * when the relation changes; a change of the GUCs rebuilds the reader.
 */
SPIPlanPtr
RelationReaderPlan(RelationReader *reader, RelationScope scope)
{
	if (reader->plan_one == NULL || reader->stale ||
		strcmp(reader->relation_setting, icpml_feature_relation) != 0 ||
		strcmp(reader->key_setting, icpml_feature_key) != 0)
		RelationReaderBuild(reader);

	return scope == RELATION_ONE ? reader->plan_one :
		scope == RELATION_MANY ? reader->plan_many :
		scope == RELATION_MANY_LARGE ? reader->plan_many_large : reader->plan_all;
}
