/*
 * swarmsim - all pipeline stages in one process: the research and demo tool.
 *
 *   swarmsim train  [options]   train, print one line per step, export the model
 *   swarmsim eval   --model F --config J --data D --seq-len T --batch B [--grad-norms]
 *   swarmsim sample --model F [--config J] --prompt TEXT --tokens N
 *   swarmsim checkpoint list|verify|export --dir DIR [--out OUT]   (src/ckptcli.h)
 *
 * Every option comes from one table per command (src/config.h), which also
 * prints --help and --dump-config; swarmsim(1) lists the same options.
 *
 * Step lines (stdout) are key=value, for people and simple scripts
 * (elapsed: seconds since training began, this process's):
 *   step=12 loss=3.1234 lr=1.00e-03 norm=0.531,0.412 tok/s=12345 elapsed=4.2s
 *   step=50 val=2.9876
 * and DIR/train.csv holds the same numbers at full precision.
 */
#include "sw.h"

#include "rng.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "checkfree.h"
#include "ckpt.h"
#include "ckptcli.h"
#include "data.h"
#include "failsim.h"
#include "hfconfig.h"
#include "sim.h"

struct train_opts {
    char preset[32];
    char config[4096];
    char data[8192];
    char out[4096];
    char device[16];
    char math[16];
    char prompt[1024];
    char log_level[16];
    int stages, steps, batch, seq_len, micro;
    unsigned long long seed;
    float lr, min_lr_frac, weight_decay, grad_clip, beta1, beta2, val_frac, temperature;
    int warmup, eval_every, val_batches, threads, sample_tokens, log_every, dump_config;
    /* failures and recovery (src/failsim.h, src/checkfree.h) */
    float fail_rate, step_seconds, lr_bump, redundant_factor, ckpt_save_s, ckpt_load_s;
    float rebuild_s;
    unsigned long long fail_seed;
    char fail_schedule[4096];
    char recovery[32];
    char cf_weights[16];
    char act_codec[16];
    int max_iters;
    /* checkpoints (src/ckpt.h) */
    int ckpt_every, ckpt_keep;
    char ckpt_dir[4096];
    char resume[4096];
};

#define T struct train_opts
static const struct sw_cfg_entry train_tab[] = {
    SW_CFG_STR(T, "preset", preset, "small", "model shape preset (tiny, small, medium, bench768, bench2048)"),
    SW_CFG_STR(T, "config", config, "", "Hugging Face config.json giving the model shape (overrides --preset)"),
    SW_CFG_STR(T, "data", data, "", "training text or token files: a file, a folder, or a comma-separated list"),
    SW_CFG_STR(T, "out", out, "runs/swarmsim", "output folder: train.csv, model.safetensors, config.json"),
    SW_CFG_INT(T, "stages", stages, 1, 1, 1024, "pipeline stages S"),
    SW_CFG_INT(T, "steps", steps, 200, 1, 100000000, "training steps"),
    SW_CFG_U64(T, "seed", seed, 1337, "seed of initialisation and data sampling"),
    SW_CFG_INT(T, "batch", batch, 8, 1, 65536, "microbatch size B (sequences)"),
    SW_CFG_INT(T, "seq-len", seq_len, 0, 0, 65536, "tokens per sequence T (0: the model's seq_len)"),
    SW_CFG_INT(T, "micro", micro, 1, 1, 65536, "microbatches per step M"),
    SW_CFG_FLOAT(T, "lr", lr, 3e-3, 0, 10, "peak learning rate"),
    SW_CFG_INT(T, "warmup", warmup, 20, 0, 100000000, "linear warmup steps"),
    SW_CFG_FLOAT(T, "min-lr-frac", min_lr_frac, 0.1, 0, 1, "cosine floor as a fraction of --lr"),
    SW_CFG_FLOAT(T, "weight-decay", weight_decay, 0.1, 0, 10, "AdamW decoupled weight decay"),
    SW_CFG_FLOAT(T, "grad-clip", grad_clip, 1.0, 0, 1e9, "per-stage global gradient-norm clip (0: off)"),
    SW_CFG_FLOAT(T, "beta1", beta1, 0.9, 0, 1, "AdamW beta1"),
    SW_CFG_FLOAT(T, "beta2", beta2, 0.95, 0, 1, "AdamW beta2"),
    SW_CFG_FLOAT(T, "val-frac", val_frac, 0.1, 0.001, 0.5, "fraction of the tokens held out for validation"),
    SW_CFG_INT(T, "eval-every", eval_every, 50, 0, 100000000, "validation loss every K steps (0: only at the end)"),
    SW_CFG_INT(T, "val-batches", val_batches, 4, 1, 100000, "validation microbatches per evaluation"),
    SW_CFG_INT(T, "log-every", log_every, 1, 1, 100000000, "print a step line every K steps"),
    SW_CFG_STR(T, "device", device, "auto", "auto, cpu or cuda"),
    SW_CFG_STR(T, "math", math, "fp32", "matmul precision: fp32, tf32 or bf16 (CUDA only)"),
    SW_CFG_INT(T, "threads", threads, 0, 0, 1024, "CPU threads (0: all cores)"),
    SW_CFG_INT(T, "sample-tokens", sample_tokens, 200, 0, 100000, "tokens of text to generate at the end"),
    SW_CFG_STR(T, "prompt", prompt, "The ", "prompt of the sample"),
    SW_CFG_FLOAT(T, "temperature", temperature, 0.8, 0, 10, "sampling temperature (0: greedy)"),
    SW_CFG_STR(T, "log-level", log_level, "info", "debug, info, warn or error"),
    SW_CFG_BOOL(T, "dump-config", dump_config, 0, "print the options in effect and exit"),
    SW_CFG_FLOAT(T, "fail-rate", fail_rate, 0, 0, 1, "simulated failures per stage per hour (0: none)"),
    SW_CFG_FLOAT(T, "step-seconds", step_seconds, 30, 1e-6, 1e9, "simulated seconds of one failure-free step"),
    SW_CFG_U64(T, "fail-seed", fail_seed, 1, "seed of the failure schedule"),
    SW_CFG_STR(T, "fail-schedule", fail_schedule, "", "replay this failure schedule file instead of drawing one"),
    SW_CFG_STR(T, "recovery", recovery, "none", "none, checkfree, checkfree+, copy, uniform, random, checkpoint:N or redundant"),
    SW_CFG_FLOAT(T, "lr-bump", lr_bump, 1.1, 0, 100, "learning-rate multiplier of a rebuilt stage"),
    SW_CFG_STR(T, "cf-weights", cf_weights, "preclip", "CheckFree neighbour weights: preclip or clipped gradient norms"),
    SW_CFG_STR(T, "act-codec", act_codec, "fp32", "activations and their gradients at stage boundaries: fp32, bf16, int8 or int4 (the swarm's [wire] activations)"),
    SW_CFG_FLOAT(T, "rebuild-seconds", rebuild_s, 0.01, 0, 1e9, "simulated time of one stage rebuild (fixed, so runs replay exactly)"),
    SW_CFG_FLOAT(T, "redundant-factor", redundant_factor, 0, 0, 100, "step-time factor of redundant computation (0: measure)"),
    SW_CFG_FLOAT(T, "ckpt-save-seconds", ckpt_save_s, -1, -1, 1e9, "simulated stall of a checkpoint save (-1: measure)"),
    SW_CFG_FLOAT(T, "ckpt-load-seconds", ckpt_load_s, -1, -1, 1e9, "simulated time of a checkpoint reload (-1: measure)"),
    SW_CFG_INT(T, "max-iters", max_iters, 0, 0, 100000000, "stop after this many executed steps, rollbacks included (0: 4 x --steps)"),
    SW_CFG_INT(T, "ckpt-every", ckpt_every, 0, 0, 100000000, "save a checkpoint every N steps, behind training (0: never)"),
    SW_CFG_STR(T, "ckpt-dir", ckpt_dir, "", "checkpoint folder (default: OUT/ckpt)"),
    SW_CFG_INT(T, "ckpt-keep", ckpt_keep, 3, 0, 1000000, "keep the K newest checkpoints (0: all)"),
    SW_CFG_STR(T, "resume", resume, "", "resume from the newest complete checkpoint in this folder (any stage count)"),
};
#undef T

