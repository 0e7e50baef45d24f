/* Model + optimiser <-> safetensors checkpoint (see checkpoint.h). */
#include "io/checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/json.h"

typedef struct entry_list {
    st_tensor_entry *items;
    char **names;
    int n, cap;
    int failed;
    void **owned; /* dense copies of packed arrays, freed with the list */
    int n_owned, cap_owned;
} entry_list;

/* Takes ownership of `p` (freed by free_entries); NULL marks the list failed. */
static void *own(entry_list *l, void *p) {
    if (!p || l->failed) {
        free(p);
        l->failed = 1;
        return NULL;
    }
    if (l->n_owned == l->cap_owned) {
        int cap = l->cap_owned ? l->cap_owned * 2 : 64;
        void **owned = realloc(l->owned, sizeof *owned * (size_t)cap);
        if (!owned) {
            free(p);
            l->failed = 1;
            return NULL;
        }
        l->owned = owned;
        l->cap_owned = cap;
    }
    l->owned[l->n_owned++] = p;
    return p;
}

/* A parameter-shaped array in the dense (PyTorch) form: `stored` itself, or
 * for a packed weight a dense copy with zeros at the pruned positions. */
static const float *dense_form(entry_list *l, const st_param *p, const float *stored) {
    if (!p->sparse || !p->sparse->packed) return stored;
    float *dense = own(l, malloc(sizeof(float) * (size_t)p->numel));
    if (dense) st_sparse_weight_scatter(p->sparse, stored, dense);
    return dense;
}

/* The mask to save, or NULL when the weight is dense. */
static const uint8_t *mask_form(entry_list *l, const st_param *p) {
    if (!p->sparse) return NULL;
    if (!p->sparse->packed) return p->sparse->mask;
    if (p->sparse->kept == p->numel) return NULL;
    uint8_t *mask = own(l, malloc((size_t)p->numel));
    if (mask) st_sparse_weight_mask_dense(p->sparse, mask);
    return mask;
}

static void add_entry(entry_list *l, const char *name, st_dtype dtype, int ndim, const int64_t *shape, const void *data) {
    if (l->failed) return;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        st_tensor_entry *items = realloc(l->items, sizeof *items * (size_t)cap);
        char **names = realloc(l->names, sizeof *names * (size_t)cap);
        if (items) l->items = items;
        if (names) l->names = names;
        if (!items || !names) {
            l->failed = 1;
            return;
        }
        l->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) {
        l->failed = 1;
        return;
    }
    st_tensor_entry *e = &l->items[l->n];
    memset(e, 0, sizeof *e);
    e->name = copy;
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->data = data;
    l->names[l->n++] = copy;
}

static void free_entries(entry_list *l) {
    for (int i = 0; i < l->n_owned; i++) free(l->owned[i]);
    free(l->owned);
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->items);
    free(l->names);
}

/* The best copy's param i in dense form. */
static const float *snapshot_dense(entry_list *l, const st_param_snapshot *best, const st_param *p, int i) {
    float *dense = own(l, malloc(sizeof(float) * (size_t)p->numel));
    if (dense) st_param_snapshot_dense(best, p, i, dense);
    return dense;
}

/* The best copy's own mask of param i when it differs from the live one, else NULL. */
static const uint8_t *snapshot_mask(entry_list *l, const st_param_snapshot *best, const st_param *p, int i) {
    if (!p->sparse || st_param_snapshot_same_mask(best, p, i)) return NULL;
    uint8_t *mask = own(l, malloc((size_t)p->numel));
    if (mask) st_param_snapshot_mask(best, i, mask);
    return mask;
}

