/* Times forward, backward and a full SGD training step of a model on random
 * data after warm-up, reporting medians (the machines are noisy). */
#include "train/bench.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "core/rng.h"
#include "core/status.h"
#include "core/threads.h"
#include "kernels/isa.h"
#include "exec/bf16_exec.h"
#include "exec/policy.h"
#include "models/init.h"
#include "models/model.h"
#include "optim/optimizer.h"
#include "run/setup.h"
#include "sparse/masks.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

/* CPU time of the whole process (every thread). */
static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, compare_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

st_status st_bench_run(const st_bench_config *c, st_bench_result *r) {
    memset(r, 0, sizeof *r);
    if (c->batch_size <= 0 || c->steps <= 0 || c->warmup < 0)
        return st_fail(ST_ERR_ARGUMENT, "bench: batch size and steps must be positive");
    ST_TRY(st_threads_check("--threads", c->threads));
    /* the peak first, on an idle process: 16 bursts of 10 ms, the fastest kept
     * (short bursts: on a shared machine some of them run undisturbed) */
    st_fma_peak_measure(omp_get_max_threads(), 16, 0.01, &r->peak);
    /* the model as `sparsetrain train` builds it (run/setup.h): exact-count masks, plain initialisation */
    st_run_model_spec spec = {c->model, c->classes, c->channels, c->height, c->width, strcmp(c->sparse_init, "dense") != 0,
                              c->sparse_init, c->density, 1.0, "exact", 0, c->seed, NULL, NULL};
    st_model *m;
    st_run_layers layers;
    ST_TRY(st_run_model_build(&spec, &m, &layers));
    st_run_layers_free(&layers);
    st_status s = ST_OK;
    size_t image = (size_t)c->channels * c->height * c->width;
    float *images = malloc(sizeof(float) * image * (size_t)c->batch_size);
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)c->batch_size);
    double *fwd = malloc(sizeof(double) * (size_t)c->steps), *bwd = malloc(sizeof(double) * (size_t)c->steps);
    double *step = malloc(sizeof(double) * (size_t)c->steps), *cpu = malloc(sizeof(double) * (size_t)c->steps);
    st_optimizer opt;
    memset(&opt, 0, sizeof opt);
    if (!images || !labels || !fwd || !bwd || !step || !cpu) s = st_fail(ST_ERR_NOMEM, "bench: out of memory");
    if (s == ST_OK) s = st_run_apply_execution(m, c->execution, c->batch_size);
    if (s == ST_OK && c->bf16) {
        snprintf(r->precision, sizeof r->precision, "%s", st_model_enable_bf16(m));
        r->bf16 = m->bf16;
    }
    if (s == ST_OK) {
        st_rng rng;
        st_rng_seed(&rng, c->seed, 99);
        for (size_t i = 0; i < image * (size_t)c->batch_size; i++) images[i] = (float)st_rng_normal(&rng);
        for (int i = 0; i < c->batch_size; i++) labels[i] = (int32_t)st_rng_below(&rng, (uint64_t)c->classes);
        s = st_optimizer_create(&opt, m, ST_OPTIMIZER_SGD, 0.9, 1, 5e-4);
    }
    for (int it = 0; s == ST_OK && it < c->warmup + c->steps; it++) {
        if (it == c->warmup) { /* per-step timing over the timed steps only */
            m->profile = 1;
            st_model_profile_reset(m);
        }
        const float *logits;
        const double c0 = cpu_ms();
        double loss, t0 = now_ms();
        int ok;
        s = st_model_forward(m, images, c->batch_size, &logits);
        double t1 = now_ms();
        if (s == ST_OK) s = st_model_loss_backward(m, labels, c->batch_size, &loss, &ok);
        double t2 = now_ms();
        if (s == ST_OK) st_optimizer_step(&opt, m, 0.01);
        double t3 = now_ms();
        if (it >= c->warmup) {
            fwd[it - c->warmup] = t1 - t0;
            bwd[it - c->warmup] = t2 - t1;
            step[it - c->warmup] = t3 - t0;
            cpu[it - c->warmup] = cpu_ms() - c0;
        }
    }
    if (s == ST_OK) {
        r->forward_ms = median(fwd, c->steps);
        r->backward_ms = median(bwd, c->steps);
        r->step_ms = median(step, c->steps);
        r->step_cpu_ms = median(cpu, c->steps);
        r->images_per_s = 1e3 * c->batch_size / r->step_ms;
        st_model_prunable_counts(m, &r->kept, &r->total);
        r->threads = omp_get_max_threads();
        st_model_conv_implementation(m, r->conv_implementation, sizeof r->conv_implementation);
        const int n_steps = st_model_step_count(m);
        r->layers = calloc((size_t)n_steps + 1, sizeof *r->layers);
        if (!r->layers) s = st_fail(ST_ERR_NOMEM, "bench: out of memory");
        double macs = 0.0;
        for (int k = 0; s == ST_OK && k < n_steps; k++) {
            st_step_profile sp;
            st_model_step_profile(m, k, &sp);
            st_bench_layer *l = &r->layers[k];
            snprintf(l->kind, sizeof l->kind, "%s", sp.kind);
            snprintf(l->name, sizeof l->name, "%s", sp.name);
            l->kept = sp.kept;
            l->numel = sp.numel;
            l->forward_ms = 1e3 * sp.forward_s / c->steps;
            l->backward_ms = 1e3 * sp.backward_s / c->steps;
            const double t = l->forward_ms + l->backward_ms;
            l->gflops = t > 0 ? 3.0 * 2.0 * sp.macs * c->batch_size / (t * 1e6) : 0.0;
            l->macs = sp.macs;
            l->passes_timed = sp.passes_timed;
            l->backward_data_ms = 1e3 * sp.backward_data_s / c->steps;
            l->backward_weight_ms = 1e3 * sp.backward_weight_s / c->steps;
            const double pass_mflop = 2.0 * sp.macs * c->batch_size / 1e6; /* one pass, in MFLOP: / ms = GFLOP/s */
            l->forward_gflops = l->forward_ms > 0 ? pass_mflop / l->forward_ms : 0.0;
            if (sp.passes_timed) {
                l->backward_data_gflops = l->backward_data_ms > 0 ? pass_mflop / l->backward_data_ms : 0.0;
                l->backward_weight_gflops = l->backward_weight_ms > 0 ? pass_mflop / l->backward_weight_ms : 0.0;
            }
            macs += sp.macs;
        }
        if (s == ST_OK) r->n_layers = n_steps;
        r->train_gflop = 3.0 * 2.0 * macs * c->batch_size / 1e9;
        r->useful_gflops = r->train_gflop / (r->step_ms / 1e3);
        for (int i = 0; i < m->n_params; i++) {
            const st_param *p = &m->params[i];
            const int64_t per = p->is_buffer ? 1 : 3; /* value, gradient, momentum */
            r->param_bytes += per * st_param_stored(p) * (int64_t)sizeof(float);
            r->dense_param_bytes += per * p->numel * (int64_t)sizeof(float);
            if (p->sparse && p->sparse->packed) /* the index arrays */
                r->param_bytes += (int64_t)sizeof(int32_t) * p->sparse->kept +
                                  (int64_t)sizeof(int64_t) * (p->sparse->rows + 1);
        }
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0) r->peak_rss_bytes = (int64_t)ru.ru_maxrss * 1024;
        r->activation_bytes = st_model_act_memory_bytes(m);
        snprintf(r->execution, sizeof r->execution, "%s", st_model_executor_name(m));
        snprintf(r->isa, sizeof r->isa, "%s", st_isa_name(st_isa_current()));
    }
    st_optimizer_free(&opt);
    free(images);
    free(labels);
    free(fwd);
    free(bwd);
    free(step);
    free(cpu);
    st_model_free(m);
    return s;
}

void st_bench_result_release(st_bench_result *r) {
    if (!r) return;
    free(r->layers);
    r->layers = NULL;
    r->n_layers = 0;
}
