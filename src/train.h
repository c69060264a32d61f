/*
 * train.h — training of the ICP model (train.c): cross-validation, refit,
 * and the fold assignment shared with icpml.cv_folds().
 */
#ifndef ICPML_TRAIN_H
#define ICPML_TRAIN_H

#include "postgres.h"

/*
 * Transaction-level advisory lock held while a training runs, so two
 * trainings never overlap: key hashtext('icpml.train_icp_model')::bigint,
 * the same as icpml.training_lock_key() (schedule), so icpml.run_training
 * can take it first (advisory locks are re-entrant within a session).
 */
#define ICPML_TRAIN_LOCK_NAME "icpml.train_icp_model"

/* Training refuses below these (the seed plan's minimums). */
#define TRAIN_MIN_ROWS 50
#define TRAIN_MIN_KEYS 20

/*
 * Stratified, shuffled k-fold assignment.  keys[] must be sorted
 * ascending; rows sharing a key get the same fold (a key is positive when
 * any of its rows is).  Keys of each class are shuffled with a splitmix64
 * stream seeded from `seed` (Fisher-Yates), then dealt round-robin to the
 * folds, positives first and the negatives continuing the count, so fold
 * sizes differ by at most one key and every fold gets floor(P/k) or
 * ceil(P/k) positive keys.  fold[i] is 0..k-1.
 */
extern void TrainAssignFolds(const int64 *keys, const float *labels, int64 n,
							 int k, int32 seed, int *fold);

#endif							/* ICPML_TRAIN_H */
