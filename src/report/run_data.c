/* Loading one run folder for the report (see run_data.h). */
#include "report/run_data.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/status.h"
#include "io/file_read.h"
#include "data/dataset.h"
#include "io/checkpoint.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "sparse/masks.h"

/* dir/name if it exists, else dir/<first file ending in suffix>, else "". */
static void find_file(const char *dir, const char *name, const char *suffix, char *out, size_t size) {
    snprintf(out, size, "%s/%s", dir, name);
    if (st_data_path_exists(out)) return;
    out[0] = 0;
    DIR *d = opendir(dir);
    if (!d) return;
    char best[256] = "";
    const size_t ls = strlen(suffix);
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len <= ls || e->d_name[0] == '.' || strcmp(e->d_name + len - ls, suffix) != 0) continue;
        if (len < sizeof best && (!best[0] || strcmp(e->d_name, best) < 0)) snprintf(best, sizeof best, "%s", e->d_name);
    }
    closedir(d);
    if (best[0]) snprintf(out, size, "%s/%s", dir, best);
}

/* Logs and eval results are small: a training log grows by ~0.4 KB an epoch. */
#define REPORT_MAX_TEXT ((uint64_t)256 << 20)

static st_status read_text(const char *path, char **text, size_t *length) {
    int fd;
    uint64_t file_size;
    ST_TRY(st_open_regular(path, REPORT_MAX_TEXT, "a log or eval result", &fd, &file_size)); /* never blocks */
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return st_fail(ST_ERR_IO, "cannot read %s", path);
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (n + 1 == cap) {
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger) free(buf);
            buf = bigger;
        }
    }
    int failed = ferror(f);
    fclose(f);
    if (!buf) return st_fail(ST_ERR_NOMEM, "out of memory reading %s", path);
    if (failed) {
        free(buf);
        return st_fail(ST_ERR_IO, "cannot read %s", path);
    }
    buf[n] = 0;
    *text = buf;
    *length = n;
    return ST_OK;
}

/* A JSON number as a count: negative, non-finite or absurd values become 0
 * (checked before the cast, which would be undefined out of range). */
static int64_t as_count(double v) { return v >= 0 && v < 9e15 ? (int64_t)v : 0; }

static double number_or_nan(const st_json_value *obj, const char *key) {
    const st_json_value *v = st_json_object_get(obj, key);
    return v && v->type == ST_JSON_NUMBER ? v->number : NAN;
}

static int grow_log(st_report_run *r, int cap) {
    double **arrays[] = {&r->epoch, &r->lr, &r->train_loss, &r->train_acc, &r->val_acc, &r->test_acc, &r->itop};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
        double *p = realloc(*arrays[i], sizeof(double) * (size_t)cap);
        if (!p) return 0;
        *arrays[i] = p;
    }
    return 1;
}

static int grow_updates(st_report_run *r, int cap) {
    double **arrays[] = {&r->update_step, &r->update_death_rate, &r->update_itop};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
        double *p = realloc(*arrays[i], sizeof(double) * (size_t)cap);
        if (!p) return 0;
        *arrays[i] = p;
    }
    return 1;
}

/* A mask-update line (train/mask_update.h); a resumed run repeats steps: the later line wins. */
static int add_update(st_report_run *r, const st_json_value *o, int *cap) {
    const double step = number_or_nan(o, "step");
    if (!isfinite(step)) return 1;
    if (r->n_updates == *cap && !grow_updates(r, *cap = *cap ? 2 * *cap : 64)) return 0;
    int i = r->n_updates;
    while (i > 0 && !(r->update_step[i - 1] < step)) i--;
    r->update_step[i] = step;
    r->update_death_rate[i] = number_or_nan(o, "death_rate");
    r->update_itop[i] = number_or_nan(o, "itop_rate");
    r->n_updates = i + 1;
    return 1;
}

