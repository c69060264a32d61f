/*
 * recommend.c — recommend_accounts(user_id, k, policy, candidates, seed).
 *
 * Phases of one call (latency does not grow with the account table):
 *
 *  1. history   the user's most recent interactions (history_limit), read
 *               as the caller from icpml.interactions_relation by its
 *               (user_id, created_at) index: user-level context features.
 *  2. retrieval the top M accounts by ICP probability from
 *               icpml.account_scores (index on probability DESC, read as the
 *               extension owner), then, as the caller, their feature rows
 *               (= ANY($1) on icpml.feature_relation: row-level security
 *               drops what the caller may not see) and the user's
 *               interactions with them (= ANY($2): dismissed or already
 *               worked accounts are excluded).  The survivors are the
 *               candidates; when fewer than max(k, M/2) survive, retrieval
 *               pages further down the score order, doubling the page,
 *               until that many survive, the table ends, 10 M accounts
 *               were scanned with at least k survivors, or 20 M accounts
 *               were scanned (then fewer than k may be listed).  The retrieval
 *               query is an index-only scan (account_id, probability) joined
 *               to icpml.account_feedback (the account_engagement evidence);
 *               the score and priority are read for the k listed rows only.
 *               Every read streams its rows to a callback (spi_scan.c).
 *  3. context   one vector per candidate (bandit.h documents its entries).
 *  4. ranking   in C: theta from the Cholesky factors of the global and the
 *               user's state, then per candidate mu = theta' x and, for
 *               LinUCB, x' A^-1 x with A^-1 derived once per call; both
 *               over the candidate's non-zero entries only (about 20 of 64).
 *  5. logging   one INSERT of the k served rows into icpml.recommendations
 *               (as the owner) with context, score and propensity.
 *
 * Personalisation: the user's state (A_u, b_u) is a ridge regression whose
 * prior (strength personalization_prior) is centred on the shared model:
 * theta_u = A_u^-1 (personalization_prior theta_g + b_u), so a user without
 * history gets the shared model, and theta = (1 - w) theta_g + w theta_u;
 * LinUCB's uncertainty is x' A_g^-1 x + w x' A_u^-1 x.
 *
 * Experiments: while one runs (icpml.experiments) and the caller passes no
 * policy, the user's hashed variant (experiments.c) chooses the policy, and
 * the experiment and variant are logged with every row and named in the
 * reason.
 *
 * Memory: everything lives in the SPI procedure context and goes away at
 * SPI_finish; the result rows are copied into the tuplestore before that.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "icpml.h"
#include "bandit.h"
#include "features.h"
#include "spi_scan.h"

#define RECOMMEND_MAX_K 100
#define RECOMMEND_MAX_CANDIDATES 5000
#define RECOMMEND_NATTS 9
/* impressions read for the fatigue feature (most recent first) */
#define RECOMMEND_FATIGUE_ROWS 500
/* extra posterior draws that estimate a Thompson propensity */
#define RECOMMEND_TS_SAMPLES 20
#define RECOMMEND_MAX_INDUSTRIES 256
#define RECOMMEND_MAX_PAGE 50000

PG_FUNCTION_INFO_V1(recommend_accounts);

/* Feature columns read for candidates and for the accounts in the history. */
static const FeatureColumn RecommendColumns[] = {
	{"industry", TEXTOID},
	{"engineering_role_count", FLOAT8OID},
	{"has_open_engineering_roles", BOOLOID},
	{"total_open_roles", FLOAT8OID},
	{"has_engineering_blog", BOOLOID},
	{"company_size", FLOAT8OID},
	{"funding_date", DATEOID},
	{"researched_at", TIMESTAMPTZOID},
	{"tech_stack", TEXTARRAYOID},
};

static FeatureReader recommend_reader = {RecommendColumns, lengthof(RecommendColumns)};

/* Columns of a feature read: the key, then RecommendColumns. */
#define RECOMMEND_NCOLS (1 + (int) lengthof(RecommendColumns))

/* Plans over the interactions relation, rebuilt when the GUC changes. */
static char *interactions_setting = NULL;
static SPIPlanPtr plan_history = NULL;
static SPIPlanPtr plan_own = NULL;
static SPIPlanPtr plan_retrieve = NULL;
static SPIPlanPtr plan_log = NULL;
static SPIPlanPtr plan_log_pre_experiments = NULL;
static SPIPlanPtr plan_tiers = NULL;
static SPIPlanPtr plan_fatigue = NULL;

/* One scanned account of account_scores (candidate or not). */
typedef struct RecRow
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
	double		own[BANDIT_NOWN_TYPES];
	int			own_best;		/* best own interaction type, -1 none */
	bool		dismissed;
	bool		worked;
} RecRow;

/* Hash entry: account id -> scanned row and industry/size of history accounts. */
typedef struct AccountEntry
{
	int64		account_id;
	int			row;			/* index in rows[], -1 for history-only */
	bool		seen;			/* feature row read */
	int			industry;		/* index in the industry list, -1 unknown */
	int			size_band;
	uint32		tech_slots;		/* as RecRow.tech_slots */
	bool		tech_known;		/* its tech stack is not NULL */
} AccountEntry;

/* One interaction of the user's recent history. */
typedef struct HistItem
{
	int64		account_id;
	char	   *type;
	double		age_days;
} HistItem;

/* Per-industry aggregate of the user's recent history. */
typedef struct IndustryStat
{
	char	   *name;
	int			len;			/* strlen(name) */
	int			slot;			/* index in cfg->industries, -1 none */
	int			n;
	double		reward;
	int			best_type;		/* index in BanditOwnTypes, -1 none */
} IndustryStat;

typedef struct RecommendCall
{
	pg_uuid_t  *user;
	int			k;
	int			M;
	BanditPolicy policy;
	const BanditSettings *cfg;
	TimestampTz now;
	DateADT		today;			/* now as a date in the session time zone */
	pg_prng_state rng;

	/* history */
	HistItem   *hist;
	int			nhist;
	int			hist_cap;
	int			n_30d;

	/* scanned rows, the hash over them, and the candidates */
	RecRow	   *rows;
	int			nrows;
	int			rows_cap;
	HTAB	   *accounts;
	int		   *cand;			/* indices into rows[] */
	int			ncand;

	/* user-level aggregates */
	IndustryStat industries[RECOMMEND_MAX_INDUSTRIES];
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
	int64		state_version;
	int			variant;		/* index in cfg->variants, -1 outside experiments */
	MemoryContext rowcxt;		/* per feature row scratch, reset after each */
} RecommendCall;

/* Round to float4 the way the logged real[] context stores it. */
static inline double
RecRound(double v)
{
	return (double) (float4) v;
}

/* Company size band 0..4, or -1 when unknown. */
static int
RecSizeBand(double size, bool isnull)
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

/* A usable non-negative count, or -1. */
static inline double
RecCount(Datum d, bool isnull)
{
	double		v;

	if (isnull)
		return -1;
	v = DatumGetFloat8(d);
	return (isnan(v) || isinf(v) || v < 0) ? -1 : v;
}

/* log(1+x)/log(1+cap) capped at 1; 0 for unknown. */
static inline double
RecLogScale(double x, double cap)
{
	double		f;

	if (x < 0)
		return 0.0;
	f = log1p(x) / log1p(cap);
	return f > 1.0 ? 1.0 : f;
}

/* Index of an interaction type among BanditOwnTypes, or -1. */
static int
RecOwnType(const char *type)
{
	int			t;

	for (t = 0; t < BANDIT_NOWN_TYPES; t++)
		if (strcmp(type, BanditOwnTypes[t]) == 0)
			return t;
	return -1;
}

/*
 * The identity check, failing closed: an administrator (see
 * CatalogIsAdministrator) may ask for any user; everyone else must have
 * asserted a JWT subject equal to user_id -- request.jwt.claims holding a
 * JSON object whose "sub" is a string (how PostgREST passes the verified
 * token), or, when request.jwt.claims is unset or empty, the older
 * request.jwt.claim.sub.  No claims, malformed claims, or a "sub" that is
 * missing, null, a number, an array or another user are all refused.
 */
