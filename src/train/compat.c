/* The reference code's data protocol (see compat.h). */
#include "train/compat.h"

#include <string.h>

#include "core/status.h"

static int is_reference(const char *protocol) { return protocol && strcmp(protocol, "reference") == 0; }

st_status st_protocol_validate(const char *protocol) {
    if (protocol && protocol[0] && strcmp(protocol, "sound") != 0 && !is_reference(protocol))
        return st_fail(ST_ERR_ARGUMENT, "--protocol '%s' is unknown (sound, reference)", protocol);
    return ST_OK;
}

int st_protocol_selects_on_test(const char *protocol, const char *data) {
    return is_reference(protocol) && data && strcmp(data, "cifar100") == 0;
}

int st_protocol_augments_validation(const char *protocol, const char *data) {
    return is_reference(protocol) && data && strcmp(data, "cifar10") == 0;
}

void st_protocol_adjust_data(const char *protocol, const char *data, st_dataset *train, st_dataset *test) {
    if (!is_reference(protocol) || !data || strcmp(data, "cifar100") != 0) return;
    /* sparselearning/utils.py get_cifar100_dataloaders */
    static const float mean[3] = {0.5070751592371323f, 0.48654887331495095f, 0.4409178433670343f};
    static const float std[3] = {0.2673342858792401f, 0.2564384629170883f, 0.27615047132568404f};
    st_dataset *sets[2] = {train, test};
    for (int k = 0; k < 2; k++) {
        if (!sets[k]) continue;
        memcpy(sets[k]->mean, mean, sizeof mean);
        memcpy(sets[k]->std, std, sizeof std);
    }
}
