/*
 * signals.c — how an account's raw signals become features.
 *
 * One place for the transforms that the rule-based score (rules.c), the
 * recommender's context vector (context.c) and the model's feature spec
 * (spec.c, signals.h) apply to the same columns of the feature relation.
 * Missing inputs (NULL, NaN, +-Infinity, negative counts) are told apart
 * from zero: the rules give them no contribution, the context a 0 entry,
 * the model a missing value.
 *
 *   signal                      rules (rules.c)          context (context.c)
 *   engineering_role_count      log scale, cap           log scale, cap
 *                               engineering_roles_cap    engineering_roles_cap
 *   total_open_roles            log scale, cap           log scale, cap
 *                               open_roles_cap           open_roles_cap
 *   company_size                fit to [size_min,        five bands (1-49,
 *                               size_max]                50-199, ..., 5000+)
 *   funding_date                recency over             recency over 548 days
 *                               funding_window_days
 *   funding_amount_usd          log10(1 + usd) / 8       -
 *   tech_stack                  share of target_stack    vocabulary slots
 *
 * The caps, the size band and the funding window are icpml.rule_settings'
 * (SignalScaling, loaded by rules.c): the context scales the role counts
 * exactly as the rules do, and follows a change of the caps.  The model
 * takes the columns as they are (numbers, booleans, category levels, ages,
 * tag tokens): the trees find their own thresholds.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "utils/array.h"

#include "signals.h"

/* A usable count: not NULL, finite, not negative; false otherwise. */
bool
SignalCount(Datum d, bool isnull, double *out)
{
	double		v;

	if (isnull)
		return false;
	v = DatumGetFloat8(d);
	if (isnan(v) || isinf(v) || v < 0)
		return false;
	*out = v;
	return true;
}

/* log(1 + n) / log(1 + cap), capped at 1; 0 for an unknown (negative) n. */
double
SignalLogScale(double n, double cap)
{
	double		f;

	if (n < 0)
		return 0.0;
	f = log1p(n) / log1p(cap);
	return f > 1.0 ? 1.0 : f;
}

/* 1 - age / window for an event inside the window (age in days), else 0. */
double
SignalRecency(double age_days, double window_days)
{
	return (age_days >= 0 && age_days <= window_days) ? 1.0 - age_days / window_days : 0.0;
}

/*
 * Company size fit: 1 inside [size_min, size_max]; size / size_min below;
 * 1 - log10(size / size_max) above (0 at ten times size_max).
 */
double
SignalSizeFit(const SignalScaling *s, double size)
{
	if (size < s->size_min)
		return size / s->size_min;
	if (size <= s->size_max)
		return 1.0;
	return Max(0.0, 1.0 - log10(size / s->size_max));
}

/* Company size band 0..4 ([1,50) [50,200) [200,1000) [1000,5000) 5000+), -1 unknown. */
int
SignalSizeBand(double size, bool isnull)
{
	if (isnull || isnan(size) || isinf(size) || size <= 0)
		return -1;
	if (size < 50)
		return 0;
	if (size < 200)
		return 1;
	if (size < 1000)
		return 2;
	if (size < 5000)
		return 3;
	return 4;
}

/* Funding amount: log10(1 + usd) / 8, capped at 1 (1 from 100 million). */
double
SignalFundingAmount(double usd)
{
	return Min(1.0, log10(1.0 + usd) / 8.0);
}

/*
 * Share of the target stack present in a text[] (case-insensitive); false
 * when there is no target stack.
 */
bool
SignalStackAlignment(const SignalScaling *s, Datum stack, double *out)
{
	ArrayType  *arr = DatumGetArrayTypeP(stack);
	Datum	   *elems;
	bool	   *enulls;
	int			n,
				i,
				j,
				hits = 0;

	if (s->n_target_stack == 0)
		return false;
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &n);
	for (j = 0; j < s->n_target_stack; j++)
	{
		const char *want = s->target_stack[j];

		for (i = 0; i < n; i++)
		{
			if (enulls[i])
				continue;
			if (VARSIZE_ANY_EXHDR(elems[i]) == strlen(want) &&
				pg_strncasecmp(VARDATA_ANY(elems[i]), want, strlen(want)) == 0)
			{
				hits++;
				break;
			}
		}
	}
	*out = (double) hits / s->n_target_stack;
	return true;
}
