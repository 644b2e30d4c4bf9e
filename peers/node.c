/*
 * node.c - a swarmd process: identity, transports, manifest, DHT, the tick,
 * signals and metrics, around one role (see node.h).
 */
#include "sw.h"

#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics.h"
#include "node.h"

/* ---- the MANIFEST answer ---- */

int
sw_node_manifest_read(const struct sw_transport_msg *m, struct sw_manifest_reply *r)
{
    static const char *const keys[] = {"manifest", "owner", "sig", "ep", "boot", NULL};
    msgpack_unpacked u;
    size_t olen = 32, slen = 64;
    int err = -SW_EMSG;

    memset(r, 0, sizeof(*r));
    if (!sw_proto_open(m->hdr.body, m->hdr.body_len, &u, keys))
        return -SW_EMSG;
    if (sw_proto_get_bin(&u.data, "manifest", &r->bytes, &r->len) == 0 &&
        sw_proto_get_bin(&u.data, "owner", &r->owner, &olen) == 0 &&
        sw_proto_get_bin(&u.data, "sig", &r->sig, &slen) == 0 &&
        sw_proto_get_str(&u.data, "ep", r->ep, sizeof(r->ep)) == 0 &&
        sw_proto_get_str(&u.data, "boot", r->boot, sizeof(r->boot)) == 0)
        err = 0;
    /* the pointers are into the message's body, which outlives u */
    msgpack_unpacked_destroy(&u);
    return err;
}

void
sw_node_manifest_pack(struct sw_body *b, const struct sw_manifest *man, const uint8_t *owner,
                      const uint8_t *sig, const char *ep, const char *boot)
{
    sw_body_init(b);
    msgpack_pack_map(&b->pk, 5);
    sw_proto_pack_key(&b->pk, "manifest");
    sw_proto_pack_bin(&b->pk, man->bytes, man->len);
    sw_proto_pack_key(&b->pk, "owner");
    sw_proto_pack_bin(&b->pk, owner, 32);
    sw_proto_pack_key(&b->pk, "sig");
    sw_proto_pack_bin(&b->pk, sig, 64);
    sw_proto_pack_key(&b->pk, "ep");
    sw_proto_pack_str(&b->pk, ep);
    sw_proto_pack_key(&b->pk, "boot");
    sw_proto_pack_str(&b->pk, boot);
}

static void
on_manifest_get(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    struct sw_node *n = arg;
    static struct sw_body b;

    if (m->route.rid == 0)
        return;
    sw_node_manifest_pack(&b, &n->man, n->owner, n->sig, n->ep, n->boot_ep);
    if (b.b.overflow || sw_transport_reply(t, &m->route, SW_MSG_MANIFEST, b.b.data, b.b.len,
                                           NULL) < 0)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 1000, "cannot answer a manifest request");
}

/* ---- admission (node.h) ---- */

static uint64_t
wall_s(void)
{
    return (uint64_t)time(NULL);
}

static const char *
why_text(int why)
{
    switch (why) {
    case SW_ADMIT_NOCERT: return "is missing";
    case SW_ADMIT_MALFORMED: return "is not a certificate";
    case SW_ADMIT_RUN: return "is for another run";
    case SW_ADMIT_NODE: return "names another key";
    case SW_ADMIT_EXPIRED: return "has expired";
    case SW_ADMIT_SIG: return "has a bad signature";
    case SW_ADMIT_CHAIN: return "is signed by neither the run owner nor a delegate of it";
    case SW_ADMIT_REVOKED: return "is revoked";
    default: return "is refused";
    }
}

/* A DHT read that needs no admission: a PING, FIND_NODE or FIND_VALUE request
 * from a client that does not serve (no "ep" in the body: it enters no
 * routing table and stores nothing; swarmctl status), or a FIND_VALUE of the
 * revocation list from a key refused as revoked or expired (a member cut
 * off learns why; a stranger that serves stays out of the routing tables). */
static bool
dht_free_read(const struct sw_node *n, const struct sw_wire_hdr *hdr, uint32_t type, int why)
{
    const uint8_t *key;
    msgpack_unpacked u;
    size_t klen = 32;
    bool ok;

    if (hdr->rid == 0 ||
        (type != SW_DHT_PING && type != SW_DHT_FIND_NODE && type != SW_DHT_FIND_VALUE))
        return false;
    msgpack_unpacked_init(&u);
    ok = sw_wire_unpack(hdr->body, hdr->body_len, &u) == 0 &&
         u.data.type == MSGPACK_OBJECT_MAP &&
         (!sw_proto_get(&u.data, "ep") ||
          ((why == SW_ADMIT_REVOKED || why == SW_ADMIT_EXPIRED) && type == SW_DHT_FIND_VALUE &&
           sw_proto_get_bin(&u.data, "key", &key, &klen) == 0 &&
           !memcmp(key, n->revoke_key, 32)));
    msgpack_unpacked_destroy(&u);
    return ok;
}

/* The run transport's hook: every verified message, before any handler. */
static bool
on_admit(void *arg, const struct sw_wire_hdr *hdr, uint32_t type)
{
    struct sw_node *n = arg;
    char who[13];
    int why;

    why = sw_admit_check(&n->admit, hdr->sender, hdr->cert, hdr->cert_len, wall_s(), NULL);
    if (why == SW_ADMIT_OK)
        return true;
    /* decoded only for the refused ones: admitted keys cost a cache lookup */
    if (dht_free_read(n, hdr, type, why)) {
        n->admit.drops[why]--; /* served after all: not a refusal */
        return true;
    }
    SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "dropped a message (type %u) from %s: not admitted, "
                       "its certificate %s", type, sw_proto_who(who, hdr->sender),
                       why_text(why));
    return false;
}

