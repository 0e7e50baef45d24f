/* The parameter store (see param_store.h). */
#include "params/param_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

#define ALIGN_FLOATS 16 /* 64 bytes */

static int64_t round_up(int64_t n) { return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS; }

st_status st_param_store_new_value(st_param *p, int prunable_rows) {
    if (prunable_rows > 0) {
        p->sparse = st_calloc(1, sizeof(st_sparse_weight), "sparse weight");
        if (!p->sparse) return ST_ERR_NOMEM;
        ST_TRY(st_sparse_weight_init(p->sparse, prunable_rows, p->numel / prunable_rows));
        p->value = p->sparse->values;
        return ST_OK;
    }
    p->value = st_calloc((size_t)p->numel, sizeof(float), p->name);
    return p->value ? ST_OK : ST_ERR_NOMEM;
}

/* Offsets of every trainable param for the current stored sizes; returns the block's floats. */
static int64_t layout(const st_param_store *s, int64_t *offset) {
    int64_t at = 0;
    for (int i = 0; i < s->n_params; i++) {
        const st_param *p = &s->params[i];
        if (p->is_buffer) {
            offset[i] = -1;
            continue;
        }
        offset[i] = at;
        at += round_up(st_param_stored(p));
    }
    return at ? at : ALIGN_FLOATS;
}

static void point_views(st_param_store *s) {
    for (int i = 0; i < s->n_params; i++) {
        st_param *p = &s->params[i];
        if (p->sparse) p->value = p->sparse->values;
        p->grad = s->offset[i] >= 0 ? s->grad_block + s->offset[i] : NULL;
        for (int k = 0; k < ST_MAX_SLOTS; k++)
            if (s->slot[k].used) s->slot[k].view[i] = s->offset[i] >= 0 ? s->slot[k].block + s->offset[i] : NULL;
    }
}

static float *new_block(int64_t floats) {
    float *b = st_malloc_aligned((size_t)floats * sizeof(float), "parameter store");
    if (b) memset(b, 0, (size_t)floats * sizeof(float));
    return b;
}

st_status st_param_store_bind(st_param_store *s, st_param *params, int n_params) {
    s->params = params;
    s->n_params = n_params;
    s->offset = st_calloc((size_t)n_params + 1, sizeof(int64_t), "parameter store");
    s->no_slot = st_calloc((size_t)n_params + 1, sizeof(float *), "parameter store");
    if (!s->offset || !s->no_slot) return ST_ERR_NOMEM;
    s->grad_floats = layout(s, s->offset);
    s->grad_block = new_block(s->grad_floats);
    if (!s->grad_block) return ST_ERR_NOMEM;
    point_views(s);
    return ST_OK;
}

void st_param_store_release(st_param_store *s) {
    if (!s) return;
    for (int i = 0; i < s->n_params; i++) {
        st_param *p = &s->params[i];
        if (p->sparse) {
            st_sparse_weight_release(p->sparse);
            free(p->sparse);
        } else {
            free(p->value);
        }
        p->value = p->grad = NULL;
        p->sparse = NULL;
    }
    for (int k = 0; k < ST_MAX_SLOTS; k++) {
        free(s->slot[k].block);
        free(s->slot[k].view);
    }
    free(s->grad_block);
    free(s->offset);
    free(s->no_slot);
    memset(s, 0, sizeof *s);
}

void st_param_store_zero_grads(st_param_store *s) {
    if (s->grad_block) memset(s->grad_block, 0, (size_t)s->grad_floats * sizeof(float));
}

