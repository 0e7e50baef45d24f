/* uniform, uniform_plus, ER, ERK and ERK_plus exactly as SPEC section 4 (and
 * the reference code) defines them, including the iterative move of
 * over-full layers into the dense set. */
#include "sparse/distributions.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

int st_sparse_init_needs_data(const char *name) { return strcmp(name, "snip") == 0 || strcmp(name, "GraSP") == 0; }

int st_sparse_init_needs_weights(const char *name) {
    return st_sparse_init_needs_data(name) || strcmp(name, "global_magnitude") == 0;
}

int st_sparse_init_is_known(const char *name) {
    static const char *const pure[] = {"dense", "uniform", "uniform_plus", "ER", "ERK", "ERK_plus"};
    for (size_t i = 0; i < sizeof pure / sizeof pure[0]; i++)
        if (strcmp(name, pure[i]) == 0) return 1;
    return st_sparse_init_needs_weights(name);
}

int64_t st_layer_numel(const st_layer_shape *l) {
    int64_t n = 1;
    for (int i = 0; i < l->ndim; i++) n *= l->dims[i];
    return n;
}

/* ER scores the first two dims only; ERK all dims. */
static double raw_score(const st_layer_shape *l, int kernel_aware) {
    int nd = kernel_aware ? l->ndim : 2;
    double sum = 0, prod = 1;
    for (int i = 0; i < nd; i++) {
        sum += (double)l->dims[i];
        prod *= (double)l->dims[i];
    }
    return sum / prod;
}

/* Solves eps over the layers not in `dense` so that the kept count is
 * density * (their total + the dense layers' total) ... as the reference:
 * eps = (d*N_sparse - (1-d)*N_dense) / sum r_l n_l; layers whose eps*r_l
 * exceeds 1 join the dense set and the solve repeats. */
static st_status erk_solve(double density, const st_layer_shape *layers, int n, int kernel_aware, uint8_t *dense,
                           double *out) {
    for (;;) {
        double divisor = 0, rhs = 0, max_score = 0;
        for (int l = 0; l < n; l++) {
            double numel = (double)st_layer_numel(&layers[l]);
            if (dense[l]) {
                rhs -= (1.0 - density) * numel;
            } else {
                rhs += density * numel;
                double r = raw_score(&layers[l], kernel_aware);
                divisor += r * numel;
            }
        }
        if (divisor <= 0) return st_fail(ST_ERR_ARGUMENT, "density %g cannot be reached: every layer is dense", density);
        double eps = rhs / divisor;
        int moved = 0;
        for (int l = 0; l < n; l++) {
            if (dense[l]) continue;
            double r = raw_score(&layers[l], kernel_aware);
            if (r > max_score) max_score = r;
        }
        if (eps * max_score > 1.0) {
            for (int l = 0; l < n; l++)
                if (!dense[l] && raw_score(&layers[l], kernel_aware) == max_score) {
                    dense[l] = 1;
                    moved = 1;
                }
        }
        if (!moved) {
            if (eps < 0) return st_fail(ST_ERR_ARGUMENT, "density %g is too low for the layers forced dense", density);
            for (int l = 0; l < n; l++) out[l] = dense[l] ? 1.0 : eps * raw_score(&layers[l], kernel_aware);
            return ST_OK;
        }
    }
}

st_status st_layer_densities(const char *name, double density, double fc_density, const st_layer_shape *layers,
                             int n, double *out) {
    if (!st_sparse_init_is_known(name))
        return st_fail(ST_ERR_ARGUMENT, "unknown --sparse_init '%s' (known: %s)", name, ST_SPARSE_INIT_NAMES);
    if (st_sparse_init_needs_weights(name))
        return st_fail(ST_ERR_ARGUMENT, "--sparse_init %s depends on the weights%s: use st_model_layer_densities", name,
                       st_sparse_init_needs_data(name) ? " and training data" : "");
    if (!(density > 0.0 && density <= 1.0))
        return st_fail(ST_ERR_ARGUMENT, "--density %g is outside (0, 1]", density);
    if (strcmp(name, "dense") == 0 || density == 1.0) {
        for (int l = 0; l < n; l++) out[l] = 1.0;
        return ST_OK;
    }
    if (strcmp(name, "uniform") == 0) {
        for (int l = 0; l < n; l++) out[l] = density;
        return ST_OK;
    }
    if (strcmp(name, "uniform_plus") == 0) {
        double total = 0, n_stem = 0, n_fc = 0;
        for (int l = 0; l < n; l++) {
            double numel = (double)st_layer_numel(&layers[l]);
            total += numel;
            if (layers[l].is_first) n_stem += numel;
            if (layers[l].is_classifier) n_fc += numel;
        }
        double other = density;
        if (density < 0.2) other = (density * total - n_stem - 0.2 * n_fc) / total;
        if (other <= 0)
            return st_fail(ST_ERR_ARGUMENT, "uniform_plus: density %g is too low for a dense stem and a 20%% classifier",
                           density);
        for (int l = 0; l < n; l++)
            out[l] = layers[l].is_first ? 1.0 : (layers[l].is_classifier && density < 0.2) ? 0.2 : other;
        return ST_OK;
    }
    int er = strcmp(name, "ER") == 0, erk = strcmp(name, "ERK") == 0, erk_plus = strcmp(name, "ERK_plus") == 0;
    if (er || erk || erk_plus) {
        uint8_t *dense = calloc((size_t)n + 1, 1);
        if (!dense) return st_fail(ST_ERR_NOMEM, "out of memory");
        st_status s;
        if (erk_plus) {
            if (!(fc_density > 0.0 && fc_density <= 1.0)) {
                free(dense);
                return st_fail(ST_ERR_ARGUMENT, "--fc_density %g is outside (0, 1]", fc_density);
            }
            /* Solve ERK over the other layers for the budget left after the classifier. */
            double total = 0, n_fc = 0;
            for (int l = 0; l < n; l++) {
                total += (double)st_layer_numel(&layers[l]);
                if (layers[l].is_classifier) n_fc += (double)st_layer_numel(&layers[l]);
            }
            double rest = (density * total - fc_density * n_fc) / (total - n_fc);
            if (rest <= 0 || rest > 1 || n_fc == total) {
                free(dense);
                return st_fail(ST_ERR_ARGUMENT, "ERK_plus: density %g is unreachable with --fc_density %g", density,
                               fc_density);
            }
            st_layer_shape *others = calloc((size_t)n + 1, sizeof *others);
            double *sub = calloc((size_t)n + 1, sizeof *sub);
            if (!others || !sub) {
                free(others);
                free(sub);
                free(dense);
                return st_fail(ST_ERR_NOMEM, "out of memory");
            }
            int k = 0;
            for (int l = 0; l < n; l++)
                if (!layers[l].is_classifier) others[k++] = layers[l];
            s = erk_solve(rest, others, k, 1, dense, sub);
            k = 0;
            if (s == ST_OK)
                for (int l = 0; l < n; l++) out[l] = layers[l].is_classifier ? fc_density : sub[k++];
            free(others);
            free(sub);
        } else {
            s = erk_solve(density, layers, n, erk, dense, out);
        }
        free(dense);
        return s;
    }
    return st_fail(ST_ERR_ARGUMENT, "unknown --sparse_init '%s' (known: %s)", name, ST_SPARSE_INIT_NAMES);
}