st_status st_checkpoint_save(const char *path, const st_model *m, const st_optimizer *opt,
                             const st_param_snapshot *best_copy, const int64_t *best_num_batches_tracked,
                             const st_checkpoint_info *info) {
    const int have_best = best_copy && best_copy->taken;
    entry_list l = {0};
    char name[ST_NAME_MAX + 64];
    static const int64_t scalar_shape[1] = {0};
    /* num_batches_tracked values must outlive the write: take them from the ops. */
    for (int i = 0; i < m->n_params; i++) {
        const st_param *p = &m->params[i];
        add_entry(&l, p->name, ST_DTYPE_F32, p->ndim, p->shape, dense_form(&l, p, p->value));
    }
    int bn_index = 0;
    for (int i = 0; i < m->n_ops; i++) {
        const st_op *op = &m->ops[i];
        if (op->kind != ST_OP_BATCHNORM) continue;
        snprintf(name, sizeof name, "%s.num_batches_tracked", op->bn_name);
        add_entry(&l, name, ST_DTYPE_I64, 0, scalar_shape, &op->num_batches_tracked);
        if (have_best && best_num_batches_tracked) {
            snprintf(name, sizeof name, "best.%s.num_batches_tracked", op->bn_name);
            add_entry(&l, name, ST_DTYPE_I64, 0, scalar_shape, &best_num_batches_tracked[bn_index]);
        }
        bn_index++;
    }
    for (int i = 0; i < m->n_params; i++) {
        const st_param *p = &m->params[i];
        const uint8_t *mask = mask_form(&l, p);
        if (mask) {
            snprintf(name, sizeof name, "mask.%s", p->name);
            add_entry(&l, name, ST_DTYPE_U8, p->ndim, p->shape, mask);
        }
        if (p->sparse && info->itop && info->itop[i]) {
            snprintf(name, sizeof name, "itop.%s", p->name);
            add_entry(&l, name, ST_DTYPE_U8, p->ndim, p->shape, info->itop[i]);
        }
        for (int which = 0; which < 2; which++) {
            float *const *table = which == 0 ? info->growth_momentum : info->growth_momentum2;
            if (!p->sparse || !table || !table[i]) continue;
            snprintf(name, sizeof name, "%s.%s", which == 0 ? "dst_momentum" : "dst_momentum2", p->name);
            add_entry(&l, name, ST_DTYPE_F32, p->ndim, p->shape, table[i]);
        }
        if (have_best) {
            snprintf(name, sizeof name, "best.%s", p->name);
            add_entry(&l, name, ST_DTYPE_F32, p->ndim, p->shape, snapshot_dense(&l, best_copy, p, i));
            const uint8_t *best_mask = snapshot_mask(&l, best_copy, p, i);
            snprintf(name, sizeof name, "best.mask.%s", p->name);
            if (best_mask) add_entry(&l, name, ST_DTYPE_U8, p->ndim, p->shape, best_mask);
        }
        for (int which = 0; opt && which < 2; which++) {
            float *state = which == 0 ? opt->state1[i] : opt->state2[i];
            if (!state) continue;
            snprintf(name, sizeof name, "optim.%s.%s", p->name, st_optimizer_state_name(opt, which));
            add_entry(&l, name, ST_DTYPE_F32, p->ndim, p->shape, dense_form(&l, p, state));
        }
    }
    if (l.failed) {
        free_entries(&l);
        return st_fail(ST_ERR_NOMEM, "out of memory preparing checkpoint %s", path);
    }
    char classes[32], channels[32], height[32], width[32], epoch[32], step[32], seed[32], best[64], best_epoch[32], best_test[64];
    char batch_in_epoch[32], loss_sum[64], correct[32], seen[32];
    snprintf(batch_in_epoch, sizeof batch_in_epoch, "%" PRId64, info->batch_in_epoch);
    snprintf(loss_sum, sizeof loss_sum, "%.17g", info->epoch_loss_sum);
    snprintf(correct, sizeof correct, "%" PRId64, info->epoch_correct);
    snprintf(seen, sizeof seen, "%" PRId64, info->epoch_seen);
    snprintf(classes, sizeof classes, "%d", m->num_classes);
    snprintf(channels, sizeof channels, "%d", m->in_channels);
    snprintf(height, sizeof height, "%d", m->in_height);
    snprintf(width, sizeof width, "%d", m->in_width);
    snprintf(epoch, sizeof epoch, "%d", info->epoch);
    snprintf(step, sizeof step, "%" PRId64, info->step);
    snprintf(seed, sizeof seed, "%" PRIu64, info->seed);
    snprintf(best, sizeof best, "%.17g", info->best_val_acc);
    snprintf(best_epoch, sizeof best_epoch, "%d", info->best_epoch);
    snprintf(best_test, sizeof best_test, "%.17g", info->best_test_acc);
    st_meta_entry meta[] = {
        {"format", ST_CHECKPOINT_FORMAT},
        {"model", m->name},
        {"num_classes", classes},
        {"in_channels", channels},
        {"in_height", height},
        {"in_width", width},
        {"epoch", epoch},
        {"step", step},
        {"seed", seed},
        {"best_val_acc", best},
        {"best_epoch", best_epoch},
        {"best_test_acc", best_test},
        {"optimizer", opt ? (opt->kind == ST_OPTIMIZER_SGD ? "sgd" : "adam") : "none"},
        {"data", info->data ? info->data : ""},
        {"batch_in_epoch", batch_in_epoch},
        {"epoch_loss_sum", loss_sum},
        {"epoch_correct", correct},
        {"epoch_seen", seen},
        {"args", info->args_json ? info->args_json : "{}"},
        {NULL, NULL}, /* run_id */
        {NULL, NULL}, /* layer_densities */
    };
    int n_meta = (int)(sizeof meta / sizeof meta[0]) - 2;
    if (info->run_id) meta[n_meta++] = (st_meta_entry){"run_id", info->run_id};
    char *densities = NULL;
    st_status s = ST_OK;
    if (info->n_layer_densities > 0) {
        /* {"conv.weight": 1, "blocks.0.conv1.weight": 0.0123, ...} in parameter order */
        st_json_builder b;
        st_json_builder_init(&b);
        int k = 0;
        for (int i = 0; i < m->n_params; i++) {
            if (!m->params[i].sparse) continue;
            if (k < info->n_layer_densities) {
                st_json_append_text(&b, k ? ", " : "{");
                st_json_append_string(&b, m->params[i].name);
                st_json_append_text(&b, ": ");
                st_json_append_double(&b, info->layer_densities[k]);
            }
            k++;
        }
        st_json_append_text(&b, "}");
        size_t len;
        if (k != info->n_layer_densities) {
            st_json_builder_free(&b);
            s = st_fail(ST_ERR_ARGUMENT, "checkpoint %s: %d layer densities for %d prunable layers of %s", path,
                        info->n_layer_densities, k, m->name);
        } else {
            s = st_json_builder_finish(&b, &densities, &len);
            meta[n_meta++] = (st_meta_entry){"layer_densities", densities};
        }
    }
    if (s == ST_OK) s = st_safetensors_write_as(path, ST_FILE_CHECKPOINT, info->force, l.items, l.n, meta, n_meta);
    free(densities);
    free_entries(&l);
    return s;
}