static st_status load_log(const char *path, st_report_run *r) {
    char *text;
    size_t length;
    ST_TRY(read_text(path, &text, &length));
    st_status s = ST_OK;
    int cap = 0, line_no = 0, update_cap = 0;
    for (char *line = text, *next; s == ST_OK && line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        line_no++;
        if (strspn(line, " \t\r") == strlen(line)) continue;
        char source[ST_PATH_MAX + 400];
        snprintf(source, sizeof source, "%s line %d", path, line_no);
        st_json_document *doc;
        if (st_json_parse(line, strlen(line), source, NULL, &doc) != ST_OK) {
            /* a torn line (a run killed mid-write) loses that line, not the run */
            if (!r->skipped_lines++) snprintf(r->first_skipped, sizeof r->first_skipped, "%s", st_last_error());
            continue;
        }
        const st_json_value *o = st_json_root(doc);
        if (o->type == ST_JSON_OBJECT && isfinite(number_or_nan(o, "mask_update"))) {
            if (!add_update(r, o, &update_cap)) s = st_fail(ST_ERR_NOMEM, "out of memory reading %s", path);
        } else if (o->type != ST_JSON_OBJECT || !isfinite(number_or_nan(o, "epoch"))) {
            if (!r->skipped_lines++)
                snprintf(r->first_skipped, sizeof r->first_skipped, "line %d: not a log object with an epoch", line_no);
        } else if (r->n_epochs == cap && !grow_log(r, cap = cap ? 2 * cap : 64)) {
            s = st_fail(ST_ERR_NOMEM, "out of memory reading %s", path);
        } else {
            /* a resumed run appends: a repeated epoch replaces the earlier line */
            double epoch = number_or_nan(o, "epoch");
            int i = r->n_epochs;
            while (i > 0 && !(r->epoch[i - 1] < epoch)) i--;
            r->n_epochs = i;
            r->epoch[i] = epoch;
            r->lr[i] = number_or_nan(o, "lr");
            r->train_loss[i] = number_or_nan(o, "train_loss");
            r->train_acc[i] = number_or_nan(o, "train_acc");
            r->val_acc[i] = number_or_nan(o, "val_acc");
            r->test_acc[i] = number_or_nan(o, "test_acc");
            r->itop[i] = number_or_nan(o, "itop_rate");
            r->n_epochs = i + 1;
        }
        st_json_free(doc);
    }
    free(text);
    return s;
}

/* FLOPs of training summed over the epochs kept in the log (second pass:
 * only the lines that survived the resume de-duplication count). */
static st_status sum_log_flops(const char *path, st_report_run *r) {
    char *text;
    size_t length;
    ST_TRY(read_text(path, &text, &length));
    double *dense = calloc((size_t)r->n_epochs + 1, sizeof(double)), *sparse = calloc((size_t)r->n_epochs + 1, sizeof(double));
    double *updates = calloc((size_t)r->n_epochs + 1, sizeof(double));
    st_status s = dense && sparse && updates ? ST_OK : st_fail(ST_ERR_NOMEM, "out of memory reading %s", path);
    for (char *line = text, *next; s == ST_OK && line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (strspn(line, " \t\r") == strlen(line)) continue;
        st_json_document *doc;
        if (st_json_parse(line, strlen(line), path, NULL, &doc) != ST_OK) continue; /* reported by load_log */
        const st_json_value *o = st_json_root(doc);
        double epoch = number_or_nan(o, "epoch");
        for (int i = 0; i < r->n_epochs; i++)
            if (r->epoch[i] == epoch) {
                dense[i] = number_or_nan(o, "flops_epoch_train_dense");
                sparse[i] = number_or_nan(o, "flops_epoch_train_sparse");
                const double u = number_or_nan(o, "flops_epoch_mask_updates");
                updates[i] = isfinite(u) ? u : 0;
            }
        st_json_free(doc);
    }
    r->train_flops_dense = r->train_flops_sparse = r->train_flops_updates = 0;
    for (int i = 0; s == ST_OK && i < r->n_epochs; i++) {
        r->train_flops_dense += dense[i];
        r->train_flops_sparse += sparse[i];
        r->train_flops_updates += updates[i];
    }
    free(dense), free(sparse), free(updates), free(text);
    return s;
}

static void copy_string(const st_json_value *obj, const char *key, char *dst, size_t size) {
    const st_json_value *v = st_json_object_get(obj, key);
    if (v && v->type == ST_JSON_STRING) snprintf(dst, size, "%s", v->string);
}

