/*
 * keeper.c - swarmd keeper: checkpoints of the whole run (node.h,
 * ckptnet.h; swarmd(1), "Checkpoints").
 *
 * The keeper joins the DHT but serves no stage; it publishes a keeper
 * record (its endpoint and newest committed step) under H(run, "keeper").
 * Every N steps it asks every node of every stage which tensors of step s
 * they hold (CKPT_INFO_GET: written on disk, or the host copy in memory),
 * pulls each tensor from a node that wrote it (CKPT_GET, pieces of 4 MiB,
 * hash-checked), another replica when one vanished, and commits all stages
 * together with sw_ckpt_save (src/ckpt.h).  It never waits on a dead node
 * (issue 12): the nodes it asks are those its scans find alive (records
 * that say leaving, late ones whose port refuses a connect: live.h), a
 * request to a node that drops out of that list is abandoned at once and
 * its tensors are asked from another replica (ckptnet.h, "Pulling"), and
 * every request is a single short try.  A step that a stage's nodes went
 * past is missed; their answers tell their newest step, and the keeper
 * aims there next rather than a step past the run's step as the records
 * tell it (published every few seconds: tens of steps behind a fast run).
 * A stage whose nodes save nothing locally falls back to a snapshot over
 * STATE_GET with snap: s (fetch.h; recover.h says how a node answers it).  The keeper answers
 * CKPT_INFO_GET / CKPT_GET from its own committed checkpoints too.
 */
#include "sw.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ckpt.h"
#include "ckptnet.h"
#include "fetch.h"
#include "live.h"
#include "node.h"

#define EP SW_PROTO_EP_MAX
#define SCAN_MS 500

/* One stage of the checkpoint being collected. */
struct kstage {
    struct keeper *k;
    int stage;
    struct sw_stage_layout lay;
    bool have_lay;
    size_t numel;
    float *buf;           /* host [3, numel] */
    bool done;
    struct sw_ckpt_stage_state st;
    bool snap_mode;       /* its nodes save nothing locally: STATE_GET with snap */
    bool snap_logged;
    bool have_pull;
    struct sw_ckptnet_pull pull; /* from the nodes' local saves (ckptnet.h) */
    struct sw_fetch f;    /* the snapshot */
    uint64_t retry_ms;
};

struct keeper {
    struct sw_node *n;
    struct kstage *kst;   /* [S] */
    int S, every, keep, nsaved;
    char dir[4096];
    struct sw_ckptnet *cn;
    uint64_t target, last, t0_ms, wait_log_ms, pub_ms, pub_seq, scan_ms, run_step;
    struct sw_node_live live; /* who is alive (no pings) */
    struct sw_peer_rec recs[SW_PROTO_MAX_NODES];
    int nrec;
    bool have_recs, stop;
};

static struct keeper *
self(struct sw_node *n)
{
    return n->self;
}

/* ---- the snapshots (fetch.h over the run transport) ---- */

static void keeper_commit(struct keeper *k);

static void
snap_fetched(struct kstage *ks, int rc)
{
    struct keeper *k = ks->k;
    const struct sw_fetch_src *s = &ks->f.src[0];

    if (s->step > k->run_step && s->step <= (uint64_t)k->n->man.steps)
        k->run_step = s->step;
    if (rc == SW_FETCH_DONE) {
        ks->st.t = (int)s->t;
        ks->st.lr_mult = (float)s->lr_mult;
        ks->st.last_norm = (float)s->norm;
        ks->st.last_norm_clipped = (float)s->normc;
        ks->done = true;
        for (int i = 0; i < k->S; i++)
            if (!k->kst[i].done)
                return;
        keeper_commit(k);
    } else if (rc == SW_FETCH_FAILED && ks->f.err == -SW_ENOENT) {
        sw_log(SW_LOG_INFO, "checkpoint of step %llu missed: stage %d is at step %llu; aiming "
               "later", (unsigned long long)k->target, ks->stage, (unsigned long long)s->step);
        k->target = 0;
    } else if (rc == SW_FETCH_FAILED) {
        sw_log(SW_LOG_WARN, "checkpoint: stage %d from '%s' refused or failed (%s); trying "
               "another node", ks->stage, s->ep, sw_strerror(ks->f.err));
        ks->retry_ms = sw_now_ms() + 200;
    }
}

