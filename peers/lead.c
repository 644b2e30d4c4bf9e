/*
 * lead.c - the step leader (see lead.h).
 */
#include "sw.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "trainer.h"

#define READY_TAG(round, slot) SW_TAG(SW_TAG_READY, (uint64_t)(round) << 16 | (uint64_t)(slot))
#define EARLY_TAG(gen, i) SW_TAG(SW_TAG_EARLY, (uint64_t)(gen) << 16 | (uint64_t)(i))

int
sw_lead_init(struct sw_trainer *t)
{
    int err;

    memset(&t->lead, 0, sizeof(t->lead));
    t->lead.need = -1;
    if ((err = sw_plan_init(&t->lead.plan, t->S, t->M)) < 0)
        return err;
    return sw_plan_init(&t->lead.prev, t->S, t->M);
}

void
sw_lead_release(struct sw_trainer *t)
{
    sw_plan_release(&t->lead.plan);
    sw_plan_release(&t->lead.prev);
}

static void
set_phase(struct sw_trainer *t, int phase)
{
    t->lead.phase = phase;
    t->lead.phase_ms = t->now;
}

/* How long a round waits for a READY (from its PREPARE on). */
static uint64_t
prepare_timeout(const struct sw_trainer *t)
{
    return (uint64_t)SW_MAX(t->o.dead_ms, 5000);
}

/* When the round stops waiting: its PREPARE timeout, or later for a copier
 * or a replica that sums the step before (lead.h, Copies, Exchanges). */
static uint64_t
round_end(const struct sw_trainer *t)
{
    return SW_MAX(SW_MAX(t->lead.phase_ms + prepare_timeout(t), t->lead.copy_end),
                  t->lead.busy_end);
}

static struct sw_lead_cand *
cand_find(struct sw_trainer *t, const uint8_t *pk)
{
    for (int i = 0; i < t->lead.ncand; i++)
        if (!memcmp(t->lead.cand[i].pk, pk, 32))
            return &t->lead.cand[i];
    return NULL;
}

/* pk's entry, made (in place of the one least recently heard of) when new. */
static struct sw_lead_cand *
cand_get(struct sw_trainer *t, const uint8_t *pk)
{
    struct sw_lead *L = &t->lead;
    struct sw_lead_cand *c = cand_find(t, pk);

    if (c)
        return c;
    if (L->ncand < SW_LEAD_CANDS) {
        c = &L->cand[L->ncand++];
    } else {
        c = &L->cand[0];
        for (int i = 1; i < L->ncand; i++)
            if (SW_MAX(L->cand[i].seen_ms, L->cand[i].passed_ms) <
                SW_MAX(c->seen_ms, c->passed_ms))
                c = &L->cand[i];
    }
    memset(c, 0, sizeof(*c));
    memcpy(c->pk, pk, 32);
    return c;
}

/* 0: seen in the run and not passed over; 1: not passed over; 2: passed over. */
static int
cand_tier(struct sw_trainer *t, const uint8_t *pk)
{
    const struct sw_lead_cand *c = cand_find(t, pk);

    if (c && c->passed_ms && t->now - c->passed_ms < SW_LEAD_PASSED_MS)
        return 2;
    return c && c->seen_ms ? 0 : 1;
}

void
sw_lead_seen_plan(struct sw_trainer *t, const struct sw_plan *p)
{
    for (int i = 0; i < p->cnt[0]; i++) {
        struct sw_lead_cand *c = cand_get(t, p->pk[i]);
        c->seen_ms = t->now ? t->now : 1;
        c->passed_ms = 0;
    }
}

bool
sw_lead_seen(struct sw_trainer *t, const uint8_t *pk)
{
    const struct sw_lead_cand *c = cand_find(t, pk);

    return c && c->seen_ms;
}

void
sw_lead_heard(struct sw_trainer *t, const uint8_t *pk)
{
    if (t->lead.waiting && !memcmp(t->lead.wait_pk, pk, 32))
        t->lead.waiting = false;
}

/* best[k]: the lowest key of tier k or below (see cand_tier). */
static void
cand_rank(struct sw_trainer *t, const uint8_t *pk, const uint8_t *best[3])
{
    for (int k = cand_tier(t, pk); k < 3; k++)
        if (!best[k] || memcmp(pk, best[k], 32) < 0)
            best[k] = pk;
}

const uint8_t *
sw_lead_expected(struct sw_trainer *t)
{
    const uint8_t *best[3] = {NULL, NULL, NULL};

    /* this node by its phase, not by its record (which may lag a scan) */
    if (t->ops && t->stage == 0 && t->phase == SW_PHASE_TRAINING && trainer_dir_find(t, t->pk))
        cand_rank(t, t->pk, best);
    for (int i = 0; i < t->ndir; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        if (r->stage != 0 || r->state != SW_REC_TRAINING || !memcmp(r->pk, t->pk, 32) ||
            trainer_gone(t, r->pk))
            continue;
        cand_rank(t, r->pk, best);
    }
    /* seen in the run, else any not passed over, else any (see lead.h) */
    return best[0] ? best[0] : best[1] ? best[1] : best[2];
}

bool
sw_lead_is_leader(struct sw_trainer *t)
{
    const uint8_t *want = sw_lead_expected(t);

    return want == t->pk;
}

/* A slot of the round being made; false when the table is full. */
static struct sw_lead_slot *
slot_add(struct sw_trainer *t, const uint8_t *pk, const char *ep, int stage, double w, bool ok)
{
    struct sw_lead *L = &t->lead;
    struct sw_lead_slot *p;
    char relay[SW_PROTO_EP_MAX];

    if (L->nslot >= SW_PROTO_MAX_NODES)
        return NULL;
    p = &L->slot[L->nslot++];
    memset(p, 0, sizeof(*p));
    memcpy(p->pk, pk, 32);
    snprintf(p->ep, sizeof(p->ep), "%s", ep);
    p->stage = stage;
    p->w = w;
    if (sw_transport_endpoint_is_relay(ep, NULL, relay, sizeof(relay)))
        p->w = w * SW_LEAD_RELAY_WEIGHT; /* its hops may go through the relay */
    p->ok = p->answered = ok;
    return p;
}

/* ---- whom a round waits for (lead.h) ---- */

static int unready_stage(const struct sw_trainer *t);

static int
known_find(const struct sw_lead *L, const uint8_t *pk)
{
    for (int i = 0; i < L->nknown; i++)
        if (!memcmp(L->known[i].pk, pk, 32))
            return i;
    return -1;
}

/* pk answered a READY (in this round or an earlier one). */
static void
known_answered(struct sw_trainer *t, const uint8_t *pk)
{
    struct sw_lead *L = &t->lead;
    int i = known_find(L, pk);

    if (i < 0) {
        if (L->nknown < SW_LEAD_KNOWN) {
            i = L->nknown++;
        } else {
            i = 0;
            for (int j = 1; j < L->nknown; j++)
                if (L->known[j].ms < L->known[i].ms)
                    i = j;
        }
        memcpy(L->known[i].pk, pk, 32);
        L->known[i].busy_doubt_ms = 0;
    }
    L->known[i].ms = t->now ? t->now : 1;
    L->known[i].silent = false;
}

/* A PREPARE to pk timed out (or could not be sent), or a round went on
 * without its answer: silent from now on, until it answers. */
static void
known_silent(struct sw_trainer *t, const uint8_t *pk)
{
    struct sw_lead *L = &t->lead;
    int i = known_find(L, pk);
    char who[13];

    if (i < 0) {
        known_answered(t, pk); /* an entry, to be marked */
        i = known_find(L, pk);
        L->doubt_ms = t->now ? t->now : 1; /* a key unknown till now failed the run */
    }
    if (!L->known[i].silent) {
        L->known[i].silent = true;
        SW_LOG_RATELIMITED(SW_LOG_INFO, 5000, "node %s did not answer a prepare: the next rounds "
                           "do not wait for it", sw_proto_who(who, pk));
    }
}

static bool
in_plan(const struct sw_plan *p, const uint8_t *pk)
{
    for (int s = 0; s < p->S; s++)
        if (sw_plan_find(p, s, pk) >= 0)
            return true;
    return false;
}

