/* The fuzz targets (see targets.h). Parsers that read files (IDX, CIFAR, tar)
 * get the input written into a private scratch folder first; the others parse
 * it from memory. Every target frees what it built: leaks are findings too. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "targets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/dataset.h"
#include "data/image_folder.h"
#include "flags.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "train/mask_update.h"
#include "io/log_file.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "optim/optimizer.h"
#include "train/run_config.h"
#include "train/run_guard.h"
#include "train/trainer.h"

/* ------------------------------------------------------------ scratch files */

static char scratch[4096];
static const char *const scratch_files[] = {
    "train-images-idx3-ubyte",    "train-labels-idx1-ubyte",    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",     "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",  "t10k-labels-idx1-ubyte.gz",  "test_batch.bin",
    "test.bin",                   "cifar-10-binary.tar.gz",     "cifar-100-binary.tar.gz",
    "archive.tar",                "output.file",                NULL};

void st_fuzz_cleanup(void) {
    if (!scratch[0]) return;
    char path[4200];
    for (int i = 0; scratch_files[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", scratch, scratch_files[i]);
        unlink(path);
    }
    rmdir(scratch);
    scratch[0] = '\0';
}

static const char *scratch_dir(void) {
    if (scratch[0]) return scratch;
    const char *base = getenv("TMPDIR");
    snprintf(scratch, sizeof scratch, "%s/sparsetrain-fuzz-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(scratch)) {
        perror("fuzz: cannot create a scratch folder");
        abort();
    }
    atexit(st_fuzz_cleanup);
    return scratch;
}

/* Writes `size` bytes to scratch/name, or removes the file when data is NULL. */
static void put_file(const char *name, const uint8_t *data, size_t size) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", scratch_dir(), name);
    unlink(path);
    if (!data) return;
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

static void clear_scratch(void) {
    for (int i = 0; scratch_files[i]; i++) put_file(scratch_files[i], NULL, 0);
}

/* A loaded data set must be internally consistent. */
static void check_dataset(const st_dataset *d) {
    if (d->count <= 0 || !d->pixels || !d->labels) abort();
    size_t image = (size_t)d->channels * (size_t)d->height * (size_t)d->width;
    volatile unsigned sum = 0;
    for (int64_t i = 0; i < d->count; i++) {
        if (d->labels[i] < 0 || d->labels[i] >= d->num_classes) abort();
        sum += d->pixels[(size_t)i * image] + d->pixels[(size_t)(i + 1) * image - 1];
    }
    (void)sum;
}

/* ------------------------------------------------------------------- IDX */

/* Input: flags byte (bit 0: training split, bit 1: fashion-mnist, bit 2:
 * .gz file names), 2 bytes little-endian label-file length L, L bytes of
 * label file, then the image file. */
static void idx_common(const uint8_t *data, size_t size, int force_gz) {
    if (size < 3) return;
    int train = data[0] & 1, fashion = (data[0] >> 1) & 1, gz = force_gz || ((data[0] >> 2) & 1);
    size_t label_len = (size_t)data[1] | ((size_t)data[2] << 8);
    data += 3;
    size -= 3;
    if (label_len > size) label_len = size;
    clear_scratch();
    char images[64], labels[64];
    snprintf(images, sizeof images, "%s-images-idx3-ubyte%s", train ? "train" : "t10k", gz ? ".gz" : "");
    snprintf(labels, sizeof labels, "%s-labels-idx1-ubyte%s", train ? "train" : "t10k", gz ? ".gz" : "");
    put_file(labels, data, label_len);
    put_file(images, data + label_len, size - label_len);
    st_dataset d;
    if (st_dataset_load(fashion ? "fashion-mnist" : "mnist", scratch_dir(), train, &d) == ST_OK) check_dataset(&d);
    st_dataset_free(&d);
}

static void fuzz_idx(const uint8_t *data, size_t size) { idx_common(data, size, 0); }
static void fuzz_idx_gz(const uint8_t *data, size_t size) { idx_common(data, size, 1); }

/* ----------------------------------------------------------------- CIFAR */

/* Input: flags byte (bit 0: CIFAR-100), then the test-split file. */
static void fuzz_cifar(const uint8_t *data, size_t size) {
    if (size < 1) return;
    int c100 = data[0] & 1;
    clear_scratch();
    put_file(c100 ? "test.bin" : "test_batch.bin", data + 1, size - 1);
    st_dataset d;
    if (st_dataset_load(c100 ? "cifar100" : "cifar10", scratch_dir(), 0, &d) == ST_OK) check_dataset(&d);
    st_dataset_free(&d);
}

/* Input: flags byte (bit 0: CIFAR-100), then one python-version batch (a
 * pickle), read from memory by the pickle-subset reader. */
static void fuzz_cifar_py(const uint8_t *data, size_t size) {
    if (size < 1) return;
    st_dataset d;
    memset(&d, 0, sizeof d);
    d.channels = 3;
    d.height = d.width = 32;
    d.num_classes = (data[0] & 1) ? 100 : 10;
    if (st_cifar_pickle_append(&d, data + 1, size - 1, data[0] & 1, "fuzz input") == ST_OK) check_dataset(&d);
    st_dataset_free(&d);
}

/* ------------------------------------------------------------------- tar */

/* Input: flags byte (bit 0: CIFAR-100 archive name), then the archive
 * (.tar or .tar.gz bytes). The archive is read twice: by the member reader
 * directly (small size cap) and through the CIFAR loader. */
static void fuzz_tar(const uint8_t *data, size_t size) {
    if (size < 1) return;
    int c100 = data[0] & 1;
    clear_scratch();
    put_file("archive.tar", data + 1, size - 1);
    char path[4200];
    snprintf(path, sizeof path, "%s/archive.tar", scratch_dir());
    st_tar_member members[3] = {{.wanted = "test_batch.bin"}, {.wanted = "test.bin"}, {.wanted = "a"}};
    if (st_tar_read_members(path, members, 3, 1 << 16) == ST_OK) {
        for (int i = 0; i < 3; i++) {
            volatile uint8_t sink = 0;
            if (members[i].data && members[i].size) sink = members[i].data[members[i].size - 1];
            (void)sink;
            free(members[i].data);
        }
    }
    put_file(c100 ? "cifar-100-binary.tar.gz" : "cifar-10-binary.tar.gz", data + 1, size - 1);
    st_dataset d;
    if (st_dataset_load(c100 ? "cifar100" : "cifar10", scratch_dir(), 0, &d) == ST_OK) check_dataset(&d);
    st_dataset_free(&d);
}

/* ----------------------------------------------------------- safetensors */

/* Reads every byte of every tensor and all metadata, then writes the file
 * again from what was read: that must parse and give the same tensors. */
static void fuzz_safetensors(const uint8_t *data, size_t size) {
    st_safetensors *f;
    if (st_safetensors_read_memory(data, size, "fuzz input", &f) != ST_OK) return;
    int n = st_safetensors_count(f), n_meta = st_safetensors_meta_count(f);
    st_tensor_entry *tensors = calloc((size_t)n + 1, sizeof *tensors);
    st_meta_entry *meta = calloc((size_t)n_meta + 1, sizeof *meta);
    if (!tensors || !meta) abort();
    volatile unsigned sum = 0;
    for (int i = 0; i < n; i++) {
        tensors[i] = *st_safetensors_get(f, i);
        size_t bytes = (size_t)st_tensor_numel(&tensors[i]) * st_dtype_size(tensors[i].dtype);
        for (size_t k = 0; k < bytes; k++) sum += ((const uint8_t *)tensors[i].data)[k];
        if (st_safetensors_find(f, tensors[i].name) == NULL) abort();
    }
    for (int i = 0; i < n_meta; i++) {
        meta[i] = *st_safetensors_meta_get(f, i);
        if (strcmp(st_safetensors_meta(f, meta[i].key), meta[i].value) != 0) abort();
    }
    void *again;
    size_t again_size;
    if (st_safetensors_serialize(tensors, n, meta, n_meta, &again, &again_size) == ST_OK) {
        st_safetensors *g;
        if (st_safetensors_read_memory(again, again_size, "fuzz round trip", &g) != ST_OK) abort();
        if (st_safetensors_count(g) != n) abort();
        for (int i = 0; i < n; i++) {
            const st_tensor_entry *t = st_safetensors_find(g, tensors[i].name);
            size_t bytes = (size_t)st_tensor_numel(&tensors[i]) * st_dtype_size(tensors[i].dtype);
            if (!t || t->dtype != tensors[i].dtype || t->ndim != tensors[i].ndim ||
                (bytes && memcmp(t->data, tensors[i].data, bytes) != 0))
                abort();
        }
        st_safetensors_free(g);
        free(again);
    }
    (void)sum;
    free(tensors);
    free(meta);
    st_safetensors_free(f);
}

/* --------------------------------------------------------- checkpoints */

/* Models small enough to build for every input: cifar_resnet_N_W with
 * N <= 20 and W <= 4, and lenet300-100; inputs of at most 4x32x32, 100 classes. */
static int cheap_model(const char *name, int classes, int channels, int height, int width) {
    if (classes > 100 || channels > 4 || height > 32 || width > 32) return 0;
    if (strcmp(name, "lenet300-100") == 0) return 1;
    int depth = 0, w = 0;
    char tail;
    return sscanf(name, "cifar_resnet_%d_%d%c", &depth, &w, &tail) == 2 && depth <= 20 && w <= 4;
}

/* Input: a safetensors file read as a checkpoint the way eval and --resume
 * read it: description, progress counters, the run's arguments, and (for
 * small models) weights, masks, best copy and optimiser state. */
static void fuzz_checkpoint(const uint8_t *data, size_t size) {
    st_safetensors *f;
    if (st_safetensors_read_memory(data, size, "fuzz.safetensors", &f) != ST_OK) return;
    st_checkpoint_info info;
    (void)st_checkpoint_read_info(f, "fuzz.safetensors", &info);
    const char *args = st_safetensors_meta(f, "args");
    if (args) {
        st_train_config c;
        st_train_config_defaults(&c);
        (void)st_train_config_from_json(args, "fuzz.safetensors", &c);
    }
    char model[64];
    int classes, channels, height, width;
    st_model *m = NULL;
    if (st_checkpoint_describe(f, "fuzz.safetensors", model, sizeof model, &classes, &channels, &height, &width) ==
            ST_OK &&
        cheap_model(model, classes, channels, height, width) &&
        st_model_create(model, classes, channels, height, width, &m) == ST_OK) {
        (void)st_checkpoint_load_model(f, "fuzz.safetensors", m, "");
        (void)st_checkpoint_load_model(f, "fuzz.safetensors", m, "best.");
        /* dynamic sparse training's ITOP record, restored as --resume does (it must contain the mask) */
        uint8_t **fired = calloc((size_t)m->n_params + 1, sizeof *fired);
        int found = 0;
        if (!fired) abort();
        if (st_checkpoint_load_itop(f, "fuzz.safetensors", m, fired, &found) == ST_OK && found > 0) {
            st_mask_update_settings set = {0};
            st_mask_updater *u = NULL;
            if (st_mask_updater_create(m, &set, &u) == ST_OK) (void)st_mask_updater_restore(u, m, fired);
            st_mask_updater_free(u);
        }
        for (int i = 0; i < m->n_params; i++) free(fired[i]);
        free(fired);
        /* --growth momentum's dense momentum, restored as --resume does (SGD and Adam) */
        float **m1 = calloc((size_t)m->n_params + 1, sizeof *m1), **m2 = calloc((size_t)m->n_params + 1, sizeof *m2);
        if (!m1 || !m2) abort();
        if (st_checkpoint_load_growth_momentum(f, "fuzz.safetensors", m, m1, m2, &found) == ST_OK && found > 0)
            for (int adam = 0; adam < 2; adam++) {
                st_mask_update_settings set = {.dynamic = 1, .growth = ST_GROWTH_MOMENTUM, .frequency = 1,
                                               .total_steps = 2, .adam = adam};
                st_mask_updater *u = NULL;
                if (st_mask_updater_create(m, &set, &u) == ST_OK) (void)st_mask_updater_restore_momentum(u, m, m1, m2);
                st_mask_updater_free(u);
            }
        for (int i = 0; i < m->n_params; i++) free(m1[i]), free(m2[i]);
        free(m1), free(m2);
        for (int kind = 0; kind < 2; kind++) {
            st_optimizer opt;
            if (st_optimizer_create(&opt, m, kind ? ST_OPTIMIZER_ADAM : ST_OPTIMIZER_SGD, 0.9, 1, 0) != ST_OK) abort();
            (void)st_checkpoint_load_optimizer(f, "fuzz.safetensors", m, &opt);
            st_optimizer_free(&opt);
        }
    }
    st_model_free(m);
    st_safetensors_free(f);
}

/* ------------------------------------------------------------------ JSON */

static void rewrite_json(st_json_builder *b, const st_json_value *v) {
    switch (v->type) {
    case ST_JSON_NULL: st_json_append_text(b, "null"); break;
    case ST_JSON_BOOL: st_json_append_text(b, v->boolean ? "true" : "false"); break;
    case ST_JSON_NUMBER:
        if (v->is_int64)
            st_json_append_int(b, v->int64);
        else
            st_json_append_double(b, v->number);
        break;
    case ST_JSON_STRING: st_json_append_string_n(b, v->string, v->string_length); break;
    case ST_JSON_ARRAY:
    case ST_JSON_OBJECT:
        st_json_append_text(b, v->type == ST_JSON_ARRAY ? "[" : "{");
        for (const st_json_value *c = v->first_child; c; c = c->next) {
            if (c != v->first_child) st_json_append_text(b, ",");
            if (v->type == ST_JSON_OBJECT) {
                st_json_append_string_n(b, c->key, c->key_length);
                st_json_append_text(b, ":");
                if (st_json_object_get(v, c->key) == NULL && strlen(c->key) == c->key_length) abort();
            }
            rewrite_json(b, c);
        }
        st_json_append_text(b, v->type == ST_JSON_ARRAY ? "]" : "}");
        break;
    }
}

/* Input: JSON text. What parses is written back with the builder; that text
 * must parse again (the writer and the reader agree). */
static void fuzz_json(const uint8_t *data, size_t size) {
    st_json_document *doc;
    if (st_json_parse((const char *)data, size, "fuzz.json", NULL, &doc) != ST_OK) return;
    st_json_builder b;
    st_json_builder_init(&b);
    rewrite_json(&b, st_json_root(doc));
    char *text;
    size_t length;
    if (st_json_builder_finish(&b, &text, &length) != ST_OK) abort();
    st_json_document *again;
    if (st_json_parse(text, length, "fuzz rewrite", NULL, &again) != ST_OK) {
        fprintf(stderr, "rewritten JSON does not parse: %s\n", st_last_error());
        abort();
    }
    if (st_json_root(again)->type != st_json_root(doc)->type) abort();
    st_json_free(again);
    free(text);
    st_json_free(doc);
}

/* ---------------------------------------------------------------- flags */

/* Input: command-line arguments separated by NUL bytes (at most 64), parsed
 * against a table with every flag type, names that are prefixes of others,
 * and ignored and refused compatibility flags; odd-sized inputs also with
 * short flags (one naming no flag of the table) and a positional argument. */
static void fuzz_flags(const uint8_t *data, size_t size) {
    char *copy = malloc(size + 1);
    if (!copy) abort();
    if (size) memcpy(copy, data, size);
    copy[size] = '\0';
    char *argv[66];
    int argc = 0;
    argv[argc++] = "sparsetrain";
    argv[argc++] = "fuzz";
    for (size_t start = 0; start <= size && argc < 66;) {
        argv[argc++] = copy + start;
        start += strlen(copy + start) + 1;
    }
    char text[16] = "";
    int integer = 0, on = 0;
    uint64_t u64 = 0;
    double real = 0;
    st_flag flags[] = {
        {"model", ST_FLAG_STRING, text, sizeof text, 0, "a string", NULL, NULL, 0},
        {"batch-size", ST_FLAG_INT, &integer, 0, 0, "an integer", NULL, NULL, 0},
        {"seed", ST_FLAG_U64, &u64, 0, 0, "an unsigned integer", NULL, NULL, 0},
        {"lr", ST_FLAG_DOUBLE, &real, 0, 0, "a number", NULL, NULL, 0},
        {"sparse", ST_FLAG_SWITCH, &on, 0, 1, "a switch", NULL, NULL, 0},
        {"no_sparse", ST_FLAG_SWITCH, &on, 0, 0, "a switch", NULL, NULL, 0},
        {"sparse_init", ST_FLAG_STRING, text, sizeof text, 0, "a prefix collision", NULL, NULL, 0},
        {"l1", ST_FLAG_DOUBLE, NULL, 0, 0, "an ignored number", "unused", NULL, 0},
        {"no-cuda", ST_FLAG_SWITCH, NULL, 0, 1, "an ignored switch", "no GPU", NULL, 0},
        {"fp16", ST_FLAG_SWITCH, NULL, 0, 1, "a refused switch", NULL, "not yet", 0},
    };
    /* odd sizes: with short flags and a positional argument (train's reference ImageNet command line) */
    static const st_short_flag shorts[] = {{'b', "batch-size"}, {'s', "sparse"}, {'x', "not-in-the-table"}};
    char folder[8] = "";
    int r = size % 2 ? st_flags_parse_extended("fuzz", "usage: fuzz", flags, (int)(sizeof flags / sizeof flags[0]),
                                               argc, argv, 2, shorts, 3, folder, sizeof folder, "folder")
                     : st_flags_parse("fuzz", "usage: fuzz", flags, (int)(sizeof flags / sizeof flags[0]), argc, argv, 2);
    if (r < -1 || r > 1 || strlen(text) >= sizeof text || strlen(folder) >= sizeof folder) abort();
    free(copy);
}

/* ---------------------------------------------------------------- table */

/* ---------------------------------------------------------- output guard */

/* Input: the contents of a file found at an output path. The guard's
 * classifier, the --save guard (safetensors header only), the log's run-id
 * reader and the log guard must never crash, and a missing or empty file is
 * always fair game. */
static void fuzz_output_guard(const uint8_t *data, size_t size) {
    put_file("output.file", data, size);
    char path[4200], id[64];
    snprintf(path, sizeof path, "%s/output.file", scratch_dir());
    st_file_kind kind;
    if (st_file_kind_of(path, &kind) != ST_OK) abort(); /* a regular readable file */
    if (size == 0 && kind != ST_FILE_EMPTY) abort();
    for (int k = ST_FILE_CHECKPOINT; k <= ST_FILE_OTHER; k++) {
        st_status s = st_output_check(path, "--out", (st_file_kind)k, 0);
        if ((k == (int)kind || size == 0) && s != ST_OK) abort();
    }
    st_save_guard(path, "0123456789abcdef0123456789abcdef", "", 0);
    st_log_run_id(path, id, sizeof id);
    st_log_check(path, "--log", "0123456789abcdef0123456789abcdef", 1, 0);
    put_file("output.file", NULL, 0);
}

/* ------------------------------------------------------------------ jpeg */

/* Decodes the input as one ImageFolder image would be, then runs both
 * transforms on what came out: the training crop at a few positions and the
 * evaluation resize + center crop, into a 32 x 32 output. */
static void fuzz_jpeg(const uint8_t *data, size_t size) {
    st_rgb_image img = {0};
    if (st_jpeg_decode(data, size, "fuzz input", &img) == ST_OK) {
        if (img.width < 1 || img.height < 1 || (size_t)img.width * img.height * 3 > img.capacity) abort();
        enum { S = 32 };
        uint8_t out[S * S * 3];
        for (int position = 0; position < 3; position++) {
            st_crop c = st_random_resized_crop(7, 0, position, img.height, img.width, NULL);
            if (c.top < 0 || c.left < 0 || c.height < 1 || c.width < 1 || c.top + c.height > img.height ||
                c.left + c.width > img.width)
                abort();
            (void)st_image_resize_bilinear(img.pixels, img.width, c.top, c.left, c.height, c.width, S, S, out);
        }
        int rh, rw;
        st_crop c;
        st_eval_geometry(img.height, img.width, st_eval_resize_size(S), S, &rh, &rw, &c);
        if ((uint64_t)rh * rw <= (1u << 22)) {
            st_status s = st_image_resize_bilinear_window(img.pixels, img.width, 0, 0, img.height, img.width, rh, rw,
                                                          c.top, c.left, S, S, out);
            if (s != ST_OK && s != ST_ERR_NOMEM) abort(); /* the center crop always fits the resized image */
        }
    }
    st_rgb_image_free(&img);
}

const st_fuzz_target st_fuzz_targets[] = {
    {"idx", fuzz_idx},   {"idx_gz", fuzz_idx_gz},         {"cifar", fuzz_cifar}, {"cifar_py", fuzz_cifar_py},
    {"tar", fuzz_tar},   {"safetensors", fuzz_safetensors}, {"checkpoint", fuzz_checkpoint},
    {"json", fuzz_json}, {"flags", fuzz_flags},           {"jpeg", fuzz_jpeg},
    {"output_guard", fuzz_output_guard},
    {NULL, NULL},
};

const st_fuzz_target *st_fuzz_find(const char *name) {
    for (int i = 0; st_fuzz_targets[i].name; i++)
        if (strcmp(st_fuzz_targets[i].name, name) == 0) return &st_fuzz_targets[i];
    return NULL;
}
