/*
 * reach.c - the reachability verdict at join: the reflector, the echo and
 * the check (see reach.h).
 */
#include "sw.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "metrics.h"
#include "reach.h"

/* A dial-back in flight: whom it is for, where to answer, what must come back. */
struct sw_reach_dial {
    bool used;
    uint32_t gen;                       /* bumped on every use: a late callback is stale */
    uint8_t pk[32];                     /* the asker */
    struct sw_transport_route route;    /* its ASK */
    uint8_t nonce[SW_REACH_NONCE];
    char seen[SW_REACH_ADDR_MAX];
};

/* What a PROBE's callback needs (freed by it: it runs exactly once). */
struct dial_ref {
    struct sw_reach_srv *s;
    int slot;
    uint32_t gen;
};

static const char *const res_names[SW_REACH__COUNT] = {"ok", "timeout", "host", "key",
                                                       "busy", "noaddr", "badep"};

const char *
sw_reach_res_name(int res)
{
    return res >= 0 && res < SW_REACH__COUNT ? res_names[res] : "?";
}

const char *
sw_reach_verdict_name(int verdict)
{
    static const char *const names[] = {"unknown", "reachable", "unreachable"};
    return verdict >= 0 && verdict <= SW_REACH_UNREACHABLE ? names[verdict] : "?";
}

int
sw_reach_verdict_of(int res)
{
    switch (res) {
    case SW_REACH_OK: return SW_REACH_REACHABLE;
    case SW_REACH_TIMEOUT:
    case SW_REACH_HOST:
    case SW_REACH_KEY: return SW_REACH_UNREACHABLE;
    default: return SW_REACH_UNKNOWN;
    }
}

/* ---- bodies ---- */

void
sw_reach_ask_pack(struct sw_body *b, const char *ep)
{
    sw_body_init(b);
    msgpack_pack_map(&b->pk, 1);
    sw_proto_pack_key(&b->pk, "ep");
    sw_proto_pack_str(&b->pk, ep);
}

int
sw_reach_ask_read(const void *body, size_t len, char *ep, size_t cap)
{
    static const char *const keys[] = {"ep", NULL};
    msgpack_unpacked u;
    int err;

    if (!sw_proto_open(body, len, &u, keys))
        return -SW_EMSG;
    err = sw_proto_get_str(&u.data, "ep", ep, cap) == 0 && ep[0] ? 0 : -SW_EMSG;
    msgpack_unpacked_destroy(&u);
    return err;
}

void
sw_reach_answer_pack(struct sw_body *b, int res, const char *seen)
{
    sw_body_init(b);
    msgpack_pack_map(&b->pk, 2);
    sw_proto_pack_key(&b->pk, "res");
    msgpack_pack_uint32(&b->pk, (uint32_t)res);
    sw_proto_pack_key(&b->pk, "seen");
    sw_proto_pack_str(&b->pk, seen && seen[0] ? seen : "-");
}

int
sw_reach_answer_read(const void *body, size_t len, int *res, char *seen, size_t cap)
{
    static const char *const keys[] = {"res", "seen", NULL};
    msgpack_unpacked u;
    uint64_t r;
    int err = -SW_EMSG;

    if (!sw_proto_open(body, len, &u, keys))
        return -SW_EMSG;
    if (sw_proto_get_u64(&u.data, "res", &r) == 0 && r < SW_REACH__COUNT &&
        sw_proto_get_str(&u.data, "seen", seen, cap) == 0 && seen[0]) {
        *res = (int)r;
        if (!strcmp(seen, "-"))
            seen[0] = '\0';
        err = 0;
    }
    msgpack_unpacked_destroy(&u);
    return err;
}

void
sw_reach_nonce_pack(struct sw_body *b, const uint8_t nonce[SW_REACH_NONCE])
{
    sw_body_init(b);
    msgpack_pack_map(&b->pk, 1);
    sw_proto_pack_key(&b->pk, "nonce");
    sw_proto_pack_bin(&b->pk, nonce, SW_REACH_NONCE);
}

