/*
 * admit.c - membership certificates, the revocation list and the admitter
 * (see admit.h).
 */
#include "sw.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "admit.h"
#include "proto.h"

#define CERT_MSG_BYTES 160

const char *
sw_admit_why_name(int why)
{
    static const char *const names[] = {"ok",      "nocert", "malformed", "run",     "node",
                                        "expired", "sig",    "chain",     "revoked", "stage"};
    return why >= 0 && why < SW_ADMIT__COUNT ? names[why] : "?";
}

static void
le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void
le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* The fixed-layout message a certificate's signer signs (admit.h). */
static void
cert_msg(uint8_t msg[CERT_MSG_BYTES], const uint8_t run[32], const uint8_t node[32], int stage,
         uint64_t exp, int role, const uint8_t by[32])
{
    memset(msg, 0, CERT_MSG_BYTES);
    memcpy(msg, SW_CERT_DOMAIN, sizeof(SW_CERT_DOMAIN) - 1);
    memcpy(msg + 16, run, 32);
    memcpy(msg + 48, node, 32);
    le32(msg + 80, (uint32_t)(int32_t)stage);
    le64(msg + 84, exp);
    le32(msg + 92, (uint32_t)role);
    memcpy(msg + 96, by, 32);
}

int
sw_cert_issue(const struct sw_identity *signer, const uint8_t run[32], const uint8_t node[32],
              int stage, uint64_t exp, int role, const uint8_t *chain, size_t chain_len,
              uint8_t *out, size_t cap, size_t *len)
{
    uint8_t msg[CERT_MSG_BYTES], sig[64];
    struct sw_wire_buf b;
    msgpack_packer pk;
    int err;

    if (stage < -1 || (role != SW_CERT_NODE && role != SW_CERT_DELEGATE) ||
        (chain && (!chain_len || chain_len > SW_CERT_MAX)))
        return -SW_EINVAL;
    cert_msg(msg, run, node, stage, exp, role, signer->pk);
    if ((err = sw_identity_sign(signer, sig, msg, sizeof(msg))) < 0)
        return err;
    sw_wire_buf_init(&b, out, SW_MIN(cap, (size_t)SW_CERT_MAX));
    sw_wire_buf_packer(&pk, &b);
    msgpack_pack_map(&pk, chain ? 9 : 8);
    sw_proto_pack_key(&pk, "v");
    msgpack_pack_uint32(&pk, SW_CERT_VERSION);
    sw_proto_pack_key(&pk, "run");
    sw_proto_pack_bin(&pk, run, 32);
    sw_proto_pack_key(&pk, "node");
    sw_proto_pack_bin(&pk, node, 32);
    sw_proto_pack_key(&pk, "stage");
    msgpack_pack_int32(&pk, stage);
    sw_proto_pack_key(&pk, "exp");
    msgpack_pack_uint64(&pk, exp);
    sw_proto_pack_key(&pk, "role");
    msgpack_pack_uint32(&pk, (uint32_t)role);
    sw_proto_pack_key(&pk, "by");
    sw_proto_pack_bin(&pk, signer->pk, 32);
    sw_proto_pack_key(&pk, "sig");
    sw_proto_pack_bin(&pk, sig, 64);
    if (chain) {
        sw_proto_pack_key(&pk, "chain");
        sw_proto_pack_bin(&pk, chain, chain_len);
    }
    if (b.overflow)
        return -SW_ETOOBIG;
    *len = b.len;
    return 0;
}

int
sw_cert_load(const char *path, uint8_t *buf, size_t *len)
{
    uint8_t extra;
    FILE *f = fopen(path, "rb");
    int err = 0;

    if (!f)
        return -errno;
    *len = fread(buf, 1, SW_CERT_MAX, f);
    if (ferror(f))
        err = -SW_EIO;
    else if (*len == SW_CERT_MAX && fread(&extra, 1, 1, f) == 1)
        err = -SW_ETOOBIG;
    else if (*len == 0)
        err = -SW_EMSG;
    fclose(f);
    return err;
}

static int
get_bin32(const msgpack_object *o, const char *k, uint8_t out[32])
{
    const uint8_t *p;
    size_t n = 32;

    if (sw_proto_get_bin(o, k, &p, &n) < 0)
        return -SW_EMSG;
    memcpy(out, p, 32);
    return 0;
}

