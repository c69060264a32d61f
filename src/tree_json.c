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
 * The typed accessors (TreeJsonRequire, TreeJsonArrayFloat, ...) report a
 * member that is missing or of the wrong kind with TreeCorrupt, as the
 * compiler does for any other inconsistency of the model.
 */
#include "postgres.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"

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

