/*
 * test_status - stage records (peers/status.h): a record round-trips with
 * and without its last recovery, older records (no recovery keys) still
 * parse, and malformed recovery values (too long, not printable, wrong
 * type, partial, unknown or repeated keys) are refused; the end record
 * round-trips, signed, and a malformed one is refused; the summary shows a
 * stage whose get did not answer as unknown, and a finished run whose nodes
 * left as done and healthy.
 *
 * Malformed records are made by editing the unpacked object of a good one
 * in place (its strings point into our own buffers), so that every case
 * differs from a good record in exactly one place.
 */
#include "sw.h"

#include <string.h>

#include "status.h"
#include "tap.h"

#define S 4

static uint8_t packed[2048];

static void
rec_fill(struct sw_peer_rec *r)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->ep, sizeof(r->ep), "tcp://127.0.0.1:40001");
    r->stage = 2;
    r->state = SW_REC_TRAINING;
    r->step = 37;
    r->recoveries = 1;
    r->tps = 1234.5;
    r->cap = 2345.5;
    r->loss = -1;
    r->norm = 0.75;
    snprintf(r->hash, sizeof(r->hash), "0123456789abcdef");
}

/* Packs r and unpacks it into u (the caller destroys u); 0 or -SW_EMSG. */
static int
pack_unpack(const struct sw_peer_rec *r, msgpack_unpacked *u)
{
    struct sw_wire_buf b;
    msgpack_packer pk;

    sw_wire_buf_init(&b, packed, sizeof(packed));
    sw_wire_buf_packer(&pk, &b);
    sw_status_rec_pack(&pk, r, 10, 250);
    msgpack_unpacked_init(u);
    if (b.overflow)
        return -SW_EMSG;
    return sw_wire_unpack(packed, b.len, u);
}

static msgpack_object_kv *
find_kv(msgpack_object *map, const char *key)
{
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (sw_wire_key_is(&map->via.map.ptr[i].key, key))
            return &map->via.map.ptr[i];
    return NULL;
}

static void
set_str(msgpack_object *o, const char *s)
{
    o->type = MSGPACK_OBJECT_STR;
    o->via.str.ptr = s;
    o->via.str.size = (uint32_t)strlen(s);
}

static void
set_uint(msgpack_object *o, uint64_t v)
{
    o->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
    o->via.u64 = v;
}

enum edit { E_STR, E_UINT, E_NEG, E_DROP, E_RENAME, E_DUP };

/* A good record with recovery, with one edit on key; true when unpack refuses it. */
static bool
refused(const char *what, const char *key, enum edit e, const char *s, uint64_t v)
{
    struct sw_peer_rec r, out;
    msgpack_unpacked u;
    msgpack_object_kv *kv;
    int err;

    rec_fill(&r);
    sw_status_rec_set_recovery(&r, "checkfree", "tcp://127.0.0.1:40000,tcp://127.0.0.1:40002",
                               123456, 1.5);
    if (pack_unpack(&r, &u) < 0 || !(kv = find_kv(&u.data, key))) {
        msgpack_unpacked_destroy(&u);
        return tap_ok(0, "%s (cannot build the case)", what);
    }
    switch (e) {
    case E_STR: set_str(&kv->val, s); break;
    case E_UINT: set_uint(&kv->val, v); break;
    case E_NEG:
        kv->val.type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
        kv->val.via.i64 = -(int64_t)v;
        break;
    case E_DROP: /* move the last pair here */
        *kv = u.data.via.map.ptr[--u.data.via.map.size];
        break;
    case E_RENAME: set_str(&kv->key, s); break;
    case E_DUP: /* the last pair (rec_ms) again in place of key */
        *kv = u.data.via.map.ptr[u.data.via.map.size - 1];
        break;
    }
    memset(&out, 0, sizeof(out));
    err = sw_status_rec_unpack(&u.data, &out, S, 10, 100000);
    msgpack_unpacked_destroy(&u);
    return tap_ok(err == -SW_EMSG, "refused: %s", what);
}

