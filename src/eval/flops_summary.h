/* FLOPs of a model as it stands (its masks applied), for the training log,
 * `sparsetrain report` and the sweep: dense and sparse FLOPs of inference
 * (one forward pass per example) and of training (forward + backward =
 * ST_TRAIN_STEP_FORWARDS forward passes per example, sparse/flops.h). A
 * layer's sparse cost is its dense cost times its achieved density
 * (kept / numel); non-prunable operations (batch norm, ReLU, pooling, adds,
 * biases) cost the same dense and sparse. Mask updates keep every layer's
 * kept count, so this holds for dynamic sparse training too; the dense
 * gradients of its update steps are counted apart
 * (st_mask_updater_dense_grad_macs, train/mask_update.h). */
#ifndef ST_EVAL_FLOPS_SUMMARY_H
#define ST_EVAL_FLOPS_SUMMARY_H

#include "models/model.h"

typedef struct st_flops_summary {
    double forward_dense, forward_sparse; /* per example, one multiply-accumulate = one FLOP */
    double train_dense, train_sparse;     /* per example and training step */
    int64_t kept, prunable;               /* kept / all prunable weights */
} st_flops_summary;

/*! Fills `out` from the model's graph and masks. @return ST_ERR_NOMEM, or
 * ST_ERR_ARGUMENT for a conv/linear op without a prunable weight. */
st_status st_flops_summary_of(const st_model *m, st_flops_summary *out);

#endif
