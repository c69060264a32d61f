/*
 * train_cv.c — cross-validation: the stratified shuffled k-fold assignment
 * (shared with icpml.cv_folds(), so a caller can see the folds a training
 * used), boosting one round at a time, out-of-fold (OOF) predictions and
 * metrics per fold, and the search over parameter settings.
 *
 * Randomness is a splitmix64 stream seeded from the training's seed (never
 * random()), so runs are reproducible.  Each fold's booster and matrices
 * live in a per-fold memory context whose reset callbacks free them.
 */
#include "postgres.h"

#include <math.h>

#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "icpml.h"
#include "train.h"

PG_FUNCTION_INFO_V1(cv_folds);

/* Next value of a splitmix64 stream. */
static inline uint64
TrainSplitmix64(uint64 *state)
{
	return IcpmlMix64(*state += UINT64CONST(0x9E3779B97F4A7C15));
}

/* Fisher-Yates shuffle of n int64 with the stream. */
static void
TrainShuffle(int64 *a, int64 n, uint64 *state)
{
	int64		i;

	for (i = n - 1; i > 0; i--)
	{
		int64		j = (int64) (TrainSplitmix64(state) % (uint64) (i + 1));
		int64		t = a[i];

		a[i] = a[j];
		a[j] = t;
	}
}

/* Stratified shuffled k-fold over the keys (see train.h). */
void
TrainAssignFolds(const int64 *keys, const float *labels, int64 n, int k, int32 seed, int *fold)
{
	int64	   *first = palloc_extended(sizeof(int64) * Max(n, 1), MCXT_ALLOC_HUGE);
	int64	   *pos = palloc_extended(sizeof(int64) * Max(n, 1), MCXT_ALLOC_HUGE);
	int64	   *neg = palloc_extended(sizeof(int64) * Max(n, 1), MCXT_ALLOC_HUGE);
	int		   *keyfold = palloc_extended(sizeof(int) * Max(n, 1), MCXT_ALLOC_HUGE);
	int64		nk = 0,
				np = 0,
				nn = 0,
				i,
				j,
				counter = 0;
	uint64		state = (uint64) (uint32) seed ^ UINT64CONST(0x6963706d6c000000);

	/* keys: runs of equal keys; a key is positive when any row is */
	for (i = 0; i < n; i = j)
	{
		bool		positive = false;

		for (j = i; j < n && keys[j] == keys[i]; j++)
			positive |= labels[j] > 0.5f;
		first[nk] = i;
		if (positive)
			pos[np++] = nk;
		else
			neg[nn++] = nk;
		nk++;
	}
	TrainShuffle(pos, np, &state);
	TrainShuffle(neg, nn, &state);
	for (i = 0; i < np; i++)
		keyfold[pos[i]] = (int) (counter++ % k);
	for (i = 0; i < nn; i++)
		keyfold[neg[i]] = (int) (counter++ % k);
	for (i = 0; i < nk; i++)
	{
		int64		end = i + 1 < nk ? first[i + 1] : n;

		for (j = first[i]; j < end; j++)
			fold[j] = keyfold[i];
	}
	pfree(first);
	pfree(pos);
	pfree(neg);
	pfree(keyfold);
}

/* A DMatrix of rows (all when `rows` is NULL) with labels and feature types. */
XgbMatrix *
TrainMatrix(const TrainData *d, const int64 *rows, int64 nrows)
{
	XgbMatrix  *m;

	if (rows == NULL)
	{
		m = XgbMatrixFromDense(d->x, d->n, d->nfeat, NAN);
		XgbMatrixSetLabels(m, d->label, d->n);
	}
	else
	{
		float	   *x = palloc_extended(sizeof(float) * Max(nrows * d->nfeat, 1), MCXT_ALLOC_HUGE);
		float	   *y = palloc_extended(sizeof(float) * Max(nrows, 1), MCXT_ALLOC_HUGE);
		int64		i;

		for (i = 0; i < nrows; i++)
		{
			memcpy(x + i * d->nfeat, d->x + rows[i] * d->nfeat, sizeof(float) * d->nfeat);
			y[i] = d->label[rows[i]];
		}
		m = XgbMatrixFromDense(x, nrows, d->nfeat, NAN);
		XgbMatrixSetLabels(m, y, nrows);
		pfree(x);
		pfree(y);
	}
	XgbMatrixSetFeatureTypes(m, d->spec->feature_types, d->nfeat);
	return m;
}

/* Train n_rounds on dtrain, one round at a time (see train.h). */
XgbBooster *
TrainBoost(XgbMatrix *dtrain, const TrainParams *p, int n_rounds, int32 seed)
{
	XgbBooster *b = XgbBoosterCreate(&dtrain, 1);
	int			it;

	TrainSetParams(b, p, seed);
	for (it = 0; it < n_rounds; it++)
	{
		/* boosting can run for minutes: honour cancel between rounds */
		CHECK_FOR_INTERRUPTS();
		XgbBoosterUpdateOneIter(b, it, dtrain);
	}
	return b;
}

/* Metrics of the rows of one fold. */
void
TrainFoldMetrics(const TrainData *d, const double *prob, int f, MetricSet *out)
{
	int64		nf = 0,
				i;
	float	   *y = palloc_extended(sizeof(float) * Max(d->n, 1), MCXT_ALLOC_HUGE);
	double	   *p = palloc_extended(sizeof(double) * Max(d->n, 1), MCXT_ALLOC_HUGE);

	for (i = 0; i < d->n; i++)
		if (d->fold[i] == f)
		{
			y[nf] = d->label[i];
			p[nf] = prob[i];
			nf++;
		}
	MetricsCompute(y, p, nf, out);
	pfree(y);
	pfree(p);
}

