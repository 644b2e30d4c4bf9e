/*
 * transport.c - ROUTER/DEALER sockets under uv_poll.  Contracts are in
 * transport.h.
 *
 * Every socket is a struct sock.  Outgoing messages are built as complete
 * multipart zmq_msg_t arrays (struct out_msg) and queued on their socket;
 * sock_drain() (from the loop: uv_poll, uv_idle) both sends what ZeroMQ
 * accepts and receives what is there, looping on ZMQ_EVENTS until nothing
 * moves (ZMQ_FD is edge-triggered); sock_kick() (from the send functions and
 * retries) only sends, so that no callback runs inside an API call.
 * Payloads are shared by reference (struct payload_ref) between zmq_msg_t
 * (zmq_msg_init_data, no copy) and the request that may retry them.
 */
#include "sw.h"

#include "transport.h"

#include "hex.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#define DRAIN_BUDGET 64   /* messages received per socket per drain */
#define TICK_MS 10
#define MAX_PARTS 6       /* routing id + mark + relay key + envelope + signature + payload */
#define RELAY_BUCKET 0xfffffff0u /* the relay limit's buckets, beside the types' (never a type) */
#define MAX_DEALERS 1024
#define MAX_LIMITS 32     /* types with a rate limit */

struct payload_ref {
    atomic_int refs;
    void *data;
    size_t len;
    sw_payload_free_cb *free_cb;
    void *free_arg;
    uint8_t hash[SW_WIRE_HASH_BYTES];
};

struct out_msg {
    struct out_msg *next;
    uint64_t rid;                  /* a request's id; 0: one-way or a reply */
    bool request;
    size_t relay_bytes;            /* a relayed message: its bytes (counted in t->relay_queued) */
    int nparts, sent;              /* parts handed to ZeroMQ so far */
    zmq_msg_t parts[MAX_PARTS];
};

struct sock {
    struct sw_transport *t;
    void *z;
    uv_poll_t poll;
    bool router, closing, draining, again, more_input;
    bool bulk;                     /* DEALER: bulk-class requests only (transport.h, Bulk) */
    char endpoint[SW_TRANSPORT_MAX_ENDPOINT];
    struct out_msg *qhead, *qtail;
    size_t qlen;
    uint64_t last_used;
    uint64_t drain_until;          /* DEALER: what ZeroMQ took may be on its way till then */
    int pending;                   /* requests waiting on this DEALER */
    struct sock *next;             /* DEALER list */
};

struct req {
    struct req *next;
    uint64_t rid;
    struct sock *dealer;
    uint32_t type;
    uint8_t *body;
    size_t body_len;
    struct payload_ref *pl;        /* NULL: no payload */
    uint64_t deadline, timeout_ms;
    int retries_left;
    bool via_key;                  /* sent to key's connection on the ROUTER (dealer: the ROUTER) */
    bool relay;                    /* sent through a relay to key (dealer: the relay's) */
    uint8_t key[SW_IDENTITY_PK_BYTES];
    sw_transport_response_cb *cb;
    void *arg;
};

struct handler {
    uint32_t type;
    sw_transport_handler_cb *cb;
    void *arg;
};

/* A rate-limited type: a bucket per (sender key, type), one for all keys. */
struct limit {
    uint32_t type;
    double rate, burst;            /* per key: tokens per second, depth */
    double g_rate, g_burst;        /* all keys together */
    double g_tokens;
    uint64_t g_last;               /* ms of the last refill */
    uint64_t drops;
};

/*
 * The per-key buckets of every limited type, in one bounded table: keyed
 * SipHash of (sender, type) -> bucket, chained, in two use-ordered lists
 * (a segmented LRU).  A new key enters on probation; heard again after
 * PROMOTE_MS it is established (at most 3/4 of the table; the least
 * recently used established one goes back on probation to make room).  A
 * full table reuses the least recently used bucket on probation first, so a
 * flood of fresh keys cycles through the probation part and leaves the
 * established peers' buckets alone.  Only keys on probation draw on the
 * type's global bucket: fresh keys cannot each spend a full burst without
 * bound, and however many there are, they cannot starve established peers.
 */
#define PROMOTE_MS 1000
enum { SEG_PROB = 0, SEG_EST = 1 };

struct bucket {
    uint64_t key;
    double tokens;
    uint64_t last;                 /* ms of the last refill */
    uint64_t born;                 /* ms it was created */
    int32_t next;                  /* hash chain */
    int32_t prev_u, next_u;        /* its segment's use order: head most recent */
    int seg;
};

struct buckets {
    size_t cap, n, n_est;
    int32_t *heads;                /* cap chains */
    struct bucket *b;
    int32_t head_u[2], tail_u[2];  /* per segment */
    uint8_t hkey[crypto_shorthash_KEYBYTES];
};

/* A key's connection on the ROUTER (transport.h, Routes by key). */
struct keyroute {
    uint8_t pk[SW_IDENTITY_PK_BYTES];
    uint8_t id[SW_TRANSPORT_MAX_ROUTE];
    size_t len;
    uint64_t heard;                /* ms of its last message */
    uint64_t born;                 /* ms it was bound (heard PROMOTE_MS later: established) */
};

struct sw_transport {
    uv_loop_t *loop;
    void *ctx;
    bool own_ctx, closing;
    struct sw_wire wire;
    struct sw_transport_opts o;
    struct sock *router;           /* NULL until bound */
    struct sock *dealers;
    size_t n_dealers;
    struct req *reqs;
    size_t n_reqs;
    uint64_t next_rid;
    struct handler *handlers;
    size_t n_handlers;
    sw_transport_admit_cb *admit;  /* NULL: every verified message passes */
    void *admit_arg;
    struct limit limits[MAX_LIMITS];
    size_t n_limits;
    struct buckets bk;
    struct keyroute *kr;           /* o.max_routes entries, n_kr used */
    size_t n_kr;
    struct sw_transport_route_stats rst;
    bool relay_on;                 /* forward relayed messages (sw_transport_set_relay) */
    struct limit relay_lim;
    struct sw_transport_relay_stats rly;
    size_t relay_queued;           /* relayed bytes in the ROUTER's own queue */
    uv_timer_t tick;
    uv_idle_t idle;
    int open_handles;
    sw_transport_close_cb *close_cb;
    void *close_arg;
    uint8_t env[SW_WIRE_MAX_ENVELOPE]; /* scratch for sealing */
};

static void sock_drain(struct sock *s);
static void sock_kick(struct sock *s);

/* A numeric address, IPv4 as its IPv4-mapped IPv6 form, into out; false when
 * it is not one. */
static bool
addr16(const char *s, unsigned char out[16])
{
    unsigned char v4[4];

    if (inet_pton(AF_INET6, s, out) == 1)
        return true;
    if (inet_pton(AF_INET, s, v4) != 1)
        return false;
    memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    memcpy(out + 12, v4, 4);
    return true;
}
static void idle_cb(uv_idle_t *h);

/* ---- payload references ---- */

static void
payload_unref(struct payload_ref *p)
{
    if (p && atomic_fetch_sub(&p->refs, 1) == 1) {
        if (p->free_cb)
            p->free_cb(p->data, p->free_arg);
        sw_free(p);
    }
}

static void
zmq_free_cb(void *data, void *hint)
{
    payload_unref(hint);
}

static void
free_user_payload(void *data, void *arg)
{
    sw_free(data);
}

/* Take the caller's payload: a reference holding it (one ref), or NULL with *err. */
static struct payload_ref *
payload_take(const struct sw_payload *in, size_t max, int *err)
{
    struct payload_ref *p = NULL;

    *err = 0;
    if (!in || in->len == 0) {
        if (in && in->free_cb)
            in->free_cb((void *)in->data, in->free_arg);
        return NULL;
    }
    if (in->len > max) {
        *err = -SW_ETOOBIG;
        goto fail;
    }
    p = sw_calloc(1, sizeof(*p));
    if (!p) {
        *err = -SW_ENOMEM;
        goto fail;
    }
    atomic_init(&p->refs, 1);
    p->len = in->len;
    if (in->free_cb) {
        p->data = (void *)in->data;
        p->free_cb = in->free_cb;
        p->free_arg = in->free_arg;
    } else {
        p->data = sw_malloc(in->len);
        if (!p->data) {
            sw_free(p);
            *err = -SW_ENOMEM;
            return NULL;
        }
        memcpy(p->data, in->data, in->len);
        p->free_cb = free_user_payload;
    }
    if (in->hash)
        memcpy(p->hash, in->hash, SW_WIRE_HASH_BYTES);
    else
        sw_wire_payload_hash(p->hash, p->data, p->len);
    return p;
fail:
    if (in->free_cb)
        in->free_cb((void *)in->data, in->free_arg);
    return NULL;
}

/* ---- outgoing messages ---- */

static void
out_free(struct out_msg *m)
{
    for (int i = m->sent; i < m->nparts; i++)
        zmq_msg_close(&m->parts[i]);
    sw_free(m);
}

