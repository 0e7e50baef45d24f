/* SNIP, GraSP and global-magnitude layer-wise densities (see saliency.h),
 * computed with the model's own forward/backward on a scratch copy of the
 * network; GraSP's Hessian-gradient product by forward-over-reverse mode. */
#include "saliency/saliency.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/status.h"
#include "sparse/distributions.h"
#include "saliency/hvp.h"
#include "sparse/masks.h"

void st_model_init_xavier_normal(st_model *m, uint64_t seed) {
    for (int i = 0; i < m->n_params; i++) {
        st_param *p = &m->params[i];
        if (!p->sparse) continue;
        char stream[ST_NAME_MAX + 16];
        snprintf(stream, sizeof stream, "xavier:%s", p->name);
        st_rng rng;
        st_rng_seed(&rng, seed, st_hash_string(stream));
        double std = sqrt(2.0 / (p->fan_in + p->fan_out));
        for (int64_t k = 0; k < p->numel; k++) p->value[k] = (float)(std * st_rng_normal(&rng));
        st_sparse_weight_apply_mask(p->sparse, p->value);
    }
}

void st_saliency_batch_free(st_saliency_batch *b) {
    if (!b) return;
    free(b->images);
    free(b->labels);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------ data */

static st_status copy_images(st_saliency_batch *out, int count, size_t image_floats) {
    out->images = st_malloc(sizeof(float) * (size_t)count * image_floats, "saliency images");
    out->labels = st_malloc(sizeof(int32_t) * (size_t)count, "saliency labels");
    if (!out->images || !out->labels) {
        st_saliency_batch_free(out);
        return ST_ERR_NOMEM;
    }
    out->count = count;
    return ST_OK;
}

st_status st_saliency_collect(const char *sparse_init, st_loader *loader, int num_classes, int channels, int height,
                              int width, int samples_per_class, st_saliency_batch *out) {
    memset(out, 0, sizeof *out);
    int snip = strcmp(sparse_init, "snip") == 0, grasp = strcmp(sparse_init, "GraSP") == 0;
    if (!snip && !grasp) return st_fail(ST_ERR_ARGUMENT, "--sparse_init %s needs no training data", sparse_init);
    if (num_classes <= 0 || samples_per_class <= 0)
        return st_fail(ST_ERR_ARGUMENT, "%s: invalid class count %d or samples per class %d", sparse_init,
                       num_classes, samples_per_class);
    size_t image_floats = (size_t)channels * (size_t)height * (size_t)width;
    ST_TRY(st_loader_start_epoch(loader, 0));
    st_batch b;
    ST_TRY(st_loader_next(loader, &b));
    if (b.count == 0) return st_fail(ST_ERR_ARGUMENT, "%s needs training images, but the training set is empty", sparse_init);
    if (snip) { /* the reference: next(iter(train_loader)) */
        ST_TRY(copy_images(out, b.count, image_floats));
        memcpy(out->images, b.images, sizeof(float) * (size_t)b.count * image_floats);
        memcpy(out->labels, b.labels, sizeof(int32_t) * (size_t)b.count);
        return ST_OK;
    }
    /* GraSP_fetch_data: the first samples_per_class images of every class in
     * loader order, returned class by class. */
    int capacity = num_classes * samples_per_class;
    float *pool = st_malloc(sizeof(float) * (size_t)capacity * image_floats, "GraSP images");
    int *have = st_calloc((size_t)num_classes, sizeof(int), "GraSP class counts");
    st_status s = pool && have ? ST_OK : ST_ERR_NOMEM;
    int full = 0, total = 0;
    while (s == ST_OK && b.count > 0 && full < num_classes) {
        for (int i = 0; i < b.count && s == ST_OK; i++) {
            int32_t y = b.labels[i];
            if (y < 0 || y >= num_classes) {
                s = st_fail(ST_ERR_ARGUMENT, "GraSP: training label %d is outside [0, %d)", (int)y, num_classes);
                break;
            }
            if (have[y] == samples_per_class) continue;
            memcpy(pool + ((size_t)y * samples_per_class + (size_t)have[y]) * image_floats,
                   b.images + (size_t)i * image_floats, sizeof(float) * image_floats);
            total++;
            if (++have[y] == samples_per_class) full++;
        }
        if (s == ST_OK && full < num_classes) s = st_loader_next(loader, &b);
    }
    if (s == ST_OK) s = copy_images(out, total, image_floats);
    if (s == ST_OK) {
        int k = 0;
        for (int c = 0; c < num_classes; c++)
            for (int j = 0; j < have[c]; j++, k++) {
                memcpy(out->images + (size_t)k * image_floats, pool + ((size_t)c * samples_per_class + j) * image_floats,
                       sizeof(float) * image_floats);
                out->labels[k] = c;
            }
    }
    free(pool);
    free(have);
    return s;
}

/* ------------------------------------------------------------ selection */

static void swap_double(double *a, double *b) {
    double t = *a;
    *a = *b;
    *b = t;
}

/* The k-th largest (k in 1..n) of a[0..n), reordering `a`. Quickselect with a
 * three-way partition, because saliency scores often repeat (exact zeros of
 * dead units) and a two-way partition would then degrade to quadratic time. */
static double kth_largest(double *a, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n, target = k - 1;
    while (hi - lo > 1) {
        double x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi - 1];
        double pivot = x > y ? (y > z ? y : (x > z ? z : x)) : (x > z ? x : (y > z ? z : y)); /* median of three */
        int64_t gt = lo, i = lo, lt = hi; /* [lo,gt) > pivot, [gt,i) == pivot, [lt,hi) < pivot */
        while (i < lt) {
            if (a[i] > pivot)
                swap_double(&a[gt++], &a[i++]);
            else if (a[i] < pivot)
                swap_double(&a[i], &a[--lt]);
            else
                i++;
        }
        if (target < gt)
            hi = gt;
        else if (target >= lt)
            lo = lt;
        else
            return pivot;
    }
    return a[lo];
}

