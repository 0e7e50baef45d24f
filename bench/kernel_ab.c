/* In-process, interleaved A/B of sparse-execution designs for one layer shape
 * (default: stage 1 of cifar_resnet_56 at ERK 0.05: 16 -> 16 channels,
 * 32x32, 3x3, density 0.1545, batch 128). Built as `kernel_ab` next to
 * `sparsetrain`; run it on the threads you care about:
 *     OMP_NUM_THREADS=2 build/kernel_ab [reps] [channels] [size] [density] [batch] [variants]
 * (variants: numbers in the order of names[] below, e.g. 0,1 for conv vs conv+stats; default all)
 * Every variant runs `reps` times, the variants alternate within each round,
 * and the minimum and median per variant are printed, of the wall time and
 * of the process's CPU time (all threads): on a shared machine the minimum
 * is the run least disturbed by other jobs, and with one thread the CPU time
 * does not count the time the thread waited for a core.
 *
 * The forward of conv -> BN -> ReLU -> conv (the walk between two batch-norm
 * barriers), in four designs:
 *   unfused  conv; BN statistics pass + normalise pass; conv     (before issue 17)
 *   stats    conv with the BN statistics in its epilogue; BN normalise pass; conv (now)
 *   tiled T  batch tiles of T = 32 or 64 images (each tile its own CHWN block): per tile
 *            conv + statistics; then per tile BN apply + ReLU and at once the
 *            next conv on that tile while it is in L2
 *   folded   the next conv reads the BN input and applies scale, shift and
 *            ReLU to every value it loads (prototype AVX-512 gather in this
 *            file, against the same prototype without folding + a BN pass)
 * "folded" measures the forward only and never writes the BN output, which
 * training still needs for the backward (ReLU mask, weight-gradient input):
 * it is an upper bound on what folding could win.
 * The backward of BN -> ReLU -> conv:
 *   bwd-unfused  input-gradient pass writes dy; BN backward: sums pass + dx pass
 *   bwd-sums     input-gradient pass also gathers the BN sums; BN backward: dx pass (now)
 * and the parts alone: conv / conv+stats (forward pass without and with the
 * statistics epilogue), bn 2-pass / bn 1-pass (BN forward without and with
 * the statistics given).
 *
 * Four more modes (docs/PERFORMANCE.md, "Kernels for wide layers"):
 *     build/kernel_ab passes reps in_c out_c size density batch [stride kernel [px_blocks [tunings [in_blocks]]]]
 * times the forward, forward + statistics, input-gradient and weight-gradient
 * passes of one random layer (any channel counts) at each pixel blocking of
 * the comma list (st_spconv_plan_set_px_block; 1 = one pixel per gather, the
 * walk before blocking) and each tuning of the AVX-512 gathers in the list
 * (e.g. zen,intel; st_spconv_tuning_force) and each block of summed
 * channels in the list (e.g. 0,32,64, 0 none; st_spconv_plan_set_block,
 * both passes; default the plan's), interleaved in one
 * process, CPU-time medians and GFLOP/s;
 *     build/kernel_ab walk reps in_c out_c size density [kernels [strip_groups [walk_prefetch [in_block [row_pad]]]]]
 * the forward's interior walk with the production 3-pixel gather and
 * prototypes of it, with the input and/or the output held in cache, row by
 * row or in column strips, optionally prefetching the next group's new
 * input columns, over blocks of in_block input channels, or with row_pad
 * floats after each input row and plane (see walk_main);
 *     build/kernel_ab wgrad reps in_c out_c size density
 * the weight gradient's interior walk, one pixel per SDDMM call against
 * 2 and 3 (see wgrad_main); and
 *     build/kernel_ab probe reps KiB...
 * runs the gather's inner loop alone on random 512-byte runs of a buffer of
 * each size: the rate the kernel can be fed at from L1, L2, L3 or DRAM. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"
#include "kernels/bn_act.h"
#include "kernels/sparse_conv.h"
#include "kernels/sparse_conv_prims.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define AB_HAVE_AVX512 1
#endif

static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

/* The gathers' tunings where the tree has them (kernel_ab.c builds against older trees too). */
#ifdef ST_SPCONV_HAVE_TUNING
#define AB_TUNINGS ST_SPCONV_TUNINGS
static const char *ab_tuning_name(int t) { return st_spconv_tuning_name((st_spconv_tuning)t); }
static void ab_tuning_force(int t) { st_spconv_tuning_force((st_spconv_tuning)t); }
static int ab_tuning_current(void) { return (int)st_spconv_tuning_current(); }
#else
#define AB_TUNINGS 1
static const char *ab_tuning_name(int t) { return (void)t, "-"; }
static void ab_tuning_force(int t) { (void)t; }
static int ab_tuning_current(void) { return 0; }
#endif

static int cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The non-negative integers of a list such as "1,2,3" (anything but digits
 * separates them), at most max of them; returns how many. */
static int int_list(const char *s, int *out, int max) {
    int n = 0;
    for (const char *q = s; *q && n < max; q++)
        if (*q >= '0' && *q <= '9') {
            out[n++] = atoi(q);
            while (q[1] >= '0' && q[1] <= '9') q++;
        }
    return n;
}

typedef struct layer {
    int N, C, H, W;
    int64_t *row_ptr;
    int32_t *col;
    float *w;
} layer;

static void make_layer(st_rng *rng, int N, int C, int H, double d, layer *l) {
    l->N = N, l->C = C, l->H = l->W = H;
    const int cols = C * 9;
    l->row_ptr = malloc(sizeof(int64_t) * (size_t)(C + 1));
    l->col = malloc(sizeof(int32_t) * (size_t)C * cols);
    l->w = malloc(sizeof(float) * (size_t)C * cols);
    int64_t k = 0;
    for (int o = 0; o < C; o++) {
        l->row_ptr[o] = k;
        for (int j = 0; j < cols; j++)
            if (st_rng_uniform_double(rng) < d) {
                l->col[k] = j;
                l->w[k++] = (float)(st_rng_normal(rng) * 0.3);
            }
    }
    l->row_ptr[C] = k;
}

/* ---- prototype gather for "folded" (interior and border pixels, AVX-512, N % 16 == 0) ---- */
#ifdef AB_HAVE_AVX512
/* One output pixel of every channel; the OpenMP loop is outside the target("avx512f") function
 * (clang outlines a parallel region into a function without the target attribute). */
