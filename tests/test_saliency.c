/* SNIP / GraSP / global-magnitude densities (saliency/saliency.h): the global
 * selection rule on hand-made scores, Xavier init, weight restoration, the
 * checkpoint's layer_densities metadata. With `--parity IN OUT` it is the C
 * side of tests/saliency_parity_test.py: loads weights and a batch from IN,
 * writes the raw scores and the per-layer densities to OUT.
 *
 * Tolerances: 1e-15 / 1e-12 on hand-computed densities allow a few double
 * roundings; the statistical and float32 ones carry their reason inline.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "models/init.h"
#include "models/model.h"
#include "sparse/distributions.h"
#include "saliency/hvp.h"
#include "sparse/masks.h"
#include "saliency/saliency.h"
#include "parity_input.h"
#include "testing.h"

static double **alloc_scores(const st_model *m, const int *ids, int n, int64_t *numel) {
    double **s = calloc((size_t)n, sizeof(double *));
    for (int l = 0; l < n; l++) {
        numel[l] = m->params[ids[l]].numel;
        s[l] = calloc((size_t)numel[l], sizeof(double));
    }
    return s;
}

static void free_scores(double **s, int n) {
    for (int l = 0; l < n; l++) free(s[l]);
    free(s);
}

static int parity(const char *in_path, const char *out_path) {
    st_safetensors *f;
    st_model *m;
    const st_tensor_entry *images, *labels64;
    if (read_parity_input(in_path, &f, &m, &images, &labels64)) return 1;
    const char *method = st_safetensors_meta(f, "method");
    const char *density_text = st_safetensors_meta(f, "density");
    if (!method || !density_text) {
        fprintf(stderr, "parity input invalid: metadata 'method' or 'density' missing\n");
        st_model_free(m);
        st_safetensors_free(f);
        return 1;
    }
    st_saliency_batch batch = {(float *)images->data, malloc(sizeof(int32_t) * (size_t)labels64->shape[0]),
                               (int)labels64->shape[0]};
    for (int i = 0; i < batch.count; i++) batch.labels[i] = (int32_t)((const int64_t *)labels64->data)[i];
    st_layer_shape *shapes;
    int *ids, n;
    st_model_prunable_layers(m, &shapes, &ids, &n);
    int64_t *numel = calloc((size_t)n, sizeof(int64_t));
    double **scores = alloc_scores(m, ids, n, numel);
    double *densities = calloc((size_t)n, sizeof(double));
    st_status s = st_saliency_scores(method, m, &batch, scores);
    if (s == ST_OK)
        s = st_densities_from_scores(scores, numel, n, atof(density_text), strcmp(method, "GraSP") != 0, densities);
    if (s == ST_OK) {
        st_tensor_entry *out = calloc((size_t)n + 1, sizeof *out);
        char **names = calloc((size_t)n, sizeof(char *));
        out[0] = (st_tensor_entry){.name = "densities", .dtype = ST_DTYPE_F64, .ndim = 1, .shape = {n}, .data = densities};
        for (int l = 0; l < n; l++) {
            const st_param *p = &m->params[ids[l]];
            names[l] = malloc(strlen(p->name) + 8);
            sprintf(names[l], "score.%s", p->name);
            out[l + 1] = (st_tensor_entry){.name = names[l], .dtype = ST_DTYPE_F64, .ndim = p->ndim, .data = scores[l]};
            for (int d = 0; d < p->ndim; d++) out[l + 1].shape[d] = p->shape[d];
        }
        s = st_safetensors_write(out_path, out, n + 1, NULL, 0);
        for (int l = 0; l < n; l++) free(names[l]);
        free(names);
        free(out);
    }
    if (s != ST_OK) fprintf(stderr, "%s\n", st_last_error());
    free_scores(scores, n);
    free(numel);
    free(densities);
    free(shapes);
    free(ids);
    free(batch.labels);
    st_model_free(m);
    st_safetensors_free(f);
    return s == ST_OK ? 0 : 1;
}

/* The global selection rule on scores small enough to count by hand. */
static void test_selection(void) {
    double a[4] = {0.9, 0.1, 0.5, 0.3}, b[6] = {0.8, 0.2, 0.7, 0.0, 0.6, 0.4};
    double *scores[2] = {a, b};
    int64_t numel[2] = {4, 6};
    double d[2];
    /* N = 10, density 0.3: keep the 3 largest (0.9, 0.8, 0.7) -> a 1/4, b 2/6. */
    CHECK_OK(st_densities_from_scores(scores, numel, 2, 0.3, 1, d));
    CHECK_NEAR(d[0], 0.25, 1e-15);
    CHECK_NEAR(d[1], 2.0 / 6.0, 1e-15);
    /* density 0.55: int(5.5) = 5 kept: 0.9 0.8 0.7 0.6 0.5 -> a 2/4, b 3/6. */
    CHECK_OK(st_densities_from_scores(scores, numel, 2, 0.55, 1, d));
    CHECK_NEAR(d[0], 0.5, 1e-15);
    CHECK_NEAR(d[1], 0.5, 1e-15);
    /* GraSP keeps the lowest: density 0.3 removes int(10 * 0.7) = 7 largest by
     * keeping scores <= the 7th largest (0.3), i.e. 0.3 0.2 0.1 0.0 -> 4 kept
     * (the reference's rule keeps the threshold score itself). */
    CHECK_OK(st_densities_from_scores(scores, numel, 2, 0.3, 0, d));
    CHECK_NEAR(d[0], 2.0 / 4.0, 1e-15); /* 0.1, 0.3 */
    CHECK_NEAR(d[1], 2.0 / 6.0, 1e-15); /* 0.2, 0.0 */
    /* ties: every tied score at the threshold is kept */
    double t[5] = {1, 1, 1, 1, 0};
    double *ts[1] = {t};
    int64_t tn[1] = {5};
    CHECK_OK(st_densities_from_scores(ts, tn, 1, 0.4, 1, d));
    CHECK_NEAR(d[0], 0.8, 1e-15);
    /* density 1 under GraSP removes nothing */
    CHECK_OK(st_densities_from_scores(scores, numel, 2, 1.0, 0, d));
    CHECK(d[0] == 1.0 && d[1] == 1.0);
    CHECK(st_densities_from_scores(scores, numel, 2, 0.0, 1, d) == ST_ERR_ARGUMENT);
    /* larger random input: the kept count is exactly k when scores are distinct */
    st_rng rng;
    st_rng_seed(&rng, 4, 5);
    int64_t big_n[3] = {1000, 37, 5000};
    double *big[3];
    for (int l = 0; l < 3; l++) {
        big[l] = malloc(sizeof(double) * (size_t)big_n[l]);
        for (int64_t i = 0; i < big_n[l]; i++) big[l][i] = st_rng_uniform_double(&rng) * (l + 1);
    }
    double bd[3];
    CHECK_OK(st_densities_from_scores(big, big_n, 3, 0.137, 1, bd));
    double kept = bd[0] * 1000 + bd[1] * 37 + bd[2] * 5000;
    CHECK_NEAR(kept, (double)(int64_t)(6037 * 0.137), 1e-6);
    CHECK(bd[2] > bd[0]); /* layer 2's scores are larger */
    for (int l = 0; l < 3; l++) free(big[l]);
}