/* An end record as the bootstrap signs it, read back; a wrong one is refused. */
static void
end_record(void)
{
    struct sw_run_end e = {300, 2.0625, NULL, 0}, out;
    struct sw_identity id;
    struct sw_dht_record d;
    struct sw_wire_buf b;
    msgpack_packer pk;
    uint8_t run[32] = {7}, key[32], key2[32];

    sw_status_end_key(key, run);
    sw_status_stage_key(key2, run, 0);
    tap_ok(memcmp(key, key2, 32) != 0, "the end key is not a stage key");
    if (sw_identity_global_init() < 0 || sw_identity_generate(&id) < 0) {
        tap_ok(0, "an identity");
        return;
    }
    sw_wire_buf_init(&b, packed, sizeof(packed));
    sw_wire_buf_packer(&pk, &b);
    sw_status_end_pack(&pk, &e);
    memset(&d, 0, sizeof(d));
    memcpy(d.key, key, 32);
    d.seq = 1;
    d.ttl_s = SW_STATUS_END_TTL_S;
    d.val = packed;
    d.val_len = b.len;
    sw_dht_record_sign(&d, id.sk);
    tap_ok(sw_dht_record_verify(&d) && sw_status_end_from_dht(&d, &out) == 0 &&
               out.step == 300 && out.loss == 2.0625,
           "an end record round-trips (step 300, loss 2.0625)");
    e.loss = -5;
    sw_wire_buf_init(&b, packed, sizeof(packed));
    sw_wire_buf_packer(&pk, &b);
    sw_status_end_pack(&pk, &e);
    d.val_len = b.len;
    tap_ok(sw_status_end_from_dht(&d, &out) == 0 && out.loss == -1 && !out.cert &&
               out.cert_len == 0, "no loss reads -1; no cert reads none");
    /* the bootstrap's certificate goes along, and comes back as it went */
    {
        static uint8_t cert[SW_STATUS_CERT_MAX + 1];
        for (size_t i = 0; i < sizeof(cert); i++)
            cert[i] = (uint8_t)(i * 7 + 1);
        e.cert = cert;
        e.cert_len = 200;
        sw_wire_buf_init(&b, packed, sizeof(packed));
        sw_wire_buf_packer(&pk, &b);
        sw_status_end_pack(&pk, &e);
        d.val_len = b.len;
        tap_ok(!b.overflow && sw_status_end_from_dht(&d, &out) == 0 && out.cert_len == 200 &&
                   out.cert && !memcmp(out.cert, cert, 200),
               "an end record's cert round-trips (200 bytes)");
        e.cert_len = SW_STATUS_CERT_MAX + 1;
        sw_wire_buf_init(&b, packed, sizeof(packed));
        sw_wire_buf_packer(&pk, &b);
        sw_status_end_pack(&pk, &e);
        d.val_len = b.len;
        tap_ok(!b.overflow && sw_status_end_from_dht(&d, &out) == -SW_EMSG,
               "refused: an end record whose cert is over SW_STATUS_CERT_MAX bytes");
        e.cert = NULL;
        e.cert_len = 0;
    }
    /* a stage record under the end key: its keys are not the end record's */
    {
        struct sw_peer_rec r;
        rec_fill(&r);
        sw_wire_buf_init(&b, packed, sizeof(packed));
        sw_wire_buf_packer(&pk, &b);
        sw_status_rec_pack(&pk, &r, 10, 0);
        d.val_len = b.len;
        tap_ok(sw_status_end_from_dht(&d, &out) == -SW_EMSG, "refused: a stage record as an end record");
    }
    sw_identity_release(&id);
}

/* sw_status_summarize: a stage unanswered, a finished run with no node left. */
static void
summaries(void)
{
    struct sw_stage_summary sum[S];
    struct sw_peer_rec recs[S];
    bool answered[S] = {true, true, false, true};
    uint64_t now = 100000;
    int h;

    for (int s = 0; s < S; s++) {
        rec_fill(&recs[s]);
        recs[s].stage = s;
        recs[s].pk[0] = (uint8_t)s;
        recs[s].heard_ms = recs[s].step_ms = now - 500;
    }
    /* stage 2's record missing, its get unanswered: unknown, degraded */
    recs[2] = recs[3];
    h = sw_status_summarize(recs, S - 1, S, 37, 1000, now, answered, sum);
    tap_ok(h == SW_HEALTH_DEGRADED && !strcmp(sum[2].state, "unknown") &&
               !strcmp(sum[0].state, "ok"),
           "a stage whose get did not answer is unknown (degraded)");
    answered[2] = true;
    h = sw_status_summarize(recs, S - 1, S, 37, 1000, now, answered, sum);
    tap_ok(h == SW_HEALTH_DEGRADED && !strcmp(sum[2].state, "empty"),
           "answered with no record: empty");
    h = sw_status_summarize(recs, 0, S, 1000, 1000, now, NULL, sum);
    tap_ok(h == SW_HEALTH_OK && !strcmp(sum[0].state, "done") && !strcmp(sum[3].state, "done") &&
               !sum[0].bottleneck,
           "finished, no node left: every stage done, healthy");
}

