/* The training run as library calls (train/trainer.h): hooks are called at
 * their places (after backward, after the optimiser, per batch, per epoch,
 * once at set-up) and can change a mask through the parameter store
 * mid-run (where dynamic sparse training plugs in); gradients accumulate
 * over micro-batches when the caller does not zero them; the library
 * prints nothing; the training loader of a run shuffles every epoch. Needs Fashion-MNIST (Debian's dataset-fashion-mnist):
 * skipped (exit 77) without it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/rng.h"
#include "models/model.h"
#include "optim/optimizer.h"
#include "run/setup.h"
#include "train/trainer.h"
#include "testing.h"

#define DATA "/usr/share/datasets/fashion-mnist"

typedef struct counts {
    int setup, batch, epoch, after_backward, after_step;
    int64_t kept_before, kept_after; /* of fc1.weight around the mask change */
    st_status remap_status;
} counts;

static void on_setup(const st_setup_report *r, void *user) {
    counts *n = user;
    n->setup++;
    CHECK(r->n_layers == 3 && strcmp(r->execution, "sparse") == 0);
}
static void on_batch(const st_batch_report *r, void *user) {
    counts *n = user;
    n->batch++;
    CHECK(r->done == n->batch && r->total == 3 && isfinite(r->loss));
}
static void on_epoch(const st_epoch_report *r, void *user) {
    counts *n = user;
    n->epoch++;
    CHECK(r->epoch == 0 && r->epochs == 4 && r->test_acc >= 0 && r->test_acc <= 1);
}
static st_status after_backward(st_trainer *t, void *user) {
    counts *n = user;
    n->after_backward++;
    CHECK(n->after_backward == n->after_step + 1); /* before the optimiser */
    (void)t;
    return ST_OK;
}

/* After the second step: fc1 grows every 7th weight (new weights start at 0). */
static st_status after_step(st_trainer *t, void *user) {
    counts *n = user;
    n->after_step++;
    if (n->after_step != 2) return ST_OK;
    st_model *m = st_trainer_model(t);
    const int wi = st_model_find_param(m, "fc1.weight");
    st_param *p = &m->params[wi];
    uint8_t *mask = new_bytes((size_t)p->numel);
    st_sparse_weight_mask_dense(p->sparse, mask);
    n->kept_before = p->sparse->kept;
    for (int64_t k = 0; k < p->numel; k += 7) mask[k] = 1; /* grow */
    n->remap_status = st_param_store_remap(&m->store, wi, mask);
    n->kept_after = p->sparse->kept;
    free(mask);
    return ST_OK;
}

static void config(st_train_config *c) {
    st_train_config_defaults(c);
    snprintf(c->model, sizeof c->model, "lenet300-100");
    snprintf(c->datadir, sizeof c->datadir, "%s", DATA);
    snprintf(c->execution, sizeof c->execution, "sparse");
    c->sparse = c->fix = 1;
    c->density = 0.1;
    c->epochs = 4; /* epoch 1 of 4 runs at the full learning rate (multistep) */
    c->stop_after = 1;
    c->max_batches = 3;
    c->batch_size = 32;
}

static void test_hooks(void) {
    st_train_config c;
    config(&c);
    counts n = {0};
    st_train_hooks h = {.user = &n, .after_backward = after_backward, .after_step = after_step, .on_setup = on_setup,
                        .on_batch = on_batch, .on_epoch = on_epoch};
    /* the library prints nothing: stdout goes to a file that must stay empty */
    fflush(stdout);
    const char *tmp = getenv("ST_TEST_TMP");
    char path[1024];
    snprintf(path, sizeof path, "%s/trainer_api_stdout.txt", tmp ? tmp : ".");
    if (tmp) mkdir(tmp, 0777);
    FILE *f = fopen(path, "w+");
    CHECK(f != NULL);
    int saved = dup(fileno(stdout));
    if (f) dup2(fileno(f), fileno(stdout));
    st_train_result res;
    st_status s = st_train_run(&c, &h, &res);
    fflush(stdout);
    dup2(saved, fileno(stdout));
    close(saved);
    CHECK_OK(s);
    if (f) {
        fseek(f, 0, SEEK_END);
        CHECK(ftell(f) == 0);
        fclose(f);
        remove(path);
    }
    CHECK(n.setup == 1 && n.batch == 3 && n.epoch == 1 && n.after_backward == 3 && n.after_step == 3);
    CHECK_OK(n.remap_status);
    CHECK(n.kept_after > n.kept_before);
    CHECK(res.epochs_done == 1 && res.test_acc > 0.25); /* it learnt (42% without the change; chance is 10%) */
    printf("hooks: %d setup, %d batches, %d epochs; fc1 kept %lld -> %lld mid-run; test acc %.3f\n", n.setup, n.batch,
           n.epoch, (long long)n.kept_before, (long long)n.kept_after, res.test_acc);
}

