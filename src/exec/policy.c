/* Dense vs sparse execution choice (see policy.h). */
#include "exec/policy.h"

#include <math.h>
#include <string.h>

#include "core/status.h"
#include "kernels/isa.h"

st_status st_exec_policy_parse(const char *name, st_exec_policy *out) {
    if (strcmp(name, "auto") == 0) *out = ST_EXEC_AUTO;
    else if (strcmp(name, "sparse") == 0) *out = ST_EXEC_SPARSE;
    else if (strcmp(name, "dense") == 0) *out = ST_EXEC_DENSE;
    else if (strcmp(name, "mixed") == 0) *out = ST_EXEC_MIXED;
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

enum { RULE_DEFAULT = 0, RULE_ZEN4 = 1 };
static const st_exec_rule exec_rules[] = {
    [RULE_DEFAULT] = {"default", 0.34, 0.4, {1.311, -0.3308, -0.4956, 0.025, -0.4268, -0.9131}},
    [RULE_ZEN4] = {"zen4", 0.41, 0.15, {2.9084, -0.4752, -0.4256, 0.0191, -1.0424, -0.9893}},
};

const st_exec_rule *st_exec_rule_current(void) {
    return &exec_rules[st_isa_cpu_class() == ST_CPU_CLASS_ZEN4 ? RULE_ZEN4 : RULE_DEFAULT];
}

double st_model_sparse_crossover(const st_model *m) {
    const st_exec_rule *r = st_exec_rule_current();
    const double c = r->at_ref * pow(ST_SPARSE_EXEC_REF_WIDTH / fmax(1.0, st_model_mean_width(m)), r->exponent);
    return fmin(0.5, fmax(0.1, c));
}

int st_model_wants_sparse_execution(const st_model *m, st_exec_policy policy, int batch) {
    if (policy == ST_EXEC_SPARSE || policy == ST_EXEC_MIXED) return 1;
    if (policy == ST_EXEC_DENSE) return 0;
    (void)batch;
    return st_model_flop_density(m) <= st_model_sparse_crossover(m);
}

double st_layer_dense_crossover(const st_model *m, const st_op *op, int batch) {
    const st_param *w = &m->params[op->weight];
    const st_activation *out = &m->acts[op->out];
    const double kc = (double)w->numel / (double)w->shape[0];
    if (kc < ST_DENSE_LAYER_MIN_REDUCTION) return 1.0;
    const int conv = op->kind == ST_OP_CONV;
    const int identity = !conv || (op->kernel == 1 && op->stride == 1 && op->padding == 0);
    const double pixels = fmax(1.0, (double)out->height * out->width), plane = log(fmax(1.0, batch) * pixels);
    const double *c = st_exec_rule_current()->layer;
    const double ln_c = c[0] + c[1] * log(kc) + c[2] * log(pixels) + c[3] * plane * plane +
                        c[4] * log(conv ? (double)op->stride : 1.0) + (identity ? c[5] : 0.0);
    return fmin(1.0, fmax(ST_DENSE_LAYER_MIN_CROSSOVER, exp(ln_c)));
}

int st_layer_wants_dense(const st_model *m, const st_op *op, int batch) {
    if ((op->kind != ST_OP_CONV && op->kind != ST_OP_LINEAR) || op->weight < 0) return 0;
    const st_param *w = &m->params[op->weight];
    const double density = w->sparse ? (double)w->sparse->kept / (double)w->numel : 1.0;
    return density > st_layer_dense_crossover(m, op, batch);
}

const char *st_model_layer_kernel(const st_model *m, int param, st_exec_policy policy, int batch) {
    for (int i = 0; i < m->n_ops; i++) {
        const st_op *op = &m->ops[i];
        if ((op->kind != ST_OP_CONV && op->kind != ST_OP_LINEAR) || op->weight != param) continue;
        if (!st_model_wants_sparse_execution(m, policy, batch)) return "dense";
        if (policy == ST_EXEC_SPARSE) return "direct";
        return st_layer_wants_dense(m, op, batch) ? "gemm" : "direct";
    }
    return NULL;
}

int st_model_dense_layers(const st_model *m, int batch) {
    int n = 0;
    for (int i = 0; i < m->n_ops && m->per_layer_kernels; i++) n += st_layer_wants_dense(m, &m->ops[i], batch);
    return n;
}

st_status st_model_apply_execution(st_model *m, st_exec_policy policy, int batch) {
    if (!st_model_wants_sparse_execution(m, policy, batch)) return ST_OK;
    m->per_layer_kernels = policy == ST_EXEC_MIXED || policy == ST_EXEC_AUTO;
    return st_model_use_sparse_execution(m);
}
