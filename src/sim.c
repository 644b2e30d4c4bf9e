/*
 * sim.c - all stages of a model in one process (see sim.h).
 */
#include "sw.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hfconfig.h"
#include "safetensors.h"
#include "sim.h"

int
sw_sim_init(struct sw_sim *sim, const struct sw_kernels *k, const struct sw_model_config *c,
            int S, int B, int T, int M, const struct sw_optim_config *oc, uint64_t seed)
{
    char why[256];
    size_t NC = (size_t)B * T * c->d_model;
    int err;

    memset(sim, 0, sizeof(*sim));
    if ((err = sw_model_config_check(c, why, sizeof(why))) < 0 ||
        (err = sw_model_check_stages(c, S, why, sizeof(why))) < 0) {
        sw_log(SW_LOG_ERROR, "bad model: %s", why);
        return err;
    }
    if (T > c->seq_len) {
        sw_log(SW_LOG_ERROR, "bad model: sequence length %d exceeds seq_len %d", T, c->seq_len);
        return -SW_ECONFIG;
    }
    sim->cfg = *c;
    sim->k = k;
    sim->S = S;
    sim->B = B;
    sim->T = T;
    sim->M = M;
    sim->stages = sw_calloc((size_t)S, sizeof(*sim->stages));
    sim->opts = sw_calloc((size_t)S, sizeof(*sim->opts));
    sim->x = k->alloc_host(NC * sizeof(float));
    sim->dx = k->alloc_host(NC * sizeof(float));
    if (!sim->stages || !sim->opts || !sim->x || !sim->dx) {
        err = -SW_ENOMEM;
        goto out_release;
    }
    for (int s = 0; s < S; s++) {
        if ((err = sw_stage_init(&sim->stages[s], k, c, S, s, B, T, 1, seed)) < 0)
            goto out_release;
        if ((err = sw_optim_init(&sim->opts[s], oc, &sim->stages[s])) < 0)
            goto out_release;
    }
    return 0;

out_release:
    sw_sim_release(sim);
    return err;
}

void
sw_sim_release(struct sw_sim *sim)
{
    for (int s = 0; sim->stages && s < sim->S; s++) {
        sw_optim_release(&sim->opts[s]);
        sw_stage_release(&sim->stages[s]);
    }
    sw_checkfree_replica_release(&sim->reps[0]);
    sw_checkfree_replica_release(&sim->reps[1]);
    sw_free(sim->stages);
    sw_free(sim->opts);
    if (sim->k) {
        sim->k->free_host(sim->x);
        sim->k->free_host(sim->dx);
    }
    memset(sim, 0, sizeof(*sim));
}

int
sw_sim_zero_grad(struct sw_sim *sim)
{
    int err;

    for (int s = 0; s < sim->S; s++)
        if ((err = sw_stage_zero_grad(&sim->stages[s])) < 0)
            return err;
    return 0;
}

static int
forward_all(struct sw_sim *sim, const int32_t *inputs, const int32_t *targets, float *loss)
{
    int err;

    for (int s = 0; s < sim->S; s++) {
        /* x is read (copied to the backend) before x_out is written */
        err = sw_stage_forward(&sim->stages[s], 0, SW_PART_ALL, inputs, sim->x, targets, sim->x,
                               loss);
        if (err < 0)
            return err;
    }
    return 0;
}

int
sw_sim_forward_backward(struct sw_sim *sim, const int32_t *inputs, const int32_t *targets,
                        float loss_scale, float *loss)
{
    bool swapped = sim->swap && (sim->micro & 1);
    int n = swapped ? sim->S + 2 : sim->S, err;
    size_t NC = (size_t)sim->B * sim->T * sim->cfg.d_model;

    sim->micro++;
    for (int i = 0; i < n; i++) {
        struct sw_hop h = sw_checkfree_hop(sim->S, swapped, i);
        /* x is read (copied to the backend) before x_out is written */
        err = sw_stage_forward(&sim->stages[h.stage], h.visit, h.parts, inputs, sim->x, targets,
                               sim->x, loss);
        if (err < 0)
            return err;
        /* the swarm sends it to the next hop as a FWD, in the run's codec */
        if (i + 1 < n)
            sw_codec_roundtrip(sim->codec, sim->x, NC);
    }
    for (int i = n - 1; i >= 0; i--) {
        struct sw_hop h = sw_checkfree_hop(sim->S, swapped, i);
        err = sw_stage_backward(&sim->stages[h.stage], h.visit, sim->dx, sim->dx, loss_scale);
        if (err < 0)
            return err;
        if (i > 0) /* a BWD to the hop before */
            sw_codec_roundtrip(sim->codec, sim->dx, NC);
    }
    return 0;
}

