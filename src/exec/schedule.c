/* The fused schedule and the activation layout groups (see executor.h). */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "exec/executor.h"

void st_schedule_free(st_model_schedule *sc) {
    if (!sc) return;
    free(sc->steps);
    free(sc->grad_written);
    free(sc->group);
    free(sc->may_block);
    free(sc->block);
    free(sc->bn_stats);
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
        const st_model_step *st = &sc->steps[k];
        if (st->kind == ST_STEP_OP) continue;
        group_join(sc->group, st->x, st->out);
        group_join(sc->group, st->residual, st->out);
    }
    for (int a = 0; a < n_acts; a++) sc->group[a] = group_root(sc->group, a);
    const int allowed = m->exec->allows_blocked_layouts(m);
    for (int a = 0; a < n_acts; a++) sc->may_block[sc->group[a]] = (uint8_t)allowed;
    /* vetoes: the images, the logits, and any other writer or reader */
    sc->may_block[sc->group[0]] = 0;
    sc->may_block[sc->group[n_acts - 1]] = 0;
    for (int k = 0; k < sc->n_steps; k++) {
        const st_model_step *st = &sc->steps[k];
        if (st->kind != ST_STEP_OP) continue;
        const st_op *op = &m->ops[st->op];
        if (op->kind != ST_OP_CONV) sc->may_block[sc->group[st->out]] = 0;
        if (op->kind != ST_OP_CONV && op->kind != ST_OP_GLOBAL_AVGPOOL) {
            sc->may_block[sc->group[op->in]] = 0;
            if (op->in2 >= 0) sc->may_block[sc->group[op->in2]] = 0;
        }
    }
    return ST_OK;
}

/* Which convolutions hand the batch-norm statistics of their output to the
 * BN step that reads it (executors with forward_op_stats): the BN then needs
 * one pass over its input instead of two. (The backward sums of BN could be
 * handed over likewise from the input-gradient pass of the convolution that
 * reads the BN's output last; measured slower, see docs/PERFORMANCE.md.) */
static st_status plan_stats_handoff(st_model *m, st_model_schedule *sc) {
    int64_t doubles = 0;
    for (int k = 0; k < sc->n_steps; k++) sc->steps[k].stats_for = -1, sc->steps[k].stats_at = -1;
    for (int k = 0; k < sc->n_steps && m->exec->forward_op_stats; k++) {
        st_model_step *bn = &sc->steps[k];
        if (bn->kind != ST_STEP_BN_ACT) continue;
        for (int j = 0; j < k; j++) {
            st_model_step *w = &sc->steps[j];
            const st_op *op = &m->ops[w->op];
            if (w->kind != ST_STEP_OP || w->out != bn->x) continue;
            if (op->kind != ST_OP_CONV && op->kind != ST_OP_LINEAR) break;
            w->stats_for = k;
            bn->stats_at = doubles;
            doubles += 3 * (int64_t)m->acts[bn->x].channels;
            break;
        }
    }
    if (doubles == 0) return ST_OK;
    sc->bn_stats = st_malloc(sizeof(double) * (size_t)doubles, "model schedule");
    return sc->bn_stats ? ST_OK : ST_ERR_NOMEM;
}

/* Layout of activation `a`: 1 = NCHW, B = channel blocks of B. */
int st_schedule_block(const st_model *m, int a) {
    const int b = m->schedule->block[m->schedule->group[a]];
    return b > 0 ? b : 1;
}


/* The only op reading activation `a`, or -1 when none or several do. */
static int single_reader(const int *readers, const int *reader_op, int a) {
    return readers[a] == 1 ? reader_op[a] : -1;
}

st_status st_schedule_build(st_model *m) {
    const int n_ops = m->n_ops, n_acts = m->n_acts;
    st_model_schedule *sc = st_calloc(1, sizeof *sc, "model schedule");
    int *readers = st_calloc((size_t)n_acts, sizeof(int), "model schedule");
    int *reader_op = st_calloc((size_t)n_acts, sizeof(int), "model schedule");
    int *folded = st_calloc((size_t)n_ops, sizeof(int), "model schedule");    /* op runs inside another step */
    int *relu_of = st_calloc((size_t)n_ops, sizeof(int), "model schedule");   /* BN/ADD -> folded RELU + 1 */
    int *bn_of_add = st_calloc((size_t)n_ops, sizeof(int), "model schedule"); /* ADD -> folded BN + 1 */
    if (sc) {
        sc->steps = st_calloc((size_t)n_ops, sizeof(st_model_step), "model schedule");
        sc->grad_written = st_calloc((size_t)n_acts, 1, "model schedule");
    }
    if (!sc || !readers || !reader_op || !folded || !relu_of || !bn_of_add || !sc->steps || !sc->grad_written) {
        st_schedule_free(sc);
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
        st_model_step *st = &sc->steps[k++];
        st->op = i;
        st->add = st->relu = st->residual = -1;
        st->x = op->in;
        st->out = op->out;
        if (op->kind == ST_OP_BATCHNORM) {
            st->kind = ST_STEP_BN_ACT;
            if (m->acts[op->in].channels > sc->max_bn_channels) sc->max_bn_channels = m->acts[op->in].channels;
            st->relu = relu_of[i] - 1;
        } else if (op->kind == ST_OP_ADD && bn_of_add[i]) {
            const int bn = bn_of_add[i] - 1;
            if (m->acts[m->ops[bn].in].channels > sc->max_bn_channels) sc->max_bn_channels = m->acts[m->ops[bn].in].channels;
            st->kind = ST_STEP_BN_ACT;
            st->op = bn;
            st->add = i;
            st->relu = relu_of[i] - 1;
            st->x = m->ops[bn].in;
            st->residual = op->in == m->ops[bn].out ? op->in2 : op->in;
        } else if (op->kind == ST_OP_ADD) {
            st->kind = ST_STEP_ADD_ACT;
            st->add = i;
            st->relu = relu_of[i] - 1;
            st->residual = op->in2;
        } else if (op->kind == ST_OP_RELU) {
            st->kind = ST_STEP_ADD_ACT;
            st->relu = i;
        } else {
            st->kind = ST_STEP_OP;
        }
        if (st->relu >= 0) st->out = m->ops[st->relu].out;
        else if (st->add >= 0) st->out = m->ops[st->add].out;
    }
    sc->n_steps = k;
    free(readers), free(reader_op), free(folded), free(relu_of), free(bn_of_add);
    st_status s = plan_stats_handoff(m, sc);
    if (s == ST_OK) s = plan_layouts(m, sc);
    if (s != ST_OK) {
        st_schedule_free(sc);
        return s;
    }
    m->schedule = sc;
    return ST_OK;
}
