/* bf16 storage (kernels/bf16.h) and the bf16 sparse convolutions
 * (kernels/sparse_conv_bf16.h):
 *  1. the scalar rounding against hand-worked cases (ties to even, overflow
 *     to infinity, denormals to zero, NaN made quiet), and against the CPU's
 *     vcvtneps2bf16 on a sweep of bit patterns where the CPU has AVX512_BF16
 *     (else that part is reported skipped);
 *  2. the vector conversions against the scalar ones, bit for bit. */
#include <stdint.h>
#include <string.h>

#include "core/rng.h"
#include "kernels/bf16.h"
#include "kernels/isa.h"
#include "kernels/isa_target.h"
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

int main(void) {
    test_round_cases();
    test_round_vs_cpu();
    test_vector_conversions();
    TEST_MAIN_END();
}
