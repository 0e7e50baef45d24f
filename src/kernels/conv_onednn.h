/* Dense 2-D convolution on oneDNN (Debian libdnnl-dev, the library behind
 * PyTorch's CPU convolutions): forward, backward-data and backward-weights
 * primitives for one fixed shape, created once and reused every step.
 * oneDNN picks its kernels from cpuid at run time (AVX-512, AVX2, SSE4.1,
 * reference), never from the build machine; DNNL_MAX_CPU_ISA=AVX2 etc. caps
 * the choice for testing. Activations enter and leave in the layouts the
 * caller names (plain NCHW or a channel-blocked one); the primitives work in
 * the layouts they prefer and reorders bridge any difference inside each call.
 * Without oneDNN at build time every function here reports ST_ERR_ARGUMENT
 * from create, and callers use the im2col + GEMM path. */
#ifndef ST_KERNELS_CONV_ONEDNN_H
#define ST_KERNELS_CONV_ONEDNN_H

#include <stddef.h>

#include "sparsetrain.h"

typedef struct st_onednn_conv st_onednn_conv;

/* 1 when the library was built with oneDNN. */
int st_onednn_available(void);

/* Plans a convolution of x (batch, in_c, in_h, in_w) with weights
 * (out_c, in_c, k, k) [+ bias (out_c)] to y (batch, out_c, out_h, out_w),
 * stride and zero padding on both sides. Activation layouts (x, dx and y, dy):
 * block 1 = NCHW, 8 or 16 = oneDNN's nChw8c / nChw16c, i.e. (N, C/B, H, W, B),
 * channels a multiple of the block; y_block 0 = whichever of these the
 * primitive prefers (st_onednn_conv_output_block says which). Fails
 * (ST_ERR_ARGUMENT, with a message) when oneDNN is unavailable or rejects the
 * shape. */
st_status st_onednn_conv_create(int batch, int in_c, int in_h, int in_w, int out_c, int kernel, int stride,
                                int padding, int has_bias, int x_block, int y_block, st_onednn_conv **out);
void st_onednn_conv_free(st_onednn_conv *c);
int st_onednn_conv_output_block(const st_onednn_conv *c);

/* Scratch floats that forward and backward need (blocked copies of the
 * tensors and the primitives' own scratchpads), including alignment slack. */
size_t st_onednn_conv_workspace_floats(const st_onednn_conv *c);

/* Implementation names oneDNN chose, e.g. "jit:avx512_core" (for reports). */
const char *st_onednn_conv_implementation(const st_onednn_conv *c, int which /* 0 fwd, 1 bwd data, 2 bwd weights */);

/* y = conv(x, w) + bias (bias NULL when planned without). w is dense
 * (out_c, in_c*k*k) row-major. Runs on omp_get_max_threads() threads. */
st_status st_onednn_conv_forward(st_onednn_conv *c, const float *x, const float *w, const float *bias, float *y,
                                 float *workspace);

/* dx += dL/dx, or dx = dL/dx when dx_accumulate is 0 (skipped when dx is
 * NULL); dw = dL/dw as a dense (out_c, in_c*k*k) array, overwritten (skipped
 * when dw is NULL). */
st_status st_onednn_conv_backward(st_onednn_conv *c, const float *x, const float *w, const float *dy, float *dx,
                                  int dx_accumulate, float *dw, float *workspace);

#endif
