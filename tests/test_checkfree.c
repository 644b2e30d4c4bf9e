/*
 * test_checkfree.c - CheckFree and CheckFree+ in process (src/checkfree.h,
 * src/sim.h), the failure schedule (src/failsim.h) and checkpoint rollback.
 *
 * Known answers: the weighted average of every block tensor; the weight is
 * the pre-clip (or clipped) norm; the LR bump and fresh AdamW state land on
 * the rebuilt stage only; uneven block counts and boundary stages are
 * refused.  CheckFree+: the swapped route changes the loss of odd
 * microbatches, the model still trains with it, the replicas are
 * bit-identical to their owners after every step, a rebuilt boundary stage
 * has the exact embedding / norm + head and its partner's blocks.  One fixed
 * scenario: 4 stages, stage 1 lost at step 600; 50 steps later CheckFree's
 * validation loss is below random re-initialisation's.  The failure schedule
 * has the right probability and replays identically from its file; a
 * snapshot rollback replays the same losses bit for bit.
 */
#include "sw.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "checkfree.h"
#include "data.h"
#include "failsim.h"
#include "kernels.h"
#include "sim.h"
#include "tap.h"

static const struct sw_kernels *K;

static const char text[] =
    "It was the best of times, it was the worst of times, it was the age of wisdom, "
    "it was the age of foolishness, it was the epoch of belief, it was the epoch of "
    "incredulity, it was the season of Light, it was the season of Darkness, it was "
    "the spring of hope, it was the winter of despair, we had everything before us, "
    "we had nothing before us, we were all going direct to Heaven, we were all "
    "going direct the other way.\n";

static struct sw_model_config
small_config(int L)
{
    struct sw_model_config c = {
        .vocab_size = 256, .d_model = 32, .n_layers = L, .n_heads = 4, .n_kv_heads = 2,
        .ffn_hidden = 64, .seq_len = 32, .rope_theta = 10000.0f, .rms_eps = 1e-5f, .tied = false,
    };
    return c;
}

/* a data stream of the text repeated (byte tokens), 10% held out */
static int
text_data(struct sw_data *d, uint64_t seed)
{
    size_t n = 24 * (sizeof(text) - 1);
    uint16_t *t = sw_malloc(n * sizeof(*t));
    int err;

    if (!t)
        return -SW_ENOMEM;
    for (size_t i = 0; i < n; i++)
        t[i] = (uint8_t)text[i % (sizeof(text) - 1)];
    err = sw_data_init_tokens(d, t, n, 256, 0.1, seed);
    sw_free(t);
    return err;
}

static int
train_steps(struct sw_sim *sim, struct sw_data *d, int n, const struct sw_optim_config *oc,
            float *last_loss, bool check_replicas, int *replica_bad)
{
    size_t N = (size_t)sim->B * sim->T;
    int32_t *in = sw_malloc(N * sim->M * sizeof(*in)), *tg = sw_malloc(N * sim->M * sizeof(*tg));
    int err = -SW_ENOMEM;

    if (!in || !tg)
        goto out;
    for (int i = 0; i < n; i++) {
        for (int m = 0; m < sim->M; m++)
            if ((err = sw_data_next_batch(d, in + m * N, tg + m * N, sim->B, sim->T)) < 0)
                goto out;
        if ((err = sw_sim_step(sim, in, tg, sw_lr_at(oc, sim->step), last_loss)) < 0)
            goto out;
        if (check_replicas && (!sw_checkfree_replica_equal(&sim->reps[0], &sim->stages[0]) ||
                               !sw_checkfree_replica_equal(&sim->reps[1], &sim->stages[sim->S - 1])))
            (*replica_bad)++;
    }
    err = 0;
out:
    sw_free(in);
    sw_free(tg);
    return err;
}

