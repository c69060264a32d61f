/*
 * factors.h — the "factors" jsonb of a score (factors.c): its items are
 * collected as they are computed, then written straight into jsonb's binary
 * layout (no JSON text to parse, no JsonbValue tree to convert).
 */
#ifndef ICPML_FACTORS_H
#define ICPML_FACTORS_H

#include "postgres.h"

#include "utils/jsonb.h"
#include "utils/numeric.h"

/* at most this many items (icpml.top_factors is at most 32) */
#define FACTORS_MAX_ITEMS 32

typedef enum FactorsValueKind
{
	FACTORS_NULL,
	FACTORS_BOOL,
	FACTORS_NUMBER,
	FACTORS_STRING,
	FACTORS_TEXT_ARRAY
} FactorsValueKind;

typedef struct FactorsItem
{
	const char *factor;			/* not copied: the caller keeps it alive */
	FactorsValueKind kind;
	bool		boolean;
	Numeric		number;
	const char *string;			/* not copied */
	int			nelems;			/* text array */
	Datum	   *elems;			/* not copied */
	bool	   *enulls;
	Numeric		contribution;
} FactorsItem;

typedef struct FactorsBuilder
{
	int			n;
	FactorsItem items[FACTORS_MAX_ITEMS];
} FactorsBuilder;

/* [ {"factor": name, "value": <one value call>, "contribution": c}, ... ] */
extern void FactorsBegin(FactorsBuilder *fb);
extern void FactorsItemBegin(FactorsBuilder *fb, const char *factor);
extern void FactorsValueNull(FactorsBuilder *fb);
extern void FactorsValueBool(FactorsBuilder *fb, bool value);
/* a number printed with `digits` significant digits (NaN, infinities: null) */
extern void FactorsValueNumber(FactorsBuilder *fb, double value, int digits);
extern void FactorsValueString(FactorsBuilder *fb, const char *value);
extern void FactorsValueTextArray(FactorsBuilder *fb, Datum *elems, bool *nulls, int n);
/* the contribution, to 6 decimals */
extern void FactorsItemEnd(FactorsBuilder *fb, double contribution);
extern Jsonb *FactorsEnd(FactorsBuilder *fb);

#endif							/* ICPML_FACTORS_H */
