/*
 * trainer.h - the training node of swarmd join, as a protocol core without
 * I/O: one phase machine over the sans-I/O modules below it (live.h
 * liveness and bans, plan.h plans and routes, fetch.h state transfer,
 * lead.h the leader's barrier and replans, step.h a node's part of a step,
 * recover.h how a stage gets its state).
 *
 * The caller (peers/join.c in swarmd, tests/test_swarm_sim.c in the
 * simulator) owns the clock, the network and the DHT.  It feeds the core
 * verified messages (sw_trainer_input), the answers to the core's requests
 * (sw_trainer_response, by the tag the core gave), the results of scans of
 * the stage records (sw_trainer_scanned) and of port probes
 * (sw_trainer_probed), and calls sw_trainer_tick at the time it returned;
 * every call takes `now` (milliseconds of a monotonic clock).  The core acts
 * through struct sw_trainer_env (send, request, reply, publish its record,
 * scan, probe) and computes through struct sw_stage_ops (the stage's math:
 * peers/compute.h in swarmd, a stub model in the simulator).  It never
 * reads a clock, never blocks on the network and never calls back into the
 * caller from inside a callback of the caller's.  A forward or backward,
 * the update (with the new parameters' hash) and the seed's
 * initialisation may run on the stage's own thread (SW_COMPUTE_PENDING):
 * the loop then goes on answering pings, publishing the record and taking
 * messages while a block computes, and the caller hands the result back
 * (sw_trainer_computed).
 *
 * Lifecycle: one phase (enum sw_phase), changed only by trainer_set_phase
 * (trainer.c):
 *
 *   SCAN      the first read of the stage records (nothing published yet)
 *   CHOOSE    --stage auto: a short random delay against herding, then the
 *             records are confirmed (a record is counted only once its node
 *             proved it serves its endpoint: live.h, Proof) and a stage is
 *             chosen
 *
 * The table (dir) holds the proven records of the last scan only: a record
 * is planned, counted for stage choice and rebalancing, copied or rebuilt
 * from, or taken as a leader only once its node answered a PING at its
 * endpoint with its key.  The table is ready (dir_ok) once every record
 * was proven or failed SW_LIVE_PROVE_TRIES tries, or after dead_ms and a
 * scan.
 *   SYNC      the stage is set up; looking for where its state comes from
 *             (recover.h: a replica, the neighbours, a checkpoint, the seed)
 *   COPY      copying a live replica's state
 *   REBUILD   fetching the neighbours' parameters for CheckFree(+)
 *   RESTORE   --from-checkpoint: loading or fetching a checkpoint
 *   JOINING   a copied state, until this node took part in a step: it
 *             trains like TRAINING but its record says joining, so that no
 *             node counts it as a leader before it is in step with the run
 *             (a copy may land in the middle of a step that nodes of other
 *             stages finished)
 *   TRAINING  taking part in steps (and leading them, lead.h)
 *   DONE      the run's last step is done; lingering (--linger-ms)
 *
 * Rebalancing: a movable node (--stage auto) in TRAINING whose stage is the donor of
 * a low balance (plan.h, sw_plan_rebalance; manifest [balance]) for hold
 * seconds, past its cool-down, with every node of the run training (one
 * move at a time), and not the leader, answers the leader's next PREPARE
 * "not ready", and once out of the plan gives its stage up: back to CHOOSE
 * with the bottleneck stage chosen (the caller sets it up, SYNC copies it
 * from a live node).  Of the donor's nodes the one with the highest key
 * moves first; the next ones by key only if it did not (a --stage N node
 * is not movable), each a further hold later.
 * Stage auto's race: two nodes that chose at once may share a stage and
 * leave another empty; of a stage's nodes that may still move (syncing, or
 * holding only the seed's state before the first step) the highest key
 * takes the empty stage (unstack).  A node in the run, idle, behind a node
 * of another stage and alone on its stage recovers the stage again after
 * dead_ms (behind_alone: its copy's source died before it was planned).
 *   STOPPING  a signal or a failure: the step in progress is finished first
 *   LEAVING   the "leaving" record is being put
 *   CLOSED    the caller shuts down; exit_code says how
 *
 * The record this node publishes (status.h) says syncing in SYNC, COPY,
 * REBUILD and RESTORE, joining in JOINING, training in TRAINING, done in DONE and leaving in
 * LEAVING; in STOPPING nothing more is published.
 *
 * Threading: one thread at a time (the caller's loop).  Ownership: the
 * caller owns struct sw_trainer and the manifest, env and stage ops it
 * points to, which must outlive it.
 */
