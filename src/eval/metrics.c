/* Evaluation metrics (see metrics.h): closed forms over arrays, no state. */
#include "eval/metrics.h"

#include <math.h>
#include <stdlib.h>

#include "core/status.h"

void st_logits_summary(int batch, int classes, const float *logits, const int32_t *labels, double *confidence,
                       double *nll, int *label_rank) {
    for (int n = 0; n < batch; n++) {
        const float *z = logits + (size_t)n * classes;
        double max = z[0];
        for (int k = 1; k < classes; k++)
            if (z[k] > max) max = z[k];
        double sum = 0.0;
        for (int k = 0; k < classes; k++) sum += exp((double)z[k] - max);
        if (confidence) confidence[n] = 1.0 / sum; /* exp(max - max) / sum */
        if (!labels) continue;
        const int32_t label = labels[n];
        if (nll) nll[n] = -((double)z[label] - max - log(sum));
        if (label_rank) {
            int rank = 0;
            for (int k = 0; k < classes; k++) rank += z[k] > z[label] || (z[k] == z[label] && k < label);
            label_rank[n] = rank;
        }
    }
}

double st_topk_accuracy(int64_t n, const int *label_rank, int k) {
    if (n <= 0) return 0.0;
    int64_t hits = 0;
    for (int64_t i = 0; i < n; i++) hits += label_rank[i] < k;
    return (double)hits / (double)n;
}

st_status st_calibration(int64_t n, const double *confidence, const uint8_t *correct, int bins,
                         st_reliability_bin *table, double *ece) {
    if (bins < 1) return st_fail(ST_ERR_ARGUMENT, "calibration needs at least one bin (got %d)", bins);
    double *conf_sum = calloc((size_t)bins, sizeof(double));
    int64_t *hits = calloc((size_t)bins, sizeof(int64_t)), *count = calloc((size_t)bins, sizeof(int64_t));
    if (!conf_sum || !hits || !count) {
        free(conf_sum), free(hits), free(count);
        return st_fail(ST_ERR_NOMEM, "out of memory for %d calibration bins", bins);
    }
    st_status s = ST_OK;
    for (int64_t i = 0; i < n; i++) {
        const double c = confidence[i];
        if (!(c >= 0.0 && c <= 1.0)) {
            s = st_fail(ST_ERR_ARGUMENT, "confidence %g of example %lld is outside [0, 1]", c, (long long)i);
            break;
        }
        /* bin b holds (b/bins, (b+1)/bins]: the smallest b with c <= (b+1)/bins */
        int b = (int)ceil(c * bins) - 1;
        if (b < 0) b = 0;
        if (b >= bins) b = bins - 1;
        /* guard the rounding of c * bins at a boundary */
        while (b > 0 && c <= (double)b / bins) b--;
        while (b < bins - 1 && c > (double)(b + 1) / bins) b++;
        conf_sum[b] += c;
        hits[b] += correct[i] != 0;
        count[b]++;
    }
    double total = 0.0;
    for (int b = 0; b < bins && s == ST_OK; b++) {
        const double mean_conf = count[b] ? conf_sum[b] / (double)count[b] : 0.0;
        const double acc = count[b] ? (double)hits[b] / (double)count[b] : 0.0;
        if (count[b]) total += (double)count[b] / (double)n * fabs(acc - mean_conf);
        if (table) {
            table[b].lower = (double)b / bins;
            table[b].upper = (double)(b + 1) / bins;
            table[b].count = count[b];
            table[b].mean_confidence = mean_conf;
            table[b].accuracy = acc;
        }
    }
    if (s == ST_OK && ece) *ece = total;
    free(conf_sum), free(hits), free(count);
    return s;
}

typedef struct scored {
    double score;
    uint8_t positive;
} scored;

static int by_score_descending(const void *a, const void *b) {
    const double x = ((const scored *)a)->score, y = ((const scored *)b)->score;
    return x > y ? -1 : x < y ? 1 : 0;
}

/* Walks the thresholds of items sorted by descending score, one per distinct
 * score: area under the ROC curve (trapezoids), average precision (steps) and
 * the FPR at the first threshold reaching a TPR of 0.95. */
static void curve_summary(const scored *items, int64_t n, int64_t positives, int64_t negatives, double *auroc,
                          double *average_precision, double *fpr95) {
    int64_t tp = 0, fp = 0;
    double area = 0.0, ap = 0.0, fpr_at = 1.0;
    int found = 0;
    for (int64_t i = 0; i < n;) {
        const int64_t tp0 = tp, fp0 = fp;
        int64_t j = i;
        for (; j < n && items[j].score == items[i].score; j++) {
            if (items[j].positive)
                tp++;
            else
                fp++;
        }
        area += (double)(fp - fp0) / (double)negatives * 0.5 * (double)(tp + tp0) / (double)positives;
        ap += (double)(tp - tp0) / (double)positives * (double)tp / (double)(tp + fp);
        if (!found && (double)tp / (double)positives >= 0.95) {
            fpr_at = (double)fp / (double)negatives;
            found = 1;
        }
        i = j;
    }
    *auroc = area;
    *average_precision = ap;
    *fpr95 = fpr_at;
}

/* Fills items with both sets, `sign` times the score, positives marked. */
static void fill(scored *items, const double *pos, int64_t n_pos, const double *neg, int64_t n_neg, double sign) {
    for (int64_t i = 0; i < n_pos; i++) items[i] = (scored){sign * pos[i], 1};
    for (int64_t i = 0; i < n_neg; i++) items[n_pos + i] = (scored){sign * neg[i], 0};
    qsort(items, (size_t)(n_pos + n_neg), sizeof *items, by_score_descending);
}

st_status st_ood_compute(const double *scores_in, int64_t n_in, const double *scores_out, int64_t n_out,
                         st_ood_metrics *out) {
    if (n_in <= 0 || n_out <= 0)
        return st_fail(ST_ERR_ARGUMENT, "OOD metrics need in-distribution and OOD examples (got %lld and %lld)",
                       (long long)n_in, (long long)n_out);
    for (int64_t i = 0; i < n_in; i++)
        if (isnan(scores_in[i])) return st_fail(ST_ERR_ARGUMENT, "in-distribution score %lld is NaN", (long long)i);
    for (int64_t i = 0; i < n_out; i++)
        if (isnan(scores_out[i])) return st_fail(ST_ERR_ARGUMENT, "OOD score %lld is NaN", (long long)i);
    const int64_t n = n_in + n_out;
    scored *items = st_malloc(sizeof(scored) * (size_t)n, "OOD scores");
    if (!items) return ST_ERR_NOMEM;
    double unused_auroc, unused_fpr;
    fill(items, scores_in, n_in, scores_out, n_out, 1.0);
    curve_summary(items, n, n_in, n_out, &out->auroc, &out->aupr_in, &out->fpr_at_95_tpr);
    fill(items, scores_out, n_out, scores_in, n_in, -1.0);
    curve_summary(items, n, n_out, n_in, &unused_auroc, &out->aupr_out, &unused_fpr);
    free(items);
    return ST_OK;
}

void st_histogram(int64_t n, const double *values, double lo, double hi, int bins, int64_t *counts) {
    for (int b = 0; b < bins; b++) counts[b] = 0;
    if (bins < 1 || !(hi > lo)) return;
    for (int64_t i = 0; i < n; i++) {
        const double v = values[i];
        if (isnan(v)) continue;
        const double position = floor((v - lo) / (hi - lo) * bins); /* clamped before the cast: v may be huge */
        const int b = position < 0 ? 0 : position >= bins ? bins - 1 : (int)position;
        counts[b]++;
    }
}