__attribute__((target("avx512f"))) static void proto_pixel(const layer *l, const float *x, const float *scale,
                                                           const float *shift, int fold, float *y, int px,
                                                           int64_t *off, float *wv, float *sc, float *sh) {
    const int N = l->N, C = l->C, H = l->H, W = l->W;
    const int64_t plane = (int64_t)H * W * N;
    const int oh = px / W, ow = px % W;
    for (int o = 0; o < C; o++) {
        int m = 0;
        for (int64_t e = l->row_ptr[o]; e < l->row_ptr[o + 1]; e++) {
            const int i = l->col[e] / 9, kh = (l->col[e] % 9) / 3, kw = l->col[e] % 3;
            const int ih = oh - 1 + kh, iw = ow - 1 + kw;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            off[m] = ((int64_t)(i * H + ih) * W + iw) * N;
            wv[m] = l->w[e], sc[m] = scale[i], sh[m] = shift[i];
            m++;
        }
        float *out = y + o * plane + (int64_t)px * N;
        for (int j = 0; j < N; j += 64) {
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            const __m512 zero = _mm512_setzero_ps();
            for (int e = 0; e < m; e++) {
                const __m512 we = _mm512_set1_ps(wv[e]);
                const float *s = x + off[e] + j;
                __m512 v0 = _mm512_loadu_ps(s), v1 = _mm512_loadu_ps(s + 16);
                __m512 v2 = _mm512_loadu_ps(s + 32), v3 = _mm512_loadu_ps(s + 48);
                if (fold) {
                    const __m512 k = _mm512_set1_ps(sc[e]), b = _mm512_set1_ps(sh[e]);
                    v0 = _mm512_max_ps(_mm512_fmadd_ps(v0, k, b), zero);
                    v1 = _mm512_max_ps(_mm512_fmadd_ps(v1, k, b), zero);
                    v2 = _mm512_max_ps(_mm512_fmadd_ps(v2, k, b), zero);
                    v3 = _mm512_max_ps(_mm512_fmadd_ps(v3, k, b), zero);
                }
                a0 = _mm512_fmadd_ps(we, v0, a0), a1 = _mm512_fmadd_ps(we, v1, a1);
                a2 = _mm512_fmadd_ps(we, v2, a2), a3 = _mm512_fmadd_ps(we, v3, a3);
            }
            _mm512_storeu_ps(out + j, a0), _mm512_storeu_ps(out + j + 16, a1);
            _mm512_storeu_ps(out + j + 32, a2), _mm512_storeu_ps(out + j + 48, a3);
        }
    }
}

static void proto_conv(const layer *l, const float *x, const float *scale, const float *shift, int fold, float *y) {
#pragma omp parallel
    {
        int64_t off[9 * 64];
        float wv[9 * 64], sc[9 * 64], sh[9 * 64];
#pragma omp for schedule(static)
        for (int px = 0; px < l->H * l->W; px++) proto_pixel(l, x, scale, shift, fold, y, px, off, wv, sc, sh);
    }
}
#endif

#define VARIANTS 12
static const char *names[VARIANTS] = {"conv",          "conv+stats", "bn 2-pass",    "bn 1-pass",   "chain stats",
                                      "chain tiled32", "proto+bn",   "proto folded", "bwd-unfused", "chain unfused",
                                      "bwd-sums",      "chain tiled64"};

/* Tensors of the passes mode: 64-byte aligned, as the executor's are (a
 * malloc'ed buffer 16 bytes off a page boundary splits every 64-byte load
 * across two cache lines: measured 1.7x slower). */
static float *tensor(size_t n) {
    const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    return aligned_alloc(64, bytes ? bytes : 64);
}

/* `kernel_ab probe reps kib`: the gather's inner loop alone (one broadcast
 * weight, eight 16-float FMAs on a 512-byte chunk at a random 512-byte
 * aligned offset of a kib-KiB buffer, 64 chunks per row), GFLOP/s: how
 * fast the kernel can be fed from the cache level that holds the buffer. */
#ifdef AB_HAVE_AVX512
__attribute__((target("avx512f"))) static float probe_rows(const float *buf, const int64_t *off, int rows, int cnt) {
    __m512 t = _mm512_setzero_ps();
    for (int r = 0; r < rows; r++) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        const int64_t *o = off + (size_t)r * cnt;
        for (int e = 0; e < cnt; e++) {
            const __m512 wv = _mm512_set1_ps(1.0f + (float)e * 1e-3f);
            const float *s = buf + o[e];
            a0 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s), a0), a1 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 16), a1);
            a2 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 32), a2), a3 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 48), a3);
            a4 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 64), a4), a5 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 80), a5);
            a6 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 96), a6), a7 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 112), a7);
        }
        t = _mm512_add_ps(t, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                                           _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7))));
    }
    return _mm512_reduce_add_ps(t);
}
#endif

static int probe_main(int argc, char **argv) {
#ifdef AB_HAVE_AVX512
    const int reps = argc > 2 ? atoi(argv[2]) : 15;
    if (!__builtin_cpu_supports("avx512f") || reps < 1) return 2;
    const int cnt = 64, rows = 4096;
    int64_t *off = malloc(sizeof(int64_t) * (size_t)rows * cnt);
    st_rng rng;
    st_rng_seed(&rng, 3, 0);
    printf("kernel_ab probe: 8 FMAs per random 512-byte chunk of a buffer, %d rounds (CPU-time median)\n", reps);
    for (int a = 3; a < argc; a++) {
        const size_t kib = (size_t)atol(argv[a]), chunks = kib * 1024 / 512;
        if (chunks < 1) continue;
        float *buf = aligned_alloc(4096, chunks * 512);
        for (size_t i = 0; i < chunks * 128; i++) buf[i] = 1e-3f * (float)(i % 97);
        for (size_t i = 0; i < (size_t)rows * cnt; i++) off[i] = (int64_t)(st_rng_next(&rng) % chunks) * 128;
        double *u = malloc(sizeof(double) * (size_t)reps);
        volatile float sink = 0.0f;
        for (int r = 0; r < reps; r++) {
            const double c0 = cpu_ms();
            sink += probe_rows(buf, off, rows, cnt);
            u[r] = cpu_ms() - c0;
        }
        qsort(u, (size_t)reps, sizeof(double), cmp);
        const double flop = 2.0 * 128 * (double)rows * cnt;
        printf("  buffer %6zu KiB: %7.1f GFLOP/s (%.1f GB/s loaded)\n", kib, flop / u[reps / 2] / 1e6,
               flop * 2.0 / u[reps / 2] / 1e6);
        free(buf), free(u);
        (void)sink;
    }
    free(off);
    return 0;
#else
    (void)argc, (void)argv;
    return 2;
#endif
}

#ifdef AB_HAVE_AVX512
/* A random 3x3 layer of walk and wgrad: CSR rows of kept weights with the
 * forward's offsets (i * plane + kh * row + kw * 128) and values, and an
 * input x of random normals in CHWN, each row (H x 128 floats) and plane
 * followed by pad floats (0: the executor's layout). */
typedef struct wk_layer {
    int64_t *row_ptr, *off, nnz, row, plane;
    float *w, *x;
} wk_layer;

