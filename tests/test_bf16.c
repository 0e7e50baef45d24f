/* bf16 storage (kernels/bf16.h) and the bf16 sparse convolutions
 * (kernels/sparse_conv_bf16.h):
 *  1. the scalar rounding against hand-worked cases (ties to even, overflow
 *     to infinity, denormals to zero, NaN made quiet), and against the CPU's
 *     vcvtneps2bf16 on a sweep of bit patterns where the CPU has AVX512_BF16
 *     (else that part is reported skipped);
 *  2. the vector conversions against the scalar ones, bit for bit;
 *  3. both designs of the bf16 sparse convolution passes (cvt, dp) against
 *     the double-sum references of sparse_conv.h run on the widened bf16
 *     values, on the shapes of test_sparse_conv (hot batch 128, runs of 32,
 *     ragged tails, stride 2, 1x1, linear), with tolerance 3e-5 of the
 *     largest reference value (fp32 sums of up to K*K*C exact products;
 *     the fp32 kernels meet 2e-5), and the same bits for 1 and 2 threads;
 *     the forward pass with batch-norm statistics: the same y bit for bit,
 *     statistics as a double sum over y (as test_sparse_conv) and the same
 *     bits for 1 and 2 threads.
 *     Without AVX512_BF16 the scalar fallback is tested and the vector part
 *     reported skipped;
 *  4. the plans (the fp32 plan's builder, shared) reject a bad geometry or
 *     structure with a message naming their kernels. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "core/rng.h"
#include "kernels/bf16.h"
#include "kernels/isa.h"
#include "kernels/isa_target.h"
#include "kernels/sparse_conv_bf16.h"
#include "testing.h"

#ifdef ST_HAVE_X86_TARGETS
#include <immintrin.h>
ST_TARGET_AVX512_BF16_BEGIN
static st_bf16 hw_round(float f) { /* one vcvtneps2bf16 */
    const __m128bh h = _mm_cvtneps_pbh(_mm_set1_ps(f));
    st_bf16 out[8];
    _mm_storeu_si128((__m128i *)out, (__m128i)h);
    return out[0];
}
ST_TARGET_END
#endif

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void test_round_cases(void) {
    struct { uint32_t in; uint16_t want; } cases[] = {
        {0x3F800000u, 0x3F80u}, /* 1.0 */
        {0x3F808000u, 0x3F80u}, /* tie, even below: down */
        {0x3F818000u, 0x3F82u}, /* tie, odd below: up */
        {0x3F808001u, 0x3F81u}, /* above the tie: up */
        {0x3F807FFFu, 0x3F80u}, /* below the tie: down */
        {0xBF818000u, 0xBF82u}, /* negative: same magnitude rules */
        {0x7F7FFFFFu, 0x7F80u}, /* largest float rounds to +inf */
        {0x7F800000u, 0x7F80u}, /* +inf */
        {0xFF800000u, 0xFF80u}, /* -inf */
        {0x7F800001u, 0x7FC0u}, /* signalling NaN, payload below bit 16: quiet NaN */
        {0xFFC12345u, 0xFFC1u}, /* quiet NaN keeps its sign and upper payload */
        {0x00000001u, 0x0000u}, /* denormal: +0 */
        {0x807FFFFFu, 0x8000u}, /* negative denormal: -0 */
        {0x00800000u, 0x0080u}, /* smallest normal */
        {0x80000000u, 0x8000u}, /* -0 */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const st_bf16 got = st_bf16_round(from_bits(cases[k].in));
        if (got != cases[k].want) {
            fprintf(stderr, "st_bf16_round(0x%08x) = 0x%04x, want 0x%04x\n", cases[k].in, got, cases[k].want);
            st_test_failures++;
        }
    }
    CHECK(st_bf16_to_float(0x3F80u) == 1.0f);
    CHECK(st_bf16_to_float(st_bf16_round(-2.5f)) == -2.5f); /* exactly representable values survive */
}

static void test_round_vs_cpu(void) {
    if (!st_isa_cpu_has_avx512_bf16()) {
        TEST_SKIP_PART("the CPU has no AVX512_BF16: scalar rounding not compared with vcvtneps2bf16");
        return;
    }
#ifdef ST_HAVE_X86_TARGETS
    /* every 65521st bit pattern (all exponents, signs, NaNs) and, around
     * each, the 2 x 17 patterns whose low 16 bits are near the tie */
    int bad = 0;
    for (uint64_t u = 0; u <= 0xFFFFFFFFu; u += 65521u) {
        const uint32_t hi = (uint32_t)u & 0xFFFF0000u;
        for (int k = -17; k <= 17; k++) {
            const uint32_t v = k == 0 ? (uint32_t)u : hi + (uint32_t)(0x8000 + k);
            const float f = from_bits(v);
            if (st_bf16_round(f) != hw_round(f) && bad++ < 5)
                fprintf(stderr, "0x%08x: scalar 0x%04x, vcvtneps2bf16 0x%04x\n", v, st_bf16_round(f), hw_round(f));
        }
    }
    CHECK(bad == 0);
#endif
}

