/* bf16 execution of the sparse executor's convolutions and linear layers
 * (--bf16, issue 17 item 4). With m->bf16 set, each conv / linear op of the
 * sparse executor runs the bf16 direct kernels (kernels/sparse_conv_bf16.h,
 * the vdpbf16ps design):
 *   forward   its input activation is read as a bf16 copy, its kept weights
 *             as a bf16 copy made from the fp32 master values at every
 *             forward pass (so after every optimiser step, mask change or
 *             resume); output in fp32
 *   backward  its output gradient is read in bf16; weight gradient and
 *             input gradient from the bf16 copies, accumulated in fp32
 * The bf16 copy of an activation is one per activation, not per op (a block
 * input read by two convolutions is rounded once), sized for m->capacity
 * images when a bf16 op first reads it, kept until the executor's state is
 * freed, and read again by the weight gradient. Where it comes from:
 *   - a fused batch-norm / add / ReLU step that writes the activation also
 *     writes its copy in the same pass (the executor's value_bf16 hook,
 *     kernels/bn_act.h's _bf16 variants), once a bf16 op has read it;
 *   - otherwise (the images, a pooling output, the first pass) the first
 *     bf16 op to read it in a forward pass rounds it.
 * The output gradient of a conv whose output only its batch norm reads is
 * written by that batch norm's backward in bf16 only, into the gradient's
 * own buffer (the grad_bf16 hook); other output gradients are rounded by the
 * conv's backward into a buffer of this state. Either way the same float
 * values are rounded the same way, so the results are those of rounding
 * everything in the conv itself.
 * Everything else stays fp32: master weights, gradients, optimiser state,
 * batch norm, ReLU, add, pooling, the loss, and the stored activations.
 * The state lives here; the sparse executor only calls these hooks. */
#ifndef ST_EXEC_BF16_EXEC_H
#define ST_EXEC_BF16_EXEC_H

#include "kernels/bf16.h"
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
/* A forward pass begins (new images): every bf16 copy is stale until a
 * fused step writes it or a bf16 op rounds it again. state may be NULL. */
void st_bf16_exec_forward_begins(st_bf16_exec *state);
/* The value_bf16 hook (exec/executor.h): where a fused step writing
 * activation a also writes its bf16 copy, or NULL when no bf16 op reads it
 * (or none has yet). state may be NULL. */
st_bf16 *st_bf16_exec_value_copy(st_bf16_exec *state, int a);
/* The grad_bf16 hook: `grad` (activation a's gradient buffer) to be written
 * in bf16, when a's only reader is the batch norm calling and its producer
 * ran in bf16 this pass, and no dense weight gradient (m->dense_grad) needs
 * the float one; else NULL. state may be NULL. */
st_bf16 *st_bf16_exec_grad_copy(st_bf16_exec *state, const st_model *m, int a, float *grad);
/* The backward passes of the op after its forward, in this order: its
 * output gradient in bf16 (what the batch norm wrote there, or dy rounded
 * now), then the weight gradient (dw +=, dbias += when not NULL), then the
 * input gradient (dx written or accumulated), both from that. */
const st_bf16 *st_bf16_exec_output_grad(st_bf16_exec *state, const st_model *m, const st_op *op, int batch,
                                        const float *dy);
void st_bf16_exec_backward_weight(st_bf16_exec *state, const st_model *m, const st_op *op, int batch,
                                  const st_bf16 *dy, float *dw, float *dbias);
void st_bf16_exec_backward_data(st_bf16_exec *state, const st_model *m, const st_op *op, int batch,
                                const st_bf16 *dy, float *dx, int accumulate);
void st_bf16_exec_free(st_bf16_exec *state);

#endif
