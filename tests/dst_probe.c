/* Helper of dst_parity_test.py: one layer's mask update through the death
 * and growth criteria of sparse/dst.h, from and to raw files.
 *   dst_probe DEATH GROWTH RATE SEED IN OUT
 * IN: int64 numel, then float w[numel], float g[numel], uint8 mask[numel],
 * uint8 fired[numel] (little-endian); OUT: the mask after death (numel
 * bytes), then the mask after growth (numel bytes). k = ceil(RATE * kept).
 *   dst_probe DEATH momentum RATE SEED IN OUT sgd|adam BETA1 BETA2 WD T
 * momentum growth: IN continues with T steps of (float w_t[numel], float
 * g_t[numel]); the dense momentum (sparse/dst.h) is run over them from 0 and
 * growth ranks by its score; OUT continues with m1[numel] (and m2[numel] for
 * adam) as floats. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/status.h"
#include "sparse/dst.h"

int main(int argc, char **argv) {
    if (argc != 7 && argc != 12) {
        fprintf(stderr, "usage: dst_probe DEATH GROWTH RATE SEED IN OUT [sgd|adam BETA1 BETA2 WD T]\n");
        return 2;
    }
    st_death_kind death;
    st_growth_kind growth;
    if (st_dst_parse_death(argv[1], &death) != ST_OK || st_dst_parse_growth(argv[2], &growth) != ST_OK) {
        fprintf(stderr, "dst_probe: %s\n", st_last_error());
        return 2;
    }
    const double rate = atof(argv[3]);
    FILE *in = fopen(argv[5], "rb");
    int64_t n = 0;
    if (!in || fread(&n, sizeof n, 1, in) != 1 || n <= 0 || n > (1 << 26)) {
        fprintf(stderr, "dst_probe: cannot read %s\n", argv[5]);
        return 1;
    }
    float *w = malloc(sizeof(float) * (size_t)n), *g = malloc(sizeof(float) * (size_t)n);
    uint8_t *mask = malloc((size_t)n), *fired = malloc((size_t)n), *after_death = malloc((size_t)n);
    if (!w || !g || !mask || !fired || !after_death || fread(w, sizeof(float), (size_t)n, in) != (size_t)n ||
        fread(g, sizeof(float), (size_t)n, in) != (size_t)n || fread(mask, 1, (size_t)n, in) != (size_t)n ||
        fread(fired, 1, (size_t)n, in) != (size_t)n) {
        fprintf(stderr, "dst_probe: %s is short\n", argv[5]);
        return 1;
    }
    float *m1 = NULL, *m2 = NULL, *score = NULL;
    if (growth == ST_GROWTH_MOMENTUM) {
        if (argc != 12) {
            fprintf(stderr, "dst_probe: momentum growth needs sgd|adam BETA1 BETA2 WD T\n");
            return 2;
        }
        const int adam = strcmp(argv[7], "adam") == 0;
        const double beta1 = atof(argv[8]), beta2 = atof(argv[9]);
        const float wd = (float)atof(argv[10]);
        const int steps = atoi(argv[11]);
        m1 = calloc((size_t)n, sizeof(float)), m2 = adam ? calloc((size_t)n, sizeof(float)) : NULL;
        score = malloc(sizeof(float) * (size_t)n);
        float *wt = malloc(sizeof(float) * (size_t)n), *gt = malloc(sizeof(float) * (size_t)n);
        if (!m1 || (adam && !m2) || !score || !wt || !gt) return 1;
        for (int t = 0; t < steps; t++) {
            if (fread(wt, sizeof(float), (size_t)n, in) != (size_t)n || fread(gt, sizeof(float), (size_t)n, in) != (size_t)n) {
                fprintf(stderr, "dst_probe: %s is short (step %d)\n", argv[5], t);
                return 1;
            }
            st_dst_momentum_step(n, m1, m2, gt, wt, wd, beta1, beta2);
        }
        free(wt), free(gt);
        st_dst_momentum_score(n, m1, m2, score);
    }
    fclose(in);
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) kept += mask[i] != 0;
    const int64_t k = st_dst_removal_count(rate, kept);
    const int64_t removed = st_dst_death(death, n, mask, w, g, k, ST_DST_DEATH_THRESHOLD);
    memcpy(after_death, mask, (size_t)n);
    st_rng rng;
    st_rng_seed(&rng, strtoull(argv[4], NULL, 10), 0);
    const int64_t grown = st_dst_growth(growth, n, mask, fired, score ? score : g, removed, &rng);
    FILE *out = fopen(argv[6], "wb");
    if (removed < 0 || grown != removed || !out || fwrite(after_death, 1, (size_t)n, out) != (size_t)n ||
        fwrite(mask, 1, (size_t)n, out) != (size_t)n || (m1 && fwrite(m1, sizeof(float), (size_t)n, out) != (size_t)n) ||
        (m2 && fwrite(m2, sizeof(float), (size_t)n, out) != (size_t)n) || fclose(out) != 0) {
        fprintf(stderr, "dst_probe: update failed\n");
        return 1;
    }
    printf("%lld %lld\n", (long long)removed, (long long)grown);
    free(w), free(g), free(mask), free(fired), free(after_death), free(m1), free(m2), free(score);
    return 0;
}
