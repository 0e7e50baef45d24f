/* Dynamic sparse training criteria (sparse/dst.h) on small hand-made
 * tensors: each death and growth criterion picks exactly the expected
 * positions, ties go to the lower position, fully dense layers and layers
 * with one kept weight, the death-rate schedules and the mode parsers. */
#include <math.h>
#include <string.h>

#include "core/status.h"
#include "sparse/dst.h"
#include "testing.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

static int mask_is(const uint8_t *mask, const char *expected) {
    for (size_t i = 0; expected[i]; i++)
        if (mask[i] != (expected[i] == '1')) return 0;
    return 1;
}

static void set_mask(uint8_t *mask, const char *bits) {
    for (size_t i = 0; bits[i]; i++) mask[i] = bits[i] == '1';
}

static void test_magnitude_death(void) {
    /* kept at 0,1,3,4,6; |w| 0.5, 0.1, 0.3, 0.1, 0.9 -> remove 2: positions 1 and 4 (tie 0.1: both) */
    const float w[8] = {0.5f, -0.1f, 0, 0.3f, 0.1f, 0, -0.9f, 0};
    uint8_t m[8];
    set_mask(m, "11011010");
    CHECK(st_dst_death(ST_DEATH_MAGNITUDE, 8, m, w, NULL, 2, 0) == 2);
    CHECK(mask_is(m, "10010010"));
    /* a tie at the cut: remove 1 of the two 0.1s -> the lower position (1) */
    set_mask(m, "11011010");
    CHECK(st_dst_death(ST_DEATH_MAGNITUDE, 8, m, w, NULL, 1, 0) == 1);
    CHECK(mask_is(m, "10011010"));
    /* k above the kept count removes every kept weight */
    set_mask(m, "11011010");
    CHECK(st_dst_death(ST_DEATH_MAGNITUDE, 8, m, w, NULL, 99, 0) == 5);
    CHECK(mask_is(m, "00000000"));
    /* a NaN is never removed before a number */
    const float wn[4] = {NAN, 0.2f, 0.1f, 0.3f};
    uint8_t mn[4] = {1, 1, 1, 1};
    CHECK(st_dst_death(ST_DEATH_MAGNITUDE, 4, mn, wn, NULL, 3, 0) == 3);
    CHECK(mask_is(mn, "1000"));
}

static void test_set_death(void) {
    /* positives 0.2 (0), 0.05 (2), 0.7 (4); negatives -0.3 (1), -0.01 (3), -0.6 (5); 0 kept at 6 */
    const float w[7] = {0.2f, -0.3f, 0.05f, -0.01f, 0.7f, -0.6f, 0};
    uint8_t m[7];
    /* k = 3: ceil(3/2) = 2 from the non-negatives closest to 0 (6: 0, 2: 0.05), 1 negative (3: -0.01) */
    set_mask(m, "1111111");
    CHECK(st_dst_death(ST_DEATH_SET, 7, m, w, NULL, 3, 0) == 3);
    CHECK(mask_is(m, "1100110"));
    /* k = 4 with a single negative kept: 1 negative, the other 3 from the positives */
    set_mask(m, "1011101");
    CHECK(st_dst_death(ST_DEATH_SET, 7, m, w, NULL, 4, 0) == 4);
    CHECK(mask_is(m, "0000100"));
}

static void test_threshold_death(void) {
    const float w[5] = {0.0005f, -0.001f, 0.0011f, -0.5f, 0};
    uint8_t m[5];
    set_mask(m, "11110");
    CHECK(st_dst_death(ST_DEATH_THRESHOLD, 5, m, w, NULL, 0, ST_DST_DEATH_THRESHOLD) == 2);
    CHECK(mask_is(m, "00110"));
}

