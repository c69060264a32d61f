/*
 * tree.c — native evaluator for XGBoost tree ensembles (see tree.h):
 * compiling a booster and walking the compiled trees.
 *
 * Phases:
 *   1. read: the stored UBJSON blob as it is (TreeModelFromSaved: the
 *      scoring path, no XGBoost), or a loaded booster saved as JSON by
 *      XGBoost itself (xgb.c);
 *   2. parse: tree_json.c builds a tree of JSON values in a temporary
 *      memory context;
 *   3. compile: every tree is checked (children in range, each node reached
 *      once from the root, split features inside the row) and laid out in
 *      depth-first order in one node array; categorical category lists
 *      become bitsets; the Saabas node means are computed in float in the
 *      order XGBoost's FillNodeMeanValues uses;
 *   4. walk: TreeModelMargin / TreeModelSaabas, no allocation per row.
 *      The row is first spread into per-feature slots (missing as +-Inf
 *      for numeric splits, a category code for categorical ones), then the
 *      trees are walked eight at a time for a fixed number of steps with
 *      branch-free steps (leaves loop to themselves); Saabas adds each
 *      leaf's precomputed per-feature totals (or, for models too large
 *      for those tables, records the eight paths and replays them).
 *
 * The branch rules and the float accumulation order follow XGBoost 1.7.4
 * (src/predictor/predict_fn.h, src/common/categorical.h,
 * src/predictor/cpu_predictor.cc, RegTree::CalculateContributionsApprox),
 * checked empirically by icpml.verify_tree_evaluator() (tree_verify.c).
 */
#include "postgres.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <time.h>

#include "common/pg_prng.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/memutils.h"

#include "icpml.h"
#include "tree.h"
#include "xgb.h"

/* Array member of a tree with exactly n elements. */
static TreeJsonNode *
TreeArray(const TreeJsonNode *tree, const char *key, int n, int treeno)
{
	TreeJsonNode *a = TreeJsonGet(tree, key);

	if (a == NULL || a->kind != JK_ARRAY)
		TreeCorrupt("tree %d lacks \"%s\"", treeno, key);
	if (n >= 0 && a->n != n)
		TreeCorrupt("tree %d: \"%s\" has %d elements, expected %d", treeno, key, a->n, n);
	return a;
}

/* ---------------------------------------------------------------------
 * Compilation
 * --------------------------------------------------------------------- */

typedef struct TreeBuild
{
	TreeModel  *m;
	int			node_cap;		/* nodes allocated */
	float	   *hess;			/* per compiled node */
	uint32	   *catbits;		/* growing pool (temporary context) */
	int			ncatbits;
	int			catcap;
} TreeBuild;

/* Append a categorical split's bitset to the pool; returns its offset. */
static uint32
TreeAddBitset(TreeBuild *tb, const TreeJsonNode *cats, int64 seg, int64 size, int treeno)
{
	int64		j,
				maxcat = -1;
	int			nwords;
	uint32		off;

	for (j = seg; j < seg + size; j++)
	{
		int64		c = TreeJsonArrayInt(cats, (int) j, "categories");

		if (c < 0 || c >= (int64) TREE_MAX_CATEGORY)
			TreeCorrupt("tree %d: category %lld out of range", treeno, (long long) c);
		maxcat = Max(maxcat, c);
	}
	nwords = (size > 0) ? (int) (maxcat / 32 + 1) : 0;
	if ((int64) tb->ncatbits + nwords + 2 >= (int64) 1 << (32 - TREE_INFO_SHIFT))
		TreeCorrupt("too many categorical splits");
	while (tb->ncatbits + nwords + 2 > tb->catcap)
	{
		tb->catcap = tb->catcap ? tb->catcap * 2 : 256;
		tb->catbits = tb->catbits ? repalloc(tb->catbits, sizeof(uint32) * tb->catcap) :
			palloc(sizeof(uint32) * tb->catcap);
	}
	off = tb->ncatbits;
	tb->catbits[off] = nwords;
	/* the words, then a zero word that every category beyond them reads */
	memset(&tb->catbits[off + 1], 0, sizeof(uint32) * (nwords + 1));
	for (j = seg; j < seg + size; j++)
	{
		int64		c = TreeJsonArrayInt(cats, (int) j, "categories");

		tb->catbits[off + 1 + c / 32] |= (uint32) 1 << (c % 32);
	}
	tb->ncatbits += nwords + 2;
	return off;
}

/*
 * Compile one tree (JSON object) into tb->m->nodes from position m->nnodes;
 * returns its depth (longest root-to-leaf path, in splits).
 */
