/* Direct sparse convolution (see sparse_conv.h): plan building (for the
 * bf16 kernels too: sparse_conv_plan.h), the passes' loops over pixels with
 * border handling (the weight gradient's: sparse_conv_weight_grad.inc) and
 * the generic primitives. The scalar references and the CHWN layout changes
 * are in sparse_conv_reference.c. */
#include "kernels/sparse_conv.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "kernels/isa.h"
#include "kernels/sparse_conv_plan.h"
#include "kernels/sparse_conv_prims.h"

/* ---------------- generic primitives ---------------- */

static void gather_generic(int n, int cnt, const float *w, const int64_t *off, const float *src, float bias,
                           int accumulate, float *out) {
    if (!accumulate)
        for (int j = 0; j < n; j++) out[j] = bias;
    for (int e = 0; e < cnt; e++) {
        const float we = w[e];
        const float *s = src + off[e];
        for (int j = 0; j < n; j++) out[j] += we * s[j];
    }
}

static void sddmm_generic(int n, int cnt, const int64_t *off, const int32_t *slot, const float *dy, const float *src,
                          float *acc) {
    for (int e = 0; e < cnt; e++) {
        const float *s = src + off[e];
        float *a = acc + (size_t)(slot ? slot[e] : e) * ST_SPCONV_LANES;
        for (int j = 0; j < n; j++) a[j % ST_SPCONV_LANES] += dy[j] * s[j];
    }
}

static void sddmm_px_generic(int n, int npx, int cnt, const int64_t *off, const int32_t *slot, const float *dy,
                             int64_t dy_step, const float *src, int64_t src_step, float *acc) {
    for (int q = 0; q < npx; q++) sddmm_generic(n, cnt, off, slot, dy + q * dy_step, src + q * src_step, acc);
}

static void run_stats_generic(int n, const float *v, float *out) {
    float a[ST_SPCONV_LANES] = {0}, b[ST_SPCONV_LANES] = {0};
    const float k = v[0];
    for (int j = 0; j < n; j++) {
        const float d = v[j] - k;
        a[j % ST_SPCONV_LANES] += d;
        b[j % ST_SPCONV_LANES] += d * d;
    }
    float s1 = 0.0f, s2 = 0.0f;
    for (int l = 0; l < ST_SPCONV_LANES; l++) s1 += a[l], s2 += b[l];
    out[0] = k, out[1] = s1, out[2] = s2;
}

static void run_bn_sums_generic(int n, const float *dy, const float *y, const float *x, float mean, float *out) {
    float a[ST_SPCONV_LANES] = {0}, b[ST_SPCONV_LANES] = {0};
    for (int j = 0; j < n; j++) {
        const float g = y && !(y[j] > 0.0f) ? 0.0f : dy[j];
        a[j % ST_SPCONV_LANES] += g;
        b[j % ST_SPCONV_LANES] += g * (x[j] - mean);
    }
    float s1 = 0.0f, s2 = 0.0f;
    for (int l = 0; l < ST_SPCONV_LANES; l++) s1 += a[l], s2 += b[l];
    out[0] = s1, out[1] = s2;
}

static void gather_px_generic(int n, int npx, int cnt, const float *w, const int64_t *off, const float *src,
                              int64_t src_step, float bias, int accumulate, float *out, int64_t out_step, float *stats,
                              int64_t stats_step) {
    for (int q = 0; q < npx; q++) {
        gather_generic(n, cnt, w, off, src + q * src_step, bias, accumulate, out + q * out_step);
        if (stats) run_stats_generic(n, out + q * out_step, stats + q * stats_step);
    }
}

const st_spconv_prims st_spconv_prims_generic = {
    .gather = gather_generic,
    .gather_px = gather_px_generic,
    .sddmm = sddmm_generic,
    .sddmm_px = sddmm_px_generic,
    .run_stats = run_stats_generic,
    .run_bn_sums = run_bn_sums_generic,
    .pieces_exact = 1,
};

static const st_spconv_prims *prims(void) {
#ifdef ST_SPCONV_HAVE_X86
    switch (st_isa_current()) {
    case ST_ISA_AVX512: return &st_spconv_prims_avx512;
    case ST_ISA_AVX2: return &st_spconv_prims_avx2;
    default: break;
    }
#endif
    return &st_spconv_prims_generic;
}

/* ---------------- plan ---------------- */

