/*
 * test_wire.c - envelopes: round trip, the tree hash, and one test per drop
 * reason, each checking that its counter moved (and only its counter).
 */
#define _GNU_SOURCE /* memmem */
#include "sw.h"

#include "identity.h"
#include "tap.h"
#include "wire.h"
#include "blake2b4.h"

#include <math.h>
#include <sodium.h>
#include <string.h>

static struct sw_identity alice, mallory;
static struct sw_wire wa, wb; /* wa sends as alice, wb receives */
static uint8_t run[32];
static uint8_t env[SW_WIRE_MAX_ENVELOPE];
static size_t env_len;
static uint8_t sig[64];

/* Open with wb and check the code and that exactly drops[reason] moved. */
static void
expect_drop(const void *e, size_t elen, const void *s, size_t slen, size_t plen, int reason,
            const char *what)
{
    struct sw_wire_stats before = wb.stats;
    struct sw_wire_hdr h;
    int err = sw_wire_open(&wb, e, elen, s, slen, plen, &h);
    int moved = 1;

    for (int r = 0; r < SW_WIRE_DROP__COUNT; r++)
        if (wb.stats.drops[r] != before.drops[r] + (r == reason))
            moved = 0;
    tap_ok(err == sw_wire_drop_code(reason) && moved && wb.stats.accepted == before.accepted,
           "%s: dropped as %s (%s)", what, sw_wire_drop_name(reason), sw_strerror(err));
}

static void
seal_simple(uint32_t type, const void *payload, size_t plen)
{
    uint8_t h[32];
    int err;

    sw_wire_payload_hash(h, payload, plen);
    err = sw_wire_seal(&wa, type, 7, NULL, 0, h, plen, env, sizeof(env), &env_len, sig);
    if (err < 0)
        tap_diag("seal: %s", sw_strerror(err));
}

/* An envelope with arbitrary key/values, signed by alice: for the field tests. */
enum { K_DROP = 1, K_DUP = 2, K_EXTRA = 4, K_SEQSTR = 8, K_V2 = 16, K_RUNSHORT = 32 };

static size_t
craft(uint8_t *out, size_t cap, int mode, const char *drop_key)
{
    struct sw_wire_buf b;
    msgpack_packer pk;
    uint8_t h[32];
    const char *keys[] = {"v", "t", "run", "from", "seq", "rid", "plen", "phash", "body"};
    int n = 9;

    sw_wire_payload_hash(h, NULL, 0);
    sw_wire_buf_init(&b, out, cap);
    sw_wire_buf_packer(&pk, &b);
    if (mode & K_DROP)
        n--;
    if (mode & (K_DUP | K_EXTRA))
        n++;
    msgpack_pack_map(&pk, (size_t)n);
    for (int i = 0; i < 9; i++) {
        const char *k = keys[i];

        if ((mode & K_DROP) && strcmp(k, drop_key) == 0)
            continue;
        msgpack_pack_str_with_body(&pk, k, strlen(k));
        if (!strcmp(k, "v"))
            msgpack_pack_uint32(&pk, (mode & K_V2) ? 2 : 1);
        else if (!strcmp(k, "t"))
            msgpack_pack_uint32(&pk, SW_MSG_PING);
        else if (!strcmp(k, "run"))
            msgpack_pack_bin_with_body(&pk, run, (mode & K_RUNSHORT) ? 31 : 32);
        else if (!strcmp(k, "from"))
            msgpack_pack_bin_with_body(&pk, alice.pk, 32);
        else if (!strcmp(k, "seq") && (mode & K_SEQSTR))
            msgpack_pack_str_with_body(&pk, "12", 2);
        else if (!strcmp(k, "seq"))
            msgpack_pack_uint64(&pk, wa.next_seq[SW_WIRE_SEQ_OTHER]++);
        else if (!strcmp(k, "rid") || !strcmp(k, "plen"))
            msgpack_pack_uint64(&pk, 0);
        else if (!strcmp(k, "phash"))
            msgpack_pack_bin_with_body(&pk, h, 32);
        else
            msgpack_pack_map(&pk, 0);
    }
    if (mode & K_DUP) {
        msgpack_pack_str_with_body(&pk, "rid", 3);
        msgpack_pack_uint64(&pk, 1);
    }
    if (mode & K_EXTRA) {
        msgpack_pack_str_with_body(&pk, "xtra", 4);
        msgpack_pack_uint64(&pk, 1);
    }
    if (sw_identity_sign(&alice, sig, out, b.len) < 0)
        tap_diag("sign failed");
    return b.len;
}

