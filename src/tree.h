/*
 * tree.h — icpml's native evaluator for XGBoost tree ensembles: the fast
 * scoring path.  tree_json.c reads the booster's UBJSON (the stored blob)
 * or JSON, tree.c compiles and walks it, tree_verify.c checks it against
 * XGBoost and benchmarks it.
 *
 * The stored blob is read without XGBoost (once per backend, per deploy:
 * TreeModelFromSaved) — or a loaded booster saved as JSON — and compiled
 * into one array of 16-byte nodes in depth-first order (the left child of
 * node i is node i + 1), with the categorical splits' category sets as
 * bitsets.  Walking it needs no allocation and no XGBoost call, and gives
 * exactly what XGBoost 1.7's CPU predictor computes: the same branch rules
 * (numeric: left iff value < threshold; categorical: right iff the
 * truncated value is in the node's set, left for negative, too large or
 * unlisted values; missing = NaN takes the default branch), and float
 * accumulation in the same order, so margins and Saabas contributions
 * agree bit for bit (the verifier reports the largest difference).
 *
 * Supported: gbtree boosters with objective binary:logistic or
 * reg:logistic, one output group, numeric and categorical splits.
 * Anything else (multi-class, other objectives, dart, gblinear,
 * multi-target trees) is refused: TreeModelFromBooster raises ERROR with
 * errcode feature_not_supported, TreeModelTryFromBooster returns NULL and
 * the reason, so the caller can fall back to XGBoost's own predictor.
 *
 * Speed: trees are walked eight at a time, a fixed number of steps, with
 * no branch that depends on the row (see TREE_SLOT and the leaf layout
 * below), so the CPU overlaps the trees' memory loads.  About 0.8 us a row
 * for 100 trees of depth 6 (XGBoost's own single-row predict: ~17 us).
 *
 * Memory: everything a TreeModel owns is palloc'd in the memory context
 * current at compile time (JSON parsing uses a temporary child context);
 * TreeModelFree releases it early.  A TreeModel is read-only after
 * compilation except for its private scratch (the row's slots, the Saabas
 * sums and path) written by every walk, so one model must not be walked by
 * two threads at once (backends are single-threaded).
 */
#ifndef ICPML_TREE_H
#define ICPML_TREE_H

#include "postgres.h"

#include "xgb.h"

#define TREE_DEFAULT_LEFT	0x1		/* TreeNode.info: missing goes left */
#define TREE_CATEGORICAL	0x2		/* TreeNode.info: categorical split */
#define TREE_IS_LEAF		0x4		/* TreeNode.info: a leaf */
#define TREE_INFO_SHIFT		3		/* TreeNode.info >> 3: bitset offset */
#define TREE_GROUP			8		/* trees walked side by side */

/* XGBoost's categorical values must be below this (common::OutOfRangeCat). */
#define TREE_MAX_CATEGORY	16777216.0f

/*
 * A row is spread into TREE_NSLOTS floats per feature before a walk, so a
 * numeric split is a single comparison whatever the row holds: slot 0 has
 * missing (NaN) as +Infinity (for splits whose missing values go right),
 * slot 1 as -Infinity (missing goes left), slot 3 the category code (for
 * categorical splits: the truncated value, or missing, or invalid when
 * negative or >= 2^24).  TreeNode.feature is the slot index
 * TREE_SLOT(feature, slot); TreeNodeFeature gives the feature back.
 *
 * A leaf is a split that always goes right to itself (slot 0 of feature 0,
 * threshold -Infinity, right = itself), so a group of trees can be walked a
 * fixed number of steps without a branch per node; its value is its mean.
 */
#define TREE_NSLOTS				4
#define TREE_SLOT_MISSING_HIGH	0
#define TREE_SLOT_MISSING_LOW	1
#define TREE_SLOT_CATEGORY		3	/* the last slot (TreeStep ORs it in); uint32:
									 * the category, or one of: */
#define TREE_CATEGORY_MISSING	0xFFFFFFFFu
#define TREE_CATEGORY_INVALID	0xFFFFFFFEu
#define TREE_SLOT(f, slot)		((f) * TREE_NSLOTS + (slot))

typedef struct TreeNode
{
	int32		feature;		/* TREE_SLOT(split feature, slot); 0 at a leaf */
	float		value;			/* threshold of a numeric split */
	int32		right;			/* right child; the left child is this node + 1 */
	uint32		info;			/* flags, and for a categorical split the offset of
								 * its bitset in catbits (word count, the words,
								 * one zero word) */
} TreeNode;

#define TreeNodeFeature(n)	((int32) ((uint32) (n)->feature / TREE_NSLOTS))
#define TreeNodeIsLeaf(n)	(((n)->info & TREE_IS_LEAF) != 0)

