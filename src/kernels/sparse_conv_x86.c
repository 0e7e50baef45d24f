/* AVX-512 and AVX2 primitives of the direct sparse convolution (see
 * sparse_conv_prims.h). The hot case is a run of 128 floats (batch 128):
 * eight 16-float accumulators stay in registers while the kept weights
 * stream past (gather_px: two or three pixels' worth, 16 or 24
 * accumulators); shorter runs fall back to one-vector chunks and a masked or
 * scalar tail. */
#include "kernels/sparse_conv_prims.h"
#include "kernels/isa.h"
#include "kernels/isa_target.h"

/* ---------------- tunings ---------------- */

/* Per-CPU choices of gather_px_avx512 (measured with bench/kernel_ab.c
 * walk and passes; docs/PERFORMANCE.md, "Kernels for wide layers" and its
 * "Intel Xeon" part):
 *   pf_min_row  rows of fewer kept weights do not prefetch their inputs
 *   pf_out      the output lines are prefetched for writing (prefetchw),
 *               two per kept weight over a block's first kept weights,
 *               unless the gather accumulates (it loads them first then)
 *   blocks      plans start with blocks of the summed channels
 *               (st_spconv_plan_set_block; for every ISA)
 * Zen 5: the input prefetch paid 5-10 % on rows of 75-150 kept weights and
 * cost 7 % on rows of ~20. Intel Xeon: prefetching the inputs of every row
 * and the output lines paid on rows of 22-150 (4-7 % on the interior walk):
 * its L3, which the output lines come from (write-allocate) and so do the
 * input columns new to each pixel group, is 1.3-3x slower than Zen's, and
 * more of its latency has to be hidden. Blocks of input channels in the
 * forward walk kept a 3-pixel group's neighbourhood in the Xeon's 2 MiB L2
 * and gave 1.5-2x at 256 channels (kernel_ab walk, argument 10); on a Zen 4
 * guest (1 MiB L2; its passes run near what L2 feeds at every width) the
 * production walk measured within +-4 % at 128-256 channels and -13 % at
 * 512 (kernel_ab passes ... 0,42). Zen 4 (32 KiB L1d, 1 MiB L2): the
 * input prefetch of every row paid 5-20 % at 16-32 channels (rows of
 * 22-25) and 2-4 % at 64-128 channels, the output prefetch 4-8 % more
 * (kernel_ab passes ... zen,intel); channel blocks did not pay (above). */
typedef struct gather_tuning {
    int pf_min_row;
    int pf_out;
    int blocks;
} gather_tuning;

static const gather_tuning gather_tunings[ST_SPCONV_TUNINGS] = {
    [ST_SPCONV_TUNING_ZEN] = {32, 0, 0},
    [ST_SPCONV_TUNING_INTEL] = {0, 1, 1},
    [ST_SPCONV_TUNING_ZEN4] = {0, 1, 0},
};

int st_spconv_tuning_blocks_channels(st_spconv_tuning t) {
    return t >= 0 && t < ST_SPCONV_TUNINGS ? gather_tunings[t].blocks : 0;
}
static const char *const tuning_names[ST_SPCONV_TUNINGS] = {
    [ST_SPCONV_TUNING_ZEN] = "zen",
    [ST_SPCONV_TUNING_INTEL] = "intel",
    [ST_SPCONV_TUNING_ZEN4] = "zen4",
};

/* -1: not chosen yet (then from the CPU's class on first use) */
static int tuning_chosen = -1;

st_spconv_tuning st_spconv_tuning_current(void) {
    int t = __atomic_load_n(&tuning_chosen, __ATOMIC_ACQUIRE);
    if (t >= 0) return (st_spconv_tuning)t;
    const st_cpu_class c = st_isa_cpu_class();
    t = c == ST_CPU_CLASS_INTEL ? ST_SPCONV_TUNING_INTEL : c == ST_CPU_CLASS_ZEN4 ? ST_SPCONV_TUNING_ZEN4 : ST_SPCONV_TUNING_ZEN;
    __atomic_store_n(&tuning_chosen, t, __ATOMIC_RELEASE);
    return (st_spconv_tuning)t;
}

void st_spconv_tuning_force(st_spconv_tuning t) {
    if (t >= 0 && t < ST_SPCONV_TUNINGS) __atomic_store_n(&tuning_chosen, (int)t, __ATOMIC_RELEASE);
}

const char *st_spconv_tuning_name(st_spconv_tuning t) {
    return t >= 0 && t < ST_SPCONV_TUNINGS ? tuning_names[t] : "unknown";
}

#ifdef ST_SPCONV_HAVE_X86
#include <immintrin.h>

