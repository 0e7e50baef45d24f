/* The reference code's data protocol (see protocol.h). */
#include "data/protocol.h"

#include <string.h>

#include "core/status.h"
#include "data/catalog.h"

static int is_reference(const char *protocol) { return protocol && strcmp(protocol, "reference") == 0; }

st_status st_protocol_validate(const char *protocol) {
    if (protocol && protocol[0] && strcmp(protocol, "sound") != 0 && !is_reference(protocol))
        return st_fail(ST_ERR_ARGUMENT, "--protocol '%s' is unknown (sound, reference)", protocol);
    return ST_OK;
}

/* The data set's row when the reference protocol applies, else NULL (data/catalog.c). */
static const st_dataset_info *reference_row(const char *protocol, const char *data) {
    return is_reference(protocol) ? st_dataset_info_find(data) : NULL;
}

int st_protocol_selects_on_test(const char *protocol, const char *data) {
    const st_dataset_info *row = reference_row(protocol, data);
    return row && row->reference.selects_on_test;
}

int st_protocol_augments_validation(const char *protocol, const char *data) {
    const st_dataset_info *row = reference_row(protocol, data);
    return row && row->reference.augments_validation;
}

void st_protocol_adjust_data(const char *protocol, const char *data, st_dataset *train, st_dataset *test) {
    const st_dataset_info *row = reference_row(protocol, data);
    if (!row || !row->reference.own_normalisation) return;
    st_dataset *sets[2] = {train, test};
    for (int k = 0; k < 2; k++) {
        if (!sets[k]) continue;
        memcpy(sets[k]->mean, row->reference.mean, sizeof sets[k]->mean);
        memcpy(sets[k]->std, row->reference.std, sizeof sets[k]->std);
    }
}
