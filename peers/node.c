/*
 * node.c - the swarmd process: bootstrap and training node (see node.h).
 */
#include "sw.h"

#include <math.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data.h"
#include "dhtnode.h"
#include "manifest.h"
#include "metrics.h"
#include "node.h"
#include "optim.h"
#include "proto.h"
#include "route.h"
#include "stage.h"
#include "status.h"
#include "transport.h"

#define EP SW_PROTO_EP_MAX
#define BODY_MAX SW_WIRE_MAX_ENVELOPE
#define SYNC_CHUNK (1u << 20) /* floats per STATE piece (4 MiB) */


struct node;

struct prep_slot {
    struct node *n;
    uint8_t pk[32];
    char ep[EP];
    int stage;
    double w;             /* advertised capacity (tokens/s), for the plan */
    bool ok, answered;
};

enum { PH_IDLE = 0, PH_PREPARING, PH_RUNNING };

struct node {
    struct sw_node_opts o;
    uv_loop_t *loop;
    struct sw_identity id;
    struct sw_manifest man;
    uint8_t owner[32], sig[64];
    struct sw_transport *lobby, *tr;
    char lobby_ep[EP], ep[EP], boot_ep[EP], peer_ep[EP];
    bool boot;
    uv_timer_t tick;
    uv_signal_t sigint, sigterm;
    struct sw_metrics *metrics;
    int exit_code;
    bool stopping, closing;
    uint64_t stop_ms, done_ms;
    int nclose;

    /* discovery: the DHT node, and the last scan of the stage keys */
    struct sw_dhtnode *dht;
    struct sw_status_scan scan;
    bool have_scan;
    struct sw_peer_rec dir[SW_NODE_MAX_NODES];
    int ndir;
    bool dir_ok;
    uint64_t scan_ms, run_step;
    uint64_t pub_seq, pub_ms, pub_step, step_changed_ms;
    int pub_state;
    bool leaving, left_done;
    uint64_t leave_ms;

    /* training */
    int stage, S, M, B, T, C;
    size_t N;
    const struct sw_kernels *k;
    struct sw_stage st;
    struct sw_optim opt;
    bool have_stage, have_data;
    struct sw_data data;
    struct sw_data_cursor cur0; /* cursor at the start of the step (restart) */
    int state;
    uint64_t step;        /* steps completed */
    bool in_step, go;
    int nrep, myidx, n_own, n_bwd;
    int *mb_node;         /* [M] this step: index of the node of our stage serving each */
    uint8_t rep_pk[SW_NODE_MAX_REPLICAS][32];
    char rep_ep[SW_NODE_MAX_REPLICAS][EP];
    bool *fwd_done, *bwd_done, *have_dx;
    float *losses;        /* [M] */
    float *dx;            /* [M, N, C] gradients waiting for their turn */
    char *routes;         /* [M, S, EP] */
    float *xbuf;          /* [N, C] */
    uint8_t *msgbuf;      /* [N*C*4 + N*4] x then targets */
    int32_t *in_all, *tg_all; /* stage 0: [M, N] */
    float *gsum;          /* host [numel] */
    float *gbuf[SW_NODE_MAX_REPLICAS];
    uint8_t gpk[SW_NODE_MAX_REPLICAS][32];
    uint8_t ghash[SW_NODE_MAX_REPLICAS][32];
    double gloss[SW_NODE_MAX_REPLICAS];
    uint64_t gstep[SW_NODE_MAX_REPLICAS];
    int ngot;
    bool own_done;
    uint8_t phash[32];    /* hash of the parameters (after the last update) */
    char hash[17];
    double last_loss, last_norm, tps, cap, t_compute, tok_compute, t_update, t_go;
    uint64_t recoveries, mismatches, tokens_total;

    bool prep_pending;
    struct sw_transport_route prep_route;
    uint64_t prep_step;

    bool syncing, sync_busy;
    int sync_which;
    size_t sync_off;
    uint64_t sync_step, sync_t;
    float sync_lrm;
    float *sync_buf;      /* host [3, numel] */
    char sync_ep[EP];
    uint64_t sync_retry_ms;

    int phase;
    uint64_t phase_ms, lead_step, wait_log_ms;
    int nprep, nwait;
    struct prep_slot prep[SW_NODE_MAX_NODES];
};

static void
hex16(char out[17], const uint8_t *h)
{
    char full[65];
    sw_identity_hex(full, h, 32);
    memcpy(out, full, 16);
    out[16] = '\0';
}

static char *
short_pk(char out[13], const uint8_t *pk)
{
    char full[65];
    sw_identity_hex(full, pk, 32);
    memcpy(out, full, 12);
    out[12] = '\0';
    return out;
}

/* ---- body building ---- */

struct body {
    uint8_t data[BODY_MAX];
    struct sw_wire_buf b;
    msgpack_packer pk;
};

static void
body_init(struct body *b)
{
    sw_wire_buf_init(&b->b, b->data, sizeof(b->data));
    sw_wire_buf_packer(&b->pk, &b->b);
}

static int
send_msg(struct node *n, const char *ep, uint32_t type, struct body *b, const void *payload,
         size_t plen)
{
    struct sw_payload p = {payload, plen, NULL, NULL, NULL};
    int err;

    if (b->b.overflow)
        return -SW_ETOOBIG;
    err = sw_transport_send(n->tr, ep, type, b->b.data, b->b.len, plen ? &p : NULL);
    if (err < 0)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 1000, "cannot send message %u to '%s': %s", type, ep,
                           sw_strerror(err));
    return err;
}

static int
reply_msg(struct node *n, struct sw_transport *t, const struct sw_transport_route *r,
          uint32_t type, struct body *b, const void *payload, size_t plen)
{
    struct sw_payload p = {payload, plen, NULL, NULL, NULL};
    int err;

    (void)n;
    if (b->b.overflow)
        return -SW_ETOOBIG;
    err = sw_transport_reply(t, r, type, b->b.data, b->b.len, plen ? &p : NULL);
    if (err < 0)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 1000, "cannot reply %u: %s", type, sw_strerror(err));
    return err;
}

static bool
open_body(struct node *n, const struct sw_transport_msg *m, msgpack_unpacked *u,
          const char *const *keys)
{
    msgpack_unpacked_init(u);
    if (sw_wire_unpack(m->hdr.body, m->hdr.body_len, u) < 0 || !sw_proto_only(&u->data, keys)) {
        msgpack_unpacked_destroy(u);
        sw_wire_count_drop(sw_transport_wire(n->tr), SW_WIRE_DROP_MALFORMED);
        SW_LOG_RATELIMITED(SW_LOG_WARN, 2000, "dropped malformed message of type %u",
                           m->hdr.type);
        return false;
    }
    return true;
}

static void
drop_malformed(struct node *n, msgpack_unpacked *u, uint32_t type)
{
    msgpack_unpacked_destroy(u);
    sw_wire_count_drop(sw_transport_wire(n->tr), SW_WIRE_DROP_MALFORMED);
    SW_LOG_RATELIMITED(SW_LOG_WARN, 2000, "dropped malformed message of type %u", type);
}

static void
self_rec(const struct node *n, struct sw_peer_rec *r)
{
    memset(r, 0, sizeof(*r));
    memcpy(r->pk, n->id.pk, 32);
    snprintf(r->ep, sizeof(r->ep), "%s", n->ep);
    r->stage = n->stage;
    r->state = n->state;
    r->step = n->step;
    r->tps = n->tps;
    r->cap = n->cap;
    r->loss = n->stage == n->S - 1 ? n->last_loss : -1;
    r->norm = n->last_norm;
    snprintf(r->hash, sizeof(r->hash), "%s", n->hash);
    r->recoveries = n->recoveries;
}

/* ---- discovery (the DHT) ---- */

static struct sw_peer_rec *
dir_find(struct node *n, const uint8_t *pk)
{
    for (int i = 0; i < n->ndir; i++)
        if (!memcmp(n->dir[i].pk, pk, 32))
            return &n->dir[i];
    return NULL;
}

/* ---- lobby ---- */

static void
on_manifest_get(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    struct node *n = arg;
    static struct body b;

    if (m->route.rid == 0)
        return;
    body_init(&b);
    msgpack_pack_map(&b.pk, 5);
    sw_proto_pack_key(&b.pk, "manifest");
    sw_proto_pack_bin(&b.pk, n->man.bytes, n->man.len);
    sw_proto_pack_key(&b.pk, "owner");
    sw_proto_pack_bin(&b.pk, n->owner, 32);
    sw_proto_pack_key(&b.pk, "sig");
    sw_proto_pack_bin(&b.pk, n->sig, 64);
    sw_proto_pack_key(&b.pk, "ep");
    sw_proto_pack_str(&b.pk, n->ep);
    sw_proto_pack_key(&b.pk, "boot");
    sw_proto_pack_str(&b.pk, n->boot_ep);
    reply_msg(n, t, &m->route, SW_MSG_MANIFEST, &b, NULL, 0);
}

/* ---- discovery on a node ---- */

static void
on_put(void *arg, int status, unsigned n_stored, const struct sw_dht_lookup_info *info)
{
    struct node *n = arg;

    (void)info;
    if (status == -SW_ECANCELED)
        return;
    if (status < 0)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "cannot publish the stage record: %s",
                           sw_strerror(status));
    else
        sw_log(SW_LOG_DEBUG, "stage record stored on %u nodes", n_stored);
    if (n->leaving)
        n->left_done = true;
}

