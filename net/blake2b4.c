/*
 * blake2b4.c - 4-lane AVX2 BLAKE2b-256; see blake2b4.h.  The structure
 * follows RFC 7693 section 3.2 literally: v[i] holds word i of the four
 * states, m[j] word j of the four current blocks (loaded as 4x4 transposes).
 */
#include "sw.h"

#include "blake2b4.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

static const uint64_t iv[8] = {
    0x6a09e667f3bcc908ull, 0xbb67ae8584caa73bull, 0x3c6ef372fe94f82bull, 0xa54ff53a5f1d36f1ull,
    0x510e527fade682d1ull, 0x9b05688c2b3e6c1full, 0x1f83d9abfb41bd6bull, 0x5be0cd19137e2179ull,
};

static const uint8_t sigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

#define TGT __attribute__((target("avx2")))

#define ROTR32(x) _mm256_shuffle_epi32((x), _MM_SHUFFLE(2, 3, 0, 1))
#define ROTR24(x) _mm256_shuffle_epi8((x), r24)
#define ROTR16(x) _mm256_shuffle_epi8((x), r16)
#define ROTR63(x) _mm256_or_si256(_mm256_srli_epi64((x), 63), _mm256_add_epi64((x), (x)))

#define G(a, b, c, d, x, y)                                                    \
    do {                                                                       \
        a = _mm256_add_epi64(_mm256_add_epi64(a, b), x);                       \
        d = ROTR32(_mm256_xor_si256(d, a));                                    \
        c = _mm256_add_epi64(c, d);                                            \
        b = ROTR24(_mm256_xor_si256(b, c));                                    \
        a = _mm256_add_epi64(_mm256_add_epi64(a, b), y);                       \
        d = ROTR16(_mm256_xor_si256(d, a));                                    \
        c = _mm256_add_epi64(c, d);                                            \
        b = ROTR63(_mm256_xor_si256(b, c));                                    \
    } while (0)

/* Words j..j+3 of the four blocks at in[k] + off, transposed into m[j..j+3]. */
TGT static inline void
load4(__m256i *m, const uint8_t *const in[4], size_t off)
{
    __m256i a0 = _mm256_loadu_si256((const __m256i *)(in[0] + off));
    __m256i a1 = _mm256_loadu_si256((const __m256i *)(in[1] + off));
    __m256i a2 = _mm256_loadu_si256((const __m256i *)(in[2] + off));
    __m256i a3 = _mm256_loadu_si256((const __m256i *)(in[3] + off));
    __m256i t0 = _mm256_unpacklo_epi64(a0, a1), t1 = _mm256_unpackhi_epi64(a0, a1);
    __m256i t2 = _mm256_unpacklo_epi64(a2, a3), t3 = _mm256_unpackhi_epi64(a2, a3);

    m[0] = _mm256_permute2x128_si256(t0, t2, 0x20);
    m[1] = _mm256_permute2x128_si256(t1, t3, 0x20);
    m[2] = _mm256_permute2x128_si256(t0, t2, 0x31);
    m[3] = _mm256_permute2x128_si256(t1, t3, 0x31);
}

