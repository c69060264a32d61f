/*
 * model_store.c — icpml's versioned ICP models and their deployment.
 *
 * The only C code that reads or writes icpml.models and icpml.deployments.
 *
 * Storage: one row per version in icpml.models (XGBoost UBJSON blob,
 * feature spec, params, metrics, score cut-offs).  Status 'deployed' marks
 * the one model scoring uses (a partial unique index keeps it to one);
 * 'retired' a model that was deployed once.  icpml.deployments logs every
 * deploy, rollback and undeploy with the version it replaced, so a rollback
 * can walk back through the history (a stack replayed from the log).
 *
 * Validation: ModelStoreValidate is the gate every stored model passes
 * before it scores: deploy_model, rollback_model, the deploy policies
 * (training included) run it with the probe comparison, the model cache
 * (every backend that loads the deployed model) without it, verify_model
 * before reading rows.  A spec edited after training (levels, kinds,
 * columns, relation) no longer matches the digest training saved in the
 * booster.  verify_model is the proof on real data, e.g. after an XGBoost
 * upgrade: a stored version's native evaluation (tree.c) against XGBoost on
 * rows of the relation it was trained on, read as the caller.
 *
 * Privileges: every access runs as the extension owner
 * (CatalogSwitchToOwner), so EXECUTE on the SQL functions is the gate; the
 * caller's role is recorded in models.created_by and deployments.by.
 *
 * Concurrency: writers that change which version is deployed first take
 * SHARE ROW EXCLUSIVE on icpml.deployments (it conflicts with itself, not
 * with readers), so concurrent deploys queue instead of failing on the
 * unique index.  Everything is transactional: a rolled-back deploy changes
 * nothing, and the statement triggers' relcache invalidation reaches other
 * backends' model caches only when the deploy commits.
 *
 * Memory: results (ModelRecord, result rows) are allocated in the memory
 * context current when the function was called (note: after a caller's
 * own SPI calls that is its SPI procedure context, freed by its
 * SPI_finish); the policy's reason string in TopTransactionContext.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "catalog.h"
#include "icpml.h"
#include "model_store.h"
#include "relation.h"
#include "spec.h"
#include "tree.h"
#include "xgb.h"

PG_FUNCTION_INFO_V1(deploy_model);
PG_FUNCTION_INFO_V1(rollback_model);
PG_FUNCTION_INFO_V1(undeploy_model);
PG_FUNCTION_INFO_V1(delete_model);
PG_FUNCTION_INFO_V1(apply_deploy_policy);
PG_FUNCTION_INFO_V1(verify_model);

/* A session with the store: SPI connected, running as the extension owner. */
typedef struct ModelStoreSession
{
	MemoryContext outer;		/* the caller's context: results go here */
	char	   *caller;			/* role name of the caller, for the log */
	CatalogOwnerState owner;
} ModelStoreSession;

/* Connect to SPI and become the extension owner; remembers the caller. */
static void
ModelStoreBegin(ModelStoreSession *st)
{
	int			ret;

	st->outer = CurrentMemoryContext;
	st->caller = GetUserNameFromId(GetUserId(), false);
	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));
	CatalogSwitchToOwner(&st->owner);
}

/* Back to the caller's role and out of SPI. */
static void
ModelStoreEnd(ModelStoreSession *st)
{
	CatalogRestoreUser(&st->owner);
	SPI_finish();
}

/* Run one statement of the store with parameters; ERROR on SPI failure. */
static int
ModelStoreExec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
			   bool read_only)
{
	int			ret = SPI_execute_with_args(sql, nargs, types, values, nulls, read_only, 0);

	if (ret < 0)
		elog(ERROR, "icpml model store statement failed: %s (please report a bug)",
			 SPI_result_code_string(ret));
	return ret;
}

/* int4 column `att` of result row `row`, with its NULL flag. */
static int32
ModelStoreGetInt32(uint64 row, int att, bool *isnull)
{
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, att, isnull);

	return *isnull ? 0 : DatumGetInt32(d);
}

/* float8 column of result row 0; NULL and NaN both come back as NaN. */
static double
ModelStoreGetFloat8(int att)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, att, &isnull);

	return isnull ? get_float8_nan() : DatumGetFloat8(d);
}

/* Serialise writers that change the deployed version (see the header). */
static void
ModelStoreLockDeployments(void)
{
	(void) CatalogRelid("models");
	(void) CatalogRelid("deployments");
	ModelStoreExec("LOCK TABLE icpml.deployments IN SHARE ROW EXCLUSIVE MODE",
				   0, NULL, NULL, NULL, false);
}

/* The deployed version, 0 when none is deployed (inside SPI, as the owner). */
int32
ModelStoreDeployedVersion(void)
{
	bool		isnull;

	ModelStoreExec("SELECT m.version FROM icpml.models AS m WHERE m.status OPERATOR(pg_catalog.=) 'deployed'",
				   0, NULL, NULL, NULL, false);
	if (SPI_processed == 0)
		return 0;
	return ModelStoreGetInt32(0, 1, &isnull);
}

/*
 * Lock one version's row and check it exists; ERROR if not.  Leaves the row
 * (status, cv_roc_auc, rules_cv_roc_auc) in SPI_tuptable.
 */