/* Does a round wait for pk's answer (lead.h, "Whom a round waits for")? */
static bool
waited(const struct sw_trainer *t, const uint8_t *pk)
{
    const struct sw_lead *L = &t->lead;
    int i = known_find(L, pk);

    if (i >= 0)
        return !L->known[i].silent;
    if (in_plan(&t->st.plan, pk) || in_plan(&L->plan, pk))
        return true;
    /* a key never heard (a newcomer): unless one let a round down lately */
    return !L->doubt_ms || t->now - L->doubt_ms >= SW_LEAD_DOUBT_MS;
}

/* A training stage-0 node with a lower key than this one's at the step led
 * (or just past it): the one to take the step over (lead.h, "Two takeovers"). */
static const struct sw_peer_rec *
takeover_rival(struct sw_trainer *t)
{
    for (int i = 0; i < t->ndir; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        if (r->stage == 0 && r->state == SW_REC_TRAINING && memcmp(r->pk, t->pk, 32) < 0 &&
            (r->step == t->lead.step || r->step == t->lead.step + 1) && !trainer_gone(t, r->pk))
            return r;
    }
    return NULL;
}

/* A stage other than 0 with two or more training nodes past the step led
 * (they finished it): their count, the stage in *stage; else 0. */
static int
replicas_past(struct sw_trainer *t, int *stage)
{
    int n = 0, st = -1;

    for (int i = 0; i < t->ndir; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        if (r->stage == 0 || r->state != SW_REC_TRAINING || r->step != t->lead.step + 1 ||
            trainer_gone(t, r->pk))
            continue;
        if (r->stage != st) {
            if (n >= 2)
                break;
            st = r->stage;
            n = 0;
        }
        n++;
    }
    *stage = st;
    return n >= 2 ? n : 0;
}

/* A new round of slots: answers to the last one are stale from now on. */
static void
round_new(struct sw_trainer *t)
{
    t->lead.round++;
    t->lead.nslot = t->lead.nwait = 0;
    t->lead.copy_end = 0;
    t->lead.busy_end = 0;
    t->lead.keep_ms = t->now;
}

/* A replan: each microbatch stays on the node of old that had it, when that
 * node is still planned (it may have run it: its gradient cannot be taken
 * back); those of nodes left out are dealt as sw_plan_finish did. */
static void
keep_microbatches(struct sw_plan *p, const struct sw_plan *old)
{
    for (int s = 0; s < p->S; s++) {
        if (old->cnt[s] == 0)
            continue;
        for (int m = 0; m < p->M; m++) {
            int i = sw_plan_find(p, s, old->pk[sw_plan_at(old, s, m)]);
            if (i >= 0)
                p->assign[s * p->M + m] = i;
        }
    }
}

/* The first stage none of whose slots answered ready (-1: none). */
static int
unready_stage(const struct sw_trainer *t)
{
    const struct sw_lead *L = &t->lead;

    for (int s = 0; s < t->S; s++) {
        bool ok = false;
        for (int i = 0; i < L->nslot && !ok; i++)
            ok = L->slot[i].ok && L->slot[i].stage == s;
        if (!ok)
            return s;
    }
    return -1;
}

/* What the leader's record says a newcomer should fill (lead.h, need). */
static void
set_need(struct sw_trainer *t, int need)
{
    struct sw_lead *L = &t->lead;
    bool changed = L->need != need;

    L->need = need;
    if (changed)
        L->need_since = t->now;
    if (need >= 0)
        L->need_ms = t->now;
    if (changed)
        trainer_announce(t);
}

/* Was slot i's node sent this GO already, in an earlier slot?  A node can
 * hold two slots of a round (one it left for the other: a move), and the GO
 * is the same for all: a resend's twice sent everything again (sim seed
 * 3733). */
static bool
go_sent_before(const struct sw_lead *L, int i)
{
    for (int j = 0; j < i; j++)
        if ((L->slot[j].ok || L->slot[j].told) && !memcmp(L->slot[j].pk, L->slot[i].pk, 32))
            return true;
    return false;
}

/* GO(step, ver, plan, att) to the nodes planned (slots ok), and to those told
 * they are left out (told); false when a stage has none.  ver > 0: a replan
 * of the plan of the step in L->plan. */
static bool
send_plan(struct sw_trainer *t, uint64_t ver, bool resend)
{
    struct sw_lead *L = &t->lead;
    struct sw_body *b = &t->body;
    bool keep = ver > 0 && L->plan.step == L->step;

    if (keep)
        sw_plan_copy(&L->prev, &L->plan);
    sw_plan_clear(&L->plan);
    for (int i = 0; i < L->nslot; i++)
        if (L->slot[i].ok)
            sw_plan_add(&L->plan, L->slot[i].stage, L->slot[i].pk, L->slot[i].ep, L->slot[i].w);
    if (!sw_plan_finish(&L->plan)) {
        if (keep)
            sw_plan_copy(&L->plan, &L->prev); /* the step's plan stays what it was */
        return false;
    }
    if (keep)
        keep_microbatches(&L->plan, &L->prev);
    L->plan.step = L->step;
    L->plan.ver = ver;
    sw_lead_seen_plan(t, &L->plan);
    for (int i = 0; i < L->nslot; i++) {
        if ((!L->slot[i].ok && !L->slot[i].told) || go_sent_before(L, i))
            continue;
        sw_body_init(b);
        msgpack_pack_map(&b->pk, resend ? 5 : 4);
        if (resend) {
            sw_proto_pack_key(&b->pk, "resend");
            msgpack_pack_true(&b->pk);
        }
        sw_proto_pack_key(&b->pk, "step");
        msgpack_pack_uint64(&b->pk, L->step);
        sw_proto_pack_key(&b->pk, "ver");
        msgpack_pack_uint64(&b->pk, ver);
        sw_proto_pack_key(&b->pk, "plan");
        sw_plan_pack(&b->pk, &L->plan);
        /* the attestation: each stage's parameter hash at the step, as its
         * planned nodes said in READY (nil: not known here; recover.h) */
        sw_proto_pack_key(&b->pk, "att");
        msgpack_pack_array(&b->pk, (size_t)t->S);
        for (int st = 0; st < t->S; st++) {
            const struct sw_lead_slot *h = NULL;
            for (int j = 0; j < L->nslot && !h; j++)
                if (L->slot[j].ok && L->slot[j].have_hash && L->slot[j].stage == st)
                    h = &L->slot[j];
            if (h)
                sw_proto_pack_bin(&b->pk, h->hash, 32);
            else
                msgpack_pack_nil(&b->pk);
        }
        trainer_send(t, L->slot[i].ep, SW_MSG_GO, NULL, 0);
    }
    L->ver = ver;
    L->go_ms = t->now;
    return true;
}

/* Did this node's plan of the step before name pk on stage?  Not the plan
 * of this step when it is restarted: a replan may have filled an emptied
 * stage with a node on its record's word (fill_stages), which proves no
 * state. */
static bool
planned_before(const struct sw_trainer *t, int stage, const uint8_t *pk)
{
    const struct sw_plan *pl = &t->st.plan;

    return pl->step + 1 == t->lead.step && stage >= 0 && stage < pl->S &&
           sw_plan_find(pl, stage, pk) >= 0;
}

/* Should q's state be its stage's rather than first's (see one_state)? */
static bool
state_before(const struct sw_trainer *t, const struct sw_lead_slot *q,
             const struct sw_lead_slot *first)
{
    bool a = planned_before(t, q->stage, q->pk), b = planned_before(t, first->stage, first->pk);

    return a != b ? a : memcmp(q->pk, first->pk, 32) < 0;
}

/* Of each stage's ready nodes, the ones whose state is not the stage's are
 * left out of the plan (see lead.h): the state of the nodes this node's
 * plan of the step before named on the stage, else the lowest key's (a
 * stranger's READY with a low key and a state of its own once put the
 * stage's real nodes out of the plan, step after step: t0420). */
static void
one_state(struct sw_trainer *t)
{
    struct sw_lead *L = &t->lead;
    char who[13], a[17], b[17];

    for (int i = 0; i < L->nslot; i++) {
        struct sw_lead_slot *p = &L->slot[i], *first = NULL;
        if (!p->ok || !p->have_hash)
            continue;
        for (int j = 0; j < L->nslot; j++) {
            struct sw_lead_slot *q = &L->slot[j];
            if (q->ok && q->have_hash && q->stage == p->stage &&
                (!first || state_before(t, q, first)))
                first = q;
        }
        if (first == p || !memcmp(first->hash, p->hash, 32))
            continue;
        p->ok = false;
        sw_identity_hex(a, p->hash, 8);
        sw_identity_hex(b, first->hash, 8);
        SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "step %llu: node %s of stage %d holds another "
                           "state (%s) than the stage's (%s): planning without it",
                           (unsigned long long)L->step, sw_proto_who(who, p->pk), p->stage, a, b);
    }
}

