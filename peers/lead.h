/*
 * lead.h - the step leader inside the trainer core (trainer.h): the step
 * barrier (PREPARE / READY / GO) and the replans of a running step.  No I/O
 * of its own: requests go out through the trainer's env with tags, answers
 * come back through sw_lead_ready.
 *
 * Who leads: the stage-0 node with the lowest public key among the live
 * training stage-0 nodes of this node's table (sw_lead_expected).  Every
 * node computes the same from the same records and takes PREPARE and GO
 * only from it (or from the leader of the step in progress, step.h), so a
 * stranger's PREPARE or GO, whatever its step, steers nothing.  For step s it sends PREPARE(s) to
 * every node of the table and waits for the answers (READY {step, ok}); it
 * then sends GO(s, plan) to the nodes that are ready.  Nodes of one stage
 * must hold one state (replicas are bit-identical): READY carries the
 * node's parameter hash, and of a stage's ready nodes only those with the
 * hash of the nodes this node's plan of the step before named there are
 * planned, or, when none of those is ready (or the step is restarted:
 * its own plan may hold a node taken on its record's word, see
 * fill_stages), the hash of the lowest key (two
 * newcomers that rebuilt one stage at once hold two states; the one left
 * out falls behind the run and copies the planned one; a stranger's READY
 * with a low key and a state of its own puts no node of the run out of
 * the plan).  Each prepare slot is
 * one node asked in one round; the round is a generation, and a READY's tag
 * carries (round, slot), so a late READY of an earlier round can never land
 * on a slot of this one (the slots are sorted and reused between rounds).
 *
 * While a step runs the leader pings its nodes (live.h: two unanswered pings
 * make a node dead), drops the dead ones from the plan (a replan keeps each
 * microbatch on the surviving node that had it: plan.h, "mb") and gives a stage
 * that lost its last node the first newcomer ready at the step, or one past
 * it (a stage rebuilt from a source that had finished the step steps back
 * into it: step.h), with a GO of a higher version.  With a stage left empty
 * the step pauses until a node recovers it.  A step in which the leader's
 * own stage makes no progress (no forward, backward or partial gradient) for
 * SW_LEAD_STALL_MS after its last plan is restarted: PREPARE of the same
 * step, which every node
 * in it (the leader too) answers by dropping what it did of the step and
 * starting afresh (step.h), then a new plan; unless nodes of other stages
 * are past the step (what they owed it died with a node): then it cannot be
 * finished, and the leader skips it (sw_step_skip) and prepares the next.
 * So does a round of PREPAREs that finds a stage with no node ready at the
 * step, every live node of it past the step, and one of them in the last
 * plan: it updated in a try of the step whose restart it cannot join.
 * A stage-0 node behind nodes of other stages only (it copied the lost
 * leader's state mid-step) plans its step as a TAKEOVER replan, so that
 * the nodes past it replay; two steps behind, it resumes with its state at
 * the step in progress (recover.h, sw_recover_own_state).  A node whose lead
 * of a step another leader took over (a GO of it from that leader) yields
 * it (sw_lead_yield).  When the
 * leader died in a step, the next stage-0 node takes the step over with its
 * plan; when it has no plan, only the step's activations (a swapped route's
 * second visit came before the GO the leader died sending), it drops them
 * after the dead time and prepares the step again, which restarts every
 * node in it (busy without a plan, it would neither lead nor pass the lead
 * over, and every idle node would wait for it); a stage 0 rebuilt in such a step plans it again as a replan
 * (TAKEOVER), since a PREPARE would restart the nodes still in it and leave
 * those past it a step ahead.  Without the step's plan (the lost leader's)
 * a takeover plans one node per stage, so that no stage's microbatches are
 * split anew between nodes that ran some; one that found no node at the step
 * for SW_LEAD_STALL_MS prepares the step instead.  But when two or more
 * nodes of a stage finished the step (past it) and the microbatches were
 * shared (M > 1), no one of them holds all that the step needs from the
 * stage, and nothing recomputes it: the takeover skips the step at once
 * (sw_step_skip; the nodes still in it skip at the next PREPARE) instead of
 * stalling until the stall timer does.  Nor does a replan restart the
 * stall timer (SW_LEAD_STALL_MS without progress since the step's GO, a
 * pause for an empty stage aside): every death of a churn replanned the
 * step, and a step no replan could finish stalled for minutes.
 *
 * Resends.  A message of the step lost on the way (a connection closed
 * with it queued, a node that came back under its key) cost a whole stall
 * limit and a restart, up to 30 s while the step's period is not known (sim
 * --harsh, 1% of messages lost: runs without a step for 45 s).  So halfway
 * to the stall limit without progress (resend_due), the leader sends the
 * step's GO again, same version and plan, with "resend": every node of the
 * step sends again the FWDs and BWDs it sent (step.h, Resends; a receiver
 * that has one drops the copy), and a node that missed the GO starts the
 * step.  Once per half limit without progress.  A lost FWD or BWD then
 * costs half a stall limit and the step's messages again; the restart
 * stays for what a resend cannot mend.  Not a replan (a higher version):
 * that would void the replicas' partial gradients summed so far.
 *
 * Candidates.  A record is a claim: in an open run (admit.h) any key that
 * serves its endpoint can publish a training stage-0 record with a lower
 * key than the real nodes', and never lead.  So a stage-0 node is a
 * candidate only once it is seen taking part in the run: it is a stage-0
 * node of a plan (GO) this node made or took from the leader (the leader
 * plans only the nodes that answered READY ok; a newcomer of stage 0 thus
 * leads from the step after the one it was first planned in, for every
 * node that took that step's GO at once).  When no live training stage-0
 * node was seen (the run starts, or the nodes seen are gone), every live
 * training stage-0 record is a candidate.  And an idle node of the run
 * (in no step whose GO it took: FWDs that came before a GO do not count,
 * every stage served, the run not over) that has had no
 * PREPARE or GO from the leader its table names for SW_LEAD_PASS_MS passes
 * that key over for SW_LEAD_PASSED_MS (or until a plan names it): the next
 * key leads, for it.  The nodes that saw the same plans name the same
 * leader; a newcomer that names another one (it saw no plan yet) drops the
 * real leader's PREPAREs until it passes over the one it named, and the
 * real leader plans without it meanwhile.  When every candidate is passed
 * over, the lowest key leads again.
 *
 * Two takeovers.  Two newcomers that rebuilt a lost stage 0 at once (the
 * same CheckFree+ state) would each take the lost leader's step over and,
 * each seeing itself in the plan it sent, each lead for good (the churn
 * bench, SEED=3: no step for 130 s).  So a takeover leaves the step to a
 * training stage-0 node with a lower key at the step; and a node leading a
 * takeover that finds such a node (the two records were read after both
 * took over) yields to it: it drops what it did of the step, forgets that
 * it saw itself in a plan, and takes the rival's GO.
 *
 * Whom a round waits for.  In an open run a stranger can publish a record
 * that answers pings (so it is proven, live.h) and nothing else, under as
 * many fresh keys as it likes; a round that waited the PREPARE timeout for
 * each of them, every step, would stall the run.  Every node of the table
 * is sent the PREPARE, and one that answers READY ok before the GO is
 * planned; but the round waits only for
 *   - the nodes it knows: those that answered a READY of this leader
 *     before (in any round, late or not), and those of the last plan this
 *     node made or took (a new leader knows the run's nodes from it),
 *     unless they are silent: their last PREPARE timed out, or a round went
 *     on without them, and no answer of them came in since;
 *   - keys it never heard from (newcomers, whose READY waits until their
 *     copy is done), unless such a key let a round down (it became silent)
 *     in the last SW_LEAD_DOUBT_MS.
 * Once only nodes it does not wait for are left to answer, and every stage
 * has a ready node, the leader sends the GO, and those nodes are silent.
 * So a record that never answers costs the run one PREPARE timeout, once,
 * and fresh keys one per SW_LEAD_DOUBT_MS at most.  A node whose READY
 * comes after the GO is known (not silent) from then on, and waited for
 * from the next round (it copies the step it missed, as any node left out
 * of a plan).  A node that answers "not my leader" (READY with lead false:
 * it has not read this node's record yet) is still waited for, and asked
 * again SW_LEAD_REASK_MS later, until the round's timeout: at the run's
 * start every node joins at once, and without it the first step waited the
 * whole PREPARE timeout (15 s with --dead-ms 15000, t0302) for nodes that
 * had read the leader's record a moment after dropping its PREPARE.
 *
 * Copies.  A node copying its stage's state from a replica gets pieces of
 * the source's current step only (fetch.h): while the run steps faster
 * than the copy takes, each step restarts it and it never finishes.  So it
 * answers a PREPARE at once with READY "copy" (ok false, the time its
 * copy has left at its rate so far), and the round waits for it, asking
 * again every SW_LEAD_REASK_MS, until it is ready, as long as that ends
 * within the stage's copy wait and the PREPARE timeout (the copier's time
 * to answer after its copy) of the PREPARE: the run pauses once, its
 * source stays at the step, and the copy finishes (the timeout, which is
 * --dead-ms, was counted inside the copy wait: with --dead-ms 60000 no
 * copy of a stage under 30 MB was waited for, t0423).  The copy wait is
 * SW_LEAD_COPY_WAIT_MS, or longer for a big stage: its state (parameters
 * and both AdamW moments) at SW_LEAD_COPY_MIN_RATE, so that a copy of a
 * stage of hundreds of MB over a home link finishes too (255 MB at
 * 20 Mbit/s: about 110 s; the wait was 60 s for any stage, and such a copy
 * was never waited for and never finished), SW_LEAD_COPY_WAIT_MAX_MS at
 * most.  That rate is 4 Mbit/s: a 10 Mbit/s link carries about 8.5 of TCP
 * payload (docs/wan.md), less when its host is loaded (5.3 in a CI run of
 * t0421, whose wait at 6 Mbit/s then ended 15 s before the copy did), and
 * the copier's estimate of the time it has left, from its first pieces,
 * runs high.  One copier a round.  A copy
 * that says more is left than the wait allows is not waited for; once
 * waited for, its later answers keep the round waiting to the wait's end,
 * whatever they say is left (an estimate that rose past the wait ended
 * a wait of 340 s after 1 s).  A copier waited for that was not ready when
 * the round went (a stranger's claim, a copy that failed) is not waited
 * for again for SW_LEAD_COPY_DOUBT_TIMES times its stage's copy wait,
 * SW_LEAD_COPY_DOUBT_MS at least; a second one meanwhile stops the waits
 * for every copier until then.  So a node that lies about copying costs
 * the run a tenth of its time at most, two (or more keys) a fifth, and an
 * honest copier is not turned away for another's failure (in a CI run of
 * t0421, a stage-0 replica's copy too slow for its wait stopped every
 * copy wait for 1111 s, and the stage-1 replica never joined).
 *
 * Long rounds.  A node that answered ready and hears nothing from the
 * leader for SW_LEAD_PASS_MS passes it over (see "Candidates" above): in a
 * round that waits longer for a copier or a busy replica, the other nodes
 * took the next stage-0 key for the leader (t0421 without what follows:
 * 30 s into a wait of 74 s the other stage-0 replica led the run on, each
 * of the two dropped the other's PREPAREs, and the copy took 269 s).  So
 * in a round that may last longer than half SW_LEAD_PASS_MS,
 * the leader sends its PREPARE again every SW_LEAD_KEEP_MS to the nodes
 * that answered; their second READY is dropped (their first counts).  It
 * also asks the nodes in the run that its table has and the round has not
 * (a copier that was not waited for, whose copy ended meanwhile: it had no
 * slot, the step went without it, and it copied again).
 *
 * Exchanges.  A replica sums its twins' partial gradients of a step after
 * the leader finished it: a big stage's partials over a slow link (27 MB
 * fp32 at 20 Mbit/s: 11 s) take longer than the PREPARE timeout of the
 * next round, which then went without the replica, and the replica copied
 * its stage's state again.  Now it answers such a PREPARE at once with
 * READY "busy" (ok false), and the round waits for it, asking again every
 * SW_LEAD_REASK_MS, for SW_LEAD_BUSY_WAIT_MS after the PREPARE at most;
 * only for a node this node's plan of the step before named on a stage
 * of two replicas or more (a stranger's "busy" is not waited for).  A node
 * waited for that was still not ready when the round went (a replica that
 * lies, or one too slow for the wait) is not waited for again for
 * SW_LEAD_COPY_DOUBT_MS: it falls out of the plan and copies, as all
 * replicas did before "busy" existed.  So a replica that the run planned
 * and that says "busy" forever costs one wait of SW_LEAD_BUSY_WAIT_MS per
 * SW_LEAD_COPY_DOUBT_MS (a planned node that takes its microbatches and
 * never sends costs a stall limit each time it is planned, step.h).
 *
 * Early PREPAREs.  The round is one round trip on the step's path: the
 * leader's PREPARE goes out when its update of the step before is done,
 * and the GO waits for the READYs (at 25 ms one way, 102 ms from the
 * leader's update to its next GO, 52 ms without the 50 ms pause that once
 * preceded each round: bench/barrier_bench.sh).  Yet every other node of
 * the step is done before the leader: stage 0 does the last backwards of
 * every microbatch (the swapped route's too).  So once every input of the
 * leader's own part of step s is in (sw_step_inputs_in: its last
 * backwards and its update are left), it sends PREPARE(s + 1) with "early"
 * to the other nodes of its plan.  A node still in step s takes it as the
 * next step's and answers READY when its update is done, never dropping
 * or restarting its step for it; a node already done answers at once; any
 * other node leaves it unanswered.  The answers (tagged SW_TAG_EARLY, by
 * generation and index) wait in L->early; the round of s + 1 takes a
 * ready one (ok, with its hash) for the node's READY and sends that node
 * no PREPARE, and one that comes while the round runs answers its slot.
 * Any other answer, none, or a node that is gone meanwhile: the round's
 * own PREPARE as before.  A round of another step (a restart) forgets
 * them.
 *
 * Lifecycle (struct sw_lead.phase): IDLE, TAKEOVER (wait to plan the lost
 * leader's step again), RESTART (prepare the stalled step again),
 * PREPARING, RUNNING, PAUSED (running, a stage empty).
 */
