/* The dense executor (see executor.h): dense-form weights (masked entries
 * are exactly 0) through oneDNN's convolutions (or the im2col + GEMM
 * reference) on NCHW or channel-blocked activations. Its state is one
 * convolution plan per op, built for the batch size in use. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "core/status.h"
#include "exec/executor.h"
#include "kernels/bn_act.h"
#include "kernels/conv_onednn.h"

typedef struct dense_state {
    st_conv2d_plan **plans; /* per op */
} dense_state;

static dense_state *state(const st_model *m) { return (dense_state *)m->exec_state; }

static st_status dense_reserve(st_model *m) {
    if (m->exec_state) return ST_OK;
    dense_state *d = st_calloc(1, sizeof *d, "dense executor");
    if (!d) return ST_ERR_NOMEM;
    d->plans = st_calloc((size_t)m->n_ops + 1, sizeof *d->plans, "dense executor");
    if (!d->plans) {
        free(d);
        return ST_ERR_NOMEM;
    }
    m->exec_state = d;
    return ST_OK;
}

static st_status dense_prepare(st_model *m) {
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].sparse && m->params[i].sparse->packed)
            return st_fail(ST_ERR_ARGUMENT, "%s: packed weights cannot return to dense execution", m->name);
    return ST_OK;
}

static void dense_release(st_model *m) {
    dense_state *d = state(m);
    if (!d) return;
    for (int i = 0; i < m->n_ops; i++) st_conv2d_plan_free(d->plans[i]);
    free(d->plans);
    free(d);
    m->exec_state = NULL;
}

/* Blocked layouts need oneDNN; the reference backend and NCHW activations
 * (core/runtime.h, for comparisons) keep every activation NCHW. */
static int dense_allows_blocked_layouts(const st_model *m) {
    (void)m;
    const st_runtime *rt = st_runtime_get();
    return st_onednn_available() && rt->conv_backend != ST_CONV2D_REFERENCE && !rt->nchw_activations;
}

static float *dense_act_value(st_model *m, int a) { return m->acts[a].value; }
static float *dense_act_grad(st_model *m, int a) { return m->acts[a].grad; }

static st_bn_act_shape dense_bn_shape(const st_model *m, int a, int batch) {
    const st_activation *x = &m->acts[a];
    st_bn_act_shape s = {batch, x->channels, x->height * x->width, st_schedule_block(m, a)};
    return s;
}

/* The images and logits are plain already. */
static void plain_end(st_model *m, int batch) { (void)m, (void)batch; }

/* The convolution plan of `op` for `batch` images, (re)built when the batch
 * size changes; grows the shared workspace if the new plan needs more. The
 * first plan writing a blockable group fixes the group's layout. */
static st_status conv_plan(st_model *m, st_op *op, int batch, st_conv2d_plan **out) {
    st_model_schedule *sc = m->schedule;
    ST_TRY(dense_reserve(m));
    st_conv2d_plan **plan = &state(m)->plans[op - m->ops];
    if (!*plan || st_conv2d_plan_shape(*plan)->batch != batch) {
        st_conv2d_plan_free(*plan);
        *plan = NULL;
        st_conv2d_shape s;
        st_model_conv_shape(m, op, batch, &s);
        const int g = sc->group[op->out];
        const int y_block = sc->may_block[g] ? sc->block[g] : 1; /* 0: the backend's preference */
        ST_TRY(st_conv2d_plan_create_blocked(&s, op->bias >= 0, ST_CONV2D_AUTO, st_schedule_block(m, op->in),
                                             y_block, plan));
        if (!sc->block[g]) sc->block[g] = st_conv2d_plan_output_block(*plan);
    }
    /* checked every time: st_model_reserve may have replaced the workspace */
    ST_TRY(st_walk_ensure_workspace(m, st_conv2d_plan_workspace_floats(*plan, omp_get_max_threads())));
    *out = *plan;
    return ST_OK;
}

static st_status dense_forward_op(st_model *m, st_op *op, int batch) {
    const st_activation *in = &m->acts[op->in];
    st_activation *out = &m->acts[op->out];
    const int64_t n_out = (int64_t)batch * st_activation_size(out);
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
        st_model_pool_shape(m, op, batch, &s);
        st_maxpool_forward(&s, in->value, out->value, op->argmax);
        break;
    }
    case ST_OP_AVGPOOL: {
        st_pool_shape s;
        st_model_pool_shape(m, op, batch, &s);
        st_avgpool_forward(&s, in->value, out->value);
        break;
    }
    case ST_OP_GLOBAL_AVGPOOL: {
        st_bn_act_shape s = {batch, in->channels, in->height * in->width, st_schedule_block(m, op->in)};
        st_bn_act_global_avgpool_forward(&s, in->value, out->value);
        break;
    }
    case ST_OP_FLATTEN: memcpy(out->value, in->value, (size_t)n_out * sizeof(float)); break;
    case ST_OP_BATCHNORM:
    case ST_OP_RELU:
    case ST_OP_ADD: ST_ASSERT(!"scheduled as fused steps"); break;
    }
    return ST_OK;
}