static const char *prog = "swarmsim";

/* mkdir -p */
static int
make_dirs(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof(buf))
        return -SW_EINVAL;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0777) < 0 && errno != EEXIST)
                return -errno;
            buf[i] = c;
        }
    }
    return 0;
}

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: swarmsim train [options]\n"
            "       swarmsim eval --model FILE --config FILE --data PATH --seq-len T --batch B "
            "[--grad-norms]\n"
            "       swarmsim sample --model FILE [--config FILE] [--prompt TEXT] [--tokens N]\n"
            "       swarmsim checkpoint list|verify|export --dir DIR [--out DIR] [--step N]\n"
            "       swarmsim --help | --version\n\n"
            "Trains a LLaMA-style model with all pipeline stages in one process.\n"
            "'swarmsim COMMAND --help' lists a command's options; see swarmsim(1).\n");
}

static int
setup_backend(const char *device, const char *math, int threads, const struct sw_kernels **k)
{
    enum sw_device dev;
    enum sw_math mm;
    int err;

    if (sw_device_parse(device, &dev) < 0) {
        fprintf(stderr, "%s: --device: want auto, cpu or cuda, got '%s'\n", prog, device);
        return -SW_ECONFIG;
    }
    if (sw_math_parse(math, &mm) < 0) {
        fprintf(stderr, "%s: --math: want fp32, tf32 or bf16, got '%s'\n", prog, math);
        return -SW_ECONFIG;
    }
    if ((err = sw_kernels_pick(dev, k)) < 0)
        return err;
    if ((err = (*k)->set_math(mm)) < 0) {
        fprintf(stderr, "%s: --math %s is not available on the %s backend\n", prog, math,
                (*k)->name);
        return err;
    }
    if (threads > 0)
        (*k)->set_threads(threads);
    return 0;
}

static int
model_from_opts(const char *preset, const char *config, struct sw_model_config *c)
{
    char why[256];
    int err;

    if (config[0]) {
        if ((err = sw_hfconfig_read(config, c)) < 0)
            return err;
    } else if (sw_model_preset(preset, c) < 0) {
        fprintf(stderr, "%s: unknown preset '%s' (one of %s)\n", prog, preset,
                sw_model_preset_names());
        return -SW_ECONFIG;
    }
    if ((err = sw_model_config_check(c, why, sizeof(why))) < 0) {
        fprintf(stderr, "%s: bad model: %s\n", prog, why);
        return err;
    }
    return 0;
}

/* ---- sampling ---- */


/* Generate n tokens after prompt with a B=1 copy of the model; prints text. */
static int
sample_text(const struct sw_sim *src, const char *prompt, int n, float temperature, uint64_t seed,
            FILE *out)
{
    const struct sw_model_config *c = &src->cfg;
    struct sw_optim_config oc;
    struct sw_sim g;
    int T = c->seq_len, V = c->vocab_size, len = 0, err;
    int32_t *ctx = NULL, *tg = NULL;
    float *logits = NULL, loss;
    uint64_t rng = seed ^ 0x5eedull;

    sw_optim_config_default(&oc);
    if ((err = sw_sim_init(&g, src->k, c, 1, 1, T, 1, &oc, seed)) < 0)
        return err;
    ctx = sw_calloc((size_t)T, sizeof(*ctx));
    tg = sw_calloc((size_t)T, sizeof(*tg));
    logits = sw_malloc((size_t)T * V * sizeof(float));
    if (!ctx || !tg || !logits) {
        err = -SW_ENOMEM;
        goto out;
    }
    if ((err = sw_sim_copy_params(&g, src)) < 0)
        goto out;
    for (const char *p = prompt; *p && len < T; p++)
        ctx[len++] = (uint8_t)*p % V;
    if (len == 0)
        ctx[len++] = '\n' % V;
    fputs(prompt, out);
    for (int i = 0; i < n; i++) {
        double r, acc = 0, mx = -INFINITY, z = 0;
        float *row;
        int next = 0;

        if ((err = sw_sim_eval(&g, ctx, tg, &loss)) < 0 || (err = sw_sim_logits(&g, logits)) < 0)
            goto out;
        row = logits + (size_t)(len - 1) * V;
        for (int v = 0; v < V; v++)
            mx = fmax(mx, row[v]);
        if (temperature <= 0) {
            for (int v = 0; v < V; v++)
                if (row[v] == mx) {
                    next = v;
                    break;
                }
        } else {
            for (int v = 0; v < V; v++)
                z += exp((row[v] - mx) / temperature);
            r = sw_rng_uniform01(&rng) * z;
            for (next = 0; next < V - 1; next++) {
                acc += exp((row[next] - mx) / temperature);
                if (acc > r)
                    break;
            }
        }
        if (V == 256)
            fputc(next, out);
        else
            fprintf(out, " %d", next);
        if (len == T) {
            memmove(ctx, ctx + 1, (size_t)(T - 1) * sizeof(*ctx));
            len--;
        }
        ctx[len++] = next;
    }
    fputc('\n', out);
    fflush(out);
out:
    sw_free(ctx);
    sw_free(tg);
    sw_free(logits);
    sw_sim_release(&g);
    return err;
}

/* ---- failures and recovery ---- */

enum recovery {
    REC_NONE,
    REC_CHECKFREE,
    REC_CHECKFREE_PLUS,
    REC_COPY,
    REC_UNIFORM,
    REC_RANDOM,
    REC_CHECKPOINT,
    REC_REDUNDANT,
};

