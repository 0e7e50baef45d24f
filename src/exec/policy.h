/* Choice between dense and sparse execution of a model (--execution).
 *
 * Dense execution keeps every weight as a dense array (masked entries at 0)
 * and runs oneDNN convolutions on channel-blocked activations; its cost
 * follows the dense FLOPs. Sparse execution packs the prunable weights and
 * runs the direct sparse kernels on batch-innermost activations; its cost
 * follows the kept weights (model.h, kernels/sparse_conv.h). `auto` picks
 * sparse execution when the FLOP-weighted density of the model's
 * convolutions and linear layers is at most the model's crossover, where
 * both executions train equally fast. oneDNN's dense kernels get more
 * efficient as layers get wider while the sparse ones do not, so the
 * crossover falls with the FLOP-weighted mean width w of the layers:
 * at_ref * (36 / w)^exponent, clamped to [0.1, 0.5], with constants
 * measured per CPU class (st_exec_rule_current; docs/PERFORMANCE.md, batch
 * 128, 2 threads, whole-model A/B of the executions):
 *   default (fitted on an AMD Zen 5 guest; also Intel and other CPUs):
 *     0.34 * (36 / w)^0.4: sparse was faster at FLOP-weighted density 0.2
 *     on cifar_resnet_20/56 (w ~36), slower at ~0.36; faster at 0.17 and
 *     slower at 0.2 on cifar_resnet_20_64 (w ~141); faster at 0.12 on
 *     vgg16 (w ~282).
 *   AMD Zen 4 (family 25 with AVX-512; its FMA units are 256 bits wide, so
 *     oneDNN gains less on it than the L2-bound sparse kernels lose):
 *     0.41 * (36 / w)^0.15: crossovers ~0.41 and ~0.40 on cifar_resnet_20
 *     and _56, ~0.31 on cifar_resnet_20_64, ~0.44 on vgg16 (ERK at 0.1-0.5;
 *     at ERK 0.1 vgg16's sparse execution was 1.5x faster than dense, which
 *     the default rule chose). */
#ifndef ST_EXEC_POLICY_H
#define ST_EXEC_POLICY_H

#include "models/model.h"

/* auto: the model-level rule below picks dense or sparse execution, and a
 * sparse model then chooses its kernel per layer (as mixed); sparse: sparse
 * execution with the direct sparse kernels on every layer; mixed: sparse
 * execution, each layer's kernel by the per-layer rule; dense: dense
 * execution. */
typedef enum st_exec_policy { ST_EXEC_AUTO = 0, ST_EXEC_SPARSE = 1, ST_EXEC_DENSE = 2, ST_EXEC_MIXED = 3 } st_exec_policy;

/* The whole-model rule's constants (see above): one table row per CPU
 * class (st_isa_cpu_class, from cpuid), so that a run's choice is
 * reproducible on one machine. */
#define ST_SPARSE_EXEC_REF_WIDTH 36.0
typedef struct st_exec_rule {
    const char *cpu;  /* the CPU class ("default", "zen4") */
    double at_ref;    /* whole model: crossover at the reference width */
    double exponent;  /* whole model: of ST_SPARSE_EXEC_REF_WIDTH / width */
    /* per layer (st_layer_dense_crossover): C0, Ck, Cp, Cq, Cs, Ci */
    double layer[6];
} st_exec_rule;
const st_exec_rule *st_exec_rule_current(void);

#define ST_EXEC_POLICY_NAMES "auto, sparse, mixed or dense"

/* Parses --execution (auto, sparse, mixed, dense). */
st_status st_exec_policy_parse(const char *name, st_exec_policy *out);

/* Kept multiply-adds / dense multiply-adds over all convolutions and linear
 * layers of one forward pass (1 for a dense model). */
double st_model_flop_density(const st_model *m);

/* FLOP-weighted mean of min(in, out) channels of the convolutions and
 * linear layers, and the crossover density for that width. */
double st_model_mean_width(const st_model *m);
double st_model_sparse_crossover(const st_model *m);

/* Whether `policy` selects sparse execution for `m` as it is now, training
 * or evaluating batches of `batch` images. auto: when the FLOP-weighted
 * density is at most the model's crossover (the whole-model rule above; the
 * model then runs with per-layer kernels). The batch does not enter this
 * rule yet: the dense executor's oneDNN convolutions are up to 2x faster
 * than the CHWN GEMM on narrow layers (docs/PERFORMANCE.md, "Per-layer dense
 * or sparse kernels"), so the per-layer crossovers cannot decide it alone. */
int st_model_wants_sparse_execution(const st_model *m, st_exec_policy policy, int batch);

/* Per-layer kernel choice of sparse execution (m->per_layer_kernels): 1 when
 * conv / linear op `op` should run as a dense GEMM on CHWN activations
 * (kernels/dense_chwn.h) rather than the direct sparse kernels, for batches
 * of `batch` images: when its weight's density is above the layer's
 * crossover, the density where both take equally long. The crossover is a
 * function of the layer's shape and the batch only, never of timings, so a
 * run's arithmetic is reproducible:
 *   ln c = C0 + Ck ln kc + Cp ln p + Cq (ln n p)^2 + Cs ln stride (+ Ci when no im2col is needed)
 * with kc = in * K * K (the GEMM's reduction), p = output pixels per image,
 * n = the batch (n p: a channel's plane in the batch-innermost layout), "no
 * im2col" = a 1x1 stride-1 convolution or a linear layer; clamped to
 * [0.02, 1]. A layer with kc < 32 always runs direct (GEMMs with so short a
 * reduction measured slower than the direct kernels even at density 1).
 * The constants are the CPU class's (st_exec_rule_current), each fitted
 * (least squares on ln c over 31 layer shapes: CIFAR, ImageNet and
 * WideResNet layers at batches 16-256, 2 threads, wall time on a quiet
 * machine) to the crossovers bench/layer_crossover.c measured there:
 * default (an AMD Zen 5 guest): the feature set whose choices lose the
 * least time on the measured grid (1.4 % on average over shapes x
 * densities, 42 % at worst; on an Intel Xeon 2.5 % and 1.4-1.7x); AMD Zen 4
 * (the same features, refitted after the weight gradient's multi-pixel
 * SDDMM): 2.5 % on average, 2.3x at worst, where the default constants lost
 * 5.8 % and 3.2x (docs/PERFORMANCE.md, "Per-layer dense or sparse kernels"
 * and "Issue 17 on an AMD EPYC (Zen 4)"). Longer reductions, larger images,
 * strides and 1x1 layers favour the GEMM; the direct kernels' vectors run
 * along the batch, so very long planes favour them again. */
#define ST_DENSE_LAYER_MIN_CROSSOVER 0.02
#define ST_DENSE_LAYER_MIN_REDUCTION 32
double st_layer_dense_crossover(const st_model *m, const st_op *op, int batch);
int st_layer_wants_dense(const st_model *m, const st_op *op, int batch);
/* The kernel conv / linear weight `param` runs on under `policy` at `batch`:
 * "dense" (dense execution), "direct" (the direct sparse kernels) or "gemm"
 * (a dense GEMM inside sparse execution); NULL when no op uses it. */
const char *st_model_layer_kernel(const st_model *m, int param, st_exec_policy policy, int batch);
/* How many conv / linear layers of a sparse-executed model run as dense GEMMs at `batch`. */
int st_model_dense_layers(const st_model *m, int batch);

/* Applies the policy: switches `m` to sparse execution when chosen (after
 * masks and weights are final, before an optimiser is created). */
st_status st_model_apply_execution(st_model *m, st_exec_policy policy, int batch);

#endif
