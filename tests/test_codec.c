/* test_codec: the activation codecs of src/codec.h against known answers
 * (bytes worked out by hand), their error bounds on random tensors, and
 * the checks that guard the decoder against what a peer may send. */
#include "codec.h"
#include "tap.h"

#include <float.h>
#include <math.h>

#include <stdint.h>
#include <string.h>

static uint32_t
bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static uint16_t
bf16_of(float f)
{
    uint8_t b[2];
    uint16_t h;
    sw_codec_encode(SW_CODEC_BF16, &f, 1, b);
    memcpy(&h, b, 2);
    return h;
}

/* a deterministic spread of values: most near 1, some far larger or tiny */
static void
fill(float *x, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(seed >> 11) / 9007199254740992.0 * 2 - 1;
        x[i] = (float)(i % 97 == 0 ? u * 1000 : i % 31 == 0 ? u * 1e-6 : u);
    }
}

/* Encodes and decodes x[n] (a blockwise codec c) through b into y: the
 * largest error of a value, in steps (scales) of its block. */
static double
worst_steps(enum sw_codec c, const float *x, size_t n, uint8_t *b, float *y)
{
    double worst = 0;

    sw_codec_encode(c, x, n, b);
    sw_codec_decode(c, b, n, y);
    for (size_t i = 0; i < n; i++) {
        float scale;
        memcpy(&scale, b + 4 * (i / SW_CODEC_BLOCK), 4);
        double e = fabs((double)x[i] - y[i]) / scale;
        if (e > worst)
            worst = e;
    }
    return worst;
}

