/*
 * test_peers_flood - a flood of valid requests for t0385 (issue 12, floods):
 * to one ENDPOINT (a node's run transport) it sends, as fast as the socket
 * takes them,
 *   - COUNT transport PINGs from one key;
 *   - COUNT / 10 STATE_GETs of STAGE's first piece from another key;
 *   - 5 PINGs from each of COUNT / 10 fresh keys;
 * every one correctly signed for the run, and reads the answers.  The node
 * must answer at most its limits' bursts plus their rates over the time it
 * took, count the rest, and train on with its pipeline messages untouched.
 *
 *   test_peers_flood MANIFEST STAGE ENDPOINT COUNT
 * prints "# flood: ..." lines and "answered PING P STATE S FRESH F SECONDS T";
 * exit 0 after sending, 2 on usage or setup errors.
 */
#include "sw.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "manifest.h"
#include "proto.h"
#include "wire.h"

/* Answers waiting on z, read and counted (a response is one message). */
static uint64_t
drain(void *z)
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

/* Seal a request of type with body and send it on z (waiting for room); 0 or -1. */
static int
flood_one(struct sw_wire *w, void *z, uint32_t type, uint64_t rid, const void *body, size_t blen,
          uint64_t *answers)
{
    static uint8_t env[SW_WIRE_MAX_ENVELOPE];
    uint8_t sig[64];
    size_t elen;
    double t0 = sw_now_s();

    if (sw_wire_seal(w, type, rid, body, blen, NULL, 0, env, sizeof(env), &elen, sig) < 0)
        return -1;
    while (zmq_send(z, env, elen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        if (errno != EAGAIN || sw_now_s() - t0 > 30)
            return -1;
        *answers += drain(z);
        usleep(200);
    }
    if (zmq_send(z, sig, sizeof(sig), 0) < 0)
        return -1;
    *answers += drain(z);
    return 0;
}

static size_t
state_get_body(uint8_t *buf, size_t cap, int stage)
{
    struct sw_wire_buf b;
    msgpack_packer pk;

    sw_wire_buf_init(&b, buf, cap);
    sw_wire_buf_packer(&pk, &b);
    msgpack_pack_map(&pk, 4);
    sw_proto_pack_key(&pk, "stage");
    msgpack_pack_uint64(&pk, (uint64_t)stage);
    sw_proto_pack_key(&pk, "which");
    msgpack_pack_uint64(&pk, 0);
    sw_proto_pack_key(&pk, "off");
    msgpack_pack_uint64(&pk, 0);
    sw_proto_pack_key(&pk, "n");
    msgpack_pack_uint64(&pk, 16);
    return b.len;
}

/* Read answers on z for up to ms (they stop coming once the queue is worked off). */
static uint64_t
settle(void *z, int ms)
{
    uint64_t n = 0, last = 0;
    double t0 = sw_now_s(), quiet = t0;

    while (sw_now_s() - t0 < ms / 1000.0 && sw_now_s() - quiet < 1.0) {
        n += drain(z);
        if (n != last) {
            last = n;
            quiet = sw_now_s();
        }
        usleep(2000);
    }
    return n;
}

int
main(int argc, char **argv)
{
    struct sw_wire_opts wo = {.max_senders = 1};
    struct sw_manifest man;
    struct sw_identity id;
    struct sw_wire w;
    uint8_t body[256];
    void *zctx, *zp, *zs, *zf;
    char why[512];
    size_t blen;
    long count;
    int stage, linger = 0;
    uint64_t a_ping = 0, a_state = 0, a_fresh = 0, rid = 1;
    double t0;

    if (argc != 5 || (count = atol(argv[4])) < 10) {
        fprintf(stderr, "usage: test_peers_flood MANIFEST STAGE ENDPOINT COUNT (>= 10)\n");
        return 2;
    }
    stage = atoi(argv[2]);
    if (sw_manifest_load(&man, argv[1], why, sizeof(why)) < 0) {
        fprintf(stderr, "%s\n", why);
        return 2;
    }
    if (sw_identity_global_init() < 0)
        return 2;
    zctx = zmq_ctx_new();
    zp = zmq_socket(zctx, ZMQ_DEALER);
    zs = zmq_socket(zctx, ZMQ_DEALER);
    zf = zmq_socket(zctx, ZMQ_DEALER);
    zmq_setsockopt(zp, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(zs, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(zf, ZMQ_LINGER, &linger, sizeof(linger));
    if (zmq_connect(zp, argv[3]) < 0 || zmq_connect(zs, argv[3]) < 0 ||
        zmq_connect(zf, argv[3]) < 0)
        return 2;
    t0 = sw_now_s();

    /* one key, PINGs */
    if (sw_identity_generate(&id) < 0 || sw_wire_init(&w, &id, man.run_id, &wo) < 0)
        return 2;
    for (long i = 0; i < count; i++)
        if (flood_one(&w, zp, SW_MSG_PING, rid++, NULL, 0, &a_ping) < 0)
            return 2;
    sw_wire_release(&w);
    sw_identity_release(&id);

    /* another key, STATE_GETs */
    blen = state_get_body(body, sizeof(body), stage);
    if (sw_identity_generate(&id) < 0 || sw_wire_init(&w, &id, man.run_id, &wo) < 0)
        return 2;
    for (long i = 0; i < count / 10; i++)
        if (flood_one(&w, zs, SW_MSG_STATE_GET, rid++, body, blen, &a_state) < 0)
            return 2;
    sw_wire_release(&w);
    sw_identity_release(&id);

    /* fresh keys, a few PINGs each */
    for (long k = 0; k < count / 10; k++) {
        if (sw_identity_generate(&id) < 0 || sw_wire_init(&w, &id, man.run_id, &wo) < 0)
            return 2;
        for (int i = 0; i < 5; i++)
            if (flood_one(&w, zf, SW_MSG_PING, rid++, NULL, 0, &a_fresh) < 0)
                return 2;
        sw_wire_release(&w);
        sw_identity_release(&id);
    }
    a_ping += settle(zp, 10000);
    a_state += settle(zs, 10000);
    a_fresh += settle(zf, 10000);
    printf("# flood: %ld PINGs from one key, %ld STATE_GETs from another, %ld fresh keys x 5 "
           "PINGs\n", count, count / 10, count / 10);
    printf("answered PING %llu STATE %llu FRESH %llu SECONDS %.1f\n", (unsigned long long)a_ping,
           (unsigned long long)a_state, (unsigned long long)a_fresh, sw_now_s() - t0);
    zmq_close(zp);
    zmq_close(zs);
    zmq_close(zf);
    zmq_ctx_term(zctx);
    sw_manifest_release(&man);
    return 0;
}
