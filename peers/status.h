/*
 * status.h - stage records (what a node publishes in the DHT), the scan
 * that reads a run's membership back from the DHT, and the run summary that
 * swarmctl status prints.
 *
 * Discovery.  A node publishes one signed DHT record (net/dht.h) under the
 * key H(run, "stage", k) = BLAKE2b-256(run id || "stage" || le32(k)) of its
 * stage k; the DHT keeps one record per publisher (subkeys), so a get of
 * that key lists the stage's nodes.  The record's value is a msgpack map
 * (swarm-protocol(7), PEER MESSAGES, STAGE RECORDS):
 *   ver uint (1), ep str (run endpoint), stage uint, state uint (0 syncing,
 *   1 training, 2 leaving, 3 done, 4 joining), step uint (steps completed), step_age
 *   uint (ms since step last changed, at publication), ttl uint (the ttl it
 *   was published with, s), tps float (tokens/s through the node), cap float
 *   (tokens/s of compute time), loss float (last stage; -1: none), norm
 *   float (pre-clip gradient norm), hash str (16 hex digits of the
 *   parameters' BLAKE2b-256), rec uint (recoveries)
 * and, once the node has recovered its stage, its last recovery event (all
 * four keys or none; records without them still parse):
 *   rec_method str (< SW_STATUS_REC_METHOD_MAX: checkfree, checkfree+,
 *   copy, checkpoint), rec_from str (the sources, comma-separated endpoints
 *   or a checkpoint's name, < SW_STATUS_REC_FROM_MAX), rec_bytes uint
 *   (bytes received), rec_ms uint (duration)
 * and, while the node is about to leave its stage for another (rebalancing,
 * trainer.h): mv uint (that stage)
 * and, once the node's reachability check at join ended (reach.h): rch
 * uint (0 unknown, 1 reachable, 2 unreachable; absent: not checked yet, or
 * a node older than the check)
 * and, when the node has one: cert bin (its membership certificate, admit.h,
 * at most SW_STATUS_CERT_MAX bytes), so that a reader who got the record
 * from a third node can check that its publisher is admitted.
 * Strings are printable ASCII without spaces, as sw_proto_str() checks;
 * sw_status_rec_set_recovery() cuts and cleans what a node fills in, so
 * that its own record always reads back.  Unknown keys are refused.
 * The publisher's key is the record's signer (no clock sync: the age of a
 * record is its published ttl minus the ttl the DHT has left).
 */
#ifndef SW_STATUS_H
#define SW_STATUS_H

#include "sw.h"

#include <msgpack.h>
#include <stdio.h>

#include "dhtnode.h"
#include "proto.h"

#define SW_STATUS_REC_METHOD_MAX 16 /* buffer, NUL included */
#define SW_STATUS_REC_FROM_MAX 128  /* buffer, NUL included */
#define SW_STATUS_CERT_MAX 1024     /* a record's "cert" (SW_CERT_MAX) */

struct sw_peer_rec {
    uint8_t pk[32];
    char ep[SW_PROTO_EP_MAX];
    int stage, state;
    uint64_t step, recoveries;
    double tps, cap, loss, norm;
    char hash[17];
    /* the last recovery: rec_method[0] == '\0' when the node never recovered */
    char rec_method[SW_STATUS_REC_METHOD_MAX];
    char rec_from[SW_STATUS_REC_FROM_MAX];
    uint64_t rec_bytes, rec_ms;
    int moving;         /* 1 + the stage it leaves for once out of the plan (0: none; "mv") */
    int need;           /* the leader: 1 + a stage none of whose nodes answered its PREPARE
                           ready, so that the run waits for it (0: none; "nd") */
    int reach;          /* 1 + its reachability verdict (reach.h; "rch"), 0: not said */
    bool relay;         /* it relays for outbound-only nodes ("rly": 1; absent: no) */
    uint32_t blk_ms;    /* the longest its loop was held lately, ms ("blk"; absent: 0;
                           live.h, Busy nodes) */
    uint64_t seq;       /* the DHT record's version (grows with every publication) */
    uint64_t heard_ms;  /* local clock: when it was published */
    uint64_t step_ms;   /* local clock: when its step last changed */
    /* its certificate ("cert"; cert_len 0: none): packed from the caller's
     * bytes; on unpack a slice of the record's bytes, valid only as long as
     * they are (a scan clears it) */
    const uint8_t *cert;
    size_t cert_len;
    /* local: its node has not proved it serves ep (a PING there answered
     * with its key: swarm-protocol(7), STAGE RECORDS); not counted */
    bool unproven;
};

