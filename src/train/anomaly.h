/* Numerical fault checks of a training step. A NaN or infinity in the loss
 * or in any parameter gradient stops the run (always on); with
 * --detect-anomaly every step also checks its input batch, the model output
 * (logits), and after the update every weight, batch-norm buffer and
 * optimiser state. Each failure is ST_ERR_NUMERIC with a message naming the
 * step, the tensor (parameter name), the first bad element and a hint.
 *
 * Intermediate activations are not scanned: the fused forward/backward walk
 * of models/model.c does not write every intermediate result (and holds some
 * channel-blocked), so only what it always writes is checked. Gradients are
 * scanned in backward order (output layer first), so the parameter named is
 * the one closest to the output whose gradient went bad. Packed sparse
 * weights (sparse execution) are checked in their stored form (kept entries
 * only, CSR order), so "element" counts stored entries there. */
#ifndef ST_TRAIN_ANOMALY_H
#define ST_TRAIN_ANOMALY_H

#include <stdint.h>

#include "models/model.h"
#include "optim/optimizer.h"
#include "sparsetrain.h"

/* Where the check runs, for the message. */
typedef struct st_anomaly_where {
    int64_t step;           /* 1-based optimiser step being taken */
    int epoch;              /* 1-based */
    int64_t batch;          /* 1-based batch of the epoch */
    double lr;              /* learning rate of this step */
    const char *checkpoint; /* --save path ("" or NULL: none) */
    int saved;              /* it holds a good checkpoint of this run */
} st_anomaly_where;

/*! @return the index of the first NaN or infinity in v[0..n), or -1. */
int64_t st_first_nonfinite(const float *v, int64_t n);

/*! The mean training loss of the step; the message says whether a weight is
 *  already non-finite, else which weight is largest. */
st_status st_anomaly_check_loss(const st_model *m, double loss, const st_anomaly_where *w);
/*! Every parameter gradient, output layer first. */
st_status st_anomaly_check_gradients(const st_model *m, const st_anomaly_where *w);
/*! The normalised input batch (count floats). */
st_status st_anomaly_check_input(const float *images, int64_t count, const st_anomaly_where *w);
/*! The logits (batch x num_classes) of the forward pass. */
st_status st_anomaly_check_output(const st_model *m, const float *logits, int batch, const st_anomaly_where *w);
/*! After the forward pass (--detect-anomaly): the output of every layer (or
 *  fused step) in forward order; names the first one holding NaN/Inf. */
st_status st_anomaly_check_activations(const st_model *m, int batch, const st_anomaly_where *w);
/*! After the update: every parameter and buffer, in parameter order, then the
 *  optimiser state (opt may be NULL). */
st_status st_anomaly_check_weights(const st_model *m, const st_optimizer *opt, const st_anomaly_where *w);

#endif
