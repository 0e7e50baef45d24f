/* The parameter store: the one owner of every parameter's memory.
 *
 * The model's graph names its parameters (st_param: name, shape, fan-in and
 * fan-out); the store owns every array behind them and is the only code that
 * assigns the st_param pointers, which everyone else reads as views:
 *   value  - numel floats, or for a prunable weight its st_sparse_weight's
 *            values (dense form: numel with zeros at pruned positions;
 *            packed form: the kept values in CSR order);
 *   grad   - one contiguous block for all trainable parameters (buffers have
 *            none), in parameter order, each parameter starting on a 64-byte
 *            boundary, in the parameter's stored form (st_param_stored
 *            floats), so that one call can reduce every gradient;
 *   slots  - optimiser state (momentum, Adam moments), each slot one block laid
 *            out exactly like the gradient block;
 *   mask   - a prunable weight's mask / CSR (p->sparse) with a version number
 *            that changes whenever the mask does (st_sparse_weight.version);
 *            anything built from a mask (kernel plans) compares the version.
 * Everything shaped like a weight follows a mask change in one place,
 * st_param_store_remap. Snapshots (the best-on-validation copy) carry their
 * own mask, so they stay right when the live mask moves on. */
#ifndef ST_PARAMS_PARAM_STORE_H
#define ST_PARAMS_PARAM_STORE_H

#include <stdint.h>

#include "sparse/sparse_weight.h"
#include "sparsetrain.h"

#define ST_NAME_MAX 96
#define ST_MAX_SLOTS 4

/* A named tensor of the state_dict: a trainable parameter or a buffer. The
 * pointers are views assigned by the store (see above). */
typedef struct st_param {
    char name[ST_NAME_MAX];
    int ndim;
    int64_t shape[4];
    int64_t numel;
    float *value;              /* store-owned (for a prunable weight: its sparse weight's values) */
    float *grad;               /* store-owned, in the gradient block; NULL for buffers */
    st_sparse_weight *sparse;  /* store-owned; non-NULL for prunable weights (every conv/linear weight) */
    int is_buffer;             /* running_mean / running_var: saved, never trained */
    double fan_in, fan_out;    /* for initialisation (weights only) */
} st_param;

/* Floats held in a parameter's value / grad / optimiser-state arrays: its
 * kept count for a packed weight, else numel. */
static inline int64_t st_param_stored(const st_param *p) {
    return p->sparse ? st_sparse_weight_stored(p->sparse) : p->numel;
}

typedef struct st_param_store {
    st_param *params;          /* the model's descriptor table (bound once the graph is built) */
    int n_params;
    float *grad_block;         /* all gradients (see above) */
    int64_t grad_floats;
    int64_t *offset;           /* per param: its offset in the gradient and slot blocks; -1 for buffers */
    int n_slots;               /* slots in use (of ST_MAX_SLOTS) */
    struct {
        int used;
        char name[32];
        float *block;          /* laid out as grad_block */
        float **view;          /* per param: its array of this slot (NULL for buffers) */
    } slot[ST_MAX_SLOTS];
    float **no_slot;           /* per param: NULL (the table of an absent slot) */
} st_param_store;

/* Allocates the value array of a newly described parameter (a prunable
 * weight when prunable_rows > 0: an st_sparse_weight of (rows, numel/rows)),
 * zeroed. Called by the graph builder for each parameter it adds. */
st_status st_param_store_new_value(st_param *p, int prunable_rows);
/* Binds the finished descriptor table and lays out the (zeroed) gradient block. */
st_status st_param_store_bind(st_param_store *s, st_param *params, int n_params);
/* Frees every array of every parameter, the blocks and the slots. */
void st_param_store_release(st_param_store *s);

/* Gradients: one memset of the whole block. */
void st_param_store_zero_grads(st_param_store *s);

/* Optimiser-state slots: a new zeroed slot (st_param_store_slot_table gives
 * its per-parameter arrays); remove frees it. Slot -1 is the absent slot
 * (a table of NULLs). */
st_status st_param_store_add_slot(st_param_store *s, const char *name, int *slot);
void st_param_store_remove_slot(st_param_store *s, int slot);
float **st_param_store_slot_table(const st_param_store *s, int slot);

/* Masks. set_mask installs the first mask of a dense-form weight (before
 * training; same as remap there). remap moves prunable weight `param` to
 * `mask` (numel bytes, nonzero = kept), in either form: value, gradient and
 * every slot keep their values at positions kept before and after, and are
 * exactly 0 at every other position (new positions start at 0); the
 * weight's version changes. pack converts every prunable weight to the
 * packed (CSR) form, moving gradients and slots with it. */
st_status st_param_store_remap(st_param_store *s, int param, const uint8_t *mask);
st_status st_param_store_pack(st_param_store *s);

/* A snapshot: a copy of every parameter's value in its stored form, with a
 * copy of the mask structure it was taken under (copied again only when the
 * weight's version has changed since), so that it can be written in dense
 * form however the live masks have moved since. */
typedef struct st_param_snapshot {
    int n_params;
    float **values;            /* per param: st_sparse_weight_stored(&forms[i]) or numel floats */
    st_sparse_weight *forms;   /* per param: the mask structure (values unused); rows == 0 for non-prunable */
    int taken;                 /* 0 until the first st_param_snapshot_take */
} st_param_snapshot;

st_status st_param_snapshot_take(const st_param_store *s, st_param_snapshot *snap);
/* param `i` of the snapshot as a dense (numel) array, zeros at its pruned positions */
void st_param_snapshot_dense(const st_param_snapshot *snap, const st_param *p, int i, float *dense);
/* the snapshot's mask of prunable param `i` as numel bytes */
void st_param_snapshot_mask(const st_param_snapshot *snap, int i, uint8_t *mask);
/* 1 when param i's snapshot mask is the live one (same structure version) */
int st_param_snapshot_same_mask(const st_param_snapshot *snap, const st_param *p, int i);
/* Fills the snapshot from dense arrays under `mask` (numel bytes per prunable param, or NULL = the live mask). */
st_status st_param_snapshot_set_dense(const st_param_store *s, st_param_snapshot *snap, int i, const float *dense,
                                      const uint8_t *mask);
void st_param_snapshot_release(st_param_snapshot *snap);

#endif
