/*
 * node.h - what a swarmd process does: the bootstrap (DHT seed and
 * manifest seed) and the training node (join, sync, train, leave).
 *
 * Transports.  Each process binds two ROUTERs: the lobby at the address the
 * user gave (--listen; run id 0, serves only the manifest) and the run
 * transport on an ephemeral port of the same host (everything else, under
 * the run id, so nodes of other runs are dropped by net/wire.h).
 *
 * Discovery (the DHT).  Every process, the bootstrap included, runs a DHT
 * node (net/dhtnode.h) on its run transport; a joining node learns the
 * bootstrap's run endpoint with the manifest and joins the DHT through it.
 * A node publishes its stage record (status.h) under H(run, "stage", k)
 * with a ttl of SW_NODE_RECORD_TTL_S, again every SW_NODE_PUBLISH_MS and at
 * once when its state changes; on leaving it publishes state "leaving" with
 * a ttl of SW_NODE_LEAVE_TTL_S, which replaces its record on the nodes that
 * store it (a node killed outright drops out when its record expires).
 * Every SW_NODE_SCAN_MS (the bootstrap: SW_NODE_BOOT_SCAN_MS) a process gets
 * the S stage keys (struct sw_status_scan) and keeps the result as its table
 * of the run: stage choice, the leader's plan, state copies, metrics and
 * swarmctl all read it.  The highest step any record showed is the run's
 * step as far as this process knows.
 *
 * Steps (the step barrier).  The leader is the stage-0 node with the lowest
 * public key.  For step s it sends PREPARE(s) to every node in the table; a
 * node answers READY once it holds the state after step s-1 (deferring the
 * answer while it finishes s-1 or copies a replica's state).  The leader
 * then sends GO(s, plan) to the ready nodes: per stage, their keys in key
 * order with the capacity each advertised in its stage record.  Every node
 * derives from those the same assignment of microbatches to the nodes of
 * each stage (sw_route_assign: weighted by capacity, round robin when the
 * capacities are equal or unknown); stage-0
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
 * Failures (swarmd(1), "Failures").  A node is dead after dead_ms (--dead-ms)
 * without a new version of its stage record (records are refreshed every
 * dead_ms / 3; a record seen for the first time is judged by its age), after
 * two unanswered leader pings (every SW_NODE_PING_MS to the nodes of a
 * running step, timeout dead_ms / 3), at once when its record says
 * "leaving", or at once when a port probe is refused: a node whose record
 * is late (no new version for dead_ms / 3) or that missed a ping gets a TCP
 * connect to its run endpoint, which the kernel accepts however busy the
 * process is, so a refusal means the process is gone (killed: detected in
 * about a second on one host; a timeout or success proves nothing).  dead_ms
 * stays the bound for what a probe cannot tell (a host cut off); it must
 * exceed a loop stall (a compute step) on a loaded machine, where records
 * are seen up to 2.5 s apart on 2 cores: hence 3 s.  Dead nodes leave the
 * table.  A --stage auto newcomer counts a record only once its node gave a
 * sign of life it saw itself (a new version, an answer to a ping), waiting
 * at most dead_ms and a scan (auto_confirm), so that a node killed a moment
 * ago does not hold its stage.  The leader then sends GO again for
 * the running step with a higher version ("ver") and the dead node left
 * out; every node keeps the FWD and BWD payloads it sent in the step (xout,
 * dxout) and resends those whose neighbour changed, so that nothing is
 * recomputed upstream and neighbours that already used a message are left
 * alone (a node that already finished the step resends too, until the next
 * step starts).  A stage with no node left pauses the step until a node of
 * that stage is training at the step: a newcomer that found no replica to
 * copy and both neighbours alive rebuilds the stage by CheckFree
 * (src/checkfree.h: both neighbours' slabs fetched at once, their last
 * pre-clip norms from STATE) and resumes the step its predecessor is in.
 * State transfers (CheckFree, replica copy) keep SW_NODE_STATE_WINDOW
 * pieces of SYNC_CHUNK floats in flight per source, taken in any order;
 * all must be of one step (a piece of another restarts that source under
 * a new generation, older answers dropped).
 * Under CheckFree+ (recovery.mode checkfree+) every odd microbatch takes
 * the swapped route (node.c, "Routes": stages 0 and S-1 are visited twice,
 * FWD and BWD name the hop), the first node of stage 0 (S-1) pushes the
 * embedding (final norm + head) to the nodes of stage 1 (S-2) after every
 * update (REPLICA), and a lost boundary stage is rebuilt from its partner's
 * blocks and that replica, a lost partner from its boundary stage's blocks.
 * Two adjacent lost stages (and a boundary stage without CheckFree+)
 * cannot be rebuilt: every node stops with SW_EXIT_LOST and a message
 * naming them.
 *
 * Checkpoints (ckptnet.h).  A node with --ckpt-dir DIR saves, after every
 * step that is a multiple of the manifest's [checkpoint] every (and after
 * the last), its share of its stage into DIR: among the nodes of the stage
 * in the plan of the step just done each tensor is written by exactly one
 * (sw_ckptnet_assign, balanced by bytes); training blocks for a host copy
 * of the whole stage only, a libuv worker writes and fsyncs (a save due
 * while one is being written is skipped, logged).  A keeper (mode
 * "keeper") joins the DHT but serves no stage; it publishes a keeper
 * record (its endpoint and newest committed step) under H(run, "keeper").
 * Every N steps it asks every node of every stage which tensors of step s
 * they hold (CKPT_INFO_GET: written on disk, or the host copy in memory),
 * pulls each tensor from a node that wrote it (CKPT_GET, pieces of 4 MiB,
 * hash-checked), another replica when one vanished, and commits all
 * stages together with sw_ckpt_save (src/ckpt.h).  A stage whose nodes
 * save nothing locally falls back to STATE_GET with snap: s (a node at s
 * copies params, m, v and scalars into a host snapshot at once, one before
 * s when its update reaches s, answering -EAGAIN meanwhile, one past s
 * answers -ENOENT and the keeper aims later).  The keeper answers
 * CKPT_INFO_GET / CKPT_GET from its own committed checkpoints too.  A node
 * with --from-checkpoint DIR and no live replica of its stage restores the
 * stage from DIR's newest clean checkpoint (resharded by tensor name), or,
 * with --from-checkpoint keeper (or a DIR absent on its machine), fetches
 * it from the keeper the DHT names: at the checkpoint's step when the run
 * is restarting, or, when the run went on and lost the stage where
 * CheckFree cannot rebuild it, with the checkpoint's tensors at the step
 * in progress; survivors with --from-checkpoint and a committed checkpoint
 * wait for such nodes rather than stop with SW_EXIT_LOST.
 *
 * Hostile peers.  A malformed body, a tensor of the wrong shape or a
 * non-finite one bans the sender for ban_ms (struct ban, local to the
 * node); tensors must come from the node the plan names, and well-formed
 * ones from strangers are dropped (counted) without a ban.
 *
 * Threading: everything runs on the libuv loop thread, training included.
 */
