/* The sparse executor (see executor.h): prunable weights packed (CSR, kept
 * values only, in the parameter store) and the direct sparse kernels
 * (kernels/sparse_conv.h) on batch-innermost (CHWN) activations; batch norm,
 * add and ReLU run channel-major through the same fused kernels as the dense
 * executor. With m->per_layer_kernels, a layer that exec/policy.h finds dense
 * enough runs a dense GEMM on the same CHWN activations instead
 * (kernels/dense_chwn.h), its weight scattered from the store to a dense
 * matrix each step (or used as it is when every position is kept). Its
 * state: one kernel plan per convolution / linear op, rebuilt when the batch
 * size or the weight's mask version changes, the dense layers' weight and
 * gradient matrices, and the CHWN copies of the images and logits (and their
 * gradients). */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "exec/bf16_exec.h"
#include "exec/executor.h"
#include "exec/policy.h"
#include "kernels/chwn_ops.h"
#include "kernels/dense_chwn.h"
#include "kernels/isa.h"
#include "kernels/sparse_conv.h"

typedef struct sparse_state {
    st_spconv_plan **plans; /* per op: direct sparse kernels, or */
    st_dchwn_plan **dense;  /* per op: dense GEMM (exec/policy.h's per-layer choice) */
    float **dense_w, **dense_dw; /* per dense op whose weight is not stored dense: its (rows, cols) matrices */
    uint64_t *versions;     /* per op: the weight's mask version its plan was built from */
    float *chwn_input, *chwn_input_grad, *chwn_logits, *chwn_logits_grad; /* capacity-sized */
    st_bf16_exec *bf16;     /* with m->bf16: the bf16 copies and plans (bf16_exec.h) */
} sparse_state;

static sparse_state *state(const st_model *m) { return (sparse_state *)m->exec_state; }

static void free_buffers(sparse_state *s) {
    free(s->chwn_input), free(s->chwn_input_grad), free(s->chwn_logits), free(s->chwn_logits_grad);
    s->chwn_input = s->chwn_input_grad = s->chwn_logits = s->chwn_logits_grad = NULL;
}

static st_status ensure_state(st_model *m) {
    if (m->exec_state) return ST_OK;
    sparse_state *s = st_calloc(1, sizeof *s, "sparse executor");
    if (!s) return ST_ERR_NOMEM;
    s->plans = st_calloc((size_t)m->n_ops + 1, sizeof *s->plans, "sparse executor");
    s->dense = st_calloc((size_t)m->n_ops + 1, sizeof *s->dense, "sparse executor");
    s->dense_w = st_calloc((size_t)m->n_ops + 1, sizeof *s->dense_w, "sparse executor");
    s->dense_dw = st_calloc((size_t)m->n_ops + 1, sizeof *s->dense_dw, "sparse executor");
    s->versions = st_calloc((size_t)m->n_ops + 1, sizeof *s->versions, "sparse executor");
    m->exec_state = s;
    return s->plans && s->dense && s->dense_w && s->dense_dw && s->versions ? ST_OK : ST_ERR_NOMEM;
}

/* Packs every prunable weight, with its gradient and optimiser state. */
static st_status sparse_prepare(st_model *m) {
    return st_param_store_pack(&m->store);
}

/* CHWN copies of the images and logits (and their gradients). */
static st_status sparse_reserve(st_model *m) {
    ST_TRY(ensure_state(m));
    sparse_state *s = state(m);
    const size_t in = (size_t)m->capacity * (size_t)st_activation_size(&m->acts[0]);
    const size_t out = (size_t)m->capacity * (size_t)m->num_classes;
    free_buffers(s);
    st_bf16_exec_free(s->bf16); /* its activation copies are sized for the capacity: made again on first use */
    s->bf16 = NULL;
    s->chwn_input = st_malloc_aligned(in * sizeof(float), "sparse execution buffers");
    s->chwn_input_grad = st_malloc_aligned(in * sizeof(float), "sparse execution buffers");
    s->chwn_logits = st_malloc_aligned(out * sizeof(float), "sparse execution buffers");
    s->chwn_logits_grad = st_malloc_aligned(out * sizeof(float), "sparse execution buffers");
    if (!s->chwn_input || !s->chwn_input_grad || !s->chwn_logits || !s->chwn_logits_grad) return ST_ERR_NOMEM;
    return ST_OK;
}

