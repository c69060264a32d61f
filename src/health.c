/*
 * health.c — watching a deployed model: icpml.model_health().
 *
 * At training (train.c), after the refit, the model scores every row of
 * its relation once and HealthStats records the population it scores:
 * per feature column its distribution (numbers and ages in bins at the
 * deciles of the labelled rows, categories per level plus "other", tags
 * per token, booleans true/false, and the missing share), the share of
 * each score and tier, and the data window (oldest and newest ages of the
 * labelled rows).  The labelled rows' (key, label) pairs are stored too
 * (icpml.models.training_labels), so that later labels can be told apart.
 *
 * model_health(version, relation) scans the relation again, as the
 * caller, with the same bins, and compares:
 *   drift        per column, the population stability index
 *                PSI = sum (a - e) ln(a / e) over the bins (shares floored
 *                at 1e-4), e at training and a now; for a tags column the
 *                largest binary PSI over its tokens (rows with, without)
 *   scores       the share of each tier and the mean probability
 *   labels       on the labelled rows whose (key, label) the model was not
 *                trained on: ROC AUC and Brier against the model's own
 *                cross-validated figures, the positive rate
 *   calibration  per tier, the mean probability (expected) against the
 *                observed positive rate of those new labels
 *   summary      whether retraining is needed, and why
 * Thresholds come from icpml.health_settings (one row).  A model trained
 * before icpml 0.4.0 has no training statistics: the drift and score
 * checks say so, the label checks still run.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "health.h"
#include "icpml.h"
#include "metrics.h"
#include "relation.h"

PG_FUNCTION_INFO_V1(model_health);

#define HEALTH_FETCH_ROWS 10000
#define HEALTH_SHARE_FLOOR 1e-4
#define HEALTH_NCOLS 8

static const char *const HealthTierNames[3] = {"high", "medium", "low"};

/* qsort comparator of floats. */
static int
HealthFloatCmp(const void *a, const void *b)
{
	float		x = *(const float *) a;
	float		y = *(const float *) b;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/* Empty statistics for a spec (bins of numeric columns left to the caller). */
static HealthStats *
HealthStatsNew(const FeatureSpec *spec)
{
	HealthStats *st = palloc0(sizeof(HealthStats));
	int			c;

	st->spec = spec;
	st->cols = palloc0(sizeof(HealthColumn) * Max(spec->ncolumns, 1));
	for (c = 0; c < spec->ncolumns; c++)
	{
		const SpecColumn *col = &spec->columns[c];
		HealthColumn *hc = &st->cols[c];

		hc->min_age = hc->max_age = get_float8_nan();
		switch (col->kind)
		{
			case SPEC_NUMERIC:
			case SPEC_AGE_DAYS:
				hc->nbins = 1;	/* until edges are set */
				break;
			case SPEC_CATEGORICAL:
				hc->nbins = col->nlevels + 1;
				break;
			case SPEC_BOOLEAN:
				hc->nbins = 2;
				break;
			case SPEC_TAGS:
				hc->nbins = col->nlevels;
				break;
		}
		hc->count = palloc0(sizeof(double) * Max(hc->nbins, 1));
	}
	return st;
}

/* Set a numeric column's bin edges. */
static void
HealthSetEdges(HealthColumn *hc, const double *edges, int n)
{
	hc->nedges = n;
	hc->edges = palloc(sizeof(double) * Max(n, 1));
	memcpy(hc->edges, edges, sizeof(double) * n);
	hc->nbins = n + 1;
	hc->count = palloc0(sizeof(double) * hc->nbins);
}

/* See health.h. */
HealthStats *
HealthStatsFromTraining(const FeatureSpec *spec, const float *x, int64 n, int nfeat)
{
	HealthStats *st = HealthStatsNew(spec);
	float	   *v = palloc_extended(sizeof(float) * Max(n, 1), MCXT_ALLOC_HUGE);
	int			c;

	for (c = 0; c < spec->ncolumns; c++)
	{
		const SpecColumn *col = &spec->columns[c];
		HealthColumn *hc = &st->cols[c];
		double		edges[HEALTH_NUMERIC_BINS];
		int64		i,
					m = 0;
		int			k,
					ne = 0;

		if (col->kind != SPEC_NUMERIC && col->kind != SPEC_AGE_DAYS)
			continue;
		for (i = 0; i < n; i++)
		{
			float		f = x[i * nfeat + col->first_feature];

			if (!isnan(f))
				v[m++] = f;
		}
		qsort(v, m, sizeof(float), HealthFloatCmp);
		/* the deciles, each once: a bin holds the values up to its edge */
		for (k = 1; k < HEALTH_NUMERIC_BINS && m > 0; k++)
		{
			double		e = v[(m - 1) * k / HEALTH_NUMERIC_BINS];

			if (ne == 0 || e > edges[ne - 1])
				edges[ne++] = e;
		}
		HealthSetEdges(hc, edges, ne);
		if (col->kind == SPEC_AGE_DAYS && m > 0)
		{
			hc->min_age = v[0];
			hc->max_age = v[m - 1];
		}
	}
	pfree(v);
	return st;
}

/* The bin of a numeric value: the first whose edge is at least v. */
static inline int
HealthBin(const HealthColumn *hc, double v)
{
	int			lo = 0,
				hi = hc->nedges;

	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;

		if (v <= hc->edges[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* Add one encoded row (and its raw NULLs) and its score to the statistics. */
static void
HealthAdd(HealthStats *st, const float *row, const bool *colnull, int score, int tier,
		  double probability)
{
	const FeatureSpec *spec = st->spec;
	int			c,
				l;

	st->rows += 1;
	st->tier[tier] += 1;
	st->score[score - 1] += 1;
	st->sum_probability += probability;
	for (c = 0; c < spec->ncolumns; c++)
	{
		const SpecColumn *col = &spec->columns[c];
		HealthColumn *hc = &st->cols[c];
		float		f = row[col->first_feature];

		if (colnull[c])
		{
			hc->missing += 1;
			continue;
		}
		switch (col->kind)
		{
			case SPEC_NUMERIC:
			case SPEC_AGE_DAYS:
				if (isnan(f))
					hc->missing += 1;
				else
					hc->count[HealthBin(hc, f)] += 1;
				break;
			case SPEC_CATEGORICAL:
				/* a value that is not a level is "other" */
				hc->count[isnan(f) ? col->nlevels : (int) f] += 1;
				break;
			case SPEC_BOOLEAN:
				hc->count[f != 0 ? 0 : 1] += 1;
				break;
			case SPEC_TAGS:
				for (l = 0; l < col->nlevels; l++)
					if (row[col->first_feature + l] != 0)
						hc->count[l] += 1;
				break;
		}
	}
}

/* See health.h. */
bytea *
HealthLabelsEncode(const int64 *keys, const float *labels, int64 n)
{
	Size		len = (Size) n * 9;
	bytea	   *b = (bytea *) palloc_extended(VARHDRSZ + len, MCXT_ALLOC_HUGE);
	unsigned char *p = (unsigned char *) VARDATA(b);
	int64		i;
	int			k;

	SET_VARSIZE(b, VARHDRSZ + len);
	for (i = 0; i < n; i++)
	{
		uint64		u = (uint64) keys[i];

		for (k = 7; k >= 0; k--)
		{
			*p++ = (unsigned char) (u >> (8 * k));
		}
		*p++ = labels[i] > 0.5f ? 1 : 0;
	}
	return b;
}

/* Was (key, label) among the training rows?  Binary search in training_labels. */
static bool
HealthTrained(const unsigned char *data, int64 n, int64 key, int label)
{
	int64		lo = 0,
				hi = n - 1,
				i;

	while (lo <= hi)
	{
		int64		mid = lo + (hi - lo) / 2;
		const unsigned char *p = data + mid * 9;
		uint64		u = 0;
		int			k;

		for (k = 0; k < 8; k++)
			u = (u << 8) | p[k];
		if ((int64) u < key)
			lo = mid + 1;
		else if ((int64) u > key)
			hi = mid - 1;
		else
		{
			/* the key's rows are neighbours: any with this label */
			for (i = mid; i >= 0; i--)
			{
				const unsigned char *q = data + i * 9;
				uint64		w = 0;

				for (k = 0; k < 8; k++)
					w = (w << 8) | q[k];
				if ((int64) w != key)
					break;
				if (q[8] == label)
					return true;
			}
			for (i = mid + 1; i < n; i++)
			{
				const unsigned char *q = data + i * 9;
				uint64		w = 0;

				for (k = 0; k < 8; k++)
					w = (w << 8) | q[k];
				if ((int64) w != key)
					break;
				if (q[8] == label)
					return true;
			}
			return false;
		}
	}
	return false;
}

/* See health.h. */
void
HealthScan(HealthStats *st, const char *relation, Oid relid, const char *key,
		   const char *label, const TreeModel *tree, const ModelRecord *rec,
		   bytea *trained, float **new_labels, double **new_prob, int64 *n_new)
{
	const FeatureSpec *spec = st->spec;
	StringInfoData sql;
	Portal		portal;
	MemoryContext outer = CurrentMemoryContext;	/* results go here, not in SPI's */
	MemoryContext batchcxt,
				oldcxt;
	float	   *row = palloc(sizeof(float) * Max(spec->nfeatures, 1));
	bool	   *colnull = palloc(sizeof(bool) * Max(spec->ncolumns, 1));
	int64		cap = 1024,
				ntrained = 0;
	const unsigned char *tdata = NULL;
	int			c;

	if (n_new)
	{
		*n_new = 0;
		*new_labels = palloc(sizeof(float) * cap);
		*new_prob = palloc(sizeof(double) * cap);
	}
	if (trained)
	{
		tdata = (const unsigned char *) VARDATA_ANY(trained);
		ntrained = VARSIZE_ANY_EXHDR(trained) / 9;
	}

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT f.%s::pg_catalog.int8, ", quote_identifier(key));
	if (label == NULL)
		appendStringInfoString(&sql, "NULL::pg_catalog.float8");
	else if (getBaseType(get_atttype(relid, get_attnum(relid, label))) == BOOLOID)
		appendStringInfo(&sql, "f.%s::pg_catalog.int4::pg_catalog.float8", quote_identifier(label));
	else
		appendStringInfo(&sql, "f.%s::pg_catalog.float8", quote_identifier(label));
	appendStringInfo(&sql, ", %s FROM %s AS f WHERE f.%s IS NOT NULL",
					 SpecSelectList(spec, "f"), relation, quote_identifier(key));

	batchcxt = AllocSetContextCreate(outer, "icpml health batch",
									 ALLOCSET_DEFAULT_SIZES);
	portal = SPI_cursor_open_with_args(NULL, sql.data, 0, NULL, NULL, NULL, true,
									   CURSOR_OPT_NO_SCROLL);
	for (;;)
	{
		SPITupleTable *tt;
		uint64		r;

		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, HEALTH_FETCH_ROWS);
		if (SPI_processed == 0)
			break;
		tt = SPI_tuptable;
		oldcxt = MemoryContextSwitchTo(batchcxt);
		for (r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = tt->vals[r];
			bool		isnull,
						lnull;
			int64		k = DatumGetInt64(heap_getattr(tup, 1, tt->tupdesc, &isnull));
			double		y = DatumGetFloat8(heap_getattr(tup, 2, tt->tupdesc, &lnull));
			double		p;
			int			score = 1,
						tier,
						j;

			SpecEncodeRow(spec, tup, tt->tupdesc, 3, row);
			for (c = 0; c < spec->ncolumns; c++)
				colnull[c] = heap_attisnull(tup, 3 + c, tt->tupdesc);
			p = TreeModelProbability(TreeModelMargin(tree, row));
			for (j = 0; j < ICPML_NSCORE_CUTOFFS; j++)
				if (p >= rec->score_cutoffs[j])
					score++;
			tier = score >= rec->high_min_score ? 0 : score >= rec->medium_min_score ? 1 : 2;
			HealthAdd(st, row, colnull, score, tier, p);

			/* a label the model was not trained on */
			if (n_new && !lnull && (y == 0.0 || y == 1.0) &&
				!(tdata && HealthTrained(tdata, ntrained, k, (int) y)))
			{
				MemoryContextSwitchTo(outer);
				if (*n_new == cap)
				{
					cap *= 2;
					*new_labels = repalloc_huge(*new_labels, sizeof(float) * cap);
					*new_prob = repalloc_huge(*new_prob, sizeof(double) * cap);
				}
				(*new_labels)[*n_new] = (float) y;
				(*new_prob)[*n_new] = p;
				(*n_new)++;
				MemoryContextSwitchTo(batchcxt);
			}
		}
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(batchcxt);
		SPI_freetuptable(tt);
	}
	SPI_cursor_close(portal);
	MemoryContextSwitchTo(outer);
	MemoryContextDelete(batchcxt);
}

/* Append a JSON number, or null when not finite. */
static void
HealthJsonNumber(StringInfo buf, double v)
{
	if (isnan(v) || isinf(v))
		appendStringInfoString(buf, "null");
	else
		appendStringInfo(buf, "%.10g", v);
}

/* Append shares (count / rows) as a JSON array. */
static void
HealthJsonShares(StringInfo buf, const double *count, int n, double rows)
{
	int			i;

	appendStringInfoChar(buf, '[');
	for (i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoString(buf, ", ");
		HealthJsonNumber(buf, rows > 0 ? count[i] / rows : 0.0);
	}
	appendStringInfoChar(buf, ']');
}

/* See health.h. */
Jsonb *
HealthStatsToJsonb(const HealthStats *st, int64 labelled, int64 positive)
{
	const FeatureSpec *spec = st->spec;
	StringInfoData buf;
	int			c,
				i;
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"as_of\": \"%s\", \"rows\": %.0f, \"labelled\": " INT64_FORMAT
					 ", \"positive\": " INT64_FORMAT ", \"label_rate\": ",
					 timestamptz_to_str(now), st->rows, labelled, positive);
	HealthJsonNumber(&buf, labelled > 0 ? (double) positive / labelled : get_float8_nan());
	appendStringInfoString(&buf, ", \"scores\": {\"mean_probability\": ");
	HealthJsonNumber(&buf, st->rows > 0 ? st->sum_probability / st->rows : get_float8_nan());
	appendStringInfoString(&buf, ", \"tiers\": ");
	HealthJsonShares(&buf, st->tier, 3, st->rows);
	appendStringInfoString(&buf, ", \"score\": ");
	HealthJsonShares(&buf, st->score, 10, st->rows);
	appendStringInfoString(&buf, "}, \"columns\": [");
	for (c = 0; c < spec->ncolumns; c++)
	{
		const SpecColumn *col = &spec->columns[c];
		const HealthColumn *hc = &st->cols[c];

		appendStringInfo(&buf, "%s{\"name\": ", c > 0 ? ", " : "");
		escape_json(&buf, col->name);
		appendStringInfo(&buf, ", \"kind\": \"%s\", \"missing\": ", SpecKindName(col->kind));
		HealthJsonNumber(&buf, st->rows > 0 ? hc->missing / st->rows : 0.0);
		if (col->kind == SPEC_NUMERIC || col->kind == SPEC_AGE_DAYS)
		{
			appendStringInfoString(&buf, ", \"edges\": [");
			for (i = 0; i < hc->nedges; i++)
			{
				if (i > 0)
					appendStringInfoString(&buf, ", ");
				HealthJsonNumber(&buf, hc->edges[i]);
			}
			appendStringInfoChar(&buf, ']');
		}
		appendStringInfoString(&buf, ", \"shares\": ");
		HealthJsonShares(&buf, hc->count, hc->nbins, st->rows);
		if (col->kind == SPEC_AGE_DAYS && !isnan(hc->min_age))
		{
			/* the data window: the labelled rows' oldest and newest dates */
			TimestampTz newest = now - (TimestampTz) (hc->min_age * USECS_PER_DAY);
			TimestampTz oldest = now - (TimestampTz) (hc->max_age * USECS_PER_DAY);

			appendStringInfo(&buf, ", \"window\": {\"oldest\": \"%s\", ", timestamptz_to_str(oldest));
			appendStringInfo(&buf, "\"newest\": \"%s\"}", timestamptz_to_str(newest));
		}
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoString(&buf, "]}");
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/* ---------------------------------------------------------------------
 * model_health()
 * --------------------------------------------------------------------- */

/* icpml.health_settings, read as the extension owner. */
typedef struct HealthSettings
{
	double		psi_watch;
	double		psi_alert;
	double		auc_drop;
	double		brier_rise;
	double		calibration_gap;
	int			min_new_labels;
	double		max_model_age_days;	/* NaN: no limit */
} HealthSettings;

/* Load the settings (inside SPI_connect). */
static void
HealthLoadSettings(HealthSettings *hs)
{
	CatalogOwnerState owner;
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;
	Datum		d;

	(void) CatalogRelid("health_settings");
	CatalogSwitchToOwner(&owner);
	if (SPI_execute("SELECT s.psi_watch, s.psi_alert, s.auc_drop, s.brier_rise, s.calibration_gap,"
					" s.min_new_labels,"
					" pg_catalog.date_part('epoch', s.max_model_age) OPERATOR(pg_catalog./) 86400.0"
					" FROM icpml.health_settings AS s", true, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("icpml.health_settings must hold exactly one row"),
				 errhint("Restore it with: INSERT INTO icpml.health_settings DEFAULT VALUES.")));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	hs->psi_watch = DatumGetFloat8(SPI_getbinval(tup, desc, 1, &isnull));
	hs->psi_alert = DatumGetFloat8(SPI_getbinval(tup, desc, 2, &isnull));
	hs->auc_drop = DatumGetFloat8(SPI_getbinval(tup, desc, 3, &isnull));
	hs->brier_rise = DatumGetFloat8(SPI_getbinval(tup, desc, 4, &isnull));
	hs->calibration_gap = DatumGetFloat8(SPI_getbinval(tup, desc, 5, &isnull));
	hs->min_new_labels = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
	d = SPI_getbinval(tup, desc, 7, &isnull);
	hs->max_model_age_days = isnull ? get_float8_nan() : DatumGetFloat8(d);
	CatalogRestoreUser(&owner);
}

/* A JSON member's value as a number (NaN when absent or not a number). */
static double
HealthJsonGetNumber(JsonbContainer *obj, const char *key)
{
	JsonbValue	k,
			   *v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(obj, JB_FOBJECT, &k);
	if (v == NULL || v->type != jbvNumeric)
		return get_float8_nan();
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)));
}

/* A JSON member's container (object or array), or NULL. */
static JsonbContainer *
HealthJsonGet(JsonbContainer *obj, const char *key)
{
	JsonbValue	k,
			   *v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(obj, JB_FOBJECT, &k);
	if (v == NULL || v->type != jbvBinary)
		return NULL;
	return v->val.binary.data;
}

/* An array of numbers into out (at most n); returns how many. */
static int
HealthJsonArray(JsonbContainer *arr, double *out, int n)
{
	int			i,
				m;

	if (arr == NULL || !JsonContainerIsArray(arr))
		return 0;
	m = Min((int) JsonContainerSize(arr), n);
	for (i = 0; i < m; i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(arr, i);

		out[i] = (v && v->type == jbvNumeric)
			? DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)))
			: 0.0;
	}
	return m;
}

