/*
 * join.c - swarmd join: the training node's role (node.h).  The protocol
 * is the trainer core's (trainer.h); this file is its I/O: the env over the
 * run transport and the DHT, port probes, the stage's math (compute.h), the
 * step lines on stdout, local checkpoints and --from-checkpoint (ckptnet.h),
 * and the node's metrics.
 *
 * The stage is set up (sw_compute_init) on a thread of its own: a big
 * stage's buffers take seconds to allocate and fault in (LLaMA-124M's
 * stage of 21M parameters: 1.7 s on a quiet machine, 5 s with 8 nodes on
 * 2 cores), and the loop goes on answering pings and DHT requests
 * meanwhile.  The thread writes only j->c, which nothing reads until
 * setup_done takes it on the loop; it wakes the loop through the compute
 * thread's uv_async.
 */
#include "sw.h"

#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ckpt.h"
#include "ckptnet.h"
#include "compute.h"
#include "node.h"
#include "trainer.h"

#define EP SW_PROTO_EP_MAX
/* A call into the training that held the loop this long is logged. */
#define SW_JOIN_HOLD_LOG_MS 1000

struct join {
    struct sw_node *n;
    struct sw_trainer t;
    struct sw_trainer_env env;
    struct sw_compute c;
    bool have_c, have_t;
    uv_async_t *computed;         /* the compute thread's "done" (compute.h) */
    uint64_t pub_seq;
    struct sw_ckptnet *cn;        /* local saves (--ckpt-dir) and the CKPT server */
    struct sw_ckptnet_finder kfind; /* --from-checkpoint keeper: the keeper's record */
    struct sw_ckptnet_pull *kpull; /* --from-checkpoint keeper: this stage being fetched */
    double t0;                    /* sw_now_s() at the start: the step lines' elapsed */
    /* the longest the trainer held the loop (a block of compute), in this
     * window of SW_STATUS_BLK_WINDOW_MS and the last: published as "blk" */
    uint64_t blk_win_ms;
    uint32_t blk_cur, blk_prev;
    uint32_t held_ms;             /* the longest since the last step line ("held_ms") */
    /* the stage's set-up on a thread (see above) */
    pthread_t su_thread;
    bool su_on;                   /* a set-up thread runs, or ended and is not joined */
    atomic_bool su_done;          /* it ended: su_err says how */
    int su_err, su_stage;
    int su_code;                  /* a failed set-up: the exit code */
};

/* The longest block of this window and the last (the record's "blk"). */
static uint32_t
blk_ms(const struct join *j)
{
    return SW_MAX(j->blk_cur, j->blk_prev);
}

/* The trainer ran from t0 (ms) until now: the loop was held that long, in
 * what ("tick", "computed", "failed request"), or for a message of type (what
 * names it: "message type", "response of message type"; type 0: what alone). */
static void
blk_note(struct join *j, uint64_t t0, const char *what, uint32_t type)
{
    uint64_t now = sw_now_ms(), d = now > t0 ? now - t0 : 0;
    char tn[16] = "";

    if (type)
        snprintf(tn, sizeof(tn), " %u", type);
    if (d >= SW_JOIN_HOLD_LOG_MS) /* peers wait for this node that much longer */
        SW_LOG_RATELIMITED(SW_LOG_INFO, 10000, "the training held the loop for %llu ms (%s%s, "
                           "phase %s)", (unsigned long long)d, what, tn,
                           sw_phase_name(j->t.phase));

    if (now - j->blk_win_ms >= SW_STATUS_BLK_WINDOW_MS) {
        j->blk_prev = j->blk_cur;
        j->blk_cur = 0;
        j->blk_win_ms = now;
    }
    j->blk_cur = (uint32_t)SW_MAX((uint64_t)j->blk_cur, SW_MIN(d, (uint64_t)SW_STATUS_BLK_MAX_MS));
    j->held_ms = (uint32_t)SW_MAX((uint64_t)j->held_ms, SW_MIN(d, (uint64_t)UINT32_MAX));
}

static struct join *
self(struct sw_node *n)
{
    return n->self;
}

/* ---- the env ---- */

static void
on_response(void *arg, uint64_t tag, int status, const struct sw_transport_msg *m)
{
    struct join *j = arg;
    uint64_t t0 = sw_now_ms();

    sw_trainer_response(&j->t, t0, tag, status, m);
    blk_note(j, t0, m ? "response of message type" : "failed request", m ? m->hdr.type : 0);
}

static int
env_request(void *arg, const char *ep, uint32_t type, const void *body, size_t len,
            uint64_t timeout_ms, int retries, uint64_t tag)
{
    struct join *j = arg;

    return sw_node_request(j->n, ep, type, body, len, timeout_ms, retries, on_response, j, tag);
}

static int
env_send(void *arg, const char *ep, uint32_t type, const void *body, size_t len,
         const struct sw_payload *p)
{
    struct join *j = arg;

    return sw_transport_send(j->n->tr, ep, type, body, len, p);
}

static int
env_reply(void *arg, const struct sw_transport_route *r, uint32_t type, const void *body,
          size_t len, const struct sw_payload *p)
{
    struct join *j = arg;

    return sw_transport_reply(j->n->tr, r, type, body, len, p);
}

