/* CIFAR-10/100, python version: each batch file is a pickle of a dict
 * {b"data": uint8 ndarray (N, 3072), b"labels" | b"fine_labels" and
 * b"coarse_labels": list of N ints, b"filenames", b"batch_label", ...}.
 *
 * This is not an unpickler. It reads the few opcodes such files are made of
 * (protocol 2 as written by Python 2's cPickle -- the files as distributed --
 * or by Python 3's pickle, with protocols 3 and 4 as well) and evaluates them
 * structurally into plain values: dicts, lists, tuples, ints, byte strings,
 * text, and numpy arrays. The only globals it knows are numpy's array and
 * dtype reconstructors and _codecs.encode (how Python 3 writes bytes in
 * protocol 2), recognised by name and interpreted here; no code is ever run
 * and any other global or opcode is refused. Every length is checked against
 * the bytes that remain, and the number of objects is bounded, so memory stays
 * proportional to the file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "data/dataset.h"

#define CIFAR_IMAGE_BYTES 3072
/* Objects (values) one file may create: a CIFAR-100 training batch holds
 * ~150,000 (50,000 labels of each kind and 50,000 file names). */
#define PK_MAX_VALUES (1 << 19)

typedef enum pk_kind {
    PK_NONE, PK_BOOL, PK_INT, PK_BYTES, PK_TEXT, PK_TUPLE, PK_LIST, PK_DICT, PK_MARK,
    PK_GLOBAL, PK_NDARRAY, PK_DTYPE
} pk_kind;

typedef enum pk_global { G_RECONSTRUCT, G_NDARRAY, G_DTYPE, G_ENCODE } pk_global;

typedef struct pk_value pk_value;
struct pk_value {
    pk_kind kind;
    int64_t i;               /* INT, BOOL; GLOBAL: which; DTYPE: item size */
    const uint8_t *bytes;    /* BYTES, TEXT (UTF-8): into the input or the arena */
    size_t length;
    pk_value **items;        /* TUPLE, LIST; DICT: key, value, key, value ... */
    size_t count, cap;
    /* NDARRAY */
    int built, ndim;
    int64_t shape[4];
    size_t itemsize;
    char dtype[4];           /* "u1", "i8", ... */
};

typedef struct pk_reader {
    const uint8_t *data;
    size_t size, pos;
    const char *where;
    pk_value **stack;
    size_t depth, stack_cap;
    pk_value **all;          /* every value, freed together */
    size_t n_all, all_cap;
    void **blocks;           /* other allocations (decoded byte strings) */
    size_t n_blocks, blocks_cap;
    pk_value **memo;         /* memo[key], NULL = never PUT; keys < PK_MAX_VALUES */
    size_t memo_cap, n_memo;  /* n_memo: next MEMOIZE key */
    st_status err;           /* why pk_new returned NULL */
} pk_reader;

static st_status pk_error(pk_reader *r, const char *what) {
    return st_fail(ST_ERR_FORMAT, "%s: not a CIFAR python-version batch: %s (at byte %zu)", r->where, what, r->pos);
}

/* Grows an array of elements of `size` bytes to hold at least `need`:
 * returns the (possibly moved) array, or NULL when out of memory (the old
 * array is then left as it was). */
static void *grow_array(void *array, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return array;
    size_t n = *cap ? *cap : 16;
    while (n < need) n *= 2;
    void *p = realloc(array, n * size);
    if (p) *cap = n;
    return p;
}
/* GROW(p, cap, need): 1 when p holds `need` elements after it, 0 when out of memory. */
#define GROW(p, cap, need) grow_typed((void *)&(p), grow_array((p), &(cap), (need), sizeof *(p)))
static int grow_typed(void *slot, void *grown) {
    if (!grown) return 0;
    memcpy(slot, &grown, sizeof grown);
    return 1;
}

