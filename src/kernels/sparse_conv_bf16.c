/* bf16 direct sparse convolution (see sparse_conv_bf16.h): the plan, the
 * passes' loops over pixels (the same work partition as sparse_conv.c) and
 * the primitives: scalar C and AVX512_BF16 in two designs. */
#include "kernels/sparse_conv_bf16.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "kernels/isa.h"
#include "kernels/isa_target.h"

/* Lanes of one weight-gradient accumulator slot (as ST_SPCONV_LANES). */
#define LANES 16
/* Most kept weights per weight-gradient chunk, most bands of output rows (as sparse_conv.c). */
#define CHUNK_ENTRIES 4096
#define BANDS 4

typedef struct prims {
    /* out[j] = (accumulate ? out[j] : bias) + sum_e w[e] * src[off[e] + j], j < n */
    void (*gather)(int n, int cnt, const st_bf16 *w, const int64_t *off, const st_bf16 *src, float bias,
                   int accumulate, float *out);
    /* acc[slot(e) * 16 + lane] += sum over j of dy[j] * src[off[e] + j], j < n, lanes any fixed assignment */
    void (*sddmm)(int n, int cnt, const int64_t *off, const int32_t *slot, const st_bf16 *dy, const st_bf16 *src,
                  float *acc);
    /* gather (accumulate = 0), then the statistics of its output run: stats[0] = out[0],
     * stats[1] = sum (out[j] - out[0]), stats[2] = sum (out[j] - out[0])^2, float sums in a fixed order */
    void (*gather_stats)(int n, int cnt, const st_bf16 *w, const int64_t *off, const st_bf16 *src, float bias,
                         float *out, float *stats);
} prims;

/* ---------------- scalar C (also the n % 32 tails) ---------------- */

static void gather_tail(int j0, int n, int cnt, const st_bf16 *w, const int64_t *off, const st_bf16 *src, float bias,
                        int accumulate, float *out) {
    if (!accumulate)
        for (int j = j0; j < n; j++) out[j] = bias;
    for (int e = 0; e < cnt; e++) {
        const float we = st_bf16_to_float(w[e]);
        const st_bf16 *s = src + off[e];
        for (int j = j0; j < n; j++) out[j] += we * st_bf16_to_float(s[j]);
    }
}

static void sddmm_tail(int j0, int n, int cnt, const int64_t *off, const int32_t *slot, const st_bf16 *dy,
                       const st_bf16 *src, float *acc) {
    for (int e = 0; e < cnt; e++) {
        const st_bf16 *s = src + off[e];
        float *a = acc + (size_t)(slot ? slot[e] : e) * LANES;
        for (int j = j0; j < n; j++) a[j % LANES] += st_bf16_to_float(dy[j]) * st_bf16_to_float(s[j]);
    }
}

static void run_stats_generic(int n, const float *v, float *out) {
    float a[LANES] = {0}, b[LANES] = {0};
    for (int j = 0; j < n; j++) {
        const float d = v[j] - v[0];
        a[j % LANES] += d, b[j % LANES] += d * d;
    }
    float s1 = 0.0f, s2 = 0.0f;
    for (int l = 0; l < LANES; l++) s1 += a[l], s2 += b[l];
    out[0] = v[0], out[1] = s1, out[2] = s2;
}

static void gather_generic(int n, int cnt, const st_bf16 *w, const int64_t *off, const st_bf16 *src, float bias,
                           int accumulate, float *out) {
    gather_tail(0, n, cnt, w, off, src, bias, accumulate, out);
}

static void sddmm_generic(int n, int cnt, const int64_t *off, const int32_t *slot, const st_bf16 *dy,
                          const st_bf16 *src, float *acc) {
    sddmm_tail(0, n, cnt, off, slot, dy, src, acc);
}

static void gather_stats_generic(int n, int cnt, const st_bf16 *w, const int64_t *off, const st_bf16 *src, float bias,
                                 float *out, float *stats) {
    gather_tail(0, n, cnt, w, off, src, bias, 0, out);
    run_stats_generic(n, out, stats);
}

static const prims prims_generic = {gather_generic, sddmm_generic, gather_stats_generic};

/* ---------------- AVX512_BF16 ---------------- */
#ifdef ST_HAVE_X86_TARGETS
#include <immintrin.h>
ST_TARGET_AVX512_BF16_BEGIN

#define LD(p) _mm512_loadu_si512((const void *)(p))
#define BH(v) ((__m512bh)(v))

