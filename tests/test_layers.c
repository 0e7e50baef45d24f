/* Layer tests. With no arguments: finite-difference gradient checks of every
 * backward pass, direct (double) references for every forward pass, and the
 * accumulate / eval-mode / running-stats / determinism contracts.
 *   test_layers --parity DIR   run one layer on DIR/spec.txt + DIR/<name>.bin
 *                              inputs and write outputs (layers_parity_test.py)
 *   test_layers --bench        time conv2d forward+backward on two shapes */
#include <cblas.h> /* openblas_get_corename: the bench names the GEMM kernel in use */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"
#include "kernels/chwn_ops.h"
#include "kernels/sparse_conv.h"
#include "nn/layers.h"
#include "testing.h"

/* ------------------------------------------------------------------ helpers */

static float *copy_floats(const float *src, size_t n) {
    float *p = new_floats(n);
    memcpy(p, src, n * sizeof(float));
    return p;
}

static void fill_normal(st_rng *rng, float *a, size_t n, double scale) {
    for (size_t i = 0; i < n; i++) a[i] = (float)(scale * st_rng_normal(rng));
}

static double dot_double(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

/* Fourth-order central difference of f at one float coordinate *p. */
typedef double (*objective_fn)(void *ctx);
static double numeric_derivative(objective_fn f, void *ctx, float *p, float h) {
    const float saved = *p;
    *p = saved + 2 * h;
    double f2 = f(ctx);
    *p = saved + h;
    double f1 = f(ctx);
    *p = saved - h;
    double m1 = f(ctx);
    *p = saved - 2 * h;
    double m2 = f(ctx);
    *p = saved;
    /* the step actually taken in float */
    double step = ((double)(saved + h) - (double)(saved - h)) / 2.0;
    return (-f2 + 8.0 * f1 - 8.0 * m1 + m2) / (12.0 * step);
}

/* Compares analytic (minus the value it was pre-filled with) against numeric
 * derivatives on the coordinates where `select` is NULL or nonzero. */
static void compare_gradient(const char *what, const float *analytic, const float *prefill, const double *numeric,
                             const uint8_t *select, size_t n, double tol) {
    double diff2 = 0.0, ref2 = 0.0, max_abs = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (select && !select[i]) continue;
        double a = (double)analytic[i] - (prefill ? (double)prefill[i] : 0.0);
        double d = a - numeric[i];
        diff2 += d * d;
        ref2 += numeric[i] * numeric[i];
        if (fabs(d) > max_abs) max_abs = fabs(d);
    }
    double rel = sqrt(diff2) / (sqrt(ref2) > 1e-30 ? sqrt(ref2) : 1.0);
    int ok = rel <= tol && ref2 > 0.0;
    printf("  %-44s rel err %.2e  max abs %.2e  %s\n", what, rel, max_abs, ok ? "ok" : "FAIL");
    if (!ok) {
        fprintf(stderr, "%s: gradient mismatch (rel %.3e > tol %.1e or zero reference)\n", what, rel, tol);
        st_test_failures++;
    }
}

static void compare_values(const char *what, const float *got, const double *want, size_t n, double tol) {
    double diff2 = 0.0, ref2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        diff2 += d * d;
        ref2 += want[i] * want[i];
    }
    double rel = sqrt(diff2) / (sqrt(ref2) > 1e-30 ? sqrt(ref2) : 1.0);
    int ok = rel <= tol;
    printf("  %-44s rel err %.2e  %s\n", what, rel, ok ? "ok" : "FAIL");
    if (!ok) {
        fprintf(stderr, "%s: value mismatch (rel %.3e > tol %.1e)\n", what, rel, tol);
        st_test_failures++;
    }
}

/* Finite differences on every `step`-th coordinate only (large cases). */
static uint8_t *every_nth(size_t n, size_t step) {
    uint8_t *select = new_bytes(n);
    for (size_t i = 0; i < n; i += step) select[i] = 1;
    return select;
}

/* Central differences in float32 with step h = 1e-2: truncation error O(h^2)
 * ~1e-4 relative plus float32 rounding of the loss difference ~eps/h ~1e-5;
 * 2e-3 (relative L2 over the checked entries) leaves room for ReLU/max kinks
 * crossed by the step, while a wrong gradient term is O(1e-1 .. 1). */
#define FD_STEP 1e-2f
#define FD_TOL 2e-3

/* -------------------------------------------------------------------- conv2d */

typedef struct conv_case {
    st_conv2d_shape s;
    st_sparse_weight w;
    float *x, *bias, *y, *r, *workspace;
} conv_case;

static double conv_objective(void *p) {
    conv_case *c = p;
    st_conv2d_forward(&c->s, c->x, &c->w, c->bias, c->y, c->workspace);
    return dot_double(c->y, c->r, (size_t)c->s.batch * c->s.out_channels * c->s.out_h * c->s.out_w);
}

/* Direct convolution in double: the independent forward reference. */
static void conv_reference(const st_conv2d_shape *s, const float *x, const float *w, const float *bias, double *y) {
    for (int n = 0; n < s->batch; n++)
        for (int o = 0; o < s->out_channels; o++)
            for (int oy = 0; oy < s->out_h; oy++)
                for (int ox = 0; ox < s->out_w; ox++) {
                    double sum = bias ? bias[o] : 0.0;
                    for (int c = 0; c < s->in_channels; c++)
                        for (int ky = 0; ky < s->kernel; ky++)
                            for (int kx = 0; kx < s->kernel; kx++) {
                                int iy = oy * s->stride - s->padding + ky, ix = ox * s->stride - s->padding + kx;
                                if (iy < 0 || iy >= s->in_h || ix < 0 || ix >= s->in_w) continue;
                                sum += (double)x[(((size_t)n * s->in_channels + c) * s->in_h + iy) * s->in_w + ix] *
                                       w[(((size_t)o * s->in_channels + c) * s->kernel + ky) * s->kernel + kx];
                            }
                    y[(((size_t)n * s->out_channels + o) * s->out_h + oy) * s->out_w + ox] = sum;
                }
}

