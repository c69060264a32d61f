/*
 * retrieval.c — the first stage of recommend_accounts: the M candidates
 * the policy ranks, from several sources, each one index scan of
 * icpml.account_candidates (candidates.c; read as the extension owner),
 * then checked as the caller.
 *
 * Sources and their quotas (bandit_settings; shares of M, icp takes what
 * the others leave), in the order they admit accounts (an account two
 * sources return counts for the first, and is logged with it):
 *
 *   icp       the top accounts by ICP probability;
 *   affinity  affinity_share of M from the user's own segments: the
 *             (industry, size band) pairs of the accounts in the user's last
 *             history_limit interactions, each weighted by 0.1 plus the
 *             interaction's reward (dismissals count nothing), industry and
 *             size preferences multiplied; at most RETRIEVAL_MAX_SEGMENTS
 *             segments, quotas in proportion, best ICP probability first
 *             within each segment, below the icp slice;
 *   fresh     fresh_share: the newest by fresh_at (an account's first
 *             scoring or its latest research run) within fresh_window,
 *             outside the icp slice;
 *   explore   explore_share: a run of accounts in explore_key order (a fixed
 *             hash of the id) from a random start, outside the icp slice.
 *
 * Then, as the caller, one `= ANY` read of the feature relation's key:
 * row-level security drops what the caller may not see (and accounts
 * deleted since their scoring).  The user's profile (profile.c), or the
 * user's interactions read live, drop what the user dismissed or works.
 * While fewer than max(k, M/2) candidates survive, the icp source pages
 * further down the probability order (doubling the page), until that many
 * survive, 10 M accounts were scanned with at least k survivors, or 20 M
 * accounts were scanned.
 *
 * Reads per call: one index scan per source (the affinity segments in one
 * statement, the account_feedback evidence joined to each), one key read
 * of the M accounts as the caller: O(M) rows, no per-account probes of the
 * feature relation or of the interactions.
 *
 * A model-version variant of an experiment (call->model_version, a version
 * other than the deployed one): the icp source reads the top of that
 * version's materialised scores (icpml.version_scores, its own index) with
 * the features of account_candidates, the other sources read as usual but
 * not bounded by the icp slice, and every candidate they bring gets that
 * version's probability, score and priority; one the version has not
 * scored is left out.  A version with no materialised scores is an error.
 *
 * Fallbacks, all 'icp': before account_candidates has rows (after an
 * upgrade, until the next scoring or refresh_candidates()), the top of
 * account_scores with features read live as the caller; before any scoring
 * at all, a cold start from the rules: the first RETRIEVAL_COLD_FACTOR x M
 * rows of the feature relation (key order), read as the caller and ranked
 * by the rule-based probability.
 */
#include "postgres.h"

#include <math.h>

#include "access/relation.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "nodes/parsenodes.h"
#include "parser/parsetree.h"
#include "rewrite/rewriteHandler.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/float.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "icpml.h"
#include "catalog.h"
#include "bandit.h"
#include "candidates.h"
#include "context.h"
#include "profile.h"
#include "recommend.h"
#include "relation.h"
#include "rules.h"
#include "signals.h"
#include "spi_scan.h"

/* Segments the affinity source reads at most. */
#define RETRIEVAL_MAX_SEGMENTS 12
/* Largest page of the icp source. */
#define RETRIEVAL_MAX_PAGE 50000
/* The cold start reads this many times M rows of the feature relation. */
#define RETRIEVAL_COLD_FACTOR 20

const char *const RecommendSourceNames[RECOMMEND_NSOURCES] = {
	"icp", "affinity", "fresh", "explore"
};

/* The columns every source returns (account_candidates + account_feedback). */
#define RETRIEVAL_SELECT \
	"c.account_id, c.probability, c.score, c.priority, c.industry, c.size_band," \
	" c.engineering_roles, c.hiring, c.open_roles, c.blog, c.funding_date, c.researched_at," \
	" c.tech_stack"
#define RETRIEVAL_FEEDBACK ""
/* Strictly below the icp slice's last row ($p, $id) in (probability desc, id) order. */
#define RETRIEVAL_BELOW(p, id) \
	" (c.probability OPERATOR(pg_catalog.<) " p " OR (c.probability OPERATOR(pg_catalog.=) " p \
	" AND c.account_id OPERATOR(pg_catalog.>) " id "))"

static SPIPlanPtr plan_icp = NULL;
static SPIPlanPtr plan_affinity = NULL;
static SPIPlanPtr plan_fresh = NULL;
static SPIPlanPtr plan_explore = NULL;
static SPIPlanPtr plan_scores = NULL;
static SPIPlanPtr plan_hist_attrs = NULL;

/* The key-only reader of the feature relation: the visibility check. */
static RelationReader visibility_reader = {NULL, 0};

/*
 * The visibility check's own plan when the feature relation is a view that
 * keeps every row of one of its tables (see RetrievalVisibilityPlan), and
 * what it was built for.
 */
static SPIPlanPtr visibility_base_plan = NULL;
static Oid	visibility_rls_relid = InvalidOid;	/* whose RLS decides; invalid: unknown */
static char *visibility_setting = NULL;
static Oid	visibility_view = InvalidOid;
static bool visibility_valid = false;
static bool visibility_callback = false;

/* Cold start: CandidatesColumns plus the rules' funding amount. */
static const RelationColumn ColdColumns[] = {
	{"industry", TEXTOID, true},
	{"engineering_role_count", FLOAT8OID, true},
	{"has_open_engineering_roles", BOOLOID, true},
	{"total_open_roles", FLOAT8OID, true},
	{"has_engineering_blog", BOOLOID, true},
	{"company_size", FLOAT8OID, true},
	{"funding_date", DATEOID, true},
	{"researched_at", TIMESTAMPTZOID, true},
	{"tech_stack", TEXTARRAYOID, true},
	{"funding_amount_usd", FLOAT8OID, true},
};
static RelationReader cold_reader = {ColdColumns, lengthof(ColdColumns)};

static void RetrievalReadFeatures(RecommendCall *call, Datum *ids, int n);
static void RetrievalReadOwn(RecommendCall *call, int first);

/* One scan of a source: where its rows go. */
typedef struct RetrievalScan
{
	RecommendCall *call;
	RecommendSource source;
	int			admitted;		/* new rows */
	double		last_probability;	/* of the last row returned */
	int64		last_id;
} RetrievalScan;

/* The rows of a call, kept for the backend's life (only one call at a time). */
static RecommendRow *retrieval_rows = NULL;
static int	retrieval_rows_cap = 0;

/* An interval in days (a month is 30 days). */
static double
RetrievalIntervalDays(const Interval *iv)
{
	return (double) iv->time / (double) USECS_PER_DAY + iv->day + 30.0 * iv->month;
}

/* Room for n more rows (RetrievalNewRow zeroes each row it hands out). */
static void
RetrievalReserve(RecommendCall *call, int n)
{
	if (call->nrows + n <= call->rows_cap)
		return;
	{
		int			newcap = Max(call->rows_cap * 2, call->nrows + n);

		call->rows = repalloc(call->rows, sizeof(RecommendRow) * newcap);
		call->rows_cap = newcap;
		retrieval_rows = call->rows;
		retrieval_rows_cap = newcap;
	}
}

/* A new row for an account not retrieved yet, or NULL when it was. */
static RecommendRow *
RetrievalNewRow(RecommendCall *call, int64 id, RecommendSource source)
{
	RecommendAccount *e = RecommendEntry(call, id);
	RecommendRow *r;

	if (e->row >= 0)
		return NULL;
	RetrievalReserve(call, 1);
	r = &call->rows[call->nrows];
	memset(r, 0, sizeof(RecommendRow));
	r->account_id = id;
	r->source = source;
	r->own_best = -1;
	r->size_band = -1;
	r->eng_roles = r->open_roles = -1;
	r->ind = -1;
	r->industry_slot = -1;
	e->row = call->nrows++;
	call->source_rows[source]++;
	return r;
}