/* Append a frame holding a copy of data[len] to m; false when out of memory. */
static bool
part_add(struct out_msg *m, const void *data, size_t len)
{
    zmq_msg_t *p = &m->parts[m->nparts];

    if (zmq_msg_init_size(p, len) != 0)
        return false;
    memcpy(zmq_msg_data(p), data, len);
    m->nparts++;
    return true;
}

/*
 * Seal and build [route]?[mark]?[key]?[env][sig][payload]? for socket s: mark
 * 0 (none), SW_TRANSPORT_REVERSE or a relay mark, then the relay's key frame
 * when key is not NULL.  On success the message holds its own reference to pl.
 */
static int
out_build(struct sw_transport *t, const struct sw_transport_route *route, uint8_t mark,
          const uint8_t *key, uint32_t type, uint64_t rid, const void *body, size_t body_len,
          struct payload_ref *pl, struct out_msg **out)
{
    uint8_t sig[SW_WIRE_SIG_BYTES];
    struct out_msg *m;
    size_t env_len;
    int err;

    err = sw_wire_seal(&t->wire, type, rid, body, body_len, pl ? pl->hash : NULL,
                       pl ? pl->len : 0, t->env, sizeof(t->env), &env_len, sig);
    if (err < 0)
        return err;
    m = sw_calloc(1, sizeof(*m));
    if (!m)
        return -SW_ENOMEM;
    m->rid = rid;
    if ((route && !part_add(m, route->id, route->len)) || (mark && !part_add(m, &mark, 1)) ||
        (key && !part_add(m, key, SW_IDENTITY_PK_BYTES)) || !part_add(m, t->env, env_len) ||
        !part_add(m, sig, sizeof(sig)))
        goto nomem;
    if (pl) {
        atomic_fetch_add(&pl->refs, 1);
        if (zmq_msg_init_data(&m->parts[m->nparts], pl->data, pl->len, zmq_free_cb, pl) != 0) {
            payload_unref(pl);
            goto nomem;
        }
        m->nparts++;
    }
    *out = m;
    return 0;
nomem:
    out_free(m);
    return -SW_ENOMEM;
}

static void
sock_enqueue(struct sock *s, struct out_msg *m)
{
    m->next = NULL;
    if (s->qtail)
        s->qtail->next = m;
    else
        s->qhead = m;
    s->qtail = m;
    s->qlen++;
}

/* m (after prev in s's queue) is done with: out of the queue. */
static void
sock_unlink(struct sock *s, struct out_msg *prev, struct out_msg *m)
{
    if (prev)
        prev->next = m->next;
    else
        s->qhead = m->next;
    if (s->qtail == m)
        s->qtail = prev;
    s->qlen--;
    s->t->relay_queued -= m->relay_bytes;
    out_free(m);
}

/*
 * Take a request's try out of the queue when ZeroMQ has none of it yet: a
 * try that timed out is worth nothing to the peer, and a dead peer's queue
 * would otherwise fill with them (new requests refused with -SW_EAGAIN, and
 * the DEALER kept open for them, transport.h, Requests).
 */
static void
sock_unqueue(struct sock *s, uint64_t rid)
{
    struct out_msg *prev = NULL;

    for (struct out_msg *m = s->qhead; m; prev = m, m = m->next) {
        if (!m->request || m->rid != rid || m->sent > 0)
            continue;
        sock_unlink(s, prev, m);
        return;
    }
}

/* Hand m's parts to ZeroMQ from m->sent on: 1 when it went out whole (or
 * was dropped: a peer gone), 0 when ZeroMQ took no more (HWM). */
static int
send_parts(struct sock *s, struct out_msg *m)
{
    while (m->sent < m->nparts) {
        int flags = ZMQ_DONTWAIT | (m->sent + 1 < m->nparts ? ZMQ_SNDMORE : 0);

        if (zmq_msg_send(&m->parts[m->sent], s->z, flags) < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 0; /* HWM: wait for POLLOUT */
            /* EHOSTUNREACH (peer gone) or worse: drop the message */
            SW_LOG_RATELIMITED(SW_LOG_INFO, 1000, "cannot send to '%s': %s",
                               s->router ? "router peer" : s->endpoint, zmq_strerror(errno));
            return 1;
        }
        m->sent++;
    }
    return 1;
}

/* A ROUTER's queue holds messages to many peers: one whose peer's pipe is
 * full (HWM) holds back the later ones to that peer only (see Back-pressure
 * in transport.h).  A message whose first parts ZeroMQ took goes on before
 * any other: nothing may come between its parts. */
static int
router_flush(struct sock *s)
{
    const void *held[SW_TRANSPORT_HELD_PEERS];
    size_t held_len[SW_TRANSPORT_HELD_PEERS];
    struct out_msg *prev, *m, *next;
    int nheld = 0, sent = 0;

    for (prev = NULL, m = s->qhead; m; prev = m, m = m->next) {
        if (m->sent == 0)
            continue;
        if (!send_parts(s, m))
            return 0;
        sock_unlink(s, prev, m);
        sent++;
        break;
    }
    for (prev = NULL, m = s->qhead; m; m = next) {
        const void *id = zmq_msg_data(&m->parts[0]);
        size_t len = zmq_msg_size(&m->parts[0]);
        bool skip = false;

        next = m->next;
        for (int i = 0; i < nheld && !skip; i++)
            skip = held_len[i] == len && !memcmp(held[i], id, len);
        if (skip) {
            prev = m;
            continue;
        }
        if (!send_parts(s, m)) {
            if (m->sent > 0 || nheld == SW_TRANSPORT_HELD_PEERS)
                return sent;
            held[nheld] = id;
            held_len[nheld++] = len;
            prev = m;
            continue;
        }
        sock_unlink(s, prev, m);
        sent++;
    }
    return sent;
}

/* Hand queued messages to ZeroMQ; returns how many went out completely. */
static int
sock_flush(struct sock *s)
{
    int sent = 0;

    if (s->router)
        return router_flush(s);
    while (s->qhead) {
        struct out_msg *m = s->qhead;
        size_t bytes = 0;
        uint64_t now;

        for (int i = m->sent; i < m->nparts; i++) /* a DEALER's drain time */
            bytes += zmq_msg_size(&m->parts[i]);
        if (!send_parts(s, m))
            return sent;
        now = uv_now(s->t->loop);
        if (m->sent == m->nparts)
            s->drain_until = SW_MAX(s->drain_until, now) +
                             (uint64_t)bytes * 1000 / SW_TRANSPORT_DRAIN_BPS;
        sock_unlink(s, NULL, m);
        sent++;
    }
    return sent;
}

/* ---- receiving ---- */

static struct handler *
handler_find(struct sw_transport *t, uint32_t type)
{
    for (size_t i = 0; i < t->n_handlers; i++)
        if (t->handlers[i].type == type)
            return &t->handlers[i];
    return NULL;
}

static struct req *
req_unlink(struct sw_transport *t, uint64_t rid, struct sock *dealer)
{
    for (struct req **pp = &t->reqs; *pp; pp = &(*pp)->next) {
        struct req *r = *pp;

        if (r->rid == rid && (!dealer || r->dealer == dealer)) {
            *pp = r->next;
            t->n_reqs--;
            if (r->dealer)
                r->dealer->pending--;
            return r;
        }
    }
    return NULL;
}

static struct req *
req_find(struct sw_transport *t, uint64_t rid, struct sock *dealer)
{
    for (struct req *r = t->reqs; r; r = r->next)
        if (r->rid == rid && r->dealer == dealer)
            return r;
    return NULL;
}

static void
req_free(struct req *r)
{
    payload_unref(r->pl);
    sw_free(r->body);
    sw_free(r);
}

/* ---- rate limits ---- */

static struct limit *
limit_find(struct sw_transport *t, uint32_t type)
{
    for (size_t i = 0; i < t->n_limits; i++)
        if (t->limits[i].type == type)
            return &t->limits[i];
    return NULL;
}

static int
buckets_init(struct buckets *bk, size_t cap)
{
    bk->cap = cap;
    bk->n = 0;
    bk->heads = sw_malloc(cap * sizeof(*bk->heads));
    bk->b = sw_calloc(cap, sizeof(*bk->b));
    if (!bk->heads || !bk->b) {
        sw_free(bk->heads);
        sw_free(bk->b);
        bk->heads = NULL;
        bk->b = NULL;
        return -SW_ENOMEM;
    }
    memset(bk->heads, 0xff, cap * sizeof(*bk->heads));
    bk->head_u[0] = bk->head_u[1] = bk->tail_u[0] = bk->tail_u[1] = -1;
    bk->n_est = 0;
    randombytes_buf(bk->hkey, sizeof(bk->hkey));
    return 0;
}

static void
use_unlink(struct buckets *bk, int32_t i)
{
    struct bucket *b = &bk->b[i];

    if (b->prev_u >= 0)
        bk->b[b->prev_u].next_u = b->next_u;
    else
        bk->head_u[b->seg] = b->next_u;
    if (b->next_u >= 0)
        bk->b[b->next_u].prev_u = b->prev_u;
    else
        bk->tail_u[b->seg] = b->prev_u;
    bk->n_est -= b->seg == SEG_EST;
}

