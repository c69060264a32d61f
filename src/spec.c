/*
 * spec.c — a model's feature spec: inference from a relation (training),
 * jsonb round trip (icpml.models.spec), the SQL select list that reads a
 * row for it, and the encoder of one row into the model's float vector.
 *
 * Column kinds (see spec.h for the encoding):
 *   numeric      int2/int4/int8/float4/float8/numeric (and domains over them)
 *   boolean      bool
 *   categorical  text/varchar/char/enum: levels = the distinct values seen in
 *                at least min_count (5) training rows, most frequent first
 *                (ties in byte order), at most max_levels (64)
 *   age_days     date/timestamp/timestamptz: days before now() (the
 *                transaction start), fractional, negative in the future
 *   tags         text[]/varchar[]: one 0/1 feature per token among the
 *                max_tags (32) most frequent (ASCII lower-cased, each row
 *                counted once, in at least min_count rows)
 * Other types are skipped with a NOTICE, and so are categorical and tag
 * columns without any frequent enough value.  With fold_text, category
 * values and tag tokens are folded (SignalFoldText: ASCII case and white
 * space) when levels are counted and when rows are encoded, so "Google",
 * "google " and " GOOGLE" are one level.  The options (SpecEncoding) are
 * the training's `encoding` argument, recorded in the spec.
 *
 * Spec jsonb:
 *   {"format": 1, "relation": "public.account_features", "key": "account_id",
 *    "encoding": {"fold_text": true, "max_levels": 64, "max_tags": 32,
 *                 "min_count": 5}    (only when not these defaults)
 *    "columns": [{"name": "industry", "kind": "categorical", "levels": [...]},
 *                {"name": "company_size", "kind": "numeric"}, ...],
 *    "features": [{"name": "industry", "type": "c"}, ...]}
 * "features" is derived (for people and other tools); parsing recomputes it.
 *
 * SpecEncodeRow is on the scoring hot path: it allocates nothing except
 * when a value arrives toasted.  Levels are found by binary search in a
 * sorted copy (struct SpecLookup) built once per spec.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/md5.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/arrayaccess.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "icpml.h"
#include "relation.h"
#include "signals.h"
#include "spec.h"

/* One level in byte order, with its position in SpecColumn.levels. */
typedef struct SpecLevelRef
{
	const char *str;
	int			len;
	int			index;
} SpecLevelRef;

/* Prepared lookup: per column, its levels sorted in byte order (or NULL). */
typedef struct SpecLookup
{
	SpecLevelRef **sorted;
	char	   *fold;			/* fold_text: scratch for a folded value */
	int			foldcap;
	MemoryContext cxt;			/* the spec's context (scratch grows there) */
} SpecLookup;

static const char *const SpecKindNames[] = {
	"numeric", "boolean", "categorical", "age_days", "tags"
};

/* Name of a kind, as stored in the spec jsonb. */
const char *
SpecKindName(SpecKind kind)
{
	return SpecKindNames[kind];
}

/* Compare two byte strings (unsigned bytes, then length). */
static int
SpecBytesCmp(const char *a, int alen, const char *b, int blen)
{
	int			r = memcmp(a, b, Min(alen, blen));

	if (r != 0)
		return r;
	return alen < blen ? -1 : (alen > blen ? 1 : 0);
}

/* qsort comparator of SpecLevelRef. */
static int
SpecLevelCmp(const void *a, const void *b)
{
	const SpecLevelRef *x = (const SpecLevelRef *) a;
	const SpecLevelRef *y = (const SpecLevelRef *) b;

	return SpecBytesCmp(x->str, x->len, y->str, y->len);
}

/* Build the sorted level lookup in the spec's own memory context. */
static void
SpecBuildLookup(FeatureSpec *spec, MemoryContext cxt)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
	SpecLookup *lk = palloc0(sizeof(SpecLookup));
	int			c,
				l;

	lk->sorted = palloc0(sizeof(SpecLevelRef *) * Max(spec->ncolumns, 1));
	for (c = 0; c < spec->ncolumns; c++)
	{
		SpecColumn *col = &spec->columns[c];

		if (col->kind != SPEC_CATEGORICAL && col->kind != SPEC_TAGS)
			continue;
		lk->sorted[c] = palloc(sizeof(SpecLevelRef) * Max(col->nlevels, 1));
		for (l = 0; l < col->nlevels; l++)
		{
			lk->sorted[c][l].str = col->levels[l];
			lk->sorted[c][l].len = strlen(col->levels[l]);
			lk->sorted[c][l].index = l;
		}
		qsort(lk->sorted[c], col->nlevels, sizeof(SpecLevelRef), SpecLevelCmp);
	}
	lk->cxt = cxt;
	MemoryContextSwitchTo(oldcxt);
	spec->lookup = lk;
}

