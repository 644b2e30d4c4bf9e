/*
 * recover.c - where a stage's state comes from, and the STATE_GET server
 * (see recover.h).
 */
#include "sw.h"

#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "trainer.h"

#define EP SW_PROTO_EP_MAX
#define STATE_WINDOW 8 /* STATE pieces (4 MiB) in flight per source */

void
sw_recover_release(struct sw_trainer *t)
{
    struct sw_recover *rc = &t->rc;

    for (int i = 0; i < 2; i++)
        sw_free_big(rc->buf[i]);
    sw_free(rc->restore);
    memset(rc, 0, sizeof(*rc));
}

/* rc->buf[i] of at least n floats (kept for the next recovery). */
static float *
buf_at_least(struct sw_trainer *t, int i, size_t n)
{
    struct sw_recover *rc = &t->rc;

    if (rc->cap[i] < n) {
        sw_free_big(rc->buf[i]);
        rc->cap[i] = 0;
        if (!(rc->buf[i] = sw_malloc_big(n * sizeof(float))))
            return NULL;
        rc->cap[i] = n;
    }
    return rc->buf[i];
}

void
sw_recover_resync(struct sw_trainer *t)
{
    t->rc.retry_ms = 0;
    t->rc.wait_ms = 0;
    trainer_set_phase(t, SW_PHASE_SYNC);
}

/* A state (copied, rebuilt, restored or drawn) is in: this stage trains
 * from t->step (a copy JOINING first: trainer.h), stage 0 reading that
 * step's batches; false when it cannot (the trainer failed). */
static bool
trained_from_here(struct sw_trainer *t, bool copied)
{
    int err;

    if (t->stage == 0 && (err = t->ops->data_seek(t->model, t->step)) < 0) {
        trainer_fail(t, err, "data");
        return false;
    }
    t->rc.wait_ms = t->rc.lost_wait_ms = t->rc.lost_seen_ms = 0;
    trainer_hash(t);
    sw_step_reset(t);
    trainer_set_phase(t, t->step >= (uint64_t)t->man->steps ? SW_PHASE_DONE
                         : copied                            ? SW_PHASE_JOINING
                                                             : SW_PHASE_TRAINING);
    return true;
}

/* The recovery event (status.h). */
static void
recovered(struct sw_trainer *t, const char *method, const char *from, uint64_t bytes)
{
    t->recoveries++;
    snprintf(t->rec_method, sizeof(t->rec_method), "%s", method);
    snprintf(t->rec_from, sizeof(t->rec_from), "%.*s", (int)sizeof(t->rec_from) - 1, from);
    t->rec_bytes = bytes;
    t->rec_s = (double)(t->now - t->rc.t0_ms) / 1000.0;
}

/* The fields of the recovery event (swarmd(1), OUTPUT): the stage, how, from
 * where (endpoints, comma-separated), the bytes fetched, the milliseconds it
 * took, the step the node resumes at, then EXTRA (",..." or ""). */
static const char *
rec_fields(char *buf, size_t len, int stage, const char *method, const char *from,
           uint64_t bytes, double ms, uint64_t step, const char *extra)
{
    char m[40], f[2 * (2 * EP + 8)];

    snprintf(buf, len, "\"stage\":%d,\"method\":%s,\"from\":%s,\"bytes\":%llu,\"ms\":%.0f,"
             "\"step\":%llu%s", stage, sw_json_str(m, sizeof(m), method),
             sw_json_str(f, sizeof(f), from), (unsigned long long)bytes, ms,
             (unsigned long long)step, extra);
    return buf;
}

/* After the state changed: the record says so at once, a waiting PREPARE is answered. */
static void
announce_state(struct sw_trainer *t)
{
    trainer_announce(t);
    sw_step_answer_prepare(t);
}

static void hist_note(struct sw_trainer *t);

/* ---- 1: a copy of a live replica ---- */

static void
copy_start(struct sw_trainer *t, const struct sw_peer_rec *src)
{
    struct sw_recover *rc = &t->rc;
    struct sw_fetch_src *s = &t->fetch.src[0];
    float *buf = buf_at_least(t, 0, 3 * t->numel);
    char kept[96] = "";

    if (!buf) {
        trainer_fail(t, -SW_ENOMEM, "state copy");
        return;
    }
    rc->t0_ms = t->now;
    rc->verify = false;
    rc->rec_step = src->step;
    trainer_set_phase(t, SW_PHASE_COPY);
    sw_fetch_config(&t->fetch, STATE_WINDOW, 5000, 1);
    sw_fetch_src_set(&t->fetch, 0, src->ep, src->pk, t->stage, 0, 3, t->numel, -1, buf);
    /* what the last copy of the stage left (recover.h, Kept pieces); the
     * fetch forgets it when that copy was of another stage (its set-up) */
    s->keep = rc->carry && s->have_step;
    rc->mixed = s->keep && (rc->mixed || memcmp(rc->carry_pk, src->pk, 32) != 0);
    if (s->keep) {
        snprintf(kept, sizeof(kept), "; keeping %.1f MB of step %llu from the last copy",
                 (double)s->got * sizeof(float) / 1e6, (unsigned long long)s->step);
    }
    rc->carry = false;
    sw_log(SW_LOG_INFO, "copying stage %d from %s (step %llu%s)", t->stage, src->ep,
           (unsigned long long)src->step, kept);
    if (sw_fetch_start(&t->fetch, 1, t->now) == SW_FETCH_FAILED)
        sw_recover_resync(t);
}

bool
sw_recover_distrusted(const struct sw_trainer *t, const uint8_t *pk)
{
    for (int i = 0; i < SW_RECOVER_DISTRUST; i++)
        if (t->rc.distrust[i].until_ms > t->now && !memcmp(t->rc.distrust[i].pk, pk, 32))
            return true;
    return false;
}

/* pk is in the n first entries of list. */
static bool
pk_listed(const uint8_t (*list)[32], int n, const uint8_t *pk)
{
    for (int k = 0; k < n; k++)
        if (!memcmp(list[k], pk, 32))
            return true;
    return false;
}

static uint64_t lead_step(const struct sw_trainer *t);

/*
 * Record lag: the steps a run takes between two publications
 * of a record, as the records' throughputs tell (sw_trainer_records_tps
 * over the step's tokens), at most 4 SW_RECOVER_AHEAD
 * (throughputs are claims too).  Honest records of a fast run differ by
 * about that many steps: a tiny model steps every 50 ms, a record goes out
 * every second.
 */
static uint64_t
record_lag(const struct sw_trainer *t)
{
    double tps = sw_trainer_records_tps(t), steps;

    if (tps <= 0 || !t->M || !t->N)
        return 0;
    steps = (double)sw_live_pub_every(t->o.dead_ms) * tps / (1000.0 * (double)t->M * (double)t->N);
    return (uint64_t)SW_MIN(steps, 4.0 * SW_RECOVER_AHEAD);
}

/*
 * A record whose step is more than SW_RECOVER_LONE past every other
 * record's, this node's own and the leader's: a claim of its own, not a
 * stage-mate that can vouch for a copy, veto one or hold one back.  In an
 * open run a stranger publishes such a record and answers every hash
 * question with its own hash: counted, it vetoed the honest copy (t0387
 * failed so in CI: "1 other node(s) attest another hash at that step").
 */
static bool
claim_alone(const struct sw_trainer *t, const struct sw_peer_rec *r)
{
    uint64_t top = SW_MAX(t->step, lead_step(t));

    for (int i = 0; i < t->ndir; i++)
        if (&t->dir[i] != r && memcmp(t->dir[i].pk, t->pk, 32) &&
            sw_rec_has_state(t->dir[i].state))
            top = SW_MAX(top, t->dir[i].step);
    return r->step > top + SW_RECOVER_LONE;
}

/* Nodes of the run, this one and src aside, that could vouch for src's
 * state or serve it: of the stage (a copy source; not those that said they
 * cannot tell, nor with behind those that said they have not reached the
 * step), and of any stage (the highest step). */
static int
copy_others(struct sw_trainer *t, const uint8_t *src, bool behind, uint64_t *max_step,
            uint64_t *max_other)
{
    int n = 0;

    *max_other = 0;
    *max_step = t->hash[0] ? t->step : 0;
    for (int i = 0; i < t->ndir; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        if (!memcmp(r->pk, t->pk, 32) || !memcmp(r->pk, src, 32) || trainer_gone(t, r->pk) ||
            !sw_rec_has_state(r->state))
            continue;
        *max_step = SW_MAX(*max_step, r->step);
        *max_other = SW_MAX(*max_other, r->step);
        /* a lone claim still counts in the steps (a fast run's records lag
         * by many steps, and one ahead of the others is no lie: t0399
         * refused every copy and left with exit 5 when it did not), but
         * not as a stage-mate that could vouch (claim_alone) */
        if (r->stage == t->stage && sw_rec_training(r->state) && !claim_alone(t, r))
            n += !pk_listed(t->rc.unk, t->rc.nunk, r->pk) &&
                 !(behind && pk_listed(t->rc.behind, t->rc.nbehind, r->pk));
    }
    return n;
}

/* The copy (in the model) is taken: the node trains from its step. */
static void
copy_accept(struct sw_trainer *t, const char *why)
{
    const struct sw_fetch_src *src = &t->fetch.src[0];
    uint64_t bytes = 3 * t->numel * sizeof(float);
    char ev[1024], kept[64] = "";

    t->rc.verify = false;
    t->step = src->step;
    t->last_norm = src->norm;
    if (!trained_from_here(t, true))
        return;
    hist_note(t);
    if (src->kept)
        snprintf(kept, sizeof(kept), "; %.1f MB of it kept from the last copy",
                 (double)src->kept * sizeof(float) / 1e6);
    sw_log(SW_LOG_INFO, "copied stage %d from %s at step %llu (hash %s; %s%s)", t->stage,
           src->ep, (unsigned long long)t->step, t->hash, why, kept);
    if (t->step > 0 && !t->trained) {
        /* a newcomer's recovery of the first kind: the exact state of a live replica */
        recovered(t, "copy", src->ep, bytes);
        sw_log_event(SW_LOG_INFO, "recovery",
                     rec_fields(ev, sizeof(ev), t->stage, "copy", t->rec_from, bytes,
                                t->rec_s * 1000, t->step, ""),
                     "recovery: stage %d method copy from %s: %llu bytes in %.0f ms, step %llu",
                     t->stage, src->ep, (unsigned long long)bytes, t->rec_s * 1000,
                     (unsigned long long)t->step);
    }
    announce_state(t);
}

/* pk is not copied from for SW_RECOVER_DISTRUST_MS (the oldest entry goes). */
static void
distrust(struct sw_trainer *t, const uint8_t *pk)
{
    struct sw_recover *rc = &t->rc;
    int b = 0;

    for (int i = 1; i < SW_RECOVER_DISTRUST; i++)
        if (rc->distrust[i].until_ms < rc->distrust[b].until_ms)
            b = i;
    memcpy(rc->distrust[b].pk, pk, 32);
    rc->distrust[b].until_ms = t->now + SW_RECOVER_DISTRUST_MS;
}

/* The copy is refused: the node's own state (if it had one) is back, the
 * source is not copied from for a while (not banned: a liar contradicting
 * an honest source must not get it banned). */
