/*
 * train.c — icpml.train_icp_model(): cross-validated XGBoost training of
 * the ICP model, stored as a new version through the model store.
 *
 * Phases:
 *   1. validate the arguments (train_args.c); take the training advisory
 *      lock (no wait)
 *   2. infer the feature spec (spec.c) over the labelled rows
 *   3. read key, label, features (and the rules' columns when the relation
 *      has them) through an SPI cursor, 10k rows per fetch, as the caller;
 *      rows are then put in key order, so nothing depends on scan order
 *      (train_data.c)
 *   4. minimum data guard (50 labelled rows, 20 keys, both classes)
 *   5. stratified shuffled k-fold (train_cv.c); per fold a booster
 *      trained one round at a time, interrupts checked between rounds;
 *      out-of-fold (OOF) predictions; metrics per fold for the model and
 *      for the rules on the same folds; optionally a 3x3 grid over
 *      max_depth x eta chosen by mean CV ROC AUC
 *   6. refit on every labelled row; UBJSON blob, feature importance, score
 *      cut-offs from isotonic regression of the label on the OOF
 *      probabilities (here)
 *   7. ModelStoreInsert + ModelStoreApplyPolicy (model_store.c, as owner)
 *
 * Memory: everything lives in the "icpml training" context, a child of the
 * function's context; XGBoost handles belong to it (or to a per-fold child)
 * through reset callbacks, so an ERROR or a cancel anywhere frees them.
 *
 * metrics jsonb (read by the model store's SRFs):
 *   {"folds": k, "seed": s,
 *    "cv": {"model": {"roc_auc", "pr_auc", "log_loss", "brier",
 *                     "precision_at_10", "lift_at_10": mean over folds,
 *                     "roc_auc_folds": [per fold]},
 *           "rules": {same keys} | null,
 *           "deployed": {"version", "roc_auc" (its recipe on these folds),
 *                        "same_recipe", "same_data"}   (policy best, same dataset)},
 *    "roc": [{"threshold", "fpr", "tpr"}, ... at most 101 points, OOF],
 *    "calibration": [{"bin": 1..10, "mean_predicted", "observed_rate", "n"}]
 *                   (OOF, equal-width bins; empty bins have n 0 and nulls),
 *    "importance": [{"feature", "gain", "weight"}] by gain, descending,
 *    "search": [{"params": {"max_depth", "eta"}, "cv_roc_auc"}] | null}
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_collation.h"
#include "common/md5.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "portability/instr_time.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "icpml.h"
#include "health.h"
#include "metrics.h"
#include "model_store.h"
#include "rules.h"
#include "spec.h"
#include "train.h"
#include "xgb.h"

PG_FUNCTION_INFO_V1(train_icp_model);

#define TRAIN_ROC_POINTS 101
#define TRAIN_RESULT_NATTS 13

/* ---------------------------------------------------------------------
 * Outputs: cut-offs, metrics jsonb
 * --------------------------------------------------------------------- */

/*
 * Score cut-offs from the OOF predictions: isotonic regression of the
 * label on the probability gives a calibrated fit rate; cutoff[k-1] is
 * the smallest OOF probability whose calibrated rate is at least k/10
 * (+Infinity when none is: that score is never reached).
 */
static void
TrainCutoffs(const TrainData *d, const double *oof, double *cutoffs)
{
	double	   *fitted = palloc_extended(sizeof(double) * d->n, MCXT_ALLOC_HUGE);
	int64		i;
	int			k;

	MetricsIsotonic(d->label, oof, d->n, fitted);
	for (k = 1; k <= ICPML_NSCORE_CUTOFFS; k++)
	{
		double		best = get_float8_infinity();

		for (i = 0; i < d->n; i++)
			if (fitted[i] >= k / 10.0 - 1e-12 && oof[i] < best)
				best = oof[i];
		cutoffs[k - 1] = best;
	}
	pfree(fitted);
}

/* Append a JSON number, or null when not finite. */
static void
TrainJsonNumber(StringInfo buf, double v)
{
	if (isnan(v) || isinf(v))
		appendStringInfoString(buf, "null");
	else
		appendStringInfo(buf, "%.15g", v);
}