#ifndef SW_TRAINER_H
#define SW_TRAINER_H

#include "sw.h"

#include "fetch.h"
#include "lead.h"
#include "live.h"
#include "manifest.h"
#include "plan.h"
#include "proto.h"
#include "recover.h"
#include "status.h"
#include "step.h"
#include "transport.h"

#define SW_TRAINER_RECORD_TTL_S 10     /* stage record ttl */
#define SW_TRAINER_LEAVE_TTL_S 2       /* the "leaving" record */
#define SW_TRAINER_LOST_TTL_S 3600     /* ... of a node that stops because the run is lost */
#define SW_TRAINER_LEAVE_WAIT_MS 1500  /* at most, for that put to finish */
#define SW_TRAINER_SCAN_MS 500         /* a node reads the stage keys */
#define SW_TRAINER_FIRST_SCAN_MS 20000 /* the first read, at most */
#define SW_TRAINER_HEARTBEAT_MS 250    /* the longest sw_trainer_tick ever waits */
#define SW_TRAINER_NEED_MS 30000       /* the leader's "nd" lasts this long after its last round */
#define SW_TRAINER_NEED_HOLD_MS 10000  /* and is said once its rounds failed this long in a row */

enum sw_phase {
    SW_PHASE_SCAN = 0,
    SW_PHASE_CHOOSE,
    SW_PHASE_SYNC,
    SW_PHASE_COPY,
    SW_PHASE_REBUILD,
    SW_PHASE_RESTORE,
    SW_PHASE_JOINING,
    SW_PHASE_TRAINING,
    SW_PHASE_DONE,
    SW_PHASE_STOPPING,
    SW_PHASE_LEAVING,
    SW_PHASE_CLOSED,
};

const char *sw_phase_name(int phase);

/* Tags of the core's requests: the top 8 bits route the answer. */
enum sw_tag_kind {
    SW_TAG_PING = 1,
    SW_TAG_READY = 2,
    SW_TAG_FETCH = 3,
    SW_TAG_ATTEST = 4,
    SW_TAG_EARLY = 5, /* an early PREPARE's READY (lead.h, Early PREPAREs) */
};
#define SW_TAG(kind, v) ((uint64_t)(kind) << 56 | ((v) & ((1ull << 56) - 1)))

/* The scalars of a stage's optimiser state (src/optim.h). */
struct sw_stage_scalars {
    int t;
    float lr_mult, last_norm, last_norm_clipped;
};

/* A CheckFree(+) rebuild from fetched state (src/checkfree.h). */
struct sw_rebuild {
    bool plus;               /* CheckFree+: blocks of src[0], replica rep */
    const float *src[2];     /* CheckFree: the two neighbours' params; plus: the partner's */
    int src_stage[2];
    double src_norm[2];      /* their last pre-clip gradient norms */
    const float *rep;        /* plus, a boundary stage: the embedding or head replica */
    size_t rep_numel;
    uint64_t seed;
    double took_s;           /* out: how long the rebuild took */
};

/*
 * The stage's math, as the trainer needs it (peers/compute.h over
 * src/stage.h, src/optim.h, src/data.h and the kernels; or a stub model).
 * Every call returns 0 or a negative SW_E* code; activations are host
 * buffers of N * C floats, targets and tokens N ints.
 */
