/* What `sparsetrain train` prints: the library's run reports (set-up,
 * progress, epochs) as terminal lines or a progress bar. */
#ifndef ST_CLI_TRAIN_OUTPUT_H
#define ST_CLI_TRAIN_OUTPUT_H

#include "train/trainer.h"

typedef struct st_train_output {
    int bar;        /* 1: progress bar on stderr */
    int quiet;      /* print only the final result */
    int bar_open;   /* a bar line is on the screen */
    double last_draw;
} st_train_output;

/* Hooks printing to stdout / stderr; `out` is their user data. */
st_train_hooks st_train_output_hooks(st_train_output *out);
/* Ends an open progress-bar line (before an error or interruption message). */
void st_train_output_finish(st_train_output *out);

#endif