static double
val_loss(struct sw_sim *sim, struct sw_data *d)
{
    size_t N = (size_t)sim->B * sim->T, nb = sw_data_val_nbatches(d, sim->B, sim->T);
    int32_t *in = sw_malloc(N * sizeof(*in)), *tg = sw_malloc(N * sizeof(*tg));
    double sum = 0;
    float l;

    if (!in || !tg || nb == 0)
        sum = NAN;
    for (size_t b = 0; in && tg && b < nb; b++) {
        if (sw_data_val_batch(d, b, in, tg, sim->B, sim->T) < 0 || sw_sim_eval(sim, in, tg, &l) < 0)
            sum = NAN;
        sum += l;
    }
    sw_free(in);
    sw_free(tg);
    return nb ? sum / (double)nb : NAN;
}

static float *
host_params(const struct sw_stage *st)
{
    float *h = sw_malloc(st->lay.numel * sizeof(float));
    if (h && sw_stage_get_params(st, h) < 0) {
        sw_free(h);
        return NULL;
    }
    return h;
}

/* block tensor j/kind of a stage layout */
static const struct sw_tensor_info *
btensor(const struct sw_stage *st, int j, enum sw_tensor_kind kind)
{
    return sw_stage_layout_find(&st->lay, kind, st->lay.l0 + j);
}

/* max |dst - (wa a + wb b)/(wa + wb)| over every block tensor (host slabs) */
static double
average_error(const struct sw_stage *dst, const float *hd, const struct sw_stage *a,
              const float *ha, double wa, const struct sw_stage *b, const float *hb, double wb)
{
    double worst = 0;

    for (int j = 0; j < dst->nb; j++)
        for (int kind = SW_T_ATTN_NORM; kind <= SW_T_DOWN; kind++) {
            const struct sw_tensor_info *td = btensor(dst, j, kind), *ta = btensor(a, j, kind),
                                        *tb = btensor(b, j, kind);
            for (size_t i = 0; i < td->numel; i++) {
                double want = (wa * ha[ta->offset + i] + wb * hb[tb->offset + i]) / (wa + wb);
                worst = fmax(worst, fabs(hd[td->offset + i] - want));
            }
        }
    return worst;
}

static void
test_weighted_average(void)
{
    struct sw_model_config c = small_config(3);
    struct sw_optim_config oc;
    struct sw_sim sim;
    float *h[3] = {NULL, NULL, NULL};
    double err1;

    sw_optim_config_default(&oc);
    if (sw_sim_init(&sim, K, &c, 3, 1, 8, 1, &oc, 5) < 0) {
        tap_ok(0, "weighted average: setup");
        return;
    }
    /* known values: a = i mod 7, b = -(i mod 5) / 2 */
    for (int s = 0; s < 3; s += 2) {
        h[s] = sw_malloc(sim.stages[s].lay.numel * sizeof(float));
        for (size_t i = 0; h[s] && i < sim.stages[s].lay.numel; i++)
            h[s][i] = s == 0 ? (float)(i % 7) : -(float)(i % 5) * 0.5f;
        if (!h[s] || sw_stage_set_params(&sim.stages[s], h[s]) < 0)
            goto out;
    }
    if (sw_checkfree_average_blocks(&sim.stages[1], &sim.stages[0], 1.0f, &sim.stages[2], 3.0f) <
            0 ||
        !(h[1] = host_params(&sim.stages[1])))
        goto out;
    err1 = average_error(&sim.stages[1], h[1], &sim.stages[0], h[0], 1.0, &sim.stages[2], h[2],
                         3.0);
    tap_ok(err1 <= 1e-6, "weighted average (1 a + 3 b) / 4 of every block tensor: maxdiff %.3g",
           err1);
    {
        /* the same from parameters-only views over the host slabs (what
         * swarmd rebuilds from: src/stage.h sw_stage_view_init) */
        struct sw_stage va = {0}, vb = {0};
        float *h1 = NULL;
        bool same = false;

        if (sw_stage_view_init(&va, K, &c, 3, 0, h[0]) == 0) {
            if (sw_stage_view_init(&vb, K, &c, 3, 2, h[2]) == 0) {
                same = sw_checkfree_average_blocks(&sim.stages[1], &va, 1.0f, &vb, 3.0f) == 0 &&
                       (h1 = host_params(&sim.stages[1])) != NULL &&
                       !memcmp(h1, h[1], sim.stages[1].lay.numel * sizeof(float)) &&
                       va.nb == sim.stages[0].nb && va.lay.numel == sim.stages[0].lay.numel;
                sw_stage_release(&vb);
            }
            sw_stage_release(&va);
        }
        tap_ok(same && h[0][1] == 1.0f && vb.params == NULL,
               "the same average from parameters-only views of the neighbours, bit for bit; "
               "releasing a view leaves its slab alone");
        sw_free(h1);
    }
    /* the weight: pre-clip by default, clipped on request */
    sim.opts[0].last_norm = 2.5f;
    sim.opts[0].last_norm_clipped = 1.0f;
    tap_ok(sw_checkfree_weight(&sim.opts[0], false) == 2.5f &&
               sw_checkfree_weight(&sim.opts[0], true) == 1.0f,
           "neighbour weight: pre-clip norm by default, clipped norm on request");
out:
    if (!h[1])
        tap_ok(0, "weighted average: setup");
    for (int s = 0; s < 3; s++)
        sw_free(h[s]);
    sw_sim_release(&sim);
}