/* How long a round waits for a copier of stage st from its PREPARE: the
 * stage's copy wait (lead.h, Copies). */
static uint64_t
copy_wait_ms(const struct sw_trainer *t, int st)
{
    double ms = 0;

    if (t->ops && t->ops->stage_numel && st >= 0 && st < t->S)
        ms = 3.0 * sizeof(float) * (double)t->ops->stage_numel(t->model, st) * 1000.0 /
             SW_LEAD_COPY_MIN_RATE;
    return (uint64_t)SW_MIN(SW_MAX(ms, (double)SW_LEAD_COPY_WAIT_MS),
                            (double)SW_LEAD_COPY_WAIT_MAX_MS);
}

/* The round goes: a copier it waited for that is not ready stops copy
 * waits for a while (lead.h, Copies). */
static void
copy_verdict(struct sw_trainer *t)
{
    struct sw_lead *L = &t->lead;
    uint64_t doubt;
    char who[13];

    if (!L->copy_end)
        return;
    L->copy_end = 0;
    for (int i = 0; i < L->nslot; i++)
        if (!memcmp(L->slot[i].pk, L->copy_pk, 32) && L->slot[i].ok)
            return;
    doubt = SW_MAX((uint64_t)SW_LEAD_COPY_DOUBT_MS,
                   SW_LEAD_COPY_DOUBT_TIMES * copy_wait_ms(t, L->copy_stage));
    if (L->copy_doubt_end && t->now < L->copy_doubt_end &&
        memcmp(L->copy_doubt_pk, L->copy_pk, 32)) {
        L->copy_doubt_all = true; /* a second copier in vain: no copy is waited for */
    } else {
        L->copy_doubt_all = false;
        memcpy(L->copy_doubt_pk, L->copy_pk, 32);
    }
    L->copy_doubt_end = t->now + doubt;
    sw_log(SW_LOG_WARN, "step %llu: node %s was not ready after its copy: no round waits for a "
           "copy %s for %llu s", (unsigned long long)L->step, sw_proto_who(who, L->copy_pk),
           L->copy_doubt_all ? "of any node" : "of it", (unsigned long long)(doubt / 1000));
}

/* The round goes: a replica it waited for that still said "busy" is not
 * waited for again for a while (lead.h, Exchanges). */
static void
busy_verdict(struct sw_trainer *t)
{
    struct sw_lead *L = &t->lead;
    char who[13];
    int k;

    for (int i = 0; i < L->nslot; i++) {
        struct sw_lead_slot *p = &L->slot[i];
        if (!p->busy || p->ok || (k = known_find(L, p->pk)) < 0)
            continue;
        L->known[k].busy_doubt_ms = t->now ? t->now : 1;
        sw_log(SW_LOG_WARN, "step %llu: node %s of stage %d still summed its replicas' gradients "
               "when the round went: no round waits for it for %d s", (unsigned long long)L->step,
               sw_proto_who(who, p->pk), p->stage, SW_LEAD_COPY_DOUBT_MS / 1000);
    }
}

/*
 * Every live node of stage st that the table has is past step, and the
 * plan this node last made or took names one of them: the stage updated
 * in a try of the step that the others could not finish (a node upstream
 * died after the stage's backward), and answers each PREPARE of it "not
 * ready" for ever (sim --harsh 5614: 45 s without a step, the stage's node
 * one step ahead).  The plan's word keeps a stranger's record that claims
 * a later step from skipping steps of a stage that is only empty.
 */
static bool
stage_past(struct sw_trainer *t, int st, uint64_t step)
{
    bool planned = false;

    for (int i = 0; i < t->ndir; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        if (r->stage != st || !sw_rec_has_state(r->state) || trainer_gone(t, r->pk))
            continue;
        if (r->step <= step)
            return false;
        planned |= sw_plan_find(&t->st.plan, st, r->pk) >= 0;
    }
    return planned;
}

static void
go(struct sw_trainer *t)
{
    copy_verdict(t);
    busy_verdict(t);
    if (!sw_lead_is_leader(t) || t->step != t->lead.step) {
        /* the round outlived this node's lead (another stage-0 node leads, or
         * the run went past the step meanwhile): its answers plan nothing */
        set_phase(t, SW_LEAD_IDLE);
        return;
    }
    one_state(t);
    if (!send_plan(t, 0, false)) {
        int need = unready_stage(t);
        if (need >= 0 && t->step == t->lead.step && stage_past(t, need, t->lead.step)) {
            sw_log(SW_LOG_WARN, "step %llu: the nodes of stage %d are past it (they finished a "
                   "try of it that the others could not): skipping it",
                   (unsigned long long)t->lead.step, need);
            set_phase(t, SW_LEAD_IDLE);
            sw_step_skip(t, t->step + 1, "a stage's nodes finished it in a try the others could "
                         "not finish");
            return;
        }
        SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "step %llu: stage %d has no ready node, waiting",
                           (unsigned long long)t->lead.step, need);
        set_phase(t, SW_LEAD_IDLE);
        set_need(t, need);
        return;
    }
    set_need(t, -1);
    sw_log(SW_LOG_DEBUG, "step %llu: go", (unsigned long long)t->lead.step);
    set_phase(t, SW_LEAD_RUNNING);
}

/* The round plans without the nodes it does not wait for once only they
 * are left to answer and every stage has a ready node (lead.h, "Whom a
 * round waits for"); they are silent from then on. */
static void
go_without_unwaited(struct sw_trainer *t)
{
    struct sw_lead *L = &t->lead;

    if (L->phase != SW_LEAD_PREPARING || L->nwait == 0)
        return;
    for (int i = 0; i < L->nslot; i++)
        if (!L->slot[i].answered && waited(t, L->slot[i].pk))
            return;
    if (unready_stage(t) >= 0)
        return;
    for (int i = 0; i < L->nslot; i++)
        if (!L->slot[i].answered)
            known_silent(t, L->slot[i].pk);
    L->not_waited += (uint64_t)L->nwait;
    sw_log(SW_LOG_DEBUG, "step %llu: go without %d node(s) not waited for",
           (unsigned long long)L->step, L->nwait);
    go(t);
}

/* Slot p answered that it copies its stage's state, left_ms to go: true
 * when the round waits for it (lead.h, Copies), asking again soon. */
static bool
copy_wait(struct sw_trainer *t, struct sw_lead_slot *p, uint64_t left_ms)
{
    struct sw_lead *L = &t->lead;
    uint64_t until = t->now + SW_MAX(left_ms, (uint64_t)SW_LEAD_REASK_MS) + prepare_timeout(t);
    /* the copy wait, and the PREPARE timeout the copier has to answer in
     * after its copy: that timeout is --dead-ms, and a wait that held it
     * too waited for no copy at all with --dead-ms 60000 and a stage of
     * under 30 MB (t0423: the copy restarted at every step, for good) */
    uint64_t wait = copy_wait_ms(t, p->stage) + prepare_timeout(t);
    char who[13];

    if (L->copy_end && !memcmp(L->copy_pk, p->pk, 32) && t->now < L->phase_ms + wait) {
        /* waited for already: its estimate, from a few pieces, may rise
         * for a while; the round waits on to the copy wait's end */
        until = SW_MIN(until, L->phase_ms + wait);
    } else if ((L->copy_doubt_end && t->now < L->copy_doubt_end &&
                (L->copy_doubt_all || !memcmp(L->copy_doubt_pk, p->pk, 32))) ||
               (L->copy_end && memcmp(L->copy_pk, p->pk, 32)) || left_ms > wait ||
               until > L->phase_ms + wait) {
        return false;
    }
    if (!L->copy_end) {
        L->copy_waits++;
        sw_log(SW_LOG_INFO, "step %llu: waiting for node %s of stage %d, which copies its "
               "stage's state (%.1f s left)", (unsigned long long)L->step,
               sw_proto_who(who, p->pk), p->stage, (double)left_ms / 1000.0);
    }
    memcpy(L->copy_pk, p->pk, 32);
    L->copy_stage = p->stage;
    L->copy_end = SW_MAX(L->copy_end, until);
    p->reask_ms = t->now + SW_LEAD_REASK_MS;
    return true;
}

