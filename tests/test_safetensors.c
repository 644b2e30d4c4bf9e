/*
 * test_safetensors.c - safetensors writer and reader.
 *
 * Round trip bit-exact (F32 with NaN payloads, -0, inf, subnormals; scalar,
 * empty and 4-D tensors; metadata), streaming writer == one-call writer,
 * F16/BF16 widening (known answers and all 65536 F16 codes against an
 * ldexp reference), and every malformed header refused with the right code,
 * both from a file and from memory.
 */
#include "sw.h"

#include "safetensors.h"
#include "tap.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/sw-test-st-XXXXXX";

static const char *
path_of(const char *name)
{
    static char buf[1024];

    snprintf(buf, sizeof(buf), "%s/%s", dir, name);
    return buf;
}

static void
write_bytes(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");

    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(99);
    }
}

/* 8-byte length (hlen, or jl when hlen is UINT64_MAX), jl bytes of json, then data_len bytes. */
static size_t
build_n(uint8_t *out, const char *json, size_t jl, uint64_t hlen, size_t data_len)
{
    if (hlen == UINT64_MAX)
        hlen = jl;
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(out + 8, json, jl);
    for (size_t i = 0; i < data_len; i++)
        out[8 + jl + i] = (uint8_t)(i * 7 + 1);
    return 8 + jl + data_len;
}

static size_t
build(uint8_t *out, const char *json, uint64_t hlen, size_t data_len)
{
    return build_n(out, json, strlen(json), hlen, data_len);
}

static uint8_t img[1 << 16];

/* The case must be refused with want from a file and from memory. */
static void
check_bad_n(const char *what, const char *json, size_t jl, uint64_t hlen, size_t data_len,
            int want, unsigned flags)
{
    struct sw_safetensors st;
    size_t n = build_n(img, json, jl, hlen, data_len);
    int a, b;

    write_bytes(path_of("bad.safetensors"), img, n);
    a = sw_safetensors_open(&st, path_of("bad.safetensors"), flags);
    if (a == 0)
        sw_safetensors_close(&st);
    b = sw_safetensors_open_mem(&st, img, n, "bad-mem", flags);
    if (b == 0)
        sw_safetensors_close(&st);
    tap_ok(a == want && b == want, "refused: %s (%s, %s; want %s)", what, sw_err_name(a),
           sw_err_name(b), sw_err_name(want));
}

static void
check_bad(const char *what, const char *json, uint64_t hlen, size_t data_len, int want,
          unsigned flags)
{
    check_bad_n(what, json, strlen(json), hlen, data_len, want, flags);
}

