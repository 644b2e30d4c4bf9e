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
 *   3. the run has not started: the run seed's initialisation (on the
 *      stage's thread in swarmd: SYNC waits for sw_recover_computed);
 *   4. the run has started (or gone past this node's state) and no other
 *      node of the stage is training: CheckFree from both
 *      neighbours' parameters weighted by their last gradient norms, or
 *      under CheckFree+ a boundary stage from its partner's blocks and the
 *      replica it keeps (REBUILD), resuming the step in progress: its
 *      source's, or the leader's when that is one past it (a source still
 *      summing its replicas' partials when the round went; not for stage
 *      0, which takes the lost leader's step over);
 *   5. --from-checkpoint, and CheckFree(+) cannot rebuild the stage now
 *      (no sources, or a source whose state came from the checkpoint a
 *      moment ago: an adjacent stage lost with this one): the checkpoint's
 *      tensors at the step in progress (DESIGN.md's order);
 *   6. two adjacent stages lost that no order of rebuilds brings back
 *      (recover.c, rebuildable: under CheckFree+ stage 1 comes back from
 *      stage 0 alone, and S-2 from S-1), or a boundary stage without
 *      CheckFree+:
 *      a node that still holds an older state of the stage resumes with it
 *      at the step in progress (sw_recover_own_state); with none the run
 *      stops (SW_EXIT_LOST) with a message naming the lost stages and what
 *      would recover them.
 * A running node checks the same (sw_recover_check_lost): when a lost stage
 * can never come back it stops, after the loss lasted dead_ms, unless nodes
 * started with --from-checkpoint and a committed checkpoint can rebuild it.
 *
 * Verified state (step 1).  A copy replaces this node's state only when
 * someone other than its source attests the copied parameters' hash at
 * the copied step (live.h, Attestations: another replica's record, a READY
 * answer, the leader's GO).  Without one it waits up to
 * SW_RECOVER_ATTEST_MS for one, and takes it meanwhile only from the
 * stage's only other node, at a step some other node of the run reached
 * too (no one else can vouch for it, and no one contradicts it; for a node
 * with a state of its own, a node other than the source and itself, and a
 * state not behind the step the source's record claimed); then it
 * refuses the copy: a node that has a state of its own keeps it (and says
 * why), a newcomer tries another source.  To get attestations in time it
 * asks the stage's other nodes (STATE_GET with hstep: s; every node keeps
 * the hash after each of its last SW_RECOVER_HIST steps) what their hash
 * was after step s; it takes the copy when more nodes attest its hash than
 * contradict it.  Neither this node's own attestation counts (its state is
 * the one in question) nor a contradiction by a node declared dead since (a
 * state only gone nodes held was replaced by a rebuild), nor anything from
 * a node whose record claims a step more than SW_RECOVER_LONE past every
 * other record's, this node's and the leader's (a claim of its own: in an
 * open run a stranger publishes one and contradicts every copy); such a
 * node is not asked, nor counted as a stage-mate that could vouch.  All-zero
 * parameters are refused at once.  When the time is up and every other
 * node of the stage that could vouch answered it has not reached s yet
 * (-EAGAIN: it is behind the source, often copying too), the source is the
 * stage's only node at s and the copy is taken as from the stage's only
 * other node (same conditions): refusing it would fork the stage, this
 * node resuming its older state beside the source.  A source is chosen among the records
 * whose step another node reached too; a lone claim ahead of every other is
 * tried only by a newcomer without a state, and a node with its own state
 * that is not behind the corroborated steps (nor the step of the leader's
 * PREPARE that sent it copying) resumes with it (and says why).
 * A source
 * whose copy was refused is not copied from, nor counted in the table,
 * for SW_RECOVER_DISTRUST_MS (its stage is not empty meanwhile: a node
 * whose stage has no other source waits, for two such periods at most,
 * instead of rebuilding it beside that node, or resuming its own state
 * when the leader's PREPARE is past it: distrust_wait); one that others
 * contradict (another hash at the same step) is banned.  Refusals are
 * counted (copies_refused).
 * A stage that looks lost for good (lost_for_good) is given up (exit 5)
 * once it has looked so for a dead time, as by the nodes in the run
 * (sw_recover_check_lost): a node of a lost neighbour cut off for a moment
 * (its record lapsed, its pings unanswered) comes back meanwhile (sim
 * --harsh 476: a newcomer gave the run up 200 ms after it came).
 * A stage that looks lost for good (lost_for_good) within the dead time
 * after a failed copy of it is waited for rather than given up (exit 5):
 * the source was there, its record may have lapsed while it was stopped
 * (rebuild_tick; t0423).  So is one whose only live node is distrusted
 * after its copies failed: a stage with a live node is not lost for the
 * nodes in the run either (sw_recover_check_lost), and it is copied again
 * once the distrust ends (SW_RECOVER_LOST_WAIT_MS at most).
 *
 * Two reads.  Steps 3 to 6 follow from a stage with no node to copy in
 * two reads of the records (scans) since SYNC began, not one: a newcomer's
 * first read that missed a live node's record (an answer lost) rebuilt the
 * stage beside that node (recover.c, read_again), and one whose first read
 * found no record of a run that had started seeded a run of its own (t0370
 * in CI).  The second read is asked at once; it costs a rebuild, and the
 * seeding of a new run, a fifth of a scan.  Seeding waits as well while a
 * training record of any stage may still prove itself (below): one lost
 * PING to a live leader, and a newcomer seeded a run beside it (sim --harsh
 * 3958).
 *
 * Records being proven.  A record counts only once its node answered a
 * proof's PING (live.h, Proof).  One such PING lost, and a live node's
 * stage looked empty: the nodes in the run stopped it as lost (exit 5)
 * though a newcomer had just initialised the stage, its proof's second try
 * in flight (sim --harsh 980).  So a stage is not taken for empty, to be
 * rebuilt beside that node or given up as lost, while the last scan holds
 * a training record of it that may still prove itself (fewer than
 * SW_LIVE_PROVE_TRIES failed tries: trainer.h, proving_stage), nor does a
 * node behind the leader's PREPARE resume its own older state then (each
 * PREPARE sent it back, every 60 ms: sim --harsh 3414); this wait
 * lasts SW_RECOVER_PROVING_MS(dead_ms) at most, so that a stranger's flood
 * of records with dead endpoints cannot hold a lost run for ever.
 *
 * Kept pieces.  A failed copy (its source stalled, went away or answered
 * an error) leaves what came in, of one step (fetch.h, Kept pieces); the
 * next copy of the stage keeps it, from any node: only the pieces it lacks
 * are asked, unless its source is at another step by then (it restarts).
 * Not after a malformed or non-finite answer (the source lies), nor once
 * a rebuild or restore took the buffer, nor for another stage.  A copy
 * whose pieces came from two nodes and is refused blames neither (the
 * distrust above): it is not known which one served the pieces that do not
 * match; the next copy then starts from nothing, from one node.  In t0424
 * a copy that failed while its source was stopped left 8.4 of its 83.4 MB,
 * and the copy after it asked only the rest.
 *
 * STATE_GET {stage, which, off, n, hstep}: with hstep s (n 0), the answer
 * is {err, stage, step s, hash} (16 hex digits, this node's parameter hash
 * after step s), -EAGAIN when the node has not reached s yet, -ENOENT when
 * it keeps no hash of s.
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

#define SW_RECOVER_ATTEST_MS(dead_ms) (2 * (uint64_t)(dead_ms)) /* the wait for an attestation */

#define SW_RECOVER_AHEAD 16           /* a source this far ahead of the run is refused at once */
#define SW_RECOVER_HIST 64             /* steps whose hash a node can tell */
/* a record more than this many steps past every other one, this node's
 * and the leader's step is a claim of its own: it neither vouches for a
 * copy nor vetoes one (recover.c, claim_alone) */
#define SW_RECOVER_LONE 2
#define SW_RECOVER_DISTRUST 8          /* sources refused, kept */
#define SW_RECOVER_DISTRUST_MS 30000   /* how long one is not copied from */
/* a lost stage with a distrusted live node: waited for this long at most */
#define SW_RECOVER_LOST_WAIT_MS (4 * SW_RECOVER_DISTRUST_MS)
/* a stage whose record is being proven: waited for this long at most (two
 * tries and their back-off fit: live.h, Proof) */
#define SW_RECOVER_PROVING_MS(dead_ms) (2 * (uint64_t)(dead_ms) + SW_TRAINER_SCAN_MS)

struct sw_recover {
    uint64_t retry_ms;       /* SYNC: the next try */
    uint64_t t0_ms;          /* the recovery's start (its duration) */
    uint64_t req_ms, got_ms; /* a rebuild: first piece asked for, last piece in */
    float *buf[2];           /* host: the copy [3, numel], a rebuild's two sources (the
                                neighbours' params; CheckFree+: the partner's, its replica) */
    size_t cap[2];           /* their sizes, floats */
    bool restore_tried;      /* --from-checkpoint: tried once */
    bool seeding;            /* SYNC: the seed's initialisation computes apart */
    uint64_t ck_asked_ms;    /* --from-checkpoint: when the keeper was first looked up */
    uint64_t lost_since_ms;  /* check_lost: when the run first looked lost, 0 if not */
    uint64_t wait_ms;        /* rebuild_tick: waiting for neighbours since (0: not) */
    uint64_t empty_scan;     /* sync: the scan (t->nscan) that showed the stage with
                                nothing to copy (0: none; see "Two reads") */
    uint64_t copy_fail_ms;   /* when a copy last failed (0: never), */
    int copy_fail_stage;     /*   of which stage (a node that moved waits no more) */
    uint64_t distrust_wait_ms; /* sync: waiting for a distrusted node of the stage since (0: not) */
    uint64_t lost_wait_ms;   /* rebuild_tick: a lost stage's distrusted node waited for since */
    uint64_t lost_seen_ms;   /* rebuild_tick: the stage looked lost for good since (0: not) */
    uint64_t proving_ms;     /* a stage's record being proven waited for since (0: not; see
                                Records being proven), */
    uint64_t proving_seen_ms; /*  last asked about then */
    bool lost_ck_logged;
    struct sw_restore *restore; /* RESTORE in progress */
    /* verified state: a copy done, waiting for an attestation of its hash */
    bool verify, have_own;
    uint64_t verify_ms;
    uint64_t rec_step;       /* the step the source's record claimed when the copy began */
    char verify_hash[17];
    /* this node's own state, in buf[1] while verify: its scalars (trainer.h) */
    int own_t;
    float own_lr_mult, own_norm, own_normc;
    uint64_t copies_refused;
    /* the source of the last failed copy (no answer, refused) and how many
     * copies from it failed in a row: at SW_RECOVER_FAILS it is distrusted
     * like a refused copy (a stranger's record that answers pings but
     * serves no state must not hold a newcomer for good) */
    uint8_t fail_pk[32];
    int fails;
    /* a failed copy's pieces, left in buf[0] for the next copy of the
     * stage (Kept pieces): first came from carry_pk, mixed when another
     * node's are among them too */
    bool carry, mixed;
    uint8_t carry_pk[32];
    uint64_t ask_ms;         /* verify: when the other replicas were last asked */
    uint8_t unk[4][32];      /* verify: the ones that answered they cannot tell */
    int nunk;
    uint8_t behind[4][32];   /* verify: the ones that answered they have not reached the step */
    int nbehind;
    struct {
        uint64_t step;
        char hash[17];
    } hist[SW_RECOVER_HIST]; /* this node's parameter hash after its last steps */
    int hist_at;
    struct {
        uint8_t pk[32];
        uint64_t until_ms;
    } distrust[SW_RECOVER_DISTRUST];
    /* CheckFree+: partners that answered they hold no replica of this
     * boundary stage (they got their state after the last push), passed
     * over for another node of their stage until then */
    struct {
        uint8_t pk[32];
        uint64_t until_ms;
    } norep[4];
    int norep_at;
};

void sw_recover_release(struct sw_trainer *t);
/* SYNC, COPY, REBUILD and RESTORE; returns the next wake-up. */
uint64_t sw_recover_tick(struct sw_trainer *t);
/* A compute of recovery's that returned SW_COMPUTE_PENDING (the seed's
 * initialisation) is done: false when none was in flight (a step's). */
bool sw_recover_computed(struct sw_trainer *t, int err);
/* A fetch's answer (copy or rebuild). */
void sw_recover_fetched(struct sw_trainer *t, uint64_t tag, int status,
                        const struct sw_transport_msg *m);
/* TRAINING: stop when a lost stage can never come back. */
void sw_recover_check_lost(struct sw_trainer *t);
/* The state server. */
void sw_recover_on_state_get(struct sw_trainer *t, const struct sw_transport_msg *m);
/* After an update: the keeper's armed snapshot, if the step is its. */
void sw_recover_snap_due(struct sw_trainer *t);
/* The answer to a STATE_GET with hstep (tag: the step asked). */
void sw_recover_attest_answer(struct sw_trainer *t, uint64_t step, int status,
                              const struct sw_transport_msg *m);
/* A source whose copy was refused lately (not copied from, not counted). */
#define SW_RECOVER_FAILS 2
bool sw_recover_distrusted(const struct sw_trainer *t, const uint8_t *pk);
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