static void
on_kresponse(void *arg, uint64_t tag, int status, const struct sw_transport_msg *m)
{
    struct kstage *ks = arg;
    int rc;

    if ((rc = sw_fetch_response(&ks->f, sw_now_ms(), tag, status, m)) == SW_FETCH_FAILED &&
        ks->f.err == -SW_EPROTO)
        sw_wire_count_drop(sw_transport_wire(ks->k->n->tr), SW_WIRE_DROP_MALFORMED);
    if (rc != SW_FETCH_BUSY && ks->k->target)
        snap_fetched(ks, rc);
}

static int
kreq(void *arg, const char *ep, const void *body, size_t len, uint64_t timeout_ms, int retries,
     uint64_t tag)
{
    struct kstage *ks = arg;

    return sw_node_request(ks->k->n, ep, SW_MSG_STATE_GET, body, len, timeout_ms, retries,
                           on_kresponse, ks, tag);
}

static const struct sw_fetch_ops kfetch_ops = {kreq};

/* The snapshot of stage ks at the target from its most advanced node. */
static void
snap_tick(struct keeper *k, struct kstage *ks, uint64_t now)
{
    const struct sw_peer_rec *src = NULL;

    if (ks->f.active) {
        /* its node gone (leaving, declared dead): not waited for, another is asked */
        bool listed = false;
        for (int i = 0; i < k->nrec && !listed; i++)
            listed = !memcmp(k->recs[i].pk, ks->f.src[0].pk, 32);
        if (!listed) {
            sw_log(SW_LOG_INFO, "checkpoint step %llu: the node of stage %d at '%s' is gone; "
                   "asking another", (unsigned long long)k->target, ks->stage, ks->f.src[0].ep);
            sw_fetch_abandon(&ks->f);
        }
    }
    if (ks->done || ks->f.active || now < ks->retry_ms) {
        if (ks->f.active) {
            int rc;
            sw_fetch_tick(&ks->f, now, &rc);
            if (rc == SW_FETCH_FAILED && ks->k->target)
                snap_fetched(ks, rc);
        }
        return;
    }
    for (int i = 0; i < k->nrec; i++) {
        const struct sw_peer_rec *r = &k->recs[i];
        if (r->stage == ks->stage && sw_rec_has_state(r->state) && (!src || r->step > src->step))
            src = r;
    }
    if (!src) {
        if (now - k->wait_log_ms > 5000) {
            k->wait_log_ms = now;
            sw_log(SW_LOG_INFO, "checkpoint of step %llu: waiting for a node of stage %d",
                   (unsigned long long)k->target, ks->stage);
        }
        return;
    }
    sw_fetch_src_set(&ks->f, 0, src->ep, src->pk, ks->stage, 0, 3, ks->numel,
                     (int64_t)k->target, ks->buf);
    if (sw_fetch_start(&ks->f, 1, now) == SW_FETCH_FAILED)
        ks->retry_ms = now + 200;
}

/* ---- the checkpoint ---- */

static void
keeper_publish(struct keeper *k)
{
    uint64_t wall = (uint64_t)time(NULL) * 1000;
    int err;

    k->pub_seq = SW_MAX(k->pub_seq + 1, wall);
    k->pub_ms = sw_now_ms();
    if ((err = sw_ckptnet_publish(k->n->dht, k->n->man.run_id, k->n->id.sk, k->n->cert,
                                  k->n->cert_len, k->n->ep, k->last, k->pub_seq)) < 0)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 10000, "cannot publish the keeper record: %s",
                           sw_strerror(err));
}

