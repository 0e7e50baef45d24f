/* Strict recursive-descent JSON parser (values carved from a chunked arena
 * owned by the document), declared in json.h; the text builder is in
 * json_builder.c.
 * Every rejection names the source, the line/column and what was expected. */
#include "io/json.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

enum { ST_JSON_HARD_MAX_DEPTH = 1024, ST_JSON_CHUNK_BYTES = 64 * 1024 };

typedef struct st_json_chunk {
    struct st_json_chunk *next;
    size_t used;
    size_t capacity;
    _Alignas(16) unsigned char bytes[];
} st_json_chunk;

struct st_json_document {
    st_json_chunk *chunks;   /* newest first */
    st_json_value *root;
};

typedef struct st_json_parser {
    const char *text;
    size_t length;
    size_t pos;
    const char *source;
    st_json_limits limits;
    size_t values;
    st_json_document *doc;
    const st_json_value **scratch;   /* members of one object, for the duplicate-key check */
    size_t scratch_capacity;
} st_json_parser;

st_json_limits st_json_default_limits(void) {
    st_json_limits limits;
    limits.max_bytes = (size_t)64 << 20;
    limits.max_depth = 64;
    limits.max_values = (size_t)4 << 20;
    return limits;
}

const char *st_json_type_name(st_json_type type) {
    switch (type) {
    case ST_JSON_NULL: return "null";
    case ST_JSON_BOOL: return "boolean";
    case ST_JSON_NUMBER: return "number";
    case ST_JSON_STRING: return "string";
    case ST_JSON_ARRAY: return "array";
    case ST_JSON_OBJECT: return "object";
    }
    return "unknown";
}

/* ---- arena ---------------------------------------------------------------- */

static void *arena_alloc(st_json_document *doc, size_t bytes) {
    bytes = (bytes + 15) & ~(size_t)15;
    st_json_chunk *chunk = doc->chunks;
    if (!chunk || chunk->capacity - chunk->used < bytes) {
        size_t capacity = bytes > ST_JSON_CHUNK_BYTES ? bytes : ST_JSON_CHUNK_BYTES;
        chunk = st_malloc(sizeof *chunk + capacity, "JSON document");
        if (!chunk) return NULL;
        chunk->next = doc->chunks;
        chunk->used = 0;
        chunk->capacity = capacity;
        doc->chunks = chunk;
    }
    void *p = chunk->bytes + chunk->used;
    chunk->used += bytes;
    return p;
}

void st_json_free(st_json_document *doc) {
    if (!doc) return;
    st_json_chunk *chunk = doc->chunks;
    while (chunk) {
        st_json_chunk *next = chunk->next;
        free(chunk);
        chunk = next;
    }
    free(doc);
}

const st_json_value *st_json_root(const st_json_document *doc) { return doc ? doc->root : NULL; }

/* ---- errors ----------------------------------------------------------------- */

static st_status parse_error(const st_json_parser *p, size_t at, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static st_status parse_error(const st_json_parser *p, size_t at, const char *fmt, ...) {
    size_t line = 1, column = 1;
    if (at > p->length) at = p->length;
    for (size_t i = 0; i < at; i++) {
        if (p->text[i] == '\n') {
            line++;
            column = 1;
        } else {
            column++;
        }
    }
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return st_fail(ST_ERR_FORMAT, "%s: invalid JSON at line %zu, column %zu (byte %zu): %s",
                   p->source, line, column, at, what);
}

/* Describes the byte at `at` for messages: 'x', byte 0x.., or end of text. */
static const char *describe_byte(const st_json_parser *p, size_t at, char buf[32]) {
    if (at >= p->length) return "end of text";
    unsigned char c = (unsigned char)p->text[at];
    if (c >= 0x21 && c < 0x7f)
        snprintf(buf, 32, "'%c'", c);
    else
        snprintf(buf, 32, "byte 0x%02x", c);
    return buf;
}

/* ---- UTF-8 ------------------------------------------------------------------ */

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0 if malformed. */
static size_t utf8_sequence_length(const unsigned char *s, size_t avail) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned lo = 0x80, hi = 0xbf;   /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0) lo = 0xa0;        /* overlong */
        if (c == 0xed) hi = 0x9f;        /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0) lo = 0x90;        /* overlong */
        if (c == 0xf4) hi = 0x8f;        /* above U+10FFFF */
    } else {
        return 0;
    }
    if (avail < n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return n;
}

