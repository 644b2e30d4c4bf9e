/*
 * transport.h - signed messages over ZeroMQ, driven by a libuv loop.
 *
 * Sockets.  One ROUTER per node, bound with sw_transport_bind, receives
 * requests and one-way messages; one DEALER per remote endpoint, created on
 * first use, sends them and receives the responses (and a second one for
 * bulk-class requests, below).  Endpoints are
 * tcp://host:port (tcp://[v6addr]:port for IPv6: ZMQ_IPV6 is set on the
 * sockets of such endpoints only), ipc://path or inproc://name (inproc needs the peers to
 * share a ZeroMQ context: pass opts.zmq_ctx).  Every frame goes through
 * net/wire.h: a message that fails any check is dropped, counted in
 * sw_transport_wire(t)->stats and logged at a limited rate; nothing a remote
 * sends reaches a handler unverified.  Frames on the wire (the ROUTER adds
 * and strips the routing id): [envelope][signature][payload]?
 *
 * Loop.  Each socket's ZMQ_FD sits under a uv_poll.  ZMQ_FD is
 * edge-triggered, so after every wake-up and after every send the socket's
 * ZMQ_EVENTS are drained until neither POLLIN nor a sendable POLLOUT is left;
 * a socket that still has input after a budget of messages is finished on
 * the next loop iteration (a uv_idle), so one busy peer cannot starve the
 * others or the loop.  One uv_timer (10 ms) runs request timeouts and closes
 * DEALERs idle for opts.idle_ms.
 *
 * Requests.  sw_transport_request sends a message with a fresh non-zero
 * request id and calls its callback exactly once: with the verified response
 * (the first message on that DEALER carrying the id), -SW_ETIMEDOUT after the
 * timeout of the last try, or -SW_ECANCELED when the transport closes.  The
 * callback never runs before sw_transport_request has returned 0 (so the
 * caller may mark the request in flight after the call): the send functions
 * (request, send, reply) only queue and flush; every response and handler
 * runs from the loop, except the -SW_ECANCELED ones, which run inside
 * sw_transport_close.  A
 * retry is a new envelope (new sequence number, same request id and payload),
 * so the receiver's replay window does not eat it; handlers must therefore be
 * idempotent per (sender, rid).  A try that times out before ZeroMQ took
 * any of it leaves the DEALER's queue.  When a request's last try times out and no
 * other request waits on that DEALER, the DEALER is closed (the peer is
 * presumed gone; the next request reconnects), unless messages still wait
 * in its queue (a slow link or a busy peer, not a gone one): the one-way
 * messages queued before the timeout (a step's FWDs and BWDs behind a slow
 * request) then go out instead of dying with the connection, or unless the
 * messages handed to ZeroMQ on it lately may still be on their way: each
 * pushes the DEALER's drain time on by its bytes at SW_TRANSPORT_DRAIN_BPS
 * (a replica's 23 MB of partial gradients keep it open 23 s; a request
 * queued behind them on a 100 Mbit/s link times out, and closing the
 * DEALER, whose linger is 0, threw the pieces away: both replicas then
 * waited for each other's for good).  Before any request times out, the
 * transport reads what waits in its sockets: timers run before the loop
 * polls, and after the loop was held (a big stage's compute or allocation
 * on a loaded machine, seconds) the answers that came meanwhile are there;
 * a node then timed out peers that had answered in time, and declared
 * them dead.
 *
 * Back-pressure.  SNDHWM/RCVHWM are opts.hwm messages.  When ZeroMQ refuses
 * a message (HWM reached) it waits in a per-socket queue and goes out on
 * POLLOUT; when that queue holds opts.max_queue messages the send functions
 * return -SW_EAGAIN and the caller must wait (nothing blocks, so no
 * deadlock).  ROUTER_MANDATORY is on: a reply to a vanished peer is dropped,
 * never blocks.  A ROUTER's HWM is per peer, and its queue goes out in
 * order per peer only: a message to a peer whose pipe is full holds back
 * the later ones to that peer, not those to others (up to
 * SW_TRANSPORT_HELD_PEERS held peers in one pass).  It used to hold back
 * the whole queue: a node serving its 255 MB state to a copier over a
 * 20 Mbit/s link queued its READYs and PONGs to every other peer behind
 * 4 MiB pieces, the leader's PREPAREs timed out, and the run stalled with
 * "cannot reply 521: Resource temporarily unavailable" (bench/copy_bench.sh).
 * The queue is shared, so a ROUTER holds at most SW_TRANSPORT_PEER_SHARE of
 * it (a quarter) in messages of the other sequence class (net/wire.h: DHT
 * answers, status) to one peer: more are refused with -SW_EAGAIN (counted,
 * sw_transport_route_stats' slow).  A copier's DHT asks its source several
 * times a second; their answers wait behind the state's pieces on its slow
 * link, long after the DHT gave up on them, and once they filled the queue
 * every reply was refused, the copy's own pieces too: the copy stalled and
 * started over, and the round stopped waiting for it (t0421 in CI).
 * ZMQ_MAXMSGSIZE is max(max_payload, SW_WIRE_MAX_ENVELOPE): ZeroMQ cuts a
 * connection that sends a bigger frame.
 *
 * Bulk.  A request of the bulk sequence class (net/wire.h; peers/ puts
 * STATE_GET and CKPT_GET there) to an endpoint goes on a second DEALER to
 * it, its bulk DEALER, so that its answers, megabytes each, travel on a
 * connection of their own.  On one connection a copier's DHT answers from
 * its source waited behind the state's pieces, about 7 s at 10 Mbit/s,
 * long after the DHT gave up on them (docs/wan.md); on two, TCP shares the
 * link between them and an answer waits behind the link's queue only.
 * Requests to a key or through a relay keep the one connection.  The ROUTER
 * binds no key route (Routes by key, below) from a bulk-class message: a
 * node's other messages name its connection, and the bulk DEALER is never
 * the one a reverse message or its answer takes (sw_transport_reply finds
 * the DEALER a reverse request came on by its endpoint: never the bulk one).

 * Admission.  sw_transport_set_admit installs a hook called for every
 * message that passed sw_wire_open (requests, one-way messages and
 * responses alike), before the payload hash, rate limits, response matching
 * and handlers; false drops the message, counted as SW_WIRE_DROP_ADMIT
 * ("admit") and logged at a limited rate.  A refused response is not
 * delivered: its request times out.  Without a hook every verified message
 * passes (the lobby's transport keeps none).  The hook sees the verified
 * header, including hdr->cert (net/wire.h); it runs on the loop thread, in
 * the same context as a handler.
 *
 * Rate limits.  sw_transport_limit(t, type, rate, burst) limits the
 * messages of type arriving on the ROUTER (requests and one-way messages;
 * responses are never limited): each (sender key, type) has a token bucket
 * of depth burst refilled at rate per second, and the type has one global
 * bucket (by default SW_TRANSPORT_GLOBAL_FACTOR times rate and burst;
 * sw_transport_limit_global changes it) so that fresh keys, each with a full
 * bucket, cannot spend without bound.  A message takes a token from its
 * key's bucket, and from the global one while the key is on probation, or is
 * dropped: after admission, before the payload hash and the handler, counted
 * per type (sw_transport_ratelimited) and as SW_WIRE_DROP_RATELIMIT
 * ("ratelimit"), logged at a limited rate.  A key is on probation from its
 * first message of the type until it is heard again a second or more later;
 * then it is established, and however many fresh keys flood the type, they
 * cannot starve it.  The per-key buckets live in one table of
 * opts.max_limit_keys entries (established keys at most 3/4 of it); when it
 * is full the least recently used bucket on probation is reused first, so
 * any number of keys costs bounded memory and a flood of fresh keys does not
 * push established ones out (a key forgotten anyway comes back on probation
 * with a full bucket, which the global bucket bounds).  Every transport
 * limits PING to SW_TRANSPORT_PING_RATE/s, burst SW_TRANSPORT_PING_BURST,
 * per key.  A dropped request gets no answer: its sender times out and
 * retries, so a limit must sit well above what an honest peer sends.
 *
 * Payloads.  A payload is handed over as struct sw_payload.  With a free_cb
 * the bytes are not copied: they go to zmq_msg_init_data and free_cb runs
 * once ZeroMQ and every retry are done with them, possibly on a ZeroMQ I/O
 * thread.  Without a free_cb the transport copies them once before returning.
 * A received payload (m->payload) is valid only during the callback.  Payloads
 * of type SW_MSG_TENSOR are also decoded and checked (geometry, NaN/Inf) by
 * the transport before the handler runs; other types carrying tensors call
 * sw_wire_tensor_check themselves.
 *
 * Routes by key (outbound-only nodes: swarm-protocol(7), OUTBOUND-ONLY
 * NODES).  A node that nobody can dial opens DEALERs to the nodes it talks
 * to, and they answer it over those connections.  The ROUTER learns, per
 * sender key, the routing id of the connection that key's messages arrive
 * on: every request or one-way message that passed the signature,
 * sequence, admission and rate-limit checks binds its sender's key to its
 * connection, and the latest such message wins, for its own key only (a
 * stranger's messages bind the stranger's key; a replayed one is dropped
 * before it binds anything).  The table holds opts.max_routes keys; when it
 * is full a key is forgotten (counted: evicted) and comes back with its next
 * message: the least recently heard of those on probation (not heard again
 * a second or more after they were bound), else the least recently heard,
 * so that a flood of fresh keys pushes out only fresh keys, not the
 * outbound-only nodes that keep their connections alive.  The endpoint "key:" followed by the
 * 64 lowercase hex digits of a public key (sw_transport_key_endpoint)
 * names that key's connection: sw_transport_send and sw_transport_request
 * to it go out on the ROUTER, and -SW_ENOENT (counted: noroute) comes back
 * at once while no connection is known for the key (a request's retry
 * takes the key's connection at the time it goes out).  Such messages
 * travel against the connection's direction, so they carry one frame more,
 * the reverse mark (one byte, SW_TRANSPORT_REVERSE), before the envelope:
 * the DEALER that receives [mark][env][sig][payload]? hands it to the
 * handler of its type as a request or one-way message (admission and rate
 * limits as on the ROUTER; m->route names the DEALER: reverse set), and the
 * answer (sw_transport_reply) goes back on that DEALER with the mark, so
 * that the ROUTER matches it to its request (by request id, connection and
 * the key asked).  Without the mark a message on a DEALER is a response,
 * on a ROUTER a request or one-way message, as before.
 *
 * Relays (swarm-protocol(7), RELAYS).  Two outbound-only nodes cannot dial
 * each other; each keeps a connection to a reachable node that relays, and
 * the endpoint "key:" + HEX + "@" + tcp://R (sw_transport_relay_endpoint)
 * sends to key HEX through the relay R, unless the ROUTER knows a
 * connection of key HEX: then it goes over that connection, as to "key:"
 * + HEX (a direct path is always taken when there is one).  The message is sealed for its
 * addressee as any other, and travels as [mark][key][env][sig][payload]?:
 * mark SW_TRANSPORT_RELAY_MSG for a request or one-way message,
 * SW_TRANSPORT_RELAY_ANS for an answer; key is the addressee's from the
 * sender to the relay, the sender's from the relay to the addressee.  A
 * relay (sw_transport_set_relay) takes such messages on its ROUTER only: it
 * checks the envelope's signature and sequence (a replay is dropped), the
 * admission hook and the sender's relay limit, binds the sender's key to
 * the connection (as any verified message does), and passes the frames on,
 * unchanged and uncopied, on the addressee's key connection with the
 * sender's key in the key frame, unless the relayed messages waiting in
 * the ROUTER's own queue (beyond ZeroMQ's high-water mark) would then hold
 * more than opts.relay_queue bytes; otherwise the message is
 * dropped and counted (struct sw_transport_relay_stats), and a request times out.  The
 * relay cannot alter what it passes on: the addressee receives it on its
 * DEALER to the relay, checks it as any message (signature, sequence,
 * admission, rate limits, payload hash) and drops it unless the key frame
 * names its signer; its m->route names the relay's DEALER and the sender's
 * key (relay set), and sw_transport_reply answers through the same relay.
 * A request's answer must come relayed, from the key asked.  A relayed
 * request that times out never closes the relay's DEALER.
 *
 * Threading: everything runs on the loop thread, except payload free_cb as
 * said.  Ownership: sw_transport_new allocates; sw_transport_close starts an
 * asynchronous close that frees the transport once its handles are closed
 * (run the loop until then); the identity and loop are borrowed and must
 * outlive it.
 */
