/* CIFAR augmentation and normalisation of one image: pad (reflect or zeros),
 * random crop back to HxW, random horizontal flip, then (p/255 - mean)/std.
 * The draws come from a counter-seeded stream so any image can be redone alone. */
#include "data/dataset.h"

#include "core/rng.h"
#include "core/status.h"

/* Domain tag so augmentation streams never coincide with the shuffle stream. */
#define AUGMENT_TAG 0x6175676d656e7421ULL /* "augment!" */

st_augment_draw st_augment_draw_for(uint64_t seed, int64_t epoch, int64_t position, int pad) {
    st_rng rng;
    /* (epoch, position) -> one stream id; st_rng_seed mixes it bijectively. */
    st_rng_seed(&rng, seed ^ AUGMENT_TAG, ((uint64_t)epoch << 32) ^ (uint64_t)position);
    st_augment_draw d;
    d.offset_y = (int)st_rng_below(&rng, (uint64_t)(2 * pad + 1));
    d.offset_x = (int)st_rng_below(&rng, (uint64_t)(2 * pad + 1));
    d.flip = (int)(st_rng_next(&rng) >> 63);
    return d;
}

void st_normalise_table(const st_dataset *d, float table[3][256]) {
    ST_ASSERT(d->channels >= 1 && d->channels <= 3);
    for (int c = 0; c < d->channels; c++)
        for (int p = 0; p < 256; p++) table[c][p] = ((float)p / 255.0f - d->mean[c]) / d->std[c];
}

/* Source index of padded coordinate `i` (in [-pad, n+pad)), or -1 for a zero pad.
 * Reflection mirrors about the edge pixel without repeating it (torch 'reflect'):
 * -1 -> 1, n -> n-2. Requires pad < n. */
static inline int source_index(int i, int n, int reflect) {
    if (i >= 0 && i < n) return i;
    if (!reflect) return -1;
    return i < 0 ? -i : 2 * (n - 1) - i;
}

void st_augment_image(const uint8_t *src, int channels, int height, int width, const st_augment_draw *draw, int pad,
                      int reflect, const float table[3][256], float *dst) {
    size_t plane = (size_t)height * (size_t)width;
    if (!draw) {
        for (int c = 0; c < channels; c++) {
            const uint8_t *s = src + (size_t)c * plane;
            float *o = dst + (size_t)c * plane;
            for (size_t i = 0; i < plane; i++) o[i] = table[c][s[i]];
        }
        return;
    }
    for (int c = 0; c < channels; c++) {
        const uint8_t *s = src + (size_t)c * plane;
        float *o = dst + (size_t)c * plane;
        const float zero = table[c][0];
        for (int y = 0; y < height; y++) {
            int sy = source_index(y + draw->offset_y - pad, height, reflect);
            float *row = o + (size_t)y * (size_t)width;
            if (sy < 0) {
                for (int x = 0; x < width; x++) row[x] = zero;
                continue;
            }
            const uint8_t *srow = s + (size_t)sy * (size_t)width;
            for (int x = 0; x < width; x++) {
                /* Crop first, then flip the crop (torchvision's transform order). */
                int cx = draw->flip ? width - 1 - x : x;
                int sx = source_index(cx + draw->offset_x - pad, width, reflect);
                row[x] = sx < 0 ? zero : table[c][srow[sx]];
            }
        }
    }
}