int
sw_cert_decode(const uint8_t *buf, size_t len, struct sw_cert *c)
{
    static const char *const keys[] = {"v", "run", "node", "stage", "exp", "role", "by", "sig",
                                       "chain", NULL};
    msgpack_unpacked u;
    const msgpack_object *st;
    const uint8_t *p;
    size_t n = 64;
    uint64_t v, role;
    int err = -SW_EMSG;

    memset(c, 0, sizeof(*c));
    if (!buf || !len || len > SW_CERT_MAX || !sw_proto_open(buf, len, &u, keys))
        return -SW_EMSG;
    st = sw_proto_get(&u.data, "stage");
    if (sw_proto_get_u64(&u.data, "v", &v) < 0 || v != SW_CERT_VERSION ||
        get_bin32(&u.data, "run", c->run) < 0 || get_bin32(&u.data, "node", c->node) < 0 ||
        get_bin32(&u.data, "by", c->by) < 0 || sw_proto_get_bin(&u.data, "sig", &p, &n) < 0 ||
        sw_proto_get_u64(&u.data, "exp", &c->exp) < 0 ||
        sw_proto_get_u64(&u.data, "role", &role) < 0 || role > SW_CERT_DELEGATE || !st)
        goto out;
    memcpy(c->sig, p, 64);
    c->role = (int)role;
    if (st->type == MSGPACK_OBJECT_POSITIVE_INTEGER && st->via.u64 <= INT32_MAX)
        c->stage = (int)st->via.u64;
    else if (st->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && st->via.i64 == -1)
        c->stage = -1;
    else
        goto out;
    if (sw_proto_get(&u.data, "chain")) {
        n = 0;
        if (sw_proto_get_bin(&u.data, "chain", &c->chain, &n) < 0 || n == 0)
            goto out;
        c->chain_len = n; /* a slice of buf: bins point into the bytes unpacked */
    }
    err = 0;
out:
    msgpack_unpacked_destroy(&u);
    if (err < 0)
        memset(c, 0, sizeof(*c));
    return err;
}

/* exp + skew < now, without overflow */
static bool
expired(uint64_t exp, uint64_t now_s, uint32_t skew_s)
{
    return now_s > skew_s && exp < now_s - skew_s;
}

static bool
cert_sig_ok(const struct sw_cert *c)
{
    uint8_t msg[CERT_MSG_BYTES];

    cert_msg(msg, c->run, c->node, c->stage, c->exp, c->role, c->by);
    return sw_identity_verify(c->by, c->sig, msg, sizeof(msg));
}

int
sw_cert_verify(const uint8_t *buf, size_t len, const uint8_t run[32], const uint8_t owner[32],
               const uint8_t *node, uint64_t now_s, uint32_t skew_s, struct sw_cert *c)
{
    struct sw_cert d;

    if (!buf || !len)
        return SW_ADMIT_NOCERT;
    if (sw_cert_decode(buf, len, c) < 0)
        return SW_ADMIT_MALFORMED;
    if (sodium_memcmp(c->run, run, 32) != 0)
        return SW_ADMIT_RUN;
    if (node && sodium_memcmp(c->node, node, 32) != 0)
        return SW_ADMIT_NODE;
    if (expired(c->exp, now_s, skew_s))
        return SW_ADMIT_EXPIRED;
    if (sodium_memcmp(c->by, owner, 32) == 0) {
        if (c->chain)
            return SW_ADMIT_CHAIN; /* the owner needs no chain: refuse what is not plain */
        return cert_sig_ok(c) ? SW_ADMIT_OK : SW_ADMIT_SIG;
    }
    /* a delegate's: its own certificate, signed by the owner, comes along */
    if (!c->chain || sw_cert_decode(c->chain, c->chain_len, &d) < 0 ||
        d.role != SW_CERT_DELEGATE || d.chain || sodium_memcmp(d.by, owner, 32) != 0 ||
        sodium_memcmp(d.node, c->by, 32) != 0)
        return SW_ADMIT_CHAIN;
    if (sodium_memcmp(d.run, run, 32) != 0)
        return SW_ADMIT_RUN;
    if (expired(d.exp, now_s, skew_s))
        return SW_ADMIT_EXPIRED;
    if (d.stage >= 0 && c->stage != d.stage)
        return SW_ADMIT_CHAIN; /* a stage-bound delegate issues for its stage only */
    if (!cert_sig_ok(&d) || !cert_sig_ok(c))
        return SW_ADMIT_SIG;
    c->exp = SW_MIN(c->exp, d.exp);
    return SW_ADMIT_OK;
}

/* ---- the revocation list ---- */