/* Append a metric set as a JSON object (roc_auc_folds when per_fold). */
static void
TrainJsonMetrics(StringInfo buf, const MetricSet *mean, const MetricSet *per_fold, int k)
{
	int			i;

	appendStringInfoChar(buf, '{');
	for (i = 0; i < METRICS_NKEYS; i++)
	{
		appendStringInfo(buf, "%s\"%s\": ", i > 0 ? ", " : "", MetricsNames[i]);
		TrainJsonNumber(buf, MetricsGet(mean, i));
	}
	if (per_fold)
	{
		appendStringInfoString(buf, ", \"roc_auc_folds\": [");
		for (i = 0; i < k; i++)
		{
			if (i > 0)
				appendStringInfoString(buf, ", ");
			TrainJsonNumber(buf, per_fold[i].roc_auc);
		}
		appendStringInfoChar(buf, ']');
	}
	appendStringInfoChar(buf, '}');
}

/* Append the OOF ROC curve, at most TRAIN_ROC_POINTS points. */
static void
TrainJsonRoc(StringInfo buf, const TrainData *d, const double *oof)
{
	int64	   *order = MetricsOrderDesc(oof, d->n);
	int64		npos = d->npos,
				nneg = d->n - d->npos;
	double	   *thr = palloc(sizeof(double) * (d->n + 1));
	double	   *fpr = palloc(sizeof(double) * (d->n + 1));
	double	   *tpr = palloc(sizeof(double) * (d->n + 1));
	int64		npts = 0,
				i = 0,
				j;
	double		tp = 0,
				fp = 0;
	int			p;
	int64		last = -1;

	if (d->n > 0 && oof[order[0]] < 1.0)
	{
		thr[0] = 1.0;
		fpr[0] = tpr[0] = 0.0;
		npts = 1;
	}
	while (i < d->n)
	{
		for (j = i; j < d->n && oof[order[j]] == oof[order[i]]; j++)
		{
			if (d->label[order[j]] > 0.5f)
				tp++;
			else
				fp++;
		}
		thr[npts] = oof[order[i]];
		fpr[npts] = fp / nneg;
		tpr[npts] = tp / npos;
		npts++;
		i = j;
	}
	appendStringInfoChar(buf, '[');
	for (p = 0; p < TRAIN_ROC_POINTS; p++)
	{
		int64		idx = npts <= TRAIN_ROC_POINTS ? p :
			(int64) llround((double) p * (npts - 1) / (TRAIN_ROC_POINTS - 1));

		if (idx >= npts)
			break;
		if (idx == last)
			continue;
		last = idx;
		if (p > 0)
			appendStringInfoString(buf, ", ");
		appendStringInfoString(buf, "{\"threshold\": ");
		TrainJsonNumber(buf, thr[idx]);
		appendStringInfoString(buf, ", \"fpr\": ");
		TrainJsonNumber(buf, fpr[idx]);
		appendStringInfoString(buf, ", \"tpr\": ");
		TrainJsonNumber(buf, tpr[idx]);
		appendStringInfoChar(buf, '}');
	}
	appendStringInfoChar(buf, ']');
	pfree(order);
	pfree(thr);
	pfree(fpr);
	pfree(tpr);
}

/* Append 10 equal-width calibration bins of the OOF predictions. */
static void
TrainJsonCalibration(StringInfo buf, const TrainData *d, const double *oof)
{
	double		sum_p[10] = {0},
				sum_y[10] = {0};
	int64		n[10] = {0},
				i;
	int			b;

	for (i = 0; i < d->n; i++)
	{
		b = (int) floor(oof[i] * 10.0);
		b = Min(Max(b, 0), 9);
		sum_p[b] += oof[i];
		sum_y[b] += d->label[i];
		n[b]++;
	}
	appendStringInfoChar(buf, '[');
	for (b = 0; b < 10; b++)
	{
		appendStringInfo(buf, "%s{\"bin\": %d, \"mean_predicted\": ", b > 0 ? ", " : "", b + 1);
		TrainJsonNumber(buf, n[b] > 0 ? sum_p[b] / n[b] : get_float8_nan());
		appendStringInfoString(buf, ", \"observed_rate\": ");
		TrainJsonNumber(buf, n[b] > 0 ? sum_y[b] / n[b] : get_float8_nan());
		appendStringInfo(buf, ", \"n\": " INT64_FORMAT "}", n[b]);
	}
	appendStringInfoChar(buf, ']');
}

/* Feature index of an XGBoost importance name ("f12"), or -1. */
static int
TrainFeatureIndex(const FeatureSpec *spec, const char *name)
{
	int			i;

	if (name[0] == 'f' && name[1] >= '0' && name[1] <= '9')
	{
		char	   *end;
		long		v = strtol(name + 1, &end, 10);

		if (*end == '\0' && v >= 0 && v < spec->nfeatures)
			return (int) v;
	}
	for (i = 0; i < spec->nfeatures; i++)
		if (strcmp(spec->feature_names[i], name) == 0)
			return i;
	return -1;
}

