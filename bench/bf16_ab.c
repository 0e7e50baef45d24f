/* In-process, interleaved A/B of the bf16 sparse convolution passes
 * (kernels/sparse_conv_bf16.h) against the fp32 ones (kernels/sparse_conv.h)
 * for one layer shape (default: stage 1 of cifar_resnet_56 at ERK 0.05:
 * 16 -> 16 channels, 32x32, 3x3, density 0.1545, batch 128). Built as
 * `bf16_ab` next to `sparsetrain`:
 *     OMP_NUM_THREADS=1 build/bf16_ab [reps] [channels] [size] [density] [batch]
 * Per round every variant runs once, in an order rotated every round, on the
 * same data; the minimum and median per variant are printed, of the wall
 * time and of the process's CPU time (with one thread the CPU time does not
 * count the time the thread waited for a core on a shared machine):
 *   fwd / bwd-data / bwd-weight   fp32 | bf16 cvt (bf16 loads widened, fp32 FMA) |
 *                                 bf16 dp (vdpbf16ps)
 *   to-bf16                       rounding one activation tensor to bf16 (what a
 *                                 producer that writes fp32 would add per pass input)
 *   bn fwd / bn bwd               the fused BN + ReLU step of the sparse executor
 *                                 (kernels/bn_act.h, channel-major, statistics given)
 *                                 in fp32 | with the bf16 copy of y written in the same
 *                                 pass | backward with dx written only in bf16
 *   fwd amx-dense                 where the CPU has AMX-BF16 (and C % 16 == 0, batch
 *                                 % 64 == 0): the same layer as a dense convolution
 *                                 (masked weights as zeros) on the tile unit, a
 *                                 prototype (bench/amx_probe.h), checked against the
 *                                 bf16 sparse forward; also the register-only
 *                                 throughput of FMA, vdpbf16ps and tdpbf16ps
 * Without AVX512_BF16 the bf16 variants run the scalar fallback: the
 * comparison then means nothing, and the program says so. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"
#include "kernels/bf16.h"
#include "kernels/bn_act.h"
#include "kernels/isa.h"
#include "kernels/sparse_conv.h"
#include "kernels/sparse_conv_bf16.h"
#include "amx_probe.h"

static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum { VARIANTS = 15 };
static const char *names[VARIANTS] = {"fwd fp32",        "fwd bf16-cvt",        "fwd bf16-dp",
                                      "bwd-data fp32",   "bwd-data bf16-cvt",   "bwd-data bf16-dp",
                                      "bwd-weight fp32", "bwd-weight bf16-cvt", "bwd-weight bf16-dp",
                                      "to-bf16",         "bn fwd fp32",         "bn fwd +bf16 y",
                                      "bn bwd fp32",     "bn bwd bf16 dx",      "fwd amx-dense"};

int main(int argc, char **argv) {
    const int reps = argc > 1 ? atoi(argv[1]) : 31, C = argc > 2 ? atoi(argv[2]) : 16,
              H = argc > 3 ? atoi(argv[3]) : 32, N = argc > 5 ? atoi(argv[5]) : 128;
    const double d = argc > 4 ? atof(argv[4]) : 0.1545;
    if (reps < 1 || C < 1 || H < 1 || N < 1 || !(d > 0.0 && d <= 1.0)) {
        fprintf(stderr, "usage: bf16_ab [reps >= 1] [channels] [size] [density in (0, 1]] [batch]\n");
        return 2;
    }
    if (!st_isa_has_avx512_bf16())
        printf("bf16_ab: this CPU (or the ISA cap) has no AVX512_BF16: the bf16 rows run the scalar fallback\n");
    st_rng rng;
    st_rng_seed(&rng, 17, 4);
    const int cols = C * 9;
    int64_t *row_ptr = malloc(sizeof(int64_t) * (size_t)(C + 1));
    int32_t *col = malloc(sizeof(int32_t) * (size_t)C * (size_t)cols);
    float *w = malloc(sizeof(float) * (size_t)C * (size_t)cols);
    const size_t n = (size_t)C * H * H * N;
    float *x = malloc(sizeof(float) * n), *dy = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n),
          *dx = malloc(sizeof(float) * n);
    st_bf16 *xh = malloc(sizeof(st_bf16) * n), *dyh = malloc(sizeof(st_bf16) * n), *th = malloc(sizeof(st_bf16) * n);
    st_bf16 *wh = malloc(sizeof(st_bf16) * (size_t)C * (size_t)cols);
    float *dw = calloc((size_t)C * (size_t)cols + 1, sizeof(float));
    double *t[VARIANTS], *u[VARIANTS];
    for (int v = 0; v < VARIANTS; v++) t[v] = malloc(sizeof(double) * (size_t)reps), u[v] = malloc(sizeof(double) * (size_t)reps);
    if (!row_ptr || !col || !w || !x || !dy || !y || !dx || !xh || !dyh || !th || !wh || !dw || !t[VARIANTS - 1] ||
        !u[VARIANTS - 1]) {
        fprintf(stderr, "bf16_ab: out of memory\n");
        return 1;
    }
    int64_t k = 0;
    for (int o = 0; o < C; o++) {
        row_ptr[o] = k;
        for (int j = 0; j < cols; j++)
            if (st_rng_uniform_double(&rng) < d) col[k] = j, w[k++] = (float)(st_rng_normal(&rng) * 0.3);
    }
    row_ptr[C] = k;
    for (size_t i = 0; i < n; i++) x[i] = (float)st_rng_normal(&rng), dy[i] = (float)st_rng_normal(&rng) * 1e-2f;
    st_bf16_from_floats(x, n, xh);
    st_bf16_from_floats(dy, n, dyh);
    st_bf16_from_floats(w, (size_t)k, wh);
    st_spconv_geom g;
    st_spconv_geom_init(&g, N, C, H, H, C, 3, 1, 1);
    st_spconv_plan *p = NULL;
    st_spbf16_plan *q = NULL;
    if (st_spconv_plan_create(&g, row_ptr, col, &p) != ST_OK || st_spbf16_plan_create(&g, row_ptr, col, &q) != ST_OK) {
        fprintf(stderr, "bf16_ab: %s\n", st_last_error());
        return 1;
    }
    /* the BN + ReLU step over y (channel-major: C planes of H*H*N) */
    const st_bn_act_shape bs = {1, C, H * H * N, 1};
    double *stats = malloc(sizeof(double) * 3 * (size_t)C);
    float *bn_par = malloc(sizeof(float) * 6 * (size_t)C);
    double *scratch = malloc(sizeof(double) * st_bn_act_scratch_doubles(&bs, omp_get_max_threads()));
    if (!stats || !bn_par || !scratch) return 1;
    for (int c = 0; c < C; c++) {
        stats[3 * c] = 0.0, stats[3 * c + 1] = 0.0, stats[3 * c + 2] = (double)H * H * N;
        for (int j = 0; j < 6; j++) bn_par[j * C + c] = j == 3 ? 0.0f : 1.0f;
    }
    float *gamma = bn_par, *beta = bn_par + C, *mean = bn_par + 2 * C, *invstd = bn_par + 4 * C;
    float *rmean = bn_par + 3 * C, *rvar = bn_par + 5 * C;
    /* the AMX prototype: dense weights (zeros where masked), channel-paired input */
    const int amx = amx_probe_available() && C % 16 == 0 && N % 64 == 0 && (C <= 32 || C % 32 == 0);
    uint16_t *w_amx = amx ? malloc(sizeof(uint16_t) * amx_packed_weights(C)) : NULL;
    uint16_t *x_amx = amx ? malloc(sizeof(uint16_t) * n) : NULL;
    float *y_amx = amx ? malloc(sizeof(float) * n) : NULL;
    if (amx) {
        float *dense = calloc((size_t)C * (size_t)cols, sizeof(float));
        if (!w_amx || !x_amx || !y_amx || !dense) return 1;
        for (int o = 0; o < C; o++)
            for (int64_t i = row_ptr[o]; i < row_ptr[o + 1]; i++) dense[(size_t)o * cols + col[i]] = w[i];
        amx_pack_weights(dense, C, w_amx);
        amx_pair_channels(xh, C, H * H, N, x_amx);
        free(dense);
        double fma, dp, t16, t32;
        amx_probe_peaks(&fma, &dp, &t16, &t32);
        printf("register-only GFLOP/s on one thread (CPU time): vfmadd231ps zmm %.0f, vdpbf16ps zmm %.0f, "
               "tdpbf16ps K=16 %.0f, K=32 %.0f\n", fma, dp, t16, t32);
        /* the prototype against the bf16 sparse forward (the same bf16 products, summed in another order) */
        st_spbf16_forward(q, ST_SPBF16_DP, xh, wh, NULL, y);
        amx_dense_forward(x_amx, w_amx, C, H, H, N, y_amx);
        double worst = 0.0, scale = 1e-30;
        for (size_t i = 0; i < n; i++) {
            const double e = y_amx[i] - y[i];
            worst = e * e > worst ? e * e : worst;
            scale = (double)y[i] * y[i] > scale ? (double)y[i] * y[i] : scale;
        }
        printf("fwd amx-dense vs bf16-dp: largest difference %.2g of the largest output\n", sqrt(worst / scale));
    } else {
        printf("fwd amx-dense: not run (no AMX-BF16, or a shape the prototype does not take)\n");
    }
    for (int r = 0; r < reps; r++)
        for (int j = 0; j < VARIANTS; j++) {
            const int v = (j + r) % VARIANTS; /* rotate the order every round */
            if (v == 14 && !amx) continue;
            const double t0 = omp_get_wtime(), c0 = cpu_ms();
            switch (v) {
            case 0: st_spconv_forward(p, x, w, NULL, y); break;
            case 1: st_spbf16_forward(q, ST_SPBF16_CVT, xh, wh, NULL, y); break;
            case 2: st_spbf16_forward(q, ST_SPBF16_DP, xh, wh, NULL, y); break;
            case 3: st_spconv_backward_data(p, dy, w, dx, 0); break;
            case 4: st_spbf16_backward_data(q, ST_SPBF16_CVT, dyh, wh, dx, 0); break;
            case 5: st_spbf16_backward_data(q, ST_SPBF16_DP, dyh, wh, dx, 0); break;
            case 6: st_spconv_backward_weight(p, x, dy, dw, NULL); break;
            case 7: st_spbf16_backward_weight(q, ST_SPBF16_CVT, xh, dyh, dw, NULL); break;
            case 8: st_spbf16_backward_weight(q, ST_SPBF16_DP, xh, dyh, dw, NULL); break;
            case 9: st_bf16_from_floats(y, n, th); break;
            case 10:
            case 11:
                st_bn_act_forward_train_stats_bf16(&bs, stats, x, gamma, beta, NULL, 1, 0.1f, 1e-5f, y,
                                                   v == 11 ? th : NULL, mean, invstd, rmean, rvar);
                break;
            case 12:
            case 13:
                st_bn_act_backward_bf16(&bs, x, y, 1, dy, gamma, mean, invstd, v == 12 ? dx : NULL, v == 13 ? th : NULL,
                                        0, NULL, 0, NULL, NULL, scratch);
                break;
            case 14: amx_dense_forward(x_amx, w_amx, C, H, H, N, y_amx); break;
            }
            t[v][r] = 1e3 * (omp_get_wtime() - t0);
            u[v][r] = cpu_ms() - c0;
        }
    printf("bf16_ab: %d -> %d channels, %dx%d, density %.4f (%lld kept), batch %d, %d threads, %d rounds\n"
           "  (ms, min / median: wall | CPU time of all threads; x: median CPU time of the fp32 pass / this one)\n",
           C, C, H, H, d, (long long)k, N, omp_get_max_threads(), reps);
    double med[VARIANTS];
    for (int v = 0; v < VARIANTS; v++) {
        qsort(t[v], (size_t)reps, sizeof(double), cmp);
        qsort(u[v], (size_t)reps, sizeof(double), cmp);
        med[v] = u[v][reps / 2];
    }
    for (int v = 0; v < VARIANTS; v++) {
        if (v == 14 && !amx) continue;
        printf("  %-20s %8.3f / %8.3f | %8.3f / %8.3f", names[v], t[v][0], t[v][reps / 2], u[v][0], med[v]);
        if ((v < 9 && v % 3) || v == 14) printf("   x%.2f", med[v < 9 ? v - v % 3 : 0] / med[v]);
        printf("\n");
    }
    printf("  (one conv pass: %.1f MFLOP)\n", 2.0 * (double)k * H * H * N / 1e6);
    st_spconv_plan_free(p);
    st_spbf16_plan_free(q);
    free(stats), free(bn_par), free(scratch), free(w_amx), free(x_amx), free(y_amx);
    return 0;
}
