/*
 * test_transport_route.c - routes by key (net/transport.h, "Routes by key"),
 * in one process on tcp loopback.
 *
 * A server transport binds a ROUTER; an outbound-only client (no ROUTER of
 * its own) pings it, and from then on the server reaches the client through
 * the endpoint "key:<client>": requests answered and one-way messages
 * delivered over the client's own connection.  A stranger's own messages
 * bind only the stranger's key; a message claiming the client's key with
 * a stranger's signature, and a replay of the client's message over
 * another connection, are dropped and move nothing; a refused (admission)
 * key binds nothing; a fresh message of the client's key over a new
 * connection (a reconnect) moves the route there, and back.  The table
 * holds max_routes keys: the least recently heard goes.  Back-pressure on
 * the ROUTER (a high-water mark of 2): 12 messages of 4 MiB to one key all
 * arrive, and another key's request is answered meanwhile.  Bounded by
 * alarm(); no wall-clock asserts.
 */
#include "sw.h"

#include "identity.h"
#include "tap.h"
#include "transport.h"
#include "wire.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define T_ECHO 1100 /* test-only request: answered ACK with the same body */
#define T_NOTE 1101 /* test-only one-way message: counted */

static uint8_t run[32];
static uv_loop_t loop;

struct client {
    struct sw_identity id;
    struct sw_transport *t;
    int notes, echoes;
    bool last_reverse, last_relay;
    uint8_t last_key[32];          /* the relayed sender the route names */
    size_t last_len;               /* the last note's payload */
};

struct waiter {
    int done, status;
    uint8_t sender[32];
};

static void
wait_cb(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    struct waiter *w = arg;

    w->done = 1;
    w->status = status;
    if (m)
        memcpy(w->sender, m->hdr.sender, 32);
}

/* A request from t to ep, run to its end: its status (the answer's sender in w). */
static int
ask(struct sw_transport *t, const char *ep, uint32_t type, struct waiter *w)
{
    int err;

    memset(w, 0, sizeof(*w));
    if ((err = sw_transport_request(t, ep, type, NULL, 0, NULL, 2000, 0, wait_cb, w)) < 0)
        return err;
    while (!w->done)
        uv_run(&loop, UV_RUN_ONCE);
    return w->status;
}

static void
on_echo(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    struct client *c = arg;

    c->echoes++;
    c->last_reverse = m->route.reverse;
    c->last_relay = m->route.relay;
    memcpy(c->last_key, m->route.key, 32);
    if (sw_transport_reply(t, &m->route, SW_MSG_ACK, NULL, 0, NULL) < 0)
        tap_diag("reply failed");
}

static void
on_note(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    struct client *c = arg;

    c->notes++;
    c->last_reverse = m->route.reverse && m->route.rid == 0;
    c->last_relay = m->route.relay && m->route.rid == 0;
    memcpy(c->last_key, m->route.key, 32);
    c->last_len = m->payload_len;
}

static void
run_ms(uint64_t ms)
{
    uint64_t end = uv_now(&loop) + ms;

    while (uv_now(&loop) < end) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
        uv_update_time(&loop);
    }
}

static int
client_new(struct client *c)
{
    memset(c, 0, sizeof(*c));
    if (sw_identity_generate(&c->id) < 0 || sw_transport_new(&c->t, &loop, &c->id, run, NULL) < 0 ||
        sw_transport_on(c->t, T_ECHO, on_echo, c) < 0 ||
        sw_transport_on(c->t, T_NOTE, on_note, c) < 0)
        return -1;
    return 0;
}