static int
TreeCompileOne(TreeBuild *tb, const TreeJsonNode *tree, int treeno)
{
	TreeModel  *m = tb->m;
	TreeJsonNode *tp = TreeJsonRequire(tree, "tree_param", JK_OBJECT);
	int64		nn = TreeJsonStringInt(tp, "num_nodes", -1);
	TreeJsonNode *lefts,
			   *rights,
			   *indices,
			   *conds,
			   *dleft,
			   *hessians,
			   *stype,
			   *cats = NULL,
			   *cnodes = NULL,
			   *csegs = NULL,
			   *csizes = NULL;
	int32	   *catseg;
	bool	   *seen;
	int32	   *st_id,
			   *st_patch,
			   *st_depth;
	int			sp = 0;
	int			first = m->nnodes;
	int			tree_depth = 0;
	int			pos;
	int			i;

	if (nn < 1 || nn > (int64) (MaxAllocSize / sizeof(TreeNode)))
		TreeCorrupt("tree %d: invalid num_nodes", treeno);
	if (m->nnodes + nn > tb->node_cap)
		TreeCorrupt("tree %d: more nodes than declared", treeno);
	lefts = TreeArray(tree, "left_children", (int) nn, treeno);
	rights = TreeArray(tree, "right_children", (int) nn, treeno);
	indices = TreeArray(tree, "split_indices", (int) nn, treeno);
	conds = TreeArray(tree, "split_conditions", (int) nn, treeno);
	dleft = TreeArray(tree, "default_left", (int) nn, treeno);
	hessians = TreeArray(tree, "sum_hessian", (int) nn, treeno);
	stype = TreeJsonGet(tree, "split_type");
	if (stype != NULL)
		stype = TreeArray(tree, "split_type", (int) nn, treeno);

	/* node -> its entry in categories_nodes, -1 when none */
	catseg = palloc(sizeof(int32) * nn);
	for (i = 0; i < nn; i++)
		catseg[i] = -1;
	if (stype != NULL && TreeJsonGet(tree, "categories_nodes") != NULL)
	{
		cnodes = TreeArray(tree, "categories_nodes", -1, treeno);
		csegs = TreeArray(tree, "categories_segments", cnodes->n, treeno);
		csizes = TreeArray(tree, "categories_sizes", cnodes->n, treeno);
		cats = TreeArray(tree, "categories", -1, treeno);
		for (i = 0; i < cnodes->n; i++)
		{
			int64		node = TreeJsonArrayInt(cnodes, i, "categories_nodes");

			if (node < 0 || node >= nn)
				TreeCorrupt("tree %d: categorical node %lld out of range", treeno, (long long) node);
			catseg[node] = i;
		}
	}

	/*
	 * Depth-first layout from the root: push the right child, then the left
	 * one, so the left child always lands right after its parent; the right
	 * child patches its parent's link when it is placed.  A node reached
	 * twice means the "tree" has a cycle or shared nodes.
	 */
	seen = palloc0(sizeof(bool) * nn);
	st_id = palloc(sizeof(int32) * (2 * nn + 1));
	st_patch = palloc(sizeof(int32) * (2 * nn + 1));
	st_depth = palloc(sizeof(int32) * (2 * nn + 1));
	st_id[sp] = 0;
	st_patch[sp] = -1;
	st_depth[sp] = 0;
	sp++;
	while (sp > 0)
	{
		int32		id,
					patch,
					depth;
		int64		left,
					right,
					feature;
		TreeNode   *node;

		sp--;
		id = st_id[sp];
		patch = st_patch[sp];
		depth = st_depth[sp];
		if (seen[id])
			TreeCorrupt("tree %d: node %d is reached twice", treeno, id);
		seen[id] = true;
		pos = m->nnodes++;
		node = &m->nodes[pos];
		if (patch >= 0)
			m->nodes[patch].right = pos;
		tb->hess[pos] = TreeJsonArrayFloat(hessians, id, "sum_hessian");

		left = TreeJsonArrayInt(lefts, id, "left_children");
		if (left == -1)
		{
			/* a split to itself that always goes right (see tree.h) */
			node->feature = 0;
			node->value = -INFINITY;
			node->right = pos;
			node->info = TREE_IS_LEAF;
			m->means[pos] = TreeJsonArrayFloat(conds, id, "split_conditions");
			tree_depth = Max(tree_depth, depth);
			continue;
		}
		right = TreeJsonArrayInt(rights, id, "right_children");
		feature = TreeJsonArrayInt(indices, id, "split_indices");
		if (left < 0 || left >= nn || right < 0 || right >= nn)
			TreeCorrupt("tree %d: node %d has a child out of range", treeno, id);
		if (feature < 0 || feature >= m->nfeatures)
			TreeCorrupt("tree %d: node %d splits on feature %lld of %d",
						treeno, id, (long long) feature, m->nfeatures);
		node->value = TreeJsonArrayFloat(conds, id, "split_conditions");
		node->right = -1;		/* patched when the right child is placed */
		node->info = TreeJsonArrayInt(dleft, id, "default_left") ? TREE_DEFAULT_LEFT : 0;
		node->feature = TREE_SLOT((int32) feature, (node->info & TREE_DEFAULT_LEFT) ?
								  TREE_SLOT_MISSING_LOW : TREE_SLOT_MISSING_HIGH);
		if (stype != NULL)
		{
			int64		t = TreeJsonArrayInt(stype, id, "split_type");

			if (t == 1)
			{
				uint32		off;

				if (catseg[id] >= 0)
				{
					int64		seg = TreeJsonArrayInt(csegs, catseg[id], "categories_segments");
					int64		size = TreeJsonArrayInt(csizes, catseg[id], "categories_sizes");

					if (seg < 0 || size < 1 || seg + size > cats->n)
						TreeCorrupt("tree %d: node %d has an invalid category segment", treeno, id);
					off = TreeAddBitset(tb, cats, seg, size, treeno);
				}
				else
					off = TreeAddBitset(tb, NULL, 0, 0, treeno);	/* no set: always left */
				node->info |= TREE_CATEGORICAL | (off << TREE_INFO_SHIFT);
				/* the numeric comparison it also makes reads a plain float */
				node->feature = TREE_SLOT((int32) feature, TREE_SLOT_MISSING_HIGH);
				node->value = 0.0f;
				m->has_categorical = true;
			}
			else if (t != 0)
				TreeCorrupt("tree %d: node %d has split type %lld", treeno, id, (long long) t);
		}
		st_id[sp] = (int32) right;
		st_patch[sp] = pos;
		st_depth[sp] = depth + 1;
		sp++;
		st_id[sp] = (int32) left;
		st_patch[sp] = -1;
		st_depth[sp] = depth + 1;
		sp++;
	}

	/*
	 * Node means for Saabas contributions, children before parents (reverse
	 * depth-first order), with XGBoost's float operations in its order:
	 * (mean(left) * hess(left) + mean(right) * hess(right)) / hess(node).
	 */
	for (pos = m->nnodes - 1; pos >= first; pos--)
	{
		TreeNode   *node = &m->nodes[pos];

		if (!TreeNodeIsLeaf(node))
		{
			int32		l = pos + 1,
						r = node->right;
			float		result;

			result = m->means[l] * tb->hess[l];
			result += m->means[r] * tb->hess[r];
			result /= tb->hess[pos];
			m->means[pos] = result;
		}
	}

	/*
	 * Each child's Saabas step: the change of mean from its parent (the
	 * same float subtraction XGBoost does on the way down) and the parent's
	 * split feature.
	 */
	m->step[first].delta = 0.0f;
	m->step[first].parent_feature = 0;
	for (pos = first; pos < m->nnodes; pos++)
	{
		TreeNode   *node = &m->nodes[pos];

		if (!TreeNodeIsLeaf(node))
		{
			int32		l = pos + 1,
						r = node->right;

			m->step[l].delta = m->means[l] - m->means[pos];
			m->step[r].delta = m->means[r] - m->means[pos];
			m->step[l].parent_feature = m->step[r].parent_feature = TreeNodeFeature(node);
		}
	}
	m->max_depth = Max(m->max_depth, tree_depth);
	return tree_depth;
}

