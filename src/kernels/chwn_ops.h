/* Pooling on batch-innermost (CHWN) activations, for sparse execution:
 * element (n, c, h, w) at ((c * H + h) * W + w) * N + n (see sparse_conv.h).
 * Same semantics as the NCHW layers in nn/ (PyTorch's): max pooling with
 * padding (padded positions never win), average pooling without, max-pool gradient to the first maximum, global average
 * pooling summed in double. Backward functions take an accumulate flag:
 * overwrite dx, or add to it. */
#ifndef ST_KERNELS_CHWN_OPS_H
#define ST_KERNELS_CHWN_OPS_H

#include <stdint.h>

/* y (C, N) = mean over the S = H*W pixels of x (C, S, N). */
void st_chwn_global_avgpool_forward(int channels, int spatial, int batch, const float *x, float *y);
void st_chwn_global_avgpool_backward(int channels, int spatial, int batch, const float *dy, float *dx, int accumulate);

typedef struct st_chwn_pool {
    int channels, height, width, batch, kernel, stride, padding, out_h, out_w;
} st_chwn_pool;

/* padding: max pooling only (0 for average pooling). */
void st_chwn_pool_init(st_chwn_pool *p, int channels, int height, int width, int batch, int kernel, int stride,
                       int padding);
/* argmax: one int32 per output element (the input pixel index h * W + w). */
void st_chwn_maxpool_forward(const st_chwn_pool *p, const float *x, float *y, int32_t *argmax);
void st_chwn_maxpool_backward(const st_chwn_pool *p, const int32_t *argmax, const float *dy, float *dx, int accumulate);
void st_chwn_avgpool_forward(const st_chwn_pool *p, const float *x, float *y);
void st_chwn_avgpool_backward(const st_chwn_pool *p, const float *dy, float *dx, int accumulate);

#endif