static void test_conv2d(int batch, int cin, int h, int w, int cout, int k, int stride, int pad, int with_bias,
                        int masked, uint64_t seed) {
    conv_case c;
    st_rng rng;
    st_rng_seed(&rng, seed, 1);
    st_conv2d_shape_init(&c.s, batch, cin, h, w, cout, k, stride, pad);
    printf("conv2d n=%d %dx%dx%d -> %d k=%d s=%d p=%d%s%s\n", batch, cin, h, w, cout, k, stride, pad,
           with_bias ? " bias" : "", masked ? " masked" : "");
    const size_t nx = (size_t)batch * cin * h * w, ny = (size_t)batch * cout * c.s.out_h * c.s.out_w;
    CHECK_OK(st_sparse_weight_init(&c.w, cout, (int64_t)cin * k * k));
    const size_t nw = (size_t)st_sparse_weight_numel(&c.w);
    fill_normal(&rng, c.w.values, nw, 0.5);
    uint8_t *mask = NULL;
    if (masked) {
        mask = new_bytes(nw);
        for (size_t i = 0; i < nw; i++) mask[i] = st_rng_uniform(&rng) < 0.5f;
        mask[0] = 1;
        CHECK_OK(st_sparse_weight_set_mask(&c.w, mask));
    }
    c.x = new_floats(nx);
    fill_normal(&rng, c.x, nx, 1.0);
    c.bias = with_bias ? new_floats((size_t)cout) : NULL;
    if (with_bias) fill_normal(&rng, c.bias, (size_t)cout, 0.5);
    c.y = new_floats(ny);
    c.r = new_floats(ny);
    fill_normal(&rng, c.r, ny, 1.0);
    c.workspace = new_floats(st_conv2d_workspace_floats(&c.s, omp_get_max_threads()));

    /* forward against the direct reference */
    double *yref = calloc(ny, sizeof(double));
    conv_reference(&c.s, c.x, c.w.values, c.bias, yref);
    st_conv2d_forward(&c.s, c.x, &c.w, c.bias, c.y, c.workspace);
    compare_values("forward vs direct convolution", c.y, yref, ny, 1e-5); /* float32 sums vs a double reference */
    free(yref);

    /* backward into pre-filled buffers (dw pre-filled with 0 where masked) */
    float *dx_pre = new_floats(nx), *dw_pre = new_floats(nw), *db_pre = new_floats((size_t)cout);
    fill_normal(&rng, dx_pre, nx, 1.0);
    fill_normal(&rng, dw_pre, nw, 1.0);
    fill_normal(&rng, db_pre, (size_t)cout, 1.0);
    for (size_t i = 0; i < nw; i++)
        if (mask && !mask[i]) dw_pre[i] = 0.0f;
    float *dx = copy_floats(dx_pre, nx), *dw = copy_floats(dw_pre, nw), *db = copy_floats(db_pre, (size_t)cout);
    st_conv2d_backward(&c.s, c.x, &c.w, c.r, dx, dw, with_bias ? db : NULL, c.workspace);

    double *num = calloc(nx > nw ? nx : nw, sizeof(double));
    for (size_t i = 0; i < nx; i++) num[i] = numeric_derivative(conv_objective, &c, &c.x[i], FD_STEP);
    compare_gradient("dx (finite differences, added to prefill)", dx, dx_pre, num, NULL, nx, FD_TOL);
    for (size_t i = 0; i < nw; i++)
        num[i] = (mask && !mask[i]) ? 0.0 : numeric_derivative(conv_objective, &c, &c.w.values[i], FD_STEP);
    compare_gradient("dw (finite differences, added to prefill)", dw, dw_pre, num, mask, nw, FD_TOL);
    if (mask) {
        int masked_nonzero = 0;
        for (size_t i = 0; i < nw; i++) masked_nonzero += !mask[i] && dw[i] != 0.0f;
        CHECK(masked_nonzero == 0);
        printf("  dw exactly 0 at masked positions               %s\n", masked_nonzero ? "FAIL" : "ok");
    }
    if (with_bias) {
        for (int o = 0; o < cout; o++) num[o] = numeric_derivative(conv_objective, &c, &c.bias[o], FD_STEP);
        compare_gradient("dbias (finite differences, added to prefill)", db, db_pre, num, NULL, (size_t)cout, FD_TOL);
    }
    /* dx == NULL, dw == NULL are allowed */
    st_conv2d_backward(&c.s, c.x, &c.w, c.r, NULL, NULL, NULL, c.workspace);

    free(num);
    free(dx_pre), free(dw_pre), free(db_pre), free(dx), free(dw), free(db);
    free(mask), free(c.x), free(c.bias), free(c.y), free(c.r), free(c.workspace);
    st_sparse_weight_release(&c.w);
}

/* Same thread count -> bit-identical results; a conv called from inside a
 * parallel region (team of one) equals the single-threaded run exactly. */
static void test_conv2d_determinism(void) {
    printf("conv2d determinism\n");
    st_conv2d_shape s;
    st_conv2d_shape_init(&s, 7, 8, 12, 10, 12, 3, 1, 1);
    st_rng rng;
    st_rng_seed(&rng, 99, 2);
    st_sparse_weight w;
    CHECK_OK(st_sparse_weight_init(&w, s.out_channels, (int64_t)s.in_channels * 9));
    const size_t nw = (size_t)st_sparse_weight_numel(&w);
    const size_t nx = (size_t)s.batch * s.in_channels * s.in_h * s.in_w;
    const size_t ny = (size_t)s.batch * s.out_channels * s.out_h * s.out_w;
    fill_normal(&rng, w.values, nw, 0.3);
    float *x = new_floats(nx), *dy = new_floats(ny), *y = new_floats(ny);
    fill_normal(&rng, x, nx, 1.0);
    fill_normal(&rng, dy, ny, 1.0);
    const int threads = omp_get_max_threads() > 2 ? omp_get_max_threads() : 2;
    float *ws = new_floats(st_conv2d_workspace_floats(&s, threads));
    float *dx[4], *dw[4], *db[4];
    for (int r = 0; r < 4; r++) dx[r] = new_floats(nx), dw[r] = new_floats(nw), db[r] = new_floats(12);
    const int saved = omp_get_max_threads();
    omp_set_num_threads(2);
    st_conv2d_backward(&s, x, &w, dy, dx[0], dw[0], db[0], ws);
    st_conv2d_backward(&s, x, &w, dy, dx[1], dw[1], db[1], ws);
    omp_set_num_threads(1);
    st_conv2d_backward(&s, x, &w, dy, dx[2], dw[2], db[2], ws);
    omp_set_num_threads(2);
#pragma omp parallel num_threads(2)
    {
#pragma omp single
        st_conv2d_backward(&s, x, &w, dy, dx[3], dw[3], db[3], ws);
    }
    omp_set_num_threads(saved);
    int same_2 = !memcmp(dx[0], dx[1], nx * 4) && !memcmp(dw[0], dw[1], nw * 4) && !memcmp(db[0], db[1], 48);
    int same_nested = !memcmp(dx[2], dx[3], nx * 4) && !memcmp(dw[2], dw[3], nw * 4) && !memcmp(db[2], db[3], 48);
    double diff = 0.0, ref = 0.0;
    for (size_t i = 0; i < nw; i++) diff += fabs((double)dw[0][i] - dw[2][i]), ref += fabs((double)dw[2][i]);
    printf("  2 threads twice: bit-identical                 %s\n", same_2 ? "ok" : "FAIL");
    printf("  nested call == 1 thread: bit-identical         %s\n", same_nested ? "ok" : "FAIL");
    printf("  2 threads vs 1 thread dw rel diff %.2e        %s\n", diff / ref, diff / ref < 1e-5 ? "ok" : "FAIL");
    CHECK(same_2);
    CHECK(same_nested);
    CHECK(diff / ref < 1e-5); /* 2 threads sum dw in another order: float32 reassociation, ~1e-7 */
    for (int r = 0; r < 4; r++) free(dx[r]), free(dw[r]), free(db[r]);
    free(x), free(dy), free(y), free(ws);
    st_sparse_weight_release(&w);
}

/* -------------------------------------------------------------------- linear */

typedef struct linear_case {
    int batch;
    st_sparse_weight w;
    float *x, *bias, *y, *r;
} linear_case;

static double linear_objective(void *p) {
    linear_case *c = p;
    st_linear_forward(c->batch, c->x, &c->w, c->bias, c->y);
    return dot_double(c->y, c->r, (size_t)c->batch * c->w.rows);
}