st_status st_param_store_add_slot(st_param_store *s, const char *name, int *slot) {
    int k = 0;
    while (k < ST_MAX_SLOTS && s->slot[k].used) k++;
    if (k == ST_MAX_SLOTS) return st_fail(ST_ERR_ARGUMENT, "parameter store: more than %d optimiser-state slots", ST_MAX_SLOTS);
    s->slot[k].block = new_block(s->grad_floats);
    s->slot[k].view = st_calloc((size_t)s->n_params + 1, sizeof(float *), "parameter store");
    if (!s->slot[k].block || !s->slot[k].view) {
        free(s->slot[k].block), free(s->slot[k].view);
        s->slot[k].block = NULL, s->slot[k].view = NULL;
        return ST_ERR_NOMEM;
    }
    s->slot[k].used = 1;
    snprintf(s->slot[k].name, sizeof s->slot[k].name, "%s", name);
    s->n_slots++;
    point_views(s);
    *slot = k;
    return ST_OK;
}

void st_param_store_remove_slot(st_param_store *s, int slot) {
    if (slot < 0 || slot >= ST_MAX_SLOTS || !s->slot[slot].used) return;
    free(s->slot[slot].block);
    free(s->slot[slot].view);
    memset(&s->slot[slot], 0, sizeof s->slot[slot]);
    s->n_slots--;
}

float **st_param_store_slot_table(const st_param_store *s, int slot) {
    if (slot < 0 || slot >= ST_MAX_SLOTS || !s->slot[slot].used) return s->no_slot;
    return s->slot[slot].view;
}

/* ---------- moving arrays between mask forms ---------- */

/* New forms of the weights being changed: forms[i].rows == 0 = unchanged. */
typedef struct change {
    st_sparse_weight *forms; /* per param */
    int64_t *offset;         /* new layout */
    int64_t floats;
} change;

/* dst (new form) <- src (old form), kept-in-both positions copied, others 0. */
static void move_array(const st_sparse_weight *old_form, const float *src, const st_sparse_weight *new_form,
                       float *dst, float *dense) {
    st_sparse_weight_scatter(old_form, src, dense);
    st_sparse_weight_apply_mask(new_form, dense);
    st_sparse_weight_gather(new_form, dense, dst);
}

/* Moves every gradient and slot array to the new layout and forms, and each
 * changed weight's values; then installs the new forms. */
static st_status apply_change(st_param_store *s, change *c) {
    int64_t widest = 1;
    for (int i = 0; i < s->n_params; i++)
        if (c->forms[i].rows && s->params[i].numel > widest) widest = s->params[i].numel;
    float *dense = st_malloc((size_t)widest * sizeof(float), "parameter store");
    float *grad = new_block(c->floats);
    float *slots[ST_MAX_SLOTS] = {0};
    int ok = dense && grad;
    for (int k = 0; ok && k < ST_MAX_SLOTS; k++)
        if (s->slot[k].used) ok = (slots[k] = new_block(c->floats)) != NULL;
    if (!ok) {
        free(dense), free(grad);
        for (int k = 0; k < ST_MAX_SLOTS; k++) free(slots[k]);
        return ST_ERR_NOMEM;
    }
    for (int i = 0; i < s->n_params; i++) {
        st_param *p = &s->params[i];
        const int changed = c->forms[i].rows != 0;
        if (changed) move_array(p->sparse, p->sparse->values, &c->forms[i], c->forms[i].values, dense);
        if (s->offset[i] < 0) continue;
        const size_t n = (size_t)st_param_stored(p);
        for (int k = -1; k < ST_MAX_SLOTS; k++) {
            if (k >= 0 && !s->slot[k].used) continue;
            const float *src = (k < 0 ? s->grad_block : s->slot[k].block) + s->offset[i];
            float *dst = (k < 0 ? grad : slots[k]) + c->offset[i];
            if (changed) move_array(p->sparse, src, &c->forms[i], dst, dense);
            else memcpy(dst, src, n * sizeof(float));
        }
    }
    free(dense);
    for (int i = 0; i < s->n_params; i++) {
        st_param *p = &s->params[i];
        if (!c->forms[i].rows) continue;
        const uint64_t version = p->sparse->version;
        st_sparse_weight_release(p->sparse);
        *p->sparse = c->forms[i];
        p->sparse->version = version + 1;
        memset(&c->forms[i], 0, sizeof c->forms[i]);
    }
    free(s->grad_block);
    s->grad_block = grad;
    s->grad_floats = c->floats;
    for (int k = 0; k < ST_MAX_SLOTS; k++)
        if (s->slot[k].used) {
            free(s->slot[k].block);
            s->slot[k].block = slots[k];
        }
    memcpy(s->offset, c->offset, sizeof(int64_t) * (size_t)s->n_params);
    point_views(s);
    return ST_OK;
}

