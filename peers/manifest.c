/*
 * manifest.c - parse, sign and check the run manifest (see manifest.h).
 */
#include "sw.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "manifest.h"

#define M struct sw_manifest
static const struct sw_cfg_entry run_tab[] = {
    SW_CFG_STR(M, "name", name, "swarm", "a name for operators (not used by the nodes)"),
    SW_CFG_INT(M, "stages", stages, 4, 1, 1024, "pipeline stages S"),
    SW_CFG_INT(M, "steps", steps, 200, 1, 100000000, "training steps (the cosine ends there)"),
    SW_CFG_U64(M, "seed", seed, 1337, "seed of the initialisation and of the data sampling"),
};
static const struct sw_cfg_entry model_tab[] = {
    SW_CFG_STR(M, "preset", preset, "small", "model shape preset (tiny, small, medium, bench768, bench2048)"),
    SW_CFG_INT(M, "vocab_size", vocab_size, 0, 0, 65536, "vocabulary V (0: the preset's)"),
    SW_CFG_INT(M, "d_model", d_model, 0, 0, 65536, "hidden size C (0: the preset's)"),
    SW_CFG_INT(M, "n_layers", n_layers, 0, 0, 4096, "blocks L (0: the preset's)"),
    SW_CFG_INT(M, "n_heads", n_heads, 0, 0, 1024, "attention heads (0: the preset's)"),
    SW_CFG_INT(M, "n_kv_heads", n_kv_heads, 0, 0, 1024, "key/value heads (0: the preset's)"),
    SW_CFG_INT(M, "ffn_hidden", ffn_hidden, 0, 0, 1048576, "SwiGLU hidden size F (0: the preset's)"),
    SW_CFG_INT(M, "max_seq_len", max_seq_len, 0, 0, 65536, "longest sequence the model takes (0: the preset's)"),
};
static const struct sw_cfg_entry batch_tab[] = {
    SW_CFG_INT(M, "size", batch, 8, 1, 65536, "microbatch size B (sequences)"),
    SW_CFG_INT(M, "micro", micro, 4, 1, 4096, "microbatches per step M"),
    SW_CFG_INT(M, "seq_len", seq_len, 0, 0, 65536, "tokens per sequence T (0: the model's)"),
};
static const struct sw_cfg_entry optim_tab[] = {
    SW_CFG_FLOAT(M, "lr", lr, 3e-3, 0, 10, "peak learning rate"),
    SW_CFG_INT(M, "warmup", warmup, 20, 0, 100000000, "linear warmup steps"),
    SW_CFG_FLOAT(M, "min_lr_frac", min_lr_frac, 0.1, 0, 1, "cosine floor as a fraction of lr"),
    SW_CFG_FLOAT(M, "weight_decay", weight_decay, 0.1, 0, 10, "AdamW decoupled weight decay"),
    SW_CFG_FLOAT(M, "grad_clip", grad_clip, 1.0, 0, 1e9, "per-stage gradient-norm clip (0: off)"),
    SW_CFG_FLOAT(M, "beta1", beta1, 0.9, 0, 1, "AdamW beta1"),
    SW_CFG_FLOAT(M, "beta2", beta2, 0.95, 0, 1, "AdamW beta2"),
    SW_CFG_FLOAT(M, "eps", eps, 1e-8, 0, 1, "AdamW epsilon"),
};
static const struct sw_cfg_entry recovery_tab[] = {
    SW_CFG_STR(M, "mode", recovery, "checkfree", "checkfree or checkfree+"),
};
static const struct sw_cfg_entry balance_tab[] = {
    SW_CFG_FLOAT(M, "threshold", balance_threshold, 0.75, 0, 1, "a --stage auto node moves to the bottleneck stage when the balance (the lowest stage capacity over the mean) stays below this (0: never)"),
    SW_CFG_INT(M, "hold", balance_hold, 10, 0, 86400, "seconds the balance must stay below the threshold before a node moves"),
    SW_CFG_INT(M, "cooldown", balance_cooldown, 60, 0, 86400, "seconds a node trains on its stage (after joining or moving) before it may move"),
};
static const struct sw_cfg_entry ckpt_tab[] = {
    SW_CFG_INT(M, "every", ckpt_every, 0, 0, 100000000, "checkpoint every K steps (0: never); nodes with --ckpt-dir save their share every K steps"),
    SW_CFG_INT(M, "keep", ckpt_keep, 2, 1, 1000, "checkpoints kept, by the keeper and in every node's --ckpt-dir"),
    SW_CFG_STR(M, "dir", ckpt_dir, "", "where keepers write checkpoints"),
    SW_CFG_BOOL(M, "async", ckpt_async, 1, "write on a worker thread"),
};
static const struct sw_cfg_entry admission_tab[] = {
    SW_CFG_STR(M, "mode", admission, "owner", "owner: a node takes part only with a certificate signed by the run owner or a delegate (swarmctl admit); open: any key may (public runs, swarm-protocol(7) THREAT MODEL)"),
};
static const struct sw_cfg_entry wire_tab[] = {
    SW_CFG_STR(M, "activations", wire_act, "fp32", "how activations and their gradients cross a stage boundary (FWD, BWD): fp32, bf16, int8 or int4 (blockwise, a scale per 64 values)"),
    SW_CFG_STR(M, "gradients", wire_grad, "fp32", "how replicas of a stage exchange their partial gradients (GRAD): fp32, or int8 or int4 (blockwise, with error feedback)"),
};
static const struct sw_cfg_entry data_tab[] = {
    SW_CFG_STR(M, "path", data, "", "training data: a file, a folder or a comma-separated list (stage-0 nodes; swarmd join --data overrides)"),
    SW_CFG_FLOAT(M, "val_frac", val_frac, 0.1, 0.001, 0.5, "fraction held out for validation (it moves the sampling range, keep swarmsim's)"),
};
#undef M

