/*
 * experiments.c — A/B tests between recommendation policies: the hashed
 * assignment of users to variants (shared by recommend_accounts and
 * experiment_variant()) and the tail probabilities experiment_results()
 * needs (SQL in src/sql/45_experiments.sql).
 *
 * Assignment: FNV-1a (64 bit) over the experiment name, a zero byte and the
 * 16 bytes of the user id, finished with the splitmix64 mixer; the top 53
 * bits give u in [0, 1), and the variant is the first whose cumulative
 * weight share exceeds u.  It depends on nothing but the name, the user and
 * the weights, so it is the same in every backend, on every server and in
 * every release.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/uuid.h"

#include "catalog.h"
#include "experiments.h"
#include "icpml.h"

PG_FUNCTION_INFO_V1(experiment_variant);
PG_FUNCTION_INFO_V1(normal_sf);
PG_FUNCTION_INFO_V1(chi_square_sf);

/*
 * 64-bit hash of (experiment, user): FNV-1a, then the splitmix64 finaliser.
 * salt is the byte between the name and the user: 0 for the split into
 * variants (0.3.0's hash), 1 for the holdout.
 */
static uint64
ExperimentHash(const char *experiment, const pg_uuid_t *user, unsigned char salt)
{
	uint64		h = UINT64CONST(14695981039346656037);
	const unsigned char *p;
	int			i;

	for (p = (const unsigned char *) experiment; *p; p++)
		h = (h ^ *p) * UINT64CONST(1099511628211);
	h = (h ^ salt) * UINT64CONST(1099511628211);
	for (i = 0; i < UUID_LEN; i++)
		h = (h ^ user->data[i]) * UINT64CONST(1099511628211);

	return IcpmlMix64(h);
}

/* A hash's top 53 bits as a number in [0, 1). */
static double
ExperimentUniform(uint64 h)
{
	return (double) (h >> 11) * (1.0 / 9007199254740992.0);
}

/* Assign a user to a variant or the holdout (see experiments.h and the comment above). */
int
ExperimentAssign(const char *experiment, const pg_uuid_t *user, const double *weights, int n,
				 double holdout)
{
	double		u = ExperimentUniform(ExperimentHash(experiment, user, 0));
	double		total = 0.0,
				cum = 0.0;
	int			i;

	/* a second, independent hash: the split of the others is unchanged */
	if (holdout > 0.0 && ExperimentUniform(ExperimentHash(experiment, user, 1)) < holdout)
		return EXPERIMENT_HOLDOUT;

	for (i = 0; i < n; i++)
		total += weights[i];
	for (i = 0; i < n - 1; i++)
	{
		cum += weights[i];
		if (u < cum / total)
			return i;
	}
	return n - 1;
}

/* experiment_variant(experiment text, user_id uuid) → text */
Datum
experiment_variant(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	pg_uuid_t  *user = PG_GETARG_UUID_P(1);
	Oid			argtypes[1] = {TEXTOID};
	Datum		arg = PG_GETARG_DATUM(0);
	CatalogOwnerState owner;
	int			ret,
				nv,
				nw,
				chosen;
	bool		isnull;
	Datum	   *velems,
			   *welems;
	bool	   *vnulls,
			   *wnulls;
	double	   *weights;
	text	   *result;
	int			i;

	SPI_connect();
	CatalogSwitchToOwner(&owner);
	ret = SPI_execute_with_args(get_attnum(CatalogRelid("experiments"), "holdout") != InvalidAttrNumber ?
								"SELECT e.variants, e.weights, e.holdout FROM icpml.experiments AS e"
								" WHERE e.name OPERATOR(pg_catalog.=) $1" :
								"SELECT e.variants, e.weights, 0::pg_catalog.float8 FROM icpml.experiments AS e"
								" WHERE e.name OPERATOR(pg_catalog.=) $1", 1, argtypes, &arg, NULL, true, 1);
	CatalogRestoreUser(&owner);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading icpml.experiments failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("experiment \"%s\" does not exist", name),
				 errhint("SELECT name, status FROM icpml.experiments lists them.")));

	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
													   1, &isnull)),
					  TEXTOID, -1, false, TYPALIGN_INT, &velems, &vnulls, &nv);
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
													   2, &isnull)),
					  FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &welems, &wnulls, &nw);
	if (nv != nw || nv == 0)
		elog(ERROR, "experiment \"%s\" has %d variants and %d weights (please report a bug)",
			 name, nv, nw);
	weights = palloc(sizeof(double) * nw);
	for (i = 0; i < nw; i++)
		weights[i] = DatumGetFloat8(welems[i]);
	chosen = ExperimentAssign(name, user, weights, nw,
							  DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
														   3, &isnull)));

	/* the result outlives SPI_finish: make it in the caller's context */
	if (chosen == EXPERIMENT_HOLDOUT)
	{
		SPI_finish();
		PG_RETURN_TEXT_P(cstring_to_text("holdout"));
	}
	result = (text *) SPI_palloc(VARSIZE_ANY(DatumGetPointer(velems[chosen])));
	memcpy(result, DatumGetPointer(velems[chosen]), VARSIZE_ANY(DatumGetPointer(velems[chosen])));
	SPI_finish();
	PG_RETURN_TEXT_P(result);
}

/* normal_sf(z) = P(Z > z), Z standard normal. */
Datum
normal_sf(PG_FUNCTION_ARGS)
{
	double		z = PG_GETARG_FLOAT8(0);

	if (isnan(z))
		PG_RETURN_FLOAT8(z);
	PG_RETURN_FLOAT8(0.5 * erfc(z / M_SQRT2));
}

/*
 * Regularized upper incomplete gamma Q(a, x) = Γ(a, x) / Γ(a), by its
 * series (x < a + 1) or its continued fraction (modified Lentz), both to
 * relative 1e-15.
 */
static double
ExperimentGammaQ(double a, double x)
{
	double		lead;
	int			n;

	if (x <= 0.0)
		return 1.0;
	if (isinf(x))
		return 0.0;
	lead = exp(a * log(x) - x - lgamma(a));
	if (x < a + 1.0)
	{
		double		term = 1.0 / a,
					sum = term;

		for (n = 1; n < 10000; n++)
		{
			term *= x / (a + n);
			sum += term;
			if (fabs(term) < fabs(sum) * 1e-15)
				break;
		}
		return Max(0.0, 1.0 - sum * lead);
	}
	else
	{
		double		tiny = 1e-300;
		double		b = x + 1.0 - a,
					c = 1.0 / tiny,
					d = 1.0 / b,
					f = d;

		for (n = 1; n < 10000; n++)
		{
			double		an = -n * (n - a),
						delta;

			b += 2.0;
			d = an * d + b;
			if (fabs(d) < tiny)
				d = tiny;
			c = b + an / c;
			if (fabs(c) < tiny)
				c = tiny;
			d = 1.0 / d;
			delta = d * c;
			f *= delta;
			if (fabs(delta - 1.0) < 1e-15)
				break;
		}
		return Min(1.0, f * lead);
	}
}

/* chi_square_sf(x, df) = P(X > x), X chi-square with df degrees of freedom. */
Datum
chi_square_sf(PG_FUNCTION_ARGS)
{
	double		x = PG_GETARG_FLOAT8(0);
	int32		df = PG_GETARG_INT32(1);

	if (df < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("degrees of freedom must be at least 1, not %d", df)));
	if (isnan(x))
		PG_RETURN_FLOAT8(x);
	PG_RETURN_FLOAT8(ExperimentGammaQ(df / 2.0, x / 2.0));
}
