/*
 * tree.c — native evaluator for XGBoost tree ensembles (see tree.h).
 *
 * Phases:
 *   1. save: the booster is saved as JSON by XGBoost itself (xgb.c);
 *   2. parse: a small JSON reader builds a tree of values in a temporary
 *      memory context.  PostgreSQL's JSON parsers reject the NaN that
 *      XGBoost writes for categorical split conditions, so this one accepts
 *      NaN / Infinity / -Infinity; arrays of numbers keep pointers to their
 *      tokens and are converted on use (strtof, so floats round-trip
 *      exactly as XGBoost printed them);
 *   3. compile: every tree is checked (children in range, each node reached
 *      once from the root, split features inside the row) and laid out in
 *      depth-first order in one node array; categorical category lists
 *      become bitsets; the Saabas node means are computed in float in the
 *      order XGBoost's FillNodeMeanValues uses;
 *   4. walk: TreeModelMargin / TreeModelSaabas, no allocation per row.
 *      The row is first spread into per-feature slots (missing as +-Inf
 *      for numeric splits, a category code for categorical ones), then the
 *      trees are walked eight at a time for a fixed number of steps with
 *      branch-free steps (leaves loop to themselves); Saabas records the
 *      eight paths and replays them tree by tree.
 *
 * The branch rules and the float accumulation order follow XGBoost 1.7.4
 * (src/predictor/predict_fn.h, src/common/categorical.h,
 * src/predictor/cpu_predictor.cc, RegTree::CalculateContributionsApprox),
 * checked empirically by icpml.verify_tree_evaluator().
 *
 * Also here: the verifier (TreeVerify, SQL verify_tree_evaluator and
 * verify_tree_model) and a benchmark (SQL benchmark_tree_evaluator).
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

PG_FUNCTION_INFO_V1(verify_tree_evaluator);
PG_FUNCTION_INFO_V1(verify_tree_model);
PG_FUNCTION_INFO_V1(benchmark_tree_evaluator);

/* XGBoost's categorical values must be below this (common::OutOfRangeCat). */
#define TREE_MAX_CATEGORY	16777216.0f

/* Nesting deeper than this is not an XGBoost model. */
#define JSON_MAX_DEPTH		64

/* ---------------------------------------------------------------------
 * A small JSON reader
 * --------------------------------------------------------------------- */

typedef enum JsonKind
{
	JK_NULL,
	JK_BOOL,
	JK_NUMBER,
	JK_STRING,
	JK_ARRAY,
	JK_OBJECT
} JsonKind;

typedef struct JNode
{
	JsonKind	kind;
	int			n;				/* members (object) or elements (array) */
	bool		boolean;		/* JK_BOOL */
	const char *num;			/* JK_NUMBER: its token in the text */
	char	   *str;			/* JK_STRING: decoded */
	char	  **keys;			/* JK_OBJECT */
	struct JNode **items;		/* object values; array elements unless nums */
	const char **nums;			/* array of numbers only: their tokens */
} JNode;

typedef struct JParser
{
	const char *start;
	const char *p;
	const char *end;
	int			depth;
} JParser;

static JNode *JsonParseValue(JParser *ps);

/* A malformed model text. */
static void
pg_attribute_noreturn()
JsonFail(JParser *ps, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("XGBoost model JSON is malformed: %s at offset %ld",
					what, (long) (ps->p - ps->start)),
			 errhint("The booster could not be saved as valid JSON; load it into XGBoost again or retrain it.")));
}