/* --- "cvt": 32 bf16 -> the floats of the even and the odd positions --- */
static inline __m512 even_f(__m512i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)); }
static inline __m512 odd_f(__m512i v) {
    return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xFFFF0000u)));
}
/* even/odd lanes <-> 32 floats in order */
static inline void eo_store(float *out, __m512 ev, __m512 od) {
    const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    _mm512_storeu_ps(out, _mm512_permutex2var_ps(ev, lo, od));
    _mm512_storeu_ps(out + 16, _mm512_permutex2var_ps(ev, hi, od));
}
static inline void eo_load(const float *in, __m512 *ev, __m512 *od) {
    const __m512 a = _mm512_loadu_ps(in), b = _mm512_loadu_ps(in + 16);
    const __m512i e = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i o = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    *ev = _mm512_permutex2var_ps(a, e, b), *od = _mm512_permutex2var_ps(a, o, b);
}

static void gather_cvt(int n, int cnt, const st_bf16 *w, const int64_t *off, const st_bf16 *src, float bias,
                       int accumulate, float *out) {
    int j = 0;
    for (; j + 128 <= n; j += 128) {
        __m512 a[8];
        if (accumulate)
            for (int b = 0; b < 4; b++) eo_load(out + j + 32 * b, &a[2 * b], &a[2 * b + 1]);
        else
            for (int b = 0; b < 8; b++) a[b] = _mm512_set1_ps(bias);
        for (int e = 0; e < cnt; e++) {
            const __m512 wv = _mm512_set1_ps(st_bf16_to_float(w[e]));
            const st_bf16 *s = src + off[e] + j;
            const __m512i v0 = LD(s), v1 = LD(s + 32), v2 = LD(s + 64), v3 = LD(s + 96);
            a[0] = _mm512_fmadd_ps(wv, even_f(v0), a[0]), a[1] = _mm512_fmadd_ps(wv, odd_f(v0), a[1]);
            a[2] = _mm512_fmadd_ps(wv, even_f(v1), a[2]), a[3] = _mm512_fmadd_ps(wv, odd_f(v1), a[3]);
            a[4] = _mm512_fmadd_ps(wv, even_f(v2), a[4]), a[5] = _mm512_fmadd_ps(wv, odd_f(v2), a[5]);
            a[6] = _mm512_fmadd_ps(wv, even_f(v3), a[6]), a[7] = _mm512_fmadd_ps(wv, odd_f(v3), a[7]);
        }
        for (int b = 0; b < 4; b++) eo_store(out + j + 32 * b, a[2 * b], a[2 * b + 1]);
    }
    for (; j + 32 <= n; j += 32) {
        __m512 ev, od;
        if (accumulate) eo_load(out + j, &ev, &od);
        else ev = od = _mm512_set1_ps(bias);
        for (int e = 0; e < cnt; e++) {
            const __m512 wv = _mm512_set1_ps(st_bf16_to_float(w[e]));
            const __m512i v = LD(src + off[e] + j);
            ev = _mm512_fmadd_ps(wv, even_f(v), ev), od = _mm512_fmadd_ps(wv, odd_f(v), od);
        }
        eo_store(out + j, ev, od);
    }
    if (j < n) gather_tail(j, n, cnt, w, off, src, bias, accumulate, out);
}

/* --- "dp": two kept weights per vdpbf16ps, their runs interleaved per n ---
 * unpacklo_epi16(u, v) pairs (u[n], v[n]) for n = 8L + k, k < 4, in lane
 * 4L + k (L: 128-bit lane); unpackhi for n = 8L + 4 + k. */
static inline void lh_store(float *out, __m512 lo, __m512 hi) {
    const __m512i a = _mm512_set_epi32(23, 22, 21, 20, 7, 6, 5, 4, 19, 18, 17, 16, 3, 2, 1, 0);
    const __m512i b = _mm512_set_epi32(31, 30, 29, 28, 15, 14, 13, 12, 27, 26, 25, 24, 11, 10, 9, 8);
    _mm512_storeu_ps(out, _mm512_permutex2var_ps(lo, a, hi));
    _mm512_storeu_ps(out + 16, _mm512_permutex2var_ps(lo, b, hi));
}
static inline void lh_load(const float *in, __m512 *lo, __m512 *hi) {
    const __m512 a = _mm512_loadu_ps(in), b = _mm512_loadu_ps(in + 16);
    const __m512i l = _mm512_set_epi32(27, 26, 25, 24, 19, 18, 17, 16, 11, 10, 9, 8, 3, 2, 1, 0);
    const __m512i h = _mm512_set_epi32(31, 30, 29, 28, 23, 22, 21, 20, 15, 14, 13, 12, 7, 6, 5, 4);
    *lo = _mm512_permutex2var_ps(a, l, b), *hi = _mm512_permutex2var_ps(a, h, b);
}
static inline __m512i pair_w(st_bf16 w0, st_bf16 w1) { return _mm512_set1_epi32((int)((uint32_t)w0 | (uint32_t)w1 << 16)); }

