/* The training driver: data, model, masks, optimiser, epochs, evaluation,
 * logging and checkpoints for one run (`sparsetrain train`), and evaluation
 * of a saved checkpoint (`sparsetrain eval`). */
#ifndef ST_TRAIN_TRAINER_H
#define ST_TRAIN_TRAINER_H

#include <signal.h>
#include <stdint.h>

#include "data/dataset.h"
#include "sparsetrain.h"

#define ST_PATH_MAX 1024

/* Everything a run is made of; the flag names of `sparsetrain train` map 1:1, and each
 * field has one row (name, type, default, help, resume rule) in train/run_config.c. */
typedef struct st_train_config {
    char model[64];            /* --model (cifar_resnet_20) */
    char data[32];             /* --data (fashion-mnist) */
    char datadir[ST_PATH_MAX]; /* --datadir ("" = the data set's usual folder) */
    int batch_size;            /* --batch-size 128 */
    int test_batch_size;       /* --test-batch-size 100 */
    int epochs;                /* --epochs 160 */
    double lr;                 /* --lr 0.1 */
    double momentum;           /* --momentum 0.9 */
    double l2;                 /* --l2 5e-4 */
    char optimizer[16];        /* --optimizer sgd|adam */
    char lr_schedule[16];      /* --lr-schedule multistep|cosine */
    uint64_t seed;             /* --seed 17 */
    double valid_split;        /* --valid_split (NaN = the data set's default: 0.1, imagenet 0) */
    int sparse;                /* --sparse */
    int fix;                   /* --fix: static masks; --sparse without it is dynamic sparse training (DST) */
    char sparse_init[32];      /* --sparse_init ERK */
    double density;            /* --density 0.05 */
    double fc_density;         /* --fc_density 1.0 (ERK_plus) */
    char mask_sampling[16];    /* --mask-sampling bernoulli|exact */
    char execution[16];        /* --execution auto|sparse|mixed|dense (exec/policy.h) */
    int bf16;                  /* --bf16: bf16 sparse convolutions on CPUs with AVX512_BF16 (exec/bf16_exec.h) */
    int scaled;                /* --scaled (1), --scaled-per-layer (2) */
    int augment;               /* -1 = data set default (CIFAR and ImageNet yes, MNIST no) */
    int image_size;            /* --image-size: ImageFolder (imagenet) images are S x S (0 = 224) */
    char protocol[16];         /* --protocol sound|reference (docs/COMING-FROM-PYTORCH.md); "" in
                                  checkpoints written before it existed = sound */
    /* the ImageNet recipe (docs/IMAGENET.md); checkpoints written before these existed take the defaults */
    double label_smoothing;    /* --label-smoothing 0 */
    int warmup;                /* --warmup E: linear warm-up epochs (0) */
    int nesterov;              /* --nesterov 1 / --no-nesterov 0 (SGD) */
    int bn_weight_decay;       /* --bn-weight-decay 1 / --no-bn-weight-decay 0; -1 = the model's family
                                  (ImageNet models: none on 'bn' parameters, as the reference; others: all) */
    char model_config[16];     /* -c/--model-config classic|fanin (ImageNet models; "" = classic) */
    /* dynamic sparse training (train/mask_update.h, sparse/dst.h); used when sparse && !fix */
    int update_frequency;      /* --update_frequency 100: optimiser steps between mask updates */
    char death[16];            /* --death (alias --prune) magnitude|SET|threshold|Taylor_FO */
    char growth[16];           /* --growth random|random_unfired|gradient */
    char redistribution[16];   /* --redistribution none */
    double death_rate;         /* --death-rate (alias --prune-rate) 0.5: at the start, decaying to 0.005 */
    char decay_schedule[16];   /* --decay-schedule cosine|linear */
    /* run-time only (not part of the run's identity) */
    char resume[ST_PATH_MAX];  /* --resume */
    char save[ST_PATH_MAX];    /* --save ("" = no checkpoint) */
    char log[ST_PATH_MAX];     /* --log (JSON lines) */
    char run_dir[ST_PATH_MAX]; /* --run-dir ("" = none): locked for the run, must not be another run's (run_guard.h) */
    int threads;               /* --threads (0 = all cores) */
    int workers;               /* --workers: data loading threads (0 = 1 in memory, 2 for ImageFolder data) */
    int progress;              /* -1 auto (terminal), 0 plain lines, 1 bar */
    int stop_after;            /* --stop-after K: leave after K epochs of this invocation (0 = no) */
    int max_batches;           /* --max-batches: cap batches per epoch (0 = all; smoke tests) */
    int quiet;
    int force;                 /* --force: --save may overwrite a checkpoint of another run (run_guard.h) */
    int allow_empty_layers;    /* --allow-empty-layers: a sparse layer may keep 0 weights (run_guard.h) */
    int detect_anomaly;        /* --detect-anomaly: check inputs, outputs, weights and optimiser state every step */
    int log_interval;          /* --log-interval N: a plain "Train Epoch" line every N batches (0 = none) */
    int iters;                 /* --iters N: the CLI repeats the run with seeds seed..seed+N-1 (1) */
    /* The run-defining flags given on the command line, as argument keys
     * separated by commas ("density,epochs"): with --resume, each must agree
     * with the checkpoint's value, except those a resume may change
     * (epochs, datadir, test_batch_size; run_config.h). */
    char given[1024];
    char run_id[40];           /* set by st_train_run: new, or carried over by --resume (run_guard.h) */
    /* Set asynchronously (e.g. by a SIGINT handler) to ask the run to finish
     * its current step, save a checkpoint and return ST_ERR_INTERRUPTED. */
    const volatile sig_atomic_t *stop_flag;
} st_train_config;

