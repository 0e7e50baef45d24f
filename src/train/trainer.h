/* The training driver: data, model, masks, optimiser, epochs, evaluation,
 * logging and checkpoints for one run (`sparsetrain train`), and evaluation
 * of a saved checkpoint (`sparsetrain eval`). */
#ifndef ST_TRAIN_TRAINER_H
#define ST_TRAIN_TRAINER_H

#include <signal.h>
#include <stdint.h>

#include "sparsetrain.h"

#define ST_PATH_MAX 1024

/* Everything a run is made of; the flag names of `sparsetrain train` map 1:1. */
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
    double valid_split;        /* --valid_split 0.1 */
    int sparse;                /* --sparse */
    int fix;                   /* --fix (static masks; dynamic sparse training is not built yet) */
    char sparse_init[32];      /* --sparse_init ERK */
    double density;            /* --density 0.05 */
    double fc_density;         /* --fc_density 1.0 (ERK_plus) */
    char mask_sampling[16];    /* --mask-sampling bernoulli|exact */
    char execution[16];        /* --execution auto|sparse|dense (models/execution.h) */
    int scaled;                /* --scaled (1), --scaled-per-layer (2) */
    int augment;               /* -1 = data set default (CIFAR yes, MNIST no) */
    /* run-time only (not part of the run's identity) */
    char resume[ST_PATH_MAX];  /* --resume */
    char save[ST_PATH_MAX];    /* --save ("" = no checkpoint) */
    char log[ST_PATH_MAX];     /* --log (JSON lines) */
    char run_dir[ST_PATH_MAX]; /* --run-dir ("" = none): locked for the run, must not be another run's (run_guard.h) */
    int threads;               /* --threads (0 = all cores) */
    int progress;              /* -1 auto (terminal), 0 plain lines, 1 bar */
    int stop_after;            /* --stop-after K: leave after K epochs of this invocation (0 = no) */
    int max_batches;           /* --max-batches: cap batches per epoch (0 = all; smoke tests) */
    int quiet;
    int force;                 /* --force: --save may overwrite a checkpoint of another run (run_guard.h) */
    int allow_empty_layers;    /* --allow-empty-layers: a sparse layer may keep 0 weights (run_guard.h) */
    int detect_anomaly;        /* --detect-anomaly: check inputs, outputs, weights and optimiser state every step */
    /* The run-defining flags given on the command line, as argument keys
     * separated by commas ("density,epochs"): with --resume, each must agree
     * with the checkpoint's value, except those a resume may change
     * (epochs, datadir, test_batch_size; run_args.h). */
    char given[512];
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

void st_train_config_defaults(st_train_config *c);
st_status st_train_run(st_train_config *c, st_train_result *result);

/* Evaluation of a saved checkpoint (`sparsetrain eval`) lives in eval/eval_run.h. */

#endif
