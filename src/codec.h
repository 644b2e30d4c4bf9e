/*
 * codec.h - how the activations and their gradients cross a stage
 * boundary (issue 13, item 3): the FWD and BWD payloads of the swarm, and
 * the boundaries of swarmsim, which applies the same encode and decode so
 * that swarm == swarmsim stays exact for every codec.
 *
 *   fp32  4 bytes a value: the float32 itself (little-endian).
 *   bf16  2 bytes a value: the upper half of the float32, rounded to
 *         nearest, ties to even (a NaN stays a NaN).
 *   int8  blockwise absmax: the values in blocks of SW_CODEC_BLOCK (the last
 *         block may be shorter); first one float32 scale a block (the
 *         block's largest magnitude / 127; 0 for an all-zero block), then
 *         one int8 a value, round(x / scale) in [-127, 127], in order.
 *         Decoded: q * scale.  1.0625 bytes a value: 3.76 x smaller than
 *         fp32; the error of a value is at most half a step, scale / 2.
 *   int4  the same with 4 bits a value: a float32 scale a block (the
 *         block's largest magnitude / 7), then the values two to a byte,
 *         value i in byte i / 2, its low nibble for an even i, the high one
 *         for an odd i, round(x / scale) in [-7, 7] as a two's-complement
 *         nibble; an odd count leaves the last high nibble 0.  0.5625
 *         bytes a value: 7.1 x smaller than fp32, the error at most scale / 2
 *         (a 16th of the block's largest magnitude, where int8's is a 254th).
 *
 * Encoding and decoding are plain C on the host, the same code in the
 * swarm and in swarmsim: the decoded floats are bit for bit the same in
 * both.  A decoded payload comes from the network: sw_codec_check says
 * whether it decodes to finite values and could be an encoder's output
 * (int4: no nibble -8, the last high nibble of an odd count 0); its length
 * is the caller's to check against sw_codec_bytes.  A scale is checked
 * against FLT_MAX over the largest step count a value may hold (128 for
 * int8, whose -128 no encoder writes; 8 for int4): the check used to allow
 * int8 scales up to 3e36, and 127 steps of one overflow to inf.
 */
#ifndef SW_CODEC_H
#define SW_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sw_codec { SW_CODEC_FP32 = 0, SW_CODEC_BF16 = 1, SW_CODEC_INT8 = 2, SW_CODEC_INT4 = 3 };

#define SW_CODEC_BLOCK 64

/* "fp32", "bf16", "int8", "int4" -> *c; -1 for any other name */
int sw_codec_parse(const char *name, enum sw_codec *c);
const char *sw_codec_name(enum sw_codec c);

/* bytes of n values encoded */
size_t sw_codec_bytes(enum sw_codec c, size_t n);

/* n values of x into out (sw_codec_bytes(c, n) bytes) */
void sw_codec_encode(enum sw_codec c, const float *x, size_t n, uint8_t *out);

/* sw_codec_bytes(c, n) bytes of in into n values of x */
void sw_codec_decode(enum sw_codec c, const uint8_t *in, size_t n, float *x);

/* in (sw_codec_bytes(c, n) bytes) decodes to n finite values */
bool sw_codec_check(enum sw_codec c, const uint8_t *in, size_t n);

/* x = decode(encode(x)), in place: what the receiver of x would get */
void sw_codec_roundtrip(enum sw_codec c, float *x, size_t n);

#endif
