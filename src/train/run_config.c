/* The run configuration's fields as one table, and what is generated from
 * it: defaults, the checkpoint's args JSON, the resume rules (run_config.h).
 * The flags and help of `sparsetrain train` come from the same table
 * (cli/config_flags.c). */
#include "train/run_config.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/status.h"
#include "data/catalog.h"
#include "io/json.h"
#include "sparse/distributions.h"

#define AT(member) offsetof(st_train_config, member), sizeof(((st_train_config *)0)->member)
/* `note`: shown in help instead of the default (NULL: the default; "": nothing) */
#define STRING(key, flag, role, member, def, help, note) \
    {key, flag, ST_FIELD_STRING, role, AT(member), def, 0, 0, help, note, {{0}, {0}}, NULL}
#define INT(key, flag, role, member, def, help, note) \
    {key, flag, ST_FIELD_INT, role, AT(member), NULL, def, 0, help, note, {{0}, {0}}, NULL}
#define DOUBLE(key, flag, role, member, def, help, note) \
    {key, flag, ST_FIELD_DOUBLE, role, AT(member), NULL, 0, def, help, note, {{0}, {0}}, NULL}
/* an int set by one or two switches; `def` is its value when none is given */
#define SWITCH(key, role, member, def, flag, value, help) \
    {key, key, ST_FIELD_INT, role, AT(member), NULL, def, 0, "", "", {{flag, value, help}, {0}}, NULL}
#define SWITCHES(key, role, member, def, flag1, value1, help1, flag2, value2, help2) \
    {key, key, ST_FIELD_INT, role, AT(member), NULL, def, 0, "", "", {{flag1, value1, help1}, {flag2, value2, help2}}, NULL}

#define RUN ST_FIELD_RUN
#define LATER ST_FIELD_RUN_LATER
#define NOW ST_FIELD_INVOCATION

/* Help and args order. The stored fields keep the order of the args JSON
 * that checkpoints have always had. */