static void test_xavier(void) {
    st_model *m;
    CHECK_OK(st_model_create("cifar_resnet_20", 10, 3, 32, 32, &m));
    st_model_init_xavier_normal(m, 3);
    const char *names[] = {"blocks.8.conv2.weight", "fc.weight"};
    double expect[] = {sqrt(2.0 / (576.0 + 576.0)), sqrt(2.0 / (64.0 + 10.0))};
    for (int i = 0; i < 2; i++) {
        const st_param *p = &m->params[st_model_find_param(m, names[i])];
        double sq = 0;
        for (int64_t k = 0; k < p->numel; k++) sq += (double)p->value[k] * p->value[k];
        /* sample std of n normal draws: standard error 1/sqrt(2n) = 0.37 % (n = 36864), 2.8 % (n = 640) */
        CHECK_NEAR(sqrt(sq / (double)p->numel), expect[i], (i ? 0.06 : 0.02) * expect[i]);
    }
    /* non-prunable tensors are untouched */
    CHECK(m->params[st_model_find_param(m, "bn.weight")].value[0] == 1.0f);
    st_model_free(m);
}

static void random_batch(st_saliency_batch *b, int count, int size, int classes, uint64_t seed) {
    b->images = malloc(sizeof(float) * (size_t)count * size);
    b->labels = malloc(sizeof(int32_t) * (size_t)count);
    b->count = count;
    st_rng rng;
    st_rng_seed(&rng, seed, 9);
    for (int64_t i = 0; i < (int64_t)count * size; i++) b->images[i] = (float)st_rng_normal(&rng);
    for (int i = 0; i < count; i++) b->labels[i] = (int32_t)(i * classes / count); /* class by class */
}

