/* Learning-rate schedules and optimiser set-up. The schedules' values are
 * hand-computed here; with `--schedule multistep|cosine BASE EPOCHS` it prints
 * the rate of every epoch (one per line) for tests/optimizer_parity_test.py,
 * which compares them with torch.optim.lr_scheduler's MultiStepLR and
 * CosineAnnealingLR. (The update rules themselves are compared with
 * torch.optim there too.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/model.h"
#include "optim/optimizer.h"
#include "testing.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

static void test_multistep(void) {
    /* x0.1 at epochs/2 and 3*epochs/4 (integer division), as MultiStepLR(milestones=[E//2, 3E//4]) */
    CHECK(st_lr_at_epoch(ST_LR_MULTISTEP, 0.1, 0, 160) == 0.1);
    CHECK(st_lr_at_epoch(ST_LR_MULTISTEP, 0.1, 79, 160) == 0.1);
    CHECK_NEAR(st_lr_at_epoch(ST_LR_MULTISTEP, 0.1, 80, 160), 0.01, 1e-17);
    CHECK_NEAR(st_lr_at_epoch(ST_LR_MULTISTEP, 0.1, 119, 160), 0.01, 1e-17);
    CHECK_NEAR(st_lr_at_epoch(ST_LR_MULTISTEP, 0.1, 120, 160), 0.001, 1e-18);
    CHECK_NEAR(st_lr_at_epoch(ST_LR_MULTISTEP, 0.1, 159, 160), 0.001, 1e-18);
    /* odd counts: 5 epochs -> drops at 2 and 3 */
    CHECK(st_lr_at_epoch(ST_LR_MULTISTEP, 1.0, 1, 5) == 1.0);
    CHECK_NEAR(st_lr_at_epoch(ST_LR_MULTISTEP, 1.0, 2, 5), 0.1, 1e-16);
    CHECK_NEAR(st_lr_at_epoch(ST_LR_MULTISTEP, 1.0, 3, 5), 0.01, 1e-17);
}

static void test_cosine(void) {
    /* CosineAnnealingLR(T_max = epochs, eta_min = 0): base * (1 + cos(pi t / T)) / 2,
     * never 0 during training (epoch T is after the last one). 1e-15: double rounding. */
    const double want4[4] = {1.0, 0.85355339059327373, 0.5, 0.14644660940672624};
    for (int t = 0; t < 4; t++) CHECK_NEAR(st_lr_at_epoch(ST_LR_COSINE, 1.0, t, 4), want4[t], 1e-15);
    CHECK_NEAR(st_lr_at_epoch(ST_LR_COSINE, 0.1, 80, 160), 0.05, 1e-15);
    CHECK(st_lr_at_epoch(ST_LR_COSINE, 0.1, 159, 160) > 0.0);
    CHECK_NEAR(st_lr_at_epoch(ST_LR_COSINE, 0.1, 159, 160), 0.1 * (1 + cos(M_PI * 159 / 160)) / 2, 1e-17);
}

/* The reference's ImageNet schedule: linear warm-up lr * (e + 1) / (w + 1)
 * for e < w (its adjust_learning_rate, once per epoch), then x0.1 at 30, 60
 * and 80 (lr * 0.1 ** p); the same expressions evaluated as Python does. */
static void test_warmup_step(void) {
    for (int e = 0; e < 5; e++) CHECK(st_lr_at_epoch_warmup(ST_LR_STEP, 0.4, e, 100, 5) == 0.4 * (e + 1) / 6.0);
    CHECK(st_lr_at_epoch_warmup(ST_LR_STEP, 0.4, 5, 100, 5) == 0.4);
    CHECK(st_lr_at_epoch_warmup(ST_LR_STEP, 0.4, 29, 100, 5) == 0.4);
    CHECK(st_lr_at_epoch_warmup(ST_LR_STEP, 0.4, 30, 100, 5) == 0.4 * pow(0.1, 1));
    CHECK(st_lr_at_epoch_warmup(ST_LR_STEP, 0.4, 60, 100, 5) == 0.4 * pow(0.1, 2));
    CHECK(st_lr_at_epoch_warmup(ST_LR_STEP, 0.4, 80, 100, 5) == 0.4 * pow(0.1, 3));
    CHECK(st_lr_at_epoch_warmup(ST_LR_STEP, 0.4, 99, 100, 5) == 0.4 * pow(0.1, 3));
    /* no warm-up = the schedule itself; warm-up before cosine */
    for (int e = 0; e < 10; e++) {
        CHECK(st_lr_at_epoch_warmup(ST_LR_MULTISTEP, 0.1, e, 10, 0) == st_lr_at_epoch(ST_LR_MULTISTEP, 0.1, e, 10));
        CHECK(st_lr_at_epoch_warmup(ST_LR_COSINE, 0.1, e, 10, 2) ==
              (e < 2 ? 0.1 * (e + 1) / 3.0 : st_lr_at_epoch(ST_LR_COSINE, 0.1, e, 10)));
    }
}