static void
test_roundtrip(void)
{
    uint8_t body[256], payload[3000], h[32];
    struct sw_wire_buf b;
    struct sw_wire_hdr hdr;
    msgpack_packer pk;
    msgpack_unpacked up;
    int err;

    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 7);
    sw_wire_buf_init(&b, body, sizeof(body));
    sw_wire_buf_packer(&pk, &b);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "key", 3);
    msgpack_pack_bin_with_body(&pk, "0123456789abcdef0123456789abcdef", 32);
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_uint64(&pk, 42);
    sw_wire_payload_hash(h, payload, sizeof(payload));
    err = sw_wire_seal(&wa, 300, 99, body, b.len, h, sizeof(payload), env, sizeof(env), &env_len,
                       sig);
    tap_ok(err == 0 && env_len < 400, "seal with a body (%zu bytes)", env_len);
    err = sw_wire_open(&wb, env, env_len, sig, 64, sizeof(payload), &hdr);
    tap_ok(err == 0, "open (%s)", sw_strerror(err));
    tap_ok(hdr.type == 300 && hdr.rid == 99 && hdr.payload_len == sizeof(payload) &&
               memcmp(hdr.sender, alice.pk, 32) == 0 && memcmp(hdr.run, run, 32) == 0 &&
               hdr.version == SW_WIRE_VERSION,
           "header fields survive the round trip");
    tap_ok(hdr.body_len == b.len && memcmp(hdr.body, body, b.len) == 0,
           "body bytes are returned verbatim");
    tap_ok(sw_wire_check_payload(&wb, &hdr, payload, sizeof(payload)) == 0, "payload verifies");
    err = sw_wire_unpack(hdr.body, hdr.body_len, &up);
    tap_ok(err == 0 && up.data.type == MSGPACK_OBJECT_MAP && up.data.via.map.size == 2 &&
               up.data.via.map.ptr[1].val.via.u64 == 42,
           "body decodes with sw_wire_unpack");
    msgpack_unpacked_destroy(&up);
    tap_ok(wb.stats.accepted == 1 && wa.stats.sealed == 1, "accepted and sealed counters");

    /* empty body and no payload */
    seal_simple(SW_MSG_PING, NULL, 0);
    err = sw_wire_open(&wb, env, env_len, sig, 64, 0, &hdr);
    tap_ok(err == 0 && hdr.body_len == 1 && hdr.body[0] == 0x80, "empty body is {}");

    /* seal refuses a body that is not a map */
    tap_ok(sw_wire_seal(&wa, 5, 0, "\x93\x01\x02\x03", 4, NULL, 0, env, sizeof(env), &env_len,
                        sig) == -SW_EINVAL,
           "seal refuses a body that is not one map");
    tap_ok(sw_wire_seal(&wa, 5, 0, "\x81\xa1" "a", 3, NULL, 0, env, sizeof(env), &env_len, sig) ==
               -SW_EINVAL,
           "seal refuses a truncated body");
}

/* An envelope with "cert" as given (raw msgpack value bytes), signed by alice. */
static size_t
craft_cert(uint8_t *out, size_t cap, const uint8_t *val, size_t val_len)
{
    struct sw_wire_buf b;
    uint8_t h[32];
    msgpack_packer pk;

    sw_wire_payload_hash(h, NULL, 0);
    sw_wire_buf_init(&b, out, cap);
    sw_wire_buf_packer(&pk, &b);
    msgpack_pack_map(&pk, 10);
    msgpack_pack_str_with_body(&pk, "cert", 4); /* first: any order is allowed */
    if (val_len <= b.cap - b.len) {
        memcpy(b.data + b.len, val, val_len);
        b.len += val_len;
    }
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_uint32(&pk, 1);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_uint32(&pk, SW_MSG_PING);
    msgpack_pack_str_with_body(&pk, "run", 3);
    msgpack_pack_bin_with_body(&pk, run, 32);
    msgpack_pack_str_with_body(&pk, "from", 4);
    msgpack_pack_bin_with_body(&pk, alice.pk, 32);
    msgpack_pack_str_with_body(&pk, "seq", 3);
    msgpack_pack_uint64(&pk, wa.next_seq[SW_WIRE_SEQ_OTHER]++);
    msgpack_pack_str_with_body(&pk, "rid", 3);
    msgpack_pack_uint64(&pk, 0);
    msgpack_pack_str_with_body(&pk, "plen", 4);
    msgpack_pack_uint64(&pk, 0);
    msgpack_pack_str_with_body(&pk, "phash", 5);
    msgpack_pack_bin_with_body(&pk, h, 32);
    msgpack_pack_str_with_body(&pk, "body", 4);
    msgpack_pack_map(&pk, 0);
    if (sw_identity_sign(&alice, sig, out, b.len) < 0)
        tap_diag("sign failed");
    return b.len;
}

