/* Dense convolution on batch-innermost (CHWN) activations, for the layers
 * of a sparse-executed model that are dense enough for a matrix product to
 * beat the direct sparse kernels (exec/policy.h chooses per layer).
 *
 * Same geometry, layouts and pass semantics as kernels/sparse_conv.h, with
 * the weight as a dense (out_c, in_c*K*K) row-major matrix (PyTorch's order;
 * masked entries are 0). In CHWN an output channel's plane is one row of
 * OH*OW*N values, so
 *   forward          Y (out_c, OH*OW*N) = W * col(X) + bias
 *   backward_data    dX (+)= col2im(W^T * dY)
 *   backward_weight  dW += dY * col(X)^T, dbias += row sums of dY
 * where col(X) (in_c*K*K, OH*OW*N) is the CHWN im2col: row (i, kh, kw) is
 * input plane i shifted by (kh, kw), so each of its pixels is a run of N
 * contiguous floats (no im2col at all for 1x1 stride-1 layers and linear
 * layers: col(X) = X).
 *
 * Work is cut into fixed pieces that depend on the geometry only: blocks of
 * output rows (whose col(X) is built once into the plan's workspace, a few
 * MB), and inside a block tiles of the matrix product, each one
 * single-threaded GEMM call (oneDNN's sgemm when built with it, else
 * OpenBLAS). Every output element is computed by one call in a fixed order,
 * and weight gradients are accumulated block after block in order, so the
 * results do not depend on the thread count. */
#ifndef ST_KERNELS_DENSE_CHWN_H
#define ST_KERNELS_DENSE_CHWN_H

#include <stdint.h>

#include "kernels/sparse_conv.h"

typedef struct st_dchwn_plan st_dchwn_plan;

st_status st_dchwn_plan_create(const st_spconv_geom *g, st_dchwn_plan **out);
void st_dchwn_plan_free(st_dchwn_plan *p);
const st_spconv_geom *st_dchwn_plan_geom(const st_dchwn_plan *p);
/* Floats of workspace the plan holds (for memory reports). */
int64_t st_dchwn_plan_workspace_floats(const st_dchwn_plan *p);

/* y = W x + bias (bias may be NULL). With stats (may be NULL) also the batch-
 * norm statistics of y per output channel, in st_spconv_forward_stats's form
 * (shift = the channel's first value; sums of y - shift and its square; each
 * pixel's N values summed in float, the pixels in double in pixel order). */
void st_dchwn_forward(st_dchwn_plan *p, const float *x, const float *w, const float *bias, float *y, double *stats);
void st_dchwn_backward_data(st_dchwn_plan *p, const float *dy, const float *w, float *dx, int accumulate);
/* dw (dense, out_c x in_c*K*K) += dy x^T; dbias (may be NULL) += sums of dy. */
void st_dchwn_backward_weight(st_dchwn_plan *p, const float *x, const float *dy, float *dw, float *dbias);

/* The GEMM these passes use, single-threaded (call it from one thread of a
 * parallel region, or alone): row-major C = alpha op(A) op(B) + beta C. */
void st_sgemm_serial(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                     const float *b, int ldb, float beta, float *c, int ldc);

#endif
