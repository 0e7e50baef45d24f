/* Text output for the HTML report: formatted appends to a growable buffer
 * (the JSON builder of io/json.h, which never fails visibly: the caller
 * checks once at the end) and escaping of text placed in HTML / SVG. */
#ifndef ST_REPORT_HTML_H
#define ST_REPORT_HTML_H

#include "io/json.h"

typedef st_json_builder st_text;

/* printf-style append. */
void st_text_printf(st_text *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Appends `s` with & < > " ' replaced by entities (safe in text and attributes). */
void st_text_escaped(st_text *t, const char *s);

#endif