static st_status change_begin(const st_param_store *s, change *c) {
    c->forms = st_calloc((size_t)s->n_params + 1, sizeof(st_sparse_weight), "parameter store");
    c->offset = st_calloc((size_t)s->n_params + 1, sizeof(int64_t), "parameter store");
    return c->forms && c->offset ? ST_OK : ST_ERR_NOMEM;
}

static void change_end(const st_param_store *s, change *c) {
    if (c->forms)
        for (int i = 0; i < s->n_params; i++) st_sparse_weight_release(&c->forms[i]);
    free(c->forms);
    free(c->offset);
}

/* The layout after the change (stored sizes of the new forms). */
static void change_layout(const st_param_store *s, change *c) {
    int64_t at = 0;
    for (int i = 0; i < s->n_params; i++) {
        const st_param *p = &s->params[i];
        if (p->is_buffer) {
            c->offset[i] = -1;
            continue;
        }
        c->offset[i] = at;
        at += round_up(c->forms[i].rows ? st_sparse_weight_stored(&c->forms[i]) : st_param_stored(p));
    }
    c->floats = at ? at : ALIGN_FLOATS;
}

st_status st_param_store_remap(st_param_store *s, int param, const uint8_t *mask) {
    if (param < 0 || param >= s->n_params || !s->params[param].sparse)
        return st_fail(ST_ERR_ARGUMENT, "parameter store: %d is not a prunable weight", param);
    st_param *p = &s->params[param];
    if (!p->sparse->packed) {
        /* dense form: masked positions are 0 in every array, so masking again is the whole move */
        ST_TRY(st_sparse_weight_set_mask(p->sparse, mask));
        if (p->grad) st_sparse_weight_apply_mask(p->sparse, p->grad);
        for (int k = 0; k < ST_MAX_SLOTS; k++)
            if (s->slot[k].used) st_sparse_weight_apply_mask(p->sparse, s->slot[k].view[param]);
        return ST_OK;
    }
    change c;
    st_status st = change_begin(s, &c);
    if (st == ST_OK) st = st_sparse_weight_new_packed(p->sparse->rows, p->sparse->cols, mask, &c.forms[param]);
    if (st == ST_OK) {
        change_layout(s, &c);
        st = apply_change(s, &c);
    }
    change_end(s, &c);
    return st;
}

st_status st_param_store_pack(st_param_store *s) {
    change c;
    st_status st = change_begin(s, &c);
    uint8_t *mask = NULL;
    for (int i = 0; st == ST_OK && i < s->n_params; i++) {
        const st_param *p = &s->params[i];
        if (!p->sparse || p->sparse->packed) continue;
        free(mask);
        mask = st_malloc((size_t)p->numel, "parameter store");
        if (!mask) {
            st = ST_ERR_NOMEM;
            break;
        }
        st_sparse_weight_mask_dense(p->sparse, mask);
        st = st_sparse_weight_new_packed(p->sparse->rows, p->sparse->cols, mask, &c.forms[i]);
    }
    free(mask);
    if (st == ST_OK) {
        change_layout(s, &c);
        st = apply_change(s, &c);
    }
    change_end(s, &c);
    return st;
}

/* ---------- snapshots ---------- */

static st_status snapshot_alloc(const st_param_store *s, st_param_snapshot *snap) {
    if (snap->values) return ST_OK;
    snap->n_params = s->n_params;
    snap->values = st_calloc((size_t)s->n_params + 1, sizeof(float *), "snapshot");
    snap->forms = st_calloc((size_t)s->n_params + 1, sizeof(st_sparse_weight), "snapshot");
    return snap->values && snap->forms ? ST_OK : ST_ERR_NOMEM;
}