static void
keeper_commit(struct keeper *k)
{
    struct sw_ckpt_stage_view *v = sw_calloc((size_t)k->S, sizeof(*v));
    const struct sw_manifest *man = &k->n->man;
    struct sw_ckpt_run run;
    uint64_t bytes = 0;
    double pull_s = (double)(sw_now_ms() - k->t0_ms) / 1000.0, t0 = sw_now_s(), write_s;
    char f[160];
    int err;

    if (!v) {
        sw_log(SW_LOG_ERROR, "checkpoint of step %llu: out of memory",
               (unsigned long long)k->target);
        k->target = 0;
        return;
    }
    memset(&run, 0, sizeof(run));
    run.step = (int)k->target;
    run.S = k->S;
    run.seed = man->seed;
    run.micro = k->target * (uint64_t)man->micro;
    run.cfg = man->model;
    run.oc = man->optim;
    run.have_cursor = false;
    for (int s = 0; s < k->S; s++) {
        struct kstage *ks = &k->kst[s];
        v[s].lay = &ks->lay;
        v[s].params = ks->buf;
        v[s].m = ks->buf + ks->numel;
        v[s].v = ks->buf + 2 * ks->numel;
        v[s].st = ks->st;
        bytes += 3 * ks->numel * sizeof(float);
    }
    err = sw_ckpt_save(k->dir, &run, v, k->S, k->keep);
    write_s = sw_now_s() - t0;
    sw_free(v);
    if (err < 0) {
        sw_log(SW_LOG_ERROR, "checkpoint of step %llu into '%s' failed: %s; the older ones "
               "are intact", (unsigned long long)k->target, k->dir, sw_strerror(err));
    } else {
        k->last = k->target;
        k->nsaved++;
        sw_ckptnet_committed(k->cn);
        keeper_publish(k);
        sw_log(SW_LOG_INFO, "checkpoint step %llu: %d stages, %llu bytes, collected in %.0f ms, "
               "written in %.0f ms, into '%s' (keep %d)", (unsigned long long)k->target, k->S,
               (unsigned long long)bytes, pull_s * 1000, write_s * 1000, k->dir, k->keep);
        snprintf(f, sizeof(f), "\"step\":%llu,\"bytes\":%llu,\"pull_ms\":%.0f,\"write_ms\":%.0f",
                 (unsigned long long)k->target, (unsigned long long)bytes, pull_s * 1000,
                 write_s * 1000);
        sw_log_out("checkpoint", f, "checkpoint step=%llu bytes=%llu pull_ms=%.0f write_ms=%.0f",
                   (unsigned long long)k->target, (unsigned long long)bytes, pull_s * 1000,
                   write_s * 1000);
    }
    k->target = 0;
}

/* One stage of the checkpoint from its nodes' local saves. */
static void
keeper_pull(struct keeper *k, struct kstage *ks)
{
    static char eps[SW_PROTO_MAX_REPLICAS][EP];
    int ne = 0, err, from = 0;
    char f[192];

    for (int i = 0; i < k->nrec && ne < SW_PROTO_MAX_REPLICAS; i++) {
        const struct sw_peer_rec *r = &k->recs[i];
        if (r->stage == ks->stage && sw_rec_has_state(r->state))
            snprintf(eps[ne++], EP, "%s", r->ep);
    }
    if (!ne && sw_now_ms() - k->wait_log_ms > 5000) {
        k->wait_log_ms = sw_now_ms();
        sw_log(SW_LOG_INFO, "checkpoint of step %llu: waiting for a node of stage %d",
               (unsigned long long)k->target, ks->stage);
    }
    if ((err = sw_ckptnet_pull_tick(&ks->pull, (const char (*)[EP])eps, ne)) == 0)
        return;
    if (err == 1) {
        for (int i = 0; i < ks->pull.nsrc; i++)
            from += ks->pull.src[i].state == SW_CKPTNET_SRC_OK;
        ks->st = ks->pull.st;
        ks->done = true;
        snprintf(f, sizeof(f), "\"step\":%llu,\"stage\":%d,\"nodes\":%d,\"from_disk\":%d,"
                 "\"from_memory\":%d,\"bytes\":%llu", (unsigned long long)k->target, ks->stage,
                 from, ks->pull.n_disk, ks->pull.n_mem, (unsigned long long)ks->pull.bytes);
        sw_log_event(SW_LOG_INFO, "ckpt_stage_in", f, "checkpoint step %llu: stage %d in from "
               "the local saves of %d node%s: %d tensors from their files, %d from memory, %llu "
               "bytes",
               (unsigned long long)k->target, ks->stage, from, from == 1 ? "" : "s",
               ks->pull.n_disk, ks->pull.n_mem, (unsigned long long)ks->pull.bytes);
        for (int s = 0; s < k->S; s++)
            if (!k->kst[s].done)
                return;
        keeper_commit(k);
    } else if (err == -SW_ENOTSUP) {
        if (!ks->snap_logged)
            sw_log(SW_LOG_INFO, "checkpoint step %llu: the nodes of stage %d save nothing "
                   "locally (no --ckpt-dir, or [checkpoint] every 0): asking one for a "
                   "snapshot instead", (unsigned long long)k->target, ks->stage);
        ks->snap_logged = true;
        ks->snap_mode = true;
    } else {
        sw_log(SW_LOG_INFO, "checkpoint of step %llu missed: no node of stage %d holds it (%s); "
               "aiming later", (unsigned long long)k->target, ks->stage, sw_strerror(err));
        /* the stage went past it: the next aim is past it too, even while
         * the scans still tell an older step of the run */
        if (err == -SW_ENOENT && k->run_step < k->target)
            k->run_step = k->target;
        /* a node told the newest step it holds: aim at it, not at a step
         * its records (published every few seconds) still tell */
        if (err == -SW_ENOENT && ks->pull.newest > k->target &&
            ks->pull.newest <= (uint64_t)k->n->man.steps && k->run_step < ks->pull.newest - 1)
            k->run_step = ks->pull.newest - 1;
        k->target = 0;
    }
}

