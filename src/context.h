/*
 * context.h — the recommender's context vector: the layout of its
 * BANDIT_DIM entries (context.c documents each one, names it and computes
 * it) and the functions that build it.
 */
#ifndef ICPML_CONTEXT_H
#define ICPML_CONTEXT_H

#include "postgres.h"

#include "bandit.h"

/* Entries (0-based; SQL arrays of a logged context are 1-based). */
#define CTX_BIAS 0
#define CTX_ICP 1
#define CTX_ICP_LOGIT 2
#define CTX_ENG_ROLES 3
#define CTX_OPEN_ENG 4
#define CTX_OPEN_ROLES 5
#define CTX_BLOG 6
#define CTX_FUNDING 7
#define CTX_SIZE_BAND 8
#define CTX_NSIZE_BANDS 5
#define CTX_RESEARCH 13
#define CTX_OWN 14
#define CTX_NOWN_TYPES 5
#define CTX_DISMISSED 19
#define CTX_FATIGUE 20
#define CTX_IGNORED 21
#define CTX_INDUSTRY_SHARE 22
#define CTX_INDUSTRY_REWARD 23
#define CTX_SIZE_SHARE 24
#define CTX_ACTIVITY 25
#define CTX_TECH_AFFINITY 26
#define CTX_INDUSTRY_SLOT 27
#define CTX_NINDUSTRY_SLOTS BANDIT_MAX_INDUSTRIES
#define CTX_TECH_SLOT 39
#define CTX_NTECH_SLOTS BANDIT_MAX_TECHNOLOGIES
#define CTX_ACCOUNT_ENGAGEMENT 63

StaticAssertDecl(CTX_OWN + CTX_NOWN_TYPES == CTX_DISMISSED, "context layout: own types");
StaticAssertDecl(CTX_INDUSTRY_SLOT + CTX_NINDUSTRY_SLOTS == CTX_TECH_SLOT, "context layout: industries");
StaticAssertDecl(CTX_TECH_SLOT + CTX_NTECH_SLOTS == CTX_ACCOUNT_ENGAGEMENT, "context layout: technologies");
StaticAssertDecl(CTX_ACCOUNT_ENGAGEMENT + 1 == BANDIT_DIM, "context layout");

struct RecommendCall;

/*
 * Build the context vector of every candidate of a recommend_accounts call
 * (recommend.h), after its reads: the user's history aggregates, every
 * candidate's account engagement, then call->X, call->nz, call->nnz and
 * call->eng_sd.
 */
extern void ContextBuild(struct RecommendCall *call);

/*
 * Per-row pieces the reads compute as the rows stream by (so that they
 * need not be kept): see context.c's table.
 */
extern int	ContextOwnType(const char *type);
extern double ContextRecencyWeight(double age_days);
extern double ContextFundingRecency(double age_days);
extern int	ContextIndustrySlot(const BanditSettings *cfg, const char *name);
extern uint32 ContextTechnologySlots(const BanditSettings *cfg, Datum stack);

/* Name of entry i for people; vocabulary slots name their value. */
extern const char *ContextSignalName(const BanditSettings *cfg, int i);

#endif							/* ICPML_CONTEXT_H */
