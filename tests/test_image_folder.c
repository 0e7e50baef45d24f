/* ImageFolder pieces checked against hand-computed values and properties
 * (torchvision/PIL parity is tests/imagefolder_test.py): Pillow's bilinear taps
 * for a 2x reduction worked out by hand, identity and constant images, output
 * windows equal to the same part of the whole output, the
 * Resize + CenterCrop geometry with Python's ties-to-even rounding, properties
 * of RandomResizedCrop over many draws, the JPEG decoder on images encoded
 * here with libjpeg (RGB, grayscale, CMYK) and on a header declaring 40000 x
 * 40000 (refused before any pixel memory), and the loader's unreadable-file
 * handling (skip, report once, a wholly unreadable batch is an error), the
 * file-size limit, and its independence of the worker count for in-memory data. */
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>

#include "core/status.h"
#include "data/dataset.h"
#include "data/image_folder.h"
#include "sparsetrain.h"
#include "testing.h"

static char tmp_root[4096];

/* ---------------------------------------------------------------- helpers */

/* Encodes a (h, w, components) image with libjpeg in `space` (JCS_RGB,
 * JCS_GRAYSCALE or JCS_CMYK, the latter written with an Adobe marker). */
static uint8_t *encode_jpeg(const uint8_t *pixels, int w, int h, int components, J_COLOR_SPACE space, size_t *size) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    unsigned char *out = NULL;
    unsigned long out_size = 0;
    jpeg_mem_dest(&c, &out, &out_size);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = components;
    c.in_color_space = space;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 95, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)c.next_scanline * w * components);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *size = out_size;
    return out;
}

static void write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    fclose(f);
}

/* ---------------------------------------------------------------- resizing */

static void test_resize_by_hand(void) {
    /* One row 0, 10, 20, ..., 70 (8 pixels, three equal channels) halved to 4.
     * Pillow's bilinear taps for scale 2: support 2, centre 2o + 1, weights
     * triangle((x - centre + 0.5) / 2) over x in [int(centre - 1.5), int(centre + 2.5)):
     * output 0 takes x = 0, 1, 2 with 0.75, 0.75, 0.25 (sum 1.75):
     * (0 * 0.75 + 10 * 0.75 + 20 * 0.25) / 1.75 = 7.142857 -> 7;
     * output 1 takes x = 1..4 with 0.25, 0.75, 0.75, 0.25 (sum 2): 25 -> 25 (ties round up,
     * the fixed point adds one half); output 3 takes x = 5, 6, 7 with 0.25, 0.75, 0.75:
     * (50 * 0.25 + 60 * 0.75 + 70 * 0.75) / 1.75 = 62.857 -> 63 (the fixed point adds one half,
     * then truncates). */
    uint8_t src[8 * 3], dst[4 * 3];
    for (int x = 0; x < 8; x++) src[3 * x] = src[3 * x + 1] = src[3 * x + 2] = (uint8_t)(10 * x);
    CHECK_OK(st_image_resize_bilinear(src, 8, 0, 0, 1, 8, 1, 4, dst));
    const int expect[4] = {7, 25, 45, 63};
    for (int x = 0; x < 4; x++) {
        CHECK(dst[3 * x] == expect[x]);
        CHECK(dst[3 * x + 1] == expect[x] && dst[3 * x + 2] == expect[x]);
    }
    /* The same along columns (vertical pass). */
    CHECK_OK(st_image_resize_bilinear(src, 1, 0, 0, 8, 1, 4, 1, dst));
    for (int y = 0; y < 4; y++) CHECK(dst[3 * y] == expect[y]);

    /* Same size: a copy of the region. Constant images stay constant at any size. */
    enum { W = 37, H = 23 };
    uint8_t *img = new_bytes(W * H * 3), *out = new_bytes(200 * 200 * 3);
    for (int i = 0; i < W * H * 3; i++) img[i] = (uint8_t)(i * 7 + 3);
    CHECK_OK(st_image_resize_bilinear(img, W, 5, 4, 10, 12, 10, 12, out));
    int same = 1;
    for (int y = 0; y < 10; y++) same &= memcmp(out + y * 12 * 3, img + ((5 + y) * W + 4) * 3, 12 * 3) == 0;
    CHECK(same);
    for (int i = 0; i < W * H * 3; i++) img[i] = (uint8_t)(i % 3 == 0 ? 200 : i % 3 == 1 ? 17 : 0);
    const int sizes[][2] = {{5, 7}, {64, 64}, {200, 13}, {1, 1}};
    for (int k = 0; k < 4; k++) {
        CHECK_OK(st_image_resize_bilinear(img, W, 0, 0, H, W, sizes[k][0], sizes[k][1], out));
        int constant = 1;
        for (int i = 0; i < sizes[k][0] * sizes[k][1]; i++)
            constant &= out[3 * i] == 200 && out[3 * i + 1] == 17 && out[3 * i + 2] == 0;
        CHECK(constant);
    }
    /* A window of the output equals the same part of the whole output, for
     * both passes, one pass, or none. */
    for (int i = 0; i < W * H * 3; i++) img[i] = (uint8_t)((i * 37) ^ (i >> 3));
    const int shapes[][2] = {{50, 70}, {23, 70}, {50, 37}, {23, 37}, {9, 11}};
    uint8_t *win = new_bytes(70 * 70 * 3);
    for (int k = 0; k < 5; k++) {
        int oh = shapes[k][0], ow = shapes[k][1];
        CHECK_OK(st_image_resize_bilinear(img, W, 0, 0, H, W, oh, ow, out));
        const int windows[][4] = {{0, 0, oh, ow}, {3, 5, oh / 2, ow / 3}, {oh - 1, ow - 2, 1, 2}};
        for (int v = 0; v < 3; v++) {
            int wt = windows[v][0], wl = windows[v][1], wh = windows[v][2], ww = windows[v][3];
            CHECK_OK(st_image_resize_bilinear_window(img, W, 0, 0, H, W, oh, ow, wt, wl, wh, ww, win));
            int equal = 1;
            for (int y = 0; y < wh; y++)
                equal &= memcmp(win + (size_t)y * ww * 3, out + ((size_t)(wt + y) * ow + wl) * 3, (size_t)ww * 3) == 0;
            CHECK(equal);
        }
    }
    CHECK(st_image_resize_bilinear_window(img, W, 0, 0, H, W, 10, 10, 5, 5, 6, 5, win) == ST_ERR_ARGUMENT);
    free(win);
    free(img);
    free(out);
}

