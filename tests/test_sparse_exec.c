/* Sparse execution (packed weights, direct sparse kernels, CHWN activations)
 * against the dense-masked execution of the foundation: the same model,
 * seed, masks and batches give the same loss curve and the same weights to
 * float tolerance, for every model family (residual, VGG, LeNet, MLP), with
 * SGD-Nesterov and Adam, including a ragged last batch and evaluation mode.
 * Also checks that packed storage holds only the kept weights. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/rng.h"
#include "exec/executor.h"
#include "exec/policy.h"
#include "models/init.h"
#include "models/model.h"
#include "optim/optimizer.h"
#include "sparse/distributions.h"
#include "sparse/masks.h"
#include "testing.h"
#include "testing_model.h"

static st_model *build(const char *name, int c, int h, int w, double density) {
    return st_test_erk_model(name, c, h, w, density, 7);
}

static void random_batch(st_rng *rng, int batch, int size, float *x, int32_t *y) {
    for (int i = 0; i < batch * size; i++) x[i] = (float)st_rng_normal(rng);
    for (int i = 0; i < batch; i++) y[i] = (int32_t)st_rng_below(rng, 10);
}

static double rel(double a, double b) { return fabs(a - b) / fmax(1e-6, fabs(b)); }

/* Largest relative L2 difference ||g_sparse - g_dense|| / ||g_dense|| of any
 * parameter's gradient. (A ReLU input within rounding of 0 can flip its mask
 * between two float orders and change one element of a gradient entirely;
 * a norm measures the agreement of the whole tensor.) */
static double gradient_difference(const st_model *dense, const st_model *sparse) {
    double worst = 0.0;
    for (int i = 0; i < dense->n_params; i++) {
        const st_param *pd = &dense->params[i], *ps = &sparse->params[i];
        if (!pd->grad) continue;
        float *g = new_floats((size_t)pd->numel);
        if (ps->sparse) st_sparse_weight_scatter(ps->sparse, ps->grad, g);
        else memcpy(g, ps->grad, sizeof(float) * (size_t)pd->numel);
        double norm = 1e-30, err = 0.0;
        for (int64_t k = 0; k < pd->numel; k++) {
            norm += (double)pd->grad[k] * pd->grad[k];
            err += ((double)g[k] - pd->grad[k]) * ((double)g[k] - pd->grad[k]);
        }
        worst = fmax(worst, sqrt(err / norm));
        free(g);
    }
    return worst;
}

/* Largest weight difference of any parameter, relative to its largest entry. */
static double weight_difference(const st_model *dense, const st_model *sparse) {
    double worst = 0.0;
    for (int i = 0; i < sparse->n_params; i++) {
        const st_param *ps = &sparse->params[i], *pd = &dense->params[i];
        float *dv = new_floats((size_t)pd->numel);
        if (ps->sparse) st_sparse_weight_scatter(ps->sparse, ps->value, dv);
        else memcpy(dv, ps->value, sizeof(float) * (size_t)pd->numel);
        double scale = 1e-3, err = 0.0;
        for (int64_t k = 0; k < pd->numel; k++) scale = fmax(scale, fabs(pd->value[k]));
        for (int64_t k = 0; k < pd->numel; k++) err = fmax(err, fabs(dv[k] - pd->value[k]));
        worst = fmax(worst, err / scale);
        free(dv);
    }
    return worst;
}

/* Evaluation-mode (running statistics) logits of a fresh batch of 9. */
static double eval_difference(st_rng *rng, st_model *dense, st_model *sparse, int size, float *x) {
    for (int i = 0; i < 9 * size; i++) x[i] = (float)st_rng_normal(rng);
    dense->training = sparse->training = 0;
    const float *ld, *ls;
    double worst = 0.0;
    CHECK_OK(st_model_forward(dense, x, 9, &ld));
    CHECK_OK(st_model_forward(sparse, x, 9, &ls));
    for (int k = 0; k < 9 * 10; k++) worst = fmax(worst, fabs(ls[k] - ld[k]) / fmax(1.0, fabs(ld[k])));
    dense->training = sparse->training = 1;
    return worst;
}

