/* oneDNN convolution plans (see conv_onednn.h). Weights cross the API as
 * plain OIHW, activations in the layout the caller names; each primitive is
 * created with format "any" so oneDNN chooses its fastest layout, and a
 * reorder primitive bridges the two where they differ. All memory comes from
 * the caller's workspace (user scratchpad mode): no allocation per call. */
#include "kernels/conv_onednn.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/runtime.h"
#include "core/status.h"

#ifndef ST_HAVE_ONEDNN

int st_onednn_available(void) { return 0; }
st_status st_onednn_conv_create(int batch, int in_c, int in_h, int in_w, int out_c, int kernel, int stride,
                                int padding, int has_bias, int x_block, int y_block, st_onednn_conv **out) {
    (void)batch, (void)in_c, (void)in_h, (void)in_w, (void)out_c, (void)kernel, (void)stride, (void)padding;
    (void)has_bias, (void)x_block, (void)y_block;
    *out = NULL;
    return st_fail(ST_ERR_ARGUMENT, "built without oneDNN (install libdnnl-dev and reconfigure)");
}
void st_onednn_conv_free(st_onednn_conv *c) { (void)c; }
int st_onednn_conv_output_block(const st_onednn_conv *c) { (void)c; return 1; }
size_t st_onednn_conv_workspace_floats(const st_onednn_conv *c) { (void)c; return 0; }
const char *st_onednn_conv_implementation(const st_onednn_conv *c, int which) {
    (void)c, (void)which;
    return "none";
}
st_status st_onednn_conv_forward(st_onednn_conv *c, const float *x, const float *w, const float *bias, float *y,
                                 float *workspace) {
    (void)c, (void)x, (void)w, (void)bias, (void)y, (void)workspace;
    return st_fail(ST_ERR_ARGUMENT, "built without oneDNN");
}
st_status st_onednn_conv_backward(st_onednn_conv *c, const float *x, const float *w, const float *dy, float *dx,
                                  int dx_accumulate, float *dw, float *workspace) {
    (void)c, (void)x, (void)w, (void)dy, (void)dx, (void)dx_accumulate, (void)dw, (void)workspace;
    return st_fail(ST_ERR_ARGUMENT, "built without oneDNN");
}

#else

#include <oneapi/dnnl/dnnl.h>

#if DNNL_VERSION_MAJOR != 2
#error "conv_onednn.c is written against the oneDNN 2.x C API (Debian bookworm: libdnnl-dev 2.6)"
#endif

#define ALIGN_BYTES 64

/* One reorder from a plain/blocked layout to another. `sum` makes it
 * accumulate (to += reorder(from)) instead of overwrite. */
typedef struct reorder {
    dnnl_primitive_t prim; /* NULL when from and to have the same layout */
    dnnl_memory_t from, to;
} reorder;

/* One convolution primitive with its three tensor arguments. */
typedef struct conv_primitive {
    dnnl_primitive_t prim;
    dnnl_memory_t arg[3], scratchpad;
    int arg_kind[3];
    size_t scratch_offset; /* bytes into the workspace */
    char impl[64];
} conv_primitive;

struct st_onednn_conv {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int has_bias;
    dnnl_memory_t bias;
    /* forward: x -> xf (fwd src layout), w -> wf, conv -> yf, yf -> y */
    conv_primitive fwd;
    reorder fwd_x, fwd_w, fwd_y;
    size_t off_xf, off_wf, off_yf; /* byte offsets; SIZE_MAX = use the caller's array */
    /* backward data: dy -> dyd, w -> wd, conv -> dxd, dx += dxd */
    conv_primitive bwd_data;
    reorder bd_dy, bd_w, bd_dx_add, bd_dx_set; /* dx += / dx = the blocked result */
    size_t off_dyd, off_wd, off_dxd;
    /* backward weights: x -> xw, dy -> dyw, conv -> dww, dww -> dw */
    conv_primitive bwd_weights;
    reorder bw_x, bw_dy, bw_dw;
    size_t off_xw, off_dyw, off_dww;
    int shared_dy; /* backward weights reads backward data's copy of dy */
    int y_block;   /* layout of y / dy: 1 = NCHW, B = nChwBc */
    size_t workspace_bytes;
};

static st_status dnnl_check(dnnl_status_t s, const char *what) {
    if (s == dnnl_success) return ST_OK;
    return st_fail(ST_ERR_ARGUMENT, "oneDNN: %s failed (status %d)", what, (int)s);
}
#define DNNL_TRY(call) ST_TRY(dnnl_check((call), #call))