static void
ModelStoreLockVersion(int32 version)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(version)};

	ModelStoreExec("SELECT m.status, m.cv_roc_auc, m.rules_cv_roc_auc FROM icpml.models AS m"
				   " WHERE m.version OPERATOR(pg_catalog.=) $1 FOR UPDATE",
				   1, types, values, NULL, false);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("model version %d does not exist", version),
				 errhint("List the stored versions with SELECT * FROM icpml.list_models().")));
}

/* The dataset of a version: what deploys and the policy compare. */
typedef struct ModelStoreDataset
{
	char	   *dataset;		/* md5 (icpml.models.dataset) */
	char	   *relation;
	char	   *key;
	char	   *label;
} ModelStoreDataset;

/* Read a version's dataset (into the current context); false if unknown. */
static bool
ModelStoreGetDataset(int32 version, ModelStoreDataset *out)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(version)};

	memset(out, 0, sizeof(*out));
	ModelStoreExec("SELECT m.dataset, m.spec OPERATOR(pg_catalog.->>) 'relation',"
				   " m.spec OPERATOR(pg_catalog.->>) 'key', m.label_column"
				   " FROM icpml.models AS m WHERE m.version OPERATOR(pg_catalog.=) $1",
				   1, types, values, NULL, false);
	if (SPI_processed == 0)
		return false;
	out->dataset = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	out->relation = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	out->key = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	out->label = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);
	return true;
}

/* Do two datasets differ?  (NULL datasets, from hand-made rows, never match.) */
static bool
ModelStoreDatasetsDiffer(const ModelStoreDataset *a, const ModelStoreDataset *b)
{
	return a->dataset == NULL || b->dataset == NULL || strcmp(a->dataset, b->dataset) != 0;
}

/* "relation public.x, key k, label l (dataset 1a2b3c4d)" for messages. */
static char *
ModelStoreDescribeDataset(const ModelStoreDataset *d)
{
	return psprintf("relation %s, key %s, label %s (dataset %.8s)",
					d->relation ? d->relation : "?", d->key ? d->key : "?",
					d->label ? d->label : "?", d->dataset ? d->dataset : "?");
}

/*
 * Make `target` the deployed version (0: none, back to the rules) in place
 * of `current` (0: none) and log it.  Leaves the new history row in
 * SPI_tuptable.
 */
static void
ModelStoreSwitch(int32 target, int32 current, const char *action, const char *reason,
				 const char *by)
{
	Oid			types[5] = {INT4OID, TEXTOID, INT4OID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	if (current != 0)
	{
		Oid			t[1] = {INT4OID};
		Datum		v[1] = {Int32GetDatum(current)};

		ModelStoreExec("UPDATE icpml.models SET status = 'retired' WHERE version OPERATOR(pg_catalog.=) $1",
					   1, t, v, NULL, false);
	}
	if (target != 0)
	{
		Oid			t[1] = {INT4OID};
		Datum		v[1] = {Int32GetDatum(target)};

		ModelStoreExec("UPDATE icpml.models SET status = 'deployed' WHERE version OPERATOR(pg_catalog.=) $1",
					   1, t, v, NULL, false);
	}

	values[0] = Int32GetDatum(target);
	nulls[0] = target != 0 ? ' ' : 'n';
	values[1] = CStringGetTextDatum(action);
	values[2] = Int32GetDatum(current);
	nulls[2] = current != 0 ? ' ' : 'n';
	values[3] = reason ? CStringGetTextDatum(reason) : (Datum) 0;
	nulls[3] = reason ? ' ' : 'n';
	values[4] = CStringGetTextDatum(by);
	ModelStoreExec("INSERT INTO icpml.deployments (version, action, previous_version, reason, by)"
				   " VALUES ($1, $2, $3, $4, CAST($5 AS pg_catalog.name)) RETURNING *",
				   5, types, values, nulls, false);
}

/*
 * The history row in SPI_tuptable as the function's composite result,
 * built in the caller's context (columns matched by name).
 */
static Datum
ModelStoreResultRow(FunctionCallInfo fcinfo, ModelStoreSession *st)
{
	TupleDesc	desc;
	MemoryContext old;
	Datum	   *values;
	bool	   *nulls;
	HeapTuple	tuple;
	int			i;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "function returning a deployment row called in a wrong context (please report a bug)");

	old = MemoryContextSwitchTo(st->outer);
	desc = BlessTupleDesc(CreateTupleDescCopy(desc));
	values = palloc0(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		int			fno;

		nulls[i] = true;
		if (att->attisdropped)
			continue;
		fno = SPI_fnumber(SPI_tuptable->tupdesc, NameStr(att->attname));
		if (fno <= 0)
			continue;
		values[i] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, fno, &nulls[i]);
	}
	tuple = heap_form_tuple(desc, values, nulls);
	MemoryContextSwitchTo(old);
	return HeapTupleGetDatum(tuple);
}

/*
 * Refuse to deploy a version that fails ModelStoreValidate (with the probe
 * comparison): called with the version's row locked, before anything is
 * written, so a refused deploy changes nothing.
 */
static void
ModelStoreValidateForDeploy(int32 version)
{
	ModelStoreValidate(ModelStoreLoad(version), true, NULL, NULL);
}

/* The required version argument (argument 0); ERROR when NULL. */
static int32
ModelStoreVersionArg(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("version must not be null"),
				 errhint("Pass a version listed by SELECT * FROM icpml.list_models().")));
	return PG_GETARG_INT32(0);
}