static void
test_malformed(void)
{
    static char longname[2048];
    struct sw_safetensors st;
    char json[4096];
    int rc;

    /* too short / header length */
    write_bytes(path_of("short.safetensors"), "\x02\0\0", 3);
    rc = sw_safetensors_open(&st, path_of("short.safetensors"), 0);
    tap_ok(rc == -SW_EFORMAT, "refused: file shorter than 8 bytes (%s)", sw_err_name(rc));
    write_bytes(path_of("empty.safetensors"), "", 0);
    rc = sw_safetensors_open(&st, path_of("empty.safetensors"), 0);
    tap_ok(rc == -SW_EFORMAT, "refused: empty file (%s)", sw_err_name(rc));
    check_bad("header length 0", "", 0, 0, -SW_EFORMAT, 0);
    check_bad("header length 1", "{", UINT64_MAX, 0, -SW_EFORMAT, 0);
    check_bad("header length 2^40", "{}", (uint64_t)1 << 40, 0, -SW_EFORMAT, 0);
    check_bad("header length 2^63", "{}", (uint64_t)1 << 63, 0, -SW_EFORMAT, 0);
    check_bad("header length 100 MiB + 1", "{}", (100u << 20) + 1, 0, -SW_EFORMAT, 0);
    check_bad("header length beyond the file", "{}", 1000, 0, -SW_EFORMAT, 0);
    check_bad("header length one past the file", "{}", 3, 0, -SW_EFORMAT, 0);

    /* JSON */
    check_bad("not JSON", "{abc   ", UINT64_MAX, 0, -SW_EFORMAT, 0);
    check_bad("truncated JSON", "{\"a\":{\"dtype\":\"F32\"", UINT64_MAX, 0, -SW_EFORMAT, 0);
    check_bad("JSON array", "[1, 2]  ", UINT64_MAX, 0, -SW_EFORMAT, 0);
    check_bad("JSON string", "\"abc\"   ", UINT64_MAX, 0, -SW_EFORMAT, 0);
    check_bad("garbage after the object", "{} xyz  ", UINT64_MAX, 0, -SW_EFORMAT, 0);
    check_bad_n("NUL byte in the header", "{}\0     ", 8, UINT64_MAX, 0, -SW_EFORMAT, 0);
    check_bad_n("NUL byte in a name", "{\"a\0\":{\"dtype\":\"F32\",\"shape\":[],"
                "\"data_offsets\":[0,4]}}", 54, UINT64_MAX, 4, -SW_EFORMAT, 0);
    check_bad("invalid UTF-8", "{\"\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[],"
              "\"data_offsets\":[0,4]}}", UINT64_MAX, 4, -SW_EFORMAT, 0);
    check_bad("escaped NUL in a name", "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[],"
              "\"data_offsets\":[0,4]}}", UINT64_MAX, 4, -SW_EFORMAT, 0);
    check_bad("duplicate names", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
              UINT64_MAX, 8, -SW_EFORMAT, 0);
    check_bad("duplicate key in an entry", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\","
              "\"shape\":[1],\"data_offsets\":[0,4]}}", UINT64_MAX, 4, -SW_EFORMAT, 0);

    /* entries */
    check_bad("entry not an object", "{\"a\":1}", UINT64_MAX, 0, -SW_EFORMAT, 0);
    check_bad("missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}",
              UINT64_MAX, 4, -SW_EFORMAT, 0);
    check_bad("missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}",
              UINT64_MAX, 4, -SW_EFORMAT, 0);
    check_bad("missing data_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}",
              UINT64_MAX, 4, -SW_EFORMAT, 0);
    check_bad("unknown field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],"
              "\"x\":0}}", UINT64_MAX, 4, -SW_EFORMAT, 0);
    check_bad("dtype not a string", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}",
              UINT64_MAX, 4, -SW_EFORMAT, 0);
    check_bad("unknown dtype", "{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,4]}}",
              UINT64_MAX, 4, -SW_EDTYPE, 0);
    check_bad("lowercase dtype", "{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
              UINT64_MAX, 4, -SW_EDTYPE, 0);
    check_bad("I64 with SW_ST_FLOAT_ONLY", "{\"a\":{\"dtype\":\"I64\",\"shape\":[1],"
              "\"data_offsets\":[0,8]}}", UINT64_MAX, 8, -SW_EDTYPE, SW_ST_FLOAT_ONLY);
    check_bad("shape not an array", "{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}",
              UINT64_MAX, 4, -SW_EFORMAT, 0);
    check_bad("shape of reals", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],"
              "\"data_offsets\":[0,4]}}", UINT64_MAX, 4, -SW_EFORMAT, 0);
    check_bad("shape of strings", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],"
              "\"data_offsets\":[0,4]}}", UINT64_MAX, 4, -SW_EFORMAT, 0);
    check_bad("negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
              UINT64_MAX, 4, -SW_ESHAPE, 0);
    check_bad("negative dims that multiply to 1", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1,-1],"
              "\"data_offsets\":[0,4]}}", UINT64_MAX, 4, -SW_ESHAPE, 0);
    check_bad("9 dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
              "\"data_offsets\":[0,4]}}", UINT64_MAX, 4, -SW_ESHAPE, 0);
    check_bad("shape overflows 64 bits", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,"
              "4294967296,16],\"data_offsets\":[0,4]}}", UINT64_MAX, 4, -SW_ESHAPE, 0);
    check_bad("shape x dtype overflows", "{\"a\":{\"dtype\":\"F32\",\"shape\":"
              "[4611686018427387904],\"data_offsets\":[0,4]}}", UINT64_MAX, 4, -SW_ESHAPE, 0);
    check_bad("shape does not match the length", "{\"lm_head.weight\":{\"dtype\":\"F32\","
              "\"shape\":[4,4],\"data_offsets\":[0,12]}}", UINT64_MAX, 12, -SW_ESHAPE, 0);
    check_bad("BF16 length counted as F32", "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],"
              "\"data_offsets\":[0,8]}}", UINT64_MAX, 8, -SW_ESHAPE, 0);
    check_bad("data_offsets not an array", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
              "\"data_offsets\":4}}", UINT64_MAX, 4, -SW_EFORMAT, 0);
    check_bad("data_offsets of one", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
              "\"data_offsets\":[4]}}", UINT64_MAX, 4, -SW_EFORMAT, 0);
    check_bad("data_offsets of three", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
              "\"data_offsets\":[0,4,8]}}", UINT64_MAX, 4, -SW_EFORMAT, 0);
    check_bad("data_offsets of strings", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
              "\"data_offsets\":[\"0\",\"4\"]}}", UINT64_MAX, 4, -SW_EFORMAT, 0);
    check_bad("data_offsets of reals", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
              "\"data_offsets\":[0.0,4.0]}}", UINT64_MAX, 4, -SW_EFORMAT, 0);
    check_bad("data_offsets negative", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
              "\"data_offsets\":[-4,0]}}", UINT64_MAX, 4, -SW_EFORMAT, 0);
    check_bad("data_offsets begin > end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
              "\"data_offsets\":[8,4]}}", UINT64_MAX, 8, -SW_EFORMAT, 0);
    check_bad("data_offsets past the end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
              "\"data_offsets\":[4,8]}}", UINT64_MAX, 6, -SW_EFORMAT, 0);
    check_bad("data_offsets far past the end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
              "\"data_offsets\":[9223372036854775800,9223372036854775804]}}", UINT64_MAX, 4,
              -SW_EFORMAT, 0);
    check_bad("data_offsets beyond int64", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
              "\"data_offsets\":[0,99999999999999999999]}}", UINT64_MAX, 4, -SW_EFORMAT, 0);
    check_bad("overlapping tensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
              "\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
              "\"data_offsets\":[4,12]}}", UINT64_MAX, 12, -SW_EFORMAT, 0);
    check_bad("identical offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
              "\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
              "\"data_offsets\":[0,8]}}", UINT64_MAX, 8, -SW_EFORMAT, 0);
    check_bad("empty tensor inside another", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
              "\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[0],"
              "\"data_offsets\":[4,4]}}", UINT64_MAX, 8, -SW_EFORMAT, 0);
    check_bad("hole between tensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
              "\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
              "\"data_offsets\":[12,20]}}", UINT64_MAX, 20, -SW_EFORMAT, 0);
    check_bad("hole at the start", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
              "\"data_offsets\":[4,12]}}", UINT64_MAX, 12, -SW_EFORMAT, 0);
    check_bad("trailing bytes after the tensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
              "\"data_offsets\":[0,8]}}", UINT64_MAX, 12, -SW_EFORMAT, 0);
    check_bad("data but no tensors", "{}      ", UINT64_MAX, 8, -SW_EFORMAT, 0);
    check_bad("empty name", "{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
              UINT64_MAX, 4, -SW_EFORMAT, 0);
    memset(longname, 'a', SW_ST_NAME_MAX + 1);
    snprintf(json, sizeof(json), "{\"%s\":{\"dtype\":\"F32\",\"shape\":[1],"
             "\"data_offsets\":[0,4]}}", longname);
    check_bad("name over SW_ST_NAME_MAX bytes", json, UINT64_MAX, 4, -SW_EFORMAT, 0);
    check_bad("__metadata__ not an object", "{\"__metadata__\":1}", UINT64_MAX, 0,
              -SW_EFORMAT, 0);
    check_bad("__metadata__ value not a string", "{\"__metadata__\":{\"k\":1}}", UINT64_MAX, 0,
              -SW_EFORMAT, 0);
    check_bad("__metadata__ value an object", "{\"__metadata__\":{\"k\":{}}}", UINT64_MAX, 0,
              -SW_EFORMAT, 0);
    check_bad("__metadata__ twice", "{\"__metadata__\":{},\"__metadata__\":{}}", UINT64_MAX, 0,
              -SW_EFORMAT, 0);

    rc = sw_safetensors_open(&st, path_of("no-such-file"), 0);
    tap_ok(rc == -SW_ENOENT, "missing file: %s", sw_err_name(rc));
    rc = sw_safetensors_open(&st, dir, 0);
    tap_ok(rc == -SW_EFORMAT, "a folder is refused: %s", sw_err_name(rc));
}

