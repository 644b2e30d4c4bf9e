/*
 * hex.h - lowercase hexadecimal of byte strings (keys, ids, checksums).
 *
 * One encoder for every layer: identity keys and node ids (net/), DHT log
 * lines, checkpoint checksums (src/).  sw_hex_encode writes 2n digits and a
 * NUL into out (2n + 1 bytes) and returns out, so that it can sit in a
 * printf argument list.  sw_hex_decode reads exactly 2n digits (either case)
 * into out[n]; what follows them must be the end of the string or a space:
 * 0, or -SW_EINVAL (out is then partly written).
 */
#ifndef SW_HEX_H
#define SW_HEX_H

#include <stddef.h>
#include <stdint.h>

char *sw_hex_encode(char *out, const uint8_t *bytes, size_t n);
int sw_hex_decode(uint8_t *out, size_t n, const char *hex) SW_WARN_UNUSED;

#endif
