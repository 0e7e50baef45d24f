/* st_flops_summary_of (see flops_summary.h): the per-layer MACs of
 * sparse/flops.c weighted by each layer's achieved density. */
#include "eval/flops_summary.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "sparse/flops.h"
#include "sparse/masks.h"

st_status st_flops_summary_of(const st_model *m, st_flops_summary *out) {
    memset(out, 0, sizeof *out);
    st_layer_shape *shapes;
    int *ids, n;
    ST_TRY(st_model_prunable_layers(m, &shapes, &ids, &n));
    free(shapes);
    double *macs = st_calloc((size_t)n + 1, sizeof(double), "FLOPs");
    double other = 0;
    st_status s = macs ? st_model_forward_flops(m, macs, &other) : ST_ERR_NOMEM;
    if (s == ST_OK) {
        double dense = other, sparse = other;
        for (int l = 0; l < n; l++) {
            const st_param *p = &m->params[ids[l]];
            const int64_t kept = p->sparse ? p->sparse->kept : p->numel;
            dense += macs[l];
            sparse += st_sparse_macs(macs[l], (double)kept / (double)p->numel);
            out->kept += kept;
            out->prunable += p->numel;
        }
        out->forward_dense = dense;
        out->forward_sparse = sparse;
        out->train_dense = ST_TRAIN_STEP_FORWARDS * dense;
        out->train_sparse = ST_TRAIN_STEP_FORWARDS * sparse;
    }
    free(macs);
    free(ids);
    return s;
}
