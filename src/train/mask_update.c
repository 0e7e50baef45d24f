/* The mask-update driver of dynamic sparse training and the ITOP record
 * (mask_update.h). */
#include "train/mask_update.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"
#include "core/status.h"
#include "optim/optimizer.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

st_status st_mask_update_settings_check(const st_mask_update_settings *s) {
    if (!s->dynamic) return ST_OK;
    if (s->frequency <= 0)
        return st_fail(ST_ERR_ARGUMENT, "--update_frequency must be positive (got %d)", s->frequency);
    if (!(s->death_rate >= 0 && s->death_rate <= 1))
        return st_fail(ST_ERR_ARGUMENT, "--death-rate must be in [0, 1] (got %g)", s->death_rate);
    return ST_OK;
}

void st_mask_updater_free(st_mask_updater *u) {
    if (!u) return;
    if (u->fired)
        for (int i = 0; i < u->n_params; i++) free(u->fired[i]);
    if (u->dense_grad)
        for (int i = 0; i < u->n_params; i++) free(u->dense_grad[i]);
    for (int i = 0; u->momentum && i < u->n_params; i++) free(u->momentum[i]);
    for (int i = 0; u->momentum2 && i < u->n_params; i++) free(u->momentum2[i]);
    free(u->fired);
    free(u->dense_grad);
    free(u->momentum);
    free(u->momentum2);
    free(u->layers);
    free(u);
}

st_status st_mask_updater_create(const st_model *m, const st_mask_update_settings *s, st_mask_updater **out) {
    *out = NULL;
    ST_TRY(st_mask_update_settings_check(s));
    st_mask_updater *u = st_calloc(1, sizeof *u, "mask updater");
    if (!u) return ST_ERR_NOMEM;
    u->set = *s;
    u->n_params = m->n_params;
    u->fired = st_calloc((size_t)m->n_params + 1, sizeof *u->fired, "mask updater");
    u->dense_grad = st_calloc((size_t)m->n_params + 1, sizeof *u->dense_grad, "mask updater");
    int n = 0;
    for (int i = 0; i < m->n_params; i++) n += m->params[i].sparse != NULL;
    u->layers = st_calloc((size_t)n + 1, sizeof *u->layers, "mask updater");
    if (!u->fired || !u->dense_grad || !u->layers) {
        st_mask_updater_free(u);
        return ST_ERR_NOMEM;
    }
    for (int i = 0; i < m->n_params; i++) {
        const st_param *p = &m->params[i];
        if (!p->sparse) continue;
        st_mask_update_layer *l = &u->layers[u->n_layers++];
        l->param = i;
        l->numel = p->numel;
        l->kept = p->sparse->kept;
        l->fired = l->kept;
        u->fired[i] = st_malloc((size_t)p->numel, "ITOP record");
        if (!u->fired[i]) {
            st_mask_updater_free(u);
            return ST_ERR_NOMEM;
        }
        st_sparse_weight_mask_dense(p->sparse, u->fired[i]);
        if (s->dynamic && s->growth == ST_GROWTH_MOMENTUM && l->kept < l->numel) {
            if (!u->momentum) u->momentum = st_calloc((size_t)m->n_params + 1, sizeof *u->momentum, "dense momentum");
            if (s->adam && !u->momentum2)
                u->momentum2 = st_calloc((size_t)m->n_params + 1, sizeof *u->momentum2, "dense momentum");
            if (!u->momentum || (s->adam && !u->momentum2)) {
                st_mask_updater_free(u);
                return ST_ERR_NOMEM;
            }
            u->momentum[i] = st_calloc((size_t)p->numel, sizeof(float), "dense momentum of momentum growth");
            if (s->adam) u->momentum2[i] = st_calloc((size_t)p->numel, sizeof(float), "dense momentum of momentum growth");
            if (!u->momentum[i] || (s->adam && !u->momentum2[i])) {
                st_mask_updater_free(u);
                return ST_ERR_NOMEM;
            }
        }
        /* dW = dy x^T costs one multiply-add per weight and output position */
        for (int k = 0; k < m->n_ops; k++) {
            const st_op *op = &m->ops[k];
            if ((op->kind == ST_OP_CONV || op->kind == ST_OP_LINEAR) && op->weight == i)
                l->dense_grad_macs = (double)p->numel * m->acts[op->out].height * m->acts[op->out].width;
        }
    }
    *out = u;
    return ST_OK;
}