/* The Saabas step from a node's parent into the node (root: 0, 0). */
typedef struct TreeSaabasStep
{
	float		delta;			/* its mean minus its parent's */
	int32		parent_feature; /* the parent's split feature */
} TreeSaabasStep;

/* One feature's total Saabas change along a leaf's path. */
typedef struct TreeLeafContrib
{
	int32		feature;
	float		sum;			/* its steps' deltas summed in path order, in float */
} TreeLeafContrib;

/* per-leaf Saabas tables above this many entries are not built (memory) */
#define TREE_MAX_LEAF_CONTRIBS	(1 << 22)

typedef struct TreeModel
{
	int			nfeatures;		/* row width; contributions have nfeatures + 1 */
	int			ntrees;
	int			nnodes;			/* reachable nodes over all trees */
	int			max_depth;		/* longest root-to-leaf path, in splits */
	bool		has_categorical;
	float		base_score;		/* as stored (probability) */
	float		base_margin;	/* logit(base_score), computed as XGBoost does */
	int32	   *roots;			/* ntrees: index of each tree's root in nodes */
	TreeNode   *nodes;
	float	   *means;			/* per node: hessian-weighted mean of its leaves;
								 * at a leaf, the leaf value */
	TreeSaabasStep *step;		/* per node: the Saabas step into it */
	int			ngroups;		/* ceil(ntrees / TREE_GROUP) */
	int32	   *group_depth;	/* per group: steps that reach every leaf */
	uint32	   *catbits;
	int			ncatbits;

	/*
	 * Saabas contributions precomputed per leaf, so that TreeModelSaabas is
	 * the margin's walk plus a few additions per tree: the contributions of
	 * leaf node i are leaf_contrib[leaf_first[i] .. leaf_first[i + 1] - 1],
	 * each feature of its path once, in the order of first appearance.
	 * Their floats are XGBoost's own sums (see TreeModelSaabas).  NULL
	 * (both) for models too large for the tables: the walk then replays
	 * each path.
	 */
	int32	   *leaf_first;		/* nnodes + 1 */
	TreeLeafContrib *leaf_contrib;
	float		root_bias;		/* the trees' root means summed in tree order */
	/* private scratch of the walks */
	float	   *slots;			/* TREE_NSLOTS * nfeatures: the row being walked */
	float	   *tree_sum;		/* nfeatures, all 0 between calls */
	float	   *row_sum;		/* nfeatures */
	int32	   *path_nodes;		/* (max_depth + 1) * TREE_GROUP */
} TreeModel;

/* tree_json.c: reading the booster's JSON (for tree.c) ------------------ */

/* Kinds of JSON value. */
typedef enum TreeJsonKind
{
	JK_NULL,
	JK_BOOL,
	JK_NUMBER,
	JK_STRING,
	JK_ARRAY,
	JK_OBJECT
} TreeJsonKind;

/* One JSON value, as the reader builds them. */
typedef struct TreeJsonNode
{
	TreeJsonKind kind;
	int			n;				/* members (object) or elements (array) */
	bool		boolean;		/* JK_BOOL */
	const char *num;			/* JK_NUMBER: its token in the text */
	char	   *str;			/* JK_STRING: decoded */
	char	  **keys;			/* JK_OBJECT */
	struct TreeJsonNode **items;		/* object values; array elements unless nums */
	const char **nums;			/* array of numbers only: their tokens */
	/*
	 * A UBJSON typed array of numbers (XGBoost writes its node arrays that
	 * way): the element type marker and the big-endian elements in the
	 * saved buffer, converted on use (the buffer must outlive the node).
	 */
	char		ubtype;			/* 0, or one of i U I l L d D */
	const unsigned char *raw;
} TreeJsonNode;

/* Parse a model text (need not be NUL-terminated); ERROR when malformed. */
extern TreeJsonNode *TreeJsonParse(const char *text, size_t len);

/*
 * Parse a model saved as UBJSON (XGBoost's "ubj" format, what icpml
 * stores); typed arrays point into buf.  ERROR when malformed.
 */
extern TreeJsonNode *TreeJsonParseUbjson(const char *buf, size_t len);

/* Is this saved model UBJSON (rather than JSON text)? */
extern bool TreeJsonIsUbjson(const char *buf, size_t len);

/* Member of an object, or NULL. */
extern TreeJsonNode *TreeJsonGet(const TreeJsonNode *obj, const char *key);

/* Member that must exist with the given kind; TreeCorrupt otherwise. */
extern TreeJsonNode *TreeJsonRequire(const TreeJsonNode *obj, const char *key,
									 TreeJsonKind kind);

/* Element i of an array as a float (numbers, or numeric strings). */
extern float TreeJsonArrayFloat(const TreeJsonNode *a, int i, const char *what);

/* Element i of an array as an integer (booleans count as 0/1). */
extern int64 TreeJsonArrayInt(const TreeJsonNode *a, int i, const char *what);