static void
env_drop(void *arg, int reason)
{
    struct join *j = arg;

    sw_wire_count_drop(sw_transport_wire(j->n->tr), reason);
}

static void
on_put(void *arg, int status, unsigned n_stored, const struct sw_dht_lookup_info *info)
{
    struct join *j = arg;

    (void)info;
    if (status == -SW_ECANCELED)
        return;
    if (status < 0)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "cannot publish the stage record: %s",
                           sw_strerror(status));
    else
        sw_log(SW_LOG_DEBUG, "stage record stored on %u nodes", n_stored);
    sw_trainer_put_done(&j->t);
    sw_node_wake(j->n, 0);
}

/* This node's stage record (state given, ttl_s), signed, into the DHT. */
static void
env_publish(void *arg, const struct sw_peer_rec *me, uint32_t ttl_s, uint64_t step_age_ms)
{
    struct join *j = arg;
    static uint8_t val[1024 + SW_CERT_MAX];
    struct sw_peer_rec rec = *me;
    struct sw_wire_buf b;
    msgpack_packer pk;
    struct sw_dht_record r;
    uint64_t wall = (uint64_t)time(NULL) * 1000;
    int err;

    if (!j->n->dht)
        return;
    sw_wire_buf_init(&b, val, sizeof(val));
    sw_wire_buf_packer(&pk, &b);
    /* the certificate goes along: a reader that got the record from a third
     * node checks its publisher with it (node.h, Admission) */
    rec.cert = j->n->cert_len ? j->n->cert : NULL;
    rec.cert_len = j->n->cert_len;
    /* the reachability verdict, once the check ended (reach.h) */
    rec.reach = j->n->reach.done ? j->n->reach.verdict + 1 : 0;
    /* a relay for outbound-only nodes: only one they can dial */
    rec.relay = j->n->o.relay && !j->n->outb.on;
    /* how long its loop may not answer (live.h, Busy nodes) */
    rec.blk_ms = blk_ms(j);
    sw_status_rec_pack(&pk, &rec, ttl_s, step_age_ms);
    if (b.overflow)
        return;
    /* a higher seq replaces the last record, also across restarts with the same key */
    j->pub_seq = SW_MAX(j->pub_seq + 1, wall);
    memset(&r, 0, sizeof(r));
    sw_status_stage_key(r.key, j->n->man.run_id, me->stage);
    r.seq = j->pub_seq;
    r.ttl_s = ttl_s;
    r.val = val;
    r.val_len = b.len;
    sw_dht_record_sign(&r, j->n->id.sk);
    if ((err = sw_dhtnode_put(j->n->dht, &r, on_put, j)) < 0)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "cannot publish the stage record: %s",
                           sw_strerror(err));
}

static int
env_scan(void *arg)
{
    struct join *j = arg;

    return sw_node_scan(j->n);
}

static void
on_probed(void *arg, const uint8_t *pk, int res)
{
    struct join *j = arg;

    sw_trainer_probed(&j->t, pk, res == SW_PROBE_REFUSED);
    if (res == SW_PROBE_CONNECTED)
        sw_trainer_probe_connected(&j->t, pk, sw_now_ms());
    sw_node_wake(j->n, 0);
}

static void
env_probe(void *arg, const uint8_t *pk, const char *ep, uint64_t timeout_ms)
{
    struct join *j = arg;

    sw_node_probe(j->n, pk, ep, timeout_ms, on_probed, j);
}

/* After an update: this node's share of the stage into --ckpt-dir, when due.
 * Blocks for the host copy only; a worker writes it. */
static void
local_save(struct join *j, const struct sw_step_report *r)
{
    size_t numel = j->c.st.lay.numel;
    uint64_t step = r->step + 1; /* steps completed */
    struct sw_ckpt_stage_state st;
    struct sw_stage_scalars sc;
    double t0 = sw_now_s();
    float *buf;
    int err = 0;

    if (!j->cn || !sw_ckptnet_due(j->cn, step))
        return;
    if (!(buf = sw_ckptnet_save_begin(j->cn, &j->c.st.lay, j->t.stage, step, &err))) {
        if (err != -SW_EAGAIN)
            sw_log(SW_LOG_WARN, "local checkpoint of step %llu: %s", (unsigned long long)step,
                   sw_strerror(err));
        return;
    }
    for (int w = 0; w < 3 && err >= 0; w++)
        err = sw_compute_ops.read(&j->c, w, 0, numel, buf + (size_t)w * numel);
    sw_compute_ops.scalars(&j->c, &sc);
    st.t = sc.t;
    st.lr_mult = sc.lr_mult;
    st.last_norm = sc.last_norm;
    st.last_norm_clipped = sc.last_norm_clipped;
    if (err >= 0)
        err = sw_ckptnet_save_queue(j->cn, &st, r->nrep, r->myidx, sw_now_s() - t0);
    if (err < 0)
        sw_log(SW_LOG_WARN, "local checkpoint of step %llu: %s", (unsigned long long)step,
               sw_strerror(err));
}

