/* `sparsetrain eval` (see eval_run.h): loads the checkpoint and data, runs
 * the model over the test set (clean, then attacked if asked) and over the
 * OOD set, and reduces per-example summaries with eval/metrics.h. */
#include "eval/eval_run.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/catalog.h"
#include "core/rng.h"
#include "core/status.h"
#include "core/threads.h"
#include "exec/policy.h"
#include "io/checkpoint.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "run/setup.h"

void st_eval_config_defaults(st_eval_config *c) {
    memset(c, 0, sizeof *c);
    c->batch_size = 100;
    c->use_best = 1;
    c->seed = 17;
    c->attack.kind = ST_ATTACK_NONE;
    c->attack.eps = 8.0 / 255.0;
    c->attack.steps = 10;
    c->attack.step_size = 2.0 / 255.0;
}

st_status st_noise_dataset(const char *kind, const st_dataset *like, int64_t count, uint64_t seed, st_dataset *out) {
    memset(out, 0, sizeof *out);
    const int gaussian = strcmp(kind, "gaussian") == 0;
    if (!gaussian && strcmp(kind, "uniform") != 0)
        return st_fail(ST_ERR_ARGUMENT, "--ood noise:%s is unknown (noise:uniform, noise:gaussian)", kind);
    st_dataset d = *like;
    d.count = count;
    d.folder = NULL; /* noise is held in memory even when `like` streams from an image folder */
    const size_t image = (size_t)like->channels * like->height * like->width;
    d.pixels = st_malloc((size_t)count * image, "noise images");
    d.labels = st_calloc((size_t)(count ? count : 1), sizeof(int32_t), "noise labels");
    if (!d.pixels || !d.labels) {
        free(d.pixels), free(d.labels);
        return ST_ERR_NOMEM;
    }
    st_rng rng;
    st_rng_seed(&rng, seed, st_hash_string(gaussian ? "noise:gaussian" : "noise:uniform"));
    for (size_t i = 0; i < (size_t)count * image; i++) {
        double v = gaussian ? 0.5 + 0.25 * st_rng_normal(&rng) : st_rng_uniform_double(&rng);
        v = v < 0 ? 0 : v > 1 ? 1 : v;
        int byte = gaussian ? (int)lround(255.0 * v) : (int)(256.0 * v);
        d.pixels[i] = (uint8_t)(byte > 255 ? 255 : byte);
    }
    snprintf(d.name, sizeof d.name, "noise:%s", gaussian ? "gaussian" : "uniform");
    *out = d;
    return ST_OK;
}

/* Per-example results of one pass over a data set. */
typedef struct pass {
    int64_t n;
    double *confidence, *nll;
    int *rank;
} pass;

static void pass_free(pass *p) {
    free(p->confidence), free(p->nll), free(p->rank);
    memset(p, 0, sizeof *p);
}

/* Runs `m` in evaluation mode over `data` (its first `count` images),
 * attacked when `attack` is given, recording each example's summary. */
static st_status run_pass(st_model *m, const st_dataset *data, int64_t count, int batch_size,
                          const st_attack_config *attack, pass *out) {
    memset(out, 0, sizeof *out);
    out->confidence = st_malloc(sizeof(double) * (size_t)(count + 1), "eval scores");
    out->nll = st_malloc(sizeof(double) * (size_t)(count + 1), "eval scores");
    out->rank = st_malloc(sizeof(int) * (size_t)(count + 1), "eval scores");
    st_dataset part;
    st_status s = out->confidence && out->nll && out->rank ? ST_OK : ST_ERR_NOMEM;
    if (s == ST_OK) s = st_dataset_slice(data, 0, count, &part);
    if (s != ST_OK) {
        pass_free(out);
        return s;
    }
    st_loader *loader = NULL;
    st_loader_options o = {.batch_size = batch_size, .shuffle = 0, .augment = 0};
    float *adversarial = NULL;
    s = st_loader_create(&part, &o, &loader);
    if (s == ST_OK && attack) {
        adversarial = st_malloc(sizeof(float) * (size_t)batch_size * data->channels * data->height * data->width,
                                "adversarial images");
        if (!adversarial) s = ST_ERR_NOMEM;
    }
    if (s == ST_OK) s = st_loader_start_epoch(loader, 0);
    m->training = 0;
    for (int64_t index = 0; s == ST_OK;) {
        st_batch b;
        s = st_loader_next(loader, &b);
        if (s != ST_OK || b.count == 0) break;
        const float *images = b.images;
        if (attack) {
            s = st_attack_batch(m, attack, data->mean, data->std, b.images, b.labels, b.count,
                                (uint64_t)(index / batch_size), adversarial);
            images = adversarial;
        }
        const float *logits;
        if (s == ST_OK) s = st_model_forward(m, images, b.count, &logits);
        if (s != ST_OK) break;
        st_logits_summary(b.count, m->num_classes, logits, b.labels, out->confidence + index, out->nll + index,
                          out->rank + index);
        index += b.count;
        out->n = index;
    }
    m->training = 1;
    free(adversarial);
    st_loader_free(loader);
    st_dataset_free(&part);
    if (s != ST_OK) pass_free(out);
    return s;
}

