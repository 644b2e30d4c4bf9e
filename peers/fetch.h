/*
 * fetch.h - the state-transfer client: one module, without I/O, for every
 * fetch of a stage's state over STATE_GET (swarm-protocol(7), STATE_GET):
 * a replica's copy (params, m, v), a CheckFree rebuild (both neighbours'
 * params at once), a CheckFree+ rebuild (the partner's params and the
 * replica it keeps) and a keeper's snapshot of a step (params, m, v).
 *
 * A fetch has one or two sources; each source is a run of slabs
 * (which0 .. which0 + nwhich - 1, numel floats each) of one node's stage.
 * Pieces of at most `chunk` floats are asked for up to `window` at a time
 * per source (fewer on a slow link, below) through ops->request (timeout and retries given), and taken in any
 * order into the source's buffer.  Every piece of a source must be of one
 * step: a piece of another step restarts that source (a live fetch), the
 * piece kept as the first of its step's, or fails the fetch (a snapshot,
 * snap >= 0, must be of step snap).
 *
 * Generations.  Every (re)start or resume of a source bumps its
 * generation, which each request's tag carries (with the source and the
 * piece); an answer whose generation is not its source's current one is
 * stale and dropped, but for a piece of its source's step that has not
 * come yet ("Slow links", below).  So a fetch that was restarted, failed or
 * abandoned ignores late answers, and no callback ever points into memory
 * that was reused.
 *
 * An answer with err -EAGAIN (a node not at the snapshot's step yet: it
 * takes the snapshot when it gets there) starts that source again after
 * retry_ms (sw_fetch_tick); any other error, a
 * stall, a malformed answer or a non-finite tensor fails the fetch: the
 * caller picks a source again.
 *
 * Slow links.  A source's pieces come one after the other down one link,
 * so the window's last piece comes window pieces' transfer after it was
 * asked: a fixed timeout per request failed every fetch over a link slower
 * than window * chunk bytes per timeout (8 x 4 MiB in 5 s: 54 Mbit/s).  So
 * a request waits in the transport up to SW_FETCH_REQ_MS, and the fetch
 * fails on a stall instead (sw_fetch_tick): a source with pieces in flight
 * whose next piece has not come within its deadline.  Until two of its
 * pieces are in, the deadline is timeout_ms plus the transfer of one piece
 * of every source at SW_FETCH_MIN_RATE, from the start or the first piece;
 * then, from the last piece in, the larger of timeout_ms and SW_FETCH_GAPS
 * times the gap between its pieces (a moving average, kept when the source
 * restarts: its link is the same): the deadline follows the link's
 * measured rate, and a dead source is given up within timeout_ms
 * or a few pieces' time.  A restart leaves the pieces asked before on
 * their way, ahead of the new ones: over a 20 Mbit/s link a window of 8
 * pieces takes 14 s, and every copy that a step of its source restarted
 * stalled before the first piece asked again came in.  So until a
 * source's first piece of its current generation is in, a stale piece
 * from that source's key (of an earlier generation or start) moves its
 * deadline on too.  A piece in flight holds back whatever else its source
 * sends down the same connection (its DHT answers, its status): the window
 * of 8 was 27 s of pieces at 10 Mbit/s, every DHT answer came long after its
 * lookup gave up, and they filled the source's send queue (t0421 failed in
 * CI; net/transport.h, Back-pressure).  So a source keeps 2 pieces in
 * flight until the gap between its pieces is measured, then about
 * SW_FETCH_AHEAD_MS of them and one more, at least 2 (which keeps its link
 * busy), at most the window: 2 at 10 Mbit/s, 3 at 20, all 8 from about
 * 60 Mbit/s.
 *
 * A stall is not always a dead source: one answer lost (refused by a full
 * send queue on the way, t0421) stalled a copy of 81 MB at 10 Mbit/s, and
 * it started over from nothing.  So a source that stalls once it sent a
 * piece resumes: its pieces in flight become stale (a new generation) and
 * only the pieces it has not sent are asked again, its deadline running
 * from the stall (a stale piece from its key moves it on, as after a
 * restart).  A stale piece that comes after all (it was on its way, or
 * queued at a source that was stopped) is kept when it is of the step of
 * its source's other pieces and has not come yet, after a resume or a
 * restart; the same piece asked again then counts for nothing (at
 * 10 Mbit/s two pieces in flight are 8 s of the link: thrown away, a
 * source that went on for 10 s and stalled again had sent no piece asked
 * since its resume, and the copy failed).  A source resumes from every
 * stall that follows a piece since its (re)start or last resume,
 * SW_FETCH_RESUMES times (once) in a row at most: a stall with no piece
 * since its last resume fails the fetch as before (t0422 stops a source
 * twice mid-copy: two resumes, one copy).  Each resume waits out a stall
 * deadline and the next needs a new piece, so a source that drips its
 * pieces delays a copy no more than it could without resumes.  Never when
 * the caller marked it gone (a node it declared dead: a copier picks
 * another source at once); a source of more than SW_FETCH_RESUME_PIECES
 * pieces (16 GiB) never resumes.  An answer whose body does not parse (bad
 * msgpack, a key no node sends) fails it with -SW_EPROTO: no honest node
 * sends one, and the caller bans its sender (m->hdr.sender).
 *
 * Kept pieces.  A fetch that failed leaves what came in its source's
 * buffer, with the step it is of.  A caller that sets src->keep after
 * sw_fetch_src_set (same stage, slabs, numel, snap and buffer as that
 * source's last fetch; any other set-up forgets the pieces) starts it with
 * them: only the pieces it lacks are asked, and its first piece of another
 * step restarts it as any step change does.  The node may be another one
 * (replicas of one step hold one state): the caller verifies the whole,
 * and knows from src->kept whether it mixed two nodes' pieces.  A copy of
 * 255 MB at 20 Mbit/s is 100 s of the link; its source stopped or gone
 * near its end, the next copy started over from nothing (recover.h,
 * Kept pieces).
 *
 * Tags are 56 bits: the caller may use the top 8 to route answers.
 */
