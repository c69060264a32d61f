/*
 * candidates.c — icpml.account_candidates: every scored account with its
 * probability, score and priority and the raw signals of the recommender's
 * context, materialised when the account is scored, so that retrieval
 * reads a candidate with its features through one index scan instead of
 * probing the feature relation account by account.
 *
 * Writers.  The scoring functions (score.c) call CandidatesStore after each
 * batch they write to icpml.account_scores, in the same transaction:
 *   1. the batch's rows of icpml.feature_relation, CandidatesColumns, are
 *      read as the caller (what the caller could score, it can read);
 *   2. the signatures stored for the batch are read as the extension owner;
 *      a row carries a 64-bit signature of its values, and a row whose
 *      signature is unchanged is not written at all (no row lock, no WAL: a
 *      nightly rescore of unchanged accounts costs the reads, not a write);
 *   3. one INSERT ... ON CONFLICT as the owner upserts the changed and new
 *      rows with the probability, score and priority just written (its
 *      WHERE on the signature still guards a row a concurrent
 *      refresh_candidates() wrote meanwhile).  first_scored_at and
 *      explore_key are set once, when the account first arrives.
 * CandidatesForget and CandidatesPrune follow the scoring functions'
 * deletions.  icpml.refresh_candidates() re-reads every scored account.
 *
 * Staleness: a row is as of its account's last scoring (score_all(), or
 * the incremental scoring of changed accounts); the time-relative context
 * entries (research and funding recency) are computed when serving from
 * the stored dates, so they do not age with the row.
 *
 * The recommender's columns are optional: one the feature relation lacks
 * reads as NULL (unknown in the context; a NOTICE names it).  When the
 * relation cannot be read at all (not set, no key column, a column of a
 * type that does not convert), storing is skipped: scoring never fails
 * because of the recommender, and recommend_accounts reports the problem.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "parser/parse_coerce.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/fmgroids.h"
#include "utils/date.h"
#include "utils/timestamp.h"

#include "icpml.h"
#include "catalog.h"
#include "candidates.h"
#include "relation.h"
#include "signals.h"
#include "spi_scan.h"

PG_FUNCTION_INFO_V1(refresh_candidates);

const RelationColumn CandidatesColumns[CANDIDATES_NCOLUMNS] = {
	{"industry", TEXTOID, true},
	{"engineering_role_count", FLOAT8OID, true},
	{"has_open_engineering_roles", BOOLOID, true},
	{"total_open_roles", FLOAT8OID, true},
	{"has_engineering_blog", BOOLOID, true},
	{"company_size", FLOAT8OID, true},
	{"funding_date", DATEOID, true},
	{"researched_at", TIMESTAMPTZOID, true},
	{"tech_stack", TEXTARRAYOID, true},
};

static RelationReader candidates_reader = {CandidatesColumns, CANDIDATES_NCOLUMNS,
"The recommender's context treats them as unknown for every account."};

/* Columns of the upsert, as parallel arrays ($1..$13). */
#define CANDIDATES_NARGS 13

static SPIPlanPtr plan_upsert = NULL;

/* The reader of CandidatesColumns over icpml.feature_relation. */
RelationReader *
CandidatesReader(void)
{
	return &candidates_reader;
}

/*
 * Can the feature relation be read with CandidatesColumns?  Checked
 * without raising an error (scoring must not fail because of the
 * recommender).
 */
static bool
CandidatesUsable(void)
{
	List	   *names;
	Oid			relid;
	int			i;

	if (icpml_feature_relation == NULL || icpml_feature_relation[0] == '\0' ||
		!RelationNameIsValid(icpml_feature_relation))
		return false;
	names = stringToQualifiedNameList(icpml_feature_relation);
	relid = RangeVarGetRelid(makeRangeVarFromNameList(names), NoLock, true);
	if (!OidIsValid(relid))
		return false;
	if (get_attnum(relid, icpml_feature_key) == InvalidAttrNumber)
		return false;
	/* the columns are optional (missing ones read as NULL); types must fit */
	for (i = 0; i < CANDIDATES_NCOLUMNS; i++)
	{
		AttrNumber	attnum = get_attnum(relid, CandidatesColumns[i].name);
		Oid			atttype,
					want = CandidatesColumns[i].type;

		if (attnum == InvalidAttrNumber)
			continue;
		atttype = get_atttype(relid, attnum);
		if (atttype != want && !can_coerce_type(1, &atttype, &want, COERCION_ASSIGNMENT))
			return false;
	}
	return true;
}

