/*
 * live.h - who is alive: the liveness table and the bans of one process,
 * a protocol core without I/O (in the manner of net/dht.h).
 *
 * The caller feeds it the stage records of each DHT scan (sw_live_scan),
 * the answers to its pings (sw_live_pong) and the outcomes of port probes
 * (sw_live_probed), always with the time; the core asks for pings and
 * probes through the ops it was given, and says through ops->dead when it
 * declares a node dead.  It never reads a clock and never blocks.
 *
 * A node is dead (swarmd(1), "Failures")
 *   - after dead_ms without a new version of its stage record (records are
 *     refreshed every pub_every ms; a record seen for the first time is
 *     judged by its age, so a killed node's record is not trusted anew);
 *   - after two unanswered pings (ping timeout dead_ms / 3);
 *   - at once when its port probe is refused: a node whose record is late
 *     (no new version for pub_every) or that missed a ping gets a TCP
 *     connect to its endpoint, which the kernel accepts however busy the
 *     process is, so a refusal means the process is gone (a timeout or a
 *     success proves nothing);
 *   - "left" at once when its record says "leaving".
 * A new version of the record of a dead node makes it alive again.
 *
 * Busy nodes.  A node's loop does nothing else while its trainer runs: an
 * update, a big message, a stage set up (swarmd's forwards and backwards
 * run on a compute thread, peers/compute.h; a loop that computes them
 * itself is held for seconds).  It answers no ping and publishes no
 * record meanwhile.  Its record says how long that lasted
 * lately ("blk", ms: the longest the trainer held the loop in the last 30
 * to 60 s, at most SW_STATUS_BLK_MAX_MS), and every deadline above grows
 * by it for that node: its pings wait dead_ms / 3 + blk, its record may be
 * dead_ms + blk old (pub_every + blk before a probe).  So a node of a big
 * model on a slow machine is not declared dead while it computes, and a
 * fast node's death is still found within dead_ms.  A block longer than
 * any the record said yet (the first steps: nothing measured) is covered
 * by the port probe that a missed ping or a late record starts: while the
 * node's port connects (a process listens there; swarmd's probes only,
 * within the last SW_LIVE_BUSY_MS), it may stay silent SW_LIVE_BUSY_MS longer, and
 * each further missed ping probes again; a hung process is dead after
 * dead_ms + blk + SW_LIVE_BUSY_MS of silence.  A node that claims a long
 * blk only delays its own death (by SW_STATUS_BLK_MAX_MS at most), and a
 * refused port probe still declares it dead at once.  Dead
 * and left nodes are "gone": the leader plans without them and no state is
 * copied from them.
 *
 * Deaths in the log.  Each death is an event ("declared_dead"), and a
 * new version of a dead node's record brings it back ("alive again").  A
 * key can do both every record refresh (a record whose port refuses each
 * probe), at every node; so a key declared dead again within
 * SW_LIVE_DEAD_LOG_MS of its last logged death is logged at debug level
 * only, counted in deaths_quiet, and so is its return.  ops->dead is
 * called every time.
 *
 * Bans.  A peer that sent what no honest node sends (a malformed body, a
 * tensor of the wrong shape or non-finite) is ignored for ban_ms; the table
 * of bans is bounded (the oldest ban makes room).
 *
 * Proof.  A stage record is a claim anyone can publish (an open run admits
 * any key): a record counts only once its node proved that it serves the
 * endpoint the record names, by answering a PING sent there with a reply
 * signed by the record's key (sw_live_pong: the verified sender is the
 * key).  Until then the record is "unproven": the trainer keeps it out of
 * its table (no planning, stage choice, copy, rebuild source, capacity or
 * leadership counts it) and swarmctl status lists it as such.
 * sw_live_prove pings the unproven records of a scan, at most
 * SW_LIVE_PROVE_MAX at a time, each again only after a back-off that
 * doubles with every failed try (dead_ms / 3 first, at most
 * SW_LIVE_PROVE_BACKOFF_MS): a flood of records with dead endpoints costs
 * a few pings a second, whatever their number.  A node choosing its stage
 * waits (at most dead_ms and a scan) for every record to be proven or to
 * fail SW_LIVE_PROVE_TRIES tries: with one try, a PING lost on the way
 * left a live node's record out of the choice, and the newcomer took its
 * stage for empty, rebuilt it beside that node or gave the run up as lost
 * (sim --harsh, 1% loss: 9 of seeds 0-999).  A failed proof never
 * declares a node dead (it was never counted); an unproven node whose
 * record no scan listed for dead_ms is forgotten.  A proof holds for the
 * endpoint proved: a record naming another one is unproven again, and its
 * back-off starts over (an unreachable node's record names its direct
 * endpoint first, then its "key:" one: net/transport.h, Routes by key;
 * such a proof's PING travels over the connection the node opened).
 *
 * Attestations.  What nodes said their parameters' hash was at a step
 * (their stage records, READY answers, the leader's GO), kept in a ring of
 * SW_LIVE_ATTEST: a copied state is taken only when someone other than its
 * source attests its hash at its step (recover.h).
 *
 * Tags.  Each ping carries a tag naming the table slot and the slot's
 * generation (bumped when the slot is given to another node), so an answer
 * that comes after its slot was reused is stale and dropped: callbacks
 * never hold pointers into the table.
 */
