/* The reference code's protocol and log lines (see compat.h). */
#include "train/compat.h"

#include <string.h>

#include "core/status.h"

static int is_reference(const st_train_config *c) { return strcmp(c->protocol, "reference") == 0; }

st_status st_protocol_validate(const st_train_config *c) {
    if (c->protocol[0] && strcmp(c->protocol, "sound") != 0 && !is_reference(c))
        return st_fail(ST_ERR_ARGUMENT, "--protocol '%s' is unknown (sound, reference)", c->protocol);
    return ST_OK;
}

double st_protocol_valid_split(const st_train_config *c) {
    return st_protocol_selects_on_test(c) ? 0.0 : c->valid_split;
}

int st_protocol_selects_on_test(const st_train_config *c) {
    return is_reference(c) && strcmp(c->data, "cifar100") == 0;
}

int st_protocol_augments_validation(const st_train_config *c) {
    return is_reference(c) && strcmp(c->data, "cifar10") == 0 && c->augment != 0;
}

void st_protocol_adjust_data(const st_train_config *c, st_dataset *train, st_dataset *test) {
    if (!is_reference(c) || strcmp(c->data, "cifar100") != 0) return;
    /* sparselearning/utils.py get_cifar100_dataloaders */
    static const float mean[3] = {0.5070751592371323f, 0.48654887331495095f, 0.4409178433670343f};
    static const float std[3] = {0.2673342858792401f, 0.2564384629170883f, 0.27615047132568404f};
    st_dataset *sets[2] = {train, test};
    for (int k = 0; k < 2; k++) {
        memcpy(sets[k]->mean, mean, sizeof mean);
        memcpy(sets[k]->std, std, sizeof std);
    }
}