/*
 * Training's statistics back from the jsonb: `base` gets training's shares
 * (rows = 1), and the returned fresh statistics the same bins, for the scan.
 * NULL when the jsonb does not match the spec (columns renamed by hand).
 */
static HealthStats *
HealthStatsFromJsonb(Jsonb *json, const FeatureSpec *spec, HealthStats **base)
{
	JsonbContainer *root = &json->root;
	JsonbContainer *cols = HealthJsonGet(root, "columns");
	JsonbContainer *scores = HealthJsonGet(root, "scores");
	HealthStats *fresh = HealthStatsNew(spec);
	HealthStats *b = HealthStatsNew(spec);
	int			c;

	if (cols == NULL || JsonContainerSize(cols) != (uint32) spec->ncolumns || scores == NULL)
		return NULL;
	b->rows = 1;
	b->sum_probability = HealthJsonGetNumber(scores, "mean_probability");
	HealthJsonArray(HealthJsonGet(scores, "tiers"), b->tier, 3);
	HealthJsonArray(HealthJsonGet(scores, "score"), b->score, 10);
	for (c = 0; c < spec->ncolumns; c++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(cols, c);
		JsonbContainer *o;
		double		edges[HEALTH_NUMERIC_BINS];
		int			ne;

		if (v == NULL || v->type != jbvBinary)
			return NULL;
		o = v->val.binary.data;
		if (spec->columns[c].kind == SPEC_NUMERIC || spec->columns[c].kind == SPEC_AGE_DAYS)
		{
			ne = HealthJsonArray(HealthJsonGet(o, "edges"), edges, HEALTH_NUMERIC_BINS);
			HealthSetEdges(&fresh->cols[c], edges, ne);
			HealthSetEdges(&b->cols[c], edges, ne);
		}
		if (HealthJsonArray(HealthJsonGet(o, "shares"), b->cols[c].count, b->cols[c].nbins) !=
			b->cols[c].nbins)
			return NULL;
		b->cols[c].missing = HealthJsonGetNumber(o, "missing");
	}
	*base = b;
	return fresh;
}

