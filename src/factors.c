/*
 * factors.c — the "factors" jsonb of a score (see factors.h).
 *
 * Every score carries one, so it is on the hot path of icp_score and
 * icp_score_batch: formatting JSON text and parsing it back costs several
 * microseconds, and building a JsonbValue tree that jsonb then converts
 * (sorting each object's keys) about two.  The shape never varies — an
 * array of objects with the keys "value", "factor" and "contribution" —
 * so the items are collected as they come and written straight into
 * jsonb's binary layout, exactly as convertToJsonb lays out that tree
 * (keys in jsonb's order: by length, then bytes; every container and
 * number aligned to 4 bytes, the padding counted in its JEntry; the first
 * of every JB_OFFSET_STRIDE entries holds an end offset, the others
 * lengths).  Numbers keep the textual precision the SQL interface
 * documents: contributions to 6 decimals, values to `digits` significant
 * digits, converted without numeric_in where the text is an integer.
 */
#include "postgres.h"

#include <math.h>

#include "utils/builtins.h"
#include "utils/numeric.h"

#include "factors.h"

void
FactorsBegin(FactorsBuilder *fb)
{
	fb->n = 0;
}

/* The item being built. */
static inline FactorsItem *
FactorsCurrent(FactorsBuilder *fb)
{
	return &fb->items[fb->n];
}

void
FactorsItemBegin(FactorsBuilder *fb, const char *factor)
{
	FactorsItem *it;

	if (fb->n >= FACTORS_MAX_ITEMS)
		elog(ERROR, "more than %d factors (please report a bug)", FACTORS_MAX_ITEMS);
	it = FactorsCurrent(fb);
	it->factor = factor;
	it->kind = FACTORS_NULL;
}

void
FactorsValueNull(FactorsBuilder *fb)
{
	FactorsCurrent(fb)->kind = FACTORS_NULL;
}

void
FactorsValueBool(FactorsBuilder *fb, bool value)
{
	FactorsItem *it = FactorsCurrent(fb);

	it->kind = FACTORS_BOOL;
	it->boolean = value;
}

/*
 * A numeric equal to numeric_in of `text`, an optionally signed decimal of
 * at most 18 digits with `scale` digits after the point (as printf wrote
 * it); NULL when it is not such a text.
 */
static Numeric
FactorsDecimal(const char *text, int scale)
{
	const char *p = text;
	bool		neg = false;
	int64		v = 0;
	int			ndigits = 0,
				after = -1;

	if (*p == '-')
	{
		neg = true;
		p++;
	}
	for (; *p; p++)
	{
		if (*p == '.' && after < 0)
		{
			after = 0;
			continue;
		}
		if (*p < '0' || *p > '9' || ++ndigits > 18)
			return NULL;
		v = v * 10 + (*p - '0');
		if (after >= 0)
			after++;
	}
	if (ndigits == 0 || (after < 0 ? 0 : after) != scale)
		return NULL;
	return scale > 0 ? int64_div_fast_to_numeric(neg ? -v : v, scale) :
		int64_to_numeric(neg ? -v : v);
}

/* numeric_in of a text printf wrote. */
static Numeric
FactorsNumericIn(const char *text)
{
	return DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(text),
											   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
}

/* A number (NaN and infinities become null: JSON has no such numbers). */
void
FactorsValueNumber(FactorsBuilder *fb, double value, int digits)
{
	FactorsItem *it = FactorsCurrent(fb);
	char		buf[64];
	Numeric		n;

	if (isnan(value) || isinf(value))
	{
		it->kind = FACTORS_NULL;
		return;
	}
	/* "%.<digits>g" of an integer below 10^digits is that integer */
	if (value == rint(value) && fabs(value) < pow(10.0, Min(digits, 18)))
		n = int64_to_numeric((int64) value);
	else
	{
		snprintf(buf, sizeof(buf), "%.*g", digits, value);
		n = FactorsNumericIn(buf);
	}
	it->kind = FACTORS_NUMBER;
	it->number = n;
}

void
FactorsValueString(FactorsBuilder *fb, const char *value)
{
	FactorsItem *it = FactorsCurrent(fb);

	it->kind = FACTORS_STRING;
	it->string = value;
}

/* A JSON array of text elements (NULL elements become null). */
void
FactorsValueTextArray(FactorsBuilder *fb, Datum *elems, bool *nulls, int n)
{
	FactorsItem *it = FactorsCurrent(fb);

	it->kind = FACTORS_TEXT_ARRAY;
	it->elems = elems;
	it->enulls = nulls;
	it->nelems = n;
}

void
FactorsItemEnd(FactorsBuilder *fb, double contribution)
{
	FactorsItem *it = FactorsCurrent(fb);
	char		buf[64];

	snprintf(buf, sizeof(buf), "%.6f", contribution);
	it->contribution = FactorsDecimal(buf, 6);
	if (it->contribution == NULL)
		it->contribution = FactorsNumericIn(buf);
	fb->n++;
}

/* ---------------------------------------------------------------------
 * jsonb's binary layout
 * --------------------------------------------------------------------- */

/* Pad the buffer to a 4-byte boundary; returns the padding. */
static int
FactorsPad(StringInfo buf)
{
	int			pad = INTALIGN(buf->len) - buf->len;

	if (pad > 0)
	{
		enlargeStringInfo(buf, pad);
		memset(buf->data + buf->len, 0, pad);
		buf->len += pad;
	}
	return pad;
}