/* The defaults: specs that record no encoding were trained with these. */
void
SpecEncodingDefaults(SpecEncoding *enc)
{
	enc->fold_text = false;
	enc->max_levels = SPEC_DEFAULT_MAX_LEVELS;
	enc->max_tags = SPEC_DEFAULT_MAX_TAGS;
	enc->min_count = SPEC_DEFAULT_MIN_COUNT;
}

/*
 * A value as the spec's levels are written: folded (fold_text), and for
 * tag tokens ASCII-lower-cased in any case; *len is updated.  Returns s
 * itself when nothing changes, else the lookup's scratch (valid until the
 * next call).
 */
static const char *
SpecFoldValue(const FeatureSpec *spec, const char *s, int *len)
{
	SpecLookup *lk = spec->lookup;

	if (!spec->encoding.fold_text)
		return s;
	if (*len > lk->foldcap)
	{
		lk->foldcap = Max(*len, 64);
		lk->fold = MemoryContextAlloc(lk->cxt, lk->foldcap);
	}
	*len = SignalFoldText(s, *len, lk->fold);
	return lk->fold;
}

/*
 * Binary search of a value among sorted levels; -1 when absent.  With
 * `fold`, ASCII letters of the value are lower-cased first (tag tokens).
 */
static inline int
SpecFindLevel(const SpecLevelRef *refs, int n, const char *s, int len, bool fold)
{
	int			lo = 0,
				hi = n - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		const SpecLevelRef *r = &refs[mid];
		int			m = Min(len, r->len);
		int			cmp = 0,
					i;

		for (i = 0; i < m && cmp == 0; i++)
		{
			unsigned char a = (unsigned char) s[i];
			unsigned char b = (unsigned char) r->str[i];

			if (fold)
				a = SignalFoldAscii(a);
			cmp = (int) a - (int) b;
		}
		if (cmp == 0)
			cmp = len < r->len ? -1 : (len > r->len ? 1 : 0);
		if (cmp == 0)
			return r->index;
		if (cmp < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return -1;
}

/* Fill nfeatures, feature names and types, and the lookup of a spec. */
void
SpecFinish(FeatureSpec *spec)
{
	int			c,
				l,
				f = 0;

	for (c = 0; c < spec->ncolumns; c++)
	{
		SpecColumn *col = &spec->columns[c];

		col->first_feature = f;
		col->nfeatures = col->kind == SPEC_TAGS ? col->nlevels : 1;
		f += col->nfeatures;
	}
	spec->nfeatures = f;
	spec->feature_names = palloc(sizeof(char *) * Max(f, 1));
	spec->feature_types = palloc(sizeof(char *) * Max(f, 1));
	for (c = 0; c < spec->ncolumns; c++)
	{
		SpecColumn *col = &spec->columns[c];

		f = col->first_feature;
		switch (col->kind)
		{
			case SPEC_NUMERIC:
			case SPEC_AGE_DAYS:
				spec->feature_names[f] = col->name;
				spec->feature_types[f] = "q";
				break;
			case SPEC_BOOLEAN:
				spec->feature_names[f] = col->name;
				spec->feature_types[f] = "i";
				break;
			case SPEC_CATEGORICAL:
				spec->feature_names[f] = col->name;
				spec->feature_types[f] = "c";
				break;
			case SPEC_TAGS:
				for (l = 0; l < col->nlevels; l++)
				{
					spec->feature_names[f + l] = psprintf("%s=%s", col->name, col->levels[l]);
					spec->feature_types[f + l] = "i";
				}
				break;
		}
	}
	SpecBuildLookup(spec, GetMemoryChunkContext(spec));
}

/* Kind of a column type, or -1 when icpml cannot use it. */
static int
SpecKindOfType(Oid type)
{
	Oid			base = getBaseType(type);

	switch (base)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
			return SPEC_NUMERIC;
		case BOOLOID:
			return SPEC_BOOLEAN;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			return SPEC_CATEGORICAL;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return SPEC_AGE_DAYS;
		case TEXTARRAYOID:
		case 1015:				/* varchar[] */
		case 1014:				/* bpchar[] */
			return SPEC_TAGS;
		default:
			if (type_is_enum(base))
				return SPEC_CATEGORICAL;
			return -1;
	}
}

