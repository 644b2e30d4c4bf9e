/*
 * test_dht_codec.c - DHT message bodies: every type round-trips, and malformed
 * bodies (unknown, missing, repeated or mistyped fields, bad lengths, trailing
 * bytes, hostile counts, truncation) are rejected.
 */
#include "sw.h"

#include <sodium.h>
#include <string.h>

#include "dht.h"
#include "dht_codec.h"
#include "tap.h"

struct buf {
    uint8_t p[1 << 16];
    size_t len;
};

static int
buf_write(void *data, const char *s, size_t n)
{
    struct buf *b = data;

    if (b->len + n > sizeof(b->p))
        return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

static void
key(msgpack_packer *pk, const char *k)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
}

static void
bin(msgpack_packer *pk, const char *k, size_t n, uint8_t fill)
{
    uint8_t v[64];

    memset(v, fill, sizeof(v));
    key(pk, k);
    msgpack_pack_bin_with_body(pk, v, n);
}

static void
fill_contact(struct sw_dht_contact *c, int i)
{
    memset(c, 0, sizeof(*c));
    memset(c->pk, i + 1, sizeof(c->pk));
    sw_dht_id_of(c->id, c->pk);
    snprintf(c->ep, sizeof(c->ep), "tcp://10.0.%d.%d:7400", i / 256, i % 256);
}

static bool
contact_eq(const struct sw_dht_contact *a, const struct sw_dht_contact *b)
{
    return memcmp(a->id, b->id, 32) == 0 && memcmp(a->pk, b->pk, 32) == 0 &&
           strcmp(a->ep, b->ep) == 0;
}

static bool
record_eq(const struct sw_dht_record *a, const struct sw_dht_record *b)
{
    return memcmp(a->key, b->key, 32) == 0 && memcmp(a->pub, b->pub, 32) == 0 &&
           a->seq == b->seq && a->ttl_s == b->ttl_s && memcmp(a->sig, b->sig, 64) == 0 &&
           a->val_len == b->val_len && (a->val_len == 0 || memcmp(a->val, b->val, a->val_len) == 0);
}

static bool
msg_eq(const struct sw_dht_msg *a, const struct sw_dht_msg *b)
{
    if (a->type != b->type || a->tid != b->tid || strcmp(a->ep, b->ep) != 0 ||
        a->n_nodes != b->n_nodes || a->n_recs != b->n_recs || a->more != b->more ||
        a->status != b->status || a->has_after != b->has_after)
        return false;
    if ((a->type == SW_DHT_FIND_NODE || a->type == SW_DHT_FIND_VALUE) &&
        memcmp(a->target, b->target, 32) != 0)
        return false;
    if (a->has_after && memcmp(a->after, b->after, 32) != 0)
        return false;
    for (size_t i = 0; i < a->n_nodes; i++)
        if (!contact_eq(&a->nodes[i], &b->nodes[i]))
            return false;
    for (size_t i = 0; i < a->n_recs; i++)
        if (!record_eq(&a->recs[i], &b->recs[i]))
            return false;
    return true;
}

static int
roundtrip(const struct sw_dht_msg *m, const char *what)
{
    struct sw_dht_msg out;
    uint8_t *enc = NULL;
    size_t len = 0;
    int err, ok;

    err = sw_dht_msg_encode(m, &enc, &len);
    if (err < 0)
        return tap_ok(0, "%s: encode failed: %s", what, sw_strerror(err));
    err = sw_dht_msg_decode(&out, m->type, enc, len);
    ok = err == 0 && msg_eq(m, &out);
    tap_ok(ok, "%s round-trips (%zu bytes)", what, len);
    /* every strict prefix is rejected */
    if (ok) {
        bool all = true;

        sw_dht_msg_release(&out);
        for (size_t n = 0; n < len; n++) {
            if (sw_dht_msg_decode(&out, m->type, enc, n) == 0)
                all = false;
            sw_dht_msg_release(&out);
        }
        tap_ok(all, "%s: all %zu truncations rejected", what, len);
    } else {
        tap_ok(0, "%s: truncations not tried", what);
    }
    sw_dht_msg_release(&out);
    sw_free(enc);
    return ok;
}

