/* Log-softmax + negative log-likelihood, mean over the batch. The row
 * maximum is subtracted before exponentiating and the exp-sum is kept in
 * double, so large logits neither overflow nor lose the small classes. */
#include <math.h>

#include "core/status.h"
#include "nn/layers.h"

double st_log_softmax_nll_forward(int batch, int classes, const float *logits, const int32_t *labels,
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
        total -= (double)z[label] - log_norm;
        hits += best == label;
    }
    if (correct) *correct = hits;
    return batch > 0 ? total / batch : 0.0;
}

void st_log_softmax_nll_backward(int batch, int classes, const float *log_probs, const int32_t *labels,
                                 float *dlogits) {
    const float inv_batch = 1.0f / (float)batch;
    for (int n = 0; n < batch; n++) {
        const float *lp = log_probs + (size_t)n * classes;
        float *d = dlogits + (size_t)n * classes;
        for (int k = 0; k < classes; k++) d[k] = expf(lp[k]) * inv_batch;
        d[labels[n]] -= inv_batch;
    }
}
