/* Direct sparse convolution kernels (kernels/sparse_conv.h):
 *  1. the scalar references against a plain dense NCHW convolution of the
 *     same masked weights (semantics: padding, stride, layout);
 *  2. every ISA's fast passes against the scalar references on random
 *     shapes and densities, including empty rows, fully dense rows, batch
 *     sizes that are not a multiple of the vector width, 1x1 kernels and a
 *     linear layer (K = 1, H = W = 1);
 *     and the forward pass's batch-norm statistics against a double sum
 *     (and the same for 1 and 2 threads); every pixel blocking of the
 *     forward and input-gradient passes gives the results of blocking 1
 *     bit for bit;
 *  3. the CHWN layout changes round-trip. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "core/rng.h"
#include "kernels/bn_act.h"
#include "kernels/isa.h"
#include "kernels/sparse_conv.h"
#include "kernels/sparse_conv_prims.h"
#include "testing.h"

typedef struct csr {
    int64_t *row_ptr;
    int32_t *col;
    float *val;
    int64_t nnz;
} csr;

/* Random CSR of out_c x cols with density d; row 0 is forced empty, row 1
 * fully dense and row 2 holds one kept weight when there are enough rows. */
static csr random_csr(st_rng *rng, int out_c, int cols, double d) {
    csr c;
    c.row_ptr = new_bytes(sizeof(int64_t) * (size_t)(out_c + 1));
    c.col = new_bytes(sizeof(int32_t) * (size_t)out_c * (size_t)cols + 4);
    c.val = new_floats((size_t)out_c * (size_t)cols + 1);
    int64_t k = 0;
    for (int o = 0; o < out_c; o++) {
        c.row_ptr[o] = k;
        for (int j = 0; j < cols; j++) {
            int keep = st_rng_uniform_double(rng) < d;
            if (out_c >= 3 && o == 0) keep = 0;
            if (out_c >= 3 && o == 1) keep = 1;
            if (out_c >= 4 && o == 2) keep = j == cols / 2;
            if (keep) {
                c.col[k] = j;
                c.val[k++] = (float)(st_rng_uniform_double(rng) * 2.0 - 1.0);
            }
        }
    }
    c.row_ptr[out_c] = k;
    c.nnz = k;
    return c;
}

static void free_csr(csr *c) { free(c->row_ptr), free(c->col), free(c->val); }

static double max_rel_diff(const float *a, const float *b, size_t n) {
    double worst = 0.0, scale = 1e-3;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)b[i]));
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - (double)b[i]) / scale);
    return worst;
}

/* 1. reference vs a dense NCHW convolution written independently. */
static void test_reference_semantics(void) {
    st_rng rng;
    st_rng_seed(&rng, 11, 0);
    const int N = 3, C = 4, H = 7, W = 6, O = 5, K = 3, S = 2, P = 1;
    st_spconv_geom g;
    st_spconv_geom_init(&g, N, C, H, W, O, K, S, P);
    csr c = random_csr(&rng, O, C * K * K, 0.4);
    float *dense = new_floats((size_t)O * C * K * K);
    for (int o = 0; o < O; o++)
        for (int64_t e = c.row_ptr[o]; e < c.row_ptr[o + 1]; e++) dense[(size_t)o * C * K * K + c.col[e]] = c.val[e];
    float *bias = random_floats(&rng, O);
    float *x_nchw = random_floats(&rng, (size_t)N * C * H * W);
    float *x = new_floats((size_t)N * C * H * W);
    st_nchw_to_chwn(x_nchw, N, C, H * W, x);
    const size_t ysize = (size_t)N * O * g.out_h * g.out_w;
    float *y = new_floats(ysize), *y_nchw = new_floats(ysize), *want = new_floats(ysize);
    st_spconv_forward_reference(&g, c.row_ptr, c.col, x, c.val, bias, y);
    st_chwn_to_nchw(y, N, O, g.out_h * g.out_w, y_nchw, 0);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++)
            for (int oh = 0; oh < g.out_h; oh++)
                for (int ow = 0; ow < g.out_w; ow++) {
                    double s = bias[o];
                    for (int i = 0; i < C; i++)
                        for (int kh = 0; kh < K; kh++)
                            for (int kw = 0; kw < K; kw++) {
                                int ih = oh * S - P + kh, iw = ow * S - P + kw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                s += (double)dense[((o * C + i) * K + kh) * K + kw] *
                                     x_nchw[((n * C + i) * H + ih) * W + iw];
                            }
                    want[((n * O + o) * g.out_h + oh) * g.out_w + ow] = (float)s;
                }
    CHECK(max_rel_diff(y_nchw, want, ysize) < 1e-6); /* both double sums of the same products: only the final float rounding */

    /* adjoint identity: <W x, dy> = <x, W^T dy> and sum dy*x at kept w = d<W x, dy>/dw */
    float *dy = random_floats(&rng, ysize), *dx = new_floats((size_t)N * C * H * W);
    float *dw = new_floats((size_t)c.nnz + 1);
    st_spconv_forward_reference(&g, c.row_ptr, c.col, x, c.val, NULL, y);
    st_spconv_backward_data_reference(&g, c.row_ptr, c.col, dy, c.val, dx, 0);
    st_spconv_backward_weight_reference(&g, c.row_ptr, c.col, x, dy, dw, NULL);
    double lhs = 0.0, rhs = 0.0, wsum = 0.0;
    for (size_t j = 0; j < ysize; j++) lhs += (double)y[j] * dy[j];
    for (size_t j = 0; j < (size_t)N * C * H * W; j++) rhs += (double)x[j] * dx[j];
    for (int64_t e = 0; e < c.nnz; e++) wsum += (double)c.val[e] * dw[e];
    /* <dy, A x> = <A^T dy, x> in double over float32 kernel outputs (each ~1e-7 relative, summed over ~1e4 terms) */
    CHECK_NEAR(lhs, rhs, 1e-4 * fmax(1.0, fabs(lhs)));
    CHECK_NEAR(lhs, wsum, 1e-4 * fmax(1.0, fabs(lhs)));
    free(dense), free(bias), free(x_nchw), free(x), free(y), free(y_nchw), free(want), free(dy), free(dx), free(dw);
    free_csr(&c);
}

