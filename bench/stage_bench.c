/*
 * stage_bench - forward+backward throughput of one pipeline stage, against
 * raw GEMM throughput measured in the same run on the same device.
 *
 *   bench/stage_bench [--device cpu|cuda] [--d-model 768] [--blocks 4]
 *                     [--batch 8] [--seq-len 256] [--heads 12] [--kv-heads 12]
 *                     [--ffn 2048] [--threads 2] [--reps 5] [--math fp32]
 *
 * The stage is a middle stage of `--blocks` blocks (no embedding, head or loss).
 * FLOPs count the matmuls and attention of the forward (model.c) times 3
 * for forward + backward.  The GEMM reference is sgemm on the stage's own
 * shapes (N x C x 3C-ish, mixed as in a block): cblas_sgemm on the CPU,
 * the backend's matmul_forward (a bare cublasSgemm / GemmEx) on CUDA, plus
 * TF32 and BF16 GEMMs on CUDA.  Every figure is the median of --reps runs
 * after one warm-up.  The last line is the ratio stage / GEMM: the median of
 * per-repetition ratios, stage and GEMM runs alternating (a noisy machine
 * slows both alike).
 */
#include "sw.h"

#include "bench.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cfg.h"
#include "stage.h"

struct opts {
    char device[16], math[16];
    int d_model, blocks, batch, seq_len, heads, kv_heads, ffn, threads, reps;
};

#define T struct opts
static const struct sw_cfg_entry tab[] = {
    SW_CFG_STR(T, "device", device, "cpu", "cpu, cuda or auto"),
    SW_CFG_STR(T, "math", math, "fp32", "fp32, tf32 or bf16 for the stage (CUDA)"),
    SW_CFG_INT(T, "d-model", d_model, 768, 8, 65536, "d_model C"),
    SW_CFG_INT(T, "blocks", blocks, 4, 1, 1024, "blocks in the stage"),
    SW_CFG_INT(T, "batch", batch, 8, 1, 65536, "microbatch size B"),
    SW_CFG_INT(T, "seq-len", seq_len, 256, 1, 65536, "sequence length T"),
    SW_CFG_INT(T, "heads", heads, 12, 1, 1024, "attention heads"),
    SW_CFG_INT(T, "kv-heads", kv_heads, 0, 0, 1024, "key/value heads (0: = heads)"),
    SW_CFG_INT(T, "ffn", ffn, 0, 0, 1 << 20, "MLP hidden size (0: 8/3 C rounded to 64)"),
    SW_CFG_INT(T, "threads", threads, 2, 1, 1024, "CPU threads"),
    SW_CFG_INT(T, "reps", reps, 5, 1, 1000, "timed repetitions (median reported)"),
};
#undef T

/* GEMM GFLOP/s over the shapes of one block: qkv, o, gate|up, down
 * (median of reps after one warm-up) */
static double
gemm_gflops(const struct sw_kernels *k, bool use_cblas, int N, int C, int QKV, int AH, int F,
            int reps)
{
    int shapes[4][2] = {{C, QKV}, {AH, C}, {C, 2 * F}, {F, C}}; /* in, out */
    size_t maxin = (size_t)SW_MAX(SW_MAX(C, AH), F), maxout = (size_t)SW_MAX(SW_MAX(QKV, C), 2 * F);
    float *a = k->alloc((size_t)N * maxin * sizeof(float));
    float *w = k->alloc(maxout * maxin * sizeof(float));
    float *o = k->alloc((size_t)N * maxout * sizeof(float));
    double t[1000], flops = 0;

    for (int i = 0; i < 4; i++)
        flops += 2.0 * N * shapes[i][0] * shapes[i][1];
    for (int r = -1; r < reps; r++) {
        double t0;
        SW_ASSERT(k->sync() == 0);
        t0 = sw_now_s();
        for (int i = 0; i < 4; i++) {
            if (use_cblas)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, shapes[i][1], shapes[i][0],
                            1.0f, a, shapes[i][0], w, shapes[i][0], 0.0f, o, shapes[i][1]);
            else
                k->matmul_forward(o, a, w, N, shapes[i][0], shapes[i][1]);
        }
        SW_ASSERT(k->sync() == 0);
        if (r >= 0)
            t[r] = sw_now_s() - t0;
    }
    k->free(a);
    k->free(w);
    k->free(o);
    return flops / bench_median(t, reps) / 1e9;
}