static void sparse_release(st_model *m) {
    sparse_state *s = state(m);
    if (!s) return;
    for (int i = 0; i < m->n_ops; i++) {
        if (s->plans) st_spconv_plan_free(s->plans[i]);
        if (s->dense) st_dchwn_plan_free(s->dense[i]);
        if (s->dense_w) free(s->dense_w[i]);
        if (s->dense_dw) free(s->dense_dw[i]);
    }
    free(s->plans);
    free(s->dense);
    free(s->dense_w);
    free(s->dense_dw);
    free(s->versions);
    st_bf16_exec_free(s->bf16);
    free_buffers(s);
    free(s);
    m->exec_state = NULL;
}

static int sparse_allows_blocked_layouts(const st_model *m) {
    (void)m;
    return 0; /* CHWN throughout */
}

/* The value buffer an op reads or writes for activation `a`: the images and
 * logits are used through their CHWN copies. */
static float *sparse_act_value(st_model *m, int a) {
    if (a == 0) return state(m)->chwn_input;
    if (a == m->n_acts - 1) return state(m)->chwn_logits;
    return m->acts[a].value;
}

static float *sparse_act_grad(st_model *m, int a) {
    if (a == 0) return state(m)->chwn_input_grad;
    if (a == m->n_acts - 1) return state(m)->chwn_logits_grad;
    return m->acts[a].grad;
}

/* CHWN is one "image" whose channel planes hold H*W*N values. */
static st_bn_act_shape sparse_bn_shape(const st_model *m, int a, int batch) {
    const st_activation *x = &m->acts[a];
    st_bn_act_shape s = {1, x->channels, x->height * x->width * batch, 1};
    return s;
}

static void sparse_images_in(st_model *m, int batch) {
    const st_activation *a = &m->acts[0];
    st_bf16_exec_forward_begins(state(m)->bf16);
    st_nchw_to_chwn(a->value, batch, a->channels, a->height * a->width, state(m)->chwn_input);
}

static void sparse_logits_out(st_model *m, int batch) {
    st_chwn_to_nchw(state(m)->chwn_logits, batch, m->num_classes, 1, m->acts[m->n_acts - 1].value, 0);
}

static void sparse_logits_grad_in(st_model *m, int batch) {
    st_nchw_to_chwn(m->acts[m->n_acts - 1].grad, batch, m->num_classes, 1, state(m)->chwn_logits_grad);
}

static void sparse_images_grad_out(st_model *m, int batch) {
    const st_activation *a = &m->acts[0];
    st_chwn_to_nchw(state(m)->chwn_input_grad, batch, a->channels, a->height * a->width, a->grad, 0);
}

static int plan_batch(const sparse_state *s, int k) {
    if (s->plans[k]) return st_spconv_plan_geom(s->plans[k])->batch;
    if (s->dense[k]) return st_dchwn_plan_geom(s->dense[k])->batch;
    return -1;
}

static void free_plan(sparse_state *s, int k) {
    st_spconv_plan_free(s->plans[k]);
    st_dchwn_plan_free(s->dense[k]);
    free(s->dense_w[k]);
    free(s->dense_dw[k]);
    s->plans[k] = NULL, s->dense[k] = NULL, s->dense_w[k] = NULL, s->dense_dw[k] = NULL;
}

/* The kernel plan of a conv or linear op for `batch` images and the weight's
 * current mask: s->plans[k] (direct sparse) or s->dense[k] (dense GEMM, with
 * its weight matrices when the store does not hold the weight dense). */
static st_status sparse_plan(st_model *m, st_op *op, int batch) {
    ST_TRY(ensure_state(m));
    sparse_state *s = state(m);
    const int k = (int)(op - m->ops);
    const st_sparse_weight *w = m->params[op->weight].sparse;
    if (plan_batch(s, k) == batch && s->versions[k] == w->version) return ST_OK;
    free_plan(s, k);
    const st_activation *a = &m->acts[op->in];
    st_spconv_geom g;
    if (op->kind == ST_OP_CONV)
        st_spconv_geom_init(&g, batch, a->channels, a->height, a->width, m->acts[op->out].channels, op->kernel,
                            op->stride, op->padding);
    else
        st_spconv_geom_init(&g, batch, (int)st_activation_size(a), 1, 1, m->acts[op->out].channels, 1, 1, 0);
    if (m->per_layer_kernels && st_layer_wants_dense(m, op, batch)) {
        ST_TRY(st_dchwn_plan_create(&g, &s->dense[k]));
        if (!st_sparse_weight_stored_is_dense(w)) {
            const size_t bytes = sizeof(float) * (size_t)st_sparse_weight_numel(w);
            s->dense_w[k] = st_malloc_aligned(bytes, "dense layer weights");
            s->dense_dw[k] = st_malloc_aligned(bytes, "dense layer weights");
            if (!s->dense_w[k] || !s->dense_dw[k]) return ST_ERR_NOMEM;
        }
    } else {
        ST_TRY(st_spconv_plan_create(&g, w->row_ptr, w->col, &s->plans[k]));
    }
    s->versions[k] = w->version;
    return ST_OK;
}