static void
copy_refuse(struct sw_trainer *t, const char *why)
{
    struct sw_recover *rc = &t->rc;
    const struct sw_fetch_src *src = &t->fetch.src[0];
    char who[13], f[512], q[256];
    int err;
    bool mixed = rc->mixed && src->kept > 0;

    rc->verify = false;
    rc->copies_refused++;
    /* pieces of two nodes: which one's do not match is not known (Kept pieces) */
    if (!mixed)
        distrust(t, src->pk);
    snprintf(f, sizeof(f), "\"stage\":%d,\"from\":\"%s\",\"step\":%llu,\"hash\":\"%s\",\"why\":%s",
             t->stage, sw_proto_who(who, src->pk), (unsigned long long)src->step,
             rc->verify_hash, sw_json_str(q, sizeof(q), why));
    sw_log_event(SW_LOG_WARN, "copy_refused", f, "refused the copy of stage %d from %s (node %s, "
                 "step %llu, hash %s): %s; %s%s", t->stage, src->ep, who,
                 (unsigned long long)src->step, rc->verify_hash, why,
                 rc->have_own ? "keeping this node's own state" : "trying another source",
                 mixed ? " (its pieces came from two nodes: neither is distrusted)" : "");
    if (rc->have_own) {
        struct sw_stage_scalars sc;
        t->ops->scalars(t->model, &sc);
        sc.t = rc->own_t;
        sc.lr_mult = rc->own_lr_mult;
        sc.last_norm = rc->own_norm;
        sc.last_norm_clipped = rc->own_normc;
        if ((err = t->ops->write(t->model, rc->buf[1], &sc)) < 0 ||
            (err = t->ops->zero_grad(t->model)) < 0) {
            trainer_fail(t, err, "state copy");
            return;
        }
        if (trained_from_here(t, false))
            announce_state(t);
        return;
    }
    sw_recover_resync(t);
    t->rc.retry_ms = t->now + SW_TRAINER_SCAN_MS;
}

/*
 * The attestations of others than src (and than sources refused lately)
 * for (stage, step): agreeing with hash, and not.  This node's own does not
 * count (it copies because its own state is in question), nor does a
 * contradiction by a node declared dead since: a state that only gone nodes
 * held is no longer the run's (a rebuild of the stage at that step replaced
 * it), and counting it would refuse the stage's only live lineage.
 */
static void
attest_count(struct sw_trainer *t, const uint8_t *src, uint64_t step, const char *hash,
             int *agree, int *disagree)
{
    const struct sw_live *lv = &t->live;

    *agree = *disagree = 0;
    for (int i = 0; i < lv->natt; i++) {
        const struct sw_live_attest *a = &lv->att[i];
        const struct sw_peer_rec *r;
        if (a->stage != t->stage || a->step != step || !memcmp(a->pk, src, 32) ||
            !memcmp(a->pk, t->pk, 32) || sw_recover_distrusted(t, a->pk) ||
            sw_live_banned(lv, a->pk, t->now))
            continue; /* a source refused lately vouches for nothing */
        if ((r = trainer_dir_find(t, a->pk)) && claim_alone(t, r))
            continue;
        if (!strcmp(a->hash, hash))
            (*agree)++;
        else if (!trainer_gone(t, a->pk))
            (*disagree)++;
    }
}

/* verify: asks the stage's other nodes their hash after the copied step. */
static void
copy_ask(struct sw_trainer *t)
{
    const struct sw_fetch_src *src = &t->fetch.src[0];
    struct sw_body *b = &t->body;
    int asked = 0;

    if (t->rc.ask_ms && t->now - t->rc.ask_ms < 500)
        return;
    t->rc.ask_ms = t->now;
    for (int i = 0; i < t->ndir && asked < 4; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        if (r->stage != t->stage || !sw_rec_training(r->state) || !memcmp(r->pk, t->pk, 32) ||
            !memcmp(r->pk, src->pk, 32) || trainer_gone(t, r->pk) ||
            sw_live_attested(&t->live, src->pk, t->stage, src->step, t->rc.verify_hash) ||
            r->step + SW_RECOVER_HIST < src->step || claim_alone(t, r))
            continue;
        sw_body_init(b);
        msgpack_pack_map(&b->pk, 5);
        sw_proto_pack_key(&b->pk, "stage");
        msgpack_pack_uint64(&b->pk, (uint64_t)t->stage);
        sw_proto_pack_key(&b->pk, "which");
        msgpack_pack_uint64(&b->pk, 0);
        sw_proto_pack_key(&b->pk, "off");
        msgpack_pack_uint64(&b->pk, 0);
        sw_proto_pack_key(&b->pk, "n");
        msgpack_pack_uint64(&b->pk, 0);
        sw_proto_pack_key(&b->pk, "hstep");
        msgpack_pack_uint64(&b->pk, src->step);
        if (trainer_request(t, r->ep, SW_MSG_STATE_GET, (uint64_t)SW_MAX(t->o.dead_ms / 3, 100),
                            0, SW_TAG(SW_TAG_ATTEST, src->step)) == 0)
            asked++;
    }
}

void
sw_recover_attest_answer(struct sw_trainer *t, uint64_t step, int status,
                         const struct sw_transport_msg *m)
{
    static const char *const keys[] = {"err", "stage", "step", "hash", NULL};
    msgpack_unpacked u;
    int64_t err;
    uint64_t stage, at;
    char hash[17];

    if (status < 0 || !m || !t->ops)
        return;
    if (!trainer_open(t, m, &u, keys))
        return;
    if (sw_proto_get_err(&u.data, &err) < 0 ||
        sw_proto_get_u64(&u.data, "stage", &stage) < 0 ||
        sw_proto_get_u64(&u.data, "step", &at) < 0) {
        trainer_reject(t, m, &u, SW_WIRE_DROP_MALFORMED, "malformed hash answer");
        return;
    }
    if (err == 0 && at == step && stage == (uint64_t)t->stage &&
        sw_proto_get_str(&u.data, "hash", hash, sizeof(hash)) == 0)
        sw_live_attest(&t->live, m->hdr.sender, (int)stage, step, hash);
    msgpack_unpacked_destroy(&u);
    if (!t->rc.verify || t->fetch.src[0].step != step)
        return;
    if ((err == -SW_ENOENT || err == -SW_EINVAL) && t->rc.nunk < 4 &&
        !pk_listed(t->rc.unk, t->rc.nunk, m->hdr.sender))
        /* it keeps no hash of that step (it got its state later) */
        memcpy(t->rc.unk[t->rc.nunk++], m->hdr.sender, 32);
    if (err == -SW_EAGAIN && t->rc.nbehind < 4 &&
        !pk_listed(t->rc.behind, t->rc.nbehind, m->hdr.sender))
        /* it has not reached that step (yet: it may still, and attest) */
        memcpy(t->rc.behind[t->rc.nbehind++], m->hdr.sender, 32);
}

/* The newest step the leader named to this node: the PREPARE it took, or
 * the plan of the step (both only from the leader: step.c, from_leader). */
static uint64_t
lead_step(const struct sw_trainer *t)
{
    uint64_t s = sodium_is_zero(t->st.prep.pk, 32) ? 0 : t->st.prep.step;

    return SW_MAX(s, t->st.plan.step);
}

/* COPY, the state fetched: is its hash attested (recover.h)? */
static void
copy_verify(struct sw_trainer *t)
{
    struct sw_recover *rc = &t->rc;
    const struct sw_fetch_src *src = &t->fetch.src[0];
    uint64_t max_step, max_other, reach, lag;
    int others = copy_others(t, src->pk, false, &max_step, &max_other), agree, disagree;
    char why[160];

    attest_count(t, src->pk, src->step, rc->verify_hash, &agree, &disagree);
    if (agree > disagree) {
        copy_accept(t, "attested by another node");
        return;
    }
    /* no one else can vouch: the stage's only other node (or the others
     * keep no hash of the step), at a step some
     * other node of the run has reached too (a record claiming a step ahead
     * of the run is no source).  A node that has a state of its own trades
     * it only for a copy at a step another node than the source and this
     * one reached, from a source whose state is not behind what its record
     * claimed (records lag a step, they never lead it: such a record lies) */
    bool alone = !disagree && src->step <= max_step &&
                 (!rc->have_own || (src->step <= max_other && src->step >= rc->rec_step &&
                                    src->step >= t->step));
    if (!others && alone) {
        copy_accept(t, "the stage's only other node: no one else can attest it");
        return;
    }
    /* a source far ahead of every other node (records lag by a publication:
     * SW_RECOVER_AHEAD steps is far) is refused at once.  On a loaded
     * machine a fast run's records lag by more than that: the step the
     * leader last asked of this node (a PREPARE or GO it took: from_leader,
     * step.c) is fresher, and a source within reach of it is waited for
     * (the records catch up, and alone above holds then) */
    /* A source whose record, when the copy began, claimed a step that
     * other nodes had reached, or within SW_RECOVER_LONE of it (not a lone
     * claim: claim_alone), is no liar: its state far ahead of the records
     * is a fast run's (a tiny model steps 25 times a second and records
     * are read twice a second: t0399 refused every copy at once, and the
     * newcomer never trained; t0345 in a CI run, its source's record one
     * step past the other's and its state 17, refused at once, then
     * distrusted, and the newcomer never trained), and is waited for too.
     * Both bounds grow by twice the record lag (record_lag): a record
     * refreshed every second lags a tiny model's run by tens of steps, and
     * honest records differ by as many (t0345 in CI again: the source's
     * record 8 steps past the other's, its state 18 past it, refused at
     * once; distrusted, the source was out of the table for 30 s, and the
     * newcomer, behind the run, resumed its own state at every PREPARE) */
    reach = SW_MAX(max_step, lead_step(t));
    lag = record_lag(t);
    if ((src->step <= reach + SW_RECOVER_AHEAD + 2 * lag ||
         rc->rec_step <= reach + SW_RECOVER_LONE + 2 * lag) &&
        t->now - rc->verify_ms < SW_RECOVER_ATTEST_MS(t->o.dead_ms)) {
        copy_ask(t);
        return;
    }
    /* the time is up: the stage's others that could vouch all said they
     * have not reached the step (behind the source, copying too?): the
     * source is the stage's only node at it, and refusing its copy would
     * fork the stage (this node resuming an older state beside it) */
    if (alone && !copy_others(t, src->pk, true, &max_step, &max_other)) {
        copy_accept(t, "the stage's other nodes have not reached that step: no one else can "
                    "attest it");
        return;
    }
    if (disagree)
        snprintf(why, sizeof(why), "%d other node(s) attest another hash at that step, %d this "
                 "one", disagree, agree);
    else if (rc->have_own && src->step < rc->rec_step)
        snprintf(why, sizeof(why), "its record claimed step %llu, its state is of step %llu",
                 (unsigned long long)rc->rec_step, (unsigned long long)src->step);
    else if (src->step > max_step)
        snprintf(why, sizeof(why), "its step is ahead of every other node's (%llu)",
                 (unsigned long long)max_step);
    else
        snprintf(why, sizeof(why), "no other node attested its hash within %llu ms",
                 (unsigned long long)SW_RECOVER_ATTEST_MS(t->o.dead_ms));
    copy_refuse(t, why);
}

