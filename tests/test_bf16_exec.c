/* The bf16 copies written inside the passes that produce their values
 * (kernels/bn_act.h's _bf16 variants, exec/bf16_exec.h):
 *  1. every fused batch-norm / add / ReLU kernel with a bf16 output, on each
 *     ISA's row kernels (generic, AVX2, AVX-512: the rounding is the scalar
 *     reference below AVX-512 and vcvtne2ps2bf16 with AVX512_BF16): its
 *     float results are the same bits as without the bf16 output, and the
 *     bf16 output is the same bits as rounding those float results
 *     afterwards (st_bf16_from_floats_reference); the backward also with dx
 *     written only in bf16; channel-major and NCHW shapes, planes shorter
 *     and longer than the rounding piece, 1 and 2 threads.
 *  2. bf16 sparse execution of whole models (a ResNet with 1x1 shortcut
 *     convolutions, whose block inputs two convolutions read; LeNet-5, with
 *     a convolution after pooling and linear layers after an add/ReLU step):
 *     with the executor's copy hooks (value_bf16, grad_bf16) the losses,
 *     weights, evaluation logits and an update step's dense gradients are
 *     the same bits as with the same executor without them (every conv
 *     rounding its own input and output gradient, as before), and the hooks
 *     were used. Needs AVX512_BF16 (else the part is reported skipped). */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "core/rng.h"
#include "exec/bf16_exec.h"
#include "exec/executor.h"
#include "kernels/bf16.h"
#include "kernels/bn_act.h"
#include "kernels/isa.h"
#include "models/model.h"
#include "optim/optimizer.h"
#include "testing.h"
#include "testing_model.h"

