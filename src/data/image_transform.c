/* torchvision's ImageNet transforms on 8-bit RGB images (see image_folder.h):
 * RandomResizedCrop parameters, Resize + CenterCrop geometry, and Pillow's
 * antialiased bilinear resampling (a triangle filter widened by the reduction
 * factor, normalised weights in 22-bit fixed point, horizontal pass first). */
#include "data/image_folder.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/status.h"

#define CROP_TAG 0x7272632d63726f70ULL /* "rrc-crop" */
#define FILTER_BITS 22                 /* Pillow's PRECISION_BITS for 8-bit images */

/* Python's round() on a float: to nearest, ties to even (rint in the default mode). */
static int round_half_even(double x) { return (int)nearbyint(x); }

st_crop st_random_resized_crop(uint64_t seed, int64_t epoch, int64_t position, int height, int width,
                               st_crop_trace *trace) {
    st_rng rng;
    st_rng_seed(&rng, seed ^ CROP_TAG, ((uint64_t)epoch << 32) ^ (uint64_t)position);
    st_crop c;
    c.flip = (int)(st_rng_next(&rng) >> 63);
    /* torch: log_ratio = torch.log(torch.tensor(ratio)) in float32 */
    const float log_lo = logf(3.0f / 4.0f), log_hi = logf((float)(4.0 / 3.0));
    const double area = (double)height * (double)width;
    if (trace) memset(trace, 0, sizeof *trace);
    for (int attempt = 0; attempt < 10; attempt++) {
        /* torch's uniform_(a, b) on float32: u * (b - a) + a with a 24-bit u */
        float scale = st_rng_uniform(&rng) * (1.0f - 0.08f) + 0.08f;
        float log_ratio = st_rng_uniform(&rng) * (log_hi - log_lo) + log_lo;
        if (trace) {
            trace->scale[attempt] = scale;
            trace->log_ratio[attempt] = log_ratio;
            trace->attempts = attempt + 1;
        }
        double target_area = area * (double)scale;
        double aspect = (double)expf(log_ratio);
        int w = round_half_even(sqrt(target_area * aspect));
        int h = round_half_even(sqrt(target_area / aspect));
        if (0 < w && w <= width && 0 < h && h <= height) {
            c.top = (int)st_rng_below(&rng, (uint64_t)(height - h + 1));
            c.left = (int)st_rng_below(&rng, (uint64_t)(width - w + 1));
            c.height = h;
            c.width = w;
            return c;
        }
    }
    /* Fallback to a central crop of the ratio nearest the image's. */
    if (trace) trace->fell_back = 1;
    double in_ratio = (double)width / (double)height;
    if (in_ratio < 3.0 / 4.0) {
        c.width = width;
        c.height = round_half_even(c.width / (3.0 / 4.0));
    } else if (in_ratio > 4.0 / 3.0) {
        c.height = height;
        c.width = round_half_even(c.height * (4.0 / 3.0));
    } else {
        c.width = width;
        c.height = height;
    }
    c.top = (height - c.height) / 2;
    c.left = (width - c.width) / 2;
    return c;
}

int st_eval_resize_size(int size) { return (size * 16 + 7) / 14; /* round(size * 8 / 7), half up */ }

void st_eval_geometry(int height, int width, int resize, int size, int *resized_h, int *resized_w, st_crop *crop) {
    /* torchvision _compute_resized_output_size with an int size */
    int shorter = width <= height ? width : height, longer = width <= height ? height : width;
    double scaled = (double)resize * (double)longer / (double)shorter;
    int new_long = scaled < 1e9 ? (int)scaled : 1000000000; /* slivers: refused by the caller's pixel limit */
    *resized_w = width <= height ? resize : new_long;
    *resized_h = width <= height ? new_long : resize;
    /* CenterCrop: int(round((H - S) / 2.0)), Python rounding */
    crop->height = crop->width = size;
    crop->top = round_half_even((double)(*resized_h - size) / 2.0);
    crop->left = round_half_even((double)(*resized_w - size) / 2.0);
    crop->flip = 0;
}

/* Filter taps of one output sample: first input index and count, then the
 * fixed-point weights; ksize taps reserved per output. */
typedef struct taps {
    int ksize;
    int *first, *count; /* (out) */
    int32_t *weight;    /* (out, ksize) */
} taps;

static void taps_free(taps *t) {
    free(t->first);
    free(t->count);
    free(t->weight);
}

static double triangle(double x) {
    x = x < 0 ? -x : x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter
 * over input [0, in_size) to out_size samples. */
static st_status taps_make(int in_size, int out_size, taps *t) {
    memset(t, 0, sizeof *t);
    double scale = (double)(float)in_size / out_size;
    double filter_scale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filter_scale;
    t->ksize = (int)ceil(support) * 2 + 1;
    t->first = st_malloc(sizeof(int) * (size_t)out_size, "resize taps");
    t->count = st_malloc(sizeof(int) * (size_t)out_size, "resize taps");
    t->weight = st_malloc(sizeof(int32_t) * (size_t)out_size * (size_t)t->ksize, "resize taps");
    double *w = st_malloc(sizeof(double) * (size_t)t->ksize, "resize taps");
    if (!t->first || !t->count || !t->weight || !w) {
        taps_free(t);
        free(w);
        return ST_ERR_NOMEM;
    }
    for (int o = 0; o < out_size; o++) {
        double center = (o + 0.5) * scale, inv = 1.0 / filter_scale;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in_size) hi = in_size;
        int n = hi - lo;
        double sum = 0;
        for (int k = 0; k < n; k++) sum += w[k] = triangle((k + lo - center + 0.5) * inv);
        int32_t *fixed = t->weight + (size_t)o * (size_t)t->ksize;
        for (int k = 0; k < n; k++) {
            double v = sum != 0.0 ? w[k] / sum : w[k];
            fixed[k] = (int32_t)(v < 0 ? -0.5 + v * (1 << FILTER_BITS) : 0.5 + v * (1 << FILTER_BITS));
        }
        t->first[o] = lo;
        t->count[o] = n;
    }
    free(w);
    return ST_OK;
}

