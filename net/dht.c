/*
 * dht.c - the sans-I/O Kademlia core; see dht.h for the protocol and the
 * contracts.  Nothing here reads a clock or touches a socket.
 */
#include "sw.h"

#include "hex.h"
#include "rng.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "dht.h"
#include "dht_codec.h"

#define NBUCKETS 256
#define SHORTLIST 64     /* candidates kept per lookup: 2 * SW_DHT_K_MAX */
#define RL_SLOTS 1024    /* per-peer token buckets, direct-mapped by keyed hash */
#define REC_OVERHEAD 180 /* bytes a record adds to a VALUES reply besides its value */
#define MAX_PAGES 32     /* VALUES pages followed per node and lookup */
#define SIG_DOMAIN "swarm-dht-record-v1"

struct rt_entry {
    struct sw_dht_contact c;
    uint64_t last_seen;
    uint32_t fails;
    bool pinging;
};

/* e[0] is the least recently seen; repl[n_repl - 1] the newest replacement. */
struct bucket {
    struct rt_entry *e;          /* [k], allocated on first use */
    struct sw_dht_contact *repl; /* [k] */
    unsigned n, n_repl;
    uint64_t refreshed; /* last lookup into this bucket's range */
};

enum cand_state { C_NEW, C_INFLIGHT, C_DONE, C_FAILED };

struct cand {
    struct sw_dht_contact c;
    uint8_t state;
    uint8_t depth;
    uint8_t pages; /* VALUES pages received */
};

enum lk_kind { LK_NODES, LK_GET, LK_PUT, LK_REFRESH, LK_JOIN };

struct lookup {
    struct lookup *next;
    enum lk_kind kind;
    uint8_t target[SW_DHT_ID_BYTES];
    struct cand cands[SHORTLIST]; /* sorted by distance to target */
    unsigned n_cands, inflight, noprog;
    uint8_t best[SW_DHT_ID_BYTES];
    bool has_best, burst, storing, done;
    int status;
    struct sw_dht_lookup_info info;
    uint64_t started;
    /* get: newest record per publisher, values owned */
    struct sw_dht_record *res;
    size_t n_res, cap_res;
    /* put: our copy of the record, then the STORE phase */
    struct sw_dht_record rec;
    unsigned store_pending, store_ok;
    int store_err;
    sw_dht_nodes_cb *nodes_cb;
    sw_dht_get_cb *get_cb;
    sw_dht_put_cb *put_cb;
    void *arg;
};

enum rpc_why { RPC_LOOKUP, RPC_PING, RPC_BOOT, RPC_STORE };

struct rpc {
    struct rpc *next;
    uint64_t tid, deadline;
    uint8_t id[SW_DHT_ID_BYTES]; /* whom we asked, when has_id */
    bool has_id;
    int type; /* request type */
    enum rpc_why why;
    uint8_t depth;
    bool has_after; /* FIND_VALUE page cursor sent */
    uint8_t after[SW_DHT_PK_BYTES];
    struct lookup *lk;
    char ep[SW_DHT_EP_MAX]; /* where it went */
};

struct stored {
    struct sw_dht_record r; /* r.val owned */
    uint64_t expiry;
};

struct key_entry {
    struct key_entry *next;
    uint8_t key[SW_DHT_ID_BYTES];
    struct stored *recs; /* sorted by publisher */
    unsigned n, cap;
};

struct rl_slot {
    uint8_t id[SW_DHT_ID_BYTES];
    uint64_t last, milli;
    bool used;
};

struct sw_dht {
    struct sw_dht_params p;
    struct sw_dht_contact self;
    sw_dht_send_cb *send;
    void *send_arg;
    struct bucket b[NBUCKETS];
    struct rpc *rpcs;
    struct lookup *lookups;
    struct key_entry **keys;
    size_t n_keyb, n_keys, n_records, n_bytes;
    struct rl_slot *rl; /* [RL_SLOTS] */
    uint64_t rl_last, rl_milli;
    uint8_t hkey[crypto_shorthash_KEYBYTES];
    uint64_t rng;
    uint64_t now, next_wake, next_sweep;
    bool wake_now;
    struct sw_dht_stats st;
    /* bootstrap */
    unsigned boot_pending;
    struct sw_dht_contact boot_nodes[SHORTLIST];
    unsigned n_boot_nodes, boot_answers;
    sw_dht_nodes_cb *boot_cb;
    void *boot_arg;
    bool booting;
};

/* ---- small helpers ------------------------------------------------------ */

static uint64_t
rng_next(struct sw_dht *d)
{
    return sw_splitmix64(&d->rng);
}

static void
rng_fill(struct sw_dht *d, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = rng_next(d);

        memcpy(p + i, &v, SW_MIN(8, n - i));
    }
}

static bool
is_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;

    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* <0 when a is closer to t than b */
static int
dist_cmp(const uint8_t *t, const uint8_t *a, const uint8_t *b)
{
    for (int i = 0; i < SW_DHT_ID_BYTES; i++) {
        uint8_t da = a[i] ^ t[i], db = b[i] ^ t[i];

        if (da != db)
            return da < db ? -1 : 1;
    }
    return 0;
}

static const char *
hex8(const uint8_t *id, char buf[17])
{
    return sw_hex_encode(buf, id, 8);
}

void
sw_dht_id_of(uint8_t id[SW_DHT_ID_BYTES], const uint8_t pk[SW_DHT_PK_BYTES])
{
    crypto_generichash(id, SW_DHT_ID_BYTES, pk, SW_DHT_PK_BYTES, NULL, 0);
}

int
sw_dht_common_bits(const uint8_t a[SW_DHT_ID_BYTES], const uint8_t b[SW_DHT_ID_BYTES])
{
    for (int i = 0; i < SW_DHT_ID_BYTES; i++) {
        unsigned x = a[i] ^ b[i];

        if (x)
            return i * 8 + __builtin_clz(x) - 24;
    }
    return 256;
}

