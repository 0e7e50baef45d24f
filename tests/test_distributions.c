/* Layer-wise density distributions against hand-computed values (SPEC 4). */
#include <string.h>

#include "sparse/distributions.h"
#include "testing.h"

static st_layer_shape conv(int64_t o, int64_t i, int64_t k) {
    st_layer_shape s = {4, {o, i, k, k}, 0, 0};
    return s;
}
static st_layer_shape linear(int64_t o, int64_t i) {
    st_layer_shape s = {2, {o, i, 0, 0}, 0, 1};
    return s;
}

int main(void) {
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
    TEST_MAIN_END();
}