static size_t align_up(size_t n) { return (n + ALIGN_BYTES - 1) & ~(size_t)(ALIGN_BYTES - 1); }

/* Reserves `bytes` at the end of a running layout and returns their offset. */
static size_t carve(size_t *end, size_t bytes) {
    size_t at = *end;
    *end = align_up(at + bytes);
    return at;
}

static st_status make_reorder(st_onednn_conv *c, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                              int sum, reorder *r) {
    memset(r, 0, sizeof *r);
    if (!sum && dnnl_memory_desc_equal(from, to)) return ST_OK;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    st_status s = dnnl_check(dnnl_primitive_attr_create(&attr), "attr create");
    if (s == ST_OK && sum) {
        s = dnnl_check(dnnl_post_ops_create(&ops), "post_ops create");
        if (s == ST_OK) s = dnnl_check(dnnl_post_ops_append_sum(ops, 1.0f), "append sum");
        if (s == ST_OK) s = dnnl_check(dnnl_primitive_attr_set_post_ops(attr, ops), "set post_ops");
    }
    if (s == ST_OK)
        s = dnnl_check(dnnl_reorder_primitive_desc_create(&pd, from, c->engine, to, c->engine, attr), "reorder pd");
    if (s == ST_OK) s = dnnl_check(dnnl_primitive_create(&r->prim, pd), "reorder create");
    if (s == ST_OK) s = dnnl_check(dnnl_memory_create(&r->from, from, c->engine, DNNL_MEMORY_NONE), "memory");
    if (s == ST_OK) s = dnnl_check(dnnl_memory_create(&r->to, to, c->engine, DNNL_MEMORY_NONE), "memory");
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return s;
}

static void free_reorder(reorder *r) {
    if (r->prim) dnnl_primitive_destroy(r->prim);
    if (r->from) dnnl_memory_destroy(r->from);
    if (r->to) dnnl_memory_destroy(r->to);
}

static st_status run_reorder(st_onednn_conv *c, reorder *r, const void *from, void *to) {
    if (!r->prim) return ST_OK;
    DNNL_TRY(dnnl_memory_set_data_handle(r->from, (void *)from));
    DNNL_TRY(dnnl_memory_set_data_handle(r->to, to));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, r->from}, {DNNL_ARG_TO, r->to}};
    DNNL_TRY(dnnl_primitive_execute(r->prim, c->stream, 2, args));
    return ST_OK;
}

/* Creates the primitive of `pd` with memory objects for its three tensor
 * arguments (descriptors queried from pd) and a scratchpad carved from the
 * workspace layout. */
static st_status make_conv(st_onednn_conv *c, dnnl_primitive_desc_t pd, const int kinds[3], const dnnl_query_t q[3],
                           size_t *end, conv_primitive *p) {
    memset(p, 0, sizeof *p);
    DNNL_TRY(dnnl_primitive_create(&p->prim, pd));
    for (int i = 0; i < 3; i++) {
        p->arg_kind[i] = kinds[i];
        DNNL_TRY(dnnl_memory_create(&p->arg[i], dnnl_primitive_desc_query_md(pd, q[i], 0), c->engine,
                                    DNNL_MEMORY_NONE));
    }
    const dnnl_memory_desc_t *scratch = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (scratch && dnnl_memory_desc_get_size(scratch) > 0) {
        DNNL_TRY(dnnl_memory_create(&p->scratchpad, scratch, c->engine, DNNL_MEMORY_NONE));
        p->scratch_offset = carve(end, dnnl_memory_desc_get_size(scratch));
    }
    const char *impl = "unknown";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    snprintf(p->impl, sizeof p->impl, "%s", impl);
    return ST_OK;
}

static void free_conv(conv_primitive *p) {
    if (p->prim) dnnl_primitive_destroy(p->prim);
    for (int i = 0; i < 3; i++)
        if (p->arg[i]) dnnl_memory_destroy(p->arg[i]);
    if (p->scratchpad) dnnl_memory_destroy(p->scratchpad);
}