/* Slot p answered that it still sums its replicas' partials of the step
 * before: true when the round waits for it, asking again soon (lead.h,
 * Exchanges). */
static bool
busy_wait(struct sw_trainer *t, struct sw_lead_slot *p)
{
    struct sw_lead *L = &t->lead;
    const struct sw_plan *pl = &t->st.plan;
    uint64_t until = t->now + SW_LEAD_REASK_MS + prepare_timeout(t);
    int k = known_find(L, p->pk);
    char who[13];

    if (k < 0 || (L->known[k].busy_doubt_ms &&
                  t->now - L->known[k].busy_doubt_ms < SW_LEAD_COPY_DOUBT_MS) ||
        L->step == 0 || pl->step != L->step - 1 || p->stage < 0 || p->stage >= t->S ||
        pl->cnt[p->stage] < 2 || sw_plan_find(pl, p->stage, p->pk) < 0 ||
        t->now + SW_LEAD_REASK_MS > L->phase_ms + SW_LEAD_BUSY_WAIT_MS)
        return false;
    if (!L->busy_end) {
        L->busy_waits++;
        sw_log(SW_LOG_INFO, "step %llu: waiting for node %s of stage %d, which sums its "
               "replicas' gradients of step %llu", (unsigned long long)L->step,
               sw_proto_who(who, p->pk), p->stage, (unsigned long long)pl->step);
    }
    L->busy_end = SW_MAX(L->busy_end, SW_MIN(until, L->phase_ms + SW_LEAD_BUSY_WAIT_MS));
    p->busy = true;
    p->reask_ms = t->now + SW_LEAD_REASK_MS;
    return true;
}

void
sw_lead_ready(struct sw_trainer *t, uint64_t tag, int status, const struct sw_transport_msg *m)
{
    static const char *const keys[] = {"step", "stage", "ok", "hash", "lead", "copy", "busy",
                                       NULL};
    struct sw_lead *L = &t->lead;
    uint32_t round = (uint32_t)((tag >> 16) & 0xffffffffu);
    int i = (int)(tag & 0xffff);
    struct sw_lead_slot *p;
    msgpack_unpacked u;
    uint64_t step;
    bool ok = false;

    if (round != L->round || L->phase != SW_LEAD_PREPARING || i >= L->nslot) {
        L->stale_ready++; /* an answer of an earlier round: its slot may be another node's now */
        if (status == 0 && m)
            known_answered(t, m->hdr.sender); /* late, but it answers */
        return;
    }
    p = &L->slot[i];
    if (p->answered)
        return;
    if (status == 0)
        known_answered(t, p->pk);
    else
        known_silent(t, p->pk);
    if (status == 0 && trainer_open(t, m, &u, keys)) {
        const uint8_t *h;
        size_t hl = 32;
        uint64_t stage = (uint64_t)p->stage;
        bool lead = true, busy = false;
        uint64_t left;
        if (sw_proto_get(&u.data, "copy") && sw_proto_get_u64(&u.data, "copy", &left) == 0 &&
            copy_wait(t, p, left)) {
            msgpack_unpacked_destroy(&u);
            return;
        }
        if (sw_proto_get(&u.data, "busy") && sw_proto_get_bool(&u.data, "busy", &busy) == 0 &&
            busy && busy_wait(t, p)) {
            msgpack_unpacked_destroy(&u);
            return;
        }
        if (sw_proto_get(&u.data, "lead") && sw_proto_get_bool(&u.data, "lead", &lead) == 0 &&
            !lead && t->now + SW_LEAD_REASK_MS < round_end(t)) {
            /* it has not read this node's record yet (it joined a moment
             * ago, or this node did): asked again soon (prepare_watch) */
            msgpack_unpacked_destroy(&u);
            p->reask_ms = t->now + SW_LEAD_REASK_MS;
            return;
        }
        if (sw_proto_get(&u.data, "stage") && sw_proto_get_u64(&u.data, "stage", &stage) < 0)
            stage = UINT64_MAX;
        /* another stage than the record the round was made from: it moved
         * since (rebalancing, trainer.h), and serves the stage it names */
        if (stage < (uint64_t)t->S)
            p->stage = (int)stage;
        if (sw_proto_get_u64(&u.data, "step", &step) == 0 &&
            sw_proto_get_bool(&u.data, "ok", &ok) == 0 && step == L->step && stage < (uint64_t)t->S)
            p->ok = ok;
        if (sw_proto_get_bin(&u.data, "hash", &h, &hl) == 0) {
            char hx[17];
            memcpy(p->hash, h, 32);
            p->have_hash = true;
            /* what its stage's state is at the step: an attestation (live.h) */
            sw_identity_hex(hx, p->hash, 8);
            sw_live_attest(&t->live, p->pk, p->stage, L->step, hx);
        }
        /* every node's ready answer names its state: one without is not
         * ready (a stranger's "ok" alone once put it in the plan: t0420) */
        if (p->ok && !p->have_hash) {
            p->ok = false;
            L->no_hash++;
        }
        msgpack_unpacked_destroy(&u);
    }
    p->answered = true;
    if (--L->nwait == 0)
        go(t);
    else
        go_without_unwaited(t);
}

/* Pings the nodes of the running step and drops the gone ones; true when the plan changed. */
static bool
watch_nodes(struct sw_trainer *t)
{
    struct sw_lead *L = &t->lead;
    bool changed = false;
    char who[13];

    for (int i = 0; i < L->nslot; i++) {
        struct sw_lead_slot *p = &L->slot[i];
        if (!p->ok || !memcmp(p->pk, t->pk, 32))
            continue;
        if (trainer_gone(t, p->pk)) {
            p->ok = false;
            changed = true;
            sw_log(SW_LOG_WARN, "step %llu: node %s of stage %d is gone: planning without it",
                   (unsigned long long)L->step, sw_proto_who(who, p->pk), p->stage);
            continue;
        }
        sw_live_ping(&t->live, t->now, p->pk, p->ep, p->stage, SW_LEAD_PING_MS);
    }
    return changed;
}

/* Gives each stage left without a node the first newcomer at the step, or
 * one past it; returns the lowest stage still empty (-1: none). */
static int
fill_stages(struct sw_trainer *t, bool *changed)
{
    struct sw_lead *L = &t->lead;
    bool *have = sw_calloc((size_t)t->S, sizeof(bool));
    int empty = -1;
    char who[13];

    if (!have)
        return -1;
    for (int i = 0; i < L->nslot; i++)
        if (L->slot[i].ok)
            have[L->slot[i].stage] = true;
    for (int i = 0; i < t->ndir && L->nslot < SW_PROTO_MAX_NODES; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        /* at the step, or past it: rebuilt from a source that had finished
         * it, it steps back into it when it gets the plan (step.h) */
        if (have[r->stage] || !sw_rec_training(r->state) ||
            (r->step != L->step && r->step != L->step + 1) || trainer_gone(t, r->pk))
            continue;
        slot_add(t, r->pk, r->ep, r->stage, r->cap, true);
        have[r->stage] = true;
        *changed = true;
        sw_log(SW_LOG_INFO, "step %llu: node %s serves the empty stage %d: planning it again",
               (unsigned long long)L->step, sw_proto_who(who, r->pk), r->stage);
    }
    for (int s = t->S - 1; s >= 0; s--)
        if (!have[s])
            empty = s;
    sw_free(have);
    return empty;
}

static uint64_t stall_limit(const struct sw_trainer *t);

/* The running step has made no progress for half its stall limit, nor since
 * its last resend (lead.h, Resends). */
static bool
resend_due(const struct sw_trainer *t)
{
    const struct sw_lead *L = &t->lead;
    uint64_t since = SW_MAX(SW_MAX(L->phase_ms, t->st.progress_ms), L->resend_ms);

    return L->phase == SW_LEAD_RUNNING && !t->st.job.on && t->st.phase != SW_STEP_UPDATING &&
           t->now - since > stall_limit(t) / 2;
}