static void
test_cert(void)
{
    uint8_t cert[SW_WIRE_MAX_CERT + 1], buf[4096], val[SW_WIRE_MAX_CERT + 8];
    struct sw_wire_hdr hdr;
    size_t n;
    int err;

    for (size_t i = 0; i < sizeof(cert); i++)
        cert[i] = (uint8_t)(i * 13 + 1);

    /* no cert: absent on receipt */
    seal_simple(SW_MSG_PING, NULL, 0);
    err = sw_wire_open(&wb, env, env_len, sig, 64, 0, &hdr);
    tap_ok(err == 0 && hdr.cert == NULL && hdr.cert_len == 0, "no cert: hdr.cert is NULL/0");

    /* a cert rides in every sealed envelope, verbatim */
    tap_ok(sw_wire_set_cert(&wa, cert, 200) == 0, "set a 200-byte cert");
    seal_simple(SW_MSG_PING, NULL, 0);
    err = sw_wire_open(&wb, env, env_len, sig, 64, 0, &hdr);
    tap_ok(err == 0 && hdr.cert_len == 200 && hdr.cert && memcmp(hdr.cert, cert, 200) == 0 &&
               hdr.cert >= env && hdr.cert + 200 <= env + env_len,
           "cert arrives verbatim, a slice of the envelope (%s)", sw_strerror(err));
    seal_simple(SW_MSG_PING, NULL, 0);
    env[env_len - 1] ^= 0x20; /* last cert byte: still well-formed, no longer signed */
    expect_drop(env, env_len, sig, 64, 0, SW_WIRE_DROP_SIG, "changed cert byte");

    /* the largest allowed; one more is refused by the setter */
    tap_ok(sw_wire_set_cert(&wa, cert, SW_WIRE_MAX_CERT) == 0, "set a cert of SW_WIRE_MAX_CERT");
    seal_simple(SW_MSG_PING, NULL, 0);
    err = sw_wire_open(&wb, env, env_len, sig, 64, 0, &hdr);
    tap_ok(err == 0 && hdr.cert_len == SW_WIRE_MAX_CERT &&
               memcmp(hdr.cert, cert, SW_WIRE_MAX_CERT) == 0,
           "a %d-byte cert is accepted", SW_WIRE_MAX_CERT);
    tap_ok(sw_wire_set_cert(&wa, cert, SW_WIRE_MAX_CERT + 1) == -SW_ETOOBIG,
           "setter refuses a cert over SW_WIRE_MAX_CERT");
    tap_ok(sw_wire_set_cert(&wa, NULL, 0) == 0, "len 0 clears the cert");
    seal_simple(SW_MSG_PING, NULL, 0);
    err = sw_wire_open(&wb, env, env_len, sig, 64, 0, &hdr);
    tap_ok(err == 0 && hdr.cert == NULL && hdr.cert_len == 0, "cleared: no cert sent");

    /* hostile: too long, wrong type, duplicated (each signed by alice) */
    val[0] = 0xc5; /* bin16 */
    val[1] = (uint8_t)((SW_WIRE_MAX_CERT + 1) >> 8);
    val[2] = (uint8_t)((SW_WIRE_MAX_CERT + 1) & 0xff);
    memcpy(val + 3, cert, SW_WIRE_MAX_CERT + 1);
    n = craft_cert(buf, sizeof(buf), val, 3 + SW_WIRE_MAX_CERT + 1);
    expect_drop(buf, n, sig, 64, 0, SW_WIRE_DROP_MALFORMED, "cert of 1025 bytes");
    n = craft_cert(buf, sizeof(buf), (const uint8_t *)"\xa3" "abc", 4);
    expect_drop(buf, n, sig, 64, 0, SW_WIRE_DROP_MALFORMED, "cert as a str");
    n = craft_cert(buf, sizeof(buf), (const uint8_t *)"\x07", 1);
    expect_drop(buf, n, sig, 64, 0, SW_WIRE_DROP_MALFORMED, "cert as an int");
    n = craft_cert(buf, sizeof(buf), (const uint8_t *)"\xc4\x02xy", 4);
    err = sw_wire_open(&wb, buf, n, sig, 64, 0, &hdr);
    tap_ok(err == 0 && hdr.cert_len == 2 && memcmp(hdr.cert, "xy", 2) == 0,
           "a crafted 2-byte cert, first key, is accepted");
    n = craft_cert(buf, sizeof(buf), (const uint8_t *)"\xc4\x00", 2);
    err = sw_wire_open(&wb, buf, n, sig, 64, 0, &hdr);
    tap_ok(err == 0 && hdr.cert == NULL && hdr.cert_len == 0, "an empty cert reads as absent");
    {
        /* "cert" twice: the map says 11 keys, the second cert follows body */
        size_t m = craft_cert(buf, sizeof(buf), (const uint8_t *)"\xc4\x01z", 3);

        buf[0] = 0x8b;
        memcpy(buf + m, "\xa4" "cert\xc4\x01z", 8);
        m += 8;
        if (sw_identity_sign(&alice, sig, buf, m) < 0)
            tap_diag("sign failed");
        expect_drop(buf, m, sig, 64, 0, SW_WIRE_DROP_MALFORMED, "duplicate key 'cert'");
    }
}

