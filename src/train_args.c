/*
 * train_args.c — the arguments of train_icp_model() and cv_folds(): their
 * validation (errcode + hint for every bad value, before any data is read),
 * the whitelist of XGBoost parameters a caller may set with their ranges,
 * and the search grid (search => true: max_depth x eta).
 *
 * icpml's defaults are max_depth 3 and eta 0.1; XGBoost's fixed settings
 * (objective binary:logistic, tree_method hist, nthread icpml.nthread and
 * the seed) are set on every booster by TrainSetParams.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "parser/parse_coerce.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "icpml.h"
#include "relation.h"
#include "rules.h"
#include "train.h"

/*
 * The XGBoost parameters a caller may set, with their ranges and the alias
 * XGBoost's documentation gives them (accepted in params, stored under the
 * canonical name).
 */
typedef struct TrainParamDef
{
	const char *name;
	const char *alias;			/* or NULL */
	bool		integer;
	double		min;
	bool		min_open;		/* value must be > min rather than >= */
	double		max;
} TrainParamDef;

static const TrainParamDef TrainParamDefs[] = {
	{"max_depth", NULL, true, 1, false, 32},
	{"eta", "learning_rate", false, 0, true, 1},
	{"min_child_weight", NULL, false, 0, false, 1e9},
	{"subsample", NULL, false, 0, true, 1},
	{"colsample_bytree", NULL, false, 0, true, 1},
	{"lambda", "reg_lambda", false, 0, false, 1e9},
	{"alpha", "reg_alpha", false, 0, false, 1e9},
	{"gamma", "min_split_loss", false, 0, false, 1e9},
	{"max_bin", NULL, true, 2, false, 1024},
	{"scale_pos_weight", NULL, false, 0, true, 1e9},
	{"max_cat_to_onehot", NULL, true, 1, false, 64},
	{"colsample_bylevel", NULL, false, 0, true, 1},
	{"colsample_bynode", NULL, false, 0, true, 1},
	{"max_delta_step", NULL, false, 0, false, 1e9},
	{"max_leaves", NULL, true, 0, false, 1 << 20},
};

StaticAssertDecl(lengthof(TrainParamDefs) == TRAIN_NPARAMS, "a definition per parameter");

/* The search grid (search => true): max_depth x eta. */
static const int TrainGridDepth[] = {3, 5, 7};
static const double TrainGridEta[] = {0.05, 0.1, 0.3};

/* ERROR unless a required argument is given. */
static void
TrainRequire(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", name),
				 errhint("Omit the argument to use its default.")));
}

/* Resolve and check the key and label columns of a relation. */
static void
TrainCheckColumns(TrainArgs *a)
{
	AttrNumber	att;
	Oid			type;

	if (strcmp(a->key, a->label) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key_column and label_column are both \"%s\"", a->key),
				 errhint("Name the account key and the label column separately.")));

	att = get_attnum(a->relid, a->key);
	if (att == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("key column \"%s\" does not exist in %s", a->key, a->relation),
				 errhint("Pass key_column => the relation's account key column.")));
	type = getBaseType(get_atttype(a->relid, att));
	if (type != INT2OID && type != INT4OID && type != INT8OID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("key column \"%s\" of %s has type %s, not an integer type",
						a->key, a->relation, format_type_be(type)),
				 errhint("Account keys are bigint; expose an integer key in a view.")));

	att = get_attnum(a->relid, a->label);
	if (att == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("label column \"%s\" does not exist in %s", a->label, a->relation),
				 errhint("Pass label_column => a boolean (or 0/1) column; rows where it is NULL are not used.")));
	type = getBaseType(get_atttype(a->relid, att));
	a->label_is_bool = (type == BOOLOID);
	if (!a->label_is_bool && type != INT2OID && type != INT4OID && type != INT8OID &&
		type != FLOAT4OID && type != FLOAT8OID && type != NUMERICOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("label column \"%s\" of %s has type %s, not boolean or numeric",
						a->label, a->relation, format_type_be(type)),
				 errhint("The label must be boolean, or numeric holding 0 and 1 (NULL = unlabelled).")));
}

/*
 * Can the rules score this relation: at least one of their columns, each
 * column it has of a type the rules can read?  missing[i] marks the rule
 * columns it lacks (they read as NULL, as when scoring).
 */