/* What the failure simulator and the recovery strategy of one run hold. */
struct recov {
    enum recovery kind;
    const char *name;
    int ckpt_every;                  /* checkpoint:N */
    struct sw_checkfree_config cc;
    struct sw_failsim fs;
    bool have_fs;
    double step_s;                   /* simulated seconds of one step (factor included) */
    double factor;                   /* redundant computation's step-time factor */
    double save_s, load_s, write_s;  /* checkpoint costs, simulated seconds */
    double rebuild_s;                /* simulated time of one rebuild */
    struct sw_snapshot snap;
    bool have_snap;
    struct sw_data_cursor snap_cur;
    long next_slot;                  /* failures of earlier slots are handled */
    FILE *events;
    uint64_t seed;
    int n_fail, n_rebuilt, n_skipped, n_fallback, n_rollback, n_absorbed, n_ckpt;
    long lost_steps;                 /* steps redone after rollbacks */
};

static int
parse_recovery(const char *s, struct recov *r)
{
    static const struct {
        const char *name;
        enum recovery kind;
    } tab[] = {{"none", REC_NONE},       {"checkfree", REC_CHECKFREE}, {"checkfree+", REC_CHECKFREE_PLUS},
               {"copy", REC_COPY},       {"uniform", REC_UNIFORM},     {"random", REC_RANDOM},
               {"redundant", REC_REDUNDANT}};
    char *end;
    long n;

    for (size_t i = 0; i < SW_ARRAY_SIZE(tab); i++) {
        if (!strcmp(s, tab[i].name)) {
            r->kind = tab[i].kind;
            r->name = tab[i].name;
            return 0;
        }
    }
    if (!strncmp(s, "checkpoint:", 11)) {
        errno = 0;
        n = strtol(s + 11, &end, 10);
        if (errno == 0 && end != s + 11 && *end == '\0' && n >= 1 && n <= 100000000) {
            r->kind = REC_CHECKPOINT;
            r->name = "checkpoint";
            r->ckpt_every = (int)n;
            return 0;
        }
    }
    fprintf(stderr,
            "%s: --recovery: want none, checkfree, checkfree+, copy, uniform, random, "
            "checkpoint:N (N >= 1) or redundant, got '%s'\n",
            prog, s);
    return -SW_ECONFIG;
}

SW_PRINTF(7, 8) static void
event(struct recov *r, long iter, int step, double simt, int stage, const char *kind,
      const char *fmt, ...)
{
    char detail[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    printf("s:%d event:%s stage:%d t:%.4fh %s\n", step, kind, stage, simt / 3600.0, detail);
    if (r->events) {
        fprintf(r->events, "%ld,%d,%.6f,%d,%s,\"%s\"\n", iter, step, simt / 3600.0, stage, kind,
                detail);
        fflush(r->events);
    }
}

/* The stages a rebuild of s reads from, into src[]; returns how many. */
static int
rebuild_sources(const struct recov *r, int S, int s, int *src)
{
    if (r->kind == REC_CHECKFREE_PLUS) {
        if (s == 0 || s == 1 || s == S - 2 || s == S - 1) {
            src[0] = s == 0 ? 1 : s == 1 ? 0 : s == S - 2 ? S - 1 : S - 2;
            return 1;
        }
    }
    switch (r->kind) {
    case REC_RANDOM:
        return 0;
    case REC_COPY:
        src[0] = s - 1;
        return 1;
    default:
        src[0] = s - 1;
        src[1] = s + 1;
        return 2;
    }
}

static enum sw_checkfree_rule
rule_of(enum recovery kind)
{
    switch (kind) {
    case REC_UNIFORM:
        return SW_CF_UNIFORM;
    case REC_COPY:
        return SW_CF_COPY_PREV;
    case REC_RANDOM:
        return SW_CF_RANDOM;
    default:
        return SW_CF_CHECKFREE;
    }
}

/* Apply the failures of the slots up to simulated time *simt, then recover
 * by r's strategy.  -SW_ELOST when the run must stop. */
static int
handle_failures(struct sw_sim *sim, struct sw_data *data, struct recov *r, long iter,
                double *simt)
{
    int S = sim->S, step = sim->step, nlost = 0, err = 0;
    long slot1 = sw_failsim_slot_at(&r->fs, *simt);
    bool *lost;
    char names[256] = "";

    if (slot1 <= r->next_slot)
        return 0;
    if (!(lost = sw_calloc((size_t)S, sizeof(*lost))))
        return -SW_ENOMEM;
    for (long k = r->next_slot; k < slot1; k++) {
        for (int s = 0; s < S; s++) {
            if (!sw_failsim_fails(&r->fs, k, s))
                continue;
            r->n_fail++;
            event(r, iter, step, *simt, s, "fail", "slot %ld (t %.4fh)", k,
                  k * r->fs.step_seconds / 3600.0);
            lost[s] = true;
        }
    }
    r->next_slot = slot1;
    for (int s = 0; s < S; s++) {
        if (lost[s]) {
            nlost++;
            snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%d",
                     nlost > 1 ? "," : "", s);
        }
    }
    if (nlost == 0)
        goto out;

    switch (r->kind) {
    case REC_NONE:
        sw_log(SW_LOG_ERROR, "stage(s) %s lost at step %d (simulated %.3f h) and --recovery none: "
                             "stopping", names, step, *simt / 3600.0);
        event(r, iter, step, *simt, -1, "stop", "lost stage(s) %s, no recovery", names);
        err = -SW_ELOST;
        goto out;
    case REC_REDUNDANT:
        for (int s = 0; s < S; s++) {
            if (!lost[s])
                continue;
            r->n_absorbed++;
            event(r, iter, step, *simt, s, "absorbed", "%s",
                  lost[(s + S - 1) % S] ? "its predecessor (holder of the redundant copy) was lost "
                                          "too: Bamboo would restart; counted as absorbed"
                                        : "predecessor's redundant copy takes over, no progress lost");
        }
        goto out;
    case REC_CHECKPOINT: {
        int back = step - r->snap.step;
        for (int s = 0; s < S; s++)
            if (lost[s] && (err = sw_sim_lose_stage(sim, s)) < 0)
                goto out;
        if ((err = sw_sim_snapshot_load(sim, &r->snap)) < 0)
            goto out;
        sw_data_cursor_set(data, &r->snap_cur);
        *simt += r->load_s;
        r->n_rollback++;
        r->lost_steps += back;
        event(r, iter, step, *simt, -1, "rollback", "stage(s) %s lost: every stage back to step %d "
              "(%d steps lost), reload %.3f s", names, r->snap.step, back, r->load_s);
        goto out;
    }
    default:
        break;
    }

    /* rebuild strategies: plain rules cannot rebuild a boundary stage */
    for (int s = 0; s < S; s++) {
        if (lost[s] && r->kind != REC_CHECKFREE_PLUS && r->kind != REC_RANDOM &&
            (s == 0 || s == S - 1)) {
            lost[s] = false;
            r->n_skipped++;
            event(r, iter, step, *simt, s, "skip", "%s cannot rebuild boundary stage %d: failure "
                  "ignored (as in the paper)", r->name, s);
        }
    }
    for (int s = 0; s < S; s++)
        if (lost[s] && (err = sw_sim_lose_stage(sim, s)) < 0)
            goto out;
    for (int s = 0; s < S; s++) {
        int src[2], n;
        bool fallback = false;
        double t0, dt;
        float wp, wn;

        if (!lost[s])
            continue;
        n = rebuild_sources(r, S, s, src);
        for (int i = 0; i < n; i++)
            fallback |= lost[src[i]];
        wp = s > 0 ? sw_checkfree_weight(&sim->opts[s - 1], r->cc.clipped_norm) : 0;
        wn = s + 1 < S ? sw_checkfree_weight(&sim->opts[s + 1], r->cc.clipped_norm) : 0;
        t0 = sw_now_s();
        if (fallback)
            err = sw_sim_rebuild(sim, s, SW_CF_RANDOM, false, &r->cc,
                                 r->seed ^ ((uint64_t)iter << 16) ^ (uint64_t)s);
        else
            err = sw_sim_rebuild(sim, s, rule_of(r->kind), r->kind == REC_CHECKFREE_PLUS, &r->cc,
                                 r->seed ^ ((uint64_t)iter << 16) ^ (uint64_t)s);
        if (err < 0)
            goto out;
        dt = sw_now_s() - t0; /* reported; the clock takes the fixed rebuild_s */
        *simt += r->rebuild_s;
        if (fallback) {
            r->n_fallback++;
            event(r, iter, step, *simt, s, "fallback", "a stage %s reads from was lost too: random "
                  "re-initialisation (%.1f ms)", r->name, dt * 1e3);
        } else {
            r->n_rebuilt++;
            if (r->kind == REC_CHECKFREE ||
                (r->kind == REC_CHECKFREE_PLUS && s > 1 && s < S - 2))
                event(r, iter, step, *simt, s, "rebuild", "%s from stages %d and %d, weights %.4g "
                      "and %.4g (%s), lr x%.2f (%.1f ms)", r->name, s - 1, s + 1, wp, wn,
                      r->cc.clipped_norm ? "clipped" : "pre-clip", r->cc.lr_bump, dt * 1e3);
            else if (n == 1)
                event(r, iter, step, *simt, s, "rebuild", "%s from stage %d, lr x%.2f (%.1f ms)",
                      r->name, src[0], r->cc.lr_bump, dt * 1e3);
            else
                event(r, iter, step, *simt, s, "rebuild", "%s, lr x%.2f (%.1f ms)", r->name,
                      r->cc.lr_bump, dt * 1e3);
        }
    }
    /* replicas follow their owners, rebuilt or not */
    if (sim->swap)
        for (int i = 0; i < 2; i++)
            if ((err = sw_checkfree_replica_refresh(&sim->reps[i],
                                                    &sim->stages[i == 0 ? 0 : S - 1])) < 0)
                goto out;
out:
    sw_free(lost);
    return err;
}

