/* LeNet models of the reference code: lenet5 (Caffe variant) and the
 * lenet300-100 multilayer perceptron. */
#include "core/status.h"
#include "models/builders.h"

st_status st_build_lenet5(st_model *m) {
    int x = st_model_add_conv(m, 0, "conv1", 20, 5, 1, 0, 1);
    x = st_model_add_maxpool(m, st_model_add_relu(m, x), 2, 2);
    x = st_model_add_conv(m, x, "conv2", 50, 5, 1, 0, 1);
    x = st_model_add_maxpool(m, st_model_add_relu(m, x), 2, 2);
    x = st_model_add_flatten(m, x);
    x = st_model_add_relu(m, st_model_add_linear(m, x, "fc3", 500, 1));
    x = st_model_add_linear(m, x, "fc4", m->num_classes, 1);
    return x < 0 ? ST_ERR_ARGUMENT : ST_OK;
}

st_status st_build_lenet300_100(st_model *m) {
    int x = st_model_add_flatten(m, 0);
    x = st_model_add_relu(m, st_model_add_linear(m, x, "fc1", 300, 1));
    x = st_model_add_relu(m, st_model_add_linear(m, x, "fc2", 100, 1));
    x = st_model_add_linear(m, x, "fc3", m->num_classes, 1);
    return x < 0 ? ST_ERR_ARGUMENT : ST_OK;
}