/*
 * The per-leaf Saabas tables (see tree.h).  For each leaf, walk its path
 * from the root: each step adds its delta to its parent's split feature's
 * total, in path order and in float, exactly as TreeSaabasImpl's first pass
 * does per tree; the totals are then listed once per feature in order of
 * first appearance, as its second pass adds them.  Also the bias: the root
 * means summed in tree order.
 */
static void
TreeBuildLeafContribs(TreeModel *m, MemoryContext outcxt)
{
	int64		total = 0;
	int32	   *path = palloc(sizeof(int32) * (m->max_depth + 2));
	int32	   *feats = palloc(sizeof(int32) * (m->max_depth + 1));
	float	   *sums = palloc(sizeof(float) * (m->max_depth + 1));
	int32	   *stack = palloc(sizeof(int32) * 2 * (m->max_depth + 2));
	int			t,
				pass;

	m->root_bias = 0.0f;
	for (t = 0; t < m->ntrees; t++)
		m->root_bias += m->means[m->roots[t]];
	m->leaf_first = NULL;
	m->leaf_contrib = NULL;

	/* pass 0 counts the entries, pass 1 fills them */
	for (pass = 0; pass < 2; pass++)
	{
		int64		n = 0;

		if (pass == 1)
		{
			if (total > TREE_MAX_LEAF_CONTRIBS)
				break;
			m->leaf_first = MemoryContextAllocZero(outcxt, sizeof(int32) * (m->nnodes + 1));
			m->leaf_contrib = MemoryContextAlloc(outcxt, sizeof(TreeLeafContrib) * Max(total, 1));
		}
		for (t = 0; t < m->ntrees; t++)
		{
			/* depth-first from the root: (node, depth) pairs */
			int			sp = 0;

			stack[sp++] = m->roots[t];
			stack[sp++] = 0;
			while (sp > 0)
			{
				int32		depth = stack[--sp];
				int32		i = stack[--sp];
				const TreeNode *node = &m->nodes[i];

				path[depth] = i;
				if (!TreeNodeIsLeaf(node))
				{
					if (depth + 1 > m->max_depth)
						TreeCorrupt("a path is longer than the model's depth");
					stack[sp++] = node->right;
					stack[sp++] = depth + 1;
					stack[sp++] = i + 1;
					stack[sp++] = depth + 1;
					continue;
				}
				{
					int			nf = 0,
								s,
								k;

					for (s = 1; s <= depth; s++)
					{
						int32		f = m->step[path[s]].parent_feature;

						for (k = 0; k < nf && feats[k] != f; k++)
							;
						if (k == nf)
						{
							feats[nf] = f;
							sums[nf] = 0.0f;
							nf++;
						}
						sums[k] += m->step[path[s]].delta;
					}
					if (pass == 1)
					{
						m->leaf_first[i] = (int32) n;
						for (k = 0; k < nf; k++)
						{
							m->leaf_contrib[n + k].feature = feats[k];
							m->leaf_contrib[n + k].sum = sums[k];
						}
						/* the next node in layout order starts after this leaf */
						m->leaf_first[i + 1] = (int32) (n + nf);
					}
					n += nf;
				}
			}
		}
		total = n;
	}
	pfree(path);
	pfree(feats);
	pfree(sums);
	pfree(stack);
}

