/*
 * trainer.c - the training node's phase machine (see trainer.h).
 */
#include "sw.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "node.h"
#include "rng.h"
#include "trainer.h"

const char *
sw_phase_name(int phase)
{
    static const char *const names[] = {"scan",     "choose",  "sync",     "copy",
                                        "rebuild",  "restore", "joining",  "training",
                                        "done",     "stopping", "leaving", "closed"};

    return phase >= 0 && phase <= SW_PHASE_CLOSED ? names[phase] : "?";
}

/* The state the record says (trainer.h). */
static int
rec_state(const struct sw_trainer *t)
{
    switch (t->phase) {
    case SW_PHASE_TRAINING:
        return SW_REC_TRAINING;
    case SW_PHASE_JOINING:
        return SW_REC_JOINING;
    case SW_PHASE_DONE:
        return SW_REC_DONE;
    case SW_PHASE_LEAVING:
    case SW_PHASE_CLOSED:
        return SW_REC_LEAVING;
    case SW_PHASE_STOPPING:
        return t->pub_state;
    default:
        return SW_REC_SYNCING;
    }
}

/* ---- the env, as the modules use it ---- */

int
trainer_send(struct sw_trainer *t, const char *ep, uint32_t type, const void *payload, size_t plen)
{
    struct sw_payload p = {payload, plen, NULL, NULL, NULL};
    int err;

    if (t->body.b.overflow)
        return -SW_ETOOBIG;
    err = t->env->send(t->env->arg, ep, type, t->body.b.data, t->body.b.len, plen ? &p : NULL);
    if (err < 0)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 1000, "cannot send message %u to '%s': %s", type, ep,
                           sw_strerror(err));
    return err;
}

int
trainer_reply(struct sw_trainer *t, const struct sw_transport_route *r, uint32_t type,
              const struct sw_payload *p)
{
    int err;

    if (t->body.b.overflow) {
        if (p && p->free_cb)
            p->free_cb((void *)p->data, p->free_arg);
        return -SW_ETOOBIG;
    }
    err = t->env->reply(t->env->arg, r, type, t->body.b.data, t->body.b.len, p);
    if (err < 0)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 1000, "cannot reply %u: %s", type, sw_strerror(err));
    return err;
}

int
trainer_request(struct sw_trainer *t, const char *ep, uint32_t type, uint64_t timeout_ms,
                int retries, uint64_t tag)
{
    if (t->body.b.overflow)
        return -SW_ETOOBIG;
    return t->env->request(t->env->arg, ep, type, t->body.b.data, t->body.b.len, timeout_ms,
                           retries, tag);
}

static void
live_dead(void *arg, const uint8_t *pk, int stage, const char *why)
{
    struct sw_trainer *t = arg;

    (void)stage;
    (void)why;
    /* out of the table now, not at the next scan: nothing copies from it,
     * counts it, or takes its (possibly stale) step for the run's */
    for (int i = 0; i < t->ndir; i++)
        if (!memcmp(t->dir[i].pk, pk, 32)) {
            memmove(&t->dir[i], &t->dir[i + 1], (size_t)(t->ndir - i - 1) * sizeof(t->dir[0]));
            t->ndir--;
            break;
        }
}

static void
live_probe(void *arg, const uint8_t *pk, const char *ep, uint64_t timeout_ms)
{
    struct sw_trainer *t = arg;

    if (t->env->probe)
        t->env->probe(t->env->arg, pk, ep, timeout_ms);
    else
        sw_live_probed(&t->live, pk, false);
}

static int
live_ping(void *arg, const char *ep, uint64_t timeout_ms, uint64_t tag)
{
    struct sw_trainer *t = arg;

    return t->env->request(t->env->arg, ep, SW_MSG_PING, NULL, 0, timeout_ms, 0,
                           SW_TAG(SW_TAG_PING, tag));
}

static const struct sw_live_ops live_ops = {live_dead, live_probe, live_ping};

static int
fetch_request(void *arg, const char *ep, const void *body, size_t len, uint64_t timeout_ms,
              int retries, uint64_t tag)
{
    struct sw_trainer *t = arg;

    return t->env->request(t->env->arg, ep, SW_MSG_STATE_GET, body, len, timeout_ms, retries,
                           SW_TAG(SW_TAG_FETCH, tag));
}

static const struct sw_fetch_ops fetch_ops = {fetch_request};

/* ---- who may send what ---- */

const struct sw_peer_rec *
trainer_dir_find(const struct sw_trainer *t, const uint8_t *pk)
{
    for (int i = 0; i < t->ndir; i++)
        if (!memcmp(t->dir[i].pk, pk, 32))
            return &t->dir[i];
    return NULL;
}

int
trainer_lead_need(struct sw_trainer *t, bool trusted)
{
    const uint8_t *lpk = sw_lead_expected(t);
    const struct sw_peer_rec *l = lpk ? trainer_dir_find(t, lpk) : NULL;

    if (!l || l->need <= 0 || l->need > t->S || (trusted && !sw_live_trusted(&t->live, l->pk)))
        return -1;
    return l->need - 1;
}

bool
trainer_gone(struct sw_trainer *t, const uint8_t *pk)
{
    return sw_live_gone(&t->live, pk, t->now);
}

bool
trainer_open(struct sw_trainer *t, const struct sw_transport_msg *m, msgpack_unpacked *u,
             const char *const *keys)
{
    if (sw_proto_open(m->hdr.body, m->hdr.body_len, u, keys))
        return true;
    if (t->env->drop)
        t->env->drop(t->env->arg, SW_WIRE_DROP_MALFORMED);
    SW_LOG_RATELIMITED(SW_LOG_WARN, 2000, "dropped malformed message of type %u", m->hdr.type);
    sw_live_ban(&t->live, m->hdr.sender, t->now, "malformed message");
    return false;
}

void
trainer_reject(struct sw_trainer *t, const struct sw_transport_msg *m, msgpack_unpacked *u,
               int reason, const char *what)
{
    if (u)
        msgpack_unpacked_destroy(u);
    if (t->env->drop)
        t->env->drop(t->env->arg, reason);
    if (reason == SW_WIRE_DROP_MALFORMED && strstr(what, "shape"))
        t->drop_shape++;
    SW_LOG_RATELIMITED(SW_LOG_WARN, 2000, "dropped %s", what);
    sw_live_ban(&t->live, m->hdr.sender, t->now, what);
}