/* The scan's hook: a stage record counts only when its publisher is admitted
 * for that stage. */
static bool
rec_admitted(void *arg, const struct sw_peer_rec *r)
{
    struct sw_node *n = arg;

    return sw_admit_check_rec(&n->admit, r->pk, r->cert, r->cert_len, r->stage, wall_s()) ==
           SW_ADMIT_OK;
}

bool
sw_node_key_admitted(void *arg, const uint8_t pk[32], const uint8_t *cert, size_t len)
{
    struct sw_node *n = arg;

    return sw_admit_check(&n->admit, pk, cert, len, wall_s(), NULL) == SW_ADMIT_OK;
}

/* The manifest is known: this node's certificate, and the admitter of an
 * owner-mode run; 0 or an exit code (nothing is bound yet). */
static int
admission_setup(struct sw_node *n)
{
    struct sw_cert c;
    char hex[65];
    int why, err;

    if (n->o.cert[0] && (err = sw_cert_load(n->o.cert, n->cert, &n->cert_len)) < 0) {
        sw_log(SW_LOG_ERROR, "not admitted: cannot read the certificate '%s': %s", n->o.cert,
               err == -SW_ETOOBIG ? "larger than 1024 bytes" : sw_strerror(err));
        return SW_EXIT_ADMIT;
    }
    if (n->man.admission_open)
        return 0; /* a certificate given is presented all the same */
    memcpy(n->cert_by, n->owner, 32);
    if (sodium_memcmp(n->id.pk, n->owner, 32) != 0) {
        if (!n->cert_len) {
            sw_log(SW_LOG_ERROR, "not admitted: the run admits only the keys its owner certified; "
                   "ask the owner for `swarmctl admit --node %s` and give it with --cert FILE",
                   sw_identity_hex(hex, n->id.pk, 32));
            return SW_EXIT_ADMIT;
        }
        why = sw_cert_verify(n->cert, n->cert_len, n->man.run_id, n->owner, n->id.pk, wall_s(),
                             SW_CERT_SKEW_S, &c);
        if (why != SW_ADMIT_OK) {
            sw_log(SW_LOG_ERROR, "not admitted: the certificate '%s' %s", n->o.cert,
                   why_text(why));
            return SW_EXIT_ADMIT;
        }
        memcpy(n->cert_by, c.by, 32);
        n->cert_exp = c.exp;
        if (c.stage >= 0 && n->role == &sw_join_role) {
            char want[16];
            snprintf(want, sizeof(want), "%d", c.stage);
            if (!strcmp(n->o.stage, "auto")) {
                sw_log(SW_LOG_INFO, "the certificate admits this node to stage %d only", c.stage);
                snprintf(n->o.stage, sizeof(n->o.stage), "%s", want);
            } else if (strcmp(n->o.stage, want) != 0) {
                sw_log(SW_LOG_ERROR, "not admitted: the certificate '%s' allows stage %d only, "
                       "not --stage %s", n->o.cert, c.stage, n->o.stage);
                return SW_EXIT_ADMIT;
            }
        }
    }
    if (sw_admit_init(&n->admit, n->man.run_id, n->owner, false, 0) < 0)
        return SW_EXIT_FAIL;
    sw_revoked_key(n->revoke_key, n->man.run_id);
    n->have_admit = true;
    return 0;
}

static void
on_revoke_put(void *arg, int status, unsigned n_stored, const struct sw_dht_lookup_info *info)
{
    (void)arg;
    (void)n_stored;
    (void)info;
    if (status < 0 && status != -SW_ECANCELED)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 60000, "cannot put the revocation list again: %s",
                           sw_strerror(status));
}

static void fail(struct sw_node *n, int code);

/* The revocation list came: the newest one the owner signed is taken. */
static void
on_revoked(void *arg, int status, const struct sw_dht_record *recs, size_t cnt,
           const struct sw_dht_lookup_info *info)
{
    struct sw_node *n = arg;
    const struct sw_dht_record *best = NULL;
    struct sw_revoked l, best_l;

    (void)info;
    n->revoke_pending = false;
    if (status < 0 || n->phase != SW_NODE_RUN || !n->have_admit)
        return;
    for (size_t i = 0; i < cnt; i++)
        if (!memcmp(recs[i].pub, n->owner, 32) && recs[i].val_len <= sizeof(n->revoke_val) &&
            sw_revoked_decode(recs[i].val, recs[i].val_len, n->man.run_id, n->owner, &l) == 0 &&
            l.seq > n->admit.revoked.seq && (!best || l.seq > best_l.seq)) {
            best = &recs[i];
            best_l = l;
        }
    if (!best || !sw_admit_set_revoked(&n->admit, &best_l))
        return;
    sw_log(SW_LOG_INFO, "revocation list %llu: %d key%s revoked by the run owner",
           (unsigned long long)best_l.seq, best_l.n, best_l.n == 1 ? "" : "s");
    n->revoke_rec = *best;
    memcpy(n->revoke_val, best->val, best->val_len);
    n->revoke_rec.val = n->revoke_val;
    n->revoke_rec.ttl_s = SW_REVOKED_TTL_S;
    n->revoke_put_ms = sw_now_ms();
    if (sw_revoked_has(&best_l, n->id.pk) || sw_revoked_has(&best_l, n->cert_by)) {
        sw_log(SW_LOG_ERROR, "not admitted: the run owner revoked this node's %s; leaving",
               sw_revoked_has(&best_l, n->id.pk) ? "key" : "certificate's signer");
        fail(n, SW_EXIT_ADMIT);
    }
}