/* Redundant computation (Bamboo): each stage also runs its successor's
 * forward (the last stage stage 0's: a ring).  In a pipeline the step time
 * follows the slowest stage, so the factor is
 *   max_s(f_s + b_s + f_{s+1}) / max_s(f_s + b_s)
 * with f, b the measured forward and backward of one microbatch. */
static int
measure_redundant(struct sw_sim *sim, struct sw_data *data, int32_t *in, int32_t *tg,
                  double *factor)
{
    int S = sim->S, err;
    double *f = sw_calloc((size_t)S, sizeof(double)), *b = sw_calloc((size_t)S, sizeof(double));
    double base = 0, red = 0, sbase = 0, sred = 0;
    struct sw_data_cursor cur;

    if (!f || !b) {
        err = -SW_ENOMEM;
        goto out;
    }
    sw_data_cursor_get(data, &cur);
    if ((err = sw_data_next_batch(data, in, tg, sim->B, sim->T)) < 0)
        goto out;
    sw_data_cursor_set(data, &cur); /* the run's data stream is not touched */
    if ((err = sw_sim_time_stages(sim, in, tg, 7, f, b)) < 0 || (err = sw_sim_zero_grad(sim)) < 0)
        goto out;
    for (int s = 0; s < S; s++) {
        double own = f[s] + b[s], extra = S > 1 ? f[(s + 1) % S] : 0;
        base = fmax(base, own);
        red = fmax(red, own + extra);
        sbase += own;
        sred += own + extra;
        sw_log(SW_LOG_INFO, "stage %d: forward %.2f ms, backward %.2f ms", s, f[s] * 1e3,
               b[s] * 1e3);
    }
    *factor = base > 0 ? red / base : 1.0;
    sw_log(SW_LOG_INFO, "redundant computation: step-time factor %.3f (slowest stage; %.3f summed "
                        "over stages)", *factor, sbase > 0 ? sred / sbase : 1.0);
out:
    sw_free(f);
    sw_free(b);
    return err;
}

/* Checkpoint costs on this engine: the snapshot (a copy of params, m, v to
 * host memory: the only stall, DESIGN.md "Checkpoints"), the write with
 * fdatasync that runs behind training, and the reload (read the file back,
 * copy into the stages). */
static int
measure_checkpoint(struct sw_sim *sim, struct recov *r, const char *dir)
{
    char path[4200];
    double t0, save = 1e30;
    FILE *f;
    int fd, err = 0;

    for (int i = 0; i < 3; i++) {
        t0 = sw_now_s();
        if ((err = sw_sim_snapshot_save(&r->snap, sim)) < 0)
            return err;
        save = fmin(save, sw_now_s() - t0);
    }
    snprintf(path, sizeof(path), "%s/ckpt-probe.bin", dir);
    t0 = sw_now_s();
    if (!(f = fopen(path, "wb")))
        goto fail;
    for (int s = 0; s < sim->S; s++) {
        size_t n = sim->stages[s].lay.numel;
        if (fwrite(r->snap.params[s], sizeof(float), n, f) != n ||
            fwrite(r->snap.m[s], sizeof(float), n, f) != n ||
            fwrite(r->snap.v[s], sizeof(float), n, f) != n)
            goto fail_close;
    }
    if (fflush(f) != 0 || (fd = fileno(f)) < 0 || fdatasync(fd) < 0)
        goto fail_close;
    fclose(f);
    r->write_s = sw_now_s() - t0;
    t0 = sw_now_s();
    if (!(f = fopen(path, "rb")))
        goto fail;
    for (int s = 0; s < sim->S; s++) {
        size_t n = sim->stages[s].lay.numel;
        if (fread(r->snap.params[s], sizeof(float), n, f) != n ||
            fread(r->snap.m[s], sizeof(float), n, f) != n ||
            fread(r->snap.v[s], sizeof(float), n, f) != n)
            goto fail_close;
    }
    fclose(f);
    if ((err = sw_sim_snapshot_load(sim, &r->snap)) < 0)
        return err;
    r->load_s = sw_now_s() - t0;
    r->save_s = save;
    remove(path);
    return 0;
fail_close:
    fclose(f);
fail:
    err = errno ? -errno : -SW_EIO;
    sw_log(SW_LOG_ERROR, "checkpoint probe '%s': %s", path, sw_strerror(err));
    remove(path);
    return err;
}

