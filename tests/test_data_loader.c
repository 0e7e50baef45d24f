/* The batch loader: every image exactly once per epoch, reproducible order per
 * (seed, epoch), batch sizes, normalisation, and augmentation checked against
 * a direct padded-crop-flip computation written independently here. With
 * `--augment IN OUT` it is the C side of tests/augment_parity_test.py: it
 * augments and normalises the images of IN (U8 "images" N x C x H x W, F32
 * "mean"/"std", metadata "seed", "reflect") with the draws of epoch 0 and
 * writes them ("images", F32) and the draws ("draws", I32 N x 3: offset y,
 * offset x, flip) to OUT. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/dataset.h"
#include "io/safetensors.h"
#include "sparsetrain.h"
#include "testing.h"

#define PAD 4

/* A synthetic data set with random pixels in [1, 255] and label = index, so a
 * delivered image can be traced back to its source. */
static void make_dataset(st_dataset *d, int64_t count, int c, int h, int w, uint32_t seed) {
    memset(d, 0, sizeof *d);
    d->count = count;
    d->channels = c;
    d->height = h;
    d->width = w;
    d->num_classes = (int)count;
    size_t bytes = (size_t)count * c * h * w;
    d->pixels = malloc(bytes ? bytes : 1);
    d->labels = malloc((size_t)(count ? count : 1) * sizeof(int32_t));
    uint32_t s = seed;
    for (size_t i = 0; i < bytes; i++) {
        s = s * 1664525u + 1013904223u; /* LCG: independent of the library's rng */
        d->pixels[i] = (uint8_t)(1 + (s >> 24) % 255);
    }
    for (int64_t i = 0; i < count; i++) d->labels[i] = (int32_t)i;
    const float mean[3] = {0.5f, 0.4f, 0.3f}, std[3] = {0.25f, 0.2f, 0.3f};
    memcpy(d->mean, mean, sizeof mean);
    memcpy(d->std, std, sizeof std);
    snprintf(d->name, sizeof d->name, "synthetic");
}

static double normalised(const st_dataset *d, int c, int p) { return (p / 255.0 - d->mean[c]) / d->std[c]; }

/* Reads one whole epoch; labels go to `order` (count entries), images (if
 * `images` non-NULL) in delivery order. Returns the number of batches and
 * checks the batch sizes. */
static int64_t read_epoch(st_loader *l, const st_dataset *d, int batch_size, int64_t epoch, int32_t *order,
                          float *images) {
    size_t image = (size_t)d->channels * d->height * d->width;
    CHECK_OK(st_loader_start_epoch(l, epoch));
    int64_t seen = 0, batches = 0;
    for (;;) {
        st_batch b;
        CHECK_OK(st_loader_next(l, &b));
        if (b.count == 0) break;
        int64_t expected = d->count - seen < batch_size ? d->count - seen : batch_size;
        CHECK(b.count == expected);
        if (seen + b.count > d->count) break;
        memcpy(order + seen, b.labels, (size_t)b.count * sizeof(int32_t));
        if (images) memcpy(images + (size_t)seen * image, b.images, (size_t)b.count * image * sizeof(float));
        seen += b.count;
        batches++;
    }
    CHECK(seen == d->count);
    return batches;
}

static int is_permutation(const int32_t *order, int64_t n) {
    char *hit = calloc((size_t)n + 1, 1);
    int ok = 1;
    for (int64_t i = 0; i < n && ok; i++) {
        if (order[i] < 0 || order[i] >= n || hit[order[i]]) ok = 0;
        else hit[order[i]] = 1;
    }
    free(hit);
    return ok;
}

static int same_order(const int32_t *a, const int32_t *b, int64_t n) { return memcmp(a, b, (size_t)n * 4) == 0; }