/* 2. fast passes vs references for one geometry and density. */
static void compare_fast(st_rng *rng, int N, int C, int H, int W, int O, int K, int S, int P, double d) {
    st_spconv_geom g;
    st_spconv_geom_init(&g, N, C, H, W, O, K, S, P);
    csr c = random_csr(rng, O, C * K * K, d);
    const size_t xs = (size_t)N * C * H * W, ys = (size_t)N * O * g.out_h * g.out_w;
    float *x = random_floats(rng, xs), *dy = random_floats(rng, ys), *bias = random_floats(rng, O);
    float *y = new_floats(ys), *y_ref = new_floats(ys);
    float *dx = random_floats(rng, xs), *dx_ref = new_floats(xs);
    memcpy(dx_ref, dx, xs * sizeof(float));
    float *dw = random_floats(rng, (size_t)c.nnz + 1), *dw_ref = new_floats((size_t)c.nnz + 1);
    memcpy(dw_ref, dw, ((size_t)c.nnz + 1) * sizeof(float));
    float *db = new_floats(O), *db_ref = new_floats(O);
    st_spconv_plan *plan = NULL;
    CHECK_OK(st_spconv_plan_create(&g, c.row_ptr, c.col, &plan));
    if (!plan) return;
    const int accumulate = (N + C) % 2; /* both modes get exercised across cases */
    st_spconv_forward(plan, x, c.val, bias, y);
    st_spconv_forward_reference(&g, c.row_ptr, c.col, x, c.val, bias, y_ref);
    st_spconv_backward_data(plan, dy, c.val, dx, accumulate);
    st_spconv_backward_data_reference(&g, c.row_ptr, c.col, dy, c.val, dx_ref, accumulate);
    st_spconv_backward_weight(plan, x, dy, dw, db);
    st_spconv_backward_weight_reference(&g, c.row_ptr, c.col, x, dy, dw_ref, db_ref);
    /* the forward pass with batch-norm statistics: the same y bit for bit, and
     * the statistics of a double sum over every element to float rounding of
     * the per-pixel sums (mean and variance compared, as batch norm uses them) */
    {
        float *y2 = new_floats(ys);
        double *st = new_bytes(sizeof(double) * 3 * (size_t)O), *st_ref = new_bytes(sizeof(double) * 3 * (size_t)O);
        st_spconv_forward_stats(plan, x, c.val, bias, y2, st);
        st_spconv_channel_stats_reference(&g, y2, st_ref);
        CHECK(memcmp(y, y2, ys * sizeof(float)) == 0);
        const double count = (double)g.out_h * g.out_w * N;
        for (int o = 0; o < O; o++) {
            const double m = st[3 * o] + st[3 * o + 1] / count, mr = st_ref[3 * o] + st_ref[3 * o + 1] / count;
            const double v = st[3 * o + 2] / count - (st[3 * o + 1] / count) * (st[3 * o + 1] / count);
            const double vr = st_ref[3 * o + 2] / count - (st_ref[3 * o + 1] / count) * (st_ref[3 * o + 1] / count);
            if (!(st[3 * o] == st_ref[3 * o] && fabs(m - mr) <= 1e-6 * (sqrt(fabs(vr)) + fabs(mr)) + 1e-12 &&
                  fabs(v - vr) <= 1e-5 * fabs(vr) + 1e-12)) {
                fprintf(stderr, "[%s] N=%d C=%d %dx%d O=%d d=%.2f: channel %d stats mean %.9g vs %.9g, var %.9g vs %.9g\n",
                        st_isa_name(st_isa_current()), N, C, H, W, O, d, o, m, mr, v, vr);
                st_test_failures++;
            }
        }
        free(y2), free(st), free(st_ref);
    }
    /* the input-gradient pass with batch-norm backward sums: the same dx bit
     * for bit, and the sums of a double sum over every element (with and
     * without the ReLU mask); x and y of the BN are random tensors here */
    for (int relu = 0; relu < 2; relu++) {
        float *dx2 = new_floats(xs), *bx = random_floats(rng, xs), *by = random_floats(rng, xs);
        float *mean = random_floats(rng, (size_t)C);
        memcpy(dx2, dx, xs * sizeof(float)); /* both passes below start from the same values */
        double *sm = new_bytes(sizeof(double) * 2 * (size_t)C), *sm_ref = new_bytes(sizeof(double) * 2 * (size_t)C);
        st_spconv_bn_sums bn = {relu ? by : NULL, bx, mean, sm}, bn_ref = {relu ? by : NULL, bx, mean, sm_ref};
        float *plain = new_floats(xs);
        memcpy(plain, dx, xs * sizeof(float));
        st_spconv_backward_data(plan, dy, c.val, plain, accumulate);
        CHECK_OK(st_spconv_backward_data_bn_sums(plan, dy, c.val, dx2, accumulate, &bn));
        CHECK(memcmp(plain, dx2, xs * sizeof(float)) == 0);
        st_spconv_bn_sums_reference(&g, dx2, &bn_ref);
        double scale = 1e-6;
        for (size_t j = 0; j < xs; j++) scale = fmax(scale, fabs(dx2[j]));
        for (int i = 0; i < C; i++) /* N-term float sums: tolerance relative to the largest term times the count */
            if (!(fabs(sm[2 * i] - sm_ref[2 * i]) <= 1e-5 * scale * sqrt((double)xs) &&
                  fabs(sm[2 * i + 1] - sm_ref[2 * i + 1]) <= 2e-5 * scale * sqrt((double)xs))) {
                fprintf(stderr, "[%s] N=%d C=%d relu %d: channel %d bn sums %.9g %.9g vs %.9g %.9g\n",
                        st_isa_name(st_isa_current()), N, C, relu, i, sm[2 * i], sm[2 * i + 1], sm_ref[2 * i],
                        sm_ref[2 * i + 1]);
                st_test_failures++;
            }
        free(dx2), free(bx), free(by), free(mean), free(sm), free(sm_ref), free(plain);
    }
    const double ey = max_rel_diff(y, y_ref, ys), ex = max_rel_diff(dx, dx_ref, xs),
                 ew = max_rel_diff(dw, dw_ref, (size_t)c.nnz + 1), eb = max_rel_diff(db, db_ref, O);
    /* float32 kernels vs double-sum references: up to ~K*K*C float32 additions per output (~1e-6 measured) */
    if (!(ey < 2e-5 && ex < 2e-5 && ew < 2e-5 && eb < 2e-5)) {
        fprintf(stderr, "[%s] N=%d C=%d %dx%d O=%d K=%d S=%d P=%d d=%.2f: fwd %.2g bwd-data %.2g bwd-weight %.2g bias %.2g\n",
                st_isa_name(st_isa_current()), N, C, H, W, O, K, S, P, d, ey, ex, ew, eb);
        st_test_failures++;
    }
    st_spconv_plan_free(plan);
    free(x), free(dy), free(bias), free(y), free(y_ref), free(dx), free(dx_ref), free(dw), free(dw_ref), free(db),
        free(db_ref);
    free_csr(&c);
}

