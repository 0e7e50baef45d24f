/* Layer-wise density distributions (SPEC 4): hand-computed values on small
 * shapes, properties over many random models and densities, and the shape
 * of ERK on cifar_resnet_20.
 *
 * Tolerances: densities are hand-computed in double, so 1e-12 (1e-15 where
 * one division is involved) allows a few roundings; kept counts d * N are
 * sums of ~20 products, 1e-9 .. 1e-6 absolute of a count that must be exact.
 */
#include <string.h>

#include "core/rng.h"
#include "models/model.h"
#include "sparse/distributions.h"
#include "sparse/masks.h"
#include "testing.h"

static st_layer_shape conv(int64_t o, int64_t i, int64_t k) {
    st_layer_shape s = {4, {o, i, k, k}, 0, 0};
    return s;
}
static st_layer_shape linear(int64_t o, int64_t i) {
    st_layer_shape s = {2, {o, i, 0, 0}, 0, 1};
    return s;
}

static double kept(const double *d, const st_layer_shape *l, int n) {
    double k = 0;
    for (int i = 0; i < n; i++) k += d[i] * (double)st_layer_numel(&l[i]);
    return k;
}

static double numel_sum(const st_layer_shape *l, int n) {
    double t = 0;
    for (int i = 0; i < n; i++) t += (double)st_layer_numel(&l[i]);
    return t;
}

static double raw(const st_layer_shape *l, int kernel_aware) {
    int nd = kernel_aware ? l->ndim : 2;
    double sum = 0, prod = 1;
    for (int i = 0; i < nd; i++) sum += (double)l->dims[i], prod *= (double)l->dims[i];
    return sum / prod;
}

/* Hand-computed cases beyond the basic ones in main. */
static void test_hand_computed(void) {
    double d[4];
    /* Two successive moves into the dense set. L1 [2,2] r=1, L2 [4,4] r=1/2,
     * L3 [100,100] r=1/50; N = 10020, d = 0.1:
     *   round 1: eps = 1002 / (4 + 8 + 200) = 4.73 -> eps * 1 > 1, L1 dense;
     *   round 2: eps = (1001.6 - 3.6) / 208 = 4.80 -> eps / 2 > 1, L2 dense;
     *   round 3: eps = (1000 - 18) / 200 = 4.91 -> d3 = 4.91 / 50 = 0.0982. */
    st_layer_shape chain[3] = {linear(2, 2), linear(4, 4), linear(100, 100)};
    chain[0].is_classifier = chain[1].is_classifier = 0;
    chain[0].is_first = 1;
    CHECK_OK(st_layer_densities("ERK", 0.1, 1.0, chain, 3, d));
    CHECK(d[0] == 1.0 && d[1] == 1.0);
    CHECK_NEAR(d[2], 0.0982, 1e-12);
    CHECK_NEAR(kept(d, chain, 3), 1002, 1e-9);
    /* ER scores linear layers exactly as ERK does */
    double e[3];
    CHECK_OK(st_layer_densities("ER", 0.1, 1.0, chain, 3, e));
    CHECK(memcmp(d, e, sizeof e) == 0);
    /* Ties: every layer with the largest score moves in the same round.
     * [2,2] twice (r = 1), [100,100]; N = 10008, d = 0.1:
     *   eps = 1000.8 / 208 > 1 -> both [2,2] dense; eps = (1000 - 7.2) / 200 = 4.964. */
    st_layer_shape tie[3] = {linear(2, 2), linear(2, 2), linear(100, 100)};
    tie[0].is_classifier = tie[1].is_classifier = 0;
    CHECK_OK(st_layer_densities("ERK", 0.1, 1.0, tie, 3, d));
    CHECK(d[0] == 1.0 && d[1] == 1.0);
    CHECK_NEAR(d[2], 4.964 / 50, 1e-12);
    /* ERK_plus with fc_density 0.5 on A [4,2,3,3], B [8,4,3,3], C [10,8]
     * (classifier), d = 0.3: the rest gets (132 - 40) / 360 = 0.25556, ERK
     * over A (r = 1/6) and B (r = 1/16): eps = 92 / (12 + 18) = 3.0667. */
    st_layer_shape small[3] = {conv(4, 2, 3), conv(8, 4, 3), linear(10, 8)};
    small[0].is_first = 1;
    CHECK_OK(st_layer_densities("ERK_plus", 0.3, 0.5, small, 3, d));
    CHECK_NEAR(d[0], 92.0 / 30.0 / 6.0, 1e-12);
    CHECK_NEAR(d[1], 92.0 / 30.0 / 16.0, 1e-12);
    CHECK(d[2] == 0.5);
    CHECK_NEAR(kept(d, small, 3), 132, 1e-9);
    /* ERK_plus: unreachable combinations are errors naming both flags */
    CHECK(st_layer_densities("ERK_plus", 0.05, 1.0, small, 3, d) == ST_ERR_ARGUMENT); /* fc alone > budget */
    CHECK(strstr(st_last_error(), "fc_density") != NULL);
    CHECK(st_layer_densities("ERK_plus", 0.3, 0.0, small, 3, d) == ST_ERR_ARGUMENT);
    /* uniform_plus where the first prunable layer is a linear one (lenet300-100):
     * d >= 0.2 keeps the first layer dense and the rest at d; at 0.05 the
     * dense first layer alone exceeds the budget. */
    st_layer_shape mlp[3] = {linear(300, 784), linear(100, 300), linear(10, 100)};
    mlp[0].is_first = 1;
    mlp[0].is_classifier = mlp[1].is_classifier = 0;
    CHECK_OK(st_layer_densities("uniform_plus", 0.9, 1.0, mlp, 3, d));
    CHECK(d[0] == 1.0 && d[1] == 0.9 && d[2] == 0.9);
    CHECK(st_layer_densities("uniform_plus", 0.05, 1.0, mlp, 3, d) == ST_ERR_ARGUMENT);
    /* data-dependent names are known but need the weights */
    CHECK(st_sparse_init_is_known("snip") && st_sparse_init_is_known("GraSP") &&
          st_sparse_init_is_known("global_magnitude") && !st_sparse_init_is_known("grasp"));
    CHECK(st_sparse_init_needs_data("snip") && !st_sparse_init_needs_data("global_magnitude"));
    CHECK(st_layer_densities("snip", 0.1, 1.0, small, 3, d) == ST_ERR_ARGUMENT);
    CHECK(strstr(st_last_error(), "training data") != NULL);
}

