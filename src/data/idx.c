/* MNIST and Fashion-MNIST in the IDX format (big-endian header: magic 0x0000080N
 * with N dimensions of unsigned bytes, then N 32-bit sizes, then the data),
 * plain or gzip-compressed, validated before anything is trusted. */
#include "data/dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

#define IDX_MAX_BYTES ((size_t)1 << 31)
#define MNIST_SIDE 28
#define MNIST_CLASSES 10
/* MNIST and Fashion-MNIST hold 60000 training and 10000 test images: a
 * header declaring more is refused before the file is read. */
#define IDX_MAX_TRAIN 60000u
#define IDX_MAX_TEST 10000u

static uint32_t read_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Finds dir/base, else dir/base.gz; fills `path` with the one found. */
static st_status find_idx_file(const char *dataset, const char *dir, const char *base, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", dir, base);
    if (st_data_path_exists(path)) return ST_OK;
    snprintf(path, cap, "%s/%s.gz", dir, base);
    if (st_data_path_exists(path)) return ST_OK;
    return st_fail(ST_ERR_IO, "%s: cannot find %s/%s or %s/%s.gz", dataset, dir, base, dir, base);
}

/* Reads an IDX file of unsigned bytes with `ndims` dimensions; on success *data
 * holds only the payload (header removed) and dims[] the sizes. */
static st_status read_idx(const char *path, int ndims, uint32_t max_count, uint32_t dims[3], uint8_t **data,
                          size_t *payload) {
    /* The header first: magic, sizes and the count this data set can have
     * are checked before the file is read (or inflated) any further. */
    uint8_t head[16];
    size_t got;
    ST_TRY(st_data_read_head(path, head, 4 + 4 * (size_t)ndims, &got));
    const char *what = ndims == 3 ? "image" : "label";
    if (got >= 4 && read_be32(head) != (0x00000800u | (uint32_t)ndims))
        return st_fail(ST_ERR_FORMAT, "%s: not an IDX %s file (magic 0x%08x, expected 0x%08x)", path, what,
                       (unsigned)read_be32(head), 0x00000800u | (unsigned)ndims);
    uint64_t declared = 4 + 4 * (uint64_t)ndims;
    if (got == 4 + 4 * (size_t)ndims) {
        uint32_t count = read_be32(head + 4);
        if (count > max_count)
            return st_fail(ST_ERR_FORMAT, "%s: the header declares %u %ss; this data set has at most %u", path,
                           (unsigned)count, what, (unsigned)max_count);
        uint64_t body = count;
        for (int i = 1; i < ndims; i++) {
            uint32_t side = read_be32(head + 4 + 4 * i);
            if (side != MNIST_SIDE)
                return st_fail(ST_ERR_FORMAT, "%s: images are %ux%u, MNIST-style images are %dx%d", path,
                               (unsigned)read_be32(head + 8), (unsigned)read_be32(head + 12), MNIST_SIDE, MNIST_SIDE);
            body *= side;
        }
        declared += body;
    }
    uint8_t *buf;
    size_t size;
    ST_TRY(st_data_read_file(path, declared < IDX_MAX_BYTES ? (size_t)declared : IDX_MAX_BYTES, &buf, &size));
    size_t header = 4 + 4 * (size_t)ndims;
    const char *kind = ndims == 3 ? "image" : "label";
    if (size < 4) {
        free(buf);
        return st_fail(ST_ERR_FORMAT, "%s: truncated IDX file (%zu bytes, no header)", path, size);
    }
    uint32_t magic = read_be32(buf);
    if (magic != (0x00000800u | (uint32_t)ndims)) {
        free(buf);
        return st_fail(ST_ERR_FORMAT, "%s: not an IDX %s file (magic 0x%08x, expected 0x%08x)", path, kind,
                       (unsigned)magic, 0x00000800u | (unsigned)ndims);
    }
    if (size < header) {
        free(buf);
        return st_fail(ST_ERR_FORMAT, "%s: truncated IDX header (%zu of %zu bytes)", path, size, header);
    }
    uint64_t expected = 1;
    for (int i = 0; i < ndims; i++) {
        dims[i] = read_be32(buf + 4 + 4 * i);
        expected *= dims[i];
        /* Saturate: a corrupt header must not overflow the size check. */
        if (expected > IDX_MAX_BYTES) expected = (uint64_t)IDX_MAX_BYTES + 1;
    }
    if (dims[0] == 0) {
        free(buf);
        return st_fail(ST_ERR_FORMAT, "%s: the header declares 0 %ss", path, kind);
    }
    size_t have = size - header;
    if (have < expected) {
        free(buf);
        return st_fail(ST_ERR_FORMAT, "%s: truncated: the header declares %u %ss (%llu bytes of data) but only %zu bytes follow",
                       path, (unsigned)dims[0], kind, (unsigned long long)expected, have);
    }
    if (have > expected) {
        free(buf);
        return st_fail(ST_ERR_FORMAT, "%s: %zu unexpected bytes after the %u %ss the header declares", path,
                       have - (size_t)expected, (unsigned)dims[0], kind);
    }
    /* Keep the payload in the same allocation: no second copy of 47 MB. */
    memmove(buf, buf + header, have);
    uint8_t *shrunk = realloc(buf, have ? have : 1);
    *data = shrunk ? shrunk : buf;
    *payload = have;
    return ST_OK;
}

