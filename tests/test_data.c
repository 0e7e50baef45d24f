/* Data set loading: writes small MNIST (IDX, plain and gzip), CIFAR-10 (folder,
 * sub-folder, .tar.gz built with our own ustar writer) and CIFAR-100 files in
 * the official formats, checks the round trip, and checks that every kind of
 * damaged file is rejected with the right status and a message naming it.
 *
 * Tolerances: 1e-7 on the per-data-set mean/std (stored as float32: 6e-8
 * relative); 1e-5 on normalised pixels (float32 table vs double formula,
 * |value| <= ~3); 0.005 on the real Fashion-MNIST pixel mean (published to
 * four digits).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "data/dataset.h"
#include "sparsetrain.h"
#include "testing.h"

/* ------------------------------------------------------------- file helpers */

static char tmp_root[1024];

static void make_dirs(const char *path) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "cannot create %s: %s\n", buf, strerror(errno));
        exit(2);
    }
}

/* Fresh folder tmp_root/<name> (files from an earlier run are removed). */
static const char *case_dir(const char *name) {
    static char path[1200];
    snprintf(path, sizeof path, "%s/%s", tmp_root, name);
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) exit(2);
    make_dirs(path);
    return path;
}

static void write_bytes(const char *dir, const char *name, const uint8_t *data, size_t size, int gzip) {
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (gzip) {
        gzFile f = gzopen(path, "wb");
        if (!f || (size && gzwrite(f, data, (unsigned)size) != (int)size) || gzclose(f) != Z_OK) {
            fprintf(stderr, "cannot write %s\n", path);
            exit(2);
        }
    } else {
        FILE *f = fopen(path, "wb");
        if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
            fprintf(stderr, "cannot write %s\n", path);
            exit(2);
        }
    }
}

static uint8_t *read_bytes(const char *dir, const char *name, size_t *size) {
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) exit(2);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) exit(2);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

#define EXPECT_FAIL(expr, code, needle)                                                            \
    do {                                                                                           \
        st_status st_got_ = (expr);                                                                \
        if (st_got_ != (code) || !strstr(st_last_error(), (needle))) {                             \
            fprintf(stderr, "%s:%d: %s gave %s \"%s\", expected %s mentioning \"%s\"\n", __FILE__, \
                    __LINE__, #expr, st_status_name(st_got_), st_last_error(), st_status_name(code), \
                    (needle));                                                                     \
            st_test_failures++;                                                                    \
        }                                                                                          \
    } while (0)

/* --------------------------------------------------------------- IDX / MNIST */

static uint8_t mnist_pixel(int64_t i, int y, int x) { return (uint8_t)((i * 37 + y * 11 + x * 5 + 3) & 255); }

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* IDX image file of n images h x w; *size receives its length. */
static uint8_t *idx_images(uint32_t magic, int n, int h, int w, size_t *size) {
    *size = 16 + (size_t)n * h * w;
    uint8_t *b = malloc(*size);
    put_be32(b, magic);
    put_be32(b + 4, (uint32_t)n);
    put_be32(b + 8, (uint32_t)h);
    put_be32(b + 12, (uint32_t)w);
    for (int i = 0; i < n; i++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) b[16 + ((size_t)i * h + y) * w + x] = mnist_pixel(i, y, x);
    return b;
}

static uint8_t *idx_labels(int n, size_t *size) {
    *size = 8 + (size_t)n;
    uint8_t *b = malloc(*size);
    put_be32(b, 0x00000801);
    put_be32(b + 4, (uint32_t)n);
    for (int i = 0; i < n; i++) b[8 + i] = (uint8_t)((i * 3) % 10);
    return b;
}

/* Writes a complete MNIST split (train or t10k) with n images. */
static void write_mnist(const char *dir, const char *prefix, int n, int gzip) {
    char name[64];
    size_t size;
    uint8_t *b = idx_images(0x00000803, n, 28, 28, &size);
    snprintf(name, sizeof name, "%s-images-idx3-ubyte%s", prefix, gzip ? ".gz" : "");
    write_bytes(dir, name, b, size, gzip);
    free(b);
    b = idx_labels(n, &size);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte%s", prefix, gzip ? ".gz" : "");
    write_bytes(dir, name, b, size, gzip);
    free(b);
}