#define DP_STEP(A, B, U, V)                                                                                           \
    do {                                                                                                              \
        const __m512i u_ = (U), v_ = (V);                                                                            \
        A = _mm512_dpbf16_ps(A, BH(wp), BH(_mm512_unpacklo_epi16(u_, v_)));                                           \
        B = _mm512_dpbf16_ps(B, BH(wp), BH(_mm512_unpackhi_epi16(u_, v_)));                                           \
    } while (0)

static void gather_dp(int n, int cnt, const st_bf16 *w, const int64_t *off, const st_bf16 *src, float bias,
                      int accumulate, float *out) {
    int j = 0;
    for (; j + 128 <= n; j += 128) {
        __m512 a0, a1, a2, a3, a4, a5, a6, a7;
        if (accumulate) {
            lh_load(out + j, &a0, &a1), lh_load(out + j + 32, &a2, &a3);
            lh_load(out + j + 64, &a4, &a5), lh_load(out + j + 96, &a6, &a7);
        } else {
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = _mm512_set1_ps(bias);
        }
        for (int e = 0; e < cnt; e += 2) {
            const int last = e + 1 == cnt; /* an odd count: the last weight paired with a zero */
            const __m512i wp = pair_w(w[e], last ? 0 : w[e + 1]);
            const st_bf16 *s = src + off[e] + j, *t = src + off[last ? e : e + 1] + j;
            DP_STEP(a0, a1, LD(s), LD(t));
            DP_STEP(a2, a3, LD(s + 32), LD(t + 32));
            DP_STEP(a4, a5, LD(s + 64), LD(t + 64));
            DP_STEP(a6, a7, LD(s + 96), LD(t + 96));
        }
        lh_store(out + j, a0, a1), lh_store(out + j + 32, a2, a3);
        lh_store(out + j + 64, a4, a5), lh_store(out + j + 96, a6, a7);
    }
    for (; j + 32 <= n; j += 32) {
        __m512 a0, a1;
        if (accumulate) lh_load(out + j, &a0, &a1);
        else a0 = a1 = _mm512_set1_ps(bias);
        for (int e = 0; e < cnt; e += 2) {
            const int last = e + 1 == cnt;
            const __m512i wp = pair_w(w[e], last ? 0 : w[e + 1]);
            DP_STEP(a0, a1, LD(src + off[e] + j), LD(src + off[last ? e : e + 1] + j));
        }
        lh_store(out + j, a0, a1);
    }
    if (j < n) gather_tail(j, n, cnt, w, off, src, bias, accumulate, out);
}

static void sddmm_cvt(int n, int cnt, const int64_t *off, const int32_t *slot, const st_bf16 *dy, const st_bf16 *src,
                      float *acc) {
    int j = 0;
    for (; j + 128 <= n; j += 128) {
        __m512 d[8];
        for (int b = 0; b < 4; b++) {
            const __m512i v = LD(dy + j + 32 * b);
            d[2 * b] = even_f(v), d[2 * b + 1] = odd_f(v);
        }
        for (int e = 0; e < cnt; e++) {
            const st_bf16 *s = src + off[e] + j;
            float *a = acc + (size_t)(slot ? slot[e] : e) * LANES;
            const __m512i v0 = LD(s), v1 = LD(s + 32), v2 = LD(s + 64), v3 = LD(s + 96);
            __m512 t0 = _mm512_mul_ps(d[0], even_f(v0)), t1 = _mm512_mul_ps(d[1], odd_f(v0));
            t0 = _mm512_fmadd_ps(d[2], even_f(v1), t0), t1 = _mm512_fmadd_ps(d[3], odd_f(v1), t1);
            t0 = _mm512_fmadd_ps(d[4], even_f(v2), t0), t1 = _mm512_fmadd_ps(d[5], odd_f(v2), t1);
            t0 = _mm512_fmadd_ps(d[6], even_f(v3), t0), t1 = _mm512_fmadd_ps(d[7], odd_f(v3), t1);
            _mm512_storeu_ps(a, _mm512_add_ps(_mm512_loadu_ps(a), _mm512_add_ps(t0, t1)));
        }
    }
    for (; j + 32 <= n; j += 32) {
        const __m512i v = LD(dy + j);
        const __m512 de = even_f(v), dd = odd_f(v);
        for (int e = 0; e < cnt; e++) {
            float *a = acc + (size_t)(slot ? slot[e] : e) * LANES;
            const __m512i x = LD(src + off[e] + j);
            const __m512 t = _mm512_fmadd_ps(dd, odd_f(x), _mm512_mul_ps(de, even_f(x)));
            _mm512_storeu_ps(a, _mm512_add_ps(_mm512_loadu_ps(a), t));
        }
    }
    if (j < n) sddmm_tail(j, n, cnt, off, slot, dy, src, acc);
}

