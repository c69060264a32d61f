/*
 * relation.h — the user's relations icpml reads, as the caller
 * (relation.c): resolving them and reading feature rows.
 */
#ifndef ICPML_RELATION_H
#define ICPML_RELATION_H

#include "access/tupdesc.h"
#include "executor/spi.h"
#include "utils/guc.h"

typedef struct RelationColumn
{
	const char *name;			/* column name in the feature relation */
	Oid			type;			/* type it is read as (explicit cast) */
	bool		optional;		/* a relation without it reads NULL */
} RelationColumn;

/* At most this many columns per reader. */
#define RELATION_MAX_COLUMNS 64

/*
 * A prepared reader over icpml.feature_relation for a fixed column list.
 * Column 0 of every result is the key (int8); column i+1 is cols[i].
 * Lives in TopMemoryContext; revalidated when the GUCs change.
 */
typedef struct RelationReader
{
	const RelationColumn *cols;
	int			ncols;
	/*
	 * Said in a NOTICE, once per build, after the names of the optional
	 * columns the relation lacks (what their absence means to the reader's
	 * owner); missing[i] marks them.
	 */
	const char *missing_note;
	bool		missing[RELATION_MAX_COLUMNS];
	Oid			relid;			/* the relation it was built for */
	bool		stale;			/* the relation changed (relcache): rebuild */
	char	   *relation_setting;	/* icpml.feature_relation it was built for */
	char	   *key_setting;	/* icpml.feature_key it was built for */
	char	   *relation_display;	/* qualified, quoted name for messages */
	SPIPlanPtr	plan_one;		/* WHERE key = $1 */
	SPIPlanPtr	plan_many;		/* WHERE key = ANY($1) */
	SPIPlanPtr	plan_all;		/* every row (for cursors) */
	SPIPlanPtr	plan_many_large;	/* WHERE key = ANY($1), planned per call */
} RelationReader;

/* Which rows a plan reads. */
typedef enum RelationScope
{
	RELATION_ONE,				/* $1 int8 */
	RELATION_MANY,				/* $1 int8[] */
	RELATION_ALL,
	RELATION_MANY_LARGE			/* $1 int8[] of many keys: a custom plan per
								 * call, so that the planner may read the
								 * whole relation instead of probing each key */
} RelationScope;

#define RELATION_NSCOPES 4
/* arrays of at least this many keys are read with RELATION_MANY_LARGE */
#define RELATION_LARGE_ARRAY 1000

extern SPIPlanPtr RelationReaderPlan(RelationReader *reader, RelationScope scope);

/*
 * Prepare (and keep) the plan of one scope over `relation_display`
 * (already resolved and quoted) for `select_list` (which must start with
 * the key as int8); inside SPI_connect.
 */
extern SPIPlanPtr RelationPlanBuild(const char *select_list, const char *relation_display,
									const char *key, RelationScope scope);

/* The plans of every scope (old plans in plans[] are freed first). */
extern void RelationPlansBuild(const char *select_list, const char *relation_display,
							   const char *key, SPIPlanPtr plans[RELATION_NSCOPES]);

/* Resolve a relation a setting names; ERROR with a hint when unusable. */
extern Oid	RelationResolve(const char *setting, const char *kind, const char *guc,
							const char *empty_hint, char **display);
extern Oid	RelationResolveFeatures(const char *setting, char **display);

/*
 * Quoted, schema-qualified name of icpml.interactions_relation, checked to
 * have the columns the recommender reads; ERROR with a hint otherwise.
 */
extern char *RelationResolveInteractions(void);

/*
 * The relation a model's spec names (stored text, never SQL): parsed as a
 * qualified name, resolved, checked to be a table or view; returns its
 * quoted, schema-qualified name.  ERROR (data_corrupted) when the stored
 * text is not a name, (undefined_table) when it names nothing.
 */
extern char *RelationResolveStored(const char *stored, int32 version);

/*
 * ERROR unless each of columns[] exists in desc (a trigger's transition
 * table of interactions relation `relname`) with a built-in type (or a
 * domain over one); `reader` names the trigger in the hint.
 */
extern void RelationCheckBuiltinColumns(TupleDesc desc, const char *relname,
										const char *const *columns, int ncolumns,
										const char *reader);

/* Is text a syntactically valid (1 to 3 part) relation name? */
extern bool RelationNameIsValid(const char *name);

/* GUC check hooks: a relation name (feature, interactions), a column name. */
extern bool RelationNameCheckHook(char **newval, void **extra, GucSource source);
extern bool RelationColumnCheckHook(char **newval, void **extra, GucSource source);

#endif							/* ICPML_RELATION_H */
