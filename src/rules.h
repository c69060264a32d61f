/*
 * rules.h — the rule-based baseline ICP score.
 */
#ifndef ICPML_RULES_H
#define ICPML_RULES_H

#include "executor/spi.h"
#include "relation.h"
#include "icpml.h"
#include "signals.h"

typedef enum RuleFactor
{
	RULE_ENGINEERING_ROLES,
	RULE_OPEN_ENGINEERING_ROLES,
	RULE_TOTAL_OPEN_ROLES,
	RULE_ENGINEERING_BLOG,
	RULE_COMPANY_SIZE_FIT,
	RULE_RECENT_FUNDING,
	RULE_FUNDING_AMOUNT,
	RULE_TECH_STACK_ALIGNMENT,
	RULE_NFACTORS
} RuleFactor;

/* The feature columns the rules read, in RuleFactor-independent order. */
#define RULE_NCOLUMNS 8
extern const RelationColumn RulesColumns[RULE_NCOLUMNS];

/*
 * Score one feature row laid out as RulesColumns (values[0..7], nulls[0..7]).
 * Returns the probability; fills contrib[RULE_NFACTORS] (logit units, 0 for
 * missing inputs) when not NULL.
 */
extern double RulesProbability(Datum *values, bool *nulls, double *contrib);

/* Fill *out from a row whose column 0 is the key and 1..8 RulesColumns;
 * out->factors stays NULL unless `factors`. */
extern void RulesScoreTuple(HeapTuple tuple, TupleDesc desc, IcpScore *out, bool factors);

/*
 * Every factor of one row (key + RulesColumns): names, raw values as JSON
 * text and contributions (logit units).  Returns the bias.
 */
extern double RulesExplainTuple(HeapTuple tuple, TupleDesc desc, const char **names,
								char **values, double *contrib);

/*
 * Whether a factor is unavailable: the feature relation lacks a column it
 * reads (only the key is required; a missing column reads as NULL and its
 * factors contribute nothing).  Valid once the reader's plans are built.
 */
extern bool RulesFactorUnavailable(int factor);

/* The RelationReader the rules use (shared by score.c). */
extern RelationReader *RulesReader(void);

/*
 * The scaling of the account signals the rules use (icpml.rule_settings),
 * shared with the recommender's context; inside SPI_connect.
 */
extern const SignalScaling *RulesScaling(void);

/* The weights (logit units) and priority tiers the rules score with. */
typedef struct RulesWeights
{
	double		bias;
	double		weight[RULE_NFACTORS];
	int			high_min_score;
	int			medium_min_score;
} RulesWeights;

/*
 * The rules' configuration for the exported SQL scorer (export.c): weights
 * and tiers, factor names, and the RulesColumns entry whose raw value a
 * factor shows; inside SPI_connect.
 */
extern void RulesGetWeights(RulesWeights *out);
extern const char *RulesFactorName(int factor);
extern int	RulesFactorInput(int factor);

#endif							/* ICPML_RULES_H */