static st_status run_conv(st_onednn_conv *c, conv_primitive *p, void *a0, void *a1, void *a2, char *base,
                          dnnl_memory_t extra, int extra_kind) {
    void *ptr[3] = {a0, a1, a2};
    dnnl_exec_arg_t args[5];
    int n = 0;
    for (int i = 0; i < 3; i++) {
        DNNL_TRY(dnnl_memory_set_data_handle(p->arg[i], ptr[i]));
        args[n++] = (dnnl_exec_arg_t){p->arg_kind[i], p->arg[i]};
    }
    if (p->scratchpad) {
        DNNL_TRY(dnnl_memory_set_data_handle(p->scratchpad, base + p->scratch_offset));
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratchpad};
    }
    if (extra) args[n++] = (dnnl_exec_arg_t){extra_kind, extra};
    DNNL_TRY(dnnl_primitive_execute(p->prim, c->stream, n, args));
    return ST_OK;
}

/* Offset of a blocked copy of a tensor, or SIZE_MAX when the reorder is a no-op
 * and the caller's plain array is used directly. */
static size_t blocked_copy(const reorder *r, const dnnl_memory_desc_t *md, size_t *end) {
    return r->prim ? carve(end, dnnl_memory_desc_get_size(md)) : SIZE_MAX;
}

int st_onednn_available(void) { return 1; }

/* Activation descriptor: NCHW (block 1) or nChw8c / nChw16c. */
static st_status activation_md(dnnl_memory_desc_t *md, const dnnl_dims_t dims, int block) {
    const dnnl_format_tag_t tag = block == 1 ? dnnl_nchw : block == 8 ? dnnl_nChw8c : block == 16 ? dnnl_nChw16c
                                                                                                  : dnnl_format_tag_undef;
    if (tag == dnnl_format_tag_undef || dims[1] % block != 0)
        return st_fail(ST_ERR_ARGUMENT, "oneDNN: no activation layout with channel blocks of %d for %lld channels",
                       block, (long long)dims[1]);
    return dnnl_check(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, tag), "activation layout");
}

/* The block of `md` if it is one of activation_md's layouts for these dims, else 0. */
static int block_of(const dnnl_memory_desc_t *md, const dnnl_dims_t dims) {
    static const int blocks[] = {1, 8, 16};
    for (int i = 0; i < 3; i++) {
        dnnl_memory_desc_t candidate;
        if (dims[1] % blocks[i] == 0 && activation_md(&candidate, dims, blocks[i]) == ST_OK &&
            dnnl_memory_desc_equal(md, &candidate))
            return blocks[i];
    }
    return 0;
}

/* st_runtime.winograd (the CLI: ST_CONV2D_ALGORITHM=winograd) turns Winograd on. It is off by default: it
 * trains ~8 % faster here, but its rounding differs from direct convolution
 * (~1e-6 relative per layer, amplified ~300x through ReLU and batch norm in
 * an ill-conditioned sparse network) and PyTorch uses direct convolution. */
static int winograd_requested(void) { return st_runtime_get()->winograd; }