static void
test_tree_hash(void)
{
    size_t len = 13 * SW_WIRE_CHUNK + 12345; /* an 8-lane, a 4-lane group, single chunks */
    uint8_t *p = sw_malloc(len), h1[32], h2[32], ref[32], d[32], hdr[16];
    crypto_generichash_state st;

    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i ^ (i >> 9));
    crypto_generichash_init(&st, NULL, 0, 32);
    for (int i = 0; i < 8; i++) {
        hdr[i] = (uint8_t)((uint64_t)len >> (8 * i));
        hdr[8 + i] = (uint8_t)((uint64_t)SW_WIRE_CHUNK >> (8 * i));
    }
    crypto_generichash_update(&st, hdr, 16);
    for (size_t off = 0; off < len; off += SW_WIRE_CHUNK) {
        crypto_generichash(d, 32, p + off, SW_MIN((size_t)SW_WIRE_CHUNK, len - off), NULL, 0);
        crypto_generichash_update(&st, d, 32);
    }
    crypto_generichash_final(&st, ref, 32);
    sw_wire_set_hash_threads(1);
    sw_wire_payload_hash(h1, p, len);
    sw_wire_set_hash_threads(2);
    sw_wire_payload_hash(h2, p, len);
    sw_wire_set_hash_threads(1);
    tap_ok(memcmp(h1, ref, 32) == 0, "tree hash matches its definition");
    tap_ok(memcmp(h1, h2, 32) == 0, "threaded tree hash equals the sequential one");
    if (sw__blake2b8_available()) {
        /* eight blocks anywhere (unequal gaps, unaligned), against libsodium */
        const uint8_t *in[8];
        uint8_t out[8][32];
        size_t n = 3 * 128 + 5 * 1024;
        int bad = 0;

        for (int k = 0; k < 8; k++)
            in[k] = p + (k * 7 % 8) * 100003 + (size_t)k * 3;
        sw__blake2b8_256(out, in, n);
        for (int k = 0; k < 8; k++) {
            crypto_generichash(d, 32, in[k], n, NULL, 0);
            bad += memcmp(d, out[k], 32) != 0;
        }
        tap_ok(bad == 0, "8-lane AVX-512 BLAKE2b equals libsodium on 8 scattered inputs");
    } else {
        tap_ok(1, "# SKIP no AVX-512F: 8-lane BLAKE2b not used");
    }
    sw_free(p);
}