/* d loss / d images with running statistics, relative L2 difference. */
static double input_gradient_difference(st_rng *rng, st_model *dense, st_model *sparse, int size, float *x,
                                        int32_t *y) {
    const int b = 11;
    random_batch(rng, b, size, x, y);
    dense->training = sparse->training = 0;
    dense->want_input_grad = sparse->want_input_grad = 1;
    const float *ld, *ls;
    double lossd, losss, num = 0.0, den = 1e-30;
    int cd, cs;
    CHECK_OK(st_model_forward(dense, x, b, &ld));
    CHECK_OK(st_model_forward(sparse, x, b, &ls));
    CHECK_OK(st_model_loss_backward(dense, y, b, &lossd, &cd));
    CHECK_OK(st_model_loss_backward(sparse, y, b, &losss, &cs));
    for (int k = 0; k < b * size; k++) {
        const double g = dense->acts[0].grad[k], h = sparse->acts[0].grad[k];
        num += (g - h) * (g - h);
        den += g * g;
    }
    dense->training = sparse->training = 1;
    dense->want_input_grad = sparse->want_input_grad = 0;
    return sqrt(num / den);
}

/* Networks with batch norm at initialisation on random data amplify float
 * rounding differences from step to step (see docs/TESTING.md), so the first
 * step's gradients are compared tightly and the short loss curve / weights
 * at a small learning rate. */
/* policy: ST_EXEC_SPARSE (direct kernels on every layer) or ST_EXEC_MIXED
 * (each layer's kernel by the per-layer rule at batches[0]; the model must
 * then run some layers on each kind). */