int
main(void)
{
    enum sw_codec c;
    enum sw_codec all[] = {SW_CODEC_FP32, SW_CODEC_BF16, SW_CODEC_INT8, SW_CODEC_INT4};
    enum { NALL = 4 };
    int ok;

    tap_plan(18);

    ok = 1;
    for (int i = 0; i < NALL; i++)
        ok &= sw_codec_parse(sw_codec_name(all[i]), &c) == 0 && c == all[i];
    tap_ok(ok && sw_codec_parse("int2", &c) < 0 && sw_codec_parse("", &c) < 0,
           "fp32, bf16, int8 and int4 parse back from their names; int2 and '' do not");

    tap_ok(sw_codec_bytes(SW_CODEC_FP32, 100) == 400 && sw_codec_bytes(SW_CODEC_BF16, 100) == 200 &&
               sw_codec_bytes(SW_CODEC_INT8, 100) == 2 * 4 + 100 &&
               sw_codec_bytes(SW_CODEC_INT8, 64) == 4 + 64 &&
               sw_codec_bytes(SW_CODEC_INT4, 100) == 2 * 4 + 50 &&
               sw_codec_bytes(SW_CODEC_INT4, 65) == 2 * 4 + 33,
           "sizes: 100 values are 400, 200, 108 and 58 bytes; 64 int8 values one scale; 65 int4 "
           "values 41 bytes");

    /* bf16: the upper half of the float, to nearest, ties to even */
    tap_ok(bf16_of(1.0f) == 0x3f80 && bf16_of(-2.5f) == 0xc020 &&
               bf16_of(1.00390625f) == 0x3f80 &&  /* 1 + 2^-8: a tie, to even (down) */
               bf16_of(1.01171875f) == 0x3f82 &&  /* 1 + 3 * 2^-8: a tie, to even (up) */
               bf16_of(1.0078125f + 1e-6f) == 0x3f81 && /* just above 1 + 2^-7 */
               bf16_of(3.3961776e38f) == 0x7f80,       /* past bf16's largest: inf */
           "bf16 known answers: 1, -2.5, ties to even, rounding up, overflow to inf");

    /* int8: {1, -0.5, 0.25, 0}: scale 1/127, q = 127, -64 (-63.5 to even), 32 (31.75), 0 */
    {
        float x[4] = {1.0f, -0.5f, 0.25f, 0.0f}, y[4];
        uint8_t b[8];
        float scale = 1.0f / 127.0f;
        sw_codec_encode(SW_CODEC_INT8, x, 4, b);
        uint32_t sb;
        memcpy(&sb, b, 4);
        tap_ok(sb == bits(scale) && (int8_t)b[4] == 127 && (int8_t)b[5] == -64 &&
                   (int8_t)b[6] == 32 && b[7] == 0,
               "int8 known answer: scale 1/127, then 127, -64, 32, 0");
        sw_codec_decode(SW_CODEC_INT8, b, 4, y);
        tap_ok(y[0] == 127 * scale && y[1] == -64 * scale && y[2] == 32 * scale && y[3] == 0,
               "int8 decodes to q times the scale");
    }

    /* int4: {1, -0.5, 0.25, 0, -1}: scale 1/7, q = 7, -3 (-3.4999998: the float scale is a
     * hair above 1/7), 2 (1.75), 0, -7,
     * two to a byte, the low nibble first; the fifth value's byte has a high nibble 0 */
    {
        float x[5] = {1.0f, -0.5f, 0.25f, 0.0f, -1.0f}, y[5];
        uint8_t b[4 + 3];
        float scale = 1.0f / 7.0f;
        uint32_t sb;
        sw_codec_encode(SW_CODEC_INT4, x, 5, b);
        memcpy(&sb, b, 4);
        tap_ok(sb == bits(scale) && b[4] == 0xd7 && b[5] == 0x02 && b[6] == 0x09,
               "int4 known answer: scale 1/7, then bytes d7 02 09 (7, -3; 2, 0; -7, pad 0)");
        sw_codec_decode(SW_CODEC_INT4, b, 5, y);
        tap_ok(y[0] == 7 * scale && y[1] == -3 * scale && y[2] == 2 * scale && y[3] == 0 &&
                   y[4] == -7 * scale,
               "int4 decodes to q times the scale");
    }

    /* an all-zero block: scale 0, zeros back */
    {
        float z[70] = {0}, y[70];
        uint8_t b[4 * 2 + 70];
        z[69] = 3.0f; /* the second block is not zero */
        sw_codec_encode(SW_CODEC_INT8, z, 70, b);
        sw_codec_decode(SW_CODEC_INT8, b, 70, y);
        float s0;
        memcpy(&s0, b, 4);
        ok = s0 == 0 && y[69] == 3.0f;
        for (int i = 0; i < 69; i++)
            ok &= y[i] == 0;
        tap_ok(ok, "an all-zero block has scale 0 and decodes to zeros; a short last block works");
    }

    /* error bounds on 1000 values (not a multiple of the block) */
    {
        enum { N = 1000 };
        static float x[N], y[N], r[N];
        static uint8_t b[4 * N];
        double worst8, worst4, worst16 = 0;
        fill(x, N, 42);
        worst8 = worst_steps(SW_CODEC_INT8, x, N, b, y);
        tap_ok(worst8 <= 0.5 + 1e-5, "int8: every value within half a step of its block (worst %.4f steps)",
               worst8);
        worst4 = worst_steps(SW_CODEC_INT4, x, N, b, y);
        tap_ok(worst4 <= 0.5 + 1e-5,
               "int4: every value within half a step of its block (worst %.4f steps)", worst4);
        sw_codec_encode(SW_CODEC_BF16, x, N, b);
        sw_codec_decode(SW_CODEC_BF16, b, N, y);
        for (size_t i = 0; i < N; i++)
            if (x[i] != 0) {
                double e = fabs((double)x[i] - y[i]) / fabs(x[i]);
                if (e > worst16)
                    worst16 = e;
            }
        tap_ok(worst16 <= 1.0 / 256, "bf16: relative error at most 2^-8 (worst %.3g)", worst16);

        ok = 1;
        for (int k = 0; k < NALL; k++) {
            sw_codec_encode(all[k], x, N, b);
            sw_codec_decode(all[k], b, N, y);
            memcpy(r, x, sizeof(x));
            sw_codec_roundtrip(all[k], r, N);
            ok &= !memcmp(r, y, sizeof(y));
        }
        tap_ok(ok, "roundtrip in place equals decode(encode()) bit for bit, each codec");

        ok = 1;
        for (int k = 0; k < NALL; k++) {
            sw_codec_encode(all[k], x, N, b);
            ok &= sw_codec_check(all[k], b, N);
        }
        tap_ok(ok, "what the encoders write passes the check, each codec");

        ok = 1;
        for (int k = 0; k < NALL; k++) {
            x[500] = NAN;
            sw_codec_encode(all[k], x, N, b);
            ok &= !sw_codec_check(all[k], b, N);
            x[500] = INFINITY;
            sw_codec_encode(all[k], x, N, b);
            ok &= !sw_codec_check(all[k], b, N);
        }
        tap_ok(ok, "a NaN or an infinity in the tensor fails the check after encoding, each codec");
    }

    /* what a peer could send: bad scales, bf16 infinities */
    {
        uint8_t b[4 + 64];
        float f = INFINITY;
        memset(b, 0, sizeof(b));
        memcpy(b, &f, 4);
        ok = !sw_codec_check(SW_CODEC_INT8, b, 64);
        f = 1e37f; /* finite, but 127 times it is not */
        memcpy(b, &f, 4);
        ok &= !sw_codec_check(SW_CODEC_INT8, b, 64);
        f = 1.0f;
        memcpy(b, &f, 4);
        ok &= sw_codec_check(SW_CODEC_INT8, b, 64);
        uint16_t h = 0xff80; /* -inf */
        memcpy(b, &h, 2);
        ok &= !sw_codec_check(SW_CODEC_BF16, b, 1);
        h = 0x7fc1; /* NaN */
        memcpy(b, &h, 2);
        ok &= !sw_codec_check(SW_CODEC_BF16, b, 1);
        tap_ok(ok, "the check refuses infinite and overflowing int8 scales, bf16 infinities and NaNs");
    }

    /* the largest scale the check allows decodes finite at every step count;
     * one just above it (the old bound, 3e36, for int8) is refused */
    {
        uint8_t b[4 + 64];
        float y[64], f;
        ok = 1;
        for (int k = 2; k < NALL; k++) {
            float steps = all[k] == SW_CODEC_INT8 ? 128.0f : 8.0f;
            memset(b, 0, sizeof(b));
            memset(b + 4, all[k] == SW_CODEC_INT8 ? 0x81 : 0x99, 32); /* -127, or -7 twice */
            f = FLT_MAX / steps;
            memcpy(b, &f, 4);
            ok &= sw_codec_check(all[k], b, 64);
            sw_codec_decode(all[k], b, 64, y);
            ok &= isfinite(y[0]) && y[0] < -1e37f;
            f = nextafterf(FLT_MAX / steps, INFINITY);
            memcpy(b, &f, 4);
            ok &= !sw_codec_check(all[k], b, 64);
        }
        f = 3.0e36f;
        memcpy(b, &f, 4);
        ok &= !sw_codec_check(SW_CODEC_INT8, b, 64);
        tap_ok(ok, "scales up to FLT_MAX over 128 (int8) or 8 (int4) steps pass and decode finite; "
               "the next float up, and int8's old bound 3e36, are refused");
    }

    /* int4 payloads no encoder writes: a nibble -8, a non-zero pad */
    {
        uint8_t b[4 + 3];
        float f = 1.0f;
        memset(b, 0, sizeof(b));
        memcpy(b, &f, 4);
        ok = sw_codec_check(SW_CODEC_INT4, b, 5);
        b[5] = 0x80; /* value 3: -8 */
        ok &= !sw_codec_check(SW_CODEC_INT4, b, 5);
        b[5] = 0;
        b[6] = 0x10; /* the pad after value 4 */
        ok &= !sw_codec_check(SW_CODEC_INT4, b, 5) && sw_codec_check(SW_CODEC_INT4, b, 6);
        tap_ok(ok, "int4: a nibble -8 or a non-zero pad nibble fails the check");
    }

    /* random payloads (a fixed seed): whatever passes the check decodes to
     * finite values; the scales' bit patterns are uniform, so every
     * exponent comes up, the largest ones too */
    {
        static uint8_t b[4 + 64];
        float y[64];
        uint64_t seed = 7, passed = 0, bad = 0;
        for (int trial = 0; trial < 200000; trial++) {
            enum sw_codec k = trial & 1 ? SW_CODEC_INT4 : SW_CODEC_INT8;
            for (size_t i = 0; i < sizeof(b); i++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                b[i] = (uint8_t)(seed >> 56);
            }
            if (!sw_codec_check(k, b, 64))
                continue;
            passed++;
            sw_codec_decode(k, b, 64, y);
            for (int i = 0; i < 64; i++)
                bad += !isfinite(y[i]);
        }
        tap_ok(bad == 0 && passed > 1000,
               "200000 random int8 and int4 payloads: the %llu that pass the check decode finite",
               (unsigned long long)passed);
    }
    return tap_done();
}