/* Optional text argument as a C string (NULL when SQL NULL). */
static char *
ModelStoreTextArg(FunctionCallInfo fcinfo, int argno)
{
	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return NULL;
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/*
 * icpml.deploy_model(version, reason): deploy a stored version, retiring
 * the deployed one.  NULL (with a notice) when it already is deployed.
 */
Datum
deploy_model(PG_FUNCTION_ARGS)
{
	ModelStoreSession st;
	int32		version;
	int32		current;
	char	   *reason = ModelStoreTextArg(fcinfo, 1);
	bool		replace_dataset = PG_NARGS() > 2 && !PG_ARGISNULL(2) && PG_GETARG_BOOL(2);
	Datum		result = (Datum) 0;
	bool		isnull = true;

	version = ModelStoreVersionArg(fcinfo);

	ModelStoreBegin(&st);
	ModelStoreLockDeployments();
	ModelStoreLockVersion(version);
	current = ModelStoreDeployedVersion();
	if (current == version)
		ereport(NOTICE,
				(errmsg("model version %d is already deployed", version)));
	else
	{
		ModelStoreDataset want,
					have;

		/* a sound model first (a corrupt one is refused as such) */
		ModelStoreValidateForDeploy(version);
		/* a model of another dataset replaces the deployed one only on request */
		if (current != 0 && ModelStoreGetDataset(version, &want) &&
			ModelStoreGetDataset(current, &have) && ModelStoreDatasetsDiffer(&want, &have))
		{
			if (!replace_dataset)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("model version %d belongs to another dataset than deployed version %d",
								version, current),
						 errdetail("Version %d: %s. Version %d: %s.", version,
								   ModelStoreDescribeDataset(&want), current,
								   ModelStoreDescribeDataset(&have)),
						 errhint("Deploy it with icpml.deploy_model(version => %d, replace_dataset => true) to score with the other dataset; icpml.account_scores keeps the old scores until the next icpml.score_all().",
								 version)));
			reason = psprintf("replaces version %d of another dataset (%s)%s%s", current,
							  ModelStoreDescribeDataset(&have), reason ? ": " : "",
							  reason ? reason : "");
		}
		ModelStoreSwitch(version, current, "deploy", reason, st.caller);
		result = ModelStoreResultRow(fcinfo, &st);
		isnull = false;
	}
	ModelStoreEnd(&st);

	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/*
 * The version a rollback returns to: replay the history as a stack (a
 * deploy or undeploy pushes what it replaced, a rollback pops back to what
 * it restored), then pop until a version that still exists and is not the
 * deployed one.  0 when there is none.
 */
static int32
ModelStoreRollbackTarget(int32 current)
{
	int32	   *stack;
	int			depth = 0;
	uint64		i;
	uint64		n;

	ModelStoreExec("SELECT d.action, d.version, d.previous_version FROM icpml.deployments AS d"
				   " ORDER BY d.id", 0, NULL, NULL, NULL, false);
	n = SPI_processed;
	stack = palloc(sizeof(int32) * (n + 1));
	for (i = 0; i < n; i++)
	{
		char	   *action = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		bool		vnull,
					pnull;
		int32		v = ModelStoreGetInt32(i, 2, &vnull);
		int32		prev = ModelStoreGetInt32(i, 3, &pnull);

		if (strcmp(action, "rollback") == 0)
		{
			while (depth > 0)
				if (stack[--depth] == v)
					break;
		}
		else if (!pnull)
			stack[depth++] = prev;
	}

	while (depth > 0)
	{
		int32		candidate = stack[--depth];
		Oid			types[1] = {INT4OID};
		Datum		values[1] = {Int32GetDatum(candidate)};

		if (candidate == current)
			continue;
		ModelStoreExec("SELECT 1 FROM icpml.models AS m WHERE m.version OPERATOR(pg_catalog.=) $1 FOR UPDATE",
					   1, types, values, NULL, false);
		if (SPI_processed > 0)
			return candidate;
	}
	return 0;
}

/*
 * icpml.rollback_model(reason): undo the latest deploy or undeploy by
 * re-deploying the version deployed before it.
 */
Datum
rollback_model(PG_FUNCTION_ARGS)
{
	ModelStoreSession st;
	char	   *reason = ModelStoreTextArg(fcinfo, 0);
	int32		current;
	int32		target;
	Datum		result;

	ModelStoreBegin(&st);
	ModelStoreLockDeployments();
	current = ModelStoreDeployedVersion();
	target = ModelStoreRollbackTarget(current);
	if (target == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("there is no earlier deployed model version to roll back to"),
				 errdetail("The deployment history (icpml.deployments) holds no stored version deployed before the current state."),
				 errhint("Deploy a version with icpml.deploy_model(version => ...), or return to the rules with icpml.undeploy_model().")));
	{
		ModelStoreDataset want,
					have;

		/* an explicit step back: allowed across datasets, and said so */
		if (current != 0 && ModelStoreGetDataset(target, &want) &&
			ModelStoreGetDataset(current, &have) && ModelStoreDatasetsDiffer(&want, &have))
			reason = psprintf("back to another dataset (%s), replacing version %d (%s)%s%s",
							  ModelStoreDescribeDataset(&want), current,
							  ModelStoreDescribeDataset(&have), reason ? ": " : "",
							  reason ? reason : "");
	}
	ModelStoreValidateForDeploy(target);
	ModelStoreSwitch(target, current, "rollback", reason, st.caller);
	result = ModelStoreResultRow(fcinfo, &st);
	ModelStoreEnd(&st);

	PG_RETURN_DATUM(result);
}