static void compare_model_batches(const char *name, int c, int h, int w, double density, st_optimizer_kind kind,
                                  const int batches[4], st_exec_policy policy) {
    const double lr = kind == ST_OPTIMIZER_SGD ? 0.01 : 1e-3;
    st_model *dense = build(name, c, h, w, density), *sparse = build(name, c, h, w, density);
    CHECK_OK(st_model_apply_execution(sparse, policy, batches[0]));
    CHECK(strcmp(st_model_executor_name(sparse), "sparse") == 0);
    int layers = 0;
    for (int i = 0; i < sparse->n_ops; i++) layers += sparse->ops[i].kind == ST_OP_CONV || sparse->ops[i].kind == ST_OP_LINEAR;
    const int gemm = st_model_dense_layers(sparse, batches[0]);
    if (policy == ST_EXEC_MIXED) {
        printf("%-16s mixed at batch %d: %d of %d layers run dense GEMMs\n", name, batches[0], gemm, layers);
        CHECK(gemm > 0 && gemm < layers);
    } else {
        CHECK(gemm == 0);
    }
    /* packed storage: values and gradients hold only the kept weights */
    for (int i = 0; i < sparse->n_params; i++) {
        const st_param *p = &sparse->params[i];
        if (!p->sparse) continue;
        CHECK(p->sparse->packed && p->sparse->mask == NULL);
        CHECK(st_param_stored(p) == dense->params[i].sparse->kept);
    }
    st_optimizer od, os;
    CHECK_OK(st_optimizer_create(&od, dense, kind, 0.9, kind == ST_OPTIMIZER_SGD, 5e-4));
    CHECK_OK(st_optimizer_create(&os, sparse, kind, 0.9, kind == ST_OPTIMIZER_SGD, 5e-4));
    const int size = c * h * w;
    int most = 11;
    for (int i = 0; i < 4; i++) most = batches[i] > most ? batches[i] : most;
    float *x = new_floats((size_t)most * size);
    int32_t *y = new_bytes(sizeof(int32_t) * (size_t)most);
    st_rng rng;
    st_rng_seed(&rng, 3, 0);
    double worst = 0.0, grad_err = 0.0, werr = 0.0, eval_err = 0.0, loss_err = 0.0, input_err = 0.0;
    for (int step = 0; step < 4; step++) {
        const int b = batches[step];
        random_batch(&rng, b, size, x, y);
        const float *ld, *ls;
        double lossd, losss;
        int cd, cs;
        CHECK_OK(st_model_forward(dense, x, b, &ld));
        CHECK_OK(st_model_forward(sparse, x, b, &ls));
        if (step == 0)
            for (int k = 0; k < b * 10; k++) worst = fmax(worst, fabs(ls[k] - ld[k]) / fmax(1.0, fabs(ld[k])));
        CHECK_OK(st_model_loss_backward(dense, y, b, &lossd, &cd));
        CHECK_OK(st_model_loss_backward(sparse, y, b, &losss, &cs));
        if (step == 0) grad_err = gradient_difference(dense, sparse);
        loss_err = fmax(loss_err, rel(losss, lossd));
        st_optimizer_step(&od, dense, lr);
        st_optimizer_step(&os, sparse, lr);
        if (step == 0) {
            werr = weight_difference(dense, sparse);
            eval_err = eval_difference(&rng, dense, sparse, size, x);
            /* the input gradient in evaluation mode (the adversarial attacks of eval) */
            input_err = input_gradient_difference(&rng, dense, sparse, size, x, y);
        }
    }
    const char *how = policy == ST_EXEC_MIXED ? " mixed" : "";
    printf("%-16s %s%s batch %d: input gradient (eval mode) %.2g\n", name, kind == ST_OPTIMIZER_SGD ? "sgd " : "adam",
           how, batches[0], input_err);
    printf("%-16s %s%s batch %d: first logits %.2g, gradients %.2g, weights %.2g, eval logits %.2g; 4-step losses %.2g\n",
           name, kind == ST_OPTIMIZER_SGD ? "sgd " : "adam", how, batches[0], worst, grad_err, werr, eval_err, loss_err);
    /* Both executions are float32 with different summation orders, so they
     * differ by accumulated rounding only (measured: <= 3e-6 everywhere but
     * Adam's weights and the ResNet loss curve); a wrong kernel, index or
     * layout gives O(1e-2 .. 1) differences. Each limit leaves ~10-30x over
     * the measured worst case of the cases below:
     * - logits, input gradient, eval logits: a few hundred float32 roundings
     *   per output (~1e-6 measured); */
    CHECK(worst < 1e-5);
    CHECK(input_err < 1e-5);
    CHECK(eval_err < 1e-5);
    /* - first gradients (relative L2 per tensor; ~2e-6 measured). A ReLU
     *   input within rounding of 0 could flip its mask between the two float
     *   orders and move the earlier gradients by ~1/sqrt(layer size) (~3e-3);
     *   none does for these seeds, so such a flip would fail here and need
     *   a look (change the seed only after confirming it is a flip); */
    CHECK(grad_err < 1e-4);
    /* - weights after one step: SGD moves each weight by lr * gradient, so
     *   ~lr * 1e-6 (~1e-6 measured); Adam normalises each step, so weights
     *   whose gradient is near 0 move by ~lr in either order (6e-5 measured
     *   relative to the layer's largest weight); */
    CHECK(werr < (kind == ST_OPTIMIZER_SGD ? 2e-5 : 1e-3));
    /* - losses of 4 steps: batch norm at initialisation amplifies rounding
     *   from step to step (docs/TESTING.md; 4.6e-4 measured for
     *   cifar_resnet_20 at 28x28, 6e-5 for vgg11); without batch norm (the
     *   LeNets) ~2e-8. */
    CHECK(loss_err < (strncmp(name, "lenet", 5) != 0 ? 2e-3 : 1e-6));
    st_optimizer_free(&od), st_optimizer_free(&os);
    st_model_free(dense), st_model_free(sparse);
    free(x), free(y);
}

/* Sparse execution gives bit-identical results for any thread count: every
 * output element and every weight-gradient sum is computed by one thread in
 * a fixed order, and batch norm runs channel by channel. */
