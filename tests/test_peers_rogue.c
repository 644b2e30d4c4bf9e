/*
 * test_peers_rogue - a hostile process for t0380: for SECONDS it sends to
 * each ENDPOINT (the run transports of a run's nodes), every 20 ms:
 *   - garbage ZeroMQ frames (random bytes), dropped by the wire as malformed;
 *   - a forged FWD: sealed, then its "from" key replaced (bad signature);
 *   - a FWD signed for another run (wrong run id);
 *   - a FWD of the wrong shape, signed by the run's id (stranger A);
 *   - a FWD of the right shape holding NaN (stranger B);
 *     (the FWD payloads are in the manifest's codec, [wire] activations:
 *     an int8 FWD holding NaN has NaN scales, a bf16 one bf16 NaNs)
 *   - a well-formed FWD from a key no node knows (stranger C);
 *   - a STATE_GET request with a key no node sends (stranger D).
 * The nodes must drop them all, ban A, B and D, and train on unaffected.
 *
 *   test_peers_rogue MANIFEST SECONDS STAGE=ENDPOINT...
 * (the FWDs name the hop of that stage on the plain route, so that only
 * their payload or their sender is wrong); exit 0 after sending, 2 on usage
 * or setup errors.
 */
#include "hostile.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

/* A FWD of hop on a route of S hops all at ep, into b. */
static void
fwd_body(struct sw_body *b, int S, int hop, const char *ep, uint64_t step)
{
    sw_body_init(b);
    msgpack_pack_map(&b->pk, 4);
    sw_proto_pack_key(&b->pk, "step");
    msgpack_pack_uint64(&b->pk, step);
    sw_proto_pack_key(&b->pk, "mb");
    msgpack_pack_uint32(&b->pk, 0);
    sw_proto_pack_key(&b->pk, "hop");
    msgpack_pack_uint32(&b->pk, (uint32_t)hop);
    sw_proto_pack_key(&b->pk, "route");
    msgpack_pack_array(&b->pk, (size_t)S);
    for (int s = 0; s < S; s++)
        sw_proto_pack_str(&b->pk, ep);
}

static struct sw_manifest man;
static struct sw_identity id[5];
static struct sw_transport *tr[5];
static struct sw_wire wf;
static size_t xbytes;   /* a FWD payload in the run's codec ([wire] activations) */
static uint8_t *good, *nans;

/* One round's hostile messages to t; how many were sent. */
static uint64_t
round_to(void *arg, const struct hostile_target *t)
{
    static struct sw_body fb;
    static uint8_t env[SW_WIRE_MAX_ENVELOPE];
    uint8_t body[256], sig[64], h[32], junk[64];
    struct sw_payload pl = {good, xbytes, NULL, NULL, NULL};
    struct sw_payload pn = {nans, xbytes, NULL, NULL, NULL};
    struct sw_payload ps = {good, 100, NULL, NULL, NULL};
    size_t elen, blen;
    uint64_t sent = 0;

    (void)arg;
    /* garbage frames */
    randombytes_buf(junk, sizeof(junk));
    zmq_send(t->sock, junk, 1 + randombytes_uniform(sizeof(junk)), ZMQ_SNDMORE);
    zmq_send(t->sock, junk, 64, ZMQ_DONTWAIT);
    /* forged: sealed by C, then "from" replaced by another key */
    fwd_body(&fb, man.stages, t->stage, t->ep, 0);
    sw_wire_payload_hash(h, good, xbytes);
    if (sw_wire_seal(&wf, SW_MSG_FWD, 0, fb.b.data, fb.b.len, h, xbytes, env, sizeof(env), &elen,
                     sig) == 0) {
        for (size_t i = 0; i + 32 <= elen; i++)
            if (!memcmp(env + i, id[2].pk, 32)) {
                randombytes_buf(env + i, 32);
                break;
            }
        zmq_send(t->sock, env, elen, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send(t->sock, sig, 64, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send(t->sock, good, xbytes, ZMQ_DONTWAIT);
    }
    /* another run; wrong shape; NaN; a stranger's well-formed one */
    if (sw_transport_send(tr[3], t->ep, SW_MSG_FWD, fb.b.data, fb.b.len, &pl) < 0 ||
        sw_transport_send(tr[0], t->ep, SW_MSG_FWD, fb.b.data, fb.b.len, &ps) < 0 ||
        sw_transport_send(tr[1], t->ep, SW_MSG_FWD, fb.b.data, fb.b.len, &pn) < 0 ||
        sw_transport_send(tr[2], t->ep, SW_MSG_FWD, fb.b.data, fb.b.len, &pl) < 0)
        return 0;
    sent += 6;
    /* a STATE_GET of the stage's first piece with one key too many */
    blen = hostile_state_get_body(body, sizeof(body), t->stage, 16, true);
    if (sw_transport_request(tr[4], t->ep, SW_MSG_STATE_GET, body, blen, NULL, 1000, 0,
                             hostile_ignored, NULL) == 0)
        sent++;
    return sent;
}

int
main(int argc, char **argv)
{
    uint8_t other_run[32];
    struct hostile_target *tg;
    void *zctx;
    uv_loop_t loop;
    char why[512];
    size_t N;
    int neps = argc - 3;
    uint64_t sent;

    if (argc < 4) {
        fprintf(stderr, "usage: test_peers_rogue MANIFEST SECONDS STAGE=ENDPOINT...\n");
        return 2;
    }
    if (sw_manifest_load(&man, argv[1], why, sizeof(why)) < 0) {
        fprintf(stderr, "%s\n", why);
        return 2;
    }
    N = (size_t)man.batch * man.T;
    {
        /* the activations as floats, then encoded as the run's FWDs are
         * (an int8 block holding a NaN gets a NaN scale; targets all 0) */
        size_t n = N * (size_t)man.model.d_model;
        float *gf = calloc(n, sizeof(float)), *nf = calloc(n, sizeof(float));
        xbytes = sw_codec_bytes(man.act_codec, n) + N * sizeof(int32_t);
        good = calloc(1, xbytes);
        nans = calloc(1, xbytes);
        if (!good || !nans || !gf || !nf)
            return 2;
        for (size_t i = 0; i < n; i++) {
            gf[i] = 0.01f * (float)(i % 7);
            nf[i] = i % 5 ? 1.0f : NAN;
        }
        sw_codec_encode(man.act_codec, gf, n, good);
        sw_codec_encode(man.act_codec, nf, n, nans);
        free(gf);
        free(nf);
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
    if (hostile_targets("test_peers_rogue", argv + 3, neps, zctx, false, &tg) < 0)
        return 2;
    sent = hostile_rounds(&loop, atof(argv[2]), tg, neps, round_to, NULL);
    printf("# rogue: %llu hostile messages sent to %d nodes\n", (unsigned long long)sent, neps);
    for (int e = 0; e < neps; e++)
        zmq_close(tg[e].sock);
    zmq_ctx_term(zctx);
    for (int i = 0; i < 5; i++)
        sw_transport_close(tr[i], hostile_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    sw_wire_release(&wf);
    for (int i = 0; i < 5; i++)
        sw_identity_release(&id[i]);
    sw_manifest_release(&man);
    free(good);
    free(nans);
    free(tg);
    return 0;
}
