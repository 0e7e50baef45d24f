/* The reference ImageNet main.py's command line (imagenet_cli.h). */
#include "imagenet_cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/status.h"
#include "models/model.h"
#include "train/trainer.h"
#include "train_output.h"

const st_short_flag st_imagenet_short_flags[] = {
    {'a', "arch"}, {'c', "model-config"}, {'j', "workers"}, {'b', "batch-size"}, {'p', "print-freq"}, {'e', "evaluate"},
};
const int st_imagenet_n_short_flags = (int)(sizeof st_imagenet_short_flags / sizeof st_imagenet_short_flags[0]);

void st_imagenet_cli_add_flags(st_config_flags *t, st_train_config *c, st_imagenet_cli *r) {
    memset(r, 0, sizeof *r);
    st_config_flags_add_alias(t, c, "model", "arch", "the reference's name for --model (resnet18 ... WideResNet101_2)");
    st_config_flags_add_alias(t, c, "l2", "weight-decay", "the reference's name for --l2");
    st_config_flags_add_alias(t, c, "l2", "wd", "the reference's name for --l2");
    st_config_flags_add_alias(t, c, "log_interval", "print-freq", "the reference's name for --log-interval");
    st_config_flags_add_alias(t, c, "bf16", "fp16", "the reference's half precision: --bf16 on the CPU");
    const st_flag own[] = {
        {"evaluate", ST_FLAG_SWITCH, &r->evaluate, 0, 1,
         "evaluate the model of --resume (or a fresh one) on the test split: top-1, top-5, loss; train nothing", NULL,
         NULL, 0},
        {"dense", ST_FLAG_SWITCH, &r->dense, 0, 1,
         "with the reference's positional data folder: train dense (it trains sparse by default)", NULL, NULL, 0},
        {"local_rank", ST_FLAG_INT, NULL, 0, 0, "", "set by the reference's multiproc.py launcher; one process here",
         NULL, 0},
        {"static-loss-scale", ST_FLAG_DOUBLE, NULL, 0, 0, "",
         "bf16 (--fp16 here) has float32's exponent range: gradients need no loss scaling", NULL, 0},
        {"dynamic-loss-scale", ST_FLAG_SWITCH, NULL, 0, 1, "",
         "bf16 (--fp16 here) has float32's exponent range: gradients need no loss scaling", NULL, 0},
    };
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) st_config_flags_add(t, own[i]);
}

int st_imagenet_cli_apply(st_imagenet_cli *r, st_train_config *c) {
    if (r->dense && !r->folder[0]) {
        fprintf(stderr, "sparsetrain train: --dense belongs to the reference's ImageNet command line (a positional "
                        "data folder); without one a run is dense unless --sparse is given\n");
        return -1;
    }
    if (r->folder[0]) {
        struct stat st;
        if (stat(r->folder, &st) != 0 || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "sparsetrain train: unexpected argument '%s': not a folder (a positional argument is the "
                            "reference ImageNet command line's data folder; flags start with --)\n", r->folder);
            return -1;
        }
        if (st_config_given(c, "datadir")) {
            fprintf(stderr, "sparsetrain train: give the data folder once: positional '%s' or --datadir %s\n",
                    r->folder, c->datadir);
            return -1;
        }
        if (st_config_given(c, "data") && strcmp(c->data, "imagenet") != 0) {
            fprintf(stderr, "sparsetrain train: a positional data folder is the reference's ImageNet command line; "
                            "--data %s takes --datadir FOLDER\n", c->data);
            return -1;
        }
        if (r->dense && st_config_given(c, "sparse")) {
            fprintf(stderr, "sparsetrain train: --dense and --sparse together\n");
            return -1;
        }
        snprintf(c->data, sizeof c->data, "imagenet");
        snprintf(c->datadir, sizeof c->datadir, "%s", r->folder);
        st_config_mark_given(c, "data");
        st_config_mark_given(c, "datadir");
        /* the reference ImageNet main.py's defaults (and core.py's sparse ones) where the line gives none */
        if (!st_config_given(c, "model")) snprintf(c->model, sizeof c->model, "resnet50");
        if (!st_config_given(c, "workers")) c->workers = 5;
        if (!st_config_given(c, "epochs")) c->epochs = 90;
        if (!st_config_given(c, "batch_size")) c->batch_size = 64;
        if (!st_config_given(c, "test_batch_size")) c->test_batch_size = c->batch_size; /* its val loader's batch */
        if (!st_config_given(c, "l2")) c->l2 = 1e-4;
        if (!st_config_given(c, "log_interval")) c->log_interval = 10;
        if (!st_config_given(c, "nesterov")) c->nesterov = 0;
        if (!st_config_given(c, "lr_schedule")) snprintf(c->lr_schedule, sizeof c->lr_schedule, "step");
        if (!st_config_given(c, "sparse_init")) snprintf(c->sparse_init, sizeof c->sparse_init, "ER");
        if (!st_config_given(c, "density")) c->density = 0.2;
        if (!st_config_given(c, "sparse")) c->sparse = !r->dense;
    }
    const char *canonical = st_model_canonical_name(c->model);
    if (canonical != c->model) snprintf(c->model, sizeof c->model, "%s", canonical);
    size_t n = strlen(c->save);
    if (n && c->save[n - 1] == '/') { /* the reference's --save save/: a folder prefix */
        if (n + strlen("checkpoint.safetensors") >= sizeof c->save) {
            fprintf(stderr, "sparsetrain train: value of --save is too long\n");
            return -1;
        }
        if (mkdir(c->save, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "sparsetrain train: cannot create the --save folder %s: %s\n", c->save, strerror(errno));
            return -1;
        }
        snprintf(c->save + n, sizeof c->save - n, "checkpoint.safetensors");
    }
    return 0;
}

int st_imagenet_cli_evaluate(st_train_config *c) {
    c->save[0] = c->log[0] = c->run_dir[0] = 0; /* evaluation writes nothing */
    st_trainer *t = NULL;
    double top1 = 0, top5 = 0, loss = 0;
    /* the reference's validate(): "Eval:" lines every --print-freq batches and the summary */
    st_train_output out = {.quiet = c->quiet, .log_interval = c->log_interval, .imagenet_lines = 1,
                           .batch_size = c->batch_size,
                           .eval_batch_size = c->test_batch_size > 0 ? c->test_batch_size : c->batch_size};
    st_train_hooks hooks = st_train_output_hooks(&out);
    hooks.on_setup = NULL, hooks.on_batch = NULL, hooks.on_epoch = NULL, hooks.on_mask_update = NULL;
    st_status s = st_trainer_create(c, &hooks, &t);
    if (s == ST_OK) s = st_trainer_evaluate_top5(t, ST_SPLIT_TEST, &top1, &top5, &loss);
    if (s == ST_OK) st_train_output_eval_summary(&out);
    st_trainer_free(t);
    if (s != ST_OK) {
        fprintf(stderr, "sparsetrain train --evaluate: %s\n", st_last_error());
        return s == ST_ERR_ARGUMENT ? 2 : 1;
    }
    printf("Eval %s%s: Loss %.4f  Prec@1 %.3f  Prec@5 %.3f\n", c->model, c->resume[0] ? " (--resume)" : " (initialised)",
           loss, 100 * top1, 100 * top5);
    return 0;
}
