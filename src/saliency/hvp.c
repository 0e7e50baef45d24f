/* Forward-over-reverse Hessian-vector products (see hvp.h). Every activation
 * x gets a tangent Rx = d x(w + t v)/dt at t = 0 in the forward pass, every
 * gradient dy a tangent Rdy in the backward pass; for a weight layer
 * y = f(x, W) the weight gradient's tangent R(dW) is the product H v. Linear
 * pieces reuse the model's layer kernels; batch norm and the loss have their
 * tangents written out below. Finite differences of gradients are no
 * substitute: a ReLU network's gradient jumps wherever the step flips a unit. */
#include "saliency/hvp.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "sparse/masks.h"

typedef struct engine {
    const st_model *m;
    int batch;
    int *layer_of_param;     /* param id -> prunable layer index, or -1 */
    const float **x;         /* activation values; x[0] = the images */
    float **rx, **dy, **rdy; /* tangents and gradients per activation (batch * size) */
    uint8_t *rzero;          /* 1: rx is identically zero (nothing upstream depends on w) */
    float **bn_mean, **bn_invstd; /* per op (batch norm) */
    double **bn_rmean, **bn_rinv; /* their tangents */
    int32_t **argmax;             /* per op (max pooling) */
    st_sparse_weight *dir;        /* per prunable layer: the direction as a weight (dense) */
    float *ws, *tmp, *sdw, *srdw;
} engine;

static int64_t act_size(const st_activation *a) { return (int64_t)a->channels * a->height * a->width; }

static void conv_shape(const engine *e, const st_op *op, st_conv2d_shape *s) {
    const st_activation *in = &e->m->acts[op->in];
    st_conv2d_shape_init(s, e->batch, in->channels, in->height, in->width, e->m->acts[op->out].channels, op->kernel,
                         op->stride, op->padding);
}

static void pool_shape(const engine *e, const st_op *op, st_pool_shape *s) {
    const st_activation *in = &e->m->acts[op->in];
    st_pool_shape_init(s, e->batch, in->channels, in->height, in->width, op->kernel, op->stride);
}