static void
test_rebuild_state(void)
{
    struct sw_model_config c = small_config(3), c5 = small_config(5);
    struct sw_optim_config oc;
    struct sw_checkfree_config cc;
    struct sw_sim sim, sim5;
    struct sw_data d;
    float loss, *hp = NULL, *hn = NULL, *hd = NULL, *mv = NULL;
    double err1 = 1;
    char why[320];
    bool zero = true;
    int bad = 0;

    sw_optim_config_default(&oc);
    sw_checkfree_config_default(&cc);
    if (text_data(&d, 3) < 0 || sw_sim_init(&sim, K, &c, 3, 2, 16, 1, &oc, 9) < 0) {
        tap_ok(0, "rebuild: setup");
        return;
    }
    if (train_steps(&sim, &d, 3, &oc, &loss, false, &bad) < 0 || sw_sim_lose_stage(&sim, 1) < 0 ||
        !(hp = host_params(&sim.stages[0])) || !(hn = host_params(&sim.stages[2])) ||
        sw_sim_rebuild(&sim, 1, SW_CF_CHECKFREE, false, &cc, 0) < 0 ||
        !(hd = host_params(&sim.stages[1])))
        goto out;
    err1 = average_error(&sim.stages[1], hd, &sim.stages[0], hp, sim.opts[0].last_norm,
                         &sim.stages[2], hn, sim.opts[2].last_norm);
    tap_ok(err1 <= 1e-6 && sim.opts[0].last_norm != sim.opts[2].last_norm,
           "rebuilt stage 1 = neighbours weighted by their pre-clip norms %.4g, %.4g: maxdiff %.3g",
           sim.opts[0].last_norm, sim.opts[2].last_norm, err1);
    mv = sw_malloc(sim.opts[1].numel * sizeof(float));
    for (int w = 0; mv && w < 2; w++) {
        if (K->copy_d2h(mv, w ? sim.opts[1].v : sim.opts[1].m, sim.opts[1].numel * sizeof(float)) <
            0)
            zero = false;
        for (size_t i = 0; i < sim.opts[1].numel; i++)
            zero &= mv[i] == 0.0f;
    }
    tap_ok(mv && zero && sim.opts[1].t == 0, "rebuilt stage: fresh AdamW moments and step count");
    tap_ok(sim.opts[1].lr_mult == 1.1f && sim.opts[0].lr_mult == 1.0f &&
               sim.opts[2].lr_mult == 1.0f && sim.opts[0].t == 3 && sim.opts[2].t == 3,
           "LR x1.1 on the rebuilt stage only (%.2f; neighbours %.2f, %.2f, steps %d, %d)",
           sim.opts[1].lr_mult, sim.opts[0].lr_mult, sim.opts[2].lr_mult, sim.opts[0].t,
           sim.opts[2].t);
    /* it trains on from there */
    tap_ok(train_steps(&sim, &d, 2, &oc, &loss, false, &bad) == 0 && isfinite(loss),
           "training resumes after the rebuild (loss %.4f)", loss);
    /* refusals: a boundary stage, uneven block counts */
    tap_ok(sw_sim_rebuild(&sim, 0, SW_CF_CHECKFREE, false, &cc, 0) == -SW_ELOST,
           "plain CheckFree refuses to rebuild stage 0 (it owns the embedding)");
    if (sw_sim_init(&sim5, K, &c5, 3, 1, 8, 1, &oc, 9) == 0) {
        int e = sw_checkfree_check(&sim5.stages[1], &sim5.stages[0], &sim5.stages[2], why,
                                   sizeof(why));
        tap_ok(e == -SW_ESHAPE, "5 blocks over 3 stages (2, 2, 1) refused: %s", why);
        sw_sim_release(&sim5);
    } else {
        tap_ok(0, "uneven setup");
    }
out:
    if (!hd)
        tap_ok(0, "rebuild: setup");
    sw_free(hp);
    sw_free(hn);
    sw_free(hd);
    sw_free(mv);
    sw_sim_release(&sim);
    sw_data_release(&d);
}