#ifndef SW_LIVE_H
#define SW_LIVE_H

#include "sw.h"

#include "proto.h"
#include "status.h"

#define SW_LIVE_DEAD_LOG_MS 60000 /* a key's deaths logged as events: one a minute */
#define SW_LIVE_MAX (2 * SW_PROTO_MAX_NODES) /* nodes followed */
#define SW_LIVE_DEAD_MS 3000    /* default dead_ms (swarmd --dead-ms) */
#define SW_LIVE_PUBLISH_MS 3000 /* records are refreshed this often at most... */

/* ...and every dead_ms / 3 when that is less. */
static inline int
sw_live_pub_every(int dead_ms)
{
    return SW_MIN(SW_LIVE_PUBLISH_MS, dead_ms / 3);
}
#define SW_LIVE_MAX_BANS 64
#define SW_LIVE_PROVE_MAX 8              /* proof pings in flight at most */
#define SW_LIVE_PROVE_BACKOFF_MS 60000   /* longest wait between two tries of one record */
#define SW_LIVE_PROVE_TRIES 2            /* a record is waited for until this many proofs failed */
#define SW_LIVE_ATTEST 256               /* attestations kept */
#define SW_LIVE_BUSY_MS 10000            /* a node whose port connects: silent this much longer */

struct sw_live_attest {
    uint8_t pk[32];          /* who said so */
    int stage;
    uint64_t step;
    char hash[17];           /* 16 hex digits, as records carry it */
};

struct sw_live_peer {
    uint8_t pk[32];
    char ep[SW_PROTO_EP_MAX];  /* where it was last pinged or probed */
    bool used, dead, left;
    bool ping_busy, probe_busy;
    int stage, ping_fails;
    uint32_t gen;              /* this slot's generation (see Tags) */
    uint64_t seq, seq_ms;      /* record version, and when it changed here */
    uint64_t seen_ms;          /* last scan that listed it */
    uint64_t ping_ms, probe_ms;
    uint64_t alive_ms;         /* last sign of life seen here (new version, pong); 0: none yet */
    bool proven;               /* answered a PING at pep, signed with its key (see Proof) */
    bool proving;              /* the ping in flight is a proof's */
    char pep[SW_PROTO_EP_MAX]; /* the endpoint proved */
    int prove_fails;           /* failed tries since the last proof */
    uint32_t blk_ms;           /* its record's "blk" (see Busy nodes) */
    uint64_t conn_ms;          /* a probe of its port connected then (0: never) */
    uint64_t prove_next_ms;    /* no new try before */
    uint64_t dead_log_ms;      /* its last death logged as an event (0: none) */
};

struct sw_live_ops {
    /* pk was declared dead (why says how); the caller drops it from its table */
    void (*dead)(void *arg, const uint8_t *pk, int stage, const char *why);
    /* connect to ep within timeout_ms; answer with sw_live_probed */
    void (*probe)(void *arg, const uint8_t *pk, const char *ep, uint64_t timeout_ms);
    /* a PING request to ep with that timeout and tag; answer with sw_live_pong */
    int (*ping)(void *arg, const char *ep, uint64_t timeout_ms, uint64_t tag);
};