bool
trainer_refuse_banned(struct sw_trainer *t, const struct sw_transport_msg *m)
{
    if (memcmp(m->hdr.sender, t->pk, 32) && sw_live_banned(&t->live, m->hdr.sender, t->now)) {
        t->drop_banned++;
        return true;
    }
    return false;
}

/*
 * Refuses (and counts) a message from no node of the run (not in the DHT's
 * records nor in the plan).  Handlers of tensors check the contents first,
 * so that a stranger sending bad ones is banned, not merely ignored.
 */
bool
trainer_refuse_unknown(struct sw_trainer *t, const struct sw_transport_msg *m)
{
    if (memcmp(m->hdr.sender, t->pk, 32) && !sw_live_find(&t->live, m->hdr.sender) &&
        !sw_plan_has(&t->st.plan, m->hdr.sender)) {
        t->drop_unknown++;
        SW_LOG_RATELIMITED(SW_LOG_WARN, 2000, "dropped message %u from a peer that is not in the run",
                           m->hdr.type);
        return true;
    }
    return false;
}

void
trainer_hash(struct sw_trainer *t)
{
    if (t->ops->hash(t->model, t->phash) < 0)
        return;
    sw_identity_hex(t->hash, t->phash, 8);
}

/* ---- lifecycle ---- */

void
trainer_set_phase(struct sw_trainer *t, int phase)
{
    if (phase == t->phase)
        return;
    sw_log(SW_LOG_DEBUG, "phase %s -> %s", sw_phase_name(t->phase), sw_phase_name(phase));
    t->phase = phase;
    t->phase_ms = t->now;
    if (phase == SW_PHASE_SYNC)
        t->rc.empty_scan = 0; /* reads of the records from here on (recover.c, read_again) */
}

void
trainer_fail(struct sw_trainer *t, int err, const char *what)
{
    sw_log(SW_LOG_ERROR, "%s: %s; leaving the run", what, sw_strerror(err));
    t->exit_code = SW_EXIT_FAIL;
    t->st.phase = SW_STEP_IDLE;
    trainer_set_phase(t, SW_PHASE_STOPPING);
}

void
trainer_lost(struct sw_trainer *t)
{
    t->exit_code = SW_EXIT_LOST;
    trainer_set_phase(t, SW_PHASE_STOPPING);
}

void
sw_trainer_set_ep(struct sw_trainer *t, const char *ep)
{
    snprintf(t->ep, sizeof(t->ep), "%s", ep);
    t->pub_ms = 0; /* publish now (sw_trainer_tick) */
}

void
sw_trainer_self_rec(const struct sw_trainer *t, struct sw_peer_rec *r)
{
    memset(r, 0, sizeof(*r));
    memcpy(r->pk, t->pk, 32);
    snprintf(r->ep, sizeof(r->ep), "%s", t->ep);
    r->stage = t->stage < 0 ? 0 : t->stage;
    r->state = rec_state(t);
    r->step = t->step;
    r->tps = t->tps;
    r->cap = t->cap;
    r->loss = t->stage == t->S - 1 ? t->last_loss : -1;
    r->norm = t->last_norm;
    snprintf(r->hash, sizeof(r->hash), "%s", t->hash);
    r->recoveries = t->recoveries;
    r->moving = t->move_to >= 0 ? t->move_to + 1 : 0;
    /* the leader's word on a stage that answers no PREPARE (lead.h), while fresh */
    if (t->stage == 0 && t->lead.need >= 0 && t->now - t->lead.need_ms < SW_TRAINER_NEED_MS &&
        t->now - t->lead.need_since >= SW_TRAINER_NEED_HOLD_MS)
        r->need = t->lead.need + 1;
    sw_status_rec_set_recovery(r, t->rec_method, t->rec_from, t->rec_bytes, t->rec_s);
}

double
sw_trainer_records_tps(const struct sw_trainer *t)
{
    double best = 0;

    for (int s = 0; s < t->S; s++) {
        double sum = 0;
        for (int i = 0; i < t->ndir; i++) {
            const struct sw_peer_rec *r = &t->dir[i];
            if (r->stage == s && sw_rec_has_state(r->state) && isfinite(r->tps) && r->tps > 0)
                sum += r->tps;
        }
        best = SW_MAX(best, sum);
    }
    return best;
}

static void
publish(struct sw_trainer *t, uint32_t ttl_s)
{
    struct sw_peer_rec me;

    sw_trainer_self_rec(t, &me);
    if (t->step != t->pub_step || t->step_changed_ms == 0) {
        /* the first record too: its step is as fresh as the node */
        t->pub_step = t->step;
        t->step_changed_ms = t->now;
    }
    t->env->publish(t->env->arg, &me, ttl_s, t->now - t->step_changed_ms);
    t->pub_ms = t->now;
    t->pub_state = me.state;
}

void
trainer_announce(struct sw_trainer *t)
{
    if (t->ops)
        publish(t, SW_TRAINER_RECORD_TTL_S);
}

void
trainer_scan_soon(struct sw_trainer *t, uint64_t every)
{
    int err;

    if (t->scan_busy || t->now - t->scan_ms < every)
        return;
    t->scan_ms = t->now;
    if ((err = t->env->scan(t->env->arg)) < 0)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "cannot read the stages from the DHT: %s",
                           sw_strerror(err));
    else
        t->scan_busy = true;
}

/*
 * Announces the departure: a "leaving" record with a short ttl replaces this
 * node's record on the nodes that store it; the tick closes once the put is
 * done or after SW_TRAINER_LEAVE_WAIT_MS.  A node that stops because the
 * run is lost leaves its record for SW_TRAINER_LOST_TTL_S: a newcomer that
 * comes after every node stopped (and the dead ones' records expired) still
 * learns the run's step and finds the stages lost, rather than taking an
 * empty table for a new run and training from the seed (t0370 in CI: the
 * survivors took 10 s to stop).
 */
static void
leave(struct sw_trainer *t)
{
    bool published = t->ops != NULL;

    trainer_set_phase(t, SW_PHASE_LEAVING);
    t->put_done = !published;
    if (published) {
        publish(t, t->exit_code == SW_EXIT_LOST ? SW_TRAINER_LOST_TTL_S
                                                : SW_TRAINER_LEAVE_TTL_S);
        sw_log(SW_LOG_INFO, "left the run at step %llu", (unsigned long long)t->step);
    }
}

