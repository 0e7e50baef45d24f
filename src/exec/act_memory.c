/* Activation memory planned by liveness over the fused schedule (executor.h).
 *
 * Values: every activation a step reads or writes keeps its own buffer for
 * the whole step (backward reads the forward's values); the intermediate
 * results of fused steps (a BN output only its ReLU reads, a BN output
 * folded into an add) are never written and get no buffer.
 *
 * Gradients live only during backward, from the first write (the backward
 * of the last step, in forward order, that reads the activation) to the one
 * read (the backward of the step that produced it). Intervals that do not
 * overlap share a buffer: a greedy best-fit over the intervals in backward
 * order. The images' gradient (attacks read it after backward) keeps a buffer
 * of its own. Sharing changes no arithmetic: whether a writer overwrites or
 * adds is decided per activation (grad_written), never by what a buffer held.
 *
 * st_model_act_memory_bytes says what it came to. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "exec/executor.h"

typedef struct grad_life {
    int birth, death; /* backward times: step k runs at n_steps - 1 - k; the loss writes the logits at -1 */
    int act;
} grad_life;

typedef struct pool_buffer {
    float *data;
    size_t floats;
    int free_after; /* the backward time after which it may be reused */
} pool_buffer;

static int by_birth(const void *a, const void *b) {
    const grad_life *x = a, *y = b;
    if (x->birth != y->birth) return x->birth < y->birth ? -1 : 1;
    return x->act < y->act ? -1 : x->act > y->act;
}

void st_act_memory_release(st_model *m) {
    for (int i = 0; i < m->n_act_buffers; i++) free(m->act_buffers[i]);
    free(m->act_buffers);
    m->act_buffers = NULL;
    m->n_act_buffers = 0;
    m->act_bytes = 0;
    for (int i = 0; i < m->n_acts; i++) m->acts[i].value = m->acts[i].grad = NULL;
}

/* One more buffer of `floats` floats, owned by the model. */
static float *new_buffer(st_model *m, size_t floats, int *cap) {
    if (m->n_act_buffers == *cap) {
        int grown = *cap ? 2 * *cap : 64;
        float **b = realloc(m->act_buffers, sizeof *b * (size_t)grown);
        if (!b) return NULL;
        m->act_buffers = b;
        *cap = grown;
    }
    float *data = st_malloc_aligned((floats ? floats : 1) * sizeof(float), "activations");
    if (!data) return NULL;
    m->act_buffers[m->n_act_buffers++] = data;
    m->act_bytes += (int64_t)(floats * sizeof(float));
    return data;
}

st_status st_act_memory_plan(st_model *m, const st_model_schedule *sc, int capacity) {
    st_act_memory_release(m);
    const int n_acts = m->n_acts, logits = n_acts - 1, last = sc->n_steps - 1;
    uint8_t *used = st_calloc((size_t)n_acts, 1, "activation plan");
    int *producer = st_malloc(sizeof(int) * (size_t)n_acts, "activation plan");
    int *first_write = st_malloc(sizeof(int) * (size_t)n_acts, "activation plan");
    grad_life *lives = st_malloc(sizeof(grad_life) * (size_t)n_acts, "activation plan");
    pool_buffer *pool = st_malloc(sizeof(pool_buffer) * (size_t)n_acts, "activation plan");
    st_status s = used && producer && first_write && lives && pool ? ST_OK : ST_ERR_NOMEM;
    int cap = 0, n_pool = 0, n_lives = 0;
    if (s == ST_OK) {
        for (int a = 0; a < n_acts; a++) producer[a] = first_write[a] = -2;
        used[0] = used[logits] = 1;
        for (int k = 0; k < sc->n_steps; k++) {
            const st_model_step *st = &sc->steps[k];
            const int t = last - k;
            const st_op *op = &m->ops[st->op];
            const int reads[3] = {st->x, st->residual, st->kind == ST_STEP_OP ? op->in2 : -1};
            for (int r = 0; r < 3; r++) {
                const int a = reads[r];
                if (a < 0) continue;
                used[a] = 1;
                if (first_write[a] == -2 || t < first_write[a]) first_write[a] = t; /* the latest reader writes first */
            }
            used[st->out] = 1;
            producer[st->out] = t;
        }
        first_write[logits] = -1; /* the loss */
    }
    /* values: one buffer each */
    for (int a = 0; a < n_acts && s == ST_OK; a++) {
        if (!used[a]) continue;
        const size_t n = (size_t)capacity * (size_t)st_activation_size(&m->acts[a]);
        if (!(m->acts[a].value = new_buffer(m, n, &cap))) s = st_fail(ST_ERR_NOMEM, "out of memory for activations");
        if (s == ST_OK && a == 0 && !(m->acts[0].grad = new_buffer(m, n, &cap)))
            s = st_fail(ST_ERR_NOMEM, "out of memory for activation gradients");
        if (s != ST_OK || a == 0) continue;
        grad_life *l = &lives[n_lives++];
        l->act = a;
        l->death = producer[a] >= -1 ? producer[a] : last + 1;
        l->birth = first_write[a] >= -1 ? first_write[a] : l->death; /* read by nobody: written by nobody */
    }
    /* gradients: shared where their lives do not overlap. Each life takes a free slot (one whose last
     * life ended before this one begins): the smallest that is large enough, else the largest, which
     * grows; then every slot gets one buffer of its largest size. */
    int *slot_of = s == ST_OK ? st_malloc(sizeof(int) * (size_t)(n_lives ? n_lives : 1), "activation plan") : NULL;
    if (s == ST_OK && !slot_of) s = ST_ERR_NOMEM;
    if (s == ST_OK) qsort(lives, (size_t)n_lives, sizeof *lives, by_birth);
    for (int i = 0; i < n_lives && s == ST_OK; i++) {
        const grad_life *l = &lives[i];
        const size_t n = (size_t)capacity * (size_t)st_activation_size(&m->acts[l->act]);
        int fit = -1, largest = -1;
        for (int b = 0; b < n_pool; b++) {
            if (pool[b].free_after >= l->birth) continue;
            if (pool[b].floats >= n && (fit < 0 || pool[b].floats < pool[fit].floats)) fit = b;
            if (largest < 0 || pool[b].floats > pool[largest].floats) largest = b;
        }
        int b = fit >= 0 ? fit : largest;
        if (b < 0) {
            b = n_pool++;
            pool[b].floats = 0;
        }
        if (pool[b].floats < n) pool[b].floats = n;
        pool[b].free_after = l->death;
        slot_of[i] = b;
    }
    for (int b = 0; b < n_pool && s == ST_OK; b++)
        if (!(pool[b].data = new_buffer(m, pool[b].floats, &cap)))
            s = st_fail(ST_ERR_NOMEM, "out of memory for activation gradients");
    for (int i = 0; i < n_lives && s == ST_OK; i++) m->acts[lives[i].act].grad = pool[slot_of[i]].data;
    free(slot_of);
    free(used), free(producer), free(first_write), free(lives), free(pool);
    if (s != ST_OK) st_act_memory_release(m);
    return s;
}

int64_t st_model_act_memory_bytes(const st_model *m) { return m->act_bytes; }
