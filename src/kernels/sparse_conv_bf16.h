/* Direct sparse convolution with bf16 activations and kept weights and fp32
 * accumulation (issue 17, item 4): the passes of sparse_conv.h on the same
 * CHWN layout and CSR structure, reading st_bf16 (kernels/bf16.h) values and
 * writing float results:
 *   forward          y (float)  = bias + W * x             x, W bf16
 *   backward_data    dx (float) (+)= W^T * dy              dy, W bf16
 *   backward_weight  dw (float) += dy * x^T at kept positions, dbias += sum dy
 * Two designs of the inner loop, for the A/B of bench/bf16_ab.c:
 *   ST_SPBF16_CVT  bf16 loads widened to float in registers (a shift and an
 *                  and per 32 values), then the fp32 FMAs of the fp32 kernels:
 *                  half the bytes loaded, the same arithmetic
 *   ST_SPBF16_DP   vdpbf16ps, which multiplies pairs of bf16 along the
 *                  reduction and adds both products to a float: in forward
 *                  and backward_data two kept weights are paired and the two
 *                  input runs interleaved per n in registers (vpunpck[lh]wd);
 *                  in backward_weight the reduction runs over n, so pairs of
 *                  images are taken as they lie in memory
 * Both need AVX512_BF16 (st_isa_has_avx512_bf16); elsewhere, and for the
 * n % 32 tail of a run, scalar C widens each value to float. Every output
 * element is computed by one thread in a fixed order (the partition of the
 * work depends on the geometry only): results do not depend on the thread
 * count. Accuracy: each output is an fp32 sum of exact products of bf16
 * values (vdpbf16ps also flushes denormal inputs and results to zero); the
 * references are the double-sum ones of sparse_conv.h on the widened
 * values. */
#ifndef ST_KERNELS_SPARSE_CONV_BF16_H
#define ST_KERNELS_SPARSE_CONV_BF16_H

#include "kernels/bf16.h"
#include "kernels/sparse_conv.h"

typedef enum st_spbf16_kind { ST_SPBF16_CVT = 0, ST_SPBF16_DP = 1 } st_spbf16_kind;

typedef struct st_spbf16_plan st_spbf16_plan;

/* A plan for one geometry and sparsity structure, as st_spconv_plan_create. */
st_status st_spbf16_plan_create(const st_spconv_geom *g, const int64_t *row_ptr, const int32_t *col,
                                st_spbf16_plan **out);
void st_spbf16_plan_free(st_spbf16_plan *p);
/* The weight gradient's runs of interior pixels per SDDMM call (the dp
 * kind; st_spconv_plan_set_px_block): the same bits for every setting. The
 * bf16 gathers compute one pixel per call. */
void st_spbf16_plan_set_px_block(st_spbf16_plan *p, int pixels);

/* w: kept values in CSR order; bias / dbias may be NULL. */
void st_spbf16_forward(st_spbf16_plan *p, st_spbf16_kind kind, const st_bf16 *x, const st_bf16 *w, const float *bias,
                       float *y);
/* The forward pass that also gives the batch-norm statistics of y, in the
 * form and order of st_spconv_forward_stats (per output pixel a float sum
 * of its N values shifted by the first, taken from the registers on the
 * 128-wide dp path; pixels combined in double in pixel order). y is the
 * same bit for bit as st_spbf16_forward's. */
void st_spbf16_forward_stats(st_spbf16_plan *p, st_spbf16_kind kind, const st_bf16 *x, const st_bf16 *w,
                             const float *bias, float *y, double *stats);
void st_spbf16_backward_data(st_spbf16_plan *p, st_spbf16_kind kind, const st_bf16 *dy, const st_bf16 *w, float *dx,
                             int accumulate);
void st_spbf16_backward_weight(st_spbf16_plan *p, st_spbf16_kind kind, const st_bf16 *x, const st_bf16 *dy, float *dw,
                               float *dbias);

#endif
