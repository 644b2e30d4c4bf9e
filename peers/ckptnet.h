/*
 * ckptnet.h - checkpoints over the network: every node's local save of its
 * part of the stage, the server that answers CKPT_INFO_GET / CKPT_GET (a
 * training node from its local checkpoint, a keeper from its committed
 * ones), the puller that collects one stage's tensors from such servers,
 * and the keeper's DHT record.  swarmd(1) "Checkpoints", swarm-protocol(7)
 * "CHECKPOINT MESSAGES".
 *
 * Local saves.  A node given a folder (swarmd join --ckpt-dir DIR) saves the
 * state after step s when s is a multiple of the manifest's [checkpoint]
 * every, and after the run's last step.  The cadence is the manifest's
 * only: every replica of a stage must save the same steps.  Among the k
 * nodes of the stage in the plan of the step just done (in key order), each
 * tensor (its parameter and both AdamW moments) is written by exactly one
 * node: sw_ckptnet_assign gives the tensors, by descending byte size (ties:
 * layout order), each to the node with the fewest bytes so far (ties: the
 * lowest index), so every replica computes the same split and replicas
 * never write the same bytes twice.  The save is asynchronous: the training
 * thread copies the whole stage (params, m, v) into one pre-allocated host
 * buffer (the only blocking part, logged), and a libuv worker
 * (uv_queue_work) writes this node's tensors with sw_ckpt_save (a layout
 * listing only them, with the stage's offsets) into DIR/step-N, fsync'ed
 * and committed, and reopens the step (sw_ckpt_open, every hash checked).
 * A save that falls due while the last one is still being written is
 * skipped and logged.  The host buffer keeps the whole stage of the last
 * save until the next one, so any replica can serve a tensor of that step
 * from memory when its writer vanished.  One writer per DIR: two nodes
 * must not share a folder.
 *
 * Serving.  CKPT_INFO_GET {step, stage} answers which tensors of the
 * requester's layout of `stage` (the manifest's stage count, tensors in
 * layout order, as a bitmap) the server holds committed at `step`, whether
 * it holds the whole stage at that step in memory, and the stage's scalars.
 * A node answers -EAGAIN while it has not reached the step or is still
 * writing it, -ENOENT once it went past it without a save or no longer
 * holds it (the answer's step is then its newest committed step, 0 none:
 * a keeper aims there rather than at a step the node records still tell),
 * -ENOTSUP when local saves are off.  A node serves its newest committed
 * step, the one committed before it (held open after the next commit: a
 * pull that began on it reads on, from the open descriptors even once
 * pruning removed its files), and one older step still named by a request
 * within SW_CKPTNET_PIN_MS (a pull of a big stage over a slow link spans
 * many saves; t0425: 2.6 MB at 2 Mbit/s while the run saves every 250 ms
 * never committed before).  Each request that a node answers, and each
 * that asks for its next save, notes the step; at most two steps more than
 * the newest stay open.  A keeper answers from DIR's checkpoint of `step`
 * (0: its newest), resharded by global name, -ENOENT when it has none, and
 * -ECONFIG when it holds another model.  CKPT_GET {step, name, off, n}
 * answers bytes [off, off + n) (n <= SW_CKPTNET_PIECE) of a tensor (global
 * name with the .adam_m/.adam_v suffix for moments), with its full length
 * and the BLAKE2b-256 of its full bytes: from disk the whole tensor is read
 * hash-checked (sw_ckpt_read_raw) and kept for the next pieces.
 *
 * Pulling.  A struct sw_ckptnet_pull fills a host buffer with the tensors
 * of a layout at one step: it asks every source for its CKPT_INFO in
 * parallel, picks for each tensor a source that wrote it (else one holding
 * it in memory), fetches the pieces one at a time and checks each tensor's
 * hash; a source that fails (timeout, error, bad hash) is dropped and its
 * tensors are taken from another, or the sources are asked again.  It
 * never waits on a dead node: a source that the caller no longer lists
 * (its node left or was declared dead) is dropped at once, in flight or
 * not; a round of CKPT_INFO goes on without the sources still silent once
 * the answers cover every tensor from files, or after
 * SW_CKPTNET_INFO_WAIT_MS from memory, and without a source whose
 * CKPT_INFO timed out before in this pull once another answered; every
 * request is one try (SW_CKPTNET_INFO_MS, SW_CKPTNET_RPC_MS).  Requests in flight hold no
 * pointer into the pull: it can be released or abandoned at any time.
 *
 * Keeper record.  A keeper publishes a signed DHT record under
 * H(run, "keeper") = BLAKE2b-256(run id || "keeper"): msgpack {ver 1, ep
 * str, step uint (newest committed step, 0 none), [cert bin: the keeper's
 * membership certificate, absent with the owner's key]}, ttl
 * SW_CKPTNET_REC_TTL_S, refreshed every SW_CKPTNET_PUBLISH_MS.  Nodes find it
 * with struct sw_ckptnet_finder, which passes over the records its admit
 * hook refuses (an owner-mode run: a publisher without a valid certificate),
 * so a stranger's record cannot point nodes at a keeper whose answers their
 * transport would drop.
 *
 * Threading: everything runs on the loop thread except the save's worker,
 * which reads the host buffer and the subset layout and fills its own
 * struct sw_ckpt; nothing else touches those while a save is written.
 */
