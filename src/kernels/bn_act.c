/* Fused batch norm / residual add / ReLU (see bn_act.h): threading and
 * per-channel arithmetic here, the streaming loops in bn_act_rows.inc,
 * compiled for AVX-512, AVX2+FMA and baseline x86-64; kernels/isa.c picks one. */
#include "kernels/bn_act.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "kernels/isa.h"
#include "kernels/isa_target.h"

#define ST_BN_MAX_BLOCK 64
/* Below this many elements a parallel region costs more than it saves. */
#define PARALLEL_MIN_ELEMENTS 32768

typedef struct bn_act_rows {
    void (*plane_stats)(const float *x, int n, float shift, double *s1, double *s2);
    void (*tile_stats)(const float *x, int len, int B, const float *shift, double *s1, double *s2);
    void (*plane_norm)(const float *x, const float *res, int n, float mean, float scale, float shift, int relu,
                       float *y);
    void (*tile_norm)(const float *x, const float *res, int len, int B, const float *mean, const float *scale,
                      const float *shift, int relu, float *y);
    void (*plane_bwd_sums)(const float *x, const float *y, const float *dy, int n, float mean, int relu, double *sg,
                           double *sgx);
    void (*tile_bwd_sums)(const float *x, const float *y, const float *dy, int len, int B, const float *mean,
                          int relu, double *sg, double *sgx);
    void (*plane_bwd_dx)(const float *x, const float *y, const float *dy, int n, float mean, float k, float b,
                         float c0, int relu, float *dx, int dx_acc, float *dres, int dres_acc);
    void (*tile_bwd_dx)(const float *x, const float *y, const float *dy, int len, int B, const float *mean,
                        const float *k, const float *b, const float *c0, int relu, float *dx, int dx_acc,
                        float *dres, int dres_acc);
    void (*add_act)(int64_t n, const float *a, const float *b, int relu, float *y);
    void (*add_act_bwd)(int64_t n, const float *y, int relu, const float *dy, float *da, int da_acc, float *db,
                        int db_acc);
} bn_act_rows;

#define ISA(name) name##_generic
#include "kernels/bn_act_rows.inc"
#undef ISA

#ifdef ST_HAVE_X86_TARGETS
#define ST_BN_HAVE_X86 1
ST_TARGET_AVX2_BEGIN
#define ISA(name) name##_avx2
#include "kernels/bn_act_rows.inc"
#undef ISA
ST_TARGET_END
ST_TARGET_AVX512_BEGIN
#define ISA(name) name##_avx512
#include "kernels/bn_act_rows.inc"
#undef ISA
ST_TARGET_END
#endif

/* The variant for the ISA chosen in kernels/isa.c. */
static const bn_act_rows *rows(void) {
#ifdef ST_BN_HAVE_X86
    switch (st_isa_current()) {
    case ST_ISA_AVX512: return &rows_avx512;
    case ST_ISA_AVX2: return &rows_avx2;
    default: break;
    }
#endif
    return &rows_generic;
}

size_t st_bn_act_scratch_doubles(const st_bn_act_shape *s, int threads) {
    if (threads < 1) threads = 1;
    /* per-thread partial sums (2 x C each), then 4 x C floats of per-channel parameters */
    return 2 * (size_t)s->channels * (size_t)threads + 2 * (size_t)s->channels + 8;
}

/* Images [*begin, *end) of thread tid of nt: a fixed contiguous block. */
static void image_block(int batch, int tid, int nt, int *begin, int *end) {
    *begin = (int)((int64_t)batch * tid / nt);
    *end = (int)((int64_t)batch * (tid + 1) / nt);
}

static int team_size(const st_bn_act_shape *s) {
    const int64_t total = (int64_t)s->batch * s->channels * s->spatial;
    if (total < PARALLEL_MIN_ELEMENTS || omp_in_parallel()) return 1;
    const int t = omp_get_max_threads();
    return t < s->batch ? t : (s->batch > 0 ? s->batch : 1);
}

/* Offset of element (n, c, 0). */
static size_t plane_offset(const st_bn_act_shape *s, int n, int c) {
    const int B = s->block;
    return ((size_t)n * (size_t)(s->channels / B) + (size_t)(c / B)) * (size_t)s->spatial * (size_t)B + (size_t)(c % B);
}