static void test_fast_vs_reference(void) {
    /* every ISA; AVX-512 with each tuning of its gathers */
    const char *isas[] = {"generic", "avx2", "avx512", "avx512"};
    const st_spconv_tuning tunings[] = {ST_SPCONV_TUNING_ZEN, ST_SPCONV_TUNING_ZEN, ST_SPCONV_TUNING_ZEN,
                                        ST_SPCONV_TUNING_INTEL};
    const st_spconv_tuning auto_tuning = st_spconv_tuning_current();
    for (int k = 0; k < 4; k++) {
        CHECK_OK(st_isa_force(isas[k]));
        st_spconv_tuning_force(tunings[k]);
        printf("fast kernels: %s (gather tuning %s)\n", st_isa_name(st_isa_current()), st_spconv_tuning_name(tunings[k]));
        st_rng rng;
        st_rng_seed(&rng, 5, (uint64_t)k);
        const double densities[] = {0.0, 0.05, 0.3, 1.0};
        for (int di = 0; di < 4; di++) {
            const double d = densities[di];
            compare_fast(&rng, 128, 5, 8, 8, 6, 3, 1, 1, d);  /* the hot path */
            compare_fast(&rng, 96, 4, 5, 5, 5, 3, 1, 1, d);   /* runs of 64 + 32 */
            compare_fast(&rng, 130, 3, 5, 6, 4, 3, 2, 1, d);  /* stride 2, ragged batch */
            compare_fast(&rng, 16, 4, 9, 7, 5, 1, 2, 0, d);   /* 1x1 shortcut */
            compare_fast(&rng, 7, 2, 6, 6, 3, 5, 1, 2, d);    /* 5x5, tiny batch, scalar tails */
            compare_fast(&rng, 40, 3, 4, 4, 3, 3, 1, 0, d);   /* no padding */
            compare_fast(&rng, 24, 37, 1, 1, 9, 1, 1, 0, d);  /* linear layer */
            compare_fast(&rng, 1, 3, 3, 3, 2, 3, 1, 1, d);    /* a single image */
            /* the ImageNet ResNets (imagenet_resnet.c) */
            compare_fast(&rng, 6, 3, 21, 20, 8, 7, 2, 3, d);  /* the 7x7 stride-2 stem, odd size */
            compare_fast(&rng, 10, 16, 7, 7, 24, 1, 1, 0, d); /* bottleneck 1x1 */
            compare_fast(&rng, 9, 8, 9, 9, 16, 1, 2, 0, d);   /* downsample 1x1 stride 2, odd size */
            compare_fast(&rng, 5, 6, 11, 10, 7, 3, 2, 1, d);  /* 3x3 stride 2 */
            if (di == 1) { /* at ImageNet channel counts, density 0.05 (sizes cut to keep the reference fast) */
                compare_fast(&rng, 4, 64, 28, 28, 64, 3, 2, 1, d);
                compare_fast(&rng, 2, 512, 7, 7, 2048, 1, 1, 0, d);
                compare_fast(&rng, 3, 3, 56, 56, 64, 7, 2, 3, d);
            }
        }
    }
    CHECK_OK(st_isa_force("auto"));
    st_spconv_tuning_force(auto_tuning);
    CHECK(st_isa_force("sse9") == ST_ERR_ARGUMENT);
}