/* the reduction runs over n: pairs of images as they lie in memory */
static void sddmm_dp(int n, int cnt, const int64_t *off, const int32_t *slot, const st_bf16 *dy, const st_bf16 *src,
                     float *acc) {
    int j = 0;
    for (; j + 128 <= n; j += 128) {
        const __m512i d0 = LD(dy + j), d1 = LD(dy + j + 32), d2 = LD(dy + j + 64), d3 = LD(dy + j + 96);
        for (int e = 0; e < cnt; e++) {
            const st_bf16 *s = src + off[e] + j;
            float *a = acc + (size_t)(slot ? slot[e] : e) * LANES;
            __m512 t0 = _mm512_dpbf16_ps(_mm512_setzero_ps(), BH(d0), BH(LD(s)));
            __m512 t1 = _mm512_dpbf16_ps(_mm512_setzero_ps(), BH(d1), BH(LD(s + 32)));
            t0 = _mm512_dpbf16_ps(t0, BH(d2), BH(LD(s + 64)));
            t1 = _mm512_dpbf16_ps(t1, BH(d3), BH(LD(s + 96)));
            _mm512_storeu_ps(a, _mm512_add_ps(_mm512_loadu_ps(a), _mm512_add_ps(t0, t1)));
        }
    }
    for (; j + 32 <= n; j += 32) {
        const __m512i d = LD(dy + j);
        for (int e = 0; e < cnt; e++) {
            float *a = acc + (size_t)(slot ? slot[e] : e) * LANES;
            _mm512_storeu_ps(a, _mm512_dpbf16_ps(_mm512_loadu_ps(a), BH(d), BH(LD(src + off[e] + j))));
        }
    }
    if (j < n) sddmm_tail(j, n, cnt, off, slot, dy, src, acc);
}

static void run_stats_avx512(int n, const float *v, float *out) {
    const __m512 k = _mm512_set1_ps(v[0]);
    __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
    for (int j = 0; j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1u);
        const __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, v + j), k);
        a = _mm512_add_ps(a, d);
        b = _mm512_fmadd_ps(d, d, b);
    }
    out[0] = v[0], out[1] = _mm512_reduce_add_ps(a), out[2] = _mm512_reduce_add_ps(b);
}

static void gather_stats_cvt(int n, int cnt, const st_bf16 *w, const int64_t *off, const st_bf16 *src, float bias,
                             float *out, float *stats) {
    gather_cvt(n, cnt, w, off, src, bias, 0, out);
    run_stats_avx512(n, out, stats);
}

/* The 128-wide dp gather with the statistics taken from its accumulators
 * (a reload right after the stores would stall on store-to-load forwarding):
 * lane 0 of the first accumulator is out[0]. */
static void gather_stats_dp(int n, int cnt, const st_bf16 *w, const int64_t *off, const st_bf16 *src, float bias,
                            float *out, float *stats) {
    if (n != 128) {
        gather_dp(n, cnt, w, off, src, bias, 0, out);
        run_stats_avx512(n, out, stats);
        return;
    }
    __m512 a0, a1, a2, a3, a4, a5, a6, a7;
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = _mm512_set1_ps(bias);
    for (int e = 0; e < cnt; e += 2) {
        const int last = e + 1 == cnt;
        const __m512i wp = pair_w(w[e], last ? 0 : w[e + 1]);
        const st_bf16 *s = src + off[e], *t = src + off[last ? e : e + 1];
        DP_STEP(a0, a1, LD(s), LD(t));
        DP_STEP(a2, a3, LD(s + 32), LD(t + 32));
        DP_STEP(a4, a5, LD(s + 64), LD(t + 64));
        DP_STEP(a6, a7, LD(s + 96), LD(t + 96));
    }
    lh_store(out, a0, a1), lh_store(out + 32, a2, a3);
    lh_store(out + 64, a4, a5), lh_store(out + 96, a6, a7);
    const float k0 = _mm512_cvtss_f32(a0);
    const __m512 k = _mm512_set1_ps(k0);
    __m512 s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), d;