int
sw_sim_step(struct sw_sim *sim, const int32_t *inputs, const int32_t *targets, float lr,
            float *loss)
{
    size_t N = (size_t)sim->B * sim->T;
    double sum = 0;
    float l;
    int err;

    if ((err = sw_sim_zero_grad(sim)) < 0)
        return err;
    for (int m = 0; m < sim->M; m++) {
        err = sw_sim_forward_backward(sim, inputs + m * N, targets + m * N, 1.0f / sim->M, &l);
        if (err < 0)
            return err;
        sum += l;
    }
    *loss = (float)(sum / sim->M);
    for (int s = 0; s < sim->S; s++) {
        if ((err = sw_optim_update(&sim->opts[s], &sim->stages[s], lr)) < 0) {
            sw_log(SW_LOG_ERROR, "step %d: stage %d: update failed: %s", sim->step, s,
                   sw_strerror(err));
            return err;
        }
    }
    if (sim->swap)
        for (int i = 0; i < 2; i++)
            if ((err = sw_checkfree_replica_refresh(&sim->reps[i],
                                                    &sim->stages[i == 0 ? 0 : sim->S - 1])) < 0)
                return err;
    sim->step++;
    return 0;
}

int
sw_sim_eval(struct sw_sim *sim, const int32_t *inputs, const int32_t *targets, float *loss)
{
    return forward_all(sim, inputs, targets, loss);
}

int
sw_sim_logits(struct sw_sim *sim, float *host)
{
    struct sw_stage *last = &sim->stages[sim->S - 1];
    size_t n = (size_t)last->N * sim->cfg.vocab_size;
    int err = sim->k->copy_d2h(host, last->slots[0].logits, n * sizeof(float));

    return err < 0 ? err : sim->k->sync();
}

int
sw_sim_read_tensor(const struct sw_sim *sim, int s, const float *slab,
                   const struct sw_tensor_info *t, float *host)
{
    (void)s;
    int err = sim->k->copy_d2h(host, slab + t->offset, t->numel * sizeof(float));

    return err < 0 ? err : sim->k->sync();
}

/* Find the tensor with this name in any stage of sim. */
static const struct sw_tensor_info *
find_global(const struct sw_sim *sim, const char *name, int *stage)
{
    for (int s = 0; s < sim->S; s++) {
        const struct sw_tensor_info *t = sw_stage_layout_find_name(&sim->stages[s].lay, name);
        if (t) {
            *stage = s;
            return t;
        }
    }
    return NULL;
}

int
sw_sim_copy_params(struct sw_sim *dst, const struct sw_sim *src)
{
    float *host = NULL;
    size_t cap = 0;
    int err = 0;

    for (int s = 0; s < src->S; s++) {
        const struct sw_stage *ss = &src->stages[s];
        if (ss->lay.numel > cap) {
            sw_free(host);
            cap = ss->lay.numel;
            if (!(host = sw_malloc(cap * sizeof(float))))
                return -SW_ENOMEM;
        }
        if ((err = sw_stage_get_params(ss, host)) < 0)
            goto out;
        for (int i = 0; i < ss->lay.ntensors; i++) {
            const struct sw_tensor_info *t = &ss->lay.tensors[i], *d;
            int ds;

            d = find_global(dst, t->name, &ds);
            if (!d || d->numel != t->numel) {
                sw_log(SW_LOG_ERROR, "copy of parameters: no tensor '%s' of %zu values", t->name,
                       t->numel);
                err = -SW_ESHAPE;
                goto out;
            }
            err = dst->k->copy_h2d(dst->stages[ds].params + d->offset, host + t->offset,
                                   t->numel * sizeof(float));
            if (err < 0)
                goto out;
        }
    }
    err = dst->k->sync();
out:
    sw_free(host);
    return err;
}

