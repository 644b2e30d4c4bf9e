/*
 * hostile - the hostile helpers' shared pieces; see hostile.h.
 */
#include "hostile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

void *
hostile_dealer(void *zctx, const char *ep, bool hwm0)
{
    void *z = zmq_socket(zctx, ZMQ_DEALER);
    int zero = 0;

    if (!z)
        return NULL;
    zmq_setsockopt(z, ZMQ_LINGER, &zero, sizeof(zero));
    if (hwm0)
        zmq_setsockopt(z, ZMQ_SNDHWM, &zero, sizeof(zero));
    if (zmq_connect(z, ep) < 0) {
        zmq_close(z);
        return NULL;
    }
    return z;
}

int
hostile_targets(const char *prog, char **args, int n, void *zctx, bool hwm0,
                struct hostile_target **out)
{
    struct hostile_target *t;

    if (n < 1 || !(t = calloc((size_t)n, sizeof(*t))))
        return -1;
    for (int i = 0; i < n; i++) {
        const char *eq = strchr(args[i], '=');
        if (!eq) {
            fprintf(stderr, "%s: want STAGE=ENDPOINT, got '%s'\n", prog, args[i]);
            free(t);
            return -1;
        }
        t[i].stage = atoi(args[i]);
        snprintf(t[i].ep, sizeof(t[i].ep), "%s", eq + 1);
        if (zctx && !(t[i].sock = hostile_dealer(zctx, t[i].ep, hwm0))) {
            free(t);
            return -1;
        }
    }
    *out = t;
    return 0;
}

void
hostile_run_for(uv_loop_t *loop, double s, volatile sig_atomic_t *stop)
{
    double end = sw_now_s() + s;

    while ((!stop || !*stop) && sw_now_s() < end) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
}

uint64_t
hostile_rounds(uv_loop_t *loop, double seconds, const struct hostile_target *t, int n,
               uint64_t (*fn)(void *arg, const struct hostile_target *t), void *arg)
{
    double until = sw_now_s() + seconds;
    uint64_t sent = 0;

    while (sw_now_s() < until) {
        for (int e = 0; e < n; e++)
            sent += fn(arg, &t[e]);
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(20000);
    }
    return sent;
}

void
hostile_closed(void *arg)
{
    (void)arg;
}

void
hostile_ignored(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    (void)t, (void)status, (void)m, (void)arg;
}

size_t
hostile_state_get_body(uint8_t *buf, size_t cap, int stage, uint64_t n, bool evil)
{
    struct sw_wire_buf b;
    msgpack_packer pk;

    sw_wire_buf_init(&b, buf, cap);
    sw_wire_buf_packer(&pk, &b);
    msgpack_pack_map(&pk, evil ? 5 : 4);
    sw_proto_pack_key(&pk, "stage");
    msgpack_pack_uint64(&pk, (uint64_t)stage);
    sw_proto_pack_key(&pk, "which");
    msgpack_pack_uint64(&pk, 0);
    sw_proto_pack_key(&pk, "off");
    msgpack_pack_uint64(&pk, 0);
    sw_proto_pack_key(&pk, "n");
    msgpack_pack_uint64(&pk, n);
    if (evil) {
        sw_proto_pack_key(&pk, "evil");
        msgpack_pack_uint64(&pk, 1);
    }
    return b.len;
}

size_t
hostile_step_body(uint8_t *buf, size_t cap, uint64_t step)
{
    struct sw_wire_buf b;
    msgpack_packer pk;

    sw_wire_buf_init(&b, buf, cap);
    sw_wire_buf_packer(&pk, &b);
    msgpack_pack_map(&pk, 1);
    sw_proto_pack_key(&pk, "step");
    msgpack_pack_uint64(&pk, step);
    return b.len;
}

uint64_t
hostile_drain(void *z)
{
    uint64_t n = 0;

    for (;;) {
        zmq_msg_t m;
        int more;

        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, z, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return n;
        }
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        n += !more;
    }
}