#ifndef SW_LEAD_H
#define SW_LEAD_H

#include "sw.h"

#include "plan.h"
#include "proto.h"
#include "transport.h"

#define SW_LEAD_STALL_MS 30000
/* A running step stalls after SW_LEAD_STALL_PERIODS times the leader's
 * step period (the shortest of its last few: step.h, SW_STEP_PERIODS)
 * without progress, SW_LEAD_STALL_MIN_MS at least and SW_LEAD_STALL_MS at
 * most; before its second update on its stage, the period it measured on
 * the stage it served before a move, else the period the records tell
 * (lead.c, records_period); SW_LEAD_STALL_MS while none is known.  A forward or
 * backward of the leader's computing apart (step.h) is progress: the loop
 * that checks is free while it runs. */
#define SW_LEAD_STALL_PERIODS 4
#define SW_LEAD_STALL_MIN_MS 5000
#define SW_LEAD_PING_MS 500      /* the leader pings the nodes of a running step */
/* A node reached through a relay (its endpoint "key:HEX@RELAY", reach.h,
 * Relays) enters the plan with this share of its advertised capacity, so
 * that a stage with a direct node deals the relayed one fewer microbatches
 * (Petals counts a relayed server at 0.2 too). */
#define SW_LEAD_RELAY_WEIGHT 0.2
/* Between a round that planned nothing (or a takeover's wait) and the
 * next; a step that finished is followed by the next one's PREPARE at once
 * (the 50 ms were a ninth of the demo's step on loopback). */