static st_status load_checkpoint(const char *path, st_report_run *r) {
    st_safetensors *f;
    ST_TRY(st_safetensors_read(path, &f));
    int classes, channels, height, width;
    st_model *m = NULL;
    st_status s = st_checkpoint_describe(f, path, r->model, sizeof r->model, &classes, &channels, &height, &width);
    if (s == ST_OK) {
        const char *data = st_safetensors_meta(f, "data");
        snprintf(r->data, sizeof r->data, "%s", data ? data : "");
        const char *args = st_safetensors_meta(f, "args");
        st_json_document *doc = NULL;
        if (args && st_json_parse(args, strlen(args), path, NULL, &doc) == ST_OK) {
            const st_json_value *o = st_json_root(doc);
            double sparse = number_or_nan(o, "sparse"), seed = number_or_nan(o, "seed");
            r->sparse = sparse == 1;
            r->density = r->sparse ? number_or_nan(o, "density") : 1.0;
            r->seed = seed >= 0 && seed < 9e15 ? (int64_t)seed : -1;
            copy_string(o, "sparse_init", r->sparse_init, sizeof r->sparse_init);
            if (!r->sparse) snprintf(r->sparse_init, sizeof r->sparse_init, "dense");
        }
        st_json_free(doc);
        s = st_model_create(r->model, classes, channels, height, width, &m);
    }
    if (s == ST_OK) s = st_checkpoint_load_model(f, path, m, "");
    if (s == ST_OK) s = st_flops_summary_of(m, &r->flops);
    st_layer_shape *shapes = NULL;
    int *ids = NULL, n = 0;
    if (s == ST_OK) s = st_model_prunable_layers(m, &shapes, &ids, &n);
    if (s == ST_OK) {
        r->layers = st_calloc((size_t)n + 1, sizeof(st_report_layer), "report layers");
        if (!r->layers) s = ST_ERR_NOMEM;
        for (int l = 0; s == ST_OK && l < n; l++) {
            const st_param *p = &m->params[ids[l]];
            snprintf(r->layers[l].name, sizeof r->layers[l].name, "%s", p->name);
            r->layers[l].numel = p->numel;
            r->layers[l].kept = p->sparse ? p->sparse->kept : p->numel;
        }
        r->n_layers = s == ST_OK ? n : 0;
        r->parameters = st_model_parameter_count(m);
        r->has_checkpoint = s == ST_OK;
    }
    free(shapes), free(ids);
    st_model_free(m);
    st_safetensors_free(f);
    return s;
}

static void read_counts(const st_json_value *arr, int64_t *counts, int n) {
    for (int i = 0; i < n; i++) {
        const st_json_value *v = st_json_array_at(arr, (size_t)i);
        counts[i] = v && v->type == ST_JSON_NUMBER ? as_count(v->number) : 0;
    }
}

static st_status load_eval(const char *path, st_report_run *r) {
    char *text;
    size_t length;
    ST_TRY(read_text(path, &text, &length));
    st_json_document *doc;
    st_status s = st_json_parse(text, length, path, NULL, &doc);
    free(text);
    if (s != ST_OK) return s;
    const st_json_value *o = st_json_root(doc);
    r->top1 = number_or_nan(o, "top1");
    r->top5 = number_or_nan(o, "top5");
    r->nll = number_or_nan(o, "nll");
    r->ece = number_or_nan(o, "ece");
    const st_json_value *rel = st_json_object_get(o, "reliability");
    if (o->type != ST_JSON_OBJECT || !isfinite(r->top1) || !rel || rel->type != ST_JSON_ARRAY ||
        rel->count != ST_ECE_BINS)
        s = st_fail(ST_ERR_FORMAT, "%s: not the JSON of `sparsetrain eval` (top1 and %d reliability bins expected)",
                    path, ST_ECE_BINS);
    for (int b = 0; s == ST_OK && b < ST_ECE_BINS; b++) {
        const st_json_value *bin = st_json_array_at(rel, (size_t)b);
        st_reliability_bin *t = &r->reliability[b];
        t->lower = number_or_nan(bin, "lower");
        t->upper = number_or_nan(bin, "upper");
        double count = number_or_nan(bin, "count");
        t->count = as_count(count);
        t->mean_confidence = number_or_nan(bin, "confidence");
        t->accuracy = number_or_nan(bin, "accuracy");
    }
    if (s == ST_OK) {
        read_counts(st_json_object_get(o, "score_histogram_in"), r->hist_in, ST_SCORE_BINS);
        const st_json_value *ood = st_json_object_get(o, "ood");
        if (ood && ood->type == ST_JSON_OBJECT) {
            r->has_ood = 1;
            copy_string(ood, "data", r->ood_data, sizeof r->ood_data);
            r->ood.auroc = number_or_nan(ood, "auroc");
            r->ood.aupr_in = number_or_nan(ood, "aupr_in");
            r->ood.aupr_out = number_or_nan(ood, "aupr_out");
            r->ood.fpr_at_95_tpr = number_or_nan(ood, "fpr_at_95_tpr");
            read_counts(st_json_object_get(ood, "score_histogram_out"), r->hist_out, ST_SCORE_BINS);
        }
        const st_json_value *attack = st_json_object_get(o, "attack");
        if (attack && attack->type == ST_JSON_OBJECT) {
            r->has_attack = 1;
            copy_string(attack, "kind", r->attack_kind, sizeof r->attack_kind);
            r->attack_eps = number_or_nan(attack, "eps");
            r->attack_accuracy = number_or_nan(attack, "accuracy");
            r->attack_count = number_or_nan(attack, "count");
        }
        r->has_eval = 1;
    }
    st_json_free(doc);
    return s;
}