/* Why a model is not supported, or NULL (checked before any compilation). */
static char *
TreeUnsupported(const TreeJsonNode *learner)
{
	TreeJsonNode *gb = TreeJsonRequire(learner, "gradient_booster", JK_OBJECT);
	TreeJsonNode *name = TreeJsonRequire(gb, "name", JK_STRING);
	TreeJsonNode *obj = TreeJsonRequire(learner, "objective", JK_OBJECT);
	TreeJsonNode *oname = TreeJsonRequire(obj, "name", JK_STRING);
	TreeJsonNode *lmp = TreeJsonRequire(learner, "learner_model_param", JK_OBJECT);
	TreeJsonNode *model;
	int64		v;

	if (strcmp(name->str, "gbtree") != 0)
		return psprintf("booster \"%s\" (only gbtree is)", name->str);
	if (strcmp(oname->str, "binary:logistic") != 0 && strcmp(oname->str, "reg:logistic") != 0)
		return psprintf("objective \"%s\" (only binary:logistic and reg:logistic are)", oname->str);
	v = TreeJsonStringInt(lmp, "num_class", 0);
	if (v > 1)
		return psprintf("multi-class model with %lld classes", (long long) v);
	v = TreeJsonStringInt(lmp, "num_target", 1);
	if (v != 1)
		return psprintf("multi-target model with %lld targets", (long long) v);
	model = TreeJsonRequire(gb, "model", JK_OBJECT);
	if (TreeJsonStringInt(TreeJsonGet(model, "gbtree_model_param"), "size_leaf_vector", 0) != 0)
		return pstrdup("vector-leaf trees");
	return NULL;
}