static void check_mnist_contents(const st_dataset *d, int n, const char *name) {
    CHECK(d->count == n);
    CHECK(d->channels == 1 && d->height == 28 && d->width == 28);
    CHECK(d->num_classes == 10);
    CHECK(strcmp(d->name, name) == 0);
    int bad = 0;
    for (int i = 0; i < n && d->pixels; i++) {
        if (d->labels[i] != (i * 3) % 10) bad++;
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++)
                if (d->pixels[((size_t)i * 28 + y) * 28 + x] != mnist_pixel(i, y, x)) bad++;
    }
    CHECK(bad == 0);
}

static void test_mnist(void) {
    const char *dir = case_dir("mnist_ok");
    write_mnist(dir, "train", 7, 0);
    write_mnist(dir, "t10k", 5, 1);
    st_dataset d;
    CHECK_OK(st_dataset_load("mnist", dir, 1, &d));
    check_mnist_contents(&d, 7, "mnist");
    CHECK_NEAR(d.mean[0], 0.1307, 1e-7);
    CHECK_NEAR(d.std[0], 0.3081, 1e-7);
    st_dataset_free(&d);
    CHECK(d.pixels == NULL && d.labels == NULL && d.count == 0);

    CHECK_OK(st_dataset_load("mnist", dir, 0, &d)); /* gzip-compressed split */
    check_mnist_contents(&d, 5, "mnist");

    /* Normalised value of a known pixel, through the public loader. */
    st_loader_options opt = {.batch_size = 5, .shuffle = 0, .augment = 0, .reflect_pad = 0, .seed = 1};
    st_loader *l = NULL;
    CHECK_OK(st_loader_create(&d, &opt, &l));
    CHECK_OK(st_loader_start_epoch(l, 0));
    st_batch b;
    CHECK_OK(st_loader_next(l, &b));
    CHECK(b.count == 5);
    if (b.count == 5) {
        int i = 3, y = 17, x = 9;
        double expected = (mnist_pixel(i, y, x) / 255.0 - 0.1307) / 0.3081;
        CHECK_NEAR(b.images[((size_t)i * 28 + y) * 28 + x], expected, 1e-5);
        CHECK(b.labels[i] == 9);
    }
    st_loader_free(l);
    st_dataset_free(&d);

    dir = case_dir("fashion_ok");
    write_mnist(dir, "train", 3, 1);
    CHECK_OK(st_dataset_load("fashion-mnist", dir, 1, &d));
    check_mnist_contents(&d, 3, "fashion-mnist");
    CHECK_NEAR(d.mean[0], 0.2860, 1e-7);
    CHECK_NEAR(d.std[0], 0.3530, 1e-7);
    st_dataset_free(&d);
}

