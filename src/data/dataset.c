/* st_dataset: choosing the format loader by data set name, default folders,
 * slicing (for --valid_split) and freeing, plus the whole-file reader that the
 * format loaders share (plain or gzip, via zlib's transparent gzread). */
#include "data/dataset.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/status.h"
#include "io/file_read.h"
#include "data/catalog.h"
#include "data/image_folder.h"

const char *st_dataset_default_dir(const char *name) {
    const st_dataset_info *info = st_dataset_info_find(name);
    return info ? info->default_dir : NULL;
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

st_status st_dataset_find_dir(const char *name, const char *home, char *out, size_t size) {
    const st_dataset_info *info = st_dataset_info_find(name);
    if (!info) return st_fail(ST_ERR_ARGUMENT, "unknown data set '%s' (expected " ST_DATASET_NAMES ")", name ? name : "");
    const char *debian = info->default_dir;
    if (info->format == ST_DATA_IMAGE_FOLDER) {
        if (strlen(debian) >= size) return st_fail(ST_ERR_ARGUMENT, "data folder name %s is too long", debian);
        snprintf(out, size, "%s", debian); /* imagenet: its one usual folder */
        return ST_OK;
    }
    int cifar = info->format != ST_DATA_IDX, cifar100 = info->format == ST_DATA_CIFAR100;
    const char *raw = strcmp(name, "mnist") == 0 ? "MNIST/raw" : "FashionMNIST/raw";
    char candidates[8][1100];
    int n = 0;
    if (cifar) {
        snprintf(candidates[n++], sizeof candidates[0], "data/%s", name);
        snprintf(candidates[n++], sizeof candidates[0], "data");
        snprintf(candidates[n++], sizeof candidates[0], "_dataset");
    } else {
        snprintf(candidates[n++], sizeof candidates[0], "%s", debian);
        snprintf(candidates[n++], sizeof candidates[0], "data/%s", name);
        snprintf(candidates[n++], sizeof candidates[0], "data/%s", raw);
        snprintf(candidates[n++], sizeof candidates[0], "../data/%s", raw);
    }
    if (home && home[0] && strlen(home) < 1000) {
        snprintf(candidates[n++], sizeof candidates[0], "%s/.torchvision%s%s", home, cifar ? "" : "/", cifar ? "" : raw);
        snprintf(candidates[n++], sizeof candidates[0], "%s/data%s%s", home, cifar ? "" : "/", cifar ? "" : raw);
    }
    for (int i = 0; i < n; i++) {
        int present = cifar ? st_cifar_present(candidates[i], cifar100) : st_idx_present(candidates[i]);
        if (present) {
            if (strlen(candidates[i]) >= size) return st_fail(ST_ERR_ARGUMENT, "data folder name %s is too long", candidates[i]);
            snprintf(out, size, "%s", candidates[i]);
            return ST_OK;
        }
    }
    char list[sizeof candidates + 32] = "";
    for (int i = 0; i < n; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", candidates[i]);
    }
    return st_fail(ST_ERR_IO, "%s: data set not found (looked in %s); give --datadir FOLDER", name, list);
}

/* An ImageFolder split as a streamed data set. */
static st_status image_folder_load(const char *dir, int train, const st_dataset_options *options, st_dataset *out) {
    int size = options && options->image_size > 0 ? options->image_size : 224;
    st_image_folder *f;
    ST_TRY(st_image_folder_open(dir, train, size, &f));
    out->folder = f;
    out->count = f->count;
    out->channels = 3;
    out->height = out->width = size;
    out->num_classes = f->num_classes;
    snprintf(out->name, sizeof out->name, "imagenet");
    return ST_OK;
}

st_status st_dataset_load(const char *name, const char *dir, int train, st_dataset *out) {
    return st_dataset_load_with(name, dir, train, NULL, out);
}

st_status st_dataset_load_with(const char *name, const char *dir, int train, const st_dataset_options *options,
                               st_dataset *out) {
    if (!out) return st_fail(ST_ERR_ARGUMENT, "st_dataset_load: no output dataset given");
    memset(out, 0, sizeof *out);
    if (!name) return st_fail(ST_ERR_ARGUMENT, "st_dataset_load: no data set name given");
    char found[1100];
    if (!dir && st_dataset_default_dir(name)) {
        ST_TRY(st_dataset_find_dir(name, NULL, found, sizeof found));
        dir = found;
    }
    const st_dataset_info *info = st_dataset_info_find(name);
    if (!info) return st_fail(ST_ERR_ARGUMENT, "unknown data set '%s' (expected " ST_DATASET_NAMES ")", name);
    st_status s = ST_OK;
    switch (info->format) {
    case ST_DATA_IDX: s = st_idx_load(name, dir, train, out); break;
    case ST_DATA_CIFAR10: s = st_cifar_load(name, dir, train, 0, out); break;
    case ST_DATA_CIFAR100: s = st_cifar_load(name, dir, train, 1, out); break;
    case ST_DATA_IMAGE_FOLDER: s = image_folder_load(dir, train, options, out); break;
    }
    if (s != ST_OK) {
        st_dataset_free(out);
        return s;
    }
    memcpy(out->mean, info->mean, sizeof out->mean); /* the catalogue's normalisation */
    memcpy(out->std, info->std, sizeof out->std);
    return ST_OK;
}

st_status st_dataset_slice(const st_dataset *src, int64_t start, int64_t count, st_dataset *out) {
    if (!src || !out) return st_fail(ST_ERR_ARGUMENT, "st_dataset_slice: NULL dataset");
    memset(out, 0, sizeof *out);
    if (start < 0 || count < 0 || start > src->count || count > src->count - start)
        return st_fail(ST_ERR_ARGUMENT, "%s: slice [%lld, %lld) is outside the %lld images",
                       src->name, (long long)start, (long long)(start + count), (long long)src->count);
    st_dataset d = *src;
    if (src->folder) { /* streamed: slice the file list */
        d.count = count;
        ST_TRY(st_image_folder_slice(src->folder, start, count, &d.folder));
        *out = d;
        return ST_OK;
    }
    size_t image_bytes = (size_t)src->channels * (size_t)src->height * (size_t)src->width;
    d.count = count;
    d.pixels = st_malloc((size_t)count * image_bytes, "dataset slice pixels");
    d.labels = st_malloc((size_t)count * sizeof(int32_t), "dataset slice labels");
    if (!d.pixels || !d.labels) {
        free(d.pixels);
        free(d.labels);
        return ST_ERR_NOMEM;
    }
    if (count > 0) {
        memcpy(d.pixels, src->pixels + (size_t)start * image_bytes, (size_t)count * image_bytes);
        memcpy(d.labels, src->labels + start, (size_t)count * sizeof(int32_t));
    }
    *out = d;
    return ST_OK;
}

void st_dataset_free(st_dataset *d) {
    if (!d) return;
    free(d->pixels);
    free(d->labels);
    st_image_folder_free(d->folder);
    memset(d, 0, sizeof *d);
}

int st_data_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int st_data_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* gzerror's view of the stream: Z_ERRNO is an operating-system read error,
 * anything else (Z_BUF_ERROR = stream ends early, Z_DATA_ERROR = corrupt
 * deflate data or CRC) is a damaged file. */
st_status st_data_gzip_failure(gzFile f, const char *path) {
    int code = Z_OK;
    const char *msg = gzerror(f, &code);
    if (code == Z_ERRNO) return st_fail(ST_ERR_IO, "%s: read error: %s", path, strerror(errno));
    if (code == Z_BUF_ERROR) return st_fail(ST_ERR_FORMAT, "%s: truncated gzip data (unexpected end of file)", path);
    if (code == Z_MEM_ERROR) return st_fail(ST_ERR_NOMEM, "%s: out of memory while decompressing", path);
    return st_fail(ST_ERR_FORMAT, "%s: corrupt gzip data (%s)", path, msg && *msg ? msg : "unknown zlib error");
}

st_status st_data_read_head(const char *path, uint8_t *buf, size_t n, size_t *got) {
    *got = 0;
    int fd;
    uint64_t file_size;
    ST_TRY(st_open_regular(path, UINT64_MAX, NULL, &fd, &file_size));
    gzFile f = gzdopen(fd, "rb");
    if (!f) {
        close(fd);
        return st_fail(ST_ERR_NOMEM, "cannot read %s: out of memory", path);
    }
    int r = n ? gzread(f, buf, (unsigned)n) : 0;
    st_status s = r < 0 ? st_data_gzip_failure(f, path) : ST_OK;
    gzclose(f);
    if (s == ST_OK) *got = (size_t)r;
    return s;
}

st_status st_data_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *size) {
    *out = NULL;
    *size = 0;
    int fd;
    uint64_t file_size;
    /* a compressed file is hardly larger than its contents (gzip adds a few
     * bytes, 0.03% at worst on random data): about the same bound holds for it */
    ST_TRY(st_open_regular(path, (uint64_t)max_bytes + max_bytes / 64 + 4096, "a data file of this data set", &fd,
                           &file_size));
    gzFile f = gzdopen(fd, "rb");
    if (!f) {
        close(fd);
        return st_fail(ST_ERR_NOMEM, "cannot read %s: out of memory", path);
    }
    gzbuffer(f, 1 << 17);

    /* Plain files are read in one allocation; compressed ones grow by doubling
     * so that a lying header or a gzip bomb cannot request memory up front;
     * decompression stops at max_bytes. */
    size_t cap = (size_t)file_size + 1;
    if (cap < (1u << 16)) cap = 1u << 16;
    if (cap > max_bytes + 1) cap = max_bytes + 1;
    uint8_t *buf = st_malloc(cap, path);
    if (!buf) {
        gzclose(f);
        return ST_ERR_NOMEM;
    }
    size_t used = 0;
    for (;;) {
        if (used == cap) {
            if (cap > max_bytes) {
                free(buf);
                gzclose(f);
                return st_fail(ST_ERR_FORMAT, "%s: larger than expected (more than %zu bytes)", path, max_bytes);
            }
            size_t grown = cap * 2 > max_bytes + 1 ? max_bytes + 1 : cap * 2;
            uint8_t *bigger = realloc(buf, grown);
            if (!bigger) {
                free(buf);
                gzclose(f);
                return st_fail(ST_ERR_NOMEM, "out of memory reading %s", path);
            }
            buf = bigger;
            cap = grown;
        }
        size_t want = cap - used;
        if (want > (1u << 30)) want = 1u << 30;
        int n = gzread(f, buf + used, (unsigned)want);
        if (n < 0) {
            st_status s = st_data_gzip_failure(f, path);
            free(buf);
            gzclose(f);
            return s;
        }
        if (n == 0) break;
        used += (size_t)n;
    }
    /* gzread reports a truncated stream only through gzerror at the end. */
    int code = Z_OK;
    gzerror(f, &code);
    if (code != Z_OK) {
        st_status s = st_data_gzip_failure(f, path);
        free(buf);
        gzclose(f);
        return s;
    }
    gzclose(f);
    *out = buf;
    *size = used;
    return ST_OK;
}
