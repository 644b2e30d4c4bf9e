/*
 * node.c - the swarmd process: bootstrap and training node (see node.h).
 */
#include "sw.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "checkfree.h"
#include "ckpt.h"
#include "ckptnet.h"
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

/*
 * What this process knows of another node's liveness: the version of its
 * stage record and when it last changed (a live node publishes every
 * pub_every ms), and, on the leader, its answers to pings.  Entries stay at
 * their place (in-flight pings point at them).
 */
struct live {
    struct node *n;
    uint8_t pk[32];
    bool used, dead, left, ping_busy;
    int stage, ping_fails;
    uint64_t seq, seq_ms, seen_ms, ping_ms;
    uint64_t alive_ms;    /* last sign of life seen here (a new record, a pong); 0: none yet */
    bool probe_busy;      /* a port probe is under way (probe_start) */
    uint64_t probe_ms;
};

struct ban {
    uint8_t pk[32];
    uint64_t until_ms;
};

/* A neighbour whose parameters a CheckFree rebuild fetches. */
struct cf_src {
    struct node *n;
    int stage;
    int which;            /* STATE_GET slab: 0 params, 3 a CheckFree+ replica */
    char ep[SW_PROTO_EP_MAX];
    uint8_t pk[32];
    size_t off, numel;    /* off: the next piece to ask for */
    size_t got;           /* floats received (pieces come in any order) */
    int inflight;         /* requests of this generation in flight */
    uint64_t gen;         /* bumped at every (re)start: older answers are ignored */
    uint64_t step;
    double norm;
    bool done, have_step;
    float *buf;           /* host [numel] */
};

/*
 * One STATE_GET in flight (CheckFree fetch or replica copy): the request
 * callback's argument, freed by it.  Up to SW_NODE_STATE_WINDOW of them per
 * source; an answer whose gen is not its source's current one is dropped.
 */
struct piece_req {
    struct node *n;
    struct cf_src *src;   /* NULL: the replica copy (sync_*) */
    uint64_t gen;
    int which;
    size_t off, cnt;
};

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
    /* per visit u = m + k*M: visit k of microbatch m to this stage (CheckFree+'s
     * swapped route visits stages 0 and S-1 twice; V = 2 then, else 1) */
    int V;
    bool plus;            /* recovery.mode checkfree+: swapped route and replicas */
    bool *fwd_done, *bwd_done, *have_dx;
    float *losses;        /* [M] */
    float *dx;            /* [V*M, N, C] gradients waiting for their turn */
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
    uint8_t prep_pk[32];  /* who sent the last PREPARE (the leader) */
    struct sw_transport_route prep_route;
    uint64_t prep_step;

    bool syncing, sync_busy, sync_have_step;
    int sync_which;       /* with sync_off: the next piece to ask for */
    size_t sync_off;
    size_t sync_got;      /* floats received of 3 * numel */
    int sync_inflight;    /* requests of generation sync_gen in flight */
    uint64_t sync_gen;
    uint64_t sync_step, sync_t;
    float sync_lrm;
    float *sync_buf;      /* host [3, numel] */
    char sync_ep[EP];
    uint64_t sync_retry_ms;

    int phase;
    uint64_t phase_ms, lead_step, wait_log_ms;
    int nprep, nwait;
    struct prep_slot prep[SW_NODE_MAX_NODES];
    uint64_t lead_ver;    /* plan version of the running step (replans) */
    bool paused;          /* a stage of the running step has no node left */
    bool lead_takeover;   /* stage 0 rebuilt in a step whose leader died: plan it again */
    uint64_t go_sent_ms;  /* the leader's last GO of the running step */

    /* failures: liveness, bans, the plan of the step, what was sent in it */
    int dead_ms, ban_ms, pub_every;
    uint64_t lost_since_ms; /* check_lost: when the run first looked lost, 0 if not */
    struct live live[2 * SW_NODE_MAX_NODES];
    struct ban bans[SW_NODE_MAX_BANS];
    uint64_t scan_ok_ms, deaths, bans_total, drop_banned, drop_unknown, drop_shape;
    bool *seen_stage;     /* [S] a live node was there once (the run had it) */
    uint64_t plan_step, plan_ver;
    int *plan_cnt;        /* [S] */
    uint8_t (*plan_pk)[32]; /* [S * SW_NODE_MAX_REPLICAS] */
    char (*plan_ep)[EP];  /* [S * SW_NODE_MAX_REPLICAS] */
    int *plan_assign;     /* [S, M] index into the stage's nodes */
    uint8_t *xout;        /* [V*M, N*C*4 + N*4] FWD payloads sent this step */
    float *dxout;         /* [V*M, N, C] BWD payloads sent this step */
    bool *xout_ok, *dxout_ok;
    /* FWDs (BWDs) of this step that came before its GO from a node this
     * process does not know yet (a newcomer's first step): held, and used
     * once the plan names their sender */
    uint8_t *early;       /* [V*M, N*C*4 + N*4] held FWD payloads */
    bool *early_ok, *early_dx;
    uint8_t (*early_pk)[32], (*early_dxpk)[32];
    uint64_t store_step;
    uint64_t gver[SW_NODE_MAX_REPLICAS];

    /* CheckFree+: the replica this node keeps as stage 1 (the embedding) or
     * S-2 (final norm + LM head), pushed by the owner after each update */
    float *rep_buf;       /* host [rep_numel] */
    size_t rep_numel;
    uint64_t rep_step;
    bool rep_have;

    /* recovery (CheckFree) and the last recovery event */
    bool trained;         /* was training once (a later copy is a catch-up) */
    bool rebuilt;         /* rebuilt by CheckFree(+), no step since: may take the step
                           * before its source's (on_go) */
    bool cf_active;
    struct cf_src cf[2];
    struct sw_stage cf_st[2];    /* parameters-only views of what cf[] fetched */
    bool cf_have_st[2];
    float *cf_dev[2];             /* their backend copies (not on the CPU) */
    uint64_t cf_t0_ms, cf_retry_ms, cf_bytes;
    double cf_req_s, cf_got_s; /* first piece asked for, last piece in */
    char rec_method[16], rec_from[2 * EP + 8];
    uint64_t rec_bytes;
    double rec_s;

    /* checkpoints: the snapshot a keeper asked for (STATE_GET with snap) */
    uint64_t snap_want;   /* snapshot the state when step reaches this (0: none) */
    bool snap_have;
    uint64_t snap_step;
    int snap_t;
    float snap_lrm, snap_norm, snap_normc;
    float *snap_buf;      /* host [3, numel]: params, m, v */
    bool ckpt_done;       /* --from-checkpoint: tried once */
    bool lost_ck_logged;  /* check_lost: waiting for --from-checkpoint nodes, said so */
    struct sw_ckptnet *cn; /* local saves (--ckpt-dir) and the CKPT server; keeper's too */
    struct sw_ckptnet_finder kfind; /* --from-checkpoint keeper: the keeper's record */
    struct sw_ckptnet_pull *kpull; /* --from-checkpoint keeper: this stage being fetched */
    float *kpull_buf;     /* host [3, numel] */
    uint64_t kpub_ms, kpub_seq; /* keeper: its DHT record */

    /* keeper mode (swarmd keeper) */
    bool keeper;
    struct kstage *kst;   /* [S] */
    int kevery, kkeep;
    char kdir[4096];
    uint64_t ktarget, klast, kgen, kt0_ms, kwait_log_ms;
    int nsaved;
};

/* The keeper's pull of one stage's state for the checkpoint of step ktarget. */
struct kstage {
    struct node *n;
    int stage;
    char ep[EP];
    int which;
    size_t off, numel;
    bool busy, done, have_lay;
    uint64_t gen, retry_ms;
    float *buf;           /* host [3, numel] */
    struct sw_stage_layout lay;
    struct sw_ckpt_stage_state st;
    bool snap_mode;       /* its nodes save nothing locally: STATE_GET with snap */
    bool snap_logged;
    bool have_pull;
    struct sw_ckptnet_pull pull; /* from the nodes' local saves (ckptnet.h) */
};

static void ckpt_free(struct node *n);

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

static void ban(struct node *n, const uint8_t *pk, const char *why);

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
        ban(n, m->hdr.sender, "malformed message");
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
    sw_status_rec_set_recovery(r, n->rec_method, n->rec_from, n->rec_bytes, n->rec_s);
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

/* ---- liveness and bans ---- */

static struct live *
live_find(struct node *n, const uint8_t *pk)
{
    for (size_t i = 0; i < SW_ARRAY_SIZE(n->live); i++)
        if (n->live[i].used && !memcmp(n->live[i].pk, pk, 32))
            return &n->live[i];
    return NULL;
}

/* The entry of pk, created when new (NULL when the table is full). */
static struct live *
live_get(struct node *n, const uint8_t *pk)
{
    struct live *l = live_find(n, pk), *old = NULL;

    if (l)
        return l;
    for (size_t i = 0; i < SW_ARRAY_SIZE(n->live); i++) {
        struct live *x = &n->live[i];
        if (!x->used) {
            l = x;
            break;
        }
        if (!x->ping_busy && (!old || x->seen_ms < old->seen_ms))
            old = x;
    }
    if (!l)
        l = old;
    if (!l)
        return NULL;
    memset(l, 0, sizeof(*l));
    l->n = n;
    l->used = true;
    memcpy(l->pk, pk, 32);
    return l;
}

static bool
is_banned(struct node *n, const uint8_t *pk)
{
    uint64_t now = sw_now_ms();

    for (int i = 0; i < SW_NODE_MAX_BANS; i++)
        if (n->bans[i].until_ms > now && !memcmp(n->bans[i].pk, pk, 32))
            return true;
    return false;
}

/* Ignore pk for ban_ms: it sent something no honest node sends. */
static void
ban(struct node *n, const uint8_t *pk, const char *why)
{
    uint64_t now = sw_now_ms();
    struct ban *b = &n->bans[0];
    char who[13];

    if (n->ban_ms <= 0 || !memcmp(pk, n->id.pk, 32) || is_banned(n, pk))
        return;
    for (int i = 1; i < SW_NODE_MAX_BANS; i++)
        if (n->bans[i].until_ms < b->until_ms)
            b = &n->bans[i];
    memcpy(b->pk, pk, 32);
    b->until_ms = now + (uint64_t)n->ban_ms;
    n->bans_total++;
    sw_log(SW_LOG_WARN, "banned peer %s for %d s: %s", short_pk(who, pk), n->ban_ms / 1000, why);
}

/* A node the leader must plan without: dead, left, or banned. */
static bool
is_gone(struct node *n, const uint8_t *pk)
{
    struct live *l;

    if (!memcmp(pk, n->id.pk, 32))
        return false;
    l = live_find(n, pk);
    return is_banned(n, pk) || (l && (l->dead || l->left));
}

static void
declare_dead(struct node *n, struct live *l, const char *why)
{
    char who[13];

    if (l->dead || l->left)
        return;
    l->dead = true;
    n->deaths++;
    sw_log(SW_LOG_WARN, "node %s of stage %d declared dead: %s", short_pk(who, l->pk), l->stage,
           why);
    /* out of the table now, not at the next scan: nothing copies from it,
     * counts it, or takes its (possibly stale) step for the run's */
    for (int i = 0; i < n->ndir; i++)
        if (!memcmp(n->dir[i].pk, l->pk, 32)) {
            memmove(&n->dir[i], &n->dir[i + 1], (size_t)(n->ndir - i - 1) * sizeof(n->dir[0]));
            n->ndir--;
            break;
        }
}

/*
 * The port probe: a TCP connect to a suspect node's run endpoint (its
 * record is late, or a ping of the leader went unanswered).  The kernel
 * accepts for a listening socket however busy the process is, so a refused
 * connection means nothing listens there any more: the process is gone
 * (killed, crashed) and the node is dead at once.  Anything else (connected,
 * a timeout, another error, an endpoint that is not tcp://IP:PORT) proves
 * nothing, and dead_ms and the pings decide as before.
 */
struct probe {
    uv_tcp_t tcp;
    uv_connect_t req;
    uv_timer_t timer;
    struct node *n;
    uint8_t pk[32];
    int open;             /* handles not closed yet */
};

static void
on_probe_closed(uv_handle_t *h)
{
    struct probe *p = h->data;

    if (--p->open == 0)
        sw_free(p);
}

static void
probe_end(struct probe *p)
{
    struct live *l = live_find(p->n, p->pk);

    if (l)
        l->probe_busy = false;
    if (!uv_is_closing((uv_handle_t *)&p->timer)) {
        uv_close((uv_handle_t *)&p->timer, on_probe_closed);
        uv_close((uv_handle_t *)&p->tcp, on_probe_closed);
    }
}

static void
on_probe_connect(uv_connect_t *req, int status)
{
    struct probe *p = req->data;
    struct live *l;

    if (status == UV_ECONNREFUSED && !p->n->closing && (l = live_find(p->n, p->pk)))
        declare_dead(p->n, l, "its port is closed");
    probe_end(p);
}

static void
on_probe_timer(uv_timer_t *h)
{
    probe_end(h->data); /* closing the tcp handle cancels the connect (UV_ECANCELED) */
}

static void
probe_start(struct node *n, struct live *l, const char *ep)
{
    char host[64];
    const char *colon = strrchr(ep, ':');
    struct sockaddr_storage sa;
    struct probe *p;
    long port;

    if (n->closing || l->probe_busy || l->dead || l->left || strncmp(ep, "tcp://", 6) || !colon ||
        colon - (ep + 6) <= 0 || colon - (ep + 6) >= (long)sizeof(host))
        return;
    snprintf(host, sizeof(host), "%.*s", (int)(colon - (ep + 6)), ep + 6);
    port = strtol(colon + 1, NULL, 10);
    if (port <= 0 || port > 65535 ||
        (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&sa) != 0 &&
         uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&sa) != 0))
        return;
    if (!(p = sw_calloc(1, sizeof(*p))))
        return;
    p->n = n;
    memcpy(p->pk, l->pk, 32);
    uv_tcp_init(n->loop, &p->tcp);
    uv_timer_init(n->loop, &p->timer);
    p->open = 2;
    p->tcp.data = p->timer.data = p->req.data = p;
    if (uv_tcp_connect(&p->req, &p->tcp, (struct sockaddr *)&sa, on_probe_connect) != 0) {
        uv_close((uv_handle_t *)&p->timer, on_probe_closed);
        uv_close((uv_handle_t *)&p->tcp, on_probe_closed);
        return;
    }
    uv_timer_start(&p->timer, on_probe_timer, (uint64_t)n->dead_ms / 3, 0);
    l->probe_busy = true;
    l->probe_ms = sw_now_ms();
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
    {
        /* liveness: a record whose version has not changed for dead_ms is a dead node's */
        static struct sw_peer_rec alive[SW_NODE_MAX_NODES];
        uint64_t now = sw_now_ms();
        int k = 0;

        for (int i = 0; i < n->scan.ngone; i++) {
            struct live *l = live_find(n, n->scan.gone[i]);
            if (l && !l->left && !l->dead) {
                l->left = true;
                sw_log(SW_LOG_INFO, "node %s of stage %d left", short_pk(who, l->pk), l->stage);
            }
        }
        for (int i = 0; i < cnt; i++) {
            struct live *l = live_get(n, recs[i].pk);
            bool me = !memcmp(recs[i].pk, n->id.pk, 32);
            if (l) {
                if (!l->seq_ms) { /* first sight: trust the record's age */
                    l->seq = recs[i].seq;
                    l->seq_ms = recs[i].heard_ms;
                } else if (recs[i].seq != l->seq) {
                    l->seq = recs[i].seq;
                    l->seq_ms = l->alive_ms = now;
                    l->left = false;
                    if (l->dead) {
                        l->dead = false;
                        l->ping_fails = 0;
                        sw_log(SW_LOG_INFO, "node %s of stage %d is alive again",
                               short_pk(who, l->pk), recs[i].stage);
                    }
                }
                l->stage = recs[i].stage;
                l->seen_ms = now;
                if (!me && recs[i].state != SW_NODE_DONE && now - l->seq_ms > (uint64_t)n->dead_ms) {
                    char why[64];
                    snprintf(why, sizeof(why), "no record refresh for %llu ms",
                             (unsigned long long)(now - l->seq_ms));
                    declare_dead(n, l, why);
                } else if (!me && recs[i].state != SW_NODE_DONE &&
                           now - l->seq_ms > (uint64_t)n->pub_every &&
                           now - l->probe_ms >= SW_NODE_SCAN_MS) {
                    /* a refresh is late: is the process still there? */
                    probe_start(n, l, recs[i].ep);
                }
                if (!me && (l->dead || l->left))
                    continue;
            }
            if (!me && is_banned(n, recs[i].pk))
                continue;
            alive[k++] = recs[i];
        }
        recs = alive;
        cnt = k;
        n->scan_ok_ms = now;
        if (n->seen_stage && n->state == SW_NODE_TRAINING)
            for (int i = 0; i < cnt; i++)
                if (recs[i].state == SW_NODE_TRAINING)
                    n->seen_stage[recs[i].stage] = true;
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
    size_t NC = n->N * n->C, M = (size_t)n->M * (size_t)n->V;

    n->fwd_done = sw_calloc(M, sizeof(bool));
    n->bwd_done = sw_calloc(M, sizeof(bool));
    n->have_dx = sw_calloc(M, sizeof(bool));
    n->losses = sw_calloc((size_t)n->M, sizeof(float));
    n->mb_node = sw_calloc((size_t)n->M, sizeof(int));
    /* what crosses to and from the network: pinned on CUDA (kernels.h) */
    n->dx = n->k->alloc_host(M * NC * sizeof(float));
    n->routes = sw_calloc((size_t)n->M * (size_t)n->S, EP);
    n->xbuf = n->k->alloc_host(NC * sizeof(float));
    n->msgbuf = sw_malloc_big(NC * 4 + n->N * 4);
    n->in_all = sw_malloc((size_t)n->M * n->N * sizeof(int32_t));
    n->tg_all = sw_malloc((size_t)n->M * n->N * sizeof(int32_t));
    n->gsum = sw_malloc_big(n->st.lay.numel * sizeof(float));
    n->seen_stage = sw_calloc((size_t)n->S, sizeof(bool));
    n->plan_cnt = sw_calloc((size_t)n->S, sizeof(int));
    n->plan_pk = sw_calloc((size_t)n->S * SW_NODE_MAX_REPLICAS, 32);
    n->plan_ep = sw_calloc((size_t)n->S * SW_NODE_MAX_REPLICAS, EP);
    n->plan_assign = sw_calloc((size_t)n->S * (size_t)n->M, sizeof(int));
    n->xout = n->k->alloc_host(M * (NC * 4 + n->N * 4));
    n->dxout = n->k->alloc_host(M * NC * sizeof(float));
    n->xout_ok = sw_calloc(M, sizeof(bool));
    n->dxout_ok = sw_calloc(M, sizeof(bool));
    n->early_ok = sw_calloc(M, sizeof(bool));
    n->early_dx = sw_calloc(M, sizeof(bool));
    n->early_pk = sw_calloc(M, 32);
    n->early_dxpk = sw_calloc(M, 32);
    if (!n->fwd_done || !n->bwd_done || !n->have_dx || !n->losses || !n->mb_node || !n->dx || !n->routes ||
        !n->xbuf || !n->msgbuf || !n->in_all || !n->tg_all || !n->gsum || !n->seen_stage ||
        !n->plan_cnt || !n->plan_pk || !n->plan_ep || !n->plan_assign || !n->xout || !n->dxout ||
        !n->xout_ok || !n->dxout_ok || !n->early_ok || !n->early_dx || !n->early_pk ||
        !n->early_dxpk)
        return -SW_ENOMEM;
    return 0;
}

