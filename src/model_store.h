/*
 * model_store.h — versioned ICP models in icpml.models and their
 * deployment (model_store.c, the only code that touches icpml.models and
 * icpml.deployments), and the validation every stored model passes before
 * it scores.
 */
#ifndef ICPML_MODEL_STORE_H
#define ICPML_MODEL_STORE_H

#include "postgres.h"

#include "utils/jsonb.h"

#include "spec.h"
#include "tree.h"
#include "xgb.h"

#define ICPML_NSCORE_CUTOFFS 9

typedef struct ModelRecord
{
	int32		version;		/* assigned by ModelStoreInsert */
	char	   *blob;			/* XGBoost UBJSON */
	size_t		bloblen;
	FeatureSpec *spec;
	Jsonb	   *spec_json;		/* the spec as stored (loaded records only) */
	char	   *label;			/* label column trained on */
	Jsonb	   *params;			/* XGBoost params + n_rounds, folds, seed */
	Jsonb	   *metrics;		/* see train.c: cv (model, rules), roc, calibration, importance */
	int64		n_rows;
	int64		n_positive;
	int32		seed;
	char	   *fingerprint;	/* md5 over the training rows */
	char	   *xgboost_version;
	/* score = 1 + #{k : probability >= score_cutoffs[k]} */
	double		score_cutoffs[ICPML_NSCORE_CUTOFFS];
	int32		high_min_score; /* priority tiers on the 1..10 score */
	int32		medium_min_score;
	double		cv_auc;			/* mean CV ROC AUC: the deploy policy's yardstick */
	double		rules_cv_auc;	/* the rules on the same folds, NaN when not applicable */
	/* written by training only (not loaded: see ModelStoreLoadHealth) */
	Jsonb	   *training_stats; /* the population it scored (health.c) */
	bytea	   *training_labels;	/* the (key, label) pairs it was trained on */
} ModelRecord;

/* What model_health needs beyond the record: the training statistics. */
typedef struct ModelStoreHealth
{
	Jsonb	   *training_stats; /* NULL for models trained before icpml 0.4.0 */
	bytea	   *training_labels;	/* NULL likewise */
	double		age_days;		/* since the model was trained */
} ModelStoreHealth;

/* Load a version's training statistics (as the extension owner); ERROR if unknown. */
extern void ModelStoreLoadHealth(int32 version, ModelStoreHealth *out);

/* Insert a new version (status 'trained'); returns its version number. */
extern int32 ModelStoreInsert(ModelRecord *rec);

/*
 * The deployed model as training compares a candidate with it: its recipe
 * (parameters, rounds, seed, text encoding) cross-validated on the
 * candidate's own folds (train.c).
 */
typedef struct ModelStoreChampion
{
	int32		version;		/* the deployed version (same dataset) */
	double		cv_auc;			/* its recipe's mean CV ROC AUC on these folds */
	bool		same_recipe;	/* the candidate's recipe is the same */
	bool		same_data;		/* ... and so are the training rows (fingerprint) */
} ModelStoreChampion;

/*
 * Apply a deploy policy to a freshly inserted version: "always", "never",
 * or "best".  Best compares only with a deployed model of the same dataset
 * (relation, key, label, feature columns; a deployed model of another
 * dataset is never replaced by best): with `champion` (its recipe on the
 * candidate's folds) it deploys when the candidate's CV ROC AUC beats it,
 * or when the recipe is the same and the data newer; without, it compares
 * the stored figures.  With nothing deployed, it compares with the rules
 * on the same folds.  Returns true if deployed.  Transactional: rolled
 * back with the caller's transaction.  *reason says what was compared,
 * with the figures; it is allocated in TopTransactionContext (valid until
 * the transaction ends).
 */
extern bool ModelStoreApplyPolicy(int32 version, const char *policy,
								  const ModelStoreChampion *champion, const char **reason);

/*
 * The deployed model, or NULL when none is (scoring then uses the rules).
 * Reads as the extension owner; fills blob, spec, cutoffs, tiers, version.
 */
extern ModelRecord *ModelStoreLoadDeployed(void);

/* The deployed version, 0 when none is (inside SPI, as the extension owner). */
extern int32 ModelStoreDeployedVersion(void);

/* Any stored version (for explain/verify); ERROR if unknown. */
extern ModelRecord *ModelStoreLoad(int32 version);

/* probing rows ModelStoreValidate compares the native evaluator and XGBoost on */
#define MODEL_STORE_PROBE_ROWS 256

/*
 * Check a loaded model record: score cut-offs (no NaN or -Infinity,
 * non-decreasing, finite ones in [0, 1]), the spec (SpecValidate), the blob
 * (loads; as many features as the spec; the feature types and, for models
 * trained by icpml 0.4.0 or later, the spec digest it was trained with
 * match the stored spec), and the native compilation of its trees.  With
 * `probe`, also compare the native evaluator with XGBoost on
 * MODEL_STORE_PROBE_ROWS rows probing the model's own splits.  Any
 * failure is an ERROR (data_corrupted) naming the version and the problem.
 * The booster and the compiled trees are returned when asked for (in the
 * current memory context).
 */
extern void ModelStoreValidate(const ModelRecord *rec, bool probe, XgbBooster **booster_out,
							   TreeModel **tree_out);

#endif							/* ICPML_MODEL_STORE_H */
