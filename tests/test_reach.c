/*
 * test_reach.c - the reachability check's reflector and its limits, on tcp
 * loopback in one process (peers/reach.h).
 *
 * A reflector R, askers A1..A4 and a bystander X, each a transport of its
 * own key bound at tcp://127.0.0.1:*, every one answering probes:
 *   - A1 asks R to dial its own endpoint: res ok, seen 127.0.0.1, and the
 *     check (sw_reach_check) says "reachable at EP";
 *   - A2 names 127.0.0.2 (not the address it asks from): res host, counted,
 *     nothing dialled;
 *   - A3 names X's endpoint (same host, another key): res key, so a third
 *     party cannot be made "reachable", nor can a node by another's echo;
 *   - A4 names a port where nothing listens: res timeout (one dial-back);
 *   - A1 answering probes with a wrong nonce: res key;
 *   - the rate limit: A2's 3 ASKs of a burst are answered, the next is
 *     dropped unanswered and counted in the transport's ratelimit;
 *   - a malformed ASK is dropped, unanswered, counted;
 *   - a reflector that sees no address (ipc://) answers noaddr, and a check
 *     whose only peer is that one ends "unknown";
 *   - a stage record carries the verdict ("rch"), and refuses one out of range.
 */
#include "sw.h"

#include "identity.h"
#include "reach.h"
#include "status.h"
#include "tap.h"
#include "transport.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uv_loop_t loop;
static uint8_t run[32];

struct node {
    struct sw_identity id;
    struct sw_transport *t;
    struct sw_reach_srv srv;
    char ep[SW_TRANSPORT_MAX_ENDPOINT];
};

static void
on_alarm(int sig)
{
    static const char msg[] = "Bail out! timed out\n";

    (void)sig;
    if (write(1, msg, sizeof(msg) - 1) < 0)
        _exit(2);
    _exit(1);
}

static int
node_up(struct node *n, const char *bind)
{
    if (sw_identity_generate(&n->id) < 0 || sw_transport_new(&n->t, &loop, &n->id, run, NULL) < 0 ||
        sw_transport_bind(n->t, bind, n->ep, sizeof(n->ep)) < 0 ||
        sw_reach_serve(&n->srv, n->t) < 0)
        return -1;
    return 0;
}

struct answer {
    int done, status, res;
    char seen[SW_REACH_ADDR_MAX];
};

static void
on_answer(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    struct answer *a = arg;

    (void)t;
    a->done = 1;
    a->status = status;
    a->res = -1;
    if (status == 0 &&
        sw_reach_answer_read(m->hdr.body, m->hdr.body_len, &a->res, a->seen, sizeof(a->seen)) < 0)
        a->status = -SW_EMSG;
}

/* from asks to's reflector to dial ep; the answer's res (-1: none, status in *status) */
static int
ask(struct node *from, struct node *to, const char *ep, uint64_t timeout_ms, int *status,
    char *seen)
{
    static struct sw_body b;
    struct answer a = {0};

    sw_reach_ask_pack(&b, ep);
    if (sw_transport_request(from->t, to->ep, SW_MSG_REACH_ASK, b.b.data, b.b.len, NULL,
                             timeout_ms, 0, on_answer, &a) < 0)
        return -1;
    while (!a.done)
        uv_run(&loop, UV_RUN_ONCE);
    if (status)
        *status = a.status;
    if (seen)
        snprintf(seen, SW_REACH_ADDR_MAX, "%s", a.seen);
    return a.status == 0 ? a.res : -1;
}

/* A1's probes answered with a nonce of zeros (signed by A1 all the same) */
static void
wrong_echo(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    static struct sw_body b;
    uint8_t zero[SW_REACH_NONCE] = {0};

    (void)arg;
    sw_reach_nonce_pack(&b, zero);
    if (sw_transport_reply(t, &m->route, SW_MSG_REACH_ECHO, b.b.data, b.b.len, NULL) < 0)
        abort();
}

/* n's check through the one peer, to its end; its line into line */
static int
check(struct sw_reach_check *c, struct node *n, const char *peer, char *line, size_t len)
{
    const char *peers[] = {peer};

    if (sw_reach_check_start(c, n->t, n->ep, peers, 1, NULL, NULL) < 0)
        return -1;
    while (!c->done)
        uv_run(&loop, UV_RUN_ONCE);
    sw_reach_check_line(c, line, len);
    return 0;
}

