/*
 * step.c - a training node's part of a step (see step.h).
 */
#include "sw.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "trainer.h"

#define EP SW_PROTO_EP_MAX

/* Bytes of a FWD as kept here: the activation (float32), then the targets. */
static size_t
fwd_len(const struct sw_trainer *t)
{
    return t->N * t->C * 4 + t->N * 4;
}

/* Bytes of a BWD payload (the activation's gradient in the run's codec,
 * codec.h) and of a FWD payload (the activation in the codec, then the
 * targets as int32). */
static size_t
bwd_wire_len(const struct sw_trainer *t)
{
    return sw_codec_bytes(t->codec, t->N * t->C);
}

static size_t
fwd_wire_len(const struct sw_trainer *t)
{
    return bwd_wire_len(t) + t->N * 4;
}

static size_t
visits(const struct sw_trainer *t)
{
    return (size_t)t->M * (size_t)t->V;
}

int
sw_step_init(struct sw_trainer *t)
{
    struct sw_step *s = &t->st;
    size_t NC = t->N * t->C, V = visits(t);
    int err;

    /* s->plan is the trainer's from sw_trainer_init on (who is in the run) */
    if ((err = sw_plan_init(&s->scratch, t->S, t->M)) < 0)
        return err;
    s->fwd_done = sw_calloc(V, sizeof(bool));
    s->bwd_done = sw_calloc(V, sizeof(bool));
    s->have_dx = sw_calloc(V, sizeof(bool));
    s->losses = sw_calloc((size_t)t->M, sizeof(float));
    s->mb_node = sw_calloc((size_t)t->M, sizeof(int));
    s->dx = sw_malloc_big(V * NC * sizeof(float));
    s->routes = sw_calloc((size_t)t->M * (size_t)t->S, EP);
    s->xbuf = sw_malloc_big(NC * sizeof(float));
    s->msgbuf = sw_malloc_big(fwd_len(t));
    s->wirebuf = sw_malloc_big(fwd_len(t));
    s->in_all = sw_malloc((size_t)t->M * t->N * sizeof(int32_t));
    s->tg_all = sw_malloc((size_t)t->M * t->N * sizeof(int32_t));
    s->xout = sw_malloc_big(V * fwd_len(t));
    s->dxout = sw_malloc_big(V * NC * sizeof(float));
    s->xout_ok = sw_calloc(V, sizeof(bool));
    s->dxout_ok = sw_calloc(V, sizeof(bool));
    s->xin = sw_malloc_big(V * fwd_len(t));
    s->xin_ok = sw_calloc(V, sizeof(bool));
    s->early_ok = sw_calloc(V, sizeof(bool));
    s->early_dx = sw_calloc(V, sizeof(bool));
    s->early_pk = sw_calloc(V, 32);
    s->early_dxpk = sw_calloc(V, 32);
    s->hop_asm = sw_calloc(2 * V, sizeof(*s->hop_asm));
    if (!s->fwd_done || !s->bwd_done || !s->have_dx || !s->losses || !s->mb_node || !s->dx ||
        !s->routes || !s->xbuf || !s->msgbuf || !s->wirebuf || !s->in_all || !s->tg_all || !s->xout ||
        !s->dxout || !s->xout_ok || !s->dxout_ok || !s->xin || !s->xin_ok || !s->early_ok || !s->early_dx ||
        !s->early_pk || !s->early_dxpk || !s->hop_asm)
        return -SW_ENOMEM;
    s->myidx = -1;
    return 0;
}

void
sw_step_release(struct sw_trainer *t)
{
    struct sw_step *s = &t->st;

    sw_plan_release(&s->plan);
    sw_plan_release(&s->scratch);
    sw_free(s->fwd_done);
    sw_free(s->bwd_done);
    sw_free(s->have_dx);
    sw_free(s->losses);
    sw_free(s->mb_node);
    sw_free_big(s->dx);
    sw_free(s->routes);
    sw_free_big(s->xbuf);
    sw_free_big(s->msgbuf);
    sw_free_big(s->wirebuf);
    sw_free(s->in_all);
    sw_free(s->tg_all);
    sw_free_big(s->xout);
    sw_free_big(s->dxout);
    sw_free(s->xout_ok);
    sw_free(s->dxout_ok);
    sw_free_big(s->xin);
    sw_free(s->xin_ok);
    sw_free(s->early_ok);
    sw_free(s->early_dx);
    sw_free(s->early_pk);
    sw_free(s->early_dxpk);
    for (size_t v = 0; s->hop_asm && v < 2 * visits(t); v++) {
        sw_free_big(s->hop_asm[v].buf);
        sw_free(s->hop_asm[v].got);
    }
    sw_free(s->hop_asm);
    sw_free_big(s->early);
    sw_free_big(s->own);
    sw_free_big(s->gwire);
    sw_free_big(s->gerr);
    sw_free_big(s->gerr_next);
    for (int i = 0; i < SW_PROTO_MAX_REPLICAS; i++) {
        sw_free_big(s->part[i].buf);
        sw_free(s->part[i].got);
    }
    memset(s, 0, sizeof(*s));
}

void
sw_step_reset(struct sw_trainer *t)
{
    struct sw_step *s = &t->st;
    size_t V = visits(t);

    sw_step_settle(t); /* an update cannot be undone: the step ends first */
    if (s->job.on) { /* its result is of the step forgotten */
        if (t->ops->cancel)
            t->ops->cancel(t->model);
        s->job.on = false;
    }
    memset(s->fwd_done, 0, V * sizeof(bool));
    memset(s->xin_ok, 0, V * sizeof(bool));
    memset(s->bwd_done, 0, V * sizeof(bool));
    memset(s->have_dx, 0, V * sizeof(bool));
    memset(s->early_ok, 0, V * sizeof(bool));
    memset(s->early_dx, 0, V * sizeof(bool));
    s->phase = SW_STEP_IDLE;
    s->n_bwd = 0;
    s->gsend_on = false;
    /* keep partial gradients of replicas that are already at the next step,
     * and the step before's, to relay (Relays); not this step's: a restart
     * plans it again under version 0, and a partial of the first try would
     * pass for one of the next (sim --harsh 1619: two states) */
    for (int i = 0; i < s->npart;) {
        if (s->part[i].step == t->step || s->part[i].step + 1 < t->step) {
            struct sw_partial tmp = s->part[i];
            s->part[i] = s->part[s->npart - 1];
            s->part[s->npart - 1] = tmp; /* its buffer is kept for reuse */
            s->npart--;
        } else {
            i++;
        }
    }
}

/* ---- routes of this node's visits ---- */

static bool
swapped(const struct sw_trainer *t, uint64_t step, int m)
{
    return sw_plan_swapped(t->plus, step, t->M, m);
}

static int
nhops(const struct sw_trainer *t, uint64_t step, int m)
{
    return sw_plan_nhops(t->S, swapped(t, step, m));
}

static int
hop_stage(const struct sw_trainer *t, uint64_t step, int m, int h, unsigned *parts)
{
    return sw_plan_hop_stage(t->S, swapped(t, step, m), h, parts);
}

static int
nvisits(const struct sw_trainer *t, uint64_t step, int m)
{
    return sw_plan_nvisits(t->S, swapped(t, step, m), t->stage);
}

static int
visit_hop(const struct sw_trainer *t, uint64_t step, int m, int k)
{
    return sw_plan_visit_hop(t->S, swapped(t, step, m), t->stage, k);
}

static char *
route_ep(struct sw_trainer *t, int mb, int s)
{
    return t->st.routes + ((size_t)mb * t->S + s) * EP;
}

/* The route of microbatch m from the plan of the step. */
static void
route_from_plan(struct sw_trainer *t, int m)
{
    for (int s = 0; s < t->S; s++)
        snprintf(route_ep(t, m, s), EP, "%s", t->st.plan.ep[sw_plan_at(&t->st.plan, s, m)]);
}

/* The planned sender of visit hop h of microbatch m (the node of hop h's stage). */
static const uint8_t *
planned(const struct sw_trainer *t, uint64_t step, int m, int h)
{
    return t->st.plan.pk[sw_plan_at(&t->st.plan, hop_stage(t, step, m, h, NULL), m)];
}

/* ---- sending ---- */

/*
 * The FWD (BWD) of visit u as stored when this node computed it, to the
 * next (previous) hop's node: first sends and replays after a replan.  The
 * body names the hop the receiver runs.
 */
/* The body of a FWD (keys more than the three) or BWD of microbatch m to hop h. */
static struct sw_body *
hop_body(struct sw_trainer *t, int keys, uint64_t step, int m, int h)
{
    struct sw_body *b = &t->body;

    sw_body_init(b);
    msgpack_pack_map(&b->pk, (uint32_t)keys);
    sw_proto_pack_key(&b->pk, "step");
    msgpack_pack_uint64(&b->pk, step);
    sw_proto_pack_key(&b->pk, "mb");
    msgpack_pack_uint32(&b->pk, (uint32_t)m);
    sw_proto_pack_key(&b->pk, "hop");
    msgpack_pack_uint32(&b->pk, (uint32_t)h);
    return b;
}

/*
 * A FWD (route: the microbatch's, else a BWD) of p, len bytes, for
 * microbatch m at hop h to ep: one message, or above SW_STEP_HOP_PIECE
 * bytes pieces of that many bytes, each with its 'off' and the 'total'.
 */
static void
send_hop(struct sw_trainer *t, const char *ep, uint32_t type, uint64_t step, int m, int h,
         const char *route, const uint8_t *p, size_t len)
{
    bool pieced = len > SW_STEP_HOP_PIECE;
    size_t off = 0;

    do {
        size_t n = pieced ? SW_MIN(SW_STEP_HOP_PIECE, len - off) : len;
        struct sw_body *b = hop_body(t, 3 + (route != NULL) + 2 * pieced, step, m, h);

        if (route) {
            sw_proto_pack_key(&b->pk, "route");
            msgpack_pack_array(&b->pk, (size_t)t->S);
            for (int s = 0; s < t->S; s++)
                sw_proto_pack_str(&b->pk, route + (size_t)s * EP);
        }
        if (pieced) {
            sw_proto_pack_key(&b->pk, "off");
            msgpack_pack_uint64(&b->pk, off);
            sw_proto_pack_key(&b->pk, "total");
            msgpack_pack_uint64(&b->pk, len);
        }
        if (trainer_send(t, ep, type, p + off, n) < 0)
            return;
        off += n;
    } while (off < len);
}

static void
send_fwd(struct sw_trainer *t, int u, uint64_t step)
{
    int m = u % t->M, h = visit_hop(t, step, m, u / t->M) + 1;
    const uint8_t *x = t->st.xout + (size_t)u * fwd_len(t);

    if (t->codec != SW_CODEC_FP32) {
        size_t xl = bwd_wire_len(t);
        sw_codec_encode(t->codec, (const float *)x, t->N * t->C, t->st.wirebuf);
        memcpy(t->st.wirebuf + xl, x + t->N * t->C * 4, t->N * 4);
        x = t->st.wirebuf;
    }
    send_hop(t, route_ep(t, m, hop_stage(t, step, m, h, NULL)), SW_MSG_FWD, step, m, h,
             route_ep(t, m, 0), x, fwd_wire_len(t));
}

static void
send_bwd(struct sw_trainer *t, int u, uint64_t step)
{
    int m = u % t->M, h = visit_hop(t, step, m, u / t->M) - 1;
    const float *dx = t->st.dxout + (size_t)u * t->N * t->C;
    const void *p = dx;

    if (t->codec != SW_CODEC_FP32) {
        sw_codec_encode(t->codec, dx, t->N * t->C, t->st.wirebuf);
        p = t->st.wirebuf;
    }
    send_hop(t, route_ep(t, m, hop_stage(t, step, m, h, NULL)), SW_MSG_BWD, step, m, h, NULL, p,
             bwd_wire_len(t));
}

/* ---- the prepare answer ---- */

/* A READY's body up to its fourth and last key (step, stage, ok, then the
 * caller's: hash, lead, copy or busy; swarm-protocol(7)). */
static msgpack_packer *
ready_begin(struct sw_trainer *t, uint64_t step, bool ok)
{
    struct sw_body *b = &t->body;

    sw_body_init(b);
    msgpack_pack_map(&b->pk, 4);
    sw_proto_pack_key(&b->pk, "step");
    msgpack_pack_uint64(&b->pk, step);
    sw_proto_pack_key(&b->pk, "stage"); /* the leader's table may be older than a move */
    msgpack_pack_uint32(&b->pk, (uint32_t)t->stage);
    sw_proto_pack_key(&b->pk, "ok");
    if (ok)
        msgpack_pack_true(&b->pk);
    else
        msgpack_pack_false(&b->pk);
    return &b->pk;
}