static void test_order_and_batches(void) {
    st_dataset d;
    make_dataset(&d, 103, 3, 9, 7, 11);
    size_t image = 3 * 9 * 7;
    int32_t *o1 = malloc(103 * 4), *o2 = malloc(103 * 4), *o3 = malloc(103 * 4);
    float *im1 = malloc(103 * image * sizeof(float)), *im2 = malloc(103 * image * sizeof(float));

    st_loader_options opt = {.batch_size = 10, .shuffle = 1, .augment = 0, .reflect_pad = 0, .seed = 42};
    st_loader *l = NULL, *l2 = NULL;
    CHECK_OK(st_loader_create(&d, &opt, &l));
    CHECK(st_loader_batches_per_epoch(l) == 11);
    CHECK(read_epoch(l, &d, 10, 0, o1, im1) == 11);
    CHECK(is_permutation(o1, 103));
    int identity = 1;
    for (int i = 0; i < 103; i++) identity &= o1[i] == i;
    CHECK(!identity);

    /* Normalisation of every delivered value against a direct computation. */
    int bad = 0;
    for (int k = 0; k < 103; k++) {
        const uint8_t *src = d.pixels + (size_t)o1[k] * image;
        for (size_t j = 0; j < image; j++) {
            int c = (int)(j / (9 * 7));
            /* 1e-5: float32 table vs the double formula (|value| <= ~3, 6e-8 relative); 1/255 vs 1/256 is 4e-3 */
            if (!(fabs(im1[(size_t)k * image + j] - normalised(&d, c, src[j])) <= 1e-5)) bad++;
        }
    }
    CHECK(bad == 0);

    /* The epoch is over: further calls keep returning empty batches. */
    st_batch b;
    CHECK_OK(st_loader_next(l, &b));
    CHECK(b.count == 0);
    CHECK_OK(st_loader_next(l, &b));
    CHECK(b.count == 0);

    /* Same seed and epoch -> same batches, on a fresh loader with another batch size. */
    opt.batch_size = 32;
    CHECK_OK(st_loader_create(&d, &opt, &l2));
    CHECK(st_loader_batches_per_epoch(l2) == 4);
    CHECK(read_epoch(l2, &d, 32, 0, o2, im2) == 4);
    CHECK(same_order(o1, o2, 103));
    CHECK(memcmp(im1, im2, 103 * image * sizeof(float)) == 0);

    /* Another epoch -> another order; going back to epoch 0 reproduces it. */
    read_epoch(l, &d, 10, 1, o3, NULL);
    CHECK(is_permutation(o3, 103));
    CHECK(!same_order(o1, o3, 103));
    read_epoch(l, &d, 10, 0, o3, NULL);
    CHECK(same_order(o1, o3, 103));

    /* Restarting in the middle of an epoch (resume) gives the full epoch again. */
    CHECK_OK(st_loader_start_epoch(l, 0));
    CHECK_OK(st_loader_next(l, &b));
    CHECK_OK(st_loader_next(l, &b));
    read_epoch(l, &d, 10, 0, o3, NULL);
    CHECK(same_order(o1, o3, 103));
    st_loader_free(l);
    st_loader_free(l2);

    /* Another seed -> another order. */
    opt.seed = 43;
    opt.batch_size = 10;
    CHECK_OK(st_loader_create(&d, &opt, &l));
    read_epoch(l, &d, 10, 0, o3, NULL);
    CHECK(!same_order(o1, o3, 103));
    st_loader_free(l);

    /* No shuffle: file order, every epoch. */
    opt.shuffle = 0;
    opt.batch_size = 1;
    CHECK_OK(st_loader_create(&d, &opt, &l));
    CHECK(st_loader_batches_per_epoch(l) == 103);
    for (int epoch = 0; epoch < 2; epoch++) {
        CHECK(read_epoch(l, &d, 1, epoch, o3, NULL) == 103);
        identity = 1;
        for (int i = 0; i < 103; i++) identity &= o3[i] == i;
        CHECK(identity);
    }
    st_loader_free(l);

    /* One batch larger than the data set. */
    opt.batch_size = 500;
    CHECK_OK(st_loader_create(&d, &opt, &l));
    CHECK(st_loader_batches_per_epoch(l) == 1);
    CHECK(read_epoch(l, &d, 500, 0, o3, NULL) == 1);
    st_loader_free(l);

    /* Many short epochs with a small batch: content must stay right while the
     * worker races ahead through the ring of buffers. */
    opt.batch_size = 7;
    opt.shuffle = 1;
    CHECK_OK(st_loader_create(&d, &opt, &l));
    bad = 0;
    for (int epoch = 0; epoch < 30; epoch++) {
        CHECK_OK(st_loader_start_epoch(l, epoch));
        int64_t seen = 0;
        for (;;) {
            CHECK_OK(st_loader_next(l, &b));
            if (b.count == 0) break;
            for (int k = 0; k < b.count; k++) {
                const uint8_t *src = d.pixels + (size_t)b.labels[k] * image;
                for (size_t j = 0; j < image; j += 17) {
                    int c = (int)(j / (9 * 7));
                    if (!(fabs(b.images[(size_t)k * image + j] - normalised(&d, c, src[j])) <= 1e-5)) bad++;
                }
            }
            seen += b.count;
        }
        CHECK(seen == 103);
    }
    CHECK(bad == 0);
    st_loader_free(l);

    free(o1);
    free(o2);
    free(o3);
    free(im1);
    free(im2);
    st_dataset_free(&d);
}

