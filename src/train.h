/*
 * train.h — training of the ICP model, shared by its files:
 *
 *   train.c       train_icp_model(): the phases, the refit, the metrics
 *                 jsonb and the stored version
 *   train_args.c  arguments and XGBoost parameters: validation, the
 *                 parameter whitelist, the search grid
 *   train_data.c  reading the labelled rows (as the caller), the minimum
 *                 data guards
 *   train_cv.c    stratified k-fold assignment (and icpml.cv_folds()),
 *                 boosting, cross-validation and the search over settings
 */
#ifndef ICPML_TRAIN_H
#define ICPML_TRAIN_H

#include "postgres.h"

#include "fmgr.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"

#include "metrics.h"
#include "spec.h"
#include "xgb.h"

/*
 * Transaction-level advisory lock held while a training runs, so two
 * trainings never overlap: key hashtext('icpml.train_icp_model')::bigint,
 * the same as icpml.training_lock_key() (schedule), so icpml.run_training
 * can take it first (advisory locks are re-entrant within a session).
 */
#define ICPML_TRAIN_LOCK_NAME "icpml.train_icp_model"

/* Training refuses below these (the seed plan's minimums). */
#define TRAIN_MIN_ROWS 50
#define TRAIN_MIN_KEYS 20

#define TRAIN_MAX_FOLDS 20
#define TRAIN_MAX_ROUNDS 10000

/* The XGBoost parameters a caller may set (train_args.c lists them). */
#define TRAIN_NPARAMS 15
#define TRAIN_P_MAX_DEPTH 0
#define TRAIN_P_ETA 1

/* A parameter setting: value per settable parameter, when set. */
typedef struct TrainParams
{
	bool		set[TRAIN_NPARAMS];
	double		value[TRAIN_NPARAMS];
} TrainParams;

/* Validated arguments of a training. */
typedef struct TrainArgs
{
	Oid			relid;
	char	   *relation;		/* quoted, qualified */
	char	   *key;
	char	   *label;
	bool		label_is_bool;
	List	   *exclude;
	int			folds;
	int			n_rounds;
	TrainParams params;
	bool		search;
	int32		seed;
	char	   *deploy;
	SpecEncoding encoding;		/* how text columns become levels */
	bool		rules;			/* the rules can score the relation */
	bool	   *rule_missing;	/* per RulesColumns entry: absent (reads NULL) */
} TrainArgs;

/* Labelled rows in key order. */
typedef struct TrainData
{
	FeatureSpec *spec;			/* NULL: keys and labels only */
	int			nfeat;
	int64		n;
	int64		npos;
	int64		nkeys;
	int64	   *keys;
	float	   *label;
	float	   *x;				/* n x nfeat, row-major, NaN = missing */
	double	   *rules;			/* rules' probability per row, or NULL */
	int		   *fold;
} TrainData;

/* Result of cross-validating one parameter setting. */
typedef struct TrainCv
{
	TrainParams params;
	double	   *oof;			/* out-of-fold probability per row */
	MetricSet  *per_fold;
	MetricSet	mean;
} TrainCv;

/* train_args.c ---------------------------------------------------------- */

/* Validate every argument of train_icp_model (training) or cv_folds into *a. */
extern void TrainParseArgs(FunctionCallInfo fcinfo, TrainArgs *a, bool training);

/* How many settings to cross-validate (the grid with search), and setting i. */
extern int	TrainSearchSize(const TrainArgs *a);
extern void TrainSearchSetting(const TrainArgs *a, int i, TrainParams *out);

/* Set icpml's fixed params and the chosen ones on a booster. */
extern void TrainSetParams(XgbBooster *b, const TrainParams *p, int32 seed);

/*
 * The recipe a stored model was trained with, from its params jsonb:
 * settable parameters (canonical names), n_rounds and seed.
 */
extern void TrainParamsFromJsonb(Jsonb *params, TrainParams *p, int *n_rounds, int32 *seed);
extern bool TrainParamsEqual(const TrainParams *a, const TrainParams *b);

/* Parameter i's value as XGBoost and the params jsonb write it. */
extern char *TrainParamText(int i, double v);

/* The params jsonb of a model trained with setting p. */
extern Jsonb *TrainParamsJsonb(const TrainArgs *a, const TrainParams *p);

/* train_data.c ---------------------------------------------------------- */

/* The WHERE condition selecting labelled rows (alias f). */
extern char *TrainRowFilter(const TrainArgs *a);

/*
 * Read the labelled rows (as the caller) through a cursor, in batches, and
 * put them in key order: key, label, the spec's columns (spec may be NULL)
 * and, with `rules`, the rules' probability.  Inside SPI_connect; results
 * are allocated in `cxt`.
 */
extern TrainData *TrainReadData(const TrainArgs *a, FeatureSpec *spec, bool rules,
								MemoryContext cxt);

/* GUC settings for the reading queries; undo with AtEOXact_GUC(true, level). */
extern int	TrainReadSettings(void);

/* Minimum data guards: ERROR (nothing written) below the minimums. */
extern void TrainGuard(const TrainArgs *a, const TrainData *d);
extern void TrainGuardFolds(const TrainArgs *a, const TrainData *d);

/* train_cv.c ------------------------------------------------------------ */

/*
 * Stratified, shuffled k-fold assignment.  keys[] must be sorted
 * ascending; rows sharing a key get the same fold (a key is positive when
 * any of its rows is).  Keys of each class are shuffled with a splitmix64
 * stream seeded from `seed` (Fisher-Yates), then dealt round-robin to the
 * folds, positives first and the negatives continuing the count, so fold
 * sizes differ by at most one key and every fold gets floor(P/k) or
 * ceil(P/k) positive keys.  fold[i] is 0..k-1.
 */
extern void TrainAssignFolds(const int64 *keys, const float *labels, int64 n,
							 int k, int32 seed, int *fold);

/* A DMatrix of rows (all when `rows` is NULL) with labels and feature types. */
extern XgbMatrix *TrainMatrix(const TrainData *d, const int64 *rows, int64 nrows);

/* Train n_rounds on dtrain, one round at a time (cancel between rounds). */
extern XgbBooster *TrainBoost(XgbMatrix *dtrain, const TrainParams *p, int n_rounds,
							  int32 seed);

/* Metrics of the rows of fold f, and the mean of per-fold metrics. */
extern void TrainFoldMetrics(const TrainData *d, const double *prob, int f, MetricSet *out);
extern void TrainMeanMetrics(const MetricSet *per_fold, int k, MetricSet *mean);

/*
 * Cross-validate one recipe (cv->params, n_rounds boosting rounds with
 * seed) on the folds in d->fold (0 .. folds-1): cv's OOF predictions
 * (allocated in cxt), per-fold and mean metrics.
 */
extern void TrainCrossValidateRecipe(const TrainData *d, int folds, int n_rounds, int32 seed,
									 TrainCv *cv, MemoryContext cxt);

/*
 * Cross-validate every setting of the search (TrainSearchSize) into
 * (*cvs)[0 .. *ncv - 1], allocated in cxt; returns the index of the best
 * by mean ROC AUC, the only one that keeps its OOF predictions.
 */
extern int	TrainSearch(const TrainArgs *a, const TrainData *d, MemoryContext cxt,
						TrainCv **cvs, int *ncv);

#endif							/* ICPML_TRAIN_H */
