/*
 * sim.c - all stages of a model in one process (see sim.h).
 */
#include "sw.h"

#include <errno.h>
#include <stdio.h>
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
    sim->x = sw_malloc_big(NC * sizeof(float));
    sim->dx = sw_malloc_big(NC * sizeof(float));
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
    sw_free(sim->stages);
    sw_free(sim->opts);
    sw_free_big(sim->x);
    sw_free_big(sim->dx);
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
    int err;

    if ((err = forward_all(sim, inputs, targets, loss)) < 0)
        return err;
    for (int s = sim->S - 1; s >= 0; s--) {
        err = sw_stage_backward(&sim->stages[s], 0, sim->dx, sim->dx, loss_scale);
        if (err < 0)
            return err;
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