static void wk_layer_make(st_rng *rng, int Ci, int Co, int H, double d, int pad, wk_layer *l) {
    const int N = 128;
    l->row = (int64_t)H * N + pad, l->plane = H * l->row + pad;
    l->row_ptr = malloc(sizeof(int64_t) * (size_t)(Co + 1));
    l->off = malloc(sizeof(int64_t) * (size_t)Co * Ci * 9 + 64);
    l->w = malloc(sizeof(float) * (size_t)Co * Ci * 9 + 64);
    l->nnz = 0;
    for (int o = 0; o < Co; o++) {
        l->row_ptr[o] = l->nnz;
        for (int j = 0; j < Ci * 9; j++)
            if (st_rng_uniform_double(rng) < d) {
                l->off[l->nnz] = (j / 9) * l->plane + (j % 9) / 3 * l->row + j % 3 * N;
                l->w[l->nnz++] = (float)(st_rng_normal(rng) * 0.3);
            }
    }
    l->row_ptr[Co] = l->nnz;
    const size_t nx = (size_t)Ci * (size_t)l->plane;
    l->x = tensor(nx);
    for (size_t i = 0; i < nx; i++) l->x[i] = (float)st_rng_normal(rng);
}

static void wk_layer_free(wk_layer *l) { free(l->row_ptr), free(l->off), free(l->w), free(l->x); }
#endif

/* `kernel_ab walk reps in_c out_c size density [kernels]`: the forward's
 * interior walk (3x3, stride 1, batch 128, groups of 3 output pixels of one
 * row, every output channel of a group back to back, as the pass does)
 * with the production 3-pixel gather_px against prototypes of it, each also
 * with its input confined to one neighbourhood ("x fixed": always the first
 * group's, so that it stays in L2) and/or its output to one L1-resident
 * group ("y fixed"). Separates the cost of the kernel, of streaming x
 * through the caches and of writing y. */
#ifdef AB_HAVE_AVX512
/* 24 accumulators: 3 pixels of 128 floats, pixel q at s0 + q * 128. */
#define WK_ACC8(A) __m512 A##0, A##1, A##2, A##3, A##4, A##5, A##6, A##7
#define WK_ZERO8(A) A##0 = A##1 = A##2 = A##3 = A##4 = A##5 = A##6 = A##7 = _mm512_setzero_ps()
#define WK_FMA8(A, wv, s)                                                                                              \
    A##0 = _mm512_fmadd_ps(wv, _mm512_loadu_ps((s)), A##0), A##1 = _mm512_fmadd_ps(wv, _mm512_loadu_ps((s) + 16), A##1), \
    A##2 = _mm512_fmadd_ps(wv, _mm512_loadu_ps((s) + 32), A##2), A##3 = _mm512_fmadd_ps(wv, _mm512_loadu_ps((s) + 48), A##3), \
    A##4 = _mm512_fmadd_ps(wv, _mm512_loadu_ps((s) + 64), A##4), A##5 = _mm512_fmadd_ps(wv, _mm512_loadu_ps((s) + 80), A##5), \
    A##6 = _mm512_fmadd_ps(wv, _mm512_loadu_ps((s) + 96), A##6), A##7 = _mm512_fmadd_ps(wv, _mm512_loadu_ps((s) + 112), A##7)
#define WK_ST8(A, p, ST)                                                                                               \
    ST((p), A##0), ST((p) + 16, A##1), ST((p) + 32, A##2), ST((p) + 48, A##3), ST((p) + 64, A##4),                   \
    ST((p) + 80, A##5), ST((p) + 96, A##6), ST((p) + 112, A##7)

/* prefetchw (asm, as in sparse_conv_x86.c: the intrinsic's header and target differ between compilers) */
static inline void wk_prefetchw(const float *p) { __asm__ volatile("prefetchw %0" : : "m"(*(const char *)p)); }

/* The knobs of a prototype (constants: each variant is compiled apart). */
typedef struct wk_knobs {
    int pf;     /* input prefetch: 0 none, 1 first line of the run (production), 2 every line of the 3-pixel run,
                   3 every second line, 4 the first line of each pixel */
    int dist;   /* kept weights ahead */
    int hint;   /* 0: T0, 1: T1 */
    int minrow; /* rows shorter than this do not prefetch their inputs */
    int pfw;    /* output lines: 0 not prefetched, 1 all prefetchw'd before the loop, 2 two per kept weight */
    int flat;   /* 1: one base register per kept weight, the pixels at displacements (no indexed addressing) */
    int nt;     /* streaming stores */
    int next;   /* lines of the next group's run (1536 bytes on) prefetched into L2 per kept weight, rotating */
} wk_knobs;

__attribute__((target("avx512f"), always_inline)) static inline void
wk_step3(const wk_knobs k, __m512 wv, const float *s0, int64_t oe, __m512 *a) {
    const float *t0 = s0 + oe, *t1 = s0 + 128 + oe, *t2 = s0 + 256 + oe;
    if (k.flat) {
        __asm__("" : "+r"(t0));
        t1 = t0 + 128, t2 = t0 + 256;
    }
    _Pragma("GCC unroll 24")
    for (int v = 0; v < 8; v++) a[v] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(t0 + 16 * v), a[v]);
    _Pragma("GCC unroll 24")
    for (int v = 0; v < 8; v++) a[8 + v] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(t1 + 16 * v), a[8 + v]);
    _Pragma("GCC unroll 24")
    for (int v = 0; v < 8; v++) a[16 + v] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(t2 + 16 * v), a[16 + v]);
}

__attribute__((target("avx512f"), always_inline)) static inline void
wk_gather3(const wk_knobs k, int cnt, const float *w, const int64_t *off, const float *s0, float *o0) {
    __m512 a[24];
    _Pragma("GCC unroll 24")
    for (int v = 0; v < 24; v++) a[v] = _mm512_setzero_ps();
    const int stop = k.pf && cnt >= k.minrow ? cnt - k.dist : 0;
    if (k.pfw == 1)
        _Pragma("GCC unroll 24")
        for (int l = 0; l < 24; l++) wk_prefetchw(o0 + 16 * l);
    int e = 0;
    for (; e < stop; e++) {
        if (k.pfw == 2 && e < 12) wk_prefetchw(o0 + 32 * e), wk_prefetchw(o0 + 32 * e + 16);
        const char *q = (const char *)(s0 + off[e + k.dist]);
        const int nl = k.pf == 2 ? 24 : k.pf == 3 ? 12 : k.pf == 4 ? 3 : 1, step = k.pf == 3 ? 128 : k.pf == 4 ? 512 : 64;
        _Pragma("GCC unroll 24")
        for (int l = 0; l < nl; l++) {
            if (k.hint) _mm_prefetch(q + step * l, _MM_HINT_T1);
            else _mm_prefetch(q + step * l, _MM_HINT_T0);
        }
        for (int l = 0; l < k.next; l++)
            _mm_prefetch((const char *)(s0 + off[e] + 384 + 16 * ((e * k.next + l) % 24)), _MM_HINT_T1);
        wk_step3(k, _mm512_set1_ps(w[e]), s0, off[e], a);
    }
    for (; e < cnt; e++) wk_step3(k, _mm512_set1_ps(w[e]), s0, off[e], a);
    _Pragma("GCC unroll 24")
    for (int v = 0; v < 24; v++) {
        if (k.nt) _mm512_stream_ps(o0 + 16 * v, a[v]);
        else _mm512_storeu_ps(o0 + 16 * v, a[v]);
    }
}