/* A dense-form weight seen without its mask (its values are 0 at pruned
 * positions already): a backward through it yields the full dense gradient. */
static st_sparse_weight unmasked_view(const st_sparse_weight *w) {
    st_sparse_weight full = *w;
    full.mask = NULL;
    full.kept = st_sparse_weight_numel(w);
    return full;
}

static void dense_backward_op(st_model *m, st_op *op, const float *dy, int batch) {
    st_activation *in = &m->acts[op->in];
    const int64_t n_out = (int64_t)batch * st_activation_size(&m->acts[op->out]);
    switch (op->kind) {
    case ST_OP_CONV: {
        /* forward built the plan for this batch size */
        st_conv2d_plan *plan = state(m)->plans[op - m->ops];
        ST_ASSERT(plan && st_conv2d_plan_shape(plan)->batch == batch);
        int dx_acc = 0;
        float *dx = st_walk_grad_for_write(m, op->in, &dx_acc);
        st_conv2d_plan_backward(plan, in->value, m->params[op->weight].sparse, dy, dx, dx_acc,
                                m->params[op->weight].grad, op->bias >= 0 ? m->params[op->bias].grad : NULL,
                                m->workspace);
        float *dense_dw = m->dense_grad ? m->dense_grad[op->weight] : NULL;
        if (dense_dw) { /* the same product once more through an unmasked view: every position */
            const double t0 = omp_get_wtime();
            st_sparse_weight full = unmasked_view(m->params[op->weight].sparse);
            st_conv2d_plan_backward(plan, in->value, &full, dy, NULL, 0, dense_dw, NULL, m->workspace);
            m->dense_grad_seconds += omp_get_wtime() - t0;
        }
        break;
    }
    case ST_OP_LINEAR: {
        st_linear_backward(batch, in->value, m->params[op->weight].sparse, dy, st_walk_grad_for_add(m, op->in, batch),
                           m->params[op->weight].grad, op->bias >= 0 ? m->params[op->bias].grad : NULL);
        float *dense_dw = m->dense_grad ? m->dense_grad[op->weight] : NULL;
        if (dense_dw) {
            const double t0 = omp_get_wtime();
            st_sparse_weight full = unmasked_view(m->params[op->weight].sparse);
            st_linear_backward(batch, in->value, &full, dy, NULL, dense_dw, NULL);
            m->dense_grad_seconds += omp_get_wtime() - t0;
        }
        break;
    }
    case ST_OP_MAXPOOL: {
        st_pool_shape s;
        st_model_pool_shape(m, op, batch, &s);
        float *dx = st_walk_grad_for_add(m, op->in, batch);
        if (dx) st_maxpool_backward(&s, op->argmax, dy, dx);
        break;
    }
    case ST_OP_AVGPOOL: {
        st_pool_shape s;
        st_model_pool_shape(m, op, batch, &s);
        float *dx = st_walk_grad_for_add(m, op->in, batch);
        if (dx) st_avgpool_backward(&s, dy, dx);
        break;
    }
    case ST_OP_GLOBAL_AVGPOOL: {
        int acc = 0;
        float *dx = st_walk_grad_for_write(m, op->in, &acc);
        st_bn_act_shape s = {batch, in->channels, in->height * in->width, st_schedule_block(m, op->in)};
        if (dx) st_bn_act_global_avgpool_backward(&s, dy, dx, acc);
        break;
    }
    case ST_OP_FLATTEN: {
        int acc = 0;
        float *dx = st_walk_grad_for_write(m, op->in, &acc);
        if (dx) st_add_act_backward(n_out, NULL, 0, dy, dx, acc, NULL, 0);
        break;
    }
    case ST_OP_BATCHNORM:
    case ST_OP_RELU:
    case ST_OP_ADD: ST_ASSERT(!"scheduled as fused steps"); break;
    }
}

static void dense_describe(const st_model *m, char *out, size_t size) {
    snprintf(out, size, "none");
    const dense_state *d = state(m);
    if (!d) return;
    for (int i = 0; i < m->n_ops; i++)
        if (m->ops[i].kind == ST_OP_CONV && d->plans[i]) {
            snprintf(out, size, "%s", st_conv2d_plan_implementation(d->plans[i], 0));
            return;
        }
}

const st_executor st_dense_executor = {
    .name = "dense",
    .prepare = dense_prepare,
    .reserve = dense_reserve,
    .release = dense_release,
    .allows_blocked_layouts = dense_allows_blocked_layouts,
    .act_value = dense_act_value,
    .act_grad = dense_act_grad,
    .bn_shape = dense_bn_shape,
    .images_in = plain_end,
    .logits_out = plain_end,
    .logits_grad_in = plain_end,
    .images_grad_out = plain_end,
    .forward_op = dense_forward_op,
    .backward_op = dense_backward_op,
    .describe = dense_describe,
};