/* Pixel blocking (st_spconv_plan_set_px_block; in the weight gradient the
 * runs of interior pixels per sddmm_px call), with blocks of the summed
 * channels (st_spconv_plan_set_block: 1 .. C input channels in the
 * forward, 1 .. O output channels in the input gradient), changes no bit of
 * the forward pass, its statistics, the weight gradient or the input
 * gradient (overwrite, accumulate, with the batch-norm sums), at every ISA,
 * for interior runs longer and shorter than a block, strides 1 and 2,
 * kernels 1, 3 and 7, batches with and without the 128-wide register path,
 * and rows with 0, 1 and all weights. */
static void px_block_case(st_rng *rng, int N, int C, int H, int W, int O, int K, int S, int P, double d) {
    st_spconv_geom g;
    st_spconv_geom_init(&g, N, C, H, W, O, K, S, P);
    csr c = random_csr(rng, O, C * K * K, d);
    const size_t xs = (size_t)N * C * H * W, ys = (size_t)N * O * g.out_h * g.out_w;
    float *x = random_floats(rng, xs), *dy = random_floats(rng, ys), *bias = random_floats(rng, O);
    float *dx0 = random_floats(rng, xs), *bx = random_floats(rng, xs), *by = random_floats(rng, xs);
    float *mean = random_floats(rng, (size_t)C);
    const size_t nnz = (size_t)c.row_ptr[O];
    float *dw0 = random_floats(rng, nnz + 1), *dwv[2];
    float *y[2], *ys2[2], *dxo[2], *dxa[2], *dxb[2];
    double *st[2], *sm[2];
    for (int v = 0; v < 2; v++) {
        y[v] = new_floats(ys), ys2[v] = new_floats(ys);
        dxo[v] = new_floats(xs), dxa[v] = new_floats(xs), dxb[v] = new_floats(xs), dwv[v] = new_floats(nnz + 1);
        st[v] = new_bytes(sizeof(double) * 3 * (size_t)O), sm[v] = new_bytes(sizeof(double) * 2 * (size_t)C);
    }
    st_spconv_plan *plan = NULL;
    CHECK_OK(st_spconv_plan_create(&g, c.row_ptr, c.col, &plan));
    if (!plan) return;
    for (int blk = 2; blk <= ST_SPCONV_PX_BLOCK_MAX + 1; blk++) {
        for (int v = 0; v < 2; v++) {
            st_spconv_plan_set_px_block(plan, v == 0 ? 1 : blk);
            /* blocks of 1 .. C input channels (forward) and 1 .. O output channels (input gradient)
             * against none */
            const int cb = 1 + blk % C, ob = 1 + blk % O;
            CHECK_OK(st_spconv_plan_set_block(plan, ST_SPCONV_FORWARD, v == 0 ? 0 : cb));
            CHECK_OK(st_spconv_plan_set_block(plan, ST_SPCONV_INPUT_GRADIENT, v == 0 ? 0 : ob));
            CHECK(st_spconv_plan_block(plan, ST_SPCONV_FORWARD) == (v == 0 || cb >= C ? C : cb));
            CHECK(st_spconv_plan_block(plan, ST_SPCONV_INPUT_GRADIENT) == (v == 0 || ob >= O ? O : ob));
            st_spconv_forward(plan, x, c.val, bias, y[v]);
            st_spconv_forward_stats(plan, x, c.val, bias, ys2[v], st[v]);
            st_spconv_backward_data(plan, dy, c.val, dxo[v], 0);
            memcpy(dxa[v], dx0, xs * sizeof(float));
            st_spconv_backward_data(plan, dy, c.val, dxa[v], 1);
            memcpy(dxb[v], dx0, xs * sizeof(float));
            st_spconv_bn_sums bn = {by, bx, mean, sm[v]};
            CHECK_OK(st_spconv_backward_data_bn_sums(plan, dy, c.val, dxb[v], 1, &bn));
            memcpy(dwv[v], dw0, (nnz + 1) * sizeof(float));
            st_spconv_backward_weight(plan, x, dy, dwv[v], NULL);
        }
        const int same = memcmp(y[0], y[1], ys * 4) == 0 && memcmp(ys2[0], ys2[1], ys * 4) == 0 &&
                         memcmp(y[0], ys2[0], ys * 4) == 0 && memcmp(st[0], st[1], sizeof(double) * 3 * (size_t)O) == 0 &&
                         memcmp(dxo[0], dxo[1], xs * 4) == 0 && memcmp(dxa[0], dxa[1], xs * 4) == 0 &&
                         memcmp(dxb[0], dxb[1], xs * 4) == 0 && memcmp(dxa[0], dxb[0], xs * 4) == 0 &&
                         memcmp(sm[0], sm[1], sizeof(double) * 2 * (size_t)C) == 0 &&
                         memcmp(dwv[0], dwv[1], nnz * sizeof(float)) == 0;
        if (!same) {
            fprintf(stderr, "[%s] px_block %d, channel blocks %d / %d differ from unblocked: N=%d C=%d %dx%d O=%d K=%d "
                    "S=%d P=%d d=%.2f\n", st_isa_name(st_isa_current()), blk, 1 + blk % C, 1 + blk % O, N, C, H, W, O, K,
                    S, P, d);
            st_test_failures++;
        }
    }
    st_spconv_plan_free(plan);
    for (int v = 0; v < 2; v++)
        free(y[v]), free(ys2[v]), free(dxo[v]), free(dxa[v]), free(dxb[v]), free(st[v]), free(sm[v]), free(dwv[v]);
    free(x), free(dy), free(bias), free(dx0), free(bx), free(by), free(mean), free(dw0);
    free_csr(&c);
}

