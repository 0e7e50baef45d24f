/* bfloat16 storage: the upper 16 bits of an IEEE float (1 sign, 8 exponent,
 * 7 mantissa bits). Values are rounded to bf16 once, where they are stored,
 * and widened back to float exactly (a bf16 is a float with 16 zero bits).
 *
 * st_bf16_round is the scalar reference of the rounding and gives the same
 * bits as the x86 instruction vcvtneps2bf16 (AVX512_BF16), which does not
 * consult MXCSR: round to nearest even; zero and denormal inputs give a zero
 * of the same sign; infinities stay infinities; a NaN keeps its sign and
 * upper payload bits and becomes quiet (mantissa bit 6 set). */
#ifndef ST_KERNELS_BF16_H
#define ST_KERNELS_BF16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef uint16_t st_bf16;

static inline st_bf16 st_bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    const uint32_t exp = (u >> 23) & 0xFFu, man = u & 0x7FFFFFu;
    if (exp == 0) return (st_bf16)((u >> 16) & 0x8000u);              /* zero or denormal: signed zero */
    if (exp == 0xFFu) {
        if (man == 0) return (st_bf16)(u >> 16);                      /* infinity */
        return (st_bf16)((u >> 16) | 0x40u);                          /* NaN: quiet */
    }
    return (st_bf16)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);          /* nearest, ties to even */
}

static inline float st_bf16_to_float(st_bf16 h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* out[j] = st_bf16_round(x[j]), j < n: vcvtne2ps2bf16 where the CPU has
 * AVX512_BF16 (and the ISA in use is AVX-512), else the scalar reference;
 * the same bits either way. */
void st_bf16_from_floats(const float *x, size_t n, st_bf16 *out);
/* The conversion st_bf16_from_floats runs, on the calling thread only: for
 * callers that round many short pieces inside their own parallel loops (the
 * fused passes of kernels/bn_act.h), looked up once and called per piece. */
typedef void (*st_bf16_rounding)(const float *x, size_t n, st_bf16 *out);
st_bf16_rounding st_bf16_rounding_in_use(void);
/* out[j] = x[j] widened, j < n (exact). */
void st_bf16_to_floats(const st_bf16 *x, size_t n, float *out);
/* Scalar-only versions (the references of the two above). */
void st_bf16_from_floats_reference(const float *x, size_t n, st_bf16 *out);

#endif