/* The Hessian-vector engine on every layer kind (VGG: max and average
 * pooling, batch norm; ResNet: shortcuts and adds; LeNet: bias, flatten):
 * its gradient equals the model's own backward, and H is symmetric
 * (u . Hv == v . Hu), which a wrong tangent of any layer breaks. The values
 * themselves are checked against PyTorch in tests/saliency_parity_test.py. */
static void test_hvp(const char *name, int channels, int size, int batch) {
    st_model *m;
    CHECK_OK(st_model_create(name, 10, channels, size, size, &m));
    if (!m) return;
    st_model_init_weights(m, 3, ST_INIT_PLAIN, 1.0, NULL);
    st_saliency_batch b;
    random_batch(&b, batch, channels * size * size, 10, 21);
    st_layer_shape *shapes;
    int *ids, n;
    CHECK_OK(st_model_prunable_layers(m, &shapes, &ids, &n));
    int64_t *numel = calloc((size_t)n, sizeof(int64_t));
    double **grad = alloc_scores(m, ids, n, numel), **hu = alloc_scores(m, ids, n, numel),
           **hv = alloc_scores(m, ids, n, numel);
    float **u = calloc((size_t)n, sizeof(float *)), **v = calloc((size_t)n, sizeof(float *));
    st_rng rng;
    st_rng_seed(&rng, 8, 8);
    for (int l = 0; l < n; l++) {
        u[l] = malloc(sizeof(float) * (size_t)numel[l]);
        v[l] = malloc(sizeof(float) * (size_t)numel[l]);
        for (int64_t k = 0; k < numel[l]; k++) {
            u[l][k] = (float)st_rng_normal(&rng);
            v[l][k] = (float)st_rng_normal(&rng);
        }
    }
    CHECK_OK(st_model_loss_hvp(m, b.images, b.labels, b.count, 1.0, NULL, grad, NULL));
    const float *logits;
    double loss;
    int correct;
    CHECK_OK(st_model_forward(m, b.images, b.count, &logits));
    CHECK_OK(st_model_loss_backward(m, b.labels, b.count, &loss, &correct));
    double diff = 0, norm = 0;
    for (int l = 0; l < n; l++)
        for (int64_t k = 0; k < numel[l]; k++) {
            double g = m->params[ids[l]].grad[k];
            diff += (grad[l][k] - g) * (grad[l][k] - g);
            norm += g * g;
        }
    CHECK(sqrt(diff / norm) < 1e-4); /* float32 backward passes in two orders: reassociation (~1e-6) */
    CHECK_OK(st_model_loss_hvp(m, b.images, b.labels, b.count, 0.5, u, NULL, hu));
    CHECK_OK(st_model_loss_hvp(m, b.images, b.labels, b.count, 0.5, v, NULL, hv));
    double uhv = 0, vhu = 0, scale = 0;
    for (int l = 0; l < n; l++)
        for (int64_t k = 0; k < numel[l]; k++) {
            uhv += u[l][k] * hv[l][k];
            vhu += v[l][k] * hu[l][k];
            scale += fabs(u[l][k] * hv[l][k]);
        }
    if (!(fabs(uhv - vhu) <= 1e-4 * scale))
        fprintf(stderr, "%s: u.Hv = %.9g, v.Hu = %.9g (scale %.3g)\n", name, uhv, vhu, scale);
    CHECK(fabs(uhv - vhu) <= 1e-4 * scale); /* H is symmetric; float32 double backward: ~1e-6 of the terms' scale */
    CHECK(scale > 0);
    CHECK(st_model_loss_hvp(m, b.images, b.labels, b.count, 1.0, NULL, NULL, hv) == ST_ERR_ARGUMENT);
    for (int l = 0; l < n; l++) {
        free(u[l]);
        free(v[l]);
    }
    free(u);
    free(v);
    free_scores(grad, n);
    free_scores(hu, n);
    free_scores(hv, n);
    free(numel);
    free(shapes);
    free(ids);
    st_saliency_batch_free(&b);
    st_model_free(m);
}

/* End to end on small models: densities in [0, 1] that add up to d*N, the
 * caller's model untouched, GraSP/SNIP deterministic for a seed. */