typedef struct TrainImportance
{
	int			feature;
	double		gain;
	double		weight;
} TrainImportance;

/* qsort comparator: gain descending, then feature index. */
static int
TrainImportanceCmp(const void *x, const void *y)
{
	const TrainImportance *a = (const TrainImportance *) x;
	const TrainImportance *b = (const TrainImportance *) y;

	if (a->gain != b->gain)
		return a->gain > b->gain ? -1 : 1;
	return a->feature - b->feature;
}

/* Append feature importance (gain and weight) by gain, descending. */
static void
TrainJsonImportance(StringInfo buf, XgbBooster *b, const FeatureSpec *spec)
{
	TrainImportance *imp = palloc0(sizeof(TrainImportance) * Max(spec->nfeatures, 1));
	bool	   *used = palloc0(sizeof(bool) * Max(spec->nfeatures, 1));
	char	  **names;
	float	   *scores;
	int			n,
				i,
				nimp = 0;

	for (i = 0; i < spec->nfeatures; i++)
		imp[i].feature = i;
	n = XgbBoosterFeatureScore(b, "gain", &names, &scores);
	for (i = 0; i < n; i++)
	{
		int			f = TrainFeatureIndex(spec, names[i]);

		if (f >= 0)
		{
			imp[f].gain = scores[i];
			used[f] = true;
		}
	}
	n = XgbBoosterFeatureScore(b, "weight", &names, &scores);
	for (i = 0; i < n; i++)
	{
		int			f = TrainFeatureIndex(spec, names[i]);

		if (f >= 0)
		{
			imp[f].weight = scores[i];
			used[f] = true;
		}
	}
	for (i = 0; i < spec->nfeatures; i++)
		if (used[i])
			imp[nimp++] = imp[i];
	qsort(imp, nimp, sizeof(TrainImportance), TrainImportanceCmp);

	appendStringInfoChar(buf, '[');
	for (i = 0; i < nimp; i++)
	{
		appendStringInfo(buf, "%s{\"feature\": ", i > 0 ? ", " : "");
		escape_json(buf, spec->feature_names[imp[i].feature]);
		appendStringInfoString(buf, ", \"gain\": ");
		TrainJsonNumber(buf, imp[i].gain);
		appendStringInfoString(buf, ", \"weight\": ");
		TrainJsonNumber(buf, imp[i].weight);
		appendStringInfoChar(buf, '}');
	}
	appendStringInfoChar(buf, ']');
}

/* jsonb from text built here (always valid). */
static Jsonb *
TrainJsonb(const char *text)
{
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
}

/* The metrics jsonb of a training (format in the file comment). */
static Jsonb *
TrainMetricsJsonb(const TrainArgs *a, const TrainData *d, const TrainCv *cvs, int ncv,
				  int best, XgbBooster *booster, const MetricSet *rules_mean,
				  const MetricSet *rules_fold, const ModelStoreChampion *champion)
{
	StringInfoData js;
	int			i;

	initStringInfo(&js);
	appendStringInfo(&js, "{\"folds\": %d, \"seed\": %d, \"cv\": {\"model\": ", a->folds, a->seed);
	TrainJsonMetrics(&js, &cvs[best].mean, cvs[best].per_fold, a->folds);
	appendStringInfoString(&js, ", \"rules\": ");
	if (rules_mean)
		TrainJsonMetrics(&js, rules_mean, rules_fold, a->folds);
	else
		appendStringInfoString(&js, "null");
	/* the deployed model's recipe on the same folds (deploy policy best) */
	if (champion)
	{
		appendStringInfo(&js, ", \"deployed\": {\"version\": %d, \"roc_auc\": ", champion->version);
		TrainJsonNumber(&js, champion->cv_auc);
		appendStringInfo(&js, ", \"same_recipe\": %s, \"same_data\": %s}",
						 champion->same_recipe ? "true" : "false",
						 champion->same_data ? "true" : "false");
	}
	appendStringInfoString(&js, "}, \"roc\": ");
	TrainJsonRoc(&js, d, cvs[best].oof);
	appendStringInfoString(&js, ", \"calibration\": ");
	TrainJsonCalibration(&js, d, cvs[best].oof);
	appendStringInfoString(&js, ", \"importance\": ");
	TrainJsonImportance(&js, booster, d->spec);
	appendStringInfoString(&js, ", \"search\": ");
	if (a->search)
	{
		appendStringInfoChar(&js, '[');
		for (i = 0; i < ncv; i++)
		{
			appendStringInfo(&js, "%s{\"params\": {", i > 0 ? ", " : "");
			appendStringInfo(&js, "\"max_depth\": %d, \"eta\": %s}, \"cv_roc_auc\": ",
							 (int) cvs[i].params.value[TRAIN_P_MAX_DEPTH],
							 TrainParamText(TRAIN_P_ETA, cvs[i].params.value[TRAIN_P_ETA]));
			TrainJsonNumber(&js, cvs[i].mean.roc_auc);
			appendStringInfoChar(&js, '}');
		}
		appendStringInfoChar(&js, ']');
	}
	else
		appendStringInfoString(&js, "null");
	appendStringInfoChar(&js, '}');
	return TrainJsonb(js.data);
}

