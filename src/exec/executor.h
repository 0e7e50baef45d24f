/* How a model runs: the walker, its fused schedule, and the executor
 * interface that the dense and the sparse executor each implement.
 *
 *   walker.c          drives a forward / backward pass over the schedule,
 *                     whichever executor the model has; runs the fused
 *                     batch-norm / add / ReLU steps, whose kernels take any
 *                     layout the executor describes (bn_shape); never asks
 *                     which executor it is driving.
 *   schedule.c        the fused schedule (which ops run as one step) and the
 *                     activation layout groups.
 *   dense_executor.c  oneDNN convolutions, NCHW or channel-blocked
 *                     activations, dense-form weights (masked entries 0).
 *   sparse_executor.c packed (CSR) weights and the direct sparse kernels on
 *                     batch-innermost (CHWN) activations.
 *   profile.c         per-step timing.
 *   policy.c          which executor a model gets (--execution).
 *
 * An executor is a table of functions plus state of its own (m->exec_state:
 * kernel plans, layout copies of the images and logits). The walker holds
 * the images and logits in plain (NCHW, (N, classes)) form in acts[0] and
 * acts[last]; images_in / logits_out / logits_grad_in / images_grad_out move
 * them to and from the executor's own form. */
#ifndef ST_EXEC_EXECUTOR_H
#define ST_EXEC_EXECUTOR_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/bn_act.h"
#include "models/model.h"

typedef struct st_executor {
    const char *name; /* "dense", "sparse" */
    /* Called once when a model switches to this executor (masks and weights
     * final), e.g. to pack the weights; may refuse. */
    st_status (*prepare)(st_model *m);
    /* Buffers of its own for batches of up to m->capacity images. */
    st_status (*reserve)(st_model *m);
    /* Frees m->exec_state. */
    void (*release)(st_model *m);
    /* 1 when activation groups may take channel-blocked layouts (schedule.c). */
    int (*allows_blocked_layouts)(const st_model *m);
    /* The buffers a step reads and writes for activation `a`, and the shape
     * the bn_act kernels see it in. */
    float *(*act_value)(st_model *m, int a);
    float *(*act_grad)(st_model *m, int a);
    st_bn_act_shape (*bn_shape)(const st_model *m, int a, int batch);
    /* The plain ends of the walk (see above). */
    void (*images_in)(st_model *m, int batch);
    void (*logits_out)(st_model *m, int batch);
    void (*logits_grad_in)(st_model *m, int batch);
    void (*images_grad_out)(st_model *m, int batch);
    /* One op that runs as a step of its own: convolution, linear, pooling, flatten. */
    st_status (*forward_op)(st_model *m, st_op *op, int batch);
    /* Optional (NULL: not offered): forward_op of a convolution or linear op
     * that also gives the batch-norm statistics of its output per channel,
     * in st_bn_act_forward_train_stats's form, gathered as the output is
     * written; only for executors whose bn_shape is channel-major. */
    st_status (*forward_op_stats)(st_model *m, st_op *op, int batch, double *stats);
    void (*backward_op)(st_model *m, st_op *op, const float *dy, int batch);
    /* Optional (NULL: not offered), for bf16 convolutions (exec/bf16_exec.h):
     * value_bf16: called by every fused step that writes activation a; the
     * buffer where the step also writes a's values rounded to bf16, in the
     * same pass (kernels/bn_act.h's _bf16 variants), or NULL for none. The
     * executor treats the copy as current from this call on.
     * grad_bf16: called by the training batch-norm backward for the gradient
     * of its input a; the buffer where the step writes that gradient in bf16
     * instead of float, or NULL: float as usual. Only for a gradient that
     * step is the one writer of (a read by no other op), so it is
     * overwritten, never added to. */
    st_bf16 *(*value_bf16)(st_model *m, int a);
    st_bf16 *(*grad_bf16)(st_model *m, int a);
    /* The convolution implementation in use, e.g. "jit:avx512_core", "sparse-direct:avx2", "none". */
    void (*describe)(const st_model *m, char *out, size_t size);
} st_executor;

extern const st_executor st_dense_executor;
extern const st_executor st_sparse_executor;
/* Switches m to `exec` (walker.c; its prepare may refuse, and m then keeps
 * its executor): st_model_use_sparse_execution with any table, e.g. a test's
 * copy of one with some optional entries removed. */
st_status st_model_set_executor(st_model *m, const st_executor *exec);
/* Sparse execution: 1 when op k's current kernel plan is the dense GEMM
 * (exec/policy.h's per-layer choice, as made for the last batch it ran). */
int st_sparse_executor_runs_gemm(const st_model *m, int k);