/* n floats all zero (n > 0). */
static bool
all_zero(const float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0.0f)
            return false;
    return n > 0;
}

static void
copy_done(struct sw_trainer *t)
{
    struct sw_recover *rc = &t->rc;
    const struct sw_fetch_src *src = &t->fetch.src[0];
    struct sw_stage_scalars sc;
    uint8_t h[32];
    int err = 0;

    /* this node's own state aside first: a copy nobody vouches for gives it back */
    rc->have_own = t->hash[0] != '\0';
    if (rc->have_own) {
        float *own = buf_at_least(t, 1, 3 * t->numel);
        if (!own) {
            trainer_fail(t, -SW_ENOMEM, "state copy");
            return;
        }
        for (int w = 0; w < 3 && err >= 0; w++)
            err = t->ops->read(t->model, w, 0, t->numel, own + (size_t)w * t->numel);
        t->ops->scalars(t->model, &sc);
        rc->own_t = sc.t;
        rc->own_lr_mult = sc.lr_mult;
        rc->own_norm = sc.last_norm;
        rc->own_normc = sc.last_norm_clipped;
    }
    t->ops->scalars(t->model, &sc);
    sc.t = (int)src->t;
    sc.lr_mult = (float)src->lr_mult;
    /* the source's last gradient norm too: until this node takes a step of
     * its own, a CheckFree rebuild of a neighbour weighs it by that norm
     * (its STATE answers and its record report it), not by 0 */
    sc.last_norm = (float)src->norm;
    if (err < 0 || (err = t->ops->write(t->model, src->buf, &sc)) < 0 ||
        (err = t->ops->zero_grad(t->model)) < 0 || (err = t->ops->hash(t->model, h)) < 0) {
        trainer_fail(t, err, "state copy");
        return;
    }
    sw_identity_hex(rc->verify_hash, h, 8);
    rc->verify = true;
    rc->verify_ms = t->now;
    rc->ask_ms = 0;
    rc->nunk = rc->nbehind = 0;
    if (all_zero(src->buf, t->numel)) {
        /* no trained (nor initialised) stage has all-zero parameters: a
         * source that serves them is lying or broken, whoever attests them */
        copy_refuse(t, "its parameters are all zero");
        return;
    }
    copy_verify(t);
}

/* ---- 4: CheckFree and CheckFree+ ---- */

static void
rebuild_abort(struct sw_trainer *t, const char *why)
{
    sw_log(SW_LOG_WARN, "checkfree recovery of stage %d interrupted: %s; trying again", t->stage,
           why);
    t->rc.retry_ms = t->now + 1000;
    trainer_set_phase(t, SW_PHASE_SYNC);
}

static void neighbours(struct sw_trainer *t, bool *empty, const struct sw_peer_rec **nb,
                       bool *syncing);
static const struct sw_peer_rec *plus_source(const struct sw_trainer *t,
                                              const struct sw_peer_rec **nb);

/* Source i of a rebuild: slab which of r's stage (numel floats; 0: nothing). */
static int
rebuild_src(struct sw_trainer *t, int i, const struct sw_peer_rec *r, int which, size_t numel)
{
    float *buf = numel ? buf_at_least(t, i, numel) : NULL;

    if (numel && !buf)
        return -SW_ENOMEM;
    sw_fetch_src_set(&t->fetch, i, r->ep, r->pk, r->stage, which, 1, numel, -1, buf);
    return 0;
}

static bool
is_boundary(const struct sw_trainer *t)
{
    return t->stage == 0 || t->stage == t->S - 1;
}

/* Rebuilt by CheckFree+: a boundary stage and its partner (0 and 1, S-2 and
 * S-1) of a checkfree+ run; by plain CheckFree otherwise. */
static bool
by_plus(const struct sw_trainer *t)
{
    return t->plus && (t->stage <= 1 || t->stage >= t->S - 2);
}

static void checkfree_finish(struct sw_trainer *t);
static void plus_finish(struct sw_trainer *t);

/* The sources are in: the rebuild. */
static void
rebuild_done(struct sw_trainer *t)
{
    t->rc.got_ms = t->now;
    if (by_plus(t))
        plus_finish(t);
    else
        checkfree_finish(t);
}

/* Both sources set: their pieces are asked for, all at once. */
static void
rebuild_go(struct sw_trainer *t)
{
    if (!t->rc.t0_ms)
        t->rc.t0_ms = t->now;
    t->rc.req_ms = t->now;
    t->rc.empty_scan = 0; /* a failed rebuild reads twice again */
    trainer_set_phase(t, SW_PHASE_REBUILD);
    sw_fetch_config(&t->fetch, STATE_WINDOW, (uint64_t)SW_MAX(t->o.dead_ms, 2000), 2);
    switch (sw_fetch_start(&t->fetch, 2, t->now)) {
    case SW_FETCH_FAILED:
        rebuild_abort(t, "cannot send a state request");
        break;
    case SW_FETCH_DONE: /* nothing to fetch (no parameters): the rebuild says why */
        rebuild_done(t);
        break;
    }
}

/* CheckFree: both neighbours' parameters at once. */
static void
checkfree_start(struct sw_trainer *t, const struct sw_peer_rec *prev,
                const struct sw_peer_rec *next)
{
    char a[13], b[13];
    int err;

    if ((err = rebuild_src(t, 0, prev, 0, t->ops->stage_numel(t->model, prev->stage))) < 0 ||
        (err = rebuild_src(t, 1, next, 0, t->ops->stage_numel(t->model, next->stage))) < 0) {
        trainer_fail(t, err, "checkfree recovery");
        return;
    }
    sw_log(SW_LOG_INFO, "recovering stage %d by checkfree from %s (stage %d, step %llu) and %s "
           "(stage %d, step %llu)", t->stage, sw_proto_who(a, prev->pk), prev->stage,
           (unsigned long long)prev->step, sw_proto_who(b, next->pk), next->stage,
           (unsigned long long)next->step);
    rebuild_go(t);
}


/*
 * CheckFree+ (recovery.mode checkfree+), arXiv 2506.15461 section 4.3: a
 * lost boundary stage (0 or S-1) takes its partner's (1 or S-2) blocks, which
 * the swapped route trained to stand in for its own, and the exact replica
 * of the embedding (final norm and head) the partner keeps; a lost partner
 * takes its boundary stage's blocks and gets the replica at the next push.
 * Both: fresh AdamW, LR x 1.1, the step in progress (src/checkfree.h).
 * Source 0 is the source stage's parameters, source 1 the replica
 * (STATE_GET which 3; nothing for a partner).
 */
static void
plus_start(struct sw_trainer *t, const struct sw_peer_rec *r)
{
    bool boundary = is_boundary(t);
    size_t rep = boundary ? t->ops->rep_numel(t->model, t->stage == 0 ? 0 : 1) : 0;
    char a[13];
    int err;

    if ((err = rebuild_src(t, 0, r, 0, t->ops->stage_numel(t->model, r->stage))) < 0 ||
        (err = rebuild_src(t, 1, r, 3, rep)) < 0) {
        trainer_fail(t, err, "checkfree+ recovery");
        return;
    }
    sw_log(SW_LOG_INFO, "recovering stage %d by checkfree+ from %s (stage %d, step %llu): its "
           "blocks%s", t->stage, sw_proto_who(a, r->pk), r->stage, (unsigned long long)r->step,
           boundary ? (t->stage == 0 ? " and the embedding replica" : " and the head replica")
                    : "");
    rebuild_go(t);
}

/* The fetched state in: rebuild, zero the gradients, take the source's step. */
static bool
rebuild_apply(struct sw_trainer *t, struct sw_rebuild *rb, const char *what)
{
    int err = t->ops->rebuild(t->model, rb);
    const struct sw_peer_rec *lr;
    const uint8_t *lead;

    if (err >= 0)
        err = t->ops->zero_grad(t->model);
    if (err < 0) {
        trainer_fail(t, err, what);
        return false;
    }
    t->step = t->fetch.src[0].step;
    /* the source was still in the step the leader has left (summing its
     * replicas' partials when the round went): the stage it rebuilds joins
     * the leader's step, which FRESH lets it step back from if that step is
     * planned again (grad-loss 1117: it stayed a step behind, the leader
     * waited for the stage and it for the leader).  Not stage 0, whose
     * rebuild takes over the lost leader's step in progress (harsh 9205) */
    lead = t->stage != 0 ? sw_lead_expected(t) : NULL;
    if (lead && (lr = trainer_dir_find(t, lead)) && lr->step == t->step + 1)
        t->step = lr->step;
    if (t->step > t->run_step)
        t->run_step = t->step;
    return true;
}

/* A rebuilt stage trains from its step; the recovery event, its time the
 * transfer's and the rebuild's. */
static bool
rebuilt(struct sw_trainer *t, const char *method, const char *from, const struct sw_rebuild *rb)
{
    if (!trained_from_here(t, false))
        return false;
    t->st.phase = SW_STEP_FRESH;
    recovered(t, method, from, t->fetch.bytes);
    t->rec_s += rb->took_s;
    return true;
}

static void
checkfree_finish(struct sw_trainer *t)
{
    const struct sw_fetch_src *p = &t->fetch.src[0], *n = &t->fetch.src[1];
    struct sw_rebuild rb = {false,
                            {p->buf, n->buf},
                            {p->stage, n->stage},
                            {p->norm, n->norm},
                            NULL,
                            0,
                            t->man->seed,
                            0};
    struct sw_stage_scalars sc;
    char a[13], b[13], from[2 * EP + 2], x[96], ev[1024];

    if (!rebuild_apply(t, &rb, "checkfree rebuild"))
        return;
    snprintf(from, sizeof(from), "%s,%s", p->ep, n->ep);
    if (!rebuilt(t, "checkfree", from, &rb))
        return;
    t->ops->scalars(t->model, &sc);
    snprintf(x, sizeof(x), ",\"transfer_ms\":%.0f,\"rebuild_ms\":%.0f",
             (double)(t->rc.got_ms - t->rc.req_ms), rb.took_s * 1000);
    sw_log_event(SW_LOG_INFO, "recovery",
           rec_fields(ev, sizeof(ev), t->stage, "checkfree", from, t->rec_bytes, t->rec_s * 1000,
                      t->step, x),
           "recovery: stage %d method checkfree from %s (stage %d, norm %.4f) and %s (stage %d, "
           "norm %.4f): %llu bytes in %.0f ms (transfer %.0f ms, rebuild %.0f ms); fresh AdamW, "
           "lr x %.2f, resuming at step %llu (hash %s)",
           t->stage, sw_proto_who(a, p->pk), p->stage, p->norm, sw_proto_who(b, n->pk), n->stage,
           n->norm, (unsigned long long)t->rec_bytes, t->rec_s * 1000,
           (double)(t->rc.got_ms - t->rc.req_ms), rb.took_s * 1000, sc.lr_mult,
           (unsigned long long)t->step, t->hash);
    announce_state(t);
}

