/* The reference ImageNet main.py's command line for `sparsetrain train`
 * (docs/COMING-FROM-PYTORCH.md): its positional data folder, short flags
 * (-a -c -j -b -p -e), other names (--arch, --weight-decay/--wd,
 * --print-freq), its defaults when the folder is given, -e/--evaluate, and
 * its flags that mean nothing here or are not available yet. */
#ifndef ST_CLI_IMAGENET_CLI_H
#define ST_CLI_IMAGENET_CLI_H

#include "config_flags.h"

typedef struct st_imagenet_cli {
    char folder[1024]; /* the positional data folder ("" = none given) */
    int dense;         /* --dense: the reference trains sparse unless it is given */
    int evaluate;      /* -e/--evaluate */
} st_imagenet_cli;

/* The short forms of the reference's flags, for st_flags_parse_extended. */
extern const st_short_flag st_imagenet_short_flags[];
extern const int st_imagenet_n_short_flags;

/* Adds the reference's other names and its own flags to train's table. */
void st_imagenet_cli_add_flags(st_config_flags *t, st_train_config *c, st_imagenet_cli *r);
/* After parsing (and st_config_flags_record_given): with a positional
 * folder, the run becomes the reference's ImageNet run: --data imagenet,
 * the folder as --datadir, and the reference's defaults for every field not
 * given. Canonicalises the model name. Returns 0, or -1 after one message. */
int st_imagenet_cli_apply(st_imagenet_cli *r, st_train_config *c);
/* -e/--evaluate: evaluates the model (of --resume, else freshly
 * initialised, as the reference) on the test split and prints top-1, top-5
 * and the loss. Returns the exit code. */
int st_imagenet_cli_evaluate(st_train_config *c);

#endif
