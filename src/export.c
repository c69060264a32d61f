/*
 * export.c — icpml.export_scorer_sql(): a deployed model (or the rules)
 * written out as a plain SQL / PL/pgSQL scorer for databases that cannot
 * load icpml's C code (hosted Supabase).  The script creates schema icpml,
 * the type icpml.icp_score_result and the functions icpml.icp_score and
 * icpml.icp_score_batch with the extension's names, arguments and columns.
 *
 * Exactness.  The exported scorer computes what icp_score computes, bit
 * for bit: the same select list reads the row (spec.c's casts), the same
 * float32 encoding (a double rounds to float as C's (float) does, without
 * PostgreSQL's underflow/overflow errors), the same branch rules (numeric:
 * left iff value < threshold, missing takes the default; categorical:
 * right iff the level's index is in the set), the same float32 sums in the
 * same order (base margin, then each tree's leaf in tree order, through
 * real arithmetic, which PostgreSQL does in C float), the same Saabas
 * contributions (each leaf's per-feature path sums precomputed here in the
 * evaluator's order, then summed over trees in tree order), and XGBoost's
 * float sigmoid.  The sigmoid needs expf(), which SQL does not have:
 * scorer_sigmoid() evaluates glibc's expf algorithm (the 2^(k/32) table and
 * cubic of sysdeps/ieee754/flt-32/e_expf.c) in double precision, which
 * gives glibc's result for every float input in the sigmoid's range (both
 * its FMA and non-FMA builds; checked exhaustively on x86_64), whereas
 * exp(x::float8)::real differs for about 1 input in 13,000.
 *
 * Layout of the generated scorer, icpml.scorer_rows(ids): one query,
 * inside out, its subqueries kept apart with OFFSET 0 so that every value
 * is computed once per row (PL/pgSQL keeps the plan for the session):
 *   raw   key and the spec's columns, read as the caller (RLS applies)
 *   e     each feature x<j> as real (NULL = missing)
 *   l     each tree's leaf number t<i> (a nested CASE over e's columns)
 *   v     the margin m and the contributions c<j>: real sums in tree order
 *   w, s  the probability (scorer_sigmoid), the score from the cut-offs
 *   top   priority and the top factors as icp_score renders them
 * The rules' scorer (ExportRules) has the same shape with the rules'
 * formulas; icp_score and icp_score_batch wrap either (ExportEntryPoints).
 *
 * Nothing here runs user SQL: identifiers are quoted, levels and names are
 * SQL literals written with quote_literal.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "icpml.h"
#include "model_store.h"
#include "relation.h"
#include "rules.h"
#include "spec.h"
#include "tree.h"

PG_FUNCTION_INFO_V1(export_scorer_sql);

/* glibc expf (N = 32): the table of 2^(i/32) as doubles and the constants */
static const uint64 ExportExp2Tab[32] = {
	UINT64CONST(0x3ff0000000000000), UINT64CONST(0x3fefd9b0d3158574),
	UINT64CONST(0x3fefb5586cf9890f), UINT64CONST(0x3fef9301d0125b51),
	UINT64CONST(0x3fef72b83c7d517b), UINT64CONST(0x3fef54873168b9aa),
	UINT64CONST(0x3fef387a6e756238), UINT64CONST(0x3fef1e9df51fdee1),
	UINT64CONST(0x3fef06fe0a31b715), UINT64CONST(0x3feef1a7373aa9cb),
	UINT64CONST(0x3feedea64c123422), UINT64CONST(0x3feece086061892d),
	UINT64CONST(0x3feebfdad5362a27), UINT64CONST(0x3feeb42b569d4f82),
	UINT64CONST(0x3feeab07dd485429), UINT64CONST(0x3feea47eb03a5585),
	UINT64CONST(0x3feea09e667f3bcd), UINT64CONST(0x3fee9f75e8ec5f74),
	UINT64CONST(0x3feea11473eb0187), UINT64CONST(0x3feea589994cce13),
	UINT64CONST(0x3feeace5422aa0db), UINT64CONST(0x3feeb737b0cdc5e5),
	UINT64CONST(0x3feec49182a3f090), UINT64CONST(0x3feed503b23e255d),
	UINT64CONST(0x3feee89f995ad3ad), UINT64CONST(0x3feeff76f2fb5e47),
	UINT64CONST(0x3fef199bdd85529c), UINT64CONST(0x3fef3720dcef9069),
	UINT64CONST(0x3fef5818dcfba487), UINT64CONST(0x3fef7c97337b9b5f),
	UINT64CONST(0x3fefa4afa2a490da), UINT64CONST(0x3fefd0765b6e4540)
};

/* A double from its bits. */
static double
ExportAsDouble(uint64 bits)
{
	double		d;

	memcpy(&d, &bits, sizeof(d));
	return d;
}

/* Append a float8 literal that reads back as exactly v. */
static void
ExportFloat8(StringInfo buf, double v)
{
	if (isnan(v))
		appendStringInfoString(buf, "'NaN'::float8");
	else if (isinf(v))
		appendStringInfoString(buf, v > 0 ? "'Infinity'::float8" : "'-Infinity'::float8");
	else
		appendStringInfo(buf, "%.17g::float8", v);
}

/* A real (float4) value as it goes inside a '{...}' array literal. */
static void
ExportRealElem(StringInfo buf, float v)
{
	if (isnan(v))
		appendStringInfoString(buf, "NaN");
	else if (isinf(v))
		appendStringInfoString(buf, v > 0 ? "Infinity" : "-Infinity");
	else
		appendStringInfo(buf, "%.9g", (double) v);
}

/* Append a real literal that reads back as exactly v. */
static void
ExportReal(StringInfo buf, float v)
{
	appendStringInfoChar(buf, '\'');
	ExportRealElem(buf, v);
	appendStringInfoString(buf, "'::real");
}

/* The installed icpml version (pg_extension.extversion), for the script's head. */
static const char *
ExportVersion(void)
{
	static char *version = NULL;

	if (version == NULL)
	{
		char	   *v = NULL;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute("SELECT x.extversion FROM pg_catalog.pg_extension AS x"
						" WHERE x.extname OPERATOR(pg_catalog.=) 'icpml'", true, 1) == SPI_OK_SELECT &&
			SPI_processed == 1)
			v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		version = MemoryContextStrdup(TopMemoryContext, v ? v : "?");
		SPI_finish();
	}
	return version;
}

/* ---------------------------------------------------------------------
 * The common part: schema, type, helpers
 * --------------------------------------------------------------------- */