/* Compile a parsed model (inside the temporary context; output in outcxt). */
static TreeModel *
TreeCompile(const TreeJsonNode *root, int nfeatures, MemoryContext outcxt, char **reason)
{
	TreeJsonNode *learner = TreeJsonRequire(root, "learner", JK_OBJECT);
	TreeJsonNode *lmp,
			   *model,
			   *trees,
			   *info,
			   *bs;
	char	   *why;
	int64		model_nfeatures;
	int64		total = 0;
	float		base_score;
	char	   *end;
	TreeBuild	tb;
	TreeModel  *m;
	int			t;

	why = TreeUnsupported(learner);
	if (why != NULL)
	{
		*reason = MemoryContextStrdup(outcxt, why);
		return NULL;
	}
	lmp = TreeJsonRequire(learner, "learner_model_param", JK_OBJECT);
	model = TreeJsonRequire(TreeJsonRequire(learner, "gradient_booster", JK_OBJECT), "model", JK_OBJECT);
	trees = TreeJsonRequire(model, "trees", JK_ARRAY);
	info = TreeJsonRequire(model, "tree_info", JK_ARRAY);

	model_nfeatures = TreeJsonStringInt(lmp, "num_feature", -1);
	if (model_nfeatures < 1 || model_nfeatures > INT_MAX / 2)
		TreeCorrupt("invalid num_feature");
	if (nfeatures <= 0)
		nfeatures = (int) model_nfeatures;
	else if (nfeatures != model_nfeatures)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("XGBoost model has %lld features, expected %d",
						(long long) model_nfeatures, nfeatures),
				 errhint("The model's feature spec does not match its booster; retrain the model.")));

	bs = TreeJsonRequire(lmp, "base_score", JK_STRING);
	base_score = strtof(bs->str, &end);
	if (end == bs->str || *end != '\0' || !(base_score > 0.0f && base_score < 1.0f))
		TreeCorrupt("base_score \"%s\" is not a probability", bs->str);

	if (trees->nums != NULL || (trees->n > 0 && trees->items == NULL))
		TreeCorrupt("\"trees\" is not an array of trees");
	if (info->n != trees->n)
		TreeCorrupt("\"tree_info\" has %d entries for %d trees", info->n, trees->n);
	for (t = 0; t < trees->n; t++)
	{
		if (trees->items[t]->kind != JK_OBJECT)
			TreeCorrupt("tree %d is not an object", t);
		if (TreeJsonArrayInt(info, t, "tree_info") != 0)
			TreeCorrupt("tree %d belongs to output group %lld", t,
						(long long) TreeJsonArrayInt(info, t, "tree_info"));
		if (TreeJsonStringInt(TreeJsonGet(trees->items[t], "tree_param"), "size_leaf_vector", 0) != 0)
		{
			*reason = MemoryContextStrdup(outcxt, "vector-leaf trees");
			return NULL;
		}
		total += TreeJsonStringInt(TreeJsonRequire(trees->items[t], "tree_param", JK_OBJECT),
								   "num_nodes", 0);
		if (total > (int64) (MaxAllocSize / sizeof(TreeNode)))
			TreeCorrupt("too many nodes");
	}

	m = MemoryContextAllocZero(outcxt, sizeof(TreeModel));
	m->nfeatures = nfeatures;
	m->ntrees = trees->n;
	m->base_score = base_score;
	/* LogisticRegression::ProbToMargin, in float */
	m->base_margin = -logf(1.0f / base_score - 1.0f);
	m->roots = MemoryContextAlloc(outcxt, sizeof(int32) * Max(m->ntrees, 1));
	m->nodes = MemoryContextAlloc(outcxt, sizeof(TreeNode) * Max(total, 1));
	m->means = MemoryContextAlloc(outcxt, sizeof(float) * Max(total, 1));
	m->step = MemoryContextAlloc(outcxt, sizeof(TreeSaabasStep) * Max(total, 1));
	m->ngroups = (m->ntrees + TREE_GROUP - 1) / TREE_GROUP;
	m->group_depth = MemoryContextAllocZero(outcxt, sizeof(int32) * Max(m->ngroups, 1));

	memset(&tb, 0, sizeof(tb));
	tb.m = m;
	tb.node_cap = (int) total;
	tb.hess = palloc(sizeof(float) * Max(total, 1));
	/* offset 0: an empty set, which numeric splits read harmlessly (TreeStep) */
	(void) TreeAddBitset(&tb, NULL, 0, 0, -1);
	for (t = 0; t < trees->n; t++)
	{
		int			depth;

		CHECK_FOR_INTERRUPTS();
		m->roots[t] = m->nnodes;
		depth = TreeCompileOne(&tb, trees->items[t], t);
		m->group_depth[t / TREE_GROUP] = Max(m->group_depth[t / TREE_GROUP], depth);
	}

	TreeBuildLeafContribs(m, outcxt);

	m->ncatbits = tb.ncatbits;
	m->catbits = MemoryContextAlloc(outcxt, sizeof(uint32) * tb.ncatbits);
	memcpy(m->catbits, tb.catbits, sizeof(uint32) * tb.ncatbits);
	m->slots = MemoryContextAllocZero(outcxt, sizeof(float) * TREE_NSLOTS * m->nfeatures);
	m->tree_sum = MemoryContextAllocZero(outcxt, sizeof(float) * m->nfeatures);
	m->row_sum = MemoryContextAllocZero(outcxt, sizeof(float) * m->nfeatures);
	m->path_nodes = MemoryContextAlloc(outcxt, sizeof(int32) * (m->max_depth + 1) * TREE_GROUP);
	return m;
}

