/*
 * node.h - a swarmd process: what the three roles share (node.c), and the
 * roles themselves, one file each, as git's builtin/<cmd>.c: the bootstrap
 * (bootstrap.c: DHT seed and manifest seed), the training node (join.c over
 * the trainer core, trainer.h) and the keeper (keeper.c: checkpoints of the
 * whole run, ckptnet.h).
 *
 * Transports.  Each process binds two ROUTERs: the lobby at the address the
 * user gave (--listen; run id 0, serves only the manifest) and the run
 * transport on an ephemeral port of the same host (everything else, under
 * the run id, so nodes of other runs are dropped by net/wire.h).
 *
 * Discovery (the DHT).  Every process, the bootstrap included, runs a DHT
 * node (net/dhtnode.h) on its run transport; a joining node learns the
 * bootstrap's run endpoint with the manifest and joins the DHT through it.
 * A training node publishes its stage record (status.h) under
 * H(run, "stage", k) (trainer.h says when); a process reads the S stage keys
 * with a scan (struct sw_status_scan) and keeps the result as its table of
 * the run.
 *
 * Admission.  Once the manifest is known, an owner-mode run ([admission]
 * mode = owner, admit.h) needs this node to be the owner or to hold a
 * certificate (--cert) that verifies for its key: else it exits with
 * SW_EXIT_ADMIT before it binds anything.  A certificate naming a stage
 * sets --stage auto to that stage and refuses any other.  The run
 * transport then presents the certificate in every envelope and drops,
 * before any handler, each message whose sender the admitter refuses,
 * except a DHT read (PING, FIND_NODE, FIND_VALUE) from a client that does not
 * serve (no "ep": swarmctl status reads the run without a certificate) and a
 * FIND_VALUE of the revocation list by a key refused as revoked or expired
 * (so that a member cut off learns why);
 * the scan drops the records of unadmitted publishers.  Every
 * SW_REVOKED_POLL_MS the process reads the revocation list; a revoked key
 * is dropped from then on, and a node that finds its own key revoked, or its
 * own certificate expired, exits with SW_EXIT_ADMIT.  The bootstrap puts the
 * newest list again every SW_REVOKED_EVERY_MS so that it outlives its DHT
 * ttl.
 *
 * Lifecycle of the process, one phase (struct sw_node.phase), changed in
 * node.c only, without a nested event loop anywhere:
 *   MANIFEST  join and keeper: the signed manifest is being fetched from
 *             --peer (the bootstrap reads its own file)
 *   DHT       the DHT is being joined through the bootstrap
 *   RUN       the role runs (its tick every SW_NODE_TICK_MS at the latest)
 *   CLOSING   the handles are closing; the loop ends when they are closed
 * A role says it is done by returning SW_NODE_DONE from its tick; its exit
 * code is the process's.  Signals (SIGINT, SIGTERM) go to the role's stop;
 * their handles stay installed (unreferenced once the node closes, so the
 * loop can end) through the role's release, and are replaced by SIG_IGN
 * when they finally close at the end of sw_node_main: a second signal
 * reaches the role too (a training node then leaves at once) or is logged
 * and ignored, never the default action.
 *
 * Threading: everything runs on the libuv loop thread.
 */
#ifndef SW_NODE_H
#define SW_NODE_H

#include "sw.h"

#include <uv.h>

#include "admit.h"
#include "dhtnode.h"
#include "identity.h"
#include "live.h"
#include "manifest.h"
#include "metrics.h"
#include "proto.h"
#include "reach.h"
#include "status.h"
#include "transport.h"

#define SW_NODE_TICK_MS 20              /* the longest a role waits for its tick */
#define SW_NODE_REJOIN_MS 5000          /* an empty DHT table: join again this often */
#define SW_NODE_BOOT_SCAN_MS 1000       /* the bootstrap reads the stage keys (logs, metrics) */
#define SW_NODE_DHT_RPC_MS 1000         /* DHT request timeout */
#define SW_NODE_DHT_QUESTIONABLE_MS 5000 /* DHT contacts silent this long are pinged */

/* Exit codes of swarmd (swarmd(1), EXIT STATUS). */
enum sw_node_exit {
    SW_EXIT_OK = 0,       /* trained to the end, or left on a signal */
    SW_EXIT_FAIL = 1,     /* runtime failure (compute, memory) */
    SW_EXIT_USAGE = 2,    /* bad command line */
    SW_EXIT_MANIFEST = 3, /* manifest refused: unsigned, wrong owner, malformed, out of range */
    SW_EXIT_NOPEER = 4,   /* the peer could not be reached */
    SW_EXIT_LOST = 5,     /* a stage is lost and nothing can rebuild it (adjacent stages,
                             a boundary stage, no checkpoint): the run stops */
    SW_EXIT_ADMIT = 6,    /* not admitted: an owner-mode run and no valid certificate for
                             this key (missing, expired, another run or node, a --stage it
                             does not allow), or the owner revoked it */
};