#ifndef SW_NODE_H
#define SW_NODE_H

#include "sw.h"

#define SW_NODE_RECORD_TTL_S 10        /* stage record ttl */
#define SW_NODE_PUBLISH_MS 3000         /* refresh, well inside the ttl */
#define SW_NODE_LEAVE_TTL_S 2           /* the "leaving" record */
#define SW_NODE_LEAVE_WAIT_MS 1500      /* at most, for that put to finish */
#define SW_NODE_SCAN_MS 500             /* a node reads the stage keys */
#define SW_NODE_BOOT_SCAN_MS 1000       /* the bootstrap does (logs, metrics) */
#define SW_NODE_DHT_RPC_MS 1000         /* DHT request timeout */
#define SW_NODE_DHT_QUESTIONABLE_MS 5000 /* DHT contacts silent this long are pinged */
#define SW_NODE_STALL_MS 30000
#define SW_NODE_DEAD_MS 3000            /* default --dead-ms */
#define SW_NODE_PING_MS 500             /* the leader pings the nodes of a running step */
#define SW_NODE_STATE_WINDOW 8         /* STATE pieces (4 MiB) in flight per source */
#define SW_NODE_BAN_MS 60000            /* default --ban-ms */
#define SW_NODE_MAX_BANS 64
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
    SW_EXIT_LOST = 5,     /* a stage is lost and nothing can rebuild it (adjacent stages,
                             a boundary stage, no checkpoint): the run stops */
};

struct sw_node_opts {
    char mode[16];        /* "bootstrap", "join" or "keeper" */
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
    int dead_ms;          /* silent this long: dead (0: SW_NODE_DEAD_MS) */
    int ban_ms;           /* a peer that sent a bad message is ignored this long */
    char from_ckpt[4096]; /* join: restart the stage from this checkpoint folder, or "keeper"
                             (or a folder absent here): from the keeper ("": no) */
    char ckpt_dir[4096];  /* keeper: checkpoint folder ("": the manifest's [checkpoint] dir);
                             join: folder of the local saves ("": none) */
    int ckpt_every;       /* keeper: steps between checkpoints (0: the manifest's) */
    int ckpt_keep;        /* keeper: checkpoints kept (0: the manifest's) */
};

/* Run a swarmd process to its end; returns an exit code (enum sw_node_exit). */
int sw_node_main(const struct sw_node_opts *o);

#endif
