/*
 * recommend.c — recommend_accounts(user_id, k, policy, candidates, seed)
 * and retrieve_candidates(user_id, candidates, seed): the entry points,
 * the caller check, the user's history, the reason and the log.
 *
 * Phases of one call (latency does not grow with the account table):
 *
 *  1. the user  the user's compact profile (profile.c: one row, as the
 *               owner) while the profile triggers are installed; otherwise
 *               the most recent history_limit interactions, read as the
 *               caller from icpml.interactions_relation by its (user_id,
 *               created_at) index: the user-level context features and
 *               the affinity source's segments.
 *  2. retrieval M candidates from several sources, checked as the caller
 *               (retrieval.c: sources, quotas, row-level security,
 *               exclusions, fallbacks before any scoring).  Then the user's
 *               unrewarded impressions (fatigue), as the owner.
 *  3. context   one vector per candidate (context.c: its entries, names
 *               and scaling).
 *  4. ranking   the shared and the user's bandit state (as the owner), then
 *               the policy (policy.c).
 *  5. logging   one INSERT of the k served rows into icpml.recommendations
 *               (as the owner) with context, ranking score, propensity and
 *               the retrieval source; each row's reason (jsonb) names its
 *               largest contributions, with the listed rows' signals read
 *               again as the caller when they came from account_candidates
 *               (RetrievalReadListed: one `= ANY` read of the k ids).
 *
 * Experiments: while one runs (icpml.experiments) and the caller passes no
 * policy, the user's hashed variant (experiments.c) chooses the policy and,
 * with separate states, the shared state the call ranks with (the
 * variant's own); the experiment, the variant and the state the feedback
 * will train (state_scope) are logged with every row, and the experiment
 * and variant named in the reason.  A held-out user gets the holdout
 * policy, ranked with the global state, logged as variant 'holdout' with
 * state_scope 'none'.  A variant that names a model version other than the
 * deployed one gets its candidates and scores from that version's
 * materialised scores (retrieval.c), named in the reason (model_version).
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
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "bandit.h"
#include "candidates.h"
#include "catalog.h"
#include "context.h"
#include "experiments.h"
#include "feedback.h"
#include "icpml.h"
#include "ope.h"
#include "policy.h"
#include "profile.h"
#include "recommend.h"
#include "relation.h"
#include "rules.h"
#include "signals.h"
#include "spi_scan.h"

/* Columns of recommend_accounts' result (the last, score, is deprecated). */
#define RECOMMEND_NATTS 10
/* impressions read for the fatigue feature (most recent first) */
#define RECOMMEND_FATIGUE_ROWS 500

PG_FUNCTION_INFO_V1(recommend_accounts);
PG_FUNCTION_INFO_V1(retrieve_candidates);

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

/* The variant the call is logged with: NULL outside experiments. */
static const char *
RecommendVariantName(RecommendCall *call)
{
	if (call->variant == EXPERIMENT_HOLDOUT)
		return BANDIT_HOLDOUT;
	return call->variant >= 0 ? call->cfg->variants[call->variant] : NULL;
}

/*
 * The shared state the call ranks with: the variant's own while an
 * experiment with separate states assigns the user one, else the global
 * state (also for the holdout, which ranks with it but never trains it).
 */
static const char *
RecommendSharedScope(RecommendCall *call)
{
	return call->variant >= 0 ? call->cfg->variant_scopes[call->variant] : "global";
}

/*
 * The state_scope logged with the rows, the shared state their feedback
 * trains: NULL for the global one, "none" for the holdout.
 */