/* Skip JSON whitespace. */
static inline void
JsonSkipWs(JParser *ps)
{
	while (ps->p < ps->end &&
		   (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\t' || *ps->p == '\r'))
		ps->p++;
}

/* Does a number token end here (strtof/strtoll stopped at a delimiter)? */
static inline bool
JsonIsDelim(char c)
{
	return c == '\0' || c == ',' || c == ']' || c == '}' ||
		c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

/* Can a number start with this character (NaN and Infinity included)? */
static inline bool
JsonStartsNumber(char c)
{
	return (c >= '0' && c <= '9') || c == '-' || c == 'N' || c == 'I';
}

/* Skip one number token; its text is converted later (strtof, strtoll). */
static const char *
JsonParseNumber(JParser *ps)
{
	const char *tok = ps->p;

	if (*ps->p == '-')
		ps->p++;
	if (ps->end - ps->p >= 8 && strncmp(ps->p, "Infinity", 8) == 0)
		ps->p += 8;
	else if (ps->end - ps->p >= 3 && strncmp(ps->p, "NaN", 3) == 0)
		ps->p += 3;
	else
	{
		const char *digits = ps->p;

		while (ps->p < ps->end &&
			   ((*ps->p >= '0' && *ps->p <= '9') || *ps->p == '.' ||
				*ps->p == 'e' || *ps->p == 'E' || *ps->p == '+' || *ps->p == '-'))
			ps->p++;
		if (ps->p == digits)
			JsonFail(ps, "invalid number");
	}
	if (ps->p < ps->end && !JsonIsDelim(*ps->p))
		JsonFail(ps, "invalid number");
	return tok;
}

/* Parse a string at its opening quote; returns it decoded (\u escapes
 * outside ASCII become '?': only ASCII keys and values are ever compared). */
static char *
JsonParseString(JParser *ps)
{
	const char *s;
	StringInfoData buf;

	ps->p++;					/* opening quote */
	s = ps->p;
	while (ps->p < ps->end && *ps->p != '"' && *ps->p != '\\')
		ps->p++;
	if (ps->p < ps->end && *ps->p == '"')
	{
		ps->p++;
		return pnstrdup(s, ps->p - 1 - s);
	}

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, s, ps->p - s);
	while (ps->p < ps->end && *ps->p != '"')
	{
		if (*ps->p != '\\')
		{
			appendStringInfoChar(&buf, *ps->p++);
			continue;
		}
		ps->p++;
		if (ps->p >= ps->end)
			break;
		switch (*ps->p)
		{
			case '"':
			case '\\':
			case '/':
				appendStringInfoChar(&buf, *ps->p);
				break;
			case 'b':
				appendStringInfoChar(&buf, '\b');
				break;
			case 'f':
				appendStringInfoChar(&buf, '\f');
				break;
			case 'n':
				appendStringInfoChar(&buf, '\n');
				break;
			case 'r':
				appendStringInfoChar(&buf, '\r');
				break;
			case 't':
				appendStringInfoChar(&buf, '\t');
				break;
			case 'u':
				{
					int			i,
								code = 0;

					for (i = 1; i <= 4; i++)
					{
						char		c = (ps->p + i < ps->end) ? ps->p[i] : '\0';

						if (!isxdigit((unsigned char) c))
							JsonFail(ps, "invalid \\u escape");
						code = code * 16 + (isdigit((unsigned char) c) ? c - '0' :
											(tolower((unsigned char) c) - 'a' + 10));
					}
					appendStringInfoChar(&buf, (code > 0 && code < 128) ? (char) code : '?');
					ps->p += 4;
				}
				break;
			default:
				JsonFail(ps, "invalid escape");
		}
		ps->p++;
	}
	if (ps->p >= ps->end)
		JsonFail(ps, "unterminated string");
	ps->p++;
	return buf.data;
}

/* A new node of the given kind. */
static JNode *
JsonNewNode(JsonKind kind)
{
	JNode	   *node = palloc0(sizeof(JNode));

	node->kind = kind;
	return node;
}

/* Parse an array; arrays of numbers keep only their tokens. */
static JNode *
JsonParseArray(JParser *ps)
{
	JNode	   *node = JsonNewNode(JK_ARRAY);
	int			cap = 0;

	ps->p++;					/* '[' */
	JsonSkipWs(ps);
	if (ps->p < ps->end && *ps->p == ']')
	{
		ps->p++;
		return node;
	}
	for (;;)
	{
		if (node->n == cap)
		{
			cap = cap ? cap * 2 : 16;
			if (node->items)
				node->items = repalloc(node->items, sizeof(JNode *) * cap);
			else if (node->nums)
				node->nums = repalloc(node->nums, sizeof(char *) * cap);
			else
				node->nums = palloc(sizeof(char *) * cap);
		}
		JsonSkipWs(ps);
		if (ps->p >= ps->end)
			JsonFail(ps, "unterminated array");
		if (node->items == NULL && JsonStartsNumber(*ps->p))
			node->nums[node->n++] = JsonParseNumber(ps);
		else
		{
			if (node->items == NULL)
			{
				/* a mixed array: turn the numbers seen so far into nodes */
				int			i;

				node->items = palloc(sizeof(JNode *) * cap);
				for (i = 0; i < node->n; i++)
				{
					node->items[i] = JsonNewNode(JK_NUMBER);
					node->items[i]->num = node->nums[i];
				}
				node->nums = NULL;
			}
			node->items[node->n++] = JsonParseValue(ps);
		}
		JsonSkipWs(ps);
		if (ps->p < ps->end && *ps->p == ',')
		{
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == ']')
		{
			ps->p++;
			return node;
		}
		JsonFail(ps, "expected , or ] in array");
	}
}

/* Parse an object. */
static JNode *
JsonParseObject(JParser *ps)
{
	JNode	   *node = JsonNewNode(JK_OBJECT);
	int			cap = 0;

	ps->p++;					/* '{' */
	JsonSkipWs(ps);
	if (ps->p < ps->end && *ps->p == '}')
	{
		ps->p++;
		return node;
	}
	for (;;)
	{
		if (node->n == cap)
		{
			cap = cap ? cap * 2 : 8;
			node->keys = node->keys ? repalloc(node->keys, sizeof(char *) * cap) :
				palloc(sizeof(char *) * cap);
			node->items = node->items ? repalloc(node->items, sizeof(JNode *) * cap) :
				palloc(sizeof(JNode *) * cap);
		}
		JsonSkipWs(ps);
		if (ps->p >= ps->end || *ps->p != '"')
			JsonFail(ps, "expected a member name");
		node->keys[node->n] = JsonParseString(ps);
		JsonSkipWs(ps);
		if (ps->p >= ps->end || *ps->p != ':')
			JsonFail(ps, "expected :");
		ps->p++;
		node->items[node->n] = JsonParseValue(ps);
		node->n++;
		JsonSkipWs(ps);
		if (ps->p < ps->end && *ps->p == ',')
		{
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == '}')
		{
			ps->p++;
			return node;
		}
		JsonFail(ps, "expected , or } in object");
	}
}

/* Parse any value. */
static JNode *
JsonParseValue(JParser *ps)
{
	JNode	   *node;

	check_stack_depth();
	JsonSkipWs(ps);
	if (ps->p >= ps->end)
		JsonFail(ps, "unexpected end");
	switch (*ps->p)
	{
		case '{':
		case '[':
			if (++ps->depth > JSON_MAX_DEPTH)
				JsonFail(ps, "nested too deeply");
			node = (*ps->p == '{') ? JsonParseObject(ps) : JsonParseArray(ps);
			ps->depth--;
			return node;
		case '"':
			node = JsonNewNode(JK_STRING);
			node->str = JsonParseString(ps);
			return node;
		case 't':
		case 'f':
		case 'n':
			{
				const char *word = (*ps->p == 't') ? "true" : (*ps->p == 'f') ? "false" : "null";
				size_t		len = strlen(word);

				if ((size_t) (ps->end - ps->p) < len || strncmp(ps->p, word, len) != 0)
					JsonFail(ps, "invalid literal");
				ps->p += len;
				node = JsonNewNode(*word == 'n' ? JK_NULL : JK_BOOL);
				node->boolean = (*word == 't');
				return node;
			}
		default:
			if (!JsonStartsNumber(*ps->p))
				JsonFail(ps, "unexpected character");
			node = JsonNewNode(JK_NUMBER);
			node->num = JsonParseNumber(ps);
			return node;
	}
}

/* Parse a whole NUL-terminated text. */
static JNode *
JsonParse(const char *text, size_t len)
{
	JParser		ps;
	JNode	   *root;

	ps.start = ps.p = text;
	ps.end = text + len;
	ps.depth = 0;
	root = JsonParseValue(&ps);
	JsonSkipWs(&ps);
	if (ps.p != ps.end)
		JsonFail(&ps, "trailing characters");
	return root;
}

/* Member of an object, or NULL. */
static JNode *
JsonGet(const JNode *obj, const char *key)
{
	int			i;

	if (obj == NULL || obj->kind != JK_OBJECT)
		return NULL;
	for (i = 0; i < obj->n; i++)
		if (strcmp(obj->keys[i], key) == 0)
			return obj->items[i];
	return NULL;
}

/* A model the JSON reader understood but whose content is inconsistent. */
static void TreeCorrupt(const char *fmt,...) pg_attribute_printf(1, 2) pg_attribute_noreturn();

static void
TreeCorrupt(const char *fmt,...)
{
	char		buf[256];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("XGBoost model cannot be compiled for native scoring: %s", buf),
			 errhint("The model is inconsistent; retrain it, or score it with XGBoost's own predictor.")));
}

