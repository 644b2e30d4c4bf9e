/*
 * test_ckpt.c - checkpoints (src/ckpt.h).
 *
 * On the small preset (8 blocks) with short sequences:
 *   - save/load round trip is bit-exact for params, AdamW m, v, t, lr_mult,
 *     norms, step and data cursor;
 *   - training resumed from an asynchronous checkpoint gives the
 *     uninterrupted run's losses bit for bit;
 *   - a 4-stage checkpoint loads into 2, 3 and 8 stages: every tensor
 *     bit-identical by global name, and the next step's loss equals the
 *     uninterrupted run's;
 *   - a flipped byte in a tensor, in a file's safetensors header or in the
 *     manifest, a missing COMMIT and a truncated file are each detected (the
 *     log names the tensor or the manifest) and the reader falls back to the
 *     previous step;
 *   - the async saver queues one save behind a running one and skips the
 *     next (bounded), and its blocking time is well under its write time;
 *   - a full disk (RLIMIT_FSIZE in a child) fails the save cleanly and
 *     leaves the previous step loadable;
 *   - export gives a safetensors file + config.json with the same tensors;
 *   - crash safety: 60 children saving in a loop are kill -9'ed after a
 *     random delay; the reader always finds a committed step that is the
 *     last one reported or the one after it, with exactly its contents.
 */
#include "sw.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt.h"
#include "data.h"
#include "hfconfig.h"
#include "kernels.h"
#include "sim.h"
#include "tap.h"

static const struct sw_kernels *K;
static struct sw_model_config C;
static struct sw_optim_config OC;
static char root[256];
static const int B = 2, T = 16, M = 2;
static const uint64_t SEED = 42;

static void
make_data(struct sw_data *d)
{
    static uint16_t tok[20000];
    uint64_t x = 7;
    int err;

    for (size_t i = 0; i < SW_ARRAY_SIZE(tok); i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (uint16_t)((x >> 33) % 256);
    }
    err = sw_data_init_tokens(d, tok, SW_ARRAY_SIZE(tok), 256, 0.1, SEED);
    SW_ASSERT(err == 0);
}

static int
sim_new(struct sw_sim *sim, int S)
{
    return sw_sim_init(sim, K, &C, S, B, T, M, &OC, SEED);
}

/* n steps; losses[i] of each (may be NULL). */
static int
train(struct sw_sim *sim, struct sw_data *d, int n, float *losses)
{
    int32_t in[2 * 2 * 16], tg[2 * 2 * 16];
    int err;

    for (int i = 0; i < n; i++) {
        float loss;
        for (int m = 0; m < M; m++)
            if ((err = sw_data_next_batch(d, in + m * B * T, tg + m * B * T, B, T)) < 0)
                return err;
        if ((err = sw_sim_step(sim, in, tg, sw_lr_at(&OC, sim->step), &loss)) < 0)
            return err;
        if (losses)
            losses[i] = loss;
    }
    return 0;
}

/* Bytes of tensor `name` of slab kind k (0 params, 1 m, 2 v) of sim into out. */
static int
get_tensor(const struct sw_sim *sim, const char *name, int k, float *out, size_t *numel)
{
    for (int s = 0; s < sim->S; s++) {
        const struct sw_tensor_info *t = sw_stage_layout_find_name(&sim->stages[s].lay, name);
        const float *slab;
        if (!t)
            continue;
        slab = k == 0 ? sim->stages[s].params : k == 1 ? sim->opts[s].m : sim->opts[s].v;
        *numel = t->numel;
        return K->copy_d2h(out, slab + t->offset, t->numel * sizeof(float));
    }
    return -SW_ENOENT;
}