static const st_config_field fields[] = {
    STRING("model", "model", RUN, model, "cifar_resnet_20",
           "model name: cifar_resnet_N[_W], vgg11/13/16/19, lenet5, lenet300-100, ResNet18/34/50/101/152, "
           "WideResNet50_2/101_2", NULL),
    STRING("data", "data", RUN, data, "fashion-mnist",
           "data set: mnist, fashion-mnist, cifar10, cifar100, imagenet (an ImageFolder tree DIR/train, DIR/val)", NULL),
    STRING("datadir", "datadir", LATER, datadir, "",
           "folder holding the data set files (default: its usual place; imagenet: data/imagenet)", ""),
    INT("batch_size", "batch-size", RUN, batch_size, 128, "training batch size", NULL),
    INT("test_batch_size", "test-batch-size", LATER, test_batch_size, 100, "evaluation batch size", NULL),
    INT("epochs", "epochs", LATER, epochs, 160, "number of epochs", NULL),
    DOUBLE("lr", "lr", RUN, lr, 0.1, "learning rate", NULL),
    DOUBLE("momentum", "momentum", RUN, momentum, 0.9, "SGD momentum (Nesterov unless --no-nesterov)", NULL),
    DOUBLE("l2", "l2", RUN, l2, 5e-4, "weight decay (on all parameters; ImageNet models: not on *bn* ones, see --bn-weight-decay)", NULL),
    STRING("optimizer", "optimizer", RUN, optimizer, "sgd", "sgd or adam", NULL),
    STRING("lr_schedule", "lr-schedule", RUN, lr_schedule, "multistep",
           "multistep (x0.1 at 50% and 75% of the epochs), cosine, or step (x0.1 at epochs 30, 60, 80: the reference's "
           "ImageNet schedule)", NULL),
    {"seed", "seed", ST_FIELD_U64, RUN, AT(seed), NULL, 17, 0, "random seed", NULL, {{0}, {0}}, NULL},
    /* NaN = the data set's default (data/catalog.c), resolved by st_trainer_create */
    DOUBLE("valid_split", "valid_split", RUN, valid_split, NAN,
           "fraction of the training set held out for model selection", "0.1; imagenet: 0"),
    SWITCH("sparse", RUN, sparse, 0, "sparse", 1, "train a sparse network"),
    SWITCH("fix", RUN, fix, 0, "fix", 1, "keep the sparse connectivity fixed (static sparse training)"),
    STRING("sparse_init", "sparse_init", RUN, sparse_init, "ERK", "layer-wise densities: " ST_SPARSE_INIT_NAMES, NULL),
    DOUBLE("density", "density", RUN, density, 0.05, "overall density of the prunable weights", NULL),
    DOUBLE("fc_density", "fc_density", RUN, fc_density, 1.0, "classifier density for ERK_plus", NULL),
    /* exact: each layer keeps exactly round(d_l n_l) weights, so layer-wise
     * ratios and the overall density are what was asked (docs/DISTRIBUTIONS.md) */
    STRING("mask_sampling", "mask-sampling", RUN, mask_sampling, "exact",
           "exact (round(d_l*n_l) kept per layer) or bernoulli (as the reference)", NULL),
    SWITCHES("scaled", RUN, scaled, 0, "scaled", 1, "scale the init std by 1/sqrt(density), as the reference", "scaled-per-layer", 2, "scale the init std by each layer's own density"),
    SWITCHES("augment", RUN, augment, -1, "augment", 1, "force crop+flip augmentation (default: CIFAR and imagenet)", "no-augment", 0, "disable augmentation"),
    INT("image_size", "image-size", RUN, image_size, 0,
        "imagenet: crop size S of RandomResizedCrop / CenterCrop", "224"),
    INT("max_batches", "max-batches", RUN, max_batches, 0, "use at most this many batches per epoch (quick runs)", ""),
    STRING("protocol", "protocol", RUN, protocol, "sound",
           "sound (held-out validation split, un-augmented) or reference (the reference code's splits: CIFAR-100 "
           "selects on test, CIFAR-10 augments validation; docs/COMING-FROM-PYTORCH.md)", NULL),
    /* the ImageNet recipe (docs/IMAGENET.md) */
    DOUBLE("label_smoothing", "label-smoothing", RUN, label_smoothing, 0.0,
           "label smoothing of the cross-entropy loss, as PyTorch's CrossEntropyLoss(label_smoothing)", NULL),
    INT("warmup", "warmup", RUN, warmup, 0,
        "linear warm-up epochs: lr * (e+1) / (warmup+1) in epoch e < warmup, as the reference's ImageNet code", NULL),
    SWITCHES("nesterov", RUN, nesterov, 1, "nesterov", 1, "SGD with Nesterov momentum (the default; the CIFAR recipe)",
             "no-nesterov", 0, "plain SGD momentum (the reference's ImageNet code)"),
    SWITCHES("bn_weight_decay", RUN, bn_weight_decay, -1, "bn-weight-decay", 1,
             "weight decay also on parameters named *bn* (default: on for CIFAR models, off for ResNet*/WideResNet*, "
             "as the reference's two main.py)",
             "no-bn-weight-decay", 0, "no weight decay on parameters named *bn*"),
    STRING("model_config", "model-config", RUN, model_config, "",
           "ImageNet models' init: classic (conv Kaiming-normal fan-out) or fanin (fan-in), as the reference's -c",
           "classic"),
    /* numerics (docs/PERFORMANCE.md, "bf16"); checkpoints written before it existed: float32 */
    SWITCH("bf16", RUN, bf16, 0, "bf16", 1,
           "bf16 activations and kept weights in the sparse convolutions, with fp32 accumulation, master weights and "
           "optimiser state (CPUs with AVX512_BF16; float32 elsewhere, with a message)"),
    /* dynamic sparse training (--sparse without --fix; docs/DYNAMIC-SPARSE.md); older checkpoints lack
     * these keys and take the defaults, which only matter without --fix */
    INT("update_frequency", "update_frequency", RUN, update_frequency, 100,
        "dynamic sparse training: optimiser steps between mask updates", NULL),
    {"death", "death", ST_FIELD_STRING, RUN, AT(death), "magnitude", 0, 0,
     "dynamic sparse training: which weights die: magnitude, SET, threshold, Taylor_FO", NULL, {{0}, {0}}, "prune"},
    STRING("growth", "growth", RUN, growth, "random",
           "dynamic sparse training: where weights regrow: random, random_unfired, gradient (RigL), momentum (a dense "
           "momentum of dense gradients every step: costly, docs/DYNAMIC-SPARSE.md)", NULL),
    STRING("redistribution", "redistribution", RUN, redistribution, "none",
           "dynamic sparse training: none (each layer regrows what it lost)", NULL),
    {"death_rate", "death-rate", ST_FIELD_DOUBLE, RUN, AT(death_rate), NULL, 0, 0.5,
     "dynamic sparse training: fraction of each layer's weights replaced at the first update, decaying to 0.005",
     NULL, {{0}, {0}}, "prune-rate"},
    STRING("decay_schedule", "decay-schedule", RUN, decay_schedule, "cosine",
           "dynamic sparse training: death-rate decay, cosine or linear", NULL),
    /* this invocation only */
    STRING("execution", "execution", NOW, execution, "auto",
           "auto, sparse (packed weights, direct sparse kernels), mixed (sparse, with dense GEMMs on the layers "
           "dense enough) or dense (auto: dense or mixed, by FLOP-weighted density)", ""),
    {"workers", "workers", ST_FIELD_INT, NOW, AT(workers), NULL, 0, 0, "data loading threads", "1; imagenet: 2",
     {{0}, {0}}, "max-threads"},
    STRING("resume", "resume", NOW, resume, "", "continue the run saved in this checkpoint", NULL),
    STRING("save", "save", NOW, save, "", "checkpoint file written after every epoch and on Ctrl-C", NULL),
    SWITCH("force", NOW, force, 0, "force", 1,
           "let --save, --log and --run-dir replace files of another run or kind (never a folder, device or FIFO)"),
    SWITCH("allow_empty_layers", NOW, allow_empty_layers, 0, "allow-empty-layers", 1, "let a layer keep no weight at all (a tiny --density)"),
    SWITCH("detect_anomaly", NOW, detect_anomaly, 0, "detect-anomaly", 1, "check inputs, outputs, gradients, weights and optimiser state every step"),
    STRING("log", "log", NOW, log, "", "JSON-lines log, one object per epoch", NULL),
    STRING("run_dir", "run-dir", NOW, run_dir, "",
           "folder for this run (created): --save DIR/checkpoint.safetensors --log DIR/log.jsonl unless given (see "
           "`sparsetrain report`)", NULL),
    INT("threads", "threads", NOW, threads, 0, "worker threads", "default: all cores"),
    INT("stop_after", "stop-after", NOW, stop_after, 0, "leave after this many epochs (resume later with --resume)", ""),
    SWITCHES("progress", NOW, progress, -1, "plain", 0, "plain log lines instead of a progress bar", "progress", 1, "progress bar even when not on a terminal"),
    SWITCH("quiet", NOW, quiet, 0, "quiet", 1, "print only the final result"),
    INT("log_interval", "log-interval", NOW, log_interval, 0,
        "print the reference's 'Train Epoch' line every N batches (0 = none)", ""),
    INT("iters", "iters", NOW, iters, 1,
        "repeat the run N times with seeds seed..seed+N-1; report mean and spread", NULL),
};