static st_status meta_int(const st_safetensors *f, const char *path, const char *key, int *out) {
    const char *v = st_safetensors_meta(f, key);
    char *end = NULL;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || x <= 0 || x > 1000000)
        return st_fail(ST_ERR_FORMAT, "%s: checkpoint metadata '%s' is missing or invalid", path, key);
    *out = (int)x;
    return ST_OK;
}

st_status st_checkpoint_describe(const st_safetensors *f, const char *path, char *model, size_t model_size,
                                 int *num_classes, int *in_channels, int *in_height, int *in_width) {
    const char *format = st_safetensors_meta(f, "format");
    if (!format || strcmp(format, ST_CHECKPOINT_FORMAT) != 0)
        return st_fail(ST_ERR_FORMAT, "%s: not a sparsetrain checkpoint (metadata 'format' is %s)", path,
                       format ? format : "missing");
    const char *name = st_safetensors_meta(f, "model");
    if (!name || !*name || strlen(name) >= model_size)
        return st_fail(ST_ERR_FORMAT, "%s: checkpoint metadata 'model' is missing or invalid", path);
    snprintf(model, model_size, "%s", name);
    ST_TRY(meta_int(f, path, "num_classes", num_classes));
    ST_TRY(meta_int(f, path, "in_channels", in_channels));
    ST_TRY(meta_int(f, path, "in_height", in_height));
    return meta_int(f, path, "in_width", in_width);
}

