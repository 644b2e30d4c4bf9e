/*
 * reach.h - the reachability verdict at join (issue 14, item 1;
 * swarm-protocol(7), REACHABILITY; swarmd(1), REACHABILITY).
 *
 * A node that joins asks a peer that others can reach (the bootstrap first,
 * then the peer it was given, then DHT contacts) to dial its advertised
 * run endpoint back.  Four message types on the run transport:
 *
 *   REACH_ASK   request {ep: str}: "dial me back at ep"
 *   REACH       its answer {res: uint, seen: str}, over the asker's own
 *               connection (a ROUTER reply): res is enum sw_reach_res, seen
 *               the address the reflector saw the ASK come from ("-": none),
 *               so a node behind NAT learns its public address
 *   REACH_PROBE request {nonce: bin 16}, from the reflector to ep over a
 *               connection of its own
 *   REACH_ECHO  its answer {nonce: bin 16}, the same 16 bytes
 *
 * The reflector (struct sw_reach_srv, every swarmd process) cannot be
 * turned against a third party:
 *   - it dials only an endpoint whose host is the address the ASK came
 *     from (ZeroMQ's Peer-Address of the asker's connection; res HOST
 *     otherwise, nothing dialled), a numeric tcp endpoint (res BADEP);
 *   - ASKs are rate-limited per key, SW_REACH_ASK_RATE a second with a
 *     bucket of SW_REACH_ASK_BURST (net/transport.h "Rate limits": a
 *     dropped ASK gets no answer, counted in the ratelimit metrics), and at
 *     most SW_REACH_MAX_PENDING dial-backs are in flight (res BUSY);
 *   - the dial-back carries a fresh random nonce, and counts (res OK) only
 *     when the ECHO is signed by the key that asked and carries the nonce:
 *     whatever else answers at ep (another node, a replayed echo) gives res
 *     KEY.  So no third party can make a node "reachable".
 * A dial-back gets SW_REACH_DIAL_TRIES tries of SW_REACH_DIAL_MS (room for
 * a TCP connect that loses its first SYN plus the ZeroMQ handshake and one
 * request at a 200 ms round trip); the asker waits SW_REACH_ASK_MS for the
 * answer.  Malformed bodies are dropped and counted (SW_WIRE_DROP_MALFORMED,
 * sw_reach_srv.malformed), never answered.
 *
 * The check (struct sw_reach_check, the joining node) asks one peer at a
 * time: res OK is the verdict "reachable"; TIMEOUT, HOST or KEY
 * "unreachable"; BUSY, NOADDR, BADEP or no answer in time: the next peer;
 * none left: "unknown", and the node carries on.  It logs exactly one line
 * (sw_reach_check_log): "reachable at EP", "not reachable from the internet
 * at EP (WHY); ..." with what the user can do, or "reachability unknown at
 * EP (...)".
 *
 * Outbound-only mode (struct sw_outbound; issue 14, item 2;
 * swarm-protocol(7), OUTBOUND-ONLY NODES).  A node found unreachable
 * serves anyway: its stage record's ep becomes "key:" and its key's 64 hex
 * digits (net/transport.h, Routes by key), and it keeps a connection open
 * to every node whose stage record it read in the last scan (its
 * neighbours, its replicas and the leader among them) by sending each a
 * PING every SW_OUTBOUND_KEEPALIVE_MS: the far ROUTER learns the
 * connection of the node's key from it, and everything addressed to the
 * key (requests, one-way messages, the PINGs that prove its record) travels
 * back over it.  The DHT is used as a client only (its contact carries no
 * endpoint: nobody routes lookups through it).
 *
 * Relays (issue 14, item 3; swarm-protocol(7), RELAYS).  Two outbound-only
 * nodes cannot dial each other, so each names a relay in its record: its
 * endpoint becomes "key:<hex>@<relay>" (net/transport.h, Relays), and a
 * node with the key's own connection still goes straight over it; only a
 * node without one (another outbound-only node) goes through the relay.
 * The candidates are the bootstrap and the nodes whose record says they
 * relay ("rly", swarmd --relay, on by default, published by reachable
 * nodes only); every candidate gets the keepalives, and the node takes the
 * one with the smallest smoothed keepalive round trip that no check failed
 * in the last SW_OUTBOUND_BAD_MS (when every candidate failed one lately,
 * the best of them is tried again).  It proves the relay before naming it: a
 * PING to itself through it ("key:<self>@<relay>", which the relay passes
 * back over the node's own connection) must be answered, and is sent again
 * every SW_OUTBOUND_CHECK_MS; SW_OUTBOUND_CHECK_FAILS unanswered in a row
 * (the relay died, stopped relaying, or cannot keep up) and the next
 * candidate is tried, the record falling back to "key:<hex>" meanwhile, so
 * that a relay that dies is replaced while the run goes on.  A record with
 * a bare "key:" endpoint (a node whose relay is not proved yet) cannot be
 * reached from another outbound-only node: logged once per key.
 *
 * Ownership: the caller owns the structs; they must outlive the transport
 * (its close cancels the requests, whose callbacks still use them).
 * Threading: the transport's loop thread.
 */