/* Is name in the list of C strings? */
static bool
SpecNameListed(List *names, const char *name)
{
	ListCell   *lc;

	foreach(lc, names)
		if (strcmp((const char *) lfirst(lc), name) == 0)
			return true;
	return false;
}

/* A counted value: bytes (not NUL-terminated in the hash key) and count. */
typedef struct SpecCountKey
{
	const char *str;
	int			len;
} SpecCountKey;

typedef struct SpecCountEntry
{
	SpecCountKey key;
	int64		count;
	int64		last_row;		/* tags: count each row once */
} SpecCountEntry;

/* dynahash hash of a SpecCountKey. */
static uint32
SpecCountHash(const void *key, Size keysize)
{
	const SpecCountKey *k = (const SpecCountKey *) key;

	return hash_bytes((const unsigned char *) k->str, k->len);
}

/* dynahash match of two SpecCountKeys (0 = equal). */
static int
SpecCountMatch(const void *a, const void *b, Size keysize)
{
	const SpecCountKey *x = (const SpecCountKey *) a;
	const SpecCountKey *y = (const SpecCountKey *) b;

	return SpecBytesCmp(x->str, x->len, y->str, y->len);
}

/* Count one value of a level column; the key is copied on first sight. */
static void
SpecCountValue(HTAB *h, const char *str, int len, int64 row, MemoryContext cxt)
{
	SpecCountKey key = {str, len};
	bool		found;
	SpecCountEntry *e = hash_search(h, &key, HASH_ENTER, &found);

	if (!found)
	{
		e->key.str = MemoryContextAlloc(cxt, Max(len, 1));
		memcpy((char *) e->key.str, str, len);
		e->count = 0;
		e->last_row = -1;
	}
	if (e->last_row != row)
	{
		e->count++;
		e->last_row = row;
	}
}

/* qsort comparator: count descending, then bytes. */
static int
SpecCountCmp(const void *a, const void *b)
{
	const SpecCountEntry *x = *(SpecCountEntry *const *) a;
	const SpecCountEntry *y = *(SpecCountEntry *const *) b;

	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return SpecBytesCmp(x->key.str, x->key.len, y->key.str, y->key.len);
}

/*
 * Count category levels and tag tokens of every such column in one cursor
 * pass over the training rows (as the caller), counting in C hash tables,
 * and fill each column's levels; drop level columns left empty.
 */
