/*
 * step.h - a training node's part of a step (swarm-protocol(7), PREPARE,
 * GO, FWD, BWD, GRAD, REPLICA), inside the trainer core (trainer.h): no
 * I/O of its own, everything through the trainer's env and stage ops.
 *
 * A step s.  The leader's PREPARE(s) is answered READY once the node holds
 * the state after step s-1 (the answer is deferred while it finishes s-1 or
 * copies a replica's state: struct sw_step_prep).  GO(s, ver, plan) installs
 * the plan (plan.h) and starts the step: stage-0 nodes draw all M
 * microbatches from the data stream (so every replica keeps the same
 * cursor), run their own forward and send FWD along the route; each stage
 * runs forward on the FWDs it gets and sends FWD on, the last computes the
 * loss and sends BWD back along the route.  A node runs its backwards in
 * increasing microbatch order (holding early arrivals), so with one node per
 * stage the gradient sums are swarmsim's.  When all its microbatches are
 * through, a node of a replicated stage sends its partial gradient (and a
 * hash of its parameters) to its replicas (GRAD); each sums the partials in
 * plan order, so all replicas apply the same update and stay bit-identical.
 *
 * Replans.  A GO of the running step with a higher version (the leader
 * dropped a dead node, gave an empty stage its newcomer, or took over the
 * step of a lost leader) is installed over the old plan: what the node
 * already sent in the step is sent again from its store of the step's FWD
 * and BWD payloads (xout, dxout), to whichever node the new plan names, so
 * nothing is recomputed upstream and a neighbour that lost its part of the
 * step (replaced, restarted) gets it back; a receiver that has a message
 * already drops the copy.  Microbatches it takes over are computed when
 * their input is there.  A node that finished the step replays too, until
 * the next step starts.  FWDs and BWDs of the step that
 * come before the plan names their sender are held (early_*) and used once
 * it does.  A node the replan leaves out (a leader that took over the step
 * without its plan keeps one node per stage, and sends the others the GO
 * too) drops the step; the next PREPARE sends it copying state again.
 *
 * Resends.  A GO of the installed plan's version with "resend" (the leader
 * saw no progress for half its stall limit: lead.h, Resends) sends again
 * every FWD and BWD this node sent in the step, from the same store, to
 * the nodes the plan names, without installing anything: while in the
 * step, or after it until the next one starts; and its partial gradient
 * while it waits for its replicas' (a piece a receiver holds already is no
 * progress, so a partial that never comes still ends in a restart).  A node without the GO
 * takes it as the step's GO.  One such GO is taken per
 * SW_STEP_RESEND_GAP_MS, half the leader's least stall limit (no honest
 * leader sends them closer): each sends this node's whole part of the step
 * again, M activations or gradients of up to hundreds of MiB, so one
 * closer is dropped and counted (resends_dropped), not an amplifier.
 *
 * Relays.  A replica that dies while its partial is on its way may leave
 * it with some of its stage-mates and not others: those that have it
 * update with it, the others would update without its share, and the
 * replicas would hold two states.  So before a node updates without a
 * gone replica's share it sends GRAD_ASK {step, stage, of} to each live
 * replica whose partial it has, and waits as for a partial (piece_wait);
 * one that holds the gone replica's whole partial of the step (kept from
 * the step before too, so that one that updated already still has it)
 * sends it on, as GRAD pieces in float32 with 'of' naming whose it is,
 * once per asking replica and step, a piece a turn.  A node takes a
 * relayed piece only from a replica of its plan, of a replica of its plan,
 * in a step it asked in.  When none comes, every replica that lacked it
 * updates without it, as before.
 *
 * Compute apart.  When the stage ops run a forward or backward on their
 * own thread (trainer.h, SW_COMPUTE_PENDING), one runs at a time (job): a
 * FWD taken meanwhile waits in xin, a BWD in dx, and what is ready next
 * starts when it is done (pump: stage 0's own forwards, then the FWDs
 * taken, then the backwards in order); a reset of the step cancels it.
 * With ops that compute in the call, the same order runs at once.  The
 * update runs apart too (UPDATING, from the moment the last partial is in
 * to the step's end: the step, its report, the READY to a PREPARE of the
 * next step that came meanwhile), and the loop goes on answering pings and
 * publishing the record (the step and hash before it) while it computes.
 * It cannot be undone: whatever would act on the step first waits for it
 * and finishes the step (sw_step_settle: a FWD, BWD, GRAD or STATE_GET
 * of a node of the step, a GO but the step's own again, a PREPARE of
 * another step than the next, a reset), so it finds the step as if the
 * update had run in the loop.
 *
 * Microbatches of any size: a FWD or BWD above SW_STEP_HOP_PIECE bytes goes
 * in pieces, put together per visit from one sender (struct sw_hop_asm)
 * before it is read as one message (swarm-protocol(7), FWD, Pieces).
 *
 * Who may send what: tensors only from the node the plan names (a stranger's
 * well-formed ones are dropped and counted, malformed or non-finite ones ban
 * their sender); PREPARE and GO of step s only from the leader this node's
 * table names (lead.h, sw_lead_expected), the node whose PREPARE of s it
 * took, or a stage-0 node of the plan of s (a leader that inherited the
 * step); from anyone else they are dropped and counted, however far ahead
 * their step, and the table is read again soon (a real new leader asks
 * again).
 *
 * Behind the run.  A PREPARE of a later step from the leader while idle: a
 * node copies its state again when another node of its stage is past its
 * step (and SYNC, recover.c, never resumes its own state behind the step
 * the leader asked it to prepare, even before records corroborate it);
 * when none is (the run went past a step this stage cannot finish:
 * the node that computed its part died after the nodes past it updated),
 * it skips to the leader's step with its own state (sw_step_skip).
 *
 * The step's lifecycle is one enum (struct sw_step.phase):
 *   IDLE      no step in progress
 *   FRESH     idle, with a state just rebuilt by CheckFree(+) from a source
 *             that had finished the step in progress, or from one a step
 *             behind the leader (the rebuilt stage takes the leader's): a GO
 *             of the step before is taken (the stage steps back into it)
 *   EARLY     FWDs of the step arrived from a known node before its GO
 *   RUNNING   GO installed: forwards and backwards
 *   EXCHANGE  this node's microbatches are done; waiting for the replicas'
 *             partial gradients
 */