static void test_linear(int batch, int in, int out, int with_bias, int masked, uint64_t seed) {
    printf("linear n=%d %d -> %d%s%s\n", batch, in, out, with_bias ? " bias" : "", masked ? " masked" : "");
    linear_case c;
    st_rng rng;
    st_rng_seed(&rng, seed, 3);
    c.batch = batch;
    CHECK_OK(st_sparse_weight_init(&c.w, out, in));
    const size_t nw = (size_t)out * in, nx = (size_t)batch * in, ny = (size_t)batch * out;
    fill_normal(&rng, c.w.values, nw, 0.5);
    uint8_t *mask = NULL;
    if (masked) {
        mask = new_bytes(nw);
        for (size_t i = 0; i < nw; i++) mask[i] = st_rng_uniform(&rng) < 0.3f;
        mask[0] = 1;
        CHECK_OK(st_sparse_weight_set_mask(&c.w, mask));
    }
    c.x = new_floats(nx);
    fill_normal(&rng, c.x, nx, 1.0);
    c.bias = with_bias ? new_floats((size_t)out) : NULL;
    if (with_bias) fill_normal(&rng, c.bias, (size_t)out, 1.0);
    c.y = new_floats(ny);
    c.r = new_floats(ny);
    fill_normal(&rng, c.r, ny, 1.0);

    double *yref = calloc(ny, sizeof(double));
    for (int n = 0; n < batch; n++)
        for (int o = 0; o < out; o++) {
            double s = with_bias ? c.bias[o] : 0.0;
            for (int i = 0; i < in; i++) s += (double)c.x[(size_t)n * in + i] * c.w.values[(size_t)o * in + i];
            yref[(size_t)n * out + o] = s;
        }
    st_linear_forward(batch, c.x, &c.w, c.bias, c.y);
    compare_values("forward vs direct product", c.y, yref, ny, 1e-5); /* float32 sums vs a double reference */
    free(yref);

    float *dx_pre = new_floats(nx), *dw_pre = new_floats(nw), *db_pre = new_floats((size_t)out);
    fill_normal(&rng, dx_pre, nx, 1.0);
    fill_normal(&rng, dw_pre, nw, 1.0);
    fill_normal(&rng, db_pre, (size_t)out, 1.0);
    for (size_t i = 0; i < nw; i++)
        if (mask && !mask[i]) dw_pre[i] = 0.0f;
    float *dx = copy_floats(dx_pre, nx), *dw = copy_floats(dw_pre, nw), *db = copy_floats(db_pre, (size_t)out);
    st_linear_backward(batch, c.x, &c.w, c.r, dx, dw, with_bias ? db : NULL);

    double *num = calloc(nx > nw ? nx : nw, sizeof(double));
    for (size_t i = 0; i < nx; i++) num[i] = numeric_derivative(linear_objective, &c, &c.x[i], FD_STEP);
    compare_gradient("dx (finite differences, added to prefill)", dx, dx_pre, num, NULL, nx, FD_TOL);
    for (size_t i = 0; i < nw; i++)
        num[i] = (mask && !mask[i]) ? 0.0 : numeric_derivative(linear_objective, &c, &c.w.values[i], FD_STEP);
    compare_gradient("dw (finite differences, added to prefill)", dw, dw_pre, num, mask, nw, FD_TOL);
    if (mask) {
        int masked_nonzero = 0;
        for (size_t i = 0; i < nw; i++) masked_nonzero += !mask[i] && dw[i] != 0.0f;
        CHECK(masked_nonzero == 0);
        printf("  dw exactly 0 at masked positions               %s\n", masked_nonzero ? "FAIL" : "ok");
    }
    if (with_bias) {
        for (int o = 0; o < out; o++) num[o] = numeric_derivative(linear_objective, &c, &c.bias[o], FD_STEP);
        compare_gradient("dbias (finite differences, added to prefill)", db, db_pre, num, NULL, (size_t)out, FD_TOL);
    }
    free(num);
    free(dx_pre), free(dw_pre), free(db_pre), free(dx), free(dw), free(db);
    free(mask), free(c.x), free(c.bias), free(c.y), free(c.r);
    st_sparse_weight_release(&c.w);
}

/* ---------------------------------------------------------------- batch norm */

typedef struct bn_case {
    st_batchnorm_shape s;
    float *x, *gamma, *beta, *y, *r, *mean, *invstd, *rm, *rv;
} bn_case;

static double bn_objective(void *p) {
    bn_case *c = p;
    /* running stats are scratch copies here: the objective must not drift */
    st_batchnorm_forward_train(&c->s, c->x, c->gamma, c->beta, c->y, c->mean, c->invstd, c->rm, c->rv);
    return dot_double(c->y, c->r, (size_t)c->s.batch * c->s.channels * c->s.spatial);
}