#ifndef SW_CKPTNET_H
#define SW_CKPTNET_H

#include "sw.h"

#include <uv.h>

#include "ckpt.h"
#include "dhtnode.h"
#include "model.h"
#include "proto.h"
#include "transport.h"

#define SW_CKPTNET_PIECE (4u << 20)     /* bytes per CKPT piece */
#define SW_CKPTNET_REC_TTL_S 10         /* the keeper's record */
#define SW_CKPTNET_PUBLISH_MS 3000
#define SW_CKPTNET_RPC_MS 5000         /* a piece: one try */
#define SW_CKPTNET_INFO_MS 2000        /* a CKPT_INFO_GET: one try */
#define SW_CKPTNET_INFO_WAIT_MS 500    /* a round waits this long for the silent ones */
#define SW_CKPTNET_PIN_MS 30000        /* node: a step asked this lately stays served */
#define SW_CKPTNET_ASKED 8             /* node: steps it remembers being asked for */
#define SW_CKPTNET_MAX_SRC (SW_PROTO_MAX_REPLICAS + 1)

/* Owner node (0..k-1) of every tensor of lay (owner[lay->ntensors]). */
void sw_ckptnet_assign(const struct sw_stage_layout *lay, int k, int *owner);

/* ---- the saver and server ---- */

/* Node: a committed local step kept open after newer ones (ckptnet.c). */
struct sw_ckptnet_held {
    struct sw_ckpt ck;
    bool on;
    uint64_t step;
    bool *own;                    /* [lay.ntensors]: the tensors it wrote */
    struct sw_ckpt_stage_state st;
};

struct sw_ckptnet {
    uv_loop_t *loop;
    struct sw_transport *tr;
    struct sw_model_config cfg;   /* the manifest's */
    struct sw_optim_config oc;
    uint64_t seed;
    int S, M, steps, every, keep;
    bool keeper;
    char dir[4096];               /* node: local folder ("": saves off); keeper: its folder */
    const uint64_t *stepp;        /* node: its steps completed */
    /* node: the stage and the save */
    int stage;                    /* -1 until the first save */
    struct sw_stage_layout lay;
    bool have_lay;
    struct sw_tensor_info *subt;  /* [lay.ntensors]: this save's tensors */
    struct sw_stage_layout sub;   /* lay restricted to subt (same offsets) */
    bool *own, *ck_own;           /* [lay.ntensors]: the save written / committed */
    float *buf;                   /* host [3, lay.numel] */
    uint64_t buf_step;            /* the step buf holds (0: none) */
    struct sw_ckpt_stage_state buf_st;
    struct sw_ckpt_run run;
    bool writing;
    uv_work_t work;
    int werr;
    double block_s, write_s;
    struct sw_ckpt wck;           /* the worker's reopened step */
    bool have_wck;
    /* committed: the node's last local step, or the keeper's open step */
    struct sw_ckpt ck;
    bool have_ck, ck_stale;
    uint64_t ck_step;
    struct sw_ckpt_stage_state ck_st;
    /* node: [0] the step committed before the newest, [1] an older one a
     * pull still asks for, kept open after newer commits (their files may
     * be pruned: the open descriptors still read them) */
    struct sw_ckptnet_held held[2];
    struct { uint64_t step, ms; } asked[SW_CKPTNET_ASKED]; /* node: steps asked lately */
    /* one tensor kept for its next pieces */
    char cname[SW_NAME_MAX + 8];
    uint64_t cstep;
    bool cmem;
    uint8_t *cbuf;
    size_t clen, ccap;
    uint8_t chash[32];
    int nsaved, nskipped, nfailed;
    uint64_t served_bytes;
};

/* A node's (keeper false: dir may be "") or a keeper's server on tr, with
 * CKPT_INFO_GET and CKPT_GET registered.  Caller owns *c (zeroed). */
int sw_ckptnet_init(struct sw_ckptnet *c, uv_loop_t *loop, struct sw_transport *tr,
                    const struct sw_model_config *cfg, const struct sw_optim_config *oc,
                    uint64_t seed, int S, int M, int steps, int every, int keep, bool keeper,
                    const char *dir, const uint64_t *stepp) SW_WARN_UNUSED;
/* Frees everything; call once the loop has run the last save's callback. */
void sw_ckptnet_release(struct sw_ckptnet *c);
/* Node: is a local save due after `step` steps? */
bool sw_ckptnet_due(const struct sw_ckptnet *c, uint64_t step);
/* Node: the host buffer [3, lay->numel] to copy the state after step into,
 * or NULL (-SW_EAGAIN in *err: the last save is still being written, the
 * save is skipped and logged). */
float *sw_ckptnet_save_begin(struct sw_ckptnet *c, const struct sw_stage_layout *lay, int stage,
                             uint64_t step, int *err);
/* Node: the buffer is filled; write this node's share (k nodes, this is
 * idx) on the worker.  block_s: the copy's time, for the log. */
