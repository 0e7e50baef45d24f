/* Elementwise layers: ReLU and the residual add. NaN passes through ReLU
 * (as in PyTorch) so that divergence is visible downstream. */
#include "nn/layers.h"

/* Below this many elements a parallel region costs more than it saves. */
#define ELEMENTWISE_PARALLEL_MIN 65536

void st_relu_forward(int64_t n, const float *x, float *y) {
#pragma omp parallel for simd schedule(static) if (n >= ELEMENTWISE_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

void st_relu_backward(int64_t n, const float *y, const float *dy, float *dx) {
#pragma omp parallel for simd schedule(static) if (n >= ELEMENTWISE_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) dx[i] += y[i] > 0.0f ? dy[i] : 0.0f;
}

void st_add_forward(int64_t n, const float *a, const float *b, float *y) {
#pragma omp parallel for simd schedule(static) if (n >= ELEMENTWISE_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}
