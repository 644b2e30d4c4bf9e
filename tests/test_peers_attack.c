/*
 * test_peers_attack - a hostile helper for the attack tests t0382-t0384 and t0420
 * (issue 12): a stranger to the run (keys of its own, every envelope valid
 * and signed) that does for SECONDS what swarm-protocol(7) lets anyone do,
 * then prints what it received and exits.
 *
 *   test_peers_attack MANIFEST BOOT SECONDS MODE [ARGS...]
 *
 * BOOT is the bootstrap's lobby endpoint (the run endpoint and the DHT are
 * learnt from it, as a node does).  The helper binds its own run endpoint
 * (tcp://127.0.0.1:*), counts every message that reaches it by type, and
 * answers STATE_GET with zero weights when asked to.  Modes:
 *
 *   prepare OFFSET STAGE=EP...  every 100 ms, a PREPARE {step: the run's
 *       step + OFFSET} request to every EP (the run's step from DHT scans)
 *   record STAGE OFFSET [low] [zero] [syncing]
 *       publishes a stage record of STAGE with its own endpoint, training,
 *       at the run's step + OFFSET; low: under a key lower than any node's
 *       (first byte 0); zero: answers STATE_GET with all-zero weights;
 *       syncing: the record says syncing (the leader does not plan it)
 *   ready STAGE copy|busy|ok|nohash [low]  publishes a training record of
 *       STAGE with its own endpoint at the run's step, and answers every
 *       PREPARE at once with READY: "copy" (ok false, a copy 3 s from its
 *       end), "busy" (ok false, still summing the step before's partials),
 *       "ok" (ready, with the hash of a state no node holds) or "nohash"
 *       (ready, no hash); low: under a key lower than any node's
 *   fakes STAGE COUNT  COUNT stage records of STAGE: one with its own
 *       endpoint (it counts what the run sends it), COUNT - 1 under fresh
 *       keys with endpoints nobody listens on; all claim 50M tokens/s
 *   flood KEYS N STAGE=EP...  N valid requests (STATE_GET, CKPT_INFO_GET,
 *       PING, in turn), spread over the EPs, from KEYS keys (0: a fresh key
 *       for every request), as fast as the sockets take them
 *   ping N STAGE=EP...  N transport PINGs from one key, spread over the EPs
 *   limits COUNT STAGE=EP  at one node, as fast as its socket takes them
 *       (the answers read): COUNT PINGs from one key, COUNT / 10 STATE_GETs
 *       of STAGE's first piece from another, 5 PINGs from each of COUNT / 10
 *       fresh keys; prints "# flood: ..." and
 *       "answered PING p STATE s FRESH f SECONDS t" (the node must answer at
 *       most its limits' bursts plus their rates over that time)
 *   keeper OFFSET  a relay's lie: every second, a keeper record (its own
 *       endpoint, the run's step + OFFSET) and an end record (the
 *       manifest's last step, loss 0) signed by a fresh key of no
 *       certificate, stored through the helper's own DHT node; with
 *       ATTACK_KEY and ATTACK_CERT (below) that node is an admitted peer
 *       of an owner-mode run, whose STOREs the nodes accept
 *   grad STAGE EP...  partial gradients to the replicas of STAGE at EP:
 *       the helper publishes a record of its own for STAGE, syncing (a node
 *       of the stage that no plan names yet), then every 100 ms: well-formed,
 *       finite pieces (off 0) of STAGE for the run's steps + 1 ... + 16
 *       (once they took every slot of a replica, whose real partials were
 *       then dropped: the stage stalled for good), one of another stage
 *       (dropped, no ban: an honest replica's may reach a node that moved),
 *       and malformed ones (an off inside a piece, a short n, an off past
 *       the end, NaN values, a NaN loss), which get the helper banned; and
 *       20 asks for a relay of its own key's partial of the step before
 *       (GRAD_ASK) and a piece relayed 'of' its own key, which nobody asked
 *       for (both dropped: no plan names it)
 *   replica STAGE EP...  the same for CheckFree+ replicas (REPLICA, kind 0
 *       when STAGE is 1, else 1): pieces 1000 steps ahead, and pieces of
 *       the current step holding 1e30s (a stranger's pieces must neither
 *       hold back the real pushes nor mix into them)
 *
 *   hop STAGE EP...  pieces of forward activations (FWD, swarm-protocol(7),
 *       Pieces) to the node of STAGE at EP, for a run whose FWD is above
 *       8 MiB: the helper publishes a syncing record of STAGE - 1, then
 *       every 50 ms the first piece of every microbatch's FWD of the run's
 *       step and the next (finite zeros; each one a stranger's piece that
 *       would start the visit's buffer afresh), and in the second half
 *       malformed pieces as well (an offset inside a piece, a short piece,
 *       one past the end, a wrong total), which get the helper banned
 *
 * The environment: ATTACK_KEY=DIR uses the key in DIR instead of a fresh
 * one, ATTACK_CERT=FILE presents FILE's certificate on every envelope.
 * SIGTERM ends it early.  Prints "# attack: ..." lines, the last one
 *   # attack: received FWD=a BWD=b GRAD=c GO=d PREPARE=e STATE_GET=f other=g
 * Exit 0 after the time is up (limits: once all is sent and answered), 2 on
 * usage or setup errors.
 */
#include "hostile.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "admit.h"
#include "checkfree.h"
#include "ckptnet.h"
#include "codec.h"
#include "step.h"
#include "fetch.h"

#define MAX_FAKES 256