/* Most kept weights per weight-gradient chunk (their accumulators: 256 KiB). */
#define SDDMM_CHUNK_ENTRIES 4096
/* Most bands of output rows per weight-gradient chunk. */
#define SDDMM_BANDS 4

void st_spconv_geom_init(st_spconv_geom *g, int batch, int in_c, int in_h, int in_w, int out_c, int kernel,
                         int stride, int pad) {
    g->batch = batch;
    g->in_c = in_c, g->in_h = in_h, g->in_w = in_w;
    g->out_c = out_c;
    g->kernel = kernel, g->stride = stride, g->pad = pad;
    g->out_h = (in_h + 2 * pad - kernel) / stride + 1;
    g->out_w = (in_w + 2 * pad - kernel) / stride + 1;
}

const st_spconv_geom *st_spconv_plan_geom(const st_spconv_plan *p) { return &p->g; }

void st_spconv_plan_set_px_block(st_spconv_plan *p, int pixels) {
    p->px_block = pixels < 1 ? 1 : pixels > ST_SPCONV_PX_BLOCK_MAX ? ST_SPCONV_PX_BLOCK_MAX : pixels;
}

/* What the default block may take of L2: half (the written runs of the
 * item and the next group's sources share the rest). */
#define BLOCK_L2_SHARE 0.5

int st_spconv_default_block(const st_spconv_geom *g, st_spconv_pass pass, int px_block, size_t l2_bytes) {
    if (l2_bytes == 0) l2_bytes = st_isa_l2_bytes();
    const int K = g->kernel, S = g->stride, taps = (K + S - 1) / S;
    /* source rows x columns one channel of the item reads: the forward's G output pixels read (G - 1) * S + K
     * input columns of K rows; the input gradient's G input pixels of one stride phase read G - 1 + ceil(K / S)
     * output columns of ceil(K / S) rows (G: px_block, or the pixels a row has) */
    const int per_row = pass == ST_SPCONV_FORWARD ? g->out_w : (g->in_w + S - 1) / S;
    const int G = px_block < per_row ? px_block : per_row;
    const double runs = pass == ST_SPCONV_FORWARD ? (double)((G - 1) * S + K) * K : (double)(G - 1 + taps) * taps;
    const int channels = pass == ST_SPCONV_FORWARD ? g->in_c : g->out_c;
    const double fit = BLOCK_L2_SHARE * (double)l2_bytes / (runs * g->batch * sizeof(float));
    return fit >= channels ? channels : fit < 1.0 ? 1 : (int)fit;
}

int st_spconv_plan_block(const st_spconv_plan *p, st_spconv_pass pass) {
    return pass == ST_SPCONV_FORWARD ? p->in_block : p->out_block;
}

/* ptr[r * (nb + 1) + b] for the `rows` runs [start[r], start[r + 1]) of
 * entries whose channel chan(e) (non-decreasing along a run) is in block b
 * of `channels` channels in nb blocks. */
static void split_runs(int64_t rows, const int64_t *start, int channels, int nb, const int64_t *chan_of,
                       const int64_t *entry, int64_t *ptr) {
    for (int64_t r = 0; r < rows; r++) {
        int64_t e = start[r];
        for (int b = 0; b < nb; b++) {
            const int64_t end = (int64_t)channels * (b + 1) / nb;
            ptr[r * (nb + 1) + b] = e;
            while (e < start[r + 1] && chan_of[entry ? entry[e] : e] < end) e++;
        }
        ptr[r * (nb + 1) + nb] = e;
    }
}