/* Every tensor (params, m, v) of a equals b's bit for bit, whatever the stage counts. */
static bool
same_state(const struct sw_sim *a, const struct sw_sim *b, char *why, size_t whylen)
{
    struct sw_stage_layout lay;
    size_t na, nb, maxn = 0;
    float *x, *y;
    bool ok = true;

    if (sw_stage_layout_init(&lay, &C, 1, 0) < 0)
        return false;
    for (int i = 0; i < lay.ntensors; i++)
        maxn = SW_MAX(maxn, lay.tensors[i].numel);
    x = sw_malloc(maxn * sizeof(float));
    y = sw_malloc(maxn * sizeof(float));
    for (int i = 0; ok && i < lay.ntensors; i++) {
        for (int k = 0; ok && k < 3; k++) {
            if (get_tensor(a, lay.tensors[i].name, k, x, &na) < 0 ||
                get_tensor(b, lay.tensors[i].name, k, y, &nb) < 0 || na != nb ||
                memcmp(x, y, na * sizeof(float)) != 0) {
                snprintf(why, whylen, "%s (%s) differs", lay.tensors[i].name,
                         k == 0 ? "param" : k == 1 ? "adam_m" : "adam_v");
                ok = false;
            }
        }
    }
    sw_free(x);
    sw_free(y);
    sw_stage_layout_release(&lay);
    return ok;
}

static void
rm_rf(const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    if (system(cmd) != 0)
        tap_diag("cannot remove %s", path);
}

/* Run fn with stderr captured into a file; returns what was logged (malloc'ed). */
static char *
capture_log(int (*fn)(void *), void *arg, int *ret)
{
    char path[300], *buf = calloc(1, 65536);
    int fd, saved;
    FILE *f;

    snprintf(path, sizeof(path), "%s/log.txt", root);
    fflush(stderr);
    saved = dup(2);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    *ret = fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    if ((f = fopen(path, "r"))) {
        size_t n = fread(buf, 1, 65535, f);
        buf[n] = '\0';
        fclose(f);
    }
    return buf;
}

/* ---- round trip, resume, reshard ---- */

static float ref_loss[8];

