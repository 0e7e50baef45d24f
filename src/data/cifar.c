/* CIFAR-10 and CIFAR-100 from a folder, the archive's sub-folder, or the
 * .tar.gz archive itself, in either official version:
 *   binary: fixed-size records of label byte(s) + 3072 pixel bytes (1024 R,
 *     1024 G, 1024 B, rows top to bottom);
 *   python: pickled batches (what torchvision downloads), read by the strict
 *     pickle-subset reader of cifar_pickle.c; same pixel layout. */
#include "data/dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

#define CIFAR_SIDE 32
#define CIFAR_IMAGE_BYTES (3 * CIFAR_SIDE * CIFAR_SIDE)
/* The official files hold 10000 records (CIFAR-10 batches, CIFAR-100
 * test.bin) or 50000 (CIFAR-100 train.bin): a file or archive member larger
 * than that is refused before it is read. */
#define CIFAR_BATCH_RECORDS 10000
#define CIFAR100_TRAIN_RECORDS 50000

typedef struct cifar_layout {
    const char *subdir;  /* folder inside the archive */
    const char *archive; /* official archive name */
    int label_bytes;     /* 1 (CIFAR-10) or 2 (coarse, fine: CIFAR-100) */
    int classes;         /* of the label used */
    int python;          /* pickled batches instead of binary records */
} cifar_layout;

static const cifar_layout cifar10_layout = {"cifar-10-batches-bin", "cifar-10-binary.tar.gz", 1, 10, 0};
static const cifar_layout cifar100_layout = {"cifar-100-binary", "cifar-100-binary.tar.gz", 2, 100, 0};
static const cifar_layout cifar10_py_layout = {"cifar-10-batches-py", "cifar-10-python.tar.gz", 1, 10, 1};
static const cifar_layout cifar100_py_layout = {"cifar-100-python", "cifar-100-python.tar.gz", 2, 100, 1};

/* Validates one file's records and appends them to `d` (file order is kept). */
static st_status append_records(st_dataset *d, const cifar_layout *layout, const uint8_t *raw, size_t size,
                                const char *where) {
    if (layout->python) return st_cifar_pickle_append(d, raw, size, layout->classes == 100, where);
    size_t record = (size_t)layout->label_bytes + CIFAR_IMAGE_BYTES;
    if (size == 0) return st_fail(ST_ERR_FORMAT, "%s: empty file", where);
    if (size % record != 0)
        return st_fail(ST_ERR_FORMAT,
                       "%s: size %zu bytes is not a multiple of the %zu-byte record (truncated or not a CIFAR%s "
                       "binary file)",
                       where, size, record, layout->classes == 100 ? "-100" : "-10");
    size_t n = size / record;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *r = raw + i * record;
        if (layout->label_bytes == 2 && r[0] >= 20)
            return st_fail(ST_ERR_FORMAT, "%s: coarse label %u of record %zu is out of range (expected 0..19)", where,
                           (unsigned)r[0], i);
        unsigned label = r[layout->label_bytes - 1];
        if (label >= (unsigned)layout->classes)
            return st_fail(ST_ERR_FORMAT, "%s: label %u of record %zu is out of range (expected 0..%d)", where, label,
                           i, layout->classes - 1);
    }
    size_t total = (size_t)d->count + n;
    uint8_t *pixels = realloc(d->pixels, total * CIFAR_IMAGE_BYTES);
    if (!pixels) return st_fail(ST_ERR_NOMEM, "out of memory loading %s", where);
    d->pixels = pixels;
    int32_t *labels = realloc(d->labels, total * sizeof(int32_t));
    if (!labels) return st_fail(ST_ERR_NOMEM, "out of memory loading %s", where);
    d->labels = labels;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *r = raw + i * record;
        memcpy(d->pixels + ((size_t)d->count + i) * CIFAR_IMAGE_BYTES, r + layout->label_bytes, CIFAR_IMAGE_BYTES);
        d->labels[(size_t)d->count + i] = r[layout->label_bytes - 1];
    }
    d->count = (int64_t)total;
    return ST_OK;
}