st_status st_spconv_plan_set_block(st_spconv_plan *p, st_spconv_pass pass, int channels) {
    const st_spconv_geom *g = &p->g;
    const int fwd = pass == ST_SPCONV_FORWARD, C = fwd ? g->in_c : g->out_c;
    int64_t **ptr = fwd ? &p->blk_ptr : &p->cls_ptr;
    int *block = fwd ? &p->in_block : &p->out_block, *nblocks = fwd ? &p->n_in_blocks : &p->n_out_blocks;
    free(*ptr);
    *ptr = NULL;
    *block = C, *nblocks = 1;
    if (channels <= 0 || channels >= C || p->nnz == 0) return ST_OK;
    const int nb = (C + channels - 1) / channels;
    const int64_t rows = fwd ? g->out_c : (int64_t)g->in_c * g->stride * g->stride;
    int64_t *bp = st_malloc(sizeof(int64_t) * (size_t)rows * (size_t)(nb + 1), "sparse convolution plan");
    /* the channel each entry sums over: the input channel of a CSR entry, the output channel of a CSR entry
     * that a CSC entry points at */
    int64_t *chan = st_malloc(sizeof(int64_t) * (size_t)p->nnz, "sparse convolution plan");
    if (!bp || !chan) {
        free(bp), free(chan);
        return ST_ERR_NOMEM;
    }
    const int64_t per_i = (int64_t)g->in_h * g->in_w * g->batch; /* fwd_off / per_i: the input channel */
    for (int o = 0; o < g->out_c; o++)
        for (int64_t e = p->row_ptr[o]; e < p->row_ptr[o + 1]; e++) chan[e] = fwd ? p->fwd_off[e] / per_i : o;
    split_runs(rows, fwd ? p->row_ptr : p->t_cls, C, nb, chan, fwd ? NULL : p->t_idx, bp);
    free(chan);
    *ptr = bp;
    *block = channels, *nblocks = nb;
    return ST_OK;
}

void st_spconv_plan_free(st_spconv_plan *p) {
    if (!p) return;
    free(p->blk_ptr), free(p->cls_ptr);
    free(p->row_ptr), free(p->kh), free(p->kw), free(p->fwd_off);
    free(p->t_idx), free(p->t_kh), free(p->t_kw), free(p->bwd_off), free(p->t_w);
    free(p->t_cls);
    free(p->chunk_start);
    free(p->partial);
    free(p->px_stats);
    free(p->px_sums);
    free(p->scratch);
    free(p);
}

/* CSR kernel positions and input offsets, checking the column indices. */
static st_status build_rows(st_spconv_plan *p, const int64_t *row_ptr, const int32_t *col, const char *name) {
    const st_spconv_geom *g = &p->g;
    const int K = g->kernel, KK = K * K;
    const int64_t N = g->batch, H = g->in_h, W = g->in_w;
    for (int o = 0; o < g->out_c; o++) {
        const int64_t len = row_ptr[o + 1] - row_ptr[o];
        if (len > p->max_row) p->max_row = (int)len;
        for (int64_t e = row_ptr[o]; e < row_ptr[o + 1]; e++) {
            const int c = col[e], i = c / KK, kh = (c % KK) / K, kw = c % K;
            if (c < 0 || i >= g->in_c || (e > row_ptr[o] && col[e - 1] >= c))
                return st_fail(ST_ERR_ARGUMENT, "%s: column indices of row %d are not increasing in [0, %d)", name, o,
                               g->in_c * KK);
            p->kh[e] = (uint8_t)kh, p->kw[e] = (uint8_t)kw;
            p->fwd_off[e] = ((i * H + kh) * W + kw) * N;
        }
    }
    return ST_OK;
}

/* CSC grouped by stride phase within each input channel: the input pixels
 * of one phase (ih + P, iw + P mod S) receive exactly the kept weights with
 * kh, kw of that phase; (o, kh, kw) order within a group. `fill`: in_c * S *
 * S + 1 entries of workspace. */
static void build_columns(st_spconv_plan *p, const int32_t *col, int64_t *fill) {
    const st_spconv_geom *g = &p->g;
    const int KK = g->kernel * g->kernel, S = g->stride, SS = S * S;
    const int64_t N = g->batch, OH = g->out_h, OW = g->out_w, classes = (int64_t)g->in_c * SS;
    for (int64_t e = 0; e < p->nnz; e++) {
        const int i = col[e] / KK;
        p->t_cls[(int64_t)i * SS + (p->kh[e] % S) * S + p->kw[e] % S + 1]++;
    }
    for (int64_t k = 0; k < classes; k++) p->t_cls[k + 1] += p->t_cls[k];
    for (int i = 0; i < g->in_c; i++) {
        const int64_t len = p->t_cls[(int64_t)(i + 1) * SS] - p->t_cls[(int64_t)i * SS];
        if (len > p->max_col) p->max_col = (int)len;
    }
    memcpy(fill, p->t_cls, sizeof(int64_t) * (size_t)(classes + 1));
    for (int o = 0; o < g->out_c; o++) {
        for (int64_t e = p->row_ptr[o]; e < p->row_ptr[o + 1]; e++) {
            const int i = col[e] / KK, kh = p->kh[e], kw = p->kw[e];
            const int64_t t = fill[(int64_t)i * SS + (kh % S) * S + kw % S]++;
            p->t_idx[t] = e;
            p->t_kh[t] = (uint8_t)kh, p->t_kw[t] = (uint8_t)kw;
            p->bwd_off[t] = ((int64_t)o * OH * OW - (int64_t)(kh / S) * OW - kw / S) * N;
        }
    }
}

