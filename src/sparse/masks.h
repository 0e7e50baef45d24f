/* Random masks for a model's prunable weights at given per-layer densities. */
#ifndef ST_SPARSE_MASKS_H
#define ST_SPARSE_MASKS_H

#include <stdint.h>

#include "models/model.h"
#include "sparse/distributions.h"

typedef enum st_mask_sampling {
    ST_MASK_BERNOULLI = 0, /* keep each weight with probability d_l (the reference code) */
    ST_MASK_EXACT = 1      /* keep exactly round(d_l * n_l) weights, chosen uniformly */
} st_mask_sampling;

/* The prunable layers of `m` in parameter order: their shapes (with the stem
 * and classifier flagged by structure) and parameter ids. Caller frees both. */
st_status st_model_prunable_layers(const st_model *m, st_layer_shape **shapes, int **param_ids, int *n);

/* Samples and installs one mask per prunable layer (density 1 = no mask).
 * Each layer draws from its own stream (seed, layer name): the result does
 * not depend on the thread count. */
st_status st_model_sample_masks(st_model *m, const double *densities, st_mask_sampling sampling, uint64_t seed);

/* Kept / total prunable weights. */
void st_model_prunable_counts(const st_model *m, int64_t *kept, int64_t *total);

#endif