static bool
TrainRelationHasRuleColumns(Oid relid, bool *missing)
{
	int			i,
				present = 0;

	for (i = 0; i < RULE_NCOLUMNS; i++)
	{
		AttrNumber	att = get_attnum(relid, RulesColumns[i].name);
		Oid			from,
					to = RulesColumns[i].type;

		missing[i] = (att == InvalidAttrNumber);
		if (missing[i])
			continue;
		from = get_atttype(relid, att);
		if (from != to && !can_coerce_type(1, &from, &to, COERCION_ASSIGNMENT))
			return false;
		present++;
	}
	return present > 0;
}

/* The valid parameter names, aliases in parentheses, for messages. */
static char *
TrainParamList(void)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < TRAIN_NPARAMS; i++)
	{
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", TrainParamDefs[i].name);
		if (TrainParamDefs[i].alias)
			appendStringInfo(&buf, " (or %s)", TrainParamDefs[i].alias);
	}
	return buf.data;
}

/*
 * Parse the encoding jsonb (how text columns become levels): fold_text,
 * max_levels, max_tags, min_count; anything else is refused.
 */
static void
TrainParseEncoding(Jsonb *json, SpecEncoding *enc)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;
	int			depth = 0;

	SpecEncodingDefaults(enc);
	if (!JB_ROOT_IS_OBJECT(json))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("encoding must be a JSON object"),
				 errhint("Pass e.g. encoding => '{\"fold_text\": true, \"max_levels\": 100}'.")));
	it = JsonbIteratorInit(&json->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_BEGIN_OBJECT || tok == WJB_BEGIN_ARRAY)
			depth++;
		else if (tok == WJB_END_OBJECT || tok == WJB_END_ARRAY)
			depth--;
		if (tok == WJB_KEY)
		{
			key = pnstrdup(v.val.string.val, v.val.string.len);
			continue;
		}
		if (tok != WJB_VALUE || depth != 1)
			continue;
		if (strcmp(key, "fold_text") == 0)
		{
			if (v.type != jbvBool)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("encoding option \"fold_text\" must be true or false")));
			enc->fold_text = v.val.boolean;
		}
		else if (strcmp(key, "max_levels") == 0 || strcmp(key, "max_tags") == 0 ||
				 strcmp(key, "min_count") == 0)
		{
			int			max = strcmp(key, "max_levels") == 0 ? SPEC_LIMIT_LEVELS :
				strcmp(key, "max_tags") == 0 ? SPEC_LIMIT_TAGS : 1000000;
			double		d;

			if (v.type != jbvNumeric)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("encoding option \"%s\" must be a number", key)));
			d = DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v.val.numeric)));
			if (!(d >= 1 && d <= max) || d != floor(d))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("encoding option \"%s\" is %g, outside its range", key, d),
						 errhint("%s must be an integer from 1 to %d.", key, max)));
			if (strcmp(key, "max_levels") == 0)
				enc->max_levels = (int) d;
			else if (strcmp(key, "max_tags") == 0)
				enc->max_tags = (int) d;
			else
				enc->min_count = (int) d;
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown encoding option \"%s\"", key),
					 errdetail("Valid options: fold_text (boolean, default false), max_levels (default %d, at most %d), max_tags (default %d, at most %d), min_count (default %d).",
							   SPEC_DEFAULT_MAX_LEVELS, SPEC_LIMIT_LEVELS, SPEC_DEFAULT_MAX_TAGS,
							   SPEC_LIMIT_TAGS, SPEC_DEFAULT_MIN_COUNT)));
	}
}

/* Parse and check params jsonb against the whitelist. */
static void
TrainParseParams(Jsonb *json, TrainParams *p)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	if (!JB_ROOT_IS_OBJECT(json))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("params must be a JSON object"),
				 errhint("Pass e.g. params => '{\"max_depth\": 4, \"eta\": 0.1}'.")));

	it = JsonbIteratorInit(&json->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		int			i;
		double		d;
		const TrainParamDef *def;

		if (tok == WJB_KEY)
		{
			key = pnstrdup(v.val.string.val, v.val.string.len);
			continue;
		}
		if (tok != WJB_VALUE)
			continue;
		for (i = 0; i < TRAIN_NPARAMS; i++)
			if (strcmp(key, TrainParamDefs[i].name) == 0 ||
				(TrainParamDefs[i].alias && strcmp(key, TrainParamDefs[i].alias) == 0))
				break;
		if (i == TRAIN_NPARAMS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown XGBoost parameter \"%s\" in params", key),
					 errdetail("Valid parameters: %s.", TrainParamList()),
					 errhint("icpml sets objective, tree_method, nthread and seed itself; n_rounds, folds and seed are arguments of train_icp_model.")));
		def = &TrainParamDefs[i];
		if (p->set[i])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("parameter \"%s\" is given twice in params", def->name),
					 errhint("%s and %s are the same parameter; give one.", def->name, def->alias)));
		if (v.type != jbvNumeric)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("parameter \"%s\" must be a number", key)));
		d = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
											   NumericGetDatum(v.val.numeric)));
		if (isnan(d) || d < def->min || (def->min_open && d <= def->min) || d > def->max ||
			(def->integer && d != floor(d)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("parameter \"%s\" is %g, outside its range", key, d),
					 errhint("%s must be %s%s %.15g and at most %.15g.", key,
							 def->integer ? "an integer " : "",
							 def->min_open ? "greater than" : "at least", def->min, def->max)));
		p->set[i] = true;
		p->value[i] = d;
	}
}

