/* The plan of the direct sparse convolutions (internal to sparse_conv.c and
 * sparse_conv_bf16.c): what depends only on the geometry and the sparsity
 * structure, built once by st_spconv_plan_build for both element types
 * (CSR kernel positions and input offsets, the CSC copy grouped by stride
 * phase, the weight-gradient chunks and bands, the per-pixel statistics
 * buffer, per-thread scratch), plus the state of the fp32 passes. A bf16
 * plan (sparse_conv_bf16.c) holds one of these and adds its bf16 values in
 * CSC order; the weight-gradient walk over it is written once, in
 * sparse_conv_weight_grad.inc. */
#ifndef ST_KERNELS_SPARSE_CONV_PLAN_H
#define ST_KERNELS_SPARSE_CONV_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/sparse_conv.h"

struct st_spconv_plan {
    st_spconv_geom g;
    int64_t nnz;
    int64_t *row_ptr;  /* out_c + 1 */
    uint8_t *kh, *kw;  /* nnz, CSR order */
    int64_t *fwd_off;  /* nnz: ((i * H + kh) * W + kw) * N */
    int64_t *t_idx;    /* nnz: CSR position of each CSC entry */
    uint8_t *t_kh, *t_kw;
    int64_t *t_cls;    /* in_c * S * S + 1: CSC entries of input channel i and stride phase
                          (kh % S, kw % S) are [t_cls[i * S * S + phase], next) */
    int64_t *bwd_off;  /* nnz, CSC order: (o * OH * OW - (kh / S) * OW - kw / S) * N */
    int max_row, max_col; /* most kept weights of an output / input channel */
    int n_chunks;       /* weight-gradient chunks of output channels */
    int *chunk_start;   /* n_chunks + 1 */
    int64_t max_chunk;  /* most entries in a chunk */
    int n_bands;        /* weight-gradient bands of output rows (fixed by the geometry) */
    float *partial;     /* n_bands x nnz: each band's weight-gradient sums */
    /* pixel-major (a channel-major buffer puts the channels of one pixel
     * pixels * 12 bytes apart: 12 KiB at 32x32, the same L1 set) */
    float *px_stats;    /* OH*OW x out_c x 3: each output pixel's run statistics (forward_stats) */
    int threads;
    /* per-thread scratch: filtered entry lists and weight-gradient accumulators */
    size_t scratch_bytes;
    char *scratch;
    /* the fp32 passes' own state (NULL / unused in a bf16 plan's) */
    float *t_w;         /* nnz: values in CSC order (refreshed per backward) */
    float *px_sums;     /* H*W x in_c x 2: each input pixel's BN backward sums (st_spconv_backward_data_bn_sums,
                           allocated on its first call) */
    int px_block;       /* most adjacent pixels one gather_px call computes (st_spconv_plan_set_px_block) */
    /* blocks of the summed channels (st_spconv_plan_set_block): block b of C
     * channels in nb blocks holds channels [C * b / nb, C * (b + 1) / nb) */
    int in_block, n_in_blocks;   /* forward: input channels per block, blocks (1: unblocked) */
    int64_t *blk_ptr;            /* out_c x (n_in_blocks + 1) when blocked: the CSR entries of output channel o
                                    with an input channel in block b are [blk_ptr[o * (n_in_blocks + 1) + b], next) */
    int out_block, n_out_blocks; /* input gradient: output channels per block, blocks */
    int64_t *cls_ptr;            /* in_c * S * S x (n_out_blocks + 1) when blocked: the CSC entries of class k
                                    (t_cls) with an output channel in block b are [cls_ptr[k * (n_out_blocks + 1) + b],
                                    next) */
};

/* The plan's element-type-independent parts for one geometry and sparsity
 * structure (row_ptr, col as st_spconv_plan_create); `name` opens its error
 * messages ("sparse convolution", "bf16 sparse convolution"). */
st_status st_spconv_plan_build(const st_spconv_geom *g, const int64_t *row_ptr, const int32_t *col, const char *name,
                               st_spconv_plan **out);

/* One thread's scratch: lists of up to max(max_row, max_col) entries (w:
 * their values, floats; the bf16 passes keep st_bf16 values in the same
 * space) and the accumulators of the largest weight-gradient chunk. */
typedef struct st_spconv_scratch {
    float *acc;
    int64_t *off;
    float *w;
    int32_t *slot;
} st_spconv_scratch;
st_spconv_scratch st_spconv_scratch_of(const st_spconv_plan *p, int tid);

/* Threads for a pass: the caller's OpenMP threads, at most the plan's
 * scratch slots, one inside a parallel region. */
int st_spconv_team(const st_spconv_plan *p);

/* Blocks of output (or input) channels per pixel work item: more than one
 * only when there are too few pixels to keep every thread busy (linear
 * layers). */
int st_spconv_channel_blocks(int pixels, int channels, int threads);

/* Inside a parallel region (an orphaned `omp for`): the batch-norm
 * statistics of each output channel from p->px_stats, the pixels in pixel
 * order, shifted by the channel's first value (that of pixel 0, image 0)
 * as the batch-norm kernels do (st_spconv_forward_stats). */
void st_spconv_combine_px_stats(const st_spconv_plan *p, double *stats);

#endif