#define N_FIELDS ((int)(sizeof fields / sizeof fields[0]))

const st_config_field *st_config_fields(int *n) {
    *n = N_FIELDS;
    return fields;
}

static int same_key(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if ((*a == '-' ? '_' : *a) != (*b == '-' ? '_' : *b)) return 0;
    return *a == *b;
}

const st_config_field *st_config_field_find(const char *key) {
    for (int i = 0; i < N_FIELDS; i++)
        if (same_key(fields[i].key, key)) return &fields[i];
    return NULL;
}

static void *field_at(const st_config_field *f, st_train_config *c) { return (char *)c + f->offset; }
static const void *field_in(const st_config_field *f, const st_train_config *c) {
    return (const char *)c + f->offset;
}

void st_config_field_format(const st_config_field *f, const st_train_config *c, char *buf, size_t size) {
    const void *v = field_in(f, c);
    switch (f->type) {
    case ST_FIELD_STRING: snprintf(buf, size, "%s", (const char *)v); break;
    case ST_FIELD_INT: snprintf(buf, size, "%d", *(const int *)v); break;
    case ST_FIELD_U64: snprintf(buf, size, "%llu", (unsigned long long)*(const uint64_t *)v); break;
    case ST_FIELD_DOUBLE: snprintf(buf, size, "%.10g", *(const double *)v); break;
    }
}