static void
use_push(struct buckets *bk, int32_t i, int seg)
{
    struct bucket *b = &bk->b[i];

    b->seg = seg;
    b->prev_u = -1;
    b->next_u = bk->head_u[seg];
    if (bk->head_u[seg] >= 0)
        bk->b[bk->head_u[seg]].prev_u = i;
    bk->head_u[seg] = i;
    if (bk->tail_u[seg] < 0)
        bk->tail_u[seg] = i;
    bk->n_est += seg == SEG_EST;
}

/* A hit on bucket i: to the head of its segment, promoted when established. */
static void
bucket_touch(struct buckets *bk, int32_t i, uint64_t now)
{
    int seg = bk->b[i].seg;

    use_unlink(bk, i);
    if (seg == SEG_PROB && now - bk->b[i].born >= PROMOTE_MS) {
        if (bk->n_est >= bk->cap * 3 / 4 && bk->tail_u[SEG_EST] >= 0) {
            int32_t old = bk->tail_u[SEG_EST];

            use_unlink(bk, old);
            use_push(bk, old, SEG_PROB);
        }
        seg = SEG_EST;
    }
    use_push(bk, i, seg);
}

/* The bucket of (pk, type), created full on probation when absent. */
static struct bucket *
bucket_get(struct buckets *bk, const uint8_t *pk, uint32_t type, double burst, uint64_t now)
{
    uint8_t in[SW_IDENTITY_PK_BYTES + 4], h[crypto_shorthash_BYTES];
    uint64_t key;
    int32_t i, *link;

    memcpy(in, pk, SW_IDENTITY_PK_BYTES);
    memcpy(in + SW_IDENTITY_PK_BYTES, &type, 4);
    /* keyed: a remote cannot aim its keys at one chain */
    crypto_shorthash(h, in, sizeof(in), bk->hkey);
    memcpy(&key, h, sizeof(key));
    for (i = bk->heads[key % bk->cap]; i >= 0; i = bk->b[i].next) {
        if (bk->b[i].key == key) {
            bucket_touch(bk, i, now);
            return &bk->b[i];
        }
    }
    if (bk->n < bk->cap) {
        i = (int32_t)bk->n++;
    } else {
        i = bk->tail_u[SEG_PROB] >= 0 ? bk->tail_u[SEG_PROB] : bk->tail_u[SEG_EST];
        use_unlink(bk, i);
        link = &bk->heads[bk->b[i].key % bk->cap];
        while (*link != i)
            link = &bk->b[*link].next;
        *link = bk->b[i].next;
    }
    bk->b[i].key = key;
    bk->b[i].tokens = burst;
    bk->b[i].last = now;
    bk->b[i].born = now;
    bk->b[i].next = bk->heads[key % bk->cap];
    bk->heads[key % bk->cap] = i;
    use_push(bk, i, SEG_PROB);
    return &bk->b[i];
}

static void
refill(double *tokens, uint64_t *last, double rate, double burst, uint64_t now)
{
    if (now > *last)
        *tokens = SW_MIN(burst, *tokens + (double)(now - *last) * rate / 1000.0);
    *last = now;
}

/* l's global bucket: rate_per_s, depth burst (at least 1), full now. */
static void
limit_global_set(struct sw_transport *t, struct limit *l, double rate_per_s, double burst)
{
    l->g_rate = rate_per_s;
    l->g_burst = SW_MAX(burst, 1.0);
    l->g_tokens = l->g_burst;
    l->g_last = uv_now(t->loop);
}

/*
 * True when a message of hdr's type from hdr's sender is within its limits
 * (and takes a token from its bucket, and from the global one while the key
 * is on probation); false counts and logs the drop.  The key's own bucket is
 * asked first, so one flooding key does not spend the tokens that all keys
 * share.
 */
static bool
limit_take(struct sw_transport *t, struct limit *l, const struct sw_wire_hdr *hdr, uint32_t btype)
{
    uint64_t now = uv_now(t->loop);
    struct bucket *b;
    char hex[17];
    bool prob;

    if (!l || !t->bk.b)
        return true;
    b = bucket_get(&t->bk, hdr->sender, btype, l->burst, now);
    prob = b->seg == SEG_PROB;
    refill(&b->tokens, &b->last, l->rate, l->burst, now);
    refill(&l->g_tokens, &l->g_last, l->g_rate, l->g_burst, now);
    if (b->tokens >= 1.0 && (!prob || l->g_tokens >= 1.0)) {
        b->tokens -= 1.0;
        l->g_tokens -= prob ? 1.0 : 0.0;
        return true;
    }
    l->drops++;
    t->wire.stats.drops[SW_WIRE_DROP_RATELIMIT]++;
    SW_LOG_RATELIMITED(SW_LOG_WARN, 1000, "dropped %smessage type %u from %s...: %s rate limit",
                       btype == RELAY_BUCKET ? "relayed " : "", (unsigned)hdr->type,
                       sw_identity_hex(hex, hdr->sender, 8),
                       b->tokens < 1.0 ? "per-key" : "global");
    return false;
}

static bool
limit_ok(struct sw_transport *t, const struct sw_wire_hdr *hdr)
{
    return limit_take(t, limit_find(t, hdr->type), hdr, hdr->type);
}

/* ---- routes by key ---- */

static struct keyroute *
keyroute_find(const struct sw_transport *t, const uint8_t *pk)
{
    for (size_t i = 0; i < t->n_kr; i++)
        if (memcmp(t->kr[i].pk, pk, SW_IDENTITY_PK_BYTES) == 0)
            return &t->kr[i];
    return NULL;
}

/*
 * A verified message of pk came on the ROUTER connection id: the key's
 * route is now that connection (transport.h, Routes by key).  Only the
 * sender's own entry changes; a full table forgets the least recently heard.
 */
static void
keyroute_bind(struct sw_transport *t, const uint8_t *pk, const uint8_t *id, size_t len)
{
    struct keyroute *k = keyroute_find(t, pk);
    char hex[17];

    if (!t->kr || len == 0 || len > SW_TRANSPORT_MAX_ROUTE)
        return;
    if (k) {
        if (k->len != len || memcmp(k->id, id, len) != 0) {
            t->rst.moved++;
            SW_LOG_RATELIMITED(SW_LOG_DEBUG, 1000, "key %s... now on another connection",
                               sw_identity_hex(hex, pk, 8));
        }
    } else {
        if (t->n_kr < t->o.max_routes) {
            k = &t->kr[t->n_kr++];
        } else {
            /* the least recently heard key on probation (bound, not heard a
             * second later yet) goes first: a flood of fresh keys pushes out
             * only its own kind */
            struct keyroute *lru = &t->kr[0];

            k = NULL;
            for (size_t i = 0; i < t->n_kr; i++) {
                struct keyroute *c = &t->kr[i];

                if (c->heard < lru->heard)
                    lru = c;
                if (c->heard - c->born < PROMOTE_MS && (!k || c->heard < k->heard))
                    k = c;
            }
            if (!k)
                k = lru;
            t->rst.evicted++;
            SW_LOG_RATELIMITED(SW_LOG_INFO, 1000, "key routes full (%zu): forgot %s...",
                               t->n_kr, sw_identity_hex(hex, k->pk, 8));
        }
        memcpy(k->pk, pk, SW_IDENTITY_PK_BYTES);
        k->born = uv_now(t->loop);
        t->rst.bound++;
    }
    memcpy(k->id, id, len);
    k->len = len;
    k->heard = uv_now(t->loop);
}

/* The route of a "key:" endpoint into r (rid 0); -SW_ENOENT (counted) when none is known. */
static int
keyroute_get(struct sw_transport *t, const uint8_t *pk, struct sw_transport_route *r)
{
    struct keyroute *k = t->router ? keyroute_find(t, pk) : NULL;
    char hex[17];

    if (!k) {
        t->rst.noroute++;
        SW_LOG_RATELIMITED(SW_LOG_INFO, 1000, "no connection of key %s... to send on",
                           sw_identity_hex(hex, pk, 8));
        return -SW_ENOENT;
    }
    memset(r, 0, sizeof(*r));
    memcpy(r->id, k->id, k->len);
    r->len = k->len;
    return 0;
}

char *
sw_transport_key_endpoint(char *out, size_t cap, const uint8_t pk[SW_IDENTITY_PK_BYTES])
{
    char hex[2 * SW_IDENTITY_PK_BYTES + 1];

    snprintf(out, cap, "%s%s", SW_TRANSPORT_KEY_PREFIX,
             sw_identity_hex(hex, pk, SW_IDENTITY_PK_BYTES));
    return out;
}

bool
sw_transport_endpoint_is_key(const char *ep, uint8_t *pk)
{
    uint8_t k[SW_IDENTITY_PK_BYTES];
    size_t n = strlen(SW_TRANSPORT_KEY_PREFIX);

    if (!ep || strncmp(ep, SW_TRANSPORT_KEY_PREFIX, n) != 0 ||
        strnlen(ep, SW_TRANSPORT_KEY_EP_LEN + 1) != SW_TRANSPORT_KEY_EP_LEN ||
        sw_hex_decode(k, sizeof(k), ep + n) < 0)
        return false;
    if (pk)
        memcpy(pk, k, sizeof(k));
    return true;
}