static struct {
    struct sw_manifest man;
    uv_loop_t loop;
    struct sw_identity id;
    struct sw_transport *tr, *lobby;
    struct sw_dhtnode *dht;
    struct sw_status_scan scan;
    bool have_scan, zero, low;
    /* mode ready: what it answers PREPAREs with, as a node of ready_stage */
    enum { ANSWER_NONE, ANSWER_COPY, ANSWER_BUSY, ANSWER_OK, ANSWER_NOHASH } answer;
    int ready_stage;
    char ep[SW_PROTO_EP_MAX], boot[SW_PROTO_EP_MAX], peer[SW_PROTO_EP_MAX];
    uint64_t run_step, seq;
    uint64_t got_fwd, got_bwd, got_grad, got_go, got_prepare, got_state_get, got_other;
    uint64_t sent, refused;
    struct sw_identity fake[MAX_FAKES];
    int nfake;
    uint8_t cert[SW_STATUS_CERT_MAX];
    size_t cert_len;
} A;

/* SIGTERM ends the attack early: the counts are printed all the same */
static volatile sig_atomic_t stop;

static void
on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static bool
going(double end)
{
    return !stop && sw_now_s() < end;
}

/* ---- what reaches the helper ---- */

static void
on_msg(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    (void)t, (void)arg;
    switch (m->hdr.type) {
    case SW_MSG_FWD: A.got_fwd++; break;
    case SW_MSG_BWD: A.got_bwd++; break;
    case SW_MSG_GRAD: A.got_grad++; break;
    case SW_MSG_GO: A.got_go++; break;
    case SW_MSG_PREPARE: A.got_prepare++; break;
    default: A.got_other++; break;
    }
}

/* PREPARE {step}: counted, and in mode ready answered READY {step, stage,
 * ok false, copy 3000} (a copy 3 s from its end), {..., busy true} (still
 * summing the step before's partials), {step, stage, ok true, hash: 32
 * bytes of 0x5a} (a state that no node holds) or {step, stage, ok true}. */
static void
on_prepare(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"step", NULL};
    uint8_t hash[32];
    struct sw_body b;
    msgpack_unpacked u;
    uint64_t step;

    A.got_prepare++;
    if (!A.answer || !m->route.rid || !sw_proto_open(m->hdr.body, m->hdr.body_len, &u, keys))
        return;
    if (sw_proto_get_u64(&u.data, "step", &step) < 0) {
        msgpack_unpacked_destroy(&u);
        return;
    }
    msgpack_unpacked_destroy(&u);
    memset(hash, 0x5a, sizeof(hash));
    sw_body_init(&b);
    msgpack_pack_map(&b.pk, A.answer == ANSWER_NOHASH ? 3 : 4);
    sw_proto_pack_key(&b.pk, "step");
    msgpack_pack_uint64(&b.pk, step);
    sw_proto_pack_key(&b.pk, "stage");
    msgpack_pack_uint32(&b.pk, (uint32_t)A.ready_stage);
    sw_proto_pack_key(&b.pk, "ok");
    if (A.answer == ANSWER_NOHASH) {
        msgpack_pack_true(&b.pk);
    } else if (A.answer == ANSWER_OK) {
        msgpack_pack_true(&b.pk);
        sw_proto_pack_key(&b.pk, "hash");
        sw_proto_pack_bin(&b.pk, hash, 32);
    } else {
        msgpack_pack_false(&b.pk);
        sw_proto_pack_key(&b.pk, A.answer == ANSWER_COPY ? "copy" : "busy");
        if (A.answer == ANSWER_COPY)
            msgpack_pack_uint64(&b.pk, 3000);
        else
            msgpack_pack_true(&b.pk);
    }
    if (sw_transport_reply(t, &m->route, SW_MSG_READY, b.b.data, b.b.len, NULL) == 0)
        A.sent++;
    else
        A.refused++;
}

/* STATE_GET {stage, which, off, n[, snap]}: n zero floats of a stage at the
 * claimed step, when asked to (zero), else counted only. */
static void
on_state_get(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"stage", "which", "off", "n", "snap", NULL};
    static float zeros[SW_FETCH_CHUNK];
    struct sw_stage_layout lay;
    struct sw_body b;
    msgpack_unpacked u;
    uint64_t stage, which, off, n;
    bool snap;

    (void)arg;
    A.got_state_get++;
    if (!A.zero || !m->route.rid || !sw_proto_open(m->hdr.body, m->hdr.body_len, &u, keys))
        return;
    snap = sw_proto_get(&u.data, "snap") != NULL;
    if (sw_proto_get_u64(&u.data, "stage", &stage) < 0 ||
        sw_proto_get_u64(&u.data, "which", &which) < 0 ||
        sw_proto_get_u64(&u.data, "off", &off) < 0 || sw_proto_get_u64(&u.data, "n", &n) < 0 ||
        stage >= (uint64_t)A.man.stages || n > SW_FETCH_CHUNK) {
        msgpack_unpacked_destroy(&u);
        return;
    }
    msgpack_unpacked_destroy(&u);
    if (sw_stage_layout_init(&lay, &A.man.model, A.man.stages, (int)stage) < 0)
        return;
    if (off > lay.numel)
        off = lay.numel;
    if (n > lay.numel - off)
        n = lay.numel - off;
    sw_body_init(&b);
    msgpack_pack_map(&b.pk, snap ? 9 : 8);
    sw_proto_pack_key(&b.pk, "err");
    msgpack_pack_int64(&b.pk, 0);
    sw_proto_pack_key(&b.pk, "step");
    msgpack_pack_uint64(&b.pk, A.run_step + 1);
    sw_proto_pack_key(&b.pk, "t");
    msgpack_pack_uint64(&b.pk, A.run_step + 1);
    sw_proto_pack_key(&b.pk, "lr_mult");
    msgpack_pack_double(&b.pk, 1.0);
    sw_proto_pack_key(&b.pk, "norm");
    msgpack_pack_double(&b.pk, 1.0);
    if (snap) {
        sw_proto_pack_key(&b.pk, "normc");
        msgpack_pack_double(&b.pk, 1.0);
    }
    sw_proto_pack_key(&b.pk, "numel");
    msgpack_pack_uint64(&b.pk, lay.numel);
    sw_proto_pack_key(&b.pk, "off");
    msgpack_pack_uint64(&b.pk, off);
    sw_proto_pack_key(&b.pk, "n");
    msgpack_pack_uint64(&b.pk, n);
    sw_stage_layout_release(&lay);
    (void)which;
    {
        struct sw_payload p = {zeros, n * sizeof(float), NULL, NULL, NULL};
        if (sw_transport_reply(t, &m->route, SW_MSG_STATE, b.b.data, b.b.len, n ? &p : NULL) < 0)
            A.refused++;
    }
}