/* The script's head: what it is, the guard, schema and result type. */
static void
ExportHead(StringInfo buf, const char *what, const char *relation, const char *key)
{
	appendStringInfo(buf,
					 "-- icpml hosted scorer: %s\n"
					 "-- Generated by icpml.export_scorer_sql() (icpml %s) at %s.\n"
					 "-- Reads %s (key %s) as the calling user; row-level security applies.\n"
					 "-- Install into a database without the icpml extension (hosted Supabase):\n"
					 "--   psql -1 -v ON_ERROR_STOP=1 -f this_file.sql   (or as a migration)\n"
					 "-- Re-export and re-apply after every deploy (docs/supabase-hosted.md).\n"
					 "-- Every function is SECURITY INVOKER with search_path pinned to pg_catalog.\n\n",
					 what, ExportVersion(),
					 timestamptz_to_str(GetCurrentTimestamp()), relation, key);
	appendStringInfoString(buf,
						   "DO $guard$\n"
						   "BEGIN\n"
						   "  IF EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'icpml') THEN\n"
						   "    RAISE EXCEPTION 'the icpml extension is installed in this database: it scores natively'\n"
						   "      USING HINT = 'The exported scorer is for databases that cannot load icpml (hosted Supabase).';\n"
						   "  END IF;\n"
						   "END\n"
						   "$guard$;\n\n"
						   "CREATE SCHEMA IF NOT EXISTS icpml;\n\n"
						   "DO $type$\n"
						   "BEGIN\n"
						   "  IF pg_catalog.to_regtype('icpml.icp_score_result') IS NULL THEN\n"
						   "    CREATE TYPE icpml.icp_score_result AS (\n"
						   "      account_id bigint, score integer, priority text, probability double precision,\n"
						   "      model text, model_version integer, factors jsonb, factor_method text);\n"
						   "    COMMENT ON TYPE icpml.icp_score_result IS\n"
						   "      'One ICP score: score 1-10, priority high/medium/low, probability, the model that produced it and its top factors';\n"
						   "  END IF;\n"
						   "END\n"
						   "$type$;\n\n");
}

/*
 * icpml.scorer_f4(double precision) → real: a double as C's (float) cast
 * rounds it (PostgreSQL's own cast raises errors where C rounds to 0 or
 * infinity); NULL for NULL, NaN and infinities (missing values).
 */
static void
ExportHelperF4(StringInfo buf)
{
	appendStringInfoString(buf,
						   "CREATE OR REPLACE FUNCTION icpml.scorer_f4(v double precision)\n"
						   "RETURNS real LANGUAGE sql IMMUTABLE PARALLEL SAFE\n"
						   "AS $f$\n"
						   "  SELECT CASE WHEN v IS NULL OR v = 'NaN'::float8 OR v = 'Infinity'::float8\n"
						   "                   OR v = '-Infinity'::float8 THEN NULL\n"
						   "              WHEN abs(v) <= 7.0064923216240854e-46::float8 THEN 0::real\n"
						   "              WHEN v >= 3.4028235677973366e+38::float8 THEN 'Infinity'::real\n"
						   "              WHEN v <= -3.4028235677973366e+38::float8 THEN '-Infinity'::real\n"
						   "              ELSE v::real END\n"
						   "$f$;\n\n");
}

/*
 * icpml.scorer_sigmoid(real) → real: XGBoost 1.7's float sigmoid
 * 1 / (expf(-x) + 1 + 1e-16), with expf as glibc computes it.
 */
static void
ExportHelperSigmoid(StringInfo buf)
{
	int			i;

	appendStringInfoString(buf,
						   "CREATE OR REPLACE FUNCTION icpml.scorer_sigmoid(margin real)\n"
						   "RETURNS real LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE\n"
						   "SET search_path = pg_catalog, pg_temp\n"
						   "AS $f$\n"
						   "DECLARE\n"
						   "  tab constant double precision[] := ARRAY[");
	for (i = 0; i < 32; i++)
	{
		if (i > 0)
			appendStringInfoString(buf, ", ");
		appendStringInfo(buf, "%.17g", ExportAsDouble(ExportExp2Tab[i] + ((uint64) i << 47)));
	}
	appendStringInfoString(buf, "];\n  pow2 constant double precision[] := ARRAY[");
	/* 2^e for e = -151 .. 128: scaling by a power of two is exact */
	for (i = -151; i <= 128; i++)
	{
		if (i > -151)
			appendStringInfoString(buf, ", ");
		appendStringInfo(buf, "%.17g", ldexp(1.0, i));
	}
	appendStringInfoString(buf, "];\n");
	appendStringInfo(buf, "  c0 constant double precision := %.17g;\n",
					 ExportAsDouble(UINT64CONST(0x3fac6af84b912394)) / 32 / 32 / 32);
	appendStringInfo(buf, "  c1 constant double precision := %.17g;\n",
					 ExportAsDouble(UINT64CONST(0x3fcebfce50fac4f3)) / 32 / 32);
	appendStringInfo(buf, "  c2 constant double precision := %.17g;\n",
					 ExportAsDouble(UINT64CONST(0x3fe62e42ff0c52d6)) / 32);
	appendStringInfo(buf, "  invln2n constant double precision := %.17g;\n",
					 ExportAsDouble(UINT64CONST(0x3ff71547652b82fe)) * 32);
	appendStringInfo(buf, "  shift constant double precision := %.17g;\n",
					 ExportAsDouble(UINT64CONST(0x4338000000000000)));
	appendStringInfoString(buf,
						   "  x real;\n"
						   "  e real;\n"
						   "  z double precision;\n"
						   "  kd double precision;\n"
						   "  r double precision;\n"
						   "  y double precision;\n"
						   "  k bigint;\n"
						   "  j integer;\n"
						   "BEGIN\n"
						   "  -- x = min(-margin, 88.7f)\n"
						   "  x := -margin;\n"
						   "  IF x > '88.6999969'::real THEN\n"
						   "    x := '88.6999969'::real;\n"
						   "  END IF;\n"
						   "  IF x < '-103.972084'::real THEN\n"
						   "    e := 0;                                  -- expf underflows to 0\n"
						   "  ELSE\n"
						   "    z := invln2n * x::double precision;      -- x * 32 / ln 2 = k + r\n"
						   "    kd := z + shift;                         -- rounds to an integer\n"
						   "    kd := kd - shift;\n"
						   "    r := z - kd;\n"
						   "    k := kd::bigint;\n"
						   "    j := (k & 31)::integer;\n"
						   "    y := (c0 * r + c1) * (r * r) + (c2 * r + 1);\n"
						   "    y := y * (tab[j + 1] * pow2[((k - j) / 32)::integer + 152]);\n"
						   "    e := y::real;\n"
						   "  END IF;\n"
						   "  RETURN '1'::real / ((e + '1'::real) + '1e-16'::real);\n"
						   "END\n"
						   "$f$;\n\n");
}

/* ---------------------------------------------------------------------
 * A model
 * --------------------------------------------------------------------- */

/* Per tree: first and end node, leaf numbers (1-based, DFS order) per node. */
typedef struct ExportTreeInfo
{
	int32		first;
	int32		end;
	int			nleaves;
} ExportTreeInfo;

