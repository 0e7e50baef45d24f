/* Generic model graph: parameter registry with PyTorch names, builder
 * functions, and the forward / backward walk over the operation list. */
#include "models/model.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

/* ---------- growable arrays ---------- */

static int grow(void **array, int *cap, int n, size_t elem) {
    if (n < *cap) return 1;
    int new_cap = *cap ? *cap * 2 : 16;
    void *p = realloc(*array, (size_t)new_cap * elem);
    if (!p) return 0;
    memset((char *)p + (size_t)*cap * elem, 0, (size_t)(new_cap - *cap) * elem);
    *array = p;
    *cap = new_cap;
    return 1;
}

static int new_activation(st_model *m, int channels, int height, int width) {
    if (!grow((void **)&m->acts, &m->cap_acts, m->n_acts, sizeof(st_activation))) return -1;
    st_activation *a = &m->acts[m->n_acts];
    a->channels = channels;
    a->height = height;
    a->width = width;
    return m->n_acts++;
}

static int64_t act_size(const st_activation *a) { return (int64_t)a->channels * a->height * a->width; }

static st_op *new_op(st_model *m, st_op_kind kind, int in) {
    if (!grow((void **)&m->ops, &m->cap_ops, m->n_ops, sizeof(st_op))) return NULL;
    st_op *op = &m->ops[m->n_ops++];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->in = in;
    op->in2 = op->out = op->weight = op->bias = op->running_mean = op->running_var = -1;
    return op;
}

/* Adds a named tensor; `prunable_rows` > 0 makes it a prunable weight stored
 * in an st_sparse_weight of (rows, numel/rows). */
static int new_param(st_model *m, const char *name, int ndim, const int64_t *shape, int is_buffer, int prunable_rows) {
    if (!grow((void **)&m->params, &m->cap_params, m->n_params, sizeof(st_param))) return -1;
    st_param *p = &m->params[m->n_params];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= shape[i];
    }
    p->is_buffer = is_buffer;
    if (prunable_rows > 0) {
        p->sparse = st_calloc(1, sizeof(st_sparse_weight), "sparse weight");
        if (!p->sparse || st_sparse_weight_init(p->sparse, prunable_rows, p->numel / prunable_rows) != ST_OK)
            return -1;
        p->value = p->sparse->values;
    } else {
        p->value = st_calloc((size_t)p->numel, sizeof(float), name);
        if (!p->value) return -1;
    }
    if (!is_buffer) {
        p->grad = st_calloc((size_t)p->numel, sizeof(float), name);
        if (!p->grad) return -1;
    }
    return m->n_params++;
}

static void join_name(char *dst, const char *prefix, const char *suffix) {
    snprintf(dst, ST_NAME_MAX, "%s.%s", prefix, suffix);
}

/* ---------- builder ---------- */

int st_model_add_input(st_model *m, int channels, int height, int width) {
    return new_activation(m, channels, height, width);
}

int st_model_add_conv(st_model *m, int in, const char *name, int out_channels, int kernel, int stride, int padding,
                      int bias) {
    if (in < 0) return -1;
    st_activation a = m->acts[in];
    int oh = (a.height + 2 * padding - kernel) / stride + 1;
    int ow = (a.width + 2 * padding - kernel) / stride + 1;
    if (a.height + 2 * padding < kernel || a.width + 2 * padding < kernel) {
        st_fail(ST_ERR_ARGUMENT, "%s: input %dx%d is too small for a %dx%d convolution", name, a.height, a.width,
                kernel, kernel);
        return -1;
    }
    char pname[ST_NAME_MAX];
    int64_t wshape[4] = {out_channels, a.channels, kernel, kernel};
    join_name(pname, name, "weight");
    int w = new_param(m, pname, 4, wshape, 0, out_channels);
    if (w < 0) return -1;
    m->params[w].fan_in = (double)a.channels * kernel * kernel;
    m->params[w].fan_out = (double)out_channels * kernel * kernel;
    int b = -1;
    if (bias) {
        int64_t bshape[1] = {out_channels};
        join_name(pname, name, "bias");
        b = new_param(m, pname, 1, bshape, 0, 0);
        if (b < 0) return -1;
        m->params[b].fan_in = m->params[w].fan_in;
    }
    int out = new_activation(m, out_channels, oh, ow);
    st_op *op = new_op(m, ST_OP_CONV, in);
    if (out < 0 || !op) return -1;
    op->out = out;
    op->weight = w;
    op->bias = b;
    op->kernel = kernel;
    op->stride = stride;
    op->padding = padding;
    return out;
}