/* The next checkpoint's step: a multiple of every past both the last saved
 * step and the run's step (as far as scans and the nodes' answers tell);
 * false when none is due. */
static bool
aim(struct keeper *k, uint64_t now)
{
    uint64_t every = (uint64_t)k->every, steps = (uint64_t)k->n->man.steps, t;

    for (int s = 0; s < k->S; s++) {
        struct kstage *ks = &k->kst[s];
        sw_fetch_abandon(&ks->f);
        if (ks->have_pull)
            sw_ckptnet_pull_abandon(&ks->pull); /* nothing to wait for (ckptnet.h) */
    }
    t = (SW_MAX(k->run_step, k->last) + every) / every * every;
    if (t > steps)
        t = steps;
    if (t <= k->last)
        return false;
    k->target = t;
    k->t0_ms = now;
    for (int s = 0; s < k->S; s++) {
        struct kstage *ks = &k->kst[s];
        ks->done = false;
        ks->retry_ms = 0;
        /* from the nodes' local saves first (ckptnet.h) */
        if (ks->have_pull)
            sw_ckptnet_pull_release(&ks->pull);
        ks->have_pull = sw_ckptnet_pull_init(&ks->pull, k->n->tr, &ks->lay, s, ks->buf, t) == 0;
        ks->snap_mode = !ks->have_pull;
    }
    sw_log(SW_LOG_DEBUG, "checkpoint: aiming at step %llu (run at %llu)", (unsigned long long)t,
           (unsigned long long)k->run_step);
    return true;
}

static uint64_t
keeper_tick(struct sw_node *n, uint64_t now)
{
    struct keeper *k = self(n);

    if (k->stop)
        return SW_NODE_DONE;
    if (now - k->scan_ms >= SCAN_MS && sw_node_scan(n) == 0)
        k->scan_ms = now; /* (a scan still running: the next tick asks again) */
    if (now - k->pub_ms >= SW_CKPTNET_PUBLISH_MS)
        keeper_publish(k);
    if (!k->have_recs)
        return now + SCAN_MS;
    if (!k->target) {
        if (k->last >= (uint64_t)n->man.steps) {
            if (n->o.exit_at_end) {
                sw_log(SW_LOG_INFO, "the run's last step is saved; %d checkpoints written",
                       k->nsaved);
                return SW_NODE_DONE;
            }
            return now + SCAN_MS;
        }
        if (!aim(k, now))
            return now + 50;
    }
    for (int s = 0; s < k->S && k->target; s++) {
        struct kstage *ks = &k->kst[s];
        if (ks->done)
            continue;
        if (!ks->snap_mode)
            keeper_pull(k, ks);
        else
            snap_tick(k, ks, now);
    }
    return now + 50;
}

/* ---- the role ---- */

static int
stages_init(struct keeper *k)
{
    int err;

    if (!(k->kst = sw_calloc((size_t)k->S, sizeof(*k->kst))))
        return -SW_ENOMEM;
    for (int s = 0; s < k->S; s++) {
        struct kstage *ks = &k->kst[s];
        ks->k = k;
        ks->stage = s;
        if ((err = sw_stage_layout_init(&ks->lay, &k->n->man.model, k->S, s)) < 0)
            return err;
        ks->have_lay = true;
        ks->numel = ks->lay.numel;
        if (!(ks->buf = sw_malloc_big(3 * ks->numel * sizeof(float))))
            return -SW_ENOMEM;
        sw_fetch_init(&ks->f, &kfetch_ops, ks);
        sw_fetch_config(&ks->f, 1, SW_CKPTNET_RPC_MS, 0); /* no retry: another node instead */
    }
    return 0;
}