/* Validate every argument of train_icp_model / cv_folds into *a. */
void
TrainParseArgs(FunctionCallInfo fcinfo, TrainArgs *a, bool training)
{
	char	   *relation;
	int			folds_arg = training ? 4 : 3;
	int			seed_arg = training ? 8 : 4;

	memset(a, 0, sizeof(*a));
	relation = PG_ARGISNULL(0) ? icpml_feature_relation : text_to_cstring(PG_GETARG_TEXT_PP(0));
	a->key = PG_ARGISNULL(1) ? pstrdup(icpml_feature_key) : text_to_cstring(PG_GETARG_TEXT_PP(1));
	TrainRequire(fcinfo, 2, "label_column");
	a->label = text_to_cstring(PG_GETARG_TEXT_PP(2));
	TrainRequire(fcinfo, folds_arg, "folds");
	a->folds = PG_GETARG_INT32(folds_arg);
	TrainRequire(fcinfo, seed_arg, "seed");
	a->seed = PG_GETARG_INT32(seed_arg);
	if (a->folds < 2 || a->folds > TRAIN_MAX_FOLDS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("folds must be between 2 and %d, not %d", TRAIN_MAX_FOLDS, a->folds)));

	if (training)
	{
		TrainRequire(fcinfo, 3, "exclude_columns");
		TrainRequire(fcinfo, 5, "n_rounds");
		TrainRequire(fcinfo, 6, "params");
		TrainRequire(fcinfo, 7, "search");
		TrainRequire(fcinfo, 9, "deploy");
		TrainRequire(fcinfo, 10, "encoding");
		TrainParseEncoding(PG_GETARG_JSONB_P(10), &a->encoding);
		a->n_rounds = PG_GETARG_INT32(5);
		a->search = PG_GETARG_BOOL(7);
		a->deploy = text_to_cstring(PG_GETARG_TEXT_PP(9));
		if (a->n_rounds < 1 || a->n_rounds > TRAIN_MAX_ROUNDS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("n_rounds must be between 1 and %d, not %d", TRAIN_MAX_ROUNDS, a->n_rounds)));
		if (strcmp(a->deploy, "best") != 0 && strcmp(a->deploy, "always") != 0 &&
			strcmp(a->deploy, "never") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown deploy policy \"%s\"", a->deploy),
					 errhint("Use 'best' (deploy only if it beats the deployed model, or the rules), 'always' or 'never'.")));

		/* icpml's defaults; the caller's params override them */
		a->params.set[TRAIN_P_MAX_DEPTH] = true;
		a->params.value[TRAIN_P_MAX_DEPTH] = 3;
		a->params.set[TRAIN_P_ETA] = true;
		a->params.value[TRAIN_P_ETA] = 0.1;
		{
			TrainParams given;

			memset(&given, 0, sizeof(given));
			TrainParseParams(PG_GETARG_JSONB_P(6), &given);
			if (a->search && (given.set[TRAIN_P_MAX_DEPTH] || given.set[TRAIN_P_ETA]))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("params sets max_depth or eta, which search => true chooses"),
						 errhint("Drop them from params, or train with search => false.")));
			for (int i = 0; i < TRAIN_NPARAMS; i++)
				if (given.set[i])
				{
					a->params.set[i] = true;
					a->params.value[i] = given.value[i];
				}
		}
	}

	a->relid = RelationResolveFeatures(relation, &a->relation);
	TrainCheckColumns(a);

	if (training)
	{
		ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(3);
		Datum	   *elems;
		bool	   *enulls;
		int			n,
					i;

		deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &n);
		for (i = 0; i < n; i++)
		{
			char	   *name;

			if (enulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("exclude_columns must not contain NULL")));
			name = TextDatumGetCString(elems[i]);
			if (get_attnum(a->relid, name) == InvalidAttrNumber)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("exclude_columns names column \"%s\", which %s does not have",
								name, a->relation)));
			a->exclude = lappend(a->exclude, name);
		}
		a->rule_missing = palloc0(sizeof(bool) * RULE_NCOLUMNS);
		a->rules = TrainRelationHasRuleColumns(a->relid, a->rule_missing);
	}
}