int st_model_add_linear(st_model *m, int in, const char *name, int out_features, int bias) {
    if (in < 0) return -1;
    int64_t features = act_size(&m->acts[in]);
    char pname[ST_NAME_MAX];
    int64_t wshape[2] = {out_features, features};
    join_name(pname, name, "weight");
    int w = new_param(m, pname, 2, wshape, 0, out_features);
    if (w < 0) return -1;
    m->params[w].fan_in = (double)features;
    m->params[w].fan_out = (double)out_features;
    int b = -1;
    if (bias) {
        int64_t bshape[1] = {out_features};
        join_name(pname, name, "bias");
        b = new_param(m, pname, 1, bshape, 0, 0);
        if (b < 0) return -1;
        m->params[b].fan_in = (double)features;
    }
    int out = new_activation(m, out_features, 1, 1);
    st_op *op = new_op(m, ST_OP_LINEAR, in);
    if (out < 0 || !op) return -1;
    op->out = out;
    op->weight = w;
    op->bias = b;
    return out;
}

int st_model_add_batchnorm(st_model *m, int in, const char *name) {
    if (in < 0) return -1;
    int c = m->acts[in].channels;
    int64_t shape[1] = {c};
    char pname[ST_NAME_MAX];
    join_name(pname, name, "weight");
    int g = new_param(m, pname, 1, shape, 0, 0);
    join_name(pname, name, "bias");
    int b = new_param(m, pname, 1, shape, 0, 0);
    join_name(pname, name, "running_mean");
    int rm = new_param(m, pname, 1, shape, 1, 0);
    join_name(pname, name, "running_var");
    int rv = new_param(m, pname, 1, shape, 1, 0);
    if (g < 0 || b < 0 || rm < 0 || rv < 0) return -1;
    for (int i = 0; i < c; i++) {
        m->params[g].value[i] = 1.0f;
        m->params[rv].value[i] = 1.0f;
    }
    st_activation a = m->acts[in];
    int out = new_activation(m, a.channels, a.height, a.width);
    st_op *op = new_op(m, ST_OP_BATCHNORM, in);
    if (out < 0 || !op) return -1;
    op->out = out;
    op->weight = g;
    op->bias = b;
    op->running_mean = rm;
    op->running_var = rv;
    snprintf(op->bn_name, sizeof op->bn_name, "%s", name);
    op->save_mean = st_calloc((size_t)c, sizeof(float), "bn mean");
    op->save_invstd = st_calloc((size_t)c, sizeof(float), "bn invstd");
    if (!op->save_mean || !op->save_invstd) return -1;
    return out;
}

static int add_simple(st_model *m, st_op_kind kind, int in, int c, int h, int w) {
    if (in < 0) return -1;
    int out = new_activation(m, c, h, w);
    st_op *op = new_op(m, kind, in);
    if (out < 0 || !op) return -1;
    op->out = out;
    return out;
}

int st_model_add_relu(st_model *m, int in) {
    if (in < 0) return -1;
    st_activation a = m->acts[in];
    return add_simple(m, ST_OP_RELU, in, a.channels, a.height, a.width);
}

static int add_pool(st_model *m, st_op_kind kind, int in, int kernel, int stride) {
    if (in < 0) return -1;
    st_activation a = m->acts[in];
    if (a.height < kernel || a.width < kernel) {
        st_fail(ST_ERR_ARGUMENT, "input %dx%d is too small for %dx%d pooling (use a larger input for this model)",
                a.height, a.width, kernel, kernel);
        return -1;
    }
    int out = add_simple(m, kind, in, a.channels, (a.height - kernel) / stride + 1, (a.width - kernel) / stride + 1);
    if (out < 0) return -1;
    m->ops[m->n_ops - 1].kernel = kernel;
    m->ops[m->n_ops - 1].stride = stride;
    return out;
}