int
hostile_send(struct sw_wire *w, void *z, uint32_t type, uint64_t rid, const void *body,
             size_t blen, bool wait, uint64_t *answers)
{
    static uint8_t env[SW_WIRE_MAX_ENVELOPE];
    uint8_t sig[64];
    size_t elen;
    uint64_t got = 0;
    double t0 = sw_now_s();
    int rc = 0;

    if (sw_wire_seal(w, type, rid, body, blen, NULL, 0, env, sizeof(env), &elen, sig) < 0)
        return -1;
    while (zmq_send(z, env, elen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        if (!wait || errno != EAGAIN || sw_now_s() - t0 > 30)
            return -1;
        got += hostile_drain(z);
        usleep(200);
    }
    if (zmq_send(z, sig, sizeof(sig), wait ? 0 : ZMQ_DONTWAIT) < 0)
        rc = -1;
    /* answers are read, so that they never block the sender */
    got += hostile_drain(z);
    if (answers)
        *answers += got;
    return rc;
}

uint64_t
hostile_settle(void *z, int ms)
{
    uint64_t n = 0, last = 0;
    double t0 = sw_now_s(), quiet = t0;

    while (sw_now_s() - t0 < ms / 1000.0 && sw_now_s() - quiet < 1.0) {
        n += hostile_drain(z);
        if (n != last) {
            last = n;
            quiet = sw_now_s();
        }
        usleep(2000);
    }
    return n;
}

void
hostile_rec(struct sw_peer_rec *r, const uint8_t *pk, const char *ep, int stage, uint64_t step,
            double tps)
{
    memset(r, 0, sizeof(*r));
    if (pk)
        memcpy(r->pk, pk, 32);
    snprintf(r->ep, sizeof(r->ep), "%s", ep);
    r->stage = stage;
    r->state = SW_REC_TRAINING;
    r->step = step;
    r->tps = r->cap = tps;
    r->loss = -1;
}

int
hostile_signed_rec(const struct sw_manifest *man, const struct sw_identity *id,
                   const struct sw_peer_rec *r, uint64_t seq, uint32_t ttl_s, uint8_t *val,
                   size_t cap, struct sw_dht_record *d)
{
    struct sw_wire_buf b;
    msgpack_packer pk;

    sw_wire_buf_init(&b, val, cap);
    sw_wire_buf_packer(&pk, &b);
    sw_status_rec_pack(&pk, r, ttl_s, 0);
    if (b.overflow)
        return -1;
    memset(d, 0, sizeof(*d));
    sw_status_stage_key(d->key, man->run_id, r->stage);
    d->seq = seq;
    d->ttl_s = ttl_s;
    d->val = val;
    d->val_len = b.len;
    sw_dht_record_sign(d, id->sk);
    return 0;
}

struct manifest_wait {
    bool answered, ok;
    struct sw_manifest_reply *r;
};

static void
on_manifest(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    struct manifest_wait *mw = arg;

    (void)t;
    mw->answered = true;
    mw->ok = status == 0 && sw_node_manifest_read(m, mw->r) == 0;
}

int
hostile_manifest(uv_loop_t *loop, const struct sw_identity *id, const char *lobby_ep,
                 int timeout_ms, int retries, struct sw_transport **lobby,
                 struct sw_manifest_reply *r)
{
    struct manifest_wait mw = {false, false, r};
    int err;

    if ((err = sw_transport_new(lobby, loop, id, sw_proto_lobby_run, NULL)) < 0 ||
        (err = sw_transport_request(*lobby, lobby_ep, SW_MSG_MANIFEST_GET, NULL, 0, NULL,
                                    timeout_ms, retries, on_manifest, &mw)) < 0) {
        fprintf(stderr, "hostile: lobby '%s': %s\n", lobby_ep, sw_strerror(err));
        return -1;
    }
    while (!mw.answered)
        uv_run(loop, UV_RUN_ONCE);
    return mw.ok ? 0 : -1;
}

static void
on_joined(void *arg, int status, const struct sw_dht_contact *nodes, size_t n,
          const struct sw_dht_lookup_info *info)
{
    int *joined = arg;

    (void)nodes, (void)n, (void)info;
    *joined = status == 0 ? 1 : -1;
    if (status < 0)
        fprintf(stderr, "hostile: cannot join the DHT: %s\n", sw_strerror(status));
}

int
hostile_join(uv_loop_t *loop, struct sw_transport *tr, const char *ep, const char **eps,
             size_t n, bool wait, struct sw_dhtnode **dht)
{
    static int joined; /* the bootstrap may answer after a timeout here */

    joined = 0;
    if (sw_dhtnode_new(dht, loop, tr, ep, NULL) < 0 ||
        sw_dhtnode_bootstrap(*dht, eps, n, on_joined, &joined) < 0)
        return -1;
    for (int i = 0; wait && i < 500 && joined == 0; i++)
        hostile_run_for(loop, 0.02, NULL);
    return !wait || joined == 1 ? 0 : -1;
}