/* forward, backward, update and init may run on another thread
 * (peers/compute.c): they then return SW_COMPUTE_PENDING at once, the
 * caller hands the result to sw_trainer_computed on its loop when it is
 * there, and until then the trainer reads and writes none of the call's
 * buffers and starts no other forward or backward (nor anything else on
 * the stage, after an update or an init).  Every other op waits for a
 * compute in flight first; cancel (NULL when nothing ever runs apart)
 * waits for it and drops its result, which then never reaches
 * sw_trainer_computed (an update's is in its struct sw_update all the
 * same: it ran to its end). */
#define SW_COMPUTE_PENDING 1

/* struct sw_update (what the update did): step.h */

struct sw_stage_ops {
    /* forward of visit u (x_in NULL on the first hop; tokens on stage 0) */
    int (*forward)(void *m, int u, unsigned parts, const int32_t *tokens, const float *x_in,
                   const int32_t *targets, float *x_out, float *loss);
    /* backward of visit u (dx_in NULL on the last hop), gradients accumulate */
    int (*backward)(void *m, int u, const float *dx_in, float *dx_out, float scale);
    int (*zero_grad)(void *m);
    int (*grads_get)(void *m, float *host);
    /* the step's update: the gradients set to the sum of the ngrads host
     * buffers grads[0..ngrads) [numel] first, added in that order to zero
     * (ngrads 0: the stage's own), AdamW for step, the new parameters'
     * hash, the gradients zeroed; what it did into *out (out->err its
     * status too) */
    int (*update)(void *m, uint64_t step, const float *const *grads, int ngrads,
                  struct sw_update *out);
    int (*hash)(void *m, uint8_t out[32]);
    /* floats [off, off + n) of slab which (0 params, 1 AdamW m, 2 v) */
    int (*read)(void *m, int which, size_t off, size_t n, float *host);
    /* the whole state: host [3, numel] (params, m, v) and the scalars */
    int (*write)(void *m, const float *host, const struct sw_stage_scalars *sc);
    void (*scalars)(void *m, struct sw_stage_scalars *sc);
    int (*init)(void *m, uint64_t seed);       /* the run seed's initialisation */
    int (*rebuild)(void *m, struct sw_rebuild *rb);
    size_t (*stage_numel)(void *m, int stage);  /* parameters of another stage */
    /* CheckFree+ replica of kind 0 (embedding) or 1 (final norm, head) */
    size_t (*rep_numel)(void *m, int kind);
    int (*rep_read)(void *m, int kind, float *host);
    /* stage 0: the next microbatch of the data stream; the cursor */
    int (*batch)(void *m, int32_t *tokens, int32_t *targets);
    void (*data_mark)(void *m);                /* remember the cursor */
    void (*data_rewind)(void *m);              /* back to the mark */
    int (*data_seek)(void *m, uint64_t step);  /* the cursor at the start of step */
    double (*compute_s)(void *m);              /* compute time so far */
    void (*cancel)(void *m);                   /* drop the compute in flight */
};

/* What one update did (the caller prints it, saves checkpoints). */
struct sw_step_report {
    uint64_t step;           /* the step just applied (steps completed: step + 1) */
    int stage;
    double loss;             /* last stage: mean over the M microbatches; else -1 */
    float lr;
    double norm;             /* pre-clip */
    char hash[17];
    double tok_s;            /* tokens/s of the whole step (M * N over its time) */
    double step_ms;          /* its time: from the last update (or the GO) to this one */
    double update_ms;        /* the update's own time (its thread's wall clock) */
    double compute_ms;       /* this node's forwards and backwards in that time;
                                -1: not known */
    int nrep, myidx;         /* this node's place among the stage's nodes */
};

/* Restoring from a checkpoint (swarmd join --from-checkpoint). */
enum { SW_RESTORE_BUSY = 0, SW_RESTORE_DONE = 1, SW_RESTORE_NONE = 2 };

struct sw_restore {
    float *host;             /* [3, numel] params, m, v (the caller's) */
    struct sw_stage_scalars sc;
    uint64_t step;           /* the checkpoint's */
    int saved_S;
    char from[256];          /* for logs and the recovery event */
};

