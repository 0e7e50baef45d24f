/* Dense convolution on CHWN activations (kernels/dense_chwn.h), the kernel
 * of sparse execution's dense layers:
 *  1. every pass against the scalar references of the direct sparse
 *     convolution (kernels/sparse_conv.h) over an all-kept CSR, on shapes
 *     with padding, strides 1 and 2, kernels 1, 3 and 7, 1x1 stride-1
 *     (no im2col), a linear layer, odd batch sizes, several row blocks and
 *     GEMM tiles; backward data overwriting and accumulating; the weight
 *     gradient accumulating onto what was there; bias;
 *  2. the forward pass's batch-norm statistics against a double sum;
 *  3. 1 and 2 threads give bit-identical results. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "core/rng.h"
#include "kernels/dense_chwn.h"
#include "testing.h"

static double max_rel(const float *a, const float *b, size_t n) {
    double worst = 0.0, scale = 1e-6;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)b[i]));
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - (double)b[i]) / scale);
    return worst;
}

typedef struct shape {
    int batch, in_c, size, out_c, kernel, stride, pad;
    const char *what;
} shape;

/* Runs every pass; results into out[0..4] (y, dx overwrite, dx accumulate, dw, dbias). */
static void run_passes(const st_spconv_geom *g, const float *x, const float *w, const float *bias, const float *dy,
                       const float *dx0, const float *dw0, float **out, double *stats) {
    st_dchwn_plan *p = NULL;
    CHECK_OK(st_dchwn_plan_create(g, &p));
    if (!p) return;
    const size_t xn = (size_t)g->in_c * g->in_h * g->in_w * g->batch;
    const size_t wn = (size_t)g->out_c * g->in_c * g->kernel * g->kernel;
    st_dchwn_forward(p, x, w, bias, out[0], stats);
    st_dchwn_backward_data(p, dy, w, out[1], 0);
    memcpy(out[2], dx0, sizeof(float) * xn);
    st_dchwn_backward_data(p, dy, w, out[2], 1);
    memcpy(out[3], dw0, sizeof(float) * wn);
    memset(out[4], 0, sizeof(float) * (size_t)g->out_c);
    st_dchwn_backward_weight(p, x, dy, out[3], out[4]);
    st_dchwn_plan_free(p);
}