/* V as a JSON number of DIGITS significant digits (17: a double's full
 * precision, 9: a float's); null when it is not finite. */
static const char *
json_num(char *buf, size_t len, double v, int digits)
{
    if (isfinite(v))
        snprintf(buf, len, "%.*g", digits, v);
    else
        snprintf(buf, len, "null");
    return buf;
}

/* The step's line on stdout (swarmd(1), OUTPUT), then the local save.
 * text:  step=280 loss=2.0710 lr=3.34e-04 norm=0.293 tok/s=9333 elapsed=83.2s
 *        step=280 stage=1 norm=0.293 tok/s=9333 elapsed=83.2s  (not the last stage)
 * json:  {"event":"step","step":280,"stage":3,"loss":2.071029...,"lr":...,"norm":...,
 *         "tok_s":9333,"elapsed_s":83.2,"hash":"67c2b1ec6339e099","step_ms":110,
 *         "update_ms":6,"compute_ms":84,"held_ms":3}  ("loss": last stage; compute_ms
 *         -1 on a node's first step; held_ms: the longest the loop was held since
 *         the step before)
 * The parameter hash is in the json line and, in text, at debug level. */
static void
env_stepped(void *arg, const struct sw_step_report *r)
{
    struct join *j = arg;
    unsigned long long step = r->step;
    bool last = r->loss >= 0 || !isfinite(r->loss); /* loss is -1 on the other stages */
    double el = sw_now_s() - j->t0;
    char f[512], loss[48] = "", num[40], lr[40], norm[40];

    if (sw_log_format == SW_LOG_JSON) {
        if (last)
            snprintf(loss, sizeof(loss), "\"loss\":%s,", json_num(num, sizeof(num), r->loss, 17));
        snprintf(f, sizeof(f), "\"step\":%llu,\"stage\":%d,%s\"lr\":%s,\"norm\":%s,"
                 "\"tok_s\":%.0f,\"elapsed_s\":%.3f,\"hash\":\"%s\",\"step_ms\":%.0f,"
                 "\"update_ms\":%.0f,\"compute_ms\":%.0f,\"held_ms\":%u", step, r->stage, loss,
                 json_num(lr, sizeof(lr), r->lr, 9), json_num(norm, sizeof(norm), r->norm, 17),
                 r->tok_s, el, r->hash, r->step_ms, r->update_ms, r->compute_ms, j->held_ms);
        sw_log_out("step", f, "step=%llu", step);
    } else if (last) {
        sw_log_out("step", NULL, "step=%llu loss=%.4f lr=%.2e norm=%.3f tok/s=%.0f elapsed=%.1fs",
                   step, r->loss, r->lr, r->norm, r->tok_s, el);
    } else {
        sw_log_out("step", NULL, "step=%llu stage=%d norm=%.3f tok/s=%.0f elapsed=%.1fs", step,
                   r->stage, r->norm, r->tok_s, el);
    }
    j->held_ms = 0;
    sw_log(SW_LOG_DEBUG, "step=%llu hash=%s", step, r->hash);
    local_save(j, r);
}

/* ---- --from-checkpoint ---- */

/* --from-checkpoint keeper, or a folder that does not exist on this
 * machine: the stage comes from the keeper the DHT names. */
static bool
use_keeper(const struct join *j)
{
    struct stat sb;
    const char *f = j->n->o.from_ckpt;

    return !strcmp(f, "keeper") || (f[0] && stat(f, &sb));
}

static int
env_ckpt_newest(void *arg, char *where, size_t len)
{
    struct join *j = arg;
    struct sw_ckpt_entry *e = NULL;
    int cnt = 0, best = -1;

    if (use_keeper(j)) {
        sw_ckptnet_find(&j->kfind, j->n->dht, j->n->man.run_id, 1000);
        snprintf(where, len, "the keeper at %s", j->kfind.ep);
        if (j->kfind.found && j->kfind.step > 0)
            return (int)j->kfind.step;
        return j->kfind.lookups ? -1 : -2;
    }
    snprintf(where, len, "'%s'", j->n->o.from_ckpt);
    if (sw_ckpt_list(j->n->o.from_ckpt, false, &e, &cnt) < 0)
        return -1;
    for (int i = 0; i < cnt; i++)
        if (e[i].status == 0 && e[i].step > best)
            best = e[i].step;
    sw_free(e);
    return best;
}

static void
scalars_of(struct sw_stage_scalars *sc, const struct sw_ckpt_stage_state *st)
{
    sc->t = st->t;
    sc->lr_mult = st->lr_mult;
    sc->last_norm = st->last_norm;
    sc->last_norm_clipped = st->last_norm_clipped;
}

static void
kpull_free(struct join *j)
{
    if (j->kpull)
        sw_ckptnet_pull_release(j->kpull);
    sw_free(j->kpull);
    j->kpull = NULL;
}