/* ---------- the fused schedule (schedule.c) ----------
 * The walk runs "steps" rather than single ops so that batch norm, the
 * residual add and ReLU are done in one pass each way (kernels/bn_act.h):
 *   BN -> ReLU                one step at the BN's place
 *   BN -> add(., r) -> ReLU   one step at the add's place (r may be computed
 *                             after the BN, e.g. a shortcut convolution)
 *   add -> ReLU, lone BN, lone ReLU, lone add
 * An op is folded into a step only when its output has no other reader, so
 * the skipped intermediate activations are never read. Backward visits the
 * steps in reverse and tracks which activation gradients have been written
 * this step: the first writer overwrites, later ones add, so no gradient
 * buffer is cleared in advance. */

typedef enum st_step_kind { ST_STEP_OP, ST_STEP_BN_ACT, ST_STEP_ADD_ACT } st_step_kind;

typedef struct st_model_step {
    double forward_s, backward_s; /* profiling (m->profile) */
    double backward_data_s, backward_weight_s; /* parts of backward_s an executor timed (st_walk_profile_pass) */
    int passes_timed; /* 1 when the executor timed the input- and weight-gradient passes apart */
    int calls;
    st_step_kind kind;
    int op;          /* ST_STEP_OP: the op; ST_STEP_BN_ACT: the BN op */
    int add, relu;   /* folded ADD / RELU ops, or -1 */
    int x, residual; /* input activation (BN's or add's first), other add input or -1 */
    int out;         /* activation the step writes */
    /* Batch-norm statistics from the producer (executor's forward_op_stats):
     * on a conv / linear step, the BN_ACT step whose input it writes (-1:
     * none); on that BN_ACT step, its 3 x C doubles in the schedule's
     * bn_stats (-1: none) and whether this forward pass filled them. */
    int stats_for;
    int64_t stats_at;
    int stats_ready;
} st_model_step;

/* Activation layouts. Convolutions on oneDNN run fastest on channel-blocked
 * activations (nChw16c: (N, C/16, H, W, 16)), and the fused steps and global
 * average pooling handle that layout too; only the other layers need NCHW.
 * Activations joined by fused steps (a step's input, residual and output)
 * form a group with one layout; a group is blocked when the executor allows
 * it and its activations are written only by convolutions and fused steps
 * and read only by convolutions, fused steps and global average pooling. Its
 * block is the one the first convolution writing it prefers (decided when
 * that plan is made), so no reorder is needed between layers. */
struct st_model_schedule {
    st_model_step *steps;
    int n_steps;
    uint8_t *grad_written; /* per activation, during backward */
    int *group;            /* per activation: its layout group */
    uint8_t *may_block;    /* per group: 1 if it may use a blocked layout */
    int *block;            /* per group: 0 = undecided, 1 = NCHW, B = blocks of B channels */
    int max_bn_channels;   /* widest batch norm: sizes its scratch in the workspace */
    int current;           /* the step being run (profiling) */
    double *bn_stats;      /* statistics handed from convolutions to the batch norms they feed */
};

st_status st_schedule_build(st_model *m);
void st_schedule_free(st_model_schedule *sc);
/* Layout of activation `a`: 1 = NCHW, B = channel blocks of B. */
int st_schedule_block(const st_model *m, int a);

/* ---------- walker services for the executors (walker.c) ---------- */

/* Grows the shared workspace to at least `floats`. */
st_status st_walk_ensure_workspace(st_model *m, size_t floats);
/* Gradient buffer of activation `a` for a writer that can overwrite:
 * *accumulate says whether an earlier writer got there first. NULL for the
 * images unless m->want_input_grad asks for d loss / d images. */
float *st_walk_grad_for_write(st_model *m, int a, int *accumulate);
/* Activation buffers for `capacity` images, planned by liveness over the
 * schedule (act_memory.c): no buffer for fused intermediates, gradient
 * buffers shared where their lives in backward do not overlap. */
st_status st_act_memory_plan(st_model *m, const st_model_schedule *sc, int capacity);
void st_act_memory_release(st_model *m);
/* Gradient buffer for a layer function that always adds: zeroed on first use. */
float *st_walk_grad_for_add(st_model *m, int a, int batch);
/* Profiling (with m->profile set): an executor that runs the input- and the
 * weight-gradient pass of an op apart reports each one's seconds here; they
 * are credited to the step being run. */
typedef enum st_walk_pass { ST_PASS_BACKWARD_DATA, ST_PASS_BACKWARD_WEIGHT } st_walk_pass;
void st_walk_profile_pass(st_model *m, st_walk_pass pass, double seconds);

#endif
