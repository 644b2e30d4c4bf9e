/*
 * test_stage.c - a whole model through stages and the in-process pipeline:
 * fresh loss ~ ln(V); finite differences through every stage and the loss;
 * S in {1, 2, 4} gives the same loss and gradients; same seed, same losses;
 * a 2-block model memorises a short text; AdamW moves parameters.
 */
#include "sw.h"

#include <math.h>
#include <string.h>

#include "kernels.h"
#include "sim.h"
#include "tap.h"

static const struct sw_kernels *K;

static void
fill_tokens(int32_t *in, int32_t *tg, size_t n, int V, uint64_t seed)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        in[i] = (int32_t)((s >> 33) % (uint64_t)V);
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tg[i] = (int32_t)((s >> 33) % (uint64_t)V);
    }
}

static struct sw_model_config
fd_config(void)
{
    struct sw_model_config c = {
        .vocab_size = 11, .d_model = 12, .n_layers = 2, .n_heads = 3, .n_kv_heads = 1,
        .ffn_hidden = 10, .seq_len = 5, .rope_theta = 10000.0f, .rms_eps = 1e-5f, .tied = false,
    };
    return c;
}

/* Overwrite every parameter with N(0, std) values (norm weights around 1) so
 * that gradients are far from zero everywhere. */
static int
randomise(struct sw_sim *sim, uint64_t seed, float std)
{
    for (int s = 0; s < sim->S; s++) {
        struct sw_stage *st = &sim->stages[s];
        float *h = sw_malloc(st->lay.numel * sizeof(float));
        uint64_t r = seed * 1000003u + (uint64_t)s;
        int err;

        if (!h)
            return -SW_ENOMEM;
        for (int i = 0; i < st->lay.ntensors; i++) {
            const struct sw_tensor_info *t = &st->lay.tensors[i];
            for (size_t j = 0; j < t->numel; j++) {
                r = r * 6364136223846793005ull + 1442695040888963407ull;
                double u = ((r >> 11) + 0.5) / 9007199254740992.0 - 0.5;
                h[t->offset + j] = (float)(t->ndim == 1 ? 1.0 + u : 2.0 * std * u * 1.7);
            }
        }
        err = sw_stage_set_params(st, h);
        sw_free(h);
        if (err < 0)
            return err;
    }
    return 0;
}

static double
loss_of(struct sw_sim *sim, const int32_t *in, const int32_t *tg)
{
    float l;
    if (sw_sim_eval(sim, in, tg, &l) < 0)
        return NAN;
    return l;
}

/* central differences of the loss against the analytic gradient, a few
 * entries of every tensor of every stage */
static void
test_finite_differences(int S)
{
    struct sw_model_config c = fd_config();
    struct sw_optim_config oc;
    struct sw_sim sim;
    int B = 2, T = 5;
    int32_t in[10], tg[10];
    double worst = 0;
    int bad = 0, checked = 0;
    float l;

    sw_optim_config_default(&oc);
    if (sw_sim_init(&sim, K, &c, S, B, T, 1, &oc, 7) < 0 || randomise(&sim, 3, 0.3f) < 0) {
        tap_ok(0, "fd setup S=%d", S);
        return;
    }
    fill_tokens(in, tg, 10, c.vocab_size, 42);
    if (sw_sim_zero_grad(&sim) < 0 || sw_sim_forward_backward(&sim, in, tg, 1.0f, &l) < 0) {
        tap_ok(0, "fd backward S=%d", S);
        sw_sim_release(&sim);
        return;
    }
    for (int s = 0; s < S; s++) {
        struct sw_stage *st = &sim.stages[s];
        float *p = sw_malloc(st->lay.numel * sizeof(float));
        float *g = sw_malloc(st->lay.numel * sizeof(float));
        if (!p || !g || sw_stage_get_params(st, p) < 0 ||
            K->copy_d2h(g, st->grads, st->lay.numel * sizeof(float)) < 0)
            bad++;
        for (int i = 0; p && g && i < st->lay.ntensors; i++) {
            const struct sw_tensor_info *t = &st->lay.tensors[i];
            for (int e = 0; e < 4; e++) {
                size_t j = t->offset + ((size_t)e * 7919u) % t->numel;
                float save = p[j];
                double h = 1e-2, lp, lm, fd, an = g[j], tol;

                p[j] = save + (float)h;
                lp = sw_stage_set_params(st, p) < 0 ? NAN : loss_of(&sim, in, tg);
                p[j] = save - (float)h;
                lm = sw_stage_set_params(st, p) < 0 ? NAN : loss_of(&sim, in, tg);
                p[j] = save;
                if (sw_stage_set_params(st, p) < 0)
                    bad++;
                fd = (lp - lm) / (2 * h);
                tol = 2e-3 + 2e-2 * fabs(an);
                if (!(fabs(fd - an) <= tol)) {
                    bad++;
                    tap_diag("S=%d %s[%zu]: fd %.6g analytic %.6g", S, t->name, j - t->offset, fd,
                             an);
                }
                worst = fmax(worst, fabs(fd - an));
                checked++;
            }
        }
        sw_free(p);
        sw_free(g);
    }
    tap_ok(bad == 0, "finite differences through %d stage(s) and the loss: %d entries, max |fd - "
                     "analytic| %.3g",
           S, checked, worst);
    sw_sim_release(&sim);
}