struct sw_trainer_env {
    void *arg;
    int (*send)(void *arg, const char *ep, uint32_t type, const void *body, size_t len,
                const struct sw_payload *p);
    int (*request)(void *arg, const char *ep, uint32_t type, const void *body, size_t len,
                   uint64_t timeout_ms, int retries, uint64_t tag);
    int (*reply)(void *arg, const struct sw_transport_route *r, uint32_t type, const void *body,
                 size_t len, const struct sw_payload *p);
    void (*drop)(void *arg, int reason);          /* count a drop (net/wire.h reasons) */
    /* put this node's stage record; sw_trainer_put_done when stored */
    void (*publish)(void *arg, const struct sw_peer_rec *me, uint32_t ttl_s,
                    uint64_t step_age_ms);
    int (*scan)(void *arg);                       /* read the stage keys: sw_trainer_scanned */
    void (*probe)(void *arg, const uint8_t *pk, const char *ep, uint64_t timeout_ms);
    void (*stepped)(void *arg, const struct sw_step_report *r);
    /* --from-checkpoint: newest step (-1 none, -2 still looking; where says
     * where), and the stage's state from it (SW_RESTORE_*, or < 0) */
    int (*ckpt_newest)(void *arg, char *where, size_t len);
    int (*restore)(void *arg, int stage, uint64_t run_step, struct sw_restore *r);
};

struct sw_trainer_opts {
    int stage;               /* -1: auto */
    bool movable;            /* may leave its stage to rebalance (swarmd: --stage auto) */
    int dead_ms, ban_ms;
    int linger_ms;
    bool exit_at_end;
    bool from_ckpt;          /* --from-checkpoint given (env->restore, env->ckpt_newest) */
    uint64_t rng;            /* seed of the stage-auto delay */
};

struct sw_trainer {
    /* what it is */
    uint8_t pk[32];
    char ep[SW_PROTO_EP_MAX];
    const struct sw_manifest *man;
    struct sw_trainer_opts o;
    const struct sw_trainer_env *env;
    const struct sw_stage_ops *ops;
    void *model;             /* the ops' argument */
    int S, M, B, T, C, V;    /* V: visits of a microbatch to a stage, 2 under CheckFree+ */
    size_t N;                /* B * T */
    bool plus;
    enum sw_codec codec;     /* of FWD and BWD payloads ([wire] activations) */
    enum sw_codec gcodec;    /* of GRAD payloads ([wire] gradients) */
    int stage;
    size_t numel;            /* parameters of the stage */

    /* lifecycle */
    int phase;
    uint64_t now, phase_ms;
    int exit_code;
    uint64_t choose_ms;      /* CHOOSE: when the confirmation starts (after the delay) */
    uint64_t behind_ms;      /* TRAINING, idle, behind a finished run since (0: not) */
    uint64_t alone_ms;       /* in the run, idle, behind, alone on its stage since (0: not) */
    uint64_t unstack_ms;     /* stage auto: its stage doubled, another empty, since (0: not) */
    bool trained;            /* was training once (a later copy is a catch-up) */

    /* discovery: the last scan of the stage keys, liveness */
    struct sw_peer_rec dir[SW_PROTO_MAX_NODES];
    int ndir;
    bool dir_ok, scan_busy;
    uint64_t scan_ms, scan_ok_ms, run_step;
    uint64_t pub_ms, pub_step, step_changed_ms;
    int pub_state;
    bool put_done;
    bool *seen_stage;        /* [S] a live node in the run (syncing too) was there once */
    bool *distrusted_stage;  /* [S] the last scan left out a training node of it as distrusted */
    bool *proving_stage;     /* [S] ... an unproven record of it that may still prove itself
                                (sw_live_proving; recover.h, Records being proven) */
    struct sw_live live;
    int nunproven;           /* records of the last scan left out: unproven (live.h, Proof) */
    int nproving;            /* of them, with fewer than SW_LIVE_PROVE_TRIES failed tries */
    uint64_t run_mono;       /* the run's step as corroborated records told (trainer.c) */
    uint64_t scan1_ms;       /* the first scan's end (0: none yet) */
    uint64_t nscan;          /* scans read (sw_trainer_scanned) */

