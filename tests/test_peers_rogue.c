/*
 * test_peers_rogue - a hostile process for t0380: for SECONDS it sends to
 * each ENDPOINT (the run transports of a run's nodes), every 20 ms:
 *   - garbage ZeroMQ frames (random bytes), dropped by the wire as malformed;
 *   - a forged FWD: sealed, then its "from" key replaced (bad signature);
 *   - a FWD signed for another run (wrong run id);
 *   - a FWD of the wrong shape, signed by the run's id (stranger A);
 *   - a FWD of the right shape holding NaN (stranger B);
 *   - a well-formed FWD from a key no node knows (stranger C);
 *   - a STATE_GET request with a key no node sends (stranger D).
 * The nodes must drop them all, ban A, B and D, and train on unaffected.
 *
 *   test_peers_rogue MANIFEST SECONDS STAGE=ENDPOINT...
 * (the FWDs name the hop of that stage on the plain route, so that only
 * their payload or their sender is wrong); exit 0 after sending, 2 on usage
 * or setup errors.
 */
#include "sw.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "manifest.h"
#include "proto.h"
#include "transport.h"
#include "wire.h"

static void
on_closed(void *arg)
{
    (void)arg;
}

static void
on_response(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    (void)t, (void)status, (void)m, (void)arg;
}

/* A STATE_GET of stage's first piece with one key too many. */
static size_t
state_get_body(uint8_t *buf, size_t cap, int stage)
{
    struct sw_wire_buf b;
    msgpack_packer pk;

    sw_wire_buf_init(&b, buf, cap);
    sw_wire_buf_packer(&pk, &b);
    msgpack_pack_map(&pk, 5);
    sw_proto_pack_key(&pk, "stage");
    msgpack_pack_uint64(&pk, (uint64_t)stage);
    sw_proto_pack_key(&pk, "which");
    msgpack_pack_uint64(&pk, 0);
    sw_proto_pack_key(&pk, "off");
    msgpack_pack_uint64(&pk, 0);
    sw_proto_pack_key(&pk, "n");
    msgpack_pack_uint64(&pk, 16);
    sw_proto_pack_key(&pk, "evil");
    msgpack_pack_uint64(&pk, 1);
    return b.len;
}

static size_t
fwd_body(uint8_t *buf, size_t cap, int S, int hop, const char *ep, uint64_t step)
{
    struct sw_wire_buf b;
    msgpack_packer pk;

    sw_wire_buf_init(&b, buf, cap);
    sw_wire_buf_packer(&pk, &b);
    msgpack_pack_map(&pk, 4);
    sw_proto_pack_key(&pk, "step");
    msgpack_pack_uint64(&pk, step);
    sw_proto_pack_key(&pk, "mb");
    msgpack_pack_uint32(&pk, 0);
    sw_proto_pack_key(&pk, "hop");
    msgpack_pack_uint32(&pk, (uint32_t)hop);
    sw_proto_pack_key(&pk, "route");
    msgpack_pack_array(&pk, (size_t)S);
    for (int s = 0; s < S; s++)
        sw_proto_pack_str(&pk, ep);
    return b.len;
}