static void test_batchnorm(int batch, int channels, int spatial, size_t fd_every, uint64_t seed) {
    printf("batchnorm n=%d c=%d spatial=%d\n", batch, channels, spatial);
    bn_case c;
    st_rng rng;
    st_rng_seed(&rng, seed, 4);
    c.s = (st_batchnorm_shape){batch, channels, spatial, 0.1f, 1e-5f};
    const size_t n = (size_t)batch * channels * spatial, C = (size_t)channels;
    const int64_t count = (int64_t)batch * spatial;
    c.x = new_floats(n), c.y = new_floats(n), c.r = new_floats(n);
    c.gamma = new_floats(C), c.beta = new_floats(C), c.mean = new_floats(C), c.invstd = new_floats(C);
    c.rm = new_floats(C), c.rv = new_floats(C);
    fill_normal(&rng, c.x, n, 1.0);
    for (size_t i = 0; i < n; i++) c.x[i] += (float)((i / (size_t)spatial) % C); /* per-channel offsets */
    fill_normal(&rng, c.gamma, C, 1.0);
    fill_normal(&rng, c.beta, C, 1.0);
    fill_normal(&rng, c.r, n, 1.0);
    float *rm0 = new_floats(C), *rv0 = new_floats(C);
    for (size_t i = 0; i < C; i++) rm0[i] = (float)st_rng_normal(&rng), rv0[i] = 0.5f + st_rng_uniform(&rng);
    memcpy(c.rm, rm0, C * 4);
    memcpy(c.rv, rv0, C * 4);

    /* forward, saved stats and running-stat update against double formulas */
    st_batchnorm_forward_train(&c.s, c.x, c.gamma, c.beta, c.y, c.mean, c.invstd, c.rm, c.rv);
    double *yref = calloc(n, sizeof(double)), *mref = calloc(C, sizeof(double)), *iref = calloc(C, sizeof(double));
    double *rmref = calloc(C, sizeof(double)), *rvref = calloc(C, sizeof(double));
    for (size_t ch = 0; ch < C; ch++) {
        double s = 0.0, ss = 0.0;
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < spatial; i++) s += c.x[((size_t)b * C + ch) * spatial + i];
        double mean = s / count;
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < spatial; i++) {
                double d = c.x[((size_t)b * C + ch) * spatial + i] - mean;
                ss += d * d;
            }
        double var = ss / count, invstd = 1.0 / sqrt(var + 1e-5);
        mref[ch] = mean;
        iref[ch] = invstd;
        rmref[ch] = 0.9 * rm0[ch] + 0.1 * mean;
        rvref[ch] = 0.9 * rv0[ch] + 0.1 * ss / (count - 1);
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < spatial; i++) {
                size_t j = ((size_t)b * C + ch) * spatial + i;
                yref[j] = (c.x[j] - mean) * invstd * c.gamma[ch] + c.beta[ch];
            }
    }
    /* statistics accumulate in double: only the float32 rounding of the
     * stored results (~6e-8) and of y's products (~1e-7 x |xhat|) remain */
    compare_values("forward (train) vs formula", c.y, yref, n, 1e-5);
    compare_values("save_mean", c.mean, mref, C, 1e-6);
    compare_values("save_invstd", c.invstd, iref, C, 1e-5);
    compare_values("running_mean = 0.9 old + 0.1 mean", c.rm, rmref, C, 1e-6);
    compare_values("running_var = 0.9 old + 0.1 unbiased var", c.rv, rvref, C, 1e-6);

    /* eval mode uses the running statistics, not the batch's */
    for (size_t ch = 0; ch < C; ch++)
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < spatial; i++) {
                size_t j = ((size_t)b * C + ch) * spatial + i;
                yref[j] = (c.x[j] - rm0[ch]) / sqrt(rv0[ch] + 1e-5) * c.gamma[ch] + c.beta[ch];
            }
    float *yeval = new_floats(n);
    st_batchnorm_forward_eval(&c.s, c.x, c.gamma, c.beta, rm0, rv0, yeval);
    compare_values("forward (eval) uses running stats", yeval, yref, n, 1e-5);
    /* ... with tiny running variances (dead or constant channels), where the
     * eps of 1e-5 dominates: 1 / sqrt(1e-6 + 1e-5) vs 1 / sqrt(1e-6) is 3.3x */
    float *rv_small = new_floats(C);
    for (size_t ch = 0; ch < C; ch++) rv_small[ch] = 1e-6f * (float)(1 + ch % 4);
    for (size_t ch = 0; ch < C; ch++)
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < spatial; i++) {
                size_t j = ((size_t)b * C + ch) * spatial + i;
                yref[j] = (c.x[j] - rm0[ch]) / sqrt(rv_small[ch] + 1e-5) * c.gamma[ch] + c.beta[ch];
            }
    st_batchnorm_forward_eval(&c.s, c.x, c.gamma, c.beta, rm0, rv_small, yeval);
    compare_values("forward (eval), tiny running variances: eps counts", yeval, yref, n, 1e-5);
    free(rv_small);
    free(yeval);

    /* backward at the saved stats of the unperturbed input */
    st_batchnorm_forward_train(&c.s, c.x, c.gamma, c.beta, c.y, c.mean, c.invstd, c.rm, c.rv);
    float *dx_pre = new_floats(n), *dg_pre = new_floats(C), *db_pre = new_floats(C);
    fill_normal(&rng, dx_pre, n, 1.0);
    fill_normal(&rng, dg_pre, C, 1.0);
    fill_normal(&rng, db_pre, C, 1.0);
    float *dx = copy_floats(dx_pre, n), *dg = copy_floats(dg_pre, C), *db = copy_floats(db_pre, C);
    st_batchnorm_backward(&c.s, c.x, c.gamma, c.mean, c.invstd, c.r, dx, dg, db);

    double *num = calloc(n, sizeof(double));
    uint8_t *select = every_nth(n, fd_every);
    for (size_t i = 0; i < n; i++)
        if (select[i]) num[i] = numeric_derivative(bn_objective, &c, &c.x[i], FD_STEP);
    compare_gradient("dx (finite differences, added to prefill)", dx, dx_pre, num, select, n, FD_TOL);
    free(select);
    for (size_t i = 0; i < C; i++) num[i] = numeric_derivative(bn_objective, &c, &c.gamma[i], FD_STEP);
    compare_gradient("dgamma (finite differences, added to prefill)", dg, dg_pre, num, NULL, C, FD_TOL);
    for (size_t i = 0; i < C; i++) num[i] = numeric_derivative(bn_objective, &c, &c.beta[i], FD_STEP);
    compare_gradient("dbeta (finite differences, added to prefill)", db, db_pre, num, NULL, C, FD_TOL);

    free(num), free(yref), free(mref), free(iref), free(rmref), free(rvref), free(rm0), free(rv0);
    free(dx_pre), free(dg_pre), free(db_pre), free(dx), free(dg), free(db);
    free(c.x), free(c.y), free(c.r), free(c.gamma), free(c.beta), free(c.mean), free(c.invstd), free(c.rm), free(c.rv);
}

/* ---------------------------------------------------------------- elementwise */

typedef struct relu_case {
    int64_t n;
    float *x, *y, *r;
} relu_case;

static double relu_objective(void *p) {
    relu_case *c = p;
    st_relu_forward(c->n, c->x, c->y);
    return dot_double(c->y, c->r, (size_t)c->n);
}

static void test_relu_add(void) {
    printf("relu / add\n");
    relu_case c;
    st_rng rng;
    st_rng_seed(&rng, 5, 5);
    c.n = 301;
    const size_t n = (size_t)c.n;
    c.x = new_floats(n), c.y = new_floats(n), c.r = new_floats(n);
    /* keep inputs at least 0.1 away from the kink at 0 */
    for (size_t i = 0; i < n; i++) {
        float u = 0.1f + st_rng_uniform(&rng);
        c.x[i] = (i % 3 == 0) ? -u : u;
    }
    fill_normal(&rng, c.r, n, 1.0);
    double *ref = calloc(n, sizeof(double));
    for (size_t i = 0; i < n; i++) ref[i] = c.x[i] > 0 ? c.x[i] : 0.0;
    st_relu_forward(c.n, c.x, c.y);
    compare_values("relu forward", c.y, ref, n, 0.0);
    float *dx_pre = new_floats(n);
    fill_normal(&rng, dx_pre, n, 1.0);
    float *dx = copy_floats(dx_pre, n);
    st_relu_backward(c.n, c.y, c.r, dx);
    double *num = calloc(n, sizeof(double));
    for (size_t i = 0; i < n; i++) num[i] = numeric_derivative(relu_objective, &c, &c.x[i], FD_STEP);
    compare_gradient("relu dx (finite differences, added)", dx, dx_pre, num, NULL, n, FD_TOL);

    /* large n takes the parallel path */
    const int64_t big = 200001;
    float *a = new_floats((size_t)big), *b = new_floats((size_t)big), *sum = new_floats((size_t)big);
    fill_normal(&rng, a, (size_t)big, 1.0);
    fill_normal(&rng, b, (size_t)big, 1.0);
    st_add_forward(big, a, b, sum);
    int bad = 0;
    for (int64_t i = 0; i < big; i++) bad += sum[i] != a[i] + b[i];
    st_relu_forward(big, a, sum);
    for (int64_t i = 0; i < big; i++) bad += sum[i] != (a[i] > 0 ? a[i] : 0.0f);
    printf("  add / relu exact on %lld elements                %s\n", (long long)big, bad ? "FAIL" : "ok");
    CHECK(bad == 0);
    float nan_in = NAN, nan_out = 0.0f;
    st_relu_forward(1, &nan_in, &nan_out);
    CHECK(nan_out != nan_out);
    free(a), free(b), free(sum);
    free(ref), free(num), free(dx_pre), free(dx), free(c.x), free(c.y), free(c.r);
}