/* Per-channel float parameters carved from the scratch after the partial sums. */
typedef struct channel_params {
    double *part1, *part2; /* nt x C */
    float *p0, *p1, *p2, *p3;
} channel_params;

static channel_params carve_params(const st_bn_act_shape *s, int nt, double *scratch) {
    const size_t C = (size_t)s->channels;
    channel_params p;
    p.part1 = scratch;
    p.part2 = scratch + C * (size_t)nt;
    float *f = (float *)(scratch + 2 * C * (size_t)nt);
    p.p0 = f;
    p.p1 = f + C;
    p.p2 = f + 2 * C;
    p.p3 = f + 3 * C;
    return p;
}

/* ---- bf16 outputs (the _bf16 variants): a result is written in pieces of
 * ROUND_PIECE floats, each rounded while it is still in L1 (32 KiB of float
 * output and its bf16 copy fit beside the inputs' lines). Elementwise, so
 * the pieces change no result. */
#define ROUND_PIECE 2048

static int piece_length(int64_t n, int64_t at) { return (int)(n - at < ROUND_PIECE ? n - at : ROUND_PIECE); }

/* plane_norm, and y rounded into y16 (may be NULL) in the same pass */
static void plane_norm_out(const bn_act_rows *r, st_bf16_rounding round, const float *x, const float *res, int n,
                           float mean, float scale, float shift, int relu, float *y, st_bf16 *y16) {
    if (!y16) {
        r->plane_norm(x, res, n, mean, scale, shift, relu, y);
        return;
    }
    for (int64_t i = 0; i < n; i += ROUND_PIECE) {
        const int len = piece_length(n, i);
        r->plane_norm(x + i, res ? res + i : NULL, len, mean, scale, shift, relu, y + i);
        round(y + i, (size_t)len, y16 + i);
    }
}

/* plane_bwd_dx, and dx rounded into dx16 (may be NULL) in the same pass; with
 * dx16 and no dx the float pieces go to a buffer on the stack */
static void plane_dx_out(const bn_act_rows *r, st_bf16_rounding round, const float *x, const float *y,
                         const float *dy, int n, float mean, float k, float b, float c0, int relu, float *dx,
                         st_bf16 *dx16, int dx_acc, float *dres, int dres_acc) {
    if (!dx16) {
        r->plane_bwd_dx(x, y, dy, n, mean, k, b, c0, relu, dx, dx_acc, dres, dres_acc);
        return;
    }
    _Alignas(64) float piece[ROUND_PIECE];
    for (int64_t i = 0; i < n; i += ROUND_PIECE) {
        const int len = piece_length(n, i);
        float *d = dx ? dx + i : piece;
        r->plane_bwd_dx(x + i, y ? y + i : NULL, dy + i, len, mean, k, b, c0, relu, d, dx ? dx_acc : 0,
                        dres ? dres + i : NULL, dres_acc);
        round(d, (size_t)len, dx16 + i);
    }
}

/* The rounding a call with a bf16 output uses (NULL without one): looked up
 * once per call, outside the parallel loops. */
static st_bf16_rounding rounding_for(const void *bf16_out, const st_bn_act_shape *s) {
    if (!bf16_out) return NULL;
    ST_ASSERT(!s || s->block == 1); /* bf16 outputs: unblocked layouts only */
    return st_bf16_rounding_in_use();
}

/* For each of this thread's images, part1/part2[c] += plane or tile reductions. */
static void stats_pass(const bn_act_rows *r, const st_bn_act_shape *s, const float *x, const float *shift,
                       double *s1, double *s2, int n0, int n1) {
    const int C = s->channels, S = s->spatial, B = s->block;
    for (int n = n0; n < n1; n++) {
        if (B == 1) {
            for (int c = 0; c < C; c++) r->plane_stats(x + plane_offset(s, n, c), S, shift[c], &s1[c], &s2[c]);
        } else {
            for (int c = 0; c < C; c += B) r->tile_stats(x + plane_offset(s, n, c), S, B, shift + c, s1 + c, s2 + c);
        }
    }
}

