/* Log-softmax + negative log-likelihood, mean over the batch, optionally
 * with label smoothing (PyTorch's CrossEntropyLoss(label_smoothing = e): the
 * target is (1 - e) one-hot + e / classes, so the loss of an image is
 * (1 - e) * -lp[label] + e * mean_k -lp[k]). The row maximum is subtracted
 * before exponentiating and the exp-sum is kept in double, so large logits
 * neither overflow nor lose the small classes. */
#include <math.h>

#include "core/status.h"
#include "nn/layers.h"

double st_log_softmax_nll_forward(int batch, int classes, const float *logits, const int32_t *labels,
                                  float *log_probs, int *correct) {
    return st_cross_entropy_forward(batch, classes, logits, labels, 0.0, log_probs, correct);
}

double st_cross_entropy_forward(int batch, int classes, const float *logits, const int32_t *labels, double smoothing,
                                float *log_probs, int *correct) {
    double total = 0.0;
    int hits = 0;
    for (int n = 0; n < batch; n++) {
        const float *z = logits + (size_t)n * classes;
        float *lp = log_probs + (size_t)n * classes;
        int best = 0;
        for (int k = 1; k < classes; k++)
            if (z[k] > z[best]) best = k;
        const double max = z[best];
        double sum = 0.0;
        for (int k = 0; k < classes; k++) sum += exp((double)z[k] - max);
        const double log_norm = max + log(sum);
        for (int k = 0; k < classes; k++) lp[k] = (float)((double)z[k] - log_norm);
        const int32_t label = labels[n];
        ST_ASSERT(label >= 0 && label < classes);
        double nll = log_norm - (double)z[label];
        if (smoothing != 0.0) {
            double uniform = 0.0; /* mean over the classes of -lp[k] */
            for (int k = 0; k < classes; k++) uniform += log_norm - (double)z[k];
            nll = (1.0 - smoothing) * nll + smoothing * (uniform / classes);
        }
        total += nll;
        hits += best == label;
    }
    if (correct) *correct = hits;
    return batch > 0 ? total / batch : 0.0;
}

void st_log_softmax_nll_backward(int batch, int classes, const float *log_probs, const int32_t *labels,
                                 float *dlogits) {
    st_cross_entropy_backward(batch, classes, log_probs, labels, 0.0, dlogits);
}

void st_cross_entropy_backward(int batch, int classes, const float *log_probs, const int32_t *labels, double smoothing,
                               float *dlogits) {
    const float inv_batch = 1.0f / (float)batch;
    /* d loss / d z = (softmax - target) / batch, target = (1 - e) one-hot + e / classes */
    const float off = (float)(smoothing / classes) * inv_batch, on = (float)(1.0 - smoothing) * inv_batch;
    for (int n = 0; n < batch; n++) {
        const float *lp = log_probs + (size_t)n * classes;
        float *d = dlogits + (size_t)n * classes;
        for (int k = 0; k < classes; k++) d[k] = expf(lp[k]) * inv_batch;
        if (smoothing != 0.0)
            for (int k = 0; k < classes; k++) d[k] -= off;
        d[labels[n]] -= smoothing != 0.0 ? on : inv_batch;
    }
}