/*
 * icpml.undeploy_model(reason): retire the deployed model so scoring uses
 * the rules.  NULL (with a notice) when nothing is deployed.
 */
Datum
undeploy_model(PG_FUNCTION_ARGS)
{
	ModelStoreSession st;
	char	   *reason = ModelStoreTextArg(fcinfo, 0);
	int32		current;
	Datum		result = (Datum) 0;

	ModelStoreBegin(&st);
	ModelStoreLockDeployments();
	current = ModelStoreDeployedVersion();
	if (current != 0)
	{
		ModelStoreSwitch(0, current, "undeploy", reason, st.caller);
		result = ModelStoreResultRow(fcinfo, &st);
	}
	else
		ereport(NOTICE,
				(errmsg("no model is deployed; scoring already uses the rules")));
	ModelStoreEnd(&st);

	if (current == 0)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/* icpml.delete_model(version): delete a version that is not deployed. */
Datum
delete_model(PG_FUNCTION_ARGS)
{
	ModelStoreSession st;
	int32		version;
	char	   *status;
	Oid			types[1] = {INT4OID};
	Datum		values[1];

	version = ModelStoreVersionArg(fcinfo);
	values[0] = Int32GetDatum(version);

	ModelStoreBegin(&st);
	ModelStoreLockDeployments();
	ModelStoreLockVersion(version);
	status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (strcmp(status, "deployed") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("model version %d is deployed and cannot be deleted", version),
				 errhint("Deploy another version with icpml.deploy_model(version => ...) or return to the rules with icpml.undeploy_model() first.")));
	ModelStoreExec("DELETE FROM icpml.models WHERE version OPERATOR(pg_catalog.=) $1", 1, types, values, NULL, false);
	ModelStoreEnd(&st);

	PG_RETURN_VOID();
}

/* True when x is a usable AUC (not NULL/NaN). */
static inline bool
ModelStoreHasAuc(double x)
{
	return !isnan(x);
}

/*
 * Apply a deploy policy to a stored version (see model_store.h).  *reason (when
 * not NULL) receives what was compared, with the figures, allocated in
 * TopTransactionContext.
 */
bool
ModelStoreApplyPolicy(int32 version, const char *policy, const ModelStoreChampion *champion,
					  const char **reason)
{
	ModelStoreSession st;
	double		auc,
				rules_auc,
				current_auc = get_float8_nan();
	int32		current;
	bool		deploy;
	bool		other_dataset = false;
	char	   *why;
	char	   *theirs = NULL,
			   *ours = NULL;
	MemoryContext old;

	if (policy == NULL ||
		(strcmp(policy, "best") != 0 && strcmp(policy, "always") != 0 &&
		 strcmp(policy, "never") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown deploy policy \"%s\"", policy ? policy : "(null)"),
				 errhint("Use 'best' (deploy if cross-validation beats the deployed model, or the rules), 'always' or 'never'.")));

	ModelStoreBegin(&st);
	ModelStoreLockDeployments();
	ModelStoreLockVersion(version);
	auc = ModelStoreGetFloat8(2);
	rules_auc = ModelStoreGetFloat8(3);
	current = ModelStoreDeployedVersion();
	if (current != 0 && current != version)
	{
		Oid			types[1] = {INT4OID};
		Datum		values[1] = {Int32GetDatum(current)};

		ModelStoreDataset want,
					have;

		ModelStoreExec("SELECT m.version, m.cv_roc_auc FROM icpml.models AS m WHERE m.version OPERATOR(pg_catalog.=) $1",
					   1, types, values, NULL, false);
		current_auc = ModelStoreGetFloat8(2);
		if (ModelStoreGetDataset(version, &want) && ModelStoreGetDataset(current, &have) &&
			ModelStoreDatasetsDiffer(&want, &have))
		{
			other_dataset = true;
			ours = MemoryContextStrdup(TopTransactionContext, ModelStoreDescribeDataset(&want));
			theirs = MemoryContextStrdup(TopTransactionContext, ModelStoreDescribeDataset(&have));
		}
	}

	/*
	 * The reason lives until the transaction ends, whatever context the
	 * caller is in (after its own SPI calls that is its SPI procedure
	 * context, which its SPI_finish frees).
	 */
	old = MemoryContextSwitchTo(TopTransactionContext);
	if (current == version)
	{
		deploy = false;
		why = psprintf("version %d is already deployed", version);
	}
	else if (strcmp(policy, "never") == 0)
	{
		deploy = false;
		why = psprintf("policy never: version %d stored, not deployed", version);
	}
	else if (strcmp(policy, "always") == 0)
	{
		deploy = true;
		why = current == 0
			? psprintf("policy always: deployed version %d in place of the rules", version)
			: other_dataset
			? psprintf("policy always: deployed version %d (%s) in place of version %d of another dataset (%s)",
					   version, ours, current, theirs)
			: psprintf("policy always: deployed version %d in place of version %d", version, current);
	}
	else if (other_dataset)
	{
		/* best compares models of one dataset only: another is a person's decision */
		deploy = false;
		why = psprintf("policy best: deployed version %d belongs to another dataset (%s) than version %d (%s), so they are not compared; not deployed (icpml.deploy_model(version => %d, replace_dataset => true) deploys it)",
					   current, theirs, version, ours, version);
	}
	else if (!ModelStoreHasAuc(auc))
	{
		deploy = false;
		why = psprintf("policy best: version %d has no cross-validated ROC AUC to compare; not deployed",
					   version);
	}
	else if (current != 0 && champion != NULL && champion->version == current)
	{
		/* the deployed recipe on the candidate's own folds */
		if (champion->same_data)
		{
			deploy = false;
			why = psprintf("policy best: the same recipe and training rows as deployed version %d; version %d not deployed",
						   current, version);
		}
		else if (champion->same_recipe)
		{
			deploy = true;
			why = psprintf("policy best: the recipe of deployed version %d, retrained on the current rows (CV ROC AUC %.4f on these folds); deployed version %d",
						   current, auc, version);
		}
		else
		{
			deploy = auc > champion->cv_auc;
			why = psprintf("policy best: CV ROC AUC %.4f %s %.4f of deployed version %d's recipe on the same folds; %s",
						   auc, deploy ? "beats" : "does not beat", champion->cv_auc, current,
						   deploy ? psprintf("deployed version %d", version)
						   : psprintf("version %d not deployed", version));
		}
	}
	else if (current != 0)
	{
		if (!ModelStoreHasAuc(current_auc))
		{
			deploy = true;
			why = psprintf("policy best: deployed version %d has no cross-validated ROC AUC; deployed version %d (CV ROC AUC %.4f)",
						   current, version, auc);
		}
		else
		{
			deploy = auc > current_auc;
			why = psprintf("policy best: CV ROC AUC %.4f %s %.4f of deployed version %d (each on its own folds); %s",
						   auc, deploy ? "beats" : "does not beat", current_auc, current,
						   deploy ? psprintf("deployed version %d", version)
						   : psprintf("version %d not deployed", version));
		}
	}
	else if (!ModelStoreHasAuc(rules_auc))
	{
		deploy = true;
		why = psprintf("policy best: no model deployed and no rules baseline on these folds; deployed version %d (CV ROC AUC %.4f)",
					   version, auc);
	}
	else
	{
		deploy = auc > rules_auc;
		why = psprintf("policy best: CV ROC AUC %.4f %s the rules' %.4f on the same folds; %s",
					   auc, deploy ? "beats" : "does not beat", rules_auc,
					   deploy ? psprintf("deployed version %d", version)
					   : psprintf("version %d not deployed", version));
	}
	MemoryContextSwitchTo(old);

	if (deploy)
	{
		ModelStoreValidateForDeploy(version);
		ModelStoreSwitch(version, current, "deploy", why, st.caller);
	}
	ModelStoreEnd(&st);

	if (reason)
		*reason = why;
	return deploy || current == version;
}

