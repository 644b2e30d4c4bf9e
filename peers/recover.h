/*
 * recover.h - where a stage's state comes from, inside the trainer core
 * (trainer.h), in DESIGN.md's order; and the STATE_GET server that gives
 * this node's state to others.  No I/O of its own: the fetches go through
 * fetch.h and the trainer's env.
 *
 * In SYNC, every tick (sw_recover_tick) looks at the table of the run:
 *   1. another node of the stage is training: copy its exact state (params,
 *      AdamW m and v, step; COPY);
 *   2. --from-checkpoint and no such node, when the run restarts (no node
 *      has taken a step): the stage from the checkpoint (RESTORE;
 *      env->restore) at the checkpoint's step;
 *   3. the run has not started: the run seed's initialisation;
 *   4. the run has started (or gone past this node's state) and no other
 *      node of the stage is training: CheckFree from both
 *      neighbours' parameters weighted by their last gradient norms, or
 *      under CheckFree+ a boundary stage from its partner's blocks and the
 *      replica it keeps (REBUILD), resuming the step in progress;
 *   5. --from-checkpoint, and CheckFree(+) cannot rebuild the stage now
 *      (no sources, or a source whose state came from the checkpoint a
 *      moment ago: an adjacent stage lost with this one): the checkpoint's
 *      tensors at the step in progress (DESIGN.md's order);
 *   6. two adjacent stages lost, or a boundary stage without CheckFree+:
 *      a node that still holds an older state of the stage resumes with it
 *      at the step in progress (sw_recover_own_state); with none the run
 *      stops (SW_EXIT_LOST) with a message naming the lost stages and what
 *      would recover them.
 * A running node checks the same (sw_recover_check_lost): when a lost stage
 * can never come back it stops, after the loss lasted dead_ms, unless nodes
 * started with --from-checkpoint and a committed checkpoint can rebuild it.
 *
 * STATE_GET {stage, which, off, n} reads the live state (a copy or a
 * rebuild); with snap: s, a keeper's, the snapshot of the state after step
 * s: taken now when the node is at s, armed (answer -EAGAIN, ask again)
 * when it is not there yet, -ENOENT when it went past s without one.  A
 * snap answer carries the clipped norm too ("normc").  which 3 is the
 * CheckFree+ replica a partner keeps (-ENOENT when it holds none).  A state
 * just rebuilt that may still step back (a node of another stage is behind
 * it) refuses its AdamW moments (which 1, 2: a copy) with -EINVAL, and
 * serves its parameters (a neighbour's rebuild).
 */
#ifndef SW_RECOVER_H
#define SW_RECOVER_H

#include "sw.h"

#include "transport.h"

struct sw_trainer;
struct sw_restore;

struct sw_recover {
    uint64_t retry_ms;       /* SYNC: the next try */
    uint64_t t0_ms;          /* the recovery's start (its duration) */
    uint64_t req_ms, got_ms; /* a rebuild: first piece asked for, last piece in */
    float *buf[2];           /* host: the copy [3, numel], a rebuild's two sources (the
                                neighbours' params; CheckFree+: the partner's, its replica) */
    size_t cap[2];           /* their sizes, floats */
    bool restore_tried;      /* --from-checkpoint: tried once */
    uint64_t lost_since_ms;  /* check_lost: when the run first looked lost, 0 if not */
    uint64_t wait_ms;        /* rebuild_tick: waiting for neighbours since (0: not) */
    bool lost_ck_logged;
    struct sw_restore *restore; /* RESTORE in progress */
};

void sw_recover_release(struct sw_trainer *t);
/* SYNC, COPY, REBUILD and RESTORE; returns the next wake-up. */
uint64_t sw_recover_tick(struct sw_trainer *t);
/* A fetch's answer (copy or rebuild). */
void sw_recover_fetched(struct sw_trainer *t, uint64_t tag, int status,
                        const struct sw_transport_msg *m);
/* TRAINING: stop when a lost stage can never come back. */
void sw_recover_check_lost(struct sw_trainer *t);
/* The state server. */
void sw_recover_on_state_get(struct sw_trainer *t, const struct sw_transport_msg *m);
/* After an update: the keeper's armed snapshot, if the step is its. */
void sw_recover_snap_due(struct sw_trainer *t);
/* A behind node copies the state again (SYNC). */
void sw_recover_resync(struct sw_trainer *t);
/*
 * The last resort before the run is lost: nothing can copy or rebuild the
 * stage (or the nodes of other stages went two steps past it), and this
 * node holds an older state of it (a copy whose source died before the
 * leader planned it).  Like a checkpoint's tensors, it resumes at the step
 * in progress with them (method "own" in the recovery event; why says
 * why nothing else could).
 */
void sw_recover_own_state(struct sw_trainer *t, const char *why);

#endif