void
sw_step_answer_prepare(struct sw_trainer *t)
{
    struct sw_step *s = &t->st;
    msgpack_packer *pk;
    bool ok;

    if (!s->prep.pending || trainer_syncing(t) || sw_step_busy(s))
        return;
    ok = trainer_in_run(t) && t->step == s->prep.step;
    /* leaving for another stage (trainer.h): out of the plan; but not once
     * it answered ready for this step (an early PREPARE's READY, lead.h, or
     * the round's first): the leader may have planned it on that answer */
    if (t->move_to >= 0 && ok && s->ready_step != s->prep.step + 1) {
        ok = false;
        t->move_refused = true;
    }
    if (ok)
        s->ready_step = s->prep.step + 1;
    s->prep.pending = false;
    pk = ready_begin(t, s->prep.step, ok);
    sw_proto_pack_key(pk, "hash"); /* the leader plans one state per stage (lead.h) */
    sw_proto_pack_bin(pk, t->phash, 32);
    trainer_reply(t, &s->prep.route, SW_MSG_READY, NULL);
}

/* ---- CheckFree+ replicas ---- */

int
sw_step_rep_kind(const struct sw_trainer *t, bool owner)
{
    if (!t->plus)
        return -1;
    if (t->stage == (owner ? 0 : 1))
        return 0;
    if (t->stage == (owner ? t->S - 1 : t->S - 2))
        return 1;
    return -1;
}

/* Pieces of a tensor message (GRAD, REPLICA) of numel floats: how many. */
static size_t
pieces_of(size_t numel)
{
    return (numel + SW_STEP_PIECE - 1) / SW_STEP_PIECE;
}

/* A piece's 'off' and 'n' fit a tensor of numel floats. */
static bool
piece_fits(size_t numel, uint64_t off, uint64_t n)
{
    return off < numel && off % SW_STEP_PIECE == 0 && n == SW_MIN(SW_STEP_PIECE, numel - off);
}

/* Piece k is in (got[]: one flag per piece); returns the pieces in. */
static uint32_t
piece_mark(uint8_t *got, uint32_t ngot, size_t k)
{
    ngot += !got[k];
    got[k] = 1;
    return ngot;
}

/* The piece of float offset off is in (piece_mark). */
static uint32_t
piece_in(uint8_t *got, uint32_t ngot, uint64_t off)
{
    return piece_mark(got, ngot, off / SW_STEP_PIECE);
}

/* Boundary stage, first node of the plan: the updated embedding (head) to
 * every node of the partner stage; tagged with the steps it has taken. */
static void
replica_push(struct sw_trainer *t)
{
    struct sw_body *b = &t->body;
    const struct sw_plan *p = &t->st.plan;
    int kind = sw_step_rep_kind(t, true), partner, err;
    size_t numel;

    if (kind < 0 || t->st.myidx != 0)
        return;
    partner = kind == 0 ? 1 : t->S - 2;
    numel = t->ops->rep_numel(t->model, kind);
    /* written whole before it is read (rep_read), as rep_in below (its
     * pieces, swapped in once all are in): not zeroed first in the loop */
    if (!t->rep_buf && !(t->rep_buf = sw_malloc_big_untouched(numel * sizeof(float)))) {
        SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "no memory for the checkfree+ replica");
        return;
    }
    if ((err = t->ops->rep_read(t->model, kind, t->rep_buf)) < 0) {
        SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "checkfree+ replica of stage %d not sent: %s",
                           t->stage, sw_strerror(err));
        return;
    }
    for (int i = 0; i < p->cnt[partner]; i++) {
        for (size_t off = 0; off < numel; off += SW_STEP_PIECE) {
            size_t n = SW_MIN(SW_STEP_PIECE, numel - off);

            sw_body_init(b);
            msgpack_pack_map(&b->pk, 4);
            sw_proto_pack_key(&b->pk, "step");
            msgpack_pack_uint64(&b->pk, t->step);
            sw_proto_pack_key(&b->pk, "kind");
            msgpack_pack_uint32(&b->pk, (uint32_t)kind);
            sw_proto_pack_key(&b->pk, "off");
            msgpack_pack_uint64(&b->pk, off);
            sw_proto_pack_key(&b->pk, "n");
            msgpack_pack_uint64(&b->pk, n);
            trainer_send(t, p->ep[partner * SW_PLAN_MAX + i], SW_MSG_REPLICA, t->rep_buf + off,
                         n * sizeof(float));
        }
    }
}

/* True when pk serves stage s in the installed plan or the DHT's records. */
static bool
serves_stage(struct sw_trainer *t, const uint8_t *pk, int s)
{
    struct sw_live_peer *l = sw_live_find(&t->live, pk);

    if (l && !l->dead && l->stage == s)
        return true;
    return sw_plan_find(&t->st.plan, s, pk) >= 0;
}

/*
 * A well-formed tensor message for another stage than this node's: the
 * sender's plan or resend predates this node's move to another stage (a
 * rebalance, an unstack), or its partner's role changed.  Dropped and
 * counted, without the ban a malformed one earns: an honest replica that
 * sent its partial again to a node that had moved was banned, its stage
 * taken for lost, and the run stopped (sim seed 107 with lost partials).
 */
static void
other_stage(struct sw_trainer *t, const struct sw_transport_msg *m, msgpack_unpacked *u,
            const char *what)
{
    char who[13];

    msgpack_unpacked_destroy(u);
    t->drop_unknown++;
    SW_LOG_RATELIMITED(SW_LOG_INFO, 5000, "dropped %s from %s for another stage than this "
                       "node's %d (sent before it moved?)", what,
                       sw_proto_who(who, m->hdr.sender), t->stage);
}

/* A partner keeps the newest replica its boundary stage pushed, once all
 * its pieces are in (the one before stays whole meanwhile). */
void
sw_step_on_replica(struct sw_trainer *t, const struct sw_transport_msg *m)
{
    static const char *const keys[] = {"step", "kind", "off", "n", NULL};
    msgpack_unpacked u;
    uint64_t step, kind, off, n;
    int want = sw_step_rep_kind(t, false), bs;
    size_t numel, pieces;
    float *tmp;
    char who[13];

    if (!t->ops || want < 0 || trainer_refuse_banned(t, m) || !trainer_open(t, m, &u, keys))
        return;
    numel = t->ops->rep_numel(t->model, want);
    pieces = pieces_of(numel);
    if (sw_proto_get_u64(&u.data, "step", &step) < 0 ||
        sw_proto_get_u64(&u.data, "kind", &kind) < 0 || kind > 1 ||
        sw_proto_get_u64(&u.data, "off", &off) < 0 || sw_proto_get_u64(&u.data, "n", &n) < 0) {
        trainer_reject(t, m, &u, SW_WIRE_DROP_MALFORMED, "malformed checkfree+ replica");
        return;
    }
    if (kind != (uint64_t)want) {
        other_stage(t, m, &u, "a checkfree+ replica");
        return;
    }
    if (!piece_fits(numel, off, n)) {
        trainer_reject(t, m, &u, SW_WIRE_DROP_MALFORMED, "malformed checkfree+ replica");
        return;
    }
    if (m->payload_len != n * sizeof(float)) {
        trainer_reject(t, m, &u, SW_WIRE_DROP_MALFORMED, "checkfree+ replica of the wrong shape");
        return;
    }
    if (!sw_wire_all_finite(SW_WIRE_F32, m->payload, m->payload_len)) {
        trainer_reject(t, m, &u, SW_WIRE_DROP_NONFINITE, "non-finite checkfree+ replica");
        return;
    }
    msgpack_unpacked_destroy(&u);
    /* only from the boundary node that pushes (the first of its stage in the
     * installed plan: replica_push), and never from far ahead: a stranger's
     * pieces cannot mix into the replica or hold back the real pushes */
    bs = want == 0 ? 0 : t->S - 1;
    if (t->st.plan.cnt[bs] < 1 || memcmp(m->hdr.sender, t->st.plan.pk[bs * SW_PLAN_MAX], 32) ||
        step > t->step + 2) {
        t->drop_unknown++;
        SW_LOG_RATELIMITED(SW_LOG_WARN, 2000, "dropped a checkfree+ replica of step %llu from %s: "
                           "%s", (unsigned long long)step, sw_proto_who(who, m->hdr.sender),
                           step > t->step + 2 ? "ahead of the run"
                                              : "not the plan's first node of its stage");
        return;
    }
    if ((t->rep_have && step <= t->rep_step) || (t->rep_in_on && step < t->rep_in_step))
        return; /* older than the one kept, or than the one coming in */
    if ((!t->rep_in && !(t->rep_in = sw_malloc_big_untouched(numel * sizeof(float)))) ||
        (!t->rep_got && !(t->rep_got = sw_malloc(pieces))))
        return;
    if (!t->rep_in_on || step != t->rep_in_step) {
        memset(t->rep_got, 0, pieces);
        t->rep_ngot = 0;
        t->rep_in_step = step;
        t->rep_in_on = true;
    }
    memcpy(t->rep_in + off, m->payload, m->payload_len);
    if ((t->rep_ngot = piece_in(t->rep_got, t->rep_ngot, off)) < pieces)
        return;
    tmp = t->rep_buf;
    t->rep_buf = t->rep_in;
    t->rep_in = tmp;
    t->rep_in_on = false;
    t->rep_numel = numel;
    t->rep_step = step;
    t->rep_have = true;
    sw_log(SW_LOG_DEBUG, "replica of the %s at step %llu", want == 0 ? "embedding" : "head",
           (unsigned long long)step);
}

/* ---- the update ---- */

static void update_done(struct sw_trainer *t);

/* The step's update with the sum of the ngrads gradients (0: the stage's
 * own), loss_sum the loss sum of its microbatches (last stage): done now,
 * or UPDATING while it runs apart (update_done when it is done). */
static void
update(struct sw_trainer *t, double loss_sum, const float *const *grads, int ngrads)
{
    struct sw_step *s = &t->st;
    int err;

    s->upd_loss = loss_sum;
    if ((err = t->ops->update(t->model, t->step, grads, ngrads, &s->upd)) == SW_COMPUTE_PENDING) {
        s->phase = SW_STEP_UPDATING;
        return;
    }
    if (err < 0)
        s->upd.err = err;
    update_done(t);
}

/* The update is done (s->upd): the step's end. */
static void
update_done(struct sw_trainer *t)
{
    struct sw_step *s = &t->st;
    struct sw_step_report r;
    double dt, cs;
    int mine = 0;

    s->phase = SW_STEP_EXCHANGE; /* no longer UPDATING (a reset below settles nothing) */
    if (s->upd.err < 0) {
        sw_log(SW_LOG_ERROR, "step %llu: update failed: %s", (unsigned long long)t->step,
               sw_strerror(s->upd.err));
        trainer_fail(t, s->upd.err, "update");
        return;
    }
    for (int m = 0; m < t->M; m++)
        mine += s->mb_node[m] == s->myidx;
    t->last_norm = s->upd.norm;
    dt = (double)(t->now - (s->t_update_ms > 0 ? s->t_update_ms : s->t_go_ms)) / 1000.0;
    if (s->t_update_ms > 0) {
        s->periods[s->nperiods++ % SW_STEP_PERIODS] = t->now - s->t_update_ms;
        s->period_ms = UINT64_MAX;
        for (unsigned i = 0; i < SW_MIN(s->nperiods, (unsigned)SW_STEP_PERIODS); i++)
            s->period_ms = SW_MIN(s->period_ms, s->periods[i]);
    }
    s->t_update_ms = t->now;
    t->tps = dt > 0 ? (double)mine * t->N / dt : 0;
    cs = t->ops->compute_s(t->model);
    t->cap = cs > 0 ? s->tok_compute / cs : 0;
    t->tokens_total += (uint64_t)mine * t->N;
    memcpy(t->phash, s->upd.hash, 32);
    sw_identity_hex(t->hash, t->phash, 8);
    if (t->stage == t->S - 1)
        t->last_loss = s->upd_loss / t->M;
    memset(&r, 0, sizeof(r));
    r.step = t->step;
    r.stage = t->stage;
    r.loss = t->stage == t->S - 1 ? t->last_loss : -1;
    r.lr = s->upd.lr;
    r.norm = s->upd.norm;
    snprintf(r.hash, sizeof(r.hash), "%s", t->hash);
    r.tok_s = (double)t->M * t->N / (dt > 0 ? dt : 1);
    r.step_ms = dt * 1000.0;
    r.update_ms = s->upd.took_ms;
    r.compute_ms = s->compute_at_update > 0 && cs >= s->compute_at_update
                       ? (cs - s->compute_at_update) * 1000.0 : -1;
    s->compute_at_update = cs;
    r.nrep = s->nrep;
    r.myidx = s->myidx;
    t->step++;
    if (t->step > t->run_step)
        t->run_step = t->step;
    replica_push(t);
    sw_recover_snap_due(t);
    sw_step_reset(t);
    if (t->step >= (uint64_t)t->man->steps) {
        char f[32];

        snprintf(f, sizeof(f), "\"steps\":%d", t->man->steps);
        sw_log_event(SW_LOG_INFO, "run_finished", f, "run finished: %d steps", t->man->steps);
        trainer_set_phase(t, SW_PHASE_DONE);
    } else if (t->phase == SW_PHASE_JOINING) {
        trainer_set_phase(t, SW_PHASE_TRAINING); /* in step with the run now */
    }
    sw_step_answer_prepare(t);
    if (t->env->stepped)
        t->env->stepped(t->env->arg, &r); /* its output and local save after the READY */
}