st_status st_densities_from_scores(double *const *scores, const int64_t *numel, int n, double density,
                                   int keep_highest, double *densities) {
    if (!(density > 0 && density <= 1)) return st_fail(ST_ERR_ARGUMENT, "--density %g is outside (0, 1]", density);
    int64_t total = 0;
    for (int l = 0; l < n; l++) total += numel[l];
    if (total <= 0) return st_fail(ST_ERR_ARGUMENT, "the model has no prunable weights");
    double *all = st_malloc(sizeof(double) * (size_t)total, "saliency scores");
    if (!all) return ST_ERR_NOMEM;
    int64_t at = 0;
    for (int l = 0; l < n; l++) {
        memcpy(all + at, scores[l], sizeof(double) * (size_t)numel[l]);
        at += numel[l];
    }
    /* Same integer arithmetic as the reference: int(len(scores) * ratio). */
    int64_t k = keep_highest ? (int64_t)((double)total * density) : (int64_t)((double)total * (1.0 - density));
    double threshold = 0;
    int keep_all = 0;
    if (keep_highest) {
        if (k < 1) k = 1; /* the reference fails here (topk of 0); keep the single best weight */
        threshold = kth_largest(all, total, k);
    } else if (k < 1) {
        keep_all = 1;
    } else {
        threshold = kth_largest(all, total, k);
    }
    free(all);
    for (int l = 0; l < n; l++) {
        int64_t kept = 0;
        for (int64_t i = 0; i < numel[l]; i++) {
            double v = scores[l][i];
            kept += keep_all || (keep_highest ? v >= threshold : v <= threshold);
        }
        densities[l] = (double)kept / (double)numel[l];
    }
    return ST_OK;
}

/* ------------------------------------------------------------ scores */

static st_status clone_model(const st_model *m, st_model **out) {
    ST_TRY(st_model_create(m->name, m->num_classes, m->in_channels, m->in_height, m->in_width, out));
    st_model *w = *out;
    if (w->n_params != m->n_params) {
        int rebuilt = w->n_params;
        st_model_free(w);
        *out = NULL;
        return st_fail(ST_ERR_ARGUMENT, "model %s: rebuilt copy has %d parameters, not %d", m->name, rebuilt,
                       m->n_params);
    }
    for (int i = 0; i < m->n_params; i++)
        memcpy(w->params[i].value, m->params[i].value, sizeof(float) * (size_t)m->params[i].numel);
    return ST_OK;
}

