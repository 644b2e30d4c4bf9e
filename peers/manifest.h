/*
 * manifest.h - the run manifest (swarm.conf(5)): what every node of a run
 * agrees on, signed by the run owner.
 *
 * Format: an INI file parsed with inih.  Sections [run], [model], [batch],
 * [optim], [recovery], [balance], [checkpoint], [admission], [data]; each
 * section's keys come from one sw_cfg table (src/cfg.h), which also
 * range-checks them and lists them in swarm.conf(5) and `swarmctl manifest keys`.  Unknown sections, unknown
 * keys, keys outside a section, repeated keys and out-of-range values are
 * refused with "FILE:LINE: reason".
 *
 * Identity: run id = BLAKE2b-256 of the manifest's exact bytes.  The owner
 * signs SW_MANIFEST_SIG_DOMAIN || run id with Ed25519 (net/identity.h).  The
 * signature travels as a detached file FILE.sig of three text lines:
 *   swarm-manifest-signature 1
 *   owner <64 hex digits: Ed25519 public key>
 *   sig <128 hex digits: signature>
 *
 * Ownership: the caller owns struct sw_manifest; sw_manifest_parse fills it,
 * sw_manifest_release frees the copy of the bytes.  No threads.
 */
#ifndef SW_MANIFEST_H
#define SW_MANIFEST_H

#include "sw.h"

#include <stdio.h>

#include "cfg.h"
#include "codec.h"
#include "hex.h" /* sw_hex_decode, for the callers that read keys */
#include "identity.h"
#include "model.h"
#include "optim.h"

#define SW_MANIFEST_MAX_BYTES (32 * 1024)
#define SW_MANIFEST_SIG_DOMAIN "swarm manifest v1"

enum sw_recovery_mode { SW_RECOVERY_CHECKFREE = 0, SW_RECOVERY_CHECKFREE_PLUS = 1 };

struct sw_manifest {
    /* [run] */
    char name[64];
    int stages, steps;
    unsigned long long seed;
    /* [model]: a preset, each field overridable (0: the preset's) */
    char preset[32];
    int vocab_size, d_model, n_layers, n_heads, n_kv_heads, ffn_hidden, max_seq_len;
    /* [batch] */
    int batch, micro, seq_len;
    /* [optim] */
    float lr, min_lr_frac, weight_decay, grad_clip, beta1, beta2, eps;
    int warmup;
    /* [recovery] */
    char recovery[16];
    /* [balance]: --stage auto nodes move to the bottleneck stage (trainer.c) */
    float balance_threshold;     /* move when bottleneck / mean falls below (0: never) */
    int balance_hold;            /* s the imbalance must last */
    int balance_cooldown;        /* s a node trains on its stage before it may move */
    /* [checkpoint]: the keeper's defaults and the nodes' local saves (ckptnet.h) */
    int ckpt_every, ckpt_keep;
    char ckpt_dir[1024];
    int ckpt_async;
    /* [admission]: who may take part (admit.h) */
    char admission[16];          /* "owner" or "open" */
    /* [wire]: the FWD and BWD payloads' codec (codec.h) */
    char wire_act[16];
    char wire_grad[16];
    /* [data] */
    char data[4096];
    float val_frac;

    /* derived by sw_manifest_parse */
    struct sw_model_config model;
    struct sw_optim_config optim;
    int T;                       /* tokens per sequence */
    enum sw_recovery_mode recovery_mode;
    bool admission_open;         /* [admission] mode = open */
    enum sw_codec act_codec;     /* [wire] activations */
    enum sw_codec grad_codec;    /* [wire] gradients: fp32, int8 or int4 */
    uint8_t run_id[32];          /* BLAKE2b-256 of bytes */
    char *bytes;                 /* the manifest as read (NUL-terminated copy) */
    size_t len;
};

/* Parse len bytes named name (for messages).  On failure -SW_ECONFIG with
 * "name:line: reason" in why (nothing to release). */
int sw_manifest_parse(struct sw_manifest *m, const char *name, const void *bytes, size_t len,
                      char *why, size_t whylen) SW_WARN_UNUSED;
/* Read and parse a file; -errno when it cannot be read. */
int sw_manifest_load(struct sw_manifest *m, const char *path, char *why, size_t whylen)
    SW_WARN_UNUSED;
void sw_manifest_release(struct sw_manifest *m);

/* The message the owner signs for a run id. */
void sw_manifest_sig_msg(uint8_t msg[64], const uint8_t run_id[32]);
int sw_manifest_sign(const struct sw_identity *owner, const uint8_t run_id[32], uint8_t sig[64])
    SW_WARN_UNUSED;
bool sw_manifest_verify(const uint8_t owner[32], const uint8_t run_id[32], const uint8_t sig[64]);

/* FILE.sig text (see above) into buf (>= 256 bytes) and back. */
int sw_manifest_sig_format(char *buf, size_t len, const uint8_t owner[32], const uint8_t sig[64]);
int sw_manifest_sig_parse(const char *text, uint8_t owner[32], uint8_t sig[64]) SW_WARN_UNUSED;
/* Read PATH.sig (path: the manifest) and verify it against m; want_owner
 * NULL accepts any owner.  Errors logged: -SW_ENOENT (unsigned), -SW_EFORMAT,
 * -SW_EPERM (other owner), -SW_ESIG. */
int sw_manifest_check_sigfile(const struct sw_manifest *m, const char *path,
                              const uint8_t *want_owner, uint8_t owner[32], uint8_t sig[64])
    SW_WARN_UNUSED;

/* Every key with its section, default, range and help (swarm.conf(5)). */
void sw_manifest_keys(FILE *f);
/* The manifest in effect, one "section.key = value" per line. */
void sw_manifest_dump(const struct sw_manifest *m, FILE *f);

#endif
