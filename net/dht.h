/*
 * dht.h - Kademlia DHT with signed, expiring, multi-publisher records.
 *
 * The protocol core does no I/O, in the manner of jech/dht: the caller feeds
 * it decoded messages (sw_dht_input, with the sender's verified public key
 * and the current time) and timer ticks (sw_dht_tick), and the core hands
 * every message it wants sent to a caller-provided callback.  It never reads
 * a clock (time is always passed in, in milliseconds of any monotonic clock),
 * never sleeps and never blocks, so that hundreds of nodes run in one test
 * process over a simulated network with a simulated clock.  net/dhtnode.h
 * glues it to the transport.
 *
 * Parameters: 256-bit ids (node id = BLAKE2b-256 of the node's Ed25519
 * public key), XOR metric, k = 20, alpha = 3 (struct sw_dht_params).
 *
 * Routing table: 256 k-buckets; bucket i holds the contacts whose id shares
 * exactly i leading bits with ours.  A bucket is ordered from least to most
 * recently seen.  Only peers that talked to us directly (a request or a reply,
 * under a valid envelope signature) enter the table; contacts learnt from
 * NODES replies are only used by lookups until they answer themselves.  When
 * a newcomer meets a full bucket it goes to the bucket's replacement cache and
 * the least-recently-seen contact is pinged if it is questionable (not heard
 * for questionable_ms); a contact whose requests time out max_fails times in
 * a row is dropped and the newest replacement takes its place.  The tick
 * pings every questionable bucket head on its own, which is how a node that
 * left drops out of all tables: within questionable_ms + 2 * rpc_timeout_ms
 * of its last message (plus one ping per contact ahead of it in its bucket).
 * A bucket that saw no lookup for refresh_ms is refreshed with a lookup of a
 * random id in its range.
 *
 * Lookups (find_node, get, put) are iterative: alpha queries in flight to the
 * closest not-yet-queried candidates; when a whole round of alpha replies
 * brought nothing closer, every remaining candidate among the k closest is
 * queried at once (as in the paper); the lookup ends when the k closest
 * candidates that did not fail have all answered.  "rounds" in struct
 * sw_dht_lookup_info is the hop depth: a node from our own table is at depth
 * 1, a node first learnt from a depth-d reply is at depth d + 1.
 *
 * Records: under one 256-bit key (computed by callers, e.g. H(run, "stage",
 * k)) a node keeps one record per publisher (subkeys).  A record is signed
 * by its publisher (Ed25519 over a BLAKE2b-256 digest, see below) and carries
 * a publisher-chosen 64-bit sequence number: a higher one replaces a lower
 * one; the same one refreshes the expiry (only when the bytes are identical);
 * a lower one is refused as stale.  TTLs are relative (no clock sync): a node
 * stores expiry = its now + ttl and, when it returns the record, sends the
 * remaining ttl.  Records expire unless their publisher puts them again.
 * Note that the ttl is not covered by the signature (it changes in transit):
 * a storing node could keep a record alive for up to ttl_max_s after its
 * publisher stopped refreshing it; readers that care put a time or a step
 * inside the value.  Limits: value size (value_max), publishers per key
 * (publishers_max), records and bytes per node (store_max_*).
 * get() returns the newest record of every publisher found on the k nodes
 * closest to the key, together with any in the local store.  put() stores on
 * the k closest nodes (this one included when it is among them).
 * Newly joined nodes receive records at their publisher's next refresh; there
 * is no replication between storing nodes.
 *
 * Abuse: requests are limited per peer and in total by token buckets; bodies
 * are strictly validated (net/dht_codec.h); replies are accepted only for an
 * outstanding transaction id and from the node it was sent to; records with a
 * bad signature are refused everywhere.  Everything dropped is counted in
 * struct sw_dht_stats and logged at a limited rate; nothing a remote sends is
 * asserted on.
 *
 * Ownership and threading: a struct sw_dht is used by one thread at a time.
 * The core owns copies of everything it keeps; pointers handed to callbacks
 * are valid only during the call.  The send callback must not call back into
 * the core (queue the message); completion callbacks may start new lookups
 * but must not free the dht.  Completion callbacks are never called from
 * inside the call that starts the lookup: only from sw_dht_input or
 * sw_dht_tick (a lookup that finishes at once sets the next wake-up to now).
 * sw_dht_free calls the callbacks of unfinished lookups with -SW_ECANCELED.
 *
 * ------------------------------------------------------------------------
 * DHT MESSAGES (for swarm-protocol(7))
 *
 * Each DHT message is one signed envelope (net/wire.h) whose type is one of
 * the numbers below (the DHT's range is 256-511) and whose "body" is a
 * msgpack map with string keys.  A request travels with a non-zero envelope
 * request id and its reply is the transport's response to it; the DHT's own
 * tid (below) is what the DHT matches replies with.  Requests have even
 * types, the reply to a request has the next odd type.  Decoding is strict:
 * the body must be exactly one map (no trailing bytes); a key that is
 * unknown for the type, repeated, or missing when required, or a value of
 * another msgpack type or out of range, rejects the whole message (dropped
 * and counted, no reply).  Integers are msgpack unsigned integers of any
 * width; bin lengths are exact where given.
 *
 *   type  name        keys (R required, O optional)
 *   256   PING        R tid, O ep
 *   257   PONG        R tid, O ep
 *   258   FIND_NODE   R tid, O ep, R target
 *   259   NODES       R tid, O ep, R nodes
 *   260   FIND_VALUE  R tid, O ep, R key, O after
 *   261   VALUES      R tid, O ep, R nodes, R recs, R more
 *   262   STORE       R tid, O ep, R rec
 *   263   STORED      R tid, O ep, R status
 *
 *   tid     uint (64-bit)   transaction id chosen by the requester, echoed in
 *                           the reply; a reply is accepted only from the node
 *                           the request went to, once
 *   ep      str, 1..127     the sender's own listening endpoint
 *                           ("tcp://host:port", "ipc://path" or
 *                           "inproc://name", printable ASCII without spaces);
 *                           without it the sender is not added to routing
 *                           tables (clients that do not serve)
 *   target  bin 32          FIND_NODE: the id whose closest nodes are wanted
 *   key     bin 32          FIND_VALUE: the record key
 *   after   bin 32          FIND_VALUE: page cursor: only records whose
 *                           publisher key sorts (bytewise) after this one
 *   nodes   array of 0..32 contacts, each a map {pk: bin 32 (Ed25519 public
 *                           key; id = BLAKE2b-256(pk)), ep: str as above},
 *                           the sender's known nodes closest to target/key
 *                           (at most k, never the requester)
 *   recs    array of 0..256 records, sorted by publisher key, each
 *                           publisher at most once
 *   more    bool            VALUES: true when recs was cut to fit the reply
 *                           (about 48 KiB): ask again with after = the last
 *                           publisher key received (a requester follows at
 *                           most 32 pages per node, each starting after the
 *                           cursor it sent)
 *   rec     record          STORE: the record to store
 *   status  uint            STORED: 0 stored (or refreshed), 1 bad
 *                           signature, 2 stale (a newer sequence, or the
 *                           same one with other bytes, is held), 3 full
 *                           (publishers per key or node store limit),
 *                           4 value too big, 5 invalid
 *
 *   record  map {key: bin 32, pub: bin 32 (publisher's Ed25519 public key),
 *                seq: uint (64-bit version), ttl: uint 1..2^32-1 (seconds
 *                left; receivers cap it at their ttl_max_s, default 86400),
 *                val: bin 0..4096, sig: bin 64}
 *   sig = Ed25519(publisher secret key,
 *                 BLAKE2b-256("swarm-dht-record-v1" (19 bytes, no NUL)
 *                             || key || pub || seq as 8 bytes big-endian
 *                             || val))
 * ------------------------------------------------------------------------
 */