/* The normalise-add-clamp pass over image n (y16: its bf16 copy, may be NULL). */
static void norm_image(const bn_act_rows *r, st_bf16_rounding round, const st_bn_act_shape *s, const float *x,
                       const float *residual, const float *mean, const float *scale, const float *bias, int relu,
                       float *y, st_bf16 *y16, int n) {
    const int C = s->channels, S = s->spatial, B = s->block;
    for (int c = 0; c < C; c += B) {
        const size_t o = plane_offset(s, n, c);
        if (B == 1)
            plane_norm_out(r, round, x + o, residual ? residual + o : NULL, S, mean[c], scale[c], bias[c], relu, y + o,
                           y16 ? y16 + o : NULL);
        else
            r->tile_norm(x + o, residual ? residual + o : NULL, S, B, mean + c, scale + c, bias + c, relu, y + o);
    }
}

/* ---- channel-major layout (batch == 1, block == 1: each channel's values
 * contiguous, e.g. the batch-innermost CHWN activations of sparse
 * execution). One thread owns a channel: it sums the plane, then normalises
 * it while the plane is still in cache, and the result does not depend on
 * the thread count. */
static int channel_major(const st_bn_act_shape *s) { return s->batch == 1 && s->block == 1 && s->channels > 1; }

static int channel_team(const st_bn_act_shape *s) {
    if ((int64_t)s->channels * s->spatial < PARALLEL_MIN_ELEMENTS || omp_in_parallel()) return 1;
    const int t = omp_get_max_threads();
    return t < s->channels ? t : s->channels;
}

/* stats: NULL, or per channel (shift, sum (x - shift), sum (x - shift)^2)
 * already gathered by the producer of x (st_bn_act_forward_train_stats). */
static void forward_train_channels(const bn_act_rows *r, const st_bn_act_shape *s, const double *stats,
                                   const float *x, const float *gamma, const float *beta, const float *residual,
                                   int relu, float momentum, float eps, float *y, st_bf16 *y16, float *save_mean,
                                   float *save_invstd, float *running_mean, float *running_var) {
    const int64_t S = s->spatial;
    const st_bf16_rounding round = rounding_for(y16, s);
#pragma omp parallel for schedule(static) num_threads(channel_team(s))
    for (int c = 0; c < s->channels; c++) {
        const float *xc = x + (size_t)c * (size_t)S;
        double sum = 0.0, sumsq = 0.0, shift = xc[0];
        if (stats) shift = stats[3 * c], sum = stats[3 * c + 1], sumsq = stats[3 * c + 2];
        else r->plane_stats(xc, (int)S, xc[0], &sum, &sumsq);
        const double m1 = sum / (double)S;
        double var = sumsq / (double)S - m1 * m1;
        if (var < 0.0) var = 0.0;
        const double mu = shift + m1, invstd = 1.0 / sqrt(var + (double)eps);
        if (save_mean) save_mean[c] = (float)mu;
        if (save_invstd) save_invstd[c] = (float)invstd;
        if (running_mean && running_var) {
            const double unbiased = S > 1 ? var * (double)S / (double)(S - 1) : var;
            running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mu);
            running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
        }
        const float scale = (float)((gamma ? (double)gamma[c] : 1.0) * invstd);
        const size_t o = (size_t)c * (size_t)S;
        plane_norm_out(r, round, xc, residual ? residual + o : NULL, (int)S, (float)mu, scale, beta ? beta[c] : 0.0f,
                       relu, y + o, y16 ? y16 + o : NULL);
    }
}

/* sums: NULL, or per channel (sum g, sum g * (x - mean)) already gathered by
 * the producer of dy (st_bn_act_backward_sums). */
static void backward_channels(const bn_act_rows *r, const st_bn_act_shape *s, const double *sums, const float *x,
                              const float *y, int relu, const float *dy, const float *gamma, const float *save_mean,
                              const float *save_invstd, float *dx, st_bf16 *dx16, int dx_accumulate,
                              float *dresidual, int dresidual_accumulate, float *dgamma, float *dbeta) {
    const int64_t S = s->spatial;
    const st_bf16_rounding round = rounding_for(dx16, s);
#pragma omp parallel for schedule(static) num_threads(channel_team(s))
    for (int c = 0; c < s->channels; c++) {
        const size_t o = (size_t)c * (size_t)S;
        const float *yo = relu ? y + o : NULL;
        float *ro = dresidual ? dresidual + o : NULL;
        double sum_dy = 0.0, sum_dy_xmu = 0.0;
        if (sums) sum_dy = sums[2 * c], sum_dy_xmu = sums[2 * c + 1];
        else r->plane_bwd_sums(x + o, yo, dy + o, (int)S, save_mean[c], relu, &sum_dy, &sum_dy_xmu);
        const double invstd = save_invstd[c];
        if (dbeta) dbeta[c] += (float)sum_dy;
        if (dgamma) dgamma[c] += (float)(sum_dy_xmu * invstd);
        const double kk = (gamma ? (double)gamma[c] : 1.0) * invstd;
        if (dx || dx16)
            plane_dx_out(r, round, x + o, yo, dy + o, (int)S, save_mean[c], (float)kk,
                         (float)(kk * invstd * invstd * sum_dy_xmu / (double)S), (float)(-kk * sum_dy / (double)S),
                         relu, dx ? dx + o : NULL, dx16 ? dx16 + o : NULL, dx_accumulate, ro, dresidual_accumulate);
        else if (ro)
            r->add_act_bwd(S, yo, relu, dy + o, ro, dresidual_accumulate, NULL, 0);
    }
}