int
sw_transport_relay_endpoint(char *out, size_t cap, const uint8_t pk[SW_IDENTITY_PK_BYTES],
                            const char *relay)
{
    char hex[2 * SW_IDENTITY_PK_BYTES + 1];
    int n;

    if (!relay || strncmp(relay, "tcp://", 6) != 0)
        return -SW_EINVAL;
    n = snprintf(out, cap, "%s%s@%s", SW_TRANSPORT_KEY_PREFIX,
                 sw_identity_hex(hex, pk, SW_IDENTITY_PK_BYTES), relay);
    return n < 0 || (size_t)n >= cap || (size_t)n >= SW_TRANSPORT_MAX_ENDPOINT ? -SW_EINVAL : 0;
}

bool
sw_transport_endpoint_is_relay(const char *ep, uint8_t *pk, char *relay, size_t relay_cap)
{
    char kep[SW_TRANSPORT_KEY_EP_LEN + 1];
    const char *r;

    if (!ep || strnlen(ep, SW_TRANSPORT_MAX_ENDPOINT) >= SW_TRANSPORT_MAX_ENDPOINT ||
        strnlen(ep, SW_TRANSPORT_KEY_EP_LEN + 1) <= SW_TRANSPORT_KEY_EP_LEN ||
        ep[SW_TRANSPORT_KEY_EP_LEN] != '@')
        return false;
    r = ep + SW_TRANSPORT_KEY_EP_LEN + 1;
    memcpy(kep, ep, SW_TRANSPORT_KEY_EP_LEN);
    kep[SW_TRANSPORT_KEY_EP_LEN] = '\0';
    if (!sw_transport_endpoint_is_key(kep, pk) || strncmp(r, "tcp://", 6) != 0 ||
        strlen(r) >= relay_cap)
        return false;
    memcpy(relay, r, strlen(r) + 1);
    return true;
}

int
sw_transport_set_relay(struct sw_transport *t, bool on, double rate_per_s, double burst)
{
    if (on && (!(rate_per_s > 0) || !(burst >= 1)))
        return -SW_EINVAL;
    t->relay_on = on;
    if (!on)
        return 0;
    memset(&t->relay_lim, 0, sizeof(t->relay_lim));
    t->relay_lim.type = RELAY_BUCKET;
    t->relay_lim.rate = rate_per_s;
    t->relay_lim.burst = burst;
    limit_global_set(t, &t->relay_lim, rate_per_s * SW_TRANSPORT_GLOBAL_FACTOR,
                     burst * SW_TRANSPORT_GLOBAL_FACTOR);
    return 0;
}

void
sw_transport_relay_stats(const struct sw_transport *t, struct sw_transport_relay_stats *st)
{
    *st = t->rly;
    st->ratelimited = t->relay_lim.drops;
}

bool
sw_transport_key_routed(const struct sw_transport *t, const uint8_t pk[SW_IDENTITY_PK_BYTES])
{
    return keyroute_find(t, pk) != NULL;
}

void
sw_transport_route_stats(const struct sw_transport *t, struct sw_transport_route_stats *st)
{
    *st = t->rst;
    st->keys = t->n_kr;
}

/* The mark a frame is (SW_TRANSPORT_REVERSE or a relay mark), or 0. */
static uint8_t
mark_of(zmq_msg_t *p)
{
    uint8_t c = zmq_msg_size(p) == 1 ? *(uint8_t *)zmq_msg_data(p) : 0;

    return c == SW_TRANSPORT_REVERSE || c == SW_TRANSPORT_RELAY_MSG ||
                   c == SW_TRANSPORT_RELAY_ANS ? c : 0;
}

static void
relay_drop(struct sw_transport *t, uint64_t *counter, const char *why)
{
    (*counter)++;
    SW_LOG_RATELIMITED(SW_LOG_INFO, 1000, "relay: dropped a message: %s", why);
}

/*
 * A relayed message on the ROUTER, [id][mark][to][env][sig][payload]?: when
 * this transport relays, the envelope's signature and sequence are checked
 * (the sender is the key that signed it; a replay is dropped), the sender
 * is admitted and within its relay limit, the sender's key is bound to this
 * connection, and [to's id][mark][sender][env][sig][payload]? goes out on
 * the connection of key to (transport.h, Relays).  The payload is neither
 * hashed nor copied here: the receiver checks it.
 */
static void
relay_forward(struct sock *s, zmq_msg_t *parts, int n, uint8_t mark)
{
    struct sw_transport *t = s->t;
    const struct keyroute *to;
    struct sw_wire_hdr hdr;
    struct out_msg *m;
    size_t pl_len = n == 6 ? zmq_msg_size(&parts[5]) : 0;
    size_t bytes = zmq_msg_size(&parts[3]) + pl_len;

    if (!t->relay_on) {
        relay_drop(t, &t->rly.refused, "this node does not relay");
        return;
    }
    if (zmq_msg_size(&parts[0]) > SW_TRANSPORT_MAX_ROUTE || (n == 6 && pl_len == 0)) {
        relay_drop(t, &t->rly.bad, "malformed");
        return;
    }
    if (sw_wire_open(&t->wire, zmq_msg_data(&parts[3]), zmq_msg_size(&parts[3]),
                     zmq_msg_data(&parts[4]), zmq_msg_size(&parts[4]), pl_len, &hdr) < 0) {
        relay_drop(t, &t->rly.bad, "envelope refused");
        return;
    }
    if (t->admit && !t->admit(t->admit_arg, &hdr, hdr.type)) {
        t->wire.stats.drops[SW_WIRE_DROP_ADMIT]++;
        relay_drop(t, &t->rly.bad, "sender not admitted");
        return;
    }
    if (!limit_take(t, &t->relay_lim, &hdr, RELAY_BUCKET))
        return; /* counted in relay_lim.drops */
    /* (one addressed to its own sender goes back to it: how a node checks its relay) */
    keyroute_bind(t, hdr.sender, zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]));
    if (!(to = keyroute_find(t, zmq_msg_data(&parts[2])))) {
        relay_drop(t, &t->rly.noroute, "no connection of the key it is for");
        return;
    }
    if (t->router->qlen >= t->o.max_queue || t->relay_queued + bytes > t->o.relay_queue) {
        relay_drop(t, &t->rly.full, "queue full");
        return;
    }
    if (!(m = sw_calloc(1, sizeof(*m))))
        return;
    if (part_add(m, to->id, to->len) && part_add(m, &mark, 1) &&
        part_add(m, hdr.sender, SW_IDENTITY_PK_BYTES)) {
        for (int i = 3; i < n && m->nparts == i; i++) {
            zmq_msg_init(&m->parts[i]);
            if (zmq_msg_copy(&m->parts[i], &parts[i]) == 0) /* shares the bytes */
                m->nparts++;
            else
                zmq_msg_close(&m->parts[i]);
        }
    }
    if (m->nparts != n) {
        out_free(m);
        return;
    }
    t->rly.forwarded++;
    t->rly.bytes += bytes;
    m->relay_bytes = bytes;
    t->relay_queued += bytes;
    sock_enqueue(t->router, m);
    sock_kick(t->router);
}

/*
 * Verify and dispatch one received multipart message: on the ROUTER
 * [id][env][sig][payload]? (a request or one-way message) or
 * [id][mark][env][sig][payload]? (the answer to a request sent to a key's
 * connection); on a DEALER [env][sig][payload]? (a response) or
 * [mark][env][sig][payload]? (a request or one-way message from the far
 * ROUTER).  See transport.h, Routes by key.
 */
