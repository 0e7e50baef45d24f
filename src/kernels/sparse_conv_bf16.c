/* bf16 direct sparse convolution (see sparse_conv_bf16.h): the passes'
 * loops over pixels (the same work partition as sparse_conv.c, on the plan
 * it builds: sparse_conv_plan.h; the weight-gradient walk is the fp32 one,
 * sparse_conv_weight_grad.inc) and the primitives: scalar C and AVX512_BF16
 * in two designs. */
#include "kernels/sparse_conv_bf16.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "kernels/isa.h"
#include "kernels/isa_target.h"
#include "kernels/sparse_conv_plan.h"
#include "kernels/sparse_conv_prims.h"

typedef struct prims {
    /* out[j] = (accumulate ? out[j] : bias) + sum_e w[e] * src[off[e] + j], j < n */
    void (*gather)(int n, int cnt, const st_bf16 *w, const int64_t *off, const st_bf16 *src, float bias,
                   int accumulate, float *out);
    /* acc[slot(e) * 16 + lane] += sum over j of dy[j] * src[off[e] + j], j < n, lanes any fixed assignment */
    void (*sddmm)(int n, int cnt, const int64_t *off, const int32_t *slot, const st_bf16 *dy, const st_bf16 *src,
                  float *acc);
    /* sddmm for npx >= 1 pixels (pixel q: dy + q * dy_step, src + q * src_step) with the bits of npx calls
     * in pixel order, each accumulator loaded and stored once per block of pixels; NULL: none (the
     * weight-gradient walk then calls sddmm pixel by pixel) */
    void (*sddmm_px)(int n, int npx, int cnt, const int64_t *off, const int32_t *slot, const st_bf16 *dy,
                     int64_t dy_step, const st_bf16 *src, int64_t src_step, float *acc);
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
        float *a = acc + (size_t)(slot ? slot[e] : e) * ST_SPCONV_LANES;
        for (int j = j0; j < n; j++) a[j % ST_SPCONV_LANES] += st_bf16_to_float(dy[j]) * st_bf16_to_float(s[j]);
    }
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
    st_spconv_prims_generic.run_stats(n, out, stats);
}

static const prims prims_generic = {gather_generic, sddmm_generic, NULL, gather_stats_generic};

/* ---------------- AVX512_BF16 ---------------- */
#ifdef ST_HAVE_X86_TARGETS
#include <immintrin.h>
ST_TARGET_AVX512_BF16_BEGIN

#define LD(p) _mm512_loadu_si512((const void *)(p))
#define BH(v) ((__m512bh)(v))

/* 32 floats held in two vectors u, v in a kernel's lane order, to and from
 * memory order through permutations of the 32 lanes of (u, v): out[0..16)
 * takes the lanes `first`, out[16..32) the lanes `second` (store); u takes
 * the lanes `first` of (in[0..16), in[16..32)), v the lanes `second` (load). */
static inline void store_permuted(float *out, __m512 u, __m512 v, __m512i first, __m512i second) {
    _mm512_storeu_ps(out, _mm512_permutex2var_ps(u, first, v));
    _mm512_storeu_ps(out + 16, _mm512_permutex2var_ps(u, second, v));
}
static inline void load_permuted(const float *in, __m512 *u, __m512 *v, __m512i first, __m512i second) {
    const __m512 a = _mm512_loadu_ps(in), b = _mm512_loadu_ps(in + 16);
    *u = _mm512_permutex2var_ps(a, first, b), *v = _mm512_permutex2var_ps(a, second, b);
}