/* ------------------------------------------------------------------- pooling */

typedef struct pool_case {
    st_pool_shape s;
    int max;
    float *x, *y, *r;
    int32_t *argmax;
} pool_case;

static double pool_objective(void *p) {
    pool_case *c = p;
    if (c->max)
        st_maxpool_forward(&c->s, c->x, c->y, c->argmax);
    else
        st_avgpool_forward(&c->s, c->x, c->y);
    return dot_double(c->y, c->r, (size_t)c->s.batch * c->s.channels * c->s.out_h * c->s.out_w);
}

static void test_pool(int max, int batch, int channels, int h, int w, int k, int stride, int pad, size_t fd_every) {
    printf("%s n=%d c=%d %dx%d k=%d s=%d p=%d\n", max ? "maxpool" : "avgpool", batch, channels, h, w, k, stride, pad);
    pool_case c;
    st_rng rng;
    st_rng_seed(&rng, 6, (uint64_t)(k * 10 + stride));
    st_pool_shape_init(&c.s, batch, channels, h, w, k, stride, pad);
    c.max = max;
    const size_t nx = (size_t)batch * channels * h * w, ny = (size_t)batch * channels * c.s.out_h * c.s.out_w;
    c.x = new_floats(nx), c.y = new_floats(ny), c.r = new_floats(ny);
    c.argmax = calloc(ny, sizeof(int32_t));
    /* max: distinct values 0.1 apart (shuffled), so finite-difference steps never change a window's winner */
    for (size_t i = 0; i < nx; i++) c.x[i] = max ? 0.1f * (float)i - 3.0f : (float)st_rng_normal(&rng);
    for (size_t i = nx - 1; max && i > 0; i--) {
        size_t j = (size_t)st_rng_below(&rng, i + 1);
        float t = c.x[i];
        c.x[i] = c.x[j], c.x[j] = t;
    }
    fill_normal(&rng, c.r, ny, 1.0);
    double *ref = calloc(ny, sizeof(double));
    const size_t in_plane = (size_t)h * w, out_plane = (size_t)c.s.out_h * c.s.out_w;
    for (size_t p = 0; p < (size_t)batch * channels; p++)
        for (int oy = 0; oy < c.s.out_h; oy++)
            for (int ox = 0; ox < c.s.out_w; ox++) {
                double acc = max ? -INFINITY : 0.0;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        const int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue; /* padding never wins */
                        double v = c.x[p * in_plane + (size_t)iy * w + ix];
                        acc = max ? (v > acc ? v : acc) : acc + v / (k * k);
                    }
                ref[p * out_plane + (size_t)oy * c.s.out_w + ox] = acc;
            }
    pool_objective(&c);
    compare_values("forward vs direct", c.y, ref, ny, 1e-6);
    float *dx_pre = new_floats(nx);
    fill_normal(&rng, dx_pre, nx, 1.0);
    float *dx = copy_floats(dx_pre, nx);
    if (max)
        st_maxpool_backward(&c.s, c.argmax, c.r, dx);
    else
        st_avgpool_backward(&c.s, c.r, dx);
    double *num = calloc(nx, sizeof(double));
    uint8_t *select = every_nth(nx, fd_every);
    for (size_t i = 0; i < nx; i++)
        if (select[i]) num[i] = numeric_derivative(pool_objective, &c, &c.x[i], FD_STEP);
    compare_gradient("dx (finite differences, added to prefill)", dx, dx_pre, num, select, nx, FD_TOL);
    free(select);
    free(ref), free(num), free(dx_pre), free(dx), free(c.x), free(c.y), free(c.r), free(c.argmax);
}

/* Batch-innermost (CHWN, sparse execution) max pooling gives the NCHW
 * layer's values, winners and gradients exactly, with and without padding. */
static void test_chwn_maxpool_padded(int batch, int channels, int h, int w, int k, int stride, int pad) {
    printf("chwn maxpool n=%d c=%d %dx%d k=%d s=%d p=%d\n", batch, channels, h, w, k, stride, pad);
    st_rng rng;
    st_rng_seed(&rng, 61, (uint64_t)(k * 100 + stride * 10 + pad));
    st_pool_shape s;
    st_pool_shape_init(&s, batch, channels, h, w, k, stride, pad);
    st_chwn_pool q;
    st_chwn_pool_init(&q, channels, h, w, batch, k, stride, pad);
    CHECK(q.out_h == s.out_h && q.out_w == s.out_w);
    const int in_sp = h * w, out_sp = s.out_h * s.out_w;
    const size_t nx = (size_t)batch * channels * in_sp, ny = (size_t)batch * channels * out_sp;
    float *x = new_floats(nx), *y = new_floats(ny), *dy = new_floats(ny), *dx = new_floats(nx);
    float *xc = new_floats(nx), *yc = new_floats(ny), *dyc = new_floats(ny), *dxc = new_floats(nx);
    float *y_back = new_floats(ny), *dx_back = new_floats(nx);
    int32_t *am = calloc(ny, sizeof(int32_t)), *amc = calloc(ny, sizeof(int32_t));
    fill_normal(&rng, x, nx, 1.0);
    fill_normal(&rng, dy, ny, 1.0);
    st_maxpool_forward(&s, x, y, am);
    st_maxpool_backward(&s, am, dy, dx);
    st_nchw_to_chwn(x, batch, channels, in_sp, xc);
    st_nchw_to_chwn(dy, batch, channels, out_sp, dyc);
    st_chwn_maxpool_forward(&q, xc, yc, amc);
    st_chwn_maxpool_backward(&q, amc, dyc, dxc, 0);
    st_chwn_to_nchw(yc, batch, channels, out_sp, y_back, 0);
    st_chwn_to_nchw(dxc, batch, channels, in_sp, dx_back, 0);
    CHECK(memcmp(y, y_back, ny * sizeof(float)) == 0);
    CHECK(memcmp(dx, dx_back, nx * sizeof(float)) == 0);
    int same = 1;
    for (int n = 0; n < batch; n++)
        for (int c = 0; c < channels; c++)
            for (int o = 0; o < out_sp; o++)
                same &= am[((size_t)n * channels + c) * out_sp + o] == amc[((size_t)c * out_sp + o) * batch + n];
    CHECK(same);
    free(x), free(y), free(dy), free(dx), free(xc), free(yc), free(dyc), free(dxc), free(y_back), free(dx_back);
    free(am), free(amc);
}

/* Ties in max pooling (common after a ReLU: whole windows of 0) go to the
 * first maximum in row-major window order, as PyTorch's max_pool2d, and the
 * backward pass routes the gradient there only. */