static void test_px_block_identity(void) {
    /* every ISA; AVX-512 with each tuning of its gathers */
    const char *isas[] = {"generic", "avx2", "avx512", "avx512"};
    const st_spconv_tuning tunings[] = {ST_SPCONV_TUNING_ZEN, ST_SPCONV_TUNING_ZEN, ST_SPCONV_TUNING_ZEN,
                                        ST_SPCONV_TUNING_INTEL};
    const st_spconv_tuning auto_tuning = st_spconv_tuning_current();
    for (int k = 0; k < 4; k++) {
        CHECK_OK(st_isa_force(isas[k]));
        st_spconv_tuning_force(tunings[k]);
        st_rng rng;
        st_rng_seed(&rng, 11, (uint64_t)k);
        px_block_case(&rng, 128, 5, 13, 14, 6, 3, 1, 1, 0.3);  /* the 128-wide path, interior runs of 12 */
        px_block_case(&rng, 256, 3, 6, 9, 4, 3, 1, 1, 0.4);   /* two 128-wide blocks */
        px_block_case(&rng, 133, 4, 11, 12, 5, 3, 2, 1, 0.3); /* stride 2, ragged batch */
        px_block_case(&rng, 128, 4, 9, 10, 5, 1, 2, 0, 0.5);  /* 1x1 stride 2 */
        px_block_case(&rng, 40, 3, 15, 16, 4, 7, 2, 3, 0.2);  /* 7x7 stride-2 stem */
        px_block_case(&rng, 128, 3, 12, 13, 4, 7, 1, 3, 0.2); /* 7x7 stride 1 */
        px_block_case(&rng, 7, 2, 6, 11, 4, 3, 1, 1, 0.5);    /* tiny batch, scalar tails */
        px_block_case(&rng, 64, 4, 10, 10, 5, 3, 1, 0, 0.3);  /* no padding, runs of 64 */
        px_block_case(&rng, 128, 6, 8, 9, 5, 3, 1, 1, 0.9);   /* rows of ~49 kept weights (prefetching rows) */
    }
    CHECK_OK(st_isa_force("auto"));
    st_spconv_tuning_force(auto_tuning);
}

