/* Vector primitives of the direct sparse convolution (internal to
 * sparse_conv.c / sparse_conv_x86.c). Every primitive works on runs of n
 * contiguous floats (one pixel of one channel across the batch). */
#ifndef ST_KERNELS_SPARSE_CONV_PRIMS_H
#define ST_KERNELS_SPARSE_CONV_PRIMS_H

#include <stdint.h>

/* Lanes of one SDDMM accumulator slot. */
#define ST_SPCONV_LANES 16

typedef struct st_spconv_prims {
    /* out[j] = (accumulate ? out[j] : bias) + sum_e w[e] * src[off[e] + j],  j < n */
    void (*gather)(int n, int cnt, const float *w, const int64_t *off, const float *src, float bias, int accumulate,
                   float *out);
    /* acc[slot(e) * 16 + j % 16] += dy[j] * src[off[e] + j], j < n, where
     * slot(e) = slot ? slot[e] : e */
    void (*sddmm)(int n, int cnt, const int64_t *off, const int32_t *slot, const float *dy, const float *src,
                  float *acc);
    /* sddmm for npx >= 1 pixels, in pixel order: pixel q reads dy + q *
     * dy_step and src + q * src_step. With distinct slots (as every walk
     * has) each accumulator gets the same additions in the same order as
     * from npx calls of sddmm, q = 0, 1, ..., so the results are the same
     * bit for bit; where the ISA can, each accumulator is loaded and stored
     * once for two or three pixels (kernel_ab wgrad: +12-24 % at 64-128
     * channels on an Intel Xeon). */
    void (*sddmm_px)(int n, int npx, int cnt, const int64_t *off, const int32_t *slot, const float *dy,
                     int64_t dy_step, const float *src, int64_t src_step, float *acc);
    /* gather for npx >= 1 pixels that share the kept weights and whose
     * sources lie src_step floats apart: pixel q reads src + q * src_step,
     * writes out + q * out_step and, where stats is not NULL, the run_stats
     * of what it wrote to stats + q * stats_step (with the same bits taken
     * from the registers where the ISA can: a reload right after 512-bit
     * stores stalls on store-to-load forwarding on some cores).
     * Every output element is summed in the same order as by gather, so
     * the results are the same bit for bit; the pixels' vectors of one
     * kept weight are loaded together (one weight broadcast and offset for
     * all, adjacent memory, more independent accumulators). */
    void (*gather_px)(int n, int npx, int cnt, const float *w, const int64_t *off, const float *src, int64_t src_step,
                      float bias, int accumulate, float *out, int64_t out_step, float *stats, int64_t stats_step);
    /* Statistics of one run v[0..n) (n >= 1), shifted by its first value:
     * out[0] = v[0], out[1] = sum (v[j] - v[0]), out[2] = sum (v[j] - v[0])^2,
     * float sums in a fixed order (vector lanes, then the lanes in order). */
    void (*run_stats)(int n, const float *v, float *out);
    /* Batch-norm backward sums of one run: g[j] = dy[j] where y[j] > 0 (y
     * NULL: every j), out[0] = sum g, out[1] = sum g * (x[j] - mean), float
     * sums in a fixed order. */
    void (*run_bn_sums)(int n, const float *dy, const float *y, const float *x, float mean, float *out);
    /* A gather split into consecutive pieces of its kept weights, every
     * piece after the first accumulating, gives the bits of the whole
     * gather when n is a multiple of this (AVX-512: 32; its 16-float tail
     * sums even and odd kept weights in two chains). */
    int pieces_exact;
} st_spconv_prims;

/* Tunings of the AVX-512 gathers (sparse_conv_x86.c): the same results bit
 * for bit, other prefetching and channel blocking. The one for the CPU is
 * picked from its class (st_isa_cpu_class) on first use; tests and
 * bench/kernel_ab.c force each in turn to compare them (not thread-safe
 * with running kernels). */
#define ST_SPCONV_HAVE_TUNING 1   /* for bench/kernel_ab.c, which builds against older trees too */
#define ST_SPCONV_HAVE_SDDMM_PX 1
#define ST_SPCONV_HAVE_IN_BLOCK 1 /* st_spconv_plan_set_block (sparse_conv.h) */
typedef enum st_spconv_tuning {
    ST_SPCONV_TUNING_ZEN = 0,   /* measured on AMD Zen 5; also for other vendors */
    ST_SPCONV_TUNING_INTEL = 1, /* measured on an Intel Xeon (Granite Rapids class) */
    ST_SPCONV_TUNING_ZEN4 = 2,  /* measured on AMD Zen 4 (family 25 with AVX-512) */
    ST_SPCONV_TUNINGS = 3
} st_spconv_tuning;
st_spconv_tuning st_spconv_tuning_current(void);
void st_spconv_tuning_force(st_spconv_tuning t);
const char *st_spconv_tuning_name(st_spconv_tuning t);
/* Whether plans built under a tuning start with blocks of the summed
 * channels (st_spconv_default_block; sparse_conv.h). */
int st_spconv_tuning_blocks_channels(st_spconv_tuning t);

extern const st_spconv_prims st_spconv_prims_generic;
#if defined(__x86_64__) && defined(__GNUC__)
#define ST_SPCONV_HAVE_X86 1
extern const st_spconv_prims st_spconv_prims_avx2;
extern const st_spconv_prims st_spconv_prims_avx512;
#endif

#endif