int
sw_reach_nonce_read(const void *body, size_t len, uint8_t nonce[SW_REACH_NONCE])
{
    static const char *const keys[] = {"nonce", NULL};
    msgpack_unpacked u;
    const uint8_t *p;
    size_t n = SW_REACH_NONCE;
    int err = -SW_EMSG;

    if (!sw_proto_open(body, len, &u, keys))
        return -SW_EMSG;
    if (sw_proto_get_bin(&u.data, "nonce", &p, &n) == 0) {
        memcpy(nonce, p, SW_REACH_NONCE);
        err = 0;
    }
    msgpack_unpacked_destroy(&u);
    return err;
}

/* ---- the reflector ---- */

static void
malformed(struct sw_reach_srv *s, const char *what)
{
    s->malformed++;
    sw_wire_count_drop(sw_transport_wire(s->t), SW_WIRE_DROP_MALFORMED);
    SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "dropped a malformed %s", what);
}

static void
answer(struct sw_reach_srv *s, const struct sw_transport_route *route, int res, const char *seen)
{
    static struct sw_body b;

    s->answers[res]++;
    sw_reach_answer_pack(&b, res, seen);
    if (b.b.overflow || sw_transport_reply(s->t, route, SW_MSG_REACH, b.b.data, b.b.len, NULL) < 0)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "cannot answer a reachability request");
}

static void
on_echo(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    struct dial_ref ref = *(struct dial_ref *)arg;
    struct sw_reach_srv *s = ref.s;
    struct sw_reach_dial *d = &s->dial[ref.slot];
    uint8_t nonce[SW_REACH_NONCE];
    int res;

    (void)t;
    sw_free(arg);
    if (status == -SW_ECANCELED || !d->used || d->gen != ref.gen)
        return;
    if (status < 0) {
        res = SW_REACH_TIMEOUT;
    } else if (sw_reach_nonce_read(m->hdr.body, m->hdr.body_len, nonce) < 0) {
        malformed(s, "reachability echo");
        res = SW_REACH_KEY; /* whatever answers there is not the asker's node */
    } else {
        res = sodium_memcmp(m->hdr.sender, d->pk, 32) == 0 &&
              sodium_memcmp(nonce, d->nonce, SW_REACH_NONCE) == 0 ? SW_REACH_OK : SW_REACH_KEY;
    }
    answer(s, &d->route, res, d->seen);
    d->used = false;
}

