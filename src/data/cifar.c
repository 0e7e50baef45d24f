/* CIFAR-10 and CIFAR-100, official binary version: fixed-size records of label
 * byte(s) + 3072 pixel bytes (1024 R, 1024 G, 1024 B, rows top to bottom), read
 * from a folder, the archive's sub-folder, or the .tar.gz archive itself. */
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
} cifar_layout;

static const cifar_layout cifar10_layout = {"cifar-10-batches-bin", "cifar-10-binary.tar.gz", 1, 10};
static const cifar_layout cifar100_layout = {"cifar-100-binary", "cifar-100-binary.tar.gz", 2, 100};

/* Validates one file's records and appends them to `d` (file order is kept). */
static st_status append_records(st_dataset *d, const cifar_layout *layout, const uint8_t *raw, size_t size,
                                const char *where) {
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

st_status st_cifar_load(const char *name, const char *dir, int train, int cifar100, st_dataset *out) {
    memset(out, 0, sizeof *out);
    if (!dir) return st_fail(ST_ERR_ARGUMENT, "%s: no data folder given", name);
    const cifar_layout *layout = cifar100 ? &cifar100_layout : &cifar10_layout;
    static const char *const cifar10_train[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                                "data_batch_4.bin", "data_batch_5.bin"};
    static const char *const cifar10_test[] = {"test_batch.bin"};
    static const char *const cifar100_train[] = {"train.bin"};
    static const char *const cifar100_test[] = {"test.bin"};
    const char *const *files = cifar100 ? (train ? cifar100_train : cifar100_test)
                                        : (train ? cifar10_train : cifar10_test);
    int nfiles = (!cifar100 && train) ? 5 : 1;
    size_t max_file = (size_t)(cifar100 && train ? CIFAR100_TRAIN_RECORDS : CIFAR_BATCH_RECORDS) *
                      ((size_t)layout->label_bytes + CIFAR_IMAGE_BYTES);

    size_t cap = strlen(dir) + 128;
    char *path = st_malloc(cap, "file name");
    char *sub = st_malloc(cap, "file name");
    if (!path || !sub) {
        free(path);
        free(sub);
        return ST_ERR_NOMEM;
    }
    snprintf(sub, cap, "%s/%s", dir, layout->subdir);
    st_status s;
    /* Which of the three layouts is present is decided by the first file, so
     * a half-populated folder reports the file that is missing. */
    snprintf(path, cap, "%s/%s", dir, files[0]);
    if (st_data_path_exists(path)) {
        s = load_from_folder(out, layout, dir, files, nfiles, max_file);
    } else if (snprintf(path, cap, "%s/%s", sub, files[0]), st_data_path_exists(path)) {
        s = load_from_folder(out, layout, sub, files, nfiles, max_file);
    } else if (snprintf(path, cap, "%s/%s", dir, layout->archive), st_data_path_exists(path)) {
        s = load_from_archive(out, layout, path, files, nfiles, max_file);
    } else if (st_data_path_exists(sub)) {
        s = load_from_folder(out, layout, sub, files, nfiles, max_file);
    } else {
        s = st_fail(ST_ERR_IO, "%s: cannot find %s/%s, %s/%s or %s/%s", name, dir, files[0], sub, files[0], dir,
                    layout->archive);
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
    out->num_classes = layout->classes;
    static const float mean10[3] = {0.4914f, 0.4822f, 0.4465f}, std10[3] = {0.2023f, 0.1994f, 0.2010f};
    static const float mean100[3] = {0.5071f, 0.4865f, 0.4409f}, std100[3] = {0.2673f, 0.2564f, 0.2762f};
    memcpy(out->mean, cifar100 ? mean100 : mean10, sizeof out->mean);
    memcpy(out->std, cifar100 ? std100 : std10, sizeof out->std);
    snprintf(out->name, sizeof out->name, "%s", cifar100 ? "cifar100" : "cifar10");
    return ST_OK;
}