static void
test_drops(void)
{
    uint8_t buf[SW_WIRE_MAX_ENVELOPE + 16], payload[64];
    struct sw_wire_hdr hdr;
    struct sw_wire wc;
    size_t n;

    memset(payload, 1, sizeof(payload));

    /* TOOBIG */
    memset(buf, 0, sizeof(buf));
    expect_drop(buf, SW_WIRE_MAX_ENVELOPE + 1, sig, 64, 0, SW_WIRE_DROP_TOOBIG,
                "envelope over 64 KiB");
    seal_simple(SW_MSG_PING, NULL, 0);
    expect_drop(env, env_len, sig, 64, SW_WIRE_MAX_PAYLOAD + 1, SW_WIRE_DROP_TOOBIG,
                "payload over the frame limit");

    /* MALFORMED */
    expect_drop("\xc1garbage", 8, sig, 64, 0, SW_WIRE_DROP_MALFORMED, "garbage bytes");
    seal_simple(SW_MSG_PING, NULL, 0);
    expect_drop(env, env_len - 1, sig, 64, 0, SW_WIRE_DROP_MALFORMED, "truncated envelope");
    expect_drop(env, env_len, sig, 63, 0, SW_WIRE_DROP_MALFORMED, "63-byte signature frame");
    memcpy(buf, env, env_len);
    buf[env_len] = 0xc0;
    expect_drop(buf, env_len + 1, sig, 64, 0, SW_WIRE_DROP_MALFORMED, "trailing bytes");
    n = craft(buf, sizeof(buf), K_DROP, "seq");
    expect_drop(buf, n, sig, 64, 0, SW_WIRE_DROP_MALFORMED, "missing key 'seq'");
    n = craft(buf, sizeof(buf), K_DROP, "body");
    expect_drop(buf, n, sig, 64, 0, SW_WIRE_DROP_MALFORMED, "missing key 'body'");
    n = craft(buf, sizeof(buf), K_DUP, NULL);
    expect_drop(buf, n, sig, 64, 0, SW_WIRE_DROP_MALFORMED, "duplicate key 'rid'");
    n = craft(buf, sizeof(buf), K_EXTRA, NULL);
    expect_drop(buf, n, sig, 64, 0, SW_WIRE_DROP_MALFORMED, "unknown key 'xtra' (signed)");
    n = craft(buf, sizeof(buf), K_SEQSTR, NULL);
    expect_drop(buf, n, sig, 64, 0, SW_WIRE_DROP_MALFORMED, "mistyped 'seq' (str)");
    n = craft(buf, sizeof(buf), K_RUNSHORT, NULL);
    expect_drop(buf, n, sig, 64, 0, SW_WIRE_DROP_MALFORMED, "31-byte run id");
    n = craft(buf, sizeof(buf), K_V2, NULL);
    expect_drop(buf, n, sig, 64, 0, SW_WIRE_DROP_MALFORMED, "unknown version 2");
    n = craft(buf, sizeof(buf), 0, NULL);
    tap_ok(sw_wire_open(&wb, buf, n, sig, 64, 0, &hdr) == 0, "the crafted envelope itself is valid");
    /* a map32 claiming 2^32-1 entries: refused before msgpack-c allocates */
    expect_drop("\xdf\xff\xff\xff\xff\xa1v\x01", 8, sig, 64, 0, SW_WIRE_DROP_MALFORMED,
                "map32 with an impossible count");
    memset(buf, 0x91, 40); /* 40 nested arrays */
    buf[40] = 0x01;
    expect_drop(buf, 41, sig, 64, 0, SW_WIRE_DROP_MALFORMED, "nesting deeper than 16");
    expect_drop("\xd4\x01\x02", 3, sig, 64, 0, SW_WIRE_DROP_MALFORMED, "ext type");

    /* RUN */
    {
        uint8_t other[32];

        memset(other, 0xee, 32);
        if (sw_wire_init(&wc, &mallory, other, NULL) == 0) {
            uint8_t h[32];

            sw_wire_payload_hash(h, NULL, 0);
            if (sw_wire_seal(&wc, SW_MSG_PING, 0, NULL, 0, h, 0, env, sizeof(env), &env_len,
                             sig) < 0)
                tap_diag("seal failed");
            expect_drop(env, env_len, sig, 64, 0, SW_WIRE_DROP_RUN, "other run id");
            sw_wire_release(&wc);
        }
    }

    /* LENGTH */
    seal_simple(SW_MSG_TENSOR, payload, sizeof(payload));
    expect_drop(env, env_len, sig, 64, sizeof(payload) - 4, SW_WIRE_DROP_LENGTH,
                "payload frame shorter than plen");

    /* SIG */
    seal_simple(SW_MSG_PING, NULL, 0);
    sig[10] ^= 0x40;
    expect_drop(env, env_len, sig, 64, 0, SW_WIRE_DROP_SIG, "flipped signature bit");
    seal_simple(SW_MSG_PING, NULL, 0);
    env[env_len - 8] ^= 1; /* last byte of phash: well-formed, wrong empty-payload hash */
    expect_drop(env, env_len, sig, 64, 0, SW_WIRE_DROP_HASH, "empty payload with a wrong phash");
    seal_simple(SW_MSG_PING, NULL, 0);
    {
        uint8_t *rid = memmem(env, env_len, "\xa3rid\x07", 5);

        if (rid)
            rid[4] = 0x08; /* rid 7 -> 8: still well-formed, no longer what alice signed */
        expect_drop(env, env_len, sig, 64, 0, SW_WIRE_DROP_SIG, "changed request id");
    }
    {
        /* mallory claims to be alice: signs with her own key */
        size_t m = craft(buf, sizeof(buf), 0, NULL);

        if (sw_identity_sign(&mallory, sig, buf, m) < 0)
            tap_diag("sign failed");
        expect_drop(buf, m, sig, 64, 0, SW_WIRE_DROP_SIG, "forged sender key");
    }

    /* REPLAY and STALE */
    seal_simple(SW_MSG_PING, NULL, 0);
    tap_ok(sw_wire_open(&wb, env, env_len, sig, 64, 0, &hdr) == 0, "first delivery accepted");
    expect_drop(env, env_len, sig, 64, 0, SW_WIRE_DROP_REPLAY, "same envelope again");
    {
        uint8_t old_env[512], old_sig[64];
        size_t old_len;

        seal_simple(SW_MSG_PING, NULL, 0); /* kept back, delivered late */
        memcpy(old_env, env, env_len);
        memcpy(old_sig, sig, 64);
        old_len = env_len;
        seal_simple(SW_MSG_PING, NULL, 0);
        tap_ok(sw_wire_open(&wb, env, env_len, sig, 64, 0, &hdr) == 0, "newer sequence accepted");
        tap_ok(sw_wire_open(&wb, old_env, old_len, old_sig, 64, 0, &hdr) == 0,
               "older sequence inside the window accepted once");
        expect_drop(old_env, old_len, old_sig, 64, 0, SW_WIRE_DROP_REPLAY,
                    "...and refused the second time");
        seal_simple(SW_MSG_PING, NULL, 0);
        memcpy(old_env, env, env_len);
        memcpy(old_sig, sig, 64);
        old_len = env_len;
        wa.next_seq[SW_WIRE_SEQ_OTHER] += 100;
        seal_simple(SW_MSG_PING, NULL, 0);
        tap_ok(sw_wire_open(&wb, env, env_len, sig, 64, 0, &hdr) == 0, "jump ahead by 100");
        expect_drop(old_env, old_len, old_sig, 64, 0, SW_WIRE_DROP_STALE,
                    "sequence 100 behind the newest (window 64)");
    }

    /* HASH */
    seal_simple(SW_MSG_TENSOR, payload, sizeof(payload));
    if (sw_wire_open(&wb, env, env_len, sig, 64, sizeof(payload), &hdr) == 0) {
        struct sw_wire_stats before = wb.stats;
        int err;

        payload[5] ^= 1;
        err = sw_wire_check_payload(&wb, &hdr, payload, sizeof(payload));
        tap_ok(err == -SW_EHASH && wb.stats.drops[SW_WIRE_DROP_HASH] ==
                                       before.drops[SW_WIRE_DROP_HASH] + 1,
               "changed payload byte: dropped as hash");
    } else {
        tap_ok(0, "open for the hash test");
    }
}