#ifndef SW_FETCH_H
#define SW_FETCH_H

#include "sw.h"

#include "proto.h"
#include "transport.h"

#define SW_FETCH_CHUNK (1u << 20) /* floats per piece (4 MiB) */
#define SW_FETCH_REQ_MS (600 * 1000) /* a piece's request in the transport */
#define SW_FETCH_MIN_RATE 1000000.0   /* bytes/s the first piece's deadline allows */
#define SW_FETCH_GAPS 4               /* a later piece's deadline: gaps between pieces */
#define SW_FETCH_AHEAD_MS 4000.0      /* a source's pieces in flight: this long of them, + 1 */
#define SW_FETCH_RESUMES 1          /* resumes in a row (no piece between) before it fails */
#define SW_FETCH_RESUME_PIECES 4096   /* a source of more pieces never resumes (its bitmap) */
#define SW_FETCH_TAG_BITS 56

struct sw_fetch_src {
    /* set by the caller (sw_fetch_src_set) */
    char ep[SW_PROTO_EP_MAX];
    uint8_t pk[32];
    int stage;
    int which0, nwhich;   /* slabs: 0 params, 1 m, 2 v, 3 a CheckFree+ replica */
    size_t numel;         /* floats per slab; 0: nothing to fetch */
    int64_t snap;         /* >= 1: the state after that step (a keeper's); < 0: live */
    float *buf;           /* [nwhich * numel], the caller's */
    bool gone;            /* the caller's: the node is gone, a stall never resumes */
    bool keep;            /* the caller's: the next start keeps the pieces in (Kept pieces) */
    /* progress */
    uint32_t gen;
    size_t next;          /* the next float (of nwhich * numel) to ask for */
    size_t got;           /* floats received */
    size_t kept;          /* of them, kept from an earlier fetch (0 once it restarted) */
    int inflight;
    int resumes;          /* stalls resumed from since its last piece */
    size_t got_gen;       /* floats received in its current generation */
    uint64_t have[SW_FETCH_RESUME_PIECES / 64]; /* the pieces received (a resume skips them) */
    bool done, have_step;
    uint64_t retry_ms;    /* -EAGAIN: the piece at next is asked again then (0: not waiting) */
    uint64_t last_ms;     /* the last piece in (or the start) */
    double gap_ms;        /* moving average of the time between its pieces (0: none yet) */
    /* what the answers said */
    uint64_t step, t;
    double lr_mult, norm, normc;
};

