/* Fully connected layer on the row form of st_sparse_weight:
 * y (batch, out) = x (batch, in) W^T + bias. */
#include "nn/layers.h"

void st_linear_forward(int batch, const float *x, const st_sparse_weight *w, const float *bias, float *y) {
    st_sparse_weight_matmul_rows(w, x, batch, y);
    if (!bias) return;
    const int out = w->rows;
    for (int n = 0; n < batch; n++) {
        float *restrict row = y + (size_t)n * out;
#pragma omp simd
        for (int o = 0; o < out; o++) row[o] += bias[o];
    }
}

void st_linear_backward(int batch, const float *x, const st_sparse_weight *w, const float *dy, float *dx, float *dw,
                        float *dbias) {
    if (dx) st_sparse_weight_accumulate_input_grad_rows(w, dy, batch, dx);
    if (dw) st_sparse_weight_accumulate_grad_rows(w, dy, x, batch, dw);
    if (dbias) {
        const int out = w->rows;
        /* Column sums in double, rows in fixed order. */
        for (int o = 0; o < out; o++) {
            double sum = 0.0;
            for (int n = 0; n < batch; n++) sum += dy[(size_t)n * out + o];
            dbias[o] += (float)sum;
        }
    }
}
