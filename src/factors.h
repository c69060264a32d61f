/*
 * factors.h — building the "factors" jsonb of icp_score directly as a
 * JsonbValue tree (no JSON text to parse on the hot path).
 */
#ifndef ICPML_FACTORS_H
#define ICPML_FACTORS_H

#include "postgres.h"

#include "utils/jsonb.h"

typedef struct FactorsBuilder
{
	JsonbParseState *state;
} FactorsBuilder;

/* [ {"factor": name, "value": <one value call>, "contribution": c}, ... ] */
extern void FactorsBegin(FactorsBuilder *fb);
extern void FactorsItemBegin(FactorsBuilder *fb, const char *factor);
extern void FactorsValueNull(FactorsBuilder *fb);
extern void FactorsValueBool(FactorsBuilder *fb, bool value);
extern void FactorsValueNumber(FactorsBuilder *fb, double value, int digits);
extern void FactorsValueString(FactorsBuilder *fb, const char *value);
extern void FactorsValueTextArray(FactorsBuilder *fb, Datum *elems, bool *nulls, int n);
extern void FactorsItemEnd(FactorsBuilder *fb, double contribution);
extern Jsonb *FactorsEnd(FactorsBuilder *fb);

#endif							/* ICPML_FACTORS_H */