/* A dense op's weight as a (rows, cols) matrix: the stored values, or their scatter. */
static const float *dense_weight(st_model *m, const st_op *op) {
    sparse_state *s = state(m);
    const int k = (int)(op - m->ops);
    const st_param *w = &m->params[op->weight];
    if (!s->dense_w[k]) return w->value;
    st_sparse_weight_scatter(w->sparse, w->value, s->dense_w[k]);
    return s->dense_w[k];
}

/* The forward pass of a conv / linear op whose plan is built (stats: its BN's statistics, may be NULL). */
static st_status conv_forward(st_model *m, st_op *op, int batch, const float *x, float *y, double *stats) {
    sparse_state *s = state(m);
    const int k = (int)(op - m->ops);
    const float *bias = op->bias >= 0 ? m->params[op->bias].value : NULL;
    if (s->dense[k]) st_dchwn_forward(s->dense[k], x, dense_weight(m, op), bias, y, stats);
    else if (m->bf16) return st_bf16_exec_forward(&s->bf16, m, op, batch, x, y, stats);
    else if (stats) st_spconv_forward_stats(s->plans[k], x, m->params[op->weight].value, bias, y, stats);
    else st_spconv_forward(s->plans[k], x, m->params[op->weight].value, bias, y);
    return ST_OK;
}

static st_status sparse_forward_op(st_model *m, st_op *op, int batch) {
    const st_activation *in = &m->acts[op->in];
    st_activation *out = &m->acts[op->out];
    const float *x = sparse_act_value(m, op->in);
    float *y = sparse_act_value(m, op->out);
    switch (op->kind) {
    case ST_OP_CONV:
    case ST_OP_LINEAR:
        ST_TRY(sparse_plan(m, op, batch));
        ST_TRY(conv_forward(m, op, batch, x, y, NULL));
        break;
    case ST_OP_MAXPOOL:
    case ST_OP_AVGPOOL: {
        st_chwn_pool s;
        st_chwn_pool_init(&s, in->channels, in->height, in->width, batch, op->kernel, op->stride, op->padding);
        if (op->kind == ST_OP_MAXPOOL) st_chwn_maxpool_forward(&s, x, y, op->argmax);
        else st_chwn_avgpool_forward(&s, x, y);
        break;
    }
    case ST_OP_GLOBAL_AVGPOOL: st_chwn_global_avgpool_forward(in->channels, in->height * in->width, batch, x, y); break;
    case ST_OP_FLATTEN: /* CHWN flattens to (C*H*W, N) with PyTorch's feature order */
        memcpy(y, x, (size_t)batch * (size_t)st_activation_size(out) * sizeof(float));
        break;
    case ST_OP_BATCHNORM:
    case ST_OP_RELU:
    case ST_OP_ADD: ST_ASSERT(!"scheduled as fused steps"); break;
    }
    return ST_OK;
}


/* dL/dW at every position (kept or not) for one step: the weight-gradient
 * kernel over a temporary all-kept structure of the same geometry, so its
 * cost is the dense product's; built and freed here (update steps only). */