static void test_thread_invariance(st_exec_policy policy, double density) {
    float *weights[2] = {NULL, NULL};
    int64_t total = 0;
    for (int run = 0; run < 2; run++) {
        omp_set_num_threads(run + 1);
        st_model *m = build("cifar_resnet_20", 1, 28, 28, density);
        CHECK_OK(st_model_apply_execution(m, policy, 24));
        CHECK(policy != ST_EXEC_MIXED || st_model_dense_layers(m, 24) > 0);
        st_optimizer o;
        CHECK_OK(st_optimizer_create(&o, m, ST_OPTIMIZER_SGD, 0.9, 1, 5e-4));
        const int size = 28 * 28, b = 24;
        float *x = new_floats((size_t)b * size);
        int32_t *y = new_bytes(sizeof(int32_t) * b);
        st_rng rng;
        st_rng_seed(&rng, 9, 0);
        for (int step = 0; step < 3; step++) {
            random_batch(&rng, b, size, x, y);
            const float *logits;
            double loss;
            int correct;
            CHECK_OK(st_model_forward(m, x, b, &logits));
            CHECK_OK(st_model_loss_backward(m, y, b, &loss, &correct));
            st_optimizer_step(&o, m, 0.05);
        }
        total = 0;
        for (int i = 0; i < m->n_params; i++) total += st_param_stored(&m->params[i]);
        weights[run] = new_floats((size_t)total);
        for (int i = 0, at = 0; i < m->n_params; i++) {
            memcpy(weights[run] + at, m->params[i].value, sizeof(float) * (size_t)st_param_stored(&m->params[i]));
            at += (int)st_param_stored(&m->params[i]);
        }
        st_optimizer_free(&o);
        st_model_free(m);
        free(x), free(y);
    }
    omp_set_num_threads(2);
    const int same = memcmp(weights[0], weights[1], sizeof(float) * (size_t)total) == 0;
    printf("sparse execution%s, 1 vs 2 threads after 3 steps: %s\n", policy == ST_EXEC_MIXED ? " (mixed)" : "",
           same ? "bit-identical" : "DIFFERENT");
    CHECK(same);
    free(weights[0]), free(weights[1]);
}

/* In training, every batch norm fed by a convolution takes its statistics
 * from that convolution's forward pass (the sparse executor's
 * forward_op_stats), and the mean it saves is the mean of its input. */
static void test_bn_stats_handoff(void) {
    st_model *m = build("cifar_resnet_20", 1, 28, 28, 0.1);
    CHECK_OK(st_model_use_sparse_execution(m));
    const int size = 28 * 28, b = 16;
    float *x = new_floats((size_t)b * size);
    int32_t *y = new_bytes(sizeof(int32_t) * b);
    st_rng rng;
    st_rng_seed(&rng, 4, 0);
    random_batch(&rng, b, size, x, y);
    const float *logits;
    CHECK_OK(st_model_forward(m, x, b, &logits));
    const st_model_schedule *sc = m->schedule;
    int bn = 0, handed = 0;
    double worst = 0.0;
    for (int k = 0; k < sc->n_steps; k++) {
        const st_model_step *st = &sc->steps[k];
        if (st->kind != ST_STEP_BN_ACT) continue;
        bn++;
        handed += st->stats_ready;
        const st_activation *a = &m->acts[st->x];
        const int64_t plane = (int64_t)a->height * a->width * b; /* CHWN: channel planes */
        for (int c = 0; c < a->channels; c++) {
            double sum = 0.0;
            for (int64_t j = 0; j < plane; j++) sum += a->value[c * plane + j];
            worst = fmax(worst, fabs(m->ops[st->op].save_mean[c] - sum / (double)plane) /
                                    fmax(1e-3, fabs(sum / (double)plane)));
        }
    }
    printf("batch norms taking their statistics from the convolution: %d of %d; saved means %.2g from their input's\n",
           handed, bn, worst);
    CHECK(bn == 21 && handed == bn); /* 19 after 3x3 convolutions, 2 after the 1x1 shortcuts */
    CHECK(worst < 1e-5);
    /* evaluation mode computes no statistics and hands none */
    m->training = 0;
    CHECK_OK(st_model_forward(m, x, b, &logits));
    for (int k = 0; k < sc->n_steps; k++) CHECK(sc->steps[k].stats_ready == 0);
    st_model_free(m);
    free(x), free(y);
}

static void compare_model(const char *name, int c, int h, int w, double density, st_optimizer_kind kind) {
    static const int small[4] = {20, 20, 20, 7}; /* a ragged last batch */
    compare_model_batches(name, c, h, w, density, kind, small, ST_EXEC_SPARSE);
}

/* --execution auto picks each side by the model's FLOP-weighted density
 * against its width's crossover (models/execution.h); sparse and dense force
 * one. */
