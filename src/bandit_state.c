/*
 * bandit_state.c — the bandit's ridge-regression state: the prior, one
 * observation's update, and the rows of icpml.bandit_state.
 *
 * An update adds x x' to A and r x to b and updates the Cholesky factor L
 * by a rank-1 update; every refactor_every updates L is recomputed from A
 * so that rounding cannot accumulate.  With forgetting (gamma < 1) an
 * update is A <- gamma A + (1 - gamma) lambda I + x x', b <- gamma b + r x
 * (the data are forgotten, the prior is not), which is not a rank-1 change:
 * L is then recomputed on every update (d <= 64: microseconds).
 *
 * A and b are updated by exactly the same floating-point operations
 * whichever path (trigger, batch, rebuild) applies them, so a rebuild from
 * the log reproduces the online state bit for bit when it replays the same
 * updates in the same order.
 *
 * Storage runs inside SPI_connect, after the caller has switched to the
 * extension owner; the locking protocol of the writers is in feedback.c.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "bandit.h"
#include "catalog.h"
#include "context.h"
#include "icpml.h"

static SPIPlanPtr plan_load = NULL;
static SPIPlanPtr plan_load_lock = NULL;
static SPIPlanPtr plan_load_skip = NULL;
static SPIPlanPtr plan_insert_prior = NULL;
static SPIPlanPtr plan_store = NULL;

/* "user:<uuid>" for a user id. */
void
BanditUserScope(const pg_uuid_t *user, char *scope)
{
	static const char hex[] = "0123456789abcdef";
	char	   *p;
	int			i;

	strcpy(scope, "user:");
	p = scope + 5;
	for (i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[user->data[i] >> 4];
		*p++ = hex[user->data[i] & 0x0F];
	}
	*p = '\0';
}

/* Allocate the arrays of a state (current memory context). */
static void
BanditStateAlloc(BanditState *s, const char *scope, int d)
{
	memset(s, 0, sizeof(*s));
	strlcpy(s->scope, scope, sizeof(s->scope));
	s->d = d;
	s->A = palloc0(sizeof(double) * d * d);
	s->b = palloc0(sizeof(double) * d);
	s->L = palloc0(sizeof(double) * d * d);
}

/*
 * A fresh state at the prior: A = lambda I, L = sqrt(lambda) I, and b = 0,
 * except for the global state, whose prior mean theta_0 = icp_prior on the
 * ICP probability (b = lambda theta_0): before any feedback the expected
 * reward follows the ICP score.  A user's prior is centred on the global
 * model instead (see recommend.c), so its b starts at 0.
 */
void
BanditStateInitPrior(BanditState *s, const char *scope, int d, const BanditSettings *cfg)
{
	int			i;
	double		lambda = BanditPriorLambda(cfg, scope);

	BanditStateAlloc(s, scope, d);
	for (i = 0; i < d; i++)
	{
		s->A[i * d + i] = lambda;
		s->L[i * d + i] = sqrt(lambda);
	}
	if (BanditScopeIsShared(scope) && d > CTX_ICP)
		s->b[CTX_ICP] = cfg->lambda * cfg->icp_prior;
}

/*
 * Is this the scope of a shared model: the global one, or an experiment
 * variant's own (which starts from the same prior)?
 */
bool
BanditScopeIsShared(const char *scope)
{
	return strcmp(scope, "global") == 0 || strncmp(scope, "variant:", 8) == 0;
}

/*
 * Examination probability of list position `rank` (1-based) under the
 * position-based model: (1 / log2(rank + 1)) ^ position_bias (1 at rank 1;
 * position_bias = 0 turns the correction off).
 */
double
BanditExamination(const BanditSettings *cfg, int rank)
{
	if (cfg->position_bias <= 0.0 || rank <= 1)
		return 1.0;
	return pow(1.0 / log2((double) rank + 1.0), cfg->position_bias);
}

/*
 * Ridge strength of a state's prior: lambda for the shared model,
 * personalization_prior for a user's (how strongly the user's weights are
 * pulled towards the shared model's).
 */
double
BanditPriorLambda(const BanditSettings *cfg, const char *scope)
{
	return BanditScopeIsShared(scope) ? cfg->lambda : cfg->personalization_prior;
}

/* One observation (x, r): update A, b, n and the Cholesky factor. */
void
BanditStateUpdate(BanditState *s, const double *x, double r, const BanditSettings *cfg)
{
	int			d = s->d;
	int			i,
				j;
	bool		refactor;

	if (cfg->gamma < 1.0)
	{
		double		keep = (1.0 - cfg->gamma) * BanditPriorLambda(cfg, s->scope);

		for (i = 0; i < d * d; i++)
			s->A[i] *= cfg->gamma;
		for (i = 0; i < d; i++)
		{
			s->A[i * d + i] += keep;
			s->b[i] *= cfg->gamma;
		}
	}
	for (i = 0; i < d; i++)
	{
		for (j = 0; j < d; j++)
			s->A[i * d + j] += x[i] * x[j];
		s->b[i] += r * x[i];
	}
	s->n++;

	refactor = cfg->gamma < 1.0 || ++s->updates_since_refactor >= cfg->refactor_every;
	if (refactor)
	{
		if (!BanditCholesky(s->A, s->L, d))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("bandit state \"%s\" is not positive definite", s->scope),
					 errhint("Run SELECT icpml.rebuild_bandit_state() to recompute it from the log.")));
		s->updates_since_refactor = 0;
	}
	else
		BanditCholUpdate(s->L, x, d);
	s->dirty = true;
}

