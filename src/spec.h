/*
 * spec.h — feature spec inference for training (the rest of the spec API
 * is declared in model.h).
 */
#ifndef ICPML_SPEC_H
#define ICPML_SPEC_H

#include "model.h"
#include "nodes/pg_list.h"

/* categorical: at most this many levels, each seen at least SPEC_MIN_COUNT times */
#define SPEC_MAX_CATEGORICAL_LEVELS 64
/* tags (text[]): at most this many tokens, each in at least SPEC_MIN_COUNT rows */
#define SPEC_MAX_TAG_LEVELS 32
#define SPEC_MIN_COUNT 5

/* Name of a SpecKind as stored in the spec jsonb ("numeric", "tags", ...). */
extern const char *SpecKindName(SpecKind kind);

/*
 * Infer the spec of relid for training: every column except key, label and
 * the names in `exclude` (a List of C strings).  Category levels and tag
 * tokens are counted over `row_filter` rows (an SQL condition on alias f,
 * e.g. the labelled rows), read as the caller.  Columns of other types are
 * skipped with a NOTICE.  Must be called inside SPI_connect.
 */
extern FeatureSpec *SpecInfer(Oid relid, const char *relation_display, const char *key,
							  const char *label, List *exclude, const char *row_filter);

/* Fill nfeatures, feature names/types and the lookup from the columns. */
extern void SpecFinish(FeatureSpec *spec);

#endif							/* ICPML_SPEC_H */
