/* FLOPs counting (see flops.h): closed forms per layer and a walk over the
 * model's operation list for the activation shapes. */
#include "sparse/flops.h"

#include <stdlib.h>

#include "core/status.h"
#include "sparse/masks.h"

double st_conv2d_macs(int64_t out_h, int64_t out_w, int64_t out_channels, int64_t in_channels, int64_t kh,
                      int64_t kw) {
    return (double)out_h * (double)out_w * (double)out_channels * (double)in_channels * (double)kh * (double)kw;
}

double st_linear_macs(int64_t in_features, int64_t out_features) { return (double)in_features * (double)out_features; }

double st_sparse_macs(double dense_macs, double density) { return dense_macs * density; }

static double elements(const st_activation *a) { return (double)a->channels * a->height * a->width; }

st_status st_model_forward_flops(const st_model *m, double *layer_macs, double *other) {
    st_layer_shape *shapes;
    int *ids, n;
    ST_TRY(st_model_prunable_layers(m, &shapes, &ids, &n));
    free(shapes);
    for (int l = 0; l < n; l++) layer_macs[l] = 0;
    *other = 0;
    st_status s = ST_OK;
    for (int i = 0; i < m->n_ops && s == ST_OK; i++) {
        const st_op *op = &m->ops[i];
        const st_activation *in = &m->acts[op->in], *out = &m->acts[op->out];
        int layer = -1;
        if (op->kind == ST_OP_CONV || op->kind == ST_OP_LINEAR) {
            for (int l = 0; l < n; l++)
                if (ids[l] == op->weight) layer = l;
            if (layer < 0) {
                s = st_fail(ST_ERR_ARGUMENT, "model %s: operation %d has no prunable weight", m->name, i);
                break;
            }
        }
        switch (op->kind) {
        case ST_OP_CONV:
            layer_macs[layer] += st_conv2d_macs(out->height, out->width, out->channels, in->channels, op->kernel,
                                                op->kernel);
            if (op->bias >= 0) *other += elements(out);
            break;
        case ST_OP_LINEAR:
            layer_macs[layer] += st_linear_macs((int64_t)elements(in), out->channels);
            if (op->bias >= 0) *other += elements(out);
            break;
        case ST_OP_BATCHNORM: *other += 2 * elements(out); break;
        case ST_OP_RELU:
        case ST_OP_ADD: *other += elements(out); break;
        case ST_OP_MAXPOOL:
        case ST_OP_AVGPOOL: *other += elements(out) * op->kernel * op->kernel; break;
        case ST_OP_GLOBAL_AVGPOOL: *other += elements(in); break;
        case ST_OP_FLATTEN: break;
        }
    }
    free(ids);
    return s;
}