static void cf_release(struct node *n);

static void
train_free(struct node *n)
{
    sw_free(n->fwd_done);
    sw_free(n->bwd_done);
    sw_free(n->have_dx);
    sw_free(n->losses);
    sw_free(n->mb_node);
    if (n->k) { /* set before train_alloc, which alone fills these */
        n->k->free_host(n->dx);
        n->k->free_host(n->xbuf);
        n->k->free_host(n->xout);
        n->k->free_host(n->dxout);
    }
    sw_free(n->routes);
    sw_free_big(n->msgbuf);
    sw_free(n->in_all);
    sw_free(n->tg_all);
    sw_free_big(n->gsum);
    sw_free(n->seen_stage);
    sw_free(n->plan_cnt);
    sw_free(n->plan_pk);
    sw_free(n->plan_ep);
    sw_free(n->plan_assign);
    sw_free(n->xout_ok);
    sw_free(n->dxout_ok);
    sw_free(n->early_ok);
    sw_free(n->early_dx);
    sw_free(n->early_pk);
    sw_free(n->early_dxpk);
    sw_free_big(n->early);
    if (n->k)
        cf_release(n);
    for (int i = 0; i < SW_NODE_MAX_REPLICAS; i++)
        sw_free_big(n->gbuf[i]);
    sw_free_big(n->sync_buf);
    sw_free_big(n->snap_buf);
    ckpt_free(n);
    sw_free_big(n->rep_buf);
    if (n->kst) {
        for (int s = 0; s < n->S; s++) {
            sw_free_big(n->kst[s].buf);
            if (n->kst[s].have_lay)
                sw_stage_layout_release(&n->kst[s].lay);
        }
        sw_free(n->kst);
    }
}

static char *
route_ep(struct node *n, int mb, int s)
{
    return n->routes + ((size_t)mb * n->S + s) * EP;
}

/*
 * Routes.  A microbatch visits the stages hop by hop: hops 0..S-1 are stages
 * 0..S-1 whole.  Under CheckFree+ every odd microbatch (counted across steps,
 * step * M + m, as swarmsim counts them) takes the swapped route of S + 2
 * hops (src/sim.c): 0 the embedding of stage 0, 1 stage 1, 2 the blocks of
 * stage 0, 3..S-2 stages 2..S-3, S-1 the blocks of S-1, S stage S-2, S+1
 * the final norm and head of S-1; so stage 1 learns to follow the embedding
 * and stage S-2 to precede the head, and each can stand in for its boundary
 * stage.  Stages 0 and S-1 see such a microbatch twice: visit k (0, 1) of
 * microbatch m is u = m + k * M, its activation slot and its place in the
 * per-visit arrays.
 */
static bool
swapped(const struct node *n, uint64_t step, int m)
{
    return n->plus && ((step * (uint64_t)n->M + (uint64_t)m) & 1);
}

static int
nhops(const struct node *n, uint64_t step, int m)
{
    return swapped(n, step, m) ? n->S + 2 : n->S;
}

/* Stage and parts of hop h. */
static int
hop_stage(const struct node *n, uint64_t step, int m, int h, unsigned *parts)
{
    int S = n->S, s;
    unsigned p = SW_PART_ALL;

    if (!swapped(n, step, m))
        s = h;
    else if (h == 0)
        s = 0, p = SW_PART_EMBED;
    else if (h == 1)
        s = 1;
    else if (h == 2)
        s = 0, p = SW_PART_BLOCKS;
    else if (h < S - 1)
        s = h - 1;
    else if (h == S - 1)
        s = S - 1, p = SW_PART_BLOCKS;
    else if (h == S)
        s = S - 2;
    else
        s = S - 1, p = SW_PART_HEAD;
    if (parts)
        *parts = p;
    return s;
}

/* How many times microbatch m visits this node's stage (1 or 2). */
static int
nvisits(const struct node *n, uint64_t step, int m)
{
    return swapped(n, step, m) && (n->stage == 0 || n->stage == n->S - 1) ? 2 : 1;
}