static void test_mnist_errors(void) {
    st_dataset d;
    size_t size;
    uint8_t *b;

    /* Missing labels file. */
    const char *dir = case_dir("mnist_missing");
    write_mnist(dir, "train", 4, 0);
    char path[1400];
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte", dir);
    remove(path);
    EXPECT_FAIL(st_dataset_load("mnist", dir, 1, &d), ST_ERR_IO, "train-labels-idx1-ubyte");
    CHECK(d.pixels == NULL && d.labels == NULL && d.count == 0);
    EXPECT_FAIL(st_dataset_load("mnist", "/nonexistent/folder", 0, &d), ST_ERR_IO, "t10k-images-idx3-ubyte");

    /* Bad magic: a label file where the images should be. */
    dir = case_dir("mnist_magic");
    write_mnist(dir, "train", 4, 0);
    b = idx_images(0x00000801, 4, 28, 28, &size);
    write_bytes(dir, "train-images-idx3-ubyte", b, size, 0);
    free(b);
    EXPECT_FAIL(st_dataset_load("mnist", dir, 1, &d), ST_ERR_FORMAT, "train-images-idx3-ubyte");
    CHECK(strstr(st_last_error(), "magic") != NULL);

    /* Truncated image data (plain). */
    dir = case_dir("mnist_truncated");
    write_mnist(dir, "train", 4, 0);
    b = idx_images(0x00000803, 4, 28, 28, &size);
    write_bytes(dir, "train-images-idx3-ubyte", b, size - 100, 0);
    free(b);
    EXPECT_FAIL(st_dataset_load("mnist", dir, 1, &d), ST_ERR_FORMAT, "train-images-idx3-ubyte");
    CHECK(strstr(st_last_error(), "truncated") != NULL);

    /* Truncated header. */
    write_bytes(dir, "train-images-idx3-ubyte", (const uint8_t *)"\0\0\x08\x03\0\0", 6, 0);
    EXPECT_FAIL(st_dataset_load("mnist", dir, 1, &d), ST_ERR_FORMAT, "train-images-idx3-ubyte");

    /* Trailing bytes after the declared images. */
    b = idx_images(0x00000803, 4, 28, 28, &size);
    write_bytes(dir, "train-images-idx3-ubyte", b, size, 0);
    free(b);
    b = idx_labels(4, &size);
    uint8_t *longer = calloc(size + 3, 1);
    memcpy(longer, b, size);
    write_bytes(dir, "train-labels-idx1-ubyte", longer, size + 3, 0);
    free(longer);
    free(b);
    EXPECT_FAIL(st_dataset_load("mnist", dir, 1, &d), ST_ERR_FORMAT, "train-labels-idx1-ubyte");

    /* Truncated gzip stream (the gzip file cut in half). */
    dir = case_dir("mnist_gz_truncated");
    write_mnist(dir, "train", 20, 1);
    uint8_t *gz = read_bytes(dir, "train-images-idx3-ubyte.gz", &size);
    write_bytes(dir, "train-images-idx3-ubyte.gz", gz, size / 2, 0);
    EXPECT_FAIL(st_dataset_load("mnist", dir, 1, &d), ST_ERR_FORMAT, "train-images-idx3-ubyte.gz");

    /* Corrupt gzip: damaged CRC in the trailer, then damaged deflate data. */
    gz[size - 8] ^= 0x5a;
    write_bytes(dir, "train-images-idx3-ubyte.gz", gz, size, 0);
    EXPECT_FAIL(st_dataset_load("mnist", dir, 1, &d), ST_ERR_FORMAT, "train-images-idx3-ubyte.gz");
    gz[size - 8] ^= 0x5a;
    for (size_t i = 20; i < size - 8; i += 7) gz[i] ^= 0xff;
    write_bytes(dir, "train-images-idx3-ubyte.gz", gz, size, 0);
    EXPECT_FAIL(st_dataset_load("mnist", dir, 1, &d), ST_ERR_FORMAT, "train-images-idx3-ubyte.gz");
    free(gz);

    /* Label out of range. */
    dir = case_dir("mnist_label_range");
    write_mnist(dir, "t10k", 4, 1);
    b = idx_labels(4, &size);
    b[8 + 2] = 10;
    write_bytes(dir, "t10k-labels-idx1-ubyte.gz", b, size, 1);
    free(b);
    EXPECT_FAIL(st_dataset_load("mnist", dir, 0, &d), ST_ERR_FORMAT, "t10k-labels-idx1-ubyte.gz");
    CHECK(strstr(st_last_error(), "out of range") != NULL);

    /* Count mismatch between images and labels. */
    dir = case_dir("mnist_count");
    write_mnist(dir, "train", 4, 0);
    b = idx_labels(3, &size);
    write_bytes(dir, "train-labels-idx1-ubyte", b, size, 0);
    free(b);
    EXPECT_FAIL(st_dataset_load("mnist", dir, 1, &d), ST_ERR_FORMAT, "train-labels-idx1-ubyte");
    CHECK(strstr(st_last_error(), "train-images-idx3-ubyte") != NULL);

    /* Wrong image shape for MNIST. */
    dir = case_dir("mnist_shape");
    write_mnist(dir, "train", 4, 0);
    b = idx_images(0x00000803, 4, 32, 32, &size);
    write_bytes(dir, "train-images-idx3-ubyte", b, size, 0);
    free(b);
    EXPECT_FAIL(st_dataset_load("mnist", dir, 1, &d), ST_ERR_FORMAT, "train-images-idx3-ubyte");

    /* A header declaring an absurd number of images must not allocate it. */
    b = idx_images(0x00000803, 4, 28, 28, &size);
    put_be32(b + 4, 0xffffffffu);
    write_bytes(dir, "train-images-idx3-ubyte", b, size, 0);
    free(b);
    EXPECT_FAIL(st_dataset_load("mnist", dir, 1, &d), ST_ERR_FORMAT, "train-images-idx3-ubyte");

    EXPECT_FAIL(st_dataset_load("imagenet-tiny", dir, 1, &d), ST_ERR_ARGUMENT, "imagenet-tiny");
}

