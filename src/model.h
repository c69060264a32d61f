/*
 * model.h — the ICP model's shared contracts: the feature spec a model
 * records, the stored model record, and the functions that connect
 * training (train.c), the model store (model_store.c), the native tree
 * evaluator (tree.c) and scoring (score.c, model_cache.c).
 *
 * Encoding of one relation row into a model's float feature vector
 * (NaN = missing; NULL, NaN and +-Infinity inputs are all missing):
 *   numeric      one feature, the value                       type "q"
 *   boolean      one feature, 0/1                             type "i"
 *   categorical  one feature, the level's index in levels[];  type "c"
 *                an unseen level is missing
 *   age_days     one feature, days from the date/timestamp    type "q"
 *                to the transaction start (negative = future)
 *   tags         text[]: one 0/1 feature per level in levels[] type "i"
 *                (tokens lower-cased; NULL array = all missing)
 */
#ifndef ICPML_MODEL_H
#define ICPML_MODEL_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "utils/jsonb.h"

#include "tree.h"
#include "xgb.h"

typedef enum SpecKind
{
	SPEC_NUMERIC,
	SPEC_BOOLEAN,
	SPEC_CATEGORICAL,
	SPEC_AGE_DAYS,
	SPEC_TAGS
} SpecKind;

typedef struct SpecColumn
{
	char	   *name;			/* column name in the relation */
	SpecKind	kind;
	int			nlevels;		/* categorical / tags */
	char	  **levels;
	int			first_feature;	/* index of its first model feature */
	int			nfeatures;		/* 1, or nlevels for tags */
} SpecColumn;

typedef struct FeatureSpec
{
	char	   *relation;		/* schema-qualified, quoted: usable in SQL */
	char	   *key;			/* key column (int8) */
	int			ncolumns;
	SpecColumn *columns;
	int			nfeatures;
	char	  **feature_names;	/* "col" or "col=level" for tags */
	const char **feature_types; /* "q", "i", "c" per feature */
	/*
	 * spec.c's prepared level lookup (sorted levels for binary search),
	 * built by SpecFromJsonb / SpecInfer, or by the first SpecEncodeRow in
	 * the memory context that holds the (palloc'd) spec.  Others: leave it
	 * NULL when building a spec by hand.
	 */
	struct SpecLookup *lookup;
} FeatureSpec;

/* spec.c --------------------------------------------------------------- */

/* Serialise / parse a spec (the models.spec jsonb column). */
extern Jsonb *SpecToJsonb(const FeatureSpec *spec);
extern FeatureSpec *SpecFromJsonb(Jsonb *json);

/* Beyond the shape SpecFromJsonb checks: names, distinct levels (ERROR data_corrupted). */
extern void SpecValidate(const FeatureSpec *spec);

/* md5 of a stored spec's canonical text; training saves it in the booster. */
extern char *SpecDigest(Jsonb *spec_json);
#define ICPML_SPEC_DIGEST_ATTR "icpml_spec_md5"

/*
 * SQL select list reading the spec's columns in order from alias `alias`,
 * each cast so that SpecEncodeRow can read it (float8, bool, text, float8
 * age in days, text[]).  Identifiers quoted; no caller text pasted.
 */
extern char *SpecSelectList(const FeatureSpec *spec, const char *alias);

/* Encode one row: attributes firstatt .. firstatt+ncolumns-1 (1-based). */
extern void SpecEncodeRow(const FeatureSpec *spec, HeapTuple tuple, TupleDesc desc,
						  int firstatt, float *out);

/* model_store.c -------------------------------------------------------- */

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
} ModelRecord;

/* Insert a new version (status 'trained'); returns its version number. */
extern int32 ModelStoreInsert(ModelRecord *rec);

/*
 * Apply a deploy policy to a freshly inserted version: "always", "never",
 * or "best" (deploy only if rec's cv_auc beats the deployed model's, or
 * the rules' on the same folds when nothing is deployed).  Returns true if
 * deployed.  Transactional: rolled back with the caller's transaction.
 * *reason says what was compared, with the figures; it is allocated in
 * TopTransactionContext (valid until the transaction ends).
 */
extern bool ModelStoreApplyPolicy(int32 version, const char *policy, const char **reason);

/*
 * The deployed model, or NULL when none is (scoring then uses the rules).
 * Reads as the extension owner; fills blob, spec, cutoffs, tiers, version.
 */
extern ModelRecord *ModelStoreLoadDeployed(void);

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

#endif							/* ICPML_MODEL_H */
