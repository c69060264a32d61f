/*
 * predict_standalone.c — the limit for icpml's bulk scoring: the same
 * XGBoost model predicting the same encoded feature matrix, straight
 * through XGBoost's C API in one thread, with no database around it.
 *
 *   predict_standalone MODEL.ubj MATRIX.f32 NCOLS [REPS [OUT.f32]]
 *
 * MODEL.ubj is the model as stored in icpml.models.model (UBJSON or JSON),
 * MATRIX.f32 a row-major little-endian float32 matrix with NCOLS columns
 * (NaN = missing).  Both prediction paths are timed REPS times (default 5)
 * after one warm-up each:
 *
 *   inplace   XGBoosterPredictFromDense on the matrix (no DMatrix)
 *   dmatrix   XGDMatrixCreateFromMat_omp + XGBoosterPredictFromDMatrix
 *             (the DMatrix build is part of the cost)
 *
 * Output, one "key=value ..." line per path and a final "best" line, e.g.
 *   inplace rows=100000 reps=5 median_s=0.0812 rows_per_s=1231527 ...
 *   best path=inplace rows_per_s=1231527
 * OUT.f32, when given, receives the probabilities of the last run (float32),
 * so a caller can check they equal what icpml stored; REPS 0 only predicts
 * once in place and writes OUT.f32 (no timing).
 *
 * Build: gcc -O2 -o predict_standalone predict_standalone.c -lxgboost
 * Run with OMP_NUM_THREADS=1 (nthread is also set to 1 on the booster).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xgboost/c_api.h>

#define MAX_REPS 100

/* Exit with XGBoost's last error when an API call fails. */
#define XGB_CHECK(call) \
	do { \
		if ((call) != 0) \
		{ \
			fprintf(stderr, "predict_standalone: %s: %s\n", #call, XGBGetLastError()); \
			exit(1); \
		} \
	} while (0)

/* Read a whole file into malloc'ed memory; sets *len. */
static char *
read_file(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	char	   *buf;
	long		n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
		fseek(f, 0, SEEK_SET) != 0)
	{
		perror(path);
		exit(1);
	}
	buf = malloc(n > 0 ? (size_t) n : 1);
	if (buf == NULL || (n > 0 && fread(buf, 1, (size_t) n, f) != (size_t) n))
	{
		fprintf(stderr, "predict_standalone: cannot read %s\n", path);
		exit(1);
	}
	fclose(f);
	*len = (size_t) n;
	return buf;
}

/* Monotonic clock in seconds. */
static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* qsort comparator for doubles. */
static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