static void
on_revoke_timer(uv_timer_t *h)
{
    struct sw_node *n = h->data;

    if (n->phase != SW_NODE_RUN || !n->dht || n->revoke_pending)
        return;
    /* the others refuse an expired certificate: leave rather than be cut off */
    if (n->cert_exp && wall_s() > n->cert_exp + SW_CERT_SKEW_S) {
        sw_log(SW_LOG_ERROR, "not admitted: this node's certificate '%s' has expired; leaving",
               n->o.cert);
        fail(n, SW_EXIT_ADMIT);
        return;
    }
    n->revoke_pending = sw_dhtnode_get(n->dht, n->revoke_key, on_revoked, n) == 0;
    if (n->role == &sw_bootstrap_role && n->revoke_rec.val_len &&
        sw_now_ms() - n->revoke_put_ms >= SW_REVOKED_EVERY_MS) {
        n->revoke_put_ms = sw_now_ms();
        if (sw_dhtnode_put(n->dht, &n->revoke_rec, on_revoke_put, NULL) < 0)
            SW_LOG_RATELIMITED(SW_LOG_WARN, 60000, "cannot put the revocation list again");
    }
}

/* ---- helpers for the roles ---- */

static void
on_scan(void *arg, int status, const struct sw_peer_rec *recs, int cnt, uint64_t max_step)
{
    struct sw_node *n = arg;

    if (status == -SW_ECANCELED || n->phase == SW_NODE_CLOSING)
        return;
    n->role->scanned(n, status, recs, cnt, max_step);
}

int
sw_node_scan(struct sw_node *n)
{
    if (!n->have_scan)
        return -SW_EINVAL;
    return sw_status_scan_start(&n->scan, on_scan, n);
}

struct probe {
    uv_tcp_t tcp;
    uv_connect_t req;
    uv_timer_t timer;
    struct sw_node *n;
    uint8_t pk[32];
    int open;             /* handles not closed yet */
    sw_node_probe_cb *done;
    void *arg;
};

static void
on_probe_closed(uv_handle_t *h)
{
    struct probe *p = h->data;

    if (--p->open == 0)
        sw_free(p);
}

static void
probe_end(struct probe *p, int res)
{
    if (uv_is_closing((uv_handle_t *)&p->timer))
        return;
    uv_close((uv_handle_t *)&p->timer, on_probe_closed);
    uv_close((uv_handle_t *)&p->tcp, on_probe_closed);
    if (p->n->phase == SW_NODE_RUN)
        p->done(p->arg, p->pk, res);
}

static void
on_probe_connect(uv_connect_t *req, int status)
{
    probe_end(req->data, status == UV_ECONNREFUSED ? SW_PROBE_REFUSED
                         : status == 0                ? SW_PROBE_CONNECTED
                                                      : SW_PROBE_UNKNOWN);
}

static void
on_probe_timer(uv_timer_t *h)
{
    probe_end(h->data, SW_PROBE_UNKNOWN); /* closing the tcp handle cancels the connect */
}

/* tcp://HOST:PORT (HOST an IPv4 or [IPv6] address) into sa; false for anything else. */
static bool
probe_addr(const char *ep, struct sockaddr_storage *sa)
{
    char host[64];
    int port;

    if (sw_transport_endpoint_split(ep, host, sizeof(host), &port) < 0)
        return false;
    return port > 0 &&
           (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)sa) == 0 ||
            uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)sa) == 0);
}

void
sw_node_probe(struct sw_node *n, const uint8_t *pk, const char *ep, uint64_t timeout_ms,
              sw_node_probe_cb *done, void *arg)
{
    struct sockaddr_storage sa;
    struct probe *p;

    if (n->phase == SW_NODE_CLOSING || !probe_addr(ep, &sa) || !(p = sw_calloc(1, sizeof(*p)))) {
        done(arg, pk, SW_PROBE_UNKNOWN);
        return;
    }
    p->n = n;
    p->done = done;
    p->arg = arg;
    memcpy(p->pk, pk, 32);
    uv_tcp_init(n->loop, &p->tcp);
    uv_timer_init(n->loop, &p->timer);
    p->open = 2;
    p->tcp.data = p->timer.data = p->req.data = p;
    if (uv_tcp_connect(&p->req, &p->tcp, (struct sockaddr *)&sa, on_probe_connect) != 0) {
        uv_close((uv_handle_t *)&p->timer, on_probe_closed);
        uv_close((uv_handle_t *)&p->tcp, on_probe_closed);
        done(arg, pk, SW_PROBE_UNKNOWN);
        return;
    }
    uv_timer_start(&p->timer, on_probe_timer, timeout_ms, 0);
}

struct answer {
    struct sw_node *n;
    sw_node_answer_cb *done;
    void *arg;
    uint64_t tag;
};

static void
on_answer(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    struct answer a = *(struct answer *)arg;

    (void)t;
    sw_free(arg);
    if (status == -SW_ECANCELED || a.n->phase != SW_NODE_RUN)
        return;
    a.done(a.arg, a.tag, status, m);
    sw_node_wake(a.n, 0);
}

int
sw_node_request(struct sw_node *n, const char *ep, uint32_t type, const void *body, size_t len,
                uint64_t timeout_ms, int retries, sw_node_answer_cb *done, void *arg, uint64_t tag)
{
    struct answer *a = sw_malloc(sizeof(*a));
    int err;

    if (!a)
        return -SW_ENOMEM;
    *a = (struct answer){n, done, arg, tag};
    if ((err = sw_transport_request(n->tr, ep, type, body, len, NULL, timeout_ms, retries,
                                    on_answer, a)) < 0)
        sw_free(a);
    return err;
}

