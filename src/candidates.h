/*
 * candidates.h — icpml.account_candidates, the retrieval stage's
 * materialised candidates (candidates.c): what the scoring functions call
 * as they score, and the feature columns the recommender reads.
 */
#ifndef ICPML_CANDIDATES_H
#define ICPML_CANDIDATES_H

#include "postgres.h"

#include "relation.h"

/*
 * The recommender's feature columns, read from icpml.feature_relation
 * (materialised into account_candidates; read live before any scoring).
 */
#define CANDIDATES_NCOLUMNS 9
extern const RelationColumn CandidatesColumns[CANDIDATES_NCOLUMNS];

/* Their positions in a row read with CandidatesColumns (0 is the key). */
#define CAND_COL_INDUSTRY 1
#define CAND_COL_ENG_ROLES 2
#define CAND_COL_HIRING 3
#define CAND_COL_OPEN_ROLES 4
#define CAND_COL_BLOG 5
#define CAND_COL_SIZE 6
#define CAND_COL_FUNDING_DATE 7
#define CAND_COL_RESEARCHED_AT 8
#define CAND_COL_TECH_STACK 9

/*
 * After writing a batch of icpml.account_scores, inside SPI_connect and as
 * the scoring function's caller: read the feature rows of those accounts
 * (as the caller) and upsert them with their probability, score and
 * priority into icpml.account_candidates (as the owner).  ids int8[],
 * probabilities float8[], scores int4[], priorities text[], of equal
 * length.  Does nothing when the feature relation lacks the recommender's
 * columns (scoring never fails because of the recommender).
 */
extern void CandidatesStore(Datum ids, Datum probabilities, Datum scores, Datum priorities);

/* Drop accounts (int8[]) the scoring functions dropped from account_scores. */
extern void CandidatesForget(Datum ids);

/*
 * After a run that rewrote account_scores as a whole: drop the candidates
 * no longer in account_scores (inside SPI_connect).
 */
extern void CandidatesPrune(void);

/* The reader of CandidatesColumns (shared with recommend.c's live path). */
extern RelationReader *CandidatesReader(void);

#endif							/* ICPML_CANDIDATES_H */