int
main(int argc, char **argv)
{
    struct opts o;
    struct sw_model_config c;
    const struct sw_kernels *k;
    enum sw_device dev;
    enum sw_math mm;
    struct sw_stage st;
    struct rusage ru;
    float *x, *dx;
    double t[1000], pair[1000], fl, stage_gf, gemm_gf, sec;
    int err, N, HS, QKV;

    sw_log_set_prog("stage_bench");
    sw_cfg_defaults(tab, SW_ARRAY_SIZE(tab), &o);
    err = sw_cfg_getopt(tab, SW_ARRAY_SIZE(tab), &o, argc, argv, 1, "stage_bench");
    if (err == -SW_ECANCELED) {
        printf("usage: stage_bench [options]\n\n");
        sw_cfg_help(tab, SW_ARRAY_SIZE(tab), stdout);
        return 0;
    }
    if (err < 0 || err < argc)
        return 2;
    if (sw_device_parse(o.device, &dev) < 0 || sw_math_parse(o.math, &mm) < 0) {
        fprintf(stderr, "stage_bench: bad --device or --math\n");
        return 2;
    }
    if (sw_kernels_pick(dev, &k) < 0)
        return 1;
    k->set_threads(o.threads);
    c = (struct sw_model_config){
        .vocab_size = 256, .d_model = o.d_model, .n_layers = 3 * o.blocks, .n_heads = o.heads,
        .n_kv_heads = o.kv_heads ? o.kv_heads : o.heads,
        .ffn_hidden = o.ffn ? o.ffn : ((8 * o.d_model / 3 + 63) / 64) * 64,
        .seq_len = o.seq_len, .rope_theta = 10000.0f, .rms_eps = 1e-5f,
    };
    {
        char why[256];
        if (sw_model_config_check(&c, why, sizeof(why)) < 0) {
            fprintf(stderr, "stage_bench: %s\n", why);
            return 2;
        }
    }
    /* the middle stage of 3 stages of `blocks` blocks each */
    if ((err = sw_stage_init(&st, k, &c, 3, 1, o.batch, o.seq_len, 1, 1)) < 0) {
        fprintf(stderr, "stage_bench: cannot build the stage: %s\n", sw_strerror(err));
        return 1;
    }
    N = o.batch * o.seq_len;
    HS = c.d_model / c.n_heads;
    QKV = (c.n_heads + 2 * c.n_kv_heads) * HS;
    /* boundary buffers as a node has them: pinned on CUDA */
    x = k->alloc_host((size_t)N * c.d_model * sizeof(float));
    dx = k->alloc_host((size_t)N * c.d_model * sizeof(float));
    for (size_t i = 0; i < (size_t)N * c.d_model; i++) {
        x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
        dx[i] = (float)((i * 40503u) % 1000) / 1e6f;
    }
    printf("# stage_bench --device %s --d-model %d --blocks %d --batch %d --seq-len %d --heads %d "
           "--kv-heads %d --ffn %d --threads %d --reps %d --math %s\n",
           k->name, c.d_model, o.blocks, o.batch, o.seq_len, c.n_heads, c.n_kv_heads, c.ffn_hidden,
           o.threads, o.reps, o.math);
    if ((err = k->set_math(mm)) < 0) {
        fprintf(stderr, "stage_bench: --math %s not available on %s\n", o.math, k->name);
        return 1;
    }
    fl = 3.0 * sw_model_flops_per_token(&c, o.seq_len, 0, o.blocks, false) * N;
    /* stage and GEMM repetitions alternate, so that both see the same
     * machine; the ratio reported is the median of the paired ratios */
    for (int r = -1; r < o.reps; r++) {
        double t0 = sw_now_s();
        SW_ASSERT(sw_stage_zero_grad(&st) == 0);
        if ((err = sw_stage_forward(&st, 0, SW_PART_ALL, NULL, x, NULL, x, NULL)) < 0 ||
            (err = sw_stage_backward(&st, 0, dx, dx, 1.0f)) < 0 || (err = k->sync()) < 0) {
            fprintf(stderr, "stage_bench: %s\n", sw_strerror(err));
            return 1;
        }
        if (r >= 0) {
            t[r] = sw_now_s() - t0;
            if (k->device == SW_DEVICE_CPU)
                openblas_set_num_threads(o.threads);
            pair[r] = fl / t[r] / 1e9 /
                      gemm_gflops(k, k->device == SW_DEVICE_CPU, N, c.d_model, QKV,
                                  c.n_heads * HS, c.ffn_hidden, 1);
            if (k->device == SW_DEVICE_CPU)
                openblas_set_num_threads(1);
        }
    }
    sec = bench_median(t, o.reps);
    stage_gf = fl / sec / 1e9;
    printf("stage fwd+bwd: %.1f ms/microbatch, %.0f tokens/s, %.1f GFLOP/s (median of %d)\n",
           sec * 1e3, N / sec, stage_gf, o.reps);
    getrusage(RUSAGE_SELF, &ru);
    printf("stage memory: params %.1f MiB, grads %.1f MiB, activations+scratch %.1f MiB; "
           "peak RSS %.1f MiB\n",
           st.lay.numel * 4 / 1048576.0, st.lay.numel * 4 / 1048576.0, st.act_bytes / 1048576.0,
           ru.ru_maxrss / 1024.0);
    (void)k->set_math(SW_MATH_FP32);
    if (k->device == SW_DEVICE_CPU) {
        /* the CPU backend keeps OpenBLAS single-threaded and splits GEMMs over
         * its OpenMP threads; the reference is OpenBLAS's own threading */
        openblas_set_num_threads(o.threads);
        gemm_gf = gemm_gflops(k, true, N, c.d_model, QKV, c.n_heads * HS, c.ffn_hidden, o.reps);
        openblas_set_num_threads(1);
        printf("OpenBLAS sgemm (%d threads) on the block's shapes: %.1f GFLOP/s\n", o.threads,
               gemm_gf);
    } else {
        gemm_gf = gemm_gflops(k, false, N, c.d_model, QKV, c.n_heads * HS, c.ffn_hidden, o.reps);
        printf("cuBLAS sgemm (fp32) on the block's shapes: %.1f GFLOP/s\n", gemm_gf);
        if (k->set_math(SW_MATH_TF32) == 0)
            printf("cuBLAS TF32 GEMM: %.1f GFLOP/s\n",
                   gemm_gflops(k, false, N, c.d_model, QKV, c.n_heads * HS, c.ffn_hidden, o.reps));
        if (k->set_math(SW_MATH_BF16) == 0)
            printf("cuBLAS BF16 GEMM: %.1f GFLOP/s\n",
                   gemm_gflops(k, false, N, c.d_model, QKV, c.n_heads * HS, c.ffn_hidden, o.reps));
        (void)k->set_math(SW_MATH_FP32);
    }
    /* the pairs ran the GEMMs in the stage's own math mode (--math) */
    printf("ratio stage/GEMM (%s, median of %d interleaved pairs): %.2f\n", o.math, o.reps,
           bench_median(pair, o.reps));
    k->free_host(x);
    k->free_host(dx);
    sw_stage_release(&st);
    return 0;
}
