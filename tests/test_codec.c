/* test_codec: the activation codecs of src/codec.h against known answers
 * (bytes worked out by hand), their error bounds on random tensors, and
 * the checks that guard the decoder against what a peer may send. */
#include "codec.h"
#include "tap.h"

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

int
main(void)
{
    enum sw_codec c;
    enum sw_codec all[] = {SW_CODEC_FP32, SW_CODEC_BF16, SW_CODEC_INT8};
    int ok;

    tap_plan(12);

    ok = 1;
    for (int i = 0; i < 3; i++)
        ok &= sw_codec_parse(sw_codec_name(all[i]), &c) == 0 && c == all[i];
    tap_ok(ok && sw_codec_parse("int4", &c) < 0 && sw_codec_parse("", &c) < 0,
           "fp32, bf16 and int8 parse back from their names; int4 and '' do not");

    tap_ok(sw_codec_bytes(SW_CODEC_FP32, 100) == 400 && sw_codec_bytes(SW_CODEC_BF16, 100) == 200 &&
               sw_codec_bytes(SW_CODEC_INT8, 100) == 2 * 4 + 100 &&
               sw_codec_bytes(SW_CODEC_INT8, 64) == 4 + 64,
           "sizes: 100 values are 400, 200 and 108 bytes; 64 int8 values one scale");

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
        double worst8 = 0, worst16 = 0;
        fill(x, N, 42);
        sw_codec_encode(SW_CODEC_INT8, x, N, b);
        sw_codec_decode(SW_CODEC_INT8, b, N, y);
        for (size_t i = 0; i < N; i++) {
            float scale;
            memcpy(&scale, b + 4 * (i / SW_CODEC_BLOCK), 4);
            double e = fabs((double)x[i] - y[i]) / scale;
            if (e > worst8)
                worst8 = e;
        }
        tap_ok(worst8 <= 0.5 + 1e-5, "int8: every value within half a step of its block (worst %.4f steps)",
               worst8);
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
        for (int k = 0; k < 3; k++) {
            sw_codec_encode(all[k], x, N, b);
            sw_codec_decode(all[k], b, N, y);
            memcpy(r, x, sizeof(x));
            sw_codec_roundtrip(all[k], r, N);
            ok &= !memcmp(r, y, sizeof(y));
        }
        tap_ok(ok, "roundtrip in place equals decode(encode()) bit for bit, each codec");

        ok = 1;
        for (int k = 0; k < 3; k++) {
            sw_codec_encode(all[k], x, N, b);
            ok &= sw_codec_check(all[k], b, N);
        }
        tap_ok(ok, "what the encoders write passes the check, each codec");

        ok = 1;
        for (int k = 0; k < 3; k++) {
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
    return tap_done();
}
