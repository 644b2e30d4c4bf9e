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
    bool last_reverse;
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
    if (sw_transport_reply(t, &m->route, SW_MSG_ACK, NULL, 0, NULL) < 0)
        tap_diag("reply failed");
}

static void
on_note(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    struct client *c = arg;

    c->notes++;
    c->last_reverse = m->route.reverse && m->route.rid == 0;
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
    tap_plan(28);
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