static void
RecommendCheckCaller(const pg_uuid_t *user)
{
	const char *claims;
	const char *problem = NULL;
	char	   *sub = NULL;
	char		scope[48];

	if (CatalogIsAdministrator(GetUserId()))
		return;

	claims = GetConfigOption("request.jwt.claims", true, false);
	if (claims != NULL && claims[0] != '\0')
	{
		Jsonb	   *jb = NULL;
		MemoryContext cxt = CurrentMemoryContext;

		/* malformed JSON is a refusal with our message, not jsonb_in's */
		PG_TRY();
		{
			jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(claims)));
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			FlushErrorState();
			jb = NULL;
		}
		PG_END_TRY();

		if (jb == NULL)
			problem = "request.jwt.claims is not valid JSON";
		else if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
			problem = "request.jwt.claims is not a JSON object";
		else
		{
			JsonbValue	vbuf;
			JsonbValue *v = getKeyJsonValueFromContainer(&jb->root, "sub", 3, &vbuf);

			if (v == NULL)
				problem = "the JWT claims have no \"sub\"";
			else if (v->type != jbvString)
				problem = "the JWT claim \"sub\" is not a string";
			else
				sub = pnstrdup(v->val.string.val, v->val.string.len);
		}
	}
	else
	{
		const char *s = GetConfigOption("request.jwt.claim.sub", true, false);

		if (s != NULL && s[0] != '\0')
			sub = pstrdup(s);
		else
			problem = "the caller presented no JWT claims";
	}

	if (sub == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot check the caller's identity: %s", problem),
				 errdetail("A caller that is not an icpml administrator must present a JWT whose \"sub\" is its own user id."),
				 errhint("Call through PostgREST with the user's token, or set request.jwt.claims to {\"sub\": \"<user id>\"} for the transaction; see docs/security.md.")));

	BanditUserScope(user, scope);
	if (pg_strcasecmp(sub, scope + 5) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("user_id %s does not match the JWT subject of the caller", scope + 5),
				 errhint("Pass your own user id (auth.uid()); only an icpml administrator (service_role) may ask for another user's recommendations.")));
}

/* (Re)build the plans over icpml.interactions_relation when the GUC changed. */
static void
RecommendPreparePlans(void)
{
	Oid			argtypes[2] = {UUIDOID, INT4OID};
	char	   *display;

	if (plan_history != NULL && interactions_setting != NULL &&
		strcmp(interactions_setting, icpml_interactions_relation) == 0)
		return;

	display = BanditInteractionsRelation();
	if (plan_history)
		SPI_freeplan(plan_history);
	if (plan_own)
		SPI_freeplan(plan_own);
	plan_history = plan_own = NULL;

	plan_history = BanditKeepPlan(psprintf("SELECT i.account_id::pg_catalog.int8,"
										   " i.interaction_type::pg_catalog.text,"
										   " i.created_at::pg_catalog.timestamptz FROM %s AS i"
										   " WHERE i.user_id OPERATOR(pg_catalog.=) $1 ORDER BY i.created_at DESC LIMIT $2",
										   display), 2, argtypes, 0);
	argtypes[1] = INT8ARRAYOID;
	plan_own = BanditKeepPlan(psprintf("SELECT i.account_id::pg_catalog.int8,"
									   " i.interaction_type::pg_catalog.text,"
									   " i.created_at::pg_catalog.timestamptz FROM %s AS i"
									   " WHERE i.user_id OPERATOR(pg_catalog.=) $1"
									   " AND i.account_id OPERATOR(pg_catalog.=) ANY ($2)",
									   display), 2, argtypes, 0);

	if (interactions_setting)
		pfree(interactions_setting);
	interactions_setting = MemoryContextStrdup(TopMemoryContext, icpml_interactions_relation);
}

/* Age in days of a timestamptz relative to the transaction start. */
static inline double
RecAgeDays(RecommendCall *call, Datum ts)
{
	return (double) (call->now - DatumGetTimestampTz(ts)) / (double) USECS_PER_DAY;
}

/* One row of the history: account, interaction type, when. */
static void
RecHistoryRow(TupleTableSlot *slot, void *arg)
{
	RecommendCall *call = (RecommendCall *) arg;
	HistItem   *h;

	if (slot->tts_isnull[0] || slot->tts_isnull[1])
		return;
	if (call->nhist == call->hist_cap)
	{
		call->hist_cap *= 2;
		call->hist = repalloc(call->hist, sizeof(HistItem) * call->hist_cap);
	}
	h = &call->hist[call->nhist++];
	h->account_id = DatumGetInt64(slot->tts_values[0]);
	h->type = TextDatumGetCString(slot->tts_values[1]);
	h->age_days = slot->tts_isnull[2] ? 1e9 : RecAgeDays(call, slot->tts_values[2]);
	if (h->age_days <= 30.0)
		call->n_30d++;
}

/* Phase 1: the user's recent interactions (as the caller). */
static void
RecommendLoadHistory(RecommendCall *call)
{
	Datum		args[2];

	call->nhist = 0;
	call->n_30d = 0;
	if (call->cfg->history_limit == 0)
		return;
	args[0] = UUIDPGetDatum(call->user);
	args[1] = Int32GetDatum(call->cfg->history_limit);
	call->hist_cap = Min(call->cfg->history_limit, 64);
	call->hist = palloc(sizeof(HistItem) * call->hist_cap);
	(void) SpiScan(plan_history, args, false, RecHistoryRow, call, "the interaction history");
}

/* Find or create the hash entry of an account. */
static AccountEntry *
RecEntry(RecommendCall *call, int64 account_id)
{
	bool		found;
	AccountEntry *e = hash_search(call->accounts, &account_id, HASH_ENTER, &found);

	if (!found)
	{
		e->row = -1;
		e->seen = false;
		e->industry = -1;
		e->size_band = -1;
	}
	return e;
}

/* Index of an industry in bandit_settings.industries (its one-hot slot), or -1. */
static int
RecIndustrySlot(const BanditSettings *cfg, const char *name)
{
	int			j;

	for (j = 0; j < cfg->n_industries; j++)
		if (strcmp(name, cfg->industries[j]) == 0)
			return j;
	return -1;
}

/*
 * Index of the industry name[0..len-1] in the call's industry list, adding
 * it; -1 when the list is full (RECOMMEND_MAX_INDUSTRIES distinct names).
 */
static int
RecIndustry(RecommendCall *call, const char *name, int len)
{
	IndustryStat *s;
	int			i;

	for (i = 0; i < call->nindustries; i++)
		if (call->industries[i].len == len && memcmp(call->industries[i].name, name, len) == 0)
			return i;
	if (call->nindustries >= RECOMMEND_MAX_INDUSTRIES)
		return -1;
	s = &call->industries[call->nindustries++];
	s->name = pnstrdup(name, len);
	s->len = len;
	s->slot = RecIndustrySlot(call->cfg, s->name);
	s->n = 0;
	s->reward = 0;
	s->best_type = -1;
	return i;
}

/* Bit i set when the text[] stack holds cfg->technologies[i]. */
static uint32
RecTechSlots(RecommendCall *call, Datum stack)
{
	ArrayType  *arr = DatumGetArrayTypeP(stack);
	const BanditSettings *cfg = call->cfg;
	Datum	   *elems;
	bool	   *enulls;
	int			n,
				i,
				j;
	uint32		mask = 0;

	if (ARR_NDIM(arr) == 0 || cfg->n_technologies == 0)
		return 0;
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &n);
	for (i = 0; i < n; i++)
	{
		text	   *t;
		int			len;

		if (enulls[i])
			continue;
		t = (text *) DatumGetPointer(elems[i]);
		len = VARSIZE_ANY_EXHDR(t);
		for (j = 0; j < cfg->n_technologies; j++)
			if (cfg->technology_lengths[j] == len && memcmp(VARDATA_ANY(t), cfg->technologies[j], len) == 0)
				mask |= (uint32) 1 << j;
	}
	return mask;
}

/*
 * One feature row: fills the history entry of the account and, for a
 * scanned row, the row (first sighting only).
 */