static double mean_of(const double *v, int64_t n) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += v[i];
    return n ? sum / (double)n : 0.0;
}

/* Which data set format a folder holds, by the official test-split files of
 * the catalogue's rows (data/catalog.c): the first row whose file is there
 * ("mnist" for any IDX folder), NULL if none. */
static const char *format_in_folder(const char *dir) {
    int n;
    const st_dataset_info *rows = st_dataset_catalog(&n);
    char path[ST_PATH_MAX + 64];
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3 && rows[i].test_files[k]; k++) {
            snprintf(path, sizeof path, "%s/%s", dir, rows[i].test_files[k]);
            if (st_data_path_exists(path)) return rows[i].name;
        }
    return NULL;
}

/* The OOD data: noise shaped like the test set, or a data set of the same
 * shape, named (with its usual folder or --ood-datadir) or given as a folder. */
static st_status load_ood(const st_eval_config *c, const st_dataset *test, int64_t count, st_dataset *out) {
    if (strcmp(c->ood, "noise") == 0) return st_noise_dataset("uniform", test, count, c->seed, out);
    if (strncmp(c->ood, "noise:", 6) == 0) return st_noise_dataset(c->ood + 6, test, count, c->seed, out);
    const char *name = c->ood, *dir = c->ood_datadir[0] ? c->ood_datadir : st_dataset_default_dir(c->ood);
    if (!st_dataset_default_dir(c->ood)) { /* not a name: a folder holding one */
        dir = c->ood;
        name = format_in_folder(dir);
        if (!name)
            return st_fail(ST_ERR_ARGUMENT,
                           "--ood '%s' is neither a data set name (mnist, fashion-mnist, cifar10, cifar100, noise, "
                           "noise:uniform, noise:gaussian) nor a folder holding the test split of one (IDX "
                           "t10k-images-idx3-ubyte[.gz], CIFAR-10 test_batch.bin, CIFAR-100 test.bin or their "
                           ".tar.gz)",
                           c->ood);
    }
    ST_TRY(st_dataset_load(name, dir, 0, out));
    if (out->channels != test->channels || out->height != test->height || out->width != test->width) {
        st_status s = st_fail(ST_ERR_ARGUMENT, "--ood %s has %dx%dx%d images; the model takes %dx%dx%d", c->ood,
                              out->channels, out->height, out->width, test->channels, test->height, test->width);
        st_dataset_free(out);
        return s;
    }
    /* the model sees OOD images through the in-distribution normalisation */
    memcpy(out->mean, test->mean, sizeof out->mean);
    memcpy(out->std, test->std, sizeof out->std);
    for (int64_t i = 0; i < out->count; i++) out->labels[i] = 0; /* labels of another task mean nothing here */
    return ST_OK;
}

static st_status open_model(const st_eval_config *c, st_safetensors *f, const st_dataset *test, const char *data,
                            const char *model_name, int classes, int channels, int height, int width, st_model **m) {
    if (test->channels != channels || test->height != height || test->width != width || test->num_classes != classes)
        return st_fail(ST_ERR_ARGUMENT, "%s was trained on %dx%dx%d images with %d classes; %s has %dx%dx%d with %d",
                       c->checkpoint, channels, height, width, classes, data, test->channels, test->height,
                       test->width, test->num_classes);
    ST_TRY(st_model_create(model_name, classes, channels, height, width, m));
    /* The best-on-validation copy exists only for runs with --valid_split. */
    char probe[ST_NAME_MAX + 8];
    snprintf(probe, sizeof probe, "best.%s", (*m)->params[0].name);
    int best = c->use_best && st_safetensors_find(f, probe) != NULL;
    ST_TRY(st_checkpoint_load_model(f, c->checkpoint, *m, best ? "best." : ""));
    return st_run_apply_execution(*m, c->execution, c->batch_size); /* a sparse checkpoint runs on the sparse kernels like its training did */
}