static void test_eval_geometry(void) {
    CHECK(st_eval_resize_size(224) == 256);
    CHECK(st_eval_resize_size(64) == 73);
    int rh, rw;
    st_crop c;
    /* 500 x 375 (W x H): shorter side 375 -> 256, longer int(256 * 500 / 375) = 341;
     * left = round((341 - 224) / 2 = 58.5) = 58 (ties to even), top = round(16) = 16 */
    st_eval_geometry(375, 500, 256, 224, &rh, &rw, &c);
    CHECK(rh == 256 && rw == 341 && c.top == 16 && c.left == 58 && c.height == 224 && c.width == 224);
    /* 343 wide: (343 - 224) / 2 = 59.5 -> 60 (even) */
    st_eval_geometry(256, 343, 256, 224, &rh, &rw, &c);
    CHECK(rh == 256 && rw == 343 && c.left == 60 && c.top == 16);
    /* portrait 300 x 451: width 256, height int(256 * 451 / 300) = 384 */
    st_eval_geometry(451, 300, 256, 224, &rh, &rw, &c);
    CHECK(rw == 256 && rh == 384 && c.top == 80 && c.left == 16);
}

static void test_random_resized_crop(void) {
    const int shapes[][2] = {{375, 500}, {53, 37}, {30, 200}, {224, 224}, {1, 1}, {10, 1000}, {1000, 9}};
    int flips = 0, total = 0, fallbacks = 0;
    for (int s = 0; s < 7; s++) {
        int H = shapes[s][0], W = shapes[s][1];
        for (int64_t position = 0; position < 300; position++) {
            st_crop_trace t;
            st_crop c = st_random_resized_crop(11, position % 3, position, H, W, &t);
            st_crop again = st_random_resized_crop(11, position % 3, position, H, W, NULL);
            CHECK(memcmp(&c, &again, sizeof c) == 0);
            CHECK(c.top >= 0 && c.left >= 0 && c.height >= 1 && c.width >= 1);
            CHECK(c.top + c.height <= H && c.left + c.width <= W);
            CHECK(t.attempts >= 1 && t.attempts <= 10);
            for (int a = 0; a < t.attempts; a++) {
                CHECK(t.scale[a] >= 0.08f && t.scale[a] <= 1.0f);
                CHECK(t.log_ratio[a] >= logf(0.75f) && t.log_ratio[a] <= logf(4.0f / 3.0f));
            }
            if (t.fell_back) {
                fallbacks++;
                CHECK(t.attempts == 10);
                /* central crop of the nearest allowed ratio */
                double r = (double)W / H;
                int ew = r < 0.75 ? W : r > 4.0 / 3.0 ? (int)nearbyint(H * 4.0 / 3.0) : W;
                int eh = r < 0.75 ? (int)nearbyint(W / 0.75) : H;
                CHECK(c.width == ew && c.height == eh && c.top == (H - eh) / 2 && c.left == (W - ew) / 2);
            } else if (H * W >= 10000) {
                /* area and ratio as drawn, up to the rounding of w and h */
                double area = (double)c.width * c.height / ((double)H * W), ratio = (double)c.width / c.height;
                CHECK(area >= 0.08 * 0.9 && area <= 1.0);
                CHECK(ratio >= 0.75 * 0.93 && ratio <= 4.0 / 3.0 * 1.07);
            }
            flips += c.flip;
            total++;
        }
    }
    CHECK(flips > total * 2 / 5 && flips < total * 3 / 5);
    CHECK(fallbacks > 0); /* the 10 x 1000 and 1000 x 9 slivers */
    /* other epochs and seeds give other crops */
    st_crop a = st_random_resized_crop(1, 0, 5, 375, 500, NULL), b = st_random_resized_crop(1, 1, 5, 375, 500, NULL),
            d = st_random_resized_crop(2, 0, 5, 375, 500, NULL);
    CHECK(memcmp(&a, &b, sizeof a) != 0 && memcmp(&a, &d, sizeof a) != 0);
}