/* Mean of per-fold metrics. */
void
TrainMeanMetrics(const MetricSet *per_fold, int k, MetricSet *mean)
{
	int			f;

	memset(mean, 0, sizeof(*mean));
	for (f = 0; f < k; f++)
	{
		mean->roc_auc += per_fold[f].roc_auc / k;
		mean->pr_auc += per_fold[f].pr_auc / k;
		mean->log_loss += per_fold[f].log_loss / k;
		mean->brier += per_fold[f].brier / k;
		mean->precision_at_10 += per_fold[f].precision_at_10 / k;
		mean->lift_at_10 += per_fold[f].lift_at_10 / k;
	}
}

/* Cross-validate a recipe on d's folds: OOF predictions and fold metrics (see train.h). */
void
TrainCrossValidateRecipe(const TrainData *d, int folds, int n_rounds, int32 seed, TrainCv *cv,
						 MemoryContext cxt)
{
	int			f;
	int64	   *tr = MemoryContextAllocExtended(cxt, sizeof(int64) * Max(d->n, 1), MCXT_ALLOC_HUGE);
	int64	   *te = MemoryContextAllocExtended(cxt, sizeof(int64) * Max(d->n, 1), MCXT_ALLOC_HUGE);

	cv->oof = MemoryContextAllocExtended(cxt, sizeof(double) * Max(d->n, 1), MCXT_ALLOC_HUGE);
	cv->per_fold = MemoryContextAlloc(cxt, sizeof(MetricSet) * folds);
	for (f = 0; f < folds; f++)
	{
		MemoryContext foldcxt = AllocSetContextCreate(cxt, "icpml training fold",
													  ALLOCSET_DEFAULT_SIZES);
		MemoryContext oldcxt = MemoryContextSwitchTo(foldcxt);
		int64		ntr = 0,
					nte = 0,
					i;
		XgbMatrix  *dtr,
				   *dte;
		XgbBooster *b;
		float	   *pred;
		uint64		len;

		for (i = 0; i < d->n; i++)
		{
			if (d->fold[i] == f)
				te[nte++] = i;
			else
				tr[ntr++] = i;
		}
		dtr = TrainMatrix(d, tr, ntr);
		b = TrainBoost(dtr, &cv->params, n_rounds, seed);
		dte = TrainMatrix(d, te, nte);
		pred = XgbBoosterPredict(b, dte, XGB_PREDICT_VALUE, &len);
		if (len != (uint64) nte)
			elog(ERROR, "XGBoost returned " UINT64_FORMAT " predictions for " INT64_FORMAT " rows (please report a bug)",
				 len, nte);
		for (i = 0; i < nte; i++)
			cv->oof[te[i]] = pred[i];
		MemoryContextSwitchTo(oldcxt);
		/* frees the booster and both matrices (reset callbacks) */
		MemoryContextDelete(foldcxt);
		TrainFoldMetrics(d, cv->oof, f, &cv->per_fold[f]);
	}
	TrainMeanMetrics(cv->per_fold, folds, &cv->mean);
	pfree(tr);
	pfree(te);
}

/* Cross-validate one parameter setting of the training's arguments. */
static void
TrainCrossValidate(const TrainArgs *a, const TrainData *d, TrainCv *cv, MemoryContext cxt)
{
	TrainCrossValidateRecipe(d, a->folds, a->n_rounds, a->seed, cv, cxt);
}

/* Cross-validate every setting of the search; returns the best (see train.h). */
int
TrainSearch(const TrainArgs *a, const TrainData *d, MemoryContext cxt, TrainCv **cvsp, int *ncvp)
{
	int			ncv = TrainSearchSize(a);
	TrainCv    *cvs = MemoryContextAllocZero(cxt, sizeof(TrainCv) * ncv);
	int			best = 0,
				i;

	for (i = 0; i < ncv; i++)
	{
		TrainSearchSetting(a, i, &cvs[i].params);
		TrainCrossValidate(a, d, &cvs[i], cxt);
		/* keep only the best setting's OOF predictions */
		if (i > 0 && cvs[i].mean.roc_auc > cvs[best].mean.roc_auc)
		{
			pfree(cvs[best].oof);
			cvs[best].oof = NULL;
			best = i;
		}
		else if (i != best)
		{
			pfree(cvs[i].oof);
			cvs[i].oof = NULL;
		}
	}
	*cvsp = cvs;
	*ncvp = ncv;
	return best;
}

/*
 * icpml.cv_folds(relation, key_column, label_column, folds, seed) →
 * (key, fold 1..k) per distinct labelled key: the fold assignment
 * train_icp_model uses with the same arguments.
 */
Datum
cv_folds(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TrainArgs	a;
	TrainData  *d;
	MemoryContext cxt,
				oldcxt;
	int64		i;
	int			guclevel;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	cxt = AllocSetContextCreate(CurrentMemoryContext, "icpml cv_folds", ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(cxt);
	TrainParseArgs(fcinfo, &a, false);

	SPI_connect();
	guclevel = TrainReadSettings();
	d = TrainReadData(&a, NULL, false, cxt);
	AtEOXact_GUC(true, guclevel);
	SPI_finish();

	MemoryContextSwitchTo(cxt);
	d->fold = palloc_extended(sizeof(int) * Max(d->n, 1), MCXT_ALLOC_HUGE);
	TrainAssignFolds(d->keys, d->label, d->n, a.folds, a.seed, d->fold);
	MemoryContextSwitchTo(oldcxt);
	for (i = 0; i < d->n; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		if (i > 0 && d->keys[i] == d->keys[i - 1])
			continue;
		values[0] = Int64GetDatum(d->keys[i]);
		values[1] = Int32GetDatum(d->fold[i] + 1);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	MemoryContextDelete(cxt);
	return (Datum) 0;
}