static st_status find_tensor(const st_safetensors *f, const char *path, const char *name, st_dtype dtype, int ndim,
                             const int64_t *shape, const st_tensor_entry **out) {
    const st_tensor_entry *t = st_safetensors_find(f, name);
    if (!t) return st_fail(ST_ERR_FORMAT, "%s: tensor '%s' is missing", path, name);
    int ok = t->dtype == dtype && t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) return st_fail(ST_ERR_FORMAT, "%s: tensor '%s' has the wrong dtype or shape", path, name);
    *out = t;
    return ST_OK;
}

/* Weights and buffers of a checkpoint are finite (training never saves a
 * non-finite step) and variances are not negative: anything else is a
 * damaged file, named with the tensor and the first bad element. */
static st_status check_values(const char *path, const char *name, const float *v, int64_t n) {
    size_t len = strlen(name);
    int variance = len >= 11 && strcmp(name + len - 11, "running_var") == 0;
    for (int64_t k = 0; k < n; k++) {
        if (!isfinite(v[k]))
            return st_fail(ST_ERR_FORMAT, "%s: tensor '%s' holds %s at element %lld (a damaged checkpoint)", path, name,
                           isnan(v[k]) ? "NaN" : "an infinity", (long long)k);
        if (variance && v[k] < 0)
            return st_fail(ST_ERR_FORMAT, "%s: tensor '%s' holds a negative variance %g at element %lld (a damaged checkpoint)",
                           path, name, (double)v[k], (long long)k);
    }
    return ST_OK;
}

st_status st_checkpoint_load_model(const st_safetensors *f, const char *path, st_model *m, const char *prefix) {
    char name[ST_NAME_MAX + 64];
    const st_tensor_entry *t;
    static const int64_t no_shape[1] = {0};
    for (int i = 0; i < m->n_params; i++) {
        st_param *p = &m->params[i];
        snprintf(name, sizeof name, "%s%s", prefix, p->name);
        ST_TRY(find_tensor(f, path, name, ST_DTYPE_F32, p->ndim, p->shape, &t));
        if (p->sparse && p->sparse->packed)
            return st_fail(ST_ERR_ARGUMENT, "%s: weights are loaded before the model switches to sparse execution", path);
        memcpy(p->value, t->data, (size_t)p->numel * sizeof(float));
        ST_TRY(check_values(path, name, p->value, p->numel));
        if (!p->sparse) continue;
        snprintf(name, sizeof name, "%smask.%s", prefix, p->name); /* the best copy's own mask, if it has one */
        if (!prefix[0] || !st_safetensors_find(f, name)) snprintf(name, sizeof name, "mask.%s", p->name);
        if (st_safetensors_find(f, name)) {
            st_dtype dt = st_safetensors_find(f, name)->dtype == ST_DTYPE_BOOL ? ST_DTYPE_BOOL : ST_DTYPE_U8;
            ST_TRY(find_tensor(f, path, name, dt, p->ndim, p->shape, &t));
            const uint8_t *mask = t->data;
            for (int64_t k = 0; k < p->numel; k++)
                if (mask[k] > 1) return st_fail(ST_ERR_FORMAT, "%s: mask '%s' holds values other than 0/1", path, name);
            ST_TRY(st_sparse_weight_set_mask(p->sparse, mask));
        }
    }
    for (int i = 0; i < m->n_ops; i++) {
        st_op *op = &m->ops[i];
        if (op->kind != ST_OP_BATCHNORM) continue;
        snprintf(name, sizeof name, "%s%s.num_batches_tracked", prefix, op->bn_name);
        ST_TRY(find_tensor(f, path, name, ST_DTYPE_I64, 0, no_shape, &t));
        memcpy(&op->num_batches_tracked, t->data, sizeof(int64_t));
    }
    return ST_OK;
}

st_status st_checkpoint_load_itop(const st_safetensors *f, const char *path, const st_model *m, uint8_t **fired,
                                  int *found) {
    char name[ST_NAME_MAX + 64];
    *found = 0;
    for (int i = 0; i < m->n_params; i++) {
        const st_param *p = &m->params[i];
        fired[i] = NULL;
        if (!p->sparse) continue;
        snprintf(name, sizeof name, "itop.%s", p->name);
        if (!st_safetensors_find(f, name)) continue;
        const st_tensor_entry *t;
        ST_TRY(find_tensor(f, path, name, ST_DTYPE_U8, p->ndim, p->shape, &t));
        const uint8_t *record = t->data;
        for (int64_t k = 0; k < p->numel; k++)
            if (record[k] > 1) return st_fail(ST_ERR_FORMAT, "%s: '%s' holds values other than 0/1", path, name);
        fired[i] = st_malloc((size_t)p->numel, "ITOP record");
        if (!fired[i]) return ST_ERR_NOMEM;
        memcpy(fired[i], record, (size_t)p->numel);
        (*found)++;
    }
    return ST_OK;
}