/* The default blocks: the most channels whose share of a work item's
 * source neighbourhood fits half the L2 given (3x3 at batch 128: the
 * forward's 6 output pixels read 8 x 3 runs of 512 bytes per input channel,
 * the input gradient's 6 input pixels at stride 1 the same per output
 * channel, at stride 2 7 x 2), all channels where they fit, at least one. */
static void test_default_block(void) {
    st_spconv_geom g;
    st_spconv_geom_init(&g, 128, 256, 8, 8, 512, 3, 1, 1);
    CHECK(st_spconv_default_block(&g, ST_SPCONV_FORWARD, 6, (size_t)1 << 20) == 42);
    CHECK(st_spconv_default_block(&g, ST_SPCONV_FORWARD, 6, (size_t)2 << 20) == 85);
    CHECK(st_spconv_default_block(&g, ST_SPCONV_FORWARD, 6, (size_t)64 << 20) == 256);
    CHECK(st_spconv_default_block(&g, ST_SPCONV_INPUT_GRADIENT, 6, (size_t)64 << 20) == 512);
    CHECK(st_spconv_default_block(&g, ST_SPCONV_INPUT_GRADIENT, 6, (size_t)1 << 20) == 42);
    CHECK(st_spconv_default_block(&g, ST_SPCONV_FORWARD, 6, 1000) == 1);
    st_spconv_geom_init(&g, 128, 256, 32, 32, 512, 3, 2, 1);
    CHECK(st_spconv_default_block(&g, ST_SPCONV_INPUT_GRADIENT, 6, (size_t)1 << 20) == 73);
    st_spconv_geom_init(&g, 128, 16, 32, 32, 16, 3, 1, 1);
    CHECK(st_spconv_default_block(&g, ST_SPCONV_FORWARD, 6, (size_t)1 << 20) == 16);
    CHECK(st_spconv_default_block(&g, ST_SPCONV_FORWARD, 6, 0) >= 1);
}

/* The tunings of the AVX-512 gathers (other prefetching) give the same bits:
 * forward, with statistics, input gradient overwriting and accumulating,
 * at row lengths around the prefetch distance, the output-prefetch span (4
 * kept weights per pixel) and the Zen prefetch threshold (32). */
static void test_tunings_identical(void) {
    if (st_isa_best_supported() != ST_ISA_AVX512) return;
    CHECK_OK(st_isa_force("avx512"));
    const st_spconv_tuning auto_tuning = st_spconv_tuning_current();
    const double densities[] = {0.02, 0.1, 0.3, 0.6, 1.0}; /* rows of ~1, 4, 13, 26 and 45 kept weights */
    st_rng rng;
    st_rng_seed(&rng, 21, 0);
    for (int tn = 1; tn < ST_SPCONV_TUNINGS; tn++) /* each tuning against the first */
    for (int di = 0; di < 5; di++) {
        const int N = 128, C = 5, H = 9, O = 6;
        st_spconv_geom g;
        st_spconv_geom_init(&g, N, C, H, H, O, 3, 1, 1);
        csr c = random_csr(&rng, O, C * 9, densities[di]);
        const size_t xs = (size_t)N * C * H * H, ys = (size_t)N * O * H * H;
        float *x = random_floats(&rng, xs), *dy = random_floats(&rng, ys), *dx0 = random_floats(&rng, xs);
        float *y[2], *y2[2], *dxo[2], *dxa[2];
        double st[2][18];
        st_spconv_plan *plan = NULL;
        CHECK_OK(st_spconv_plan_create(&g, c.row_ptr, c.col, &plan));
        if (!plan) return;
        for (int t = 0; t < 2; t++) {
            st_spconv_tuning_force(t == 0 ? ST_SPCONV_TUNING_ZEN : (st_spconv_tuning)tn);
            y[t] = new_floats(ys), y2[t] = new_floats(ys), dxo[t] = new_floats(xs), dxa[t] = new_floats(xs);
            st_spconv_forward(plan, x, c.val, NULL, y[t]);
            st_spconv_forward_stats(plan, x, c.val, NULL, y2[t], st[t]);
            st_spconv_backward_data(plan, dy, c.val, dxo[t], 0);
            memcpy(dxa[t], dx0, xs * sizeof(float));
            st_spconv_backward_data(plan, dy, c.val, dxa[t], 1);
        }
        CHECK(memcmp(y[0], y[1], ys * 4) == 0 && memcmp(y2[0], y2[1], ys * 4) == 0 &&
              memcmp(st[0], st[1], sizeof st[0]) == 0 && memcmp(dxo[0], dxo[1], xs * 4) == 0 &&
              memcmp(dxa[0], dxa[1], xs * 4) == 0);
        st_spconv_plan_free(plan);
        for (int t = 0; t < 2; t++) free(y[t]), free(y2[t]), free(dxo[t]), free(dxa[t]);
        free(x), free(dy), free(dx0);
        free_csr(&c);
    }
    st_spconv_tuning_force(auto_tuning);
    CHECK_OK(st_isa_force("auto"));
}

