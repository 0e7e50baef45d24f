/* Dense convolution on CHWN activations by CHWN im2col + GEMM (see dense_chwn.h). */
#include "kernels/dense_chwn.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "kernels/im2col.h"

#ifdef ST_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#else
#include <cblas.h>
#endif

/* Pieces of work (fixed by the geometry, never by the thread count). */
enum {
    BLOCK_FLOATS = 1 << 20, /* col(X) of one block of output rows: at most ~4 MB (at least one row) */
    TILE_M = 128,           /* rows of one GEMM call */
    TILE_N = 1024,          /* columns of one GEMM call */
    LANES = 16              /* float lanes of the statistics' per-pixel sums */
};

struct st_dchwn_plan {
    st_spconv_geom g;
    int identity;       /* 1x1, stride 1, no padding: col(X) = X */
    int64_t kc;         /* in_c * K * K */
    int64_t cols;       /* OH * OW * N */
    int rows_per_block; /* output rows per block */
    int n_blocks;
    int group;          /* blocks whose col(X) the weight-gradient pass holds at once */
    float *col;         /* group x kc x block columns (NULL when identity) */
    float *partial;     /* group x out_c x kc: per-block weight gradients */
};

void st_sgemm_serial(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                     const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
#ifdef ST_HAVE_ONEDNN
    dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#else
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
                alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}