struct sw_fetch_ops {
    int (*request)(void *arg, const char *ep, const void *body, size_t len, uint64_t timeout_ms,
                   int retries, uint64_t tag);
};

struct sw_fetch {
    int nsrc;
    struct sw_fetch_src src[2];
    int window, retries;
    uint64_t timeout_ms, retry_ms;
    size_t chunk;
    bool active;
    uint64_t bytes;       /* payload bytes received since the start */
    uint64_t resumed;     /* stalls resumed from, every source and start (for logs) */
    uint64_t late;        /* pieces kept that came after their source resumed */
    uint64_t t0_ms;       /* the start */
    int failed_src;       /* after SW_FETCH_FAILED: which source, -1 the fetch itself */
    int err;              /* and why (a negative code) */
    const struct sw_fetch_ops *ops;
    void *arg;
    struct sw_body body;
};

enum { SW_FETCH_BUSY = 0, SW_FETCH_DONE = 1, SW_FETCH_FAILED = 2 };

void sw_fetch_init(struct sw_fetch *f, const struct sw_fetch_ops *ops, void *arg);
/* Pieces in flight per source, the stall timeout (above, "Slow links") and
 * the transport's retries of a request (for the next start; generations go
 * on growing across starts). */
void sw_fetch_config(struct sw_fetch *f, int window, uint64_t timeout_ms, int retries);
/* Source i of the next start (keep false; see Kept pieces). */
void sw_fetch_src_set(struct sw_fetch *f, int i, const char *ep, const uint8_t *pk, int stage,
                      int which0, int nwhich, size_t numel, int64_t snap, float *buf);
/* (Re)start every source (nsrc of them) under new generations and ask for
 * their first pieces (the ones it lacks, for a source with keep): SW_FETCH_BUSY,
 * DONE (nothing to fetch) or FAILED. */
int sw_fetch_start(struct sw_fetch *f, int nsrc, uint64_t now);
/* Forget it: every answer in flight becomes stale. */
void sw_fetch_abandon(struct sw_fetch *f);
/* An active fetch's time left (ms): at its rate so far, at SW_FETCH_MIN_RATE
 * before a byte came; 0 when none is active or all is in. */
uint64_t sw_fetch_left_ms(const struct sw_fetch *f, uint64_t now);
/* An answer (status 0 with m, or the request's error) to the request tag. */
int sw_fetch_response(struct sw_fetch *f, uint64_t now, uint64_t tag, int status,
                      const struct sw_transport_msg *m);
/* Pieces waiting for -EAGAIN's retry, and the stall deadlines (a stalled
 * source resumes, above, or fails the fetch with -SW_ETIMEDOUT); *rc:
 * SW_FETCH_FAILED when it
 * failed the fetch now (handled as a failed answer), else SW_FETCH_BUSY;
 * returns the next wake-up (UINT64_MAX: none). */
uint64_t sw_fetch_tick(struct sw_fetch *f, uint64_t now, int *rc);
/* Floats per source when done (nwhich * numel). */
static inline size_t
sw_fetch_total(const struct sw_fetch_src *s)
{
    return (size_t)s->nwhich * s->numel;
}

#endif
