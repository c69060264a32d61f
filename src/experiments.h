/*
 * experiments.h — A/B tests between recommendation policies: the hashed
 * assignment of users to variants (experiments.c).
 */
#ifndef ICPML_EXPERIMENTS_H
#define ICPML_EXPERIMENTS_H

#include "postgres.h"

#include "utils/uuid.h"

/*
 * The variant index (0 .. n-1) a user is assigned to in an experiment with
 * these variant weights, or EXPERIMENT_HOLDOUT when the user falls in the
 * holdout share (0: none); the same in every backend, server and release.
 */
#define EXPERIMENT_HOLDOUT (-2)

extern int	ExperimentAssign(const char *experiment, const pg_uuid_t *user,
							 const double *weights, int n, double holdout);

#endif							/* ICPML_EXPERIMENTS_H */