#ifndef SW_STEP_H
#define SW_STEP_H

#include "sw.h"

#include "plan.h"
#include "proto.h"
#include "transport.h"

struct sw_trainer;

/* What the stage ops' update did (trainer.h, struct sw_stage_ops): written
 * by the op, on whichever thread runs it. */
struct sw_update {
    float lr;                /* the step's learning rate */
    double norm;             /* the pre-clip gradient norm */
    uint8_t hash[32];        /* the new parameters' hash (the hash op's) */
    double took_ms;          /* how long it ran (wall clock; 0 where none is read) */
    int err;                 /* 0 or a negative SW_E* code */
};

enum sw_step_phase {
    SW_STEP_IDLE = 0,
    SW_STEP_FRESH,
    SW_STEP_EARLY,
    SW_STEP_RUNNING,
    SW_STEP_EXCHANGE,
    SW_STEP_UPDATING,        /* the update runs apart (Compute apart) */
};

/* A partial gradient (GRAD) and a CheckFree+ replica (REPLICA) go in pieces
 * of this many floats (8 MiB, half of SW_WIRE_MAX_PAYLOAD): a stage of any
 * size; the last piece is shorter. */
#define SW_STEP_PIECE ((size_t)2 << 20)

/* A FWD or BWD payload above this many bytes (8 MiB) goes in pieces of
 * this many bytes, each naming its byte offset ('off') and the payload's
 * length ('total'); the receiver puts them together (struct sw_hop_asm)
 * before it reads the whole as one message: microbatches of any size. */
#define SW_STEP_HOP_PIECE (SW_STEP_PIECE * sizeof(float))