bool
sw_dht_endpoint_valid(const char *s, size_t len)
{
    static const char *const schemes[] = {"tcp://", "ipc://", "inproc://"};
    bool scheme = false;

    if (!s || len == 0 || len >= SW_DHT_EP_MAX)
        return false;
    for (size_t i = 0; i < SW_ARRAY_SIZE(schemes); i++) {
        size_t n = strlen(schemes[i]);

        if (len > n && memcmp(s, schemes[i], n) == 0)
            scheme = true;
    }
    if (!scheme)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

void
sw_dht_params_default(struct sw_dht_params *p)
{
    memset(p, 0, sizeof(*p));
    p->k = 20;
    p->alpha = 3;
    p->rpc_timeout_ms = 2000;
    p->max_fails = 2;
    p->questionable_ms = 15 * 60 * 1000;
    p->refresh_ms = 60 * 60 * 1000;
    p->sweep_ms = 60 * 1000;
    p->value_max = SW_DHT_VALUE_MAX;
    p->publishers_max = SW_DHT_PUBLISHERS_MAX;
    p->store_max_records = 65536;
    p->store_max_bytes = 64u << 20;
    p->ttl_max_s = 86400;
    p->rl_rate = 50;
    p->rl_burst = 200;
    p->rl_global_rate = 5000;
    p->rl_global_burst = 20000;
}

/* ---- records ------------------------------------------------------------ */

static void
record_digest(uint8_t out[32], const struct sw_dht_record *r)
{
    crypto_generichash_state h;
    uint8_t seq[8];

    for (int i = 0; i < 8; i++)
        seq[i] = (uint8_t)(r->seq >> (56 - 8 * i));
    crypto_generichash_init(&h, NULL, 0, 32);
    crypto_generichash_update(&h, (const uint8_t *)SIG_DOMAIN, strlen(SIG_DOMAIN));
    crypto_generichash_update(&h, r->key, SW_DHT_ID_BYTES);
    crypto_generichash_update(&h, r->pub, SW_DHT_PK_BYTES);
    crypto_generichash_update(&h, seq, sizeof(seq));
    if (r->val_len)
        crypto_generichash_update(&h, r->val, r->val_len);
    crypto_generichash_final(&h, out, 32);
}

void
sw_dht_record_sign(struct sw_dht_record *r, const uint8_t sk[SW_DHT_SK_BYTES])
{
    uint8_t dg[32];

    crypto_sign_ed25519_sk_to_pk(r->pub, sk);
    record_digest(dg, r);
    crypto_sign_detached(r->sig, NULL, dg, sizeof(dg), sk);
}

bool
sw_dht_record_verify(const struct sw_dht_record *r)
{
    uint8_t dg[32];

    if (r->val_len > SW_DHT_VALUE_MAX || (r->val_len && !r->val))
        return false;
    record_digest(dg, r);
    return crypto_sign_verify_detached(r->sig, dg, sizeof(dg), r->pub) == 0;
}

static bool
record_same(const struct sw_dht_record *a, const struct sw_dht_record *b)
{
    return a->seq == b->seq && a->val_len == b->val_len &&
           memcmp(a->sig, b->sig, SW_DHT_SIG_BYTES) == 0 &&
           (a->val_len == 0 || memcmp(a->val, b->val, a->val_len) == 0);
}

/* Copies r (and its value) into dst, freeing dst's old value. */
static int
record_copy(struct sw_dht_record *dst, const struct sw_dht_record *r)
{
    uint8_t *v = sw_malloc(r->val_len);

    if (!v)
        return -SW_ENOMEM;
    if (r->val_len)
        memcpy(v, r->val, r->val_len);
    sw_free((void *)dst->val);
    *dst = *r;
    dst->val = v;
    return 0;
}

/* ---- sending ------------------------------------------------------------ */

static void
send_msg(struct sw_dht *d, const struct sw_dht_contact *to, struct sw_dht_msg *m)
{
    memcpy(m->ep, d->self.ep, sizeof(m->ep));
    d->st.tx++;
    d->send(d->send_arg, to, m);
}

static uint64_t
new_tid(struct sw_dht *d)
{
    for (;;) {
        uint64_t t = rng_next(d);
        bool used = false;

        for (struct rpc *r = d->rpcs; r && !used; r = r->next)
            used = r->tid == t;
        if (!used)
            return t;
    }
}

/* Sends request m to `to` and remembers it.  NULL on allocation failure. */
static struct rpc *
rpc_start(struct sw_dht *d, const struct sw_dht_contact *to, struct sw_dht_msg *m,
          enum rpc_why why, struct lookup *lk, uint8_t depth)
{
    struct rpc *r = sw_calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    r->tid = m->tid = new_tid(d);
    r->deadline = d->now + d->p.rpc_timeout_ms;
    r->has_id = !is_zero(to->pk, SW_DHT_PK_BYTES);
    memcpy(r->id, to->id, SW_DHT_ID_BYTES);
    memcpy(r->ep, to->ep, SW_DHT_EP_MAX);
    r->type = m->type;
    r->why = why;
    r->lk = lk;
    r->depth = depth;
    r->has_after = m->type == SW_DHT_FIND_VALUE && m->has_after;
    memcpy(r->after, m->after, SW_DHT_PK_BYTES);
    r->next = d->rpcs;
    d->rpcs = r;
    send_msg(d, to, m);
    return r;
}

/* ---- routing table ------------------------------------------------------ */

static struct rt_entry *
rt_find(struct sw_dht *d, const uint8_t *id, struct bucket **bp, unsigned *ip)
{
    int bi = sw_dht_common_bits(d->self.id, id);
    struct bucket *b;

    if (bi >= NBUCKETS)
        return NULL;
    b = &d->b[bi];
    if (bp)
        *bp = b;
    for (unsigned i = 0; i < b->n; i++) {
        if (memcmp(b->e[i].c.id, id, SW_DHT_ID_BYTES) == 0) {
            if (ip)
                *ip = i;
            return &b->e[i];
        }
    }
    return NULL;
}

static void
ping(struct sw_dht *d, struct rt_entry *e)
{
    struct sw_dht_msg m = {.type = SW_DHT_PING};

    if (rpc_start(d, &e->c, &m, RPC_PING, NULL, 0))
        e->pinging = true;
}

static bool
questionable(const struct sw_dht *d, const struct rt_entry *e)
{
    return e->fails > 0 || d->now - e->last_seen >= d->p.questionable_ms;
}

static void
repl_remove(struct bucket *b, const uint8_t *id)
{
    for (unsigned i = 0; i < b->n_repl; i++) {
        if (memcmp(b->repl[i].id, id, SW_DHT_ID_BYTES) == 0) {
            memmove(&b->repl[i], &b->repl[i + 1], (b->n_repl - i - 1) * sizeof(b->repl[0]));
            b->n_repl--;
            return;
        }
    }
}

/* A peer talked to us directly (c->ep valid): Kademlia's table update. */
static void
rt_seen(struct sw_dht *d, const struct sw_dht_contact *c)
{
    struct bucket *b;
    struct rt_entry *e, tmp;
    unsigned i;
    int bi = sw_dht_common_bits(d->self.id, c->id);

    if (bi >= NBUCKETS)
        return;
    b = &d->b[bi];
    if ((e = rt_find(d, c->id, NULL, &i))) {
        tmp = *e;
        tmp.c = *c;
        tmp.last_seen = d->now;
        tmp.fails = 0;
        tmp.pinging = false;
        memmove(&b->e[i], &b->e[i + 1], (b->n - i - 1) * sizeof(b->e[0]));
        b->e[b->n - 1] = tmp;
        return;
    }
    if (!b->e) {
        b->e = sw_calloc(d->p.k, sizeof(*b->e));
        b->repl = sw_calloc(d->p.k, sizeof(*b->repl));
        if (!b->e || !b->repl) {
            sw_free(b->e);
            sw_free(b->repl);
            b->e = NULL;
            b->repl = NULL;
            return;
        }
        b->refreshed = d->now;
    }
    if (b->n < d->p.k) {
        repl_remove(b, c->id);
        b->e[b->n++] = (struct rt_entry){.c = *c, .last_seen = d->now};
        return;
    }
    /* full: remember the newcomer, question the least recently seen */
    repl_remove(b, c->id);
    if (b->n_repl == d->p.k) {
        memmove(&b->repl[0], &b->repl[1], (b->n_repl - 1) * sizeof(b->repl[0]));
        b->n_repl--;
    }
    b->repl[b->n_repl++] = *c;
    if (!b->e[0].pinging && questionable(d, &b->e[0]))
        ping(d, &b->e[0]);
}

/* A request to id timed out. */
static void
rt_failed(struct sw_dht *d, const uint8_t *id)
{
    struct bucket *b;
    struct rt_entry *e;
    unsigned i;

    if (!(e = rt_find(d, id, &b, &i)))
        return;
    e->pinging = false;
    if (++e->fails < d->p.max_fails)
        return;
    memmove(&b->e[i], &b->e[i + 1], (b->n - i - 1) * sizeof(b->e[0]));
    b->n--;
    d->st.evicted++;
    if (b->n_repl > 0) {
        b->e[b->n++] = (struct rt_entry){.c = b->repl[b->n_repl - 1], .last_seen = d->now};
        b->n_repl--;
    }
}

int
sw_dht_add_contact(struct sw_dht *d, const struct sw_dht_contact *c, uint64_t now)
{
    struct sw_dht_contact cc = *c;

    if (now > d->now)
        d->now = now;
    if (!sw_dht_endpoint_valid(cc.ep, strnlen(cc.ep, SW_DHT_EP_MAX)))
        return -SW_EINVAL;
    sw_dht_id_of(cc.id, cc.pk);
    rt_seen(d, &cc);
    return 0;
}

/* Up to n contacts closest to target, skipping `skip` (may be NULL). */
static size_t
closest(const struct sw_dht *d, const uint8_t *target, const uint8_t *skip,
        struct sw_dht_contact *out, size_t n)
{
    const struct sw_dht_contact *sel[SW_DHT_K_MAX * 2];
    size_t m = 0;

    n = SW_MIN(n, SW_ARRAY_SIZE(sel));
    if (n == 0)
        return 0;
    for (int bi = 0; bi < NBUCKETS; bi++) {
        const struct bucket *b = &d->b[bi];

        for (unsigned i = 0; i < b->n; i++) {
            const struct sw_dht_contact *c = &b->e[i].c;
            size_t pos;

            if (skip && memcmp(c->id, skip, SW_DHT_ID_BYTES) == 0)
                continue;
            if (m == n && dist_cmp(target, c->id, sel[m - 1]->id) >= 0)
                continue;
            pos = m < n ? m : n - 1;
            while (pos > 0 && dist_cmp(target, c->id, sel[pos - 1]->id) < 0) {
                sel[pos] = sel[pos - 1];
                pos--;
            }
            sel[pos] = c;
            if (m < n)
                m++;
        }
    }
    for (size_t i = 0; i < m; i++)
        out[i] = *sel[i];
    return m;
}

size_t
sw_dht_closest(const struct sw_dht *d, const uint8_t target[SW_DHT_ID_BYTES],
               struct sw_dht_contact *out, size_t n)
{
    return closest(d, target, NULL, out, n);
}

size_t
sw_dht_count_contacts(const struct sw_dht *d)
{
    size_t n = 0;

    for (int i = 0; i < NBUCKETS; i++)
        n += d->b[i].n;
    return n;
}

bool
sw_dht_has_contact(const struct sw_dht *d, const uint8_t id[SW_DHT_ID_BYTES])
{
    return rt_find((struct sw_dht *)d, id, NULL, NULL) != NULL;
}

/* ---- local store -------------------------------------------------------- */

static size_t
key_hash(const struct sw_dht *d, const uint8_t *key)
{
    uint64_t h;

    crypto_shorthash((uint8_t *)&h, key, SW_DHT_ID_BYTES, d->hkey);
    return (size_t)(h % d->n_keyb);
}

static struct key_entry *
store_find(const struct sw_dht *d, const uint8_t *key)
{
    for (struct key_entry *k = d->keys[key_hash(d, key)]; k; k = k->next)
        if (memcmp(k->key, key, SW_DHT_ID_BYTES) == 0)
            return k;
    return NULL;
}

static void
store_grow(struct sw_dht *d)
{
    size_t nb = d->n_keyb * 2, old = d->n_keyb;
    struct key_entry **nk = sw_calloc(nb, sizeof(*nk)), **ok = d->keys;

    if (!nk)
        return; /* keep the longer chains */
    d->keys = nk;
    d->n_keyb = nb;
    for (size_t i = 0; i < old; i++) {
        while (ok[i]) {
            struct key_entry *k = ok[i];
            size_t h = key_hash(d, k->key);

            ok[i] = k->next;
            k->next = nk[h];
            nk[h] = k;
        }
    }
    sw_free(ok);
}

static void
stored_drop(struct sw_dht *d, struct key_entry *k, unsigned i)
{
    d->n_bytes -= k->recs[i].r.val_len;
    d->n_records--;
    sw_free((void *)k->recs[i].r.val);
    memmove(&k->recs[i], &k->recs[i + 1], (k->n - i - 1) * sizeof(k->recs[0]));
    k->n--;
}

/* Drops expired records (of one key when only is set); frees empty keys. */
static void
store_sweep(struct sw_dht *d, const struct key_entry *only)
{
    for (size_t h = 0; h < d->n_keyb; h++) {
        struct key_entry **pp = &d->keys[h];

        while (*pp) {
            struct key_entry *k = *pp;

            if (only && k != only) {
                pp = &k->next;
                continue;
            }
            for (unsigned i = k->n; i-- > 0;)
                if (k->recs[i].expiry <= d->now)
                    stored_drop(d, k, i);
            if (k->n == 0 && !only) {
                *pp = k->next;
                sw_free(k->recs);
                sw_free(k);
                d->n_keys--;
            } else {
                pp = &k->next;
            }
        }
    }
}

/* Position of pub in k->recs, or where it would go (*found false). */
static unsigned
store_pos(const struct key_entry *k, const uint8_t *pub, bool *found)
{
    unsigned lo = 0, hi = k->n;

    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        int c = memcmp(k->recs[mid].r.pub, pub, SW_DHT_PK_BYTES);

        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

/* Stores r (untrusted) at now; returns an enum sw_dht_store_status. */
static unsigned
store_put(struct sw_dht *d, const struct sw_dht_record *r)
{
    struct key_entry *k;
    struct stored *s = NULL;
    uint64_t ttl, expiry;
    unsigned pos = 0;
    bool found = false;

    if (r->val_len > d->p.value_max)
        return SW_DHT_ST_TOOBIG;
    if (r->ttl_s == 0)
        return SW_DHT_ST_INVALID;
    ttl = SW_MIN(r->ttl_s, d->p.ttl_max_s);
    expiry = d->now + ttl * 1000;
    k = store_find(d, r->key);
    if (k) {
        pos = store_pos(k, r->pub, &found);
        s = found ? &k->recs[pos] : NULL;
    }
    if (s && s->expiry > d->now) {
        if (r->seq < s->r.seq)
            return SW_DHT_ST_STALE;
        if (r->seq == s->r.seq) {
            if (!record_same(r, &s->r))
                return SW_DHT_ST_STALE;
            s->expiry = SW_MAX(s->expiry, expiry); /* a refresh: already verified */
            return SW_DHT_ST_OK;
        }
    }
    if (!sw_dht_record_verify(r)) {
        d->st.bad_records++;
        return SW_DHT_ST_BADSIG;
    }
    if (s) {
        size_t old = s->r.val_len;

        if (record_copy(&s->r, r) < 0)
            return SW_DHT_ST_FULL;
        d->n_bytes += r->val_len - old;
        s->r.ttl_s = 0;
        s->expiry = expiry;
        return SW_DHT_ST_OK;
    }
    if (k && k->n >= d->p.publishers_max) {
        store_sweep(d, k);
        pos = store_pos(k, r->pub, &found);
        if (k->n >= d->p.publishers_max)
            return SW_DHT_ST_FULL;
    }
    if (d->n_records >= d->p.store_max_records || d->n_bytes + r->val_len > d->p.store_max_bytes) {
        store_sweep(d, NULL);
        k = store_find(d, r->key);
        if (k)
            pos = store_pos(k, r->pub, &found);
        if (d->n_records >= d->p.store_max_records ||
            d->n_bytes + r->val_len > d->p.store_max_bytes)
            return SW_DHT_ST_FULL;
    }
    if (!k) {
        if (d->n_keys >= d->n_keyb * 2)
            store_grow(d);
        k = sw_calloc(1, sizeof(*k));
        if (!k)
            return SW_DHT_ST_FULL;
        memcpy(k->key, r->key, SW_DHT_ID_BYTES);
        k->next = d->keys[key_hash(d, r->key)];
        d->keys[key_hash(d, r->key)] = k;
        d->n_keys++;
        pos = 0;
    }
    if (k->n == k->cap) {
        unsigned cap = k->cap ? k->cap * 2 : 4;
        struct stored *nr = sw_realloc(k->recs, cap * sizeof(*nr));

        if (!nr)
            return SW_DHT_ST_FULL;
        k->recs = nr;
        k->cap = cap;
    }
    memmove(&k->recs[pos + 1], &k->recs[pos], (k->n - pos) * sizeof(k->recs[0]));
    k->recs[pos] = (struct stored){.expiry = expiry};
    if (record_copy(&k->recs[pos].r, r) < 0) {
        memmove(&k->recs[pos], &k->recs[pos + 1], (k->n - pos) * sizeof(k->recs[0]));
        return SW_DHT_ST_FULL;
    }
    k->recs[pos].r.ttl_s = 0;
    k->n++;
    d->n_records++;
    d->n_bytes += r->val_len;
    return SW_DHT_ST_OK;
}

static uint32_t
remaining_s(const struct sw_dht *d, const struct stored *s)
{
    uint64_t left = (s->expiry - d->now + 999) / 1000;

    return (uint32_t)SW_MIN(left, UINT32_MAX);
}

size_t
sw_dht_count_records(const struct sw_dht *d, uint64_t now)
{
    size_t n = 0;

    for (size_t h = 0; h < d->n_keyb; h++)
        for (const struct key_entry *k = d->keys[h]; k; k = k->next)
            for (unsigned i = 0; i < k->n; i++)
                n += k->recs[i].expiry > now;
    return n;
}

static uint64_t
next_sweep_time(const struct sw_dht *d)
{
    return d->n_records ? d->next_sweep : UINT64_MAX;
}

/* ---- lookups ------------------------------------------------------------ */

static void
cand_add(struct sw_dht *d, struct lookup *lk, const struct sw_dht_contact *c, unsigned depth)
{
    unsigned pos;

    if (memcmp(c->id, d->self.id, SW_DHT_ID_BYTES) == 0)
        return;
    for (unsigned i = 0; i < lk->n_cands; i++)
        if (memcmp(lk->cands[i].c.id, c->id, SW_DHT_ID_BYTES) == 0)
            return;
    pos = lk->n_cands;
    while (pos > 0 && dist_cmp(lk->target, c->id, lk->cands[pos - 1].c.id) < 0)
        pos--;
    if (pos == SHORTLIST)
        return;
    if (lk->n_cands == SHORTLIST)
        lk->n_cands--; /* the farthest goes; a reply from it is still counted */
    memmove(&lk->cands[pos + 1], &lk->cands[pos], (lk->n_cands - pos) * sizeof(lk->cands[0]));
    lk->cands[pos] = (struct cand){.c = *c, .state = C_NEW, .depth = (uint8_t)SW_MIN(depth, 255)};
    lk->n_cands++;
}

static struct cand *
cand_find(struct lookup *lk, const uint8_t *id)
{
    for (unsigned i = 0; i < lk->n_cands; i++)
        if (memcmp(lk->cands[i].c.id, id, SW_DHT_ID_BYTES) == 0)
            return &lk->cands[i];
    return NULL;
}

static void
lookup_finish(struct sw_dht *d, struct lookup *lk, int status)
{
    lk->done = true;
    lk->status = status;
    lk->info.elapsed_ms = d->now - lk->started;
    d->wake_now = true;
}

static bool
lookup_query(struct sw_dht *d, struct lookup *lk, struct cand *c, const uint8_t *after)
{
    struct sw_dht_msg m = {.type = lk->kind == LK_GET ? SW_DHT_FIND_VALUE : SW_DHT_FIND_NODE};

    memcpy(m.target, lk->target, SW_DHT_ID_BYTES);
    if (after) {
        m.has_after = true;
        memcpy(m.after, after, SW_DHT_PK_BYTES);
    }
    if (!rpc_start(d, &c->c, &m, RPC_LOOKUP, lk, c->depth))
        return false;
    c->state = C_INFLIGHT;
    lk->inflight++;
    lk->info.queries++;
    lk->info.rounds = SW_MAX(lk->info.rounds, c->depth);
    return true;
}

static void lookup_phase_done(struct sw_dht *d, struct lookup *lk);

static void
lookup_step(struct sw_dht *d, struct lookup *lk)
{
    unsigned limit = lk->burst ? d->p.k : d->p.alpha, good = 0;
    bool pending = false;

    if (lk->done || lk->storing)
        return;
    for (unsigned i = 0; i < lk->n_cands && good < d->p.k; i++) {
        struct cand *c = &lk->cands[i];

        if (c->state == C_FAILED)
            continue;
        if (c->state == C_NEW && lk->inflight < limit && !lookup_query(d, lk, c, NULL)) {
            c->state = C_FAILED;
            continue;
        }
        good++;
        if (c->state != C_DONE)
            pending = true;
    }
    if (!pending)
        lookup_phase_done(d, lk);
}

static void
lookup_progress(struct sw_dht *d, struct lookup *lk)
{
    for (unsigned i = 0; i < lk->n_cands; i++) {
        if (lk->cands[i].state == C_FAILED)
            continue;
        if (!lk->has_best || memcmp(lk->best, lk->cands[i].c.id, SW_DHT_ID_BYTES) != 0) {
            memcpy(lk->best, lk->cands[i].c.id, SW_DHT_ID_BYTES);
            lk->has_best = true;
            lk->noprog = 0;
            return;
        }
        break;
    }
    if (++lk->noprog >= d->p.alpha)
        lk->burst = true;
}

static struct lookup *
lookup_new(struct sw_dht *d, enum lk_kind kind, const uint8_t *target)
{
    struct sw_dht_contact seed[SW_DHT_K_MAX];
    struct lookup *lk = sw_calloc(1, sizeof(*lk));
    size_t n;
    int bi;

    if (!lk)
        return NULL;
    lk->kind = kind;
    memcpy(lk->target, target, SW_DHT_ID_BYTES);
    lk->started = d->now;
    n = closest(d, target, NULL, seed, d->p.k);
    for (size_t i = 0; i < n; i++)
        cand_add(d, lk, &seed[i], 1);
    bi = sw_dht_common_bits(d->self.id, target);
    if (bi < NBUCKETS)
        d->b[bi].refreshed = d->now;
    lk->next = d->lookups;
    d->lookups = lk;
    d->st.lookups++;
    return lk;
}

static void
lookup_free(struct lookup *lk)
{
    for (size_t i = 0; i < lk->n_res; i++)
        sw_free((void *)lk->res[i].val);
    sw_free(lk->res);
    sw_free((void *)lk->rec.val);
    sw_free(lk);
}

static int
store_status_err(unsigned st)
{
    switch (st) {
    case SW_DHT_ST_BADSIG:
        return -SW_ESIG;
    case SW_DHT_ST_STALE:
        return -SW_EREPLAY;
    case SW_DHT_ST_FULL:
        return -SW_ENOMEM;
    case SW_DHT_ST_TOOBIG:
        return -SW_ETOOBIG;
    default:
        return -SW_EINVAL;
    }
}

static void put_release(struct sw_dht *d, struct lookup *lk);

static void
put_store_done(struct sw_dht *d, struct lookup *lk, unsigned st)
{
    if (st == SW_DHT_ST_OK)
        lk->store_ok++;
    else if (!lk->store_err)
        lk->store_err = st == 0xffff ? -SW_ETIMEDOUT : store_status_err(st);
    put_release(d, lk);
}

static void
put_release(struct sw_dht *d, struct lookup *lk)
{
    if (--lk->store_pending == 0)
        lookup_finish(d, lk, lk->store_ok ? 0 : lk->store_err ? lk->store_err : -SW_ENOENT);
}

static void
put_local(struct sw_dht *d, struct lookup *lk)
{
    unsigned st = store_put(d, &lk->rec);

    if (st == SW_DHT_ST_OK)
        d->st.stored++;
    lk->store_pending++;
    put_store_done(d, lk, st);
}

static void
lookup_phase_done(struct sw_dht *d, struct lookup *lk)
{
    unsigned answered = 0, failed = 0;

    for (unsigned i = 0; i < lk->n_cands; i++) {
        answered += lk->cands[i].state == C_DONE;
        failed += lk->cands[i].state == C_FAILED;
    }
    if (lk->kind == LK_JOIN) {
        int deepest = -1;

        /* refresh every bucket farther than our closest neighbour */
        for (int bi = 0; bi < NBUCKETS; bi++)
            if (d->b[bi].n)
                deepest = bi;
        for (int bi = 0; bi < deepest; bi++)
            d->b[bi].refreshed = 0;
        d->booting = false;
    }
    if (lk->kind == LK_PUT) {
        struct sw_dht_msg m = {.type = SW_DHT_STORE, .recs = &lk->rec, .n_recs = 1};
        bool self_done = false;
        unsigned taken = 0;

        /* the k closest that answered, this node included when it is one */
        lk->storing = true;
        lk->store_pending = 1; /* held while sending */
        for (unsigned i = 0; i < lk->n_cands && taken < d->p.k; i++) {
            struct cand *c = &lk->cands[i];

            if (c->state != C_DONE)
                continue;
            if (!self_done && dist_cmp(lk->target, d->self.id, c->c.id) < 0) {
                self_done = true;
                taken++;
                put_local(d, lk);
                if (taken == d->p.k)
                    break;
            }
            if (rpc_start(d, &c->c, &m, RPC_STORE, lk, c->depth)) {
                lk->store_pending++;
                taken++;
            }
        }
        if (!self_done && taken < d->p.k)
            put_local(d, lk);
        put_release(d, lk);
        return;
    }
    if (answered == 0 && lk->kind != LK_GET)
        lookup_finish(d, lk, failed ? -SW_ETIMEDOUT : -SW_ENOENT);
    else if (answered == 0 && failed > 0)
        /* a get that asked and heard nobody: "no record" would be a guess,
         * so say so (the local records, if any, still come with it) */
        lookup_finish(d, lk, -SW_ETIMEDOUT);
    else
        lookup_finish(d, lk, 0);
}

/* Merges one record of a VALUES reply into a get's results. */
static void
get_merge(struct sw_dht *d, struct lookup *lk, const struct sw_dht_record *r, bool trusted)
{
    struct sw_dht_record *ex = NULL;

    if (memcmp(r->key, lk->target, SW_DHT_ID_BYTES) != 0 || r->val_len > d->p.value_max ||
        r->ttl_s == 0) {
        d->st.drop_malformed++;
        return;
    }
    for (size_t i = 0; i < lk->n_res && !ex; i++)
        if (memcmp(lk->res[i].pub, r->pub, SW_DHT_PK_BYTES) == 0)
            ex = &lk->res[i];
    if (ex && r->seq <= ex->seq) {
        if (record_same(r, ex))
            ex->ttl_s = SW_MAX(ex->ttl_s, SW_MIN(r->ttl_s, d->p.ttl_max_s));
        return;
    }
    if (!trusted && !sw_dht_record_verify(r)) {
        d->st.bad_records++;
        SW_LOG_RATELIMITED(SW_LOG_WARN, 10000, "dht: dropped a record with a bad signature");
        return;
    }
    if (!ex) {
        if (lk->n_res == lk->cap_res) {
            size_t cap = lk->cap_res ? 2 * lk->cap_res : 8;
            struct sw_dht_record *nr = sw_realloc(lk->res, cap * sizeof(*nr));

            if (!nr)
                return;
            lk->res = nr;
            lk->cap_res = cap;
        }
        ex = &lk->res[lk->n_res];
        memset(ex, 0, sizeof(*ex));
        lk->n_res++;
    }
    if (record_copy(ex, r) < 0) {
        if (ex->val == NULL)
            lk->n_res--;
        return;
    }
    ex->ttl_s = SW_MIN(r->ttl_s, d->p.ttl_max_s);
}

static int
pub_cmp(const void *a, const void *b)
{
    return memcmp(((const struct sw_dht_record *)a)->pub, ((const struct sw_dht_record *)b)->pub,
                  SW_DHT_PK_BYTES);
}

/* Calls the callbacks of finished lookups (they may start new ones). */
static void
reap(struct sw_dht *d)
{
    for (;;) {
        struct lookup **pp = &d->lookups, *lk;

        while (*pp && !(*pp)->done)
            pp = &(*pp)->next;
        if (!(lk = *pp))
            break;
        *pp = lk->next;
        for (struct rpc *r = d->rpcs; r; r = r->next)
            if (r->lk == lk)
                r->lk = NULL;
        switch (lk->kind) {
        case LK_NODES:
        case LK_REFRESH:
        case LK_JOIN:
            if (lk->nodes_cb) {
                struct sw_dht_contact res[SW_DHT_K_MAX];
                size_t n = 0;

                for (unsigned i = 0; i < lk->n_cands && n < d->p.k; i++)
                    if (lk->cands[i].state == C_DONE)
                        res[n++] = lk->cands[i].c;
                lk->nodes_cb(lk->arg, lk->status, res, n, &lk->info);
            }
            break;
        case LK_GET:
            if (lk->n_res > 1)
                qsort(lk->res, lk->n_res, sizeof(lk->res[0]), pub_cmp);
            if (lk->get_cb)
                lk->get_cb(lk->arg, lk->status, lk->res, lk->n_res, &lk->info);
            break;
        case LK_PUT:
            if (lk->put_cb)
                lk->put_cb(lk->arg, lk->status, lk->store_ok, &lk->info);
            break;
        }
        lookup_free(lk);
    }
}

/* ---- wake-ups ----------------------------------------------------------- */

static int
deepest_bucket(const struct sw_dht *d)
{
    for (int bi = NBUCKETS - 1; bi >= 0; bi--)
        if (d->b[bi].n)
            return bi;
    return -1;
}

static void
update_wake(struct sw_dht *d)
{
    uint64_t w = UINT64_MAX;
    int deepest = deepest_bucket(d);

    if (d->wake_now) {
        d->next_wake = d->now;
        return;
    }
    for (struct rpc *r = d->rpcs; r; r = r->next)
        w = SW_MIN(w, r->deadline);
    for (int bi = 0; bi <= deepest; bi++) {
        const struct bucket *b = &d->b[bi];

        if (b->n && !b->e[0].pinging)
            w = SW_MIN(w, b->e[0].fails ? d->now : b->e[0].last_seen + d->p.questionable_ms);
        if (!d->booting)
            w = SW_MIN(w, b->refreshed + d->p.refresh_ms);
    }
    w = SW_MIN(w, next_sweep_time(d));
    d->next_wake = SW_MAX(w, d->now);
}

uint64_t
sw_dht_next_wake(const struct sw_dht *d)
{
    return d->next_wake;
}

/* ---- lifecycle ---------------------------------------------------------- */

int
sw_dht_new(struct sw_dht **out, const uint8_t pk[SW_DHT_PK_BYTES], const char *ep,
           const struct sw_dht_params *params, sw_dht_send_cb *send, void *send_arg)
{
    struct sw_dht *d;
    size_t eplen = ep ? strnlen(ep, SW_DHT_EP_MAX) : 0;

    *out = NULL;
    if (!send || (eplen && !sw_dht_endpoint_valid(ep, eplen)))
        return -SW_EINVAL;
    if (sodium_init() < 0)
        return -SW_ENOMEM;
    d = sw_calloc(1, sizeof(*d));
    if (!d)
        return -SW_ENOMEM;
    if (params)
        d->p = *params;
    else
        sw_dht_params_default(&d->p);
    if (d->p.k < 1 || d->p.k > SW_DHT_K_MAX || d->p.alpha < 1 || d->p.alpha > d->p.k ||
        d->p.max_fails < 1 || d->p.value_max > SW_DHT_VALUE_MAX ||
        d->p.publishers_max < 1 || d->p.publishers_max > SW_DHT_PUBLISHERS_MAX ||
        d->p.rpc_timeout_ms < 1 || d->p.ttl_max_s < 1 || d->p.rl_rate < 1 || d->p.rl_burst < 1 ||
        d->p.rl_global_rate < 1 || d->p.rl_global_burst < 1 || d->p.sweep_ms < 1) {
        sw_free(d);
        return -SW_EINVAL;
    }
    memcpy(d->self.pk, pk, SW_DHT_PK_BYTES);
    sw_dht_id_of(d->self.id, pk);
    if (eplen)
        memcpy(d->self.ep, ep, eplen);
    d->send = send;
    d->send_arg = send_arg;
    if (d->p.seed)
        d->rng = d->p.seed;
    else
        randombytes_buf(&d->rng, sizeof(d->rng));
    rng_fill(d, d->hkey, sizeof(d->hkey));
    d->n_keyb = 64;
    d->keys = sw_calloc(d->n_keyb, sizeof(*d->keys));
    d->rl = sw_calloc(RL_SLOTS, sizeof(*d->rl));
    if (!d->keys || !d->rl) {
        sw_free(d->keys);
        sw_free(d->rl);
        sw_free(d);
        return -SW_ENOMEM;
    }
    d->rl_milli = (uint64_t)d->p.rl_global_burst * 1000;
    d->next_wake = UINT64_MAX;
    *out = d;
    return 0;
}

void
sw_dht_free(struct sw_dht *d)
{
    if (!d)
        return;
    while (d->rpcs) {
        struct rpc *r = d->rpcs;

        d->rpcs = r->next;
        sw_free(r);
    }
    while (d->lookups) {
        struct lookup *lk = d->lookups;
        struct sw_dht_lookup_info info = lk->info;

        d->lookups = lk->next;
        if (lk->nodes_cb)
            lk->nodes_cb(lk->arg, -SW_ECANCELED, NULL, 0, &info);
        if (lk->get_cb)
            lk->get_cb(lk->arg, -SW_ECANCELED, NULL, 0, &info);
        if (lk->put_cb)
            lk->put_cb(lk->arg, -SW_ECANCELED, 0, &info);
        lookup_free(lk);
    }
    for (int i = 0; i < NBUCKETS; i++) {
        sw_free(d->b[i].e);
        sw_free(d->b[i].repl);
    }
    for (size_t h = 0; h < d->n_keyb; h++) {
        while (d->keys[h]) {
            struct key_entry *k = d->keys[h];

            d->keys[h] = k->next;
            for (unsigned i = 0; i < k->n; i++)
                sw_free((void *)k->recs[i].r.val);
            sw_free(k->recs);
            sw_free(k);
        }
    }
    sw_free(d->keys);
    sw_free(d->rl);
    sw_free(d);
}

int
sw_dht_set_ep(struct sw_dht *d, const char *ep)
{
    size_t n = strnlen(ep, SW_DHT_EP_MAX);

    if (n && !sw_dht_endpoint_valid(ep, n))
        return -SW_EINVAL;
    memset(d->self.ep, 0, sizeof(d->self.ep));
    memcpy(d->self.ep, ep, n);
    return 0;
}

const uint8_t *
sw_dht_id(const struct sw_dht *d)
{
    return d->self.id;
}

void
sw_dht_get_stats(const struct sw_dht *d, struct sw_dht_stats *out)
{
    *out = d->st;
}

static void
set_now(struct sw_dht *d, uint64_t now)
{
    if (now > d->now)
        d->now = now;
    if (d->next_sweep == 0)
        d->next_sweep = d->now + d->p.sweep_ms;
}

/* ---- starting lookups --------------------------------------------------- */

static void
lookup_start(struct sw_dht *d, struct lookup *lk)
{
    lookup_step(d, lk);
    update_wake(d);
}

int
sw_dht_find_node(struct sw_dht *d, const uint8_t target[SW_DHT_ID_BYTES], uint64_t now,
                 sw_dht_nodes_cb *cb, void *arg)
{
    struct lookup *lk;

    set_now(d, now);
    if (!(lk = lookup_new(d, LK_NODES, target)))
        return -SW_ENOMEM;
    lk->nodes_cb = cb;
    lk->arg = arg;
    lookup_start(d, lk);
    return 0;
}

int
sw_dht_get(struct sw_dht *d, const uint8_t key[SW_DHT_ID_BYTES], uint64_t now, sw_dht_get_cb *cb,
           void *arg)
{
    struct lookup *lk;
    struct key_entry *k;

    set_now(d, now);
    if (!(lk = lookup_new(d, LK_GET, key)))
        return -SW_ENOMEM;
    lk->get_cb = cb;
    lk->arg = arg;
    if ((k = store_find(d, key))) {
        for (unsigned i = 0; i < k->n; i++) {
            struct sw_dht_record r = k->recs[i].r;

            if (k->recs[i].expiry <= d->now)
                continue;
            r.ttl_s = remaining_s(d, &k->recs[i]);
            get_merge(d, lk, &r, true);
        }
    }
    lookup_start(d, lk);
    return 0;
}

int
sw_dht_put(struct sw_dht *d, const struct sw_dht_record *r, uint64_t now, sw_dht_put_cb *cb,
           void *arg)
{
    struct lookup *lk;

    set_now(d, now);
    if (r->val_len > d->p.value_max)
        return -SW_ETOOBIG;
    if (r->ttl_s == 0 || (r->val_len && !r->val))
        return -SW_EINVAL;
    if (!sw_dht_record_verify(r))
        return -SW_ESIG;
    if (!(lk = lookup_new(d, LK_PUT, r->key)))
        return -SW_ENOMEM;
    if (record_copy(&lk->rec, r) < 0) {
        d->lookups = lk->next;
        lookup_free(lk);
        return -SW_ENOMEM;
    }
    lk->put_cb = cb;
    lk->arg = arg;
    lookup_start(d, lk);
    return 0;
}

static void boot_maybe_done(struct sw_dht *d);

int
sw_dht_bootstrap(struct sw_dht *d, const char *const *eps, size_t n, uint64_t now,
                 sw_dht_nodes_cb *cb, void *arg)
{
    size_t sent = 0;

    set_now(d, now);
    if (d->booting)
        return -SW_EAGAIN;
    d->boot_cb = cb;
    d->boot_arg = arg;
    d->n_boot_nodes = 0;
    d->boot_answers = 0;
    d->boot_pending = 0;
    d->booting = true;
    for (size_t i = 0; i < n; i++) {
        struct sw_dht_contact to;
        struct sw_dht_msg m = {.type = SW_DHT_FIND_NODE};
        size_t len = strnlen(eps[i], SW_DHT_EP_MAX);

        memset(&to, 0, sizeof(to));
        if (!sw_dht_endpoint_valid(eps[i], len) ||
            (d->self.ep[0] && strcmp(eps[i], d->self.ep) == 0))
            continue;
        memcpy(to.ep, eps[i], len);
        memcpy(m.target, d->self.id, SW_DHT_ID_BYTES);
        if (rpc_start(d, &to, &m, RPC_BOOT, NULL, 1)) {
            d->boot_pending++;
            sent++;
        }
    }
    if (sent == 0 && sw_dht_count_contacts(d) == 0) {
        d->booting = false;
        return -SW_EINVAL;
    }
    if (sent == 0) {
        /* nothing to ask: go on from the table we have */
        d->boot_answers = 1;
        boot_maybe_done(d);
    }
    update_wake(d);
    return 0;
}

static void
boot_maybe_done(struct sw_dht *d)
{
    struct lookup *lk;

    if (!d->booting || d->boot_pending > 0)
        return;
    lk = lookup_new(d, LK_JOIN, d->self.id);
    if (!lk) {
        d->booting = false;
        return;
    }
    lk->nodes_cb = d->boot_cb;
    lk->arg = d->boot_arg;
    for (unsigned i = 0; i < d->n_boot_nodes; i++)
        cand_add(d, lk, &d->boot_nodes[i], 2);
    if (d->boot_answers == 0 && lk->n_cands == 0) {
        /* nobody answered: done booting, so that a later sw_dht_bootstrap
         * (a node whose every contact timed out joins again) can start */
        d->booting = false;
        lookup_finish(d, lk, -SW_ETIMEDOUT);
    } else
        lookup_step(d, lk);
}

/* ---- input -------------------------------------------------------------- */

static bool
rl_take(uint64_t *milli, uint64_t *last, uint32_t rate, uint32_t burst, uint64_t now)
{
    uint64_t el = now > *last ? now - *last : 0, cap = (uint64_t)burst * 1000;

    if (el > 1000000000ULL)
        el = 1000000000ULL;
    *milli = SW_MIN(cap, *milli + el * rate);
    *last = now;
    if (*milli < 1000)
        return false;
    *milli -= 1000;
    return true;
}

static bool
rate_ok(struct sw_dht *d, const uint8_t *id)
{
    uint64_t h;
    struct rl_slot *s;

    crypto_shorthash((uint8_t *)&h, id, SW_DHT_ID_BYTES, d->hkey);
    s = &d->rl[h % RL_SLOTS];
    if (!s->used || memcmp(s->id, id, SW_DHT_ID_BYTES) != 0) {
        memcpy(s->id, id, SW_DHT_ID_BYTES);
        s->used = true;
        s->last = d->now;
        s->milli = (uint64_t)d->p.rl_burst * 1000;
    }
    if (!rl_take(&s->milli, &s->last, d->p.rl_rate, d->p.rl_burst, d->now))
        return false;
    return rl_take(&d->rl_milli, &d->rl_last, d->p.rl_global_rate, d->p.rl_global_burst, d->now);
}

static void
serve_values(struct sw_dht *d, const struct sw_dht_contact *from, const struct sw_dht_msg *q,
             struct sw_dht_msg *m)
{
    struct sw_dht_record *out = NULL;
    struct key_entry *k = store_find(d, q->target);
    size_t budget = SW_DHT_REPLY_BUDGET, n = 0;
    unsigned i = 0;
    bool found;

    if (k) {
        out = sw_calloc(k->n ? k->n : 1, sizeof(*out));
        if (!out)
            k = NULL;
    }
    if (k && q->has_after) {
        i = store_pos(k, q->after, &found);
        if (found)
            i++;
    }
    for (; k && i < k->n; i++) {
        const struct stored *s = &k->recs[i];
        size_t cost = s->r.val_len + REC_OVERHEAD;

        if (s->expiry <= d->now)
            continue;
        if (n > 0 && cost > budget) {
            m->more = true;
            break;
        }
        budget -= SW_MIN(cost, budget);
        out[n] = s->r;
        out[n].ttl_s = remaining_s(d, s);
        n++;
    }
    m->recs = out;
    m->n_recs = n;
    send_msg(d, from, m);
    sw_free(out);
}

static void
serve(struct sw_dht *d, const struct sw_dht_contact *from, const struct sw_dht_msg *q)
{
    struct sw_dht_contact nodes[SW_DHT_K_MAX];
    struct sw_dht_msg m = {.type = q->type + 1, .tid = q->tid};

    switch (q->type) {
    case SW_DHT_PING:
        break;
    case SW_DHT_FIND_NODE:
    case SW_DHT_FIND_VALUE:
        m.nodes = nodes;
        m.n_nodes = closest(d, q->target, from->id, nodes, d->p.k);
        if (q->type == SW_DHT_FIND_VALUE) {
            serve_values(d, from, q, &m);
            return;
        }
        break;
    case SW_DHT_STORE:
        m.status = store_put(d, &q->recs[0]);
        if (m.status == SW_DHT_ST_OK) {
            d->st.stored++;
        } else {
            char h[17];

            d->st.store_refused++;
            SW_LOG_RATELIMITED(SW_LOG_INFO, 10000, "dht: refused a record from %s: status %u",
                               hex8(from->id, h), m.status);
        }
        break;
    }
    send_msg(d, from, &m);
}

static bool
msg_valid(const struct sw_dht_msg *m)
{
    size_t eplen = strnlen(m->ep, SW_DHT_EP_MAX);

    if (m->type < SW_DHT_TYPE_MIN || m->type > SW_DHT_TYPE_MAX)
        return false;
    if (eplen == SW_DHT_EP_MAX || (eplen && !sw_dht_endpoint_valid(m->ep, eplen)))
        return false;
    if (m->n_nodes > SW_DHT_K_MAX || m->n_recs > SW_DHT_PUBLISHERS_MAX)
        return false;
    if ((m->n_nodes && !m->nodes) || (m->n_recs && !m->recs))
        return false;
    if (m->type == SW_DHT_STORE && m->n_recs != 1)
        return false;
    return true;
}

static void
drop_malformed(struct sw_dht *d, const uint8_t *id, const char *why)
{
    char h[17];

    d->st.drop_malformed++;
    SW_LOG_RATELIMITED(SW_LOG_WARN, 10000, "dht: dropped a message from %s: %s", hex8(id, h), why);
}

static void
on_reply(struct sw_dht *d, struct rpc *r, const struct sw_dht_contact *from,
         const struct sw_dht_msg *m)
{
    static const struct sw_dht_msg empty = {.type = SW_DHT_VALUES};
    struct lookup *lk = r->lk;
    struct cand *c;

    switch (r->why) {
    case RPC_PING:
        break;
    case RPC_BOOT:
        d->boot_answers++;
        for (size_t i = 0; i < m->n_nodes && d->n_boot_nodes < SHORTLIST; i++)
            d->boot_nodes[d->n_boot_nodes++] = m->nodes[i];
        d->boot_pending--;
        boot_maybe_done(d);
        break;
    case RPC_STORE:
        if (lk)
            put_store_done(d, lk, m->status);
        break;
    case RPC_LOOKUP:
        if (!lk)
            break;
        lk->inflight--;
        c = cand_find(lk, from->id);
        if (m->type == SW_DHT_VALUES) {
            /* a page must start after the cursor we sent */
            bool forward = m->n_recs > 0 &&
                           (!r->has_after || memcmp(m->recs[0].pub, r->after, SW_DHT_PK_BYTES) > 0);

            if (r->has_after && !forward && m->n_recs > 0) {
                drop_malformed(d, from->id, "VALUES page does not move forward");
                m = &empty;
            }
            for (size_t i = 0; i < m->n_recs; i++)
                get_merge(d, lk, &m->recs[i], false);
            if (m->more && forward && c && ++c->pages < MAX_PAGES &&
                lookup_query(d, lk, c, m->recs[m->n_recs - 1].pub)) {
                lk->info.queries--; /* a page, not a new query */
                return;
            }
        }
        for (size_t i = 0; i < m->n_nodes; i++)
            cand_add(d, lk, &m->nodes[i], r->depth + 1u);
        if ((c = cand_find(lk, from->id)))
            c->state = C_DONE;
        lookup_progress(d, lk);
        lookup_step(d, lk);
        break;
    }
}

static void
on_timeout(struct sw_dht *d, struct rpc *r)
{
    struct lookup *lk = r->lk;
    struct cand *c;

    d->st.rpc_timeouts++;
    if (r->has_id)
        rt_failed(d, r->id);
    switch (r->why) {
    case RPC_PING:
        break;
    case RPC_BOOT:
        d->boot_pending--;
        boot_maybe_done(d);
        break;
    case RPC_STORE:
        if (lk)
            put_store_done(d, lk, 0xffff);
        break;
    case RPC_LOOKUP:
        if (!lk)
            break;
        lk->inflight--;
        lk->info.failures++;
        if ((c = cand_find(lk, r->id)))
            c->state = C_FAILED;
        lookup_step(d, lk);
        break;
    }
}

static const int reply_of[] = {
    [SW_DHT_PING - SW_DHT_TYPE_MIN] = SW_DHT_PONG,
    [SW_DHT_FIND_NODE - SW_DHT_TYPE_MIN] = SW_DHT_NODES,
    [SW_DHT_FIND_VALUE - SW_DHT_TYPE_MIN] = SW_DHT_VALUES,
    [SW_DHT_STORE - SW_DHT_TYPE_MIN] = SW_DHT_STORED,
};

int
sw_dht_input(struct sw_dht *d, const uint8_t pk[SW_DHT_PK_BYTES], const struct sw_dht_msg *m,
             uint64_t now)
{
    struct sw_dht_contact from;
    int err = 0;

    set_now(d, now);
    d->st.rx++;
    memset(&from, 0, sizeof(from));
    memcpy(from.pk, pk, SW_DHT_PK_BYTES);
    sw_dht_id_of(from.id, pk);
    if (!msg_valid(m)) {
        drop_malformed(d, from.id, "invalid message");
        err = -SW_EMSG;
        goto out;
    }
    if (memcmp(from.id, d->self.id, SW_DHT_ID_BYTES) == 0) {
        drop_malformed(d, from.id, "our own id");
        err = -SW_EMSG;
        goto out;
    }
    memcpy(from.ep, m->ep, SW_DHT_EP_MAX);
    if ((m->type & 1) == 0) {
        if (!rate_ok(d, from.id)) {
            char h[17];

            d->st.drop_ratelimit++;
            SW_LOG_RATELIMITED(SW_LOG_WARN, 10000, "dht: rate limit: dropped a request from %s",
                               hex8(from.id, h));
            err = -SW_EAGAIN;
            goto out;
        }
        d->st.rx_requests++;
        if (from.ep[0])
            rt_seen(d, &from);
        serve(d, &from, m);
    } else {
        struct rpc **pp = &d->rpcs, *r;

        while (*pp && (*pp)->tid != m->tid)
            pp = &(*pp)->next;
        r = *pp;
        if (!r || (r->has_id && memcmp(r->id, from.id, SW_DHT_ID_BYTES) != 0) ||
            reply_of[r->type - SW_DHT_TYPE_MIN] != m->type) {
            d->st.drop_unsolicited++;
            err = -SW_EPROTO;
            goto out;
        }
        *pp = r->next;
        d->st.rx_replies++;
        if (!from.ep[0] && r->why == RPC_BOOT)
            memcpy(from.ep, r->ep, SW_DHT_EP_MAX);
        if (from.ep[0])
            rt_seen(d, &from);
        on_reply(d, r, &from, m);
        sw_free(r);
    }
out:
    reap(d);
    d->wake_now = false;
    update_wake(d);
    return err;
}

int
sw_dht_input_body(struct sw_dht *d, const uint8_t pk[SW_DHT_PK_BYTES], int type, const void *body,
                  size_t len, uint64_t now)
{
    struct sw_dht_msg m;
    int err;

    if (type < SW_DHT_TYPE_MIN || type > SW_DHT_TYPE_MAX ||
        (err = sw_dht_msg_decode(&m, type, body, len)) < 0) {
        uint8_t id[SW_DHT_ID_BYTES];

        set_now(d, now);
        d->st.rx++;
        sw_dht_id_of(id, pk);
        drop_malformed(d, id, "malformed body");
        return -SW_EMSG;
    }
    err = sw_dht_input(d, pk, &m, now);
    sw_dht_msg_release(&m);
    return err;
}

/* ---- tick --------------------------------------------------------------- */

static void
random_in_bucket(struct sw_dht *d, int bi, uint8_t *out)
{
    rng_fill(d, out, SW_DHT_ID_BYTES);
    for (int bit = 0; bit <= bi; bit++) {
        uint8_t mask = (uint8_t)(0x80 >> (bit & 7));
        uint8_t want = d->self.id[bit / 8] & mask;

        if (bit == bi)
            want ^= mask;
        out[bit / 8] = (uint8_t)((out[bit / 8] & ~mask) | want);
    }
}

uint64_t
sw_dht_tick(struct sw_dht *d, uint64_t now)
{
    int deepest;

    set_now(d, now);
    d->wake_now = false;
    /* expired requests: detach them all, then handle them (handlers may send) */
    {
        struct rpc **pp = &d->rpcs, *expired = NULL, **tail = &expired;

        while (*pp) {
            struct rpc *r = *pp;

            if (r->deadline > d->now) {
                pp = &r->next;
                continue;
            }
            *pp = r->next;
            r->next = NULL;
            *tail = r;
            tail = &r->next;
        }
        while (expired) {
            struct rpc *r = expired;

            expired = r->next;
            on_timeout(d, r);
            sw_free(r);
        }
    }
    /* question least-recently-seen contacts; refresh idle buckets */
    deepest = deepest_bucket(d);
    for (int bi = 0; bi <= deepest; bi++) {
        struct bucket *b = &d->b[bi];

        if (b->n && !b->e[0].pinging && questionable(d, &b->e[0]))
            ping(d, &b->e[0]);
        if (!d->booting && b->refreshed + d->p.refresh_ms <= d->now) {
            uint8_t target[SW_DHT_ID_BYTES];
            struct lookup *lk;

            random_in_bucket(d, bi, target);
            b->refreshed = d->now;
            if ((lk = lookup_new(d, LK_REFRESH, target)))
                lookup_step(d, lk);
        }
    }
    if (d->now >= d->next_sweep) {
        store_sweep(d, NULL);
        d->next_sweep = d->now + d->p.sweep_ms;
    }
    reap(d);
    d->wake_now = false;
    for (struct lookup *lk = d->lookups; lk; lk = lk->next)
        if (lk->done)
            d->wake_now = true;
    update_wake(d);
    return d->next_wake;
}
