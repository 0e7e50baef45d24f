/* Activation memory planned by liveness (exec/act_memory.c): for several
 * models, after st_model_reserve,
 *   - every activation a step reads or writes has a value buffer of its own,
 *     and the fused steps' intermediates have none;
 *   - two activations share a gradient buffer only when their lives in the
 *     backward walk (first write .. the producer's read, recomputed here
 *     from the schedule) do not overlap, and the images' gradient shares
 *     with nobody;
 *   - the plan holds less than one value and one gradient per activation;
 *   - a training step on the planned buffers still runs and gives finite
 *     gradients (the parity tests check their values against PyTorch). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "exec/executor.h"
#include "models/init.h"
#include "models/model.h"
#include "testing.h"

/* The backward-time life [birth, death] of activation a's gradient, or 0 if it has none. */
static int life(const st_model *m, const st_model_schedule *sc, int a, int *birth, int *death) {
    const int last = sc->n_steps - 1;
    *birth = a == m->n_acts - 1 ? -1 : 1 << 30;
    *death = -2;
    for (int k = 0; k < sc->n_steps; k++) {
        const st_model_step *st = &sc->steps[k];
        const int in2 = st->kind == ST_STEP_OP ? m->ops[st->op].in2 : -1;
        if (st->x == a || st->residual == a || in2 == a) *birth = last - k < *birth ? last - k : *birth;
        if (st->out == a) *death = last - k;
    }
    if (*death == -2) return 0;
    if (*birth == 1 << 30) *birth = *death;
    return 1;
}

static void check_model(const char *name, int c, int hw) {
    st_model *m;
    CHECK(st_model_create(name, 10, c, hw, hw, &m) == ST_OK);
    if (!m) return;
    st_model_init_weights(m, 3, ST_INIT_PLAIN, 1.0, NULL);
    st_rng rng;
    st_rng_seed(&rng, 3, 0);
    const int batch = 4;
    CHECK(st_model_reserve(m, batch) == ST_OK);
    CHECK(st_schedule_build(m) == ST_OK);
    const st_model_schedule *sc = m->schedule;
    uint8_t *touched = calloc((size_t)m->n_acts, 1);
    touched[0] = touched[m->n_acts - 1] = 1;
    for (int k = 0; k < sc->n_steps; k++) {
        const st_model_step *st = &sc->steps[k];
        touched[st->x] = touched[st->out] = 1;
        if (st->residual >= 0) touched[st->residual] = 1;
        if (st->kind == ST_STEP_OP && m->ops[st->op].in2 >= 0) touched[m->ops[st->op].in2] = 1;
    }
    int64_t naive = 0, intermediates = 0;
    for (int a = 0; a < m->n_acts; a++) {
        naive += 2 * (int64_t)batch * st_activation_size(&m->acts[a]) * (int64_t)sizeof(float);
        if (!touched[a]) {
            intermediates++;
            CHECK(m->acts[a].value == NULL && m->acts[a].grad == NULL);
            continue;
        }
        CHECK(m->acts[a].value != NULL && m->acts[a].grad != NULL);
        for (int b = 0; b < a; b++) {
            if (!touched[b]) continue;
            CHECK(m->acts[a].value != m->acts[b].value);
            CHECK(m->acts[a].value != m->acts[b].grad && m->acts[b].value != m->acts[a].grad);
            if (m->acts[a].grad != m->acts[b].grad) continue;
            int ba, da, bb, db;
            CHECK(a != 0 && b != 0); /* the images' gradient is nobody else's */
            CHECK(life(m, sc, a, &ba, &da) && life(m, sc, b, &bb, &db));
            CHECK(da < bb || db < ba); /* lives do not overlap */
        }
    }
    CHECK(st_model_act_memory_bytes(m) <= naive);
    if (intermediates > 0) CHECK(st_model_act_memory_bytes(m) < naive * 3 / 4);
    if (strncmp(name, "cifar_resnet", 12) == 0) CHECK(intermediates > 0); /* BN outputs fused into ReLUs */
    printf("%s: %d activations, %lld fused intermediates without a buffer, %lld of %lld bytes (%.0f%%)\n", name,
           m->n_acts, (long long)intermediates, (long long)st_model_act_memory_bytes(m), (long long)naive,
           100.0 * (double)st_model_act_memory_bytes(m) / (double)naive);
    /* a step on the planned buffers */
    float *images = malloc(sizeof(float) * (size_t)batch * (size_t)c * (size_t)hw * (size_t)hw);
    for (int i = 0; i < batch * c * hw * hw; i++) images[i] = (float)st_rng_normal(&rng);
    int32_t labels[4] = {0, 1, 2, 3};
    const float *logits;
    double loss = 0;
    int correct = 0;
    CHECK(st_model_forward(m, images, batch, &logits) == ST_OK);
    CHECK(st_model_loss_backward(m, labels, batch, &loss, &correct) == ST_OK && isfinite(loss));
    for (int i = 0; i < m->n_params; i++)
        if (!m->params[i].is_buffer)
            for (int64_t j = 0; j < st_param_stored(&m->params[i]); j++) CHECK(isfinite(m->params[i].grad[j]));
    free(images);
    free(touched);
    st_model_free(m);
}

int main(void) {
    check_model("cifar_resnet_20", 3, 32);
    check_model("vgg11", 3, 32);
    check_model("lenet5", 1, 28);
    check_model("lenet300-100", 1, 28);
    TEST_MAIN_END();
}
