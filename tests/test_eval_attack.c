/* Adversarial attacks and the input gradient they use:
 *  - the input gradient of a model in evaluation mode (running batch-norm
 *    statistics, fused BN/add/ReLU steps) matches central finite
 *    differences of the loss along random directions;
 *  - eps = 0 returns the images bit for bit, for FGSM and PGD;
 *  - the perturbation stays in the eps-ball and the pixels in [0, 1]
 *    (raw = x * std + mean), per channel;
 *  - FGSM raises the loss of a random model; PGD ends no lower than FGSM;
 *  - the model's training / want_input_grad flags are left as documented.
 * With `--input-grad IN OUT` it is the C side of tests/eval_attack_test.py:
 * reads a parity input (tests/parity_input.h), writes logits, loss and
 * d loss / d images of the model in evaluation mode. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "eval/attack.h"
#include "io/safetensors.h"
#include "models/init.h"
#include "models/model.h"
#include "sparse/masks.h"
#include "parity_input.h"
#include "testing.h"

static int input_grad_mode(const char *in_path, const char *out_path) {
    st_safetensors *f;
    st_model *m;
    const st_tensor_entry *images, *labels64;
    if (read_parity_input(in_path, &f, &m, &images, &labels64)) return 1;
    const int batch = (int)images->shape[0], classes = m->num_classes;
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)batch);
    for (int i = 0; i < batch; i++) labels[i] = (int32_t)((const int64_t *)labels64->data)[i];
    m->training = 0;
    m->want_input_grad = 1;
    const float *logits;
    double loss = 0;
    int correct;
    st_status s = st_model_forward(m, (const float *)images->data, batch, &logits);
    float *logits_copy = malloc(sizeof(float) * (size_t)batch * classes);
    if (s == ST_OK) {
        memcpy(logits_copy, logits, sizeof(float) * (size_t)batch * classes);
        s = st_model_loss_backward(m, labels, batch, &loss, &correct);
    }
    if (s == ST_OK) {
        st_tensor_entry out[3] = {
            {.name = "logits", .dtype = ST_DTYPE_F32, .ndim = 2, .shape = {batch, classes}, .data = logits_copy},
            {.name = "loss", .dtype = ST_DTYPE_F64, .ndim = 1, .shape = {1}, .data = &loss},
            {.name = "input_grad", .dtype = ST_DTYPE_F32, .ndim = 4,
             .shape = {batch, m->in_channels, m->in_height, m->in_width}, .data = m->acts[0].grad}};
        s = st_safetensors_write(out_path, out, 3, NULL, 0);
    }
    if (s != ST_OK) fprintf(stderr, "%s\n", st_last_error());
    free(labels);
    free(logits_copy);
    st_model_free(m);
    st_safetensors_free(f);
    return s == ST_OK ? 0 : 1;
}

/* A model with initialised weights and (for BN models) running statistics
 * away from 0 / 1, so that evaluation mode differs from training mode. */
static st_model *make_model(const char *name, int channels, int size, uint64_t seed) {
    st_model *m = NULL;
    CHECK_OK(st_model_create(name, 10, channels, size, size, &m));
    if (!m) exit(1);
    st_model_init_weights(m, seed, ST_INIT_PLAIN, 1.0, NULL);
    st_rng rng;
    st_rng_seed(&rng, seed, 99);
    for (int i = 0; i < m->n_params; i++) {
        st_param *p = &m->params[i];
        const size_t len = strlen(p->name);
        if (len > 12 && strcmp(p->name + len - 12, "running_mean") == 0)
            for (int64_t k = 0; k < p->numel; k++) p->value[k] = 0.3f * (float)st_rng_normal(&rng);
        if (len > 11 && strcmp(p->name + len - 11, "running_var") == 0)
            for (int64_t k = 0; k < p->numel; k++) p->value[k] = 0.5f + st_rng_uniform(&rng);
    }
    return m;
}

/* Normalised images whose raw pixels are uniform in [0, 1]. */
static float *random_images(int n, const float *mean, const float *std, int channels, int size, uint64_t seed) {
    const int64_t plane = (int64_t)size * size;
    float *x = new_floats((size_t)n * channels * plane);
    st_rng rng;
    st_rng_seed(&rng, seed, 5);
    for (int b = 0; b < n; b++)
        for (int c = 0; c < channels; c++)
            for (int64_t i = 0; i < plane; i++)
                x[((int64_t)b * channels + c) * plane + i] = (st_rng_uniform(&rng) - mean[c]) / std[c];
    return x;
}

static double loss_at(st_model *m, const float *x, const int32_t *labels, int batch) {
    const float *logits;
    CHECK_OK(st_model_forward(m, x, batch, &logits));
    int correct;
    return st_model_loss(m, labels, batch, &correct);
}