/* Keeps a run's address in a register of its own, so that the FMAs' loads
 * from it are base + displacement: the compiler would otherwise fold the
 * offset in as base + index * 4, which Intel cores split into two uops in
 * every load-FMA (un-lamination: 4-8 % of the gather, kernel_ab walk
 * "flat"). AMD cores fuse both forms; the extra adds (1-3 per 8-24 FMAs)
 * take integer ports the gather leaves idle. */
#define ST_IN_REG(p) __asm__("" : "+r"(p))

/* ---------------- AVX-512 ---------------- */
ST_TARGET_AVX512_BEGIN

static void gather_avx512(int n, int cnt, const float *w, const int64_t *off, const float *src, float bias,
                          int accumulate, float *out) {
    int j = 0;
    for (; j + 128 <= n; j += 128) {
        __m512 a0, a1, a2, a3, a4, a5, a6, a7;
        if (accumulate) {
            a0 = _mm512_loadu_ps(out + j), a1 = _mm512_loadu_ps(out + j + 16);
            a2 = _mm512_loadu_ps(out + j + 32), a3 = _mm512_loadu_ps(out + j + 48);
            a4 = _mm512_loadu_ps(out + j + 64), a5 = _mm512_loadu_ps(out + j + 80);
            a6 = _mm512_loadu_ps(out + j + 96), a7 = _mm512_loadu_ps(out + j + 112);
        } else {
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = _mm512_set1_ps(bias);
        }
        for (int e = 0; e < cnt; e++) {
            const __m512 wv = _mm512_set1_ps(w[e]);
            const float *s = src + off[e] + j;
            ST_IN_REG(s);
            a0 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s), a0);
            a1 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 16), a1);
            a2 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 32), a2);
            a3 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 48), a3);
            a4 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 64), a4);
            a5 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 80), a5);
            a6 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 96), a6);
            a7 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 112), a7);
        }
        _mm512_storeu_ps(out + j, a0), _mm512_storeu_ps(out + j + 16, a1);
        _mm512_storeu_ps(out + j + 32, a2), _mm512_storeu_ps(out + j + 48, a3);
        _mm512_storeu_ps(out + j + 64, a4), _mm512_storeu_ps(out + j + 80, a5);
        _mm512_storeu_ps(out + j + 96, a6), _mm512_storeu_ps(out + j + 112, a7);
    }
    /* runs of 64 and 32 (batches of 64, 96, 160, ... or batch tiles): 4 and
     * 2 accumulators per kept weight, in the same order as above */
    for (; j + 64 <= n; j += 64) {
        __m512 a0, a1, a2, a3;
        if (accumulate) {
            a0 = _mm512_loadu_ps(out + j), a1 = _mm512_loadu_ps(out + j + 16);
            a2 = _mm512_loadu_ps(out + j + 32), a3 = _mm512_loadu_ps(out + j + 48);
        } else {
            a0 = a1 = a2 = a3 = _mm512_set1_ps(bias);
        }
        for (int e = 0; e < cnt; e++) {
            const __m512 wv = _mm512_set1_ps(w[e]);
            const float *s = src + off[e] + j;
            ST_IN_REG(s);
            a0 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s), a0);
            a1 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 16), a1);
            a2 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 32), a2);
            a3 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 48), a3);
        }
        _mm512_storeu_ps(out + j, a0), _mm512_storeu_ps(out + j + 16, a1);
        _mm512_storeu_ps(out + j + 32, a2), _mm512_storeu_ps(out + j + 48, a3);
    }
    for (; j + 32 <= n; j += 32) {
        __m512 a0, a1;
        if (accumulate) a0 = _mm512_loadu_ps(out + j), a1 = _mm512_loadu_ps(out + j + 16);
        else a0 = a1 = _mm512_set1_ps(bias);
        for (int e = 0; e < cnt; e++) {
            const __m512 wv = _mm512_set1_ps(w[e]);
            const float *s = src + off[e] + j;
            ST_IN_REG(s);
            a0 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s), a0);
            a1 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 16), a1);
        }
        _mm512_storeu_ps(out + j, a0), _mm512_storeu_ps(out + j + 16, a1);
    }
    for (; j < n; j += 16) {
        const __mmask16 k = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1u);
        __m512 a = accumulate ? _mm512_maskz_loadu_ps(k, out + j) : _mm512_set1_ps(bias);
        __m512 b = _mm512_setzero_ps();
        int e = 0;
        for (; e + 2 <= cnt; e += 2) {
            a = _mm512_fmadd_ps(_mm512_set1_ps(w[e]), _mm512_maskz_loadu_ps(k, src + off[e] + j), a);
            b = _mm512_fmadd_ps(_mm512_set1_ps(w[e + 1]), _mm512_maskz_loadu_ps(k, src + off[e + 1] + j), b);
        }
        if (e < cnt) a = _mm512_fmadd_ps(_mm512_set1_ps(w[e]), _mm512_maskz_loadu_ps(k, src + off[e] + j), a);
        _mm512_mask_storeu_ps(out + j, k, _mm512_add_ps(a, b));
    }
}