/* Weight-gradient chunks: runs of output channels with at most
 * SDDMM_CHUNK_ENTRIES kept weights (a longer row is a chunk of its own). */
static void build_chunks(st_spconv_plan *p) {
    const int out_c = p->g.out_c;
    const int64_t *row_ptr = p->row_ptr;
    p->n_chunks = 0;
    for (int o = 0; o < out_c;) {
        const int o0 = o;
        do o++;
        while (o < out_c && row_ptr[o + 1] - row_ptr[o0] <= SDDMM_CHUNK_ENTRIES);
        p->chunk_start[p->n_chunks++] = o0;
        if (row_ptr[o] - row_ptr[o0] > p->max_chunk) p->max_chunk = row_ptr[o] - row_ptr[o0];
    }
    p->chunk_start[p->n_chunks] = out_c;
}

st_status st_spconv_plan_build(const st_spconv_geom *g, const int64_t *row_ptr, const int32_t *col, const char *name,
                               st_spconv_plan **out) {
    *out = NULL;
    if (g->batch <= 0 || g->out_h <= 0 || g->out_w <= 0 || g->kernel <= 0 || g->stride <= 0)
        return st_fail(ST_ERR_ARGUMENT, "%s: invalid geometry", name);
    char what[64], scratch_what[64];
    snprintf(what, sizeof what, "%s plan", name);
    snprintf(scratch_what, sizeof scratch_what, "%s scratch", name);
    st_spconv_plan *p = st_calloc(1, sizeof *p, what);
    if (!p) return ST_ERR_NOMEM;
    p->g = *g;
    const int64_t nnz = row_ptr[g->out_c];
    const size_t n1 = (size_t)(nnz > 0 ? nnz : 1), classes = (size_t)g->in_c * (size_t)g->stride * (size_t)g->stride;
    p->nnz = nnz;
    p->row_ptr = st_malloc(sizeof(int64_t) * (size_t)(g->out_c + 1), what);
    p->kh = st_malloc(n1, what);
    p->kw = st_malloc(n1, what);
    p->fwd_off = st_malloc(sizeof(int64_t) * n1, what);
    p->t_idx = st_malloc(sizeof(int64_t) * n1, what);
    p->t_kh = st_malloc(n1, what);
    p->t_kw = st_malloc(n1, what);
    p->t_cls = st_calloc(classes + 1, sizeof(int64_t), what);
    p->bwd_off = st_malloc(sizeof(int64_t) * n1, what);
    p->chunk_start = st_malloc(sizeof(int) * (size_t)(g->out_c + 1), what);
    /* Bands of output rows split the weight-gradient sweep so that layers with
     * few chunks still use every thread; their number depends only on the
     * geometry, so the summation order does not depend on the thread count. */
    p->n_bands = g->out_h < SDDMM_BANDS ? g->out_h : SDDMM_BANDS;
    p->partial = st_malloc(sizeof(float) * (size_t)p->n_bands * n1, what);
    p->px_stats = st_malloc(sizeof(float) * 3 * (size_t)g->out_c * (size_t)g->out_h * (size_t)g->out_w, what);
    int64_t *fill = st_malloc(sizeof(int64_t) * (classes + 1), what);
    st_status s = ST_ERR_NOMEM;
    if (!p->row_ptr || !p->kh || !p->kw || !p->fwd_off || !p->t_idx || !p->t_kh || !p->t_kw || !p->t_cls ||
        !p->bwd_off || !p->chunk_start || !p->partial || !p->px_stats || !fill)
        goto fail;
    memcpy(p->row_ptr, row_ptr, sizeof(int64_t) * (size_t)(g->out_c + 1));
    if ((s = build_rows(p, row_ptr, col, name)) != ST_OK) goto fail;
    build_columns(p, col, fill);
    free(fill);
    fill = NULL;
    build_chunks(p);
    p->px_block = ST_SPCONV_PX_BLOCK_DEFAULT;
    p->in_block = g->in_c, p->n_in_blocks = 1, p->out_block = g->out_c, p->n_out_blocks = 1;
    if (st_spconv_tuning_blocks_channels(st_spconv_tuning_current()))
        for (int pass = ST_SPCONV_FORWARD; pass <= ST_SPCONV_INPUT_GRADIENT; pass++)
            if ((s = st_spconv_plan_set_block(p, (st_spconv_pass)pass,
                                              st_spconv_default_block(g, (st_spconv_pass)pass, p->px_block, 0))) != ST_OK)
                goto fail;
    p->threads = omp_get_max_threads();
    const int longest = p->max_row > p->max_col ? p->max_row : p->max_col;
    const size_t per_thread = (size_t)longest * (sizeof(float) + sizeof(int64_t) + sizeof(int32_t)) +
                              (size_t)p->max_chunk * ST_SPCONV_LANES * sizeof(float) + 64;
    p->scratch_bytes = (per_thread + 63) / 64 * 64;
    p->scratch = st_malloc(p->scratch_bytes * (size_t)p->threads + 64, scratch_what);
    if (!p->scratch) {
        s = ST_ERR_NOMEM;
        goto fail;
    }
    *out = p;
    return ST_OK;
fail:
    free(fill);
    st_spconv_plan_free(p);
    return s;
}