/* ---------------------------------------------------------------- decoding */

static void test_decode(void) {
    enum { W = 21, H = 17 };
    uint8_t rgb[W * H * 3], gray[W * H], cmyk[W * H * 4];
    for (int i = 0; i < W * H; i++) {
        rgb[3 * i] = (uint8_t)(i % W * 10), rgb[3 * i + 1] = (uint8_t)(i / W * 12), rgb[3 * i + 2] = 128;
        gray[i] = (uint8_t)(i % W * 12);
        /* Adobe polarity: stored bytes are 255 - ink; K ink 0 everywhere, C ink varies */
        cmyk[4 * i] = (uint8_t)(255 - (i % W) * 10), cmyk[4 * i + 1] = 255, cmyk[4 * i + 2] = 255, cmyk[4 * i + 3] = 255;
    }
    st_rgb_image img = {0};
    size_t size;
    uint8_t *jpeg = encode_jpeg(rgb, W, H, 3, JCS_RGB, &size);
    CHECK_OK(st_jpeg_decode(jpeg, size, "rgb", &img));
    CHECK(img.width == W && img.height == H);
    int worst = 0;
    for (int i = 0; i < W * H * 3; i++) worst = abs(img.pixels[i] - rgb[i]) > worst ? abs(img.pixels[i] - rgb[i]) : worst;
    CHECK(worst <= 24); /* lossy, quality 95 with chroma subsampling */

    /* a truncated copy: refused, naming the input */
    CHECK(st_jpeg_decode(jpeg, size / 2, "half.jpg", &img) == ST_ERR_FORMAT);
    CHECK(strstr(st_last_error(), "half.jpg") != NULL);

    /* declared 40000 x 40000 (SOF0 height/width bytes patched): refused before decoding */
    uint8_t *big = malloc(size);
    memcpy(big, jpeg, size);
    int patched = 0;
    for (size_t i = 2; i + 9 < size; i++)
        if (big[i] == 0xFF && big[i + 1] == 0xC0) {
            big[i + 5] = 0x9C, big[i + 6] = 0x40, big[i + 7] = 0x9C, big[i + 8] = 0x40;
            patched = 1;
            break;
        }
    CHECK(patched);
    size_t capacity_before = img.capacity;
    CHECK(st_jpeg_decode(big, size, "huge.jpg", &img) == ST_ERR_FORMAT);
    CHECK(strstr(st_last_error(), "40000x40000") != NULL);
    CHECK(img.capacity == capacity_before); /* no pixel memory was taken */
    free(big);
    free(jpeg);

    jpeg = encode_jpeg(gray, W, H, 1, JCS_GRAYSCALE, &size);
    CHECK_OK(st_jpeg_decode(jpeg, size, "gray", &img));
    int replicated = img.width == W && img.height == H;
    for (int i = 0; i < W * H; i++)
        replicated &= img.pixels[3 * i] == img.pixels[3 * i + 1] && img.pixels[3 * i] == img.pixels[3 * i + 2];
    CHECK(replicated);
    free(jpeg);

    /* CMYK: with no K ink, R = 255 - C ink (PIL: nk - C * nk / 255 with nk = 255), G = B = 255 */
    jpeg = encode_jpeg(cmyk, W, H, 4, JCS_CMYK, &size);
    CHECK_OK(st_jpeg_decode(jpeg, size, "cmyk", &img));
    worst = 0;
    for (int i = 0; i < W * H; i++) {
        int r = 255 - (i % W) * 10;
        worst = abs(img.pixels[3 * i] - r) > worst ? abs(img.pixels[3 * i] - r) : worst;
        worst = abs(img.pixels[3 * i + 1] - 255) > worst ? abs(img.pixels[3 * i + 1] - 255) : worst;
    }
    CHECK(worst <= 6);
    free(jpeg);

    const uint8_t junk[] = "GIF89a not a jpeg at all";
    CHECK(st_jpeg_decode(junk, sizeof junk, "x.JPEG", &img) == ST_ERR_FORMAT);
    CHECK(st_jpeg_decode(junk, 0, "empty.JPEG", &img) == ST_ERR_FORMAT);
    st_rgb_image_free(&img);
}