static void
live_probed(void *arg, const uint8_t *pk, int res)
{
    struct sw_node_live *l = arg;

    sw_live_probed(&l->lv, pk, res == SW_PROBE_REFUSED);
    if (res == SW_PROBE_CONNECTED)
        sw_live_connected(&l->lv, pk, sw_now_ms());
}

static void
live_probe(void *arg, const uint8_t *pk, const char *ep, uint64_t timeout_ms)
{
    struct sw_node_live *l = arg;

    sw_node_probe(l->n, pk, ep, timeout_ms, live_probed, l);
}

static const struct sw_live_ops node_live_ops = {NULL, live_probe, NULL};

void
sw_node_live_init(struct sw_node_live *l, struct sw_node *n)
{
    int dead_ms = n->o.dead_ms > 0 ? n->o.dead_ms : SW_LIVE_DEAD_MS;

    l->n = n;
    sw_live_init(&l->lv, n->id.pk, dead_ms, sw_live_pub_every(dead_ms), 0, &node_live_ops, l);
}

static void on_tick(uv_timer_t *h);

void
sw_node_wake(struct sw_node *n, uint64_t ms)
{
    if (n->have_tick && n->phase == SW_NODE_RUN &&
        uv_timer_get_due_in(&n->tick) > SW_MIN(ms, (uint64_t)SW_NODE_TICK_MS))
        uv_timer_start(&n->tick, on_tick, SW_MIN(ms, (uint64_t)SW_NODE_TICK_MS), 0);
}

/* ---- the lifecycle ---- */

static void
on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

/* The tick closes last, once the transports are closed.  The signal
 * handles are only unreferenced here, so that the loop can end: they stay
 * installed through the role's release and the rest of the teardown, which
 * can take seconds (threads joined, a save finishing).  Closing them here
 * let libuv put back the default action (uv_close of the last handle of a
 * signal restores SIG_DFL), and a second signal in that window killed the
 * process with 143; swarmd(1) promises exit 0 on a signal.  They are closed
 * in signals_close, after everything else. */
static void
close_last(struct sw_node *n)
{
    if (!n->have_tick)
        return;
    n->have_tick = false;
    uv_timer_stop(&n->tick);
    uv_close((uv_handle_t *)&n->tick, on_handle_closed);
    uv_close((uv_handle_t *)&n->revoke_timer, on_handle_closed);
    uv_unref((uv_handle_t *)&n->sigint);
    uv_unref((uv_handle_t *)&n->sigterm);
}

static void
signals_ignore(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* The very end: the node is gone, a signal now has nothing left to stop.
 * SIG_IGN replaces libuv's handler, so a signal is ignored whichever thread
 * takes it, and the signal handles are left open: closing the last one
 * makes libuv put back SIG_DFL, and a signal between that and a second
 * SIG_IGN killed the process with 130 (t0399, one trial in a run of 8, a
 * burst of TERM and INT during the teardown).  The process ends right
 * after; the loop is not closed (its handles are still open: uv_loop_close
 * would refuse, EBUSY), and nothing of libuv runs again. */
static void
signals_close(struct sw_node *n)
{
    if (!n->have_signals)
        return;
    n->have_signals = false;
    signals_ignore();
}

static void
on_closed(void *arg)
{
    struct sw_node *n = arg;

    if (--n->nclose == 0)
        close_last(n);
}

/* Close everything; the loop ends once the handles are closed. */
static void
node_close(struct sw_node *n)
{
    if (n->phase == SW_NODE_CLOSING)
        return;
    n->phase = SW_NODE_CLOSING;
    if (n->have_tick) {
        uv_timer_stop(&n->tick);
        uv_timer_stop(&n->revoke_timer);
    }
    if (n->metrics)
        sw_metrics_close(n->metrics);
    n->metrics = NULL;
    if (n->dht) {
        sw_dhtnode_close(n->dht); /* before its transport (dhtnode.h) */
        n->dht = NULL;
    }
    if (n->tr) {
        n->nclose++;
        sw_transport_close(n->tr, on_closed, n);
        n->tr = NULL;
    }
    if (n->lobby) {
        n->nclose++;
        sw_transport_close(n->lobby, on_closed, n);
        n->lobby = NULL;
    }
    if (!n->nclose)
        close_last(n);
}

static void
fail(struct sw_node *n, int code)
{
    n->exit_code = code;
    node_close(n);
}

/* The endpoints a node joins the DHT through (the bootstrap's, and the
 * peer's when another) into eps; how many. */
static size_t
join_eps(const struct sw_node *n, const char *eps[2])
{
    eps[0] = n->boot_ep;
    eps[1] = n->peer_ep;
    return n->peer_ep[0] && strcmp(n->peer_ep, n->boot_ep) ? 2 : 1;
}

static void
on_dht_rejoined(void *arg, int status, const struct sw_dht_contact *c, size_t cnt,
                const struct sw_dht_lookup_info *info)
{
    (void)arg;
    (void)c;
    (void)info;
    if (status == -SW_ECANCELED)
        return;
    if (status < 0)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 30000, "cannot join the DHT again: %s",
                           sw_strerror(status));
    else
        sw_log(SW_LOG_INFO, "joined the DHT again (%zu nodes near us)", cnt);
}

/*
 * A node whose every contact timed out (its own loop held for seconds by a
 * big stage's set-up times out every request in flight at once; a home link
 * that went down a while) has an empty table: every lookup then ends at once
 * on this node alone, its records are stored nowhere else and its scans see
 * only itself, for good.  It joins again through the endpoints it joined
 * through first, every SW_NODE_REJOIN_MS while the table stays empty.
 */
