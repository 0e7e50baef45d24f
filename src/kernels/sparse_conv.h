/* Direct sparse convolution on batch-innermost activations.
 *
 * Layout "CHWN": activation element (n, c, h, w) of a batch of N images lives
 * at ((c * H + h) * W + w) * N + n, so the N values of one pixel of one
 * channel are contiguous. A kept weight w[o, i, kh, kw] then contributes one
 * broadcast-FMA over N contiguous floats: no im2col buffer, and the work is
 * proportional to the number of kept weights.
 *
 * The weight is CSR over output channels: row o holds the kept columns
 * col = (i * K + kh) * K + kw in increasing order, values in the same order.
 * A linear layer is the special case K = 1, H = W = 1 (features as channels).
 *
 * Passes (each exact to float rounding against the scalar references below):
 *   forward          y  = bias + W * x
 *   backward_data    dx (+)= W^T * dy            (overwrite or accumulate)
 *   backward_weight  dw += dy * x^T at kept positions only, dbias += sum dy
 * Threads: OpenMP over output rows/channels; every output element is
 * computed by one thread in a fixed order, so results do not depend on the
 * thread count. Vector primitives exist for AVX-512, AVX2 and generic C,
 * chosen by kernels/isa.h at each call. */
#ifndef ST_KERNELS_SPARSE_CONV_H
#define ST_KERNELS_SPARSE_CONV_H

#include <stddef.h>
#include <stdint.h>

#include "sparsetrain.h"

typedef struct st_spconv_geom {
    int batch;                     /* N */
    int in_c, in_h, in_w;          /* input channels and size */
    int out_c, out_h, out_w;       /* output channels and size */
    int kernel, stride, pad;       /* square kernel */
} st_spconv_geom;

/* Fills out_h / out_w from the rest. */
void st_spconv_geom_init(st_spconv_geom *g, int batch, int in_c, int in_h, int in_w, int out_c, int kernel,
                         int stride, int pad);

typedef struct st_spconv_plan st_spconv_plan;

/* A plan for one geometry and one sparsity structure (row_ptr: out_c + 1
 * entries, col: row_ptr[out_c] entries, both copied). */
st_status st_spconv_plan_create(const st_spconv_geom *g, const int64_t *row_ptr, const int32_t *col,
                                st_spconv_plan **out);
void st_spconv_plan_free(st_spconv_plan *p);
const st_spconv_geom *st_spconv_plan_geom(const st_spconv_plan *p);

/* Pixel blocking of the forward and input-gradient passes: each gather
 * computes up to `pixels` adjacent pixels (of one output row in the forward,
 * of one input row and stride phase in the input gradient) that share the
 * kept weights, loading their inputs together. Results are the same bit for
 * bit for every setting (each output element is summed in the same order);
 * only the speed differs. Plans start at ST_SPCONV_PX_BLOCK_DEFAULT; tests
 * and bench/kernel_ab.c set others (clamped to [1, ST_SPCONV_PX_BLOCK_MAX]). */
#define ST_SPCONV_PX_BLOCK_DEFAULT 6
#define ST_SPCONV_PX_BLOCK_MAX 8
void st_spconv_plan_set_px_block(st_spconv_plan *p, int pixels);

/* Blocks of the summed channels: input channels in the forward pass,
 * output channels in the input gradient. Each work item (a group of pixels)
 * runs its channels once per block, the first block writing (bias or 0 or
 * the old value, plus) its products, the others accumulating, so that the
 * block's share of the group's source neighbourhood stays in L2 while the
 * written channels sweep past it (at 256 channels the whole neighbourhood,
 * ~3 MiB, does not). Each element still gets its kept weights' products in
 * CSR (forward) or CSC (input gradient) order, stored and reloaded between
 * blocks, so results are the same bit for bit for every block size; the
 * walks use blocks only where the ISA's gather sums each element in one
 * chain (every batch with the generic and AVX2 kernels, batches that are
 * multiples of 32 with AVX-512, whose 16-float tail sums two chains).
 * Plans start at blocks sized from the L2 cache (st_spconv_default_block)
 * where the CPU's tuning says so (sparse_conv_prims.h: on Intel, not on
 * AMD, as measured), else unblocked; `channels` <= 0 or >= the channel
 * count turns blocking off. On ST_ERR_NOMEM the pass is left unblocked. */