/* Publishes this node's stage record (state given, ttl_s) in the DHT. */
static void
publish(struct node *n, int state, uint32_t ttl_s)
{
    static uint8_t val[1024];
    struct sw_wire_buf b;
    msgpack_packer pk;
    struct sw_dht_record r;
    struct sw_peer_rec me;
    uint64_t now = sw_now_ms(), wall = (uint64_t)time(NULL) * 1000;
    int err;

    if (!n->dht)
        return;
    self_rec(n, &me);
    me.state = state;
    if (n->step != n->pub_step || n->step_changed_ms == 0) {
        /* the first record too: its step is as fresh as the node */
        n->pub_step = n->step;
        n->step_changed_ms = now;
    }
    sw_wire_buf_init(&b, val, sizeof(val));
    sw_wire_buf_packer(&pk, &b);
    sw_status_rec_pack(&pk, &me, ttl_s, now - n->step_changed_ms);
    if (b.overflow)
        return;
    /* a higher seq replaces the last record, also across restarts with the same key */
    n->pub_seq = SW_MAX(n->pub_seq + 1, wall);
    memset(&r, 0, sizeof(r));
    sw_status_stage_key(r.key, n->man.run_id, n->stage);
    r.seq = n->pub_seq;
    r.ttl_s = ttl_s;
    r.val = val;
    r.val_len = b.len;
    sw_dht_record_sign(&r, n->id.sk);
    if ((err = sw_dhtnode_put(n->dht, &r, on_put, n)) < 0)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "cannot publish the stage record: %s",
                           sw_strerror(err));
    n->pub_ms = now;
    n->pub_state = state;
}

static void
announce(struct node *n)
{
    publish(n, n->state, SW_NODE_RECORD_TTL_S);
}

static void
on_scan(void *arg, int status, const struct sw_peer_rec *recs, int cnt, uint64_t max_step)
{
    struct node *n = arg;
    char who[13];

    if (status == -SW_ECANCELED || n->closing)
        return;
    if (status < 0) {
        SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "cannot read the stages from the DHT: %s",
                           sw_strerror(status));
        return;
    }
    if (n->boot) {
        /* the operator's log: who came and went */
        for (int i = 0; i < cnt; i++)
            if (!dir_find(n, recs[i].pk))
                sw_log(SW_LOG_INFO, "node %s joined stage %d at %s", short_pk(who, recs[i].pk),
                       recs[i].stage, recs[i].ep);
        for (int i = 0; i < n->ndir; i++) {
            bool still = false;
            for (int j = 0; j < cnt && !still; j++)
                still = !memcmp(recs[j].pk, n->dir[i].pk, 32);
            if (!still)
                sw_log(SW_LOG_INFO, "node %s of stage %d left or expired",
                       short_pk(who, n->dir[i].pk), n->dir[i].stage);
        }
    }
    memcpy(n->dir, recs, (size_t)cnt * sizeof(*recs));
    n->ndir = cnt;
    if (max_step > n->run_step)
        n->run_step = max_step;
    n->dir_ok = true;
}

static void
scan(struct node *n)
{
    int err;

    if (!n->have_scan || n->scan.pending)
        return;
    n->scan_ms = sw_now_ms();
    if ((err = sw_status_scan_start(&n->scan, on_scan, n)) < 0)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "cannot read the stages from the DHT: %s",
                           sw_strerror(err));
}

/* ---- training: buffers ---- */

static int
train_alloc(struct node *n)
{
    size_t NC = n->N * n->C, M = (size_t)n->M;

    n->fwd_done = sw_calloc(M, sizeof(bool));
    n->bwd_done = sw_calloc(M, sizeof(bool));
    n->have_dx = sw_calloc(M, sizeof(bool));
    n->losses = sw_calloc(M, sizeof(float));
    n->mb_node = sw_calloc(M, sizeof(int));
    n->dx = sw_malloc_big(M * NC * sizeof(float));
    n->routes = sw_calloc(M * (size_t)n->S, EP);
    n->xbuf = sw_malloc_big(NC * sizeof(float));
    n->msgbuf = sw_malloc_big(NC * 4 + n->N * 4);
    n->in_all = sw_malloc(M * n->N * sizeof(int32_t));
    n->tg_all = sw_malloc(M * n->N * sizeof(int32_t));
    n->gsum = sw_malloc_big(n->st.lay.numel * sizeof(float));
    if (!n->fwd_done || !n->bwd_done || !n->have_dx || !n->losses || !n->mb_node || !n->dx || !n->routes ||
        !n->xbuf || !n->msgbuf || !n->in_all || !n->tg_all || !n->gsum)
        return -SW_ENOMEM;
    return 0;
}

static void
train_free(struct node *n)
{
    sw_free(n->fwd_done);
    sw_free(n->bwd_done);
    sw_free(n->have_dx);
    sw_free(n->losses);
    sw_free(n->mb_node);
    sw_free_big(n->dx);
    sw_free(n->routes);
    sw_free_big(n->xbuf);
    sw_free_big(n->msgbuf);
    sw_free(n->in_all);
    sw_free(n->tg_all);
    sw_free_big(n->gsum);
    for (int i = 0; i < SW_NODE_MAX_REPLICAS; i++)
        sw_free_big(n->gbuf[i]);
    sw_free_big(n->sync_buf);
}

static char *
route_ep(struct node *n, int mb, int s)
{
    return n->routes + ((size_t)mb * n->S + s) * EP;
}

static void
params_hash(struct node *n)
{
    size_t bytes = n->st.lay.numel * sizeof(float);

    if (n->k->copy_d2h(n->gsum, n->st.params, bytes) < 0 || n->k->sync() < 0)
        return;
    crypto_generichash(n->phash, 32, (const uint8_t *)n->gsum, bytes, NULL, 0);
    hex16(n->hash, n->phash);
}

/* Forget the step in progress (end of step or restart). */
static void
step_reset(struct node *n)
{
    memset(n->fwd_done, 0, (size_t)n->M * sizeof(bool));
    memset(n->bwd_done, 0, (size_t)n->M * sizeof(bool));
    memset(n->have_dx, 0, (size_t)n->M * sizeof(bool));
    n->in_step = n->go = n->own_done = false;
    n->n_bwd = 0;
    /* keep partial gradients of replicas that are already at the next step */
    for (int i = 0; i < n->ngot;) {
        if (n->gstep[i] <= n->step) {
            float *tmp = n->gbuf[i];
            int last = n->ngot - 1;
            n->gbuf[i] = n->gbuf[last];
            n->gbuf[last] = tmp;
            memcpy(n->gpk[i], n->gpk[last], 32);
            memcpy(n->ghash[i], n->ghash[last], 32);
            n->gloss[i] = n->gloss[last];
            n->gstep[i] = n->gstep[last];
            n->ngot--;
        } else {
            i++;
        }
    }
}

static void
answer_prepare(struct node *n)
{
    static struct body b;
    bool ok;

    if (!n->prep_pending || n->syncing || n->in_step)
        return;
    ok = n->state == SW_NODE_TRAINING && n->step == n->prep_step && !n->stopping;
    n->prep_pending = false;
    body_init(&b);
    msgpack_pack_map(&b.pk, 2);
    sw_proto_pack_key(&b.pk, "step");
    msgpack_pack_uint64(&b.pk, n->prep_step);
    sw_proto_pack_key(&b.pk, "ok");
    if (ok)
        msgpack_pack_true(&b.pk);
    else
        msgpack_pack_false(&b.pk);
    reply_msg(n, n->tr, &n->prep_route, SW_MSG_READY, &b, NULL, 0);
}

static void sync_start(struct node *n);

static int
do_update(struct node *n, double loss_sum)
{
    float lr = sw_lr_at(&n->man.optim, (int)n->step);
    double now = sw_now_s(), dt;
    int err;

    if ((err = sw_optim_update(&n->opt, &n->st, lr)) < 0) {
        sw_log(SW_LOG_ERROR, "step %llu: update failed: %s", (unsigned long long)n->step,
               sw_strerror(err));
        return err;
    }
    n->last_norm = n->opt.last_norm;
    dt = n->t_update > 0 ? now - n->t_update : now - n->t_go;
    n->t_update = now;
    n->tps = dt > 0 ? (double)n->n_own * n->N / dt : 0;
    n->cap = n->t_compute > 0 ? n->tok_compute / n->t_compute : 0;
    n->tokens_total += (uint64_t)n->n_own * n->N;
    params_hash(n);
    if (n->stage == n->S - 1) {
        n->last_loss = loss_sum / n->M;
        printf("s:%llu trl:%.6f lr:%.2e norm:%.3f hash:%s tok/s:%.0f\n",
               (unsigned long long)n->step, n->last_loss, lr, n->last_norm, n->hash,
               (double)n->M * n->N / (dt > 0 ? dt : 1));
    } else {
        printf("s:%llu stage:%d norm:%.3f hash:%s\n", (unsigned long long)n->step, n->stage,
               n->last_norm, n->hash);
    }
    fflush(stdout);
    if ((err = sw_stage_zero_grad(&n->st)) < 0)
        return err;
    n->step++;
    if (n->step > n->run_step)
        n->run_step = n->step;
    step_reset(n);
    if (n->step >= (uint64_t)n->man.steps) {
        sw_log(SW_LOG_INFO, "run finished: %d steps", n->man.steps);
        n->state = SW_NODE_DONE;
        n->done_ms = sw_now_ms();
    }
    answer_prepare(n);
    return 0;
}

static void
fail(struct node *n, int err, const char *what)
{
    sw_log(SW_LOG_ERROR, "%s: %s; leaving the run", what, sw_strerror(err));
    n->exit_code = SW_EXIT_FAIL;
    n->stopping = true;
    n->in_step = false;
}