#ifndef SW_TRANSPORT_H
#define SW_TRANSPORT_H

#include "sw.h"

#include <uv.h>

#include "identity.h"
#include "wire.h"

#define SW_TRANSPORT_MAX_ROUTE 256 /* ZeroMQ routing ids are at most 255 bytes */
#define SW_TRANSPORT_MAX_ENDPOINT 256
#define SW_TRANSPORT_LIMIT_KEYS 4096    /* per-key buckets kept (opts.max_limit_keys) */
#define SW_TRANSPORT_GLOBAL_FACTOR 8    /* a type's global bucket: this many keys' worth */
#define SW_TRANSPORT_PING_RATE 20       /* PINGs per second per key (default limit) */
#define SW_TRANSPORT_PING_BURST 100
#define SW_TRANSPORT_MAX_ROUTES 1024    /* keys whose connection the ROUTER keeps (opts.max_routes) */
#define SW_TRANSPORT_KEY_PREFIX "key:"  /* "key:" + 64 hex digits: that key's connection */
#define SW_TRANSPORT_KEY_EP_LEN 68      /* strlen of such an endpoint */
#define SW_TRANSPORT_REVERSE 0x52       /* the reverse mark, a frame of this one byte ('R') */
#define SW_TRANSPORT_RELAY_MSG 0x56     /* relay marks ('V', 'W'; see "Relays"): a request or */
#define SW_TRANSPORT_RELAY_ANS 0x57     /* one-way message, an answer */
#define SW_TRANSPORT_RELAY_RATE 400     /* relayed messages per second per sender key, */
#define SW_TRANSPORT_RELAY_BURST 800    /* and the bucket's depth (sw_transport_set_relay) */
#define SW_TRANSPORT_RELAY_QUEUE_BYTES (256u << 20) /* relayed bytes waiting at most */