static void
on_ask(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    struct sw_reach_srv *s = arg;
    static struct sw_body b;
    char ep[SW_PROTO_EP_MAX], host[SW_REACH_ADDR_MAX], seen[SW_REACH_ADDR_MAX] = "";
    struct sw_reach_dial *d = NULL;
    struct dial_ref *ref;
    int port, slot = -1, err;

    if (m->route.rid == 0 || sw_reach_ask_read(m->hdr.body, m->hdr.body_len, ep, sizeof(ep)) < 0) {
        malformed(s, "reachability request");
        return;
    }
    /* an IPv4 peer of a dual-stack socket shows as ::ffff:a.b.c.d: said as a.b.c.d */
    if (m->peer_addr)
        snprintf(seen, sizeof(seen), "%s",
                 !strncmp(m->peer_addr, "::ffff:", 7) && strchr(m->peer_addr + 7, '.')
                     ? m->peer_addr + 7 : m->peer_addr);
    if (!seen[0]) {
        answer(s, &m->route, SW_REACH_NOADDR, seen);
        return;
    }
    if (sw_transport_endpoint_split(ep, host, sizeof(host), &port) < 0 || port == 0) {
        answer(s, &m->route, SW_REACH_BADEP, seen);
        return;
    }
    /* never dial a host other than the one that asked: no reflection */
    if (!sw_transport_addr_same(host, seen)) {
        char who[13];
        SW_LOG_RATELIMITED(SW_LOG_INFO, 5000, "reachability request from %s refused: it names "
                           "%s, but came from %s", sw_proto_who(who, m->hdr.sender), ep, seen);
        answer(s, &m->route, SW_REACH_HOST, seen);
        return;
    }
    for (int i = 0; i < SW_REACH_MAX_PENDING; i++) {
        if (s->dial[i].used && !memcmp(s->dial[i].pk, m->hdr.sender, 32)) {
            if (s->dial[i].route.rid == m->route.rid) { /* the same ASK again: answer the newest */
                s->dial[i].route = m->route;
                return;
            }
            answer(s, &m->route, SW_REACH_BUSY, seen);
            return;
        }
        if (!s->dial[i].used && slot < 0)
            slot = i;
    }
    if (slot < 0 || !(ref = sw_malloc(sizeof(*ref)))) {
        answer(s, &m->route, SW_REACH_BUSY, seen);
        return;
    }
    d = &s->dial[slot];
    d->gen++;
    memcpy(d->pk, m->hdr.sender, 32);
    d->route = m->route;
    randombytes_buf(d->nonce, sizeof(d->nonce));
    snprintf(d->seen, sizeof(d->seen), "%s", seen);
    *ref = (struct dial_ref){s, slot, d->gen};
    sw_reach_nonce_pack(&b, d->nonce);
    err = b.b.overflow ? -SW_ETOOBIG
                       : sw_transport_request(t, ep, SW_MSG_REACH_PROBE, b.b.data, b.b.len, NULL,
                                              SW_REACH_DIAL_MS, SW_REACH_DIAL_TRIES - 1, on_echo,
                                              ref);
    if (err < 0) {
        sw_free(ref);
        answer(s, &m->route, SW_REACH_BUSY, seen);
        return;
    }
    d->used = true;
}

static void
on_probe(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    struct sw_reach_srv *s = arg;
    static struct sw_body b;
    uint8_t nonce[SW_REACH_NONCE];

    if (m->route.rid == 0 || sw_reach_nonce_read(m->hdr.body, m->hdr.body_len, nonce) < 0) {
        malformed(s, "reachability probe");
        return;
    }
    s->echoes++;
    sw_reach_nonce_pack(&b, nonce);
    if (b.b.overflow || sw_transport_reply(t, &m->route, SW_MSG_REACH_ECHO, b.b.data, b.b.len,
                                           NULL) < 0)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "cannot answer a reachability probe");
}

int
sw_reach_serve(struct sw_reach_srv *s, struct sw_transport *t)
{
    int err;

    memset(s, 0, sizeof(*s));
    s->t = t;
    if (!(s->dial = sw_calloc(SW_REACH_MAX_PENDING, sizeof(*s->dial))))
        return -SW_ENOMEM;
    if ((err = sw_transport_limit(t, SW_MSG_REACH_ASK, SW_REACH_ASK_RATE, SW_REACH_ASK_BURST)) < 0 ||
        (err = sw_transport_limit_global(t, SW_MSG_REACH_ASK, SW_REACH_ASK_GLOBAL_RATE,
                                         SW_REACH_ASK_GLOBAL_BURST)) < 0 ||
        (err = sw_transport_limit(t, SW_MSG_REACH_PROBE, SW_REACH_PROBE_RATE,
                                  SW_REACH_PROBE_BURST)) < 0 ||
        (err = sw_transport_on(t, SW_MSG_REACH_ASK, on_ask, s)) < 0 ||
        (err = sw_transport_on(t, SW_MSG_REACH_PROBE, on_probe, s)) < 0)
        return err;
    return 0;
}

void
sw_reach_srv_release(struct sw_reach_srv *s)
{
    sw_free(s->dial);
    s->dial = NULL;
}

/* ---- the check ---- */

static void ask_next(struct sw_reach_check *c);

static void
check_end(struct sw_reach_check *c, int verdict)
{
    c->done = true;
    c->verdict = verdict;
    sw_reach_check_log(c);
    if (c->cb)
        c->cb(c, c->arg);
}