#ifndef SW_DHT_H
#define SW_DHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SW_DHT_ID_BYTES 32
#define SW_DHT_PK_BYTES 32
#define SW_DHT_SK_BYTES 64 /* libsodium's Ed25519 secret key (seed || pk) */
#define SW_DHT_SIG_BYTES 64
#define SW_DHT_EP_MAX 128 /* endpoint buffer, NUL included: 127 characters */

/* Hard caps: params may lower these, never raise them. */
#ifndef SW_DHT_K_MAX
#define SW_DHT_K_MAX 32
#endif
#ifndef SW_DHT_VALUE_MAX
#define SW_DHT_VALUE_MAX 4096
#endif
#ifndef SW_DHT_PUBLISHERS_MAX
#define SW_DHT_PUBLISHERS_MAX 256
#endif
/* Record bytes (values + ~180 bytes each) packed into one VALUES reply: with
 * nodes and the envelope it stays under SW_WIRE_MAX_ENVELOPE (64 KiB). */
#ifndef SW_DHT_REPLY_BUDGET
#define SW_DHT_REPLY_BUDGET (48 * 1024)
#endif
/* Largest body accepted by the decoder. */
#ifndef SW_DHT_BODY_MAX
#define SW_DHT_BODY_MAX (256 * 1024)
#endif

