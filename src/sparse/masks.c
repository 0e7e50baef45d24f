/* Mask sampling (Bernoulli or exact count) and prunable-layer discovery. */
#include "sparse/masks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/status.h"

st_status st_model_prunable_layers(const st_model *m, st_layer_shape **shapes_out, int **ids_out, int *n_out) {
    int n = 0, last_linear = -1;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].sparse) n++;
    st_layer_shape *shapes = st_calloc((size_t)n, sizeof *shapes, "layer shapes");
    int *ids = st_calloc((size_t)n, sizeof *ids, "layer ids");
    if (!shapes || !ids) {
        free(shapes);
        free(ids);
        return ST_ERR_NOMEM;
    }
    int k = 0;
    for (int i = 0; i < m->n_params; i++) {
        const st_param *p = &m->params[i];
        if (!p->sparse) continue;
        shapes[k].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) shapes[k].dims[d] = p->shape[d];
        shapes[k].is_first = (k == 0);
        if (p->ndim == 2) last_linear = k;
        ids[k++] = i;
    }
    if (last_linear >= 0) shapes[last_linear].is_classifier = 1;
    *shapes_out = shapes;
    *ids_out = ids;
    *n_out = n;
    return ST_OK;
}

static st_status sample_exact(st_rng *rng, uint8_t *mask, int64_t numel, int64_t keep) {
    /* Floyd's algorithm would avoid the index array; a partial Fisher-Yates
     * over indices is simple and exact. */
    memset(mask, 0, (size_t)numel);
    int64_t *idx = st_malloc(sizeof *idx * (size_t)numel, "mask sampling indices");
    if (!idx) return ST_ERR_NOMEM;
    for (int64_t i = 0; i < numel; i++) idx[i] = i;
    for (int64_t i = 0; i < keep; i++) {
        int64_t j = i + (int64_t)st_rng_below(rng, (uint64_t)(numel - i));
        int64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
        mask[idx[i]] = 1;
    }
    free(idx);
    return ST_OK;
}

st_status st_model_sample_masks(st_model *m, const double *densities, st_mask_sampling sampling, uint64_t seed) {
    st_layer_shape *shapes;
    int *ids, n;
    ST_TRY(st_model_prunable_layers(m, &shapes, &ids, &n));
    st_status status = ST_OK;
    for (int l = 0; l < n && status == ST_OK; l++) {
        st_param *p = &m->params[ids[l]];
        double d = densities[l];
        if (d >= 1.0) continue;
        uint8_t *mask = st_malloc((size_t)p->numel, "mask");
        if (!mask) {
            status = ST_ERR_NOMEM;
            break;
        }
        char stream[ST_NAME_MAX + 8];
        snprintf(stream, sizeof stream, "mask:%s", p->name);
        st_rng rng;
        st_rng_seed(&rng, seed, st_hash_string(stream));
        if (sampling == ST_MASK_EXACT) {
            status = sample_exact(&rng, mask, p->numel, (int64_t)llround(d * (double)p->numel));
        } else {
            for (int64_t i = 0; i < p->numel; i++) mask[i] = st_rng_uniform_double(&rng) < d;
        }
        if (status == ST_OK) status = st_sparse_weight_set_mask(p->sparse, mask);
        free(mask);
    }
    free(shapes);
    free(ids);
    return status;
}

void st_model_prunable_counts(const st_model *m, int64_t *kept, int64_t *total) {
    *kept = *total = 0;
    for (int i = 0; i < m->n_params; i++) {
        if (!m->params[i].sparse) continue;
        *kept += m->params[i].sparse->kept;
        *total += m->params[i].numel;
    }
}