static st_status dense_weight_grad(const st_spconv_plan *plan, const st_sparse_weight *w, const float *x,
                                   const float *dy, float *dw) {
    const int64_t numel = st_sparse_weight_numel(w);
    if (numel > INT32_MAX) return st_fail(ST_ERR_ARGUMENT, "weight too large for a dense gradient");
    int64_t *row_ptr = malloc(sizeof *row_ptr * ((size_t)w->rows + 1));
    int32_t *col = malloc(sizeof *col * (size_t)numel);
    st_spconv_plan *full = NULL;
    st_status s = row_ptr && col ? ST_OK : st_fail(ST_ERR_NOMEM, "out of memory for a dense weight gradient");
    if (s == ST_OK) {
        for (int r = 0; r <= w->rows; r++) row_ptr[r] = (int64_t)r * w->cols;
        for (int64_t i = 0; i < numel; i++) col[i] = (int32_t)(i % w->cols);
        s = st_spconv_plan_create(st_spconv_plan_geom(plan), row_ptr, col, &full);
    }
    if (s == ST_OK) st_spconv_backward_weight(full, x, dy, dw, NULL);
    st_spconv_plan_free(full);
    free(row_ptr);
    free(col);
    return s;
}

static st_status sparse_forward_op_stats(st_model *m, st_op *op, int batch, double *stats) {
    ST_ASSERT(op->kind == ST_OP_CONV || op->kind == ST_OP_LINEAR);
    ST_TRY(sparse_plan(m, op, batch));
    return conv_forward(m, op, batch, sparse_act_value(m, op->in), sparse_act_value(m, op->out), stats);
}

/* The weight-gradient pass of a dense-GEMM op: into the store's gradient
 * (kept positions) and, on a gradient-growth update step, into the full
 * dense gradient asked for (dense_dw, may be NULL). */
static void dense_backward_weight(st_model *m, st_op *op, const float *x, const float *dy, float *dense_dw) {
    sparse_state *s = state(m);
    const int k = (int)(op - m->ops);
    st_param *w = &m->params[op->weight];
    float *dbias = op->bias >= 0 ? m->params[op->bias].grad : NULL;
    const int64_t numel = st_sparse_weight_numel(w->sparse);
    float *full = s->dense_dw[k];
    if (!full && !dense_dw) { /* the store holds this gradient dense: straight in */
        st_dchwn_backward_weight(s->dense[k], x, dy, w->grad, dbias);
        return;
    }
    float *tmp = full ? NULL : st_malloc_aligned(sizeof(float) * (size_t)numel, "dense weight gradient");
    if (!full && !tmp) {
        m->dense_grad_failed = 1;
        st_dchwn_backward_weight(s->dense[k], x, dy, w->grad, dbias);
        return;
    }
    float *g = full ? full : tmp;
    memset(g, 0, sizeof(float) * (size_t)numel);
    st_dchwn_backward_weight(s->dense[k], x, dy, g, dbias);
    st_sparse_weight_gather_add(w->sparse, g, w->grad);
    if (dense_dw)
        for (int64_t i = 0; i < numel; i++) dense_dw[i] += g[i];
    free(tmp);
}

/* Both backward passes of a conv or linear op. */
static void sparse_backward_conv(st_model *m, st_op *op, const float *dy, int batch) {
    sparse_state *s = state(m);
    const int k = (int)(op - m->ops);
    const float *x = sparse_act_value(m, op->in);
    /* forward built the plan for this batch size */
    ST_ASSERT(plan_batch(s, k) == batch);
    st_spconv_plan *plan = s->plans[k];
    st_param *w = &m->params[op->weight];
    float *dense_dw = m->dense_grad ? m->dense_grad[op->weight] : NULL; /* a gradient-growth update step */
    const double t0 = m->profile ? omp_get_wtime() : 0.0;
    float *dbias = op->bias >= 0 ? m->params[op->bias].grad : NULL;
    const st_bf16 *dy16 = plan && m->bf16 ? st_bf16_exec_output_grad(s->bf16, m, op, batch, dy) : NULL;
    if (dy16) st_bf16_exec_backward_weight(s->bf16, m, op, batch, dy16, w->grad, dbias);
    else if (plan) st_spconv_backward_weight(plan, x, dy, w->grad, dbias);
    else dense_backward_weight(m, op, x, dy, dense_dw);
    const double t1 = m->profile ? omp_get_wtime() : 0.0;
    int acc = 0;
    float *dx = st_walk_grad_for_write(m, op->in, &acc);
    if (dx && dy16) st_bf16_exec_backward_data(s->bf16, m, op, batch, dy16, dx, acc);
    else if (dx && plan) st_spconv_backward_data(plan, dy, w->value, dx, acc);
    else if (dx) st_dchwn_backward_data(s->dense[k], dy, s->dense_w[k] ? s->dense_w[k] : w->value, dx, acc);
    if (m->profile) {
        st_walk_profile_pass(m, ST_PASS_BACKWARD_WEIGHT, t1 - t0);
        if (dx) st_walk_profile_pass(m, ST_PASS_BACKWARD_DATA, omp_get_wtime() - t1);
    }
    if (dense_dw && plan) {
        const double d0 = omp_get_wtime();
        if (dense_weight_grad(plan, w->sparse, x, dy, dense_dw) != ST_OK) m->dense_grad_failed = 1;
        m->dense_grad_seconds += omp_get_wtime() - d0;
    }
}