static void
RecFeatureRow(TupleTableSlot *slot, void *arg)
{
	RecommendCall *call = (RecommendCall *) arg;
	Datum	   *v = slot->tts_values;
	bool	   *isnull = slot->tts_isnull;
	AccountEntry *e;
	int64		id;
	char	   *industry = NULL;
	int			ind = -1,
				band;
	uint32		tech_slots;

	if (isnull[0])
		return;
	id = DatumGetInt64(v[0]);
	e = hash_search(call->accounts, &id, HASH_FIND, NULL);
	if (e == NULL)
		return;					/* not asked for */
	if (e->seen && (e->row < 0 || call->rows[e->row].visible))
		return;					/* a duplicate key: the first row counts */
	if (!isnull[1])
	{
		text	   *t = DatumGetTextPP(v[1]);

		ind = RecIndustry(call, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
		industry = ind >= 0 ? call->industries[ind].name : text_to_cstring(t);
	}
	band = RecSizeBand(isnull[6] ? 0 : DatumGetFloat8(v[6]), isnull[6]);
	tech_slots = 0;
	if (!isnull[9])
	{
		MemoryContext old = MemoryContextSwitchTo(call->rowcxt);

		tech_slots = RecTechSlots(call, v[9]);
		MemoryContextSwitchTo(old);
		MemoryContextReset(call->rowcxt);
	}
	if (!e->seen)
	{
		e->seen = true;
		e->size_band = band;
		e->tech_known = !isnull[9];
		e->tech_slots = tech_slots;
		e->industry = ind;
	}

	/* a scanned row (possibly also in the history) */
	if (e->row >= 0)
	{
		RecRow	   *r = &call->rows[e->row];

		r->visible = true;
		r->industry = industry;
		r->ind = ind;
		r->eng_roles = RecCount(v[2], isnull[2]);
		r->hiring = !isnull[3] && DatumGetBool(v[3]);
		r->open_roles = RecCount(v[4], isnull[4]);
		r->blog = !isnull[5] && DatumGetBool(v[5]);
		r->size_band = band;
		r->funding = 0.0;
		if (!isnull[7] && !DATE_NOT_FINITE(DatumGetDateADT(v[7])))
		{
			double		age = (double) (call->today - DatumGetDateADT(v[7]));

			if (age >= 0 && age <= 548.0)
				r->funding = 1.0 - age / 548.0;
		}
		r->research = 0.0;
		if (!isnull[8] && !TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(v[8])))
		{
			double		age = Max(0.0, RecAgeDays(call, v[8]));

			r->research = exp(-age / 30.0);
		}
		r->industry_slot = ind >= 0 ? call->industries[ind].slot :
			industry != NULL ? RecIndustrySlot(call->cfg, industry) : -1;
		r->tech_known = !isnull[9];
		r->tech_slots = tech_slots;
	}
}

/* Read the feature rows (as the caller) of ids[0..n-1]. */
static void
RecommendReadFeatures(RecommendCall *call, Datum *ids, int n)
{
	Datum		arg;

	if (n == 0)
		return;
	arg = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	(void) SpiScan(FeatureReaderPlan(&recommend_reader, FEATURES_MANY), &arg, false,
				   RecFeatureRow, call, "features");
}

/* What ReadOwn's rows refer to. */
typedef struct RecOwnScan
{
	RecommendCall *call;
	int			first;			/* rows before it were read already */
} RecOwnScan;

/* One of the user's interactions with a scanned row. */
static void
RecOwnRow(TupleTableSlot *slot, void *arg)
{
	RecOwnScan *scan = (RecOwnScan *) arg;
	RecommendCall *call = scan->call;
	int64		id;
	AccountEntry *e;
	RecRow	   *r;
	char	   *t;
	int			ti,
				w;

	if (slot->tts_isnull[0] || slot->tts_isnull[1])
		return;
	id = DatumGetInt64(slot->tts_values[0]);
	e = hash_search(call->accounts, &id, HASH_FIND, NULL);
	if (e == NULL || e->row < scan->first)
		return;
	r = &call->rows[e->row];
	t = TextDatumGetCString(slot->tts_values[1]);
	if (strcmp(t, "dismiss") == 0)
		r->dismissed = true;
	for (w = 0; w < call->cfg->n_worked_types; w++)
		if (strcmp(t, call->cfg->worked_types[w]) == 0)
			r->worked = true;
	ti = RecOwnType(t);
	if (ti >= 0)
	{
		double		age = slot->tts_isnull[2] ? 1e9 : Max(0.0, RecAgeDays(call, slot->tts_values[2]));

		r->own[ti] += exp(-age / 30.0);
		if (ti > r->own_best)
			r->own_best = ti;
	}
	pfree(t);
}

