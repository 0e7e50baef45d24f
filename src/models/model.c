/* The model graph: operations over numbered activations, the parameters'
 * PyTorch names and shapes (their memory is the parameter store's), the
 * builder functions the model files call, and the model's lifetime. How a
 * model runs is src/exec/ (walker, schedule, executors). */
#include "models/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "exec/executor.h"

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
    m->n_params++; /* counted first, so that st_model_free releases a half-made value */
    if (st_param_store_new_value(p, prunable_rows) != ST_OK) return -1;
    return m->n_params - 1;
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
    int64_t features = st_activation_size(&m->acts[in]);
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
    return add_simple(m, ST_OP_FLATTEN, in, (int)st_activation_size(&m->acts[in]), 1, 1);
}

/* ---------- lifetime ---------- */

void st_model_free(st_model *m) {
    if (!m) return;
    m->store.params = m->params; /* also when the graph failed before st_param_store_bind */
    m->store.n_params = m->n_params;
    st_param_store_release(&m->store);
    for (int i = 0; i < m->n_ops; i++) {
        free(m->ops[i].save_mean);
        free(m->ops[i].save_invstd);
        free(m->ops[i].argmax);
    }
    if (m->exec) m->exec->release(m);
    for (int i = 0; i < m->n_act_buffers; i++) free(m->act_buffers[i]); /* acts[].value / .grad point into them */
    free(m->act_buffers);
    st_schedule_free(m->schedule);
    free(m->params);
    free(m->ops);
    free(m->acts);
    free(m->workspace);
    free(m->log_probs);
    free(m);
}

void st_model_conv_shape(const st_model *m, const st_op *op, int batch, st_conv2d_shape *s) {
    const st_activation *a = &m->acts[op->in];
    st_conv2d_shape_init(s, batch, a->channels, a->height, a->width, m->acts[op->out].channels, op->kernel,
                         op->stride, op->padding);
}

void st_model_pool_shape(const st_model *m, const st_op *op, int batch, st_pool_shape *s) {
    const st_activation *a = &m->acts[op->in];
    st_pool_shape_init(s, batch, a->channels, a->height, a->width, op->kernel, op->stride);
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