static void
plus_finish(struct sw_trainer *t)
{
    const struct sw_fetch_src *p = &t->fetch.src[0], *r = &t->fetch.src[1];
    bool boundary = is_boundary(t);
    int kind = t->stage == 0 ? 0 : 1;
    struct sw_rebuild rb = {true,          {p->buf, NULL}, {p->stage, -1}, {p->norm, 0},
                            boundary ? r->buf : NULL, boundary ? r->numel : 0, t->man->seed, 0};
    struct sw_stage_scalars sc;
    char a[13], x[192], ev[1024];

    if (!rebuild_apply(t, &rb, "checkfree+ rebuild"))
        return;
    if (t->stage == 0)
        sw_lead_takeover(t);
    if (boundary && r->step != t->step)
        sw_log(SW_LOG_WARN, "the %s replica is of step %llu, its partner at step %llu: the "
               "owner died before pushing its last update", kind == 0 ? "embedding" : "head",
               (unsigned long long)r->step, (unsigned long long)t->step);
    if (!rebuilt(t, "checkfree+", p->ep, &rb))
        return;
    t->ops->scalars(t->model, &sc);
    snprintf(x, sizeof(x), ",\"transfer_ms\":%.0f,\"rebuild_ms\":%.0f%s",
             (double)(t->rc.got_ms - t->rc.req_ms), rb.took_s * 1000,
             boundary ? (kind == 0 ? ",\"replica\":\"embedding\"" : ",\"replica\":\"head\"") : "");
    if (boundary) /* how old the replica was: its owner's steps when it pushed it */
        snprintf(x + strlen(x), sizeof(x) - strlen(x), ",\"replica_step\":%llu",
                 (unsigned long long)r->step);
    sw_log_event(SW_LOG_INFO, "recovery",
           rec_fields(ev, sizeof(ev), t->stage, "checkfree+", p->ep, t->rec_bytes,
                      t->rec_s * 1000, t->step, x),
           "recovery: stage %d method checkfree+ from %s (stage %d): its blocks%s, %llu bytes in "
           "%.0f ms (transfer %.0f ms, rebuild %.0f ms); fresh AdamW, lr x %.2f, resuming at "
           "step %llu (hash %s)",
           t->stage, sw_proto_who(a, p->pk), p->stage,
           boundary ? (kind == 0 ? " and the embedding replica" : " and the head replica") : "",
           (unsigned long long)t->rec_bytes, t->rec_s * 1000,
           (double)(t->rc.got_ms - t->rc.req_ms), rb.took_s * 1000, sc.lr_mult,
           (unsigned long long)t->step, t->hash);
    announce_state(t);
}

static void fetch_ended(struct sw_trainer *t, int rc, const struct sw_transport_msg *m);

void
sw_recover_fetched(struct sw_trainer *t, uint64_t tag, int status,
                   const struct sw_transport_msg *m)
{
    fetch_ended(t, sw_fetch_response(&t->fetch, t->now, tag, status, m), m);
}

/* The fetch's outcome rc (an answer m, or NULL: its stall deadline). */
static void
fetch_ended(struct sw_trainer *t, int rc, const struct sw_transport_msg *m)
{
    const struct sw_fetch_src *s;
    char why[EP + 128];

    if (rc == SW_FETCH_BUSY)
        return;
    if (rc == SW_FETCH_FAILED && t->fetch.err == -SW_EPROTO && m)
        trainer_reject(t, m, NULL, SW_WIRE_DROP_MALFORMED, "malformed state answer");
    if (t->phase == SW_PHASE_COPY) {
        if (rc == SW_FETCH_DONE) {
            copy_done(t);
            return;
        }
        s = &t->fetch.src[0];
        /* what came in stays for the next copy, unless the source lied
         * (recover.h, Kept pieces) */
        t->rc.carry = s->have_step && s->got > 0 && t->fetch.err != -SW_EPROTO &&
                      t->fetch.err != -SW_ENONFINITE;
        if (!s->kept) { /* none of the pieces in is from a copy before this one */
            memcpy(t->rc.carry_pk, s->pk, 32);
            t->rc.mixed = false;
        }
        if (t->fetch.err == -SW_ETIMEDOUT || t->fetch.err == -SW_EAGAIN)
            sw_log(SW_LOG_WARN, "state copy from '%s' failed: %s (%.1f of %.1f MB in, kept "
                   "for the next copy; %llu resumes and %llu late pieces kept so far%s)", s->ep,
                   sw_strerror(t->fetch.err), (double)s->got * sizeof(float) / 1e6,
                   (double)sw_fetch_total(s) * sizeof(float) / 1e6,
                   (unsigned long long)t->fetch.resumed, (unsigned long long)t->fetch.late,
                   s->gone ? "; its node is gone" : "");
        else
            SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "state copy from '%s' refused or malformed; "
                               "trying again", s->ep);
        t->rc.copy_fail_ms = t->now;
        t->rc.copy_fail_stage = t->stage;
        if (memcmp(t->rc.fail_pk, s->pk, 32) || t->fetch.err != -SW_ETIMEDOUT) {
            memcpy(t->rc.fail_pk, s->pk, 32);
            t->rc.fails = 0;
        }
        /* only silence counts: a node that answers (busy, behind) is alive */
        if (t->fetch.err == -SW_ETIMEDOUT && ++t->rc.fails >= SW_RECOVER_FAILS) {
            char who[13];
            t->rc.fails = 0;
            distrust(t, s->pk);
            sw_log(SW_LOG_WARN, "no state from node %s at '%s' in %d tries: not copying from it "
                   "for %d s", sw_proto_who(who, s->pk), s->ep, SW_RECOVER_FAILS,
                   SW_RECOVER_DISTRUST_MS / 1000);
        }
        sw_recover_resync(t);
        t->rc.retry_ms = t->now + SW_TRAINER_SCAN_MS; /* not at once: the source may be busy */
        return;
    }
    if (t->phase != SW_PHASE_REBUILD)
        return;
    if (rc == SW_FETCH_DONE) {
        rebuild_done(t);
        return;
    }
    s = &t->fetch.src[t->fetch.failed_src < 0 ? 0 : t->fetch.failed_src];
    if (t->fetch.failed_src == 1 && t->fetch.err == -SW_ENOENT && s->which0 == 3) {
        /* the partner keeps no replica of this boundary stage's embedding or
         * head: another node of its stage may (one that took part in the
         * last push); when none does, nothing can rebuild it */
        const struct sw_peer_rec *nb[2];
        bool *empty = sw_calloc((size_t)t->S, sizeof(bool)), syncing, other;
        char ev[64], who[13];
        int k = t->rc.norep_at++ % 4;

        memcpy(t->rc.norep[k].pk, s->pk, 32);
        t->rc.norep[k].until_ms = t->now + SW_RECOVER_DISTRUST_MS;
        other = false;
        if (empty) {
            neighbours(t, empty, nb, &syncing);
            other = plus_source(t, nb) != NULL;
            sw_free(empty);
        }
        if (other) {
            snprintf(why, sizeof(why), "node %s of stage %d holds no replica of this stage; "
                     "another node of its stage may", sw_proto_who(who, s->pk), s->stage);
            rebuild_abort(t, why);
            return;
        }

        snprintf(ev, sizeof(ev), "\"stage\":%d,\"step\":%llu", t->stage,
                 (unsigned long long)t->run_step);
        sw_log_event(SW_LOG_ERROR, "cannot_recover", ev, "cannot recover stage %d at step %llu: "
               "its partner, stage %d at "
               "'%s', holds no replica of the %s (it got its state after the last push); a "
               "keeper's checkpoint (swarmd keeper, and nodes started with --from-checkpoint "
               "DIR) would recover it", t->stage, (unsigned long long)t->run_step, s->stage,
               s->ep, t->stage == 0 ? "embedding" : "final norm and LM head");
        trainer_lost(t);
        return;
    }
    if (t->fetch.err == -SW_ETIMEDOUT || t->fetch.err == -SW_EAGAIN)
        snprintf(why, sizeof(why), "stage %d at '%s': %s", s->stage, s->ep,
                 sw_strerror(t->fetch.err));
    else
        snprintf(why, sizeof(why), "stage %d at '%s' refused or sent a bad piece", s->stage,
                 s->ep);
    rebuild_abort(t, why);
}

/* Another live node of this node's stage trains at its step: it may hold
 * what this one lacks, the CheckFree+ replica (a newcomer that finds it
 * holds none asks another node of the stage, and stops the run when none
 * does). */
static bool
stage_mate(const struct sw_trainer *t)
{
    for (int i = 0; i < t->ndir; i++)
        if (t->dir[i].stage == t->stage && t->dir[i].state == SW_REC_TRAINING &&
            t->dir[i].step == t->step && memcmp(t->dir[i].pk, t->pk, 32))
            return true;
    return false;
}

/*
 * The empty stages (empty[S]) that joining nodes can rebuild, one after
 * another; ok[S] is true for those and for the live ones.  A boundary stage
 * under CheckFree+ is rebuilt from its live partner (which keeps its
 * replica); under CheckFree+ that partner (1, S-2) from its boundary stage
 * alone (by_plus); any other stage from its two neighbours, live or rebuilt
 * before it.  So under CheckFree+ stages 1 and 2 of five, lost together,
 * come back: 1 from 0, then 2 from 1 and 3 (counted as adjacent and lost
 * for good, a newcomer for stage 1 stopped a run that two newcomers
 * rebuilt: sim seed 4433).
 */
static void
rebuildable(const struct sw_trainer *t, const bool *empty, bool *ok)
{
    int S = t->S;
    bool grew = true;

    for (int s = 0; s < S; s++)
        ok[s] = !empty[s];
    while (grew) {
        grew = false;
        for (int s = 0; s < S; s++) {
            bool can;
            if (ok[s])
                continue;
            if (s == 0 || s == S - 1)
                can = t->plus && S > 1 && !empty[s == 0 ? 1 : S - 2];
            else if (t->plus && s == S - 2)
                can = ok[S - 1];
            else if (t->plus && s == 1)
                can = ok[0];
            else
                can = ok[s - 1] && ok[s + 1];
            if (can)
                ok[s] = grew = true;
        }
    }
}

/*
 * True when the empty stages (empty[S]) cannot be rebuilt by any nodes
 * that join (rebuildable): a boundary stage (plain CheckFree has no replica
 * of the embedding or the head), or two adjacent stages that no order of
 * rebuilds brings back (CheckFree needs both neighbours); why says which
 * and what would recover them.
 */
