/*
 * tree_json.c — reading a booster's JSON (as XGBoost saves it, see xgb.c)
 * for the native evaluator (tree.c).
 *
 * A small JSON reader builds a tree of values in the current memory context
 * (tree.c parses in a temporary one).  PostgreSQL's JSON parsers reject the
 * NaN that XGBoost writes for categorical split conditions, so this one
 * accepts NaN / Infinity / -Infinity; arrays of numbers keep pointers to
 * their tokens and are converted on use (strtof, so floats round-trip
 * exactly as XGBoost printed them).  Nesting deeper than an XGBoost model
 * ever goes, and malformed text, are errors (data_corrupted).
 *
 * The stored blob is UBJSON (binary JSON, big-endian): TreeJsonParseUbjson
 * builds the same tree of values from it without XGBoost, so a backend
 * that only scores never loads libxgboost.  Its typed arrays (the trees'
 * node arrays) are not copied: the nodes point into the buffer and the
 * accessors convert each element on use.
 *
 * The typed accessors (TreeJsonRequire, TreeJsonArrayFloat, ...) report a
 * member that is missing or of the wrong kind with TreeCorrupt, as the
 * compiler does for any other inconsistency of the model.
 */
#include "postgres.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "utils/memutils.h"

#include "tree.h"

/* Nesting deeper than this is not an XGBoost model. */
#define TREE_JSON_MAX_DEPTH		64

typedef struct TreeJsonParser
{
	const char *start;
	const char *p;
	const char *end;
	int			depth;
} TreeJsonParser;

static TreeJsonNode *TreeJsonParseValue(TreeJsonParser *ps);

/* A malformed model text. */
static void
pg_attribute_noreturn()
TreeJsonFail(TreeJsonParser *ps, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("XGBoost model JSON is malformed: %s at offset %ld",
					what, (long) (ps->p - ps->start)),
			 errhint("The booster could not be saved as valid JSON; load it into XGBoost again or retrain it.")));
}

/* Skip JSON whitespace. */
static inline void
TreeJsonSkipWs(TreeJsonParser *ps)
{
	while (ps->p < ps->end &&
		   (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\t' || *ps->p == '\r'))
		ps->p++;
}

/* Does a number token end here (strtof/strtoll stopped at a delimiter)? */
static inline bool
TreeJsonIsDelim(char c)
{
	return c == '\0' || c == ',' || c == ']' || c == '}' ||
		c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

/* Can a number start with this character (NaN and Infinity included)? */
static inline bool
TreeJsonStartsNumber(char c)
{
	return (c >= '0' && c <= '9') || c == '-' || c == 'N' || c == 'I';
}

/* Skip one number token; its text is converted later (strtof, strtoll). */
static const char *
TreeJsonParseNumber(TreeJsonParser *ps)
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
			TreeJsonFail(ps, "invalid number");
	}
	if (ps->p < ps->end && !TreeJsonIsDelim(*ps->p))
		TreeJsonFail(ps, "invalid number");
	return tok;
}

/* Parse a string at its opening quote; returns it decoded (\u escapes
 * outside ASCII become '?': only ASCII keys and values are ever compared). */
static char *
TreeJsonParseString(TreeJsonParser *ps)
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
							TreeJsonFail(ps, "invalid \\u escape");
						code = code * 16 + (isdigit((unsigned char) c) ? c - '0' :
											(tolower((unsigned char) c) - 'a' + 10));
					}
					appendStringInfoChar(&buf, (code > 0 && code < 128) ? (char) code : '?');
					ps->p += 4;
				}
				break;
			default:
				TreeJsonFail(ps, "invalid escape");
		}
		ps->p++;
	}
	if (ps->p >= ps->end)
		TreeJsonFail(ps, "unterminated string");
	ps->p++;
	return buf.data;
}

/* A new node of the given kind. */
static TreeJsonNode *
TreeJsonNewNode(TreeJsonKind kind)
{
	TreeJsonNode	   *node = palloc0(sizeof(TreeJsonNode));

	node->kind = kind;
	return node;
}