TGT static void
blake2b4(uint8_t out[4][32], const uint8_t *const in[4], size_t len)
{
    const __m256i r24 = _mm256_setr_epi8(3, 4, 5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10,
                                         3, 4, 5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10);
    const __m256i r16 = _mm256_setr_epi8(2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9,
                                         2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9);
    __m256i h[8], m[16];
    uint64_t lanes[4][4];

    for (int i = 0; i < 8; i++)
        h[i] = _mm256_set1_epi64x((long long)iv[i]);
    /* parameter block: digest length 32, no key, fanout 1, depth 1 */
    h[0] = _mm256_xor_si256(h[0], _mm256_set1_epi64x(0x01010020));
    for (size_t off = 0; off < len; off += 128) {
        uint64_t t = off + 128;
        __m256i v0 = h[0], v1 = h[1], v2 = h[2], v3 = h[3], v4 = h[4], v5 = h[5], v6 = h[6],
                v7 = h[7];
        __m256i v8 = _mm256_set1_epi64x((long long)iv[0]), v9 = _mm256_set1_epi64x((long long)iv[1]);
        __m256i v10 = _mm256_set1_epi64x((long long)iv[2]), v11 = _mm256_set1_epi64x((long long)iv[3]);
        __m256i v12 = _mm256_set1_epi64x((long long)(iv[4] ^ t));
        __m256i v13 = _mm256_set1_epi64x((long long)iv[5]); /* t < 2^64: high word 0 */
        __m256i v14 = _mm256_set1_epi64x((long long)(t == len ? ~iv[6] : iv[6]));
        __m256i v15 = _mm256_set1_epi64x((long long)iv[7]);

        load4(m + 0, in, off);
        load4(m + 4, in, off + 32);
        load4(m + 8, in, off + 64);
        load4(m + 12, in, off + 96);
#pragma GCC unroll 12
        for (int r = 0; r < 12; r++) {
            const uint8_t *s = sigma[r];

            G(v0, v4, v8, v12, m[s[0]], m[s[1]]);
            G(v1, v5, v9, v13, m[s[2]], m[s[3]]);
            G(v2, v6, v10, v14, m[s[4]], m[s[5]]);
            G(v3, v7, v11, v15, m[s[6]], m[s[7]]);
            G(v0, v5, v10, v15, m[s[8]], m[s[9]]);
            G(v1, v6, v11, v12, m[s[10]], m[s[11]]);
            G(v2, v7, v8, v13, m[s[12]], m[s[13]]);
            G(v3, v4, v9, v14, m[s[14]], m[s[15]]);
        }
        h[0] = _mm256_xor_si256(h[0], _mm256_xor_si256(v0, v8));
        h[1] = _mm256_xor_si256(h[1], _mm256_xor_si256(v1, v9));
        h[2] = _mm256_xor_si256(h[2], _mm256_xor_si256(v2, v10));
        h[3] = _mm256_xor_si256(h[3], _mm256_xor_si256(v3, v11));
        h[4] = _mm256_xor_si256(h[4], _mm256_xor_si256(v4, v12));
        h[5] = _mm256_xor_si256(h[5], _mm256_xor_si256(v5, v13));
        h[6] = _mm256_xor_si256(h[6], _mm256_xor_si256(v6, v14));
        h[7] = _mm256_xor_si256(h[7], _mm256_xor_si256(v7, v15));
    }
    /* digest k = words 0..3 of lane k, little-endian (the host's order) */
    for (int i = 0; i < 4; i++)
        _mm256_storeu_si256((__m256i *)lanes[i], h[i]);
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 4; i++)
            memcpy(out[k] + 8 * i, &lanes[i][k], 8);
}

/*
 * The same on eight lanes (AVX-512F): rotations are one vprorq each, and the
 * eight blocks are read with gathers (lane k's word at in[k] - in[0] from
 * in[0]) instead of a transpose.  About twice the 4-lane speed per core.
 */
#define TGT8 __attribute__((target("avx512f")))

#define G8(a, b, c, d, x, y)                                                   \
    do {                                                                       \
        a = _mm512_add_epi64(_mm512_add_epi64(a, b), x);                       \
        d = _mm512_ror_epi64(_mm512_xor_si512(d, a), 32);                      \
        c = _mm512_add_epi64(c, d);                                            \
        b = _mm512_ror_epi64(_mm512_xor_si512(b, c), 24);                      \
        a = _mm512_add_epi64(_mm512_add_epi64(a, b), y);                       \
        d = _mm512_ror_epi64(_mm512_xor_si512(d, a), 16);                      \
        c = _mm512_add_epi64(c, d);                                            \
        b = _mm512_ror_epi64(_mm512_xor_si512(b, c), 63);                      \
    } while (0)