/* Append the leaf-number CASE expression of the subtree at node pos. */
static void
ExportWalk(StringInfo buf, const TreeModel *m, int32 pos, const int32 *leafno)
{
	const TreeNode *n = &m->nodes[pos];
	int			f;
	bool		dleft;

	CHECK_FOR_INTERRUPTS();
	if (TreeNodeIsLeaf(n))
	{
		appendStringInfo(buf, "%d", leafno[pos]);
		return;
	}
	f = TreeNodeFeature(n);
	dleft = (n->info & TREE_DEFAULT_LEFT) != 0;
	if (n->info & TREE_CATEGORICAL)
	{
		const uint32 *bits = m->catbits + (n->info >> TREE_INFO_SHIFT);
		uint32		nwords = bits[0];
		uint32		w;
		int			b,
					ncat = 0;
		StringInfoData set;

		initStringInfo(&set);
		for (w = 0; w < nwords; w++)
			for (b = 0; b < 32; b++)
				if (bits[1 + w] & ((uint32) 1 << b))
					appendStringInfo(&set, "%s%u", ncat++ > 0 ? "," : "", w * 32 + b);
		/* right iff the category is in the set; missing takes the default */
		appendStringInfoString(buf, "CASE WHEN ");
		if (!dleft)
			appendStringInfo(buf, "x%d IS NULL OR ", f);
		if (ncat > 0)
			appendStringInfo(buf, "x%d = ANY ('{%s}'::real[])", f, set.data);
		else
			appendStringInfoString(buf, "false");
		appendStringInfoString(buf, " THEN ");
		ExportWalk(buf, m, n->right, leafno);
		appendStringInfoString(buf, " ELSE ");
		ExportWalk(buf, m, pos + 1, leafno);
		appendStringInfoString(buf, " END");
		pfree(set.data);
	}
	else
	{
		/* left iff value < threshold; missing takes the default */
		appendStringInfoString(buf, "CASE WHEN ");
		if (dleft)
			appendStringInfo(buf, "x%d IS NULL OR ", f);
		appendStringInfo(buf, "x%d < ", f);
		ExportReal(buf, n->value);
		appendStringInfoString(buf, " THEN ");
		ExportWalk(buf, m, pos + 1, leafno);
		appendStringInfoString(buf, " ELSE ");
		ExportWalk(buf, m, n->right, leafno);
		appendStringInfoString(buf, " END");
	}
}

/*
 * Per-leaf Saabas sums of one tree, as TreeModelSaabas adds them: along the
 * path from the root, each step adds its delta (float) to its parent's
 * split feature.  sums[leaf * nfeatures + f]; used[f] set for every feature
 * the tree splits on.
 */
static void
ExportLeafSums(const TreeModel *m, int32 pos, float *path_sum, float *sums,
			   const int32 *leafno, bool *used)
{
	const TreeNode *n = &m->nodes[pos];
	int			nf = m->nfeatures;
	int32		children[2];
	int			c;

	if (TreeNodeIsLeaf(n))
	{
		memcpy(sums + (leafno[pos] - 1) * nf, path_sum, sizeof(float) * nf);
		return;
	}
	used[TreeNodeFeature(n)] = true;
	children[0] = pos + 1;
	children[1] = n->right;
	for (c = 0; c < 2; c++)
	{
		int32		child = children[c];
		int			f = m->step[child].parent_feature;
		float		saved = path_sum[f];

		path_sum[f] += m->step[child].delta;
		ExportLeafSums(m, child, path_sum, sums, leafno, used);
		path_sum[f] = saved;
	}
}

/*
 * Append SQL folding a text expression as SignalFoldText does (fold_text):
 * ASCII letters lower-cased, ASCII white space trimmed, inner runs made one
 * space.
 */
static void
ExportFold(StringInfo buf, const char *expr)
{
	appendStringInfo(buf,
					 "pg_catalog.regexp_replace(pg_catalog.btrim(pg_catalog.translate(%s,"
					 " 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'),"
					 " E' \\t\\n\\x0b\\f\\r'), E'[ \\t\\n\\x0b\\f\\r]+', ' ', 'g')",
					 expr);
}

/* The encoding of spec column c (raw column r<c>) into its features x<j>. */
static void
ExportEncodeColumn(StringInfo buf, const FeatureSpec *spec, int c, bool *first)
{
	const SpecColumn *col = &spec->columns[c];
	int			l;

	switch (col->kind)
	{
		case SPEC_NUMERIC:
		case SPEC_AGE_DAYS:
			appendStringInfo(buf, "%s    icpml.scorer_f4(raw.r%d) AS x%d", *first ? "" : ",\n", c,
							 col->first_feature);
			break;
		case SPEC_BOOLEAN:
			appendStringInfo(buf, "%s    (CASE WHEN raw.r%d THEN 1 WHEN NOT raw.r%d THEN 0 END)::real AS x%d",
							 *first ? "" : ",\n", c, c, col->first_feature);
			break;
		case SPEC_CATEGORICAL:
			{
				StringInfoData arr;

				initStringInfo(&arr);
				appendStringInfoChar(&arr, '{');
				for (l = 0; l < col->nlevels; l++)
				{
					const char *s = col->levels[l];

					if (l > 0)
						appendStringInfoChar(&arr, ',');
					/* array element, double-quoted with backslash escapes */
					appendStringInfoChar(&arr, '"');
					for (; *s; s++)
					{
						if (*s == '"' || *s == '\\')
							appendStringInfoChar(&arr, '\\');
						appendStringInfoChar(&arr, *s);
					}
					appendStringInfoChar(&arr, '"');
				}
				appendStringInfoChar(&arr, '}');
				/* levels match byte for byte, as spec.c's binary search does */
				appendStringInfo(buf, "%s    (pg_catalog.array_position(%s::text[], ",
								 *first ? "" : ",\n", quote_literal_cstr(arr.data));
				if (spec->encoding.fold_text)
					ExportFold(buf, psprintf("raw.r%d", c));
				else
					appendStringInfo(buf, "raw.r%d", c);
				appendStringInfo(buf, " COLLATE \"C\") - 1)::real AS x%d", col->first_feature);
				pfree(arr.data);
				break;
			}
		case SPEC_TAGS:
			for (l = 0; l < col->nlevels; l++)
				appendStringInfo(buf, "%s    (CASE WHEN raw.t%d IS NULL THEN NULL WHEN %s COLLATE \"C\" = ANY (raw.t%d) THEN 1 ELSE 0 END)::real AS x%d",
								 (*first && l == 0) ? "" : ",\n", c,
								 quote_literal_cstr(col->levels[l]), c, col->first_feature + l);
			break;
	}
	*first = false;
}