st_status st_report_run_load(const char *dir, st_report_run *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->dir, sizeof out->dir, "%s", dir);
    char trimmed[ST_PATH_MAX];
    snprintf(trimmed, sizeof trimmed, "%s", dir);
    for (size_t n = strlen(trimmed); n > 1 && trimmed[n - 1] == '/'; n--) trimmed[n - 1] = 0;
    const char *base = strrchr(trimmed, '/');
    snprintf(out->name, sizeof out->name, "%s", base ? base + 1 : trimmed);
    DIR *d = opendir(dir);
    if (!d) return st_fail(ST_ERR_IO, "cannot open run folder %s", dir);
    closedir(d);
    char log[ST_PATH_MAX + 300], ck[ST_PATH_MAX + 300], ev[ST_PATH_MAX + 300];
    find_file(dir, "log.jsonl", ".jsonl", log, sizeof log);
    find_file(dir, "checkpoint.safetensors", ".safetensors", ck, sizeof ck);
    snprintf(ev, sizeof ev, "%s/eval.json", dir);
    if (!st_data_path_exists(ev)) ev[0] = 0;
    if (!log[0] && !ck[0] && !ev[0])
        return st_fail(ST_ERR_IO, "run folder %s holds no training log (*.jsonl), checkpoint (*.safetensors) or eval.json",
                       dir);
    snprintf(out->files[0], sizeof out->files[0], "%s", log);
    snprintf(out->files[1], sizeof out->files[1], "%s", ck);
    snprintf(out->files[2], sizeof out->files[2], "%s", ev);
    st_status s = ST_OK;
    if (log[0]) s = load_log(log, out);
    if (s == ST_OK && log[0]) s = sum_log_flops(log, out);
    if (s == ST_OK && ck[0]) s = load_checkpoint(ck, out);
    if (s == ST_OK && ev[0]) s = load_eval(ev, out);
    if (s != ST_OK) st_report_run_free(out);
    return s;
}

void st_report_run_free(st_report_run *r) {
    free(r->layers);
    free(r->epoch), free(r->lr), free(r->train_loss), free(r->train_acc), free(r->val_acc), free(r->test_acc);
    free(r->itop), free(r->update_step), free(r->update_death_rate), free(r->update_itop);
    r->layers = NULL;
    r->epoch = r->lr = r->train_loss = r->train_acc = r->val_acc = r->test_acc = r->itop = NULL;
    r->update_step = r->update_death_rate = r->update_itop = NULL;
    r->n_epochs = r->n_layers = r->n_updates = 0;
}

double st_report_run_accuracy(const st_report_run *r) {
    if (r->has_eval && isfinite(r->top1)) return r->top1;
    for (int i = r->n_epochs - 1; i >= 0; i--)
        if (isfinite(r->test_acc[i])) return r->test_acc[i];
    return NAN;
}