st_status st_checkpoint_load_growth_momentum(const st_safetensors *f, const char *path, const st_model *m, float **m1,
                                             float **m2, int *found) {
    char name[ST_NAME_MAX + 64];
    *found = 0;
    for (int i = 0; i < m->n_params; i++) {
        const st_param *p = &m->params[i];
        m1[i] = m2[i] = NULL;
        if (!p->sparse) continue;
        for (int which = 0; which < 2; which++) {
            snprintf(name, sizeof name, "%s.%s", which == 0 ? "dst_momentum" : "dst_momentum2", p->name);
            if (!st_safetensors_find(f, name)) continue;
            const st_tensor_entry *t;
            ST_TRY(find_tensor(f, path, name, ST_DTYPE_F32, p->ndim, p->shape, &t));
            float *copy = st_malloc(sizeof(float) * (size_t)p->numel, "dense momentum");
            if (!copy) return ST_ERR_NOMEM;
            memcpy(copy, t->data, sizeof(float) * (size_t)p->numel); /* the file's data may be unaligned */
            for (int64_t k = 0; k < p->numel; k++)
                if (!isfinite(copy[k])) {
                    free(copy);
                    return st_fail(ST_ERR_FORMAT, "%s: '%s' holds a non-finite value", path, name);
                }
            if (which == 0) {
                m1[i] = copy;
                (*found)++;
            } else {
                m2[i] = copy;
            }
        }
    }
    return ST_OK;
}

st_status st_checkpoint_load_optimizer(const st_safetensors *f, const char *path, const st_model *m,
                                       st_optimizer *opt) {
    const char *kind = st_safetensors_meta(f, "optimizer");
    const char *want = opt->kind == ST_OPTIMIZER_SGD ? "sgd" : "adam";
    if (!kind || strcmp(kind, want) != 0)
        return st_fail(ST_ERR_FORMAT, "%s: checkpoint optimizer is %s, not %s", path, kind ? kind : "missing", want);
    const char *step = st_safetensors_meta(f, "step");
    char *end = NULL;
    long long steps = step ? strtoll(step, &end, 10) : -1;
    if (!step || !*step || *end || steps < 0)
        return st_fail(ST_ERR_FORMAT, "%s: checkpoint metadata 'step' is missing or invalid", path);
    opt->steps = steps;
    char name[ST_NAME_MAX + 64];
    const st_tensor_entry *t;
    for (int i = 0; i < m->n_params; i++) {
        const st_param *p = &m->params[i];
        for (int which = 0; which < 2; which++) {
            float *state = which == 0 ? opt->state1[i] : opt->state2[i];
            if (!state) continue;
            snprintf(name, sizeof name, "optim.%s.%s", p->name, st_optimizer_state_name(opt, which));
            ST_TRY(find_tensor(f, path, name, ST_DTYPE_F32, p->ndim, p->shape, &t));
            if (p->sparse && p->sparse->packed) { /* keep the kept positions (the file's data may be unaligned) */
                float *dense = st_malloc(sizeof(float) * (size_t)p->numel, "optimizer state");
                if (!dense) return ST_ERR_NOMEM;
                memcpy(dense, t->data, (size_t)p->numel * sizeof(float));
                st_sparse_weight_gather(p->sparse, dense, state);
                free(dense);
                continue;
            }
            memcpy(state, t->data, (size_t)p->numel * sizeof(float));
            if (p->sparse) st_sparse_weight_apply_mask(p->sparse, state);
        }
    }
    return ST_OK;
}

static st_status meta_number(const st_safetensors *f, const char *path, const char *key, double *out) {
    const char *v = st_safetensors_meta(f, key);
    char *end = NULL;
    double x = v ? strtod(v, &end) : 0;
    if (!v || !*v || *end || !isfinite(x))
        return st_fail(ST_ERR_FORMAT, "%s: checkpoint metadata '%s' is missing or invalid", path, key);
    *out = x;
    return ST_OK;
}