enum sw_dht_msg_type {
    SW_DHT_PING = 256,
    SW_DHT_PONG = 257,
    SW_DHT_FIND_NODE = 258,
    SW_DHT_NODES = 259,
    SW_DHT_FIND_VALUE = 260,
    SW_DHT_VALUES = 261,
    SW_DHT_STORE = 262,
    SW_DHT_STORED = 263,
};
#define SW_DHT_TYPE_MIN SW_DHT_PING
#define SW_DHT_TYPE_MAX SW_DHT_STORED

/* STORED status on the wire. */
enum sw_dht_store_status {
    SW_DHT_ST_OK = 0,
    SW_DHT_ST_BADSIG = 1,
    SW_DHT_ST_STALE = 2,
    SW_DHT_ST_FULL = 3,
    SW_DHT_ST_TOOBIG = 4,
    SW_DHT_ST_INVALID = 5,
};

struct sw_dht_contact {
    uint8_t id[SW_DHT_ID_BYTES]; /* BLAKE2b-256(pk) */
    uint8_t pk[SW_DHT_PK_BYTES];
    char ep[SW_DHT_EP_MAX]; /* "" when unknown */
};

struct sw_dht_record {
    uint8_t key[SW_DHT_ID_BYTES];
    uint8_t pub[SW_DHT_PK_BYTES]; /* publisher's Ed25519 public key (the subkey) */
    uint64_t seq;                 /* publisher's version; higher replaces lower */
    uint32_t ttl_s;               /* relative: seconds to live from now */
    uint8_t sig[SW_DHT_SIG_BYTES];
    const uint8_t *val;           /* val_len bytes; owner depends on context */
    size_t val_len;
};

/*
 * One DHT message body (the envelope's type is m->type).  Messages built by
 * the core point into core memory valid during the send callback; messages
 * filled by sw_dht_msg_decode own nodes, recs and every recs[i].val, freed by
 * sw_dht_msg_release.
 */
struct sw_dht_msg {
    int type;                        /* enum sw_dht_msg_type */
    uint64_t tid;
    char ep[SW_DHT_EP_MAX];          /* sender's listening endpoint or "" */
    uint8_t target[SW_DHT_ID_BYTES]; /* FIND_NODE target, FIND_VALUE key */
    bool has_after;                  /* FIND_VALUE */
    uint8_t after[SW_DHT_PK_BYTES];
    struct sw_dht_contact *nodes;    /* NODES, VALUES */
    size_t n_nodes;
    struct sw_dht_record *recs;      /* VALUES; STORE carries exactly one */
    size_t n_recs;
    bool more;                       /* VALUES */
    unsigned status;                 /* STORED: enum sw_dht_store_status */
};