static void test_taylor_death(void) {
    /* (w g)^2: 0.04, 0.01, 0.09(masked), 0.0025, 0.01 -> remove 2: position 3, then the tie 1 vs 4 -> 1 */
    const float w[5] = {0.2f, 1.0f, 0.3f, 0.05f, 0.1f};
    const float g[5] = {1.0f, 0.1f, 1.0f, 1.0f, 1.0f};
    uint8_t m[5];
    set_mask(m, "11011");
    CHECK(st_dst_death(ST_DEATH_TAYLOR_FO, 5, m, w, g, 2, 0) == 2);
    CHECK(mask_is(m, "10001"));
}

static void test_gradient_growth(void) {
    const float g[6] = {9, -0.5f, 0.2f, -0.5f, 0.1f, 0};
    uint8_t m[6];
    /* inactive 1..5; largest |g|: 1 and 3 tie at 0.5 (both), then 2 */
    set_mask(m, "100000");
    CHECK(st_dst_growth(ST_GROWTH_GRADIENT, 6, m, NULL, g, 3, NULL) == 3);
    CHECK(mask_is(m, "111100"));
    /* a tie at the cut: the lower position */
    set_mask(m, "100000");
    CHECK(st_dst_growth(ST_GROWTH_GRADIENT, 6, m, NULL, g, 1, NULL) == 1);
    CHECK(mask_is(m, "110000"));
    /* all-zero gradients: the lowest inactive positions */
    const float z[6] = {0};
    set_mask(m, "101000");
    CHECK(st_dst_growth(ST_GROWTH_GRADIENT, 6, m, NULL, z, 2, NULL) == 2);
    CHECK(mask_is(m, "111100"));
    /* a fully dense layer: nothing to grow */
    set_mask(m, "111111");
    CHECK(st_dst_growth(ST_GROWTH_GRADIENT, 6, m, NULL, g, 2, NULL) == 0);
    CHECK(mask_is(m, "111111"));
}

static int count(const uint8_t *m, int n) {
    int c = 0;
    for (int i = 0; i < n; i++) c += m[i] != 0;
    return c;
}

static void test_random_growth(void) {
    enum { N = 64 };
    uint8_t m[N], m2[N];
    int hits[N] = {0};
    for (int trial = 0; trial < 400; trial++) {
        memset(m, 0, N);
        for (int i = 0; i < N; i += 4) m[i] = 1; /* 16 kept */
        st_rng rng, rng2;
        st_rng_seed(&rng, 5, (uint64_t)trial);
        st_rng_seed(&rng2, 5, (uint64_t)trial);
        memcpy(m2, m, N);
        CHECK(st_dst_growth(ST_GROWTH_RANDOM, N, m, NULL, NULL, 10, &rng) == 10);
        CHECK(count(m, N) == 26);
        for (int i = 0; i < N; i += 4) CHECK(m[i] == 1);
        /* the same stream grows the same positions */
        st_dst_growth(ST_GROWTH_RANDOM, N, m2, NULL, NULL, 10, &rng2);
        CHECK(memcmp(m, m2, N) == 0);
        for (int i = 0; i < N; i++) hits[i] += m[i] && i % 4;
    }
    /* uniform over the 48 inactive positions: 400 * 10 / 48 = 83 expected each */
    for (int i = 0; i < N; i++)
        if (i % 4) CHECK(hits[i] > 40 && hits[i] < 130);
    /* asking for more than there is grows every inactive position */
    memset(m, 0, N);
    m[3] = 1;
    st_rng rng;
    st_rng_seed(&rng, 1, 1);
    CHECK(st_dst_growth(ST_GROWTH_RANDOM, N, m, NULL, NULL, 100, &rng) == N - 1);
    CHECK(count(m, N) == N);
}

static void test_random_unfired_growth(void) {
    enum { N = 12 };
    uint8_t m[N], fired[N];
    /* kept 0,1; fired also 2,3 (active once, inactive now); never active 4..11 */
    st_rng rng;
    st_rng_seed(&rng, 3, 0);
    set_mask(m, "110000000000");
    set_mask(fired, "111100000000");
    CHECK(st_dst_growth(ST_GROWTH_RANDOM_UNFIRED, N, m, fired, NULL, 5, &rng) == 5);
    CHECK(m[2] == 0 && m[3] == 0); /* never-active positions come first */
    CHECK(count(m, N) == 7);
    /* more than the unfired positions: all of them, then among the fired-but-inactive */
    set_mask(m, "110000000000");
    set_mask(fired, "111111111100");
    CHECK(st_dst_growth(ST_GROWTH_RANDOM_UNFIRED, N, m, fired, NULL, 3, &rng) == 3);
    CHECK(m[10] == 1 && m[11] == 1);
    CHECK(count(m, N) == 5);
}

