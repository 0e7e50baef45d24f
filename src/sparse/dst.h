/* Dynamic sparse training (DST, SPEC section 6): the death and growth
 * criteria and the death-rate schedule, as pure functions over one layer's
 * dense-form mask (numel bytes, 1 = kept) and dense-form arrays (values,
 * gradients). The driver that applies them during training is
 * train/mask_update.h.
 *
 * Determinism: every choice is a total order on (score, position): among
 * equal scores the lower flat position is removed (death) or grown (growth)
 * first; random growth draws from the caller's stream, which the driver
 * derives from (seed, step, layer) so that a resumed run draws the same. */
#ifndef ST_SPARSE_DST_H
#define ST_SPARSE_DST_H

#include <stdint.h>

#include "core/rng.h"
#include "sparsetrain.h"

typedef enum st_death_kind {
    ST_DEATH_MAGNITUDE = 0, /* the k kept weights of smallest |w| */
    ST_DEATH_SET,           /* ceil(k/2) of the non-negative weights closest to 0 and the rest of the negative ones */
    ST_DEATH_THRESHOLD,     /* every kept weight with |w| <= threshold (k is not used) */
    ST_DEATH_TAYLOR_FO      /* the k kept weights of smallest (w * g)^2 */
} st_death_kind;

typedef enum st_growth_kind {
    ST_GROWTH_RANDOM = 0,     /* uniformly among the inactive positions */
    ST_GROWTH_RANDOM_UNFIRED, /* uniformly among the never-active positions first, then among the other inactive */
    ST_GROWTH_GRADIENT,       /* the inactive positions of largest |dense gradient| (RigL) */
    ST_GROWTH_MOMENTUM        /* the inactive positions of largest |dense momentum| (the reference's momentum_growth) */
} st_growth_kind;

typedef enum st_decay_kind { ST_DECAY_COSINE = 0, ST_DECAY_LINEAR } st_decay_kind;

/* The death rate reaches this at the end of the run (the reference's eta_min). */
#define ST_DST_FINAL_DEATH_RATE 0.005
/* --death threshold removes kept weights with |w| <= this (the reference's fixed 0.001). */
#define ST_DST_DEATH_THRESHOLD 0.001f

/* Names of `--death`, `--growth`, `--redistribution`, `--decay-schedule`;
 * each parser names the flag and the accepted values on an unknown name and
 * refuses the reference's modes that are not built, saying why. */
st_status st_dst_parse_death(const char *name, st_death_kind *out);
st_status st_dst_parse_growth(const char *name, st_growth_kind *out);
st_status st_dst_parse_redistribution(const char *name);
st_status st_dst_parse_decay(const char *name, st_decay_kind *out);

/* The death rate in force after optimiser step `step` of `total_steps`:
 * cosine: f + (r0 - f) (1 + cos(pi step / T)) / 2 (PyTorch's CosineAnnealingLR,
 * as the reference steps it once per optimiser step); linear: r0 + (f - r0)
 * step / T; f = ST_DST_FINAL_DEATH_RATE, and f itself from step T on. */
double st_dst_death_rate(st_decay_kind kind, double initial, int64_t step, int64_t total_steps);

/* Weights to remove from a layer with `active` kept weights at `rate`:
 * ceil(rate * active) (the reference's count), at most `active`; 0 for a
 * layer with no inactive position (fully dense: nothing could be regrown
 * elsewhere, so the driver leaves it alone) is the caller's decision. */
int64_t st_dst_removal_count(double rate, int64_t active);

/* Death: clears kept positions of `mask` (numel bytes, in/out) chosen by
 * `kind` from the dense-form values `w` (and gradient `g`, Taylor_FO only;
 * may be NULL otherwise): `k` of them (all kinds but threshold, at most the
 * kept count) or those at or below `threshold`. Returns the number removed,
 * or -1 when out of memory (mask untouched). */
int64_t st_dst_death(st_death_kind kind, int64_t numel, uint8_t *mask, const float *w, const float *g, int64_t k,
                     float threshold);

/* Growth: sets `count` inactive positions of `mask` (at most the inactive
 * count) chosen by `kind`: random kinds draw from `rng`; random_unfired
 * prefers positions with fired[i] == 0 (the ITOP record: ever active);
 * gradient takes the largest |g| (`g` the dense-form gradient), momentum
 * the same with `g` the dense-form momentum score. Returns the
 * number grown, or -1 when out of memory (mask untouched). */
int64_t st_dst_growth(st_growth_kind kind, int64_t numel, uint8_t *mask, const uint8_t *fired, const float *g,
                      int64_t count, st_rng *rng);

/* Momentum growth's dense momentum (the reference's momentum_growth ranks
 * by the optimiser's momentum at every position, computed from dense
 * gradients): one step's update of the n-element buffers from the dense
 * gradient g and the weights w (0 at inactive positions), with d = g + wd w:
 *   m2 == NULL (SGD, torch.optim.SGD's momentum_buffer, dampening 0):
 *     m1 <- beta1 m1 + d   (the first step from m1 = 0 gives d, as PyTorch's clone);
 *   else (Adam's exp_avg / exp_avg_sq):
 *     m1 <- beta1 m1 + (1 - beta1) d,  m2 <- beta2 m2 + (1 - beta2) d^2
 * in float, 1 - beta rounded from double (as optim/optimizer.c). */
void st_dst_momentum_step(int64_t n, float *m1, float *m2, const float *g, const float *w, float wd, double beta1,
                          double beta2);
/* The growth score of that momentum: m1 itself (SGD), or
 * m1 / (sqrt(m2) + 1e-8) (Adam), as the reference's get_momentum_for_weight. */
void st_dst_momentum_score(int64_t n, const float *m1, const float *m2, float *score);

#endif
