/* The JSON text builder declared in json.h: appends escaped strings and
 * numbers that read back exactly; a failed allocation is remembered and
 * reported once by st_json_builder_finish. */
#include "io/json.h"

#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

void st_json_builder_init(st_json_builder *b) { memset(b, 0, sizeof *b); }

void st_json_builder_free(st_json_builder *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

static int builder_reserve(st_json_builder *b, size_t extra) {
    if (b->failed) return 0;
    if (extra > SIZE_MAX - b->length - 1) {
        b->failed = 1;
        return 0;
    }
    size_t need = b->length + extra + 1;
    if (need <= b->capacity) return 1;
    size_t capacity = b->capacity ? b->capacity : 256;
    while (capacity < need) capacity = capacity > SIZE_MAX / 2 ? need : capacity * 2;
    char *grown = realloc(b->data, capacity);
    if (!grown) {
        b->failed = 1;
        return 0;
    }
    b->data = grown;
    b->capacity = capacity;
    return 1;
}

void st_json_append_raw(st_json_builder *b, const char *text, size_t length) {
    if (!builder_reserve(b, length)) return;
    memcpy(b->data + b->length, text, length);
    b->length += length;
    b->data[b->length] = '\0';
}

void st_json_append_text(st_json_builder *b, const char *text) { st_json_append_raw(b, text, strlen(text)); }

void st_json_append_string_n(st_json_builder *b, const char *text, size_t length) {
    static const char hex[] = "0123456789abcdef";
    st_json_append_raw(b, "\"", 1);
    size_t run = 0;   /* bytes copied verbatim are appended in runs */
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        st_json_append_raw(b, text + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t n = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        st_json_append_raw(b, esc, n);
    }
    st_json_append_raw(b, text + run, length - run);
    st_json_append_raw(b, "\"", 1);
}

void st_json_append_string(st_json_builder *b, const char *text) {
    st_json_append_string_n(b, text, strlen(text));
}

void st_json_append_int(st_json_builder *b, int64_t value) {
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld", (long long)value);
    st_json_append_raw(b, buf, (size_t)n);
}

void st_json_append_double(st_json_builder *b, double value) {
    if (!isfinite(value)) {
        st_json_append_raw(b, "null", 4);
        return;
    }
    char buf[40];
    int n = 0;
    for (int precision = 15; precision <= 17; precision++) {
        n = snprintf(buf, sizeof buf, "%.*g", precision, value);
        if (strtod(buf, NULL) == value) break;   /* both use the C locale's decimal point */
    }
    const char *point = localeconv()->decimal_point;
    if (point && point[0] && point[0] != '.' && !point[1]) {
        char *p = strchr(buf, point[0]);
        if (p) *p = '.';
    }
    st_json_append_raw(b, buf, (size_t)n);
}

st_status st_json_builder_finish(st_json_builder *b, char **text, size_t *length) {
    if (b->failed || !builder_reserve(b, 0)) {
        st_json_builder_free(b);
        return st_fail(ST_ERR_NOMEM, "out of memory building JSON text");
    }
    *text = b->data;
    if (length) *length = b->length;
    memset(b, 0, sizeof *b);
    return ST_OK;
}
