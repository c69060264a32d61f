/*
 * metrics.c — binary classification metrics for cross-validation, and
 * icpml.binary_metrics(), which computes them for any predictions.
 *
 * Definitions (n rows, P positives, N negatives; "groups" are runs of
 * equal probabilities, so every metric is independent of row order):
 *   roc_auc          Mann-Whitney: P(p+ > p-) + 0.5 P(p+ = p-), i.e. ties
 *                    get the average rank
 *   pr_auc           average precision: sum over groups, highest first,
 *                    of (recall_g - recall_{g-1}) * precision_g
 *   log_loss         mean of -[y ln p + (1-y) ln(1-p)], p clipped to
 *                    [1e-15, 1 - 1e-15]
 *   brier            mean of (p - y)^2
 *   precision_at_10  share of positives among the m = ceil(n / 10) highest
 *                    probabilities; a group straddling the cut counts with
 *                    the fraction of its positives it contributes on
 *                    average (expected value under random tie-breaking)
 *   lift_at_10       precision_at_10 / (P / n)
 * Everything is O(n log n) (one sort) and allocates only the sort order.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/float.h"

#include "metrics.h"

PG_FUNCTION_INFO_V1(binary_metrics);

const char *const MetricsNames[METRICS_NKEYS] = {
	"roc_auc", "pr_auc", "log_loss", "brier", "precision_at_10", "lift_at_10"
};

/* Value of metric i in MetricsNames order. */
double
MetricsGet(const MetricSet *m, int i)
{
	switch (i)
	{
		case 0:
			return m->roc_auc;
		case 1:
			return m->pr_auc;
		case 2:
			return m->log_loss;
		case 3:
			return m->brier;
		case 4:
			return m->precision_at_10;
		case 5:
			return m->lift_at_10;
	}
	elog(ERROR, "unknown metric %d (please report a bug)", i);
	return 0.0;
}

/* qsort_arg comparator: probability descending, then index ascending. */
static int
MetricsCmpDesc(const void *a, const void *b, void *arg)
{
	const double *prob = (const double *) arg;
	int64		ia = *(const int64 *) a;
	int64		ib = *(const int64 *) b;

	if (prob[ia] > prob[ib])
		return -1;
	if (prob[ia] < prob[ib])
		return 1;
	return ia < ib ? -1 : (ia > ib ? 1 : 0);
}

/* Indices sorted by probability descending (ties by index). */
int64 *
MetricsOrderDesc(const double *prob, int64 n)
{
	int64	   *order = palloc_extended(sizeof(int64) * Max(n, 1), MCXT_ALLOC_HUGE);
	int64		i;

	for (i = 0; i < n; i++)
		order[i] = i;
	qsort_arg(order, n, sizeof(int64), MetricsCmpDesc, (void *) prob);
	return order;
}

/* Positives among n rows. */
static int64
MetricsPositives(const float *label, int64 n)
{
	int64		p = 0,
				i;

	for (i = 0; i < n; i++)
		p += label[i] > 0.5f;
	return p;
}

/* ROC AUC over a precomputed descending order. */
static double
MetricsRocAucOrdered(const float *label, const double *prob, const int64 *order, int64 n)
{
	int64		npos = MetricsPositives(label, n);
	int64		nneg = n - npos;
	double		neg_above = 0,
				sum = 0;
	int64		i = 0;

	if (npos == 0 || nneg == 0)
		return get_float8_nan();
	while (i < n)
	{
		int64		j = i;
		double		gp = 0,
					gn = 0;

		while (j < n && prob[order[j]] == prob[order[i]])
		{
			if (label[order[j]] > 0.5f)
				gp++;
			else
				gn++;
			j++;
		}
		/* each positive of the group beats the negatives below it, ties half */
		sum += gp * ((double) nneg - neg_above - gn) + 0.5 * gp * gn;
		neg_above += gn;
		i = j;
	}
	return sum / ((double) npos * (double) nneg);
}