static void
test_tensor(void)
{
    struct sw_wire_tensor t = {.name = "model.layers.0.mlp.up_proj.weight", .tag = 5,
                               .dtype = SW_WIRE_F32, .ndim = 2, .shape = {4, 8}, .off = 0};
    struct sw_wire_tensor u;
    uint8_t body[512];
    struct sw_wire_buf b;
    msgpack_packer pk;
    float x[32];
    uint16_t y[32];
    uint64_t before;

    for (int i = 0; i < 32; i++) {
        x[i] = (float)i * 0.5f;
        y[i] = 0x3f80; /* 1.0 in bf16 */
    }
    sw_wire_buf_init(&b, body, sizeof(body));
    sw_wire_buf_packer(&pk, &b);
    tap_ok(sw_wire_tensor_pack(&pk, &t) == 0 && sw_wire_tensor_unpack(body, b.len, &u) == 0 &&
               strcmp(u.name, t.name) == 0 && u.ndim == 2 && u.shape[1] == 8 && u.tag == 5 &&
               u.dtype == SW_WIRE_F32,
           "tensor descriptor round trip");
    tap_ok(sw_wire_tensor_check(&wb, &u, x, sizeof(x)) == 0, "finite f32 tensor accepted");
    tap_ok(sw_wire_tensor_check(&wb, &u, x, 64) == 0, "first piece accepted");
    u.off = 64;
    tap_ok(sw_wire_tensor_check(&wb, &u, x, 64) == 0, "second piece accepted");
    before = wb.stats.drops[SW_WIRE_DROP_MALFORMED];
    u.off = 96;
    tap_ok(sw_wire_tensor_check(&wb, &u, x, 64) == -SW_EMSG &&
               wb.stats.drops[SW_WIRE_DROP_MALFORMED] == before + 1,
           "piece past the end: malformed");
    u.off = 0;
    before = wb.stats.drops[SW_WIRE_DROP_NONFINITE];
    x[17] = NAN;
    tap_ok(sw_wire_tensor_check(&wb, &u, x, sizeof(x)) == -SW_ENONFINITE &&
               wb.stats.drops[SW_WIRE_DROP_NONFINITE] == before + 1,
           "NaN in f32: dropped as nonfinite");
    x[17] = INFINITY;
    tap_ok(sw_wire_tensor_check(&wb, &u, x, sizeof(x)) == -SW_ENONFINITE &&
               wb.stats.drops[SW_WIRE_DROP_NONFINITE] == before + 2,
           "Inf in f32: dropped as nonfinite");
    u.dtype = SW_WIRE_BF16;
    tap_ok(sw_wire_tensor_check(&wb, &u, y, sizeof(y)) == 0, "finite bf16 accepted");
    y[31] = 0xff80; /* -Inf */
    tap_ok(sw_wire_tensor_check(&wb, &u, y, sizeof(y)) == -SW_ENONFINITE, "-Inf in bf16 dropped");
    tap_ok(sw_wire_tensor_unpack("\x85\xa4name\xa0\xa3tag\x00\xa5" "dtype\xa3" "f64\xa5shape\x91\x01"
                                 "\xa3off\x00",
                                 34, &u) == -SW_EMSG,
           "unknown dtype f64 refused");
}

/* ---- sequence classes ---- */

struct sealed {
    uint8_t env[512];
    size_t len;
    uint8_t sig[64];
};

static const uint32_t pipe_types[] = {520, 521, 522, 524, 526, 528, 530}; /* peers/proto.h */

static int
seal_into(struct sw_wire *w, uint32_t type, struct sealed *s)
{
    return sw_wire_seal(w, type, 0, NULL, 0, NULL, 0, s->env, sizeof(s->env), &s->len, s->sig);
}

static int
open_sealed(struct sw_wire *w, const struct sealed *s)
{
    struct sw_wire_hdr h;

    return sw_wire_open(w, s->env, s->len, s->sig, 64, 0, &h);
}

/*
 * A sender's pipeline messages, each overtaken by hundreds of its other
 * messages (shuffled), all arrive; replays are refused in each class; a
 * restarted sender (same key, new wire) is heard in both classes.
 */
