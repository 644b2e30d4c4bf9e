/*
 * hostile - what the hostile helpers of the attack tests share (issue 12):
 * test_peers_rogue (t0380), test_peers_stranger (t0381), test_peers_attack
 * (t0382-t0384) and test_peers_records (t0386, t0387) each play a process
 * that anyone could run against a run: keys of their own, the run's
 * manifest from the lobby, a run transport, the run's DHT, stage records of
 * their own making, and requests sealed and sent straight on ZeroMQ
 * sockets.  Test code only: nothing here is linked into swarmd.
 */
#ifndef SW_TESTS_HOSTILE_H
#define SW_TESTS_HOSTILE_H

#include "sw.h"

#include <signal.h>

#include "dhtnode.h"
#include "identity.h"
#include "manifest.h"
#include "node.h"
#include "proto.h"
#include "status.h"
#include "transport.h"
#include "wire.h"

/* A node to attack, from a "STAGE=ENDPOINT" argument; sock: a DEALER
 * connected to it when hostile_targets was given a ZeroMQ context. */
struct hostile_target {
    char ep[SW_PROTO_EP_MAX];
    int stage;
    void *sock;
};

/* Parses n "STAGE=ENDPOINT" arguments into *out (calloc'd, n >= 1); with
 * zctx, opens a DEALER to each (no linger; hwm0: no send high-water mark).
 * -1 on a malformed argument (named on stderr, prog first) or a socket. */
int hostile_targets(const char *prog, char **args, int n, void *zctx, bool hwm0,
                    struct hostile_target **out);
/* A DEALER on zctx connected to ep without linger; NULL on failure. */
void *hostile_dealer(void *zctx, const char *ep, bool hwm0);

/* The loop run without blocking for s seconds, or until *stop is set. */
void hostile_run_for(uv_loop_t *loop, double s, volatile sig_atomic_t *stop);
/* For seconds, a round every 20 ms: fn(arg, t) for each of the n targets
 * (what it returns, the messages it sent, is summed and returned), the loop
 * run without blocking after each round. */
uint64_t hostile_rounds(uv_loop_t *loop, double seconds, const struct hostile_target *t, int n,
                        uint64_t (*fn)(void *arg, const struct hostile_target *t), void *arg);
/* Callbacks that do nothing: a transport closed, a response ignored. */
void hostile_closed(void *arg);
void hostile_ignored(struct sw_transport *t, int status, const struct sw_transport_msg *m,
                     void *arg);

/* Bodies of requests: STATE_GET {stage, which 0, off 0, n[, evil: a key
 * the protocol does not have]}, and {step} (PREPARE). */
size_t hostile_state_get_body(uint8_t *buf, size_t cap, int stage, uint64_t n, bool evil);
size_t hostile_step_body(uint8_t *buf, size_t cap, uint64_t step);

/* Seals type/rid/body with w and sends envelope and signature on z.  wait:
 * as fast as the socket takes them (retrying for 30 s while it is full);
 * else without blocking.  Answers waiting on z are read, and counted into
 * *answers when given; 0, or -1 when not sealed or not sent. */
int hostile_send(struct sw_wire *w, void *z, uint32_t type, uint64_t rid, const void *body,
                 size_t blen, bool wait, uint64_t *answers);
/* Answers waiting on z, read and counted (a response is one message). */
uint64_t hostile_drain(void *z);
/* Answers read on z for up to ms, until none came for a second. */
uint64_t hostile_settle(void *z, int ms);

/* A training stage record r of key id for the run, signed into *d (its
 * value packed into val, cap bytes: it must outlive *d); -1 when too big. */
void hostile_rec(struct sw_peer_rec *r, const uint8_t *pk, const char *ep, int stage,
                 uint64_t step, double tps);
int hostile_signed_rec(const struct sw_manifest *man, const struct sw_identity *id,
                       const struct sw_peer_rec *r, uint64_t seq, uint32_t ttl_s, uint8_t *val,
                       size_t cap, struct sw_dht_record *d);

/* Asks the lobby at lobby_ep for the run's manifest reply (its run
 * endpoints) through a lobby transport of id made here (*lobby, to close),
 * running loop until it answers or gives up; 0, or -1 on no answer. */
int hostile_manifest(uv_loop_t *loop, const struct sw_identity *id, const char *lobby_ep,
                     int timeout_ms, int retries, struct sw_transport **lobby,
                     struct sw_manifest_reply *r);
/* Joins the run's DHT through tr (*dht, to close; ep: where it serves,
 * NULL for a client) by the first n of eps; wait: running loop until it is
 * in.  0, or -1 when the node or its bootstrap failed, or (wait) it was not
 * in within 10 s. */
int hostile_join(uv_loop_t *loop, struct sw_transport *tr, const char *ep, const char **eps,
                 size_t n, bool wait, struct sw_dhtnode **dht);

#endif