/* Parse an array; arrays of numbers keep only their tokens. */
static TreeJsonNode *
TreeJsonParseArray(TreeJsonParser *ps)
{
	TreeJsonNode	   *node = TreeJsonNewNode(JK_ARRAY);
	int			cap = 0;

	ps->p++;					/* '[' */
	TreeJsonSkipWs(ps);
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
				node->items = repalloc(node->items, sizeof(TreeJsonNode *) * cap);
			else if (node->nums)
				node->nums = repalloc(node->nums, sizeof(char *) * cap);
			else
				node->nums = palloc(sizeof(char *) * cap);
		}
		TreeJsonSkipWs(ps);
		if (ps->p >= ps->end)
			TreeJsonFail(ps, "unterminated array");
		if (node->items == NULL && TreeJsonStartsNumber(*ps->p))
			node->nums[node->n++] = TreeJsonParseNumber(ps);
		else
		{
			if (node->items == NULL)
			{
				/* a mixed array: turn the numbers seen so far into nodes */
				int			i;

				node->items = palloc(sizeof(TreeJsonNode *) * cap);
				for (i = 0; i < node->n; i++)
				{
					node->items[i] = TreeJsonNewNode(JK_NUMBER);
					node->items[i]->num = node->nums[i];
				}
				node->nums = NULL;
			}
			node->items[node->n++] = TreeJsonParseValue(ps);
		}
		TreeJsonSkipWs(ps);
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
		TreeJsonFail(ps, "expected , or ] in array");
	}
}

/* Parse an object. */
static TreeJsonNode *
TreeJsonParseObject(TreeJsonParser *ps)
{
	TreeJsonNode	   *node = TreeJsonNewNode(JK_OBJECT);
	int			cap = 0;

	ps->p++;					/* '{' */
	TreeJsonSkipWs(ps);
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
			node->items = node->items ? repalloc(node->items, sizeof(TreeJsonNode *) * cap) :
				palloc(sizeof(TreeJsonNode *) * cap);
		}
		TreeJsonSkipWs(ps);
		if (ps->p >= ps->end || *ps->p != '"')
			TreeJsonFail(ps, "expected a member name");
		node->keys[node->n] = TreeJsonParseString(ps);
		TreeJsonSkipWs(ps);
		if (ps->p >= ps->end || *ps->p != ':')
			TreeJsonFail(ps, "expected :");
		ps->p++;
		node->items[node->n] = TreeJsonParseValue(ps);
		node->n++;
		TreeJsonSkipWs(ps);
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
		TreeJsonFail(ps, "expected , or } in object");
	}
}

/* Parse any value. */
static TreeJsonNode *
TreeJsonParseValue(TreeJsonParser *ps)
{
	TreeJsonNode	   *node;

	check_stack_depth();
	TreeJsonSkipWs(ps);
	if (ps->p >= ps->end)
		TreeJsonFail(ps, "unexpected end");
	switch (*ps->p)
	{
		case '{':
		case '[':
			if (++ps->depth > TREE_JSON_MAX_DEPTH)
				TreeJsonFail(ps, "nested too deeply");
			node = (*ps->p == '{') ? TreeJsonParseObject(ps) : TreeJsonParseArray(ps);
			ps->depth--;
			return node;
		case '"':
			node = TreeJsonNewNode(JK_STRING);
			node->str = TreeJsonParseString(ps);
			return node;
		case 't':
		case 'f':
		case 'n':
			{
				const char *word = (*ps->p == 't') ? "true" : (*ps->p == 'f') ? "false" : "null";
				size_t		len = strlen(word);

				if ((size_t) (ps->end - ps->p) < len || strncmp(ps->p, word, len) != 0)
					TreeJsonFail(ps, "invalid literal");
				ps->p += len;
				node = TreeJsonNewNode(*word == 'n' ? JK_NULL : JK_BOOL);
				node->boolean = (*word == 't');
				return node;
			}
		default:
			if (!TreeJsonStartsNumber(*ps->p))
				TreeJsonFail(ps, "unexpected character");
			node = TreeJsonNewNode(JK_NUMBER);
			node->num = TreeJsonParseNumber(ps);
			return node;
	}
}

/* Parse a whole NUL-terminated text. */
TreeJsonNode *
TreeJsonParse(const char *text, size_t len)
{
	TreeJsonParser		ps;
	TreeJsonNode	   *root;

	ps.start = ps.p = text;
	ps.end = text + len;
	ps.depth = 0;
	root = TreeJsonParseValue(&ps);
	TreeJsonSkipWs(&ps);
	if (ps.p != ps.end)
		TreeJsonFail(&ps, "trailing characters");
	return root;
}

