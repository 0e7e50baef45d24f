/* Death and growth criteria and the death-rate schedule of dynamic sparse
 * training (dst.h): pure functions of one layer's mask and arrays. */
#include "sparse/dst.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

st_status st_dst_parse_death(const char *name, st_death_kind *out) {
    static const struct { const char *name; st_death_kind kind; } kinds[] = {
        {"magnitude", ST_DEATH_MAGNITUDE}, {"SET", ST_DEATH_SET}, {"threshold", ST_DEATH_THRESHOLD},
        {"Taylor_FO", ST_DEATH_TAYLOR_FO}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(name, kinds[i].name) == 0) {
            *out = kinds[i].kind;
            return ST_OK;
        }
    return st_fail(ST_ERR_ARGUMENT, "--death '%s' is unknown (magnitude, SET, threshold, Taylor_FO)", name);
}

st_status st_dst_parse_growth(const char *name, st_growth_kind *out) {
    static const struct { const char *name; st_growth_kind kind; } kinds[] = {
        {"random", ST_GROWTH_RANDOM}, {"random_unfired", ST_GROWTH_RANDOM_UNFIRED}, {"gradient", ST_GROWTH_GRADIENT},
        {"momentum", ST_GROWTH_MOMENTUM}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(name, kinds[i].name) == 0) {
            *out = kinds[i].kind;
            return ST_OK;
        }
    return st_fail(ST_ERR_ARGUMENT, "--growth '%s' is unknown (random, random_unfired, gradient, momentum)", name);
}

st_status st_dst_parse_redistribution(const char *name) {
    if (strcmp(name, "none") == 0) return ST_OK;
    if (strcmp(name, "momentum") == 0 || strcmp(name, "magnitude") == 0 || strcmp(name, "nonzeros") == 0)
        return st_fail(ST_ERR_ARGUMENT,
                       "--redistribution %s is not available: only none is built (every layer regrows what it "
                       "lost, so layer densities stay as --sparse_init chose them); the reference's CIFAR code "
                       "accepts the flag but never uses it, so none is what it trains with too",
                       name);
    return st_fail(ST_ERR_ARGUMENT, "--redistribution '%s' is unknown (none)", name);
}

st_status st_dst_parse_decay(const char *name, st_decay_kind *out) {
    if (strcmp(name, "cosine") == 0) *out = ST_DECAY_COSINE;
    else if (strcmp(name, "linear") == 0) *out = ST_DECAY_LINEAR;
    else return st_fail(ST_ERR_ARGUMENT, "--decay-schedule '%s' is unknown (cosine, linear)", name);
    return ST_OK;
}

double st_dst_death_rate(st_decay_kind kind, double initial, int64_t step, int64_t total_steps) {
    const double f = ST_DST_FINAL_DEATH_RATE;
    if (total_steps <= 0 || step >= total_steps) return f;
    if (step <= 0) return initial;
    const double x = (double)step / (double)total_steps;
    if (kind == ST_DECAY_LINEAR) return initial + (f - initial) * x;
    return f + (initial - f) * (1.0 + cos(M_PI * x)) / 2.0;
}

int64_t st_dst_removal_count(double rate, int64_t active) {
    if (active <= 0 || !(rate > 0)) return 0;
    double k = ceil(rate * (double)active);
    return k >= (double)active ? active : (int64_t)k;
}

/* A candidate position with its sort key: the smaller key goes first, then the lower position. */
typedef struct ranked {
    float key;
    int64_t index;
} ranked;

static int ranked_order(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->key < y->key) return -1;
    if (x->key > y->key) return 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* NaN keys sort last (never chosen before a number). */
static float key_of(float v) { return isnan(v) ? INFINITY : v; }

/* Clears (value 0) or sets (value 1) in `mask` the first `k` of `n` ranked candidates. */
static int64_t take_first(ranked *r, int64_t n, int64_t k, uint8_t *mask, uint8_t value) {
    if (k > n) k = n;
    if (k <= 0) return 0;
    qsort(r, (size_t)n, sizeof *r, ranked_order);
    for (int64_t i = 0; i < k; i++) mask[r[i].index] = value;
    return k;
}