TGT8 static void
blake2b8(uint8_t out[8][32], const uint8_t *const in[8], size_t len)
{
    __m512i h[8], m[16], idx;
    long long d[8];
    uint64_t lanes[4][8];

    for (int k = 0; k < 8; k++)
        d[k] = (long long)((intptr_t)in[k] - (intptr_t)in[0]);
    idx = _mm512_loadu_si512(d);
    for (int i = 0; i < 8; i++)
        h[i] = _mm512_set1_epi64((long long)iv[i]);
    h[0] = _mm512_xor_si512(h[0], _mm512_set1_epi64(0x01010020));
    for (size_t off = 0; off < len; off += 128) {
        uint64_t t = off + 128;
        __m512i v0 = h[0], v1 = h[1], v2 = h[2], v3 = h[3], v4 = h[4], v5 = h[5], v6 = h[6],
                v7 = h[7];
        __m512i v8 = _mm512_set1_epi64((long long)iv[0]), v9 = _mm512_set1_epi64((long long)iv[1]);
        __m512i v10 = _mm512_set1_epi64((long long)iv[2]), v11 = _mm512_set1_epi64((long long)iv[3]);
        __m512i v12 = _mm512_set1_epi64((long long)(iv[4] ^ t));
        __m512i v13 = _mm512_set1_epi64((long long)iv[5]);
        __m512i v14 = _mm512_set1_epi64((long long)(t == len ? ~iv[6] : iv[6]));
        __m512i v15 = _mm512_set1_epi64((long long)iv[7]);

        for (int j = 0; j < 16; j++)
            m[j] = _mm512_i64gather_epi64(idx, (const void *)(in[0] + off + 8 * (size_t)j), 1);
#pragma GCC unroll 12
        for (int r = 0; r < 12; r++) {
            const uint8_t *s = sigma[r];

            G8(v0, v4, v8, v12, m[s[0]], m[s[1]]);
            G8(v1, v5, v9, v13, m[s[2]], m[s[3]]);
            G8(v2, v6, v10, v14, m[s[4]], m[s[5]]);
            G8(v3, v7, v11, v15, m[s[6]], m[s[7]]);
            G8(v0, v5, v10, v15, m[s[8]], m[s[9]]);
            G8(v1, v6, v11, v12, m[s[10]], m[s[11]]);
            G8(v2, v7, v8, v13, m[s[12]], m[s[13]]);
            G8(v3, v4, v9, v14, m[s[14]], m[s[15]]);
        }
        h[0] = _mm512_xor_si512(h[0], _mm512_xor_si512(v0, v8));
        h[1] = _mm512_xor_si512(h[1], _mm512_xor_si512(v1, v9));
        h[2] = _mm512_xor_si512(h[2], _mm512_xor_si512(v2, v10));
        h[3] = _mm512_xor_si512(h[3], _mm512_xor_si512(v3, v11));
        h[4] = _mm512_xor_si512(h[4], _mm512_xor_si512(v4, v12));
        h[5] = _mm512_xor_si512(h[5], _mm512_xor_si512(v5, v13));
        h[6] = _mm512_xor_si512(h[6], _mm512_xor_si512(v6, v14));
        h[7] = _mm512_xor_si512(h[7], _mm512_xor_si512(v7, v15));
    }
    for (int i = 0; i < 4; i++)
        _mm512_storeu_si512(lanes[i], h[i]);
    for (int k = 0; k < 8; k++)
        for (int i = 0; i < 4; i++)
            memcpy(out[k] + 8 * i, &lanes[i][k], 8);
}

bool
sw__blake2b4_available(void)
{
    static int avail = -1;

    if (avail < 0) {
        __builtin_cpu_init();
        avail = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return avail == 1;
}

void
sw__blake2b4_256(uint8_t out[4][32], const uint8_t *const in[4], size_t len)
{
    blake2b4(out, in, len);
}


bool
sw__blake2b8_available(void)
{
    static int avail = -1;

    if (avail < 0) {
        __builtin_cpu_init();
        avail = __builtin_cpu_supports("avx512f") && getenv("SW_NO_AVX512") == NULL ? 1 : 0;
    }
    return avail == 1;
}

void
sw__blake2b8_256(uint8_t out[8][32], const uint8_t *const in[8], size_t len)
{
    blake2b8(out, in, len);
}

#else

bool
sw__blake2b4_available(void)
{
    return false;
}

void
sw__blake2b4_256(uint8_t out[4][32], const uint8_t *const in[4], size_t len)
{
    SW_ASSERT(!"sw__blake2b4_256 without AVX2");
}

bool
sw__blake2b8_available(void)
{
    return false;
}

void
sw__blake2b8_256(uint8_t out[8][32], const uint8_t *const in[8], size_t len)
{
    SW_ASSERT(!"sw__blake2b8_256 without AVX-512");
}

#endif