/* Unproven records (a stranger's claims) are listed but never counted. */
static void
unproven(void)
{
    static struct sw_peer_rec recs[S + 50];
    struct sw_stage_summary sum[S];
    uint64_t now = 100000;
    int h, n = 0;

    for (int s = 0; s < S; s++) {
        rec_fill(&recs[n]);
        recs[n].stage = s;
        recs[n].pk[0] = (uint8_t)s;
        recs[n].heard_ms = recs[n].step_ms = now - 500;
        n++;
    }
    for (int i = 0; i < 50; i++) { /* 50 fakes on stage 2, claiming much */
        rec_fill(&recs[n]);
        recs[n].pk[0] = (uint8_t)(100 + i);
        recs[n].tps = recs[n].cap = 1e6;
        recs[n].step = 5000;
        recs[n].heard_ms = recs[n].step_ms = now - 100;
        recs[n].unproven = true;
        n++;
    }
    h = sw_status_summarize(recs, n, S, 37, 1000, now, NULL, sum);
    tap_ok(h == SW_HEALTH_OK && sum[2].nodes == 1 && sum[2].unproven == 50 &&
               sum[2].cap == 2345.5 && sum[2].tps == 1234.5 && sum[2].step == 37 &&
               sum[1].unproven == 0,
           "50 unproven records on stage 2: listed as unproven, its nodes, capacity, "
           "throughput and step are the proven node's (nodes %d, unproven %d, capacity %.1f)",
           sum[2].nodes, sum[2].unproven, sum[2].cap);
    recs[2] = recs[3]; /* stage 2's real node gone: only the fakes are left */
    h = sw_status_summarize(recs, n, S, 37, 1000, now, NULL, sum);
    tap_ok(h == SW_HEALTH_DEGRADED && sum[2].nodes == 0 && sum[2].unproven == 50 &&
               !strcmp(sum[2].state, "empty"),
           "only unproven records on stage 2: empty, degraded (state %s)", sum[2].state);
}