static void test_densities_end_to_end(void) {
    const char *models[] = {"lenet300-100", "cifar_resnet_8_4"};
    const int channels[] = {1, 3}, sizes[] = {28, 12};
    const char *methods[] = {"snip", "GraSP", "global_magnitude"};
    for (int mi = 0; mi < 2; mi++) {
        st_model *m;
        CHECK_OK(st_model_create(models[mi], 10, channels[mi], sizes[mi], sizes[mi], &m));
        st_model_init_weights(m, 7, ST_INIT_PLAIN, 1.0, NULL);
        st_saliency_batch b;
        random_batch(&b, 20, channels[mi] * sizes[mi] * sizes[mi], 10, 11);
        st_layer_shape *shapes;
        int *ids, n;
        CHECK_OK(st_model_prunable_layers(m, &shapes, &ids, &n));
        float *before = malloc(sizeof(float) * (size_t)m->params[ids[n - 1]].numel);
        memcpy(before, m->params[ids[n - 1]].value, sizeof(float) * (size_t)m->params[ids[n - 1]].numel);
        double *d = calloc((size_t)n, sizeof(double)), *d2 = calloc((size_t)n, sizeof(double));
        for (int k = 0; k < 3; k++) {
            CHECK_OK(st_model_layer_densities(m, methods[k], 0.1, 1.0, &b, 5, d));
            double kept = 0, total = 0;
            for (int l = 0; l < n; l++) {
                CHECK(d[l] >= 0 && d[l] <= 1);
                kept += d[l] * (double)st_layer_numel(&shapes[l]);
                total += (double)st_layer_numel(&shapes[l]);
            }
            /* distinct scores: exactly int(N d) kept (GraSP: one more, the reference's <=) */
            double want = (double)(int64_t)(total * 0.1) + (k == 1 ? 0 : 0);
            if (k == 1) want = total - (double)(int64_t)(total * 0.9) + 1;
            CHECK_NEAR(kept, want, 0.5); /* an integer count: exact (0.5 only absorbs the double sum of densities) */
            CHECK_OK(st_model_layer_densities(m, methods[k], 0.1, 1.0, &b, 5, d2));
            CHECK(memcmp(d, d2, sizeof(double) * (size_t)n) == 0);
            printf("%s %s:", models[mi], methods[k]);
            for (int l = 0; l < n; l++) printf(" %.4f", d[l]);
            printf("\n");
        }
        /* the model itself is not modified */
        CHECK(memcmp(before, m->params[ids[n - 1]].value, sizeof(float) * (size_t)m->params[ids[n - 1]].numel) == 0);
        /* st_saliency_scores restores the weights it perturbs (GraSP) */
        int64_t *numel = calloc((size_t)n, sizeof(int64_t));
        double **scores = alloc_scores(m, ids, n, numel);
        CHECK_OK(st_saliency_scores("GraSP", m, &b, scores));
        CHECK(memcmp(before, m->params[ids[n - 1]].value, sizeof(float) * (size_t)m->params[ids[n - 1]].numel) == 0);
        free_scores(scores, n);
        free(numel);
        /* missing data and bad names are clear errors */
        CHECK(st_model_layer_densities(m, "snip", 0.1, 1.0, NULL, 5, d) == ST_ERR_ARGUMENT);
        CHECK(strstr(st_last_error(), "snip") != NULL);
        st_saliency_batch one = {b.images, b.labels, 1};
        CHECK(st_model_layer_densities(m, "GraSP", 0.1, 1.0, &one, 5, d) == ST_ERR_ARGUMENT);
        CHECK(st_model_layer_densities(m, "grasp", 0.1, 1.0, &b, 5, d) == ST_ERR_ARGUMENT);
        CHECK(st_model_layer_densities(m, "snip", 0.0, 1.0, &b, 5, d) == ST_ERR_ARGUMENT);
        b.labels[3] = 10;
        CHECK(st_model_layer_densities(m, "snip", 0.1, 1.0, &b, 5, d) == ST_ERR_ARGUMENT);
        CHECK(strstr(st_last_error(), "label 10") != NULL);
        /* density 1: dense, no data needed */
        CHECK_OK(st_model_layer_densities(m, "GraSP", 1.0, 1.0, NULL, 5, d));
        CHECK(d[0] == 1.0 && d[n - 1] == 1.0);
        /* the pure distributions go through the same entry point */
        CHECK_OK(st_model_layer_densities(m, "ERK", 0.1, 1.0, NULL, 5, d));
        CHECK_OK(st_layer_densities("ERK", 0.1, 1.0, shapes, n, d2));
        CHECK(memcmp(d, d2, sizeof(double) * (size_t)n) == 0);
        free(before);
        free(d);
        free(d2);
        free(shapes);
        free(ids);
        st_saliency_batch_free(&b);
        st_model_free(m);
    }
}