typedef void (*wk_kernel)(int cnt, const float *w, const int64_t *off, const float *s0, float *o0);
static void wk_production(int cnt, const float *w, const int64_t *off, const float *s0, float *o0) {
    st_spconv_prims_avx512.gather_px(128, 3, cnt, w, off, s0, 128, 0.0f, 0, o0, 128, NULL, 0);
}
/* name, then the knobs in wk_knobs order */
#define WK_VARIANT(name, ...)                                                                                         \
    __attribute__((target("avx512f"))) static void name(int cnt, const float *w, const int64_t *off,           \
                                                               const float *s0, float *o0) {                          \
        wk_gather3((wk_knobs){__VA_ARGS__}, cnt, w, off, s0, o0);                                                      \
    }
WK_VARIANT(wk_copy, 1, 4, 0, 32, 0, 0, 0, 0)
WK_VARIANT(wk_nopf, 0, 4, 0, 0, 0, 0, 0, 0)
WK_VARIANT(wk_pf_all, 1, 4, 0, 0, 0, 0, 0, 0)
WK_VARIANT(wk_pf_d8, 1, 8, 0, 0, 0, 0, 0, 0)
WK_VARIANT(wk_pf_run, 2, 4, 0, 0, 0, 0, 0, 0)
WK_VARIANT(wk_pf_half, 3, 4, 0, 0, 0, 0, 0, 0)
WK_VARIANT(wk_pf_px, 4, 4, 0, 0, 0, 0, 0, 0)
WK_VARIANT(wk_pf_run_t1, 2, 8, 1, 0, 0, 0, 0, 0)
WK_VARIANT(wk_nt, 1, 4, 0, 32, 0, 0, 1, 0)
WK_VARIANT(wk_pfw_start, 1, 4, 0, 0, 1, 0, 0, 0)
WK_VARIANT(wk_pfw, 1, 4, 0, 0, 2, 0, 0, 0)
WK_VARIANT(wk_pf_px_pfw, 4, 4, 0, 0, 2, 0, 0, 0)
WK_VARIANT(wk_flat, 1, 4, 0, 32, 0, 1, 0, 0)
WK_VARIANT(wk_flat_pf_all, 1, 4, 0, 0, 0, 1, 0, 0)
WK_VARIANT(wk_flat_pfw, 1, 4, 0, 0, 2, 1, 0, 0)
WK_VARIANT(wk_flat_pf_px_pfw, 4, 4, 0, 0, 2, 1, 0, 0)
WK_VARIANT(wk_next1, 1, 4, 0, 0, 2, 1, 0, 1)
WK_VARIANT(wk_next3, 1, 4, 0, 0, 2, 1, 0, 3)
WK_VARIANT(wk_flat_pfw_d2, 1, 2, 0, 0, 2, 1, 0, 0)
WK_VARIANT(wk_flat_pfw_d8, 1, 8, 0, 0, 2, 1, 0, 0)
WK_VARIANT(wk_flat_pfw_d8_px, 4, 8, 0, 0, 2, 1, 0, 0)
static const struct {
    const char *name;
    wk_kernel k;
} wk_kernels[] = {{"production", wk_production},
                  {"copy", wk_copy},
                  {"no prefetch", wk_nopf},
                  {"pf all rows", wk_pf_all},
                  {"pf d8 all rows", wk_pf_d8},
                  {"pf 24 lines", wk_pf_run},
                  {"pf 12 lines", wk_pf_half},
                  {"pf 3 lines", wk_pf_px},
                  {"pf 24 lines T1 d8", wk_pf_run_t1},
                  {"stream stores", wk_nt},
                  {"pf all + pfw start", wk_pfw_start},
                  {"pf all + pfw", wk_pfw},
                  {"pf 3 lines + pfw", wk_pf_px_pfw},
                  {"flat", wk_flat},
                  {"flat pf all", wk_flat_pf_all},
                  {"flat pf all + pfw", wk_flat_pfw},
                  {"flat pf 3 + pfw", wk_flat_pf_px_pfw},
                  {"flat pf all + pfw + next 1", wk_next1},
                  {"flat pf all + pfw + next 3", wk_next3},
                  {"flat pf all d2 + pfw", wk_flat_pfw_d2},
                  {"flat pf all d8 + pfw", wk_flat_pfw_d8},
                  {"flat pf 3 d8 + pfw", wk_flat_pfw_d8_px}};
#define WK_KERNELS ((int)(sizeof wk_kernels / sizeof wk_kernels[0]))
#endif

