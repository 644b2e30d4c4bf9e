/*
 * fetch.c - the state-transfer client (see fetch.h).
 */
#include "sw.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fetch.h"

/* Tag: piece (21 bits) | source (1) | generation (32). */
#define PIECE_BITS 21
#define TAG_PIECE(t) ((size_t)((t) & ((1u << PIECE_BITS) - 1)))
#define TAG_SRC(t) ((int)(((t) >> PIECE_BITS) & 1))
#define TAG_GEN(t) ((uint32_t)((t) >> (PIECE_BITS + 1)))

void
sw_fetch_init(struct sw_fetch *f, const struct sw_fetch_ops *ops, void *arg)
{
    memset(f, 0, sizeof(*f));
    f->window = 1;
    f->timeout_ms = 5000;
    f->retry_ms = 50;
    f->chunk = SW_FETCH_CHUNK;
    f->ops = ops;
    f->arg = arg;
    f->failed_src = -1;
}

void
sw_fetch_config(struct sw_fetch *f, int window, uint64_t timeout_ms, int retries)
{
    SW_ASSERT(!f->active && window >= 1);
    f->window = window;
    f->timeout_ms = timeout_ms;
    f->retries = retries;
}

void
sw_fetch_src_set(struct sw_fetch *f, int i, const char *ep, const uint8_t *pk, int stage,
                 int which0, int nwhich, size_t numel, int64_t snap, float *buf)
{
    struct sw_fetch_src *s = &f->src[i];

    /* the pieces in buf are of this set-up only (fetch.h, Kept pieces) */
    if (s->buf != buf || s->stage != stage || s->which0 != which0 || s->nwhich != nwhich ||
        s->numel != numel || s->snap != snap)
        s->have_step = false;
    s->keep = false;
    snprintf(s->ep, sizeof(s->ep), "%s", ep);
    if (pk)
        memcpy(s->pk, pk, 32);
    else
        memset(s->pk, 0, 32);
    s->stage = stage;
    s->which0 = which0;
    s->nwhich = nwhich;
    s->numel = numel;
    s->snap = snap;
    s->buf = buf;
    s->gone = false;
}

/* Pieces of one slab of s. */
static size_t
pieces_per_slab(const struct sw_fetch *f, const struct sw_fetch_src *s)
{
    return (s->numel + f->chunk - 1) / f->chunk;
}

static size_t
src_pieces(const struct sw_fetch *f, const struct sw_fetch_src *s)
{
    return pieces_per_slab(f, s) * (size_t)s->nwhich;
}

static bool
piece_had(const struct sw_fetch_src *s, size_t piece)
{
    return piece < SW_FETCH_RESUME_PIECES && (s->have[piece / 64] >> (piece % 64) & 1);
}

/* Piece `piece` of source s: its first float in its slab (returned) and
 * its count of floats (*cnt). */
static size_t
piece_span(const struct sw_fetch *f, const struct sw_fetch_src *s, size_t piece, size_t *cnt)
{
    size_t off = (piece % pieces_per_slab(f, s)) * f->chunk;

    *cnt = SW_MIN(f->chunk, s->numel - off);
    return off;
}

/* A new generation of s, asked from its first piece not received, its
 * deadline from now: what a restart and a resume share. */
static void
src_reask(struct sw_fetch_src *s, uint64_t now)
{
    s->gen++;
    s->next = s->got_gen = 0;
    s->inflight = 0;
    s->last_ms = now;
}

static void
src_restart(struct sw_fetch_src *s, uint64_t now)
{
    src_reask(s, now);
    s->got = s->kept = 0;
    s->resumes = 0;
    memset(s->have, 0, sizeof(s->have));
    s->retry_ms = 0; /* the gap stays: the link is the same */
    s->done = sw_fetch_total(s) == 0;
    s->have_step = false;
}

static int
fail(struct sw_fetch *f, int src, int err)
{
    f->active = false;
    f->failed_src = src;
    f->err = err;
    for (int i = 0; i < f->nsrc; i++)
        f->src[i].gen++; /* everything in flight is stale */
    return SW_FETCH_FAILED;
}

/* How many pieces source s keeps in flight (fetch.h, Slow links): 2 until
 * the gap between its pieces is known, then about SW_FETCH_AHEAD_MS of them
 * and one more; never more than the window. */
static int
src_window(const struct sw_fetch *f, const struct sw_fetch_src *s)
{
    double w;

    if (f->window <= 2)
        return f->window;
    w = s->gap_ms > 0 ? floor(SW_FETCH_AHEAD_MS / s->gap_ms) + 1 : 2;
    return (int)SW_MIN(SW_MAX(w, 2.0), (double)f->window);
}