int st_mask_updater_due(const st_mask_updater *u, int64_t step) {
    return u && u->set.dynamic && step > 0 && step % u->set.frequency == 0 && step < u->set.total_steps;
}

/* The run's last update step (0: none). */
static int64_t last_update_step(const st_mask_updater *u) {
    if (!u->set.dynamic || u->set.total_steps <= 1) return 0;
    return (u->set.total_steps - 1) / u->set.frequency * u->set.frequency;
}

/* 1 when step `step` needs the dense gradients: the update step of gradient
 * growth; every step up to the last update for momentum growth. */
static int wants_dense_grad(const st_mask_updater *u, int64_t step) {
    if (u->set.growth == ST_GROWTH_GRADIENT) return st_mask_updater_due(u, step);
    if (u->set.growth == ST_GROWTH_MOMENTUM) return u->set.dynamic && step > 0 && step <= last_update_step(u);
    return 0;
}

static void disarm(st_mask_updater *u, st_model *m) {
    if (!u->armed) return;
    for (int i = 0; i < u->n_params; i++) {
        free(u->dense_grad[i]);
        u->dense_grad[i] = NULL;
    }
    m->dense_grad = NULL;
    m->dense_grad_failed = 0;
    u->armed = 0;
}

st_status st_mask_updater_arm(st_mask_updater *u, st_model *m, int64_t step) {
    if (!u) return ST_OK;
    disarm(u, m);
    if (!wants_dense_grad(u, step)) return ST_OK;
    for (int l = 0; l < u->n_layers; l++) {
        const st_mask_update_layer *layer = &u->layers[l];
        if (layer->kept == layer->numel) continue; /* never updated (nothing to regrow) */
        u->dense_grad[layer->param] = st_calloc((size_t)layer->numel, sizeof(float), "dense gradient of an update step");
        if (!u->dense_grad[layer->param]) {
            u->armed = 1;
            disarm(u, m);
            return ST_ERR_NOMEM;
        }
    }
    u->armed = 1;
    m->dense_grad = u->dense_grad;
    m->dense_grad_failed = 0;
    m->dense_grad_seconds = 0;
    return ST_OK;
}

/* One layer's update, with scratch arrays of the layer's size: values, grads, score (floats), mask, before (bytes). */
static st_status update_layer(st_mask_updater *u, st_model *m, st_mask_update_layer *l, double rate, int64_t step,
                              int layer_index, float *values, float *grads, float *score, uint8_t *mask,
                              uint8_t *before) {
    st_param *p = &m->params[l->param];
    const int64_t numel = l->numel;
    l->removed = l->regrown = l->changed = 0;
    if (p->sparse->kept != l->kept)
        return st_fail(ST_ERR_ARGUMENT, "mask update: %s keeps %lld weights, expected %lld", p->name,
                       (long long)p->sparse->kept, (long long)l->kept);
    if (l->kept == numel) return ST_OK; /* fully dense: nothing could be regrown elsewhere */
    st_sparse_weight_mask_dense(p->sparse, mask);
    memcpy(before, mask, (size_t)numel);
    st_sparse_weight_scatter(p->sparse, p->value, values);
    const st_death_kind death = u->set.death;
    if (death == ST_DEATH_TAYLOR_FO) st_sparse_weight_scatter(p->sparse, p->grad, grads);
    const int64_t k = death == ST_DEATH_THRESHOLD ? 0 : st_dst_removal_count(rate, l->kept);
    const int64_t removed = st_dst_death(death, numel, mask, values, grads, k, ST_DST_DEATH_THRESHOLD);
    if (removed < 0) return st_fail(ST_ERR_NOMEM, "out of memory in the mask update of %s", p->name);
    st_rng rng;
    st_rng_seed(&rng, u->set.seed, st_hash_string("mask-update") ^ ((uint64_t)step * 0x9E3779B97F4A7C15ull) ^
                                       ((uint64_t)layer_index << 1));
    const float *g = u->dense_grad[l->param];
    if (u->set.growth == ST_GROWTH_GRADIENT && !g)
        return st_fail(ST_ERR_ARGUMENT, "mask update of %s: no dense gradient was computed for step %lld", p->name,
                       (long long)step);
    if (u->set.growth == ST_GROWTH_MOMENTUM) {
        st_dst_momentum_score(numel, u->momentum[l->param], u->momentum2 ? u->momentum2[l->param] : NULL, score);
        g = score;
    }
    const int64_t grown = st_dst_growth(u->set.growth, numel, mask, u->fired[l->param], g, removed, &rng);
    if (grown < 0) return st_fail(ST_ERR_NOMEM, "out of memory in the mask update of %s", p->name);
    ST_ASSERT(grown == removed); /* the removed positions themselves are inactive candidates */
    l->removed = removed;
    l->regrown = grown;
    int64_t changed = 0;
    for (int64_t i = 0; i < numel; i++) changed += mask[i] && !before[i];
    l->changed = changed;
    if (changed) ST_TRY(st_param_store_remap(&m->store, l->param, mask));
    uint8_t *fired = u->fired[l->param];
    int64_t count = 0;
    for (int64_t i = 0; i < numel; i++) {
        fired[i] |= mask[i];
        count += fired[i];
    }
    l->fired = count;
    return ST_OK;
}