void
sw_step_settle(struct sw_trainer *t)
{
    if (t->st.phase != SW_STEP_UPDATING)
        return;
    t->ops->cancel(t->model); /* waits for it; its result is in t->st.upd all the same */
    update_done(t);
}

/* Sum of the losses of this node's microbatches (last stage). */
static double
own_loss(const struct sw_trainer *t)
{
    double l = 0;

    for (int m = 0; m < t->M; m++)
        if (t->st.bwd_done[m])
            l += t->st.losses[m];
    return l;
}

/* The slot of pk's partial of step, complete or not (one per sender and step), or NULL. */
static struct sw_partial *
partial_find(struct sw_trainer *t, const uint8_t *pk, uint64_t step)
{
    struct sw_step *s = &t->st;

    for (int i = 0; i < s->npart; i++)
        if (!memcmp(s->part[i].pk, pk, 32) && s->part[i].step == step)
            return &s->part[i];
    return NULL;
}

/* The complete partial of pk in step, held (the step's or the step before's), or NULL. */
static struct sw_partial *
held_partial(struct sw_trainer *t, const uint8_t *pk, uint64_t step)
{
    struct sw_partial *p = partial_find(t, pk, step);

    return p && p->ngot == pieces_of(t->numel) ? p : NULL;
}

/* The partial of replica r of this step, under the installed plan's version, or NULL. */
static struct sw_partial *
partial_of(struct sw_trainer *t, int r)
{
    struct sw_partial *p = held_partial(t, t->st.plan.pk[t->stage * SW_PLAN_MAX + r], t->step);

    return p && p->ver == t->st.plan.ver ? p : NULL;
}

/* The partials in plan order into gin (the update sums them); the loss
 * sum into *loss. */
static void
gather_partials(struct sw_trainer *t, double *loss)
{
    struct sw_step *s = &t->st;
    char who[13], a[17], b[17], f[96];

    s->ngin = 0;
    *loss = 0;
    for (int r = 0; r < s->nrep; r++) {
        const float *g = NULL;
        double l = 0;
        struct sw_partial *p;
        if (r == s->myidx) {
            g = s->own;
            l = own_loss(t);
        } else if ((p = partial_of(t, r))) {
            g = p->buf;
            l = p->loss;
            if (sodium_memcmp(p->hash, t->phash, 32) != 0) {
                sw_identity_hex(a, p->hash, 8);
                sw_identity_hex(b, t->phash, 8);
                t->mismatches++;
                snprintf(f, sizeof(f), "\"step\":%llu,\"stage\":%d,\"replica\":%d",
                         (unsigned long long)t->step, t->stage, r);
                sw_log_event(SW_LOG_ERROR, "param_mismatch", f, "parameter mismatch at step %llu: "
                             "replica %d of stage %d has hash %s, this node %s",
                             (unsigned long long)t->step, r, t->stage, a, b);
            }
        }
        if (!g) {
            sw_log(SW_LOG_WARN, "step %llu: replica %s of stage %d left before its partial "
                   "gradient came: updating without its microbatches' share",
                   (unsigned long long)t->step,
                   sw_proto_who(who, s->plan.pk[t->stage * SW_PLAN_MAX + r]), t->stage);
            continue;
        }
        s->gin[s->ngin++] = g;
        *loss += l;
    }
}

/* Replica r of the plan is gone: dead, left, banned, or back under its key at
 * another endpoint (a restart: the process in the plan is gone). */
static bool
replica_gone(struct sw_trainer *t, int r)
{
    int k = t->stage * SW_PLAN_MAX + r;
    const struct sw_peer_rec *rec = trainer_dir_find(t, t->st.plan.pk[k]);

    return trainer_gone(t, t->st.plan.pk[k]) || (rec && strcmp(rec->ep, t->st.plan.ep[k]));
}

static uint64_t piece_wait(const struct sw_trainer *t);

/* GRAD_ASK to replica q of the plan for gone replica r's partial (Relays). */
static void
ask_relay(struct sw_trainer *t, int q, int r)
{
    struct sw_step *s = &t->st;
    struct sw_body *b = &t->body;

    sw_body_init(b);
    msgpack_pack_map(&b->pk, 3);
    sw_proto_pack_key(&b->pk, "step");
    msgpack_pack_uint64(&b->pk, t->step);
    sw_proto_pack_key(&b->pk, "stage");
    msgpack_pack_uint32(&b->pk, (uint32_t)t->stage);
    sw_proto_pack_key(&b->pk, "of");
    sw_proto_pack_bin(&b->pk, s->plan.pk[t->stage * SW_PLAN_MAX + r], 32);
    if (trainer_send(t, s->plan.ep[t->stage * SW_PLAN_MAX + q], SW_MSG_GRAD_ASK, NULL, 0) == 0)
        s->relays_asked++;
}

/*
 * Relays (step.h): the live replicas whose partials are in are asked once
 * for the gone ones' partials, then waited for as for a partial; false when
 * there is nothing (more) to wait for and the update goes on without them.
 */
static bool
relay_wait(struct sw_trainer *t)
{
    struct sw_step *s = &t->st;
    bool asked = false;

    if (s->relay_step != t->step + 1) {
        s->relay_step = t->step + 1;
        for (int r = 0; r < s->nrep; r++) {
            if (r == s->myidx || partial_of(t, r) || !replica_gone(t, r))
                continue;
            for (int q = 0; q < s->nrep; q++)
                if (q != s->myidx && q != r && partial_of(t, q) && !replica_gone(t, q)) {
                    ask_relay(t, q, r);
                    asked = true;
                }
        }
        s->relay_ms = asked ? t->now : 0;
        if (asked)
            sw_log(SW_LOG_INFO, "step %llu: a replica of stage %d left before its partial "
                   "gradient came: asking the others for it", (unsigned long long)t->step,
                   t->stage);
    }
    return s->relay_ms && t->now - SW_MAX(s->relay_ms, s->progress_ms) < piece_wait(t);
}

/* The update, once this node's microbatches and every replica's partial are in. */
static void
finish_exchange(struct sw_trainer *t)
{
    struct sw_step *s = &t->st;
    double loss;
    bool after, gone = false;

    if (s->phase != SW_STEP_EXCHANGE || s->gsend_on) /* the update after the last piece out */
        return;
    if (s->nrep == 1) {
        update(t, own_loss(t), NULL, 0);
        return;
    }
    /* every other replica's partial for this step; once the leader has
     * finished the step (its PREPARE of the next is waiting here) nothing
     * will plan it again, and a replica gone meanwhile is done without */
    after = ((s->prep.pending && !s->prep.early) || s->prep.busy) &&
            s->prep.step == t->step + 1;
    for (int r = 0; r < s->nrep; r++) {
        if (r == s->myidx || partial_of(t, r))
            continue;
        if (!(after && replica_gone(t, r)))
            return;
        gone = true;
    }
    if (gone && relay_wait(t))
        return;
    gather_partials(t, &loss);
    if (s->gerr_pending) { /* this step's error feedback counts from now on */
        float *e = s->gerr;
        s->gerr = s->gerr_next;
        s->gerr_next = e;
        s->gerr_pending = false;
    }
    update(t, loss, s->gin, s->ngin);
}

/* Bytes of a GRAD piece of n floats; the piece from float off in gwire. */
static size_t
grad_piece_bytes(const struct sw_trainer *t, size_t n)
{
    return sw_codec_bytes(t->gcodec, n);
}

/* ---- warm-up (step.h) ---- */

/* A big buffer of size bytes, zeroed a slice a turn (warm_tick) until
 * warm_done; NULL when out of memory. */
static void *
warm_alloc(struct sw_step *s, size_t size)
{
    void *p;

    if (s->nwarm == SW_STEP_WARM_MAX)
        return sw_malloc_big(size);
    if (!(p = sw_malloc_big_untouched(size)))
        return NULL;
    s->warm[s->nwarm++] = (struct sw_step_warm){.p = p, .size = size, .off = 0};
    return p;
}

/* Entry i is zeroed: out of the list, the others in their order. */
static void
warm_drop(struct sw_step *s, int i)
{
    memmove(&s->warm[i], &s->warm[i + 1], (size_t)(s->nwarm - i - 1) * sizeof(s->warm[0]));
    s->nwarm--;
}

/* Buffer p (of warm_alloc's, or any other) is about to be used: its part
 * not yet zeroed is zeroed now. */
static void
warm_done(struct sw_step *s, const void *p)
{
    for (int i = 0; p && i < s->nwarm; i++) {
        struct sw_step_warm *w = &s->warm[i];

        if (w->p != p)
            continue;
        memset((char *)w->p + w->off, 0, w->size - w->off);
        warm_drop(s, i);
        return;
    }
}

/* The next slice of the buffers being zeroed, in the order they were
 * allocated (this node's own partial, needed first, first); true while
 * some are left. */
static bool
warm_tick(struct sw_step *s)
{
    struct sw_step_warm *w;
    size_t k;

    if (s->nwarm == 0)
        return false;
    w = &s->warm[0];
    k = SW_MIN(SW_STEP_WARM_SLICE, w->size - w->off);
    memset((char *)w->p + w->off, 0, k);
    if ((w->off += k) == w->size)
        warm_drop(s, 0);
    return s->nwarm > 0;
}

/* A plan gives the stage replicas: the exchange buffers it will need that
 * are not there yet (one partial buffer for each other replica), to be
 * zeroed while the step computes.  One that cannot be had is allocated
 * again where it is used, which fails the step there. */
static void
warm_exchange(struct sw_trainer *t)
{
    struct sw_step *s = &t->st;
    size_t fb = t->numel * sizeof(float);

    if (!s->own)
        s->own = warm_alloc(s, fb);
    for (int i = 0; i < s->nrep - 1 && i < SW_PROTO_MAX_REPLICAS; i++)
        if (!s->part[i].buf)
            s->part[i].buf = warm_alloc(s, fb);
    if (t->gcodec == SW_CODEC_FP32)
        return;
    if (!s->gwire)
        s->gwire = warm_alloc(s, sw_codec_bytes(t->gcodec, SW_STEP_PIECE) * pieces_of(t->numel));
    if (!s->gerr)
        s->gerr = warm_alloc(s, fb);
    if (!s->gerr_next)
        s->gerr_next = warm_alloc(s, fb);
}

static uint8_t *
grad_piece_wire(const struct sw_trainer *t, size_t off)
{
    return t->st.gwire + off / SW_STEP_PIECE * grad_piece_bytes(t, SW_STEP_PIECE);
}

/*
 * [wire] gradients = int8: this node's partial plus the error feedback,
 * encoded piece by piece into gwire, each just before it is first sent
 * (grad_encode_piece: a turn of the loop each, as the pieces leave); own
 * becomes what the replicas decode (every replica sums the same decoded
 * partials, so they stay bit for bit the same), and gerr_next what the
 * encoding left out.  Made again from gerr if the step is planned again
 * before its update.  grad_encode_begin starts a partial.
 */