/* global_magnitude against a direct count over all |w|. */
static void test_global_magnitude(void) {
    st_model *m;
    CHECK_OK(st_model_create("lenet5", 10, 1, 28, 28, &m));
    st_model_init_weights(m, 17, ST_INIT_PLAIN, 1.0, NULL);
    st_layer_shape *shapes;
    int *ids, n;
    CHECK_OK(st_model_prunable_layers(m, &shapes, &ids, &n));
    double d[4];
    CHECK_OK(st_model_layer_densities(m, "global_magnitude", 0.2, 1.0, NULL, 1, d));
    /* threshold by bisection on the count of |w| >= t */
    int64_t total = 0;
    for (int l = 0; l < n; l++) total += m->params[ids[l]].numel;
    int64_t k = (int64_t)((double)total * 0.2);
    double lo = 0, hi = 10;
    for (int it = 0; it < 200; it++) {
        double mid = 0.5 * (lo + hi);
        int64_t c = 0;
        for (int l = 0; l < n; l++)
            for (int64_t i = 0; i < m->params[ids[l]].numel; i++) c += fabs((double)m->params[ids[l]].value[i]) >= mid;
        if (c >= k) lo = mid;
        else hi = mid;
    }
    for (int l = 0; l < n; l++) {
        const st_param *p = &m->params[ids[l]];
        int64_t c = 0;
        for (int64_t i = 0; i < p->numel; i++) c += fabs((double)p->value[i]) >= lo;
        CHECK_NEAR(d[l], (double)c / (double)p->numel, 1e-12);
    }
    /* Kaiming init: the layer with the smallest fan-in has the largest weights, so the highest density */
    CHECK(d[0] > d[1] && d[0] > d[2]);
    free(shapes);
    free(ids);
    st_model_free(m);
}

/* The checkpoint records the per-layer densities as metadata and reads them back. */
static void test_checkpoint_layer_densities(void) {
    const char *tmp = getenv("ST_TEST_TMP");
    char path[1024];
    snprintf(path, sizeof path, "%s/saliency_ckpt.safetensors", tmp ? tmp : "/tmp");
    if (tmp) {
        char cmd[1100];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tmp);
        if (system(cmd) != 0) fprintf(stderr, "mkdir %s failed\n", tmp);
    }
    st_model *m;
    CHECK_OK(st_model_create("lenet300-100", 10, 1, 28, 28, &m));
    st_checkpoint_info info;
    memset(&info, 0, sizeof info);
    info.best_val_acc = -1;
    info.n_layer_densities = 3;
    info.layer_densities[0] = 0.125;
    info.layer_densities[1] = 0.1 / 3;
    info.layer_densities[2] = 1.0;
    CHECK_OK(st_checkpoint_save(path, m, NULL, NULL, NULL, &info));
    st_safetensors *f;
    CHECK_OK(st_safetensors_read(path, &f));
    if (f) {
        const char *meta = st_safetensors_meta(f, "layer_densities");
        CHECK(meta && strstr(meta, "\"fc1.weight\": 0.125") && strstr(meta, "\"fc3.weight\": 1"));
        st_checkpoint_info back;
        CHECK_OK(st_checkpoint_read_info(f, path, &back));
        CHECK(back.n_layer_densities == 3);
        CHECK(back.layer_densities[1] == 0.1 / 3 && back.layer_densities[2] == 1.0);
        st_safetensors_free(f);
    }
    info.n_layer_densities = 2; /* must match the model */
    CHECK(st_checkpoint_save(path, m, NULL, NULL, NULL, &info) == ST_ERR_ARGUMENT);
    remove(path);
    st_model_free(m);
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "--parity") == 0) return parity(argv[2], argv[3]);
    test_selection();
    test_xavier();
    test_global_magnitude();
    test_hvp("vgg11", 3, 32, 2);
    test_hvp("cifar_resnet_8_4", 3, 10, 6);
    test_hvp("lenet5", 1, 28, 5);
    test_hvp("lenet300-100", 1, 28, 5);
    test_densities_end_to_end();
    test_checkpoint_layer_densities();
    TEST_MAIN_END();
}