static void sddmm_avx512(int n, int cnt, const int64_t *off, const int32_t *slot, const float *dy, const float *src,
                         float *acc) {
    int j = 0;
    for (; j + 128 <= n; j += 128) {
        const __m512 d0 = _mm512_loadu_ps(dy + j), d1 = _mm512_loadu_ps(dy + j + 16);
        const __m512 d2 = _mm512_loadu_ps(dy + j + 32), d3 = _mm512_loadu_ps(dy + j + 48);
        const __m512 d4 = _mm512_loadu_ps(dy + j + 64), d5 = _mm512_loadu_ps(dy + j + 80);
        const __m512 d6 = _mm512_loadu_ps(dy + j + 96), d7 = _mm512_loadu_ps(dy + j + 112);
        for (int e = 0; e < cnt; e++) {
            const float *s = src + off[e] + j;
            ST_IN_REG(s);
            float *a = acc + (size_t)(slot ? slot[e] : e) * ST_SPCONV_LANES;
            __m512 t0 = _mm512_mul_ps(d0, _mm512_loadu_ps(s));
            __m512 t1 = _mm512_mul_ps(d1, _mm512_loadu_ps(s + 16));
            t0 = _mm512_fmadd_ps(d2, _mm512_loadu_ps(s + 32), t0);
            t1 = _mm512_fmadd_ps(d3, _mm512_loadu_ps(s + 48), t1);
            t0 = _mm512_fmadd_ps(d4, _mm512_loadu_ps(s + 64), t0);
            t1 = _mm512_fmadd_ps(d5, _mm512_loadu_ps(s + 80), t1);
            t0 = _mm512_fmadd_ps(d6, _mm512_loadu_ps(s + 96), t0);
            t1 = _mm512_fmadd_ps(d7, _mm512_loadu_ps(s + 112), t1);
            _mm512_storeu_ps(a, _mm512_add_ps(_mm512_loadu_ps(a), _mm512_add_ps(t0, t1)));
        }
    }
    for (; j < n; j += 16) {
        const __mmask16 k = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1u);
        const __m512 d = _mm512_maskz_loadu_ps(k, dy + j);
        for (int e = 0; e < cnt; e++) {
            float *a = acc + (size_t)(slot ? slot[e] : e) * ST_SPCONV_LANES;
            _mm512_storeu_ps(a, _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(k, src + off[e] + j), _mm512_loadu_ps(a)));
        }
    }
}

/* One pixel's 8 dy vectors (D0..D7) and the sum sddmm_avx512 adds to a
 * kept weight's accumulator for it, in its order: (d0 s0 + d2 s2 + d4 s4 +
 * d6 s6) + (d1 s1 + d3 s3 + d5 s5 + d7 s7), each half a chain of FMAs. */
#define ST_DY8(D, p)                                                                                                   \
    const __m512 D##0 = _mm512_loadu_ps((p)), D##1 = _mm512_loadu_ps((p) + 16), D##2 = _mm512_loadu_ps((p) + 32);     \
    const __m512 D##3 = _mm512_loadu_ps((p) + 48), D##4 = _mm512_loadu_ps((p) + 64), D##5 = _mm512_loadu_ps((p) + 80); \
    const __m512 D##6 = _mm512_loadu_ps((p) + 96), D##7 = _mm512_loadu_ps((p) + 112)