#ifndef SW_REACH_H
#define SW_REACH_H

#include "sw.h"

#include "proto.h"
#include "status.h"
#include "transport.h"

#define SW_REACH_NONCE 16
#define SW_REACH_DIAL_MS 2500      /* one try of the dial-back */
#define SW_REACH_DIAL_TRIES 2
#define SW_REACH_ASK_MS 9000       /* the asker's wait for REACH (> the dial-back's tries) */
#define SW_REACH_MAX_PENDING 32    /* dial-backs in flight at one reflector */
#define SW_REACH_ASK_RATE (3.0 / 60.0) /* ASKs per second and key... */
#define SW_REACH_ASK_BURST 3           /* ...at most 3 at once, then one every 20 s */
#define SW_REACH_ASK_GLOBAL_RATE 2.0   /* all keys together */
#define SW_REACH_ASK_GLOBAL_BURST 64
#define SW_REACH_PROBE_RATE 2.0    /* PROBEs answered per second and key */
#define SW_REACH_PROBE_BURST 10
#define SW_REACH_PEERS 4           /* peers asked at most */
#define SW_REACH_ADDR_MAX 64       /* a seen address, NUL included */

/* A reflector's answer (REACH "res"). */
enum sw_reach_res {
    SW_REACH_OK = 0,      /* dialled back, the asker's key echoed the nonce */
    SW_REACH_TIMEOUT = 1, /* dialled back, no answer in time */
    SW_REACH_HOST = 2,    /* the ASK came from another address than ep's host: not dialled */
    SW_REACH_KEY = 3,     /* dialled back, another key (or a wrong nonce) answered */
    SW_REACH_BUSY = 4,    /* too many dial-backs in flight, or one of this key's already */
    SW_REACH_NOADDR = 5,  /* no address seen (not tcp): cannot check */
    SW_REACH_BADEP = 6,   /* ep is not tcp://NUMERIC-ADDRESS:PORT */
    SW_REACH__COUNT
};

/* The verdict (metrics, stage records: swarm-protocol(7), STAGE RECORDS "rch"). */
enum sw_reach_verdict { SW_REACH_UNKNOWN = 0, SW_REACH_REACHABLE = 1, SW_REACH_UNREACHABLE = 2 };

const char *sw_reach_res_name(int res);         /* "ok", "timeout", ...; never NULL */
const char *sw_reach_verdict_name(int verdict); /* "unknown", "reachable", "unreachable" */
/* The verdict a reflector's res gives (UNKNOWN: ask another). */
int sw_reach_verdict_of(int res);

/* ---- bodies (strict: unknown, missing or mistyped keys refused) ---- */

void sw_reach_ask_pack(struct sw_body *b, const char *ep);
int sw_reach_ask_read(const void *body, size_t len, char *ep, size_t cap) SW_WARN_UNUSED;
void sw_reach_answer_pack(struct sw_body *b, int res, const char *seen);
/* res < SW_REACH__COUNT; seen: an address or "" (sent as "-") */
int sw_reach_answer_read(const void *body, size_t len, int *res, char *seen, size_t cap)
    SW_WARN_UNUSED;
/* PROBE and ECHO alike */
void sw_reach_nonce_pack(struct sw_body *b, const uint8_t nonce[SW_REACH_NONCE]);
int sw_reach_nonce_read(const void *body, size_t len, uint8_t nonce[SW_REACH_NONCE])
    SW_WARN_UNUSED;

/* ---- the reflector, and the echo every process gives ---- */

struct sw_reach_dial; /* private */

struct sw_reach_srv {
    struct sw_transport *t;
    struct sw_reach_dial *dial;   /* SW_REACH_MAX_PENDING slots */
    uint64_t answers[SW_REACH__COUNT]; /* ASKs answered, by res */
    uint64_t malformed;           /* ASK, PROBE or ECHO bodies dropped */
    uint64_t echoes;              /* PROBEs this process answered */
};

/*
 * Serve REACH_ASK and REACH_PROBE on t (handlers and rate limits).
 * 0, -SW_ENOMEM or the transport's error.
 */
int sw_reach_serve(struct sw_reach_srv *s, struct sw_transport *t) SW_WARN_UNUSED;
/* Frees the slots (after the transport closed: their callbacks have run). */
void sw_reach_srv_release(struct sw_reach_srv *s);

/* ---- the check at join ---- */

struct sw_reach_check;
typedef void sw_reach_done_cb(struct sw_reach_check *c, void *arg);

struct sw_reach_check {
    struct sw_transport *t;
    char ep[SW_PROTO_EP_MAX];                 /* the endpoint checked (advertised) */
    char peers[SW_REACH_PEERS][SW_PROTO_EP_MAX]; /* asked in this order */
    int npeers, next;
    bool started, done;
    int verdict;                              /* enum sw_reach_verdict, once done */
    int res;                                  /* the deciding answer's res (-1: none) */
    char seen[SW_REACH_ADDR_MAX];             /* the address a reflector saw ("": none) */
    char by[SW_PROTO_EP_MAX];                 /* the peer whose answer decided */
    char last[96];                            /* why the last peer gave no verdict */
    sw_reach_done_cb *cb;
    void *arg;
};