struct sw_dht_params {
    unsigned k;                 /* bucket size and replication (1..SW_DHT_K_MAX), 20 */
    unsigned alpha;             /* queries in flight per lookup, 3 */
    uint32_t rpc_timeout_ms;    /* a request unanswered this long failed, 2000 */
    unsigned max_fails;         /* consecutive failures before a contact is dropped, 2 */
    uint32_t questionable_ms;   /* ping contacts not heard this long, 15 min */
    uint32_t refresh_ms;        /* refresh buckets without lookups this long, 60 min */
    uint32_t sweep_ms;          /* purge expired records this often, 60 s */
    size_t value_max;           /* <= SW_DHT_VALUE_MAX, 4096 */
    unsigned publishers_max;    /* per key, <= SW_DHT_PUBLISHERS_MAX, 256 */
    size_t store_max_records;   /* per node, 65536 */
    size_t store_max_bytes;     /* per node (values), 64 MiB */
    uint32_t ttl_max_s;         /* longer ttls are cut to this, 86400 */
    uint32_t rl_rate;           /* requests per second per peer, 50 */
    uint32_t rl_burst;          /* bucket depth per peer, 200 */
    uint32_t rl_global_rate;    /* requests per second from all peers, 5000 */
    uint32_t rl_global_burst;   /* 20000 */
    uint64_t seed;              /* transaction ids, refresh targets; 0: random */
};

struct sw_dht_stats {
    uint64_t rx;               /* messages handed to sw_dht_input[_body] */
    uint64_t rx_requests;      /* requests served */
    uint64_t rx_replies;       /* replies matched to a transaction */
    uint64_t drop_malformed;   /* undecodable or invalid bodies, bad contacts */
    uint64_t drop_ratelimit;   /* requests over a per-peer or the global rate */
    uint64_t drop_unsolicited; /* replies without a matching transaction */
    uint64_t bad_records;      /* records refused for a bad signature */
    uint64_t store_refused;    /* STOREs refused: stale, full, too big, invalid */
    uint64_t stored;           /* records stored or refreshed by STORE or put */
    uint64_t tx;               /* messages handed to the send callback */
    uint64_t rpc_timeouts;
    uint64_t evicted;          /* contacts dropped from the routing table */
    uint64_t lookups;          /* lookups started */
};

struct sw_dht_lookup_info {
    unsigned rounds;   /* hop depth, see above */
    unsigned queries;  /* requests sent by the lookup */
    unsigned failures; /* of which timed out */
    uint64_t elapsed_ms;
};

struct sw_dht;

/*
 * Called for every message the core sends.  to->pk is all zero (and to->id
 * too) for a bootstrap request to an endpoint whose key is not known yet;
 * replies (odd types) go to the requester, whose to->ep may be "": send them
 * back the way the request came.  Must not call into the core.
 */
typedef void sw_dht_send_cb(void *arg, const struct sw_dht_contact *to, const struct sw_dht_msg *m);
/* status 0 or a negative SW_E*; nodes sorted by distance to the target. */
typedef void sw_dht_nodes_cb(void *arg, int status, const struct sw_dht_contact *nodes, size_t n,
                             const struct sw_dht_lookup_info *info);
/* recs: newest record of every publisher found, sorted by publisher key.
 * status -SW_ETIMEDOUT when the get asked other nodes and none answered
 * (recs then holds only what this node stores itself). */
typedef void sw_dht_get_cb(void *arg, int status, const struct sw_dht_record *recs, size_t n,
                           const struct sw_dht_lookup_info *info);
/* status 0 when at least one node (maybe this one) stored the record. */
typedef void sw_dht_put_cb(void *arg, int status, unsigned n_stored,
                           const struct sw_dht_lookup_info *info);

void sw_dht_params_default(struct sw_dht_params *p);

/*
 * Creates a node with public key pk and listening endpoint ep ("" or NULL for
 * a node that only asks).  params NULL: defaults.  0, -SW_EINVAL (bad params
 * or endpoint) or -SW_ENOMEM.
 */
SW_WARN_UNUSED int sw_dht_new(struct sw_dht **out, const uint8_t pk[SW_DHT_PK_BYTES],
                              const char *ep, const struct sw_dht_params *params,
                              sw_dht_send_cb *send, void *send_arg);
void sw_dht_free(struct sw_dht *d);

/*
 * Feeds one message from the peer with public key pk (verified by the
 * envelope).  0, or a negative code when it was dropped (counted).
 */