static bool
blocks_equal(const struct sw_stage *a, const struct sw_stage *b)
{
    float *ha = host_params(a), *hb = host_params(b);
    bool same = ha && hb && a->nb == b->nb;

    for (int j = 0; same && j < a->nb; j++)
        for (int kind = SW_T_ATTN_NORM; same && kind <= SW_T_DOWN; kind++) {
            const struct sw_tensor_info *ta = btensor(a, j, kind), *tb = btensor(b, j, kind);
            same = memcmp(ha + ta->offset, hb + tb->offset, ta->numel * sizeof(float)) == 0;
        }
    sw_free(ha);
    sw_free(hb);
    return same;
}

static void
test_checkfree_plus(void)
{
    struct sw_model_config c = small_config(4);
    struct sw_optim_config oc;
    struct sw_checkfree_config cc;
    struct sw_sim sim;
    struct sw_data d;
    size_t N;
    int32_t *in = NULL, *tg = NULL;
    float l_normal, l_swapped, loss = NAN;
    double v0, v1;
    int bad = 0;

    sw_optim_config_default(&oc);
    oc.lr = 3e-3f;
    oc.warmup_steps = 5;
    oc.max_steps = 80;
    sw_checkfree_config_default(&cc);
    if (text_data(&d, 4) < 0 || sw_sim_init(&sim, K, &c, 4, 4, 32, 2, &oc, 11) < 0) {
        tap_ok(0, "checkfree+: setup");
        return;
    }
    N = (size_t)sim.B * sim.T;
    in = sw_malloc(N * sizeof(*in));
    tg = sw_malloc(N * sizeof(*tg));
    tap_ok(sw_sim_enable_swap(&sim) == 0 && sim.stages[0].n_slots == 2 &&
               sim.stages[3].n_slots == 2,
           "checkfree+ on: stages 0 and S-1 hold two activation slots");
    /* the swapped route is a different function at initialisation */
    if (!in || !tg || sw_data_window(&d, SW_DATA_TRAIN, 0, in, tg, sim.B, sim.T) < 0 ||
        sw_sim_zero_grad(&sim) < 0 || sw_sim_forward_backward(&sim, in, tg, 1.0f, &l_normal) < 0 ||
        sw_sim_forward_backward(&sim, in, tg, 1.0f, &l_swapped) < 0 || sw_sim_zero_grad(&sim) < 0)
        goto out;
    tap_ok(l_normal != l_swapped && sim.micro == 2,
           "odd microbatch takes the swapped route (loss %.6f vs %.6f)", l_swapped, l_normal);
    sim.micro = 0;
    v0 = val_loss(&sim, &d);
    if (train_steps(&sim, &d, 80, &oc, &loss, true, &bad) < 0)
        goto out;
    v1 = val_loss(&sim, &d);
    tap_ok(v1 < 0.6 * v0, "with swaps and no failures the model trains: validation %.4f -> %.4f "
                          "in 80 steps (train %.4f)", v0, v1, loss);
    tap_ok(bad == 0, "replicas of the embedding and of norm + head bit-identical to their owners "
                     "after each of 80 steps (%d mismatches)", bad);
    /* boundary stage 0 lost: the partner's blocks and the exact embedding */
    if (sw_sim_lose_stage(&sim, 0) < 0 || sw_sim_rebuild(&sim, 0, SW_CF_CHECKFREE, true, &cc, 0) < 0)
        goto out;
    tap_ok(sw_checkfree_replica_equal(&sim.reps[0], &sim.stages[0]) &&
               blocks_equal(&sim.stages[0], &sim.stages[1]) && sim.opts[0].lr_mult == 1.1f &&
               sim.opts[0].t == 0,
           "rebuilt stage 0: exact embedding replica, stage 1's blocks, fresh optimizer");
    if (sw_sim_lose_stage(&sim, 3) < 0 || sw_sim_rebuild(&sim, 3, SW_CF_CHECKFREE, true, &cc, 0) < 0)
        goto out;
    tap_ok(sw_checkfree_replica_equal(&sim.reps[1], &sim.stages[3]) &&
               blocks_equal(&sim.stages[3], &sim.stages[2]),
           "rebuilt stage S-1: exact final norm and LM head replica, stage S-2's blocks");
    /* a lost partner copies the boundary stage back; its replica follows */
    if (sw_sim_lose_stage(&sim, 1) < 0 || sw_sim_rebuild(&sim, 1, SW_CF_CHECKFREE, true, &cc, 0) < 0)
        goto out;
    tap_ok(blocks_equal(&sim.stages[1], &sim.stages[0]) &&
               sw_checkfree_replica_equal(&sim.reps[0], &sim.stages[0]),
           "rebuilt partner stage 1: stage 0's blocks, replica refreshed");
    bad = 0;
    tap_ok(train_steps(&sim, &d, 5, &oc, &loss, true, &bad) == 0 && isfinite(loss) && bad == 0,
           "training goes on after the rebuilds, replicas still identical (loss %.4f)", loss);
out:
    if (isnan(loss))
        tap_ok(0, "checkfree+: setup or training failed");
    sw_free(in);
    sw_free(tg);
    sw_sim_release(&sim);
    sw_data_release(&d);
}