static const char *
RecommendTrainedScope(RecommendCall *call)
{
	if (call->variant == EXPERIMENT_HOLDOUT)
		return BANDIT_SCOPE_NONE;
	if (call->variant >= 0 && strcmp(call->cfg->variant_scopes[call->variant], "global") != 0)
		return call->cfg->variant_scopes[call->variant];
	return NULL;
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
	(void) BanditStateLoad(&call->global_state, RecommendSharedScope(call), false, false, call->cfg);
	BanditUserScope(call->user, scope);
	(void) BanditStateLoad(&call->user_state, scope, false, false, call->cfg);
	CatalogRestoreUser(&owner);
	call->state_version = call->global_state.version;
}

/*
 * The priority of listed rows that retrieval read without one (the cold
 * start, before any scoring): the default tiers of the score (8+ high, 5+
 * medium).
 */
static void
RecommendFillPriorities(RecommendCall *call)
{
	int			j;

	for (j = 0; j < call->nchosen; j++)
	{
		RecommendRow *r = &call->rows[call->cand[call->chosen[j]]];

		if (r->priority == NULL)
			r->priority = r->icp_score >= 8 ? "high" : r->icp_score >= 5 ? "medium" : "low";
	}
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

/*
 * The context entries a reason may show for row r, as the caller reads its
 * signals: x (what was ranked and logged) with the entries of the feature
 * columns taken from r, read again as the caller (RetrievalReadListed), and
 * the entries derived from them with the history (industry and size share,
 * technology affinity) left out when the caller reads other values than
 * the scorer did (s: the row as ranked).
 */
static void
RecommendCallerContext(RecommendCall *call, const RecommendRow *s, const RecommendRow *r,
					   double *xr)
{
	int			t;

	xr[CTX_ENG_ROLES] = (float4) SignalLogScale(r->eng_roles, call->scaling->roles_cap);
	xr[CTX_OPEN_ENG] = r->hiring ? 1.0 : 0.0;
	xr[CTX_OPEN_ROLES] = (float4) SignalLogScale(r->open_roles, call->scaling->open_roles_cap);
	xr[CTX_BLOG] = r->blog ? 1.0 : 0.0;
	xr[CTX_FUNDING] = (float4) r->funding;
	xr[CTX_RESEARCH] = (float4) r->research;
	for (t = 0; t < CTX_NSIZE_BANDS; t++)
		xr[CTX_SIZE_BAND + t] = r->size_band == t ? 1.0 : 0.0;
	for (t = 0; t < CTX_NINDUSTRY_SLOTS; t++)
		xr[CTX_INDUSTRY_SLOT + t] = r->industry_slot == t ? 1.0 : 0.0;
	for (t = 0; t < CTX_NTECH_SLOTS; t++)
		xr[CTX_TECH_SLOT + t] = (r->tech_slots & ((uint32) 1 << t)) ? 1.0 : 0.0;
	if (r->tech_known != s->tech_known || r->tech_slots != s->tech_slots)
		xr[CTX_TECH_AFFINITY] = 0.0;
	if (r->ind != s->ind)
		xr[CTX_INDUSTRY_SHARE] = xr[CTX_INDUSTRY_REWARD] = 0.0;
	if (r->size_band != s->size_band)
		xr[CTX_SIZE_SHARE] = 0.0;
}

/*
 * The reason jsonb of one listed candidate; scored: the row as ranked when
 * its signals were read again as the caller (NULL: they were read as the
 * caller to begin with).
 */
static Jsonb *
RecommendReason(RecommendCall *call, int c, const RecommendRow *scored, bool explored)
{
	RecommendRow *r = &call->rows[call->cand[c]];
	double		x[BANDIT_DIM];
	StringInfoData buf,
				summary;
	int			order[BANDIT_DIM];
	double		contrib[BANDIT_DIM];
	int			n = 0,
				i,
				ind;

	memcpy(x, call->X + c * BANDIT_DIM, sizeof(x));
	if (scored != NULL)
		RecommendCallerContext(call, scored, r, x);

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
	if (RecommendVariantName(call) != NULL)
	{
		appendStringInfoString(&buf, ",\"experiment\":");
		escape_json(&buf, call->cfg->experiment);
		appendStringInfoString(&buf, ",\"variant\":");
		escape_json(&buf, RecommendVariantName(call));
		if (call->model_version > 0)
			appendStringInfo(&buf, ",\"model_version\":%d", call->model_version);
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

/*
 * The log's INSERT for what the installed SQL has: experiments (0.3.0+),
 * the retrieval source and the trained state's scope (0.4.0+), as a bit
 * mask.
 */
#define LOG_EXPERIMENTS 1
#define LOG_SOURCE 2
#define LOG_SCOPE 4
static SPIPlanPtr plan_logs[8];

/* Does icpml.recommendations have this column (0.4.0 SQL)? */
static bool
RecommendLogHas(const char *column)
{
	Oid			relid = CatalogRelid("recommendations");

	return get_attnum(relid, column) != InvalidAttrNumber;
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
	Datum	   *src = palloc(sizeof(Datum) * kk);
	Datum		args[14];
	char		nulls[14];
	int			j,
				t,
				ret,
				which = (call->cfg->has_experiments ? LOG_EXPERIMENTS : 0) |
		(RecommendLogHas("source") ? LOG_SOURCE : 0) |
		(RecommendLogHas("state_scope") ? LOG_SCOPE : 0);
	const char *trained = RecommendTrainedScope(call);
	uint64		i;
	CatalogOwnerState owner;

	if (plan_logs[which] == NULL)
	{
		Oid			argtypes[14] = {UUIDOID, INT8ARRAYOID, INT4ARRAYOID, TEXTOID, FLOAT4ARRAYOID,
			INT4OID, FLOAT8ARRAYOID, FLOAT8ARRAYOID, FLOAT8ARRAYOID, INT8OID, TEXTOID, TEXTOID,
		TEXTARRAYOID, TEXTOID};
		const char *insert = "INSERT INTO icpml.recommendations AS r (user_id, account_id, rank,"
			" policy, context, score, expected_reward, propensity, state_version%s%s%s)"
			" SELECT $1, u.account_id, u.rank, $4,"
			" $5[(((u.rank OPERATOR(pg_catalog.-) 1) OPERATOR(pg_catalog.*) $6) OPERATOR(pg_catalog.+) 1)"
			" : (u.rank OPERATOR(pg_catalog.*) $6)], u.score, u.mu, u.p, $10%s%s%s"
			" FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($7),"
			" pg_catalog.unnest($8), pg_catalog.unnest($9), pg_catalog.unnest($13))"
			" AS u(account_id, rank, score, mu, p, source)"
			" ORDER BY u.rank RETURNING r.recommendation_id, r.rank";

		plan_logs[which] = CatalogKeepPlan(psprintf(insert,
													(which & LOG_EXPERIMENTS) ? ", experiment, variant" : "",
													(which & LOG_SOURCE) ? ", source" : "",
													(which & LOG_SCOPE) ? ", state_scope" : "",
													(which & LOG_EXPERIMENTS) ? ", $11, $12" : "",
													(which & LOG_SOURCE) ? ", u.source" : "",
													(which & LOG_SCOPE) ? ", $14" : ""),
										   14, argtypes, 0);
	}

	for (j = 0; j < kk; j++)
	{
		int			c = call->chosen[j];
		RecommendRow *r = &call->rows[call->cand[c]];

		acc[j] = Int64GetDatum(r->account_id);
		rank[j] = Int32GetDatum(j + 1);
		for (t = 0; t < BANDIT_DIM; t++)
			ctx[j * BANDIT_DIM + t] = Float4GetDatum((float4) call->X[c * BANDIT_DIM + t]);
		sc[j] = Float8GetDatum(call->score[c]);
		mu[j] = Float8GetDatum(call->mu[c]);
		pr[j] = Float8GetDatum(call->propensity[j]);
		src[j] = CStringGetTextDatum(RecommendSourceNames[r->source]);
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
	args[12] = PointerGetDatum(construct_array(src, kk, TEXTOID, -1, false, TYPALIGN_INT));
	memset(nulls, ' ', sizeof(nulls));
	if (RecommendVariantName(call) != NULL)
	{
		args[10] = CStringGetTextDatum(call->cfg->experiment);
		args[11] = CStringGetTextDatum(RecommendVariantName(call));
	}
	else
	{
		args[10] = args[11] = (Datum) 0;
		nulls[10] = nulls[11] = 'n';
	}
	if (trained != NULL)
		args[13] = CStringGetTextDatum(trained);
	else
	{
		args[13] = (Datum) 0;
		nulls[13] = 'n';
	}

	/* attribution by commit order: feedback for this user waits for this list */
	FeedbackLockServing(call->user);
	CatalogSwitchToOwner(&owner);
	ret = SPI_execute_plan(plan_logs[which], args, nulls, false, 0);
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
 * Start a call: check the arguments shared by recommend_accounts and
 * retrieve_candidates (user_id 0, then k, policy, candidates, seed at the
 * given positions, -1 when the function has none), allocate the call, check
 * the caller.  SPI is not connected yet.
 */
static RecommendCall *
RecommendBegin(FunctionCallInfo fcinfo, int k_arg, int policy_arg, int m_arg, int seed_arg)
{
	RecommendCall *call;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("user_id must not be NULL"),
				 errhint("Pass the id of the sales user to recommend accounts to.")));
	call = palloc0(sizeof(RecommendCall));
	call->user = PG_GETARG_UUID_P(0);
	call->k = 1;
	if (k_arg >= 0)
	{
		if (PG_ARGISNULL(k_arg))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("k must not be NULL"),
					 errhint("Pass how many accounts to list, 1 to %d.", RECOMMEND_MAX_K)));
		call->k = PG_GETARG_INT32(k_arg);
		if (call->k < 1 || call->k > RECOMMEND_MAX_K)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("k must be between 1 and %d, not %d", RECOMMEND_MAX_K, call->k),
					 errhint("Ask for at most %d accounts per call.", RECOMMEND_MAX_K)));
	}
	call->policy_given = policy_arg >= 0 && !PG_ARGISNULL(policy_arg);
	if (call->policy_given)
	{
		char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(policy_arg));

		if (!BanditPolicyFromName(name, &call->policy))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown policy \"%s\"", name),
					 errhint("Use linucb, thompson, greedy, epsilon_greedy, icp or random, or NULL for the configured default.")));
	}
	if (!PG_ARGISNULL(m_arg))
	{
		call->M = PG_GETARG_INT32(m_arg);
		if (call->M < call->k || call->M > RECOMMEND_MAX_CANDIDATES)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("candidates must be between k (%d) and %d, not %d",
							call->k, RECOMMEND_MAX_CANDIDATES, call->M),
					 errhint("candidates is how many accounts are retrieved before ranking; the default is icpml.bandit_settings.candidates.")));
	}
	{
		uint64		seed = PG_ARGISNULL(seed_arg) ? pg_prng_uint64(&pg_global_prng_state) :
			(uint64) PG_GETARG_INT64(seed_arg);

		/* the policy's draws and retrieval's: separate streams of one seed */
		pg_prng_seed(&call->rng, seed);
		pg_prng_seed(&call->retrieval_rng, seed ^ UINT64CONST(0x5bd1e9955bd1e995));
	}

	RecommendCheckCaller(call->user);
	call->now = GetCurrentTransactionStartTimestamp();
	call->today = DatumGetDateADT(DirectFunctionCall1(timestamptz_date,
													  TimestampTzGetDatum(call->now)));
	return call;
}

