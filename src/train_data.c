/*
 * train_data.c — reading the labelled rows for training and cv_folds():
 * key, label, the feature spec's columns and, when the relation has the
 * rules' columns, the rules' probability, through an SPI cursor, 10k rows
 * per fetch, as the caller (row-level security applies).  The rows are then
 * put in key order, so nothing depends on scan order.  The guards refuse
 * fewer than 50 labelled rows, 20 keys, one class, or more folds than keys
 * of the rarer class.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "icpml.h"
#include "rules.h"
#include "spec.h"
#include "train.h"

#define TRAIN_FETCH_ROWS 10000

/* The WHERE condition selecting labelled rows (alias f). */
char *
TrainRowFilter(const TrainArgs *a)
{
	return psprintf("f.%s IS NOT NULL AND f.%s IS NOT NULL",
					quote_identifier(a->label), quote_identifier(a->key));
}

/* qsort_arg comparator: by key, then by read position (stable). */
static int
TrainKeyCmp(const void *x, const void *y, void *arg)
{
	const int64 *keys = (const int64 *) arg;
	int64		i = *(const int64 *) x;
	int64		j = *(const int64 *) y;

	if (keys[i] != keys[j])
		return keys[i] < keys[j] ? -1 : 1;
	return i < j ? -1 : (i > j ? 1 : 0);
}

/* Permute the rows of d into key order. */
static void
TrainSortByKey(TrainData *d)
{
	int64	   *perm = palloc_extended(sizeof(int64) * Max(d->n, 1), MCXT_ALLOC_HUGE);
	int64	   *keys = palloc_extended(sizeof(int64) * Max(d->n, 1), MCXT_ALLOC_HUGE);
	float	   *label = palloc_extended(sizeof(float) * Max(d->n, 1), MCXT_ALLOC_HUGE);
	float	   *x = NULL;
	double	   *rules = NULL;
	int64		i;

	for (i = 0; i < d->n; i++)
		perm[i] = i;
	qsort_arg(perm, d->n, sizeof(int64), TrainKeyCmp, d->keys);
	if (d->nfeat > 0)
		x = palloc_extended(sizeof(float) * Max(d->n * d->nfeat, 1), MCXT_ALLOC_HUGE);
	if (d->rules)
		rules = palloc_extended(sizeof(double) * Max(d->n, 1), MCXT_ALLOC_HUGE);
	for (i = 0; i < d->n; i++)
	{
		int64		p = perm[i];

		keys[i] = d->keys[p];
		label[i] = d->label[p];
		if (x)
			memcpy(x + i * d->nfeat, d->x + p * d->nfeat, sizeof(float) * d->nfeat);
		if (rules)
			rules[i] = d->rules[p];
	}
	pfree(d->keys);
	pfree(d->label);
	d->keys = keys;
	d->label = label;
	if (x)
	{
		pfree(d->x);
		d->x = x;
	}
	if (rules)
	{
		pfree(d->rules);
		d->rules = rules;
	}
	pfree(perm);
}

/*
 * Read the labelled rows (as the caller) through a cursor, in batches:
 * key, label, the spec's columns and, with `rules`, the rule columns.
 * Inside SPI_connect; results are allocated in `cxt`.
 */
