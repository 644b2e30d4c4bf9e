/*
 * admit.h - admission to a run: membership certificates, the revocation
 * list, and the admitter that a run transport asks about every verified
 * message (swarm-protocol(7), ADMISSION; the manifest's [admission] mode).
 *
 * Certificate.  A msgpack map, at most SW_CERT_MAX bytes, keys in any order,
 * each once, no other key:
 *   v     uint    SW_CERT_VERSION
 *   run   bin 32  the run id it is good for
 *   node  bin 32  the Ed25519 key of the node it admits
 *   stage int     the only stage that node may serve; -1: any
 *   exp   uint    expiry, Unix seconds
 *   role  uint    0 node, 1 delegate (its node may also issue certificates)
 *   by    bin 32  the signer: the run owner, or a delegate
 *   sig   bin 64  Ed25519 by "by" over the fixed 160-byte message below
 *   chain bin     only when "by" is not the owner: the delegate's own
 *                 certificate (role 1, signed by the owner, no chain itself)
 * The signed message is fixed-layout, so that no msgpack writer has to be
 * canonical: SW_CERT_DOMAIN zero-padded to 16 bytes || run || node ||
 * le32(stage as int32) || le64(exp) || le32(role) || by || 24 zero bytes.
 * A certificate issued by a delegate is good until the earlier of its own
 * and its delegate's expiry and, when the delegate's certificate names a
 * stage, only for that stage.  Expiry is compared with the local clock and
 * SW_CERT_SKEW_S of allowance (nodes' clocks are not synchronised).
 *
 * Revocation list.  The run owner publishes in the DHT, under
 * H(run, "revoked") = BLAKE2b-256(run id || "revoked"), one record whose
 * value is the msgpack map {v uint, run bin 32, seq uint, keys [bin 32...]
 * (at most SW_REVOKED_MAX), sig bin 64}; sig is the owner's Ed25519 over
 * SW_REVOKED_DOMAIN zero-padded to 16 bytes || run || le64(seq) ||
 * le32(count) || the keys.  The highest seq wins; a revoked key is refused as
 * a node and as a delegate (every certificate it signed is refused too).
 *
 * Admitter.  struct sw_admit holds a run's policy: the owner is always
 * admitted; any other key when its certificate verifies for this run, names
 * it, is unexpired and neither it nor its signer is revoked.  A verified key
 * goes into a cache of at most cap keys (the least recently used one is
 * evicted), so that a key costs one verification, not one per message; its
 * later messages need not carry the certificate.  Open mode admits every
 * key.  Refusals are counted per reason in drops[].
 *
 * Ownership: the caller owns struct sw_admit (init/release).  Decoded
 * certificates (struct sw_cert) point into the caller's bytes.  No threads:
 * one admitter is used from one loop thread.
 */
#ifndef SW_ADMIT_H
#define SW_ADMIT_H

#include "sw.h"

#include "identity.h"

#define SW_CERT_VERSION 1
#define SW_CERT_MAX 1024              /* bytes of an encoded certificate, chain included */
#define SW_CERT_DOMAIN "swarm cert v1"
#define SW_CERT_SKEW_S 300            /* clock skew allowed on expiry */
#define SW_REVOKED_VERSION 1
#define SW_REVOKED_DOMAIN "swarm revoked"
#define SW_REVOKED_MAX 100            /* keys in one list (it fits a DHT value) */
#define SW_REVOKED_POLL_MS 10000      /* every process reads the list this often */
#define SW_REVOKED_TTL_S 86400        /* its DHT ttl; the bootstrap puts it again hourly */
#define SW_REVOKED_EVERY_MS (3600 * 1000)
#define SW_ADMIT_CACHE 1024           /* default cache of verified keys */

enum sw_cert_role { SW_CERT_NODE = 0, SW_CERT_DELEGATE = 1 };

/* Why a key was refused; index into sw_admit.drops. */
enum sw_admit_why {
    SW_ADMIT_OK = 0,
    SW_ADMIT_NOCERT,     /* not the owner, no certificate, not cached */
    SW_ADMIT_MALFORMED,  /* the certificate does not decode */
    SW_ADMIT_RUN,        /* for another run */
    SW_ADMIT_NODE,       /* names another key */
    SW_ADMIT_EXPIRED,    /* expired (or its delegate's) */
    SW_ADMIT_SIG,        /* a signature does not verify */
    SW_ADMIT_CHAIN,      /* signer not the owner, and no valid delegate certificate */
    SW_ADMIT_REVOKED,    /* the key or its signer is revoked */
    SW_ADMIT_STAGE,      /* a record for a stage its certificate does not allow */
    SW_ADMIT__COUNT
};