static int
keeper_start(struct sw_node *n)
{
    const struct sw_manifest *man = &n->man;
    int err;
    struct keeper *k;
    char rh[65];

    if (!(k = n->self = sw_calloc(1, sizeof(*k))))
        return SW_EXIT_FAIL;
    k->n = n;
    k->S = man->stages;
    k->every = n->o.ckpt_every > 0 ? n->o.ckpt_every : man->ckpt_every;
    k->keep = n->o.ckpt_keep > 0 ? n->o.ckpt_keep : man->ckpt_keep;
    snprintf(k->dir, sizeof(k->dir), "%s", n->o.ckpt_dir[0] ? n->o.ckpt_dir : man->ckpt_dir);
    if (k->every <= 0 || !k->dir[0]) {
        sw_log(SW_LOG_ERROR, "keeper: give --every N and --dir DIR, or [checkpoint] every "
               "and dir in the manifest");
        return SW_EXIT_USAGE;
    }
    sw_node_live_init(&k->live, n);
    if ((err = stages_init(k)) < 0 || !(k->cn = sw_calloc(1, sizeof(*k->cn))) ||
        (err = sw_ckptnet_init(k->cn, n->loop, n->tr, &man->model, &man->optim, man->seed, k->S,
                               man->micro, man->steps, man->ckpt_every, man->ckpt_keep, true,
                               k->dir, NULL)) < 0) {
        sw_log(SW_LOG_ERROR, "keeper: %s", sw_strerror(err < 0 ? err : -SW_ENOMEM));
        return SW_EXIT_FAIL;
    }
    if ((k->last = sw_ckptnet_newest(k->cn)))
        sw_log(SW_LOG_INFO, "keeper: '%s' holds step %llu already", k->dir,
               (unsigned long long)k->last);
    sw_log(SW_LOG_INFO, "keeper of run %s through %s: a checkpoint every %d steps into '%s' "
           "(keep %d)", sw_identity_hex(rh, man->run_id, 32), n->o.peer, k->every, k->dir,
           k->keep);
    return 0;
}

static void
keeper_signal(struct sw_node *n, int sig)
{
    sw_log(SW_LOG_INFO, "signal %d: leaving", sig);
    self(n)->stop = true;
}

static void
keeper_scanned(struct sw_node *n, int status, const struct sw_peer_rec *recs, int cnt,
               uint64_t max_step)
{
    struct keeper *k = self(n);

    if (status < 0) {
        SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "cannot read the stages from the DHT: %s",
                           sw_strerror(status));
        return;
    }
    k->nrec = sw_live_scan(&k->live.lv, sw_now_ms(), recs, SW_MIN(cnt, SW_PROTO_MAX_NODES),
                           (const uint8_t(*)[32])n->scan.gone, n->scan.ngone, SCAN_MS, k->recs);
    k->have_recs = true;
    if (max_step > k->run_step)
        k->run_step = max_step;
    sw_node_wake(n, 0);
}

static int
keeper_metrics(struct sw_node *n, char *buf, size_t len, size_t *off)
{
    struct keeper *k = self(n);

    return sw_metrics_append(buf, len, off, "# HELP swarm_keeper_step Newest committed "
                             "checkpoint step.\n# TYPE swarm_keeper_step gauge\n"
                             "swarm_keeper_step %llu\n", (unsigned long long)k->last);
}

static void
keeper_release(struct sw_node *n)
{
    struct keeper *k = self(n);

    if (!k)
        return;
    for (int s = 0; k->kst && s < k->S; s++) {
        struct kstage *ks = &k->kst[s];
        if (ks->have_pull)
            sw_ckptnet_pull_release(&ks->pull);
        sw_free_big(ks->buf);
        if (ks->have_lay)
            sw_stage_layout_release(&ks->lay);
    }
    sw_free(k->kst);
    if (k->cn) {
        sw_ckptnet_release(k->cn);
        sw_free(k->cn);
    }
    sw_free(k);
    n->self = NULL;
}

const struct sw_role sw_keeper_role = {"keeper",       keeper_start,   keeper_tick,   keeper_signal,
                                       keeper_scanned, keeper_metrics, keeper_release};
