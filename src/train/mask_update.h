/* The mask-update driver of dynamic sparse training (SPEC section 6) and the
 * owner of the ITOP record (the union of every mask a prunable layer has had).
 *
 * Every `frequency` optimiser steps (after the optimiser step whose count is
 * a multiple of it, before the last step of the run), for each prunable layer
 * that has an inactive position: remove k = ceil(rate * kept) kept weights by
 * the death criterion, regrow as many among the then-inactive positions by
 * the growth criterion (sparse/dst.h), and move the layer to the new mask
 * through the parameter store (st_param_store_remap: regrown weights, their
 * gradient and optimiser state start at 0; a position removed and regrown in
 * the same update keeps its value, as in the reference). Kept counts per layer
 * never change. `rate` follows the death-rate schedule over the whole run.
 *
 * Gradient growth needs dL/dW at pruned positions: the driver asks the
 * model's executor for it on update steps only (st_model.dense_grad, armed by
 * st_mask_updater_arm before the step's backward, released after the
 * update), so no dense gradient outlives the step.
 *
 * Momentum growth (the reference's momentum_growth) ranks the inactive
 * positions by |momentum| of a dense buffer per layer that follows the
 * optimiser's rule on the dense weight gradient of EVERY step (SGD: M <- beta
 * M + (g + wd w), torch.optim.SGD's momentum_buffer with dampening 0; Adam:
 * both moments, ranked by m1 / (sqrt(m2) + 1e-8) as the reference's
 * get_momentum_for_weight). So with it the dense gradient is armed on every
 * step up to the last update, and its buffers live for the run (saved in
 * checkpoints): an opt-in cost, counted by st_mask_updater_dense_grad_macs
 * and st_mask_updater_extra_bytes. Mask updates leave these buffers alone,
 * as the reference leaves its momentum buffer.
 *
 * Everything random is a function of (seed, step, layer) and the ITOP record
 * is saved in checkpoints, so a resumed run continues exactly. A --fix run
 * has an updater too (never due): its ITOP record is its mask. */
#ifndef ST_TRAIN_MASK_UPDATE_H
#define ST_TRAIN_MASK_UPDATE_H

#include <stdint.h>

#include "models/model.h"
#include "sparse/dst.h"

typedef struct st_mask_update_settings {
    int dynamic;              /* 0: masks fixed (--fix): ITOP record only */
    st_death_kind death;
    st_growth_kind growth;
    st_decay_kind decay;
    double death_rate;        /* at step 0 (--death-rate) */
    int frequency;            /* optimiser steps between updates (--update_frequency) */
    int64_t total_steps;      /* optimiser steps of the whole run: the schedule's length */
    uint64_t seed;            /* the run's seed (random growth streams) */
    int adam;                 /* momentum growth: the run's optimiser is Adam (both moments are tracked) */
} st_mask_update_settings;

typedef struct st_mask_update_layer {
    int param;                /* parameter id */
    int64_t numel, kept;
    int64_t fired;            /* positions ever active (the ITOP record's count) */
    double dense_grad_macs;   /* multiply-adds of this layer's dense weight gradient per example */
    /* the last update */
    int64_t removed, regrown;
    int64_t changed;          /* positions active after it that were not before */
} st_mask_update_layer;

typedef struct st_mask_update_stats {
    int64_t step;             /* optimiser step it followed */
    int64_t index;            /* 1-based update number of the run (step / frequency) */
    double death_rate;
    int64_t removed, regrown, changed;
    double seconds;           /* wall time of the update (criteria + remaps), without the dense gradient */
    double dense_grad_seconds; /* wall time of the step's dense weight gradients (gradient growth; 0 otherwise) */
    double itop_rate;         /* after it */
} st_mask_update_stats;

typedef struct st_mask_updater {
    st_mask_update_settings set;
    int n_layers;
    st_mask_update_layer *layers;
    int n_params;
    uint8_t **fired;          /* per param: the ITOP record (numel bytes, 1 = ever active); NULL if not prunable */
    float **dense_grad;       /* per param: the armed dense gradient buffers (NULL when not armed) */
    float **momentum;         /* momentum growth, per param: the dense momentum (SGD) / first moment (Adam); else NULL */
    float **momentum2;        /* momentum growth with Adam, per param: the dense second moment; else NULL */
    int armed;
    st_mask_update_stats last;
    int64_t updates;          /* updates done by this process */
} st_mask_updater;

st_status st_mask_update_settings_check(const st_mask_update_settings *s);

/* The ITOP record starts as the current masks. */
st_status st_mask_updater_create(const st_model *m, const st_mask_update_settings *s, st_mask_updater **out);
void st_mask_updater_free(st_mask_updater *u);

/* 1 when optimiser step `step` (1-based) is followed by a mask update. */
int st_mask_updater_due(const st_mask_updater *u, int64_t step);
/* Before the forward/backward of optimiser step `step`: with gradient growth
 * and an update due after it, zeroed dense-gradient buffers are handed to
 * the model (m->dense_grad); otherwise nothing. */
st_status st_mask_updater_arm(st_mask_updater *u, st_model *m, int64_t step);
struct st_optimizer;
/* Momentum growth, after the backward of a step and before its optimiser
 * step (the weights the decay term reads are the step's): folds the armed
 * dense gradients into the dense momentum buffers with the optimiser's rule
 * (its momentum / betas and each parameter's weight decay). Nothing
 * otherwise. */
st_status st_mask_updater_before_step(st_mask_updater *u, st_model *m, const struct st_optimizer *o);
/* After optimiser step `step`: the mask update when due (*updated = 1, stats
 * in u->last); always releases what arm handed out. */
st_status st_mask_updater_after_step(st_mask_updater *u, st_model *m, int64_t step, int *updated);

/* Fraction of all prunable positions ever active, overall. */
double st_mask_updater_itop_rate(const st_mask_updater *u);
/* Replaces the record by a saved one (per param: numel bytes or NULL):
 * every live mask must lie inside it. */
st_status st_mask_updater_restore(st_mask_updater *u, const st_model *m, uint8_t *const *fired);

/* Momentum growth: the dense momentum buffers saved in checkpoints
 * ("dst_momentum.<weight>", and "dst_momentum2.<weight>" with Adam) back
 * into the updater (per param: numel floats or NULL). */
st_status st_mask_updater_restore_momentum(st_mask_updater *u, const st_model *m, float *const *m1, float *const *m2);

/* Bytes the updater holds beyond the ITOP record: the dense momentum
 * buffers of momentum growth for the whole run, plus (peak, during a step)
 * the dense weight gradients it arms. 0 without momentum growth. */
int64_t st_mask_updater_extra_bytes(const st_mask_updater *u);

/* Multiply-adds of the dense weight gradients of the update steps in
 * (step_from, step_to], for `batch` examples per step (RigL's count: the
 * sparse steps are counted by eval/flops_summary.h). 0 unless gradient growth;
 * with momentum growth every step up to the run's last update counts. */
double st_mask_updater_dense_grad_macs(const st_mask_updater *u, int64_t step_from, int64_t step_to, int batch);

#endif