TreeModel *
TreeModelFromJson(const char *json, size_t len, int nfeatures, char **reason)
{
	MemoryContext outcxt = CurrentMemoryContext;
	MemoryContext tmpcxt;
	MemoryContext oldcxt;
	TreeModel  *m;
	char	   *text;
	TreeJsonNode *root;

	*reason = NULL;
	tmpcxt = AllocSetContextCreate(CurrentMemoryContext, "icpml tree compile",
								   ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(tmpcxt);
	/* a NUL-terminated copy, so strtof always stops */
	text = palloc(len + 1);
	memcpy(text, json, len);
	text[len] = '\0';
	root = TreeJsonParse(text, len);
	m = TreeCompile(root, nfeatures, outcxt, reason);
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(tmpcxt);
	return m;
}

/* Compile a saved booster without XGBoost (see tree.h). */
TreeModel *
TreeModelFromSaved(const char *buf, size_t len, const char *attr, TreeSavedInfo *info)
{
	MemoryContext outcxt = CurrentMemoryContext;
	MemoryContext tmpcxt;
	MemoryContext oldcxt;
	TreeModel  *m;
	TreeJsonNode *root,
			   *learner,
			   *types,
			   *attrs;
	char	   *reason = NULL;
	int			i;

	memset(info, 0, sizeof(*info));
	tmpcxt = AllocSetContextCreate(CurrentMemoryContext, "icpml tree compile",
								   ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(tmpcxt);
	if (TreeJsonIsUbjson(buf, len))
		root = TreeJsonParseUbjson(buf, len);
	else if (len == 0 || memchr("{ \t\r\n", buf[0], 5) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("stored XGBoost model cannot be loaded"),
				 errdetail("It is neither UBJSON nor JSON."),
				 errhint("The model blob is corrupt or from an incompatible XGBoost; delete the version or deploy another one.")));
	else
	{
		/* a NUL-terminated copy, so strtof always stops */
		char	   *text = palloc(len + 1);

		memcpy(text, buf, len);
		text[len] = '\0';
		root = TreeJsonParse(text, len);
	}
	learner = TreeJsonRequire(root, "learner", JK_OBJECT);
	info->nfeatures = TreeJsonStringInt(TreeJsonRequire(learner, "learner_model_param", JK_OBJECT),
										"num_feature", -1);
	types = TreeJsonGet(learner, "feature_types");
	if (types != NULL && types->kind == JK_ARRAY && types->n > 0)
	{
		info->ntypes = types->n;
		info->feature_types = MemoryContextAlloc(outcxt, sizeof(char *) * types->n);
		for (i = 0; i < types->n; i++)
		{
			if (types->items == NULL || types->items[i]->kind != JK_STRING)
				TreeCorrupt("feature_types[%d] is not a string", i);
			info->feature_types[i] = MemoryContextStrdup(outcxt, types->items[i]->str);
		}
	}
	attrs = TreeJsonGet(learner, "attributes");
	if (attr != NULL && attrs != NULL)
	{
		TreeJsonNode *v = TreeJsonGet(attrs, attr);

		if (v != NULL && v->kind == JK_STRING)
			info->attr_value = MemoryContextStrdup(outcxt, v->str);
	}
	m = TreeCompile(root, 0, outcxt, &reason);
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(tmpcxt);
	if (m == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("XGBoost model is not supported by the native evaluator: %s", reason),
				 errhint("icpml trains binary:logistic gbtree models; score other models with XGBoost's own predictor.")));
	return m;
}

TreeModel *
TreeModelTryFromBooster(XgbBooster *b, int nfeatures, char **reason)
{
	MemoryContext tmpcxt;
	MemoryContext oldcxt;
	TreeModel  *m;
	char	   *json;
	size_t		len;

	tmpcxt = AllocSetContextCreate(CurrentMemoryContext, "icpml tree json",
								   ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(tmpcxt);
	json = XgbBoosterSave(b, "json", &len);
	MemoryContextSwitchTo(oldcxt);
	m = TreeModelFromJson(json, len, nfeatures, reason);
	MemoryContextDelete(tmpcxt);
	return m;
}

TreeModel *
TreeModelFromBooster(XgbBooster *b, int nfeatures)
{
	char	   *reason = NULL;
	TreeModel  *m = TreeModelTryFromBooster(b, nfeatures, &reason);

	if (m == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("XGBoost model is not supported by the native evaluator: %s", reason),
				 errhint("icpml trains binary:logistic gbtree models; score other models with XGBoost's own predictor.")));
	return m;
}

/* Release a compiled model early. */
void
TreeModelFree(TreeModel *m)
{
	if (m == NULL)
		return;
	pfree(m->roots);
	pfree(m->nodes);
	pfree(m->means);
	pfree(m->step);
	pfree(m->catbits);
	pfree(m->slots);
	pfree(m->tree_sum);
	pfree(m->row_sum);
	pfree(m->path_nodes);
	pfree(m->group_depth);
	if (m->leaf_first)
		pfree(m->leaf_first);
	if (m->leaf_contrib)
		pfree(m->leaf_contrib);
	pfree(m);
}

/* ---------------------------------------------------------------------
 * Walking
 * --------------------------------------------------------------------- */

/*
 * Spread a row into its slots (see tree.h): missing becomes +Infinity where
 * it must go right and -Infinity where it must go left, every other value
 * compares exactly as it is; the category slot holds the category code.
 */
static inline const float *
TreeFillSlots(const TreeModel *m, const float *row)
{
	float	   *x = m->slots;
	uint32	   *code = (uint32 *) m->slots;
	int			f;

	for (f = 0; f < m->nfeatures; f++)
	{
		float		v = row[f];
		bool		missing = isnan(v);

		x[TREE_SLOT(f, TREE_SLOT_MISSING_HIGH)] = missing ? INFINITY : v;
		x[TREE_SLOT(f, TREE_SLOT_MISSING_LOW)] = missing ? -INFINITY : v;
		/* XGBoost 1.7 (common::Decision): negative or >= 2^24 is invalid */
		code[TREE_SLOT(f, TREE_SLOT_CATEGORY)] =
			missing ? TREE_CATEGORY_MISSING :
			(v < 0.0f || v >= TREE_MAX_CATEGORY) ? TREE_CATEGORY_INVALID :
			(uint32) v;
	}
	return x;
}