/* The hop of this stage's visit k to microbatch m. */
static int
visit_hop(const struct node *n, uint64_t step, int m, int k)
{
    int S = n->S, j = n->stage;

    if (!swapped(n, step, m))
        return j;
    if (j == 0)
        return k ? 2 : 0;
    if (j == S - 1)
        return k ? S + 1 : S - 1;
    if (j == S - 2)
        return S;
    return j == 1 ? 1 : j + 1;
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
    memset(n->fwd_done, 0, (size_t)n->M * n->V * sizeof(bool));
    memset(n->bwd_done, 0, (size_t)n->M * n->V * sizeof(bool));
    memset(n->have_dx, 0, (size_t)n->M * n->V * sizeof(bool));
    memset(n->early_ok, 0, (size_t)n->M * n->V * sizeof(bool));
    memset(n->early_dx, 0, (size_t)n->M * n->V * sizeof(bool));
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
            n->gver[i] = n->gver[last];
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

/* The state after n->step steps into snap_buf: what a keeper's STATE_GET with
 * snap reads, however far the node has gone on meanwhile. */
static int
snap_take(struct node *n)
{
    size_t numel = n->st.lay.numel, bytes = numel * sizeof(float);
    int err;

    if (!n->snap_buf && !(n->snap_buf = sw_malloc_big(3 * bytes)))
        return -SW_ENOMEM;
    n->snap_have = false;
    if ((err = n->k->copy_d2h(n->snap_buf, n->st.params, bytes)) < 0 ||
        (err = n->k->copy_d2h(n->snap_buf + numel, n->opt.m, bytes)) < 0 ||
        (err = n->k->copy_d2h(n->snap_buf + 2 * numel, n->opt.v, bytes)) < 0 ||
        (err = n->k->sync()) < 0)
        return err;
    n->snap_have = true;
    n->snap_step = n->step;
    n->snap_t = n->opt.t;
    n->snap_lrm = n->opt.lr_mult;
    n->snap_norm = isfinite(n->opt.last_norm) ? n->opt.last_norm : 0.0f;
    n->snap_normc = isfinite(n->opt.last_norm_clipped) ? n->opt.last_norm_clipped : 0.0f;
    sw_log(SW_LOG_DEBUG, "snapshot of stage %d at step %llu for a keeper", n->stage,
           (unsigned long long)n->step);
    return 0;
}

/*
 * The CKPT_INFO_GET / CKPT_GET server of a training node, and its local
 * saves into --ckpt-dir every [checkpoint] every steps (ckptnet.h).
 */
static int
ckpt_serve_init(struct node *n)
{
    int err;

    if (!(n->cn = sw_calloc(1, sizeof(*n->cn))))
        return -SW_ENOMEM;
    if ((err = sw_ckptnet_init(n->cn, n->loop, n->tr, &n->man.model, &n->man.optim, n->man.seed,
                               n->S, n->M, n->man.steps, n->man.ckpt_every, n->man.ckpt_keep,
                               n->keeper, n->keeper ? n->kdir : n->o.ckpt_dir, &n->step)) < 0)
        return err;
    if (!n->keeper && n->o.ckpt_dir[0])
        sw_log(SW_LOG_INFO, n->man.ckpt_every > 0 ? "local checkpoints every %d steps into '%s' "
               "(keep %d)" : "local checkpoints off: the manifest's [checkpoint] every is %d "
               "('%s', keep %d)", n->man.ckpt_every, n->o.ckpt_dir, n->man.ckpt_keep);
    return 0;
}

static void
ckpt_free(struct node *n)
{
    for (int s = 0; n->kst && s < n->S; s++)
        if (n->kst[s].have_pull) {
            sw_ckptnet_pull_release(&n->kst[s].pull);
            n->kst[s].have_pull = false;
        }
    if (n->cn)
        sw_ckptnet_release(n->cn);
    sw_free(n->cn);
    if (n->kpull)
        sw_ckptnet_pull_release(n->kpull);
    sw_free(n->kpull);
    sw_free_big(n->kpull_buf);
    n->cn = NULL;
    n->kpull = NULL;
    n->kpull_buf = NULL;
}

/* After an update: this node's share of the stage into --ckpt-dir, when due.
 * Blocks for the host copy only; a worker writes it. */
static void
local_save(struct node *n)
{
    size_t numel = n->st.lay.numel, bytes = numel * sizeof(float);
    struct sw_ckpt_stage_state st;
    double t0 = sw_now_s();
    float *buf;
    int err;

    if (!n->cn || !sw_ckptnet_due(n->cn, n->step))
        return;
    if (!(buf = sw_ckptnet_save_begin(n->cn, &n->st.lay, n->stage, n->step, &err))) {
        if (err != -SW_EAGAIN)
            sw_log(SW_LOG_WARN, "local checkpoint of step %llu: %s", (unsigned long long)n->step,
                   sw_strerror(err));
        return;
    }
    if ((err = n->k->copy_d2h(buf, n->st.params, bytes)) < 0 ||
        (err = n->k->copy_d2h(buf + numel, n->opt.m, bytes)) < 0 ||
        (err = n->k->copy_d2h(buf + 2 * numel, n->opt.v, bytes)) < 0 ||
        (err = n->k->sync()) < 0) {
        sw_log(SW_LOG_WARN, "local checkpoint of step %llu: %s", (unsigned long long)n->step,
               sw_strerror(err));
        return;
    }
    st.t = n->opt.t;
    st.lr_mult = n->opt.lr_mult;
    st.last_norm = isfinite(n->opt.last_norm) ? n->opt.last_norm : 0.0f;
    st.last_norm_clipped = isfinite(n->opt.last_norm_clipped) ? n->opt.last_norm_clipped : 0.0f;
    if ((err = sw_ckptnet_save_queue(n->cn, &st, n->nrep, n->myidx, sw_now_s() - t0)) < 0)
        sw_log(SW_LOG_WARN, "local checkpoint of step %llu: %s", (unsigned long long)n->step,
               sw_strerror(err));
}

static void replica_push(struct node *n);

static int
do_update(struct node *n, double loss_sum)
{
    float lr = sw_lr_at(&n->man.optim, (int)n->step);
    double now = sw_now_s(), dt;
    int err, mine = 0;

    n->rebuilt = false;

    for (int m = 0; m < n->M; m++)
        mine += n->mb_node[m] == n->myidx;

    if ((err = sw_optim_update(&n->opt, &n->st, lr)) < 0) {
        sw_log(SW_LOG_ERROR, "step %llu: update failed: %s", (unsigned long long)n->step,
               sw_strerror(err));
        return err;
    }
    n->last_norm = n->opt.last_norm;
    dt = n->t_update > 0 ? now - n->t_update : now - n->t_go;
    n->t_update = now;
    n->tps = dt > 0 ? (double)mine * n->N / dt : 0;
    n->cap = n->t_compute > 0 ? n->tok_compute / n->t_compute : 0;
    n->tokens_total += (uint64_t)mine * n->N;
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
    replica_push(n);
    if (n->snap_want && n->snap_want == n->step && (err = snap_take(n)) < 0)
        sw_log(SW_LOG_WARN, "step %llu: no snapshot for the keeper: %s",
               (unsigned long long)n->step, sw_strerror(err));
    step_reset(n);
    if (n->step >= (uint64_t)n->man.steps) {
        sw_log(SW_LOG_INFO, "run finished: %d steps", n->man.steps);
        n->state = SW_NODE_DONE;
        n->done_ms = sw_now_ms();
    }
    answer_prepare(n);
    local_save(n);
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
    /* every other replica's partial for this step; once the leader has
     * finished the step (its PREPARE of the next is waiting here) nothing
     * will plan it again, and a replica gone meanwhile is done without */
    bool after = n->prep_pending && n->prep_step == n->step + 1;
    for (int r = 0; r < n->nrep; r++) {
        bool found = r == n->myidx || (after && is_gone(n, n->rep_pk[r]));
        for (int i = 0; i < n->ngot && !found; i++)
            found = n->gstep[i] == n->step && n->gver[i] == n->plan_ver &&
                    !memcmp(n->gpk[i], n->rep_pk[r], 32);
        if (!found)
            return;
    }
    memset(n->gsum, 0, numel * sizeof(float));
    for (int r = 0; r < n->nrep; r++) {
        const float *g = NULL;
        double l = 0;
        char who[13];
        if (r == n->myidx) {
            g = n->gbuf[SW_NODE_MAX_REPLICAS - 1]; /* own partial, see on own_done */
            for (int m = 0; m < n->M; m++)
                if (n->bwd_done[m])
                    l += n->losses[m];
        } else {
            for (int i = 0; i < n->ngot; i++) {
                if (n->gstep[i] == n->step && n->gver[i] == n->plan_ver &&
                    !memcmp(n->gpk[i], n->rep_pk[r], 32)) {
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
        if (!g) {
            sw_log(SW_LOG_WARN, "step %llu: replica %s of stage %d left before its partial "
                   "gradient came: updating without its microbatches' share",
                   (unsigned long long)n->step, short_pk(who, n->rep_pk[r]), n->stage);
            continue;
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
        msgpack_pack_map(&b.pk, 6);
        sw_proto_pack_key(&b.pk, "step");
        msgpack_pack_uint64(&b.pk, n->step);
        sw_proto_pack_key(&b.pk, "ver");
        msgpack_pack_uint64(&b.pk, n->plan_ver);
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

/*
 * The FWD (BWD) of visit u as stored when this node computed it, to the
 * next (previous) hop's node: first sends and replays after a replan.  The
 * body names the hop the receiver runs.
 */
static void
send_fwd(struct node *n, int u, uint64_t step)
{
    static struct body b;
    size_t len = n->N * n->C * 4 + n->N * 4;
    int m = u % n->M, h = visit_hop(n, step, m, u / n->M) + 1;

    body_init(&b);
    msgpack_pack_map(&b.pk, 4);
    sw_proto_pack_key(&b.pk, "step");
    msgpack_pack_uint64(&b.pk, step);
    sw_proto_pack_key(&b.pk, "mb");
    msgpack_pack_uint32(&b.pk, (uint32_t)m);
    sw_proto_pack_key(&b.pk, "hop");
    msgpack_pack_uint32(&b.pk, (uint32_t)h);
    sw_proto_pack_key(&b.pk, "route");
    msgpack_pack_array(&b.pk, (size_t)n->S);
    for (int s = 0; s < n->S; s++)
        sw_proto_pack_str(&b.pk, route_ep(n, m, s));
    send_msg(n, route_ep(n, m, hop_stage(n, step, m, h, NULL)), SW_MSG_FWD, &b,
             n->xout + (size_t)u * len, len);
}

static void
send_bwd(struct node *n, int u, uint64_t step)
{
    static struct body b;
    int m = u % n->M, h = visit_hop(n, step, m, u / n->M) - 1;

    body_init(&b);
    msgpack_pack_map(&b.pk, 3);
    sw_proto_pack_key(&b.pk, "step");
    msgpack_pack_uint64(&b.pk, step);
    sw_proto_pack_key(&b.pk, "mb");
    msgpack_pack_uint32(&b.pk, (uint32_t)m);
    sw_proto_pack_key(&b.pk, "hop");
    msgpack_pack_uint32(&b.pk, (uint32_t)h);
    send_msg(n, route_ep(n, m, hop_stage(n, step, m, h, NULL)), SW_MSG_BWD, &b,
             n->dxout + (size_t)u * n->N * n->C, n->N * n->C * sizeof(float));
}

static void
try_backward(struct node *n)
{
    size_t NC = n->N * n->C;
    int err;

    if (!n->go || n->own_done)
        return;
    /* microbatches in order, a microbatch's visits from its last hop back */
    for (int m = 0; m < n->M; m++) {
        if (n->mb_node[m] != n->myidx)
            continue;
        for (int k = nvisits(n, n->step, m) - 1; k >= 0; k--) {
            int u = m + k * n->M, h = visit_hop(n, n->step, m, k);
            bool last = h == nhops(n, n->step, m) - 1;
            double t0;

            if (n->bwd_done[u])
                continue;
            if (!n->fwd_done[u] || (!last && (!n->have_dx[u] || n->early_dx[u])))
                return; /* hold later ones: gradients accumulate in order */
            t0 = sw_now_s();
            err = sw_stage_backward(&n->st, u, last ? NULL : n->dx + (size_t)u * NC, n->xbuf,
                                    1.0f / n->M);
            if (err >= 0)
                err = n->k->sync();
            if (err < 0) {
                fail(n, err, "backward");
                return;
            }
            n->t_compute += sw_now_s() - t0;
            n->bwd_done[u] = true;
            n->n_bwd++;
            if (h > 0) {
                memcpy(n->dxout + (size_t)u * NC, n->xbuf, NC * sizeof(float));
                n->dxout_ok[u] = true;
                send_bwd(n, u, n->step);
            }
        }
    }
    if (n->n_bwd == n->n_own)
        own_done(n);
}

/* Forward of visit u on this node: x_in (NULL on the first hop), the
 * tokens (stage 0) and the targets. */
static int
forward_one(struct node *n, int u, const float *x_in, const int32_t *tokens, const int32_t *tg)
{
    float loss = 0;
    double t0 = sw_now_s();
    int m = u % n->M, h = visit_hop(n, n->step, m, u / n->M);
    bool last = h == nhops(n, n->step, m) - 1;
    size_t len = n->N * n->C * 4 + n->N * 4;
    unsigned parts;
    int err;

    (void)hop_stage(n, n->step, m, h, &parts);
    err = sw_stage_forward(&n->st, u, parts, tokens, x_in, tg, n->xbuf, &loss);
    if (err >= 0)
        err = n->k->sync();
    if (err < 0)
        return err;
    n->t_compute += sw_now_s() - t0;
    if (u < n->M)
        n->tok_compute += (double)n->N;
    n->fwd_done[u] = true;
    if (last) {
        n->losses[m] = loss;
        return 0;
    }
    memcpy(n->msgbuf, n->xbuf, n->N * n->C * sizeof(float));
    memcpy(n->msgbuf + n->N * n->C * sizeof(float), tg, n->N * sizeof(int32_t));
    memcpy(n->xout + (size_t)u * len, n->msgbuf, len);
    n->xout_ok[u] = true;
    send_fwd(n, u, n->step);
    return 0;
}

/* Forward of visit v from a FWD payload p: the activation, then the targets. */
static int
forward_payload(struct node *n, int v, const void *p)
{
    size_t xbytes = n->N * n->C * sizeof(float);
    int32_t *tg = (int32_t *)(n->msgbuf + xbytes);

    memcpy(n->xbuf, p, xbytes);
    memcpy(tg, (const uint8_t *)p + xbytes, n->N * sizeof(int32_t));
    return forward_one(n, v, n->xbuf, n->stage == 0 ? n->in_all + (size_t)(v % n->M) * n->N : NULL,
                       tg);
}

/* ---- who may send what ---- */

/* Index into plan_pk/plan_ep of the node serving microbatch m at stage s. */
static int
plan_idx(const struct node *n, int s, int m)
{
    return s * SW_NODE_MAX_REPLICAS + n->plan_assign[s * n->M + m];
}

static bool
in_plan(const struct node *n, const uint8_t *pk)
{
    for (int s = 0; s < n->S; s++)
        for (int i = 0; i < n->plan_cnt[s]; i++)
            if (!memcmp(n->plan_pk[s * SW_NODE_MAX_REPLICAS + i], pk, 32))
                return true;
    return false;
}

/* The route of microbatch m from the plan of the step. */
static void
route_from_plan(struct node *n, int m)
{
    for (int s = 0; s < n->S; s++)
        snprintf(route_ep(n, m, s), EP, "%s", n->plan_ep[plan_idx(n, s, m)]);
}

/* Refuses (and counts) a message from a banned peer. */
static bool
refuse_banned(struct node *n, const struct sw_transport_msg *m)
{
    if (memcmp(m->hdr.sender, n->id.pk, 32) && is_banned(n, m->hdr.sender)) {
        n->drop_banned++;
        return true;
    }
    return false;
}

/*
 * Refuses (and counts) a message from no node of the run (not in the DHT's
 * records nor in the plan).  Handlers of tensors check the contents first,
 * so that a stranger sending bad ones is banned, not merely ignored.
 */
static bool
refuse_unknown(struct node *n, const struct sw_transport_msg *m)
{
    if (memcmp(m->hdr.sender, n->id.pk, 32) && !live_find(n, m->hdr.sender) &&
        !in_plan(n, m->hdr.sender)) {
        n->drop_unknown++;
        SW_LOG_RATELIMITED(SW_LOG_WARN, 2000, "dropped message %u from a peer that is not in the run",
                           m->hdr.type);
        return true;
    }
    return false;
}

/* A message no honest node sends: counted under reason, its sender banned. */
static void
reject(struct node *n, const struct sw_transport_msg *m, msgpack_unpacked *u, int reason,
       const char *what)
{
    if (u)
        msgpack_unpacked_destroy(u);
    sw_wire_count_drop(sw_transport_wire(n->tr), reason);
    if (reason == SW_WIRE_DROP_MALFORMED && strstr(what, "shape"))
        n->drop_shape++;
    SW_LOG_RATELIMITED(SW_LOG_WARN, 2000, "dropped %s", what);
    ban(n, m->hdr.sender, what);
}

static void
on_fwd(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"step", "mb", "hop", "route", NULL};
    struct node *n = arg;
    msgpack_unpacked u;
    const msgpack_object *route;
    uint64_t step, mb, hop;
    size_t xbytes = n->N * n->C * sizeof(float);
    int err, v;
    bool planned;

    (void)t;
    if (!n->have_stage || n->syncing)
        return;
    if (refuse_banned(n, m) || !open_body(n, m, &u, keys))
        return;
    route = sw_proto_get(&u.data, "route");
    if (sw_proto_get_u64(&u.data, "step", &step) < 0 || sw_proto_get_u64(&u.data, "mb", &mb) < 0 ||
        sw_proto_get_u64(&u.data, "hop", &hop) < 0 ||
        mb >= (uint64_t)n->M || !route || route->type != MSGPACK_OBJECT_ARRAY ||
        route->via.array.size != (uint32_t)n->S || hop == 0 ||
        hop >= (uint64_t)nhops(n, step, (int)mb) ||
        hop_stage(n, step, (int)mb, (int)hop, NULL) != n->stage) {
        reject(n, m, &u, SW_WIRE_DROP_MALFORMED, "malformed forward");
        return;
    }
    v = (int)mb + (visit_hop(n, step, (int)mb, 0) == (int)hop ? 0 : n->M);
    if (m->payload_len != xbytes + n->N * 4) {
        reject(n, m, &u, SW_WIRE_DROP_MALFORMED, "forward of the wrong shape");
        return;
    }
    if (!sw_wire_all_finite(SW_WIRE_F32, m->payload, xbytes)) {
        reject(n, m, &u, SW_WIRE_DROP_NONFINITE, "forward with non-finite activations");
        return;
    }
    if (step != n->step || n->fwd_done[v]) {
        /* late, or a replay after a replan that this node does not need */
        if (!refuse_unknown(n, m))
            sw_log(SW_LOG_DEBUG, "dropped forward of step %llu mb %llu at step %llu",
                   (unsigned long long)step, (unsigned long long)mb, (unsigned long long)n->step);
        msgpack_unpacked_destroy(&u);
        return;
    }
    planned = n->go && n->plan_step == step;
    if (memcmp(m->hdr.sender, n->id.pk, 32) &&
        (planned ? memcmp(m->hdr.sender,
                          n->plan_pk[plan_idx(n, hop_stage(n, step, (int)mb, (int)hop - 1, NULL),
                                              (int)mb)], 32)
                 : !live_find(n, m->hdr.sender) && !in_plan(n, m->hdr.sender))) {
        /* not (yet) from the node the plan names: a newcomer this node has
         * not read from the DHT, or whose GO or replan is still on its way.
         * Held until the next plan names its sender (early_take); a held
         * one from a known node is not replaced by a stranger's */
        size_t len = xbytes + n->N * 4;
        msgpack_unpacked_destroy(&u);
        if (n->early_ok[v] && live_find(n, n->early_pk[v]) && !live_find(n, m->hdr.sender))
            return;
        if (!n->early && !(n->early = sw_malloc_big((size_t)n->M * n->V * len)))
            return;
        memcpy(n->early + (size_t)v * len, m->payload, len);
        memcpy(n->early_pk[v], m->hdr.sender, 32);
        n->early_ok[v] = true;
        sw_log(SW_LOG_DEBUG, "forward of step %llu mb %llu held until a plan names its sender",
               (unsigned long long)step, (unsigned long long)mb);
        return;
    }
    if (planned) {
        /* the plan says who sends it, and the route */
        route_from_plan(n, (int)mb);
    } else {
        for (int s = 0; s < n->S; s++)
            if (sw_proto_str(&route->via.array.ptr[s], route_ep(n, (int)mb, s), EP) < 0) {
                reject(n, m, &u, SW_WIRE_DROP_MALFORMED, "malformed forward route");
                return;
            }
    }
    msgpack_unpacked_destroy(&u);
    n->in_step = true;
    if ((err = forward_payload(n, v, m->payload)) < 0) {
        if (err == -SW_ERANGE) {
            reject(n, m, NULL, SW_WIRE_DROP_MALFORMED, "forward with out-of-range targets");
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
    static const char *const keys[] = {"step", "mb", "hop", NULL};
    struct node *n = arg;
    msgpack_unpacked u;
    uint64_t step, mb, hop;
    size_t xbytes = n->N * n->C * sizeof(float);
    bool mine, planned;
    int v;

    (void)t;
    if (!n->have_stage || n->syncing)
        return;
    if (refuse_banned(n, m) || !open_body(n, m, &u, keys))
        return;
    if (sw_proto_get_u64(&u.data, "step", &step) < 0 || sw_proto_get_u64(&u.data, "mb", &mb) < 0 ||
        sw_proto_get_u64(&u.data, "hop", &hop) < 0 || mb >= (uint64_t)n->M ||
        hop + 1 >= (uint64_t)nhops(n, step, (int)mb) ||
        hop_stage(n, step, (int)mb, (int)hop, NULL) != n->stage) {
        reject(n, m, &u, SW_WIRE_DROP_MALFORMED, "malformed backward");
        return;
    }
    v = (int)mb + (visit_hop(n, step, (int)mb, 0) == (int)hop ? 0 : n->M);
    if (m->payload_len != xbytes) {
        reject(n, m, &u, SW_WIRE_DROP_MALFORMED, "backward of the wrong shape");
        return;
    }
    if (!sw_wire_all_finite(SW_WIRE_F32, m->payload, xbytes)) {
        reject(n, m, &u, SW_WIRE_DROP_NONFINITE, "backward with non-finite gradients");
        return;
    }
    msgpack_unpacked_destroy(&u);
    planned = n->go && n->plan_step == step;
    if (planned &&
        !memcmp(m->hdr.sender,
                n->plan_pk[plan_idx(n, hop_stage(n, step, (int)mb, (int)hop + 1, NULL), (int)mb)],
                32)) {
        /* from the node the plan names; after a replan the gradient may
         * come before the input it belongs to */
        mine = n->mb_node[mb] == n->myidx;
        if (step != n->step || (n->have_dx[v] && !n->early_dx[v])) {
            sw_log(SW_LOG_DEBUG, "dropped backward of step %llu mb %llu",
                   (unsigned long long)step, (unsigned long long)mb);
            return;
        }
        memcpy(n->dx + (size_t)v * n->N * n->C, m->payload, xbytes);
        n->have_dx[v] = true;
        /* neither this node's microbatch in the installed plan nor one it
         * has the input of: the replan that gives it this node may still be
         * on its way (the sender resent it on that replan): held */
        n->early_dx[v] = !n->fwd_done[v] && !mine;
        if (n->early_dx[v])
            memcpy(n->early_dxpk[v], m->hdr.sender, 32);
        else
            try_backward(n);
        return;
    }
    if (step == n->step && memcmp(m->hdr.sender, n->id.pk, 32) &&
        (!n->have_dx[v] || (n->early_dx[v] && !(live_find(n, n->early_dxpk[v]) &&
                                                !live_find(n, m->hdr.sender))))) {
        /* not (yet) from the node the plan names (see on_fwd): held, not
         * used (try_backward) until a plan names its sender */
        memcpy(n->dx + (size_t)v * n->N * n->C, m->payload, xbytes);
        memcpy(n->early_dxpk[v], m->hdr.sender, 32);
        n->have_dx[v] = n->early_dx[v] = true;
        return;
    }
    if (!refuse_unknown(n, m))
        sw_log(SW_LOG_DEBUG, "dropped backward of step %llu mb %llu", (unsigned long long)step,
               (unsigned long long)mb);
}

static void
on_grad(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"step", "ver", "stage", "count", "loss", "hash", NULL};
    struct node *n = arg;
    msgpack_unpacked u;
    uint64_t step, stage, count, ver;
    double loss;
    const uint8_t *h;
    size_t hl = 32, numel;
    int slot;

    (void)t;
    if (!n->have_stage || n->syncing)
        return;
    numel = n->st.lay.numel;
    if (refuse_banned(n, m) || !open_body(n, m, &u, keys))
        return;
    if (sw_proto_get_u64(&u.data, "step", &step) < 0 ||
        sw_proto_get_u64(&u.data, "ver", &ver) < 0 ||
        sw_proto_get_u64(&u.data, "stage", &stage) < 0 ||
        sw_proto_get_u64(&u.data, "count", &count) < 0 ||
        sw_proto_get_f64(&u.data, "loss", &loss) < 0 ||
        sw_proto_get_bin(&u.data, "hash", &h, &hl) < 0 || stage != (uint64_t)n->stage) {
        reject(n, m, &u, SW_WIRE_DROP_MALFORMED, "malformed partial gradient");
        return;
    }
    if (m->payload_len != numel * sizeof(float)) {
        reject(n, m, &u, SW_WIRE_DROP_MALFORMED, "partial gradient of the wrong shape");
        return;
    }
    if (!isfinite(loss) || !sw_wire_all_finite(SW_WIRE_F32, m->payload, m->payload_len)) {
        reject(n, m, &u, SW_WIRE_DROP_NONFINITE, "non-finite partial gradient");
        return;
    }
    if (refuse_unknown(n, m)) {
        msgpack_unpacked_destroy(&u);
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
    n->gver[slot] = ver;
    if (slot == n->ngot)
        n->ngot++;
    msgpack_unpacked_destroy(&u);
    if (step == n->step)
        try_finish_exchange(n);
}

/* ---- CheckFree+ replicas ---- */

/* The tensors of replica kind 0 (the embedding, kept by stage 1) and 1 (the
 * final norm and the LM head, kept by stage S-2), back to back. */
static const char *const rep_names[2][2] = {{"model.embed_tokens.weight", NULL},
                                            {"model.norm.weight", "lm_head.weight"}};

/* The kind this node's stage keeps (partners) or owns (boundaries), or -1. */
static int
rep_kind(const struct node *n, bool owner)
{
    if (!n->plus)
        return -1;
    if (n->stage == (owner ? 0 : 1))
        return 0;
    if (n->stage == (owner ? n->S - 1 : n->S - 2))
        return 1;
    return -1;
}

static size_t
rep_numel_of(const struct node *n, int kind)
{
    size_t vc = (size_t)n->man.model.vocab_size * n->man.model.d_model;

    return kind == 0 ? vc : vc + (size_t)n->man.model.d_model;
}

/* Boundary stage, first node of the plan: the updated embedding (head) to
 * every node of the partner stage; tagged with the steps it has taken. */
static void
replica_push(struct node *n)
{
    static struct body b;
    int kind = rep_kind(n, true), partner, err = 0;
    size_t numel, off = 0;

    if (kind < 0 || n->myidx != 0)
        return;
    partner = kind == 0 ? 1 : n->S - 2;
    numel = rep_numel_of(n, kind);
    if (!n->rep_buf && !(n->rep_buf = sw_malloc_big(numel * sizeof(float)))) {
        SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "no memory for the checkfree+ replica");
        return;
    }
    for (int i = 0; i < 2 && rep_names[kind][i] && err >= 0; i++) {
        const struct sw_tensor_info *ti = sw_stage_layout_find_name(&n->st.lay, rep_names[kind][i]);
        if (!ti || off + ti->numel > numel) {
            err = -SW_EINVAL;
            break;
        }
        err = n->k->copy_d2h(n->rep_buf + off, n->st.params + ti->offset,
                             ti->numel * sizeof(float));
        off += ti->numel;
    }
    if (err >= 0)
        err = n->k->sync();
    if (err < 0 || off != numel) {
        SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "checkfree+ replica of stage %d not sent: %s",
                           n->stage, sw_strerror(err < 0 ? err : -SW_EINVAL));
        return;
    }
    body_init(&b);
    msgpack_pack_map(&b.pk, 2);
    sw_proto_pack_key(&b.pk, "step");
    msgpack_pack_uint64(&b.pk, n->step);
    sw_proto_pack_key(&b.pk, "kind");
    msgpack_pack_uint32(&b.pk, (uint32_t)kind);
    for (int i = 0; i < n->plan_cnt[partner]; i++)
        send_msg(n, n->plan_ep[partner * SW_NODE_MAX_REPLICAS + i], SW_MSG_REPLICA, &b,
                 n->rep_buf, numel * sizeof(float));
}

/* True when pk serves stage s in the installed plan or the DHT's records. */
static bool
serves_stage(struct node *n, const uint8_t *pk, int s)
{
    struct live *l = live_find(n, pk);

    if (l && !l->dead && l->stage == s)
        return true;
    for (int i = 0; i < n->plan_cnt[s]; i++)
        if (!memcmp(n->plan_pk[s * SW_NODE_MAX_REPLICAS + i], pk, 32))
            return true;
    return false;
}

/* A partner keeps the newest replica its boundary stage pushed. */
static void
on_replica(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"step", "kind", NULL};
    struct node *n = arg;
    msgpack_unpacked u;
    uint64_t step, kind;
    int want = rep_kind(n, false);
    size_t numel;

    (void)t;
    if (!n->have_stage || want < 0 || refuse_banned(n, m) || !open_body(n, m, &u, keys))
        return;
    numel = rep_numel_of(n, want);
    if (sw_proto_get_u64(&u.data, "step", &step) < 0 ||
        sw_proto_get_u64(&u.data, "kind", &kind) < 0 || kind != (uint64_t)want) {
        reject(n, m, &u, SW_WIRE_DROP_MALFORMED, "malformed checkfree+ replica");
        return;
    }
    if (m->payload_len != numel * sizeof(float)) {
        reject(n, m, &u, SW_WIRE_DROP_MALFORMED, "checkfree+ replica of the wrong shape");
        return;
    }
    if (!sw_wire_all_finite(SW_WIRE_F32, m->payload, m->payload_len)) {
        reject(n, m, &u, SW_WIRE_DROP_NONFINITE, "non-finite checkfree+ replica");
        return;
    }
    msgpack_unpacked_destroy(&u);
    if (!serves_stage(n, m->hdr.sender, want == 0 ? 0 : n->S - 1)) {
        n->drop_unknown++;
        SW_LOG_RATELIMITED(SW_LOG_WARN, 2000, "dropped a checkfree+ replica from a node that "
                           "does not serve stage %d", want == 0 ? 0 : n->S - 1);
        return;
    }
    if (n->rep_have && step <= n->rep_step)
        return;
    if (!n->rep_buf && !(n->rep_buf = sw_malloc_big(numel * sizeof(float))))
        return;
    memcpy(n->rep_buf, m->payload, m->payload_len);
    n->rep_numel = numel;
    n->rep_step = step;
    n->rep_have = true;
    sw_log(SW_LOG_DEBUG, "replica of the %s at step %llu", want == 0 ? "embedding" : "head",
           (unsigned long long)step);
}

struct plan {
    int *cnt;             /* [S] */
    uint8_t (*pk)[32];    /* [S * SW_NODE_MAX_REPLICAS] */
    char (*ep)[EP];
    double *w;
    int *assign;          /* [S, M] */
};

static void
plan_free(struct plan *p)
{
    sw_free(p->cnt);
    sw_free(p->pk);
    sw_free(p->ep);
    sw_free(p->w);
    sw_free(p->assign);
}

static int
plan_alloc(struct node *n, struct plan *p)
{
    size_t R = (size_t)n->S * SW_NODE_MAX_REPLICAS;

    p->cnt = sw_calloc((size_t)n->S, sizeof(int));
    p->pk = sw_calloc(R, 32);
    p->ep = sw_calloc(R, EP);
    p->w = sw_calloc(R, sizeof(double));
    p->assign = sw_calloc((size_t)n->S * (size_t)n->M, sizeof(int));
    if (!p->cnt || !p->pk || !p->ep || !p->w || !p->assign) {
        plan_free(p);
        return -SW_ENOMEM;
    }
    return 0;
}

/* Reads GO's plan: per stage [{pk, ep, w}...]; -SW_EMSG when malformed. */
static int
plan_parse(struct node *n, const msgpack_object *plan, struct plan *p)
{
    static const char *const nk[] = {"pk", "ep", "w", NULL};

    if (plan->type != MSGPACK_OBJECT_ARRAY || plan->via.array.size != (uint32_t)n->S)
        return -SW_EMSG;
    for (int s = 0; s < n->S; s++) {
        const msgpack_object *a = &plan->via.array.ptr[s];
        if (a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size == 0 ||
            a->via.array.size > SW_NODE_MAX_REPLICAS)
            return -SW_EMSG;
        p->cnt[s] = (int)a->via.array.size;
        for (uint32_t i = 0; i < a->via.array.size; i++) {
            const msgpack_object *e = &a->via.array.ptr[i];
            int k = s * SW_NODE_MAX_REPLICAS + (int)i;
            const uint8_t *pk;
            size_t pl = 32;
            if (!sw_proto_only(e, nk) || sw_proto_get_bin(e, "pk", &pk, &pl) < 0 ||
                sw_proto_get_str(e, "ep", p->ep[k], EP) < 0 ||
                sw_proto_get_f64(e, "w", &p->w[k]) < 0)
                return -SW_EMSG;
            memcpy(p->pk[k], pk, 32);
        }
        sw_route_assign(n->M, p->cnt[s], &p->w[s * SW_NODE_MAX_REPLICAS], &p->assign[s * n->M]);
    }
    return 0;
}

static void
plan_install(struct node *n, const struct plan *p, uint64_t step, uint64_t ver)
{
    size_t R = (size_t)n->S * SW_NODE_MAX_REPLICAS;

    memcpy(n->plan_cnt, p->cnt, (size_t)n->S * sizeof(int));
    memcpy(n->plan_pk, p->pk, R * 32);
    memcpy(n->plan_ep, p->ep, R * EP);
    memcpy(n->plan_assign, p->assign, (size_t)n->S * n->M * sizeof(int));
    n->plan_step = step;
    n->plan_ver = ver;
}

/* This node's place in the installed plan: replicas, its microbatches. */
static void
plan_take(struct node *n)
{
    int s = n->stage;

    n->myidx = -1;
    n->nrep = n->plan_cnt[s];
    for (int i = 0; i < n->nrep; i++) {
        memcpy(n->rep_pk[i], n->plan_pk[s * SW_NODE_MAX_REPLICAS + i], 32);
        snprintf(n->rep_ep[i], EP, "%s", n->plan_ep[s * SW_NODE_MAX_REPLICAS + i]);
        if (!memcmp(n->rep_pk[i], n->id.pk, 32))
            n->myidx = i;
    }
    n->n_own = n->n_bwd = 0;
    for (int mb = 0; mb < n->M; mb++) {
        n->mb_node[mb] = n->plan_assign[s * n->M + mb];
        if (n->mb_node[mb] == n->myidx) {
            for (int k = 0; k < nvisits(n, n->step, mb); k++) {
                n->n_own++;
                n->n_bwd += n->bwd_done[mb + k * n->M];
            }
        }
    }
}

/*
 * A replan of step (ver > the installed one): the leader dropped a dead
 * node, or gave an empty stage its newcomer.  For every microbatch this
 * node served before and still serves, what it already sent to a neighbour
 * that changed is sent again from the store (no recomputation, so the
 * neighbours that already used it are not disturbed); microbatches it
 * takes over are computed when their input (stage 0: the data) is there.
 * replay_only: this node finished the step already and only resends.
 */
static void early_take(struct node *n);

static void
replan(struct node *n, const struct plan *p, uint64_t step, uint64_t ver, bool replay_only)
{
    int j = n->stage, S = n->S, err;
    /* oldme[m]: this node served m; chg[m * S + s]: m's node of stage s changed */
    uint8_t *oldme = sw_calloc((size_t)n->M, 1), *chg = sw_calloc((size_t)n->M * S, 1);

    if (!oldme || !chg)
        goto out;
    for (int m = 0; m < n->M; m++) {
        oldme[m] = !memcmp(n->plan_pk[plan_idx(n, j, m)], n->id.pk, 32);
        for (int s = 0; s < S; s++)
            chg[m * S + s] = !!memcmp(n->plan_pk[plan_idx(n, s, m)],
                                      p->pk[s * SW_NODE_MAX_REPLICAS + p->assign[s * n->M + m]],
                                      32);
    }
    plan_install(n, p, step, ver);
    for (int m = 0; m < n->M; m++) {
        bool newme = !memcmp(n->plan_pk[plan_idx(n, j, m)], n->id.pk, 32);
        if (!oldme[m] && !newme)
            continue;
        route_from_plan(n, m);
        if (!oldme[m] || !newme)
            continue;
        for (int k = 0; k < nvisits(n, step, m); k++) {
            int u = m + k * n->M, h = visit_hop(n, step, m, k);
            if (h + 1 < nhops(n, step, m) && chg[m * S + hop_stage(n, step, m, h + 1, NULL)] &&
                n->xout_ok[u])
                send_fwd(n, u, step);
            if (h > 0 && chg[m * S + hop_stage(n, step, m, h - 1, NULL)] && n->dxout_ok[u])
                send_bwd(n, u, step);
        }
    }
    if (replay_only)
        goto out;
    plan_take(n);
    if (n->myidx < 0) {
        /* planned out (thought dead): drop the step; a later PREPARE brings the state back */
        sw_log(SW_LOG_WARN, "step %llu goes on without this node", (unsigned long long)step);
        if ((err = sw_stage_zero_grad(&n->st)) < 0)
            fail(n, err, "replan");
        step_reset(n);
        goto out;
    }
    n->own_done = false;
    early_take(n);
    if (j == 0)
        for (int m = 0; m < n->M; m++)
            if (n->mb_node[m] == n->myidx && !n->fwd_done[m] &&
                (err = forward_one(n, m, NULL, n->in_all + (size_t)m * n->N,
                                   n->tg_all + (size_t)m * n->N)) < 0) {
                fail(n, err, "forward");
                goto out;
            }
    try_backward(n);
out:
    sw_free(oldme);
    sw_free(chg);
}

/* The step's plan is in: the FWDs and BWDs held for it (on_fwd, on_bwd)
 * are used when the plan names their senders, dropped (counted) if not. */
static void
early_take(struct node *n)
{
    size_t len = n->N * n->C * 4 + n->N * 4;
    int err;

    for (int v = 0; v < n->M * n->V; v++) {
        int m = v % n->M, k = v / n->M, h = visit_hop(n, n->step, m, k);
        if (!n->early_dx[v])
            continue;
        n->early_dx[v] = false;
        if (k >= nvisits(n, n->step, m) || h + 1 >= nhops(n, n->step, m) ||
            memcmp(n->early_dxpk[v],
                   n->plan_pk[plan_idx(n, hop_stage(n, n->step, m, h + 1, NULL), m)], 32)) {
            n->have_dx[v] = false;
            n->drop_unknown++;
        }
    }
    for (int v = 0; v < n->M * n->V; v++) {
        int m = v % n->M, k = v / n->M, h = visit_hop(n, n->step, m, k);
        if (!n->early_ok[v])
            continue;
        n->early_ok[v] = false;
        if (k >= nvisits(n, n->step, m) || h == 0 || n->fwd_done[v] ||
            n->mb_node[m] != n->myidx ||
            memcmp(n->early_pk[v],
                   n->plan_pk[plan_idx(n, hop_stage(n, n->step, m, h - 1, NULL), m)], 32)) {
            n->drop_unknown++;
            continue;
        }
        err = forward_payload(n, v, n->early + (size_t)v * len);
        if (err == -SW_ERANGE) {
            ban(n, n->early_pk[v], "forward with out-of-range targets");
        } else if (err < 0) {
            fail(n, err, "forward");
            return;
        }
    }
}

static void
on_go(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"step", "ver", "plan", NULL};
    struct node *n = arg;
    msgpack_unpacked u;
    const msgpack_object *plan;
    struct plan p;
    struct live *l;
    uint64_t step, ver;
    int err;

    (void)t;
    if (!n->have_stage || n->syncing || n->state != SW_NODE_TRAINING)
        return;
    if (refuse_banned(n, m))
        return;
    l = live_find(n, m->hdr.sender);
    if (memcmp(m->hdr.sender, n->id.pk, 32) && memcmp(m->hdr.sender, n->prep_pk, 32) &&
        (!l || l->stage != 0)) {
        n->drop_unknown++; /* only a stage-0 node leads: the one that prepared, or one we know */
        return;
    }
    if (!open_body(n, m, &u, keys))
        return;
    plan = sw_proto_get(&u.data, "plan");
    if (sw_proto_get_u64(&u.data, "step", &step) < 0 ||
        sw_proto_get_u64(&u.data, "ver", &ver) < 0 || !plan) {
        reject(n, m, &u, SW_WIRE_DROP_MALFORMED, "malformed plan");
        return;
    }
    if (plan_alloc(n, &p) < 0) {
        msgpack_unpacked_destroy(&u);
        return;
    }
    if (plan_parse(n, plan, &p) < 0) {
        reject(n, m, &u, SW_WIRE_DROP_MALFORMED, "malformed plan");
        plan_free(&p);
        return;
    }
    msgpack_unpacked_destroy(&u);
    if (step == n->step && n->go && ver > n->plan_ver) {
        sw_log(SW_LOG_INFO, "step %llu planned again (version %llu)", (unsigned long long)step,
               (unsigned long long)ver);
        replan(n, &p, step, ver, false);
        goto out;
    }
    if (step + 1 == n->step && !n->in_step && n->store_step == step && n->plan_step == step &&
        ver > n->plan_ver) {
        replan(n, &p, step, ver, true);
        goto out;
    }
    if (step + 1 == n->step && n->rebuilt && !n->go) {
        /*
         * Rebuilt from a source that had finished the step in progress (a
         * node downstream of the lost one, which still owed its BWDs to
         * the stages upstream): nothing is stored here to replay, so this
         * stage computes the step again with what it rebuilt, and takes
         * the step it updates to from the run (lead_watch).
         */
        sw_log(SW_LOG_INFO, "step %llu: the run is still in it; this rebuilt stage takes part "
               "(its source had finished it)", (unsigned long long)step);
        n->step = step;
    }
    if (step != n->step || n->go)
        goto out;
    plan_install(n, &p, step, ver);
    memset(n->xout_ok, 0, (size_t)n->M * n->V * sizeof(bool));
    memset(n->dxout_ok, 0, (size_t)n->M * n->V * sizeof(bool));
    n->store_step = step;
    plan_take(n);
    if (n->myidx < 0) {
        sw_log(SW_LOG_INFO, "step %llu goes on without this node", (unsigned long long)step);
        goto out;
    }
    for (int mb = 0; mb < n->M; mb++)
        route_from_plan(n, mb);
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
            err = forward_one(n, mb, NULL, n->in_all + (size_t)mb * n->N,
                              n->tg_all + (size_t)mb * n->N);
            if (err < 0) {
                fail(n, err, "forward");
                goto out;
            }
        }
    }
    early_take(n);
    try_backward(n);
out:
    plan_free(&p);
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
    if (m->route.rid == 0 || !n->have_stage || refuse_banned(n, m))
        return;
    if (!open_body(n, m, &u, keys))
        return;
    if (sw_proto_get_u64(&u.data, "step", &step) < 0) {
        reject(n, m, &u, SW_WIRE_DROP_MALFORMED, "malformed prepare");
        return;
    }
    msgpack_unpacked_destroy(&u);
    /* a leader this node has not read yet (it joined a moment ago) may ask, not disturb */
    if ((n->in_step || n->go) && refuse_unknown(n, m))
        return;
    memcpy(n->prep_pk, m->hdr.sender, 32);
    if (n->in_step && n->own_done && n->nrep > 1 && step == n->step + 1) {
        /* the leader finished the step; this node did its microbatches and
         * waits only for a replica's partial gradient (on its way, or its
         * sender gone: on_tick): READY after the update (do_update) */
        n->prep_pending = true;
        n->prep_route = m->route;
        n->prep_step = step;
        try_finish_exchange(n);
        return;
    }
    if ((n->in_step || n->go) && step > n->step) {
        /* the step went on without this node (planned out): drop it and catch up */
        sw_log(SW_LOG_WARN, "left behind at step %llu (the run is at %llu): dropping it",
               (unsigned long long)n->step, (unsigned long long)step);
        if ((err = sw_stage_zero_grad(&n->st)) < 0) {
            fail(n, err, "restart");
            return;
        }
        step_reset(n);
    }
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

/* A slot of the plan being made, ready (the leader's takeovers and
 * replans); false when the table is full. */
static bool
prep_add(struct node *n, const uint8_t *pk, const char *ep, int stage, double w)
{
    struct prep_slot *p;

    if (n->nprep >= SW_NODE_MAX_NODES)
        return false;
    p = &n->prep[n->nprep++];
    memset(p, 0, sizeof(*p));
    p->n = n;
    memcpy(p->pk, pk, 32);
    snprintf(p->ep, EP, "%s", ep);
    p->stage = stage;
    p->w = w;
    p->ok = p->answered = true;
    return true;
}

/* Another live stage-0 node that has taken more steps than this one. */
static bool
stage0_ahead(struct node *n)
{
    for (int i = 0; i < n->ndir; i++) {
        const struct sw_peer_rec *r = &n->dir[i];
        if (r->stage == 0 && r->state == SW_NODE_TRAINING && r->step > n->step &&
            memcmp(r->pk, n->id.pk, 32) && !is_gone(n, r->pk))
            return true;
    }
    return false;
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

/* GO(lead_step, ver, plan) to the nodes planned (prep slots ok); false when a stage has none. */
static bool
lead_send_plan(struct node *n, uint64_t ver)
{
    static struct body b;
    int *cnt = sw_calloc((size_t)n->S, sizeof(int));

    if (!cnt)
        return false;
    qsort(n->prep, (size_t)n->nprep, sizeof(n->prep[0]), cmp_slot);
    for (int i = 0; i < n->nprep; i++)
        if (n->prep[i].ok && cnt[n->prep[i].stage] < SW_NODE_MAX_REPLICAS)
            cnt[n->prep[i].stage]++;
    for (int s = 0; s < n->S; s++) {
        if (cnt[s] == 0) {
            sw_free(cnt);
            return false;
        }
    }
    body_init(&b);
    msgpack_pack_map(&b.pk, 3);
    sw_proto_pack_key(&b.pk, "step");
    msgpack_pack_uint64(&b.pk, n->lead_step);
    sw_proto_pack_key(&b.pk, "ver");
    msgpack_pack_uint64(&b.pk, ver);
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
    sw_free(cnt);
    n->lead_ver = ver;
    n->go_sent_ms = sw_now_ms();
    return true;
}

static void
lead_go(struct node *n)
{
    if (!lead_send_plan(n, 0)) {
        SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "step %llu: a stage has no ready node, waiting",
                           (unsigned long long)n->lead_step);
        n->phase = PH_IDLE;
        n->phase_ms = sw_now_ms();
        return;
    }
    sw_log(SW_LOG_DEBUG, "step %llu: go", (unsigned long long)n->lead_step);
    n->phase = PH_RUNNING;
    n->phase_ms = sw_now_ms();
    n->paused = false;
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
on_pong(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    struct live *l = arg;
    struct sw_peer_rec *r;
    char why[64];

    (void)t;
    if (status == -SW_ECANCELED)
        return;
    l->ping_busy = false;
    if (status == 0) {
        l->ping_fails = 0;
        if (!memcmp(m->hdr.sender, l->pk, 32))
            l->alive_ms = sw_now_ms();
        return;
    }
    if (l->ping_fails == 0 && (r = dir_find(l->n, l->pk)))
        probe_start(l->n, l, r->ep);
    if (++l->ping_fails >= 2) {
        snprintf(why, sizeof(why), "no answer to %d pings of %d ms", l->ping_fails,
                 l->n->dead_ms / 3);
        declare_dead(l->n, l, why);
    }
}

/*
 * While a step runs the leader pings its nodes (request timeouts: two
 * unanswered pings make a node dead), drops the dead ones from the plan
 * and gives a stage that lost its last node the first newcomer that is
 * ready at the step, or one past it (a stage rebuilt from a source that
 * had finished the step: on_go steps it back): GO again with a higher
 * version.
 */
static void
lead_watch(struct node *n)
{
    uint64_t now = sw_now_ms();
    bool changed = false, *have;
    int empty = -1;

    for (int i = 0; i < n->nprep; i++) {
        struct prep_slot *p = &n->prep[i];
        struct live *l;
        char who[13];
        if (!p->ok || !memcmp(p->pk, n->id.pk, 32))
            continue;
        if (is_gone(n, p->pk)) {
            p->ok = false;
            changed = true;
            sw_log(SW_LOG_WARN, "step %llu: node %s of stage %d is gone: planning without it",
                   (unsigned long long)n->lead_step, short_pk(who, p->pk), p->stage);
            continue;
        }
        if ((l = live_get(n, p->pk)) && !l->ping_busy && now - l->ping_ms >= SW_NODE_PING_MS) {
            l->stage = p->stage;
            l->ping_ms = now;
            if (sw_transport_request(n->tr, p->ep, SW_MSG_PING, NULL, 0, NULL,
                                     (uint64_t)n->dead_ms / 3, 0, on_pong, l) == 0)
                l->ping_busy = true;
        }
    }
    if (!(have = sw_calloc((size_t)n->S, sizeof(bool))))
        return;
    for (int i = 0; i < n->nprep; i++)
        if (n->prep[i].ok)
            have[n->prep[i].stage] = true;
    for (int i = 0; i < n->ndir && n->nprep < SW_NODE_MAX_NODES; i++) {
        const struct sw_peer_rec *r = &n->dir[i];
        char who[13];
        /* at the step, or past it: rebuilt from a source that had finished
         * it, it steps back into it when it gets the plan (on_go) */
        if (have[r->stage] || r->state != SW_NODE_TRAINING ||
            (r->step != n->lead_step && r->step != n->lead_step + 1) || is_gone(n, r->pk))
            continue;
        prep_add(n, r->pk, r->ep, r->stage, r->cap);
        have[r->stage] = true;
        changed = true;
        sw_log(SW_LOG_INFO, "step %llu: node %s serves the empty stage %d: planning it again",
               (unsigned long long)n->lead_step, short_pk(who, r->pk), r->stage);
    }
    for (int s = n->S - 1; s >= 0; s--)
        if (!have[s])
            empty = s;
    sw_free(have);
    if (empty >= 0) {
        /* the node that recovers the stage shows up in a scan: look more often meanwhile */
        if (now - n->scan_ms >= SW_NODE_SCAN_MS / 5)
            scan(n);
        if (!n->paused || now - n->wait_log_ms > 5000) {
            sw_log(SW_LOG_WARN, "step %llu: stage %d has no node left: drivers paused until a "
                   "node recovers it (swarmd join --stage auto)", (unsigned long long)n->lead_step,
                   empty);
            n->wait_log_ms = now;
        }
        n->paused = true;
        return;
    }
    if (changed && lead_send_plan(n, n->lead_ver + 1)) {
        n->paused = false;
        n->phase_ms = now;
    } else if (!changed && now - n->go_sent_ms >= 1000 && now - n->phase_ms < 10000) {
        /* the same GO again, for a node that dropped it (one that had not
         * read this leader's record yet): a node that has it ignores it */
        (void)lead_send_plan(n, n->lead_ver);
    }
}

/*
 * This node rebuilt stage 0 (CheckFree+, or a checkpoint) in a step whose
 * leader died with the stage: some nodes may have finished the step, others
 * are in it.  A PREPARE would restart these and leave those a step ahead,
 * so plan the step again instead, as a replan: GO to every training node at
 * the step or just past it, with a version no plan of the lost leader
 * reached (the clock in ms); nodes in the step resend what the new node
 * needs, nodes past it replay from their store, idle ones start it.
 */
static void
lead_takeover(struct node *n)
{
    struct sw_peer_rec me;
    const struct sw_peer_rec *seen = dir_find(n, n->id.pk);
    uint64_t ver = sw_now_ms();

    /* the others accept a GO from a stage-0 node they know: wait until
     * this node's training record is in the DHT (they scan as often) */
    if (!seen || seen->state != SW_NODE_TRAINING || seen->step != n->step) {
        if (n->scan_ms + SW_NODE_SCAN_MS / 5 <= sw_now_ms())
            scan(n);
        return;
    }
    self_rec(n, &me);
    n->nprep = 0;
    prep_add(n, n->id.pk, n->ep, n->stage, me.cap);
    for (int i = 0; i < n->ndir; i++) {
        const struct sw_peer_rec *r = &n->dir[i];
        if (!memcmp(r->pk, n->id.pk, 32) || r->state != SW_NODE_TRAINING ||
            (r->step != n->step && r->step != n->step + 1) || is_gone(n, r->pk))
            continue;
        prep_add(n, r->pk, r->ep, r->stage, r->cap);
    }
    if (!lead_send_plan(n, ver)) {
        SW_LOG_RATELIMITED(SW_LOG_INFO, 2000, "step %llu: taking over the lost leader's step: "
                           "a stage has no node at the step yet, waiting",
                           (unsigned long long)n->lead_step);
        return;
    }
    n->lead_takeover = false;
    n->phase = PH_RUNNING;
    n->phase_ms = sw_now_ms();
    n->paused = false;
    sw_log(SW_LOG_WARN, "step %llu: leading it from now on, in place of the lost leader "
           "(planned again, version %llu)", (unsigned long long)n->lead_step,
           (unsigned long long)ver);
}

static void
lead_tick(struct node *n)
{
    static struct body b;
    uint64_t now = sw_now_ms();
    bool *have;
    int missing = -1;

    if (n->phase == PH_RUNNING && !n->paused && now - n->phase_ms > SW_NODE_STALL_MS) {
        sw_log(SW_LOG_ERROR, "step %llu stalled for %d s: planning it again",
               (unsigned long long)n->lead_step, SW_NODE_STALL_MS / 1000);
        n->phase = PH_IDLE;
    }
    if (n->phase == PH_RUNNING && !n->in_step && n->step > n->lead_step)
        n->phase = PH_IDLE;
    if (n->phase == PH_RUNNING && is_leader(n)) {
        lead_watch(n);
        return;
    }
    if (n->phase == PH_PREPARING) {
        /* a node found dead or gone meanwhile: do not wait for its answer */
        for (int i = 0; i < n->nprep && n->nwait > 0; i++) {
            struct prep_slot *p = &n->prep[i];
            if (!p->answered && is_gone(n, p->pk)) {
                p->answered = true;
                p->ok = false;
                if (--n->nwait == 0)
                    lead_go(n);
            }
        }
        return;
    }
    if (n->phase == PH_IDLE && n->in_step && n->go && is_leader(n) &&
        sw_now_s() - n->t_go > n->dead_ms / 1000.0) {
        /* the leader died in a step: take the step over with its plan */
        n->lead_step = n->step;
        n->nprep = 0;
        for (int s = 0; s < n->S; s++)
            for (int i = 0; i < n->plan_cnt[s]; i++)
                prep_add(n, n->plan_pk[s * SW_NODE_MAX_REPLICAS + i],
                         n->plan_ep[s * SW_NODE_MAX_REPLICAS + i], s, 0);
        n->lead_ver = n->plan_ver;
        n->phase = PH_RUNNING;
        n->phase_ms = now;
        sw_log(SW_LOG_WARN, "leading step %llu from now on", (unsigned long long)n->step);
        return;
    }
    if (n->phase != PH_IDLE || n->in_step || !is_leader(n) ||
        n->step >= (uint64_t)n->man.steps || now - n->phase_ms < 50)
        return;
    if (n->step < n->run_step && !n->lead_takeover && stage0_ahead(n)) {
        /* another stage-0 node led the run while this one, initialised at
         * the same time, was not in its table yet: follow it, not lead */
        sw_log(SW_LOG_INFO, "behind the run (step %llu, run at %llu): copying state again",
               (unsigned long long)n->step, (unsigned long long)n->run_step);
        sync_start(n);
        return;
    }
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
            sw_log(SW_LOG_INFO, "waiting for a node on stage %d%s", missing,
                   n->step > 0 ? ": drivers paused" : "");
            n->wait_log_ms = now;
        }
        return;
    }
    n->lead_step = n->step;
    n->nprep = 0;
    if (n->lead_takeover) {
        lead_takeover(n);
        return;
    }
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
                                 (uint64_t)SW_MAX(n->dead_ms, 5000), 0, on_ready,
                                 &n->prep[i]) < 0) {
            n->prep[i].answered = true;
            n->nwait--;
        }
    }
    if (n->nwait == 0)
        lead_go(n);
}

