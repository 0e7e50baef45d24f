/* Flags from the run-config table (config_flags.h). */
#include "config_flags.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

void st_config_flags_init(st_config_flags *t) { memset(t, 0, sizeof *t); }

void st_config_flags_add(st_config_flags *t, st_flag flag) {
    assert(t->n < ST_CONFIG_FLAGS_MAX);
    t->field[t->n] = NULL;
    t->flags[t->n++] = flag;
}

static void add_flag(st_config_flags *t, const st_config_field *f, st_flag flag, const char *help,
                     const char *default_text) {
    assert(t->n < ST_CONFIG_FLAGS_MAX);
    char *text = t->help[t->n];
    size_t size = sizeof t->help[t->n];
    if (default_text && default_text[0]) snprintf(text, size, "%s (%s)", help, default_text);
    else snprintf(text, size, "%s", help);
    flag.help = text;
    t->field[t->n] = f;
    t->flags[t->n++] = flag;
}

static const st_flag_type flag_type[] = {
    [ST_FIELD_STRING] = ST_FLAG_STRING, [ST_FIELD_INT] = ST_FLAG_INT, [ST_FIELD_U64] = ST_FLAG_U64,
    [ST_FIELD_DOUBLE] = ST_FLAG_DOUBLE};

void st_config_flags_add_field(st_config_flags *t, st_train_config *c, const char *key, const char *help) {
    const st_config_field *f = st_config_field_find(key);
    assert(f);
    void *target = (char *)c + f->offset;
    if (f->switches[0].flag) {
        for (int k = 0; k < 2 && f->switches[k].flag; k++) {
            st_flag flag = {f->switches[k].flag, ST_FLAG_SWITCH, target, 0, f->switches[k].value, NULL, NULL, NULL, 0};
            add_flag(t, f, flag, help && k == 0 ? help : f->switches[k].help, NULL);
        }
        return;
    }
    char shown[128] = "";
    if (f->default_note) {
        snprintf(shown, sizeof shown, "%s", f->default_note);
    } else {
        st_train_config defaults;
        st_train_config_defaults(&defaults);
        st_config_field_format(f, &defaults, shown, sizeof shown);
    }
    st_flag flag = {f->flag, flag_type[f->type], target, f->type == ST_FIELD_STRING ? f->size : 0, 0, NULL, NULL, NULL, 0};
    add_flag(t, f, flag, help ? help : f->help, shown);
    if (f->alias) {
        char alias_help[96];
        snprintf(alias_help, sizeof alias_help, "the reference's name for --%s", f->flag);
        flag.name = f->alias;
        add_flag(t, f, flag, alias_help, NULL);
    }
}

void st_config_flags_add_all(st_config_flags *t, st_train_config *c) {
    int n;
    const st_config_field *fields = st_config_fields(&n);
    for (int i = 0; i < n; i++) st_config_flags_add_field(t, c, fields[i].key, NULL);
}

void st_config_flags_record_given(const st_config_flags *t, st_train_config *c) {
    c->given[0] = 0;
    for (int i = 0; i < t->n; i++) {
        const st_config_field *f = t->field[i];
        /* two spellings of one field (--augment, --no-augment) are one key */
        if (f && t->flags[i].given) st_config_mark_given(c, f->key);
    }
}

void st_config_flags_add_alias(st_config_flags *t, st_train_config *c, const char *key, const char *alias,
                               const char *help) {
    const st_config_field *f = st_config_field_find(key);
    assert(f && !f->switches[1].flag); /* a field with one switch: the alias is that switch */
    st_flag flag = {alias, flag_type[f->type], (char *)c + f->offset, f->type == ST_FIELD_STRING ? f->size : 0, 0,
                    NULL, NULL, NULL, 0};
    if (f->switches[0].flag) flag.type = ST_FLAG_SWITCH, flag.value = f->switches[0].value;
    add_flag(t, f, flag, help, NULL);
}
