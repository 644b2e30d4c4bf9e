/*
 * wire.h - signed msgpack envelopes: encoding, verification, drop accounting.
 *
 * A swarm message is 2 or 3 ZeroMQ frames (man/swarm-protocol.7 is the
 * normative description; this header is the C contract):
 *
 *   [envelope: one msgpack map][signature: 64 bytes][payload: optional]
 *
 * The envelope map has exactly these keys (str keys, any order, each once),
 * plus the optional "cert":
 *
 *   "v"     uint   protocol version, SW_WIRE_VERSION
 *   "t"     uint   message type (< 65536), see enum sw_msg_type
 *   "run"   bin 32 run id
 *   "from"  bin 32 sender's Ed25519 public key
 *   "seq"   uint   sender's sequence number (uint64), see "Sequence windows"
 *   "rid"   uint   request id: non-zero in a request and in its response,
 *                  0 in one-way messages
 *   "plen"  uint   payload frame length in bytes (0: no payload frame)
 *   "phash" bin 32 tree hash of the payload (sw_wire_payload_hash)
 *   "body"  map    type-specific fields (see "The body" below)
 *   "cert"  bin    optional, at most SW_WIRE_MAX_CERT bytes: the sender's
 *                  membership certificate (see "Certificate" below)
 *
 * The signature is Ed25519 by "from" over the exact envelope bytes as sent.
 *
 * The body.  Each message type owns the map under "body": its module encodes
 * it (any msgpack writer; msgpack_packer on a struct sw_wire_buf is handy) and
 * passes the encoded bytes, which must be exactly one msgpack map, to
 * sw_wire_seal (or the transport's send functions), which copy them verbatim
 * into the envelope; an empty body is the empty map (NULL, 0).  On receipt
 * sw_wire_open returns hdr->body/hdr->body_len: the verified bytes of that
 * map, a slice of the envelope buffer (valid as long as the envelope buffer),
 * and hdr->sender, the verified sender key.  The owning module decodes the
 * body with sw_wire_unpack (bounded, safe on hostile bytes), must itself
 * reject unknown, missing or mistyped fields, and should count its drops with
 * sw_wire_count_drop(w, SW_WIRE_DROP_MALFORMED, ...).  The body counts towards
 * SW_WIRE_MAX_ENVELOPE.
 *
 * Certificate.  sw_wire_set_cert makes every envelope this wire seals carry
 * the given bytes under "cert" (covered by the signature, like every key).
 * The wire does not interpret them: on receipt hdr->cert/hdr->cert_len point
 * at them (a slice of the envelope buffer; NULL/0 when the key is absent or
 * empty) and
 * the admission module (peers/admit.h) decides what they prove.  A "cert"
 * that is not a bin or is longer than SW_WIRE_MAX_CERT is MALFORMED.
 *
 * Checks on receipt, cheapest first (sw_wire_open); each failure returns a
 * negative code and bumps stats.drops[reason]:
 *   envelope > SW_WIRE_MAX_ENVELOPE or plen > max_payload  -SW_ETOOBIG  TOOBIG
 *   signature frame not 64 bytes, bad msgpack, ext types, depth > 16,
 *     unknown/missing/duplicate/mistyped key, version,
 *     "cert" over SW_WIRE_MAX_CERT                        -SW_EMSG      MALFORMED
 *   run id differs                                         -SW_ERUN      RUN
 *   plen differs from the payload frame's length           -SW_EHASH     LENGTH
 *   plen is 0 but phash is not the empty payload's hash    -SW_EHASH     HASH
 *   signature does not verify                              -SW_ESIG      SIG
 *   sequence already seen in its class's window            -SW_EREPLAY   REPLAY
 *   sequence older than its class's window                 -SW_EREPLAY   STALE
 * then sw_wire_check_payload: tree hash differs             -SW_EHASH     HASH
 * and for tensors sw_wire_tensor_check: length or shape     -SW_EMSG      MALFORMED
 *                                   NaN or Inf             -SW_ENONFINITE NONFINITE
 * The transport (net/transport.h) counts its own reasons in the same table:
 * ADMIT and RATELIMIT right after sw_wire_open (before the payload hash),
 * TYPE and UNMATCHED when dispatching.
 *
 * Sequence windows.  Every message type belongs to one of three sequence
 * classes: SW_WIRE_SEQ_PIPELINE, the types given to
 * sw_wire_set_pipeline_types (peers/ sets PREPARE, READY, GO, FWD, BWD, GRAD,
 * REPLICA), SW_WIRE_SEQ_BULK, the types given to sw_wire_set_bulk_types
 * (peers/ sets STATE_GET and CKPT_GET and their bulk answers STATE and
 * CKPT; net/transport.h, Bulk), and SW_WIRE_SEQ_OTHER,
 * every other type.  The class follows from
 * the (signed) type on both sides.  A sender keeps one counter per class and
 * the receiver one window per (sender key, class), so no amount of other
 * traffic (DHT, status) can push a pipeline message or a bulk answer out of
 * its window, and a flood of state requests (whose answers count in the
 * bulk class) cannot push a pipeline message out of its own.  A window
 * remembers the highest sequence seen (top) and which of the last W
 * sequences up to top were seen: W = SW_WIRE_WINDOW_OTHER (64) for the other
 * class, SW_WIRE_WINDOW_PIPELINE (1024) for the pipeline and bulk classes:
 * pipeline messages still race over two connections (the sender's DEALER to
 * our ROUTER, our DEALER to its ROUTER), and a 4 MiB bulk answer takes
 * seconds down a slow link while its sender answers others.  A sequence above top is accepted (the
 * window slides), one within the window is accepted once, one below it is
 * stale.  No clock is compared.  A sender starts every counter at its own
 * CLOCK_REALTIME in nanoseconds, so a restarted node with the same key
 * continues above its old numbers in each class.  Two nodes that disagree on
 * the pipeline types still interoperate (a class's sequences only have to
 * grow), they lose only the isolation.  The window is committed when the
 * signature verified (a later payload failure burns the sequence).  The
 * table holds max_senders senders (every class of one sender in one entry);
 * when full the least recently heard one is forgotten (documented limit: its
 * old messages could then be replayed once).
 *
 * Payload tree hash: the payload is cut into SW_WIRE_CHUNK (256 KiB) chunks,
 * the last one shorter; d_i = BLAKE2b-256(chunk i); the hash is
 * BLAKE2b-256(le64(len) || le64(SW_WIRE_CHUNK) || d_0 || ... || d_{n-1}).
 * Chunks may be hashed on several threads (sw_wire_set_hash_threads), eight
 * at a time on AVX-512F, four on AVX2 (net/blake2b4.h).
 *
 * Threading: a struct sw_wire is used by one thread at a time (the loop
 * thread of its transport).  sw_wire_payload_hash, sw_wire_unpack and the
 * tensor helpers are thread-safe.  Ownership: the caller owns struct sw_wire;
 * the wire borrows the identity, which must outlive it.
 */