#define ST_RUN_STEP(A) d = _mm512_sub_ps(A, k), s1 = _mm512_add_ps(s1, d), s2 = _mm512_fmadd_ps(d, d, s2)
    ST_RUN_STEP(a0), ST_RUN_STEP(a1), ST_RUN_STEP(a2), ST_RUN_STEP(a3);
    ST_RUN_STEP(a4), ST_RUN_STEP(a5), ST_RUN_STEP(a6), ST_RUN_STEP(a7);
#undef ST_RUN_STEP
    stats[0] = k0, stats[1] = _mm512_reduce_add_ps(s1), stats[2] = _mm512_reduce_add_ps(s2);
}

#undef DP_STEP
#undef LD
#undef BH
ST_TARGET_END

static const prims prims_cvt = {gather_cvt, sddmm_cvt, gather_stats_cvt};
static const prims prims_dp = {gather_dp, sddmm_dp, gather_stats_dp};
#endif

static const prims *prims_for(st_spbf16_kind kind) {
#ifdef ST_HAVE_X86_TARGETS
    if (st_isa_has_avx512_bf16()) return kind == ST_SPBF16_DP ? &prims_dp : &prims_cvt;
#endif
    (void)kind;
    return &prims_generic;
}

/* ---------------- plan ---------------- */

struct st_spbf16_plan {
    st_spconv_geom g;
    int64_t nnz;
    int64_t *row_ptr;  /* out_c + 1 */
    uint8_t *kh, *kw;  /* nnz, CSR order */
    int64_t *fwd_off;  /* nnz: ((i * H + kh) * W + kw) * N */
    int64_t *t_idx;    /* nnz: CSR position of each CSC entry */
    uint8_t *t_kh, *t_kw;
    int64_t *t_cls;    /* in_c * S * S + 1: CSC entries of input channel i and stride phase */
    int64_t *bwd_off;  /* nnz, CSC order */
    st_bf16 *t_w;      /* nnz: values in CSC order (refreshed per backward) */
    int max_row, max_col;
    int n_chunks, *chunk_start; /* weight-gradient chunks of output channels */
    int64_t max_chunk;
    int n_bands;
    float *partial;    /* n_bands x nnz */
    float *px_stats;   /* OH*OW x out_c x 3: each output pixel's run statistics (pixel-major, as sparse_conv.c) */
    int threads;
    size_t scratch_bytes;
    char *scratch;
};

void st_spbf16_plan_free(st_spbf16_plan *p) {
    if (!p) return;
    free(p->row_ptr), free(p->kh), free(p->kw), free(p->fwd_off), free(p->t_idx), free(p->t_kh), free(p->t_kw);
    free(p->t_cls), free(p->bwd_off), free(p->t_w), free(p->chunk_start), free(p->partial), free(p->px_stats), free(p->scratch);
    free(p);
}