static void test_vector_conversions(void) {
    st_rng rng;
    st_rng_seed(&rng, 17, 0);
    const size_t n = 1000 + 37; /* vector blocks and a masked tail */
    float *x = new_floats(n), *back = new_floats(n);
    st_bf16 *a = new_bytes(n * sizeof(st_bf16)), *b = new_bytes(n * sizeof(st_bf16));
    for (size_t j = 0; j < n; j++) {
        uint32_t u = (uint32_t)(st_rng_uniform_double(&rng) * 4294967295.0);
        if (j % 3) u = (u & 0x8000FFFFu) | ((uint32_t)(120 + j % 16) << 23); /* mostly ordinary magnitudes */
        x[j] = from_bits(u);
    }
    const char *isas[] = {"generic", "avx512"};
    for (int k = 0; k < 2; k++) {
        CHECK_OK(st_isa_force(isas[k]));
        st_bf16_from_floats(x, n, a);
        st_bf16_from_floats_reference(x, n, b);
        CHECK(memcmp(a, b, n * sizeof(st_bf16)) == 0);
        st_bf16_to_floats(a, n, back);
        for (size_t j = 0; j < n; j++) {
            uint32_t u;
            memcpy(&u, &back[j], sizeof u);
            if (u != (uint32_t)a[j] << 16) {
                fprintf(stderr, "[%s] widening %zu: 0x%08x from 0x%04x\n", isas[k], j, u, a[j]);
                st_test_failures++;
                break;
            }
        }
    }
    CHECK_OK(st_isa_force("auto"));
    free(x), free(back), free(a), free(b);
}

/* random bf16 values in [-1, 1) and their float images */
static st_bf16 *random_bf16(st_rng *rng, size_t n, float **wide) {
    st_bf16 *h = new_bytes((n ? n : 1) * sizeof(st_bf16));
    *wide = new_floats(n ? n : 1);
    for (size_t j = 0; j < n; j++) {
        h[j] = st_bf16_round((float)(st_rng_uniform_double(rng) * 2.0 - 1.0));
        (*wide)[j] = st_bf16_to_float(h[j]);
    }
    return h;
}

static double max_rel_diff(const float *a, const float *b, size_t n) {
    double worst = 0.0, scale = 1e-3;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)b[i]));
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - (double)b[i]) / scale);
    return worst;
}

static double worst_seen = 0.0;