void st_bn_act_forward_train(const st_bn_act_shape *s, const float *x, const float *gamma, const float *beta,
                             const float *residual, int relu, float momentum, float eps, float *y, float *save_mean,
                             float *save_invstd, float *running_mean, float *running_var, double *scratch) {
    st_bn_act_forward_train_bf16(s, x, gamma, beta, residual, relu, momentum, eps, y, NULL, save_mean, save_invstd,
                                 running_mean, running_var, scratch);
}

void st_bn_act_forward_train_bf16(const st_bn_act_shape *s, const float *x, const float *gamma, const float *beta,
                                  const float *residual, int relu, float momentum, float eps, float *y,
                                  st_bf16 *y16, float *save_mean, float *save_invstd, float *running_mean,
                                  float *running_var, double *scratch) {
    const bn_act_rows *r = rows();
    if (channel_major(s)) {
        forward_train_channels(r, s, NULL, x, gamma, beta, residual, relu, momentum, eps, y, y16, save_mean,
                               save_invstd, running_mean, running_var);
        return;
    }
    const st_bf16_rounding round = rounding_for(y16, s);
    const int C = s->channels, S = s->spatial, B = s->block;
    ST_ASSERT(B >= 1 && B <= ST_BN_MAX_BLOCK && C % B == 0);
    const int64_t count = (int64_t)s->batch * S;
    const int team = team_size(s);
    channel_params p = carve_params(s, team, scratch);
    float *shift = p.p0, *mean = p.p1, *scale = p.p2, *bias = p.p3;
    /* shifting by one sample of the channel keeps the sums small when |mean| >> std */
    for (int c = 0; c < C; c++) shift[c] = x[plane_offset(s, 0, c)];
#pragma omp parallel num_threads(team)
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        int n0, n1;
        image_block(s->batch, tid, nt, &n0, &n1);
        double *s1 = p.part1 + (size_t)tid * C, *s2 = p.part2 + (size_t)tid * C;
        memset(s1, 0, sizeof(double) * (size_t)C);
        memset(s2, 0, sizeof(double) * (size_t)C);
        stats_pass(r, s, x, shift, s1, s2, n0, n1);
#pragma omp barrier
#pragma omp for schedule(static)
        for (int c = 0; c < C; c++) {
            double sum = 0.0, sumsq = 0.0;
            for (int t = 0; t < nt; t++) { /* fixed thread order: deterministic */
                sum += p.part1[(size_t)t * C + c];
                sumsq += p.part2[(size_t)t * C + c];
            }
            const double m1 = sum / (double)count;
            double var = sumsq / (double)count - m1 * m1;
            if (var < 0.0) var = 0.0;
            const double mu = (double)shift[c] + m1;
            const double invstd = 1.0 / sqrt(var + (double)eps);
            if (save_mean) save_mean[c] = (float)mu;
            if (save_invstd) save_invstd[c] = (float)invstd;
            if (running_mean && running_var) {
                const double unbiased = count > 1 ? var * (double)count / (double)(count - 1) : var;
                running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mu);
                running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
            }
            mean[c] = (float)mu;
            scale[c] = (float)((gamma ? (double)gamma[c] : 1.0) * invstd);
            bias[c] = beta ? beta[c] : 0.0f;
        }
        for (int n = n0; n < n1; n++) norm_image(r, round, s, x, residual, mean, scale, bias, relu, y, y16, n);
    }
}