/* --------------------------------------------------------------------- CIFAR */

static uint8_t cifar_pixel(int64_t i, int c, int y, int x) {
    return (uint8_t)((i * 13 + c * 71 + y * 7 + x * 3 + (i * y) % 5) & 255);
}
static int cifar10_label(int64_t i) { return (int)((i * 7 + 1) % 10); }
static int cifar100_label(int64_t i) { return (int)((i * 37 + 11) % 100); }

/* Records [first, first+n) of a CIFAR-10 (label_bytes 1) or CIFAR-100 file. */
static uint8_t *cifar_records(int64_t first, int n, int cifar100, size_t *size) {
    size_t record = (cifar100 ? 2 : 1) + 3072;
    *size = record * (size_t)n;
    uint8_t *b = malloc(*size ? *size : 1);
    for (int k = 0; k < n; k++) {
        int64_t i = first + k;
        uint8_t *r = b + record * (size_t)k;
        if (cifar100) {
            r[0] = (uint8_t)(cifar100_label(i) / 5); /* coarse */
            r[1] = (uint8_t)cifar100_label(i);
        } else {
            r[0] = (uint8_t)cifar10_label(i);
        }
        uint8_t *px = r + (cifar100 ? 2 : 1);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++) px[(c * 32 + y) * 32 + x] = cifar_pixel(i, c, y, x);
    }
    return b;
}

static const int batch_sizes[5] = {3, 2, 4, 1, 2}; /* records per data_batch_k.bin */
#define CIFAR10_TRAIN 12
#define CIFAR10_TEST 4
#define TEST_FIRST 1000 /* global index of the first test record */

static void write_cifar10_folder(const char *dir) {
    int64_t first = 0;
    size_t size;
    for (int k = 0; k < 5; k++) {
        char name[32];
        snprintf(name, sizeof name, "data_batch_%d.bin", k + 1);
        uint8_t *b = cifar_records(first, batch_sizes[k], 0, &size);
        write_bytes(dir, name, b, size, 0);
        free(b);
        first += batch_sizes[k];
    }
    uint8_t *b = cifar_records(TEST_FIRST, CIFAR10_TEST, 0, &size);
    write_bytes(dir, "test_batch.bin", b, size, 0);
    free(b);
}

static void check_cifar_contents(const st_dataset *d, int64_t first, int n, int cifar100) {
    CHECK(d->count == n);
    CHECK(d->channels == 3 && d->height == 32 && d->width == 32);
    CHECK(d->num_classes == (cifar100 ? 100 : 10));
    CHECK(strcmp(d->name, cifar100 ? "cifar100" : "cifar10") == 0);
    int bad = 0;
    for (int k = 0; k < n && k < d->count; k++) {
        int64_t i = first + k;
        if (d->labels[k] != (cifar100 ? cifar100_label(i) : cifar10_label(i))) bad++;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++)
                    if (d->pixels[(size_t)k * 3072 + (c * 32 + y) * 32 + x] != cifar_pixel(i, c, y, x)) bad++;
    }
    CHECK(bad == 0);
}

/* --- a minimal ustar writer (archive kept in memory, then gzip-compressed) */

typedef struct tar_buf {
    uint8_t *data;
    size_t size, cap;
} tar_buf;

static void tar_append(tar_buf *t, const void *p, size_t n) {
    if (t->size + n > t->cap) {
        t->cap = (t->size + n) * 2;
        t->data = realloc(t->data, t->cap);
    }
    if (n) memcpy(t->data + t->size, p, n);
    t->size += n;
}