static void
rejoin_if_alone(struct sw_node *n, uint64_t now)
{
    const char *eps[2];
    size_t cnt = join_eps(n, eps);
    int err;

    if (!n->dht || n->role == &sw_bootstrap_role || !n->boot_ep[0] ||
        now - n->rejoin_ms < SW_NODE_REJOIN_MS ||
        sw_dht_count_contacts(sw_dhtnode_dht(n->dht)) > 0)
        return;
    n->rejoin_ms = now;
    SW_LOG_RATELIMITED(SW_LOG_WARN, 30000, "every DHT contact timed out: joining again through %s",
                       n->boot_ep);
    if ((err = sw_dhtnode_bootstrap(n->dht, eps, cnt, on_dht_rejoined, n)) < 0 &&
        err != -SW_EAGAIN)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 30000, "cannot join the DHT again: %s",
                           sw_strerror(err));
}

static void
on_tick(uv_timer_t *h)
{
    struct sw_node *n = h->data;
    uint64_t now, wake;

    if (n->phase != SW_NODE_RUN)
        return;
    now = sw_now_ms();
    rejoin_if_alone(n, now);
    wake = n->role->tick(n, now);
    if (wake == SW_NODE_DONE) {
        node_close(n);
        return;
    }
    /* at least a millisecond: a role asking again at once must not spin the loop */
    if (n->phase == SW_NODE_RUN)
        uv_timer_start(&n->tick, on_tick,
                       wake <= now ? 1 : SW_MIN(wake - now, (uint64_t)SW_NODE_TICK_MS), 0);
}

static void
on_signal(uv_signal_t *h, int sig)
{
    struct sw_node *n = h->data;

    if (n->phase == SW_NODE_RUN) {
        n->role->signal(n, sig);
        sw_node_wake(n, 0);
    } else if (n->phase != SW_NODE_CLOSING) {
        sw_log(SW_LOG_INFO, "signal %d: leaving", sig);
        node_close(n);
    } else {
        sw_log(SW_LOG_INFO, "signal %d: already leaving", sig);
    }
}

static int
metrics_fill(void *arg, char *buf, size_t len)
{
    struct sw_node *n = arg;
    struct sw_wire *w = n->tr ? sw_transport_wire(n->tr) : NULL;
    size_t off = 0;
    char runhex[65];
    int err;

    sw_identity_hex(runhex, n->man.run_id, 32);
    if ((err = sw_metrics_append(buf, len, &off,
                                 "# HELP swarm_info Run and role of this process.\n"
                                 "# TYPE swarm_info gauge\n"
                                 "swarm_info{run=\"%.16s\",role=\"%s\"} 1\n",
                                 runhex, n->role->name)) < 0 ||
        (n->phase == SW_NODE_RUN && (err = n->role->metrics(n, buf, len, &off)) < 0))
        return err;
    if (!w)
        return (int)off;
    if ((err = sw_reach_metrics(&n->reach_srv, n->role == &sw_join_role ? &n->reach : NULL, buf,
                                len, &off)) < 0 ||
        (err = sw_outbound_metrics(n->role == &sw_join_role ? &n->outb : NULL, buf, len,
                                   &off)) < 0)
        return err;
    if ((err = sw_metrics_append(buf, len, &off,
                                 "# HELP swarm_wire_dropped_total Messages dropped, "
                                 "by reason.\n# TYPE swarm_wire_dropped_total counter\n")) < 0)
        return err;
    for (int r = 0; r < SW_WIRE_DROP__COUNT; r++)
        if ((err = sw_metrics_append(buf, len, &off,
                                     "swarm_wire_dropped_total{reason=\"%s\"} %llu\n",
                                     sw_wire_drop_name(r),
                                     (unsigned long long)w->stats.drops[r])) < 0)
            return err;
    if (n->have_admit) {
        if ((err = sw_metrics_append(buf, len, &off, "# HELP swarm_admit_refused_total Senders and "
                                     "records refused admission, by reason.\n"
                                     "# TYPE swarm_admit_refused_total counter\n")) < 0)
            return err;
        for (int r = 1; r < SW_ADMIT__COUNT; r++)
            if ((err = sw_metrics_append(buf, len, &off,
                                         "swarm_admit_refused_total{reason=\"%s\"} %llu\n",
                                         sw_admit_why_name(r),
                                         (unsigned long long)n->admit.drops[r])) < 0)
                return err;
        if ((err = sw_metrics_append(buf, len, &off, "# HELP swarm_admit_records_dropped_total "
                                     "Stage records of unadmitted publishers dropped by scans.\n"
                                     "# TYPE swarm_admit_records_dropped_total counter\n"
                                     "swarm_admit_records_dropped_total %llu\n",
                                     (unsigned long long)n->scan.unadmitted)) < 0)
            return err;
    }
    {
        struct sw_transport *trs[2] = {n->tr, n->lobby};
        struct sw_dht_stats ds = {0};

        if (n->dht)
            sw_dht_get_stats(sw_dhtnode_dht(n->dht), &ds);
        if ((err = sw_metrics_ratelimit(buf, len, &off, trs, 2, ds.drop_ratelimit)) < 0)
            return err;
    }
    if ((err = sw_metrics_append(buf, len, &off, "# HELP swarm_wire_accepted_total Messages "
                                 "accepted.\n# TYPE swarm_wire_accepted_total counter\n"
                                 "swarm_wire_accepted_total %llu\n",
                                 (unsigned long long)w->stats.accepted)) < 0)
        return err;
    return (int)off;
}