/* Directional derivative g.v against (L(x + h v) - L(x - h v)) / 2h. */
static void test_input_gradient(const char *name, int channels, int size) {
    st_model *m = make_model(name, channels, size, 3);
    const float mean[3] = {0.5f, 0.4f, 0.45f}, std[3] = {0.25f, 0.3f, 0.2f};
    const int batch = 3;
    const int64_t n = (int64_t)batch * channels * size * size;
    float *x = random_images(batch, mean, std, channels, size, 4);
    int32_t labels[3] = {1, 7, 3};
    m->training = 0;
    m->want_input_grad = 1;
    const float *logits;
    CHECK_OK(st_model_forward(m, x, batch, &logits));
    double loss;
    int correct;
    CHECK_OK(st_model_loss_backward(m, labels, batch, &loss, &correct));
    float *grad = new_floats((size_t)n), *xp = new_floats((size_t)n), *xm = new_floats((size_t)n);
    memcpy(grad, m->acts[0].grad, sizeof(float) * (size_t)n);
    /* Piecewise-linear networks (ReLU, max pooling) make finite differences
     * noisy where a step crosses a kink: compare against the largest
     * directional derivative seen, with a small step (float32 losses). */
    st_rng rng;
    st_rng_seed(&rng, 11, 0);
    const double h = 3e-4;
    double fd[6], an[6], scale = 0, worst = 0;
    for (int trial = 0; trial < 6; trial++) {
        double directional = 0;
        for (int64_t i = 0; i < n; i++) {
            const float v = (float)st_rng_normal(&rng);
            directional += (double)grad[i] * v;
            xp[i] = x[i] + (float)h * v;
            xm[i] = x[i] - (float)h * v;
        }
        fd[trial] = (loss_at(m, xp, labels, batch) - loss_at(m, xm, labels, batch)) / (2 * h);
        an[trial] = directional;
        scale = fmax(scale, fabs(directional));
    }
    for (int trial = 0; trial < 6; trial++) worst = fmax(worst, fabs(fd[trial] - an[trial]) / scale);
    if (!(worst < 0.03)) fprintf(stderr, "%s: input gradient vs finite differences: relative error %g\n", name, worst);
    CHECK(worst < 0.03);
    /* gradient is not all zero */
    double total = 0;
    for (int64_t i = 0; i < n; i++) total += fabs(grad[i]);
    CHECK(total > 0);
    free(grad), free(xp), free(xm), free(x);
    st_model_free(m);
}

/* Under sparse execution (packed weights, CHWN activations) the input
 * gradient in evaluation mode equals the dense path's on the same masked
 * weights, and so does the attack built on it. */
static void test_sparse_execution_gradient(void) {
    st_model *dense = make_model("cifar_resnet_8_4", 3, 16, 21), *sparse = make_model("cifar_resnet_8_4", 3, 16, 21);
    st_layer_shape *shapes;
    int *ids, n;
    CHECK_OK(st_model_prunable_layers(dense, &shapes, &ids, &n));
    double *d = malloc(sizeof(double) * (size_t)n);
    for (int l = 0; l < n; l++) d[l] = 0.3;
    CHECK_OK(st_model_sample_masks(dense, d, ST_MASK_EXACT, 5));
    CHECK_OK(st_model_sample_masks(sparse, d, ST_MASK_EXACT, 5));
    CHECK_OK(st_model_use_sparse_execution(sparse));
    const float mean[3] = {0.5f, 0.4f, 0.45f}, std[3] = {0.25f, 0.3f, 0.2f};
    const int batch = 4;
    const int64_t size = (int64_t)batch * 3 * 16 * 16;
    float *x = random_images(batch, mean, std, 3, 16, 6);
    int32_t labels[4] = {2, 4, 6, 8};
    float *g[2], *adv[2];
    st_model *models[2] = {dense, sparse};
    for (int k = 0; k < 2; k++) {
        st_model *m = models[k];
        m->training = 0;
        m->want_input_grad = 1;
        const float *logits;
        double loss;
        int correct;
        CHECK_OK(st_model_forward(m, x, batch, &logits));
        CHECK_OK(st_model_loss_backward(m, labels, batch, &loss, &correct));
        g[k] = new_floats((size_t)size);
        memcpy(g[k], m->acts[0].grad, sizeof(float) * (size_t)size);
        m->want_input_grad = 0;
        adv[k] = new_floats((size_t)size);
        st_attack_config a = {.kind = ST_ATTACK_PGD, .eps = 8.0 / 255, .steps = 3, .step_size = 2.0 / 255};
        CHECK_OK(st_attack_batch(m, &a, mean, std, x, labels, batch, 0, adv[k]));
    }
    double num = 0, den = 0, moved = 0, differ = 0;
    for (int64_t i = 0; i < size; i++) {
        num += (double)(g[1][i] - g[0][i]) * (g[1][i] - g[0][i]);
        den += (double)g[0][i] * g[0][i];
        moved += adv[0][i] != x[i];
        differ += adv[0][i] != adv[1][i];
    }
    if (!(sqrt(num / den) < 1e-4)) fprintf(stderr, "sparse vs dense input gradient: relative L2 %g\n", sqrt(num / den));
    CHECK(den > 0 && sqrt(num / den) < 1e-4); /* sparse vs dense float32 kernels: reassociation only (~1e-7) */
    /* sign steps agree except where a gradient is ~0 (rounding may flip it) */
    CHECK(moved > size / 2 && differ < size / 100);
    for (int k = 0; k < 2; k++) free(g[k]), free(adv[k]);
    free(x), free(d), free(shapes), free(ids);
    st_model_free(dense);
    st_model_free(sparse);
}