struct sw_node_opts {
    char mode[16];        /* "bootstrap", "join" or "keeper" */
    char run[4096];       /* bootstrap: the manifest file (FILE.sig beside it) */
    char listen[256];     /* lobby endpoint */
    char advertise[256];  /* join: the run endpoint others dial ("": the one bound) */
    int relay;            /* bootstrap, join: relay for outbound-only nodes (reach.h) */
    char peer[256];       /* join: a lobby endpoint */
    char stage[16];       /* "auto" or a number */
    char data[8192];      /* overrides [data] path */
    char device[16];
    int threads;
    char owner[80];       /* hex Ed25519 key the manifest must be signed by */
    char key[4096];       /* key directory ("" : a fresh key in memory) */
    char cert[4096];      /* membership certificate file (admit.h; "": none) */
    char metrics[256];    /* HOST:PORT of the Prometheus endpoint ("" : off) */
    char log_level[16];
    char log_format[8];   /* "text" or "json" (base/log.h) */
    int linger_ms;        /* after the last step, before exiting */
    int exit_at_end;      /* join: exit once the manifest's steps are done */
    int dead_ms;          /* silent this long: dead (0: the trainer's default) */
    int ban_ms;           /* a peer that sent a bad message is ignored this long */
    char from_ckpt[4096]; /* join: restart the stage from this checkpoint folder, or "keeper"
                             (or a folder absent here): from the keeper ("": no) */
    char ckpt_dir[4096];  /* keeper: checkpoint folder ("": the manifest's [checkpoint] dir);
                             join: folder of the local saves ("": none) */
    int ckpt_every;       /* keeper: steps between checkpoints (0: the manifest's) */
    int ckpt_keep;        /* keeper: checkpoints kept (0: the manifest's) */
    char config[4096];    /* swarmd --config: the file the options above were read from
                             ("": none); not itself a key of the file */
};

/* Run a swarmd process to its end; returns an exit code (enum sw_node_exit). */
int sw_node_main(const struct sw_node_opts *o);

/* ---- what the roles share (node.c) ---- */

enum sw_node_phase { SW_NODE_MANIFEST = 0, SW_NODE_DHT, SW_NODE_RUN, SW_NODE_CLOSING };

#define SW_NODE_DONE UINT64_MAX /* a role's tick: the role is done, close */

struct sw_node;

struct sw_role {
    const char *name;     /* for swarm_info{role=...} */
    /* the DHT is joined (the bootstrap: it is up); 0 or an exit code */
    int (*start)(struct sw_node *n);
    /* its work; the next wake-up (absolute ms), or SW_NODE_DONE */
    uint64_t (*tick)(struct sw_node *n, uint64_t now);
    void (*signal)(struct sw_node *n, int sig);
    /* a scan of the stage keys ended (sw_node_scan) */
    void (*scanned)(struct sw_node *n, int status, const struct sw_peer_rec *recs, int cnt,
                    uint64_t max_step);
    /* its Prometheus lines (SW_NODE_METRIC) */
    int (*metrics)(struct sw_node *n, char *buf, size_t len, size_t *off);
    void (*release)(struct sw_node *n);
};

struct sw_node {
    struct sw_node_opts o;
    const struct sw_role *role;
    void *self;           /* the role's own struct */
    int phase, exit_code;
    uv_loop_t *loop;
    struct sw_identity id;
    struct sw_manifest man;
    bool have_man;
    uint8_t owner[32], sig[64];
    struct sw_transport *lobby, *tr;
    char lobby_ep[SW_PROTO_EP_MAX], ep[SW_PROTO_EP_MAX];
    char boot_ep[SW_PROTO_EP_MAX], peer_ep[SW_PROTO_EP_MAX];
    struct sw_dhtnode *dht;
    uint64_t rejoin_ms;               /* the last join of an emptied DHT table (on_tick) */
    struct sw_reach_srv reach_srv;    /* every role answers reachability checks (reach.h) */
    struct sw_reach_check reach;      /* join: this node's own, once in the DHT */
    struct sw_outbound outb;          /* join: the outbound-only mode, on when unreachable */
    struct sw_status_scan scan;
    bool have_scan;
    uv_timer_t tick;
    uv_signal_t sigint, sigterm;
    bool have_tick, have_signals; /* signals: installed until sw_node_main's end */
    struct sw_metrics *metrics;
    int nclose;
    /* admission (admit.h): the certificate this node presents, and in an
     * owner-mode run the admitter of its run transport and the scan */
    uint8_t cert[SW_CERT_MAX];
    size_t cert_len;
    uint8_t cert_by[32];          /* its signer (the owner's key when none) */
    uint64_t cert_exp;            /* its effective expiry, Unix s (0: none needed) */
    struct sw_admit admit;
    bool have_admit;
    uv_timer_t revoke_timer;      /* reads the revocation list (SW_REVOKED_POLL_MS) */
    uint8_t revoke_key[32];       /* its DHT key */
    bool revoke_pending;
    uint8_t revoke_val[SW_DHT_VALUE_MAX]; /* the newest list's DHT record, put again by */
    struct sw_dht_record revoke_rec;      /* the bootstrap (revoke_rec.val_len 0: none) */
    uint64_t revoke_put_ms;
};

