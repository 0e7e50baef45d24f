/* Direct sparse convolution (see sparse_conv.h): plan building, the three
 * passes' loops over pixels with border handling and the generic
 * primitives. The scalar references and the CHWN layout changes are in
 * sparse_conv_reference.c. */
#include "kernels/sparse_conv.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "kernels/isa.h"
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

static void gather_stats_generic(int n, int cnt, const float *w, const int64_t *off, const float *src, float bias,
                                 float *out, float *stats) {
    gather_generic(n, cnt, w, off, src, bias, 0, out);
    run_stats_generic(n, out, stats);
}

static void gather_px_generic(int n, int npx, int cnt, const float *w, const int64_t *off, const float *src,
                              int64_t src_step, float bias, int accumulate, float *out, int64_t out_step, float *stats,
                              int64_t stats_step) {
    for (int q = 0; q < npx; q++) {
        if (stats) gather_stats_generic(n, cnt, w, off, src + q * src_step, bias, out + q * out_step, stats + q * stats_step);
        else gather_generic(n, cnt, w, off, src + q * src_step, bias, accumulate, out + q * out_step);
    }
}

const st_spconv_prims st_spconv_prims_generic = {
    .gather = gather_generic,
    .gather_px = gather_px_generic,
    .sddmm = sddmm_generic,
    .sddmm_px = sddmm_px_generic,
    .run_stats = run_stats_generic,
    .gather_stats = gather_stats_generic,
    .run_bn_sums = run_bn_sums_generic,
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

struct st_spconv_plan {
    st_spconv_geom g;
    int64_t nnz;
    int64_t *row_ptr;  /* out_c + 1 */
    uint8_t *kh, *kw;  /* nnz, CSR order */
    int64_t *fwd_off;  /* nnz: ((i * H + kh) * W + kw) * N */
    int64_t *t_ptr;    /* in_c + 1: CSC (by input channel) */
    int64_t *t_idx;    /* nnz: CSR position of each CSC entry */
    uint8_t *t_kh, *t_kw;
    int64_t *t_cls;    /* in_c * S * S + 1: CSC entries of input channel i and stride phase
                          (kh % S, kw % S) are [t_cls[i * S * S + phase], next) */
    int64_t *bwd_off;  /* nnz, CSC order: (o * OH * OW - (kh / S) * OW - kw / S) * N */
    float *t_w;        /* nnz: values in CSC order (refreshed per backward) */
    int max_row, max_col;
    int n_chunks;       /* weight-gradient chunks of output channels */
    int *chunk_start;   /* n_chunks + 1 */
    int64_t max_chunk;  /* most entries in a chunk */
    int n_bands;        /* weight-gradient bands of output rows (fixed by the geometry) */
    float *partial;     /* n_bands x nnz: each band's weight-gradient sums */
    /* pixel-major (a channel-major buffer puts the channels of one pixel
     * pixels * 12 bytes apart: 12 KiB at 32x32, the same L1 set) */
    float *px_stats;    /* OH*OW x out_c x 3: each output pixel's run statistics (st_spconv_forward_stats) */
    float *px_sums;     /* H*W x in_c x 2: each input pixel's BN backward sums (st_spconv_backward_data_bn_sums,
                           allocated on its first call) */
    int px_block;       /* most adjacent pixels one gather_px call computes (st_spconv_plan_set_px_block) */
    int threads;
    /* per-thread scratch: filtered entry lists and SDDMM accumulators */
    size_t scratch_bytes;
    char *scratch;
};

const st_spconv_geom *st_spconv_plan_geom(const st_spconv_plan *p) { return &p->g; }

void st_spconv_plan_set_px_block(st_spconv_plan *p, int pixels) {
    p->px_block = pixels < 1 ? 1 : pixels > ST_SPCONV_PX_BLOCK_MAX ? ST_SPCONV_PX_BLOCK_MAX : pixels;
}

void st_spconv_plan_free(st_spconv_plan *p) {
    if (!p) return;
    free(p->row_ptr), free(p->kh), free(p->kw), free(p->fwd_off);
    free(p->t_ptr), free(p->t_idx), free(p->t_kh), free(p->t_kw), free(p->bwd_off), free(p->t_w);
    free(p->t_cls);
    free(p->chunk_start);
    free(p->partial);
    free(p->px_stats);
    free(p->px_sums);
    free(p->scratch);
    free(p);
}

st_status st_spconv_plan_create(const st_spconv_geom *g, const int64_t *row_ptr, const int32_t *col,
                                st_spconv_plan **out) {
    *out = NULL;
    const int K = g->kernel, KK = K * K;
    if (g->batch <= 0 || g->out_h <= 0 || g->out_w <= 0 || K <= 0 || g->stride <= 0)
        return st_fail(ST_ERR_ARGUMENT, "sparse convolution: invalid geometry");
    st_spconv_plan *p = st_calloc(1, sizeof *p, "sparse convolution plan");
    if (!p) return ST_ERR_NOMEM;
    p->g = *g;
    const int64_t nnz = row_ptr[g->out_c];
    const size_t n1 = (size_t)(nnz > 0 ? nnz : 1);
    p->nnz = nnz;
    p->row_ptr = st_malloc(sizeof(int64_t) * (size_t)(g->out_c + 1), "sparse convolution plan");
    p->kh = st_malloc(n1, "sparse convolution plan");
    p->kw = st_malloc(n1, "sparse convolution plan");
    p->fwd_off = st_malloc(sizeof(int64_t) * n1, "sparse convolution plan");
    p->t_ptr = st_calloc((size_t)g->in_c + 1, sizeof(int64_t), "sparse convolution plan");
    p->t_idx = st_malloc(sizeof(int64_t) * n1, "sparse convolution plan");
    p->t_kh = st_malloc(n1, "sparse convolution plan");
    p->t_kw = st_malloc(n1, "sparse convolution plan");
    p->bwd_off = st_malloc(sizeof(int64_t) * n1, "sparse convolution plan");
    p->t_w = st_malloc(sizeof(float) * n1, "sparse convolution plan");
    if (!p->row_ptr || !p->kh || !p->kw || !p->fwd_off || !p->t_ptr || !p->t_idx || !p->t_kh ||
        !p->t_kw || !p->bwd_off || !p->t_w) {
        st_spconv_plan_free(p);
        return ST_ERR_NOMEM;
    }
    memcpy(p->row_ptr, row_ptr, sizeof(int64_t) * (size_t)(g->out_c + 1));
    const int64_t N = g->batch, H = g->in_h, W = g->in_w, OH = g->out_h, OW = g->out_w;
    for (int o = 0; o < g->out_c; o++) {
        const int64_t len = row_ptr[o + 1] - row_ptr[o];
        if (len > p->max_row) p->max_row = (int)len;
        for (int64_t e = row_ptr[o]; e < row_ptr[o + 1]; e++) {
            const int c = col[e], i = c / KK, kh = (c % KK) / K, kw = c % K;
            if (c < 0 || i >= g->in_c || (e > row_ptr[o] && col[e - 1] >= c)) {
                st_spconv_plan_free(p);
                return st_fail(ST_ERR_ARGUMENT, "sparse convolution: column indices of row %d are not increasing "
                               "in [0, %d)", o, g->in_c * KK);
            }
            p->kh[e] = (uint8_t)kh, p->kw[e] = (uint8_t)kw;
            p->fwd_off[e] = ((i * H + kh) * W + kw) * N;
            p->t_ptr[i + 1]++;
        }
    }
    for (int i = 0; i < g->in_c; i++) {
        if (p->t_ptr[i + 1] > p->max_col) p->max_col = (int)p->t_ptr[i + 1];
        p->t_ptr[i + 1] += p->t_ptr[i];
    }
    /* CSC grouped by stride phase within each input channel: the input pixels
     * of one phase (ih + P, iw + P mod S) receive exactly the kept weights
     * with kh, kw of that phase; (o, kh, kw) order within a group. */
    const int S = g->stride, SS = S * S;
    p->t_cls = st_calloc((size_t)g->in_c * SS + 1, sizeof(int64_t), "sparse convolution plan");
    int64_t *fill = st_malloc(sizeof(int64_t) * ((size_t)g->in_c * SS + 1), "sparse convolution plan");
    if (!fill || !p->t_cls) {
        free(fill);
        st_spconv_plan_free(p);
        return ST_ERR_NOMEM;
    }
    for (int64_t e = 0; e < nnz; e++) {
        const int i = col[e] / KK;
        p->t_cls[(int64_t)i * SS + (p->kh[e] % S) * S + p->kw[e] % S + 1]++;
    }
    for (int64_t k = 0; k < (int64_t)g->in_c * SS; k++) p->t_cls[k + 1] += p->t_cls[k];
    memcpy(fill, p->t_cls, sizeof(int64_t) * ((size_t)g->in_c * SS + 1));
    for (int o = 0; o < g->out_c; o++) {
        for (int64_t e = row_ptr[o]; e < row_ptr[o + 1]; e++) {
            const int i = col[e] / KK, kh = p->kh[e], kw = p->kw[e];
            const int64_t t = fill[(int64_t)i * SS + (kh % S) * S + kw % S]++;
            p->t_idx[t] = e;
            p->t_kh[t] = (uint8_t)kh, p->t_kw[t] = (uint8_t)kw;
            p->bwd_off[t] = ((int64_t)o * OH * OW - (int64_t)(kh / S) * OW - kw / S) * N;
        }
    }
    free(fill);
    p->chunk_start = st_malloc(sizeof(int) * (size_t)(g->out_c + 1), "sparse convolution plan");
    if (!p->chunk_start) {
        st_spconv_plan_free(p);
        return ST_ERR_NOMEM;
    }
    p->n_chunks = 0;
    for (int o = 0; o < g->out_c;) {
        const int o0 = o;
        do o++;
        while (o < g->out_c && row_ptr[o + 1] - row_ptr[o0] <= SDDMM_CHUNK_ENTRIES);
        p->chunk_start[p->n_chunks++] = o0;
        if (row_ptr[o] - row_ptr[o0] > p->max_chunk) p->max_chunk = row_ptr[o] - row_ptr[o0];
    }
    p->chunk_start[p->n_chunks] = g->out_c;
    /* Bands of output rows split the weight-gradient sweep so that layers with
     * few chunks still use every thread; their number depends only on the
     * geometry, so the summation order does not depend on the thread count. */
    p->n_bands = g->out_h < SDDMM_BANDS ? g->out_h : SDDMM_BANDS;
    p->partial = st_malloc(sizeof(float) * (size_t)p->n_bands * n1, "sparse convolution plan");
    p->px_stats = st_malloc(sizeof(float) * 3 * (size_t)g->out_c * (size_t)g->out_h * (size_t)g->out_w,
                            "sparse convolution plan");
    if (!p->partial || !p->px_stats) {
        st_spconv_plan_free(p);
        return ST_ERR_NOMEM;
    }
    p->px_block = ST_SPCONV_PX_BLOCK_DEFAULT;
    p->threads = omp_get_max_threads();
    const int longest = p->max_row > p->max_col ? p->max_row : p->max_col;
    const size_t per_thread = (size_t)longest * (sizeof(float) + sizeof(int64_t) + sizeof(int32_t)) +
                              (size_t)p->max_chunk * ST_SPCONV_LANES * sizeof(float) + 64;
    p->scratch_bytes = (per_thread + 63) / 64 * 64;
    p->scratch = st_malloc(p->scratch_bytes * (size_t)p->threads + 64, "sparse convolution scratch");
    if (!p->scratch) {
        st_spconv_plan_free(p);
        return ST_ERR_NOMEM;
    }
    *out = p;
    return ST_OK;
}

/* Per-thread scratch: lists of up to `longest` entries plus accumulators. */
typedef struct thread_scratch {
    float *w;
    int64_t *off;
    int32_t *slot;
    float *acc;
} thread_scratch;

static thread_scratch scratch_of(const st_spconv_plan *p, int tid) {
    const int longest = p->max_row > p->max_col ? p->max_row : p->max_col;
    char *base = p->scratch + p->scratch_bytes * (size_t)tid;
    base = (char *)(((uintptr_t)base + 63) & ~(uintptr_t)63);
    thread_scratch s;
    s.acc = (float *)base;
    s.off = (int64_t *)(base + (size_t)p->max_chunk * ST_SPCONV_LANES * sizeof(float));
    s.w = (float *)(s.off + longest);
    s.slot = (int32_t *)(s.w + longest);
    return s;
}

static int team(const st_spconv_plan *p) {
    if (omp_in_parallel()) return 1;
    const int t = omp_get_max_threads();
    return t < p->threads ? t : p->threads;
}

/* ---------------- forward ---------------- */

/* Work items are (output pixel, block of output channels): the channels of
 * one pixel run back to back, so the pixel's input neighbourhood is read
 * from cache by all of them. Channels are split into blocks only when there
 * are too few pixels to keep every thread busy (linear layers). */
static int channel_blocks(int pixels, int channels, int threads) {
    int blocks = (4 * threads + pixels - 1) / pixels;
    if (blocks < 1) blocks = 1;
    if (blocks > channels) blocks = channels > 0 ? channels : 1;
    return blocks;
}

/* The forward pass; with stats, each output pixel's run is summarised as it
 * is written (gather_stats: from the registers where the ISA can, else from
 * L1 right after the store), and the runs of each channel are combined in
 * pixel order (see st_spconv_forward_stats). Work items hold up to
 * p->px_block adjacent output pixels of one output row; runs of them whose
 * windows the image border cuts alike (all interior pixels, say) go through
 * gather_px together (the same sums in the same order as one at a time). */
static void forward(st_spconv_plan *p, const float *x, const float *w, const float *bias, float *y, double *stats) {
    const st_spconv_prims *pr = prims();
    const st_spconv_geom *g = &p->g;
    const int N = g->batch, H = g->in_h, W = g->in_w, OH = g->out_h, OW = g->out_w, K = g->kernel, S = g->stride,
              P = g->pad;
    const int G = p->px_block, groups = (OW + G - 1) / G;
    const int nt = team(p), pixels = OH * OW, blocks = channel_blocks(pixels, g->out_c, nt);
    const int64_t plane = (int64_t)pixels * N;
    const int64_t stats_step = (int64_t)g->out_c * 3;
#pragma omp parallel num_threads(nt)
    {
        thread_scratch ts = scratch_of(p, omp_get_thread_num());
#pragma omp for schedule(static)
        for (int item = 0; item < OH * groups * blocks; item++) {
            const int grp = item / blocks, blk = item % blocks;
            const int oh = grp / groups, ow_begin = grp % groups * G, ow_end = ow_begin + G < OW ? ow_begin + G : OW;
            const int o0 = (int)((int64_t)g->out_c * blk / blocks), o1 = (int)((int64_t)g->out_c * (blk + 1) / blocks);
            const int ih0 = oh * S - P;
            const int kh_lo = ih0 < 0 ? -ih0 : 0, kh_hi = H - ih0 < K ? H - ih0 : K; /* kept kh: [kh_lo, kh_hi) */
            for (int o = o0; o < o1; o++) {
                const int64_t e0 = p->row_ptr[o], cnt = p->row_ptr[o + 1] - e0;
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
                    float *ps = stats ? p->px_stats + ((size_t)px * (size_t)g->out_c + (size_t)o) * 3 : NULL;
                    if (kh_lo == 0 && kh_hi == K && kw_lo == 0 && kw_hi == K) {
                        pr->gather_px(N, run, (int)cnt, w + e0, p->fwd_off + e0, x + base, (int64_t)S * N, b, 0, yo,
                                      N, ps, stats_step);
                    } else { /* the kept weights inside the image, once for the run */
                        int m = 0;
                        for (int64_t e = e0; e < e0 + cnt; e++) {
                            if (p->kh[e] < kh_lo || p->kh[e] >= kh_hi || p->kw[e] < kw_lo || p->kw[e] >= kw_hi) continue;
                            ts.w[m] = w[e];
                            ts.off[m++] = p->fwd_off[e];
                        }
                        pr->gather_px(N, run, m, ts.w, ts.off, x + base, (int64_t)S * N, b, 0, yo, N, ps, stats_step);
                    }
                    ow += run;
                }
            }
        }
        if (stats) {
            /* per channel, in pixel order, shifted by the channel's first value
             * (that of pixel 0, image 0) as the batch-norm kernels do */
#pragma omp for schedule(static)
            for (int o = 0; o < g->out_c; o++) {
                const float *ps = p->px_stats + (size_t)o * 3;
                const size_t step = (size_t)g->out_c * 3;
                const double k0 = ps[0];
                double s1 = 0.0, s2 = 0.0;
                for (int q = 0; q < pixels; q++) {
                    const double dk = (double)ps[step * q] - k0, a = ps[step * q + 1], b2 = ps[step * q + 2];
                    s1 += a + (double)N * dk;
                    s2 += b2 + 2.0 * dk * a + (double)N * dk * dk;
                }
                stats[3 * o] = k0, stats[3 * o + 1] = s1, stats[3 * o + 2] = s2;
            }
        }
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
 * pass; border pixels drop the weights whose output pixel is outside. */
static void backward_data(st_spconv_plan *p, const float *dy, const float *w, float *dx, int accumulate,
                          const st_spconv_bn_sums *bn) {
    const st_spconv_prims *pr = prims();
    for (int64_t t = 0; t < p->nnz; t++) p->t_w[t] = w[p->t_idx[t]];
    const st_spconv_geom *g = &p->g;
    const int N = g->batch, H = g->in_h, W = g->in_w, OH = g->out_h, OW = g->out_w, K = g->kernel, S = g->stride,
              P = g->pad, SS = S * S;
    const int nt = team(p), pixels = H * W, blocks = channel_blocks(pixels, g->in_c, nt);
    const int64_t plane = (int64_t)pixels * N;
    /* items: (input row, column residue r mod S, group of up to G pixels
     * r + S * k of that row, block of input channels); the pixels of one
     * residue share the stride phase, and consecutive ones read output
     * pixels one apart */
    const int G = p->px_block, per_res = (W + S - 1) / S, groups = (per_res + G - 1) / G;
#pragma omp parallel num_threads(nt)
    {
        thread_scratch ts = scratch_of(p, omp_get_thread_num());
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
            for (int i = i0; i < i1; i++) {
                const int64_t t0 = p->t_cls[(int64_t)i * SS + phase], cnt = p->t_cls[(int64_t)i * SS + phase + 1] - t0;
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
                        pr->gather_px(N, run, (int)cnt, p->t_w + t0, p->bwd_off + t0, dy + base, N, 0.0f, accumulate,
                                      dxi, (int64_t)S * N, NULL, 0);
                    } else { /* the kept weights whose output pixel is inside, once for the run */
                        int m = 0;
                        for (int64_t t = t0; t < t0 + cnt; t++) {
                            const int dh = p->t_kh[t] / S, dw = p->t_kw[t] / S;
                            if (dh < dh_lo || dh >= dh_hi || dw < dw_lo || dw >= dw_hi) continue;
                            ts.w[m] = p->t_w[t];
                            ts.off[m++] = p->bwd_off[t];
                        }
                        pr->gather_px(N, run, m, ts.w, ts.off, dy + base, N, 0.0f, accumulate, dxi, (int64_t)S * N,
                                      NULL, 0);
                    }
                    if (bn)
                        for (int q = 0; q < run; q++) {
                            const int64_t at = i * plane + (int64_t)(px + q * S) * N;
                            pr->run_bn_sums(N, dx + at, bn->y ? bn->y + at : NULL, bn->x + at, bn->mean[i],
                                            p->px_sums + ((size_t)(px + q * S) * (size_t)g->in_c + (size_t)i) * 2);
                        }
                    k += run;
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

/* Output channels are cut into chunks whose accumulators (16 floats per kept
 * weight) fit in L2; a thread takes a chunk and sweeps the output pixels
 * once, running every channel of the chunk at each pixel so the pixel's
 * input neighbourhood is reused from cache. The chunks depend only on the
 * structure, so results do not depend on the thread count. */
void st_spconv_backward_weight(st_spconv_plan *p, const float *x, const float *dy, float *dw, float *dbias) {
    const st_spconv_prims *pr = prims();
    const st_spconv_geom *g = &p->g;
    const int N = g->batch, H = g->in_h, W = g->in_w, OH = g->out_h, OW = g->out_w, K = g->kernel, S = g->stride,
              P = g->pad;
    const int64_t plane = (int64_t)OH * OW * N;
    if (dbias) {
#pragma omp parallel for schedule(static) num_threads(team(p))
        for (int o = 0; o < g->out_c; o++) {
            double s = 0.0;
            for (int64_t j = 0; j < plane; j++) s += dy[o * plane + j];
            dbias[o] += (float)s;
        }
    }
    if (!dw || p->nnz == 0) return;
    /* items: (chunk of output channels, band of output rows); each band's sums
     * go to its own row of p->partial and the bands are added in order */
    const int chunks = p->n_chunks, bands = p->n_bands;
#pragma omp parallel num_threads(team(p))
    {
        thread_scratch ts = scratch_of(p, omp_get_thread_num());
#pragma omp for schedule(dynamic, 1)
        for (int item = 0; item < chunks * bands; item++) {
            const int c = item / bands, band = item % bands;
            const int o0 = p->chunk_start[c], o1 = p->chunk_start[c + 1];
            const int64_t c0 = p->row_ptr[o0], ccnt = p->row_ptr[o1] - c0;
            if (ccnt == 0) continue;
            memset(ts.acc, 0, sizeof(float) * (size_t)ccnt * ST_SPCONV_LANES);
            const int oh_begin = (int)((int64_t)OH * band / bands), oh_end = (int)((int64_t)OH * (band + 1) / bands);
            for (int oh = oh_begin; oh < oh_end; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    const int ih0 = oh * S - P, iw0 = ow * S - P;
                    const int inside = ih0 >= 0 && ih0 + K <= H && iw0 >= 0 && iw0 + K <= W;
                    const int64_t base = ((int64_t)ih0 * W + iw0) * N, px = ((int64_t)oh * OW + ow) * N;
                    for (int o = o0; o < o1; o++) {
                        const int64_t e0 = p->row_ptr[o], cnt = p->row_ptr[o + 1] - e0;
                        if (cnt == 0) continue;
                        const float *d = dy + o * plane + px;
                        float *acc = ts.acc + (size_t)(e0 - c0) * ST_SPCONV_LANES;
                        if (inside) {
                            pr->sddmm(N, (int)cnt, p->fwd_off + e0, NULL, d, x + base, acc);
                            continue;
                        }
                        int m = 0;
                        for (int64_t e = e0; e < e0 + cnt; e++) {
                            const int ih = ih0 + p->kh[e], iw = iw0 + p->kw[e];
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                            ts.slot[m] = (int32_t)(e - e0);
                            ts.off[m++] = base + p->fwd_off[e];
                        }
                        pr->sddmm(N, m, ts.off, ts.slot, d, x, acc);
                    }
                }
            float *part = p->partial + (size_t)band * (size_t)p->nnz + (size_t)c0;
            for (int64_t e = 0; e < ccnt; e++) {
                const float *a = ts.acc + (size_t)e * ST_SPCONV_LANES;
                float sum = 0.0f;
                for (int l = 0; l < ST_SPCONV_LANES; l++) sum += a[l];
                part[e] = sum;
            }
        }
#pragma omp for schedule(static)
        for (int64_t e = 0; e < p->nnz; e++) {
            float sum = 0.0f;
            for (int band = 0; band < bands; band++) sum += p->partial[(size_t)band * (size_t)p->nnz + (size_t)e];
            dw[e] += sum;
        }
    }
}
