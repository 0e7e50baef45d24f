/* Non-finite value checks of a training step (see anomaly.h). */
#include "train/anomaly.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/status.h"

int64_t st_first_nonfinite(const float *v, int64_t n) {
    if (!v) return -1;
    /* One branch-free pass (x - x is NaN exactly for NaN and +-Inf), then
     * the exact position only when something was found. */
    float probe = 0.0f;
    for (int64_t i = 0; i < n; i++) probe += v[i] - v[i];
    if (probe == 0.0f) return -1;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return i;
    return -1;
}

static int64_t count_nonfinite(const float *v, int64_t n, int64_t first) {
    int64_t count = 0;
    for (int64_t i = first; i < n; i++) count += !isfinite(v[i]);
    return count;
}

static const char *value_name(float x) { return isnan(x) ? "NaN" : (x > 0 ? "+Inf" : "-Inf"); }

/* The common tail of every message: what is kept and what to try. */
static void advice(const st_anomaly_where *w, char *out, size_t size) {
    const char *ck = w->checkpoint && w->checkpoint[0] ? w->checkpoint : NULL;
    char kept[1100];
    if (ck && w->saved)
        snprintf(kept, sizeof kept, "the last good checkpoint %s is kept (continue with --resume)", ck);
    else if (ck)
        snprintf(kept, sizeof kept, "no checkpoint of this run was written yet (%s is untouched)", ck);
    else
        snprintf(kept, sizeof kept, "nothing was saved (no --save)");
    snprintf(out, size, "; %s; hint: lower the learning rate (--lr, %g at this step)", kept, w->lr);
}

/* Why a forward pass can go non-finite: a weight that already is (from an
 * earlier update), else the largest weight names the likeliest overflow. */
static void explain_forward(const st_model *m, char *out, size_t size) {
    double largest = -1;
    const char *where = "?";
    for (int i = 0; i < m->n_params; i++) {
        const st_param *p = &m->params[i];
        int64_t at = st_first_nonfinite(p->value, st_param_stored(p));
        if (at >= 0) {
            snprintf(out, size, "; the %s '%s' is already %s (element %lld)", p->is_buffer ? "buffer" : "weight",
                     p->name, value_name(p->value[at]), (long long)at);
            return;
        }
        for (int64_t k = 0; k < st_param_stored(p); k++)
            if (fabs(p->value[k]) > largest) {
                largest = fabs(p->value[k]);
                where = p->name;
            }
    }
    snprintf(out, size, "; every weight is finite, the largest is |w| = %.3g in '%s' (the forward pass overflowed)",
             largest, where);
}

/* Checks one tensor; `role` ("gradient of", "weight", ...) and `name` make
 * the message. */
static st_status check_tensor_why(const float *v, int64_t n, const char *role, const char *name, const char *when,
                                  const st_model *explain, const st_anomaly_where *w) {
    int64_t at = st_first_nonfinite(v, n);
    if (at < 0) return ST_OK;
    char why[400] = "", tail[1400];
    if (explain) explain_forward(explain, why, sizeof why);
    advice(w, tail, sizeof tail);
    return st_fail(ST_ERR_NUMERIC,
                   "numerical fault at step %lld (epoch %d, batch %lld): %s '%s' %s %s (element %lld; %lld of %lld "
                   "values are not finite)%s%s",
                   (long long)w->step, w->epoch, (long long)w->batch, role, name, when, value_name(v[at]),
                   (long long)at, (long long)count_nonfinite(v, n, at), (long long)n, why, tail);
}

static st_status check_tensor(const float *v, int64_t n, const char *role, const char *name, const char *when,
                              const st_anomaly_where *w) {
    return check_tensor_why(v, n, role, name, when, NULL, w);
}

st_status st_anomaly_check_loss(const st_model *m, double loss, const st_anomaly_where *w) {
    if (isfinite(loss)) return ST_OK;
    char why[400], tail[1400];
    explain_forward(m, why, sizeof why);
    advice(w, tail, sizeof tail);
    return st_fail(ST_ERR_NUMERIC, "numerical fault at step %lld (epoch %d, batch %lld): the training loss is %s%s%s",
                   (long long)w->step, w->epoch, (long long)w->batch, isnan(loss) ? "NaN" : "infinite", why, tail);
}

st_status st_anomaly_check_gradients(const st_model *m, const st_anomaly_where *w) {
    for (int i = m->n_params - 1; i >= 0; i--) {
        const st_param *p = &m->params[i];
        if (p->grad) ST_TRY(check_tensor(p->grad, st_param_stored(p), "the gradient of", p->name, "holds", w));
    }
    return ST_OK;
}

st_status st_anomaly_check_input(const float *images, int64_t count, const st_anomaly_where *w) {
    return check_tensor(images, count, "the input batch", "images", "holds", w);
}

st_status st_anomaly_check_output(const st_model *m, const float *logits, int batch, const st_anomaly_where *w) {
    char name[96];
    snprintf(name, sizeof name, "%s logits", m->name);
    return check_tensor_why(logits, (int64_t)batch * m->num_classes, "the model output", name, "holds", m, w);
}

st_status st_anomaly_check_activations(const st_model *m, int batch, const st_anomaly_where *w) {
    int64_t at = -1;
    const int k = st_model_first_nonfinite_step(m, batch, &at);
    if (k < 0) return ST_OK;
    st_step_profile sp;
    st_model_step_profile(m, k, &sp);
    char why[400], tail[1400];
    explain_forward(m, why, sizeof why);
    advice(w, tail, sizeof tail);
    return st_fail(ST_ERR_NUMERIC,
                   "numerical fault at step %lld (epoch %d, batch %lld): the forward pass first goes non-finite at "
                   "layer %d of %d (%s%s%s; element %lld of its output)%s%s",
                   (long long)w->step, w->epoch, (long long)w->batch, k + 1, st_model_step_count(m), sp.kind,
                   sp.name[0] ? " " : "", sp.name, (long long)at, why, tail);
}

st_status st_anomaly_check_weights(const st_model *m, const st_optimizer *opt, const st_anomaly_where *w) {
    for (int i = 0; i < m->n_params; i++) {
        const st_param *p = &m->params[i];
        ST_TRY(check_tensor(p->value, st_param_stored(p), p->is_buffer ? "the buffer" : "the weight", p->name,
                            "became", w));
    }
    if (!opt) return ST_OK;
    for (int i = 0; i < m->n_params && i < opt->n_params; i++) {
        const st_param *p = &m->params[i];
        for (int which = 0; which < 2; which++) {
            const float *state = which == 0 ? opt->state1[i] : opt->state2[i];
            if (!state) continue;
            char name[ST_NAME_MAX + 64];
            snprintf(name, sizeof name, "optim.%s.%s", p->name, st_optimizer_state_name(opt, which));
            ST_TRY(check_tensor(state, st_param_stored(p), "the optimiser state", name, "became", w));
        }
    }
    return ST_OK;
}
