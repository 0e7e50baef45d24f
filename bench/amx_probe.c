/* AMX-BF16 measurements (amx_probe.h). x86-64 Linux with GCC >= 11 or
 * clang; elsewhere amx_probe_available says no. */
#define _GNU_SOURCE /* syscall */
#include "amx_probe.h"

#include <string.h>
#include <time.h>

#include "kernels/bf16.h"

#if defined(__x86_64__) && defined(__linux__) && (defined(__clang__) || __GNUC__ >= 11)
#define HAVE_AMX_PROBE 1
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

size_t amx_packed_weights(int C) { return (size_t)C * (size_t)C * 9; }

void amx_pack_weights(const float *w, int C, uint16_t *packed) {
    const int kc = C < 32 ? C : 32, nq = C / kc;
    for (int b = 0; b < C / 16; b++)
        for (int k = 0; k < 9; k++)
            for (int q = 0; q < nq; q++) {
                uint16_t *tile = packed + ((size_t)(b * 9 + k) * nq + q) * 16 * kc;
                for (int r = 0; r < 16; r++)
                    for (int i = 0; i < kc; i++)
                        tile[r * kc + i] = st_bf16_round(w[((size_t)(b * 16 + r) * C + q * kc + i) * 9 + k]);
            }
}

void amx_pair_channels(const uint16_t *x, int C, int HW, int N, uint16_t *paired) {
    for (int c = 0; c < C; c++)
        for (int q = 0; q < HW; q++)
            for (int n = 0; n < N; n++)
                paired[((size_t)(c / 2) * HW * N + (size_t)q * N + n) * 2 + c % 2] = x[((size_t)c * HW + q) * N + n];
}

#ifdef HAVE_AMX_PROBE
typedef struct tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) tile_config;

int amx_probe_available(void) {
    __builtin_cpu_init();
    unsigned a, b, c, d;
    __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
    if (!((d >> 22) & 1u) || !((d >> 24) & 1u)) return 0; /* AMX-BF16, AMX-TILE */
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
}

#define REPS 40000000L
/* ten independent accumulators: more than the latency x throughput of either instruction */
#define TEN(OP) OP(a0), OP(a1), OP(a2), OP(a3), OP(a4), OP(a5), OP(a6), OP(a7), OP(a8), OP(a9)
#define FMA(a) a = _mm512_fmadd_ps(a, c, b)
#define DP(a) a = _mm512_dpbf16_ps(a, bh, ch)
/* GFLOP/s of vfmadd231ps zmm (dp 0) or vdpbf16ps zmm (dp 1) on the calling thread */
__attribute__((target("avx512f,avx512bw,avx512bf16"), noinline)) static double register_loop(int dp) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0;
    const __m512 b = _mm512_set1_ps(1e-3f), c = _mm512_set1_ps(0.999f);
    const __m512bh bh = (__m512bh)_mm512_set1_epi16(0x3a80), ch = (__m512bh)_mm512_set1_epi16(0x3f80);
    const double t0 = cpu_seconds();
    if (dp)
        for (long k = 0; k < REPS / 10; k++) TEN(DP);
    else
        for (long k = 0; k < REPS / 10; k++) TEN(FMA);
    const double t = cpu_seconds() - t0;
    volatile float sink = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), a2), a3)) +
                          _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a4, a5), a6), a7)) +
                          _mm512_reduce_add_ps(_mm512_add_ps(a8, a9));
    (void)sink;
    return (dp ? 64.0 : 32.0) * REPS / t / 1e9;
}

/* tiles 0-3: 16 x 16 float accumulators; 4: A (16 x K bf16); 5-7: B (K/2 x 16 pairs) */
__attribute__((target("amx-tile"))) static void configure(int k) {
    tile_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 4; t++) c.rows[t] = 16, c.colsb[t] = 64;
    c.rows[4] = 16, c.colsb[4] = (uint16_t)(2 * k);
    for (int t = 5; t < 8; t++) c.rows[t] = (uint8_t)(k / 2), c.colsb[t] = 64;
    if (k == 32) c.rows[5] = 16; /* tile 5 is a second A (2 x 2 blocking) or a B: the same shape at K = 32 */
    __asm__ volatile("" : : "r"(&c) : "memory"); /* GCC 12 drops the stores above: ldtilecfg's read is not modelled */
    _tile_loadconfig(&c);
}

__attribute__((target("amx-tile,amx-bf16"), noinline)) static double tdp(int k) {
    static uint16_t a[16 * 32] __attribute__((aligned(64))), b[16 * 32] __attribute__((aligned(64)));
    static float out[256] __attribute__((aligned(64)));
    for (int i = 0; i < 16 * 32; i++) a[i] = b[i] = 0x3a80;
    configure(k);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, a, 64);
    _tile_loadd(5, b, 64);
    _tile_loadd(6, b, 64);
    const long n = REPS / 8;
    const double t0 = cpu_seconds();
    for (long i = 0; i < n / 4; i++) {
        _tile_dpbf16ps(0, 4, 5);
        _tile_dpbf16ps(1, 4, 6);
        _tile_dpbf16ps(2, 4, 5);
        _tile_dpbf16ps(3, 4, 6);
    }
    const double t = cpu_seconds() - t0;
    _tile_stored(0, out, 64);
    _tile_release();
    return 2.0 * 16 * 16 * k * (double)(n / 4 * 4) / t / 1e9;
}