/*
 * The child of node i that the row (spread into slots x) takes; a leaf
 * takes itself.  Nothing branches on the row: the direction is
 * unpredictable.  has_cat is a constant at every call, so models without
 * categorical splits only compare.
 *
 * With categorical splits every node computes both decisions and keeps the
 * one its type asks for (cheaper than mispredicting the type).  The
 * categorical decision follows XGBoost 1.7's common::Decision: right iff
 * the category's bit is set; a category beyond the set's words, or an
 * invalid one, reads the zero word after them and goes left; missing takes
 * the default.  Numeric splits read the empty set at offset 0.
 */
static pg_attribute_always_inline int32
TreeStep(const TreeModel *m, int32 i, const float *x, bool has_cat)
{
	const TreeNode *n = &m->nodes[i];
	int32		right = n->right;
	int32		left = (x[n->feature] < n->value);

	if (has_cat)
	{
		uint32		info = n->info;
		/* the same feature's category slot (the last of its slots) */
		uint32		code = ((const uint32 *) x)[n->feature | TREE_SLOT_CATEGORY];
		const uint32 *bits = m->catbits + (info >> TREE_INFO_SHIFT);
		uint32		word = Min(code >> 5, bits[0]);
		uint32		bit = (bits[1 + word] >> (code & 31)) & 1;
		uint32		missing = (code == TREE_CATEGORY_MISSING);
		uint32		is_cat = (info & TREE_CATEGORICAL) != 0;
		uint32		left_cat = (missing & info & TREE_DEFAULT_LEFT) | ((missing ^ 1) & (bit ^ 1));

		left = (int32) ((is_cat & left_cat) | ((is_cat ^ 1) & (uint32) left));
	}
	return right ^ ((right ^ (i + 1)) & -left);
}

/*
 * Walk trees t0 .. t0 + cnt - 1 side by side for `depth` steps, so the
 * CPU overlaps their independent node loads; leaves stay put.  With a
 * non-NULL path, path[s * TREE_GROUP + k] is tree k's node after s steps.
 */
static pg_attribute_always_inline void
TreeWalkGroup(const TreeModel *m, int t0, int cnt, int depth, const float *x,
			  int32 *idx, int32 *path, bool has_cat)
{
	int			k,
				s;

	for (k = 0; k < cnt; k++)
		idx[k] = m->roots[t0 + k];
	if (path)
		memcpy(path, idx, sizeof(int32) * cnt);
	if (cnt == TREE_GROUP)
	{
		/* a full group, unrolled so the eight indexes live in registers */
		int32		i0 = idx[0],
					i1 = idx[1],
					i2 = idx[2],
					i3 = idx[3],
					i4 = idx[4],
					i5 = idx[5],
					i6 = idx[6],
					i7 = idx[7];

		StaticAssertStmt(TREE_GROUP == 8, "TreeWalkGroup unrolls eight trees");
		for (s = 1; s <= depth; s++)
		{
			i0 = TreeStep(m, i0, x, has_cat);
			i1 = TreeStep(m, i1, x, has_cat);
			i2 = TreeStep(m, i2, x, has_cat);
			i3 = TreeStep(m, i3, x, has_cat);
			i4 = TreeStep(m, i4, x, has_cat);
			i5 = TreeStep(m, i5, x, has_cat);
			i6 = TreeStep(m, i6, x, has_cat);
			i7 = TreeStep(m, i7, x, has_cat);
			if (path)
			{
				int32	   *p = path + s * TREE_GROUP;

				p[0] = i0;
				p[1] = i1;
				p[2] = i2;
				p[3] = i3;
				p[4] = i4;
				p[5] = i5;
				p[6] = i6;
				p[7] = i7;
			}
		}
		idx[0] = i0;
		idx[1] = i1;
		idx[2] = i2;
		idx[3] = i3;
		idx[4] = i4;
		idx[5] = i5;
		idx[6] = i6;
		idx[7] = i7;
	}
	else
	{
		for (s = 1; s <= depth; s++)
		{
			for (k = 0; k < cnt; k++)
				idx[k] = TreeStep(m, idx[k], x, has_cat);
			if (path)
				memcpy(path + s * TREE_GROUP, idx, sizeof(int32) * cnt);
		}
	}
}

/* TreeModelMargin's body, specialised on has_cat. */
static pg_attribute_always_inline float
TreeMarginImpl(const TreeModel *m, const float *x, bool has_cat)
{
	float		margin = m->base_margin;
	int32		idx[TREE_GROUP];
	int			g,
				k;

	for (g = 0; g < m->ngroups; g++)
	{
		int			t0 = g * TREE_GROUP;
		int			cnt = Min(TREE_GROUP, m->ntrees - t0);

		TreeWalkGroup(m, t0, cnt, m->group_depth[g], x, idx, NULL, has_cat);
		/* XGBoost adds each tree's leaf to the base margin in float, in order */
		for (k = 0; k < cnt; k++)
			margin += m->means[idx[k]];
	}
	return margin;
}