st_status st_spconv_plan_create(const st_spconv_geom *g, const int64_t *row_ptr, const int32_t *col,
                                st_spconv_plan **out) {
    *out = NULL;
    st_spconv_plan *p;
    ST_TRY(st_spconv_plan_build(g, row_ptr, col, "sparse convolution", &p));
    p->t_w = st_malloc(sizeof(float) * (size_t)(p->nnz > 0 ? p->nnz : 1), "sparse convolution plan");
    if (!p->t_w) {
        st_spconv_plan_free(p);
        return ST_ERR_NOMEM;
    }
    *out = p;
    return ST_OK;
}

st_spconv_scratch st_spconv_scratch_of(const st_spconv_plan *p, int tid) {
    const int longest = p->max_row > p->max_col ? p->max_row : p->max_col;
    char *base = p->scratch + p->scratch_bytes * (size_t)tid;
    base = (char *)(((uintptr_t)base + 63) & ~(uintptr_t)63);
    st_spconv_scratch s;
    s.acc = (float *)base;
    s.off = (int64_t *)(base + (size_t)p->max_chunk * ST_SPCONV_LANES * sizeof(float));
    s.w = (float *)(s.off + longest);
    s.slot = (int32_t *)(s.w + longest);
    return s;
}

int st_spconv_team(const st_spconv_plan *p) {
    if (omp_in_parallel()) return 1;
    const int t = omp_get_max_threads();
    return t < p->threads ? t : p->threads;
}

/* Work items of the forward and input-gradient passes are (pixels, block of
 * channels): the channels of one pixel run back to back, so the pixel's
 * neighbourhood is read from cache by all of them. */
int st_spconv_channel_blocks(int pixels, int channels, int threads) {
    int blocks = (4 * threads + pixels - 1) / pixels;
    if (blocks < 1) blocks = 1;
    if (blocks > channels) blocks = channels > 0 ? channels : 1;
    return blocks;
}

void st_spconv_combine_px_stats(const st_spconv_plan *p, double *stats) {
    const st_spconv_geom *g = &p->g;
    const int pixels = g->out_h * g->out_w;
    const double N = g->batch;
#pragma omp for schedule(static)
    for (int o = 0; o < g->out_c; o++) {
        const float *ps = p->px_stats + (size_t)o * 3;
        const size_t step = (size_t)g->out_c * 3;
        const double k0 = ps[0];
        double s1 = 0.0, s2 = 0.0;
        for (int q = 0; q < pixels; q++) {
            const double dk = (double)ps[step * q] - k0, a = ps[step * q + 1], b2 = ps[step * q + 2];
            s1 += a + N * dk;
            s2 += b2 + 2.0 * dk * a + N * dk * dk;
        }
        stats[3 * o] = k0, stats[3 * o + 1] = s1, stats[3 * o + 2] = s2;
    }
}

/* ---------------- forward ---------------- */