#define SW_STATUS_REC_VERSION 1
#define SW_STATUS_BLK_WINDOW_MS 30000 /* "blk": the longest block of the last 30 to 60 s */
#define SW_STATUS_BLK_MAX_MS 30000    /* ... at most this (larger values are refused) */

/* The DHT key of stage k of a run. */
void sw_status_stage_key(uint8_t key[32], const uint8_t run[32], int stage);
/* Packs r's value as published with ttl_s; step_age_ms: since r->step changed. */
void sw_status_rec_pack(msgpack_packer *pk, const struct sw_peer_rec *r, uint32_t ttl_s,
                        uint64_t step_age_ms);
/* Reads a record's value (msgpack map above) into r; r->pk is left alone. */
int sw_status_rec_unpack(const msgpack_object *o, struct sw_peer_rec *r, int S, uint32_t ttl_left_s,
                         uint64_t now) SW_WARN_UNUSED;
/* A DHT record found under the key of stage: checked and read into r (pk = publisher). */
int sw_status_rec_from_dht(const struct sw_dht_record *d, int stage, int S, uint64_t now,
                           struct sw_peer_rec *r) SW_WARN_UNUSED;
const char *sw_status_state_name(int state);
/*
 * Sets r's last recovery (method NULL or "": none): method and from are cut
 * to fit and any character sw_proto_str() refuses becomes '_' (an empty
 * from becomes "-"), so that the record packs into one that unpacks.
 */
void sw_status_rec_set_recovery(struct sw_peer_rec *r, const char *method, const char *from,
                                uint64_t bytes, double seconds);

/*
 * A scan: one DHT get per stage key, run in parallel; when all are done, cb
 * gets the records of every node not leaving (one per publisher, sorted by
 * stage then key), the highest step seen in any record (leaving ones
 * included), and status 0 (the keys of the leaving ones are in sc->gone[],
 * sc->ngone of them, until the next scan starts), or the first get's error (-SW_ECANCELED when the
 * DHT node was closed).  Records that fail to decode are dropped and
 * counted in bad.  When admit is set (owner mode, node.c), a record it
 * refuses is dropped too, counted in unadmitted: its step counts nowhere,
 * its node is in no table, and its key is in gone[] as a leaving node's (a
 * node revoked mid-run has left the run).  answered[s] tells whether stage
 * s's get ended with status 0 (it heard some node) in this scan.  The caller owns the struct; one scan
 * at a time.
 *
 * sw_status_scan_cut ends a pending scan at once (a reader's deadline): cb
 * gets what the gets that already ended brought, with status -SW_ETIMEDOUT
 * when some stage's get had not ended (answered[] tells which); the gets
 * still running are abandoned (their results are dropped when they end)
 * and the next scan may only start once they have (-SW_EAGAIN until then).
 */
typedef void sw_status_scan_cb(void *arg, int status, const struct sw_peer_rec *recs, int n,
                               uint64_t max_step);

struct sw_status_scan_slot {
    struct sw_status_scan *sc;
    int stage;
};

struct sw_status_scan {
    struct sw_dhtnode *dht;
    int S;
    uint8_t (*keys)[32];                   /* [S] */
    struct sw_status_scan_slot *slots;     /* [S] */
    bool *answered;                        /* [S] */
    struct sw_peer_rec recs[SW_PROTO_MAX_NODES];
    uint8_t gone[SW_PROTO_MAX_NODES][32];   /* keys whose record says "leaving" */
    int n, ngone, left, status;
    uint64_t max_step, bad, unadmitted;
    bool pending, cut;
    /* NULL: every record; else the ones it admits (r->cert set while called) */
    bool (*admit)(void *arg, const struct sw_peer_rec *r);
    void *admit_arg;
    sw_status_scan_cb *cb;
    void *arg;
};

int sw_status_scan_init(struct sw_status_scan *sc, struct sw_dhtnode *dht, const uint8_t run[32],
                        int S) SW_WARN_UNUSED;