/* ---- state copy ---- */

/*
 * Buffers of STATE pieces (SYNC_CHUNK floats), reused: a fresh 4 MiB
 * buffer costs a thousand page faults, which every piece would pay.  The
 * transport's free_cb may run on a ZeroMQ thread (net/transport.h), hence
 * the mutex; at most PIECE_POOL wait for reuse, the others are freed.
 */
#define PIECE_POOL 16
static struct {
    pthread_mutex_t mu;
    void *buf[PIECE_POOL];
    int n;
} piece_pool = {PTHREAD_MUTEX_INITIALIZER, {NULL}, 0};

static float *
piece_get(void)
{
    void *p = NULL;

    pthread_mutex_lock(&piece_pool.mu);
    if (piece_pool.n > 0)
        p = piece_pool.buf[--piece_pool.n];
    pthread_mutex_unlock(&piece_pool.mu);
    return p ? p : sw_malloc((size_t)SYNC_CHUNK * sizeof(float));
}

static void
piece_put(void *data, void *arg)
{
    (void)arg;
    if (!data)
        return;
    pthread_mutex_lock(&piece_pool.mu);
    if (piece_pool.n < PIECE_POOL) {
        piece_pool.buf[piece_pool.n++] = data;
        data = NULL;
    }
    pthread_mutex_unlock(&piece_pool.mu);
    sw_free(data);
}