/* PSI of two distributions given as shares (floored). */
static double
HealthPsi(const double *e, const double *a, int n)
{
	double		psi = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		double		x = Max(e[i], HEALTH_SHARE_FLOOR);
		double		y = Max(a[i], HEALTH_SHARE_FLOOR);

		psi += (y - x) * log(y / x);
	}
	return psi;
}

/* One result row of model_health. */
static void
HealthPut(ReturnSetInfo *rsinfo, const char *check, const char *item, double training,
		  double current, double statistic, int64 n, const char *status, const char *detail)
{
	Datum		values[HEALTH_NCOLS];
	bool		nulls[HEALTH_NCOLS];

	memset(nulls, 0, sizeof(nulls));
	values[0] = CStringGetTextDatum(check);
	values[1] = CStringGetTextDatum(item);
	values[2] = Float8GetDatum(training);
	nulls[2] = isnan(training);
	values[3] = Float8GetDatum(current);
	nulls[3] = isnan(current);
	values[4] = Float8GetDatum(statistic);
	nulls[4] = isnan(statistic);
	values[5] = Int64GetDatum(n);
	nulls[5] = n < 0;
	values[6] = CStringGetTextDatum(status);
	values[7] = detail ? CStringGetTextDatum(detail) : (Datum) 0;
	nulls[7] = detail == NULL;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* The model's own cross-validated figure of a metric (metrics->cv->model). */
static double
HealthCvMetric(const ModelRecord *rec, const char *name)
{
	JsonbContainer *cv,
			   *model;

	if (rec->metrics == NULL)
		return get_float8_nan();
	cv = HealthJsonGet(&rec->metrics->root, "cv");
	model = cv ? HealthJsonGet(cv, "model") : NULL;
	return model ? HealthJsonGetNumber(model, name) : get_float8_nan();
}

/*
 * icpml.model_health(version integer, relation text) → setof (check, item,
 * training, current, statistic, n, status, detail): see the file comment.
 */
Datum
model_health(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext callcxt = CurrentMemoryContext;
	ModelRecord *rec;
	ModelStoreHealth mh;
	TreeModel  *tree;
	HealthSettings hs;
	HealthStats *base = NULL,
			   *now;
	char	   *relation;
	Oid			relid;
	const char *label;
	float	   *ny = NULL;
	double	   *np = NULL;
	int64		nnew = 0;
	const FeatureSpec *spec;
	StringInfoData why;
	int			ndrift = 0,
				c,
				t;
	bool		decay = false,
				old = false;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);

	rec = PG_ARGISNULL(0) ? ModelStoreLoadDeployed() : ModelStoreLoad(PG_GETARG_INT32(0));
	if (rec == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("no model is deployed"),
				 errhint("Pass a version (see icpml.list_models()), or deploy one with icpml.deploy_model(version => ...).")));
	spec = rec->spec;
	ModelStoreLoadHealth(rec->version, &mh);
	ModelStoreValidate(rec, false, NULL, &tree);

	SPI_connect();
	MemoryContextSwitchTo(callcxt);
	HealthLoadSettings(&hs);
	MemoryContextSwitchTo(callcxt);
	if (PG_ARGISNULL(1))
		relation = RelationResolveStored(spec->relation, rec->version);
	else
	{
		char	   *display;

		(void) RelationResolveFeatures(text_to_cstring(PG_GETARG_TEXT_PP(1)), &display);
		relation = display;
	}
	relid = RelationResolveFeatures(relation, &relation);
	/* the key and every column the model reads, by name */
	for (c = -1; c < spec->ncolumns; c++)
	{
		const char *name = c < 0 ? spec->key : spec->columns[c].name;

		if (get_attnum(relid, name) == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of model version %d does not exist in %s",
							name, rec->version, relation),
					 errhint("model_health reads the key and every column the model was trained on.")));
	}
	/* the label checks need the label column; without it they are left out */
	label = (rec->label && get_attnum(relid, rec->label) != InvalidAttrNumber) ? rec->label : NULL;

	if (mh.training_stats)
		now = HealthStatsFromJsonb(mh.training_stats, spec, &base);
	else
		now = NULL;
	if (now == NULL)
		now = HealthStatsNew(spec);
	HealthScan(now, relation, relid, spec->key, label, tree, rec, mh.training_labels,
			   &ny, &np, &nnew);
	SPI_finish();
	MemoryContextSwitchTo(callcxt);

	initStringInfo(&why);

	/* drift per column */
	if (base == NULL)
		HealthPut(rsinfo, "drift", "(all columns)", NAN, NAN, NAN, (int64) now->rows, "unknown",
				  "The model has no training statistics (trained before icpml 0.4.0): retrain it to watch its inputs.");
	else
	{
		for (c = 0; c < spec->ncolumns; c++)
		{
			const SpecColumn *col = &spec->columns[c];
			HealthColumn *e = &base->cols[c];
			HealthColumn *a = &now->cols[c];
			double		psi;
			double		rows = Max(now->rows, 1);
			char	   *detail = NULL;
			const char *status;

			if (col->kind == SPEC_TAGS)
			{
				/* the token whose share moved most */
				int			worst = -1,
							l;

				psi = 0;
				for (l = 0; l < col->nlevels; l++)
				{
					double		ev[2] = {e->count[l], 1 - e->count[l]};
					double		av[2] = {a->count[l] / rows, 1 - a->count[l] / rows};
					double		p = HealthPsi(ev, av, 2);

					if (worst < 0 || p > psi)
					{
						psi = p;
						worst = l;
					}
				}
				if (worst >= 0)
					detail = psprintf("token \"%s\": %.1f%% of rows at training, %.1f%% now",
									  col->levels[worst], 100 * e->count[worst],
									  100 * a->count[worst] / rows);
			}
			else
			{
				double	   *ev = palloc(sizeof(double) * (e->nbins + 1));
				double	   *av = palloc(sizeof(double) * (e->nbins + 1));
				int			i,
							worst = 0;
				double		move = -1;

				for (i = 0; i < e->nbins; i++)
				{
					ev[i] = e->count[i];
					av[i] = a->count[i] / rows;
				}
				ev[e->nbins] = e->missing;
				av[e->nbins] = a->missing / rows;
				psi = HealthPsi(ev, av, e->nbins + 1);
				for (i = 0; i <= e->nbins; i++)
					if (fabs(av[i] - ev[i]) > move)
					{
						move = fabs(av[i] - ev[i]);
						worst = i;
					}
				/* what moved most, in words */
				if (worst == e->nbins)
					detail = psprintf("missing: %.1f%% of rows at training, %.1f%% now",
									  100 * ev[worst], 100 * av[worst]);
				else if (col->kind == SPEC_CATEGORICAL)
					detail = psprintf("%s: %.1f%% of rows at training, %.1f%% now",
									  worst < col->nlevels ? psprintf("\"%s\"", col->levels[worst]) : "other values",
									  100 * ev[worst], 100 * av[worst]);
				else if (col->kind == SPEC_BOOLEAN)
					detail = psprintf("%s: %.1f%% of rows at training, %.1f%% now",
									  worst == 0 ? "true" : "false", 100 * ev[worst], 100 * av[worst]);
				else if (e->nedges > 0)
					detail = psprintf("%s: %.1f%% of rows at training, %.1f%% now",
									  worst == 0 ? psprintf("at most %g", e->edges[0]) :
									  worst == e->nedges ? psprintf("above %g", e->edges[e->nedges - 1]) :
									  psprintf("%g to %g", e->edges[worst - 1], e->edges[worst]),
									  100 * ev[worst], 100 * av[worst]);
			}
			status = psi >= hs.psi_alert ? "drift" : psi >= hs.psi_watch ? "watch" : "ok";
			if (psi >= hs.psi_alert)
			{
				appendStringInfo(&why, "%s%s drifted (PSI %.2f)", ndrift > 0 ? ", " : "", col->name, psi);
				ndrift++;
			}
			HealthPut(rsinfo, "drift", col->name, NAN, NAN, psi, (int64) now->rows, status, detail);
		}

		/* the score distribution by tier */
		for (t = 0; t < 3; t++)
			HealthPut(rsinfo, "scores", HealthTierNames[t], base->tier[t],
					  now->rows > 0 ? now->tier[t] / now->rows : NAN,
					  now->rows > 0 ? now->tier[t] / now->rows - base->tier[t] : NAN,
					  (int64) now->tier[t], "ok", "share of the accounts in this tier");
		HealthPut(rsinfo, "scores", "mean_probability", base->sum_probability,
				  now->rows > 0 ? now->sum_probability / now->rows : NAN,
				  now->rows > 0 ? now->sum_probability / now->rows - base->sum_probability : NAN,
				  (int64) now->rows, "ok", NULL);
	}

	/* the labels that arrived after training */
	if (label == NULL)
		HealthPut(rsinfo, "labels", "new_labels", NAN, NAN, NAN, -1, "unknown",
				  psprintf("The relation has no label column \"%s\".", rec->label ? rec->label : ""));
	else
	{
		int64		npos = 0,
					i;
		MetricSet	m;
		double		cv_auc = rec->cv_auc,
					cv_brier = HealthCvMetric(rec, "brier");
		bool		enough;

		for (i = 0; i < nnew; i++)
			npos += ny[i] > 0.5f;
		enough = nnew >= hs.min_new_labels && npos > 0 && npos < nnew;
		HealthPut(rsinfo, "labels", "new_labels", NAN, (double) nnew, NAN, nnew,
				  enough ? "ok" : "too few",
				  psprintf("labelled rows whose label the model was not trained on (at least %d, of both classes, for the checks below)",
						   hs.min_new_labels));
		HealthPut(rsinfo, "labels", "positive_rate",
				  rec->n_rows > 0 ? (double) rec->n_positive / rec->n_rows : NAN,
				  nnew > 0 ? (double) npos / nnew : NAN, NAN, nnew, "ok", NULL);
		if (nnew > 0)
		{
			MetricsCompute(ny, np, nnew, &m);
			if (enough && !isnan(cv_auc) && m.roc_auc < cv_auc - hs.auc_drop)
			{
				decay = true;
				appendStringInfo(&why, "%sROC AUC %.2f on %lld new labels against %.2f in cross-validation",
								 why.len > 0 ? "; " : "", m.roc_auc, (long long) nnew, cv_auc);
			}
			HealthPut(rsinfo, "labels", "roc_auc", cv_auc, m.roc_auc, m.roc_auc - cv_auc, nnew,
					  !enough ? "too few" : m.roc_auc < cv_auc - hs.auc_drop ? "decay" : "ok",
					  "training: the model's cross-validated ROC AUC");
			if (enough && !isnan(cv_brier) && m.brier > cv_brier + hs.brier_rise)
			{
				decay = true;
				appendStringInfo(&why, "%sBrier %.3f on new labels against %.3f in cross-validation",
								 why.len > 0 ? "; " : "", m.brier, cv_brier);
			}
			HealthPut(rsinfo, "labels", "brier", cv_brier, m.brier, m.brier - cv_brier, nnew,
					  !enough ? "too few" : m.brier > cv_brier + hs.brier_rise ? "decay" : "ok",
					  "training: the model's cross-validated Brier score");

			/* calibration per tier: expected (mean probability) against observed */
			for (t = 0; t < 3; t++)
			{
				double		sp = 0,
							sy = 0;
				int64		n = 0;

				for (i = 0; i < nnew; i++)
				{
					int			score = 1,
								j,
								tier;

					for (j = 0; j < ICPML_NSCORE_CUTOFFS; j++)
						if (np[i] >= rec->score_cutoffs[j])
							score++;
					tier = score >= rec->high_min_score ? 0 : score >= rec->medium_min_score ? 1 : 2;
					if (tier != t)
						continue;
					sp += np[i];
					sy += ny[i];
					n++;
				}
				HealthPut(rsinfo, "calibration", HealthTierNames[t], n > 0 ? sp / n : NAN,
						  n > 0 ? sy / n : NAN, n > 0 ? sy / n - sp / n : NAN, n,
						  n < 20 ? "too few" : fabs(sy / n - sp / n) > hs.calibration_gap ? "off" : "ok",
						  "training: the mean probability (expected); current: the observed rate of the new labels");
			}
		}
	}

	/* how old the model is */
	if (!isnan(hs.max_model_age_days) && mh.age_days > hs.max_model_age_days)
	{
		old = true;
		appendStringInfo(&why, "%strained %.0f days ago, more than %.0f", why.len > 0 ? "; " : "",
						 mh.age_days, hs.max_model_age_days);
	}

	HealthPut(rsinfo, "summary", "retraining", NAN, NAN, NAN, (int64) now->rows,
			  (ndrift > 0 || decay || old) ? "needed" : "not needed",
			  (ndrift > 0 || decay || old) ? why.data :
			  psprintf("no column drifted (PSI below %.2f), no decay on new labels, trained %.0f days ago",
					   hs.psi_alert, mh.age_days));
	return (Datum) 0;
}
