/* bf16 execution of the sparse executor's conv / linear ops (bf16_exec.h). */
#include "exec/bf16_exec.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "exec/executor.h"
#include "kernels/bf16.h"
#include "kernels/isa.h"
#include "kernels/sparse_conv_bf16.h"

typedef struct op_state {
    st_spbf16_plan *plan;
    st_spconv_geom g;
    uint64_t version;   /* the weight's mask version the plan was built from */
    int built;
    st_bf16 *x;         /* the forward input, rounded (batch x input size) */
    size_t x_cap;
    st_bf16 *w;         /* the kept weights, rounded at the last forward */
    size_t w_cap;
} op_state;

struct st_bf16_exec {
    int n_ops;
    op_state *ops;
    st_bf16 *dy;        /* the output gradient of the op in backward, rounded */
    size_t dy_cap;
};

const char *st_model_enable_bf16(st_model *m) {
    m->bf16 = 0;
    if (strcmp(st_model_executor_name(m), "sparse") != 0)
        return "fp32: --bf16 runs the sparse executor's kernels and this run uses dense execution "
               "(--execution sparse to use them)";
    if (!st_isa_cpu_has_avx512_bf16())
        return "fp32: this CPU has no AVX512_BF16, which --bf16 needs; training in float32";
    if (!st_isa_has_avx512_bf16())
        return "fp32: --bf16 needs AVX-512 kernels and the instruction set is capped below them (--isa)";
    m->bf16 = 1;
    return "bf16 (activations and kept weights of the sparse convolutions in bf16, fp32 accumulation, fp32 master "
           "weights and optimiser state)";
}

void st_bf16_exec_free(st_bf16_exec *s) {
    if (!s) return;
    for (int i = 0; i < s->n_ops; i++) {
        st_spbf16_plan_free(s->ops[i].plan);
        free(s->ops[i].x), free(s->ops[i].w);
    }
    free(s->ops), free(s->dy), free(s);
}

/* buf holds at least n values */
static st_status reserve(st_bf16 **buf, size_t *cap, size_t n) {
    if (*cap >= n && *buf) return ST_OK;
    free(*buf);
    *buf = st_malloc_aligned((n ? n : 1) * sizeof(st_bf16), "bf16 execution buffers");
    *cap = *buf ? n : 0;
    return *buf ? ST_OK : ST_ERR_NOMEM;
}

static void op_geom(const st_model *m, const st_op *op, int batch, st_spconv_geom *g) {
    const st_activation *a = &m->acts[op->in];
    if (op->kind == ST_OP_CONV)
        st_spconv_geom_init(g, batch, a->channels, a->height, a->width, m->acts[op->out].channels, op->kernel,
                            op->stride, op->padding);
    else
        st_spconv_geom_init(g, batch, (int)st_activation_size(a), 1, 1, m->acts[op->out].channels, 1, 1, 0);
}

st_status st_bf16_exec_forward(st_bf16_exec **state, const st_model *m, const st_op *op, int batch, const float *x,
                               float *y, double *stats) {
    if (!*state) {
        st_bf16_exec *s = st_calloc(1, sizeof *s, "bf16 execution");
        if (!s) return ST_ERR_NOMEM;
        s->ops = st_calloc((size_t)m->n_ops + 1, sizeof *s->ops, "bf16 execution");
        if (!s->ops) {
            free(s);
            return ST_ERR_NOMEM;
        }
        s->n_ops = m->n_ops;
        *state = s;
    }
    st_bf16_exec *s = *state;
    op_state *o = &s->ops[op - m->ops];
    const st_param *wp = &m->params[op->weight];
    const st_sparse_weight *w = wp->sparse;
    if (!o->built || o->g.batch != batch || o->version != w->version) {
        st_spbf16_plan_free(o->plan);
        o->plan = NULL, o->built = 0;
        op_geom(m, op, batch, &o->g);
        ST_TRY(st_spbf16_plan_create(&o->g, w->row_ptr, w->col, &o->plan));
        o->version = w->version, o->built = 1;
    }
    const size_t in = (size_t)batch * (size_t)st_activation_size(&m->acts[op->in]);
    const size_t out = (size_t)batch * (size_t)st_activation_size(&m->acts[op->out]);
    const size_t nnz = (size_t)w->row_ptr[w->rows];
    ST_TRY(reserve(&o->x, &o->x_cap, in));
    ST_TRY(reserve(&o->w, &o->w_cap, nnz));
    ST_TRY(reserve(&s->dy, &s->dy_cap, out)); /* for backward, which cannot fail */
    st_bf16_from_floats(wp->value, nnz, o->w);
    st_bf16_from_floats(x, in, o->x);
    const float *bias = op->bias >= 0 ? m->params[op->bias].value : NULL;
    if (stats) st_spbf16_forward_stats(o->plan, ST_SPBF16_DP, o->x, o->w, bias, y, stats);
    else st_spbf16_forward(o->plan, ST_SPBF16_DP, o->x, o->w, bias, y);
    return ST_OK;
}

/* the state of an op whose forward ran */
static op_state *forwarded(st_bf16_exec *s, const st_model *m, const st_op *op, int batch) {
    ST_ASSERT(s && op - m->ops < s->n_ops);
    op_state *o = &s->ops[op - m->ops];
    ST_ASSERT(o->built && o->g.batch == batch);
    return o;
}

void st_bf16_exec_backward_weight(st_bf16_exec *s, const st_model *m, const st_op *op, int batch, const float *dy,
                                  float *dw, float *dbias) {
    op_state *o = forwarded(s, m, op, batch);
    st_bf16_from_floats(dy, (size_t)batch * (size_t)st_activation_size(&m->acts[op->out]), s->dy);
    st_spbf16_backward_weight(o->plan, ST_SPBF16_DP, o->x, s->dy, dw, dbias);
}

void st_bf16_exec_backward_data(st_bf16_exec *s, const st_model *m, const st_op *op, int batch, float *dx,
                                int accumulate) {
    op_state *o = forwarded(s, m, op, batch);
    st_spbf16_backward_data(o->plan, ST_SPBF16_DP, s->dy, o->w, dx, accumulate);
}