/* Properties over many random models and densities 0.01 .. 0.9. */
static void test_properties(void) {
    st_rng rng;
    st_rng_seed(&rng, 2022, 4);
    static const int kernels[] = {1, 3, 5, 7};
    int checked = 0, moved = 0;
    for (int trial = 0; trial < 400; trial++) {
        int n = 1 + (int)st_rng_below(&rng, 14);
        st_layer_shape l[16];
        for (int i = 0; i < n; i++) {
            int is_linear = i == n - 1 || st_rng_below(&rng, 5) == 0;
            int64_t o = 1 + (int64_t)st_rng_below(&rng, 512), in = 1 + (int64_t)st_rng_below(&rng, 512);
            l[i] = is_linear ? linear(o, in) : conv(o, in, kernels[st_rng_below(&rng, 4)]);
            l[i].is_classifier = 0;
            l[i].is_first = i == 0;
        }
        l[n - 1].is_classifier = 1;
        double density = 0.01 + 0.89 * st_rng_uniform_double(&rng), N = numel_sum(l, n), d[16];
        const char *names[] = {"uniform", "ER", "ERK", "ERK_plus"};
        for (int k = 0; k < 4; k++) {
            double fc = k == 3 ? (st_rng_below(&rng, 2) ? 1.0 : 0.5) : 1.0;
            st_status s = st_layer_densities(names[k], density, fc, l, n, d);
            if (k == 3 && s == ST_ERR_ARGUMENT) continue; /* the classifier alone can exceed the budget */
            CHECK_OK(s);
            if (s != ST_OK) continue;
            checked++;
            int bad = 0;
            for (int i = 0; i < n; i++) bad += !(d[i] >= 0 && d[i] <= 1);
            CHECK(bad == 0);
            /* the expected kept count is d*N to within one weight */
            if (fabs(kept(d, l, n) - density * N) > 1.0)
                fprintf(stderr, "%s trial %d: kept %.3f vs %.3f\n", names[k], trial, kept(d, l, n), density * N);
            CHECK(fabs(kept(d, l, n) - density * N) <= 1.0);
            if (k == 0) continue;
            /* ER/ERK: densities follow the raw scores; the sparse ones are eps * r exactly, the
             * others exactly 1 and only where eps * r would exceed 1 */
            int last = k == 3 ? n - 1 : n;
            double eps = -1;
            for (int i = 0; i < last; i++) {
                double r = raw(&l[i], k != 1);
                if (d[i] == 1.0) {
                    moved++;
                    continue;
                }
                if (eps < 0) eps = d[i] / r;
                CHECK_NEAR(d[i] / r, eps, 1e-9 * eps);
            }
            for (int i = 0; i < last; i++)
                for (int j = 0; j < last; j++)
                    if (raw(&l[i], k != 1) > raw(&l[j], k != 1)) CHECK(d[i] >= d[j]);
            for (int i = 0; i < last && eps > 0; i++)
                if (d[i] == 1.0) CHECK(eps * raw(&l[i], k != 1) > 1.0 - 1e-12);
            if (k == 3) CHECK(d[n - 1] == fc);
        }
        /* uniform_plus: stem dense, classifier 0.2 below d = 0.2, the rest as the reference computes */
        if (st_layer_densities("uniform_plus", density, 1.0, l, n, d) == ST_OK && n > 1) {
            CHECK(d[0] == 1.0);
            double stem = (double)st_layer_numel(&l[0]), fc = (double)st_layer_numel(&l[n - 1]);
            double other = density < 0.2 ? (density * N - stem - 0.2 * fc) / N : density;
            CHECK(d[n - 1] == (density < 0.2 ? 0.2 : density));
            for (int i = 1; i < n - 1; i++) CHECK_NEAR(d[i], other, 1e-15);
        }
    }
    CHECK(checked > 1000 && moved > 50); /* the iteration was exercised */
}