static st_status create(st_onednn_conv *c, int batch, int in_c, int in_h, int in_w, int out_c, int kernel,
                        int stride, int padding, int x_block, int y_block) {
    const int out_h = (in_h + 2 * padding - kernel) / stride + 1;
    const int out_w = (in_w + 2 * padding - kernel) / stride + 1;
    dnnl_dims_t x_dims = {batch, in_c, in_h, in_w}, w_dims = {out_c, in_c, kernel, kernel};
    dnnl_dims_t y_dims = {batch, out_c, out_h, out_w}, b_dims = {out_c};
    dnnl_dims_t strides = {stride, stride}, pad_l = {padding, padding};
    /* oneDNN wants the right/bottom padding that makes the output size exact */
    dnnl_dims_t pad_r = {(out_h - 1) * stride + kernel - in_h - padding, (out_w - 1) * stride + kernel - in_w - padding};
    dnnl_memory_desc_t x_md, w_md, y_md, b_md, x_any, w_any, y_any;
    ST_TRY(activation_md(&x_md, x_dims, x_block));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&w_md, 4, w_dims, dnnl_f32, dnnl_oihw));
    if (y_block > 0) ST_TRY(activation_md(&y_md, y_dims, y_block));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&b_md, 1, b_dims, dnnl_f32, dnnl_x));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&x_any, 4, x_dims, dnnl_f32, dnnl_format_tag_any));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&w_any, 4, w_dims, dnnl_f32, dnnl_format_tag_any));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&y_any, 4, y_dims, dnnl_f32, dnnl_format_tag_any));
    DNNL_TRY(dnnl_engine_create(&c->engine, dnnl_cpu, 0));
    DNNL_TRY(dnnl_stream_create(&c->stream, c->engine, dnnl_stream_default_flags));
    if (c->has_bias) DNNL_TRY(dnnl_memory_create(&c->bias, &b_md, c->engine, DNNL_MEMORY_NONE));

    dnnl_primitive_attr_t attr;
    DNNL_TRY(dnnl_primitive_attr_create(&attr));
    st_status s = dnnl_check(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "scratchpad");
    dnnl_primitive_desc_t fpd = NULL, dpd = NULL, wpd = NULL;
    dnnl_convolution_desc_t fd, dd, wd;
    /* Direct convolution; on request Winograd F(4x4, 3x3) for the primitives
     * where it measured faster (docs/PERFORMANCE.md), direct wherever oneDNN
     * has no Winograd kernel for this CPU or shape. The choice depends on the
     * shape and the CPU only, never on timings, so results stay reproducible. */
    const int wino_shape = kernel == 3 && stride == 1 && winograd_requested();
    const dnnl_alg_kind_t alg_fwd = wino_shape && in_c >= 32 && out_c >= 32 ? dnnl_convolution_winograd
                                                                             : dnnl_convolution_direct;
    const dnnl_alg_kind_t alg_bwd_weights = wino_shape && in_c >= 16 && out_c >= 16 ? dnnl_convolution_winograd
                                                                                      : dnnl_convolution_direct;
    for (int attempt = 0; s == ST_OK && attempt < 2 && !fpd; attempt++) {
        const dnnl_alg_kind_t alg = attempt == 0 ? alg_fwd : dnnl_convolution_direct;
        s = dnnl_check(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, alg, &x_any, &w_any,
                                                          c->has_bias ? &b_md : NULL, &y_any, strides, pad_l, pad_r),
                       "forward desc");
        if (s == ST_OK && dnnl_primitive_desc_create(&fpd, &fd, attr, c->engine, NULL) != dnnl_success) fpd = NULL;
    }
    if (s == ST_OK && !fpd) s = st_fail(ST_ERR_ARGUMENT, "oneDNN: no forward convolution implementation");
    for (int attempt = 0; s == ST_OK && attempt < 2 && !dpd; attempt++) {
        const dnnl_alg_kind_t alg = attempt == 0 ? alg_fwd : dnnl_convolution_direct;
        s = dnnl_check(dnnl_convolution_backward_data_desc_init(&dd, alg, &x_any, &w_any, &y_any, strides, pad_l,
                                                                pad_r),
                       "backward data desc");
        if (s == ST_OK && dnnl_primitive_desc_create(&dpd, &dd, attr, c->engine, fpd) != dnnl_success) dpd = NULL;
    }
    if (s == ST_OK && !dpd) s = st_fail(ST_ERR_ARGUMENT, "oneDNN: no backward-data convolution implementation");
    for (int attempt = 0; s == ST_OK && attempt < 2 && !wpd; attempt++) {
        const dnnl_alg_kind_t alg = attempt == 0 ? alg_bwd_weights : dnnl_convolution_direct;
        s = dnnl_check(dnnl_convolution_backward_weights_desc_init(&wd, alg, &x_any, &w_any, NULL, &y_any, strides,
                                                                   pad_l, pad_r),
                       "backward weights desc");
        if (s == ST_OK && dnnl_primitive_desc_create(&wpd, &wd, attr, c->engine, fpd) != dnnl_success) wpd = NULL;
    }
    if (s == ST_OK && !wpd) s = st_fail(ST_ERR_ARGUMENT, "oneDNN: no backward-weights convolution implementation");

    size_t fwd_end = 0, bwd_end = 0;
    if (s == ST_OK) {
        const int kinds[3] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST};
        const dnnl_query_t q[3] = {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md};
        const dnnl_memory_desc_t *src = dnnl_primitive_desc_query_md(fpd, q[0], 0);
        const dnnl_memory_desc_t *wei = dnnl_primitive_desc_query_md(fpd, q[1], 0);
        const dnnl_memory_desc_t *dst = dnnl_primitive_desc_query_md(fpd, q[2], 0);
        if (y_block <= 0) { /* the caller takes the primitive's choice if it is a plain or blocked layout */
            y_block = block_of(dst, y_dims);
            if (y_block == 0) y_block = 1;
            s = activation_md(&y_md, y_dims, y_block);
        }
        c->y_block = y_block;
        if (s == ST_OK) s = make_reorder(c, &x_md, src, 0, &c->fwd_x);
        if (s == ST_OK) s = make_reorder(c, &w_md, wei, 0, &c->fwd_w);
        if (s == ST_OK) s = make_reorder(c, dst, &y_md, 0, &c->fwd_y);
        c->off_xf = blocked_copy(&c->fwd_x, src, &fwd_end);
        c->off_wf = blocked_copy(&c->fwd_w, wei, &fwd_end);
        c->off_yf = blocked_copy(&c->fwd_y, dst, &fwd_end);
        if (s == ST_OK) s = make_conv(c, fpd, kinds, q, &fwd_end, &c->fwd);
    }
    if (s == ST_OK) {
        const int kinds[3] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC};
        const dnnl_query_t q[3] = {dnnl_query_diff_dst_md, dnnl_query_weights_md, dnnl_query_diff_src_md};
        const dnnl_memory_desc_t *ddst = dnnl_primitive_desc_query_md(dpd, q[0], 0);
        const dnnl_memory_desc_t *wei = dnnl_primitive_desc_query_md(dpd, q[1], 0);
        const dnnl_memory_desc_t *dsrc = dnnl_primitive_desc_query_md(dpd, q[2], 0);
        s = make_reorder(c, &y_md, ddst, 0, &c->bd_dy);
        if (s == ST_OK) s = make_reorder(c, &w_md, wei, 0, &c->bd_w);
        if (s == ST_OK) s = make_reorder(c, dsrc, &x_md, 1, &c->bd_dx_add);
        if (s == ST_OK) s = make_reorder(c, dsrc, &x_md, 0, &c->bd_dx_set);
        c->off_dyd = blocked_copy(&c->bd_dy, ddst, &bwd_end);
        c->off_wd = blocked_copy(&c->bd_w, wei, &bwd_end);
        c->off_dxd = carve(&bwd_end, dnnl_memory_desc_get_size(dsrc)); /* always: for dx += */
        if (s == ST_OK) s = make_conv(c, dpd, kinds, q, &bwd_end, &c->bwd_data);
    }
    if (s == ST_OK) {
        const int kinds[3] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS};
        const dnnl_query_t q[3] = {dnnl_query_src_md, dnnl_query_diff_dst_md, dnnl_query_diff_weights_md};
        const dnnl_memory_desc_t *src = dnnl_primitive_desc_query_md(wpd, q[0], 0);
        const dnnl_memory_desc_t *ddst = dnnl_primitive_desc_query_md(wpd, q[1], 0);
        const dnnl_memory_desc_t *dwei = dnnl_primitive_desc_query_md(wpd, q[2], 0);
        s = make_reorder(c, &x_md, src, 0, &c->bw_x);
        if (s == ST_OK) s = make_reorder(c, &y_md, ddst, 0, &c->bw_dy);
        if (s == ST_OK) s = make_reorder(c, dwei, &w_md, 0, &c->bw_dw);
        c->off_xw = blocked_copy(&c->bw_x, src, &bwd_end);
        /* the backward-data copy of dy is reused when both want the same layout */
        const int shared_dy = c->bw_dy.prim && c->bd_dy.prim &&
                              dnnl_memory_desc_equal(ddst, dnnl_primitive_desc_query_md(dpd, dnnl_query_diff_dst_md, 0));
        c->off_dyw = shared_dy ? c->off_dyd : blocked_copy(&c->bw_dy, ddst, &bwd_end);
        c->off_dww = blocked_copy(&c->bw_dw, dwei, &bwd_end);
        if (s == ST_OK) s = make_conv(c, wpd, kinds, q, &bwd_end, &c->bwd_weights);
        c->shared_dy = shared_dy;
    }
    c->workspace_bytes = (fwd_end > bwd_end ? fwd_end : bwd_end) + ALIGN_BYTES;
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (dpd) dnnl_primitive_desc_destroy(dpd);
    if (wpd) dnnl_primitive_desc_destroy(wpd);
    dnnl_primitive_attr_destroy(attr);
    return s;
}