static void
client_free(struct client *c)
{
    sw_transport_close(c->t, NULL, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    sw_identity_release(&c->id);
}

/* A raw DEALER that speaks for whoever sealed the frames it is given. */
static void *
raw_dealer(void *ctx, const char *ep)
{
    void *z = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;

    zmq_setsockopt(z, ZMQ_LINGER, &zero, sizeof(zero));
    if (zmq_connect(z, ep) != 0) {
        zmq_close(z);
        return NULL;
    }
    return z;
}

static void
raw_send(void *z, const uint8_t *env, size_t env_len, const uint8_t *sig)
{
    if (zmq_send(z, env, env_len, ZMQ_SNDMORE) < 0 || zmq_send(z, sig, SW_WIRE_SIG_BYTES, 0) < 0)
        tap_diag("raw send failed");
}

/* Frames of one message waiting on z (running the loop meanwhile): how many, 0 when none in
 * ms; the first frame's first byte into *first. */
static int
raw_recv(void *z, uint64_t ms, int *first)
{
    uint64_t end = uv_now(&loop) + ms;
    int n = 0, more = 1;

    while (uv_now(&loop) < end) {
        zmq_msg_t f;

        uv_run(&loop, UV_RUN_NOWAIT);
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, z, ZMQ_DONTWAIT) >= 0) {
            *first = zmq_msg_size(&f) == 1 ? *(uint8_t *)zmq_msg_data(&f) : -1;
            more = zmq_msg_more(&f);
            zmq_msg_close(&f);
            for (n = 1; more; n++) {
                zmq_msg_init(&f);
                if (zmq_msg_recv(&f, z, 0) < 0)
                    break;
                more = zmq_msg_more(&f);
                zmq_msg_close(&f);
            }
            return n;
        }
        zmq_msg_close(&f);
        usleep(1000);
        uv_update_time(&loop);
    }
    return 0;
}

/* Run the loop until *counter moves past was (2 s at most): the new value. */
static uint64_t
wait_past(const uint64_t *counter, uint64_t was)
{
    for (int i = 0; i < 2000 && *counter == was; i++)
        run_ms(1);
    return *counter;
}

/* Wait until c has taken more than n notes (2 s at most); its count. */
static int
wait_notes(struct client *c, int n)
{
    for (int i = 0; i < 2000 && c->notes <= n; i++)
        run_ms(1);
    return c->notes;
}

/* [mark][key][env][sig] on a raw socket (a ROUTER's id frame first when id). */
static void
raw_relayed(void *z, const zmq_msg_t *id, uint8_t mark, const uint8_t *key, const uint8_t *env,
            size_t env_len, const uint8_t *sig)
{
    zmq_msg_t f;

    if (id) {
        zmq_msg_init(&f);
        zmq_msg_copy(&f, (zmq_msg_t *)id);
        zmq_msg_send(&f, z, ZMQ_SNDMORE);
    }
    zmq_send(z, &mark, 1, ZMQ_SNDMORE);
    zmq_send(z, key, 32, ZMQ_SNDMORE);
    raw_send(z, env, env_len, sig);
}

/*
 * Relays (transport.h, "Relays"): two outbound-only clients A and B, both
 * connected to R, reach each other through it; R relays only when told to;
 * a stranger's replayed or forged relayed message is dropped at R; a relay
 * that names another sender than the signer is dropped at the addressee;
 * a key R has no connection of, and the relay limit.
 */