static int
grad_encode_begin(struct sw_trainer *t)
{
    struct sw_step *s = &t->st;
    size_t n = t->numel;

    /* all zeroes at first (sw_malloc_big, warm_done): no error fed back yet */
    if ((!s->gwire &&
         !(s->gwire = sw_malloc_big(sw_codec_bytes(t->gcodec, SW_STEP_PIECE) * pieces_of(n)))) ||
        (!s->gerr && !(s->gerr = sw_malloc_big(n * sizeof(float)))) ||
        (!s->gerr_next && !(s->gerr_next = sw_malloc_big(n * sizeof(float)))))
        return -SW_ENOMEM;
    warm_done(s, s->gwire);
    warm_done(s, s->gerr);
    warm_done(s, s->gerr_next);
    s->genc = 0;
    return 0;
}

/* Piece p of the partial (pieces in order, each once; the last one done
 * makes gerr_next the next step's error feedback). */
static void
grad_encode_piece(struct sw_trainer *t, size_t p)
{
    struct sw_step *s = &t->st;
    size_t off = p * SW_STEP_PIECE, k = SW_MIN(SW_STEP_PIECE, t->numel - off);
    uint8_t *w = grad_piece_wire(t, off);

    if (p != s->genc)
        return;
    for (size_t j = off; j < off + k; j++)
        s->gerr_next[j] = s->own[j] + s->gerr[j];
    sw_codec_encode(t->gcodec, s->gerr_next + off, k, w);
    sw_codec_decode(t->gcodec, w, k, s->own + off);
    for (size_t j = off; j < off + k; j++)
        s->gerr_next[j] -= s->own[j];
    if (++s->genc == pieces_of(t->numel))
        s->gerr_pending = true;
}

/* A GRAD piece's fields into t->body: of a partial of 'of' (relayed,
 * Relays), else of this node's. */
static void
pack_grad(struct sw_trainer *t, uint64_t step, uint64_t ver, uint32_t count, double loss,
          const uint8_t *hash, size_t off, size_t n, const uint8_t *of)
{
    struct sw_body *b = &t->body;

    sw_body_init(b);
    msgpack_pack_map(&b->pk, of ? 9 : 8);
    sw_proto_pack_key(&b->pk, "step");
    msgpack_pack_uint64(&b->pk, step);
    sw_proto_pack_key(&b->pk, "ver");
    msgpack_pack_uint64(&b->pk, ver);
    sw_proto_pack_key(&b->pk, "stage");
    msgpack_pack_uint32(&b->pk, (uint32_t)t->stage);
    sw_proto_pack_key(&b->pk, "count");
    msgpack_pack_uint32(&b->pk, count);
    sw_proto_pack_key(&b->pk, "loss");
    msgpack_pack_double(&b->pk, loss);
    sw_proto_pack_key(&b->pk, "hash");
    sw_proto_pack_bin(&b->pk, hash, 32);
    sw_proto_pack_key(&b->pk, "off");
    msgpack_pack_uint64(&b->pk, off);
    sw_proto_pack_key(&b->pk, "n");
    msgpack_pack_uint64(&b->pk, n);
    if (of) {
        sw_proto_pack_key(&b->pk, "of");
        sw_proto_pack_bin(&b->pk, of, 32);
    }
}

/* One piece of this node's partial gradient, from float off, to ep. */
static void
send_grad_piece(struct sw_trainer *t, const char *ep, size_t off)
{
    struct sw_step *s = &t->st;
    size_t n = SW_MIN(SW_STEP_PIECE, t->numel - off);

    pack_grad(t, t->step, s->plan.ver, (uint32_t)s->n_own, own_loss(t), t->phash, off, n, NULL);
    if (t->gcodec != SW_CODEC_FP32)
        trainer_send(t, ep, SW_MSG_GRAD, grad_piece_wire(t, off), grad_piece_bytes(t, n));
    else
        trainer_send(t, ep, SW_MSG_GRAD, s->own + off, n * sizeof(float));
}

/* The next SW_STEP_GRAD_TURN pieces of send_partial's: to each other
 * replica in plan order, all its pieces in order. */
static void
send_more(struct sw_trainer *t)
{
    struct sw_step *s = &t->st;
    size_t np = pieces_of(t->numel), total = np * (size_t)(s->nrep - 1);

    for (int i = 0; i < SW_STEP_GRAD_TURN && s->gsend_k < total; i++) {
        size_t k = s->gsend_k++;
        int r = (int)(k / np);

        r += r >= s->myidx; /* the replicas but this node */
        if (t->gcodec != SW_CODEC_FP32)
            grad_encode_piece(t, k % np); /* on its first way out */
        send_grad_piece(t, s->plan.ep[t->stage * SW_PLAN_MAX + r], k % np * SW_STEP_PIECE);
    }
    s->gsend_on = s->gsend_k < total;
}

/* This node's partial gradient to the stage's other planned nodes, in pieces
 * of SW_STEP_PIECE floats (a payload is at most SW_WIRE_MAX_PAYLOAD bytes,
 * a stage any size), SW_STEP_GRAD_TURN of them now and the rest from
 * sw_step_tick. */
static void
send_partial(struct sw_trainer *t)
{
    t->st.gsend_k = 0;
    t->st.gsend_on = true;
    send_more(t);
}

/* One piece of the first relay waiting (Relays), float32 from off;
 * true while pieces are left. */
static bool
relay_more(struct sw_trainer *t)
{
    struct sw_step *s = &t->st;
    struct sw_relay *r = &s->relay[0];
    struct sw_partial *p = NULL;
    size_t off, n;

    while (s->nrelay > 0 &&
           (!(p = held_partial(t, r->of, r->step)) || r->k >= pieces_of(t->numel))) {
        s->nrelay--;
        memmove(&s->relay[0], &s->relay[1], (size_t)s->nrelay * sizeof(*r));
    }
    if (s->nrelay == 0 || !p)
        return false;
    off = r->k++ * SW_STEP_PIECE;
    n = SW_MIN(SW_STEP_PIECE, t->numel - off);
    pack_grad(t, p->step, p->ver, 0, p->loss, p->hash, off, n, p->pk);
    (void)trainer_send(t, r->ep, SW_MSG_GRAD, p->buf + off, n * sizeof(float));
    if (r->k == pieces_of(t->numel))
        s->relays_sent++;
    return true;
}

/* No partial piece for that long, or for two pieces' time at the slowest
 * rate (a float32 piece of 8 MiB takes 8 s at 8 Mbit/s): nothing is coming. */
static uint64_t
piece_wait(const struct sw_trainer *t)
{
    return SW_MAX((uint64_t)SW_STEP_RESEND_MS,
                  2 * (uint64_t)grad_piece_bytes(t, SW_MIN(SW_STEP_PIECE, t->numel)) * 1000 /
                      SW_TRANSPORT_DRAIN_BPS);
}

/* sw_step_tick's exchange part. */
static bool
exchange_tick(struct sw_trainer *t)
{
    struct sw_step *s = &t->st;
    uint64_t wait;

    if (s->gsend_on && s->phase == SW_STEP_EXCHANGE) {
        send_more(t);
        if (!s->gsend_on)
            finish_exchange(t);
        return s->gsend_on;
    }
    if (s->phase != SW_STEP_EXCHANGE || s->nrep <= 1 ||
        !((s->prep.pending && !s->prep.early) ||
          (s->prep.busy && s->prep.step == t->step + 1)))
        return false;
    finish_exchange(t);
    wait = piece_wait(t);
    /* an ask for a relay (Relays) is waited for as a resend is */
    if (s->phase != SW_STEP_EXCHANGE ||
        t->now - SW_MAX(SW_MAX(s->progress_ms, s->resend_ms), s->relay_ms) < wait)
        return false;
    if (s->resends >= SW_STEP_RESENDS) {
        sw_step_drop(t, "the replicas' partial gradients did not come, though this node's "
                        "partial was sent again");
        return false;
    }
    s->resends++;
    s->resend_ms = t->now;
    SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "step %llu: no partial gradient in for %llu s while "
                       "the run went on: sending this node's again",
                       (unsigned long long)t->step, (unsigned long long)(wait / 1000));
    send_partial(t);
    return s->gsend_on;
}

bool
sw_step_tick(struct sw_trainer *t)
{
    bool warming = warm_tick(&t->st);
    bool relaying = relay_more(t);

    return exchange_tick(t) || warming || relaying;
}

/* All of this node's microbatches are through: its partial to its replicas. */
static void
own_done(struct sw_trainer *t)
{
    struct sw_step *s = &t->st;
    int err;

    s->phase = SW_STEP_EXCHANGE;
    if (s->nrep > 1) {
        if (!s->own && !(s->own = sw_malloc_big(t->numel * sizeof(float)))) {
            trainer_fail(t, -SW_ENOMEM, "partial gradient");
            return;
        }
        warm_done(s, s->own);
        if ((err = t->ops->grads_get(t->model, s->own)) < 0 ||
            (t->gcodec != SW_CODEC_FP32 && (err = grad_encode_begin(t)) < 0)) {
            trainer_fail(t, err, "partial gradient");
            return;
        }
        s->resends = 0;
        s->resend_ms = 0;
        send_partial(t);
    }
    finish_exchange(t);
}

/* ---- forward and backward ---- */

/* The backward of visit u is done (its gradient to pass on in xbuf). */
static void
backward_done(struct sw_trainer *t, int u)
{
    struct sw_step *s = &t->st;
    size_t NC = t->N * t->C;
    int m = u % t->M, h = visit_hop(t, t->step, m, u / t->M);

    s->bwd_done[u] = true;
    s->n_bwd++;
    s->progress_ms = t->now;
    if (h > 0) {
        memcpy(s->dxout + (size_t)u * NC, s->xbuf, NC * sizeof(float));
        s->dxout_ok[u] = true;
        send_bwd(t, u, t->step);
    }
}

/* Visit u's backward has its input: its forward is done and, but on the
 * route's last hop, the gradient from the hop after it is in (and was
 * taken with the step's plan). */
static bool
bwd_input_in(const struct sw_step *s, int u, bool last)
{
    return s->fwd_done[u] && (last || (s->have_dx[u] && !s->early_dx[u]));
}

/* The next backward in order, when its input is there; true when one
 * runs apart (s->job) or failed. */
static bool
try_backward(struct sw_trainer *t)
{
    struct sw_step *s = &t->st;
    size_t NC = t->N * t->C;
    int err;

    if (s->phase != SW_STEP_RUNNING || s->job.on)
        return s->job.on;
    /* microbatches in order, a microbatch's visits from its last hop back */
    for (int m = 0; m < t->M; m++) {
        if (s->mb_node[m] != s->myidx)
            continue;
        for (int k = nvisits(t, t->step, m) - 1; k >= 0; k--) {
            int u = m + k * t->M, h = visit_hop(t, t->step, m, k);
            bool last = h == nhops(t, t->step, m) - 1;

            if (s->bwd_done[u])
                continue;
            if (!bwd_input_in(s, u, last))
                return false; /* hold later ones: gradients accumulate in order */
            err = t->ops->backward(t->model, u, last ? NULL : s->dx + (size_t)u * NC, s->xbuf,
                                   1.0f / t->M);
            if (err < 0) {
                trainer_fail(t, err, "backward");
                return true;
            }
            if (err == SW_COMPUTE_PENDING) {
                s->job.on = true;
                s->job.fwd = false;
                s->job.u = u;
                return true;
            }
            backward_done(t, u);
        }
    }
    if (s->n_bwd == s->n_own)
        own_done(t);
    return false;
}

bool
sw_step_inputs_in(const struct sw_trainer *t)
{
    const struct sw_step *s = &t->st;

    if (s->phase != SW_STEP_RUNNING)
        return s->phase > SW_STEP_RUNNING;
    for (int m = 0; m < t->M; m++) {
        if (s->mb_node[m] != s->myidx)
            continue;
        for (int k = 0; k < nvisits(t, t->step, m); k++) {
            int u = m + k * t->M;
            if (!s->bwd_done[u] &&
                !bwd_input_in(s, u, visit_hop(t, t->step, m, k) == nhops(t, t->step, m) - 1))
                return false;
        }
    }
    return true;
}

static void forward_done(struct sw_trainer *t, int u, const int32_t *tg, float loss);

/* Forward of visit u on this node: x_in (NULL on the first hop), the
 * tokens (stage 0) and the targets. */
static int
forward_one(struct sw_trainer *t, int u, const float *x_in, const int32_t *tokens,
            const int32_t *tg)
{
    struct sw_step *s = &t->st;
    float loss = 0;
    int m = u % t->M, h = visit_hop(t, t->step, m, u / t->M);
    unsigned parts;
    int err;

    (void)hop_stage(t, t->step, m, h, &parts);
    if ((err = t->ops->forward(t->model, u, parts, tokens, x_in, tg, s->xbuf, &loss)) < 0)
        return err;
    if (err == SW_COMPUTE_PENDING) {
        s->job.on = true;
        s->job.fwd = true;
        s->job.u = u;
        s->job.tg = tg;
        return 0;
    }
    forward_done(t, u, tg, loss);
    return 0;
}