/* Age in days of a timestamptz relative to the call. */
static inline double
RetrievalAgeDays(RecommendCall *call, Datum ts)
{
	return (double) (call->now - DatumGetTimestampTz(ts)) / (double) USECS_PER_DAY;
}

/* One row of account_candidates (RETRIEVAL_SELECT). */
static void
RetrievalCandidateRow(TupleTableSlot *slot, void *arg)
{
	RetrievalScan *scan = (RetrievalScan *) arg;
	RecommendCall *call = scan->call;
	Datum	   *v = slot->tts_values;
	bool	   *nl = slot->tts_isnull;
	int64		id = DatumGetInt64(v[0]);
	RecommendRow *r;

	scan->last_probability = DatumGetFloat8(v[1]);
	scan->last_id = id;
	r = RetrievalNewRow(call, id, scan->source);
	if (r == NULL)
		return;					/* admitted by an earlier source */
	scan->admitted++;
	r->probability = DatumGetFloat8(v[1]);
	if (isnan(r->probability))
		r->probability = 0.0;
	r->icp_score = DatumGetInt32(v[2]);
	r->priority = TextDatumGetCString(v[3]);
	r->features = true;
	if (!nl[4])
	{
		text	   *t = DatumGetTextPP(v[4]);

		r->ind = RecommendIndustryIndex(call, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
		r->industry = r->ind >= 0 ? call->industries[r->ind].name : text_to_cstring(t);
		r->industry_slot = r->ind >= 0 ? call->industries[r->ind].slot :
			ContextIndustrySlot(call->cfg, r->industry);
	}
	r->size_band = nl[5] ? -1 : DatumGetInt16(v[5]);
	r->eng_roles = nl[6] ? -1.0 : DatumGetFloat4(v[6]);
	r->hiring = !nl[7] && DatumGetBool(v[7]);
	r->open_roles = nl[8] ? -1.0 : DatumGetFloat4(v[8]);
	r->blog = !nl[9] && DatumGetBool(v[9]);
	if (!nl[10] && !DATE_NOT_FINITE(DatumGetDateADT(v[10])))
		r->funding = ContextFundingRecency((double) (call->today - DatumGetDateADT(v[10])));
	if (!nl[11] && !TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(v[11])))
		r->research = ContextRecencyWeight(Max(0.0, RetrievalAgeDays(call, v[11])));
	if (!nl[12])
	{
		MemoryContext old = MemoryContextSwitchTo(call->rowcxt);

		r->tech_slots = ContextTechnologySlots(call->cfg, v[12]);
		MemoryContextSwitchTo(old);
		MemoryContextReset(call->rowcxt);
		r->tech_known = true;
	}
}

/* One account_feedback row of a candidate. */
static void
RetrievalFeedbackRow(TupleTableSlot *slot, void *arg)
{
	RecommendCall *call = (RecommendCall *) arg;
	RecommendAccount *e;
	int64		id;

	if (slot->tts_isnull[0] || slot->tts_isnull[1] || slot->tts_isnull[2] ||
		DatumGetFloat8(slot->tts_values[1]) < 0.0)
		return;
	id = DatumGetInt64(slot->tts_values[0]);
	e = hash_search(call->accounts, &id, HASH_FIND, NULL);
	if (e == NULL || e->row < 0)
		return;
	call->rows[e->row].fb_examined = DatumGetFloat8(slot->tts_values[1]);
	call->rows[e->row].fb_reward = DatumGetFloat8(slot->tts_values[2]);
}

/*
 * What all users did with the candidates when they were recommended
 * (icpml.account_feedback, as the owner): one read for all of them, after
 * the sources (joined to each source's scan, the planner hashed the whole
 * table once per source).
 */