static bool
lost_for_good(const struct sw_trainer *t, const bool *empty, char *why, size_t len)
{
    const char *ck = "a keeper's checkpoint (swarmd keeper, and nodes started with "
                     "--from-checkpoint DIR)";
    char list[256] = "";
    size_t off = 0;
    int nlost = 0;
    bool *ok, lost = false;

    /* before the run's first update nothing is lost: a newcomer initialises
     * any stage from the run seed (sync_tick, seed_init).  The nodes in a
     * run whose stage 0 was killed at step 0 stopped it with exit 5, while
     * a newcomer was seeding that stage (sim --harsh 112, 980) */
    if (t->run_step == 0 && t->step == 0)
        return false;
    if (!(ok = sw_calloc((size_t)t->S, sizeof(bool))))
        return false; /* asked again at the next tick */
    rebuildable(t, empty, ok);
    for (int s = 0; s < t->S; s++)
        if (empty[s] && off < sizeof(list)) {
            int k = snprintf(list + off, sizeof(list) - off, "%s%d", nlost ? ", " : "", s);
            off += k > 0 ? (size_t)k : 0;
            nlost++;
        }
    for (int s = 0; s < t->S && !lost; s++) {
        if (!empty[s])
            continue;
        if ((s == 0 || s == t->S - 1) && !t->plus) {
            snprintf(why, len, "lost stage%s %s: stage %d owns the %s, which no neighbour holds; "
                     "CheckFree+ (its partner keeps a replica: a run signed with "
                     "recovery.mode = checkfree+) or %s would recover it", nlost > 1 ? "s" : "",
                     list, s, s == 0 ? "embedding" : "final norm and LM head", ck);
            lost = true;
        } else if ((s == 0 || s == t->S - 1) && trainer_in_run(t) && !t->rep_have &&
                   t->stage == (s == 0 ? 1 : t->S - 2) && !stage_mate(t)) {
            /* this node is the partner that should hold the replica, and holds none (it
             * was copied or rebuilt after the boundary stage's last push), nor
             * does another node of its stage train (which may hold one) */
            snprintf(why, len, "lost stage %d: it owns the %s, and this node, of its partner "
                     "stage %d, holds no replica of it (no push came since this node got its "
                     "state); %s would recover it", s, s == 0 ? "embedding" : "final norm and LM "
                     "head", t->stage, ck);
            lost = true;
        } else if (!ok[s] && s + 1 < t->S && empty[s + 1]) {
            snprintf(why, len, "lost stage%s %s: stages %d and %d are adjacent and CheckFree "
                     "rebuilds a stage from its two live neighbours%s; %s would recover them",
                     nlost > 1 ? "s" : "", list, s, s + 1,
                     t->plus ? " (CheckFree+ a boundary stage and its partner from each "
                               "other)" : "", ck);
            lost = true;
        }
    }
    sw_free(ok);
    return lost;
}

/* The step in progress: the lowest step a live node of another stage that
 * holds a state is at (at most the run's). */
static uint64_t
step_in_progress(struct sw_trainer *t)
{
    uint64_t at = t->run_step;

    for (int i = 0; i < t->ndir; i++)
        if (t->dir[i].stage != t->stage && sw_rec_in_run(t->dir[i].state) &&
            t->dir[i].state != SW_REC_SYNCING && t->dir[i].step < at &&
            !trainer_gone(t, t->dir[i].pk))
            at = t->dir[i].step;
    return at;
}

/* This node holds a state of its stage (it trained it, and still has it:
 * a copy or a rebuild writes the model only once complete). */
static bool
holds_own_state(const struct sw_trainer *t)
{
    return t->trained && t->hash[0] && t->moved_from < 0;
}

/* See recover.h. */
void
sw_recover_own_state(struct sw_trainer *t, const char *why)
{
    uint64_t was = t->step, at = step_in_progress(t);
    char x[96], ev[1024];
    int err;

    if ((err = t->ops->zero_grad(t->model)) < 0) {
        trainer_fail(t, err, "recovery");
        return;
    }
    if (!t->rc.t0_ms)
        t->rc.t0_ms = t->now;
    t->step = at > was ? at : was;
    if (t->step > t->run_step)
        t->run_step = t->step;
    recovered(t, "own", t->ep, 0);
    snprintf(x, sizeof(x), ",\"own_step\":%llu", (unsigned long long)was);
    sw_log_event(SW_LOG_WARN, "recovery",
                 rec_fields(ev, sizeof(ev), t->stage, "own", t->ep, 0, t->rec_s * 1000, t->step,
                            x),
                 "recovery: stage %d method own: %s; this node's state of step %llu resumes at "
                 "step %llu", t->stage, why, (unsigned long long)was,
                 (unsigned long long)t->step);
    if (t->stage == 0)
        sw_lead_takeover(t);
    if (!trained_from_here(t, false))
        return;
    announce_state(t);
}

/* Did pk answer lately that it holds no replica of this stage (CheckFree+)? */
static bool
no_replica(const struct sw_trainer *t, const uint8_t *pk)
{
    for (int i = 0; i < 4; i++)
        if (t->rc.norep[i].until_ms > t->now && !memcmp(t->rc.norep[i].pk, pk, 32))
            return true;
    return false;
}

/* The stages no other node serves (empty[S]) and this stage's neighbours
 * that train (nb[0] before, nb[1] after; the furthest on, and at one step a
 * node that took part in a step over one joining: a copy holds no CheckFree+
 * replica until the next push); *syncing when a neighbour is still getting
 * its state.  This node's own stage is served only by a node with a state:
 * another newcomer syncing it is in the same straits (counted, three
 * newcomers of a stage lost for good waited on each other for ever, and
 * the run with them: sim seed 3940). */
static void
neighbours(struct sw_trainer *t, bool *empty, const struct sw_peer_rec **nb, bool *syncing)
{
    nb[0] = nb[1] = NULL;
    *syncing = false;
    for (int s = 0; s < t->S; s++)
        empty[s] = true;
    for (int i = 0; i < t->ndir; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        if (!memcmp(r->pk, t->pk, 32))
            continue;
        if (r->stage != t->stage || sw_rec_has_state(r->state))
            empty[r->stage] = false;
        for (int k = 0; k < 2; k++)
            if (r->stage == t->stage + (k ? 1 : -1)) {
                if (sw_rec_training(r->state) && !no_replica(t, r->pk) &&
                    (!nb[k] || r->step > nb[k]->step ||
                     (r->step == nb[k]->step && nb[k]->state == SW_REC_JOINING &&
                      r->state == SW_REC_TRAINING)))
                    nb[k] = r;
                *syncing |= r->state == SW_REC_SYNCING;
            }
    }
}

/* The source of a CheckFree+ rebuild of this stage among nb: stage 0 and
 * S-2 look forward (1, S-1), 1 and S-1 back (0, S-2). */
static const struct sw_peer_rec *
plus_source(const struct sw_trainer *t, const struct sw_peer_rec **nb)
{
    return nb[t->stage == 0 || t->stage == t->S - 2 ? 1 : 0];
}

/* A source whose state came from a checkpoint itself (an adjacent stage
 * lost with this one, restored a moment ago): this stage takes the same
 * checkpoint rather than mix its older tensors into a rebuild. */
static bool
from_checkpoint(const struct sw_peer_rec *r)
{
    return r && !strcmp(r->rec_method, "checkpoint");
}

/* Can CheckFree(+) rebuild this stage now (DESIGN.md's order: before a
 * checkpoint)? */
static bool
rebuild_ready(struct sw_trainer *t)
{
    const struct sw_peer_rec *nb[2], *src;
    bool *empty = sw_calloc((size_t)t->S, sizeof(bool)), syncing, ok;
    char why[512];

    if (!empty)
        return false;
    neighbours(t, empty, nb, &syncing);
    src = plus_source(t, nb);
    ok = !lost_for_good(t, empty, why, sizeof(why)) &&
         (by_plus(t) ? src && !from_checkpoint(src)
                     : nb[0] && nb[1] && !from_checkpoint(nb[0]) && !from_checkpoint(nb[1]));
    sw_free(empty);
    return ok;
}

/* --from-checkpoint: does the newest checkpoint hold the run's step (or a
 * later one)?  1 yes, 0 no, -1 not known yet: the keeper's record is being
 * looked up (at most 2 s are given to it). */
static int
ckpt_at_run(struct sw_trainer *t)
{
    char where[EP + 16];
    int nck;

    if (!t->env->ckpt_newest)
        return 0;
    nck = t->env->ckpt_newest(t->env->arg, where, sizeof(where));
    if (nck == -2) {
        if (!t->rc.ck_asked_ms)
            t->rc.ck_asked_ms = t->now;
        return t->now - t->rc.ck_asked_ms < 2000 ? -1 : 0;
    }
    return nck >= 0 && (uint64_t)nck >= t->run_step;
}

/* Records being proven (recover.h): true while a stage that empty[] marks
 * (the own stage when empty is NULL) has a record that may still prove
 * itself, and the wait, begun then, is not over. */
static bool
proving_wait(struct sw_trainer *t, const bool *empty)
{
    struct sw_recover *rc = &t->rc;
    int s = -1;

    for (int i = 0; i < t->S && s < 0; i++)
        if ((empty ? empty[i] : i == t->stage) && t->proving_stage[i])
            s = i;
    if (s < 0)
        return false;
    /* a wait is one while it is asked about: one that nothing asked about
     * for a few scans is over, and the next one starts anew */
    if (!rc->proving_ms || t->now - rc->proving_seen_ms > 3 * (uint64_t)SW_TRAINER_SCAN_MS)
        rc->proving_ms = t->now;
    rc->proving_seen_ms = t->now;
    if (t->now - rc->proving_ms >= SW_RECOVER_PROVING_MS(t->o.dead_ms))
        return false;
    SW_LOG_RATELIMITED(SW_LOG_INFO, 5000, "stage %d looks empty, but a record of it is still "
                       "being proven (its node has not answered a ping at its endpoint yet): "
                       "waiting for the proof", s);
    if (rc->retry_ms < t->now + SW_TRAINER_SCAN_MS / 5)
        rc->retry_ms = t->now + SW_TRAINER_SCAN_MS / 5;
    return true;
}

/* proving_wait for a record of any stage */
static bool
proving_any(struct sw_trainer *t)
{
    bool *all = sw_calloc((size_t)t->S, sizeof(bool)), wait;

    if (!all)
        return true; /* asked again at the next tick */
    for (int s = 0; s < t->S; s++)
        all[s] = true;
    wait = proving_wait(t, all);
    sw_free(all);
    return wait;
}

/* No live node of this stage to copy and the run has started: rebuild it
 * from the neighbours when they are there, or stop with the reason. */