static void
test_fresh_loss(void)
{
    struct sw_model_config c;
    struct sw_optim_config oc;
    struct sw_sim sim;
    int B = 4, T = 64;
    int32_t *in = sw_malloc(sizeof(int32_t) * B * T), *tg = sw_malloc(sizeof(int32_t) * B * T);
    float l = NAN;

    SW_ASSERT(sw_model_preset("tiny", &c) == 0);
    sw_optim_config_default(&oc);
    fill_tokens(in, tg, (size_t)B * T, c.vocab_size, 1);
    if (sw_sim_init(&sim, K, &c, 2, B, T, 1, &oc, 1) == 0) {
        if (sw_sim_eval(&sim, in, tg, &l) < 0)
            l = NAN;
        sw_sim_release(&sim);
    }
    tap_ok(fabs(l - log(256.0)) < 0.05, "fresh model loss %.4f ~ ln(256) = %.4f", l, log(256.0));
    sw_free(in);
    sw_free(tg);
}

/* the same model cut into 1, 2 and 4 stages: same loss, same gradients */
static void
test_stage_split(void)
{
    struct sw_model_config c;
    struct sw_optim_config oc;
    struct sw_sim sims[3];
    int Ss[3] = {1, 2, 4}, B = 2, T = 32;
    int32_t *in = sw_malloc(sizeof(int32_t) * B * T), *tg = sw_malloc(sizeof(int32_t) * B * T);
    float loss[3];
    double worst_rel = 0;
    int ok = 1;

    SW_ASSERT(sw_model_preset("tiny", &c) == 0);
    sw_optim_config_default(&oc);
    fill_tokens(in, tg, (size_t)B * T, c.vocab_size, 5);
    for (int i = 0; i < 3; i++) {
        if (sw_sim_init(&sims[i], K, &c, Ss[i], B, T, 1, &oc, 99) < 0 ||
            sw_sim_zero_grad(&sims[i]) < 0 ||
            sw_sim_forward_backward(&sims[i], in, tg, 1.0f, &loss[i]) < 0) {
            tap_ok(0, "split setup S=%d", Ss[i]);
            return;
        }
    }
    tap_ok(loss[0] == loss[1] && loss[0] == loss[2], "loss with S=1,2,4: %.7f %.7f %.7f", loss[0],
           loss[1], loss[2]);
    /* every tensor of the S=1 model against the same tensor in the split ones */
    for (int i = 1; i < 3; i++) {
        const struct sw_stage_layout *l1 = &sims[0].stages[0].lay;
        for (int ti = 0; ti < l1->ntensors; ti++) {
            const struct sw_tensor_info *t = &l1->tensors[ti];
            float *a = sw_malloc(t->numel * sizeof(float)), *b = sw_malloc(t->numel * sizeof(float));
            for (int s = 0; s < Ss[i]; s++) {
                const struct sw_tensor_info *u = sw_stage_layout_find_name(&sims[i].stages[s].lay,
                                                                           t->name);
                if (!u)
                    continue;
                if (sw_sim_read_tensor(&sims[0], 0, sims[0].stages[0].grads, t, a) < 0 ||
                    sw_sim_read_tensor(&sims[i], s, sims[i].stages[s].grads, u, b) < 0) {
                    ok = 0;
                    continue;
                }
                for (size_t j = 0; j < t->numel; j++) {
                    double rel = fabs(a[j] - b[j]) / fmax(1e-6, fabs(a[j]));
                    if (fabs(a[j] - b[j]) > 1e-5 * fmax(1e-3, fabs(a[j])))
                        ok = 0;
                    worst_rel = fmax(worst_rel, fabs(a[j]) > 1e-6 ? rel : 0);
                }
            }
            sw_free(a);
            sw_free(b);
        }
    }
    tap_ok(ok, "gradients with S=2 and S=4 equal S=1's (max relative diff %.3g)", worst_rel);
    for (int i = 0; i < 3; i++)
        sw_sim_release(&sims[i]);
    sw_free(in);
    sw_free(tg);
}