int64_t st_dst_death(st_death_kind kind, int64_t numel, uint8_t *mask, const float *w, const float *g, int64_t k,
                     float threshold) {
    if (kind == ST_DEATH_THRESHOLD) {
        int64_t removed = 0;
        for (int64_t i = 0; i < numel; i++)
            if (mask[i] && fabsf(w[i]) <= threshold) mask[i] = 0, removed++;
        return removed;
    }
    int64_t kept = 0;
    for (int64_t i = 0; i < numel; i++) kept += mask[i] != 0;
    if (k > kept) k = kept;
    if (k <= 0) return 0;
    ranked *r = malloc(sizeof *r * (size_t)kept);
    if (!r) return -1;
    int64_t removed = 0;
    if (kind == ST_DEATH_SET) {
        /* positives (w >= 0) by w ascending, negatives by -w ascending: both closest to zero first */
        int64_t n_pos = 0, n_neg = 0;
        for (int64_t i = 0; i < numel; i++)
            if (mask[i] && !(w[i] < 0)) r[n_pos++] = (ranked){key_of(w[i]), i};
        for (int64_t i = 0; i < numel; i++)
            if (mask[i] && w[i] < 0) r[n_pos + n_neg++] = (ranked){-w[i], i};
        int64_t k_pos = (k + 1) / 2, k_neg = k - k_pos;
        if (k_pos > n_pos) k_neg += k_pos - n_pos, k_pos = n_pos;
        if (k_neg > n_neg) k_pos += k_neg - n_neg, k_neg = n_neg;
        removed = take_first(r, n_pos, k_pos, mask, 0);
        removed += take_first(r + n_pos, n_neg, k_neg, mask, 0);
    } else {
        int64_t n = 0;
        for (int64_t i = 0; i < numel; i++) {
            if (!mask[i]) continue;
            const float score = kind == ST_DEATH_TAYLOR_FO ? (w[i] * g[i]) * (w[i] * g[i]) : fabsf(w[i]);
            r[n++] = (ranked){key_of(score), i};
        }
        removed = take_first(r, n, k, mask, 0);
    }
    free(r);
    return removed;
}

/* Sets `count` of the `n` positions in `idx` (increasing) chosen uniformly:
 * a partial Fisher-Yates shuffle, so the draws are a function of the stream. */
static void grow_uniform(int64_t *idx, int64_t n, int64_t count, uint8_t *mask, st_rng *rng) {
    for (int64_t i = 0; i < count; i++) {
        const int64_t j = i + (int64_t)st_rng_below(rng, (uint64_t)(n - i));
        const int64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
        mask[idx[i]] = 1;
    }
}

int64_t st_dst_growth(st_growth_kind kind, int64_t numel, uint8_t *mask, const uint8_t *fired, const float *g,
                      int64_t count, st_rng *rng) {
    int64_t inactive = 0;
    for (int64_t i = 0; i < numel; i++) inactive += mask[i] == 0;
    if (count > inactive) count = inactive;
    if (count <= 0) return 0;
    if (kind == ST_GROWTH_GRADIENT || kind == ST_GROWTH_MOMENTUM) {
        ranked *r = malloc(sizeof *r * (size_t)inactive);
        if (!r) return -1;
        int64_t n = 0;
        for (int64_t i = 0; i < numel; i++)
            if (!mask[i]) r[n++] = (ranked){isnan(g[i]) ? INFINITY : -fabsf(g[i]), i};
        const int64_t grown = take_first(r, n, count, mask, 1);
        free(r);
        return grown;
    }
    int64_t *idx = malloc(sizeof *idx * (size_t)inactive);
    if (!idx) return -1;
    int64_t grown = 0;
    if (kind == ST_GROWTH_RANDOM_UNFIRED) {
        int64_t n = 0;
        for (int64_t i = 0; i < numel; i++)
            if (!mask[i] && !fired[i]) idx[n++] = i;
        const int64_t first = count < n ? count : n;
        grow_uniform(idx, n, first, mask, rng);
        grown = first;
    }
    if (grown < count) {
        int64_t n = 0;
        for (int64_t i = 0; i < numel; i++)
            if (!mask[i]) idx[n++] = i;
        grow_uniform(idx, n, count - grown, mask, rng);
        grown = count;
    }
    free(idx);
    return grown;
}

void st_dst_momentum_step(int64_t n, float *m1, float *m2, const float *g, const float *w, float wd, double beta1,
                          double beta2) {
    const float b1 = (float)beta1, b2 = (float)beta2;
    const float one_minus_b1 = (float)(1.0 - beta1), one_minus_b2 = (float)(1.0 - beta2);
    if (!m2) {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t k = 0; k < n; k++) m1[k] = m1[k] * b1 + (g[k] + wd * w[k]);
        return;
    }
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t k = 0; k < n; k++) {
        const float d = g[k] + wd * w[k];
        m1[k] = m1[k] * b1 + d * one_minus_b1;
        m2[k] = m2[k] * b2 + one_minus_b2 * d * d;
    }
}

void st_dst_momentum_score(int64_t n, const float *m1, const float *m2, float *score) {
    for (int64_t k = 0; k < n; k++) score[k] = m2 ? m1[k] / (sqrtf(m2[k]) + 1e-8f) : m1[k];
}