static void
try_finish_exchange(struct node *n)
{
    size_t numel = n->st.lay.numel;
    double loss = 0;
    int err;

    if (!n->own_done)
        return;
    if (n->nrep == 1) {
        loss = 0;
        for (int m = 0; m < n->M; m++)
            if (n->bwd_done[m])
                loss += n->losses[m];
        if ((err = do_update(n, loss)) < 0)
            fail(n, err, "update");
        return;
    }
    /* every other replica's partial for this step */
    for (int r = 0; r < n->nrep; r++) {
        bool found = r == n->myidx;
        for (int i = 0; i < n->ngot && !found; i++)
            found = n->gstep[i] == n->step && !memcmp(n->gpk[i], n->rep_pk[r], 32);
        if (!found)
            return;
    }
    memset(n->gsum, 0, numel * sizeof(float));
    for (int r = 0; r < n->nrep; r++) {
        const float *g = NULL;
        double l = 0;
        if (r == n->myidx) {
            g = n->gbuf[SW_NODE_MAX_REPLICAS - 1]; /* own partial, see on own_done */
            for (int m = 0; m < n->M; m++)
                if (n->bwd_done[m])
                    l += n->losses[m];
        } else {
            for (int i = 0; i < n->ngot; i++) {
                if (n->gstep[i] == n->step && !memcmp(n->gpk[i], n->rep_pk[r], 32)) {
                    g = n->gbuf[i];
                    l = n->gloss[i];
                    if (sodium_memcmp(n->ghash[i], n->phash, 32) != 0) {
                        char a[17], b2[17];
                        hex16(a, n->ghash[i]);
                        n->mismatches++;
                        sw_log(SW_LOG_ERROR,
                               "PARAMETER MISMATCH at step %llu: replica %d of stage %d has "
                               "hash %s, this node %s",
                               (unsigned long long)n->step, r, n->stage, a,
                               (hex16(b2, n->phash), b2));
                    }
                }
            }
        }
        for (size_t j = 0; j < numel; j++)
            n->gsum[j] += g[j];
        loss += l;
    }
    if ((err = n->k->copy_h2d(n->st.grads, n->gsum, numel * sizeof(float))) < 0 ||
        (err = n->k->sync()) < 0 || (err = do_update(n, loss)) < 0)
        fail(n, err, "update");
}

static void
own_done(struct node *n)
{
    static struct body b;
    size_t numel = n->st.lay.numel;
    float *mine;
    double loss = 0;
    int err;

    n->own_done = true;
    if (n->nrep > 1) {
        int slot = SW_NODE_MAX_REPLICAS - 1;
        if (!n->gbuf[slot] && !(n->gbuf[slot] = sw_malloc_big(numel * sizeof(float)))) {
            fail(n, -SW_ENOMEM, "partial gradient");
            return;
        }
        mine = n->gbuf[slot];
        if ((err = n->k->copy_d2h(mine, n->st.grads, numel * sizeof(float))) < 0 ||
            (err = n->k->sync()) < 0) {
            fail(n, err, "partial gradient");
            return;
        }
        for (int m = 0; m < n->M; m++)
            if (n->bwd_done[m])
                loss += n->losses[m];
        body_init(&b);
        msgpack_pack_map(&b.pk, 5);
        sw_proto_pack_key(&b.pk, "step");
        msgpack_pack_uint64(&b.pk, n->step);
        sw_proto_pack_key(&b.pk, "stage");
        msgpack_pack_uint32(&b.pk, (uint32_t)n->stage);
        sw_proto_pack_key(&b.pk, "count");
        msgpack_pack_uint32(&b.pk, (uint32_t)n->n_own);
        sw_proto_pack_key(&b.pk, "loss");
        msgpack_pack_double(&b.pk, loss);
        sw_proto_pack_key(&b.pk, "hash");
        sw_proto_pack_bin(&b.pk, n->phash, 32);
        for (int r = 0; r < n->nrep; r++) {
            if (r == n->myidx)
                continue;
            /* grads above 16 MiB would need pieces: refused at start */
            send_msg(n, n->rep_ep[r], SW_MSG_GRAD, &b, mine, numel * sizeof(float));
        }
    }
    try_finish_exchange(n);
}

static void
try_backward(struct node *n)
{
    static struct body b;
    int err;

    if (!n->go || n->own_done)
        return;
    for (int m = 0; m < n->M; m++) {
        double t0;
        if (n->mb_node[m] != n->myidx || n->bwd_done[m])
            continue;
        if (!n->fwd_done[m] || (n->stage < n->S - 1 && !n->have_dx[m]))
            return; /* hold later microbatches: gradients accumulate in order */
        t0 = sw_now_s();
        err = sw_stage_backward(&n->st, m, n->stage < n->S - 1 ? n->dx + (size_t)m * n->N * n->C
                                                                : NULL,
                                n->xbuf, 1.0f / n->M);
        if (err >= 0)
            err = n->k->sync();
        if (err < 0) {
            fail(n, err, "backward");
            return;
        }
        n->t_compute += sw_now_s() - t0;
        n->bwd_done[m] = true;
        n->n_bwd++;
        if (n->stage > 0) {
            body_init(&b);
            msgpack_pack_map(&b.pk, 2);
            sw_proto_pack_key(&b.pk, "step");
            msgpack_pack_uint64(&b.pk, n->step);
            sw_proto_pack_key(&b.pk, "mb");
            msgpack_pack_uint32(&b.pk, (uint32_t)m);
            send_msg(n, route_ep(n, m, n->stage - 1), SW_MSG_BWD, &b, n->xbuf,
                     n->N * n->C * sizeof(float));
        }
    }
    if (n->n_bwd == n->n_own)
        own_done(n);
}

/* Forward of microbatch m on this node: x_in (NULL on stage 0) and targets. */
static int
forward_one(struct node *n, int m, const float *x_in, const int32_t *tokens, const int32_t *tg)
{
    static struct body b;
    float loss = 0;
    double t0 = sw_now_s();
    bool last = n->stage == n->S - 1;
    int err;

    err = sw_stage_forward(&n->st, m, SW_PART_ALL, tokens, x_in, tg, n->xbuf, &loss);
    if (err >= 0)
        err = n->k->sync();
    if (err < 0)
        return err;
    n->t_compute += sw_now_s() - t0;
    n->tok_compute += (double)n->N;
    n->fwd_done[m] = true;
    if (last) {
        n->losses[m] = loss;
        return 0;
    }
    memcpy(n->msgbuf, n->xbuf, n->N * n->C * sizeof(float));
    memcpy(n->msgbuf + n->N * n->C * sizeof(float), tg, n->N * sizeof(int32_t));
    body_init(&b);
    msgpack_pack_map(&b.pk, 3);
    sw_proto_pack_key(&b.pk, "step");
    msgpack_pack_uint64(&b.pk, n->step);
    sw_proto_pack_key(&b.pk, "mb");
    msgpack_pack_uint32(&b.pk, (uint32_t)m);
    sw_proto_pack_key(&b.pk, "route");
    msgpack_pack_array(&b.pk, (size_t)n->S);
    for (int s = 0; s < n->S; s++)
        sw_proto_pack_str(&b.pk, route_ep(n, m, s));
    send_msg(n, route_ep(n, m, n->stage + 1), SW_MSG_FWD, &b, n->msgbuf,
             n->N * n->C * sizeof(float) + n->N * sizeof(int32_t));
    return 0;
}

static void
on_fwd(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"step", "mb", "route", NULL};
    struct node *n = arg;
    msgpack_unpacked u;
    const msgpack_object *route;
    uint64_t step, mb;
    size_t xbytes = n->N * n->C * sizeof(float);
    int32_t *tg;
    int err;

    (void)t;
    if (!n->have_stage || n->stage == 0 || n->syncing)
        return;
    if (!open_body(n, m, &u, keys))
        return;
    route = sw_proto_get(&u.data, "route");
    if (sw_proto_get_u64(&u.data, "step", &step) < 0 || sw_proto_get_u64(&u.data, "mb", &mb) < 0 ||
        mb >= (uint64_t)n->M || !route || route->type != MSGPACK_OBJECT_ARRAY ||
        route->via.array.size != (uint32_t)n->S || m->payload_len != xbytes + n->N * 4 ||
        !sw_wire_all_finite(SW_WIRE_F32, m->payload, xbytes)) {
        drop_malformed(n, &u, m->hdr.type);
        return;
    }
    if (step != n->step || n->fwd_done[mb]) {
        SW_LOG_RATELIMITED(SW_LOG_WARN, 2000, "dropped forward of step %llu mb %llu at step %llu",
                           (unsigned long long)step, (unsigned long long)mb,
                           (unsigned long long)n->step);
        msgpack_unpacked_destroy(&u);
        return;
    }
    for (int s = 0; s < n->S; s++)
        if (sw_proto_str(&route->via.array.ptr[s], route_ep(n, (int)mb, s), EP) < 0) {
            drop_malformed(n, &u, m->hdr.type);
            return;
        }
    msgpack_unpacked_destroy(&u);
    n->in_step = true;
    memcpy(n->xbuf, m->payload, xbytes);
    tg = (int32_t *)(n->msgbuf + xbytes);
    memcpy(tg, (const uint8_t *)m->payload + xbytes, n->N * sizeof(int32_t));
    if ((err = forward_one(n, (int)mb, n->xbuf, NULL, tg)) < 0) {
        if (err == -SW_ERANGE) {
            SW_LOG_RATELIMITED(SW_LOG_WARN, 2000, "dropped forward with out-of-range targets");
            return;
        }
        fail(n, err, "forward");
        return;
    }
    try_backward(n);
}

static void
on_bwd(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"step", "mb", NULL};
    struct node *n = arg;
    msgpack_unpacked u;
    uint64_t step, mb;
    size_t xbytes = n->N * n->C * sizeof(float);

    (void)t;
    if (!n->have_stage || n->stage == n->S - 1 || n->syncing)
        return;
    if (!open_body(n, m, &u, keys))
        return;
    if (sw_proto_get_u64(&u.data, "step", &step) < 0 || sw_proto_get_u64(&u.data, "mb", &mb) < 0 ||
        mb >= (uint64_t)n->M || m->payload_len != xbytes ||
        !sw_wire_all_finite(SW_WIRE_F32, m->payload, xbytes)) {
        drop_malformed(n, &u, m->hdr.type);
        return;
    }
    msgpack_unpacked_destroy(&u);
    if (step != n->step || !n->fwd_done[mb] || n->have_dx[mb]) {
        SW_LOG_RATELIMITED(SW_LOG_WARN, 2000, "dropped backward of step %llu mb %llu",
                           (unsigned long long)step, (unsigned long long)mb);
        return;
    }
    memcpy(n->dx + mb * n->N * n->C, m->payload, xbytes);
    n->have_dx[mb] = true;
    try_backward(n);
}