/* md5 over "key:label\n" of the rows in key order. */
static char *
TrainFingerprint(const TrainData *d)
{
	StringInfoData buf;
	char	   *hex = palloc(33);
	const char *errstr = NULL;
	int64		i;

	initStringInfo(&buf);
	for (i = 0; i < d->n; i++)
		appendStringInfo(&buf, INT64_FORMAT ":%d\n", d->keys[i], (int) d->label[i]);
	if (!pg_md5_hash(buf.data, buf.len, hex, &errstr))
		elog(ERROR, "could not compute the training fingerprint: %s", errstr);
	pfree(buf.data);
	return hex;
}

/* ---------------------------------------------------------------------
 * The deployed model, compared on the same folds (deploy policy best)
 * --------------------------------------------------------------------- */

/* Same dataset: relation, key, label, and the feature columns' names and kinds. */
static bool
TrainSameDataset(const TrainArgs *a, const FeatureSpec *spec, const ModelRecord *dep)
{
	int			c;

	if (dep->label == NULL || strcmp(dep->label, a->label) != 0 ||
		strcmp(dep->spec->relation, spec->relation) != 0 || strcmp(dep->spec->key, spec->key) != 0 ||
		dep->spec->ncolumns != spec->ncolumns)
		return false;
	for (c = 0; c < spec->ncolumns; c++)
		if (strcmp(dep->spec->columns[c].name, spec->columns[c].name) != 0 ||
			dep->spec->columns[c].kind != spec->columns[c].kind)
			return false;
	return true;
}

/*
 * For deploy policy best: when the deployed model belongs to this training's
 * dataset, cross-validate its recipe (parameters, rounds, seed, text
 * encoding; the levels re-counted on the current rows, as a retraining with
 * that recipe would) on this training's folds, so the two are compared on
 * the same rows.  When the recipe is the candidate's own, the result is the
 * candidate's CV (nothing to run).  False when no such model is deployed.
 * Inside SPI_connect.
 */
static bool
TrainChampion(const TrainArgs *a, TrainData *d, const TrainCv *cand, MemoryContext cxt,
			  ModelStoreChampion *out)
{
	ModelRecord *dep = ModelStoreLoadDeployed();
	TrainParams p;
	int			n_rounds;
	int32		seed;
	const SpecEncoding *de;
	bool		same_encoding;
	TrainData  *cd = d;
	TrainCv		cv;

	MemoryContextSwitchTo(cxt);
	if (dep == NULL || !TrainSameDataset(a, d->spec, dep))
		return false;
	TrainParamsFromJsonb(dep->params, &p, &n_rounds, &seed);
	de = &dep->spec->encoding;
	same_encoding = de->fold_text == a->encoding.fold_text &&
		de->max_levels == a->encoding.max_levels && de->max_tags == a->encoding.max_tags &&
		de->min_count == a->encoding.min_count;
	out->version = dep->version;
	out->same_recipe = same_encoding && TrainParamsEqual(&p, &cand->params) &&
		n_rounds == a->n_rounds && seed == a->seed;
	out->same_data = out->same_recipe && dep->fingerprint != NULL &&
		strcmp(dep->fingerprint, TrainFingerprint(d)) == 0;
	if (out->same_recipe)
	{
		out->cv_auc = cand->mean.roc_auc;
		return true;
	}
	if (n_rounds < 1)
		n_rounds = a->n_rounds;

	/* its encoding of the same rows (read again when it differs) */
	if (!same_encoding)
	{
		FeatureSpec *spec = SpecInfer(a->relid, a->relation, a->key, a->label, a->exclude,
									  TrainRowFilter(a), de);

		MemoryContextSwitchTo(cxt);
		if (spec->ncolumns != d->spec->ncolumns)
			return false;		/* its encoding drops a column: not comparable */
		cd = TrainReadData(a, spec, false, cxt);
		MemoryContextSwitchTo(cxt);
		cd->fold = palloc_extended(sizeof(int) * Max(cd->n, 1), MCXT_ALLOC_HUGE);
		TrainAssignFolds(cd->keys, cd->label, cd->n, a->folds, a->seed, cd->fold);
	}
	memset(&cv, 0, sizeof(cv));
	cv.params = p;
	TrainCrossValidateRecipe(cd, a->folds, n_rounds, seed, &cv, cxt);
	out->cv_auc = cv.mean.roc_auc;
	return true;
}