/*
 * icpml.apply_deploy_policy(version, policy): the decision training makes,
 * for a stored version: (deployed, reason).
 */
Datum
apply_deploy_policy(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	const char *reason = NULL;
	int32		version = ModelStoreVersionArg(fcinfo);

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "apply_deploy_policy called in a wrong context (please report a bug)");

	values[0] = BoolGetDatum(ModelStoreApplyPolicy(version,
												   ModelStoreTextArg(fcinfo, 1), NULL, &reason));
	values[1] = CStringGetTextDatum(reason);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* Insert a new version (status 'trained') as the extension owner; returns its number. */
int32
ModelStoreInsert(ModelRecord *rec)
{
	ModelStoreSession st;
	Oid			types[20] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, BYTEAOID, JSONBOID,
		JSONBOID, JSONBOID, INT8OID, INT8OID, INT4OID, TEXTOID, TEXTOID,
		FLOAT8ARRAYOID, INT4OID, INT4OID, FLOAT8OID, FLOAT8OID, JSONBOID, BYTEAOID};
	Datum		values[20];
	char		nulls[20];
	Datum		cutoffs[ICPML_NSCORE_CUTOFFS];
	bytea	   *blob;
	int			i;
	int32		version;
	bool		isnull;

	if (rec == NULL || rec->blob == NULL || rec->bloblen == 0 || rec->spec == NULL)
		elog(ERROR, "ModelStoreInsert needs a model blob and a feature spec (please report a bug)");

	memset(nulls, ' ', sizeof(nulls));
	blob = (bytea *) palloc(VARHDRSZ + rec->bloblen);
	SET_VARSIZE(blob, VARHDRSZ + rec->bloblen);
	memcpy(VARDATA(blob), rec->blob, rec->bloblen);
	for (i = 0; i < ICPML_NSCORE_CUTOFFS; i++)
		cutoffs[i] = Float8GetDatum(rec->score_cutoffs[i]);

	values[0] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
#define STORE_TEXT(n, s) \
	do { if (s) values[n] = CStringGetTextDatum(s); else nulls[n] = 'n'; } while (0)
