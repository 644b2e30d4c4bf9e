/*
 * ckpt_bench - what checkpoints cost: the blocking time of an asynchronous
 * save as a share of one training step, the save's write throughput against
 * `dd conv=fdatasync` writing as many bytes to the same folder in the same
 * run, and the time to load a checkpoint into the same stage count and into
 * another (resharding).
 *
 *   bench/ckpt_bench [--preset medium] [--stages 4] [--batch 8] [--seq-len 256]
 *                    [--reps 5] [--threads 2] [--dir DIR]
 *
 * Each repetition runs one training step, then one save (the blocking copy
 * is timed around sw_ckpt_saver_save: all the time the training thread
 * spends in it), waits for the write, then runs dd on the same byte count:
 * the write/dd ratio is the median of those paired repetitions.  The write
 * is timed by the saver until the step's COMMIT is durable, as dd's until
 * its fdatasync returns; the pruning of the oldest step that follows (and
 * dd's unlink, outside its timing) costs a discard of 150 MB on an ext4
 * mounted with -o discard, so it is printed apart, with the ratio that
 * counts it too.  A second set of --reps saves is each followed at once by
 * a training step, timed: what the write, which takes both cores of a
 * 2-core machine while it hashes, costs the training beside it.  Figures
 * are medians of --reps.  The folder (default a new one under $TMPDIR or
 * /tmp) is removed at the end.
 */
#include "sw.h"

#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "ckpt.h"
#include "data.h"
#include "rng.h"
#include "sim.h"

struct opts {
    char preset[32], dir[4096];
    int stages, batch, seq_len, reps, threads;
};

#define T struct opts
static const struct sw_cfg_entry tab[] = {
    SW_CFG_STR(T, "preset", preset, "medium", "model shape preset"),
    SW_CFG_INT(T, "stages", stages, 4, 1, 1024, "stages of the saved run"),
    SW_CFG_INT(T, "batch", batch, 8, 1, 65536, "microbatch size B"),
    SW_CFG_INT(T, "seq-len", seq_len, 256, 1, 65536, "sequence length T"),
    SW_CFG_INT(T, "reps", reps, 5, 1, 100, "timed repetitions (medians reported)"),
    SW_CFG_INT(T, "threads", threads, 2, 1, 1024, "CPU threads"),
    SW_CFG_STR(T, "dir", dir, "", "checkpoint folder (default: a new one under $TMPDIR or /tmp)"),
};
#undef T

/* seconds for dd to write `bytes` to dir/dd.bin with fdatasync; < 0 on failure */
static double
dd_seconds(const char *dir, size_t bytes)
{
    char cmd[4300];
    double t0;

    snprintf(cmd, sizeof(cmd),
             "dd if=/dev/zero of='%s/dd.bin' bs=1M count=%zu conv=fdatasync status=none", dir,
             (bytes + (1u << 20) - 1) >> 20);
    t0 = sw_now_s();
    if (system(cmd) != 0)
        return -1;
    t0 = sw_now_s() - t0;
    snprintf(cmd, sizeof(cmd), "%s/dd.bin", dir);
    unlink(cmd);
    return t0;
}

static int
load_into(const char *dir, const struct sw_model_config *c, int S, int B, int T,
          const struct sw_optim_config *oc, struct sw_data *data, double *sec)
{
    struct sw_sim sim;
    struct sw_ckpt ck;
    double t0;
    int err;

    if ((err = sw_sim_init(&sim, &sw_kernels_cpu, c, S, B, T, 1, oc, 1)) < 0)
        return err;
    t0 = sw_now_s();
    if ((err = sw_ckpt_open(&ck, dir, -1)) == 0) {
        err = sw_ckpt_load_sim(&ck, &sim, data);
        sw_ckpt_close(&ck);
    }
    *sec = sw_now_s() - t0;
    sw_sim_release(&sim);
    return err;
}

