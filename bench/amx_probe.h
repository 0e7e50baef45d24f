/* AMX-BF16 measurements for bench/bf16_ab.c (docs/PERFORMANCE.md, "bf16"):
 * what the tile unit could give the bf16 convolutions on CPUs that have it,
 * measured before any kernel is built on it. Not used by the library.
 *   amx_probe_available    asks Linux for the tile state (arch_prctl) and
 *                          says whether tdpbf16ps can run (0: it cannot)
 *   amx_probe_peaks        register-only throughput on the calling thread:
 *                          vfmadd231ps zmm, vdpbf16ps zmm, tdpbf16ps with
 *                          K = 16 and 32 (GFLOP/s of CPU time)
 *   amx_dense_forward      a dense 3x3 stride-1 pad-1 convolution forward
 *                          with tdpbf16ps (prototype, one thread): input
 *                          bf16 in "paired CHWN", (C/2, H, W, N, 2), i.e.
 *                          the CHWN copy with channels 2c and 2c + 1
 *                          interleaved per image (what a fused pass could
 *                          write instead of plain CHWN), weights packed by
 *                          amx_pack_weights, output float CHWN. Needs
 *                          C % 16 == 0, C <= 32 or C % 32 == 0, N % 64 == 0. */
#ifndef ST_BENCH_AMX_PROBE_H
#define ST_BENCH_AMX_PROBE_H

#include <stddef.h>
#include <stdint.h>

int amx_probe_available(void);
void amx_probe_peaks(double *fma, double *dp, double *tdp_k16, double *tdp_k32);
/* dense (cout = cin = C, 3x3) float weights w[co][ci][kh][kw] to the tile
 * form: per block of 16 output channels, per kernel position, per chunk of
 * up to 32 input channels, a 16 x chunk bf16 matrix. */
void amx_pack_weights(const float *w, int C, uint16_t *packed);
size_t amx_packed_weights(int C);
void amx_pair_channels(const uint16_t *x_chwn, int C, int HW, int N, uint16_t *paired);
void amx_dense_forward(const uint16_t *paired, const uint16_t *packed, int C, int H, int W, int N, float *y);

#endif
