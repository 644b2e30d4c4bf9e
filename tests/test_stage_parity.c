/*
 * test_stage_parity.c - a whole stage's forward and backward on the CPU and
 * on CUDA, same parameters and inputs: loss, boundary activation, its
 * gradient and every parameter gradient compared, max differences printed.
 * Then a few training steps of the in-process pipeline on both backends.
 * Skipped when no CUDA device is present.
 */
#include "sw.h"

#include <math.h>
#include <string.h>

#include "kernels.h"
#include "sim.h"
#include "tap.h"

/* max |a-b| / (|a| + 1e-2 max|a|) */
static double
rel_diff(const float *a, const float *b, size_t n)
{
    double amax = 0, worst = 0;
    for (size_t i = 0; i < n; i++)
        amax = fmax(amax, fabs(a[i]));
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)a[i] - b[i]) / (fabs(a[i]) + 1e-2 * amax + 1e-30));
    return worst;
}

static void
fill(float *x, size_t n, uint64_t s, float scale)
{
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = scale * (float)(((s >> 40) / 16777216.0) - 0.5);
    }
}

static void
stage_case(const struct sw_kernels *gpu, const struct sw_model_config *c, int S, int s, int B,
           int T)
{
    const struct sw_kernels *cpu = &sw_kernels_cpu;
    struct sw_stage a, b;
    size_t N = (size_t)B * T, NC = N * c->d_model;
    float *x = sw_malloc(NC * 4), *dx = sw_malloc(NC * 4), *ya = sw_malloc(NC * 4),
          *yb = sw_malloc(NC * 4), *ga = NULL, *gb = NULL;
    int32_t *tok = sw_malloc(N * 4), *tg = sw_malloc(N * 4);
    float la = 0, lb = 0;
    double worst_g = 0, dy, dg;
    const char *worst_name = "";
    int err = 0;

    fill(x, NC, 1 + s, 2.0f);
    fill(dx, NC, 7 + s, 1e-3f);
    for (size_t i = 0; i < N; i++) {
        tok[i] = (int32_t)((i * 2654435761u) % (unsigned)c->vocab_size);
        tg[i] = (int32_t)((i * 40503u + 7) % (unsigned)c->vocab_size);
    }
    if (sw_stage_init(&a, cpu, c, S, s, B, T, 1, 5) < 0 || sw_stage_init(&b, gpu, c, S, s, B, T, 1, 5) < 0) {
        tap_ok(0, "stage %d/%d: init", s, S);
        return;
    }
    err |= sw_stage_zero_grad(&a) | sw_stage_zero_grad(&b);
    err |= sw_stage_forward(&a, 0, SW_PART_ALL, tok, x, tg, ya, &la);
    err |= sw_stage_forward(&b, 0, SW_PART_ALL, tok, x, tg, yb, &lb);
    if (a.lay.has_head) {
        tap_ok(err == 0 && fabs(la - lb) <= 1e-5 * fabs(la), "stage %d/%d: loss cpu %.7f cuda %.7f",
               s, S, la, lb);
    } else {
        dy = rel_diff(ya, yb, NC);
        tap_ok(err == 0 && dy <= 1e-4, "stage %d/%d: forward output max rel diff %.3g", s, S, dy);
    }
    err |= sw_stage_backward(&a, 0, dx, ya, 1.0f);
    err |= sw_stage_backward(&b, 0, dx, yb, 1.0f);
    if (!a.lay.has_embed) {
        dy = rel_diff(ya, yb, NC);
        tap_ok(err == 0 && dy <= 1e-3, "stage %d/%d: input gradient max rel diff %.3g", s, S, dy);
    }
    ga = sw_malloc(a.lay.numel * 4);
    gb = sw_malloc(a.lay.numel * 4);
    err |= cpu->copy_d2h(ga, a.grads, a.lay.numel * 4);
    err |= gpu->copy_d2h(gb, b.grads, a.lay.numel * 4) | gpu->sync();
    for (int i = 0; i < a.lay.ntensors; i++) {
        const struct sw_tensor_info *t = &a.lay.tensors[i];
        dg = rel_diff(ga + t->offset, gb + t->offset, t->numel);
        if (dg > worst_g) {
            worst_g = dg;
            worst_name = t->name;
        }
    }
    tap_ok(err == 0 && worst_g <= 1e-3, "stage %d/%d: parameter gradients max rel diff %.3g (%s)",
           s, S, worst_g, worst_name);
    sw_stage_release(&a);
    sw_stage_release(&b);
    sw_free(x); sw_free(dx); sw_free(ya); sw_free(yb); sw_free(ga); sw_free(gb);
    sw_free(tok); sw_free(tg);
}

static void
train_case(const struct sw_kernels *gpu, const struct sw_model_config *c)
{
    struct sw_optim_config oc;
    struct sw_sim a, b;
    int B = 2, T = c->seq_len, steps = 10;
    size_t N = (size_t)B * T;
    int32_t *in = sw_malloc(N * 4), *tg = sw_malloc(N * 4);
    double worst = 0;
    int err = 0;

    sw_optim_config_default(&oc);
    oc.lr = 3e-3f;
    oc.warmup_steps = 2;
    if (sw_sim_init(&a, &sw_kernels_cpu, c, 2, B, T, 1, &oc, 9) < 0 ||
        sw_sim_init(&b, gpu, c, 2, B, T, 1, &oc, 9) < 0) {
        tap_ok(0, "training on both backends: init");
        return;
    }
    for (int step = 0; step < steps; step++) {
        float la, lb;
        for (size_t i = 0; i < N; i++) {
            in[i] = (int32_t)((i * 31 + (size_t)step * 17) % (size_t)c->vocab_size);
            tg[i] = (int32_t)((i * 31 + (size_t)step * 17 + 1) % (size_t)c->vocab_size);
        }
        err |= sw_sim_step(&a, in, tg, sw_lr_at(&oc, step), &la);
        err |= sw_sim_step(&b, in, tg, sw_lr_at(&oc, step), &lb);
        worst = fmax(worst, fabs(la - lb) / fabs(la));
    }
    tap_ok(err == 0 && worst <= 1e-4, "%d training steps, 2 stages: max rel loss diff cpu/cuda %.3g",
           steps, worst);
    sw_sim_release(&a);
    sw_sim_release(&b);
    sw_free(in);
    sw_free(tg);
}

int
main(void)
{
    const struct sw_kernels *gpu;
    struct sw_model_config c = {
        .vocab_size = 259, .d_model = 96, .n_layers = 3, .n_heads = 6, .n_kv_heads = 2,
        .ffn_hidden = 200, .seq_len = 37, .rope_theta = 10000.0f, .rms_eps = 1e-5f,
    };

    if (sw_kernels_cuda_probe(&gpu) < 0)
        return tap_skip_all("no CUDA device");
    tap_plan(9);
    stage_case(gpu, &c, 3, 0, 3, 37); /* embedding + block: 2 checks */
    stage_case(gpu, &c, 3, 1, 3, 37); /* blocks only: 3 checks */
    stage_case(gpu, &c, 3, 2, 3, 37); /* block + head + loss: 3 checks */
    train_case(gpu, &c);
    return tap_done();
}