/* The JSON "value" of feature j as icp_score renders it (model_cache.c). */
static void
ExportFeatureValue(StringInfo buf, const FeatureSpec *spec, int j)
{
	int			c;

	for (c = 0; c < spec->ncolumns; c++)
	{
		const SpecColumn *col = &spec->columns[c];

		if (j < col->first_feature || j >= col->first_feature + col->nfeatures)
			continue;
		switch (col->kind)
		{
			case SPEC_CATEGORICAL:
				{
					StringInfoData arr;
					int			l;

					initStringInfo(&arr);
					appendStringInfoString(&arr, "ARRAY[");
					for (l = 0; l < col->nlevels; l++)
						appendStringInfo(&arr, "%s%s", l > 0 ? ", " : "", quote_literal_cstr(col->levels[l]));
					appendStringInfoString(&arr, "]::text[]");
					appendStringInfo(buf, "pg_catalog.to_jsonb((%s)[x%d::integer + 1])", arr.data, j);
					pfree(arr.data);
					break;
				}
			case SPEC_BOOLEAN:
			case SPEC_TAGS:
				appendStringInfo(buf, "pg_catalog.to_jsonb(x%d <> 0)", j);
				break;
			default:
				/* "%.9g" of the float: nine significant digits, no trailing zeros */
				appendStringInfo(buf,
								 "pg_catalog.to_jsonb(CASE WHEN x%d = 0 THEN 0::numeric"
								 " WHEN x%d = 'Infinity'::real OR x%d = '-Infinity'::real THEN NULL"
								 " ELSE pg_catalog.trim_scale(pg_catalog.round(x%d::float8::numeric,"
								 " 8 - pg_catalog.floor(pg_catalog.log(pg_catalog.abs(x%d::float8::numeric)))::integer)) END)",
								 j, j, j, j, j);
				break;
		}
		return;
	}
	elog(ERROR, "feature %d is outside the model's spec (please report a bug)", j);
}

/*
 * Float sums longer than this become a sum() over an array (in array order)
 * instead of a chain of + operators, so the parser never recurses deeply.
 */
#define EXPORT_MAX_CHAIN 500

/* A growing list of real terms to be added in order. */
typedef struct ExportSum
{
	StringInfoData terms;		/* comma-separated */
	int			n;
} ExportSum;

/* Append the float sum of s's terms, in order (at least one term). */
static void
ExportSumExpr(StringInfo buf, ExportSum *s)
{
	if (s->n <= EXPORT_MAX_CHAIN)
	{
		char	   *p = s->terms.data;
		int			i;

		/* ((t1 + t2) + t3) ...: left to right, as the evaluator adds */
		for (i = 0; i < s->n; i++, p++)
		{
			char	   *end = strchr(p, ';');

			if (i > 0)
				appendStringInfoString(buf, " + ");
			appendBinaryStringInfo(buf, p, end - p);
			p = end;
		}
	}
	else
	{
		char	   *p;

		/* the same order: sum(real) adds the rows as unnest returns them */
		appendStringInfoString(buf, "(SELECT pg_catalog.sum(v) FROM pg_catalog.unnest(ARRAY[");
		for (p = s->terms.data; *p; p++)
			appendStringInfoChar(buf, *p == ';' ? (p[1] ? ',' : ' ') : *p);
		appendStringInfoString(buf, "]::real[]) AS v)");
	}
}

/* Add a term (an expression of type real) to s. */
static void
ExportSumAdd(ExportSum *s, const char *term)
{
	appendStringInfo(&s->terms, "%s;", term);
	s->n++;
}

/* The head of icpml.scorer_rows(), the same for the model and the rules. */
#define SCORER_ROWS_HEAD \
	"CREATE OR REPLACE FUNCTION icpml.scorer_rows(account_ids bigint[])\n" \
	"RETURNS TABLE (account_id bigint, score integer, priority text,\n" \
	"               probability double precision, factors jsonb)\n" \
	"LANGUAGE plpgsql STABLE PARALLEL SAFE\n" \
	"SET search_path = pg_catalog, pg_temp\n" \
	"SET plan_cache_mode = force_generic_plan\n" \
	"SET jit = off\n" \
	"AS $scorer$\n" \
	"#variable_conflict use_column\n" \
	"BEGIN\n" \
	"-- PL/pgSQL keeps the plan of this (large) query for the session\n" \
	"RETURN QUERY\n"