static void
test_scenario(void)
{
    struct sw_model_config c = small_config(4);
    struct sw_optim_config oc;
    struct sw_checkfree_config cc;
    struct sw_sim sim;
    struct sw_snapshot snap;
    struct sw_data d;
    struct sw_data_cursor cur;
    float loss;
    double before = NAN, v_cf = NAN, v_rand = NAN;
    int bad = 0;

    sw_optim_config_default(&oc);
    oc.lr = 3e-3f;
    oc.warmup_steps = 5;
    oc.max_steps = 650;
    sw_checkfree_config_default(&cc);
    if (text_data(&d, 6) < 0 || sw_sim_init(&sim, K, &c, 4, 4, 32, 1, &oc, 13) < 0 ||
        sw_sim_snapshot_init(&snap, &sim) < 0) {
        tap_ok(0, "scenario: setup");
        return;
    }
    if (train_steps(&sim, &d, 600, &oc, &loss, false, &bad) < 0 ||
        sw_sim_snapshot_save(&snap, &sim) < 0)
        goto out;
    sw_data_cursor_get(&d, &cur);
    before = val_loss(&sim, &d);
    /* A: stage 1 lost at step 600, CheckFree.  (At this scale losing one
     * block costs little and random re-initialisation is a close second:
     * the margin here is about 1%; see docs/checkfree-study.md.) */
    if (sw_sim_lose_stage(&sim, 1) < 0 || sw_sim_rebuild(&sim, 1, SW_CF_CHECKFREE, false, &cc, 0) < 0 ||
        train_steps(&sim, &d, 50, &oc, &loss, false, &bad) < 0)
        goto out;
    v_cf = val_loss(&sim, &d);
    /* B: the same failure, random re-initialisation, the same data */
    if (sw_sim_snapshot_load(&sim, &snap) < 0)
        goto out;
    sw_data_cursor_set(&d, &cur);
    if (sw_sim_lose_stage(&sim, 1) < 0 || sw_sim_rebuild(&sim, 1, SW_CF_RANDOM, false, &cc, 77) < 0 ||
        train_steps(&sim, &d, 50, &oc, &loss, false, &bad) < 0)
        goto out;
    v_rand = val_loss(&sim, &d);
out:
    tap_ok(v_cf < v_rand, "4 stages, stage 1 lost at step 600 (validation %.4f): 50 steps later "
                          "CheckFree %.4f < random re-initialisation %.4f",
           before, v_cf, v_rand);
    sw_sim_snapshot_release(&snap);
    sw_sim_release(&sim);
    sw_data_release(&d);
}