/* Average precision over a precomputed descending order. */
static double
MetricsAveragePrecisionOrdered(const float *label, const double *prob, const int64 *order, int64 n)
{
	int64		npos = MetricsPositives(label, n);
	double		tp = 0,
				fp = 0,
				prev_recall = 0,
				ap = 0;
	int64		i = 0;

	if (npos == 0 || npos == n)
		return npos == 0 ? get_float8_nan() : 1.0;
	while (i < n)
	{
		int64		j = i;
		double		recall;

		while (j < n && prob[order[j]] == prob[order[i]])
		{
			if (label[order[j]] > 0.5f)
				tp++;
			else
				fp++;
			j++;
		}
		recall = tp / npos;
		ap += (recall - prev_recall) * (tp / (tp + fp));
		prev_recall = recall;
		i = j;
	}
	return ap;
}

/* Precision among the top `fraction` over a precomputed descending order. */
static double
MetricsPrecisionAtTopOrdered(const float *label, const double *prob, const int64 *order,
							 int64 n, double fraction)
{
	int64		m,
				taken = 0,
				i = 0;
	double		pos = 0;

	if (n == 0)
		return get_float8_nan();
	m = (int64) ceil(fraction * (double) n);
	m = Max(m, 1);
	while (i < n && taken < m)
	{
		int64		j = i;
		double		gp = 0;

		while (j < n && prob[order[j]] == prob[order[i]])
		{
			gp += label[order[j]] > 0.5f;
			j++;
		}
		if (taken + (j - i) <= m)
		{
			pos += gp;
			taken += j - i;
		}
		else
		{
			/* the group straddles the cut: its expected share of positives */
			pos += gp * (double) (m - taken) / (double) (j - i);
			taken = m;
		}
		i = j;
	}
	return pos / (double) m;
}

/* ROC AUC, ties at average rank; NaN with one class only. */
double
MetricsRocAuc(const float *label, const double *prob, int64 n)
{
	int64	   *order = MetricsOrderDesc(prob, n);
	double		r = MetricsRocAucOrdered(label, prob, order, n);

	pfree(order);
	return r;
}

/* Average precision (area under the precision-recall step curve). */
double
MetricsAveragePrecision(const float *label, const double *prob, int64 n)
{
	int64	   *order = MetricsOrderDesc(prob, n);
	double		r = MetricsAveragePrecisionOrdered(label, prob, order, n);

	pfree(order);
	return r;
}

/* Mean binary cross-entropy with clipped probabilities. */
double
MetricsLogLoss(const float *label, const double *prob, int64 n)
{
	double		sum = 0;
	int64		i;

	if (n == 0)
		return get_float8_nan();
	for (i = 0; i < n; i++)
	{
		double		p = Min(Max(prob[i], 1e-15), 1.0 - 1e-15);

		sum -= label[i] > 0.5f ? log(p) : log(1.0 - p);
	}
	return sum / (double) n;
}

/* Mean squared error of the probability. */
double
MetricsBrier(const float *label, const double *prob, int64 n)
{
	double		sum = 0;
	int64		i;

	if (n == 0)
		return get_float8_nan();
	for (i = 0; i < n; i++)
	{
		double		d = prob[i] - (label[i] > 0.5f ? 1.0 : 0.0);

		sum += d * d;
	}
	return sum / (double) n;
}

/* Share of positives among the ceil(fraction * n) highest probabilities. */
double
MetricsPrecisionAtTop(const float *label, const double *prob, int64 n, double fraction)
{
	int64	   *order = MetricsOrderDesc(prob, n);
	double		r = MetricsPrecisionAtTopOrdered(label, prob, order, n, fraction);

	pfree(order);
	return r;
}

/* Every metric of n (label, probability) pairs, sorting once. */
void
MetricsCompute(const float *label, const double *prob, int64 n, MetricSet *out)
{
	int64	   *order = MetricsOrderDesc(prob, n);
	int64		npos = MetricsPositives(label, n);

	out->roc_auc = MetricsRocAucOrdered(label, prob, order, n);
	out->pr_auc = MetricsAveragePrecisionOrdered(label, prob, order, n);
	out->log_loss = MetricsLogLoss(label, prob, n);
	out->brier = MetricsBrier(label, prob, n);
	out->precision_at_10 = MetricsPrecisionAtTopOrdered(label, prob, order, n, 0.1);
	out->lift_at_10 = npos > 0 ? out->precision_at_10 / ((double) npos / (double) n)
		: get_float8_nan();
	pfree(order);
}