/* One header + data + padding. `prefix` may be NULL; type '0' file, '5' folder, 'L' long name. */
static void tar_entry(tar_buf *t, const char *prefix, const char *name, char type, const void *data, size_t size) {
    uint8_t h[512];
    memset(h, 0, sizeof h);
    memcpy(h, name, strlen(name) < 100 ? strlen(name) : 100);
    memcpy(h + 100, "0000644", 7);
    memcpy(h + 108, "0001750", 7);
    memcpy(h + 116, "0001750", 7);
    snprintf((char *)h + 124, 12, "%011o", (unsigned)size);
    snprintf((char *)h + 136, 12, "%011o", 1234567890u);
    h[156] = (uint8_t)type;
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    if (prefix) memcpy(h + 345, prefix, strlen(prefix));
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
    tar_append(t, h, 512);
    tar_append(t, data, size);
    static const uint8_t zeros[512];
    if (size % 512) tar_append(t, zeros, 512 - size % 512);
}

static void tar_finish(tar_buf *t) {
    static const uint8_t zeros[1024];
    tar_append(t, zeros, sizeof zeros);
}

/* The archive with members out of order, a folder entry, an unrelated file,
 * a name split into ustar prefix + name, and a GNU long-name entry. */
static void build_cifar10_tar(tar_buf *t) {
    size_t size;
    memset(t, 0, sizeof *t);
    tar_entry(t, NULL, "cifar-10-batches-bin/", '5', NULL, 0);
    tar_entry(t, NULL, "cifar-10-batches-bin/batches.meta.txt", '0', "airplane\nautomobile\n", 20);
    int64_t first[5] = {0};
    for (int k = 1; k < 5; k++) first[k] = first[k - 1] + batch_sizes[k - 1];
    uint8_t *b = cifar_records(TEST_FIRST, CIFAR10_TEST, 0, &size);
    tar_entry(t, NULL, "cifar-10-batches-bin/test_batch.bin", '0', b, size);
    free(b);
    int order[5] = {2, 0, 4, 1, 3};
    for (int j = 0; j < 5; j++) {
        int k = order[j];
        char name[64];
        snprintf(name, sizeof name, "data_batch_%d.bin", k + 1);
        b = cifar_records(first[k], batch_sizes[k], 0, &size);
        if (k == 1) {
            tar_entry(t, "cifar-10-batches-bin", name, '0', b, size);
        } else if (k == 3) {
            char long_name[300];
            snprintf(long_name, sizeof long_name, "cifar-10-batches-bin/%0200d/../%s", 0, name);
            tar_entry(t, NULL, "././@LongLink", 'L', long_name, strlen(long_name) + 1);
            tar_entry(t, NULL, "truncated-short-name", '0', b, size);
        } else {
            char path[128];
            snprintf(path, sizeof path, "cifar-10-batches-bin/%s", name);
            tar_entry(t, NULL, path, '0', b, size);
        }
        free(b);
    }
    tar_finish(t);
}