int
main(int argc, char **argv)
{
    struct sw_manifest man;
    struct sw_identity id[5];
    struct sw_transport *tr[5];
    struct sw_wire wf;
    uint8_t other_run[32], body[4096], env[SW_WIRE_MAX_ENVELOPE], sig[64], h[32];
    void *zctx, **raw;
    uv_loop_t loop;
    char why[512];
    size_t N, xbytes, elen, blen;
    float *good, *nan;
    int neps = argc - 3;
    double until;
    uint64_t sent = 0;

    if (argc < 4) {
        fprintf(stderr, "usage: test_peers_rogue MANIFEST SECONDS STAGE=ENDPOINT...\n");
        return 2;
    }
    if (sw_manifest_load(&man, argv[1], why, sizeof(why)) < 0) {
        fprintf(stderr, "%s\n", why);
        return 2;
    }
    N = (size_t)man.batch * man.T;
    xbytes = N * man.model.d_model * sizeof(float) + N * sizeof(int32_t);
    good = calloc(1, xbytes);
    nan = calloc(1, xbytes);
    raw = calloc((size_t)neps, sizeof(void *));
    if (!good || !nan || !raw)
        return 2;
    for (size_t i = 0; i < N * man.model.d_model; i++) {
        good[i] = 0.01f * (float)(i % 7);
        nan[i] = i % 5 ? 1.0f : NAN;
    }
    memcpy(other_run, man.run_id, 32);
    other_run[0] ^= 1;
    uv_loop_init(&loop);
    if (sw_identity_global_init() < 0)
        return 2;
    for (int i = 0; i < 5; i++)
        if (sw_identity_generate(&id[i]) < 0 ||
            sw_transport_new(&tr[i], &loop, &id[i], i == 3 ? other_run : man.run_id, NULL) < 0)
            return 2;
    if (sw_wire_init(&wf, &id[2], man.run_id, NULL) < 0)
        return 2;
    zctx = zmq_ctx_new();
    for (int e = 0; e < neps; e++) {
        int linger = 0;
        char *eq = strchr(argv[3 + e], '=');
        if (!eq) {
            fprintf(stderr, "test_peers_rogue: want STAGE=ENDPOINT, got '%s'\n", argv[3 + e]);
            return 2;
        }
        raw[e] = zmq_socket(zctx, ZMQ_DEALER);
        zmq_setsockopt(raw[e], ZMQ_LINGER, &linger, sizeof(linger));
        if (zmq_connect(raw[e], eq + 1) < 0)
            return 2;
    }
    until = sw_now_s() + atof(argv[2]);
    while (sw_now_s() < until) {
        for (int e = 0; e < neps; e++) {
            const char *ep = strchr(argv[3 + e], '=') + 1;
            int hop = atoi(argv[3 + e]);
            uint8_t junk[64];
            struct sw_payload pl = {good, xbytes, NULL, NULL, NULL};
            struct sw_payload pn = {nan, xbytes, NULL, NULL, NULL};
            struct sw_payload ps = {good, 100, NULL, NULL, NULL};

            /* garbage frames */
            randombytes_buf(junk, sizeof(junk));
            zmq_send(raw[e], junk, 1 + randombytes_uniform(sizeof(junk)), ZMQ_SNDMORE);
            zmq_send(raw[e], junk, 64, ZMQ_DONTWAIT);
            /* forged: sealed by C, then "from" replaced by another key */
            blen = fwd_body(body, sizeof(body), man.stages, hop, ep, 0);
            sw_wire_payload_hash(h, good, xbytes);
            if (sw_wire_seal(&wf, SW_MSG_FWD, 0, body, blen, h, xbytes, env, sizeof(env), &elen,
                             sig) == 0) {
                for (size_t i = 0; i + 32 <= elen; i++)
                    if (!memcmp(env + i, id[2].pk, 32)) {
                        randombytes_buf(env + i, 32);
                        break;
                    }
                zmq_send(raw[e], env, elen, ZMQ_SNDMORE | ZMQ_DONTWAIT);
                zmq_send(raw[e], sig, 64, ZMQ_SNDMORE | ZMQ_DONTWAIT);
                zmq_send(raw[e], good, xbytes, ZMQ_DONTWAIT);
            }
            /* another run; wrong shape; NaN; a stranger's well-formed one */
            if (sw_transport_send(tr[3], ep, SW_MSG_FWD, body, blen, &pl) < 0 ||
                sw_transport_send(tr[0], ep, SW_MSG_FWD, body, blen, &ps) < 0 ||
                sw_transport_send(tr[1], ep, SW_MSG_FWD, body, blen, &pn) < 0 ||
                sw_transport_send(tr[2], ep, SW_MSG_FWD, body, blen, &pl) < 0)
                continue;
            sent += 6;
            blen = state_get_body(body, sizeof(body), hop);
            if (sw_transport_request(tr[4], ep, SW_MSG_STATE_GET, body, blen, NULL, 1000, 0,
                                     on_response, NULL) == 0)
                sent++;
        }
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(20000);
    }
    printf("# rogue: %llu hostile messages sent to %d nodes\n", (unsigned long long)sent, neps);
    for (int e = 0; e < neps; e++)
        zmq_close(raw[e]);
    zmq_ctx_term(zctx);
    for (int i = 0; i < 5; i++)
        sw_transport_close(tr[i], on_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    sw_wire_release(&wf);
    for (int i = 0; i < 5; i++)
        sw_identity_release(&id[i]);
    sw_manifest_release(&man);
    free(good);
    free(nan);
    free(raw);
    return 0;
}