static void test_attack_properties(const char *name, int channels, int size) {
    st_model *m = make_model(name, channels, size, 8);
    const float mean[3] = {0.2860f, 0.48f, 0.45f}, std[3] = {0.3530f, 0.2f, 0.26f};
    const int batch = 4, plane = size * size;
    const int64_t n = (int64_t)batch * channels * plane;
    float *x = random_images(batch, mean, std, channels, size, 9);
    /* push some pixels to the ends of the range so the clamp is exercised */
    for (int64_t i = 0; i < n; i += 7) x[i] = (i % 2 ? 1.0f - mean[(i / plane) % channels] : -mean[(i / plane) % channels]) /
                                             std[(i / plane) % channels];
    int32_t labels[4] = {0, 3, 5, 9};
    float *adv = new_floats((size_t)n);
    st_attack_config a = {.kind = ST_ATTACK_FGSM, .eps = 0.0, .steps = 5, .step_size = 2.0 / 255};
    CHECK_OK(st_attack_batch(m, &a, mean, std, x, labels, batch, 0, adv));
    CHECK(memcmp(adv, x, sizeof(float) * (size_t)n) == 0);
    a.kind = ST_ATTACK_PGD;
    CHECK_OK(st_attack_batch(m, &a, mean, std, x, labels, batch, 0, adv));
    CHECK(memcmp(adv, x, sizeof(float) * (size_t)n) == 0);
    CHECK(m->training == 0 && m->want_input_grad == 0); /* evaluation mode, input gradient off again */

    const double clean = loss_at(m, x, labels, batch);
    const double eps = 8.0 / 255;
    double loss_fgsm = 0, loss_pgd = 0;
    for (int kind = 0; kind < 3; kind++) {
        a.kind = kind == 0 ? ST_ATTACK_FGSM : ST_ATTACK_PGD;
        a.eps = eps;
        a.random_start = kind == 2;
        a.seed = 4;
        CHECK_OK(st_attack_batch(m, &a, mean, std, x, labels, batch, 1, adv));
        double max_dev = 0, below = 0, above = 0;
        int64_t moved = 0;
        for (int64_t i = 0; i < n; i++) {
            const int c = (int)((i / plane) % channels);
            const double raw = (double)x[i] * std[c] + mean[c], raw_adv = (double)adv[i] * std[c] + mean[c];
            max_dev = fmax(max_dev, fabs(raw_adv - raw));
            below = fmin(below, raw_adv);
            above = fmax(above, raw_adv - 1);
            moved += adv[i] != x[i];
        }
        CHECK(max_dev <= eps + 1e-5); /* images are float32 in [0, 1]: clipping rounds by <= 6e-8 */
        CHECK(below >= -1e-5 && above <= 1e-5);
        CHECK(moved > n / 2);
        const double l = loss_at(m, adv, labels, batch);
        if (kind == 0) loss_fgsm = l;
        if (kind == 1) loss_pgd = l;
        CHECK(l > clean);
    }
    if (!(loss_pgd >= loss_fgsm)) fprintf(stderr, "%s: PGD loss %g < FGSM loss %g\n", name, loss_pgd, loss_fgsm);
    CHECK(loss_pgd >= loss_fgsm);
    st_attack_config bad = {.kind = ST_ATTACK_PGD, .eps = -1, .steps = 1, .step_size = 0.1};
    CHECK(st_attack_config_check(&bad) == ST_ERR_ARGUMENT);
    bad.eps = 0.1, bad.steps = 0;
    CHECK(st_attack_config_check(&bad) == ST_ERR_ARGUMENT);
    st_attack_kind k;
    CHECK(st_attack_kind_parse("pgd", &k) && k == ST_ATTACK_PGD);
    CHECK(!st_attack_kind_parse("cw", &k));
    free(x), free(adv);
    st_model_free(m);
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "--input-grad") == 0) return input_grad_mode(argv[2], argv[3]);
    test_input_gradient("lenet300-100", 1, 28);
    test_input_gradient("lenet5", 1, 28);
    test_input_gradient("cifar_resnet_8_4", 3, 16);
    test_sparse_execution_gradient();
    test_attack_properties("lenet5", 1, 28);
    test_attack_properties("cifar_resnet_8_4", 3, 16);
    TEST_MAIN_END();
}