static void sparse_backward_op(st_model *m, st_op *op, const float *dy, int batch) {
    const st_activation *in = &m->acts[op->in];
    switch (op->kind) {
    case ST_OP_CONV:
    case ST_OP_LINEAR: sparse_backward_conv(m, op, dy, batch); break;
    case ST_OP_MAXPOOL:
    case ST_OP_AVGPOOL: {
        int acc = 0;
        float *dx = st_walk_grad_for_write(m, op->in, &acc);
        if (!dx) break;
        st_chwn_pool s;
        st_chwn_pool_init(&s, in->channels, in->height, in->width, batch, op->kernel, op->stride, op->padding);
        if (op->kind == ST_OP_MAXPOOL) st_chwn_maxpool_backward(&s, op->argmax, dy, dx, acc);
        else st_chwn_avgpool_backward(&s, dy, dx, acc);
        break;
    }
    case ST_OP_GLOBAL_AVGPOOL: {
        int acc = 0;
        float *dx = st_walk_grad_for_write(m, op->in, &acc);
        if (dx) st_chwn_global_avgpool_backward(in->channels, in->height * in->width, batch, dy, dx, acc);
        break;
    }
    case ST_OP_FLATTEN: {
        int acc = 0;
        float *dx = st_walk_grad_for_write(m, op->in, &acc);
        if (dx) st_add_act_backward((int64_t)batch * st_activation_size(&m->acts[op->out]), NULL, 0, dy, dx, acc, NULL, 0);
        break;
    }
    case ST_OP_BATCHNORM:
    case ST_OP_RELU:
    case ST_OP_ADD: ST_ASSERT(!"scheduled as fused steps"); break;
    }
}

/* bf16 copies for the fused steps (executor.h; bf16_exec.h says when there is one) */
static st_bf16 *sparse_value_bf16(st_model *m, int a) {
    return m->bf16 && state(m) ? st_bf16_exec_value_copy(state(m)->bf16, a) : NULL;
}

static st_bf16 *sparse_grad_bf16(st_model *m, int a) {
    return m->bf16 && state(m) ? st_bf16_exec_grad_copy(state(m)->bf16, m, a, sparse_act_grad(m, a)) : NULL;
}

int st_sparse_executor_runs_gemm(const st_model *m, int k) {
    const sparse_state *s = m->exec == &st_sparse_executor ? state(m) : NULL;
    return s && k >= 0 && k < m->n_ops && s->dense[k] != NULL;
}

static void sparse_describe(const st_model *m, char *out, size_t size) {
    int dense = 0;
    for (int k = 0; k < m->n_ops; k++) dense += st_sparse_executor_runs_gemm(m, k);
    const char *bf16 = m->bf16 ? "+bf16" : "";
    if (dense > 0)
        snprintf(out, size, "sparse-direct:%s%s + dense GEMM on %d layers", st_isa_name(st_isa_current()), bf16, dense);
    else snprintf(out, size, "sparse-direct:%s%s", st_isa_name(st_isa_current()), bf16);
}

const st_executor st_sparse_executor = {
    .name = "sparse",
    .prepare = sparse_prepare,
    .reserve = sparse_reserve,
    .release = sparse_release,
    .allows_blocked_layouts = sparse_allows_blocked_layouts,
    .act_value = sparse_act_value,
    .act_grad = sparse_act_grad,
    .bn_shape = sparse_bn_shape,
    .images_in = sparse_images_in,
    .logits_out = sparse_logits_out,
    .logits_grad_in = sparse_logits_grad_in,
    .images_grad_out = sparse_images_grad_out,
    .forward_op = sparse_forward_op,
    .forward_op_stats = sparse_forward_op_stats,
    .backward_op = sparse_backward_op,
    .value_bf16 = sparse_value_bf16,
    .grad_bf16 = sparse_grad_bf16,
    .describe = sparse_describe,
};