#define STORE_JSONB(n, j) \
	do { if (j) values[n] = JsonbPGetDatum(j); else nulls[n] = 'n'; } while (0)
	STORE_TEXT(1, rec->spec->relation);
	STORE_TEXT(2, rec->spec->key);
	STORE_TEXT(3, rec->label);
	values[4] = PointerGetDatum(blob);
	values[5] = JsonbPGetDatum(SpecToJsonb(rec->spec));
	STORE_JSONB(6, rec->params);
	STORE_JSONB(7, rec->metrics);
	values[8] = Int64GetDatum(rec->n_rows);
	values[9] = Int64GetDatum(rec->n_positive);
	values[10] = Int32GetDatum(rec->seed);
	STORE_TEXT(11, rec->fingerprint);
	STORE_TEXT(12, rec->xgboost_version ? rec->xgboost_version : XgbVersionString());
	values[13] = PointerGetDatum(construct_array(cutoffs, ICPML_NSCORE_CUTOFFS, FLOAT8OID,
												 sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[14] = Int32GetDatum(rec->high_min_score);
	values[15] = Int32GetDatum(rec->medium_min_score);
	values[16] = Float8GetDatum(rec->cv_auc);
	nulls[16] = isnan(rec->cv_auc) ? 'n' : ' ';
	values[17] = Float8GetDatum(rec->rules_cv_auc);
	nulls[17] = isnan(rec->rules_cv_auc) ? 'n' : ' ';
	STORE_JSONB(18, rec->training_stats);
	values[19] = PointerGetDatum(rec->training_labels);
	nulls[19] = rec->training_labels ? ' ' : 'n';
#undef STORE_TEXT
#undef STORE_JSONB

	ModelStoreBegin(&st);
	(void) CatalogRelid("models");
	ModelStoreExec("INSERT INTO icpml.models (created_by, relation, key_column, label_column, model,"
				   " spec, params, metrics, n_rows, n_positive, seed, data_fingerprint,"
				   " xgboost_version, score_cutoffs, high_min_score, medium_min_score,"
				   " cv_roc_auc, rules_cv_roc_auc, training_stats, training_labels)"
				   " VALUES (CAST($1 AS pg_catalog.name), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
				   " $12, $13, $14, $15, $16, $17, $18, $19, $20) RETURNING version",
				   20, types, values, nulls, false);
	version = ModelStoreGetInt32(0, 1, &isnull);
	ModelStoreEnd(&st);

	rec->version = version;
	return version;
}

#define MODEL_STORE_LOAD_COLUMNS \
	"SELECT m.version, m.model, m.spec, m.label_column, m.params, m.metrics, m.n_rows," \
	" m.n_positive, m.seed, m.data_fingerprint, m.xgboost_version, m.score_cutoffs," \
	" m.high_min_score, m.medium_min_score, m.cv_roc_auc, m.rules_cv_roc_auc" \
	" FROM icpml.models AS m "

/* Text column of result row 0 copied into the current context, or NULL. */
static char *
ModelStoreGetText(int att)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, att, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* Jsonb column of result row 0 copied into the current context, or NULL. */
static Jsonb *
ModelStoreGetJsonb(int att)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, att, &isnull);

	return isnull ? NULL : DatumGetJsonbPCopy(d);
}

/* Build a ModelRecord (in the caller's context) from the row in SPI_tuptable. */
static ModelRecord *
ModelStoreRecordFromRow(ModelStoreSession *st)
{
	HeapTuple	tup = SPI_tuptable->vals[0];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	MemoryContext old = MemoryContextSwitchTo(st->outer);
	ModelRecord *rec = palloc0(sizeof(ModelRecord));
	bool		isnull;
	Datum		d;
	bytea	   *blob;
	Jsonb	   *spec;
	Datum	   *cutoffs;
	bool	   *cnulls;
	int			ncutoffs;
	int			i;

	rec->version = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));

	d = SPI_getbinval(tup, desc, 2, &isnull);
	blob = DatumGetByteaPP(d);
	rec->bloblen = VARSIZE_ANY_EXHDR(blob);
	rec->blob = palloc(rec->bloblen + 1);
	memcpy(rec->blob, VARDATA_ANY(blob), rec->bloblen);
	rec->blob[rec->bloblen] = '\0';

	spec = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 3, &isnull));
	rec->spec_json = spec;
	rec->spec = SpecFromJsonb(spec);
	rec->label = ModelStoreGetText(4);
	rec->params = ModelStoreGetJsonb(5);
	rec->metrics = ModelStoreGetJsonb(6);
	d = SPI_getbinval(tup, desc, 7, &isnull);
	rec->n_rows = isnull ? 0 : DatumGetInt64(d);
	d = SPI_getbinval(tup, desc, 8, &isnull);
	rec->n_positive = isnull ? 0 : DatumGetInt64(d);
	d = SPI_getbinval(tup, desc, 9, &isnull);
	rec->seed = isnull ? 0 : DatumGetInt32(d);
	rec->fingerprint = ModelStoreGetText(10);
	rec->xgboost_version = ModelStoreGetText(11);

	d = SPI_getbinval(tup, desc, 12, &isnull);
	deconstruct_array(DatumGetArrayTypeP(d), FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &cutoffs, &cnulls, &ncutoffs);
	if (ncutoffs != ICPML_NSCORE_CUTOFFS)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("model version %d has %d score cut-offs, expected %d",
						rec->version, ncutoffs, ICPML_NSCORE_CUTOFFS),
				 errhint("Retrain the model, or deploy another version.")));
	for (i = 0; i < ICPML_NSCORE_CUTOFFS; i++)
		rec->score_cutoffs[i] = DatumGetFloat8(cutoffs[i]);

	rec->high_min_score = DatumGetInt32(SPI_getbinval(tup, desc, 13, &isnull));
	rec->medium_min_score = DatumGetInt32(SPI_getbinval(tup, desc, 14, &isnull));
	rec->cv_auc = ModelStoreGetFloat8(15);
	rec->rules_cv_auc = ModelStoreGetFloat8(16);

	MemoryContextSwitchTo(old);
	return rec;
}