int sw_ckptnet_save_queue(struct sw_ckptnet *c, const struct sw_ckpt_stage_state *st, int k,
                          int idx, double block_s) SW_WARN_UNUSED;
/* Keeper: a new step was committed into dir (reopen on the next request). */
void sw_ckptnet_committed(struct sw_ckptnet *c);
/* Keeper: newest clean step of dir (0: none), opening it. */
uint64_t sw_ckptnet_newest(struct sw_ckptnet *c);

/* ---- the puller ---- */

enum { SW_CKPTNET_SRC_IDLE = 0, SW_CKPTNET_SRC_ASKING, SW_CKPTNET_SRC_OK, SW_CKPTNET_SRC_AGAIN,
       SW_CKPTNET_SRC_NONE, SW_CKPTNET_SRC_NOTSUP, SW_CKPTNET_SRC_FAILED };

struct sw_ckptnet_pull;
struct sw_ckptnet_req;

struct sw_ckptnet_src {
    struct sw_ckptnet_pull *p;
    char ep[SW_PROTO_EP_MAX];
    int state;
    bool busy, mem;               /* busy: its request rq is awaited */
    uint64_t gen, rq;
    uint8_t *have;                /* [ntensors] */
    int ntake;                    /* tensors taken from it */
};

enum { SW_CKPTNET_PULL_INFO = 0, SW_CKPTNET_PULL_PIECES, SW_CKPTNET_PULL_DONE,
       SW_CKPTNET_PULL_FAILED };

struct sw_ckptnet_pull {
    struct sw_transport *tr;
    const struct sw_stage_layout *lay; /* borrowed: the tensors wanted */
    float *buf;                   /* borrowed: host [3, lay->numel] */
    int stage;                    /* the requester's stage (its layout) */
    uint64_t want, step;          /* asked (0: newest), and the step being pulled */
    uint64_t newest;              /* the newest step a source that went past want holds */
    int phase, status;            /* status: of FAILED */
    uint64_t gen, retry_ms, t0_ms, round_ms, serial;
    struct sw_ckptnet_req *reqs;  /* requests in flight (ckptnet.c) */
    char slow[SW_CKPTNET_MAX_SRC][SW_PROTO_EP_MAX]; /* sources whose CKPT_INFO timed out */
    int nslow;
    int nsrc;
    struct sw_ckptnet_src src[SW_CKPTNET_MAX_SRC];
    int *from;                    /* [ntensors] source index */
    int ti, which;
    size_t off;
    bool have_hash;
    uint8_t hash[32];
    struct sw_ckpt_stage_state st;
    int saved_S;
    uint64_t bytes;
    int n_disk, n_mem, rounds, fails;
};

/* Pull lay's tensors of step want (0: the source's newest) into buf. */
int sw_ckptnet_pull_init(struct sw_ckptnet_pull *p, struct sw_transport *tr,
                         const struct sw_stage_layout *lay, int stage, float *buf,
                         uint64_t want) SW_WARN_UNUSED;
void sw_ckptnet_pull_release(struct sw_ckptnet_pull *p);
/*
 * Drive it: eps[neps] are the sources to ask when a round of CKPT_INFO
 * starts, and the sources still alive (one in flight that is not listed is
 * dropped).  Returns 0 while in progress, 1 done (buf, st, step filled),
 * -SW_ENOENT when no source has the step nor will have it, -SW_ENOTSUP
 * when every source answered that local saves are off, -SW_ECONFIG when a
 * source holds another model.
 */
int sw_ckptnet_pull_tick(struct sw_ckptnet_pull *p, const char (*eps)[SW_PROTO_EP_MAX], int neps);
/* Give up: late answers are dropped (FAILED, -SW_ECANCELED). */
void sw_ckptnet_pull_abandon(struct sw_ckptnet_pull *p);
/* A request is awaited (release and abandon are safe all the same). */
bool sw_ckptnet_pull_busy(const struct sw_ckptnet_pull *p);

/* ---- the keeper's record ---- */

void sw_ckptnet_keeper_key(uint8_t key[32], const uint8_t run[32]);
/* Publish (sk: the keeper's secret key, seq grows with every call). */
int sw_ckptnet_publish(struct sw_dhtnode *dht, const uint8_t run[32], const uint8_t *sk,
                       const uint8_t *cert, size_t cert_len, const char *ep, uint64_t step,
                       uint64_t seq) SW_WARN_UNUSED;

struct sw_ckptnet_finder {
    bool busy, found;
    int lookups;                  /* completed */
    char ep[SW_PROTO_EP_MAX];
    uint64_t step, at_ms;
    uint64_t unadmitted;          /* records the hook refused */
    /* NULL: every record counts; else one counts when it returns true */
    bool (*admit)(void *arg, const uint8_t pk[32], const uint8_t *cert, size_t len);
    void *admit_arg;
};
/* Start a lookup unless one is in flight or the last is younger than min_ms. */
void sw_ckptnet_find(struct sw_ckptnet_finder *f, struct sw_dhtnode *dht, const uint8_t run[32],
                     uint64_t min_ms);

#endif