/* The forward pass; with stats, each output pixel's run is summarised as it
 * is written (gather_stats: from the registers where the ISA can, else from
 * L1 right after the store), and the runs of each channel are combined in
 * pixel order (see st_spconv_forward_stats). Work items hold up to
 * p->px_block adjacent output pixels of one output row; runs of them whose
 * windows the image border cuts alike (all interior pixels, say) go through
 * gather_px together (the same sums in the same order as one at a time).
 * With blocks of input channels (st_spconv_plan_set_block) an item runs
 * its output channels once per block, the first block writing bias + its
 * products, the others accumulating, the last one summarising. */
static void forward(st_spconv_plan *p, const float *x, const float *w, const float *bias, float *y, double *stats) {
    const st_spconv_prims *pr = prims();
    const st_spconv_geom *g = &p->g;
    const int N = g->batch, H = g->in_h, W = g->in_w, OH = g->out_h, OW = g->out_w, K = g->kernel, S = g->stride,
              P = g->pad;
    const int G = p->px_block, groups = (OW + G - 1) / G;
    const int nt = st_spconv_team(p), pixels = OH * OW, blocks = st_spconv_channel_blocks(pixels, g->out_c, nt);
    const int nib = N % pr->pieces_exact == 0 ? p->n_in_blocks : 1; /* blocks of input channels (see the header) */
    const int64_t plane = (int64_t)pixels * N;
    const int64_t stats_step = (int64_t)g->out_c * 3;
#pragma omp parallel num_threads(nt)
    {
        st_spconv_scratch ts = st_spconv_scratch_of(p, omp_get_thread_num());
#pragma omp for schedule(static)
        for (int item = 0; item < OH * groups * blocks; item++) {
            const int grp = item / blocks, blk = item % blocks;
            const int oh = grp / groups, ow_begin = grp % groups * G, ow_end = ow_begin + G < OW ? ow_begin + G : OW;
            const int o0 = (int)((int64_t)g->out_c * blk / blocks), o1 = (int)((int64_t)g->out_c * (blk + 1) / blocks);
            const int ih0 = oh * S - P;
            const int kh_lo = ih0 < 0 ? -ih0 : 0, kh_hi = H - ih0 < K ? H - ih0 : K; /* kept kh: [kh_lo, kh_hi) */
            for (int ib = 0; ib < nib; ib++) {
                const int acc = ib > 0, last = ib == nib - 1;
                for (int o = o0; o < o1; o++) {
                    const int64_t *bp = nib > 1 ? p->blk_ptr + (size_t)o * (size_t)(nib + 1) + ib : p->row_ptr + o;
                    const int64_t e0 = bp[0], cnt = bp[1] - e0;
                    if (acc && cnt == 0 && !(last && stats)) continue;
                    const float b = bias ? bias[o] : 0.0f;
                    for (int ow = ow_begin; ow < ow_end;) {
                        /* a run of pixels whose windows are cut alike: kw in [kw_lo, kw_hi) */
                        const int iw0 = ow * S - P;
                        const int kw_lo = iw0 < 0 ? -iw0 : 0, kw_hi = W - iw0 < K ? W - iw0 : K;
                        int run = 1;
                        while (ow + run < ow_end) {
                            const int jw = iw0 + run * S;
                            if ((jw < 0 ? -jw : 0) != kw_lo || (W - jw < K ? W - jw : K) != kw_hi) break;
                            run++;
                        }
                        const int px = oh * OW + ow;
                        const int64_t base = ((int64_t)ih0 * W + iw0) * N;
                        float *yo = y + o * plane + (int64_t)px * N;
                        float *ps = stats && last ? p->px_stats + ((size_t)px * (size_t)g->out_c + (size_t)o) * 3 : NULL;
                        if (kh_lo == 0 && kh_hi == K && kw_lo == 0 && kw_hi == K) {
                            pr->gather_px(N, run, (int)cnt, w + e0, p->fwd_off + e0, x + base, (int64_t)S * N, b, acc,
                                          yo, N, ps, stats_step);
                        } else { /* the kept weights inside the image, once for the run */
                            int m = 0;
                            for (int64_t e = e0; e < e0 + cnt; e++) {
                                if (p->kh[e] < kh_lo || p->kh[e] >= kh_hi || p->kw[e] < kw_lo || p->kw[e] >= kw_hi)
                                    continue;
                                ts.w[m] = w[e];
                                ts.off[m++] = p->fwd_off[e];
                            }
                            pr->gather_px(N, run, m, ts.w, ts.off, x + base, (int64_t)S * N, b, acc, yo, N, ps,
                                          stats_step);
                        }
                        ow += run;
                    }
                }
            }
        }
        if (stats) st_spconv_combine_px_stats(p, stats);
    }
}