/*
 * The deployed model or NULL (one read-only query, as the extension owner;
 * icpml.models and icpml.deployments become watched for invalidation).
 */
ModelRecord *
ModelStoreLoadDeployed(void)
{
	ModelStoreSession st;
	ModelRecord *rec = NULL;

	ModelStoreBegin(&st);
	(void) CatalogRelid("models");
	(void) CatalogRelid("deployments");
	ModelStoreExec(MODEL_STORE_LOAD_COLUMNS "WHERE m.status OPERATOR(pg_catalog.=) 'deployed'", 0, NULL, NULL, NULL, true);
	if (SPI_processed > 0)
		rec = ModelStoreRecordFromRow(&st);
	ModelStoreEnd(&st);
	return rec;
}

/* Any stored version; ERROR if unknown. */
ModelRecord *
ModelStoreLoad(int32 version)
{
	ModelStoreSession st;
	ModelRecord *rec;
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(version)};

	ModelStoreBegin(&st);
	(void) CatalogRelid("models");
	/* not read-only: a version inserted earlier in this transaction is seen */
	ModelStoreExec(MODEL_STORE_LOAD_COLUMNS "WHERE m.version OPERATOR(pg_catalog.=) $1", 1, types, values, NULL, false);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("model version %d does not exist", version),
				 errhint("List the stored versions with SELECT * FROM icpml.list_models().")));
	rec = ModelStoreRecordFromRow(&st);
	ModelStoreEnd(&st);
	return rec;
}

/* ERROR for a stored model that fails validation. */
static void
ModelStoreInvalid(const ModelRecord *rec, const char *problem)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("model version %d failed validation: %s", rec->version, problem),
			 errhint("The stored model or its spec was edited, truncated or mixed with another model's; deploy another version or retrain.")));
}

/* The gate every stored model passes before it scores (see model_store.h). */
void
ModelStoreValidate(const ModelRecord *rec, bool probe, XgbBooster **booster_out,
				   TreeModel **tree_out)
{
	const FeatureSpec *spec = rec->spec;
	XgbBooster *booster;
	TreeModel  *tree;
	char	   *digest;
	char	  **types;
	int			ntypes,
				k,
				nf;

	for (k = 0; k < ICPML_NSCORE_CUTOFFS; k++)
	{
		double		c = rec->score_cutoffs[k];

		if (isnan(c) || (isinf(c) && c < 0))
			ModelStoreInvalid(rec, psprintf("score cut-off %d is %g", k + 1, c));
		if (!isinf(c) && (c < 0.0 || c > 1.0))
			ModelStoreInvalid(rec, psprintf("score cut-off %d (%g) is not a probability", k + 1, c));
		if (k > 0 && c < rec->score_cutoffs[k - 1])
			ModelStoreInvalid(rec, psprintf("score cut-offs decrease (%g after %g)",
									   c, rec->score_cutoffs[k - 1]));
	}
	SpecValidate(spec);
	nf = spec->nfeatures;

	if (rec->bloblen == 0)
		ModelStoreInvalid(rec, "the model blob is empty");

	if (!probe && booster_out == NULL)
	{
		/*
		 * The scoring path (the model cache): the same checks on what the
		 * blob records, read natively, and the trees compiled from it,
		 * without loading XGBoost (see xgb.c).
		 */
		TreeSavedInfo info;

		tree = TreeModelFromSaved(rec->blob, rec->bloblen, ICPML_SPEC_DIGEST_ATTR, &info);
		if (info.nfeatures != nf)
			ModelStoreInvalid(rec, psprintf("the booster has %lld features, its spec %d",
									   (long long) info.nfeatures, nf));
		if (info.ntypes != 0)
		{
			if (info.ntypes != nf)
				ModelStoreInvalid(rec, psprintf("the booster records %d feature types, its spec has %d features",
										   info.ntypes, nf));
			for (k = 0; k < nf; k++)
				if (strcmp(info.feature_types[k], spec->feature_types[k]) != 0)
					ModelStoreInvalid(rec, psprintf("feature %d (\"%s\") has type \"%s\" in its spec, \"%s\" in the booster",
											   k + 1, spec->feature_names[k], spec->feature_types[k],
											   info.feature_types[k]));
		}
		if (info.attr_value != NULL && rec->spec_json != NULL &&
			strcmp(info.attr_value, SpecDigest(rec->spec_json)) != 0)
			ModelStoreInvalid(rec, "its feature spec is not the one it was trained with");
		if (tree_out)
			*tree_out = tree;
		else
			TreeModelFree(tree);
		return;
	}

	booster = XgbBoosterLoad(rec->blob, rec->bloblen);
	if (XgbBoosterNumFeatures(booster) != nf)
		ModelStoreInvalid(rec, psprintf("the booster has %d features, its spec %d",
								   XgbBoosterNumFeatures(booster), nf));
	types = XgbBoosterFeatureTypes(booster, &ntypes);
	if (ntypes != 0)
	{
		if (ntypes != nf)
			ModelStoreInvalid(rec, psprintf("the booster records %d feature types, its spec has %d features",
									   ntypes, nf));
		for (k = 0; k < nf; k++)
			if (strcmp(types[k], spec->feature_types[k]) != 0)
				ModelStoreInvalid(rec, psprintf("feature %d (\"%s\") has type \"%s\" in its spec, \"%s\" in the booster",
										   k + 1, spec->feature_names[k], spec->feature_types[k],
										   types[k]));
	}
	digest = XgbBoosterGetAttr(booster, ICPML_SPEC_DIGEST_ATTR);
	if (digest != NULL && rec->spec_json != NULL &&
		strcmp(digest, SpecDigest(rec->spec_json)) != 0)
		ModelStoreInvalid(rec, "its feature spec is not the one it was trained with");

	/* what scoring runs: the trees compiled from the stored blob */
	tree = TreeModelFromSaved(rec->blob, rec->bloblen, NULL, &(TreeSavedInfo) {0});

	if (probe)
	{
		float	   *X = TreeModelProbeRows(tree, MODEL_STORE_PROBE_ROWS, 1);
		double		margin_diff,
					contrib_diff;
		char		buf[32];

		snprintf(buf, sizeof(buf), "%d", icpml_nthread);
		XgbBoosterSetParam(booster, "nthread", buf);
		TreeVerifyMatrix(booster, tree, X, MODEL_STORE_PROBE_ROWS, nf,
						 &margin_diff, &contrib_diff);
		/* the native evaluator is bit-identical to XGBoost on a sound model */
		if (!(margin_diff <= 1e-6) || !(contrib_diff <= 1e-5))
			ModelStoreInvalid(rec, psprintf("the native evaluator differs from XGBoost (margin %g, contributions %g)",
									   margin_diff, contrib_diff));
		pfree(X);
	}

	if (booster_out)
		*booster_out = booster;
	else
		XgbBoosterFree(booster);
	if (tree_out)
		*tree_out = tree;
	else
		TreeModelFree(tree);
}