/* An integer written as a JSON string ("num_nodes": "127"), or dflt when absent. */
extern int64 TreeJsonStringInt(const TreeJsonNode *obj, const char *key, int64 dflt);

/*
 * ERROR (data_corrupted) for a model the JSON reader understood but whose
 * content is inconsistent.
 */
extern void TreeCorrupt(const char *fmt,...) pg_attribute_printf(1, 2) pg_attribute_noreturn();

/* tree.c: compiling and walking --------------------------------------- */

/*
 * Compile a booster (saved as JSON) for rows of nfeatures floats;
 * nfeatures <= 0 takes the booster's own count, otherwise the two must
 * agree.  Unsupported model → ERROR (feature_not_supported); a structurally
 * broken model → ERROR (data_corrupted).
 */
extern TreeModel *TreeModelFromBooster(XgbBooster *b, int nfeatures);

/* The same, but an unsupported model returns NULL and *reason (palloc'd). */
extern TreeModel *TreeModelTryFromBooster(XgbBooster *b, int nfeatures, char **reason);

/* Compile from an XGBoost JSON model text (need not be NUL-terminated). */
extern TreeModel *TreeModelFromJson(const char *json, size_t len, int nfeatures,
									char **reason);

/* What a saved booster records about itself (TreeModelFromSaved). */
typedef struct TreeSavedInfo
{
	int64		nfeatures;		/* learner_model_param.num_feature */
	int			ntypes;			/* learner.feature_types; 0 when none */
	char	  **feature_types;
	char	   *attr_value;		/* learner.attributes[attr], NULL when absent */
} TreeSavedInfo;

/*
 * Compile a saved booster without XGBoost: the UBJSON icpml stores (or JSON
 * text), for rows of the booster's own feature count.  Fills *info (attr
 * names the one attribute to read, may be NULL).  Malformed → ERROR
 * (data_corrupted); unsupported → ERROR (feature_not_supported).
 */
extern TreeModel *TreeModelFromSaved(const char *buf, size_t len, const char *attr,
									 TreeSavedInfo *info);

extern void TreeModelFree(TreeModel *m);

/* Raw margin (logit) of one row of m->nfeatures floats, NaN = missing. */
extern double TreeModelMargin(const TreeModel *m, const float *row);

/*
 * Saabas ("approximate") contributions, as XGBoost's pred_contribs with
 * approx_contribs: contrib[f] sums, over every split on f along the row's
 * path, the change of the node's mean value (hessian-weighted mean of its
 * leaves) from parent to child; contrib[nfeatures] is the bias (base margin
 * plus the root means).  Fills contrib[0 .. nfeatures] and returns the
 * margin; the contributions sum to it (up to float rounding).
 */
extern double TreeModelSaabas(const TreeModel *m, const float *row, double *contrib);

/* Probability from a margin, computed exactly as XGBoost's sigmoid (float). */
extern double TreeModelProbability(double margin);

/* tree_verify.c: verifying and benchmarking ----------------------------- */

/*
 * nrow x m->nfeatures probing rows (palloc'd, row-major) built from the
 * model's own splits: values at, just below and around each threshold,
 * categories inside, outside and beyond each set, negative, fractional and
 * huge categories, NaN.  Deterministic for a seed.
 */
extern float *TreeModelProbeRows(const TreeModel *m, int64 nrow, uint64 seed);

/* What TreeVerify found (largest absolute differences). */
typedef struct TreeVerifyResult
{
	int64		n_rows;
	int			n_trees;
	int			n_categorical_splits;
	double		max_margin_diff;	/* native vs XGBoost type 1 */
	double		max_contrib_diff;	/* native Saabas vs XGBoost type 3 */
	double		max_probability_diff;	/* native vs XGBoost type 0 */
	double		max_shap_sum_diff;	/* |sum of XGBoost exact SHAP - margin|, or NaN */
	int64		n_shap_rows;	/* rows the SHAP sum was checked on */
} TreeVerifyResult;

/*
 * Compare the native evaluator with XGBoost on a dense row-major matrix
 * (NaN = missing; ncol must be t->nfeatures).  shap_rows > 0 also checks
 * that XGBoost's exact SHAP values (type 2) of the first shap_rows rows
 * sum to the margin.
 */
extern void TreeVerify(XgbBooster *b, const TreeModel *t, const float *X, int64 nrow,
					   int ncol, int64 shap_rows, TreeVerifyResult *res);

/* TreeVerify without the SHAP check, reporting the two main differences. */
extern void TreeVerifyMatrix(XgbBooster *b, TreeModel *t, const float *X, int64 nrow,
							 int ncol, double *max_margin_diff, double *max_contrib_diff);

#endif							/* ICPML_TREE_H */