/* The forward of visit u is done: its output in xbuf, its loss (last hop). */
static void
forward_done(struct sw_trainer *t, int u, const int32_t *tg, float loss)
{
    struct sw_step *s = &t->st;
    int m = u % t->M, h = visit_hop(t, t->step, m, u / t->M);
    bool last = h == nhops(t, t->step, m) - 1;
    size_t len = fwd_len(t);

    if (u < t->M)
        s->tok_compute += (double)t->N;
    s->fwd_done[u] = true;
    s->progress_ms = t->now;
    if (last) {
        s->losses[m] = loss;
        return;
    }
    memcpy(s->xout + (size_t)u * len, s->xbuf, t->N * t->C * sizeof(float));
    memcpy(s->xout + (size_t)u * len + t->N * t->C * sizeof(float), tg, t->N * sizeof(int32_t));
    s->xout_ok[u] = true;
    send_fwd(t, u, t->step);
}

/* Forward of visit v from a FWD payload p: the activation in the run's
 * codec, then the targets. */
static int
forward_payload(struct sw_trainer *t, int v, const void *p)
{
    struct sw_step *s = &t->st;
    size_t xbytes = t->N * t->C * sizeof(float);
    int32_t *tg = (int32_t *)(s->msgbuf + xbytes);

    sw_codec_decode(t->codec, p, t->N * t->C, s->xbuf);
    memcpy(tg, (const uint8_t *)p + bwd_wire_len(t), t->N * sizeof(int32_t));
    return forward_one(t, v, s->xbuf, t->stage == 0 ? s->in_all + (size_t)(v % t->M) * t->N : NULL,
                       tg);
}

/* Stage 0's own forwards of microbatches it serves and has not run (they
 * stop at one running apart). */
static int
drive(struct sw_trainer *t)
{
    struct sw_step *s = &t->st;
    int err;

    for (int m = 0; m < t->M && !s->job.on; m++)
        if (s->mb_node[m] == s->myidx && !s->fwd_done[m] &&
            (err = forward_one(t, m, NULL, s->in_all + (size_t)m * t->N,
                               s->tg_all + (size_t)m * t->N)) < 0)
            return err;
    return 0;
}

/* Targets of a FWD payload p outside the vocabulary: a lie of its sender. */
static bool
targets_bad(const struct sw_trainer *t, const void *p)
{
    const uint8_t *tg = (const uint8_t *)p + bwd_wire_len(t);
    int32_t x;

    for (size_t i = 0; i < t->N; i++) {
        memcpy(&x, tg + i * sizeof(x), sizeof(x));
        if (x < 0 || x >= t->man->model.vocab_size)
            return true;
    }
    return false;
}

/*
 * Starts what is ready next, in this order: stage 0's own forwards, the
 * FWDs taken (xin), the backwards in order.  With ops that compute in the
 * call all of it runs now; with ops that compute apart one starts, and the
 * next when it is done (sw_step_computed).
 */
static void
pump(struct sw_trainer *t)
{
    struct sw_step *s = &t->st;
    size_t len = fwd_len(t);
    int err;

    if (s->job.on || s->phase < SW_STEP_EARLY)
        return;
    if (t->stage == 0 && s->phase >= SW_STEP_RUNNING && (err = drive(t)) < 0) {
        trainer_fail(t, err, "forward");
        return;
    }
    for (int v = 0; v < (int)visits(t) && !s->job.on; v++) {
        if (!s->xin_ok[v] || s->fwd_done[v])
            continue;
        if ((err = forward_payload(t, v, s->xin + (size_t)v * len)) < 0) {
            trainer_fail(t, err, "forward");
            return;
        }
    }
    if (!s->job.on)
        (void)try_backward(t);
}

void
sw_step_computed(struct sw_trainer *t, int err, float loss)
{
    struct sw_step *s = &t->st;

    if (s->phase == SW_STEP_UPDATING) {
        update_done(t); /* its status is s->upd.err */
        return;
    }
    if (!s->job.on) /* cancelled: not reported (trainer.h) */
        return;
    s->job.on = false;
    if (err < 0) {
        trainer_fail(t, err, s->job.fwd ? "forward" : "backward");
        return;
    }
    if (s->job.fwd)
        forward_done(t, s->job.u, s->job.tg, loss);
    else
        backward_done(t, s->job.u);
    pump(t);
}

/* ---- FWD, BWD, GRAD ---- */

/* Reads a FWD or BWD's step, mb, hop: the visit it is for into *v, or -1
 * when malformed (rejected). */
static int
read_hop(struct sw_trainer *t, const struct sw_transport_msg *m, msgpack_unpacked *u, bool fwd,
         uint64_t *step, int *mb, int *hop)
{
    uint64_t st, b, h;

    if (sw_proto_get_u64(&u->data, "step", &st) < 0 || sw_proto_get_u64(&u->data, "mb", &b) < 0 ||
        sw_proto_get_u64(&u->data, "hop", &h) < 0 || b >= (uint64_t)t->M ||
        (fwd ? h == 0 || h >= (uint64_t)nhops(t, st, (int)b)
             : h + 1 >= (uint64_t)nhops(t, st, (int)b))) {
        trainer_reject(t, m, u, SW_WIRE_DROP_MALFORMED,
                       fwd ? "malformed forward" : "malformed backward");
        return -1;
    }
    if (hop_stage(t, st, (int)b, (int)h, NULL) != t->stage) {
        other_stage(t, m, u, fwd ? "a forward" : "a backward");
        return -1;
    }
    *step = st;
    *mb = (int)b;
    *hop = (int)h;
    return (int)b + (visit_hop(t, st, (int)b, 0) == (int)h ? 0 : t->M);
}

/* Checks a tensor payload of len bytes (f32 first xbytes); false: rejected
 * (shape: what is "... of the wrong shape"; nonfinite: what a NaN is). */
static bool
check_tensor(struct sw_trainer *t, const struct sw_transport_msg *m, msgpack_unpacked *u,
             size_t len, size_t xbytes, const char *what, const char *nonfinite)
{
    char why[96];

    if (m->payload_len != len) {
        snprintf(why, sizeof(why), "%s of the wrong shape", what);
        trainer_reject(t, m, u, SW_WIRE_DROP_MALFORMED, why);
        return false;
    }
    if (!sw_wire_all_finite(SW_WIRE_F32, m->payload, xbytes)) {
        trainer_reject(t, m, u, SW_WIRE_DROP_NONFINITE, nonfinite);
        return false;
    }
    return true;
}

/* Checks a payload of len bytes that starts with n values in codec c
 * (a FWD's or BWD's activation or its gradient, a GRAD's piece), which
 * must decode to finite values; false: rejected (as check_tensor). */
static bool
check_coded(struct sw_trainer *t, const struct sw_transport_msg *m, msgpack_unpacked *u,
            enum sw_codec c, size_t n, size_t len, const char *what, const char *nonfinite)
{
    if (c == SW_CODEC_FP32)
        return check_tensor(t, m, u, len, n * sizeof(float), what, nonfinite);
    if (!check_tensor(t, m, u, len, 0, what, nonfinite))
        return false;
    if (!sw_codec_check(c, m->payload, n)) {
        trainer_reject(t, m, u, SW_WIRE_DROP_NONFINITE, nonfinite);
        return false;
    }
    return true;
}

/*
 * A FWD not (yet) from the node the plan names: a newcomer this node has not
 * read from the DHT, or whose GO or replan is still on its way.  Held until
 * the next plan names its sender (early_take); a held one from a known node
 * is not replaced by a stranger's.
 */
static void
hold_fwd(struct sw_trainer *t, const struct sw_transport_msg *m, int v, uint64_t step, int mb)
{
    struct sw_step *s = &t->st;
    size_t len = fwd_len(t);

    if (s->early_ok[v] && sw_live_find(&t->live, s->early_pk[v]) &&
        !sw_live_find(&t->live, m->hdr.sender))
        return;
    if (!s->early && !(s->early = sw_malloc_big(visits(t) * len)))
        return;
    memcpy(s->early + (size_t)v * len, m->payload, m->payload_len); /* fwd_wire_len <= len */
    memcpy(s->early_pk[v], m->hdr.sender, 32);
    s->early_ok[v] = true;
    sw_log(SW_LOG_DEBUG, "forward of step %llu mb %d held until a plan names its sender",
           (unsigned long long)step, mb);
}

/*
 * A piece of a FWD (fwd) or BWD of visit v of step (its body in u, with
 * 'off'): into the visit's struct sw_hop_asm.  True when it completed the
 * payload: *whole is then m with the whole payload, and u is the last
 * piece's body; false (u destroyed) while pieces are missing, and when the
 * piece is dropped (another step's) or rejected (a bad offset, length or
 * total bans its sender).  Pieces of one payload come from one sender: the
 * planned sender's are not replaced by another's, a known node's not by a
 * stranger's (as hold_fwd); another sender's otherwise start it afresh.
 */
static bool
hop_piece(struct sw_trainer *t, const struct sw_transport_msg *m, msgpack_unpacked *u, bool fwd,
          int v, uint64_t step, int mb, int hop, struct sw_transport_msg *whole)
{
    struct sw_hop_asm *a = &t->st.hop_asm[(fwd ? 0 : visits(t)) + (size_t)v];
    size_t want = fwd ? fwd_wire_len(t) : bwd_wire_len(t);
    size_t np = (want + SW_STEP_HOP_PIECE - 1) / SW_STEP_HOP_PIECE;
    uint64_t off, total;

    if (sw_proto_get_u64(&u->data, "off", &off) < 0 ||
        sw_proto_get_u64(&u->data, "total", &total) < 0 || total != want ||
        want <= SW_STEP_HOP_PIECE || off >= total || off % SW_STEP_HOP_PIECE ||
        m->payload_len != SW_MIN(SW_STEP_HOP_PIECE, total - off)) {
        trainer_reject(t, m, u, SW_WIRE_DROP_MALFORMED,
                       fwd ? "forward piece of the wrong shape" : "backward piece of the wrong shape");
        return false;
    }
    if (step != t->step) {
        sw_log(SW_LOG_DEBUG, "dropped a %s piece of step %llu at step %llu",
               fwd ? "forward" : "backward", (unsigned long long)step,
               (unsigned long long)t->step);
        msgpack_unpacked_destroy(u);
        return false;
    }
    if (a->ngot && (a->step != step || memcmp(a->pk, m->hdr.sender, 32))) {
        bool planned_now = t->st.phase >= SW_STEP_RUNNING && t->st.plan.step == step &&
                           !memcmp(a->pk, planned(t, step, mb, fwd ? hop - 1 : hop + 1), 32);

        if (a->step == step && (planned_now || (sw_live_find(&t->live, a->pk) &&
                                                !sw_live_find(&t->live, m->hdr.sender)))) {
            t->drop_unknown++;
            msgpack_unpacked_destroy(u);
            return false;
        }
        a->ngot = 0; /* another sender's (a replan's), or an older step's: started afresh */
    }
    if (!a->buf && (!(a->buf = sw_malloc_big(want)) || !(a->got = sw_calloc(np, 1)))) {
        sw_free_big(a->buf);
        a->buf = NULL;
        msgpack_unpacked_destroy(u);
        trainer_fail(t, -SW_ENOMEM, fwd ? "forward pieces" : "backward pieces");
        return false;
    }
    if (a->ngot == 0) {
        memset(a->got, 0, np);
        a->step = step;
        memcpy(a->pk, m->hdr.sender, 32);
    }
    memcpy(a->buf + off, m->payload, m->payload_len);
    a->ngot = piece_mark(a->got, a->ngot, off / SW_STEP_HOP_PIECE);
    if (a->ngot < np) {
        msgpack_unpacked_destroy(u);
        return false;
    }
    a->ngot = 0; /* read now, whole: the next piece starts another */
    *whole = *m;
    whole->payload = a->buf;
    whole->payload_len = want;
    return true;
}

/* A FWD's route: an array of S endpoints; false: rejected. */
static bool
check_route(struct sw_trainer *t, const struct sw_transport_msg *m, msgpack_unpacked *u)
{
    const msgpack_object *route = sw_proto_get(&u->data, "route");

    if (!route || route->type != MSGPACK_OBJECT_ARRAY || route->via.array.size != (uint32_t)t->S) {
        trainer_reject(t, m, u, SW_WIRE_DROP_MALFORMED, "malformed forward");
        return false;
    }
    return true;
}