/* --- "cvt": 32 bf16 -> the floats of the even and the odd positions --- */
static inline __m512 even_f(__m512i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)); }
static inline __m512 odd_f(__m512i v) {
    return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xFFFF0000u)));
}
/* even/odd lanes <-> 32 floats in order */
static inline void eo_store(float *out, __m512 ev, __m512 od) {
    store_permuted(out, ev, od, _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0),
                   _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8));
}
static inline void eo_load(const float *in, __m512 *ev, __m512 *od) {
    load_permuted(in, ev, od, _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0),
                  _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1));
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
    store_permuted(out, lo, hi, _mm512_set_epi32(23, 22, 21, 20, 7, 6, 5, 4, 19, 18, 17, 16, 3, 2, 1, 0),
                   _mm512_set_epi32(31, 30, 29, 28, 15, 14, 13, 12, 27, 26, 25, 24, 11, 10, 9, 8));
}
static inline void lh_load(const float *in, __m512 *lo, __m512 *hi) {
    load_permuted(in, lo, hi, _mm512_set_epi32(27, 26, 25, 24, 19, 18, 17, 16, 11, 10, 9, 8, 3, 2, 1, 0),
                  _mm512_set_epi32(31, 30, 29, 28, 23, 22, 21, 20, 15, 14, 13, 12, 7, 6, 5, 4));
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
            float *a = acc + (size_t)(slot ? slot[e] : e) * ST_SPCONV_LANES;
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
            float *a = acc + (size_t)(slot ? slot[e] : e) * ST_SPCONV_LANES;
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
            float *a = acc + (size_t)(slot ? slot[e] : e) * ST_SPCONV_LANES;
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
            float *a = acc + (size_t)(slot ? slot[e] : e) * ST_SPCONV_LANES;
            _mm512_storeu_ps(a, _mm512_dpbf16_ps(_mm512_loadu_ps(a), BH(d), BH(LD(src + off[e] + j))));
        }
    }
    if (j < n) sddmm_tail(j, n, cnt, off, slot, dy, src, acc);
}

/* One pixel's 4 dy vectors (pairs of images) and the sum sddmm_dp adds to a
 * kept weight's accumulator for it, in its order. */
