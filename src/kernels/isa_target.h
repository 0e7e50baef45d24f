/* Regions of code compiled for one instruction set, whatever the build's
 * baseline, so that kernels/isa.c can pick them at run time:
 *     ST_TARGET_AVX2_BEGIN ... ST_TARGET_END
 *     ST_TARGET_AVX512_BEGIN ... ST_TARGET_END
 *     ST_TARGET_AVX512_BF16_BEGIN ... ST_TARGET_END  (AVX-512 + AVX512_BF16)
 * gcc takes a target for a region with push_options; clang ignores those
 * pragmas (and would build the region for the baseline) but has its own. */
#ifndef ST_KERNELS_ISA_TARGET_H
#define ST_KERNELS_ISA_TARGET_H

#if defined(__x86_64__) && defined(__GNUC__)
#define ST_HAVE_X86_TARGETS 1
#if defined(__clang__)
#define ST_TARGET_AVX2_BEGIN _Pragma("clang attribute push(__attribute__((target(\"avx2,fma\"))), apply_to = function)")
#define ST_TARGET_AVX512_BEGIN                                                                                        \
    _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512vl,avx512bw,avx512dq,avx2,fma\"))), apply_to = function)")
#define ST_TARGET_AVX512_BF16_BEGIN                                                                                   \
    _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512vl,avx512bw,avx512dq,avx512bf16,avx2,fma\"))), apply_to = function)")
#define ST_TARGET_END _Pragma("clang attribute pop")
#else
#define ST_TARGET_AVX2_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma\")")
#define ST_TARGET_AVX512_BEGIN                                                                                        \
    _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512vl,avx512bw,avx512dq,avx2,fma\")")
#define ST_TARGET_AVX512_BF16_BEGIN                                                                                   \
    _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512vl,avx512bw,avx512dq,avx512bf16,avx2,fma\")")
#define ST_TARGET_END _Pragma("GCC pop_options")
#endif
#endif

#endif