/*
 * Isotonic regression by pool-adjacent-violators: blocks of equal
 * probability start pooled; adjacent blocks merge while the left mean
 * exceeds the right one.  fitted[i] gets the mean of row i's block.
 */
void
MetricsIsotonic(const float *label, const double *prob, int64 n, double *fitted)
{
	int64	   *order = MetricsOrderDesc(prob, n);
	double	   *bsum = palloc_extended(sizeof(double) * Max(n, 1), MCXT_ALLOC_HUGE);
	double	   *bcnt = palloc_extended(sizeof(double) * Max(n, 1), MCXT_ALLOC_HUGE);
	int64	   *bend = palloc_extended(sizeof(int64) * Max(n, 1), MCXT_ALLOC_HUGE);
	int64		nb = 0,
				i,
				start;

	/* walk ascending: order[] is descending, so from its end */
	i = n - 1;
	while (i >= 0)
	{
		int64		j = i;
		double		s = 0,
					c = 0;

		while (j >= 0 && prob[order[j]] == prob[order[i]])
		{
			s += label[order[j]] > 0.5f ? 1.0 : 0.0;
			c++;
			j--;
		}
		bsum[nb] = s;
		bcnt[nb] = c;
		bend[nb] = j;			/* block covers order[j+1 .. i] */
		nb++;
		while (nb > 1 && bsum[nb - 2] / bcnt[nb - 2] > bsum[nb - 1] / bcnt[nb - 1])
		{
			bsum[nb - 2] += bsum[nb - 1];
			bcnt[nb - 2] += bcnt[nb - 1];
			bend[nb - 2] = bend[nb - 1];
			nb--;
		}
		i = j;
		if ((i & 0xFFFF) == 0)
			CHECK_FOR_INTERRUPTS();
	}

	/* assign: block b covers order[bend[b]+1 .. previous block's bend] */
	start = n - 1;
	for (i = 0; i < nb; i++)
	{
		double		mean = bsum[i] / bcnt[i];
		int64		k;

		for (k = start; k > bend[i]; k--)
			fitted[order[k]] = mean;
		start = bend[i];
	}
	pfree(order);
	pfree(bsum);
	pfree(bcnt);
	pfree(bend);
}

/*
 * icpml.binary_metrics(labels boolean[], probabilities float8[]) → one row
 * of the metrics train_icp_model reports, for any predictions.
 */
Datum
binary_metrics(PG_FUNCTION_ARGS)
{
	ArrayType  *la = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *pa = PG_GETARG_ARRAYTYPE_P(1);
	Datum	   *le,
			   *pe;
	bool	   *ln,
			   *pn;
	int			nl,
				np,
				i;
	float	   *y;
	double	   *p;
	MetricSet	m;
	TupleDesc	desc;
	Datum		values[METRICS_NKEYS];
	bool		nulls[METRICS_NKEYS];

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "binary_metrics must return a row (please report a bug)");
	deconstruct_array(la, BOOLOID, 1, true, TYPALIGN_CHAR, &le, &ln, &nl);
	deconstruct_array(pa, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &pe, &pn, &np);
	if (nl != np)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("labels has %d elements but probabilities has %d", nl, np),
				 errhint("Pass one probability per label.")));
	y = palloc(sizeof(float) * Max(nl, 1));
	p = palloc(sizeof(double) * Max(nl, 1));
	for (i = 0; i < nl; i++)
	{
		if (ln[i] || pn[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("labels and probabilities must not contain NULL")));
		y[i] = DatumGetBool(le[i]) ? 1.0f : 0.0f;
		p[i] = DatumGetFloat8(pe[i]);
		if (isnan(p[i]) || p[i] < 0.0 || p[i] > 1.0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("probability %g is not between 0 and 1", p[i])));
	}
	MetricsCompute(y, p, nl, &m);
	for (i = 0; i < METRICS_NKEYS; i++)
	{
		double		v = MetricsGet(&m, i);

		values[i] = Float8GetDatum(v);
		nulls[i] = isnan(v);
	}
	desc = BlessTupleDesc(desc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