static void
RetrievalFeedback(RecommendCall *call)
{
	static SPIPlanPtr plan = NULL;
	Datum	   *ids;
	Datum		arg;
	int			j;

	if (call->ncand == 0)
		return;
	if (plan == NULL)
	{
		Oid			argtype = INT8ARRAYOID;

		plan = CatalogKeepPlan("SELECT f.account_id, f.examined, f.reward FROM icpml.account_feedback AS f"
							   " WHERE f.account_id OPERATOR(pg_catalog.=) ANY ($1)", 1, &argtype,
							   CURSOR_OPT_GENERIC_PLAN);
	}
	ids = palloc(sizeof(Datum) * call->ncand);
	for (j = 0; j < call->ncand; j++)
		ids[j] = Int64GetDatum(call->rows[call->cand[j]].account_id);
	arg = PointerGetDatum(construct_array(ids, call->ncand, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	(void) RecommendOwnerScan(plan, &arg, true, RetrievalFeedbackRow, call, "icpml.account_feedback");
}

/* Run a source's plan as the owner into call->rows. */
static int
RetrievalScanSource(RecommendCall *call, SPIPlanPtr plan, Datum *args, RecommendSource source,
					RetrievalScan *scan)
{
	scan->call = call;
	scan->source = source;
	scan->admitted = 0;
	return (int) RecommendOwnerScan(plan, args, true, RetrievalCandidateRow, scan,
									"icpml.account_candidates");
}

/*
 * The icp source's first page, LIMIT n: a plan per n (the limit written
 * into the query, so the planner sees it and keeps the index scan without
 * planning each call; a few n in practice: M and the shares rarely change).
 */
#define RETRIEVAL_FIRST_PLANS 4
static SPIPlanPtr plan_icp_first[RETRIEVAL_FIRST_PLANS];
static int	plan_icp_first_n[RETRIEVAL_FIRST_PLANS];
static int	plan_icp_first_next = 0;

static SPIPlanPtr
RetrievalIcpFirstPlan(int n)
{
	int			i;

	for (i = 0; i < RETRIEVAL_FIRST_PLANS; i++)
		if (plan_icp_first[i] != NULL && plan_icp_first_n[i] == n)
			return plan_icp_first[i];
	i = plan_icp_first_next;
	plan_icp_first_next = (plan_icp_first_next + 1) % RETRIEVAL_FIRST_PLANS;
	if (plan_icp_first[i] != NULL)
		SPI_freeplan(plan_icp_first[i]);
	plan_icp_first[i] = NULL;
	plan_icp_first[i] = CatalogKeepPlan(psprintf("SELECT " RETRIEVAL_SELECT " FROM (SELECT * FROM icpml.account_candidates AS c"
												 " ORDER BY c.probability DESC, c.account_id LIMIT %d) AS c"
												 RETRIEVAL_FEEDBACK " ORDER BY c.probability DESC, c.account_id", n),
										0, NULL, 0);
	plan_icp_first_n[i] = n;
	return plan_icp_first[i];
}

/*
 * One page of the icp source of a model-version variant: the top of its
 * version's scores (LIMIT page OFFSET offset) with account_candidates'
 * features, one primary-key probe per row (the fenced LATERAL keeps the
 * planner from hashing the whole table: O(page) rows read).  The first
 * page has a plan per page size, like the served set's; later pages a
 * custom plan per call.
 */
#define RETRIEVAL_VERSION_SELECT \
	"SELECT v.account_id, v.probability, v.score, v.priority, c.industry," \
	" c.size_band, c.engineering_roles, c.hiring, c.open_roles, c.blog," \
	" c.funding_date, c.researched_at, c.tech_stack" \
	" FROM (SELECT s.account_id, s.probability, s.score, s.priority" \
	" FROM icpml.version_scores AS s WHERE s.model_version OPERATOR(pg_catalog.=) $1" \
	" ORDER BY s.probability DESC, s.account_id LIMIT %s OFFSET %s) AS v" \
	" CROSS JOIN LATERAL (SELECT * FROM icpml.account_candidates AS c" \
	" WHERE c.account_id OPERATOR(pg_catalog.=) v.account_id OFFSET 0) AS c" \
	" ORDER BY v.probability DESC, v.account_id"
static SPIPlanPtr plan_version_first[RETRIEVAL_FIRST_PLANS];
static int	plan_version_first_n[RETRIEVAL_FIRST_PLANS];
static int	plan_version_first_next = 0;

static int
RetrievalIcpVersionPage(RecommendCall *call, int page, int64 offset, RetrievalScan *scan)
{
	static SPIPlanPtr plan_next = NULL;
	Oid			argtypes[3] = {INT4OID, INT4OID, INT8OID};
	Datum		args[3];
	SPIPlanPtr	plan = NULL;
	int			i;

	args[0] = Int32GetDatum(call->model_version);
	if (offset == 0)
	{
		for (i = 0; i < RETRIEVAL_FIRST_PLANS; i++)
			if (plan_version_first[i] != NULL && plan_version_first_n[i] == page)
				plan = plan_version_first[i];
		if (plan == NULL)
		{
			i = plan_version_first_next;
			plan_version_first_next = (plan_version_first_next + 1) % RETRIEVAL_FIRST_PLANS;
			if (plan_version_first[i] != NULL)
				SPI_freeplan(plan_version_first[i]);
			plan_version_first[i] = NULL;
			plan_version_first[i] = CatalogKeepPlan(psprintf(RETRIEVAL_VERSION_SELECT,
															 psprintf("%d", page), "0"),
													1, argtypes, 0);
			plan_version_first_n[i] = page;
			plan = plan_version_first[i];
		}
		return RetrievalScanSource(call, plan, args, SOURCE_ICP, scan);
	}
	if (plan_next == NULL)
		plan_next = CatalogKeepPlan(psprintf(RETRIEVAL_VERSION_SELECT, "$2", "$3"), 3, argtypes,
									CURSOR_OPT_CUSTOM_PLAN);
	args[1] = Int32GetDatum(page);
	args[2] = Int64GetDatum(offset);
	return RetrievalScanSource(call, plan_next, args, SOURCE_ICP, scan);
}

/* Where RetrievalVersionRow writes: the call, and which rows the version scored. */
typedef struct RetrievalVersionScan
{
	RecommendCall *call;
	bool	   *scored;			/* by row index */
} RetrievalVersionScan;

/* One version_scores row of a candidate another source brought. */
static void
RetrievalVersionRow(TupleTableSlot *slot, void *arg)
{
	RetrievalVersionScan *scan = (RetrievalVersionScan *) arg;
	RecommendCall *call = scan->call;
	int64		id = DatumGetInt64(slot->tts_values[0]);
	RecommendAccount *e = hash_search(call->accounts, &id, HASH_FIND, NULL);
	RecommendRow *r;

	if (e == NULL || e->row < 0)
		return;
	r = &call->rows[e->row];
	r->probability = DatumGetFloat8(slot->tts_values[1]);
	if (isnan(r->probability))
		r->probability = 0.0;
	r->icp_score = DatumGetInt32(slot->tts_values[2]);
	r->priority = TextDatumGetCString(slot->tts_values[3]);
	scan->scored[e->row] = true;
}

/*
 * A model-version variant: the candidates rows[first..] that a source other
 * than icp brought get the version's probability, score and priority (as
 * the owner, one read); those the version has not scored are left out.
 */
static void
RetrievalVersionScores(RecommendCall *call, int first)
{
	static SPIPlanPtr plan = NULL;
	RetrievalVersionScan scan;
	Datum	   *ids;
	Datum		args[2];
	int			j,
				n = 0;

	if (plan == NULL)
	{
		Oid			argtypes[2] = {INT4OID, INT8ARRAYOID};

		plan = CatalogKeepPlan("SELECT s.account_id, s.probability, s.score, s.priority"
							   " FROM icpml.version_scores AS s WHERE s.model_version OPERATOR(pg_catalog.=) $1"
							   " AND s.account_id OPERATOR(pg_catalog.=) ANY ($2)", 2, argtypes,
							   CURSOR_OPT_GENERIC_PLAN);
	}
	ids = palloc(sizeof(Datum) * Max(call->nrows - first, 1));
	for (j = first; j < call->nrows; j++)
		if (call->rows[j].source != SOURCE_ICP && call->rows[j].visible)
			ids[n++] = Int64GetDatum(call->rows[j].account_id);
	if (n == 0)
		return;
	scan.call = call;
	scan.scored = palloc0(sizeof(bool) * call->nrows);
	args[0] = Int32GetDatum(call->model_version);
	args[1] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	(void) RecommendOwnerScan(plan, args, true, RetrievalVersionRow, &scan, "icpml.version_scores");
	for (j = first; j < call->nrows; j++)
		if (call->rows[j].source != SOURCE_ICP && !scan.scored[j])
			call->rows[j].visible = false;	/* not scored by the version */
}

/* One page of the icp source: LIMIT page OFFSET offset. */
static int
RetrievalIcpPage(RecommendCall *call, int page, int64 offset, RetrievalScan *scan)
{
	Datum		args[2];

	if (call->model_version > 0)
		return RetrievalIcpVersionPage(call, page, offset, scan);
	if (offset == 0)
		return RetrievalScanSource(call, RetrievalIcpFirstPlan(page), NULL, SOURCE_ICP, scan);
	if (plan_icp == NULL)
	{
		Oid			argtypes[2] = {INT4OID, INT8OID};

		/* a custom plan per call: a generic LIMIT estimate could pick a sort */
		plan_icp = CatalogKeepPlan("SELECT " RETRIEVAL_SELECT " FROM (SELECT * FROM icpml.account_candidates AS c"
								   " ORDER BY c.probability DESC, c.account_id LIMIT $1 OFFSET $2) AS c"
								   RETRIEVAL_FEEDBACK " ORDER BY c.probability DESC, c.account_id",
								   2, argtypes, CURSOR_OPT_CUSTOM_PLAN);
	}
	args[0] = Int32GetDatum(page);
	args[1] = Int64GetDatum(offset);
	return RetrievalScanSource(call, plan_icp, args, SOURCE_ICP, scan);
}

/* A segment of the affinity source. */
typedef struct RetrievalSegment
{
	int			industry;		/* index in call->industries */
	int			band;
	double		weight;
	int			quota;
} RetrievalSegment;

static int
RetrievalCompareSegments(const void *a, const void *b)
{
	const RetrievalSegment *x = (const RetrievalSegment *) a;
	const RetrievalSegment *y = (const RetrievalSegment *) b;

	if (x->weight != y->weight)
		return x->weight > y->weight ? -1 : 1;
	if (x->industry != y->industry)
		return x->industry < y->industry ? -1 : 1;
	return x->band - y->band;
}

/*
 * The affinity source's segments from the user's history: industry and
 * size-band preferences (0.1 + reward per interaction; a dismissal adds
 * nothing), their products, the best RETRIEVAL_MAX_SEGMENTS with quotas in
 * proportion (at least one row each).  Returns how many.
 */
static int
RetrievalSegments(RecommendCall *call, int quota, RetrievalSegment *out)
{
	double	   *pind = palloc0(sizeof(double) * Max(call->nindustries, 1));
	double		pband[CTX_NSIZE_BANDS] = {0};
	double		tind = 0.0,
				tband = 0.0,
				total = 0.0;
	RetrievalSegment *all;
	int			nall = 0,
				n,
				i,
				b,
				given = 0;

	for (i = 0; i < call->nhist; i++)
	{
		RecommendHistItem *h = &call->hist[i];
		double		r = 0.0;

		if (!h->known || h->industry < 0 || h->size_band < 0 || strcmp(h->type, "dismiss") == 0)
			continue;
		(void) BanditReward(call->cfg, h->type, &r);
		r = 0.1 + Max(r, 0.0);
		pind[h->industry] += r;
		pband[h->size_band] += r;
		tind += r;
		tband += r;
	}
	if (tind <= 0.0 || quota <= 0)
		return 0;
	all = palloc(sizeof(RetrievalSegment) * call->nindustries * CTX_NSIZE_BANDS);
	for (i = 0; i < call->nindustries; i++)
		for (b = 0; b < CTX_NSIZE_BANDS; b++)
			if (pind[i] > 0.0 && pband[b] > 0.0)
			{
				all[nall].industry = i;
				all[nall].band = b;
				all[nall].weight = (pind[i] / tind) * (pband[b] / tband);
				nall++;
			}
	qsort(all, nall, sizeof(RetrievalSegment), RetrievalCompareSegments);
	n = Min(nall, RETRIEVAL_MAX_SEGMENTS);
	n = Min(n, quota);
	for (i = 0; i < n; i++)
		total += all[i].weight;
	for (i = 0; i < n; i++)
	{
		out[i] = all[i];
		out[i].quota = Max(1, (int) floor(quota * all[i].weight / total));
		given += out[i].quota;
	}
	/* what rounding left goes to the best segment */
	if (n > 0 && given < quota)
		out[0].quota += quota - given;
	return n;
}

/* The affinity source: the segments' best accounts below the icp slice. */
static void
RetrievalAffinity(RecommendCall *call, int quota, double p, int64 id)
{
	RetrievalSegment seg[RETRIEVAL_MAX_SEGMENTS];
	int			n = RetrievalSegments(call, quota, seg);
	Datum	   *ind,
			   *band,
			   *lim;
	Datum		args[5];
	RetrievalScan scan;
	int			i;

	if (n == 0)
		return;
	if (plan_affinity == NULL)
	{
		Oid			argtypes[5] = {TEXTARRAYOID, INT2ARRAYOID, INT4ARRAYOID, FLOAT8OID, INT8OID};

		plan_affinity = CatalogKeepPlan("SELECT " RETRIEVAL_SELECT " FROM ROWS FROM (pg_catalog.unnest($1),"
										" pg_catalog.unnest($2), pg_catalog.unnest($3)) AS s(ind, band, lim)"
										" CROSS JOIN LATERAL (SELECT * FROM icpml.account_candidates AS c"
										" WHERE c.industry OPERATOR(pg_catalog.=) s.ind"
										" AND c.size_band OPERATOR(pg_catalog.=) s.band"
										/* an index condition, so the icp slice's rows are skipped in the index */
										" AND c.probability OPERATOR(pg_catalog.<=) $4 AND"
										RETRIEVAL_BELOW("$4", "$5")
										" ORDER BY c.probability DESC, c.account_id LIMIT s.lim) AS c"
										RETRIEVAL_FEEDBACK,
										5, argtypes, CURSOR_OPT_GENERIC_PLAN);
	}
	ind = palloc(sizeof(Datum) * n);
	band = palloc(sizeof(Datum) * n);
	lim = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
	{
		ind[i] = CStringGetTextDatum(call->industries[seg[i].industry].name);
		band[i] = Int16GetDatum((int16) seg[i].band);
		lim[i] = Int32GetDatum(seg[i].quota);
	}
	args[0] = PointerGetDatum(construct_array(ind, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[1] = PointerGetDatum(construct_array(band, n, INT2OID, 2, true, TYPALIGN_SHORT));
	args[2] = PointerGetDatum(construct_array(lim, n, INT4OID, 4, true, TYPALIGN_INT));
	args[3] = Float8GetDatum(p);
	args[4] = Int64GetDatum(id);
	(void) RetrievalScanSource(call, plan_affinity, args, SOURCE_AFFINITY, &scan);
}

/* The fresh source: the newest within fresh_window, below the icp slice. */
static void
RetrievalFresh(RecommendCall *call, int quota, double p, int64 id)
{
	Datum		args[4];
	RetrievalScan scan;

	if (quota <= 0)
		return;
	if (plan_fresh == NULL)
	{
		Oid			argtypes[4] = {INT4OID, TIMESTAMPTZOID, FLOAT8OID, INT8OID};

		plan_fresh = CatalogKeepPlan("SELECT " RETRIEVAL_SELECT " FROM (SELECT * FROM icpml.account_candidates AS c"
									 " WHERE c.fresh_at OPERATOR(pg_catalog.>=) $2 AND" RETRIEVAL_BELOW("$3", "$4")
									 " ORDER BY c.fresh_at DESC, c.account_id LIMIT $1) AS c" RETRIEVAL_FEEDBACK,
									 4, argtypes, CURSOR_OPT_GENERIC_PLAN);
	}
	args[0] = Int32GetDatum(quota);
	args[1] = TimestampTzGetDatum(call->now - (call->cfg->fresh_window.time +
											   (call->cfg->fresh_window.day +
												(int64) call->cfg->fresh_window.month * DAYS_PER_MONTH) *
											   USECS_PER_DAY));
	args[2] = Float8GetDatum(p);
	args[3] = Int64GetDatum(id);
	(void) RetrievalScanSource(call, plan_fresh, args, SOURCE_FRESH, &scan);
}

/* The explore source: a run of the explore_key order from a random start. */
static void
RetrievalExplore(RecommendCall *call, int quota, double p, int64 id)
{
	Datum		args[4];
	RetrievalScan scan;
	int			got;

	if (quota <= 0)
		return;
	if (plan_explore == NULL)
	{
		Oid			argtypes[4] = {INT4OID, INT4OID, FLOAT8OID, INT8OID};

		plan_explore = CatalogKeepPlan("SELECT " RETRIEVAL_SELECT " FROM (SELECT * FROM icpml.account_candidates AS c"
									   " WHERE c.explore_key OPERATOR(pg_catalog.>=) $2 AND" RETRIEVAL_BELOW("$3", "$4")
									   " ORDER BY c.explore_key, c.account_id LIMIT $1) AS c" RETRIEVAL_FEEDBACK,
									   4, argtypes, CURSOR_OPT_GENERIC_PLAN);
	}
	args[0] = Int32GetDatum(quota);
	args[1] = Int32GetDatum((int32) (uint32) pg_prng_uint32(&call->retrieval_rng));
	args[2] = Float8GetDatum(p);
	args[3] = Int64GetDatum(id);
	got = RetrievalScanSource(call, plan_explore, args, SOURCE_EXPLORE, &scan);
	if (got < quota)
	{
		/* wrap around to the start of the order */
		args[0] = Int32GetDatum(quota - got);
		args[1] = Int32GetDatum(PG_INT32_MIN);
		(void) RetrievalScanSource(call, plan_explore, args, SOURCE_EXPLORE, &scan);
	}
}

/* One row of the visibility check: the caller can read this account. */
static void
RetrievalVisibleRow(TupleTableSlot *slot, void *arg)
{
	RecommendCall *call = (RecommendCall *) arg;
	RecommendAccount *e;
	int64		id;

	if (slot->tts_isnull[0])
		return;
	id = DatumGetInt64(slot->tts_values[0]);
	e = hash_search(call->accounts, &id, HASH_FIND, NULL);
	if (e != NULL && e->row >= 0)
		call->rows[e->row].visible = true;
}

/* Relcache callback: the view behind the visibility check changed. */
static void
RetrievalVisibilityInvalidate(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == visibility_view)
		visibility_valid = false;
}

/*
 * The table a view's rows stand for, when the view shows exactly the rows
 * of one table the caller can see: a security_invoker view whose FROM is
 * that table, alone or as the outer side of LEFT JOINs (which never drop
 * its rows), with no WHERE, grouping, DISTINCT, LIMIT, set operation or
 * set-returning function, and whose key column is a plain column of that
 * table.  Then "which keys can the caller see" is asked of the table, one
 * index probe per key, instead of computing the view's joins (the
 * reference view's latest research run is one more probe per account).
 * Returns the SQL of the check, or NULL.
 */
static char *
RetrievalVisibilityBase(Relation view, Oid *base)
{
	Query	   *q;
	AttrNumber	keyno;
	TargetEntry *tle;
	Var		   *var;
	Node	   *node;
	RangeTblEntry *rte;
	char		relkind;
	char	   *colname;

	if (view->rd_rel->relkind != RELKIND_VIEW || !RelationHasSecurityInvoker(view))
		return NULL;
	q = get_view_query(view);
	if (q->jointree == NULL || q->jointree->quals != NULL || list_length(q->jointree->fromlist) != 1 ||
		q->distinctClause != NIL || q->groupClause != NIL || q->groupingSets != NIL ||
		q->havingQual != NULL || q->hasAggs || q->hasWindowFuncs || q->hasTargetSRFs ||
		q->limitCount != NULL || q->limitOffset != NULL || q->setOperations != NULL ||
		q->rowMarks != NIL || q->hasSubLinks)
		return NULL;
	keyno = get_attnum(RelationGetRelid(view), icpml_feature_key);
	if (keyno <= 0 || keyno > list_length(q->targetList))
		return NULL;
	tle = list_nth_node(TargetEntry, q->targetList, keyno - 1);
	if (!IsA(tle->expr, Var))
		return NULL;
	var = (Var *) tle->expr;
	if (var->varlevelsup != 0 || var->varattno <= 0)
		return NULL;

	/* down the outer sides of LEFT JOINs to the table the key comes from */
	node = (Node *) linitial(q->jointree->fromlist);
	while (IsA(node, JoinExpr) && ((JoinExpr *) node)->jointype == JOIN_LEFT)
		node = ((JoinExpr *) node)->larg;
	if (!IsA(node, RangeTblRef) || ((RangeTblRef *) node)->rtindex != (int) var->varno)
		return NULL;
	rte = rt_fetch(var->varno, q->rtable);
	if (rte->rtekind != RTE_RELATION || rte->tablesample != NULL)
		return NULL;
	relkind = get_rel_relkind(rte->relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		return NULL;
	colname = get_attname(rte->relid, var->varattno, true);
	if (colname == NULL)
		return NULL;
	*base = rte->relid;
	return psprintf("SELECT b.%s::pg_catalog.int8 FROM %s%s.%s AS b WHERE b.%s OPERATOR(pg_catalog.=) ANY ($1)",
					quote_identifier(colname), rte->inh ? "" : "ONLY ",
					quote_identifier(get_namespace_name(get_rel_namespace(rte->relid))),
					quote_identifier(get_rel_name(rte->relid)), quote_identifier(colname));
}

/*
 * The plan of the visibility check ($1 int8[] -> the keys the caller can
 * see): over the table a view stands for when there is one
 * (RetrievalVisibilityBase), else over the feature relation itself.
 */
static SPIPlanPtr
RetrievalVisibilityPlan(void)
{
	SPIPlanPtr	reader = RelationReaderPlan(&visibility_reader, RELATION_MANY);
	char	   *setting = psprintf("%s|%s", icpml_feature_relation, icpml_feature_key);

	if (!visibility_valid || visibility_setting == NULL || strcmp(visibility_setting, setting) != 0)
	{
		Oid			relid;
		char	   *display;
		Relation	rel;
		char	   *sql;

		if (!visibility_callback)
		{
			CacheRegisterRelcacheCallback(RetrievalVisibilityInvalidate, (Datum) 0);
			visibility_callback = true;
		}
		if (visibility_base_plan != NULL)
		{
			SPI_freeplan(visibility_base_plan);
			visibility_base_plan = NULL;
		}
		relid = RelationResolveFeatures(icpml_feature_relation, &display);
		rel = relation_open(relid, AccessShareLock);
		visibility_rls_relid = InvalidOid;
		sql = RetrievalVisibilityBase(rel, &visibility_rls_relid);
		if (rel->rd_rel->relkind == RELKIND_RELATION || rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
			visibility_rls_relid = relid;	/* a table: its own policies decide */
		relation_close(rel, AccessShareLock);
		if (sql != NULL)
		{
			Oid			argtype = INT8ARRAYOID;

			visibility_base_plan = SpiKeepPlan(sql, 1, &argtype, 0);
		}
		visibility_view = relid;
		if (visibility_setting)
			pfree(visibility_setting);
		visibility_setting = MemoryContextStrdup(TopMemoryContext, setting);
		visibility_valid = true;
	}
	return visibility_base_plan != NULL ? visibility_base_plan : reader;
}

/*
 * As the caller: which of rows[first..] may the caller see?  When
 * row-level security can hide rows from the caller (or the view is too
 * complex to tell), every row is checked now, one index probe each.  When
 * it cannot (no policies on the table, or the caller bypasses them), all
 * that can make an account unreadable is its deletion since it was
 * scored: the rows count as visible and RetrievalVerifyChosen checks the
 * listed ones after ranking.
 */
static void
RetrievalCheckVisible(RecommendCall *call, int first)
{
	Datum	   *ids;
	Datum		arg;
	int			j,
				n = 0;
	SPIPlanPtr	plan;

	if (call->nrows == first)
		return;
	plan = RetrievalVisibilityPlan();
	if (!call->check_all && OidIsValid(visibility_rls_relid) &&
		check_enable_rls(visibility_rls_relid, InvalidOid, true) != RLS_ENABLED)
	{
		for (j = first; j < call->nrows; j++)
			call->rows[j].visible = true;
		call->visibility_deferred = true;
		return;
	}
	ids = palloc(sizeof(Datum) * (call->nrows - first));
	for (j = first; j < call->nrows; j++)
		if (!call->rows[j].visible)
			ids[n++] = Int64GetDatum(call->rows[j].account_id);
	if (n == 0)
		return;
	arg = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	(void) SpiScan(plan, &arg, true, RetrievalVisibleRow, call, "features");
}

/* One listed account that can still be read. */
static void
RetrievalChosenRow(TupleTableSlot *slot, void *arg)
{
	RecommendCall *call = (RecommendCall *) arg;
	RecommendAccount *e;
	int64		id;

	if (slot->tts_isnull[0])
		return;
	id = DatumGetInt64(slot->tts_values[0]);
	e = hash_search(call->accounts, &id, HASH_FIND, NULL);
	if (e != NULL && e->row >= 0)
		call->rows[e->row].verified = true;
}

/*
 * After ranking, when the visibility check was deferred: are the listed
 * accounts still in the feature relation?  Drops those that are not from
 * the candidates and returns how many (the caller ranks again), 0 when all
 * are there (the common case: one probe per listed account).
 */
int
RetrievalVerifyChosen(RecommendCall *call)
{
	Datum	   *ids;
	Datum		arg;
	int			j,
				n = 0,
				gone = 0,
				m = 0;

	if (!call->visibility_deferred || call->nchosen == 0)
		return 0;
	ids = palloc(sizeof(Datum) * call->nchosen);
	for (j = 0; j < call->nchosen; j++)
	{
		RecommendRow *r = &call->rows[call->cand[call->chosen[j]]];

		if (!r->verified)
			ids[n++] = Int64GetDatum(r->account_id);
	}
	if (n == 0)
		return 0;
	arg = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	(void) SpiScan(RetrievalVisibilityPlan(), &arg, true, RetrievalChosenRow, call, "features");
	for (j = 0; j < call->nchosen; j++)
	{
		RecommendRow *r = &call->rows[call->cand[call->chosen[j]]];

		if (!r->verified)
		{
			r->visible = false;
			gone++;
		}
	}
	if (gone == 0)
		return 0;
	for (j = 0; j < call->ncand; j++)
		if (call->rows[call->cand[j]].visible)
			call->cand[m++] = call->cand[j];
	call->ncand = m;
	return gone;
}

/*
 * After ranking and logging, when the rows came from account_candidates:
 * read the listed accounts' feature rows again, as the caller (one `= ANY`
 * of the k ids), so that their reasons show the signals the caller can
 * read, not those the scoring role materialised.  A column the caller
 * cannot read (a joined table's row-level security) comes back NULL and the
 * reason leaves it out; a row the caller cannot read leaves all signals
 * unknown.  The ranking and the logged context are not changed.
 */
void
RetrievalReadListed(RecommendCall *call)
{
	Datum	   *ids;
	int			j;

	if (!call->materialised || call->nchosen == 0)
		return;
	ids = palloc(sizeof(Datum) * call->nchosen);
	for (j = 0; j < call->nchosen; j++)
	{
		RecommendRow *r = &call->rows[call->cand[call->chosen[j]]];
		RecommendAccount *e = hash_search(call->accounts, &r->account_id, HASH_FIND, NULL);

		ids[j] = Int64GetDatum(r->account_id);
		e->seen = false;
		r->visible = false;
		r->features = false;
		r->industry = NULL;
		r->ind = -1;
		r->industry_slot = -1;
		r->eng_roles = r->open_roles = -1;
		r->hiring = r->blog = false;
		r->size_band = -1;
		r->funding = r->research = 0.0;
		r->tech_slots = 0;
		r->tech_known = false;
	}
	RetrievalReadFeatures(call, ids, call->nchosen);
	for (j = 0; j < call->nchosen; j++)
		call->rows[call->cand[call->chosen[j]]].visible = true;
}

/* Exclusions of rows[first..]: from the profile, or the interactions read live. */
static void
RetrievalMarkUser(RecommendCall *call, int first)
{
	if (call->profile != NULL)
		ProfileMarkRows(call, first);
	else
		RetrievalReadOwn(call, first);
}

/* Admit the surviving rows[first..] as candidates (at most M in all). */
static void
RetrievalAdmit(RecommendCall *call, int first)
{
	int			j;

	for (j = first; j < call->nrows && call->ncand < call->M; j++)
	{
		RecommendRow *r = &call->rows[j];

		if (!r->visible || r->worked || r->recent || (r->dismissed && call->cfg->exclude_dismissed))
			continue;
		call->cand[call->ncand++] = j;
	}
}

/* Is retrieval done after scanning `offset` rows of the icp order? */
static bool
RetrievalEnough(RecommendCall *call, int64 offset, int nfetched, int page)
{
	if (call->ncand >= Max(call->k, call->M / 2) || nfetched < page)
		return true;
	if (offset >= 10 * (int64) call->M && call->ncand >= call->k)
		return true;
	/* a caller who may see almost nothing must not scan the whole table */
	return offset >= 20 * (int64) call->M;
}

/* ---------------------------------------------------------------------
 * Fallbacks: account_scores with live features; the rules
 * --------------------------------------------------------------------- */

/* One account_scores row of a fallback page. */
static void
RetrievalScoresRow(TupleTableSlot *slot, void *arg)
{
	RetrievalScan *scan = (RetrievalScan *) arg;
	RecommendCall *call = scan->call;
	int64		id = DatumGetInt64(slot->tts_values[0]);
	RecommendRow *r;

	scan->last_id = id;
	r = RetrievalNewRow(call, id, SOURCE_ICP);
	if (r == NULL)
		return;
	scan->admitted++;
	r->probability = slot->tts_isnull[1] ? 0.0 : DatumGetFloat8(slot->tts_values[1]);
	if (isnan(r->probability))
		r->probability = 0.0;
	r->icp_score = IcpmlScoreFromProbability(r->probability);
	if (!slot->tts_isnull[2])
		r->icp_score = DatumGetInt32(slot->tts_values[2]);
	if (!slot->tts_isnull[3])
		r->priority = TextDatumGetCString(slot->tts_values[3]);
	if (!slot->tts_isnull[4] && !slot->tts_isnull[5] && DatumGetFloat8(slot->tts_values[4]) >= 0.0)
	{
		r->fb_examined = DatumGetFloat8(slot->tts_values[4]);
		r->fb_reward = DatumGetFloat8(slot->tts_values[5]);
	}
}

/*
 * The top of account_scores (page at offset) with features read live as
 * the caller (which is also the visibility check).  Returns rows fetched.
 */
static int
RetrievalScoresPage(RecommendCall *call, int page, int64 offset)
{
	Datum		args[2];
	Datum	   *ids;
	RetrievalScan scan;
	int			first = call->nrows,
				n,
				j;

	if (plan_scores == NULL)
	{
		Oid			argtypes[2] = {INT4OID, INT8OID};

		plan_scores = CatalogKeepPlan("SELECT s.account_id, s.probability, s.score, s.priority, f.examined, f.reward"
									  " FROM (SELECT s.account_id, s.probability, s.score, s.priority"
									  " FROM icpml.account_scores AS s"
									  " ORDER BY s.probability DESC, s.account_id LIMIT $1 OFFSET $2) AS s"
									  " LEFT JOIN icpml.account_feedback AS f ON f.account_id OPERATOR(pg_catalog.=) s.account_id"
									  " ORDER BY s.probability DESC, s.account_id",
									  2, argtypes, CURSOR_OPT_CUSTOM_PLAN);
	}
	args[0] = Int32GetDatum(page);
	args[1] = Int64GetDatum(offset);
	scan.call = call;
	scan.admitted = 0;
	n = (int) RecommendOwnerScan(plan_scores, args, true, RetrievalScoresRow, &scan,
								 "icpml.account_scores");
	ids = palloc(sizeof(Datum) * Max(call->nrows - first, 1));
	for (j = first; j < call->nrows; j++)
		ids[j - first] = Int64GetDatum(call->rows[j].account_id);
	RetrievalReadFeatures(call, ids, call->nrows - first);
	return n;
}

/* A row read by the cold start, before ranking by the rules. */
typedef struct RetrievalColdScan
{
	RecommendCall *call;
	int64	   *ids;
	double	   *prob;
	int			n;
} RetrievalColdScan;

static void
RetrievalColdRow(TupleTableSlot *slot, void *arg)
{
	RetrievalColdScan *cold = (RetrievalColdScan *) arg;
	Datum		rv[RULE_NCOLUMNS];
	bool		rn[RULE_NCOLUMNS];
	int			i,
				j;

	if (slot->tts_isnull[0])
		return;
	/* RulesColumns in their order, by name, from the cold reader's row */
	for (i = 0; i < RULE_NCOLUMNS; i++)
	{
		rn[i] = true;
		rv[i] = (Datum) 0;
		for (j = 0; j < (int) lengthof(ColdColumns); j++)
			if (strcmp(RulesColumns[i].name, ColdColumns[j].name) == 0)
			{
				rn[i] = slot->tts_isnull[j + 1];
				rv[i] = slot->tts_values[j + 1];
			}
	}
	cold->ids[cold->n] = DatumGetInt64(slot->tts_values[0]);
	cold->prob[cold->n] = RulesProbability(rv, rn, NULL);
	cold->n++;
}

static int
RetrievalCompareCold(const void *a, const void *b, void *arg)
{
	const RetrievalColdScan *cold = (const RetrievalColdScan *) arg;
	int			x = *(const int *) a,
				y = *(const int *) b;

	if (cold->prob[x] != cold->prob[y])
		return cold->prob[x] > cold->prob[y] ? -1 : 1;
	return cold->ids[x] < cold->ids[y] ? -1 : (cold->ids[x] > cold->ids[y] ? 1 : 0);
}

/*
 * Cold start (nothing scored yet): the first RETRIEVAL_COLD_FACTOR x M
 * rows of the feature relation by key, scored by the rules as the caller;
 * the top M become 'icp' rows, their features read live.
 */
static void
RetrievalCold(RecommendCall *call)
{
	int			limit = RETRIEVAL_COLD_FACTOR * call->M;
	RetrievalColdScan cold;
	SPIPlanPtr	plan;
	char	   *sql;
	int		   *order;
	Datum	   *ids;
	int			i,
				m,
				first = call->nrows;
	Oid			argtype = INT4OID;
	Datum		arg = Int32GetDatum(limit);

	(void) RulesScaling();
	(void) RelationReaderPlan(&cold_reader, RELATION_ALL);	/* resolves and checks the relation */
	/* the reader's select list (NULL for optional columns it lacks), ordered and limited */
	{
		StringInfoData buf;
		int			c;

		initStringInfo(&buf);
		appendStringInfo(&buf, "SELECT * FROM (SELECT f.%s::pg_catalog.int8 AS k",
						 quote_identifier(icpml_feature_key));
		for (c = 0; c < (int) lengthof(ColdColumns); c++)
		{
			if (cold_reader.missing[c])
				appendStringInfo(&buf, ", NULL::%s", format_type_be_qualified(ColdColumns[c].type));
			else
				appendStringInfo(&buf, ", f.%s::%s", quote_identifier(ColdColumns[c].name),
								 format_type_be_qualified(ColdColumns[c].type));
		}
		appendStringInfo(&buf, " FROM %s AS f) AS f ORDER BY f.k LIMIT $1", cold_reader.relation_display);
		sql = buf.data;
	}
	plan = SPI_prepare(sql, 1, &argtype);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	cold.call = call;
	cold.ids = palloc(sizeof(int64) * limit);
	cold.prob = palloc(sizeof(double) * limit);
	cold.n = 0;
	(void) SpiScan(plan, &arg, true, RetrievalColdRow, &cold, "features");
	SPI_freeplan(plan);

	order = palloc(sizeof(int) * Max(cold.n, 1));
	for (i = 0; i < cold.n; i++)
		order[i] = i;
	qsort_arg(order, cold.n, sizeof(int), RetrievalCompareCold, &cold);
	m = Min(cold.n, call->M);
	for (i = 0; i < m; i++)
	{
		RecommendRow *r = RetrievalNewRow(call, cold.ids[order[i]], SOURCE_ICP);

		if (r == NULL)
			continue;
		r->probability = cold.prob[order[i]];
		r->icp_score = IcpmlScoreFromProbability(r->probability);
	}
	ids = palloc(sizeof(Datum) * Max(call->nrows - first, 1));
	for (i = first; i < call->nrows; i++)
		ids[i - first] = Int64GetDatum(call->rows[i].account_id);
	RetrievalReadFeatures(call, ids, call->nrows - first);
}

/* ---------------------------------------------------------------------
 * The user's history, when read live: its accounts' attributes
 * --------------------------------------------------------------------- */

static void
RetrievalHistAttrRow(TupleTableSlot *slot, void *arg)
{
	RecommendCall *call = (RecommendCall *) arg;
	int64		id = DatumGetInt64(slot->tts_values[0]);
	RecommendAccount *e = RecommendEntry(call, id);

	if (e->seen)
		return;
	e->seen = true;
	e->industry = -1;
	if (!slot->tts_isnull[1])
	{
		text	   *t = DatumGetTextPP(slot->tts_values[1]);

		e->industry = RecommendIndustryIndex(call, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	}
	e->size_band = slot->tts_isnull[2] ? -1 : DatumGetInt16(slot->tts_values[2]);
	e->tech_known = !slot->tts_isnull[3];
	e->tech_slots = 0;
	if (e->tech_known)
	{
		MemoryContext old = MemoryContextSwitchTo(call->rowcxt);

		e->tech_slots = ContextTechnologySlots(call->cfg, slot->tts_values[3]);
		MemoryContextSwitchTo(old);
		MemoryContextReset(call->rowcxt);
	}
}

/*
 * Attributes of the accounts of a history read live: from
 * account_candidates (as the owner), else from the feature relation (as
 * the caller).  Fills the history items.
 */
static void
RetrievalHistoryAttributes(RecommendCall *call)
{
	Datum	   *ids;
	int			j,
				n = 0;

	if (call->nhist == 0 || call->profile != NULL)
		return;					/* none, or the profile's items carry them */
	ids = palloc(sizeof(Datum) * call->nhist);
	for (j = 0; j < call->nhist; j++)
	{
		RecommendAccount *e = RecommendEntry(call, call->hist[j].account_id);

		if (!e->seen && e->size_band != -2)
		{
			e->size_band = -2;	/* asked for */
			ids[n++] = Int64GetDatum(call->hist[j].account_id);
		}
	}
	if (n > 0)
	{
		Datum		arg = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));

		if (call->materialised)
		{
			if (plan_hist_attrs == NULL)
			{
				Oid			argtype = INT8ARRAYOID;

				plan_hist_attrs = CatalogKeepPlan("SELECT c.account_id, c.industry, c.size_band, c.tech_stack"
												  " FROM icpml.account_candidates AS c"
												  " WHERE c.account_id OPERATOR(pg_catalog.=) ANY ($1)",
												  1, &argtype, 0);
			}
			(void) RecommendOwnerScan(plan_hist_attrs, &arg, true, RetrievalHistAttrRow, call,
									  "icpml.account_candidates");
		}
		else
			RetrievalReadFeatures(call, ids, n);
	}
	for (j = 0; j < call->nhist; j++)
	{
		RecommendHistItem *h = &call->hist[j];
		RecommendAccount *e = hash_search(call->accounts, &h->account_id, HASH_FIND, NULL);

		h->known = e != NULL && e->seen;
		if (!h->known)
			continue;
		h->industry = e->industry;
		h->size_band = e->size_band;
		h->tech_slots = e->tech_slots;
		h->tech_known = e->tech_known;
	}
}

/* ---------------------------------------------------------------------
 * The user read live (no usable profile): history, features, interactions
 * --------------------------------------------------------------------- */

/* Plans over the interactions relation, rebuilt when the GUC changes. */
static char *interactions_setting = NULL;
static SPIPlanPtr plan_history = NULL;
static SPIPlanPtr plan_own = NULL;


/* (Re)build the plans over icpml.interactions_relation when the GUC changed. */
static void
RetrievalPreparePlans(void)
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
RetrievalLiveAgeDays(RecommendCall *call, Datum ts)
{
	return (double) (call->now - DatumGetTimestampTz(ts)) / (double) USECS_PER_DAY;
}

/* One row of the history: account, interaction type, when. */
static void
RetrievalHistoryRow(TupleTableSlot *slot, void *arg)
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
	h->age_days = slot->tts_isnull[2] ? 1e9 : RetrievalLiveAgeDays(call, slot->tts_values[2]);
	h->known = false;			/* attributes: retrieval.c */
	h->industry = -1;
	h->size_band = -1;
	h->tech_slots = 0;
	h->tech_known = false;
	if (h->age_days <= 30.0)
		call->n_30d++;
}

/* Phase 1: the user's recent interactions (as the caller). */
static void
RetrievalLoadHistory(RecommendCall *call)
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
	(void) SpiScan(plan_history, args, false, RetrievalHistoryRow, call, "the interaction history");
}

/*
 * One feature row: fills the history entry of the account and, for a
 * scanned row, the row (first sighting only).
 */
static void
RetrievalFeatureRow(TupleTableSlot *slot, void *arg)
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
		r->features = true;
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
			r->research = ContextRecencyWeight(Max(0.0, RetrievalLiveAgeDays(call, v[8])));
		r->industry_slot = ind >= 0 ? call->industries[ind].slot :
			industry != NULL ? ContextIndustrySlot(call->cfg, industry) : -1;
		r->tech_known = !isnull[9];
		r->tech_slots = tech_slots;
	}
}

