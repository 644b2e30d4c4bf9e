/*
 * blake2b4.h - four BLAKE2b-256 digests at once (AVX2), for the wire's tree
 * hash (net/wire.c).  Internal to net/.
 *
 * The four inputs have the same length, a non-zero multiple of 128 bytes
 * (the tree hash's full 256 KiB chunks).  The digests are exactly unkeyed
 * BLAKE2b with a 32-byte output (RFC 7693), as crypto_generichash gives: the
 * four messages ride in the four 64-bit lanes of each AVX2 register, so one
 * core hashes about twice as fast as the one-message code; where the CPU has
 * AVX-512F, sw__blake2b8_256 does eight at once.  Thread-safe, no state.
 */
#ifndef SW_BLAKE2B4_H
#define SW_BLAKE2B4_H

#include "sw.h"

/* True when this CPU runs sw__blake2b4_256 (checked once). */
bool sw__blake2b4_available(void);

/* out[k] = BLAKE2b-256(in[k][0..len)), k = 0..3; len % 128 == 0, len > 0. */
void sw__blake2b4_256(uint8_t out[4][32], const uint8_t *const in[4], size_t len);

/*
 * The same on eight lanes (AVX-512F), k = 0..7.  Available only where the CPU
 * has AVX-512F and SW_NO_AVX512 is unset in the environment (to compare).
 */
bool sw__blake2b8_available(void);
void sw__blake2b8_256(uint8_t out[8][32], const uint8_t *const in[8], size_t len);

#endif