static const char *const state_get_keys[] = {"stage", "which", "off", "n", "snap", NULL};

/*
 * STATE_GET {stage, which, off, n} reads the live state (a joining replica);
 * with snap: S, a keeper's, the snapshot of the state after step S: taken
 * now when the node is at S, armed (answer -EAGAIN, ask again) when it is
 * not there yet, -ENOENT when it went past S without one.  A snap answer
 * carries the clipped norm too ("normc").
 */
static void
on_state_get(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    struct node *n = arg;
    static struct body b;
    msgpack_unpacked u;
    uint64_t stage, which, off, cnt, snap = 0, step = n->step;
    size_t numel;
    float *src, *host = NULL;
    bool has_snap, from_snap = false;
    int err = 0;

    if (m->route.rid == 0 || !n->have_stage)
        return;
    if (!open_body(n, m, &u, state_get_keys))
        return;
    numel = n->st.lay.numel;
    has_snap = sw_proto_get(&u.data, "snap") != NULL;
    if (sw_proto_get_u64(&u.data, "stage", &stage) < 0 ||
        sw_proto_get_u64(&u.data, "which", &which) < 0 || which > 3 ||
        sw_proto_get_u64(&u.data, "off", &off) < 0 || sw_proto_get_u64(&u.data, "n", &cnt) < 0 ||
        cnt > SYNC_CHUNK || (has_snap && (sw_proto_get_u64(&u.data, "snap", &snap) < 0 || !snap))) {
        drop_malformed(n, &u, m->hdr.type);
        return;
    }
    msgpack_unpacked_destroy(&u);
    if (which == 3) {
        /* CheckFree+: the replica this partner keeps, for its boundary stage's rebuild */
        numel = n->rep_have && !has_snap ? n->rep_numel : 0;
        step = n->rep_step;
        if (!n->rep_have || has_snap)
            err = -SW_ENOENT;
    }
    if (stage != (uint64_t)n->stage || n->syncing || off > numel || cnt > numel - off ||
        (n->state != SW_NODE_TRAINING && !(has_snap && n->state == SW_NODE_DONE)))
        err = -SW_EINVAL;
    if (!err && has_snap) {
        if (!(n->snap_have && n->snap_step == snap) && n->step == snap)
            err = snap_take(n);
        if (err < 0) {
            sw_log(SW_LOG_WARN, "snapshot for a keeper: %s", sw_strerror(err));
        } else if (n->snap_have && n->snap_step == snap) {
            from_snap = true;
            step = snap;
        } else if (n->step < snap) {
            if (n->snap_want != snap)
                sw_log(SW_LOG_DEBUG, "a keeper wants stage %d at step %llu", n->stage,
                       (unsigned long long)snap);
            n->snap_want = snap;
            err = -SW_EAGAIN;
        } else {
            err = -SW_ENOENT;
        }
    }
    if (!err && !(host = piece_get()))
        err = -SW_ENOMEM;
    if (!err && from_snap) {
        memcpy(host, n->snap_buf + which * numel + off, cnt * sizeof(float));
    } else if (!err && which == 3) {
        memcpy(host, n->rep_buf + off, cnt * sizeof(float));
    } else if (!err) {
        src = which == 0 ? n->st.params : which == 1 ? n->opt.m : n->opt.v;
        if ((err = n->k->copy_d2h(host, src + off, cnt * sizeof(float))) >= 0)
            err = n->k->sync();
    }
    body_init(&b);
    msgpack_pack_map(&b.pk, has_snap ? 9 : 8);
    sw_proto_pack_key(&b.pk, "err");
    msgpack_pack_int64(&b.pk, err < 0 ? err : 0);
    sw_proto_pack_key(&b.pk, "step");
    msgpack_pack_uint64(&b.pk, step);
    sw_proto_pack_key(&b.pk, "t");
    msgpack_pack_uint64(&b.pk, (uint64_t)(from_snap ? n->snap_t : n->opt.t));
    sw_proto_pack_key(&b.pk, "lr_mult");
    msgpack_pack_double(&b.pk, from_snap ? n->snap_lrm : n->opt.lr_mult);
    sw_proto_pack_key(&b.pk, "norm");
    msgpack_pack_double(&b.pk, from_snap ? n->snap_norm
                               : isfinite(n->opt.last_norm) ? n->opt.last_norm : 0.0);
    if (has_snap) {
        sw_proto_pack_key(&b.pk, "normc");
        msgpack_pack_double(&b.pk, from_snap ? n->snap_normc : 0.0);
    }
    sw_proto_pack_key(&b.pk, "numel");
    msgpack_pack_uint64(&b.pk, numel);
    sw_proto_pack_key(&b.pk, "off");
    msgpack_pack_uint64(&b.pk, off);
    sw_proto_pack_key(&b.pk, "n");
    msgpack_pack_uint64(&b.pk, err < 0 ? 0 : cnt);
    if (err < 0 || !cnt) {
        reply_msg(n, t, &m->route, SW_MSG_STATE, &b, NULL, 0);
        piece_put(host, NULL);
    } else {
        /* handed over, not copied: back to the pool once ZeroMQ sent it */
        struct sw_payload p = {host, cnt * sizeof(float), piece_put, NULL, NULL};
        if (!b.b.overflow && sw_transport_reply(t, &m->route, SW_MSG_STATE, b.b.data, b.b.len,
                                                &p) < 0)
            SW_LOG_RATELIMITED(SW_LOG_WARN, 1000, "cannot send a state piece");
    }
}

static void sync_request(struct node *n);

/* Stage 0: the data cursor of step n->step, by replaying the stream from the seed. */
static int
data_replay(struct node *n)
{
    int err;

    if (n->stage != 0)
        return 0;
    sw_data_seed(&n->data, n->man.seed);
    for (uint64_t s = 0; s < n->step; s++)
        for (int mb = 0; mb < n->M; mb++)
            if ((err = sw_data_next_batch(&n->data, n->in_all, n->tg_all, n->B, n->T)) < 0)
                return err;
    return 0;
}

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
    if ((err = data_replay(n)) < 0) {
        fail(n, err, "data");
        return;
    }
    params_hash(n);
    n->syncing = false;
    n->state = SW_NODE_TRAINING;
    step_reset(n);
    sw_log(SW_LOG_INFO, "copied stage %d from %s at step %llu (hash %s)", n->stage, n->sync_ep,
           (unsigned long long)n->step, n->hash);
    if (n->step > 0 && !n->trained) {
        /* a newcomer's recovery of the first kind: the exact state of a live replica */
        n->recoveries++;
        snprintf(n->rec_method, sizeof(n->rec_method), "copy");
        snprintf(n->rec_from, sizeof(n->rec_from), "%s", n->sync_ep);
        n->rec_bytes = 3 * bytes;
        n->rec_s = (sw_now_ms() - n->cf_t0_ms) / 1000.0;
        sw_log(SW_LOG_INFO, "recovery: stage %d method copy from %s: %llu bytes in %.0f ms, "
               "step %llu", n->stage, n->sync_ep, (unsigned long long)n->rec_bytes,
               n->rec_s * 1000, (unsigned long long)n->step);
    }
    announce(n);
    answer_prepare(n);
}

/* A STATE answer's scalars. */
struct state_piece {
    uint64_t step, t;
    double lr_mult, norm;
};

/* Reads the STATE answer m to the request of floats [off, off + cnt) of a
 * slab of numel: 0, or -1 when it is an error answer, malformed (counted),
 * of another piece or slab, or of the wrong length. */
static int
state_piece_read(struct node *n, const struct sw_transport_msg *m, size_t numel, size_t off,
                 size_t cnt, struct state_piece *p)
{
    static const char *const keys[] = {"err",   "step", "t", "lr_mult", "norm",
                                       "numel", "off",  "n", NULL};
    msgpack_unpacked u;
    const msgpack_object *e;
    uint64_t got_numel, got_off, got_n;
    bool ok;

    if (!open_body(n, m, &u, keys))
        return -1;
    e = sw_proto_get(&u.data, "err");
    ok = e &&
         (e->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
          e->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) && e->via.i64 == 0 &&
         sw_proto_get_u64(&u.data, "step", &p->step) == 0 &&
         sw_proto_get_u64(&u.data, "t", &p->t) == 0 &&
         sw_proto_get_f64(&u.data, "lr_mult", &p->lr_mult) == 0 &&
         sw_proto_get_f64(&u.data, "norm", &p->norm) == 0 &&
         sw_proto_get_u64(&u.data, "numel", &got_numel) == 0 &&
         sw_proto_get_u64(&u.data, "off", &got_off) == 0 &&
         sw_proto_get_u64(&u.data, "n", &got_n) == 0 && got_numel == numel && got_off == off &&
         got_n == cnt && m->payload_len == cnt * sizeof(float);
    msgpack_unpacked_destroy(&u);
    return ok ? 0 : -1;
}

static void
on_state(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    struct piece_req *r = arg;
    struct node *n = r->n;
    struct state_piece sp;
    size_t total = n->st.lay.numel, off = r->off, cnt = r->cnt;
    int which = r->which;
    bool stale = status == -SW_ECANCELED || !n->sync_busy || r->gen != n->sync_gen;

    (void)t;
    sw_free(r);
    if (stale)
        return;
    n->sync_inflight--;
    if (status < 0) {
        sw_log(SW_LOG_WARN, "state copy from '%s' failed: %s", n->sync_ep, sw_strerror(status));
        n->sync_ep[0] = '\0';
        n->sync_busy = false; /* sync_tick starts again; the answers in flight are stale */
        return;
    }
    if (state_piece_read(n, m, total, off, cnt, &sp) < 0) {
        sw_log(SW_LOG_WARN, "state copy from '%s' refused or malformed; trying again",
               n->sync_ep);
        n->sync_ep[0] = '\0';
        n->sync_busy = false;
        return;
    }
    if (!n->sync_have_step) {
        n->sync_step = sp.step;
        n->sync_have_step = true;
    } else if (sp.step != n->sync_step) {
        /* the replica took a step meanwhile: every piece must be of one step, start again */
        n->sync_busy = false;
        sync_request(n);
        return;
    }
    n->sync_t = sp.t;
    n->sync_lrm = (float)sp.lr_mult;
    memcpy(n->sync_buf + (size_t)which * total + off, m->payload, m->payload_len);
    n->sync_got += cnt;
    if (n->sync_got == 3 * total) {
        n->sync_busy = false;
        sync_done(n);
        return;
    }
    sync_request(n);
}

/*
 * Body of a STATE_GET request: piece [off, off + SYNC_CHUNK) (clipped at
 * numel) of slab `which` of `stage`; snap >= 0 asks for the state of that
 * step (the keeper), < 0 for the live state.
 */
static void
pack_state_get(struct body *b, int stage, int which, size_t off, size_t numel, int64_t snap)
{
    body_init(b);
    msgpack_pack_map(&b->pk, snap >= 0 ? 5 : 4);
    sw_proto_pack_key(&b->pk, "stage");
    msgpack_pack_uint32(&b->pk, (uint32_t)stage);
    sw_proto_pack_key(&b->pk, "which");
    msgpack_pack_uint32(&b->pk, (uint32_t)which);
    sw_proto_pack_key(&b->pk, "off");
    msgpack_pack_uint64(&b->pk, off);
    sw_proto_pack_key(&b->pk, "n");
    msgpack_pack_uint64(&b->pk, SW_MIN((size_t)SYNC_CHUNK, numel - off));
    if (snap >= 0) {
        sw_proto_pack_key(&b->pk, "snap");
        msgpack_pack_uint64(&b->pk, (uint64_t)snap);
    }
}

/*
 * Keeps SW_NODE_STATE_WINDOW pieces of the replica's params, m and v in
 * flight (answers may come in any order; on_state).  Called when idle
 * (!sync_busy) it starts a copy afresh under a new generation.
 */
static void
sync_request(struct node *n)
{
    static struct body b;
    size_t numel = n->st.lay.numel;

    if (!n->sync_busy) {
        n->sync_gen++;
        n->sync_which = 0;
        n->sync_off = 0;
        n->sync_got = 0;
        n->sync_inflight = 0;
        n->sync_have_step = false;
        n->sync_busy = true;
    }
    while (n->sync_inflight < SW_NODE_STATE_WINDOW && n->sync_which < 3) {
        struct piece_req *r = sw_malloc(sizeof(*r));

        if (r) {
            *r = (struct piece_req){n, NULL, n->sync_gen, n->sync_which, n->sync_off,
                                    SW_MIN((size_t)SYNC_CHUNK, numel - n->sync_off)};
            pack_state_get(&b, n->stage, n->sync_which, n->sync_off, numel, -1);
        }
        if (!r || sw_transport_request(n->tr, n->sync_ep, SW_MSG_STATE_GET, b.b.data, b.b.len,
                                       NULL, 5000, 1, on_state, r) < 0) {
            sw_free(r);
            if (!n->sync_inflight)
                n->sync_busy = false; /* nothing in flight: sync_tick tries again */
            return;
        }
        n->sync_inflight++;
        if ((n->sync_off += r->cnt) == numel) {
            n->sync_off = 0;
            n->sync_which++;
        }
    }
}

