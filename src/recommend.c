/*
 * recommend.c — recommend_accounts(user_id, k, policy, candidates, seed):
 * the entry point, the caller check, the reads, the reason and the log.
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
 *               Then the user's unrewarded impressions (fatigue), as the
 *               owner.
 *  3. context   one vector per candidate (context.c: its entries, names
 *               and scaling).
 *  4. ranking   the shared and the user's bandit state (as the owner), then
 *               the policy (policy.c).
 *  5. logging   one INSERT of the k served rows into icpml.recommendations
 *               (as the owner) with context, score and propensity; each
 *               row's reason (jsonb) names its largest contributions.
 *
 * Experiments: while one runs (icpml.experiments) and the caller passes no
 * policy, the user's hashed variant (experiments.c) chooses the policy, and
 * the experiment and variant are logged with every row and named in the
 * reason.
 *
 * Memory: everything lives in the SPI procedure context and goes away at
 * SPI_finish; the result rows are copied into the tuplestore before that.
 * The call's state is a RecommendCall (recommend.h).
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
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "bandit.h"
#include "catalog.h"
#include "context.h"
#include "experiments.h"
#include "feedback.h"
#include "icpml.h"
#include "policy.h"
#include "recommend.h"
#include "relation.h"
#include "rules.h"
#include "signals.h"
#include "spi_scan.h"

#define RECOMMEND_MAX_CANDIDATES 5000
#define RECOMMEND_NATTS 9
/* impressions read for the fatigue feature (most recent first) */
#define RECOMMEND_FATIGUE_ROWS 500
#define RECOMMEND_MAX_PAGE 50000

PG_FUNCTION_INFO_V1(recommend_accounts);

