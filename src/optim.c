#include "sw.h"

#include <math.h>
#include <string.h>

#include "optim.h"

void
sw_optim_config_default(struct sw_optim_config *oc)
{
    oc->lr = 1e-3f;
    oc->min_lr_frac = 0.1f;
    oc->warmup_steps = 20;
    oc->max_steps = 1000;
    oc->beta1 = 0.9f;
    oc->beta2 = 0.95f;
    oc->eps = 1e-8f;
    oc->weight_decay = 0.1f;
    oc->grad_clip = 1.0f;
}

int
sw_optim_init(struct sw_optim *o, const struct sw_optim_config *oc, struct sw_stage *st)
{
    memset(o, 0, sizeof(*o));
    o->cfg = *oc;
    o->k = st->k;
    o->numel = st->lay.numel;
    o->lr_mult = 1.0f;
    o->m = o->k->alloc(o->numel * sizeof(float));
    o->v = o->k->alloc(o->numel * sizeof(float));
    if (!o->m || !o->v) {
        sw_optim_release(o);
        return -SW_ENOMEM;
    }
    return 0;
}

void
sw_optim_release(struct sw_optim *o)
{
    if (o->k) {
        o->k->free(o->m);
        o->k->free(o->v);
    }
    memset(o, 0, sizeof(*o));
}

int
sw_optim_reset(struct sw_optim *o)
{
    int err;

    o->t = 0;
    if ((err = o->k->memset0(o->m, o->numel * sizeof(float))) < 0)
        return err;
    return o->k->memset0(o->v, o->numel * sizeof(float));
}

float
sw_lr_at(const struct sw_optim_config *oc, int step)
{
    double lr = oc->lr, min_lr = oc->lr * oc->min_lr_frac, frac;

    if (step < oc->warmup_steps)
        return (float)(lr * (step + 1) / oc->warmup_steps);
    if (step >= oc->max_steps)
        return (float)min_lr;
    frac = (double)(step - oc->warmup_steps) / (double)SW_MAX(1, oc->max_steps - oc->warmup_steps);
    return (float)(min_lr + 0.5 * (1.0 + cos(M_PI * frac)) * (lr - min_lr));
}

double
sw_optim_grad_norm(const struct sw_optim *o, const struct sw_stage *st)
{
    return sqrt(o->k->sumsq(st->grads, st->lay.numel));
}

int
sw_optim_update(struct sw_optim *o, struct sw_stage *st, float lr)
{
    const struct sw_optim_config *c = &o->cfg;
    double norm = sw_optim_grad_norm(o, st);
    float scale = 1.0f;

    o->last_norm = (float)norm;
    if (!isfinite(norm)) {
        o->last_norm_clipped = o->last_norm;
        return -SW_ENONFINITE;
    }
    if (c->grad_clip > 0 && norm > c->grad_clip)
        scale = (float)(c->grad_clip / norm);
    o->last_norm_clipped = (float)(norm * scale);
    o->t++;
    for (int i = 0; i < st->lay.ntensors; i++) {
        const struct sw_tensor_info *t = &st->lay.tensors[i];
        o->k->adamw_update(st->params + t->offset, st->grads + t->offset, o->m + t->offset,
                           o->v + t->offset, t->numel, lr * o->lr_mult, c->beta1, c->beta2,
                           c->eps, t->decay ? c->weight_decay : 0.0f, scale, o->t);
    }
    return o->k->last_error();
}