/* ---- joining: the manifest's reply names the run endpoints; then the DHT ---- */

static void
on_put(void *arg, int status, unsigned n_stored, const struct sw_dht_lookup_info *info)
{
    (void)arg, (void)status, (void)n_stored, (void)info;
}

static void
on_scanned(void *arg, int status, const struct sw_peer_rec *recs, int n, uint64_t max_step)
{
    (void)arg, (void)status;
    /* the real nodes' step: the helper's own claims are left out */
    for (int i = 0; i < n; i++) {
        bool mine = !memcmp(recs[i].pk, A.id.pk, 32);
        for (int k = 0; k < A.nfake && !mine; k++)
            mine = !memcmp(recs[i].pk, A.fake[k].pk, 32);
        if (!mine && recs[i].step > A.run_step && recs[i].step <= (uint64_t)A.man.steps)
            A.run_step = recs[i].step;
    }
    (void)max_step;
}

static void
run_for(double s)
{
    hostile_run_for(&A.loop, s, &stop);
}

static int
join_run(const char *lobby_ep)
{
    struct sw_manifest_reply r;
    const char *eps[2];

    if (hostile_manifest(&A.loop, &A.id, lobby_ep, 2000, 4, &A.lobby, &r) < 0) {
        fprintf(stderr, "test_peers_attack: no manifest from the bootstrap\n");
        return -1;
    }
    snprintf(A.boot, sizeof(A.boot), "%s", r.boot);
    snprintf(A.peer, sizeof(A.peer), "%s", r.ep);
    if (sw_transport_new(&A.tr, &A.loop, &A.id, A.man.run_id, NULL) < 0 ||
        sw_proto_pipeline_class(sw_transport_wire(A.tr)) < 0 ||
        (A.cert_len && sw_wire_set_cert(sw_transport_wire(A.tr), A.cert, A.cert_len) < 0) ||
        sw_transport_bind(A.tr, "tcp://127.0.0.1:*", A.ep, sizeof(A.ep)) < 0)
        return -1;
    if (sw_transport_on(A.tr, SW_MSG_FWD, on_msg, NULL) < 0 ||
        sw_transport_on(A.tr, SW_MSG_BWD, on_msg, NULL) < 0 ||
        sw_transport_on(A.tr, SW_MSG_GRAD, on_msg, NULL) < 0 ||
        sw_transport_on(A.tr, SW_MSG_GO, on_msg, NULL) < 0 ||
        sw_transport_on(A.tr, SW_MSG_PREPARE, on_prepare, NULL) < 0 ||
        sw_transport_on(A.tr, SW_MSG_READY, on_msg, NULL) < 0 ||
        sw_transport_on(A.tr, SW_MSG_REPLICA, on_msg, NULL) < 0 ||
        sw_transport_on(A.tr, SW_MSG_CKPT_INFO_GET, on_msg, NULL) < 0 ||
        sw_transport_on(A.tr, SW_MSG_CKPT_GET, on_msg, NULL) < 0 ||
        sw_transport_on(A.tr, SW_MSG_STATE_GET, on_state_get, NULL) < 0)
        return -1;
    eps[0] = A.boot;
    eps[1] = A.peer;
    if (hostile_join(&A.loop, A.tr, A.ep, eps, A.peer[0] && strcmp(A.peer, A.boot) ? 2 : 1, true,
                     &A.dht) < 0 ||
        sw_status_scan_init(&A.scan, A.dht, A.man.run_id, A.man.stages) < 0)
        return -1;
    A.have_scan = true;
    return 0;
}

static void
scan(void)
{
    if (A.have_scan && sw_status_scan_start(&A.scan, on_scanned, NULL) < 0)
        return; /* one is still running */
}

/* A stage record of stage for id at ep, step, in state (signed, put). */
static void
publish_rec(const struct sw_identity *id, const char *ep, int stage, uint64_t step, double tps,
            int state)
{
    static uint8_t val[1024];
    struct sw_peer_rec me;
    struct sw_dht_record r;

    hostile_rec(&me, id->pk, ep, stage, step, tps);
    me.state = state;
    if (id == &A.id && A.cert_len) { /* ATTACK_CERT: an admitted key's record */
        me.cert = A.cert;
        me.cert_len = A.cert_len;
    }
    me.loss = stage == A.man.stages - 1 ? 1.0 : -1;
    me.norm = 1.0;
    snprintf(me.hash, sizeof(me.hash), "0000000000000000");
    A.seq = SW_MAX(A.seq + 1, (uint64_t)time(NULL) * 1000);
    if (hostile_signed_rec(&A.man, id, &me, A.seq, 10, val, sizeof(val), &r) == 0 &&
        sw_dhtnode_put(A.dht, &r, on_put, NULL) == 0)
        A.sent++;
}

