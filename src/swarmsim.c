/*
 * swarmsim - all pipeline stages in one process: the research and demo tool.
 *
 *   swarmsim train  [options]   train, print one line per step, export the model
 *   swarmsim eval   --model F --config J --data D --seq-len T --batch B [--grad-norms]
 *   swarmsim sample --model F [--config J] --prompt TEXT --tokens N
 *
 * Every option comes from one table per command (src/config.h), which also
 * prints --help and --dump-config; swarmsim(1) lists the same options.
 *
 * Step lines (stdout) are meant for scripts:
 *   s:12 trl:3.1234 lr:1.00e-03 norm:0.531,0.412 tok/s:12345
 *   s:50 val:2.9876
 * and DIR/train.csv holds the same numbers.
 */
#include "sw.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cfg.h"
#include "data.h"
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

static uint64_t
rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

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
            r = (rng_next(&rng) >> 11) * (1.0 / 9007199254740992.0) * z;
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
    int32_t *in = NULL, *tg = NULL;
    FILE *csv = NULL;
    char path[4200];
    int err, T, nval;
    size_t N;
    double t0, tokens = 0;
    bool have_data = false, have_sim = false;

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
    if (model_from_opts(o.preset, o.config, &c) < 0)
        return 2;
    T = o.seq_len ? o.seq_len : c.seq_len;
    if (T > c.seq_len) {
        fprintf(stderr, "%s: --seq-len %d exceeds the model's seq_len %d\n", prog, T, c.seq_len);
        return 2;
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
    fprintf(csv, "\n");
    nval = (int)SW_MIN((size_t)o.val_batches, sw_data_val_nbatches(&data, o.batch, T));
    sw_log(SW_LOG_INFO,
           "model: d_model %d, %d layers, %d heads (%d kv), ffn %d, vocab %d, %.2fM params; "
           "%d stages, batch %d x %d tokens x %d micro; backend %s",
           c.d_model, c.n_layers, c.n_heads, c.n_kv_heads, c.ffn_hidden, c.vocab_size,
           sw_model_numel(&c) / 1e6, o.stages, o.batch, T, o.micro, k->name);
    sw_log(SW_LOG_INFO, "data: %zu train tokens, %zu validation tokens (%d validation batches)",
           sw_data_split_len(&data, SW_DATA_TRAIN), sw_data_split_len(&data, SW_DATA_VAL), nval);

    t0 = sw_now_s();
    for (int step = 0; step < o.steps; step++) {
        float lr = sw_lr_at(&oc, step), loss, val = NAN;
        double t1 = sw_now_s(), dt;

        for (int m = 0; m < o.micro; m++)
            if ((err = sw_data_next_batch(&data, in + m * N, tg + m * N, o.batch, T)) < 0)
                goto out;
        if ((err = sw_sim_step(&sim, in, tg, lr, &loss)) < 0)
            goto out;
        dt = sw_now_s() - t1;
        tokens += (double)N * o.micro;
        if ((o.eval_every > 0 && (step + 1) % o.eval_every == 0) || step + 1 == o.steps) {
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
        if (step % o.log_every == 0 || step + 1 == o.steps) {
            printf("s:%d trl:%.4f lr:%.2e norm:", step, loss, lr);
            for (int s = 0; s < o.stages; s++)
                printf("%s%.3f", s ? "," : "", sim.opts[s].last_norm);
            printf(" tok/s:%.0f\n", (double)N * o.micro / dt);
        }
        if (!isnan(val))
            printf("s:%d val:%.4f\n", step, val);
        fflush(stdout);
        fprintf(csv, "%d,%.6f,%.6e,%.1f,", step, loss, lr, (double)N * o.micro / dt);
        if (!isnan(val))
            fprintf(csv, "%.6f", val);
        for (int s = 0; s < o.stages; s++)
            fprintf(csv, ",%.6f", sim.opts[s].last_norm);
        fprintf(csv, "\n");
    }
    sw_log(SW_LOG_INFO, "trained %d steps in %.1f s (%.0f tokens/s)", o.steps, sw_now_s() - t0,
           tokens / (sw_now_s() - t0));
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
    fprintf(stderr, "%s: unknown command '%s' (train, eval or sample; see --help)\n", prog,
            argv[1]);
    return 2;
}