#ifndef SW_WIRE_H
#define SW_WIRE_H

#include "sw.h"

#include <msgpack.h>

#include "identity.h"

#define SW_WIRE_VERSION 1
#define SW_WIRE_RUN_BYTES 32
#define SW_WIRE_HASH_BYTES 32
#define SW_WIRE_SIG_BYTES 64
#ifndef SW_WIRE_MAX_ENVELOPE
#define SW_WIRE_MAX_ENVELOPE (64 * 1024) /* bytes of the envelope frame */
#endif
#ifndef SW_WIRE_MAX_PAYLOAD
#define SW_WIRE_MAX_PAYLOAD (16u << 20) /* bytes of one payload frame */
#endif
#define SW_WIRE_CHUNK (256u << 10)      /* tree hash chunk: 8 fill the 8 AVX-512 lanes at 2 MiB */
#define SW_WIRE_MAX_DEPTH 16            /* msgpack nesting inside an envelope */
#define SW_WIRE_MAX_DIMS 8              /* tensor rank */
#define SW_WIRE_MAX_NAME 256            /* tensor name bytes */
#define SW_WIRE_MAX_CERT 1024           /* bytes of an envelope's "cert" */
#ifndef SW_WIRE_MAX_SENDERS
#define SW_WIRE_MAX_SENDERS 4096
#endif
#define SW_WIRE_WINDOW_OTHER 64         /* sequence window of the other class, bits */
#define SW_WIRE_WINDOW_PIPELINE 1024    /* sequence window of the pipeline class, bits */
#define SW_WIRE_MAX_PIPELINE_TYPES 32

