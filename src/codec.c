/* codec.c - see codec.h.  Like the fp32 payloads, the encodings are in the
 * host's byte order, which the swarm requires to be little-endian. */
#include "codec.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define NCODECS 4

static const char *const names[NCODECS] = {"fp32", "bf16", "int8", "int4"};

int
sw_codec_parse(const char *name, enum sw_codec *c)
{
    for (int i = 0; i < NCODECS; i++)
        if (!strcmp(name, names[i])) {
            *c = (enum sw_codec)i;
            return 0;
        }
    return -1;
}

const char *
sw_codec_name(enum sw_codec c)
{
    return (unsigned)c < NCODECS ? names[c] : "?";
}

static size_t
blocks(size_t n)
{
    return (n + SW_CODEC_BLOCK - 1) / SW_CODEC_BLOCK;
}

size_t
sw_codec_bytes(enum sw_codec c, size_t n)
{
    switch (c) {
    case SW_CODEC_BF16:
        return 2 * n;
    case SW_CODEC_INT8:
        return 4 * blocks(n) + n;
    case SW_CODEC_INT4:
        return 4 * blocks(n) + (n + 1) / 2;
    default:
        return 4 * n;
    }
}

static uint16_t
to_bf16(float f)
{
    uint32_t u;

    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40); /* a NaN stays a (quiet) NaN */
    u += 0x7fffu + ((u >> 16) & 1);           /* to nearest, ties to even */
    return (uint16_t)(u >> 16);
}

static float
from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;

    memcpy(&f, &u, 4);
    return f;
}

void
sw_codec_encode(enum sw_codec c, const float *x, size_t n, uint8_t *out)
{
    if (c == SW_CODEC_BF16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = to_bf16(x[i]);
            memcpy(out + 2 * i, &h, 2);
        }
    } else if (c == SW_CODEC_INT8 || c == SW_CODEC_INT4) {
        size_t nb = blocks(n);
        long top = c == SW_CODEC_INT8 ? 127 : 7;
        uint8_t *q = out + 4 * nb;

        if (c == SW_CODEC_INT4)
            memset(q, 0, (n + 1) / 2); /* two values a byte, the last high nibble 0 */
        for (size_t b = 0; b < nb; b++) {
            size_t lo = b * SW_CODEC_BLOCK, hi = lo + SW_CODEC_BLOCK < n ? lo + SW_CODEC_BLOCK : n;
            float amax = 0, scale;

            for (size_t i = lo; i < hi; i++)
                if (fabsf(x[i]) > amax || isnan(x[i]))
                    amax = isnan(x[i]) ? NAN : fabsf(x[i]);
            scale = amax / (float)top;
            memcpy(out + 4 * b, &scale, 4);
            for (size_t i = lo; i < hi; i++) {
                long v = scale > 0 && isfinite(scale) ? lrintf(x[i] / scale) : 0;
                v = v > top ? top : v < -top ? -top : v;
                if (c == SW_CODEC_INT8)
                    q[i] = (uint8_t)(int8_t)v;
                else
                    q[i / 2] |= (uint8_t)(((unsigned long)v & 0xfu) << (4 * (i & 1)));
            }
        }
    } else {
        memcpy(out, x, 4 * n);
    }
}

/* Value i of an int4 payload's values q: a nibble, two's complement. */
static int
nibble(const uint8_t *q, size_t i)
{
    int v = (q[i / 2] >> (4 * (i & 1))) & 0xf;

    return v >= 8 ? v - 16 : v;
}

void
sw_codec_decode(enum sw_codec c, const uint8_t *in, size_t n, float *x)
{
    if (c == SW_CODEC_BF16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, in + 2 * i, 2);
            x[i] = from_bf16(h);
        }
    } else if (c == SW_CODEC_INT8 || c == SW_CODEC_INT4) {
        size_t nb = blocks(n);
        const uint8_t *q = in + 4 * nb;

        for (size_t b = 0; b < nb; b++) {
            size_t lo = b * SW_CODEC_BLOCK, hi = lo + SW_CODEC_BLOCK < n ? lo + SW_CODEC_BLOCK : n;
            float scale;

            memcpy(&scale, in + 4 * b, 4);
            for (size_t i = lo; i < hi; i++)
                x[i] = (float)(c == SW_CODEC_INT8 ? (int)(int8_t)q[i] : nibble(q, i)) * scale;
        }
    } else {
        memcpy(x, in, 4 * n);
    }
}

bool
sw_codec_check(enum sw_codec c, const uint8_t *in, size_t n)
{
    bool blockwise = c == SW_CODEC_INT8 || c == SW_CODEC_INT4;
    size_t k = c == SW_CODEC_BF16 ? n : blockwise ? blocks(n) : n;
    /* the largest scale whose values all decode finite: the largest
     * magnitude a value may have is 128 (int8) or 8 (int4) steps */
    float smax = c == SW_CODEC_INT8 ? FLT_MAX / 128.0f : FLT_MAX / 8.0f;

    for (size_t i = 0; i < k; i++) {
        if (c == SW_CODEC_BF16) {
            uint16_t h;
            memcpy(&h, in + 2 * i, 2);
            if ((h & 0x7f80) == 0x7f80)
                return false;
        } else {
            float f;
            memcpy(&f, in + 4 * i, 4);
            if (!isfinite(f) || (blockwise && fabsf(f) > smax))
                return false;
        }
    }
    /* int4: no encoder writes -8 or a non-zero last high nibble */
    if (c == SW_CODEC_INT4) {
        const uint8_t *q = in + 4 * k;
        for (size_t i = 0; i < n; i++)
            if (nibble(q, i) == -8)
                return false;
        if ((n & 1) && (q[n / 2] >> 4))
            return false;
    }
    return true;
}

void
sw_codec_roundtrip(enum sw_codec c, float *x, size_t n)
{
    if (c == SW_CODEC_BF16) {
        for (size_t i = 0; i < n; i++)
            x[i] = from_bf16(to_bf16(x[i]));
    } else if (c == SW_CODEC_INT8 || c == SW_CODEC_INT4) {
        uint8_t scale_q[4 + SW_CODEC_BLOCK];

        for (size_t lo = 0; lo < n; lo += SW_CODEC_BLOCK) {
            size_t k = n - lo < SW_CODEC_BLOCK ? n - lo : SW_CODEC_BLOCK;
            sw_codec_encode(c, x + lo, k, scale_q);
            sw_codec_decode(c, scale_q, k, x + lo);
        }
    }
}