static int same_floats(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

/* out16 is y rounded afterwards, bit for bit */
static int rounds_of(const st_bf16 *out16, const float *y, size_t n) {
    st_bf16 *ref = new_bytes(n * sizeof(st_bf16));
    st_bf16_from_floats_reference(y, n, ref);
    const int same = memcmp(out16, ref, n * sizeof(st_bf16)) == 0;
    free(ref);
    return same;
}

static void report_same(const char *what, int same) {
    printf("  %-52s %s\n", what, same ? "ok" : "FAIL");
    CHECK(same);
}

/* ------------------------------------------------------------ 1. kernels */

static void test_bn_act_bf16(st_rng *rng, const char *isa, int N, int C, int S, int with_res, int relu) {
    printf("[%s] bn_act bf16 outputs n=%d c=%d spatial=%d%s%s, %d threads\n", isa, N, C, S,
           with_res ? " +residual" : "", relu ? " relu" : "", omp_get_max_threads());
    const size_t n = (size_t)N * C * S;
    const st_bn_act_shape s = {N, C, S, 1};
    float *x = random_floats(rng, n), *res = random_floats(rng, n), *dy = random_floats(rng, n);
    float *gamma = random_floats(rng, (size_t)C), *beta = random_floats(rng, (size_t)C);
    float *mean = new_floats((size_t)C), *inv = new_floats((size_t)C), *rm = new_floats((size_t)C);
    float *rv = new_floats((size_t)C);
    for (int c = 0; c < C; c++) rm[c] = 0.0f, rv[c] = 1.0f;
    double *scratch = new_bytes(sizeof(double) * st_bn_act_scratch_doubles(&s, omp_get_max_threads()));
    float *y = new_floats(n), *y2 = new_floats(n);
    st_bf16 *y16 = new_bytes(n * sizeof(st_bf16));
    const float *r = with_res ? res : NULL;

    st_bn_act_forward_train(&s, x, gamma, beta, r, relu, 0.1f, 1e-5f, y, mean, inv, rm, rv, scratch);
    st_bn_act_forward_train_bf16(&s, x, gamma, beta, r, relu, 0.1f, 1e-5f, y2, y16, mean, inv, rm, rv, scratch);
    report_same("forward train: float y unchanged, y16 = round(y)", same_floats(y, y2, n) && rounds_of(y16, y, n));

    if (N == 1) { /* channel-major: with the statistics a producer would hand over */
        double *stats = new_bytes(sizeof(double) * 3 * (size_t)C);
        for (int c = 0; c < C; c++) {
            const float *xc = x + (size_t)c * S;
            double a = 0.0, b = 0.0;
            for (int i = 0; i < S; i++) {
                const double v = (double)xc[i] - xc[0];
                a += v, b += v * v;
            }
            stats[3 * c] = xc[0], stats[3 * c + 1] = a, stats[3 * c + 2] = b;
        }
        st_bn_act_forward_train_stats(&s, stats, x, gamma, beta, r, relu, 0.1f, 1e-5f, y, mean, inv, rm, rv);
        st_bn_act_forward_train_stats_bf16(&s, stats, x, gamma, beta, r, relu, 0.1f, 1e-5f, y2, y16, mean, inv, rm, rv);
        report_same("forward train, statistics given: same", same_floats(y, y2, n) && rounds_of(y16, y, n));
        free(stats);
    }

    st_bn_act_forward_eval(&s, x, gamma, beta, rm, rv, 1e-5f, r, relu, y, scratch);
    st_bn_act_forward_eval_bf16(&s, x, gamma, beta, rm, rv, 1e-5f, r, relu, y2, y16, scratch);
    report_same("forward eval: same", same_floats(y, y2, n) && rounds_of(y16, y, n));

    /* backward: dx in float only, float + bf16, bf16 only; the other outputs unchanged */
    st_bn_act_forward_train(&s, x, gamma, beta, r, relu, 0.1f, 1e-5f, y, mean, inv, NULL, NULL, scratch);
    float *dx = new_floats(n), *dx2 = new_floats(n), *dres = new_floats(n), *dres2 = new_floats(n);
    float *dg = new_floats((size_t)C), *db = new_floats((size_t)C), *dg2 = new_floats((size_t)C);
    float *db2 = new_floats((size_t)C);
    for (int c = 0; c < C; c++) dg[c] = db[c] = dg2[c] = db2[c] = 0.0f;
    st_bn_act_backward(&s, x, y, relu, dy, gamma, mean, inv, dx, 0, with_res ? dres : NULL, 0, dg, db, scratch);
    st_bn_act_backward_bf16(&s, x, y, relu, dy, gamma, mean, inv, dx2, y16, 0, with_res ? dres2 : NULL, 0, dg2, db2,
                            scratch);
    int same = same_floats(dx, dx2, n) && rounds_of(y16, dx, n) && (!with_res || same_floats(dres, dres2, n));
    report_same("backward, dx in float and bf16: same", same);
    memset(y16, 0xFF, n * sizeof(st_bf16));
    for (int c = 0; c < C; c++) dg2[c] = db2[c] = 0.0f;
    st_bn_act_backward(&s, x, y, relu, dy, gamma, mean, inv, dx, 0, with_res ? dres : NULL, 0, dg, db, scratch);
    st_bn_act_backward_bf16(&s, x, y, relu, dy, gamma, mean, inv, NULL, y16, 0, with_res ? dres2 : NULL, 0, dg2, db2,
                            scratch);
    same = rounds_of(y16, dx, n) && (!with_res || same_floats(dres, dres2, n));
    report_same("backward, dx in bf16 only: round(dx), dresidual same", same);
    /* the parameter gradients of the bf16-only call equal one float call's */
    float *dg1 = new_floats((size_t)C), *db1 = new_floats((size_t)C);
    for (int c = 0; c < C; c++) dg1[c] = db1[c] = 0.0f;
    st_bn_act_backward(&s, x, y, relu, dy, gamma, mean, inv, dx, 0, NULL, 0, dg1, db1, scratch);
    report_same("backward, dx in bf16 only: dgamma, dbeta same", same_floats(dg1, dg2, (size_t)C) &&
                                                                   same_floats(db1, db2, (size_t)C));
    free(x), free(res), free(dy), free(gamma), free(beta), free(mean), free(inv), free(rm), free(rv), free(scratch);
    free(y), free(y2), free(y16), free(dx), free(dx2), free(dres), free(dres2), free(dg), free(db), free(dg2);
    free(db2), free(dg1), free(db1);
}

static void test_add_act_bf16(st_rng *rng, const char *isa, int64_t n, int with_b, int relu) {
    printf("[%s] add_act bf16 output n=%lld%s%s, %d threads\n", isa, (long long)n, with_b ? " a+b" : "",
           relu ? " relu" : "", omp_get_max_threads());
    float *a = random_floats(rng, (size_t)n), *b = random_floats(rng, (size_t)n);
    float *y = new_floats((size_t)n), *y2 = new_floats((size_t)n);
    st_bf16 *y16 = new_bytes((size_t)n * sizeof(st_bf16));
    st_add_act_forward(n, a, with_b ? b : NULL, relu, y);
    st_add_act_forward_bf16(n, a, with_b ? b : NULL, relu, y2, y16);
    report_same("float y unchanged, y16 = round(y)", same_floats(y, y2, (size_t)n) && rounds_of(y16, y, (size_t)n));
    free(a), free(b), free(y), free(y2), free(y16);
}

static void test_kernels(void) {
    st_rng rng;
    st_rng_seed(&rng, 31, 0);
    const char *isas[] = {"generic", "avx2", "avx512"};
    for (int k = 0; k < 3; k++) {
        CHECK_OK(st_isa_force(isas[k]));
        for (int threads = 1; threads <= 2; threads++) {
            omp_set_num_threads(threads);
            test_bn_act_bf16(&rng, isas[k], 1, 16, 5000, 1, 1);  /* channel-major, planes of 2 pieces and a tail */
            test_bn_act_bf16(&rng, isas[k], 1, 3, 700, 0, 0);    /* shorter than a piece, no ReLU */
            test_bn_act_bf16(&rng, isas[k], 1, 1, 3000, 0, 1);   /* one channel: the NCHW path */
            test_bn_act_bf16(&rng, isas[k], 4, 5, 2100, 1, 1);   /* NCHW, several images */
            test_add_act_bf16(&rng, isas[k], 70001, 1, 1); /* large enough to run on all threads */
            test_add_act_bf16(&rng, isas[k], 1000, 0, 1);
            test_add_act_bf16(&rng, isas[k], 5003, 1, 0);
        }
    }
    CHECK_OK(st_isa_force("auto"));
}

/* ------------------------------------------------------------ 2. models */

/* The sparse executor with its copy hooks counted, or removed. */
static int hook_values, hook_grads;
static st_bf16 *counted_value_bf16(st_model *m, int a) {
    st_bf16 *p = st_sparse_executor.value_bf16(m, a);
    hook_values += p != NULL;
    return p;
}
static st_bf16 *counted_grad_bf16(st_model *m, int a) {
    st_bf16 *p = st_sparse_executor.grad_bf16(m, a);
    hook_grads += p != NULL;
    return p;
}

typedef struct model_run {
    float *weights, *eval_logits, *dense_grad;
    double losses[4];
    int64_t n_weights, n_dense, n_logits;
} model_run;

/* Four SGD steps of bf16 sparse execution with `exec` (the last one with dense
 * gradients asked for, as a gradient-growth update step does; the third on a
 * ragged batch), then an evaluation forward pass. */
static void run_model(const char *name, int c, int hw, const st_executor *exec, model_run *out) {
    st_model *m = st_test_erk_model(name, c, hw, hw, 0.2, 7);
    CHECK_OK(st_model_set_executor(m, exec));
    st_model_enable_bf16(m);
    CHECK(m->bf16);
    st_optimizer o;
    CHECK_OK(st_optimizer_create(&o, m, ST_OPTIMIZER_SGD, 0.9, 1, 5e-4));
    const int size = c * hw * hw, batch = 20;
    float *x = new_floats((size_t)batch * size);
    int32_t *y = new_bytes(sizeof(int32_t) * batch);
    float **dense = new_bytes(sizeof(float *) * (size_t)(m->n_params + 1));
    out->n_dense = 0;
    for (int i = 0; i < m->n_params; i++) {
        dense[i] = NULL;
        if (!m->params[i].sparse) continue;
        dense[i] = new_floats((size_t)m->params[i].numel);
        memset(dense[i], 0, sizeof(float) * (size_t)m->params[i].numel);
        out->n_dense += m->params[i].numel;
    }
    st_rng rng;
    st_rng_seed(&rng, 9, 0);
    for (int step = 0; step < 4; step++) {
        const int b = step == 2 ? 13 : batch;
        for (int i = 0; i < b * size; i++) x[i] = (float)st_rng_normal(&rng);
        for (int i = 0; i < b; i++) y[i] = (int32_t)st_rng_below(&rng, 10);
        m->dense_grad = step == 3 ? dense : NULL;
        const float *logits;
        int correct;
        CHECK_OK(st_model_forward(m, x, b, &logits));
        CHECK_OK(st_model_loss_backward(m, y, b, &out->losses[step], &correct));
        m->dense_grad = NULL;
        st_optimizer_step(&o, m, 0.05);
    }
    m->training = 0;
    const float *logits;
    CHECK_OK(st_model_forward(m, x, batch, &logits));
    out->n_logits = (int64_t)batch * 10;
    out->eval_logits = new_floats((size_t)out->n_logits);
    memcpy(out->eval_logits, logits, sizeof(float) * (size_t)out->n_logits);
    out->n_weights = 0;
    for (int i = 0; i < m->n_params; i++) out->n_weights += st_param_stored(&m->params[i]);
    out->weights = new_floats((size_t)out->n_weights);
    out->dense_grad = new_floats((size_t)(out->n_dense + 1));
    for (int i = 0, at = 0, dat = 0; i < m->n_params; i++) {
        memcpy(out->weights + at, m->params[i].value, sizeof(float) * (size_t)st_param_stored(&m->params[i]));
        at += (int)st_param_stored(&m->params[i]);
        if (!dense[i]) continue;
        memcpy(out->dense_grad + dat, dense[i], sizeof(float) * (size_t)m->params[i].numel);
        dat += (int)m->params[i].numel;
        free(dense[i]);
    }
    st_optimizer_free(&o);
    st_model_free(m);
    free(x), free(y), free(dense);
}

static int same_runs(const model_run *a, const model_run *b) {
    return memcmp(a->losses, b->losses, sizeof a->losses) == 0 && a->n_weights == b->n_weights &&
           same_floats(a->weights, b->weights, (size_t)a->n_weights) &&
           same_floats(a->eval_logits, b->eval_logits, (size_t)a->n_logits) &&
           same_floats(a->dense_grad, b->dense_grad, (size_t)a->n_dense);
}

static void free_run(model_run *r) { free(r->weights), free(r->eval_logits), free(r->dense_grad); }

/* has_bn: the model has batch norms after convolutions, so gradients are handed over in bf16 too */
static void test_model(const char *name, int c, int hw, int has_bn) {
    st_executor counted = st_sparse_executor, plain = st_sparse_executor;
    counted.value_bf16 = counted_value_bf16, counted.grad_bf16 = counted_grad_bf16;
    plain.value_bf16 = NULL, plain.grad_bf16 = NULL;
    model_run with, without, two;
    omp_set_num_threads(1);
    hook_values = hook_grads = 0;
    run_model(name, c, hw, &counted, &with);
    printf("%s: copies written by fused steps %d, gradients written in bf16 %d\n", name, hook_values, hook_grads);
    CHECK(hook_values > 0 && (hook_grads > 0) == has_bn);
    run_model(name, c, hw, &plain, &without);
    omp_set_num_threads(2);
    run_model(name, c, hw, &counted, &two);
    report_same("bf16 copies in the fused passes vs rounded by each conv", same_runs(&with, &without));
    report_same("1 vs 2 threads", same_runs(&with, &two));
    free_run(&with), free_run(&without), free_run(&two);
}

int main(void) {
    test_kernels();
    if (st_isa_has_avx512_bf16()) {
        test_model("cifar_resnet_20", 1, 16, 1);
        test_model("lenet5", 1, 28, 0);
    } else {
        TEST_SKIP_PART("the CPU has no AVX512_BF16: bf16 sparse execution of whole models not tested");
    }
    TEST_MAIN_END();
}