int st_json_utf8_valid(const char *bytes, size_t length) {
    const unsigned char *s = (const unsigned char *)bytes;
    size_t i = 0;
    while (i < length) {
        size_t n = utf8_sequence_length(s + i, length - i);
        if (!n) return 0;
        i += n;
    }
    return 1;
}

static size_t utf8_encode(unsigned long cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* ---- lexing helpers ----------------------------------------------------------- */

static void skip_whitespace(st_json_parser *p) {
    while (p->pos < p->length) {
        char c = p->text[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads the 4 hex digits at p->pos (after "\u"). */
static st_status read_hex4(st_json_parser *p, unsigned long *out) {
    if (p->length - p->pos < 4) return parse_error(p, p->pos, "\\u escape needs 4 hex digits");
    unsigned long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(p->text[p->pos + (size_t)i]);
        if (h < 0) return parse_error(p, p->pos + (size_t)i, "\\u escape needs 4 hex digits");
        v = (v << 4) | (unsigned long)h;
    }
    p->pos += 4;
    *out = v;
    return ST_OK;
}

/* Parses a string starting at the opening quote; the decoded text goes into
 * the arena. Decoding never grows the text, so the raw span bounds the size. */
static st_status parse_string(st_json_parser *p, const char **out, size_t *out_length) {
    size_t start = p->pos;
    ST_ASSERT(p->text[start] == '"');
    size_t end = start + 1;
    while (end < p->length && p->text[end] != '"') {
        if (p->text[end] == '\\') end++;
        end++;
    }
    if (end >= p->length) return parse_error(p, start, "unterminated string");

    char *decoded = arena_alloc(p->doc, end - start);
    if (!decoded) return ST_ERR_NOMEM;
    size_t n = 0;
    p->pos = start + 1;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->text[p->pos];
        if (c < 0x20) return parse_error(p, p->pos, "unescaped control character 0x%02x in string", c);
        if (c >= 0x80) {
            size_t len = utf8_sequence_length((const unsigned char *)p->text + p->pos, end - p->pos);
            if (!len) return parse_error(p, p->pos, "invalid UTF-8 in string");
            memcpy(decoded + n, p->text + p->pos, len);
            n += len;
            p->pos += len;
            continue;
        }
        if (c != '\\') {
            decoded[n++] = (char)c;
            p->pos++;
            continue;
        }
        size_t escape_at = p->pos;
        char e = p->text[p->pos + 1];
        p->pos += 2;
        switch (e) {
        case '"': decoded[n++] = '"'; break;
        case '\\': decoded[n++] = '\\'; break;
        case '/': decoded[n++] = '/'; break;
        case 'b': decoded[n++] = '\b'; break;
        case 'f': decoded[n++] = '\f'; break;
        case 'n': decoded[n++] = '\n'; break;
        case 'r': decoded[n++] = '\r'; break;
        case 't': decoded[n++] = '\t'; break;
        case 'u': {
            unsigned long cp;
            ST_TRY(read_hex4(p, &cp));
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return parse_error(p, escape_at, "lone low surrogate \\u%04lx", cp);
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (end - p->pos < 6 || p->text[p->pos] != '\\' || p->text[p->pos + 1] != 'u')
                    return parse_error(p, escape_at, "high surrogate \\u%04lx not followed by a low surrogate", cp);
                p->pos += 2;
                unsigned long low;
                ST_TRY(read_hex4(p, &low));
                if (low < 0xdc00 || low > 0xdfff)
                    return parse_error(p, escape_at, "high surrogate \\u%04lx not followed by a low surrogate", cp);
                cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
            }
            n += utf8_encode(cp, decoded + n);
            break;
        }
        default: return parse_error(p, escape_at, "invalid escape sequence in string");
        }
    }
    /* A trailing backslash would have made the scan step over the closing quote. */
    ST_ASSERT(p->pos == end);
    decoded[n] = '\0';
    p->pos = end + 1;
    *out = decoded;
    *out_length = n;
    return ST_OK;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* strtod with a '.' decimal point whatever the C locale says. */
static double parse_double(const char *literal, size_t length, int *ok) {
    char stack_buf[128];
    char *buf = length < sizeof stack_buf ? stack_buf : malloc(length + 1);
    if (!buf) {
        *ok = 0;
        return 0.0;
    }
    memcpy(buf, literal, length);
    buf[length] = '\0';
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if ((size_t)(end - buf) != length) {
        const char *point = localeconv()->decimal_point;
        char *dot = strchr(buf, '.');
        if (dot && point && strlen(point) == 1) *dot = point[0];
        errno = 0;
        v = strtod(buf, &end);
    }
    *ok = (size_t)(end - buf) == length && !(errno == ERANGE && isinf(v));
    if (buf != stack_buf) free(buf);
    return v;
}

static st_status parse_number(st_json_parser *p, st_json_value *v) {
    size_t start = p->pos, i = p->pos;
    const char *t = p->text;
    int negative = 0, integral = 1;
    if (i < p->length && t[i] == '-') {
        negative = 1;
        i++;
    }
    if (i >= p->length || !is_digit(t[i])) return parse_error(p, i, "expected a digit in number");
    if (t[i] == '0') {
        i++;
        if (i < p->length && is_digit(t[i])) return parse_error(p, i, "leading zero in number");
    } else {
        while (i < p->length && is_digit(t[i])) i++;
    }
    size_t digits_end = i;
    if (i < p->length && t[i] == '.') {
        integral = 0;
        i++;
        if (i >= p->length || !is_digit(t[i])) return parse_error(p, i, "expected a digit after '.'");
        while (i < p->length && is_digit(t[i])) i++;
    }
    if (i < p->length && (t[i] == 'e' || t[i] == 'E')) {
        integral = 0;
        i++;
        if (i < p->length && (t[i] == '+' || t[i] == '-')) i++;
        if (i >= p->length || !is_digit(t[i])) return parse_error(p, i, "expected a digit in exponent");
        while (i < p->length && is_digit(t[i])) i++;
    }
    v->type = ST_JSON_NUMBER;
    if (integral) {
        uint64_t magnitude = 0;
        int fits = 1;
        for (size_t k = start + (size_t)negative; k < digits_end; k++) {
            unsigned d = (unsigned)(t[k] - '0');
            if (magnitude > (UINT64_MAX - d) / 10) {
                fits = 0;
                break;
            }
            magnitude = magnitude * 10 + d;
        }
        if (fits && magnitude <= (uint64_t)INT64_MAX) {
            v->is_int64 = 1;
            v->int64 = negative ? -(int64_t)magnitude : (int64_t)magnitude;
        } else if (fits && negative && magnitude == (uint64_t)INT64_MAX + 1) {
            v->is_int64 = 1;
            v->int64 = INT64_MIN;
        }
    }
    if (v->is_int64) {
        v->number = (double)v->int64;
    } else {
        int ok;
        v->number = parse_double(t + start, i - start, &ok);
        if (!ok) return parse_error(p, start, "number out of range");
    }
    p->pos = i;
    return ST_OK;
}

static int key_compare(const void *a, const void *b) {
    const st_json_value *x = *(const st_json_value *const *)a;
    const st_json_value *y = *(const st_json_value *const *)b;
    size_t n = x->key_length < y->key_length ? x->key_length : y->key_length;
    int c = memcmp(x->key, y->key, n);
    if (c) return c;
    return (x->key_length > y->key_length) - (x->key_length < y->key_length);
}

static st_status check_duplicate_keys(st_json_parser *p, const st_json_value *obj, size_t obj_pos) {
    if (obj->count < 2) return ST_OK;
    if (obj->count > p->scratch_capacity) {
        const st_json_value **grown = realloc(p->scratch, obj->count * sizeof *grown);
        if (!grown) return st_fail(ST_ERR_NOMEM, "%s: out of memory checking JSON object keys", p->source);
        p->scratch = grown;
        p->scratch_capacity = obj->count;
    }
    size_t n = 0;
    for (const st_json_value *m = obj->first_child; m; m = m->next) p->scratch[n++] = m;
    qsort(p->scratch, n, sizeof *p->scratch, key_compare);
    for (size_t i = 1; i < n; i++)
        if (key_compare(&p->scratch[i - 1], &p->scratch[i]) == 0)
            return parse_error(p, obj_pos, "duplicate key \"%.200s\" in object", p->scratch[i]->key);
    return ST_OK;
}

static st_status parse_value(st_json_parser *p, int depth, st_json_value **out);

static st_json_value *new_value(st_json_parser *p, st_status *status) {
    if (p->values >= p->limits.max_values) {
        *status = parse_error(p, p->pos, "more than %zu values", p->limits.max_values);
        return NULL;
    }
    st_json_value *v = arena_alloc(p->doc, sizeof *v);
    if (!v) {
        *status = ST_ERR_NOMEM;
        return NULL;
    }
    memset(v, 0, sizeof *v);
    p->values++;
    return v;
}

static st_status parse_container(st_json_parser *p, int depth, st_json_value *v) {
    size_t open_pos = p->pos;
    int is_object = p->text[p->pos] == '{';
    char close = is_object ? '}' : ']';
    char buf[32];
    if (depth > p->limits.max_depth) return parse_error(p, open_pos, "nesting deeper than %d", p->limits.max_depth);
    v->type = is_object ? ST_JSON_OBJECT : ST_JSON_ARRAY;
    p->pos++;
    skip_whitespace(p);
    if (p->pos < p->length && p->text[p->pos] == close) {
        p->pos++;
        return ST_OK;
    }
    st_json_value *last = NULL;
    for (;;) {
        const char *key = NULL;
        size_t key_length = 0;
        if (is_object) {
            if (p->pos >= p->length || p->text[p->pos] != '"')
                return parse_error(p, p->pos, "expected a string key, found %s", describe_byte(p, p->pos, buf));
            ST_TRY(parse_string(p, &key, &key_length));
            skip_whitespace(p);
            if (p->pos >= p->length || p->text[p->pos] != ':')
                return parse_error(p, p->pos, "expected ':' after object key, found %s", describe_byte(p, p->pos, buf));
            p->pos++;
            skip_whitespace(p);
        }
        st_json_value *child;
        ST_TRY(parse_value(p, depth, &child));
        child->key = key;
        child->key_length = key_length;
        if (last)
            last->next = child;
        else
            v->first_child = child;
        last = child;
        v->count++;
        skip_whitespace(p);
        if (p->pos < p->length && p->text[p->pos] == ',') {
            p->pos++;
            skip_whitespace(p);
            continue;
        }
        if (p->pos < p->length && p->text[p->pos] == close) {
            p->pos++;
            break;
        }
        return parse_error(p, p->pos, "expected ',' or '%c', found %s", close, describe_byte(p, p->pos, buf));
    }
    if (is_object) ST_TRY(check_duplicate_keys(p, v, open_pos));
    return ST_OK;
}

static int match_literal(st_json_parser *p, const char *word) {
    size_t n = strlen(word);
    if (p->length - p->pos < n || memcmp(p->text + p->pos, word, n) != 0) return 0;
    p->pos += n;
    return 1;
}

/* Parses the value at p->pos (whitespace already skipped). */
static st_status parse_value(st_json_parser *p, int depth, st_json_value **out) {
    st_status status = ST_OK;
    st_json_value *v = new_value(p, &status);
    if (!v) return status;
    *out = v;
    char buf[32];
    if (p->pos >= p->length) return parse_error(p, p->pos, "expected a value, found end of text");
    char c = p->text[p->pos];
    switch (c) {
    case '{':
    case '[': return parse_container(p, depth + 1, v);
    case '"':
        v->type = ST_JSON_STRING;
        return parse_string(p, &v->string, &v->string_length);
    case 't':
    case 'f':
        if (match_literal(p, "true")) {
            v->type = ST_JSON_BOOL;
            v->boolean = 1;
            return ST_OK;
        }
        if (match_literal(p, "false")) {
            v->type = ST_JSON_BOOL;
            return ST_OK;
        }
        break;
    case 'n':
        if (match_literal(p, "null")) {
            v->type = ST_JSON_NULL;
            return ST_OK;
        }
        break;
    default:
        if (c == '-' || is_digit(c)) return parse_number(p, v);
        break;
    }
    return parse_error(p, p->pos, "expected a value, found %s", describe_byte(p, p->pos, buf));
}

st_status st_json_parse(const char *text, size_t length, const char *source_name,
                        const st_json_limits *limits, st_json_document **out) {
    if (!out) return st_fail(ST_ERR_ARGUMENT, "st_json_parse: NULL output");
    *out = NULL;
    if (!source_name) source_name = "JSON text";
    if (!text && length) return st_fail(ST_ERR_ARGUMENT, "%s: NULL JSON text", source_name);
    st_json_parser p;
    memset(&p, 0, sizeof p);
    p.text = text ? text : "";
    p.length = length;
    p.source = source_name;
    p.limits = limits ? *limits : st_json_default_limits();
    if (p.limits.max_depth > ST_JSON_HARD_MAX_DEPTH) p.limits.max_depth = ST_JSON_HARD_MAX_DEPTH;
    if (length > p.limits.max_bytes)
        return st_fail(ST_ERR_FORMAT, "%s: JSON text of %zu bytes exceeds the limit of %zu bytes", source_name,
                       length, p.limits.max_bytes);
    p.doc = st_calloc(1, sizeof *p.doc, "JSON document");
    if (!p.doc) return ST_ERR_NOMEM;

    st_status status;
    skip_whitespace(&p);
    status = parse_value(&p, 0, &p.doc->root);
    if (status == ST_OK) {
        skip_whitespace(&p);
        char buf[32];
        if (p.pos != p.length)
            status = parse_error(&p, p.pos, "unexpected %s after the value", describe_byte(&p, p.pos, buf));
    }
    if (status == ST_ERR_NOMEM) st_fail_context(ST_ERR_NOMEM, "%s: parsing JSON", source_name);
    free(p.scratch);
    if (status != ST_OK) {
        st_json_free(p.doc);
        return status;
    }
    *out = p.doc;
    return ST_OK;
}

const st_json_value *st_json_object_get(const st_json_value *obj, const char *key) {
    if (!obj || obj->type != ST_JSON_OBJECT || !key) return NULL;
    size_t n = strlen(key);
    for (const st_json_value *m = obj->first_child; m; m = m->next)
        if (m->key_length == n && memcmp(m->key, key, n) == 0) return m;
    return NULL;
}

const st_json_value *st_json_array_at(const st_json_value *arr, size_t index) {
    if (!arr || arr->type != ST_JSON_ARRAY || index >= arr->count) return NULL;
    const st_json_value *e = arr->first_child;
    while (index--) e = e->next;
    return e;
}