static st_status evaluate_all(const st_eval_config *c, st_model *m, const st_dataset *test, st_eval_result *r) {
    const int batch = c->batch_size > 0 ? c->batch_size : 100;
    const int64_t count = c->limit > 0 && c->limit < test->count ? c->limit : test->count;
    pass clean, other;
    ST_TRY(run_pass(m, test, count, batch, NULL, &clean));
    r->count = clean.n;
    r->num_classes = m->num_classes;
    r->accuracy = st_topk_accuracy(clean.n, clean.rank, 1);
    r->has_top5 = m->num_classes >= 5;
    r->top5 = r->has_top5 ? st_topk_accuracy(clean.n, clean.rank, 5) : 0.0;
    r->loss = mean_of(clean.nll, clean.n);
    uint8_t *correct = st_malloc((size_t)clean.n + 1, "eval correctness");
    st_status s = correct ? ST_OK : ST_ERR_NOMEM;
    for (int64_t i = 0; s == ST_OK && i < clean.n; i++) correct[i] = clean.rank[i] == 0;
    if (s == ST_OK) s = st_calibration(clean.n, clean.confidence, correct, ST_ECE_BINS, r->reliability, &r->ece);
    free(correct);
    st_histogram(clean.n, clean.confidence, 0.0, 1.0, ST_SCORE_BINS, r->score_hist_in);
    if (s == ST_OK && c->ood[0]) {
        st_dataset ood;
        s = load_ood(c, test, count, &ood);
        if (s == ST_OK) {
            const int64_t n_ood = c->limit > 0 && c->limit < ood.count ? c->limit : ood.count;
            s = run_pass(m, &ood, n_ood, batch, NULL, &other);
            st_dataset_free(&ood);
        }
        if (s == ST_OK) {
            s = st_ood_compute(clean.confidence, clean.n, other.confidence, other.n, &r->ood);
            st_histogram(other.n, other.confidence, 0.0, 1.0, ST_SCORE_BINS, r->score_hist_out);
            r->ood_count = other.n;
            r->has_ood = s == ST_OK;
            pass_free(&other);
        }
    }
    if (s == ST_OK && c->attack.kind != ST_ATTACK_NONE) {
        const int64_t attacked = c->attack_limit > 0 && c->attack_limit < count ? c->attack_limit : count;
        s = run_pass(m, test, attacked, batch, &c->attack, &other);
        if (s == ST_OK) {
            r->attack_count = other.n;
            r->attack_clean_accuracy = st_topk_accuracy(other.n, clean.rank, 1); /* same first images */
            r->adv_accuracy = st_topk_accuracy(other.n, other.rank, 1);
            r->adv_loss = mean_of(other.nll, other.n);
            r->has_attack = 1;
            pass_free(&other);
        }
    }
    pass_free(&clean);
    return s;
}

st_status st_eval_run(const st_eval_config *c, st_eval_result *result) {
    memset(result, 0, sizeof *result);
    ST_TRY(st_attack_config_check(&c->attack));
    if (c->limit < 0) return st_fail(ST_ERR_ARGUMENT, "--limit must be >= 0 (got %lld)", (long long)c->limit);
    if (c->attack_limit < 0) return st_fail(ST_ERR_ARGUMENT, "--attack-limit must be >= 0 (got %d)", c->attack_limit);
    ST_TRY(st_threads_check("--threads", c->threads));
    st_safetensors *f;
    ST_TRY(st_safetensors_read(c->checkpoint, &f));
    char model_name[64];
    int classes, channels, height, width;
    st_status s = st_checkpoint_describe(f, c->checkpoint, model_name, sizeof model_name, &classes, &channels, &height,
                                         &width);
    const char *data = c->data[0] ? c->data : st_safetensors_meta(f, "data");
    st_dataset test;
    memset(&test, 0, sizeof test);
    st_model *m = NULL;
    if (s == ST_OK && (!data || !st_dataset_default_dir(data)))
        s = st_fail(ST_ERR_ARGUMENT, "--data '%s' is unknown (" ST_DATASET_NAMES ")",
                    data ? data : "");
    if (s == ST_OK) {
        snprintf(result->model, sizeof result->model, "%s", model_name);
        snprintf(result->data, sizeof result->data, "%s", data);
        st_dataset_options dopt = {.image_size = height}; /* imagenet: the size the model was trained at */
        s = st_dataset_load_with(data, c->datadir[0] ? c->datadir : NULL, 0, &dopt, &test); /* NULL: the usual folders */
    }
    if (s == ST_OK) s = open_model(c, f, &test, data, model_name, classes, channels, height, width, &m);
    if (s == ST_OK) s = evaluate_all(c, m, &test, result);
    st_model_free(m);
    st_dataset_free(&test);
    st_safetensors_free(f);
    return s;
}