static int walk_main(int argc, char **argv) {
#ifdef AB_HAVE_AVX512
    if (argc < 7 || !__builtin_cpu_supports("avx512f")) {
        fprintf(stderr, "usage: kernel_ab walk reps in_c out_c size density [kernels, e.g. 0,2 [strip_groups [walk_prefetch "
                        "[in_block [row_pad]]]]] (AVX-512)\n");
        return 2;
    }
    const int reps = atoi(argv[2]), Ci = atoi(argv[3]), Co = atoi(argv[4]), H = atoi(argv[5]), N = 128;
    const double d = atof(argv[6]);
    if (reps < 1 || Ci < 1 || Co < 1 || H < 5 || d <= 0 || d > 1) return 2;
    int on[WK_KERNELS], any = 0;
    memset(on, 0, sizeof on);
    int list[64];
    for (int k = 0, n = int_list(argc > 7 ? argv[7] : "", list, 64); k < n; k++)
        if (list[k] < WK_KERNELS) on[list[k]] = 1, any = 1;
    for (int v = 0; v < WK_KERNELS; v++) on[v] |= !any;
    st_rng rng;
    st_rng_seed(&rng, 1, 0);
    /* argument 11: floats of padding after each input row and plane (the L1 sets of a neighbourhood) */
    wk_layer l;
    wk_layer_make(&rng, Ci, Co, H, d, argc > 11 ? atoi(argv[11]) : 0, &l);
    const int64_t *row_ptr = l.row_ptr, *off = l.off, nnz = l.nnz;
    const float *w = l.w, *x = l.x;
    const size_t ny = (size_t)N * Co * H * H;
    float *y = tensor(ny), *yl1 = tensor(3 * 128);
    memset(y, 0, ny * 4);
    const int groups = (H - 2) / 3;
    /* argument 8: the walk in column strips of this many groups (each strip top to bottom); default: row by row */
    const int strip = argc > 8 && atoi(argv[8]) > 0 ? atoi(argv[8]) : groups;
    const int walk_pf = argc > 9 ? atoi(argv[9]) : 0;
    const int64_t new_lines = (int64_t)Ci * 3 * 24;
    const int cb = argc > 10 && atoi(argv[10]) > 0 && atoi(argv[10]) < Ci ? atoi(argv[10]) : 0;
    const int nblk = cb ? (Ci + cb - 1) / cb : 1;
    int64_t *blk_ptr = malloc(sizeof(int64_t) * (size_t)Co * (size_t)(nblk + 1));
    for (int o = 0; o < Co; o++) {
        int64_t e = row_ptr[o];
        for (int b = 0; b <= nblk; b++) {
            while (e < row_ptr[o + 1] && off[e] / l.plane < (int64_t)b * cb) e++;
            blk_ptr[(size_t)o * (nblk + 1) + b] = b == nblk ? row_ptr[o + 1] : e;
        }
    }
    const int64_t plane = (int64_t)H * H * N;
    const int NV = 4 * WK_KERNELS;
    double *u = malloc(sizeof(double) * (size_t)NV * reps);
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < NV; k++) {
            const int v = (k + r) % NV, kern = v / 4, fix_x = v & 1, fix_y = v & 2;
            if (!on[kern]) continue;
            const wk_kernel f = wk_kernels[kern].k;
            const double c0 = cpu_ms();
            for (int g0 = 0; g0 < groups; g0 += strip)
                for (int oh = 1; oh < H - 1; oh++)
                for (int gq = g0; gq < g0 + strip && gq < groups; gq++) {
                    const int ow = 1 + 3 * gq;
                    const int64_t base = fix_x ? 0 : (oh - 1) * l.row + (ow - 1) * N;
                    /* argument 9 (1: T1, 2: T2): the walk prefetches the input columns new to the
                     * next group of the row (3 rows x 3 pixels x in_c runs), spread over the channels */
                    const int64_t nbase = base + 3 * N;
                    const int next_ok = walk_pf && gq + 1 < g0 + strip && gq + 1 < groups && !fix_x;
                    for (int o = 0; o < Co; o++) {
                        float *yo = fix_y ? yl1 : y + o * plane + ((int64_t)oh * H + ow) * N;
                        if (next_ok)
                            for (int l = (int)(new_lines * o / Co); l < (int)(new_lines * (o + 1) / Co); l++) {
                                /* line l: channel, row, then 24 lines of the 3 new pixels (pixels 2-4 after nbase) */
                                const int i = l / 72, kh = l / 24 % 3, ln = l % 24;
                                const char *q = (const char *)(x + nbase + (((int64_t)i * H + kh) * H + 2) * N) + 64 * ln;
                                if (walk_pf == 1) _mm_prefetch(q, _MM_HINT_T1);
                                else _mm_prefetch(q, _MM_HINT_T2);
                            }
                        if (cb == 0) f((int)(row_ptr[o + 1] - row_ptr[o]), w + row_ptr[o], off + row_ptr[o], x + base, yo);
                    }
                    /* argument 10: the production gather over blocks of cb input channels, each block
                     * every output channel, accumulating into y (the same sums in the same order) */
                    for (int b = 0; cb && b < nblk; b++)
                        for (int o = 0; o < Co; o++) {
                            float *yo = fix_y ? yl1 : y + o * plane + ((int64_t)oh * H + ow) * N;
                            const int64_t e0 = blk_ptr[(size_t)o * (nblk + 1) + b], e1 = blk_ptr[(size_t)o * (nblk + 1) + b + 1];
                            st_spconv_prims_avx512.gather_px(128, 3, (int)(e1 - e0), w + e0, off + e0, x + base, 128, 0.0f,
                                                             b > 0, yo, 128, NULL, 0);
                        }
                }
            u[(size_t)v * reps + r] = cpu_ms() - c0;
        }
    int same = 1; /* the blocked walk gives the bits of the unblocked one */
    if (cb) {
        float *y1 = tensor(3 * 128), *y2 = tensor(3 * 128);
        for (int oh = 1; oh < H - 1; oh++)
            for (int gq = 0; gq < groups; gq++)
                for (int o = 0; o < Co; o++) {
                    const int64_t base = (oh - 1) * l.row + 3 * gq * N;
                    st_spconv_prims_avx512.gather_px(128, 3, (int)(row_ptr[o + 1] - row_ptr[o]), w + row_ptr[o],
                                                     off + row_ptr[o], x + base, 128, 0.0f, 0, y1, 128, NULL, 0);
                    for (int b = 0; b < nblk; b++) {
                        const int64_t e0 = blk_ptr[(size_t)o * (nblk + 1) + b], e1 = blk_ptr[(size_t)o * (nblk + 1) + b + 1];
                        st_spconv_prims_avx512.gather_px(128, 3, (int)(e1 - e0), w + e0, off + e0, x + base, 128, 0.0f,
                                                         b > 0, y2, 128, NULL, 0);
                    }
                    same &= memcmp(y1, y2, sizeof(float) * 3 * 128) == 0;
                }
        free(y1), free(y2);
    }
    const double flop = 2.0 * (double)nnz * (H - 2) * groups * 3 * N;
    if (cb) printf("kernel_ab walk: production gather over blocks of %d input channels, accumulating (%s)\n", cb,
                   same ? "the same bits as unblocked" : "DIFFERENT from unblocked");
    printf("kernel_ab walk: %d -> %d channels, %dx%d, density %.4f (kept %lld, %.1f per row), batch 128, groups of 3 "
           "pixels, interior only, %s %d groups, %d rounds (CPU-time median GFLOP/s)\n",
           Ci, Co, H, H, d, (long long)nnz, (double)nnz / Co, strip < groups ? "column strips of" : "rows of", strip, reps);
    printf("  %-22s %9s %9s %9s %9s\n", "kernel", "real", "x fixed", "y fixed", "both");
    for (int kern = 0; kern < WK_KERNELS; kern++) {
        if (!on[kern]) continue;
        printf("  %2d %-19s", kern, wk_kernels[kern].name);
        for (int m = 0; m < 4; m++) {
            double *t = u + (size_t)(4 * kern + m) * reps;
            qsort(t, (size_t)reps, sizeof(double), cmp);
            printf(" %9.1f", flop / t[reps / 2] / 1e6);
        }
        printf("\n");
    }
    wk_layer_free(&l);
    free(y), free(yl1), free(u), free(blk_ptr);
    return 0;
#else
    (void)argc, (void)argv;
    return 2;
#endif
}

/* `kernel_ab wgrad reps in_c out_c size density`: the weight gradient's
 * interior walk (3x3, stride 1, batch 128, one chunk of every output
 * channel) with the AVX-512 SDDMM one pixel per call (sddmm, what the walk
 * calls) against sddmm_px on 2 and 3 adjacent pixels per call, which loads
 * and stores each kept weight's accumulator once for all of them (the same
 * additions in the same order: the results are compared bit for bit). */