/* ---- recovery: CheckFree from both neighbours ---- */

/*
 * True when the empty stages (empty[S]) cannot be rebuilt by any node that
 * joins: a boundary stage (plain CheckFree has no replica of the embedding
 * or the head), or two adjacent stages (CheckFree needs both neighbours);
 * why says which and what would recover them.
 */
static bool
lost_for_good(const struct node *n, const bool *empty, char *why, size_t len)
{
    const char *ck = "a keeper's checkpoint (swarmd keeper, and nodes started with "
                     "--from-checkpoint DIR)";

    char list[256] = "";
    size_t off = 0;
    int nlost = 0;

    for (int s = 0; s < n->S; s++)
        if (empty[s] && off < sizeof(list)) {
            int k = snprintf(list + off, sizeof(list) - off, "%s%d", nlost ? ", " : "", s);
            off += k > 0 ? (size_t)k : 0;
            nlost++;
        }
    for (int s = 0; s < n->S; s++) {
        if (!empty[s])
            continue;
        if (s + 1 < n->S && empty[s + 1]) {
            snprintf(why, len, "lost stage%s %s: stages %d and %d are adjacent and CheckFree "
                     "rebuilds a stage from its two live neighbours; %s would recover them",
                     nlost > 1 ? "s" : "", list, s, s + 1, ck);
            return true;
        }
        if ((s == 0 || s == n->S - 1) && !n->plus) {
            snprintf(why, len, "lost stage%s %s: stage %d owns the %s, which no neighbour holds; "
                     "CheckFree+ (its partner keeps a replica: a run signed with "
                     "recovery.mode = checkfree+) or %s would recover it", nlost > 1 ? "s" : "",
                     list, s, s == 0 ? "embedding" : "final norm and LM head", ck);
            return true;
        }
    }
    return false;
}

static void cf_request(struct cf_src *src);
static void cf_src_restart(struct cf_src *src);

/* cf_st[i]: a parameters-only stage over what cf[i] fetched (src/stage.h,
 * sw_stage_view_init); the CPU backend reads the host buffer itself, a GPU
 * a device copy of it. */
static int
cf_view(struct node *n, int i)
{
    size_t bytes = n->cf[i].numel * sizeof(float);
    float *p = n->cf[i].buf;
    int err;

    if (n->k != &sw_kernels_cpu) {
        if (!(p = n->cf_dev[i] = n->k->alloc(bytes)))
            return -SW_ENOMEM;
        if ((err = n->k->copy_h2d(p, n->cf[i].buf, bytes)) < 0 || (err = n->k->sync()) < 0)
            return err;
    }
    if ((err = sw_stage_view_init(&n->cf_st[i], n->k, &n->man.model, n->S, n->cf[i].stage, p)) <
        0)
        return err;
    n->cf_have_st[i] = true;
    return 0;
}

/* Frees what a rebuild fetched. */
static void
cf_release(struct node *n)
{
    for (int i = 0; i < 2; i++) {
        if (n->cf_have_st[i])
            sw_stage_release(&n->cf_st[i]);
        n->cf_have_st[i] = false;
        if (n->cf_dev[i])
            n->k->free(n->cf_dev[i]);
        n->cf_dev[i] = NULL;
        sw_free(n->cf[i].buf);
        n->cf[i].buf = NULL;
    }
}

static void
cf_abort(struct node *n, const char *why)
{
    sw_log(SW_LOG_WARN, "checkfree recovery of stage %d interrupted: %s; trying again", n->stage,
           why);
    n->cf_active = false;
    n->cf_retry_ms = sw_now_ms() + 1000;
}

static void cfp_finish(struct node *n);

/* The end of a rebuild: gradients zeroed, the fetched copies freed, and
 * the step in progress taken (the neighbours cannot finish it without this
 * stage); false when err (or the zeroing) failed the node. */
static bool
cf_end(struct node *n, int err, const char *what)
{
    if (err >= 0)
        err = sw_stage_zero_grad(&n->st);
    n->cf_active = false;
    cf_release(n);
    if (err < 0) {
        fail(n, err, what);
        return false;
    }
    n->step = n->cf[0].step;
    if (n->step > n->run_step)
        n->run_step = n->step;
    return true;
}

/* A rebuilt stage trains from its step; the recovery event (status.h). */
static void
cf_recovered(struct node *n, const char *method, const char *from)
{
    params_hash(n);
    n->syncing = false;
    n->state = SW_NODE_TRAINING;
    step_reset(n);
    n->rebuilt = true;
    n->recoveries++;
    snprintf(n->rec_method, sizeof(n->rec_method), "%s", method);
    snprintf(n->rec_from, sizeof(n->rec_from), "%s", from);
    n->rec_bytes = n->cf_bytes;
    n->rec_s = (sw_now_ms() - n->cf_t0_ms) / 1000.0;
}

static void
cf_finish(struct node *n)
{
    struct sw_checkfree_config cc;
    struct sw_optim po, no;
    char a[13], b[13], from[2 * EP + 2];
    int err = 0;

    n->cf_got_s = sw_now_s();
    if (n->plus && (n->stage <= 1 || n->stage >= n->S - 2)) {
        cfp_finish(n);
        return;
    }

    for (int i = 0; i < 2 && err >= 0; i++)
        err = cf_view(n, i);
    memset(&po, 0, sizeof(po));
    memset(&no, 0, sizeof(no));
    po.last_norm = po.last_norm_clipped = (float)n->cf[0].norm;
    no.last_norm = no.last_norm_clipped = (float)n->cf[1].norm;
    sw_checkfree_config_default(&cc);
    if (err >= 0)
        err = sw_checkfree_rebuild(&n->st, &n->opt, SW_CF_CHECKFREE, &n->cf_st[0], &po,
                                   &n->cf_st[1], &no, &cc, n->man.seed);
    if (!cf_end(n, err, "checkfree rebuild"))
        return;
    snprintf(from, sizeof(from), "%s,%s", n->cf[0].ep, n->cf[1].ep);
    cf_recovered(n, "checkfree", from);
    sw_log(SW_LOG_INFO,
           "recovery: stage %d method checkfree from %s (stage %d, norm %.4f) and %s (stage %d, "
           "norm %.4f): %llu bytes in %.0f ms (transfer %.0f ms, rebuild %.0f ms); fresh AdamW, "
           "lr x %.2f, resuming at step %llu (hash %s)",
           n->stage, short_pk(a, n->cf[0].pk), n->cf[0].stage, n->cf[0].norm,
           short_pk(b, n->cf[1].pk), n->cf[1].stage, n->cf[1].norm,
           (unsigned long long)n->rec_bytes, n->rec_s * 1000,
           (n->cf_got_s - n->cf_req_s) * 1000, (sw_now_s() - n->cf_got_s) * 1000, cc.lr_bump,
           (unsigned long long)n->step, n->hash);
    announce(n);
    answer_prepare(n);
}

static void
on_cf_state(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    struct piece_req *r = arg;
    struct cf_src *src = r->src;
    struct node *n = r->n;
    struct state_piece sp;
    size_t off = r->off, cnt = r->cnt;
    char why[EP + 128];
    bool stale = status == -SW_ECANCELED || !n->cf_active || r->gen != src->gen;

    (void)t;
    sw_free(r);
    if (stale)
        return;
    src->inflight--;
    if (status < 0) {
        snprintf(why, sizeof(why), "stage %d at '%s': %s", src->stage, src->ep,
                 sw_strerror(status));
        cf_abort(n, why);
        return;
    }
    if (state_piece_read(n, m, src->numel, off, cnt, &sp) < 0 || !isfinite(sp.norm) ||
        !sw_wire_all_finite(SW_WIRE_F32, m->payload, m->payload_len)) {
        snprintf(why, sizeof(why), "stage %d at '%s' refused or sent a bad piece", src->stage,
                 src->ep);
        cf_abort(n, why);
        return;
    }
    n->cf_bytes += m->payload_len;
    if (src->have_step && sp.step != src->step) {
        /* the neighbour took a step meanwhile: its pieces must be of one step */
        cf_src_restart(src);
        cf_request(src);
        return;
    }
    src->step = sp.step;
    src->have_step = true;
    src->norm = sp.norm;
    memcpy(src->buf + off, m->payload, m->payload_len);
    if ((src->got += cnt) < src->numel) {
        cf_request(src);
        return;
    }
    src->done = true;
    if (n->cf[0].done && n->cf[1].done)
        cf_finish(n);
}

/*
 * Keeps SW_NODE_STATE_WINDOW pieces of a neighbour's slab in flight, from
 * src->off on; on_cf_state takes them in any order.
 */
static void
cf_request(struct cf_src *src)
{
    static struct body b;
    struct node *n = src->n;

    while (n->cf_active && src->inflight < SW_NODE_STATE_WINDOW && src->off < src->numel) {
        struct piece_req *r = sw_malloc(sizeof(*r));

        if (r) {
            *r = (struct piece_req){n, src, src->gen, src->which, src->off,
                                    SW_MIN((size_t)SYNC_CHUNK, src->numel - src->off)};
            pack_state_get(&b, src->stage, src->which, src->off, src->numel, -1);
        }
        if (!r || sw_transport_request(n->tr, src->ep, SW_MSG_STATE_GET, b.b.data, b.b.len, NULL,
                                       (uint64_t)SW_MAX(n->dead_ms, 2000), 2, on_cf_state,
                                       r) < 0) {
            sw_free(r);
            cf_abort(n, "cannot send a state request");
            return;
        }
        src->inflight++;
        src->off += r->cnt;
    }
}

/* Forget what src fetched so far (a new start): answers in flight become stale. */
static void
cf_src_restart(struct cf_src *src)
{
    src->gen++;
    src->off = src->got = 0;
    src->inflight = 0;
    src->done = src->have_step = false;
}

/* The parameter count of stage s. */
static int
stage_numel(const struct node *n, int s, size_t *numel)
{
    struct sw_stage_layout lay;
    int err = sw_stage_layout_init(&lay, &n->man.model, n->S, s);

    if (err < 0)
        return err;
    *numel = lay.numel;
    sw_stage_layout_release(&lay);
    return 0;
}

/*
 * Source i of a rebuild: slab `which` (numel floats; 0: nothing to fetch)
 * of r's node.  Nothing slow before the requests go out (cf_go): pieces
 * piled up while the loop is blocked can come out of the sender's sequence
 * window (net/wire.h: dropped as stale, the request times out); the buffer
 * is not pre-faulted either (the pieces touch it).
 */
static int
cf_src_setup(struct node *n, int i, const struct sw_peer_rec *r, int which, size_t numel)
{
    struct cf_src *src = &n->cf[i];

    src->n = n;
    src->stage = r->stage;
    src->which = which;
    snprintf(src->ep, EP, "%s", r->ep);
    memcpy(src->pk, r->pk, 32);
    if (src->buf && src->numel != numel) {
        sw_free(src->buf);
        src->buf = NULL;
    }
    src->numel = numel;
    cf_src_restart(src);
    src->done = numel == 0;
    if (numel && !src->buf && !(src->buf = sw_malloc(numel * sizeof(float))))
        return -SW_ENOMEM;
    return 0;
}

/* Both sources set up: the rebuild starts, their pieces are asked for. */
static void
cf_go(struct node *n)
{
    n->cf_active = true;
    if (!n->cf_t0_ms)
        n->cf_t0_ms = sw_now_ms();
    n->cf_bytes = 0;
    n->cf_req_s = sw_now_s();
    for (int i = 0; i < 2 && n->cf_active; i++)
        if (!n->cf[i].done)
            cf_request(&n->cf[i]);
}

/* Fetches both neighbours' parameters at once; cf_finish rebuilds. */
static void
cf_start(struct node *n, const struct sw_peer_rec *prev, const struct sw_peer_rec *next)
{
    const struct sw_peer_rec *r[2] = {prev, next};
    char a[13], b[13];
    int err;

    for (int i = 0; i < 2; i++) {
        size_t numel;
        if ((err = stage_numel(n, r[i]->stage, &numel)) < 0 ||
            (err = cf_src_setup(n, i, r[i], 0, numel)) < 0) {
            fail(n, err, "checkfree recovery");
            return;
        }
    }
    sw_log(SW_LOG_INFO, "recovering stage %d by checkfree from %s (stage %d, step %llu) and %s "
           "(stage %d, step %llu)", n->stage, short_pk(a, prev->pk), prev->stage,
           (unsigned long long)prev->step, short_pk(b, next->pk), next->stage,
           (unsigned long long)next->step);
    cf_go(n);
}

/*
 * CheckFree+ (recovery.mode checkfree+), arXiv 2506.15461 section 4.3: a
 * lost boundary stage (0 or S-1) takes its partner's (1 or S-2) blocks, which
 * the swapped route trained to stand in for its own, and the exact replica
 * of the embedding (final norm and head) the partner keeps; a lost partner
 * takes its boundary stage's blocks and gets the replica at the next push.
 * Both: fresh AdamW, LR x 1.1, the step in progress (src/checkfree.h,
 * sw_sim_rebuild).  cf[0] fetches the source stage's parameters, cf[1] the
 * replica (STATE_GET which 3; nothing for a partner).
 */
static void
cfp_start(struct node *n, const struct sw_peer_rec *r)
{
    bool boundary = n->stage == 0 || n->stage == n->S - 1;
    size_t numel;
    char a[13];
    int err;

    if ((err = stage_numel(n, r->stage, &numel)) < 0 ||
        (err = cf_src_setup(n, 0, r, 0, numel)) < 0 ||
        (err = cf_src_setup(n, 1, r, 3, boundary ? rep_numel_of(n, n->stage == 0 ? 0 : 1) : 0)) <
            0) {
        fail(n, err, "checkfree+ recovery");
        return;
    }
    sw_log(SW_LOG_INFO, "recovering stage %d by checkfree+ from %s (stage %d, step %llu): its "
           "blocks%s", n->stage, short_pk(a, r->pk), r->stage, (unsigned long long)r->step,
           boundary ? (n->stage == 0 ? " and the embedding replica" : " and the head replica")
                    : "");
    cf_go(n);
}

static void
cfp_finish(struct node *n)
{
    struct sw_checkfree_config cc;
    bool boundary = n->stage == 0 || n->stage == n->S - 1;
    int kind = n->stage == 0 ? 0 : 1, err;
    size_t off = 0;
    char a[13];

    sw_checkfree_config_default(&cc);
    err = cf_view(n, 0);
    if (err >= 0)
        err = sw_checkfree_copy_blocks(&n->st, &n->cf_st[0]);
    for (int i = 0; boundary && i < 2 && rep_names[kind][i] && err >= 0; i++) {
        const struct sw_tensor_info *ti = sw_stage_layout_find_name(&n->st.lay, rep_names[kind][i]);
        if (!ti || off + ti->numel > n->cf[1].numel) {
            err = -SW_ESHAPE;
            break;
        }
        err = n->k->copy_h2d(n->st.params + ti->offset, n->cf[1].buf + off,
                             ti->numel * sizeof(float));
        off += ti->numel;
    }
    if (err >= 0)
        err = n->k->sync();
    if (err >= 0)
        err = sw_checkfree_reset_optim(&n->opt, cc.lr_bump);
    if (!cf_end(n, err, "checkfree+ rebuild"))
        return;
    n->lead_takeover = n->stage == 0;
    if (boundary && n->cf[1].step != n->step)
        sw_log(SW_LOG_WARN, "the %s replica is of step %llu, its partner at step %llu: the "
               "owner died before pushing its last update", kind == 0 ? "embedding" : "head",
               (unsigned long long)n->cf[1].step, (unsigned long long)n->step);
    if ((err = data_replay(n)) < 0) {
        fail(n, err, "data");
        return;
    }
    cf_recovered(n, "checkfree+", n->cf[0].ep);
    sw_log(SW_LOG_INFO,
           "recovery: stage %d method checkfree+ from %s (stage %d): its blocks%s, %llu bytes in "
           "%.0f ms (transfer %.0f ms, rebuild %.0f ms); fresh AdamW, lr x %.2f, resuming at "
           "step %llu (hash %s)",
           n->stage, short_pk(a, n->cf[0].pk), n->cf[0].stage,
           boundary ? (kind == 0 ? " and the embedding replica" : " and the head replica") : "",
           (unsigned long long)n->rec_bytes, n->rec_s * 1000, (n->cf_got_s - n->cf_req_s) * 1000,
           (sw_now_s() - n->cf_got_s) * 1000, cc.lr_bump,
           (unsigned long long)n->step, n->hash);
    announce(n);
    answer_prepare(n);
}

/*
 * No live node of this stage to copy and the run has started: rebuild it
 * from both neighbours when they are there, or stop with the reason.
 */
static void
recover_tick(struct node *n)
{
    const struct sw_peer_rec *nb[2] = {NULL, NULL};
    bool *empty = sw_calloc((size_t)n->S, sizeof(bool)), syncing = false;
    char why[512];
    uint64_t now = sw_now_ms();

    if (!empty)
        return;
    for (int s = 0; s < n->S; s++)
        empty[s] = true;
    for (int i = 0; i < n->ndir; i++) {
        const struct sw_peer_rec *r = &n->dir[i];
        if (!memcmp(r->pk, n->id.pk, 32))
            continue;
        empty[r->stage] = false;
        for (int k = 0; k < 2; k++)
            if (r->stage == n->stage + (k ? 1 : -1)) {
                if (r->state == SW_NODE_TRAINING && (!nb[k] || r->step > nb[k]->step))
                    nb[k] = r;
                syncing |= r->state == SW_NODE_SYNCING;
            }
    }
    if (lost_for_good(n, empty, why, sizeof(why))) {
        sw_log(SW_LOG_ERROR, "cannot recover stage %d at step %llu: %s", n->stage,
               (unsigned long long)n->run_step, why);
        n->exit_code = SW_EXIT_LOST;
        n->stopping = true;
        n->stop_ms = now;
    } else if (n->plus && (n->stage <= 1 || n->stage >= n->S - 2)) {
        /* the source: stage 0 and S-2 look forward (1, S-1), 1 and S-1 back (0, S-2) */
        const struct sw_peer_rec *src = nb[n->stage == 0 || n->stage == n->S - 2 ? 1 : 0];
        if (src) {
            if (!n->cf_t0_ms)
                n->cf_t0_ms = now;
            cfp_start(n, src);
        } else {
            SW_LOG_RATELIMITED(SW_LOG_INFO, 5000, "stage %d: waiting for its checkfree+ "
                               "partner to be ready%s", n->stage, syncing ? " (it is syncing)" : "");
            n->cf_retry_ms = now + 500;
        }
    } else if (nb[0] && nb[1] && n->man.recovery_mode <= SW_RECOVERY_CHECKFREE_PLUS) {
        if (!n->cf_t0_ms)
            n->cf_t0_ms = now;
        cf_start(n, nb[0], nb[1]);
    } else {
        SW_LOG_RATELIMITED(SW_LOG_INFO, 5000, "stage %d: waiting for its neighbours to be ready%s",
                           n->stage, syncing ? " (one is syncing)" : "");
        n->cf_retry_ms = now + 500;
    }
    sw_free(empty);
}