static void
on_answer(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    struct sw_reach_check *c = arg;
    const char *peer = c->peers[c->next - 1];
    char seen[SW_REACH_ADDR_MAX];
    int res, v;

    (void)t;
    if (status == -SW_ECANCELED || c->done)
        return;
    if (status < 0) {
        snprintf(c->last, sizeof(c->last), "%s did not answer", peer);
    } else if (sw_reach_answer_read(m->hdr.body, m->hdr.body_len, &res, seen, sizeof(seen)) < 0) {
        sw_wire_count_drop(sw_transport_wire(c->t), SW_WIRE_DROP_MALFORMED);
        snprintf(c->last, sizeof(c->last), "%s answered a malformed verdict", peer);
    } else {
        if (seen[0])
            snprintf(c->seen, sizeof(c->seen), "%s", seen);
        v = sw_reach_verdict_of(res);
        if (v != SW_REACH_UNKNOWN) {
            c->res = res;
            snprintf(c->by, sizeof(c->by), "%s", peer);
            check_end(c, v);
            return;
        }
        snprintf(c->last, sizeof(c->last), "%s could not check: %s", peer,
                 res == SW_REACH_BUSY     ? "busy"
                 : res == SW_REACH_NOADDR ? "no address seen"
                                          : "the endpoint is not tcp://ADDRESS:PORT");
    }
    ask_next(c);
}

static void
ask_next(struct sw_reach_check *c)
{
    static struct sw_body b;

    while (c->next < c->npeers) {
        const char *peer = c->peers[c->next++];
        sw_reach_ask_pack(&b, c->ep);
        if (!b.b.overflow && sw_transport_request(c->t, peer, SW_MSG_REACH_ASK, b.b.data, b.b.len,
                                                  NULL, SW_REACH_ASK_MS, 0, on_answer, c) == 0)
            return;
        snprintf(c->last, sizeof(c->last), "cannot ask %s", peer);
    }
    check_end(c, SW_REACH_UNKNOWN);
}

int
sw_reach_check_start(struct sw_reach_check *c, struct sw_transport *t, const char *ep,
                     const char *const *peers, int n, sw_reach_done_cb *cb, void *arg)
{
    memset(c, 0, sizeof(*c));
    if (!t || !ep || strlen(ep) >= sizeof(c->ep))
        return -SW_EINVAL;
    c->t = t;
    c->res = -1;
    c->cb = cb;
    c->arg = arg;
    snprintf(c->ep, sizeof(c->ep), "%s", ep);
    snprintf(c->last, sizeof(c->last), "no peer to ask");
    for (int i = 0; i < n && c->npeers < SW_REACH_PEERS; i++) {
        bool dup = !peers[i] || !peers[i][0] || strlen(peers[i]) >= SW_PROTO_EP_MAX ||
                   !strcmp(peers[i], ep);
        for (int j = 0; j < c->npeers && !dup; j++)
            dup = !strcmp(c->peers[j], peers[i]);
        if (!dup)
            snprintf(c->peers[c->npeers++], SW_PROTO_EP_MAX, "%s", peers[i]);
    }
    c->started = true;
    if (c->npeers == 0) {
        check_end(c, SW_REACH_UNKNOWN);
        return 0;
    }
    ask_next(c);
    return 0;
}