static void
test_relay(void)
{
    struct sw_identity rid_;
    struct sw_transport *r;
    struct sw_transport_relay_stats rs;
    struct client a, b, c;
    struct sw_wire wc;
    struct waiter w;
    char ep[SW_TRANSPORT_MAX_ENDPOINT], via_a[SW_TRANSPORT_MAX_ENDPOINT],
        via_b[SW_TRANSPORT_MAX_ENDPOINT], via_x[SW_TRANSPORT_MAX_ENDPOINT],
        relay[SW_TRANSPORT_MAX_ENDPOINT], fep[SW_TRANSPORT_MAX_ENDPOINT];
    uint8_t env[SW_WIRE_MAX_ENVELOPE], sig[SW_WIRE_SIG_BYTES], pk[32], nobody[32];
    size_t env_len, fep_len = sizeof(fep);
    static uint8_t big[16u << 20];
    uint64_t was, malformed;
    void *ctx, *x, *f;
    zmq_msg_t fid;
    int notes, err, got;

    if (sw_identity_generate(&rid_) < 0 || sw_transport_new(&r, &loop, &rid_, run, NULL) < 0 ||
        sw_transport_bind(r, "tcp://127.0.0.1:*", ep, sizeof(ep)) < 0 || client_new(&a) < 0 ||
        client_new(&b) < 0 || client_new(&c) < 0 || sw_wire_init(&wc, &c.id, run, NULL) < 0) {
        tap_ok(0, "relay: setup");
        return;
    }
    memset(nobody, 0x5a, sizeof(nobody));
    tap_ok(sw_transport_relay_endpoint(via_b, sizeof(via_b), b.id.pk, ep) == 0 &&
               sw_transport_relay_endpoint(via_a, sizeof(via_a), a.id.pk, ep) == 0 &&
               sw_transport_relay_endpoint(via_x, sizeof(via_x), nobody, ep) == 0 &&
               sw_transport_endpoint_is_relay(via_b, pk, relay, sizeof(relay)) &&
               !memcmp(pk, b.id.pk, 32) && !strcmp(relay, ep) &&
               !sw_transport_endpoint_is_key(via_b, NULL) &&
               sw_transport_relay_endpoint(relay, sizeof(relay), b.id.pk, "ipc:///x") < 0,
           "relay endpoints parse: %.20s...@%s", via_b, relay);
    /* both dial R (outbound-only: neither binds) */
    if (ask(a.t, ep, SW_MSG_PING, &w) < 0 || ask(b.t, ep, SW_MSG_PING, &w) < 0)
        tap_diag("pings to the relay failed");

    tap_ok(ask(a.t, via_b, T_ECHO, &w) == -SW_ETIMEDOUT && b.echoes == 0 &&
               (sw_transport_relay_stats(r, &rs), rs.refused >= 1),
           "a node that does not relay drops relayed messages (refused %llu)",
           (unsigned long long)rs.refused);

    if (sw_transport_set_relay(r, true, SW_TRANSPORT_RELAY_RATE, SW_TRANSPORT_RELAY_BURST) < 0)
        tap_diag("set_relay failed");
    tap_ok(ask(a.t, via_b, T_ECHO, &w) == 0 && !memcmp(w.sender, b.id.pk, 32) && b.echoes == 1 &&
               b.last_relay && !memcmp(b.last_key, a.id.pk, 32),
           "A's request reaches B through the relay, B's answer comes back through it");
    tap_ok(ask(b.t, via_a, T_ECHO, &w) == 0 && !memcmp(w.sender, a.id.pk, 32) && a.echoes == 1,
           "and B's request reaches A");
    sw_transport_relay_stats(r, &rs);
    was = rs.forwarded;
    sw_transport_relay_stats(a.t, &rs);
    tap_ok(was == 4 && rs.delivered == 2, "the relay passed on %llu messages; A received %llu "
           "relayed", (unsigned long long)was, (unsigned long long)rs.delivered);

    /* a payload of 16 MiB, one way */
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 131 + 7);
    notes = b.notes;
    {
        struct sw_payload pl = {big, sizeof(big), NULL, NULL, NULL};

        err = sw_transport_send(a.t, via_b, T_NOTE, NULL, 0, &pl);
    }
    got = err == 0 ? wait_notes(&b, notes) : notes;
    tap_ok(got == notes + 1 && b.last_len == sizeof(big) && b.last_relay,
           "a one-way message with a 16 MiB payload arrives through the relay (hash checked)");

    /* a node that has A's own connection takes it, not the relay */
    sw_transport_relay_stats(r, &rs);
    was = rs.forwarded;
    tap_ok(ask(r, via_a, T_ECHO, &w) == 0 && !memcmp(w.sender, a.id.pk, 32) && a.last_reverse &&
               !a.last_relay && (sw_transport_relay_stats(r, &rs), rs.forwarded == was),
           "key:A@R from a node A is connected to goes over A's own connection");

    /* a stranger's relayed message, its replay, a forged signature: at R */
    ctx = zmq_ctx_new();
    x = raw_dealer(ctx, ep);
    if (sw_wire_seal(&wc, T_NOTE, 0, NULL, 0, NULL, 0, env, sizeof(env), &env_len, sig) < 0)
        tap_diag("seal failed");
    notes = b.notes;
    raw_relayed(x, NULL, SW_TRANSPORT_RELAY_MSG, b.id.pk, env, env_len, sig);
    tap_ok(wait_notes(&b, notes) == notes + 1 && !memcmp(b.last_key, c.id.pk, 32),
           "a raw relayed message of C's reaches B, naming C");
    sw_transport_relay_stats(r, &rs);
    was = rs.bad;
    raw_relayed(x, NULL, SW_TRANSPORT_RELAY_MSG, b.id.pk, env, env_len, sig);
    for (int i = 0; i < 2000 && rs.bad == was; i++)
        run_ms(1), sw_transport_relay_stats(r, &rs);
    tap_ok(rs.bad == was + 1 && b.notes == notes + 1, "its replay is dropped at the relay");
    if (sw_wire_seal(&wc, T_NOTE, 0, NULL, 0, NULL, 0, env, sizeof(env), &env_len, sig) < 0)
        tap_diag("seal failed");
    sig[3] ^= 1;
    raw_relayed(x, NULL, SW_TRANSPORT_RELAY_MSG, b.id.pk, env, env_len, sig);
    for (int i = 0; i < 2000 && rs.bad == was + 1; i++)
        run_ms(1), sw_transport_relay_stats(r, &rs);
    tap_ok(rs.bad == was + 2 && b.notes == notes + 1, "a forged signature is dropped at the relay");

    /* a key R has no connection of */
    sw_transport_relay_stats(r, &rs);
    was = rs.noroute;
    memset(&w, 0, sizeof(w));
    err = sw_transport_request(a.t, via_x, T_ECHO, NULL, 0, NULL, 300, 0, wait_cb, &w);
    while (err == 0 && !w.done)
        uv_run(&loop, UV_RUN_ONCE);
    sw_transport_relay_stats(r, &rs);
    tap_ok(err == 0 && w.status == -SW_ETIMEDOUT && rs.noroute == was + 1,
           "to a key the relay cannot reach: dropped (noroute), the request times out");

    /* a lying relay F: it names A as the sender of C's message */
    f = zmq_socket(ctx, ZMQ_ROUTER);
    zmq_msg_init(&fid);
    if (!f || zmq_bind(f, "tcp://127.0.0.1:*") != 0 ||
        zmq_getsockopt(f, ZMQ_LAST_ENDPOINT, fep, &fep_len) != 0 ||
        sw_transport_send(b.t, fep, SW_MSG_PING, NULL, 0, NULL) < 0) {
        tap_ok(0, "a raw ROUTER");
    } else {
        for (int i = 0; i < 2000 && zmq_msg_recv(&fid, f, ZMQ_DONTWAIT) < 0; i++)
            run_ms(1);
        for (int more = zmq_msg_more(&fid); more;) {
            zmq_msg_t p;

            zmq_msg_init(&p);
            zmq_msg_recv(&p, f, 0);
            more = zmq_msg_more(&p);
            zmq_msg_close(&p);
        }
        if (sw_wire_seal(&wc, T_NOTE, 0, NULL, 0, NULL, 0, env, sizeof(env), &env_len, sig) < 0)
            tap_diag("seal failed");
        malformed = sw_transport_wire(b.t)->stats.drops[SW_WIRE_DROP_MALFORMED];
        notes = b.notes;
        raw_relayed(f, &fid, SW_TRANSPORT_RELAY_MSG, a.id.pk, env, env_len, sig);
        wait_past(&sw_transport_wire(b.t)->stats.drops[SW_WIRE_DROP_MALFORMED], malformed);
        tap_ok(sw_transport_wire(b.t)->stats.drops[SW_WIRE_DROP_MALFORMED] == malformed + 1 &&
                   b.notes == notes,
               "a relay naming another sender than the signer: dropped by the addressee");
    }

    /* the relay limit: 1/s, burst 5 */
    if (sw_transport_set_relay(r, true, 1, 5) < 0)
        tap_diag("set_relay failed");
    notes = b.notes;
    for (int i = 0; i < 40; i++)
        if (sw_transport_send(a.t, via_b, T_NOTE, NULL, 0, NULL) < 0)
            tap_diag("send %d failed", i);
    run_ms(300);
    sw_transport_relay_stats(r, &rs);
    tap_ok(b.notes - notes >= 5 && b.notes - notes <= 6 && rs.ratelimited >= 34,
           "relay limit 1/s, burst 5: %d of 40 passed on, %llu dropped", b.notes - notes,
           (unsigned long long)rs.ratelimited);

    /* a relay whose addressee reads nothing: what waits is bounded (relay_queue) */
    {
        struct sw_transport_opts ro = {.hwm = 1, .relay_queue = 4u << 20};
        struct sw_transport *r2;
        struct sw_wire wb2;
        char ep2[SW_TRANSPORT_MAX_ENDPOINT], via2[SW_TRANSPORT_MAX_ENDPOINT];
        static uint8_t mb[1u << 20];
        void *stuck = zmq_socket(ctx, ZMQ_DEALER);
        int one = 1, zero = 0, sent = 0;

        if (sw_transport_new(&r2, &loop, &rid_, run, &ro) < 0 ||
            sw_transport_bind(r2, "tcp://127.0.0.1:*", ep2, sizeof(ep2)) < 0 ||
            sw_transport_set_relay(r2, true, 1e6, 1e6) < 0 ||
            sw_transport_relay_endpoint(via2, sizeof(via2), b.id.pk, ep2) < 0 || !stuck ||
            sw_wire_init(&wb2, &b.id, run, NULL) < 0) {
            tap_ok(0, "relay queue: setup");
        } else {
            zmq_setsockopt(stuck, ZMQ_RCVHWM, &one, sizeof(one));
            zmq_setsockopt(stuck, ZMQ_LINGER, &zero, sizeof(zero));
            zmq_connect(stuck, ep2);
            /* B's key on a connection that never reads */
            if (sw_wire_seal(&wb2, SW_MSG_PING, 0, NULL, 0, NULL, 0, env, sizeof(env), &env_len,
                             sig) < 0)
                tap_diag("seal failed");
            raw_send(stuck, env, env_len, sig);
            for (int i = 0; i < 2000 && !sw_transport_key_routed(r2, b.id.pk); i++)
                run_ms(1);
            if (ask(a.t, ep2, SW_MSG_PING, &w) < 0)
                tap_diag("ping to the second relay failed");
            for (int i = 0; i < 40; i++) {
                struct sw_payload pl = {mb, sizeof(mb), NULL, NULL, NULL};

                sent += sw_transport_send(a.t, via2, T_NOTE, NULL, 0, &pl) == 0;
            }
            sw_transport_relay_stats(r2, &rs);
            for (int i = 0; i < 3000 && rs.forwarded + rs.full < (uint64_t)sent; i++)
                run_ms(1), sw_transport_relay_stats(r2, &rs);
            tap_ok(sent == 40 && rs.full > 0 && rs.forwarded + rs.full == 40,
                   "an addressee that reads nothing: %llu of 40 MiB passed on (into buffers), "
                   "%llu dropped at the relay's 4 MiB bound", (unsigned long long)rs.forwarded,
                   (unsigned long long)rs.full);
            sw_wire_release(&wb2);
        }
        if (stuck)
            zmq_close(stuck);
        sw_transport_close(r2, NULL, NULL);
    }

    zmq_msg_close(&fid);
    zmq_close(x);
    if (f)
        zmq_close(f);
    zmq_ctx_term(ctx);
    sw_wire_release(&wc);
    client_free(&a);
    client_free(&b);
    client_free(&c);
    sw_transport_close(r, NULL, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    sw_identity_release(&rid_);
}

