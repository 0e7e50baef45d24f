/* Model builders: each appends its network to an empty st_model whose input
 * activation already exists (id 0). Return ST_OK or an error naming the problem. */
#ifndef ST_MODELS_BUILDERS_H
#define ST_MODELS_BUILDERS_H

#include "models/model.h"

st_status st_build_cifar_resnet(st_model *m, int depth, int width);
st_status st_build_vgg(st_model *m, int depth);
st_status st_build_lenet5(st_model *m);
st_status st_build_lenet300_100(st_model *m);
/* blocks: per stage; bottleneck 0 = basic blocks; base_width 64 (128: wide). */
st_status st_build_imagenet_resnet(st_model *m, const int blocks[4], int bottleneck, int base_width);

#endif