static int wgrad_main(int argc, char **argv) {
#ifdef AB_HAVE_AVX512
    if (argc < 7 || !__builtin_cpu_supports("avx512f")) {
        fprintf(stderr, "usage: kernel_ab wgrad reps in_c out_c size density (AVX-512)\n");
        return 2;
    }
    const int reps = atoi(argv[2]), Ci = atoi(argv[3]), Co = atoi(argv[4]), H = atoi(argv[5]), N = 128;
    const double d = atof(argv[6]);
    if (reps < 1 || Ci < 1 || Co < 1 || H < 5 || d <= 0 || d > 1) return 2;
    st_rng rng;
    st_rng_seed(&rng, 1, 0);
    wk_layer l;
    wk_layer_make(&rng, Ci, Co, H, d, 0, &l);
    const int64_t *row_ptr = l.row_ptr, *off = l.off, nnz = l.nnz;
    const float *x = l.x;
    const size_t ny = (size_t)N * Co * H * H;
    float *dy = tensor(ny), *acc[3];
    for (size_t i = 0; i < ny; i++) dy[i] = (float)st_rng_normal(&rng);
    for (int v = 0; v < 3; v++) acc[v] = tensor((size_t)nnz * 16);
    const int64_t plane = (int64_t)H * H * N;
    const int groups = (H - 2) / 6; /* 6 pixels: 6 x 1, 3 x 2 or 2 x 3 per call */
    double *u = malloc(sizeof(double) * 3 * (size_t)reps);
    static const char *names3[3] = {"sddmm, 1 pixel", "sddmm_px, 2 pixels", "sddmm_px, 3 pixels"};
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < 3; k++) {
            const int v = (k + r) % 3, px = v + 1;
            memset(acc[v], 0, sizeof(float) * 16 * (size_t)nnz);
            const double c0 = cpu_ms();
            for (int oh = 1; oh < H - 1; oh++)
                for (int gq = 0; gq < groups; gq++)
                    for (int ow = 1 + 6 * gq; ow < 7 + 6 * gq; ow += px) {
                        const int64_t base = ((int64_t)(oh - 1) * H + (ow - 1)) * N, at = ((int64_t)oh * H + ow) * N;
                        for (int o = 0; o < Co; o++) {
                            const int64_t e0 = row_ptr[o], cnt = row_ptr[o + 1] - e0;
                            const float *dd = dy + o * plane + at;
                            float *a = acc[v] + e0 * 16;
                            if (v == 0) st_spconv_prims_avx512.sddmm(N, (int)cnt, off + e0, NULL, dd, x + base, a);
#ifdef ST_SPCONV_HAVE_SDDMM_PX
                            else st_spconv_prims_avx512.sddmm_px(N, px, (int)cnt, off + e0, NULL, dd, N, x + base, N, a);
#else
                            else
                                for (int q = 0; q < px; q++)
                                    st_spconv_prims_avx512.sddmm(N, (int)cnt, off + e0, NULL, dd + q * N, x + base + q * N, a);
#endif
                        }
                    }
            u[(size_t)v * reps + r] = cpu_ms() - c0;
        }
    const double flop = 2.0 * (double)nnz * (H - 2) * groups * 6 * N;
    printf("kernel_ab wgrad: %d -> %d channels, %dx%d, density %.4f (kept %lld, %.1f per row), batch 128, interior "
           "only, one chunk, %d rounds (CPU-time median GFLOP/s)\n",
           Ci, Co, H, H, d, (long long)nnz, (double)nnz / Co, reps);
    for (int v = 0; v < 3; v++) {
        double *t = u + (size_t)v * reps;
        qsort(t, (size_t)reps, sizeof(double), cmp);
        printf("  %-22s %7.1f%s\n", names3[v], flop / t[reps / 2] / 1e6,
               v && memcmp(acc[v], acc[0], sizeof(float) * 16 * (size_t)nnz) ? "  (DIFFERENT sums)" : "");
    }
    wk_layer_free(&l);
    free(dy), free(u);
    for (int v = 0; v < 3; v++) free(acc[v]);
    return 0;
#else
    (void)argc, (void)argv;
    return 2;
#endif
}