void st_train_config_defaults(st_train_config *c) {
    memset(c, 0, sizeof *c);
    for (int i = 0; i < N_FIELDS; i++) {
        const st_config_field *f = &fields[i];
        void *v = field_at(f, c);
        switch (f->type) {
        case ST_FIELD_STRING: snprintf(v, f->size, "%s", f->def_text); break;
        case ST_FIELD_INT: *(int *)v = (int)f->def_int; break;
        case ST_FIELD_U64: *(uint64_t *)v = (uint64_t)f->def_int; break;
        case ST_FIELD_DOUBLE: *(double *)v = f->def_double; break;
        }
    }
}

static int stored(const st_config_field *f) { return f->role != ST_FIELD_INVOCATION; }

st_status st_train_config_to_json(const st_train_config *c, char **json) {
    /* every string is stored in the checkpoint's JSON: refuse at start, not at the first save */
    for (int i = 0; i < N_FIELDS; i++) {
        const char *text = field_in(&fields[i], c);
        if (stored(&fields[i]) && fields[i].type == ST_FIELD_STRING && !st_json_utf8_valid(text, strlen(text)))
            return st_fail(ST_ERR_ARGUMENT,
                           "--%s is not valid UTF-8 text; it is stored in the checkpoint's arguments (JSON): use a name "
                           "in UTF-8 (for a folder, a symbolic link with a UTF-8 name)",
                           fields[i].flag);
    }
    st_json_builder b;
    st_json_builder_init(&b);
    int first = 1;
    for (int i = 0; i < N_FIELDS; i++) {
        const st_config_field *f = &fields[i];
        if (!stored(f)) continue;
        st_json_append_text(&b, first ? "{" : ", ");
        first = 0;
        st_json_append_string(&b, f->key);
        st_json_append_text(&b, ": ");
        const void *v = field_in(f, c);
        switch (f->type) {
        case ST_FIELD_STRING: st_json_append_string(&b, v); break;
        case ST_FIELD_INT: st_json_append_int(&b, *(const int *)v); break;
        /* the int64 with the same bits: seeds above INT64_MAX come back exactly */
        case ST_FIELD_U64: st_json_append_int(&b, (int64_t)*(const uint64_t *)v); break;
        case ST_FIELD_DOUBLE: st_json_append_double(&b, *(const double *)v); break;
        }
    }
    st_json_append_text(&b, first ? "{}" : "}");
    size_t len;
    return st_json_builder_finish(&b, json, &len);
}

/* One stored field from its JSON value (present). */
static st_status read_field(const st_config_field *f, const st_json_value *v, st_train_config *c) {
    void *dst = field_at(f, c);
    switch (f->type) {
    case ST_FIELD_STRING:
        if (v->type != ST_JSON_STRING || v->string_length >= f->size || strlen(v->string) != v->string_length)
            return st_fail(ST_ERR_FORMAT, "argument '%s' is not a string of at most %zu bytes", f->key, f->size - 1);
        memcpy(dst, v->string, v->string_length + 1);
        return ST_OK;
    case ST_FIELD_INT:
        if (v->type != ST_JSON_NUMBER || !v->is_int64 || v->int64 < INT_MIN || v->int64 > INT_MAX)
            return st_fail(ST_ERR_FORMAT, "argument '%s' is not an integer", f->key);
        *(int *)dst = (int)v->int64;
        return ST_OK;
    case ST_FIELD_U64:
        if (v->type != ST_JSON_NUMBER || !v->is_int64)
            return st_fail(ST_ERR_FORMAT, "argument '%s' is not an integer", f->key);
        *(uint64_t *)dst = (uint64_t)v->int64;
        return ST_OK;
    case ST_FIELD_DOUBLE:
        if (v->type == ST_JSON_NULL && isnan(f->def_double)) { /* "not set" (valid_split: the data set's) */
            *(double *)dst = NAN;
            return ST_OK;
        }
        if (v->type != ST_JSON_NUMBER) return st_fail(ST_ERR_FORMAT, "argument '%s' is not a number", f->key);
        *(double *)dst = v->number;
        return ST_OK;
    }
    return st_fail(ST_ERR_FORMAT, "argument '%s' has no type", f->key);
}