/* The keeper has none (yet): busy while it may be starting, else none/error. */
static int
keeper_none(struct join *j, uint64_t run_step)
{
    if (j->kfind.lookups < 4)
        return SW_RESTORE_BUSY; /* a keeper that just started may not be published yet */
    if (run_step == 0) {
        sw_log(SW_LOG_INFO, "--from-checkpoint: %s and the run has not started: the run seed's "
               "initialisation", j->kfind.found ? "the keeper holds no checkpoint yet"
                                                : "no keeper found");
        return SW_RESTORE_NONE;
    }
    sw_log(SW_LOG_ERROR, "--from-checkpoint: %s", j->kfind.found ? "the keeper holds no "
           "checkpoint" : "no keeper found in the DHT");
    return -SW_ENOENT;
}

/* The stage's tensors from the keeper the DHT names, over several ticks. */
static int
restore_keeper(struct join *j, int stage, uint64_t run_step, struct sw_restore *r)
{
    int err;

    if (!j->kpull) {
        sw_ckptnet_find(&j->kfind, j->n->dht, j->n->man.run_id, 1000);
        if (!j->kfind.found || !j->kfind.step)
            return keeper_none(j, run_step);
        if (!(j->kpull = sw_calloc(1, sizeof(*j->kpull))) ||
            sw_ckptnet_pull_init(j->kpull, j->n->tr, &j->c.st.lay, stage, r->host, 0) < 0) {
            sw_free(j->kpull);
            j->kpull = NULL;
            return -SW_ENOMEM;
        }
        sw_log(SW_LOG_INFO, "--from-checkpoint: fetching stage %d from the keeper at %s "
               "(newest checkpoint: step %llu)", stage, j->kfind.ep,
               (unsigned long long)j->kfind.step);
    }
    if ((err = sw_ckptnet_pull_tick(j->kpull, (const char (*)[EP])j->kfind.ep, 1)) == 0)
        return SW_RESTORE_BUSY;
    if (err == 1) {
        sw_log(SW_LOG_INFO, "--from-checkpoint: stage %d of step %llu: %llu bytes from %s in "
               "%llu ms", stage, (unsigned long long)j->kpull->step,
               (unsigned long long)j->kpull->bytes, j->kfind.ep,
               (unsigned long long)(sw_now_ms() - j->kpull->t0_ms));
        snprintf(r->from, sizeof(r->from), "keeper %s", j->kfind.ep);
        scalars_of(&r->sc, &j->kpull->st);
        r->step = j->kpull->step;
        r->saved_S = j->kpull->saved_S;
        err = SW_RESTORE_DONE;
    } else {
        sw_log(SW_LOG_ERROR, "--from-checkpoint: cannot fetch stage %d from the keeper at %s: %s",
               stage, j->kfind.ep, sw_strerror(err));
    }
    kpull_free(j);
    return err;
}

/*
 * swarmd join --from-checkpoint DIR: this stage's tensors (whatever the stage
 * count at save time: read by global name), AdamW state and step from the
 * newest clean checkpoint of DIR; --from-checkpoint keeper (or a DIR that
 * does not exist here): from the keeper, over the network.
 */
static int
env_restore(void *arg, int stage, uint64_t run_step, struct sw_restore *r)
{
    struct join *j = arg;
    const struct sw_manifest *man = &j->n->man;
    size_t numel = j->c.st.lay.numel;
    struct sw_ckpt_stage_state st;
    struct sw_ckpt ck;
    int err;

    if (use_keeper(j))
        return restore_keeper(j, stage, run_step, r);
    if ((err = sw_ckpt_open(&ck, j->n->o.from_ckpt, -1)) < 0) {
        if (err == -SW_ENOENT && run_step == 0) {
            sw_log(SW_LOG_INFO, "--from-checkpoint: no checkpoint in '%s' yet and the run has "
                   "not started: the run seed's initialisation", j->n->o.from_ckpt);
            return SW_RESTORE_NONE;
        }
        sw_log(SW_LOG_ERROR, "--from-checkpoint: no clean checkpoint in '%s': %s",
               j->n->o.from_ckpt, sw_strerror(err));
        return err;
    }
    if (!sw_model_same_tensors(&ck.run.cfg, &man->model)) {
        sw_log(SW_LOG_ERROR, "--from-checkpoint: '%s' holds another model than the manifest's",
               ck.path);
        err = -SW_ECONFIG;
    } else if (ck.run.seed != man->seed) {
        sw_log(SW_LOG_WARN, "--from-checkpoint: '%s' was saved by a run of seed %llu, this "
               "run's is %llu", ck.path, (unsigned long long)ck.run.seed,
               (unsigned long long)man->seed);
    }
    if (!err && (err = sw_ckpt_read_stage(&ck, &j->c.st.lay, r->host, r->host + numel,
                                          r->host + 2 * numel, &st)) < 0)
        sw_log(SW_LOG_ERROR, "--from-checkpoint: cannot load the state: %s", sw_strerror(err));
    if (!err) {
        snprintf(r->from, sizeof(r->from), "'%.*s'", (int)sizeof(r->from) - 3, ck.path);
        scalars_of(&r->sc, &st);
        r->step = (uint64_t)ck.run.step;
        r->saved_S = ck.run.S;
        err = SW_RESTORE_DONE;
    }
    sw_ckpt_close(&ck);
    return err;
}

/* ---- the role ---- */

