/* Per-step timing of the walk (with m->profile set; see model.h). */
#include <stdio.h>
#include <string.h>

#include "exec/executor.h"

int st_model_step_count(const st_model *m) { return m->schedule ? m->schedule->n_steps : 0; }

void st_model_profile_reset(st_model *m) {
    for (int k = 0; k < st_model_step_count(m); k++) {
        m->schedule->steps[k].forward_s = m->schedule->steps[k].backward_s = 0.0;
        m->schedule->steps[k].backward_data_s = m->schedule->steps[k].backward_weight_s = 0.0;
        m->schedule->steps[k].passes_timed = 0;
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
    const st_model_step *st = &m->schedule->steps[k];
    const st_op *op = &m->ops[st->op];
    out->forward_s = st->forward_s;
    out->backward_s = st->backward_s;
    out->passes_timed = st->passes_timed;
    out->backward_data_s = st->backward_data_s;
    out->backward_weight_s = st->backward_weight_s;
    out->calls = st->calls;
    if (st->kind == ST_STEP_OP) {
        const int gemm = st_sparse_executor_runs_gemm(m, st->op);
        snprintf(out->kind, sizeof out->kind, "%s%s", op_kind_name(op->kind), gemm ? " (gemm)" : "");
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
    snprintf(out->kind, sizeof out->kind, "%s%s%s", st->kind == ST_STEP_BN_ACT ? "bn" : "",
             st->add >= 0 ? (st->kind == ST_STEP_BN_ACT ? "+add" : "add") : "",
             st->relu >= 0 ? (st->kind == ST_STEP_BN_ACT || st->add >= 0 ? "+relu" : "relu") : "");
    if (st->kind == ST_STEP_BN_ACT) snprintf(out->name, sizeof out->name, "%s", op->bn_name);
}