    /* the step, the leader, recovery */
    struct sw_step st;
    struct sw_lead lead;
    struct sw_recover rc;
    struct sw_fetch fetch;

    /* what this node reports */
    uint64_t step;           /* steps completed */
    uint8_t phash[32];       /* parameters after the last update */
    char hash[17];
    double last_loss, last_norm, tps, cap;
    uint64_t tokens_total, mismatches;
    uint64_t drop_banned, drop_unknown, drop_shape;
    uint64_t recoveries;
    char rec_method[16], rec_from[2 * SW_PROTO_EP_MAX + 8];
    uint64_t rec_bytes;
    double rec_s;

    /* rebalancing (manifest [balance]; --stage auto nodes only) */
    int move_to;             /* the stage it leaves for once out of the plan (-1: none) */
    bool move_refused;       /* it answered the leader's PREPARE "not ready" since */
    bool move_wait;          /* moved: SYNC copies once the leader prepares the next step */
    int moved_from;          /* moved from this stage, not yet in the run on the new one (-1):
                                with nobody left to copy, it rebuilds the new one */
    uint64_t stage_ms;       /* when this stage was set up (the cool-down) */
    uint64_t period_kept_ms; /* the step period measured on the stage served before a
                              * move (the step state starts afresh): the run's pace */
    uint64_t imb_ms;         /* since when a move of this node would help (0: not) */
    uint64_t moves;
    double balance;          /* the swarm's, as last computed here (-1: unknown) */

    /* the snapshot a keeper asked for (STATE_GET with snap) */
    uint64_t snap_want;      /* take it when step reaches this (0: none) */
    bool snap_have;
    uint64_t snap_step;
    struct sw_stage_scalars snap_sc;
    float *snap_buf;         /* host [3, numel] */

    /* CheckFree+: the replica kept for the boundary stage (stage 1: the
     * embedding, S-2: final norm + head), pushed after each update */
    float *rep_buf;          /* host [rep_numel] */
    size_t rep_numel;
    uint64_t rep_step;
    bool rep_have;
    /* the push being received, in pieces: rep_buf keeps the last whole one */
    float *rep_in;           /* host [rep_numel] */
    uint8_t *rep_got;        /* [pieces]: piece i is in rep_in */
    uint32_t rep_ngot;
    uint64_t rep_in_step;
    bool rep_in_on;

    struct sw_body body;     /* messages being built */
};

/*
 * Sets up t for pk serving at ep under man (S, M, ... from it), starting in
 * SCAN at now.  The stage and its ops are given later (sw_trainer_set_stage,
 * once CHOOSE or the --stage option decided it: tick returns with phase SYNC
 * and t->stage chosen but t->ops NULL until the caller set the stage up).
 */
int sw_trainer_init(struct sw_trainer *t, const uint8_t pk[32], const char *ep,
                    const struct sw_manifest *man, const struct sw_trainer_opts *o,
                    const struct sw_trainer_env *env, uint64_t now) SW_WARN_UNUSED;
void sw_trainer_release(struct sw_trainer *t);
/* The stage's math is ready (numel parameters): SYNC starts. */
int sw_trainer_set_stage(struct sw_trainer *t, const struct sw_stage_ops *ops, void *model,
                         size_t numel) SW_WARN_UNUSED;
/* True when the stage is chosen and waits for sw_trainer_set_stage. */
bool sw_trainer_wants_stage(const struct sw_trainer *t);

void sw_trainer_input(struct sw_trainer *t, uint64_t now, const struct sw_transport_msg *m);
void sw_trainer_response(struct sw_trainer *t, uint64_t now, uint64_t tag, int status,
                         const struct sw_transport_msg *m);
void sw_trainer_scanned(struct sw_trainer *t, uint64_t now, int status,
                        const struct sw_peer_rec *recs, int n, const uint8_t (*gone)[32],
                        int ngone, uint64_t max_step);
