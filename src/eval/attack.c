/* FGSM and PGD (see attack.h). The perturbation is kept in raw pixel space
 * and projected there (onto the eps-ball and the valid pixel range), then
 * mapped to the model's normalised input. */
#include "eval/attack.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/status.h"

int st_attack_kind_parse(const char *name, st_attack_kind *kind) {
    if (strcmp(name, "fgsm") == 0) *kind = ST_ATTACK_FGSM;
    else if (strcmp(name, "pgd") == 0) *kind = ST_ATTACK_PGD;
    else if (strcmp(name, "none") == 0 || name[0] == 0) *kind = ST_ATTACK_NONE;
    else return 0;
    return 1;
}

st_status st_attack_config_check(const st_attack_config *a) {
    if (a->kind == ST_ATTACK_NONE) return ST_OK;
    if (!(a->eps >= 0) || !isfinite(a->eps)) return st_fail(ST_ERR_ARGUMENT, "--eps must be >= 0 (got %g)", a->eps);
    if (a->kind == ST_ATTACK_PGD) {
        if (a->steps < 1) return st_fail(ST_ERR_ARGUMENT, "--steps must be >= 1 for pgd (got %d)", a->steps);
        if (!(a->step_size > 0) || !isfinite(a->step_size))
            return st_fail(ST_ERR_ARGUMENT, "--step-size must be positive for pgd (got %g)", a->step_size);
    }
    return ST_OK;
}

static float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

static float signf(float v) { return v > 0 ? 1.0f : v < 0 ? -1.0f : 0.0f; }

/* x_adv = x + delta / std (exactly x where delta is 0). */
static void apply_delta(const float *images, const float *delta, const float *std, int batch, int channels,
                        int64_t plane, float *adversarial) {
    for (int n = 0; n < batch; n++)
        for (int c = 0; c < channels; c++) {
            const int64_t base = ((int64_t)n * channels + c) * plane;
            for (int64_t i = 0; i < plane; i++) {
                const float d = delta[base + i];
                adversarial[base + i] = d == 0.0f ? images[base + i] : images[base + i] + d / std[c];
            }
        }
}

/* One signed-gradient step on delta, projected onto |delta| <= eps and onto
 * raw + delta in [0, 1]. */
static void step_delta(float *delta, const float *raw, const float *grad, int64_t n, float step, float eps) {
    for (int64_t i = 0; i < n; i++) {
        float d = clampf(delta[i] + step * signf(grad[i]), -eps, eps);
        d = clampf(raw[i] + d, 0.0f, 1.0f) - raw[i];
        delta[i] = d;
    }
}

st_status st_attack_batch(st_model *m, const st_attack_config *a, const float *mean, const float *std,
                          const float *images, const int32_t *labels, int batch, uint64_t stream,
                          float *adversarial) {
    const int channels = m->in_channels;
    const int64_t plane = (int64_t)m->in_height * m->in_width, n = (int64_t)batch * channels * plane;
    memcpy(adversarial, images, sizeof(float) * (size_t)n);
    m->training = 0;
    if (a->kind == ST_ATTACK_NONE || a->eps == 0) return ST_OK;
    float *raw = st_malloc(sizeof(float) * (size_t)n, "attack pixels");
    float *delta = st_calloc((size_t)n, sizeof(float), "attack perturbation");
    if (!raw || !delta) {
        free(raw), free(delta);
        return ST_ERR_NOMEM;
    }
    for (int b = 0; b < batch; b++)
        for (int c = 0; c < channels; c++) {
            const int64_t base = ((int64_t)b * channels + c) * plane;
            for (int64_t i = 0; i < plane; i++) raw[base + i] = clampf(images[base + i] * std[c] + mean[c], 0.0f, 1.0f);
        }
    const float eps = (float)a->eps;
    int steps = 1;
    float step = eps;
    if (a->kind == ST_ATTACK_PGD) {
        steps = a->steps;
        step = (float)a->step_size;
        if (a->random_start) {
            st_rng rng;
            st_rng_seed(&rng, a->seed, stream);
            for (int64_t i = 0; i < n; i++) {
                const float d = eps * (2.0f * st_rng_uniform(&rng) - 1.0f);
                delta[i] = clampf(raw[i] + d, 0.0f, 1.0f) - raw[i];
            }
        }
    }
    const int wanted = m->want_input_grad;
    m->want_input_grad = 1;
    st_status s = ST_OK;
    for (int k = 0; k < steps && s == ST_OK; k++) {
        apply_delta(images, delta, std, batch, channels, plane, adversarial);
        const float *logits;
        double loss;
        int correct;
        s = st_model_forward(m, adversarial, batch, &logits);
        if (s == ST_OK) s = st_model_loss_backward(m, labels, batch, &loss, &correct);
        if (s == ST_OK && !isfinite(loss))
            s = st_fail(ST_ERR_NUMERIC, "the loss became %g during the %s attack (step %d)", loss,
                        a->kind == ST_ATTACK_FGSM ? "fgsm" : "pgd", k + 1);
        /* the gradient w.r.t. the normalised input has the sign of the one
         * w.r.t. raw pixels (std > 0) */
        if (s == ST_OK) step_delta(delta, raw, m->acts[0].grad, n, step, eps);
    }
    if (s == ST_OK) apply_delta(images, delta, std, batch, channels, plane, adversarial);
    m->want_input_grad = wanted;
    free(raw), free(delta);
    return s;
}