/* ---------------------------------------------------------------- the loader */

static void test_loader_unreadable(void) {
    char dir[4200], path[4400];
    snprintf(dir, sizeof dir, "%s/tree", tmp_root);
    mkdir(tmp_root, 0777);
    mkdir(dir, 0777);
    snprintf(path, sizeof path, "%s/train", dir);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/train/a", dir);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/train/b", dir);
    mkdir(path, 0777);
    uint8_t rgb[40 * 30 * 3];
    for (int i = 0; i < 40 * 30 * 3; i++) rgb[i] = (uint8_t)(i * 13);
    size_t size;
    uint8_t *jpeg = encode_jpeg(rgb, 40, 30, 3, JCS_RGB, &size);
    /* class a: 3 good images; class b: 5 unreadable ones */
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/train/a/good%d.jpg", dir, i);
        write_file(path, jpeg, size);
    }
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/train/b/bad%d.JPEG", dir, i);
        write_file(path, "junk", 4);
    }
    free(jpeg);
    st_dataset_options opt = {.image_size = 16};
    st_dataset d;
    CHECK_OK(st_dataset_load_with("imagenet", dir, 1, &opt, &d));
    CHECK(d.count == 8 && d.num_classes == 2 && d.height == 16 && d.channels == 3);
    d.folder->quiet = 1;
    /* Batches of 3, in order: [good x3], [bad x3], [bad x2]: the second (3 < 4 images) and
     * third are passed over. */
    st_loader_options lo = {.batch_size = 3, .workers = 2, .augment = 1, .seed = 3};
    st_loader *l;
    CHECK_OK(st_loader_create(&d, &lo, &l));
    for (int epoch = 0; epoch < 2; epoch++) {
        CHECK_OK(st_loader_start_epoch(l, epoch));
        st_batch b;
        CHECK_OK(st_loader_next(l, &b));
        CHECK(b.count == 3 && b.labels[0] == 0);
        CHECK_OK(st_loader_next(l, &b));
        CHECK(b.count == 0);
    }
    CHECK(d.folder->bad_count == 5); /* counted (and reported) once over two epochs */
    st_loader_free(l);
    /* Batches of 4: [good x3, bad], [bad x4]: the second is an error naming a file. */
    lo.batch_size = 4;
    CHECK_OK(st_loader_create(&d, &lo, &l));
    CHECK_OK(st_loader_start_epoch(l, 0));
    st_batch b;
    CHECK_OK(st_loader_next(l, &b));
    CHECK(b.count == 3);
    CHECK(st_loader_next(l, &b) == ST_ERR_IO);
    CHECK(strstr(st_last_error(), "bad") != NULL && strstr(st_last_error(), "none of the 4") != NULL);
    st_loader_free(l);
    st_dataset_free(&d);
}