struct section {
    const char *name;
    const struct sw_cfg_entry *tab;
    size_t n;
};

static const struct section sections[] = {
    {"run", run_tab, SW_ARRAY_SIZE(run_tab)},
    {"model", model_tab, SW_ARRAY_SIZE(model_tab)},
    {"batch", batch_tab, SW_ARRAY_SIZE(batch_tab)},
    {"optim", optim_tab, SW_ARRAY_SIZE(optim_tab)},
    {"recovery", recovery_tab, SW_ARRAY_SIZE(recovery_tab)},
    {"balance", balance_tab, SW_ARRAY_SIZE(balance_tab)},
    {"checkpoint", ckpt_tab, SW_ARRAY_SIZE(ckpt_tab)},
    {"admission", admission_tab, SW_ARRAY_SIZE(admission_tab)},
    {"wire", wire_tab, SW_ARRAY_SIZE(wire_tab)},
    {"data", data_tab, SW_ARRAY_SIZE(data_tab)},
};

#define MAX_SEEN 64

struct parse_state {
    struct sw_manifest *m;
    char why[256];         /* first error */
    int nseen;
    char seen[MAX_SEEN][80]; /* "section.key" already set */
};

static int
on_pair(void *user, const char *section, const char *name, const char *value)
{
    struct parse_state *ps = user;
    const struct section *sec = NULL;
    char full[80];
    int i;

    if (ps->why[0])
        return 0; /* keep the first error; inih reports its line */
    if (!name) { /* a section header on its own (INI_CALL_HANDLER_ON_NEW_SECTION) */
        return 1;
    }
    for (i = 0; i < (int)SW_ARRAY_SIZE(sections); i++)
        if (!strcmp(sections[i].name, section))
            sec = &sections[i];
    if (!section[0]) {
        snprintf(ps->why, sizeof(ps->why), "key '%s' outside a section", name);
        return 0;
    }
    if (!sec) {
        snprintf(ps->why, sizeof(ps->why), "unknown section '[%s]'", section);
        return 0;
    }
    snprintf(full, sizeof(full), "%s.%s", section, name);
    for (i = 0; i < ps->nseen; i++) {
        if (!strcmp(ps->seen[i], full)) {
            snprintf(ps->why, sizeof(ps->why), "key '%s' repeated", full);
            return 0;
        }
    }
    if (sw_cfg_set(sec->tab, sec->n, ps->m, name, value, ps->why, sizeof(ps->why)) < 0)
        return 0;
    if (ps->nseen < MAX_SEEN)
        snprintf(ps->seen[ps->nseen++], sizeof(ps->seen[0]), "%s", full);
    return 1;
}