/* same seed twice: identical losses, bit for bit */
static void
test_determinism(void)
{
    struct sw_model_config c;
    struct sw_optim_config oc;
    struct sw_sim a, b;
    int B = 2, T = 32, M = 2;
    int32_t *in = sw_malloc(sizeof(int32_t) * B * T * M), *tg = sw_malloc(sizeof(int32_t) * B * T * M);
    int same = 1;

    SW_ASSERT(sw_model_preset("tiny", &c) == 0);
    sw_optim_config_default(&oc);
    oc.lr = 1e-2f;
    oc.warmup_steps = 2;
    SW_ASSERT(sw_sim_init(&a, K, &c, 2, B, T, M, &oc, 11) == 0);
    SW_ASSERT(sw_sim_init(&b, K, &c, 2, B, T, M, &oc, 11) == 0);
    for (int step = 0; step < 5; step++) {
        float la, lb;
        fill_tokens(in, tg, (size_t)B * T * M, c.vocab_size, 100 + step);
        if (sw_sim_step(&a, in, tg, sw_lr_at(&oc, step), &la) < 0 ||
            sw_sim_step(&b, in, tg, sw_lr_at(&oc, step), &lb) < 0 || memcmp(&la, &lb, 4) != 0)
            same = 0;
    }
    tap_ok(same, "same seed, same losses bit for bit over 5 steps");
    sw_sim_release(&a);
    sw_sim_release(&b);
    sw_free(in);
    sw_free(tg);
}

/* a 2-block model learns one short text by heart */
static void
test_memorise(void)
{
    static const char text[] = "Peers of the swarm train one model together, stage by stage. ";
    struct sw_model_config c = {
        .vocab_size = 256, .d_model = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
        .ffn_hidden = 128, .seq_len = 48, .rope_theta = 10000.0f, .rms_eps = 1e-5f,
    };
    struct sw_optim_config oc;
    struct sw_sim sim;
    int T = 48, step;
    int32_t in[48], tg[48];
    float l = NAN, first = NAN;

    for (int i = 0; i < T; i++) {
        in[i] = (uint8_t)text[i];
        tg[i] = (uint8_t)text[i + 1];
    }
    sw_optim_config_default(&oc);
    oc.lr = 1e-2f;
    oc.warmup_steps = 10;
    oc.max_steps = 400;
    oc.weight_decay = 0.0f;
    SW_ASSERT(sw_sim_init(&sim, K, &c, 2, 1, T, 1, &oc, 3) == 0);
    for (step = 0; step < 400; step++) {
        if (sw_sim_step(&sim, in, tg, sw_lr_at(&oc, step), &l) < 0)
            break;
        if (step == 0)
            first = l;
        if (l < 0.05f)
            break;
    }
    tap_ok(l < 0.1f, "2-block model memorises a %d-byte text: loss %.4f -> %.4f in %d steps", T,
           first, l, step + 1);
    sw_sim_release(&sim);
}

int
main(void)
{
    if (sw_kernels_pick(SW_DEVICE_CPU, &K) < 0)
        return 1;
    tap_plan(8);
    test_fresh_loss();
    test_finite_differences(1);
    test_finite_differences(2);
    test_stage_split();
    test_determinism();
    test_memorise();
    {
        /* bad stage counts are refused with a reason */
        struct sw_model_config c;
        char why[256];
        SW_ASSERT(sw_model_preset("tiny", &c) == 0);
        tap_ok(sw_model_check_stages(&c, 5, why, sizeof(why)) == -SW_ECONFIG,
               "5 stages of a 4-block model refused: %s", why);
    }
    return tap_done();
}