/* Copies the route a FWD names (before its GO); false: rejected. */
static bool
route_from_msg(struct sw_trainer *t, const struct sw_transport_msg *m, msgpack_unpacked *u,
               int mb)
{
    const msgpack_object *route = sw_proto_get(&u->data, "route");

    for (int s = 0; s < t->S; s++)
        if (sw_proto_str(&route->via.array.ptr[s], route_ep(t, mb, s), EP) < 0) {
            trainer_reject(t, m, u, SW_WIRE_DROP_MALFORMED, "malformed forward route");
            return false;
        }
    return true;
}

void
sw_step_on_fwd(struct sw_trainer *t, const struct sw_transport_msg *m)
{
    static const char *const keys[] = {"step", "mb", "hop", "route", "off", "total", NULL};
    struct sw_step *s = &t->st;
    struct sw_transport_msg whole;
    msgpack_unpacked u;
    uint64_t step;
    int v, mb, hop;
    bool plan_ok, me = !memcmp(m->hdr.sender, t->pk, 32);

    if (!t->ops || trainer_syncing(t) || trainer_refuse_banned(t, m) ||
        !trainer_open(t, m, &u, keys))
        return;
    if ((v = read_hop(t, m, &u, true, &step, &mb, &hop)) < 0 || !check_route(t, m, &u))
        return;
    if (sw_proto_get(&u.data, "off")) {
        if (!hop_piece(t, m, &u, true, v, step, mb, hop, &whole))
            return;
        m = &whole;
    }
    if (!check_coded(t, m, &u, t->codec, t->N * t->C, fwd_wire_len(t), "forward",
                     "forward with non-finite activations"))
        return;
    if (step != t->step || s->fwd_done[v] || s->xin_ok[v]) {
        /* late, or a replay after a replan that this node does not need */
        if (!trainer_refuse_unknown(t, m))
            sw_log(SW_LOG_DEBUG, "dropped forward of step %llu mb %d at step %llu",
                   (unsigned long long)step, mb, (unsigned long long)t->step);
        msgpack_unpacked_destroy(&u);
        return;
    }
    plan_ok = s->phase >= SW_STEP_RUNNING && s->plan.step == step;
    if (!me && (plan_ok ? memcmp(m->hdr.sender, planned(t, step, mb, hop - 1), 32)
                        : !sw_live_find(&t->live, m->hdr.sender) && !sw_plan_has(&s->plan,
                                                                               m->hdr.sender))) {
        msgpack_unpacked_destroy(&u);
        hold_fwd(t, m, v, step, mb);
        return;
    }
    if (plan_ok)
        route_from_plan(t, mb); /* the plan says who sends it, and the route */
    else if (!route_from_msg(t, m, &u, mb))
        return;
    msgpack_unpacked_destroy(&u);
    if (targets_bad(t, m->payload)) {
        trainer_reject(t, m, NULL, SW_WIRE_DROP_MALFORMED, "forward with out-of-range targets");
        return;
    }
    if (s->phase < SW_STEP_EARLY)
        s->phase = SW_STEP_EARLY;
    memcpy(s->xin + (size_t)v * fwd_len(t), m->payload, m->payload_len);
    s->xin_ok[v] = true;
    pump(t);
}

/* A BWD from the planned sender: used now, or held when the replan that
 * gives this node its microbatch may still be on its way. */
static void
take_bwd(struct sw_trainer *t, const struct sw_transport_msg *m, int v, uint64_t step, int mb)
{
    struct sw_step *s = &t->st;

    if (step != t->step || (s->have_dx[v] && !s->early_dx[v])) {
        sw_log(SW_LOG_DEBUG, "dropped backward of step %llu mb %d", (unsigned long long)step, mb);
        return;
    }
    sw_codec_decode(t->codec, m->payload, t->N * t->C, s->dx + (size_t)v * t->N * t->C);
    s->have_dx[v] = true;
    /* neither this node's microbatch in the installed plan nor one it has the
     * input of: the replan that gives it this node may still be on its way
     * (the sender resent it on that replan): held */
    s->early_dx[v] = !s->fwd_done[v] && s->mb_node[mb] != s->myidx;
    if (s->early_dx[v])
        memcpy(s->early_dxpk[v], m->hdr.sender, 32);
    else
        pump(t);
}

void
sw_step_on_bwd(struct sw_trainer *t, const struct sw_transport_msg *m)
{
    static const char *const keys[] = {"step", "mb", "hop", "off", "total", NULL};
    struct sw_step *s = &t->st;
    struct sw_transport_msg whole;
    msgpack_unpacked u;
    uint64_t step;
    int v, mb, hop;

    if (!t->ops || trainer_syncing(t) || trainer_refuse_banned(t, m) ||
        !trainer_open(t, m, &u, keys))
        return;
    if ((v = read_hop(t, m, &u, false, &step, &mb, &hop)) < 0)
        return;
    if (sw_proto_get(&u.data, "off")) {
        if (!hop_piece(t, m, &u, false, v, step, mb, hop, &whole))
            return;
        m = &whole;
    }
    if (!check_coded(t, m, &u, t->codec, t->N * t->C, bwd_wire_len(t), "backward",
                     "backward with non-finite gradients"))
        return;
    msgpack_unpacked_destroy(&u);
    if (s->phase >= SW_STEP_RUNNING && s->plan.step == step &&
        !memcmp(m->hdr.sender, planned(t, step, mb, hop + 1), 32)) {
        take_bwd(t, m, v, step, mb); /* after a replan it may come before its input */
        return;
    }
    if (step == t->step && memcmp(m->hdr.sender, t->pk, 32) &&
        (!s->have_dx[v] || (s->early_dx[v] && !(sw_live_find(&t->live, s->early_dxpk[v]) &&
                                                !sw_live_find(&t->live, m->hdr.sender))))) {
        /* not (yet) from the node the plan names (see hold_fwd): held, not
         * used (try_backward) until a plan names its sender */
        sw_codec_decode(t->codec, m->payload, t->N * t->C, s->dx + (size_t)v * t->N * t->C);
        memcpy(s->early_dxpk[v], m->hdr.sender, 32);
        s->have_dx[v] = s->early_dx[v] = true;
        return;
    }
    if (!trainer_refuse_unknown(t, m))
        sw_log(SW_LOG_DEBUG, "dropped backward of step %llu mb %d", (unsigned long long)step, mb);
}

void
sw_step_on_grad(struct sw_trainer *t, const struct sw_transport_msg *m)
{
    static const char *const keys[] = {"step", "ver", "stage", "count", "loss", "hash", "off",
                                       "n", "of", NULL};
    struct sw_step *s = &t->st;
    size_t pieces = pieces_of(t->numel);
    msgpack_unpacked u;
    uint64_t step, stage, count, ver, off, n;
    double loss;
    const uint8_t *h, *of = NULL, *whose = m->hdr.sender;
    size_t hl = 32, ofl = 32;
    struct sw_partial *p = NULL;
    enum sw_codec codec = t->gcodec;
    uint32_t before;
    bool planned, fresh = false;
    char who[13];

    if (!t->ops || trainer_syncing(t) || trainer_refuse_banned(t, m) ||
        !trainer_open(t, m, &u, keys))
        return;
    if (sw_proto_get_u64(&u.data, "step", &step) < 0 ||
        sw_proto_get_u64(&u.data, "ver", &ver) < 0 ||
        sw_proto_get_u64(&u.data, "stage", &stage) < 0 ||
        sw_proto_get_u64(&u.data, "count", &count) < 0 ||
        sw_proto_get_f64(&u.data, "loss", &loss) < 0 ||
        sw_proto_get_bin(&u.data, "hash", &h, &hl) < 0 ||
        sw_proto_get_u64(&u.data, "off", &off) < 0 || sw_proto_get_u64(&u.data, "n", &n) < 0 ||
        (sw_proto_get(&u.data, "of") &&
         (sw_proto_get_bin(&u.data, "of", &of, &ofl) < 0 || ofl != 32))) {
        trainer_reject(t, m, &u, SW_WIRE_DROP_MALFORMED, "malformed partial gradient");
        return;
    }
    if (stage != (uint64_t)t->stage) {
        other_stage(t, m, &u, "a partial gradient");
        return;
    }
    if (of) { /* a gone replica's, relayed (Relays): float32 */
        codec = SW_CODEC_FP32;
        whose = of;
    }
    if (!piece_fits(t->numel, off, n)) {
        trainer_reject(t, m, &u, SW_WIRE_DROP_MALFORMED, "malformed partial gradient");
        return;
    }
    if (!check_coded(t, m, &u, codec, n, sw_codec_bytes(codec, n), "partial gradient",
                     "non-finite partial gradient"))
        return;
    if (!isfinite(loss)) {
        trainer_reject(t, m, &u, SW_WIRE_DROP_NONFINITE, "non-finite partial gradient");
        return;
    }
    if (trainer_refuse_unknown(t, m) || step < t->step)
        goto out;
    /* Only a replica of this stage may hold a slot, and only for this step
     * or the next (a replica is never further ahead: it needs this node's
     * partial to end the step), so that partials of other keys or far steps
     * cannot fill the slots and stall the stage (issue 12) */
    planned = sw_plan_find(&s->plan, t->stage, m->hdr.sender) >= 0;
    if (step > t->step + 1 || (!planned && !serves_stage(t, m->hdr.sender, t->stage))) {
        t->drop_unknown++;
        SW_LOG_RATELIMITED(SW_LOG_WARN, 2000, "dropped a partial gradient of step %llu from %s: "
                           "%s", (unsigned long long)step, sw_proto_who(who, m->hdr.sender),
                           step > t->step + 1 ? "more than one step ahead"
                                              : "not a node of this stage");
        goto out;
    }
    /* a relay only from a replica of the plan, of another one, in a step this node asked in */
    if (of && (!planned || s->relay_step != step + 1 || !memcmp(of, m->hdr.sender, 32) ||
               !memcmp(of, t->pk, 32) || sw_plan_find(&s->plan, t->stage, of) < 0)) {
        s->relay_drops++;
        SW_LOG_RATELIMITED(SW_LOG_WARN, 2000, "dropped a relayed partial gradient of step %llu "
                           "from %s: not asked for", (unsigned long long)step,
                           sw_proto_who(who, m->hdr.sender));
        goto out;
    }
    p = partial_find(t, whose, step);
    if (!p && s->npart < SW_PROTO_MAX_REPLICAS)
        p = &s->part[s->npart];
    /* full: a planned replica takes the slot of a step before this one's,
     * or of a sender the plan does not name */
    for (int i = 0; !p && planned && i < s->npart; i++)
        if (s->part[i].step < t->step) {
            p = &s->part[i];
            fresh = true;
        }
    for (int i = 0; !p && planned && i < s->npart; i++)
        if (sw_plan_find(&s->plan, t->stage, s->part[i].pk) < 0) {
            p = &s->part[i];
            fresh = true;
        }
    if (!p || (!p->buf && !(p->buf = sw_malloc_big(t->numel * sizeof(float)))) ||
        (!p->got && !(p->got = sw_malloc(pieces))))
        goto out;
    warm_done(s, p->buf);
    if (fresh || p == &s->part[s->npart] || p->ver != ver) {
        /* a new partial: of a step not seen from this sender, or summed
         * under another plan version (a replan): its pieces start over */
        memset(p->got, 0, pieces);
        p->ngot = 0;
        p->relayed = 0;
    }
    sw_codec_decode(codec, m->payload, n, p->buf + off);
    memcpy(p->pk, whose, 32);
    memcpy(p->hash, h, 32);
    p->loss = loss;
    p->step = step;
    p->ver = ver;
    before = p->ngot;
    p->ngot = piece_in(p->got, p->ngot, off);
    if (p == &s->part[s->npart])
        s->npart++;
    /* a piece again (a resend) is no progress: the leader's stall limit
     * must still restart a step whose missing partial never comes */
    if (p->ngot != before)
        s->progress_ms = t->now;
    if (of && p->ngot == pieces && before != pieces)
        s->relays_taken++;
    msgpack_unpacked_destroy(&u);
    if (step == t->step && p->ngot == pieces)
        finish_exchange(t);
    return;
out:
    msgpack_unpacked_destroy(&u);
}

/* GRAD_ASK (Relays): a replica of the plan asks for a gone replica's
 * partial of a step; answered once per asking replica and partial, when
 * this node holds all of it. */