/* The line of the first ']' - or '='-less garbage is reported by inih itself;
 * here: derived values and cross-field checks, reported at line 0 (file). */
static int
derive(struct sw_manifest *m, char *why, size_t whylen)
{
    struct sw_model_config *c = &m->model;
    char w2[200];
    size_t N, act;

    if (sw_model_preset(m->preset, c) < 0) {
        snprintf(why, whylen, "model.preset: unknown preset '%s' (one of %s)", m->preset,
                 sw_model_preset_names());
        return -SW_ECONFIG;
    }
#define OVR(f, v)                                                              \
    if (v)                                                                     \
        c->f = v;
    OVR(vocab_size, m->vocab_size);
    OVR(d_model, m->d_model);
    OVR(n_layers, m->n_layers);
    OVR(n_heads, m->n_heads);
    OVR(n_kv_heads, m->n_kv_heads);
    OVR(ffn_hidden, m->ffn_hidden);
    OVR(seq_len, m->max_seq_len);
#undef OVR
    if (sw_model_config_check(c, w2, sizeof(w2)) < 0) {
        snprintf(why, whylen, "model: %s", w2);
        return -SW_ECONFIG;
    }
    if (sw_model_check_stages(c, m->stages, w2, sizeof(w2)) < 0) {
        snprintf(why, whylen, "run.stages: %s", w2);
        return -SW_ECONFIG;
    }
    m->T = m->seq_len ? m->seq_len : c->seq_len;
    if (m->T > c->seq_len) {
        snprintf(why, whylen, "batch.seq_len %d exceeds the model's max_seq_len %d", m->T,
                 c->seq_len);
        return -SW_ECONFIG;
    }
    if (sw_codec_parse(m->wire_act, &m->act_codec) < 0) {
        snprintf(why, whylen, "wire.activations: want fp32, bf16, int8 or int4, got '%s'",
                 m->wire_act);
        return -SW_ECONFIG;
    }
    if (sw_codec_parse(m->wire_grad, &m->grad_codec) < 0 ||
        m->grad_codec == SW_CODEC_BF16) {
        snprintf(why, whylen, "wire.gradients: want fp32, int8 or int4, got '%s'", m->wire_grad);
        return -SW_ECONFIG;
    }
    N = (size_t)m->batch * m->T;
    act = sw_codec_bytes(m->act_codec, N * (size_t)c->d_model) + N * 4;
    /* a FWD or BWD above 8 MiB goes in pieces (step.h); a node keeps
     * several per microbatch of the step, so 1 GiB each is the sane most */
    if (act > (1u << 30)) {
        snprintf(why, whylen, "batch.size x batch.seq_len x d_model: an activation of %zu bytes "
                 "(%s) exceeds 1 GiB", act, m->wire_act);
        return -SW_ECONFIG;
    }
    if (!strcmp(m->recovery, "checkfree"))
        m->recovery_mode = SW_RECOVERY_CHECKFREE;
    else if (!strcmp(m->recovery, "checkfree+"))
        m->recovery_mode = SW_RECOVERY_CHECKFREE_PLUS;
    else {
        snprintf(why, whylen, "recovery.mode: want checkfree or checkfree+, got '%s'",
                 m->recovery);
        return -SW_ECONFIG;
    }
    if (m->recovery_mode == SW_RECOVERY_CHECKFREE_PLUS && m->stages < 4) {
        snprintf(why, whylen, "recovery.mode checkfree+ needs at least 4 stages");
        return -SW_ECONFIG;
    }
    if (m->recovery_mode == SW_RECOVERY_CHECKFREE_PLUS && c->tied) {
        snprintf(why, whylen, "recovery.mode checkfree+ needs an untied LM head: stage S-2 keeps "
                 "a replica of it");
        return -SW_ECONFIG;
    }
    if (!strcmp(m->admission, "owner"))
        m->admission_open = false;
    else if (!strcmp(m->admission, "open"))
        m->admission_open = true;
    else {
        snprintf(why, whylen, "admission.mode: want owner or open, got '%s'", m->admission);
        return -SW_ECONFIG;
    }
    sw_optim_config_default(&m->optim);
    m->optim.lr = m->lr;
    m->optim.min_lr_frac = m->min_lr_frac;
    m->optim.warmup_steps = m->warmup;
    m->optim.max_steps = m->steps;
    m->optim.weight_decay = m->weight_decay;
    m->optim.grad_clip = m->grad_clip;
    m->optim.beta1 = m->beta1;
    m->optim.beta2 = m->beta2;
    m->optim.eps = m->eps;
    return 0;
}