static void test_cifar10(void) {
    st_dataset d;
    const char *dir = case_dir("cifar10_folder");
    write_cifar10_folder(dir);
    CHECK_OK(st_dataset_load("cifar10", dir, 1, &d));
    check_cifar_contents(&d, 0, CIFAR10_TRAIN, 0);
    CHECK_NEAR(d.mean[2], 0.4465, 1e-7);
    CHECK_NEAR(d.std[1], 0.1994, 1e-7);

    /* Normalised value of a known blue pixel through the loader. */
    st_loader_options opt = {.batch_size = 8, .shuffle = 0, .augment = 0, .reflect_pad = 1, .seed = 3};
    st_loader *l = NULL;
    CHECK_OK(st_loader_create(&d, &opt, &l));
    CHECK(st_loader_batches_per_epoch(l) == 2);
    CHECK_OK(st_loader_start_epoch(l, 0));
    st_batch batch;
    CHECK_OK(st_loader_next(l, &batch));
    if (batch.count == 8) {
        int i = 6, c = 2, y = 30, x = 1;
        double expected = (cifar_pixel(i, c, y, x) / 255.0 - 0.4465) / 0.2010;
        CHECK_NEAR(batch.images[(size_t)i * 3072 + (c * 32 + y) * 32 + x], expected, 1e-5);
    } else {
        CHECK(batch.count == 8);
    }
    st_loader_free(l);

    /* Slice (the --valid_split hold-out is the last part in file order). */
    st_dataset s;
    CHECK_OK(st_dataset_slice(&d, 9, 3, &s));
    check_cifar_contents(&s, 9, 3, 0);
    CHECK_NEAR(s.mean[0], 0.4914, 1e-7);
    st_dataset_free(&s);
    CHECK_OK(st_dataset_slice(&d, 12, 0, &s));
    CHECK(s.count == 0);
    st_dataset_free(&s);
    EXPECT_FAIL(st_dataset_slice(&d, 10, 3, &s), ST_ERR_ARGUMENT, "cifar10");
    EXPECT_FAIL(st_dataset_slice(&d, -1, 3, &s), ST_ERR_ARGUMENT, "cifar10");
    st_dataset_free(&d);
    st_dataset_free(&d); /* twice is fine: the struct was zeroed */
    st_dataset_free(NULL);

    CHECK_OK(st_dataset_load("cifar10", dir, 0, &d));
    check_cifar_contents(&d, TEST_FIRST, CIFAR10_TEST, 0);
    st_dataset_free(&d);

    /* The archive's own sub-folder. */
    const char *parent = case_dir("cifar10_subfolder");
    char sub[1400];
    snprintf(sub, sizeof sub, "%s/cifar-10-batches-bin", parent);
    make_dirs(sub);
    write_cifar10_folder(sub);
    CHECK_OK(st_dataset_load("cifar10", parent, 1, &d));
    check_cifar_contents(&d, 0, CIFAR10_TRAIN, 0);
    st_dataset_free(&d);

    /* The .tar.gz, read in place. */
    dir = case_dir("cifar10_archive");
    tar_buf t;
    build_cifar10_tar(&t);
    write_bytes(dir, "cifar-10-binary.tar.gz", t.data, t.size, 1);
    CHECK_OK(st_dataset_load("cifar10", dir, 1, &d));
    check_cifar_contents(&d, 0, CIFAR10_TRAIN, 0);
    st_dataset_free(&d);
    CHECK_OK(st_dataset_load("cifar10", dir, 0, &d));
    check_cifar_contents(&d, TEST_FIRST, CIFAR10_TEST, 0);
    st_dataset_free(&d);

    /* Damaged archives: truncated gzip, bad header checksum, missing member. */
    size_t gz_size;
    uint8_t *gz = read_bytes(dir, "cifar-10-binary.tar.gz", &gz_size);
    dir = case_dir("cifar10_archive_truncated");
    write_bytes(dir, "cifar-10-binary.tar.gz", gz, gz_size * 2 / 3, 0);
    EXPECT_FAIL(st_dataset_load("cifar10", dir, 1, &d), ST_ERR_FORMAT, "cifar-10-binary.tar.gz");
    free(gz);

    dir = case_dir("cifar10_archive_checksum");
    t.data[512 + 10] ^= 0x01; /* inside the second header's name */
    write_bytes(dir, "cifar-10-binary.tar.gz", t.data, t.size, 1);
    EXPECT_FAIL(st_dataset_load("cifar10", dir, 1, &d), ST_ERR_FORMAT, "cifar-10-binary.tar.gz");
    CHECK(strstr(st_last_error(), "checksum") != NULL);
    free(t.data);

    dir = case_dir("cifar10_archive_missing");
    memset(&t, 0, sizeof t);
    size_t size;
    uint8_t *b = cifar_records(0, 2, 0, &size);
    tar_entry(&t, NULL, "cifar-10-batches-bin/data_batch_1.bin", '0', b, size);
    free(b);
    tar_finish(&t);
    write_bytes(dir, "cifar-10-binary.tar.gz", t.data, t.size, 1);
    free(t.data);
    EXPECT_FAIL(st_dataset_load("cifar10", dir, 1, &d), ST_ERR_FORMAT, "data_batch_2.bin");
    CHECK(strstr(st_last_error(), "cifar-10-binary.tar.gz") != NULL);
    EXPECT_FAIL(st_dataset_load("cifar10", dir, 0, &d), ST_ERR_FORMAT, "test_batch.bin");

    /* Folder problems: a missing batch, a size that is not whole records,
     * an out-of-range label, and no data at all. */
    dir = case_dir("cifar10_missing_batch");
    write_cifar10_folder(dir);
    char path[1400];
    snprintf(path, sizeof path, "%s/data_batch_3.bin", dir);
    remove(path);
    EXPECT_FAIL(st_dataset_load("cifar10", dir, 1, &d), ST_ERR_IO, "data_batch_3.bin");
    CHECK(d.count == 0 && d.pixels == NULL);

    dir = case_dir("cifar10_partial_record");
    write_cifar10_folder(dir);
    b = cifar_records(0, 3, 0, &size);
    write_bytes(dir, "data_batch_1.bin", b, size - 1, 0);
    free(b);
    EXPECT_FAIL(st_dataset_load("cifar10", dir, 1, &d), ST_ERR_FORMAT, "data_batch_1.bin");
    CHECK(strstr(st_last_error(), "multiple") != NULL);

    dir = case_dir("cifar10_label_range");
    write_cifar10_folder(dir);
    b = cifar_records(TEST_FIRST, CIFAR10_TEST, 0, &size);
    b[3073 * 2] = 10;
    write_bytes(dir, "test_batch.bin", b, size, 0);
    free(b);
    EXPECT_FAIL(st_dataset_load("cifar10", dir, 0, &d), ST_ERR_FORMAT, "test_batch.bin");
    CHECK(strstr(st_last_error(), "out of range") != NULL);

    dir = case_dir("cifar10_empty");
    EXPECT_FAIL(st_dataset_load("cifar10", dir, 1, &d), ST_ERR_IO, "cifar-10-binary.tar.gz");
    CHECK(strstr(st_last_error(), "data_batch_1.bin") != NULL);
}