static st_status check_batch(const char *method, const st_model *m, const st_saliency_batch *b, int min_count) {
    if (!b || !b->images || !b->labels || b->count < min_count)
        return st_fail(ST_ERR_ARGUMENT, "--sparse_init %s needs at least %d training image%s", method, min_count,
                       min_count == 1 ? "" : "s");
    for (int i = 0; i < b->count; i++)
        if (b->labels[i] < 0 || b->labels[i] >= m->num_classes)
            return st_fail(ST_ERR_ARGUMENT, "%s: label %d of image %d is outside [0, %d)", method, (int)b->labels[i], i,
                           m->num_classes);
    return ST_OK;
}

/* GraSP (snip.py's GraSP, one iteration): g = sum over the two halves h of
 * the batch of dL_h/dw, then Hg = sum_h H_h g, score -w * Hg, with
 * L_h = mean NLL of log_softmax(logits / T) on half h, batch norm on that
 * half's statistics. Hg is exact (forward-over-reverse, saliency/hvp.h). */
static st_status grasp_scores(st_model *m, const int *ids, int n, const st_saliency_batch *batch, double **scores) {
    size_t image = (size_t)m->in_channels * m->in_height * m->in_width;
    int half = batch->count / 2; /* inputs[:N//2], inputs[N//2:] */
    const double scale = 1.0 / ST_GRASP_TEMPERATURE;
    double **grad = st_calloc((size_t)n, sizeof(double *), "GraSP gradients");
    float **g = st_calloc((size_t)n, sizeof(float *), "GraSP gradients");
    st_status s = grad && g ? ST_OK : ST_ERR_NOMEM;
    for (int l = 0; l < n && s == ST_OK; l++) {
        int64_t numel = m->params[ids[l]].numel;
        grad[l] = st_calloc((size_t)numel, sizeof(double), "GraSP gradients");
        g[l] = st_malloc(sizeof(float) * (size_t)numel, "GraSP gradients");
        if (!grad[l] || !g[l]) s = ST_ERR_NOMEM;
        else memset(scores[l], 0, sizeof(double) * (size_t)numel);
    }
    for (int h = 0; h < 2 && s == ST_OK; h++)
        s = st_model_loss_hvp(m, batch->images + (size_t)(h ? half : 0) * image, batch->labels + (h ? half : 0),
                              h ? batch->count - half : half, scale, NULL, grad, NULL);
    double norm = 0;
    for (int l = 0; l < n && s == ST_OK; l++)
        for (int64_t k = 0; k < m->params[ids[l]].numel; k++) {
            g[l][k] = (float)grad[l][k];
            norm += grad[l][k] * grad[l][k];
        }
    if (s == ST_OK && !isfinite(norm)) s = st_fail(ST_ERR_NUMERIC, "GraSP: the gradient on the scoring batch is not finite");
    for (int h = 0; h < 2 && s == ST_OK; h++) /* scores <- Hg */
        s = st_model_loss_hvp(m, batch->images + (size_t)(h ? half : 0) * image, batch->labels + (h ? half : 0),
                              h ? batch->count - half : half, scale, g, NULL, scores);
    for (int l = 0; l < n && s == ST_OK; l++) {
        const st_param *p = &m->params[ids[l]];
        for (int64_t k = 0; k < p->numel; k++) scores[l][k] *= -(double)p->value[k]; /* -theta * Hg */
    }
    for (int l = 0; l < n && grad; l++) free(grad[l]);
    for (int l = 0; l < n && g; l++) free(g[l]);
    free(grad);
    free(g);
    return s;
}