/*
 * A change of an observation's reward already counted in the state: b +=
 * delta x (A, n and the factor do not change; nor does forgetting apply:
 * it is not a new observation).
 */
void
BanditStateAddReward(BanditState *s, const double *x, double delta)
{
	int			i;

	for (i = 0; i < s->d; i++)
		s->b[i] += delta * x[i];
	s->dirty = true;
}

/* Copy a float8[] of exactly n elements into out; ERROR otherwise. */
static void
BanditReadArray(Datum d, double *out, int n, const char *scope, const char *what)
{
	ArrayType  *arr = DatumGetArrayTypeP(d);
	int			i;

	if (ARR_ELEMTYPE(arr) != FLOAT8OID || ARR_HASNULL(arr) ||
		ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr)) != n)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("column %s of bandit state \"%s\" does not hold %d numbers", what, scope, n),
				 errhint("Run SELECT icpml.rebuild_bandit_state() to recompute the state from the log.")));
	memcpy(out, ARR_DATA_PTR(arr), sizeof(double) * n);
	/* NaN or infinity here would be served and logged as NaN scores */
	for (i = 0; i < n; i++)
		if (!isfinite(out[i]))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("column %s of bandit state \"%s\" holds a non-finite number", what, scope),
					 errhint("Run SELECT icpml.rebuild_bandit_state() to recompute the state from the log.")));
}