/* The role runs: metrics, the tick. */
static void
run(struct sw_node *n)
{
    int err;

    if ((err = n->role->start(n)) != 0) {
        fail(n, err);
        return;
    }
    if (n->phase == SW_NODE_CLOSING)
        return;
    if (n->o.metrics[0] &&
        sw_metrics_start(&n->metrics, n->loop, n->o.metrics, metrics_fill, n) < 0) {
        fail(n, SW_EXIT_USAGE);
        return;
    }
    n->phase = SW_NODE_RUN;
    uv_timer_start(&n->tick, on_tick, 0, 0);
    if (n->have_admit)
        uv_timer_start(&n->revoke_timer, on_revoke_timer, 100, SW_REVOKED_POLL_MS);
}

/* The reachability verdict (reach.h): the bootstrap, the peer given, then
 * DHT contacts dial this node back; it logs its one line when done. */
static void
reach_check(struct sw_node *n)
{
    struct sw_dht_contact cs[SW_REACH_PEERS];
    const char *eps[2 + SW_REACH_PEERS] = {n->boot_ep, n->peer_ep};
    size_t k = sw_dht_closest(sw_dhtnode_dht(n->dht), sw_dht_id(sw_dhtnode_dht(n->dht)), cs,
                              SW_REACH_PEERS);

    for (size_t i = 0; i < k; i++)
        eps[2 + i] = cs[i].ep;
    if (sw_reach_check_start(&n->reach, n->tr, n->ep, eps, (int)(2 + k), NULL, NULL) < 0)
        sw_log(SW_LOG_WARN, "reachability unknown at %s (cannot check it); carrying on", n->ep);
}

static void
on_dht_joined(void *arg, int status, const struct sw_dht_contact *c, size_t cnt,
              const struct sw_dht_lookup_info *info)
{
    struct sw_node *n = arg;

    (void)c;
    (void)info;
    if (status == -SW_ECANCELED || n->phase != SW_NODE_DHT)
        return;
    if (status < 0) {
        sw_log(SW_LOG_ERROR, "cannot join the DHT through '%s': %s", n->boot_ep,
               sw_strerror(status));
        fail(n, SW_EXIT_NOPEER);
        return;
    }
    sw_log(SW_LOG_INFO, "joined the DHT through %s (%zu nodes near us)", n->boot_ep, cnt);
    if (n->role == &sw_join_role)
        reach_check(n);
    run(n);
}

/* "tcp://host:port" -> "tcp://host:*" for the run transport, or
 * "tcp://host:P" for --advertise tcp://A:P (the port forwarded to it). */
static void
run_endpoint_for(const char *lobby, const char *advertise, char *out, size_t len)
{
    const char *colon = strrchr(lobby, ':');
    int port = 0;

    if (advertise[0] && sw_transport_endpoint_split(advertise, NULL, 0, &port) < 0)
        port = 0;
    if (!strncmp(lobby, "tcp://", 6) && colon && colon > lobby + 6 && port > 0)
        snprintf(out, len, "%.*s:%d", (int)(colon - lobby), lobby, port);
    else if (!strncmp(lobby, "tcp://", 6) && colon && colon > lobby + 6)
        snprintf(out, len, "%.*s:*", (int)(colon - lobby), lobby);
    else
        snprintf(out, len, "tcp://127.0.0.1:*");
}

/* --advertise: the run endpoint the others are told (n->ep) is its address,
 * with the port bound when it says "*"; false when it does not fit. */
static bool
advertise_ep(struct sw_node *n)
{
    char adv[SW_PROTO_EP_MAX];
    const char *star = strrchr(n->o.advertise, ':'), *bound = strrchr(n->ep, ':');
    int len;

    if (!star || !bound)
        return false;
    if (!strcmp(star, ":*"))
        len = snprintf(adv, sizeof(adv), "%.*s%s", (int)(star - n->o.advertise),
                       n->o.advertise, bound);
    else
        len = snprintf(adv, sizeof(adv), "%s", n->o.advertise);
    if (len < 0 || (size_t)len >= sizeof(adv))
        return false;
    sw_log(SW_LOG_INFO, "run transport bound at %s, advertised as %s", n->ep, adv);
    memcpy(n->ep, adv, (size_t)len + 1);
    return true;
}

/*
 * Rate limits of the request types a stranger could flood (net/transport.h
 * "Rate limits"), sized so that honest use never meets them: a state copy
 * asks STATE_GET for pieces of 4 MiB, 8 in flight (peers/recover.c), and a
 * 500 MiB stage with its moments is 375 pieces, within one burst; the keeper
 * pulls CKPT pieces one at a time; the leader sends one PREPARE per node and
 * step; a joiner or swarmctl asks for the manifest once.  Global: all keys
 * of a type together (a few copies at once fit in its burst).
 */
static const struct {
    uint32_t type;
    double rate, burst, g_rate, g_burst;
} limits[] = {
    {SW_MSG_STATE_GET, 128, 1024, 256, 4096},
    {SW_MSG_CKPT_GET, 128, 1024, 256, 4096},
    {SW_MSG_CKPT_INFO_GET, 20, 100, 160, 800},
    {SW_MSG_PREPARE, 100, 400, 800, 3200},
    {SW_MSG_MANIFEST_GET, 5, 20, 50, 200}, /* the lobby */
};

static int
limits_register(struct sw_transport *t, bool lobby)
{
    for (size_t i = 0; i < SW_ARRAY_SIZE(limits); i++)
        if ((limits[i].type == SW_MSG_MANIFEST_GET) == lobby &&
            (sw_transport_limit(t, limits[i].type, limits[i].rate, limits[i].burst) < 0 ||
             sw_transport_limit_global(t, limits[i].type, limits[i].g_rate, limits[i].g_burst) < 0))
            return -1;
    return 0;
}