struct sw_cert {
    uint8_t run[32], node[32], by[32], sig[64];
    int stage;           /* -1: any */
    uint64_t exp;        /* Unix seconds */
    int role;            /* enum sw_cert_role */
    const uint8_t *chain; /* the delegate's certificate (NULL: none), into the decoded bytes */
    size_t chain_len;
};

struct sw_revoked {
    uint64_t seq;
    int n;
    uint8_t keys[SW_REVOKED_MAX][32];
};

struct sw_admit_entry {
    uint8_t pk[32], by[32];
    uint64_t exp;        /* effective expiry, Unix seconds */
    uint64_t used;       /* LRU clock */
    int stage;
};

struct sw_admit {
    uint8_t run[32], owner[32];
    bool open;
    uint32_t skew_s;
    struct sw_admit_entry *cache;
    size_t n, cap;
    uint64_t clock;
    struct sw_revoked revoked;    /* seq 0, n 0: none read yet */
    uint64_t verified;            /* certificates verified (cache misses) */
    uint64_t admitted;            /* checks that passed */
    uint64_t drops[SW_ADMIT__COUNT];
};

/* "nocert", "malformed", ...; never NULL. */
const char *sw_admit_why_name(int why);

/* ---- certificates ---- */

/*
 * A certificate for node, signed by signer (the owner, or a delegate passing
 * its own certificate as chain), into out (cap bytes; SW_CERT_MAX suffices).
 * 0, -SW_EINVAL, -SW_ETOOBIG.
 */
int sw_cert_issue(const struct sw_identity *signer, const uint8_t run[32], const uint8_t node[32],
                  int stage, uint64_t exp, int role, const uint8_t *chain, size_t chain_len,
                  uint8_t *out, size_t cap, size_t *len) SW_WARN_UNUSED;
/* Reads a certificate file (its bytes, at most SW_CERT_MAX) into buf[SW_CERT_MAX];
 * 0, -errno, -SW_ETOOBIG or -SW_EMSG (empty). */
int sw_cert_load(const char *path, uint8_t *buf, size_t *len) SW_WARN_UNUSED;
/* Strict bounded decoding, no signature checked; 0 or -SW_EMSG. */
int sw_cert_decode(const uint8_t *buf, size_t len, struct sw_cert *c) SW_WARN_UNUSED;
/*
 * Decode and verify buf for run and owner: signatures, chain, expiry
 * (now_s, skew_s), and node when not NULL.  On success (SW_ADMIT_OK) c holds
 * the certificate with its effective expiry and stage (the delegate's limits
 * applied); else an enum sw_admit_why.  Revocation is the admitter's.
 */
int sw_cert_verify(const uint8_t *buf, size_t len, const uint8_t run[32], const uint8_t owner[32],
                   const uint8_t *node, uint64_t now_s, uint32_t skew_s, struct sw_cert *c);

/* ---- the revocation list ---- */

/* The DHT key of a run's list. */
void sw_revoked_key(uint8_t key[32], const uint8_t run[32]);
/* Signs and encodes r for run with the owner's key; 0, -SW_EINVAL, -SW_ETOOBIG. */
int sw_revoked_encode(const struct sw_identity *owner, const uint8_t run[32],
                      const struct sw_revoked *r, uint8_t *out, size_t cap, size_t *len)
    SW_WARN_UNUSED;
/* Decodes and verifies a list for run and owner; 0, -SW_EMSG or -SW_ESIG. */
int sw_revoked_decode(const uint8_t *buf, size_t len, const uint8_t run[32],
                      const uint8_t owner[32], struct sw_revoked *r) SW_WARN_UNUSED;
bool sw_revoked_has(const struct sw_revoked *r, const uint8_t pk[32]);

/* ---- the admitter ---- */

/* cap 0: SW_ADMIT_CACHE.  0 or -SW_ENOMEM. */
int sw_admit_init(struct sw_admit *a, const uint8_t run[32], const uint8_t owner[32], bool open,
                  size_t cap) SW_WARN_UNUSED;
void sw_admit_release(struct sw_admit *a);
/*
 * May pk take part?  cert/len: the certificate it presents (NULL/0: none).
 * SW_ADMIT_OK (its stage into *stage when not NULL, -1: any) or a why,
 * counted in drops[].
 */
int sw_admit_check(struct sw_admit *a, const uint8_t pk[32], const uint8_t *cert, size_t len,
                   uint64_t now_s, int *stage);
/* sw_admit_check for a stage record of stage published by pk: also
 * SW_ADMIT_STAGE when its certificate limits it to another stage. */
int sw_admit_check_rec(struct sw_admit *a, const uint8_t pk[32], const uint8_t *cert, size_t len,
                       int stage, uint64_t now_s);
/* Takes r when its seq is above the current list's: true, and every cached
 * key that r revokes (as a node or as a signer) is forgotten. */
bool sw_admit_set_revoked(struct sw_admit *a, const struct sw_revoked *r);

#endif