int sw_dht_input(struct sw_dht *d, const uint8_t pk[SW_DHT_PK_BYTES], const struct sw_dht_msg *m,
                 uint64_t now);
/* The same from an encoded body: decodes it (net/dht_codec.h) first. */
int sw_dht_input_body(struct sw_dht *d, const uint8_t pk[SW_DHT_PK_BYTES], int type,
                      const void *body, size_t len, uint64_t now);
/* Timeouts, pings, refreshes, expiry.  Returns the next wake-up time (ms). */
uint64_t sw_dht_tick(struct sw_dht *d, uint64_t now);
/* When sw_dht_tick wants to run next (after any input, tick or start). */
uint64_t sw_dht_next_wake(const struct sw_dht *d);

/*
 * Joins through endpoints (strings like "tcp://127.0.0.1:7400"): asks each
 * for the nodes closest to our id, then looks our id up, then refreshes the
 * buckets farther than our closest neighbour.  cb (may be NULL) gets the
 * result of the self lookup; status -SW_ETIMEDOUT when nobody answered.
 */
SW_WARN_UNUSED int sw_dht_bootstrap(struct sw_dht *d, const char *const *eps, size_t n,
                                    uint64_t now, sw_dht_nodes_cb *cb, void *arg);
/* Adds a known contact as if it had just talked to us (tests, caches). */
int sw_dht_add_contact(struct sw_dht *d, const struct sw_dht_contact *c, uint64_t now);

SW_WARN_UNUSED int sw_dht_find_node(struct sw_dht *d, const uint8_t target[SW_DHT_ID_BYTES],
                                    uint64_t now, sw_dht_nodes_cb *cb, void *arg);
SW_WARN_UNUSED int sw_dht_get(struct sw_dht *d, const uint8_t key[SW_DHT_ID_BYTES], uint64_t now,
                              sw_dht_get_cb *cb, void *arg);
/*
 * Stores r (signed by its publisher, see sw_dht_record_sign) on the k nodes
 * closest to r->key.  The record is copied.  -SW_ESIG, -SW_ETOOBIG or
 * -SW_EINVAL at once when it could never be stored.
 */
SW_WARN_UNUSED int sw_dht_put(struct sw_dht *d, const struct sw_dht_record *r, uint64_t now,
                              sw_dht_put_cb *cb, void *arg);

/* Records: sign (sets r->pub from sk and r->sig) and verify. */
void sw_dht_record_sign(struct sw_dht_record *r, const uint8_t sk[SW_DHT_SK_BYTES]);
bool sw_dht_record_verify(const struct sw_dht_record *r);

/*
 * The endpoint this node's messages give for it from now on ("" : none, a
 * client only: peers answer it but keep it out of their tables, e.g. a node
 * nobody can dial).  0 or -SW_EINVAL (not a valid endpoint).
 */
int sw_dht_set_ep(struct sw_dht *d, const char *ep) SW_WARN_UNUSED;

/* Introspection (tests, swarmctl). */
const uint8_t *sw_dht_id(const struct sw_dht *d);
void sw_dht_get_stats(const struct sw_dht *d, struct sw_dht_stats *out);
size_t sw_dht_count_contacts(const struct sw_dht *d);
bool sw_dht_has_contact(const struct sw_dht *d, const uint8_t id[SW_DHT_ID_BYTES]);
/* Up to n contacts of our table closest to target; returns how many. */
size_t sw_dht_closest(const struct sw_dht *d, const uint8_t target[SW_DHT_ID_BYTES],
                      struct sw_dht_contact *out, size_t n);
/* Records in the local store that have not expired at now. */
size_t sw_dht_count_records(const struct sw_dht *d, uint64_t now);

/* Helpers shared with the codec and the glue. */
void sw_dht_id_of(uint8_t id[SW_DHT_ID_BYTES], const uint8_t pk[SW_DHT_PK_BYTES]);
bool sw_dht_endpoint_valid(const char *s, size_t len);
/* Number of leading bits a and b share (256 when equal). */
int sw_dht_common_bits(const uint8_t a[SW_DHT_ID_BYTES], const uint8_t b[SW_DHT_ID_BYTES]);

#endif