void
sw_trainer_stop(struct sw_trainer *t, uint64_t now)
{
    t->now = now;
    if (t->phase >= SW_PHASE_STOPPING) {
        if (t->phase == SW_PHASE_STOPPING) {
            sw_log(SW_LOG_WARN, "second signal: leaving now");
            t->st.phase = SW_STEP_IDLE;
        }
        return;
    }
    sw_log(SW_LOG_INFO, "signal: %s",
           sw_step_busy(&t->st) ? "finishing the step in progress, then leaving" : "leaving");
    trainer_set_phase(t, SW_PHASE_STOPPING);
}

/* ---- joining: the first scan, the stage ---- */

int
sw_trainer_init(struct sw_trainer *t, const uint8_t pk[32], const char *ep,
                const struct sw_manifest *man, const struct sw_trainer_opts *o,
                const struct sw_trainer_env *env, uint64_t now)
{
    uint64_t rng = o->rng;
    int err;

    memset(t, 0, sizeof(*t));
    memcpy(t->pk, pk, 32);
    snprintf(t->ep, sizeof(t->ep), "%s", ep);
    t->man = man;
    t->o = *o;
    if (t->o.dead_ms <= 0)
        t->o.dead_ms = SW_LIVE_DEAD_MS;
    t->env = env;
    t->S = man->stages;
    t->M = man->micro;
    t->plus = man->recovery_mode == SW_RECOVERY_CHECKFREE_PLUS;
    t->codec = man->act_codec;
    t->gcodec = man->grad_codec;
    t->V = t->plus ? 2 : 1;
    t->B = man->batch;
    t->T = man->T;
    t->C = man->model.d_model;
    t->N = (size_t)t->B * t->T;
    t->stage = o->stage;
    t->last_loss = -1;
    t->move_to = t->moved_from = -1;
    t->balance = -1;
    t->now = t->phase_ms = now;
    t->phase = SW_PHASE_SCAN;
    /* --stage auto: a short random delay against herding, before the first scan */
    t->choose_ms = o->stage < 0 ? now + 50 + sw_splitmix64(&rng) % 250 : now;
    sw_live_init(&t->live, pk, t->o.dead_ms, sw_live_pub_every(t->o.dead_ms), o->ban_ms,
                 &live_ops, t);
    sw_fetch_init(&t->fetch, &fetch_ops, t);
    if (!(t->seen_stage = sw_calloc((size_t)t->S, sizeof(bool))) ||
        !(t->distrusted_stage = sw_calloc((size_t)t->S, sizeof(bool))) ||
        !(t->proving_stage = sw_calloc((size_t)t->S, sizeof(bool))))
        return -SW_ENOMEM;
    if ((err = sw_lead_init(t)) < 0 || (err = sw_plan_init(&t->st.plan, t->S, t->M)) < 0)
        return err;
    return 0;
}

/* What belongs to the stage served (a transfer, the step's buffers, the
 * recovery's, the keeper's snapshot, the CheckFree+ replica): freed at the
 * end and when the node moves to another stage. */
static void
stage_release(struct sw_trainer *t)
{
    sw_fetch_abandon(&t->fetch);
    if (t->st.period_ms)
        t->period_kept_ms = t->st.period_ms; /* the run's pace is the same on another stage */
    sw_step_release(t);
    sw_recover_release(t);
    sw_free_big(t->snap_buf);
    sw_free_big(t->rep_buf);
    sw_free_big(t->rep_in);
    sw_free(t->rep_got);
    t->snap_buf = NULL;
    t->rep_buf = t->rep_in = NULL;
    t->rep_got = NULL;
}

void
sw_trainer_release(struct sw_trainer *t)
{
    stage_release(t);
    sw_lead_release(t);
    sw_free(t->seen_stage);
    t->seen_stage = NULL;
    sw_free(t->distrusted_stage);
    t->distrusted_stage = NULL;
    sw_free(t->proving_stage);
    t->proving_stage = NULL;
}

bool
sw_trainer_wants_stage(const struct sw_trainer *t)
{
    return t->phase == SW_PHASE_CHOOSE && t->stage >= 0 && !t->ops;
}

int
sw_trainer_set_stage(struct sw_trainer *t, const struct sw_stage_ops *ops, void *model,
                     size_t numel)
{
    int err;

    SW_ASSERT(sw_trainer_wants_stage(t));
    t->numel = numel;
    if ((err = sw_step_init(t)) < 0)
        return err;
    t->ops = ops;
    t->model = model;
    t->stage_ms = t->now;
    trainer_set_phase(t, SW_PHASE_SYNC);
    trainer_announce(t);
    return 0;
}

/*
 * --stage auto, before choosing: a stage record lives on for dead_ms after
 * its node was killed, so a record is trusted only once its node gave a
 * sign of life seen here (a new version of the record, or an answer to a
 * ping).  Pings every record's node (two unanswered pings of dead_ms / 3
 * make it dead) and scans until every record is trusted or its node dead;
 * at most dead_ms and a scan (then the scans have judged every record by
 * its age).  A newcomer started at once after a kill thus waits about
 * 2 dead_ms / 3, one started later only a round trip.  Returns the records
 * still unconfirmed.
 */
static int
confirm(struct sw_trainer *t)
{
    int nwait = 0;

    for (int i = 0; i < t->ndir; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        struct sw_live_peer *l;
        if (!sw_rec_in_run(r->state) || !memcmp(r->pk, t->pk, 32) ||
            !(l = sw_live_get(&t->live, r->pk)) || l->alive_ms || l->dead || l->left)
            continue;
        nwait++;
        if (t->now - l->probe_ms >= SW_TRAINER_SCAN_MS)
            sw_live_probe(&t->live, t->now, l, r->ep);
        sw_live_ping(&t->live, t->now, r->pk, r->ep, r->stage, 0);
    }
    /* the unproven records not yet failed SW_LIVE_PROVE_TRIES tries (live.h, Proof):
     * the table holds only proven ones */
    return nwait + t->nproving;
}

/* Each stage's "nodes/tokens-per-s", blank-separated, into buf (for the
 * logs of stage choice and rebalancing); buf returned. */
static const char *
stages_seen(char *buf, size_t len, int S, const int *cnt, const double *cap)
{
    size_t off = 0;

    buf[0] = '\0';
    for (int s = 0; s < S && off < len; s++)
        off += (size_t)snprintf(buf + off, len - off, "%s%d/%.0f", s ? " " : "", cnt[s], cap[s]);
    return buf;
}