#define SW_LEAD_START_MS 50
/* A node that answered a PREPARE "not my leader" (it has not read this
 * node's record yet) is asked again this much later, until the round's
 * timeout (the larger of the dead time and 5 s). */
#define SW_LEAD_REASK_MS 500
/* A round waits for a node copying its stage's state (READY with "copy":
 * the time its copy has left) up to the stage's copy wait and the PREPARE
 * timeout from its PREPARE; the copy wait is the longer of
 * SW_LEAD_COPY_WAIT_MS and its state at
 * SW_LEAD_COPY_MIN_RATE bytes/s (4 Mbit/s), SW_LEAD_COPY_WAIT_MAX_MS at
 * most, asking it again every SW_LEAD_REASK_MS; a copier it waited for that
 * was not ready when the round went is not waited for again for
 * SW_LEAD_COPY_DOUBT_TIMES times that wait, SW_LEAD_COPY_DOUBT_MS at least,
 * nor any copier after a second one (see "Copies", above) */
#define SW_LEAD_COPY_WAIT_MS 60000
#define SW_LEAD_COPY_MIN_RATE 0.5e6
#define SW_LEAD_COPY_WAIT_MAX_MS (30 * 60000)
#define SW_LEAD_COPY_DOUBT_TIMES 10
#define SW_LEAD_KEEP_MS 10000    /* see "Long rounds" above */
#define SW_LEAD_BUSY_WAIT_MS SW_LEAD_STALL_MS /* see "Exchanges" above */
#define SW_LEAD_COPY_DOUBT_MS 600000
/* An idle node that hears nothing from the leader its table names for this
 * long passes it over (see "Candidates" above), for SW_LEAD_PASSED_MS. */