static void
test_round_trip_resume_reshard(void)
{
    struct sw_sim a, b, r;
    struct sw_data da, db;
    struct sw_ckpt_saver sv;
    struct sw_ckpt ck;
    struct sw_data_cursor ca, cb;
    char dir[300], why[256];
    float got[8];
    bool ok;
    int err;

    snprintf(dir, sizeof(dir), "%s/rt", root);
    /* the uninterrupted run: 6 steps, 4 stages */
    make_data(&da);
    err = sim_new(&a, 4);
    SW_ASSERT(err == 0);
    err = train(&a, &da, 6, ref_loss);
    tap_ok(err == 0, "uninterrupted run of 6 steps (loss %.4f -> %.4f)", ref_loss[0], ref_loss[5]);
    sw_sim_release(&a);
    sw_data_release(&da);

    /* the interrupted run: 3 steps, asynchronous checkpoint, then stop */
    make_data(&da);
    err = sim_new(&a, 4);
    SW_ASSERT(err == 0);
    a.opts[2].lr_mult = 1.25f; /* as after a CheckFree rebuild: must survive the round trip */
    err = train(&a, &da, 3, got);
    ok = err == 0 && sw_ckpt_saver_init(&sv, &a, dir, 2, &OC, SEED) == 0 &&
         sw_ckpt_saver_save(&sv, &a, &da) == 0 && sw_ckpt_saver_wait(&sv) == 0 &&
         sv.n_saved == 1 && sv.last_step == 3;
    tap_ok(ok, "asynchronous save of step 3 (blocked %.3f ms, written in %.1f ms)",
           sv.last_block_s * 1e3, sv.last_write_s * 1e3);
    sw_ckpt_saver_release(&sv);

    /* round trip into a fresh 4-stage sim */
    err = sw_ckpt_open(&ck, dir, -1);
    tap_ok(err == 0 && ck.run.step == 3 && ck.run.S == 4 && ck.run.have_cursor &&
               ck.ntensors == 3 * (1 + 9 * C.n_layers + 2),
           "open finds step 3 with %d tensors (params, adam_m, adam_v)", ck.ntensors);
    make_data(&db);
    err = sim_new(&b, 4);
    SW_ASSERT(err == 0);
    err = sw_ckpt_load_sim(&ck, &b, &db);
    ok = err == 0 && same_state(&a, &b, why, sizeof(why));
    tap_ok(ok, "round trip: params, adam_m, adam_v bit-exact%s%s", ok ? "" : ": ", ok ? "" : why);
    ok = b.step == 3;
    for (int s = 0; s < 4; s++)
        ok = ok && b.opts[s].t == a.opts[s].t && b.opts[s].lr_mult == a.opts[s].lr_mult &&
             b.opts[s].last_norm == a.opts[s].last_norm &&
             b.opts[s].last_norm_clipped == a.opts[s].last_norm_clipped;
    sw_data_cursor_get(&da, &ca);
    sw_data_cursor_get(&db, &cb);
    ok = ok && memcmp(&ca, &cb, sizeof(ca)) == 0 && b.micro == a.micro;
    tap_ok(ok, "round trip: step, AdamW t, lr_mult (1.25 on stage 2), norms and data cursor");

    /* resumed training follows the uninterrupted run bit for bit */
    err = train(&b, &db, 3, got);
    ok = err == 0;
    for (int i = 0; i < 3; i++)
        ok = ok && memcmp(&got[i], &ref_loss[3 + i], sizeof(float)) == 0;
    /* the uninterrupted run had lr_mult 1 on stage 2: compare against a run
     * with the same bump instead */
    {
        struct sw_sim u;
        struct sw_data du;
        float lu[6];
        make_data(&du);
        err = sim_new(&u, 4);
        SW_ASSERT(err == 0);
        u.opts[2].lr_mult = 1.25f;
        err = train(&u, &du, 6, lu);
        ok = err == 0 && b.step == 6;
        for (int i = 0; i < 3; i++)
            ok = ok && memcmp(&got[i], &lu[3 + i], sizeof(float)) == 0;
        tap_ok(ok, "resumed run's losses equal the uninterrupted run's bit for bit (%.7f %.7f "
                   "%.7f)", got[0], got[1], got[2]);
        sw_sim_release(&u);
        sw_data_release(&du);
    }
    sw_sim_release(&b);
    sw_data_release(&db);

    /* reshard 4 -> 2, 3, 8 */
    {
        static const int to[3] = {2, 3, 8};
        for (int j = 0; j < 3; j++) {
            struct sw_data dr;
            float l;
            make_data(&dr);
            err = sim_new(&r, to[j]);
            SW_ASSERT(err == 0);
            err = sw_ckpt_load_sim(&ck, &r, &dr);
            ok = err == 0 && same_state(&a, &r, why, sizeof(why)) && r.step == 3;
            tap_ok(ok, "reshard 4 -> %d: every tensor bit-identical by global name%s%s", to[j],
                   ok ? "" : ": ", ok ? "" : why);
            /* the bumped lr_mult of old stage 2 (blocks 4, 5) lands on the new
             * stage owning block 4's first tensor */
            err = train(&r, &dr, 1, &l);
            {
                struct sw_sim u;
                struct sw_data du;
                float lu[4];
                make_data(&du);
                err = err == 0 ? sim_new(&u, 4) : err;
                SW_ASSERT(err == 0);
                u.opts[2].lr_mult = 1.25f;
                err = train(&u, &du, 4, lu);
                tap_ok(err == 0 && memcmp(&l, &lu[3], sizeof(float)) == 0,
                       "reshard 4 -> %d: next step's loss %.7f equals the uninterrupted run's "
                       "%.7f", to[j], l, lu[3]);
                sw_sim_release(&u);
                sw_data_release(&du);
            }
            sw_sim_release(&r);
            sw_data_release(&dr);
        }
    }

    /* export */
    {
        char out[400], p[500];
        struct sw_safetensors st;
        struct sw_model_config c2;
        float *x = sw_malloc((size_t)C.vocab_size * C.d_model * sizeof(float));
        float *y = sw_malloc((size_t)C.vocab_size * C.d_model * sizeof(float));
        size_t n = 0;
        snprintf(out, sizeof(out), "%s/export", root);
        err = sw_ckpt_export(&ck, out);
        snprintf(p, sizeof(p), "%s/model.safetensors", out);
        ok = err == 0 && sw_safetensors_open(&st, p, 0) == 0;
        if (ok) {
            ok = st.ntensors == 1 + 9 * C.n_layers + 2 &&
                 sw_safetensors_read_f32(&st, "lm_head.weight", x,
                                         (size_t)C.vocab_size * C.d_model, NULL, 0) == 0 &&
                 get_tensor(&a, "lm_head.weight", 0, y, &n) == 0 &&
                 memcmp(x, y, n * sizeof(float)) == 0;
            sw_safetensors_close(&st);
        }
        snprintf(p, sizeof(p), "%s/config.json", out);
        ok = ok && sw_hfconfig_read(p, &c2) == 0 && c2.n_layers == C.n_layers &&
             c2.d_model == C.d_model;
        tap_ok(ok, "export: model.safetensors with %d tensors (lm_head bit-exact) + config.json",
               1 + 9 * C.n_layers + 2);
        sw_free(x);
        sw_free(y);
    }
    sw_ckpt_close(&ck);

    /* blocking time vs write time on this model */
    {
        char d2[300];
        snprintf(d2, sizeof(d2), "%s/timing", root);
        tap_ok(sw_ckpt_saver_init(&sv, &a, d2, 1, &OC, SEED) == 0, "saver for timings");
        double blk = 0, wr = 0;
        int n = 0;
        for (int i = 0; i < 5; i++) {
            if (sw_ckpt_saver_save(&sv, &a, &da) == 0 && sw_ckpt_saver_wait(&sv) == 0) {
                blk += sv.last_block_s;
                wr += sv.last_write_s;
                n++;
            }
            a.step++; /* distinct step folders */
        }
        tap_ok(n == 5 && blk < wr,
               "5 saves of %.1f MB: blocking %.3f ms mean vs write+fsync %.2f ms mean",
               sv.buf[0].snap.bytes / 1e6, blk / n * 1e3, wr / n * 1e3);
        /* three saves back to back: one writes, one queues, the third is skipped */
        int r1 = sw_ckpt_saver_save(&sv, &a, &da);
        a.step++;
        int r2 = sw_ckpt_saver_save(&sv, &a, &da);
        a.step++;
        int r3 = sw_ckpt_saver_save(&sv, &a, &da);
        int w = sw_ckpt_saver_wait(&sv);
        tap_ok(r1 == 0 && w == 0 && (r2 == 0 || r2 == -SW_EAGAIN) &&
                   (r3 == -SW_EAGAIN || sv.n_skipped == 0) && sv.n_saved + sv.n_skipped == 8,
               "back-to-back saves: bounded to two in flight (%d skipped, %d queued behind)",
               sv.n_skipped, sv.n_queued_behind);
        sw_ckpt_saver_release(&sv);
    }
    sw_sim_release(&a);
    sw_data_release(&da);
}