st_status st_spbf16_plan_create(const st_spconv_geom *g, const int64_t *row_ptr, const int32_t *col,
                                st_spbf16_plan **out) {
    *out = NULL;
    const int K = g->kernel, KK = K * K, S = g->stride, SS = S * S;
    if (g->batch <= 0 || g->out_h <= 0 || g->out_w <= 0 || K <= 0 || S <= 0)
        return st_fail(ST_ERR_ARGUMENT, "bf16 sparse convolution: invalid geometry");
    st_spbf16_plan *p = st_calloc(1, sizeof *p, "bf16 sparse convolution plan");
    if (!p) return ST_ERR_NOMEM;
    p->g = *g;
    const int64_t nnz = row_ptr[g->out_c];
    const size_t n1 = (size_t)(nnz > 0 ? nnz : 1), ncls = (size_t)g->in_c * (size_t)SS + 1;
    p->nnz = nnz;
    p->row_ptr = st_malloc(sizeof(int64_t) * (size_t)(g->out_c + 1), "bf16 sparse convolution plan");
    p->kh = st_malloc(n1, "bf16 sparse convolution plan");
    p->kw = st_malloc(n1, "bf16 sparse convolution plan");
    p->fwd_off = st_malloc(sizeof(int64_t) * n1, "bf16 sparse convolution plan");
    p->t_idx = st_malloc(sizeof(int64_t) * n1, "bf16 sparse convolution plan");
    p->t_kh = st_malloc(n1, "bf16 sparse convolution plan");
    p->t_kw = st_malloc(n1, "bf16 sparse convolution plan");
    p->t_cls = st_calloc(ncls, sizeof(int64_t), "bf16 sparse convolution plan");
    p->bwd_off = st_malloc(sizeof(int64_t) * n1, "bf16 sparse convolution plan");
    p->t_w = st_malloc(sizeof(st_bf16) * n1, "bf16 sparse convolution plan");
    p->chunk_start = st_malloc(sizeof(int) * (size_t)(g->out_c + 1), "bf16 sparse convolution plan");
    int64_t *fill = st_malloc(sizeof(int64_t) * ncls, "bf16 sparse convolution plan");
    if (!p->row_ptr || !p->kh || !p->kw || !p->fwd_off || !p->t_idx || !p->t_kh || !p->t_kw || !p->t_cls ||
        !p->bwd_off || !p->t_w || !p->chunk_start || !fill) {
        free(fill);
        st_spbf16_plan_free(p);
        return ST_ERR_NOMEM;
    }
    memcpy(p->row_ptr, row_ptr, sizeof(int64_t) * (size_t)(g->out_c + 1));
    const int64_t N = g->batch, H = g->in_h, W = g->in_w, OH = g->out_h, OW = g->out_w;
    int *per_col = st_calloc((size_t)g->in_c + 1, sizeof(int), "bf16 sparse convolution plan");
    if (!per_col) {
        free(fill);
        st_spbf16_plan_free(p);
        return ST_ERR_NOMEM;
    }
    for (int o = 0; o < g->out_c; o++) {
        const int64_t len = row_ptr[o + 1] - row_ptr[o];
        if (len > p->max_row) p->max_row = (int)len;
        for (int64_t e = row_ptr[o]; e < row_ptr[o + 1]; e++) {
            const int c = col[e], i = c / KK;
            if (c < 0 || i >= g->in_c || (e > row_ptr[o] && col[e - 1] >= c)) {
                free(fill), free(per_col);
                st_spbf16_plan_free(p);
                return st_fail(ST_ERR_ARGUMENT, "bf16 sparse convolution: column indices of row %d are not "
                               "increasing in [0, %d)", o, g->in_c * KK);
            }
            const int kh = (c % KK) / K, kw = c % K;
            p->kh[e] = (uint8_t)kh, p->kw[e] = (uint8_t)kw;
            p->fwd_off[e] = ((i * H + kh) * W + kw) * N;
            p->t_cls[(int64_t)i * SS + (kh % S) * S + kw % S + 1]++;
            if (++per_col[i] > p->max_col) p->max_col = per_col[i];
        }
    }
    free(per_col);
    for (size_t k = 0; k + 1 < ncls; k++) p->t_cls[k + 1] += p->t_cls[k];
    memcpy(fill, p->t_cls, sizeof(int64_t) * ncls);
    for (int o = 0; o < g->out_c; o++)
        for (int64_t e = row_ptr[o]; e < row_ptr[o + 1]; e++) {
            const int i = col[e] / KK, kh = p->kh[e], kw = p->kw[e];
            const int64_t t = fill[(int64_t)i * SS + (kh % S) * S + kw % S]++;
            p->t_idx[t] = e;
            p->t_kh[t] = (uint8_t)kh, p->t_kw[t] = (uint8_t)kw;
            p->bwd_off[t] = ((int64_t)o * OH * OW - (int64_t)(kh / S) * OW - kw / S) * N;
        }
    free(fill);
    for (int o = 0; o < g->out_c;) {
        const int o0 = o;
        do o++;
        while (o < g->out_c && row_ptr[o + 1] - row_ptr[o0] <= CHUNK_ENTRIES);
        p->chunk_start[p->n_chunks++] = o0;
        if (row_ptr[o] - row_ptr[o0] > p->max_chunk) p->max_chunk = row_ptr[o] - row_ptr[o0];
    }
    p->chunk_start[p->n_chunks] = g->out_c;
    p->n_bands = g->out_h < BANDS ? g->out_h : BANDS;
    p->partial = st_malloc(sizeof(float) * (size_t)p->n_bands * n1, "bf16 sparse convolution plan");
    p->px_stats = st_malloc(sizeof(float) * 3 * (size_t)g->out_c * (size_t)OH * (size_t)OW,
                            "bf16 sparse convolution plan");
    p->threads = omp_get_max_threads();
    const int longest = p->max_row > p->max_col ? p->max_row : p->max_col;
    const size_t per_thread = (size_t)longest * (sizeof(st_bf16) + sizeof(int64_t) + sizeof(int32_t)) +
                              (size_t)p->max_chunk * LANES * sizeof(float) + 128;
    p->scratch_bytes = (per_thread + 63) / 64 * 64;
    p->scratch = st_malloc(p->scratch_bytes * (size_t)p->threads + 64, "bf16 sparse convolution scratch");
    if (!p->partial || !p->px_stats || !p->scratch) {
        st_spbf16_plan_free(p);
        return ST_ERR_NOMEM;
    }
    *out = p;
    return ST_OK;
}