/* Feature columns read for candidates and for the accounts in the history. */
static const RelationColumn RecommendColumns[] = {
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

static RelationReader recommend_reader = {RecommendColumns, lengthof(RecommendColumns)};

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

	display = RelationResolveInteractions();
	if (plan_history)
		SPI_freeplan(plan_history);
	if (plan_own)
		SPI_freeplan(plan_own);
	plan_history = plan_own = NULL;

	plan_history = SpiKeepPlan(psprintf("SELECT i.account_id::pg_catalog.int8,"
										" i.interaction_type::pg_catalog.text,"
										" i.created_at::pg_catalog.timestamptz FROM %s AS i"
										" WHERE i.user_id OPERATOR(pg_catalog.=) $1 ORDER BY i.created_at DESC LIMIT $2",
										display), 2, argtypes, 0);
	argtypes[1] = INT8ARRAYOID;
	plan_own = SpiKeepPlan(psprintf("SELECT i.account_id::pg_catalog.int8,"
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
RecommendAgeDays(RecommendCall *call, Datum ts)
{
	return (double) (call->now - DatumGetTimestampTz(ts)) / (double) USECS_PER_DAY;
}

/* One row of the history: account, interaction type, when. */
static void
RecommendHistoryRow(TupleTableSlot *slot, void *arg)
{
	RecommendCall *call = (RecommendCall *) arg;
	RecommendHistItem *h;

	if (slot->tts_isnull[0] || slot->tts_isnull[1])
		return;
	if (call->nhist == call->hist_cap)
	{
		call->hist_cap *= 2;
		call->hist = repalloc(call->hist, sizeof(RecommendHistItem) * call->hist_cap);
	}
	h = &call->hist[call->nhist++];
	h->account_id = DatumGetInt64(slot->tts_values[0]);
	h->type = TextDatumGetCString(slot->tts_values[1]);
	h->age_days = slot->tts_isnull[2] ? 1e9 : RecommendAgeDays(call, slot->tts_values[2]);
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
	call->hist = palloc(sizeof(RecommendHistItem) * call->hist_cap);
	(void) SpiScan(plan_history, args, false, RecommendHistoryRow, call, "the interaction history");
}

/* Find or create the hash entry of an account. */
static RecommendAccount *
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
	}
	return e;
}

/*
 * Index of the industry name[0..len-1] in the call's industry list, adding
 * it; -1 when the list is full (RECOMMEND_MAX_INDUSTRIES distinct names).
 */
static int
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

/*
 * One feature row: fills the history entry of the account and, for a
 * scanned row, the row (first sighting only).
 */
static void
RecommendFeatureRow(TupleTableSlot *slot, void *arg)
{
	RecommendCall *call = (RecommendCall *) arg;
	Datum	   *v = slot->tts_values;
	bool	   *isnull = slot->tts_isnull;
	RecommendAccount *e;
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

		ind = RecommendIndustryIndex(call, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
		industry = ind >= 0 ? call->industries[ind].name : text_to_cstring(t);
	}
	band = SignalSizeBand(isnull[6] ? 0 : DatumGetFloat8(v[6]), isnull[6]);
	tech_slots = 0;
	if (!isnull[9])
	{
		MemoryContext old = MemoryContextSwitchTo(call->rowcxt);

		tech_slots = ContextTechnologySlots(call->cfg, v[9]);
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
		RecommendRow *r = &call->rows[e->row];

		r->visible = true;
		r->industry = industry;
		r->ind = ind;
		if (!SignalCount(v[2], isnull[2], &r->eng_roles))
			r->eng_roles = -1;
		r->hiring = !isnull[3] && DatumGetBool(v[3]);
		if (!SignalCount(v[4], isnull[4], &r->open_roles))
			r->open_roles = -1;
		r->blog = !isnull[5] && DatumGetBool(v[5]);
		r->size_band = band;
		r->funding = 0.0;
		if (!isnull[7] && !DATE_NOT_FINITE(DatumGetDateADT(v[7])))
			r->funding = ContextFundingRecency((double) (call->today - DatumGetDateADT(v[7])));
		r->research = 0.0;
		if (!isnull[8] && !TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(v[8])))
			r->research = ContextRecencyWeight(Max(0.0, RecommendAgeDays(call, v[8])));
		r->industry_slot = ind >= 0 ? call->industries[ind].slot :
			industry != NULL ? ContextIndustrySlot(call->cfg, industry) : -1;
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
	(void) SpiScan(RelationReaderPlan(&recommend_reader, RELATION_MANY), &arg, false,
				   RecommendFeatureRow, call, "features");
}

/* What ReadOwn's rows refer to. */
typedef struct RecommendOwnScan
{
	RecommendCall *call;
	int			first;			/* rows before it were read already */
} RecommendOwnScan;

/* One of the user's interactions with a scanned row. */
static void
RecommendOwnRow(TupleTableSlot *slot, void *arg)
{
	RecommendOwnScan *scan = (RecommendOwnScan *) arg;
	RecommendCall *call = scan->call;
	int64		id;
	RecommendAccount *e;
	RecommendRow *r;
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
	ti = ContextOwnType(t);
	if (ti >= 0)
	{
		double		age = slot->tts_isnull[2] ? 1e9 : Max(0.0, RecommendAgeDays(call, slot->tts_values[2]));

		r->own[ti] += ContextRecencyWeight(age);
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
	RecommendOwnScan scan = {call, first};
	int			j;

	if (call->nrows == first)
		return;
	ids = palloc(sizeof(Datum) * (call->nrows - first));
	for (j = first; j < call->nrows; j++)
		ids[j - first] = Int64GetDatum(call->rows[j].account_id);
	args[0] = UUIDPGetDatum(call->user);
	args[1] = PointerGetDatum(construct_array(ids, call->nrows - first, INT8OID, 8,
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	(void) SpiScan(plan_own, args, false, RecommendOwnRow, &scan, "the user's interactions");
}

/* Scan a plan over one of icpml's own tables as the extension owner. */
static uint64
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

/* State of one retrieval page. */
typedef struct RecommendPageScan
{
	RecommendCall *call;
	Datum	   *ids;			/* feature rows to read */
	int			nids;
} RecommendPageScan;

/* One account_scores row of a retrieval page. */
static void
RecommendPageRow(TupleTableSlot *slot, void *arg)
{
	RecommendPageScan *scan = (RecommendPageScan *) arg;
	RecommendCall *call = scan->call;
	RecommendRow *r;
	RecommendAccount *e;
	int64		id = DatumGetInt64(slot->tts_values[0]);

	e = RecommendEntry(call, id);
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
	r->icp_score = IcpmlScoreFromProbability(r->probability);
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
	ctl.entrysize = sizeof(RecommendAccount);
	ctl.hcxt = CurrentMemoryContext;
	call->accounts = hash_create("icpml recommend accounts", 2 * call->M + call->nhist + 16,
								 &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	call->rows_cap = call->M;
	call->rows = palloc0(sizeof(RecommendRow) * call->rows_cap);
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
		RecommendPageScan scan;

		CHECK_FOR_INTERRUPTS();

		/* room for a full page of rows, and of ids to read with the history's */
		if (call->nrows + page > call->rows_cap)
		{
			int			newcap = call->nrows + page;

			call->rows = repalloc(call->rows, sizeof(RecommendRow) * newcap);
			memset(call->rows + call->rows_cap, 0, sizeof(RecommendRow) * (newcap - call->rows_cap));
			call->rows_cap = newcap;
		}
		scan.call = call;
		scan.ids = palloc(sizeof(Datum) * (page + (first ? call->nhist : 0)));
		scan.nids = 0;

		args[0] = Int32GetDatum(page);
		args[1] = Int64GetDatum(offset);
		nfetched = (int) RecommendOwnerScan(plan_retrieve, args, false, RecommendPageRow, &scan,
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
				RecommendAccount *e = RecommendEntry(call, call->hist[j].account_id);

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
			RecommendRow *r = &call->rows[j];

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


/*
 * Fatigue and ignored evidence of every candidate: the user's impressions of
 * it that were not rewarded (pending or expired), each weighted
 * fatigue_decay ^ (lists served to the user since, counting the one being
 * built), resp. by the examination probability of its rank, over the most
 * recent RECOMMEND_FATIGUE_ROWS impressions (read as the owner: icpml's own
 * log).
 */
typedef struct RecommendFatigueScan
{
	RecommendCall *call;
	double		weight;			/* fatigue_decay ^ lists served since */
	TimestampTz last;			/* served_at of the previous row */
	bool		any;
} RecommendFatigueScan;

/* One impression, most recent first. */
static void
RecommendFatigueRow(TupleTableSlot *slot, void *arg)
{
	RecommendFatigueScan *scan = (RecommendFatigueScan *) arg;
	RecommendCall *call = scan->call;
	int64		id = DatumGetInt64(slot->tts_values[0]);
	TimestampTz served = DatumGetTimestampTz(slot->tts_values[1]);
	RecommendAccount *e;

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
	RecommendFatigueScan scan = {call, 1.0, 0, false};

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
	(void) RecommendOwnerScan(plan_fatigue, args, true, RecommendFatigueRow, &scan, "icpml.recommendations");
}

/* The shared and the user's bandit state, for ranking (as the owner). */
static void
RecommendLoadStates(RecommendCall *call)
{
	char		scope[48];
	CatalogOwnerState owner;

	if (call->ncand == 0)
		return;
	CatalogSwitchToOwner(&owner);
	(void) BanditStateLoad(&call->global_state, "global", false, false, call->cfg);
	BanditUserScope(call->user, scope);
	(void) BanditStateLoad(&call->user_state, scope, false, false, call->cfg);
	CatalogRestoreUser(&owner);
	call->state_version = call->global_state.version;
}

/*
 * Score and priority of the listed rows from icpml.account_scores (as the
 * owner).  A row that score_all() replaced meanwhile keeps the score derived
 * from its probability and the default tiers (8+ high, 5+ medium).
 */
/* One account_scores row of a listed account: its score and priority. */
static void
RecommendTierRow(TupleTableSlot *slot, void *arg)
{
	RecommendCall *call = (RecommendCall *) arg;
	int64		id = DatumGetInt64(slot->tts_values[0]);
	RecommendAccount *e = hash_search(call->accounts, &id, HASH_FIND, NULL);

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
		RecommendRow *r = &call->rows[call->cand[call->chosen[j]]];

		ids[j] = Int64GetDatum(r->account_id);
		r->priority = r->icp_score >= 8 ? "high" : r->icp_score >= 5 ? "medium" : "low";
	}
	arg = PointerGetDatum(construct_array(ids, call->nchosen, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	(void) RecommendOwnerScan(plan_tiers, &arg, false, RecommendTierRow, call, "icpml.account_scores");
}

/* Past tense of an own interaction type, for the summary. */
static const char *
RecommendVerb(int t)
{
	static const char *const verbs[CTX_NOWN_TYPES] = {
		"viewed", "researched", "saved", "contacted", "met"
	};

	return verbs[t];
}

/* The reason jsonb of one listed candidate. */
static Jsonb *
RecommendReason(RecommendCall *call, int c, bool explored)
{
	RecommendRow *r = &call->rows[call->cand[c]];
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
						 RecommendVerb(call->industries[ind].best_type));
	if (r->own_best >= 0)
		appendStringInfo(&summary, ", you %s it before", RecommendVerb(r->own_best));
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
		escape_json(&buf, ContextSignalName(call->cfg, order[i]));
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

	/* attribution by commit order: feedback for this user waits for this list */
	FeedbackLockServing(call->user);
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
	call->scaling = RulesScaling();
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
	RecommendLoadFatigue(call);
	ContextBuild(call);
	RecommendLoadStates(call);
	PolicyRank(call);
	RecommendCheckFinite(call);

	if (call->nchosen > 0)
	{
		RecommendReadTiers(call);
		RecommendLog(call, ids);
	}

	for (j = 0; j < call->nchosen; j++)
	{
		int			c = call->chosen[j];
		RecommendRow *r = &call->rows[call->cand[c]];
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