/* The recipe of a stored model from its params jsonb (see train.h). */
void
TrainParamsFromJsonb(Jsonb *params, TrainParams *p, int *n_rounds, int32 *seed)
{
	int			i;

	memset(p, 0, sizeof(*p));
	*n_rounds = 0;
	*seed = 0;
	if (params == NULL || !JB_ROOT_IS_OBJECT(params))
		return;
	for (i = -2; i < TRAIN_NPARAMS; i++)
	{
		const char *name = i == -2 ? "n_rounds" : i == -1 ? "seed" : TrainParamDefs[i].name;
		JsonbValue	k,
				   *v;

		k.type = jbvString;
		k.val.string.val = (char *) name;
		k.val.string.len = strlen(name);
		v = findJsonbValueFromContainer(&params->root, JB_FOBJECT, &k);
		if (v == NULL || v->type != jbvNumeric)
			continue;
		if (i == -2)
			*n_rounds = DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v->val.numeric)));
		else if (i == -1)
			*seed = DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v->val.numeric)));
		else
		{
			p->set[i] = true;
			p->value[i] = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
															 NumericGetDatum(v->val.numeric)));
		}
	}
}

/* Do two settings set the same parameters to the same values? */
bool
TrainParamsEqual(const TrainParams *a, const TrainParams *b)
{
	int			i;

	for (i = 0; i < TRAIN_NPARAMS; i++)
		if (a->set[i] != b->set[i] || (a->set[i] && a->value[i] != b->value[i]))
			return false;
	return true;
}

/* Format a parameter value for XGBoost. */
char *
TrainParamText(int i, double v)
{
	if (TrainParamDefs[i].integer)
		return psprintf("%d", (int) v);
	return psprintf("%.15g", v);
}

/* Set icpml's fixed params and the chosen ones on a booster. */
void
TrainSetParams(XgbBooster *b, const TrainParams *p, int32 seed)
{
	int			i;

	XgbBoosterSetParam(b, "objective", "binary:logistic");
	XgbBoosterSetParam(b, "tree_method", "hist");
	XgbBoosterSetParam(b, "nthread", psprintf("%d", icpml_nthread));
	XgbBoosterSetParam(b, "seed", psprintf("%d", seed));
	for (i = 0; i < TRAIN_NPARAMS; i++)
		if (p->set[i])
			XgbBoosterSetParam(b, TrainParamDefs[i].name, TrainParamText(i, p->value[i]));
}

/*
 * The params jsonb of a model: XGBoost's fixed settings, the settable
 * parameters that are set, and the training's seed, rounds, folds and search.
 */
Jsonb *
TrainParamsJsonb(const TrainArgs *a, const TrainParams *p)
{
	StringInfoData buf;
	int			i,
				n = 0;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"objective\": \"binary:logistic\", \"tree_method\": \"hist\", ");
	for (i = 0; i < TRAIN_NPARAMS; i++)
		if (p->set[i])
		{
			appendStringInfo(&buf, "%s\"%s\": %s", n++ > 0 ? ", " : "",
							 TrainParamDefs[i].name, TrainParamText(i, p->value[i]));
		}
	appendStringInfo(&buf, ", \"seed\": %d, \"n_rounds\": %d, \"folds\": %d, \"search\": %s}",
					 a->seed, a->n_rounds, a->folds, a->search ? "true" : "false");
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/* How many parameter settings to cross-validate: the grid with search, else one. */
int
TrainSearchSize(const TrainArgs *a)
{
	return a->search ? lengthof(TrainGridDepth) * lengthof(TrainGridEta) : 1;
}

/* Setting i of the search: the arguments' params, with the grid's max_depth and eta. */
void
TrainSearchSetting(const TrainArgs *a, int i, TrainParams *out)
{
	*out = a->params;
	if (a->search)
	{
		out->set[TRAIN_P_MAX_DEPTH] = true;
		out->value[TRAIN_P_MAX_DEPTH] = TrainGridDepth[i / lengthof(TrainGridEta)];
		out->set[TRAIN_P_ETA] = true;
		out->value[TRAIN_P_ETA] = TrainGridEta[i % lengthof(TrainGridEta)];
	}
}