static void setup_done(struct join *j);

/* The compute thread finished a forward or backward (compute.h), or the
 * set-up thread the stage's set-up. */
static void
on_computed(uv_async_t *h)
{
    struct join *j = h->data;
    uint64_t t0 = sw_now_ms();
    float loss;
    int err;

    if (j->su_on && atomic_load(&j->su_done)) {
        setup_done(j);
        sw_node_wake(j->n, 0);
    }
    if (!j->have_c || !sw_compute_take(&j->c, &err, &loss))
        return; /* cancelled, or a wake-up coalesced with the one before */
    sw_trainer_computed(&j->t, t0, err, loss);
    blk_note(j, t0, "computed", 0);
    sw_node_wake(j->n, 0);
}

/* On the compute thread: wakes the loop (uv_async_send is thread-safe). */
static void
compute_done(void *arg)
{
    uv_async_send(arg);
}

static void
on_computed_closed(uv_handle_t *h)
{
    sw_free(h);
}

static void
on_msg(struct sw_transport *tr, const struct sw_transport_msg *m, void *arg)
{
    struct join *j = arg;

    (void)tr;
    uint64_t t0 = sw_now_ms();

    if (j->n->phase != SW_NODE_RUN)
        return;
    sw_trainer_input(&j->t, t0, m);
    blk_note(j, t0, "message type", m->hdr.type);
    sw_node_wake(j->n, 0);
}

static int
parse_stage(struct sw_node *n, int *stage)
{
    char *end;
    long s;

    if (!strcmp(n->o.stage, "auto")) {
        *stage = -1;
        return 0;
    }
    s = strtol(n->o.stage, &end, 10);
    if (*end || end == n->o.stage || s < 0 || s >= n->man.stages) {
        sw_log(SW_LOG_ERROR, "--stage: want auto or 0..%d, got '%s'", n->man.stages - 1,
               n->o.stage);
        return -SW_ECONFIG;
    }
    *stage = (int)s;
    return 0;
}

static int
join_start(struct sw_node *n)
{
    static const uint32_t types[] = {SW_MSG_PREPARE, SW_MSG_GO,      SW_MSG_FWD,
                                     SW_MSG_BWD,     SW_MSG_GRAD,    SW_MSG_GRAD_ASK,
                                     SW_MSG_REPLICA, SW_MSG_STATE_GET};
    struct join *j = sw_calloc(1, sizeof(*j));
    struct sw_trainer_opts to;
    uint64_t rng;
    char rh[65];

    if (!j)
        return SW_EXIT_FAIL;
    n->self = j;
    j->n = n;
    j->t0 = sw_now_s();
    if (n->have_admit) { /* a stranger's keeper record is passed over */
        j->kfind.admit = sw_node_key_admitted;
        j->kfind.admit_arg = n;
    }
    memset(&to, 0, sizeof(to));
    if (parse_stage(n, &to.stage) < 0)
        return SW_EXIT_USAGE;
    to.movable = to.stage < 0;
    to.dead_ms = n->o.dead_ms;
    to.ban_ms = n->o.ban_ms;
    to.linger_ms = n->o.linger_ms;
    to.exit_at_end = n->o.exit_at_end != 0;
    to.from_ckpt = n->o.from_ckpt[0] != '\0';
    randombytes_buf(&rng, sizeof(rng));
    to.rng = rng;
    j->env = (struct sw_trainer_env){j,         env_send,    env_request,     env_reply,
                                     env_drop,  env_publish, env_scan,        env_probe,
                                     env_stepped, env_ckpt_newest, env_restore};
    if (sw_trainer_init(&j->t, n->id.pk, n->ep, &n->man, &to, &j->env, sw_now_ms()) < 0)
        return SW_EXIT_FAIL;
    j->have_t = true;
    if (!(j->computed = sw_calloc(1, sizeof(*j->computed))))
        return SW_EXIT_FAIL;
    if (uv_async_init(n->loop, j->computed, on_computed) < 0) {
        sw_free(j->computed);
        j->computed = NULL;
        return SW_EXIT_FAIL;
    }
    j->computed->data = j;
    uv_unref((uv_handle_t *)j->computed); /* the loop ends without it */
    sw_outbound_init(&n->outb, n->tr, n->id.pk, n->boot_ep);
    for (size_t i = 0; i < SW_ARRAY_SIZE(types); i++)
        if (sw_transport_on(n->tr, types[i], on_msg, j) < 0)
            return SW_EXIT_FAIL;
    if (!(j->cn = sw_calloc(1, sizeof(*j->cn))) ||
        sw_ckptnet_init(j->cn, n->loop, n->tr, &n->man.model, &n->man.optim, n->man.seed,
                        n->man.stages, n->man.micro, n->man.steps, n->man.ckpt_every,
                        n->man.ckpt_keep, false, n->o.ckpt_dir, &j->t.step) < 0)
        return SW_EXIT_FAIL;
    if (n->o.ckpt_dir[0])
        sw_log(SW_LOG_INFO, n->man.ckpt_every > 0 ? "local checkpoints every %d steps into '%s' "
               "(keep %d)" : "local checkpoints off: the manifest's [checkpoint] every is %d "
               "('%s', keep %d)", n->man.ckpt_every, n->o.ckpt_dir, n->man.ckpt_keep);
    sw_log(SW_LOG_INFO, "joined run %s through %s; lobby %s, run transport %s",
           sw_identity_hex(rh, n->man.run_id, 32), n->o.peer, n->lobby_ep, n->ep);
    return 0;
}