/* Padded image built the way torch does, edge by edge: reflection copies the
 * pixel `k` steps inside the edge to `k` steps outside it (edge not repeated). */
static void pad_image(const uint8_t *src, int h, int w, int reflect, int *padded) {
    int ph = h + 2 * PAD, pw = w + 2 * PAD;
    for (int i = 0; i < ph * pw; i++) padded[i] = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) padded[(y + PAD) * pw + x + PAD] = src[y * w + x];
    if (!reflect) return;
    for (int y = PAD; y < PAD + h; y++)
        for (int k = 1; k <= PAD; k++) {
            padded[y * pw + PAD - k] = padded[y * pw + PAD + k];
            padded[y * pw + PAD + w - 1 + k] = padded[y * pw + PAD + w - 1 - k];
        }
    for (int k = 1; k <= PAD; k++)
        for (int x = 0; x < pw; x++) {
            padded[(PAD - k) * pw + x] = padded[(PAD + k) * pw + x];
            padded[(PAD + h - 1 + k) * pw + x] = padded[(PAD + h - 1 - k) * pw + x];
        }
}

/* 1 if `got` (C,H,W floats) equals the crop at (oy, ox) of the padded source,
 * flipped horizontally after cropping when `flip`. */
static int matches(const st_dataset *d, int *const padded[3], const float *got, int oy, int ox, int flip) {
    int h = d->height, w = d->width, pw = w + 2 * PAD;
    for (int c = 0; c < d->channels; c++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int cx = flip ? w - 1 - x : x;
                int p = padded[c][(y + oy) * pw + cx + ox];
                if (!(fabs(got[(c * h + y) * w + x] - normalised(d, c, p)) <= 1e-5)) return 0;
            }
    return 1;
}