static int
write_summary(const char *dir, const struct train_opts *o, const struct recov *r,
              const struct sw_sim *sim, long iter, double simt, float last_val, int err)
{
    char path[4200];
    FILE *f;

    snprintf(path, sizeof(path), "%s/summary.txt", dir);
    if (!(f = fopen(path, "w")))
        return -errno;
    fprintf(f, "recovery %s\nckpt_every %d\nfail_rate %g\nstep_seconds %g\nfail_seed %llu\n"
               "seed %llu\nstages %d\nsteps %d\nstep_reached %d\niters %ld\nsim_hours %.6f\n"
               "final_val %.6f\nfailures %d\nrebuilt %d\nskipped %d\nfallback %d\nrollbacks %d\n"
               "lost_steps %ld\nabsorbed %d\ncheckpoints %d\nstep_factor %.4f\nckpt_save_s %.6f\n"
               "ckpt_write_s %.6f\nckpt_load_s %.6f\nlr_bump %g\ncf_weights %s\nstatus %s\n",
            r->name, r->ckpt_every, o->fail_rate, o->step_seconds, o->fail_seed, o->seed, sim->S,
            o->steps, sim->step, iter, simt / 3600.0, last_val, r->n_fail, r->n_rebuilt,
            r->n_skipped, r->n_fallback, r->n_rollback, r->lost_steps, r->n_absorbed, r->n_ckpt,
            r->factor, r->save_s, r->write_s, r->load_s, r->cc.lr_bump,
            r->cc.clipped_norm ? "clipped" : "preclip", err < 0 ? "stopped" : "done");
    return fclose(f) == 0 ? 0 : -errno;
}

/* ---- train ---- */