static void add_into(float *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

static void accumulate(double *acc, const float *v, int64_t n) {
    for (int64_t i = 0; i < n; i++) acc[i] += (double)v[i];
}

static void engine_free(engine *e) {
    const st_model *m = e->m;
    for (int i = 0; i < m->n_acts; i++) {
        if (i > 0 && e->x) free((void *)e->x[i]);
        if (e->rx) free(e->rx[i]);
        if (e->dy) free(e->dy[i]);
        if (e->rdy) free(e->rdy[i]);
    }
    for (int i = 0; i < m->n_ops; i++) {
        if (e->bn_mean) free(e->bn_mean[i]);
        if (e->bn_invstd) free(e->bn_invstd[i]);
        if (e->bn_rmean) free(e->bn_rmean[i]);
        if (e->bn_rinv) free(e->bn_rinv[i]);
        if (e->argmax) free(e->argmax[i]);
    }
    if (e->dir)
        for (int i = 0; i < m->n_params; i++) st_sparse_weight_release(&e->dir[i]);
    free(e->layer_of_param);
    free((void *)e->x);
    free(e->rx);
    free(e->dy);
    free(e->rdy);
    free(e->rzero);
    free(e->bn_mean);
    free(e->bn_invstd);
    free(e->bn_rmean);
    free(e->bn_rinv);
    free(e->argmax);
    free(e->dir);
    free(e->ws);
    free(e->tmp);
    free(e->sdw);
    free(e->srdw);
}

/* One allocation pass; every buffer the two sweeps need. */
static st_status engine_init(engine *e, const st_model *m, const float *images, int batch, float *const *direction) {
    memset(e, 0, sizeof *e);
    e->m = m;
    e->batch = batch;
    int na = m->n_acts, no = m->n_ops, np = m->n_params;
    e->layer_of_param = st_malloc(sizeof(int) * (size_t)np, "HVP layer map");
    e->x = st_calloc((size_t)na, sizeof(float *), "HVP activations");
    e->rx = st_calloc((size_t)na, sizeof(float *), "HVP activations");
    e->dy = st_calloc((size_t)na, sizeof(float *), "HVP activations");
    e->rdy = st_calloc((size_t)na, sizeof(float *), "HVP activations");
    e->rzero = st_calloc((size_t)na, 1, "HVP activations");
    e->bn_mean = st_calloc((size_t)no, sizeof(float *), "HVP batch norm");
    e->bn_invstd = st_calloc((size_t)no, sizeof(float *), "HVP batch norm");
    e->bn_rmean = st_calloc((size_t)no, sizeof(double *), "HVP batch norm");
    e->bn_rinv = st_calloc((size_t)no, sizeof(double *), "HVP batch norm");
    e->argmax = st_calloc((size_t)no, sizeof(int32_t *), "HVP pooling");
    e->dir = st_calloc((size_t)np, sizeof(st_sparse_weight), "HVP direction");
    if (!e->layer_of_param || !e->x || !e->rx || !e->dy || !e->rdy || !e->rzero || !e->bn_mean || !e->bn_invstd ||
        !e->bn_rmean || !e->bn_rinv || !e->argmax || !e->dir)
        return ST_ERR_NOMEM;
    for (int i = 0; i < np; i++) e->layer_of_param[i] = -1;
    for (int i = 0, l = 0; i < np; i++)
        if (m->params[i].sparse) e->layer_of_param[i] = l++;
    e->x[0] = images;
    e->rzero[0] = 1;
    int64_t largest_act = 0, largest_weight = 1;
    for (int i = 0; i < na; i++) {
        size_t n = (size_t)batch * (size_t)act_size(&m->acts[i]);
        if ((int64_t)n > largest_act) largest_act = (int64_t)n;
        if (i > 0) {
            e->x[i] = st_malloc(sizeof(float) * n, "HVP activations");
            if (!e->x[i]) return ST_ERR_NOMEM;
        }
        if (direction) {
            e->rx[i] = st_calloc(n, sizeof(float), "HVP tangents");
            if (!e->rx[i]) return ST_ERR_NOMEM;
        }
        /* gradients (dy, rdy) are allocated when first written in the backward sweep */
    }
    size_t ws = 1;
    int threads = omp_get_max_threads();
    for (int i = 0; i < no; i++) {
        const st_op *op = &m->ops[i];
        if (op->kind == ST_OP_CONV) {
            st_conv2d_shape s;
            conv_shape(e, op, &s);
            size_t need = st_conv2d_workspace_floats(&s, threads);
            if (need > ws) ws = need;
        } else if (op->kind == ST_OP_BATCHNORM) {
            int c = m->acts[op->in].channels;
            e->bn_mean[i] = st_malloc(sizeof(float) * (size_t)c, "HVP batch norm");
            e->bn_invstd[i] = st_malloc(sizeof(float) * (size_t)c, "HVP batch norm");
            e->bn_rmean[i] = st_calloc((size_t)c, sizeof(double), "HVP batch norm");
            e->bn_rinv[i] = st_calloc((size_t)c, sizeof(double), "HVP batch norm");
            if (!e->bn_mean[i] || !e->bn_invstd[i] || !e->bn_rmean[i] || !e->bn_rinv[i]) return ST_ERR_NOMEM;
        } else if (op->kind == ST_OP_MAXPOOL) {
            e->argmax[i] = st_malloc(sizeof(int32_t) * (size_t)batch * (size_t)act_size(&m->acts[op->out]), "HVP pooling");
            if (!e->argmax[i]) return ST_ERR_NOMEM;
        }
    }
    for (int i = 0; i < np; i++) {
        const st_param *p = &m->params[i];
        if (!p->sparse) continue;
        if (p->numel > largest_weight) largest_weight = p->numel;
        if (!direction) continue;
        ST_TRY(st_sparse_weight_init(&e->dir[i], p->sparse->rows, p->sparse->cols));
        memcpy(e->dir[i].values, direction[e->layer_of_param[i]], sizeof(float) * (size_t)p->numel);
    }
    e->ws = st_malloc(sizeof(float) * ws, "HVP workspace");
    e->tmp = st_malloc(sizeof(float) * (size_t)largest_act, "HVP workspace");
    e->sdw = st_malloc(sizeof(float) * (size_t)largest_weight, "HVP workspace");
    e->srdw = st_malloc(sizeof(float) * (size_t)largest_weight, "HVP workspace");
    if (!e->ws || !e->tmp || !e->sdw || !e->srdw) return ST_ERR_NOMEM;
    return ST_OK;
}

/* Tangent of training-mode batch norm (gamma, beta fixed): with
 * xhat = (x - mean) * invstd, mean' = mean(Rx), var' = 2 mean((x - mean) Rx),
 * invstd' = -invstd^3 var' / 2 and Ry = gamma * ((Rx - mean') invstd + (x - mean) invstd'). */
static void batchnorm_tangent(const st_batchnorm_shape *s, const float *x, const float *rx, const float *gamma,
                              const float *mean, const float *invstd, double *rmean, double *rinv, float *ry) {
    const size_t plane = (size_t)s->channels * s->spatial;
    const double count = (double)s->batch * s->spatial;
    for (int c = 0; c < s->channels; c++) {
        double mu = mean[c], inv = invstd[c], sum_r = 0, sum_xr = 0;
        for (int n = 0; n < s->batch; n++)
            for (int i = 0; i < s->spatial; i++) {
                size_t k = (size_t)n * plane + (size_t)c * s->spatial + i;
                sum_r += rx[k];
                sum_xr += ((double)x[k] - mu) * rx[k];
            }
        double rm = sum_r / count, rvar = 2 * sum_xr / count, ri = -0.5 * inv * inv * inv * rvar;
        double g = gamma ? gamma[c] : 1.0;
        rmean[c] = rm;
        rinv[c] = ri;
        for (int n = 0; n < s->batch; n++)
            for (int i = 0; i < s->spatial; i++) {
                size_t k = (size_t)n * plane + (size_t)c * s->spatial + i;
                ry[k] = (float)(g * (((double)rx[k] - rm) * inv + ((double)x[k] - mu) * ri));
            }
    }
}

/* Tangent of batch norm's input gradient dx = gamma invstd (dy - A - xhat B),
 * A = mean(dy), B = mean(dy xhat):
 * R(dx) = gamma [invstd' (dy - A - xhat B) + invstd (Rdy - A' - Rxhat B - xhat B')]. */
static void batchnorm_backward_tangent(const st_batchnorm_shape *s, const float *x, const float *rx,
                                       const float *gamma, const float *mean, const float *invstd, const double *rmean,
                                       const double *rinv, const float *dy, const float *rdy, float *rdx) {
    const size_t plane = (size_t)s->channels * s->spatial;
    const double count = (double)s->batch * s->spatial;
    for (int c = 0; c < s->channels; c++) {
        double mu = mean[c], inv = invstd[c], rm = rmean[c], ri = rinv[c], g = gamma ? gamma[c] : 1.0;
        double a = 0, b = 0, ra = 0, rb = 0;
        for (int n = 0; n < s->batch; n++)
            for (int i = 0; i < s->spatial; i++) {
                size_t k = (size_t)n * plane + (size_t)c * s->spatial + i;
                double xhat = ((double)x[k] - mu) * inv;
                double rxhat = ((double)rx[k] - rm) * inv + ((double)x[k] - mu) * ri;
                a += dy[k];
                b += dy[k] * xhat;
                ra += rdy[k];
                rb += rdy[k] * xhat + dy[k] * rxhat;
            }
        a /= count, b /= count, ra /= count, rb /= count;
        for (int n = 0; n < s->batch; n++)
            for (int i = 0; i < s->spatial; i++) {
                size_t k = (size_t)n * plane + (size_t)c * s->spatial + i;
                double xhat = ((double)x[k] - mu) * inv;
                double rxhat = ((double)rx[k] - rm) * inv + ((double)x[k] - mu) * ri;
                rdx[k] += (float)(g * (ri * (dy[k] - a - xhat * b) + inv * (rdy[k] - ra - rxhat * b - xhat * rb)));
            }
    }
}

static void forward(engine *e, int tangents) {
    const st_model *m = e->m;
    const int B = e->batch;
    for (int i = 0; i < m->n_ops; i++) {
        const st_op *op = &m->ops[i];
        const st_activation *in = &m->acts[op->in];
        float *y = (float *)e->x[op->out], *ry = tangents ? e->rx[op->out] : NULL;
        const float *x = e->x[op->in], *rx = tangents ? e->rx[op->in] : NULL;
        int64_t n_out = (int64_t)B * act_size(&m->acts[op->out]);
        if (tangents) e->rzero[op->out] = e->rzero[op->in];
        switch (op->kind) {
        case ST_OP_CONV:
        case ST_OP_LINEAR: {
            const st_sparse_weight *w = m->params[op->weight].sparse, *v = &e->dir[op->weight];
            const float *bias = op->bias >= 0 ? m->params[op->bias].value : NULL;
            st_conv2d_shape s;
            if (op->kind == ST_OP_CONV) {
                conv_shape(e, op, &s);
                st_conv2d_forward(&s, x, w, bias, y, e->ws);
            } else {
                st_linear_forward(B, x, w, bias, y);
            }
            if (!tangents) break;
            /* R(W x + b) = V x + W Rx */
            if (op->kind == ST_OP_CONV)
                st_conv2d_forward(&s, x, v, NULL, ry, e->ws);
            else
                st_linear_forward(B, x, v, NULL, ry);
            if (!e->rzero[op->in]) {
                if (op->kind == ST_OP_CONV)
                    st_conv2d_forward(&s, rx, w, NULL, e->tmp, e->ws);
                else
                    st_linear_forward(B, rx, w, NULL, e->tmp);
                add_into(ry, e->tmp, n_out);
            }
            e->rzero[op->out] = 0;
            break;
        }
        case ST_OP_BATCHNORM: {
            st_batchnorm_shape s = {B, in->channels, in->height * in->width, 0.1f, 1e-5f};
            const float *gamma = m->params[op->weight].value, *beta = m->params[op->bias].value;
            st_batchnorm_forward_train(&s, x, gamma, beta, y, e->bn_mean[i], e->bn_invstd[i], NULL, NULL);
            if (tangents)
                batchnorm_tangent(&s, x, rx, gamma, e->bn_mean[i], e->bn_invstd[i], e->bn_rmean[i], e->bn_rinv[i], ry);
            break;
        }
        case ST_OP_RELU:
            st_relu_forward(n_out, x, y);
            if (tangents)
                for (int64_t k = 0; k < n_out; k++) ry[k] = y[k] > 0.0f ? rx[k] : 0.0f;
            break;
        case ST_OP_MAXPOOL: {
            st_pool_shape s;
            pool_shape(e, op, &s);
            st_maxpool_forward(&s, x, y, e->argmax[i]);
            if (!tangents) break;
            size_t in_plane = (size_t)s.in_h * s.in_w, out_plane = (size_t)s.out_h * s.out_w;
            for (int64_t p = 0; p < (int64_t)B * s.channels; p++)
                for (size_t o = 0; o < out_plane; o++)
                    ry[(size_t)p * out_plane + o] = rx[(size_t)p * in_plane + (size_t)e->argmax[i][(size_t)p * out_plane + o]];
            break;
        }
        case ST_OP_AVGPOOL: {
            st_pool_shape s;
            pool_shape(e, op, &s);
            st_avgpool_forward(&s, x, y);
            if (tangents) st_avgpool_forward(&s, rx, ry);
            break;
        }
        case ST_OP_GLOBAL_AVGPOOL:
            st_global_avgpool_forward(B, in->channels, in->height * in->width, x, y);
            if (tangents) st_global_avgpool_forward(B, in->channels, in->height * in->width, rx, ry);
            break;
        case ST_OP_ADD:
            st_add_forward(n_out, x, e->x[op->in2], y);
            if (tangents) {
                st_add_forward(n_out, rx, e->rx[op->in2], ry);
                e->rzero[op->out] = e->rzero[op->in] && e->rzero[op->in2];
            }
            break;
        case ST_OP_FLATTEN:
            memcpy(y, x, sizeof(float) * (size_t)n_out);
            if (tangents) memcpy(ry, rx, sizeof(float) * (size_t)n_out);
            break;
        }
    }
}

/* d/dz of mean NLL(log_softmax(s z)) and its tangent, into dy/rdy of the logits. */
static st_status gradient_buffers(engine *e, int act, int tangents) {
    size_t n = (size_t)e->batch * (size_t)act_size(&e->m->acts[act]);
    if (!e->dy[act] && !(e->dy[act] = st_calloc(n, sizeof(float), "HVP gradients"))) return ST_ERR_NOMEM;
    if (tangents && !e->rdy[act] && !(e->rdy[act] = st_calloc(n, sizeof(float), "HVP tangents")))
        return ST_ERR_NOMEM;
    return ST_OK;
}

static st_status loss_gradient(engine *e, const int32_t *labels, double scale, int tangents) {
    const st_model *m = e->m;
    int last = m->n_acts - 1, K = m->num_classes, B = e->batch;
    const float *z = e->x[last];
    ST_TRY(gradient_buffers(e, last, tangents));
    for (int n = 0; n < B; n++) {
        const float *zn = z + (size_t)n * K;
        double max = -INFINITY, sum = 0, rdot = 0;
        for (int k = 0; k < K; k++)
            if (scale * zn[k] > max) max = scale * zn[k];
        for (int k = 0; k < K; k++) sum += exp(scale * zn[k] - max);
        for (int k = 0; k < K; k++) {
            double pk = exp(scale * zn[k] - max) / sum;
            if (tangents) rdot += pk * scale * e->rx[last][(size_t)n * K + k];
            e->dy[last][(size_t)n * K + k] = (float)(scale * (pk - (k == labels[n])) / B);
        }
        if (!tangents) continue;
        for (int k = 0; k < K; k++) {
            double pk = exp(scale * zn[k] - max) / sum;
            double rp = pk * (scale * e->rx[last][(size_t)n * K + k] - rdot);
            e->rdy[last][(size_t)n * K + k] = (float)(scale * rp / B);
        }
    }
    return ST_OK;
}

/* Walks the ops backwards; an activation's gradient buffers live from the
 * first consumer's backward to its producer's, which keeps the peak memory
 * near the forward pass's (values + tangents) instead of twice that. */
static st_status backward(engine *e, int tangents, double *const *grad, double *const *hvp) {
    const st_model *m = e->m;
    const int B = e->batch;
    for (int i = m->n_ops - 1; i >= 0; i--) {
        const st_op *op = &m->ops[i];
        const st_activation *in = &m->acts[op->in];
        ST_TRY(gradient_buffers(e, op->out, tangents)); /* (zeros if nothing consumed it) */
        if (op->in != 0) ST_TRY(gradient_buffers(e, op->in, tangents));
        if (op->kind == ST_OP_ADD && op->in2 != 0) ST_TRY(gradient_buffers(e, op->in2, tangents));
        const float *x = e->x[op->in], *rx = tangents ? e->rx[op->in] : NULL;
        const float *dy = e->dy[op->out], *rdy = tangents ? e->rdy[op->out] : NULL;
        float *dx = op->in == 0 ? NULL : e->dy[op->in]; /* no gradient w.r.t. the images */
        float *rdx = op->in == 0 || !tangents ? NULL : e->rdy[op->in];
        int64_t n_out = (int64_t)B * act_size(&m->acts[op->out]);
        switch (op->kind) {
        case ST_OP_CONV:
        case ST_OP_LINEAR: {
            const st_sparse_weight *w = m->params[op->weight].sparse, *v = &e->dir[op->weight];
            int l = e->layer_of_param[op->weight];
            int64_t numel = m->params[op->weight].numel;
            st_conv2d_shape s;
            if (op->kind == ST_OP_CONV) conv_shape(e, op, &s);
            float *sdw = grad ? e->sdw : NULL;
            if (sdw) memset(sdw, 0, sizeof(float) * (size_t)numel);
            /* dx += W^T dy, dW = dy x^T */
            if (dx || sdw) {
                if (op->kind == ST_OP_CONV)
                    st_conv2d_backward(&s, x, w, dy, dx, sdw, NULL, e->ws);
                else
                    st_linear_backward(B, x, w, dy, dx, sdw, NULL);
            }
            if (sdw) accumulate(grad[l], sdw, numel);
            if (!tangents) break;
            /* R(dx) = W^T Rdy + V^T dy, R(dW) = Rdy x^T + dy Rx^T */
            memset(e->srdw, 0, sizeof(float) * (size_t)numel);
            if (op->kind == ST_OP_CONV) {
                st_conv2d_backward(&s, x, w, rdy, rdx, e->srdw, NULL, e->ws);
                if (rdx || !e->rzero[op->in])
                    st_conv2d_backward(&s, rx, v, dy, rdx, e->rzero[op->in] ? NULL : e->srdw, NULL, e->ws);
            } else {
                st_linear_backward(B, x, w, rdy, rdx, e->srdw, NULL);
                if (rdx || !e->rzero[op->in])
                    st_linear_backward(B, rx, v, dy, rdx, e->rzero[op->in] ? NULL : e->srdw, NULL);
            }
            if (hvp) accumulate(hvp[l], e->srdw, numel);
            break;
        }
        case ST_OP_BATCHNORM: {
            st_batchnorm_shape s = {B, in->channels, in->height * in->width, 0.1f, 1e-5f};
            const float *gamma = m->params[op->weight].value;
            if (dx) st_batchnorm_backward(&s, x, gamma, e->bn_mean[i], e->bn_invstd[i], dy, dx, NULL, NULL);
            if (rdx)
                batchnorm_backward_tangent(&s, x, rx, gamma, e->bn_mean[i], e->bn_invstd[i], e->bn_rmean[i],
                                           e->bn_rinv[i], dy, rdy, rdx);
            break;
        }
        case ST_OP_RELU: /* relu'' = 0: the tangent flows through the same gate */
            if (dx) st_relu_backward(n_out, e->x[op->out], dy, dx);
            if (rdx) st_relu_backward(n_out, e->x[op->out], rdy, rdx);
            break;
        case ST_OP_MAXPOOL: {
            st_pool_shape s;
            pool_shape(e, op, &s);
            if (dx) st_maxpool_backward(&s, e->argmax[i], dy, dx);
            if (rdx) st_maxpool_backward(&s, e->argmax[i], rdy, rdx);
            break;
        }
        case ST_OP_AVGPOOL: {
            st_pool_shape s;
            pool_shape(e, op, &s);
            if (dx) st_avgpool_backward(&s, dy, dx);
            if (rdx) st_avgpool_backward(&s, rdy, rdx);
            break;
        }
        case ST_OP_GLOBAL_AVGPOOL:
            if (dx) st_global_avgpool_backward(B, in->channels, in->height * in->width, dy, dx);
            if (rdx) st_global_avgpool_backward(B, in->channels, in->height * in->width, rdy, rdx);
            break;
        case ST_OP_ADD:
            if (dx) add_into(dx, dy, n_out);
            if (op->in2 != 0) add_into(e->dy[op->in2], dy, n_out);
            if (rdx) add_into(rdx, rdy, n_out);
            if (tangents && op->in2 != 0) add_into(e->rdy[op->in2], rdy, n_out);
            break;
        case ST_OP_FLATTEN:
            if (dx) add_into(dx, dy, n_out);
            if (rdx) add_into(rdx, rdy, n_out);
            break;
        }
        free(e->dy[op->out]); /* fully consumed: its only producer is done */
        free(e->rdy[op->out]);
        e->dy[op->out] = e->rdy[op->out] = NULL;
    }
    return ST_OK;
}

st_status st_model_loss_hvp(const st_model *m, const float *images, const int32_t *labels, int batch,
                            double logit_scale, float *const *direction, double *const *grad, double *const *hvp) {
    if (batch <= 0) return st_fail(ST_ERR_ARGUMENT, "Hessian-vector product: empty batch");
    if (hvp && !direction) return st_fail(ST_ERR_ARGUMENT, "Hessian-vector product: no direction given");
    for (int n = 0; n < batch; n++)
        if (labels[n] < 0 || labels[n] >= m->num_classes)
            return st_fail(ST_ERR_ARGUMENT, "label %d of image %d is outside [0, %d)", (int)labels[n], n,
                           m->num_classes);
    if (m->acts[m->n_acts - 1].channels != m->num_classes)
        return st_fail(ST_ERR_ARGUMENT, "model %s: the last activation is not the logits", m->name);
    engine e;
    st_status s = engine_init(&e, m, images, batch, hvp ? direction : NULL);
    if (s == ST_OK) {
        int tangents = hvp != NULL;
        forward(&e, tangents);
        s = loss_gradient(&e, labels, logit_scale, tangents);
        if (s == ST_OK) s = backward(&e, tangents, grad, hvp);
    }
    engine_free(&e);
    return s;
}
