/*
 * metrics.h — binary classification metrics over (label, probability)
 * pairs, pure C (no catalog access), used by cross-validation.
 */
#ifndef ICPML_METRICS_H
#define ICPML_METRICS_H

#include "postgres.h"

/* The metrics reported per fold and as a mean over folds. */
typedef struct MetricSet
{
	double		roc_auc;		/* ties count half (average rank) */
	double		pr_auc;			/* average precision */
	double		log_loss;		/* p clipped to [1e-15, 1 - 1e-15] */
	double		brier;
	double		precision_at_10;	/* positive share of the top decile */
	double		lift_at_10;		/* precision_at_10 / base rate */
} MetricSet;

#define METRICS_NKEYS 6
extern const char *const MetricsNames[METRICS_NKEYS];

/* Value of metric i (MetricsNames order). */
extern double MetricsGet(const MetricSet *m, int i);

/*
 * Compute every metric of n (label, probability) pairs.  label is 0/1.
 * Undefined values (one class only, no rows) are NaN.
 */
extern void MetricsCompute(const float *label, const double *prob, int64 n, MetricSet *out);

/* The individual metrics (same conventions). */
extern double MetricsRocAuc(const float *label, const double *prob, int64 n);
extern double MetricsAveragePrecision(const float *label, const double *prob, int64 n);
extern double MetricsLogLoss(const float *label, const double *prob, int64 n);
extern double MetricsBrier(const float *label, const double *prob, int64 n);
extern double MetricsPrecisionAtTop(const float *label, const double *prob, int64 n,
									double fraction);

/* Indices 0..n-1 sorted by prob descending (ties by index): palloc'd. */
extern int64 *MetricsOrderDesc(const double *prob, int64 n);

/*
 * Isotonic regression (pool adjacent violators) of label on prob: fills
 * fitted[i] for every i with the non-decreasing step function's value.
 * Equal probabilities are pooled first, so they share one fitted value.
 */
extern void MetricsIsotonic(const float *label, const double *prob, int64 n, double *fitted);

#endif							/* ICPML_METRICS_H */