st_status st_mask_updater_before_step(st_mask_updater *u, st_model *m, const st_optimizer *o) {
    if (!u || !u->armed || u->set.growth != ST_GROWTH_MOMENTUM) return ST_OK;
    if (m->dense_grad_failed)
        return st_fail(ST_ERR_NOMEM, "out of memory computing the dense gradients of momentum growth");
    int64_t largest = 1;
    for (int l = 0; l < u->n_layers; l++)
        if (u->layers[l].numel > largest) largest = u->layers[l].numel;
    float *w = malloc(sizeof(float) * (size_t)largest);
    if (!w) return st_fail(ST_ERR_NOMEM, "out of memory in the momentum of momentum growth");
    for (int l = 0; l < u->n_layers; l++) {
        const int i = u->layers[l].param;
        const float *g = u->dense_grad[i];
        float *m1 = u->momentum[i], *m2 = u->momentum2 ? u->momentum2[i] : NULL;
        if (!g || !m1) continue;
        const st_param *p = &m->params[i];
        st_sparse_weight_scatter(p->sparse, p->value, w); /* 0 at the inactive positions */
        const float wd = o->no_decay && o->no_decay[i] ? 0.0f : (float)o->weight_decay;
        if (o->kind == ST_OPTIMIZER_SGD)
            st_dst_momentum_step(p->numel, m1, NULL, g, w, wd, o->momentum, 0.0);
        else
            st_dst_momentum_step(p->numel, m1, m2, g, w, wd, o->beta1, o->beta2);
    }
    free(w);
    return ST_OK;
}

st_status st_mask_updater_after_step(st_mask_updater *u, st_model *m, int64_t step, int *updated) {
    *updated = 0;
    if (!u) return ST_OK;
    if (!st_mask_updater_due(u, step)) {
        disarm(u, m);
        return ST_OK;
    }
    if (m->dense_grad_failed) {
        disarm(u, m);
        return st_fail(ST_ERR_NOMEM, "out of memory computing the dense gradients of mask update step %lld",
                       (long long)step);
    }
    const double t0 = now_seconds();
    const double rate = st_dst_death_rate(u->set.decay, u->set.death_rate, step, u->set.total_steps);
    int64_t largest = 1;
    for (int l = 0; l < u->n_layers; l++)
        if (u->layers[l].numel > largest) largest = u->layers[l].numel;
    float *values = malloc(sizeof(float) * (size_t)largest * 3);
    uint8_t *mask = malloc((size_t)largest * 2);
    st_status s = values && mask ? ST_OK : st_fail(ST_ERR_NOMEM, "out of memory in the mask update");
    st_mask_update_stats st = {.step = step, .index = step / u->set.frequency, .death_rate = rate,
                               .dense_grad_seconds = m->dense_grad_seconds};
    for (int l = 0; s == ST_OK && l < u->n_layers; l++) {
        s = update_layer(u, m, &u->layers[l], rate, step, l, values, values + largest, values + 2 * largest, mask,
                         mask + largest);
        st.removed += u->layers[l].removed;
        st.regrown += u->layers[l].regrown;
        st.changed += u->layers[l].changed;
    }
    free(values);
    free(mask);
    disarm(u, m);
    ST_TRY(s);
    st.seconds = now_seconds() - t0;
    st.itop_rate = st_mask_updater_itop_rate(u);
    u->last = st;
    u->updates++;
    *updated = 1;
    return ST_OK;
}