int st_model_add_maxpool(st_model *m, int in, int kernel, int stride) { return add_pool(m, ST_OP_MAXPOOL, in, kernel, stride); }
int st_model_add_avgpool(st_model *m, int in, int kernel, int stride) { return add_pool(m, ST_OP_AVGPOOL, in, kernel, stride); }

int st_model_add_global_avgpool(st_model *m, int in) {
    if (in < 0) return -1;
    return add_simple(m, ST_OP_GLOBAL_AVGPOOL, in, m->acts[in].channels, 1, 1);
}

int st_model_add_add(st_model *m, int a, int b) {
    if (a < 0 || b < 0) return -1;
    st_activation x = m->acts[a], y = m->acts[b];
    ST_ASSERT(x.channels == y.channels && x.height == y.height && x.width == y.width);
    int out = add_simple(m, ST_OP_ADD, a, x.channels, x.height, x.width);
    if (out >= 0) m->ops[m->n_ops - 1].in2 = b;
    return out;
}

int st_model_add_flatten(st_model *m, int in) {
    if (in < 0) return -1;
    return add_simple(m, ST_OP_FLATTEN, in, (int)act_size(&m->acts[in]), 1, 1);
}

/* ---------- lifetime ---------- */

void st_model_free(st_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_params; i++) {
        st_param *p = &m->params[i];
        if (p->sparse) {
            st_sparse_weight_release(p->sparse);
            free(p->sparse);
        } else {
            free(p->value);
        }
        free(p->grad);
    }
    for (int i = 0; i < m->n_ops; i++) {
        free(m->ops[i].save_mean);
        free(m->ops[i].save_invstd);
        free(m->ops[i].argmax);
        st_conv2d_plan_free(m->ops[i].conv_plan);
    }
    for (int i = 0; i < m->n_acts; i++) {
        free(m->acts[i].value);
        free(m->acts[i].grad);
    }
    free(m->params);
    free(m->ops);
    free(m->acts);
    free(m->workspace);
    free(m->log_probs);
    free(m);
}

static void conv_shape(const st_model *m, const st_op *op, int batch, st_conv2d_shape *s) {
    const st_activation *a = &m->acts[op->in];
    st_conv2d_shape_init(s, batch, a->channels, a->height, a->width, m->acts[op->out].channels, op->kernel,
                         op->stride, op->padding);
}

static void pool_shape(const st_model *m, const st_op *op, int batch, st_pool_shape *s) {
    const st_activation *a = &m->acts[op->in];
    st_pool_shape_init(s, batch, a->channels, a->height, a->width, op->kernel, op->stride);
}

st_status st_model_reserve(st_model *m, int capacity) {
    if (capacity <= m->capacity) return ST_OK;
    if (capacity <= 0) return st_fail(ST_ERR_ARGUMENT, "batch size must be positive");
    for (int i = 0; i < m->n_acts; i++) {
        st_activation *a = &m->acts[i];
        free(a->value);
        free(a->grad);
        size_t n = (size_t)capacity * (size_t)act_size(a);
        a->value = st_malloc(n * sizeof(float), "activations");
        a->grad = st_malloc(n * sizeof(float), "activation gradients");
        if (!a->value || !a->grad) return ST_ERR_NOMEM;
    }
    int threads = omp_get_max_threads();
    size_t ws = 0;
    for (int i = 0; i < m->n_ops; i++) {
        st_op *op = &m->ops[i];
        if (op->kind == ST_OP_CONV) {
            st_conv2d_shape s;
            conv_shape(m, op, capacity, &s);
            size_t need = st_conv2d_workspace_floats(&s, threads);
            if (need > ws) ws = need;
        } else if (op->kind == ST_OP_MAXPOOL) {
            free(op->argmax);
            op->argmax = st_malloc((size_t)capacity * (size_t)act_size(&m->acts[op->out]) * sizeof(int32_t), "argmax");
            if (!op->argmax) return ST_ERR_NOMEM;
        }
    }
    free(m->workspace);
    m->workspace = st_malloc((ws ? ws : 1) * sizeof(float), "convolution workspace");
    m->workspace_floats = ws;
    free(m->log_probs);
    m->log_probs = st_malloc((size_t)capacity * (size_t)m->num_classes * sizeof(float), "log probabilities");
    if (!m->workspace || !m->log_probs) return ST_ERR_NOMEM;
    m->capacity = capacity;
    return ST_OK;
}