typedef struct st_train_result {
    double test_acc;          /* last epoch's model */
    double best_test_acc;     /* best-on-validation model (= test_acc without validation) */
    double best_val_acc;
    int best_epoch;
    int epochs_done;
} st_train_result;

/* Every field at its default (train/run_config.c: the table of fields). */
void st_train_config_defaults(st_train_config *c);

/* ---------- a run as library calls ----------
 * st_trainer_create does the whole set-up (data, model, layer densities,
 * masks, initialisation, execution, optimiser, and --resume); then each
 * piece of a run is callable on its own:
 *   st_trainer_step        one optimiser step on one batch: zero the
 *                          gradients, forward, backward, the after_backward
 *                          hook, the optimiser, the after_step hook; or its
 *                          parts (st_trainer_zero_grad, st_trainer_accumulate
 *                          for each micro-batch, st_trainer_apply);
 *   st_trainer_train_epoch one epoch of steps (resuming mid-epoch);
 *   st_trainer_evaluate    accuracy and loss on the validation or test split;
 *   st_trainer_end_epoch   evaluation, best-on-validation snapshot, log line,
 *                          checkpoint;
 * and st_train_run chains them for `sparsetrain train`. The library prints
 * nothing: the hooks report set-up, progress and epochs to the caller. */
typedef struct st_trainer st_trainer;

typedef struct st_setup_layer {
    const char *name;
    int64_t numel, kept;
    double density;           /* as the distribution chose it */
} st_setup_layer;

typedef struct st_setup_report {
    const st_train_config *config;
    int64_t parameters, kept, prunable;
    int64_t train_images, valid_images, test_images;
    int threads;
    int n_layers;             /* prunable layers (sparse runs), with their densities */
    const st_setup_layer *layers;
    const char *execution;    /* "dense" or "sparse" */
    const char *precision;    /* with --bf16: "bf16 (...)" or "fp32: why not" (exec/bf16_exec.h); else NULL */
    double flop_density;
} st_setup_report;

typedef struct st_batch_report {
    int epoch, epochs;        /* 0-based epoch */
    int64_t done, total;      /* batches of this epoch */
    double loss, accuracy;    /* running means over the epoch */
    double images_per_s, elapsed_s;
    double batch_loss;        /* this batch's mean loss */
    int batch_images;
    int64_t correct, seen;    /* over the epoch so far (--log-interval prints them) */
    /* This batch alone, for the reference ImageNet script's per-batch columns: */
    double batch_seconds;     /* from the end of the previous batch to the end of this one's step (data wait included) */
    double data_seconds;      /* of that, the wait for the loader's batch */
    int batch_correct;        /* top-1 hits */
    int batch_top5;           /* top-5 hits; -1 with fewer than 5 classes */
} st_batch_report;