static void
choose(struct sw_trainer *t, int nwait)
{
    int *cnt = sw_calloc((size_t)t->S, sizeof(int)), k = 0;
    double *cap = sw_calloc((size_t)t->S, sizeof(double));
    char seen[1024];

    if (!cnt || !cap) {
        sw_free(cnt);
        sw_free(cap);
        trainer_fail(t, -SW_ENOMEM, "stage auto");
        return;
    }
    /* nodes found dead meanwhile leave the table now, not at the next scan */
    for (int i = 0; i < t->ndir; i++)
        if (!trainer_gone(t, t->dir[i].pk))
            t->dir[k++] = t->dir[i];
    t->ndir = k;
    sw_log(SW_LOG_DEBUG, "stage auto: records checked in %llu ms (%d unconfirmed)",
           (unsigned long long)(t->now - t->phase_ms), nwait);
    for (int i = 0; i < t->ndir; i++) {
        if (!sw_rec_in_run(t->dir[i].state) || !memcmp(t->dir[i].pk, t->pk, 32) ||
            !sw_live_trusted(&t->live, t->dir[i].pk))
            continue;
        cnt[t->dir[i].stage]++;
        cap[t->dir[i].stage] += t->dir[i].cap;
    }
    t->stage = sw_plan_choose_stage(t->S, cnt, cap);
    {
        /* the leader waits for a stage that answers none of its PREPAREs:
         * that one, whatever the records there claim (lead.h, need) */
        int need = trainer_lead_need(t, true);
        if (need >= 0 && cnt[t->stage] > 0) {
            sw_log(SW_LOG_INFO, "stage auto: the leader waits for stage %d (no node there "
                   "answered ready)", need);
            t->stage = need;
        }
    }
    stages_seen(seen, sizeof(seen), t->S, cnt, cap); /* what the choice saw */
    {
        char f[1200], q[1100];
        snprintf(f, sizeof(f), "\"stage\":%d,\"nodes\":%d,\"capacity\":%.0f,\"saw\":%s", t->stage,
                 cnt[t->stage], cap[t->stage], sw_json_str(q, sizeof(q), seen));
        sw_log_event(SW_LOG_INFO, "chose_stage", f, "stage auto: chose stage %d (%d nodes there, "
                     "%.0f tokens/s; saw %s)", t->stage, cnt[t->stage], cap[t->stage], seen);
    }
    sw_free(cnt);
    sw_free(cap);
}

/* SCAN and CHOOSE; returns the next wake-up. */
static uint64_t
join_tick(struct sw_trainer *t)
{
    int nwait;

    if (t->phase == SW_PHASE_SCAN) {
        if (t->now < t->choose_ms)
            return t->choose_ms;
        if (t->dir_ok) {
            trainer_set_phase(t, SW_PHASE_CHOOSE);
        } else if (t->now - t->phase_ms > SW_TRAINER_FIRST_SCAN_MS) {
            sw_log(SW_LOG_ERROR, "cannot read the stages from the DHT");
            t->exit_code = SW_EXIT_NOPEER;
            trainer_set_phase(t, SW_PHASE_CLOSED);
            return UINT64_MAX;
        } else {
            trainer_scan_soon(t, 0);
            return t->now + SW_TRAINER_HEARTBEAT_MS;
        }
    }
    if (t->stage >= 0)
        return t->now + SW_TRAINER_HEARTBEAT_MS; /* the caller sets the stage up */
    nwait = confirm(t);
    if (nwait && t->now - t->phase_ms < (uint64_t)t->o.dead_ms + SW_TRAINER_SCAN_MS) {
        trainer_scan_soon(t, SW_TRAINER_SCAN_MS);
        return t->now + SW_TRAINER_HEARTBEAT_MS;
    }
    choose(t, nwait);
    return t->now;
}

/* ---- what comes in ---- */

void
sw_trainer_scanned(struct sw_trainer *t, uint64_t now, int status, const struct sw_peer_rec *recs,
                   int n, const uint8_t (*gone)[32], int ngone, uint64_t max_step)
{
    static struct sw_peer_rec alive[SW_PROTO_MAX_NODES];

    t->now = now;
    t->scan_busy = false;
    if (t->phase == SW_PHASE_CLOSED)
        return;
    if (status < 0) {
        SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "cannot read the stages from the DHT: %s",
                           sw_strerror(status));
        return;
    }
    t->nscan++;
    n = sw_live_scan(&t->live, now, recs, SW_MIN(n, SW_PROTO_MAX_NODES), gone, ngone,
                     SW_TRAINER_SCAN_MS, alive);
    /* only records whose node proved it serves their endpoint count (live.h,
     * Proof), and none of a source whose copy was refused lately (recover.h) */
    t->nproving = sw_live_prove(&t->live, now, alive, n);
    t->ndir = t->nunproven = 0;
    memset(t->distrusted_stage, 0, (size_t)t->S * sizeof(bool));
    memset(t->proving_stage, 0, (size_t)t->S * sizeof(bool));
    for (int i = 0; i < n; i++) {
        const struct sw_peer_rec *r = &alive[i];
        if (!sw_live_proven(&t->live, r->pk, r->ep)) {
            t->nunproven++;
            if (sw_rec_training(r->state) && sw_live_proving(&t->live, r->pk, r->ep, now))
                t->proving_stage[r->stage] = true;
            continue;
        }
        if (memcmp(r->pk, t->pk, 32) && sw_recover_distrusted(t, r->pk)) {
            /* not a source now, but its stage is not empty (recover.c) */
            if (sw_rec_training(r->state))
                t->distrusted_stage[r->stage] = true;
            continue;
        }
        if (sw_rec_has_state(r->state) && r->hash[0])
            sw_live_attest(&t->live, r->pk, r->stage, r->step, r->hash);
        t->dir[t->ndir++] = *r;
    }
    if (t->nunproven)
        SW_LOG_RATELIMITED(SW_LOG_INFO, 30000, "%d stage records are unproven (their node has not "
                           "answered a ping at their endpoint yet): not counted", t->nunproven);
    t->scan_ok_ms = now;
    /* a stage seen with a node in the run, a syncing one included: when
     * that node is gone the stage is empty (a node that rebuilt its stage
     * while the others were still getting theirs must see the run lost
     * when they leave: sim seed 2109 ran on alone for good) */
    if (trainer_in_run(t))
        for (int i = 0; i < t->ndir; i++)
            if (sw_rec_in_run(t->dir[i].state))
                t->seen_stage[t->dir[i].stage] = true;
    /*
     * The run's step as the proven records tell.  A record's step is
     * corroborated when another node (this one included) reached it too;
     * the corroborated steps, this node's own and, when two proven nodes
     * left (one: when it is one past), the leaving records' max_step (the
     * run's end), or max_step when no other node is proven once every record
     * was tried (the run left: a newcomer must not take it for one not
     * started), only ever grow (run_mono).  A lone record's claim counts,
     * for a node not in the run yet, while it is in the table (a source
     * whose copy was refused drops out), and never as the run's end.
     */
    {
        uint64_t mono = SW_MAX(t->run_mono, t->step), claim = 0;
        bool alone = true;
        int left = 0;
        for (int i = 0; i < t->ndir; i++) {
            const struct sw_peer_rec *r = &t->dir[i];
            uint64_t others = t->step;
            if (!memcmp(r->pk, t->pk, 32))
                continue;
            alone = false;
            for (int j = 0; j < t->ndir; j++)
                if (j != i && memcmp(t->dir[j].pk, t->pk, 32))
                    others = SW_MAX(others, t->dir[j].step);
            claim = SW_MAX(claim, r->step);
            if (r->step <= others)
                mono = SW_MAX(mono, r->step);
        }
        if (alone && !t->nproving)
            mono = SW_MAX(mono, max_step);
        for (int i = 0; i < ngone; i++) {
            struct sw_live_peer *p = sw_live_find(&t->live, gone[i]);
            left += p && p->proven;
        }
        if (left >= 2 || (left && max_step <= mono + 1))
            mono = SW_MAX(mono, max_step);
        t->run_mono = mono;
        if (claim >= (uint64_t)t->man->steps)
            claim = t->man->steps ? (uint64_t)t->man->steps - 1 : 0;
        /* a node in the run follows corroborated steps only: a lone record
         * ahead does not make it copy its state again */
        t->run_step = trainer_in_run(t) ? mono : SW_MAX(mono, claim);
    }
    if (!t->scan1_ms)
        t->scan1_ms = now;
    /* ready once every record was proven or failed its tries (a newcomer that saw no
     * proven node yet must not take the run for one not started) */
    if (!t->nproving || now - t->scan1_ms > (uint64_t)t->o.dead_ms + SW_TRAINER_SCAN_MS)
        t->dir_ok = true;
}

