/* FLOPs counting (sparse/flops.h): closed forms against hand-computed values
 * and whole models whose multiply-accumulate counts are known. */
#include <string.h>

#include "models/model.h"
#include "sparse/flops.h"
#include "sparse/masks.h"
#include "testing.h"

static void model_flops(const char *name, int c, int size, double *prunable, double *other, double *layers, int *n) {
    st_model *m;
    CHECK_OK(st_model_create(name, 10, c, size, size, &m));
    st_layer_shape *shapes;
    int *ids;
    CHECK_OK(st_model_prunable_layers(m, &shapes, &ids, n));
    CHECK_OK(st_model_forward_flops(m, layers, other));
    *prunable = 0;
    for (int l = 0; l < *n; l++) *prunable += layers[l];
    free(shapes);
    free(ids);
    st_model_free(m);
}

int main(void) {
    /* conv: out_h * out_w * out * in * k * k; linear: in * out */
    CHECK(st_conv2d_macs(32, 32, 16, 3, 3, 3) == 442368.0);
    CHECK(st_conv2d_macs(16, 16, 32, 16, 1, 1) == 131072.0);
    CHECK(st_linear_macs(64, 10) == 640.0);
    CHECK(st_sparse_macs(1000.0, 0.25) == 250.0);
    CHECK(ST_TRAIN_STEP_FORWARDS == 3.0);

    double layers[64], prunable, other;
    int n;
    /* cifar_resnet_20 on 3x32x32: stem 0.442M, 6 convs 16x16x3x3 at 32x32 (2.359M
     * each), stage 2: 1.180M + 5 x 2.359M + shortcut 0.131M, stage 3 likewise,
     * fc 640: 40,813,184 multiply-accumulates (the usual "41M FLOPs"). */
    model_flops("cifar_resnet_20", 3, 32, &prunable, &other, layers, &n);
    CHECK(n == 22);
    CHECK(prunable == 40813184.0);
    CHECK(layers[0] == 442368.0 && layers[1] == 2359296.0 && layers[7] == 1179648.0 && layers[n - 1] == 640.0);
    /* elementwise: 19 BN (2 per element) + 19 ReLU + 9 adds + pool; all positive, << the convs */
    CHECK(other > 0 && other < 0.02 * prunable);

    /* lenet5 on 1x28x28: conv1 24*24*20*25 = 288,000, conv2 8*8*50*20*25 =
     * 1,600,000, fc3 800*500, fc4 500*10. Elementwise: conv1 bias + ReLU +
     * 2x2 max pool over 24x24x20 = 3 * 11,520; conv2 likewise over 8x8x50 =
     * 3 * 3,200; fc3 bias + ReLU 2 * 500; fc4 bias 10 -> 45,170. */
    model_flops("lenet5", 1, 28, &prunable, &other, layers, &n);
    CHECK(n == 4 && layers[0] == 288000.0 && layers[1] == 1600000.0 && layers[2] == 400000.0 && layers[3] == 5000.0);
    CHECK(other == 45170.0);

    /* lenet300-100: 784*300 + 300*100 + 100*10 = 266,200; biases 410, ReLUs 400 */
    model_flops("lenet300-100", 1, 28, &prunable, &other, layers, &n);
    CHECK(prunable == 266200.0 && other == 810.0);

    /* vgg11 (CIFAR form) on 3x32x32: the first conv 32*32*64*3*9 = 1,769,472 */
    model_flops("vgg11", 3, 32, &prunable, &other, layers, &n);
    CHECK(n == 9 && layers[0] == 1769472.0 && layers[n - 1] == 5120.0);
    printf("vgg11: %.0f conv/linear MACs, %.0f other\n", prunable, other);
    TEST_MAIN_END();
}