#define SW_LEAD_PASS_MS SW_LEAD_STALL_MS
#define SW_LEAD_PASSED_MS (10 * SW_LEAD_STALL_MS)
#define SW_LEAD_CANDS 32         /* stage-0 keys remembered (seen in a plan, passed over) */
/* see "Whom a round waits for" above */
#define SW_LEAD_KNOWN (2 * SW_PROTO_MAX_NODES) /* keys remembered */
#define SW_LEAD_DOUBT_MS 60000   /* keys never heard not waited for that long after one let a round down */

struct sw_trainer;

enum sw_lead_phase {
    SW_LEAD_IDLE = 0,
    SW_LEAD_TAKEOVER,
    SW_LEAD_RESTART,
    SW_LEAD_PREPARING,
    SW_LEAD_RUNNING,
    SW_LEAD_PAUSED,
};

/* A stage-0 key this node knows something of (see "Candidates"). */
struct sw_lead_cand {
    uint8_t pk[32];
    uint64_t seen_ms;        /* last in a plan this node made or took (0: never) */
    uint64_t passed_ms;      /* passed over then (0: not) */
};

/* An early PREPARE's node and its READY (see "Early PREPAREs"). */
struct sw_lead_early {
    uint8_t pk[32];
    bool answered;           /* ready: ok, at the step, with its hash */
    int stage;
    uint8_t hash[32];
};

