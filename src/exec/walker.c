/* The walker (see executor.h): one forward or backward pass over the fused
 * schedule, with whichever executor the model has. The fused batch-norm /
 * add / ReLU steps run here, on the buffers and shapes the executor gives;
 * every other op is the executor's. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "exec/executor.h"
#include "kernels/bn_act.h"
#include "kernels/bn_eval_backward.h"

static float *act_value(st_model *m, int a) { return m->exec->act_value(m, a); }
static float *act_grad(st_model *m, int a) { return m->exec->act_grad(m, a); }
/* The executor's bf16 copy of activation a that a fused step writes with its values, or NULL. */
static st_bf16 *value_bf16(st_model *m, int a) { return m->exec->value_bf16 ? m->exec->value_bf16(m, a) : NULL; }

st_status st_model_set_executor(st_model *m, const st_executor *exec) {
    if (m->exec == exec) return ST_OK;
    ST_TRY(exec->prepare(m)); /* may refuse: the model keeps its executor */
    if (m->exec) m->exec->release(m);
    m->exec = exec;
    st_schedule_free(m->schedule); /* rebuilt for the new executor's layouts */
    m->schedule = NULL;
    return m->capacity > 0 ? exec->reserve(m) : ST_OK;
}

st_status st_model_use_sparse_execution(st_model *m) { return st_model_set_executor(m, &st_sparse_executor); }

const char *st_model_executor_name(const st_model *m) { return m->exec->name; }

void st_model_conv_implementation(const st_model *m, char *out, size_t size) { m->exec->describe(m, out, size); }

