/* The machine's FMA peak, for stating measured speed as a fraction of it:
 * every thread runs independent chains of vector FMAs in registers (no
 * memory traffic) and the total rate is printed in GFLOP/s (an FMA = 2 FLOPs).
 * Uses AVX-512 where the CPU has it, else AVX2.
 *   cc -O2 -fopenmp -mavx2 -mfma bench/fma_peak.c -o fma_peak && OMP_NUM_THREADS=2 ./fma_peak */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>

#define CHAINS 12
#define ITERS 200000000L

__attribute__((target("avx512f"))) static double run512(long iters) {
    __m512 acc[CHAINS], a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int k = 0; k < CHAINS; k++) acc[k] = _mm512_set1_ps((float)k);
    for (long i = 0; i < iters; i++) {
        /* unrolled so that the chains live in registers: a loop over k keeps acc[] on the stack at -O2 and
         * times store-to-load forwarding instead of the FMA units (objdump shows 12 vfmadd per iteration) */
#pragma GCC unroll 12
        for (int k = 0; k < CHAINS; k++) acc[k] = _mm512_fmadd_ps(acc[k], a, b);
    }
    float sink = 0;
    for (int k = 0; k < CHAINS; k++) sink += _mm512_reduce_add_ps(acc[k]);
    return (double)sink;
}

__attribute__((target("avx2,fma"))) static double run256(long iters) {
    __m256 acc[CHAINS], a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int k = 0; k < CHAINS; k++) acc[k] = _mm256_set1_ps((float)k);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int k = 0; k < CHAINS; k++) acc[k] = _mm256_fmadd_ps(acc[k], a, b);
    }
    float out[8], sink = 0;
    for (int k = 0; k < CHAINS; k++) {
        _mm256_storeu_ps(out, acc[k]);
        for (int j = 0; j < 8; j++) sink += out[j];
    }
    return (double)sink;
}

int main(void) {
    const int wide = __builtin_cpu_supports("avx512f");
    const int lanes = wide ? 16 : 8;
    const long iters = wide ? ITERS / 2 : ITERS;
    double sink = 0, t0 = omp_get_wtime();
    int threads = 1;
#pragma omp parallel reduction(+ : sink)
    {
#pragma omp single
        threads = omp_get_num_threads();
        sink += wide ? run512(iters) : run256(iters);
    }
    const double seconds = omp_get_wtime() - t0;
    const double gflops = 2.0 * lanes * CHAINS * (double)iters * threads / seconds / 1e9;
    printf("%s FMA peak: %.1f GFLOP/s on %d threads (%.1f per thread) [%g]\n", wide ? "AVX-512" : "AVX2", gflops,
           threads, gflops / threads, sink > 0 ? 0.0 : 1.0);
    return 0;
}