/* One node asked in a round. */
struct sw_lead_slot {
    uint8_t pk[32];
    char ep[SW_PROTO_EP_MAX];
    int stage;
    double w;                /* advertised capacity */
    bool ok, answered;
    bool told;               /* not planned, but sent the GO: it leaves the step */
    bool have_hash;
    uint8_t hash[32];        /* its parameters' (READY) */
    uint64_t reask_ms;       /* answered "not my leader": PREPARE again then (0: no) */
    bool busy;               /* the round waits for it: it said "busy" (see "Exchanges") */
};

struct sw_lead {
    int phase;
    uint64_t phase_ms, step, ver; /* the step led, its plan's version */
    bool led;                /* this node prepared, took over or inherited step */
    uint32_t round;          /* generation of the slots (see above) */
    int nslot, nwait;
    struct sw_lead_slot slot[SW_PROTO_MAX_NODES];
    struct sw_plan plan;     /* the plan sent last (or inherited) */
    struct sw_plan prev;     /* scratch: the plan a replan keeps the microbatches of */
    uint64_t go_ms, wait_log_ms;
    uint64_t stale_ready;    /* READYs of an earlier round, dropped (see above) */
    /* a stage none of whose nodes answered the last PREPARE ready, or that
     * the running step lost its last node on (paused) (-1: none), and
     * since when: the leader's record says so ("nd"), so that a --stage
     * auto newcomer fills it even when records claim nodes there (a stranger
     * in an open run can publish a record that answers pings and never
     * trains); published once the rounds have failed for it for
     * SW_TRAINER_NEED_HOLD_MS in a row, so that a stage filling up at the
     * start or being rebuilt draws nobody away from another */
    int need;
    uint64_t need_ms, need_since; /* its last round, its first one in a row */
    struct sw_lead_cand cand[SW_LEAD_CANDS];
    int ncand;
    bool waiting;            /* idle, for the leader wait_pk, since wait_ms */
    uint8_t wait_pk[32];
    uint64_t wait_ms;
    uint64_t passed_over;    /* leaders passed over (they did not lead) */
    uint64_t resend_ms;      /* a step last planned again for a resend then (see "Resends") */
    uint64_t resends;        /* how often */
    bool took_over;          /* the step led is a takeover (see "Two takeovers") */
    /* keys that answered a READY of this node, the last answer's time, and
     * whether a PREPARE to them timed out since (see "Whom a round waits
     * for"); the least recently heard goes first when it is full */
    struct {
        uint8_t pk[32];
        uint64_t ms;
        bool silent;
        uint64_t busy_doubt_ms; /* a round waited for its "busy" in vain then (0: never) */
    } known[SW_LEAD_KNOWN];
    int nknown;
    uint64_t doubt_ms;       /* when a key never heard before let a round down (0: never) */
    uint64_t copy_end;       /* the round waits for a copier until then (0: none) */
    uint8_t copy_pk[32];     /*   which */
    int copy_stage;          /*   its stage */
    uint64_t copy_doubt_end; /* no round waits for a copy until then (0: none): */
    uint8_t copy_doubt_pk[32]; /*   of this node's, */
    bool copy_doubt_all;     /*   or of any node's (a second copier in vain meanwhile) */
    uint64_t keep_ms;        /* when the round last sent its PREPARE again ("Long rounds") */
    uint64_t copy_waits;     /* rounds that waited for a copier */
    uint64_t busy_end;       /* the round waits for replicas summing the step before until then */
    uint64_t busy_waits;     /* rounds that waited for them */
    uint64_t not_waited;     /* nodes a round was planned without, not waited for */
    uint64_t no_hash;        /* READYs ok without a hash, taken as not ok */
    /* early PREPAREs (see "Early PREPAREs") of step early_step (0: none) */
    uint64_t early_step;
    bool early_round;        /* a round of early_step took them (a restart does not) */
    uint32_t early_gen;
    int nearly;
    struct sw_lead_early early[SW_PROTO_MAX_NODES];
    uint64_t early_sent, early_used; /* early PREPAREs sent; their READYs a round took */
};