static int
cmd_train(int argc, char **argv)
{
    struct train_opts o;
    struct sw_model_config c;
    struct sw_optim_config oc;
    const struct sw_kernels *k;
    struct sw_data data;
    struct sw_sim sim;
    struct recov rec;
    enum sw_codec codec;
    struct sw_ckpt_saver saver;
    bool have_saver = false;
    int32_t *in = NULL, *tg = NULL;
    FILE *csv = NULL, *valcsv = NULL;
    char path[4200];
    int err, T, nval;
    size_t N;
    long iter = 0, max_iters;
    double t0, tokens = 0, simt = 0;
    float last_val = NAN;
    bool have_data = false, have_sim = false, failures;

    memset(&rec, 0, sizeof(rec));
    sw_cfg_defaults(train_tab, SW_ARRAY_SIZE(train_tab), &o);
    err = sw_cfg_getopt(train_tab, SW_ARRAY_SIZE(train_tab), &o, argc, argv, 1, prog);
    if (err == -SW_ECANCELED) {
        printf("usage: swarmsim train [options]\n\n");
        sw_cfg_help(train_tab, SW_ARRAY_SIZE(train_tab), stdout);
        return 0;
    }
    if (err < 0)
        return 2;
    if (err < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[err]);
        return 2;
    }
    if (sw_log_parse_level(o.log_level) < 0) {
        fprintf(stderr, "%s: --log-level: want debug, info, warn or error\n", prog);
        return 2;
    }
    if (o.dump_config) {
        sw_cfg_dump(train_tab, SW_ARRAY_SIZE(train_tab), &o, stdout);
        return 0;
    }
    if (!o.data[0]) {
        fprintf(stderr, "%s: train needs --data PATH (a text file, a folder or a list)\n", prog);
        return 2;
    }
    if (parse_recovery(o.recovery, &rec) < 0)
        return 2;
    if (sw_codec_parse(o.act_codec, &codec) < 0) {
        fprintf(stderr, "%s: --act-codec: want fp32, bf16, int8 or int4, got '%s'\n", prog,
                o.act_codec);
        return 2;
    }
    sw_checkfree_config_default(&rec.cc);
    rec.cc.lr_bump = o.lr_bump;
    if (!strcmp(o.cf_weights, "clipped")) {
        rec.cc.clipped_norm = true;
    } else if (strcmp(o.cf_weights, "preclip") != 0) {
        fprintf(stderr, "%s: --cf-weights: want preclip or clipped, got '%s'\n", prog,
                o.cf_weights);
        return 2;
    }
    rec.seed = o.seed;
    rec.factor = 1.0;
    rec.rebuild_s = o.rebuild_s;
    if (model_from_opts(o.preset, o.config, &c) < 0)
        return 2;
    T = o.seq_len ? o.seq_len : c.seq_len;
    if (T > c.seq_len) {
        fprintf(stderr, "%s: --seq-len %d exceeds the model's seq_len %d\n", prog, T, c.seq_len);
        return 2;
    }
    failures = o.fail_rate > 0 || o.fail_schedule[0];
    if (failures || rec.kind != REC_NONE) {
        /* every rebuild maps blocks one to one: refuse uneven cuts up front */
        int l0, l1, m0, m1;
        for (int s = 0; s + 1 < o.stages && rec.kind != REC_CHECKPOINT &&
                        rec.kind != REC_REDUNDANT && rec.kind != REC_NONE; s++) {
            sw_model_partition(&c, o.stages, s, &l0, &l1);
            sw_model_partition(&c, o.stages, s + 1, &m0, &m1);
            if (l1 - l0 != m1 - m0) {
                fprintf(stderr, "%s: --recovery %s rebuilds a stage block by block from its "
                                "neighbours: %d layers over %d stages give stage %d %d block(s) "
                                "and stage %d %d; pick a stage count that divides the layers\n",
                        prog, o.recovery, c.n_layers, o.stages, s, l1 - l0, s + 1, m1 - m0);
                return 2;
            }
        }
    }
    if (setup_backend(o.device, o.math, o.threads, &k) < 0)
        return 2;
    sw_optim_config_default(&oc);
    oc.lr = o.lr;
    oc.min_lr_frac = o.min_lr_frac;
    oc.warmup_steps = o.warmup;
    oc.max_steps = o.steps;
    oc.weight_decay = o.weight_decay;
    oc.grad_clip = o.grad_clip;
    oc.beta1 = o.beta1;
    oc.beta2 = o.beta2;

    if ((err = sw_data_open(&data, o.data, c.vocab_size, o.val_frac, o.seed)) < 0)
        return 1;
    have_data = true;
    if ((err = sw_sim_init(&sim, k, &c, o.stages, o.batch, T, o.micro, &oc, o.seed)) < 0)
        goto out;
    have_sim = true;
    sim.codec = codec;
    if (rec.kind == REC_CHECKFREE_PLUS && (err = sw_sim_enable_swap(&sim)) < 0)
        goto out;
    if (o.resume[0]) {
        struct sw_ckpt ck;
        if ((err = sw_ckpt_open(&ck, o.resume, -1)) < 0)
            goto out;
        err = sw_ckpt_load_sim(&ck, &sim, &data);
        if (err == 0 && ck.run.seed != o.seed)
            sw_log(SW_LOG_WARN, "resuming a run seeded %llu with --seed %llu",
                   (unsigned long long)ck.run.seed, o.seed);
        sw_ckpt_close(&ck);
        if (err < 0)
            goto out;
    }
    N = (size_t)o.batch * T;
    in = sw_malloc(N * o.micro * sizeof(*in));
    tg = sw_malloc(N * o.micro * sizeof(*tg));
    if (!in || !tg) {
        err = -SW_ENOMEM;
        goto out;
    }
    if ((err = make_dirs(o.out)) < 0) {
        sw_log(SW_LOG_ERROR, "cannot create '%s': %s", o.out, sw_strerror(err));
        goto out;
    }
    snprintf(path, sizeof(path), "%s/train.csv", o.out);
    if (!(csv = fopen(path, "w"))) {
        err = -errno;
        sw_log(SW_LOG_ERROR, "cannot create '%s': %s", path, sw_strerror(err));
        goto out;
    }
    fprintf(csv, "step,loss,lr,tokens_per_s,val_loss");
    for (int s = 0; s < o.stages; s++)
        fprintf(csv, ",norm%d", s);
    fprintf(csv, ",iter,sim_hours\n");
    snprintf(path, sizeof(path), "%s/val.csv", o.out);
    if (!(valcsv = fopen(path, "w"))) {
        err = -errno;
        sw_log(SW_LOG_ERROR, "cannot create '%s': %s", path, sw_strerror(err));
        goto out;
    }
    fprintf(valcsv, "iter,step,sim_hours,val_loss\n");
    snprintf(path, sizeof(path), "%s/events.csv", o.out);
    if (!(rec.events = fopen(path, "w"))) {
        err = -errno;
        sw_log(SW_LOG_ERROR, "cannot create '%s': %s", path, sw_strerror(err));
        goto out;
    }
    fprintf(rec.events, "iter,step,sim_hours,stage,event,detail\n");
    nval = (int)SW_MIN((size_t)o.val_batches, sw_data_val_nbatches(&data, o.batch, T));
    sw_log(SW_LOG_INFO,
           "model: d_model %d, %d layers, %d heads (%d kv), ffn %d, vocab %d, %.2fM params; "
           "%d stages, batch %d x %d tokens x %d micro; backend %s",
           c.d_model, c.n_layers, c.n_heads, c.n_kv_heads, c.ffn_hidden, c.vocab_size,
           sw_model_numel(&c) / 1e6, o.stages, o.batch, T, o.micro, k->name);
    sw_log(SW_LOG_INFO, "data: %zu train tokens, %zu validation tokens (%d validation batches)",
           sw_data_split_len(&data, SW_DATA_TRAIN), sw_data_split_len(&data, SW_DATA_VAL), nval);

    /* failure schedule and the costs of the strategy */
    if (o.fail_schedule[0])
        err = sw_failsim_load(&rec.fs, o.fail_schedule, o.stages);
    else
        err = sw_failsim_init(&rec.fs, o.stages, o.fail_rate, o.step_seconds, o.fail_seed);
    if (err < 0)
        goto out;
    rec.have_fs = true;
    if (rec.kind == REC_REDUNDANT) {
        if (o.redundant_factor > 0)
            rec.factor = o.redundant_factor;
        else if ((err = measure_redundant(&sim, &data, in, tg, &rec.factor)) < 0)
            goto out;
    }
    rec.step_s = o.step_seconds * rec.factor;
    if (rec.kind == REC_CHECKPOINT) {
        if ((err = sw_sim_snapshot_init(&rec.snap, &sim)) < 0)
            goto out;
        rec.have_snap = true;
        if ((err = measure_checkpoint(&sim, &rec, o.out)) < 0)
            goto out;
        sw_log(SW_LOG_INFO, "checkpoint of %.1f MB: snapshot %.2f ms, write+fdatasync %.2f ms, "
                            "reload %.2f ms (measured)", rec.snap.bytes / 1e6, rec.save_s * 1e3,
               rec.write_s * 1e3, rec.load_s * 1e3);
        /* the write runs behind training; only what it overruns N steps stalls */
        rec.save_s += fmax(0.0, rec.write_s - rec.ckpt_every * rec.step_s);
        if (o.ckpt_save_s >= 0)
            rec.save_s = o.ckpt_save_s;
        if (o.ckpt_load_s >= 0)
            rec.load_s = o.ckpt_load_s;
        rec.snap.valid = false;
    }
    if (failures)
        sw_log(SW_LOG_INFO, "failures: %s, %g per stage per hour, step %g s simulated (p = %.3g "
                            "per stage per step), recovery %s",
               rec.fs.replay ? o.fail_schedule : "drawn", rec.fs.rate, rec.fs.step_seconds,
               rec.fs.p, o.recovery);

    if (o.ckpt_every > 0) {
        if (!o.ckpt_dir[0])
            snprintf(o.ckpt_dir, sizeof(o.ckpt_dir), "%s/ckpt", o.out);
        if ((err = sw_ckpt_saver_init(&saver, &sim, o.ckpt_dir, o.ckpt_keep, &oc, o.seed)) < 0)
            goto out;
        have_saver = true;
    }
    max_iters = o.max_iters ? o.max_iters : 4L * o.steps;
    t0 = sw_now_s();
    while (sim.step < o.steps) {
        int step = sim.step;
        float lr = sw_lr_at(&oc, step), loss, val = NAN;
        double t1, dt;

        if (iter >= max_iters) {
            sw_log(SW_LOG_ERROR, "stopping after %ld executed steps at step %d of %d: failures "
                                 "outpace progress", iter, step, o.steps);
            event(&rec, iter, step, simt, -1, "stop", "after %ld executed steps", iter);
            err = -SW_ELOST;
            goto out;
        }
        if (rec.kind == REC_CHECKPOINT && step % rec.ckpt_every == 0 &&
            !(rec.snap.valid && rec.snap.step == step)) {
            if ((err = sw_sim_snapshot_save(&rec.snap, &sim)) < 0)
                goto out;
            sw_data_cursor_get(&data, &rec.snap_cur);
            simt += rec.save_s;
            rec.n_ckpt++;
        }
        t1 = sw_now_s();
        for (int m = 0; m < o.micro; m++)
            if ((err = sw_data_next_batch(&data, in + m * N, tg + m * N, o.batch, T)) < 0)
                goto out;
        if ((err = sw_sim_step(&sim, in, tg, lr, &loss)) < 0)
            goto out;
        dt = sw_now_s() - t1;
        tokens += (double)N * o.micro;
        simt += rec.step_s;
        iter++;
        if ((o.eval_every > 0 && iter % o.eval_every == 0) || sim.step == o.steps) {
            double sum = 0;
            for (int b = 0; b < nval; b++) {
                float l;
                if ((err = sw_data_val_batch(&data, (size_t)b, in, tg, o.batch, T)) < 0 ||
                    (err = sw_sim_eval(&sim, in, tg, &l)) < 0)
                    goto out;
                sum += l;
            }
            val = nval > 0 ? (float)(sum / nval) : NAN;
        }
        if (step % o.log_every == 0 || sim.step == o.steps) {
            printf("step=%d loss=%.4f lr=%.2e norm=", step, loss, lr);
            for (int s = 0; s < o.stages; s++)
                printf("%s%.3f", s ? "," : "", sim.opts[s].last_norm);
            printf(" tok/s=%.0f elapsed=%.1fs\n", (double)N * o.micro / dt, sw_now_s() - t0);
        }
        if (!isnan(val)) {
            printf("step=%d val=%.4f\n", step, val);
            fprintf(valcsv, "%ld,%d,%.6f,%.6f\n", iter, step, simt / 3600.0, val);
            fflush(valcsv);
            last_val = val;
        }
        fflush(stdout);
        fprintf(csv, "%d,%.6f,%.6e,%.1f,", step, loss, lr, (double)N * o.micro / dt);
        if (!isnan(val))
            fprintf(csv, "%.6f", val);
        for (int s = 0; s < o.stages; s++)
            fprintf(csv, ",%.6f", sim.opts[s].last_norm);
        fprintf(csv, ",%ld,%.6f\n", iter, simt / 3600.0);
        if (failures && (err = handle_failures(&sim, &data, &rec, iter, &simt)) < 0)
            goto out;
        /* a skipped or failed save is logged by the saver; training goes on */
        if (have_saver && sim.step % o.ckpt_every == 0 &&
            sw_ckpt_saver_save(&saver, &sim, &data) < 0)
            sw_log(SW_LOG_DEBUG, "checkpoint of step %d not queued", sim.step);
    }
    if (have_saver) {
        if (sw_ckpt_saver_wait(&saver) < 0)
            sw_log(SW_LOG_WARN, "the last checkpoint save failed; older ones are intact");
        /* a final save that found both buffers busy is made now that they are free */
        if (sim.step % o.ckpt_every == 0 && saver.last_step != sim.step) {
            if (sw_ckpt_saver_save(&saver, &sim, &data) < 0 || sw_ckpt_saver_wait(&saver) < 0)
                sw_log(SW_LOG_WARN, "the final checkpoint of step %d failed", sim.step);
        }
        sw_log(SW_LOG_INFO, "checkpoints: %d saved, %d skipped, %d failed, %d queued behind "
                            "another; blocking %.2f ms mean, %.2f ms max; write %.1f ms mean",
               saver.n_saved, saver.n_skipped, saver.n_failed, saver.n_queued_behind,
               saver.sum_block_s * 1e3 / SW_MAX(1, saver.n_saved + saver.n_failed),
               saver.max_block_s * 1e3, saver.sum_write_s * 1e3 / SW_MAX(1, saver.n_saved));
    }
    sw_log(SW_LOG_INFO, "trained %d steps (%ld executed) in %.1f s (%.0f tokens/s)", o.steps,
           iter, sw_now_s() - t0, tokens / (sw_now_s() - t0));
    if (failures || rec.kind != REC_NONE)
        sw_log(SW_LOG_INFO, "simulated %.3f h: %d failure(s), %d rebuilt, %d skipped, %d "
                            "fallback(s), %d rollback(s) (%ld steps redone), %d absorbed",
               simt / 3600.0, rec.n_fail, rec.n_rebuilt, rec.n_skipped, rec.n_fallback,
               rec.n_rollback, rec.lost_steps, rec.n_absorbed);
    if ((err = sw_sim_export(&sim, o.out)) < 0)
        goto out;
    sw_log(SW_LOG_INFO, "exported '%s/model.safetensors' and '%s/config.json'", o.out, o.out);
    if (o.sample_tokens > 0) {
        printf("--- sample ---\n");
        err = sample_text(&sim, o.prompt, o.sample_tokens, o.temperature, o.seed, stdout);
    }