static inline uint8_t clip8(int32_t acc) {
    int32_t v = acc >> FILTER_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

st_status st_image_resize_bilinear_window(const uint8_t *src, int src_width, int top, int left, int h, int w,
                                          int out_h, int out_w, int win_top, int win_left, int win_h, int win_w,
                                          uint8_t *dst) {
    if (win_top < 0 || win_left < 0 || win_h < 1 || win_w < 1 || win_top + win_h > out_h || win_left + win_w > out_w)
        return st_fail(ST_ERR_ARGUMENT, "resize: window %dx%d at (%d, %d) is outside the %dx%d output", win_w, win_h,
                       win_left, win_top, out_w, out_h);
    const size_t stride = (size_t)src_width * 3, win_bytes = (size_t)win_w * 3;
    const int32_t half = 1 << (FILTER_BITS - 1);
    const int horizontal = out_w != w, vertical = out_h != h;
    taps th = {0}, tv = {0};
    uint8_t *mid = NULL;
    int32_t *acc = NULL; /* one output row of the vertical pass */
    st_status s = ST_OK;
    if (horizontal) s = taps_make(w, out_w, &th);
    if (s == ST_OK && vertical) s = taps_make(h, out_h, &tv);
    /* Rows [r0, r1) of the region feed the window's output rows (tap bounds are monotone). */
    int r0 = win_top, r1 = win_top + win_h;
    if (s == ST_OK && vertical) {
        r0 = tv.first[win_top];
        r1 = tv.first[win_top + win_h - 1] + tv.count[win_top + win_h - 1];
    }
    /* The horizontal pass runs first, into an 8-bit intermediate (Pillow's order). */
    if (s == ST_OK && horizontal && vertical && !(mid = st_malloc((size_t)(r1 - r0) * win_bytes, "resize intermediate")))
        s = ST_ERR_NOMEM;
    if (s == ST_OK && vertical && !(acc = st_malloc(sizeof(int32_t) * win_bytes, "resize row"))) s = ST_ERR_NOMEM;
    if (s != ST_OK) {
        free(mid);
        taps_free(&th);
        taps_free(&tv);
        return s;
    }
    const uint8_t *rows; /* row r0 of the horizontal pass's output, column win_left */
    size_t rows_stride;
    if (horizontal) {
        uint8_t *hout = vertical ? mid : dst;
        for (int y = r0; y < r1; y++) {
            const uint8_t *in = src + (size_t)(top + y) * stride + (size_t)left * 3;
            uint8_t *o = hout + (size_t)(y - r0) * win_bytes;
            for (int x = win_left; x < win_left + win_w; x++, o += 3) {
                const int32_t *k = th.weight + (size_t)x * (size_t)th.ksize;
                const uint8_t *p = in + (size_t)th.first[x] * 3;
                int32_t r = half, g = half, b = half;
                for (int i = 0; i < th.count[x]; i++, p += 3) {
                    r += p[0] * k[i];
                    g += p[1] * k[i];
                    b += p[2] * k[i];
                }
                o[0] = clip8(r);
                o[1] = clip8(g);
                o[2] = clip8(b);
            }
        }
        rows = hout;
        rows_stride = win_bytes;
    } else {
        rows = src + (size_t)(top + r0) * stride + (size_t)(left + win_left) * 3;
        rows_stride = stride;
    }
    if (vertical) {
        /* Row by row: each output row accumulates whole input rows (unit stride). */
        for (int y = win_top; y < win_top + win_h; y++) {
            const int32_t *k = tv.weight + (size_t)y * (size_t)tv.ksize;
            const uint8_t *base = rows + (size_t)(tv.first[y] - r0) * rows_stride;
            for (size_t x = 0; x < win_bytes; x++) acc[x] = half;
            for (int i = 0; i < tv.count[y]; i++) {
                const uint8_t *p = base + (size_t)i * rows_stride;
                const int32_t wt = k[i];
                for (size_t x = 0; x < win_bytes; x++) acc[x] += p[x] * wt;
            }
            uint8_t *o = dst + (size_t)(y - win_top) * win_bytes;
            for (size_t x = 0; x < win_bytes; x++) o[x] = clip8(acc[x]);
        }
    } else if (!horizontal) {
        for (int y = 0; y < win_h; y++) memcpy(dst + (size_t)y * win_bytes, rows + (size_t)y * rows_stride, win_bytes);
    }
    free(acc);
    free(mid);
    taps_free(&th);
    taps_free(&tv);
    return ST_OK;
}

st_status st_image_resize_bilinear(const uint8_t *src, int src_width, int top, int left, int h, int w, int out_h,
                                   int out_w, uint8_t *dst) {
    return st_image_resize_bilinear_window(src, src_width, top, left, h, w, out_h, out_w, 0, 0, out_h, out_w, dst);
}