st_status st_onednn_conv_create(int batch, int in_c, int in_h, int in_w, int out_c, int kernel, int stride,
                                int padding, int has_bias, int x_block, int y_block, st_onednn_conv **out) {
    *out = NULL;
    st_onednn_conv *c = st_calloc(1, sizeof *c, "oneDNN convolution");
    if (!c) return ST_ERR_NOMEM;
    c->has_bias = has_bias;
    st_status s = create(c, batch, in_c, in_h, in_w, out_c, kernel, stride, padding, x_block, y_block);
    if (s != ST_OK) {
        st_onednn_conv_free(c);
        return st_fail_context(s, "convolution %dx%dx%dx%d -> %d k%d s%d p%d", batch, in_c, in_h, in_w, out_c,
                               kernel, stride, padding);
    }
    *out = c;
    return ST_OK;
}

void st_onednn_conv_free(st_onednn_conv *c) {
    if (!c) return;
    free_conv(&c->fwd);
    free_conv(&c->bwd_data);
    free_conv(&c->bwd_weights);
    reorder *r[] = {&c->fwd_x, &c->fwd_w, &c->fwd_y, &c->bd_dy, &c->bd_w, &c->bd_dx_add, &c->bd_dx_set, &c->bw_x, &c->bw_dy, &c->bw_dw};
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) free_reorder(r[i]);
    if (c->bias) dnnl_memory_destroy(c->bias);
    if (c->stream) dnnl_stream_destroy(c->stream);
    if (c->engine) dnnl_engine_destroy(c->engine);
    free(c);
}

