/* Optimisers with the exact semantics of torch.optim.SGD (momentum,
 * dampening 0, Nesterov, weight decay) and torch.optim.Adam, plus the
 * learning-rate schedules of the reference recipe. */
#ifndef ST_OPTIM_OPTIMIZER_H
#define ST_OPTIM_OPTIMIZER_H

#include <stdint.h>

#include "models/model.h"

typedef enum st_optimizer_kind { ST_OPTIMIZER_SGD = 0, ST_OPTIMIZER_ADAM = 1 } st_optimizer_kind;

typedef struct st_optimizer {
    st_optimizer_kind kind;
    double momentum;      /* SGD */
    int nesterov;         /* SGD */
    double weight_decay;  /* both, PyTorch's weight_decay (L2 added to the gradient) */
    double beta1, beta2, eps; /* Adam: 0.9, 0.999, 1e-8 */
    int64_t steps;        /* optimiser steps taken */
    int n_params;
    /* The state lives in the model's parameter store (params/param_store.h),
     * which moves it with every mask change: these are the store's tables of
     * per-parameter arrays, in the parameter's stored form (st_param_stored
     * floats: only the kept positions of a packed weight). */
    float **state1;       /* per param: SGD momentum_buffer / Adam exp_avg (NULL for buffers / no such state) */
    float **state2;       /* per param: Adam exp_avg_sq (NULL otherwise) */
    st_param_store *store; /* where the slots are */
    unsigned char *no_decay; /* per param: 1 = no weight decay on it (NULL: decay on every parameter) */
    int slot[2];          /* the store's slots of state1 / state2, -1 when absent */
} st_optimizer;

st_status st_optimizer_create(st_optimizer *o, st_model *m, st_optimizer_kind kind, double momentum,
                              int nesterov, double weight_decay);
/* Excludes parameter `param` from weight decay (as a PyTorch parameter group
 * with weight_decay 0). */
st_status st_optimizer_exclude_from_decay(st_optimizer *o, int param);
/* The reference's ImageNet rule (its get_optimizer without
 * --bn-weight-decay): every parameter whose name contains "bn" gets no
 * weight decay. Returns the number excluded in *count (may be NULL). */
st_status st_optimizer_exclude_bn_from_decay(st_optimizer *o, const st_model *m, int *count);
/* Releases the optimiser's slots of the store (call before freeing the model). */
void st_optimizer_free(st_optimizer *o);
/* One step at learning rate `lr` over every trainable parameter of `m`;
 * masked weights and their state are kept at exactly 0. */
void st_optimizer_step(st_optimizer *o, st_model *m, double lr);
/* Names of the per-parameter state tensors ("momentum_buffer", "exp_avg", "exp_avg_sq"). */
const char *st_optimizer_state_name(const st_optimizer *o, int which);

typedef enum st_lr_schedule { ST_LR_MULTISTEP = 0, ST_LR_COSINE = 1, ST_LR_STEP = 2 } st_lr_schedule;
/* Learning rate during 0-based `epoch` of `epochs`: multistep = x0.1 at
 * epochs/2 and 3*epochs/4 (integer division, as the reference's MultiStepLR);
 * cosine = CosineAnnealingLR(T_max = epochs, eta_min = 0); step = x0.1 at
 * epochs 30, 60 and 80 (the reference's ImageNet adjust_learning_rate). */
double st_lr_at_epoch(st_lr_schedule schedule, double base_lr, int epoch, int epochs);
/* The same after `warmup` linear warm-up epochs, as the reference's ImageNet
 * code (set once per epoch): lr * (epoch + 1) / (warmup + 1) while epoch <
 * warmup, then the schedule's value at `epoch`. warmup 0 = st_lr_at_epoch. */
double st_lr_at_epoch_warmup(st_lr_schedule schedule, double base_lr, int epoch, int epochs, int warmup);

#endif