typedef struct st_epoch_report {
    int epoch, epochs;        /* 0-based epoch */
    double lr, train_loss, train_acc;
    double val_acc;           /* -1 without a validation split */
    double test_acc, test_loss, images_per_s, seconds;
    double test_top5;         /* fraction of test images whose label is among the 5 largest logits */
    int show_top5;            /* 1 for ImageNet-style data (the reference prints Prec@1 and Prec@5) */
    double itop_rate;         /* sparse runs: fraction of prunable positions ever active; -1 for a dense run */
} st_epoch_report;

/* Dynamic sparse training: one mask update (train/mask_update.h). */
typedef struct st_mask_update_report {
    int epoch;                /* 0-based */
    int64_t step, index;      /* the optimiser step it followed; its number in the run */
    double death_rate;
    int64_t removed, regrown, changed;
    double itop_rate, seconds;
    double dense_grad_seconds; /* the step's dense weight gradients (gradient growth), part of its backward */
} st_mask_update_report;

typedef struct st_train_hooks {
    void *user;
    /* Per-step work between backward and the optimiser (gradient
     * all-reduce, gradient-based mask updates) and after the optimiser (mask
     * updates); an error stops the run. */
    st_status (*after_backward)(st_trainer *t, void *user);
    st_status (*after_step)(st_trainer *t, void *user);
    /* Reports: once after set-up, after every batch, after every epoch. */
    void (*on_setup)(const st_setup_report *r, void *user);
    void (*on_batch)(const st_batch_report *r, void *user);
    void (*on_epoch)(const st_epoch_report *r, void *user);
    /* After every batch of the test pass (at the end of an epoch and in
     * st_trainer_evaluate_top5 of ST_SPLIT_TEST): epoch is the epoch just
     * trained, loss / accuracy running means over the pass, elapsed_s since
     * the pass began; `correct`, `seen` and the batch fields as for on_batch. */
    void (*on_eval_batch)(const st_batch_report *r, void *user);
    void (*on_mask_update)(const st_mask_update_report *r, void *user); /* after every mask update */
} st_train_hooks;

typedef enum st_split { ST_SPLIT_VALID = 0, ST_SPLIT_TEST = 1 } st_split;

/* hooks may be NULL; c must outlive the trainer. */
st_status st_trainer_create(st_train_config *c, const st_train_hooks *hooks, st_trainer **out);
void st_trainer_free(st_trainer *t);
struct st_model *st_trainer_model(st_trainer *t);
struct st_optimizer *st_trainer_optimizer(st_trainer *t);
/* Sparse runs: the ITOP record and mask-update state (train/mask_update.h); NULL for a dense run. */
struct st_mask_updater *st_trainer_mask_updater(st_trainer *t);
/* The learning rate of 0-based `epoch` under the run's schedule. */
double st_trainer_lr(const st_trainer *t, int epoch);

void st_trainer_zero_grad(st_trainer *t);
/* Forward + backward of one (micro-)batch, adding into the gradients. */
st_status st_trainer_accumulate(st_trainer *t, const st_batch *b, double *loss, int *correct);
/* after_backward hook, optimiser step at `lr`, after_step hook. */
st_status st_trainer_apply(st_trainer *t, double lr);
st_status st_trainer_step(st_trainer *t, const st_batch *b, double lr, double *loss, int *correct);

/* One epoch; *stopped = 1 when c->stop_flag ended it early (a checkpoint is
 * then saved with the position in the epoch). */
st_status st_trainer_train_epoch(st_trainer *t, int epoch, int *stopped);
st_status st_trainer_evaluate(st_trainer *t, st_split split, double *accuracy, double *loss);
/* The same with the top-5 accuracy (top5 may be NULL). */
st_status st_trainer_evaluate_top5(st_trainer *t, st_split split, double *accuracy, double *top5, double *loss);
st_status st_trainer_end_epoch(st_trainer *t, int epoch, st_train_result *result);
st_status st_trainer_save(st_trainer *t);

/* The whole run: epochs from where the checkpoint left off to c->epochs (or
 * c->stop_after of them). */
st_status st_train_run(st_train_config *c, const st_train_hooks *hooks, st_train_result *result);

/* Evaluation of a saved checkpoint (`sparsetrain eval`) lives in eval/eval_run.h. */

#endif
