/*
 * hex.h - lowercase hexadecimal of byte strings (keys, ids, checksums).
 *
 * One encoder for every layer: identity keys and node ids (net/), DHT log
 * lines, checkpoint checksums (src/).  sw_hex_encode writes 2n digits and a
 * NUL into out (2n + 1 bytes) and returns out, so that it can sit in a
 * printf argument list.
 */
#ifndef SW_HEX_H
#define SW_HEX_H

#include <stddef.h>
#include <stdint.h>

char *sw_hex_encode(char *out, const uint8_t *bytes, size_t n);

#endif