/* ---------------------------------------------------------------------
 * UBJSON
 * --------------------------------------------------------------------- */

typedef struct TreeUbjParser
{
	const unsigned char *start;
	const unsigned char *p;
	const unsigned char *end;
	int			depth;
} TreeUbjParser;

static TreeJsonNode *TreeUbjParseValue(TreeUbjParser *ps, unsigned char marker);

/* A malformed UBJSON model. */
static void
pg_attribute_noreturn()
TreeUbjFail(TreeUbjParser *ps, const char *what)
{
	/* the message and hint XgbBoosterLoad gives for a blob XGBoost refuses */
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("stored XGBoost model cannot be loaded"),
			 errdetail("Malformed UBJSON: %s at offset %ld.", what, (long) (ps->p - ps->start)),
			 errhint("The model blob is corrupt or from an incompatible XGBoost; delete the version or deploy another one.")));
}

/* Bytes of one element of a fixed-size type, 0 for the others. */
static inline int
TreeUbjSize(char type)
{
	switch (type)
	{
		case 'i':
		case 'U':
			return 1;
		case 'I':
			return 2;
		case 'l':
		case 'd':
			return 4;
		case 'L':
		case 'D':
			return 8;
		default:
			return 0;
	}
}

/* An integer of a fixed-size type at p (big-endian). */
static inline int64
TreeUbjInt(const unsigned char *p, char type)
{
	switch (type)
	{
		case 'i':
			return (int8) p[0];
		case 'U':
			return p[0];
		case 'I':
			{
				uint16		v;

				memcpy(&v, p, 2);
				return (int16) pg_ntoh16(v);
			}
		case 'l':
			{
				uint32		v;

				memcpy(&v, p, 4);
				return (int32) pg_ntoh32(v);
			}
		default:				/* 'L' */
			{
				uint64		v;

				memcpy(&v, p, 8);
				return (int64) pg_ntoh64(v);
			}
	}
}

/* A real of type 'd' (float32) or 'D' (float64) at p (big-endian). */
static inline double
TreeUbjReal(const unsigned char *p, char type)
{
	if (type == 'd')
	{
		uint32		v;
		float		f;

		memcpy(&v, p, 4);
		v = pg_ntoh32(v);
		memcpy(&f, &v, 4);
		return f;
	}
	else
	{
		uint64		v;
		double		d;

		memcpy(&v, p, 8);
		v = pg_ntoh64(v);
		memcpy(&d, &v, 8);
		return d;
	}
}

/* Element i of a typed array as a float (exact for float32 elements). */
static float
TreeUbjFloat(const TreeJsonNode *a, int i)
{
	const unsigned char *p = a->raw + (size_t) i * TreeUbjSize(a->ubtype);

	if (a->ubtype == 'd')
		return (float) TreeUbjReal(p, 'd');
	if (a->ubtype == 'D')
		return (float) TreeUbjReal(p, 'D');
	return (float) TreeUbjInt(p, a->ubtype);
}

/* Make sure n more bytes are there. */
static inline void
TreeUbjNeed(TreeUbjParser *ps, size_t n)
{
	if ((size_t) (ps->end - ps->p) < n)
		TreeUbjFail(ps, "unexpected end");
}

/* The next marker, skipping no-ops. */
static unsigned char
TreeUbjMarker(TreeUbjParser *ps)
{
	for (;;)
	{
		TreeUbjNeed(ps, 1);
		if (*ps->p != 'N')
			return *ps->p++;
		ps->p++;
	}
}

/* A length or count: an integer type marker and its value, >= 0. */
static int64
TreeUbjLength(TreeUbjParser *ps)
{
	unsigned char type = TreeUbjMarker(ps);
	int			size = TreeUbjSize(type);
	int64		v;

	if (size == 0 || type == 'd' || type == 'D')
		TreeUbjFail(ps, "invalid length");
	TreeUbjNeed(ps, size);
	v = TreeUbjInt(ps->p, type);
	ps->p += size;
	if (v < 0 || v > (int64) (ps->end - ps->start))
		TreeUbjFail(ps, "invalid length");
	return v;
}