void st_bn_act_forward_train_stats(const st_bn_act_shape *s, const double *stats, const float *x, const float *gamma,
                                   const float *beta, const float *residual, int relu, float momentum, float eps,
                                   float *y, float *save_mean, float *save_invstd, float *running_mean,
                                   float *running_var) {
    st_bn_act_forward_train_stats_bf16(s, stats, x, gamma, beta, residual, relu, momentum, eps, y, NULL, save_mean,
                                       save_invstd, running_mean, running_var);
}

void st_bn_act_forward_train_stats_bf16(const st_bn_act_shape *s, const double *stats, const float *x,
                                        const float *gamma, const float *beta, const float *residual, int relu,
                                        float momentum, float eps, float *y, st_bf16 *y16, float *save_mean,
                                        float *save_invstd, float *running_mean, float *running_var) {
    ST_ASSERT(s->batch == 1 && s->block == 1);
    forward_train_channels(rows(), s, stats, x, gamma, beta, residual, relu, momentum, eps, y, y16, save_mean,
                           save_invstd, running_mean, running_var);
}

void st_bn_act_forward_eval(const st_bn_act_shape *s, const float *x, const float *gamma, const float *beta,
                            const float *running_mean, const float *running_var, float eps, const float *residual,
                            int relu, float *y, double *scratch) {
    st_bn_act_forward_eval_bf16(s, x, gamma, beta, running_mean, running_var, eps, residual, relu, y, NULL, scratch);
}

void st_bn_act_forward_eval_bf16(const st_bn_act_shape *s, const float *x, const float *gamma, const float *beta,
                                 const float *running_mean, const float *running_var, float eps,
                                 const float *residual, int relu, float *y, st_bf16 *y16, double *scratch) {
    const bn_act_rows *r = rows();
    const st_bf16_rounding round = rounding_for(y16, s);
    const int C = s->channels, S = s->spatial, B = s->block;
    ST_ASSERT(B >= 1 && B <= ST_BN_MAX_BLOCK && C % B == 0);
    channel_params p = carve_params(s, 1, scratch);
    float *mean = p.p0, *scale = p.p1, *bias = p.p2;
    for (int c = 0; c < C; c++) {
        const double invstd = 1.0 / sqrt((double)running_var[c] + (double)eps);
        mean[c] = running_mean[c];
        scale[c] = (float)((gamma ? (double)gamma[c] : 1.0) * invstd);
        bias[c] = beta ? beta[c] : 0.0f;
    }
    const int team = channel_major(s) ? 1 : team_size(s);
    if (channel_major(s)) {
#pragma omp parallel for schedule(static) num_threads(channel_team(s))
        for (int c = 0; c < C; c++) {
            const size_t o = (size_t)c * (size_t)S;
            plane_norm_out(r, round, x + o, residual ? residual + o : NULL, S, mean[c], scale[c], bias[c], relu, y + o,
                           y16 ? y16 + o : NULL);
        }
        return;
    }
#pragma omp parallel num_threads(team)
    {
        int n0, n1;
        image_block(s->batch, omp_get_thread_num(), omp_get_num_threads(), &n0, &n1);
        for (int n = n0; n < n1; n++) norm_image(r, round, s, x, residual, mean, scale, bias, relu, y, y16, n);
    }
}

void st_bn_act_backward(const st_bn_act_shape *s, const float *x, const float *y, int relu, const float *dy,
                        const float *gamma, const float *save_mean, const float *save_invstd, float *dx,
                        int dx_accumulate, float *dresidual, int dresidual_accumulate, float *dgamma, float *dbeta,
                        double *scratch) {
    st_bn_act_backward_bf16(s, x, y, relu, dy, gamma, save_mean, save_invstd, dx, NULL, dx_accumulate, dresidual,
                            dresidual_accumulate, dgamma, dbeta, scratch);
}