static pk_value *pk_new(pk_reader *r, pk_kind kind) {
    if (r->n_all >= PK_MAX_VALUES) {
        r->err = st_fail(ST_ERR_FORMAT, "%s: more than %d objects (not a CIFAR batch)", r->where, PK_MAX_VALUES);
        return NULL;
    }
    if (!GROW(r->all, r->all_cap, r->n_all + 1)) {
        r->err = st_fail(ST_ERR_NOMEM, "out of memory reading %s", r->where);
        return NULL;
    }
    pk_value *v = calloc(1, sizeof *v);
    if (!v) {
        r->err = st_fail(ST_ERR_NOMEM, "out of memory reading %s", r->where);
        return NULL;
    }
    v->kind = kind;
    r->all[r->n_all++] = v;
    return v;
}

static void pk_free(pk_reader *r) {
    for (size_t i = 0; i < r->n_all; i++) {
        free(r->all[i]->items);
        free(r->all[i]);
    }
    for (size_t i = 0; i < r->n_blocks; i++) free(r->blocks[i]);
    free(r->all);
    free(r->blocks);
    free(r->stack);
    free(r->memo);
}

static st_status push(pk_reader *r, pk_value *v) {
    if (!v) return r->err;
    if (!GROW(r->stack, r->stack_cap, r->depth + 1))
        return st_fail(ST_ERR_NOMEM, "out of memory reading %s", r->where);
    r->stack[r->depth++] = v;
    return ST_OK;
}

static st_status pop(pk_reader *r, pk_value **out) {
    if (r->depth == 0 || r->stack[r->depth - 1]->kind == PK_MARK) return pk_error(r, "stack underflow");
    *out = r->stack[--r->depth];
    return ST_OK;
}

/* Index of the topmost MARK; the items above it are stack[mark+1 .. depth). */
static st_status find_mark(pk_reader *r, size_t *mark) {
    for (size_t i = r->depth; i-- > 0;)
        if (r->stack[i]->kind == PK_MARK) {
            *mark = i;
            return ST_OK;
        }
    return pk_error(r, "no MARK on the stack");
}

static st_status append_item(pk_reader *r, pk_value *container, pk_value *item) {
    if (!GROW(container->items, container->cap, container->count + 1))
        return st_fail(ST_ERR_NOMEM, "out of memory reading %s", r->where);
    container->items[container->count++] = item;
    return ST_OK;
}

static st_status take(pk_reader *r, size_t n, const uint8_t **out) {
    if (n > r->size - r->pos) return pk_error(r, "truncated (a length runs past the end of the file)");
    *out = r->data + r->pos;
    r->pos += n;
    return ST_OK;
}

static st_status take_uint(pk_reader *r, int bytes, uint64_t *out) {
    const uint8_t *p = NULL;
    ST_TRY(take(r, (size_t)bytes, &p));
    uint64_t v = 0;
    for (int i = bytes; i-- > 0;) v = (v << 8) | p[i];
    *out = v;
    return ST_OK;
}

static st_status push_string(pk_reader *r, pk_kind kind, int length_bytes) {
    uint64_t n;
    ST_TRY(take_uint(r, length_bytes, &n));
    if (n > r->size - r->pos) return pk_error(r, "truncated (a string is longer than the rest of the file)");
    pk_value *v = pk_new(r, kind);
    if (!v) return r->err;
    ST_TRY(take(r, (size_t)n, &v->bytes));
    v->length = (size_t)n;
    return push(r, v);
}

static int text_is(const pk_value *v, const char *s) {
    return v && (v->kind == PK_TEXT || v->kind == PK_BYTES) && v->length == strlen(s) &&
           memcmp(v->bytes, s, v->length) == 0;
}