struct sw_transport;

struct sw_transport_opts {
    void *zmq_ctx;         /* shared ZeroMQ context; NULL: the transport owns one */
    size_t max_payload;    /* bytes per payload frame; 0: SW_WIRE_MAX_PAYLOAD */
    int hwm;               /* ZMQ_SNDHWM/RCVHWM in messages; 0: 64 */
    size_t max_queue;      /* messages queued per socket beyond the HWM; 0: 256 */
    uint64_t idle_ms;      /* close DEALERs idle this long; 0: 60000 */
    size_t max_senders;    /* sequence windows (struct sw_wire_opts); 0: default */
    size_t max_limit_keys; /* rate-limit buckets (see "Rate limits"); 0: SW_TRANSPORT_LIMIT_KEYS */
    size_t max_routes;     /* keys routed by connection (see "Routes by key"); 0: SW_TRANSPORT_MAX_ROUTES */
    size_t relay_queue;    /* relayed bytes waiting at most (see "Relays"); 0: SW_TRANSPORT_RELAY_QUEUE_BYTES */
};

/* The key routes' counters (see "Routes by key"). */
struct sw_transport_route_stats {
    size_t keys;           /* keys with a known connection now */
    uint64_t bound;        /* keys bound to a connection for the first time */
    uint64_t moved;        /* a key's messages came over another connection */
    uint64_t evicted;      /* keys forgotten to make room */
    uint64_t noroute;      /* sends and requests to a key with no known connection */
    uint64_t slow;         /* refused: the ROUTER held its peer's share (Back-pressure) */
};