int sw_lead_init(struct sw_trainer *t) SW_WARN_UNUSED;
void sw_lead_release(struct sw_trainer *t);
/* The leader this node's table names: the lowest key among the live
 * training stage-0 nodes (this one included) seen in the run and not passed
 * over, with the fallbacks of "Candidates"; NULL when there is none.  Every
 * node computes it from the same records and plans, so that PREPARE and GO
 * are taken from it alone (step.h), never from a key that merely asks. */
const uint8_t *sw_lead_expected(struct sw_trainer *t);
/* A plan this node made or took (from the leader): its stage-0 nodes take
 * part in the run. */
void sw_lead_seen_plan(struct sw_trainer *t, const struct sw_plan *p);
/* Was pk a stage-0 node of a plan this node made or took? */
bool sw_lead_seen(struct sw_trainer *t, const uint8_t *pk);
/* A PREPARE or GO of pk was taken: pk leads. */
void sw_lead_heard(struct sw_trainer *t, const uint8_t *pk);
/* Is this node the leader now (the expected one)? */
bool sw_lead_is_leader(struct sw_trainer *t);
/* A READY (or the request's failure) for tag. */
void sw_lead_ready(struct sw_trainer *t, uint64_t tag, int status, const struct sw_transport_msg *m);
/* An early PREPARE's READY (or the request's failure) for tag. */
void sw_lead_early(struct sw_trainer *t, uint64_t tag, int status, const struct sw_transport_msg *m);
/* Another node's plan of step came in (or another node leads): this node's
 * lead of that step, if any, is over. */
void sw_lead_yield(struct sw_trainer *t, uint64_t step);
/* This stage 0 was rebuilt in a step whose leader died: plan it again. */
void sw_lead_takeover(struct sw_trainer *t);
/* Time-driven work; returns the next wake-up (absolute ms). */
uint64_t sw_lead_tick(struct sw_trainer *t);

#endif