void sw_status_scan_release(struct sw_status_scan *sc);
/* -SW_EAGAIN while a scan is pending, or the DHT's error at start. */
int sw_status_scan_start(struct sw_status_scan *sc, sw_status_scan_cb *cb, void *arg)
    SW_WARN_UNUSED;
/* Ends the pending scan now (above); nothing when none is pending. */
void sw_status_scan_cut(struct sw_status_scan *sc);

/*
 * The end record: a run's end, kept after its nodes left.  Once a scan saw
 * the run's last step done (a record whose step is the manifest's steps),
 * the bootstrap, which outlives the nodes, publishes under the key
 * H(run, "end") = BLAKE2b-256(run id || "end") one signed record whose value
 * is the msgpack map (swarm-protocol(7), End record)
 *   ver uint (1), step uint (steps completed), loss float (the last stage's
 *   last loss the bootstrap saw; -1: none)
 *   [cert bin (the publisher's membership certificate, SW_STATUS_CERT_MAX
 *   bytes at most; absent when the bootstrap holds the owner's key)]
 * with a ttl of SW_STATUS_END_TTL_S, put again every SW_STATUS_END_EVERY_MS
 * while it runs.  swarmctl status reads it with the stage keys: a run whose
 * nodes are gone still shows "finished at step N".  Readers trust it as much
 * as a stage record: a record of step N says N steps are done, and in an
 * owner-mode run only a record whose publisher is admitted (the owner, or a
 * key whose cert is valid, admit.h) counts at all.
 */
#define SW_STATUS_END_TTL_S 3600
#define SW_STATUS_END_EVERY_MS (600 * 1000)

struct sw_run_end {
    uint64_t step;
    double loss; /* < 0: none */
    const uint8_t *cert; /* the publisher's certificate (NULL: none); read: points into the */
    size_t cert_len;     /* DHT record it came from */
};

void sw_status_end_key(uint8_t key[32], const uint8_t run[32]);
void sw_status_end_pack(msgpack_packer *pk, const struct sw_run_end *e);
/* A DHT record found under the end key, checked and read into e. */
int sw_status_end_from_dht(const struct sw_dht_record *d, struct sw_run_end *e) SW_WARN_UNUSED;
/* Packs, signs with sk (seq: the record's version, growing) and puts e, with
 * its cert when cert_len > 0, into the DHT. */
int sw_status_end_publish(struct sw_dhtnode *dht, const uint8_t run[32], const uint8_t *sk,
                          const struct sw_run_end *e, uint64_t seq) SW_WARN_UNUSED;

struct sw_stage_summary {
    int nodes;              /* proven records only */
    int unproven;           /* records whose node did not prove its endpoint: not counted */
    uint64_t step;          /* highest step among the stage's nodes */
    double loss;            /* last stage; < 0 none */
    double tps, cap;        /* sums over the nodes */
    double last_heard_s;    /* freshest record's age; < 0 no node */
    uint64_t recoveries;
    bool bottleneck;        /* lowest capacity among non-empty stages */
    const char *state;      /* "ok", "empty", "stalled", "syncing", "done", "unknown" */
};

enum sw_health { SW_HEALTH_OK = 0, SW_HEALTH_DEGRADED = 1, SW_HEALTH_UNREACHABLE = 2 };

#define SW_STATUS_STALL_MS 30000
/*
 * A record older than this (as far as its rounded ttl tells) is a dead
 * node's: swarmd refreshes its record every second by default and at
 * least every 3 s (swarmd(1), --dead-ms), and ages come in whole seconds,
 * so a live record reads at most 4 s old.  The summary leaves older records
 * out, so that a stage whose nodes were killed shows empty before their
 * records expire.
 */
#define SW_STATUS_STALE_MS 4500

/*
 * Fill sum[S] from the records; returns the health (finished runs are OK).
 * Unproven records (r->unproven) count in sum[].unproven only: not in the
 * nodes, step, loss, throughput, capacity or health.
 * answered NULL: every stage's get answered; else a stage whose get did not
 * (no answer before the reader's deadline) and that has no record is
 * "unknown", and makes the run degraded unless it is finished.
 */
int sw_status_summarize(const struct sw_peer_rec *recs, int n, int S, uint64_t run_step,
                        int steps, uint64_t now, const bool *answered,
                        struct sw_stage_summary *sum);

#endif