/* While a step runs (see lead.h): pings, replans, pauses, resends. */
static void
watch(struct sw_trainer *t)
{
    struct sw_lead *L = &t->lead;
    bool changed = watch_nodes(t);
    int empty = fill_stages(t, &changed);

    /* a paused step's empty stage is one for a newcomer too (lead.h, need):
     * records of strangers that claim it must not hide it (t0383 case 5) */
    set_need(t, empty);
    if (empty >= 0) {
        /* the node that recovers the stage shows up in a scan: look more often meanwhile */
        trainer_scan_soon(t, SW_TRAINER_SCAN_MS / 5);
        if (L->phase != SW_LEAD_PAUSED || t->now - L->wait_log_ms > 5000) {
            sw_log(SW_LOG_WARN, "step %llu: stage %d has no node left: drivers paused until a "
                   "node recovers it (swarmd join --stage auto)", (unsigned long long)L->step,
                   empty);
            L->wait_log_ms = t->now;
        }
        if (L->phase != SW_LEAD_PAUSED)
            L->phase = SW_LEAD_PAUSED; /* phase_ms: the stall clock stops meanwhile */
        return;
    }
    if (changed && send_plan(t, L->ver + 1, false)) {
        /* a replan does not restart the stall clock, only progress does:
         * in churn a death every few seconds replanned the step again and
         * again, and a step that no replan could finish (a replica past it
         * died with its messages undelivered) stalled for minutes */
        if (L->phase == SW_LEAD_PAUSED)
            set_phase(t, SW_LEAD_RUNNING);
        else
            L->phase = SW_LEAD_RUNNING;
    } else if (!changed && resend_due(t) && send_plan(t, L->ver, true)) {
        /* the step's GO again, with resend: every node sends again what
         * it sent in the step (nor does this restart the stall clock) */
        L->resend_ms = t->now;
        L->resends++;
        SW_LOG_RATELIMITED(SW_LOG_INFO, 5000, "step %llu: no progress for %.1f s: asking every "
                           "node of it to send again what it sent", (unsigned long long)L->step,
                           (double)(t->now - SW_MAX(L->phase_ms, t->st.progress_ms)) / 1000.0);
    } else if (!changed && t->now - L->go_ms >= 1000 && t->now - L->phase_ms < 10000) {
        /* the same GO again, for a node that dropped it (one that had not
         * read this leader's record yet): a node that has it ignores it */
        (void)send_plan(t, L->ver, false);
        if (L->phase == SW_LEAD_PAUSED)
            set_phase(t, SW_LEAD_RUNNING);
    } else if (L->phase == SW_LEAD_PAUSED) {
        set_phase(t, SW_LEAD_RUNNING);
    }
}

void
sw_lead_yield(struct sw_trainer *t, uint64_t step)
{
    struct sw_lead *L = &t->lead;

    if (L->phase == SW_LEAD_IDLE || L->step != step)
        return;
    sw_log(SW_LOG_INFO, "step %llu: another node leads it now", (unsigned long long)step);
    set_phase(t, SW_LEAD_IDLE);
    L->led = false; /* it may inherit the step later, with the plan it runs */
}