/* Member that must exist with the given kind. */
static JNode *
JsonRequire(const JNode *obj, const char *key, JsonKind kind)
{
	JNode	   *v = JsonGet(obj, key);

	if (v == NULL || v->kind != kind)
		TreeCorrupt("member \"%s\" is missing or has the wrong type", key);
	return v;
}

/* Element i of an array as a float (numbers, or numeric strings). */
static float
JsonArrayFloat(const JNode *a, int i, const char *what)
{
	const char *tok;
	char	   *end;
	float		v;

	if (a->nums)
		tok = a->nums[i];
	else if (a->items[i]->kind == JK_NUMBER)
		tok = a->items[i]->num;
	else
		TreeCorrupt("%s[%d] is not a number", what, i);
	v = strtof(tok, &end);
	if (end == tok || !JsonIsDelim(*end))
		TreeCorrupt("%s[%d] is not a number", what, i);
	return v;
}

/* Element i of an array as an integer (booleans count as 0/1). */
static int64
JsonArrayInt(const JNode *a, int i, const char *what)
{
	const char *tok;
	char	   *end;
	long long	v;

	if (a->nums)
		tok = a->nums[i];
	else if (a->items[i]->kind == JK_BOOL)
		return a->items[i]->boolean ? 1 : 0;
	else if (a->items[i]->kind == JK_NUMBER)
		tok = a->items[i]->num;
	else
		TreeCorrupt("%s[%d] is not an integer", what, i);
	errno = 0;
	v = strtoll(tok, &end, 10);
	if (end == tok || !JsonIsDelim(*end) || errno != 0)
		TreeCorrupt("%s[%d] is not an integer", what, i);
	return (int64) v;
}

/* An integer written as a JSON string ("num_nodes": "127"). */
static int64
JsonStringInt(const JNode *obj, const char *key, int64 dflt)
{
	JNode	   *v = JsonGet(obj, key);
	char	   *end;
	long long	r;

	if (v == NULL)
		return dflt;
	if (v->kind != JK_STRING)
		TreeCorrupt("member \"%s\" is not a string", key);
	errno = 0;
	r = strtoll(v->str, &end, 10);
	if (end == v->str || *end != '\0' || errno != 0)
		TreeCorrupt("member \"%s\" is not an integer", key);
	return (int64) r;
}

