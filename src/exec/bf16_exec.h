/* bf16 execution of the sparse executor's convolutions and linear layers
 * (--bf16, issue 17 item 4). With m->bf16 set, each conv / linear op of the
 * sparse executor runs the bf16 direct kernels (kernels/sparse_conv_bf16.h,
 * the vdpbf16ps design):
 *   forward   its input activation is rounded to a bf16 copy (kept for the
 *             weight gradient), its kept weights to a bf16 copy made from the
 *             fp32 master values at every forward pass (so after every
 *             optimiser step, mask change or resume); output in fp32
 *   backward  the output gradient is rounded to bf16; weight gradient and
 *             input gradient from the bf16 copies, accumulated in fp32
 * Everything else stays fp32: master weights, gradients, optimiser state,
 * batch norm, ReLU, add, pooling, the loss, and the stored activations
 * (the bf16 copies are extra memory: half of each conv input).
 * The per-op state lives here; the sparse executor only calls these hooks. */
#ifndef ST_EXEC_BF16_EXEC_H
#define ST_EXEC_BF16_EXEC_H

#include "models/model.h"

typedef struct st_bf16_exec st_bf16_exec;

/* Turns bf16 execution on for a model on the sparse executor when the CPU
 * has AVX512_BF16 (kernels/isa.h); otherwise leaves it in fp32. Returns the
 * line that says which, for the run's set-up report:
 * "bf16 (...)" or "fp32: <why --bf16 does not apply>". */
const char *st_model_enable_bf16(st_model *m);

/* The forward pass of conv / linear op `op` for `batch` images, from x
 * (fp32, CHWN) into y; with stats (may be NULL) also the batch-norm
 * statistics of y in the form of st_spconv_forward_stats. *state is created
 * on first use. */
st_status st_bf16_exec_forward(st_bf16_exec **state, const st_model *m, const st_op *op, int batch, const float *x,
                               float *y, double *stats);
/* The backward passes of the op after its forward, in this order: the
 * weight gradient (dw +=, dbias += when not NULL; it also rounds dy to bf16
 * for both passes), then the input gradient (dx written or accumulated). */
void st_bf16_exec_backward_weight(st_bf16_exec *state, const st_model *m, const st_op *op, int batch, const float *dy,
                                  float *dw, float *dbias);
void st_bf16_exec_backward_data(st_bf16_exec *state, const st_model *m, const st_op *op, int batch, float *dx,
                                int accumulate);
void st_bf16_exec_free(st_bf16_exec *state);

#endif