static void
rebuild_tick(struct sw_trainer *t)
{
    const struct sw_peer_rec *nb[2], *src;
    bool *empty = sw_calloc((size_t)t->S, sizeof(bool)), syncing, lost;
    char why[512], ev[64];

    if (!empty)
        return;
    neighbours(t, empty, nb, &syncing);
    t->rc.retry_ms = t->now + 500;
    if (!t->rc.wait_ms)
        t->rc.wait_ms = t->now;
    if (syncing && t->now - t->rc.wait_ms > SW_LEAD_STALL_MS) {
        /* a neighbour syncing for that long waits, perhaps, for this very
         * stage (two adjacent newcomers): count its stage as empty */
        for (int i = 0; i < t->ndir; i++)
            if (t->dir[i].state == SW_REC_SYNCING &&
                (t->dir[i].stage == t->stage - 1 || t->dir[i].stage == t->stage + 1))
                empty[t->dir[i].stage] = true;
        for (int i = 0; i < t->ndir; i++)
            if (t->dir[i].state != SW_REC_SYNCING && memcmp(t->dir[i].pk, t->pk, 32))
                empty[t->dir[i].stage] = false;
    }
    lost = lost_for_good(t, empty, why, sizeof(why));
    if (!lost)
        t->rc.lost_seen_ms = 0;
    else if (!t->rc.lost_seen_ms)
        t->rc.lost_seen_ms = t->now;
    if (lost && proving_wait(t, empty)) {
        sw_free(empty);
        return;
    }
    if (lost && t->distrusted_stage[t->stage] && !t->rc.lost_wait_ms)
        t->rc.lost_wait_ms = t->now; /* until it trains: not again after each copy */
    if (lost && holds_own_state(t)) {
        sw_recover_own_state(t, why);
    } else if (lost && t->rc.copy_fail_ms && t->rc.copy_fail_stage == t->stage &&
               t->now - t->rc.copy_fail_ms < (uint64_t)t->o.dead_ms) {
        /* a copy of this stage failed a moment ago: its source was there,
         * and as for a node in the run (sw_recover_check_lost) its loss
         * has to last a dead time.  A source stopped for longer than its
         * record's ttl (SIGSTOP, a laptop's lid) is out of the table until
         * it goes on, and its stage looks empty meanwhile (t0423: the
         * newcomer copying it left the run with exit 5) */
        SW_LOG_RATELIMITED(SW_LOG_WARN, 10000, "stage %d looks lost at step %llu: %s; waiting "
                           "%d ms from the failed copy for it to come back", t->stage,
                           (unsigned long long)t->run_step, why, t->o.dead_ms);
    } else if (lost && t->distrusted_stage[t->stage] &&
               t->now - t->rc.lost_wait_ms < SW_RECOVER_LOST_WAIT_MS) {
        /* its node is there, distrusted after failed copies (a source
         * stopped twice as long as a copy's stall): as for the nodes in the
         * run (sw_recover_check_lost), a stage with a live node is not lost;
         * nothing can rebuild it, and it is copied once the distrust ends
         * (for a while: a stranger's record that never serves a copy must
         * not hold a newcomer for a run that is gone) */
        SW_LOG_RATELIMITED(SW_LOG_WARN, 10000, "stage %d looks lost at step %llu: %s; but a "
                           "node of it whose copies failed lately is still there: waiting to "
                           "copy it again", t->stage, (unsigned long long)t->run_step, why);
    } else if (lost && t->now - t->rc.lost_seen_ms < (uint64_t)t->o.dead_ms) {
        SW_LOG_RATELIMITED(SW_LOG_WARN, 10000, "stage %d looks lost at step %llu: %s; giving "
                           "up in %d ms unless the stages come back", t->stage,
                           (unsigned long long)t->run_step, why, t->o.dead_ms);
    } else if (lost) {
        snprintf(ev, sizeof(ev), "\"stage\":%d,\"step\":%llu", t->stage,
                 (unsigned long long)t->run_step);
        sw_log_event(SW_LOG_ERROR, "cannot_recover", ev, "cannot recover stage %d at step %llu: "
                     "%s", t->stage, (unsigned long long)t->run_step, why);
        trainer_lost(t);
    } else if (by_plus(t)) {
        if ((src = plus_source(t, nb)))
            plus_start(t, src);
        else
            SW_LOG_RATELIMITED(SW_LOG_INFO, 5000, "stage %d: waiting for its checkfree+ "
                               "partner to be ready%s", t->stage, syncing ? " (it is syncing)" : "");
    } else if (nb[0] && nb[1]) {
        checkfree_start(t, nb[0], nb[1]);
    } else {
        SW_LOG_RATELIMITED(SW_LOG_INFO, 5000, "stage %d: waiting for its neighbours to be ready%s",
                           t->stage, syncing ? " (one is syncing)" : "");
    }
    sw_free(empty);
}

/* ---- 2: a checkpoint ---- */

/*
 * The state of a checkpoint into this stage: at the checkpoint's step when
 * the run restarts, at the step in progress when the run went on and lost
 * this stage.
 */
static void
restore_apply(struct sw_trainer *t, const struct sw_restore *r)
{
    uint64_t bytes = 3 * t->numel * sizeof(float);
    char x[64], ev[1024], q[sizeof(r->from) * 2];
    int err;

    if ((err = t->ops->write(t->model, r->host, &r->sc)) < 0 ||
        (err = t->ops->zero_grad(t->model)) < 0) {
        sw_log(SW_LOG_ERROR, "--from-checkpoint: cannot load the state: %s", sw_strerror(err));
        trainer_fail(t, err, "--from-checkpoint");
        return;
    }
    t->last_norm = r->sc.last_norm;
    t->step = r->step;
    if (t->run_step > t->step) {
        /* the run went on past the checkpoint and lost this stage (the
         * others live): rejoin the step in progress, the lowest step a live
         * node of another stage is at, with the checkpoint's older tensors
         * (CheckFree cannot rebuild adjacent or boundary stages) */
        uint64_t at = step_in_progress(t);
        snprintf(x, sizeof(x), ",\"ckpt_step\":%llu", (unsigned long long)t->step);
        sw_log_event(SW_LOG_INFO, "recovery",
                     rec_fields(ev, sizeof(ev), t->stage, "checkpoint", r->from, bytes,
                                (double)(t->now - t->rc.t0_ms), at, x),
                     "recovery: stage %d method checkpoint: the tensors of step %llu from %s, "
                     "resuming at step %llu", t->stage, (unsigned long long)t->step, r->from,
                     (unsigned long long)at);
        t->step = at;
        if (t->stage == 0)
            sw_lead_takeover(t);
        recovered(t, "checkpoint", r->from, bytes);
    }
    if (t->step > t->run_step)
        t->run_step = t->step;
    if (!trained_from_here(t, false))
        return;
    snprintf(ev, sizeof(ev), "\"stage\":%d,\"from\":%s,\"step\":%llu,\"saved_stages\":%d,"
             "\"bytes\":%llu", t->stage, sw_json_str(q, sizeof(q), r->from),
             (unsigned long long)t->step, r->saved_S, (unsigned long long)bytes);
    sw_log_event(SW_LOG_INFO, "restored", ev, "stage %d restored from checkpoint %s: step %llu, "
           "AdamW t %d, saved with %d stages, %llu bytes in %.0f ms (hash %s)", t->stage, r->from,
           (unsigned long long)t->step, r->sc.t, r->saved_S, (unsigned long long)bytes,
           (double)(t->now - t->rc.t0_ms), t->hash);
    announce_state(t);
}

/* RESTORE: the caller loads or fetches the checkpoint over several ticks. */
static void
restore_tick(struct sw_trainer *t)
{
    struct sw_restore *r = t->rc.restore;
    int rc;

    if (!r) {
        float *host = buf_at_least(t, 0, 3 * t->numel);
        if (!host || !(r = t->rc.restore = sw_calloc(1, sizeof(*r)))) {
            trainer_fail(t, -SW_ENOMEM, "--from-checkpoint");
            return;
        }
        r->host = host;
        t->rc.t0_ms = t->now;
        t->rc.carry = false; /* host is buf[0]: a failed copy's pieces go */
    }
    if ((rc = t->env->restore(t->env->arg, t->stage, t->run_step, r)) == SW_RESTORE_BUSY)
        return;
    t->rc.restore = NULL;
    if (rc == SW_RESTORE_DONE)
        restore_apply(t, r);
    else if (rc < 0)
        trainer_fail(t, rc, "--from-checkpoint");
    else
        sw_recover_resync(t); /* none, and the run has not started: the seed */
    sw_free(r);
}

/* ---- SYNC ---- */

/* 3: the run has not started: every node agrees on the seed's initialisation,
 * drawn only now (a node that copies or rebuilds its stage would throw the
 * draw away: for a 50 MB stage, half a second before a recovery can start). */
static void
seeded(struct sw_trainer *t, int err)
{
    if (err < 0) {
        trainer_fail(t, err, "initialisation");
        return;
    }
    t->step = 0;
    if (!trained_from_here(t, false))
        return;
    sw_log(SW_LOG_INFO, "stage %d initialised from the run seed (hash %s)", t->stage, t->hash);
    announce_state(t);
}

/* Seconds for a big stage: on the stage's thread where it has one (SYNC
 * then waits for sw_recover_computed). */
static void
seed_init(struct sw_trainer *t)
{
    int err = t->ops->init(t->model, t->man->seed);

    if (err == SW_COMPUTE_PENDING)
        t->rc.seeding = true;
    else
        seeded(t, err);
}

bool
sw_recover_computed(struct sw_trainer *t, int err)
{
    if (!t->rc.seeding)
        return false;
    t->rc.seeding = false;
    if (t->phase == SW_PHASE_SYNC)
        seeded(t, err);
    return true;
}

/* r's step was reached by another node than r: this one (with a state of
 * its own) or another node of the run, or the leader asked this node for it
 * (records lag a publication: in a fast run a replica's record can stay
 * ahead of every other record for good, and a newcomer that copied once
 * and fell behind never copied again: t0381 in a CI run).  A record alone
 * ahead of every other and of the leader is a claim, not the run's step. */
static bool
step_seen(struct sw_trainer *t, const struct sw_peer_rec *r)
{
    if ((t->hash[0] && t->step >= r->step) || r->step <= lead_step(t))
        return true;
    for (int i = 0; i < t->ndir; i++) {
        const struct sw_peer_rec *o = &t->dir[i];
        if (memcmp(o->pk, r->pk, 32) && memcmp(o->pk, t->pk, 32) && sw_rec_has_state(o->state) &&
            !trainer_gone(t, o->pk) && o->step >= r->step)
            return true;
    }
    return false;
}

/* SYNC: pick where the state comes from (recover.h, in that order). */
/* Another live node of this node's stage in the table (distrusted or not). */
static bool
other_of_stage(struct sw_trainer *t)
{
    for (int i = 0; i < t->ndir; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        if (r->stage == t->stage && sw_rec_has_state(r->state) && memcmp(r->pk, t->pk, 32) &&
            !trainer_gone(t, r->pk))
            return true;
    }
    return false;
}

/*
 * The stage's only training nodes are sources whose copy this node refused
 * lately (left out of the table: trainer.c): the stage is not empty, and
 * rebuilding it beside a live node makes two states (or, for a boundary
 * stage without CheckFree+, stopped a newcomer with exit 5 while the run
 * went on: t0399, a copy refused as ahead of lagging records).  Waits for
 * them to be trusted again (the copy is tried again) or gone; for two
 * distrust periods at most, after which a node that keeps failing its
 * copies (a stranger holding the stage) no longer holds the rebuild back;
 * not at all while the leader's record says its step waits for the stage
 * (lead.h, need): then none of those nodes is ready for the run (t0383
 * case 5: a stranger's record of the stage, whose copy timed out, held a
 * newcomer's rebuild for a minute while the run was paused).
 */
static bool
distrust_wait(struct sw_trainer *t)
{
    struct sw_recover *rc = &t->rc;

    if (!t->distrusted_stage[t->stage] || trainer_lead_need(t, true) == t->stage) {
        rc->distrust_wait_ms = 0;
        return false;
    }
    if (!rc->distrust_wait_ms)
        rc->distrust_wait_ms = t->now;
    if (t->now - rc->distrust_wait_ms > 2 * (uint64_t)SW_RECOVER_DISTRUST_MS)
        return false;
    SW_LOG_RATELIMITED(SW_LOG_INFO, 10000, "stage %d: its only nodes are sources whose copy "
                       "this node refused lately: waiting to try them again, not rebuilding "
                       "the stage beside them nor resuming an older state", t->stage);
    rc->retry_ms = t->now + SW_TRAINER_SCAN_MS;
    return true;
}

