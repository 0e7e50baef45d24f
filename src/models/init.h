/* Weight initialisation as the reference PyTorch code does it. */
#ifndef ST_MODELS_INIT_H
#define ST_MODELS_INIT_H

#include <stdint.h>

#include "models/model.h"

typedef enum st_init_scaling {
    ST_INIT_PLAIN = 0,        /* Kaiming normal, std = sqrt(2 / fan_in) */
    ST_INIT_SCALED = 1,       /* --scaled: std = sqrt(2 / (fan_in * overall density)), as the reference */
    ST_INIT_SCALED_LAYER = 2  /* --scaled-per-layer: each layer's own density instead of the overall one */
} st_init_scaling;

/* Initialises every weight and bias of `m` from `seed` (each tensor from its
 * own stream derived from its name, so the result is independent of threads).
 * `layer_density` (indexed by param id, may be NULL) is used by ST_INIT_SCALED_LAYER. */
void st_model_init_weights(st_model *m, uint64_t seed, st_init_scaling scaling, double density,
                           const double *layer_density);

#endif