/* Keeps src_window pieces of source i in flight. */
static int
pump(struct sw_fetch *f, int i)
{
    struct sw_fetch_src *s = &f->src[i];
    size_t pps = pieces_per_slab(f, s), npieces = src_pieces(f, s);
    int window = src_window(f, s);

    while (f->active && s->inflight < window && s->next < npieces && !s->retry_ms) {
        size_t piece = s->next, off = (piece % pps) * f->chunk;
        int which = s->which0 + (int)(piece / pps);
        uint64_t tag = (uint64_t)s->gen << (PIECE_BITS + 1) | (uint64_t)i << PIECE_BITS | piece;

        if (piece_had(s, piece)) { /* received before a resume */
            s->next++;
            continue;
        }
        sw_body_init(&f->body);
        msgpack_pack_map(&f->body.pk, s->snap >= 0 ? 5 : 4);
        sw_proto_pack_key(&f->body.pk, "stage");
        msgpack_pack_uint32(&f->body.pk, (uint32_t)s->stage);
        sw_proto_pack_key(&f->body.pk, "which");
        msgpack_pack_uint32(&f->body.pk, (uint32_t)which);
        sw_proto_pack_key(&f->body.pk, "off");
        msgpack_pack_uint64(&f->body.pk, off);
        sw_proto_pack_key(&f->body.pk, "n");
        msgpack_pack_uint64(&f->body.pk, SW_MIN(f->chunk, s->numel - off));
        if (s->snap >= 0) {
            sw_proto_pack_key(&f->body.pk, "snap");
            msgpack_pack_uint64(&f->body.pk, (uint64_t)s->snap);
        }
        /* long: the fetch's own stall deadline gives up on a silent source */
        if (f->ops->request(f->arg, s->ep, f->body.b.data, f->body.b.len,
                            SW_MAX(f->timeout_ms, SW_FETCH_REQ_MS), f->retries, tag) < 0)
            return fail(f, i, -SW_EAGAIN);
        s->inflight++;
        s->next++;
    }
    return SW_FETCH_BUSY;
}

int
sw_fetch_start(struct sw_fetch *f, int nsrc, uint64_t now)
{
    bool all = true;

    SW_ASSERT(nsrc >= 1 && nsrc <= 2);
    f->nsrc = nsrc;
    f->active = true;
    f->bytes = 0;
    f->t0_ms = now;
    f->failed_src = -1;
    f->err = 0;
    for (int i = 0; i < nsrc; i++) {
        struct sw_fetch_src *s = &f->src[i];
        SW_ASSERT(pieces_per_slab(f, s) < (1u << PIECE_BITS) / 4);
        if (s->keep && s->have_step && s->got > 0 && s->got < sw_fetch_total(s) &&
            src_pieces(f, s) <= SW_FETCH_RESUME_PIECES) {
            /* an earlier fetch's pieces stand (fetch.h, Kept pieces) */
            src_reask(s, now);
            s->kept = s->got;
            s->resumes = 0;
            s->retry_ms = 0;
            s->done = false;
        } else {
            src_restart(s, now);
        }
        s->keep = false;
        s->gap_ms = 0; /* a new fetch: its link not measured yet */
    }
    for (int i = 0; i < nsrc; i++) {
        if (pump(f, i) == SW_FETCH_FAILED)
            return SW_FETCH_FAILED;
        all &= f->src[i].done;
    }
    if (all) {
        f->active = false;
        return SW_FETCH_DONE;
    }
    return SW_FETCH_BUSY;
}

void
sw_fetch_abandon(struct sw_fetch *f)
{
    f->active = false;
    for (int i = 0; i < 2; i++)
        f->src[i].gen++;
}

/* Reads a STATE answer to the piece [off, off + cnt) of a slab of numel
 * floats; -SW_EPROTO when its body does not parse, -SW_EMSG when it lacks a
 * field or is not that piece, its err otherwise. */