/* A float8[] datum of n elements, 2-D (rows x rows) when square. */
static Datum
BanditMakeArray(const double *v, int rows, bool square)
{
	int			n = square ? rows * rows : rows;
	Datum	   *elems = palloc(sizeof(Datum) * n);
	int			dims[2] = {rows, rows};
	int			lbs[2] = {1, 1};
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = Float8GetDatum(v[i]);
	return PointerGetDatum(construct_md_array(elems, NULL, square ? 2 : 1, dims, lbs,
											  FLOAT8OID, sizeof(float8),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* Insert a state row at the prior unless it exists (so that it can be locked). */
static void
BanditStateInsertPrior(Datum scope_text, const char *scope, const BanditSettings *cfg)
{
	Oid			itypes[5] = {TEXTOID, INT4OID, FLOAT8ARRAYOID, FLOAT8ARRAYOID, FLOAT8ARRAYOID};
	Datum		iargs[5];
	BanditState prior;
	int			ret;

	if (plan_insert_prior == NULL)
		plan_insert_prior = CatalogKeepPlan("INSERT INTO icpml.bandit_state"
											" (scope, dim, a, b, chol, version)"
											" VALUES ($1, $2, $3, $4, $5,"
											" pg_catalog.nextval('icpml.bandit_state_version_seq'))"
											" ON CONFLICT (scope) DO NOTHING", 5, itypes, 0);
	BanditStateInitPrior(&prior, scope, BANDIT_DIM, cfg);
	iargs[0] = scope_text;
	iargs[1] = Int32GetDatum(BANDIT_DIM);
	iargs[2] = BanditMakeArray(prior.A, BANDIT_DIM, true);
	iargs[3] = BanditMakeArray(prior.b, BANDIT_DIM, false);
	iargs[4] = BanditMakeArray(prior.L, BANDIT_DIM, true);
	ret = SPI_execute_plan(plan_insert_prior, iargs, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "creating bandit state \"%s\" failed: %s", scope, SPI_result_code_string(ret));
}

/* Fill a state from the row SPI just read. */
static void
BanditStateFromRow(BanditState *s, const char *scope, bool with_a)
{
	HeapTuple	tup = SPI_tuptable->vals[0];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	bool		isnull;
	int			d;

	d = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	if (d != BANDIT_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("bandit state \"%s\" has dimension %d, this version of icpml uses %d",
						scope, d, BANDIT_DIM),
				 errhint("Run SELECT icpml.rebuild_bandit_state() after the upgrade.")));
	BanditStateAlloc(s, scope, d);
	if (with_a)
		BanditReadArray(SPI_getbinval(tup, desc, 2, &isnull), s->A, d * d, scope, "a");
	BanditReadArray(SPI_getbinval(tup, desc, 3, &isnull), s->b, d, scope, "b");
	BanditReadArray(SPI_getbinval(tup, desc, 4, &isnull), s->L, d * d, scope, "chol");
	s->n = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
	s->updates_since_refactor = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
	s->version = DatumGetInt64(SPI_getbinval(tup, desc, 7, &isnull));
	s->exists = true;
}

#define BANDIT_LOAD_COLUMNS "SELECT dim, a, b, chol, n, updates_since_refactor, version" \
	" FROM icpml.bandit_state WHERE scope OPERATOR(pg_catalog.=) $1"

/*
 * Read (and optionally lock) a state row; false when there is none.  A row
 * to lock that does not exist is created at the prior first, so that two
 * writers of a new scope queue on it instead of both inserting.
 */
bool
BanditStateLoad(BanditState *s, const char *scope, bool for_update, bool with_a,
				const BanditSettings *cfg)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	int			ret;
	SPIPlanPtr	plan;

	if (plan_load == NULL)
		plan_load = CatalogKeepPlan(BANDIT_LOAD_COLUMNS, 1, argtypes, 0);
	if (plan_load_lock == NULL)
		plan_load_lock = CatalogKeepPlan(BANDIT_LOAD_COLUMNS " FOR UPDATE", 1, argtypes, 0);
	plan = for_update ? plan_load_lock : plan_load;
	args[0] = CStringGetTextDatum(scope);

	ret = SPI_execute_plan(plan, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading icpml.bandit_state failed: %s", SPI_result_code_string(ret));

	if (SPI_processed == 0 && for_update)
	{
		BanditStateInsertPrior(args[0], scope, cfg);
		ret = SPI_execute_plan(plan, args, NULL, false, 1);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "locking bandit state \"%s\" failed (please report a bug)", scope);
	}

	if (SPI_processed == 0)
	{
		BanditStateInitPrior(s, scope, BANDIT_DIM, cfg);
		return false;
	}
	BanditStateFromRow(s, scope, with_a);
	return true;
}

/*
 * Lock and read a state row (with A) unless another transaction holds its
 * lock: false then, and nothing is read.  Created at the prior first when
 * missing.
 */
bool
BanditStateLoadIfFree(BanditState *s, const char *scope, const BanditSettings *cfg)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	int			ret;

	if (plan_load_skip == NULL)
		plan_load_skip = CatalogKeepPlan(BANDIT_LOAD_COLUMNS " FOR UPDATE SKIP LOCKED", 1, argtypes, 0);
	args[0] = CStringGetTextDatum(scope);
	ret = SPI_execute_plan(plan_load_skip, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading icpml.bandit_state failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
	{
		/* locked by someone else (then go), or missing: create it, look again */
		if (plan_load == NULL)
			plan_load = CatalogKeepPlan(BANDIT_LOAD_COLUMNS, 1, argtypes, 0);
		ret = SPI_execute_plan(plan_load, args, NULL, true, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "reading icpml.bandit_state failed: %s", SPI_result_code_string(ret));
		if (SPI_processed > 0)
			return false;
		BanditStateInsertPrior(args[0], scope, cfg);
		ret = SPI_execute_plan(plan_load_skip, args, NULL, false, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "reading icpml.bandit_state failed: %s", SPI_result_code_string(ret));
		if (SPI_processed == 0)
			return false;
	}
	BanditStateFromRow(s, scope, true);
	return true;
}

/* Write a state row (insert or update); takes a new version. */
void
BanditStateStore(BanditState *s)
{
	Oid			argtypes[7] = {TEXTOID, INT4OID, FLOAT8ARRAYOID, FLOAT8ARRAYOID,
	FLOAT8ARRAYOID, INT8OID, INT4OID};
	Datum		args[7];
	int			ret;
	bool		isnull;

	if (plan_store == NULL)
		plan_store = CatalogKeepPlan("INSERT INTO icpml.bandit_state AS s"
									 " (scope, dim, a, b, chol, n, updates_since_refactor, version, updated_at)"
									 " VALUES ($1, $2, $3, $4, $5, $6, $7,"
									 " pg_catalog.nextval('icpml.bandit_state_version_seq'), pg_catalog.now())"
									 " ON CONFLICT (scope) DO UPDATE SET dim = excluded.dim, a = excluded.a,"
									 " b = excluded.b, chol = excluded.chol, n = excluded.n,"
									 " updates_since_refactor = excluded.updates_since_refactor,"
									 " version = excluded.version, updated_at = excluded.updated_at"
									 " RETURNING version", 7, argtypes, 0);
	args[0] = CStringGetTextDatum(s->scope);
	args[1] = Int32GetDatum(s->d);
	args[2] = BanditMakeArray(s->A, s->d, true);
	args[3] = BanditMakeArray(s->b, s->d, false);
	args[4] = BanditMakeArray(s->L, s->d, true);
	args[5] = Int64GetDatum(s->n);
	args[6] = Int32GetDatum(s->updates_since_refactor);
	ret = SPI_execute_plan(plan_store, args, NULL, false, 1);
	if (ret != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "writing icpml.bandit_state failed: %s", SPI_result_code_string(ret));
	s->version = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	s->exists = true;
	s->dirty = false;
}