static void
SpecInferLevels(FeatureSpec *spec, const char *row_filter)
{
	StringInfoData sql;
	int			c,
				nlevelcols = 0,
				kept;
	int		   *colidx = palloc(sizeof(int) * Max(spec->ncolumns, 1));
	HTAB	  **counts = palloc0(sizeof(HTAB *) * Max(spec->ncolumns, 1));
	MemoryContext cxt = CurrentMemoryContext;
	MemoryContext countcxt,
				batchcxt,
				oldcxt;
	Portal		portal;
	int64		row = 0;
	char	   *lower = NULL;
	int			lowercap = 0;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	for (c = 0; c < spec->ncolumns; c++)
	{
		SpecColumn *col = &spec->columns[c];

		if (col->kind != SPEC_CATEGORICAL && col->kind != SPEC_TAGS)
			continue;
		appendStringInfo(&sql, "%sf.%s::pg_catalog.%s", nlevelcols > 0 ? ", " : "",
						 quote_identifier(col->name),
						 col->kind == SPEC_CATEGORICAL ? "text" : "text[]");
		colidx[nlevelcols++] = c;
	}
	if (nlevelcols == 0)
		return;
	appendStringInfo(&sql, " FROM %s AS f WHERE %s", spec->relation, row_filter);

	countcxt = AllocSetContextCreate(cxt, "icpml level counts", ALLOCSET_DEFAULT_SIZES);
	batchcxt = AllocSetContextCreate(cxt, "icpml level batch", ALLOCSET_DEFAULT_SIZES);
	for (c = 0; c < nlevelcols; c++)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(SpecCountKey);
		ctl.entrysize = sizeof(SpecCountEntry);
		ctl.hash = SpecCountHash;
		ctl.match = SpecCountMatch;
		ctl.hcxt = countcxt;
		counts[c] = hash_create("icpml level counts", 256, &ctl,
								HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	}

	portal = SPI_cursor_open_with_args(NULL, sql.data, 0, NULL, NULL, NULL, true,
									   CURSOR_OPT_NO_SCROLL);
	for (;;)
	{
		SPITupleTable *tt;
		uint64		r;

		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, 10000);
		if (SPI_processed == 0)
			break;
		tt = SPI_tuptable;
		oldcxt = MemoryContextSwitchTo(batchcxt);
		for (r = 0; r < SPI_processed; r++, row++)
		{
			for (c = 0; c < nlevelcols; c++)
			{
				bool		isnull;
				Datum		d = heap_getattr(tt->vals[r], c + 1, tt->tupdesc, &isnull);

				if (isnull)
					continue;
				if (spec->columns[colidx[c]].kind == SPEC_CATEGORICAL)
				{
					text	   *t = DatumGetTextPP(d);
					const char *src = VARDATA_ANY(t);
					int			len = VARSIZE_ANY_EXHDR(t);

					if (spec->encoding.fold_text)
					{
						if (len > lowercap)
						{
							lowercap = Max(len, 64);
							lower = MemoryContextAlloc(countcxt, lowercap);
						}
						len = SignalFoldText(src, len, lower);
						src = lower;
					}
					SpecCountValue(counts[c], src, len, row, countcxt);
				}
				else
				{
					AnyArrayType *arr = DatumGetAnyArrayP(d);
					array_iter	it;
					int			n = ArrayGetNItems(AARR_NDIM(arr), AARR_DIMS(arr));
					int			i,
								j;

					array_iter_setup(&it, arr);
					for (i = 0; i < n; i++)
					{
						bool		enull;
						Datum		e = array_iter_next(&it, &enull, i, -1, false, TYPALIGN_INT);
						const char *src;
						int			len;

						if (enull)
							continue;
						src = VARDATA_ANY(DatumGetPointer(e));
						len = VARSIZE_ANY_EXHDR(DatumGetPointer(e));
						if (len > lowercap)
						{
							lowercap = Max(len, 64);
							lower = MemoryContextAlloc(countcxt, lowercap);
						}
						/* tokens are lower-cased in ASCII only: locale-independent */
						if (spec->encoding.fold_text)
							len = SignalFoldText(src, len, lower);
						else
							for (j = 0; j < len; j++)
								lower[j] = (char) SignalFoldAscii((unsigned char) src[j]);
						SpecCountValue(counts[c], lower, len, row, countcxt);
					}
				}
			}
		}
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(batchcxt);
		SPI_freetuptable(tt);
	}
	SPI_cursor_close(portal);

	/* levels: seen in at least min_count rows, most frequent first */
	for (c = 0; c < nlevelcols; c++)
	{
		SpecColumn *col = &spec->columns[colidx[c]];
		int			max = col->kind == SPEC_TAGS ? spec->encoding.max_tags : spec->encoding.max_levels;
		long		n = hash_get_num_entries(counts[c]);
		SpecCountEntry **all = palloc(sizeof(SpecCountEntry *) * Max(n, 1));
		SpecCountEntry *e;
		HASH_SEQ_STATUS seq;
		int			k = 0,
					l;

		hash_seq_init(&seq, counts[c]);
		while ((e = hash_seq_search(&seq)) != NULL)
			if (e->count >= spec->encoding.min_count)
				all[k++] = e;
		qsort(all, k, sizeof(SpecCountEntry *), SpecCountCmp);
		col->nlevels = Min(k, max);
		col->levels = palloc(sizeof(char *) * Max(col->nlevels, 1));
		for (l = 0; l < col->nlevels; l++)
			col->levels[l] = pnstrdup(all[l]->key.str, all[l]->key.len);
		pfree(all);
	}
	MemoryContextDelete(batchcxt);
	MemoryContextDelete(countcxt);

	/* a level column without any frequent value carries no information */
	for (c = 0, kept = 0; c < spec->ncolumns; c++)
	{
		SpecColumn *col = &spec->columns[c];

		if ((col->kind == SPEC_CATEGORICAL || col->kind == SPEC_TAGS) && col->nlevels == 0)
		{
			ereport(NOTICE,
					(errmsg("column \"%s\" skipped: no value occurs in %d or more training rows",
							col->name, spec->encoding.min_count),
					 errhint("Lower min_count in encoding => '{\"min_count\": ...}' to keep rarer values.")));
			continue;
		}
		spec->columns[kept++] = *col;
	}
	spec->ncolumns = kept;
}