static void test_cifar100(void) {
    st_dataset d;
    size_t size;
    const char *dir = case_dir("cifar100_folder");
    uint8_t *b = cifar_records(0, 9, 1, &size);
    write_bytes(dir, "train.bin", b, size, 0);
    free(b);
    b = cifar_records(500, 3, 1, &size);
    write_bytes(dir, "test.bin", b, size, 0);
    free(b);
    CHECK_OK(st_dataset_load("cifar100", dir, 1, &d));
    check_cifar_contents(&d, 0, 9, 1);
    CHECK_NEAR(d.mean[1], 0.4865, 1e-7);
    CHECK_NEAR(d.std[2], 0.2762, 1e-7);
    st_dataset_free(&d);
    CHECK_OK(st_dataset_load("cifar100", dir, 0, &d));
    check_cifar_contents(&d, 500, 3, 1);
    st_dataset_free(&d);

    /* Sub-folder and archive layouts. */
    const char *parent = case_dir("cifar100_subfolder");
    char sub[1400];
    snprintf(sub, sizeof sub, "%s/cifar-100-binary", parent);
    make_dirs(sub);
    b = cifar_records(0, 5, 1, &size);
    write_bytes(sub, "train.bin", b, size, 0);
    CHECK_OK(st_dataset_load("cifar100", parent, 1, &d));
    check_cifar_contents(&d, 0, 5, 1);
    st_dataset_free(&d);

    dir = case_dir("cifar100_archive");
    tar_buf t;
    memset(&t, 0, sizeof t);
    tar_entry(&t, NULL, "cifar-100-binary/", '5', NULL, 0);
    tar_entry(&t, NULL, "cifar-100-binary/train.bin", '0', b, size);
    free(b);
    b = cifar_records(500, 3, 1, &size);
    tar_entry(&t, NULL, "cifar-100-binary/test.bin", '0', b, size);
    free(b);
    tar_finish(&t);
    write_bytes(dir, "cifar-100-binary.tar.gz", t.data, t.size, 1);
    free(t.data);
    CHECK_OK(st_dataset_load("cifar100", dir, 1, &d));
    check_cifar_contents(&d, 0, 5, 1);
    st_dataset_free(&d);
    CHECK_OK(st_dataset_load("cifar100", dir, 0, &d));
    check_cifar_contents(&d, 500, 3, 1);
    st_dataset_free(&d);

    /* Fine label 100 and coarse label 20 are out of range; a CIFAR-10 file
     * (3073-byte records) is not a whole number of CIFAR-100 records. */
    dir = case_dir("cifar100_bad");
    b = cifar_records(0, 4, 1, &size);
    b[3074 * 1 + 1] = 100;
    write_bytes(dir, "train.bin", b, size, 0);
    EXPECT_FAIL(st_dataset_load("cifar100", dir, 1, &d), ST_ERR_FORMAT, "train.bin");
    b[3074 * 1 + 1] = 99;
    b[3074 * 3] = 20;
    write_bytes(dir, "train.bin", b, size, 0);
    EXPECT_FAIL(st_dataset_load("cifar100", dir, 1, &d), ST_ERR_FORMAT, "coarse");
    free(b);
    b = cifar_records(0, 4, 0, &size);
    write_bytes(dir, "test.bin", b, size, 0);
    free(b);
    EXPECT_FAIL(st_dataset_load("cifar100", dir, 0, &d), ST_ERR_FORMAT, "test.bin");
    write_bytes(dir, "test.bin", NULL, 0, 0);
    EXPECT_FAIL(st_dataset_load("cifar100", dir, 0, &d), ST_ERR_FORMAT, "test.bin");
}