int
sw_manifest_parse(struct sw_manifest *m, const char *name, const void *bytes, size_t len,
                  char *why, size_t whylen)
{
    struct parse_state *ps;
    int line, err;

    memset(m, 0, sizeof(*m));
    if (len > SW_MANIFEST_MAX_BYTES) {
        snprintf(why, whylen, "%s: larger than %d bytes", name, SW_MANIFEST_MAX_BYTES);
        return -SW_ECONFIG;
    }
    if (memchr(bytes, '\0', len)) {
        snprintf(why, whylen, "%s: holds a NUL byte (not a text file)", name);
        return -SW_ECONFIG;
    }
    if (!(m->bytes = sw_malloc(len + 1)) || !(ps = sw_calloc(1, sizeof(*ps)))) {
        sw_free(m->bytes);
        m->bytes = NULL;
        return -SW_ENOMEM;
    }
    memcpy(m->bytes, bytes, len);
    m->bytes[len] = '\0';
    m->len = len;
    for (size_t i = 0; i < SW_ARRAY_SIZE(sections); i++)
        sw_cfg_defaults(sections[i].tab, sections[i].n, m);
    ps->m = m;
    line = ini_parse_string(m->bytes, on_pair, ps);
    if (line != 0) {
        snprintf(why, whylen, "%s:%d: %s", name, line,
                 ps->why[0] ? ps->why : "syntax error (want [section] or key = value)");
        err = -SW_ECONFIG;
        goto out_fail;
    }
    if ((err = derive(m, ps->why, sizeof(ps->why))) < 0) {
        snprintf(why, whylen, "%s: %s", name, ps->why);
        goto out_fail;
    }
    crypto_generichash(m->run_id, sizeof(m->run_id), (const uint8_t *)bytes, len, NULL, 0);
    sw_free(ps);
    return 0;

out_fail:
    sw_free(ps);
    sw_free(m->bytes);
    memset(m, 0, sizeof(*m));
    return err;
}

