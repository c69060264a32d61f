/*
 * tree_verify.c — checking the native evaluator (tree.c) against XGBoost,
 * and timing it.
 *
 *   TreeVerify            margins (type 1), probabilities (type 0) and
 *                         Saabas contributions (type 3) of both paths on a
 *                         matrix, and XGBoost's exact SHAP values (type 2)
 *                         summing to the margin; reports the largest
 *                         differences
 *   TreeModelProbeRows    rows built from a model's own splits (values at
 *                         and around every threshold, categories inside,
 *                         outside and beyond every set, NaN) that exercise
 *                         every branch rule
 *   verify_tree_evaluator a booster trained in-process on synthetic data
 *                         (TreeSynth), checked on its rows and probe rows
 *   verify_tree_model     a saved booster on probe rows
 *   benchmark_tree_evaluator  native vs XGBoost's single-row and batch
 *                         predict, inside this backend (figures, not tests)
 *
 * Nothing here reads stored models: the model store's gate
 * (ModelStoreValidate) and verify_model (model_store.c) call TreeVerify and
 * TreeModelProbeRows on the versions they load.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>
#include <time.h>

#include "common/pg_prng.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/memutils.h"

#include "icpml.h"
#include "tree.h"
#include "xgb.h"

PG_FUNCTION_INFO_V1(verify_tree_evaluator);
PG_FUNCTION_INFO_V1(verify_tree_model);
PG_FUNCTION_INFO_V1(benchmark_tree_evaluator);

/* A standard normal draw (Box-Muller). */
static double
TreeGaussian(pg_prng_state *rng)
{
	double		u = pg_prng_double(rng),
				v = pg_prng_double(rng);

	return sqrt(-2.0 * log(1.0 - u)) * cos(2.0 * M_PI * v);
}

float *
TreeModelProbeRows(const TreeModel *m, int64 nrow, uint64 seed)
{
	int			nf = m->nfeatures;
	int		   *nthr = palloc0(sizeof(int) * nf);
	int		   *catwords = palloc0(sizeof(int) * nf);
	bool	   *iscat = palloc0(sizeof(bool) * nf);
	float	  **thr = palloc0(sizeof(float *) * nf);
	float	   *lo = palloc(sizeof(float) * nf);
	float	   *hi = palloc(sizeof(float) * nf);
	int		   *fill = palloc0(sizeof(int) * nf);
	float	   *X;
	pg_prng_state rng;
	int64		r;
	int			i,
				f;

	if (nrow < 0 || nrow > (int64) (MaxAllocSize / sizeof(float)) / Max(nf, 1))
		elog(ERROR, "too many probing rows requested");
	/* thresholds per numeric feature, bitset sizes per categorical one */
	for (i = 0; i < m->nnodes; i++)
	{
		const TreeNode *n = &m->nodes[i];

		int			f = TreeNodeFeature(n);

		if (TreeNodeIsLeaf(n))
			continue;
		if (n->info & TREE_CATEGORICAL)
		{
			iscat[f] = true;
			catwords[f] = Max(catwords[f], (int) m->catbits[n->info >> TREE_INFO_SHIFT]);
		}
		else
			nthr[f]++;
	}
	for (f = 0; f < nf; f++)
	{
		thr[f] = palloc(sizeof(float) * Max(nthr[f], 1));
		lo[f] = FLT_MAX;
		hi[f] = -FLT_MAX;
	}
	for (i = 0; i < m->nnodes; i++)
	{
		const TreeNode *n = &m->nodes[i];
		int			f = TreeNodeFeature(n);

		if (TreeNodeIsLeaf(n) || (n->info & TREE_CATEGORICAL))
			continue;
		thr[f][fill[f]++] = n->value;
		lo[f] = Min(lo[f], n->value);
		hi[f] = Max(hi[f], n->value);
	}

	pg_prng_seed(&rng, seed);
	X = palloc(sizeof(float) * Max(nrow * nf, 1));
	for (r = 0; r < nrow; r++)
	{
		for (f = 0; f < nf; f++)
		{
			double		u = pg_prng_double(&rng);
			float		v;

			if (u < 0.12)
				v = get_float4_nan();
			else if (iscat[f] && (nthr[f] == 0 || u < 0.56))
			{
				/* categories in and out of the sets, beyond them, invalid */
				double		w = pg_prng_double(&rng);
				uint64		span = (uint64) catwords[f] * 32 + 4;

				if (w < 0.70)
					v = (float) pg_prng_uint64_range(&rng, 0, span);
				else if (w < 0.80)
					v = (float) pg_prng_uint64_range(&rng, 0, span) + 0.5f;
				else if (w < 0.90)
					v = (w < 0.85) ? -1.0f : -0.5f;
				else
				{
					static const float huge[] = {16777215.0f, 16777216.0f, 3e7f, 1e9f};

					v = huge[pg_prng_uint64_range(&rng, 0, 3)];
				}
			}
			else if (nthr[f] > 0)
			{
				/* at, just below, just above and around a threshold */
				float		t = thr[f][pg_prng_uint64_range(&rng, 0, nthr[f] - 1)];
				double		w = pg_prng_double(&rng);
				double		scale = (hi[f] - lo[f]) / 4.0 + fabs(t) * 0.1 + 1e-3;

				if (w < 0.30)
					v = t;
				else if (w < 0.50)
					v = nextafterf(t, -INFINITY);
				else if (w < 0.60)
					v = nextafterf(t, INFINITY);
				else
					v = (float) (t + TreeGaussian(&rng) * scale);
			}
			else
				v = (float) TreeGaussian(&rng);
			X[r * nf + f] = v;
		}
	}
	return X;
}