/* Sequence classes (see "Sequence windows"). */
enum { SW_WIRE_SEQ_PIPELINE = 0, SW_WIRE_SEQ_OTHER = 1, SW_WIRE_SEQ_BULK = 2,
       SW_WIRE_SEQ_CLASSES = 3 };

/*
 * Message types: 1-255 wire and transport (this module), 256-511 DHT
 * (net/dht.h), 512-1023 peers/, 1024-65535 free for tests and extensions.
 */
enum sw_msg_type {
    SW_MSG_PING = 1,   /* request, body {} */
    SW_MSG_PONG = 2,   /* response to PING, body {} */
    SW_MSG_TENSOR = 3, /* body: see sw_wire_tensor_pack; payload: the tensor piece */
    SW_MSG_ACK = 4,    /* generic response, body {"err": int} (0 = ok, else -SW_E* code) */
    SW_MSG_DHT_FIRST = 256,
    SW_MSG_DHT_LAST = 511,
    SW_MSG_PEERS_FIRST = 512,
    SW_MSG_PEERS_LAST = 1023,
    SW_MSG_TYPE_MAX = 65535,
};

/* Why a message was dropped; index into sw_wire_stats.drops. */
enum sw_wire_drop {
    SW_WIRE_DROP_TOOBIG = 0,   /* -SW_ETOOBIG: envelope, payload or frame over a limit */
    SW_WIRE_DROP_MALFORMED,    /* -SW_EMSG: bad frames, msgpack, fields, version */
    SW_WIRE_DROP_RUN,          /* -SW_ERUN */
    SW_WIRE_DROP_LENGTH,       /* -SW_EHASH: plen and payload frame disagree */
    SW_WIRE_DROP_SIG,          /* -SW_ESIG */
    SW_WIRE_DROP_REPLAY,       /* -SW_EREPLAY: seen in the window */
    SW_WIRE_DROP_STALE,        /* -SW_EREPLAY: below the window */
    SW_WIRE_DROP_HASH,         /* -SW_EHASH: tree hash differs */
    SW_WIRE_DROP_NONFINITE,    /* -SW_ENONFINITE: NaN or Inf in a tensor */
    SW_WIRE_DROP_TYPE,         /* -SW_EMSG: no handler for the type (transport) */
    SW_WIRE_DROP_UNMATCHED,    /* -SW_EMSG: response to no pending request (transport) */
    SW_WIRE_DROP_ADMIT,        /* -SW_EPERM: the admission hook refused the sender (transport) */
    SW_WIRE_DROP_RATELIMIT,    /* -SW_EAGAIN: over the type's rate limit (transport) */
    SW_WIRE_DROP__COUNT
};

struct sw_wire_stats {
    uint64_t sealed;                        /* envelopes signed */
    uint64_t accepted;                      /* envelopes that passed sw_wire_open */
    uint64_t drops[SW_WIRE_DROP__COUNT];    /* per reason */
};

struct sw_wire_opts {
    size_t max_payload;   /* bytes; 0: SW_WIRE_MAX_PAYLOAD */
    size_t max_senders;   /* sequence windows kept; 0: SW_WIRE_MAX_SENDERS */
};

struct sw_wire_window; /* private */

struct sw_wire {
    const struct sw_identity *id;        /* borrowed */
    uint8_t run[SW_WIRE_RUN_BYTES];
    uint64_t next_seq[SW_WIRE_SEQ_CLASSES]; /* next sequence this node sends, per class */
    uint32_t pipe_types[SW_WIRE_MAX_PIPELINE_TYPES]; /* types of SW_WIRE_SEQ_PIPELINE */
    size_t n_pipe_types;
    uint32_t bulk_types[SW_WIRE_MAX_PIPELINE_TYPES]; /* types of SW_WIRE_SEQ_BULK */
    size_t n_bulk_types;
    size_t max_payload;
    struct sw_wire_stats stats;
    struct sw_wire_window *win;          /* private: per-sender windows */
    uint8_t *cert;                       /* sealed into every envelope; NULL: none */
    size_t cert_len;
};

