/* Tests of src/train/anomaly.c (numerical fault checks) and src/train/run_guard.c
 * (run ids), on a real model with hand-placed NaN/Inf values. */
#include <math.h>
#include <string.h>

#include "models/model.h"
#include "optim/optimizer.h"
#include "sparsetrain.h"
#include "testing.h"
#include "train/anomaly.h"
#include "train/run_guard.h"

static void test_first_nonfinite(void) {
    float v[37];
    for (int i = 0; i < 37; i++) v[i] = (float)i - 18.5f;
    CHECK(st_first_nonfinite(v, 37) == -1);
    CHECK(st_first_nonfinite(NULL, 0) == -1);
    v[30] = INFINITY;
    CHECK(st_first_nonfinite(v, 37) == 30);
    v[7] = NAN;
    CHECK(st_first_nonfinite(v, 37) == 7);
    CHECK(st_first_nonfinite(v, 7) == -1);
    v[7] = -INFINITY;
    CHECK(st_first_nonfinite(v, 8) == 7);
    v[0] = 3.4e38f; /* large but finite */
    CHECK(st_first_nonfinite(v, 1) == -1);
}

static st_model *small_model(void) {
    st_model *m = NULL;
    CHECK_OK(st_model_create("lenet300-100", 10, 1, 28, 28, &m));
    if (!m) exit(1);
    for (int i = 0; i < m->n_params; i++) {
        for (int64_t k = 0; k < m->params[i].numel; k++) m->params[i].value[k] = 0.01f;
        if (m->params[i].grad) memset(m->params[i].grad, 0, sizeof(float) * (size_t)m->params[i].numel);
    }
    return m;
}

static int mentions(const char *needle) {
    int ok = strstr(st_last_error(), needle) != NULL;
    if (!ok) fprintf(stderr, "message lacks '%s': %s\n", needle, st_last_error());
    return ok;
}

static void test_gradients_named(void) {
    st_model *m = small_model();
    st_anomaly_where w = {.step = 42, .epoch = 3, .batch = 7, .lr = 0.1, .checkpoint = "run.safetensors", .saved = 1};
    CHECK_OK(st_anomaly_check_gradients(m, &w));
    int fc1 = st_model_find_param(m, "fc1.weight"), fc2 = st_model_find_param(m, "fc2.weight");
    CHECK(fc1 >= 0 && fc2 >= 0);
    m->params[fc1].grad[5] = NAN;
    CHECK(st_anomaly_check_gradients(m, &w) == ST_ERR_NUMERIC);
    CHECK(mentions("step 42") && mentions("epoch 3") && mentions("batch 7") && mentions("'fc1.weight'") &&
          mentions("NaN") && mentions("element 5") && mentions("--lr") && mentions("run.safetensors is kept"));
    /* Backward order: the bad gradient closest to the output is named. */
    m->params[fc2].grad[0] = INFINITY;
    CHECK(st_anomaly_check_gradients(m, &w) == ST_ERR_NUMERIC);
    CHECK(mentions("'fc2.weight'") && mentions("+Inf"));
    st_model_free(m);
}