/* PREPAREs of a key that is not this node's leader answered "not my
 * leader" a second, at most (step.c, answer_not_leader). */
#define SW_STEP_NAK_PER_S 20

/* A replica's partial gradient of a step (GRAD), complete once every piece is in. */
struct sw_partial {
    float *buf;              /* host [numel] */
    uint8_t *got;            /* [pieces]: piece i is in buf */
    uint32_t ngot;           /* pieces in: complete at the stage's piece count */
    uint8_t pk[32];          /* its sender */
    uint8_t hash[32];        /* the sender's parameter hash before the step */
    double loss;             /* sum of its microbatches' losses (last stage) */
    uint64_t step, ver;      /* the step and plan version it belongs to */
    uint32_t relayed;        /* plan indices of the replicas it was relayed to (Relays) */
};

/* A gone replica's partial on its way to a replica that asked (Relays). */
struct sw_relay {
    char ep[SW_PROTO_EP_MAX];
    uint8_t of[32];
    uint64_t step;
    size_t k;                /* the next piece */
};

/*
 * Warm-up.  A replica's exchange buffers (its own partial, one per other
 * replica, the int8/int4 wire copy and error feedback) are allocated
 * untouched when a plan first gives the stage replicas, and zeroed from
 * then on SW_STEP_WARM_SLICE bytes a turn of the loop (sw_step_tick), while
 * the step's forwards and backwards compute; a buffer about to be used is
 * zeroed to its end first.  Zeroing them all at the first exchange (their
 * pages' first faults) held the loop 0.4-0.55 s at t0302's 110 MB stages
 * and 3.6-4.6 s at llama124_bench's (docs/wan.md): pings went unanswered
 * and peers declared the node dead.
 */
#define SW_STEP_WARM_SLICE ((size_t)4 << 20)
/* The step period the stall limit scales (lead.h) is the shortest of the
 * last this many: a stalled step's period (the stall, the restart) made the
 * next limit 4 times as long, and the one after that longer again (sim
 * --harsh seed 18: limits of 5, then 25 s, and no step for 45 s) */
#define SW_STEP_PERIODS 4
#define SW_STEP_WARM_MAX (SW_PROTO_MAX_REPLICAS + 4)
struct sw_step_warm {
    void *p;
    size_t size, off;        /* [0, off) is zeroed */
};

/* A FWD or BWD of one visit coming in pieces (SW_STEP_HOP_PIECE), from one
 * sender: complete once every piece is in. */
struct sw_hop_asm {
    uint8_t *buf;            /* [total] (allocated at the first piece) */
    uint8_t *got;            /* [pieces]: piece i is in buf */
    uint32_t ngot;           /* pieces in (0: none being put together) */
    uint64_t step;
    uint8_t pk[32];          /* its sender */
};

/* The leader's PREPARE waiting for this node's READY. */
struct sw_step_prep {
    bool pending;
    bool busy;               /* answered "busy" (lead.h, Exchanges): the leader is past the step */
    bool early;              /* an early PREPARE (lead.h): the leader is still in the step */
    uint8_t pk[32];          /* who sent it (the leader) */
    struct sw_transport_route route;
    uint64_t step;
};