static int team(void) { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

const st_spconv_geom *st_dchwn_plan_geom(const st_dchwn_plan *p) { return &p->g; }

int64_t st_dchwn_plan_workspace_floats(const st_dchwn_plan *p) {
    const int64_t block_cols = (int64_t)p->rows_per_block * p->g.out_w * p->g.batch;
    return (p->identity ? 0 : (int64_t)p->group * p->kc * block_cols) + (int64_t)p->group * p->g.out_c * p->kc;
}

st_status st_dchwn_plan_create(const st_spconv_geom *g, st_dchwn_plan **out) {
    *out = NULL;
    st_dchwn_plan *p = st_calloc(1, sizeof *p, "dense convolution plan");
    if (!p) return ST_ERR_NOMEM;
    p->g = *g;
    p->identity = g->kernel == 1 && g->stride == 1 && g->pad == 0;
    p->kc = (int64_t)g->in_c * g->kernel * g->kernel;
    p->cols = (int64_t)g->out_h * g->out_w * g->batch;
    const int64_t row_floats = p->kc * g->out_w * g->batch;
    int64_t r = BLOCK_FLOATS / (row_floats > 0 ? row_floats : 1);
    p->rows_per_block = (int)(r < 1 ? 1 : r > g->out_h ? g->out_h : r);
    p->n_blocks = (g->out_h + p->rows_per_block - 1) / p->rows_per_block;
    const int t = omp_get_max_threads();
    p->group = t < p->n_blocks ? t : p->n_blocks;
    const int64_t block_cols = (int64_t)p->rows_per_block * g->out_w * g->batch;
    if (!p->identity) p->col = st_malloc_aligned(sizeof(float) * (size_t)(p->group * p->kc * block_cols), "dense convolution workspace");
    p->partial = st_malloc_aligned(sizeof(float) * (size_t)((int64_t)p->group * g->out_c * p->kc), "dense convolution workspace");
    if ((!p->identity && !p->col) || !p->partial) {
        st_dchwn_plan_free(p);
        return ST_ERR_NOMEM;
    }
    *out = p;
    return ST_OK;
}

void st_dchwn_plan_free(st_dchwn_plan *p) {
    if (!p) return;
    free(p->col);
    free(p->partial);
    free(p);
}

/* Output rows [*r0, *r1) and columns [*c0, c0 + *nc) of block b. */
static void block_range(const st_dchwn_plan *p, int b, int *r0, int *r1, int64_t *c0, int64_t *nc) {
    const int64_t row_cols = (int64_t)p->g.out_w * p->g.batch;
    *r0 = b * p->rows_per_block;
    *r1 = *r0 + p->rows_per_block < p->g.out_h ? *r0 + p->rows_per_block : p->g.out_h;
    *c0 = *r0 * row_cols;
    *nc = (*r1 - *r0) * row_cols;
}

/* Row `row` = (i, kh, kw) of col(X) for output rows [r0, r1), into dst (nc floats). */
static void im2col_row(const st_dchwn_plan *p, const float *x, int64_t row, int r0, int r1, float *dst) {
    const st_spconv_geom *g = &p->g;
    const int K = g->kernel, N = g->batch, i = (int)(row / (K * K)), kh = (int)(row / K % K), kw = (int)(row % K);
    int lo, hi;
    st_im2col_valid_range(g->in_w, g->out_w, g->stride, g->pad, kw, &lo, &hi);
    for (int oy = r0; oy < r1; oy++) {
        float *d = dst + (int64_t)(oy - r0) * g->out_w * N;
        const int iy = oy * g->stride - g->pad + kh;
        if (iy < 0 || iy >= g->in_h || hi <= lo) {
            memset(d, 0, sizeof(float) * (size_t)g->out_w * (size_t)N);
            continue;
        }
        memset(d, 0, sizeof(float) * (size_t)lo * (size_t)N);
        const float *src = x + (((int64_t)i * g->in_h + iy) * g->in_w) * N;
        if (g->stride == 1) {
            memcpy(d + (int64_t)lo * N, src + (int64_t)(lo - g->pad + kw) * N, sizeof(float) * (size_t)(hi - lo) * N);
        } else {
            for (int ox = lo; ox < hi; ox++)
                memcpy(d + (int64_t)ox * N, src + (int64_t)(ox * g->stride - g->pad + kw) * N, sizeof(float) * (size_t)N);
        }
        memset(d + (int64_t)hi * N, 0, sizeof(float) * (size_t)(g->out_w - hi) * (size_t)N);
    }
}

/* dx plane of input channel i += the rows (i, kh, kw) of dcol for output rows [r0, r1). */
static void col2im_channel(const st_dchwn_plan *p, const float *dcol, int64_t nc, int i, int r0, int r1, float *dx) {
    const st_spconv_geom *g = &p->g;
    const int K = g->kernel, N = g->batch;
    for (int kh = 0; kh < K; kh++)
        for (int kw = 0; kw < K; kw++) {
            const float *row = dcol + (((int64_t)i * K + kh) * K + kw) * nc;
            int lo, hi;
            st_im2col_valid_range(g->in_w, g->out_w, g->stride, g->pad, kw, &lo, &hi);
            if (hi <= lo) continue;
            for (int oy = r0; oy < r1; oy++) {
                const int iy = oy * g->stride - g->pad + kh;
                if (iy < 0 || iy >= g->in_h) continue;
                const float *s = row + (int64_t)(oy - r0) * g->out_w * N;
                float *d = dx + (((int64_t)i * g->in_h + iy) * g->in_w) * N;
                if (g->stride == 1) {
                    float *restrict dd = d + (int64_t)(lo - g->pad + kw) * N;
                    const float *restrict ss = s + (int64_t)lo * N;
                    const int64_t n = (int64_t)(hi - lo) * N;
                    for (int64_t j = 0; j < n; j++) dd[j] += ss[j];
                } else {
                    for (int ox = lo; ox < hi; ox++) {
                        float *restrict dd = d + (int64_t)(ox * g->stride - g->pad + kw) * N;
                        const float *restrict ss = s + (int64_t)ox * N;
                        for (int j = 0; j < N; j++) dd[j] += ss[j];
                    }
                }
            }
        }
}

static int64_t tiles(int64_t n, int64_t t) { return (n + t - 1) / t; }

/* Statistics of channel o of y (see st_dchwn_forward), as the sparse kernels form them. */
static void channel_stats(const st_spconv_geom *g, const float *yo, double *stats) {
    const int N = g->batch, pixels = g->out_h * g->out_w;
    const double k0 = yo[0];
    double s1 = 0.0, s2 = 0.0;
    for (int q = 0; q < pixels; q++) {
        const float *v = yo + (int64_t)q * N;
        const float k = v[0];
        float a[LANES] = {0}, b[LANES] = {0};
        int j = 0;
        for (; j + LANES <= N; j += LANES)
            for (int l = 0; l < LANES; l++) {
                const float d = v[j + l] - k;
                a[l] += d;
                b[l] += d * d;
            }
        for (int l = 0; j < N; j++, l++) {
            const float d = v[j] - k;
            a[l] += d;
            b[l] += d * d;
        }
        float fa = 0.0f, fb = 0.0f;
        for (int l = 0; l < LANES; l++) fa += a[l], fb += b[l];
        const double dk = (double)k - k0;
        s1 += fa + (double)N * dk;
        s2 += fb + 2.0 * dk * fa + (double)N * dk * dk;
    }
    stats[0] = k0, stats[1] = s1, stats[2] = s2;
}

void st_dchwn_forward(st_dchwn_plan *p, const float *x, const float *w, const float *bias, float *y, double *stats) {
    const st_spconv_geom *g = &p->g;
    const int O = g->out_c;
    const int64_t L = p->cols, kc = p->kc;
#pragma omp parallel num_threads(team())
    for (int b = 0; b < p->n_blocks; b++) {
        int r0, r1;
        int64_t c0, nc;
        block_range(p, b, &r0, &r1, &c0, &nc);
        const float *col = p->identity ? x + c0 : p->col;
        const int64_t ldb = p->identity ? L : nc;
        if (!p->identity) {
#pragma omp for schedule(static)
            for (int64_t row = 0; row < kc; row++) im2col_row(p, x, row, r0, r1, p->col + row * nc);
        }
        const int64_t tm = tiles(O, TILE_M), tn = tiles(nc, TILE_N);
#pragma omp for schedule(static)
        for (int64_t t = 0; t < tm * tn; t++) {
            const int64_t m0 = t / tn * TILE_M, n0 = t % tn * TILE_N;
            const int m = (int)(m0 + TILE_M < O ? TILE_M : O - m0), n = (int)(n0 + TILE_N < nc ? TILE_N : nc - n0);
            float *c = y + m0 * L + c0 + n0;
            st_sgemm_serial(0, 0, m, n, (int)kc, 1.0f, w + m0 * kc, (int)kc, col + n0, (int)ldb, 0.0f, c, (int)L);
            if (bias)
                for (int r = 0; r < m; r++) {
                    const float bv = bias[m0 + r];
                    float *cr = c + r * L;
                    for (int j = 0; j < n; j++) cr[j] += bv;
                }
        }
    }
    if (stats) {
#pragma omp parallel for schedule(static) num_threads(team())
        for (int o = 0; o < O; o++) channel_stats(g, y + (int64_t)o * L, stats + 3 * o);
    }
}

void st_dchwn_backward_data(st_dchwn_plan *p, const float *dy, const float *w, float *dx, int accumulate) {
    const st_spconv_geom *g = &p->g;
    const int O = g->out_c;
    const int64_t L = p->cols, kc = p->kc, in_plane = (int64_t)g->in_h * g->in_w * g->batch;
#pragma omp parallel num_threads(team())
    {
        if (!p->identity && !accumulate) {
#pragma omp for schedule(static)
            for (int i = 0; i < g->in_c; i++) memset(dx + i * in_plane, 0, sizeof(float) * (size_t)in_plane);
        }
        for (int b = 0; b < p->n_blocks; b++) {
            int r0, r1;
            int64_t c0, nc;
            block_range(p, b, &r0, &r1, &c0, &nc);
            /* dcol = W^T dY (identity: straight into dx) */
            const int64_t tm = tiles(kc, TILE_M), tn = tiles(nc, TILE_N);
#pragma omp for schedule(static)
            for (int64_t t = 0; t < tm * tn; t++) {
                const int64_t m0 = t / tn * TILE_M, n0 = t % tn * TILE_N;
                const int m = (int)(m0 + TILE_M < kc ? TILE_M : kc - m0), n = (int)(n0 + TILE_N < nc ? TILE_N : nc - n0);
                if (p->identity)
                    st_sgemm_serial(1, 0, m, n, O, 1.0f, w + m0, (int)kc, dy + c0 + n0, (int)L, accumulate ? 1.0f : 0.0f,
                                    dx + m0 * L + c0 + n0, (int)L);
                else
                    st_sgemm_serial(1, 0, m, n, O, 1.0f, w + m0, (int)kc, dy + c0 + n0, (int)L, 0.0f,
                                    p->col + m0 * nc + n0, (int)nc);
            }
            if (!p->identity) {
#pragma omp for schedule(static)
                for (int i = 0; i < g->in_c; i++) col2im_channel(p, p->col, nc, i, r0, r1, dx);
            }
        }
    }
}

void st_dchwn_backward_weight(st_dchwn_plan *p, const float *x, const float *dy, float *dw, float *dbias) {
    const st_spconv_geom *g = &p->g;
    const int O = g->out_c;
    const int64_t L = p->cols, kc = p->kc, wn = (int64_t)O * kc;
    const int64_t block_cols = (int64_t)p->rows_per_block * g->out_w * g->batch;
#pragma omp parallel num_threads(team())
    {
        for (int b0 = 0; b0 < p->n_blocks; b0 += p->group) {
            const int nb = b0 + p->group < p->n_blocks ? p->group : p->n_blocks - b0;
            if (!p->identity) {
#pragma omp for schedule(static)
                for (int64_t item = 0; item < nb * kc; item++) {
                    const int j = (int)(item / kc);
                    const int64_t row = item % kc;
                    int r0, r1;
                    int64_t c0, nc;
                    block_range(p, b0 + j, &r0, &r1, &c0, &nc);
                    im2col_row(p, x, row, r0, r1, p->col + (int64_t)j * kc * block_cols + row * nc);
                }
            }
            /* each block's dY col(X)^T into its own partial, tile by tile */
            const int64_t tm = tiles(O, TILE_M), tk = tiles(kc, TILE_N);
#pragma omp for schedule(static)
            for (int64_t t = 0; t < nb * tm * tk; t++) {
                const int j = (int)(t / (tm * tk));
                const int64_t m0 = t / tk % tm * TILE_M, k0 = t % tk * TILE_N;
                const int m = (int)(m0 + TILE_M < O ? TILE_M : O - m0), n = (int)(k0 + TILE_N < kc ? TILE_N : kc - k0);
                int r0, r1;
                int64_t c0, nc;
                block_range(p, b0 + j, &r0, &r1, &c0, &nc);
                const float *col = p->identity ? x + c0 + k0 * L : p->col + (int64_t)j * kc * block_cols + k0 * nc;
                st_sgemm_serial(0, 1, m, n, (int)nc, 1.0f, dy + m0 * L + c0, (int)L, col, p->identity ? (int)L : (int)nc,
                                0.0f, p->partial + (int64_t)j * wn + m0 * kc + k0, (int)kc);
            }
            /* dw += the partials in block order */
#pragma omp for schedule(static)
            for (int64_t e = 0; e < wn; e++) {
                float s = dw[e];
                for (int j = 0; j < nb; j++) s += p->partial[(int64_t)j * wn + e];
                dw[e] = s;
            }
        }
        if (dbias) {
#pragma omp for schedule(static)
            for (int o = 0; o < O; o++) {
                double s = 0.0;
                const float *r = dy + (int64_t)o * L;
                for (int64_t j = 0; j < L; j++) s += r[j];
                dbias[o] += (float)s;
            }
        }
    }
}