int
main(void)
{
    struct sw_peer_rec r, out;
    msgpack_unpacked u;
    char long_from[300], from127[SW_STATUS_REC_FROM_MAX + 1];
    int err;

    tap_plan(22 + 6 + 3 + 2 + 3 + 2);

    /* a node that never recovered: the 13 keys of older records */
    rec_fill(&r);
    err = pack_unpack(&r, &u);
    tap_ok(err == 0 && u.data.via.map.size == 13, "a record without recovery has 13 keys");
    memset(&out, 0xa5, sizeof(out));
    err = err ? err : sw_status_rec_unpack(&u.data, &out, S, 10, 100000);
    msgpack_unpacked_destroy(&u);
    tap_ok(err == 0 && out.rec_method[0] == '\0' && out.rec_from[0] == '\0' &&
               out.rec_bytes == 0 && out.rec_ms == 0 && out.step == 37 && out.stage == 2 &&
               !strcmp(out.hash, r.hash),
           "a record without recovery (an older one) parses, with no recovery");

    /* a node about to move (rebalancing): "mv", the stage it leaves for */
    r.moving = 3 + 1;
    err = pack_unpack(&r, &u);
    memset(&out, 0xa5, sizeof(out));
    err = err ? err : sw_status_rec_unpack(&u.data, &out, S, 10, 100000);
    tap_ok(err == 0 && u.data.via.map.size == 14 && out.moving == 3 + 1 && out.stage == 2,
           "a record of a node about to move to stage 3 has 14 keys and reads back");
    msgpack_unpacked_destroy(&u);
    r.moving = S + 1; /* mv = S: no such stage */
    err = pack_unpack(&r, &u);
    err = err ? err : sw_status_rec_unpack(&u.data, &out, S, 10, 100000);
    tap_ok(err == -SW_EMSG, "refused: mv names a stage the run does not have");
    msgpack_unpacked_destroy(&u);
    r.moving = 0;

    /* a node of an owner-mode run: its certificate, "cert", as bytes */
    {
        uint8_t cert[SW_STATUS_CERT_MAX + 1];
        memset(cert, 0x5c, sizeof(cert));
        r.cert = cert;
        r.cert_len = 300;
        err = pack_unpack(&r, &u);
        memset(&out, 0xa5, sizeof(out));
        err = err ? err : sw_status_rec_unpack(&u.data, &out, S, 10, 100000);
        tap_ok(err == 0 && u.data.via.map.size == 14 && out.cert_len == 300 && out.cert &&
                   !memcmp(out.cert, cert, 300),
               "a record with a certificate has 14 keys and its cert reads back");
        msgpack_unpacked_destroy(&u);
        r.cert_len = SW_STATUS_CERT_MAX + 1;
        err = pack_unpack(&r, &u);
        err = err ? err : sw_status_rec_unpack(&u.data, &out, S, 10, 100000);
        tap_ok(err == -SW_EMSG, "refused: a cert over SW_STATUS_CERT_MAX bytes");
        msgpack_unpacked_destroy(&u);
        r.cert = NULL;
        r.cert_len = 0;
        err = pack_unpack(&r, &u);
        err = err ? err : sw_status_rec_unpack(&u.data, &out, S, 10, 100000);
        tap_ok(err == 0 && out.cert == NULL && out.cert_len == 0,
               "a record without one reads back without one");
        msgpack_unpacked_destroy(&u);
    }

    /* a node that recovered */
    sw_status_rec_set_recovery(&r, "checkfree", "tcp://127.0.0.1:40000,tcp://127.0.0.1:40002",
                               123456789012ULL, 2.3456);
    err = pack_unpack(&r, &u);
    tap_ok(err == 0 && u.data.via.map.size == 17, "a record with recovery has 17 keys");
    err = err ? err : sw_status_rec_unpack(&u.data, &out, S, 10, 100000);
    msgpack_unpacked_destroy(&u);
    tap_ok(err == 0 && !strcmp(out.rec_method, "checkfree") &&
               !strcmp(out.rec_from, "tcp://127.0.0.1:40000,tcp://127.0.0.1:40002") &&
               out.rec_bytes == 123456789012ULL && out.rec_ms == 2346 && out.recoveries == 1,
           "the last recovery round-trips (method, from, bytes, ms)");

    /* what a node fills in is cut and cleaned, so that its record reads back */
    for (size_t i = 0; i < sizeof(long_from) - 1; i++)
        long_from[i] = i % 50 == 7 ? ' ' : i % 61 == 3 ? '\n' : (char)('a' + i % 26);
    long_from[sizeof(long_from) - 1] = '\0';
    sw_status_rec_set_recovery(&r, "check point\x7f-with-a-long-name", long_from, 1, -1);
    tap_ok(strlen(r.rec_method) == SW_STATUS_REC_METHOD_MAX - 1 &&
               strlen(r.rec_from) == SW_STATUS_REC_FROM_MAX - 1 &&
               !strchr(r.rec_method, ' ') && !strchr(r.rec_from, ' ') &&
               !strchr(r.rec_from, '\n') && r.rec_ms == 0,
           "set_recovery cuts and cleans ('%s')", r.rec_method);
    err = pack_unpack(&r, &u);
    err = err ? err : sw_status_rec_unpack(&u.data, &out, S, 10, 100000);
    msgpack_unpacked_destroy(&u);
    tap_ok(err == 0 && !strcmp(out.rec_from, r.rec_from) && !strcmp(out.rec_method, r.rec_method),
           "a cut and cleaned recovery round-trips");
    sw_status_rec_set_recovery(&r, "copy", "", 5, 0.25);
    tap_ok(!strcmp(r.rec_from, "-") && r.rec_ms == 250, "an empty source reads '-'");
    sw_status_rec_set_recovery(&r, NULL, "x", 5, 1);
    tap_ok(!r.rec_method[0] && !r.rec_from[0] && !r.rec_bytes && !r.rec_ms,
           "no method: no recovery");

    /* malformed values */
    memset(from127, 'f', sizeof(from127) - 1);
    from127[sizeof(from127) - 1] = '\0';
    refused("rec_method of 16 characters", "rec_method", E_STR, "checkfree-abcdef", 0);
    refused("rec_from of 128 characters", "rec_from", E_STR, from127, 0);
    refused("rec_method with a control character", "rec_method", E_STR, "check\001free", 0);
    refused("rec_from with a space", "rec_from", E_STR, "tcp://a:1, tcp://b:2", 0);
    refused("rec_from with a non-ASCII byte", "rec_from", E_STR, "tcp://h\xc3\xa9:1", 0);
    refused("an empty rec_method", "rec_method", E_STR, "", 0);
    refused("rec_bytes as a str", "rec_bytes", E_STR, "123", 0);
    refused("rec_ms negative", "rec_ms", E_NEG, NULL, 5);
    refused("rec_method as a uint", "rec_method", E_UINT, NULL, 7);
    refused("rec_from as a uint", "rec_from", E_UINT, NULL, 7);
    refused("rec_method without the other three (rec_ms dropped)", "rec_ms", E_DROP, NULL, 0);
    refused("rec_bytes dropped", "rec_bytes", E_DROP, NULL, 0);
    refused("an unknown key (rec_step)", "rec_ms", E_RENAME, "rec_step", 0);
    refused("a repeated key (rec_ms twice)", "rec_bytes", E_DUP, NULL, 0);
    end_record();
    summaries();
    unproven();
    return tap_done();
}