/* The relay's counters (see "Relays"). */
struct sw_transport_relay_stats {
    uint64_t forwarded;    /* relayed messages passed on (as a relay) */
    uint64_t bytes;        /* their envelope and payload bytes */
    uint64_t refused;      /* dropped: this transport does not relay */
    uint64_t noroute;      /* dropped: no connection of the key they were for */
    uint64_t ratelimited;  /* dropped: over the sender's relay limit */
    uint64_t full;         /* dropped: the ROUTER's queue was full */
    uint64_t bad;          /* dropped: malformed, bad signature or replay, not admitted */
    uint64_t delivered;    /* relayed messages received (as their addressee) */
};

/* Where a request came from, to answer it (copyable: answers may come later). */
struct sw_transport_route {
    uint8_t id[SW_TRANSPORT_MAX_ROUTE]; /* the ROUTER's routing id; reverse or relay: the
                                           DEALER's endpoint, NUL-terminated */
    size_t len;
    uint64_t rid; /* request id, 0 for one-way messages */
    bool reverse; /* it came on one of our DEALERs (see "Routes by key") */
    bool relay;   /* it came through the relay at id from key (see "Relays") */
    uint8_t key[SW_IDENTITY_PK_BYTES];
};

/* A verified message, valid during the callback only. */
struct sw_transport_msg {
    struct sw_wire_hdr hdr;            /* hdr.body/body_len: the type's body map */
    const void *payload;               /* NULL when hdr.payload_len is 0 */
    size_t payload_len;
    const struct sw_wire_tensor *tensor; /* decoded body of SW_MSG_TENSOR, else NULL */
    struct sw_transport_route route;   /* on the ROUTER side; len 0 on a DEALER */
    const char *peer_addr;             /* the ROUTER side of a tcp connection: the address
                                          the message came from, as ZeroMQ saw it (its
                                          "Peer-Address": "203.0.113.7", "::1",
                                          "::ffff:203.0.113.7"), numeric only; NULL
                                          otherwise (ipc, inproc) */
};

