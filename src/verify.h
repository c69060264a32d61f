/*
 * verify.h — checking stored models before they score: ModelValidate is
 * what deploy, rollback, the deploy policy, the model cache and
 * verify_model() run on a version (verify.c).
 */
#ifndef ICPML_VERIFY_H
#define ICPML_VERIFY_H

#include "model.h"
#include "tree.h"
#include "xgb.h"

/* probing rows ModelValidate compares the native evaluator and XGBoost on */
#define MODEL_VALIDATE_PROBE_ROWS 256

/*
 * Check a loaded model record: score cut-offs (no NaN or -Infinity,
 * non-decreasing, finite ones in [0, 1]), the spec (SpecValidate), the blob
 * (loads; as many features as the spec; the feature types and, for models
 * trained by icpml 0.4.0 or later, the spec digest it was trained with
 * match the stored spec), and the native compilation of its trees.  With
 * `probe`, also compare the native evaluator with XGBoost on
 * MODEL_VALIDATE_PROBE_ROWS rows probing the model's own splits.  Any
 * failure is an ERROR (data_corrupted) naming the version and the problem.
 * The booster and the compiled trees are returned when asked for (in the
 * current memory context).
 */
extern void ModelValidate(const ModelRecord *rec, bool probe, XgbBooster **booster_out,
						  TreeModel **tree_out);

#endif							/* ICPML_VERIFY_H */