static void
on_grad(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"step", "stage", "count", "loss", "hash", NULL};
    struct node *n = arg;
    msgpack_unpacked u;
    uint64_t step, stage, count;
    double loss;
    const uint8_t *h;
    size_t hl = 32, numel;
    int slot;

    (void)t;
    if (!n->have_stage || n->syncing)
        return;
    numel = n->st.lay.numel;
    if (!open_body(n, m, &u, keys))
        return;
    if (sw_proto_get_u64(&u.data, "step", &step) < 0 ||
        sw_proto_get_u64(&u.data, "stage", &stage) < 0 ||
        sw_proto_get_u64(&u.data, "count", &count) < 0 ||
        sw_proto_get_f64(&u.data, "loss", &loss) < 0 ||
        sw_proto_get_bin(&u.data, "hash", &h, &hl) < 0 || stage != (uint64_t)n->stage ||
        m->payload_len != numel * sizeof(float) ||
        !sw_wire_all_finite(SW_WIRE_F32, m->payload, m->payload_len)) {
        drop_malformed(n, &u, m->hdr.type);
        return;
    }
    if (step < n->step || n->ngot >= SW_NODE_MAX_REPLICAS - 1) {
        msgpack_unpacked_destroy(&u);
        return;
    }
    slot = n->ngot;
    for (int i = 0; i < n->ngot; i++)
        if (!memcmp(n->gpk[i], m->hdr.sender, 32) && n->gstep[i] == step)
            slot = i;
    if (!n->gbuf[slot] && !(n->gbuf[slot] = sw_malloc_big(numel * sizeof(float)))) {
        msgpack_unpacked_destroy(&u);
        return;
    }
    memcpy(n->gbuf[slot], m->payload, m->payload_len);
    memcpy(n->gpk[slot], m->hdr.sender, 32);
    memcpy(n->ghash[slot], h, 32);
    n->gloss[slot] = loss;
    n->gstep[slot] = step;
    if (slot == n->ngot)
        n->ngot++;
    msgpack_unpacked_destroy(&u);
    if (step == n->step)
        try_finish_exchange(n);
}

static void
on_go(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"step", "plan", NULL};
    struct node *n = arg;
    msgpack_unpacked u;
    const msgpack_object *plan, *mine;
    int *counts = NULL, *assign = NULL, err;
    char (*eps)[EP] = NULL;
    double *w = NULL;
    uint64_t step;

    (void)t;
    if (!n->have_stage || n->syncing || n->state != SW_NODE_TRAINING)
        return;
    if (!open_body(n, m, &u, keys))
        return;
    plan = sw_proto_get(&u.data, "plan");
    if (sw_proto_get_u64(&u.data, "step", &step) < 0 || !plan ||
        plan->type != MSGPACK_OBJECT_ARRAY || plan->via.array.size != (uint32_t)n->S) {
        drop_malformed(n, &u, m->hdr.type);
        return;
    }
    if (step != n->step || n->go) {
        msgpack_unpacked_destroy(&u);
        return;
    }
    counts = sw_calloc((size_t)n->S, sizeof(int));
    eps = sw_calloc((size_t)n->S * SW_NODE_MAX_REPLICAS, EP);
    w = sw_calloc((size_t)n->S * SW_NODE_MAX_REPLICAS, sizeof(double));
    assign = sw_calloc((size_t)n->S * (size_t)n->M, sizeof(int));
    if (!counts || !eps || !w || !assign)
        goto out_bad;
    n->myidx = -1;
    for (int s = 0; s < n->S; s++) {
        const msgpack_object *a = &plan->via.array.ptr[s];
        if (a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size == 0 ||
            a->via.array.size > SW_NODE_MAX_REPLICAS)
            goto out_bad;
        counts[s] = (int)a->via.array.size;
        for (uint32_t i = 0; i < a->via.array.size; i++) {
            static const char *const nk[] = {"pk", "ep", "w", NULL};
            const msgpack_object *e = &a->via.array.ptr[i];
            const uint8_t *pk;
            size_t pl = 32;
            if (!sw_proto_only(e, nk) || sw_proto_get_bin(e, "pk", &pk, &pl) < 0 ||
                sw_proto_get_str(e, "ep", eps[s * SW_NODE_MAX_REPLICAS + i], EP) < 0 ||
                sw_proto_get_f64(e, "w", &w[s * SW_NODE_MAX_REPLICAS + i]) < 0)
                goto out_bad;
            if (s == n->stage) {
                memcpy(n->rep_pk[i], pk, 32);
                snprintf(n->rep_ep[i], EP, "%s", eps[s * SW_NODE_MAX_REPLICAS + i]);
                if (!memcmp(pk, n->id.pk, 32))
                    n->myidx = (int)i;
            }
        }
        sw_route_assign(n->M, counts[s], &w[s * SW_NODE_MAX_REPLICAS], &assign[s * n->M]);
    }
    mine = NULL;
    (void)mine;
    msgpack_unpacked_destroy(&u);
    if (n->myidx < 0) {
        sw_log(SW_LOG_INFO, "step %llu goes on without this node", (unsigned long long)step);
        goto out;
    }
    n->nrep = counts[n->stage];
    n->n_own = 0;
    for (int mb = 0; mb < n->M; mb++) {
        n->mb_node[mb] = assign[n->stage * n->M + mb];
        n->n_own += n->mb_node[mb] == n->myidx;
    }
    n->go = true;
    n->in_step = true;
    n->t_go = sw_now_s();
    if (n->stage == 0) {
        /* every stage-0 replica draws all M microbatches: same cursor everywhere */
        sw_data_cursor_get(&n->data, &n->cur0);
        for (int mb = 0; mb < n->M; mb++)
            if ((err = sw_data_next_batch(&n->data, n->in_all + (size_t)mb * n->N,
                                          n->tg_all + (size_t)mb * n->N, n->B, n->T)) < 0) {
                fail(n, err, "data");
                goto out;
            }
        for (int mb = 0; mb < n->M; mb++) {
            if (n->mb_node[mb] != n->myidx)
                continue;
            for (int s = 0; s < n->S; s++)
                snprintf(route_ep(n, mb, s), EP, "%s",
                         eps[s * SW_NODE_MAX_REPLICAS + assign[s * n->M + mb]]);
            err = forward_one(n, mb, NULL, n->in_all + (size_t)mb * n->N,
                              n->tg_all + (size_t)mb * n->N);
            if (err < 0) {
                fail(n, err, "forward");
                goto out;
            }
        }
    }
    try_backward(n);
    goto out;
out_bad:
    drop_malformed(n, &u, m->hdr.type);
out:
    sw_free(counts);
    sw_free(eps);
    sw_free(w);
    sw_free(assign);
}

/* ---- PREPARE / READY ---- */

static void
on_prepare(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"step", NULL};
    struct node *n = arg;
    msgpack_unpacked u;
    uint64_t step;
    int err;

    (void)t;
    if (m->route.rid == 0 || !n->have_stage)
        return;
    if (!open_body(n, m, &u, keys))
        return;
    if (sw_proto_get_u64(&u.data, "step", &step) < 0) {
        drop_malformed(n, &u, m->hdr.type);
        return;
    }
    msgpack_unpacked_destroy(&u);
    if (n->in_step && step == n->step) {
        /* the leader gave up on this step: start it again */
        sw_log(SW_LOG_WARN, "step %llu restarted by the leader", (unsigned long long)step);
        if ((err = sw_stage_zero_grad(&n->st)) < 0) {
            fail(n, err, "restart");
            return;
        }
        if (n->stage == 0 && n->go)
            sw_data_cursor_set(&n->data, &n->cur0);
        step_reset(n);
    }
    n->prep_pending = true;
    n->prep_route = m->route;
    n->prep_step = step;
    if (!n->syncing && !n->in_step && n->state == SW_NODE_TRAINING && step > n->step) {
        sw_log(SW_LOG_INFO, "behind the run (step %llu, run at %llu): copying state again",
               (unsigned long long)n->step, (unsigned long long)step);
        sync_start(n);
    }
    answer_prepare(n);
}

static bool
is_leader(struct node *n)
{
    if (!n->have_stage || n->stage != 0 || n->state != SW_NODE_TRAINING || n->syncing ||
        n->stopping)
        return false;
    if (!dir_find(n, n->id.pk))
        return false;
    for (int i = 0; i < n->ndir; i++)
        if (n->dir[i].stage == 0 && n->dir[i].state == SW_NODE_TRAINING &&
            memcmp(n->dir[i].pk, n->id.pk, 32) < 0)
            return false;
    return true;
}

static int
cmp_slot(const void *a, const void *b)
{
    const struct prep_slot *x = a, *y = b;
    if (x->stage != y->stage)
        return x->stage - y->stage;
    return memcmp(x->pk, y->pk, 32);
}

static void
lead_go(struct node *n)
{
    static struct body b;
    int *cnt = sw_calloc((size_t)n->S, sizeof(int));

    if (!cnt)
        return;
    qsort(n->prep, (size_t)n->nprep, sizeof(n->prep[0]), cmp_slot);
    for (int i = 0; i < n->nprep; i++)
        if (n->prep[i].ok && cnt[n->prep[i].stage] < SW_NODE_MAX_REPLICAS)
            cnt[n->prep[i].stage]++;
    for (int s = 0; s < n->S; s++) {
        if (cnt[s] == 0) {
            SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "step %llu: stage %d has no ready node, waiting",
                               (unsigned long long)n->lead_step, s);
            n->phase = PH_IDLE;
            n->phase_ms = sw_now_ms();
            sw_free(cnt);
            return;
        }
    }
    body_init(&b);
    msgpack_pack_map(&b.pk, 2);
    sw_proto_pack_key(&b.pk, "step");
    msgpack_pack_uint64(&b.pk, n->lead_step);
    sw_proto_pack_key(&b.pk, "plan");
    msgpack_pack_array(&b.pk, (size_t)n->S);
    for (int s = 0; s < n->S; s++) {
        int k = 0;
        msgpack_pack_array(&b.pk, (size_t)cnt[s]);
        for (int i = 0; i < n->nprep && k < cnt[s]; i++) {
            if (n->prep[i].stage != s || !n->prep[i].ok)
                continue;
            msgpack_pack_map(&b.pk, 3);
            sw_proto_pack_key(&b.pk, "pk");
            sw_proto_pack_bin(&b.pk, n->prep[i].pk, 32);
            sw_proto_pack_key(&b.pk, "ep");
            sw_proto_pack_str(&b.pk, n->prep[i].ep);
            sw_proto_pack_key(&b.pk, "w");
            msgpack_pack_double(&b.pk, isfinite(n->prep[i].w) && n->prep[i].w > 0
                                           ? n->prep[i].w : 0.0);
            k++;
        }
    }
    for (int i = 0; i < n->nprep; i++)
        if (n->prep[i].ok)
            send_msg(n, n->prep[i].ep, SW_MSG_GO, &b, NULL, 0);
    sw_log(SW_LOG_DEBUG, "step %llu: go", (unsigned long long)n->lead_step);
    n->phase = PH_RUNNING;
    n->phase_ms = sw_now_ms();
    sw_free(cnt);
}