static void test_loss_weights_output(void) {
    st_model *m = small_model();
    st_anomaly_where w = {.step = 1, .epoch = 1, .batch = 1, .lr = 1e30, .checkpoint = "", .saved = 0};
    CHECK_OK(st_anomaly_check_loss(m, 2.3, &w));
    int fc3 = st_model_find_param(m, "fc3.weight");
    m->params[fc3].value[3] = 5e30f;
    CHECK(st_anomaly_check_loss(m, NAN, &w) == ST_ERR_NUMERIC);
    CHECK(mentions("training loss is NaN") && mentions("'fc3.weight'") && mentions("nothing was saved"));
    CHECK(st_anomaly_check_loss(m, INFINITY, &w) == ST_ERR_NUMERIC && mentions("infinite"));
    float logits[20] = {0};
    CHECK_OK(st_anomaly_check_output(m, logits, 2, &w));
    logits[13] = NAN;
    CHECK(st_anomaly_check_output(m, logits, 2, &w) == ST_ERR_NUMERIC);
    CHECK(mentions("model output") && mentions("element 13"));
    st_optimizer opt;
    CHECK_OK(st_optimizer_create(&opt, m, ST_OPTIMIZER_SGD, 0.9, 1, 0));
    for (int i = 0; i < opt.n_params; i++)
        if (opt.state1[i]) memset(opt.state1[i], 0, sizeof(float) * (size_t)m->params[i].numel);
    CHECK_OK(st_anomaly_check_weights(m, &opt, &w));
    int fc2b = st_model_find_param(m, "fc2.bias");
    opt.state1[fc2b][1] = -INFINITY;
    CHECK(st_anomaly_check_weights(m, &opt, &w) == ST_ERR_NUMERIC);
    CHECK(mentions("optim.fc2.bias.momentum_buffer") && mentions("-Inf"));
    m->params[fc3].value[0] = NAN;
    CHECK(st_anomaly_check_weights(m, &opt, &w) == ST_ERR_NUMERIC && mentions("weight 'fc3.weight' became NaN"));
    CHECK(st_anomaly_check_loss(m, NAN, &w) == ST_ERR_NUMERIC && mentions("'fc3.weight' is already NaN"));
    st_optimizer_free(&opt);
    st_model_free(m);
}

static void test_run_ids(void) {
    char a[ST_RUN_ID_CHARS + 1], b[ST_RUN_ID_CHARS + 1];
    st_run_id_new(a);
    st_run_id_new(b);
    CHECK(st_run_id_valid(a) && st_run_id_valid(b));
    CHECK(strcmp(a, b) != 0);
    CHECK(!st_run_id_valid("") && !st_run_id_valid(NULL) && !st_run_id_valid("0123456789abcdef0123456789ABCDEF"));
    CHECK(!st_run_id_valid("0123456789abcdef0123456789abcde"));
}

/* --detect-anomaly's forward check names the layer where the forward pass
 * first goes non-finite, under dense and under sparse execution. */
static void test_activations_named(void) {
    for (int sparse = 0; sparse < 2; sparse++) {
        st_model *m = NULL;
        CHECK_OK(st_model_create("cifar_resnet_8", 10, 1, 28, 28, &m));
        if (!m) return;
        for (int i = 0; i < m->n_params; i++)
            if (!m->params[i].is_buffer && m->params[i].ndim > 1)
                for (int64_t k = 0; k < m->params[i].numel; k++) m->params[i].value[k] = (k % 7 == 0) ? 0.05f : -0.01f;
        const int bad = st_model_find_param(m, "blocks.1.conv1.weight");
        CHECK(bad >= 0);
        m->params[bad].value[3] = INFINITY;
        if (sparse) CHECK_OK(st_model_use_sparse_execution(m));
        m->training = 1;
        float x[4 * 28 * 28];
        for (int i = 0; i < 4 * 28 * 28; i++) x[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
        const float *logits;
        CHECK_OK(st_model_forward(m, x, 4, &logits));
        st_anomaly_where w = {.step = 5, .epoch = 1, .batch = 5, .lr = 0.1, .checkpoint = "", .saved = 0};
        CHECK(st_anomaly_check_activations(m, 4, &w) == ST_ERR_NUMERIC);
        CHECK(mentions("conv blocks.1.conv1.weight") && mentions("step 5") && mentions("--lr"));
        /* a finite network passes */
        m->params[bad].value[3] = 0.05f;
        CHECK_OK(st_model_forward(m, x, 4, &logits));
        CHECK_OK(st_anomaly_check_activations(m, 4, &w));
        st_model_free(m);
    }
}

int main(void) {
    test_activations_named();
    test_first_nonfinite();
    test_gradients_named();
    test_loss_weights_output();
    test_run_ids();
    TEST_MAIN_END();
}