st_status st_idx_load(const char *name, const char *dir, int train, st_dataset *out) {
    memset(out, 0, sizeof *out);
    if (!dir) return st_fail(ST_ERR_ARGUMENT, "%s: no data folder given", name);
    const char *prefix = train ? "train" : "t10k";
    char image_base[64], label_base[64];
    snprintf(image_base, sizeof image_base, "%s-images-idx3-ubyte", prefix);
    snprintf(label_base, sizeof label_base, "%s-labels-idx1-ubyte", prefix);
    size_t cap = strlen(dir) + 80;
    char *image_path = st_malloc(cap, "file name");
    char *label_path = st_malloc(cap, "file name");
    uint8_t *pixels = NULL, *label_bytes = NULL;
    int32_t *labels = NULL;
    st_status s = ST_OK;
    if (!image_path || !label_path) {
        s = ST_ERR_NOMEM;
        goto done;
    }
    if ((s = find_idx_file(name, dir, image_base, image_path, cap)) != ST_OK) goto done;
    if ((s = find_idx_file(name, dir, label_base, label_path, cap)) != ST_OK) goto done;

    uint32_t idims[3], ldims[3];
    size_t ibytes, lbytes;
    uint32_t most = train ? IDX_MAX_TRAIN : IDX_MAX_TEST;
    if ((s = read_idx(image_path, 3, most, idims, &pixels, &ibytes)) != ST_OK) goto done;
    if (idims[1] != MNIST_SIDE || idims[2] != MNIST_SIDE) {
        s = st_fail(ST_ERR_FORMAT, "%s: images are %ux%u, %s images are %dx%d", image_path, (unsigned)idims[1],
                    (unsigned)idims[2], name, MNIST_SIDE, MNIST_SIDE);
        goto done;
    }
    if ((s = read_idx(label_path, 1, most, ldims, &label_bytes, &lbytes)) != ST_OK) goto done;
    if (ldims[0] != idims[0]) {
        s = st_fail(ST_ERR_FORMAT, "%s holds %u images but %s holds %u labels", image_path, (unsigned)idims[0],
                    label_path, (unsigned)ldims[0]);
        goto done;
    }
    labels = st_malloc(lbytes * sizeof(int32_t), "labels");
    if (!labels) {
        s = ST_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < lbytes; i++) {
        if (label_bytes[i] >= MNIST_CLASSES) {
            s = st_fail(ST_ERR_FORMAT, "%s: label %u of image %zu is out of range (expected 0..%d)", label_path,
                        (unsigned)label_bytes[i], i, MNIST_CLASSES - 1);
            goto done;
        }
        labels[i] = label_bytes[i];
    }

    out->count = idims[0];
    out->channels = 1;
    out->height = MNIST_SIDE;
    out->width = MNIST_SIDE;
    out->num_classes = MNIST_CLASSES;
    out->pixels = pixels;
    out->labels = labels;
    pixels = NULL;
    labels = NULL;
    int fashion = strcmp(name, "fashion-mnist") == 0; /* normalisation: the catalogue's (data/catalog.c) */
    snprintf(out->name, sizeof out->name, "%s", fashion ? "fashion-mnist" : "mnist");
done:
    free(image_path);
    free(label_path);
    free(pixels);
    free(label_bytes);
    free(labels);
    return s;
}

int st_idx_present(const char *dir) {
    static const char *const files[] = {"t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz",
                                        "train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"};
    if (!dir) return 0;
    size_t cap = strlen(dir) + 64;
    char *path = malloc(cap);
    if (!path) return 0;
    int found = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0] && !found; i++) {
        snprintf(path, cap, "%s/%s", dir, files[i]);
        found = st_data_is_file(path);
    }
    free(path);
    return found;
}