static void
on_ready(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"step", "ok", NULL};
    struct prep_slot *p = arg;
    struct node *n = p->n;
    msgpack_unpacked u;
    uint64_t step;
    bool ok = false;

    (void)t;
    if (status == -SW_ECANCELED || n->phase != PH_PREPARING || p->answered)
        return;
    if (status == 0 && open_body(n, m, &u, keys)) {
        if (sw_proto_get_u64(&u.data, "step", &step) == 0 &&
            sw_proto_get_bool(&u.data, "ok", &ok) == 0 && step == n->lead_step)
            p->ok = ok;
        msgpack_unpacked_destroy(&u);
    }
    p->answered = true;
    if (--n->nwait == 0)
        lead_go(n);
}

static void
lead_tick(struct node *n)
{
    static struct body b;
    uint64_t now = sw_now_ms();
    bool *have;
    int missing = -1;

    if (n->phase == PH_RUNNING && now - n->phase_ms > SW_NODE_STALL_MS) {
        sw_log(SW_LOG_ERROR, "step %llu stalled for %d s: planning it again",
               (unsigned long long)n->lead_step, SW_NODE_STALL_MS / 1000);
        n->phase = PH_IDLE;
    }
    if (n->phase == PH_RUNNING && !n->in_step && n->step > n->lead_step)
        n->phase = PH_IDLE;
    if (n->phase != PH_IDLE || n->in_step || !is_leader(n) ||
        n->step >= (uint64_t)n->man.steps || now - n->phase_ms < 50)
        return;
    if (!(have = sw_calloc((size_t)n->S, sizeof(bool))))
        return;
    for (int i = 0; i < n->ndir; i++)
        if (n->dir[i].state <= SW_NODE_TRAINING)
            have[n->dir[i].stage] = true;
    for (int s = n->S - 1; s >= 0; s--)
        if (!have[s])
            missing = s;
    sw_free(have);
    if (missing >= 0) {
        if (now - n->wait_log_ms > 5000) {
            sw_log(SW_LOG_INFO, "waiting for a node on stage %d", missing);
            n->wait_log_ms = now;
        }
        return;
    }
    n->lead_step = n->step;
    n->nprep = 0;
    body_init(&b);
    msgpack_pack_map(&b.pk, 1);
    sw_proto_pack_key(&b.pk, "step");
    msgpack_pack_uint64(&b.pk, n->lead_step);
    n->phase = PH_PREPARING;
    n->phase_ms = now;
    for (int i = 0; i < n->ndir; i++) {
        struct prep_slot *p = &n->prep[n->nprep];
        if (n->dir[i].state > SW_NODE_TRAINING)
            continue;
        p->n = n;
        memcpy(p->pk, n->dir[i].pk, 32);
        snprintf(p->ep, EP, "%s", n->dir[i].ep);
        p->stage = n->dir[i].stage;
        p->w = n->dir[i].cap;
        p->ok = p->answered = false;
        n->nprep++;
    }
    n->nwait = n->nprep;
    for (int i = 0; i < n->nprep; i++) {
        if (sw_transport_request(n->tr, n->prep[i].ep, SW_MSG_PREPARE, b.b.data, b.b.len, NULL,
                                 5000, 0, on_ready, &n->prep[i]) < 0) {
            n->prep[i].answered = true;
            n->nwait--;
        }
    }
    if (n->nwait == 0)
        lead_go(n);
}

/* ---- state copy ---- */

static const char *const state_get_keys[] = {"stage", "which", "off", "n", NULL};

static void
on_state_get(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    struct node *n = arg;
    static struct body b;
    msgpack_unpacked u;
    uint64_t stage, which, off, cnt;
    size_t numel;
    float *src, *host = NULL;
    int err = 0;

    if (m->route.rid == 0 || !n->have_stage)
        return;
    if (!open_body(n, m, &u, state_get_keys))
        return;
    numel = n->st.lay.numel;
    if (sw_proto_get_u64(&u.data, "stage", &stage) < 0 ||
        sw_proto_get_u64(&u.data, "which", &which) < 0 || which > 2 ||
        sw_proto_get_u64(&u.data, "off", &off) < 0 || sw_proto_get_u64(&u.data, "n", &cnt) < 0 ||
        cnt > SYNC_CHUNK) {
        drop_malformed(n, &u, m->hdr.type);
        return;
    }
    msgpack_unpacked_destroy(&u);
    if (stage != (uint64_t)n->stage || n->syncing || n->state != SW_NODE_TRAINING ||
        off > numel || cnt > numel - off)
        err = -SW_EINVAL;
    src = which == 0 ? n->st.params : which == 1 ? n->opt.m : n->opt.v;
    if (!err && !(host = sw_malloc(cnt * sizeof(float) + 1)))
        err = -SW_ENOMEM;
    if (!err && ((err = n->k->copy_d2h(host, src + off, cnt * sizeof(float))) >= 0))
        err = n->k->sync();
    body_init(&b);
    msgpack_pack_map(&b.pk, 7);
    sw_proto_pack_key(&b.pk, "err");
    msgpack_pack_int64(&b.pk, err < 0 ? err : 0);
    sw_proto_pack_key(&b.pk, "step");
    msgpack_pack_uint64(&b.pk, n->step);
    sw_proto_pack_key(&b.pk, "t");
    msgpack_pack_uint64(&b.pk, (uint64_t)n->opt.t);
    sw_proto_pack_key(&b.pk, "lr_mult");
    msgpack_pack_double(&b.pk, n->opt.lr_mult);
    sw_proto_pack_key(&b.pk, "numel");
    msgpack_pack_uint64(&b.pk, numel);
    sw_proto_pack_key(&b.pk, "off");
    msgpack_pack_uint64(&b.pk, off);
    sw_proto_pack_key(&b.pk, "n");
    msgpack_pack_uint64(&b.pk, err < 0 ? 0 : cnt);
    reply_msg(n, t, &m->route, SW_MSG_STATE, &b, host, err < 0 ? 0 : cnt * sizeof(float));
    sw_free(host);
}

static void sync_request(struct node *n);

static void
sync_done(struct node *n)
{
    size_t numel = n->st.lay.numel, bytes = numel * sizeof(float);
    int err;

    if ((err = n->k->copy_h2d(n->st.params, n->sync_buf, bytes)) < 0 ||
        (err = n->k->copy_h2d(n->opt.m, n->sync_buf + numel, bytes)) < 0 ||
        (err = n->k->copy_h2d(n->opt.v, n->sync_buf + 2 * numel, bytes)) < 0 ||
        (err = n->k->sync()) < 0 || (err = sw_stage_zero_grad(&n->st)) < 0) {
        fail(n, err, "state copy");
        return;
    }
    n->opt.t = (int)n->sync_t;
    n->opt.lr_mult = n->sync_lrm;
    n->step = n->sync_step;
    if (n->stage == 0) {
        /* the data cursor of step s: replay the stream from the seed */
        sw_data_seed(&n->data, n->man.seed);
        for (uint64_t s = 0; s < n->step; s++)
            for (int mb = 0; mb < n->M; mb++)
                if ((err = sw_data_next_batch(&n->data, n->in_all, n->tg_all, n->B, n->T)) < 0) {
                    fail(n, err, "data");
                    return;
                }
    }
    params_hash(n);
    n->syncing = false;
    n->state = SW_NODE_TRAINING;
    step_reset(n);
    sw_log(SW_LOG_INFO, "copied stage %d from %s at step %llu (hash %s)", n->stage, n->sync_ep,
           (unsigned long long)n->step, n->hash);
    announce(n);
    answer_prepare(n);
}

static void
on_state(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"err", "step", "t", "lr_mult", "numel", "off", "n", NULL};
    struct node *n = arg;
    msgpack_unpacked u;
    uint64_t step, tt, numel, off, cnt;
    double lrm;
    const msgpack_object *e;
    size_t total = n->st.lay.numel;

    (void)t;
    n->sync_busy = false;
    if (status == -SW_ECANCELED)
        return;
    if (status < 0) {
        sw_log(SW_LOG_WARN, "state copy from '%s' failed: %s", n->sync_ep, sw_strerror(status));
        n->sync_ep[0] = '\0';
        return;
    }
    if (!open_body(n, m, &u, keys))
        return;
    e = sw_proto_get(&u.data, "err");
    if (!e || (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER && e->type != MSGPACK_OBJECT_NEGATIVE_INTEGER) ||
        e->via.i64 != 0 || sw_proto_get_u64(&u.data, "step", &step) < 0 ||
        sw_proto_get_u64(&u.data, "t", &tt) < 0 || sw_proto_get_f64(&u.data, "lr_mult", &lrm) < 0 ||
        sw_proto_get_u64(&u.data, "numel", &numel) < 0 ||
        sw_proto_get_u64(&u.data, "off", &off) < 0 || sw_proto_get_u64(&u.data, "n", &cnt) < 0 ||
        numel != total || off != n->sync_off || cnt > total - off ||
        m->payload_len != cnt * sizeof(float)) {
        msgpack_unpacked_destroy(&u);
        sw_log(SW_LOG_WARN, "state copy from '%s' refused or malformed; trying again",
               n->sync_ep);
        n->sync_ep[0] = '\0';
        return;
    }
    msgpack_unpacked_destroy(&u);
    if (n->sync_which == 0 && off == 0) {
        n->sync_step = step;
    } else if (step != n->sync_step) {
        /* the replica took a step meanwhile: start again */
        n->sync_which = 0;
        n->sync_off = 0;
        sync_request(n);
        return;
    }
    n->sync_t = tt;
    n->sync_lrm = (float)lrm;
    memcpy(n->sync_buf + (size_t)n->sync_which * total + off, m->payload, m->payload_len);
    n->sync_off += cnt;
    if (n->sync_off == total) {
        n->sync_off = 0;
        if (++n->sync_which == 3) {
            sync_done(n);
            return;
        }
    }
    sync_request(n);
}