static void test_default_dirs(void) {
    CHECK(strcmp(st_dataset_default_dir("fashion-mnist"), "/usr/share/datasets/fashion-mnist") == 0);
    CHECK(strcmp(st_dataset_default_dir("mnist"), "/usr/share/datasets/mnist") == 0);
    CHECK(strcmp(st_dataset_default_dir("cifar10"), "data/cifar10") == 0);
    CHECK(strcmp(st_dataset_default_dir("cifar100"), "data/cifar100") == 0);
    CHECK(st_dataset_default_dir("svhn") == NULL);
}

/* The real Fashion-MNIST of Debian's dataset-fashion-mnist, when installed. */
static void test_debian_fashion_mnist(void) {
    const char *dir = st_dataset_default_dir("fashion-mnist");
    struct stat st;
    if (stat(dir, &st) != 0) {
        TEST_SKIP_PART("the real-data check: %s is not installed (Debian package dataset-fashion-mnist)", dir);
        return;
    }
    for (int train = 1; train >= 0; train--) {
        st_dataset d;
        CHECK_OK(st_dataset_load("fashion-mnist", NULL, train, &d));
        CHECK(d.count == (train ? 60000 : 10000));
        CHECK(d.channels == 1 && d.height == 28 && d.width == 28 && d.num_classes == 10);
        int64_t per_class[10] = {0};
        for (int64_t i = 0; i < d.count; i++)
            if (d.labels[i] >= 0 && d.labels[i] < 10) per_class[d.labels[i]]++;
        for (int c = 0; c < 10; c++) CHECK(per_class[c] == (train ? 6000 : 1000));
        if (d.count > 0) CHECK(d.labels[0] == 9); /* both splits start with an ankle boot */
        /* Mean pixel intensity should match the published normalisation mean. */
        double sum = 0;
        for (int64_t i = 0; i < d.count * 784; i++) sum += d.pixels[i];
        if (d.count > 0) CHECK_NEAR(sum / (double)(d.count * 784) / 255.0, 0.2860, 0.005);
        st_dataset_free(&d);
    }
}

int main(void) {
    const char *tmp = getenv("ST_TEST_TMP");
    snprintf(tmp_root, sizeof tmp_root, "%s/test_data", tmp && *tmp ? tmp : "/tmp/sparsetrain_test");
    make_dirs(tmp_root);
    test_default_dirs();
    test_mnist();
    test_mnist_errors();
    test_cifar10();
    test_cifar100();
    test_debian_fashion_mnist();
    TEST_MAIN_END();
}