static void test_augmentation(int reflect) {
    st_dataset d;
    int h = 10, w = 12, n = 300; /* w > 2*PAD+1: no crop is a mirror image of another */
    make_dataset(&d, n, 3, h, w, 5 + reflect);
    size_t image = (size_t)3 * h * w;
    int *padded[3];
    for (int c = 0; c < 3; c++) padded[c] = malloc(sizeof(int) * (h + 2 * PAD) * (w + 2 * PAD));

    st_loader_options opt = {.batch_size = 16, .shuffle = 1, .augment = 1, .reflect_pad = reflect, .seed = 9};
    st_loader *l = NULL;
    CHECK_OK(st_loader_create(&d, &opt, &l));
    int32_t *order = malloc(sizeof(int32_t) * n);
    float *images = malloc(sizeof(float) * image * n);
    read_epoch(l, &d, 16, 3, order, images);
    CHECK(is_permutation(order, n));

    int offset_y_seen[2 * PAD + 1] = {0}, offset_x_seen[2 * PAD + 1] = {0};
    int flips = 0, unmatched = 0, ambiguous = 0, not_drawn = 0, untouched = 0;
    for (int k = 0; k < n; k++) {
        const uint8_t *src = d.pixels + (size_t)order[k] * image;
        for (int c = 0; c < 3; c++) pad_image(src + (size_t)c * h * w, h, w, reflect, padded[c]);
        int found = 0, fy = 0, fx = 0, ff = 0;
        for (int oy = 0; oy <= 2 * PAD; oy++)
            for (int ox = 0; ox <= 2 * PAD; ox++)
                for (int flip = 0; flip < 2; flip++)
                    if (matches(&d, (int *const *)padded, images + (size_t)k * image, oy, ox, flip)) {
                        if (!found) fy = oy, fx = ox, ff = flip;
                        found++;
                    }
        if (!found) {
            unmatched++;
            continue;
        }
        if (found > 1) ambiguous++;
        offset_y_seen[fy]++;
        offset_x_seen[fx]++;
        flips += ff;
        if (fy == PAD && fx == PAD && !ff) untouched++;
        /* The draw is the documented pure function of (seed, epoch, position). */
        st_augment_draw draw = st_augment_draw_for(9, 3, k, PAD);
        if (draw.offset_y != fy || draw.offset_x != fx || draw.flip != ff) not_drawn++;
    }
    CHECK(unmatched == 0);
    CHECK(ambiguous == 0);
    CHECK(not_drawn == 0);
    for (int o = 0; o <= 2 * PAD; o++) CHECK(offset_y_seen[o] > 0 && offset_x_seen[o] > 0);
    CHECK(flips > n / 4 && flips < 3 * n / 4);
    CHECK(untouched < n / 20);

    /* Same epoch again (another loader, another batch size): identical images. */
    st_loader *l2 = NULL;
    opt.batch_size = 50;
    CHECK_OK(st_loader_create(&d, &opt, &l2));
    int32_t *order2 = malloc(sizeof(int32_t) * n);
    float *images2 = malloc(sizeof(float) * image * n);
    read_epoch(l2, &d, 50, 3, order2, images2);
    CHECK(same_order(order, order2, n));
    CHECK(memcmp(images, images2, sizeof(float) * image * n) == 0);
    /* A different epoch draws different crops for the same positions. */
    read_epoch(l2, &d, 50, 4, order2, images2);
    CHECK(memcmp(images, images2, sizeof(float) * image * n) != 0);
    st_loader_free(l2);
    st_loader_free(l);

    free(order);
    free(order2);
    free(images);
    free(images2);
    for (int c = 0; c < 3; c++) free(padded[c]);
    st_dataset_free(&d);
}

/* Hand-computed border values of torch's F.pad(mode='reflect') for an 8x8
 * image v[y][x] = 10*y + x + 1: padded index -k maps to k, 7+k maps to 7-k. */
static void test_reflect_border(void) {
    uint8_t src[64];
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++) src[y * 8 + x] = (uint8_t)(10 * y + x + 1);
    float table[3][256];
    for (int p = 0; p < 256; p++) table[0][p] = table[1][p] = table[2][p] = (float)p;
    float out[64];

    st_augment_draw top_left = {0, 0, 0};
    st_augment_image(src, 1, 8, 8, &top_left, PAD, 1, table, out);
    const float row0[8] = {45, 44, 43, 42, 41, 42, 43, 44}; /* source row 4, columns 4,3,2,1,0,1,2,3 */
    const float row1[8] = {35, 34, 33, 32, 31, 32, 33, 34}; /* source row 3 */
    for (int x = 0; x < 8; x++) {
        CHECK(out[x] == row0[x]);
        CHECK(out[8 + x] == row1[x]);
    }
    CHECK(out[4 * 8 + 4] == 1);  /* source (0,0) */
    CHECK(out[7 * 8 + 7] == 34); /* source (3,3) */

    st_augment_draw bottom_right = {8, 8, 0};
    st_augment_image(src, 1, 8, 8, &bottom_right, PAD, 1, table, out);
    CHECK(out[3 * 8 + 3] == 78); /* source (7,7) */
    CHECK(out[4 * 8 + 4] == 67); /* padded 8 -> source 6 */
    CHECK(out[7 * 8 + 7] == 34); /* padded 11 -> source 3 */
    CHECK(out[7 * 8 + 0] == 35); /* source (3,4) */

    st_augment_draw flip_only = {4, 4, 1};
    st_augment_image(src, 1, 8, 8, &flip_only, PAD, 1, table, out);
    int bad = 0;
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++) bad += out[y * 8 + x] != src[y * 8 + 7 - x];
    CHECK(bad == 0);

    /* Zero padding: outside pixels are the normalised value of 0. */
    table[0][0] = -7.0f;
    st_augment_image(src, 1, 8, 8, &top_left, PAD, 0, table, out);
    CHECK(out[0] == -7.0f && out[3 * 8 + 7] == -7.0f && out[7 * 8 + 3] == -7.0f);
    CHECK(out[4 * 8 + 4] == 1 && out[7 * 8 + 7] == 34);
    st_augment_draw shifted_flip = {5, 2, 1}; /* out(y,x) = padded(y+5, 7-x+2) */
    st_augment_image(src, 1, 8, 8, &shifted_flip, PAD, 0, table, out);
    CHECK(out[0 * 8 + 0] == src[1 * 8 + 5]); /* padded (5, 9) = source (1, 5) */
    CHECK(out[0 * 8 + 7] == -7.0f);          /* padded (5, 2): left of the image */
    CHECK(out[7 * 8 + 0] == -7.0f);          /* padded (12, 9): below the image */
}