int
main(int argc, char **argv)
{
    struct opts o;
    struct sw_model_config c;
    struct sw_optim_config oc;
    struct sw_ckpt_saver sv;
    struct sw_data data;
    struct sw_sim sim;
    uint16_t *tok;
    int32_t *in, *tg;
    double step_s[100], block_s[100], write_s[100], prune_s[100], dd_s[100], ratio[100],
        ratio_pruned[100], busy_s[100], load_s, reshard_s;
    size_t N, ntok = 1u << 20, state_bytes = 0;
    uint64_t r = 42;
    char tmpl[4000], rm[4300];
    int err, S2;
    bool made_dir = false;

    sw_log_set_prog("ckpt_bench");
    sw_cfg_defaults(tab, SW_ARRAY_SIZE(tab), &o);
    err = sw_cfg_getopt(tab, SW_ARRAY_SIZE(tab), &o, argc, argv, 1, "ckpt_bench");
    if (err == -SW_ECANCELED) {
        printf("usage: ckpt_bench [options]\n\n");
        sw_cfg_help(tab, SW_ARRAY_SIZE(tab), stdout);
        return 0;
    }
    if (err < 0 || err < argc)
        return 2;
    if (sw_model_preset(o.preset, &c) < 0) {
        fprintf(stderr, "ckpt_bench: unknown preset '%s' (one of %s)\n", o.preset,
                sw_model_preset_names());
        return 2;
    }
    if (o.seq_len > c.seq_len) {
        fprintf(stderr, "ckpt_bench: --seq-len %d exceeds the preset's seq_len %d\n", o.seq_len,
                c.seq_len);
        return 2;
    }
    if (!o.dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(tmpl, sizeof(tmpl), "%s/ckpt_bench.XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(tmpl)) {
            perror("ckpt_bench: mkdtemp");
            return 1;
        }
        snprintf(o.dir, sizeof(o.dir), "%s", tmpl);
        made_dir = true;
    }
    sw_kernels_cpu.set_threads(o.threads);
    sw_optim_config_default(&oc);
    N = (size_t)o.batch * o.seq_len;
    tok = sw_malloc(ntok * sizeof(*tok));
    in = sw_malloc(N * sizeof(*in));
    tg = sw_malloc(N * sizeof(*tg));
    if (!tok || !in || !tg)
        return 1;
    for (size_t i = 0; i < ntok; i++)
        tok[i] = (uint16_t)(sw_splitmix64(&r) % (uint64_t)c.vocab_size);
    if ((err = sw_data_init_tokens(&data, tok, ntok, c.vocab_size, 0.1, 1)) < 0 ||
        (err = sw_sim_init(&sim, &sw_kernels_cpu, &c, o.stages, o.batch, o.seq_len, 1, &oc, 1)) <
            0 ||
        (err = sw_ckpt_saver_init(&sv, &sim, o.dir, 2, &oc, 1)) < 0) {
        fprintf(stderr, "ckpt_bench: setup: %s\n", sw_strerror(err));
        return 1;
    }
    for (int s = 0; s < sim.S; s++)
        state_bytes += 3 * sim.stages[s].lay.numel * sizeof(float);
    printf("# ckpt_bench --preset %s --stages %d --batch %d --seq-len %d --reps %d --threads %d "
           "--dir %s\n",
           o.preset, o.stages, o.batch, o.seq_len, o.reps, o.threads, o.dir);
    printf("state: %.1f MB (parameters, AdamW m and v of %.2fM parameters)\n", state_bytes / 1e6,
           sw_model_numel(&c) / 1e6);
    for (int rep = -1; rep < o.reps; rep++) {
        double t0;
        float loss;

        if ((err = sw_data_next_batch(&data, in, tg, o.batch, o.seq_len)) < 0)
            return 1;
        t0 = sw_now_s();
        if ((err = sw_sim_step(&sim, in, tg, 1e-3f, &loss)) < 0)
            return 1;
        if (rep >= 0)
            step_s[rep] = sw_now_s() - t0;
        t0 = sw_now_s();
        if ((err = sw_ckpt_saver_save(&sv, &sim, &data)) < 0) {
            fprintf(stderr, "ckpt_bench: save: %s\n", sw_strerror(err));
            return 1;
        }
        t0 = sw_now_s() - t0;
        if ((err = sw_ckpt_saver_wait(&sv)) < 0) {
            fprintf(stderr, "ckpt_bench: write: %s\n", sw_strerror(err));
            return 1;
        }
        if (rep < 0)
            continue; /* warm-up: buffers touched, folder created */
        block_s[rep] = t0;
        write_s[rep] = sv.last_write_s;
        prune_s[rep] = sv.last_prune_s;
        dd_s[rep] = dd_seconds(o.dir, state_bytes);
        if (dd_s[rep] <= 0) {
            fprintf(stderr, "ckpt_bench: dd failed in '%s'\n", o.dir);
            return 1;
        }
        ratio[rep] = dd_s[rep] / write_s[rep];
        ratio_pruned[rep] = dd_s[rep] / (write_s[rep] + prune_s[rep]);
    }
    /* what the write costs the training running beside it (2 cores: both
     * compete for them) */
    for (int rep = 0; rep < o.reps; rep++) {
        double t0;
        float loss;

        if ((err = sw_data_next_batch(&data, in, tg, o.batch, o.seq_len)) < 0)
            return 1;
        if ((err = sw_ckpt_saver_save(&sv, &sim, &data)) < 0) {
            fprintf(stderr, "ckpt_bench: save: %s\n", sw_strerror(err));
            return 1;
        }
        t0 = sw_now_s();
        if ((err = sw_sim_step(&sim, in, tg, 1e-3f, &loss)) < 0)
            return 1;
        busy_s[rep] = sw_now_s() - t0;
        if ((err = sw_ckpt_saver_wait(&sv)) < 0) {
            fprintf(stderr, "ckpt_bench: write: %s\n", sw_strerror(err));
            return 1;
        }
    }
    printf("training step: %.1f ms (median of %d)\n", bench_median(step_s, o.reps) * 1e3, o.reps);
    printf("training step while a save is being written: %.1f ms (median of %d)\n",
           bench_median(busy_s, o.reps) * 1e3, o.reps);
    printf("save: blocking %.2f ms, write + fsync to COMMIT %.1f ms (%.0f MB/s), then pruning "
           "%.1f ms; dd conv=fdatasync %.1f ms (%.0f MB/s)\n",
           bench_median(block_s, o.reps) * 1e3, bench_median(write_s, o.reps) * 1e3,
           state_bytes / bench_median(write_s, o.reps) / 1e6, bench_median(prune_s, o.reps) * 1e3,
           bench_median(dd_s, o.reps) * 1e3, state_bytes / bench_median(dd_s, o.reps) / 1e6);
    S2 = o.stages > 1 ? o.stages / 2 : 2;
    if (S2 > c.n_layers)
        S2 = 1;
    if ((err = load_into(o.dir, &c, o.stages, o.batch, o.seq_len, &oc, &data, &load_s)) < 0 ||
        (err = load_into(o.dir, &c, S2, o.batch, o.seq_len, &oc, &data, &reshard_s)) < 0) {
        fprintf(stderr, "ckpt_bench: load: %s\n", sw_strerror(err));
        return 1;
    }
    printf("load (verify every checksum) into %d stages: %.1f ms; resharded into %d stages: "
           "%.1f ms\n",
           o.stages, load_s * 1e3, S2, reshard_s * 1e3);
    printf("save throughput / dd (median of %d pairs): %.2f; counting the pruning: %.2f\n",
           o.reps, bench_median(ratio, o.reps), bench_median(ratio_pruned, o.reps));
    {
        double share[100];
        for (int i = 0; i < o.reps; i++)
            share[i] = block_s[i] / step_s[i];
        printf("blocking time / training step (median): %.2f%%\n", 100.0 * bench_median(share, o.reps));
    }
    sw_ckpt_saver_release(&sv);
    sw_sim_release(&sim);
    sw_data_release(&data);
    sw_free(tok);
    sw_free(in);
    sw_free(tg);
    if (made_dir) {
        snprintf(rm, sizeof(rm), "rm -rf '%s'", o.dir);
        if (system(rm) != 0)
            fprintf(stderr, "ckpt_bench: cannot remove '%s'\n", o.dir);
    }
    return 0;
}