const char *
sw_reach_check_line(const struct sw_reach_check *c, char *buf, size_t len)
{
    char why[160], adv[96];

    if (c->verdict == SW_REACH_REACHABLE) {
        snprintf(buf, len, "reachable at %s", c->ep);
        return buf;
    }
    if (c->verdict == SW_REACH_UNKNOWN) {
        snprintf(buf, len, "reachability unknown at %s (%s); carrying on", c->ep, c->last);
        return buf;
    }
    if (c->res == SW_REACH_HOST)
        snprintf(why, sizeof(why), "seen from %s, not the advertised host", c->seen);
    else if (c->res == SW_REACH_KEY)
        snprintf(why, sizeof(why), "another node answers there");
    else
        snprintf(why, sizeof(why), "connection timed out");
    if (strchr(c->seen, ':'))
        snprintf(adv, sizeof(adv), "tcp://[%s]:PORT", c->seen);
    else
        snprintf(adv, sizeof(adv), "tcp://%s:PORT", c->seen[0] ? c->seen : "PUBLIC-ADDRESS");
    snprintf(buf, len, "not reachable from the internet at %s (%s); serving as an outbound-only "
             "node (peers reach it over the connections it opens, other outbound-only nodes "
             "through a relay); to be reachable, forward a TCP port to this host and "
             "give --advertise %s", c->ep, why, adv);
    return buf;
}

void
sw_reach_check_log(const struct sw_reach_check *c)
{
    char line[768];

    sw_reach_check_line(c, line, sizeof(line));
    sw_log(c->verdict == SW_REACH_REACHABLE ? SW_LOG_INFO : SW_LOG_WARN, "%s", line);
}

int
sw_reach_metrics(const struct sw_reach_srv *s, const struct sw_reach_check *c, char *buf,
                 size_t len, size_t *off)
{
    int err;

    if (c && c->started) {
        if ((err = sw_metrics_append(buf, len, off, "# HELP swarm_node_reachable This node's "
                                     "reachability verdict at join (1: the one it has; none "
                                     "while it is checked).\n"
                                     "# TYPE swarm_node_reachable gauge\n")) < 0)
            return err;
        for (int v = SW_REACH_UNKNOWN; v <= SW_REACH_UNREACHABLE; v++)
            if ((err = sw_metrics_append(buf, len, off, "swarm_node_reachable{verdict=\"%s\"} %d\n",
                                         sw_reach_verdict_name(v),
                                         c->done && c->verdict == v)) < 0)
                return err;
    }
    if (!s || !s->dial)
        return 0;
    if ((err = sw_metrics_append(buf, len, off, "# HELP swarm_reach_answers_total Reachability "
                                 "requests this node answered, by result (swarm-protocol(7), "
                                 "REACHABILITY).\n# TYPE swarm_reach_answers_total counter\n")) < 0)
        return err;
    for (int r = 0; r < SW_REACH__COUNT; r++)
        if ((err = sw_metrics_append(buf, len, off, "swarm_reach_answers_total{res=\"%s\"} %llu\n",
                                     sw_reach_res_name(r),
                                     (unsigned long long)s->answers[r])) < 0)
            return err;
    return sw_metrics_append(buf, len, off, "# HELP swarm_reach_malformed_total Reachability "
                             "messages dropped as malformed.\n"
                             "# TYPE swarm_reach_malformed_total counter\n"
                             "swarm_reach_malformed_total %llu\n"
                             "# HELP swarm_reach_echoes_total Reachability probes this node "
                             "answered.\n# TYPE swarm_reach_echoes_total counter\n"
                             "swarm_reach_echoes_total %llu\n",
                             (unsigned long long)s->malformed, (unsigned long long)s->echoes);
}

/* ---- outbound-only mode ---- */

void
sw_outbound_init(struct sw_outbound *o, struct sw_transport *t, const uint8_t self[32],
                 const char *boot)
{
    memset(o, 0, sizeof(*o));
    o->t = t;
    memcpy(o->self, self, 32);
    sw_transport_key_endpoint(o->ep, sizeof(o->ep), self);
    if (boot && !strncmp(boot, "tcp://", 6))
        snprintf(o->boot, sizeof(o->boot), "%s", boot);
}

void
sw_outbound_start(struct sw_outbound *o, uint64_t now)
{
    if (o->on)
        return;
    o->on = true;
    o->check_next = now;
    for (int i = 0; i < o->n; i++)
        o->peer[i].next_ms = now;
    sw_log(SW_LOG_INFO, "serving as an outbound-only node: stage record endpoint %s; a "
           "keepalive every %d ms to each node of the run", o->ep, SW_OUTBOUND_KEEPALIVE_MS);
}