static void compare_conv(st_rng *rng, int N, int C, int H, int W, int O, int K, int S, int P, double d) {
    st_spconv_geom g;
    st_spconv_geom_init(&g, N, C, H, W, O, K, S, P);
    const int cols = C * K * K;
    int64_t *row_ptr = new_bytes(sizeof(int64_t) * (size_t)(O + 1));
    int32_t *col = new_bytes(sizeof(int32_t) * (size_t)O * (size_t)cols + 4);
    int64_t nnz = 0;
    for (int o = 0; o < O; o++) {
        row_ptr[o] = nnz;
        for (int j = 0; j < cols; j++)
            if ((O >= 3 && o == 1) || (!(O >= 3 && o == 0) && st_rng_uniform_double(rng) < d)) col[nnz++] = j;
    }
    row_ptr[O] = nnz;
    const size_t xs = (size_t)N * C * H * W, ys = (size_t)N * O * g.out_h * g.out_w;
    float *xf, *dyf, *wf;
    st_bf16 *x = random_bf16(rng, xs, &xf), *dy = random_bf16(rng, ys, &dyf), *w = random_bf16(rng, (size_t)nnz, &wf);
    float *bias = new_floats((size_t)O), *y_ref = new_floats(ys), *dx_ref = new_floats(xs);
    float *dw_ref = new_floats((size_t)nnz + 1), *db_ref = new_floats((size_t)O);
    for (int o = 0; o < O; o++) bias[o] = 0.25f * (float)(o % 3);
    for (size_t j = 0; j < xs; j++) dx_ref[j] = (float)(j % 5) * 0.125f; /* accumulate onto these */
    const int accumulate = (N + C) % 2;
    st_spconv_forward_reference(&g, row_ptr, col, xf, wf, bias, y_ref);
    st_spconv_backward_data_reference(&g, row_ptr, col, dyf, wf, dx_ref, accumulate);
    st_spconv_backward_weight_reference(&g, row_ptr, col, xf, dyf, dw_ref, db_ref);
    float *y[2], *dx[2], *dw[2], *db[2];
    double *st[2] = {new_bytes(sizeof(double) * 3 * (size_t)O), new_bytes(sizeof(double) * 3 * (size_t)O)};
    double *st_ref = new_bytes(sizeof(double) * 3 * (size_t)O);
    float *y2 = new_floats(ys);
    for (int kind = 0; kind < 2; kind++) {
        for (int t = 0; t < 2; t++) {
            omp_set_num_threads(t + 1);
            st_spbf16_plan *plan = NULL;
            CHECK_OK(st_spbf16_plan_create(&g, row_ptr, col, &plan));
            if (!plan) return;
            y[t] = new_floats(ys), dx[t] = new_floats(xs), dw[t] = new_floats((size_t)nnz + 1);
            db[t] = new_floats((size_t)O);
            for (size_t j = 0; j < xs; j++) dx[t][j] = (float)(j % 5) * 0.125f;
            st_spbf16_forward(plan, (st_spbf16_kind)kind, x, w, bias, y[t]);
            st_spbf16_forward_stats(plan, (st_spbf16_kind)kind, x, w, bias, y2, st[t]);
            if (memcmp(y2, y[t], ys * sizeof(float)) != 0) {
                fprintf(stderr, "[%s] N=%d C=%d O=%d: forward with statistics changes y\n", kind ? "dp" : "cvt", N, C, O);
                st_test_failures++;
            }
            st_spbf16_backward_data(plan, (st_spbf16_kind)kind, dy, w, dx[t], accumulate);
            st_spbf16_backward_weight(plan, (st_spbf16_kind)kind, x, dy, dw[t], db[t]);
            /* the weight gradient's multi-pixel SDDMM calls give the bits of per-pixel ones */
            float *dw1 = new_floats((size_t)nnz + 1);
            st_spbf16_plan_set_px_block(plan, 1);
            st_spbf16_backward_weight(plan, (st_spbf16_kind)kind, x, dy, dw1, NULL);
            if (memcmp(dw1, dw[t], (size_t)nnz * sizeof(float)) != 0) {
                fprintf(stderr, "[%s] N=%d C=%d O=%d: weight gradient differs pixel by pixel\n", kind ? "dp" : "cvt", N,
                        C, O);
                st_test_failures++;
            }
            free(dw1);
            st_spbf16_plan_free(plan);
        }
        omp_set_num_threads(2);
        st_spconv_channel_stats_reference(&g, y[0], st_ref);
        const double count = (double)g.out_h * g.out_w * N;
        for (int o = 0; o < O; o++) { /* mean and variance, as batch norm uses them (tolerances of test_sparse_conv) */
            const double *a = st[0] + 3 * o, *r = st_ref + 3 * o;
            const double m = a[0] + a[1] / count, mr = r[0] + r[1] / count;
            const double v = a[2] / count - (a[1] / count) * (a[1] / count);
            const double vr = r[2] / count - (r[1] / count) * (r[1] / count);
            if (!(a[0] == r[0] && fabs(m - mr) <= 1e-6 * (sqrt(fabs(vr)) + fabs(mr)) + 1e-12 &&
                  fabs(v - vr) <= 1e-5 * fabs(vr) + 1e-12)) {
                fprintf(stderr, "[%s] N=%d C=%d O=%d: channel %d stats mean %.9g vs %.9g, var %.9g vs %.9g\n",
                        kind ? "dp" : "cvt", N, C, O, o, m, mr, v, vr);
                st_test_failures++;
            }
        }
        CHECK(memcmp(st[0], st[1], sizeof(double) * 3 * (size_t)O) == 0);
        const double ey = max_rel_diff(y[0], y_ref, ys), ex = max_rel_diff(dx[0], dx_ref, xs),
                     ew = max_rel_diff(dw[0], dw_ref, (size_t)nnz + 1), eb = max_rel_diff(db[0], db_ref, (size_t)O);
        worst_seen = fmax(worst_seen, fmax(fmax(ey, ex), fmax(ew, eb)));
        if (!(ey < 3e-5 && ex < 3e-5 && ew < 3e-5 && eb < 3e-5)) {
            fprintf(stderr, "[%s %s] N=%d C=%d %dx%d O=%d K=%d S=%d P=%d d=%.2f: fwd %.2g bwd-data %.2g bwd-weight %.2g "
                    "bias %.2g\n", st_isa_has_avx512_bf16() ? "avx512bf16" : "generic", kind ? "dp" : "cvt", N, C, H,
                    W, O, K, S, P, d, ey, ex, ew, eb);
            st_test_failures++;
        }
        if (memcmp(y[0], y[1], ys * sizeof(float)) || memcmp(dx[0], dx[1], xs * sizeof(float)) ||
            memcmp(dw[0], dw[1], (size_t)nnz * sizeof(float)) || memcmp(db[0], db[1], (size_t)O * sizeof(float))) {
            fprintf(stderr, "[%s] N=%d C=%d O=%d: 1 and 2 threads differ\n", kind ? "dp" : "cvt", N, C, O);
            st_test_failures++;
        }
        for (int t = 0; t < 2; t++) free(y[t]), free(dx[t]), free(dw[t]), free(db[t]);
    }
    free(row_ptr), free(col), free(x), free(xf), free(dy), free(dyf), free(w), free(wf), free(bias), free(y_ref);
    free(dx_ref), free(dw_ref), free(db_ref), free(st[0]), free(st[1]), free(st_ref), free(y2);
}