static void
test_classes(void)
{
    enum { NO = 1000, NP = 100 };
    struct sealed *o = sw_calloc(NO, sizeof(*o)), *p = sw_calloc(NP, sizeof(*p)), x;
    struct sw_identity bob;
    struct sw_wire tx, rx, tx2;
    uint32_t order[NO], rng = 12345;
    int bad = 0, pipe_ok = 0, other_ok = 0, replays = 0, di = 0;
    uint64_t before;

    if (!o || !p || sw_identity_generate(&bob) < 0 || sw_wire_init(&tx, &bob, run, NULL) < 0 ||
        sw_wire_init(&rx, &alice, run, NULL) < 0) {
        tap_ok(0, "set up the class test");
        return;
    }
    tap_ok(sw_wire_set_pipeline_types(&tx, pipe_types, SW_ARRAY_SIZE(pipe_types)) == 0 &&
               sw_wire_set_pipeline_types(&rx, pipe_types, SW_ARRAY_SIZE(pipe_types)) == 0,
           "pipeline types set");
    tap_ok(sw_wire_seq_class(&rx, 524) == SW_WIRE_SEQ_PIPELINE &&
               sw_wire_seq_class(&rx, 521) == SW_WIRE_SEQ_PIPELINE &&
               sw_wire_seq_class(&rx, SW_MSG_PING) == SW_WIRE_SEQ_OTHER &&
               sw_wire_seq_class(&rx, 300) == SW_WIRE_SEQ_OTHER,
           "the class follows from the type");
    {
        uint32_t bad_types[] = {524, 0};

        tap_ok(sw_wire_set_pipeline_types(&rx, bad_types, 2) == -SW_EINVAL &&
                   sw_wire_set_pipeline_types(&rx, pipe_types, SW_WIRE_MAX_PIPELINE_TYPES + 1) ==
                       -SW_EINVAL &&
                   sw_wire_seq_class(&rx, 524) == SW_WIRE_SEQ_PIPELINE,
               "bad type sets are refused and leave the set as it was");
    }

    /* sent: 10 other messages (DHT-like, type 300), then a pipeline one, 100 times */
    for (int i = 0, k = 0; i < NO; i++) {
        bad += seal_into(&tx, 300, &o[i]) < 0;
        if (i % 10 == 9 && k < NP) {
            bad += seal_into(&tx, pipe_types[k % SW_ARRAY_SIZE(pipe_types)], &p[k]) < 0;
            k++;
        }
    }
    /* received: the others shuffled; pipeline k after 500 more of the others, pairs swapped */
    for (uint32_t i = 0; i < NO; i++)
        order[i] = i;
    for (uint32_t i = NO - 1; i > 0; i--) {
        uint32_t j, t;

        rng = rng * 1103515245u + 12345u;
        j = (rng >> 8) % (i + 1);
        t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int i = 0; i < NO; i++) {
        other_ok += open_sealed(&rx, &o[order[i]]) == 0;
        while (di < NP && i >= 10 * di + 500) {
            int k = di ^ 1; /* 1, 0, 3, 2, ...: out of order within the class too */

            pipe_ok += open_sealed(&rx, &p[k]) == 0;
            di++;
        }
    }
    while (di < NP) {
        pipe_ok += open_sealed(&rx, &p[di ^ 1]) == 0;
        di++;
    }
    tap_ok(bad == 0 && pipe_ok == NP,
           "%d of %d pipeline messages accepted, each overtaken by 500+ of %d shuffled others "
           "(%d of them accepted)", pipe_ok, NP, NO, other_ok);

    /* replays: the pipeline class */
    before = rx.stats.drops[SW_WIRE_DROP_REPLAY];
    for (int k = 0; k < NP; k++)
        replays += open_sealed(&rx, &p[k]) == -SW_EREPLAY;
    tap_ok(replays == NP && rx.stats.drops[SW_WIRE_DROP_REPLAY] == before + NP,
           "every pipeline message replayed is refused (%d)", replays);
    /* and the other class */
    bad = seal_into(&tx, 300, &x) < 0;
    tap_ok(!bad && open_sealed(&rx, &x) == 0 && open_sealed(&rx, &x) == -SW_EREPLAY,
           "an other-class message is accepted once, its replay refused");
    bad = 0;
    for (int i = 0; i < NO; i++)
        bad += open_sealed(&rx, &o[i]) == 0;
    tap_ok(bad == 0, "none of the earlier other-class messages is accepted again");

    /* pipeline window: 1024 back is still fine, 1025 is stale */
    {
        struct sealed *q = sw_calloc(SW_WIRE_WINDOW_PIPELINE + 1, sizeof(*q));

        bad = !q;
        for (int i = 0; q && i <= SW_WIRE_WINDOW_PIPELINE; i++)
            bad += seal_into(&tx, 524, &q[i]) < 0;
        if (q) {
            bad += open_sealed(&rx, &q[SW_WIRE_WINDOW_PIPELINE]) != 0;
            bad += open_sealed(&rx, &q[1]) != 0; /* 1023 behind the top */
            before = rx.stats.drops[SW_WIRE_DROP_STALE];
            bad += open_sealed(&rx, &q[0]) != -SW_EREPLAY; /* 1024 behind: stale */
            bad += rx.stats.drops[SW_WIRE_DROP_STALE] != before + 1;
        }
        tap_ok(bad == 0, "pipeline window is %d sequences wide", SW_WIRE_WINDOW_PIPELINE);
        sw_free(q);
    }

    /* a restarted sender: counters from the clock, above the old ones in both classes */
    bad = sw_wire_init(&tx2, &bob, run, NULL) < 0 ||
          sw_wire_set_pipeline_types(&tx2, pipe_types, SW_ARRAY_SIZE(pipe_types)) < 0;
    if (!bad) {
        bad += seal_into(&tx2, 524, &x) < 0 || open_sealed(&rx, &x) != 0;
        bad += seal_into(&tx2, 300, &x) < 0 || open_sealed(&rx, &x) != 0;
        bad += seal_into(&tx2, 526, &x) < 0 || open_sealed(&rx, &x) != 0;
        sw_wire_release(&tx2);
    }
    tap_ok(bad == 0, "a restarted sender is heard in both classes");

    sw_wire_release(&tx);
    sw_wire_release(&rx);
    sw_identity_release(&bob);
    sw_free(o);
    sw_free(p);
}

/*
 * The bulk class (STATE and CKPT answers, peers/proto.h): 2000 bulk answers
 * sealed between two pipeline messages do not push the first out of the
 * pipeline window when it comes last (in the pipeline class they did: a
 * stranger's flood of state requests made a node's FWDs stale), and a bulk
 * answer overtaken by 500 other-class messages is still taken (in the other
 * class it was stale: a 4 MiB piece down a slow link, overtaken by PONGs).
 */