void amx_probe_peaks(double *fma, double *dp, double *tdp_k16, double *tdp_k32) {
    *fma = register_loop(0);
    *dp = register_loop(1);
    *tdp_k16 = tdp(16);
    *tdp_k32 = tdp(32);
}

/* the B operand of a term: channel pairs from `pair`, pixel `pixel`, images n0.. (rows one pair plane apart) */
static const uint16_t *input_tile(const uint16_t *paired, size_t plane, int pair, int pixel, int N, int n0) {
    return paired + ((size_t)pair * plane + (size_t)pixel * N + (size_t)n0) * 2;
}

/* the A operand: output channels 16b.., kernel position k, input-channel chunk q */
static const uint16_t *weight_tile(const uint16_t *packed, int b, int k, int nq, int q, int kc) {
    return packed + ((size_t)(b * 9 + k) * nq + q) * 16 * kc;
}

/* the input pixel that kernel position k of output pixel p reads, or -1 (padding) */
static int input_pixel(int p, int k, int H, int W) {
    const int ih = p / W + k / 3 - 1, iw = p % W + k % 3 - 1;
    return ih < 0 || ih >= H || iw < 0 || iw >= W ? -1 : ih * W + iw;
}

#define B_TILE(t, j) _tile_loadd(t, bq + 32 * (j), bstride)
/* Accumulators 0-3 hold 2 blocks of 16 output channels x 2 blocks of 16 images where C % 32 == 0
 * (2 A and 2 B tiles per term), else 1 x 4 (1 A and 4 B tiles per term). */
__attribute__((target("amx-tile,amx-bf16"), noinline)) void amx_dense_forward(const uint16_t *paired,
                                                                               const uint16_t *packed, int C, int H,
                                                                               int W, int N, float *y) {
    const int kc = C < 32 ? C : 32, nq = C / kc, HW = H * W, two = C % 32 == 0;
    const size_t plane = (size_t)HW * N; /* one channel's (or channel pair's) values */
    const long bstride = (long)(plane * 4), ystride = (long)(plane * 4);
    configure(kc);
    for (int b = 0; b < C / 16; b += two ? 2 : 1)
        for (int p = 0; p < HW; p++)
            for (int n0 = 0; n0 < N; n0 += two ? 32 : 64) {
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
                for (int k = 0; k < 9; k++) {
                    const int in = input_pixel(p, k, H, W);
                    for (int q = 0; q < nq && in >= 0; q++) {
                        const uint16_t *bq = input_tile(paired, plane, q * kc / 2, in, N, n0);
                        _tile_loadd(4, weight_tile(packed, b, k, nq, q, kc), 2 * kc);
                        if (two) {
                            _tile_loadd(5, weight_tile(packed, b + 1, k, nq, q, kc), 2 * kc);
                            B_TILE(6, 0);
                            B_TILE(7, 1);
                            _tile_dpbf16ps(0, 4, 6);
                            _tile_dpbf16ps(1, 4, 7);
                            _tile_dpbf16ps(2, 5, 6);
                            _tile_dpbf16ps(3, 5, 7);
                        } else {
                            B_TILE(5, 0);
                            _tile_dpbf16ps(0, 4, 5);
                            B_TILE(6, 1);
                            _tile_dpbf16ps(1, 4, 6);
                            B_TILE(7, 2);
                            _tile_dpbf16ps(2, 4, 7);
                            B_TILE(5, 3);
                            _tile_dpbf16ps(3, 4, 5);
                        }
                    }
                }
                float *yo = y + (size_t)b * 16 * plane + (size_t)p * N + n0;
                _tile_stored(0, yo, ystride);
                _tile_stored(1, yo + 16, ystride);
                _tile_stored(2, two ? yo + 16 * plane : yo + 32, ystride);
                _tile_stored(3, two ? yo + 16 * plane + 16 : yo + 48, ystride);
            }
    _tile_release();
}
#else
int amx_probe_available(void) { return 0; }
void amx_probe_peaks(double *fma, double *dp, double *tdp_k16, double *tdp_k32) {
    *fma = *dp = *tdp_k16 = *tdp_k32 = 0.0;
    (void)cpu_seconds;
}
void amx_dense_forward(const uint16_t *paired, const uint16_t *packed, int C, int H, int W, int N, float *y) {
    (void)paired, (void)packed, (void)C, (void)H, (void)W, (void)N, (void)y;
}
#endif
