/* Generic model graph: parameter registry with PyTorch names, builder
 * functions, and the forward / backward walk over the operation list. */
#include "models/model.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "kernels/bn_act.h"
#include "kernels/bn_eval_backward.h"
#include "kernels/chwn_ops.h"
#include "kernels/conv_onednn.h"
#include "kernels/sparse_conv.h"

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

static void schedule_free(st_model_schedule *sc);

void st_model_free(st_model *m) {
    if (!m) return;
    m->store.params = m->params; /* also when the graph failed before st_param_store_bind */
    m->store.n_params = m->n_params;
    st_param_store_release(&m->store);
    for (int i = 0; i < m->n_ops; i++) {
        free(m->ops[i].save_mean);
        free(m->ops[i].save_invstd);
        free(m->ops[i].argmax);
        st_conv2d_plan_free(m->ops[i].conv_plan);
        st_spconv_plan_free(m->ops[i].sp_plan);
    }
    free(m->chwn_input);
    free(m->chwn_input_grad);
    free(m->chwn_logits);
    free(m->chwn_logits_grad);
    for (int i = 0; i < m->n_acts; i++) {
        free(m->acts[i].value);
        free(m->acts[i].grad);
    }
    schedule_free(m->schedule);
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

/* CHWN copies of the images and logits (and their gradients) for sparse execution. */
static st_status reserve_chwn_buffers(st_model *m) {
    const size_t in = (size_t)m->capacity * (size_t)act_size(&m->acts[0]);
    const size_t out = (size_t)m->capacity * (size_t)m->num_classes;
    free(m->chwn_input), free(m->chwn_input_grad), free(m->chwn_logits), free(m->chwn_logits_grad);
    m->chwn_input = st_malloc_aligned(in * sizeof(float), "sparse execution buffers");
    m->chwn_input_grad = st_malloc_aligned(in * sizeof(float), "sparse execution buffers");
    m->chwn_logits = st_malloc_aligned(out * sizeof(float), "sparse execution buffers");
    m->chwn_logits_grad = st_malloc_aligned(out * sizeof(float), "sparse execution buffers");
    if (!m->chwn_input || !m->chwn_input_grad || !m->chwn_logits || !m->chwn_logits_grad) return ST_ERR_NOMEM;
    return ST_OK;
}

st_status st_model_use_sparse_execution(st_model *m) {
    if (m->sparse_exec) return ST_OK;
    ST_TRY(st_param_store_pack(&m->store));
    for (int i = 0; i < m->n_ops; i++) { /* dense plans are no longer used */
        st_conv2d_plan_free(m->ops[i].conv_plan);
        m->ops[i].conv_plan = NULL;
    }
    schedule_free(m->schedule); /* rebuilt without blocked layouts */
    m->schedule = NULL;
    m->sparse_exec = 1;
    return m->capacity > 0 ? reserve_chwn_buffers(m) : ST_OK;
}

st_status st_model_reserve(st_model *m, int capacity) {
    if (capacity <= m->capacity) return ST_OK;
    if (capacity <= 0) return st_fail(ST_ERR_ARGUMENT, "batch size must be positive");
    for (int i = 0; i < m->n_acts; i++) {
        st_activation *a = &m->acts[i];
        free(a->value);
        free(a->grad);
        size_t n = (size_t)capacity * (size_t)act_size(a);
        a->value = st_malloc_aligned(n * sizeof(float), "activations");
        a->grad = st_malloc_aligned(n * sizeof(float), "activation gradients");
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
    return m->sparse_exec ? reserve_chwn_buffers(m) : ST_OK;
}

/* ---------- forward / backward ---------- */

/* ---------- fused schedule ----------
 * The walk runs "steps" rather than single ops so that batch norm, the
 * residual add and ReLU are done in one pass each way (kernels/bn_act.h):
 *   BN -> ReLU            one step at the BN's place
 *   BN -> add(., r) -> ReLU   one step at the add's place (r may be computed
 *                         after the BN, e.g. a shortcut convolution)
 *   add -> ReLU, lone BN, lone ReLU, lone add
 * An op is folded into a step only when its output has no other reader, so
 * the skipped intermediate activations are never read. Backward visits the
 * steps in reverse and tracks which activation gradients have been written
 * this step: the first writer overwrites, later ones add, so no gradient
 * buffer is cleared in advance. */

typedef enum step_kind { STEP_OP, STEP_BN_ACT, STEP_ADD_ACT } step_kind;

typedef struct model_step {
    double forward_s, backward_s; /* profiling (m->profile) */
    int calls;
    step_kind kind;
    int op;          /* STEP_OP: the op; STEP_BN_ACT: the BN op */
    int add, relu;   /* folded ADD / RELU ops, or -1 */
    int x, residual; /* input activation (BN's or add's first), other add input or -1 */
    int out;         /* activation the step writes */
} model_step;

/* Activation layouts. Convolutions on oneDNN run fastest on channel-blocked
 * activations (nChw16c: (N, C/16, H, W, 16)), and the fused steps and global
 * average pooling handle that layout too; only the other layers need NCHW.
 * Activations joined by fused steps (a step's input, residual and output)
 * form a group with one layout; a group is blocked when its activations are
 * written only by convolutions and fused steps and read only by
 * convolutions, fused steps and global average pooling. Its block is the one
 * the first convolution writing it prefers (decided when that plan is made),
 * so no reorder is needed between layers. ST_ACTIVATION_LAYOUT=nchw keeps
 * every activation NCHW (for comparisons). */
struct st_model_schedule {
    model_step *steps;
    int n_steps;
    uint8_t *grad_written; /* per activation, during backward */
    int *group;            /* per activation: its layout group */
    uint8_t *may_block;    /* per group: 1 if it may use a blocked layout */
    int *block;            /* per group: 0 = undecided, 1 = NCHW, B = blocks of B channels */
    int max_bn_channels;   /* widest batch norm: sizes its scratch in the workspace */
};

static void schedule_free(st_model_schedule *sc) {
    if (!sc) return;
    free(sc->steps);
    free(sc->grad_written);
    free(sc->group);
    free(sc->may_block);
    free(sc->block);
    free(sc);
}

static int group_root(int *parent, int a) {
    while (parent[a] != a) a = parent[a] = parent[parent[a]];
    return a;
}

static void group_join(int *parent, int a, int b) {
    if (a < 0 || b < 0) return;
    a = group_root(parent, a), b = group_root(parent, b);
    if (a != b) parent[a] = b;
}

/* Layout groups and whether each may be blocked (see the comment above). */
static st_status plan_layouts(st_model *m, st_model_schedule *sc) {
    const int n_acts = m->n_acts;
    sc->group = st_malloc(sizeof(int) * (size_t)n_acts, "model schedule");
    sc->may_block = st_calloc((size_t)n_acts, 1, "model schedule");
    sc->block = st_calloc((size_t)n_acts, sizeof(int), "model schedule");
    if (!sc->group || !sc->may_block || !sc->block) return ST_ERR_NOMEM;
    for (int a = 0; a < n_acts; a++) sc->group[a] = a;
    for (int k = 0; k < sc->n_steps; k++) {
        const model_step *st = &sc->steps[k];
        if (st->kind == STEP_OP) continue;
        group_join(sc->group, st->x, st->out);
        group_join(sc->group, st->residual, st->out);
    }
    for (int a = 0; a < n_acts; a++) sc->group[a] = group_root(sc->group, a);
    const char *env_backend = getenv("ST_CONV2D_BACKEND"), *env_layout = getenv("ST_ACTIVATION_LAYOUT");
    const int allowed = !m->sparse_exec && st_onednn_available() &&
                        !(env_backend && strcmp(env_backend, "reference") == 0) &&
                        !(env_layout && strcmp(env_layout, "nchw") == 0);
    for (int a = 0; a < n_acts; a++) sc->may_block[sc->group[a]] = (uint8_t)allowed;
    /* vetoes: the images, the logits, and any other writer or reader */
    sc->may_block[sc->group[0]] = 0;
    sc->may_block[sc->group[n_acts - 1]] = 0;
    for (int k = 0; k < sc->n_steps; k++) {
        const model_step *st = &sc->steps[k];
        if (st->kind != STEP_OP) continue;
        const st_op *op = &m->ops[st->op];
        if (op->kind != ST_OP_CONV) sc->may_block[sc->group[st->out]] = 0;
        if (op->kind != ST_OP_CONV && op->kind != ST_OP_GLOBAL_AVGPOOL) {
            sc->may_block[sc->group[op->in]] = 0;
            if (op->in2 >= 0) sc->may_block[sc->group[op->in2]] = 0;
        }
    }
    return ST_OK;
}

/* Grows the shared workspace to at least `floats`. */
static st_status ensure_workspace(st_model *m, size_t floats) {
    if (floats <= m->workspace_floats) return ST_OK;
    float *ws = st_malloc(floats * sizeof(float), "model workspace");
    if (!ws) return ST_ERR_NOMEM;
    free(m->workspace);
    m->workspace = ws;
    m->workspace_floats = floats;
    return ST_OK;
}

/* Layout of activation `a`: 1 = NCHW, B = channel blocks of B. */
static int act_block(const st_model *m, int a) {
    const int b = m->schedule->block[m->schedule->group[a]];
    return b > 0 ? b : 1;
}

/* The convolution plan of `op` for `batch` images, (re)built when the batch
 * size changes; grows the shared workspace if the new plan needs more. The
 * first plan writing a blockable group fixes the group's layout. */
static st_status conv_plan(st_model *m, st_op *op, int batch, st_conv2d_plan **out) {
    st_model_schedule *sc = m->schedule;
    if (!op->conv_plan || st_conv2d_plan_shape(op->conv_plan)->batch != batch) {
        st_conv2d_plan_free(op->conv_plan);
        op->conv_plan = NULL;
        st_conv2d_shape s;
        conv_shape(m, op, batch, &s);
        const int g = sc->group[op->out];
        const int y_block = sc->may_block[g] ? sc->block[g] : 1; /* 0: the backend's preference */
        ST_TRY(st_conv2d_plan_create_blocked(&s, op->bias >= 0, ST_CONV2D_AUTO, act_block(m, op->in), y_block,
                                             &op->conv_plan));
        if (!sc->block[g]) sc->block[g] = st_conv2d_plan_output_block(op->conv_plan);
    }
    /* checked every time: st_model_reserve may have replaced the workspace */
    ST_TRY(ensure_workspace(m, st_conv2d_plan_workspace_floats(op->conv_plan, omp_get_max_threads())));
    *out = op->conv_plan;
    return ST_OK;
}

/* The only op reading activation `a`, or -1 when none or several do. */
static int single_reader(const int *readers, const int *reader_op, int a) {
    return readers[a] == 1 ? reader_op[a] : -1;
}

static st_status build_schedule(st_model *m) {
    const int n_ops = m->n_ops, n_acts = m->n_acts;
    st_model_schedule *sc = st_calloc(1, sizeof *sc, "model schedule");
    int *readers = st_calloc((size_t)n_acts, sizeof(int), "model schedule");
    int *reader_op = st_calloc((size_t)n_acts, sizeof(int), "model schedule");
    int *folded = st_calloc((size_t)n_ops, sizeof(int), "model schedule");    /* op runs inside another step */
    int *relu_of = st_calloc((size_t)n_ops, sizeof(int), "model schedule");   /* BN/ADD -> folded RELU + 1 */
    int *bn_of_add = st_calloc((size_t)n_ops, sizeof(int), "model schedule"); /* ADD -> folded BN + 1 */
    if (sc) {
        sc->steps = st_calloc((size_t)n_ops, sizeof(model_step), "model schedule");
        sc->grad_written = st_calloc((size_t)n_acts, 1, "model schedule");
    }
    if (!sc || !readers || !reader_op || !folded || !relu_of || !bn_of_add || !sc->steps || !sc->grad_written) {
        schedule_free(sc);
        free(readers), free(reader_op), free(folded), free(relu_of), free(bn_of_add);
        return ST_ERR_NOMEM;
    }
    for (int i = 0; i < n_ops; i++) {
        const st_op *op = &m->ops[i];
        readers[op->in]++;
        reader_op[op->in] = i;
        if (op->in2 >= 0) {
            readers[op->in2]++;
            reader_op[op->in2] = i;
        }
    }
    /* the logits are read by the loss */
    readers[m->n_acts - 1]++;
    reader_op[m->n_acts - 1] = -1;
    for (int i = 0; i < n_ops; i++) {
        const st_op *op = &m->ops[i];
        if (op->kind != ST_OP_BATCHNORM && op->kind != ST_OP_ADD) continue;
        int next = single_reader(readers, reader_op, op->out);
        if (next < 0) continue;
        const st_op *n = &m->ops[next];
        if (n->kind == ST_OP_RELU) {
            relu_of[i] = next + 1;
            folded[next] = 1;
        } else if (op->kind == ST_OP_BATCHNORM && n->kind == ST_OP_ADD && !bn_of_add[next] && n->in != n->in2) {
            const int other = n->in == op->out ? n->in2 : n->in;
            if (other != op->in) { /* dx and dresidual must be different buffers */
                bn_of_add[next] = i + 1;
                folded[i] = 1;
            }
        }
    }
    int k = 0;
    for (int i = 0; i < n_ops; i++) {
        const st_op *op = &m->ops[i];
        if (folded[i]) continue;
        model_step *st = &sc->steps[k++];
        st->op = i;
        st->add = st->relu = st->residual = -1;
        st->x = op->in;
        st->out = op->out;
        if (op->kind == ST_OP_BATCHNORM) {
            st->kind = STEP_BN_ACT;
            if (m->acts[op->in].channels > sc->max_bn_channels) sc->max_bn_channels = m->acts[op->in].channels;
            st->relu = relu_of[i] - 1;
        } else if (op->kind == ST_OP_ADD && bn_of_add[i]) {
            const int bn = bn_of_add[i] - 1;
            if (m->acts[m->ops[bn].in].channels > sc->max_bn_channels) sc->max_bn_channels = m->acts[m->ops[bn].in].channels;
            st->kind = STEP_BN_ACT;
            st->op = bn;
            st->add = i;
            st->relu = relu_of[i] - 1;
            st->x = m->ops[bn].in;
            st->residual = op->in == m->ops[bn].out ? op->in2 : op->in;
        } else if (op->kind == ST_OP_ADD) {
            st->kind = STEP_ADD_ACT;
            st->add = i;
            st->relu = relu_of[i] - 1;
            st->residual = op->in2;
        } else if (op->kind == ST_OP_RELU) {
            st->kind = STEP_ADD_ACT;
            st->relu = i;
        } else {
            st->kind = STEP_OP;
        }
        if (st->relu >= 0) st->out = m->ops[st->relu].out;
        else if (st->add >= 0) st->out = m->ops[st->add].out;
    }
    sc->n_steps = k;
    free(readers), free(reader_op), free(folded), free(relu_of), free(bn_of_add);
    st_status s = plan_layouts(m, sc);
    if (s != ST_OK) {
        schedule_free(sc);
        return s;
    }
    m->schedule = sc;
    return ST_OK;
}

/* Shape of activation `a` for the bn_act kernels: CHWN under sparse
 * execution is one "image" whose channel planes hold H*W*N values. */
static st_bn_act_shape act_bn_shape(const st_model *m, int a, int batch) {
    const st_activation *x = &m->acts[a];
    if (m->sparse_exec) {
        st_bn_act_shape s = {1, x->channels, x->height * x->width * batch, 1};
        return s;
    }
    st_bn_act_shape s = {batch, x->channels, x->height * x->width, act_block(m, a)};
    return s;
}

static st_bn_act_shape bn_act_shape(const st_model *m, const model_step *st, int batch) {
    return act_bn_shape(m, st->x, batch);
}

/* ---------- sparse execution (CHWN) ---------- */

/* The value buffer an op reads or writes for activation `a`: under sparse
 * execution the images and logits are used through their CHWN copies. */
static float *act_value(st_model *m, int a) {
    if (m->sparse_exec && a == 0) return m->chwn_input;
    if (m->sparse_exec && a == m->n_acts - 1) return m->chwn_logits;
    return m->acts[a].value;
}

static float *act_grad(st_model *m, int a) {
    if (m->sparse_exec && a == 0) return m->chwn_input_grad;
    if (m->sparse_exec && a == m->n_acts - 1) return m->chwn_logits_grad;
    return m->acts[a].grad;
}

/* The sparse-kernel plan of a conv or linear op for `batch` images. */
static st_status sparse_plan(st_model *m, st_op *op, int batch, st_spconv_plan **out) {
    const st_sparse_weight *w = m->params[op->weight].sparse;
    if (!op->sp_plan || st_spconv_plan_geom(op->sp_plan)->batch != batch || op->sp_plan_version != w->version) {
        st_spconv_plan_free(op->sp_plan);
        op->sp_plan = NULL;
        const st_activation *a = &m->acts[op->in];
        st_spconv_geom g;
        if (op->kind == ST_OP_CONV)
            st_spconv_geom_init(&g, batch, a->channels, a->height, a->width, m->acts[op->out].channels, op->kernel,
                                op->stride, op->padding);
        else
            st_spconv_geom_init(&g, batch, (int)act_size(a), 1, 1, m->acts[op->out].channels, 1, 1, 0);
        ST_TRY(st_spconv_plan_create(&g, w->row_ptr, w->col, &op->sp_plan));
        op->sp_plan_version = w->version;
    }
    *out = op->sp_plan;
    return ST_OK;
}

static st_status sparse_forward_op(st_model *m, st_op *op, int batch) {
    const st_activation *in = &m->acts[op->in];
    st_activation *out = &m->acts[op->out];
    const float *x = act_value(m, op->in);
    float *y = act_value(m, op->out);
    switch (op->kind) {
    case ST_OP_CONV:
    case ST_OP_LINEAR: {
        st_spconv_plan *plan;
        ST_TRY(sparse_plan(m, op, batch, &plan));
        st_spconv_forward(plan, x, m->params[op->weight].value, op->bias >= 0 ? m->params[op->bias].value : NULL, y);
        break;
    }
    case ST_OP_MAXPOOL:
    case ST_OP_AVGPOOL: {
        st_chwn_pool s;
        st_chwn_pool_init(&s, in->channels, in->height, in->width, batch, op->kernel, op->stride);
        if (op->kind == ST_OP_MAXPOOL) st_chwn_maxpool_forward(&s, x, y, op->argmax);
        else st_chwn_avgpool_forward(&s, x, y);
        break;
    }
    case ST_OP_GLOBAL_AVGPOOL: st_chwn_global_avgpool_forward(in->channels, in->height * in->width, batch, x, y); break;
    case ST_OP_FLATTEN: /* CHWN flattens to (C*H*W, N) with PyTorch's feature order */
        memcpy(y, x, (size_t)batch * (size_t)act_size(out) * sizeof(float));
        break;
    case ST_OP_BATCHNORM:
    case ST_OP_RELU:
    case ST_OP_ADD: ST_ASSERT(!"scheduled as fused steps"); break;
    }
    return ST_OK;
}

/* One step of the forward walk. */
static st_status forward_step(st_model *m, const model_step *st, int batch) {
    {
        st_activation *out = &m->acts[st->out];
        if (st->kind == STEP_BN_ACT) {
            st_op *op = &m->ops[st->op];
            st_bn_act_shape s = bn_act_shape(m, st, batch);
            const float *x = act_value(m, st->x), *res = st->residual >= 0 ? act_value(m, st->residual) : NULL;
            const float *gamma = m->params[op->weight].value, *beta = m->params[op->bias].value;
            if (m->training) {
                st_bn_act_forward_train(&s, x, gamma, beta, res, st->relu >= 0, 0.1f, 1e-5f, act_value(m, st->out),
                                        op->save_mean, op->save_invstd, m->params[op->running_mean].value,
                                        m->params[op->running_var].value, (double *)m->workspace);
                op->num_batches_tracked++;
            } else {
                st_bn_act_forward_eval(&s, x, gamma, beta, m->params[op->running_mean].value,
                                       m->params[op->running_var].value, 1e-5f, res, st->relu >= 0,
                                       act_value(m, st->out), (double *)m->workspace);
            }
            return ST_OK;
        }
        if (st->kind == STEP_ADD_ACT) {
            const float *b = st->residual >= 0 ? act_value(m, st->residual) : NULL;
            st_add_act_forward((int64_t)batch * act_size(out), act_value(m, st->x), b, st->relu >= 0,
                               act_value(m, st->out));
            return ST_OK;
        }
        st_op *op = &m->ops[st->op];
        if (m->sparse_exec) {
            return sparse_forward_op(m, op, batch);
        }
        const st_activation *in = &m->acts[op->in];
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
        case ST_OP_GLOBAL_AVGPOOL: {
            st_bn_act_shape s = {batch, in->channels, in->height * in->width, act_block(m, op->in)};
            st_bn_act_global_avgpool_forward(&s, in->value, out->value);
            break;
        }
        case ST_OP_FLATTEN: memcpy(out->value, in->value, (size_t)n_out * sizeof(float)); break;
        case ST_OP_BATCHNORM:
        case ST_OP_RELU:
        case ST_OP_ADD: ST_ASSERT(!"scheduled as fused steps"); break;
        }
    }
    return ST_OK;
}

st_status st_model_forward(st_model *m, const float *images, int batch, const float **logits) {
    ST_TRY(st_model_reserve(m, batch));
    if (!m->schedule) ST_TRY(build_schedule(m));
    /* batch-norm scratch for the current thread count (it may have grown since st_model_reserve) */
    st_bn_act_shape widest = {batch, m->schedule->max_bn_channels, 1, 1};
    ST_TRY(ensure_workspace(m, 2 * st_bn_act_scratch_doubles(&widest, omp_get_max_threads())));
    memcpy(m->acts[0].value, images, (size_t)batch * (size_t)act_size(&m->acts[0]) * sizeof(float));
    if (m->sparse_exec)
        st_nchw_to_chwn(images, batch, m->acts[0].channels, m->acts[0].height * m->acts[0].width, m->chwn_input);
    const st_model_schedule *sc = m->schedule;
    for (int k = 0; k < sc->n_steps; k++) {
        const double t0 = m->profile ? omp_get_wtime() : 0.0;
        ST_TRY(forward_step(m, &sc->steps[k], batch));
        if (m->profile) {
            sc->steps[k].forward_s += omp_get_wtime() - t0;
            sc->steps[k].calls++;
        }
    }
    if (m->sparse_exec)
        st_chwn_to_nchw(m->chwn_logits, batch, m->num_classes, 1, m->acts[m->n_acts - 1].value, 0);
    *logits = m->acts[m->n_acts - 1].value;
    return ST_OK;
}

double st_model_loss(st_model *m, const int32_t *labels, int batch, int *correct) {
    return st_log_softmax_nll_forward(batch, m->num_classes, m->acts[m->n_acts - 1].value, labels, m->log_probs,
                                      correct);
}

void st_model_zero_grad(st_model *m) { st_param_store_zero_grads(&m->store); }

/* Gradient buffer of activation `a` for a writer that can overwrite:
 * *accumulate says whether an earlier writer got there first. NULL for the
 * images unless m->want_input_grad asks for d loss / d images. */
static float *grad_for_write(st_model *m, int a, int *accumulate) {
    if (a == 0 && !m->want_input_grad) return NULL;
    *accumulate = m->schedule->grad_written[a];
    m->schedule->grad_written[a] = 1;
    return act_grad(m, a);
}

/* Gradient buffer for a layer function that always adds: zeroed on first use. */
static float *grad_for_add(st_model *m, int a, int batch) {
    int accumulate;
    float *g = grad_for_write(m, a, &accumulate);
    if (g && !accumulate) memset(g, 0, (size_t)batch * (size_t)act_size(&m->acts[a]) * sizeof(float));
    return g;
}

/* Gradient of a step's output, read by its backward: zeros if nobody wrote it. */
static const float *grad_for_read(st_model *m, int a, int batch) {
    if (!m->schedule->grad_written[a]) {
        memset(act_grad(m, a), 0, (size_t)batch * (size_t)act_size(&m->acts[a]) * sizeof(float));
        m->schedule->grad_written[a] = 1;
    }
    return act_grad(m, a);
}

static void sparse_backward_op(st_model *m, st_op *op, const float *dy, int batch) {
    const st_activation *in = &m->acts[op->in];
    const float *x = act_value(m, op->in);
    switch (op->kind) {
    case ST_OP_CONV:
    case ST_OP_LINEAR: {
        /* forward built the plan for this batch size */
        ST_ASSERT(op->sp_plan && st_spconv_plan_geom(op->sp_plan)->batch == batch);
        st_param *w = &m->params[op->weight];
        st_spconv_backward_weight(op->sp_plan, x, dy, w->grad, op->bias >= 0 ? m->params[op->bias].grad : NULL);
        int acc = 0;
        float *dx = grad_for_write(m, op->in, &acc);
        if (dx) st_spconv_backward_data(op->sp_plan, dy, w->value, dx, acc);
        break;
    }
    case ST_OP_MAXPOOL:
    case ST_OP_AVGPOOL: {
        int acc = 0;
        float *dx = grad_for_write(m, op->in, &acc);
        if (!dx) break;
        st_chwn_pool s;
        st_chwn_pool_init(&s, in->channels, in->height, in->width, batch, op->kernel, op->stride);
        if (op->kind == ST_OP_MAXPOOL) st_chwn_maxpool_backward(&s, op->argmax, dy, dx, acc);
        else st_chwn_avgpool_backward(&s, dy, dx, acc);
        break;
    }
    case ST_OP_GLOBAL_AVGPOOL: {
        int acc = 0;
        float *dx = grad_for_write(m, op->in, &acc);
        if (dx) st_chwn_global_avgpool_backward(in->channels, in->height * in->width, batch, dy, dx, acc);
        break;
    }
    case ST_OP_FLATTEN: {
        int acc = 0;
        float *dx = grad_for_write(m, op->in, &acc);
        if (dx) st_add_act_backward((int64_t)batch * act_size(&m->acts[op->out]), NULL, 0, dy, dx, acc, NULL, 0);
        break;
    }
    case ST_OP_BATCHNORM:
    case ST_OP_RELU:
    case ST_OP_ADD: ST_ASSERT(!"scheduled as fused steps"); break;
    }
}

static void backward_step(st_model *m, const model_step *st, int batch) {
    const float *dy = grad_for_read(m, st->out, batch);
    const st_activation *out = &m->acts[st->out];
    int64_t n_out = (int64_t)batch * act_size(out);
    if (st->kind == STEP_BN_ACT) {
        st_op *op = &m->ops[st->op];
        st_bn_act_shape s = bn_act_shape(m, st, batch);
        int dx_acc = 0, dres_acc = 0;
        float *dx = grad_for_write(m, st->x, &dx_acc);
        float *dres = st->residual >= 0 ? grad_for_write(m, st->residual, &dres_acc) : NULL;
        if (!m->training) { /* evaluation mode (attacks): BN is the affine map of the running statistics */
            st_bn_act_backward_eval(&s, act_value(m, st->x), act_value(m, st->out), st->relu >= 0, dy,
                                    m->params[op->weight].value, m->params[op->running_mean].value,
                                    m->params[op->running_var].value, 1e-5f, dx, dx_acc, dres, dres_acc,
                                    m->params[op->weight].grad, m->params[op->bias].grad);
            return;
        }
        st_bn_act_backward(&s, act_value(m, st->x), act_value(m, st->out), st->relu >= 0, dy, m->params[op->weight].value,
                           op->save_mean, op->save_invstd, dx, dx_acc, dres, dres_acc, m->params[op->weight].grad,
                           m->params[op->bias].grad, (double *)m->workspace);
        return;
    }
    if (st->kind == STEP_ADD_ACT) {
        int da_acc = 0, db_acc = 0;
        float *da = grad_for_write(m, st->x, &da_acc);
        const float *y = act_value(m, st->out);
        if (st->residual == st->x) { /* y = x + x: two contributions to one buffer */
            st_add_act_backward(n_out, y, st->relu >= 0, dy, da, da_acc, NULL, 0);
            if (da) st_add_act_backward(n_out, y, st->relu >= 0, dy, da, 1, NULL, 0);
            return;
        }
        float *db = st->residual >= 0 ? grad_for_write(m, st->residual, &db_acc) : NULL;
        st_add_act_backward(n_out, y, st->relu >= 0, dy, da, da_acc, db, db_acc);
        return;
    }
    st_op *op = &m->ops[st->op];
    if (m->sparse_exec) {
        sparse_backward_op(m, op, dy, batch);
        return;
    }
    st_activation *in = &m->acts[op->in];
    switch (op->kind) {
    case ST_OP_CONV: {
        /* forward built the plan for this batch size */
        ST_ASSERT(op->conv_plan && st_conv2d_plan_shape(op->conv_plan)->batch == batch);
        int dx_acc = 0;
        float *dx = grad_for_write(m, op->in, &dx_acc);
        st_conv2d_plan_backward(op->conv_plan, in->value, m->params[op->weight].sparse, dy, dx, dx_acc,
                                m->params[op->weight].grad, op->bias >= 0 ? m->params[op->bias].grad : NULL,
                                m->workspace);
        break;
    }
    case ST_OP_LINEAR:
        st_linear_backward(batch, in->value, m->params[op->weight].sparse, dy, grad_for_add(m, op->in, batch),
                           m->params[op->weight].grad, op->bias >= 0 ? m->params[op->bias].grad : NULL);
        break;
    case ST_OP_MAXPOOL: {
        st_pool_shape s;
        pool_shape(m, op, batch, &s);
        float *dx = grad_for_add(m, op->in, batch);
        if (dx) st_maxpool_backward(&s, op->argmax, dy, dx);
        break;
    }
    case ST_OP_AVGPOOL: {
        st_pool_shape s;
        pool_shape(m, op, batch, &s);
        float *dx = grad_for_add(m, op->in, batch);
        if (dx) st_avgpool_backward(&s, dy, dx);
        break;
    }
    case ST_OP_GLOBAL_AVGPOOL: {
        int acc = 0;
        float *dx = grad_for_write(m, op->in, &acc);
        st_bn_act_shape s = {batch, in->channels, in->height * in->width, act_block(m, op->in)};
        if (dx) st_bn_act_global_avgpool_backward(&s, dy, dx, acc);
        break;
    }
    case ST_OP_FLATTEN: {
        int acc = 0;
        float *dx = grad_for_write(m, op->in, &acc);
        if (dx) st_add_act_backward(n_out, NULL, 0, dy, dx, acc, NULL, 0);
        break;
    }
    case ST_OP_BATCHNORM:
    case ST_OP_RELU:
    case ST_OP_ADD: ST_ASSERT(!"scheduled as fused steps"); break;
    }
}

st_status st_model_loss_backward(st_model *m, const int32_t *labels, int batch, double *loss, int *correct) {
    ST_ASSERT(m->schedule); /* built by st_model_forward */
    st_bn_act_shape widest = {batch, m->schedule->max_bn_channels, 1, 1};
    ST_TRY(ensure_workspace(m, 2 * st_bn_act_scratch_doubles(&widest, omp_get_max_threads())));
    double l = st_model_loss(m, labels, batch, correct);
    *loss = l;
    st_model_schedule *sc = m->schedule;
    memset(sc->grad_written, 0, (size_t)m->n_acts);
    int logits = m->n_acts - 1;
    st_log_softmax_nll_backward(batch, m->num_classes, m->log_probs, labels, m->acts[logits].grad);
    if (m->sparse_exec) st_nchw_to_chwn(m->acts[logits].grad, batch, m->num_classes, 1, m->chwn_logits_grad);
    sc->grad_written[logits] = 1;
    st_model_zero_grad(m);
    for (int k = sc->n_steps - 1; k >= 0; k--) {
        const double t0 = m->profile ? omp_get_wtime() : 0.0;
        backward_step(m, &sc->steps[k], batch);
        if (m->profile) sc->steps[k].backward_s += omp_get_wtime() - t0;
    }
    if (m->sparse_exec && sc->grad_written[0]) /* the images' gradient, when one was asked for */
        st_chwn_to_nchw(m->chwn_input_grad, batch, m->acts[0].channels, m->acts[0].height * m->acts[0].width,
                        m->acts[0].grad, 0);
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

/* ---------- profiling ---------- */

int st_model_step_count(const st_model *m) { return m->schedule ? m->schedule->n_steps : 0; }

void st_model_profile_reset(st_model *m) {
    for (int k = 0; k < st_model_step_count(m); k++) {
        m->schedule->steps[k].forward_s = m->schedule->steps[k].backward_s = 0.0;
        m->schedule->steps[k].calls = 0;
    }
}

static const char *op_kind_name(st_op_kind kind) {
    switch (kind) {
    case ST_OP_CONV: return "conv";
    case ST_OP_LINEAR: return "linear";
    case ST_OP_BATCHNORM: return "bn";
    case ST_OP_RELU: return "relu";
    case ST_OP_MAXPOOL: return "maxpool";
    case ST_OP_AVGPOOL: return "avgpool";
    case ST_OP_GLOBAL_AVGPOOL: return "global_avgpool";
    case ST_OP_ADD: return "add";
    case ST_OP_FLATTEN: return "flatten";
    }
    return "?";
}

void st_model_step_profile(const st_model *m, int k, st_step_profile *out) {
    memset(out, 0, sizeof *out);
    const model_step *st = &m->schedule->steps[k];
    const st_op *op = &m->ops[st->op];
    out->forward_s = st->forward_s;
    out->backward_s = st->backward_s;
    out->calls = st->calls;
    if (st->kind == STEP_OP) {
        snprintf(out->kind, sizeof out->kind, "%s", op_kind_name(op->kind));
        if (op->weight >= 0) {
            const st_param *w = &m->params[op->weight];
            const st_activation *y = &m->acts[op->out];
            snprintf(out->name, sizeof out->name, "%s", w->name);
            out->numel = w->numel;
            out->kept = w->sparse ? w->sparse->kept : w->numel;
            out->macs = (double)out->kept * y->height * y->width;
        }
        return;
    }
    snprintf(out->kind, sizeof out->kind, "%s%s%s", st->kind == STEP_BN_ACT ? "bn" : "",
             st->add >= 0 ? (st->kind == STEP_BN_ACT ? "+add" : "add") : "",
             st->relu >= 0 ? (st->kind == STEP_BN_ACT || st->add >= 0 ? "+relu" : "relu") : "");
    if (st->kind == STEP_BN_ACT) snprintf(out->name, sizeof out->name, "%s", op->bn_name);
}

/* ---------- anomaly support ---------- */

int st_model_first_nonfinite_step(const st_model *m, int batch, int64_t *element) {
    const st_model_schedule *sc = m->schedule;
    if (!sc) return -1;
    for (int k = 0; k < sc->n_steps; k++) {
        const int a = sc->steps[k].out;
        const float *v = act_value((st_model *)m, a);
        const int64_t n = (int64_t)batch * act_size(&m->acts[a]);
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(v[i])) {
                if (element) *element = i;
                return k;
            }
    }
    return -1;
}