struct sw_step {
    int phase;
    struct sw_plan plan;     /* installed (plan.step, plan.ver) */
    struct sw_plan scratch;  /* a GO being read */
    uint64_t store_step;     /* the step xout/dxout hold */
    int nrep, myidx;         /* this stage's nodes in the plan, this node's index (-1: none) */
    int n_own, n_bwd;        /* visits this node owns, and their backwards done */
    int *mb_node;            /* [M] index of the node of this stage serving each */
    bool *fwd_done, *bwd_done, *have_dx; /* [V*M] */
    float *losses;           /* [M] */
    float *dx;               /* [V*M, N, C] gradients waiting for their turn */
    char *routes;            /* [M, S, EP] */
    float *xbuf;             /* [N, C] */
    uint8_t *msgbuf;         /* [N*C*4 + N*4] x then targets */
    uint8_t *wirebuf;        /* [N*C*4 + N*4] a FWD or BWD payload being encoded */
    int32_t *in_all, *tg_all; /* stage 0: [M, N] */
    uint8_t *xout;           /* [V*M, N*C*4 + N*4] FWD payloads sent this step */
    float *dxout;            /* [V*M, N, C] BWD payloads sent this step */
    bool *xout_ok, *dxout_ok;
    uint8_t *xin;            /* [V*M, N*C*4 + N*4] FWD payloads taken, to compute */
    bool *xin_ok;
    /* the forward or backward running apart (SW_COMPUTE_PENDING) */
    struct {
        bool on, fwd;
        int u;
        const int32_t *tg;   /* a forward's targets (sent on with its output) */
    } job;
    uint8_t *early;          /* [V*M, N*C*4 + N*4] held FWD payloads */
    bool *early_ok, *early_dx;
    uint8_t (*early_pk)[32], (*early_dxpk)[32];
    struct sw_hop_asm *hop_asm; /* [2*V]: FWDs of visit v at v, BWDs at V+v */
    /* replicas: partial gradients (own one in own) */
    const float *gin[SW_PROTO_MAX_REPLICAS]; /* the partials the update sums, in plan order */
    int ngin;
    size_t gsend_k;          /* this node's partial: the next piece to send (SW_STEP_GRAD_TURN) */
    bool gsend_on;           /*   some are left */
    float *own;              /* host [numel] (decoded from gwire under a GRAD codec) */
    /* [wire] gradients = int8: this node's partial as sent (gwire: piece
     * after piece, each encoded on its own), and the error feedback: what
     * the encoding left out of the partials up to the last update (gerr),
     * and of this step's (gerr_next, which the update makes gerr) */
    uint8_t *gwire;
    size_t genc;             /*   its pieces encoded so far (the next one to encode) */
    float *gerr, *gerr_next;
    bool gerr_pending;
    struct sw_partial part[SW_PROTO_MAX_REPLICAS];
    int npart;
    /* Relays: this node's ask for gone replicas' partials, and those it sends */
    uint64_t relay_step;     /* the step it asked in, + 1 (0: none) */
    uint64_t relay_ms;       /*   when */
    struct sw_relay relay[SW_PROTO_MAX_REPLICAS];
    int nrelay;
    uint64_t relays_asked, relays_sent, relays_taken, relay_drops;
    struct sw_step_warm warm[SW_STEP_WARM_MAX]; /* being zeroed (Warm-up) */
    int nwarm;
    struct sw_step_prep prep;
    uint64_t ready_step;     /* the last step this node answered READY ok for, + 1 (0: none) */
    uint64_t go_step;        /* the last step whose GO it installed, + 1 (0: none) */
    struct sw_update upd;    /* UPDATING: what the update running apart did */
    double upd_loss;         /*   the loss sum of the step it applies */
    uint64_t nak_ms;         /* READYs "not my leader" answered (see sw_step_on_prepare) */
    int nak_n;               /*   in the second from nak_ms */
    /* timing */
    uint64_t t_go_ms, t_update_ms;
    uint64_t period_ms;      /* the shortest of the last SW_STEP_PERIODS periods between
                                this node's updates (0: not known yet) */
    uint64_t periods[SW_STEP_PERIODS];
    unsigned nperiods;
    uint64_t progress_ms;    /* the last forward, backward or partial gradient of the step */
    uint64_t resend_ms;      /* EXCHANGE: this node's partial last sent again (sw_step_tick) */
    uint64_t resent;         /* GOs with resend taken (see Resends) */
    uint64_t resent_ms;      /*   the last one */
    uint64_t resends_dropped; /*  within SW_STEP_RESEND_GAP_MS of it */
    int resends;             /*   how often, this step */
    double tok_compute, t_compute0;
    double compute_at_update; /* the backend's compute_s at the last update */
};