/*
 * Phases 1 and 2 of a call, inside SPI: the settings, the policy (a
 * running experiment's for the user when none was passed), the user,
 * retrieval.
 */
static void
RecommendRetrieve(RecommendCall *call)
{
	call->rowcxt = AllocSetContextCreate(CurrentMemoryContext, "icpml recommend row",
										 ALLOCSET_SMALL_SIZES);
	call->cfg = BanditGetSettings();
	call->scaling = RulesScaling();
	call->variant = -1;
	if (!call->policy_given)
	{
		call->policy = call->cfg->default_policy;
		/* a running experiment chooses the policy by the user's variant */
		if (call->cfg->experiment != NULL)
		{
			call->variant = ExperimentAssign(call->cfg->experiment, call->user,
											 call->cfg->variant_weights, call->cfg->n_variants,
											 call->cfg->holdout);
			call->policy = call->variant == EXPERIMENT_HOLDOUT ? call->cfg->holdout_policy :
				call->cfg->variant_policies[call->variant];
			if (call->variant >= 0)
				call->model_version = call->cfg->variant_versions[call->variant];
		}
	}
	if (call->M == 0)
		call->M = Max(call->k, call->cfg->candidates);

	RetrievalRun(call);
}

/*
 * recommend_accounts(user_id uuid, k int, policy text, candidates int,
 * seed bigint) → table(rank, account_id, ranking_score, expected_reward,
 * exploration, icp_score, priority, reason, recommendation_id, score)
 * (score: the same as ranking_score, deprecated; absent with 0.3.0 SQL)
 */
