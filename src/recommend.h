/*
 * recommend.h — one recommend_accounts() call, shared by the files that
 * serve it: recommend.c (the entry point, its reads, the reason and the
 * log), context.c (the context vectors) and policy.c (the ranking).
 *
 * Everything a call allocates lives in the SPI procedure context and goes
 * away at SPI_finish.
 */
#ifndef ICPML_RECOMMEND_H
#define ICPML_RECOMMEND_H

#include "postgres.h"

#include "common/pg_prng.h"
#include "utils/date.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "bandit.h"
#include "context.h"
#include "signals.h"

/* Most accounts one call lists. */
#define RECOMMEND_MAX_K 100
/* Distinct industries one call tracks (history and candidates). */
#define RECOMMEND_MAX_INDUSTRIES 256

/* One scanned account of account_scores (candidate or not). */
typedef struct RecommendRow
{
	int64		account_id;
	double		probability;
	int			icp_score;
	char	   *priority;
	bool		visible;		/* the caller can read its feature row */
	char	   *industry;		/* NULL when unknown */
	int			ind;			/* its index in call->industries, -1 none */
	double		eng_roles;		/* < 0 when unknown */
	double		open_roles;
	bool		hiring;
	bool		blog;
	int			size_band;		/* -1 when unknown */
	double		funding;		/* recent_funding feature */
	double		research;		/* research_recency feature */
	int			industry_slot;	/* index in cfg->industries, -1 none */
	uint32		tech_slots;		/* bit i: tech stack holds cfg->technologies[i] */
	bool		tech_known;		/* tech stack not NULL */
	double		fatigue;		/* decayed count of ignored impressions */
	double		ignored;		/* ignored impressions weighted by examination */
	double		fb_examined;	/* its account_feedback row: examined, */
	double		fb_reward;		/* reward (0 when it has none) */
	double		engagement;		/* account_engagement feature */
	double		engagement_sd;	/* its standard error */
	double		own[CTX_NOWN_TYPES];
	int			own_best;		/* best own interaction type, -1 none */
	bool		dismissed;
	bool		worked;
} RecommendRow;

/* Hash entry: account id -> scanned row and industry/size of history accounts. */
typedef struct RecommendAccount
{
	int64		account_id;
	int			row;			/* index in rows[], -1 for history-only */
	bool		seen;			/* feature row read */
	int			industry;		/* index in the industry list, -1 unknown */
	int			size_band;
	uint32		tech_slots;		/* as RecommendRow.tech_slots */
	bool		tech_known;		/* its tech stack is not NULL */
} RecommendAccount;

/* One interaction of the user's recent history. */
typedef struct RecommendHistItem
{
	int64		account_id;
	char	   *type;
	double		age_days;
} RecommendHistItem;

/* Per-industry aggregate of the user's recent history. */
typedef struct RecommendIndustry
{
	char	   *name;
	int			len;			/* strlen(name) */
	int			slot;			/* index in cfg->industries, -1 none */
	int			n;
	double		reward;
	int			best_type;		/* index in ContextOwnTypes, -1 none */
} RecommendIndustry;

/* The call: its arguments, what it read, the contexts and the ranking. */
typedef struct RecommendCall
{
	pg_uuid_t  *user;
	int			k;
	int			M;
	BanditPolicy policy;
	const BanditSettings *cfg;
	const SignalScaling *scaling;	/* icpml.rule_settings (rules.c) */
	TimestampTz now;
	DateADT		today;			/* now as a date in the session time zone */
	pg_prng_state rng;

	/* history */
	RecommendHistItem *hist;
	int			nhist;
	int			hist_cap;
	int			n_30d;

	/* scanned rows, the hash over them, and the candidates */
	RecommendRow *rows;
	int			nrows;
	int			rows_cap;
	HTAB	   *accounts;
	int		   *cand;			/* indices into rows[] */
	int			ncand;

	/* user-level aggregates */
	RecommendIndustry industries[RECOMMEND_MAX_INDUSTRIES];
	int			nindustries;
	int			size_count[CTX_NSIZE_BANDS];
	int			n_known;		/* history items whose account is visible */
	int			tech_count[CTX_NTECH_SLOTS];	/* history items using each technology */
	int			n_tech_known;	/* history items whose account's stack is known */
	double		mean_reward;

	/* contexts and ranking */
	double	   *X;				/* ncand x BANDIT_DIM, float4-rounded */
	double	   *mu;
	double	   *score;
	double	   *explore;
	double	   *eng_sd;			/* per candidate: standard error of account_engagement */
	int		   *nz;				/* ncand x BANDIT_DIM: indices of the non-zero entries */
	int		   *nnz;			/* per candidate: how many */
	double		theta[BANDIT_DIM];
	int			chosen[RECOMMEND_MAX_K];
	double		propensity[RECOMMEND_MAX_K];
	bool		explored[RECOMMEND_MAX_K];
	int			nchosen;
	BanditState global_state;	/* the shared bandit state */
	BanditState user_state;	/* the user's bandit state */
	int64		state_version;
	int			variant;		/* index in cfg->variants, -1 outside experiments */
	MemoryContext rowcxt;		/* per feature row scratch, reset after each */
} RecommendCall;

#endif							/* ICPML_RECOMMEND_H */
