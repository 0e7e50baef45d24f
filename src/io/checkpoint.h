/* Checkpoints: a safetensors file holding the model's state_dict under its
 * PyTorch names, the masks ("mask.<weight>", U8, 1 = kept), the optimiser
 * state ("optim.<param>.<state>"), optionally the best-on-validation weights
 * ("best.<name>"), and metadata (format, model, shapes, epoch, step, seed,
 * the run's arguments as JSON). See docs/FORMATS.md. */
#ifndef ST_IO_CHECKPOINT_H
#define ST_IO_CHECKPOINT_H

#include <stdint.h>

#include "io/safetensors.h"
#include "models/model.h"
#include "optim/optimizer.h"

#define ST_CHECKPOINT_FORMAT "sparsetrain-checkpoint-1"
#define ST_CHECKPOINT_MAX_LAYERS 1024 /* layer densities recorded for at most this many prunable layers */

typedef struct st_checkpoint_info {
    int epoch;                /* completed epochs */
    int64_t step;             /* optimiser steps taken */
    double best_val_acc;      /* -1 when there is no validation split */
    double best_test_acc;     /* test accuracy of the best-on-validation epoch */
    int best_epoch;
    const char *args_json;    /* the run's arguments (written as metadata "args") */
    const char *data;         /* data set name */
    const char *run_id;       /* the run this checkpoint belongs to (metadata "run_id"; NULL = none) */
    uint64_t seed;
    int64_t batch_in_epoch;   /* batches of epoch `epoch` already done (interrupted mid-epoch) */
    double epoch_loss_sum;    /* partial-epoch accumulators, restored on resume */
    int force;                /* saving may replace a file at the path that is not a checkpoint (--force) */
    int64_t epoch_correct, epoch_seen;
    /* Target density of every prunable layer (parameter order) as the run's
     * --sparse_init chose it; written as metadata "layer_densities" =
     * {"<weight name>": d, ...} when n_layer_densities > 0 (it must then equal
     * the model's prunable layer count). Held inline so that the info stays a
     * plain value with nothing to free. */
    int n_layer_densities;
    double layer_densities[ST_CHECKPOINT_MAX_LAYERS];
    /* The ITOP record (train/mask_update.h): per param, numel bytes (1 = ever
     * active) or NULL; written as "itop.<weight>" (U8). NULL table = none.
     * Not owned; st_checkpoint_read_info leaves it NULL. */
    uint8_t *const *itop;
    /* --growth momentum (train/mask_update.h): per param, the dense momentum
     * (numel floats) or NULL; written as "dst_momentum.<weight>" and, with
     * Adam, "dst_momentum2.<weight>" (F32). NULL tables = none. Not owned. */
    float *const *growth_momentum;
    float *const *growth_momentum2;
} st_checkpoint_info;

/* Reads the st_checkpoint_info numbers back from metadata (args_json and
 * data point into `f`); layer_densities when present (else n = 0). */
st_status st_checkpoint_read_info(const st_safetensors *f, const char *path, st_checkpoint_info *info);

/* Writes model (+ optimizer if not NULL, + the best copy if `best` is not
 * NULL: a snapshot of the model's store, written as "best.<name>" in dense
 * form under its own mask, plus "best.mask.<weight>" for every weight whose
 * mask has moved since the snapshot) atomically to path. */
st_status st_checkpoint_save(const char *path, const st_model *m, const st_optimizer *opt,
                             const st_param_snapshot *best, const int64_t *best_num_batches_tracked,
                             const st_checkpoint_info *info);

/* Opens and validates that `f` is a sparsetrain checkpoint; fills the model
 * description from its metadata. */
st_status st_checkpoint_describe(const st_safetensors *f, const char *path, char *model, size_t model_size,
                                 int *num_classes, int *in_channels, int *in_height, int *in_width);

/* Loads weights, buffers and masks of a model built to the checkpoint's
 * description; every tensor must be present with the right shape. With
 * prefix "best." loads the best-on-validation copy instead (if present),
 * under its own mask "best.mask.<weight>" where the file has one, else
 * under "mask.<weight>". */
st_status st_checkpoint_load_model(const st_safetensors *f, const char *path, st_model *m, const char *prefix);
/* The ITOP record "itop.<weight>" of every prunable weight into
 * fired[param] (numel bytes each, allocated here, caller frees; NULL where
 * the file has none); *found = how many the file has. */
st_status st_checkpoint_load_itop(const st_safetensors *f, const char *path, const st_model *m, uint8_t **fired,
                                  int *found);
/* The dense momentum buffers of --growth momentum ("dst_momentum.<weight>",
 * "dst_momentum2.<weight>") into m1[param] / m2[param] (numel floats each,
 * allocated here, caller frees; NULL where the file has none); *found = how
 * many "dst_momentum." tensors the file has. */
st_status st_checkpoint_load_growth_momentum(const st_safetensors *f, const char *path, const st_model *m, float **m1,
                                             float **m2, int *found);
/* Loads optimiser state and step count. */
st_status st_checkpoint_load_optimizer(const st_safetensors *f, const char *path, const st_model *m,
                                       st_optimizer *opt);

#endif
