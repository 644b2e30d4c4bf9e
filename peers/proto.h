/*
 * proto.h - the peers/ messages (types 512-1023; swarm-protocol(7), PEER
 * MESSAGES) and small helpers to build and read their msgpack bodies.
 *
 * Bodies are decoded strictly: sw_proto_only() refuses a key that the type
 * does not know, sw_proto_get_*() a missing or mistyped one.  Callers count
 * refusals as malformed drops (sw_wire_count_drop).
 *
 * Two run ids are used.  The lobby (run id of 32 zero bytes) carries only
 * MANIFEST_GET/MANIFEST, so that a newcomer who knows nothing but an address
 * can learn the manifest and from it the run id and the bootstrap's run
 * endpoint (where it joins the DHT); everything else, the DHT included, travels on
 * the run's own transport, so a node of another run is dropped by net/wire.h
 * before any handler sees it.
 */
#ifndef SW_PROTO_H
#define SW_PROTO_H

#include "sw.h"

#include <msgpack.h>

#include "wire.h"

enum sw_peer_msg {
    SW_MSG_MANIFEST_GET = 512, /* lobby request {} */
    SW_MSG_MANIFEST = 513,     /* {manifest: bin, owner: bin32, sig: bin64, ep: str, boot: str} */
    /* 514-517 were ANNOUNCE, DIR_GET and DIR: stage records now live in the DHT (status.h) */
    SW_MSG_STATE_GET = 518,    /* request {stage, which, off, n, snap?, hstep?} */
    SW_MSG_STATE = 519,        /* {err, step, t, lr_mult, norm, normc?, numel, off, n}; payload
                                  floats (normc: answers to a snap) */
    SW_MSG_PREPARE = 520,      /* request {step} */
    SW_MSG_READY = 521,        /* {step, ok, hash: bin32} */
    SW_MSG_GO = 522,           /* one-way {step, ver, plan: [[{pk, ep, w}...] per stage],
                                  att: [bin32|nil per stage]} */
    SW_MSG_FWD = 524,          /* one-way {step, mb, hop, route: [ep...]}; payload x f32 + targets i32 */
    SW_MSG_BWD = 526,          /* one-way {step, mb, hop}; payload dx f32 */
    SW_MSG_GRAD = 528,         /* one-way {step, ver, stage, count, loss, hash, off, n, of?};
                                  payload coded (f32 with of) */
    SW_MSG_REPLICA = 530,      /* one-way {step, kind}; payload f32: CheckFree+ embedding/head */
    SW_MSG_GRAD_ASK = 532,     /* one-way {step, stage, of: bin32}: relay of's partial (GRAD) */
    /* checkpoints over the network (ckptnet.h) */
    SW_MSG_CKPT_INFO_GET = 540, /* request {step, stage} */
    SW_MSG_CKPT_INFO = 541,    /* {err, step, S, t, lr_mult, norm, normc, have: bin, mem: bool} */
    SW_MSG_CKPT_GET = 542,     /* request {step, name, off, n} */
    SW_MSG_CKPT = 543,         /* {err, step, name, off, n, length, hash: bin32}; payload bytes */
    /* the reachability verdict at join (reach.h) */
    SW_MSG_REACH_ASK = 550,    /* request {ep: str}: dial me back there */
    SW_MSG_REACH = 551,        /* {res: uint, seen: str} */
    SW_MSG_REACH_PROBE = 552,  /* request {nonce: bin16}, the dial-back */
    SW_MSG_REACH_ECHO = 553,   /* {nonce: bin16}, signed by the node dialled */
};

#define SW_PROTO_EP_MAX 128
#define SW_PROTO_MAX_NODES 128   /* nodes of a run one process keeps in its table */
#define SW_PROTO_MAX_REPLICAS 16 /* nodes of one stage in a step's plan */

/*
 * The state a stage record publishes (status.h; swarm-protocol(7), STAGE
 * RECORDS): joining is a node whose state is a copy of a replica's, until
 * it took part in a step (it trains, but does not lead yet).
 */