static bool
outbound_warned(struct sw_outbound *o, const uint8_t *pk)
{
    for (int i = 0; i < o->nwarned; i++)
        if (!memcmp(o->warned[i], pk, 32))
            return true;
    if (o->nwarned < SW_OUTBOUND_WARNED)
        memcpy(o->warned[o->nwarned++], pk, 32);
    return false;
}

/* The target of ep (and pk: zero for the bootstrap) into next[k], kept from the last list. */
static void
target_add(struct sw_outbound *o, struct sw_outbound_peer *next, int *k, uint64_t now,
           const uint8_t *pk, const char *ep, bool relay)
{
    struct sw_outbound_peer *p = NULL;

    for (int i = 0; i < *k; i++)
        if (!strcmp(next[i].ep, ep))
            return; /* the bootstrap may serve a stage too */
    for (int j = 0; j < o->n && !p; j++)
        if (!memcmp(o->peer[j].pk, pk, 32) && !strcmp(o->peer[j].ep, ep))
            p = &o->peer[j];
    if (p) {
        next[*k] = *p;
    } else {
        memset(&next[*k], 0, sizeof(next[*k]));
        memcpy(next[*k].pk, pk, 32);
        snprintf(next[*k].ep, sizeof(next[*k].ep), "%s", ep);
        next[*k].next_ms = now;
    }
    next[(*k)++].relay = relay;
}

void
sw_outbound_targets(struct sw_outbound *o, uint64_t now, const struct sw_peer_rec *recs, int n)
{
    static const uint8_t zero[32];
    struct sw_outbound_peer next[SW_PROTO_MAX_NODES + 1];
    int k = 0;
    char hex[17];

    if (o->boot[0])
        target_add(o, next, &k, now, zero, o->boot, true);
    for (int i = 0; i < n && k < SW_PROTO_MAX_NODES + 1; i++) {
        const struct sw_peer_rec *r = &recs[i];

        if (!memcmp(r->pk, o->self, 32))
            continue;
        if (sw_transport_endpoint_is_key(r->ep, NULL)) {
            if (o->on && !outbound_warned(o, r->pk))
                sw_log(SW_LOG_WARN, "stage %d node %s... is outbound-only too and names no "
                       "relay yet: no path between us until it does; it stays unproven here "
                       "meanwhile", r->stage, sw_identity_hex(hex, r->pk, 8));
            continue;
        }
        if (strncmp(r->ep, "tcp://", 6) && strncmp(r->ep, "ipc://", 6))
            continue; /* "key:...@relay": outbound-only too, reached through its relay */
        target_add(o, next, &k, now, r->pk, r->ep, r->relay && !strncmp(r->ep, "tcp://", 6));
    }
    /* a keepalive in flight finds its slot by endpoint (its answer finds it, or nothing) */
    memcpy(o->peer, next, (size_t)k * sizeof(next[0]));
    o->n = k;
}

struct keepalive {
    struct sw_outbound *o;
    char ep[SW_PROTO_EP_MAX];
};

static void
on_keepalive(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    struct keepalive ka = *(struct keepalive *)arg;
    uint64_t now = sw_now_ms();

    (void)t;
    (void)m;
    sw_free(arg);
    if (status == -SW_ECANCELED)
        return;
    ka.o->fails += status < 0;
    for (int i = 0; i < ka.o->n; i++) {
        struct sw_outbound_peer *p = &ka.o->peer[i];

        if (strcmp(p->ep, ka.ep) != 0)
            continue;
        p->busy = false;
        if (status == 0 && now >= p->sent_ms) {
            double rtt = (double)(now - p->sent_ms);

            p->rtt_ms = p->rtt_ms > 0 ? 0.8 * p->rtt_ms + 0.2 * rtt : rtt;
        }
    }
}