/*
 * Check ep (this node's advertised run endpoint) through peers[n] (up to
 * SW_REACH_PEERS, empty and duplicate ones skipped, own ep included);
 * cb (may be NULL) runs once the verdict is in (c->done), inside this call
 * only when no peer could be asked at all (verdict unknown).  0 or
 * -SW_EINVAL.
 */
int sw_reach_check_start(struct sw_reach_check *c, struct sw_transport *t, const char *ep,
                         const char *const *peers, int n, sw_reach_done_cb *cb,
                         void *arg) SW_WARN_UNUSED;
/* The one line of the verdict (swarmd(1), REACHABILITY), logged. */
void sw_reach_check_log(const struct sw_reach_check *c);
/* The verdict line into buf (without logging); buf returned. */
const char *sw_reach_check_line(const struct sw_reach_check *c, char *buf, size_t len);

/* ---- outbound-only mode ---- */

#define SW_OUTBOUND_KEEPALIVE_MS 1000 /* a PING to every node of the last scan this often */
#define SW_OUTBOUND_PING_MS 3000      /* its timeout */
#define SW_OUTBOUND_WARNED 16         /* keys whose "both outbound-only" line was logged */
#define SW_OUTBOUND_CHECK_MS 2000     /* a relayed PING to itself through its relay this often */
#define SW_OUTBOUND_CHECK_FAILS 2     /* unanswered in a row: another relay */
#define SW_OUTBOUND_BAD_MS 60000      /* a relay that failed is not chosen again for this long */

struct sw_outbound_peer {
    uint8_t pk[32];            /* zero: the bootstrap (no stage record) */
    char ep[SW_PROTO_EP_MAX];  /* its direct endpoint */
    uint64_t next_ms;          /* its next keepalive */
    uint64_t sent_ms;          /* when the one in flight went out */
    double rtt_ms;             /* smoothed keepalive round trip (0: none answered yet) */
    bool busy;                 /* one in flight */
    bool relay;                /* it relays (its record's "rly", or the bootstrap) */
};

struct sw_outbound {
    struct sw_transport *t;
    bool on;                   /* serving as an outbound-only node */
    uint8_t self[32];
    char ep[SW_PROTO_EP_MAX];  /* this node's record endpoint while on: "key:<64 hex>", then
                                  "key:<64 hex>@<relay>" once a relay answered for it */
    bool ep_changed;           /* ep changed since the caller last read it */
    char boot[SW_PROTO_EP_MAX]; /* the bootstrap's run endpoint ("": none): a relay too */
    char relay[SW_PROTO_EP_MAX]; /* the relay in use ("": none yet) */
    char trying[SW_PROTO_EP_MAX]; /* the relay being checked */
    int check_fails;           /* relayed self-PINGs unanswered in a row */
    bool check_busy;
    uint64_t check_next;
    struct { char ep[SW_PROTO_EP_MAX]; uint64_t until; } bad[4]; /* relays that failed lately */
    struct sw_outbound_peer peer[SW_PROTO_MAX_NODES + 1];
    int n;
    uint8_t warned[SW_OUTBOUND_WARNED][32];
    int nwarned;
    uint64_t keepalives, fails; /* PINGs sent, and those unanswered */
    uint64_t checks, check_failed, switches; /* relayed self-PINGs, unanswered; relays taken */
};

/* Ready, off (fills self and ep); boot: the bootstrap's run endpoint (NULL: none). */
void sw_outbound_init(struct sw_outbound *o, struct sw_transport *t, const uint8_t self[32],
                      const char *boot);
/* Serve as an outbound-only node from now on (logs one line); keepalives start at once. */
void sw_outbound_start(struct sw_outbound *o, uint64_t now);
/*
 * The nodes of a scan (recs[n]): those with a tcp endpoint other than this
 * node become the keepalive targets (kept while on or off, so that the
 * first keepalives go out the moment the mode starts); while on, one
 * naming a "key:" endpoint is logged once (both ends outbound-only).
 */
void sw_outbound_targets(struct sw_outbound *o, uint64_t now, const struct sw_peer_rec *recs,
                         int n);
/* While on: the keepalives due; returns the ms until the next (UINT64_MAX: none). */
uint64_t sw_outbound_tick(struct sw_outbound *o, uint64_t now);

/* Prometheus lines: the verdict (c NULL: none) and the reflector's counters. */
int sw_reach_metrics(const struct sw_reach_srv *s, const struct sw_reach_check *c, char *buf,
                     size_t len, size_t *off) SW_WARN_UNUSED;
/* ... and the outbound-only mode's (o NULL: none). */
int sw_outbound_metrics(const struct sw_outbound *o, char *buf, size_t len, size_t *off)
    SW_WARN_UNUSED;

#endif