/* The set-up thread: j->c and su_err only. */
static void *
setup_main(void *arg)
{
    struct join *j = arg;

    j->su_err = sw_compute_init(&j->c, &j->n->man, j->su_stage, j->n->o.device,
                                j->n->o.threads, j->n->o.data);
    atomic_store(&j->su_done, true);
    if (j->computed)
        uv_async_send(j->computed);
    return NULL;
}

/* The set-up ended (on the loop): the stage is the trainer's, and SYNC
 * starts; or the trainer went on meanwhile (a signal, another stage) and
 * the stage is released (the next tick sets up the one it wants now). */
static void
setup_done(struct join *j)
{
    if (j->su_on) {
        pthread_join(j->su_thread, NULL);
        j->su_on = false;
    }
    if (j->su_err < 0) {
        sw_log(SW_LOG_ERROR, "cannot set up stage %d: %s", j->su_stage, sw_strerror(j->su_err));
        j->su_code = j->su_err == -SW_ECONFIG ? SW_EXIT_USAGE : SW_EXIT_FAIL;
        return;
    }
    j->have_c = true;
    if (j->n->o.threads > 0) /* OpenMP's count is per thread: the loop's too */
        j->c.k->set_threads(j->n->o.threads);
    if (!sw_trainer_wants_stage(&j->t) || j->t.stage != j->su_stage) {
        sw_compute_release(&j->c);
        j->have_c = false;
        return;
    }
    /* forwards and backwards on the stage's own thread: the loop answers
     * pings and publishes the record while a block computes */
    if (sw_compute_apart(&j->c, compute_done, j->computed) < 0)
        sw_log(SW_LOG_WARN, "computing on the loop: pings wait while a block computes");
    if (sw_trainer_set_stage(&j->t, &sw_compute_ops, &j->c, j->c.st.lay.numel) < 0)
        j->su_code = SW_EXIT_FAIL;
}

/* The stage is chosen: its math is set up apart (setup_done follows). */
static void
setup_start(struct join *j)
{
    int err;

    if (j->have_c) { /* a move (trainer.h, rebalancing): the old stage goes first */
        sw_compute_release(&j->c);
        j->have_c = false;
    }
    j->su_stage = j->t.stage;
    atomic_store(&j->su_done, false);
    if ((err = pthread_create(&j->su_thread, NULL, setup_main, j)) == 0) {
        j->su_on = true;
        return;
    }
    sw_log(SW_LOG_WARN, "no set-up thread (%s): setting stage %d up on the loop", strerror(err),
           j->su_stage);
    setup_main(j);
    setup_done(j);
}

/* The verdict says nobody can dial this node: it serves over the
 * connections it opens (reach.h, Outbound-only mode), its record names its
 * key's connection, and the DHT knows it as a client only. */
static void
outbound_begin(struct join *j, uint64_t now)
{
    struct sw_node *n = j->n;

    sw_outbound_start(&n->outb, now);
    sw_trainer_set_ep(&j->t, n->outb.ep);
    if (n->dht && sw_dht_set_ep(sw_dhtnode_dht(n->dht), "") < 0)
        sw_log(SW_LOG_WARN, "cannot make the DHT contact endpointless");
}

static uint64_t
join_tick(struct sw_node *n, uint64_t now)
{
    struct join *j = self(n);
    uint64_t wake, w;

    if (!n->outb.on && n->reach.done && n->reach.verdict == SW_REACH_UNREACHABLE)
        outbound_begin(j, now);
    wake = sw_trainer_tick(&j->t, now);
    blk_note(j, now, "tick", 0);
    if ((w = sw_outbound_tick(&n->outb, now)) != UINT64_MAX)
        wake = SW_MIN(wake, now + w);
    if (n->outb.ep_changed) { /* a relay proved or given up (reach.h, Relays) */
        n->outb.ep_changed = false;
        sw_trainer_set_ep(&j->t, n->outb.ep);
        wake = now;
    }

    /* the stage's set-up takes the cores for seconds with a big stage: not
     * while the reachability check waits for a dial-back, which would then
     * time out and call a reachable node unreachable */
    if (sw_trainer_wants_stage(&j->t) && !j->su_on) {
        if (n->reach.started && !n->reach.done) {
            wake = SW_MIN(wake, now + 50);
        } else {
            setup_start(j);
            if (!j->su_on) /* set up here: SYNC starts */
                wake = now;
        }
    }
    if (j->su_code) {
        n->exit_code = j->su_code;
        return SW_NODE_DONE;
    }
    if (j->t.phase == SW_PHASE_CLOSED) {
        n->exit_code = j->t.exit_code;
        return SW_NODE_DONE;
    }
    return wake;
}