static st_status push_global(pk_reader *r, const uint8_t *module, size_t mlen, const uint8_t *name, size_t nlen) {
    static const struct { const char *module, *name; pk_global which; } allowed[] = {
        {"numpy.core.multiarray", "_reconstruct", G_RECONSTRUCT},
        {"numpy._core.multiarray", "_reconstruct", G_RECONSTRUCT},
        {"numpy", "ndarray", G_NDARRAY},
        {"numpy", "dtype", G_DTYPE},
        {"_codecs", "encode", G_ENCODE},
    };
    for (size_t k = 0; k < sizeof allowed / sizeof allowed[0]; k++)
        if (strlen(allowed[k].module) == mlen && memcmp(allowed[k].module, module, mlen) == 0 &&
            strlen(allowed[k].name) == nlen && memcmp(allowed[k].name, name, nlen) == 0) {
            pk_value *v = pk_new(r, PK_GLOBAL);
            if (!v) return r->err;
            v->i = allowed[k].which;
            return push(r, v);
        }
    char shown[96];
    snprintf(shown, sizeof shown, "it refers to %.*s.%.*s, which this reader does not allow (it never runs code)",
             (int)(mlen > 40 ? 40 : mlen), (const char *)module, (int)(nlen > 40 ? 40 : nlen), (const char *)name);
    for (char *c = shown; *c; c++)
        if ((unsigned char)*c < 32 || (unsigned char)*c > 126) *c = '?';
    return pk_error(r, shown);
}

/* GLOBAL: "module\nname\n". */
static st_status op_global(pk_reader *r) {
    const uint8_t *start = r->data + r->pos, *end = r->data + r->size;
    const uint8_t *nl1 = memchr(start, '\n', (size_t)(end - start));
    if (!nl1) return pk_error(r, "truncated GLOBAL");
    const uint8_t *nl2 = memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1));
    if (!nl2) return pk_error(r, "truncated GLOBAL");
    r->pos = (size_t)(nl2 + 1 - r->data);
    return push_global(r, start, (size_t)(nl1 - start), nl1 + 1, (size_t)(nl2 - nl1 - 1));
}

/* UTF-8 text whose code points are all < 256 -> those bytes (Python 3's
 * protocol-2 form of bytes: _codecs.encode(text, "latin1")). */
static st_status latin1_bytes(pk_reader *r, const pk_value *text, pk_value *out) {
    uint8_t *buf = malloc(text->length ? text->length : 1);
    if (!buf || !GROW(r->blocks, r->blocks_cap, r->n_blocks + 1)) {
        free(buf);
        return st_fail(ST_ERR_NOMEM, "out of memory reading %s", r->where);
    }
    r->blocks[r->n_blocks++] = buf;
    size_t n = 0;
    for (size_t i = 0; i < text->length;) {
        uint8_t c = text->bytes[i];
        if (c < 0x80) {
            buf[n++] = c;
            i++;
        } else if ((c == 0xC2 || c == 0xC3) && i + 1 < text->length && (text->bytes[i + 1] & 0xC0) == 0x80) {
            buf[n++] = (uint8_t)(((c & 0x1F) << 6) | (text->bytes[i + 1] & 0x3F));
            i += 2;
        } else {
            return pk_error(r, "encoded bytes are not latin-1 text");
        }
    }
    out->kind = PK_BYTES;
    out->bytes = buf;
    out->length = n;
    return ST_OK;
}

/* numpy dtype descriptors of integer types ("u1", "<i8", "|u1", ...). */
static int parse_dtype(const pk_value *descr, pk_value *out) {
    if (!descr || (descr->kind != PK_TEXT && descr->kind != PK_BYTES)) return 0;
    const uint8_t *s = descr->bytes;
    size_t n = descr->length;
    if (n == 3 && (s[0] == '<' || s[0] == '|' || s[0] == '=')) s++, n--;
    if (n != 2 || (s[0] != 'u' && s[0] != 'i') || (s[1] != '1' && s[1] != '2' && s[1] != '4' && s[1] != '8'))
        return 0;
    out->kind = PK_DTYPE;
    out->dtype[0] = (char)s[0];
    out->dtype[1] = (char)s[1];
    out->dtype[2] = 0;
    out->itemsize = (size_t)(s[1] - '0');
    return 1;
}