/*
 * Two reads.  A newcomer's first read of the records can miss a live
 * node's record (an answer lost on the way), and with nothing to copy it
 * rebuilt the stage beside that node: two states of one stage (sim --harsh,
 * seeds 163 and 386, 1% loss).  So a stage rebuilt, or given up as lost,
 * looked so in two reads of the records: one more scan, asked at once.
 */
static bool
read_again(struct sw_trainer *t)
{
    struct sw_recover *rc = &t->rc;

    if (!rc->empty_scan)
        rc->empty_scan = t->nscan;
    if (t->nscan > rc->empty_scan)
        return false;
    trainer_scan_soon(t, SW_TRAINER_SCAN_MS / 5);
    rc->retry_ms = t->now + SW_TRAINER_SCAN_MS / 5;
    return true;
}

static void
sync_tick(struct sw_trainer *t)
{
    const struct sw_peer_rec *src = NULL, *lone = NULL;
    /* the steps the run corroborates, and the leader's PREPARE that sent
     * this node here (from_leader, step.c): records lag, and a node behind
     * it must not take its own state for the stage's */
    uint64_t run = t->run_mono;
    int at_run = 0;

    if (t->st.prep.pending)
        run = SW_MAX(run, t->st.prep.step);
    if (!t->dir_ok || t->now < t->rc.retry_ms || t->rc.seeding)
        return;
    if (t->run_step >= (uint64_t)t->man->steps) {
        /* a newcomer late for a run whose last step is done, or a node that
         * fell behind it at the end */
        sw_log(SW_LOG_INFO, "the run is finished (its %d steps are done): nothing to train",
               t->man->steps);
        if (!t->trained)
            t->step = t->run_step;
        trainer_set_phase(t, SW_PHASE_DONE);
        return;
    }
    for (int i = 0; i < t->ndir; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        if (r->stage != t->stage || !sw_rec_training(r->state) || !memcmp(r->pk, t->pk, 32) ||
            sw_recover_distrusted(t, r->pk))
            continue;
        if (step_seen(t, r)) {
            if (!src || r->step > src->step)
                src = r;
        } else if (!lone || r->step > lone->step) {
            lone = r;
        }
    }
    if (!src && lone) {
        /* a lone claim is not the run's step: a newcomer may try it (the
         * copy is verified), a node with a state of its own keeps it */
        if (!t->hash[0]) {
            src = lone;
        } else {
            char who[13];
            SW_LOG_RATELIMITED(SW_LOG_WARN, 10000, "not copying stage %d from %s (node %s): its "
                               "record claims step %llu, which no other node of the run "
                               "reached; keeping this node's own state (step %llu)", t->stage,
                               lone->ep, sw_proto_who(who, lone->pk),
                               (unsigned long long)lone->step, (unsigned long long)t->step);
            if (run > t->step) {
                /* behind the run, and a node of the stage trains: its
                 * step is corroborated soon (records lag), or it is a liar
                 * that the copy would refuse; rebuilding the stage beside
                 * a live replica would make two states */
                t->rc.retry_ms = t->now + SW_TRAINER_SCAN_MS;
                return;
            }
        }
    }
    if (!src && t->hash[0] && t->run_mono <= t->step && t->moved_from < 0) {
        /* nothing to copy and not behind the steps the run corroborates:
         * this node's own state is the stage's (recover.h); unless the
         * leader's PREPARE is past it and the stage's other nodes are
         * sources it refused lately: resumed, its older state answers the
         * next PREPARE with "behind the run" and it comes back here, once
         * a step (t0345 in CI: about 1000 resumes, each a record
         * publication, in the 30 s of the distrust); it waits as a
         * rebuild does, then copies again; and so while a record of the
         * stage may still prove itself (a source not counted yet: sim
         * --harsh 3414 resumed every 60 ms, one PREPARE after another) */
        if (run > t->step && (distrust_wait(t) || proving_wait(t, NULL)))
            return;
        sw_log(SW_LOG_INFO, "no other node of stage %d to copy at a step the run reached: "
               "resuming with this node's own state (step %llu, hash %s)", t->stage,
               (unsigned long long)t->step, t->hash);
        if (trained_from_here(t, false))
            announce_state(t);
        return;
    }
    if (src && t->move_wait && !t->st.prep.pending &&
        t->now - t->phase_ms < (uint64_t)t->o.dead_ms) {
        /* it just moved (trainer.h): the run is in a step it left, and a
         * copy made now would be of the state before that step's update,
         * behind the run at once.  The leader's next PREPARE waits for
         * this node's READY with the sources idle after the step: copy then
         * (or after the dead time, whichever comes first) */
        t->rc.retry_ms = t->now + 50;
        return;
    }
    t->move_wait = false;
    if (!src && t->o.from_ckpt && !t->rc.restore_tried && t->run_step > t->step &&
        (at_run = ckpt_at_run(t)) < 0) {
        t->rc.retry_ms = t->now + 100;
        return;
    }
    if (src) {
        t->rc.empty_scan = 0;
        copy_start(t, src);
    } else if (t->o.from_ckpt && !t->rc.restore_tried &&
               (t->run_step == 0 || t->run_step <= t->step || at_run > 0 || !rebuild_ready(t))) {
        /* the run restarts from it, or went on and lost this stage where
         * CheckFree(+) cannot rebuild it now: the checkpoint comes after
         * them in DESIGN.md's order; unless it holds the run's step, as
         * when a whole run restarts and the neighbours restored first: then
         * it is the stage's exact state, which CheckFree only approximates */
        t->rc.restore_tried = true;
        trainer_set_phase(t, SW_PHASE_RESTORE);
        restore_tick(t);
    } else if (t->run_step == 0 && !t->recoveries) {
        /* two reads, and no training record of any stage that may still
         * prove itself: it may be of a run under way (sim --harsh 3958: one
         * lost PING to the leader, and a newcomer seeded a run beside it) */
        if (proving_any(t) || read_again(t))
            return;
        seed_init(t);
    } else if (t->run_step > t->step || t->moved_from >= 0 || (t->run_step > 0 && !t->hash[0])) {
        /* a newcomer, a node the run left behind, one that moved to a stage
         * whose nodes died meanwhile (trainer.h), or one that left a copy of
         * another stage for this one (unstacked), with no live node of its
         * stage to copy: what is left of the stage is rebuilt */
        if (distrust_wait(t) || proving_wait(t, NULL) || read_again(t))
            return;
        rebuild_tick(t);
    } else if (t->hash[0] && !other_of_stage(t)) {
        /* at the run's step with its own state, and the node it meant to
         * copy (two states: trainer.c diverged) failed it and is gone: no
         * other node of the stage is left, so its own state is the stage's.
         * Waiting here for ever stalls the run (a checkfree+ partner waits
         * for this node to be ready, the leader for the stage) */
        sw_log(SW_LOG_INFO, "stage %d: no other node of it left to copy: training on with this "
               "node's own state at step %llu (hash %s)", t->stage, (unsigned long long)t->step,
               t->hash);
        if (trained_from_here(t, false))
            announce_state(t);
    } else {
        t->rc.retry_ms = t->now + 1000;
    }
}

/* The fetch's tick, a source's resume logged (fetch.h, Slow links). */
static uint64_t
fetch_tick(struct sw_trainer *t, int *rc)
{
    uint64_t resumed = t->fetch.resumed, wake;

    for (int i = 0; i < t->fetch.nsrc; i++)
        t->fetch.src[i].gone = trainer_gone(t, t->fetch.src[i].pk);
    wake = sw_fetch_tick(&t->fetch, t->now, rc);
    if (t->fetch.resumed != resumed)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 10000, "%s: a source stalled; asking it again for the "
                           "pieces it has not sent (%llu resumes so far)",
                           t->phase == SW_PHASE_COPY ? "state copy" : "rebuild",
                           (unsigned long long)t->fetch.resumed);
    return wake;
}

uint64_t
sw_recover_tick(struct sw_trainer *t)
{
    uint64_t wake = t->now + SW_TRAINER_HEARTBEAT_MS;
    int rc;

    switch (t->phase) {
    case SW_PHASE_SYNC:
        sync_tick(t);
        if (t->phase == SW_PHASE_SYNC && t->rc.retry_ms > t->now)
            wake = SW_MIN(wake, t->rc.retry_ms);
        break;
    case SW_PHASE_RESTORE:
        restore_tick(t);
        break;
    case SW_PHASE_COPY:
        if (t->rc.verify) {
            copy_verify(t);
            break;
        }
        wake = SW_MIN(wake, fetch_tick(t, &rc));
        fetch_ended(t, rc, NULL);
        break;
    case SW_PHASE_REBUILD:
        wake = SW_MIN(wake, fetch_tick(t, &rc));
        fetch_ended(t, rc, NULL);
        break;
    }
    return wake;
}

/* ---- a running node: is the run lost? ---- */

void
sw_recover_check_lost(struct sw_trainer *t)
{
    bool *empty, any = false;
    char why[512], where[EP + 16];
    int nck;

    if (!trainer_in_run(t) || t->run_step >= (uint64_t)t->man->steps || !t->dir_ok ||
        t->now - t->scan_ok_ms > 2000 || !(empty = sw_calloc((size_t)t->S, sizeof(bool))))
        return;
    /* a stage seen in the run, or any once the run took a step (its nodes
     * may have died before this one came: sim seed 8571 waited for good
     * beside a stage it had never seen) */
    for (int s = 0; s < t->S; s++)
        empty[s] = (t->seen_stage[s] || t->step > 0) && !t->distrusted_stage[s];
    for (int i = 0; i < t->ndir; i++)
        empty[t->dir[i].stage] = false;
    for (int s = 0; s < t->S; s++)
        any |= empty[s];
    if (!any || !lost_for_good(t, empty, why, sizeof(why))) {
        t->rc.lost_since_ms = 0;
        t->rc.lost_ck_logged = false;
    } else if (t->o.from_ckpt && t->env->ckpt_newest &&
               (nck = t->env->ckpt_newest(t->env->arg, where, sizeof(where))) != -1) {
        /* a keeper's checkpoint rebuilds them: nodes started with
         * --from-checkpoint take the empty stages; the step waits for them
         * (-2: the keeper's record is being looked up) */
        if (!t->rc.lost_ck_logged && nck >= 0) {
            char ev[64];

            t->rc.lost_ck_logged = true;
            snprintf(ev, sizeof(ev), "\"step\":%llu,\"ckpt_step\":%d", (unsigned long long)t->step,
                     nck);
            sw_log_event(SW_LOG_WARN, "waiting_ckpt", ev, "at step %llu: %s; %s holds one (step "
                         "%d): waiting for nodes started with --from-checkpoint",
                         (unsigned long long)t->step, why, where, nck);
        }
        t->rc.lost_since_ms = 0;
    } else if (!t->rc.lost_since_ms) {
        /* one missed refresh on a loaded machine must not end a run: the
         * loss has to last another dead_ms before everyone stops */
        t->rc.lost_since_ms = t->now;
        sw_log(SW_LOG_WARN, "the run looks lost at step %llu: %s; stopping in %d ms unless "
               "the stage comes back", (unsigned long long)t->step, why, t->o.dead_ms);
    } else if (t->now - t->rc.lost_since_ms >= (uint64_t)t->o.dead_ms && !proving_wait(t, empty)) {
        sw_log(SW_LOG_ERROR, "the run cannot go on at step %llu: %s; stopping",
               (unsigned long long)t->step, why);
        trainer_lost(t);
    }
    sw_free(empty);
}