Datum
recommend_accounts(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RecommendCall *call;
	int64		ids[RECOMMEND_MAX_K];
	RecommendRow *scored = NULL;
	int			j;

	call = RecommendBegin(fcinfo, 1, 2, 3, 4);
	/* with 0.3.0 SQL the result has no deprecated score: putvalues takes what the tuple descriptor has */
	InitMaterializedSRF(fcinfo, 0);

	SPI_connect();
	RecommendRetrieve(call);
	RecommendLoadFatigue(call);
	ContextBuild(call);
	RecommendLoadStates(call);
	PolicyRank(call);
	/* an account deleted since it was scored is dropped and the rest ranked again */
	while (RetrievalVerifyChosen(call) > 0)
	{
		ContextBuild(call);
		PolicyRank(call);
	}
	RecommendCheckFinite(call);

	if (call->nchosen > 0)
	{
		RecommendFillPriorities(call);
		RecommendLog(call, ids);
		OpeLogCandidates(call, ids);
		/* the reasons show the signals as the caller reads them (DESIGN rule 4) */
		if (call->materialised)
		{
			scored = palloc(sizeof(RecommendRow) * call->nchosen);
			for (j = 0; j < call->nchosen; j++)
				scored[j] = call->rows[call->cand[call->chosen[j]]];
			RetrievalReadListed(call);
		}
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
		values[7] = JsonbPGetDatum(RecommendReason(call, c, scored ? &scored[j] : NULL, call->explored[j]));
		values[8] = Int64GetDatum(ids[j]);
		values[9] = values[2];
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	SPI_finish();
	return (Datum) 0;
}

/*
 * retrieve_candidates(user_id uuid, candidates int, seed bigint) →
 * table(account_id, source, probability): what retrieval hands the policy
 * for this user (the same accounts recommend_accounts ranks with the same
 * seed), in retrieval order; nothing is ranked or logged.
 */
Datum
retrieve_candidates(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RecommendCall *call;
	int			j;

	call = RecommendBegin(fcinfo, -1, -1, 1, 2);
	call->check_all = true;		/* no ranking follows: check every candidate */
	InitMaterializedSRF(fcinfo, 0);

	SPI_connect();
	RecommendRetrieve(call);
	for (j = 0; j < call->ncand; j++)
	{
		RecommendRow *r = &call->rows[call->cand[j]];
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = Int64GetDatum(r->account_id);
		values[1] = CStringGetTextDatum(RecommendSourceNames[r->source]);
		values[2] = Float8GetDatum(r->probability);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}