int
sw_sim_export(const struct sw_sim *sim, const char *dir)
{
    struct sw_st_desc *descs = NULL;
    struct sw_st_writer w;
    struct sw_st_meta meta[] = {{"format", "pt"}, {"producer", "swarm " PACKAGE_VERSION}};
    char path[4096];
    float *host = NULL;
    int n = 0, err;

    if (mkdir(dir, 0777) < 0 && errno != EEXIST) {
        err = -errno;
        sw_log(SW_LOG_ERROR, "cannot create '%s': %s", dir, sw_strerror(err));
        return err;
    }
    for (int s = 0; s < sim->S; s++)
        n += sim->stages[s].lay.ntensors;
    descs = sw_calloc((size_t)n, sizeof(*descs));
    if (!descs)
        return -SW_ENOMEM;
    n = 0;
    for (int s = 0; s < sim->S; s++) {
        const struct sw_stage_layout *lay = &sim->stages[s].lay;
        for (int i = 0; i < lay->ntensors; i++) {
            const struct sw_tensor_info *t = &lay->tensors[i];
            struct sw_st_desc *d = &descs[n++];
            d->name = t->name;
            d->dtype = SW_DTYPE_F32;
            d->ndim = t->ndim;
            d->shape[0] = t->shape[0];
            d->shape[1] = t->shape[1];
            d->nbytes = t->numel * sizeof(float);
        }
    }
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    if ((err = sw_safetensors_writer_open(&w, path, descs, n, meta, 2)) < 0)
        goto out;
    for (int s = 0; s < sim->S; s++) {
        const struct sw_stage *st = &sim->stages[s];
        sw_free(host);
        if (!(host = sw_malloc(st->lay.numel * sizeof(float)))) {
            err = -SW_ENOMEM;
            sw_safetensors_writer_abort(&w);
            goto out;
        }
        if ((err = sw_stage_get_params(st, host)) < 0 ||
            (err = sw_safetensors_writer_put(&w, host, st->lay.numel * sizeof(float))) < 0) {
            sw_safetensors_writer_abort(&w);
            goto out;
        }
    }
    if ((err = sw_safetensors_writer_commit(&w)) < 0)
        goto out;
    snprintf(path, sizeof(path), "%s/config.json", dir);
    err = sw_hfconfig_write(path, &sim->cfg);
out:
    sw_free(host);
    sw_free(descs);
    return err;
}

int
sw_sim_import(struct sw_sim *sim, const char *path)
{
    struct sw_safetensors st;
    float *host = NULL;
    int err;

    if ((err = sw_safetensors_open(&st, path, 0)) < 0) {
        if (err > -1000)
            sw_log(SW_LOG_ERROR, "cannot open '%s': %s", path, sw_strerror(err));
        return err;
    }
    for (int s = 0; s < sim->S; s++) {
        struct sw_stage *stg = &sim->stages[s];
        sw_free(host);
        if (!(host = sw_malloc(stg->lay.numel * sizeof(float)))) {
            err = -SW_ENOMEM;
            goto out;
        }
        for (int i = 0; i < stg->lay.ntensors; i++) {
            const struct sw_tensor_info *t = &stg->lay.tensors[i];
            err = sw_safetensors_read_f32(&st, t->name, host + t->offset, t->numel, t->shape,
                                          t->ndim);
            if (err < 0)
                goto out;
        }
        if ((err = sw_stage_set_params(stg, host)) < 0)
            goto out;
    }
out:
    sw_free(host);
    sw_safetensors_close(&st);
    return err;
}

/* ---- CheckFree, CheckFree+ and checkpoints in process ---- */

int
sw_sim_enable_swap(struct sw_sim *sim)
{
    int ends[2] = {0, sim->S - 1}, err = 0;
    float *host = NULL;

    if (sim->S < 4 || sim->cfg.tied) {
        sw_log(SW_LOG_ERROR, "checkfree+ needs at least 4 stages and an untied LM head (have %d "
                             "stage(s)%s)", sim->S, sim->cfg.tied ? ", tied head" : "");
        return -SW_ECONFIG;
    }
    if (sim->swap)
        return 0;
    /* stages 0 and S-1 run twice in a swapped microbatch: 2 activation slots */
    for (int i = 0; i < 2; i++) {
        struct sw_stage *st = &sim->stages[ends[i]];
        size_t n = st->lay.numel;

        if (!(host = sw_malloc(n * sizeof(float))))
            return -SW_ENOMEM;
        if ((err = sw_stage_get_params(st, host)) < 0)
            goto out;
        sw_stage_release(st);
        if ((err = sw_stage_init(st, sim->k, &sim->cfg, sim->S, ends[i], sim->B, sim->T, 2, 0)) <
                0 ||
            (err = sw_stage_set_params(st, host)) < 0)
            goto out;
        sw_free(host);
        host = NULL;
    }
    if ((err = sw_checkfree_replica_init(&sim->reps[0], &sim->stages[0], SW_CF_REPLICA_EMBED)) <
            0 ||
        (err = sw_checkfree_replica_init(&sim->reps[1], &sim->stages[sim->S - 1],
                                         SW_CF_REPLICA_HEAD)) < 0)
        goto out;
    sim->swap = true;
out:
    sw_free(host);
    return err;
}