static void test_lifecycle_and_errors(void) {
    st_dataset d;
    make_dataset(&d, 2000, 3, 32, 32, 77);
    st_loader_options opt = {.batch_size = 16, .shuffle = 1, .augment = 1, .reflect_pad = 1, .seed = 1};
    st_loader *l = NULL;
    st_batch b;

    /* Free without an epoch, right after starting one, and mid-epoch. */
    CHECK_OK(st_loader_create(&d, &opt, &l));
    CHECK(st_loader_next(l, &b) == ST_ERR_ARGUMENT);
    CHECK(strstr(st_last_error(), "start_epoch") != NULL);
    st_loader_free(l);
    CHECK_OK(st_loader_create(&d, &opt, &l));
    CHECK_OK(st_loader_start_epoch(l, 0));
    st_loader_free(l);
    CHECK_OK(st_loader_create(&d, &opt, &l));
    CHECK_OK(st_loader_start_epoch(l, 5));
    CHECK_OK(st_loader_next(l, &b));
    CHECK(b.count == 16);
    CHECK_OK(st_loader_next(l, &b));
    st_loader_free(l);
    st_loader_free(NULL);

    /* Bad options. */
    opt.batch_size = 0;
    CHECK(st_loader_create(&d, &opt, &l) == ST_ERR_ARGUMENT && l == NULL);
    opt.batch_size = 4;
    st_dataset tiny;
    make_dataset(&tiny, 3, 1, 4, 6, 1);
    CHECK(st_loader_create(&tiny, &opt, &l) == ST_ERR_ARGUMENT); /* reflect pad 4 on height 4 */
    opt.reflect_pad = 0;
    CHECK_OK(st_loader_create(&tiny, &opt, &l)); /* zero padding is fine */
    st_loader_free(l);
    st_dataset_free(&tiny);

    /* An empty data set (e.g. a 0-image validation slice) has empty epochs. */
    st_dataset empty;
    CHECK_OK(st_dataset_slice(&d, 2000, 0, &empty));
    CHECK_OK(st_loader_create(&empty, &opt, &l));
    CHECK(st_loader_batches_per_epoch(l) == 0);
    CHECK_OK(st_loader_start_epoch(l, 0));
    CHECK_OK(st_loader_next(l, &b));
    CHECK(b.count == 0);
    st_loader_free(l);
    st_dataset_free(&empty);
    st_dataset_free(&d);
}

/* The shuffle is uniform: over 6000 epochs of 6 images, every image lands at
 * every position ~1000 times. Binomial(6000, 1/6) has standard deviation 29;
 * +-150 is ~5 of them. A biased shuffle fails: Sattolo's variant (the
 * Fisher-Yates index off by one) never leaves an image in place (0 on the
 * diagonal), a "swap with any position" shuffle skews the counts by ~10 %. */