static void
sync_request(struct node *n)
{
    static struct body b;
    size_t total = n->st.lay.numel;

    body_init(&b);
    msgpack_pack_map(&b.pk, 4);
    sw_proto_pack_key(&b.pk, "stage");
    msgpack_pack_uint32(&b.pk, (uint32_t)n->stage);
    sw_proto_pack_key(&b.pk, "which");
    msgpack_pack_uint32(&b.pk, (uint32_t)n->sync_which);
    sw_proto_pack_key(&b.pk, "off");
    msgpack_pack_uint64(&b.pk, n->sync_off);
    sw_proto_pack_key(&b.pk, "n");
    msgpack_pack_uint64(&b.pk, SW_MIN((size_t)SYNC_CHUNK, total - n->sync_off));
    if (sw_transport_request(n->tr, n->sync_ep, SW_MSG_STATE_GET, b.b.data, b.b.len, NULL, 5000, 1,
                             on_state, n) == 0)
        n->sync_busy = true;
}

/* Called from the tick while syncing: pick a replica, or start from the seed. */
static void
sync_tick(struct node *n)
{
    const struct sw_peer_rec *src = NULL;
    uint64_t now = sw_now_ms();

    if (!n->syncing || n->sync_busy || !n->dir_ok || now < n->sync_retry_ms)
        return;
    for (int i = 0; i < n->ndir; i++) {
        const struct sw_peer_rec *r = &n->dir[i];
        if (r->stage == n->stage && r->state == SW_NODE_TRAINING && memcmp(r->pk, n->id.pk, 32) &&
            (!src || r->step > src->step))
            src = r;
    }
    if (!src) {
        if (n->run_step == 0 && !n->recoveries) {
            /* the run has not started: every node agrees on the seed's initialisation */
            n->syncing = false;
            n->state = SW_NODE_TRAINING;
            n->step = 0;
            params_hash(n);
            sw_log(SW_LOG_INFO, "stage %d initialised from the run seed (hash %s)", n->stage,
                   n->hash);
            announce(n);
            answer_prepare(n);
            return;
        }
        if (n->step == 0 && n->run_step > 0) {
            sw_log(SW_LOG_ERROR,
                   "stage %d has no live node to copy and the run is at step %llu: this stage "
                   "needs recovery, which this node cannot do",
                   n->stage, (unsigned long long)n->run_step);
            n->exit_code = SW_EXIT_LOST;
            n->stopping = true;
            return;
        }
        n->sync_retry_ms = now + 1000;
        return;
    }
    if (!n->sync_buf && !(n->sync_buf = sw_malloc_big(3 * n->st.lay.numel * sizeof(float)))) {
        fail(n, -SW_ENOMEM, "state copy");
        return;
    }
    snprintf(n->sync_ep, EP, "%s", src->ep);
    n->sync_which = 0;
    n->sync_off = 0;
    sw_log(SW_LOG_INFO, "copying stage %d from %s (step %llu)", n->stage, src->ep,
           (unsigned long long)src->step);
    sync_request(n);
}

static void
sync_start(struct node *n)
{
    n->syncing = true;
    n->state = SW_NODE_SYNCING;
    n->sync_retry_ms = 0;
    sync_tick(n);
}

/* ---- joining ---- */

static int
choose_stage(struct node *n)
{
    int *cnt = sw_calloc((size_t)n->S, sizeof(int)), s;
    double *cap = sw_calloc((size_t)n->S, sizeof(double));

    if (!cnt || !cap) {
        sw_free(cnt);
        sw_free(cap);
        return 0;
    }
    for (int i = 0; i < n->ndir; i++) {
        if (n->dir[i].state > SW_NODE_TRAINING || !memcmp(n->dir[i].pk, n->id.pk, 32))
            continue;
        cnt[n->dir[i].stage]++;
        cap[n->dir[i].stage] += n->dir[i].cap;
    }
    s = sw_route_choose_stage(n->S, cnt, cap);
    sw_log(SW_LOG_INFO, "stage auto: chose stage %d (%d nodes there, %.0f tokens/s)", s, cnt[s],
           cap[s]);
    sw_free(cnt);
    sw_free(cap);
    return s;
}

static int
stage_setup(struct node *n)
{
    enum sw_device dev;
    const char *path;
    char why[256];
    int err;

    if (sw_device_parse(n->o.device, &dev) < 0) {
        sw_log(SW_LOG_ERROR, "--device: want auto, cpu or cuda, got '%s'", n->o.device);
        return -SW_ECONFIG;
    }
    if ((err = sw_kernels_pick(dev, &n->k)) < 0)
        return err;
    if (n->o.threads > 0)
        n->k->set_threads(n->o.threads);
    if ((err = sw_stage_init(&n->st, n->k, &n->man.model, n->S, n->stage, n->B, n->T, n->M,
                             n->man.seed)) < 0)
        return err;
    n->have_stage = true;
    if ((err = sw_optim_init(&n->opt, &n->man.optim, &n->st)) < 0)
        return err;
    if (n->st.lay.numel * sizeof(float) > SW_WIRE_MAX_PAYLOAD) {
        sw_log(SW_LOG_WARN, "stage %d holds %zu MiB of parameters: replicas of it cannot "
               "exchange gradients in one message", n->stage,
               n->st.lay.numel * sizeof(float) >> 20);
    }
    if ((err = train_alloc(n)) < 0)
        return err;
    if (n->stage == 0) {
        path = n->o.data[0] ? n->o.data : n->man.data;
        if (!path[0]) {
            sw_log(SW_LOG_ERROR, "stage 0 reads the data: give --data PATH or [data] path");
            return -SW_ECONFIG;
        }
        if ((err = sw_data_open(&n->data, path, n->man.model.vocab_size, n->man.val_frac,
                                n->man.seed)) < 0)
            return err;
        n->have_data = true;
    }
    (void)why;
    sw_log(SW_LOG_INFO,
           "stage %d of %d: blocks [%d, %d)%s%s, %.2fM params, batch %d x %d x %d micro, %s",
           n->stage, n->S, n->st.lay.l0, n->st.lay.l1, n->st.lay.has_embed ? " + embedding" : "",
           n->st.lay.has_head ? " + head" : "", n->st.lay.numel / 1e6, n->B, n->T, n->M,
           n->k->name);
    return 0;
}

/* ---- lifecycle ---- */

static void
on_closed(void *arg)
{
    struct node *n = arg;
    n->nclose--;
}

static void
on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void
shutdown_all(struct node *n)
{
    if (n->closing)
        return;
    n->closing = true;
    uv_timer_stop(&n->tick);
    uv_close((uv_handle_t *)&n->tick, on_handle_closed);
    uv_close((uv_handle_t *)&n->sigint, on_handle_closed);
    uv_close((uv_handle_t *)&n->sigterm, on_handle_closed);
    if (n->metrics)
        sw_metrics_close(n->metrics);
    if (n->dht) {
        sw_dhtnode_close(n->dht); /* before its transport (dhtnode.h) */
        n->dht = NULL;
    }
    if (n->tr) {
        n->nclose++;
        sw_transport_close(n->tr, on_closed, n);
    }
    if (n->lobby) {
        n->nclose++;
        sw_transport_close(n->lobby, on_closed, n);
    }
}

/*
 * Announces the departure: a "leaving" record with a short ttl replaces this
 * node's record on the nodes that store it; the tick shuts down once the put
 * is done or after SW_NODE_LEAVE_WAIT_MS.
 */
static void
leave(struct node *n)
{
    if (n->leaving)
        return;
    n->leaving = true;
    n->leave_ms = sw_now_ms();
    if (n->have_stage && n->dht) {
        publish(n, SW_NODE_LEAVING, SW_NODE_LEAVE_TTL_S);
        sw_log(SW_LOG_INFO, "left the run at step %llu", (unsigned long long)n->step);
    } else {
        n->left_done = true;
    }
}

static void
on_tick(uv_timer_t *h)
{
    struct node *n = h->data;
    uint64_t now = sw_now_ms();

    if (n->closing)
        return;
    if (n->boot) {
        if (n->stopping)
            shutdown_all(n);
        else if (now - n->scan_ms >= SW_NODE_BOOT_SCAN_MS)
            scan(n);
        return;
    }
    if (n->leaving) {
        if (n->left_done || now - n->leave_ms > SW_NODE_LEAVE_WAIT_MS)
            shutdown_all(n);
        return;
    }
    if (n->stopping) {
        if (!n->in_step || now - n->stop_ms > 10000 || n->exit_code)
            leave(n);
        return;
    }
    if (now - n->pub_ms >= SW_NODE_PUBLISH_MS || n->state != n->pub_state)
        announce(n);
    if (now - n->scan_ms >= SW_NODE_SCAN_MS)
        scan(n);
    sync_tick(n);
    lead_tick(n);
    if (n->state == SW_NODE_DONE && n->o.exit_at_end &&
        now - n->done_ms > (uint64_t)n->o.linger_ms)
        leave(n);
}

static void
on_signal(uv_signal_t *h, int sig)
{
    struct node *n = h->data;

    if (n->stopping) {
        sw_log(SW_LOG_WARN, "second signal: leaving now");
        n->in_step = false;
        return;
    }
    sw_log(SW_LOG_INFO, "signal %d: %s", sig,
           n->in_step ? "finishing the step in progress, then leaving" : "leaving");
    n->stopping = true;
    n->stop_ms = sw_now_ms();
}