/* The statistics of st_spconv_forward_stats do not depend on the thread count. */
static void test_stats_thread_invariance(void) {
    st_rng rng;
    st_rng_seed(&rng, 8, 0);
    st_spconv_geom g;
    st_spconv_geom_init(&g, 128, 6, 9, 9, 7, 3, 1, 1);
    csr c = random_csr(&rng, 7, 6 * 9, 0.2);
    const size_t xs = (size_t)128 * 6 * 81, ys = (size_t)128 * 7 * 81;
    float *x = random_floats(&rng, xs), *y = new_floats(ys);
    for (size_t i = 0; i < xs; i++) x[i] += 3.0f; /* |mean| > std: the shift matters */
    double st[2][21];
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t + 1);
        st_spconv_plan *plan = NULL;
        CHECK_OK(st_spconv_plan_create(&g, c.row_ptr, c.col, &plan));
        if (!plan) return;
        st_spconv_forward_stats(plan, x, c.val, NULL, y, st[t]);
        st_spconv_plan_free(plan);
    }
    omp_set_num_threads(2);
    CHECK(memcmp(st[0], st[1], sizeof st[0]) == 0);
    free(x), free(y);
    free_csr(&c);
}

/* The batch-norm halves of the handed-over statistics and sums
 * (st_bn_act_forward_train_stats, st_bn_act_backward_sums) give what the
 * two-pass kernels give, to the rounding of the sums. */
static void test_bn_given_sums(void) {
    st_rng rng;
    st_rng_seed(&rng, 6, 0);
    const int C = 5, H = 6, N = 40;
    const int64_t plane = (int64_t)H * H * N, n = C * plane;
    st_spconv_geom g;
    st_spconv_geom_init(&g, N, C, H, H, C, 3, 1, 1);
    const st_bn_act_shape s = {1, C, (int)plane, 1};
    float *x = random_floats(&rng, (size_t)n), *dy = random_floats(&rng, (size_t)n), *y1 = new_floats((size_t)n),
          *y2 = new_floats((size_t)n), *dx1 = new_floats((size_t)n), *dx2 = new_floats((size_t)n);
    for (int64_t j = 0; j < n; j++) x[j] = 2.0f + 0.5f * x[j];
    float gamma[5] = {1.0f, 0.5f, -1.5f, 2.0f, 0.1f}, beta[5] = {0.0f, 0.1f, -0.2f, 0.3f, 0.0f};
    float m1[5], m2[5], is1[5], is2[5], rm1[5] = {0}, rm2[5] = {0}, rv1[5] = {1, 1, 1, 1, 1}, rv2[5] = {1, 1, 1, 1, 1};
    float dg1[5] = {0}, dg2[5] = {0}, db1[5] = {0}, db2[5] = {0};
    double *scratch = new_bytes(sizeof(double) * st_bn_act_scratch_doubles(&s, 4)), stats[15], sums[10];
    st_bn_act_forward_train(&s, x, gamma, beta, NULL, 1, 0.1f, 1e-5f, y1, m1, is1, rm1, rv1, scratch);
    st_spconv_channel_stats_reference(&g, x, stats); /* x as a conv output of this geometry */
    st_bn_act_forward_train_stats(&s, stats, x, gamma, beta, NULL, 1, 0.1f, 1e-5f, y2, m2, is2, rm2, rv2);
    CHECK(max_rel_diff(y2, y1, (size_t)n) < 1e-5);
    for (int c = 0; c < C; c++) {
        CHECK_NEAR(m2[c], m1[c], 1e-6);
        CHECK_NEAR(is2[c], is1[c], 1e-5 * is1[c]);
        CHECK_NEAR(rv2[c], rv1[c], 1e-6);
    }
    st_bn_act_backward(&s, x, y1, 1, dy, gamma, m1, is1, dx1, 0, NULL, 0, dg1, db1, scratch);
    st_spconv_bn_sums bn = {y1, x, m1, sums};
    st_spconv_bn_sums_reference(&g, dy, &bn);
    st_bn_act_backward_sums(&s, sums, x, y1, 1, dy, gamma, m1, is1, dx2, 0, NULL, 0, dg2, db2);
    CHECK(max_rel_diff(dx2, dx1, (size_t)n) < 1e-5);
    CHECK(max_rel_diff(dg2, dg1, 5) < 1e-5 && max_rel_diff(db2, db1, 5) < 1e-5);
    free(x), free(dy), free(y1), free(y2), free(dx1), free(dx2), free(scratch);
}

