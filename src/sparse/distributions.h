/* Layer-wise density distributions (SPEC section 4): pure functions from the
 * prunable layers' shapes and the overall density to per-layer densities. */
#ifndef ST_SPARSE_DISTRIBUTIONS_H
#define ST_SPARSE_DISTRIBUTIONS_H

#include <stdint.h>

#include "sparsetrain.h"

typedef struct st_layer_shape {
    int ndim;          /* 4 for conv [out, in, kh, kw], 2 for linear [out, in] */
    int64_t dims[4];
    int is_first;      /* the stem conv (first prunable layer) */
    int is_classifier; /* the last linear layer */
} st_layer_shape;

/* Fills densities[n_layers] for distribution `name` ("dense", "uniform",
 * "uniform_plus", "ER", "ERK", "ERK_plus") at overall density `density`.
 * `fc_density` is used by ERK_plus. Data-dependent distributions (snip,
 * GraSP, global_magnitude) are computed elsewhere. */
st_status st_layer_densities(const char *name, double density, double fc_density, const st_layer_shape *layers,
                             int n_layers, double *densities);

int64_t st_layer_numel(const st_layer_shape *l);

#endif