void
sw_revoked_key(uint8_t key[32], const uint8_t run[32])
{
    crypto_generichash_state h;

    crypto_generichash_init(&h, NULL, 0, 32);
    crypto_generichash_update(&h, run, 32);
    crypto_generichash_update(&h, (const uint8_t *)"revoked", 7);
    crypto_generichash_final(&h, key, 32);
}

/* The message the owner signs: built in pieces into a hash-free buffer. */
static size_t
revoked_msg(uint8_t *msg, const uint8_t run[32], const struct sw_revoked *r)
{
    memset(msg, 0, 16);
    memcpy(msg, SW_REVOKED_DOMAIN, sizeof(SW_REVOKED_DOMAIN) - 1);
    memcpy(msg + 16, run, 32);
    le64(msg + 48, r->seq);
    le32(msg + 56, (uint32_t)r->n);
    memcpy(msg + 60, r->keys, (size_t)r->n * 32);
    return 60 + (size_t)r->n * 32;
}

#define REVOKED_MSG_MAX (60 + SW_REVOKED_MAX * 32)

int
sw_revoked_encode(const struct sw_identity *owner, const uint8_t run[32],
                  const struct sw_revoked *r, uint8_t *out, size_t cap, size_t *len)
{
    uint8_t msg[REVOKED_MSG_MAX], sig[64];
    struct sw_wire_buf b;
    msgpack_packer pk;
    int err;

    if (r->n < 0 || r->n > SW_REVOKED_MAX)
        return -SW_EINVAL;
    if ((err = sw_identity_sign(owner, sig, msg, revoked_msg(msg, run, r))) < 0)
        return err;
    sw_wire_buf_init(&b, out, cap);
    sw_wire_buf_packer(&pk, &b);
    msgpack_pack_map(&pk, 5);
    sw_proto_pack_key(&pk, "v");
    msgpack_pack_uint32(&pk, SW_REVOKED_VERSION);
    sw_proto_pack_key(&pk, "run");
    sw_proto_pack_bin(&pk, run, 32);
    sw_proto_pack_key(&pk, "seq");
    msgpack_pack_uint64(&pk, r->seq);
    sw_proto_pack_key(&pk, "keys");
    msgpack_pack_array(&pk, (size_t)r->n);
    for (int i = 0; i < r->n; i++)
        sw_proto_pack_bin(&pk, r->keys[i], 32);
    sw_proto_pack_key(&pk, "sig");
    sw_proto_pack_bin(&pk, sig, 64);
    if (b.overflow)
        return -SW_ETOOBIG;
    *len = b.len;
    return 0;
}

int
sw_revoked_decode(const uint8_t *buf, size_t len, const uint8_t run[32], const uint8_t owner[32],
                  struct sw_revoked *r)
{
    static const char *const keys[] = {"v", "run", "seq", "keys", "sig", NULL};
    uint8_t msg[REVOKED_MSG_MAX], rrun[32];
    const msgpack_object *ks;
    msgpack_unpacked u;
    const uint8_t *sig;
    size_t n = 64;
    uint64_t v;
    int err = -SW_EMSG;

    memset(r, 0, sizeof(*r));
    if (!buf || !len || !sw_proto_open(buf, len, &u, keys))
        return -SW_EMSG;
    ks = sw_proto_get(&u.data, "keys");
    if (sw_proto_get_u64(&u.data, "v", &v) < 0 || v != SW_REVOKED_VERSION ||
        get_bin32(&u.data, "run", rrun) < 0 || sodium_memcmp(rrun, run, 32) != 0 ||
        sw_proto_get_u64(&u.data, "seq", &r->seq) < 0 ||
        sw_proto_get_bin(&u.data, "sig", &sig, &n) < 0 || !ks ||
        ks->type != MSGPACK_OBJECT_ARRAY || ks->via.array.size > SW_REVOKED_MAX)
        goto out;
    for (uint32_t i = 0; i < ks->via.array.size; i++) {
        const msgpack_object *k = &ks->via.array.ptr[i];
        if (k->type != MSGPACK_OBJECT_BIN || k->via.bin.size != 32)
            goto out;
        memcpy(r->keys[i], k->via.bin.ptr, 32);
    }
    r->n = (int)ks->via.array.size;
    err = sw_identity_verify(owner, sig, msg, revoked_msg(msg, run, r)) ? 0 : -SW_ESIG;
out:
    msgpack_unpacked_destroy(&u);
    if (err < 0)
        memset(r, 0, sizeof(*r));
    return err;
}