/* A string's length and bytes (after its 'S' marker, or an object key). */
static char *
TreeUbjString(TreeUbjParser *ps)
{
	int64		len = TreeUbjLength(ps);
	char	   *s;

	TreeUbjNeed(ps, len);
	s = pnstrdup((const char *) ps->p, len);
	ps->p += len;
	return s;
}

/* Grow an array or object node's item (and key) arrays to hold one more. */
static void
TreeUbjGrow(TreeJsonNode *node, int *cap, bool keys)
{
	if (node->n < *cap)
		return;
	if (node->n >= MaxAllocSize / (2 * sizeof(void *)))
		elog(ERROR, "XGBoost model has too many members");
	*cap = *cap ? *cap * 2 : 8;
	node->items = node->items ? repalloc(node->items, sizeof(TreeJsonNode *) * *cap) :
		palloc(sizeof(TreeJsonNode *) * *cap);
	if (keys)
		node->keys = node->keys ? repalloc(node->keys, sizeof(char *) * *cap) :
			palloc(sizeof(char *) * *cap);
}

/* The optional '$' type and '#' count of a container. */
static void
TreeUbjContainerHeader(TreeUbjParser *ps, unsigned char *type, int64 *count)
{
	*type = 0;
	*count = -1;
	TreeUbjNeed(ps, 1);
	if (*ps->p == '$')
	{
		ps->p++;
		TreeUbjNeed(ps, 1);
		*type = *ps->p++;
		TreeUbjNeed(ps, 1);
		if (*ps->p != '#')
			TreeUbjFail(ps, "a typed container without a count");
	}
	if (*ps->p == '#')
	{
		ps->p++;
		*count = TreeUbjLength(ps);
	}
}

/* An array, after its '['. */
static TreeJsonNode *
TreeUbjParseArray(TreeUbjParser *ps)
{
	TreeJsonNode *node = TreeJsonNewNode(JK_ARRAY);
	unsigned char type;
	int64		count;
	int			cap = 0;

	TreeUbjContainerHeader(ps, &type, &count);
	if (type != 0 && TreeUbjSize(type) > 0)
	{
		/* typed numbers: keep them where they are */
		size_t		bytes = (size_t) count * TreeUbjSize(type);

		if (count > INT_MAX)
			TreeUbjFail(ps, "array too long");
		TreeUbjNeed(ps, bytes);
		node->n = (int) count;
		node->ubtype = (char) type;
		node->raw = ps->p;
		ps->p += bytes;
		return node;
	}
	for (;;)
	{
		unsigned char marker;

		if (count >= 0)
		{
			if (node->n == count)
				return node;
			marker = type ? type : TreeUbjMarker(ps);
		}
		else
		{
			marker = TreeUbjMarker(ps);
			if (marker == ']')
				return node;
		}
		TreeUbjGrow(node, &cap, false);
		node->items[node->n++] = TreeUbjParseValue(ps, marker);
	}
}

/* An object, after its '{'. */
static TreeJsonNode *
TreeUbjParseObject(TreeUbjParser *ps)
{
	TreeJsonNode *node = TreeJsonNewNode(JK_OBJECT);
	unsigned char type;
	int64		count;
	int			cap = 0;

	TreeUbjContainerHeader(ps, &type, &count);
	for (;;)
	{
		if (count >= 0)
		{
			if (node->n == count)
				return node;
		}
		else
		{
			TreeUbjNeed(ps, 1);
			while (*ps->p == 'N')
			{
				ps->p++;
				TreeUbjNeed(ps, 1);
			}
			if (*ps->p == '}')
			{
				ps->p++;
				return node;
			}
		}
		TreeUbjGrow(node, &cap, true);
		node->keys[node->n] = TreeUbjString(ps);
		node->items[node->n] = TreeUbjParseValue(ps, type ? type : TreeUbjMarker(ps));
		node->n++;
	}
}

