/* FLOPs summary of a masked model (eval/flops_summary.h) against
 * hand-computed values for lenet300-100: forward MACs 784*300 + 300*100 +
 * 100*10, plus biases (300 + 100 + 10) and ReLUs (300 + 100); sparse = the
 * MACs times each layer's achieved density; training = 3 x forward. */
#include <math.h>

#include "eval/flops_summary.h"
#include "models/model.h"
#include "sparse/masks.h"
#include "testing.h"

int main(void) {
    st_model *m = NULL;
    CHECK_OK(st_model_create("lenet300-100", 10, 1, 28, 28, &m));
    if (!m) return 1;
    st_flops_summary f;
    CHECK_OK(st_flops_summary_of(m, &f));
    const double macs = 784.0 * 300 + 300.0 * 100 + 100.0 * 10, other = 410 + 400;
    CHECK_NEAR(f.forward_dense, macs + other, 0);
    CHECK_NEAR(f.forward_sparse, macs + other, 0); /* no masks yet: dense */
    CHECK_NEAR(f.train_dense, 3 * (macs + other), 0);
    CHECK(f.kept == f.prunable && f.prunable == 784 * 300 + 300 * 100 + 100 * 10);
    const double densities[3] = {0.5, 0.25, 1.0};
    CHECK_OK(st_model_sample_masks(m, densities, ST_MASK_EXACT, 3));
    CHECK_OK(st_flops_summary_of(m, &f));
    const double sparse = 0.5 * 784 * 300 + 0.25 * 300 * 100 + 100 * 10 + other;
    CHECK_NEAR(f.forward_sparse, sparse, 1e-6);
    CHECK_NEAR(f.train_sparse, 3 * sparse, 1e-6);
    CHECK_NEAR(f.forward_dense, macs + other, 0);
    CHECK(f.kept == 784 * 300 / 2 + 300 * 100 / 4 + 100 * 10);
    st_model_free(m);
    TEST_MAIN_END();
}
