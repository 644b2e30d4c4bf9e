/*
 * node.h - what a swarmd process does: the bootstrap (directory and
 * manifest seed) and the training node (join, sync, train, leave).
 *
 * Transports.  Each process binds two ROUTERs: the lobby at the address the
 * user gave (--listen; run id 0, serves only the manifest) and the run
 * transport on an ephemeral port of the same host (everything else, under
 * the run id, so nodes of other runs are dropped by net/wire.h).
 *
 * Directory.  A node announces itself to the bootstrap every
 * SW_NODE_ANNOUNCE_MS with a stage record {stage, ep, state, step, tps, cap,
 * loss, norm, hash, recoveries} signed by the envelope; the bootstrap keeps
 * it for SW_NODE_RECORD_TTL_MS (its own clock: no clock sync) under the key
 * H(run, "stage", k) and hands the whole table out on DIR_GET.  Nodes fetch
 * the table as often as they announce.
 *
 * Steps (the step barrier).  The leader is the stage-0 node with the lowest
 * public key.  For step s it sends PREPARE(s) to every node in the table; a
 * node answers READY once it holds the state after step s-1 (deferring the
 * answer while it finishes s-1 or copies a replica's state).  The leader
 * then sends GO(s, plan) to the ready nodes: per stage, their keys in key
 * order.  Microbatch m goes to node m mod n of each stage (route.h); stage-0
 * nodes draw all M microbatches from the data stream (so that every replica
 * keeps the same cursor), run their own ones forward and send FWD along the
 * route; the last stage computes the loss and sends BWD back along the
 * route.  A node runs its backwards in increasing microbatch order (holding
 * early arrivals), so with one node per stage the gradient sums are
 * swarmsim's.  When all its microbatches are through, a node of a
 * replicated stage sends its partial gradient (and a hash of its parameters)
 * to its replicas; each sums the partials in plan order, so all replicas
 * apply the same update and stay bit-identical.  A PREPARE for the step in
 * progress (the leader gave up on it after SW_NODE_STALL_MS) aborts and
 * restarts it.
 *
 * Threading: everything runs on the libuv loop thread, training included.
 */
#ifndef SW_NODE_H
#define SW_NODE_H

#include "sw.h"

#define SW_NODE_ANNOUNCE_MS 500
#define SW_NODE_RECORD_TTL_MS 5000
#define SW_NODE_STALL_MS 30000
#define SW_NODE_MAX_NODES 128
#define SW_NODE_MAX_REPLICAS 16

enum sw_node_state { SW_NODE_SYNCING = 0, SW_NODE_TRAINING = 1, SW_NODE_LEAVING = 2,
                     SW_NODE_DONE = 3 };

/* Exit codes of swarmd (swarmd(1), EXIT STATUS). */
enum sw_node_exit {
    SW_EXIT_OK = 0,       /* trained to the end, or left on a signal */
    SW_EXIT_FAIL = 1,     /* runtime failure (compute, memory) */
    SW_EXIT_USAGE = 2,    /* bad command line */
    SW_EXIT_MANIFEST = 3, /* manifest refused: unsigned, wrong owner, malformed, out of range */
    SW_EXIT_NOPEER = 4,   /* the peer could not be reached */
    SW_EXIT_LOST = 5,     /* the stage has no live node to copy and the run has started */
};

struct sw_node_opts {
    char mode[16];        /* "bootstrap" or "join" */
    char run[4096];       /* bootstrap: the manifest file (FILE.sig beside it) */
    char listen[256];     /* lobby endpoint */
    char peer[256];       /* join: a lobby endpoint */
    char stage[16];       /* "auto" or a number */
    char data[8192];      /* overrides [data] path */
    char device[16];
    int threads;
    char owner[80];       /* hex Ed25519 key the manifest must be signed by */
    char key[4096];       /* key directory ("" : a fresh key in memory) */
    char metrics[256];    /* HOST:PORT of the Prometheus endpoint ("" : off) */
    char log_level[16];
    int linger_ms;        /* after the last step, before exiting */
    int exit_at_end;      /* join: exit once the manifest's steps are done */
};

/* Run a swarmd process to its end; returns an exit code (enum sw_node_exit). */
int sw_node_main(const struct sw_node_opts *o);

#endif