#define ST_DOT8(D, s)                                                                                                  \
    _mm512_add_ps(                                                                                                    \
        _mm512_fmadd_ps(D##6, _mm512_loadu_ps((s) + 96),                                                              \
                        _mm512_fmadd_ps(D##4, _mm512_loadu_ps((s) + 64),                                              \
                                        _mm512_fmadd_ps(D##2, _mm512_loadu_ps((s) + 32),                              \
                                                        _mm512_mul_ps(D##0, _mm512_loadu_ps((s)))))),                 \
        _mm512_fmadd_ps(D##7, _mm512_loadu_ps((s) + 112),                                                             \
                        _mm512_fmadd_ps(D##5, _mm512_loadu_ps((s) + 80),                                              \
                                        _mm512_fmadd_ps(D##3, _mm512_loadu_ps((s) + 48),                              \
                                                        _mm512_mul_ps(D##1, _mm512_loadu_ps((s) + 16))))))

/* Blocks of three, then two pixels of 128 floats (24 or 16 dy vectors in
 * registers), each kept weight's accumulator loaded and stored once per
 * block; the rest one pixel at a time. */
static void sddmm_px_avx512(int n, int npx, int cnt, const int64_t *off, const int32_t *slot, const float *dy,
                            int64_t dy_step, const float *src, int64_t src_step, float *acc) {
    int q = 0;
    if (n == 128) {
        for (; q + 3 <= npx; q += 3) {
            const float *s0 = src + q * src_step;
            const float *y0 = dy + q * dy_step;
            ST_DY8(d, y0);
            ST_DY8(f, y0 + dy_step);
            ST_DY8(g, y0 + 2 * dy_step);
            for (int e = 0; e < cnt; e++) {
                const float *t0 = s0 + off[e], *t1 = t0 + src_step, *t2 = t1 + src_step;
                ST_IN_REG(t0);
                ST_IN_REG(t1);
                ST_IN_REG(t2);
                float *a = acc + (size_t)(slot ? slot[e] : e) * ST_SPCONV_LANES;
                __m512 v = _mm512_add_ps(_mm512_loadu_ps(a), ST_DOT8(d, t0));
                v = _mm512_add_ps(v, ST_DOT8(f, t1));
                _mm512_storeu_ps(a, _mm512_add_ps(v, ST_DOT8(g, t2)));
            }
        }
        for (; q + 2 <= npx; q += 2) {
            const float *s0 = src + q * src_step;
            const float *y0 = dy + q * dy_step;
            ST_DY8(d, y0);
            ST_DY8(f, y0 + dy_step);
            for (int e = 0; e < cnt; e++) {
                const float *t0 = s0 + off[e], *t1 = t0 + src_step;
                ST_IN_REG(t0);
                ST_IN_REG(t1);
                float *a = acc + (size_t)(slot ? slot[e] : e) * ST_SPCONV_LANES;
                const __m512 v = _mm512_add_ps(_mm512_loadu_ps(a), ST_DOT8(d, t0));
                _mm512_storeu_ps(a, _mm512_add_ps(v, ST_DOT8(f, t1)));
            }
        }
    }
    for (; q < npx; q++) sddmm_avx512(n, cnt, off, slot, dy + q * dy_step, src + q * src_step, acc);
}
#undef ST_DY8
#undef ST_DOT8

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

static void run_bn_sums_avx512(int n, const float *dy, const float *y, const float *x, float mean, float *out) {
    const __m512 mu = _mm512_set1_ps(mean);
    __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
    for (int j = 0; j < n; j += 16) {
        __mmask16 m = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1u);
        if (y) m = _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, y + j), _mm512_setzero_ps(), _CMP_GT_OQ);
        const __m512 g = _mm512_maskz_loadu_ps(m, dy + j);
        a = _mm512_add_ps(a, g);
        b = _mm512_fmadd_ps(g, _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + j), mu), b);
    }
    out[0] = _mm512_reduce_add_ps(a), out[1] = _mm512_reduce_add_ps(b);
}

/* The 128-wide gather with run_stats taken from its accumulators: the same
 * operations in the same order as run_stats_avx512 on the stored values. */
static void gather_stats_avx512(int n, int cnt, const float *w, const int64_t *off, const float *src, float bias,
                                float *out, float *stats) {
    if (n != 128) {
        gather_avx512(n, cnt, w, off, src, bias, 0, out);
        run_stats_avx512(n, out, stats);
        return;
    }
    __m512 a0, a1, a2, a3, a4, a5, a6, a7;
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = _mm512_set1_ps(bias);
    for (int e = 0; e < cnt; e++) {
        const __m512 wv = _mm512_set1_ps(w[e]);
        const float *s = src + off[e];
        ST_IN_REG(s);
        a0 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s), a0);
        a1 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 16), a1);
        a2 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 32), a2);
        a3 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 48), a3);
        a4 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 64), a4);
        a5 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 80), a5);
        a6 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 96), a6);
        a7 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 112), a7);
    }
    _mm512_storeu_ps(out, a0), _mm512_storeu_ps(out + 16, a1);
    _mm512_storeu_ps(out + 32, a2), _mm512_storeu_ps(out + 48, a3);
    _mm512_storeu_ps(out + 64, a4), _mm512_storeu_ps(out + 80, a5);
    _mm512_storeu_ps(out + 96, a6), _mm512_storeu_ps(out + 112, a7);
    const float k0 = _mm512_cvtss_f32(a0);
    const __m512 k = _mm512_set1_ps(k0);
    __m512 s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), d;