static void test_shuffle_uniform(void) {
    st_dataset d;
    make_dataset(&d, 6, 1, 1, 1, 3);
    st_loader_options opt = {.batch_size = 6, .shuffle = 1, .augment = 0, .reflect_pad = 0, .seed = 123};
    st_loader *l = NULL;
    CHECK_OK(st_loader_create(&d, &opt, &l));
    int64_t counts[6][6] = {{0}};
    int32_t order[6];
    for (int64_t epoch = 0; epoch < 6000 && l; epoch++) {
        read_epoch(l, &d, 6, epoch, order, NULL);
        for (int pos = 0; pos < 6; pos++) counts[pos][order[pos]]++;
    }
    int64_t lo = 6000, hi = 0;
    for (int pos = 0; pos < 6; pos++)
        for (int i = 0; i < 6; i++) {
            lo = counts[pos][i] < lo ? counts[pos][i] : lo;
            hi = counts[pos][i] > hi ? counts[pos][i] : hi;
        }
    printf("shuffle over 6000 epochs: each image at each position %lld .. %lld times (expected 1000)\n",
           (long long)lo, (long long)hi);
    CHECK(lo >= 850 && hi <= 1150);
    st_loader_free(l);
    st_dataset_free(&d);
}

static int augment_harness(const char *in, const char *out) {
    st_safetensors *f = NULL;
    if (st_safetensors_read(in, &f) != ST_OK) {
        fprintf(stderr, "%s\n", st_last_error());
        return 1;
    }
    const st_tensor_entry *im = st_safetensors_find(f, "images"), *mean = st_safetensors_find(f, "mean"),
                          *std = st_safetensors_find(f, "std");
    const char *seed = st_safetensors_meta(f, "seed"), *reflect = st_safetensors_meta(f, "reflect");
    if (!im || im->dtype != ST_DTYPE_U8 || im->ndim != 4 || !mean || !std || !seed || !reflect) {
        fprintf(stderr, "%s: needs U8 images (N, C, H, W), mean, std, metadata seed and reflect\n", in);
        st_safetensors_free(f);
        return 1;
    }
    const int n = (int)im->shape[0], c = (int)im->shape[1], h = (int)im->shape[2], w = (int)im->shape[3];
    st_dataset d;
    memset(&d, 0, sizeof d);
    d.channels = c;
    memcpy(d.mean, mean->data, sizeof(float) * (size_t)c);
    memcpy(d.std, std->data, sizeof(float) * (size_t)c);
    float table[3][256];
    st_normalise_table(&d, table);
    const size_t image = (size_t)c * h * w;
    float *y = new_floats((size_t)n * image);
    int32_t *draws = new_bytes(sizeof(int32_t) * 3 * (size_t)n);
    for (int i = 0; i < n; i++) {
        st_augment_draw dr = st_augment_draw_for(strtoull(seed, NULL, 10), 0, i, ST_AUGMENT_PAD);
        st_augment_image((const uint8_t *)im->data + (size_t)i * image, c, h, w, &dr, ST_AUGMENT_PAD, atoi(reflect),
                         (const float(*)[256])table, y + (size_t)i * image);
        draws[3 * i] = dr.offset_y, draws[3 * i + 1] = dr.offset_x, draws[3 * i + 2] = dr.flip;
    }
    st_tensor_entry t[2] = {{.name = "images", .dtype = ST_DTYPE_F32, .ndim = 4, .shape = {n, c, h, w}, .data = y},
                            {.name = "draws", .dtype = ST_DTYPE_I32, .ndim = 2, .shape = {n, 3}, .data = draws}};
    st_status s = st_safetensors_write(out, t, 2, NULL, 0);
    if (s != ST_OK) fprintf(stderr, "%s\n", st_last_error());
    free(y), free(draws);
    st_safetensors_free(f);
    return s == ST_OK ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "--augment") == 0) return augment_harness(argv[2], argv[3]);
    alarm(300); /* a hang (e.g. a lost wake-up) fails the test instead of stalling CTest */
    test_reflect_border();
    test_order_and_batches();
    test_augmentation(1);
    test_augmentation(0);
    test_lifecycle_and_errors();
    test_shuffle_uniform();
    TEST_MAIN_END();
}