out:
    if (csv && fclose(csv) != 0 && err == 0)
        err = -errno;
    if (valcsv && fclose(valcsv) != 0 && err == 0)
        err = -errno;
    if (rec.events && fclose(rec.events) != 0 && err == 0)
        err = -errno;
    if (rec.have_fs && csv) {
        int e2;
        snprintf(path, sizeof(path), "%s/failures.txt", o.out);
        if ((e2 = sw_failsim_save(&rec.fs, path, sw_failsim_slot_at(&rec.fs, simt) + 1)) < 0 &&
            err == 0)
            err = e2;
        if ((e2 = write_summary(o.out, &o, &rec, &sim, iter, simt, last_val, err)) < 0 &&
            err == 0)
            err = e2;
    }
    if (rec.have_fs)
        sw_failsim_release(&rec.fs);
    if (rec.have_snap)
        sw_sim_snapshot_release(&rec.snap);
    if (have_saver)
        sw_ckpt_saver_release(&saver);
    sw_free(in);
    sw_free(tg);
    if (have_sim)
        sw_sim_release(&sim);
    if (have_data)
        sw_data_release(&data);
    if (err < 0)
        sw_log(SW_LOG_ERROR, "train failed: %s", sw_strerror(err));
    return err < 0 ? 1 : 0;
}

/* ---- eval and sample ---- */

struct eval_opts {
    char model[4096];
    char config[4096];
    char data[8192];
    char device[16];
    char prompt[1024];
    int seq_len, batch, grad_norms, threads, tokens;
    float temperature;
    unsigned long long seed;
};

#define T struct eval_opts
static const struct sw_cfg_entry eval_tab[] = {
    SW_CFG_STR(T, "model", model, "", "model weights (.safetensors, Hugging Face names)"),
    SW_CFG_STR(T, "config", config, "", "config.json (default: config.json beside --model)"),
    SW_CFG_STR(T, "data", data, "", "tokens: a text file (bytes) or an llm.c token file"),
    SW_CFG_INT(T, "seq-len", seq_len, 0, 0, 65536, "window length T (0: the model's seq_len)"),
    SW_CFG_INT(T, "batch", batch, 1, 1, 65536, "number of windows B"),
    SW_CFG_BOOL(T, "grad-norms", grad_norms, 0, "also print the gradient L2 norm of every tensor"),
    SW_CFG_STR(T, "device", device, "auto", "auto, cpu or cuda"),
    SW_CFG_INT(T, "threads", threads, 0, 0, 1024, "CPU threads (0: all cores)"),
};
static const struct sw_cfg_entry sample_tab[] = {
    SW_CFG_STR(T, "model", model, "", "model weights (.safetensors, Hugging Face names)"),
    SW_CFG_STR(T, "config", config, "", "config.json (default: config.json beside --model)"),
    SW_CFG_STR(T, "prompt", prompt, "The ", "text to continue"),
    SW_CFG_INT(T, "tokens", tokens, 200, 1, 1000000, "tokens to generate"),
    SW_CFG_FLOAT(T, "temperature", temperature, 0.8, 0, 10, "sampling temperature (0: greedy)"),
    SW_CFG_U64(T, "seed", seed, 1337, "sampling seed"),
    SW_CFG_STR(T, "device", device, "auto", "auto, cpu or cuda"),
    SW_CFG_INT(T, "threads", threads, 0, 0, 1024, "CPU threads (0: all cores)"),
};
#undef T