/* Decoding b as type must fail with -SW_EMSG (or want). */
static void
expect_bad(struct buf *b, int type, int want, const char *what)
{
    struct sw_dht_msg m;
    int err = sw_dht_msg_decode(&m, type, b->p, b->len);

    tap_ok(err == want, "rejects %s (%s)", what, sw_err_name(err));
    sw_dht_msg_release(&m);
    b->len = 0;
}

static void
expect_ok(struct buf *b, int type, const char *what)
{
    struct sw_dht_msg m;
    int err = sw_dht_msg_decode(&m, type, b->p, b->len);

    tap_ok(err == 0, "accepts %s (%s)", what, sw_err_name(err));
    sw_dht_msg_release(&m);
    b->len = 0;
}

static void
pack_rec(msgpack_packer *pk, const char *skip, const char *extra, uint64_t ttl, size_t vlen)
{
    static uint8_t big[SW_DHT_VALUE_MAX + 1];
    static const char *const names[] = {"key", "pub", "seq", "ttl", "val", "sig"};
    int n = 6 - (skip != NULL) + (extra != NULL);

    msgpack_pack_map(pk, n);
    for (int i = 0; i < 6; i++) {
        if (skip && strcmp(skip, names[i]) == 0)
            continue;
        if (i < 2) {
            bin(pk, names[i], 32, (uint8_t)(i + 1));
        } else if (i == 2) {
            key(pk, "seq");
            msgpack_pack_uint64(pk, 7);
        } else if (i == 3) {
            key(pk, "ttl");
            msgpack_pack_uint64(pk, ttl);
        } else if (i == 4) {
            key(pk, "val");
            msgpack_pack_bin_with_body(pk, big, vlen);
        } else {
            bin(pk, "sig", 64, 9);
        }
    }
    if (extra) {
        key(pk, extra);
        msgpack_pack_nil(pk);
    }
}

static void
test_roundtrips(void)
{
    struct sw_dht_contact nodes[SW_DHT_K_MAX];
    struct sw_dht_record recs[3];
    uint8_t vals[3][100];
    struct sw_dht_msg m;

    for (int i = 0; i < SW_DHT_K_MAX; i++)
        fill_contact(&nodes[i], i);
    for (int i = 0; i < 3; i++) {
        memset(&recs[i], 0, sizeof(recs[i]));
        memset(recs[i].key, 0xaa, 32);
        memset(recs[i].pub, 0x10 * (i + 1), 32);
        recs[i].seq = (uint64_t)1 << (20 * i);
        recs[i].ttl_s = i == 2 ? UINT32_MAX : 60u * (i + 1);
        memset(recs[i].sig, i, 64);
        memset(vals[i], 'a' + i, sizeof(vals[i]));
        recs[i].val = vals[i];
        recs[i].val_len = i == 1 ? 0 : sizeof(vals[i]);
    }

    m = (struct sw_dht_msg){.type = SW_DHT_PING, .tid = 1};
    roundtrip(&m, "PING without ep");
    m = (struct sw_dht_msg){.type = SW_DHT_PONG, .tid = UINT64_MAX};
    strcpy(m.ep, "tcp://127.0.0.1:7400");
    roundtrip(&m, "PONG with ep");
    m = (struct sw_dht_msg){.type = SW_DHT_FIND_NODE, .tid = 300};
    memset(m.target, 0x5a, 32);
    strcpy(m.ep, "ipc:///tmp/swarm.sock");
    roundtrip(&m, "FIND_NODE");
    m = (struct sw_dht_msg){.type = SW_DHT_NODES, .tid = 70000, .nodes = nodes,
                            .n_nodes = SW_DHT_K_MAX};
    roundtrip(&m, "NODES with 32 contacts");
    m = (struct sw_dht_msg){.type = SW_DHT_NODES, .tid = 2};
    roundtrip(&m, "NODES empty");
    m = (struct sw_dht_msg){.type = SW_DHT_FIND_VALUE, .tid = 3, .has_after = true};
    memset(m.target, 1, 32);
    memset(m.after, 2, 32);
    roundtrip(&m, "FIND_VALUE with after");
    m = (struct sw_dht_msg){.type = SW_DHT_VALUES, .tid = 4, .nodes = nodes, .n_nodes = 5,
                            .recs = recs, .n_recs = 3, .more = true};
    strcpy(m.ep, "inproc://n1");
    roundtrip(&m, "VALUES with 3 records");
    m = (struct sw_dht_msg){.type = SW_DHT_STORE, .tid = 5, .recs = recs, .n_recs = 1};
    roundtrip(&m, "STORE");
    m = (struct sw_dht_msg){.type = SW_DHT_STORED, .tid = 6, .status = SW_DHT_ST_STALE};
    roundtrip(&m, "STORED");

    /* the encoder refuses what the decoder would refuse */
    {
        uint8_t *enc = NULL;
        size_t len;

        m = (struct sw_dht_msg){.type = SW_DHT_PING, .tid = 1};
        strcpy(m.ep, "http://x");
        tap_ok(sw_dht_msg_encode(&m, &enc, &len) == -SW_EINVAL, "encoder refuses a bad endpoint");
        m = (struct sw_dht_msg){.type = SW_DHT_STORE, .tid = 1};
        tap_ok(sw_dht_msg_encode(&m, &enc, &len) == -SW_EINVAL,
               "encoder refuses STORE without a record");
        m = (struct sw_dht_msg){.type = 99, .tid = 1};
        tap_ok(sw_dht_msg_encode(&m, &enc, &len) == -SW_EINVAL, "encoder refuses an unknown type");
    }
}