static st_status op_reduce(pk_reader *r) {
    pk_value *args = NULL, *callable = NULL;
    ST_TRY(pop(r, &args));
    ST_TRY(pop(r, &callable));
    if (callable->kind != PK_GLOBAL || args->kind != PK_TUPLE) return pk_error(r, "REDUCE of something not allowed");
    pk_value *v = pk_new(r, PK_NONE);
    if (!v) return r->err;
    pk_value **a = args->items;
    switch ((pk_global)callable->i) {
    case G_ENCODE:
        if (args->count != 2 || a[0]->kind != PK_TEXT || !(text_is(a[1], "latin1") || text_is(a[1], "latin-1")))
            return pk_error(r, "_codecs.encode with unexpected arguments");
        ST_TRY(latin1_bytes(r, a[0], v));
        break;
    case G_RECONSTRUCT:
        if (args->count != 3 || a[0]->kind != PK_GLOBAL || a[0]->i != G_NDARRAY)
            return pk_error(r, "numpy _reconstruct with unexpected arguments");
        v->kind = PK_NDARRAY;
        break;
    case G_DTYPE:
        if (args->count < 1 || !parse_dtype(a[0], v))
            return pk_error(r, "numpy dtype other than a plain integer type");
        break;
    case G_NDARRAY: return pk_error(r, "numpy.ndarray called directly");
    }
    return push(r, v);
}

static st_status op_build(pk_reader *r) {
    pk_value *state = NULL, *obj = NULL;
    ST_TRY(pop(r, &state));
    ST_TRY(pop(r, &obj));
    if (obj->kind == PK_DTYPE) { /* (3, byte order, ...): only the byte order matters */
        if (state->kind != PK_TUPLE || state->count < 2) return pk_error(r, "unexpected dtype state");
        if (obj->itemsize > 1 && text_is(state->items[1], ">")) return pk_error(r, "big-endian array");
        return push(r, obj);
    }
    if (obj->kind != PK_NDARRAY || obj->built) return pk_error(r, "BUILD of something not allowed");
    /* (version, shape, dtype, is_fortran, raw data) */
    if (state->kind != PK_TUPLE || state->count != 5 || state->items[1]->kind != PK_TUPLE ||
        state->items[2]->kind != PK_DTYPE || state->items[4]->kind != PK_BYTES)
        return pk_error(r, "unexpected numpy array state (only plain integer arrays are read)");
    pk_value *shape = state->items[1], *dtype = state->items[2], *fortran = state->items[3];
    if (shape->count > 4) return pk_error(r, "array with more than 4 dimensions");
    uint64_t numel = 1;
    for (size_t k = 0; k < shape->count; k++) {
        const pk_value *d = shape->items[k];
        if (d->kind != PK_INT || d->i < 0 || d->i > (int64_t)1 << 40) return pk_error(r, "bad array dimension");
        obj->shape[k] = d->i;
        if (d->i && numel > ((uint64_t)1 << 40) / (uint64_t)d->i) return pk_error(r, "array too large");
        numel *= (uint64_t)d->i;
    }
    if ((fortran->kind == PK_BOOL || fortran->kind == PK_INT) && fortran->i && shape->count > 1)
        return pk_error(r, "Fortran-ordered array");
    if (numel * dtype->itemsize != state->items[4]->length)
        return pk_error(r, "array data size does not match its shape");
    obj->ndim = (int)shape->count;
    obj->itemsize = dtype->itemsize;
    memcpy(obj->dtype, dtype->dtype, sizeof obj->dtype);
    obj->bytes = state->items[4]->bytes;
    obj->length = state->items[4]->length;
    obj->built = 1;
    return push(r, obj);
}

static st_status memo_put(pk_reader *r, uint64_t key) {
    if (r->depth == 0 || r->stack[r->depth - 1]->kind == PK_MARK) return pk_error(r, "PUT without a value");
    if (key >= PK_MAX_VALUES) return pk_error(r, "memo key out of range");
    if (key >= r->memo_cap) {
        size_t old = r->memo_cap;
        if (!GROW(r->memo, r->memo_cap, (size_t)key + 1))
            return st_fail(ST_ERR_NOMEM, "out of memory reading %s", r->where);
        memset(r->memo + old, 0, (r->memo_cap - old) * sizeof *r->memo);
    }
    r->memo[key] = r->stack[r->depth - 1];
    if (key >= r->n_memo) r->n_memo = (size_t)key + 1;
    return ST_OK;
}

