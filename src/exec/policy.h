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
 * 0.34 * (36 / w)^0.4, fitted to the side-by-side sweep of
 * docs/PERFORMANCE.md (batch 128, 2 threads): sparse was faster at
 * FLOP-weighted density 0.2 on cifar_resnet_20/56 (w ~36), slower at
 * ~0.36; faster at 0.17 and slower at 0.2 on cifar_resnet_20_64 (w ~141);
 * faster at 0.12 on vgg16 (w ~282). */
#ifndef ST_EXEC_POLICY_H
#define ST_EXEC_POLICY_H

#include "models/model.h"

typedef enum st_exec_policy { ST_EXEC_AUTO = 0, ST_EXEC_SPARSE = 1, ST_EXEC_DENSE = 2 } st_exec_policy;

/* The crossover rule's constants (see above). */
#define ST_SPARSE_EXEC_CROSSOVER_AT_REF 0.34
#define ST_SPARSE_EXEC_REF_WIDTH 36.0
#define ST_SPARSE_EXEC_WIDTH_EXPONENT 0.4

#define ST_EXEC_POLICY_NAMES "auto, sparse or dense"

/* Parses --execution (auto, sparse, dense). */
st_status st_exec_policy_parse(const char *name, st_exec_policy *out);

/* Kept multiply-adds / dense multiply-adds over all convolutions and linear
 * layers of one forward pass (1 for a dense model). */
double st_model_flop_density(const st_model *m);

/* FLOP-weighted mean of min(in, out) channels of the convolutions and
 * linear layers, and the crossover density for that width. */
double st_model_mean_width(const st_model *m);
double st_model_sparse_crossover(const st_model *m);

/* Whether `policy` selects sparse execution for `m` as it is now. */
int st_model_wants_sparse_execution(const st_model *m, st_exec_policy policy);

/* Applies the policy: switches `m` to sparse execution when chosen (after
 * masks and weights are final, before an optimiser is created). */
st_status st_model_apply_execution(st_model *m, st_exec_policy policy);

#endif