/* "tcp://host:port" -> "tcp://host:*" for the run transport. */
static void
run_endpoint_for(const char *lobby, char *out, size_t len)
{
    const char *colon = strrchr(lobby, ':');

    if (!strncmp(lobby, "tcp://", 6) && colon && colon > lobby + 6)
        snprintf(out, len, "%.*s:*", (int)(colon - lobby), lobby);
    else
        snprintf(out, len, "tcp://127.0.0.1:*");
}

struct fetch {
    struct node *n;
    int status;
    bool done;
};

static void
on_manifest_reply(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"manifest", "owner", "sig", "ep", "boot", NULL};
    struct fetch *f = arg;
    struct node *n = f->n;
    msgpack_unpacked u;
    const uint8_t *bytes, *owner, *sig;
    size_t blen = 0, olen = 32, slen = 64;
    uint8_t want[32];
    char why[512];

    (void)t;
    f->done = true;
    f->status = status;
    if (status < 0)
        return;
    msgpack_unpacked_init(&u);
    if (sw_wire_unpack(m->hdr.body, m->hdr.body_len, &u) < 0 || !sw_proto_only(&u.data, keys) ||
        sw_proto_get_bin(&u.data, "manifest", &bytes, &blen) < 0 ||
        sw_proto_get_bin(&u.data, "owner", &owner, &olen) < 0 ||
        sw_proto_get_bin(&u.data, "sig", &sig, &slen) < 0 ||
        sw_proto_get_str(&u.data, "ep", n->peer_ep, sizeof(n->peer_ep)) < 0 ||
        sw_proto_get_str(&u.data, "boot", n->boot_ep, sizeof(n->boot_ep)) < 0) {
        msgpack_unpacked_destroy(&u);
        sw_log(SW_LOG_ERROR, "malformed manifest reply from '%s'", n->o.peer);
        f->status = -SW_EMSG;
        return;
    }
    if (sw_manifest_parse(&n->man, "manifest from peer", bytes, blen, why, sizeof(why)) < 0) {
        msgpack_unpacked_destroy(&u);
        sw_log(SW_LOG_ERROR, "refusing the run: %s", why);
        f->status = -SW_ECONFIG;
        return;
    }
    memcpy(n->owner, owner, 32);
    memcpy(n->sig, sig, 64);
    msgpack_unpacked_destroy(&u);
    if (n->o.owner[0]) {
        if (strlen(n->o.owner) != 64 || sw_hex_decode(want, 32, n->o.owner) < 0) {
            sw_log(SW_LOG_ERROR, "--owner: want 64 hex digits");
            f->status = -SW_ECONFIG;
            return;
        }
        if (sodium_memcmp(want, n->owner, 32) != 0) {
            char a[65];
            sw_log(SW_LOG_ERROR, "refusing the run: its manifest is signed by %s, not by the "
                   "owner given with --owner", sw_identity_hex(a, n->owner, 32));
            f->status = -SW_EPERM;
            return;
        }
    } else {
        char a[65];
        sw_log(SW_LOG_WARN, "no --owner given: trusting the owner the peer names, %s",
               sw_identity_hex(a, n->owner, 32));
    }
    if (!sw_manifest_verify(n->owner, n->man.run_id, n->sig)) {
        sw_log(SW_LOG_ERROR, "refusing the run: bad manifest signature");
        f->status = -SW_ESIG;
    }
}

static int
fetch_manifest(struct node *n)
{
    struct fetch f = {n, 0, false};
    int err;

    err = sw_transport_request(n->lobby, n->o.peer, SW_MSG_MANIFEST_GET, NULL, 0, NULL, 2000, 4,
                               on_manifest_reply, &f);
    if (err < 0)
        return err;
    while (!f.done)
        uv_run(n->loop, UV_RUN_ONCE);
    return f.status;
}

static int
load_own_manifest(struct node *n)
{
    uint8_t want[32];
    char why[512];
    int err;

    if ((err = sw_manifest_load(&n->man, n->o.run, why, sizeof(why))) < 0) {
        sw_log(SW_LOG_ERROR, "%s", why);
        return err;
    }
    if (n->o.owner[0] && (strlen(n->o.owner) != 64 || sw_hex_decode(want, 32, n->o.owner) < 0)) {
        sw_log(SW_LOG_ERROR, "--owner: want 64 hex digits");
        return -SW_ECONFIG;
    }
    return sw_manifest_check_sigfile(&n->man, n->o.run, n->o.owner[0] ? want : NULL, n->owner,
                                     n->sig);
}

static int
metrics_fill(void *arg, char *buf, size_t len)
{
    struct node *n = arg;
    struct sw_wire *w = n->tr ? sw_transport_wire(n->tr) : NULL;
    size_t off = 0;
    char runhex[65];

#define OUT(...)                                                               \
    do {                                                                       \
        int k_ = snprintf(buf + off, len - off, __VA_ARGS__);                  \
        if (k_ < 0 || (size_t)k_ >= len - off)                                 \
            return -SW_ERANGE;                                                 \
        off += (size_t)k_;                                                     \
    } while (0)
    sw_identity_hex(runhex, n->man.run_id, 32);
    OUT("# HELP swarm_info Run and role of this process.\n# TYPE swarm_info gauge\n");
    OUT("swarm_info{run=\"%.16s\",role=\"%s\"} 1\n", runhex, n->boot ? "bootstrap" : "node");
    if (n->boot) {
        OUT("# HELP swarm_stage_nodes Live nodes per stage.\n# TYPE swarm_stage_nodes gauge\n");
        for (int s = 0; s < n->S; s++) {
            int c = 0;
            for (int i = 0; i < n->ndir; i++)
                c += n->dir[i].stage == s;
            OUT("swarm_stage_nodes{stage=\"%d\"} %d\n", s, c);
        }
        OUT("# HELP swarm_stage_step Highest step completed per stage.\n"
            "# TYPE swarm_stage_step gauge\n");
        for (int s = 0; s < n->S; s++) {
            uint64_t st = 0;
            for (int i = 0; i < n->ndir; i++)
                if (n->dir[i].stage == s && n->dir[i].step > st)
                    st = n->dir[i].step;
            OUT("swarm_stage_step{stage=\"%d\"} %llu\n", s, (unsigned long long)st);
        }
        OUT("# HELP swarm_stage_tokens_per_second Tokens per second per stage.\n"
            "# TYPE swarm_stage_tokens_per_second gauge\n");
        for (int s = 0; s < n->S; s++) {
            double t = 0;
            for (int i = 0; i < n->ndir; i++)
                if (n->dir[i].stage == s)
                    t += n->dir[i].tps;
            OUT("swarm_stage_tokens_per_second{stage=\"%d\"} %.1f\n", s, t);
        }
        OUT("# HELP swarm_run_step Highest step any node completed.\n# TYPE swarm_run_step gauge\n");
        OUT("swarm_run_step %llu\n", (unsigned long long)n->run_step);
        for (int i = 0; i < n->ndir; i++)
            if (n->dir[i].stage == n->S - 1 && n->dir[i].loss >= 0) {
                OUT("# HELP swarm_run_loss Training loss of the last step.\n"
                    "# TYPE swarm_run_loss gauge\nswarm_run_loss %.6f\n", n->dir[i].loss);
                break;
            }
    } else {
        OUT("# HELP swarm_node_stage Stage this node serves.\n# TYPE swarm_node_stage gauge\n");
        OUT("swarm_node_stage %d\n", n->stage);
        OUT("# HELP swarm_node_step Steps this node completed.\n# TYPE swarm_node_step counter\n");
        OUT("swarm_node_step %llu\n", (unsigned long long)n->step);
        OUT("# HELP swarm_node_tokens_per_second Tokens per second through this node.\n"
            "# TYPE swarm_node_tokens_per_second gauge\n");
        OUT("swarm_node_tokens_per_second %.1f\n", n->tps);
        OUT("# HELP swarm_node_capacity_tokens_per_second Tokens per second of compute time.\n"
            "# TYPE swarm_node_capacity_tokens_per_second gauge\n");
        OUT("swarm_node_capacity_tokens_per_second %.1f\n", n->cap);
        OUT("# HELP swarm_node_tokens_total Tokens through this node.\n"
            "# TYPE swarm_node_tokens_total counter\n");
        OUT("swarm_node_tokens_total %llu\n", (unsigned long long)n->tokens_total);
        OUT("# HELP swarm_node_grad_norm Pre-clip gradient norm of the last step.\n"
            "# TYPE swarm_node_grad_norm gauge\n");
        OUT("swarm_node_grad_norm %.6f\n", n->last_norm);
        if (n->stage == n->S - 1) {
            OUT("# HELP swarm_node_loss Training loss of the last step.\n"
                "# TYPE swarm_node_loss gauge\n");
            OUT("swarm_node_loss %.6f\n", n->last_loss);
        }
        OUT("# HELP swarm_node_param_mismatches_total Replica hash mismatches seen.\n"
            "# TYPE swarm_node_param_mismatches_total counter\n");
        OUT("swarm_node_param_mismatches_total %llu\n", (unsigned long long)n->mismatches);
    }
    if (w) {
        OUT("# HELP swarm_wire_dropped_total Messages dropped, by reason.\n"
            "# TYPE swarm_wire_dropped_total counter\n");
        for (int r = 0; r < SW_WIRE_DROP__COUNT; r++)
            OUT("swarm_wire_dropped_total{reason=\"%s\"} %llu\n", sw_wire_drop_name(r),
                (unsigned long long)w->stats.drops[r]);
        OUT("# HELP swarm_wire_accepted_total Messages accepted.\n"
            "# TYPE swarm_wire_accepted_total counter\n");
        OUT("swarm_wire_accepted_total %llu\n", (unsigned long long)w->stats.accepted);
    }
#undef OUT
    return (int)off;
}