static st_status memo_get(pk_reader *r, uint64_t key) {
    if (key >= r->memo_cap || !r->memo[key]) return pk_error(r, "GET of a memo entry never PUT");
    return push(r, r->memo[key]);
}

static st_status push_int(pk_reader *r, int64_t value, pk_kind kind) {
    pk_value *v = pk_new(r, kind);
    if (!v) return r->err;
    v->i = value;
    return push(r, v);
}

/* Items above the topmost MARK become a new TUPLE (or go into the LIST/DICT below it). */
static st_status collect(pk_reader *r, int op) {
    size_t mark = 0;
    ST_TRY(find_mark(r, &mark));
    size_t first = mark + 1, n = r->depth - first;
    if (op == 't') {
        pk_value *t = pk_new(r, PK_TUPLE);
        if (!t) return r->err;
        for (size_t k = 0; k < n; k++) ST_TRY(append_item(r, t, r->stack[first + k]));
        r->depth = mark;
        return push(r, t);
    }
    if (mark == 0) return pk_error(r, "APPENDS/SETITEMS without a container");
    pk_value *c = r->stack[mark - 1];
    if (op == 'e' ? c->kind != PK_LIST : (c->kind != PK_DICT || n % 2 != 0))
        return pk_error(r, op == 'e' ? "APPENDS to something not a list" : "SETITEMS with a bad dict");
    for (size_t k = 0; k < n; k++) ST_TRY(append_item(r, c, r->stack[first + k]));
    r->depth = mark;
    return ST_OK;
}

