/*
 * spec.h — a model's feature spec (spec.c): the columns of the relation it
 * reads, their kinds and levels, inferred at training and stored with the
 * model (icpml.models.spec), its validation and digest, and the encoding of
 * a row into the model's float feature vector.
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
#ifndef ICPML_SPEC_H
#define ICPML_SPEC_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"

typedef enum SpecKind
{
	SPEC_NUMERIC,
	SPEC_BOOLEAN,
	SPEC_CATEGORICAL,
	SPEC_AGE_DAYS,
	SPEC_TAGS
} SpecKind;

/*
 * How text columns become levels: options of a training, recorded in the
 * spec (the "encoding" object of its jsonb; defaults when absent) and
 * applied when a row is encoded.
 */
typedef struct SpecEncoding
{
	bool		fold_text;		/* categories and tag tokens: ASCII letters
								 * lower-cased, white space trimmed and each
								 * inner run made one space (SignalFoldText) */
	int			max_levels;		/* categorical: most frequent levels kept */
	int			max_tags;		/* tags: most frequent tokens kept */
	int			min_count;		/* rows a level or token must occur in */
} SpecEncoding;

#define SPEC_DEFAULT_MAX_LEVELS 64
#define SPEC_DEFAULT_MAX_TAGS	32
#define SPEC_DEFAULT_MIN_COUNT	5
/* the largest values the options may take */
#define SPEC_LIMIT_LEVELS		1000
#define SPEC_LIMIT_TAGS			256

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
	SpecEncoding encoding;
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

/* The defaults (the encoding of specs that record none). */
extern void SpecEncodingDefaults(SpecEncoding *enc);

/* Name of a SpecKind as stored in the spec jsonb ("numeric", "tags", ...). */
extern const char *SpecKindName(SpecKind kind);

/*
 * Infer the spec of relid for training: every column except key, label and
 * the names in `exclude` (a List of C strings).  Category levels and tag
 * tokens are counted over `row_filter` rows (an SQL condition on alias f,
 * e.g. the labelled rows), read as the caller, as `enc` says.  Columns of
 * other types are skipped with a NOTICE.  Must be called inside SPI_connect.
 */
extern FeatureSpec *SpecInfer(Oid relid, const char *relation_display, const char *key,
							  const char *label, List *exclude, const char *row_filter,
							  const SpecEncoding *enc);

/* Fill nfeatures, feature names/types and the lookup from the columns. */
extern void SpecFinish(FeatureSpec *spec);

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

/* The select expression of column c alone (SpecSelectList is their list). */
extern void SpecColumnSelect(StringInfo buf, const FeatureSpec *spec, int c, const char *alias);

/* Encode one row: attributes firstatt .. firstatt+ncolumns-1 (1-based). */
extern void SpecEncodeRow(const FeatureSpec *spec, HeapTuple tuple, TupleDesc desc,
						  int firstatt, float *out);

/* The same from a row's deformed attributes (a slot's tts_values, tts_isnull). */
extern void SpecEncodeValues(const FeatureSpec *spec, const Datum *values, const bool *nulls,
							 int firstatt, float *out);

#endif							/* ICPML_SPEC_H */