void st_spconv_forward(st_spconv_plan *p, const float *x, const float *w, const float *bias, float *y) {
    forward(p, x, w, bias, y, NULL);
}

void st_spconv_forward_stats(st_spconv_plan *p, const float *x, const float *w, const float *bias, float *y,
                             double *stats) {
    forward(p, x, w, bias, y, stats);
}

/* ---------------- backward: input gradient ---------------- */

/* Each input pixel gathers from the output pixels it fed: for stride S the
 * pixel (ih, iw) receives the kept weights of its phase ((ih + P) % S,
 * (iw + P) % S) from output (oh0 - kh / S, ow0 - kw / S), oh0 = (ih + P) / S.
 * Work items are (input pixel, block of input channels) as in the forward
 * pass; border pixels drop the weights whose output pixel is outside. With
 * blocks of output channels (st_spconv_plan_set_block) an item runs its
 * input channels once per block, every block after the first
 * accumulating. */
static void backward_data(st_spconv_plan *p, const float *dy, const float *w, float *dx, int accumulate,
                          const st_spconv_bn_sums *bn) {
    const st_spconv_prims *pr = prims();
    for (int64_t t = 0; t < p->nnz; t++) p->t_w[t] = w[p->t_idx[t]];
    const st_spconv_geom *g = &p->g;
    const int N = g->batch, H = g->in_h, W = g->in_w, OH = g->out_h, OW = g->out_w, K = g->kernel, S = g->stride,
              P = g->pad, SS = S * S;
    const int nt = st_spconv_team(p), pixels = H * W, blocks = st_spconv_channel_blocks(pixels, g->in_c, nt);
    const int64_t plane = (int64_t)pixels * N;
    /* items: (input row, column residue r mod S, group of up to G pixels
     * r + S * k of that row, block of input channels); the pixels of one
     * residue share the stride phase, and consecutive ones read output
     * pixels one apart */
    const int G = p->px_block, per_res = (W + S - 1) / S, groups = (per_res + G - 1) / G;
    const int nob = N % pr->pieces_exact == 0 ? p->n_out_blocks : 1; /* blocks of output channels (see the header) */
#pragma omp parallel num_threads(nt)
    {
        st_spconv_scratch ts = st_spconv_scratch_of(p, omp_get_thread_num());
#pragma omp for schedule(static)
        for (int item = 0; item < H * S * groups * blocks; item++) {
            const int blk = item % blocks, grp = item / blocks % groups, r = item / blocks / groups % S;
            const int ih = item / blocks / groups / S;
            const int k_begin = grp * G, k_end = k_begin + G < per_res ? k_begin + G : per_res;
            if (r + S * k_begin >= W) continue;
            const int i0 = (int)((int64_t)g->in_c * blk / blocks), i1 = (int)((int64_t)g->in_c * (blk + 1) / blocks);
            const int ph = (ih + P) % S, pw = (r + P) % S, phase = ph * S + pw;
            const int oh0 = (ih + P) / S; /* output row of kh = ph */
            const int dh_max = ph < K ? (K - 1 - ph) / S : 0, dw_max = pw < K ? (K - 1 - pw) / S : 0;
            /* kept kh / S: [dh_lo, dh_hi) (output row oh0 - kh / S inside) */
            const int dh_lo = oh0 - OH + 1 > 0 ? oh0 - OH + 1 : 0, dh_hi = oh0 + 1 < dh_max + 1 ? oh0 + 1 : dh_max + 1;
            for (int ob = 0; ob < nob; ob++) {
                const int acc = accumulate || ob > 0, last = ob == nob - 1;
                for (int i = i0; i < i1; i++) {
                    const int64_t cls = (int64_t)i * SS + phase;
                    const int64_t *cp = nob > 1 ? p->cls_ptr + cls * (nob + 1) + ob : p->t_cls + cls;
                    const int64_t t0 = cp[0], cnt = cp[1] - t0;
                    if (acc && cnt == 0 && !(bn && last)) continue;
                    for (int k = k_begin; k < k_end && r + S * k < W;) {
                        const int iw = r + S * k, px = ih * W + iw;
                        const int ow0 = (iw + P) / S; /* output column of kw = pw */
                        /* a run of pixels cut alike: kept kw / S in [dw_lo, dw_hi) */
                        const int dw_lo = ow0 - OW + 1 > 0 ? ow0 - OW + 1 : 0, dw_hi = ow0 + 1 < dw_max + 1 ? ow0 + 1 : dw_max + 1;
                        int run = 1;
                        while (k + run < k_end && r + S * (k + run) < W) {
                            const int jw = ow0 + run;
                            if ((jw - OW + 1 > 0 ? jw - OW + 1 : 0) != dw_lo || (jw + 1 < dw_max + 1 ? jw + 1 : dw_max + 1) != dw_hi)
                                break;
                            run++;
                        }
                        const int64_t base = ((int64_t)oh0 * OW + ow0) * N;
                        float *dxi = dx + i * plane + (int64_t)px * N;
                        if (dh_lo == 0 && dh_hi == dh_max + 1 && dw_lo == 0 && dw_hi == dw_max + 1) {
                            pr->gather_px(N, run, (int)cnt, p->t_w + t0, p->bwd_off + t0, dy + base, N, 0.0f, acc,
                                          dxi, (int64_t)S * N, NULL, 0);
                        } else { /* the kept weights whose output pixel is inside, once for the run */
                            int m = 0;
                            for (int64_t t = t0; t < t0 + cnt; t++) {
                                const int dh = p->t_kh[t] / S, dw = p->t_kw[t] / S;
                                if (dh < dh_lo || dh >= dh_hi || dw < dw_lo || dw >= dw_hi) continue;
                                ts.w[m] = p->t_w[t];
                                ts.off[m++] = p->bwd_off[t];
                            }
                            pr->gather_px(N, run, m, ts.w, ts.off, dy + base, N, 0.0f, acc, dxi, (int64_t)S * N,
                                          NULL, 0);
                        }
                        if (bn && last)
                            for (int q = 0; q < run; q++) {
                                const int64_t at = i * plane + (int64_t)(px + q * S) * N;
                                pr->run_bn_sums(N, dx + at, bn->y ? bn->y + at : NULL, bn->x + at, bn->mean[i],
                                                p->px_sums + ((size_t)(px + q * S) * (size_t)g->in_c + (size_t)i) * 2);
                            }
                        k += run;
                    }
                }
            }
        }
        if (bn) { /* per channel, in pixel order */
#pragma omp for schedule(static)
            for (int i = 0; i < g->in_c; i++) {
                const float *ps = p->px_sums + (size_t)i * 2;
                const size_t step = (size_t)g->in_c * 2;
                double s1 = 0.0, s2 = 0.0;
                for (int q = 0; q < pixels; q++) s1 += ps[step * q], s2 += ps[step * q + 1];
                bn->sums[2 * i] = s1, bn->sums[2 * i + 1] = s2;
            }
        }
    }
}