static st_status load_from_folder(st_dataset *d, const cifar_layout *layout, const char *folder,
                                  const char *const *files, int nfiles, size_t max_file) {
    size_t cap = strlen(folder) + 64;
    char *path = st_malloc(cap, "file name");
    if (!path) return ST_ERR_NOMEM;
    st_status s = ST_OK;
    for (int i = 0; i < nfiles && s == ST_OK; i++) {
        snprintf(path, cap, "%s/%s", folder, files[i]);
        uint8_t *raw;
        size_t size;
        s = st_data_read_file(path, max_file, &raw, &size);
        if (s != ST_OK) break;
        s = append_records(d, layout, raw, size, path);
        free(raw);
    }
    free(path);
    return s;
}

static st_status load_from_archive(st_dataset *d, const cifar_layout *layout, const char *archive,
                                   const char *const *files, int nfiles, size_t max_file) {
    st_tar_member members[6];
    for (int i = 0; i < nfiles; i++) members[i].wanted = files[i];
    ST_TRY(st_tar_read_members(archive, members, nfiles, max_file));
    st_status s = ST_OK;
    for (int i = 0; i < nfiles && s == ST_OK; i++) {
        if (!members[i].data) {
            s = st_fail(ST_ERR_FORMAT, "%s: the archive has no member %s/%s", archive, layout->subdir, files[i]);
            break;
        }
        char where[1024];
        snprintf(where, sizeof where, "%s (member %s)", archive, files[i]);
        s = append_records(d, layout, members[i].data, members[i].size, where);
        /* Release each member as soon as it is copied to keep the peak low. */
        free(members[i].data);
        members[i].data = NULL;
    }
    for (int i = 0; i < nfiles; i++) free(members[i].data);
    return s;
}

/* 1 when `layout` is present in `dir`: its first file directly in dir or in
 * the sub-folder, its archive, or the sub-folder alone (the python version's
 * files have no extension, so they must be regular files). *where: 0 folder,
 * 1 sub-folder, 2 archive (then `path` names it). */
static int layout_present(const cifar_layout *layout, const char *dir, const char *first, char *path, size_t cap,
                          int *where) {
    snprintf(path, cap, "%s/%s", dir, first);
    if (layout->python ? st_data_is_file(path) : st_data_path_exists(path)) return *where = 0, 1;
    snprintf(path, cap, "%s/%s/%s", dir, layout->subdir, first);
    if (st_data_path_exists(path)) return *where = 1, 1;
    snprintf(path, cap, "%s/%s", dir, layout->archive);
    if (st_data_path_exists(path)) return *where = 2, 1;
    snprintf(path, cap, "%s/%s", dir, layout->subdir); /* the folder without the file: report the file */
    if (st_data_path_exists(path)) return *where = 1, 1;
    return 0;
}