/* ---- the parallel blocking copy ---- */

/* With several OpenMP threads the CPU backend's snapshot is copied in
 * pieces by all of them: the buffer must still equal the state bit for bit,
 * and the checkpoint written from it must load back to that state. */
static void
test_parallel_copy(void)
{
    struct sw_sim a, b;
    struct sw_data da;
    struct sw_ckpt_saver sv;
    struct sw_ckpt ck;
    char dir[300], why[256] = "";
    float got[2];
    bool ok;
    int err;

    snprintf(dir, sizeof(dir), "%s/par", root);
    make_data(&da);
    err = sim_new(&a, 3);
    SW_ASSERT(err == 0);
    err = train(&a, &da, 2, got);
    SW_ASSERT(err == 0);
    K->set_threads(3);
    ok = sw_ckpt_saver_init(&sv, &a, dir, 1, &OC, SEED) == 0 &&
         sw_ckpt_saver_save(&sv, &a, &da) == 0 && sw_ckpt_saver_wait(&sv) == 0;
    for (int s = 0; ok && s < a.S; s++) {
        const struct sw_snapshot *sn = &sv.buf[0].snap;
        size_t bytes = a.opts[s].numel * sizeof(float);
        ok = memcmp(sn->params[s], a.stages[s].params, bytes) == 0 &&
             memcmp(sn->m[s], a.opts[s].m, bytes) == 0 &&
             memcmp(sn->v[s], a.opts[s].v, bytes) == 0 && sn->t[s] == a.opts[s].t &&
             sn->step == a.step;
        if (!ok)
            snprintf(why, sizeof(why), ": stage %d differs", s);
    }
    tap_ok(ok, "blocking copy on 3 threads (%.1f MB in %.3f ms): the buffer equals the state%s",
           sv.buf[0].snap.bytes / 1e6, sv.last_block_s * 1e3, why);
    sw_ckpt_saver_release(&sv);
    K->set_threads(1);
    err = sim_new(&b, 3);
    SW_ASSERT(err == 0);
    ok = sw_ckpt_open(&ck, dir, -1) == 0;
    if (ok) {
        ok = sw_ckpt_load_sim(&ck, &b, NULL) == 0 && same_state(&a, &b, why, sizeof(why));
        sw_ckpt_close(&ck);
    }
    tap_ok(ok, "and its checkpoint loads back bit-exact%s%s", ok ? "" : ": ", ok ? "" : why);
    sw_sim_release(&b);
    sw_sim_release(&a);
    sw_data_release(&da);
}