double st_mask_updater_itop_rate(const st_mask_updater *u) {
    int64_t fired = 0, total = 0;
    for (int l = 0; l < u->n_layers; l++) {
        fired += u->layers[l].fired;
        total += u->layers[l].numel;
    }
    return total ? (double)fired / (double)total : 0.0;
}

st_status st_mask_updater_restore(st_mask_updater *u, const st_model *m, uint8_t *const *fired) {
    uint8_t *mask = NULL;
    st_status s = ST_OK;
    for (int l = 0; s == ST_OK && l < u->n_layers; l++) {
        st_mask_update_layer *layer = &u->layers[l];
        const st_param *p = &m->params[layer->param];
        const uint8_t *saved = fired[layer->param];
        if (!saved) {
            s = st_fail(ST_ERR_FORMAT, "the ITOP record of %s is missing", p->name);
            break;
        }
        free(mask);
        mask = st_malloc((size_t)layer->numel, "ITOP record");
        if (!mask) {
            s = ST_ERR_NOMEM;
            break;
        }
        st_sparse_weight_mask_dense(p->sparse, mask);
        int64_t count = 0;
        for (int64_t i = 0; i < layer->numel; i++) {
            if (mask[i] && !saved[i]) {
                s = st_fail(ST_ERR_FORMAT, "the ITOP record of %s misses position %lld, which is active", p->name,
                            (long long)i);
                break;
            }
            count += saved[i] != 0;
        }
        if (s != ST_OK) break;
        for (int64_t i = 0; i < layer->numel; i++) u->fired[layer->param][i] = saved[i] != 0;
        layer->fired = count;
        layer->kept = p->sparse->kept;
    }
    free(mask);
    return s;
}

st_status st_mask_updater_restore_momentum(st_mask_updater *u, const st_model *m, float *const *m1, float *const *m2) {
    for (int l = 0; u->momentum && l < u->n_layers; l++) {
        const int i = u->layers[l].param;
        if (!u->momentum[i]) continue;
        const st_param *p = &m->params[i];
        if (!m1[i] || (u->momentum2 && !m2[i]))
            return st_fail(ST_ERR_FORMAT, "the dense momentum of momentum growth for %s is missing", p->name);
        memcpy(u->momentum[i], m1[i], sizeof(float) * (size_t)p->numel);
        if (u->momentum2) memcpy(u->momentum2[i], m2[i], sizeof(float) * (size_t)p->numel);
    }
    return ST_OK;
}

int64_t st_mask_updater_extra_bytes(const st_mask_updater *u) {
    if (!u || !u->set.dynamic || u->set.growth != ST_GROWTH_MOMENTUM) return 0;
    int64_t floats = 0;
    for (int l = 0; l < u->n_layers; l++)
        if (u->layers[l].kept < u->layers[l].numel) floats += u->layers[l].numel * (u->set.adam ? 3 : 2);
    return floats * (int64_t)sizeof(float);
}

double st_mask_updater_dense_grad_macs(const st_mask_updater *u, int64_t step_from, int64_t step_to, int batch) {
    if (!u || !u->set.dynamic || step_to <= step_from) return 0.0;
    int64_t steps = 0; /* steps in (step_from, step_to] that compute the dense gradients */
    if (u->set.growth == ST_GROWTH_GRADIENT) {
        const int64_t f = u->set.frequency;
        int64_t last = step_to < u->set.total_steps - 1 ? step_to : u->set.total_steps - 1; /* due: step < total */
        steps = last > step_from ? last / f - step_from / f : 0;
    } else if (u->set.growth == ST_GROWTH_MOMENTUM) {
        const int64_t last = step_to < last_update_step(u) ? step_to : last_update_step(u);
        steps = last > step_from ? last - step_from : 0;
    } else {
        return 0.0;
    }
    double per_example = 0;
    for (int l = 0; l < u->n_layers; l++)
        if (u->layers[l].kept < u->layers[l].numel) per_example += u->layers[l].dense_grad_macs;
    return (double)steps * (double)batch * per_example;
}
