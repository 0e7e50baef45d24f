/* Seedable pseudo-random streams (xoshiro256** seeded by splitmix64).
 * A stream is identified by (seed, stream id) so that e.g. each layer's mask
 * is drawn from its own stream, independent of thread count and order. */
#ifndef ST_CORE_RNG_H
#define ST_CORE_RNG_H

#include <stdint.h>

typedef struct st_rng {
    uint64_t s[4];
} st_rng;

void st_rng_seed(st_rng *rng, uint64_t seed, uint64_t stream);
uint64_t st_rng_next(st_rng *rng);
/* Uniform float in [0, 1) with 24 random bits. */
float st_rng_uniform(st_rng *rng);
/* Uniform double in [0, 1) with 53 random bits. */
double st_rng_uniform_double(st_rng *rng);
/* Uniform integer in [0, n) without modulo bias; n > 0. */
uint64_t st_rng_below(st_rng *rng, uint64_t n);
/* Standard normal (Box-Muller on doubles). */
double st_rng_normal(st_rng *rng);
/* Stable 64-bit string hash (FNV-1a), for deriving stream ids from names. */
uint64_t st_hash_string(const char *s);

#endif
