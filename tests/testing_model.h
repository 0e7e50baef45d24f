/* A model for whole-model C tests: created, masked at ERK `density` (exact
 * counts) and initialised with `seed`, in training mode. Exits on failure. */
#ifndef ST_TESTING_MODEL_H
#define ST_TESTING_MODEL_H

#include "models/init.h"
#include "models/model.h"
#include "sparse/distributions.h"
#include "sparse/masks.h"
#include "testing.h"

static inline st_model *st_test_erk_model(const char *name, int c, int h, int w, double density, uint64_t seed) {
    st_model *m = NULL;
    CHECK_OK(st_model_create(name, 10, c, h, w, &m));
    if (!m) exit(1);
    st_layer_shape *shapes;
    int *ids, n;
    CHECK_OK(st_model_prunable_layers(m, &shapes, &ids, &n));
    double *d = new_bytes(sizeof(double) * (size_t)n);
    CHECK_OK(st_layer_densities("ERK", density, 1.0, shapes, n, d));
    CHECK_OK(st_model_sample_masks(m, d, ST_MASK_EXACT, seed));
    st_model_init_weights(m, seed, ST_INIT_PLAIN, density, NULL);
    free(d), free(shapes), free(ids);
    m->training = 1;
    return m;
}

#endif
