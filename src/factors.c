/*
 * factors.c — the "factors" jsonb of icp_score, built as a JsonbValue tree.
 *
 * Formatting text and parsing it back with jsonb_in cost several
 * microseconds per call, a large share of a single-account score; pushing
 * values directly costs a fraction of that.  Numbers keep the textual
 * precision the SQL interface documents (contributions to 6 decimals).
 */
#include "postgres.h"

#include <math.h>

#include "utils/builtins.h"
#include "utils/numeric.h"

#include "factors.h"

/* A jsonb string value (not copied: the caller keeps it alive). */
static void
FactorsPushString(FactorsBuilder *fb, JsonbIteratorToken token, const char *s)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = strlen(s);
	pushJsonbValue(&fb->state, token, &v);
}

/* A jsonb numeric from a finite double printed with `digits` decimals or significant digits. */
static void
FactorsPushNumber(FactorsBuilder *fb, const char *fmt, double value)
{
	char		buf[64];
	JsonbValue	v;

	snprintf(buf, sizeof(buf), fmt, value);
	v.type = jbvNumeric;
	v.val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(buf),
														ObjectIdGetDatum(InvalidOid),
														Int32GetDatum(-1)));
	pushJsonbValue(&fb->state, WJB_VALUE, &v);
}

void
FactorsBegin(FactorsBuilder *fb)
{
	fb->state = NULL;
	pushJsonbValue(&fb->state, WJB_BEGIN_ARRAY, NULL);
}

void
FactorsItemBegin(FactorsBuilder *fb, const char *factor)
{
	pushJsonbValue(&fb->state, WJB_BEGIN_OBJECT, NULL);
	FactorsPushString(fb, WJB_KEY, "factor");
	FactorsPushString(fb, WJB_VALUE, factor);
	FactorsPushString(fb, WJB_KEY, "value");
}

void
FactorsValueNull(FactorsBuilder *fb)
{
	JsonbValue	v;

	v.type = jbvNull;
	pushJsonbValue(&fb->state, WJB_VALUE, &v);
}

void
FactorsValueBool(FactorsBuilder *fb, bool value)
{
	JsonbValue	v;

	v.type = jbvBool;
	v.val.boolean = value;
	pushJsonbValue(&fb->state, WJB_VALUE, &v);
}

/* A number (NaN and infinities become null: JSON has no such numbers). */
void
FactorsValueNumber(FactorsBuilder *fb, double value, int digits)
{
	char		fmt[16];

	if (isnan(value) || isinf(value))
	{
		FactorsValueNull(fb);
		return;
	}
	snprintf(fmt, sizeof(fmt), "%%.%dg", digits);
	FactorsPushNumber(fb, fmt, value);
}

void
FactorsValueString(FactorsBuilder *fb, const char *value)
{
	FactorsPushString(fb, WJB_VALUE, value);
}

/* A JSON array of text elements (NULL elements become null). */
void
FactorsValueTextArray(FactorsBuilder *fb, Datum *elems, bool *nulls, int n)
{
	int			i;

	pushJsonbValue(&fb->state, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
		{
			JsonbValue	v;

			v.type = jbvNull;
			pushJsonbValue(&fb->state, WJB_ELEM, &v);
		}
		else
			FactorsPushString(fb, WJB_ELEM, TextDatumGetCString(elems[i]));
	}
	pushJsonbValue(&fb->state, WJB_END_ARRAY, NULL);
}

void
FactorsItemEnd(FactorsBuilder *fb, double contribution)
{
	FactorsPushString(fb, WJB_KEY, "contribution");
	FactorsPushNumber(fb, "%.6f", contribution);
	pushJsonbValue(&fb->state, WJB_END_OBJECT, NULL);
}

Jsonb *
FactorsEnd(FactorsBuilder *fb)
{
	return JsonbValueToJsonb(pushJsonbValue(&fb->state, WJB_END_ARRAY, NULL));
}