/* Array member of a tree with exactly n elements. */
static JNode *
TreeArray(const JNode *tree, const char *key, int n, int treeno)
{
	JNode	   *a = JsonGet(tree, key);

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
TreeAddBitset(TreeBuild *tb, const JNode *cats, int64 seg, int64 size, int treeno)
{
	int64		j,
				maxcat = -1;
	int			nwords;
	uint32		off;

	for (j = seg; j < seg + size; j++)
	{
		int64		c = JsonArrayInt(cats, (int) j, "categories");

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
		int64		c = JsonArrayInt(cats, (int) j, "categories");

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
TreeCompileOne(TreeBuild *tb, const JNode *tree, int treeno)
{
	TreeModel  *m = tb->m;
	JNode	   *tp = JsonRequire(tree, "tree_param", JK_OBJECT);
	int64		nn = JsonStringInt(tp, "num_nodes", -1);
	JNode	   *lefts,
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
	stype = JsonGet(tree, "split_type");
	if (stype != NULL)
		stype = TreeArray(tree, "split_type", (int) nn, treeno);

	/* node -> its entry in categories_nodes, -1 when none */
	catseg = palloc(sizeof(int32) * nn);
	for (i = 0; i < nn; i++)
		catseg[i] = -1;
	if (stype != NULL && JsonGet(tree, "categories_nodes") != NULL)
	{
		cnodes = TreeArray(tree, "categories_nodes", -1, treeno);
		csegs = TreeArray(tree, "categories_segments", cnodes->n, treeno);
		csizes = TreeArray(tree, "categories_sizes", cnodes->n, treeno);
		cats = TreeArray(tree, "categories", -1, treeno);
		for (i = 0; i < cnodes->n; i++)
		{
			int64		node = JsonArrayInt(cnodes, i, "categories_nodes");

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
		tb->hess[pos] = JsonArrayFloat(hessians, id, "sum_hessian");

		left = JsonArrayInt(lefts, id, "left_children");
		if (left == -1)
		{
			/* a split to itself that always goes right (see tree.h) */
			node->feature = 0;
			node->value = -INFINITY;
			node->right = pos;
			node->info = TREE_IS_LEAF;
			m->means[pos] = JsonArrayFloat(conds, id, "split_conditions");
			tree_depth = Max(tree_depth, depth);
			continue;
		}
		right = JsonArrayInt(rights, id, "right_children");
		feature = JsonArrayInt(indices, id, "split_indices");
		if (left < 0 || left >= nn || right < 0 || right >= nn)
			TreeCorrupt("tree %d: node %d has a child out of range", treeno, id);
		if (feature < 0 || feature >= m->nfeatures)
			TreeCorrupt("tree %d: node %d splits on feature %lld of %d",
						treeno, id, (long long) feature, m->nfeatures);
		node->value = JsonArrayFloat(conds, id, "split_conditions");
		node->right = -1;		/* patched when the right child is placed */
		node->info = JsonArrayInt(dleft, id, "default_left") ? TREE_DEFAULT_LEFT : 0;
		node->feature = TREE_SLOT((int32) feature, (node->info & TREE_DEFAULT_LEFT) ?
								  TREE_SLOT_MISSING_LOW : TREE_SLOT_MISSING_HIGH);
		if (stype != NULL)
		{
			int64		t = JsonArrayInt(stype, id, "split_type");

			if (t == 1)
			{
				uint32		off;

				if (catseg[id] >= 0)
				{
					int64		seg = JsonArrayInt(csegs, catseg[id], "categories_segments");
					int64		size = JsonArrayInt(csizes, catseg[id], "categories_sizes");

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

/* Why a model is not supported, or NULL (checked before any compilation). */
static char *
TreeUnsupported(const JNode *learner)
{
	JNode	   *gb = JsonRequire(learner, "gradient_booster", JK_OBJECT);
	JNode	   *name = JsonRequire(gb, "name", JK_STRING);
	JNode	   *obj = JsonRequire(learner, "objective", JK_OBJECT);
	JNode	   *oname = JsonRequire(obj, "name", JK_STRING);
	JNode	   *lmp = JsonRequire(learner, "learner_model_param", JK_OBJECT);
	JNode	   *model;
	int64		v;

	if (strcmp(name->str, "gbtree") != 0)
		return psprintf("booster \"%s\" (only gbtree is)", name->str);
	if (strcmp(oname->str, "binary:logistic") != 0 && strcmp(oname->str, "reg:logistic") != 0)
		return psprintf("objective \"%s\" (only binary:logistic and reg:logistic are)", oname->str);
	v = JsonStringInt(lmp, "num_class", 0);
	if (v > 1)
		return psprintf("multi-class model with %lld classes", (long long) v);
	v = JsonStringInt(lmp, "num_target", 1);
	if (v != 1)
		return psprintf("multi-target model with %lld targets", (long long) v);
	model = JsonRequire(gb, "model", JK_OBJECT);
	if (JsonStringInt(JsonGet(model, "gbtree_model_param"), "size_leaf_vector", 0) != 0)
		return pstrdup("vector-leaf trees");
	return NULL;
}

/* Compile a parsed model (inside the temporary context; output in outcxt). */
static TreeModel *
TreeCompile(const JNode *root, int nfeatures, MemoryContext outcxt, char **reason)
{
	JNode	   *learner = JsonRequire(root, "learner", JK_OBJECT);
	JNode	   *lmp,
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
	lmp = JsonRequire(learner, "learner_model_param", JK_OBJECT);
	model = JsonRequire(JsonRequire(learner, "gradient_booster", JK_OBJECT), "model", JK_OBJECT);
	trees = JsonRequire(model, "trees", JK_ARRAY);
	info = JsonRequire(model, "tree_info", JK_ARRAY);

	model_nfeatures = JsonStringInt(lmp, "num_feature", -1);
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

	bs = JsonRequire(lmp, "base_score", JK_STRING);
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
		if (JsonArrayInt(info, t, "tree_info") != 0)
			TreeCorrupt("tree %d belongs to output group %lld", t,
						(long long) JsonArrayInt(info, t, "tree_info"));
		if (JsonStringInt(JsonGet(trees->items[t], "tree_param"), "size_leaf_vector", 0) != 0)
		{
			*reason = MemoryContextStrdup(outcxt, "vector-leaf trees");
			return NULL;
		}
		total += JsonStringInt(JsonRequire(trees->items[t], "tree_param", JK_OBJECT),
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
	JNode	   *root;

	*reason = NULL;
	tmpcxt = AllocSetContextCreate(CurrentMemoryContext, "icpml tree compile",
								   ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(tmpcxt);
	/* a NUL-terminated copy, so strtof always stops */
	text = palloc(len + 1);
	memcpy(text, json, len);
	text[len] = '\0';
	root = JsonParse(text, len);
	m = TreeCompile(root, nfeatures, outcxt, reason);
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(tmpcxt);
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
	if (m->has_categorical)
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

/* ---------------------------------------------------------------------
 * Probing rows and verification
 * --------------------------------------------------------------------- */

/* A standard normal draw (Box-Muller). */
static double
TreeGaussian(pg_prng_state *rng)
{
	double		u = pg_prng_double(rng),
				v = pg_prng_double(rng);

	return sqrt(-2.0 * log(1.0 - u)) * cos(2.0 * M_PI * v);
}

float *
TreeModelProbeRows(const TreeModel *m, int64 nrow, uint64 seed)
{
	int			nf = m->nfeatures;
	int		   *nthr = palloc0(sizeof(int) * nf);
	int		   *catwords = palloc0(sizeof(int) * nf);
	bool	   *iscat = palloc0(sizeof(bool) * nf);
	float	  **thr = palloc0(sizeof(float *) * nf);
	float	   *lo = palloc(sizeof(float) * nf);
	float	   *hi = palloc(sizeof(float) * nf);
	int		   *fill = palloc0(sizeof(int) * nf);
	float	   *X;
	pg_prng_state rng;
	int64		r;
	int			i,
				f;

	if (nrow < 0 || nrow > (int64) (MaxAllocSize / sizeof(float)) / Max(nf, 1))
		elog(ERROR, "too many probing rows requested");
	/* thresholds per numeric feature, bitset sizes per categorical one */
	for (i = 0; i < m->nnodes; i++)
	{
		const TreeNode *n = &m->nodes[i];

		int			f = TreeNodeFeature(n);

		if (TreeNodeIsLeaf(n))
			continue;
		if (n->info & TREE_CATEGORICAL)
		{
			iscat[f] = true;
			catwords[f] = Max(catwords[f], (int) m->catbits[n->info >> TREE_INFO_SHIFT]);
		}
		else
			nthr[f]++;
	}
	for (f = 0; f < nf; f++)
	{
		thr[f] = palloc(sizeof(float) * Max(nthr[f], 1));
		lo[f] = FLT_MAX;
		hi[f] = -FLT_MAX;
	}
	for (i = 0; i < m->nnodes; i++)
	{
		const TreeNode *n = &m->nodes[i];
		int			f = TreeNodeFeature(n);

		if (TreeNodeIsLeaf(n) || (n->info & TREE_CATEGORICAL))
			continue;
		thr[f][fill[f]++] = n->value;
		lo[f] = Min(lo[f], n->value);
		hi[f] = Max(hi[f], n->value);
	}

	pg_prng_seed(&rng, seed);
	X = palloc(sizeof(float) * Max(nrow * nf, 1));
	for (r = 0; r < nrow; r++)
	{
		for (f = 0; f < nf; f++)
		{
			double		u = pg_prng_double(&rng);
			float		v;

			if (u < 0.12)
				v = get_float4_nan();
			else if (iscat[f] && (nthr[f] == 0 || u < 0.56))
			{
				/* categories in and out of the sets, beyond them, invalid */
				double		w = pg_prng_double(&rng);
				uint64		span = (uint64) catwords[f] * 32 + 4;

				if (w < 0.70)
					v = (float) pg_prng_uint64_range(&rng, 0, span);
				else if (w < 0.80)
					v = (float) pg_prng_uint64_range(&rng, 0, span) + 0.5f;
				else if (w < 0.90)
					v = (w < 0.85) ? -1.0f : -0.5f;
				else
				{
					static const float huge[] = {16777215.0f, 16777216.0f, 3e7f, 1e9f};

					v = huge[pg_prng_uint64_range(&rng, 0, 3)];
				}
			}
			else if (nthr[f] > 0)
			{
				/* at, just below, just above and around a threshold */
				float		t = thr[f][pg_prng_uint64_range(&rng, 0, nthr[f] - 1)];
				double		w = pg_prng_double(&rng);
				double		scale = (hi[f] - lo[f]) / 4.0 + fabs(t) * 0.1 + 1e-3;

				if (w < 0.30)
					v = t;
				else if (w < 0.50)
					v = nextafterf(t, -INFINITY);
				else if (w < 0.60)
					v = nextafterf(t, INFINITY);
				else
					v = (float) (t + TreeGaussian(&rng) * scale);
			}
			else
				v = (float) TreeGaussian(&rng);
			X[r * nf + f] = v;
		}
	}
	return X;
}

/* |a - b|, 0 when both are NaN, infinite when only one is. */
static double
TreeDiff(double a, double b)
{
	if (isnan(a) || isnan(b))
		return (isnan(a) && isnan(b)) ? 0.0 : get_float8_infinity();
	if (a == b)
		return 0.0;
	return fabs(a - b);
}

void
TreeVerify(XgbBooster *b, const TreeModel *t, const float *X, int64 nrow, int ncol,
		   int64 shap_rows, TreeVerifyResult *res)
{
	MemoryContext tmpcxt;
	MemoryContext oldcxt;
	float	   *margin,
			   *prob,
			   *approx;
	double	   *contrib;
	uint64		len;
	int64		r;
	int			c;

	if (ncol != t->nfeatures)
		elog(ERROR, "verification matrix has %d columns, the model %d (please report a bug)",
			 ncol, t->nfeatures);
	memset(res, 0, sizeof(*res));
	res->n_rows = nrow;
	res->n_trees = t->ntrees;
	for (r = 0; r < t->nnodes; r++)
		if (t->nodes[r].info & TREE_CATEGORICAL)
			res->n_categorical_splits++;
	res->max_shap_sum_diff = get_float8_nan();
	if (nrow <= 0)
		return;

	tmpcxt = AllocSetContextCreate(CurrentMemoryContext, "icpml tree verify",
								   ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(tmpcxt);

	margin = XgbBoosterPredictDense(b, X, nrow, ncol, XGB_PREDICT_MARGIN, &len);
	if (len != (uint64) nrow)
		elog(ERROR, "XGBoost returned %llu margins for %lld rows", (unsigned long long) len,
			 (long long) nrow);
	prob = XgbBoosterPredictDense(b, X, nrow, ncol, XGB_PREDICT_VALUE, &len);
	if (len != (uint64) nrow)
		elog(ERROR, "XGBoost returned %llu predictions for %lld rows", (unsigned long long) len,
			 (long long) nrow);
	approx = XgbBoosterPredictDense(b, X, nrow, ncol, XGB_PREDICT_APPROX_CONTRIBS, &len);
	if (len != (uint64) nrow * (ncol + 1))
		elog(ERROR, "XGBoost returned %llu contributions for %lld x %d", (unsigned long long) len,
			 (long long) nrow, ncol + 1);

	contrib = palloc(sizeof(double) * (ncol + 1));
	for (r = 0; r < nrow; r++)
	{
		const float *row = X + r * ncol;
		double		mg = TreeModelMargin(t, row);
		double		ms = TreeModelSaabas(t, row, contrib);

		if ((r & 1023) == 0)
			CHECK_FOR_INTERRUPTS();
		res->max_margin_diff = Max(res->max_margin_diff, TreeDiff(mg, margin[r]));
		res->max_margin_diff = Max(res->max_margin_diff, TreeDiff(ms, margin[r]));
		res->max_probability_diff = Max(res->max_probability_diff,
										TreeDiff(TreeModelProbability(mg), prob[r]));
		for (c = 0; c <= ncol; c++)
			res->max_contrib_diff = Max(res->max_contrib_diff,
										TreeDiff(contrib[c], approx[r * (ncol + 1) + c]));
	}

	if (shap_rows > 0)
	{
		int64		k = Min(shap_rows, nrow);
		float	   *shap = XgbBoosterPredictDense(b, X, k, ncol, XGB_PREDICT_CONTRIBS, &len);

		if (len != (uint64) k * (ncol + 1))
			elog(ERROR, "XGBoost returned %llu SHAP values for %lld x %d",
				 (unsigned long long) len, (long long) k, ncol + 1);
		res->max_shap_sum_diff = 0.0;
		res->n_shap_rows = k;
		for (r = 0; r < k; r++)
		{
			double		sum = 0.0;

			for (c = 0; c <= ncol; c++)
				sum += shap[r * (ncol + 1) + c];
			res->max_shap_sum_diff = Max(res->max_shap_sum_diff, TreeDiff(sum, margin[r]));
		}
	}

	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(tmpcxt);
}

void
TreeVerifyMatrix(XgbBooster *b, TreeModel *t, const float *X, int64 nrow, int ncol,
				 double *max_margin_diff, double *max_contrib_diff)
{
	TreeVerifyResult res;

	TreeVerify(b, t, X, nrow, ncol, 0, &res);
	*max_margin_diff = res.max_margin_diff;
	*max_contrib_diff = Max(res.max_contrib_diff, 0.0);
}

/* ---------------------------------------------------------------------
 * Synthetic training data (verification and benchmark)
 * --------------------------------------------------------------------- */

typedef struct TreeSynth
{
	int			nrow;
	int			ncol;
	float	   *X;
	float	   *y;
	const char **types;
	int		   *nlevels;		/* 0 for numeric columns */
} TreeSynth;

/*
 * rows x features: numeric columns (some integer-valued, to make ties at
 * thresholds), every third column categorical with 3..40 levels when asked,
 * ~20% missing; labels drawn from a nonlinear logit with interactions and
 * category effects.
 */
static void
TreeSynthMake(TreeSynth *d, int nrow, int ncol, bool categorical, uint64 seed)
{
	pg_prng_state rng;
	int64		r;
	int			j;

	d->nrow = nrow;
	d->ncol = ncol;
	d->X = palloc(sizeof(float) * (int64) nrow * ncol);
	d->y = palloc(sizeof(float) * nrow);
	d->types = palloc(sizeof(char *) * ncol);
	d->nlevels = palloc0(sizeof(int) * ncol);
	for (j = 0; j < ncol; j++)
	{
		if (categorical && j % 3 == 2)
		{
			d->types[j] = "c";
			d->nlevels[j] = 3 + (j * 7) % 38;
		}
		else
			d->types[j] = "q";
	}

	pg_prng_seed(&rng, seed);
	for (r = 0; r < nrow; r++)
	{
		float	   *row = d->X + r * ncol;
		double		z = -0.2;

		for (j = 0; j < ncol; j++)
		{
			double		v;

			if (d->nlevels[j] > 0)
				v = (double) pg_prng_uint64_range(&rng, 0, d->nlevels[j] - 1);
			else
			{
				v = TreeGaussian(&rng) * (1.0 + j % 5);
				if (j % 4 == 1)
					v = floor(v * 2.0);
			}
			row[j] = (pg_prng_double(&rng) < 0.2) ? get_float4_nan() : (float) v;
		}
		for (j = 0; j < ncol; j++)
		{
			double		v = row[j];

			if (isnan(v))
				continue;
			if (d->nlevels[j] > 0)
			{
				/* a scattered half of the levels help */
				uint32		h = (uint32) ((int) v * 2654435761u + j * 40503u);

				z += ((h >> 7) & 1) ? 0.9 : -0.7;
			}
			else if (j == 0)
				z += 1.5 * sin(2.0 * v);
			else if (j == 1 && !isnan(row[0]))
				z += 0.4 * v * (row[0] > 0 ? 1.0 : -1.0);
			else
				z += ((j % 2) ? 0.6 : -0.5) * tanh(v / (1.0 + j % 5));
		}
		z += 0.5 * TreeGaussian(&rng);
		d->y[r] = (pg_prng_double(&rng) < 1.0 / (1.0 + exp(-z))) ? 1.0f : 0.0f;
	}
}

/* Train a binary:logistic booster on synthetic data, one round at a time. */
static XgbBooster *
TreeSynthTrain(TreeSynth *d, int rounds, int max_depth, bool categorical, int seed)
{
	XgbMatrix  *dtrain = XgbMatrixFromDense(d->X, d->nrow, d->ncol, get_float4_nan());
	XgbBooster *b;
	char		buf[32];
	int			i;

	XgbMatrixSetLabels(dtrain, d->y, d->nrow);
	if (categorical)
		XgbMatrixSetFeatureTypes(dtrain, d->types, d->ncol);
	b = XgbBoosterCreate(&dtrain, 1);
	XgbBoosterSetParam(b, "objective", "binary:logistic");
	XgbBoosterSetParam(b, "tree_method", "hist");
	XgbBoosterSetParam(b, "eta", "0.3");
	snprintf(buf, sizeof(buf), "%d", max_depth);
	XgbBoosterSetParam(b, "max_depth", buf);
	/* partition-based categorical splits, never one-hot */
	XgbBoosterSetParam(b, "max_cat_to_onehot", "1");
	snprintf(buf, sizeof(buf), "%d", icpml_nthread);
	XgbBoosterSetParam(b, "nthread", buf);
	snprintf(buf, sizeof(buf), "%d", seed);
	XgbBoosterSetParam(b, "seed", buf);
	for (i = 0; i < rounds; i++)
	{
		CHECK_FOR_INTERRUPTS();
		XgbBoosterUpdateOneIter(b, i, dtrain);
	}
	return b;
}

/* Reject out-of-range arguments of the SQL functions. */
static void
TreeCheckArg(const char *name, int64 value, int64 lo, int64 hi)
{
	if (value < lo || value > hi)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between %lld and %lld", name, (long long) lo, (long long) hi)));
}

/* Emit one verification row. */
static void
TreeVerifyEmit(FunctionCallInfo fcinfo, const TreeVerifyResult *res)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[7];
	bool		nulls[7] = {false, false, false, false, false, false, false};

	values[0] = Int64GetDatum(res->n_rows);
	values[1] = Int32GetDatum(res->n_trees);
	values[2] = Int32GetDatum(res->n_categorical_splits);
	values[3] = Float8GetDatum(res->max_margin_diff);
	values[4] = Float8GetDatum(res->max_contrib_diff);
	values[5] = Float8GetDatum(res->max_probability_diff);
	values[6] = Float8GetDatum(res->max_shap_sum_diff);
	nulls[6] = isnan(res->max_shap_sum_diff);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* Rows checked against XGBoost's exact SHAP (slow: about 0.5 ms a row). */
#define TREE_VERIFY_SHAP_ROWS 300

/*
 * icpml.verify_tree_evaluator(rows, features, rounds, max_depth,
 * categorical, seed): train a booster in-process on synthetic data and
 * compare the native evaluator with XGBoost on the training rows plus as
 * many probing rows.
 */
Datum
verify_tree_evaluator(PG_FUNCTION_ARGS)
{
	int32		rows = PG_GETARG_INT32(0);
	int32		features = PG_GETARG_INT32(1);
	int32		rounds = PG_GETARG_INT32(2);
	int32		max_depth = PG_GETARG_INT32(3);
	bool		categorical = PG_GETARG_BOOL(4);
	int32		seed = PG_GETARG_INT32(5);
	TreeSynth	d;
	XgbBooster *b;
	TreeModel  *t;
	float	   *probe,
			   *X;
	TreeVerifyResult res;

	TreeCheckArg("rows", rows, 10, 1000000);
	TreeCheckArg("features", features, 1, 1000);
	TreeCheckArg("rounds", rounds, 1, 5000);
	TreeCheckArg("max_depth", max_depth, 1, 20);
	TreeCheckArg("rows * features", (int64) rows * features, 1, 20000000);
	InitMaterializedSRF(fcinfo, 0);

	TreeSynthMake(&d, rows, features, categorical, (uint64) seed);
	b = TreeSynthTrain(&d, rounds, max_depth, categorical, seed);
	t = TreeModelFromBooster(b, features);

	probe = TreeModelProbeRows(t, rows, (uint64) seed + 7919);
	X = palloc(sizeof(float) * (int64) 2 * rows * features);
	memcpy(X, d.X, sizeof(float) * (int64) rows * features);
	memcpy(X + (int64) rows * features, probe, sizeof(float) * (int64) rows * features);
	TreeVerify(b, t, X, (int64) 2 * rows, features, TREE_VERIFY_SHAP_ROWS, &res);
	TreeVerifyEmit(fcinfo, &res);
	XgbBoosterFree(b);
	return (Datum) 0;
}

/*
 * icpml.verify_tree_model(model, rows, seed): compare the native evaluator
 * with XGBoost on a saved booster (UBJSON or JSON), over rows probing the
 * model's own thresholds and category sets.
 */
Datum
verify_tree_model(PG_FUNCTION_ARGS)
{
	bytea	   *blob = PG_GETARG_BYTEA_PP(0);
	int32		rows = PG_GETARG_INT32(1);
	int32		seed = PG_GETARG_INT32(2);
	XgbBooster *b;
	TreeModel  *t;
	float	   *X;
	TreeVerifyResult res;
	char		buf[32];

	TreeCheckArg("rows", rows, 1, 1000000);
	InitMaterializedSRF(fcinfo, 0);

	b = XgbBoosterLoad(VARDATA_ANY(blob), VARSIZE_ANY_EXHDR(blob));
	snprintf(buf, sizeof(buf), "%d", icpml_nthread);
	XgbBoosterSetParam(b, "nthread", buf);
	t = TreeModelFromBooster(b, 0);
	X = TreeModelProbeRows(t, rows, (uint64) seed);
	TreeVerify(b, t, X, rows, t->nfeatures, TREE_VERIFY_SHAP_ROWS, &res);
	TreeVerifyEmit(fcinfo, &res);
	XgbBoosterFree(b);
	return (Datum) 0;
}

/* Wall-clock and CPU time of this thread, for the benchmark. */
typedef struct TreeClock
{
	instr_time	wall;
	struct timespec cpu;
} TreeClock;

/* Start a measurement. */
static void
TreeClockStart(TreeClock *c)
{
	INSTR_TIME_SET_CURRENT(c->wall);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c->cpu);
}

/* Emit one benchmark row: per-row wall and CPU nanoseconds since start. */
static void
TreeBenchEmit(FunctionCallInfo fcinfo, const char *method, int64 calls, TreeClock *start,
			  int64 rows_per_call)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	instr_time	wall;
	struct timespec cpu;
	double		n = (double) calls * rows_per_call;

	INSTR_TIME_SET_CURRENT(wall);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);
	INSTR_TIME_SUBTRACT(wall, start->wall);
	values[0] = CStringGetTextDatum(method);
	values[1] = Int64GetDatum(calls);
	values[2] = Float8GetDatum(INSTR_TIME_GET_DOUBLE(wall) * 1e9 / n);
	values[3] = Float8GetDatum(((cpu.tv_sec - start->cpu.tv_sec) * 1e9 +
								(cpu.tv_nsec - start->cpu.tv_nsec)) / n);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * icpml.benchmark_tree_evaluator(rounds, max_depth, features, calls,
 * categorical, seed): nanoseconds per row of the native evaluator against
 * XGBoost's single-row and batch predict, inside this backend.
 */
Datum
benchmark_tree_evaluator(PG_FUNCTION_ARGS)
{
	int32		rounds = PG_GETARG_INT32(0);
	int32		max_depth = PG_GETARG_INT32(1);
	int32		features = PG_GETARG_INT32(2);
	int32		calls = PG_GETARG_INT32(3);
	bool		categorical = PG_GETARG_BOOL(4);
	int32		seed = PG_GETARG_INT32(5);
	const int	nrow = 10000;
	TreeSynth	d;
	XgbBooster *b;
	TreeModel  *t = NULL;
	double	   *contrib;
	MemoryContext callcxt,
				oldcxt;
	TreeClock	start;
	volatile double sink = 0.0;
	int64		i,
				n;
	uint64		len;

	TreeCheckArg("rounds", rounds, 1, 5000);
	TreeCheckArg("max_depth", max_depth, 1, 20);
	TreeCheckArg("features", features, 1, 1000);
	TreeCheckArg("calls", calls, 100, 100000000);
	InitMaterializedSRF(fcinfo, 0);

	TreeSynthMake(&d, nrow, features, categorical, (uint64) seed);
	b = TreeSynthTrain(&d, rounds, max_depth, categorical, seed);
	callcxt = AllocSetContextCreate(CurrentMemoryContext, "icpml tree bench",
									ALLOCSET_DEFAULT_SIZES);

	/* compile: save as JSON, parse, lay out */
	n = 20;
	TreeClockStart(&start);
	for (i = 0; i < n; i++)
	{
		oldcxt = MemoryContextSwitchTo(callcxt);
		t = TreeModelFromBooster(b, features);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(callcxt);
	}
	TreeBenchEmit(fcinfo, "native compile (save JSON, parse, lay out), per model", n,
				  &start, 1);
	t = TreeModelFromBooster(b, features);
	contrib = palloc(sizeof(double) * (features + 1));

	TreeClockStart(&start);
	for (i = 0; i < calls; i++)
		sink += TreeModelMargin(t, d.X + (i % nrow) * features);
	TreeBenchEmit(fcinfo, "native margin, one row", calls, &start, 1);
	CHECK_FOR_INTERRUPTS();

	TreeClockStart(&start);
	for (i = 0; i < calls; i++)
		sink += TreeModelSaabas(t, d.X + (i % nrow) * features, contrib);
	TreeBenchEmit(fcinfo, "native margin + Saabas contributions, one row", calls,
				  &start, 1);
	CHECK_FOR_INTERRUPTS();

	/* XGBoost's own predictor costs tens of microseconds a call: fewer calls */
	{
		static const struct
		{
			int			kind;
			const char *name;
			int			divisor;
		}			kinds[] = {
			{XGB_PREDICT_MARGIN, "xgboost margin, one row per call", 20},
			{XGB_PREDICT_APPROX_CONTRIBS, "xgboost approx contributions, one row per call", 20},
			{XGB_PREDICT_CONTRIBS, "xgboost exact SHAP, one row per call", 200},
		};
		int			k;

		for (k = 0; k < lengthof(kinds); k++)
		{
			n = Max(calls / kinds[k].divisor, 50);
			TreeClockStart(&start);
			for (i = 0; i < n; i++)
			{
				float	   *out;

				oldcxt = MemoryContextSwitchTo(callcxt);
				out = XgbBoosterPredictDense(b, d.X + (i % nrow) * features, 1, features,
											 kinds[k].kind, &len);
				sink += out[0];
				MemoryContextSwitchTo(oldcxt);
				MemoryContextReset(callcxt);
				CHECK_FOR_INTERRUPTS();
			}
			TreeBenchEmit(fcinfo, kinds[k].name, n, &start, 1);
		}
	}

	/* batch: the whole matrix in one call, per row */
	n = 5;
	TreeClockStart(&start);
	for (i = 0; i < n; i++)
	{
		float	   *out;

		oldcxt = MemoryContextSwitchTo(callcxt);
		out = XgbBoosterPredictDense(b, d.X, nrow, features, XGB_PREDICT_MARGIN, &len);
		sink += out[0];
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(callcxt);
		CHECK_FOR_INTERRUPTS();
	}
	TreeBenchEmit(fcinfo, "xgboost margin, 10000 rows per call", n,
				  &start, nrow);

	TreeClockStart(&start);
	for (i = 0; i < n; i++)
	{
		int64		r;

		for (r = 0; r < nrow; r++)
			sink += TreeModelMargin(t, d.X + r * features);
	}
	TreeBenchEmit(fcinfo, "native margin, 10000 rows in a loop", n,
				  &start, nrow);

	(void) sink;
	XgbBoosterFree(b);
	return (Datum) 0;
}