static void
test_accept_edge(void)
{
    struct sw_safetensors st;
    float f[2];
    size_t n;
    int rc;

    n = build(img, "{}", UINT64_MAX, 0);
    rc = sw_safetensors_open_mem(&st, img, n, "empty", 0);
    tap_ok(rc == 0 && st.ntensors == 0, "header {} with no data opens, no tensors");
    if (rc == 0)
        sw_safetensors_close(&st);
    n = build(img, "{\"__metadata__\":null,\"a\":{\"dtype\":\"I64\",\"shape\":[1],"
              "\"data_offsets\":[0,8]}}", UINT64_MAX, 8);
    rc = sw_safetensors_open_mem(&st, img, n, "i64", 0);
    tap_ok(rc == 0 && st.ntensors == 1 && st.tensors[0].dtype == SW_DTYPE_I64,
           "I64 tensor is listed without SW_ST_FLOAT_ONLY, null __metadata__ accepted");
    if (rc == 0) {
        rc = sw_safetensors_read_f32(&st, "a", f, 1, NULL, 0);
        tap_ok(rc == -SW_EDTYPE, "I64 refused by read_f32: %s", sw_err_name(rc));
        sw_safetensors_close(&st);
    } else {
        tap_ok(0, "I64 refused by read_f32");
    }
    /* a zero-size tensor between two others, and unsorted entries */
    n = build(img, "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
              "\"z\":{\"dtype\":\"F16\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}  ", UINT64_MAX, 8);
    rc = sw_safetensors_open_mem(&st, img, n, "unsorted", 0);
    tap_ok(rc == 0 && st.ntensors == 3 && strcmp(st.tensors[0].name, "a") == 0 &&
           st.tensors[0].offset == st.data_start && sw_safetensors_find(&st, "z") &&
           sw_safetensors_find(&st, "z")->numel == 0 && !sw_safetensors_find(&st, "c"),
           "unsorted entries and an empty tensor open, table in file order");
    if (rc == 0)
        sw_safetensors_close(&st);
}

