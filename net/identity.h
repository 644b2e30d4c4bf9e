/*
 * identity.h - a node's Ed25519 key pair (libsodium).
 *
 * Contract
 *   - A node is its Ed25519 public key (32 bytes); its node id is
 *     BLAKE2b-256(public key), the 256-bit Kademlia id of the DHT.
 *   - On disk the key lives in "<dir>/node.key", dir being the argument,
 *     else $SWARM_HOME, else ~/.local/share/swarm.  The file holds exactly 64
 *     bytes: the 32-byte Ed25519 seed followed by the 32-byte public key
 *     (libsodium's secret key layout).  It is created on first use with mode
 *     0600 inside a directory created with mode 0700, written atomically
 *     (temporary file, fsync, link into place, fsync of the directory), so a
 *     crash never leaves a half key and two nodes starting at once agree on one
 *     key.  A key file that group or others may read, that is not a regular
 *     file, or whose public half does not match its seed is refused with a
 *     message naming the file; nothing is overwritten.
 *   - The secret key lives in sodium_malloc memory (guard pages, mlock where
 *     allowed) and is wiped and freed by sw_identity_release on every path.
 *
 * Ownership: the caller owns struct sw_identity; load/create/generate fill it,
 * sw_identity_release wipes it.  Threading: a filled identity is read-only, so
 * sw_identity_sign may run on any thread concurrently.
 */
#ifndef SW_IDENTITY_H
#define SW_IDENTITY_H

#include "sw.h"

#define SW_IDENTITY_PK_BYTES 32
#define SW_IDENTITY_SK_BYTES 64
#define SW_IDENTITY_SIG_BYTES 64
#define SW_IDENTITY_ID_BYTES 32
#define SW_IDENTITY_FILE "node.key"

struct sw_identity {
    uint8_t pk[SW_IDENTITY_PK_BYTES]; /* Ed25519 public key */
    uint8_t id[SW_IDENTITY_ID_BYTES]; /* BLAKE2b-256(pk) */
    uint8_t *sk;                      /* sodium_malloc, SW_IDENTITY_SK_BYTES; NULL when released */
};

/* Initialise libsodium (idempotent, thread-safe); 0 or -SW_EIO. */
int sw_identity_global_init(void) SW_WARN_UNUSED;

/*
 * Default key directory into buf: $SWARM_HOME, else $HOME/.local/share/swarm.
 * 0, -SW_ENOENT when neither variable is set, -SW_ERANGE when buf is short.
 */
int sw_identity_default_dir(char *buf, size_t len) SW_WARN_UNUSED;

/*
 * Load "<dir>/node.key", creating dir and the key on first use.  dir NULL
 * means sw_identity_default_dir.  Errors: -SW_EPERM (file readable by group or
 * others: refused), -SW_EFORMAT (wrong size or inconsistent key), -errno.
 * Each failure is logged once with the file's name.
 */
int sw_identity_load_or_create(struct sw_identity *id, const char *dir) SW_WARN_UNUSED;

/* A fresh key pair in memory only (tests, simulations). */
int sw_identity_generate(struct sw_identity *id) SW_WARN_UNUSED;

/* A deterministic key pair from a 32-byte seed (tests, fuzzing). */
int sw_identity_from_seed(struct sw_identity *id, const uint8_t seed[32]) SW_WARN_UNUSED;

/* Wipe and free the secret key; safe on a zeroed or released identity. */
void sw_identity_release(struct sw_identity *id);

/* Detached Ed25519 signature of msg into sig; 0 or -SW_EINVAL (released key). */
int sw_identity_sign(const struct sw_identity *id, uint8_t sig[SW_IDENTITY_SIG_BYTES],
                     const void *msg, size_t len) SW_WARN_UNUSED;

/* True when sig is pk's valid signature of msg. */
bool sw_identity_verify(const uint8_t pk[SW_IDENTITY_PK_BYTES],
                        const uint8_t sig[SW_IDENTITY_SIG_BYTES], const void *msg, size_t len);

/* Node id of a public key: BLAKE2b-256(pk). */
void sw_identity_node_id(uint8_t id[SW_IDENTITY_ID_BYTES], const uint8_t pk[SW_IDENTITY_PK_BYTES]);

/* Lowercase hex of n bytes into out (2n+1 bytes); returns out.  Same as
 * sw_hex_encode (base/hex.h), under the name its callers know. */
char *sw_identity_hex(char *out, const uint8_t *bytes, size_t n);

#endif