static st_status run(pk_reader *r, pk_value **result) {
    if (r->size < 2 || r->data[0] != 0x80)
        return st_fail(ST_ERR_FORMAT, "%s: not a CIFAR python-version batch (not a pickle of protocol 2 or later)",
                       r->where);
    if (r->data[1] < 2 || r->data[1] > 4)
        return st_fail(ST_ERR_FORMAT, "%s: pickle protocol %u is not supported (expected 2, 3 or 4)", r->where,
                       (unsigned)r->data[1]);
    r->pos = 2;
    for (;;) {
        if (r->pos >= r->size) return pk_error(r, "truncated (no STOP opcode)");
        size_t at = r->pos;
        uint8_t op = r->data[r->pos++];
        uint64_t u = 0;
        pk_value *a = NULL, *b = NULL;
        switch (op) {
        case '.': /* STOP */
            if (r->depth != 1) return pk_error(r, "STOP with a stack that is not one value");
            if (r->pos != r->size) return pk_error(r, "bytes after the end of the pickle");
            *result = r->stack[0];
            return ST_OK;
        case 0x95: /* FRAME: only a size hint */
            ST_TRY(take_uint(r, 8, &u));
            if (u > r->size - r->pos) return pk_error(r, "truncated frame");
            break;
        case '(': ST_TRY(push(r, pk_new(r, PK_MARK))); break;
        case '}': ST_TRY(push(r, pk_new(r, PK_DICT))); break;
        case ']': ST_TRY(push(r, pk_new(r, PK_LIST))); break;
        case ')': ST_TRY(push(r, pk_new(r, PK_TUPLE))); break;
        case 'N': ST_TRY(push(r, pk_new(r, PK_NONE))); break;
        case 0x88: ST_TRY(push_int(r, 1, PK_BOOL)); break;
        case 0x89: ST_TRY(push_int(r, 0, PK_BOOL)); break;
        case 'K': ST_TRY(take_uint(r, 1, &u)); ST_TRY(push_int(r, (int64_t)u, PK_INT)); break;
        case 'M': ST_TRY(take_uint(r, 2, &u)); ST_TRY(push_int(r, (int64_t)u, PK_INT)); break;
        case 'J': ST_TRY(take_uint(r, 4, &u)); ST_TRY(push_int(r, (int64_t)(int32_t)(uint32_t)u, PK_INT)); break;
        case 0x8a: { /* LONG1: little-endian two's complement of n <= 8 bytes */
            ST_TRY(take_uint(r, 1, &u));
            if (u > 8) return pk_error(r, "integer wider than 64 bits");
            int n = (int)u;
            uint64_t v = 0;
            if (n) ST_TRY(take_uint(r, n, &v));
            if (n && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~(uint64_t)0 << (8 * n);
            ST_TRY(push_int(r, (int64_t)v, PK_INT));
            break;
        }
        case 'U': ST_TRY(push_string(r, PK_BYTES, 1)); break;    /* SHORT_BINSTRING (Python 2 str) */
        case 'T': ST_TRY(push_string(r, PK_BYTES, 4)); break;    /* BINSTRING */
        case 'C': ST_TRY(push_string(r, PK_BYTES, 1)); break;    /* SHORT_BINBYTES */
        case 'B': ST_TRY(push_string(r, PK_BYTES, 4)); break;    /* BINBYTES */
        case 0x8e: ST_TRY(push_string(r, PK_BYTES, 8)); break;   /* BINBYTES8 */
        case 0x8c: ST_TRY(push_string(r, PK_TEXT, 1)); break;    /* SHORT_BINUNICODE */
        case 'X': ST_TRY(push_string(r, PK_TEXT, 4)); break;     /* BINUNICODE */
        case 0x8d: ST_TRY(push_string(r, PK_TEXT, 8)); break;    /* BINUNICODE8 */
        case 'q': ST_TRY(take_uint(r, 1, &u)); ST_TRY(memo_put(r, u)); break;
        case 'r': ST_TRY(take_uint(r, 4, &u)); ST_TRY(memo_put(r, u)); break;
        case 0x94: ST_TRY(memo_put(r, r->n_memo)); break; /* MEMOIZE */
        case 'h': ST_TRY(take_uint(r, 1, &u)); ST_TRY(memo_get(r, u)); break;
        case 'j': ST_TRY(take_uint(r, 4, &u)); ST_TRY(memo_get(r, u)); break;
        case 'c': ST_TRY(op_global(r)); break;
        case 0x93: /* STACK_GLOBAL */
            ST_TRY(pop(r, &b));
            ST_TRY(pop(r, &a));
            if (a->kind != PK_TEXT || b->kind != PK_TEXT) return pk_error(r, "STACK_GLOBAL of non-text names");
            ST_TRY(push_global(r, a->bytes, a->length, b->bytes, b->length));
            break;
        case 'R': ST_TRY(op_reduce(r)); break;
        case 'b': ST_TRY(op_build(r)); break;
        case 0x85: case 0x86: case 0x87: { /* TUPLE1..3 */
            size_t n = (size_t)(op - 0x84);
            if (r->depth < n) return pk_error(r, "stack underflow");
            pk_value *t = pk_new(r, PK_TUPLE);
            if (!t) return r->err;
            for (size_t k = r->depth - n; k < r->depth; k++) {
                if (r->stack[k]->kind == PK_MARK) return pk_error(r, "MARK inside a tuple");
                ST_TRY(append_item(r, t, r->stack[k]));
            }
            r->depth -= n;
            ST_TRY(push(r, t));
            break;
        }
        case 't': case 'e': case 'u': ST_TRY(collect(r, op)); break;
        case 'a': /* APPEND */
            ST_TRY(pop(r, &a));
            if (r->depth == 0 || r->stack[r->depth - 1]->kind != PK_LIST) return pk_error(r, "APPEND to a non-list");
            ST_TRY(append_item(r, r->stack[r->depth - 1], a));
            break;
        case 's': /* SETITEM */
            ST_TRY(pop(r, &b));
            ST_TRY(pop(r, &a));
            if (r->depth == 0 || r->stack[r->depth - 1]->kind != PK_DICT) return pk_error(r, "SETITEM on a non-dict");
            ST_TRY(append_item(r, r->stack[r->depth - 1], a));
            ST_TRY(append_item(r, r->stack[r->depth - 1], b));
            break;
        default: {
            r->pos = at;
            char what[96];
            snprintf(what, sizeof what, "pickle opcode 0x%02x ('%c') is not part of the subset read here", op,
                     op >= 32 && op < 127 ? op : '?');
            return pk_error(r, what);
        }
        }
    }
}

/* The value of key `name` (bytes or text) in a dict, or NULL; the last one wins. */
static const pk_value *dict_get(const pk_value *d, const char *name) {
    const pk_value *found = NULL;
    for (size_t k = 0; k + 1 < d->count; k += 2)
        if (text_is(d->items[k], name)) found = d->items[k + 1];
    return found;
}

/* A list of `n` ints each in [0, classes). */
static st_status check_labels(const pk_value *list, const char *key, int64_t n, int classes, const char *where) {
    if (!list) return st_fail(ST_ERR_FORMAT, "%s: the batch has no '%s' entry", where, key);
    if (list->kind != PK_LIST) return st_fail(ST_ERR_FORMAT, "%s: '%s' is not a list", where, key);
    if ((int64_t)list->count != n)
        return st_fail(ST_ERR_FORMAT, "%s: %zu %s for %lld images", where, list->count, key, (long long)n);
    for (size_t i = 0; i < list->count; i++) {
        const pk_value *v = list->items[i];
        if (v->kind != PK_INT || v->i < 0 || v->i >= classes)
            return st_fail(ST_ERR_FORMAT, "%s: %s[%zu] is not a label in 0..%d", where, key, i, classes - 1);
    }
    return ST_OK;
}

st_status st_cifar_pickle_append(st_dataset *d, const uint8_t *raw, size_t size, int cifar100, const char *where) {
    pk_reader r;
    memset(&r, 0, sizeof r);
    r.data = raw;
    r.size = size;
    r.where = where;
    pk_value *root = NULL;
    st_status s = run(&r, &root);
    const pk_value *data = NULL, *labels = NULL;
    const char *label_key = cifar100 ? "fine_labels" : "labels";
    int64_t n = 0;
    if (s == ST_OK && root->kind != PK_DICT) s = st_fail(ST_ERR_FORMAT, "%s: the pickle is not a dict", where);
    if (s == ST_OK) {
        data = dict_get(root, "data");
        labels = dict_get(root, label_key);
        if (!data) s = st_fail(ST_ERR_FORMAT, "%s: the batch has no 'data' entry", where);
        else if (data->kind != PK_NDARRAY || !data->built || data->itemsize != 1 || data->dtype[0] != 'u' ||
                 data->ndim != 2 || data->shape[1] != CIFAR_IMAGE_BYTES)
            s = st_fail(ST_ERR_FORMAT, "%s: 'data' is not a uint8 array of shape (N, 3072)", where);
        else if ((n = data->shape[0]) == 0)
            s = st_fail(ST_ERR_FORMAT, "%s: the batch holds no images", where);
    }
    if (s == ST_OK) s = check_labels(labels, label_key, n, cifar100 ? 100 : 10, where);
    if (s == ST_OK && cifar100 && dict_get(root, "coarse_labels"))
        s = check_labels(dict_get(root, "coarse_labels"), "coarse_labels", n, 20, where);
    if (s == ST_OK) {
        size_t total = (size_t)d->count + (size_t)n;
        uint8_t *pixels = realloc(d->pixels, total * CIFAR_IMAGE_BYTES);
        if (pixels) d->pixels = pixels;
        int32_t *lab = pixels ? realloc(d->labels, total * sizeof(int32_t)) : NULL;
        if (lab) d->labels = lab;
        if (!pixels || !lab) {
            s = st_fail(ST_ERR_NOMEM, "out of memory loading %s", where);
        } else {
            memcpy(d->pixels + (size_t)d->count * CIFAR_IMAGE_BYTES, data->bytes, (size_t)n * CIFAR_IMAGE_BYTES);
            for (int64_t i = 0; i < n; i++) d->labels[d->count + i] = (int32_t)labels->items[i]->i;
            d->count = (int64_t)total;
        }
    }
    pk_free(&r);
    return s;
}