/* Median of n doubles (sorts them). */
static double
median(double *v, int n)
{
	qsort(v, n, sizeof(double), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One in-place prediction of the whole matrix; returns the output. */
static const float *
predict_inplace(BoosterHandle booster, const float *data, uint64_t nrow, uint64_t ncol)
{
	char		iface[256];
	const char *config = "{\"type\": 0, \"training\": false, \"iteration_begin\": 0, "
		"\"iteration_end\": 0, \"strict_shape\": false, \"missing\": NaN, \"cache_id\": 0}";
	const bst_ulong *shape;
	bst_ulong	dim;
	const float *out;

	snprintf(iface, sizeof(iface),
			 "{\"data\": [%llu, true], \"shape\": [%llu, %llu], \"strides\": null, "
			 "\"typestr\": \"<f4\", \"version\": 3}",
			 (unsigned long long) (uintptr_t) data,
			 (unsigned long long) nrow, (unsigned long long) ncol);
	XGB_CHECK(XGBoosterPredictFromDense(booster, iface, config, NULL, &shape, &dim, &out));
	return out;
}

/* One DMatrix build + prediction of the whole matrix; copies into out. */
static void
predict_dmatrix(BoosterHandle booster, const float *data, uint64_t nrow, uint64_t ncol,
				float *copy)
{
	DMatrixHandle dm;
	const char *config = "{\"type\": 0, \"training\": false, \"iteration_begin\": 0, "
		"\"iteration_end\": 0, \"strict_shape\": false}";
	const bst_ulong *shape;
	bst_ulong	dim;
	const float *out;

	XGB_CHECK(XGDMatrixCreateFromMat_omp(data, nrow, ncol, NAN, &dm, 1));
	XGB_CHECK(XGBoosterPredictFromDMatrix(booster, dm, config, &shape, &dim, &out));
	memcpy(copy, out, nrow * sizeof(float));
	XGB_CHECK(XGDMatrixFree(dm));
}

/* Print one path's timings; returns its median rows/s. */
static double
report(const char *path, double *secs, int reps, uint64_t nrow)
{
	double		sorted[MAX_REPS];
	double		med,
				best;

	memcpy(sorted, secs, reps * sizeof(double));
	med = median(sorted, reps);
	best = sorted[0];
	printf("%s rows=%llu reps=%d median_s=%.6f min_s=%.6f rows_per_s=%.0f us_per_row=%.4f\n",
		   path, (unsigned long long) nrow, reps, med, best, nrow / med, med * 1e6 / nrow);
	return nrow / med;
}

/* Load the model and matrix, time both prediction paths, print rows/s. */
int
main(int argc, char **argv)
{
	size_t		modellen,
				matlen;
	char	   *model;
	float	   *data;
	float	   *preds;
	uint64_t	ncol,
				nrow;
	int			reps = 5;
	BoosterHandle booster;
	double		secs[MAX_REPS];
	double		rps_inplace,
				rps_dmatrix;
	const float *out = NULL;
	int			r;
	bst_ulong	nfeat;

	if (argc < 4 || argc > 6)
	{
		fprintf(stderr, "usage: %s MODEL.ubj MATRIX.f32 NCOLS [REPS [OUT.f32]]\n", argv[0]);
		return 2;
	}
	ncol = strtoull(argv[3], NULL, 10);
	if (argc >= 5)
		reps = atoi(argv[4]);
	if (ncol == 0 || reps < 0 || reps > MAX_REPS)
	{
		fprintf(stderr, "predict_standalone: NCOLS must be > 0 and REPS in 0..%d\n", MAX_REPS);
		return 2;
	}

	model = read_file(argv[1], &modellen);
	data = (float *) read_file(argv[2], &matlen);
	if (matlen % (ncol * sizeof(float)) != 0)
	{
		fprintf(stderr, "predict_standalone: %s holds %zu bytes, not a multiple of %llu float32 columns\n",
				argv[2], matlen, (unsigned long long) ncol);
		return 1;
	}
	nrow = matlen / (ncol * sizeof(float));
	preds = malloc((nrow > 0 ? nrow : 1) * sizeof(float));

	XGB_CHECK(XGBoosterCreate(NULL, 0, &booster));
	XGB_CHECK(XGBoosterLoadModelFromBuffer(booster, model, modellen));
	XGB_CHECK(XGBoosterSetParam(booster, "nthread", "1"));
	XGB_CHECK(XGBoosterGetNumFeature(booster, &nfeat));
	if (nfeat != ncol)
	{
		fprintf(stderr, "predict_standalone: the model has %llu features, the matrix %llu columns\n",
				(unsigned long long) nfeat, (unsigned long long) ncol);
		return 1;
	}
	printf("model bytes=%zu features=%llu matrix rows=%llu cols=%llu\n",
		   modellen, (unsigned long long) nfeat, (unsigned long long) nrow,
		   (unsigned long long) ncol);

	/* REPS 0: predict once, for OUT.f32 only */
	if (reps == 0)
	{
		out = predict_inplace(booster, data, nrow, ncol);
		memcpy(preds, out, nrow * sizeof(float));
		goto write;
	}

	/* in-place prediction: warm-up, then reps */
	predict_inplace(booster, data, nrow, ncol);
	for (r = 0; r < reps; r++)
	{
		double		t0 = now_s();

		out = predict_inplace(booster, data, nrow, ncol);
		secs[r] = now_s() - t0;
	}
	rps_inplace = report("inplace", secs, reps, nrow);

	/* DMatrix prediction: warm-up, then reps */
	predict_dmatrix(booster, data, nrow, ncol, preds);
	for (r = 0; r < reps; r++)
	{
		double		t0 = now_s();

		predict_dmatrix(booster, data, nrow, ncol, preds);
		secs[r] = now_s() - t0;
	}
	rps_dmatrix = report("dmatrix", secs, reps, nrow);

	/* both paths must agree (the in-place output buffer is still valid) */
	{
		double		maxdiff = 0;
		uint64_t	i;

		out = predict_inplace(booster, data, nrow, ncol);
		for (i = 0; i < nrow; i++)
			if (fabs((double) out[i] - preds[i]) > maxdiff)
				maxdiff = fabs((double) out[i] - preds[i]);
		printf("check inplace_vs_dmatrix_max_abs_diff=%.3g\n", maxdiff);
	}

	printf("best path=%s rows_per_s=%.0f\n",
		   rps_inplace >= rps_dmatrix ? "inplace" : "dmatrix",
		   rps_inplace >= rps_dmatrix ? rps_inplace : rps_dmatrix);

write:
	if (argc == 6)
	{
		FILE	   *f = fopen(argv[5], "wb");

		if (f == NULL || fwrite(preds, sizeof(float), nrow, f) != nrow || fclose(f) != 0)
		{
			perror(argv[5]);
			return 1;
		}
	}

	XGB_CHECK(XGBoosterFree(booster));
	free(preds);
	free(data);
	free(model);
	return 0;
}