static int
read_file(const char *path, char **out, size_t *len, size_t max)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;
    int err;

    if (!f)
        return -errno;
    if (!(buf = sw_malloc(max + 2))) {
        fclose(f);
        return -SW_ENOMEM;
    }
    n = fread(buf, 1, max + 1, f);
    err = ferror(f) ? -SW_EIO : 0;
    fclose(f);
    if (err == 0 && n > max)
        err = -SW_ETOOBIG;
    if (err < 0) {
        sw_free(buf);
        return err;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

int
sw_manifest_load(struct sw_manifest *m, const char *path, char *why, size_t whylen)
{
    char *buf;
    size_t len;
    int err;

    memset(m, 0, sizeof(*m));
    if ((err = read_file(path, &buf, &len, SW_MANIFEST_MAX_BYTES)) < 0) {
        snprintf(why, whylen, "cannot read '%s': %s", path,
                 err == -SW_ETOOBIG ? "larger than 32 KiB" : sw_strerror(err));
        return err;
    }
    err = sw_manifest_parse(m, path, buf, len, why, whylen);
    sw_free(buf);
    return err;
}

void
sw_manifest_release(struct sw_manifest *m)
{
    sw_free(m->bytes);
    memset(m, 0, sizeof(*m));
}

void
sw_manifest_sig_msg(uint8_t msg[64], const uint8_t run_id[32])
{
    memset(msg, 0, 64);
    memcpy(msg, SW_MANIFEST_SIG_DOMAIN, sizeof(SW_MANIFEST_SIG_DOMAIN) - 1);
    memcpy(msg + 32, run_id, 32);
}

int
sw_manifest_sign(const struct sw_identity *owner, const uint8_t run_id[32], uint8_t sig[64])
{
    uint8_t msg[64];

    sw_manifest_sig_msg(msg, run_id);
    return sw_identity_sign(owner, sig, msg, sizeof(msg));
}

bool
sw_manifest_verify(const uint8_t owner[32], const uint8_t run_id[32], const uint8_t sig[64])
{
    uint8_t msg[64];

    sw_manifest_sig_msg(msg, run_id);
    return sw_identity_verify(owner, sig, msg, sizeof(msg));
}

int
sw_manifest_sig_format(char *buf, size_t len, const uint8_t owner[32], const uint8_t sig[64])
{
    char ho[65], hs[129];

    sw_identity_hex(ho, owner, 32);
    sw_identity_hex(hs, sig, 64);
    if ((size_t)snprintf(buf, len, "swarm-manifest-signature 1\nowner %s\nsig %s\n", ho, hs) >= len)
        return -SW_ERANGE;
    return 0;
}

int
sw_manifest_sig_parse(const char *text, uint8_t owner[32], uint8_t sig[64])
{
    char ho[80], hs[160];

    if (sscanf(text, "swarm-manifest-signature 1 owner %79s sig %159s", ho, hs) != 2)
        return -SW_EFORMAT;
    if (strlen(ho) != 64 || strlen(hs) != 128 || sw_hex_decode(owner, 32, ho) < 0 ||
        sw_hex_decode(sig, 64, hs) < 0)
        return -SW_EFORMAT;
    return 0;
}

int
sw_manifest_check_sigfile(const struct sw_manifest *m, const char *path,
                          const uint8_t *want_owner, uint8_t owner[32], uint8_t sig[64])
{
    char sigpath[4200], *text;
    size_t len;
    int err;

    snprintf(sigpath, sizeof(sigpath), "%s.sig", path);
    if ((err = read_file(sigpath, &text, &len, 4096)) < 0) {
        if (err == -ENOENT)
            sw_log(SW_LOG_ERROR, "manifest '%s' is unsigned: no '%s' (swarmctl manifest sign)",
                   path, sigpath);
        else
            sw_log(SW_LOG_ERROR, "cannot read '%s': %s", sigpath, sw_strerror(err));
        return err == -ENOENT ? -SW_ENOENT : err;
    }
    err = sw_manifest_sig_parse(text, owner, sig);
    sw_free(text);
    if (err < 0) {
        sw_log(SW_LOG_ERROR, "'%s': not a manifest signature file", sigpath);
        return err;
    }
    if (want_owner && sodium_memcmp(want_owner, owner, 32) != 0) {
        char a[65], b[65];
        sw_log(SW_LOG_ERROR, "manifest '%s' is signed by owner %s, not by %s", path,
               sw_identity_hex(a, owner, 32), sw_identity_hex(b, want_owner, 32));
        return -SW_EPERM;
    }
    if (!sw_manifest_verify(owner, m->run_id, sig)) {
        sw_log(SW_LOG_ERROR, "manifest '%s': bad signature in '%s' (edited after signing?)", path,
               sigpath);
        return -SW_ESIG;
    }
    return 0;
}

void
sw_manifest_keys(FILE *f)
{
    for (size_t i = 0; i < SW_ARRAY_SIZE(sections); i++) {
        fprintf(f, "[%s]\n", sections[i].name);
        sw_cfg_help(sections[i].tab, sections[i].n, f);
    }
}

void
sw_manifest_dump(const struct sw_manifest *m, FILE *f)
{
    for (size_t i = 0; i < SW_ARRAY_SIZE(sections); i++) {
        fprintf(f, "[%s]\n", sections[i].name);
        sw_cfg_dump(sections[i].tab, sections[i].n, m, f);
    }
}