/* The scorer of a model: icpml.scorer_rows() over its spec and trees. */
static void
ExportModel(StringInfo buf, ModelRecord *rec, const char *relation)
{
	FeatureSpec *spec = rec->spec;
	TreeModel  *m;
	ExportTreeInfo *trees;
	int32	   *leafno;
	int			t,
				c,
				j,
				k;
	bool		first;
	float	   *path_sum;
	bool	   *used;
	ExportSum	margin;
	ExportSum  *contrib;
	StringInfoData lookup;

	ModelStoreValidate(rec, false, NULL, &m);

	/* leaf numbers per tree, in node (depth-first) order */
	trees = palloc(sizeof(ExportTreeInfo) * Max(m->ntrees, 1));
	leafno = palloc0(sizeof(int32) * Max(m->nnodes, 1));
	for (t = 0; t < m->ntrees; t++)
	{
		int32		p;

		trees[t].first = m->roots[t];
		trees[t].end = t + 1 < m->ntrees ? m->roots[t + 1] : m->nnodes;
		trees[t].nleaves = 0;
		for (p = trees[t].first; p < trees[t].end; p++)
			if (TreeNodeIsLeaf(&m->nodes[p]))
				leafno[p] = ++trees[t].nleaves;
	}

	/*
	 * The sums: the margin (base, then every tree's leaf value) and, per
	 * feature, its Saabas contribution (every tree that splits on it, its
	 * leaf's path sum for the feature), each in tree order.
	 */
	initStringInfo(&margin.terms);
	margin.n = 0;
	initStringInfo(&lookup);
	ExportReal(&lookup, m->base_margin);
	ExportSumAdd(&margin, lookup.data);
	contrib = palloc0(sizeof(ExportSum) * Max(m->nfeatures, 1));
	for (j = 0; j < m->nfeatures; j++)
		initStringInfo(&contrib[j].terms);
	path_sum = palloc0(sizeof(float) * Max(m->nfeatures, 1));
	used = palloc(sizeof(bool) * Max(m->nfeatures, 1));
	for (t = 0; t < m->ntrees; t++)
	{
		float	   *sums = palloc0(sizeof(float) * trees[t].nleaves * Max(m->nfeatures, 1));
		int			f,
					leaf;

		CHECK_FOR_INTERRUPTS();
		resetStringInfo(&lookup);
		appendStringInfoString(&lookup, "('{");
		for (leaf = 0, k = trees[t].first; k < trees[t].end; k++)
		{
			if (!TreeNodeIsLeaf(&m->nodes[k]))
				continue;
			if (leaf++ > 0)
				appendStringInfoChar(&lookup, ',');
			ExportRealElem(&lookup, m->means[k]);
		}
		appendStringInfo(&lookup, "}'::real[])[l.t%d]", t);
		ExportSumAdd(&margin, lookup.data);

		memset(used, 0, sizeof(bool) * m->nfeatures);
		ExportLeafSums(m, trees[t].first, path_sum, sums, leafno, used);
		for (f = 0; f < m->nfeatures; f++)
		{
			if (!used[f])
				continue;
			resetStringInfo(&lookup);
			appendStringInfoString(&lookup, "('{");
			for (leaf = 0; leaf < trees[t].nleaves; leaf++)
			{
				if (leaf > 0)
					appendStringInfoChar(&lookup, ',');
				ExportRealElem(&lookup, sums[leaf * m->nfeatures + f]);
			}
			appendStringInfo(&lookup, "}'::real[])[l.t%d]", t);
			ExportSumAdd(&contrib[f], lookup.data);
		}
		pfree(sums);
	}

	ExportHead(buf, psprintf("XGBoost model version %d", rec->version), relation, spec->key);
	ExportHelperF4(buf);
	ExportHelperSigmoid(buf);

	appendStringInfoString(buf, SCORER_ROWS_HEAD);

	/* outer: probability, score, priority, the top factors */
	appendStringInfoString(buf, "SELECT s.k, s.score,\n"
						   "       CASE WHEN s.score >= ");
	appendStringInfo(buf, "%d THEN 'high' WHEN s.score >= %d THEN 'medium' ELSE 'low' END,\n",
					 rec->high_min_score, rec->medium_min_score);
	appendStringInfoString(buf, "       s.p::double precision,\n");
	appendStringInfoString(buf,
						   "       (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(\n"
						   "            'factor', (");
	{
		StringInfoData names;

		initStringInfo(&names);
		appendStringInfoString(&names, "ARRAY[");
		for (j = 0; j < spec->nfeatures; j++)
			appendStringInfo(&names, "%s%s", j > 0 ? ", " : "",
							 quote_literal_cstr(spec->feature_names[j]));
		appendStringInfoString(&names, "]::text[]");
		appendStringInfo(buf, "%s)[c.f::integer],\n", names.data);
		pfree(names.data);
	}
	appendStringInfoString(buf, "            'value', CASE c.f::integer");
	for (j = 0; j < spec->nfeatures; j++)
	{
		appendStringInfo(buf, "\n              WHEN %d THEN ", j + 1);
		ExportFeatureValue(buf, spec, j);
	}
	appendStringInfoString(buf, " END,\n"
						   "            'contribution', pg_catalog.round(c.c::float8::numeric, 6))\n"
						   "          ORDER BY pg_catalog.abs(c.c) DESC, c.f), '[]'::jsonb)\n"
						   "        FROM (SELECT u.c, u.f FROM pg_catalog.unnest(ARRAY[");
	for (j = 0; j < spec->nfeatures; j++)
		appendStringInfo(buf, "%ss.c%d", j > 0 ? ", " : "", j);
	appendStringInfoString(buf,
						   "]::real[]) WITH ORDINALITY AS u(c, f)\n"
						   "              WHERE u.c <> 0\n"
						   "              ORDER BY pg_catalog.abs(u.c) DESC, u.f\n"
						   "              LIMIT LEAST(COALESCE(NULLIF(pg_catalog.current_setting('icpml.top_factors', true), '')::integer, 3), ");
	appendStringInfo(buf, "%d)) AS c) AS factors\n", spec->nfeatures);

	/* score from the probability */
	appendStringInfoString(buf, "FROM (\nSELECT w.*, 1");
	for (k = 0; k < ICPML_NSCORE_CUTOFFS; k++)
	{
		appendStringInfoString(buf, " + (w.p::double precision >= ");
		ExportFloat8(buf, rec->score_cutoffs[k]);
		appendStringInfoString(buf, ")::integer");
	}
	appendStringInfoString(buf, " AS score\nFROM (\n");

	/* the probability from the margin */
	appendStringInfoString(buf, "SELECT v.*, icpml.scorer_sigmoid(v.m) AS p\nFROM (\n");

	/* the sums */
	appendStringInfoString(buf, "SELECT l.*,\n  ");
	ExportSumExpr(buf, &margin);
	appendStringInfoString(buf, " AS m");
	for (j = 0; j < m->nfeatures; j++)
	{
		appendStringInfoString(buf, ",\n  ");
		if (contrib[j].n == 0)
			appendStringInfoString(buf, "0::real");
		else
			ExportSumExpr(buf, &contrib[j]);
		appendStringInfo(buf, " AS c%d", j);
	}
	pfree(path_sum);
	pfree(used);

	/* leaves: each tree's leaf number */
	appendStringInfoString(buf, "\nFROM (\nSELECT e.*");
	for (t = 0; t < m->ntrees; t++)
	{
		appendStringInfoString(buf, ",\n  ");
		ExportWalk(buf, m, trees[t].first, leafno);
		appendStringInfo(buf, " AS t%d", t);
	}

	/* enc: the features */
	appendStringInfoString(buf, "\nFROM (\nSELECT raw.k,\n");
	first = true;
	for (c = 0; c < spec->ncolumns; c++)
		ExportEncodeColumn(buf, spec, c, &first);

	/* raw: the row as spec.c's select list reads it */
	appendStringInfo(buf, "\nFROM (\nSELECT f.%s::pg_catalog.int8 AS k", quote_identifier(spec->key));
	for (c = 0; c < spec->ncolumns; c++)
	{
		StringInfoData expr;

		initStringInfo(&expr);
		SpecColumnSelect(&expr, spec, c, "f");
		appendStringInfo(buf, ",\n  %s AS r%d", expr.data, c);
		/*
		 * tag tokens match lower-cased in ASCII, as spec.c compares them (the
		 * array's text form lower-cased: quoting and NULLs are unaffected), or
		 * folded one by one with fold_text
		 */
		if (spec->columns[c].kind == SPEC_TAGS && !spec->encoding.fold_text)
			appendStringInfo(buf,
							 ",\n  pg_catalog.translate((%s)::text, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ',"
							 " 'abcdefghijklmnopqrstuvwxyz')::text[] AS t%d", expr.data, c);
		else if (spec->columns[c].kind == SPEC_TAGS)
		{
			appendStringInfo(buf, ",\n  CASE WHEN (%s) IS NOT NULL THEN ARRAY(SELECT ", expr.data);
			ExportFold(buf, "u.e");
			appendStringInfo(buf, " FROM pg_catalog.unnest(%s) AS u(e)) END AS t%d", expr.data, c);
		}
		pfree(expr.data);
	}
	appendStringInfo(buf, "\nFROM %s AS f\nWHERE f.%s = ANY (account_ids)\n"
					 "OFFSET 0) AS raw\nOFFSET 0) AS e\nOFFSET 0) AS l\nOFFSET 0) AS v\n"
					 "OFFSET 0) AS w\nOFFSET 0) AS s;\nEND\n$scorer$;\n\n",
					 relation, quote_identifier(spec->key));
}

/* ---------------------------------------------------------------------
 * The rules
 * --------------------------------------------------------------------- */

/*
 * Rule factor c<i> of a count column v<i>: weight * min(ln(1 + v) /
 * ln(1 + cap), 1) when v is a finite count, else 0.
 */