/* A decimal integer in [lo, hi] (counters are written with %d / PRId64). */
static st_status meta_integer(const st_safetensors *f, const char *path, const char *key, int64_t lo, int64_t hi,
                              int64_t *out) {
    const char *v = st_safetensors_meta(f, key);
    char *end = NULL;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || x < lo || x > hi)
        return st_fail(ST_ERR_FORMAT, "%s: checkpoint metadata '%s' is missing or not an integer in [%lld, %lld]",
                       path, key, (long long)lo, (long long)hi);
    *out = (int64_t)x;
    return ST_OK;
}

/* The seed: a decimal uint64 (digits only). */
static st_status meta_seed(const st_safetensors *f, const char *path, uint64_t *out) {
    const char *v = st_safetensors_meta(f, "seed");
    char *end = NULL;
    errno = 0;
    unsigned long long x = v && *v >= '0' && *v <= '9' ? strtoull(v, &end, 10) : 0;
    if (!v || !end || *end || errno)
        return st_fail(ST_ERR_FORMAT, "%s: checkpoint metadata 'seed' is missing or not an unsigned integer", path);
    *out = (uint64_t)x;
    return ST_OK;
}

#define COUNTER_MAX ((int64_t)1 << 53) /* far beyond any run, still exact in a double */

st_status st_checkpoint_read_info(const st_safetensors *f, const char *path, st_checkpoint_info *info) {
    memset(info, 0, sizeof *info);
    int64_t epoch, best_epoch;
    ST_TRY(meta_integer(f, path, "epoch", 0, INT_MAX, &epoch));
    ST_TRY(meta_integer(f, path, "step", 0, COUNTER_MAX, &info->step));
    ST_TRY(meta_seed(f, path, &info->seed));
    ST_TRY(meta_number(f, path, "best_val_acc", &info->best_val_acc));
    ST_TRY(meta_integer(f, path, "best_epoch", -1, INT_MAX, &best_epoch));
    ST_TRY(meta_number(f, path, "best_test_acc", &info->best_test_acc));
    ST_TRY(meta_integer(f, path, "batch_in_epoch", 0, COUNTER_MAX, &info->batch_in_epoch));
    ST_TRY(meta_number(f, path, "epoch_loss_sum", &info->epoch_loss_sum));
    ST_TRY(meta_integer(f, path, "epoch_correct", 0, COUNTER_MAX, &info->epoch_correct));
    ST_TRY(meta_integer(f, path, "epoch_seen", 0, COUNTER_MAX, &info->epoch_seen));
    info->epoch = (int)epoch;
    info->best_epoch = (int)best_epoch;
    info->args_json = st_safetensors_meta(f, "args");
    info->data = st_safetensors_meta(f, "data");
    info->run_id = st_safetensors_meta(f, "run_id");
    const char *densities = st_safetensors_meta(f, "layer_densities");
    if (!densities) return ST_OK; /* written since layer densities were recorded; optional */
    char source[1100];
    snprintf(source, sizeof source, "metadata 'layer_densities' of %s", path);
    st_json_document *doc;
    ST_TRY(st_json_parse(densities, strlen(densities), source, NULL, &doc));
    const st_json_value *root = st_json_root(doc);
    st_status s = root->type == ST_JSON_OBJECT && root->count <= ST_CHECKPOINT_MAX_LAYERS
                      ? ST_OK
                      : st_fail(ST_ERR_FORMAT, "%s: not an object of at most %d layers", source, ST_CHECKPOINT_MAX_LAYERS);
    int n = 0;
    for (const st_json_value *v = root->first_child; s == ST_OK && v; v = v->next) {
        if (v->type != ST_JSON_NUMBER || !(v->number >= 0 && v->number <= 1))
            s = st_fail(ST_ERR_FORMAT, "%s: density of '%s' is not a number in [0, 1]", source, v->key);
        else
            info->layer_densities[n++] = v->number;
    }
    if (s == ST_OK) info->n_layer_densities = n;
    st_json_free(doc);
    return s;
}
