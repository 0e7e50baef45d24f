/* Behaviour of the reference code (VITA-Group/Random_Pruning, CIFAR/main.py)
 * that `sparsetrain train` reproduces on request: --protocol reference (its
 * data splits and model selection). (--log-interval's per-batch lines are
 * printed by the CLI, cli/train_output.c.)
 * Side by side with our defaults in docs/COMING-FROM-PYTORCH.md. */
#ifndef ST_TRAIN_COMPAT_H
#define ST_TRAIN_COMPAT_H

#include <stdint.h>

#include "data/dataset.h"
#include "train/trainer.h"

/* ST_ERR_ARGUMENT unless --protocol is "sound" or "reference" ("" = sound). */
st_status st_protocol_validate(const st_train_config *c);

/* The validation fraction held out of the training set: --valid_split, except
 * 0 for CIFAR-100 under --protocol reference (it trains on all 50,000). */
double st_protocol_valid_split(const st_train_config *c);

/* 1 when the best epoch is selected on the test set (the reference's
 * CIFAR-100: its validation loader is the test loader). */
int st_protocol_selects_on_test(const st_train_config *c);

/* 1 when validation images are augmented like the training images (the
 * reference's CIFAR-10: its validation split shares the training transform). */
int st_protocol_augments_validation(const st_train_config *c);

/* Under --protocol reference, the reference's normalisation constants
 * (CIFAR-100 with all their digits) for both splits. */
void st_protocol_adjust_data(const st_train_config *c, st_dataset *train, st_dataset *test);


#endif