void st_spconv_backward_data(st_spconv_plan *p, const float *dy, const float *w, float *dx, int accumulate) {
    backward_data(p, dy, w, dx, accumulate, NULL);
}

st_status st_spconv_backward_data_bn_sums(st_spconv_plan *p, const float *dy, const float *w, float *dx,
                                          int accumulate, const st_spconv_bn_sums *bn) {
    if (!p->px_sums) {
        p->px_sums = st_malloc(sizeof(float) * 2 * (size_t)p->g.in_c * (size_t)p->g.in_h * (size_t)p->g.in_w,
                               "sparse convolution batch-norm sums");
        if (!p->px_sums) return ST_ERR_NOMEM;
    }
    backward_data(p, dy, w, dx, accumulate, bn);
    return ST_OK;
}

/* ---------------- backward: weight gradient at kept positions ---------------- */

#define WG_NAME backward_weight
#define WG_ELEM float
#define WG_TO_FLOAT(v) (v)
#include "kernels/sparse_conv_weight_grad.inc"
#undef WG_NAME
#undef WG_ELEM
#undef WG_TO_FLOAT

void st_spconv_backward_weight(st_spconv_plan *p, const float *x, const float *dy, float *dw, float *dbias) {
    backward_weight(p, prims()->sddmm, prims()->sddmm_px, x, dy, dw, dbias);
}