struct sw_live {
    uint8_t self[32];
    int dead_ms, pub_every, ban_ms;
    struct sw_live_peer peer[SW_LIVE_MAX];
    struct {
        uint8_t pk[32];
        uint64_t until_ms;
    } ban[SW_LIVE_MAX_BANS];
    uint64_t deaths, bans_total;
    uint64_t deaths_quiet;         /* deaths logged at debug level (see Deaths in the log) */
    uint64_t now_ms;               /* the last time a call gave (a death's time) */
    uint64_t proofs, proof_fails;  /* proofs made, tries that failed */
    int prove_at;                  /* where the next round of tries starts (no record starves) */
    struct sw_live_attest att[SW_LIVE_ATTEST];
    int natt, att_at;
    const struct sw_live_ops *ops;
    void *arg;
};

void sw_live_init(struct sw_live *lv, const uint8_t self[32], int dead_ms, int pub_every,
                  int ban_ms, const struct sw_live_ops *ops, void *arg);

struct sw_live_peer *sw_live_find(struct sw_live *lv, const uint8_t *pk);
/* The entry of pk, made when new (the least recently listed idle one is
 * reused when the table is full); NULL when every slot is busy. */
struct sw_live_peer *sw_live_get(struct sw_live *lv, const uint8_t *pk);

/*
 * A scan's records (recs[n], gone[ngone]: keys whose record says leaving):
 * judges every node as above, then copies the records of the nodes that
 * are neither gone nor banned (this node's own always) into out (room for
 * n); returns how many.  probe_every: at most one probe per node this often.
 */
int sw_live_scan(struct sw_live *lv, uint64_t now, const struct sw_peer_rec *recs, int n,
                 const uint8_t (*gone)[32], int ngone, uint64_t probe_every,
                 struct sw_peer_rec *out);

/* Ping pk at ep (of stage) unless a ping is in flight or one went out less
 * than every ms ago. */
void sw_live_ping(struct sw_live *lv, uint64_t now, const uint8_t *pk, const char *ep, int stage,
                  uint64_t every);
/* The answer to a ping (status 0: from; < 0: timed out or failed). */
void sw_live_pong(struct sw_live *lv, uint64_t now, uint64_t tag, int status,
                  const uint8_t *from);
/* Probe pk at ep now unless one is under way. */
void sw_live_probe(struct sw_live *lv, uint64_t now, struct sw_live_peer *p, const char *ep);
/* A probe's outcome: refused means the process is gone. */
void sw_live_probed(struct sw_live *lv, const uint8_t *pk, bool refused);
/* The probe connected at now: a process listens at pk's endpoint (see Busy nodes). */
void sw_live_connected(struct sw_live *lv, const uint8_t *pk, uint64_t now);

void sw_live_declare_dead(struct sw_live *lv, struct sw_live_peer *p, const char *why);

bool sw_live_banned(const struct sw_live *lv, const uint8_t *pk, uint64_t now);
void sw_live_ban(struct sw_live *lv, const uint8_t *pk, uint64_t now, const char *why);
/* Dead, left or banned (never this node itself). */
bool sw_live_gone(struct sw_live *lv, const uint8_t *pk, uint64_t now);
/* Proved (see Proof), and not gone (what --stage auto counts). */
bool sw_live_trusted(struct sw_live *lv, const uint8_t *pk);

/* pk proved it serves ep (this node itself always has). */
bool sw_live_proven(struct sw_live *lv, const uint8_t *pk, const char *ep);
/* pk's record is unproven, and its node neither gone nor failed
 * SW_LIVE_PROVE_TRIES proofs yet: it may still prove it (see Proof). */
bool sw_live_proving(struct sw_live *lv, const uint8_t *pk, const char *ep, uint64_t now);
/*
 * Tries to prove the unproven records of recs[n] (not gone, not this
 * node's), within the bounds of Proof; returns how many are unproven and
 * failed fewer than SW_LIVE_PROVE_TRIES tries (what a node choosing its
 * stage waits for: one lost PING must not make a live stage look empty).
 */
int sw_live_prove(struct sw_live *lv, uint64_t now, const struct sw_peer_rec *recs, int n);

/* pk said the parameters of stage were hash (16 hex digits) after step steps. */
void sw_live_attest(struct sw_live *lv, const uint8_t *pk, int stage, uint64_t step,
                    const char *hash);
/* Someone other than src (NULL: anyone) said so. */
bool sw_live_attested(const struct sw_live *lv, const uint8_t *src, int stage, uint64_t step,
                      const char *hash);
/* Someone other than src said stage had another hash at step. */
bool sw_live_contradicted(const struct sw_live *lv, const uint8_t *src, int stage, uint64_t step,
                          const char *hash);

#endif