/* Room for n JEntries (or a header and JEntries) at the end; returns its offset. */
static int
FactorsReserve(StringInfo buf, int bytes)
{
	int			off = buf->len;

	enlargeStringInfo(buf, bytes);
	buf->len += bytes;
	return off;
}

/* Store child i's JEntry: its length, or its end offset for every stride-th. */
static void
FactorsSetEntry(StringInfo buf, int entries, int i, uint32 type, int len, int *total)
{
	JEntry		e;

	*total += len;
	e = ((i % JB_OFFSET_STRIDE) == 0) ? (type | (uint32) *total | JENTRY_HAS_OFF) : (type | (uint32) len);
	memcpy(buf->data + entries + sizeof(JEntry) * i, &e, sizeof(JEntry));
}

/* A numeric scalar's data (padded); returns its JEntry length. */
static int
FactorsWriteNumeric(StringInfo buf, Numeric n)
{
	int			pad = FactorsPad(buf);
	int			len = VARSIZE(n);

	appendBinaryStringInfo(buf, (const char *) n, len);
	return pad + len;
}

/* A value (scalar or the text array); returns its JEntry type and length. */
static int
FactorsWriteValue(StringInfo buf, const FactorsItem *it, uint32 *type)
{
	int			start,
				entries,
				total = 0,
				i;
	uint32		header;

	switch (it->kind)
	{
		case FACTORS_NULL:
			*type = JENTRY_ISNULL;
			return 0;
		case FACTORS_BOOL:
			*type = it->boolean ? JENTRY_ISBOOL_TRUE : JENTRY_ISBOOL_FALSE;
			return 0;
		case FACTORS_NUMBER:
			*type = JENTRY_ISNUMERIC;
			return FactorsWriteNumeric(buf, it->number);
		case FACTORS_STRING:
			*type = JENTRY_ISSTRING;
			appendBinaryStringInfo(buf, it->string, strlen(it->string));
			return strlen(it->string);
		case FACTORS_TEXT_ARRAY:
			break;
	}
	/* the text array: a container of strings and nulls */
	*type = JENTRY_ISCONTAINER;
	start = buf->len;
	(void) FactorsPad(buf);
	header = (uint32) it->nelems | JB_FARRAY;
	appendBinaryStringInfo(buf, (const char *) &header, sizeof(uint32));
	entries = FactorsReserve(buf, sizeof(JEntry) * it->nelems);
	for (i = 0; i < it->nelems; i++)
	{
		if (it->enulls[i])
			FactorsSetEntry(buf, entries, i, JENTRY_ISNULL, 0, &total);
		else
		{
			text	   *t = DatumGetTextPP(it->elems[i]);
			int			len = VARSIZE_ANY_EXHDR(t);

			appendBinaryStringInfo(buf, VARDATA_ANY(t), len);
			FactorsSetEntry(buf, entries, i, JENTRY_ISSTRING, len, &total);
		}
	}
	return buf->len - start;
}

/* One item: {"value": ..., "factor": ..., "contribution": ...}; returns its length. */
static int
FactorsWriteItem(StringInfo buf, const FactorsItem *it)
{
	/* jsonb's key order: shorter first */
	static const char *const keys[3] = {"value", "factor", "contribution"};
	int			start = buf->len,
				entries,
				total = 0,
				len,
				k;
	uint32		header = 3 | JB_FOBJECT,
				type;

	(void) FactorsPad(buf);
	appendBinaryStringInfo(buf, (const char *) &header, sizeof(uint32));
	entries = FactorsReserve(buf, sizeof(JEntry) * 6);
	for (k = 0; k < 3; k++)
	{
		appendBinaryStringInfo(buf, keys[k], strlen(keys[k]));
		FactorsSetEntry(buf, entries, k, JENTRY_ISSTRING, strlen(keys[k]), &total);
	}
	len = FactorsWriteValue(buf, it, &type);
	FactorsSetEntry(buf, entries, 3, type, len, &total);
	appendBinaryStringInfo(buf, it->factor, strlen(it->factor));
	FactorsSetEntry(buf, entries, 4, JENTRY_ISSTRING, strlen(it->factor), &total);
	len = FactorsWriteNumeric(buf, it->contribution);
	FactorsSetEntry(buf, entries, 5, JENTRY_ISNUMERIC, len, &total);
	return buf->len - start;
}

/* The jsonb: an array of the items. */
Jsonb *
FactorsEnd(FactorsBuilder *fb)
{
	StringInfoData buf;
	uint32		header = (uint32) fb->n | JB_FARRAY;
	int			entries,
				total = 0,
				i;
	Jsonb	   *res;

	initStringInfo(&buf);
	(void) FactorsReserve(&buf, VARHDRSZ);
	appendBinaryStringInfo(&buf, (const char *) &header, sizeof(uint32));
	entries = FactorsReserve(&buf, sizeof(JEntry) * fb->n);
	for (i = 0; i < fb->n; i++)
	{
		int			len = FactorsWriteItem(&buf, &fb->items[i]);

		FactorsSetEntry(&buf, entries, i, JENTRY_ISCONTAINER, len, &total);
	}
	if (buf.len - VARHDRSZ > JENTRY_OFFLENMASK)
		elog(ERROR, "factors too large for jsonb (please report a bug)");
	res = (Jsonb *) buf.data;
	SET_VARSIZE(res, buf.len);
	return res;
}