void st_bn_act_backward_bf16(const st_bn_act_shape *s, const float *x, const float *y, int relu, const float *dy,
                             const float *gamma, const float *save_mean, const float *save_invstd, float *dx,
                             st_bf16 *dx16, int dx_accumulate, float *dresidual, int dresidual_accumulate,
                             float *dgamma, float *dbeta, double *scratch) {
    const bn_act_rows *r = rows();
    ST_ASSERT(dx || !dx16 || !dx_accumulate); /* a gradient written only in bf16 cannot be added to */
    if (channel_major(s)) {
        backward_channels(r, s, NULL, x, y, relu, dy, gamma, save_mean, save_invstd, dx, dx16, dx_accumulate,
                          dresidual, dresidual_accumulate, dgamma, dbeta);
        return;
    }
    const st_bf16_rounding round = rounding_for(dx16, s);
    const int C = s->channels, S = s->spatial, B = s->block;
    ST_ASSERT(B >= 1 && B <= ST_BN_MAX_BLOCK && C % B == 0);
    const int64_t count = (int64_t)s->batch * S;
    const int team = team_size(s);
    channel_params p = carve_params(s, team, scratch);
    float *k = p.p0, *b = p.p1, *c0 = p.p2, *mean = p.p3;
    for (int c = 0; c < C; c++) mean[c] = save_mean[c];
#pragma omp parallel num_threads(team)
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        int n0, n1;
        image_block(s->batch, tid, nt, &n0, &n1);
        double *sg = p.part1 + (size_t)tid * C, *sgx = p.part2 + (size_t)tid * C;
        memset(sg, 0, sizeof(double) * (size_t)C);
        memset(sgx, 0, sizeof(double) * (size_t)C);
        for (int n = n0; n < n1; n++) {
            for (int c = 0; c < C; c += B) {
                const size_t o = plane_offset(s, n, c);
                if (B == 1)
                    r->plane_bwd_sums(x + o, relu ? y + o : NULL, dy + o, S, mean[c], relu, &sg[c], &sgx[c]);
                else
                    r->tile_bwd_sums(x + o, relu ? y + o : NULL, dy + o, S, B, mean + c, relu, sg + c, sgx + c);
            }
        }
#pragma omp barrier
#pragma omp for schedule(static)
        for (int c = 0; c < C; c++) {
            double sum_dy = 0.0, sum_dy_xmu = 0.0;
            for (int t = 0; t < nt; t++) {
                sum_dy += p.part1[(size_t)t * C + c];
                sum_dy_xmu += p.part2[(size_t)t * C + c];
            }
            const double invstd = save_invstd[c];
            if (dbeta) dbeta[c] += (float)sum_dy;
            if (dgamma) dgamma[c] += (float)(sum_dy_xmu * invstd);
            const double kk = (gamma ? (double)gamma[c] : 1.0) * invstd;
            k[c] = (float)kk;
            b[c] = (float)(kk * invstd * invstd * sum_dy_xmu / (double)count);
            c0[c] = (float)(-kk * sum_dy / (double)count);
        }
        if (dx || dx16) {
            for (int n = n0; n < n1; n++) {
                for (int c = 0; c < C; c += B) {
                    const size_t o = plane_offset(s, n, c);
                    const float *yo = relu ? y + o : NULL;
                    float *ro = dresidual ? dresidual + o : NULL;
                    if (B == 1)
                        plane_dx_out(r, round, x + o, yo, dy + o, S, mean[c], k[c], b[c], c0[c], relu,
                                     dx ? dx + o : NULL, dx16 ? dx16 + o : NULL, dx_accumulate, ro,
                                     dresidual_accumulate);
                    else
                        r->tile_bwd_dx(x + o, yo, dy + o, S, B, mean + c, k + c, b + c, c0 + c, relu, dx + o,
                                       dx_accumulate, ro, dresidual_accumulate);
                }
            }
        } else if (dresidual) {
            for (int n = n0; n < n1; n++) {
                const size_t o = plane_offset(s, n, 0), len = (size_t)C * S;
                r->add_act_bwd((int64_t)len, relu ? y + o : NULL, relu, dy + o, dresidual + o, dresidual_accumulate,
                               NULL, 0);
            }
        }
    }
}

void st_bn_act_backward_sums(const st_bn_act_shape *s, const double *sums, const float *x, const float *y, int relu,
                             const float *dy, const float *gamma, const float *save_mean, const float *save_invstd,
                             float *dx, int dx_accumulate, float *dresidual, int dresidual_accumulate, float *dgamma,
                             float *dbeta) {
    ST_ASSERT(s->batch == 1 && s->block == 1);
    backward_channels(rows(), s, sums, x, y, relu, dy, gamma, save_mean, save_invstd, dx, NULL, dx_accumulate,
                      dresidual, dresidual_accumulate, dgamma, dbeta);
}