static void
test_bulk_class(void)
{
    enum { NB = 2000, NO = 500 };
    static const uint32_t bulk[] = {519, 543};
    struct sealed a, b, x, *m = sw_calloc(NB > NO ? NB : NO, sizeof(*m));
    struct sw_identity bob;
    struct sw_wire tx, rx;
    int bad = 0, bulk_ok = 0, a_ok, b_ok, others = 0;

    if (!m || sw_identity_generate(&bob) < 0 || sw_wire_init(&tx, &bob, run, NULL) < 0 ||
        sw_wire_init(&rx, &alice, run, NULL) < 0 ||
        sw_wire_set_pipeline_types(&tx, pipe_types, SW_ARRAY_SIZE(pipe_types)) < 0 ||
        sw_wire_set_pipeline_types(&rx, pipe_types, SW_ARRAY_SIZE(pipe_types)) < 0 ||
        sw_wire_set_bulk_types(&tx, bulk, SW_ARRAY_SIZE(bulk)) < 0 ||
        sw_wire_set_bulk_types(&rx, bulk, SW_ARRAY_SIZE(bulk)) < 0) {
        tap_ok(0, "set up the bulk class test");
        return;
    }
    tap_ok(sw_wire_seq_class(&rx, 519) == SW_WIRE_SEQ_BULK &&
               sw_wire_seq_class(&rx, 543) == SW_WIRE_SEQ_BULK &&
               sw_wire_seq_class(&rx, 524) == SW_WIRE_SEQ_PIPELINE &&
               sw_wire_seq_class(&rx, 518) == SW_WIRE_SEQ_OTHER,
           "STATE and CKPT answers are of the bulk class");
    bad += seal_into(&tx, 524, &a) < 0;
    for (int i = 0; i < NB; i++)
        bad += seal_into(&tx, 519, &m[i]) < 0;
    bad += seal_into(&tx, 526, &b) < 0;
    b_ok = open_sealed(&rx, &b) == 0;
    for (int i = 0; i < NB; i++)
        bulk_ok += open_sealed(&rx, &m[i]) == 0;
    a_ok = open_sealed(&rx, &a) == 0;
    tap_ok(!bad && a_ok && b_ok && bulk_ok == NB,
           "a pipeline message sealed before %d bulk answers and taken after the next one is "
           "accepted, and so are the %d", NB, bulk_ok);
    bad = seal_into(&tx, 543, &x) < 0;
    for (int i = 0; i < NO; i++)
        bad += seal_into(&tx, SW_MSG_PING, &m[i]) < 0;
    for (int i = 0; i < NO; i++)
        others += open_sealed(&rx, &m[i]) == 0;
    tap_ok(!bad && others == NO && open_sealed(&rx, &x) == 0,
           "a bulk answer overtaken by %d other-class messages is accepted", NO);
    sw_wire_release(&tx);
    sw_wire_release(&rx);
    sw_identity_release(&bob);
    sw_free(m);
}

static void
test_eviction(void)
{
    struct sw_wire_opts o = {.max_senders = 2};
    struct sw_identity ids[3];
    struct sw_wire ws[3], rx;
    struct sw_wire_hdr h;
    int ok = 1;

    if (sw_wire_init(&rx, &alice, run, &o) < 0)
        ok = 0;
    for (int i = 0; i < 3; i++) {
        if (sw_identity_generate(&ids[i]) < 0 || sw_wire_init(&ws[i], &ids[i], run, NULL) < 0) {
            ok = 0;
            continue;
        }
        for (int r = 0; r < 3; r++) {
            if (sw_wire_seal(&ws[i], SW_MSG_PING, 0, NULL, 0, NULL, 0, env, sizeof(env), &env_len,
                             sig) < 0 ||
                sw_wire_open(&rx, env, env_len, sig, 64, 0, &h) < 0)
                ok = 0;
        }
    }
    tap_ok(ok && rx.stats.accepted == 9, "a full sender table forgets the oldest sender");
    for (int i = 0; i < 3; i++) {
        sw_wire_release(&ws[i]);
        sw_identity_release(&ids[i]);
    }
    sw_wire_release(&rx);
}

int
main(void)
{
    uint8_t seed[32];

    sw_log_level = SW_LOG_ERROR; /* the drops below are expected */
    memset(run, 0x5a, sizeof(run));
    memset(seed, 1, sizeof(seed));
    if (sw_identity_from_seed(&alice, seed) < 0 || sw_identity_generate(&mallory) < 0 ||
        sw_wire_init(&wa, &alice, run, NULL) < 0 || sw_wire_init(&wb, &mallory, run, NULL) < 0) {
        printf("Bail out! cannot set up identities\n");
        return 1;
    }
    test_roundtrip();
    test_cert();
    test_tree_hash();
    test_drops();
    test_tensor();
    test_classes();
    test_bulk_class();
    test_eviction();
    sw_wire_release(&wa);
    sw_wire_release(&wb);
    sw_identity_release(&alice);
    sw_identity_release(&mallory);
    return tap_done();
}