/* A verified (or to-be-sealed) envelope. */
struct sw_wire_hdr {
    uint32_t version;
    uint32_t type;
    uint8_t run[SW_WIRE_RUN_BYTES];
    uint8_t sender[SW_IDENTITY_PK_BYTES];
    uint64_t seq;
    uint64_t rid;
    uint64_t payload_len;
    uint8_t payload_hash[SW_WIRE_HASH_BYTES];
    const uint8_t *body; /* encoded body map: slice of the envelope buffer */
    size_t body_len;
    const uint8_t *cert; /* "cert" bytes, slice of the envelope buffer; NULL: absent */
    size_t cert_len;     /* 0 when absent */
};

/* Fixed-capacity output buffer, usable as a msgpack_packer target. */
struct sw_wire_buf {
    uint8_t *data;
    size_t len, cap;
    bool overflow;       /* a write did not fit: the content is truncated */
};

/* ---- context ---- */

/* Fill w for node id (borrowed) in run; opts may be NULL.  0 or -SW_ENOMEM. */
int sw_wire_init(struct sw_wire *w, const struct sw_identity *id,
                 const uint8_t run[SW_WIRE_RUN_BYTES], const struct sw_wire_opts *opts) SW_WARN_UNUSED;
void sw_wire_release(struct sw_wire *w);

/*
 * Carry cert (len bytes, copied; len 0 clears) as "cert" in every envelope
 * sealed from now on.  0, -SW_ETOOBIG (len > SW_WIRE_MAX_CERT), -SW_ENOMEM;
 * on error the previous certificate stays.
 */
int sw_wire_set_cert(struct sw_wire *w, const void *cert, size_t len) SW_WARN_UNUSED;

/*
 * The message types of the pipeline sequence class (n at most
 * SW_WIRE_MAX_PIPELINE_TYPES; replaces the previous set; n 0: none).  Set it
 * before the first message, on every node alike.  0 or -SW_EINVAL.
 */
int sw_wire_set_pipeline_types(struct sw_wire *w, const uint32_t *types, size_t n) SW_WARN_UNUSED;
/* The same for the bulk class (a type in both sets is a pipeline type). */
int sw_wire_set_bulk_types(struct sw_wire *w, const uint32_t *types, size_t n) SW_WARN_UNUSED;
/* SW_WIRE_SEQ_PIPELINE, SW_WIRE_SEQ_BULK or SW_WIRE_SEQ_OTHER for type. */
int sw_wire_seq_class(const struct sw_wire *w, uint32_t type);

/* Count a drop found by a module above (body decoding); returns -code for reason. */
int sw_wire_count_drop(struct sw_wire *w, enum sw_wire_drop reason);
/* "toobig", "malformed", ...; never NULL. */
const char *sw_wire_drop_name(int reason);
/* The error code sw_wire_open returns for reason (negative). */
int sw_wire_drop_code(int reason);

/* ---- sending ---- */

/*
 * Encode and sign an envelope of type with request id rid, body (one encoded
 * msgpack map, copied; NULL/0 = {}), for a payload of payload_len bytes whose
 * tree hash is payload_hash (NULL when payload_len is 0).  Writes the envelope
 * into env (env_cap bytes; SW_WIRE_MAX_ENVELOPE always suffices), its length
 * into *env_len and the signature into sig.  Takes the next sequence number
 * of type's class.
 * 0, -SW_EINVAL (body is not one map, bad type), -SW_ETOOBIG.
 */
int sw_wire_seal(struct sw_wire *w, uint32_t type, uint64_t rid, const void *body, size_t body_len,
                 const uint8_t *payload_hash, uint64_t payload_len, uint8_t *env, size_t env_cap,
                 size_t *env_len, uint8_t sig[SW_WIRE_SIG_BYTES]) SW_WARN_UNUSED;

/* ---- receiving ---- */

/*
 * Parse and verify an envelope (all checks but the payload hash, see above).
 * payload_len is the length of the payload frame received (0 when absent).
 * On success fills hdr (hdr->body points into env) and commits the sequence.
 */
int sw_wire_open(struct sw_wire *w, const void *env, size_t env_len, const void *sig,
                 size_t sig_len, size_t payload_len, struct sw_wire_hdr *hdr) SW_WARN_UNUSED;