static void
ExportRuleCount(StringInfo buf, int i, double weight, double cap)
{
	appendStringInfo(buf, ",\n  CASE WHEN raw.v%d IS NOT NULL AND raw.v%d NOT IN ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8) AND raw.v%d >= 0 THEN ",
					 i, i, i);
	ExportFloat8(buf, weight);
	appendStringInfo(buf, " * LEAST(pg_catalog.ln(1 + raw.v%d) / ", i);
	ExportFloat8(buf, log1p(cap));
	appendStringInfo(buf, ", 1) ELSE 0 END AS c%d", i);
}

/* Rule factor c<i> of a boolean column v<i>: weight when true, else 0. */
static void
ExportRuleFlag(StringInfo buf, int i, double weight)
{
	appendStringInfo(buf, ",\n  CASE WHEN raw.v%d THEN ", i);
	ExportFloat8(buf, weight);
	appendStringInfo(buf, " * 1 WHEN NOT raw.v%d THEN ", i);
	ExportFloat8(buf, weight);
	appendStringInfo(buf, " * 0 ELSE 0 END AS c%d", i);
}

/*
 * The rules' scorer: the same formulas as rules.c over the rule columns the
 * relation has (a missing column reads as NULL and contributes nothing),
 * with the weights and settings of the moment of export.  In double
 * precision, like the C rules (ln(1 + x) stands for log1p(x)): equal to the
 * C path within 1e-15 rather than bit for bit.
 */
static void
ExportRules(StringInfo buf, const char *relation, const char *key, Oid relid)
{
	RulesWeights w;
	const SignalScaling *sc;
	int			i,
				f;
	bool		have[RULE_NCOLUMNS];

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	RulesGetWeights(&w);
	sc = RulesScaling();
	SPI_finish();
	for (i = 0; i < RULE_NCOLUMNS; i++)
		have[i] = OidIsValid(relid) && get_attnum(relid, RulesColumns[i].name) != InvalidAttrNumber;

	ExportHead(buf, "the rule-based score", relation, key);
	appendStringInfoString(buf, SCORER_ROWS_HEAD);
	appendStringInfo(buf,
					 "SELECT s.k, s.score,\n"
					 "       CASE WHEN s.score >= %d THEN 'high' WHEN s.score >= %d THEN 'medium' ELSE 'low' END,\n"
					 "       s.p,\n", w.high_min_score, w.medium_min_score);
	appendStringInfoString(buf,
						   "       (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(\n"
						   "            'factor', (ARRAY[");
	for (f = 0; f < RULE_NFACTORS; f++)
		appendStringInfo(buf, "%s'%s'", f > 0 ? ", " : "", RulesFactorName(f));
	appendStringInfoString(buf, "]::text[])[c.f::integer],\n            'value', CASE c.f::integer");
	for (f = 0; f < RULE_NFACTORS; f++)
	{
		int			col = RulesFactorInput(f);

		appendStringInfo(buf, "\n              WHEN %d THEN ", f + 1);
		switch (RulesColumns[col].type)
		{
			case FLOAT8OID:
				appendStringInfo(buf, "pg_catalog.to_jsonb(CASE WHEN s.v%d IN ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8) THEN NULL ELSE s.v%d::numeric END)", col, col);
				break;
			case BOOLOID:
				appendStringInfo(buf, "pg_catalog.to_jsonb(s.v%d)", col);
				break;
			case DATEOID:
				appendStringInfo(buf, "pg_catalog.to_jsonb(pg_catalog.to_char(s.v%d, 'YYYY-MM-DD'))", col);
				break;
			default:
				appendStringInfo(buf, "pg_catalog.to_jsonb(s.v%d)", col);
				break;
		}
	}
	appendStringInfoString(buf, " END,\n"
						   "            'contribution', pg_catalog.round(c.c::numeric, 6))\n"
						   "          ORDER BY pg_catalog.abs(c.c) DESC, c.f), '[]'::jsonb)\n"
						   "        FROM (SELECT u.c, u.f FROM pg_catalog.unnest(ARRAY[");
	for (f = 0; f < RULE_NFACTORS; f++)
		appendStringInfo(buf, "%ss.c%d", f > 0 ? ", " : "", f);
	appendStringInfoString(buf,
						   "]::float8[]) WITH ORDINALITY AS u(c, f)\n"
						   "              WHERE u.c <> 0\n"
						   "              ORDER BY pg_catalog.abs(u.c) DESC, u.f\n"
						   "              LIMIT COALESCE(NULLIF(pg_catalog.current_setting('icpml.top_factors', true), '')::integer, 3)) AS c) AS factors\n");

	/* score 1 + floor(10p), clamped to 1..10 */
	appendStringInfoString(buf,
						   "FROM (\n"
						   "SELECT b.*, LEAST(GREATEST(1 + pg_catalog.trunc(b.p * 10)::integer, 1), 10) AS score\n"
						   "FROM (\n"
						   "SELECT a.*, 1 / (1 + pg_catalog.exp(LEAST(GREATEST(-a.logit, -700::float8), 700::float8))) AS p\n"
						   "FROM (\n"
						   "SELECT x.*, ");
	ExportFloat8(buf, w.bias);
	for (f = 0; f < RULE_NFACTORS; f++)
		appendStringInfo(buf, " + x.c%d", f);
	appendStringInfoString(buf, " AS logit\nFROM (\nSELECT raw.*");

	/* each factor: weight * scaled value, 0 when its input is missing */
#define COUNT_OK(v) "raw." v " IS NOT NULL AND raw." v " NOT IN ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8) AND raw." v " >= 0"
	ExportRuleCount(buf, 0, w.weight[RULE_ENGINEERING_ROLES], sc->roles_cap);
	ExportRuleFlag(buf, 1, w.weight[RULE_OPEN_ENGINEERING_ROLES]);
	ExportRuleCount(buf, 2, w.weight[RULE_TOTAL_OPEN_ROLES], sc->open_roles_cap);
	ExportRuleFlag(buf, 3, w.weight[RULE_ENGINEERING_BLOG]);

	appendStringInfoString(buf, ",\n  CASE WHEN " COUNT_OK("v4") " THEN ");
	ExportFloat8(buf, w.weight[RULE_COMPANY_SIZE_FIT]);
	appendStringInfoString(buf, " * CASE WHEN raw.v4 < ");
	ExportFloat8(buf, sc->size_min);
	appendStringInfoString(buf, " THEN raw.v4 / ");
	ExportFloat8(buf, sc->size_min);
	appendStringInfoString(buf, " WHEN raw.v4 <= ");
	ExportFloat8(buf, sc->size_max);
	appendStringInfoString(buf, " THEN 1 ELSE GREATEST(0, 1 - pg_catalog.log(raw.v4 / ");
	ExportFloat8(buf, sc->size_max);
	appendStringInfoString(buf, ")) END ELSE 0 END AS c4");

	/* recency: 1 - age/window inside the window (age in whole days) */
	appendStringInfoString(buf, ",\n  CASE WHEN raw.v6 IS NOT NULL AND pg_catalog.isfinite(raw.v6) THEN ");
	ExportFloat8(buf, w.weight[RULE_RECENT_FUNDING]);
	appendStringInfoString(buf, " * raw.recency ELSE 0 END AS c5");
	appendStringInfoString(buf, ",\n  CASE WHEN raw.v6 IS NOT NULL AND pg_catalog.isfinite(raw.v6) AND " COUNT_OK("v5") " THEN ");
	ExportFloat8(buf, w.weight[RULE_FUNDING_AMOUNT]);
	appendStringInfoString(buf, " * CASE WHEN raw.recency > 0 THEN LEAST(1, pg_catalog.log(1 + raw.v5) / 8) ELSE 0 END ELSE 0 END AS c6");

	/* tech stack: share of the target stack found (ASCII case-insensitive) */
	appendStringInfoString(buf, ",\n  CASE WHEN raw.v7 IS NOT NULL");
	if (sc->n_target_stack == 0)
		appendStringInfoString(buf, " AND false");
	appendStringInfoString(buf, " THEN ");
	ExportFloat8(buf, w.weight[RULE_TECH_STACK_ALIGNMENT]);
	appendStringInfoString(buf, " * ((0");
	for (i = 0; i < sc->n_target_stack; i++)
		appendStringInfo(buf, " + (%s COLLATE \"C\" = ANY (raw.t7))::integer",
						 quote_literal_cstr(sc->target_stack[i]));
	appendStringInfo(buf, ")::float8 / %d) ELSE 0 END AS c7", Max(sc->n_target_stack, 1));
#undef COUNT_OK

	/* raw: the rule columns the relation has, as rules.c reads them */
	appendStringInfo(buf, "\nFROM (\nSELECT f.%s::pg_catalog.int8 AS k", quote_identifier(key));
	for (i = 0; i < RULE_NCOLUMNS; i++)
	{
		const char *type = format_type_be_qualified(RulesColumns[i].type);

		if (have[i])
			appendStringInfo(buf, ",\n  f.%s::%s AS v%d", quote_identifier(RulesColumns[i].name), type, i);
		else
			appendStringInfo(buf, ",\n  NULL::%s AS v%d   -- %s: not in the relation", type, i,
							 RulesColumns[i].name);
	}
	if (have[6])
	{
		appendStringInfo(buf, ",\n  CASE WHEN f.%s::pg_catalog.date IS NULL OR NOT pg_catalog.isfinite(f.%s::pg_catalog.date) THEN NULL\n"
						 "       WHEN (pg_catalog.now()::pg_catalog.date - f.%s::pg_catalog.date) BETWEEN 0 AND ",
						 quote_identifier(RulesColumns[6].name), quote_identifier(RulesColumns[6].name),
						 quote_identifier(RulesColumns[6].name));
		appendStringInfo(buf, "%d\n       THEN 1 - (pg_catalog.now()::pg_catalog.date - f.%s::pg_catalog.date)::float8 / ",
						 (int) sc->funding_window_days, quote_identifier(RulesColumns[6].name));
		ExportFloat8(buf, sc->funding_window_days);
		appendStringInfoString(buf, " ELSE 0 END AS recency");
	}
	else
		appendStringInfoString(buf, ",\n  NULL::float8 AS recency");
	if (have[7])
		appendStringInfo(buf, ",\n  pg_catalog.translate(f.%s::text[]::text, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ',"
						 " 'abcdefghijklmnopqrstuvwxyz')::text[] AS t7",
						 quote_identifier(RulesColumns[7].name));
	else
		appendStringInfoString(buf, ",\n  NULL::text[] AS t7");
	appendStringInfo(buf, "\nFROM %s AS f\nWHERE f.%s = ANY (account_ids)\n"
					 "OFFSET 0) AS raw\nOFFSET 0) AS x\nOFFSET 0) AS a\nOFFSET 0) AS b\nOFFSET 0) AS s;\nEND\n$scorer$;\n\n",
					 relation, quote_identifier(key));
}