void
sw_step_on_grad_ask(struct sw_trainer *t, const struct sw_transport_msg *m)
{
    static const char *const keys[] = {"step", "stage", "of", NULL};
    struct sw_step *s = &t->st;
    msgpack_unpacked u;
    uint64_t step, stage;
    const uint8_t *of;
    size_t ofl = 32;
    struct sw_partial *p;
    struct sw_relay *r;
    int q;
    char who[13];

    if (!t->ops || trainer_syncing(t) || trainer_refuse_banned(t, m) ||
        !trainer_open(t, m, &u, keys))
        return;
    if (sw_proto_get_u64(&u.data, "step", &step) < 0 ||
        sw_proto_get_u64(&u.data, "stage", &stage) < 0 ||
        sw_proto_get_bin(&u.data, "of", &of, &ofl) < 0 || ofl != 32) {
        trainer_reject(t, m, &u, SW_WIRE_DROP_MALFORMED, "malformed ask for a relay");
        return;
    }
    if (stage != (uint64_t)t->stage) {
        other_stage(t, m, &u, "an ask for a relay");
        return;
    }
    if (trainer_refuse_unknown(t, m))
        goto out;
    q = sw_plan_find(&s->plan, t->stage, m->hdr.sender);
    p = held_partial(t, of, step);
    if (q < 0 || !memcmp(m->hdr.sender, of, 32) || (p && (p->relayed >> q) & 1) ||
        s->nrelay == SW_PROTO_MAX_REPLICAS) {
        s->relay_drops++;
        SW_LOG_RATELIMITED(SW_LOG_WARN, 2000, "dropped an ask for a relay of step %llu from %s: "
                           "%s", (unsigned long long)step, sw_proto_who(who, m->hdr.sender),
                           q < 0 ? "not a replica of this node's plan" : "asked already");
        goto out;
    }
    if (!p) /* this node lacks it too: the asker waits, then goes without it, as this one does */
        goto out;
    p->relayed |= 1u << q;
    r = &s->relay[s->nrelay++];
    snprintf(r->ep, sizeof(r->ep), "%s", s->plan.ep[t->stage * SW_PLAN_MAX + q]);
    memcpy(r->of, of, 32);
    r->step = step;
    r->k = 0;
    sw_log(SW_LOG_INFO, "step %llu: relaying the partial gradient of %s, which left, to %s",
           (unsigned long long)step, sw_proto_who(who, of), r->ep);
out:
    msgpack_unpacked_destroy(&u);
}

/* ---- plans ---- */

/* This node's place in the installed plan: replicas, its microbatches. */
static void
plan_take(struct sw_trainer *t)
{
    struct sw_step *s = &t->st;
    int j = t->stage;

    s->nrep = s->plan.cnt[j];
    s->myidx = sw_plan_find(&s->plan, j, t->pk);
    if (s->nrep > 1)
        warm_exchange(t);
    s->n_own = s->n_bwd = 0;
    for (int mb = 0; mb < t->M; mb++) {
        s->mb_node[mb] = s->plan.assign[j * t->M + mb];
        if (s->mb_node[mb] != s->myidx)
            continue;
        for (int k = 0; k < nvisits(t, t->step, mb); k++) {
            s->n_own++;
            s->n_bwd += s->bwd_done[mb + k * t->M];
        }
    }
}

/* The step's plan is in: the FWDs and BWDs held for it (sw_step_on_fwd,
 * sw_step_on_bwd) are used when the plan names their senders, dropped
 * (counted) if not. */
static void
early_take(struct sw_trainer *t)
{
    struct sw_step *s = &t->st;
    size_t len = fwd_len(t);

    for (int v = 0; v < (int)visits(t); v++) {
        int m = v % t->M, k = v / t->M, h = visit_hop(t, t->step, m, k);
        if (!s->early_dx[v])
            continue;
        s->early_dx[v] = false;
        if (k >= nvisits(t, t->step, m) || h + 1 >= nhops(t, t->step, m) ||
            memcmp(s->early_dxpk[v], planned(t, t->step, m, h + 1), 32)) {
            s->have_dx[v] = false;
            t->drop_unknown++;
        }
    }
    for (int v = 0; v < (int)visits(t); v++) {
        int m = v % t->M, k = v / t->M, h = visit_hop(t, t->step, m, k);
        if (!s->early_ok[v])
            continue;
        s->early_ok[v] = false;
        if (k >= nvisits(t, t->step, m) || h == 0 || s->fwd_done[v] || s->mb_node[m] != s->myidx ||
            memcmp(s->early_pk[v], planned(t, t->step, m, h - 1), 32)) {
            t->drop_unknown++;
            continue;
        }
        if (targets_bad(t, s->early + (size_t)v * len)) {
            sw_live_ban(&t->live, s->early_pk[v], t->now, "forward with out-of-range targets");
            continue;
        }
        memcpy(s->xin + (size_t)v * len, s->early + (size_t)v * len, len);
        s->xin_ok[v] = true;
    }
}

/* Every FWD and BWD of microbatch m this node sent in step, again from its
 * store, to the nodes its plan names. */
static void
send_stored(struct sw_trainer *t, uint64_t step, int m)
{
    struct sw_step *s = &t->st;

    for (int k = 0; k < nvisits(t, step, m); k++) {
        int u = m + k * t->M, h = visit_hop(t, step, m, k);
        if (h + 1 < nhops(t, step, m) && s->xout_ok[u])
            send_fwd(t, u, step);
        if (h > 0 && s->dxout_ok[u])
            send_bwd(t, u, step);
    }
}

/*
 * Installs p and resends, from the store, every FWD and BWD this node sent
 * in the step for a microbatch it serves in both plans: to the neighbours
 * that changed, and to those that did not, since a neighbour may have
 * restarted the step (a PREPARE after a stall) or come back under its key
 * as another process; a receiver that has it already drops the copy.
 */
static void
replay(struct sw_trainer *t, const struct sw_plan *p, uint64_t step, uint8_t *oldme)
{
    struct sw_step *s = &t->st;
    int j = t->stage;

    for (int m = 0; m < t->M; m++)
        oldme[m] = !memcmp(s->plan.pk[sw_plan_at(&s->plan, j, m)], t->pk, 32);
    sw_plan_copy(&s->plan, p);
    for (int m = 0; m < t->M; m++) {
        bool newme = !memcmp(s->plan.pk[sw_plan_at(&s->plan, j, m)], t->pk, 32);
        if (!oldme[m] && !newme)
            continue;
        route_from_plan(t, m);
        if (oldme[m] && newme)
            send_stored(t, step, m);
    }
}

_Static_assert(2 * SW_STEP_RESEND_GAP_MS <= SW_LEAD_STALL_MIN_MS,
               "an honest leader's resends come no closer than half its least stall limit");

/* The leader's GO again with resend (step.h, Resends): every FWD and BWD
 * this node sent in step, again, to the nodes its plan names, and its
 * partial gradient to its replicas while it waits for theirs. */
static void
resend_sent(struct sw_trainer *t, uint64_t step)
{
    struct sw_step *s = &t->st;

    if (s->resent_ms && t->now - s->resent_ms < SW_STEP_RESEND_GAP_MS) {
        s->resends_dropped++;
        SW_LOG_RATELIMITED(SW_LOG_WARN, 10000, "step %llu: a GO with resend within %d ms of "
                           "the last one taken: dropped (%llu so far)", (unsigned long long)step,
                           SW_STEP_RESEND_GAP_MS, (unsigned long long)s->resends_dropped);
        return;
    }
    s->resent++;
    s->resent_ms = t->now;
    for (int m = 0; m < t->M; m++)
        if (!memcmp(s->plan.pk[sw_plan_at(&s->plan, t->stage, m)], t->pk, 32))
            send_stored(t, step, m);
    /* a replica waiting for this node's partial (lost with a closed
     * connection) holds the step as much as a lost FWD or BWD would */
    if (step == t->step && s->phase == SW_STEP_EXCHANGE && s->nrep > 1 && !s->gsend_on) {
        s->resend_ms = t->now;
        send_partial(t);
    }
}

/*
 * A replan of step (ver > the installed one): see step.h, "Replans".
 * replay_only: this node finished the step already and only resends.
 */
static void
replan(struct sw_trainer *t, const struct sw_plan *p, uint64_t step, bool replay_only)
{
    struct sw_step *s = &t->st;
    uint8_t *oldme = sw_calloc((size_t)t->M, 1);
    int err;

    if (!oldme)
        goto out;
    replay(t, p, step, oldme);
    if (replay_only)
        goto out;
    plan_take(t);
    if (s->myidx < 0) {
        /* planned out (thought dead): drop the step; a later PREPARE brings the state back */
        sw_log(SW_LOG_WARN, "step %llu goes on without this node", (unsigned long long)step);
        if ((err = t->ops->zero_grad(t->model)) < 0)
            trainer_fail(t, err, "replan");
        sw_step_reset(t);
        goto out;
    }
    s->phase = SW_STEP_RUNNING;
    early_take(t);
    pump(t);
out:
    sw_free(oldme);
}

/* GO of the node's step: the plan installed, stage 0 draws the data and drives. */
static void
go_start(struct sw_trainer *t, const struct sw_plan *p, uint64_t step)
{
    struct sw_step *s = &t->st;
    int err;

    sw_plan_copy(&s->plan, p);
    memset(s->xout_ok, 0, visits(t) * sizeof(bool));
    memset(s->dxout_ok, 0, visits(t) * sizeof(bool));
    s->store_step = step;
    s->go_step = step + 1;
    plan_take(t);
    if (s->myidx < 0) {
        sw_log(SW_LOG_INFO, "step %llu goes on without this node", (unsigned long long)step);
        return;
    }
    for (int mb = 0; mb < t->M; mb++)
        route_from_plan(t, mb);
    s->phase = SW_STEP_RUNNING;
    s->t_go_ms = t->now;
    if (t->stage == 0) {
        /* every stage-0 replica draws all M microbatches: same cursor everywhere */
        t->ops->data_mark(t->model);
        for (int mb = 0; mb < t->M; mb++)
            if ((err = t->ops->batch(t->model, s->in_all + (size_t)mb * t->N,
                                     s->tg_all + (size_t)mb * t->N)) < 0) {
                trainer_fail(t, err, "data");
                return;
            }
    }
    early_take(t);
    pump(t);
}

/*
 * PREPARE and GO of step come from the leader (step.h): the one this node's
 * table names (lead.h, sw_lead_expected), or the leader of that step as this
 * node knows it: the one whose PREPARE of it this node took, or a stage-0
 * node of the step's plan (it inherited the step of a leader that died).
 * Anything else (a stranger, a node of another stage, a stage-0 node that
 * does not lead) is counted and dropped, and the table read again soon: a
 * real leader that this node has not read yet asks again.
 */
static bool
from_leader(struct sw_trainer *t, const struct sw_transport_msg *m, uint64_t step)
{
    const struct sw_step *s = &t->st;
    const uint8_t *pk = m->hdr.sender, *want;

    if (!memcmp(pk, t->pk, 32))
        return true;
    if ((want = sw_lead_expected(t)) && !memcmp(pk, want, 32)) {
        sw_lead_heard(t, pk);
        return true;
    }
    if (s->prep.step == step && !memcmp(pk, s->prep.pk, 32) && !sodium_is_zero(s->prep.pk, 32))
        return true;
    if (s->plan.step == step && sw_plan_find(&s->plan, 0, pk) >= 0 && !trainer_gone(t, pk))
        return true;
    t->drop_unknown++;
    SW_LOG_RATELIMITED(SW_LOG_WARN, 2000, "dropped %s of step %llu from a node that does not "
                       "lead the run", m->hdr.type == SW_MSG_GO ? "a plan" : "a prepare",
                       (unsigned long long)step);
    trainer_scan_soon(t, SW_TRAINER_SCAN_MS / 5);
    return false;
}