/* `kernel_ab passes ...`: GFLOP/s of the three sparse-convolution passes at one layer shape (see usage). */
static int passes_main(int argc, char **argv) {
    if (argc < 8) {
        fprintf(stderr, "usage: kernel_ab passes reps in_c out_c size density batch [stride kernel [px_blocks, e.g. 1,2,3 "
                        "[tunings, e.g. zen,intel [channel blocks, e.g. 0,32,64 (0: none)]]]]\n");
        return 2;
    }
    const int reps = atoi(argv[2]), Ci = atoi(argv[3]), Co = atoi(argv[4]), H = atoi(argv[5]), N = atoi(argv[7]);
    const double d = atof(argv[6]);
    const int S = argc > 8 ? atoi(argv[8]) : 1, K = argc > 9 ? atoi(argv[9]) : 3;
    if (reps < 1 || Ci < 1 || Co < 1 || H < K || N < 1 || S < 1 || K < 1 || d <= 0 || d > 1) {
        fprintf(stderr, "kernel_ab passes: bad arguments\n");
        return 2;
    }
    st_rng rng;
    st_rng_seed(&rng, 1, 0);
    const int cols = Ci * K * K;
    int64_t *row_ptr = malloc(sizeof(int64_t) * (size_t)(Co + 1));
    int32_t *col = malloc(sizeof(int32_t) * (size_t)Co * (size_t)cols);
    float *w = malloc(sizeof(float) * (size_t)Co * (size_t)cols);
    int64_t nnz = 0;
    for (int o = 0; o < Co; o++) {
        row_ptr[o] = nnz;
        for (int j = 0; j < cols; j++)
            if (st_rng_uniform_double(&rng) < d) col[nnz] = j, w[nnz++] = (float)(st_rng_normal(&rng) * 0.3);
    }
    row_ptr[Co] = nnz;
    st_spconv_geom g;
    st_spconv_geom_init(&g, N, Ci, H, H, Co, K, S, K / 2);
    st_spconv_plan *p;
    if (st_spconv_plan_create(&g, row_ptr, col, &p)) {
        fprintf(stderr, "kernel_ab: %s\n", st_last_error());
        return 1;
    }
    const size_t nx = (size_t)N * Ci * H * H, ny = (size_t)N * Co * g.out_h * g.out_w;
    float *x = tensor(nx), *dx = tensor(nx), *y = tensor(ny), *dy = tensor(ny);
    float *dw = calloc((size_t)(nnz > 0 ? nnz : 1), 4);
    for (size_t i = 0; i < nx; i++) x[i] = (float)st_rng_normal(&rng);
    for (size_t i = 0; i < ny; i++) dy[i] = (float)st_rng_normal(&rng) * 1e-2f;
    /* variants: the three passes at each pixel blocking of the list (argument 10, default "1") */
    int blk[8], nb = 0, list[8];
    for (int k = 0, n = int_list(argc > 10 ? argv[10] : "1", list, 8); k < n; k++)
        if (list[k] >= 1) blk[nb++] = list[k];
    /* and each tuning of the AVX-512 gathers in the list (argument 11, e.g. "zen,intel"; default: the CPU's) */
    int tun[AB_TUNINGS], ntu = 0;
    for (const char *q = argc > 11 ? argv[11] : ""; *q && ntu < AB_TUNINGS;) { /* comma list, names exact */
        const size_t len = strcspn(q, ",");
        for (int t = 0; t < AB_TUNINGS; t++)
            if (strlen(ab_tuning_name(t)) == len && strncmp(q, ab_tuning_name(t), len) == 0) tun[ntu++] = t;
        q += len + (q[len] == ',');
    }
    if (ntu == 0) tun[ntu++] = ab_tuning_current();
    /* and each channel block in the list (argument 12, e.g. "0,32,64"; 0: none; default: the plan's forward
     * block), for the forward's input channels and the input gradient's output channels alike */
    int ibk[8];
    int nib = int_list(argc > 12 ? argv[12] : "", ibk, 8);
#ifdef ST_SPCONV_HAVE_IN_BLOCK
    if (nib == 0) ibk[nib++] = st_spconv_plan_block(p, ST_SPCONV_FORWARD);
#else
    if (nib == 0) ibk[nib++] = 0;
#endif
    static const char *pn[4] = {"forward", "input_gradient", "weight_gradient", "forward+stats"};
    const int NV = 4 * nb * ntu * nib;
    double *u[4 * 8 * AB_TUNINGS * 8];
    double *stats = malloc(sizeof(double) * 3 * (size_t)Co);
    for (int v = 0; v < NV; v++) u[v] = malloc(sizeof(double) * (size_t)reps);
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < NV; k++) {
            const int v = (k + r) % NV;
#ifdef ST_SPCONV_PX_BLOCK_DEFAULT /* absent before pixel blocking */
            st_spconv_plan_set_px_block(p, blk[v / 4 % nb]);
#endif
            ab_tuning_force(tun[v / 4 / nb % ntu]);
#ifdef ST_SPCONV_HAVE_IN_BLOCK
            if (st_spconv_plan_set_block(p, ST_SPCONV_FORWARD, ibk[v / 4 / nb / ntu]) ||
                st_spconv_plan_set_block(p, ST_SPCONV_INPUT_GRADIENT, ibk[v / 4 / nb / ntu])) {
                fprintf(stderr, "kernel_ab: %s\n", st_last_error());
                return 1;
            }
#endif
            const double c0 = cpu_ms();
            switch (v % 4) {
            case 0: st_spconv_forward(p, x, w, NULL, y); break;
            case 3: st_spconv_forward_stats(p, x, w, NULL, y, stats); break;
            case 1: st_spconv_backward_data(p, dy, w, dx, 0); break;
            case 2: st_spconv_backward_weight(p, x, dy, dw, NULL); break;
            }
            u[v][r] = cpu_ms() - c0;
        }
    ab_tuning_force(tun[0]);
    const double flop = 2.0 * (double)nnz * g.out_h * g.out_w * N;
    printf("kernel_ab passes: %d -> %d channels, %dx%d, stride %d, kernel %d, density %.4f (kept %lld), batch %d, "
           "%d threads, %d rounds (CPU-time median ms, GFLOP/s)\n",
           Ci, Co, H, H, S, K, d, (long long)nnz, N, omp_get_max_threads(), reps);
    for (int v = 0; v < NV; v++) {
        qsort(u[v], (size_t)reps, sizeof(double), cmp);
        const double med = u[v][reps / 2];
        printf("  %-16s px_block %d %-5s block %4d %8.3f ms %7.1f GFLOP/s\n", pn[v % 4], blk[v / 4 % nb],
               ab_tuning_name(tun[v / 4 / nb % ntu]), ibk[v / 4 / nb / ntu], med, flop / med / 1e6);
    }
    st_spconv_plan_free(p);
    free(row_ptr), free(col), free(w), free(x), free(dx), free(y), free(dy), free(dw), free(stats);
    for (int v = 0; v < NV; v++) free(u[v]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "passes") == 0) return passes_main(argc, argv);
    if (argc > 1 && strcmp(argv[1], "probe") == 0) return probe_main(argc, argv);
    if (argc > 1 && strcmp(argv[1], "walk") == 0) return walk_main(argc, argv);
    if (argc > 1 && strcmp(argv[1], "wgrad") == 0) return wgrad_main(argc, argv);
    const int reps = argc > 1 ? atoi(argv[1]) : 15;
    const int C = argc > 2 ? atoi(argv[2]) : 16, H = argc > 3 ? atoi(argv[3]) : 32;
    const double d = argc > 4 ? atof(argv[4]) : 0.1545;
    const int N = argc > 5 ? atoi(argv[5]) : 128;
    if (reps < 1 || C < 1 || C > 64 || H < 3 || N < 64 || N % 64 || d <= 0 || d > 1) {
        fprintf(stderr, "usage: kernel_ab [reps] [channels <= 64] [size >= 3] [density] [batch, a multiple of 64]\n");
        return 2;
    }
    st_rng rng;
    st_rng_seed(&rng, 1, 0);
    layer l1, l2;
    make_layer(&rng, N, C, H, d, &l1);
    make_layer(&rng, N, C, H, d, &l2);
    st_spconv_geom g, gt[2];
    st_spconv_geom_init(&g, N, C, H, H, C, 3, 1, 1);
    const int tiles[2] = {32, 64};
    st_spconv_plan *p1, *p2, *pt1[2], *pt2[2];
    if (st_spconv_plan_create(&g, l1.row_ptr, l1.col, &p1) || st_spconv_plan_create(&g, l2.row_ptr, l2.col, &p2)) {
        fprintf(stderr, "kernel_ab: %s\n", st_last_error());
        return 1;
    }
    for (int t = 0; t < 2; t++) {
        st_spconv_geom_init(&gt[t], tiles[t], C, H, H, C, 3, 1, 1);
        if (st_spconv_plan_create(&gt[t], l1.row_ptr, l1.col, &pt1[t]) ||
            st_spconv_plan_create(&gt[t], l2.row_ptr, l2.col, &pt2[t])) {
            fprintf(stderr, "kernel_ab: %s\n", st_last_error());
            return 1;
        }
    }
    const size_t n = (size_t)N * C * H * H;
    float *x = malloc(n * 4), *a = malloc(n * 4), *b = malloc(n * 4), *z = malloc(n * 4), *g1 = malloc(n * 4);
    float *dz = malloc(n * 4), *da = malloc(n * 4);
    if (!x || !a || !b || !z || !g1 || !dz || !da) {
        fprintf(stderr, "kernel_ab: out of memory for 7 tensors of %zu floats\n", n);
        return 1;
    }
    for (size_t i = 0; i < n; i++) x[i] = (float)st_rng_normal(&rng), dz[i] = (float)st_rng_normal(&rng) * 1e-2f;
    float gamma[64], beta[64], mean[64], var[64], save_mean[64], save_invstd[64], rm[64], rv[64];
    float scale[64], shiftv[64], dgamma[64], dbeta[64];
    for (int c = 0; c < C; c++) gamma[c] = 1.0f, beta[c] = 0.1f, rm[c] = 0.0f, rv[c] = 1.0f;
    double *scratch = malloc(sizeof(double) * (st_bn_act_scratch_doubles(&(st_bn_act_shape){N, C, H * H, 1}, 64) + 64));
    double stats[3 * 64], tstats[3 * 64], sums[2 * 64];
    const st_bn_act_shape cm = {1, C, H * H * N, 1};
    double *t[VARIANTS], *u[VARIANTS];
    for (int v = 0; v < VARIANTS; v++) t[v] = malloc(sizeof(double) * (size_t)reps), u[v] = malloc(sizeof(double) * (size_t)reps);
    const int have512 = __builtin_cpu_supports("avx512f");
    int on[VARIANTS];
    for (int v = 0; v < VARIANTS; v++) on[v] = argc <= 6;
    int list[64];
    for (int k = 0, n = int_list(argc > 6 ? argv[6] : "", list, 64); k < n; k++)
        if (list[k] < VARIANTS) on[list[k]] = 1;

    for (int r = 0; r < reps; r++)
        for (int k = 0; k < VARIANTS; k++) {
            const int v = (k + r) % VARIANTS; /* rotate the order every round */
            if (!on[v]) continue;
            const double t0 = omp_get_wtime(), c0 = cpu_ms();
            switch (v) {
            case 0: st_spconv_forward(p1, x, l1.w, NULL, a); break;
            case 1: st_spconv_forward_stats(p1, x, l1.w, NULL, a, stats); break;
            case 2:
                st_bn_act_forward_train(&cm, a, gamma, beta, NULL, 1, 0.1f, 1e-5f, b, save_mean, save_invstd, rm, rv,
                                        scratch);
                break;
            case 3:
                st_bn_act_forward_train_stats(&cm, stats, a, gamma, beta, NULL, 1, 0.1f, 1e-5f, b, save_mean,
                                              save_invstd, rm, rv);
                break;
            case 9:
                st_spconv_forward(p1, x, l1.w, NULL, a);
                st_bn_act_forward_train(&cm, a, gamma, beta, NULL, 1, 0.1f, 1e-5f, b, save_mean, save_invstd, rm, rv,
                                        scratch);
                st_spconv_forward(p2, b, l2.w, NULL, z);
                break;
            case 4:
                st_spconv_forward_stats(p1, x, l1.w, NULL, a, stats);
                st_bn_act_forward_train_stats(&cm, stats, a, gamma, beta, NULL, 1, 0.1f, 1e-5f, b, save_mean,
                                              save_invstd, rm, rv);
                st_spconv_forward(p2, b, l2.w, NULL, z);
                break;
            case 5:
            case 11: {
                const int ti = v == 5 ? 0 : 1, T = tiles[ti], nt = N / T;
                const size_t tn = n / (size_t)nt; /* one tile's CHWN block */
                memset(tstats, 0, sizeof tstats);
                for (int q = 0; q < nt; q++) {
                    st_spconv_forward_stats(pt1[ti], x + q * tn, l1.w, NULL, a + q * tn, stats);
                    for (int c = 0; c < C; c++) { /* re-shift each tile's sums to tile 0's shift */
                        if (q == 0) tstats[3 * c] = stats[3 * c];
                        const double dk = stats[3 * c] - tstats[3 * c], cnt = (double)H * H * T;
                        tstats[3 * c + 1] += stats[3 * c + 1] + cnt * dk;
                        tstats[3 * c + 2] += stats[3 * c + 2] + 2 * dk * stats[3 * c + 1] + cnt * dk * dk;
                    }
                }
                const double cnt = (double)H * H * N;
                for (int c = 0; c < C; c++) {
                    const double m1 = tstats[3 * c + 1] / cnt;
                    mean[c] = (float)(tstats[3 * c] + m1), var[c] = (float)(tstats[3 * c + 2] / cnt - m1 * m1);
                }
                const st_bn_act_shape ts = {1, C, H * H * T, 1};
                for (int q = 0; q < nt; q++) {
                    st_bn_act_forward_eval(&ts, a + q * tn, gamma, beta, mean, var, 1e-5f, NULL, 1, b + q * tn, scratch);
                    st_spconv_forward(pt2[ti], b + q * tn, l2.w, NULL, z + q * tn);
                }
                break;
            }
            case 6:
            case 7:
#ifdef AB_HAVE_AVX512
                if (!have512) break;
                st_spconv_forward_stats(p1, x, l1.w, NULL, a, stats);
                for (int c = 0; c < C; c++) {
                    const double cnt = (double)H * H * N, m1 = stats[3 * c + 1] / cnt;
                    const double is = 1.0 / sqrt(stats[3 * c + 2] / cnt - m1 * m1 + 1e-5);
                    scale[c] = (float)(gamma[c] * is), shiftv[c] = (float)(beta[c] - (stats[3 * c] + m1) * gamma[c] * is);
                }
                if (v == 6) {
                    st_bn_act_forward_train_stats(&cm, stats, a, gamma, beta, NULL, 1, 0.1f, 1e-5f, b, save_mean,
                                                  save_invstd, rm, rv);
                    proto_conv(&l2, b, scale, shiftv, 0, z);
                } else {
                    proto_conv(&l2, a, scale, shiftv, 1, z);
                }
#endif
                break;
            case 8:
                st_spconv_backward_data(p2, dz, l2.w, g1, 0);
                st_bn_act_backward(&cm, a, b, 1, g1, gamma, save_mean, save_invstd, da, 0, NULL, 0, dgamma, dbeta,
                                   scratch);
                break;
            case 10: {
                st_spconv_bn_sums bs = {b, a, save_mean, sums};
                if (st_spconv_backward_data_bn_sums(p2, dz, l2.w, g1, 0, &bs) != ST_OK) {
                    fprintf(stderr, "kernel_ab: %s\n", st_last_error());
                    return 1;
                }
                st_bn_act_backward_sums(&cm, sums, a, b, 1, g1, gamma, save_mean, save_invstd, da, 0, NULL, 0, dgamma,
                                        dbeta);
                break;
            }
            }
            t[v][r] = 1e3 * (omp_get_wtime() - t0);
            u[v][r] = cpu_ms() - c0;
        }
    const double flop = 2.0 * (double)l1.row_ptr[C] * H * H * N; /* one conv pass */
    printf("kernel_ab: %d -> %d channels, %dx%d, density %.4f, batch %d, %d threads, %d rounds\n"
           "  (ms, min / median: wall | CPU time of all threads)\n", C,
           C, H, H, d, N, omp_get_max_threads(), reps);
    for (int v = 0; v < VARIANTS; v++) {
        if (!on[v] || ((v == 6 || v == 7) && !have512)) continue;
        qsort(t[v], (size_t)reps, sizeof(double), cmp);
        qsort(u[v], (size_t)reps, sizeof(double), cmp);
        printf("  %-14s %8.3f / %8.3f | %8.3f / %8.3f\n", names[v], t[v][0], t[v][reps / 2], u[v][0], u[v][reps / 2]);
    }
    printf("  (one conv pass: %.1f MFLOP)\n", flop / 1e6);
    return 0;
}