/* The run transport and the DHT node on it; 0 or an exit code. */
static int
dht_start(struct sw_node *n)
{
    struct sw_transport_opts topts = {0};
    struct sw_dht_params p;
    char bind_ep[256];
    int err;

    topts.max_queue = (size_t)SW_MAX(256, 2 * n->man.micro + 16);
    if ((err = sw_transport_new(&n->tr, n->loop, &n->id, n->man.run_id, &topts)) < 0)
        return SW_EXIT_FAIL;
    /* pipeline messages get their own sequence window: floods cannot make them stale */
    if (sw_proto_pipeline_class(sw_transport_wire(n->tr)) < 0 || limits_register(n->tr, false) < 0)
        return SW_EXIT_FAIL;
    if (n->cert_len && sw_wire_set_cert(sw_transport_wire(n->tr), n->cert, n->cert_len) < 0)
        return SW_EXIT_FAIL;
    if (n->have_admit)
        sw_transport_set_admit(n->tr, on_admit, n);
    if (n->o.relay &&
        sw_transport_set_relay(n->tr, true, SW_TRANSPORT_RELAY_RATE, SW_TRANSPORT_RELAY_BURST) < 0)
        return SW_EXIT_FAIL;
    run_endpoint_for(n->lobby_ep, n->o.advertise, bind_ep, sizeof(bind_ep));
    if ((err = sw_transport_bind(n->tr, bind_ep, n->ep, sizeof(n->ep))) < 0) {
        sw_log(SW_LOG_ERROR, "cannot listen on '%s': %s", bind_ep, sw_strerror(err));
        return SW_EXIT_FAIL;
    }
    if (n->o.advertise[0] && !advertise_ep(n)) {
        sw_log(SW_LOG_ERROR, "--advertise '%s': too long", n->o.advertise);
        return SW_EXIT_USAGE;
    }
    if (!n->boot_ep[0])
        snprintf(n->boot_ep, sizeof(n->boot_ep), "%s", n->ep); /* the bootstrap itself */
    if (sw_transport_on(n->lobby, SW_MSG_MANIFEST_GET, on_manifest_get, n) < 0 ||
        sw_reach_serve(&n->reach_srv, n->tr) < 0)
        return SW_EXIT_FAIL;
    sw_dht_params_default(&p);
    p.rpc_timeout_ms = SW_NODE_DHT_RPC_MS;
    p.questionable_ms = SW_NODE_DHT_QUESTIONABLE_MS;
    if ((err = sw_dhtnode_new(&n->dht, n->loop, n->tr, n->ep, &p)) < 0) {
        sw_log(SW_LOG_ERROR, "cannot start the DHT node: %s", sw_strerror(err));
        return SW_EXIT_FAIL;
    }
    if (sw_status_scan_init(&n->scan, n->dht, n->man.run_id, n->man.stages) < 0)
        return SW_EXIT_FAIL;
    n->have_scan = true;
    if (n->have_admit) {
        n->scan.admit = rec_admitted;
        n->scan.admit_arg = n;
    }
    return 0;
}

/* The manifest is in: lobby, run transport, DHT; the role starts once joined. */
static void
manifest_ready(struct sw_node *n)
{
    const char *eps[2];
    size_t cnt = join_eps(n, eps);
    int err;

    if ((err = admission_setup(n)) != 0) {
        fail(n, err);
        return;
    }
    if ((err = sw_transport_bind(n->lobby, n->o.listen, n->lobby_ep, sizeof(n->lobby_ep))) < 0) {
        sw_log(SW_LOG_ERROR, "cannot listen on '%s': %s", n->o.listen, sw_strerror(err));
        fail(n, SW_EXIT_USAGE);
        return;
    }
    if ((err = dht_start(n)) != 0) {
        fail(n, err);
        return;
    }
    if (n->role == &sw_bootstrap_role) {
        run(n);
        return;
    }
    n->phase = SW_NODE_DHT;
    if ((err = sw_dhtnode_bootstrap(n->dht, eps, cnt, on_dht_joined, n)) < 0) {
        sw_log(SW_LOG_ERROR, "cannot join the DHT: %s", sw_strerror(err));
        fail(n, SW_EXIT_FAIL);
    }
}

/* --owner given: the 32 bytes it names into want; false (logged) when malformed. */
static bool
owner_opt(const struct sw_node *n, uint8_t want[32])
{
    if (strlen(n->o.owner) != 64 || sw_hex_decode(want, 32, n->o.owner) < 0) {
        sw_log(SW_LOG_ERROR, "--owner: want 64 hex digits");
        return false;
    }
    return true;
}

/* The run as the peer sent it: parsed and verified; 0 or an exit code. */
static int
manifest_check(struct sw_node *n, const struct sw_manifest_reply *r)
{
    uint8_t want[32];
    char why[512], a[65];

    if (sw_manifest_parse(&n->man, "manifest from peer", r->bytes, r->len, why, sizeof(why)) < 0) {
        sw_log(SW_LOG_ERROR, "refusing the run: %s", why);
        return SW_EXIT_MANIFEST;
    }
    n->have_man = true;
    memcpy(n->owner, r->owner, 32);
    memcpy(n->sig, r->sig, 64);
    snprintf(n->peer_ep, sizeof(n->peer_ep), "%s", r->ep);
    snprintf(n->boot_ep, sizeof(n->boot_ep), "%s", r->boot);
    if (n->o.owner[0]) {
        if (!owner_opt(n, want))
            return SW_EXIT_MANIFEST;
        if (sodium_memcmp(want, n->owner, 32) != 0) {
            sw_log(SW_LOG_ERROR, "refusing the run: its manifest is signed by %s, not by the "
                   "owner given with --owner", sw_identity_hex(a, n->owner, 32));
            return SW_EXIT_MANIFEST;
        }
    } else {
        sw_log(SW_LOG_WARN, "no --owner given: trusting the owner the peer names, %s",
               sw_identity_hex(a, n->owner, 32));
    }
    if (!sw_manifest_verify(n->owner, n->man.run_id, n->sig)) {
        sw_log(SW_LOG_ERROR, "refusing the run: bad manifest signature");
        return SW_EXIT_MANIFEST;
    }
    return 0;
}