static void key(st_json_builder *b, const char *name) {
    st_json_append_text(b, ", \"");
    st_json_append_text(b, name);
    st_json_append_text(b, "\": ");
}

static void key_double(st_json_builder *b, const char *name, double v) {
    key(b, name);
    st_json_append_double(b, v);
}

static void counts_array(st_json_builder *b, const int64_t *counts, int n) {
    st_json_append_text(b, "[");
    for (int i = 0; i < n; i++) {
        if (i) st_json_append_text(b, ", ");
        st_json_append_int(b, counts[i]);
    }
    st_json_append_text(b, "]");
}

st_status st_eval_result_json(const st_eval_config *c, const st_eval_result *r, char **text) {
    st_json_builder b;
    st_json_builder_init(&b);
    st_json_append_text(&b, "{\"checkpoint\": ");
    st_json_append_string(&b, c->checkpoint);
    key(&b, "model");
    st_json_append_string(&b, r->model);
    key(&b, "data");
    st_json_append_string(&b, r->data);
    key(&b, "count");
    st_json_append_int(&b, r->count);
    key_double(&b, "top1", r->accuracy);
    if (r->has_top5)
        key_double(&b, "top5", r->top5);
    else {
        key(&b, "top5");
        st_json_append_text(&b, "null"); /* fewer than 5 classes */
    }
    key_double(&b, "nll", r->loss);
    key_double(&b, "ece", r->ece);
    key(&b, "reliability");
    st_json_append_text(&b, "[");
    for (int i = 0; i < ST_ECE_BINS; i++) {
        const st_reliability_bin *bin = &r->reliability[i];
        st_json_append_text(&b, i ? ", {\"lower\": " : "{\"lower\": ");
        st_json_append_double(&b, bin->lower);
        key_double(&b, "upper", bin->upper);
        key(&b, "count");
        st_json_append_int(&b, bin->count);
        key_double(&b, "confidence", bin->mean_confidence);
        key_double(&b, "accuracy", bin->accuracy);
        st_json_append_text(&b, "}");
    }
    st_json_append_text(&b, "]");
    key(&b, "score_histogram_in");
    counts_array(&b, r->score_hist_in, ST_SCORE_BINS);
    key(&b, "ood");
    if (r->has_ood) {
        st_json_append_text(&b, "{\"data\": ");
        st_json_append_string(&b, c->ood);
        key(&b, "count");
        st_json_append_int(&b, r->ood_count);
        key_double(&b, "auroc", r->ood.auroc);
        key_double(&b, "aupr_in", r->ood.aupr_in);
        key_double(&b, "aupr_out", r->ood.aupr_out);
        key_double(&b, "fpr_at_95_tpr", r->ood.fpr_at_95_tpr);
        key(&b, "score_histogram_out");
        counts_array(&b, r->score_hist_out, ST_SCORE_BINS);
        st_json_append_text(&b, "}");
    } else {
        st_json_append_text(&b, "null");
    }
    key(&b, "attack");
    if (r->has_attack) {
        const st_attack_config *a = &c->attack;
        st_json_append_text(&b, "{\"kind\": ");
        st_json_append_string(&b, a->kind == ST_ATTACK_FGSM ? "fgsm" : "pgd");
        key_double(&b, "eps", a->eps);
        key(&b, "steps");
        st_json_append_int(&b, a->kind == ST_ATTACK_FGSM ? 1 : a->steps);
        key_double(&b, "step_size", a->kind == ST_ATTACK_FGSM ? a->eps : a->step_size);
        key(&b, "random_start");
        st_json_append_text(&b, a->kind == ST_ATTACK_PGD && a->random_start ? "true" : "false");
        key(&b, "count");
        st_json_append_int(&b, r->attack_count);
        key_double(&b, "clean_accuracy", r->attack_clean_accuracy);
        key_double(&b, "accuracy", r->adv_accuracy);
        key_double(&b, "nll", r->adv_loss);
        st_json_append_text(&b, "}");
    } else {
        st_json_append_text(&b, "null");
    }
    st_json_append_text(&b, "}");
    size_t length;
    return st_json_builder_finish(&b, text, &length);
}
