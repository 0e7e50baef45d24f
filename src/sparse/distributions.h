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

/* Every --sparse_init value, for messages. */
#define ST_SPARSE_INIT_NAMES "dense, uniform, uniform_plus, ER, ERK, ERK_plus, snip, GraSP, global_magnitude"

/* 1 if `name` is one of ST_SPARSE_INIT_NAMES (spelt exactly as the reference code does). */
int st_sparse_init_is_known(const char *name);
/* 1 for the distributions read off the initialised weights (snip, GraSP,
 * global_magnitude: see saliency/saliency.h), 0 for the pure ones below. */
int st_sparse_init_needs_weights(const char *name);
/* 1 for the distributions that also need training data (snip, GraSP). */
int st_sparse_init_needs_data(const char *name);

/* Fills densities[n_layers] for distribution `name` ("dense", "uniform",
 * "uniform_plus", "ER", "ERK", "ERK_plus") at overall density `density`.
 * `fc_density` is used by ERK_plus. The stem is the layer flagged is_first,
 * the classifier the one flagged is_classifier. Data-dependent distributions
 * (snip, GraSP, global_magnitude) are computed by st_model_layer_densities
 * (saliency/saliency.h); passing their name here is an ST_ERR_ARGUMENT. */
st_status st_layer_densities(const char *name, double density, double fc_density, const st_layer_shape *layers,
                             int n_layers, double *densities);

int64_t st_layer_numel(const st_layer_shape *l);

#endif