/* A running node: stop when a lost stage can never come back. */
static int ckpt_newest(struct node *n);
static bool ckpt_use_keeper(const struct node *n);

static void
check_lost(struct node *n)
{
    int nck;
    bool *empty, any = false;
    char why[512];
    uint64_t now = sw_now_ms();

    if (n->boot || !n->have_stage || n->state != SW_NODE_TRAINING || n->syncing || n->stopping ||
        n->run_step >= (uint64_t)n->man.steps || !n->dir_ok || now - n->scan_ok_ms > 2000 ||
        !(empty = sw_calloc((size_t)n->S, sizeof(bool))))
        return;
    for (int s = 0; s < n->S; s++)
        empty[s] = n->seen_stage[s];
    for (int i = 0; i < n->ndir; i++)
        empty[n->dir[i].stage] = false;
    for (int s = 0; s < n->S; s++)
        any |= empty[s];
    if (!any || !lost_for_good(n, empty, why, sizeof(why))) {
        n->lost_since_ms = 0;
        n->lost_ck_logged = false;
    } else if (n->o.from_ckpt[0] && (nck = ckpt_newest(n)) != -1) {
        /* a keeper's checkpoint rebuilds them: nodes started with
         * --from-checkpoint take the empty stages; the step waits for them
         * (-2: the keeper's record is being looked up) */
        if (!n->lost_ck_logged && nck >= 0) {
            n->lost_ck_logged = true;
            sw_log(SW_LOG_WARN, "at step %llu: %s; %s%s%s holds one (step %d): waiting for "
                   "nodes started with --from-checkpoint", (unsigned long long)n->step, why,
                   ckpt_use_keeper(n) ? "the keeper at " : "'",
                   ckpt_use_keeper(n) ? n->kfind.ep : n->o.from_ckpt,
                   ckpt_use_keeper(n) ? "" : "'", nck);
        }
        n->lost_since_ms = 0;
    } else if (!n->lost_since_ms) {
        /* one missed refresh on a loaded machine must not end a run: the
         * loss has to last another dead_ms before everyone stops */
        n->lost_since_ms = now;
        sw_log(SW_LOG_WARN, "the run looks lost at step %llu: %s; stopping in %d ms unless "
               "the stage comes back", (unsigned long long)n->step, why, n->dead_ms);
    } else if (now - n->lost_since_ms >= (uint64_t)n->dead_ms) {
        sw_log(SW_LOG_ERROR, "the run cannot go on at step %llu: %s; stopping",
               (unsigned long long)n->step, why);
        n->exit_code = SW_EXIT_LOST;
        n->stopping = true;
        n->stop_ms = now;
    }
    sw_free(empty);
}

/*
 * --from-checkpoint keeper, or a folder that does not exist on this machine:
 * the stage comes from the keeper the DHT names, over the network.
 */
static bool
ckpt_use_keeper(const struct node *n)
{
    struct stat sb;

    return !strcmp(n->o.from_ckpt, "keeper") || (n->o.from_ckpt[0] && stat(n->o.from_ckpt, &sb));
}

/* The newest committed step of the --from-checkpoint folder (no data read)
 * or of the keeper's record, -1 if none, -2 while the keeper is looked up. */
static int
ckpt_newest(struct node *n)
{
    struct sw_ckpt_entry *e = NULL;
    int cnt = 0, best = -1;

    if (n->o.from_ckpt[0] && ckpt_use_keeper(n)) {
        sw_ckptnet_find(&n->kfind, n->dht, n->man.run_id, 1000);
        if (n->kfind.found && n->kfind.step > 0)
            return (int)n->kfind.step;
        return n->kfind.lookups ? -1 : -2;
    }
    if (!n->o.from_ckpt[0] || sw_ckpt_list(n->o.from_ckpt, false, &e, &cnt) < 0)
        return -1;
    for (int i = 0; i < cnt; i++)
        if (e[i].status == 0 && e[i].step > best)
            best = e[i].step;
    sw_free(e);
    return best;
}

/*
 * The state of a checkpoint (host buf [3, numel]: params, m, v; the stage's
 * scalars; saved after ck_step steps with saved_S stages, from `from`) into
 * this stage: at the checkpoint's step when the run restarts, at the step in
 * progress when the run went on and lost this stage.
 */
static int
ckpt_apply(struct node *n, const float *buf, const struct sw_ckpt_stage_state *st,
           uint64_t ck_step, int saved_S, const char *from, double t0)
{
    size_t numel = n->st.lay.numel, bytes = numel * sizeof(float);
    int err;

    if ((err = n->k->copy_h2d(n->st.params, buf, bytes)) < 0 ||
        (err = n->k->copy_h2d(n->opt.m, buf + numel, bytes)) < 0 ||
        (err = n->k->copy_h2d(n->opt.v, buf + 2 * numel, bytes)) < 0 ||
        (err = n->k->sync()) < 0 || (err = sw_stage_zero_grad(&n->st)) < 0) {
        sw_log(SW_LOG_ERROR, "--from-checkpoint: cannot load the state: %s", sw_strerror(err));
        return err;
    }
    n->opt.t = st->t;
    n->opt.lr_mult = st->lr_mult;
    n->opt.last_norm = st->last_norm;
    n->opt.last_norm_clipped = st->last_norm_clipped;
    n->last_norm = st->last_norm;
    n->step = ck_step;
    if (n->run_step > n->step) {
        /* the run went on past the checkpoint and lost this stage (the
         * others live): rejoin the step in progress, the lowest step a live
         * node of another stage is at, with the checkpoint's older tensors
         * (CheckFree cannot rebuild adjacent or boundary stages) */
        uint64_t at = n->run_step;
        for (int i = 0; i < n->ndir; i++)
            if (n->dir[i].stage != n->stage && n->dir[i].state == SW_NODE_TRAINING &&
                n->dir[i].step < at && !is_gone(n, n->dir[i].pk))
                at = n->dir[i].step;
        sw_log(SW_LOG_INFO, "recovery: stage %d method checkpoint: the tensors of step %llu "
               "from %s, resuming at step %llu", n->stage, (unsigned long long)n->step, from,
               (unsigned long long)at);
        n->step = at;
        n->lead_takeover = n->stage == 0;
        n->recoveries++;
        snprintf(n->rec_method, sizeof(n->rec_method), "checkpoint");
        snprintf(n->rec_from, sizeof(n->rec_from), "%.*s", (int)sizeof(n->rec_from) - 1, from);
        n->rec_bytes = 3 * bytes;
        n->rec_s = sw_now_s() - t0;
    }
    if (n->step > n->run_step)
        n->run_step = n->step;
    if ((err = data_replay(n)) < 0)
        return err;
    params_hash(n);
    n->syncing = false;
    n->state = n->step >= (uint64_t)n->man.steps ? SW_NODE_DONE : SW_NODE_TRAINING;
    if (n->state == SW_NODE_DONE)
        n->done_ms = sw_now_ms();
    step_reset(n);
    sw_log(SW_LOG_INFO, "stage %d restored from checkpoint %s: step %llu, AdamW t %d, "
           "saved with %d stages, %zu bytes in %.0f ms (hash %s)", n->stage, from,
           (unsigned long long)n->step, n->opt.t, saved_S, 3 * bytes,
           (sw_now_s() - t0) * 1000, n->hash);
    announce(n);
    answer_prepare(n);
    return 0;
}

/*
 * --from-checkpoint keeper: this stage's tensors from the keeper the DHT
 * names (CKPT_INFO_GET / CKPT_GET, ckptnet.h), over several ticks: returns
 * 0 and leaves ckpt_done false while it runs (sync_tick calls again).
 */
static int
ckpt_fetch(struct node *n)
{
    const char (*eps)[EP];
    char from[EP + 16];
    size_t numel = n->st.lay.numel;
    int err;

    n->ckpt_done = false;
    if (!n->kpull) {
        sw_ckptnet_find(&n->kfind, n->dht, n->man.run_id, 1000);
        if (!n->kfind.found || !n->kfind.step) {
            if (n->kfind.lookups < 4)
                return 0; /* a keeper that just started may not be published yet */
            n->ckpt_done = true;
            if (n->run_step == 0) {
                sw_log(SW_LOG_INFO, "--from-checkpoint: %s and the run has not started: the "
                       "run seed's initialisation", n->kfind.found ? "the keeper holds no "
                       "checkpoint yet" : "no keeper found");
                return 1;
            }
            sw_log(SW_LOG_ERROR, "--from-checkpoint: %s", n->kfind.found ? "the keeper holds "
                   "no checkpoint" : "no keeper found in the DHT");
            return -SW_ENOENT;
        }
        if (!(n->kpull = sw_calloc(1, sizeof(*n->kpull))) ||
            !(n->kpull_buf = sw_malloc_big(3 * numel * sizeof(float))) ||
            (err = sw_ckptnet_pull_init(n->kpull, n->tr, &n->st.lay, n->stage, n->kpull_buf,
                                        0)) < 0) {
            n->ckpt_done = true;
            return -SW_ENOMEM;
        }
        n->cf_t0_ms = sw_now_ms();
        sw_log(SW_LOG_INFO, "--from-checkpoint: fetching stage %d from the keeper at %s "
               "(newest checkpoint: step %llu)", n->stage, n->kfind.ep,
               (unsigned long long)n->kfind.step);
    }
    eps = (const char (*)[EP])n->kfind.ep;
    if ((err = sw_ckptnet_pull_tick(n->kpull, eps, 1)) == 0)
        return 0;
    n->ckpt_done = true;
    if (err == 1) {
        snprintf(from, sizeof(from), "keeper %s", n->kfind.ep);
        sw_log(SW_LOG_INFO, "--from-checkpoint: stage %d of step %llu: %llu bytes from %s in "
               "%llu ms", n->stage, (unsigned long long)n->kpull->step,
               (unsigned long long)n->kpull->bytes, n->kfind.ep,
               (unsigned long long)(sw_now_ms() - n->kpull->t0_ms));
        err = ckpt_apply(n, n->kpull_buf, &n->kpull->st, n->kpull->step, n->kpull->saved_S, from,
                         n->cf_t0_ms / 1000.0);
    } else {
        sw_log(SW_LOG_ERROR, "--from-checkpoint: cannot fetch stage %d from the keeper at %s: %s",
               n->stage, n->kfind.ep, sw_strerror(err));
    }
    sw_ckptnet_pull_release(n->kpull);
    sw_free(n->kpull);
    sw_free_big(n->kpull_buf);
    n->kpull = NULL;
    n->kpull_buf = NULL;
    return err;
}

/*
 * swarmd join --from-checkpoint DIR: this stage's tensors (whatever the stage
 * count at save time: read by global name), AdamW state and step from the
 * newest clean checkpoint of DIR; --from-checkpoint keeper (or a DIR that
 * does not exist here): from the keeper, over the network.  0 restored (or
 * fetching), 1 no checkpoint and the run has not started, < 0 error.
 */
static int
ckpt_restore(struct node *n)
{
    const struct sw_model_config *a, *b = &n->man.model;
    size_t numel = n->st.lay.numel, bytes = numel * sizeof(float);
    struct sw_ckpt_stage_state st;
    struct sw_ckpt ck;
    float *buf = NULL;
    char from[4200];
    double t0 = sw_now_s();
    int err;

    if (ckpt_use_keeper(n))
        return ckpt_fetch(n);
    if ((err = sw_ckpt_open(&ck, n->o.from_ckpt, -1)) < 0) {
        if (err == -SW_ENOENT && n->run_step == 0) {
            sw_log(SW_LOG_INFO, "--from-checkpoint: no checkpoint in '%s' yet and the run has "
                   "not started: the run seed's initialisation", n->o.from_ckpt);
            return 1;
        }
        sw_log(SW_LOG_ERROR, "--from-checkpoint: no clean checkpoint in '%s': %s",
               n->o.from_ckpt, sw_strerror(err));
        return err;
    }
    a = &ck.run.cfg;
    if (a->vocab_size != b->vocab_size || a->d_model != b->d_model ||
        a->n_layers != b->n_layers || a->n_heads != b->n_heads ||
        a->n_kv_heads != b->n_kv_heads || a->ffn_hidden != b->ffn_hidden || a->tied != b->tied) {
        sw_log(SW_LOG_ERROR, "--from-checkpoint: '%s' holds another model than the manifest's",
               ck.path);
        err = -SW_ECONFIG;
    } else if (ck.run.seed != n->man.seed) {
        sw_log(SW_LOG_WARN, "--from-checkpoint: '%s' was saved by a run of seed %llu, this "
               "run's is %llu", ck.path, (unsigned long long)ck.run.seed,
               (unsigned long long)n->man.seed);
    }
    if (!err && !(buf = sw_malloc_big(3 * bytes)))
        err = -SW_ENOMEM;
    if (!err)
        err = sw_ckpt_read_stage(&ck, &n->st.lay, buf, buf + numel, buf + 2 * numel, &st);
    if (!err) {
        snprintf(from, sizeof(from), "'%s'", ck.path);
        err = ckpt_apply(n, buf, &st, (uint64_t)ck.run.step, ck.run.S, from, t0);
    } else {
        sw_log(SW_LOG_ERROR, "--from-checkpoint: cannot load the state: %s", sw_strerror(err));
    }
    sw_free_big(buf);
    sw_ckpt_close(&ck);
    return err;
}