/* Two micro-batches accumulated = the sum of their separate gradients. */
static void test_accumulate(void) {
    st_train_config c;
    config(&c);
    st_trainer *t = NULL;
    CHECK_OK(st_trainer_create(&c, NULL, &t));
    if (!t) return;
    st_model *m = st_trainer_model(t);
    st_rng rng;
    st_rng_seed(&rng, 3, 0);
    const int b = 16, size = 28 * 28;
    float *x1 = new_floats((size_t)b * size), *x2 = new_floats((size_t)b * size);
    int32_t y1[16], y2[16];
    for (int i = 0; i < b * size; i++) x1[i] = (float)st_rng_normal(&rng), x2[i] = (float)st_rng_normal(&rng);
    for (int i = 0; i < b; i++) y1[i] = (int32_t)st_rng_below(&rng, 10), y2[i] = (int32_t)st_rng_below(&rng, 10);
    st_batch b1 = {b, x1, y1}, b2 = {b, x2, y2};
    const int64_t n = m->store.grad_floats;
    float *g1 = new_floats((size_t)n), *g2 = new_floats((size_t)n);
    double loss;
    int correct;
    st_trainer_zero_grad(t);
    CHECK_OK(st_trainer_accumulate(t, &b1, &loss, &correct));
    memcpy(g1, m->store.grad_block, sizeof(float) * (size_t)n);
    st_trainer_zero_grad(t);
    CHECK_OK(st_trainer_accumulate(t, &b2, &loss, &correct));
    memcpy(g2, m->store.grad_block, sizeof(float) * (size_t)n);
    st_trainer_zero_grad(t);
    CHECK_OK(st_trainer_accumulate(t, &b1, &loss, &correct));
    CHECK_OK(st_trainer_accumulate(t, &b2, &loss, &correct));
    double err = 0, norm = 1e-30;
    for (int64_t k = 0; k < n; k++) {
        const double want = (double)g1[k] + g2[k], got = m->store.grad_block[k];
        err = fmax(err, fabs(got - want));
        norm = fmax(norm, fabs(want));
    }
    printf("accumulated micro-batches vs summed gradients: %.2g (relative to the largest)\n", err / norm);
    /* one float rounding of the sum per element (the kernels add into the gradient) */
    CHECK(err / norm < 1e-6);
    CHECK(norm > 1e-6); /* a gradient was computed at all */
    free(x1), free(x2), free(g1), free(g2);
    st_trainer_free(t);
}

/* The training loader the set-up path gives a run shuffles: every epoch is a
 * permutation of the training split (each image once), and two epochs differ. */
static void test_training_shuffle(void) {
    st_run_data_spec spec = {.data = "fashion-mnist", .datadir = DATA, .valid_split = 0.1, .batch_size = 1000,
                             .test_batch_size = 1000, .augment = -1, .seed = 17};
    st_run_data d;
    CHECK_OK(st_run_data_open(&spec, &d));
    if (!d.train_loader) return;
    const int64_t n = d.train.count;
    int32_t *order[2] = {new_bytes(sizeof(int32_t) * (size_t)n), new_bytes(sizeof(int32_t) * (size_t)n)};
    for (int e = 0; e < 2; e++) {
        CHECK_OK(st_loader_start_epoch(d.train_loader, e));
        int64_t at = 0;
        for (;;) {
            st_batch b;
            CHECK_OK(st_loader_next(d.train_loader, &b));
            if (b.count == 0 || at + b.count > n) break;
            memcpy(order[e] + at, b.labels, sizeof(int32_t) * (size_t)b.count);
            at += b.count;
        }
        CHECK(at == n);
    }
    int64_t same_place = 0, counts[2][10] = {{0}}, want[10] = {0};
    for (int64_t i = 0; i < n; i++) {
        same_place += order[0][i] == order[1][i];
        counts[0][order[0][i]]++, counts[1][order[1][i]]++, want[d.train.labels[i]]++;
    }
    /* labels only: a random pair of orders agrees at ~10 % of the places, an unshuffled pair at 100 % */
    CHECK(same_place < n / 5);
    CHECK(memcmp(counts[0], want, sizeof want) == 0 && memcmp(counts[1], want, sizeof want) == 0);
    int64_t in_file_order = 0;
    for (int64_t i = 0; i < n; i++) in_file_order += order[0][i] == d.train.labels[i];
    CHECK(in_file_order < n / 5);
    printf("training loader: epochs 0 and 1 agree on %.1f%% of the labels' places (file order: %.1f%%)\n",
           100.0 * (double)same_place / (double)n, 100.0 * (double)in_file_order / (double)n);
    free(order[0]), free(order[1]);
    st_run_data_close(&d);
}

int main(void) {
    if (access(DATA "/train-images-idx3-ubyte.gz", R_OK) != 0 && access(DATA "/train-images-idx3-ubyte", R_OK) != 0) {
        printf("skipped: Fashion-MNIST is not installed (%s)\n", DATA);
        return 77;
    }
    test_hooks();
    test_accumulate();
    test_training_shuffle();
    TEST_MAIN_END();
}