static void test_execution_policy(void) {
    st_exec_policy policy;
    CHECK_OK(st_exec_policy_parse("auto", &policy));
    CHECK(policy == ST_EXEC_AUTO);
    CHECK(st_exec_policy_parse("fast", &policy) == ST_ERR_ARGUMENT);
    const double densities[2] = {0.1, 0.6};
    for (int k = 0; k < 2; k++) {
        st_model *m = NULL;
        CHECK_OK(st_model_create("cifar_resnet_20", 10, 3, 32, 32, &m));
        if (!m) return;
        st_layer_shape *shapes;
        int *ids, n;
        CHECK_OK(st_model_prunable_layers(m, &shapes, &ids, &n));
        double *d = new_bytes(sizeof(double) * (size_t)n);
        for (int i = 0; i < n; i++) d[i] = densities[k];
        CHECK_OK(st_model_sample_masks(m, d, ST_MASK_EXACT, 3));
        const double fd = st_model_flop_density(m), w = st_model_mean_width(m), x = st_model_sparse_crossover(m);
        printf("cifar_resnet_20 uniform %.1f: FLOP density %.4f, mean width %.1f, crossover %.3f\n", densities[k], fd,
               w, x);
        CHECK(fabs(fd - densities[k]) < 1e-3); /* every layer keeps round(d n): within a weight per layer */
        const st_exec_rule *rule = st_exec_rule_current();
        printf("whole-model rule for this CPU: %s, %.2f * (36 / w)^%.2f\n", rule->cpu, rule->at_ref, rule->exponent);
        CHECK(fabs(x - rule->at_ref * pow(36.0 / w, rule->exponent)) < 1e-12);
        CHECK(strcmp(rule->cpu, "default") == 0 || strcmp(rule->cpu, "zen4") == 0);
        CHECK(st_model_wants_sparse_execution(m, ST_EXEC_AUTO, 128) == (k == 0)); /* 0.1 < crossover < 0.6 */
        CHECK(st_model_wants_sparse_execution(m, ST_EXEC_SPARSE, 128) == 1);
        CHECK(st_model_wants_sparse_execution(m, ST_EXEC_MIXED, 128) == 1);
        CHECK(st_model_wants_sparse_execution(m, ST_EXEC_DENSE, 128) == 0);
        CHECK_OK(st_model_apply_execution(m, ST_EXEC_AUTO, 128));
        CHECK(strcmp(st_model_executor_name(m), k == 0 ? "sparse" : "dense") == 0);
        free(d), free(shapes), free(ids);
        st_model_free(m);
    }
}

int main(void) {
    test_execution_policy();
    test_thread_invariance(ST_EXEC_SPARSE, 0.1);
    test_thread_invariance(ST_EXEC_MIXED, 0.3);
    test_bn_stats_handoff();
    compare_model("lenet300-100", 1, 28, 28, 0.1, ST_OPTIMIZER_SGD);
    compare_model("lenet5", 1, 28, 28, 0.2, ST_OPTIMIZER_ADAM);
    compare_model("cifar_resnet_20", 3, 32, 32, 0.1, ST_OPTIMIZER_SGD);
    compare_model("cifar_resnet_20", 1, 28, 28, 0.05, ST_OPTIMIZER_SGD);
    compare_model("vgg11", 3, 32, 32, 0.05, ST_OPTIMIZER_SGD);
    /* Batches of 128+ take the kernels' wide path (runs of 128 floats, see
     * src/kernels/sparse_conv_x86.c), with a remainder (130 = 128 + 2) and a
     * ragged last batch; small images keep it fast. */
    static const int wide[4] = {130, 128, 256, 7};
    compare_model_batches("cifar_resnet_8_4", 3, 12, 12, 0.2, ST_OPTIMIZER_SGD, wide, ST_EXEC_SPARSE);
    compare_model_batches("lenet5", 1, 28, 28, 0.2, ST_OPTIMIZER_ADAM, wide, ST_EXEC_SPARSE);
    /* sparse execution with some layers on dense GEMMs (the per-layer choice
     * of --execution mixed / auto): the same agreement with dense execution.
     * (cifar_resnet_20 at 0.25, 0.3 and 0.35 has one BN + ReLU output within
     * 1e-7 of 0 whose sign differs between the two float orders, confirmed by
     * comparing the activations' signs: that flips one ReLU mask element and
     * moves the earlier gradients by ~5e-3, as described above; 0.4 has none.) */
    static const int mixed[4] = {20, 20, 20, 7};
    compare_model_batches("cifar_resnet_20", 1, 28, 28, 0.4, ST_OPTIMIZER_SGD, mixed, ST_EXEC_MIXED);
    compare_model_batches("vgg11", 3, 32, 32, 0.3, ST_OPTIMIZER_SGD, mixed, ST_EXEC_MIXED);
    TEST_MAIN_END();
}