static void
dispatch(struct sock *s, zmq_msg_t *parts, int n)
{
    struct sw_transport *t = s->t;
    struct sw_transport_msg m;
    struct sw_wire_tensor tensor;
    int base = s->router ? 1 : 0;
    uint8_t mark = n > base ? mark_of(&parts[base]) : 0;
    bool reverse = mark == SW_TRANSPORT_REVERSE;
    bool relayed = mark == SW_TRANSPORT_RELAY_MSG || mark == SW_TRANSPORT_RELAY_ANS;
    bool incoming = relayed ? mark == SW_TRANSPORT_RELAY_MSG /* a request or one-way message */
                            : s->router != reverse;
    zmq_msg_t *env, *sig, *pl;
    unsigned char a16[16];
    uint8_t from[SW_IDENTITY_PK_BYTES];

    if (relayed) {
        if (n < base + 4 || n > base + 5 ||
            zmq_msg_size(&parts[base + 1]) != SW_IDENTITY_PK_BYTES) {
            sw_wire_count_drop(&t->wire, SW_WIRE_DROP_MALFORMED);
            return;
        }
        if (s->router) {
            relay_forward(s, parts, n, mark);
            return;
        }
        memcpy(from, zmq_msg_data(&parts[base + 1]), sizeof(from));
        base += 2;
    }
    base += reverse;
    if (n < base + 2 || n > base + 3) {
        sw_wire_count_drop(&t->wire, SW_WIRE_DROP_MALFORMED);
        return;
    }
    memset(&m, 0, sizeof(m));
    if ((reverse || relayed) && !s->router) {
        m.route.reverse = reverse;
        m.route.relay = relayed;
        snprintf((char *)m.route.id, sizeof(m.route.id), "%s", s->endpoint);
        m.route.len = strlen(s->endpoint) + 1;
    }
    if (s->router) {
        if (zmq_msg_size(&parts[0]) > SW_TRANSPORT_MAX_ROUTE)
            return;
        m.route.len = zmq_msg_size(&parts[0]);
        memcpy(m.route.id, zmq_msg_data(&parts[0]), m.route.len);
        /* tcp only (over ipc it is the peer's credentials); the metadata lives
         * as long as the frame, i.e. the callback */
        m.peer_addr = zmq_msg_gets(&parts[1], "Peer-Address");
        if (m.peer_addr && !addr16(m.peer_addr, a16))
            m.peer_addr = NULL;
    }
    env = &parts[base];
    sig = &parts[base + 1];
    pl = n == base + 3 ? &parts[base + 2] : NULL;
    if (pl && zmq_msg_size(pl) == 0) {
        sw_wire_count_drop(&t->wire, SW_WIRE_DROP_MALFORMED); /* empty payload frame */
        return;
    }
    if (sw_wire_open(&t->wire, zmq_msg_data(env), zmq_msg_size(env), zmq_msg_data(sig),
                     zmq_msg_size(sig), pl ? zmq_msg_size(pl) : 0, &m.hdr) < 0)
        return;
    if (relayed) {
        /* the relay names the sender it checked; the answer goes back to that key */
        if (memcmp(from, m.hdr.sender, sizeof(from)) != 0) {
            sw_wire_count_drop(&t->wire, SW_WIRE_DROP_MALFORMED);
            return;
        }
        memcpy(m.route.key, from, sizeof(from));
        t->rly.delivered++;
    }
    /*
     * Admission before anything else looks at the message (and before the
     * payload is hashed: a refused sender costs one signature check only).
     * A refused response leaves its request to time out.
     */
    if (t->admit && !t->admit(t->admit_arg, &m.hdr, m.hdr.type)) {
        char hex[17];

        t->wire.stats.drops[SW_WIRE_DROP_ADMIT]++;
        SW_LOG_RATELIMITED(SW_LOG_WARN, 1000, "dropped message type %u from %s...: admit",
                           (unsigned)m.hdr.type, sw_identity_hex(hex, m.hdr.sender, 8));
        return;
    }
    /* requests and one-way messages only: responses answer what we asked */
    if (incoming && !limit_ok(t, &m.hdr))
        return;
    /* a verified, admitted message of its own: its key's connection (not
     * for a replay, which sw_wire_open dropped; not a bulk-class request's,
     * which came on its sender's bulk connection: transport.h, Bulk) */
    if (s->router && sw_wire_seq_class(&t->wire, m.hdr.type) != SW_WIRE_SEQ_BULK)
        keyroute_bind(t, m.hdr.sender, m.route.id, m.route.len);
    if (pl) {
        m.payload = zmq_msg_data(pl);
        m.payload_len = zmq_msg_size(pl);
        if (sw_wire_check_payload(&t->wire, &m.hdr, m.payload, m.payload_len) < 0)
            return;
    }
    if (m.hdr.type == SW_MSG_TENSOR) {
        if (sw_wire_tensor_unpack(m.hdr.body, m.hdr.body_len, &tensor) < 0) {
            sw_wire_count_drop(&t->wire, SW_WIRE_DROP_MALFORMED);
            return;
        }
        if (sw_wire_tensor_check(&t->wire, &tensor, m.payload, m.payload_len) < 0)
            return;
        m.tensor = &tensor;
    }
    m.route.rid = m.hdr.rid;
    if (incoming) {
        struct handler *h = handler_find(t, m.hdr.type);

        if (!h || !h->cb) {
            sw_wire_count_drop(&t->wire, SW_WIRE_DROP_TYPE);
            return;
        }
        h->cb(t, &m, h->arg);
    } else {
        struct req *r = m.hdr.rid ? req_find(t, m.hdr.rid, s) : NULL;

        /* on the ROUTER: the answer of the key asked, on its connection; through a
         * relay: the key asked, relayed */
        if (r && (r->relay != relayed ||
                  ((r->via_key || r->relay) &&
                   memcmp(r->key, m.hdr.sender, SW_IDENTITY_PK_BYTES) != 0)))
            r = NULL;
        if (r)
            r = req_unlink(t, m.hdr.rid, s);
        if (!r) {
            sw_wire_count_drop(&t->wire, SW_WIRE_DROP_UNMATCHED);
            return;
        }
        s->last_used = uv_now(t->loop);
        r->cb(t, 0, &m, r->arg);
        req_free(r);
    }
}