/* The user's interactions with the rows first..nrows-1 (as the caller). */
static void
RecommendReadOwn(RecommendCall *call, int first)
{
	Datum	   *ids;
	Datum		args[2];
	RecOwnScan	scan = {call, first};
	int			j;

	if (call->nrows == first)
		return;
	ids = palloc(sizeof(Datum) * (call->nrows - first));
	for (j = first; j < call->nrows; j++)
		ids[j - first] = Int64GetDatum(call->rows[j].account_id);
	args[0] = UUIDPGetDatum(call->user);
	args[1] = PointerGetDatum(construct_array(ids, call->nrows - first, INT8OID, 8,
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	(void) SpiScan(plan_own, args, false, RecOwnRow, &scan, "the user's interactions");
}

/* Scan a plan over one of icpml's own tables as the extension owner. */
static uint64
RecOwnerScan(SPIPlanPtr plan, Datum *args, bool read_only, SpiRowCallback callback,
			 void *arg, const char *table)
{
	CatalogOwnerState owner;
	uint64		rows;

	CatalogSwitchToOwner(&owner);
	rows = SpiScan(plan, args, read_only, callback, arg, table);
	CatalogRestoreUser(&owner);
	return rows;
}

/* State of one retrieval page. */
typedef struct RecPageScan
{
	RecommendCall *call;
	Datum	   *ids;			/* feature rows to read */
	int			nids;
} RecPageScan;

/* One account_scores row of a retrieval page. */
static void
RecPageRow(TupleTableSlot *slot, void *arg)
{
	RecPageScan *scan = (RecPageScan *) arg;
	RecommendCall *call = scan->call;
	RecRow	   *r;
	AccountEntry *e;
	int64		id = DatumGetInt64(slot->tts_values[0]);

	e = RecEntry(call, id);
	if (e->row >= 0)
		return;					/* cannot happen with a primary key */
	if (call->nrows >= call->rows_cap)
		elog(ERROR, "retrieval returned more rows than its page (please report a bug)");
	r = &call->rows[call->nrows];
	r->account_id = id;
	e->row = call->nrows++;
	r->probability = slot->tts_isnull[1] ? 0.0 : DatumGetFloat8(slot->tts_values[1]);
	if (isnan(r->probability))
		r->probability = 0.0;
	r->icp_score = IcpScoreFromProbability(r->probability);
	r->priority = NULL;			/* read for the listed rows only */
	r->own_best = -1;
	r->size_band = -1;
	r->eng_roles = r->open_roles = -1;
	r->ind = -1;
	/* what all users did with it when it was recommended (account_feedback) */
	r->fb_examined = r->fb_reward = 0.0;
	if (!slot->tts_isnull[2] && !slot->tts_isnull[3] && DatumGetFloat8(slot->tts_values[2]) >= 0.0)
	{
		r->fb_examined = DatumGetFloat8(slot->tts_values[2]);
		r->fb_reward = DatumGetFloat8(slot->tts_values[3]);
	}
	scan->ids[scan->nids++] = Int64GetDatum(r->account_id);
}

/* Phase 2: retrieval, paging down the score order when too few survive. */
static void
RecommendRetrieve(RecommendCall *call)
{
	int			page = call->M;
	int64		offset = 0;
	bool		first = true;
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(AccountEntry);
	ctl.hcxt = CurrentMemoryContext;
	call->accounts = hash_create("icpml recommend accounts", 2 * call->M + call->nhist + 16,
								 &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	call->rows_cap = call->M;
	call->rows = palloc0(sizeof(RecRow) * call->rows_cap);
	call->cand = palloc(sizeof(int) * call->M);
	call->ncand = 0;
	call->nrows = 0;

	if (plan_retrieve == NULL)
	{
		Oid			argtypes[2] = {INT4OID, INT8OID};

		/* a custom plan per call: a generic LIMIT estimate could pick a sort */
		plan_retrieve = CatalogKeepPlan("SELECT s.account_id, s.probability, f.examined, f.reward"
									   " FROM (SELECT s.account_id, s.probability"
									   " FROM icpml.account_scores AS s"
									   " ORDER BY s.probability DESC, s.account_id LIMIT $1 OFFSET $2) AS s"
									   " LEFT JOIN icpml.account_feedback AS f ON f.account_id OPERATOR(pg_catalog.=) s.account_id"
									   " ORDER BY s.probability DESC, s.account_id",
									   2, argtypes, CURSOR_OPT_CUSTOM_PLAN);
	}

	for (;;)
	{
		Datum		args[2];
		int			first_row = call->nrows,
					nfetched,
					j;
		RecPageScan scan;

		CHECK_FOR_INTERRUPTS();

		/* room for a full page of rows, and of ids to read with the history's */
		if (call->nrows + page > call->rows_cap)
		{
			int			newcap = call->nrows + page;

			call->rows = repalloc(call->rows, sizeof(RecRow) * newcap);
			memset(call->rows + call->rows_cap, 0, sizeof(RecRow) * (newcap - call->rows_cap));
			call->rows_cap = newcap;
		}
		scan.call = call;
		scan.ids = palloc(sizeof(Datum) * (page + (first ? call->nhist : 0)));
		scan.nids = 0;

		args[0] = Int32GetDatum(page);
		args[1] = Int64GetDatum(offset);
		nfetched = (int) RecOwnerScan(plan_retrieve, args, false, RecPageRow, &scan,
									  "icpml.account_scores");
		if (nfetched == 0 && offset == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("icpml.account_scores is empty"),
					 errhint("Materialise the ICP scores first: SELECT icpml.score_all(); schedule it to keep them fresh.")));
		offset += nfetched;

		/* the accounts of the history: their industry and size, on the first page */
		if (first)
			for (j = 0; j < call->nhist; j++)
			{
				AccountEntry *e = RecEntry(call, call->hist[j].account_id);

				if (e->row < 0 && !e->seen && e->industry == -1 && e->size_band != -2)
				{
					e->size_band = -2;	/* marks "already asked for" */
					scan.ids[scan.nids++] = Int64GetDatum(call->hist[j].account_id);
				}
			}

		RecommendReadFeatures(call, scan.ids, scan.nids);
		RecommendReadOwn(call, first_row);

		for (j = first_row; j < call->nrows && call->ncand < call->M; j++)
		{
			RecRow	   *r = &call->rows[j];

			if (!r->visible || r->worked || (r->dismissed && call->cfg->exclude_dismissed))
				continue;
			call->cand[call->ncand++] = j;
		}
		first = false;

		if (call->ncand >= Max(call->k, call->M / 2) || nfetched < page)
			break;
		if (offset >= 10 * (int64) call->M && call->ncand >= call->k)
			break;
		/* a caller who may see almost nothing must not scan the whole table */
		if (offset >= 20 * (int64) call->M)
			break;
		page = Min(page * 2, RECOMMEND_MAX_PAGE);
	}
}

/* User-level aggregates of the history (after the feature rows are read). */
static void
RecommendHistoryStats(RecommendCall *call)
{
	int			j;
	double		total = 0.0;

	call->n_known = 0;
	call->n_tech_known = 0;
	memset(call->size_count, 0, sizeof(call->size_count));
	memset(call->tech_count, 0, sizeof(call->tech_count));
	for (j = 0; j < call->nhist; j++)
	{
		HistItem   *h = &call->hist[j];
		AccountEntry *e = hash_search(call->accounts, &h->account_id, HASH_FIND, NULL);
		double		r = 0.0;
		int			band;

		if (e == NULL || !e->seen)
			continue;			/* hidden from the caller, or gone */
		(void) BanditReward(call->cfg, h->type, &r);
		call->n_known++;
		if (e->tech_known)
		{
			int			t;

			call->n_tech_known++;
			for (t = 0; t < CTX_NTECH_SLOTS; t++)
				if (e->tech_slots & ((uint32) 1 << t))
					call->tech_count[t]++;
		}
		total += r;
		band = e->row >= 0 ? call->rows[e->row].size_band : e->size_band;
		if (band >= 0)
			call->size_count[band]++;
		if (e->industry >= 0)
		{
			IndustryStat *s = &call->industries[e->industry];
			int			t = RecOwnType(h->type);

			s->n++;
			s->reward += r;
			if (t >= 2 && t > s->best_type)
				s->best_type = t;	/* save, contact or meeting */
		}
	}
	call->mean_reward = call->n_known > 0 ? total / call->n_known : 0.0;
}


/*
 * Fatigue and ignored evidence of every candidate: the user's impressions of
 * it that were not rewarded (pending or expired), each weighted
 * fatigue_decay ^ (lists served to the user since, counting the one being
 * built), resp. by the examination probability of its rank, over the most
 * recent RECOMMEND_FATIGUE_ROWS impressions (read as the owner: icpml's own
 * log).
 */
typedef struct RecFatigueScan
{
	RecommendCall *call;
	double		weight;			/* fatigue_decay ^ lists served since */
	TimestampTz last;			/* served_at of the previous row */
	bool		any;
} RecFatigueScan;

/* One impression, most recent first. */
static void
RecFatigueRow(TupleTableSlot *slot, void *arg)
{
	RecFatigueScan *scan = (RecFatigueScan *) arg;
	RecommendCall *call = scan->call;
	int64		id = DatumGetInt64(slot->tts_values[0]);
	TimestampTz served = DatumGetTimestampTz(slot->tts_values[1]);
	AccountEntry *e;

	if (!scan->any || served != scan->last)
	{
		scan->weight *= call->cfg->fatigue_decay;	/* one more list since */
		scan->last = served;
		scan->any = true;
	}
	if (DatumGetBool(slot->tts_values[2]))
		return;					/* rewarded */
	e = hash_search(call->accounts, &id, HASH_FIND, NULL);
	if (e != NULL && e->row >= 0)
	{
		int			rank = slot->tts_isnull[3] ? 1 : DatumGetInt32(slot->tts_values[3]);

		call->rows[e->row].fatigue += scan->weight;
		call->rows[e->row].ignored += BanditExamination(call->cfg, rank);
	}
}

static void
RecommendLoadFatigue(RecommendCall *call)
{
	Datum		args[2];
	RecFatigueScan scan = {call, 1.0, 0, false};

	if (call->ncand == 0)
		return;
	if (plan_fatigue == NULL)
	{
		Oid			argtypes[2] = {UUIDOID, INT4OID};

		plan_fatigue = CatalogKeepPlan("SELECT r.account_id, r.served_at,"
									   " r.status OPERATOR(pg_catalog.=) 'rewarded', r.rank"
									   " FROM icpml.recommendations AS r WHERE r.user_id OPERATOR(pg_catalog.=) $1"
									  " ORDER BY r.served_at DESC LIMIT $2", 2, argtypes, 0);
	}
	args[0] = UUIDPGetDatum(call->user);
	args[1] = Int32GetDatum(RECOMMEND_FATIGUE_ROWS);
	(void) RecOwnerScan(plan_fatigue, args, true, RecFatigueRow, &scan, "icpml.recommendations");
}

/*
 * Every candidate's account_engagement: what all users did with it when it
 * was recommended (icpml.account_feedback, joined by the retrieval query).
 */
static void
RecommendEngagement(RecommendCall *call)
{
	int			c;
	double		sum_e = 0.0,
				sum_r = 0.0,
				m0,
				v0;

	for (c = 0; c < call->ncand; c++)
	{
		RecRow	   *r = &call->rows[call->cand[c]];

		sum_e += r->fb_examined;
		sum_r += r->fb_reward;
	}

	/*
	 * Shrink each account towards the candidates' pooled rate m0 (3 pseudo
	 * impressions), so that an account nobody has seen yet is average, not
	 * bad; its standard error sqrt(m0 (1 - m0) / (examined + 3)) bounds the
	 * spread of rewards in [0, 1] with mean m0.
	 */
	m0 = sum_e >= 1.0 ? Min(1.0, Max(0.0, sum_r / sum_e)) : 0.0;
	v0 = Max(m0 * (1.0 - m0), 1e-6);
	for (c = 0; c < call->ncand; c++)
	{
		RecRow	   *r = &call->rows[call->cand[c]];

		r->engagement = Min(1.0, Max(0.0, (r->fb_reward + 3.0 * m0) / (r->fb_examined + 3.0)));
		r->engagement_sd = sqrt(v0 / (r->fb_examined + 3.0));
	}
}

/* Phase 3: the context vector of every candidate. */
static void
RecommendContexts(RecommendCall *call)
{
	int			c,
				t;
	double		activity = 1.0 - exp(-call->n_30d / 20.0);
	double		tech_lift[CTX_NTECH_SLOTS];
	int			tech_cand[CTX_NTECH_SLOTS];
	int			n_stack = 0;

	/* share of the user's history using each technology, over the candidates' */
	memset(tech_cand, 0, sizeof(tech_cand));
	for (c = 0; c < call->ncand; c++)
	{
		RecRow	   *r = &call->rows[call->cand[c]];

		if (!r->tech_known)
			continue;
		n_stack++;
		for (t = 0; t < CTX_NTECH_SLOTS; t++)
			if (r->tech_slots & ((uint32) 1 << t))
				tech_cand[t]++;
	}
	for (t = 0; t < CTX_NTECH_SLOTS; t++)
		tech_lift[t] = call->n_tech_known > 0 && n_stack > 0 ?
			(double) call->tech_count[t] / call->n_tech_known - (double) tech_cand[t] / n_stack : 0.0;

	call->X = palloc0(sizeof(double) * call->ncand * BANDIT_DIM);
	call->eng_sd = palloc0(sizeof(double) * Max(call->ncand, 1));
	call->nz = palloc(sizeof(int) * Max(call->ncand, 1) * BANDIT_DIM);
	call->nnz = palloc0(sizeof(int) * Max(call->ncand, 1));
	for (c = 0; c < call->ncand; c++)
	{
		RecRow	   *r = &call->rows[call->cand[c]];
		double	   *x = call->X + c * BANDIT_DIM;
		int			ind = r->ind;

		x[CTX_BIAS] = 1.0;
		x[CTX_ICP] = Min(1.0, Max(0.0, r->probability));
		{
			double		p = Min(1.0 - 1e-6, Max(1e-6, r->probability));

			x[CTX_ICP_LOGIT] = Min(1.0, Max(0.0, (log(p / (1.0 - p)) + 6.0) / 12.0));
		}
		x[CTX_ENG_ROLES] = RecLogScale(r->eng_roles, 50.0);
		x[CTX_OPEN_ENG] = r->hiring ? 1.0 : 0.0;
		x[CTX_OPEN_ROLES] = RecLogScale(r->open_roles, 200.0);
		x[CTX_BLOG] = r->blog ? 1.0 : 0.0;
		x[CTX_FUNDING] = r->funding;
		if (r->size_band >= 0)
			x[CTX_SIZE_BAND + r->size_band] = 1.0;
		x[CTX_RESEARCH] = r->research;
		for (t = 0; t < BANDIT_NOWN_TYPES; t++)
			x[CTX_OWN + t] = 1.0 - exp(-r->own[t]);
		x[CTX_DISMISSED] = r->dismissed ? 1.0 : 0.0;
		x[CTX_FATIGUE] = 1.0 - exp(-r->fatigue / 10.0);
		x[CTX_IGNORED] = 1.0 - exp(-r->ignored / 3.0);
		if (r->industry_slot >= 0)
			x[CTX_INDUSTRY_SLOT + r->industry_slot] = 1.0;
		{
			double		lift = 0.0;

			for (t = 0; t < CTX_NTECH_SLOTS; t++)
				if (r->tech_slots & ((uint32) 1 << t))
				{
					x[CTX_TECH_SLOT + t] = 1.0;
					lift += tech_lift[t];
				}
			x[CTX_TECH_AFFINITY] = 0.5 + 0.5 * Min(1.0, Max(-1.0, lift));
		}
		x[CTX_ACCOUNT_ENGAGEMENT] = r->engagement;
		call->eng_sd[c] = r->engagement_sd;
		if (call->n_known > 0)
		{
			double		n_ind = ind >= 0 ? call->industries[ind].n : 0;
			double		r_ind = ind >= 0 ? call->industries[ind].reward : 0;
			double		shrunk = (r_ind + 2.0 * call->mean_reward) / (n_ind + 2.0);

			x[CTX_INDUSTRY_SHARE] = n_ind / call->n_known;
			x[CTX_INDUSTRY_REWARD] = Min(1.0, Max(0.0, shrunk));
			if (r->size_band >= 0)
				x[CTX_SIZE_SHARE] = (double) call->size_count[r->size_band] / call->n_known;
		}
		x[CTX_ACTIVITY] = activity;
		call->nnz[c] = 0;
		for (t = 0; t < BANDIT_DIM; t++)
		{
			x[t] = RecRound(x[t]);
			if (x[t] != 0.0)
				call->nz[c * BANDIT_DIM + call->nnz[c]++] = t;
		}
	}
}

/* Sort order of candidates: a score (desc), then ICP probability (desc), then id. */
static int
RecCompare(const void *a, const void *b, void *arg)
{
	RecommendCall *call = (RecommendCall *) ((void **) arg)[0];
	const double *key = (const double *) ((void **) arg)[1];
	int			ia = *(const int *) a;
	int			ib = *(const int *) b;
	RecRow	   *ra = &call->rows[call->cand[ia]];
	RecRow	   *rb = &call->rows[call->cand[ib]];

	if (key[ia] != key[ib])
		return key[ia] > key[ib] ? -1 : 1;
	if (ra->probability != rb->probability)
		return ra->probability > rb->probability ? -1 : 1;
	return ra->account_id < rb->account_id ? -1 : (ra->account_id > rb->account_id ? 1 : 0);
}

/* The m best candidate indices by key (desc, ties as RecCompare), best first. */
static int *
RecOrder(RecommendCall *call, const double *key, int m)
{
	int		   *top = palloc(sizeof(int) * Max(m, 1));
	void	   *arg[2] = {call, (void *) key};
	int			ntop = 0,
				c;

	/* insertion into a list of the m best so far, best first */
	for (c = 0; c < call->ncand; c++)
	{
		int			p = ntop;

		if (ntop == m && RecCompare(&c, &top[m - 1], arg) >= 0)
			continue;
		if (ntop < m)
			ntop++;
		while (p > 0 && RecCompare(&c, &top[p - 1], arg) < 0)
		{
			if (p < m)
				top[p] = top[p - 1];
			p--;
		}
		top[p] = c;
	}
	return top;
}

/* theta~ = theta + v L^-T z: a draw from N(theta, v^2 A^-1). */
static void
RecDrawTheta(const BanditState *s, const double *mean, double v, pg_prng_state *rng, double *out)
{
	double		z[BANDIT_MAX_DIM];
	double		delta[BANDIT_MAX_DIM];
	int			i;

	BanditNormals(rng, z, s->d);
	BanditBackSolve(s->L, z, delta, s->d);
	for (i = 0; i < s->d; i++)
		out[i] = mean[i] + v * delta[i];
}

/* The blended parameter vector of one posterior draw (Thompson sampling). */
static void
RecThompsonTheta(RecommendCall *call, const BanditState *g, const BanditState *u,
				 const double *theta_g, double w, double *out)
{
	double		tg[BANDIT_MAX_DIM];
	double		rhs[BANDIT_MAX_DIM];
	double		tu_mean[BANDIT_MAX_DIM];
	double		tu[BANDIT_MAX_DIM];
	int			i,
				d = g->d;

	RecDrawTheta(g, theta_g, call->cfg->v, &call->rng, tg);
	if (w <= 0.0)
	{
		memcpy(out, tg, sizeof(double) * d);
		return;
	}
	for (i = 0; i < d; i++)
		rhs[i] = call->cfg->personalization_prior * tg[i] + u->b[i];
	BanditSolve(u->L, rhs, tu_mean, d);
	RecDrawTheta(u, tu_mean, call->cfg->v, &call->rng, tu);
	for (i = 0; i < d; i++)
		out[i] = (1.0 - w) * tg[i] + w * tu[i];
}

/* theta' x of candidate c over its non-zero entries. */
static inline double
RecSparseDot(const RecommendCall *call, int c, const double *theta)
{
	const double *x = call->X + c * BANDIT_DIM;
	const int  *nz = call->nz + c * BANDIT_DIM;
	double		s = 0.0;
	int			i;

	for (i = 0; i < call->nnz[c]; i++)
		s += theta[nz[i]] * x[nz[i]];
	return s;
}

/* x' M x of candidate c over its non-zero entries (M symmetric, d x d). */
static double
RecSparseQuad(const RecommendCall *call, int c, const double *M)
{
	const double *x = call->X + c * BANDIT_DIM;
	const int  *nz = call->nz + c * BANDIT_DIM;
	double		s = 0.0;
	int			i,
				j;

	for (i = 0; i < call->nnz[c]; i++)
	{
		double		row = 0.0;

		for (j = 0; j < i; j++)
			row += M[nz[i] * BANDIT_DIM + nz[j]] * x[nz[j]];
		s += x[nz[i]] * (2.0 * row + M[nz[i] * BANDIT_DIM + nz[i]] * x[nz[i]]);
	}
	return s;
}

/*
 * Thompson scores of one posterior draw th: th' x, with each account's
 * engagement drawn from its own posterior (mean x[engagement], sd eng_sd).
 */
static void
RecThompsonScores(RecommendCall *call, const double *th, double *out)
{
	int			c;

	BanditNormals(&call->rng, out, call->ncand);
	for (c = 0; c < call->ncand; c++)
		out[c] = RecSparseDot(call, c, th) +
			th[CTX_ACCOUNT_ENGAGEMENT] * call->eng_sd[c] * out[c];
}

/* Phase 4: score the candidates under the policy and choose k of them. */
static void
RecommendRank(RecommendCall *call)
{
	const BanditSettings *cfg = call->cfg;
	BanditState g,
				u;
	char		scope[48];
	double		theta_g[BANDIT_MAX_DIM];
	double		theta_u[BANDIT_MAX_DIM];
	double		rhs[BANDIT_MAX_DIM];
	double		w = cfg->personalization ? cfg->personalization_weight : 0.0;
	double		eng_w;
	int			d = BANDIT_DIM;
	int			c,
				i,
				j;
	int		   *greedy;
	double		kth_mu;
	int			kk = Min(call->k, call->ncand);
	CatalogOwnerState owner;

	call->nchosen = 0;
	call->mu = palloc0(sizeof(double) * Max(call->ncand, 1));
	call->score = palloc0(sizeof(double) * Max(call->ncand, 1));
	call->explore = palloc0(sizeof(double) * Max(call->ncand, 1));
	if (call->ncand == 0)
		return;

	CatalogSwitchToOwner(&owner);
	(void) BanditStateLoad(&g, "global", false, false, cfg);
	BanditUserScope(call->user, scope);
	(void) BanditStateLoad(&u, scope, false, false, cfg);
	CatalogRestoreUser(&owner);
	call->state_version = g.version;

	BanditSolve(g.L, g.b, theta_g, d);
	for (i = 0; i < d; i++)
		rhs[i] = cfg->personalization_prior * theta_g[i] + u.b[i];
	BanditSolve(u.L, rhs, theta_u, d);
	for (i = 0; i < d; i++)
		call->theta[i] = (1.0 - w) * theta_g[i] + w * theta_u[i];

	for (c = 0; c < call->ncand; c++)
		call->mu[c] = RecSparseDot(call, c, call->theta);
	eng_w = call->theta[CTX_ACCOUNT_ENGAGEMENT];

	switch (call->policy)
	{
		case POLICY_LINUCB:
			{
				/*
				 * x' (A_g^-1 + w A_u^-1) x: the shared model's uncertainty
				 * plus the user's deviation from it (the user's prior is
				 * centred on the shared model).  The inverses come from the
				 * Cholesky factors once per call (O(d^3)); each candidate then
				 * costs the products of its non-zero entries only.
				 */
				double	   *M = palloc0(sizeof(double) * d * d);

				BanditAddInverse(g.L, d, 1.0, M);
				if (w > 0.0)
					BanditAddInverse(u.L, d, w, M);
				for (c = 0; c < call->ncand; c++)
				{
					double		q = RecSparseQuad(call, c, M);

					/* and the uncertainty of the account's engagement */
					q += eng_w * eng_w * call->eng_sd[c] * call->eng_sd[c];
					call->explore[c] = cfg->alpha * sqrt(Max(q, 0.0));
					call->score[c] = call->mu[c] + call->explore[c];
				}
			}
			break;
		case POLICY_THOMPSON:
			{
				double		th[BANDIT_MAX_DIM];

				RecThompsonTheta(call, &g, &u, theta_g, w, th);
				RecThompsonScores(call, th, call->score);
				for (c = 0; c < call->ncand; c++)
					call->explore[c] = call->score[c] - call->mu[c];
			}
			break;
		case POLICY_ICP:
			for (c = 0; c < call->ncand; c++)
				call->score[c] = call->rows[call->cand[c]].probability;
			break;
		case POLICY_GREEDY:
		case POLICY_EPSILON_GREEDY:
		case POLICY_RANDOM:
			for (c = 0; c < call->ncand; c++)
				call->score[c] = call->mu[c];
			break;
	}

	/*
	 * The greedy top-k: what is listed below its k-th mu was explored.
	 * Epsilon-greedy walks this order past the items it took at random
	 * (at most k - 1 of them), so it needs the best 2k.
	 */
	greedy = RecOrder(call, call->mu, Min(2 * kk, call->ncand));
	kth_mu = call->mu[greedy[kk - 1]];

	if (call->policy == POLICY_EPSILON_GREEDY || call->policy == POLICY_RANDOM)
	{
		bool	   *taken = palloc0(sizeof(bool) * call->ncand);
		double		eps = call->policy == POLICY_RANDOM ? 1.0 : cfg->epsilon;
		int			gp = 0;

		for (j = 0; j < kk; j++)
		{
			int			remaining = call->ncand - j;
			int			best,
						pick;

			while (taken[greedy[gp]])
				gp++;
			best = greedy[gp];
			if (eps > 0.0 && (eps >= 1.0 || pg_prng_double(&call->rng) < eps))
			{
				int			r = (int) pg_prng_uint64_range(&call->rng, 0, remaining - 1);

				for (pick = 0; pick < call->ncand; pick++)
					if (!taken[pick] && r-- == 0)
						break;
				call->explored[j] = true;
			}
			else
			{
				pick = best;
				call->explored[j] = false;
			}
			taken[pick] = true;
			call->chosen[j] = pick;
			call->propensity[j] = eps / remaining + (pick == best ? 1.0 - eps : 0.0);
		}
		call->nchosen = kk;
		return;
	}

	{
		int		   *order = RecOrder(call, call->score, kk);

		for (j = 0; j < kk; j++)
		{
			call->chosen[j] = order[j];
			call->propensity[j] = 1.0;
			call->explored[j] = call->policy != POLICY_ICP &&
				call->mu[order[j]] < kth_mu;
		}
		call->nchosen = kk;
	}

	/*
	 * Thompson: the probability that the draw puts each listed item at its
	 * rank, given the items above it, estimated from extra posterior draws;
	 * the draw that was served counts as one of them, so it is never 0.
	 */
	if (call->policy == POLICY_THOMPSON)
	{
		int			hits[RECOMMEND_MAX_K];
		double	   *s = palloc(sizeof(double) * call->ncand);
		int		   *top = palloc(sizeof(int) * kk);
		int			smp;

		memset(hits, 0, sizeof(hits));
		for (smp = 0; smp < RECOMMEND_TS_SAMPLES; smp++)
		{
			double		th[BANDIT_MAX_DIM];
			int			ntop = 0;

			RecThompsonTheta(call, &g, &u, theta_g, w, th);
			RecThompsonScores(call, th, s);
			/* this draw's top kk, best first (insertion into a short list) */
			for (c = 0; c < call->ncand; c++)
			{
				int			p = ntop;

				if (ntop == kk && s[c] <= s[top[kk - 1]])
					continue;
				if (ntop < kk)
					ntop++;
				while (p > 0 && s[c] > s[top[p - 1]])
				{
					if (p < kk)
						top[p] = top[p - 1];
					p--;
				}
				top[p] = c;
			}
			/* slot j: the best of this draw that is not listed above j */
			for (j = 0; j < kk; j++)
			{
				int			q;

				for (q = 0; q < ntop; q++)
				{
					int			a;
					bool		above = false;

					for (a = 0; a < j; a++)
						if (call->chosen[a] == top[q])
							above = true;
					if (!above)
						break;
				}
				if (q < ntop && top[q] == call->chosen[j])
					hits[j]++;
			}
		}
		for (j = 0; j < kk; j++)
			call->propensity[j] = (hits[j] + 1.0) / (RECOMMEND_TS_SAMPLES + 1.0);
	}
}

/*
 * Score and priority of the listed rows from icpml.account_scores (as the
 * owner).  A row that score_all() replaced meanwhile keeps the score derived
 * from its probability and the default tiers (8+ high, 5+ medium).
 */
/* One account_scores row of a listed account: its score and priority. */
static void
RecTierRow(TupleTableSlot *slot, void *arg)
{
	RecommendCall *call = (RecommendCall *) arg;
	int64		id = DatumGetInt64(slot->tts_values[0]);
	AccountEntry *e = hash_search(call->accounts, &id, HASH_FIND, NULL);

	if (e == NULL || e->row < 0 || slot->tts_isnull[1] || slot->tts_isnull[2])
		return;
	call->rows[e->row].icp_score = DatumGetInt32(slot->tts_values[1]);
	call->rows[e->row].priority = TextDatumGetCString(slot->tts_values[2]);
}

static void
RecommendReadTiers(RecommendCall *call)
{
	Datum	   *ids = palloc(sizeof(Datum) * Max(call->nchosen, 1));
	Datum		arg;
	int			j;

	if (plan_tiers == NULL)
	{
		Oid			argtype = INT8ARRAYOID;

		plan_tiers = CatalogKeepPlan("SELECT s.account_id, s.score, s.priority FROM icpml.account_scores AS s"
									 " WHERE s.account_id OPERATOR(pg_catalog.=) ANY ($1)", 1, &argtype, 0);
	}
	for (j = 0; j < call->nchosen; j++)
	{
		RecRow	   *r = &call->rows[call->cand[call->chosen[j]]];

		ids[j] = Int64GetDatum(r->account_id);
		r->priority = r->icp_score >= 8 ? "high" : r->icp_score >= 5 ? "medium" : "low";
	}
	arg = PointerGetDatum(construct_array(ids, call->nchosen, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	(void) RecOwnerScan(plan_tiers, &arg, false, RecTierRow, call, "icpml.account_scores");
}

/* Past tense of an own interaction type, for the summary. */
static const char *
RecVerb(int t)
{
	static const char *const verbs[BANDIT_NOWN_TYPES] = {
		"viewed", "researched", "saved", "contacted", "met"
	};

	return verbs[t];
}

/* Name of context entry i; vocabulary slots name their value. */
static const char *
RecSignalName(const BanditSettings *cfg, int i)
{
	if (i >= CTX_INDUSTRY_SLOT && i < CTX_INDUSTRY_SLOT + cfg->n_industries)
		return psprintf("industry=%s", cfg->industries[i - CTX_INDUSTRY_SLOT]);
	if (i >= CTX_TECH_SLOT && i < CTX_TECH_SLOT + cfg->n_technologies)
		return psprintf("technology=%s", cfg->technologies[i - CTX_TECH_SLOT]);
	return BanditContextNames[i];
}

/* The reason jsonb of one listed candidate. */
static Jsonb *
RecommendReason(RecommendCall *call, int c, bool explored)
{
	RecRow	   *r = &call->rows[call->cand[c]];
	const double *x = call->X + c * BANDIT_DIM;
	StringInfoData buf,
				summary;
	int			order[BANDIT_DIM];
	double		contrib[BANDIT_DIM];
	int			n = 0,
				i,
				ind;

	initStringInfo(&summary);
	appendStringInfo(&summary, "%s ICP fit (%d/10)",
					 strcmp(r->priority, "high") == 0 ? "High" :
					 strcmp(r->priority, "medium") == 0 ? "Medium" : "Low",
					 r->icp_score);
	if (r->eng_roles >= 1)
		appendStringInfo(&summary, ", hiring %.0f engineer%s", r->eng_roles,
						 r->eng_roles >= 1.5 ? "s" : "");
	else if (r->hiring)
		appendStringInfoString(&summary, ", hiring engineers");
	if (r->funding > 0)
		appendStringInfoString(&summary, ", recently funded");
	ind = r->ind;
	if (ind >= 0 && call->industries[ind].best_type >= 0)
		appendStringInfo(&summary, ", similar to %s accounts you %s", r->industry,
						 RecVerb(call->industries[ind].best_type));
	if (r->own_best >= 0)
		appendStringInfo(&summary, ", you %s it before", RecVerb(r->own_best));
	if (explored)
		appendStringInfoString(&summary, ", exploring: your response to accounts like this is still uncertain");

	/* the largest contributions theta_j x_j to the expected reward (bias aside) */
	for (i = 1; i < BANDIT_DIM; i++)
	{
		contrib[i] = call->theta[i] * x[i];
		if (fabs(contrib[i]) >= 0.0005)
			order[n++] = i;
	}
	IcpmlOrderByMagnitude(contrib, order, n);

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"summary\":");
	escape_json(&buf, summary.data);
	appendStringInfo(&buf, ",\"icp_score\":%d,\"priority\":", r->icp_score);
	escape_json(&buf, r->priority);
	appendStringInfoString(&buf, ",\"industry\":");
	if (r->industry)
		escape_json(&buf, r->industry);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoString(&buf, ",\"top_signals\":[");
	for (i = 0; i < Min(n, 3); i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		appendStringInfoString(&buf, "{\"signal\":");
		escape_json(&buf, RecSignalName(call->cfg, order[i]));
		appendStringInfo(&buf, ",\"value\":%.4f,\"contribution\":%.4f}",
						 x[order[i]], contrib[order[i]]);
	}
	appendStringInfo(&buf, "],\"exploration\":%s,\"policy\":\"%s\"",
					 explored ? "true" : "false", BanditPolicyName(call->policy));
	if (call->variant >= 0)
	{
		appendStringInfoString(&buf, ",\"experiment\":");
		escape_json(&buf, call->cfg->experiment);
		appendStringInfoString(&buf, ",\"variant\":");
		escape_json(&buf, call->cfg->variants[call->variant]);
	}
	appendStringInfoChar(&buf, '}');
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * NaN or infinity is never served nor logged: every number of a chosen row
 * (its context, score, expected reward, exploration, propensity) must be
 * finite.  BanditGetSettings and BanditStateLoad keep their inputs in range,
 * so this is the last guard, not the usual path.
 */
static void
RecommendCheckFinite(RecommendCall *call)
{
	int			j,
				t;

	for (j = 0; j < call->nchosen; j++)
	{
		int			c = call->chosen[j];
		bool		ok = isfinite(call->score[c]) && isfinite(call->mu[c]) &&
			isfinite(call->explore[c]) && isfinite(call->propensity[j]) &&
			call->propensity[j] > 0.0 && call->propensity[j] <= 1.0;

		for (t = 0; ok && t < BANDIT_DIM; t++)
			ok = isfinite(call->X[c * BANDIT_DIM + t]);
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("the recommender computed a non-finite score for account " INT64_FORMAT,
							call->rows[call->cand[c]].account_id),
					 errhint("Check icpml.bandit_settings and icpml.reward_map, then run SELECT icpml.rebuild_bandit_state().")));
	}
}

/* Phase 5: log the served rows (as the owner); fills their ids. */
static void
RecommendLog(RecommendCall *call, int64 *ids)
{
	int			kk = call->nchosen;
	Datum	   *acc = palloc(sizeof(Datum) * kk);
	Datum	   *rank = palloc(sizeof(Datum) * kk);
	Datum	   *ctx = palloc(sizeof(Datum) * kk * BANDIT_DIM);
	Datum	   *sc = palloc(sizeof(Datum) * kk);
	Datum	   *mu = palloc(sizeof(Datum) * kk);
	Datum	   *pr = palloc(sizeof(Datum) * kk);
	Datum		args[12];
	char		nulls[12];
	int			j,
				t,
				ret;
	uint64		i;
	CatalogOwnerState owner;

	if (plan_log == NULL || plan_log_pre_experiments == NULL)
	{
		Oid			argtypes[12] = {UUIDOID, INT8ARRAYOID, INT4ARRAYOID, TEXTOID, FLOAT4ARRAYOID,
		INT4OID, FLOAT8ARRAYOID, FLOAT8ARRAYOID, FLOAT8ARRAYOID, INT8OID, TEXTOID, TEXTOID};
		const char *insert = "INSERT INTO icpml.recommendations AS r (user_id, account_id, rank,"
			" policy, context, score, expected_reward, propensity, state_version%s)"
			" SELECT $1, u.account_id, u.rank, $4,"
			" $5[(((u.rank OPERATOR(pg_catalog.-) 1) OPERATOR(pg_catalog.*) $6) OPERATOR(pg_catalog.+) 1)"
			" : (u.rank OPERATOR(pg_catalog.*) $6)], u.score, u.mu, u.p, $10%s"
			" FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($7),"
			" pg_catalog.unnest($8), pg_catalog.unnest($9)) AS u(account_id, rank, score, mu, p)"
			" ORDER BY u.rank RETURNING r.recommendation_id, r.rank";

		/* the log as it is, or as it was before experiments (0.2.0 SQL) */
		if (call->cfg->has_experiments && plan_log == NULL)
			plan_log = CatalogKeepPlan(psprintf(insert, ", experiment, variant", ", $11, $12"),
									  12, argtypes, 0);
		if (!call->cfg->has_experiments && plan_log_pre_experiments == NULL)
			plan_log_pre_experiments = CatalogKeepPlan(psprintf(insert, "", ""), 12, argtypes, 0);
	}

	for (j = 0; j < kk; j++)
	{
		int			c = call->chosen[j];

		acc[j] = Int64GetDatum(call->rows[call->cand[c]].account_id);
		rank[j] = Int32GetDatum(j + 1);
		for (t = 0; t < BANDIT_DIM; t++)
			ctx[j * BANDIT_DIM + t] = Float4GetDatum((float4) call->X[c * BANDIT_DIM + t]);
		sc[j] = Float8GetDatum(call->score[c]);
		mu[j] = Float8GetDatum(call->mu[c]);
		pr[j] = Float8GetDatum(call->propensity[j]);
	}
	args[0] = UUIDPGetDatum(call->user);
	args[1] = PointerGetDatum(construct_array(acc, kk, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[2] = PointerGetDatum(construct_array(rank, kk, INT4OID, 4, true, TYPALIGN_INT));
	args[3] = CStringGetTextDatum(BanditPolicyName(call->policy));
	args[4] = PointerGetDatum(construct_array(ctx, kk * BANDIT_DIM, FLOAT4OID, 4, true, TYPALIGN_INT));
	args[5] = Int32GetDatum(BANDIT_DIM);
	args[6] = PointerGetDatum(construct_array(sc, kk, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[7] = PointerGetDatum(construct_array(mu, kk, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[8] = PointerGetDatum(construct_array(pr, kk, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[9] = Int64GetDatum(call->state_version);
	memset(nulls, ' ', sizeof(nulls));
	if (call->variant >= 0)
	{
		args[10] = CStringGetTextDatum(call->cfg->experiment);
		args[11] = CStringGetTextDatum(call->cfg->variants[call->variant]);
	}
	else
	{
		args[10] = args[11] = (Datum) 0;
		nulls[10] = nulls[11] = 'n';
	}

	CatalogSwitchToOwner(&owner);
	ret = SPI_execute_plan(call->cfg->has_experiments ? plan_log : plan_log_pre_experiments,
						   args, nulls, false, 0);
	CatalogRestoreUser(&owner);
	if (ret != SPI_OK_INSERT_RETURNING || SPI_processed != (uint64) kk)
		elog(ERROR, "logging recommendations failed: %s", SPI_result_code_string(ret));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		int32		rk = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));

		ids[rk - 1] = id;
	}
}

/*
 * recommend_accounts(user_id uuid, k int, policy text, candidates int,
 * seed bigint) → table(rank, account_id, score, expected_reward,
 * exploration, icp_score, priority, reason, recommendation_id)
 */
Datum
recommend_accounts(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RecommendCall *call;
	int64		ids[RECOMMEND_MAX_K];
	int			j;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("user_id must not be NULL"),
				 errhint("Pass the id of the sales user to recommend accounts to.")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("k must not be NULL"),
				 errhint("Pass how many accounts to list, 1 to %d.", RECOMMEND_MAX_K)));

	call = palloc0(sizeof(RecommendCall));
	call->user = PG_GETARG_UUID_P(0);
	call->k = PG_GETARG_INT32(1);
	if (call->k < 1 || call->k > RECOMMEND_MAX_K)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("k must be between 1 and %d, not %d", RECOMMEND_MAX_K, call->k),
				 errhint("Ask for at most %d accounts per call.", RECOMMEND_MAX_K)));
	if (!PG_ARGISNULL(2))
	{
		char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(2));

		if (!BanditPolicyFromName(name, &call->policy))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown policy \"%s\"", name),
					 errhint("Use linucb, thompson, greedy, epsilon_greedy, icp or random, or NULL for the configured default.")));
	}
	if (!PG_ARGISNULL(3))
	{
		call->M = PG_GETARG_INT32(3);
		if (call->M < call->k || call->M > RECOMMEND_MAX_CANDIDATES)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("candidates must be between k (%d) and %d, not %d",
							call->k, RECOMMEND_MAX_CANDIDATES, call->M),
					 errhint("candidates is how many accounts are retrieved before ranking; the default is icpml.bandit_settings.candidates.")));
	}
	if (PG_ARGISNULL(4))
		pg_prng_seed(&call->rng, pg_prng_uint64(&pg_global_prng_state));
	else
		pg_prng_seed(&call->rng, (uint64) PG_GETARG_INT64(4));

	RecommendCheckCaller(call->user);
	call->now = GetCurrentTransactionStartTimestamp();
	call->today = DatumGetDateADT(DirectFunctionCall1(timestamptz_date,
													  TimestampTzGetDatum(call->now)));

	InitMaterializedSRF(fcinfo, 0);

	SPI_connect();
	call->rowcxt = AllocSetContextCreate(CurrentMemoryContext, "icpml recommend row",
										 ALLOCSET_SMALL_SIZES);
	call->cfg = BanditGetSettings();
	call->variant = -1;
	if (PG_ARGISNULL(2))
	{
		call->policy = call->cfg->default_policy;
		/* a running experiment chooses the policy by the user's variant */
		if (call->cfg->experiment != NULL)
		{
			call->variant = ExperimentAssign(call->cfg->experiment, call->user,
											 call->cfg->variant_weights, call->cfg->n_variants);
			call->policy = call->cfg->variant_policies[call->variant];
		}
	}
	if (call->M == 0)
		call->M = Max(call->k, call->cfg->candidates);
	RecommendPreparePlans();

	RecommendLoadHistory(call);
	RecommendRetrieve(call);
	RecommendHistoryStats(call);
	RecommendLoadFatigue(call);
	RecommendEngagement(call);
	RecommendContexts(call);
	RecommendRank(call);
	RecommendCheckFinite(call);

	if (call->nchosen > 0)
	{
		RecommendReadTiers(call);
		RecommendLog(call, ids);
	}

	for (j = 0; j < call->nchosen; j++)
	{
		int			c = call->chosen[j];
		RecRow	   *r = &call->rows[call->cand[c]];
		Datum		values[RECOMMEND_NATTS];
		bool		nulls[RECOMMEND_NATTS];

		memset(nulls, 0, sizeof(nulls));
		values[0] = Int32GetDatum(j + 1);
		values[1] = Int64GetDatum(r->account_id);
		values[2] = Float8GetDatum(call->score[c]);
		values[3] = Float8GetDatum(call->mu[c]);
		values[4] = Float8GetDatum(call->explore[c]);
		values[5] = Int32GetDatum(r->icp_score);
		values[6] = CStringGetTextDatum(r->priority);
		values[7] = JsonbPGetDatum(RecommendReason(call, c, call->explored[j]));
		values[8] = Int64GetDatum(ids[j]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	SPI_finish();
	return (Datum) 0;
}
