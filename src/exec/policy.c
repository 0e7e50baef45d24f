/* Dense vs sparse execution choice (see policy.h). */
#include "exec/policy.h"

#include <math.h>
#include <string.h>

#include "core/status.h"

st_status st_exec_policy_parse(const char *name, st_exec_policy *out) {
    if (strcmp(name, "auto") == 0) *out = ST_EXEC_AUTO;
    else if (strcmp(name, "sparse") == 0) *out = ST_EXEC_SPARSE;
    else if (strcmp(name, "dense") == 0) *out = ST_EXEC_DENSE;
    else return st_fail(ST_ERR_ARGUMENT, "--execution '%s' is unknown (" ST_EXEC_POLICY_NAMES ")", name);
    return ST_OK;
}

double st_model_flop_density(const st_model *m) {
    double kept = 0.0, dense = 0.0;
    for (int i = 0; i < m->n_ops; i++) {
        const st_op *op = &m->ops[i];
        if ((op->kind != ST_OP_CONV && op->kind != ST_OP_LINEAR) || op->weight < 0) continue;
        const st_activation *out = &m->acts[op->out];
        const double pixels = (double)out->height * out->width;
        const st_param *w = &m->params[op->weight];
        dense += pixels * (double)w->numel;
        kept += pixels * (double)(w->sparse ? w->sparse->kept : w->numel);
    }
    return dense > 0.0 ? kept / dense : 1.0;
}

double st_model_mean_width(const st_model *m) {
    double sum = 0.0, macs = 0.0;
    for (int i = 0; i < m->n_ops; i++) {
        const st_op *op = &m->ops[i];
        if ((op->kind != ST_OP_CONV && op->kind != ST_OP_LINEAR) || op->weight < 0) continue;
        const st_activation *out = &m->acts[op->out];
        const st_param *w = &m->params[op->weight];
        const double layer = (double)out->height * out->width * (double)w->numel;
        const double cout = (double)w->shape[0], cin = (double)w->numel / (double)w->shape[0];
        const double width = op->kind == ST_OP_CONV ? fmin(cout, cin / (double)(op->kernel * op->kernel)) : fmin(cout, cin);
        sum += layer * width;
        macs += layer;
    }
    return macs > 0.0 ? sum / macs : 1.0;
}

double st_model_sparse_crossover(const st_model *m) {
    const double c = ST_SPARSE_EXEC_CROSSOVER_AT_REF *
                     pow(ST_SPARSE_EXEC_REF_WIDTH / fmax(1.0, st_model_mean_width(m)), ST_SPARSE_EXEC_WIDTH_EXPONENT);
    return fmin(0.5, fmax(0.1, c));
}

int st_model_wants_sparse_execution(const st_model *m, st_exec_policy policy) {
    if (policy == ST_EXEC_SPARSE) return 1;
    if (policy == ST_EXEC_DENSE) return 0;
    return st_model_flop_density(m) <= st_model_sparse_crossover(m);
}

st_status st_model_apply_execution(st_model *m, st_exec_policy policy) {
    if (!st_model_wants_sparse_execution(m, policy)) return ST_OK;
    return st_model_use_sparse_execution(m);
}
