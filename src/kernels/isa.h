/* Run-time instruction-set selection, in one place for every kernel family
 * (fused BN/add/ReLU, sparse convolutions). The best ISA the CPU supports is
 * picked from cpuid on first use; st_isa_force() caps the choice (the CLI's
 * --isa, or ST_ISA=generic|avx2|avx512 in its environment). */
#ifndef ST_KERNELS_ISA_H
#define ST_KERNELS_ISA_H

#include <stddef.h>

#include "sparsetrain.h"

typedef enum st_isa { ST_ISA_GENERIC = 0, ST_ISA_AVX2 = 1, ST_ISA_AVX512 = 2 } st_isa;

/* The ISA kernels use now. */
st_isa st_isa_current(void);
/* The best ISA this CPU supports (ignoring caps). */
st_isa st_isa_best_supported(void);
/* Caps the ISA by name ("generic", "avx2", "avx512", "auto"); an ISA above
 * what the CPU supports falls back to the best supported one. Fails on an
 * unknown name. Call before running kernels (not thread-safe with them). */
st_status st_isa_force(const char *name);
const char *st_isa_name(st_isa isa);

/* The CPU's vendor (cpuid leaf 0), for kernels whose best tuning differs
 * between the vendors' cores (measured, not assumed: see their comments). */
typedef enum st_cpu_vendor { ST_CPU_OTHER = 0, ST_CPU_INTEL = 1, ST_CPU_AMD = 2 } st_cpu_vendor;
st_cpu_vendor st_isa_cpu_vendor(void);

/* The CPU classes whose measured tunings differ (the sparse gathers'
 * prefetching, the dense/sparse execution rules), from cpuid: Intel; AMD
 * Zen 4 (family 25 with AVX-512; Zen 5 is family 26); everything else. */
typedef enum st_cpu_class { ST_CPU_CLASS_OTHER = 0, ST_CPU_CLASS_INTEL = 1, ST_CPU_CLASS_ZEN4 = 2 } st_cpu_class;
st_cpu_class st_isa_cpu_class(void);

/* The L2 cache of one core in bytes (the C library's cpuid reading;
 * 1 MiB where it gives none), kept within [256 KiB, 8 MiB]: for choosing
 * block sizes, never results. */
size_t st_isa_l2_bytes(void);

/* Whether the bf16 kernels (kernels/sparse_conv_bf16.h) can run: the CPU has
 * AVX512_BF16 (vcvtne2ps2bf16, vdpbf16ps) and the ISA in use (after
 * st_isa_force) is AVX-512. It does not change the ISA choice above. */
int st_isa_has_avx512_bf16(void);
/* The CPU alone: AVX512_BF16 and the AVX-512 base, whatever the cap. */
int st_isa_cpu_has_avx512_bf16(void);

#endif