static void test_maxpool_ties(void) {
    st_pool_shape s;
    st_pool_shape_init(&s, 1, 1, 4, 4, 2, 2, 0);
    const float x[16] = {0, 0, 1, 3, /**/ 0, 0, 3, 2, /**/ 5, 5, 0, 0, /**/ 5, 5, 0, 0};
    float y[4], dy[4] = {1, 2, 3, 4}, dx[16] = {0};
    int32_t argmax[4];
    st_maxpool_forward(&s, x, y, argmax);
    /* windows: {0,0,0,0} -> index 0; {1,3,3,2} -> the 3 at index 3; {5,5,5,5} -> 8; {0,0,0,0} -> 10 */
    CHECK(argmax[0] == 0 && argmax[1] == 3 && argmax[2] == 8 && argmax[3] == 10);
    CHECK(y[0] == 0 && y[1] == 3 && y[2] == 5 && y[3] == 0);
    st_maxpool_backward(&s, argmax, dy, dx);
    float want[16] = {0};
    want[0] = 1, want[3] = 2, want[8] = 3, want[10] = 4;
    CHECK(memcmp(dx, want, sizeof want) == 0);
}

typedef struct gap_case {
    int batch, channels, spatial;
    float *x, *y, *r;
} gap_case;

static double gap_objective(void *p) {
    gap_case *c = p;
    st_global_avgpool_forward(c->batch, c->channels, c->spatial, c->x, c->y);
    return dot_double(c->y, c->r, (size_t)c->batch * c->channels);
}

static void test_global_avgpool(int batch, int channels, int spatial) {
    printf("global avgpool n=%d c=%d spatial=%d\n", batch, channels, spatial);
    gap_case c = {batch, channels, spatial, NULL, NULL, NULL};
    st_rng rng;
    st_rng_seed(&rng, 7, 7);
    const size_t nx = (size_t)batch * channels * spatial, ny = (size_t)batch * channels;
    c.x = new_floats(nx), c.y = new_floats(ny), c.r = new_floats(ny);
    fill_normal(&rng, c.x, nx, 1.0);
    fill_normal(&rng, c.r, ny, 1.0);
    double *ref = calloc(ny, sizeof(double));
    for (size_t p = 0; p < ny; p++) {
        for (int i = 0; i < spatial; i++) ref[p] += c.x[p * spatial + i];
        ref[p] /= spatial;
    }
    gap_objective(&c);
    compare_values("forward vs direct", c.y, ref, ny, 1e-6);
    float *dx_pre = new_floats(nx);
    fill_normal(&rng, dx_pre, nx, 1.0);
    float *dx = copy_floats(dx_pre, nx);
    st_global_avgpool_backward(batch, channels, spatial, c.r, dx);
    double *num = calloc(nx, sizeof(double));
    for (size_t i = 0; i < nx; i++) num[i] = numeric_derivative(gap_objective, &c, &c.x[i], FD_STEP);
    compare_gradient("dx (finite differences, added to prefill)", dx, dx_pre, num, NULL, nx, FD_TOL);
    free(ref), free(num), free(dx_pre), free(dx), free(c.x), free(c.y), free(c.r);
}

/* ---------------------------------------------------------------------- loss */

typedef struct loss_case {
    int batch, classes;
    float *logits, *log_probs;
    int32_t *labels;
} loss_case;

static double loss_objective(void *p) {
    loss_case *c = p;
    int correct;
    return st_log_softmax_nll_forward(c->batch, c->classes, c->logits, c->labels, c->log_probs, &correct);
}

static void test_loss(int batch, int classes) {
    printf("log-softmax + nll n=%d classes=%d\n", batch, classes);
    loss_case c = {batch, classes, NULL, NULL, NULL};
    st_rng rng;
    st_rng_seed(&rng, 8, 8);
    const size_t n = (size_t)batch * classes;
    c.logits = new_floats(n), c.log_probs = new_floats(n);
    c.labels = calloc((size_t)batch, sizeof(int32_t));
    fill_normal(&rng, c.logits, n, 2.0);
    for (int b = 0; b < batch; b++) c.labels[b] = (int32_t)st_rng_below(&rng, (uint64_t)classes);
    for (int b = 0; b < batch; b += 2) { /* every other row predicted correctly */
        const float *z = c.logits + (size_t)b * classes;
        int best = 0;
        for (int k = 1; k < classes; k++) best = z[k] > z[best] ? k : best;
        c.labels[b] = best;
    }
    int correct = -1;
    double loss = st_log_softmax_nll_forward(batch, classes, c.logits, c.labels, c.log_probs, &correct);
    double ref_loss = 0.0, *ref_lp = calloc(n, sizeof(double));
    int ref_correct = 0;
    for (int b = 0; b < batch; b++) {
        const float *z = c.logits + (size_t)b * classes;
        double s = 0.0;
        int best = 0;
        for (int k = 0; k < classes; k++) s += exp((double)z[k]), best = z[k] > z[best] ? k : best;
        for (int k = 0; k < classes; k++) ref_lp[(size_t)b * classes + k] = z[k] - log(s);
        ref_loss -= ref_lp[(size_t)b * classes + c.labels[b]] / batch;
        ref_correct += best == c.labels[b];
    }
    /* log-sum-exp in double, results rounded to float32 (6e-8 relative) */
    compare_values("log_probs vs direct", c.log_probs, ref_lp, n, 1e-6);
    CHECK_NEAR(loss, ref_loss, 1e-6 * fabs(ref_loss));
    CHECK(correct == ref_correct);
    CHECK(correct >= (batch + 1) / 2);
    printf("  loss %.6f (ref %.6f), correct %d (ref %d)\n", loss, ref_loss, correct, ref_correct);

    float *d = new_floats(n);
    for (size_t i = 0; i < n; i++) d[i] = 123.0f; /* backward overwrites */
    st_log_softmax_nll_backward(batch, classes, c.log_probs, c.labels, d);
    double *num = calloc(n, sizeof(double));
    for (size_t i = 0; i < n; i++) num[i] = numeric_derivative(loss_objective, &c, &c.logits[i], FD_STEP);
    compare_gradient("dlogits (finite differences, overwrites)", d, NULL, num, NULL, n, FD_TOL);

    /* stability: huge logits stay finite */
    for (size_t i = 0; i < n; i++) c.logits[i] *= 1e4f;
    loss = st_log_softmax_nll_forward(batch, classes, c.logits, c.labels, c.log_probs, &correct);
    int finite = isfinite(loss);
    for (size_t i = 0; i < n; i++) finite &= isfinite(c.log_probs[i]);
    printf("  logits x 1e4: loss %.3g finite                 %s\n", loss, finite ? "ok" : "FAIL");
    CHECK(finite);
    free(ref_lp), free(num), free(d), free(c.logits), free(c.log_probs), free(c.labels);
}

/* -------------------------------------------------------------- parity mode */

static int parity_failed = 0;

static float *read_bin(const char *dir, const char *name, size_t count) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "parity: cannot open %s\n", path);
        exit(2);
    }
    float *p = new_floats(count);
    size_t got = fread(p, 4, count, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != count || extra) {
        fprintf(stderr, "parity: %s holds a different element count than the %zu expected\n", path, count);
        exit(2);
    }
    return p;
}

static void write_bin(const char *dir, const char *name, const void *data, size_t count) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 4, count, f) != count || fclose(f) != 0) {
        fprintf(stderr, "parity: cannot write %s\n", path);
        parity_failed = 1;
    }
}