/* Element ranges for add/relu: static blocks of whole 64-byte lines. */
static void element_block(int64_t n, int tid, int nt, int64_t *begin, int64_t *end) {
    const int64_t lines = (n + 15) / 16;
    *begin = lines * tid / nt * 16;
    *end = lines * (tid + 1) / nt * 16;
    if (*begin > n) *begin = n;
    if (*end > n) *end = n;
}

static int elementwise_team(int64_t n) {
    if (n < PARALLEL_MIN_ELEMENTS || omp_in_parallel()) return 1;
    return omp_get_max_threads();
}

void st_add_act_forward(int64_t n, const float *a, const float *b, int relu, float *y) {
    st_add_act_forward_bf16(n, a, b, relu, y, NULL);
}

void st_add_act_forward_bf16(int64_t n, const float *a, const float *b, int relu, float *y, st_bf16 *y16) {
    const bn_act_rows *r = rows();
    const st_bf16_rounding round = rounding_for(y16, NULL);
#pragma omp parallel num_threads(elementwise_team(n))
    {
        int64_t i0, i1;
        element_block(n, omp_get_thread_num(), omp_get_num_threads(), &i0, &i1);
        for (int64_t i = i0; i < i1 && y16; i += ROUND_PIECE) { /* with a bf16 copy: in pieces, each rounded in L1 */
            const int len = piece_length(i1, i);
            r->add_act(len, a + i, b ? b + i : NULL, relu, y + i);
            round(y + i, (size_t)len, y16 + i);
        }
        if (i1 > i0 && !y16) r->add_act(i1 - i0, a + i0, b ? b + i0 : NULL, relu, y + i0);
    }
}

void st_add_act_backward(int64_t n, const float *y, int relu, const float *dy, float *da, int da_accumulate, float *db,
                         int db_accumulate) {
    const bn_act_rows *r = rows();
    if (!da) { /* the kernel writes its first output unconditionally */
        da = db;
        da_accumulate = db_accumulate;
        db = NULL;
    }
    if (!da) return;
#pragma omp parallel num_threads(elementwise_team(n))
    {
        int64_t i0, i1;
        element_block(n, omp_get_thread_num(), omp_get_num_threads(), &i0, &i1);
        if (i1 > i0)
            r->add_act_bwd(i1 - i0, relu ? y + i0 : NULL, relu, dy + i0, da + i0, da_accumulate, db ? db + i0 : NULL,
                           db_accumulate);
    }
}

void st_bn_act_global_avgpool_forward(const st_bn_act_shape *s, const float *x, float *y) {
    const int C = s->channels, S = s->spatial, B = s->block;
    ST_ASSERT(B >= 1 && B <= ST_BN_MAX_BLOCK && C % B == 0);
    const double inv = 1.0 / (double)S;
#pragma omp parallel for schedule(static) num_threads(team_size(s))
    for (int n = 0; n < s->batch; n++) {
        for (int c0 = 0; c0 < C; c0 += B) {
            const float *t = x + plane_offset(s, n, c0);
            double sum[ST_BN_MAX_BLOCK] = {0};
            for (int p = 0; p < S; p++)
                for (int l = 0; l < B; l++) sum[l] += t[(size_t)p * B + l];
            for (int l = 0; l < B; l++) y[(size_t)n * C + c0 + l] = (float)(sum[l] * inv);
        }
    }
}

void st_bn_act_global_avgpool_backward(const st_bn_act_shape *s, const float *dy, float *dx, int dx_accumulate) {
    const int C = s->channels, S = s->spatial, B = s->block;
    ST_ASSERT(B >= 1 && B <= ST_BN_MAX_BLOCK && C % B == 0);
    const float inv = 1.0f / (float)S;
#pragma omp parallel for schedule(static) num_threads(team_size(s))
    for (int n = 0; n < s->batch; n++) {
        for (int c0 = 0; c0 < C; c0 += B) {
            float *restrict t = dx + plane_offset(s, n, c0);
            float g[ST_BN_MAX_BLOCK];
            for (int l = 0; l < B; l++) g[l] = dy[(size_t)n * C + c0 + l] * inv;
            for (int p = 0; p < S; p++)
                for (int l = 0; l < B; l++) {
                    float *d = &t[(size_t)p * B + l];
                    *d = dx_accumulate ? *d + g[l] : g[l];
                }
        }
    }
}