/* pk is a node of the step's plan, or the leader whose PREPARE it took. */
static bool
of_step(struct sw_trainer *t, const uint8_t *pk)
{
    return !memcmp(pk, t->st.prep.pk, 32) || sw_plan_has(&t->st.plan, pk);
}

void
sw_trainer_input(struct sw_trainer *t, uint64_t now, const struct sw_transport_msg *m)
{
    t->now = now;
    if (t->phase == SW_PHASE_CLOSED || !t->ops)
        return;
    /* what acts on the step finds the update running apart done (step.h,
     * Compute apart): a FWD, BWD or GRAD of a node of the step, or a
     * STATE_GET (its answer is of a step and a hash); a PREPARE or GO waits
     * for it only when it changes the step (sw_step_on_prepare, _on_go), a
     * CheckFree+ replica is only put away, and a stranger's message never
     * ends it */
    if (t->st.phase == SW_STEP_UPDATING &&
        (m->hdr.type == SW_MSG_STATE_GET ||
         (m->hdr.type != SW_MSG_PREPARE && m->hdr.type != SW_MSG_GO &&
          m->hdr.type != SW_MSG_REPLICA && of_step(t, m->hdr.sender))))
        sw_step_settle(t);
    switch (m->hdr.type) {
    case SW_MSG_PREPARE:
        sw_step_on_prepare(t, m);
        break;
    case SW_MSG_GO:
        sw_step_on_go(t, m);
        break;
    case SW_MSG_FWD:
        sw_step_on_fwd(t, m);
        break;
    case SW_MSG_BWD:
        sw_step_on_bwd(t, m);
        break;
    case SW_MSG_GRAD:
        sw_step_on_grad(t, m);
        break;
    case SW_MSG_GRAD_ASK:
        sw_step_on_grad_ask(t, m);
        break;
    case SW_MSG_REPLICA:
        sw_step_on_replica(t, m);
        break;
    case SW_MSG_STATE_GET:
        sw_recover_on_state_get(t, m);
        break;
    default:
        if (t->env->drop)
            t->env->drop(t->env->arg, SW_WIRE_DROP_TYPE);
        break;
    }
}

void
sw_trainer_response(struct sw_trainer *t, uint64_t now, uint64_t tag, int status,
                    const struct sw_transport_msg *m)
{
    uint64_t v = tag & ((1ull << 56) - 1);

    t->now = now;
    if (t->phase == SW_PHASE_CLOSED)
        return;
    switch (tag >> 56) {
    case SW_TAG_PING:
        sw_live_pong(&t->live, now, v, status, m ? m->hdr.sender : NULL);
        break;
    case SW_TAG_READY:
        sw_lead_ready(t, v, status, m);
        break;
    case SW_TAG_EARLY:
        sw_lead_early(t, v, status, m);
        break;
    case SW_TAG_FETCH:
        sw_recover_fetched(t, v, status, m);
        break;
    case SW_TAG_ATTEST:
        sw_recover_attest_answer(t, v, status, m);
        break;
    }
}

void
sw_trainer_probed(struct sw_trainer *t, const uint8_t *pk, bool refused)
{
    if (t->phase != SW_PHASE_CLOSED)
        sw_live_probed(&t->live, pk, refused);
}

void
sw_trainer_probe_connected(struct sw_trainer *t, const uint8_t *pk, uint64_t now)
{
    if (t->phase != SW_PHASE_CLOSED)
        sw_live_connected(&t->live, pk, now);
}

void
sw_trainer_computed(struct sw_trainer *t, uint64_t now, int err, float loss)
{
    t->now = now;
    if (t->phase != SW_PHASE_CLOSED && t->ops && !sw_recover_computed(t, err))
        sw_step_computed(t, err, loss);
}

void
sw_trainer_put_done(struct sw_trainer *t)
{
    if (t->phase == SW_PHASE_LEAVING)
        t->put_done = true;
}

/* ---- time ---- */

/*
 * TRAINING behind a run whose last step is done elsewhere: planned out of
 * the last steps, or a copy of a state a moment before its source finished
 * (no GO will come for its step: after dead_ms of that), or in the last
 * step when a stage that must finish it with it left or died after the
 * last stage was done (nothing recovers such a stage: after as long as a
 * stalled step waits).  The run is over for it too.
 */
