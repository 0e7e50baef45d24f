/* Per-layer crossover between the direct sparse kernels and the dense CHWN
 * GEMM (the measurement behind exec/policy.c's per-layer rule).
 *
 * For each layer shape of a list (CIFAR and ImageNet models; ImageNet
 * stages at reduced image sizes, which keep the channels and the kernel),
 * times one training step's three passes (forward, input gradient, weight
 * gradient) of the layer with the direct sparse kernels at a range of
 * densities and with the dense GEMM, alternating the variants round by
 * round, and prints the median time of each (on one thread the process's
 * CPU time, so time lost to other jobs on a shared machine is left out; on
 * several threads wall time, for a quiet machine) and the density
 * where both take equally long (linear interpolation between the measured
 * densities; "> 1" when the direct kernels win even dense).
 *
 *   build/layer_crossover [rounds] [threads] [first]   (defaults: 5 rounds, 1 thread, shape 0)
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"
#include "kernels/dense_chwn.h"
#include "kernels/sparse_conv.h"

typedef struct shape {
    const char *what;
    int in_c, out_c, kernel, stride, size, batch;
} shape;

static const shape shapes[] = {
    {"cifar stem 3->16", 3, 16, 3, 1, 32, 128},
    {"cifar 16->16 3x3 @32", 16, 16, 3, 1, 32, 128},
    {"cifar 32->32 3x3 @16", 32, 32, 3, 1, 16, 128},
    {"cifar 64->64 3x3 @8", 64, 64, 3, 1, 8, 128},
    {"cifar 16->32 1x1 s2 @32", 16, 32, 1, 2, 32, 128},
    {"resnet20_64 64->64 3x3 @32", 64, 64, 3, 1, 32, 128},
    {"vgg 256->256 3x3 @8", 256, 256, 3, 1, 8, 128},
    {"vgg 512->512 3x3 @4", 512, 512, 3, 1, 4, 128},
    {"imagenet stem 3->64 7x7 s2", 3, 64, 7, 2, 56, 32},
    {"imagenet 64->64 1x1 @28", 64, 64, 1, 1, 28, 32},
    {"imagenet 64->64 3x3 @28", 64, 64, 3, 1, 28, 32},
    {"imagenet 64->256 1x1 @28", 64, 256, 1, 1, 28, 32},
    {"wrn 128->128 3x3 @28", 128, 128, 3, 1, 28, 32},
    {"imagenet 256->128 1x1 @28", 256, 128, 1, 1, 28, 32},
    {"imagenet 256->256 3x3 s2 @28", 256, 256, 3, 2, 28, 32},
    {"imagenet 512->512 3x3 @14", 512, 512, 3, 1, 14, 32},
    {"imagenet 1024->256 1x1 @14", 1024, 256, 1, 1, 14, 32},
    {"imagenet 512->2048 1x1 @7", 512, 2048, 1, 1, 7, 32},
    {"imagenet fc 2048->1000", 2048, 1000, 1, 1, 1, 32},
    {"cifar 32->64 1x1 s2 @16", 32, 64, 1, 2, 16, 128},
    {"cifar 16->32 3x3 s2 @32", 16, 32, 3, 2, 32, 128},
    {"cifar fc 64->10", 64, 10, 1, 1, 1, 128},
    {"vgg fc 512->10", 512, 10, 1, 1, 1, 128},
    {"cifar 16->16 3x3 @32 b64", 16, 16, 3, 1, 32, 64},
    {"cifar 64->64 3x3 @8 b256", 64, 64, 3, 1, 8, 256},
    {"imagenet 256->512 1x1 s2 @28", 256, 512, 1, 2, 28, 32},
    {"imagenet 128->128 3x3 @56 b16", 128, 128, 3, 1, 56, 16},
    {"imagenet 64->64 3x3 @28 b128", 64, 64, 3, 1, 28, 128},
    {"wrn 256->256 3x3 @28", 256, 256, 3, 1, 28, 32},
    {"wrn 512->512 3x3 s2 @28", 512, 512, 3, 2, 28, 32},
    {"wrn 1024->1024 3x3 @7", 1024, 1024, 3, 1, 7, 32},
    {"wrn 1024->512 1x1 @14", 1024, 512, 1, 1, 14, 32},
    {"wrn 2048->1024 1x1 @7", 2048, 1024, 1, 1, 7, 32},
};
static const double densities[] = {0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 1.0};
enum { N_DENS = sizeof densities / sizeof densities[0] };

/* One thread: this process's CPU time (leaves out the time other jobs took
 * the core). Several: wall time (CPU time would hide a poorly parallel
 * pass whose idle threads sleep), so run those on a quiet machine. */
