/* st_model: a network as a list of operations over numbered activations,
 * with PyTorch state_dict names for every parameter and buffer.
 * Model builders (cifar_resnet.c, vgg.c, lenet.c) append operations with the
 * st_model_add_* functions; forward/backward walk the list. */
#ifndef ST_MODELS_MODEL_H
#define ST_MODELS_MODEL_H

#include <stdint.h>

#include "nn/layers.h"
#include "params/param_store.h"
#include "sparse/sparse_weight.h"
#include "sparsetrain.h"



typedef enum st_op_kind {
    ST_OP_CONV,
    ST_OP_LINEAR,
    ST_OP_BATCHNORM,
    ST_OP_RELU,
    ST_OP_MAXPOOL,
    ST_OP_AVGPOOL,
    ST_OP_GLOBAL_AVGPOOL,
    ST_OP_ADD,
    ST_OP_FLATTEN
} st_op_kind;

typedef struct st_op {
    st_op_kind kind;
    int in, in2, out;          /* activation ids (in2 for ADD, else -1) */
    int weight, bias;          /* param ids or -1 */
    int running_mean, running_var; /* param ids of BN buffers */
    int64_t num_batches_tracked;   /* BN: counts training batches, as PyTorch */
    char bn_name[ST_NAME_MAX];     /* BN: prefix for num_batches_tracked */
    int kernel, stride, padding;
    float *save_mean, *save_invstd; /* BN (channels) */
    int32_t *argmax;           /* MAXPOOL (capacity * out size) */
} st_op;

/* Activation buffers belong to the forward/backward walk: between convolutions
 * they may be held channel-blocked rather than NCHW, and the intermediate
 * results of fused steps (e.g. a BN output that only a ReLU reads) are never
 * written and have no buffer (exec/act_memory.c). The input and the logits
 * are always plain. */
typedef struct st_activation {
    int channels, height, width; /* one image; linear features: channels = features, h = w = 1 */
    float *value;                /* capacity * size */
    float *grad;                 /* capacity * size */
} st_activation;

/* The reference's ImageNet init configs (-c/--model-config, its resnet.py):
 * every conv weight Kaiming-normal (gain sqrt 2) with fan-out (classic, the
 * default, also torchvision's) or fan-in (fanin); BN weight 1, bias 0; the
 * classifier nn.Linear's default. */
typedef enum st_imagenet_init {
    ST_IMAGENET_INIT_NONE = 0,
    ST_IMAGENET_INIT_CLASSIC = 1,
    ST_IMAGENET_INIT_FANIN = 2
} st_imagenet_init;

typedef struct st_model_schedule st_model_schedule; /* fused execution order (exec/executor.h) */
struct st_executor;                                 /* dense or sparse (exec/executor.h) */

typedef struct st_model {
    char name[64];
    int num_classes, in_channels, in_height, in_width;
    st_op *ops;
    int n_ops, cap_ops;
    st_param *params;            /* names and shapes; every array behind them belongs to `store` */
    int n_params, cap_params;
    st_param_store store;        /* values, gradients, optimiser slots, masks (params/param_store.h) */
    st_activation *acts;
    int n_acts, cap_acts;
    int capacity;                /* batch size the activation buffers hold */
    int training;                /* 1: batch statistics; 0: running statistics */
    int imagenet_init;           /* the ImageNet family's init config (st_imagenet_init; 0: not that family) */
    double label_smoothing;      /* of the training and evaluation loss (--label-smoothing; 0: plain cross entropy) */
    int want_input_grad;         /* 1: backward also writes acts[0].grad, d loss / d images (attacks) */
    float *workspace;            /* conv scratch, sized for capacity */
    size_t workspace_floats;
    float *log_probs;            /* capacity * classes */
    st_model_schedule *schedule; /* built on the first forward pass */
    /* How it runs (exec/executor.h): the dense executor until
     * st_model_use_sparse_execution; the executor's own state (kernel plans,
     * layout copies of the images and logits). */
    const struct st_executor *exec;
    void *exec_state;
    /* Sparse executor only: 1 = each convolution / linear layer runs the direct
     * sparse kernels or a dense GEMM, by exec/policy.h's per-layer rule
     * (--execution mixed, and auto); 0 = the direct sparse kernels everywhere. */
    int per_layer_kernels;
    int profile; /* 1: accumulate the time of every step of the walk (st_model_step_profile) */
    int bf16;    /* 1: the sparse executor runs its conv / linear ops in bf16 (exec/bf16_exec.h, --bf16) */
    /* Dense weight gradients asked for one step (gradient growth of dynamic
     * sparse training, train/mask_update.h): per param, NULL or numel floats
     * into which the executor's backward *adds* the full dL/dW, kept and
     * pruned positions alike, in (rows, cols) order; the table itself NULL
     * when nothing is asked. Owned by whoever set it. dense_grad_failed is
     * set when a backward could not produce one (out of memory). */
    float **dense_grad;
    int dense_grad_failed;
    double dense_grad_seconds;   /* wall time the executor spent on them (for the update's cost) */
    /* Activation memory (exec/act_memory.c): every acts[i].value / .grad points into one of these, or is
     * NULL when the schedule never touches it (a fused step's intermediate result). */
    float **act_buffers;
    int n_act_buffers;
    int64_t act_bytes;
} st_model;

/* Per-step timing of the forward / backward walk (with m->profile set).
 * A step is one layer or one fused group (conv; bn+add+relu; ...). */