/* cifar_resnet_20 (10 classes) with ERK at 0.05: the classifier gets the
 * highest density, the stem the highest of the 3x3 convs, the widest layers
 * (64x64x3x3) the lowest, and the kept count is 5 % of 270,896. (The 1x1
 * shortcut 32x16x1x1 scores (32+16+2)/512 > the stem's 25/432 and so gets
 * more than the stem: ERK favours small kernels as much as thin layers.) */
static void test_resnet20_erk(void) {
    st_model *m;
    CHECK_OK(st_model_create("cifar_resnet_20", 10, 3, 32, 32, &m));
    st_layer_shape *l;
    int *ids, n;
    CHECK_OK(st_model_prunable_layers(m, &l, &ids, &n));
    CHECK(n == 22 && l[0].is_first && l[n - 1].is_classifier);
    double d[22];
    CHECK_OK(st_layer_densities("ERK", 0.05, 1.0, l, n, d));
    CHECK_NEAR(kept(d, l, n), 0.05 * 270896, 1e-6);
    double lowest = 1;
    for (int i = 0; i < n; i++) lowest = d[i] < lowest ? d[i] : lowest;
    for (int i = 0; i < n - 1; i++) {
        CHECK(d[i] < d[n - 1]);
        if (i > 0 && l[i].dims[2] == 3) CHECK(d[i] < d[0]);
        if (l[i].dims[0] == 64 && l[i].dims[1] == 64) CHECK(d[i] == lowest);
    }
    CHECK(lowest < d[n - 1] && d[0] > 0.4 && lowest < 0.03);
    /* ERK's closed form: r(conv) = (o+i+3+3)/(o*i*9), same eps for every layer (none dense at 0.05) */
    CHECK_NEAR(d[0] / d[n - 1], ((16 + 3 + 6) / (16.0 * 27)) / (74 / 640.0), 1e-12);
    printf("cifar_resnet_20 ERK 0.05: stem %.4f, 64x64 convs %.4f, classifier %.4f\n", d[0], lowest, d[n - 1]);
    free(l);
    free(ids);
    st_model_free(m);
}

/* The paper's ImageNet masks: ERK_plus 0.2 with --fc_density 1.0 on
 * WideResNet50_2 (1000 classes). The classifier is found by structure (the
 * last linear layer, fc.weight), the stem (conv1.weight) is the first layer,
 * the overall density is still 0.2, and the fc is dense. */
static void test_wide_resnet_erk_plus(void) {
    st_model *m;
    CHECK_OK(st_model_create("WideResNet50_2", 1000, 3, 224, 224, &m));
    if (!m) return;
    st_layer_shape *l;
    int *ids, n;
    CHECK_OK(st_model_prunable_layers(m, &l, &ids, &n));
    CHECK(n == 54 && l[0].is_first && l[n - 1].is_classifier);
    CHECK(strcmp(m->params[ids[0]].name, "conv1.weight") == 0 && strcmp(m->params[ids[n - 1]].name, "fc.weight") == 0);
    double *d = calloc((size_t)n, sizeof(double)), total = 0;
    CHECK_OK(st_layer_densities("ERK_plus", 0.2, 1.0, l, n, d));
    for (int i = 0; i < n; i++) total += (double)st_layer_numel(&l[i]);
    CHECK_NEAR(kept(d, l, n), 0.2 * total, 1e-3);
    CHECK(d[n - 1] == 1.0);
    for (int i = 0; i < n - 1; i++) CHECK(d[i] > 0.0 && d[i] <= 1.0);
    printf("WideResNet50_2 ERK_plus 0.2 fc 1.0: stem %.4f, layer4.2.conv2 %.4f, fc %.4f\n", d[0], d[n - 3], d[n - 1]);
    free(d), free(l), free(ids);
    st_model_free(m);
}