bool
sw_revoked_has(const struct sw_revoked *r, const uint8_t pk[32])
{
    for (int i = 0; i < r->n; i++)
        if (memcmp(r->keys[i], pk, 32) == 0)
            return true;
    return false;
}

/* ---- the admitter ---- */

int
sw_admit_init(struct sw_admit *a, const uint8_t run[32], const uint8_t owner[32], bool open,
              size_t cap)
{
    memset(a, 0, sizeof(*a));
    memcpy(a->run, run, 32);
    memcpy(a->owner, owner, 32);
    a->open = open;
    a->skew_s = SW_CERT_SKEW_S;
    a->cap = cap ? cap : SW_ADMIT_CACHE;
    if (!(a->cache = sw_calloc(a->cap, sizeof(*a->cache))))
        return -SW_ENOMEM;
    return 0;
}

void
sw_admit_release(struct sw_admit *a)
{
    sw_free(a->cache);
    memset(a, 0, sizeof(*a));
}

static struct sw_admit_entry *
cache_find(struct sw_admit *a, const uint8_t pk[32])
{
    for (size_t i = 0; i < a->n; i++)
        if (memcmp(a->cache[i].pk, pk, 32) == 0)
            return &a->cache[i];
    return NULL;
}

static void
cache_drop(struct sw_admit *a, struct sw_admit_entry *e)
{
    *e = a->cache[--a->n];
}

static void
cache_put(struct sw_admit *a, const uint8_t pk[32], const struct sw_cert *c)
{
    struct sw_admit_entry *e = NULL;

    if (a->n < a->cap) {
        e = &a->cache[a->n++];
    } else {
        e = &a->cache[0];
        for (size_t i = 1; i < a->n; i++)
            if (a->cache[i].used < e->used)
                e = &a->cache[i];
    }
    memcpy(e->pk, pk, 32);
    memcpy(e->by, c->by, 32);
    e->exp = c->exp;
    e->stage = c->stage;
    e->used = ++a->clock;
}

static int
refuse(struct sw_admit *a, int why)
{
    a->drops[why]++;
    return why;
}

int
sw_admit_check(struct sw_admit *a, const uint8_t pk[32], const uint8_t *cert, size_t len,
               uint64_t now_s, int *stage)
{
    struct sw_admit_entry *e;
    struct sw_cert c;
    int why;

    if (stage)
        *stage = -1;
    if (a->open || sodium_memcmp(pk, a->owner, 32) == 0) {
        a->admitted++;
        return SW_ADMIT_OK;
    }
    if ((e = cache_find(a, pk))) {
        if (!expired(e->exp, now_s, a->skew_s)) {
            e->used = ++a->clock;
            if (stage)
                *stage = e->stage;
            a->admitted++;
            return SW_ADMIT_OK;
        }
        cache_drop(a, e); /* expired: a renewed certificate may come along */
    }
    if (sw_revoked_has(&a->revoked, pk))
        return refuse(a, SW_ADMIT_REVOKED);
    if (!cert || !len)
        return refuse(a, SW_ADMIT_NOCERT);
    a->verified++;
    if ((why = sw_cert_verify(cert, len, a->run, a->owner, pk, now_s, a->skew_s, &c)) != 0)
        return refuse(a, why);
    if (sw_revoked_has(&a->revoked, c.by))
        return refuse(a, SW_ADMIT_REVOKED);
    cache_put(a, pk, &c);
    if (stage)
        *stage = c.stage;
    a->admitted++;
    return SW_ADMIT_OK;
}

int
sw_admit_check_rec(struct sw_admit *a, const uint8_t pk[32], const uint8_t *cert, size_t len,
                   int stage, uint64_t now_s)
{
    int why, st;

    if ((why = sw_admit_check(a, pk, cert, len, now_s, &st)) != SW_ADMIT_OK)
        return why;
    if (st >= 0 && st != stage)
        return refuse(a, SW_ADMIT_STAGE);
    return SW_ADMIT_OK;
}

bool
sw_admit_set_revoked(struct sw_admit *a, const struct sw_revoked *r)
{
    if (r->seq <= a->revoked.seq && a->revoked.seq)
        return false;
    a->revoked = *r;
    for (size_t i = 0; i < a->n;) {
        if (sw_revoked_has(r, a->cache[i].pk) || sw_revoked_has(r, a->cache[i].by))
            cache_drop(a, &a->cache[i]);
        else
            i++;
    }
    return true;
}