void
sw_lead_takeover(struct sw_trainer *t)
{
    set_phase(t, SW_LEAD_TAKEOVER);
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
takeover(struct sw_trainer *t)
{
    struct sw_lead *L = &t->lead;
    const struct sw_peer_rec *seen = trainer_dir_find(t, t->pk), *first = NULL;
    uint64_t ver = t->now;
    bool known;
    int past, past_stage;

    /* the others accept a GO from a stage-0 node they know: wait until
     * this node's training record is in the DHT (they scan as often) */
    if (!seen || seen->state != SW_REC_TRAINING || seen->step != t->step) {
        trainer_scan_soon(t, SW_TRAINER_SCAN_MS / 5);
        return;
    }
    if (takeover_rival(t)) {
        SW_LOG_RATELIMITED(SW_LOG_INFO, 5000, "step %llu: a stage-0 node with a lower key is at "
                           "the step: it takes the step over", (unsigned long long)L->step);
        return;
    }
    /* without the step's plan, the microbatches each node ran are unknown:
     * one node per stage then, so that none is split between two nodes
     * (the node planned takes them all; the others leave the step) */
    known = t->st.plan.step == L->step && t->st.plan.cnt[0] > 0;
    if (!known && t->M > 1 && t->step == L->step && (past = replicas_past(t, &past_stage)) > 0) {
        /* but two nodes of a stage that finished the step (their update
         * done) cannot be one when the microbatches were shared between
         * them: the one planned has stored only its own microbatches'
         * messages, and nothing recomputes the other's, so
         * the step would stall until the stall timer skipped it (churn
         * bench SEED=1: the whole stage 0 killed, stages 2 and 3 with two
         * nodes each past the step, 20 s without a step and more as the
         * kills went on resetting the timer).  Skipped now instead: the
         * nodes still in it skip with their state at the next PREPARE
         * (step.h, "Behind the run") */
        sw_log(SW_LOG_WARN, "step %llu: taking it over without its plan, and the %d nodes of "
               "stage %d that finished it cannot be replanned as one: skipping it",
               (unsigned long long)L->step, past, past_stage);
        set_phase(t, SW_LEAD_IDLE);
        sw_step_skip(t, t->step + 1, "its leader died with its plan, and replicas downstream "
                     "finished it");
        return;
    }
    round_new(t);
    slot_add(t, t->pk, t->ep, t->stage, t->cap, true);
    for (int i = 0, s = -1; i < t->ndir; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        if (!memcmp(r->pk, t->pk, 32) || !sw_rec_training(r->state) ||
            (r->step != t->step && r->step != t->step + 1) || trainer_gone(t, r->pk))
            continue;
        if (!known && (r->stage == t->stage || r->stage == s)) {
            /* left out of the step: the GO (a plan without it) tells it so,
             * and it drops the step (step.h, Replans) rather than wait for
             * ever on a partner's partial gradient the replan never sends.
             * Not another training stage-0 node: it may be taking the step
             * over too, and who leads is settled by the leaders' own rule
             * (yield); but a joining one leads nothing, and may be in the
             * step with the lost leader's plan (sim seed 10361): told, it
             * drops the step and copies this node's state after it */
            struct sw_lead_slot *p = r->stage != t->stage || r->state == SW_REC_JOINING ?
                slot_add(t, r->pk, r->ep, r->stage, r->cap, false) : NULL;
            if (p)
                p->told = p->answered = true;
            continue;
        }
        /* one state per stage, as from READYs (see one_state): the records come
         * by stage then key, so the first of a stage sets its state's hash */
        if (r->stage == t->stage ? strcmp(r->hash, t->hash) != 0
                                 : r->stage == s && strcmp(r->hash, first->hash) != 0)
            continue;
        if (r->stage != s)
            s = r->stage, first = r;
        slot_add(t, r->pk, r->ep, r->stage, r->cap, true);
    }
    L->led = true;
    if (known && (L->plan.step != L->step || t->st.plan.ver > L->plan.ver))
        sw_plan_copy(&L->plan, &t->st.plan); /* the step's plan as this node knows it */
    if (!send_plan(t, ver, false)) {
        SW_LOG_RATELIMITED(SW_LOG_INFO, 2000, "step %llu: taking over the lost leader's step: "
                           "a stage has no node at the step yet, waiting",
                           (unsigned long long)L->step);
        return;
    }
    set_phase(t, SW_LEAD_RUNNING);
    L->took_over = true;
    sw_log(SW_LOG_WARN, "step %llu: leading it from now on, in place of the lost leader "
           "(planned again, version %llu)", (unsigned long long)L->step,
           (unsigned long long)ver);
}

/* The run's step period as the records tell it, in ms (0: unknown). */
static uint64_t
records_period(const struct sw_trainer *t)
{
    double tps = sw_trainer_records_tps(t);

    return tps > 0 ? (uint64_t)((double)t->M * (double)t->N * 1000.0 / tps) : 0;
}

/*
 * How long a running step may go without progress: a few of this node's
 * step periods (a replan that cannot be finished showed as a 30 s stall in
 * a run stepping ten times a second: churn bench SEED=2, a stage-0 replica
 * killed mid-step), between SW_LEAD_STALL_MIN_MS and SW_LEAD_STALL_MS.  A
 * node that has not updated twice on its stage takes the period it measured
 * on the stage it served before, when it moved (sim --harsh 4894: a node
 * moved to stage 0 by the rebalancer led with the records' period, which
 * the run's stalls had stretched past the longest limit, and the resends
 * came 15 s apart); else (a newcomer that rebuilt stage 0 and leads at
 * once) the period its records tell; the longest limit
 * while none is known either (the first steps of a run whose steps are
 * long: a step over slow links must not look stalled).
 */
static uint64_t
stall_limit(const struct sw_trainer *t)
{
    uint64_t p = t->st.period_ms   ? t->st.period_ms
                 : t->period_kept_ms ? t->period_kept_ms
                                     : records_period(t);

    if (!p)
        return SW_LEAD_STALL_MS;
    return SW_MIN((uint64_t)SW_LEAD_STALL_MS,
                  SW_MAX((uint64_t)SW_LEAD_STALL_MIN_MS, SW_LEAD_STALL_PERIODS * p));
}

/* Another live node, of any stage, that has taken more steps than this one. */
static bool
run_ahead(struct sw_trainer *t)
{
    for (int i = 0; i < t->ndir; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        if (sw_rec_has_state(r->state) && r->step > t->step &&
            memcmp(r->pk, t->pk, 32) && !trainer_gone(t, r->pk))
            return true;
    }
    return false;
}

/* Another live stage-0 node that has taken more steps than this one: a
 * copy of it brings this node up to the run. */
static bool
stage0_ahead(struct sw_trainer *t)
{
    for (int i = 0; i < t->ndir; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        if (r->stage == 0 && sw_rec_has_state(r->state) && r->step > t->step &&
            memcmp(r->pk, t->pk, 32) && !trainer_gone(t, r->pk))
            return true;
    }
    return false;
}

/* A live node of another stage two steps or more past this one: its store
 * (step.h) no longer holds this node's step to replay. */
static bool
run_far_ahead(struct sw_trainer *t)
{
    for (int i = 0; i < t->ndir; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        if (r->stage != t->stage && sw_rec_has_state(r->state) && r->step >= t->step + 2 &&
            !trainer_gone(t, r->pk))
            return true;
    }
    return false;
}

/*
 * This stage-0 node is behind the run and no other stage-0 node is ahead
 * of it (it copied the lost leader's state in the middle of a step that
 * nodes of other stages finished since, or they finished a step that was
 * then restarted): a PREPARE of its step would be answered "not ready" for
 * ever by the nodes past it, and a copy brings nothing new.  One step
 * behind, the step is planned again as a replan (TAKEOVER: the nodes past
 * it replay from their store); further behind, this node's state resumes
 * at the step in progress (recover.h, sw_recover_own_state), which plans
 * the step the same way.
 */
static void
behind_alone_on_stage0(struct sw_trainer *t)
{
    if (run_far_ahead(t)) {
        sw_recover_own_state(t, "the nodes of other stages went two steps or more past the "
                             "state of stage 0, and no stage-0 node is ahead of it");
        return;
    }
    sw_log(SW_LOG_WARN, "step %llu: nodes of other stages finished it and no stage-0 node is "
           "past it: planning it again for the nodes still in it", (unsigned long long)t->step);
    t->lead.step = t->step;
    set_phase(t, SW_LEAD_TAKEOVER);
}

/* PREPARE(step) to slot i. */
static int
ask(struct sw_trainer *t, int i, uint64_t timeout_ms)
{
    struct sw_lead *L = &t->lead;
    struct sw_body *b = &t->body;

    sw_body_init(b);
    msgpack_pack_map(&b->pk, 1);
    sw_proto_pack_key(&b->pk, "step");
    msgpack_pack_uint64(&b->pk, L->step);
    return trainer_request(t, L->slot[i].ep, SW_MSG_PREPARE, timeout_ms, 0,
                           READY_TAG(L->round, i));
}

/* ---- early PREPAREs (lead.h) ---- */

/* pk's ready answer to this step's early PREPARE (NULL: none). */
static const struct sw_lead_early *
early_ready(struct sw_trainer *t, const uint8_t *pk)
{
    const struct sw_lead *L = &t->lead;

    if (L->early_step != L->step || trainer_gone(t, pk))
        return NULL;
    for (int i = 0; i < L->nearly; i++)
        if (L->early[i].answered && !memcmp(L->early[i].pk, pk, 32))
            return &L->early[i];
    return NULL;
}

/* Slot p answered ready by its early READY e. */
static void
early_use(struct sw_trainer *t, struct sw_lead_slot *p, const struct sw_lead_early *e)
{
    p->answered = p->ok = p->have_hash = true;
    p->stage = e->stage;
    memcpy(p->hash, e->hash, 32);
    t->lead.early_used++;
}

/* Every input of this node's part of the step it leads is in: PREPARE of
 * the next step, early, to the other nodes of the step's plan. */
static void
early_prepare(struct sw_trainer *t)
{
    struct sw_lead *L = &t->lead;
    const struct sw_plan *pl = &L->plan;
    struct sw_body *b = &t->body;

    if (L->phase != SW_LEAD_RUNNING || t->step != L->step || pl->step != L->step ||
        L->early_step == L->step + 1 || L->step + 1 >= (uint64_t)t->man->steps ||
        !sw_step_inputs_in(t))
        return;
    L->early_step = L->step + 1;
    L->early_gen++;
    L->nearly = 0;
    L->early_round = false;
    for (int st = 0; st < pl->S; st++)
        for (int k = 0; k < pl->cnt[st]; k++) {
            const uint8_t *pk = pl->pk[st * SW_PLAN_MAX + k];
            struct sw_lead_early *e = &L->early[L->nearly];
            bool dup = false;

            for (int i = 0; i < L->nearly && !dup; i++)
                dup = !memcmp(L->early[i].pk, pk, 32);
            if (dup || !memcmp(pk, t->pk, 32) || trainer_gone(t, pk) ||
                L->nearly >= SW_PROTO_MAX_NODES)
                continue;
            memset(e, 0, sizeof(*e));
            memcpy(e->pk, pk, 32);
            sw_body_init(b);
            msgpack_pack_map(&b->pk, 2);
            sw_proto_pack_key(&b->pk, "step");
            msgpack_pack_uint64(&b->pk, L->early_step);
            sw_proto_pack_key(&b->pk, "early");
            msgpack_pack_true(&b->pk);
            if (trainer_request(t, pl->ep[st * SW_PLAN_MAX + k], SW_MSG_PREPARE,
                                prepare_timeout(t), 0, EARLY_TAG(L->early_gen, L->nearly)) == 0) {
                L->nearly++;
                L->early_sent++;
            }
        }
}

void
sw_lead_early(struct sw_trainer *t, uint64_t tag, int status, const struct sw_transport_msg *m)
{
    static const char *const keys[] = {"step", "stage", "ok", "hash", "lead", "copy", "busy",
                                       NULL};
    struct sw_lead *L = &t->lead;
    uint32_t gen = (uint32_t)((tag >> 16) & 0xffffffffu);
    int i = (int)(tag & 0xffff);
    struct sw_lead_early *e;
    msgpack_unpacked u;
    const uint8_t *h;
    size_t hl = 32;
    uint64_t step, stage;
    bool ok = false;
    char hx[17];

    /* an earlier generation's, or none came: the round's PREPARE asks */
    if (gen != L->early_gen || i >= L->nearly || status != 0 || !m)
        return;
    e = &L->early[i];
    if (e->answered || memcmp(m->hdr.sender, e->pk, 32))
        return;
    known_answered(t, e->pk);
    if (!trainer_open(t, m, &u, keys))
        return;
    /* only a plain ready answer stands for the round's (any other, the
     * round asks again) */
    if (!sw_proto_get(&u.data, "copy") && !sw_proto_get(&u.data, "busy") &&
        !sw_proto_get(&u.data, "lead") && sw_proto_get_u64(&u.data, "step", &step) == 0 &&
        step == L->early_step && sw_proto_get_u64(&u.data, "stage", &stage) == 0 &&
        stage < (uint64_t)t->S && sw_proto_get_bool(&u.data, "ok", &ok) == 0 && ok &&
        sw_proto_get_bin(&u.data, "hash", &h, &hl) == 0) {
        e->answered = true;
        e->stage = (int)stage;
        memcpy(e->hash, h, 32);
        sw_identity_hex(hx, e->hash, 8);
        sw_live_attest(&t->live, e->pk, e->stage, step, hx);
    }
    msgpack_unpacked_destroy(&u);
    if (!e->answered || L->phase != SW_LEAD_PREPARING || L->step != L->early_step)
        return;
    /* the round runs: the node's slot, if its READY has not come */
    for (int j = 0; j < L->nslot; j++) {
        struct sw_lead_slot *p = &L->slot[j];
        if (memcmp(p->pk, e->pk, 32) || p->answered)
            continue;
        early_use(t, p, e);
        if (--L->nwait == 0)
            go(t);
        else
            go_without_unwaited(t);
        return;
    }
}

/* Record r's node into the round, asked (a PREPARE that cannot be sent
 * counts as an answer, not ready); not when its early READY is in. */
static void
ask_record(struct sw_trainer *t, const struct sw_peer_rec *r, uint64_t timeout_ms)
{
    struct sw_lead *L = &t->lead;
    struct sw_lead_slot *p = slot_add(t, r->pk, r->ep, r->stage, r->cap, false);
    const struct sw_lead_early *e;

    if (!p)
        return;
    if ((e = early_ready(t, r->pk))) {
        known_answered(t, r->pk);
        early_use(t, p, e);
        return;
    }
    L->nwait++;
    if (ask(t, L->nslot - 1, timeout_ms) < 0) {
        p->answered = true;
        L->nwait--;
    }
}

/* PREPARE(step) to every node of the table. */
static void
prepare(struct sw_trainer *t)
{
    struct sw_lead *L = &t->lead;

    L->led = true;
    L->took_over = false;
    round_new(t);
    if (L->early_step != L->step || L->early_round) {
        /* another step's, or this step's round ran already (a restart):
         * forgotten */
        L->early_step = 0;
        L->early_gen++;
        L->nearly = 0;
    }
    L->early_round = L->early_step != 0; /* the one round that takes them */
    set_phase(t, SW_LEAD_PREPARING);
    for (int i = 0; i < t->ndir; i++)
        if (sw_rec_in_run(t->dir[i].state))
            ask_record(t, &t->dir[i], prepare_timeout(t));
    if (L->nwait == 0)
        go(t);
}

/* The lowest stage no training or syncing node serves (-1: none). */
static int
missing_stage(struct sw_trainer *t)
{
    bool *have = sw_calloc((size_t)t->S, sizeof(bool));
    int missing = -1;

    if (!have)
        return -1;
    for (int i = 0; i < t->ndir; i++)
        if (sw_rec_in_run(t->dir[i].state))
            have[t->dir[i].stage] = true;
    for (int s = t->S - 1; s >= 0; s--)
        if (!have[s])
            missing = s;
    sw_free(have);
    return missing;
}

/* A round that may outlast half SW_LEAD_PASS_MS (it waits for a copier or
 * a busy replica) sends its PREPARE again to the nodes that answered, every
 * SW_LEAD_KEEP_MS, so that none passes this node over meanwhile (lead.h,
 * Long rounds). */
static void
keep_answered(struct sw_trainer *t, uint64_t end)
{
    struct sw_lead *L = &t->lead;

    if (end < L->phase_ms + SW_LEAD_PASS_MS / 2 || t->now < L->keep_ms + SW_LEAD_KEEP_MS ||
        end <= t->now)
        return;
    L->keep_ms = t->now;
    for (int i = 0; i < L->nslot; i++)
        if (L->slot[i].answered && memcmp(L->slot[i].pk, t->pk, 32) &&
            !trainer_gone(t, L->slot[i].pk))
            (void)ask(t, i, end - t->now); /* its answer is dropped (answered) */
    /* a node in the run that the PREPARE did not reach (its copy ended
     * meanwhile): asked now, so that the step has it */
    for (int d = 0; d < t->ndir; d++) {
        const struct sw_peer_rec *r = &t->dir[d];
        bool have = false;

        if (!sw_rec_in_run(r->state))
            continue;
        for (int i = 0; i < L->nslot && !have; i++)
            have = !memcmp(L->slot[i].pk, r->pk, 32);
        if (!have)
            ask_record(t, r, end - t->now);
    }
}

/* PREPARING: a node found dead or gone meanwhile is not waited for; one
 * that answered "not my leader" is asked again when its time comes (lead.h,
 * "Whom a round waits for"), within the round's timeout. */
static void
prepare_watch(struct sw_trainer *t)
{
    struct sw_lead *L = &t->lead;
    uint64_t end = round_end(t);

    keep_answered(t, end);
    for (int i = 0; i < L->nslot && L->nwait > 0 && L->phase == SW_LEAD_PREPARING; i++) {
        struct sw_lead_slot *p = &L->slot[i];
        if (p->answered)
            continue;
        if (!trainer_gone(t, p->pk)) {
            if (!p->reask_ms || t->now < p->reask_ms)
                continue; /* its PREPARE is out, or asked again later */
            p->reask_ms = 0;
            if (end > t->now && ask(t, i, end - t->now) == 0)
                continue;
        }
        p->answered = true;
        p->ok = false;
        if (--L->nwait == 0)
            go(t);
    }
    go_without_unwaited(t);
}

/* The leader died in a step this node is in: take the step over with its plan. */
static void
inherit(struct sw_trainer *t)
{
    struct sw_lead *L = &t->lead;
    const struct sw_plan *p = &t->st.plan;

    L->step = t->step;
    L->led = true;
    L->took_over = false;
    round_new(t);
    /* the plan's capacities too: every node derives the same microbatches
     * from them, and a live node must keep the ones it already ran */
    for (int s = 0; s < t->S; s++)
        for (int i = 0; i < p->cnt[s]; i++)
            slot_add(t, p->pk[s * SW_PLAN_MAX + i], p->ep[s * SW_PLAN_MAX + i], s,
                     p->w[s * SW_PLAN_MAX + i], true);
    L->ver = p->ver;
    sw_plan_copy(&L->plan, p); /* what the next replan keeps the microbatches of */
    set_phase(t, SW_LEAD_RUNNING);
    sw_log(SW_LOG_WARN, "leading step %llu from now on", (unsigned long long)t->step);
}

/*
 * A stage-0 node JOINING (its state a copy) does not lead; but when no
 * other stage-0 node trains any more (its source died), it must: it is in
 * step with the run when the dead leader planned it in the running step,
 * or, idle, unless a node of the run went past it (then it copies again, or
 * rebuilds the stage: recover.h).
 */
static void
joining_alone(struct sw_trainer *t)
{
    if (t->phase != SW_PHASE_JOINING || t->stage != 0 ||
        (sw_step_busy(&t->st) && t->st.phase < SW_STEP_RUNNING))
        return;
    for (int i = 0; i < t->ndir; i++)
        if (t->dir[i].stage == 0 && t->dir[i].state == SW_REC_TRAINING &&
            memcmp(t->dir[i].pk, t->pk, 32) && !trainer_gone(t, t->dir[i].pk))
            return;
    if (sw_step_busy(&t->st)) {
        /* planned in the running step by the leader that died: in step
         * with the run, it may take the step over (inherit) */
        trainer_set_phase(t, SW_PHASE_TRAINING);
        return;
    }
    if (stage0_ahead(t)) {
        sw_log(SW_LOG_INFO, "behind the run (step %llu, run at %llu), the last other node of "
               "stage 0 gone: copying the stage again", (unsigned long long)t->step,
               (unsigned long long)t->run_step);
        sw_recover_resync(t);
    } else {
        /* behind nodes of other stages, perhaps: the lead tick plans its
         * step for them (behind_alone_on_stage0), or CheckFree+ rebuilds */
        trainer_set_phase(t, SW_PHASE_TRAINING);
    }
}

/*
 * An idle training node that hears nothing from the leader its table names
 * passes it over (lead.h, "Candidates"): a stage-0 record that does not
 * lead (a stranger's, in an open run) stalls the run for that long only.
 */
static uint64_t
pass_over(struct sw_trainer *t)
{
    struct sw_lead *L = &t->lead;
    const uint8_t *want = sw_lead_expected(t);
    char who[13];

    /* a node with FWDs of its step but no GO (EARLY) waits all the same:
     * the real leader that it drops planned it, and its stage-0 nodes sent
     * it their FWDs (sim --harsh 4894: a copier that saw no plan naming
     * the new leader sat in EARLY for good, and the run waited for it) */
    if (!want || want == t->pk || !trainer_in_run(t) || t->st.phase >= SW_STEP_RUNNING ||
        t->step >= (uint64_t)t->man->steps || missing_stage(t) >= 0) {
        L->waiting = false;
        return UINT64_MAX;
    }
    if (!L->waiting || memcmp(L->wait_pk, want, 32)) {
        L->waiting = true;
        memcpy(L->wait_pk, want, 32);
        L->wait_ms = t->now;
    }
    if (t->now - L->wait_ms <= SW_LEAD_PASS_MS)
        return L->wait_ms + SW_LEAD_PASS_MS + 1;
    cand_get(t, want)->passed_ms = t->now ? t->now : 1;
    L->waiting = false;
    L->passed_over++;
    sw_log(SW_LOG_WARN, "step %llu: stage-0 node %s should lead but sent no prepare for %d s: "
           "passing it over", (unsigned long long)t->step, sw_proto_who(who, want),
           SW_LEAD_PASS_MS / 1000);
    trainer_scan_soon(t, SW_TRAINER_SCAN_MS / 5);
    return t->now + 1;
}

uint64_t
sw_lead_tick(struct sw_trainer *t)
{
    struct sw_lead *L = &t->lead;
    uint64_t now = t->now, wake = now + SW_TRAINER_HEARTBEAT_MS, stall_ms;
    bool running = L->phase == SW_LEAD_RUNNING || L->phase == SW_LEAD_PAUSED;
    const struct sw_peer_rec *rival;
    int missing;

    joining_alone(t);
    wake = SW_MIN(wake, pass_over(t));
    if (L->phase == SW_LEAD_RUNNING && !t->st.job.on /* computing apart is progress */ &&
        t->st.phase != SW_STEP_UPDATING &&
        now - SW_MAX(L->phase_ms, t->st.progress_ms) > (stall_ms = stall_limit(t))) {
        double lim = (double)stall_ms / 1000.0;
        running = false;
        if (t->step == L->step && stage0_ahead(t)) {
            /* another stage-0 node went past the step (it led the run on
             * while this one was in the step): a PREPARE of it would restart
             * a step the run has left (sim seed 704); follow the run */
            sw_log(SW_LOG_WARN, "step %llu stalled for %.1f s, and a stage-0 node is past it: "
                   "copying state again", (unsigned long long)L->step, lim);
            set_phase(t, SW_LEAD_IDLE);
            sw_step_drop(t, "a stage-0 node is past the step");
            sw_recover_resync(t);
            return wake;
        }
        if (t->step == L->step && run_ahead(t)) {
            /* nodes of other stages updated past it, and what they owe the
             * step could not be replayed (the node that computed it died):
             * a PREPARE of it would be refused by them for ever */
            sw_log(SW_LOG_ERROR, "step %llu stalled for %.1f s, and nodes of other stages are "
                   "past it: skipping it", (unsigned long long)L->step, lim);
            set_phase(t, SW_LEAD_IDLE);
            sw_step_skip(t, t->step + 1, "the step stalled and cannot be finished");
            return wake;
        }
        sw_log(SW_LOG_ERROR, "step %llu stalled for %.1f s: restarting it",
               (unsigned long long)L->step, lim);
        set_phase(t, SW_LEAD_RESTART);
    }
    if (L->phase == SW_LEAD_RESTART) {
        /* this node may be in the step itself: its own PREPARE drops it */
        if (sw_lead_is_leader(t) && t->step == L->step)
            prepare(t);
        else
            set_phase(t, SW_LEAD_IDLE);
        return wake;
    }
    if (running && t->step > L->step) {
        /* the step led is over (this node may be in the next one already,
         * led by another stage-0 node); the next one is prepared at once,
         * not SW_LEAD_START_MS later (lead.h) */
        set_phase(t, SW_LEAD_IDLE);
        L->phase_ms = now - SW_MIN(now, (uint64_t)SW_LEAD_START_MS);
        running = false;
    }
    if (running && L->took_over && sw_lead_is_leader(t) && (rival = takeover_rival(t))) {
        /* another newcomer took the step over too (lead.h, "Two takeovers") */
        struct sw_lead_cand *c = cand_find(t, t->pk);
        char who[13];
        sw_log(SW_LOG_WARN, "step %llu: stage-0 node %s, with a lower key, took the step over "
               "too: yielding to it", (unsigned long long)L->step, sw_proto_who(who, rival->pk));
        if (c)
            c->seen_ms = 0; /* seen in this node's own plan only */
        L->took_over = false;
        sw_lead_yield(t, L->step);
        sw_step_drop(t, "another node took the step over");
        return wake;
    }
    if (running && sw_lead_is_leader(t)) {
        watch(t);
        early_prepare(t);
        return SW_MIN(wake, now + SW_LEAD_PING_MS);
    }
    if (running && sw_lead_expected(t)) {
        /* another node leads (this one copied its state again, or a node
         * with a lower key trains): its slots are stale from now on */
        sw_lead_yield(t, L->step);
        running = false;
    }
    if (L->phase == SW_LEAD_PREPARING) {
        if (!sw_lead_is_leader(t) || t->step != L->step)
            set_phase(t, SW_LEAD_IDLE); /* see go() */
        else
            prepare_watch(t);
        return wake;
    }
    if (L->phase == SW_LEAD_IDLE && sw_step_busy(&t->st) && t->st.phase >= SW_STEP_RUNNING &&
        sw_lead_is_leader(t) && (!L->led || L->step != t->step)) {
        if (now - t->st.t_go_ms > (uint64_t)t->o.dead_ms)
            inherit(t);
        return SW_MIN(wake, t->st.t_go_ms + (uint64_t)t->o.dead_ms + 1);
    }
    if (L->phase == SW_LEAD_IDLE && sw_step_busy(&t->st) && t->st.phase < SW_STEP_RUNNING &&
        t->phase == SW_PHASE_TRAINING && sw_lead_is_leader(t)) {
        /* activations of the step came (a swapped route's second visit to
         * stage 0) but no GO: the leader died between its GOs, and this node,
         * leader now, has no plan to inherit.  Busy, it would neither lead
         * nor pass the lead over, and the run would wait for it for good:
         * the step's PREPARE restarts every node in it, this one too */
        if (now - t->st.progress_ms > (uint64_t)t->o.dead_ms) {
            sw_log(SW_LOG_WARN, "step %llu: activations came %.1f s ago but no plan (its leader "
                   "died sending it): preparing the step again", (unsigned long long)t->step,
                   (double)(now - t->st.progress_ms) / 1000.0);
            sw_step_drop(t, "no plan came for the step's activations");
            L->step = t->step;
            prepare(t);
            return wake;
        }
        return SW_MIN(wake, t->st.progress_ms + (uint64_t)t->o.dead_ms + 1);
    }
    if ((L->phase != SW_LEAD_IDLE && L->phase != SW_LEAD_TAKEOVER) || sw_step_busy(&t->st) ||
        !sw_lead_is_leader(t) || t->step >= (uint64_t)t->man->steps)
        return wake;
    if (now - L->phase_ms < SW_LEAD_START_MS)
        return L->phase_ms + SW_LEAD_START_MS;
    if (t->run_step >= (uint64_t)t->man->steps) {
        /* the run's last step is done (nodes that finished it left): a plan
         * of it now would train it a second time, a fork of the finished
         * run; this node ends with it (finished_elsewhere, trainer.c) */
        return wake;
    }
    if (t->step < t->run_step && L->phase != SW_LEAD_TAKEOVER && run_ahead(t)) {
        /* the run went on without this node: another stage-0 node led it
         * while this one, initialised at the same time, was not in its
         * table yet; or this one copied its state in the middle of a step
         * that nodes of other stages have finished since.  Preparing its
         * step would restart it for the nodes still in it and leave those
         * past it waiting for ever: follow the run (copy again), not lead */
        if (!stage0_ahead(t)) {
            behind_alone_on_stage0(t);
            return wake;
        }
        sw_log(SW_LOG_INFO, "behind the run (step %llu, run at %llu): copying state again",
               (unsigned long long)t->step, (unsigned long long)t->run_step);
        sw_recover_resync(t);
        return wake;
    }
    if ((missing = missing_stage(t)) >= 0) {
        if (now - L->wait_log_ms > 5000) {
            sw_log(SW_LOG_INFO, "waiting for a node on stage %d%s", missing,
                   t->step > 0 ? ": drivers paused" : "");
            L->wait_log_ms = now;
        }
        return wake;
    }
    L->step = t->step;
    if (L->phase == SW_LEAD_TAKEOVER && now - L->phase_ms > SW_LEAD_STALL_MS) {
        /* a stage has had no node at the step (or one past it) for that
         * long: its nodes are behind it, and only a PREPARE moves them
         * (step.h: they copy again or skip to it) */
        sw_log(SW_LOG_WARN, "step %llu: no plan of the lost leader's step for %d s: preparing it",
               (unsigned long long)L->step, SW_LEAD_STALL_MS / 1000);
        prepare(t);
    } else if (L->phase == SW_LEAD_TAKEOVER) {
        takeover(t);
    } else {
        prepare(t);
    }
    return wake;
}