static void test_single_kept_weight(void) {
    /* one kept weight: ceil(0.5 * 1) = 1 is removed and one regrown elsewhere (by gradient) */
    const float w[4] = {0, 0.3f, 0, 0};
    const float g[4] = {0.1f, 0.9f, -0.4f, 0};
    uint8_t m[4];
    set_mask(m, "0100");
    const int64_t k = st_dst_removal_count(0.5, 1);
    CHECK(k == 1);
    CHECK(st_dst_death(ST_DEATH_MAGNITUDE, 4, m, w, NULL, k, 0) == 1);
    CHECK(mask_is(m, "0000"));
    /* the removed position competes too (the reference's and RigL's rule): its |g| 0.9 wins */
    CHECK(st_dst_growth(ST_GROWTH_GRADIENT, 4, m, NULL, g, 1, NULL) == 1);
    CHECK(mask_is(m, "0100"));
}

static void test_schedule(void) {
    CHECK(st_dst_removal_count(0.5, 7) == 4);
    CHECK(st_dst_removal_count(0.3, 10) == 3);
    CHECK(st_dst_removal_count(0.0001, 10) == 1);
    CHECK(st_dst_removal_count(1.5, 10) == 10);
    CHECK(st_dst_removal_count(0.5, 0) == 0);
    CHECK(st_dst_removal_count(0, 10) == 0);
    const double f = ST_DST_FINAL_DEATH_RATE;
    CHECK_NEAR(st_dst_death_rate(ST_DECAY_COSINE, 0.5, 0, 1000), 0.5, 1e-12);
    CHECK_NEAR(st_dst_death_rate(ST_DECAY_COSINE, 0.5, 500, 1000), f + (0.5 - f) / 2, 1e-12);
    CHECK_NEAR(st_dst_death_rate(ST_DECAY_COSINE, 0.5, 250, 1000), f + (0.5 - f) * (1 + cos(M_PI / 4)) / 2, 1e-12);
    CHECK_NEAR(st_dst_death_rate(ST_DECAY_COSINE, 0.5, 1000, 1000), f, 1e-12);
    CHECK_NEAR(st_dst_death_rate(ST_DECAY_COSINE, 0.5, 5000, 1000), f, 1e-12);
    CHECK_NEAR(st_dst_death_rate(ST_DECAY_LINEAR, 0.5, 250, 1000), 0.5 + (f - 0.5) * 0.25, 1e-12);
    CHECK_NEAR(st_dst_death_rate(ST_DECAY_LINEAR, 0.5, 1000, 1000), f, 1e-12);
    /* monotone non-increasing */
    double last = 1;
    for (int s = 0; s <= 1000; s += 10) {
        const double r = st_dst_death_rate(ST_DECAY_COSINE, 0.5, s, 1000);
        CHECK(r <= last + 1e-15);
        last = r;
    }
}

/* Momentum growth by hand: two SGD steps (beta 0.5, wd 0.5) and two Adam
 * steps, on 4 positions of which 0 is kept (w = 2), then growth ranks the
 * inactive ones by |score|. */
