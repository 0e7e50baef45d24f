/* cpuid-based ISA choice shared by all kernel families (see isa.h). */
#include "kernels/isa.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/status.h"

static int parse_isa(const char *name, st_isa *out) {
    if (strcmp(name, "generic") == 0) *out = ST_ISA_GENERIC;
    else if (strcmp(name, "avx2") == 0) *out = ST_ISA_AVX2;
    else if (strcmp(name, "avx512") == 0 || strcmp(name, "auto") == 0) *out = ST_ISA_AVX512;
    else return 0;
    return 1;
}

st_isa st_isa_best_supported(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
        return ST_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return ST_ISA_AVX2;
#endif
    return ST_ISA_GENERIC;
}

/* -1: not chosen yet. Written before kernels run (first use or st_isa_force). */
static int chosen = -1;

static st_isa capped(st_isa cap) {
    st_isa best = st_isa_best_supported();
    return cap < best ? cap : best;
}

st_isa st_isa_current(void) {
    int c = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (c >= 0) return (st_isa)c;
    c = (int)capped(ST_ISA_AVX512); /* the best this CPU has, unless st_isa_force capped it */
    __atomic_store_n(&chosen, c, __ATOMIC_RELEASE);
    return (st_isa)c;
}

st_status st_isa_force(const char *name) {
    st_isa cap;
    if (!name || !parse_isa(name, &cap))
        return st_fail(ST_ERR_ARGUMENT, "--isa: unknown instruction set '%s' (expected auto, avx512, avx2 or generic)",
                       name ? name : "");
    __atomic_store_n(&chosen, (int)capped(cap), __ATOMIC_RELEASE);
    return ST_OK;
}

const char *st_isa_name(st_isa isa) {
    switch (isa) {
    case ST_ISA_AVX512: return "avx512";
    case ST_ISA_AVX2: return "avx2";
    default: return "generic";
    }
}

st_cpu_vendor st_isa_cpu_vendor(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return ST_CPU_OTHER;
    char id[13];
    memcpy(id, &b, 4), memcpy(id + 4, &d, 4), memcpy(id + 8, &c, 4);
    id[12] = '\0';
    if (strcmp(id, "GenuineIntel") == 0) return ST_CPU_INTEL;
    if (strcmp(id, "AuthenticAMD") == 0) return ST_CPU_AMD;
#endif
    return ST_CPU_OTHER;
}

/* The display family (cpuid leaf 1: the base family, plus the extended
 * family where the base is 15); 0 where unknown. */
static int cpu_family(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int base = (int)((a >> 8) & 0xFu);
    return base == 0xF ? base + (int)((a >> 20) & 0xFFu) : base;
#else
    return 0;
#endif
}

st_cpu_class st_isa_cpu_class(void) {
    const st_cpu_vendor v = st_isa_cpu_vendor();
    if (v == ST_CPU_INTEL) return ST_CPU_CLASS_INTEL;
    if (v == ST_CPU_AMD && cpu_family() == 25 && st_isa_best_supported() == ST_ISA_AVX512) return ST_CPU_CLASS_ZEN4;
    return ST_CPU_CLASS_OTHER;
}

int st_isa_cpu_has_avx512_bf16(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (st_isa_best_supported() != ST_ISA_AVX512) return 0; /* also checks the OS saves the zmm state */
    unsigned a = 0, b = 0, c = 0, d = 0;
    /* CPUID leaf 7, sub-leaf 1: EAX bit 5 is AVX512_BF16 */
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
    return (int)((a >> 5) & 1u);
#else
    return 0;
#endif
}

int st_isa_has_avx512_bf16(void) { return st_isa_current() == ST_ISA_AVX512 && st_isa_cpu_has_avx512_bf16(); }

size_t st_isa_l2_bytes(void) {
    long v = -1;
#ifdef _SC_LEVEL2_CACHE_SIZE
    v = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    size_t b = v > 0 ? (size_t)v : (size_t)1 << 20;
    if (b < (size_t)256 << 10) b = (size_t)256 << 10;
    if (b > (size_t)8 << 20) b = (size_t)8 << 20;
    return b;
}