st_status st_train_config_from_json(const char *json, const char *source, st_train_config *c) {
    st_json_document *doc;
    ST_TRY(st_json_parse(json, strlen(json), source, NULL, &doc));
    const st_json_value *root = st_json_root(doc);
    st_status s = root->type == ST_JSON_OBJECT ? ST_OK : st_fail(ST_ERR_FORMAT, "arguments are not a JSON object");
    st_train_config defaults;
    st_train_config_defaults(&defaults);
    for (int i = 0; i < N_FIELDS && s == ST_OK; i++) {
        const st_config_field *f = &fields[i];
        if (!stored(f)) continue;
        const st_json_value *v = st_json_object_get(root, f->key);
        if (v) s = read_field(f, v, c);
        else /* a key older checkpoints lack: the field's default */
            memcpy(field_at(f, c), field_in(f, &defaults), f->size);
    }
    st_json_free(doc);
    if (s != ST_OK) return st_fail_context(s, "%s", source);
    return ST_OK;
}

void st_train_config_resolve_defaults(st_train_config *c) {
    if (!isnan(c->valid_split)) return;
    const st_dataset_info *info = st_dataset_info_find(c->data);
    c->valid_split = info ? info->valid_split : 0.1;
}

int st_config_given(const st_train_config *c, const char *key) {
    const char *list = c->given;
    size_t n = strlen(key);
    for (const char *p = list; (p = strstr(p, key)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return 1;
    return 0;
}

void st_config_mark_given(st_train_config *c, const char *key) {
    size_t at = strlen(c->given);
    if (!st_config_given(c, key)) snprintf(c->given + at, sizeof c->given - at, "%s%s", at ? "," : "", key);
}

static int same_value(const st_config_field *f, const st_train_config *a, const st_train_config *b) {
    const void *x = field_in(f, a), *y = field_in(f, b);
    switch (f->type) {
    case ST_FIELD_STRING: return strcmp(x, y) == 0;
    case ST_FIELD_INT: return *(const int *)x == *(const int *)y;
    case ST_FIELD_U64: return *(const uint64_t *)x == *(const uint64_t *)y;
    case ST_FIELD_DOUBLE: return *(const double *)x == *(const double *)y;
    }
    return 0;
}

st_status st_resume_merge(const st_train_config *cmdline, st_train_config *c) {
    for (int i = 0; i < N_FIELDS; i++) {
        const st_config_field *f = &fields[i];
        if (!st_config_given(cmdline, f->key)) continue;
        if (f->role != ST_FIELD_RUN) { /* the command line's value wins */
            /* the counts a resume may change (--epochs, --test-batch-size) are checked here, so that a
             * mistake is named as the command line's, not the checkpoint's */
            if (f->role == ST_FIELD_RUN_LATER && f->type == ST_FIELD_INT && *(const int *)field_in(f, cmdline) <= 0)
                return st_fail(ST_ERR_ARGUMENT, "--%s must be positive (got %d)", f->flag,
                               *(const int *)field_in(f, cmdline));
            memcpy(field_at(f, c), field_in(f, cmdline), f->size);
            continue;
        }
        if (same_value(f, cmdline, c)) continue;
        char ours[64], theirs[64];
        st_config_field_format(f, cmdline, ours, sizeof ours);
        st_config_field_format(f, c, theirs, sizeof theirs);
        /* a switch field is named by the switch that sets this value */
        const char *flag = f->flag;
        for (int k = 0; k < 2 && f->switches[k].flag; k++)
            if (f->switches[k].value == *(const int *)field_in(f, cmdline)) flag = f->switches[k].flag;
        return st_fail(ST_ERR_ARGUMENT,
                       "--%s %s differs from the run being resumed (%s has %s %s): a resumed run keeps its run-defining "
                       "flags; drop --%s, or start a new run without --resume",
                       flag, ours, c->resume, f->flag, theirs, flag);
    }
    return ST_OK;
}
