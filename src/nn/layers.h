/* Forward and backward passes of every layer, llm.c style:
 *   x_forward(shape, inputs..., params..., outputs...)
 *   x_backward(shape, saved..., dout, dinp (+=), dparams (+=))
 * Activations are NCHW float32 (PyTorch layout). Backward passes ADD into
 * input and parameter gradients so that fan-out (residual) sums naturally.
 * Parallelism is OpenMP inside each function (thread count = omp setting). */
#ifndef ST_NN_LAYERS_H
#define ST_NN_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#include "sparse/sparse_weight.h"

/* ---- conv2d (square kernel, stride, zero padding, optional bias) ---- */
typedef struct st_conv2d_shape {
    int batch, in_channels, in_h, in_w;
    int out_channels, kernel, stride, padding;
    int out_h, out_w; /* derived by st_conv2d_shape_init */
} st_conv2d_shape;
void st_conv2d_shape_init(st_conv2d_shape *s, int batch, int in_channels, int in_h, int in_w, int out_channels,
                          int kernel, int stride, int padding);
/* Scratch floats needed by forward/backward when run with `threads` threads.
 * Forward/backward run a team of omp_get_max_threads() threads (one image
 * block each, results bit-identical for a given team size), so size the
 * workspace with at least that count. Called from inside a parallel region
 * (nesting disabled, the default) they run in the calling thread alone. */
size_t st_conv2d_workspace_floats(const st_conv2d_shape *s, int threads);
/* y (batch, out, oh, ow) = conv(x (batch, in, h, w), w (out, in*k*k)) + bias (may be NULL). */
void st_conv2d_forward(const st_conv2d_shape *s, const float *x, const st_sparse_weight *w, const float *bias,
                       float *y, float *workspace);
/* dx += dL/dx (dx may be NULL), dw += dL/dw (kept positions only), dbias += (may be NULL). */
void st_conv2d_backward(const st_conv2d_shape *s, const float *x, const st_sparse_weight *w, const float *dy,
                        float *dx, float *dw, float *dbias, float *workspace);

/* ---- conv2d plan: one convolution shape (batch included) with its backend
 * prepared once and reused every step. ONEDNN runs the dense weight values
 * (masked entries are 0) through oneDNN's convolution primitives, picked from
 * cpuid at run time; REFERENCE is st_conv2d_forward/backward above (im2col +
 * GEMM). AUTO takes oneDNN when the build has it and it accepts the shape;
 * the environment variable ST_CONV2D_BACKEND=reference|onednn overrides AUTO.
 * Same contract as st_conv2d_forward/backward: backward adds into dx, dw
 * (kept positions only) and dbias; one thread count gives bit-identical
 * results run to run. ---- */
typedef enum st_conv2d_backend { ST_CONV2D_AUTO = 0, ST_CONV2D_REFERENCE, ST_CONV2D_ONEDNN } st_conv2d_backend;
typedef struct st_conv2d_plan st_conv2d_plan;
st_status st_conv2d_plan_create(const st_conv2d_shape *s, int has_bias, st_conv2d_backend backend,
                                st_conv2d_plan **out);
/* As st_conv2d_plan_create with activation layouts other than NCHW (ONEDNN
 * only): x/dx in `x_block`, y/dy in `y_block`, where 1 = NCHW and B = 8 or 16
 * = (N, C/B, H, W, B) as oneDNN's nChw16c (channels a multiple of B);
 * y_block 0 = the backend's preference, read back with st_conv2d_plan_output_block. */
st_status st_conv2d_plan_create_blocked(const st_conv2d_shape *s, int has_bias, st_conv2d_backend backend,
                                        int x_block, int y_block, st_conv2d_plan **out);
int st_conv2d_plan_output_block(const st_conv2d_plan *p);
void st_conv2d_plan_free(st_conv2d_plan *p);
const st_conv2d_shape *st_conv2d_plan_shape(const st_conv2d_plan *p);
st_conv2d_backend st_conv2d_plan_backend(const st_conv2d_plan *p);
/* "reference" or oneDNN's implementation names, e.g. "jit:avx512_core" (0 fwd, 1 bwd data, 2 bwd weights). */
const char *st_conv2d_plan_implementation(const st_conv2d_plan *p, int which);
/* Scratch floats for forward/backward run with `threads` threads (>= omp_get_max_threads()). */
size_t st_conv2d_plan_workspace_floats(const st_conv2d_plan *p, int threads);
void st_conv2d_plan_forward(st_conv2d_plan *p, const float *x, const st_sparse_weight *w, const float *bias, float *y,
                            float *workspace);