extern const struct sw_role sw_bootstrap_role, sw_join_role, sw_keeper_role;

/* Is pk, presenting cert (len 0: none), admitted to the run?  (arg: the
 * node; an admit hook for the keeper finder, ckptnet.h) */
bool sw_node_key_admitted(void *arg, const uint8_t pk[32], const uint8_t *cert, size_t len);
/* Starts a scan of the stage keys (role->scanned gets it); -SW_EAGAIN while one runs. */
int sw_node_scan(struct sw_node *n) SW_WARN_UNUSED;
/*
 * The port probe: a TCP connect to a suspect node's endpoint (live.h), done
 * with SW_PROBE_REFUSED when the connection was refused (nothing listens
 * there any more: the process is gone), SW_PROBE_CONNECTED when it
 * connected (a process listens: busy, not gone; live.h, Busy nodes), else
 * SW_PROBE_UNKNOWN (a timeout, another error, an endpoint that is not
 * tcp://IP:PORT: proves nothing).
 * done is not called once the process is closing.
 */
/* A probe's outcome: refused (the process is gone), connected (a process
 * listens there), or neither (timed out, or no address to probe). */
enum sw_node_probe_res { SW_PROBE_UNKNOWN = 0, SW_PROBE_REFUSED, SW_PROBE_CONNECTED };
typedef void sw_node_probe_cb(void *arg, const uint8_t *pk, int res);
void sw_node_probe(struct sw_node *n, const uint8_t *pk, const char *ep, uint64_t timeout_ms,
                   sw_node_probe_cb *done, void *arg);
/* A request whose answer (status 0 and m) or failure comes to done with tag;
 * nothing comes once the process is closing. */
typedef void sw_node_answer_cb(void *arg, uint64_t tag, int status,
                               const struct sw_transport_msg *m);
int sw_node_request(struct sw_node *n, const char *ep, uint32_t type, const void *body,
                    size_t len, uint64_t timeout_ms, int retries, sw_node_answer_cb *done,
                    void *arg, uint64_t tag) SW_WARN_UNUSED;

/* A liveness table (live.h) whose probes go through the node, without pings:
 * the bootstrap's and the keeper's view of who is alive. */
struct sw_node_live {
    struct sw_live lv;
    struct sw_node *n;
};
void sw_node_live_init(struct sw_node_live *l, struct sw_node *n);

/* The tick runs again at the latest after ms. */
void sw_node_wake(struct sw_node *n, uint64_t ms);
/* sw_metrics_append (metrics.h), returning its error from the caller (a
 * role's metrics). */
#define SW_NODE_METRIC(buf, len, off, ...)                                     \
    do {                                                                       \
        int e_ = sw_metrics_append((buf), (len), (off), __VA_ARGS__);             \
        if (e_ < 0)                                                            \
            return e_;                                                         \
    } while (0)

/* The MANIFEST answer of the lobby (swarm-protocol(7), MANIFEST). */
struct sw_manifest_reply {
    const uint8_t *bytes, *owner, *sig; /* into the message */
    size_t len;
    char ep[SW_PROTO_EP_MAX], boot[SW_PROTO_EP_MAX];
};
/* Reads it; -SW_EMSG when malformed. */
int sw_node_manifest_read(const struct sw_transport_msg *m, struct sw_manifest_reply *r)
    SW_WARN_UNUSED;
/* Packs it into b. */
void sw_node_manifest_pack(struct sw_body *b, const struct sw_manifest *man, const uint8_t *owner,
                           const uint8_t *sig, const char *ep, const char *boot);

#endif