#define DP_DY4(D, p) const __m512i D##0 = LD(p), D##1 = LD((p) + 32), D##2 = LD((p) + 64), D##3 = LD((p) + 96)
#define DP_DOT4(D, s)                                                                                                  \
    _mm512_add_ps(_mm512_dpbf16_ps(_mm512_dpbf16_ps(_mm512_setzero_ps(), BH(D##0), BH(LD(s))), BH(D##2),             \
                                   BH(LD((s) + 64))),                                                                  \
                  _mm512_dpbf16_ps(_mm512_dpbf16_ps(_mm512_setzero_ps(), BH(D##1), BH(LD((s) + 32))), BH(D##3),      \
                                   BH(LD((s) + 96))))

/* sddmm_dp over npx pixels: at n == 128 blocks of three, then two pixels
 * (12 or 8 dy vectors in registers) load and store each accumulator once,
 * adding the pixels' sums in pixel order as the per-pixel calls do. */
static void sddmm_px_dp(int n, int npx, int cnt, const int64_t *off, const int32_t *slot, const st_bf16 *dy,
                        int64_t dy_step, const st_bf16 *src, int64_t src_step, float *acc) {
    int q = 0;
    if (n == 128) {
        for (; q + 3 <= npx; q += 3) {
            const st_bf16 *s0 = src + q * src_step, *y0 = dy + q * dy_step;
            DP_DY4(a, y0);
            DP_DY4(b, y0 + dy_step);
            DP_DY4(c, y0 + 2 * dy_step);
            for (int e = 0; e < cnt; e++) {
                const st_bf16 *t = s0 + off[e];
                float *ac = acc + (size_t)(slot ? slot[e] : e) * ST_SPCONV_LANES;
                __m512 v = _mm512_add_ps(_mm512_loadu_ps(ac), DP_DOT4(a, t));
                v = _mm512_add_ps(v, DP_DOT4(b, t + src_step));
                _mm512_storeu_ps(ac, _mm512_add_ps(v, DP_DOT4(c, t + 2 * src_step)));
            }
        }
        for (; q + 2 <= npx; q += 2) {
            const st_bf16 *s0 = src + q * src_step, *y0 = dy + q * dy_step;
            DP_DY4(a, y0);
            DP_DY4(b, y0 + dy_step);
            for (int e = 0; e < cnt; e++) {
                const st_bf16 *t = s0 + off[e];
                float *ac = acc + (size_t)(slot ? slot[e] : e) * ST_SPCONV_LANES;
                const __m512 v = _mm512_add_ps(_mm512_loadu_ps(ac), DP_DOT4(a, t));
                _mm512_storeu_ps(ac, _mm512_add_ps(v, DP_DOT4(b, t + src_step)));
            }
        }
    }
    for (; q < npx; q++) sddmm_dp(n, cnt, off, slot, dy + q * dy_step, src + q * src_step, acc);
}
#undef DP_DY4
#undef DP_DOT4

/* The run statistics of the fp32 kernels' AVX-512 table (sparse_conv_x86.c),
 * on the stored run. */
static void gather_stats_cvt(int n, int cnt, const st_bf16 *w, const int64_t *off, const st_bf16 *src, float bias,
                             float *out, float *stats) {
    gather_cvt(n, cnt, w, off, src, bias, 0, out);
    st_spconv_prims_avx512.run_stats(n, out, stats);
}

/* The 128-wide dp gather with the statistics taken from its accumulators
 * (a reload right after the stores would stall on store-to-load forwarding):
 * lane 0 of the first accumulator is out[0]; the registers are summed as
 * they lie (the dp lane order), the operations of sparse_conv_x86.c's
 * stats8. */
static void gather_stats_dp(int n, int cnt, const st_bf16 *w, const int64_t *off, const st_bf16 *src, float bias,
                            float *out, float *stats) {
    if (n != 128) {
        gather_dp(n, cnt, w, off, src, bias, 0, out);
        st_spconv_prims_avx512.run_stats(n, out, stats);
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

static const prims prims_cvt = {gather_cvt, sddmm_cvt, NULL, gather_stats_cvt};
static const prims prims_dp = {gather_dp, sddmm_dp, sddmm_px_dp, gather_stats_dp};
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
    st_spconv_plan *plan; /* structure, chunks, statistics buffer, scratch (sparse_conv_plan.h) */
    st_bf16 *t_w;         /* nnz: values in CSC order (refreshed per backward) */
};

void st_spbf16_plan_set_px_block(st_spbf16_plan *p, int pixels) { st_spconv_plan_set_px_block(p->plan, pixels); }

void st_spbf16_plan_free(st_spbf16_plan *p) {
    if (!p) return;
    st_spconv_plan_free(p->plan);
    free(p->t_w);
    free(p);
}

st_status st_spbf16_plan_create(const st_spconv_geom *g, const int64_t *row_ptr, const int32_t *col,
                                st_spbf16_plan **out) {
    *out = NULL;
    st_spbf16_plan *p = st_calloc(1, sizeof *p, "bf16 sparse convolution plan");
    if (!p) return ST_ERR_NOMEM;
    const st_status s = st_spconv_plan_build(g, row_ptr, col, "bf16 sparse convolution", &p->plan);
    if (s != ST_OK) {
        free(p);
        return s;
    }
    p->t_w = st_malloc(sizeof(st_bf16) * (size_t)(p->plan->nnz > 0 ? p->plan->nnz : 1), "bf16 sparse convolution plan");
    if (!p->t_w) {
        st_spbf16_plan_free(p);
        return ST_ERR_NOMEM;
    }
    *out = p;
    return ST_OK;
}

/* ---------------- passes ---------------- */

static void forward(st_spbf16_plan *p, st_spbf16_kind kind, const st_bf16 *x, const st_bf16 *w, const float *bias,
                    float *y, double *stats) {
    const prims *pr = prims_for(kind);
    const st_spconv_plan *sp = p->plan;
    const st_spconv_geom *g = &sp->g;
    const int N = g->batch, H = g->in_h, W = g->in_w, OW = g->out_w, K = g->kernel, S = g->stride, P = g->pad;
    const int nt = st_spconv_team(sp), pixels = g->out_h * OW, blocks = st_spconv_channel_blocks(pixels, g->out_c, nt);
    const int64_t plane = (int64_t)pixels * N;
#pragma omp parallel num_threads(nt)
    {
        const st_spconv_scratch ts = st_spconv_scratch_of(sp, omp_get_thread_num());
        st_bf16 *tw = (st_bf16 *)ts.w;
#pragma omp for schedule(static)
        for (int item = 0; item < pixels * blocks; item++) {
            const int px = item / blocks, blk = item % blocks, oh = px / OW, ow = px % OW;
            const int o0 = (int)((int64_t)g->out_c * blk / blocks), o1 = (int)((int64_t)g->out_c * (blk + 1) / blocks);
            const int ih0 = oh * S - P, iw0 = ow * S - P;
            const int inside = ih0 >= 0 && ih0 + K <= H && iw0 >= 0 && iw0 + K <= W;
            const int64_t base = ((int64_t)ih0 * W + iw0) * N;
            float *yp = y + (int64_t)px * N;
            for (int o = o0; o < o1; o++) {
                const int64_t e0 = sp->row_ptr[o], cnt = sp->row_ptr[o + 1] - e0;
                const float b = bias ? bias[o] : 0.0f;
                float *ps = stats ? sp->px_stats + ((size_t)px * (size_t)g->out_c + (size_t)o) * 3 : NULL;
                if (inside) {
                    if (ps) pr->gather_stats(N, (int)cnt, w + e0, sp->fwd_off + e0, x + base, b, yp + o * plane, ps);
                    else pr->gather(N, (int)cnt, w + e0, sp->fwd_off + e0, x + base, b, 0, yp + o * plane);
                    continue;
                }
                int m = 0;
                for (int64_t e = e0; e < e0 + cnt; e++) {
                    const int ih = ih0 + sp->kh[e], iw = iw0 + sp->kw[e];
                    if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                    tw[m] = w[e];
                    ts.off[m++] = base + sp->fwd_off[e];
                }
                if (ps) pr->gather_stats(N, m, tw, ts.off, x, b, yp + o * plane, ps);
                else pr->gather(N, m, tw, ts.off, x, b, 0, yp + o * plane);
            }
        }
        if (stats) st_spconv_combine_px_stats(sp, stats);
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
    const st_spconv_plan *sp = p->plan;
    st_bf16 *t_w = p->t_w;
    for (int64_t t = 0; t < sp->nnz; t++) t_w[t] = w[sp->t_idx[t]];
    const st_spconv_geom *g = &sp->g;
    const int N = g->batch, W = g->in_w, OH = g->out_h, OW = g->out_w, K = g->kernel, S = g->stride, P = g->pad,
              SS = S * S;
    const int nt = st_spconv_team(sp), pixels = g->in_h * W, blocks = st_spconv_channel_blocks(pixels, g->in_c, nt);
    const int64_t plane = (int64_t)pixels * N;
#pragma omp parallel num_threads(nt)
    {
        const st_spconv_scratch ts = st_spconv_scratch_of(sp, omp_get_thread_num());
        st_bf16 *tw = (st_bf16 *)ts.w;
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
                const int64_t t0 = sp->t_cls[(int64_t)i * SS + phase], cnt = sp->t_cls[(int64_t)i * SS + phase + 1] - t0;
                if (inside) {
                    pr->gather(N, (int)cnt, t_w + t0, sp->bwd_off + t0, dy + base, 0.0f, accumulate, dxp + i * plane);
                    continue;
                }
                int m = 0;
                for (int64_t t = t0; t < t0 + cnt; t++) {
                    const int oh = oh0 - sp->t_kh[t] / S, ow = ow0 - sp->t_kw[t] / S;
                    if (oh < 0 || oh >= OH || ow < 0 || ow >= OW) continue;
                    tw[m] = t_w[t];
                    ts.off[m++] = base + sp->bwd_off[t];
                }
                pr->gather(N, m, tw, ts.off, dy, 0.0f, accumulate, dxp + i * plane);
            }
        }
    }
}

#define WG_NAME backward_weight
#define WG_ELEM st_bf16
#define WG_TO_FLOAT(v) st_bf16_to_float(v)
#include "kernels/sparse_conv_weight_grad.inc"
#undef WG_NAME
#undef WG_ELEM
#undef WG_TO_FLOAT

void st_spbf16_backward_weight(st_spbf16_plan *p, st_spbf16_kind kind, const st_bf16 *x, const st_bf16 *dy, float *dw,
                               float *dbias) {
    backward_weight(p->plan, prims_for(kind)->sddmm, prims_for(kind)->sddmm_px, x, dy, dw, dbias);
}