/* A training node's record of stage for id at ep, step, tps. */
static void
publish(const struct sw_identity *id, const char *ep, int stage, uint64_t step, double tps)
{
    publish_rec(id, ep, stage, step, tps, SW_REC_TRAINING);
}

/* ---- tensor pieces ---- */

/* Floats in stage's slab (kind < 0), or in CheckFree+ replica kind (0 the
 * embedding of stage 0, 1 the head of the last stage). */
static int
tensor_numel(int stage, int kind, size_t *numel)
{
    struct sw_stage_layout lay;
    const struct sw_tensor_info *t[2];
    int n = 0;

    if (sw_stage_layout_init(&lay, &A.man.model, A.man.stages,
                             kind < 0 ? stage : kind == 0 ? 0 : A.man.stages - 1) < 0)
        return -1;
    *numel = lay.numel;
    if (kind >= 0 &&
        (n = sw_checkfree_replica_tensors(&lay, (enum sw_checkfree_replica_kind)kind, t)) >= 0) {
        *numel = 0;
        for (int i = 0; i < n; i++)
            *numel += t[i]->numel;
    }
    sw_stage_layout_release(&lay);
    return n < 0 || *numel == 0 ? -1 : 0;
}

/* A payload-carrying one-way message to ep (as trainer_send does). */
static int
trainer_like_send(const char *ep, uint32_t type, const struct sw_body *b, const void *x,
                  size_t len)
{
    struct sw_payload p = {x, len, NULL, NULL, NULL};

    if (b->b.overflow)
        return -SW_ETOOBIG;
    return sw_transport_send(A.tr, ep, type, b->b.data, b->b.len, len ? &p : NULL);
}

/* One GRAD (rep false) or REPLICA piece of stage to ep: step, off, n, the
 * payload (fp32 x[n], in the run's gradient codec for a GRAD, float32 for a
 * GRAD relayed 'of' a replica: of non-NULL) */
static void
send_piece_of(const char *ep, bool rep, int stage, uint64_t step, uint64_t off, uint64_t n,
              const float *x, size_t nx, double loss, const uint8_t *of)
{
    static struct sw_body b;
    static uint8_t wire[16u << 20];
    enum sw_codec c = rep || of ? SW_CODEC_FP32 : A.man.grad_codec;
    uint8_t hash[32] = {0};
    size_t bytes;

    sw_body_init(&b);
    if (rep) {
        msgpack_pack_map(&b.pk, 4);
        sw_proto_pack_key(&b.pk, "step");
        msgpack_pack_uint64(&b.pk, step);
        sw_proto_pack_key(&b.pk, "kind");
        msgpack_pack_uint32(&b.pk, stage == 1 ? 0 : 1);
    } else {
        msgpack_pack_map(&b.pk, of ? 9 : 8);
        if (of) {
            sw_proto_pack_key(&b.pk, "of");
            sw_proto_pack_bin(&b.pk, of, 32);
        }
        sw_proto_pack_key(&b.pk, "step");
        msgpack_pack_uint64(&b.pk, step);
        sw_proto_pack_key(&b.pk, "ver");
        msgpack_pack_uint64(&b.pk, 1);
        sw_proto_pack_key(&b.pk, "stage");
        msgpack_pack_uint64(&b.pk, (uint64_t)stage);
        sw_proto_pack_key(&b.pk, "count");
        msgpack_pack_uint64(&b.pk, 1);
        sw_proto_pack_key(&b.pk, "loss");
        msgpack_pack_double(&b.pk, loss);
        sw_proto_pack_key(&b.pk, "hash");
        sw_proto_pack_bin(&b.pk, hash, 32);
    }
    sw_proto_pack_key(&b.pk, "off");
    msgpack_pack_uint64(&b.pk, off);
    sw_proto_pack_key(&b.pk, "n");
    msgpack_pack_uint64(&b.pk, n);
    bytes = sw_codec_bytes(c, nx);
    if (bytes > sizeof(wire))
        return;
    sw_codec_encode(c, x, nx, wire);
    if (trainer_like_send(ep, rep ? SW_MSG_REPLICA : SW_MSG_GRAD, &b, wire, bytes) == 0)
        A.sent++;
}

static void
send_piece(const char *ep, bool rep, int stage, uint64_t step, uint64_t off, uint64_t n,
           const float *x, size_t nx, double loss)
{
    send_piece_of(ep, rep, stage, step, off, n, x, nx, loss, NULL);
}

/* A GRAD_ASK of stage's step for the partial of 'of' to ep. */
static void
send_ask(const char *ep, int stage, uint64_t step, const uint8_t *of)
{
    static struct sw_body b;

    sw_body_init(&b);
    msgpack_pack_map(&b.pk, 3);
    sw_proto_pack_key(&b.pk, "step");
    msgpack_pack_uint64(&b.pk, step);
    sw_proto_pack_key(&b.pk, "stage");
    msgpack_pack_uint64(&b.pk, (uint64_t)stage);
    sw_proto_pack_key(&b.pk, "of");
    sw_proto_pack_bin(&b.pk, of, 32);
    if (trainer_like_send(ep, SW_MSG_GRAD_ASK, &b, NULL, 0) == 0)
        A.sent++;
}