static void
join_signal(struct sw_node *n, int sig)
{
    (void)sig;
    sw_trainer_stop(&self(n)->t, sw_now_ms());
}

static void
join_scanned(struct sw_node *n, int status, const struct sw_peer_rec *recs, int cnt,
             uint64_t max_step)
{
    struct join *j = self(n);

    if (status >= 0 && recs)
        sw_outbound_targets(&n->outb, sw_now_ms(), recs, cnt);
    sw_trainer_scanned(&j->t, sw_now_ms(), status, recs, cnt,
                       (const uint8_t(*)[32])n->scan.gone, n->scan.ngone, max_step);
    sw_node_wake(n, 0);
}

static int
join_metrics(struct sw_node *n, char *buf, size_t len, size_t *off)
{
    const struct sw_trainer *t = &self(n)->t;
    const struct sw_live *lv = &t->live;

#define OUT(...) SW_NODE_METRIC(buf, len, off, __VA_ARGS__)
    OUT("# HELP swarm_node_stage Stage this node serves.\n# TYPE swarm_node_stage gauge\n"
        "swarm_node_stage %d\n", t->stage);
    OUT("# HELP swarm_node_step Steps this node completed.\n# TYPE swarm_node_step counter\n"
        "swarm_node_step %llu\n", (unsigned long long)t->step);
    OUT("# HELP swarm_node_tokens_per_second Tokens per second through this node.\n"
        "# TYPE swarm_node_tokens_per_second gauge\nswarm_node_tokens_per_second %.1f\n", t->tps);
    OUT("# HELP swarm_node_capacity_tokens_per_second Tokens per second of compute time.\n"
        "# TYPE swarm_node_capacity_tokens_per_second gauge\n"
        "swarm_node_capacity_tokens_per_second %.1f\n", t->cap);
    OUT("# HELP swarm_node_loop_block_ms The longest the training held this node's loop "
        "in the last 30 to 60 s (its record's blk: peers wait that much longer for it).\n"
        "# TYPE swarm_node_loop_block_ms gauge\nswarm_node_loop_block_ms %u\n",
        (unsigned)blk_ms(self(n)));
    OUT("# HELP swarm_node_tokens_total Tokens through this node.\n"
        "# TYPE swarm_node_tokens_total counter\nswarm_node_tokens_total %llu\n",
        (unsigned long long)t->tokens_total);
    OUT("# HELP swarm_node_grad_norm Pre-clip gradient norm of the last step.\n"
        "# TYPE swarm_node_grad_norm gauge\nswarm_node_grad_norm %.6f\n", t->last_norm);
    if (t->stage == t->S - 1)
        OUT("# HELP swarm_node_loss Training loss of the last step.\n"
            "# TYPE swarm_node_loss gauge\nswarm_node_loss %.6f\n", t->last_loss);
    OUT("# HELP swarm_node_param_mismatches_total Replica hash mismatches seen.\n"
        "# TYPE swarm_node_param_mismatches_total counter\n"
        "swarm_node_param_mismatches_total %llu\n", (unsigned long long)t->mismatches);
    OUT("# HELP swarm_node_recoveries_total Times this node rebuilt or copied its stage "
        "into a running run.\n# TYPE swarm_node_recoveries_total counter\n"
        "swarm_node_recoveries_total %llu\n", (unsigned long long)t->recoveries);
    OUT("# HELP swarm_node_moves_total Times this node left its stage for the bottleneck "
        "stage (rebalancing).\n# TYPE swarm_node_moves_total counter\n"
        "swarm_node_moves_total %llu\n", (unsigned long long)t->moves);
    if (t->balance >= 0)
        OUT("# HELP swarm_node_balance The swarm's balance as this node computed it last: "
            "the bottleneck stage's capacity over the mean.\n# TYPE swarm_node_balance gauge\n"
            "swarm_node_balance %.4f\n", t->balance);
    if (t->rec_method[0]) {
        OUT("# HELP swarm_node_last_recovery_bytes State bytes the last recovery fetched.\n"
            "# TYPE swarm_node_last_recovery_bytes gauge\n"
            "swarm_node_last_recovery_bytes{method=\"%s\",from=\"%s\"} %llu\n", t->rec_method,
            t->rec_from, (unsigned long long)t->rec_bytes);
        OUT("# HELP swarm_node_last_recovery_seconds Duration of the last recovery.\n"
            "# TYPE swarm_node_last_recovery_seconds gauge\n"
            "swarm_node_last_recovery_seconds{method=\"%s\"} %.3f\n", t->rec_method, t->rec_s);
    }
    OUT("# HELP swarm_node_deaths_total Nodes this node declared dead.\n"
        "# TYPE swarm_node_deaths_total counter\nswarm_node_deaths_total %llu\n",
        (unsigned long long)lv->deaths);
    OUT("# HELP swarm_node_bans_total Peers banned for a bad message.\n"
        "# TYPE swarm_node_bans_total counter\nswarm_node_bans_total %llu\n",
        (unsigned long long)lv->bans_total);
    OUT("# HELP swarm_node_dropped_total Messages dropped by this node, by reason.\n"
        "# TYPE swarm_node_dropped_total counter\n"
        "swarm_node_dropped_total{reason=\"banned\"} %llu\n"
        "swarm_node_dropped_total{reason=\"unknown_sender\"} %llu\n"
        "swarm_node_dropped_total{reason=\"shape\"} %llu\n"
        "swarm_node_dropped_total{reason=\"resend_gap\"} %llu\n"
        "swarm_node_dropped_total{reason=\"relay\"} %llu\n",
        (unsigned long long)t->drop_banned, (unsigned long long)t->drop_unknown,
        (unsigned long long)t->drop_shape, (unsigned long long)t->st.resends_dropped,
        (unsigned long long)t->st.relay_drops);
    OUT("# HELP swarm_node_relays_total Gone replicas' partial gradients relayed, by way "
        "(asked: asks this node sent; sent, taken: whole partials).\n"
        "# TYPE swarm_node_relays_total counter\n"
        "swarm_node_relays_total{way=\"asked\"} %llu\n"
        "swarm_node_relays_total{way=\"sent\"} %llu\n"
        "swarm_node_relays_total{way=\"taken\"} %llu\n",
        (unsigned long long)t->st.relays_asked, (unsigned long long)t->st.relays_sent,
        (unsigned long long)t->st.relays_taken);
    OUT("# HELP swarm_lead_silent_skipped_total Nodes a step was planned without, as the leader: "
        "their last prepare had gone unanswered (lead.h, Silent nodes).\n"
        "# TYPE swarm_lead_silent_skipped_total counter\nswarm_lead_silent_skipped_total %llu\n"
        "# HELP swarm_lead_passed_over_total Stage-0 nodes this node passed over as leader: they "
        "sent no prepare.\n# TYPE swarm_lead_passed_over_total counter\n"
        "swarm_lead_passed_over_total %llu\n"
        "# HELP swarm_lead_copy_waits_total Rounds this node, as the leader, held for a node "
        "copying its stage's state (lead.h, Copies).\n"
        "# TYPE swarm_lead_copy_waits_total counter\nswarm_lead_copy_waits_total %llu\n"
        "# HELP swarm_lead_busy_waits_total Rounds this node, as the leader, held for replicas "
        "summing the partial gradients of the step before (lead.h, Exchanges).\n"
        "# TYPE swarm_lead_busy_waits_total counter\nswarm_lead_busy_waits_total %llu\n"
        "# HELP swarm_lead_ready_no_hash_total READYs ok without a state hash, taken as not ok "
        "(lead.c).\n# TYPE swarm_lead_ready_no_hash_total counter\n"
        "swarm_lead_ready_no_hash_total %llu\n"
        "# HELP swarm_lead_resends_total Steps whose GO this node, as the leader, sent again "
        "with resend after half a stall limit without progress (lead.h, Resends).\n"
        "# TYPE swarm_lead_resends_total counter\nswarm_lead_resends_total %llu\n",
        (unsigned long long)t->lead.not_waited, (unsigned long long)t->lead.passed_over,
        (unsigned long long)t->lead.copy_waits, (unsigned long long)t->lead.busy_waits,
        (unsigned long long)t->lead.no_hash, (unsigned long long)t->lead.resends);
    OUT("# HELP swarm_node_unproven_records Stage records of the last scan not counted: their "
        "node has not proved it serves their endpoint.\n"
        "# TYPE swarm_node_unproven_records gauge\nswarm_node_unproven_records %d\n"
        "# HELP swarm_node_proofs_total Records proved by a signed answer at their endpoint, and "
        "tries that failed.\n# TYPE swarm_node_proofs_total counter\n"
        "swarm_node_proofs_total{result=\"proven\"} %llu\n"
        "swarm_node_proofs_total{result=\"failed\"} %llu\n"
        "# HELP swarm_node_copies_refused_total State copies refused: no other node attested "
        "their hash.\n# TYPE swarm_node_copies_refused_total counter\n"
        "swarm_node_copies_refused_total %llu\n",
        t->nunproven, (unsigned long long)lv->proofs, (unsigned long long)lv->proof_fails,
        (unsigned long long)t->rc.copies_refused);
#undef OUT
    return 0;
}

static void
join_release(struct sw_node *n)
{
    struct join *j = self(n);

    if (!j)
        return;
    kpull_free(j);
    if (j->cn) {
        sw_ckptnet_release(j->cn);
        sw_free(j->cn);
    }
    if (j->have_t)
        sw_trainer_release(&j->t);
    if (j->su_on) { /* a set-up in progress is finished first */
        pthread_join(j->su_thread, NULL);
        j->su_on = false;
        j->have_c = j->su_err >= 0;
    }
    if (j->have_c)
        sw_compute_release(&j->c); /* the compute thread joined: no more wake-ups */
    if (j->computed) {
        uv_close((uv_handle_t *)j->computed, on_computed_closed);
        uv_run(n->loop, UV_RUN_NOWAIT); /* its close callback frees it */
    }
    sw_free(j);
    n->self = NULL;
}

const struct sw_role sw_join_role = {"node",       join_start,   join_tick,   join_signal,
                                     join_scanned, join_metrics, join_release};