typedef void sw_payload_free_cb(void *data, void *arg);

/* An outgoing payload (see "Payloads"). */
struct sw_payload {
    const void *data;
    size_t len;
    sw_payload_free_cb *free_cb; /* NULL: copied before the call returns */
    void *free_arg;
    const uint8_t *hash;         /* precomputed sw_wire_payload_hash, or NULL */
};

/* A request or one-way message arrived on the ROUTER. */
typedef void sw_transport_handler_cb(struct sw_transport *t, const struct sw_transport_msg *m,
                                     void *arg);
/* A request finished: status 0 with m, or -SW_ETIMEDOUT/-SW_ECANCELED with m NULL. */
typedef void sw_transport_response_cb(struct sw_transport *t, int status,
                                      const struct sw_transport_msg *m, void *arg);
typedef void sw_transport_close_cb(void *arg);

/* Admission hook: true lets a verified message through (see "Admission"). */
typedef bool sw_transport_admit_cb(void *arg, const struct sw_wire_hdr *hdr, uint32_t type);

/* Allocate a transport on loop for identity id in run; opts may be NULL. */
int sw_transport_new(struct sw_transport **out, uv_loop_t *loop, const struct sw_identity *id,
                     const uint8_t run[SW_WIRE_RUN_BYTES],
                     const struct sw_transport_opts *opts) SW_WARN_UNUSED;

/*
 * Bind the ROUTER (once; "tcp://127.0.0.1:*" picks a free port).  The
 * endpoint peers should use goes to actual (ZMQ_LAST_ENDPOINT) when not NULL.
 */
int sw_transport_bind(struct sw_transport *t, const char *endpoint, char *actual,
                      size_t actual_len) SW_WARN_UNUSED;

/*
 * Split a tcp endpoint whose host is a numeric address, tcp://A.B.C.D:PORT
 * or tcp://[IPV6]:PORT, PORT 1-65535 or "*" (port 0): the host without
 * brackets into host (host_cap bytes; host may be NULL) and the port.  0 or
 * -SW_EINVAL (another scheme, a name, no port, out of range, too long).
 */
int sw_transport_endpoint_split(const char *ep, char *host, size_t host_cap, int *port)
    SW_WARN_UNUSED;
/* True when a and b are the same numeric address (IPv4 equals its
 * IPv4-mapped IPv6 form); false when either is not one. */
bool sw_transport_addr_same(const char *a, const char *b);

/*
 * Handle messages of type on the ROUTER (one handler per type, replacing the
 * previous one; NULL removes).  PING is answered with PONG by default.
 */
int sw_transport_on(struct sw_transport *t, uint32_t type, sw_transport_handler_cb *cb,
                    void *arg) SW_WARN_UNUSED;

/*
 * Send a request of type with body (one encoded msgpack map, copied; NULL/0
 * for {}) and optional payload to endpoint; cb gets the response.  timeout_ms
 * per try, retries extra tries.  On error nothing was sent, cb will not run,
 * and the payload's free_cb has already run.
 */
int sw_transport_request(struct sw_transport *t, const char *endpoint, uint32_t type,
                         const void *body, size_t body_len, const struct sw_payload *payload,
                         uint64_t timeout_ms, int retries, sw_transport_response_cb *cb,
                         void *arg) SW_WARN_UNUSED;

/* A one-way message (request id 0) to endpoint's ROUTER (or a key's connection). */
int sw_transport_send(struct sw_transport *t, const char *endpoint, uint32_t type,
                      const void *body, size_t body_len,
                      const struct sw_payload *payload) SW_WARN_UNUSED;

/* Answer a request (route->rid must be non-zero) on the connection it came on:
 * the ROUTER's, or our DEALER's (route->reverse; -SW_ENOENT when it closed). */
int sw_transport_reply(struct sw_transport *t, const struct sw_transport_route *route,
                       uint32_t type, const void *body, size_t body_len,
                       const struct sw_payload *payload) SW_WARN_UNUSED;