static void
test_rollback(void)
{
    struct sw_model_config c = small_config(2);
    struct sw_optim_config oc;
    struct sw_sim sim;
    struct sw_snapshot snap;
    struct sw_data d;
    struct sw_data_cursor cur;
    float la[3], lb[3], *p0 = NULL, *p1 = NULL;
    int bad = 0, ok = 0;

    sw_optim_config_default(&oc);
    if (text_data(&d, 8) < 0 || sw_sim_init(&sim, K, &c, 2, 2, 16, 1, &oc, 15) < 0 ||
        sw_sim_snapshot_init(&snap, &sim) < 0) {
        tap_ok(0, "rollback: setup");
        return;
    }
    if (train_steps(&sim, &d, 4, &oc, &la[0], false, &bad) < 0 ||
        sw_sim_snapshot_save(&snap, &sim) < 0)
        goto out;
    sw_data_cursor_get(&d, &cur);
    for (int i = 0; i < 3; i++)
        if (train_steps(&sim, &d, 1, &oc, &la[i], false, &bad) < 0)
            goto out;
    p0 = host_params(&sim.stages[1]);
    if (sw_sim_lose_stage(&sim, 1) < 0 || sw_sim_snapshot_load(&sim, &snap) < 0)
        goto out;
    sw_data_cursor_set(&d, &cur);
    ok = sim.step == 4 && sim.opts[1].t == 4;
    for (int i = 0; i < 3; i++)
        if (train_steps(&sim, &d, 1, &oc, &lb[i], false, &bad) < 0)
            goto out;
    p1 = host_params(&sim.stages[1]);
    ok = ok && p0 && p1 && !memcmp(la, lb, sizeof(la)) &&
         !memcmp(p0, p1, sim.stages[1].lay.numel * sizeof(float));
out:
    tap_ok(ok, "checkpoint rollback (params, AdamW m/v/t, step, data cursor) replays 3 steps bit "
               "for bit (losses %.6f %.6f %.6f)", la[0], la[1], la[2]);
    sw_free(p0);
    sw_free(p1);
    sw_sim_snapshot_release(&snap);
    sw_sim_release(&sim);
    sw_data_release(&d);
}