static uint8_t refused[32];

static bool
admit_cb(void *arg, const struct sw_wire_hdr *hdr, uint32_t type)
{
    return memcmp(hdr->sender, refused, 32) != 0;
}

int
main(void)
{
    struct sw_identity sid;
    struct sw_transport *s, *s2;
    struct sw_transport_route_stats st;
    struct client a, b, c, d[3];
    struct sw_wire wb;
    struct waiter w;
    char ep[SW_TRANSPORT_MAX_ENDPOINT], ep2[SW_TRANSPORT_MAX_ENDPOINT];
    char key_a[SW_TRANSPORT_KEY_EP_LEN + 1], key_b[SW_TRANSPORT_KEY_EP_LEN + 1], kx[80];
    uint8_t env[SW_WIRE_MAX_ENVELOPE], sig[SW_WIRE_SIG_BYTES], pk[32];
    size_t env_len;
    uint64_t sigdrops, replays;
    void *ctx, *d1, *d2;
    int first = 0, n;
    struct sw_transport_opts small = {.max_routes = 2};

    alarm(60);
    tap_plan(43);
    uv_loop_init(&loop);
    memset(run, 7, sizeof(run));
    if (sw_identity_generate(&sid) < 0 || sw_transport_new(&s, &loop, &sid, run, NULL) < 0 ||
        sw_transport_bind(s, "tcp://127.0.0.1:*", ep, sizeof(ep)) < 0 || client_new(&a) < 0 ||
        client_new(&b) < 0 || client_new(&c) < 0) {
        tap_diag("setup failed");
        return 1;
    }
    sw_transport_key_endpoint(key_a, sizeof(key_a), a.id.pk);
    sw_transport_key_endpoint(key_b, sizeof(key_b), b.id.pk);
    tap_ok(sw_transport_endpoint_is_key(key_a, pk) && !memcmp(pk, a.id.pk, 32) &&
               !sw_transport_endpoint_is_key("key:12", NULL) &&
               !sw_transport_endpoint_is_key("tcp://127.0.0.1:1", NULL),
           "key endpoints parse: %s", key_a);
    snprintf(kx, sizeof(kx), "%.67sg", key_a);
    tap_ok(!sw_transport_endpoint_is_key(kx, NULL), "a non-hex digit is refused");

    /* no connection of a yet */
    tap_ok(sw_transport_send(s, key_a, T_NOTE, NULL, 0, NULL) == -SW_ENOENT,
           "a send to a key never heard fails at once");
    sw_transport_route_stats(s, &st);
    tap_ok(st.noroute == 1 && st.keys == 0, "counted (noroute %llu)", (unsigned long long)st.noroute);

    /* a dials the server: its PING binds its key */
    tap_ok(ask(a.t, ep, SW_MSG_PING, &w) == 0, "the outbound-only client pings the server");
    tap_ok(ask(s, key_a, T_ECHO, &w) == 0 && !memcmp(w.sender, a.id.pk, 32) && a.echoes == 1 &&
               a.last_reverse,
           "a request to key:A is answered by A over A's own connection");
    tap_ok(sw_transport_send(s, key_a, T_NOTE, NULL, 0, NULL) == 0, "a one-way message to key:A");
    for (int i = 0; i < 2000 && a.notes == 0; i++)
        run_ms(1);
    tap_ok(a.notes == 1 && a.last_reverse, "arrives at A as a one-way message (reverse, rid 0)");

    /* a stranger: its own messages bind its own key only */
    tap_ok(ask(b.t, ep, SW_MSG_PING, &w) == 0 && ask(s, key_b, T_ECHO, &w) == 0 &&
               !memcmp(w.sender, b.id.pk, 32) && b.echoes == 1,
           "a stranger's messages route its own key");
    tap_ok(ask(s, key_a, T_ECHO, &w) == 0 && !memcmp(w.sender, a.id.pk, 32) && a.echoes == 2 &&
               b.echoes == 1,
           "key:A still reaches A");

    /* the stranger claims A's key with its own signature: dropped */
    ctx = zmq_ctx_new();
    d1 = raw_dealer(ctx, ep);
    d2 = raw_dealer(ctx, ep);
    if (sw_wire_init(&wb, &b.id, run, NULL) < 0 || sw_wire_seal(&wb, T_NOTE, 0, NULL, 0, NULL, 0, env, sizeof(env), &env_len, sig) < 0) {
        tap_diag("seal failed");
        return 1;
    }
    for (size_t i = 0; i + 32 <= env_len; i++)
        if (!memcmp(env + i, b.id.pk, 32))
            memcpy(env + i, a.id.pk, 32);
    sigdrops = sw_transport_wire(s)->stats.drops[SW_WIRE_DROP_SIG];
    raw_send(d1, env, env_len, sig);
    for (int i = 0; i < 2000 && sw_transport_wire(s)->stats.drops[SW_WIRE_DROP_SIG] == sigdrops;
         i++)
        run_ms(1);
    tap_ok(sw_transport_wire(s)->stats.drops[SW_WIRE_DROP_SIG] == sigdrops + 1,
           "a message claiming A's key with another signature is dropped");
    tap_ok(ask(s, key_a, T_ECHO, &w) == 0 && a.echoes == 3, "and key:A still reaches A");

    /* A's own fresh message over a new connection (a reconnect): the route moves (sealed
     * with A's transport's own counters, as its next message would be) */
    if (sw_wire_seal(sw_transport_wire(a.t), SW_MSG_PING, 0, NULL, 0, NULL, 0, env, sizeof(env), &env_len, sig) < 0)
        return 1;
    raw_send(d1, env, env_len, sig);
    sw_transport_route_stats(s, &st);
    for (int i = 0; i < 2000 && st.moved == 0; i++) {
        run_ms(1);
        sw_transport_route_stats(s, &st);
    }
    tap_ok(st.moved == 1, "A's message over another connection moves A's route");
    n = sw_transport_send(s, key_a, T_NOTE, NULL, 0, NULL) == 0 ? raw_recv(d1, 2000, &first) : -1;
    tap_ok(n == 3 && first == SW_TRANSPORT_REVERSE && a.notes == 1,
           "key:A now goes to the new connection, reverse-marked (%d frames)", n);

    /* the same bytes replayed over a third connection: dropped, nothing moves */
    replays = sw_transport_wire(s)->stats.drops[SW_WIRE_DROP_REPLAY];
    raw_send(d2, env, env_len, sig);
    for (int i = 0; i < 2000 && sw_transport_wire(s)->stats.drops[SW_WIRE_DROP_REPLAY] == replays;
         i++)
        run_ms(1);
    sw_transport_route_stats(s, &st);
    tap_ok(sw_transport_wire(s)->stats.drops[SW_WIRE_DROP_REPLAY] == replays + 1 && st.moved == 1,
           "a replay of A's message over another connection is dropped and moves nothing");
    tap_ok(sw_transport_send(s, key_a, T_NOTE, NULL, 0, NULL) == 0 &&
               raw_recv(d1, 2000, &first) == 3 && raw_recv(d2, 50, &first) == 0,
           "key:A still goes to A's latest connection");

    /* A's transport speaks again: back on its connection */
    tap_ok(ask(a.t, ep, SW_MSG_PING, &w) == 0 && ask(s, key_a, T_ECHO, &w) == 0 &&
               !memcmp(w.sender, a.id.pk, 32) && a.echoes == 4,
           "A's next message moves the route back, requests work again");
    sw_transport_route_stats(s, &st);
    tap_ok(st.moved == 2 && st.keys == 2 && st.bound == 2, "moved %llu, keys %zu, bound %llu",
           (unsigned long long)st.moved, st.keys, (unsigned long long)st.bound);

    /* a refused key binds nothing */
    memcpy(refused, c.id.pk, 32);
    sw_transport_set_admit(s, admit_cb, NULL);
    sw_transport_key_endpoint(kx, sizeof(kx), c.id.pk);
    tap_ok(ask(c.t, ep, SW_MSG_PING, &w) == -SW_ETIMEDOUT && !sw_transport_key_routed(s, c.id.pk) &&
               sw_transport_send(s, kx, T_NOTE, NULL, 0, NULL) == -SW_ENOENT,
           "a key the admission hook refuses is not routed");
    sw_transport_set_admit(s, NULL, NULL);

    /* an answer over a DEALER that closed: -SW_ENOENT, no crash */
    {
        struct sw_transport_route r = {.reverse = true, .rid = 5};

        snprintf((char *)r.id, sizeof(r.id), "tcp://127.0.0.1:1");
        r.len = strlen((char *)r.id) + 1;
        tap_ok(sw_transport_reply(a.t, &r, SW_MSG_ACK, NULL, 0, NULL) == -SW_ENOENT,
               "a reverse answer with no such connection fails");
    }

    /* the bound: 2 keys; the least recently heard goes */
    if (sw_transport_new(&s2, &loop, &sid, run, &small) < 0 ||
        sw_transport_bind(s2, "tcp://127.0.0.1:*", ep2, sizeof(ep2)) < 0)
        return 1;
    for (int i = 0; i < 3; i++) {
        if (client_new(&d[i]) < 0)
            return 1;
        if (ask(d[i].t, ep2, SW_MSG_PING, &w) < 0)
            tap_diag("ping %d failed", i);
        run_ms(2); /* distinct heard times */
    }
    sw_transport_route_stats(s2, &st);
    tap_ok(st.keys == 2 && st.evicted == 1 && st.bound == 3, "3 keys in a table of 2: %zu kept, "
           "%llu evicted", st.keys, (unsigned long long)st.evicted);
    tap_ok(!sw_transport_key_routed(s2, d[0].id.pk) && sw_transport_key_routed(s2, d[1].id.pk) &&
               sw_transport_key_routed(s2, d[2].id.pk),
           "the least recently heard key was forgotten");
    sw_transport_key_endpoint(kx, sizeof(kx), d[0].id.pk);
    tap_ok(sw_transport_request(s2, kx, T_ECHO, NULL, 0, NULL, 1000, 0, wait_cb, &w) == -SW_ENOENT,
           "a request to it fails at once");
    tap_ok(ask(d[0].t, ep2, SW_MSG_PING, &w) == 0 && sw_transport_key_routed(s2, d[0].id.pk) &&
               !sw_transport_key_routed(s2, d[1].id.pk),
           "it comes back with its next message (the next oldest goes)");
    tap_ok(ask(s2, kx, T_ECHO, &w) == 0 && d[0].echoes == 1, "and is reached again");

    /* a flood of fresh keys pushes out fresh keys only: two keys heard again a
     * second after they were bound keep their routes in a table of 4 */
    {
        struct sw_transport *s4;
        struct sw_transport_opts four = {.max_routes = 4};
        char ep4[SW_TRANSPORT_MAX_ENDPOINT];
        struct client e[2];
        static struct client f[24];
        int fresh = 0;

        if (sw_transport_new(&s4, &loop, &sid, run, &four) < 0 ||
            sw_transport_bind(s4, "tcp://127.0.0.1:*", ep4, sizeof(ep4)) < 0 ||
            client_new(&e[0]) < 0 || client_new(&e[1]) < 0)
            return 1;
        for (int i = 0; i < 2; i++)
            if (ask(e[i].t, ep4, SW_MSG_PING, &w) < 0)
                tap_diag("ping failed");
        run_ms(1100);
        for (int i = 0; i < 2; i++)
            if (ask(e[i].t, ep4, SW_MSG_PING, &w) < 0)
                tap_diag("ping failed");
        for (int i = 0; i < 24; i++)
            fresh += client_new(&f[i]) == 0 && ask(f[i].t, ep4, SW_MSG_PING, &w) == 0;
        sw_transport_route_stats(s4, &st);
        tap_ok(fresh == 24 && sw_transport_key_routed(s4, e[0].id.pk) &&
                   sw_transport_key_routed(s4, e[1].id.pk) && st.evicted == 22 && st.keys == 4,
               "24 fresh keys through a table of 4: the 2 established keys keep their routes "
               "(%llu evicted, all fresh)", (unsigned long long)st.evicted);
        for (int i = 0; i < 24; i++)
            client_free(&f[i]);
        client_free(&e[0]);
        client_free(&e[1]);
        sw_transport_close(s4, NULL, NULL);
    }

    /* back-pressure on the ROUTER: 12 one-way messages of 4 MiB to a key through a
     * high-water mark of 2 all arrive (the rest wait for POLLOUT), and a request of
     * another key's is answered meanwhile */
    {
        struct sw_transport *s3;
        struct sw_transport_opts tiny = {.hwm = 2};
        char ep3[SW_TRANSPORT_MAX_ENDPOINT];
        static uint8_t big[4 << 20];
        int sent = 0, again = 0;

        if (sw_transport_new(&s3, &loop, &sid, run, &tiny) < 0 ||
            sw_transport_bind(s3, "tcp://127.0.0.1:*", ep3, sizeof(ep3)) < 0 ||
            ask(a.t, ep3, SW_MSG_PING, &w) < 0 || ask(b.t, ep3, SW_MSG_PING, &w) < 0)
            return 1;
        a.notes = 0;
        for (int i = 0; i < 10000 && sent < 12; i++) {
            struct sw_payload pl = {big, sizeof(big), NULL, NULL, NULL};
            int err = sw_transport_send(s3, key_a, T_NOTE, NULL, 0, &pl);

            if (err == 0)
                sent++;
            else if (err == -SW_EAGAIN)
                again++, run_ms(1);
            else
                break;
        }
        b.echoes = 0;
        tap_ok(sent == 12 && ask(s3, key_b, T_ECHO, &w) == 0 && b.echoes == 1,
               "12 x 4 MiB queued to key:A (%d refused for a while), key:B answered meanwhile",
               again);
        for (int i = 0; i < 20000 && a.notes < 12; i++)
            run_ms(1);
        tap_ok(a.notes == 12, "all 12 arrive at A (%d)", a.notes);
        sw_transport_close(s3, NULL, NULL);
    }

    test_relay();

    zmq_close(d1);
    zmq_close(d2);
    zmq_ctx_term(ctx);
    sw_wire_release(&wb);
    for (int i = 0; i < 3; i++)
        client_free(&d[i]);
    client_free(&a);
    client_free(&b);
    client_free(&c);
    sw_transport_close(s, NULL, NULL);
    sw_transport_close(s2, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    tap_ok(uv_loop_close(&loop) == 0, "every handle closed");
    sw_identity_release(&sid);
    return tap_done();
}