/* n floats of NaN at backend pointer p */
static int
fill_nan(const struct sw_kernels *k, float *p, size_t n)
{
    float *h = sw_malloc(n * sizeof(float));
    int err;

    if (!h)
        return -SW_ENOMEM;
    for (size_t i = 0; i < n; i++)
        h[i] = NAN;
    err = k->copy_h2d(p, h, n * sizeof(float));
    sw_free(h);
    return err < 0 ? err : k->sync();
}

int
sw_sim_lose_stage(struct sw_sim *sim, int s)
{
    struct sw_stage *st = &sim->stages[s];
    struct sw_optim *o = &sim->opts[s];
    int err;

    SW_ASSERT(s >= 0 && s < sim->S);
    if ((err = fill_nan(sim->k, st->params, st->lay.numel)) < 0 ||
        (err = fill_nan(sim->k, o->m, o->numel)) < 0 || (err = fill_nan(sim->k, o->v, o->numel)) < 0)
        return err;
    o->t = 0;
    o->lr_mult = NAN;
    o->last_norm = o->last_norm_clipped = NAN;
    if (sim->swap && s == 1)
        return fill_nan(sim->k, sim->reps[0].data, sim->reps[0].numel);
    if (sim->swap && s == sim->S - 2)
        return fill_nan(sim->k, sim->reps[1].data, sim->reps[1].numel);
    return 0;
}

int
sw_sim_rebuild(struct sw_sim *sim, int s, enum sw_checkfree_rule rule, bool plus,
               const struct sw_checkfree_config *cc, uint64_t seed)
{
    struct sw_stage *st = sim->stages;
    int S = sim->S, err;

    SW_ASSERT(s >= 0 && s < S);
    if (plus && !sim->swap) {
        sw_log(SW_LOG_ERROR, "checkfree+ rebuild of stage %d without the swapped route", s);
        return -SW_EINVAL;
    }
    if (plus && (s == 0 || s == S - 1)) {
        /* boundary: the partner's blocks and the exact replica */
        int partner = s == 0 ? 1 : S - 2;
        if ((err = sw_checkfree_copy_blocks(&st[s], &st[partner])) < 0 ||
            (err = sw_checkfree_replica_restore(&sim->reps[s == 0 ? 0 : 1], &st[s])) < 0)
            return err;
        return sw_checkfree_reset_optim(&sim->opts[s], cc->lr_bump);
    }
    if (plus && (s == 1 || s == S - 2)) {
        /* partner: the boundary stage's blocks back, and a fresh replica */
        int owner = s == 1 ? 0 : S - 1;
        if ((err = sw_checkfree_copy_blocks(&st[s], &st[owner])) < 0 ||
            (err = sw_checkfree_replica_refresh(&sim->reps[s == 1 ? 0 : 1], &st[owner])) < 0)
            return err;
        return sw_checkfree_reset_optim(&sim->opts[s], cc->lr_bump);
    }
    return sw_checkfree_rebuild(&st[s], &sim->opts[s], rule, s > 0 ? &st[s - 1] : NULL,
                                s > 0 ? &sim->opts[s - 1] : NULL, s + 1 < S ? &st[s + 1] : NULL,
                                s + 1 < S ? &sim->opts[s + 1] : NULL, cc, seed);
}

int
sw_sim_snapshot_init(struct sw_snapshot *snap, const struct sw_sim *sim)
{
    memset(snap, 0, sizeof(*snap));
    snap->S = sim->S;
    snap->params = sw_calloc((size_t)sim->S, sizeof(float *));
    snap->m = sw_calloc((size_t)sim->S, sizeof(float *));
    snap->v = sw_calloc((size_t)sim->S, sizeof(float *));
    snap->t = sw_calloc((size_t)sim->S, sizeof(int));
    snap->lr_mult = sw_calloc((size_t)sim->S, sizeof(float));
    if (!snap->params || !snap->m || !snap->v || !snap->t || !snap->lr_mult)
        goto out_free;
    for (int s = 0; s < sim->S; s++) {
        size_t bytes = sim->stages[s].lay.numel * sizeof(float);
        snap->params[s] = sw_malloc_big(bytes);
        snap->m[s] = sw_malloc_big(bytes);
        snap->v[s] = sw_malloc_big(bytes);
        if (!snap->params[s] || !snap->m[s] || !snap->v[s])
            goto out_free;
        snap->bytes += 3 * bytes;
    }
    return 0;
out_free:
    sw_sim_snapshot_release(snap);
    return -SW_ENOMEM;
}