TrainData *
TrainReadData(const TrainArgs *a, FeatureSpec *spec, bool rules, MemoryContext cxt)
{
	StringInfoData sql;
	TrainData  *d;
	Portal		portal;
	int64		cap = 1024;
	int			i;
	int			rules_first = 0;
	MemoryContext batchcxt,
				oldcxt;

	oldcxt = MemoryContextSwitchTo(cxt);
	d = palloc0(sizeof(TrainData));
	d->spec = spec;
	d->nfeat = spec ? spec->nfeatures : 0;
	d->keys = palloc_extended(sizeof(int64) * cap, MCXT_ALLOC_HUGE);
	d->label = palloc_extended(sizeof(float) * cap, MCXT_ALLOC_HUGE);
	if (d->nfeat > 0)
		d->x = palloc_extended(sizeof(float) * cap * d->nfeat, MCXT_ALLOC_HUGE);
	if (rules)
		d->rules = palloc_extended(sizeof(double) * cap, MCXT_ALLOC_HUGE);

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT f.%s::pg_catalog.int8, ", quote_identifier(a->key));
	if (a->label_is_bool)
		appendStringInfo(&sql, "f.%s::pg_catalog.int4::pg_catalog.float8", quote_identifier(a->label));
	else
		appendStringInfo(&sql, "f.%s::pg_catalog.float8", quote_identifier(a->label));
	if (spec)
		appendStringInfo(&sql, ", %s", SpecSelectList(spec, "f"));
	if (rules)
	{
		rules_first = 3 + (spec ? spec->ncolumns : 0);
		for (i = 0; i < RULE_NCOLUMNS; i++)
		{
			/* a rule column the relation lacks reads as NULL, as when scoring */
			if (a->rule_missing && a->rule_missing[i])
				appendStringInfo(&sql, ", NULL::%s", format_type_be_qualified(RulesColumns[i].type));
			else
				appendStringInfo(&sql, ", f.%s::%s", quote_identifier(RulesColumns[i].name),
								 format_type_be_qualified(RulesColumns[i].type));
		}
	}
	appendStringInfo(&sql, " FROM %s AS f WHERE %s", a->relation, TrainRowFilter(a));
	MemoryContextSwitchTo(oldcxt);

	batchcxt = AllocSetContextCreate(cxt, "icpml training batch", ALLOCSET_DEFAULT_SIZES);
	portal = SPI_cursor_open_with_args(NULL, sql.data, 0, NULL, NULL, NULL, true,
									   CURSOR_OPT_NO_SCROLL);
	for (;;)
	{
		uint64		r;
		SPITupleTable *tt;

		/* reading a big relation takes a while: let cancel in per batch */
		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, TRAIN_FETCH_ROWS);
		if (SPI_processed == 0)
			break;
		tt = SPI_tuptable;
		if (d->n + (int64) SPI_processed > cap)
		{
			while (d->n + (int64) SPI_processed > cap)
				cap *= 2;
			d->keys = repalloc_huge(d->keys, sizeof(int64) * cap);
			d->label = repalloc_huge(d->label, sizeof(float) * cap);
			if (d->nfeat > 0)
				d->x = repalloc_huge(d->x, sizeof(float) * cap * d->nfeat);
			if (rules)
				d->rules = repalloc_huge(d->rules, sizeof(double) * cap);
		}
		oldcxt = MemoryContextSwitchTo(batchcxt);
		for (r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = tt->vals[r];
			bool		isnull;
			double		y;

			d->keys[d->n] = DatumGetInt64(heap_getattr(tup, 1, tt->tupdesc, &isnull));
			y = DatumGetFloat8(heap_getattr(tup, 2, tt->tupdesc, &isnull));
			if (y != 0.0 && y != 1.0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("label column \"%s\" holds %g for key " INT64_FORMAT ", not 0 or 1",
								a->label, y, d->keys[d->n]),
						 errhint("A numeric label must be 0 (no fit) or 1 (fit); NULL marks unlabelled rows.")));
			d->label[d->n] = (float) y;
			d->npos += y == 1.0;
			if (spec)
				SpecEncodeRow(spec, tup, tt->tupdesc, 3, d->x + d->n * d->nfeat);
			if (rules)
			{
				Datum		values[RULE_NCOLUMNS];
				bool		nulls[RULE_NCOLUMNS];

				for (i = 0; i < RULE_NCOLUMNS; i++)
					values[i] = heap_getattr(tup, rules_first + i, tt->tupdesc, &nulls[i]);
				d->rules[d->n] = RulesProbability(values, nulls, NULL);
			}
			d->n++;
		}
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(batchcxt);
		SPI_freetuptable(tt);
	}
	SPI_cursor_close(portal);
	MemoryContextDelete(batchcxt);

	oldcxt = MemoryContextSwitchTo(cxt);
	TrainSortByKey(d);
	for (int64 j = 0; j < d->n; j++)
		if (j == 0 || d->keys[j] != d->keys[j - 1])
			d->nkeys++;
	MemoryContextSwitchTo(oldcxt);
	return d;
}

/*
 * Settings for the reading queries, undone by AtEOXact_GUC(true, level)
 * (or by the transaction's abort): jit = off, because compiling these
 * plain scans costs a quarter second per query and gains nothing.
 */
int
TrainReadSettings(void)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return level;
}

/* Minimum data guard: ERROR (nothing written) below the minimums. */
void
TrainGuard(const TrainArgs *a, const TrainData *d)
{
	int64		nneg = d->n - d->npos;

	if (d->n < TRAIN_MIN_ROWS || d->nkeys < TRAIN_MIN_KEYS || d->npos == 0 || nneg == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("not enough labelled data to train: " INT64_FORMAT " labelled rows (" INT64_FORMAT " positive, " INT64_FORMAT " negative) over " INT64_FORMAT " distinct keys in %s",
						d->n, d->npos, nneg, d->nkeys, a->relation),
				 errdetail("Training needs at least %d labelled rows, %d distinct keys and both classes.",
						   TRAIN_MIN_ROWS, TRAIN_MIN_KEYS),
				 errhint("Scoring keeps using the rules until enough rows have a label in column \"%s\".",
						 a->label)));
}

/* Check every fold can hold both classes. */
void
TrainGuardFolds(const TrainArgs *a, const TrainData *d)
{
	int64		kpos = 0,
				kneg = 0,
				i,
				j;

	for (i = 0; i < d->n; i = j)
	{
		bool		positive = false;

		for (j = i; j < d->n && d->keys[j] == d->keys[i]; j++)
			positive |= d->label[j] > 0.5f;
		if (positive)
			kpos++;
		else
			kneg++;
	}
	if (Min(kpos, kneg) < a->folds)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("folds (%d) is more than the " INT64_FORMAT " keys of the smaller class",
						a->folds, Min(kpos, kneg)),
				 errhint("Use fewer folds, or label more accounts of the rarer class.")));
}

