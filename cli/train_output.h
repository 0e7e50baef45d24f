/* What `sparsetrain train` prints: the library's run reports (set-up,
 * progress, epochs) as terminal lines or a progress bar. */
#ifndef ST_CLI_TRAIN_OUTPUT_H
#define ST_CLI_TRAIN_OUTPUT_H

#include "train/trainer.h"

/* A running mean as the reference's AverageMeter: the last value and the
 * mean weighted by batch size. */
typedef struct st_meter {
    double val, sum;
    int64_t count;
} st_meter;

/* The meters of the reference ImageNet main.py's EpochLogger (one for
 * training, one for evaluation), reset every epoch. */
typedef struct st_epoch_meters {
    st_meter time, data, loss, top1, top5;
    int has_top5;   /* the model has >= 5 classes */
    int epoch;      /* 0-based, as the reference prints it */
    int64_t total;  /* batches of the pass */
} st_epoch_meters;

typedef struct st_train_output {
    int bar;        /* 1: progress bar on stderr */
    int quiet;      /* print only the final result */
    int log_interval; /* --log-interval N: the reference's "Train Epoch" line every N batches (0 = none) */
    int batch_size;   /* for that line's "[n/N]" */
    /* ImageFolder data: instead of "Train Epoch", the reference ImageNet
     * main.py's lines every log_interval batches ("Train:" and "Eval:") and
     * its epoch summaries (docs/IMAGENET.md) */
    int imagenet_lines;
    int eval_batch_size; /* the test pass's batch, for its Speed column */
    st_epoch_meters train, eval;
    double best_top1;    /* the reference's "Best var_acc1", in % */
    int bar_open;   /* a bar line is on the screen */
    double last_draw;
} st_train_output;

/* Hooks printing to stdout / stderr; `out` is their user data. */
st_train_hooks st_train_output_hooks(st_train_output *out);
/* -e/--evaluate: prints the evaluation pass's summary line (imagenet_lines). */
void st_train_output_eval_summary(st_train_output *out);
/* Ends an open progress-bar line (before an error or interruption message). */
void st_train_output_finish(st_train_output *out);

#endif