/* |a - b|, 0 when both are NaN, infinite when only one is. */
static double
TreeDiff(double a, double b)
{
	if (isnan(a) || isnan(b))
		return (isnan(a) && isnan(b)) ? 0.0 : get_float8_infinity();
	if (a == b)
		return 0.0;
	return fabs(a - b);
}

void
TreeVerify(XgbBooster *b, const TreeModel *t, const float *X, int64 nrow, int ncol,
		   int64 shap_rows, TreeVerifyResult *res)
{
	MemoryContext tmpcxt;
	MemoryContext oldcxt;
	float	   *margin,
			   *prob,
			   *approx;
	double	   *contrib;
	uint64		len;
	int64		r;
	int			c;

	if (ncol != t->nfeatures)
		elog(ERROR, "verification matrix has %d columns, the model %d (please report a bug)",
			 ncol, t->nfeatures);
	memset(res, 0, sizeof(*res));
	res->n_rows = nrow;
	res->n_trees = t->ntrees;
	for (r = 0; r < t->nnodes; r++)
		if (t->nodes[r].info & TREE_CATEGORICAL)
			res->n_categorical_splits++;
	res->max_shap_sum_diff = get_float8_nan();
	if (nrow <= 0)
		return;

	tmpcxt = AllocSetContextCreate(CurrentMemoryContext, "icpml tree verify",
								   ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(tmpcxt);

	margin = XgbBoosterPredictDense(b, X, nrow, ncol, XGB_PREDICT_MARGIN, &len);
	if (len != (uint64) nrow)
		elog(ERROR, "XGBoost returned %llu margins for %lld rows", (unsigned long long) len,
			 (long long) nrow);
	prob = XgbBoosterPredictDense(b, X, nrow, ncol, XGB_PREDICT_VALUE, &len);
	if (len != (uint64) nrow)
		elog(ERROR, "XGBoost returned %llu predictions for %lld rows", (unsigned long long) len,
			 (long long) nrow);
	approx = XgbBoosterPredictDense(b, X, nrow, ncol, XGB_PREDICT_APPROX_CONTRIBS, &len);
	if (len != (uint64) nrow * (ncol + 1))
		elog(ERROR, "XGBoost returned %llu contributions for %lld x %d", (unsigned long long) len,
			 (long long) nrow, ncol + 1);

	contrib = palloc(sizeof(double) * (ncol + 1));
	for (r = 0; r < nrow; r++)
	{
		const float *row = X + r * ncol;
		double		mg = TreeModelMargin(t, row);
		double		ms = TreeModelSaabas(t, row, contrib);

		if ((r & 1023) == 0)
			CHECK_FOR_INTERRUPTS();
		res->max_margin_diff = Max(res->max_margin_diff, TreeDiff(mg, margin[r]));
		res->max_margin_diff = Max(res->max_margin_diff, TreeDiff(ms, margin[r]));
		res->max_probability_diff = Max(res->max_probability_diff,
										TreeDiff(TreeModelProbability(mg), prob[r]));
		for (c = 0; c <= ncol; c++)
			res->max_contrib_diff = Max(res->max_contrib_diff,
										TreeDiff(contrib[c], approx[r * (ncol + 1) + c]));
	}

	if (shap_rows > 0)
	{
		int64		k = Min(shap_rows, nrow);
		float	   *shap = XgbBoosterPredictDense(b, X, k, ncol, XGB_PREDICT_CONTRIBS, &len);

		if (len != (uint64) k * (ncol + 1))
			elog(ERROR, "XGBoost returned %llu SHAP values for %lld x %d",
				 (unsigned long long) len, (long long) k, ncol + 1);
		res->max_shap_sum_diff = 0.0;
		res->n_shap_rows = k;
		for (r = 0; r < k; r++)
		{
			double		sum = 0.0;

			for (c = 0; c <= ncol; c++)
				sum += shap[r * (ncol + 1) + c];
			res->max_shap_sum_diff = Max(res->max_shap_sum_diff, TreeDiff(sum, margin[r]));
		}
	}

	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(tmpcxt);
}

void
TreeVerifyMatrix(XgbBooster *b, TreeModel *t, const float *X, int64 nrow, int ncol,
				 double *max_margin_diff, double *max_contrib_diff)
{
	TreeVerifyResult res;

	TreeVerify(b, t, X, nrow, ncol, 0, &res);
	*max_margin_diff = res.max_margin_diff;
	*max_contrib_diff = Max(res.max_contrib_diff, 0.0);
}

/* ---------------------------------------------------------------------
 * Synthetic training data (verification and benchmark)
 * --------------------------------------------------------------------- */

typedef struct TreeSynth
{
	int			nrow;
	int			ncol;
	float	   *X;
	float	   *y;
	const char **types;
	int		   *nlevels;		/* 0 for numeric columns */
} TreeSynth;

/*
 * rows x features: numeric columns (some integer-valued, to make ties at
 * thresholds), every third column categorical with 3..40 levels when asked,
 * ~20% missing; labels drawn from a nonlinear logit with interactions and
 * category effects.
 */
static void
TreeSynthMake(TreeSynth *d, int nrow, int ncol, bool categorical, uint64 seed)
{
	pg_prng_state rng;
	int64		r;
	int			j;

	d->nrow = nrow;
	d->ncol = ncol;
	d->X = palloc(sizeof(float) * (int64) nrow * ncol);
	d->y = palloc(sizeof(float) * nrow);
	d->types = palloc(sizeof(char *) * ncol);
	d->nlevels = palloc0(sizeof(int) * ncol);
	for (j = 0; j < ncol; j++)
	{
		if (categorical && j % 3 == 2)
		{
			d->types[j] = "c";
			d->nlevels[j] = 3 + (j * 7) % 38;
		}
		else
			d->types[j] = "q";
	}

	pg_prng_seed(&rng, seed);
	for (r = 0; r < nrow; r++)
	{
		float	   *row = d->X + r * ncol;
		double		z = -0.2;

		for (j = 0; j < ncol; j++)
		{
			double		v;

			if (d->nlevels[j] > 0)
				v = (double) pg_prng_uint64_range(&rng, 0, d->nlevels[j] - 1);
			else
			{
				v = TreeGaussian(&rng) * (1.0 + j % 5);
				if (j % 4 == 1)
					v = floor(v * 2.0);
			}
			row[j] = (pg_prng_double(&rng) < 0.2) ? get_float4_nan() : (float) v;
		}
		for (j = 0; j < ncol; j++)
		{
			double		v = row[j];

			if (isnan(v))
				continue;
			if (d->nlevels[j] > 0)
			{
				/* a scattered half of the levels help */
				uint32		h = (uint32) ((int) v * 2654435761u + j * 40503u);

				z += ((h >> 7) & 1) ? 0.9 : -0.7;
			}
			else if (j == 0)
				z += 1.5 * sin(2.0 * v);
			else if (j == 1 && !isnan(row[0]))
				z += 0.4 * v * (row[0] > 0 ? 1.0 : -1.0);
			else
				z += ((j % 2) ? 0.6 : -0.5) * tanh(v / (1.0 + j % 5));
		}
		z += 0.5 * TreeGaussian(&rng);
		d->y[r] = (pg_prng_double(&rng) < 1.0 / (1.0 + exp(-z))) ? 1.0f : 0.0f;
	}
}

/* Train a binary:logistic booster on synthetic data, one round at a time. */
static XgbBooster *
TreeSynthTrain(TreeSynth *d, int rounds, int max_depth, bool categorical, int seed)
{
	XgbMatrix  *dtrain = XgbMatrixFromDense(d->X, d->nrow, d->ncol, get_float4_nan());
	XgbBooster *b;
	char		buf[32];
	int			i;

	XgbMatrixSetLabels(dtrain, d->y, d->nrow);
	if (categorical)
		XgbMatrixSetFeatureTypes(dtrain, d->types, d->ncol);
	b = XgbBoosterCreate(&dtrain, 1);
	XgbBoosterSetParam(b, "objective", "binary:logistic");
	XgbBoosterSetParam(b, "tree_method", "hist");
	XgbBoosterSetParam(b, "eta", "0.3");
	snprintf(buf, sizeof(buf), "%d", max_depth);
	XgbBoosterSetParam(b, "max_depth", buf);
	/* partition-based categorical splits, never one-hot */
	XgbBoosterSetParam(b, "max_cat_to_onehot", "1");
	snprintf(buf, sizeof(buf), "%d", icpml_nthread);
	XgbBoosterSetParam(b, "nthread", buf);
	snprintf(buf, sizeof(buf), "%d", seed);
	XgbBoosterSetParam(b, "seed", buf);
	for (i = 0; i < rounds; i++)
	{
		CHECK_FOR_INTERRUPTS();
		XgbBoosterUpdateOneIter(b, i, dtrain);
	}
	return b;
}

/* Reject out-of-range arguments of the SQL functions. */
static void
TreeCheckArg(const char *name, int64 value, int64 lo, int64 hi)
{
	if (value < lo || value > hi)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between %lld and %lld", name, (long long) lo, (long long) hi)));
}

/* Emit one verification row. */
static void
TreeVerifyEmit(FunctionCallInfo fcinfo, const TreeVerifyResult *res)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[7];
	bool		nulls[7] = {false, false, false, false, false, false, false};

	values[0] = Int64GetDatum(res->n_rows);
	values[1] = Int32GetDatum(res->n_trees);
	values[2] = Int32GetDatum(res->n_categorical_splits);
	values[3] = Float8GetDatum(res->max_margin_diff);
	values[4] = Float8GetDatum(res->max_contrib_diff);
	values[5] = Float8GetDatum(res->max_probability_diff);
	values[6] = Float8GetDatum(res->max_shap_sum_diff);
	nulls[6] = isnan(res->max_shap_sum_diff);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* Rows checked against XGBoost's exact SHAP (slow: about 0.5 ms a row). */
#define TREE_VERIFY_SHAP_ROWS 300

/*
 * icpml.verify_tree_evaluator(rows, features, rounds, max_depth,
 * categorical, seed): train a booster in-process on synthetic data and
 * compare the native evaluator with XGBoost on the training rows plus as
 * many probing rows.
 */
Datum
verify_tree_evaluator(PG_FUNCTION_ARGS)
{
	int32		rows = PG_GETARG_INT32(0);
	int32		features = PG_GETARG_INT32(1);
	int32		rounds = PG_GETARG_INT32(2);
	int32		max_depth = PG_GETARG_INT32(3);
	bool		categorical = PG_GETARG_BOOL(4);
	int32		seed = PG_GETARG_INT32(5);
	TreeSynth	d;
	XgbBooster *b;
	TreeModel  *t;
	float	   *probe,
			   *X;
	TreeVerifyResult res;

	TreeCheckArg("rows", rows, 10, 1000000);
	TreeCheckArg("features", features, 1, 1000);
	TreeCheckArg("rounds", rounds, 1, 5000);
	TreeCheckArg("max_depth", max_depth, 1, 20);
	TreeCheckArg("rows * features", (int64) rows * features, 1, 20000000);
	InitMaterializedSRF(fcinfo, 0);

	TreeSynthMake(&d, rows, features, categorical, (uint64) seed);
	b = TreeSynthTrain(&d, rounds, max_depth, categorical, seed);
	t = TreeModelFromBooster(b, features);

	probe = TreeModelProbeRows(t, rows, (uint64) seed + 7919);
	X = palloc(sizeof(float) * (int64) 2 * rows * features);
	memcpy(X, d.X, sizeof(float) * (int64) rows * features);
	memcpy(X + (int64) rows * features, probe, sizeof(float) * (int64) rows * features);
	TreeVerify(b, t, X, (int64) 2 * rows, features, TREE_VERIFY_SHAP_ROWS, &res);
	TreeVerifyEmit(fcinfo, &res);
	XgbBoosterFree(b);
	return (Datum) 0;
}

/*
 * icpml.verify_tree_model(model, rows, seed): compare the native evaluator
 * with XGBoost on a saved booster (UBJSON or JSON), over rows probing the
 * model's own thresholds and category sets.
 */
Datum
verify_tree_model(PG_FUNCTION_ARGS)
{
	bytea	   *blob = PG_GETARG_BYTEA_PP(0);
	int32		rows = PG_GETARG_INT32(1);
	int32		seed = PG_GETARG_INT32(2);
	XgbBooster *b;
	TreeModel  *t;
	float	   *X;
	TreeVerifyResult res;
	char		buf[32];

	TreeCheckArg("rows", rows, 1, 1000000);
	InitMaterializedSRF(fcinfo, 0);

	b = XgbBoosterLoad(VARDATA_ANY(blob), VARSIZE_ANY_EXHDR(blob));
	snprintf(buf, sizeof(buf), "%d", icpml_nthread);
	XgbBoosterSetParam(b, "nthread", buf);
	t = TreeModelFromBooster(b, 0);
	X = TreeModelProbeRows(t, rows, (uint64) seed);
	TreeVerify(b, t, X, rows, t->nfeatures, TREE_VERIFY_SHAP_ROWS, &res);
	TreeVerifyEmit(fcinfo, &res);
	XgbBoosterFree(b);
	return (Datum) 0;
}

/* Wall-clock and CPU time of this thread, for the benchmark. */
typedef struct TreeClock
{
	instr_time	wall;
	struct timespec cpu;
} TreeClock;

/* Start a measurement. */
static void
TreeClockStart(TreeClock *c)
{
	INSTR_TIME_SET_CURRENT(c->wall);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c->cpu);
}