/* As st_conv2d_backward, except that dx is overwritten when dx_accumulate is 0. */
void st_conv2d_plan_backward(st_conv2d_plan *p, const float *x, const st_sparse_weight *w, const float *dy, float *dx,
                             int dx_accumulate, float *dw, float *dbias, float *workspace);

/* ---- linear: y (batch, out) = x (batch, in) W^T + bias ---- */
void st_linear_forward(int batch, const float *x, const st_sparse_weight *w, const float *bias, float *y);
void st_linear_backward(int batch, const float *x, const st_sparse_weight *w, const float *dy, float *dx, float *dw,
                        float *dbias);

/* ---- batch norm 2d (also 1d with spatial = 1), PyTorch semantics ----
 * Training: normalise with batch mean and biased variance; running stats
 * updated with momentum and the UNBIASED variance. Eval: running stats. */
typedef struct st_batchnorm_shape {
    int batch, channels, spatial; /* spatial = H*W */
    float momentum, eps;          /* 0.1, 1e-5 */
} st_batchnorm_shape;
void st_batchnorm_forward_train(const st_batchnorm_shape *s, const float *x, const float *gamma, const float *beta,
                                float *y, float *save_mean, float *save_invstd, float *running_mean,
                                float *running_var);
void st_batchnorm_forward_eval(const st_batchnorm_shape *s, const float *x, const float *gamma, const float *beta,
                               const float *running_mean, const float *running_var, float *y);
void st_batchnorm_backward(const st_batchnorm_shape *s, const float *x, const float *gamma, const float *save_mean,
                           const float *save_invstd, const float *dy, float *dx, float *dgamma, float *dbeta);

/* ---- elementwise ---- */
void st_relu_forward(int64_t n, const float *x, float *y);
void st_relu_backward(int64_t n, const float *y, const float *dy, float *dx); /* dx += dy * (y > 0) */
void st_add_forward(int64_t n, const float *a, const float *b, float *y);

/* ---- pooling (kernel k, stride s, padding p; out = (in + 2p - k) / s + 1) ----
 * Padding (p <= k / 2, as PyTorch requires) is for max pooling only: padded
 * positions never win. Average pooling takes p = 0. */
typedef struct st_pool_shape {
    int batch, channels, in_h, in_w, kernel, stride, padding;
    int out_h, out_w; /* derived */
} st_pool_shape;
void st_pool_shape_init(st_pool_shape *s, int batch, int channels, int in_h, int in_w, int kernel, int stride,
                        int padding);
void st_maxpool_forward(const st_pool_shape *s, const float *x, float *y, int32_t *argmax);
void st_maxpool_backward(const st_pool_shape *s, const int32_t *argmax, const float *dy, float *dx);
void st_avgpool_forward(const st_pool_shape *s, const float *x, float *y);
void st_avgpool_backward(const st_pool_shape *s, const float *dy, float *dx);
/* global average pool: (batch, channels, spatial) -> (batch, channels) */
void st_global_avgpool_forward(int batch, int channels, int spatial, const float *x, float *y);
void st_global_avgpool_backward(int batch, int channels, int spatial, const float *dy, float *dx);

/* ---- loss: log-softmax + NLL, mean over the batch ----
 * Writes log-probabilities (batch, classes); returns the mean loss in double
 * precision and the number of correct top-1 predictions in *correct. */
double st_log_softmax_nll_forward(int batch, int classes, const float *logits, const int32_t *labels,
                                  float *log_probs, int *correct);
/* dlogits = (softmax - onehot) / batch (overwrites). */
void st_log_softmax_nll_backward(int batch, int classes, const float *log_probs, const int32_t *labels,
                                 float *dlogits);
/* The same with label smoothing e in [0, 1) (PyTorch's CrossEntropyLoss
 * label_smoothing): the target is (1 - e) one-hot + e / classes; e = 0 is
 * exactly the functions above. */
double st_cross_entropy_forward(int batch, int classes, const float *logits, const int32_t *labels, double smoothing,
                                float *log_probs, int *correct);
void st_cross_entropy_backward(int batch, int classes, const float *log_probs, const int32_t *labels, double smoothing,
                               float *dlogits);

#endif
