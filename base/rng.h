/*
 * rng.h - splitmix64, the one small PRNG every module uses for seeding,
 * initialisation, sampling and tests (header only).
 *
 * sw_splitmix64 advances *state by the golden-ratio increment and returns
 * the mixed value (Steele, Lea and Flood's SplitMix64 finaliser): the same
 * seed gives the same stream on every machine.  sw_mix64(x) is one step on a
 * copy, a stateless hash of x.  Not for anything that must be unpredictable
 * (keys come from libsodium).
 */
#ifndef SW_RNG_H
#define SW_RNG_H

#include <stdint.h>

static inline uint64_t
sw_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t
sw_mix64(uint64_t x)
{
    return sw_splitmix64(&x);
}

/* uniform in [0, 1) with 53 bits */
static inline double
sw_rng_uniform01(uint64_t *state)
{
    return (double)(sw_splitmix64(state) >> 11) * (1.0 / 9007199254740992.0);
}

#endif