/*
 * Infer a training spec from the relation's columns (see spec.h).  The
 * relation is opened only to read its column list.
 */
FeatureSpec *
SpecInfer(Oid relid, const char *relation_display, const char *key,
		  const char *label, List *exclude, const char *row_filter,
		  const SpecEncoding *enc)
{
	Relation	rel = relation_open(relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	FeatureSpec *spec = palloc0(sizeof(FeatureSpec));
	int			i;

	spec->relation = pstrdup(relation_display);
	spec->key = pstrdup(key);
	spec->encoding = *enc;
	spec->columns = palloc0(sizeof(SpecColumn) * Max(desc->natts, 1));
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *name = NameStr(att->attname);
		int			kind;
		SpecColumn *col;

		if (att->attisdropped || strcmp(name, key) == 0 || strcmp(name, label) == 0 ||
			SpecNameListed(exclude, name))
			continue;
		kind = SpecKindOfType(att->atttypid);
		if (kind < 0)
		{
			ereport(NOTICE,
					(errmsg("column \"%s\" of type %s skipped: not a numeric, boolean, text, date/time or text[] column",
							name, format_type_be(att->atttypid)),
					 errhint("Cast it to a supported type in a view, or list it in exclude_columns.")));
			continue;
		}
		col = &spec->columns[spec->ncolumns++];
		col->name = pstrdup(name);
		col->kind = (SpecKind) kind;
	}
	relation_close(rel, NoLock);

	SpecInferLevels(spec, row_filter);
	if (spec->ncolumns == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("relation %s has no usable feature columns", relation_display),
				 errhint("Features are the numeric, boolean, text, date/time and text[] columns other than the key, the label and exclude_columns.")));
	SpecFinish(spec);
	return spec;
}

/* Append a JSON string. */
static void
SpecJsonString(StringInfo buf, const char *s)
{
	escape_json(buf, s);
}

/* Serialise a spec to jsonb (format in the file comment). */
Jsonb *
SpecToJsonb(const FeatureSpec *spec)
{
	StringInfoData buf;
	int			c,
				l,
				f;
	Jsonb	   *result;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"format\": 1, \"relation\": ");
	SpecJsonString(&buf, spec->relation);
	appendStringInfoString(&buf, ", \"key\": ");
	SpecJsonString(&buf, spec->key);
	/* the encoding only when it is not the default (older specs have none) */
	if (spec->encoding.fold_text || spec->encoding.max_levels != SPEC_DEFAULT_MAX_LEVELS ||
		spec->encoding.max_tags != SPEC_DEFAULT_MAX_TAGS ||
		spec->encoding.min_count != SPEC_DEFAULT_MIN_COUNT)
		appendStringInfo(&buf, ", \"encoding\": {\"fold_text\": %s, \"max_levels\": %d,"
						 " \"max_tags\": %d, \"min_count\": %d}",
						 spec->encoding.fold_text ? "true" : "false", spec->encoding.max_levels,
						 spec->encoding.max_tags, spec->encoding.min_count);
	appendStringInfoString(&buf, ", \"columns\": [");
	for (c = 0; c < spec->ncolumns; c++)
	{
		const SpecColumn *col = &spec->columns[c];

		if (c > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, "{\"name\": ");
		SpecJsonString(&buf, col->name);
		appendStringInfo(&buf, ", \"kind\": \"%s\"", SpecKindName(col->kind));
		if (col->kind == SPEC_CATEGORICAL || col->kind == SPEC_TAGS)
		{
			appendStringInfoString(&buf, ", \"levels\": [");
			for (l = 0; l < col->nlevels; l++)
			{
				if (l > 0)
					appendStringInfoString(&buf, ", ");
				SpecJsonString(&buf, col->levels[l]);
			}
			appendStringInfoChar(&buf, ']');
		}
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoString(&buf, "], \"features\": [");
	for (f = 0; f < spec->nfeatures; f++)
	{
		if (f > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, "{\"name\": ");
		SpecJsonString(&buf, spec->feature_names[f]);
		appendStringInfo(&buf, ", \"type\": \"%s\"}", spec->feature_types[f]);
	}
	appendStringInfoString(&buf, "]}");
	result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
	pfree(buf.data);
	return result;
}