/* The step's buffers, for a stage of t->numel parameters (t->st.plan is
 * set up by sw_trainer_init already); sw_step_release frees both. */
int sw_step_init(struct sw_trainer *t) SW_WARN_UNUSED;
void sw_step_release(struct sw_trainer *t);
/* Forget the step in progress (its end, a restart, a new state). */
void sw_step_reset(struct sw_trainer *t);
static inline bool
sw_step_busy(const struct sw_step *s)
{
    return s->phase >= SW_STEP_EARLY;
}

void sw_step_on_prepare(struct sw_trainer *t, const struct sw_transport_msg *m);
void sw_step_on_go(struct sw_trainer *t, const struct sw_transport_msg *m);
void sw_step_on_fwd(struct sw_trainer *t, const struct sw_transport_msg *m);
void sw_step_on_bwd(struct sw_trainer *t, const struct sw_transport_msg *m);
void sw_step_on_grad(struct sw_trainer *t, const struct sw_transport_msg *m);
void sw_step_on_replica(struct sw_trainer *t, const struct sw_transport_msg *m);
/* The forward, backward or update running apart is done (sw_trainer_computed). */
void sw_step_computed(struct sw_trainer *t, int err, float loss);
/* An update running apart: waited for and finished now (what comes in that
 * changes the step: see Compute apart). */
void sw_step_settle(struct sw_trainer *t);
/* Drops the step in progress and goes on at step with this node's state
 * (the run went past a step it cannot finish; why for the log). */
void sw_step_skip(struct sw_trainer *t, uint64_t step, const char *why);
/* Drops what this node did of the step in progress (a stage-0 node rewinds
 * its data stream to the step's start) and stays at the step, idle: the
 * next GO of it starts it afresh (lead.h: a takeover yielded to another). */
void sw_step_drop(struct sw_trainer *t, const char *why);
/* Are all the inputs of this node's part of the step in (every backward
 * it owns has its gradient, or is done)?  Only its own computing is left. */
bool sw_step_inputs_in(const struct sw_trainer *t);
/* The deferred READY, when the node can answer it now. */
void sw_step_answer_prepare(struct sw_trainer *t);
/* EXCHANGE with the leader's next PREPARE waiting: a replica gone
 * meanwhile is done without.  And the partials still missing may have been
 * lost with a connection (net/transport.h, Requests): with no piece in for
 * SW_STEP_RESEND_MS, or two pieces' time at SW_TRANSPORT_DRAIN_BPS if
 * longer, this node sends its own again (a replica that lost it
 * sends its own again too; the pieces a replica has are dropped as
 * duplicates), and after SW_STEP_RESENDS of those it drops the step: a
 * replica that finished it is past, and the next PREPARE has this node
 * copy its stage's state.  It also sends the next pieces of this node's
 * partial (see SW_STEP_GRAD_TURN) and zeroes a slice of the exchange
 * buffers (Warm-up): true while some are left (the caller ticks again at
 * once). */
bool sw_step_tick(struct sw_trainer *t);
/* GRAD_ASK: a replica's ask for a gone replica's partial (Relays). */
void sw_step_on_grad_ask(struct sw_trainer *t, const struct sw_transport_msg *m);
#define SW_STEP_RESEND_MS 5000
/* GOs with resend: one taken per this (SW_LEAD_STALL_MIN_MS / 2; Resends) */
#define SW_STEP_RESEND_GAP_MS 2500
#define SW_STEP_RESENDS 3
/* This node's partial goes SW_STEP_GRAD_TURN piece (8 MiB in float32) a
 * turn of the loop, the next ones at the next tick: hashing and copying a
 * partial of hundreds of MiB at once held the loop for a second, pings and
 * record refreshes unanswered.  The update waits until the last piece is
 * out (the pieces carry the step's hash). */
#define SW_STEP_GRAD_TURN 1
/* The kind of CheckFree+ replica this node's stage keeps (owner false) or
 * owns (owner true), -1 none. */
int sw_step_rep_kind(const struct sw_trainer *t, bool owner);

#endif
