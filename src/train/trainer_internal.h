/* What a run holds (trainer.h's st_trainer), shared by the set-up
 * (trainer.c) and the steps and epochs (step.c). */
#ifndef ST_TRAIN_TRAINER_INTERNAL_H
#define ST_TRAIN_TRAINER_INTERNAL_H

#include <stdio.h>

#include "data/dataset.h"
#include "eval/flops_summary.h"
#include "io/checkpoint.h"
#include "io/log_file.h"
#include "models/model.h"
#include "optim/optimizer.h"
#include "run/setup.h"
#include "train/run_guard.h"
#include "train/trainer.h"

struct st_trainer {
    st_train_config *c;
    st_train_hooks hooks;
    st_run_data data;           /* train / valid / test sets and loaders (run/setup.h) */
    st_model *model;
    st_optimizer opt;
    int keep_best;              /* a validation split exists: keep the best-on-validation copy */
    st_param_snapshot best;     /* that copy (with its own masks) */
    int64_t *best_tracked;      /* and of every BN's num_batches_tracked */
    int n_bn;
    char *args_json;
    st_log_file *log;           /* --log (io/log_file.h) */
    st_run_guard guard;         /* locks on --save and --run-dir, held while the trainer lives */
    st_checkpoint_info info;
    int saved;                  /* --save holds a checkpoint of this run (written, or the one resumed) */
    st_flops_summary flops;     /* of the masked model, for the log */
    struct st_mask_updater *updater; /* sparse runs: the ITOP record and (without --fix) the mask updates */
    st_status arm_status;       /* of the mask updater's arming in st_trainer_zero_grad, reported by the step */
    int64_t epoch_first_step;   /* optimiser steps before the epoch in progress (update FLOPs of the log) */
    st_setup_layer *layers;     /* the set-up report's layers (sparse runs) */
    int n_layers;
    const char *precision;      /* with --bf16: the set-up report's precision line (exec/bf16_exec.h) */
    /* the epoch in progress, for the end-of-epoch record */
    double epoch_loss_sum, epoch_seconds, epoch_t0;
    int64_t epoch_correct, epoch_seen, epoch_seen_at_start;
    int64_t epoch_batches;      /* batches trained in it (a checkpoint saved during its evaluation records them) */
    int batch_top5;             /* top-5 hits of the last batch accumulated; -1 with fewer than 5 classes */
};

#endif