/* ---------- forward / backward ---------- */

/* The convolution plan of `op` for `batch` images, (re)built when the batch
 * size changes; grows the shared workspace if the new plan needs more. */
static st_status conv_plan(st_model *m, st_op *op, int batch, st_conv2d_plan **out) {
    if (!op->conv_plan || st_conv2d_plan_shape(op->conv_plan)->batch != batch) {
        st_conv2d_plan_free(op->conv_plan);
        op->conv_plan = NULL;
        st_conv2d_shape s;
        conv_shape(m, op, batch, &s);
        ST_TRY(st_conv2d_plan_create(&s, op->bias >= 0, ST_CONV2D_AUTO, &op->conv_plan));
        size_t need = st_conv2d_plan_workspace_floats(op->conv_plan, omp_get_max_threads());
        if (need > m->workspace_floats) {
            float *ws = st_malloc(need * sizeof(float), "convolution workspace");
            if (!ws) return ST_ERR_NOMEM;
            free(m->workspace);
            m->workspace = ws;
            m->workspace_floats = need;
        }
    }
    *out = op->conv_plan;
    return ST_OK;
}

st_status st_model_forward(st_model *m, const float *images, int batch, const float **logits) {
    ST_TRY(st_model_reserve(m, batch));
    memcpy(m->acts[0].value, images, (size_t)batch * (size_t)act_size(&m->acts[0]) * sizeof(float));
    for (int i = 0; i < m->n_ops; i++) {
        st_op *op = &m->ops[i];
        const st_activation *in = &m->acts[op->in];
        st_activation *out = &m->acts[op->out];
        int64_t n_out = (int64_t)batch * act_size(out);
        switch (op->kind) {
        case ST_OP_CONV: {
            st_conv2d_plan *plan;
            ST_TRY(conv_plan(m, op, batch, &plan));
            st_conv2d_plan_forward(plan, in->value, m->params[op->weight].sparse,
                                   op->bias >= 0 ? m->params[op->bias].value : NULL, out->value, m->workspace);
            break;
        }
        case ST_OP_LINEAR:
            st_linear_forward(batch, in->value, m->params[op->weight].sparse,
                              op->bias >= 0 ? m->params[op->bias].value : NULL, out->value);
            break;
        case ST_OP_BATCHNORM: {
            st_batchnorm_shape s = {batch, in->channels, in->height * in->width, 0.1f, 1e-5f};
            if (m->training) {
                st_batchnorm_forward_train(&s, in->value, m->params[op->weight].value, m->params[op->bias].value,
                                           out->value, op->save_mean, op->save_invstd,
                                           m->params[op->running_mean].value, m->params[op->running_var].value);
                op->num_batches_tracked++;
            } else {
                st_batchnorm_forward_eval(&s, in->value, m->params[op->weight].value, m->params[op->bias].value,
                                          m->params[op->running_mean].value, m->params[op->running_var].value,
                                          out->value);
            }
            break;
        }
        case ST_OP_RELU: st_relu_forward(n_out, in->value, out->value); break;
        case ST_OP_MAXPOOL: {
            st_pool_shape s;
            pool_shape(m, op, batch, &s);
            st_maxpool_forward(&s, in->value, out->value, op->argmax);
            break;
        }
        case ST_OP_AVGPOOL: {
            st_pool_shape s;
            pool_shape(m, op, batch, &s);
            st_avgpool_forward(&s, in->value, out->value);
            break;
        }
        case ST_OP_GLOBAL_AVGPOOL:
            st_global_avgpool_forward(batch, in->channels, in->height * in->width, in->value, out->value);
            break;
        case ST_OP_ADD: st_add_forward(n_out, in->value, m->acts[op->in2].value, out->value); break;
        case ST_OP_FLATTEN: memcpy(out->value, in->value, (size_t)n_out * sizeof(float)); break;
        }
    }
    *logits = m->acts[m->n_acts - 1].value;
    return ST_OK;
}

