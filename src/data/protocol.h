/* Behaviour of the reference code (VITA-Group/Random_Pruning, CIFAR/main.py
 * and sparselearning/utils.py) that `sparsetrain train` reproduces on
 * request: --protocol reference, its data splits and model selection. Side by
 * side with our default ("sound") in docs/COMING-FROM-PYTORCH.md. (Its
 * per-batch lines, --log-interval, are printed by cli/train_output.c.) */
#ifndef ST_DATA_PROTOCOL_H
#define ST_DATA_PROTOCOL_H

#include "data/dataset.h"

/* ST_ERR_ARGUMENT unless `protocol` is "sound" or "reference" (NULL or "" = sound). */
st_status st_protocol_validate(const char *protocol);

/* 1 when the best epoch is selected on the test set and the whole training
 * set is trained on (the reference's CIFAR-100: its loader ignores
 * --valid_split and its validation loader is the test loader). */
int st_protocol_selects_on_test(const char *protocol, const char *data);

/* 1 when validation images are augmented like the training images (the
 * reference's CIFAR-10: its validation split shares the training transform). */
int st_protocol_augments_validation(const char *protocol, const char *data);

/* Under --protocol reference, the reference's normalisation constants
 * (CIFAR-100 with all their digits) for the given splits (NULL skipped). */
void st_protocol_adjust_data(const char *protocol, const char *data, st_dataset *train, st_dataset *test);

#endif