/* ---------------------------------------------------------------------
 * The entry points the application calls
 * --------------------------------------------------------------------- */

/* icp_score and icp_score_batch over icpml.scorer_rows(). */
static void
ExportEntryPoints(StringInfo buf, const char *model, int32 version, const char *method,
				  const char *relation)
{
	char	   *functions;

	appendStringInfo(buf,
					 "CREATE OR REPLACE FUNCTION icpml.icp_score(account_id bigint)\n"
					 "RETURNS icpml.icp_score_result\n"
					 "LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE\n"
					 "SET search_path = pg_catalog, pg_temp\n"
					 "AS $f$\n"
					 "DECLARE\n"
					 "  result icpml.icp_score_result;\n"
					 "  n integer := 0;\n"
					 "  r record;\n"
					 "BEGIN\n"
					 "  FOR r IN SELECT * FROM icpml.scorer_rows(ARRAY[icp_score.account_id]) LOOP\n"
					 "    n := n + 1;\n"
					 "    IF n > 1 THEN\n"
					 "      RAISE EXCEPTION 'feature relation %% has more than one row for account %%', %s, icp_score.account_id\n"
					 "        USING ERRCODE = 'cardinality_violation',\n"
					 "              HINT = 'The feature relation must hold one row per account; make its key unique.';\n"
					 "    END IF;\n"
					 "    result := ROW(r.account_id, r.score, r.priority, r.probability, %s, %s, r.factors, %s);\n"
					 "  END LOOP;\n"
					 "  IF n = 0 THEN\n"
					 "    RAISE EXCEPTION 'account %% not found in %%', icp_score.account_id, %s\n"
					 "      USING ERRCODE = 'no_data_found',\n"
					 "            HINT = 'Check the account id. Rows that row-level security hides from you count as not found.';\n"
					 "  END IF;\n"
					 "  RETURN result;\n"
					 "END\n"
					 "$f$;\n\n",
					 quote_literal_cstr(relation), quote_literal_cstr(model),
					 version > 0 ? psprintf("%d", version) : "NULL::integer",
					 quote_literal_cstr(method), quote_literal_cstr(relation));

	appendStringInfo(buf,
					 "CREATE OR REPLACE FUNCTION icpml.icp_score_batch(account_ids bigint[])\n"
					 "RETURNS SETOF icpml.icp_score_result\n"
					 "LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE ROWS 100\n"
					 "SET search_path = pg_catalog, pg_temp\n"
					 "AS $f$\n"
					 "DECLARE\n"
					 "  max_batch integer := COALESCE(NULLIF(pg_catalog.current_setting('icpml.max_batch_size', true), '')::integer, 1000000);\n"
					 "  rows icpml.icp_score_result[];\n"
					 "  dup bigint;\n"
					 "BEGIN\n"
					 "  IF pg_catalog.array_ndims(account_ids) > 1 THEN\n"
					 "    RAISE EXCEPTION 'account_ids must be a one-dimensional array'\n"
					 "      USING ERRCODE = 'array_subscript_error', HINT = 'Pass a flat bigint[] such as ARRAY[1, 2, 3].';\n"
					 "  END IF;\n"
					 "  IF pg_catalog.cardinality(account_ids) > max_batch THEN\n"
					 "    RAISE EXCEPTION 'account_ids has %% elements, more than icpml.max_batch_size (%%)', pg_catalog.cardinality(account_ids), max_batch\n"
					 "      USING ERRCODE = 'program_limit_exceeded', HINT = 'Score in chunks, or raise icpml.max_batch_size.';\n"
					 "  END IF;\n"
					 "  rows := ARRAY(SELECT ROW(s.account_id, s.score, s.priority, s.probability, %s, %s, s.factors, %s)::icpml.icp_score_result\n"
					 "                FROM icpml.scorer_rows(account_ids) AS s);\n"
					 "  SELECT (x).account_id INTO dup FROM pg_catalog.unnest(rows) AS x\n"
					 "   GROUP BY (x).account_id HAVING pg_catalog.count(*) > 1 LIMIT 1;\n"
					 "  IF FOUND THEN\n"
					 "    RAISE EXCEPTION 'feature relation %% has more than one row for account %%', %s, dup\n"
					 "      USING ERRCODE = 'cardinality_violation',\n"
					 "            HINT = 'The feature relation must hold one row per account; make its key unique.';\n"
					 "  END IF;\n"
					 "  RETURN QUERY\n"
					 "    SELECT a.id, (x).score, (x).priority, (x).probability, (x).model, (x).model_version,\n"
					 "           (x).factors, (x).factor_method\n"
					 "    FROM pg_catalog.unnest(account_ids) WITH ORDINALITY AS a(id, ord)\n"
					 "    LEFT JOIN pg_catalog.unnest(rows) AS x ON (x).account_id = a.id\n"
					 "    ORDER BY a.ord;\n"
					 "END\n"
					 "$f$;\n\n",
					 quote_literal_cstr(model),
					 version > 0 ? psprintf("%d", version) : "NULL::integer",
					 quote_literal_cstr(method), quote_literal_cstr(relation));

	{
		StringInfoData info;

		initStringInfo(&info);
		appendStringInfoString(&info, "{\"model\": ");
		escape_json(&info, model);
		appendStringInfo(&info, ", \"model_version\": %s, \"relation\": ",
						 version > 0 ? psprintf("%d", version) : "null");
		escape_json(&info, relation);
		appendStringInfoString(&info, ", \"exported_by\": ");
		escape_json(&info, psprintf("icpml %s", ExportVersion()));
		appendStringInfoString(&info, ", \"exported_at\": ");
		escape_json(&info, timestamptz_to_str(GetCurrentTimestamp()));
		appendStringInfoChar(&info, '}');
		appendStringInfo(buf,
						 "CREATE OR REPLACE FUNCTION icpml.scorer_info()\n"
						 "RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE\n"
						 "AS $f$ SELECT %s::jsonb $f$;\n\n",
						 quote_literal_cstr(info.data));
	}

	functions = psprintf("icpml.icp_score(bigint), icpml.icp_score_batch(bigint[]),"
						 " icpml.scorer_rows(bigint[]), icpml.scorer_info()%s",
						 strcmp(method, "saabas") == 0 ?
						 ", icpml.scorer_f4(double precision), icpml.scorer_sigmoid(real)" : "");
	appendStringInfo(buf,
						   "COMMENT ON FUNCTION icpml.icp_score(bigint) IS\n"
						   "  'ICP score of one account (exported scorer: see icpml.scorer_info())';\n"
						   "COMMENT ON FUNCTION icpml.icp_score_batch(bigint[]) IS\n"
						   "  'ICP scores of many accounts, one row per element in order; unknown ids give NULL scores (exported scorer)';\n\n"
						   "REVOKE ALL ON FUNCTION %s FROM PUBLIC;\n"
						   "DO $grant$\n"
						   "BEGIN\n"
						   "  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'authenticated') THEN\n"
						   "    GRANT USAGE ON SCHEMA icpml TO authenticated;\n"
						   "    GRANT EXECUTE ON FUNCTION %s TO authenticated;\n"
						   "  END IF;\n"
						   "  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'service_role') THEN\n"
						   "    GRANT USAGE ON SCHEMA icpml TO service_role;\n"
						   "    GRANT EXECUTE ON FUNCTION %s TO service_role;\n"
						   "  END IF;\n"
						   "END\n"
						   "$grant$;\n", functions, functions, functions);
}