static int
read_answer(const struct sw_transport_msg *m, struct sw_fetch_src *s, size_t off, size_t cnt,
            uint64_t *step, uint64_t *t, double *lrm, double *norm, double *normc)
{
    static const char *const keys[] = {"err", "step", "t", "lr_mult", "norm", "normc",
                                       "numel", "off", "n", NULL};
    msgpack_unpacked u;
    uint64_t got_numel, got_off, got_n;
    int64_t err;
    int rc = -SW_EMSG;

    if (!sw_proto_open(m->hdr.body, m->hdr.body_len, &u, keys))
        return -SW_EPROTO;
    *normc = 0;
    if (sw_proto_get_err(&u.data, &err) == 0 && sw_proto_get_u64(&u.data, "step", step) == 0) {
        if (err != 0) {
            rc = err < 0 && err > -1000 ? (int)err : -SW_EMSG;
        } else if (sw_proto_get_u64(&u.data, "t", t) == 0 &&
                   sw_proto_get_f64(&u.data, "lr_mult", lrm) == 0 &&
                   sw_proto_get_f64(&u.data, "norm", norm) == 0 &&
                   (s->snap < 0 || sw_proto_get_f64(&u.data, "normc", normc) == 0) &&
                   sw_proto_get_u64(&u.data, "numel", &got_numel) == 0 &&
                   sw_proto_get_u64(&u.data, "off", &got_off) == 0 &&
                   sw_proto_get_u64(&u.data, "n", &got_n) == 0 && got_numel == s->numel &&
                   got_off == off && got_n == cnt && m->payload_len == cnt * sizeof(float) &&
                   isfinite(*norm) && isfinite(*lrm) && isfinite(*normc)) {
            rc = 0;
        }
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

/* Piece `piece` of source i, of its node's step `step`, into the caller's
 * buffer: counted, and the fetch's state after it.  late: a piece of an
 * earlier generation of the source (asked before a resume). */
static int
take_piece(struct sw_fetch *f, int i, size_t piece, const struct sw_transport_msg *m,
           uint64_t now, bool late)
{
    struct sw_fetch_src *s = &f->src[i];
    size_t cnt, off = piece_span(f, s, piece, &cnt);
    bool all = true;

    memcpy(s->buf + (piece / pieces_per_slab(f, s)) * s->numel + off, m->payload,
           m->payload_len);
    if (piece < SW_FETCH_RESUME_PIECES)
        s->have[piece / 64] |= 1ull << (piece % 64);
    if (!late)
        s->got_gen += cnt;
    s->resumes = 0; /* it sends again: its next stall may resume too */
    f->bytes += m->payload_len;
    /* the gap to the first piece of a generation (from the start, a
     * restart or a resume) is the link's latency, not its rate */
    if (!late && s->got_gen > cnt)
        s->gap_ms = s->gap_ms > 0 ? 0.75 * s->gap_ms + 0.25 * (double)(now - s->last_ms)
                                  : (double)(now - s->last_ms);
    s->last_ms = now;
    if ((s->got += cnt) < sw_fetch_total(s))
        return pump(f, i);
    s->done = true;
    for (int j = 0; j < f->nsrc; j++)
        all &= f->src[j].done;
    if (!all)
        return SW_FETCH_BUSY;
    f->active = false;
    return SW_FETCH_DONE;
}

/* An answer of an earlier generation of source i (tag's): a piece its node
 * sent before a resume, of the step its pieces are of, that has not come
 * yet, is kept (fetch.h, Slow links); *taken then. */
static int
late_answer(struct sw_fetch *f, uint64_t now, uint64_t tag, int status,
            const struct sw_transport_msg *m, bool *taken)
{
    int i = TAG_SRC(tag);
    struct sw_fetch_src *s = &f->src[i];
    size_t piece = TAG_PIECE(tag), off, cnt;
    uint64_t step = 0;
    double lrm = 0, norm = 0, normc = 0;

    *taken = false;
    if (status < 0 || !m || TAG_GEN(tag) >= s->gen || memcmp(m->hdr.sender, s->pk, 32) ||
        !s->have_step || s->done || src_pieces(f, s) > SW_FETCH_RESUME_PIECES ||
        piece >= src_pieces(f, s) || piece_had(s, piece))
        return SW_FETCH_BUSY;
    off = piece_span(f, s, piece, &cnt);
    if (read_answer(m, s, off, cnt, &step, &(uint64_t){0}, &lrm, &norm, &normc) < 0 ||
        step != s->step || !sw_wire_all_finite(SW_WIRE_F32, m->payload, m->payload_len))
        return SW_FETCH_BUSY;
    *taken = true;
    f->late++;
    return take_piece(f, i, piece, m, now, true);
}

int
sw_fetch_response(struct sw_fetch *f, uint64_t now, uint64_t tag, int status,
                  const struct sw_transport_msg *m)
{
    int i = TAG_SRC(tag), err, rc;
    struct sw_fetch_src *s = &f->src[i];
    size_t piece = TAG_PIECE(tag), off, cnt;
    uint64_t step = 0, t = 0;
    double lrm = 0, norm = 0, normc = 0;
    bool taken;

    if (!f->active || i >= f->nsrc || TAG_GEN(tag) != s->gen) {
        /* stale: a restarted, failed or abandoned fetch, or a resumed
         * source's earlier ask, whose piece is kept if it is still wanted */
        if (!f->active || i >= f->nsrc)
            return SW_FETCH_BUSY;
        rc = late_answer(f, now, tag, status, m, &taken);
        /* a piece its source sent earlier is one the link carried before
         * the ones asked now (above, "Slow links") */
        if (!taken && status == 0 && m && s->inflight > 0 && s->got_gen == 0 &&
            !memcmp(m->hdr.sender, s->pk, 32))
            s->last_ms = SW_MAX(s->last_ms, now);
        return rc;
    }
    s->inflight--;
    if (status < 0)
        return fail(f, i, status);
    off = piece_span(f, s, piece, &cnt);
    err = read_answer(m, s, off, cnt, &step, &t, &lrm, &norm, &normc);
    if (err == -SW_EAGAIN && s->snap >= 0) {
        /* armed: the node snapshots when it gets there; ask again soon */
        s->step = step;
        src_restart(s, now);
        s->retry_ms = now + f->retry_ms;
        return SW_FETCH_BUSY;
    }
    if (err < 0) {
        s->step = step;
        return fail(f, i, err);
    }
    if (!sw_wire_all_finite(SW_WIRE_F32, m->payload, m->payload_len))
        return fail(f, i, -SW_ENONFINITE);
    if ((s->snap >= 0 && step != (uint64_t)s->snap) ||
        (s->have_step && step != s->step)) {
        if (s->snap >= 0)
            return fail(f, i, -SW_EMSG);
        /* the node took a step meanwhile: every piece must be of one
         * step, and this one is the first of the new step's */
        src_restart(s, now);
    }
    s->step = step;
    s->have_step = true;
    s->t = t;
    s->lr_mult = lrm;
    s->norm = norm;
    s->normc = normc;
    if (piece_had(s, piece)) { /* it came late, from an earlier ask: counted then */
        s->got_gen += cnt;
        s->last_ms = now;
        return pump(f, i);
    }
    return take_piece(f, i, piece, m, now, false);
}

/* When source s stalls if no piece comes (above, "Slow links"). */
static uint64_t
stall_at(const struct sw_fetch *f, const struct sw_fetch_src *s)
{
    double ms = (double)f->timeout_ms;

    if (s->gap_ms <= 0) /* no gap measured yet (up to the second piece) */
        ms += 1000.0 * (double)f->nsrc * (double)(f->chunk * sizeof(float)) / SW_FETCH_MIN_RATE;
    else
        ms = SW_MAX(ms, SW_FETCH_GAPS * s->gap_ms);
    return s->last_ms + (uint64_t)ms;
}

/* Source i stalled: true when it resumes (fetch.h, Slow links), its
 * pieces in flight stale and the ones not received to be asked again. */
static bool
resume(struct sw_fetch *f, int i, uint64_t now)
{
    struct sw_fetch_src *s = &f->src[i];

    if (s->gone || !s->have_step || s->resumes >= SW_FETCH_RESUMES ||
        src_pieces(f, s) > SW_FETCH_RESUME_PIECES)
        return false;
    s->resumes++;
    f->resumed++;
    src_reask(s, now);
    return true;
}

uint64_t
sw_fetch_tick(struct sw_fetch *f, uint64_t now, int *rc)
{
    uint64_t wake = UINT64_MAX;

    *rc = SW_FETCH_BUSY;
    for (int i = 0; f->active && i < f->nsrc; i++) {
        struct sw_fetch_src *s = &f->src[i];
        if (s->retry_ms && now < s->retry_ms) {
            wake = SW_MIN(wake, s->retry_ms);
        } else if (s->retry_ms) {
            s->retry_ms = 0;
            s->last_ms = now; /* asked again: its deadline runs from now */
            if ((*rc = pump(f, i)) == SW_FETCH_FAILED)
                return UINT64_MAX;
        }
        if (s->inflight > 0 && !s->done) {
            uint64_t at = stall_at(f, s);
            if (now >= at && resume(f, i, now)) {
                if ((*rc = pump(f, i)) == SW_FETCH_FAILED)
                    return UINT64_MAX;
                at = stall_at(f, s);
            } else if (now >= at) {
                *rc = fail(f, i, -SW_ETIMEDOUT);
                return UINT64_MAX;
            }
            wake = SW_MIN(wake, at);
        }
    }
    return wake;
}

uint64_t
sw_fetch_left_ms(const struct sw_fetch *f, uint64_t now)
{
    double total = 0, got = 0;

    if (!f->active)
        return 0;
    for (int i = 0; i < f->nsrc; i++) {
        total += (double)f->src[i].nwhich * (double)f->src[i].numel;
        got += (double)f->src[i].got;
    }
    if (got >= total)
        return 0;
    if (!f->bytes || now <= f->t0_ms)
        /* no rate measured yet (the first piece is on its way): the
         * floats left at the rate the first piece's deadline allows (the
         * copier's first READY said "0.0 s left") */
        return (uint64_t)((total - got) * sizeof(float) * 1000.0 / SW_FETCH_MIN_RATE) + 1;
    /* the floats left at the bytes per ms measured since the start */
    return (uint64_t)((total - got) * sizeof(float) * (double)(now - f->t0_ms) /
                      (double)f->bytes) + 1;
}