/* Snapshot param i's form := `form` (structure only), its value array sized to match. */
static st_status snapshot_form(st_param_snapshot *snap, int i, const st_param *p, const st_sparse_weight *form) {
    if (form) {
        st_sparse_weight_release(&snap->forms[i]);
        ST_TRY(st_sparse_weight_copy_structure(form, &snap->forms[i]));
    }
    const int64_t n = form ? st_sparse_weight_stored(form) : p->numel;
    free(snap->values[i]);
    snap->values[i] = st_malloc((size_t)(n ? n : 1) * sizeof(float), "snapshot");
    return snap->values[i] ? ST_OK : ST_ERR_NOMEM;
}

st_status st_param_snapshot_take(const st_param_store *s, st_param_snapshot *snap) {
    ST_TRY(snapshot_alloc(s, snap));
    for (int i = 0; i < s->n_params; i++) {
        const st_param *p = &s->params[i];
        if (!snap->values[i] || (p->sparse && !st_param_snapshot_same_mask(snap, p, i)))
            ST_TRY(snapshot_form(snap, i, p, p->sparse));
        memcpy(snap->values[i], p->value, (size_t)st_param_stored(p) * sizeof(float));
    }
    snap->taken = 1;
    return ST_OK;
}

int st_param_snapshot_same_mask(const st_param_snapshot *snap, const st_param *p, int i) {
    if (!p->sparse) return 1;
    const st_sparse_weight *f = &snap->forms[i];
    return f->rows && f->version == p->sparse->version && f->packed == p->sparse->packed;
}

void st_param_snapshot_dense(const st_param_snapshot *snap, const st_param *p, int i, float *dense) {
    if (!p->sparse) memcpy(dense, snap->values[i], (size_t)p->numel * sizeof(float));
    else st_sparse_weight_scatter(&snap->forms[i], snap->values[i], dense);
}

void st_param_snapshot_mask(const st_param_snapshot *snap, int i, uint8_t *mask) {
    st_sparse_weight_mask_dense(&snap->forms[i], mask);
}

st_status st_param_snapshot_set_dense(const st_param_store *s, st_param_snapshot *snap, int i, const float *dense,
                                      const uint8_t *mask) {
    ST_TRY(snapshot_alloc(s, snap));
    const st_param *p = &s->params[i];
    if (!p->sparse || !mask) {
        if (!snap->values[i] || (p->sparse && !st_param_snapshot_same_mask(snap, p, i)))
            ST_TRY(snapshot_form(snap, i, p, p->sparse));
        if (p->sparse) st_sparse_weight_gather(&snap->forms[i], dense, snap->values[i]);
        else memcpy(snap->values[i], dense, (size_t)p->numel * sizeof(float));
    } else {
        st_sparse_weight form;
        ST_TRY(p->sparse->packed ? st_sparse_weight_new_packed(p->sparse->rows, p->sparse->cols, mask, &form)
                                 : st_sparse_weight_new_masked(p->sparse->rows, p->sparse->cols, mask, &form));
        form.version = (uint64_t)-1; /* its own mask: never taken for the live one */
        st_status st = snapshot_form(snap, i, p, &form);
        if (st == ST_OK) st_sparse_weight_gather(&snap->forms[i], dense, snap->values[i]);
        st_sparse_weight_release(&form);
        ST_TRY(st);
    }
    snap->taken = 1;
    return ST_OK;
}

void st_param_snapshot_release(st_param_snapshot *snap) {
    if (!snap) return;
    for (int i = 0; i < snap->n_params; i++) {
        if (snap->values) free(snap->values[i]);
        if (snap->forms) st_sparse_weight_release(&snap->forms[i]);
    }
    free(snap->values);
    free(snap->forms);
    memset(snap, 0, sizeof *snap);
}
