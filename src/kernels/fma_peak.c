/* Register-only FMA loops for st_fma_peak_measure (see fma_peak.h). */
#include "kernels/fma_peak.h"

#include <omp.h>

#include "kernels/isa_target.h"

/* Independent accumulator chains: more than latency x FMA ports on current
 * x86 cores (4-5 cycles x 2), so the loop is bound by the FMA units. The
 * chain loops are unrolled so that the chains live in registers: a loop over
 * k keeps acc[] on the stack at -O2 and times store-to-load forwarding
 * instead (bench/fma_peak.c had that defect; objdump of loop_avx512 shows 12
 * register vfmadd231ps per iteration now). */
#define CHAINS 12
/* FMAs per chain between two looks at the clock. */
#define BLOCK 4096

typedef long (*fma_loop)(double seconds, float *sink); /* returns vector FMAs per chain run */

static long loop_generic(double seconds, float *sink) {
    float acc[CHAINS][8];
    for (int k = 0; k < CHAINS; k++)
        for (int l = 0; l < 8; l++) acc[k][l] = (float)(k + l);
    const float a = 0.999999f, b = 1e-7f;
    long done = 0;
    const double end = omp_get_wtime() + seconds;
    do {
        for (int i = 0; i < BLOCK; i++)
            for (int k = 0; k < CHAINS; k++)
                for (int l = 0; l < 8; l++) acc[k][l] = acc[k][l] * a + b;
        done += BLOCK;
    } while (omp_get_wtime() < end);
    float s = 0.0f;
    for (int k = 0; k < CHAINS; k++)
        for (int l = 0; l < 8; l++) s += acc[k][l];
    *sink = s;
    return done;
}

#ifdef ST_HAVE_X86_TARGETS
#include <immintrin.h>

ST_TARGET_AVX2_BEGIN
static long loop_avx2(double seconds, float *sink) {
    __m256 acc[CHAINS];
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int k = 0; k < CHAINS; k++) acc[k] = _mm256_set1_ps((float)k);
    long done = 0;
    const double end = omp_get_wtime() + seconds;
    do {
        for (int i = 0; i < BLOCK; i++) {
#pragma GCC unroll 12
            for (int k = 0; k < CHAINS; k++) acc[k] = _mm256_fmadd_ps(acc[k], a, b);
        }
        done += BLOCK;
    } while (omp_get_wtime() < end);
    float out[8], s = 0.0f;
    for (int k = 0; k < CHAINS; k++) {
        _mm256_storeu_ps(out, acc[k]);
        for (int l = 0; l < 8; l++) s += out[l];
    }
    *sink = s;
    return done;
}
ST_TARGET_END

ST_TARGET_AVX512_BEGIN
static long loop_avx512(double seconds, float *sink) {
    __m512 acc[CHAINS];
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int k = 0; k < CHAINS; k++) acc[k] = _mm512_set1_ps((float)k);
    long done = 0;
    const double end = omp_get_wtime() + seconds;
    do {
        for (int i = 0; i < BLOCK; i++) {
#pragma GCC unroll 12
            for (int k = 0; k < CHAINS; k++) acc[k] = _mm512_fmadd_ps(acc[k], a, b);
        }
        done += BLOCK;
    } while (omp_get_wtime() < end);
    float s = 0.0f;
    for (int k = 0; k < CHAINS; k++) s += _mm512_reduce_add_ps(acc[k]);
    *sink = s;
    return done;
}
ST_TARGET_END
#endif

void st_fma_peak_measure(int threads, int trials, double burst_s, st_fma_peak *out) {
    if (threads < 1) threads = 1;
    if (trials < 1) trials = 1;
    const st_isa isa = st_isa_current();
    fma_loop loop = loop_generic;
    int lanes = 8; /* the generic loop's 8 lanes per chain (vectorised or not, as the compiler decides) */
#ifdef ST_HAVE_X86_TARGETS
    if (isa == ST_ISA_AVX512) loop = loop_avx512, lanes = 16;
    else if (isa == ST_ISA_AVX2) loop = loop_avx2, lanes = 8;
#endif
    double best = 0.0;
    volatile float keep = 0.0f;
    for (int t = 0; t < trials; t++) {
        long total = 0;
        float sink = 0.0f;
        const double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads) reduction(+ : total, sink)
        total += loop(burst_s, &sink);
        const double seconds = omp_get_wtime() - t0;
        keep += sink;
        const double gflops = 2.0 * lanes * CHAINS * (double)total / seconds / 1e9;
        if (gflops > best) best = gflops;
    }
    (void)keep;
    out->gflops = best;
    out->threads = threads;
    out->per_thread = best / threads;
    out->isa = isa;
}