void
sw_step_on_go(struct sw_trainer *t, const struct sw_transport_msg *m)
{
    static const char *const keys[] = {"step", "ver", "plan", "att", "resend", NULL};
    struct sw_step *s = &t->st;
    struct sw_plan *p = &s->scratch;
    msgpack_unpacked u;
    const msgpack_object *po, *att;
    uint64_t step, ver;
    bool resend = false;

    /* a node stopping finishes its step: replans of it still count */
    if (!t->ops || trainer_refuse_banned(t, m) ||
        !(trainer_in_run(t) || (t->phase == SW_PHASE_STOPPING && sw_step_busy(s))))
        return;
    if (!trainer_open(t, m, &u, keys))
        return;
    po = sw_proto_get(&u.data, "plan");
    att = sw_proto_get(&u.data, "att");
    if (sw_proto_get_u64(&u.data, "step", &step) < 0 ||
        sw_proto_get_u64(&u.data, "ver", &ver) < 0 || !po || sw_plan_parse(p, po) < 0 ||
        (att && (att->type != MSGPACK_OBJECT_ARRAY || att->via.array.size != (uint32_t)t->S)) ||
        (sw_proto_get(&u.data, "resend") && sw_proto_get_bool(&u.data, "resend", &resend) < 0)) {
        trainer_reject(t, m, &u, SW_WIRE_DROP_MALFORMED, "malformed plan");
        return;
    }
    if (!from_leader(t, m, step)) {
        msgpack_unpacked_destroy(&u);
        return;
    }
    /* the step's GO again (its first started it): nothing to do, the update
     * runs on; a replan or a later step's finds it done */
    if (s->phase == SW_STEP_UPDATING && !(step == t->step && ver <= s->plan.ver))
        sw_step_settle(t);
    /* the leader's attestation of each stage's hash at the step (recover.h):
     * only the leader's (a stranger's GO must not vouch for a copy) */
    for (int st = 0; att && st < t->S; st++) {
        const msgpack_object *h = &att->via.array.ptr[st];
        char hx[17];
        if (h->type == MSGPACK_OBJECT_BIN && h->via.bin.size == 32) {
            sw_identity_hex(hx, (const uint8_t *)h->via.bin.ptr, 8);
            sw_live_attest(&t->live, m->hdr.sender, st, step, hx);
        }
    }
    msgpack_unpacked_destroy(&u);
    if (memcmp(m->hdr.sender, t->pk, 32))
        sw_lead_yield(t, step);
    p->step = step;
    p->ver = ver;
    sw_lead_seen_plan(t, p); /* its stage-0 nodes take part: candidates to lead (lead.h) */
    if (step == t->step && s->phase >= SW_STEP_RUNNING && ver > s->plan.ver) {
        sw_log(SW_LOG_INFO, "step %llu planned again (version %llu)", (unsigned long long)step,
               (unsigned long long)ver);
        replan(t, p, step, false);
        return;
    }
    if (step + 1 == t->step && !sw_step_busy(s) && s->store_step == step &&
        s->plan.step == step && ver > s->plan.ver) {
        replan(t, p, step, true);
        return;
    }
    if (resend && ver == s->plan.ver && s->plan.step == step && s->store_step == step &&
        ((step == t->step && s->phase >= SW_STEP_RUNNING) ||
         (step + 1 == t->step && !sw_step_busy(s)))) {
        resend_sent(t, step);
        return;
    }
    if (step + 1 == t->step && s->phase == SW_STEP_FRESH) {
        /*
         * Rebuilt from a source that had finished the step in progress (a
         * node downstream of the lost one, which still owed its BWDs to the
         * stages upstream): nothing is stored here to replay, so this stage
         * computes the step again with what it rebuilt, and takes the step
         * it updates to from the run (the leader plans it at the step).
         */
        sw_log(SW_LOG_INFO, "step %llu: the run is still in it; this rebuilt stage takes part "
               "(its source had finished it)", (unsigned long long)step);
        t->step = step;
    }
    if (step != t->step || s->phase >= SW_STEP_RUNNING)
        return;
    go_start(t, p, step);
}

/* ---- PREPARE ---- */

/* Drops the step in progress (restarted, or gone on without this node). */
static bool
step_drop(struct sw_trainer *t, bool rewind)
{
    int err;

    if ((err = t->ops->zero_grad(t->model)) < 0) {
        trainer_fail(t, err, "restart");
        return false;
    }
    if (rewind && t->stage == 0 && t->st.phase >= SW_STEP_RUNNING)
        t->ops->data_rewind(t->model);
    sw_step_reset(t);
    return true;
}

void
sw_step_skip(struct sw_trainer *t, uint64_t step, const char *why)
{
    char f[128];
    int err;

    if (!step_drop(t, true))
        return;
    snprintf(f, sizeof(f), "\"stage\":%d,\"from\":%llu,\"to\":%llu", t->stage,
             (unsigned long long)t->step, (unsigned long long)step);
    sw_log_event(SW_LOG_WARN, "step_skipped", f, "stage %d skips from step %llu to %llu with "
                 "its state: %s", t->stage, (unsigned long long)t->step,
                 (unsigned long long)step, why);
    t->step = step;
    if (t->step > t->run_step)
        t->run_step = t->step;
    if (t->stage == 0 && (err = t->ops->data_seek(t->model, t->step)) < 0) {
        trainer_fail(t, err, "data");
        return;
    }
    if (t->phase == SW_PHASE_JOINING)
        trainer_set_phase(t, SW_PHASE_TRAINING);
    trainer_announce(t);
}

void
sw_step_drop(struct sw_trainer *t, const char *why)
{
    if (!sw_step_busy(&t->st))
        return;
    sw_log(SW_LOG_WARN, "step %llu: dropping what this node did of it: %s",
           (unsigned long long)t->step, why);
    (void)step_drop(t, true);
}

/* A node of this stage, other than this one, that is past step (a copy of
 * it brings this node up). */
static bool
stage_mate_past(struct sw_trainer *t, uint64_t step)
{
    for (int i = 0; i < t->ndir; i++) {
        const struct sw_peer_rec *r = &t->dir[i];
        if (r->stage == t->stage && sw_rec_has_state(r->state) && r->step > step &&
            memcmp(r->pk, t->pk, 32) && !trainer_gone(t, r->pk))
            return true;
    }
    return false;
}

/*
 * A PREPARE from a key that this node's table does not hold as a training
 * stage-0 node (a leader candidate, lead.h) is answered READY not ok, with
 * "lead" false: a real leader whose record this node has not read yet, or
 * read before it trained (both joined a moment ago), asks again half a
 * second later (lead.h), by when this node has read the table again
 * (from_leader), instead of waiting out its request's timeout (the dead
 * time: 15 s and more on slow links) with the whole run.  One from a
 * candidate that is not this node's leader (a stage-0 node that takes
 * itself for the leader while this node follows another) is not answered:
 * asked again and again it would restart a stale round every moment, where
 * its timeout leaves that node the time to read the table and follow the
 * run (sim seeds 627, 882, 5506 failed so).  The answer is
 * small (no hash: it vouches for nothing) and at most SW_STEP_NAK_PER_S a
 * second go out, whoever asks.
 */
static void
answer_not_leader(struct sw_trainer *t, const struct sw_transport_msg *m, uint64_t step)
{
    struct sw_step *s = &t->st;
    const struct sw_peer_rec *r = trainer_dir_find(t, m->hdr.sender);
    msgpack_packer *pk;

    if (r && r->stage == 0 && r->state == SW_REC_TRAINING)
        return;
    if (t->now - s->nak_ms >= 1000) {
        s->nak_ms = t->now;
        s->nak_n = 0;
    }
    if (s->nak_n >= SW_STEP_NAK_PER_S)
        return;
    s->nak_n++;
    pk = ready_begin(t, step, false);
    sw_proto_pack_key(pk, "lead");
    msgpack_pack_false(pk);
    trainer_reply(t, &m->route, SW_MSG_READY, NULL);
}

/* Copying the stage's state: the PREPARE answered at once with the time the
 * copy has left, so that the round waits for it (lead.h, Copies); the
 * leader asks again. */
static void
answer_copying(struct sw_trainer *t)
{
    struct sw_step *s = &t->st;
    msgpack_packer *pk;

    s->prep.pending = false;
    pk = ready_begin(t, s->prep.step, false);
    sw_proto_pack_key(pk, "copy");
    msgpack_pack_uint64(pk, sw_fetch_left_ms(&t->fetch, t->now));
    trainer_reply(t, &s->prep.route, SW_MSG_READY, NULL);
}

/* Summing the replicas' partials of the step before (see the caller). */
static void
answer_busy(struct sw_trainer *t)
{
    struct sw_step *s = &t->st;
    msgpack_packer *pk;

    s->prep.pending = false;
    s->prep.busy = true;
    pk = ready_begin(t, s->prep.step, false);
    sw_proto_pack_key(pk, "busy");
    msgpack_pack_true(pk);
    trainer_reply(t, &s->prep.route, SW_MSG_READY, NULL);
}

void
sw_step_on_prepare(struct sw_trainer *t, const struct sw_transport_msg *m)
{
    static const char *const keys[] = {"step", "early", NULL};
    struct sw_step *s = &t->st;
    msgpack_unpacked u;
    uint64_t step;
    bool early = false;

    if (m->route.rid == 0 || !t->ops || trainer_refuse_banned(t, m) ||
        !trainer_open(t, m, &u, keys))
        return;
    if (sw_proto_get_u64(&u.data, "step", &step) < 0 ||
        (sw_proto_get(&u.data, "early") && sw_proto_get_bool(&u.data, "early", &early) < 0)) {
        trainer_reject(t, m, &u, SW_WIRE_DROP_MALFORMED, "malformed prepare");
        return;
    }
    msgpack_unpacked_destroy(&u);
    /* a stranger's PREPARE (of any step) neither restarts a step nor sends
     * this node copying state: dropped, and answered "not my leader" */
    if (!from_leader(t, m, step)) {
        answer_not_leader(t, m, step);
        return;
    }
    if (early) {
        /* the next step's, sent while the leader finishes its part of this
         * one (lead.h, Early PREPAREs): READY once this node's part is done
         * (update_done), and nothing else; a node that is not at the step
         * before it, or not in the run, waits for the round's own PREPARE */
        if (step == t->step + 1 && sw_step_busy(s) && trainer_in_run(t) &&
            !(s->prep.pending && !s->prep.early)) {
            memcpy(s->prep.pk, m->hdr.sender, 32);
            s->prep.route = m->route;
            s->prep.step = step;
            s->prep.pending = s->prep.early = true;
            s->prep.busy = false;
            return;
        }
        if (step != t->step || sw_step_busy(s) || !trainer_in_run(t) ||
            (s->prep.pending && !s->prep.early))
            return;
    }
    if (s->phase == SW_STEP_UPDATING && step != t->step + 1)
        sw_step_settle(t); /* a restart or a step further on: after the update */
    memcpy(s->prep.pk, m->hdr.sender, 32);
    s->prep.route = m->route;
    s->prep.step = step;
    s->prep.pending = true;
    s->prep.busy = false;
    s->prep.early = early;
    if (s->phase == SW_STEP_UPDATING)
        return; /* the next step's: READY when the update is done (update_done) */
    if (s->phase == SW_STEP_EXCHANGE && s->nrep > 1 && step == t->step + 1) {
        /* the leader finished the step; this node did its microbatches and
         * waits only for a replica's partial gradient (on its way, or its
         * sender gone: sw_step_tick): READY after the update; while it
         * waits, "busy" at once, so that the round waits for it too (a big
         * partial over a slow link outlasts the PREPARE timeout: lead.h,
         * Exchanges), and the leader asks again */
        finish_exchange(t);
        if (s->phase == SW_STEP_EXCHANGE && s->prep.pending && s->prep.step == step &&
            t->now - s->progress_ms < piece_wait(t))
            answer_busy(t); /* only while pieces come in: a lost one is not waited for */
        return;
    }
    if (sw_step_busy(s) && step > t->step) {
        sw_log(SW_LOG_WARN, "left behind at step %llu (the run is at %llu): dropping it",
               (unsigned long long)t->step, (unsigned long long)step);
        if (!step_drop(t, false))
            return;
    }
    if (sw_step_busy(s) && step == t->step) {
        sw_log(SW_LOG_WARN, "step %llu restarted by the leader", (unsigned long long)step);
        if (!step_drop(t, true))
            return;
    }
    if (trainer_in_run(t) && !sw_step_busy(s) && step > t->step) {
        if (s->plan.step == t->step && sw_plan_find(&s->plan, t->stage, t->pk) >= 0 &&
            !stage_mate_past(t, t->step)) {
            /* planned in the step the leader went past (it skipped it), and
             * no node of this stage is past it: a copy brings nothing new */
            sw_step_skip(t, step, "the leader went past the step this node was planned in, and "
                         "no other node of the stage is ahead");
        } else {
            sw_log(SW_LOG_INFO, "behind the run (step %llu, run at %llu): copying state again",
                   (unsigned long long)t->step, (unsigned long long)step);
            sw_recover_resync(t);
        }
    }
    if (t->phase == SW_PHASE_COPY && s->prep.pending) {
        answer_copying(t);
        return;
    }
    sw_step_answer_prepare(t);
}