/* ---------------------------------------------------------------------
 * SQL entry points
 * --------------------------------------------------------------------- */

/* Seconds since start. */
static double
TrainElapsed(instr_time start)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	return INSTR_TIME_GET_DOUBLE(now);
}

/*
 * icpml.train_icp_model(relation, key_column, label_column, exclude_columns,
 * folds, n_rounds, params, search, seed, deploy) → one row: the version,
 * whether it was deployed and why, and its cross-validation metrics.
 */
Datum
train_icp_model(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TrainArgs	a;
	TrainData  *d;
	FeatureSpec *spec;
	MemoryContext traincxt,
				oldcxt;
	instr_time	start;
	TrainCv    *cvs;
	int			ncv,
				best,
				i;
	MetricSet  *rules_fold = NULL;
	MetricSet	rules_mean;
	XgbMatrix  *dall;
	XgbBooster *booster;
	ModelRecord rec;
	const char *reason = NULL;
	bool		deployed;
	ModelStoreChampion champion;
	bool		have_champion = false;
	Datum		values[TRAIN_RESULT_NATTS];
	bool		nulls[TRAIN_RESULT_NATTS];
	int64		lockkey;
	double		read_seconds,
				cv_seconds;
	int			guclevel;

	INSTR_TIME_SET_CURRENT(start);
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	if (rsinfo->setDesc->natts != TRAIN_RESULT_NATTS)
		elog(ERROR, "train_icp_model must return %d columns (please report a bug)", TRAIN_RESULT_NATTS);

	traincxt = AllocSetContextCreate(CurrentMemoryContext, "icpml training",
									 ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(traincxt);

	TrainParseArgs(fcinfo, &a, true);

	/* two trainings never overlap; the lock goes with the transaction */
	lockkey = (int64) DatumGetInt32(DirectFunctionCall1Coll(hashtext, DEFAULT_COLLATION_OID,
															CStringGetTextDatum(ICPML_TRAIN_LOCK_NAME)));
	if (!DatumGetBool(DirectFunctionCall1(pg_try_advisory_xact_lock_int8,
										  Int64GetDatum(lockkey))))
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("another icpml training is running"),
				 errhint("Wait for it to finish; trainings run one at a time.")));

	SPI_connect();
	MemoryContextSwitchTo(traincxt);
	if (a.rules)
		(void) RulesReader();	/* loads the rules' configuration */

	guclevel = TrainReadSettings();
	spec = SpecInfer(a.relid, a.relation, a.key, a.label, a.exclude, TrainRowFilter(&a),
					 &a.encoding);
	d = TrainReadData(&a, spec, a.rules, traincxt);
	AtEOXact_GUC(true, guclevel);
	/*
	 * An SPI call returns with the SPI procedure context current, which
	 * SPI_finish frees: back to the training's, whose cross-validation
	 * figures are read after SPI_finish (valgrind saw them read freed).
	 */
	MemoryContextSwitchTo(traincxt);
	read_seconds = TrainElapsed(start);
	TrainGuard(&a, d);
	TrainGuardFolds(&a, d);

	d->fold = palloc_extended(sizeof(int) * d->n, MCXT_ALLOC_HUGE);
	TrainAssignFolds(d->keys, d->label, d->n, a.folds, a.seed, d->fold);

	/* the rules on the same folds */
	if (d->rules)
	{
		rules_fold = palloc(sizeof(MetricSet) * a.folds);
		for (i = 0; i < a.folds; i++)
			TrainFoldMetrics(d, d->rules, i, &rules_fold[i]);
		TrainMeanMetrics(rules_fold, a.folds, &rules_mean);
	}

	/* cross-validation: one setting, or the grid */
	best = TrainSearch(&a, d, traincxt, &cvs, &ncv);

	cv_seconds = TrainElapsed(start) - read_seconds;

	/* refit on every labelled row with the chosen setting */
	dall = TrainMatrix(d, NULL, d->n);
	booster = TrainBoost(dall, &cvs[best].params, a.n_rounds, a.seed);
	ereport(DEBUG1,
			(errmsg_internal("icpml training: " INT64_FORMAT " rows x %d features; reading %.3f s, cross-validation %.3f s, refit %.3f s",
							 d->n, d->nfeat, read_seconds, cv_seconds,
							 TrainElapsed(start) - read_seconds - cv_seconds)));

	memset(&rec, 0, sizeof(rec));
	/* the spec travels with the booster: an edited spec no longer matches */
	XgbBoosterSetAttr(booster, ICPML_SPEC_DIGEST_ATTR, SpecDigest(SpecToJsonb(spec)));
	rec.blob = XgbBoosterSave(booster, "ubj", &rec.bloblen);
	rec.spec = spec;
	rec.label = a.label;
	rec.n_rows = d->n;
	rec.n_positive = d->npos;
	rec.seed = a.seed;
	rec.fingerprint = TrainFingerprint(d);
	rec.xgboost_version = XgbVersionString();
	TrainCutoffs(d, cvs[best].oof, rec.score_cutoffs);
	rec.high_min_score = 8;
	rec.medium_min_score = 5;
	rec.cv_auc = cvs[best].mean.roc_auc;
	rec.rules_cv_auc = d->rules ? rules_mean.roc_auc : get_float8_nan();

	rec.params = TrainParamsJsonb(&a, &cvs[best].params);

	/*
	 * The population the model scores (every row of the relation, as the
	 * caller) and the labels it learnt from: what model_health compares with.
	 */
	{
		TreeModel  *tree = TreeModelFromBooster(booster, d->nfeat);
		HealthStats *hst = HealthStatsFromTraining(spec, d->x, d->n, d->nfeat);

		guclevel = TrainReadSettings();
		HealthScan(hst, a.relation, a.relid, a.key, NULL, tree, &rec, NULL, NULL, NULL, NULL);
		AtEOXact_GUC(true, guclevel);
		MemoryContextSwitchTo(traincxt);
		rec.training_stats = HealthStatsToJsonb(hst, d->n, d->npos);
		rec.training_labels = HealthLabelsEncode(d->keys, d->label, d->n);
		TreeModelFree(tree);
	}


	/* best: the deployed model's recipe on the same folds */
	if (strcmp(a.deploy, "best") == 0)
		have_champion = TrainChampion(&a, d, &cvs[best], traincxt, &champion);

	rec.metrics = TrainMetricsJsonb(&a, d, cvs, ncv, best, booster, d->rules ? &rules_mean : NULL,
									 rules_fold, have_champion ? &champion : NULL);

	/* the model store writes as the extension owner */
	rec.version = ModelStoreInsert(&rec);
	deployed = ModelStoreApplyPolicy(rec.version, a.deploy, have_champion ? &champion : NULL,
									 &reason);

	SPI_finish();
	MemoryContextSwitchTo(oldcxt);

	memset(nulls, 0, sizeof(nulls));
	values[0] = Int32GetDatum(rec.version);
	values[1] = BoolGetDatum(deployed);
	values[2] = CStringGetTextDatum(reason ? reason : "");
	nulls[2] = (reason == NULL);
	values[3] = Int64GetDatum(d->n);
	values[4] = Int64GetDatum(d->npos);
	values[5] = Float8GetDatum(cvs[best].mean.roc_auc);
	values[6] = Float8GetDatum(cvs[best].mean.pr_auc);
	values[7] = Float8GetDatum(cvs[best].mean.log_loss);
	values[8] = Float8GetDatum(cvs[best].mean.brier);
	values[9] = Float8GetDatum(cvs[best].mean.precision_at_10);
	values[10] = Float8GetDatum(cvs[best].mean.lift_at_10);
	values[11] = Float8GetDatum(d->rules ? rules_mean.roc_auc : 0.0);
	nulls[11] = (d->rules == NULL);
	values[12] = Float8GetDatum(TrainElapsed(start));
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);

	/* frees the data and every XGBoost handle */
	MemoryContextDelete(traincxt);
	return (Datum) 0;
}