/* spec.txt holds one line: "<layer> <int args...>"; see layers_parity_test.py. */
static int run_parity(const char *dir) {
    char path[4096], layer[64];
    int a[10] = {0};
    snprintf(path, sizeof path, "%s/spec.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "parity: cannot open %s\n", path);
        return 2;
    }
    int got = fscanf(f, "%63s %d %d %d %d %d %d %d %d %d %d", layer, &a[0], &a[1], &a[2], &a[3], &a[4], &a[5], &a[6],
                     &a[7], &a[8], &a[9]);
    fclose(f);
    if (got < 2) {
        fprintf(stderr, "parity: malformed %s\n", path);
        return 2;
    }
    if (!strcmp(layer, "conv2d") || !strcmp(layer, "linear")) {
        const int is_conv = layer[0] == 'c';
        st_conv2d_shape s;
        int batch, cin, cout, with_bias, masked;
        size_t nx, ny;
        int64_t cols;
        if (is_conv) { /* N C H W O K S P bias mask */
            st_conv2d_shape_init(&s, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
            batch = a[0], cin = a[1], cout = a[4], with_bias = a[8], masked = a[9];
            nx = (size_t)batch * cin * a[2] * a[3];
            ny = (size_t)batch * cout * s.out_h * s.out_w;
            cols = (int64_t)cin * a[5] * a[5];
        } else { /* N IN OUT bias mask */
            batch = a[0], cin = a[1], cout = a[2], with_bias = a[3], masked = a[4];
            nx = (size_t)batch * cin;
            ny = (size_t)batch * cout;
            cols = cin;
        }
        st_sparse_weight w;
        if (st_sparse_weight_init(&w, cout, cols) != ST_OK) return 2;
        const size_t nw = (size_t)cout * (size_t)cols;
        float *wv = read_bin(dir, "w", nw);
        memcpy(w.values, wv, nw * 4);
        if (masked) {
            float *mf = read_bin(dir, "mask", nw);
            uint8_t *m = new_bytes(nw);
            for (size_t i = 0; i < nw; i++) m[i] = mf[i] != 0.0f;
            if (st_sparse_weight_set_mask(&w, m) != ST_OK) return 2;
            free(mf), free(m);
        }
        float *x = read_bin(dir, "x", nx), *dy = read_bin(dir, "dy", ny);
        float *bias = with_bias ? read_bin(dir, "b", (size_t)cout) : NULL;
        float *y = new_floats(ny), *dx = new_floats(nx), *dw = new_floats(nw), *db = new_floats((size_t)cout);
        if (is_conv) {
            float *ws = new_floats(st_conv2d_workspace_floats(&s, omp_get_max_threads()));
            st_conv2d_forward(&s, x, &w, bias, y, ws);
            st_conv2d_backward(&s, x, &w, dy, dx, dw, with_bias ? db : NULL, ws);
            free(ws);
        } else {
            st_linear_forward(batch, x, &w, bias, y);
            st_linear_backward(batch, x, &w, dy, dx, dw, with_bias ? db : NULL);
        }
        write_bin(dir, "y", y, ny);
        write_bin(dir, "dx", dx, nx);
        write_bin(dir, "dw", dw, nw);
        if (with_bias) write_bin(dir, "db", db, (size_t)cout);
        free(wv), free(x), free(dy), free(bias), free(y), free(dx), free(dw), free(db);
        st_sparse_weight_release(&w);
    } else if (!strcmp(layer, "batchnorm")) { /* N C S */
        st_batchnorm_shape s = {a[0], a[1], a[2], 0.1f, 1e-5f};
        const size_t n = (size_t)a[0] * a[1] * a[2], C = (size_t)a[1];
        float *x = read_bin(dir, "x", n), *dy = read_bin(dir, "dy", n), *g = read_bin(dir, "gamma", C);
        float *b = read_bin(dir, "beta", C), *rm = read_bin(dir, "running_mean", C);
        float *rv = read_bin(dir, "running_var", C);
        float *y = new_floats(n), *ye = new_floats(n), *mean = new_floats(C), *invstd = new_floats(C);
        float *dx = new_floats(n), *dg = new_floats(C), *db = new_floats(C);
        st_batchnorm_forward_eval(&s, x, g, b, rm, rv, ye);
        st_batchnorm_forward_train(&s, x, g, b, y, mean, invstd, rm, rv);
        st_batchnorm_backward(&s, x, g, mean, invstd, dy, dx, dg, db);
        write_bin(dir, "y", y, n);
        write_bin(dir, "y_eval", ye, n);
        write_bin(dir, "save_mean", mean, C);
        write_bin(dir, "save_invstd", invstd, C);
        write_bin(dir, "running_mean_out", rm, C);
        write_bin(dir, "running_var_out", rv, C);
        write_bin(dir, "dx", dx, n);
        write_bin(dir, "dgamma", dg, C);
        write_bin(dir, "dbeta", db, C);
        free(x), free(dy), free(g), free(b), free(rm), free(rv), free(y), free(ye), free(mean), free(invstd);
        free(dx), free(dg), free(db);
    } else if (!strcmp(layer, "relu") || !strcmp(layer, "add")) { /* n */
        const size_t n = (size_t)a[0];
        float *x = read_bin(dir, "x", n), *y = new_floats(n), *dx = new_floats(n);
        if (layer[0] == 'r') {
            float *dy = read_bin(dir, "dy", n);
            st_relu_forward(a[0], x, y);
            st_relu_backward(a[0], y, dy, dx);
            write_bin(dir, "dx", dx, n);
            free(dy);
        } else {
            float *b = read_bin(dir, "b", n);
            st_add_forward(a[0], x, b, y);
            free(b);
        }
        write_bin(dir, "y", y, n);
        free(x), free(y), free(dx);
    } else if (!strcmp(layer, "maxpool") || !strcmp(layer, "avgpool")) { /* N C H W K S */
        st_pool_shape s;
        st_pool_shape_init(&s, a[0], a[1], a[2], a[3], a[4], a[5], a[6]);
        const size_t nx = (size_t)a[0] * a[1] * a[2] * a[3], ny = (size_t)a[0] * a[1] * s.out_h * s.out_w;
        float *x = read_bin(dir, "x", nx), *dy = read_bin(dir, "dy", ny), *y = new_floats(ny), *dx = new_floats(nx);
        if (layer[0] == 'm') {
            int32_t *argmax = calloc(ny, sizeof(int32_t));
            st_maxpool_forward(&s, x, y, argmax);
            st_maxpool_backward(&s, argmax, dy, dx);
            write_bin(dir, "argmax", argmax, ny);
            free(argmax);
        } else {
            st_avgpool_forward(&s, x, y);
            st_avgpool_backward(&s, dy, dx);
        }
        write_bin(dir, "y", y, ny);
        write_bin(dir, "dx", dx, nx);
        free(x), free(dy), free(y), free(dx);
    } else if (!strcmp(layer, "global_avgpool")) { /* N C S */
        const size_t nx = (size_t)a[0] * a[1] * a[2], ny = (size_t)a[0] * a[1];
        float *x = read_bin(dir, "x", nx), *dy = read_bin(dir, "dy", ny), *y = new_floats(ny), *dx = new_floats(nx);
        st_global_avgpool_forward(a[0], a[1], a[2], x, y);
        st_global_avgpool_backward(a[0], a[1], a[2], dy, dx);
        write_bin(dir, "y", y, ny);
        write_bin(dir, "dx", dx, nx);
        free(x), free(dy), free(y), free(dx);
    } else if (!strcmp(layer, "log_softmax_nll")) { /* N CLASSES [SMOOTHING in 1/1000]; labels.bin is int32 */
        const size_t n = (size_t)a[0] * a[1];
        float *z = read_bin(dir, "logits", n), *lp = new_floats(n), *d = new_floats(n);
        int32_t *labels = (int32_t *)read_bin(dir, "labels", (size_t)a[0]);
        for (int i = 0; i < a[0]; i++)
            if (labels[i] < 0 || labels[i] >= a[1]) {
                fprintf(stderr, "parity: label %d out of range\n", labels[i]);
                return 2;
            }
        int correct = 0;
        float loss_and_correct[2];
        const double smoothing = a[2] / 1000.0;
        if (a[2]) {
            loss_and_correct[0] = (float)st_cross_entropy_forward(a[0], a[1], z, labels, smoothing, lp, &correct);
            st_cross_entropy_backward(a[0], a[1], lp, labels, smoothing, d);
        } else {
            loss_and_correct[0] = (float)st_log_softmax_nll_forward(a[0], a[1], z, labels, lp, &correct);
            st_log_softmax_nll_backward(a[0], a[1], lp, labels, d);
        }
        loss_and_correct[1] = (float)correct;
        write_bin(dir, "log_probs", lp, n);
        write_bin(dir, "loss_correct", loss_and_correct, 2);
        write_bin(dir, "dlogits", d, n);
        free(z), free(lp), free(d), free(labels);
    } else {
        fprintf(stderr, "parity: unknown layer '%s'\n", layer);
        return 2;
    }
    return parity_failed ? 2 : 0;
}

/* ---------------------------------------------------------------- benchmark */

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench_conv(int batch, int cin, int cout, int hw) {
    st_conv2d_shape s;
    st_conv2d_shape_init(&s, batch, cin, hw, hw, cout, 3, 1, 1);
    st_rng rng;
    st_rng_seed(&rng, 1, 1);
    st_sparse_weight w;
    if (st_sparse_weight_init(&w, cout, (int64_t)cin * 9) != ST_OK) exit(2);
    const size_t nx = (size_t)batch * cin * hw * hw, ny = (size_t)batch * cout * s.out_h * s.out_w;
    fill_normal(&rng, w.values, (size_t)st_sparse_weight_numel(&w), 0.1);
    float *x = new_floats(nx), *y = new_floats(ny), *dy = new_floats(ny), *dx = new_floats(nx);
    float *dw = new_floats((size_t)st_sparse_weight_numel(&w));
    fill_normal(&rng, x, nx, 1.0);
    fill_normal(&rng, dy, ny, 1.0);
    float *ws = new_floats(st_conv2d_workspace_floats(&s, omp_get_max_threads()));
    double fwd[5], bwd[5], tot[5];
    st_conv2d_forward(&s, x, &w, NULL, y, ws); /* warm-up */
    st_conv2d_backward(&s, x, &w, dy, dx, dw, NULL, ws);
    for (int r = 0; r < 5; r++) {
        double t0 = now_seconds();
        st_conv2d_forward(&s, x, &w, NULL, y, ws);
        double t1 = now_seconds();
        st_conv2d_backward(&s, x, &w, dy, dx, dw, NULL, ws);
        double t2 = now_seconds();
        fwd[r] = t1 - t0, bwd[r] = t2 - t1, tot[r] = t2 - t0;
    }
    qsort(fwd, 5, sizeof(double), compare_double);
    qsort(bwd, 5, sizeof(double), compare_double);
    qsort(tot, 5, sizeof(double), compare_double);
    printf("sparsetrain conv %d->%d 3x3 %dx%d batch %d, %d threads: fwd %.2f ms  bwd %.2f ms  fwd+bwd %.2f ms"
           " (median of 5)\n",
           cin, cout, hw, hw, batch, omp_get_max_threads(), 1e3 * fwd[2], 1e3 * bwd[2], 1e3 * tot[2]);
    free(x), free(y), free(dy), free(dx), free(dw), free(ws);
    st_sparse_weight_release(&w);
}

/* --------------------------------------------------------------------- main */

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--parity")) return run_parity(argv[2]);
    if (argc == 2 && !strcmp(argv[1], "--bench")) {
        printf("OpenBLAS core: %s (override with OPENBLAS_CORETYPE)\n", openblas_get_corename());
        bench_conv(128, 16, 16, 32);
        bench_conv(128, 64, 64, 8);
        return 0;
    }
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--parity DIR | --bench]\n", argv[0]);
        return 2;
    }
    printf("threads: %d\n", omp_get_max_threads());
    uint64_t seed = 100;
    /* k, stride, padding combinations on a non-square input */
    static const int conv_cases[][3] = {{1, 1, 0}, {1, 2, 0}, {3, 1, 1}, {3, 2, 1}, {3, 1, 0},
                                        {3, 2, 2}, {5, 1, 2}, {5, 2, 2}, {5, 1, 0}, {3, 1, 2}};
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++) {
        const int k = conv_cases[i][0], st = conv_cases[i][1], p = conv_cases[i][2];
        test_conv2d(3, 3, 9, 7, 4, k, st, p, (int)(i % 2), 0, seed++);
        test_conv2d(2, 2, 8, 6, 3, k, st, p, (int)((i + 1) % 2), 1, seed++);
    }
    test_conv2d(1, 4, 5, 5, 2, 3, 1, 1, 1, 1, seed++); /* fewer images than threads */
    test_conv2d_determinism();
    test_linear(5, 7, 4, 1, 0, seed++);
    test_linear(5, 7, 4, 0, 0, seed++);
    test_linear(6, 9, 5, 1, 1, seed++);
    test_linear(3, 8, 6, 0, 1, seed++);
    test_batchnorm(4, 3, 5, 1, seed++);
    test_batchnorm(6, 4, 1, 1, seed++);     /* batch norm 1d */
    test_batchnorm(8, 40, 64, 97, seed++); /* large enough for the parallel path */
    test_relu_add();
    test_pool(1, 2, 3, 6, 8, 2, 2, 0, 1);
    test_pool(1, 2, 2, 7, 9, 3, 2, 0, 1); /* overlapping windows, ragged edge */
    test_pool(1, 2, 2, 8, 8, 3, 2, 1, 1); /* padded, as the ImageNet ResNet stem */
    test_pool(1, 2, 2, 7, 9, 3, 2, 1, 1);
    test_chwn_maxpool_padded(3, 4, 9, 12, 3, 2, 1);
    test_chwn_maxpool_padded(5, 3, 8, 8, 2, 2, 0);
    test_maxpool_ties();
    test_pool(0, 2, 3, 6, 8, 2, 2, 0, 1);
    test_pool(0, 2, 2, 7, 5, 3, 1, 0, 1);
    test_pool(1, 8, 16, 16, 16, 2, 2, 0, 331); /* parallel path */
    test_pool(0, 8, 16, 16, 16, 2, 2, 0, 331);
    test_global_avgpool(3, 4, 9);
    test_loss(6, 10);
    TEST_MAIN_END();
}