void
sw_sim_snapshot_release(struct sw_snapshot *snap)
{
    for (int s = 0; s < snap->S; s++) {
        if (snap->params)
            sw_free_big(snap->params[s]);
        if (snap->m)
            sw_free_big(snap->m[s]);
        if (snap->v)
            sw_free_big(snap->v[s]);
    }
    sw_free(snap->params);
    sw_free(snap->m);
    sw_free(snap->v);
    sw_free(snap->t);
    sw_free(snap->lr_mult);
    memset(snap, 0, sizeof(*snap));
}

int
sw_sim_snapshot_save(struct sw_snapshot *snap, const struct sw_sim *sim)
{
    int err;

    SW_ASSERT(snap->S == sim->S);
    for (int s = 0; s < sim->S; s++) {
        const struct sw_optim *o = &sim->opts[s];
        size_t bytes = o->numel * sizeof(float);

        if ((err = sim->k->copy_d2h(snap->params[s], sim->stages[s].params, bytes)) < 0 ||
            (err = sim->k->copy_d2h(snap->m[s], o->m, bytes)) < 0 ||
            (err = sim->k->copy_d2h(snap->v[s], o->v, bytes)) < 0)
            return err;
        snap->t[s] = o->t;
        snap->lr_mult[s] = o->lr_mult;
    }
    snap->step = sim->step;
    snap->valid = true;
    return sim->k->sync();
}

int
sw_sim_snapshot_load(struct sw_sim *sim, const struct sw_snapshot *snap)
{
    int err;

    SW_ASSERT(snap->S == sim->S && snap->valid);
    for (int s = 0; s < sim->S; s++) {
        struct sw_optim *o = &sim->opts[s];
        size_t bytes = o->numel * sizeof(float);

        if ((err = sim->k->copy_h2d(sim->stages[s].params, snap->params[s], bytes)) < 0 ||
            (err = sim->k->copy_h2d(o->m, snap->m[s], bytes)) < 0 ||
            (err = sim->k->copy_h2d(o->v, snap->v[s], bytes)) < 0)
            return err;
        o->t = snap->t[s];
        o->lr_mult = snap->lr_mult[s];
    }
    sim->step = snap->step;
    if ((err = sim->k->sync()) < 0)
        return err;
    if (sim->swap)
        for (int i = 0; i < 2; i++)
            if ((err = sw_checkfree_replica_refresh(&sim->reps[i],
                                                    &sim->stages[i == 0 ? 0 : sim->S - 1])) < 0)
                return err;
    return 0;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int
sw_sim_time_stages(struct sw_sim *sim, const int32_t *inputs, const int32_t *targets, int reps,
                   double *fwd, double *bwd)
{
    double *tf = sw_calloc((size_t)reps * sim->S, sizeof(double));
    double *tb = sw_calloc((size_t)reps * sim->S, sizeof(double));
    float loss;
    int err = -SW_ENOMEM;

    SW_ASSERT(reps >= 1);
    if (!tf || !tb)
        goto out;
    for (int r = 0; r < reps; r++) {
        for (int s = 0; s < sim->S; s++) {
            double t0 = sw_now_s();
            err = sw_stage_forward(&sim->stages[s], 0, SW_PART_ALL, inputs, sim->x, targets,
                                   sim->x, &loss);
            if (err < 0 || (err = sim->k->sync()) < 0)
                goto out;
            tf[(size_t)s * reps + r] = sw_now_s() - t0;
        }
        for (int s = sim->S - 1; s >= 0; s--) {
            double t0 = sw_now_s();
            err = sw_stage_backward(&sim->stages[s], 0, sim->dx, sim->dx, 1.0f);
            if (err < 0 || (err = sim->k->sync()) < 0)
                goto out;
            tb[(size_t)s * reps + r] = sw_now_s() - t0;
        }
    }
    for (int s = 0; s < sim->S; s++) {
        qsort(tf + (size_t)s * reps, (size_t)reps, sizeof(double), cmp_double);
        qsort(tb + (size_t)s * reps, (size_t)reps, sizeof(double), cmp_double);
        fwd[s] = tf[(size_t)s * reps + reps / 2];
        bwd[s] = tb[(size_t)s * reps + reps / 2];
    }
    err = 0;
out:
    sw_free(tf);
    sw_free(tb);
    return err;
}