static void test_momentum_growth(void) {
    float m1[4] = {0}, score[4];
    const float w[4] = {2, 0, 0, 0};
    const float g1[4] = {1, 4, -8, 2}, g2[4] = {1, -2, 2, 1};
    /* SGD: m = g1 + wd w, then 0.5 m + g2 + wd w */
    st_dst_momentum_step(4, m1, NULL, g1, w, 0.5f, 0.5, 0.0);
    CHECK(m1[0] == 2 && m1[1] == 4 && m1[2] == -8 && m1[3] == 2);
    st_dst_momentum_step(4, m1, NULL, g2, w, 0.5f, 0.5, 0.0);
    CHECK(m1[0] == 3 && m1[1] == 0 && m1[2] == -2 && m1[3] == 2);
    st_dst_momentum_score(4, m1, NULL, score);
    CHECK(score[0] == 3 && score[2] == -2);
    uint8_t m[4];
    /* inactive 1..3 with |score| 0, 2, 2: the tie at 2 goes to position 2 first, then 3 */
    set_mask(m, "1000");
    CHECK(st_dst_growth(ST_GROWTH_MOMENTUM, 4, m, NULL, score, 1, NULL) == 1);
    CHECK(mask_is(m, "1010"));
    set_mask(m, "1000");
    CHECK(st_dst_growth(ST_GROWTH_MOMENTUM, 4, m, NULL, score, 2, NULL) == 2);
    CHECK(mask_is(m, "1011"));
    /* Adam (beta1 0.5, beta2 0.75, wd 0): m1 = 0.5 g, m2 = 0.25 g^2 after one step; score = m1 / (sqrt(m2) + 1e-8) */
    float a1[4] = {0}, a2[4] = {0};
    st_dst_momentum_step(4, a1, a2, g1, w, 0.0f, 0.5, 0.75);
    CHECK(a1[1] == 2 && a2[1] == 4 && a1[2] == -4 && a2[2] == 16);
    st_dst_momentum_score(4, a1, a2, score);
    CHECK_NEAR(score[1], 2.0 / (2.0 + 1e-8), 1e-7);
    CHECK_NEAR(score[2], -4.0 / (4.0 + 1e-8), 1e-7);
    /* second step: m1 = 0.5 m1 + 0.5 g2, m2 = 0.75 m2 + 0.25 g2^2 */
    st_dst_momentum_step(4, a1, a2, g2, w, 0.0f, 0.5, 0.75);
    CHECK(a1[1] == 0 && a2[1] == 4 && a1[3] == 1 && a2[3] == 1);
}

static void test_parsers(void) {
    st_death_kind d;
    st_growth_kind g;
    st_decay_kind k;
    CHECK(st_dst_parse_death("SET", &d) == ST_OK && d == ST_DEATH_SET);
    CHECK(st_dst_parse_death("Taylor_FO", &d) == ST_OK && d == ST_DEATH_TAYLOR_FO);
    CHECK(st_dst_parse_death("bogus", &d) == ST_ERR_ARGUMENT && strstr(st_last_error(), "--death"));
    CHECK(st_dst_parse_growth("gradient", &g) == ST_OK && g == ST_GROWTH_GRADIENT);
    CHECK(st_dst_parse_growth("random_unfired", &g) == ST_OK && g == ST_GROWTH_RANDOM_UNFIRED);
    CHECK(st_dst_parse_growth("momentum", &g) == ST_OK && g == ST_GROWTH_MOMENTUM);
    CHECK(st_dst_parse_growth("momentum_neuron", &g) == ST_ERR_ARGUMENT && strstr(st_last_error(), "unknown"));
    CHECK(st_dst_parse_redistribution("none") == ST_OK);
    CHECK(st_dst_parse_redistribution("momentum") == ST_ERR_ARGUMENT && strstr(st_last_error(), "not available"));
    CHECK(st_dst_parse_redistribution("x") == ST_ERR_ARGUMENT && strstr(st_last_error(), "unknown"));
    CHECK(st_dst_parse_decay("linear", &k) == ST_OK && k == ST_DECAY_LINEAR);
    CHECK(st_dst_parse_decay("step", &k) == ST_ERR_ARGUMENT);
}

int main(void) {
    test_magnitude_death();
    test_set_death();
    test_threshold_death();
    test_taylor_death();
    test_gradient_growth();
    test_momentum_growth();
    test_random_growth();
    test_random_unfired_growth();
    test_single_kept_weight();
    test_schedule();
    test_parsers();
    TEST_MAIN_END();
}