static int wall_clock;
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(wall_clock ? CLOCK_MONOTONIC : CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static float *filled(st_rng *rng, size_t n) {
    float *x = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) x[i] = (float)(st_rng_uniform_double(rng) - 0.5);
    return x;
}

int main(int argc, char **argv) {
    const int rounds = argc > 1 ? atoi(argv[1]) : 5, threads = argc > 2 ? atoi(argv[2]) : 1;
    omp_set_num_threads(threads);
    wall_clock = threads > 1;
    st_rng rng;
    st_rng_seed(&rng, 3, 0);
    printf("%s medians of %d rounds, %d thread(s), ms per training step of the layer (fwd + input grad + weight grad)\n",
           wall_clock ? "wall-time" : "CPU-time", rounds, threads);
    printf("%-30s %8s", "layer", "dense");
    for (int d = 0; d < N_DENS; d++) printf("  d=%-5.2f", densities[d]);
    printf("  crossover\n");
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const shape *sh = &shapes[si];
        st_spconv_geom g;
        st_spconv_geom_init(&g, sh->batch, sh->in_c, sh->size, sh->size, sh->out_c, sh->kernel, sh->stride,
                            sh->kernel / 2);
        if (argc > 3 && si < (size_t)atoi(argv[3])) continue; /* skip the first shapes */
        const int64_t cols = (int64_t)sh->in_c * sh->kernel * sh->kernel;
        const size_t xn = (size_t)g.in_c * g.in_h * g.in_w * g.batch, yn = (size_t)g.out_c * g.out_h * g.out_w * g.batch;
        const size_t wn = (size_t)g.out_c * (size_t)cols;
        float *x = filled(&rng, xn), *dy = filled(&rng, yn), *y = malloc(sizeof(float) * yn);
        float *dx = malloc(sizeof(float) * xn), *w = filled(&rng, wn), *dw = calloc(wn, sizeof(float));
        st_spconv_plan *plans[N_DENS];
        int64_t *row_ptr = malloc(sizeof(int64_t) * (size_t)(g.out_c + 1));
        int32_t *col = malloc(sizeof(int32_t) * wn);
        for (int d = 0; d < N_DENS; d++) {
            int64_t k = 0;
            for (int o = 0; o < g.out_c; o++) {
                row_ptr[o] = k;
                for (int64_t j = 0; j < cols; j++)
                    if (densities[d] >= 1.0 || st_rng_uniform_double(&rng) < densities[d]) col[k++] = (int32_t)j;
            }
            row_ptr[g.out_c] = k;
            if (st_spconv_plan_create(&g, row_ptr, col, &plans[d]) != ST_OK) return 1;
        }
        st_dchwn_plan *dense = NULL;
        if (st_dchwn_plan_create(&g, &dense) != ST_OK) return 1;
        double *t = malloc(sizeof(double) * (size_t)rounds * (N_DENS + 1));
        for (int r = 0; r < rounds; r++)
            for (int v = 0; v <= N_DENS; v++) {
                const double t0 = cpu_now();
                if (v == N_DENS) {
                    st_dchwn_forward(dense, x, w, NULL, y, NULL);
                    st_dchwn_backward_data(dense, dy, w, dx, 0);
                    st_dchwn_backward_weight(dense, x, dy, dw, NULL);
                } else {
                    st_spconv_forward(plans[v], x, w, NULL, y);
                    st_spconv_backward_data(plans[v], dy, w, dx, 0);
                    st_spconv_backward_weight(plans[v], x, dy, dw, NULL);
                }
                t[(size_t)v * rounds + r] = cpu_now() - t0;
            }
        double med[N_DENS + 1];
        for (int v = 0; v <= N_DENS; v++) {
            qsort(t + (size_t)v * rounds, (size_t)rounds, sizeof(double), cmp_double);
            med[v] = t[(size_t)v * rounds + rounds / 2];
        }
        printf("%-30s %8.2f", sh->what, 1e3 * med[N_DENS]);
        for (int d = 0; d < N_DENS; d++) printf("  %7.2f", 1e3 * med[d]);
        double cross = -1.0;
        for (int d = 0; d < N_DENS && cross < 0; d++) {
            if (med[d] < med[N_DENS]) continue;
            if (d == 0) cross = 0.0;
            else cross = densities[d - 1] + (densities[d] - densities[d - 1]) * (med[N_DENS] - med[d - 1]) / (med[d] - med[d - 1]);
        }
        if (cross < 0) printf("  > 1\n");
        else printf("  %.3f\n", cross);
        fflush(stdout);
        for (int d = 0; d < N_DENS; d++) st_spconv_plan_free(plans[d]);
        st_dchwn_plan_free(dense);
        free(x), free(dy), free(y), free(dx), free(w), free(dw), free(row_ptr), free(col), free(t);
    }
    return 0;
}