static void check_shape(st_rng *rng, const shape *sh) {
    st_spconv_geom g;
    st_spconv_geom_init(&g, sh->batch, sh->in_c, sh->size, sh->size, sh->out_c, sh->kernel, sh->stride, sh->pad);
    const int64_t cols = (int64_t)sh->in_c * sh->kernel * sh->kernel;
    const size_t xn = (size_t)g.in_c * g.in_h * g.in_w * g.batch, yn = (size_t)g.out_c * g.out_h * g.out_w * g.batch;
    const size_t wn = (size_t)g.out_c * (size_t)cols;
    int64_t *row_ptr = new_bytes(sizeof(int64_t) * (size_t)(g.out_c + 1));
    int32_t *col = new_bytes(sizeof(int32_t) * wn);
    for (int o = 0; o <= g.out_c; o++) row_ptr[o] = o * cols;
    for (size_t e = 0; e < wn; e++) col[e] = (int32_t)(e % (size_t)cols);
    float *x = random_floats(rng, xn), *w = random_floats(rng, wn), *bias = random_floats(rng, (size_t)g.out_c);
    float *dy = random_floats(rng, yn), *dx0 = random_floats(rng, xn), *dw0 = random_floats(rng, wn);
    float *ref[5] = {new_floats(yn), new_floats(xn), new_floats(xn), new_floats(wn), new_floats((size_t)g.out_c)};
    st_spconv_forward_reference(&g, row_ptr, col, x, w, bias, ref[0]);
    st_spconv_backward_data_reference(&g, row_ptr, col, dy, w, ref[1], 0);
    memcpy(ref[2], dx0, sizeof(float) * xn);
    st_spconv_backward_data_reference(&g, row_ptr, col, dy, w, ref[2], 1);
    memcpy(ref[3], dw0, sizeof(float) * wn);
    memset(ref[4], 0, sizeof(float) * (size_t)g.out_c);
    st_spconv_backward_weight_reference(&g, row_ptr, col, x, dy, ref[3], ref[4]);
    double *ref_stats = new_bytes(sizeof(double) * 3 * (size_t)g.out_c);

    float *one[5], *two[5];
    const size_t sizes[5] = {yn, xn, xn, wn, (size_t)g.out_c};
    for (int i = 0; i < 5; i++) one[i] = new_floats(sizes[i]), two[i] = new_floats(sizes[i]);
    double *stats1 = new_bytes(sizeof(double) * 3 * (size_t)g.out_c), *stats2 = new_bytes(sizeof(double) * 3 * (size_t)g.out_c);
    omp_set_num_threads(1);
    run_passes(&g, x, w, bias, dy, dx0, dw0, one, stats1);
    omp_set_num_threads(2);
    run_passes(&g, x, w, bias, dy, dx0, dw0, two, stats2);
    st_spconv_channel_stats_reference(&g, one[0], ref_stats);

    static const char *names[5] = {"forward", "input gradient", "input gradient (accumulate)", "weight gradient",
                                   "bias gradient"};
    int same = 1;
    for (int i = 0; i < 5; i++) {
        const double e = max_rel(one[i], ref[i], sizes[i]);
        printf("  %-34s %-28s max rel err %.1e\n", sh->what, names[i], e);
        CHECK(e < 2e-5);
        same &= memcmp(one[i], two[i], sizeof(float) * sizes[i]) == 0;
    }
    double stat_err = 0.0;
    for (int o = 0; o < g.out_c; o++) {
        const double n = (double)g.out_h * g.out_w * g.batch;
        CHECK(stats1[3 * o] == ref_stats[3 * o]);
        stat_err = fmax(stat_err, fabs(stats1[3 * o + 1] - ref_stats[3 * o + 1]) / n);
        stat_err = fmax(stat_err, fabs(stats1[3 * o + 2] - ref_stats[3 * o + 2]) / (ref_stats[3 * o + 2] + 1e-3));
    }
    CHECK(stat_err < 1e-5);
    same &= memcmp(stats1, stats2, sizeof(double) * 3 * (size_t)g.out_c) == 0;
    printf("  %-34s statistics err %.1e; 1 vs 2 threads %s\n", sh->what, stat_err, same ? "bit-identical" : "DIFFERENT");
    CHECK(same);

    for (int i = 0; i < 5; i++) free(ref[i]), free(one[i]), free(two[i]);
    free(row_ptr), free(col), free(x), free(w), free(bias), free(dy), free(dx0), free(dw0);
    free(ref_stats), free(stats1), free(stats2);
}

int main(void) {
    st_rng rng;
    st_rng_seed(&rng, 11, 0);
    const shape shapes[] = {
        {5, 3, 9, 7, 3, 1, 1, "3x3 s1 p1, batch 5"},
        {17, 4, 11, 6, 3, 2, 1, "3x3 s2 p1, batch 17"},
        {3, 3, 15, 5, 7, 2, 3, "7x7 s2 p3 (stem)"},
        {9, 6, 8, 130, 1, 1, 0, "1x1 s1, 130 outputs (no im2col)"},
        {9, 6, 9, 8, 1, 2, 0, "1x1 s2 (downsample)"},
        {33, 200, 1, 1100, 1, 1, 0, "linear 200 -> 1100, batch 33"},
        {64, 40, 32, 12, 3, 1, 1, "3x3 s1, several row blocks"},
        {4, 1100, 3, 10, 1, 1, 0, "1x1 s1, 1100 inputs (tiles of K)"},
        {3, 120, 5, 4, 3, 1, 1, "3x3, 1080 columns (tiles of K)"},
        {20, 32, 14, 64, 1, 2, 0, "1x1 s2 32->64 @14, batch 20"},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) check_shape(&rng, &shapes[i]);
    TEST_MAIN_END();
}