static void
finished_elsewhere(struct sw_trainer *t)
{
    uint64_t wait = sw_step_busy(&t->st) ? SW_LEAD_STALL_MS : (uint64_t)t->o.dead_ms;

    if (!trainer_in_run(t) || t->run_step < (uint64_t)t->man->steps ||
        t->step >= (uint64_t)t->man->steps) {
        t->behind_ms = 0;
        return;
    }
    if (!t->behind_ms)
        t->behind_ms = t->now;
    if (t->now - t->behind_ms < wait)
        return;
    sw_log(SW_LOG_INFO, "the run is finished (its %d steps are done) and this node is at step "
           "%llu: nothing more to train", t->man->steps, (unsigned long long)t->step);
    sw_step_reset(t);
    trainer_set_phase(t, SW_PHASE_DONE);
}

/*
 * Two states of one stage at one step: two newcomers rebuilt the stage at
 * once, or a node cut off came back.  Replicas must be bit-identical, so
 * the node with the higher key gives its state up and copies the other's
 * (the stage records carry each node's step and parameter hash); but not
 * for a record the last plan it was named in did not name (a record is a
 * claim: a stranger's, in an open run; the leader plans one state per
 * stage, and a node left out of a plan copies the planned one anyway).
 */
static void
diverged(struct sw_trainer *t)
{
    char who[13];

    if (!trainer_in_run(t) || sw_step_busy(&t->st) || !t->hash[0])
        return;
    for (int i = 0; i < t->ndir; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        if (r->stage != t->stage || !sw_rec_training(r->state) || r->step != t->step ||
            !r->hash[0] || !strcmp(r->hash, t->hash) || memcmp(r->pk, t->pk, 32) >= 0 ||
            trainer_gone(t, r->pk))
            continue;
        /* nor for a node whose copy it refused a moment ago: the sync would
         * find no source, resume this state, and come back here at once (a
         * livelock: three newcomers rebuilt stage 1 at one step, sim seed
         * 3997); it tries that node again once the distrust ends */
        if (sw_recover_distrusted(t, r->pk))
            continue;
        /* a stage-0 node that a plan named does not give its state up for
         * a record no plan named: a stranger's in an open run (lead.h,
         * "Candidates"); two newcomers, neither planned yet, still agree */
        if (r->stage == 0 && sw_lead_seen(t, t->pk) && !sw_lead_seen(t, r->pk))
            continue;
        /* nor does a node of any stage that the last plan it took named,
         * for a record of its stage that plan did not name (50 fake
         * records, one serving its endpoint, stalled the run 30 s by
         * sending the real node copying from it: the attack bench's 4) */
        if (t->st.plan.cnt[t->stage] > 0 && sw_plan_find(&t->st.plan, t->stage, t->pk) >= 0 &&
            sw_plan_find(&t->st.plan, t->stage, r->pk) < 0)
            continue;
        sw_log(SW_LOG_WARN, "stage %d has two states at step %llu (this node's hash %s, node "
               "%s's %s): copying the other's", t->stage, (unsigned long long)t->step, t->hash,
               sw_proto_who(who, r->pk), r->hash);
        sw_recover_resync(t);
        return;
    }
}

/*
 * In the run and idle, behind a live node of another stage, with no other
 * node of its stage training: the source of its copy died before the
 * leader planned it, or the run went on without it.  No PREPARE comes for
 * its step (the leader waits, paused, for this very stage) and no copy can
 * bring it up, so once that lasted dead_ms it recovers the stage again
 * (recover.h: CheckFree(+), a checkpoint, or its own older state at the
 * step in progress when nothing else can).  A joining stage-0 node: lead.c
 * (joining_alone) already does.
 */
static void
behind_alone(struct sw_trainer *t)
{
    bool ahead = false;

    if (!trainer_in_run(t) || sw_step_busy(&t->st) || t->st.prep.pending ||
        (t->stage == 0 && t->phase == SW_PHASE_JOINING)) {
        t->alone_ms = 0;
        return;
    }
    for (int i = 0; i < t->ndir; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        if (!memcmp(r->pk, t->pk, 32) || trainer_gone(t, r->pk))
            continue;
        if (r->stage == t->stage && sw_rec_training(r->state)) {
            t->alone_ms = 0;
            return;
        }
        ahead |= r->stage != t->stage && sw_rec_training(r->state) && r->step > t->step;
    }
    if (!ahead) {
        t->alone_ms = 0;
        return;
    }
    if (!t->alone_ms)
        t->alone_ms = t->now;
    if (t->now - t->alone_ms < (uint64_t)t->o.dead_ms)
        return;
    t->alone_ms = 0;
    sw_log(SW_LOG_WARN, "behind the run (step %llu, run at %llu) and the last other node of "
           "stage %d gone: recovering the stage again", (unsigned long long)t->step,
           (unsigned long long)t->run_step, t->stage);
    sw_recover_resync(t);
}

/* ---- rebalancing (trainer.h) ---- */

/* The nodes and capacity of each stage as the table tells (cap[S], cnt[S]);
 * false when a node of the run is not training, or is about to move (a join
 * or a move is under way: one at a time).  A node that has not measured its capacity yet
 * counts with the median of the others'. */
static bool
stage_capacity(struct sw_trainer *t, int *cnt, double *cap)
{
    double known[SW_PROTO_MAX_NODES], med = 0;
    int nk = 0;

    for (int i = 0; i < t->ndir; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        if (r->state == SW_REC_LEAVING || r->state == SW_REC_DONE || trainer_gone(t, r->pk))
            continue;
        if (r->state != SW_REC_TRAINING || (r->moving && memcmp(r->pk, t->pk, 32)))
            return false;
        if (r->cap > 0 && isfinite(r->cap))
            known[nk++] = r->cap;
    }
    for (int i = 1; i < nk; i++) /* insertion sort: at most a few dozen */
        for (int j = i; j > 0 && known[j] < known[j - 1]; j--) {
            double x = known[j];
            known[j] = known[j - 1];
            known[j - 1] = x;
        }
    if (nk)
        med = known[nk / 2];
    for (int i = 0; i < t->ndir; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        if (r->state != SW_REC_TRAINING || trainer_gone(t, r->pk))
            continue;
        cnt[r->stage]++;
        cap[r->stage] += r->cap > 0 && isfinite(r->cap) ? r->cap : med;
    }
    return true;
}

/* This node's rank among its stage's nodes, highest key first (the order
 * in which they may move). */