/*
 * A relation name (stored or given) as the exported script writes it:
 * each part quoted.  Never SQL: ERROR when it is not a 1- to 3-part name.
 */
static char *
ExportRelationName(const char *name)
{
	List	   *parts;
	ListCell   *lc;
	StringInfoData q;

	if (!RelationNameIsValid(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("relation \"%s\" is not a table or view name", name),
				 errhint("Pass the name the scorer reads in the target database, e.g. public.account_features.")));
	parts = stringToQualifiedNameList(name);
	initStringInfo(&q);
	foreach(lc, parts)
		appendStringInfo(&q, "%s%s", q.len > 0 ? "." : "", quote_identifier(strVal(lfirst(lc))));
	return q.data;
}

/*
 * icpml.export_scorer_sql(version integer, relation text, rules boolean)
 * → text: the scorer as a SQL script (see the file comment).
 */
Datum
export_scorer_sql(PG_FUNCTION_ARGS)
{
	StringInfoData buf;
	ModelRecord *rec = NULL;
	char	   *relation;
	text	   *result;
	bool		rules = !PG_ARGISNULL(2) && PG_GETARG_BOOL(2);

	if (!rules)
		rec = PG_ARGISNULL(0) ? ModelStoreLoadDeployed() : ModelStoreLoad(PG_GETARG_INT32(0));
	else if (!PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("version and rules => true cannot be combined"),
				 errhint("Export a model version, or the rules.")));

	initStringInfo(&buf);
	if (rec != NULL)
	{
		relation = ExportRelationName(PG_ARGISNULL(1) ? rec->spec->relation :
									  text_to_cstring(PG_GETARG_TEXT_PP(1)));
		ExportModel(&buf, rec, relation);
		ExportEntryPoints(&buf, "xgboost", rec->version, "saabas", relation);
	}
	else
	{
		char	   *display;
		Oid			relid = RelationResolveFeatures(icpml_feature_relation, &display);

		/* the columns are those of the configured relation, here */
		relation = PG_ARGISNULL(1) ? display :
			ExportRelationName(text_to_cstring(PG_GETARG_TEXT_PP(1)));
		ExportRules(&buf, relation, icpml_feature_key, relid);
		ExportEntryPoints(&buf, "rules", 0, "rule_weights", relation);
	}

	result = cstring_to_text_with_len(buf.data, buf.len);
	PG_RETURN_TEXT_P(result);
}