enum sw_rec_state { SW_REC_SYNCING = 0, SW_REC_TRAINING = 1, SW_REC_LEAVING = 2, SW_REC_DONE = 3,
                    SW_REC_JOINING = 4 };

/* The node holds a state of its stage (a copy, a rebuild or a restore may
 * read it). */
static inline bool
sw_rec_has_state(int state)
{
    return state == SW_REC_TRAINING || state == SW_REC_JOINING || state == SW_REC_DONE;
}

/* The node trains: it takes part in the steps with a state of its stage
 * (JOINING: a copy, from the next step on). */
static inline bool
sw_rec_training(int state)
{
    return state == SW_REC_TRAINING || state == SW_REC_JOINING;
}

/* The node takes part in the run's steps, or is about to (the leader asks it). */
static inline bool
sw_rec_in_run(int state)
{
    return state == SW_REC_SYNCING || state == SW_REC_TRAINING || state == SW_REC_JOINING;
}

/*
 * A message body being built: one msgpack map of at most an envelope's
 * bytes (b.overflow set when it did not fit).  Callers keep one per
 * process or module and fill it with sw_body_init and msgpack_pack_* on pk.
 */
struct sw_body {
    uint8_t data[SW_WIRE_MAX_ENVELOPE];
    struct sw_wire_buf b;
    msgpack_packer pk;
};

void sw_body_init(struct sw_body *b);

/* Puts PREPARE, READY, GO, FWD, BWD, GRAD and REPLICA in w's pipeline
 * sequence class and the bulk answers STATE and CKPT in its bulk class
 * (net/wire.h "Sequence windows"): every process of a run must, or its
 * pipeline messages look stale to the others. */
int sw_proto_pipeline_class(struct sw_wire *w) SW_WARN_UNUSED;

/* The run id of the lobby: 32 zero bytes. */
extern const uint8_t sw_proto_lobby_run[32];

/*
 * Decodes body (one msgpack map whose keys are all in keys[]) into u:
 * true, and the caller destroys u; false (u destroyed) when malformed.
 */
bool sw_proto_open(const void *body, size_t len, msgpack_unpacked *u, const char *const *keys);
/* The "err" of an answer (an integer of either sign). */
int sw_proto_get_err(const msgpack_object *map, int64_t *err) SW_WARN_UNUSED;

const msgpack_object *sw_proto_get(const msgpack_object *map, const char *key);
/* True when map is a map whose keys are all in keys[] (NULL-terminated), once each. */
bool sw_proto_only(const msgpack_object *map, const char *const *keys);
int sw_proto_get_u64(const msgpack_object *map, const char *key, uint64_t *v) SW_WARN_UNUSED;
int sw_proto_get_f64(const msgpack_object *map, const char *key, double *v) SW_WARN_UNUSED;
int sw_proto_get_bool(const msgpack_object *map, const char *key, bool *v) SW_WARN_UNUSED;
/* bin of exactly n bytes (n 0: any length, *len set) */
int sw_proto_get_bin(const msgpack_object *map, const char *key, const uint8_t **p, size_t *len)
    SW_WARN_UNUSED;
/* str copied into buf (NUL-terminated, printable ASCII, < cap bytes) */
int sw_proto_get_str(const msgpack_object *map, const char *key, char *buf, size_t cap)
    SW_WARN_UNUSED;
int sw_proto_str(const msgpack_object *o, char *buf, size_t cap) SW_WARN_UNUSED;
bool sw_proto_is_uint(const msgpack_object *o);

/* The first 12 hex digits of a public key, for logs (out returned). */
char *sw_proto_who(char out[13], const uint8_t *pk);

void sw_proto_pack_key(msgpack_packer *pk, const char *k);
void sw_proto_pack_str(msgpack_packer *pk, const char *s);
void sw_proto_pack_bin(msgpack_packer *pk, const void *p, size_t n);

#endif