static bool
relay_bad(const struct sw_outbound *o, const char *ep, uint64_t now)
{
    for (size_t i = 0; i < SW_ARRAY_SIZE(o->bad); i++)
        if (o->bad[i].until > now && !strcmp(o->bad[i].ep, ep))
            return true;
    return false;
}

/* The record's endpoint: "key:<self>@<relay>" with a proved relay, else "key:<self>". */
static void
outbound_set_ep(struct sw_outbound *o, const char *relay)
{
    char ep[SW_PROTO_EP_MAX];

    if (!relay[0] || sw_transport_relay_endpoint(ep, sizeof(ep), o->self, relay) < 0)
        sw_transport_key_endpoint(ep, sizeof(ep), o->self);
    if (strcmp(ep, o->ep) != 0) {
        snprintf(o->ep, sizeof(o->ep), "%s", ep);
        o->ep_changed = true;
    }
}

/* The relay that failed: not chosen again for a while, the record without it. */
static void
relay_failed(struct sw_outbound *o, const char *ep, uint64_t now, const char *why)
{
    size_t w = 0;

    for (size_t i = 1; i < SW_ARRAY_SIZE(o->bad); i++)
        if (o->bad[i].until < o->bad[w].until)
            w = i;
    snprintf(o->bad[w].ep, sizeof(o->bad[w].ep), "%s", ep);
    o->bad[w].until = now + SW_OUTBOUND_BAD_MS;
    SW_LOG_RATELIMITED(SW_LOG_WARN, 10000, "relay %s %s; choosing another", ep, why);
    if (!strcmp(o->relay, ep)) {
        o->relay[0] = '\0';
        outbound_set_ep(o, "");
    }
    o->trying[0] = '\0';
    o->check_fails = 0;
}

static void
on_relay_check(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    struct keepalive ka = *(struct keepalive *)arg;
    struct sw_outbound *o = ka.o;
    uint64_t now = sw_now_ms();

    (void)t;
    sw_free(arg);
    if (status == -SW_ECANCELED)
        return;
    o->check_busy = false;
    if (strcmp(ka.ep, o->trying) != 0)
        return; /* a relay given up meanwhile */
    if (status < 0 || !m || memcmp(m->hdr.sender, o->self, 32) != 0) {
        o->check_failed++;
        if (++o->check_fails >= SW_OUTBOUND_CHECK_FAILS || !o->relay[0])
            relay_failed(o, ka.ep, now, o->relay[0] ? "stopped answering relayed messages"
                                                    : "does not relay for this node");
        return;
    }
    o->check_fails = 0;
    if (strcmp(o->relay, ka.ep) != 0) {
        snprintf(o->relay, sizeof(o->relay), "%s", ka.ep);
        o->switches++;
        outbound_set_ep(o, o->relay);
        sw_log(SW_LOG_INFO, "relay %s passes messages for this node (a relayed PING to itself "
               "answered); stage record endpoint %s", o->relay, o->ep);
    }
}

/* While on: prove the relay in use again, or choose and prove one. */
static void
relay_tick(struct sw_outbound *o, uint64_t now)
{
    const struct sw_outbound_peer *best = NULL;
    char via[SW_PROTO_EP_MAX];
    struct keepalive *ka;

    if (o->check_busy || now < o->check_next)
        return;
    if (!o->trying[0]) {
        /* the candidates no check failed lately first; when every one did,
         * the best of them again (this node's own busy loop can fail a check) */
        for (int pass = 0; pass < 2 && !best; pass++) {
            for (int i = 0; i < o->n; i++) {
                const struct sw_outbound_peer *p = &o->peer[i];

                if (p->relay && p->rtt_ms > 0 && (pass || !relay_bad(o, p->ep, now)) &&
                    (!best || p->rtt_ms < best->rtt_ms))
                    best = p;
            }
        }
        if (!best)
            return; /* none answered a keepalive yet */
        snprintf(o->trying, sizeof(o->trying), "%s", best->ep);
        o->check_fails = 0;
    }
    if (sw_transport_relay_endpoint(via, sizeof(via), o->self, o->trying) < 0 ||
        !(ka = sw_malloc(sizeof(*ka))))
        return;
    ka->o = o;
    snprintf(ka->ep, sizeof(ka->ep), "%s", o->trying);
    o->check_next = now + SW_OUTBOUND_CHECK_MS;
    if (sw_transport_request(o->t, via, SW_MSG_PING, NULL, 0, NULL, SW_OUTBOUND_PING_MS, 0,
                             on_relay_check, ka) == 0) {
        o->check_busy = true;
        o->checks++;
    } else {
        sw_free(ka);
    }
}

