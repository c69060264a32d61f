/*
 * xgb.h — icpml's wrapper over the XGBoost C API.  xgb.c is the only file
 * that includes <xgboost/c_api.h>; everything else uses these.
 *
 * Ownership: an XgbBooster / XgbMatrix is palloc'd in the memory context
 * current at creation and frees its XGBoost handle when that context is
 * reset or deleted (memory-context reset callback), so an ERROR anywhere
 * frees it too.  XgbBoosterFree / XgbMatrixFree release it early.
 * Every buffer XGBoost returns is copied into palloc'd memory before the
 * next XGBoost call.  Every call's return code is checked (ERROR with
 * XGBGetLastError()).  Calls that may start OpenMP threads run with signals
 * blocked, so only the backend's main thread takes cancel and timeouts.
 */
#ifndef ICPML_XGB_H
#define ICPML_XGB_H

#include "postgres.h"

typedef struct XgbBooster XgbBooster;
typedef struct XgbMatrix XgbMatrix;

/* prediction kinds (XGBoost's "type") */
#define XGB_PREDICT_VALUE		0	/* probability for binary:logistic */
#define XGB_PREDICT_MARGIN		1	/* raw margin (logit) */
#define XGB_PREDICT_CONTRIBS	2	/* exact TreeSHAP, ncol+1 per row (last = bias) */
#define XGB_PREDICT_APPROX_CONTRIBS 3	/* Saabas per-path contributions */

/* "major.minor.patch" of the XGBoost library loaded at run time. */
extern char *XgbVersionString(void);

/* Dense float matrix (row-major, nrow x ncol); `missing` marks missing cells (use NaN). */
extern XgbMatrix *XgbMatrixFromDense(const float *data, int64 nrow, int ncol, float missing);
extern void XgbMatrixSetLabels(XgbMatrix *m, const float *labels, int64 n);
extern void XgbMatrixSetWeights(XgbMatrix *m, const float *weights, int64 n);
/* types[i]: "q" numeric, "i" indicator, "c" categorical (value = level index) */
extern void XgbMatrixSetFeatureTypes(XgbMatrix *m, const char **types, int ncol);
extern void XgbMatrixSetFeatureNames(XgbMatrix *m, const char **names, int ncol);
extern void XgbMatrixFree(XgbMatrix *m);

/* A new booster with the given training matrices in its cache (may be 0). */
extern XgbBooster *XgbBoosterCreate(XgbMatrix **cache, int ncache);
/* A booster loaded from a saved buffer (UBJSON or JSON); corrupt → ERROR with errcode data_corrupted. */
extern XgbBooster *XgbBoosterLoad(const char *buf, size_t len);
extern void XgbBoosterSetParam(XgbBooster *b, const char *name, const char *value);
/* One boosting round; callers check for interrupts between rounds. */
extern void XgbBoosterUpdateOneIter(XgbBooster *b, int iter, XgbMatrix *dtrain);
extern int	XgbBoosterBoostedRounds(XgbBooster *b);
extern int	XgbBoosterNumFeatures(XgbBooster *b);
/* String attributes saved with the model; Get returns NULL when absent. */
extern void XgbBoosterSetAttr(XgbBooster *b, const char *key, const char *value);
extern char *XgbBoosterGetAttr(XgbBooster *b, const char *key);
/* The feature types ("q", "i", "c") saved with the model; *n = 0 when none. */
extern char **XgbBoosterFeatureTypes(XgbBooster *b, int *n);
/* Save as "ubj" or "json"; returns a palloc'd copy and its length. */
extern char *XgbBoosterSave(XgbBooster *b, const char *format, size_t *len);
/* Predict on a matrix; returns a palloc'd copy of *len floats. */
extern float *XgbBoosterPredict(XgbBooster *b, XgbMatrix *m, int kind, uint64 *len);
/* Predict in place from a dense row-major float array (NaN = missing). */
extern float *XgbBoosterPredictDense(XgbBooster *b, const float *data, int64 nrow, int ncol,
									 int kind, uint64 *len);
/* importance_type: "gain", "total_gain", "weight", "cover", "total_cover".
 * Fills palloc'd names[] and scores[] (features never used in a split are absent). */
extern int	XgbBoosterFeatureScore(XgbBooster *b, const char *importance_type,
								   char ***names, float **scores);
extern void XgbBoosterFree(XgbBooster *b);

#endif							/* ICPML_XGB_H */