/* Per-parameter weight decay (--bn-weight-decay off): an excluded parameter
 * is updated by its gradient only, as a PyTorch parameter group with
 * weight_decay 0; the others decay as before. */
static void test_decay_groups(void) {
    st_model *m;
    CHECK_OK(st_model_create("cifar_resnet_8", 10, 3, 8, 8, &m));
    if (!m) return;
    for (int i = 0; i < m->n_params; i++)
        for (int64_t k = 0; k < m->params[i].numel; k++) m->params[i].value[k] = 1.0f + 0.01f * (float)(k % 7);
    st_model_zero_grad(m);
    st_optimizer o;
    CHECK_OK(st_optimizer_create(&o, m, ST_OPTIMIZER_SGD, 0.9, 0, 0.5));
    int excluded = 0;
    CHECK_OK(st_optimizer_exclude_bn_from_decay(&o, m, &excluded));
    /* the reference's rule is by name: 'bn' in the name (bn, blocks.i.bn1/bn2; not the shortcut's BN) */
    const int bn = st_model_find_param(m, "blocks.1.bn2.weight"), sc = st_model_find_param(m, "blocks.1.shortcut.1.weight");
    const int conv = st_model_find_param(m, "blocks.0.conv1.weight"), fcb = st_model_find_param(m, "fc.bias");
    CHECK(bn >= 0 && sc >= 0 && conv >= 0 && fcb >= 0);
    CHECK(excluded == 2 * 7 && o.no_decay[bn] && !o.no_decay[sc] && !o.no_decay[conv] && !o.no_decay[fcb]);
    float before_bn = m->params[bn].value[3], before_conv = m->params[conv].value[3];
    float before_sc = m->params[sc].value[3];
    st_optimizer_step(&o, m, 0.1);
    CHECK(m->params[bn].value[3] == before_bn);                                  /* gradient 0, no decay */
    CHECK(m->params[conv].value[3] == before_conv + (-0.1f) * (0.5f * before_conv)); /* decayed */
    CHECK(m->params[sc].value[3] == before_sc + (-0.1f) * (0.5f * before_sc));
    CHECK(st_optimizer_exclude_from_decay(&o, m->n_params) == ST_ERR_ARGUMENT);
    st_optimizer_free(&o);
    st_model_free(m);
}

static void test_create(void) {
    st_model *m;
    CHECK_OK(st_model_create("lenet300-100", 10, 1, 28, 28, &m));
    st_optimizer o;
    /* Nesterov needs momentum (as torch.optim.SGD) */
    CHECK(st_optimizer_create(&o, m, ST_OPTIMIZER_SGD, 0.0, 1, 5e-4) == ST_ERR_ARGUMENT);
    st_optimizer_free(&o);
    /* SGD without momentum keeps no state; with momentum one buffer; Adam two */
    CHECK_OK(st_optimizer_create(&o, m, ST_OPTIMIZER_SGD, 0.0, 0, 5e-4));
    for (int i = 0; i < m->n_params; i++) CHECK(!o.state1[i] && !o.state2[i]);
    st_optimizer_free(&o);
    CHECK_OK(st_optimizer_create(&o, m, ST_OPTIMIZER_SGD, 0.9, 1, 5e-4));
    for (int i = 0; i < m->n_params; i++) CHECK(o.state1[i] && !o.state2[i]);
    CHECK(strcmp(st_optimizer_state_name(&o, 0), "momentum_buffer") == 0);
    st_optimizer_free(&o);
    CHECK_OK(st_optimizer_create(&o, m, ST_OPTIMIZER_ADAM, 0.9, 0, 5e-4));
    for (int i = 0; i < m->n_params; i++) CHECK(o.state1[i] && o.state2[i]);
    CHECK(strcmp(st_optimizer_state_name(&o, 0), "exp_avg") == 0 && strcmp(st_optimizer_state_name(&o, 1), "exp_avg_sq") == 0);
    CHECK(o.beta1 == 0.9 && o.beta2 == 0.999 && o.eps == 1e-8); /* torch.optim.Adam's defaults */
    st_optimizer_free(&o);
    st_model_free(m);
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "--schedule") == 0) {
        st_lr_schedule kind = strcmp(argv[2], "cosine") == 0 ? ST_LR_COSINE : ST_LR_MULTISTEP;
        const double base = atof(argv[3]);
        const int epochs = atoi(argv[4]);
        for (int e = 0; e < epochs; e++) printf("%.17g\n", st_lr_at_epoch(kind, base, e, epochs));
        return 0;
    }
    test_multistep();
    test_cosine();
    test_warmup_step();
    test_decay_groups();
    test_create();
    TEST_MAIN_END();
}