/* Check the payload against hdr's hash; 0 or -SW_EHASH (counted). */
int sw_wire_check_payload(struct sw_wire *w, const struct sw_wire_hdr *hdr, const void *payload,
                          size_t len) SW_WARN_UNUSED;

/* Parse an envelope without any verification (tests, tools); 0 or -SW_EMSG/-SW_ETOOBIG. */
int sw_wire_parse(const void *env, size_t env_len, struct sw_wire_hdr *hdr) SW_WARN_UNUSED;

/* ---- payload hash ---- */

/* Tree hash of len bytes (see above), on up to the configured hash threads. */
void sw_wire_payload_hash(uint8_t out[SW_WIRE_HASH_BYTES], const void *data, size_t len);
/* Threads used by sw_wire_payload_hash for payloads of 2+ chunks (1..16, default 1). */
void sw_wire_set_hash_threads(int n);

/* ---- msgpack helpers ---- */

/*
 * Check that buf holds exactly one well-formed msgpack object, nesting at
 * most max_depth, no ext types, every container's count possible in the bytes
 * left (so unpacking allocates at most ~24 bytes per input byte).  0 or -SW_EMSG.
 */
int sw_wire_msgpack_check(const void *buf, size_t len, int max_depth) SW_WARN_UNUSED;

/*
 * Bounded unpack of exactly one object: sw_wire_msgpack_check, then
 * msgpack_unpack_next.  On success *out holds the object (strings and bins
 * point into buf); release with msgpack_unpacked_destroy.  0 or -SW_EMSG.
 */
int sw_wire_unpack(const void *buf, size_t len, msgpack_unpacked *out) SW_WARN_UNUSED;

/* True when key object o is the str k. */
bool sw_wire_key_is(const msgpack_object *o, const char *k);

void sw_wire_buf_init(struct sw_wire_buf *b, void *data, size_t cap);
/* msgpack_packer writing into b (sets overflow instead of growing). */
void sw_wire_buf_packer(msgpack_packer *pk, struct sw_wire_buf *b);

/* ---- tensors ---- */

enum sw_wire_dtype { SW_WIRE_F32 = 0, SW_WIRE_BF16 = 1 };

/*
 * Body of SW_MSG_TENSOR (and of any message carrying one tensor piece):
 *   {"name": str (<= 256 bytes), "tag": uint, "dtype": "f32"|"bf16",
 *    "shape": [uint, ...] (1..8 dims, the whole tensor), "off": uint}
 * The payload is the little-endian bytes [off, off + plen) of the whole
 * tensor (row-major); off and plen are multiples of the element size.  A
 * tensor above SW_WIRE_MAX_PAYLOAD travels as several messages.
 */
struct sw_wire_tensor {
    char name[SW_WIRE_MAX_NAME + 1];
    uint64_t tag;                     /* caller's meaning (step, microbatch...) */
    int dtype;                        /* enum sw_wire_dtype */
    uint32_t ndim;
    uint64_t shape[SW_WIRE_MAX_DIMS]; /* whole tensor */
    uint64_t off;                     /* byte offset of this piece */
};

size_t sw_wire_dtype_size(int dtype);
/* Bytes of the whole tensor; 0 on overflow. */
uint64_t sw_wire_tensor_bytes(const struct sw_wire_tensor *t);
/* Encode t as a body map with pk; 0 or -SW_EINVAL/-SW_ETOOBIG. */
int sw_wire_tensor_pack(msgpack_packer *pk, const struct sw_wire_tensor *t) SW_WARN_UNUSED;
/* Decode a body map into t; 0 or -SW_EMSG (not counted). */
int sw_wire_tensor_unpack(const void *body, size_t len, struct sw_wire_tensor *t) SW_WARN_UNUSED;
/*
 * Check a received piece: geometry (off, len against shape and dtype) and
 * finiteness.  0, -SW_EMSG or -SW_ENONFINITE, counted in w (w may be NULL).
 */
int sw_wire_tensor_check(struct sw_wire *w, const struct sw_wire_tensor *t, const void *payload,
                         size_t len) SW_WARN_UNUSED;
/* True when every value is finite. */
bool sw_wire_all_finite(int dtype, const void *data, size_t len);

#endif