static int
parse_cmd(const struct sw_cfg_entry *tab, size_t n, struct eval_opts *o, int argc, char **argv,
          const char *synopsis)
{
    int err;

    sw_cfg_defaults(tab, n, o);
    err = sw_cfg_getopt(tab, n, o, argc, argv, 1, prog);
    if (err == -SW_ECANCELED) {
        printf("usage: %s\n\n", synopsis);
        sw_cfg_help(tab, n, stdout);
        return 0;
    }
    if (err < 0)
        return 2;
    if (err < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[err]);
        return 2;
    }
    if (!o->model[0]) {
        fprintf(stderr, "%s: --model FILE is required\n", prog);
        return 2;
    }
    if (!o->config[0]) {
        const char *slash = strrchr(o->model, '/');
        if (slash)
            snprintf(o->config, sizeof(o->config), "%.*s/config.json",
                     (int)(slash - o->model), o->model);
        else
            snprintf(o->config, sizeof(o->config), "config.json");
    }
    return -1; /* go on */
}

static int
load_model(struct eval_opts *o, int B, int T, struct sw_sim *sim, struct sw_model_config *c)
{
    const struct sw_kernels *k;
    struct sw_optim_config oc;
    int err;

    if ((err = sw_hfconfig_read(o->config, c)) < 0)
        return err;
    if (T == 0)
        T = c->seq_len;
    if (T > c->seq_len) {
        fprintf(stderr, "%s: --seq-len %d exceeds the model's max_position_embeddings %d\n", prog,
                T, c->seq_len);
        return -SW_ECONFIG;
    }
    if ((err = setup_backend(o->device, "fp32", o->threads, &k)) < 0)
        return err;
    sw_optim_config_default(&oc);
    if ((err = sw_sim_init(sim, k, c, 1, B, T, 1, &oc, 0)) < 0)
        return err;
    if ((err = sw_sim_import(sim, o->model)) < 0) {
        sw_sim_release(sim);
        return err;
    }
    return 0;
}

static int
cmd_eval(int argc, char **argv)
{
    struct eval_opts o;
    struct sw_model_config c;
    struct sw_data data;
    struct sw_sim sim;
    int32_t *in = NULL, *tg = NULL;
    float *host = NULL, loss;
    int err, T;
    size_t N;

    err = parse_cmd(eval_tab, SW_ARRAY_SIZE(eval_tab), &o, argc, argv,
                    "swarmsim eval --model FILE --config FILE --data PATH --seq-len T --batch B "
                    "[--grad-norms]");
    if (err >= 0)
        return err;
    if (!o.data[0]) {
        fprintf(stderr, "%s: eval needs --data PATH\n", prog);
        return 2;
    }
    if ((err = sw_hfconfig_read(o.config, &c)) < 0)
        return 1;
    T = o.seq_len ? o.seq_len : c.seq_len;
    if ((err = sw_data_open(&data, o.data, c.vocab_size, 0.0f, 0)) < 0)
        return 1;
    N = (size_t)o.batch * T;
    if (sw_data_nwindows(&data, SW_DATA_ALL, T) < (size_t)o.batch) {
        fprintf(stderr, "%s: '%s' holds %zu tokens; %d windows of %d need %zu\n", prog, o.data,
                sw_data_split_len(&data, SW_DATA_ALL), o.batch, T, N + 1);
        sw_data_release(&data);
        return 1;
    }
    if ((err = load_model(&o, o.batch, T, &sim, &c)) < 0) {
        sw_data_release(&data);
        return 1;
    }
    in = sw_malloc(N * sizeof(*in));
    tg = sw_malloc(N * sizeof(*tg));
    if (!in || !tg) {
        err = -SW_ENOMEM;
        goto out;
    }
    if ((err = sw_data_window(&data, SW_DATA_ALL, 0, in, tg, o.batch, T)) < 0)
        goto out;
    if (!o.grad_norms) {
        if ((err = sw_sim_eval(&sim, in, tg, &loss)) < 0)
            goto out;
        printf("loss %.7f\n", loss);
        goto out;
    }
    if ((err = sw_sim_zero_grad(&sim)) < 0 ||
        (err = sw_sim_forward_backward(&sim, in, tg, 1.0f, &loss)) < 0)
        goto out;
    printf("loss %.7f\n", loss);
    for (int s = 0; s < sim.S; s++) {
        const struct sw_stage *st = &sim.stages[s];
        for (int i = 0; i < st->lay.ntensors; i++) {
            const struct sw_tensor_info *t = &st->lay.tensors[i];
            printf("grad_norm %s %.7e\n", t->name, sqrt(sim.k->sumsq(st->grads + t->offset,
                                                                     t->numel)));
        }
    }
out:
    sw_free(in);
    sw_free(tg);
    sw_free(host);
    sw_sim_release(&sim);
    sw_data_release(&data);
    if (err < 0)
        sw_log(SW_LOG_ERROR, "eval failed: %s", sw_strerror(err));
    return err < 0 ? 1 : 0;
}

static int
cmd_sample(int argc, char **argv)
{
    struct eval_opts o;
    struct sw_model_config c;
    struct sw_sim sim;
    int err;

    err = parse_cmd(sample_tab, SW_ARRAY_SIZE(sample_tab), &o, argc, argv,
                    "swarmsim sample --model FILE [--config FILE] [--prompt TEXT] [--tokens N]");
    if (err >= 0)
        return err;
    if ((err = load_model(&o, 1, 0, &sim, &c)) < 0)
        return 1;
    err = sample_text(&sim, o.prompt, o.tokens, o.temperature, o.seed, stdout);
    sw_sim_release(&sim);
    return err < 0 ? 1 : 0;
}

int
main(int argc, char **argv)
{
    sw_log_set_prog(prog);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("swarmsim (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "train"))
        return cmd_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "eval"))
        return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(argv[1], "sample"))
        return cmd_sample(argc - 1, argv + 1);
    if (!strcmp(argv[1], "checkpoint"))
        return sw_ckptcli_main(argc - 1, argv + 1, prog);
    fprintf(stderr, "%s: unknown command '%s' (train, eval, sample or checkpoint; see --help)\n", prog,
            argv[1]);
    return 2;
}