st_status st_model_reserve(st_model *m, int capacity) {
    if (capacity <= m->capacity) return ST_OK;
    if (capacity <= 0) return st_fail(ST_ERR_ARGUMENT, "batch size must be positive");
    /* activation buffers by liveness over the fused schedule (act_memory.c); the schedule's
     * layouts are the executor's, so a schedule made only for the plan is dropped again */
    const int temporary = !m->schedule;
    if (temporary) ST_TRY(st_schedule_build(m));
    st_status planned = st_act_memory_plan(m, m->schedule, capacity);
    if (temporary) {
        st_schedule_free(m->schedule);
        m->schedule = NULL;
    }
    ST_TRY(planned);
    int threads = omp_get_max_threads();
    size_t ws = 0;
    for (int i = 0; i < m->n_ops; i++) {
        st_op *op = &m->ops[i];
        if (op->kind == ST_OP_CONV) {
            st_conv2d_shape s;
            st_model_conv_shape(m, op, capacity, &s);
            size_t need = st_conv2d_workspace_floats(&s, threads);
            if (need > ws) ws = need;
        } else if (op->kind == ST_OP_MAXPOOL) {
            free(op->argmax);
            op->argmax = st_malloc((size_t)capacity * (size_t)st_activation_size(&m->acts[op->out]) * sizeof(int32_t), "argmax");
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
    return m->exec->reserve(m);
}

/* Grows the shared workspace to at least `floats`. */
st_status st_walk_ensure_workspace(st_model *m, size_t floats) {
    if (floats <= m->workspace_floats) return ST_OK;
    float *ws = st_malloc(floats * sizeof(float), "model workspace");
    if (!ws) return ST_ERR_NOMEM;
    free(m->workspace);
    m->workspace = ws;
    m->workspace_floats = floats;
    return ST_OK;
}

/* One step of the forward walk. */
static st_status forward_step(st_model *m, const st_model_step *st, int batch) {
    {
        st_activation *out = &m->acts[st->out];
        if (st->kind == ST_STEP_BN_ACT) {
            st_op *op = &m->ops[st->op];
            st_bn_act_shape s = m->exec->bn_shape(m, st->x, batch);
            const float *x = act_value(m, st->x), *res = st->residual >= 0 ? act_value(m, st->residual) : NULL;
            const float *gamma = m->params[op->weight].value, *beta = m->params[op->bias].value;
            st_bf16 *y16 = value_bf16(m, st->out);
            if (m->training && st->stats_ready) { /* the convolution that wrote x gathered its statistics */
                st_bn_act_forward_train_stats_bf16(&s, m->schedule->bn_stats + st->stats_at, x, gamma, beta, res,
                                                   st->relu >= 0, 0.1f, 1e-5f, act_value(m, st->out), y16,
                                                   op->save_mean, op->save_invstd, m->params[op->running_mean].value,
                                                   m->params[op->running_var].value);
                op->num_batches_tracked++;
            } else if (m->training) {
                st_bn_act_forward_train_bf16(&s, x, gamma, beta, res, st->relu >= 0, 0.1f, 1e-5f,
                                             act_value(m, st->out), y16, op->save_mean, op->save_invstd,
                                             m->params[op->running_mean].value, m->params[op->running_var].value,
                                             (double *)m->workspace);
                op->num_batches_tracked++;
            } else {
                st_bn_act_forward_eval_bf16(&s, x, gamma, beta, m->params[op->running_mean].value,
                                            m->params[op->running_var].value, 1e-5f, res, st->relu >= 0,
                                            act_value(m, st->out), y16, (double *)m->workspace);
            }
            return ST_OK;
        }
        if (st->kind == ST_STEP_ADD_ACT) {
            const float *b = st->residual >= 0 ? act_value(m, st->residual) : NULL;
            st_add_act_forward_bf16((int64_t)batch * st_activation_size(out), act_value(m, st->x), b, st->relu >= 0,
                                    act_value(m, st->out), value_bf16(m, st->out));
            return ST_OK;
        }
        if (st->stats_for >= 0 && m->training) {
            st_model_step *bn = &m->schedule->steps[st->stats_for];
            ST_TRY(m->exec->forward_op_stats(m, &m->ops[st->op], batch, m->schedule->bn_stats + bn->stats_at));
            bn->stats_ready = 1;
            return ST_OK;
        }
        return m->exec->forward_op(m, &m->ops[st->op], batch);
    }
}

st_status st_model_forward(st_model *m, const float *images, int batch, const float **logits) {
    ST_TRY(st_model_reserve(m, batch));
    if (!m->schedule) ST_TRY(st_schedule_build(m));
    /* batch-norm scratch for the current thread count (it may have grown since st_model_reserve) */
    st_bn_act_shape widest = {batch, m->schedule->max_bn_channels, 1, 1};
    ST_TRY(st_walk_ensure_workspace(m, 2 * st_bn_act_scratch_doubles(&widest, omp_get_max_threads())));
    memcpy(m->acts[0].value, images, (size_t)batch * (size_t)st_activation_size(&m->acts[0]) * sizeof(float));
    m->exec->images_in(m, batch);
    const st_model_schedule *sc = m->schedule;
    for (int k = 0; k < sc->n_steps; k++) sc->steps[k].stats_ready = 0;
    for (int k = 0; k < sc->n_steps; k++) {
        const double t0 = m->profile ? omp_get_wtime() : 0.0;
        m->schedule->current = k;
        ST_TRY(forward_step(m, &sc->steps[k], batch));
        if (m->profile) {
            sc->steps[k].forward_s += omp_get_wtime() - t0;
            sc->steps[k].calls++;
        }
    }
    m->exec->logits_out(m, batch);
    *logits = m->acts[m->n_acts - 1].value;
    return ST_OK;
}

double st_model_loss(st_model *m, const int32_t *labels, int batch, int *correct) {
    return st_cross_entropy_forward(batch, m->num_classes, m->acts[m->n_acts - 1].value, labels, m->label_smoothing,
                                    m->log_probs, correct);
}

void st_model_zero_grad(st_model *m) { st_param_store_zero_grads(&m->store); }

/* Gradient buffer of activation `a` for a writer that can overwrite:
 * *accumulate says whether an earlier writer got there first. NULL for the
 * images unless m->want_input_grad asks for d loss / d images. */
float *st_walk_grad_for_write(st_model *m, int a, int *accumulate) {
    if (a == 0 && !m->want_input_grad) return NULL;
    *accumulate = m->schedule->grad_written[a];
    m->schedule->grad_written[a] = 1;
    return act_grad(m, a);
}

/* Gradient buffer for a layer function that always adds: zeroed on first use. */
float *st_walk_grad_for_add(st_model *m, int a, int batch) {
    int accumulate;
    float *g = st_walk_grad_for_write(m, a, &accumulate);
    if (g && !accumulate) memset(g, 0, (size_t)batch * (size_t)st_activation_size(&m->acts[a]) * sizeof(float));
    return g;
}

void st_walk_profile_pass(st_model *m, st_walk_pass pass, double seconds) {
    if (!m->profile || !m->schedule) return;
    st_model_step *st = &m->schedule->steps[m->schedule->current];
    st->passes_timed = 1;
    if (pass == ST_PASS_BACKWARD_DATA) st->backward_data_s += seconds;
    else st->backward_weight_s += seconds;
}

/* Gradient of a step's output, read by its backward: zeros if nobody wrote it. */
static const float *grad_for_read(st_model *m, int a, int batch) {
    if (!m->schedule->grad_written[a]) {
        memset(act_grad(m, a), 0, (size_t)batch * (size_t)st_activation_size(&m->acts[a]) * sizeof(float));
        m->schedule->grad_written[a] = 1;
    }
    return act_grad(m, a);
}

static void backward_step(st_model *m, const st_model_step *st, int batch) {
    const float *dy = grad_for_read(m, st->out, batch);
    const st_activation *out = &m->acts[st->out];
    int64_t n_out = (int64_t)batch * st_activation_size(out);
    if (st->kind == ST_STEP_BN_ACT) {
        st_op *op = &m->ops[st->op];
        st_bn_act_shape s = m->exec->bn_shape(m, st->x, batch);
        int dx_acc = 0, dres_acc = 0;
        float *dx = st_walk_grad_for_write(m, st->x, &dx_acc);
        float *dres = st->residual >= 0 ? st_walk_grad_for_write(m, st->residual, &dres_acc) : NULL;
        if (!m->training) { /* evaluation mode (attacks): BN is the affine map of the running statistics */
            st_bn_act_backward_eval(&s, act_value(m, st->x), act_value(m, st->out), st->relu >= 0, dy,
                                    m->params[op->weight].value, m->params[op->running_mean].value,
                                    m->params[op->running_var].value, 1e-5f, dx, dx_acc, dres, dres_acc,
                                    m->params[op->weight].grad, m->params[op->bias].grad);
            return;
        }
        /* the executor may take the input's gradient in bf16 instead (x: a bf16 conv's output only this BN reads) */
        st_bf16 *dx16 = dx && m->exec->grad_bf16 ? m->exec->grad_bf16(m, st->x) : NULL;
        ST_ASSERT(!dx16 || !dx_acc);
        st_bn_act_backward_bf16(&s, act_value(m, st->x), act_value(m, st->out), st->relu >= 0, dy,
                                m->params[op->weight].value, op->save_mean, op->save_invstd, dx16 ? NULL : dx, dx16,
                                dx_acc, dres, dres_acc, m->params[op->weight].grad, m->params[op->bias].grad,
                                (double *)m->workspace);
        return;
    }
    if (st->kind == ST_STEP_ADD_ACT) {
        int da_acc = 0, db_acc = 0;
        float *da = st_walk_grad_for_write(m, st->x, &da_acc);
        const float *y = act_value(m, st->out);
        if (st->residual == st->x) { /* y = x + x: two contributions to one buffer */
            st_add_act_backward(n_out, y, st->relu >= 0, dy, da, da_acc, NULL, 0);
            if (da) st_add_act_backward(n_out, y, st->relu >= 0, dy, da, 1, NULL, 0);
            return;
        }
        float *db = st->residual >= 0 ? st_walk_grad_for_write(m, st->residual, &db_acc) : NULL;
        st_add_act_backward(n_out, y, st->relu >= 0, dy, da, da_acc, db, db_acc);
        return;
    }
    m->exec->backward_op(m, &m->ops[st->op], dy, batch);
}

st_status st_model_loss_backward(st_model *m, const int32_t *labels, int batch, double *loss, int *correct) {
    st_model_zero_grad(m);
    return st_model_loss_backward_accumulate(m, labels, batch, loss, correct);
}

st_status st_model_loss_backward_accumulate(st_model *m, const int32_t *labels, int batch, double *loss,
                                            int *correct) {
    ST_ASSERT(m->schedule); /* built by st_model_forward */
    st_bn_act_shape widest = {batch, m->schedule->max_bn_channels, 1, 1};
    ST_TRY(st_walk_ensure_workspace(m, 2 * st_bn_act_scratch_doubles(&widest, omp_get_max_threads())));
    double l = st_model_loss(m, labels, batch, correct);
    *loss = l;
    st_model_schedule *sc = m->schedule;
    memset(sc->grad_written, 0, (size_t)m->n_acts);
    int logits = m->n_acts - 1;
    st_cross_entropy_backward(batch, m->num_classes, m->log_probs, labels, m->label_smoothing, m->acts[logits].grad);
    m->exec->logits_grad_in(m, batch);
    sc->grad_written[logits] = 1;
    for (int k = sc->n_steps - 1; k >= 0; k--) {
        const double t0 = m->profile ? omp_get_wtime() : 0.0;
        sc->current = k;
        backward_step(m, &sc->steps[k], batch);
        if (m->profile) sc->steps[k].backward_s += omp_get_wtime() - t0;
    }
    if (sc->grad_written[0]) m->exec->images_grad_out(m, batch); /* the images' gradient, when one was asked for */
    return ST_OK;
}

/* ---------- anomaly support ---------- */

int st_model_first_nonfinite_step(const st_model *m, int batch, int64_t *element) {
    const st_model_schedule *sc = m->schedule;
    if (!sc) return -1;
    for (int k = 0; k < sc->n_steps; k++) {
        const int a = sc->steps[k].out;
        const float *v = act_value((st_model *)m, a);
        const int64_t n = (int64_t)batch * st_activation_size(&m->acts[a]);
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(v[i])) {
                if (element) *element = i;
                return k;
            }
    }
    return -1;
}