typedef enum st_spconv_pass { ST_SPCONV_FORWARD = 0, ST_SPCONV_INPUT_GRADIENT = 1 } st_spconv_pass;
st_status st_spconv_plan_set_block(st_spconv_plan *p, st_spconv_pass pass, int channels);
/* The block in use (the channel count: unblocked). */
int st_spconv_plan_block(const st_spconv_plan *p, st_spconv_pass pass);
/* The default block of a pass: the most channels whose share of a work
 * item's source neighbourhood (px_block pixels of one row) fills at most
 * half of `l2_bytes` (0: the running CPU's L2 per core), at least one; all
 * channels when they fit. */
int st_spconv_default_block(const st_spconv_geom *g, st_spconv_pass pass, int px_block, size_t l2_bytes);

/* The passes. w / dw: kept values in CSR order; bias / dbias may be NULL. */
void st_spconv_forward(st_spconv_plan *p, const float *x, const float *w, const float *bias, float *y);
/* The forward pass, also giving the batch-norm statistics of y per output
 * channel o over its OH*OW*N values, shifted by the channel's first value
 * (y at pixel 0 of image 0): stats[3o] = shift, stats[3o + 1] = sum (y - shift),
 * stats[3o + 2] = sum (y - shift)^2. Each output pixel's N values are summed
 * in float right after they are written (still in L1; shifted by their own
 * first value), and the pixels of a channel are combined in double in pixel
 * order, so the result does not depend on the thread count; it differs from
 * a double sum over every element by float rounding of N-term sums. */
void st_spconv_forward_stats(st_spconv_plan *p, const float *x, const float *w, const float *bias, float *y,
                             double *stats);
void st_spconv_backward_data(st_spconv_plan *p, const float *dy, const float *w, float *dx, int accumulate);
void st_spconv_backward_weight(st_spconv_plan *p, const float *x, const float *dy, float *dw, float *dbias);

/* The input-gradient pass that also gives the batch-norm backward sums of a
 * BN (+ ReLU) whose output is this convolution's input, when this pass
 * writes the final d loss / d input (the last writer of that gradient):
 * per input channel i, over its H*W*N values, g = dx * (y > 0) (y NULL: no
 * ReLU; y is the BN step's output, i.e. this convolution's input) and
 * sums[2i] = sum g, sums[2i + 1] = sum g * (x - mean[i]) (x: the BN's input).
 * Each input pixel's N values are summed in float right after they are
 * written, the pixels of a channel in double in pixel order: independent of
 * the thread count. The training walk does not use it: it reads x and y
 * from memory once more than the BN's own sums pass, which finds each
 * channel's planes still in L2 for its dx pass, and measured slower
 * (docs/PERFORMANCE.md); bench/kernel_ab.c keeps the A/B runnable. */
typedef struct st_spconv_bn_sums {
    const float *y, *x, *mean;
    double *sums;
} st_spconv_bn_sums;
st_status st_spconv_backward_data_bn_sums(st_spconv_plan *p, const float *dy, const float *w, float *dx,
                                          int accumulate, const st_spconv_bn_sums *bn);

/* Scalar references (double sums, no threads), for tests. */
void st_spconv_forward_reference(const st_spconv_geom *g, const int64_t *row_ptr, const int32_t *col, const float *x,
                                 const float *w, const float *bias, float *y);
void st_spconv_backward_data_reference(const st_spconv_geom *g, const int64_t *row_ptr, const int32_t *col,
                                       const float *dy, const float *w, float *dx, int accumulate);
/* The sums of st_spconv_backward_data_bn_sums from dx, in double per element. */
void st_spconv_bn_sums_reference(const st_spconv_geom *g, const float *dx, const st_spconv_bn_sums *bn);
/* The statistics of st_spconv_forward_stats from y, in double per element. */
void st_spconv_channel_stats_reference(const st_spconv_geom *g, const float *y, double *stats);
void st_spconv_backward_weight_reference(const st_spconv_geom *g, const int64_t *row_ptr, const int32_t *col,
                                         const float *x, const float *dy, float *dw, float *dbias);

/* Layout changes: NCHW <-> CHWN for `batch` images of c x hw values. */
void st_nchw_to_chwn(const float *x, int batch, int channels, int spatial, float *y);
void st_chwn_to_nchw(const float *x, int batch, int channels, int spatial, float *y, int accumulate);

#endif