/* ERROR for a spec jsonb that does not have the expected shape. */
static void
SpecCorrupt(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("stored feature spec is invalid: %s", what),
			 errhint("The model's spec column was edited or is corrupt; deploy another version.")));
}

/* The value of key in an object container, or NULL. */
static JsonbValue *
SpecJsonGet(JsonbContainer *obj, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	return findJsonbValueFromContainer(obj, JB_FOBJECT, &k);
}

/* A string member as a palloc'd C string; ERROR when absent. */
static char *
SpecJsonGetString(JsonbContainer *obj, const char *key)
{
	JsonbValue *v = SpecJsonGet(obj, key);

	if (v == NULL || v->type != jbvString)
		SpecCorrupt(psprintf("\"%s\" is missing or not a string", key));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* An array member's container; ERROR when absent. */
static JsonbContainer *
SpecJsonGetArray(JsonbContainer *obj, const char *key)
{
	JsonbValue *v = SpecJsonGet(obj, key);

	if (v == NULL || v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		SpecCorrupt(psprintf("\"%s\" is missing or not an array", key));
	return v->val.binary.data;
}

/* Parse a spec from its jsonb (inverse of SpecToJsonb). */
FeatureSpec *
SpecFromJsonb(Jsonb *json)
{
	FeatureSpec *spec = palloc0(sizeof(FeatureSpec));
	JsonbContainer *root = &json->root;
	JsonbContainer *cols;
	JsonbValue *enc;
	int			c,
				l,
				k;

	if (!JsonContainerIsObject(root))
		SpecCorrupt("not an object");
	spec->relation = SpecJsonGetString(root, "relation");
	spec->key = SpecJsonGetString(root, "key");
	SpecEncodingDefaults(&spec->encoding);
	enc = SpecJsonGet(root, "encoding");
	if (enc != NULL)
	{
		JsonbContainer *e;
		JsonbValue *v;
		int		   *limits[3] = {&spec->encoding.max_levels, &spec->encoding.max_tags,
		&spec->encoding.min_count};
		const char *names[3] = {"max_levels", "max_tags", "min_count"};

		if (enc->type != jbvBinary || !JsonContainerIsObject(enc->val.binary.data))
			SpecCorrupt("\"encoding\" is not an object");
		e = enc->val.binary.data;
		v = SpecJsonGet(e, "fold_text");
		if (v == NULL || v->type != jbvBool)
			SpecCorrupt("\"encoding\" lacks fold_text");
		spec->encoding.fold_text = v->val.boolean;
		for (k = 0; k < 3; k++)
		{
			v = SpecJsonGet(e, names[k]);
			if (v == NULL || v->type != jbvNumeric)
				SpecCorrupt(psprintf("\"encoding\" lacks %s", names[k]));
			*limits[k] = DatumGetInt32(DirectFunctionCall1(numeric_int4,
														   NumericGetDatum(v->val.numeric)));
		}
	}
	cols = SpecJsonGetArray(root, "columns");
	spec->ncolumns = JsonContainerSize(cols);
	spec->columns = palloc0(sizeof(SpecColumn) * Max(spec->ncolumns, 1));
	for (c = 0; c < spec->ncolumns; c++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(cols, c);
		SpecColumn *col = &spec->columns[c];
		char	   *kind;

		if (v == NULL || v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
			SpecCorrupt("a column is not an object");
		col->name = SpecJsonGetString(v->val.binary.data, "name");
		kind = SpecJsonGetString(v->val.binary.data, "kind");
		for (k = 0; k < lengthof(SpecKindNames); k++)
			if (strcmp(kind, SpecKindNames[k]) == 0)
				break;
		if (k == lengthof(SpecKindNames))
			SpecCorrupt(psprintf("unknown column kind \"%s\"", kind));
		col->kind = (SpecKind) k;
		if (col->kind == SPEC_CATEGORICAL || col->kind == SPEC_TAGS)
		{
			JsonbContainer *levels = SpecJsonGetArray(v->val.binary.data, "levels");

			col->nlevels = JsonContainerSize(levels);
			col->levels = palloc(sizeof(char *) * Max(col->nlevels, 1));
			for (l = 0; l < col->nlevels; l++)
			{
				JsonbValue *lv = getIthJsonbValueFromContainer(levels, l);

				if (lv == NULL || lv->type != jbvString)
					SpecCorrupt("a level is not a string");
				col->levels[l] = pnstrdup(lv->val.string.val, lv->val.string.len);
			}
		}
	}
	SpecFinish(spec);
	return spec;
}

/*
 * Check a parsed spec beyond its shape (see spec.h): a relation name that
 * is a name, a key, at least one column, distinct non-empty column names,
 * options of the encoding within their limits, and for categorical and tag
 * columns 1 to max_levels (max_tags) distinct levels.
 */
void
SpecValidate(const FeatureSpec *spec)
{
	int			c,
				d,
				l;

	if (!RelationNameIsValid(spec->relation))
		SpecCorrupt(psprintf("relation \"%s\" is not a table or view name", spec->relation));
	if (spec->key[0] == '\0' || strlen(spec->key) >= NAMEDATALEN)
		SpecCorrupt("the key column name is empty or too long");
	if (spec->ncolumns == 0)
		SpecCorrupt("it has no columns");
	if (spec->encoding.max_levels < 1 || spec->encoding.max_levels > SPEC_LIMIT_LEVELS ||
		spec->encoding.max_tags < 1 || spec->encoding.max_tags > SPEC_LIMIT_TAGS ||
		spec->encoding.min_count < 1)
		SpecCorrupt("its encoding's limits are out of range");
	for (c = 0; c < spec->ncolumns; c++)
	{
		const SpecColumn *col = &spec->columns[c];

		if (col->name[0] == '\0' || strlen(col->name) >= NAMEDATALEN)
			SpecCorrupt("a column name is empty or too long");
		for (d = 0; d < c; d++)
			if (strcmp(spec->columns[d].name, col->name) == 0)
				SpecCorrupt(psprintf("column \"%s\" is listed twice", col->name));
		if (col->kind != SPEC_CATEGORICAL && col->kind != SPEC_TAGS)
			continue;
		if (col->nlevels < 1 ||
			col->nlevels > (col->kind == SPEC_TAGS ? spec->encoding.max_tags : spec->encoding.max_levels))
			SpecCorrupt(psprintf("column \"%s\" has %d levels", col->name, col->nlevels));
		/* the lookup holds the levels sorted: duplicates are neighbours */
		for (l = 1; l < col->nlevels; l++)
		{
			const SpecLevelRef *a = &spec->lookup->sorted[c][l - 1];
			const SpecLevelRef *b = &spec->lookup->sorted[c][l];

			if (SpecBytesCmp(a->str, a->len, b->str, b->len) == 0)
				SpecCorrupt(psprintf("column \"%s\" lists level \"%s\" twice", col->name, a->str));
		}
	}
}

/*
 * Digest of a spec as stored (md5 of the jsonb's canonical text): training
 * saves it in the booster (attribute ICPML_SPEC_DIGEST_ATTR), so a spec
 * edited after training no longer matches its model.
 */
char *
SpecDigest(Jsonb *spec_json)
{
	char	   *text = JsonbToCString(NULL, &spec_json->root, VARSIZE(spec_json));
	char	   *hex = palloc(33);
	const char *errstr = NULL;

	if (!pg_md5_hash(text, strlen(text), hex, &errstr))
		elog(ERROR, "could not compute the spec digest: %s", errstr ? errstr : "md5 failed");
	pfree(text);
	return hex;
}

/* Append the select expression of spec column c read from `alias` (see spec.h). */
void
SpecColumnSelect(StringInfo buf, const FeatureSpec *spec, int c, const char *alias)
{
	const SpecColumn *col = &spec->columns[c];
	const char *q = quote_identifier(col->name);

	switch (col->kind)
	{
		case SPEC_NUMERIC:
			appendStringInfo(buf, "%s.%s::pg_catalog.float8", alias, q);
			break;
		case SPEC_BOOLEAN:
			appendStringInfo(buf, "%s.%s::pg_catalog.bool", alias, q);
			break;
		case SPEC_CATEGORICAL:
			appendStringInfo(buf, "%s.%s::pg_catalog.text", alias, q);
			break;
		case SPEC_AGE_DAYS:
			/* infinite dates are missing, not an error */
			appendStringInfo(buf,
							 "CASE WHEN pg_catalog.isfinite(%s.%s::pg_catalog.timestamptz)"
							 " THEN pg_catalog.date_part('epoch', pg_catalog.now()"
							 " OPERATOR(pg_catalog.-) %s.%s::pg_catalog.timestamptz)"
							 " OPERATOR(pg_catalog./) 86400.0 END",
							 alias, q, alias, q);
			break;
		case SPEC_TAGS:
			appendStringInfo(buf, "%s.%s::pg_catalog.text[]", alias, q);
			break;
	}
}

/* SQL select list reading the spec's columns from `alias` (see spec.h). */
char *
SpecSelectList(const FeatureSpec *spec, const char *alias)
{
	StringInfoData buf;
	int			c;

	initStringInfo(&buf);
	for (c = 0; c < spec->ncolumns; c++)
	{
		if (c > 0)
			appendStringInfoString(&buf, ", ");
		SpecColumnSelect(&buf, spec, c, alias);
	}
	return buf.data;
}

/* Rows of at most this many attributes are deformed on the stack. */
#define SPEC_DEFORM_MAX 128

/* Encode one row read with SpecSelectList into out[nfeatures] (see spec.h). */
void
SpecEncodeRow(const FeatureSpec *spec, HeapTuple tuple, TupleDesc desc,
			  int firstatt, float *out)
{
	Datum		values[SPEC_DEFORM_MAX];
	bool		nulls[SPEC_DEFORM_MAX];
	Datum	   *v = values;
	bool	   *n = nulls;

	/* one pass over the tuple instead of a heap_getattr walk per column */
	if (desc->natts > SPEC_DEFORM_MAX)
	{
		v = palloc(sizeof(Datum) * desc->natts);
		n = palloc(sizeof(bool) * desc->natts);
	}
	heap_deform_tuple(tuple, desc, v, n);
	SpecEncodeValues(spec, v, n, firstatt, out);
	if (v != values)
	{
		pfree(v);
		pfree(n);
	}
}

/* Encode one row's deformed attributes (see spec.h). */
void
SpecEncodeValues(const FeatureSpec *spec, const Datum *values, const bool *nulls,
				 int firstatt, float *out)
{
	int			c,
				l;

	if (spec->lookup == NULL)
		SpecBuildLookup((FeatureSpec *) spec, GetMemoryChunkContext((void *) spec));

	for (c = 0; c < spec->ncolumns; c++)
	{
		const SpecColumn *col = &spec->columns[c];
		float	   *o = out + col->first_feature;
		bool		isnull = nulls[firstatt + c - 1];
		Datum		d = values[firstatt + c - 1];

		if (isnull)
		{
			for (l = 0; l < col->nfeatures; l++)
				o[l] = NAN;
			continue;
		}
		switch (col->kind)
		{
			case SPEC_NUMERIC:
			case SPEC_AGE_DAYS:
				o[0] = SignalFinite(DatumGetFloat8(d));
				break;
			case SPEC_BOOLEAN:
				o[0] = DatumGetBool(d) ? 1.0f : 0.0f;
				break;
			case SPEC_CATEGORICAL:
				{
					text	   *t = DatumGetTextPP(d);
					int			len = VARSIZE_ANY_EXHDR(t);
					const char *v = SpecFoldValue(spec, VARDATA_ANY(t), &len);
					int			idx = SpecFindLevel(spec->lookup->sorted[c], col->nlevels,
													v, len, false);

					o[0] = idx < 0 ? NAN : (float) idx;
					if ((Pointer) t != DatumGetPointer(d))
						pfree(t);
					break;
				}
			case SPEC_TAGS:
				{
					AnyArrayType *arr = DatumGetAnyArrayP(d);
					array_iter	it;
					int			n = ArrayGetNItems(AARR_NDIM(arr), AARR_DIMS(arr));
					int			i;

					for (l = 0; l < col->nlevels; l++)
						o[l] = 0.0f;
					array_iter_setup(&it, arr);
					for (i = 0; i < n; i++)
					{
						bool		enull;
						Datum		e = array_iter_next(&it, &enull, i, -1, false, TYPALIGN_INT);
						int			idx,
									len;
						const char *v;

						if (enull)
							continue;
						len = VARSIZE_ANY_EXHDR(DatumGetPointer(e));
						v = SpecFoldValue(spec, VARDATA_ANY(DatumGetPointer(e)), &len);
						idx = SpecFindLevel(spec->lookup->sorted[c], col->nlevels, v, len, true);
						if (idx >= 0)
							o[idx] = 1.0f;
					}
					if ((Pointer) arr != DatumGetPointer(d))
						pfree(arr);
					break;
				}
		}
	}
}