/* ---- corruption ---- */

struct open_arg {
    const char *dir;
    int step;
};

static int
open_newest(void *arg)
{
    struct open_arg *o = arg;
    struct sw_ckpt ck;
    int err = sw_ckpt_open(&ck, o->dir, -1);
    if (err == 0) {
        o->step = ck.run.step;
        sw_ckpt_close(&ck);
    }
    return err;
}

static void
flip_byte(const char *path, long off)
{
    int fd = open(path, O_RDWR);
    unsigned char c;
    if (fd < 0 || pread(fd, &c, 1, off) != 1)
        tap_diag("cannot read %s", path);
    c ^= 0x10;
    if (pwrite(fd, &c, 1, off) != 1)
        tap_diag("cannot write %s", path);
    close(fd);
}

static void
test_corruption(void)
{
    struct sw_sim a;
    struct sw_data d;
    struct sw_ckpt ck;
    struct open_arg oa;
    const struct sw_ckpt_tensor *t;
    char dir[300], p[600], file[1400], *log;
    int err;

    snprintf(dir, sizeof(dir), "%s/corrupt", root);
    make_data(&d);
    err = sim_new(&a, 4);
    SW_ASSERT(err == 0);
    for (int step = 1; step <= 2; step++) {
        err = train(&a, &d, 1, NULL);
        SW_ASSERT(err == 0);
        err = sw_ckpt_save_sim(dir, &a, &d, &OC, SEED, 0);
        SW_ASSERT(err == 0);
    }
    oa.dir = dir;

    /* a byte of one tensor of step 2 */
    snprintf(p, sizeof(p), "%s/step-00000002", dir);
    err = sw_ckpt_open_path(&ck, p);
    SW_ASSERT(err == 0);
    t = sw_ckpt_find(&ck, "model.layers.5.mlp.up_proj.weight.adam_v");
    SW_ASSERT(t);
    snprintf(file, sizeof(file), "%s/%s", p, ck.file_names[t->file]);
    flip_byte(file, (long)(t->offset + t->length / 2));
    sw_ckpt_close(&ck);
    log = capture_log(open_newest, &oa, &err);
    tap_ok(err == 0 && oa.step == 1 &&
               strstr(log, "tensor 'model.layers.5.mlp.up_proj.weight.adam_v'") &&
               strstr(log, "checksum mismatch") && strstr(log, "stage-002-of-004.safetensors"),
           "flipped byte in a tensor: detected, naming tensor and file; falls back to step %d",
           oa.step);
    free(log);
    /* undo the flip by re-saving step 2 */
    err = sw_ckpt_save_sim(dir, &a, &d, &OC, SEED, 0);
    SW_ASSERT(err == 0);
    err = open_newest(&oa);
    tap_ok(err == 0 && oa.step == 2, "re-saving a step replaces the damaged folder");

    /* a byte of a file's safetensors header */
    snprintf(file, sizeof(file), "%s/step-00000002/stage-000-of-004.safetensors", dir);
    flip_byte(file, 20);
    log = capture_log(open_newest, &oa, &err);
    tap_ok(err == 0 && oa.step == 1 && strstr(log, "stage-000-of-004.safetensors") &&
               strstr(log, "header checksum mismatch"),
           "flipped byte in a safetensors header: detected, naming the file; falls back");
    free(log);
    err = sw_ckpt_save_sim(dir, &a, &d, &OC, SEED, 0);
    SW_ASSERT(err == 0);

    /* a byte of the manifest */
    snprintf(file, sizeof(file), "%s/step-00000002/manifest.json", dir);
    flip_byte(file, 200);
    log = capture_log(open_newest, &oa, &err);
    tap_ok(err == 0 && oa.step == 1 && strstr(log, "manifest") && strstr(log, "checksum mismatch"),
           "flipped byte in the manifest: detected, naming the manifest; falls back");
    free(log);
    err = sw_ckpt_save_sim(dir, &a, &d, &OC, SEED, 0);
    SW_ASSERT(err == 0);

    /* no COMMIT: torn */
    snprintf(file, sizeof(file), "%s/step-00000002/COMMIT", dir);
    unlink(file);
    log = capture_log(open_newest, &oa, &err);
    tap_ok(err == 0 && oa.step == 1 && strstr(log, "no COMMIT marker"),
           "a step without COMMIT is skipped as incomplete");
    free(log);
    err = sw_ckpt_save_sim(dir, &a, &d, &OC, SEED, 0);
    SW_ASSERT(err == 0);

    /* a truncated data file */
    snprintf(file, sizeof(file), "%s/step-00000002/stage-003-of-004.safetensors", dir);
    err = truncate(file, 1000);
    log = capture_log(open_newest, &oa, &err);
    tap_ok(err == 0 && oa.step == 1 && strstr(log, "stage-003-of-004.safetensors"),
           "a truncated data file is detected; falls back");
    free(log);

    /* nothing clean at all */
    snprintf(file, sizeof(file), "%s/step-00000001/COMMIT", dir);
    unlink(file);
    log = capture_log(open_newest, &oa, &err);
    tap_ok(err == -SW_ENOENT && strstr(log, "no complete checkpoint"),
           "no clean step: -SW_ENOENT, said so");
    free(log);

    /* full disk: RLIMIT_FSIZE in a child; the older step stays loadable */
    err = sw_ckpt_save_sim(dir, &a, &d, &OC, SEED, 0);
    SW_ASSERT(err == 0);
    {
        pid_t pid = fork();
        int status;
        if (pid == 0) {
            struct rlimit rl = {.rlim_cur = 300000, .rlim_max = 300000};
            signal(SIGXFSZ, SIG_IGN);
            setrlimit(RLIMIT_FSIZE, &rl);
            sw_log_level = SW_LOG_NONE;
            a.step = 3;
            _exit(sw_ckpt_save_sim(dir, &a, &d, &OC, SEED, 0) == -EFBIG ? 0 : 1);
        }
        waitpid(pid, &status, 0);
        err = open_newest(&oa);
        snprintf(p, sizeof(p), "%s/step-00000003", dir);
        tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0 && err == 0 && oa.step == 2 &&
                   access(p, F_OK) != 0,
               "full disk (RLIMIT_FSIZE): the save fails with EFBIG, leaves nothing, step 2 "
               "still loads");
    }
    sw_sim_release(&a);
    sw_data_release(&d);
}

