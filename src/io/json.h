/* A small strict JSON (RFC 8259) parser and a string builder for writing JSON.
 * Used for safetensors headers and any other JSON the library reads or writes
 * (logs, run arguments). Parsing never trusts its input: depth, size and
 * value-count limits bound memory and recursion; text must be valid UTF-8. */
#ifndef ST_IO_JSON_H
#define ST_IO_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "sparsetrain.h"

typedef enum st_json_type {
    ST_JSON_NULL,
    ST_JSON_BOOL,
    ST_JSON_NUMBER,
    ST_JSON_STRING,
    ST_JSON_ARRAY,
    ST_JSON_OBJECT
} st_json_type;

/* One parsed value. All pointers point into the owning st_json_document and
 * live as long as it does. Children of arrays and objects form a singly
 * linked list in document order (first_child -> next -> ...). */
typedef struct st_json_value st_json_value;
struct st_json_value {
    st_json_type type;
    int boolean;                       /* ST_JSON_BOOL: 0 or 1 */
    double number;                     /* ST_JSON_NUMBER: the value (nearest double) */
    int is_int64;                      /* ST_JSON_NUMBER: literal had no fraction/exponent and fits int64 */
    int64_t int64;                     /* ...then its exact value */
    const char *string;                /* ST_JSON_STRING: decoded UTF-8, NUL-terminated */
    size_t string_length;              /* bytes, excluding the NUL (a \u0000 escape can make strlen shorter) */
    size_t count;                      /* ST_JSON_ARRAY / ST_JSON_OBJECT: number of children */
    const st_json_value *first_child;  /* ARRAY / OBJECT: first element or member */
    const st_json_value *next;         /* next sibling inside the parent, NULL at the end */
    const char *key;                   /* member of an object: its decoded key (NUL-terminated) */
    size_t key_length;                 /* bytes, excluding the NUL */
};

typedef struct st_json_limits {
    size_t max_bytes;   /* longest accepted text */
    int max_depth;      /* deepest nesting of arrays/objects (1 = a flat array or object) */
    size_t max_values;  /* most values in the document (bounds memory use) */
} st_json_limits;

/* Defaults: 64 MiB of text, depth 64, 4 Mi values. */
st_json_limits st_json_default_limits(void);

/* A parsed document: owns every value and string reachable from its root. */
typedef struct st_json_document st_json_document;

/*! Parses `length` bytes of `text` (need not be NUL-terminated) as exactly one
 *  JSON value surrounded by optional whitespace. Objects with duplicate keys
 *  are rejected. `source_name` (a file name, or "header of X") starts every
 *  error message; `limits` may be NULL for the defaults.
 *  @return ST_OK and *out (free with st_json_free), ST_ERR_FORMAT with a
 *  message naming the source, line, column and problem, or ST_ERR_NOMEM. */
st_status st_json_parse(const char *text, size_t length, const char *source_name,
                        const st_json_limits *limits, st_json_document **out);

/*! @return the root value of a parsed document. */
const st_json_value *st_json_root(const st_json_document *doc);

/*! Frees a document and all its values; accepts NULL. */
void st_json_free(st_json_document *doc);

/*! @return the member of object `obj` whose key equals `key` (keys containing
 *  a NUL byte never match), or NULL if absent or `obj` is not an object. */
const st_json_value *st_json_object_get(const st_json_value *obj, const char *key);

/*! @return element `index` of array `arr` (linear time), or NULL. */
const st_json_value *st_json_array_at(const st_json_value *arr, size_t index);

/*! @return a constant name such as "object" or "string" for messages. */
const char *st_json_type_name(st_json_type type);

/*! @return 1 if `bytes` is well-formed UTF-8 (no overlongs, no surrogates), else 0. */
int st_json_utf8_valid(const char *bytes, size_t length);

/* Growable text buffer for producing JSON. Appends never fail visibly: after
 * an allocation failure the builder is marked failed and st_json_builder_finish
 * reports ST_ERR_NOMEM, so callers append freely and check once. */
typedef struct st_json_builder {
    char *data;       /* NUL-terminated while not failed */
    size_t length;
    size_t capacity;
    int failed;
} st_json_builder;

void st_json_builder_init(st_json_builder *b);
void st_json_builder_free(st_json_builder *b);   /* releases data; b may be reused after init */
void st_json_append_raw(st_json_builder *b, const char *text, size_t length);
void st_json_append_text(st_json_builder *b, const char *text);   /* raw, NUL-terminated */
/* A quoted JSON string; `text` must be UTF-8 (check with st_json_utf8_valid). */
void st_json_append_string(st_json_builder *b, const char *text);
void st_json_append_string_n(st_json_builder *b, const char *text, size_t length);
void st_json_append_int(st_json_builder *b, int64_t value);
/* Shortest text that reads back to the same double; NaN and infinities become null. */
void st_json_append_double(st_json_builder *b, double value);

/*! Hands the text to the caller (free() it) and resets the builder.
 *  @return ST_OK, or ST_ERR_NOMEM if an append failed (the builder is freed). */
st_status st_json_builder_finish(st_json_builder *b, char **text, size_t *length);

#endif