static void test_conv_vs_reference(void) {
    const char *isas[] = {"generic", "avx512"};
    for (int k = 0; k < 2; k++) {
        CHECK_OK(st_isa_force(isas[k]));
        if (k == 1 && !st_isa_has_avx512_bf16()) {
            TEST_SKIP_PART("the CPU has no AVX512_BF16: bf16 vector convolutions not tested");
            break;
        }
        printf("bf16 convolutions: %s\n", st_isa_has_avx512_bf16() ? "avx512bf16" : "generic");
        st_rng rng;
        st_rng_seed(&rng, 23, (uint64_t)k);
        const double densities[] = {0.0, 0.05, 0.3, 1.0};
        for (int di = 0; di < 4; di++) {
            const double d = densities[di];
            compare_conv(&rng, 128, 5, 8, 8, 6, 3, 1, 1, d);  /* the hot path */
            compare_conv(&rng, 96, 4, 5, 5, 5, 3, 1, 1, d);   /* runs of 32 */
            compare_conv(&rng, 130, 3, 5, 6, 4, 3, 2, 1, d);  /* stride 2, ragged batch */
            compare_conv(&rng, 16, 4, 9, 7, 5, 1, 2, 0, d);   /* 1x1 shortcut, scalar only */
            compare_conv(&rng, 7, 2, 6, 6, 3, 5, 1, 2, d);    /* 5x5, tiny batch */
            compare_conv(&rng, 64, 37, 1, 1, 9, 1, 1, 0, d);  /* linear layer */
            compare_conv(&rng, 160, 16, 6, 6, 16, 3, 1, 1, d); /* 128 + 32, 16 channels (the A/B's width) */
        }
    }
    printf("largest relative difference from the references: %.2g\n", worst_seen);
    CHECK_OK(st_isa_force("auto"));
}

/* Both plans come from one builder (kernels/sparse_conv_plan.h): each
 * names its own kernels in the message, and a failed bf16 plan leaves
 * nothing behind (the pointer NULL). */
static void test_plan_errors(void) {
    st_spconv_geom g;
    st_spconv_geom_init(&g, 4, 2, 5, 5, 2, 3, 1, 1);
    const int64_t row_ptr[3] = {0, 2, 3};
    const int32_t unsorted[3] = {4, 3, 7}, outside[3] = {1, 2, 18};
    st_spbf16_plan *q = (st_spbf16_plan *)&g;
    st_spconv_plan *p = (st_spconv_plan *)&g;
    CHECK(st_spbf16_plan_create(&g, row_ptr, unsorted, &q) == ST_ERR_ARGUMENT && q == NULL);
    CHECK(strcmp(st_last_error(), "bf16 sparse convolution: column indices of row 0 are not increasing in [0, 18)") == 0);
    CHECK(st_spconv_plan_create(&g, row_ptr, outside, &p) == ST_ERR_ARGUMENT && p == NULL);
    CHECK(strcmp(st_last_error(), "sparse convolution: column indices of row 1 are not increasing in [0, 18)") == 0);
    st_spconv_geom bad = g;
    bad.stride = 0;
    CHECK(st_spbf16_plan_create(&bad, row_ptr, unsorted, &q) == ST_ERR_ARGUMENT && q == NULL);
    CHECK(strcmp(st_last_error(), "bf16 sparse convolution: invalid geometry") == 0);
    const int32_t good[3] = {3, 4, 7};
    CHECK_OK(st_spbf16_plan_create(&g, row_ptr, good, &q));
    st_spbf16_plan_free(q);
}

int main(void) {
    test_round_cases();
    test_round_vs_cpu();
    test_vector_conversions();
    test_conv_vs_reference();
    test_plan_errors();
    TEST_MAIN_END();
}