/* A FWD piece (off, n bytes of x, claiming total bytes) of microbatch mb of
 * step to ep, whose node runs hop 'hop' (mode hop). */
static void
send_hop_piece(const char *ep, uint64_t step, int mb, int hop, uint64_t off, size_t n,
               uint64_t total, const uint8_t *x)
{
    static struct sw_body b;

    sw_body_init(&b);
    msgpack_pack_map(&b.pk, 6);
    sw_proto_pack_key(&b.pk, "step");
    msgpack_pack_uint64(&b.pk, step);
    sw_proto_pack_key(&b.pk, "mb");
    msgpack_pack_uint32(&b.pk, (uint32_t)mb);
    sw_proto_pack_key(&b.pk, "hop");
    msgpack_pack_uint32(&b.pk, (uint32_t)hop);
    sw_proto_pack_key(&b.pk, "route");
    msgpack_pack_array(&b.pk, (size_t)A.man.stages);
    for (int s = 0; s < A.man.stages; s++)
        sw_proto_pack_str(&b.pk, s == hop - 1 ? A.ep : ep);
    sw_proto_pack_key(&b.pk, "off");
    msgpack_pack_uint64(&b.pk, off);
    sw_proto_pack_key(&b.pk, "total");
    msgpack_pack_uint64(&b.pk, total);
    if (trainer_like_send(ep, SW_MSG_FWD, &b, x, n) == 0)
        A.sent++;
}

/* One round of mode hop to ep (stage 'hop'): a FWD is total bytes. */
static void
hop_round(const char *ep, int hop, uint64_t total, const uint8_t *x, bool malformed)
{
    uint64_t p = SW_STEP_HOP_PIECE, n = SW_MIN(p, total);

    for (uint64_t k = 0; k <= 1; k++)
        for (int mb = 0; mb < A.man.micro; mb++)
            send_hop_piece(ep, A.run_step + k, mb, hop, 0, n, total, x);
    if (!malformed)
        return;
    send_hop_piece(ep, A.run_step, 0, hop, 8, n, total, x);          /* off inside */
    send_hop_piece(ep, A.run_step, 0, hop, 0, n / 2, total, x);      /* short */
    send_hop_piece(ep, A.run_step, 0, hop, total, n, total, x);      /* past the end */
    send_hop_piece(ep, A.run_step, 0, hop, 0, n, total + 4, x);      /* wrong total */
}

/* The pieces of one round of mode grad (rep false) or replica to ep. */
static void
pieces_round(const char *ep, bool rep, int stage, size_t numel, const float *x, const float *bad,
             bool malformed)
{
    uint64_t n = SW_MIN(SW_STEP_PIECE, numel);

    if (rep) {
        send_piece(ep, true, stage, A.run_step + 1000, 0, n, x, n, 0);
        send_piece(ep, true, stage, A.run_step, 0, n, bad, n, 0);
        send_piece(ep, true, stage, A.run_step + 1, 0, n, bad, n, 0);
        return;
    }
    for (uint64_t k = 1; k <= 16; k++)
        send_piece(ep, false, stage, A.run_step + k, 0, n, x, n, 1.0);
    /* asks for a relay of a partial (of its own key: a node of the stage,
     * not of the plan) and a relayed piece nobody asked for */
    for (int i = 0; i < 20; i++)
        send_ask(ep, stage, A.run_step - (A.run_step > 0), A.id.pk);
    send_piece_of(ep, false, stage, A.run_step, 0, n, x, n, 1.0, A.id.pk);
    if (!malformed)
        return;
    if (numel > 1)
        send_piece(ep, false, stage, A.run_step, 1, n - 1, x, n - 1, 1.0); /* off inside */
    send_piece(ep, false, stage, A.run_step, 0, n / 2, x, n / 2, 1.0);     /* short */
    send_piece(ep, false, stage, A.run_step, numel, n, x, n, 1.0);         /* past the end */
    send_piece(ep, false, stage + 1, A.run_step, 0, n, x, n, 1.0); /* another stage: no ban */
    send_piece(ep, false, stage, A.run_step, 0, n, bad, n, 1.0);           /* NaN values */
    send_piece(ep, false, stage, A.run_step, 0, n, x, n, NAN);             /* NaN loss */
}

/* ---- requests through raw sockets, sealed by any key ---- */

/* One request of kind (0 STATE_GET, 1 CKPT_INFO_GET, 2 PING) sealed by w to t. */
static void
raw_request(struct sw_wire *w, struct hostile_target *t, int kind, uint64_t rid)
{
    uint8_t body[256];
    struct sw_wire_buf b;
    msgpack_packer pk;
    uint32_t type;

    sw_wire_buf_init(&b, body, sizeof(body));
    sw_wire_buf_packer(&pk, &b);
    if (kind == 0) {
        type = SW_MSG_STATE_GET;
        b.len = hostile_state_get_body(body, sizeof(body), t->stage, 64, false);
    } else if (kind == 1) {
        type = SW_MSG_CKPT_INFO_GET;
        msgpack_pack_map(&pk, 2);
        sw_proto_pack_key(&pk, "step");
        msgpack_pack_uint64(&pk, 0);
        sw_proto_pack_key(&pk, "stage");
        msgpack_pack_uint32(&pk, (uint32_t)t->stage);
    } else {
        type = SW_MSG_PING;
        msgpack_pack_map(&pk, 0);
    }
    if (hostile_send(w, t->sock, type, rid, body, b.len, false, NULL) < 0)
        A.refused++;
    else
        A.sent++;
}