void sw_trainer_probed(struct sw_trainer *t, const uint8_t *pk, bool refused);
/* ...and it connected: a process listens there (live.h, Busy nodes). */
void sw_trainer_probe_connected(struct sw_trainer *t, const uint8_t *pk, uint64_t now);
void sw_trainer_put_done(struct sw_trainer *t);
/* The forward, backward or init that returned SW_COMPUTE_PENDING is done:
 * its status (0 or a negative SW_E* code) and, a forward's, loss. */
void sw_trainer_computed(struct sw_trainer *t, uint64_t now, int err, float loss);
/* Time-driven work; returns when to call again (absolute, ms). */
uint64_t sw_trainer_tick(struct sw_trainer *t, uint64_t now);
/* A signal: finish the step and leave (a second one: leave now). */
void sw_trainer_stop(struct sw_trainer *t, uint64_t now);
/* The record this node publishes. */
void sw_trainer_self_rec(const struct sw_trainer *t, struct sw_peer_rec *r);
/*
 * The run's pace as the records tell it: the fastest stage's tokens a
 * second, summed over its records that hold a state (0: none tells).  The
 * nodes of a stage share a step's M x N tokens, so a step takes M N / this;
 * the fastest stage is taken because a record that lingers after its node
 * died only adds to its stage, and throughputs are claims (callers bound
 * what they derive from it).
 */
double sw_trainer_records_tps(const struct sw_trainer *t);
/* This node is reached at ep from now on (an outbound-only node's "key:"
 * endpoint, reach.h); its record goes out again at once. */
void sw_trainer_set_ep(struct sw_trainer *t, const char *ep);

/* ---- inside the core (trainer.c, used by the modules) ---- */

/* SYNC, COPY, REBUILD or RESTORE: the stage's state is not there yet. */
static inline bool
trainer_syncing(const struct sw_trainer *t)
{
    return t->phase >= SW_PHASE_SYNC && t->phase <= SW_PHASE_RESTORE;
}

/* JOINING or TRAINING: the node takes part in the run's steps. */
static inline bool
trainer_in_run(const struct sw_trainer *t)
{
    return t->phase == SW_PHASE_JOINING || t->phase == SW_PHASE_TRAINING;
}

void trainer_set_phase(struct sw_trainer *t, int phase);
/* A failure of this node (compute, memory): it leaves the run. */
void trainer_fail(struct sw_trainer *t, int err, const char *what);
/* The run cannot go on: every node stops with SW_EXIT_LOST. */
void trainer_lost(struct sw_trainer *t);
int trainer_send(struct sw_trainer *t, const char *ep, uint32_t type, const void *payload,
                 size_t plen);
int trainer_reply(struct sw_trainer *t, const struct sw_transport_route *r, uint32_t type,
                  const struct sw_payload *p);
int trainer_request(struct sw_trainer *t, const char *ep, uint32_t type, uint64_t timeout_ms,
                    int retries, uint64_t tag);
void trainer_announce(struct sw_trainer *t);
void trainer_scan_soon(struct sw_trainer *t, uint64_t every);
/* Opens m's body (keys allowed): false when malformed (counted, sender banned). */
bool trainer_open(struct sw_trainer *t, const struct sw_transport_msg *m, msgpack_unpacked *u,
                  const char *const *keys);
/* A message no honest node sends: counted under reason, its sender banned. */
void trainer_reject(struct sw_trainer *t, const struct sw_transport_msg *m, msgpack_unpacked *u,
                    int reason, const char *what);
bool trainer_refuse_banned(struct sw_trainer *t, const struct sw_transport_msg *m);
bool trainer_refuse_unknown(struct sw_trainer *t, const struct sw_transport_msg *m);
const struct sw_peer_rec *trainer_dir_find(const struct sw_trainer *t, const uint8_t *pk);
/* The stage the record of the leader this node's table names says its step
 * waits for (lead.h, need), or -1; with trusted, only from a record whose
 * node proved its endpoint (sw_live_trusted). */
int trainer_lead_need(struct sw_trainer *t, bool trusted);
bool trainer_gone(struct sw_trainer *t, const uint8_t *pk);
/* The parameter hash after an update or a state change. */
void trainer_hash(struct sw_trainer *t);

#endif