static void
on_closed(void *arg)
{
    (*(int *)arg)--;
}

int
main(void)
{
    struct node r, a1, a2, a3, a4, x, ri;
    struct node *all[] = {&r, &a1, &a2, &a3, &a4, &x, &ri};
    struct sw_reach_check c;
    char ep[SW_TRANSPORT_MAX_ENDPOINT], seen[SW_REACH_ADDR_MAX], line[768], ipc[64];
    uint64_t probes0, drops0;
    int st, res, port, open;

    signal(SIGALRM, on_alarm);
    alarm(120);
    sw_log_level = SW_LOG_ERROR;
    if (sw_identity_global_init() < 0)
        return 1;
    uv_loop_init(&loop);
    memset(run, 0x33, sizeof(run));
    snprintf(ipc, sizeof(ipc), "ipc:///tmp/test_reach.%d", (int)getpid());
    if (node_up(&r, "tcp://127.0.0.1:*") < 0 || node_up(&a1, "tcp://127.0.0.1:*") < 0 ||
        node_up(&a2, "tcp://127.0.0.1:*") < 0 || node_up(&a3, "tcp://127.0.0.1:*") < 0 ||
        node_up(&a4, "tcp://127.0.0.1:*") < 0 || node_up(&x, "tcp://127.0.0.1:*") < 0 ||
        node_up(&ri, ipc) < 0) {
        printf("Bail out! cannot set up the transports\n");
        return 1;
    }
    tap_plan(13);

    res = ask(&a1, &r, a1.ep, SW_REACH_ASK_MS, &st, seen);
    tap_ok(res == SW_REACH_OK && !strcmp(seen, "127.0.0.1") && a1.srv.echoes == 1,
           "its own endpoint: dialled back, ok, seen from 127.0.0.1 (res %d, seen '%s')", res,
           seen);

    if (sw_transport_endpoint_split(a2.ep, NULL, 0, &port) < 0)
        return 1;
    snprintf(ep, sizeof(ep), "tcp://127.0.0.2:%d", port);
    probes0 = a2.srv.echoes + x.srv.echoes;
    res = ask(&a2, &r, ep, SW_REACH_ASK_MS, &st, seen);
    tap_ok(res == SW_REACH_HOST && r.srv.answers[SW_REACH_HOST] == 1 &&
               a2.srv.echoes + x.srv.echoes == probes0 && !strcmp(seen, "127.0.0.1"),
           "another host named: refused (res host), counted, nothing dialled");

    res = ask(&a3, &r, x.ep, SW_REACH_ASK_MS, &st, NULL);
    tap_ok(res == SW_REACH_KEY && x.srv.echoes == 1,
           "another node's endpoint: it answers with its own key, res key (res %d)", res);

    /* a port nothing listens on: bound by a transport closed at once */
    {
        struct sw_transport *gone;
        struct sw_identity gid;
        open = 1;
        if (sw_identity_generate(&gid) < 0 || sw_transport_new(&gone, &loop, &gid, run, NULL) < 0 ||
            sw_transport_bind(gone, "tcp://127.0.0.1:*", ep, sizeof(ep)) < 0)
            return 1;
        sw_transport_close(gone, on_closed, &open);
        while (open)
            uv_run(&loop, UV_RUN_ONCE);
        sw_identity_release(&gid);
    }
    res = ask(&a4, &r, ep, SW_REACH_ASK_MS, &st, NULL);
    tap_ok(res == SW_REACH_TIMEOUT && r.srv.answers[SW_REACH_TIMEOUT] == 1,
           "nothing listens there: res timeout after the dial-back's tries");

    if (sw_transport_on(a1.t, SW_MSG_REACH_PROBE, wrong_echo, NULL) < 0)
        return 1;
    res = ask(&a1, &r, a1.ep, SW_REACH_ASK_MS, &st, NULL);
    tap_ok(res == SW_REACH_KEY, "the asker's key echoing a wrong nonce: res key (res %d)", res);

    /* the rate limit: A2 asked once; two more in its burst of 3, then dropped */
    res = ask(&a2, &r, "tcp://127.0.0.1:0", SW_REACH_ASK_MS, &st, NULL);
    tap_ok(res == SW_REACH_BADEP, "a port 0 endpoint: res badep (res %d)", res);
    res = ask(&a2, &r, "tcp://127.0.0.1:0", SW_REACH_ASK_MS, &st, NULL);
    tap_ok(res == SW_REACH_BADEP, "the third ASK of a key in a burst is answered");
    res = ask(&a2, &r, "tcp://127.0.0.1:0", 1500, &st, NULL);
    tap_ok(res == -1 && st == -SW_ETIMEDOUT &&
               sw_transport_ratelimited(r.t, SW_MSG_REACH_ASK) == 1 &&
               r.srv.answers[SW_REACH_BADEP] == 2,
           "the fourth is dropped unanswered and counted (ratelimited %llu)",
           (unsigned long long)sw_transport_ratelimited(r.t, SW_MSG_REACH_ASK));

    /* a malformed ASK: {"ep": 5} */
    {
        static const uint8_t bad[] = {0x81, 0xa2, 'e', 'p', 0x05};
        struct answer an = {0};
        drops0 = sw_transport_wire(r.t)->stats.drops[SW_WIRE_DROP_MALFORMED];
        if (sw_transport_request(a3.t, r.ep, SW_MSG_REACH_ASK, bad, sizeof(bad), NULL, 1000, 0,
                                 on_answer, &an) < 0)
            return 1;
        while (!an.done)
            uv_run(&loop, UV_RUN_ONCE);
        tap_ok(an.status == -SW_ETIMEDOUT && r.srv.malformed == 1 &&
                   sw_transport_wire(r.t)->stats.drops[SW_WIRE_DROP_MALFORMED] == drops0 + 1,
               "a malformed ASK is dropped unanswered and counted");
    }

    /* no address seen over ipc: noaddr, and a check with only that peer: unknown */
    res = ask(&a3, &ri, a3.ep, SW_REACH_ASK_MS, &st, NULL);
    tap_ok(res == SW_REACH_NOADDR, "over ipc (no Peer-Address): res noaddr (res %d)", res);
    if (check(&c, &a4, ri.ep, line, sizeof(line)) < 0)
        return 1;
    tap_ok(c.verdict == SW_REACH_UNKNOWN && strstr(line, "reachability unknown at ") &&
               strstr(line, "carrying on"),
           "a check no peer can decide ends unknown: '%s'", line);
    if (check(&c, &a3, r.ep, line, sizeof(line)) < 0)
        return 1;
    tap_ok(c.verdict == SW_REACH_REACHABLE && !strncmp(line, "reachable at ", 13) &&
               !strcmp(line + 13, a3.ep), "the check: '%s'", line);

    /* the verdict in a stage record ("rch"): round trip, and out of range refused */
    {
        struct sw_peer_rec in, out;
        uint8_t buf[1024];
        struct sw_wire_buf wb;
        msgpack_packer pk;
        msgpack_unpacked u;
        bool ok = true;
        for (int v = 0; v <= 3; v++) {
            memset(&in, 0, sizeof(in));
            snprintf(in.ep, sizeof(in.ep), "tcp://127.0.0.1:7400");
            in.reach = v;
            sw_wire_buf_init(&wb, buf, sizeof(buf));
            sw_wire_buf_packer(&pk, &wb);
            sw_status_rec_pack(&pk, &in, 30, 0);
            if (v == 3) /* "rch": 2 becomes 3: out of range */
                for (size_t i = 0; i + 4 < wb.len; i++)
                    if (!memcmp(buf + i, "\xa3rch\x02", 5))
                        buf[i + 4] = 3;
            msgpack_unpacked_init(&u);
            memset(&out, 0, sizeof(out));
            if (sw_wire_unpack(buf, wb.len, &u) < 0)
                ok = false;
            else if ((sw_status_rec_unpack(&u.data, &out, 4, 30, 1000) == 0) != (v < 3) ||
                     (v < 3 && out.reach != v))
                ok = false;
            msgpack_unpacked_destroy(&u);
        }
        tap_ok(ok, "a stage record carries the verdict (rch 0-2, absent: not said); rch 3 is refused");
    }

    open = (int)SW_ARRAY_SIZE(all);
    for (size_t i = 0; i < SW_ARRAY_SIZE(all); i++)
        sw_transport_close(all[i]->t, on_closed, &open);
    while (open)
        uv_run(&loop, UV_RUN_ONCE);
    for (size_t i = 0; i < SW_ARRAY_SIZE(all); i++) {
        sw_reach_srv_release(&all[i]->srv);
        sw_identity_release(&all[i]->id);
    }
    uv_loop_close(&loop);
    unlink(ipc + 6);
    return tap_done();
}