st_status st_saliency_scores(const char *method, st_model *m, const st_saliency_batch *batch, double **scores) {
    int snip = strcmp(method, "snip") == 0, grasp = strcmp(method, "GraSP") == 0;
    int magnitude = strcmp(method, "global_magnitude") == 0;
    if (!snip && !grasp && !magnitude)
        return st_fail(ST_ERR_ARGUMENT, "'%s' is not a saliency method (snip, GraSP, global_magnitude)", method);
    if (!magnitude) ST_TRY(check_batch(method, m, batch, grasp ? 2 : 1));
    st_layer_shape *shapes;
    int *ids, n;
    ST_TRY(st_model_prunable_layers(m, &shapes, &ids, &n));
    st_status s = ST_OK;
    if (snip) {
        const float *logits;
        double loss;
        int correct;
        s = st_model_forward(m, batch->images, batch->count, &logits);
        if (s == ST_OK) s = st_model_loss_backward(m, batch->labels, batch->count, &loss, &correct);
        if (s == ST_OK && !isfinite(loss)) s = st_fail(ST_ERR_NUMERIC, "snip: the loss on the scoring batch is not finite");
        /* dL/dm at m = 1 for y = conv(x, w * m) is dL/dw * w. */
        for (int l = 0; l < n && s == ST_OK; l++) {
            const st_param *p = &m->params[ids[l]];
            for (int64_t k = 0; k < p->numel; k++) scores[l][k] = fabs((double)p->grad[k] * (double)p->value[k]);
        }
    } else if (grasp) {
        s = grasp_scores(m, ids, n, batch, scores);
    } else {
        for (int l = 0; l < n; l++) {
            const st_param *p = &m->params[ids[l]];
            for (int64_t k = 0; k < p->numel; k++) scores[l][k] = fabs((double)p->value[k]);
        }
    }
    for (int l = 0; l < n && s == ST_OK; l++) {
        const st_param *p = &m->params[ids[l]];
        for (int64_t k = 0; k < p->numel; k++)
            if (isnan(scores[l][k])) {
                s = st_fail(ST_ERR_NUMERIC, "%s: the score of %s[%lld] is NaN", method, p->name, (long long)k);
                break;
            }
    }
    free(shapes);
    free(ids);
    return s;
}

/* ------------------------------------------------------------ dispatcher */

st_status st_model_layer_densities(const st_model *m, const char *name, double density, double fc_density,
                                   const st_saliency_batch *batch, uint64_t seed, double *densities) {
    st_layer_shape *shapes;
    int *ids, n;
    ST_TRY(st_model_prunable_layers(m, &shapes, &ids, &n));
    st_status s = ST_OK;
    if (!st_sparse_init_needs_weights(name))
        s = st_layer_densities(name, density, fc_density, shapes, n, densities);
    else if (!(density > 0 && density <= 1))
        s = st_fail(ST_ERR_ARGUMENT, "--density %g is outside (0, 1]", density);
    else if (density == 1.0)
        for (int l = 0; l < n; l++) densities[l] = 1.0;
    free(shapes);
    if (!st_sparse_init_needs_weights(name) || s != ST_OK || density == 1.0) {
        free(ids);
        return s;
    }
    st_model *work = NULL;
    double **scores = st_calloc((size_t)n, sizeof(double *), "saliency scores");
    int64_t *numel = st_calloc((size_t)n, sizeof(int64_t), "saliency scores");
    s = scores && numel ? ST_OK : ST_ERR_NOMEM;
    for (int l = 0; l < n && s == ST_OK; l++) {
        numel[l] = m->params[ids[l]].numel;
        scores[l] = st_malloc(sizeof(double) * (size_t)numel[l], "saliency scores");
        if (!scores[l]) s = ST_ERR_NOMEM;
    }
    /* SNIP works on a re-initialised copy: its forward/backward also touch
     * batch-norm statistics and gradients, none of which the run should see.
     * GraSP (sparse/hvp.c keeps its own buffers) and magnitude only read `m`. */
    int snip = strcmp(name, "snip") == 0;
    if (s == ST_OK && snip) s = clone_model(m, &work);
    if (s == ST_OK && snip) st_model_init_xavier_normal(work, seed);
    if (s == ST_OK) s = st_saliency_scores(name, snip ? work : (st_model *)m, batch, scores);
    if (s == ST_OK) s = st_densities_from_scores(scores, numel, n, density, strcmp(name, "GraSP") != 0, densities);
    if (scores)
        for (int l = 0; l < n; l++) free(scores[l]);
    free(scores);
    free(numel);
    free(ids);
    st_model_free(work);
    return s;
}