/* The DHT node on the run transport, and the scan of the stage keys. */
static int
dht_start(struct node *n)
{
    struct sw_dht_params p;
    int err;

    sw_dht_params_default(&p);
    p.rpc_timeout_ms = SW_NODE_DHT_RPC_MS;
    p.questionable_ms = SW_NODE_DHT_QUESTIONABLE_MS;
    if ((err = sw_dhtnode_new(&n->dht, n->loop, n->tr, n->ep, &p)) < 0) {
        sw_log(SW_LOG_ERROR, "cannot start the DHT node: %s", sw_strerror(err));
        return SW_EXIT_FAIL;
    }
    if (sw_status_scan_init(&n->scan, n->dht, n->man.run_id, n->S) < 0)
        return SW_EXIT_FAIL;
    n->have_scan = true;
    return 0;
}

struct join_wait {
    bool done;
    int status;
    size_t found;
};

static void
on_dht_joined(void *arg, int status, const struct sw_dht_contact *c, size_t cnt,
              const struct sw_dht_lookup_info *info)
{
    struct join_wait *w = arg;

    (void)c;
    (void)info;
    w->done = true;
    w->status = status;
    w->found = cnt;
}

/* Joins the DHT through the bootstrap's run endpoint (and the peer's, when another). */
static int
dht_join(struct node *n)
{
    const char *eps[2] = {n->boot_ep, n->peer_ep};
    struct join_wait w = {false, 0, 0};
    size_t cnt = n->peer_ep[0] && strcmp(n->peer_ep, n->boot_ep) ? 2 : 1;
    int err;

    if ((err = sw_dhtnode_bootstrap(n->dht, eps, cnt, on_dht_joined, &w)) < 0) {
        sw_log(SW_LOG_ERROR, "cannot join the DHT: %s", sw_strerror(err));
        return SW_EXIT_FAIL;
    }
    while (!w.done)
        uv_run(n->loop, UV_RUN_ONCE);
    if (w.status < 0) {
        sw_log(SW_LOG_ERROR, "cannot join the DHT through '%s': %s", n->boot_ep,
               sw_strerror(w.status));
        return SW_EXIT_NOPEER;
    }
    sw_log(SW_LOG_INFO, "joined the DHT through %s (%zu nodes near us)", n->boot_ep, w.found);
    return 0;
}

static int
node_run(struct node *n)
{
    char bind_ep[256];
    struct sw_transport_opts topts = {0};
    int err, code = SW_EXIT_FAIL;

    n->boot = !strcmp(n->o.mode, "bootstrap");
    if ((err = sw_identity_global_init()) < 0)
        return SW_EXIT_FAIL;
    if (n->o.key[0])
        err = sw_identity_load_or_create(&n->id, n->o.key);
    else
        err = sw_identity_generate(&n->id);
    if (err < 0) {
        sw_log(SW_LOG_ERROR, "no node key: %s", sw_strerror(err));
        return SW_EXIT_FAIL;
    }
    if (n->boot && load_own_manifest(n) < 0)
        return SW_EXIT_MANIFEST;
    topts.idle_ms = 600000;
    if ((err = sw_transport_new(&n->lobby, n->loop, &n->id, sw_proto_lobby_run, &topts)) < 0)
        return SW_EXIT_FAIL;
    if (n->boot) {
        if ((err = sw_transport_bind(n->lobby, n->o.listen, n->lobby_ep, sizeof(n->lobby_ep))) < 0) {
            sw_log(SW_LOG_ERROR, "cannot listen on '%s': %s", n->o.listen, sw_strerror(err));
            return SW_EXIT_USAGE;
        }
    } else {
        if ((err = fetch_manifest(n)) < 0) {
            if (err == -SW_ETIMEDOUT || err == -SW_ECANCELED) {
                sw_log(SW_LOG_ERROR, "peer '%s' does not answer", n->o.peer);
                code = SW_EXIT_NOPEER;
            } else {
                code = SW_EXIT_MANIFEST;
            }
            return code;
        }
        if ((err = sw_transport_bind(n->lobby, n->o.listen, n->lobby_ep, sizeof(n->lobby_ep))) < 0) {
            sw_log(SW_LOG_ERROR, "cannot listen on '%s': %s", n->o.listen, sw_strerror(err));
            return SW_EXIT_USAGE;
        }
    }
    n->S = n->man.stages;
    n->M = n->man.micro;
    n->B = n->man.batch;
    n->T = n->man.T;
    n->C = n->man.model.d_model;
    n->N = (size_t)n->B * n->T;
    topts.max_queue = (size_t)SW_MAX(256, 2 * n->M + 16);
    if ((err = sw_transport_new(&n->tr, n->loop, &n->id, n->man.run_id, &topts)) < 0)
        return SW_EXIT_FAIL;
    run_endpoint_for(n->lobby_ep, bind_ep, sizeof(bind_ep));
    if ((err = sw_transport_bind(n->tr, bind_ep, n->ep, sizeof(n->ep))) < 0) {
        sw_log(SW_LOG_ERROR, "cannot listen on '%s': %s", bind_ep, sw_strerror(err));
        return SW_EXIT_FAIL;
    }
    if (n->boot)
        snprintf(n->boot_ep, sizeof(n->boot_ep), "%s", n->ep);
    if (sw_transport_on(n->lobby, SW_MSG_MANIFEST_GET, on_manifest_get, n) < 0)
        return SW_EXIT_FAIL;
    if ((err = dht_start(n)) != 0)
        return err;
    if (n->boot) {
        char rh[65], oh[65];
        sw_log(SW_LOG_INFO, "bootstrap of run %s (owner %s) on %s (run transport %s)",
               sw_identity_hex(rh, n->man.run_id, 32), sw_identity_hex(oh, n->owner, 32),
               n->lobby_ep, n->ep);
        printf("listening %s\n", n->lobby_ep);
        fflush(stdout);
    } else {
        char rh[65];
        if (sw_transport_on(n->tr, SW_MSG_PREPARE, on_prepare, n) < 0 ||
            sw_transport_on(n->tr, SW_MSG_GO, on_go, n) < 0 ||
            sw_transport_on(n->tr, SW_MSG_FWD, on_fwd, n) < 0 ||
            sw_transport_on(n->tr, SW_MSG_BWD, on_bwd, n) < 0 ||
            sw_transport_on(n->tr, SW_MSG_GRAD, on_grad, n) < 0 ||
            sw_transport_on(n->tr, SW_MSG_STATE_GET, on_state_get, n) < 0)
            return SW_EXIT_FAIL;
        sw_log(SW_LOG_INFO, "joined run %s through %s; lobby %s, run transport %s",
               sw_identity_hex(rh, n->man.run_id, 32), n->o.peer, n->lobby_ep, n->ep);
        if ((err = dht_join(n)) != 0)
            return err;
        /* stage choice: read the stages (after a random delay for auto) */
        if (!strcmp(n->o.stage, "auto")) {
            uint64_t until = sw_now_ms() + 100 + randombytes_uniform(400);
            while (sw_now_ms() < until)
                uv_run(n->loop, UV_RUN_NOWAIT), uv_sleep(10);
        }
        n->stage = 0;
        {
            /* a first scan, without publishing: this node has no stage yet */
            uint64_t until = sw_now_ms() + 20000;
            n->dir_ok = false;
            while (!n->dir_ok && sw_now_ms() < until) {
                if (!n->scan.pending)
                    scan(n);
                uv_run(n->loop, UV_RUN_ONCE);
            }
            if (!n->dir_ok) {
                sw_log(SW_LOG_ERROR, "cannot read the stages from the DHT");
                return SW_EXIT_NOPEER;
            }
        }
        if (!strcmp(n->o.stage, "auto")) {
            n->stage = choose_stage(n);
        } else {
            char *end;
            long s = strtol(n->o.stage, &end, 10);
            if (*end || s < 0 || s >= n->S) {
                sw_log(SW_LOG_ERROR, "--stage: want auto or 0..%d, got '%s'", n->S - 1,
                       n->o.stage);
                return SW_EXIT_USAGE;
            }
            n->stage = (int)s;
        }
        if ((err = stage_setup(n)) < 0)
            return err == -SW_ECONFIG ? SW_EXIT_USAGE : SW_EXIT_FAIL;
        n->last_loss = -1;
        n->syncing = true;
        n->state = SW_NODE_SYNCING;
        announce(n);
    }
    if (n->o.metrics[0]) {
        if ((err = sw_metrics_start(&n->metrics, n->loop, n->o.metrics, metrics_fill, n)) < 0)
            return SW_EXIT_USAGE;
    }
    uv_timer_init(n->loop, &n->tick);
    n->tick.data = n;
    uv_timer_start(&n->tick, on_tick, 20, 20);
    uv_signal_init(n->loop, &n->sigint);
    uv_signal_init(n->loop, &n->sigterm);
    n->sigint.data = n->sigterm.data = n;
    uv_signal_start(&n->sigint, on_signal, SIGINT);
    uv_signal_start(&n->sigterm, on_signal, SIGTERM);
    uv_run(n->loop, UV_RUN_DEFAULT);
    return n->exit_code;
}

int
sw_node_main(const struct sw_node_opts *o)
{
    struct node *n = sw_calloc(1, sizeof(*n));
    uv_loop_t loop;
    int code;

    if (!n)
        return SW_EXIT_FAIL;
    n->o = *o;
    uv_loop_init(&loop);
    n->loop = &loop;
    code = node_run(n);
    if (!n->closing) {
        if (n->tick.data)
            shutdown_all(n);
        else {
            if (n->dht)
                sw_dhtnode_close(n->dht);
            if (n->tr) {
                n->nclose++;
                sw_transport_close(n->tr, on_closed, n);
            }
            if (n->lobby) {
                n->nclose++;
                sw_transport_close(n->lobby, on_closed, n);
            }
            n->closing = true;
        }
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (n->have_scan)
        sw_status_scan_release(&n->scan);
    train_free(n);
    if (n->have_data)
        sw_data_release(&n->data);
    if (n->have_stage) {
        sw_optim_release(&n->opt);
        sw_stage_release(&n->st);
    }
    sw_manifest_release(&n->man);
    sw_identity_release(&n->id);
    sw_free(n);
    return code;
}