/*
 * Limit messages of type per sender key to rate_per_s, bucket depth burst
 * (at least 1), and all keys together to SW_TRANSPORT_GLOBAL_FACTOR times
 * that (see "Rate limits"); replaces the type's limit; rate_per_s <= 0
 * removes it.  0, -SW_EINVAL, -SW_ERANGE (32 types limited already).
 */
int sw_transport_limit(struct sw_transport *t, uint32_t type, double rate_per_s,
                       double burst) SW_WARN_UNUSED;
/* The global bucket of a limited type (after sw_transport_limit).  0, -SW_EINVAL, -SW_ENOENT. */
int sw_transport_limit_global(struct sw_transport *t, uint32_t type, double rate_per_s,
                              double burst) SW_WARN_UNUSED;
/* Messages of type dropped by its rate limit so far (0 when not limited). */
uint64_t sw_transport_ratelimited(const struct sw_transport *t, uint32_t type);
/* The limited types: up to cap of them into types; returns how many there are. */
size_t sw_transport_limited_types(const struct sw_transport *t, uint32_t *types, size_t cap);

/* "key:" + the 64 hex digits of pk into out (cap >= SW_TRANSPORT_KEY_EP_LEN + 1); out returned. */
char *sw_transport_key_endpoint(char *out, size_t cap, const uint8_t pk[SW_IDENTITY_PK_BYTES]);
/* True when ep is such an endpoint (either case); its key into pk when not NULL. */
bool sw_transport_endpoint_is_key(const char *ep, uint8_t *pk);
/* True when the ROUTER knows a connection of pk now. */
bool sw_transport_key_routed(const struct sw_transport *t, const uint8_t pk[SW_IDENTITY_PK_BYTES]);
/* The key routes' counters. */
void sw_transport_route_stats(const struct sw_transport *t, struct sw_transport_route_stats *st);

/*
 * "key:" + pk's 64 hex digits + "@" + relay (a tcp:// endpoint) into out:
 * pk's messages through that relay (see "Relays").  0 or -SW_EINVAL (too long
 * for cap or SW_TRANSPORT_MAX_ENDPOINT, relay not tcp).
 */
int sw_transport_relay_endpoint(char *out, size_t cap, const uint8_t pk[SW_IDENTITY_PK_BYTES],
                                const char *relay) SW_WARN_UNUSED;
/* True when ep is such an endpoint: its key into pk, the relay's endpoint into relay. */
bool sw_transport_endpoint_is_relay(const char *ep, uint8_t *pk, char *relay, size_t relay_cap);
/*
 * Relay for others (on) or not (off, the default): rate_per_s relayed
 * messages per sender key, bucket depth burst, and SW_TRANSPORT_GLOBAL_FACTOR
 * times that for keys on probation together.  0 or -SW_EINVAL.
 */
int sw_transport_set_relay(struct sw_transport *t, bool on, double rate_per_s,
                           double burst) SW_WARN_UNUSED;
/* The relay's counters. */
void sw_transport_relay_stats(const struct sw_transport *t, struct sw_transport_relay_stats *st);

/* Install (or with NULL remove) the admission hook; see "Admission". */
void sw_transport_set_admit(struct sw_transport *t, sw_transport_admit_cb *admit, void *arg);

/* The wire context: own key, counters (stats.drops[reason]). */
struct sw_wire *sw_transport_wire(struct sw_transport *t);

/* The slowest rate, bytes a second, at which a DEALER's messages are
 * presumed to leave (8 Mbit/s): a request timeout does not close a DEALER
 * before what was handed to ZeroMQ on it could have gone at this rate
 * (Requests, above). */
#define SW_TRANSPORT_DRAIN_BPS (1u << 20)
#define SW_TRANSPORT_HELD_PEERS 16 /* see Back-pressure above */
#define SW_TRANSPORT_PEER_SHARE(q) ((q) / 4) /* the same: one peer's other-class messages */

/* Requests waiting for a response. */
size_t sw_transport_pending(const struct sw_transport *t);

/* DEALER connections open now (one per remote endpoint in use). */
size_t sw_transport_peers(const struct sw_transport *t);

/* Close: cancel requests, close sockets; cb (may be NULL) runs when freed. */
void sw_transport_close(struct sw_transport *t, sw_transport_close_cb *cb, void *arg);

#endif