static void cifar_files(int cifar100, int python, int train, const char *const **files, int *nfiles) {
    static const char *const c10_train[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                            "data_batch_4.bin", "data_batch_5.bin"};
    static const char *const c10_test[] = {"test_batch.bin"};
    static const char *const c100_train[] = {"train.bin"};
    static const char *const c100_test[] = {"test.bin"};
    static const char *const c10py_train[] = {"data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                                              "data_batch_5"};
    static const char *const c10py_test[] = {"test_batch"};
    static const char *const c100py_train[] = {"train"};
    static const char *const c100py_test[] = {"test"};
    if (cifar100)
        *files = python ? (train ? c100py_train : c100py_test) : (train ? c100_train : c100_test);
    else
        *files = python ? (train ? c10py_train : c10py_test) : (train ? c10_train : c10_test);
    *nfiles = (!cifar100 && train) ? 5 : 1;
}

int st_cifar_present(const char *dir, int cifar100) {
    if (!dir) return 0;
    size_t cap = strlen(dir) + 128;
    char *path = malloc(cap);
    if (!path) return 0;
    int found = 0, where;
    for (int python = 0; python < 2 && !found; python++) {
        const char *const *files;
        int n;
        cifar_files(cifar100, python, 0, &files, &n);
        const cifar_layout *layout = cifar100 ? (python ? &cifar100_py_layout : &cifar100_layout)
                                              : (python ? &cifar10_py_layout : &cifar10_layout);
        found = layout_present(layout, dir, files[0], path, cap, &where);
    }
    free(path);
    return found;
}

st_status st_cifar_load(const char *name, const char *dir, int train, int cifar100, st_dataset *out) {
    memset(out, 0, sizeof *out);
    if (!dir) return st_fail(ST_ERR_ARGUMENT, "%s: no data folder given", name);
    size_t cap = strlen(dir) + 128;
    char *path = st_malloc(cap, "file name");
    char *sub = st_malloc(cap, "file name");
    if (!path || !sub) {
        free(path);
        free(sub);
        return ST_ERR_NOMEM;
    }
    /* Which layout is present is decided by the test split's first file, so
     * a half-populated folder reports the file that is missing. The binary
     * version is looked for first, then the python version. */
    st_status s = ST_OK;
    int found = 0;
    for (int python = 0; python < 2 && !found; python++) {
        const cifar_layout *layout = cifar100 ? (python ? &cifar100_py_layout : &cifar100_layout)
                                              : (python ? &cifar10_py_layout : &cifar10_layout);
        const char *const *files, *const *test_files;
        int nfiles, ntest, where;
        cifar_files(cifar100, python, train, &files, &nfiles);
        cifar_files(cifar100, python, 0, &test_files, &ntest);
        if (!layout_present(layout, dir, test_files[0], path, cap, &where) &&
            !layout_present(layout, dir, files[0], path, cap, &where))
            continue;
        found = 1;
        snprintf(sub, cap, "%s/%s", dir, layout->subdir);
        /* a file holds at most the official record count (pickles: plus file names, label lists and framing:
         * 1.55 MB in the real CIFAR-100 train file, 0.3 MB in a CIFAR-10 batch) */
        const size_t records = (size_t)(cifar100 && train ? CIFAR100_TRAIN_RECORDS : CIFAR_BATCH_RECORDS);
        const size_t max_file = records * ((size_t)layout->label_bytes + CIFAR_IMAGE_BYTES) +
                                (layout->python ? records * 64 + ((size_t)1 << 20) : 0);
        if (where == 0) s = load_from_folder(out, layout, dir, files, nfiles, max_file);
        else if (where == 1) s = load_from_folder(out, layout, sub, files, nfiles, max_file);
        else s = load_from_archive(out, layout, path, files, nfiles, max_file);
    }
    if (!found) {
        const cifar_layout *b = cifar100 ? &cifar100_layout : &cifar10_layout;
        const cifar_layout *p = cifar100 ? &cifar100_py_layout : &cifar10_py_layout;
        const char *const *bf, *const *pf;
        int nb, np;
        cifar_files(cifar100, 0, train, &bf, &nb);
        cifar_files(cifar100, 1, train, &pf, &np);
        s = st_fail(ST_ERR_IO,
                    "%s: cannot find the data set in %s: looked for %s, %s/ or %s (binary version) and %s, %s/ or %s "
                    "(python version)",
                    name, dir, bf[0], b->subdir, b->archive, pf[0], p->subdir, p->archive);
    }
    free(path);
    free(sub);
    if (s != ST_OK) {
        st_dataset_free(out);
        return s;
    }
    out->channels = 3;
    out->height = CIFAR_SIDE;
    out->width = CIFAR_SIDE;
    out->num_classes = cifar100 ? 100 : 10;
    /* normalisation: the catalogue's (data/catalog.c) */
    snprintf(out->name, sizeof out->name, "%s", cifar100 ? "cifar100" : "cifar10");
    return ST_OK;
}