static void test_layout_round_trip(void) {
    st_rng rng;
    st_rng_seed(&rng, 2, 0);
    const int N = 5, C = 3, HW = 7;
    float *x = random_floats(&rng, (size_t)N * C * HW), *t = new_floats((size_t)N * C * HW),
          *back = new_floats((size_t)N * C * HW);
    st_nchw_to_chwn(x, N, C, HW, t);
    CHECK(t[((1 * HW + 2) * N) + 4] == x[(4 * C + 1) * HW + 2]);
    st_chwn_to_nchw(t, N, C, HW, back, 0);
    CHECK(memcmp(x, back, sizeof(float) * (size_t)N * C * HW) == 0);
    st_chwn_to_nchw(t, N, C, HW, back, 1);
    CHECK(back[5] == 2.0f * x[5]);
    free(x), free(t), free(back);
}

/* sddmm_px gives the bits of npx calls of sddmm in pixel order, at every
 * ISA, for 1-7 pixels, the 128-wide path and other batches, with and
 * without slots. */
static void test_sddmm_px_identity(void) {
    const st_spconv_prims *all[3] = {&st_spconv_prims_generic, NULL, NULL};
    const int have[3] = {1, st_isa_best_supported() >= ST_ISA_AVX2, st_isa_best_supported() >= ST_ISA_AVX512};
#ifdef ST_SPCONV_HAVE_X86
    all[1] = &st_spconv_prims_avx2, all[2] = &st_spconv_prims_avx512;
#endif
    st_rng rng;
    st_rng_seed(&rng, 23, 0);
    const int ns[4] = {128, 7, 133, 64}, cnt = 37, slots = 48;
    for (int k = 0; k < 3; k++) {
        if (!have[k] || !all[k]) continue;
        for (int ni = 0; ni < 4; ni++)
            for (int npx = 1; npx <= 7; npx++)
                for (int with_slot = 0; with_slot < 2; with_slot++) {
                    const int n = ns[ni];
                    const int64_t src_step = n + 3, dy_step = 2 * n + 1, src_len = 40 * (int64_t)n + 8 * src_step;
                    float *src = random_floats(&rng, (size_t)src_len), *dy = random_floats(&rng, (size_t)(8 * dy_step));
                    int64_t off[37];
                    int32_t slot[37];
                    for (int e = 0; e < cnt; e++) {
                        off[e] = (int64_t)(st_rng_next(&rng) % 40) * n;
                        slot[e] = (int32_t)((e * 7 + 3) % slots); /* distinct: 7 and 48 are coprime */
                    }
                    float *a1 = random_floats(&rng, (size_t)slots * ST_SPCONV_LANES), *a2 = new_floats((size_t)slots * ST_SPCONV_LANES);
                    memcpy(a2, a1, sizeof(float) * (size_t)slots * ST_SPCONV_LANES);
                    const int32_t *sl = with_slot ? slot : NULL;
                    for (int q = 0; q < npx; q++) all[k]->sddmm(n, cnt, off, sl, dy + q * dy_step, src + q * src_step, a1);
                    all[k]->sddmm_px(n, npx, cnt, off, sl, dy, dy_step, src, src_step, a2);
                    if (memcmp(a1, a2, sizeof(float) * (size_t)slots * ST_SPCONV_LANES) != 0) {
                        fprintf(stderr, "sddmm_px (prims %d) differs: n=%d npx=%d slots=%d\n", k, n, npx, with_slot);
                        st_test_failures++;
                    }
                    free(src), free(dy), free(a1), free(a2);
                }
    }
}

int main(void) {
    test_reference_semantics();
    test_fast_vs_reference();
    test_px_block_identity();
    test_tunings_identical();
    test_default_block();
    test_sddmm_px_identity();
    test_stats_thread_invariance();
    test_bn_given_sums();
    test_layout_round_trip();
    TEST_MAIN_END();
}