#define ST_RUN_STEP(A) d = _mm512_sub_ps(A, k), s1 = _mm512_add_ps(s1, d), s2 = _mm512_fmadd_ps(d, d, s2)
    ST_RUN_STEP(a0), ST_RUN_STEP(a1), ST_RUN_STEP(a2), ST_RUN_STEP(a3);
    ST_RUN_STEP(a4), ST_RUN_STEP(a5), ST_RUN_STEP(a6), ST_RUN_STEP(a7);
#undef ST_RUN_STEP
    stats[0] = k0, stats[1] = _mm512_reduce_add_ps(s1), stats[2] = _mm512_reduce_add_ps(s2);
}

/* Eight accumulators A0..A7 of one pixel's 128 floats. */
#define ST_ACC8(A) __m512 A##0, A##1, A##2, A##3, A##4, A##5, A##6, A##7
#define ST_INIT8(A, p)                                                                                                 \
    do {                                                                                                              \
        if (accumulate) {                                                                                             \
            A##0 = _mm512_loadu_ps((p)), A##1 = _mm512_loadu_ps((p) + 16), A##2 = _mm512_loadu_ps((p) + 32);         \
            A##3 = _mm512_loadu_ps((p) + 48), A##4 = _mm512_loadu_ps((p) + 64), A##5 = _mm512_loadu_ps((p) + 80);    \
            A##6 = _mm512_loadu_ps((p) + 96), A##7 = _mm512_loadu_ps((p) + 112);                                     \
        } else {                                                                                                      \
            A##0 = A##1 = A##2 = A##3 = A##4 = A##5 = A##6 = A##7 = _mm512_set1_ps(bias);                            \
        }                                                                                                             \
    } while (0)
#define ST_FMA8(A, wv, s)                                                                                              \
    A##0 = _mm512_fmadd_ps(wv, _mm512_loadu_ps((s)), A##0), A##1 = _mm512_fmadd_ps(wv, _mm512_loadu_ps((s) + 16), A##1), \
    A##2 = _mm512_fmadd_ps(wv, _mm512_loadu_ps((s) + 32), A##2), A##3 = _mm512_fmadd_ps(wv, _mm512_loadu_ps((s) + 48), A##3), \
    A##4 = _mm512_fmadd_ps(wv, _mm512_loadu_ps((s) + 64), A##4), A##5 = _mm512_fmadd_ps(wv, _mm512_loadu_ps((s) + 80), A##5), \
    A##6 = _mm512_fmadd_ps(wv, _mm512_loadu_ps((s) + 96), A##6), A##7 = _mm512_fmadd_ps(wv, _mm512_loadu_ps((s) + 112), A##7)
