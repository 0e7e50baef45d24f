/* bf16 execution of the sparse executor's conv / linear ops (bf16_exec.h). */
#include "exec/bf16_exec.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "exec/executor.h"
#include "kernels/isa.h"
#include "kernels/sparse_conv_bf16.h"

typedef struct op_state {
    st_spbf16_plan *plan;
    st_spconv_geom g;
    uint64_t version;   /* the weight's mask version the plan was built from */
    int built;
    st_bf16 *w;         /* the kept weights, rounded at the last forward */
    size_t w_cap;
} op_state;

/* Passes are counted (st_bf16_exec_forward_begins): a copy or a flag
 * stamped with an earlier pass is stale, so nothing needs clearing. */
typedef struct act_state {
    st_bf16 *value;        /* its values rounded (capacity images), from the first bf16 op reading it */
    uint64_t value_pass;   /* the pass whose values `value` holds */
    uint64_t produced;     /* the last pass whose producer of it ran in bf16 */
    uint64_t grad_pass;    /* the pass whose backward wrote its gradient in bf16 (in its own buffer); 0: read since */
    uint8_t wanted;        /* a bf16 op has read it: fused steps writing it write the copy */
    uint8_t one_reader;    /* exactly one op reads it */
} act_state;

struct st_bf16_exec {
    int n_ops, n_acts, capacity;
    uint64_t pass;      /* forward passes begun, from 1 */
    op_state *ops;
    act_state *acts;
    st_bf16 *dy;        /* an output gradient rounded by its conv's backward */
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
        free(s->ops[i].w);
    }
    for (int a = 0; s->acts && a < s->n_acts; a++) free(s->acts[a].value);
    free(s->ops), free(s->acts), free(s->dy), free(s);
}

/* The state for m's ops and activations, at m's capacity. */
static st_status create(const st_model *m, st_bf16_exec **out) {
    st_bf16_exec *s = st_calloc(1, sizeof *s, "bf16 execution");
    if (!s) return ST_ERR_NOMEM;
    s->n_ops = m->n_ops;
    s->capacity = m->capacity;
    s->pass = 1;
    s->n_acts = m->n_acts;
    s->ops = st_calloc((size_t)m->n_ops + 1, sizeof *s->ops, "bf16 execution");
    s->acts = st_calloc((size_t)m->n_acts + 1, sizeof *s->acts, "bf16 execution");
    if (!s->ops || !s->acts) {
        st_bf16_exec_free(s);
        return ST_ERR_NOMEM;
    }
    /* readers per activation, counted up to 2 in one_reader, then 1 where exactly one */
    for (int i = 0; i < m->n_ops; i++) {
        const int in[2] = {m->ops[i].in, m->ops[i].in2};
        for (int r = 0; r < 2; r++)
            if (in[r] >= 0 && s->acts[in[r]].one_reader < 2) s->acts[in[r]].one_reader++;
    }
    for (int a = 0; a < m->n_acts; a++) s->acts[a].one_reader = s->acts[a].one_reader == 1;
    *out = s;
    return ST_OK;
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

/* The bf16 copy of activation a holding x (batch images): rounded now unless current. */
static st_status input_copy(st_bf16_exec *s, const st_model *m, int a, int batch, const float *x,
                            const st_bf16 **out) {
    act_state *t = &s->acts[a];
    const size_t per_image = (size_t)st_activation_size(&m->acts[a]);
    ST_ASSERT(batch <= s->capacity);
    if (!t->value) {
        t->value = st_malloc_aligned((size_t)s->capacity * per_image * sizeof(st_bf16), "bf16 activation copies");
        if (!t->value) return ST_ERR_NOMEM;
    }
    if (t->value_pass != s->pass) st_bf16_from_floats(x, (size_t)batch * per_image, t->value);
    t->value_pass = s->pass;
    t->wanted = 1;
    *out = t->value;
    return ST_OK;
}

st_status st_bf16_exec_forward(st_bf16_exec **state, const st_model *m, const st_op *op, int batch, const float *x,
                               float *y, double *stats) {
    if (!*state) ST_TRY(create(m, state));
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
    const size_t out = (size_t)batch * (size_t)st_activation_size(&m->acts[op->out]);
    const size_t nnz = (size_t)w->row_ptr[w->rows];
    const st_bf16 *x16 = NULL;
    ST_TRY(input_copy(s, m, op->in, batch, x, &x16));
    ST_TRY(reserve(&o->w, &o->w_cap, nnz));
    ST_TRY(reserve(&s->dy, &s->dy_cap, out)); /* for backward, which cannot fail */
    st_bf16_from_floats(wp->value, nnz, o->w);
    s->acts[op->out].produced = s->pass;
    const float *bias = op->bias >= 0 ? m->params[op->bias].value : NULL;
    if (stats) st_spbf16_forward_stats(o->plan, ST_SPBF16_DP, x16, o->w, bias, y, stats);
    else st_spbf16_forward(o->plan, ST_SPBF16_DP, x16, o->w, bias, y);
    return ST_OK;
}

void st_bf16_exec_forward_begins(st_bf16_exec *s) {
    if (s) s->pass++;
}

st_bf16 *st_bf16_exec_value_copy(st_bf16_exec *s, int a) {
    if (!s) return NULL;
    act_state *t = &s->acts[a];
    if (!t->wanted || !t->value) return NULL;
    t->value_pass = s->pass; /* the caller writes it now */
    return t->value;
}

st_bf16 *st_bf16_exec_grad_copy(st_bf16_exec *s, const st_model *m, int a, float *grad) {
    if (!s) return NULL;
    act_state *t = &s->acts[a];
    t->grad_pass = t->produced == s->pass && t->one_reader && !m->dense_grad ? s->pass : 0;
    return t->grad_pass ? (st_bf16 *)grad : NULL;
}

/* the state of an op whose forward ran */
static op_state *forwarded(st_bf16_exec *s, const st_model *m, const st_op *op, int batch) {
    ST_ASSERT(s && op - m->ops < s->n_ops);
    op_state *o = &s->ops[op - m->ops];
    ST_ASSERT(o->built && o->g.batch == batch);
    return o;
}

const st_bf16 *st_bf16_exec_output_grad(st_bf16_exec *s, const st_model *m, const st_op *op, int batch,
                                        const float *dy) {
    (void)forwarded(s, m, op, batch);
    act_state *t = &s->acts[op->out];
    if (t->grad_pass == s->pass) { /* the batch norm's backward wrote it in bf16 into dy's buffer */
        t->grad_pass = 0;
        return (const st_bf16 *)(const void *)dy;
    }
    st_bf16_from_floats(dy, (size_t)batch * (size_t)st_activation_size(&m->acts[op->out]), s->dy);
    return s->dy;
}

void st_bf16_exec_backward_weight(st_bf16_exec *s, const st_model *m, const st_op *op, int batch,
                                  const st_bf16 *dy, float *dw, float *dbias) {
    op_state *o = forwarded(s, m, op, batch);
    st_spbf16_backward_weight(o->plan, ST_SPBF16_DP, s->acts[op->in].value, dy, dw, dbias);
}

void st_bf16_exec_backward_data(st_bf16_exec *s, const st_model *m, const st_op *op, int batch,
                                const st_bf16 *dy, float *dx, int accumulate) {
    op_state *o = forwarded(s, m, op, batch);
    st_spbf16_backward_data(o->plan, ST_SPBF16_DP, dy, o->w, dx, accumulate);
}