/* Emit one benchmark row: per-row wall and CPU nanoseconds since start. */
static void
TreeBenchEmit(FunctionCallInfo fcinfo, const char *method, int64 calls, TreeClock *start,
			  int64 rows_per_call)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	instr_time	wall;
	struct timespec cpu;
	double		n = (double) calls * rows_per_call;

	INSTR_TIME_SET_CURRENT(wall);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);
	INSTR_TIME_SUBTRACT(wall, start->wall);
	values[0] = CStringGetTextDatum(method);
	values[1] = Int64GetDatum(calls);
	values[2] = Float8GetDatum(INSTR_TIME_GET_DOUBLE(wall) * 1e9 / n);
	values[3] = Float8GetDatum(((cpu.tv_sec - start->cpu.tv_sec) * 1e9 +
								(cpu.tv_nsec - start->cpu.tv_nsec)) / n);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * icpml.benchmark_tree_evaluator(rounds, max_depth, features, calls,
 * categorical, seed): nanoseconds per row of the native evaluator against
 * XGBoost's single-row and batch predict, inside this backend.
 */
Datum
benchmark_tree_evaluator(PG_FUNCTION_ARGS)
{
	int32		rounds = PG_GETARG_INT32(0);
	int32		max_depth = PG_GETARG_INT32(1);
	int32		features = PG_GETARG_INT32(2);
	int32		calls = PG_GETARG_INT32(3);
	bool		categorical = PG_GETARG_BOOL(4);
	int32		seed = PG_GETARG_INT32(5);
	const int	nrow = 10000;
	TreeSynth	d;
	XgbBooster *b;
	TreeModel  *t = NULL;
	double	   *contrib;
	MemoryContext callcxt,
				oldcxt;
	TreeClock	start;
	volatile double sink = 0.0;
	int64		i,
				n;
	uint64		len;

	TreeCheckArg("rounds", rounds, 1, 5000);
	TreeCheckArg("max_depth", max_depth, 1, 20);
	TreeCheckArg("features", features, 1, 1000);
	TreeCheckArg("calls", calls, 100, 100000000);
	InitMaterializedSRF(fcinfo, 0);

	TreeSynthMake(&d, nrow, features, categorical, (uint64) seed);
	b = TreeSynthTrain(&d, rounds, max_depth, categorical, seed);
	callcxt = AllocSetContextCreate(CurrentMemoryContext, "icpml tree bench",
									ALLOCSET_DEFAULT_SIZES);

	/* compile: save as JSON, parse, lay out */
	n = 20;
	TreeClockStart(&start);
	for (i = 0; i < n; i++)
	{
		oldcxt = MemoryContextSwitchTo(callcxt);
		t = TreeModelFromBooster(b, features);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(callcxt);
	}
	TreeBenchEmit(fcinfo, "native compile (save JSON, parse, lay out), per model", n,
				  &start, 1);
	t = TreeModelFromBooster(b, features);
	contrib = palloc(sizeof(double) * (features + 1));

	TreeClockStart(&start);
	for (i = 0; i < calls; i++)
		sink += TreeModelMargin(t, d.X + (i % nrow) * features);
	TreeBenchEmit(fcinfo, "native margin, one row", calls, &start, 1);
	CHECK_FOR_INTERRUPTS();

	TreeClockStart(&start);
	for (i = 0; i < calls; i++)
		sink += TreeModelSaabas(t, d.X + (i % nrow) * features, contrib);
	TreeBenchEmit(fcinfo, "native margin + Saabas contributions, one row", calls,
				  &start, 1);
	CHECK_FOR_INTERRUPTS();

	/* XGBoost's own predictor costs tens of microseconds a call: fewer calls */
	{
		static const struct
		{
			int			kind;
			const char *name;
			int			divisor;
		}			kinds[] = {
			{XGB_PREDICT_MARGIN, "xgboost margin, one row per call", 20},
			{XGB_PREDICT_APPROX_CONTRIBS, "xgboost approx contributions, one row per call", 20},
			{XGB_PREDICT_CONTRIBS, "xgboost exact SHAP, one row per call", 200},
		};
		int			k;

		for (k = 0; k < lengthof(kinds); k++)
		{
			n = Max(calls / kinds[k].divisor, 50);
			TreeClockStart(&start);
			for (i = 0; i < n; i++)
			{
				float	   *out;

				oldcxt = MemoryContextSwitchTo(callcxt);
				out = XgbBoosterPredictDense(b, d.X + (i % nrow) * features, 1, features,
											 kinds[k].kind, &len);
				sink += out[0];
				MemoryContextSwitchTo(oldcxt);
				MemoryContextReset(callcxt);
				CHECK_FOR_INTERRUPTS();
			}
			TreeBenchEmit(fcinfo, kinds[k].name, n, &start, 1);
		}
	}

	/* batch: the whole matrix in one call, per row */
	n = 5;
	TreeClockStart(&start);
	for (i = 0; i < n; i++)
	{
		float	   *out;

		oldcxt = MemoryContextSwitchTo(callcxt);
		out = XgbBoosterPredictDense(b, d.X, nrow, features, XGB_PREDICT_MARGIN, &len);
		sink += out[0];
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(callcxt);
		CHECK_FOR_INTERRUPTS();
	}
	TreeBenchEmit(fcinfo, "xgboost margin, 10000 rows per call", n,
				  &start, nrow);

	TreeClockStart(&start);
	for (i = 0; i < n; i++)
	{
		int64		r;

		for (r = 0; r < nrow; r++)
			sink += TreeModelMargin(t, d.X + r * features);
	}
	TreeBenchEmit(fcinfo, "native margin, 10000 rows in a loop", n,
				  &start, nrow);

	(void) sink;
	XgbBoosterFree(b);
	return (Datum) 0;
}