uint64_t
sw_outbound_tick(struct sw_outbound *o, uint64_t now)
{
    uint64_t wait = UINT64_MAX;

    if (!o->on)
        return wait;
    for (int i = 0; i < o->n; i++) {
        struct sw_outbound_peer *p = &o->peer[i];
        struct keepalive *ka;

        if (now >= p->next_ms && !p->busy && (ka = sw_malloc(sizeof(*ka)))) {
            ka->o = o;
            snprintf(ka->ep, sizeof(ka->ep), "%s", p->ep);
            p->next_ms = now + SW_OUTBOUND_KEEPALIVE_MS;
            p->sent_ms = now;
            if (sw_transport_request(o->t, p->ep, SW_MSG_PING, NULL, 0, NULL, SW_OUTBOUND_PING_MS,
                                     0, on_keepalive, ka) == 0) {
                p->busy = true;
                o->keepalives++;
            } else {
                sw_free(ka);
                o->fails++;
            }
        }
        wait = SW_MIN(wait, p->next_ms > now ? p->next_ms - now : SW_OUTBOUND_KEEPALIVE_MS);
    }
    relay_tick(o, now);
    return SW_MIN(wait, o->check_next > now ? o->check_next - now : SW_OUTBOUND_CHECK_MS);
}

int
sw_outbound_metrics(const struct sw_outbound *o, char *buf, size_t len, size_t *off)
{
    if (!o)
        return 0;
    return sw_metrics_append(buf, len, off, "# HELP swarm_node_outbound_only 1 while this node "
                             "serves as an outbound-only node (reached over the connections it "
                             "opens).\n# TYPE swarm_node_outbound_only gauge\n"
                             "swarm_node_outbound_only %d\n"
                             "# HELP swarm_outbound_keepalives_total Keepalive PINGs of the "
                             "outbound-only mode, by result.\n"
                             "# TYPE swarm_outbound_keepalives_total counter\n"
                             "swarm_outbound_keepalives_total{result=\"sent\"} %llu\n"
                             "swarm_outbound_keepalives_total{result=\"failed\"} %llu\n"
                             "# HELP swarm_outbound_relayed 1 while this outbound-only node names "
                             "a proved relay in its record.\n# TYPE swarm_outbound_relayed gauge\n"
                             "swarm_outbound_relayed %d\n"
                             "# HELP swarm_outbound_relay_checks_total Relayed PINGs to itself "
                             "through its relay, by result.\n"
                             "# TYPE swarm_outbound_relay_checks_total counter\n"
                             "swarm_outbound_relay_checks_total{result=\"sent\"} %llu\n"
                             "swarm_outbound_relay_checks_total{result=\"failed\"} %llu\n"
                             "# HELP swarm_outbound_relay_switches_total Relays taken.\n"
                             "# TYPE swarm_outbound_relay_switches_total counter\n"
                             "swarm_outbound_relay_switches_total %llu\n",
                             o->on, (unsigned long long)o->keepalives,
                             (unsigned long long)o->fails, o->relay[0] != '\0',
                             (unsigned long long)o->checks, (unsigned long long)o->check_failed,
                             (unsigned long long)o->switches);
}