static void
test_rejects(void)
{
    static struct buf b;
    msgpack_packer pk;

    msgpack_packer_init(&pk, &b, buf_write);

    msgpack_pack_map(&pk, 1);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    expect_ok(&b, SW_DHT_PING, "a minimal PING");

    msgpack_pack_map(&pk, 1);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    expect_bad(&b, 264, -SW_EMSG, "an unknown type");

    msgpack_pack_map(&pk, 0);
    expect_bad(&b, SW_DHT_PING, -SW_EMSG, "a PING without tid");

    msgpack_pack_map(&pk, 2);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    key(&pk, "hello");
    msgpack_pack_uint64(&pk, 1);
    expect_bad(&b, SW_DHT_PING, -SW_EMSG, "an unknown key");

    msgpack_pack_map(&pk, 2);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 2);
    expect_bad(&b, SW_DHT_PING, -SW_EMSG, "a repeated key");

    msgpack_pack_map(&pk, 1);
    key(&pk, "tid");
    msgpack_pack_int64(&pk, -1);
    expect_bad(&b, SW_DHT_PING, -SW_EMSG, "a negative tid");

    msgpack_pack_map(&pk, 1);
    key(&pk, "tid");
    msgpack_pack_str_with_body(&pk, "1", 1);
    expect_bad(&b, SW_DHT_PING, -SW_EMSG, "a string tid");

    msgpack_pack_map(&pk, 1);
    key(&pk, "tid");
    msgpack_pack_double(&pk, 1.0);
    expect_bad(&b, SW_DHT_PING, -SW_EMSG, "a float tid");

    msgpack_pack_map(&pk, 1);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_uint64(&pk, 1);
    expect_bad(&b, SW_DHT_PING, -SW_EMSG, "an integer key");

    msgpack_pack_array(&pk, 1);
    msgpack_pack_uint64(&pk, 1);
    expect_bad(&b, SW_DHT_PING, -SW_EMSG, "an array body");

    msgpack_pack_map(&pk, 1);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_nil(&pk);
    expect_bad(&b, SW_DHT_PING, -SW_EMSG, "trailing bytes");

    msgpack_pack_map(&pk, 2);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    key(&pk, "ep");
    msgpack_pack_str_with_body(&pk, "tcp://a b:1", 11);
    expect_bad(&b, SW_DHT_PING, -SW_EMSG, "an endpoint with a space");

    msgpack_pack_map(&pk, 2);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    key(&pk, "ep");
    msgpack_pack_str_with_body(&pk, "udp://1.2.3.4:5", 15);
    expect_bad(&b, SW_DHT_PING, -SW_EMSG, "an endpoint of an unknown scheme");

    {
        char ep[SW_DHT_EP_MAX + 1];

        memset(ep, 'x', sizeof(ep));
        memcpy(ep, "tcp://", 6);
        msgpack_pack_map(&pk, 2);
        key(&pk, "tid");
        msgpack_pack_uint64(&pk, 1);
        key(&pk, "ep");
        msgpack_pack_str_with_body(&pk, ep, SW_DHT_EP_MAX);
        expect_bad(&b, SW_DHT_PING, -SW_EMSG, "a 128-byte endpoint");
    }

    msgpack_pack_map(&pk, 2);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    bin(&pk, "target", 31, 0);
    expect_bad(&b, SW_DHT_FIND_NODE, -SW_EMSG, "a 31-byte target");

    msgpack_pack_map(&pk, 2);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    key(&pk, "target");
    msgpack_pack_str_with_body(&pk, "0123456789abcdef0123456789abcdef", 32);
    expect_bad(&b, SW_DHT_FIND_NODE, -SW_EMSG, "a target sent as str");

    msgpack_pack_map(&pk, 3);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    bin(&pk, "target", 32, 0);
    bin(&pk, "after", 32, 0);
    expect_bad(&b, SW_DHT_FIND_NODE, -SW_EMSG, "after in FIND_NODE");

    msgpack_pack_map(&pk, 2);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    bin(&pk, "target", 32, 0);
    expect_bad(&b, SW_DHT_FIND_VALUE, -SW_EMSG, "FIND_VALUE with target instead of key");

    msgpack_pack_map(&pk, 2);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    key(&pk, "status");
    msgpack_pack_uint64(&pk, 6);
    expect_bad(&b, SW_DHT_STORED, -SW_EMSG, "an unknown store status");

    /* NODES: 33 contacts, a contact without ep, a contact with an extra key */
    msgpack_pack_map(&pk, 2);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    key(&pk, "nodes");
    msgpack_pack_array(&pk, SW_DHT_K_MAX + 1);
    for (int i = 0; i < SW_DHT_K_MAX + 1; i++) {
        msgpack_pack_map(&pk, 2);
        bin(&pk, "pk", 32, (uint8_t)i);
        key(&pk, "ep");
        msgpack_pack_str_with_body(&pk, "tcp://h:1", 9);
    }
    expect_bad(&b, SW_DHT_NODES, -SW_EMSG, "33 contacts");

    msgpack_pack_map(&pk, 2);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    key(&pk, "nodes");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 1);
    bin(&pk, "pk", 32, 1);
    expect_bad(&b, SW_DHT_NODES, -SW_EMSG, "a contact without ep");

    msgpack_pack_map(&pk, 2);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    key(&pk, "nodes");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 2);
    bin(&pk, "pk", 32, 1);
    bin(&pk, "pk", 32, 1);
    expect_bad(&b, SW_DHT_NODES, -SW_EMSG, "a contact with pk twice");

    /* records */
    msgpack_pack_map(&pk, 2);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    key(&pk, "rec");
    pack_rec(&pk, NULL, NULL, 60, 10);
    expect_ok(&b, SW_DHT_STORE, "a well-formed STORE");

    msgpack_pack_map(&pk, 2);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    key(&pk, "rec");
    pack_rec(&pk, NULL, NULL, 60, SW_DHT_VALUE_MAX);
    expect_ok(&b, SW_DHT_STORE, "a 4096-byte value");

    msgpack_pack_map(&pk, 2);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    key(&pk, "rec");
    pack_rec(&pk, NULL, NULL, 60, SW_DHT_VALUE_MAX + 1);
    expect_bad(&b, SW_DHT_STORE, -SW_EMSG, "a 4097-byte value");

    msgpack_pack_map(&pk, 2);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    key(&pk, "rec");
    pack_rec(&pk, NULL, NULL, 0, 10);
    expect_bad(&b, SW_DHT_STORE, -SW_EMSG, "a record with ttl 0");

    msgpack_pack_map(&pk, 2);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    key(&pk, "rec");
    pack_rec(&pk, NULL, NULL, (uint64_t)UINT32_MAX + 1, 10);
    expect_bad(&b, SW_DHT_STORE, -SW_EMSG, "a record with ttl 2^32");

    msgpack_pack_map(&pk, 2);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    key(&pk, "rec");
    pack_rec(&pk, "sig", NULL, 60, 10);
    expect_bad(&b, SW_DHT_STORE, -SW_EMSG, "a record without sig");

    msgpack_pack_map(&pk, 2);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    key(&pk, "rec");
    pack_rec(&pk, "sig", "sag", 60, 10);
    expect_bad(&b, SW_DHT_STORE, -SW_EMSG, "a record with an unknown key");

    /* VALUES: records out of order */
    msgpack_pack_map(&pk, 4);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    key(&pk, "nodes");
    msgpack_pack_array(&pk, 0);
    key(&pk, "recs");
    msgpack_pack_array(&pk, 2);
    pack_rec(&pk, NULL, NULL, 60, 1);
    pack_rec(&pk, NULL, NULL, 60, 1);
    key(&pk, "more");
    msgpack_pack_false(&pk);
    expect_bad(&b, SW_DHT_VALUES, -SW_EMSG, "two records of one publisher");

    msgpack_pack_map(&pk, 4);
    key(&pk, "tid");
    msgpack_pack_uint64(&pk, 1);
    key(&pk, "nodes");
    msgpack_pack_array(&pk, 0);
    key(&pk, "recs");
    msgpack_pack_array(&pk, 0);
    key(&pk, "more");
    msgpack_pack_uint64(&pk, 0);
    expect_bad(&b, SW_DHT_VALUES, -SW_EMSG, "more as an integer");

    /* hostile counts and depth: rejected before msgpack-c allocates */
    {
        static const uint8_t huge_arr[] = {0x82, 0xa3, 't', 'i', 'd', 0x01, 0xa5, 'n', 'o', 'd',
                                           'e', 's', 0xdd, 0xff, 0xff, 0xff, 0xff};
        static const uint8_t huge_map[] = {0xdf, 0x7f, 0xff, 0xff, 0xff, 0xc0};
        static const uint8_t huge_str[] = {0x81, 0xdb, 0xff, 0xff, 0xff, 0xf0, 'a'};
        static const uint8_t reserved[] = {0x81, 0xa3, 't', 'i', 'd', 0xc1};
        uint8_t deep[64];

        memcpy(b.p, huge_arr, sizeof(huge_arr));
        b.len = sizeof(huge_arr);
        expect_bad(&b, SW_DHT_NODES, -SW_EMSG, "an array claiming 2^32-1 elements");
        memcpy(b.p, huge_map, sizeof(huge_map));
        b.len = sizeof(huge_map);
        expect_bad(&b, SW_DHT_PING, -SW_EMSG, "a map claiming 2^31 pairs");
        memcpy(b.p, huge_str, sizeof(huge_str));
        b.len = sizeof(huge_str);
        expect_bad(&b, SW_DHT_PING, -SW_EMSG, "a str claiming 4 GiB");
        memcpy(b.p, reserved, sizeof(reserved));
        b.len = sizeof(reserved);
        expect_bad(&b, SW_DHT_PING, -SW_EMSG, "the reserved byte 0xc1");
        memset(deep, 0x91, sizeof(deep)); /* [[[[...]]]] */
        deep[sizeof(deep) - 1] = 0x90;
        memcpy(b.p, deep, sizeof(deep));
        b.len = sizeof(deep);
        expect_bad(&b, SW_DHT_PING, -SW_EMSG, "64 nested arrays");
        b.len = 0;
        expect_bad(&b, SW_DHT_PING, -SW_EMSG, "an empty body");
        memset(b.p, 0xc0, sizeof(b.p));
        b.len = sizeof(b.p);
        tap_ok(!sw_dht_msgpack_sane(b.p, b.len, 4), "64 KiB of nils is not one object");
        b.len = 0;
    }
    {
        uint8_t *big = sw_calloc(1, SW_DHT_BODY_MAX + 1);
        struct sw_dht_msg m;

        tap_ok(big && sw_dht_msg_decode(&m, SW_DHT_PING, big, SW_DHT_BODY_MAX + 1) == -SW_ETOOBIG,
               "rejects a body over SW_DHT_BODY_MAX as too big");
        sw_dht_msg_release(&m);
        sw_free(big);
    }
}

int
main(void)
{
    if (sodium_init() < 0)
        return tap_skip_all("libsodium unavailable");
    test_roundtrips();
    test_rejects();
    return tap_done();
}