/* Read the feature rows (as the caller) of ids[0..n-1]. */
static void
RetrievalReadFeatures(RecommendCall *call, Datum *ids, int n)
{
	Datum		arg;

	if (n == 0)
		return;
	arg = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	(void) SpiScan(RelationReaderPlan(CandidatesReader(), RELATION_MANY), &arg, false,
				   RetrievalFeatureRow, call, "features");
}

/* What ReadOwn's rows refer to. */
typedef struct RetrievalOwnScan
{
	RecommendCall *call;
	int			first;			/* rows before it were read already */
} RetrievalOwnScan;

/* One of the user's interactions with a scanned row. */
static void
RetrievalOwnRow(TupleTableSlot *slot, void *arg)
{
	RetrievalOwnScan *scan = (RetrievalOwnScan *) arg;
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
	{
		double		age = slot->tts_isnull[2] ? 1e9 : Max(0.0, RetrievalLiveAgeDays(call, slot->tts_values[2]));

		if (age < call->exclude_recent_days)
			r->recent = true;	/* in the user's pipeline: not news */
		if (ti >= 0)
		{
			r->own[ti] += ContextRecencyWeight(age);
			if (ti > r->own_best)
				r->own_best = ti;
		}
	}
	pfree(t);
}

/* The user's interactions with the rows first..nrows-1 (as the caller). */
static void
RetrievalReadOwn(RecommendCall *call, int first)
{
	Datum	   *ids;
	Datum		args[2];
	RetrievalOwnScan scan = {call, first};
	int			j;

	if (call->nrows == first)
		return;
	ids = palloc(sizeof(Datum) * (call->nrows - first));
	for (j = first; j < call->nrows; j++)
		ids[j - first] = Int64GetDatum(call->rows[j].account_id);
	args[0] = UUIDPGetDatum(call->user);
	args[1] = PointerGetDatum(construct_array(ids, call->nrows - first, INT8OID, 8,
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	(void) SpiScan(plan_own, args, false, RetrievalOwnRow, &scan, "the user's interactions");
}


/* ---------------------------------------------------------------------
 * The stage
 * --------------------------------------------------------------------- */

/* Set up the rows, the hash and the candidate list of a call. */
static void
RetrievalBegin(RecommendCall *call)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(RecommendAccount);
	ctl.hcxt = CurrentMemoryContext;
	call->accounts = hash_create("icpml recommend accounts", 2 * call->M + call->nhist + 16,
								 &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	/* rows: a buffer kept for the backend's life (see ContextScratch) */
	if (retrieval_rows == NULL || retrieval_rows_cap < call->M + 16)
	{
		if (retrieval_rows != NULL)
			pfree(retrieval_rows);
		retrieval_rows_cap = Max(call->M + 16, 1040);
		retrieval_rows = MemoryContextAlloc(TopMemoryContext, sizeof(RecommendRow) * retrieval_rows_cap);
	}
	call->rows = retrieval_rows;
	call->rows_cap = retrieval_rows_cap;
	call->cand = palloc(sizeof(int) * call->M);
	call->ncand = 0;
	call->nrows = 0;
	memset(call->source_rows, 0, sizeof(call->source_rows));
}

/* Retrieve the candidates of a call (see the file comment). */
void
RetrievalRun(RecommendCall *call)
{
	const BanditSettings *cfg = call->cfg;
	int			q_aff = (int) floor(call->M * cfg->affinity_share);
	int			q_fresh = (int) floor(call->M * cfg->fresh_share);
	int			q_explore = (int) floor(call->M * cfg->explore_share);
	int			q_icp;
	int			page,
				nfetched;
	int64		offset = 0;
	RetrievalScan scan;

	/* the user: the compact profile, or the history read live */
	if (!ProfileLoad(call))
	{
		RetrievalPreparePlans();
		RetrievalLoadHistory(call);
	}
	call->exclude_recent_days = RetrievalIntervalDays(&cfg->exclude_recent);
	RetrievalBegin(call);
	if (call->nhist == 0)
		q_aff = 0;				/* nothing to be similar to: icp takes it */
	q_icp = Max(call->M - q_aff - q_fresh - q_explore, 1);

	/* the first page of the icp source tells which path serves (0.3.0 SQL: none) */
	nfetched = OidIsValid(CatalogRelidIfExists("account_candidates")) ?
		RetrievalIcpPage(call, q_icp, 0, &scan) : 0;
	call->materialised = nfetched > 0;
	if (call->model_version > 0 && !call->materialised)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("model version %d of experiment \"%s\" has no materialised scores",
						call->model_version, call->cfg->experiment),
				 errdetail("Its variant serves the candidates and scores of that version, read from icpml.version_scores with the signals of icpml.account_candidates."),
				 errhint("Run SELECT icpml.score_all(version => %d) (and, right after an upgrade, SELECT icpml.refresh_candidates()), or stop the experiment.",
						 call->model_version)));
	if (!call->materialised)
	{
		/* not materialised yet: account_scores with live features, or the rules */
		page = call->M;
		nfetched = RetrievalScoresPage(call, page, 0);
		if (nfetched == 0)
		{
			RetrievalCold(call);
			RetrievalHistoryAttributes(call);
			RetrievalMarkUser(call, 0);
			RetrievalAdmit(call, 0);
			return;
		}
		RetrievalHistoryAttributes(call);
		RetrievalMarkUser(call, 0);
		RetrievalAdmit(call, 0);
		offset = nfetched;
		while (!RetrievalEnough(call, offset, nfetched, page))
		{
			int			first = call->nrows;

			CHECK_FOR_INTERRUPTS();
			page = Min(page * 2, RETRIEVAL_MAX_PAGE);
			nfetched = RetrievalScoresPage(call, page, offset);
			offset += nfetched;
			RetrievalMarkUser(call, first);
			RetrievalAdmit(call, first);
		}
		return;
	}

	/* the other sources, below the icp slice */
	offset = nfetched;
	RetrievalHistoryAttributes(call);
	if (nfetched == q_icp)
	{
		/* a model version's icp slice is in its own order: no bound */
		double		p = call->model_version > 0 ? get_float8_infinity() : scan.last_probability;
		int64		id = scan.last_id;

		RetrievalAffinity(call, q_aff, p, id);
		RetrievalFresh(call, q_fresh, p, id);
		RetrievalExplore(call, q_explore, p, id);
	}
	RetrievalCheckVisible(call, 0);
	if (call->model_version > 0)
		RetrievalVersionScores(call, 0);
	RetrievalMarkUser(call, 0);
	RetrievalAdmit(call, 0);

	/* too few survived: page further down the icp order */
	page = q_icp;
	while (!RetrievalEnough(call, offset, nfetched, page))
	{
		int			first = call->nrows;

		CHECK_FOR_INTERRUPTS();
		page = Min(Max(page, call->M) * 2, RETRIEVAL_MAX_PAGE);
		nfetched = RetrievalIcpPage(call, page, offset, &scan);
		offset += nfetched;
		RetrievalCheckVisible(call, first);
		RetrievalMarkUser(call, first);
		RetrievalAdmit(call, first);
	}
	RetrievalFeedback(call);
}