#define ST_STORE8(A, p)                                                                                                \
    _mm512_storeu_ps((p), A##0), _mm512_storeu_ps((p) + 16, A##1), _mm512_storeu_ps((p) + 32, A##2),                 \
    _mm512_storeu_ps((p) + 48, A##3), _mm512_storeu_ps((p) + 64, A##4), _mm512_storeu_ps((p) + 80, A##5),            \
    _mm512_storeu_ps((p) + 96, A##6), _mm512_storeu_ps((p) + 112, A##7)

/* run_stats of the 128 floats held in A0..A7 (the order of run_stats_avx512). */
static inline void stats8(__m512 a0, __m512 a1, __m512 a2, __m512 a3, __m512 a4, __m512 a5, __m512 a6, __m512 a7,
                          float *stats) {
    const float k0 = _mm512_cvtss_f32(a0);
    const __m512 k = _mm512_set1_ps(k0);
    __m512 s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), d;
#define ST_RUN_STEP(A) d = _mm512_sub_ps(A, k), s1 = _mm512_add_ps(s1, d), s2 = _mm512_fmadd_ps(d, d, s2)
    ST_RUN_STEP(a0), ST_RUN_STEP(a1), ST_RUN_STEP(a2), ST_RUN_STEP(a3);
    ST_RUN_STEP(a4), ST_RUN_STEP(a5), ST_RUN_STEP(a6), ST_RUN_STEP(a7);
#undef ST_RUN_STEP
    stats[0] = k0, stats[1] = _mm512_reduce_add_ps(s1), stats[2] = _mm512_reduce_add_ps(s2);
}

/* Software prefetch in gather_px: the first cache line of the first
 * pixel's run of the kernel weight PF_DIST entries ahead, on the rows that
 * the CPU's tuning prefetches (gather_tunings). */
#define PF_DIST 4

/* For writing: lines 2e and 2e + 1 of the output of a block of pixels
 * out_step floats apart, 8 lines each (asm: the intrinsic needs PRFCHW in
 * the target, which every AVX-512 CPU has). */
static inline void prefetch_out2(const float *o0, int64_t out_step, int e) {
    const float *q = o0 + (e >> 2) * out_step + 32 * (e & 3);
    __asm__ volatile("prefetchw %0" : : "m"(*(const char *)q));
    __asm__ volatile("prefetchw %0" : : "m"(*(const char *)(q + 16)));
}

/* The kept weights of a block of NPX pixels: STEP(e) for every e, with the
 * input prefetch of e + pf where e + pf < cnt, and with it while e < 4 *
 * NPX the output prefetch (pf_out) of lines 2e, 2e + 1. */
#define ST_PX_WEIGHTS(STEP, NPX)                                                                                      \
    do {                                                                                                              \
        int e = 0;                                                                                                    \
        for (; e < cnt - pf; e++) {                                                                                   \
            if (pf_out && e < 4 * (NPX)) prefetch_out2(o0, out_step, e);                                              \
            _mm_prefetch((const char *)(s0 + off[e + pf]), _MM_HINT_T0);                                              \
            STEP(e);                                                                                                  \
        }                                                                                                             \
        for (; e < cnt; e++) STEP(e);                                                                                 \
    } while (0)

/* The blocks of three, then two pixels of 128 floats (24 or 16
 * accumulators) of gather_px_avx512; returns the pixels done. Inlined
 * twice: with src_step the constant 128 (stride 1, every input gradient)
 * one base register serves all pixels, at displacements; otherwise each
 * pixel's run has its own. */
static inline __attribute__((always_inline)) int px_blocks_avx512(int npx, int cnt, const float *w, const int64_t *off,
                                                                  const float *src, int64_t src_step, float bias,
                                                                  int accumulate, float *out, int64_t out_step,
                                                                  float *stats, int64_t stats_step, int pf,
                                                                  int pf_out) {
    int q = 0;
    for (; q + 3 <= npx; q += 3) {
        const float *s0 = src + q * src_step;
        float *o0 = out + q * out_step;
        ST_ACC8(a);
        ST_ACC8(b);
        ST_ACC8(c);
        ST_INIT8(a, o0);
        ST_INIT8(b, o0 + out_step);
        ST_INIT8(c, o0 + 2 * out_step);
#define ST_STEP3(e)                                                                                                    \
    do {                                                                                                              \
        const __m512 wv = _mm512_set1_ps(w[e]);                                                                       \
        const float *t0 = s0 + off[e];                                                                                \
        ST_IN_REG(t0);                                                                                                \
        const float *t1 = t0 + src_step, *t2 = t1 + src_step;                                                         \
        if (src_step != 128) {                                                                                        \
            ST_IN_REG(t1);                                                                                            \
            ST_IN_REG(t2);                                                                                            \
        }                                                                                                             \
        ST_FMA8(a, wv, t0);                                                                                           \
        ST_FMA8(b, wv, t1);                                                                                           \
        ST_FMA8(c, wv, t2);                                                                                           \
    } while (0)
        ST_PX_WEIGHTS(ST_STEP3, 3);
#undef ST_STEP3
        ST_STORE8(a, o0), ST_STORE8(b, o0 + out_step), ST_STORE8(c, o0 + 2 * out_step);
        if (stats) {
            float *st = stats + q * stats_step;
            stats8(a0, a1, a2, a3, a4, a5, a6, a7, st);
            stats8(b0, b1, b2, b3, b4, b5, b6, b7, st + stats_step);
            stats8(c0, c1, c2, c3, c4, c5, c6, c7, st + 2 * stats_step);
        }
    }
    for (; q + 2 <= npx; q += 2) {
        const float *s0 = src + q * src_step;
        float *o0 = out + q * out_step;
        ST_ACC8(a);
        ST_ACC8(b);
        ST_INIT8(a, o0);
        ST_INIT8(b, o0 + out_step);
#define ST_STEP2(e)                                                                                                    \
    do {                                                                                                              \
        const __m512 wv = _mm512_set1_ps(w[e]);                                                                       \
        const float *t0 = s0 + off[e];                                                                                \
        ST_IN_REG(t0);                                                                                                \
        const float *t1 = t0 + src_step;                                                                              \
        if (src_step != 128) ST_IN_REG(t1);                                                                           \
        ST_FMA8(a, wv, t0);                                                                                           \
        ST_FMA8(b, wv, t1);                                                                                           \
    } while (0)
        ST_PX_WEIGHTS(ST_STEP2, 2);
#undef ST_STEP2
        ST_STORE8(a, o0), ST_STORE8(b, o0 + out_step);
        if (stats) {
            float *st = stats + q * stats_step;
            stats8(a0, a1, a2, a3, a4, a5, a6, a7, st);
            stats8(b0, b1, b2, b3, b4, b5, b6, b7, st + stats_step);
        }
    }
    return q;
}

/* Two or three pixels of 128 floats at once (16 or 24 accumulators), the
 * rest through gather / gather_stats one pixel at a time. */
static void gather_px_avx512(int n, int npx, int cnt, const float *w, const int64_t *off, const float *src,
                             int64_t src_step, float bias, int accumulate, float *out, int64_t out_step, float *stats,
                             int64_t stats_step) {
    const gather_tuning *tn = &gather_tunings[st_spconv_tuning_current()];
    const int pf = cnt >= tn->pf_min_row ? PF_DIST : cnt; /* cnt: no prefetching loop */
    const int pf_out = tn->pf_out && !accumulate;
    int q = 0;
    if (n == 128 && src_step == 128)
        q = px_blocks_avx512(npx, cnt, w, off, src, 128, bias, accumulate, out, out_step, stats, stats_step, pf, pf_out);
    else if (n == 128)
        q = px_blocks_avx512(npx, cnt, w, off, src, src_step, bias, accumulate, out, out_step, stats, stats_step, pf,
                             pf_out);
    for (; q < npx; q++) {
        if (stats && !accumulate)
            gather_stats_avx512(n, cnt, w, off, src + q * src_step, bias, out + q * out_step, stats + q * stats_step);
        else gather_avx512(n, cnt, w, off, src + q * src_step, bias, accumulate, out + q * out_step);
        if (stats && accumulate) run_stats_avx512(n, out + q * out_step, stats + q * stats_step);
    }
}
#undef ST_PX_WEIGHTS
#undef ST_ACC8
#undef ST_INIT8
#undef ST_FMA8
#undef ST_STORE8

const st_spconv_prims st_spconv_prims_avx512 = {
    .gather = gather_avx512,
    .gather_px = gather_px_avx512,
    .sddmm = sddmm_avx512,
    .sddmm_px = sddmm_px_avx512,
    .run_stats = run_stats_avx512,
    .run_bn_sums = run_bn_sums_avx512,
    .pieces_exact = 32,
};

ST_TARGET_END

/* ---------------- AVX2 ---------------- */
ST_TARGET_AVX2_BEGIN

static void gather_avx2(int n, int cnt, const float *w, const int64_t *off, const float *src, float bias,
                        int accumulate, float *out) {
    int j = 0;
    for (; j + 64 <= n; j += 64) {
        __m256 a[8];
        for (int v = 0; v < 8; v++) a[v] = accumulate ? _mm256_loadu_ps(out + j + 8 * v) : _mm256_set1_ps(bias);
        for (int e = 0; e < cnt; e++) {
            const __m256 wv = _mm256_set1_ps(w[e]);
            const float *s = src + off[e] + j;
            for (int v = 0; v < 8; v++) a[v] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(s + 8 * v), a[v]);
        }
        for (int v = 0; v < 8; v++) _mm256_storeu_ps(out + j + 8 * v, a[v]);
    }
    for (; j + 8 <= n; j += 8) {
        __m256 a = accumulate ? _mm256_loadu_ps(out + j) : _mm256_set1_ps(bias);
        for (int e = 0; e < cnt; e++) a = _mm256_fmadd_ps(_mm256_set1_ps(w[e]), _mm256_loadu_ps(src + off[e] + j), a);
        _mm256_storeu_ps(out + j, a);
    }
    for (; j < n; j++) {
        float a = accumulate ? out[j] : bias;
        for (int e = 0; e < cnt; e++) a += w[e] * src[off[e] + j];
        out[j] = a;
    }
}

static void sddmm_avx2(int n, int cnt, const int64_t *off, const int32_t *slot, const float *dy, const float *src,
                       float *acc) {
    int j = 0;
    for (; j + 64 <= n; j += 64) {
        __m256 d[8];
        for (int v = 0; v < 8; v++) d[v] = _mm256_loadu_ps(dy + j + 8 * v);
        for (int e = 0; e < cnt; e++) {
            const float *s = src + off[e] + j;
            float *a = acc + (size_t)(slot ? slot[e] : e) * ST_SPCONV_LANES;
            __m256 t0 = _mm256_mul_ps(d[0], _mm256_loadu_ps(s));
            __m256 t1 = _mm256_mul_ps(d[1], _mm256_loadu_ps(s + 8));
            t0 = _mm256_fmadd_ps(d[2], _mm256_loadu_ps(s + 16), t0);
            t1 = _mm256_fmadd_ps(d[3], _mm256_loadu_ps(s + 24), t1);
            t0 = _mm256_fmadd_ps(d[4], _mm256_loadu_ps(s + 32), t0);
            t1 = _mm256_fmadd_ps(d[5], _mm256_loadu_ps(s + 40), t1);
            t0 = _mm256_fmadd_ps(d[6], _mm256_loadu_ps(s + 48), t0);
            t1 = _mm256_fmadd_ps(d[7], _mm256_loadu_ps(s + 56), t1);
            _mm256_storeu_ps(a, _mm256_add_ps(_mm256_loadu_ps(a), _mm256_add_ps(t0, t1)));
        }
    }
    for (; j + 8 <= n; j += 8) {
        const __m256 d = _mm256_loadu_ps(dy + j);
        for (int e = 0; e < cnt; e++) {
            float *a = acc + (size_t)(slot ? slot[e] : e) * ST_SPCONV_LANES;
            _mm256_storeu_ps(a, _mm256_fmadd_ps(d, _mm256_loadu_ps(src + off[e] + j), _mm256_loadu_ps(a)));
        }
    }
    for (; j < n; j++)
        for (int e = 0; e < cnt; e++) acc[(size_t)(slot ? slot[e] : e) * ST_SPCONV_LANES + 8 + (j & 7)] +=
            dy[j] * src[off[e] + j];
}

static void sddmm_px_avx2(int n, int npx, int cnt, const int64_t *off, const int32_t *slot, const float *dy,
                          int64_t dy_step, const float *src, int64_t src_step, float *acc) {
    for (int q = 0; q < npx; q++) sddmm_avx2(n, cnt, off, slot, dy + q * dy_step, src + q * src_step, acc);
}

static void run_stats_avx2(int n, const float *v, float *out) {
    const __m256 k = _mm256_set1_ps(v[0]);
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(v + j), k);
        a = _mm256_add_ps(a, d);
        b = _mm256_fmadd_ps(d, d, b);
    }
    float la[8], lb[8], s1 = 0.0f, s2 = 0.0f;
    _mm256_storeu_ps(la, a), _mm256_storeu_ps(lb, b);
    for (int l = 0; l < 8; l++) s1 += la[l], s2 += lb[l];
    for (; j < n; j++) {
        const float d = v[j] - v[0];
        s1 += d, s2 += d * d;
    }
    out[0] = v[0], out[1] = s1, out[2] = s2;
}