/* The feature values of one account, as read (pass-by-reference values copied). */
typedef struct CandidateFeatures
{
	bool		found;
	bool		isnull[CANDIDATES_NCOLUMNS + 1];
	Datum		values[CANDIDATES_NCOLUMNS + 1];
} CandidateFeatures;

/*
 * What a batch read refers to: the batch's ids, sorted, their rows and the
 * signatures stored for them.
 */
typedef struct CandidatesBatch
{
	int64	   *ids;			/* the batch, in input order */
	int		   *order;			/* positions sorted by id */
	int			n;
	CandidateFeatures *rows;	/* by input position */
	bool	   *stored;			/* by input position: a row is stored ... */
	int64	   *signature;		/* ... with this signature */
} CandidatesBatch;

static int
CandidatesCompareIds(const void *a, const void *b, void *arg)
{
	const int64 *ids = (const int64 *) arg;
	int64		x = ids[*(const int *) a],
				y = ids[*(const int *) b];

	return x < y ? -1 : (x > y ? 1 : 0);
}

/* Position of account id in the batch, or -1. */
static int
CandidatesFind(CandidatesBatch *b, int64 id)
{
	int			lo = 0,
				hi = b->n - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		int64		v = b->ids[b->order[mid]];

		if (v == id)
			return b->order[mid];
		if (v < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/* One feature row of the batch (the first row of a duplicate key counts). */
static void
CandidatesFeatureRow(TupleTableSlot *slot, void *arg)
{
	CandidatesBatch *b = (CandidatesBatch *) arg;
	CandidateFeatures *f;
	int			pos,
				i;

	if (slot->tts_isnull[0])
		return;
	pos = CandidatesFind(b, DatumGetInt64(slot->tts_values[0]));
	if (pos < 0 || b->rows[pos].found)
		return;
	f = &b->rows[pos];
	f->found = true;
	for (i = 1; i <= CANDIDATES_NCOLUMNS; i++)
	{
		Oid			type = CandidatesColumns[i - 1].type;

		f->isnull[i] = slot->tts_isnull[i];
		if (f->isnull[i])
			f->values[i] = (Datum) 0;
		else if (type == TEXTOID || type == TEXTARRAYOID)
			f->values[i] = PointerGetDatum(PG_DETOAST_DATUM_COPY(slot->tts_values[i]));
		else
			f->values[i] = slot->tts_values[i];
	}
}

/* One stored row of the batch: (account_id, signature). */
static void
CandidatesStoredRow(TupleTableSlot *slot, void *arg)
{
	CandidatesBatch *b = (CandidatesBatch *) arg;
	int			pos;

	if (slot->tts_isnull[0] || slot->tts_isnull[1])
		return;
	pos = CandidatesFind(b, DatumGetInt64(slot->tts_values[0]));
	if (pos < 0)
		return;
	b->stored[pos] = true;
	b->signature[pos] = DatumGetInt64(slot->tts_values[1]);
}

/*
 * Read the signatures stored for the batch (as the owner), so that only
 * the rows whose values changed are written: an upsert's ON CONFLICT would
 * lock (and WAL-log the lock of) every unchanged row before its WHERE
 * skipped it.
 */
static void
CandidatesReadStored(CandidatesBatch *b, Datum ids)
{
	static SPIPlanPtr plan = NULL;
	CatalogOwnerState owner;

	b->stored = palloc0(sizeof(bool) * b->n);
	b->signature = palloc(sizeof(int64) * b->n);
	if (plan == NULL)
	{
		Oid			argtype = INT8ARRAYOID;

		plan = CatalogKeepPlan("SELECT c.account_id, c.signature FROM icpml.account_candidates AS c"
							   " WHERE c.account_id OPERATOR(pg_catalog.=) ANY ($1)", 1, &argtype, 0);
	}
	CatalogSwitchToOwner(&owner);
	(void) SpiScan(plan, &ids, true, CandidatesStoredRow, b, "candidates");
	CatalogRestoreUser(&owner);
}

/* Feed a value into the signature. */
static inline uint64
CandidatesMix(uint64 h, const void *p, int len)
{
	return hash_bytes_extended((const unsigned char *) p, len, h);
}

/*
 * Store one batch (see candidates.h): read, then upsert the rows found in
 * the feature relation.
 */
void
CandidatesStore(Datum ids, Datum probabilities, Datum scores, Datum priorities)
{
	ArrayType  *aid = DatumGetArrayTypeP(ids);
	int			n = ArrayGetNItems(ARR_NDIM(aid), ARR_DIMS(aid));
	Datum	   *idv,
			   *probv,
			   *scorev,
			   *prv;
	bool	   *nl;
	int			nn;
	CandidatesBatch b;
	Datum		arg;
	Datum	   *out[CANDIDATES_NARGS];
	Datum	   *sig;
	Datum		args[CANDIDATES_NARGS + 1];
	int			m = 0,
				i,
				ret;
	CatalogOwnerState owner;

	if (n == 0 || !OidIsValid(CatalogRelidIfExists("account_candidates")) || !CandidatesUsable())
		return;

	deconstruct_array(aid, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &idv, &nl, &nn);
	deconstruct_array(DatumGetArrayTypeP(probabilities), FLOAT8OID, 8, FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &probv, &nl, &nn);
	if (nn != n)
		elog(ERROR, "CandidatesStore: arrays of different lengths (please report a bug)");
	deconstruct_array(DatumGetArrayTypeP(scores), INT4OID, 4, true, TYPALIGN_INT, &scorev, &nl, &nn);
	if (nn != n)
		elog(ERROR, "CandidatesStore: arrays of different lengths (please report a bug)");
	deconstruct_array(DatumGetArrayTypeP(priorities), TEXTOID, -1, false, TYPALIGN_INT, &prv, &nl, &nn);
	if (nn != n)
		elog(ERROR, "CandidatesStore: arrays of different lengths (please report a bug)");

	/* 1. the feature rows, as the caller */
	b.n = n;
	b.ids = palloc(sizeof(int64) * n);
	b.order = palloc(sizeof(int) * n);
	b.rows = palloc0(sizeof(CandidateFeatures) * n);
	for (i = 0; i < n; i++)
	{
		b.ids[i] = DatumGetInt64(idv[i]);
		b.order[i] = i;
	}
	qsort_arg(b.order, n, sizeof(int), CandidatesCompareIds, b.ids);
	arg = ids;
	(void) SpiScan(RelationReaderPlan(&candidates_reader, RELATION_MANY), &arg, true,
				   CandidatesFeatureRow, &b, "features");
	CandidatesReadStored(&b, ids);

	/* 2. the rows found, as parallel arrays, with their signatures */
	for (i = 0; i < CANDIDATES_NARGS; i++)
		out[i] = palloc(sizeof(Datum) * n);
	sig = palloc(sizeof(Datum) * n);
	{
		bool	   *nulls[CANDIDATES_NARGS];
		int			j;

		for (j = 0; j < CANDIDATES_NARGS; j++)
			nulls[j] = palloc0(sizeof(bool) * n);

		for (i = 0; i < n; i++)
		{
			CandidateFeatures *f = &b.rows[i];
			double		p = DatumGetFloat8(probv[i]);
			int32		sc = DatumGetInt32(scorev[i]);
			text	   *pr = DatumGetTextPP(prv[i]);
			uint64		h = 0x9e3779b97f4a7c15ULL;
			double		v;
			int			band;

			if (!f->found)
				continue;		/* not in the feature relation: not a candidate */
			h = CandidatesMix(h, &p, sizeof(p));
			h = CandidatesMix(h, &sc, sizeof(sc));
			h = CandidatesMix(h, VARDATA_ANY(pr), VARSIZE_ANY_EXHDR(pr));

			out[0][m] = idv[i];
			out[1][m] = probv[i];
			out[2][m] = scorev[i];
			out[3][m] = prv[i];
			/* industry */
			nulls[4][m] = f->isnull[CAND_COL_INDUSTRY];
			out[4][m] = f->values[CAND_COL_INDUSTRY];
			if (!nulls[4][m])
			{
				text	   *t = DatumGetTextPP(out[4][m]);

				h = CandidatesMix(h, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
			}
			h = CandidatesMix(h, &nulls[4][m], 1);
			/* size band */
			band = SignalSizeBand(f->isnull[CAND_COL_SIZE] ? 0 : DatumGetFloat8(f->values[CAND_COL_SIZE]),
								  f->isnull[CAND_COL_SIZE]);
			nulls[5][m] = band < 0;
			out[5][m] = Int16GetDatum((int16) band);
			h = CandidatesMix(h, &band, sizeof(band));
			/* engineering roles, hiring, open roles, blog */
			nulls[6][m] = !SignalCount(f->values[CAND_COL_ENG_ROLES], f->isnull[CAND_COL_ENG_ROLES], &v);
			out[6][m] = Float4GetDatum(nulls[6][m] ? 0.0f : (float4) v);
			v = nulls[6][m] ? -1.0 : v;
			h = CandidatesMix(h, &v, sizeof(v));
			nulls[7][m] = f->isnull[CAND_COL_HIRING];
			out[7][m] = f->values[CAND_COL_HIRING];
			{
				int			t = nulls[7][m] ? 2 : DatumGetBool(out[7][m]);

				h = CandidatesMix(h, &t, sizeof(t));
			}
			nulls[8][m] = !SignalCount(f->values[CAND_COL_OPEN_ROLES], f->isnull[CAND_COL_OPEN_ROLES], &v);
			out[8][m] = Float4GetDatum(nulls[8][m] ? 0.0f : (float4) v);
			v = nulls[8][m] ? -1.0 : v;
			h = CandidatesMix(h, &v, sizeof(v));
			nulls[9][m] = f->isnull[CAND_COL_BLOG];
			out[9][m] = f->values[CAND_COL_BLOG];
			{
				int			t = nulls[9][m] ? 2 : DatumGetBool(out[9][m]);

				h = CandidatesMix(h, &t, sizeof(t));
			}
			/* funding date, researched at */
			nulls[10][m] = f->isnull[CAND_COL_FUNDING_DATE];
			out[10][m] = f->values[CAND_COL_FUNDING_DATE];
			{
				int64		t = nulls[10][m] ? PG_INT64_MIN : (int64) DatumGetDateADT(out[10][m]);

				h = CandidatesMix(h, &t, sizeof(t));
			}
			nulls[11][m] = f->isnull[CAND_COL_RESEARCHED_AT];
			out[11][m] = f->values[CAND_COL_RESEARCHED_AT];
			{
				int64		t = nulls[11][m] ? PG_INT64_MIN : (int64) DatumGetTimestampTz(out[11][m]);

				h = CandidatesMix(h, &t, sizeof(t));
			}
			/* tech stack, as its text form ($12 text[] cast back per row) */
			nulls[12][m] = f->isnull[CAND_COL_TECH_STACK];
			if (!nulls[12][m])
			{
				char	   *lit = OidOutputFunctionCall(F_ARRAY_OUT, f->values[CAND_COL_TECH_STACK]);

				out[12][m] = CStringGetTextDatum(lit);
				h = CandidatesMix(h, lit, strlen(lit));
			}
			else
				out[12][m] = (Datum) 0;
			h = CandidatesMix(h, &nulls[12][m], 1);
			/* unchanged since stored: nothing to write (slot m is reused) */
			if (b.stored[i] && b.signature[i] == (int64) h)
				continue;
			sig[m] = Int64GetDatum((int64) h);
			m++;
		}
		if (m == 0)
			return;

		/* $1..$14: id, probability, score, priority, industry, band, eng, hiring, open, blog, funding, researched, tech, signature */
		args[0] = PointerGetDatum(construct_array(out[0], m, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[1] = PointerGetDatum(construct_array(out[1], m, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[2] = PointerGetDatum(construct_array(out[2], m, INT4OID, 4, true, TYPALIGN_INT));
		args[3] = PointerGetDatum(construct_array(out[3], m, TEXTOID, -1, false, TYPALIGN_INT));
		{
			int			dims[1] = {m};
			int			lbs[1] = {1};

			args[4] = PointerGetDatum(construct_md_array(out[4], nulls[4], 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
			args[5] = PointerGetDatum(construct_md_array(out[5], nulls[5], 1, dims, lbs, INT2OID, 2, true, TYPALIGN_SHORT));
			args[6] = PointerGetDatum(construct_md_array(out[6], nulls[6], 1, dims, lbs, FLOAT4OID, 4, true, TYPALIGN_INT));
			args[7] = PointerGetDatum(construct_md_array(out[7], nulls[7], 1, dims, lbs, BOOLOID, 1, true, TYPALIGN_CHAR));
			args[8] = PointerGetDatum(construct_md_array(out[8], nulls[8], 1, dims, lbs, FLOAT4OID, 4, true, TYPALIGN_INT));
			args[9] = PointerGetDatum(construct_md_array(out[9], nulls[9], 1, dims, lbs, BOOLOID, 1, true, TYPALIGN_CHAR));
			args[10] = PointerGetDatum(construct_md_array(out[10], nulls[10], 1, dims, lbs, DATEOID, 4, true, TYPALIGN_INT));
			args[11] = PointerGetDatum(construct_md_array(out[11], nulls[11], 1, dims, lbs, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
			args[12] = PointerGetDatum(construct_md_array(out[12], nulls[12], 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
		}
		args[13] = PointerGetDatum(construct_array(sig, m, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	}

	/* 3. the upsert, as the owner; the signatures are $14 */
	{
		if (plan_upsert == NULL)
		{
			Oid			argtypes[CANDIDATES_NARGS + 1] = {
				INT8ARRAYOID, FLOAT8ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT2ARRAYOID,
				FLOAT4ARRAYOID, BOOLARRAYOID, FLOAT4ARRAYOID, BOOLARRAYOID, DATEARRAYOID,
				TIMESTAMPTZARRAYOID, TEXTARRAYOID, INT8ARRAYOID
			};

			plan_upsert = CatalogKeepPlan(
										  "INSERT INTO icpml.account_candidates AS c (account_id, probability, score, priority,"
										  " industry, size_band, engineering_roles, hiring, open_roles, blog, funding_date,"
										  " researched_at, tech_stack, signature, explore_key, first_scored_at, updated_at)"
										  " SELECT u.a, u.p, u.s, u.pr, u.ind, u.band, u.er, u.h, u.orl, u.b, u.fd, u.ra,"
										  " u.ts::pg_catalog.text[], u.sig, pg_catalog.hashint8(u.a),"
										  /* the table's first fill: nothing is new */
										  " CASE WHEN EXISTS (SELECT FROM icpml.account_candidates AS o"
										  " WHERE o.updated_at OPERATOR(pg_catalog.<) pg_catalog.now())"
										  " THEN pg_catalog.now() ELSE '-infinity' END, pg_catalog.now()"
										  " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3),"
										  " pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7),"
										  " pg_catalog.unnest($8), pg_catalog.unnest($9), pg_catalog.unnest($10), pg_catalog.unnest($11),"
										  " pg_catalog.unnest($12), pg_catalog.unnest($13), pg_catalog.unnest($14))"
										  " AS u(a, p, s, pr, ind, band, er, h, orl, b, fd, ra, ts, sig)"
										  " ORDER BY u.a"
										  " ON CONFLICT (account_id) DO UPDATE SET probability = excluded.probability,"
										  " score = excluded.score, priority = excluded.priority, industry = excluded.industry,"
										  " size_band = excluded.size_band, engineering_roles = excluded.engineering_roles,"
										  " hiring = excluded.hiring, open_roles = excluded.open_roles, blog = excluded.blog,"
										  " funding_date = excluded.funding_date, researched_at = excluded.researched_at,"
										  " tech_stack = excluded.tech_stack, signature = excluded.signature,"
										  " updated_at = excluded.updated_at"
										  " WHERE c.signature OPERATOR(pg_catalog.<>) excluded.signature",
										  CANDIDATES_NARGS + 1, argtypes, 0);
		}
		CatalogSwitchToOwner(&owner);
		ret = SPI_execute_plan(plan_upsert, args, NULL, false, 0);
		CatalogRestoreUser(&owner);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "writing icpml.account_candidates failed: %s", SPI_result_code_string(ret));
	}
}

/* Drop accounts from icpml.account_candidates (as the owner). */
void
CandidatesForget(Datum ids)
{
	static SPIPlanPtr plan = NULL;
	CatalogOwnerState owner;
	int			ret;

	if (!OidIsValid(CatalogRelidIfExists("account_candidates")))
		return;
	if (plan == NULL)
	{
		Oid			argtype = INT8ARRAYOID;

		plan = CatalogKeepPlan("DELETE FROM icpml.account_candidates AS c"
							   " WHERE c.account_id OPERATOR(pg_catalog.=) ANY ($1)", 1, &argtype, 0);
	}
	CatalogSwitchToOwner(&owner);
	ret = SPI_execute_plan(plan, &ids, NULL, false, 0);
	CatalogRestoreUser(&owner);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "pruning icpml.account_candidates failed: %s", SPI_result_code_string(ret));
}

/* Drop the candidates no longer in icpml.account_scores (as the owner). */
void
CandidatesPrune(void)
{
	CatalogOwnerState owner;
	int			ret;

	if (!OidIsValid(CatalogRelidIfExists("account_candidates")))
		return;
	CatalogSwitchToOwner(&owner);
	ret = SPI_execute("DELETE FROM icpml.account_candidates AS c WHERE NOT EXISTS"
					  " (SELECT FROM icpml.account_scores AS s"
					  " WHERE s.account_id OPERATOR(pg_catalog.=) c.account_id)", false, 0);
	CatalogRestoreUser(&owner);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "pruning icpml.account_candidates failed: %s", SPI_result_code_string(ret));
}

/*
 * refresh_candidates() → bigint
 * Re-read every account of icpml.account_scores into account_candidates
 * (features as the caller), in batches; then drop candidates that are no
 * longer scored.  Returns the accounts read.
 */
Datum
refresh_candidates(PG_FUNCTION_ARGS)
{
	Portal		portal;
	int64		total = 0;
	CatalogOwnerState owner;
	SPIPlanPtr	plan;
	MemoryContext batchcxt;

	SPI_connect();
	if (!CandidatesUsable())
		(void) RelationReaderPlan(&candidates_reader, RELATION_MANY);	/* reports why */

	CatalogSwitchToOwner(&owner);
	plan = SPI_prepare("SELECT s.account_id, s.probability, s.score, s.priority"
					   " FROM icpml.account_scores AS s ORDER BY s.account_id", 0, NULL);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);
	CatalogRestoreUser(&owner);

	batchcxt = AllocSetContextCreate(CurrentMemoryContext, "icpml refresh_candidates batch",
									 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		SPITupleTable *tt;
		uint64		n,
					i;
		Datum	   *ids,
				   *probs,
				   *scores,
				   *prios;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		CatalogSwitchToOwner(&owner);
		SPI_cursor_fetch(portal, true, 10000);
		CatalogRestoreUser(&owner);
		tt = SPI_tuptable;
		n = SPI_processed;
		if (n == 0)
			break;
		old = MemoryContextSwitchTo(batchcxt);
		ids = palloc(sizeof(Datum) * n);
		probs = palloc(sizeof(Datum) * n);
		scores = palloc(sizeof(Datum) * n);
		prios = palloc(sizeof(Datum) * n);
		for (i = 0; i < n; i++)
		{
			bool		isnull;

			ids[i] = SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull);
			probs[i] = SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull);
			scores[i] = SPI_getbinval(tt->vals[i], tt->tupdesc, 3, &isnull);
			prios[i] = PointerGetDatum(DatumGetTextPCopy(SPI_getbinval(tt->vals[i], tt->tupdesc, 4, &isnull)));
		}
		CandidatesStore(PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
						PointerGetDatum(construct_array(probs, n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
						PointerGetDatum(construct_array(scores, n, INT4OID, 4, true, TYPALIGN_INT)),
						PointerGetDatum(construct_array(prios, n, TEXTOID, -1, false, TYPALIGN_INT)));
		MemoryContextSwitchTo(old);
		SPI_freetuptable(tt);
		MemoryContextReset(batchcxt);
		total += n;
	}
	SPI_cursor_close(portal);
	CandidatesPrune();
	SPI_finish();
	PG_RETURN_INT64(total);
}