static uint32_t
f32_bits(float f)
{
    uint32_t u;

    memcpy(&u, &f, 4);
    return u;
}

/* Reference binary16 -> double by arithmetic, independent of the bit trick. */
static double
f16_ref(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;

    if (e == 31)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp(m, -24);
    else
        v = ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static void
test_convert(void)
{
    int bad = 0;

    tap_ok(sw_f16_to_f32(0x3c00) == 1.0f, "f16 1.0");
    tap_ok(sw_f16_to_f32(0xc100) == -2.5f, "f16 -2.5");
    tap_ok(sw_f16_to_f32(0x7bff) == 65504.0f, "f16 65504 (max)");
    tap_ok(sw_f16_to_f32(0x0001) == ldexpf(1, -24), "f16 smallest subnormal 2^-24");
    tap_ok(sw_f16_to_f32(0x03ff) == ldexpf(1023, -24), "f16 largest subnormal");
    tap_ok(sw_f16_to_f32(0x0400) == ldexpf(1, -14), "f16 smallest normal 2^-14");
    tap_ok(sw_f16_to_f32(0x8001) == -ldexpf(1, -24), "f16 -2^-24");
    tap_ok(f32_bits(sw_f16_to_f32(0x8000)) == 0x80000000u, "f16 -0 keeps its sign");
    tap_ok(isinf(sw_f16_to_f32(0x7c00)) && sw_f16_to_f32(0x7c00) > 0, "f16 +inf");
    tap_ok(isinf(sw_f16_to_f32(0xfc00)) && sw_f16_to_f32(0xfc00) < 0, "f16 -inf");
    tap_ok(isnan(sw_f16_to_f32(0x7e00)) && isnan(sw_f16_to_f32(0x7c01)) &&
           isnan(sw_f16_to_f32(0xfe00)), "f16 quiet and signalling NaN stay NaN");
    tap_ok(sw_f16_to_f32(0x3555) == 0.333251953125f, "f16 0x3555 = 0.333251953125");
    for (uint32_t h = 0; h < 65536; h++) {
        double r = f16_ref((uint16_t)h);
        float g = sw_f16_to_f32((uint16_t)h);

        if (isnan(r) ? !isnan(g) : (g != (float)r || !signbit(g) != !signbit(r)))
            bad++;
    }
    tap_ok(bad == 0, "all 65536 f16 codes match the ldexp reference (%d differ)", bad);

    tap_ok(sw_bf16_to_f32(0x3f80) == 1.0f, "bf16 1.0");
    tap_ok(sw_bf16_to_f32(0xc020) == -2.5f, "bf16 -2.5");
    tap_ok(sw_bf16_to_f32(0x7f7f) == 0x1.fep127f, "bf16 max 3.3895314e38");
    tap_ok(sw_bf16_to_f32(0x0001) == ldexpf(1, -133), "bf16 smallest subnormal 2^-133");
    tap_ok(isinf(sw_bf16_to_f32(0x7f80)) && isinf(sw_bf16_to_f32(0xff80)), "bf16 +-inf");
    tap_ok(isnan(sw_bf16_to_f32(0x7fc0)) && isnan(sw_bf16_to_f32(0xffc1)), "bf16 NaN");
}

static uint64_t rng = 0x1234567;

static uint32_t
rnd32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static int
count_files(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static bool
same_file(const char *a, const char *b)
{
    static uint8_t x[1 << 16], y[1 << 16];
    char pa[1024], pb[1024];
    size_t n = 0, m = 0;
    FILE *f, *g;

    snprintf(pa, sizeof(pa), "%s", path_of(a));
    snprintf(pb, sizeof(pb), "%s", path_of(b));
    f = fopen(pa, "rb");
    g = fopen(pb, "rb");
    if (f) {
        n = fread(x, 1, sizeof(x), f);
        fclose(f);
    }
    if (g) {
        m = fread(y, 1, sizeof(y), g);
        fclose(g);
    }
    return f && g && n == m && memcmp(x, y, n) == 0;
}

static void
test_roundtrip(void)
{
    static float a[3 * 5], b[7], s[1], q[2 * 3 * 1 * 2], got[64];
    const int64_t sha[] = {3, 5}, shq[] = {2, 3, 1, 2}, wrong[] = {5, 3};
    struct sw_st_desc t[5] = {
        {"model.embed_tokens.weight", SW_DTYPE_F32, 2, {3, 5}, a, sizeof(a)},
        {"b", SW_DTYPE_F32, 1, {7}, b, sizeof(b)},
        {"scalar", SW_DTYPE_F32, 0, {0}, s, sizeof(s)},
        {"empty", SW_DTYPE_F32, 2, {0, 4}, NULL, 0},
        {"q", SW_DTYPE_F32, 4, {2, 3, 1, 2}, q, sizeof(q)},
    };
    const struct sw_st_meta meta[] = {{"format", "pt"}, {"step", "12"}};
    struct sw_safetensors st;
    struct sw_st_writer w;
    uint32_t special[] = {0x7fc00001u, 0xff812345u, 0x80000000u, 0x7f800000u, 0xff800000u,
                          0x00000001u, 0x007fffffu, 0x3f800000u};
    uint64_t total;
    struct stat sb;
    bool ok;
    int rc;

    for (size_t i = 0; i < SW_ARRAY_SIZE(a); i++) {
        uint32_t u = i < SW_ARRAY_SIZE(special) ? special[i] : rnd32();
        memcpy(&a[i], &u, 4);
    }
    for (size_t i = 0; i < SW_ARRAY_SIZE(b); i++) {
        uint32_t u = rnd32();
        memcpy(&b[i], &u, 4);
    }
    s[0] = 3.25f;
    for (size_t i = 0; i < SW_ARRAY_SIZE(q); i++)
        q[i] = (float)i - 7.5f;

    rc = sw_safetensors_write(path_of("rt.safetensors"), t, 5, meta, 2);
    tap_ok(rc == 0, "write 5 tensors + metadata: %s", sw_err_name(rc));
    tap_ok(count_files() == 1, "no temporary file left behind");
    rc = sw_safetensors_open(&st, path_of("rt.safetensors"), SW_ST_FLOAT_ONLY);
    tap_ok(rc == 0, "reopen: %s", sw_err_name(rc));
    if (rc < 0)
        exit(1);
    stat(path_of("rt.safetensors"), &sb);
    total = sizeof(a) + sizeof(b) + sizeof(s) + sizeof(q);
    tap_ok(st.ntensors == 5 && st.data_start % 8 == 0 && (uint64_t)sb.st_size ==
           st.data_start + total && st.data_size == total,
           "5 tensors, header padded to 8, data dense (%llu bytes)", (unsigned long long)total);
    ok = st.ntensors == 5;
    for (int i = 0; ok && i < 5; i++) {
        const struct sw_st_tensor *x = &st.tensors[i];

        ok = strcmp(x->name, t[i].name) == 0 && x->ndim == t[i].ndim && x->nbytes == t[i].nbytes &&
             x->dtype == SW_DTYPE_F32 && memcmp(x->shape, t[i].shape, sizeof(int64_t) *
                                                (size_t)t[i].ndim) == 0;
    }
    tap_ok(ok, "names, shapes, dtypes and sizes in the order written");
    tap_ok(st.nmeta == 2 && strcmp(sw_safetensors_meta(&st, "format"), "pt") == 0 &&
           strcmp(sw_safetensors_meta(&st, "step"), "12") == 0 &&
           !sw_safetensors_meta(&st, "x"), "metadata round trip");

    rc = sw_safetensors_read_f32(&st, "model.embed_tokens.weight", got, 15, sha, 2);
    tap_ok(rc == 0 && memcmp(got, a, sizeof(a)) == 0, "[3, 5] bit-exact (NaN payloads, -0, "
           "inf, subnormals)");
    rc = sw_safetensors_read_f32(&st, "b", got, 7, NULL, 0);
    tap_ok(rc == 0 && memcmp(got, b, sizeof(b)) == 0, "[7] bit-exact, shape unchecked");
    rc = sw_safetensors_read_f32(&st, "scalar", got, 1, NULL, 0);
    tap_ok(rc == 0 && got[0] == 3.25f && sw_safetensors_find(&st, "scalar")->numel == 1, "scalar [] = 3.25");
    rc = sw_safetensors_read_f32(&st, "empty", got, 0, (const int64_t[]){0, 4}, 2);
    tap_ok(rc == 0, "empty [0, 4] reads as nothing");
    rc = sw_safetensors_read_f32(&st, "q", got, 12, shq, 4);
    tap_ok(rc == 0 && memcmp(got, q, sizeof(q)) == 0, "4-D [2, 3, 1, 2] bit-exact");
    rc = sw_safetensors_read_f32(&st, "model.embed_tokens.weight", got, 15, wrong, 2);
    tap_ok(rc == -SW_ESHAPE, "wrong expected shape refused: %s", sw_err_name(rc));
    rc = sw_safetensors_read_f32(&st, "b", got, 8, NULL, 0);
    tap_ok(rc == -SW_ESHAPE, "wrong element count refused: %s", sw_err_name(rc));
    rc = sw_safetensors_read_f32(&st, "nope", got, 1, NULL, 0);
    tap_ok(rc == -SW_ENOENT, "missing tensor: %s", sw_err_name(rc));
    sw_safetensors_close(&st);

    /* streaming writer, data in odd pieces, gives the same bytes */
    rc = sw_safetensors_writer_open(&w, path_of("rt2.safetensors"), t, 5, meta, 2);
    if (rc == 0) {
        const uint8_t *p = (const uint8_t *)a;
        rc = sw_safetensors_writer_put(&w, p, 3);
        rc = rc ? rc : sw_safetensors_writer_put(&w, p + 3, sizeof(a) - 3);
        rc = rc ? rc : sw_safetensors_writer_put(&w, b, sizeof(b));
        rc = rc ? rc : sw_safetensors_writer_put(&w, s, sizeof(s));
        rc = rc ? rc : sw_safetensors_writer_put(&w, q, sizeof(q));
        rc = rc ? rc : sw_safetensors_writer_commit(&w);
    }
    tap_ok(rc == 0 && same_file("rt.safetensors", "rt2.safetensors"),
           "streaming writer writes the same bytes");

    /* overwrite is atomic and replaces the old content */
    rc = sw_safetensors_write(path_of("rt2.safetensors"), t + 1, 1, NULL, 0);
    rc = rc ? rc : sw_safetensors_open(&st, path_of("rt2.safetensors"), 0);
    tap_ok(rc == 0 && st.ntensors == 1 && st.nmeta == 0, "overwrite replaces the file");
    if (rc == 0)
        sw_safetensors_close(&st);
    unlink(path_of("rt2.safetensors"));

    /* writer refusals leave nothing behind */
    {
        struct sw_st_desc d2[2] = {t[1], t[1]};
        rc = sw_safetensors_write(path_of("dup.safetensors"), d2, 2, NULL, 0);
        tap_ok(rc == -SW_EINVAL && count_files() == 1, "writer refuses a duplicate name: %s",
               sw_err_name(rc));
        d2[0].nbytes = 12;
        rc = sw_safetensors_write(path_of("dup.safetensors"), d2, 1, NULL, 0);
        tap_ok(rc == -SW_ESHAPE && count_files() == 1, "writer refuses nbytes != shape: %s",
               sw_err_name(rc));
        d2[0] = t[1];
        d2[0].name = "__metadata__";
        rc = sw_safetensors_write(path_of("dup.safetensors"), d2, 1, NULL, 0);
        tap_ok(rc == -SW_EINVAL && count_files() == 1, "writer refuses the name __metadata__");
        rc = sw_safetensors_write(path_of("dup.safetensors"), t + 1, 1,
                                  (const struct sw_st_meta[]){{"k", "1"}, {"k", "2"}}, 2);
        tap_ok(rc == -SW_EINVAL && count_files() == 1, "writer refuses a repeated metadata key");
        rc = sw_safetensors_writer_open(&w, path_of("dup.safetensors"), t, 2, NULL, 0);
        if (rc == 0) {
            rc = sw_safetensors_writer_put(&w, a, sizeof(a));
            rc = rc ? rc : sw_safetensors_writer_commit(&w);
        }
        tap_ok(rc == -SW_EINVAL && count_files() == 1, "commit with bytes missing refused, "
               "temporary file removed: %s", sw_err_name(rc));
    }
}

static void
test_half_files(void)
{
    /* 5 F16 and 3 BF16 values (odd counts: in-place widening near the ends) */
    static const uint16_t h16[5] = {0x3c00, 0xc100, 0x7bff, 0x0001, 0xfc00};
    static const uint16_t hb[3] = {0x3f80, 0xc020, 0x0001};
    const float want16[5] = {1.0f, -2.5f, 65504.0f, ldexpf(1, -24), -INFINITY};
    const float wantb[3] = {1.0f, -2.5f, ldexpf(1, -133)};
    struct sw_st_desc t[2] = {
        {"h", SW_DTYPE_F16, 1, {5}, h16, sizeof(h16)},
        {"g", SW_DTYPE_BF16, 2, {1, 3}, hb, sizeof(hb)},
    };
    struct sw_safetensors st;
    float got[5];
    int rc;

    rc = sw_safetensors_write(path_of("half.safetensors"), t, 2, NULL, 0);
    rc = rc ? rc : sw_safetensors_open(&st, path_of("half.safetensors"), SW_ST_FLOAT_ONLY);
    tap_ok(rc == 0, "F16/BF16 file written and opened: %s", sw_err_name(rc));
    if (rc < 0)
        return;
    rc = sw_safetensors_read_f32(&st, "h", got, 5, (const int64_t[]){5}, 1);
    tap_ok(rc == 0 && memcmp(got, want16, sizeof(want16)) == 0, "F16 tensor widened to F32");
    rc = sw_safetensors_read_f32(&st, "g", got, 3, (const int64_t[]){1, 3}, 2);
    tap_ok(rc == 0 && memcmp(got, wantb, sizeof(wantb)) == 0, "BF16 tensor widened to F32");
    sw_safetensors_close(&st);
}

int
main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 99;
    }
    test_convert();
    test_roundtrip();
    test_half_files();
    test_accept_edge();
    test_malformed();
    {
        DIR *d = opendir(dir);
        struct dirent *e;

        while (d && (e = readdir(d)) != NULL)
            if (e->d_name[0] != '.')
                unlink(path_of(e->d_name));
        if (d)
            closedir(d);
        rmdir(dir);
    }
    return tap_done();
}
