/*
 * icpml.c — module entry: PG_MODULE_MAGIC and the GUCs.
 *
 * _PG_init defines GUCs and nothing else: icpml may be loaded into the
 * postmaster (shared_preload_libraries), and libgomp's thread pool does not
 * survive fork, so no XGBoost or OpenMP work may happen here.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "icpml.h"
#include "relation.h"

PG_MODULE_MAGIC;

int			icpml_nthread = 1;
char	   *icpml_feature_relation = NULL;
char	   *icpml_feature_key = NULL;
int			icpml_top_factors = 3;
int			icpml_max_batch_size = 1000000;
char	   *icpml_interactions_relation = NULL;

void		_PG_init(void);

/* Define icpml's GUCs. */
void
_PG_init(void)
{
	DefineCustomIntVariable("icpml.nthread",
							"Threads XGBoost may use for training and prediction.",
							"Scoring runs inside a backend; keep 1 unless a dedicated session trains. Only superusers (or roles granted SET on it) may change it.",
							&icpml_nthread,
							1, 1, 64,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("icpml.feature_relation",
							   "Table or view holding one row of ICP features per account.",
							   "Read as the calling user, so row-level security applies; it decides what a caller may see, so only superusers and roles granted the privilege may change it.",
							   &icpml_feature_relation,
							   "public.account_features",
							   PGC_SUSET, 0,
							   RelationNameCheckHook, NULL, NULL);

	DefineCustomStringVariable("icpml.feature_key",
							   "Account key column of icpml.feature_relation.",
							   "Only superusers and roles granted the privilege may change it.",
							   &icpml_feature_key,
							   "account_id",
							   PGC_SUSET, 0,
							   RelationColumnCheckHook, NULL, NULL);

	DefineCustomIntVariable("icpml.top_factors",
							"How many factors icp_score reports per account.",
							NULL,
							&icpml_top_factors,
							3, 0, 32,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("icpml.max_batch_size",
							"Largest array icp_score_batch accepts.",
							"Score larger sets in chunks. Only superusers (or roles granted SET on it) may change it.",
							&icpml_max_batch_size,
							1000000, 1, 100000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("icpml.interactions_relation",
							   "Table of user interactions (user_id, account_id, interaction_type, created_at) the recommender learns from.",
							   "Read as the calling user, so row-level security applies; only superusers and roles granted the privilege may change it.",
							   &icpml_interactions_relation,
							   "public.user_interactions",
							   PGC_SUSET, 0,
							   RelationNameCheckHook, NULL, NULL);

	MarkGUCPrefixReserved("icpml");
}