static void test_read_file_limits(void) {
    char path[4200];
    snprintf(path, sizeof path, "%s/twenty.bin", tmp_root);
    write_file(path, "01234567890123456789", 20);
    uint8_t *buf = NULL;
    size_t capacity = 0, size = 0;
    CHECK(st_read_file_into(path, 10, &buf, &capacity, &size) == ST_ERR_FORMAT);
    CHECK(strstr(st_last_error(), "larger than the limit") != NULL && capacity == 0);
    CHECK_OK(st_read_file_into(path, 20, &buf, &capacity, &size));
    CHECK(size == 20 && memcmp(buf, "01234567890123456789", 20) == 0);
    CHECK(st_read_file_into(tmp_root, 1 << 20, &buf, &capacity, &size) == ST_ERR_IO); /* a folder */
    snprintf(path, sizeof path, "%s/fifo.JPEG", tmp_root);
    unlink(path);
    if (mkfifo(path, 0600) == 0) { /* opening a FIFO with no writer must not block */
        CHECK(st_read_file_into(path, 1 << 20, &buf, &capacity, &size) == ST_ERR_IO);
        CHECK(strstr(st_last_error(), "not a regular file") != NULL);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/missing.JPEG", tmp_root);
    CHECK(st_read_file_into(path, 1 << 20, &buf, &capacity, &size) == ST_ERR_IO);
    CHECK(strstr(st_last_error(), "missing.JPEG") != NULL);
    free(buf);
}

static void test_loader_workers_in_memory(void) {
    st_dataset d;
    memset(&d, 0, sizeof d);
    d.count = 50, d.channels = 3, d.height = 8, d.width = 8, d.num_classes = 50;
    d.pixels = new_bytes(50 * 3 * 64);
    d.labels = malloc(50 * sizeof(int32_t));
    for (int i = 0; i < 50 * 3 * 64; i++) d.pixels[i] = (uint8_t)(i * 31 + 7);
    for (int i = 0; i < 50; i++) d.labels[i] = i;
    for (int c = 0; c < 3; c++) d.mean[c] = 0.5f, d.std[c] = 0.25f;
    float *first = new_floats(50 * 3 * 64);
    for (int workers = 1; workers <= 4; workers += 3) {
        st_loader_options lo = {.batch_size = 7, .shuffle = 1, .augment = 1, .reflect_pad = 1, .seed = 9, .workers = workers};
        st_loader *l;
        CHECK_OK(st_loader_create(&d, &lo, &l));
        CHECK_OK(st_loader_start_epoch(l, 1));
        size_t at = 0;
        int same = 1;
        for (st_batch b; st_loader_next(l, &b) == ST_OK && b.count > 0;) {
            size_t n = (size_t)b.count * 3 * 64;
            if (workers == 1) memcpy(first + at, b.images, n * sizeof(float));
            else same &= memcmp(first + at, b.images, n * sizeof(float)) == 0;
            at += n;
        }
        CHECK(at == 50 * 3 * 64);
        CHECK(same);
        st_loader_free(l);
    }
    free(first);
    st_dataset_free(&d);
}

int main(void) {
    const char *tmp = getenv("ST_TEST_TMP");
    snprintf(tmp_root, sizeof tmp_root, "%s/test_image_folder", tmp && *tmp ? tmp : "/tmp/sparsetrain_test");
    mkdir(tmp && *tmp ? tmp : "/tmp/sparsetrain_test", 0777);
    test_resize_by_hand();
    test_eval_geometry();
    test_random_resized_crop();
    test_decode();
    test_loader_unreadable();
    test_read_file_limits();
    test_loader_workers_in_memory();
    TEST_MAIN_END();
}