/* Receive one multipart message; false when there was none. */
static bool
sock_recv_one(struct sock *s)
{
    zmq_msg_t parts[MAX_PARTS], extra;
    int n = 0, more = 1, too_many = 0;

    while (more) {
        zmq_msg_t *p = n < MAX_PARTS ? &parts[n] : &extra;

        zmq_msg_init(p);
        if (zmq_msg_recv(p, s->z, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(p);
            if (n == 0)
                return false;
            break; /* cannot happen: parts of a message arrive together */
        }
        more = zmq_msg_more(p);
        if (n < MAX_PARTS) {
            n++;
        } else {
            too_many = 1;
            zmq_msg_close(p);
        }
    }
    if (too_many)
        sw_wire_count_drop(&s->t->wire, SW_WIRE_DROP_MALFORMED);
    else
        dispatch(s, parts, n);
    for (int i = 0; i < n; i++)
        zmq_msg_close(&parts[i]);
    return true;
}

/* ---- the drain loop ---- */

static void
sock_drain(struct sock *s)
{
    int budget = DRAIN_BUDGET;

    if (s->draining) {
        s->again = true;
        return;
    }
    s->draining = true;
    s->more_input = false;
    do {
        s->again = false;
        while (!s->closing) {
            int ev = 0;
            size_t sz = sizeof(ev);
            bool progress = false;

            if (zmq_getsockopt(s->z, ZMQ_EVENTS, &ev, &sz) != 0)
                break;
            if ((ev & ZMQ_POLLOUT) && s->qhead && sock_flush(s) > 0)
                progress = true;
            if (ev & ZMQ_POLLIN) {
                if (budget-- <= 0) {
                    /* finish on the next loop iteration: fairness */
                    s->more_input = true;
                    uv_idle_start(&s->t->idle, idle_cb);
                    break;
                }
                if (sock_recv_one(s))
                    progress = true;
            }
            if (!progress)
                break;
        }
    } while (s->again && !s->closing);
    s->draining = false;
}

/*
 * After an API call queued a message: hand ZeroMQ what it takes, but read
 * nothing.  No callback may run inside the call that started it: a caller
 * that marks a request in flight once sw_transport_request returned 0 would
 * otherwise miss an answer that came back (and was dispatched) during the
 * call, and wait for it forever.  Sending can swallow ZMQ_FD's edge, so the
 * last thing done is a ZMQ_EVENTS query; input found there is read on the
 * next loop iteration (the uv_idle), like a drain that ran out of budget.
 */
static void
sock_kick(struct sock *s)
{
    if (s->draining) {
        s->again = true; /* the drain below us flushes before it returns */
        return;
    }
    s->draining = true;
    while (!s->closing) {
        int ev = 0;
        size_t sz = sizeof(ev);

        if (zmq_getsockopt(s->z, ZMQ_EVENTS, &ev, &sz) != 0)
            break;
        if ((ev & ZMQ_POLLIN) && !s->more_input) {
            s->more_input = true;
            uv_idle_start(&s->t->idle, idle_cb);
        }
        if (!(ev & ZMQ_POLLOUT) || !s->qhead || sock_flush(s) == 0)
            break;
    }
    s->draining = false;
}

static void
poll_cb(uv_poll_t *h, int status, int events)
{
    sock_drain(h->data);
}

/* ---- sockets ---- */

/* One of t's uv handles is closed; the last one frees t. */
static void
transport_handle_gone(struct sw_transport *t)
{
    if (--t->open_handles == 0 && t->closing) {
        sw_transport_close_cb *cb = t->close_cb;
        void *arg = t->close_arg;

        sw_free(t->handlers);
        sw_free(t->bk.heads);
        sw_free(t->bk.b);
        sw_free(t->kr);
        sw_wire_release(&t->wire);
        if (t->own_ctx)
            zmq_ctx_term(t->ctx);
        sw_free(t);
        if (cb)
            cb(arg);
    }
}

static void
sock_closed_cb(uv_handle_t *h)
{
    struct sock *s = h->data;
    struct sw_transport *t = s->t;

    while (s->qhead) {
        struct out_msg *m = s->qhead;
        s->qhead = m->next;
        out_free(m);
    }
    zmq_close(s->z);
    sw_free(s);
    transport_handle_gone(t);
}

static void
sock_close(struct sock *s)
{
    if (s->closing)
        return;
    s->closing = true;
    uv_close((uv_handle_t *)&s->poll, sock_closed_cb);
}

static int
sock_new(struct sw_transport *t, int type, struct sock **out)
{
    struct sock *s;
    int fd, zero = 0, one = 1, err;
    int64_t maxmsg = (int64_t)SW_MAX(t->wire.max_payload, (size_t)SW_WIRE_MAX_ENVELOPE);
    size_t sz = sizeof(fd);

    s = sw_calloc(1, sizeof(*s));
    if (!s)
        return -SW_ENOMEM;
    s->t = t;
    s->router = type == ZMQ_ROUTER;
    s->z = zmq_socket(t->ctx, type);
    if (!s->z) {
        err = -errno;
        sw_free(s);
        return err;
    }
    zmq_setsockopt(s->z, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(s->z, ZMQ_SNDHWM, &t->o.hwm, sizeof(t->o.hwm));
    zmq_setsockopt(s->z, ZMQ_RCVHWM, &t->o.hwm, sizeof(t->o.hwm));
    zmq_setsockopt(s->z, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
    if (s->router)
        zmq_setsockopt(s->z, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
    if (zmq_getsockopt(s->z, ZMQ_FD, &fd, &sz) != 0 || uv_poll_init(t->loop, &s->poll, fd) < 0) {
        err = -SW_EIO;
        zmq_close(s->z);
        sw_free(s);
        return err;
    }
    s->poll.data = s;
    t->open_handles++;
    uv_poll_start(&s->poll, UV_READABLE, poll_cb);
    s->last_used = uv_now(t->loop);
    *out = s;
    return 0;
}

int
sw_transport_endpoint_split(const char *ep, char *host, size_t host_cap, int *port)
{
    const char *h, *end, *p;
    unsigned char a[16];
    char buf[INET6_ADDRSTRLEN + 1];
    size_t n;
    long v;
    char *e;

    if (!ep || strncmp(ep, "tcp://", 6) != 0 || strnlen(ep, SW_TRANSPORT_MAX_ENDPOINT) >=
        SW_TRANSPORT_MAX_ENDPOINT)
        return -SW_EINVAL;
    h = ep + 6;
    if (*h == '[') {
        if (!(end = strchr(++h, ']')) || end[1] != ':')
            return -SW_EINVAL;
        p = end + 2;
    } else {
        if (!(end = strchr(h, ':')))
            return -SW_EINVAL;
        p = end + 1;
    }
    n = (size_t)(end - h);
    if (n == 0 || n >= sizeof(buf))
        return -SW_EINVAL;
    memcpy(buf, h, n);
    buf[n] = '\0';
    if (inet_pton(ep[6] == '[' ? AF_INET6 : AF_INET, buf, a) != 1)
        return -SW_EINVAL;
    if (!strcmp(p, "*")) {
        v = 0;
    } else {
        if (*p < '1' || *p > '9')
            return -SW_EINVAL;
        errno = 0;
        v = strtol(p, &e, 10);
        if (errno || *e || v < 1 || v > 65535)
            return -SW_EINVAL;
    }
    if (host) {
        if (n >= host_cap)
            return -SW_EINVAL;
        memcpy(host, buf, n + 1);
    }
    if (port)
        *port = (int)v;
    return 0;
}

bool
sw_transport_addr_same(const char *a, const char *b)
{
    unsigned char x[16], y[16];

    /* an IPv4 peer of a dual-stack socket shows as ::ffff:a.b.c.d */
    return a && b && addr16(a, x) && addr16(b, y) && memcmp(x, y, 16) == 0;
}

/* tcp://[v6]:port needs ZMQ_IPV6 before the bind or connect; it is left off
 * for IPv4 endpoints, whose sockets then stay IPv4 only (with it on,
 * ZMQ_LAST_ENDPOINT of an IPv4 bind reads tcp://[::ffff:a.b.c.d]:port) */
static void
sock_ipv6_for(struct sock *s, const char *endpoint)
{
    int one = 1;

    if (!strncmp(endpoint, "tcp://[", 7))
        zmq_setsockopt(s->z, ZMQ_IPV6, &one, sizeof(one));
}

static bool
endpoint_ok(const char *ep)
{
    size_t n = strnlen(ep, SW_TRANSPORT_MAX_ENDPOINT);

    return n < SW_TRANSPORT_MAX_ENDPOINT &&
           (!strncmp(ep, "tcp://", 6) || !strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9));
}

/* Our DEALER to endpoint, opened on first use: its bulk one when bulk
 * (transport.h, Bulk). */
static int
dealer_get(struct sw_transport *t, const char *endpoint, bool bulk, struct sock **out)
{
    struct sock *s;
    int err;

    if (!endpoint_ok(endpoint))
        return -SW_EINVAL;
    for (s = t->dealers; s; s = s->next) {
        if (!s->closing && s->bulk == bulk && strcmp(s->endpoint, endpoint) == 0) {
            *out = s;
            return 0;
        }
    }
    if (t->n_dealers >= MAX_DEALERS)
        return -SW_EAGAIN;
    if ((err = sock_new(t, ZMQ_DEALER, &s)) < 0)
        return err;
    snprintf(s->endpoint, sizeof(s->endpoint), "%s", endpoint);
    s->bulk = bulk;
    sock_ipv6_for(s, endpoint);
    if (zmq_connect(s->z, endpoint) != 0) {
        err = -errno;
        sw_log(SW_LOG_WARN, "cannot connect to '%s': %s", endpoint, zmq_strerror(errno));
        sock_close(s);
        return err;
    }
    s->next = t->dealers;
    t->dealers = s;
    t->n_dealers++;
    *out = s;
    return 0;
}

static void
dealer_remove(struct sw_transport *t, struct sock *s)
{
    for (struct sock **pp = &t->dealers; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            t->n_dealers--;
            break;
        }
    }
    sock_close(s);
}

/* ---- timers ---- */

static void
idle_cb(uv_idle_t *h)
{
    struct sw_transport *t = h->data;
    bool more = false;

    uv_idle_stop(h);
    if (t->router && t->router->more_input)
        sock_drain(t->router);
    for (struct sock *s = t->dealers; s; s = s->next)
        if (s->more_input)
            sock_drain(s);
    if (t->router && t->router->more_input)
        more = true;
    for (struct sock *s = t->dealers; s; s = s->next)
        more = more || s->more_input;
    if (more && !t->closing)
        uv_idle_start(h, idle_cb);
}

static int
req_send(struct sw_transport *t, struct req *r)
{
    struct sw_transport_route route;
    struct out_msg *m;
    int err;

    /* to a key: its connection now (a retry follows a reconnect) */
    if (r->via_key && (err = keyroute_get(t, r->key, &route)) < 0)
        return err;
    if ((err = out_build(t, r->via_key ? &route : NULL,
                         r->via_key ? SW_TRANSPORT_REVERSE : r->relay ? SW_TRANSPORT_RELAY_MSG : 0,
                         r->relay ? r->key : NULL, r->type, r->rid, r->body, r->body_len, r->pl,
                         &m)) < 0)
        return err;
    m->request = true;
    sock_enqueue(r->dealer, m);
    r->deadline = uv_now(t->loop) + r->timeout_ms;
    r->dealer->last_used = uv_now(t->loop);
    sock_kick(r->dealer);
    return 0;
}

static void
req_link(struct sw_transport *t, struct req *r)
{
    r->next = t->reqs;
    t->reqs = r;
    t->n_reqs++;
    r->dealer->pending++;
}

/* Reads what waits in every socket now (DRAIN_BUDGET a socket). */
static void
drain_all(struct sw_transport *t)
{
    struct sock *s, *next;

    if (t->router)
        sock_drain(t->router);
    for (s = t->dealers; s && !t->closing; s = next) {
        next = s->next; /* a callback may close s (dealer_remove frees it later) */
        sock_drain(s);
    }
}

static void
tick_cb(uv_timer_t *h)
{
    struct sw_transport *t = h->data;
    uint64_t now = uv_now(t->loop);
    struct req *expired = NULL;

    /*
     * A request past its deadline: the loop may have been held (a big
     * stage's compute or allocation on a loaded machine, seconds), and its
     * answer may wait in a socket, read by ZeroMQ's I/O thread meanwhile.
     * Timers run before the loop polls: read the sockets first, so that a
     * held loop never times out a peer that answered in time.
     */
    for (struct req *r = t->reqs; r && !t->closing; r = r->next)
        if (r->deadline <= now) {
            drain_all(t);
            break;
        }
    if (t->closing)
        return;
    /*
     * Unlink the expired requests first: the callbacks below may start or
     * finish other requests, which changes t->reqs.
     */
    for (struct req **pp = &t->reqs; *pp;) {
        struct req *r = *pp;

        if (r->deadline > now) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        t->n_reqs--;
        r->dealer->pending--;
        r->next = expired;
        expired = r;
    }
    while (expired) {
        struct req *r = expired;

        expired = r->next;
        sock_unqueue(r->dealer, r->rid);
        if (!t->closing && r->retries_left > 0) {
            struct sock *d = r->dealer;

            r->retries_left--;
            if (r->via_key || !d->closing || dealer_get(t, d->endpoint, d->bulk, &d) == 0) {
                r->dealer = d;
                req_link(t, r);
                if (req_send(t, r) == 0)
                    continue;
                req_unlink(t, r->rid, r->dealer);
            }
        }
        /* not while messages wait in its queue (transport.h, Requests); never the ROUTER,
         * never a relay's (its key, not the relay, did not answer) */
        if (!r->via_key && !r->relay && r->dealer->pending == 0 && !r->dealer->closing &&
            r->dealer->qlen == 0 && now >= r->dealer->drain_until) {
            sw_log(SW_LOG_INFO, "no answer from '%s': closing the connection%s",
                   r->dealer->endpoint, r->dealer->bulk ? " for bulk requests" : "");
            dealer_remove(t, r->dealer);
        }
        r->cb(t, t->closing ? -SW_ECANCELED : -SW_ETIMEDOUT, NULL, r->arg);
        req_free(r);
    }
    if (t->closing)
        return;
    for (struct sock *s = t->dealers, *next; s; s = next) {
        next = s->next;
        /* idle, or stuck behind a full queue that long: the peer is gone */
        if (s->pending == 0 && now - s->last_used >= t->o.idle_ms)
            dealer_remove(t, s);
    }
}

static void
handle_closed_cb(uv_handle_t *h)
{
    transport_handle_gone(h->data); /* the timer and the idle count one each */
}

/* ---- public API ---- */

static void
default_ping(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    if (m->route.rid && sw_transport_reply(t, &m->route, SW_MSG_PONG, NULL, 0, NULL) < 0)
        SW_LOG_RATELIMITED(SW_LOG_INFO, 1000, "cannot answer ping");
}

int
sw_transport_new(struct sw_transport **out, uv_loop_t *loop, const struct sw_identity *id,
                 const uint8_t run[SW_WIRE_RUN_BYTES], const struct sw_transport_opts *opts)
{
    struct sw_wire_opts wo = {0};
    struct sw_transport *t;
    int err;

    t = sw_calloc(1, sizeof(*t));
    if (!t)
        return -SW_ENOMEM;
    if (opts)
        t->o = *opts;
    if (t->o.hwm <= 0)
        t->o.hwm = 64;
    if (!t->o.max_queue)
        t->o.max_queue = 256;
    if (!t->o.relay_queue)
        t->o.relay_queue = SW_TRANSPORT_RELAY_QUEUE_BYTES;
    if (!t->o.idle_ms)
        t->o.idle_ms = 60000;
    if (!t->o.max_limit_keys)
        t->o.max_limit_keys = SW_TRANSPORT_LIMIT_KEYS;
    if (!t->o.max_routes)
        t->o.max_routes = SW_TRANSPORT_MAX_ROUTES;
    t->o.max_limit_keys = SW_MIN(t->o.max_limit_keys, (size_t)1 << 24); /* int32 indices */
    wo.max_payload = t->o.max_payload;
    wo.max_senders = t->o.max_senders;
    if ((err = sw_wire_init(&t->wire, id, run, &wo)) < 0) {
        sw_free(t);
        return err;
    }
    if ((err = buckets_init(&t->bk, t->o.max_limit_keys)) < 0) {
        sw_wire_release(&t->wire);
        sw_free(t);
        return err;
    }
    /* without it nothing is routed by key (keyroute_bind), nothing fails */
    t->kr = sw_calloc(t->o.max_routes, sizeof(*t->kr));
    t->loop = loop;
    t->ctx = t->o.zmq_ctx;
    if (!t->ctx) {
        t->ctx = zmq_ctx_new();
        t->own_ctx = true;
        if (!t->ctx) {
            sw_free(t->kr);
            sw_free(t->bk.heads);
            sw_free(t->bk.b);
            sw_wire_release(&t->wire);
            sw_free(t);
            return -SW_ENOMEM;
        }
    }
    t->next_rid = ((uint64_t)uv_hrtime() << 16) | 1;
    /* cannot fail: the table is empty */
    if (sw_transport_limit(t, SW_MSG_PING, SW_TRANSPORT_PING_RATE, SW_TRANSPORT_PING_BURST) < 0)
        sw_log(SW_LOG_WARN, "cannot limit PING");
    uv_timer_init(loop, &t->tick);
    t->tick.data = t;
    uv_idle_init(loop, &t->idle);
    t->idle.data = t;
    t->open_handles = 2;
    uv_timer_start(&t->tick, tick_cb, TICK_MS, TICK_MS);
    t->handlers = sw_malloc(sizeof(*t->handlers));
    if (t->handlers) {
        t->handlers[0] = (struct handler){SW_MSG_PING, default_ping, NULL};
        t->n_handlers = 1;
    }
    *out = t;
    return 0;
}

int
sw_transport_bind(struct sw_transport *t, const char *endpoint, char *actual, size_t actual_len)
{
    struct sock *s;
    int err;

    if (t->router || t->closing || !endpoint_ok(endpoint))
        return -SW_EINVAL;
    if ((err = sock_new(t, ZMQ_ROUTER, &s)) < 0)
        return err;
    sock_ipv6_for(s, endpoint);
    if (zmq_bind(s->z, endpoint) != 0) {
        err = -errno;
        sw_log(SW_LOG_ERROR, "cannot bind '%s': %s", endpoint, zmq_strerror(errno));
        sock_close(s);
        return err;
    }
    if (actual) {
        size_t n = actual_len;

        if (zmq_getsockopt(s->z, ZMQ_LAST_ENDPOINT, actual, &n) != 0) {
            err = -errno;
            sock_close(s);
            return err;
        }
    }
    t->router = s;
    return 0;
}

int
sw_transport_on(struct sw_transport *t, uint32_t type, sw_transport_handler_cb *cb, void *arg)
{
    struct handler *h = handler_find(t, type), *nh;

    if (type == 0 || type > SW_MSG_TYPE_MAX)
        return -SW_EINVAL;
    if (h) {
        h->cb = cb;
        h->arg = arg;
        return 0;
    }
    nh = sw_realloc(t->handlers, (t->n_handlers + 1) * sizeof(*nh));
    if (!nh)
        return -SW_ENOMEM;
    t->handlers = nh;
    nh[t->n_handlers++] = (struct handler){type, cb, arg};
    return 0;
}

int
sw_transport_limit(struct sw_transport *t, uint32_t type, double rate_per_s, double burst)
{
    struct limit *l = limit_find(t, type);

    if (type == 0 || type > SW_MSG_TYPE_MAX || !(rate_per_s == rate_per_s) ||
        !(burst == burst))
        return -SW_EINVAL;
    if (rate_per_s <= 0) {
        if (l)
            *l = t->limits[--t->n_limits];
        return 0;
    }
    if (!l) {
        if (t->n_limits >= MAX_LIMITS)
            return -SW_ERANGE;
        l = &t->limits[t->n_limits++];
        memset(l, 0, sizeof(*l));
        l->type = type;
    }
    l->rate = rate_per_s;
    l->burst = SW_MAX(burst, 1.0);
    return sw_transport_limit_global(t, type, l->rate * SW_TRANSPORT_GLOBAL_FACTOR,
                                     l->burst * SW_TRANSPORT_GLOBAL_FACTOR);
}

int
sw_transport_limit_global(struct sw_transport *t, uint32_t type, double rate_per_s, double burst)
{
    struct limit *l = limit_find(t, type);

    if (!l)
        return -SW_ENOENT;
    if (!(rate_per_s > 0) || !(burst == burst))
        return -SW_EINVAL;
    limit_global_set(t, l, rate_per_s, burst);
    return 0;
}

uint64_t
sw_transport_ratelimited(const struct sw_transport *t, uint32_t type)
{
    for (size_t i = 0; i < t->n_limits; i++)
        if (t->limits[i].type == type)
            return t->limits[i].drops;
    return 0;
}

size_t
sw_transport_limited_types(const struct sw_transport *t, uint32_t *types, size_t cap)
{
    for (size_t i = 0; i < t->n_limits && i < cap; i++)
        types[i] = t->limits[i].type;
    return t->n_limits;
}

void
sw_transport_set_admit(struct sw_transport *t, sw_transport_admit_cb *admit, void *arg)
{
    t->admit = admit;
    t->admit_arg = arg;
}

enum ep_kind { EP_DEALER, EP_KEY, EP_RELAY };

/*
 * What endpoint names: a key's connection on the ROUTER (its key into key),
 * a key through a relay (the key into key, the relay's endpoint into relay),
 * or the endpoint of a DEALER.  A relay endpoint whose key has a connection
 * here is that key's connection: never a relay when a direct path exists.
 */
static enum ep_kind
endpoint_kind(const struct sw_transport *t, const char *endpoint, uint8_t *key, char *relay,
              size_t relay_cap)
{
    if (sw_transport_endpoint_is_key(endpoint, key))
        return EP_KEY;
    if (sw_transport_endpoint_is_relay(endpoint, key, relay, relay_cap))
        return t->router && keyroute_find(t, key) ? EP_KEY : EP_RELAY;
    return EP_DEALER;
}

int
sw_transport_request(struct sw_transport *t, const char *endpoint, uint32_t type,
                     const void *body, size_t body_len, const struct sw_payload *payload,
                     uint64_t timeout_ms, int retries, sw_transport_response_cb *cb, void *arg)
{
    uint8_t key[SW_IDENTITY_PK_BYTES];
    char relay_ep[SW_TRANSPORT_MAX_ENDPOINT];
    struct payload_ref *pl;
    enum ep_kind kind;
    struct sock *d;
    struct req *r;
    int err;

    pl = payload_take(payload, t->wire.max_payload, &err);
    if (err < 0)
        return err;
    if (t->closing || !cb) {
        err = -SW_EINVAL;
        goto out_unref;
    }
    kind = endpoint_kind(t, endpoint, key, relay_ep, sizeof(relay_ep));
    if (kind == EP_KEY) {
        /* checked again by req_send; a key without a route fails at once */
        if (!t->router || !keyroute_find(t, key)) {
            err = keyroute_get(t, key, &(struct sw_transport_route){0});
            goto out_unref;
        }
        d = t->router;
    } else if ((err = dealer_get(t, kind == EP_RELAY ? relay_ep : endpoint,
                                 kind == EP_DEALER &&
                                     sw_wire_seq_class(&t->wire, type) == SW_WIRE_SEQ_BULK,
                                 &d)) < 0) {
        goto out_unref;
    }
    if (d->qlen >= t->o.max_queue) {
        err = -SW_EAGAIN;
        goto out_unref;
    }
    r = sw_calloc(1, sizeof(*r));
    if (!r || (body_len && !(r->body = sw_malloc(body_len)))) {
        sw_free(r);
        err = -SW_ENOMEM;
        goto out_unref;
    }
    if (body_len)
        memcpy(r->body, body, body_len);
    r->body_len = body_len;
    r->rid = t->next_rid++;
    if (r->rid == 0)
        r->rid = t->next_rid++;
    r->dealer = d;
    r->via_key = kind == EP_KEY;
    r->relay = kind == EP_RELAY;
    memcpy(r->key, key, sizeof(key));
    r->type = type;
    r->pl = pl;
    r->timeout_ms = timeout_ms ? timeout_ms : 5000;
    r->retries_left = retries;
    r->cb = cb;
    r->arg = arg;
    req_link(t, r);
    if ((err = req_send(t, r)) < 0) {
        req_unlink(t, r->rid, d);
        req_free(r);
        return err;
    }
    return 0; /* cb runs from the loop, never before this returned */
out_unref:
    payload_unref(pl);
    return err;
}

/* How many messages a ROUTER's queue holds for route's peer. */
static size_t
router_queued(const struct sock *s, const struct sw_transport_route *route)
{
    size_t n = 0;

    for (struct out_msg *m = s->qhead; m; m = m->next)
        n += zmq_msg_size(&m->parts[0]) == route->len &&
             !memcmp(zmq_msg_data(&m->parts[0]), route->id, route->len);
    return n;
}

static int
send_on(struct sw_transport *t, struct sock *s, const struct sw_transport_route *route,
        uint8_t mark, const uint8_t *key, uint32_t type, uint64_t rid, const void *body,
        size_t body_len, const struct sw_payload *payload)
{
    struct payload_ref *pl;
    struct out_msg *m;
    int err;

    pl = payload_take(payload, t->wire.max_payload, &err);
    if (err < 0)
        return err;
    if (s->qlen >= t->o.max_queue) {
        err = -SW_EAGAIN;
        goto out;
    }
    if (s->router && route && s->qlen >= SW_TRANSPORT_PEER_SHARE(t->o.max_queue) &&
        sw_wire_seq_class(&t->wire, type) == SW_WIRE_SEQ_OTHER &&
        router_queued(s, route) >= SW_TRANSPORT_PEER_SHARE(t->o.max_queue)) {
        t->rst.slow++; /* see Back-pressure in transport.h */
        SW_LOG_RATELIMITED(SW_LOG_INFO, 10000, "a slow peer holds a quarter of the queue: "
                           "refusing its message of type %u", type);
        err = -SW_EAGAIN;
        goto out;
    }
    if ((err = out_build(t, route, mark, key, type, rid, body, body_len, pl, &m)) < 0)
        goto out;
    sock_enqueue(s, m);
    s->last_used = uv_now(t->loop);
    sock_kick(s);
out:
    payload_unref(pl);
    return err;
}

int
sw_transport_send(struct sw_transport *t, const char *endpoint, uint32_t type, const void *body,
                  size_t body_len, const struct sw_payload *payload)
{
    uint8_t key[SW_IDENTITY_PK_BYTES];
    char relay_ep[SW_TRANSPORT_MAX_ENDPOINT];
    struct sw_transport_route route;
    enum ep_kind kind = endpoint_kind(t, endpoint, key, relay_ep, sizeof(relay_ep));
    struct sock *d;
    int err;

    if (t->closing)
        err = -SW_ECLOSED;
    else if (kind == EP_KEY)
        err = keyroute_get(t, key, &route);
    else
        err = dealer_get(t, kind == EP_RELAY ? relay_ep : endpoint, false, &d);
    if (err < 0) {
        int e2;

        payload_unref(payload_take(payload, 0, &e2)); /* runs the caller's free_cb */
        return err;
    }
    if (kind == EP_KEY)
        return send_on(t, t->router, &route, SW_TRANSPORT_REVERSE, NULL, type, 0, body, body_len,
                       payload);
    if (kind == EP_RELAY)
        return send_on(t, d, NULL, SW_TRANSPORT_RELAY_MSG, key, type, 0, body, body_len, payload);
    return send_on(t, d, NULL, 0, NULL, type, 0, body, body_len, payload);
}

/* Our open DEALER to endpoint (not its bulk one), or NULL. */
static struct sock *
dealer_find(struct sw_transport *t, const char *endpoint)
{
    for (struct sock *s = t->dealers; s; s = s->next)
        if (!s->closing && !s->bulk && strcmp(s->endpoint, endpoint) == 0)
            return s;
    return NULL;
}

int
sw_transport_reply(struct sw_transport *t, const struct sw_transport_route *route, uint32_t type,
                   const void *body, size_t body_len, const struct sw_payload *payload)
{
    struct sock *d = NULL;
    int err = 0;

    if (t->closing)
        err = -SW_ECLOSED;
    else if (route->rid == 0 || route->len == 0 || route->len > SW_TRANSPORT_MAX_ROUTE ||
             (route->reverse || route->relay ? memchr(route->id, 0, route->len) == NULL
                                             : !t->router))
        err = -SW_EINVAL;
    else if ((route->reverse || route->relay) && !(d = dealer_find(t, (const char *)route->id)))
        err = -SW_ENOENT; /* the connection it came on closed */
    if (err < 0) {
        int e2;

        payload_unref(payload_take(payload, 0, &e2)); /* runs the caller's free_cb */
        return err;
    }
    if (route->relay)
        return send_on(t, d, NULL, SW_TRANSPORT_RELAY_ANS, route->key, type, route->rid, body,
                       body_len, payload);
    if (route->reverse)
        return send_on(t, d, NULL, SW_TRANSPORT_REVERSE, NULL, type, route->rid, body, body_len,
                       payload);
    return send_on(t, t->router, route, 0, NULL, type, route->rid, body, body_len, payload);
}

struct sw_wire *
sw_transport_wire(struct sw_transport *t)
{
    return &t->wire;
}

size_t
sw_transport_pending(const struct sw_transport *t)
{
    return t->n_reqs;
}

size_t
sw_transport_peers(const struct sw_transport *t)
{
    return t->n_dealers;
}

void
sw_transport_close(struct sw_transport *t, sw_transport_close_cb *cb, void *arg)
{
    if (t->closing)
        return;
    t->closing = true;
    t->close_cb = cb;
    t->close_arg = arg;
    while (t->reqs) {
        struct req *r = t->reqs;

        t->reqs = r->next;
        t->n_reqs--;
        r->dealer->pending--;
        r->cb(t, -SW_ECANCELED, NULL, r->arg);
        req_free(r);
    }
    uv_timer_stop(&t->tick);
    uv_idle_stop(&t->idle);
    while (t->dealers) {
        struct sock *s = t->dealers;

        t->dealers = s->next;
        sock_close(s);
    }
    t->n_dealers = 0;
    if (t->router)
        sock_close(t->router);
    uv_close((uv_handle_t *)&t->tick, handle_closed_cb);
    uv_close((uv_handle_t *)&t->idle, handle_closed_cb);
}
