/* bf16 conversions (see bf16.h): AVX512_BF16 where the CPU has it, else the
 * scalar reference, with the same bits. */
#include "kernels/bf16.h"

#include "kernels/isa.h"
#include "kernels/isa_target.h"

#ifdef ST_HAVE_X86_TARGETS
#include <immintrin.h>
#endif

void st_bf16_from_floats_reference(const float *x, size_t n, st_bf16 *out) {
    for (size_t j = 0; j < n; j++) out[j] = st_bf16_round(x[j]);
}

#ifdef ST_HAVE_X86_TARGETS
ST_TARGET_AVX512_BF16_BEGIN
static void from_floats_avx512bf16(const float *x, size_t n, st_bf16 *out) {
    size_t j = 0;
    for (; j + 32 <= n; j += 32) {
        /* vcvtne2ps2bf16: the upper half of the result comes from the first operand */
        const __m512bh h = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + j + 16), _mm512_loadu_ps(x + j));
        _mm512_storeu_si512((void *)(out + j), (__m512i)h);
    }
    for (; j < n; j += 16) {
        const __mmask16 k = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1u);
        const __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, x + j));
        _mm256_mask_storeu_epi16((void *)(out + j), k, (__m256i)h);
    }
}

static void to_floats_avx512(const st_bf16 *x, size_t n, float *out) {
    size_t j = 0;
    for (; j + 16 <= n; j += 16)
        _mm512_storeu_ps(out + j, _mm512_castsi512_ps(_mm512_slli_epi32(
                                      _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + j))), 16)));
    for (; j < n; j++) out[j] = st_bf16_to_float(x[j]);
}
ST_TARGET_END
#endif

/* Elementwise, so the threads (blocks of 8192 values) do not change the result. */
#define BLOCK 8192

st_bf16_rounding st_bf16_rounding_in_use(void) {
#ifdef ST_HAVE_X86_TARGETS
    if (st_isa_has_avx512_bf16()) return from_floats_avx512bf16;
#endif
    return st_bf16_from_floats_reference;
}

void st_bf16_from_floats(const float *x, size_t n, st_bf16 *out) {
    const st_bf16_rounding convert = st_bf16_rounding_in_use();
    const long blocks = (long)((n + BLOCK - 1) / BLOCK);
#pragma omp parallel for schedule(static) if (n > 8 * BLOCK)
    for (long b = 0; b < blocks; b++) {
        const size_t at = (size_t)b * BLOCK;
        convert(x + at, n - at < BLOCK ? n - at : BLOCK, out + at);
    }
}

void st_bf16_to_floats(const st_bf16 *x, size_t n, float *out) {
#ifdef ST_HAVE_X86_TARGETS
    if (st_isa_current() == ST_ISA_AVX512) {
        to_floats_avx512(x, n, out);
        return;
    }
#endif
    for (size_t j = 0; j < n; j++) out[j] = st_bf16_to_float(x[j]);
}
