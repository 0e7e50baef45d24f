/* Evaluation metrics beyond accuracy (SPEC section 7), as pure functions on
 * arrays: top-k accuracy, negative log-likelihood, expected calibration error
 * with its reliability table, and out-of-distribution detection quality of a
 * score (AUROC, AUPR-in, AUPR-out, FPR at 95 % TPR). Ties between scores are
 * treated as scikit-learn does: all examples with one score enter a curve
 * together (one threshold per distinct score). */
#ifndef ST_EVAL_METRICS_H
#define ST_EVAL_METRICS_H

#include <stdint.h>

#include "sparsetrain.h"

#define ST_ECE_BINS 15

/*! Per-example summary of `batch` rows of `classes` logits with their labels:
 *   confidence[n] -- maximum softmax probability (the OOD score "MSP");
 *   nll[n]        -- -log softmax(logits)[label];
 *   label_rank[n] -- number of classes ranked before the label: a larger
 *                    logit, or an equal one at a smaller index (the argmax
 *                    convention); the label is in the top k iff label_rank < k.
 * Softmax is computed in double after subtracting the row maximum. Any of the
 * outputs may be NULL; labels may be NULL when only confidence is wanted. */
void st_logits_summary(int batch, int classes, const float *logits, const int32_t *labels, double *confidence,
                       double *nll, int *label_rank);

/*! Fraction of the n examples with label_rank < k (top-k accuracy); 0 for n = 0. */
double st_topk_accuracy(int64_t n, const int *label_rank, int k);

/* One bin of a reliability diagram: predictions with confidence in
 * (lower, upper] (the first bin also takes confidence 0). */
typedef struct st_reliability_bin {
    double lower, upper;
    int64_t count;
    double mean_confidence; /* 0 for an empty bin */
    double accuracy;        /* fraction correct; 0 for an empty bin */
} st_reliability_bin;

/*! Expected calibration error over `bins` equal-width confidence bins on
 * [0, 1] (Guo et al. 2017; SPEC asks for 15):
 *   ECE = sum_b count_b / n * |accuracy_b - mean_confidence_b|.
 * correct[i] is 1 if example i was classified right (label_rank == 0).
 * table (room for `bins` entries) may be NULL.
 * @return ST_ERR_ARGUMENT for bins < 1, or a confidence outside [0, 1] or NaN. */
st_status st_calibration(int64_t n, const double *confidence, const uint8_t *correct, int bins,
                         st_reliability_bin *table, double *ece);

/* How well a score separates in-distribution examples (positives, expected
 * to score higher) from out-of-distribution ones. */
typedef struct st_ood_metrics {
    double auroc;         /* area under the ROC curve, in-distribution positive */
    double aupr_in;       /* average precision, in-distribution positive, score as is */
    double aupr_out;      /* average precision, OOD positive, score negated */
    double fpr_at_95_tpr; /* fraction of OOD examples accepted at the highest
                             threshold that accepts >= 95 % of in-distribution ones */
} st_ood_metrics;

/*! Computes st_ood_metrics of scores_in (n_in) against scores_out (n_out).
 * Average precision is the step-wise sum sum_k (R_k - R_{k-1}) P_k over the
 * distinct thresholds, as sklearn.metrics.average_precision_score; AUROC the
 * trapezoid over distinct thresholds, as roc_auc_score.
 * @return ST_ERR_ARGUMENT if either set is empty or a score is NaN;
 * ST_ERR_NOMEM. */
st_status st_ood_compute(const double *scores_in, int64_t n_in, const double *scores_out, int64_t n_out,
                         st_ood_metrics *out);

/*! Counts the n values into `bins` equal-width bins over [lo, hi] (values
 * outside are put in the first or last bin; NaN is skipped). */
void st_histogram(int64_t n, const double *values, double lo, double hi, int bins, int64_t *counts);

#endif