double
TreeModelMargin(const TreeModel *m, const float *row)
{
	const float *x = TreeFillSlots(m, row);

	if (m->has_categorical)
		return TreeMarginImpl(m, x, true);
	return TreeMarginImpl(m, x, false);
}

/*
 * TreeModelSaabas's body with the per-leaf tables: the margin's walk, then
 * each tree's leaf value and its precomputed totals, in tree order.  Each
 * feature's total is added to the row's once per tree, as the replay below
 * does (its further additions of 0 change nothing: a sum that starts at +0
 * never becomes -0), so the result is the same to the bit.
 */
static pg_attribute_always_inline float
TreeSaabasLeavesImpl(const TreeModel *m, const float *x, bool has_cat)
{
	const float *means = m->means;
	const int32 *first = m->leaf_first;
	const TreeLeafContrib *lc = m->leaf_contrib;
	float	   *row_sum = m->row_sum;
	float		margin = m->base_margin;
	int32		idx[TREE_GROUP];
	int			g,
				k;

	for (g = 0; g < m->ngroups; g++)
	{
		int			t0 = g * TREE_GROUP;
		int			cnt = Min(TREE_GROUP, m->ntrees - t0);

		TreeWalkGroup(m, t0, cnt, m->group_depth[g], x, idx, NULL, has_cat);
		for (k = 0; k < cnt; k++)
		{
			int32		leaf = idx[k];
			int32		j;

			margin += means[leaf];
			for (j = first[leaf]; j < first[leaf + 1]; j++)
				row_sum[lc[j].feature] += lc[j].sum;
		}
	}
	return margin;
}

/* TreeModelSaabas's body, specialised on has_cat. */
static pg_attribute_always_inline float
TreeSaabasImpl(const TreeModel *m, const float *x, float *bias_out, bool has_cat)
{
	const float *means = m->means;
	const TreeSaabasStep *step = m->step;
	float	   *tree_sum = m->tree_sum;
	float	   *row_sum = m->row_sum;
	int32	   *path = m->path_nodes;
	float		margin = m->base_margin;
	float		bias = 0.0f;
	int32		idx[TREE_GROUP];
	int			g,
				k;

	for (g = 0; g < m->ngroups; g++)
	{
		int			t0 = g * TREE_GROUP;
		int			cnt = Min(TREE_GROUP, m->ntrees - t0);
		int			depth = m->group_depth[g];

		TreeWalkGroup(m, t0, cnt, depth, x, idx, path, has_cat);

		/*
		 * Then each tree's path, in tree order.  XGBoost sums a tree's deltas
		 * per feature first (in path order), then adds each feature's total
		 * to the row's: keep that order, it makes the result bit-exact.
		 * Steps past the leaf stay on it and add 0, so every path has the
		 * group's length and no branch depends on it.
		 */
		for (k = 0; k < cnt; k++)
		{
			int32		prev = path[k];
			int			s;

			bias += means[prev];
			for (s = 1; s <= depth; s++)
			{
				int32		i = path[s * TREE_GROUP + k];
				int32		f = step[i].parent_feature;

				tree_sum[f] += (i != prev) ? step[i].delta : 0.0f;
				prev = i;
				path[s * TREE_GROUP + k] = f;	/* for the second pass */
			}
			margin += means[prev];
			/* a feature met twice adds its total once, then 0 */
			for (s = 1; s <= depth; s++)
			{
				int32		f = path[s * TREE_GROUP + k];

				row_sum[f] += tree_sum[f];
				tree_sum[f] = 0.0f;
			}
		}
	}
	*bias_out = bias;
	return margin;
}

double
TreeModelSaabas(const TreeModel *m, const float *row, double *contrib)
{
	const float *x = TreeFillSlots(m, row);
	float		margin,
				bias;
	int			j;

	for (j = 0; j < m->nfeatures; j++)
		m->row_sum[j] = 0.0f;
	if (m->leaf_contrib != NULL)
	{
		bias = m->root_bias;
		if (m->has_categorical)
			margin = TreeSaabasLeavesImpl(m, x, true);
		else
			margin = TreeSaabasLeavesImpl(m, x, false);
	}
	else if (m->has_categorical)
		margin = TreeSaabasImpl(m, x, &bias, true);
	else
		margin = TreeSaabasImpl(m, x, &bias, false);
	for (j = 0; j < m->nfeatures; j++)
		contrib[j] = m->row_sum[j];
	contrib[m->nfeatures] = bias + m->base_margin;
	return margin;
}

double
TreeModelProbability(double margin)
{
	/* common::Sigmoid in XGBoost 1.7, float throughout */
	float		x = (float) margin;
	float		y;

	x = (88.7f < -x) ? 88.7f : -x;
	y = expf(x) + 1.0f + 1e-16f;
	return 1.0f / y;
}