static void run_bn_sums_avx2(int n, const float *dy, const float *y, const float *x, float mean, float *out) {
    const __m256 mu = _mm256_set1_ps(mean), zero = _mm256_setzero_ps();
    __m256 a = zero, b = zero;
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 g = _mm256_loadu_ps(dy + j);
        if (y) g = _mm256_and_ps(g, _mm256_cmp_ps(_mm256_loadu_ps(y + j), zero, _CMP_GT_OQ));
        a = _mm256_add_ps(a, g);
        b = _mm256_fmadd_ps(g, _mm256_sub_ps(_mm256_loadu_ps(x + j), mu), b);
    }
    float la[8], lb[8], s1 = 0.0f, s2 = 0.0f;
    _mm256_storeu_ps(la, a), _mm256_storeu_ps(lb, b);
    for (int l = 0; l < 8; l++) s1 += la[l], s2 += lb[l];
    for (; j < n; j++) {
        const float g = y && !(y[j] > 0.0f) ? 0.0f : dy[j];
        s1 += g, s2 += g * (x[j] - mean);
    }
    out[0] = s1, out[1] = s2;
}

static void gather_px_avx2(int n, int npx, int cnt, const float *w, const int64_t *off, const float *src,
                           int64_t src_step, float bias, int accumulate, float *out, int64_t out_step, float *stats,
                           int64_t stats_step) {
    for (int q = 0; q < npx; q++) {
        gather_avx2(n, cnt, w, off, src + q * src_step, bias, accumulate, out + q * out_step);
        if (stats) run_stats_avx2(n, out + q * out_step, stats + q * stats_step);
    }
}

const st_spconv_prims st_spconv_prims_avx2 = {
    .gather = gather_avx2,
    .gather_px = gather_px_avx2,
    .sddmm = sddmm_avx2,
    .sddmm_px = sddmm_px_avx2,
    .run_stats = run_stats_avx2,
    .run_bn_sums = run_bn_sums_avx2,
    .pieces_exact = 1,
};

ST_TARGET_END

#endif /* ST_SPCONV_HAVE_X86 */