/* Called from the tick while syncing: pick a replica, or start from the seed. */
static void
sync_tick(struct node *n)
{
    const struct sw_peer_rec *src = NULL;
    uint64_t now = sw_now_ms();

    if (!n->syncing || n->sync_busy || n->cf_active || !n->dir_ok || now < n->sync_retry_ms ||
        now < n->cf_retry_ms)
        return;
    for (int i = 0; i < n->ndir; i++) {
        const struct sw_peer_rec *r = &n->dir[i];
        if (r->stage == n->stage && r->state == SW_NODE_TRAINING && memcmp(r->pk, n->id.pk, 32) &&
            (!src || r->step > src->step))
            src = r;
    }
    if (!src && n->o.from_ckpt[0] && !n->ckpt_done) {
        int err;
        n->ckpt_done = true;
        if ((err = ckpt_restore(n)) < 0)
            fail(n, err, "--from-checkpoint");
        if (err <= 0)
            return;
    }
    if (!src) {
        if (n->run_step == 0 && !n->recoveries) {
            /* the run has not started: every node agrees on the seed's initialisation,
             * drawn only now (stage_setup leaves the parameters zero, since a node
             * that copies or rebuilds its stage would throw the draw away: for a
             * 50 MB stage, half a second before a recovery can start) */
            int err;
            if ((err = sw_stage_init_params(&n->st, n->man.seed)) < 0) {
                fail(n, err, "initialisation");
                return;
            }
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
            recover_tick(n);
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
    n->cf_t0_ms = sw_now_ms();
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

/* A record --stage auto may count: its node gave a sign of life seen here. */
static bool
auto_trusted(struct node *n, const struct sw_peer_rec *r)
{
    struct live *l = live_find(n, r->pk);

    return l && l->alive_ms && !l->dead && !l->left;
}

/*
 * --stage auto, before choosing: a stage record lives on for dead_ms after
 * its node was killed, so a record is trusted only once its node gave a
 * sign of life seen here (a new version of the record, or an answer to a
 * ping).  Pings every record's node (on_pong: two unanswered pings of
 * dead_ms / 3 make it dead) and scans until every record is trusted or its
 * node dead; at most dead_ms and a scan (then on_scan has judged every
 * record by its age).  A newcomer started at once after a kill thus waits
 * about 2 dead_ms / 3, one started later only a round trip.
 */
static void
auto_confirm(struct node *n)
{
    uint64_t t0 = sw_now_ms(), until = t0 + (uint64_t)n->dead_ms + SW_NODE_SCAN_MS, now;
    int nwait = 0;

    while ((now = sw_now_ms()) < until) {
        nwait = 0;
        for (int i = 0; i < n->ndir; i++) {
            const struct sw_peer_rec *r = &n->dir[i];
            struct live *l;
            if (r->state > SW_NODE_TRAINING || !memcmp(r->pk, n->id.pk, 32) ||
                !(l = live_get(n, r->pk)) || l->alive_ms || l->dead || l->left)
                continue;
            nwait++;
            if (!l->probe_busy && now - l->probe_ms >= SW_NODE_SCAN_MS)
                probe_start(n, l, r->ep);
            if (!l->ping_busy) {
                l->stage = r->stage;
                l->ping_ms = now;
                if (sw_transport_request(n->tr, r->ep, SW_MSG_PING, NULL, 0, NULL,
                                         (uint64_t)n->dead_ms / 3, 0, on_pong, l) == 0)
                    l->ping_busy = true;
            }
        }
        if (!nwait)
            break;
        if (now - n->scan_ms >= SW_NODE_SCAN_MS)
            scan(n);
        uv_run(n->loop, UV_RUN_ONCE);
    }
    /* nodes found dead meanwhile leave the table now, not at the next scan */
    {
        int k = 0;
        for (int i = 0; i < n->ndir; i++) {
            struct live *l = live_find(n, n->dir[i].pk);
            if (!l || !(l->dead || l->left))
                n->dir[k++] = n->dir[i];
        }
        n->ndir = k;
    }
    sw_log(SW_LOG_DEBUG, "stage auto: records checked in %llu ms (%d unconfirmed)",
           (unsigned long long)(sw_now_ms() - t0), nwait);
}

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
    auto_confirm(n);
    for (int i = 0; i < n->ndir; i++) {
        if (n->dir[i].state > SW_NODE_TRAINING || !memcmp(n->dir[i].pk, n->id.pk, 32) ||
            !auto_trusted(n, &n->dir[i]))
            continue;
        cnt[n->dir[i].stage]++;
        cap[n->dir[i].stage] += n->dir[i].cap;
    }
    s = sw_route_choose_stage(n->S, cnt, cap);
    {
        /* what the choice saw, stage by stage: "nodes/tokens-per-s" */
        char seen[1024];
        size_t off = 0;

        seen[0] = '\0';
        for (int i = 0; i < n->S && off < sizeof(seen); i++)
            off += (size_t)snprintf(seen + off, sizeof(seen) - off, "%s%d/%.0f", i ? " " : "",
                                    cnt[i], cap[i]);
        sw_log(SW_LOG_INFO, "stage auto: chose stage %d (%d nodes there, %.0f tokens/s; saw %s)",
               s, cnt[s], cap[s], seen);
    }
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
    /* CheckFree+: stages 0 and S-1 hold two visits of a swapped microbatch */
    if ((err = sw_stage_init(&n->st, n->k, &n->man.model, n->S, n->stage, n->B, n->T,
                             n->M * (n->plus && (n->stage == 0 || n->stage == n->S - 1) ? 2 : 1),
                             SW_STAGE_NO_INIT)) < 0)
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

/* ---- keeper: checkpoints of the whole run (swarmd keeper) ---- */

static void keeper_request(struct kstage *k);
static void keeper_commit(struct node *n);

/* The keeper's DHT record (ckptnet.h): its endpoint and newest committed step. */
static void
keeper_publish(struct node *n)
{
    uint64_t wall = (uint64_t)time(NULL) * 1000;
    int err;

    if (!n->dht)
        return;
    n->kpub_seq = SW_MAX(n->kpub_seq + 1, wall);
    n->kpub_ms = sw_now_ms();
    if ((err = sw_ckptnet_publish(n->dht, n->man.run_id, n->id.sk, n->ep, n->klast,
                                  n->kpub_seq)) < 0)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 10000, "cannot publish the keeper record: %s",
                           sw_strerror(err));
}

/* One stage of the checkpoint of step ktarget from its nodes' local saves. */
static void
keeper_pull(struct node *n, struct kstage *k)
{
    static char eps[SW_NODE_MAX_REPLICAS][EP];
    int ne = 0, err;

    for (int i = 0; i < n->ndir && ne < SW_NODE_MAX_REPLICAS; i++) {
        const struct sw_peer_rec *r = &n->dir[i];
        if (r->stage == k->stage && (r->state == SW_NODE_TRAINING || r->state == SW_NODE_DONE))
            snprintf(eps[ne++], EP, "%s", r->ep);
    }
    if (!ne && sw_now_ms() - n->kwait_log_ms > 5000) {
        n->kwait_log_ms = sw_now_ms();
        sw_log(SW_LOG_INFO, "checkpoint of step %llu: waiting for a node of stage %d",
               (unsigned long long)n->ktarget, k->stage);
    }
    err = sw_ckptnet_pull_tick(&k->pull, (const char (*)[EP])eps, ne);
    if (err == 0)
        return;
    if (err == 1) {
        int from = 0;
        for (int i = 0; i < k->pull.nsrc; i++)
            from += k->pull.src[i].state == SW_CKPTNET_SRC_OK;
        k->st = k->pull.st;
        k->done = true;
        sw_log(SW_LOG_INFO, "checkpoint step %llu: stage %d in from the local saves of %d "
               "node%s: %d tensors from their files, %d from memory, %llu bytes",
               (unsigned long long)n->ktarget, k->stage, from, from == 1 ? "" : "s",
               k->pull.n_disk, k->pull.n_mem, (unsigned long long)k->pull.bytes);
        for (int s = 0; s < n->S; s++)
            if (!n->kst[s].done)
                return;
        keeper_commit(n);
        return;
    }
    if (err == -SW_ENOTSUP) {
        if (!k->snap_logged)
            sw_log(SW_LOG_INFO, "checkpoint step %llu: the nodes of stage %d save nothing "
                   "locally (no --ckpt-dir, or [checkpoint] every 0): asking one for a "
                   "snapshot instead", (unsigned long long)n->ktarget, k->stage);
        k->snap_logged = true;
        k->snap_mode = true;
        return;
    }
    sw_log(SW_LOG_INFO, "checkpoint of step %llu missed: no node of stage %d holds it (%s); "
           "aiming later", (unsigned long long)n->ktarget, k->stage, sw_strerror(err));
    n->ktarget = 0;
}

static void
keeper_commit(struct node *n)
{
    struct sw_ckpt_stage_view *v = sw_calloc((size_t)n->S, sizeof(*v));
    struct sw_ckpt_run run;
    uint64_t bytes = 0;
    double pull_s = (sw_now_ms() - n->kt0_ms) / 1000.0, t0 = sw_now_s(), write_s;
    int err;

    if (!v) {
        sw_log(SW_LOG_ERROR, "checkpoint of step %llu: out of memory",
               (unsigned long long)n->ktarget);
        n->ktarget = 0;
        return;
    }
    memset(&run, 0, sizeof(run));
    run.step = (int)n->ktarget;
    run.S = n->S;
    run.seed = n->man.seed;
    run.micro = n->ktarget * (uint64_t)n->M;
    run.cfg = n->man.model;
    run.oc = n->man.optim;
    run.have_cursor = false;
    for (int s = 0; s < n->S; s++) {
        struct kstage *k = &n->kst[s];
        v[s].lay = &k->lay;
        v[s].params = k->buf;
        v[s].m = k->buf + k->numel;
        v[s].v = k->buf + 2 * k->numel;
        v[s].st = k->st;
        bytes += 3 * k->numel * sizeof(float);
    }
    err = sw_ckpt_save(n->kdir, &run, v, n->S, n->kkeep);
    write_s = sw_now_s() - t0;
    sw_free(v);
    if (err < 0) {
        sw_log(SW_LOG_ERROR, "checkpoint of step %llu into '%s' failed: %s; the older ones "
               "are intact", (unsigned long long)n->ktarget, n->kdir, sw_strerror(err));
    } else {
        n->klast = n->ktarget;
        n->nsaved++;
        sw_ckptnet_committed(n->cn);
        keeper_publish(n);
        sw_log(SW_LOG_INFO, "checkpoint step %llu: %d stages, %llu bytes, collected in %.0f ms, "
               "written in %.0f ms, into '%s' (keep %d)", (unsigned long long)n->ktarget, n->S,
               (unsigned long long)bytes, pull_s * 1000, write_s * 1000, n->kdir, n->kkeep);
        printf("checkpoint step:%llu bytes:%llu pull_ms:%.0f write_ms:%.0f\n",
               (unsigned long long)n->ktarget, (unsigned long long)bytes, pull_s * 1000,
               write_s * 1000);
        fflush(stdout);
    }
    n->ktarget = 0;
}

static void
on_kstate(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"err", "step", "t", "lr_mult", "norm", "normc",
                                       "numel", "off", "n", NULL};
    struct kstage *k = arg;
    struct node *n = k->n;
    msgpack_unpacked u;
    const msgpack_object *e;
    uint64_t step, tt, numel, off, cnt;
    double lrm, norm, normc;
    int64_t err;

    (void)t;
    k->busy = false;
    if (status == -SW_ECANCELED || n->closing)
        return;
    if (k->gen != n->kgen || !n->ktarget)
        return; /* an answer for an abandoned checkpoint */
    if (status < 0) {
        sw_log(SW_LOG_WARN, "checkpoint: stage %d from '%s' failed: %s; trying another node",
               k->stage, k->ep, sw_strerror(status));
        k->ep[0] = '\0';
        k->retry_ms = sw_now_ms() + 200;
        return;
    }
    if (!open_body(n, m, &u, keys))
        return;
    e = sw_proto_get(&u.data, "err");
    if (!e || (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER &&
               e->type != MSGPACK_OBJECT_NEGATIVE_INTEGER) ||
        sw_proto_get_u64(&u.data, "step", &step) < 0 ||
        sw_proto_get_u64(&u.data, "t", &tt) < 0 || sw_proto_get_f64(&u.data, "lr_mult", &lrm) < 0 ||
        sw_proto_get_f64(&u.data, "norm", &norm) < 0 ||
        sw_proto_get_f64(&u.data, "normc", &normc) < 0 ||
        sw_proto_get_u64(&u.data, "numel", &numel) < 0 ||
        sw_proto_get_u64(&u.data, "off", &off) < 0 || sw_proto_get_u64(&u.data, "n", &cnt) < 0) {
        drop_malformed(n, &u, m->hdr.type);
        k->ep[0] = '\0';
        k->retry_ms = sw_now_ms() + 200;
        return;
    }
    err = e->via.i64;
    msgpack_unpacked_destroy(&u);
    if (err != 0 && step > n->run_step && step <= (uint64_t)n->man.steps)
        n->run_step = step;
    if (err == -SW_EAGAIN) {
        /* armed: the node snapshots when it gets there */
        k->retry_ms = sw_now_ms() + 50;
        return;
    }
    if (err == -SW_ENOENT) {
        if (step > n->run_step)
            n->run_step = step;
        sw_log(SW_LOG_INFO, "checkpoint of step %llu missed: stage %d is at step %llu; aiming "
               "later", (unsigned long long)n->ktarget, k->stage, (unsigned long long)step);
        n->ktarget = 0;
        return;
    }
    if (err != 0 || step != n->ktarget || numel != k->numel || off != k->off ||
        cnt > numel - off || m->payload_len != cnt * sizeof(float) || (!cnt && off < numel)) {
        sw_log(SW_LOG_WARN, "checkpoint: stage %d from '%s' refused or malformed (%s); trying "
               "another node", k->stage, k->ep, err ? sw_strerror((int)err) : "bad piece");
        k->ep[0] = '\0';
        k->retry_ms = sw_now_ms() + 200;
        return;
    }
    memcpy(k->buf + (size_t)k->which * k->numel + off, m->payload, m->payload_len);
    k->st.t = (int)tt;
    k->st.lr_mult = (float)lrm;
    k->st.last_norm = (float)norm;
    k->st.last_norm_clipped = (float)normc;
    k->off += cnt;
    if (k->off == k->numel) {
        k->off = 0;
        if (++k->which == 3) {
            k->done = true;
            for (int s = 0; s < n->S; s++)
                if (!n->kst[s].done)
                    return;
            keeper_commit(n);
            return;
        }
    }
    keeper_request(k);
}

static void
keeper_request(struct kstage *k)
{
    static struct body b;
    struct node *n = k->n;

    pack_state_get(&b, k->stage, k->which, k->off, k->numel, (int64_t)n->ktarget);
    k->gen = n->kgen;
    if (sw_transport_request(n->tr, k->ep, SW_MSG_STATE_GET, b.b.data, b.b.len, NULL, 5000, 1,
                             on_kstate, k) == 0)
        k->busy = true;
    else
        k->retry_ms = sw_now_ms() + 200;
}

static int
keeper_init(struct node *n)
{
    if (!(n->kst = sw_calloc((size_t)n->S, sizeof(*n->kst))))
        return -SW_ENOMEM;
    for (int s = 0; s < n->S; s++) {
        struct kstage *k = &n->kst[s];
        int err;
        k->n = n;
        k->stage = s;
        if ((err = sw_stage_layout_init(&k->lay, &n->man.model, n->S, s)) < 0)
            return err;
        k->have_lay = true;
        k->numel = k->lay.numel;
        if (!(k->buf = sw_malloc_big(3 * k->numel * sizeof(float))))
            return -SW_ENOMEM;
    }
    {
        int err;
        if ((err = ckpt_serve_init(n)) < 0)
            return err;
    }
    n->klast = sw_ckptnet_newest(n->cn);
    if (n->klast)
        sw_log(SW_LOG_INFO, "keeper: '%s' holds step %llu already", n->kdir,
               (unsigned long long)n->klast);
    return 0;
}

static void
keeper_tick(struct node *n)
{
    uint64_t now = sw_now_ms(), steps = (uint64_t)n->man.steps;

    if (now - n->scan_ms >= SW_NODE_SCAN_MS)
        scan(n);
    if (now - n->kpub_ms >= SW_CKPTNET_PUBLISH_MS)
        keeper_publish(n);
    if (!n->dir_ok)
        return;
    if (!n->ktarget) {
        uint64_t every = (uint64_t)n->kevery, t;
        for (int s = 0; s < n->S; s++) {
            struct kstage *k = &n->kst[s];
            if (k->have_pull)
                sw_ckptnet_pull_abandon(&k->pull);
            if (k->busy || (k->have_pull && sw_ckptnet_pull_busy(&k->pull)))
                return; /* the abandoned checkpoint's requests first */
        }
        if (n->klast >= steps) {
            if (n->o.exit_at_end) {
                sw_log(SW_LOG_INFO, "the run's last step is saved; %d checkpoints written",
                       n->nsaved);
                n->stopping = true;
            }
            return;
        }
        /* the next multiple of every past both the last saved step and the
         * run's step (as far as scans and the nodes' answers tell) */
        t = (SW_MAX(n->run_step, n->klast) + every) / every * every;
        if (t > steps)
            t = steps;
        if (t <= n->klast)
            return;
        n->ktarget = t;
        n->kgen++;
        n->kt0_ms = now;
        for (int s = 0; s < n->S; s++) {
            struct kstage *k = &n->kst[s];
            k->done = false;
            k->which = 0;
            k->off = 0;
            k->retry_ms = 0;
            k->ep[0] = '\0';
            /* from the nodes' local saves first (ckptnet.h) */
            if (k->have_pull)
                sw_ckptnet_pull_release(&k->pull);
            k->have_pull = sw_ckptnet_pull_init(&k->pull, n->tr, &k->lay, s, k->buf, t) == 0;
            k->snap_mode = !k->have_pull;
        }
        sw_log(SW_LOG_DEBUG, "checkpoint: aiming at step %llu (run at %llu)",
               (unsigned long long)t, (unsigned long long)n->run_step);
    }
    for (int s = 0; s < n->S; s++) {
        struct kstage *k = &n->kst[s];
        if (!k->done && !k->snap_mode) {
            keeper_pull(n, k);
            if (!n->ktarget)
                return; /* committed, or missed */
            continue;
        }
        if (k->done || k->busy || now < k->retry_ms)
            continue;
        if (!k->ep[0]) {
            const struct sw_peer_rec *src = NULL;
            for (int i = 0; i < n->ndir; i++) {
                const struct sw_peer_rec *r = &n->dir[i];
                if (r->stage == s && (r->state == SW_NODE_TRAINING || r->state == SW_NODE_DONE) &&
                    (!src || r->step > src->step))
                    src = r;
            }
            if (!src) {
                if (now - n->kwait_log_ms > 5000) {
                    n->kwait_log_ms = now;
                    sw_log(SW_LOG_INFO, "checkpoint of step %llu: waiting for a node of stage %d",
                           (unsigned long long)n->ktarget, s);
                }
                continue;
            }
            snprintf(k->ep, EP, "%s", src->ep);
        }
        keeper_request(k);
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
    if (n->keeper) {
        if (n->stopping)
            shutdown_all(n);
        else
            keeper_tick(n);
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
    if (n->state == SW_NODE_TRAINING)
        n->trained = true;
    if (n->in_step && n->own_done && n->nrep > 1 && n->prep_pending)
        try_finish_exchange(n);
    if (now - n->pub_ms >= (uint64_t)n->pub_every || n->state != n->pub_state)
        announce(n);
    if (now - n->scan_ms >= SW_NODE_SCAN_MS)
        scan(n);
    sync_tick(n);
    check_lost(n);
    if (n->stopping)
        return;
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
        OUT("# HELP swarm_node_recoveries_total Times this node rebuilt or copied its stage "
            "into a running run.\n# TYPE swarm_node_recoveries_total counter\n");
        OUT("swarm_node_recoveries_total %llu\n", (unsigned long long)n->recoveries);
        if (n->rec_method[0]) {
            OUT("# HELP swarm_node_last_recovery_bytes State bytes the last recovery fetched.\n"
                "# TYPE swarm_node_last_recovery_bytes gauge\n");
            OUT("swarm_node_last_recovery_bytes{method=\"%s\",from=\"%s\"} %llu\n",
                n->rec_method, n->rec_from, (unsigned long long)n->rec_bytes);
            OUT("# HELP swarm_node_last_recovery_seconds Duration of the last recovery.\n"
                "# TYPE swarm_node_last_recovery_seconds gauge\n");
            OUT("swarm_node_last_recovery_seconds{method=\"%s\"} %.3f\n", n->rec_method,
                n->rec_s);
        }
        OUT("# HELP swarm_node_deaths_total Nodes this node declared dead.\n"
            "# TYPE swarm_node_deaths_total counter\n");
        OUT("swarm_node_deaths_total %llu\n", (unsigned long long)n->deaths);
        OUT("# HELP swarm_node_bans_total Peers banned for a bad message.\n"
            "# TYPE swarm_node_bans_total counter\n");
        OUT("swarm_node_bans_total %llu\n", (unsigned long long)n->bans_total);
        OUT("# HELP swarm_node_dropped_total Messages dropped by this node, by reason.\n"
            "# TYPE swarm_node_dropped_total counter\n");
        OUT("swarm_node_dropped_total{reason=\"banned\"} %llu\n",
            (unsigned long long)n->drop_banned);
        OUT("swarm_node_dropped_total{reason=\"unknown_sender\"} %llu\n",
            (unsigned long long)n->drop_unknown);
        OUT("swarm_node_dropped_total{reason=\"shape\"} %llu\n",
            (unsigned long long)n->drop_shape);
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
    n->keeper = !strcmp(n->o.mode, "keeper");
    n->dead_ms = n->o.dead_ms > 0 ? n->o.dead_ms : SW_NODE_DEAD_MS;
    n->pub_every = SW_MIN(SW_NODE_PUBLISH_MS, n->dead_ms / 3);
    n->ban_ms = n->o.ban_ms;
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
    n->plus = n->man.recovery_mode == SW_RECOVERY_CHECKFREE_PLUS;
    n->V = n->plus ? 2 : 1;
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
    } else if (n->keeper) {
        char rh[65];
        n->kevery = n->o.ckpt_every > 0 ? n->o.ckpt_every : n->man.ckpt_every;
        n->kkeep = n->o.ckpt_keep > 0 ? n->o.ckpt_keep : n->man.ckpt_keep;
        snprintf(n->kdir, sizeof(n->kdir), "%s", n->o.ckpt_dir[0] ? n->o.ckpt_dir : n->man.ckpt_dir);
        if (n->kevery <= 0 || !n->kdir[0]) {
            sw_log(SW_LOG_ERROR, "keeper: give --every N and --dir DIR, or [checkpoint] every "
                   "and dir in the manifest");
            return SW_EXIT_USAGE;
        }
        if ((err = keeper_init(n)) < 0) {
            sw_log(SW_LOG_ERROR, "keeper: %s", sw_strerror(err));
            return SW_EXIT_FAIL;
        }
        sw_log(SW_LOG_INFO, "keeper of run %s through %s: a checkpoint every %d steps into "
               "'%s' (keep %d)", sw_identity_hex(rh, n->man.run_id, 32), n->o.peer, n->kevery,
               n->kdir, n->kkeep);
        if ((err = dht_join(n)) != 0)
            return err;
    } else {
        char rh[65];
        if (sw_transport_on(n->tr, SW_MSG_PREPARE, on_prepare, n) < 0 ||
            sw_transport_on(n->tr, SW_MSG_GO, on_go, n) < 0 ||
            sw_transport_on(n->tr, SW_MSG_FWD, on_fwd, n) < 0 ||
            sw_transport_on(n->tr, SW_MSG_BWD, on_bwd, n) < 0 ||
            sw_transport_on(n->tr, SW_MSG_GRAD, on_grad, n) < 0 ||
            sw_transport_on(n->tr, SW_MSG_REPLICA, on_replica, n) < 0 ||
            sw_transport_on(n->tr, SW_MSG_STATE_GET, on_state_get, n) < 0)
            return SW_EXIT_FAIL;
        if (ckpt_serve_init(n) < 0)
            return SW_EXIT_FAIL;
        sw_log(SW_LOG_INFO, "joined run %s through %s; lobby %s, run transport %s",
               sw_identity_hex(rh, n->man.run_id, 32), n->o.peer, n->lobby_ep, n->ep);
        if ((err = dht_join(n)) != 0)
            return err;
        /* stage choice: read the stages (after a random delay for auto) */
        if (!strcmp(n->o.stage, "auto")) {
            uint64_t until = sw_now_ms() + 50 + randombytes_uniform(250);
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