/*
 * verify_model(version integer DEFAULT NULL → the deployed one, rows integer DEFAULT 10000)
 * → (version, n_rows, n_trees, max_abs_margin_diff, max_abs_contrib_diff,
 *    max_abs_probability_diff, max_abs_shap_sum_diff)
 */
Datum
verify_model(PG_FUNCTION_ARGS)
{
	int32		rows = PG_ARGISNULL(1) ? 10000 : PG_GETARG_INT32(1);
	ModelRecord *rec;
	XgbBooster *booster;
	TreeModel  *tree;
	TupleDesc	desc;
	char	   *relation;
	StringInfoData sql;
	Datum		arg;
	Oid			argtype = INT4OID;
	float	   *X;
	int64		n,
				i;
	int			nf;
	TreeVerifyResult res;
	Datum		values[7];
	bool		nulls[7] = {false};
	MemoryContext callcxt = CurrentMemoryContext;

	if (rows < 1 || rows > 1000000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rows must be between 1 and 1000000")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "verify_model must return a composite type (please report a bug)");

	rec = PG_ARGISNULL(0) ? ModelStoreLoadDeployed() : ModelStoreLoad(PG_GETARG_INT32(0));
	if (rec == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("no model is deployed"),
				 errhint("Pass a version: SELECT * FROM icpml.verify_model(version => 1).")));
	nf = rec->spec->nfeatures;
	ModelStoreValidate(rec, false, &booster, &tree);
	relation = RelationResolveStored(rec->spec->relation, rec->version);

	SPI_connect();
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT f.%s::pg_catalog.int8, %s FROM %s AS f LIMIT $1",
					 quote_identifier(rec->spec->key), SpecSelectList(rec->spec, "f"),
					 relation);
	arg = Int32GetDatum(rows);
	if (SPI_execute_with_args(sql.data, 1, &argtype, &arg, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading the model's relation failed");
	n = (int64) SPI_processed;
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("relation %s has no rows to verify model version %d on",
						relation, rec->version)));

	X = MemoryContextAlloc(callcxt, sizeof(float) * n * Max(nf, 1));
	for (i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		SpecEncodeRow(rec->spec, SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, X + i * nf);
	}
	SPI_finish();

	TreeVerify(booster, tree, X, n, nf, Min(n, 300), &res);

	values[0] = Int32GetDatum(rec->version);
	values[1] = Int64GetDatum(res.n_rows);
	values[2] = Int32GetDatum(res.n_trees);
	values[3] = Float8GetDatum(res.max_margin_diff);
	values[4] = Float8GetDatum(res.max_contrib_diff);
	values[5] = Float8GetDatum(res.max_probability_diff);
	values[6] = Float8GetDatum(res.max_shap_sum_diff);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* See model_store.h: the training statistics model_health compares with. */
void
ModelStoreLoadHealth(int32 version, ModelStoreHealth *out)
{
	ModelStoreSession st;
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(version)};
	bool		isnull;
	Datum		d;
	MemoryContext old;

	memset(out, 0, sizeof(*out));
	ModelStoreBegin(&st);
	(void) CatalogRelid("models");
	ModelStoreExec("SELECT m.training_stats, m.training_labels,"
				   " pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-) m.created_at)"
				   " OPERATOR(pg_catalog./) 86400.0"
				   " FROM icpml.models AS m WHERE m.version OPERATOR(pg_catalog.=) $1",
				   1, types, values, NULL, true);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("model version %d does not exist", version),
				 errhint("List the stored versions with SELECT * FROM icpml.list_models().")));
	old = MemoryContextSwitchTo(st.outer);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	out->training_stats = isnull ? NULL : DatumGetJsonbPCopy(d);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	out->training_labels = isnull ? NULL : DatumGetByteaPCopy(d);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
	out->age_days = isnull ? 0 : DatumGetFloat8(d);
	MemoryContextSwitchTo(old);
	ModelStoreEnd(&st);
}