static int
flood(int nkeys, long n, struct hostile_target *t, int nt, double seconds)
{
    struct sw_identity *ids = NULL;
    struct sw_wire *ws = NULL;
    double end = sw_now_s() + seconds;
    long i;

    if (nkeys > 0) {
        ids = calloc((size_t)nkeys, sizeof(*ids));
        ws = calloc((size_t)nkeys, sizeof(*ws));
        if (!ids || !ws)
            return -1;
        for (int k = 0; k < nkeys; k++)
            if (sw_identity_generate(&ids[k]) < 0 ||
                sw_wire_init(&ws[k], &ids[k], A.man.run_id, NULL) < 0)
                return -1;
    }
    for (i = 0; i < n && going(end); i++) {
        struct hostile_target *tg = &t[i % nt];
        int kind = (int)((i / nt) % 3);
        if (nkeys > 0) {
            raw_request(&ws[i % nkeys], tg, kind, (uint64_t)i + 1);
        } else {
            struct sw_identity id;
            struct sw_wire w;
            if (sw_identity_generate(&id) < 0)
                return -1;
            if (sw_wire_init(&w, &id, A.man.run_id, NULL) == 0) {
                raw_request(&w, tg, kind, (uint64_t)i + 1);
                sw_wire_release(&w);
            }
            sw_identity_release(&id);
        }
        if (i % 256 == 255)
            uv_run(&A.loop, UV_RUN_NOWAIT);
    }
    printf("# attack: %ld requests from %s in %.1f s\n", i,
           nkeys > 0 ? "a few keys" : "fresh keys", seconds - (end - sw_now_s()));
    for (int k = 0; k < nkeys; k++) {
        sw_wire_release(&ws[k]);
        sw_identity_release(&ids[k]);
    }
    free(ids);
    free(ws);
    return 0;
}

/* limits: COUNT PINGs from one key, COUNT / 10 STATE_GETs from another and 5
 * PINGs from each of COUNT / 10 fresh keys at one node, each waiting for room
 * on its socket, their answers counted (the node's rate limits at work). */
static int
limits(long count, const struct hostile_target *t, void *zctx)
{
    struct sw_wire_opts wo = {.max_senders = 1};
    struct sw_identity id;
    struct sw_wire w;
    uint8_t body[256];
    void *zp, *zs, *zf;
    size_t blen;
    uint64_t a_ping = 0, a_state = 0, a_fresh = 0, rid = 1;
    double t0;

    if (!(zp = hostile_dealer(zctx, t->ep, false)) || !(zs = hostile_dealer(zctx, t->ep, false)) ||
        !(zf = hostile_dealer(zctx, t->ep, false)))
        return -1;
    t0 = sw_now_s();

    /* one key, PINGs */
    if (sw_identity_generate(&id) < 0 || sw_wire_init(&w, &id, A.man.run_id, &wo) < 0)
        return -1;
    for (long i = 0; i < count; i++)
        if (hostile_send(&w, zp, SW_MSG_PING, rid++, NULL, 0, true, &a_ping) < 0)
            return -1;
    sw_wire_release(&w);
    sw_identity_release(&id);

    /* another key, STATE_GETs */
    blen = hostile_state_get_body(body, sizeof(body), t->stage, 16, false);
    if (sw_identity_generate(&id) < 0 || sw_wire_init(&w, &id, A.man.run_id, &wo) < 0)
        return -1;
    for (long i = 0; i < count / 10; i++)
        if (hostile_send(&w, zs, SW_MSG_STATE_GET, rid++, body, blen, true, &a_state) < 0)
            return -1;
    sw_wire_release(&w);
    sw_identity_release(&id);

    /* fresh keys, a few PINGs each */
    for (long k = 0; k < count / 10; k++) {
        if (sw_identity_generate(&id) < 0 || sw_wire_init(&w, &id, A.man.run_id, &wo) < 0)
            return -1;
        for (int i = 0; i < 5; i++)
            if (hostile_send(&w, zf, SW_MSG_PING, rid++, NULL, 0, true, &a_fresh) < 0)
                return -1;
        sw_wire_release(&w);
        sw_identity_release(&id);
    }
    a_ping += hostile_settle(zp, 10000);
    a_state += hostile_settle(zs, 10000);
    a_fresh += hostile_settle(zf, 10000);
    A.sent += (uint64_t)(count + count / 10 + 5 * (count / 10));
    printf("# flood: %ld PINGs from one key, %ld STATE_GETs from another, %ld fresh keys x 5 "
           "PINGs\n", count, count / 10, count / 10);
    printf("answered PING %llu STATE %llu FRESH %llu SECONDS %.1f\n", (unsigned long long)a_ping,
           (unsigned long long)a_state, (unsigned long long)a_fresh, sw_now_s() - t0);
    zmq_close(zp);
    zmq_close(zs);
    zmq_close(zf);
    return 0;
}