int st_onednn_conv_output_block(const st_onednn_conv *c) { return c->y_block; }

size_t st_onednn_conv_workspace_floats(const st_onednn_conv *c) {
    return (c->workspace_bytes + sizeof(float) - 1) / sizeof(float);
}

const char *st_onednn_conv_implementation(const st_onednn_conv *c, int which) {
    return which == 0 ? c->fwd.impl : which == 1 ? c->bwd_data.impl : c->bwd_weights.impl;
}

static char *aligned_base(float *workspace) {
    return (char *)(((uintptr_t)workspace + ALIGN_BYTES - 1) & ~(uintptr_t)(ALIGN_BYTES - 1));
}

/* The blocked copy at `offset`, or the caller's plain array when there is none. */
static void *at(char *base, size_t offset, const void *plain) {
    return offset == SIZE_MAX ? (void *)plain : base + offset;
}

st_status st_onednn_conv_forward(st_onednn_conv *c, const float *x, const float *w, const float *bias, float *y,
                                 float *workspace) {
    char *base = aligned_base(workspace);
    void *xf = at(base, c->off_xf, x), *wf = at(base, c->off_wf, w), *yf = at(base, c->off_yf, y);
    ST_TRY(run_reorder(c, &c->fwd_x, x, xf));
    ST_TRY(run_reorder(c, &c->fwd_w, w, wf));
    if (c->has_bias) DNNL_TRY(dnnl_memory_set_data_handle(c->bias, (void *)bias));
    ST_TRY(run_conv(c, &c->fwd, xf, wf, yf, base, c->has_bias ? c->bias : NULL, DNNL_ARG_BIAS));
    ST_TRY(run_reorder(c, &c->fwd_y, yf, y));
    DNNL_TRY(dnnl_stream_wait(c->stream));
    return ST_OK;
}

st_status st_onednn_conv_backward(st_onednn_conv *c, const float *x, const float *w, const float *dy, float *dx,
                                  int dx_accumulate, float *dw, float *workspace) {
    char *base = aligned_base(workspace);
    void *dyd = at(base, c->off_dyd, dy);
    if (dx || (dw && c->shared_dy)) ST_TRY(run_reorder(c, &c->bd_dy, dy, dyd));
    if (dx) {
        void *wd = at(base, c->off_wd, w);
        /* overwriting a plain dx: the primitive writes it directly */
        const int direct = !dx_accumulate && !c->bd_dx_set.prim;
        void *dxd = direct ? (void *)dx : base + c->off_dxd;
        ST_TRY(run_reorder(c, &c->bd_w, w, wd));
        ST_TRY(run_conv(c, &c->bwd_data, dyd, wd, dxd, base, NULL, 0));
        if (!direct) ST_TRY(run_reorder(c, dx_accumulate ? &c->bd_dx_add : &c->bd_dx_set, dxd, dx));
    }
    if (dw) {
        void *xw = at(base, c->off_xw, x), *dww = at(base, c->off_dww, dw);
        void *dyw = c->shared_dy ? dyd : at(base, c->off_dyw, dy);
        ST_TRY(run_reorder(c, &c->bw_x, x, xw));
        if (!c->shared_dy) ST_TRY(run_reorder(c, &c->bw_dy, dy, dyw));
        ST_TRY(run_conv(c, &c->bwd_weights, xw, dyw, dww, base, NULL, 0));
        ST_TRY(run_reorder(c, &c->bw_dw, dww, dw));
    }
    DNNL_TRY(dnnl_stream_wait(c->stream));
    return ST_OK;
}

#endif