typedef struct thread_scratch {
    float *acc;
    int64_t *off;
    int32_t *slot;
    st_bf16 *w;
} thread_scratch;

static thread_scratch scratch_of(const st_spbf16_plan *p, int tid) {
    const int longest = p->max_row > p->max_col ? p->max_row : p->max_col;
    char *base = p->scratch + p->scratch_bytes * (size_t)tid;
    base = (char *)(((uintptr_t)base + 63) & ~(uintptr_t)63);
    thread_scratch s;
    s.acc = (float *)base;
    s.off = (int64_t *)(base + (size_t)p->max_chunk * LANES * sizeof(float));
    s.slot = (int32_t *)(s.off + longest);
    s.w = (st_bf16 *)(s.slot + longest);
    return s;
}

static int team(const st_spbf16_plan *p) {
    if (omp_in_parallel()) return 1;
    const int t = omp_get_max_threads();
    return t < p->threads ? t : p->threads;
}

static int channel_blocks(int pixels, int channels, int threads) {
    int blocks = (4 * threads + pixels - 1) / pixels;
    if (blocks < 1) blocks = 1;
    if (blocks > channels) blocks = channels > 0 ? channels : 1;
    return blocks;
}

/* ---------------- passes ---------------- */

static void forward(st_spbf16_plan *p, st_spbf16_kind kind, const st_bf16 *x, const st_bf16 *w, const float *bias,
                    float *y, double *stats) {
    const prims *pr = prims_for(kind);
    const st_spconv_geom *g = &p->g;
    const int N = g->batch, H = g->in_h, W = g->in_w, OW = g->out_w, K = g->kernel, S = g->stride, P = g->pad;
    const int nt = team(p), pixels = g->out_h * OW, blocks = channel_blocks(pixels, g->out_c, nt);
    const int64_t plane = (int64_t)pixels * N;
#pragma omp parallel num_threads(nt)
    {
        thread_scratch ts = scratch_of(p, omp_get_thread_num());
#pragma omp for schedule(static)
        for (int item = 0; item < pixels * blocks; item++) {
            const int px = item / blocks, blk = item % blocks, oh = px / OW, ow = px % OW;
            const int o0 = (int)((int64_t)g->out_c * blk / blocks), o1 = (int)((int64_t)g->out_c * (blk + 1) / blocks);
            const int ih0 = oh * S - P, iw0 = ow * S - P;
            const int inside = ih0 >= 0 && ih0 + K <= H && iw0 >= 0 && iw0 + K <= W;
            const int64_t base = ((int64_t)ih0 * W + iw0) * N;
            float *yp = y + (int64_t)px * N;
            for (int o = o0; o < o1; o++) {
                const int64_t e0 = p->row_ptr[o], cnt = p->row_ptr[o + 1] - e0;
                const float b = bias ? bias[o] : 0.0f;
                float *ps = stats ? p->px_stats + ((size_t)px * (size_t)g->out_c + (size_t)o) * 3 : NULL;
                if (inside) {
                    if (ps) pr->gather_stats(N, (int)cnt, w + e0, p->fwd_off + e0, x + base, b, yp + o * plane, ps);
                    else pr->gather(N, (int)cnt, w + e0, p->fwd_off + e0, x + base, b, 0, yp + o * plane);
                    continue;
                }
                int m = 0;
                for (int64_t e = e0; e < e0 + cnt; e++) {
                    const int ih = ih0 + p->kh[e], iw = iw0 + p->kw[e];
                    if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                    ts.w[m] = w[e];
                    ts.off[m++] = base + p->fwd_off[e];
                }
                if (ps) pr->gather_stats(N, m, ts.w, ts.off, x, b, yp + o * plane, ps);
                else pr->gather(N, m, ts.w, ts.off, x, b, 0, yp + o * plane);
            }
        }
        if (stats) { /* per channel, in pixel order, shifted by the channel's first value (as sparse_conv.c) */
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

void st_spbf16_forward(st_spbf16_plan *p, st_spbf16_kind kind, const st_bf16 *x, const st_bf16 *w, const float *bias,
                       float *y) {
    forward(p, kind, x, w, bias, y, NULL);
}

void st_spbf16_forward_stats(st_spbf16_plan *p, st_spbf16_kind kind, const st_bf16 *x, const st_bf16 *w,
                             const float *bias, float *y, double *stats) {
    forward(p, kind, x, w, bias, y, stats);
}

void st_spbf16_backward_data(st_spbf16_plan *p, st_spbf16_kind kind, const st_bf16 *dy, const st_bf16 *w, float *dx,
                             int accumulate) {
    const prims *pr = prims_for(kind);
    for (int64_t t = 0; t < p->nnz; t++) p->t_w[t] = w[p->t_idx[t]];
    const st_spconv_geom *g = &p->g;
    const int N = g->batch, W = g->in_w, OH = g->out_h, OW = g->out_w, K = g->kernel, S = g->stride, P = g->pad,
              SS = S * S;
    const int nt = team(p), pixels = g->in_h * W, blocks = channel_blocks(pixels, g->in_c, nt);
    const int64_t plane = (int64_t)pixels * N;
#pragma omp parallel num_threads(nt)
    {
        thread_scratch ts = scratch_of(p, omp_get_thread_num());
#pragma omp for schedule(static)
        for (int item = 0; item < pixels * blocks; item++) {
            const int px = item / blocks, blk = item % blocks, ih = px / W, iw = px % W;
            const int i0 = (int)((int64_t)g->in_c * blk / blocks), i1 = (int)((int64_t)g->in_c * (blk + 1) / blocks);
            const int ph = (ih + P) % S, pw = (iw + P) % S, phase = ph * S + pw;
            const int oh0 = (ih + P) / S, ow0 = (iw + P) / S;
            const int dh_max = ph < K ? (K - 1 - ph) / S : 0, dw_max = pw < K ? (K - 1 - pw) / S : 0;
            const int inside = oh0 - dh_max >= 0 && oh0 < OH && ow0 - dw_max >= 0 && ow0 < OW;
            const int64_t base = ((int64_t)oh0 * OW + ow0) * N;
            float *dxp = dx + (int64_t)px * N;
            for (int i = i0; i < i1; i++) {
                const int64_t t0 = p->t_cls[(int64_t)i * SS + phase], cnt = p->t_cls[(int64_t)i * SS + phase + 1] - t0;
                if (inside) {
                    pr->gather(N, (int)cnt, p->t_w + t0, p->bwd_off + t0, dy + base, 0.0f, accumulate, dxp + i * plane);
                    continue;
                }
                int m = 0;
                for (int64_t t = t0; t < t0 + cnt; t++) {
                    const int oh = oh0 - p->t_kh[t] / S, ow = ow0 - p->t_kw[t] / S;
                    if (oh < 0 || oh >= OH || ow < 0 || ow >= OW) continue;
                    ts.w[m] = p->t_w[t];
                    ts.off[m++] = base + p->bwd_off[t];
                }
                pr->gather(N, m, ts.w, ts.off, dy, 0.0f, accumulate, dxp + i * plane);
            }
        }
    }
}

void st_spbf16_backward_weight(st_spbf16_plan *p, st_spbf16_kind kind, const st_bf16 *x, const st_bf16 *dy, float *dw,
                               float *dbias) {
    const prims *pr = prims_for(kind);
    const st_spconv_geom *g = &p->g;
    const int N = g->batch, H = g->in_h, W = g->in_w, OH = g->out_h, OW = g->out_w, K = g->kernel, S = g->stride,
              P = g->pad;
    const int64_t plane = (int64_t)OH * OW * N;
    if (dbias) {
#pragma omp parallel for schedule(static) num_threads(team(p))
        for (int o = 0; o < g->out_c; o++) {
            double s = 0.0;
            for (int64_t j = 0; j < plane; j++) s += st_bf16_to_float(dy[o * plane + j]);
            dbias[o] += (float)s;
        }
    }
    if (!dw || p->nnz == 0) return;
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
            memset(ts.acc, 0, sizeof(float) * (size_t)ccnt * LANES);
            const int oh_begin = (int)((int64_t)OH * band / bands), oh_end = (int)((int64_t)OH * (band + 1) / bands);
            for (int oh = oh_begin; oh < oh_end; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    const int ih0 = oh * S - P, iw0 = ow * S - P;
                    const int inside = ih0 >= 0 && ih0 + K <= H && iw0 >= 0 && iw0 + K <= W;
                    const int64_t base = ((int64_t)ih0 * W + iw0) * N, px = ((int64_t)oh * OW + ow) * N;
                    for (int o = o0; o < o1; o++) {
                        const int64_t e0 = p->row_ptr[o], cnt = p->row_ptr[o + 1] - e0;
                        if (cnt == 0) continue;
                        const st_bf16 *d = dy + o * plane + px;
                        float *acc = ts.acc + (size_t)(e0 - c0) * LANES;
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
                const float *a = ts.acc + (size_t)e * LANES;
                float sum = 0.0f;
                for (int l = 0; l < LANES; l++) sum += a[l];
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