typedef struct st_step_profile {
    char kind[24];            /* "conv", "linear", "bn+relu", "bn+add+relu", "add+relu", "maxpool", ... */
    char name[ST_NAME_MAX];   /* parameter or BN name when the step has one */
    double forward_s, backward_s; /* accumulated since st_model_profile_reset */
    int passes_timed;         /* 1: the executor timed backward's two passes apart (the sparse one does) */
    double backward_data_s, backward_weight_s; /* with passes_timed: input- and weight-gradient pass, within backward_s */
    int calls;                /* forward passes timed */
    int64_t kept, numel;      /* conv / linear: weights kept / dense */
    double macs;              /* conv / linear: kept multiply-adds per image (forward) */
} st_step_profile;

/* The first step of the last forward pass (of `batch` images) whose output
 * holds a NaN or an infinity, in forward order, or -1 when every step's
 * output is finite; *element gets the position of the first bad value in
 * that output. For --detect-anomaly: it names the layer where a forward
 * overflow starts. */
int st_model_first_nonfinite_step(const st_model *m, int batch, int64_t *element);

/* Number of steps (0 before the first forward pass). */
int st_model_step_count(const st_model *m);
void st_model_step_profile(const st_model *m, int step, st_step_profile *out);
void st_model_profile_reset(st_model *m);


/* Bytes of activation values and gradients held for the reserved batch. */
int64_t st_model_act_memory_bytes(const st_model *m);

/* Elements of one image of activation `a`; shapes of an op for `batch` images. */
static inline int64_t st_activation_size(const st_activation *a) { return (int64_t)a->channels * a->height * a->width; }
void st_model_conv_shape(const st_model *m, const st_op *op, int batch, st_conv2d_shape *s);
void st_model_pool_shape(const st_model *m, const st_op *op, int batch, st_pool_shape *s);

/* Builds a model by name (SPEC section 2): cifar_resnet_N[_W], vgg11/13/16/19,
 * lenet5, lenet300-100, ResNet18/34/50/101/152, WideResNet50_2/101_2 (also
 * spelt as the reference's --arch: resnet18, ..., resnet152). Parameters are
 * allocated but not initialised. */
st_status st_model_create(const char *name, int num_classes, int in_channels, int in_height, int in_width,
                          st_model **out);
void st_model_free(st_model *m);
/* The one spelling of a model name: the reference's --arch spellings of the
 * ImageNet family (resnet50, wide_resnet50_2) become ResNet50,
 * WideResNet50_2; any other name is returned as it is. */
const char *st_model_canonical_name(const char *name);
/* Chooses the ImageNet family's init config by the reference's name
 * ("classic" or "fanin"); refuses other names and other model families. */
st_status st_model_set_init_config(st_model *m, const char *config);

/* Builder API used by the model files. Each returns the new activation id
 * (or -1 after recording an error on the model, see st_model_build_error). */
int st_model_add_input(st_model *m, int channels, int height, int width);
int st_model_add_conv(st_model *m, int in, const char *name, int out_channels, int kernel, int stride, int padding,
                      int bias);
int st_model_add_linear(st_model *m, int in, const char *name, int out_features, int bias);
int st_model_add_batchnorm(st_model *m, int in, const char *name);
int st_model_add_relu(st_model *m, int in);
int st_model_add_maxpool(st_model *m, int in, int kernel, int stride);
/* Max pooling with `padding` (at most kernel / 2) on each side; padded positions never win. */
int st_model_add_maxpool_padded(st_model *m, int in, int kernel, int stride, int padding);
int st_model_add_avgpool(st_model *m, int in, int kernel, int stride);
int st_model_add_global_avgpool(st_model *m, int in);
int st_model_add_add(st_model *m, int a, int b);
int st_model_add_flatten(st_model *m, int in);

/* Switches to sparse execution: packs every prunable weight (and its
 * gradient) and runs convolutions and linear layers with the direct sparse
 * kernels on CHWN activations. Call after masks and weights are final and
 * before creating an optimiser; it cannot be undone. */
st_status st_model_use_sparse_execution(st_model *m);
/* "dense" or "sparse"; the convolution implementation in use (e.g.
 * "jit:avx512_core", "sparse-direct:avx2", "none" before the first pass). */
const char *st_model_executor_name(const st_model *m);
void st_model_conv_implementation(const st_model *m, char *out, size_t size);

/* Prepares activation buffers for batches of up to `capacity` images. */
st_status st_model_reserve(st_model *m, int capacity);
/* Forward pass; returns the logits activation (batch, classes) in *logits. */
st_status st_model_forward(st_model *m, const float *images, int batch, const float **logits);
/* Loss + backward after st_model_forward in training mode: fills every
 * parameter gradient (overwriting) and returns the mean loss and #correct. */
st_status st_model_loss_backward(st_model *m, const int32_t *labels, int batch, double *loss, int *correct);
/* The same, adding into the parameter gradients (st_model_zero_grad clears
 * them), e.g. over the micro-batches of one step. */
st_status st_model_loss_backward_accumulate(st_model *m, const int32_t *labels, int batch, double *loss,
                                            int *correct);
/* Loss and top-1 correct count only (evaluation). */
double st_model_loss(st_model *m, const int32_t *labels, int batch, int *correct);
void st_model_zero_grad(st_model *m);

/* Counting helpers. */
int64_t st_model_parameter_count(const st_model *m);   /* trainable, excl. buffers */
int st_model_find_param(const st_model *m, const char *name);

#endif