int main(void) {
    test_wide_resnet_erk_plus();
    /* A [4,2,3,3] n=72, B [8,4,3,3] n=288, C [10,8] n=80; N = 440. */
    st_layer_shape small[3] = {conv(4, 2, 3), conv(8, 4, 3), linear(10, 8)};
    small[0].is_first = 1;
    double d[3];

    CHECK_OK(st_layer_densities("uniform", 0.3, 1.0, small, 3, d));
    CHECK(d[0] == 0.3 && d[1] == 0.3 && d[2] == 0.3);
    CHECK_OK(st_layer_densities("dense", 0.3, 1.0, small, 3, d));
    CHECK(d[0] == 1.0 && d[1] == 1.0 && d[2] == 1.0);

    /* ERK scores 12/72, 18/288, 18/80; at d=0.5 the linear layer (eps*r > 1)
     * moves to the dense set, then eps = (180 - 40) / (12 + 18) = 14/3. */
    CHECK_OK(st_layer_densities("ERK", 0.5, 1.0, small, 3, d));
    CHECK_NEAR(d[0], 14.0 / 3.0 / 6.0, 1e-12);
    CHECK_NEAR(d[1], 14.0 / 3.0 * 0.0625, 1e-12);
    CHECK(d[2] == 1.0);
    CHECK_NEAR(d[0] * 72 + d[1] * 288 + d[2] * 80, 220, 1e-9);

    /* ER scores use the first two dims: 6/8, 12/32, 18/80; eps = 88/180. */
    CHECK_OK(st_layer_densities("ER", 0.2, 1.0, small, 3, d));
    CHECK_NEAR(d[0], 0.75 * 88.0 / 180.0, 1e-12);
    CHECK_NEAR(d[1], 0.375 * 88.0 / 180.0, 1e-12);
    CHECK_NEAR(d[2], 0.225 * 88.0 / 180.0, 1e-12);

    /* ERK_plus: classifier at fc_density 1, ERK over the rest for the remaining budget. */
    CHECK_OK(st_layer_densities("ERK_plus", 0.5, 1.0, small, 3, d));
    CHECK_NEAR(d[0], 14.0 / 3.0 / 6.0, 1e-12);
    CHECK_NEAR(d[1], 14.0 / 3.0 * 0.0625, 1e-12);
    CHECK(d[2] == 1.0);

    /* uniform_plus, d >= 0.2: stem dense, the rest at d. */
    CHECK_OK(st_layer_densities("uniform_plus", 0.3, 1.0, small, 3, d));
    CHECK(d[0] == 1.0 && d[1] == 0.3 && d[2] == 0.3);
    /* d < 0.2: classifier 0.2, others (d*N - n_stem - 0.2*n_fc) / N. */
    st_layer_shape big[3] = {conv(4, 1, 3), conv(32, 32, 3), linear(10, 32)};
    big[0].is_first = 1;
    CHECK_OK(st_layer_densities("uniform_plus", 0.1, 1.0, big, 3, d));
    CHECK(d[0] == 1.0);
    CHECK_NEAR(d[1], (0.1 * 9572 - 36 - 0.2 * 320) / 9572, 1e-12);
    CHECK(d[2] == 0.2);
    /* unreachable: stem alone exceeds the budget */
    CHECK(st_layer_densities("uniform_plus", 0.1, 1.0, small, 3, d) == ST_ERR_ARGUMENT);

    CHECK(st_layer_densities("uniform", 0.0, 1.0, small, 3, d) == ST_ERR_ARGUMENT);
    CHECK(st_layer_densities("uniform", 1.5, 1.0, small, 3, d) == ST_ERR_ARGUMENT);
    CHECK(st_layer_densities("nonsense", 0.5, 1.0, small, 3, d) == ST_ERR_ARGUMENT);
    CHECK(strstr(st_last_error(), "nonsense") != NULL);
    test_hand_computed();
    test_properties();
    test_resnet20_erk();
    TEST_MAIN_END();
}