static int
move_rank(const struct sw_trainer *t)
{
    int rank = 0;

    for (int i = 0; i < t->ndir; i++)
        if (t->dir[i].stage == t->stage && t->dir[i].state == SW_REC_TRAINING &&
            memcmp(t->dir[i].pk, t->pk, 32) > 0)
            rank++;
    return rank;
}

/* The stage a move of this node would go to (-1: none) as the table tells
 * now; seen gets the stages' "nodes/capacity" for the log ("" when a join
 * or a move is under way). */
static int
rebalance_target(struct sw_trainer *t, char *seen, size_t len)
{
    const struct sw_manifest *m = t->man;
    int *cnt = sw_calloc((size_t)t->S, sizeof(int)), to = -1;
    double *cap = sw_calloc((size_t)t->S, sizeof(double)), bal = -1;

    seen[0] = '\0';
    if (cnt && cap && stage_capacity(t, cnt, cap)) {
        double mine = t->cap > 0 ? t->cap : cap[t->stage] / SW_MAX(cnt[t->stage], 1);
        to = sw_plan_rebalance(t->S, cnt, cap, t->stage, mine, m->balance_threshold, &bal);
        t->balance = bal;
        stages_seen(seen, len, t->S, cnt, cap);
    }
    sw_free(cnt);
    sw_free(cap);
    return to;
}

/* TRAINING: should this node move (it then drains: READY "not ready")? */
static void
rebalance_check(struct sw_trainer *t)
{
    const struct sw_manifest *m = t->man;
    uint64_t wait;
    char seen[512];
    int to;

    if (m->balance_threshold <= 0 || t->phase != SW_PHASE_TRAINING || !t->dir_ok ||
        t->now - t->scan_ok_ms > 2000 || t->run_step >= (uint64_t)m->steps)
        return;
    to = rebalance_target(t, seen, sizeof(seen));
    /* --stage N never moves; nor the leader, nor a node in its cool-down */
    if (to < 0 || !t->o.movable || sw_lead_is_leader(t) ||
        t->now - t->stage_ms < (uint64_t)m->balance_cooldown * 1000) {
        t->imb_ms = 0;
        return;
    }
    if (!t->imb_ms)
        t->imb_ms = t->now;
    /* a scan finished after the hold, and the move still helps with it:
     * another node of the stage that moved meanwhile is seen */
    wait = (uint64_t)m->balance_hold * 1000 * (1 + (uint64_t)move_rank(t));
    if (t->now - t->imb_ms < wait || t->scan_ok_ms < t->imb_ms + wait)
        return;
    {
        char f[640], q[560];
        snprintf(f, sizeof(f), "\"from\":%d,\"to\":%d,\"balance\":%.4f,\"stages\":%s", t->stage,
                 to, t->balance, sw_json_str(q, sizeof(q), seen));
        sw_log_event(SW_LOG_INFO, "rebalance", f, "rebalance: balance %.2f below %.2f for %llu s "
                     "(stages' nodes/tokens per s: %s): leaving stage %d for stage %d once out "
                     "of the plan", t->balance, (double)m->balance_threshold,
                     (unsigned long long)((t->now - t->imb_ms) / 1000), seen, t->stage, to);
    }
    t->move_to = to;
    t->move_refused = false;
    trainer_announce(t); /* "mv": no other node starts a move meanwhile */
}

/* Out of the plan (it answered "not ready" and no step runs): the stage is
 * given up and the new one chosen; the caller sets it up, SYNC copies it. */
static void
move(struct sw_trainer *t, bool rebalancing)
{
    int from = t->stage, err;

    t->moved_from = from;
    stage_release(t);
    if ((err = sw_plan_init(&t->st.plan, t->S, t->M)) < 0) {
        trainer_fail(t, err, "rebalance");
        return;
    }
    t->snap_want = 0;
    t->snap_have = t->rep_have = t->rep_in_on = false;
    t->rep_numel = 0;
    t->ops = NULL;
    t->model = NULL;
    t->numel = 0;
    t->hash[0] = '\0';
    memset(t->phash, 0, sizeof(t->phash));
    t->last_loss = -1;
    t->stage = t->move_to;
    t->move_to = -1;
    t->move_refused = false;
    t->move_wait = rebalancing;
    t->imb_ms = 0;
    if (!rebalancing) {
        t->moved_from = -1; /* it had no state of the stage it left */
        trainer_set_phase(t, SW_PHASE_CHOOSE);
        return;
    }
    t->moves++;
    {
        char f[96];
        snprintf(f, sizeof(f), "\"from\":%d,\"to\":%d,\"step\":%llu", from, t->stage,
                 (unsigned long long)t->step);
        sw_log_event(SW_LOG_INFO, "moved", f, "rebalance: left stage %d at step %llu; stage %d "
                     "next", from, (unsigned long long)t->step, t->stage);
    }
    trainer_set_phase(t, SW_PHASE_CHOOSE);
}

static void unstack(struct sw_trainer *t);

static void
rebalance(struct sw_trainer *t)
{
    if (trainer_in_run(t))
        t->moved_from = -1; /* settled on its stage */
    unstack(t);
    if (t->phase == SW_PHASE_CHOOSE)
        return;
    if (t->move_to < 0) {
        rebalance_check(t);
        return;
    }
    if (t->phase != SW_PHASE_TRAINING) {
        t->move_to = -1; /* stopping, done, or copying again: stay */
        return;
    }
    if (!t->move_refused || sw_step_busy(&t->st) || t->st.prep.pending)
        return;
    /* out of the plan: does the move still help?  (a node died meanwhile,
     * the target may have no node left to copy from) */
    {
        char seen[512];
        if (rebalance_target(t, seen, sizeof(seen)) != t->move_to) {
            sw_log(SW_LOG_INFO, "rebalance: staying on stage %d: the move to stage %d no longer "
                   "helps (stages' nodes/tokens per s: %s)", t->stage, t->move_to, seen);
            t->move_to = -1;
            t->imb_ms = 0;
            trainer_announce(t); /* no "mv" any more */
            return;
        }
    }
    move(t, true);
}

/*
 * --stage auto: two newcomers that chose at once (neither saw the other's
 * record) may take one stage and leave another empty; the run cannot start
 * or go on then.  When this node's stage has another node of the run and a
 * stage has none, of the stage's nodes that may still move (syncing, or
 * holding only the seed's state of a run that has not taken a step) the
 * one with the highest key moves to the empty stage: exactly one, since
 * every node reads the same records (a later round moves the next one if
 * need be; the k-th by key k dead times later, in case those before it were
 * started with --stage N).  Its own record must be in the table first (the
 * others see it).  A stage the leader's record says it waits for ("nd":
 * none of its nodes answered ready) counts as empty, and a joining node
 * (a copy that has not taken a step yet) may move too.
 */
