/* SGD / Adam steps written to match PyTorch's float32 arithmetic order, so
 * that loss curves agree with torch.optim on identical inputs. */
#include "optim/optimizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

st_status st_optimizer_create(st_optimizer *o, st_model *m, st_optimizer_kind kind, double momentum,
                              int nesterov, double weight_decay) {
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->momentum = momentum;
    o->nesterov = nesterov;
    o->weight_decay = weight_decay;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->store = &m->store;
    o->slot[0] = o->slot[1] = -1;
    o->state1 = o->state2 = st_param_store_slot_table(o->store, -1);
    if (nesterov && kind == ST_OPTIMIZER_SGD && momentum <= 0)
        return st_fail(ST_ERR_ARGUMENT, "Nesterov momentum requires --momentum > 0");
    o->n_params = m->n_params;
    if (kind == ST_OPTIMIZER_ADAM || momentum != 0) {
        ST_TRY(st_param_store_add_slot(o->store, kind == ST_OPTIMIZER_SGD ? "momentum_buffer" : "exp_avg", &o->slot[0]));
        o->state1 = st_param_store_slot_table(o->store, o->slot[0]);
    }
    if (kind == ST_OPTIMIZER_ADAM) {
        ST_TRY(st_param_store_add_slot(o->store, "exp_avg_sq", &o->slot[1]));
        o->state2 = st_param_store_slot_table(o->store, o->slot[1]);
    }
    return ST_OK;
}

st_status st_optimizer_exclude_from_decay(st_optimizer *o, int param) {
    if (param < 0 || param >= o->n_params) return st_fail(ST_ERR_ARGUMENT, "no parameter %d", param);
    if (!o->no_decay) {
        o->no_decay = st_calloc((size_t)o->n_params, 1, "weight decay groups");
        if (!o->no_decay) return ST_ERR_NOMEM;
    }
    o->no_decay[param] = 1;
    return ST_OK;
}

st_status st_optimizer_exclude_bn_from_decay(st_optimizer *o, const st_model *m, int *count) {
    int n = 0;
    for (int i = 0; i < m->n_params; i++)
        if (!m->params[i].is_buffer && strstr(m->params[i].name, "bn")) {
            ST_TRY(st_optimizer_exclude_from_decay(o, i));
            n++;
        }
    if (count) *count = n;
    return ST_OK;
}

void st_optimizer_free(st_optimizer *o) {
    if (!o) return;
    free(o->no_decay);
    if (o->store) {
        st_param_store_remove_slot(o->store, o->slot[0]);
        st_param_store_remove_slot(o->store, o->slot[1]);
    }
    memset(o, 0, sizeof *o);
}

const char *st_optimizer_state_name(const st_optimizer *o, int which) {
    if (o->kind == ST_OPTIMIZER_SGD) return which == 0 ? "momentum_buffer" : NULL;
    return which == 0 ? "exp_avg" : "exp_avg_sq";
}

static void sgd_update(int64_t n, float *restrict w, const float *restrict g, float *restrict buf, float lr,
                       float wd, float momentum, int nesterov) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        if (buf) {
            float b = buf[i] * momentum + d;
            buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        w[i] = w[i] + (-lr) * d;
    }
}

static void adam_update(int64_t n, float *restrict w, const float *restrict g, float *restrict m,
                        float *restrict v, float wd, double beta1_d, double beta2_d, float eps, double step_size,
                        double bias_correction2_sqrt) {
    float ss = (float)step_size, bc2 = (float)bias_correction2_sqrt;
    /* 1 - beta in double, then rounded, as PyTorch's Python scalars: (1.0f -
     * 0.999f) is 1.3e-5 away from 0.001f (tests/optimizer_parity_test.py). */
    float beta1 = (float)beta1_d, beta2 = (float)beta2_d;
    float one_minus_beta1 = (float)(1.0 - beta1_d), one_minus_beta2 = (float)(1.0 - beta2_d);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        m[i] = m[i] * beta1 + d * one_minus_beta1;
        v[i] = v[i] * beta2 + one_minus_beta2 * d * d; /* addcmul_: value * t1 * t2 */
        float denom = sqrtf(v[i]) / bc2 + eps;
        w[i] = w[i] + (-ss) * (m[i] / denom);
    }
}

void st_optimizer_step(st_optimizer *o, st_model *m, double lr) {
    o->steps++;
    double bc1 = 1.0 - pow(o->beta1, (double)o->steps);
    double bc2 = 1.0 - pow(o->beta2, (double)o->steps);
    for (int i = 0; i < m->n_params; i++) {
        st_param *p = &m->params[i];
        if (p->is_buffer) continue;
        const float wd = o->no_decay && o->no_decay[i] ? 0.0f : (float)o->weight_decay;
        if (o->kind == ST_OPTIMIZER_SGD)
            sgd_update(st_param_stored(p), p->value, p->grad, o->state1[i], (float)lr, wd, (float)o->momentum,
                       o->nesterov);
        else
            adam_update(st_param_stored(p), p->value, p->grad, o->state1[i], o->state2[i], wd, o->beta1, o->beta2,
                        (float)o->eps, lr / bc1, sqrt(bc2));
        if (p->sparse) {
            /* The gradient is already masked; re-applying the mask keeps the
             * invariant exact even if a future update rule were not linear. */
            st_sparse_weight_apply_mask(p->sparse, p->value);
            st_sparse_weight_apply_mask(p->sparse, o->state1[i]);
            st_sparse_weight_apply_mask(p->sparse, o->state2[i]);
        }
    }
}

double st_lr_at_epoch(st_lr_schedule schedule, double base_lr, int epoch, int epochs) {
    if (schedule == ST_LR_COSINE) return base_lr * (1.0 + cos(M_PI * (double)epoch / (double)epochs)) / 2.0;
    if (schedule == ST_LR_STEP) /* lr * 0.1 ** p, as the reference computes it */
        return base_lr * pow(0.1, epoch < 30 ? 0 : epoch < 60 ? 1 : epoch < 80 ? 2 : 3);
    double lr = base_lr;
    if (epoch >= epochs / 2) lr *= 0.1;
    if (epoch >= epochs * 3 / 4) lr *= 0.1;
    return lr;
}

double st_lr_at_epoch_warmup(st_lr_schedule schedule, double base_lr, int epoch, int epochs, int warmup) {
    if (epoch < warmup) return base_lr * (double)(epoch + 1) / (double)(warmup + 1);
    return st_lr_at_epoch(schedule, base_lr, epoch, epochs);
}
