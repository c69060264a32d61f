/*
 * health.h — watching a model after deployment (health.c): the statistics
 * of the population a model scores (every feature's distribution, the
 * score distribution by tier), taken by training and again by
 * icpml.model_health(), and the labels the model was trained on, so that
 * labels that arrive later can be told apart.
 */
#ifndef ICPML_HEALTH_H
#define ICPML_HEALTH_H

#include "postgres.h"

#include "utils/jsonb.h"

#include "model_store.h"
#include "spec.h"
#include "tree.h"

/* Numeric and age columns are binned at (up to) the deciles of training. */
#define HEALTH_NUMERIC_BINS 10

/* One column's distribution: counts of rows per bin (see HealthStats). */
typedef struct HealthColumn
{
	int			nedges;			/* numeric/age: upper edges of the first bins */
	double	   *edges;
	int			nbins;			/* numeric: nedges + 1; categorical: levels + 1
								 * ("other"); boolean: 2; tags: levels (rows
								 * having the token) */
	double	   *count;
	double		missing;		/* rows where the column is NULL (or not finite) */
	/* the data window of a date/time column (training's labelled rows) */
	double		min_age,
				max_age;		/* days; NaN when none */
} HealthColumn;

/* What one scan saw: rows, per column, and the scores by tier. */
typedef struct HealthStats
{
	const FeatureSpec *spec;
	double		rows;
	HealthColumn *cols;			/* spec->ncolumns */
	double		tier[3];		/* high, medium, low */
	double		score[10];		/* rows per score 1..10 */
	double		sum_probability;
} HealthStats;

/* Fresh statistics with training's bins (edges from the labelled rows' values). */
extern HealthStats *HealthStatsFromTraining(const FeatureSpec *spec, const float *x, int64 n,
											int nfeat);

/*
 * The labels a model was trained on: its keys in order with their labels,
 * as stored in icpml.models.training_labels (big-endian int8 key, one
 * byte 0/1 per row).
 */
extern bytea *HealthLabelsEncode(const int64 *keys, const float *labels, int64 n);

/*
 * Scan the rows of `relation` (quoted, qualified; read as the caller) with
 * the model: every feature and score into st; with `label` (a column of
 * the relation, or NULL), the labelled rows whose (key, label) is not in
 * `trained` (NULL: none) are also returned (their labels and
 * probabilities, palloc'd) for the checks of new labels.  Inside
 * SPI_connect.
 */
extern void HealthScan(HealthStats *st, const char *relation, Oid relid, const char *key,
					   const char *label, const TreeModel *tree, const ModelRecord *rec,
					   bytea *trained, float **new_labels, double **new_prob, int64 *n_new);

/* The training statistics jsonb (icpml.models.training_stats). */
extern Jsonb *HealthStatsToJsonb(const HealthStats *st, int64 labelled, int64 positive);

#endif							/* ICPML_HEALTH_H */