static void
test_schedule(void)
{
    struct sw_failsim a, b, c;
    char path[] = "/tmp/test_checkfree.XXXXXX";
    double p = sw_failsim_prob(0.5, 120), want = 1 - pow(0.5, 120.0 / 3600.0);
    long n = 0, same = 1, horizon = 20000;
    int fd;

    tap_close(p, want, 1e-12, "p = 1 - (1 - P)^(X / 3600) for P = 0.5, X = 120 s");
    tap_ok(sw_failsim_prob(0.16, 3600) > 0.1599 && sw_failsim_prob(0.16, 3600) < 0.1601 &&
               sw_failsim_prob(0, 60) == 0,
           "one hour at P = 0.16 fails with probability 0.16; P = 0 never");
    if (sw_failsim_init(&a, 8, 0.5, 120, 42) < 0) {
        tap_ok(0, "schedule: init");
        return;
    }
    for (long k = 0; k < horizon; k++)
        for (int s = 0; s < 8; s++)
            n += sw_failsim_fails(&a, k, s);
    tap_ok(fabs((double)n / (horizon * 8.0) - p) < 0.1 * p,
           "drawn frequency %.5f close to p %.5f over %ld draws", (double)n / (horizon * 8.0), p,
           horizon * 8);
    if ((fd = mkstemp(path)) < 0) {
        tap_ok(0, "schedule: temp file");
        sw_failsim_release(&a);
        return;
    }
    close(fd);
    if (sw_failsim_save(&a, path, horizon) < 0 || sw_failsim_load(&b, path, 8) < 0) {
        tap_ok(0, "schedule: save and load");
    } else {
        struct sw_fail_event ea[64], eb[64];
        for (long k = 0; k < horizon; k++)
            for (int s = 0; s < 8; s++)
                same &= sw_failsim_fails(&a, k, s) == sw_failsim_fails(&b, k, s);
        int na = sw_failsim_between(&a, 100, 3000, ea, 64), nb = sw_failsim_between(&b, 100, 3000,
                                                                                     eb, 64);
        same &= na == nb;
        for (int i = 0; i < SW_MIN(na, 64); i++)
            same &= ea[i].slot == eb[i].slot && ea[i].stage == eb[i].stage;
        tap_ok(same && b.replay && b.nev == (size_t)n,
               "saved schedule replays identically (%zu failures over %ld slots)", b.nev, horizon);
        tap_ok(!sw_failsim_fails(&b, horizon + 5, 0) || !b.replay,
               "replayed schedule has no failures past its horizon");
        sw_failsim_release(&b);
        tap_ok(sw_failsim_load(&c, path, 4) == -SW_ECONFIG,
               "a schedule for 8 stages is refused by a 4-stage run");
    }
    /* the same seed draws the same schedule; another seed another one */
    {
        struct sw_failsim x, y;
        int diff = 0, eq = 1;
        if (sw_failsim_init(&x, 8, 0.5, 120, 42) == 0 && sw_failsim_init(&y, 8, 0.5, 120, 43) == 0) {
            for (long k = 0; k < 2000; k++)
                for (int s = 0; s < 8; s++) {
                    eq &= sw_failsim_fails(&x, k, s) == sw_failsim_fails(&a, k, s);
                    diff += sw_failsim_fails(&x, k, s) != sw_failsim_fails(&y, k, s);
                }
        }
        tap_ok(eq && diff > 0, "same seed, same schedule; another seed differs (%d slots)", diff);
    }
    remove(path);
    sw_failsim_release(&a);
}

int
main(void)
{
    if (sw_kernels_pick(SW_DEVICE_CPU, &K) < 0)
        return tap_skip_all("no CPU kernels");
    K->set_threads(1);
    sw_log_level = SW_LOG_WARN;
    test_weighted_average();
    test_rebuild_state();
    test_checkfree_plus();
    test_scenario();
    test_rollback();
    test_schedule();
    return tap_done();
}
