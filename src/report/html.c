/* Formatted and escaped appends for the report (see html.h). */
#include "report/html.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void st_text_printf(st_text *t, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        st_json_append_raw(t, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        t->failed = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    st_json_append_raw(t, big, (size_t)n);
    free(big);
}

void st_text_escaped(st_text *t, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': st_json_append_text(t, "&amp;"); break;
        case '<': st_json_append_text(t, "&lt;"); break;
        case '>': st_json_append_text(t, "&gt;"); break;
        case '"': st_json_append_text(t, "&quot;"); break;
        case '\'': st_json_append_text(t, "&#39;"); break;
        default: st_json_append_raw(t, s, 1);
        }
    }
}