int
main(int argc, char **argv)
{
    const char *mode;
    double seconds, end;
    char why[512];
    struct hostile_target *t = NULL;
    void *zctx = NULL;
    int rc = 0;

    if (argc < 5) {
        fprintf(stderr, "usage: test_peers_attack MANIFEST BOOT SECONDS MODE [ARGS...]\n");
        return 2;
    }
    if (sw_manifest_load(&A.man, argv[1], why, sizeof(why)) < 0) {
        fprintf(stderr, "%s\n", why);
        return 2;
    }
    seconds = atof(argv[3]);
    mode = argv[4];
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGTERM, on_term);
    uv_loop_init(&A.loop);
    if (sw_identity_global_init() < 0)
        return 2;
    if (!strcmp(mode, "record") || !strcmp(mode, "ready")) {
        for (int i = 7; i < argc; i++)
            A.low |= !strcmp(argv[i], "low");
    }
    if (getenv("ATTACK_CERT") &&
        sw_cert_load(getenv("ATTACK_CERT"), A.cert, &A.cert_len) < 0) {
        fprintf(stderr, "test_peers_attack: cannot read ATTACK_CERT\n");
        return 2;
    }
    /* low: a key below every node's (theirs start with 0x00 0x0? at odds 1/4096) */
    if (getenv("ATTACK_KEY")) {
        if (sw_identity_load_or_create(&A.id, getenv("ATTACK_KEY")) < 0)
            return 2;
    } else do {
        if (sw_identity_generate(&A.id) < 0)
            return 2;
        if (!A.low || (A.id.pk[0] == 0 && A.id.pk[1] < 16))
            break;
        sw_identity_release(&A.id);
    } while (1);
    if (join_run(argv[2]) < 0) {
        fprintf(stderr, "test_peers_attack: cannot join the run through '%s'\n", argv[2]);
        return 2;
    }
    scan();
    run_for(1.0);
    printf("# attack: %s from %s (key %02x%02x...), run at step %llu\n", mode, A.ep, A.id.pk[0],
           A.id.pk[1], (unsigned long long)A.run_step);
    end = sw_now_s() + seconds;
    if (!strcmp(mode, "prepare") && argc >= 7) {
        uint64_t off = strtoull(argv[5], NULL, 10);
        int nt = argc - 6;
        uint8_t body[64];
        if (hostile_targets("test_peers_attack", argv + 6, nt, NULL, false, &t) < 0)
            return 2;
        while (going(end)) {
            scan();
            for (int i = 0; i < nt; i++) {
                size_t blen = hostile_step_body(body, sizeof(body), A.run_step + off);
                if (sw_transport_request(A.tr, t[i].ep, SW_MSG_PREPARE, body, blen, NULL, 500, 0,
                                         hostile_ignored, NULL) == 0)
                    A.sent++;
            }
            run_for(0.1);
        }
    } else if (!strcmp(mode, "record") && argc >= 7) {
        int stage = atoi(argv[5]);
        uint64_t off = strtoull(argv[6], NULL, 10);
        bool syncing = false;
        for (int i = 7; i < argc; i++) {
            A.zero |= !strcmp(argv[i], "zero");
            syncing |= !strcmp(argv[i], "syncing");
        }
        while (going(end)) {
            scan();
            run_for(0.2);
            publish_rec(&A.id, A.ep, stage, A.run_step + off, 1000.0,
                        syncing ? SW_REC_SYNCING : SW_REC_TRAINING);
            run_for(0.8);
        }
    } else if (!strcmp(mode, "ready") && argc >= 7) {
        A.ready_stage = atoi(argv[5]);
        A.answer = !strcmp(argv[6], "copy") ? ANSWER_COPY : !strcmp(argv[6], "busy") ? ANSWER_BUSY :
                   !strcmp(argv[6], "ok") ? ANSWER_OK :
                   !strcmp(argv[6], "nohash") ? ANSWER_NOHASH : ANSWER_NONE;
        if (!A.answer) {
            fprintf(stderr, "test_peers_attack: ready STAGE copy|busy|ok|nohash\n");
            return 2;
        }
        while (going(end)) {
            scan();
            run_for(0.2);
            publish(&A.id, A.ep, A.ready_stage, A.run_step, 1000.0);
            run_for(0.8);
        }
    } else if (!strcmp(mode, "fakes") && argc >= 7) {
        int stage = atoi(argv[5]), count = SW_MIN(atoi(argv[6]), MAX_FAKES);
        char ep[SW_PROTO_EP_MAX];
        for (int i = 0; i < count - 1; i++)
            if (sw_identity_generate(&A.fake[A.nfake++]) < 0)
                return 2;
        while (going(end)) {
            scan();
            run_for(0.2);
            publish(&A.id, A.ep, stage, A.run_step, 5e7);
            for (int i = 0; i < A.nfake; i++) {
                /* ports in the discard range nobody listens on here */
                snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", 9 + i % 3);
                publish(&A.fake[i], ep, stage, A.run_step, 5e7);
                if (i % 8 == 7)
                    run_for(0.01);
            }
            run_for(1.5);
        }
    } else if ((!strcmp(mode, "grad") || !strcmp(mode, "replica")) && argc >= 7) {
        bool rep = !strcmp(mode, "replica");
        int stage = atoi(argv[5]), nt = argc - 6, k = rep ? (stage == 1 ? 0 : 1) : -1;
        size_t numel = 0, n;
        float *x, *bad;
        if (hostile_targets("test_peers_attack", argv + 6, nt, NULL, false, &t) < 0 ||
            stage < 0 || stage >= A.man.stages || tensor_numel(stage, k, &numel) < 0)
            return 2;
        n = SW_MIN(SW_STEP_PIECE, numel);
        x = calloc(n, sizeof(float));
        bad = malloc(n * sizeof(float));
        if (!x || !bad)
            return 2;
        for (size_t i = 0; i < n; i++) {
            x[i] = 1e-3f;
            bad[i] = rep ? 1e30f : NAN;
        }
        /* in the run as a syncing node of the stage it claims to be a
         * replica of (grad), or of the stage whose replica it claims to push */
        int rs = !rep ? stage : k == 0 ? 0 : A.man.stages - 1;
        double t0 = sw_now_s();
        for (int round = 0; going(end); round++) {
            scan();
            if (round % 10 == 0)
                publish_rec(&A.id, A.ep, rs, A.run_step, 1000.0, SW_REC_SYNCING);
            /* the malformed pieces (a ban) in the second half only: the
             * well-formed ones reach the replicas once they know the key */
            for (int i = 0; i < nt; i++)
                pieces_round(t[i].ep, rep, stage, numel, x, bad, sw_now_s() > t0 + seconds / 2);
            run_for(0.1);
        }
        free(x);
        free(bad);
    } else if (!strcmp(mode, "hop") && argc >= 6) {
        int stage = atoi(argv[5]), nt = argc - 6;
        size_t N = (size_t)A.man.batch * (size_t)A.man.T;
        uint64_t total = sw_codec_bytes(A.man.act_codec, N * (size_t)A.man.model.d_model) + N * 4;
        uint8_t *x;
        if (hostile_targets("test_peers_attack", argv + 6, nt, NULL, false, &t) < 0 ||
            stage < 1 || stage >= A.man.stages || total <= SW_STEP_HOP_PIECE)
            return 2;
        if (!(x = calloc(1, SW_STEP_HOP_PIECE)))
            return 2;
        double t0 = sw_now_s();
        for (int round = 0; going(end); round++) {
            scan();
            if (round % 20 == 0)
                publish_rec(&A.id, A.ep, stage - 1, A.run_step, 1000.0, SW_REC_SYNCING);
            for (int i = 0; i < nt; i++)
                hop_round(t[i].ep, stage, total, x, sw_now_s() > t0 + seconds / 2);
            run_for(0.05);
        }
        free(x);
    } else if (!strcmp(mode, "keeper") && argc == 6) {
        uint64_t off = strtoull(argv[5], NULL, 10);
        if (sw_identity_generate(&A.fake[A.nfake++]) < 0)
            return 2;
        while (going(end)) {
            struct sw_run_end e = {(uint64_t)A.man.steps, 0.0, NULL, 0};
            scan();
            run_for(0.2);
            A.seq = SW_MAX(A.seq + 1, (uint64_t)time(NULL) * 1000);
            if (sw_ckptnet_publish(A.dht, A.man.run_id, A.fake[0].sk, NULL, 0, A.ep,
                                   A.run_step + off, A.seq) == 0)
                A.sent++;
            if (sw_status_end_publish(A.dht, A.man.run_id, A.fake[0].sk, &e, ++A.seq) == 0)
                A.sent++;
            run_for(0.8);
        }
    } else if ((!strcmp(mode, "flood") && argc >= 8) || (!strcmp(mode, "ping") && argc >= 7)) {
        bool ping = !strcmp(mode, "ping");
        int nkeys = ping ? 1 : atoi(argv[5]);
        long n = atol(argv[ping ? 5 : 6]);
        int first = ping ? 6 : 7, nt = argc - first;
        zctx = zmq_ctx_new();
        if (hostile_targets("test_peers_attack", argv + first, nt, zctx, true, &t) < 0)
            return 2;
        if (ping) {
            struct sw_wire w;
            if (sw_wire_init(&w, &A.id, A.man.run_id, NULL) < 0)
                return 2;
            for (long i = 0; i < n && going(end); i++) {
                raw_request(&w, &t[i % nt], 2, (uint64_t)i + 1);
                if (i % 256 == 255)
                    uv_run(&A.loop, UV_RUN_NOWAIT);
            }
            sw_wire_release(&w);
            printf("# attack: %llu PINGs from one key\n", (unsigned long long)A.sent);
        } else if (flood(nkeys, n, t, nt, seconds) < 0) {
            rc = 2;
        }
        run_for(SW_MAX(0.0, SW_MIN(end - sw_now_s(), 1.0)));
        for (int i = 0; i < nt; i++)
            zmq_close(t[i].sock);
    } else if (!strcmp(mode, "limits") && argc == 7) {
        long count = atol(argv[5]);
        zctx = zmq_ctx_new();
        if (count < 10 || hostile_targets("test_peers_attack", argv + 6, 1, NULL, false, &t) < 0 ||
            limits(count, t, zctx) < 0)
            rc = 2;
    } else {
        fprintf(stderr, "test_peers_attack: unknown mode or missing arguments\n");
        rc = 2;
    }
    printf("# attack: %llu sent (%llu refused locally), run at step %llu at the end\n",
           (unsigned long long)A.sent, (unsigned long long)A.refused,
           (unsigned long long)A.run_step);
    printf("# attack: received FWD=%llu BWD=%llu GRAD=%llu GO=%llu PREPARE=%llu STATE_GET=%llu "
           "other=%llu\n", (unsigned long long)A.got_fwd, (unsigned long long)A.got_bwd,
           (unsigned long long)A.got_grad, (unsigned long long)A.got_go,
           (unsigned long long)A.got_prepare, (unsigned long long)A.got_state_get,
           (unsigned long long)A.got_other);
    if (A.have_scan)
        sw_status_scan_release(&A.scan);
    if (A.dht)
        sw_dhtnode_close(A.dht);
    sw_transport_close(A.tr, hostile_closed, NULL);
    sw_transport_close(A.lobby, hostile_closed, NULL);
    uv_run(&A.loop, UV_RUN_DEFAULT);
    uv_loop_close(&A.loop);
    if (zctx)
        zmq_ctx_term(zctx);
    for (int i = 0; i < A.nfake; i++)
        sw_identity_release(&A.fake[i]);
    sw_identity_release(&A.id);
    sw_manifest_release(&A.man);
    free(t);
    return rc;
}