static void
on_manifest(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    struct sw_node *n = arg;
    struct sw_manifest_reply r;
    int code;

    (void)t;
    if (status == -SW_ECANCELED || n->phase != SW_NODE_MANIFEST)
        return;
    if (status < 0) {
        sw_log(SW_LOG_ERROR, "peer '%s' does not answer", n->o.peer);
        fail(n, SW_EXIT_NOPEER);
        return;
    }
    if (sw_node_manifest_read(m, &r) < 0) {
        sw_log(SW_LOG_ERROR, "malformed manifest reply from '%s'", n->o.peer);
        fail(n, SW_EXIT_MANIFEST);
        return;
    }
    if ((code = manifest_check(n, &r)) != 0) {
        fail(n, code);
        return;
    }
    manifest_ready(n);
}

static int
load_own_manifest(struct sw_node *n)
{
    uint8_t want[32];
    char why[512];
    int err;

    if ((err = sw_manifest_load(&n->man, n->o.run, why, sizeof(why))) < 0) {
        sw_log(SW_LOG_ERROR, "%s", why);
        return err;
    }
    n->have_man = true;
    if (n->o.owner[0] && !owner_opt(n, want))
        return -SW_ECONFIG;
    return sw_manifest_check_sigfile(&n->man, n->o.run, n->o.owner[0] ? want : NULL, n->owner,
                                     n->sig);
}

/* Identity, lobby, the manifest (own, or asked for); 0 or an exit code. */
static int
node_start(struct sw_node *n)
{
    struct sw_transport_opts topts = {0};
    int err;

    if ((err = sw_identity_global_init()) < 0)
        return SW_EXIT_FAIL;
    err = n->o.key[0] ? sw_identity_load_or_create(&n->id, n->o.key) : sw_identity_generate(&n->id);
    if (err < 0) {
        sw_log(SW_LOG_ERROR, "no node key: %s", sw_strerror(err));
        return SW_EXIT_FAIL;
    }
    uv_timer_init(n->loop, &n->tick);
    uv_timer_init(n->loop, &n->revoke_timer);
    n->revoke_timer.data = n;
    uv_signal_init(n->loop, &n->sigint);
    uv_signal_init(n->loop, &n->sigterm);
    n->tick.data = n->sigint.data = n->sigterm.data = n;
    n->have_tick = n->have_signals = true;
    uv_signal_start(&n->sigint, on_signal, SIGINT);
    uv_signal_start(&n->sigterm, on_signal, SIGTERM);
    topts.idle_ms = 600000;
    if ((err = sw_transport_new(&n->lobby, n->loop, &n->id, sw_proto_lobby_run, &topts)) < 0 ||
        limits_register(n->lobby, true) < 0)
        return SW_EXIT_FAIL;
    if (n->role == &sw_bootstrap_role) {
        if (load_own_manifest(n) < 0)
            return SW_EXIT_MANIFEST;
        manifest_ready(n);
        return n->phase == SW_NODE_CLOSING ? n->exit_code : 0;
    }
    n->phase = SW_NODE_MANIFEST;
    if ((err = sw_transport_request(n->lobby, n->o.peer, SW_MSG_MANIFEST_GET, NULL, 0, NULL, 2000,
                                    4, on_manifest, n)) < 0) {
        sw_log(SW_LOG_ERROR, "cannot ask '%s' for the manifest: %s", n->o.peer, sw_strerror(err));
        return SW_EXIT_NOPEER;
    }
    return 0;
}

int
sw_node_main(const struct sw_node_opts *o)
{
    struct sw_node *n = sw_calloc(1, sizeof(*n));
    uv_loop_t loop;
    bool had_signals;
    int code;

    if (!n)
        return SW_EXIT_FAIL;
    n->o = *o;
    n->role = !strcmp(o->mode, "bootstrap") ? &sw_bootstrap_role
              : !strcmp(o->mode, "keeper")  ? &sw_keeper_role
                                            : &sw_join_role;
    uv_loop_init(&loop);
    n->loop = &loop;
    if ((code = node_start(n)) != 0)
        fail(n, code);
    uv_run(&loop, UV_RUN_DEFAULT);
    node_close(n); /* a role that ended the loop by itself */
    uv_run(&loop, UV_RUN_DEFAULT);
    code = n->exit_code;
    if (n->role->release)
        n->role->release(n);
    if (n->have_scan)
        sw_status_scan_release(&n->scan);
    if (n->have_man)
        sw_manifest_release(&n->man);
    if (n->have_admit)
        sw_admit_release(&n->admit);
    sw_reach_srv_release(&n->reach_srv);
    sw_identity_release(&n->id);
    had_signals = n->have_signals;
    signals_close(n);
    if (!had_signals)
        uv_loop_close(&loop);
    /* else the signal handles stay in libuv's tables: n is not freed */
    return code;
}