/* ---- crash safety ---- */

/* Deterministic contents of step k. */
static void
fill(float *x, size_t n, int k, int which)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)k + (float)which * 0.25f + (float)(i % 1000) * 1e-4f;
}

static void
test_crash(void)
{
    struct sw_model_config c;
    struct sw_stage_layout lay[2];
    float *slab[2][3];
    int trials = 60, good = 0, torn_seen = 0, tmp_seen = 0, err;
    char why[200] = "";

    err = sw_model_preset("tiny", &c);
    SW_ASSERT(err == 0);
    for (int s = 0; s < 2; s++) {
        err = sw_stage_layout_init(&lay[s], &c, 2, s);
        SW_ASSERT(err == 0);
        for (int k = 0; k < 3; k++)
            slab[s][k] = sw_malloc(lay[s].numel * sizeof(float));
    }
    srand(12345);
    for (int trial = 0; trial < trials; trial++) {
        char dir[300];
        int fds[2], last = -1, step;
        pid_t pid;
        struct sw_ckpt ck;

        snprintf(dir, sizeof(dir), "%s/crash-%02d", root, trial);
        if (pipe(fds) < 0)
            break;
        fflush(stdout);
        if ((pid = fork()) == 0) {
            struct sw_ckpt_run run = {.S = 2, .seed = 1, .cfg = c, .oc = OC};
            struct sw_ckpt_stage_view v[2];
            close(fds[0]);
            sw_log_level = SW_LOG_NONE;
            for (int k = 1;; k++) {
                for (int s = 0; s < 2; s++) {
                    for (int j = 0; j < 3; j++)
                        fill(slab[s][j], lay[s].numel, k, j);
                    v[s] = (struct sw_ckpt_stage_view){.lay = &lay[s], .params = slab[s][0],
                                                       .m = slab[s][1], .v = slab[s][2],
                                                       .st = {.t = k, .lr_mult = 1}};
                }
                run.step = k;
                if (sw_ckpt_save(dir, &run, v, 2, 2) < 0)
                    _exit(1);
                if (write(fds[1], &k, sizeof(k)) != sizeof(k))
                    _exit(1);
            }
        }
        close(fds[1]);
        /* wait for the first commit, then kill at a random point of a later save */
        if (read(fds[0], &step, sizeof(step)) == sizeof(step))
            last = step;
        usleep((useconds_t)(rand() % 40000));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        while (read(fds[0], &step, sizeof(step)) == sizeof(step))
            last = step;
        close(fds[0]);
        {
            char p[400];
            snprintf(p, sizeof(p), "%s/step-%08d", dir, last + 1);
            if (access(p, F_OK) == 0) {
                snprintf(p, sizeof(p), "%s/step-%08d/COMMIT", dir, last + 1);
                torn_seen += access(p, F_OK) != 0;
            }
            snprintf(p, sizeof(p), "%s/.tmp-step-%08d.%d", dir, last + 1, (int)pid);
            tmp_seen += access(p, F_OK) == 0;
        }
        sw_log_level = SW_LOG_NONE;
        err = sw_ckpt_open(&ck, dir, -1);
        sw_log_level = SW_LOG_WARN;
        if (err < 0 || ck.run.step < last || ck.run.step > last + 1) {
            snprintf(why, sizeof(why), "trial %d: open %d, step %d, last reported %d", trial, err,
                     err == 0 ? ck.run.step : -1, last);
            if (err == 0)
                sw_ckpt_close(&ck);
            continue;
        }
        /* exactly the contents of that step */
        bool ok = true;
        for (int s = 0; s < 2 && ok; s++) {
            float *got[3], *want = sw_malloc(lay[s].numel * sizeof(float));
            struct sw_ckpt_stage_state st;
            for (int j = 0; j < 3; j++)
                got[j] = sw_malloc(lay[s].numel * sizeof(float));
            ok = sw_ckpt_read_stage(&ck, &lay[s], got[0], got[1], got[2], &st) == 0 &&
                 st.t == ck.run.step;
            for (int j = 0; j < 3 && ok; j++) {
                fill(want, lay[s].numel, ck.run.step, j);
                ok = memcmp(want, got[j], lay[s].numel * sizeof(float)) == 0;
            }
            for (int j = 0; j < 3; j++)
                sw_free(got[j]);
            sw_free(want);
        }
        if (!ok)
            snprintf(why, sizeof(why), "trial %d: step %d's contents differ", trial, ck.run.step);
        good += ok;
        sw_ckpt_close(&ck);
        rm_rf(dir);
    }
    tap_ok(good == trials, "kill -9 during saves: %d of %d trials load a committed step equal "
                           "to the last reported or the next, with exactly its contents (killed "
                           "%d times mid-write, %d times between rename and COMMIT)%s%s", good,
           trials, tmp_seen, torn_seen,
           why[0] ? "; " : "", why);
    for (int s = 0; s < 2; s++) {
        for (int k = 0; k < 3; k++)
            sw_free(slab[s][k]);
        sw_stage_layout_release(&lay[s]);
    }
}

int
main(void)
{
    char tmpl[] = "/tmp/test_ckpt.XXXXXX";
    const char *tmpdir = getenv("TMPDIR");
    int err;

    if (sw_kernels_pick(SW_DEVICE_CPU, &K) < 0)
        return tap_skip_all("no CPU kernels");
    K->set_threads(1);
    sw_log_level = SW_LOG_WARN;
    if (tmpdir && *tmpdir && strlen(tmpdir) < 200)
        snprintf(root, sizeof(root), "%s/test_ckpt.XXXXXX", tmpdir);
    else
        snprintf(root, sizeof(root), "%s", tmpl);
    if (!mkdtemp(root))
        return tap_skip_all("cannot create a temporary folder");
    err = sw_model_preset("small", &C);
    SW_ASSERT(err == 0);
    sw_optim_config_default(&OC);
    OC.lr = 3e-3f;
    OC.warmup_steps = 2;
    OC.max_steps = 20;
    test_round_trip_resume_reshard();
    test_parallel_copy();
    test_corruption();
    test_crash();
    rm_rf(root);
    return tap_done();
}
