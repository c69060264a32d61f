/*
 * recommend.h — one recommend_accounts() call, shared by the files that
 * serve it: recommend.c (the entry point, the user's history, the reason
 * and the log), retrieval.c (the candidates and their sources), profile.c
 * (the user's compact profile), context.c (the context vectors) and
 * policy.c (the ranking).
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
#include "catalog.h"
#include "context.h"
#include "signals.h"
#include "spi_scan.h"

/* Most accounts one call lists. */
#define RECOMMEND_MAX_K 100
/* Most candidates one call ranks (the candidates argument). */
#define RECOMMEND_MAX_CANDIDATES 5000
/* Distinct industries one call tracks (history and candidates). */
#define RECOMMEND_MAX_INDUSTRIES 256

/*
 * The retrieval sources (retrieval.c), in the order they admit candidates:
 * an account several sources return is logged with the first.
 */
typedef enum RecommendSource
{
	SOURCE_ICP,					/* top by ICP probability (before any
								 * scoring: by the rules) */
	SOURCE_AFFINITY,			/* the user's industries and size bands */
	SOURCE_FRESH,				/* new accounts and fresh research */
	SOURCE_EXPLORE				/* a random sample outside the top */
} RecommendSource;

#define RECOMMEND_NSOURCES (SOURCE_EXPLORE + 1)

/* The SQL name of a source (icpml.recommendations.source). */
extern const char *const RecommendSourceNames[RECOMMEND_NSOURCES];

/* One retrieved account (candidate or not). */
typedef struct RecommendRow
{
	int64		account_id;
	RecommendSource source;
	double		probability;
	int			icp_score;
	char	   *priority;		/* NULL: derived from icp_score when listed */
	bool		visible;		/* the caller can read its feature row */
	bool		verified;		/* read again after ranking (RetrievalVerifyChosen) */
	bool		features;		/* its signals below are known */
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
	bool		recent;			/* an interaction within exclude_recent */
} RecommendRow;

/* Hash entry: account id -> its retrieved row. */
typedef struct RecommendAccount
{
	int64		account_id;
	int			row;			/* index in rows[], -1 for history-only */
	bool		seen;			/* feature row read (live path) */
	int			industry;		/* index in the industry list, -1 unknown */
	int			size_band;
	uint32		tech_slots;		/* as RecommendRow.tech_slots */
	bool		tech_known;		/* its tech stack is not NULL */
} RecommendAccount;

/*
 * One interaction of the user's recent history, with the attributes of its
 * account (from the profile, or read when the history is read live).
 */
typedef struct RecommendHistItem
{
	int64		account_id;
	char	   *type;
	double		age_days;
	bool		known;			/* the account's attributes are known */
	int			industry;		/* index in call->industries, -1 unknown */
	int			size_band;		/* -1 unknown */
	uint32		tech_slots;		/* bits of cfg->technologies */
	bool		tech_known;
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

struct ProfileData;

/* The call: its arguments, what it read, the contexts and the ranking. */
typedef struct RecommendCall
{
	pg_uuid_t  *user;
	int			k;
	int			M;
	BanditPolicy policy;
	bool		policy_given;	/* false: the default or the experiment's */
	const BanditSettings *cfg;
	const SignalScaling *scaling;	/* icpml.rule_settings (rules.c) */
	TimestampTz now;
	DateADT		today;			/* now as a date in the session time zone */
	pg_prng_state rng;			/* the policy's draws */
	pg_prng_state retrieval_rng;	/* the explore source's draws */

	/* the user: history (newest first) and, when usable, the profile */
	RecommendHistItem *hist;
	int			nhist;			/* the last history_limit interactions */
	int			hist_cap;
	int			n_30d;
	struct ProfileData *profile;	/* NULL: the live path (recommend.c) */

	/* retrieved rows, the hash over them, and the candidates */
	RecommendRow *rows;
	int			nrows;
	int			rows_cap;
	HTAB	   *accounts;
	int		   *cand;			/* indices into rows[] */
	int			ncand;
	int			source_rows[RECOMMEND_NSOURCES];	/* retrieved per source */
	bool		materialised;	/* rows came from icpml.account_candidates */
	bool		check_all;		/* check every candidate's visibility now */
	double		exclude_recent_days;	/* bandit_settings.exclude_recent */
	bool		visibility_deferred;	/* only the listed ones, after ranking */

	/* user-level aggregates */
	RecommendIndustry industries[RECOMMEND_MAX_INDUSTRIES];
	int			nindustries;
	int			size_count[CTX_NSIZE_BANDS];
	int			n_known;		/* history items whose account is known */
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
	int			variant;		/* index in cfg->variants, -1 outside experiments,
								 * EXPERIMENT_HOLDOUT (experiments.h) held out */
	int32		model_version;	/* the variant's model version when it is not
								 * the deployed one (retrieval reads its
								 * icpml.version_scores), 0: the deployed */
	MemoryContext rowcxt;		/* per feature row scratch, reset after each */
} RecommendCall;

/* Helpers of the reads, shared by retrieval.c, profile.c and recommend.c. */

/* Find or create the hash entry of an account. */
static inline RecommendAccount *
RecommendEntry(RecommendCall *call, int64 account_id)
{
	bool		found;
	RecommendAccount *e = hash_search(call->accounts, &account_id, HASH_ENTER, &found);

	if (!found)
	{
		e->row = -1;
		e->seen = false;
		e->industry = -1;
		e->size_band = -1;
		e->tech_slots = 0;
		e->tech_known = false;
	}
	return e;
}

/*
 * Index of the industry name[0..len-1] in the call's industry list, adding
 * it; -1 when the list is full (RECOMMEND_MAX_INDUSTRIES distinct names).
 */
static inline int
RecommendIndustryIndex(RecommendCall *call, const char *name, int len)
{
	RecommendIndustry *s;
	int			i;

	for (i = 0; i < call->nindustries; i++)
		if (call->industries[i].len == len && memcmp(call->industries[i].name, name, len) == 0)
			return i;
	if (call->nindustries >= RECOMMEND_MAX_INDUSTRIES)
		return -1;
	s = &call->industries[call->nindustries++];
	s->name = pnstrdup(name, len);
	s->len = len;
	s->slot = ContextIndustrySlot(call->cfg, s->name);
	s->n = 0;
	s->reward = 0;
	s->best_type = -1;
	return i;
}

/* Scan a plan over one of icpml's own tables as the extension owner. */
static inline uint64
RecommendOwnerScan(SPIPlanPtr plan, Datum *args, bool read_only, SpiRowCallback callback,
				   void *arg, const char *table)
{
	CatalogOwnerState owner;
	uint64		rows;

	CatalogSwitchToOwner(&owner);
	rows = SpiScan(plan, args, read_only, callback, arg, table);
	CatalogRestoreUser(&owner);
	return rows;
}

/*
 * retrieval.c: the user (profile or history) and the candidates: fills
 * hist[], rows[] and cand[]; after ranking, checks the listed accounts
 * when the visibility check was deferred (see retrieval.c).
 */
extern void RetrievalRun(RecommendCall *call);
extern int	RetrievalVerifyChosen(RecommendCall *call);

/*
 * retrieval.c: after logging, the listed rows' signals read again as the
 * caller (from account_candidates they are as the scorer read them), for
 * their reasons.
 */
extern void RetrievalReadListed(RecommendCall *call);

#endif							/* ICPML_RECOMMEND_H */