static void
unstack(struct sw_trainer *t)
{
    bool fresh = t->run_step == 0 && t->step == 0;
    /* a copy that has not taken a step yet moves only where the leader waits */
    bool joining = t->trained && !fresh;
    bool *have;
    int others = 0, to = -1, rank = 0, jrank = 0;
    bool waited = false; /* to: where the leader waits (else a stage without a record) */

    if (t->o.stage >= 0 || !t->ops || (joining && t->phase != SW_PHASE_JOINING) ||
        sw_step_busy(&t->st) || t->st.prep.pending || !(trainer_syncing(t) || trainer_in_run(t)) || t->phase == SW_PHASE_RESTORE ||
        t->move_to >= 0 || !t->dir_ok ||
        t->now - t->scan_ok_ms > 2000 || !trainer_dir_find(t, t->pk) ||
        !(have = sw_calloc((size_t)t->S, sizeof(bool)))) {
        t->unstack_ms = 0;
        return;
    }
    for (int i = 0; i < t->ndir; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        if (!sw_rec_in_run(r->state) || trainer_gone(t, r->pk))
            continue;
        have[r->stage] = true;
        if (r->stage != t->stage || !memcmp(r->pk, t->pk, 32))
            continue;
        others++;
        /* a node of the stage that may move too, with a higher key: it
         * moves first (a record does not say whether its node was started
         * with --stage auto: one that was not never moves, so the next in
         * rank moves a dead time later if the stage is still doubled) */
        if ((r->state == SW_REC_SYNCING || (fresh && r->step == 0)) && memcmp(r->pk, t->pk, 32) > 0)
            rank++;
        if ((r->state == SW_REC_SYNCING || r->state == SW_REC_JOINING) && memcmp(r->pk, t->pk, 32) > 0)
            jrank++;
    }
    for (int st = t->S - 1; st >= 0 && !joining; st--)
        if (!have[st])
            to = st;
    sw_free(have);
    if (to < 0) {
        /* no stage without a record, but the leader waits for one whose
         * nodes answer no PREPARE (records a stranger keeps alive: lead.h,
         * need): that one is as good as empty */
        int need = trainer_lead_need(t, false);
        if (need >= 0 && need != t->stage) {
            to = need;
            rank = jrank;
            waited = true;
        }
    }
    /* nor, to a stage without a record, once it answered READY for the
     * step and its GO has not come: the plan would name it on the stage it
     * left, whose FWDs it drops, and the step stalls to its restart (sim
     * --harsh 1619: 30 s at step 0).  The stage the leader waits for is
     * taken all the same: no GO comes until a node serves it (t0383) */
    if (others == 0 || to < 0 ||
        (!waited && t->st.ready_step == t->step + 1 && t->st.go_step != t->step + 1)) {
        t->unstack_ms = 0;
        return;
    }
    if (!t->unstack_ms)
        t->unstack_ms = t->now;
    if (t->now - t->unstack_ms < (uint64_t)rank * (uint64_t)t->o.dead_ms)
        return;
    t->unstack_ms = 0;
    {
        char f[96];
        snprintf(f, sizeof(f), "\"from\":%d,\"to\":%d,\"nodes\":%d", t->stage, to, others + 1);
        sw_log_event(SW_LOG_INFO, "unstacked", f, "stage auto: stage %d has %d nodes and stage %d "
                     "%s: this one (the highest key that may move) takes stage %d", t->stage,
                     others + 1, to, waited ? "answers none of the leader's PREPAREs" : "none", to);
    }
    t->move_to = to;
    move(t, false);
}

/* LEAVING, STOPPING, DONE: the way out; true when nothing else is to do. */
static bool
exit_tick(struct sw_trainer *t, uint64_t *wake)
{
    uint64_t now = t->now;

    if (t->phase == SW_PHASE_LEAVING) {
        if (t->put_done || now - t->phase_ms > SW_TRAINER_LEAVE_WAIT_MS)
            trainer_set_phase(t, SW_PHASE_CLOSED);
        *wake = t->phase_ms + SW_TRAINER_LEAVE_WAIT_MS + 1;
        return true;
    }
    if (t->phase == SW_PHASE_STOPPING) {
        if (!sw_step_busy(&t->st) || now - t->phase_ms > 10000 || t->exit_code)
            leave(t);
        return true;
    }
    if (t->phase == SW_PHASE_DONE && t->o.exit_at_end &&
        now - t->phase_ms > (uint64_t)t->o.linger_ms) {
        leave(t);
        return true;
    }
    return false;
}

uint64_t
sw_trainer_tick(struct sw_trainer *t, uint64_t now)
{
    uint64_t wake = now + SW_TRAINER_HEARTBEAT_MS;
    uint64_t pub_every = (uint64_t)t->live.pub_every;

    t->now = now;
    if (t->phase == SW_PHASE_CLOSED)
        return UINT64_MAX;
    if (t->phase <= SW_PHASE_CHOOSE)
        return join_tick(t);
    if (exit_tick(t, &wake))
        return t->phase == SW_PHASE_CLOSED ? UINT64_MAX : SW_MIN(wake, now + 50);
    if (trainer_in_run(t))
        t->trained = true;
    finished_elsewhere(t);
    diverged(t);
    behind_alone(t);
    rebalance(t);
    if (t->phase == SW_PHASE_CHOOSE)
        return now; /* moved: the caller sets the new stage up */
    if (sw_step_tick(t))
        wake = now; /* pieces of the partial left to send */
    if (now - t->pub_ms >= pub_every || rec_state(t) != t->pub_state)
        trainer_announce(t);
    wake = SW_MIN(wake, t->pub_ms + pub_every);
    trainer_scan_soon(t, SW_TRAINER_SCAN_MS);
    wake = SW_MIN(wake, t->scan_ms + SW_TRAINER_SCAN_MS);
    wake = SW_MIN(wake, sw_recover_tick(t));
    sw_recover_check_lost(t);
    if (t->phase == SW_PHASE_STOPPING)
        return now;
    wake = SW_MIN(wake, sw_lead_tick(t));
    if (t->phase == SW_PHASE_DONE && t->o.exit_at_end)
        wake = SW_MIN(wake, t->phase_ms + (uint64_t)t->o.linger_ms + 1);
    return wake > now ? wake : now + 1;
}