double st_model_loss(st_model *m, const int32_t *labels, int batch, int *correct) {
    return st_log_softmax_nll_forward(batch, m->num_classes, m->acts[m->n_acts - 1].value, labels, m->log_probs,
                                      correct);
}

void st_model_zero_grad(st_model *m) {
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].grad) memset(m->params[i].grad, 0, (size_t)m->params[i].numel * sizeof(float));
}

static void backward_op(st_model *m, st_op *op, int batch) {
    st_activation *in = &m->acts[op->in];
    st_activation *out = &m->acts[op->out];
    int64_t n_out = (int64_t)batch * act_size(out);
    float *dx = op->in == 0 ? NULL : in->grad; /* no gradient w.r.t. the images */
    switch (op->kind) {
    case ST_OP_CONV: {
        /* forward built the plan for this batch size */
        ST_ASSERT(op->conv_plan && st_conv2d_plan_shape(op->conv_plan)->batch == batch);
        st_conv2d_plan_backward(op->conv_plan, in->value, m->params[op->weight].sparse, out->grad, dx,
                                m->params[op->weight].grad, op->bias >= 0 ? m->params[op->bias].grad : NULL,
                                m->workspace);
        break;
    }
    case ST_OP_LINEAR:
        st_linear_backward(batch, in->value, m->params[op->weight].sparse, out->grad, dx, m->params[op->weight].grad,
                           op->bias >= 0 ? m->params[op->bias].grad : NULL);
        break;
    case ST_OP_BATCHNORM: {
        st_batchnorm_shape s = {batch, in->channels, in->height * in->width, 0.1f, 1e-5f};
        if (dx)
            st_batchnorm_backward(&s, in->value, m->params[op->weight].value, op->save_mean, op->save_invstd,
                                  out->grad, dx, m->params[op->weight].grad, m->params[op->bias].grad);
        break;
    }
    case ST_OP_RELU:
        if (dx) st_relu_backward(n_out, out->value, out->grad, dx);
        break;
    case ST_OP_MAXPOOL: {
        st_pool_shape s;
        pool_shape(m, op, batch, &s);
        if (dx) st_maxpool_backward(&s, op->argmax, out->grad, dx);
        break;
    }
    case ST_OP_AVGPOOL: {
        st_pool_shape s;
        pool_shape(m, op, batch, &s);
        if (dx) st_avgpool_backward(&s, out->grad, dx);
        break;
    }
    case ST_OP_GLOBAL_AVGPOOL:
        if (dx) st_global_avgpool_backward(batch, in->channels, in->height * in->width, out->grad, dx);
        break;
    case ST_OP_ADD: {
        float *db = m->acts[op->in2].grad;
        for (int64_t i = 0; i < n_out; i++) {
            if (dx) dx[i] += out->grad[i];
            db[i] += out->grad[i];
        }
        break;
    }
    case ST_OP_FLATTEN:
        if (dx)
            for (int64_t i = 0; i < n_out; i++) dx[i] += out->grad[i];
        break;
    }
}

st_status st_model_loss_backward(st_model *m, const int32_t *labels, int batch, double *loss, int *correct) {
    double l = st_model_loss(m, labels, batch, correct);
    *loss = l;
    for (int i = 1; i < m->n_acts; i++)
        memset(m->acts[i].grad, 0, (size_t)batch * (size_t)act_size(&m->acts[i]) * sizeof(float));
    st_log_softmax_nll_backward(batch, m->num_classes, m->log_probs, labels, m->acts[m->n_acts - 1].grad);
    st_model_zero_grad(m);
    for (int i = m->n_ops - 1; i >= 0; i--) backward_op(m, &m->ops[i], batch);
    return ST_OK;
}

int64_t st_model_parameter_count(const st_model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->n_params; i++)
        if (!m->params[i].is_buffer) n += m->params[i].numel;
    return n;
}

int st_model_find_param(const st_model *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0) return i;
    return -1;
}