/* A value whose type marker has been read. */
static TreeJsonNode *
TreeUbjParseValue(TreeUbjParser *ps, unsigned char marker)
{
	TreeJsonNode *node;
	int			size;

	check_stack_depth();
	switch (marker)
	{
		case '{':
		case '[':
			if (++ps->depth > TREE_JSON_MAX_DEPTH)
				TreeUbjFail(ps, "nested too deeply");
			node = (marker == '{') ? TreeUbjParseObject(ps) : TreeUbjParseArray(ps);
			ps->depth--;
			return node;
		case 'S':
			node = TreeJsonNewNode(JK_STRING);
			node->str = TreeUbjString(ps);
			return node;
		case 'C':
			TreeUbjNeed(ps, 1);
			node = TreeJsonNewNode(JK_STRING);
			node->str = pnstrdup((const char *) ps->p, 1);
			ps->p++;
			return node;
		case 'H':
			node = TreeJsonNewNode(JK_NUMBER);
			node->num = TreeUbjString(ps);
			return node;
		case 'Z':
			return TreeJsonNewNode(JK_NULL);
		case 'T':
		case 'F':
			node = TreeJsonNewNode(JK_BOOL);
			node->boolean = (marker == 'T');
			return node;
		default:
			size = TreeUbjSize(marker);
			if (size == 0)
				TreeUbjFail(ps, "unknown type marker");
			TreeUbjNeed(ps, size);
			/* scalars are rare in a model: their text, as the JSON reader keeps */
			node = TreeJsonNewNode(JK_NUMBER);
			if (marker == 'd')
				node->num = psprintf("%.9g", TreeUbjReal(ps->p, 'd'));
			else if (marker == 'D')
				node->num = psprintf("%.17g", TreeUbjReal(ps->p, 'D'));
			else
				node->num = psprintf(INT64_FORMAT, TreeUbjInt(ps->p, marker));
			ps->p += size;
			return node;
	}
}

/* Is this saved model UBJSON (rather than JSON text)? */
bool
TreeJsonIsUbjson(const char *buf, size_t len)
{
	/* both start with '{'; a UBJSON object goes on with a key's length or a header */
	return len >= 2 && buf[0] == '{' && strchr("iUIlL$#N}", buf[1]) != NULL && buf[1] != '\0';
}

/* Parse a whole UBJSON model. */
TreeJsonNode *
TreeJsonParseUbjson(const char *buf, size_t len)
{
	TreeUbjParser ps;
	TreeJsonNode *root;

	ps.start = ps.p = (const unsigned char *) buf;
	ps.end = ps.start + len;
	ps.depth = 0;
	root = TreeUbjParseValue(&ps, TreeUbjMarker(&ps));
	if (ps.p != ps.end)
		TreeUbjFail(&ps, "trailing bytes");
	return root;
}

/* Member of an object, or NULL. */
TreeJsonNode *
TreeJsonGet(const TreeJsonNode *obj, const char *key)
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
void
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
TreeJsonNode *
TreeJsonRequire(const TreeJsonNode *obj, const char *key, TreeJsonKind kind)
{
	TreeJsonNode	   *v = TreeJsonGet(obj, key);

	if (v == NULL || v->kind != kind)
		TreeCorrupt("member \"%s\" is missing or has the wrong type", key);
	return v;
}

/* Element i of an array as a float (numbers, or numeric strings). */
float
TreeJsonArrayFloat(const TreeJsonNode *a, int i, const char *what)
{
	const char *tok;
	char	   *end;
	float		v;

	if (a->raw)
		return TreeUbjFloat(a, i);
	if (a->nums)
		tok = a->nums[i];
	else if (a->items[i]->kind == JK_NUMBER)
		tok = a->items[i]->num;
	else
		TreeCorrupt("%s[%d] is not a number", what, i);
	v = strtof(tok, &end);
	if (end == tok || !TreeJsonIsDelim(*end))
		TreeCorrupt("%s[%d] is not a number", what, i);
	return v;
}

/* Element i of an array as an integer (booleans count as 0/1). */
int64
TreeJsonArrayInt(const TreeJsonNode *a, int i, const char *what)
{
	const char *tok;
	char	   *end;
	long long	v;

	if (a->raw)
	{
		if (a->ubtype == 'd' || a->ubtype == 'D')
			TreeCorrupt("%s[%d] is not an integer", what, i);
		return TreeUbjInt(a->raw + (size_t) i * TreeUbjSize(a->ubtype), a->ubtype);
	}
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
	if (end == tok || !TreeJsonIsDelim(*end) || errno != 0)
		TreeCorrupt("%s[%d] is not an integer", what, i);
	return (int64) v;
}

/* An integer written as a JSON string ("num_nodes": "127"). */
int64
TreeJsonStringInt(const TreeJsonNode *obj, const char *key, int64 dflt)
{
	TreeJsonNode	   *v = TreeJsonGet(obj, key);
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

