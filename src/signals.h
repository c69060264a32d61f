/*
 * signals.h — how an account's raw signals become features (signals.c):
 * the transforms the rule-based score (rules.c), the recommender's context
 * (context.c) and the model's feature spec (spec.c) share.
 */
#ifndef ICPML_SIGNALS_H
#define ICPML_SIGNALS_H

#include "postgres.h"

#include <math.h>

/*
 * The scaling of the signals: the columns of icpml.rule_settings that say
 * how a raw signal maps to [0, 1], cached per backend by rules.c
 * (RulesScaling) so that the rules and the context read them from one
 * place.
 */
typedef struct SignalScaling
{
	double		roles_cap;		/* engineering_roles_cap */
	double		open_roles_cap;
	double		size_min;		/* the company size band that fits */
	double		size_max;
	double		funding_window_days;
	char	  **target_stack;	/* lower-cased */
	int			n_target_stack;
} SignalScaling;

extern bool SignalCount(Datum d, bool isnull, double *out);
extern double SignalLogScale(double n, double cap);
extern double SignalRecency(double age_days, double window_days);
extern double SignalSizeFit(const SignalScaling *s, double size);
extern int	SignalSizeBand(double size, bool isnull);
extern double SignalFundingAmount(double usd);
extern bool SignalStackAlignment(const SignalScaling *s, Datum stack, double *out);

/*
 * The model's encoding (spec.c), on the scoring hot path: a number that is
 * not finite is missing (NaN); tag tokens are matched with ASCII letters
 * lower-cased (locale-independent).
 */
static inline float
SignalFinite(double v)
{
	return isfinite(v) ? (float) v : NAN;
}

static inline unsigned char
SignalFoldAscii(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/*
 * Fold a text as a model trained with fold_text reads it: ASCII letters
 * lower-cased, ASCII white space (space, \t, \n, \v, \f, \r) trimmed at
 * both ends and every inner run made one space.  Writes at most len bytes
 * to out; returns the folded length.  (The exported SQL scorer does the
 * same with translate, btrim and regexp_replace.)
 */
static inline int
SignalFoldText(const char *s, int len, char *out)
{
	int			i,
				n = 0;
	bool		space = false;

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == ' ' || (c >= '\t' && c <= '\r'))
		{
			space = (n > 0);
			continue;
		}
		if (space)
			out[n++] = ' ';
		space = false;
		out[n++] = (char) SignalFoldAscii(c);
	}
	return n;
}

#endif							/* ICPML_SIGNALS_H */