/* ---- the STATE_GET server ---- */

/*
 * Buffers of STATE pieces (SW_FETCH_CHUNK floats), reused: a fresh 4 MiB
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
    return p ? p : sw_malloc((size_t)SW_FETCH_CHUNK * sizeof(float));
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

/* The state after t->step steps into snap_buf: what a keeper's STATE_GET
 * with snap reads, however far the node has gone on meanwhile. */
static int
snap_take(struct sw_trainer *t)
{
    size_t numel = t->numel;
    int err;

    if (!t->snap_buf && !(t->snap_buf = sw_malloc_big(3 * numel * sizeof(float))))
        return -SW_ENOMEM;
    t->snap_have = false;
    for (int w = 0; w < 3; w++)
        if ((err = t->ops->read(t->model, w, 0, numel, t->snap_buf + (size_t)w * numel)) < 0)
            return err;
    t->ops->scalars(t->model, &t->snap_sc);
    if (!isfinite(t->snap_sc.last_norm))
        t->snap_sc.last_norm = 0;
    if (!isfinite(t->snap_sc.last_norm_clipped))
        t->snap_sc.last_norm_clipped = 0;
    t->snap_have = true;
    t->snap_step = t->step;
    sw_log(SW_LOG_DEBUG, "snapshot of stage %d at step %llu for a keeper", t->stage,
           (unsigned long long)t->step);
    return 0;
}

/* This node's hash after step t->step, for the STATE_GET hstep answers. */
static void
hist_note(struct sw_trainer *t)
{
    struct sw_recover *rc = &t->rc;

    if (!t->hash[0])
        return;
    rc->hist[rc->hist_at].step = t->step;
    snprintf(rc->hist[rc->hist_at].hash, sizeof(rc->hist[0].hash), "%s", t->hash);
    rc->hist_at = (rc->hist_at + 1) % SW_RECOVER_HIST;
}

void
sw_recover_snap_due(struct sw_trainer *t)
{
    int err;

    hist_note(t);
    if (t->snap_want && t->snap_want == t->step && (err = snap_take(t)) < 0)
        sw_log(SW_LOG_WARN, "step %llu: no snapshot for the keeper: %s",
               (unsigned long long)t->step, sw_strerror(err));
}

struct state_get {
    uint64_t stage, which, off, cnt, snap, hstep;
    bool has_snap, has_hstep;
};

/*
 * A state just rebuilt may still step back into the step before it (step.h,
 * FRESH): while a node of another stage is still behind it.  A copy of it
 * (params, m and v) would be a step ahead of its source after that.
 */
static bool
may_step_back(struct sw_trainer *t)
{
    if (t->st.phase != SW_STEP_FRESH)
        return false;
    for (int i = 0; i < t->ndir; i++)
        if (t->dir[i].stage != t->stage && sw_rec_training(t->dir[i].state) &&
            t->dir[i].step < t->step && !trainer_gone(t, t->dir[i].pk))
            return true;
    return false;
}

/* A keeper's snap: 0 and from_snap when it is there, or why not. */
static int
snap_answer(struct sw_trainer *t, uint64_t snap, bool *from_snap)
{
    int err = 0;

    if (!(t->snap_have && t->snap_step == snap) && t->step == snap)
        err = snap_take(t);
    if (err < 0) {
        sw_log(SW_LOG_WARN, "snapshot for a keeper: %s", sw_strerror(err));
        return err;
    }
    if (t->snap_have && t->snap_step == snap) {
        *from_snap = true;
        return 0;
    }
    if (t->step < snap) {
        if (t->snap_want != snap)
            sw_log(SW_LOG_DEBUG, "a keeper wants stage %d at step %llu", t->stage,
                   (unsigned long long)snap);
        t->snap_want = snap;
        return -SW_EAGAIN;
    }
    return -SW_ENOENT;
}

/* The STATE answer's body: the piece's scalars and place. */
static void
state_body(struct sw_trainer *t, const struct state_get *q, int err, uint64_t step,
           size_t numel, bool from_snap)
{
    struct sw_body *b = &t->body;
    struct sw_stage_scalars sc;

    t->ops->scalars(t->model, &sc);
    if (from_snap)
        sc = t->snap_sc;
    sw_body_init(b);
    msgpack_pack_map(&b->pk, q->has_snap ? 9 : 8);
    sw_proto_pack_key(&b->pk, "err");
    msgpack_pack_int64(&b->pk, err < 0 ? err : 0);
    sw_proto_pack_key(&b->pk, "step");
    msgpack_pack_uint64(&b->pk, step);
    sw_proto_pack_key(&b->pk, "t");
    msgpack_pack_uint64(&b->pk, (uint64_t)sc.t);
    sw_proto_pack_key(&b->pk, "lr_mult");
    msgpack_pack_double(&b->pk, sc.lr_mult);
    sw_proto_pack_key(&b->pk, "norm");
    msgpack_pack_double(&b->pk, isfinite(sc.last_norm) ? sc.last_norm : 0.0);
    if (q->has_snap) {
        sw_proto_pack_key(&b->pk, "normc");
        msgpack_pack_double(&b->pk, from_snap ? sc.last_norm_clipped : 0.0);
    }
    sw_proto_pack_key(&b->pk, "numel");
    msgpack_pack_uint64(&b->pk, numel);
    sw_proto_pack_key(&b->pk, "off");
    msgpack_pack_uint64(&b->pk, q->off);
    sw_proto_pack_key(&b->pk, "n");
    msgpack_pack_uint64(&b->pk, err < 0 ? 0 : q->cnt);
}

static bool
state_get_read(struct sw_trainer *t, const struct sw_transport_msg *m, struct state_get *q)
{
    static const char *const keys[] = {"stage", "which", "off", "n", "snap", "hstep", NULL};
    msgpack_unpacked u;
    bool ok;

    if (!trainer_open(t, m, &u, keys))
        return false;
    q->has_snap = sw_proto_get(&u.data, "snap") != NULL;
    q->has_hstep = sw_proto_get(&u.data, "hstep") != NULL;
    q->snap = q->hstep = 0;
    ok = sw_proto_get_u64(&u.data, "stage", &q->stage) == 0 &&
         sw_proto_get_u64(&u.data, "which", &q->which) == 0 && q->which <= 3 &&
         sw_proto_get_u64(&u.data, "off", &q->off) == 0 &&
         sw_proto_get_u64(&u.data, "n", &q->cnt) == 0 && q->cnt <= SW_FETCH_CHUNK &&
         (!q->has_snap || (sw_proto_get_u64(&u.data, "snap", &q->snap) == 0 && q->snap)) &&
         (!q->has_hstep || sw_proto_get_u64(&u.data, "hstep", &q->hstep) == 0);
    msgpack_unpacked_destroy(&u);
    if (!ok) {
        if (t->env->drop)
            t->env->drop(t->env->arg, SW_WIRE_DROP_MALFORMED);
        SW_LOG_RATELIMITED(SW_LOG_WARN, 2000, "dropped malformed message of type %u",
                           m->hdr.type);
    }
    return ok;
}

/* STATE_GET with hstep: this node's hash after that step (recover.h). */
static void
hash_answer(struct sw_trainer *t, const struct sw_transport_msg *m, const struct state_get *q)
{
    struct sw_recover *rc = &t->rc;
    struct sw_body *b = &t->body;
    const char *hash = NULL;
    int err = -SW_ENOENT;

    if (q->stage != (uint64_t)t->stage || trainer_syncing(t))
        err = -SW_EINVAL;
    else if (q->hstep > t->step)
        err = -SW_EAGAIN;
    else
        for (int i = 0; i < SW_RECOVER_HIST; i++) {
            /* the newest entry of the step (a state that stepped back wrote it again) */
            int k = (rc->hist_at - 1 - i + 2 * SW_RECOVER_HIST) % SW_RECOVER_HIST;
            if (rc->hist[k].hash[0] && rc->hist[k].step == q->hstep) {
                hash = rc->hist[k].hash;
                err = 0;
                break;
            }
        }
    sw_body_init(b);
    msgpack_pack_map(&b->pk, hash ? 4 : 3);
    sw_proto_pack_key(&b->pk, "err");
    msgpack_pack_int64(&b->pk, err);
    sw_proto_pack_key(&b->pk, "stage");
    msgpack_pack_uint64(&b->pk, (uint64_t)t->stage);
    sw_proto_pack_key(&b->pk, "step");
    msgpack_pack_uint64(&b->pk, q->hstep);
    if (hash) {
        sw_proto_pack_key(&b->pk, "hash");
        sw_proto_pack_str(&b->pk, hash);
    }
    trainer_reply(t, &m->route, SW_MSG_STATE, NULL);
}

void
sw_recover_on_state_get(struct sw_trainer *t, const struct sw_transport_msg *m)
{
    struct state_get q;
    uint64_t step = t->step;
    size_t numel = t->numel;
    float *host = NULL;
    bool from_snap = false;
    int err = 0;

    if (m->route.rid == 0 || !t->ops || !state_get_read(t, m, &q))
        return;
    if (q.has_hstep) {
        hash_answer(t, m, &q);
        return;
    }
    if (q.which == 3 && q.stage == (uint64_t)t->stage) {
        /* CheckFree+: the replica this partner keeps, for its boundary stage's rebuild */
        numel = t->rep_have && !q.has_snap ? t->rep_numel : 0;
        step = t->rep_step;
        if (!t->rep_have || q.has_snap)
            err = -SW_ENOENT;
    }
    /* no copy of a state that may step back; a neighbour's rebuild reads the
     * parameters only, and may */
    if (!err && (q.stage != (uint64_t)t->stage || trainer_syncing(t) || q.off > numel ||
        ((q.which == 1 || q.which == 2) && !q.has_snap && may_step_back(t)) ||
        q.cnt > numel - q.off ||
        (!trainer_in_run(t) && t->phase != SW_PHASE_STOPPING &&
         !(q.has_snap && t->phase == SW_PHASE_DONE))))
        err = -SW_EINVAL;
    if (!err && q.has_snap && (err = snap_answer(t, q.snap, &from_snap)) == 0)
        step = q.snap;
    if (!err && !(host = piece_get()))
        err = -SW_ENOMEM;
    if (!err && from_snap)
        memcpy(host, t->snap_buf + q.which * numel + q.off, q.cnt * sizeof(float));
    else if (!err && q.which == 3)
        memcpy(host, t->rep_buf + q.off, q.cnt * sizeof(float));
    else if (!err)
        err = t->ops->read(t->model, (int)q.which, q.off, q.cnt, host);
    state_body(t, &q, err, step, numel, from_snap);
    if (err < 0 || !q.cnt) {
        trainer_reply(t, &m->route, SW_MSG_STATE, NULL);
        piece_put(host, NULL);
    } else {
        /* handed over, not copied: back to the pool once it was sent */
        struct sw_payload p = {host, q.cnt * sizeof(float), piece_put, NULL, NULL};
        trainer_reply(t, &m->route, SW_MSG_STATE, &p);
    }
}
