/* Flag parsing with one clear message per mistake (see flags.h). */
#include "flags.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int same_name(const char *a, const char *b, size_t blen) {
    size_t i = 0;
    for (; i < blen && a[i]; i++) {
        char x = a[i] == '_' ? '-' : a[i], y = b[i] == '_' ? '-' : b[i];
        if (x != y) return 0;
    }
    return i == blen && a[i] == 0;
}

static void print_usage(const char *usage, const st_flag *flags, int n) {
    printf("%s\n\nOptions:\n", usage);
    for (int i = 0; i < n; i++) {
        const char *arg = flags[i].type == ST_FLAG_SWITCH ? ""
                          : flags[i].type == ST_FLAG_STRING ? " S"
                          : flags[i].type == ST_FLAG_DOUBLE ? " X"
                                                             : " N";
        char left[64];
        snprintf(left, sizeof left, "--%s%s", flags[i].name, arg);
        printf("  %-24s %s\n", left, flags[i].help);
    }
    printf("  %-24s %s\n", "--help", "show this help");
}

/* Numbers are plain decimals: no leading blanks (strtoull would read " -1"
 * as 2^64 - 1), no hexadecimal ("0x10"). */
static int plain_decimal(const char *value) {
    if (!value[0] || value[0] == ' ' || (value[0] >= '\t' && value[0] <= '\r')) return 0;
    return strpbrk(value, "xXpP") == NULL;
}

static int set_value(const char *command, st_flag *f, const char *value) {
    char *end = NULL;
    errno = 0;
    if (f->type != ST_FLAG_STRING && f->type != ST_FLAG_SWITCH && !plain_decimal(value)) {
        fprintf(stderr, "sparsetrain %s: --%s expects %s, got '%s'\n", command, f->name,
                f->type == ST_FLAG_DOUBLE ? "a decimal number" : "a decimal integer", value);
        return -1;
    }
    switch (f->type) {
    case ST_FLAG_STRING:
        if (strlen(value) >= f->size) {
            fprintf(stderr, "sparsetrain %s: value of --%s is too long\n", command, f->name);
            return -1;
        }
        memcpy(f->target, value, strlen(value) + 1);
        return 0;
    case ST_FLAG_INT: {
        long v = strtol(value, &end, 10);
        if (!*value || *end || errno || v < -2147483647L || v > 2147483647L) break;
        *(int *)f->target = (int)v;
        return 0;
    }
    case ST_FLAG_U64: {
        if (value[0] == '-') break;
        unsigned long long v = strtoull(value, &end, 10);
        if (!*value || *end || errno) break;
        *(uint64_t *)f->target = v;
        return 0;
    }
    case ST_FLAG_DOUBLE: {
        double v = strtod(value, &end);
        if (!*value || *end || errno || !isfinite(v)) break;
        *(double *)f->target = v;
        return 0;
    }
    case ST_FLAG_SWITCH: break;
    }
    fprintf(stderr, "sparsetrain %s: --%s expects %s, got '%s'\n", command, f->name,
            f->type == ST_FLAG_DOUBLE ? "a number" : "an integer", value);
    return -1;
}

int st_flags_parse(const char *command, const char *usage, st_flag *flags, int n, int argc, char **argv, int first) {
    return st_flags_parse_given(command, usage, flags, n, argc, argv, first, NULL);
}

int st_flags_parse_given(const char *command, const char *usage, st_flag *flags, int n, int argc, char **argv,
                         int first, int *given) {
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_usage(usage, flags, n);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "sparsetrain %s: unexpected argument '%s' (flags start with --; see --help)\n", command,
                    arg);
            return -1;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        st_flag *f = NULL;
        for (int k = 0; k < n && !f; k++)
            if (same_name(flags[k].name, name, len)) f = &flags[k];
        if (!f) {
            fprintf(stderr, "sparsetrain %s: unknown flag '--%.*s' (see sparsetrain %s --help)\n", command, (int)len,
                    name, command);
            return -1;
        }
        if (f->type == ST_FLAG_SWITCH) {
            if (eq) {
                fprintf(stderr, "sparsetrain %s: --%s takes no value\n", command, f->name);
                return -1;
            }
            *(int *)f->target = f->value;
            if (given) given[f - flags] = 1;
            continue;
        }
        const char *value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!value) {
            fprintf(stderr, "sparsetrain %s: --%s needs a value\n", command, f->name);
            return -1;
        }
        if (set_value(command, f, value) != 0) return -1;
        if (given) given[f - flags] = 1;
    }
    return 0;
}
