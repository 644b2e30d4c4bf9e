/*
 * optim.h - AdamW for one stage, with per-stage global-norm clipping, a
 * linear-warmup + cosine schedule and a per-stage learning-rate multiplier.
 *
 * Each step records the stage's gradient L2 norm before clipping
 * (last_norm) and after (last_norm_clipped): CheckFree weighs a lost stage's
 * neighbours by them.  Weight decay is decoupled and applies to the 2-D
 * tensors of the blocks and the head (model.h, sw_tensor_info.decay).
 * The moments live in backend memory with the stage's slab offsets.
 */
#ifndef SW_OPTIM_H
#define SW_OPTIM_H

#include "stage.h"

struct sw_optim_config {
    float lr;           /* peak learning rate */
    float min_lr_frac;  /* cosine decays to lr * min_lr_frac */
    int warmup_steps;   /* linear warmup from lr/warmup to lr */
    int max_steps;      /* end of the cosine */
    float beta1, beta2, eps;
    float weight_decay;
    float grad_clip;    /* per-stage global-norm clip; <= 0: off */
};

void sw_optim_config_default(struct sw_optim_config *oc);

struct sw_optim {
    struct sw_optim_config cfg;
    const struct sw_kernels *k;
    float *m, *v;           /* [numel] backend memory */
    size_t numel;
    int t;                  /* AdamW steps taken (bias correction) */
    float lr_mult;          /* per-stage multiplier (CheckFree bumps it) */
    float last_norm;        /* pre-clip gradient L2 norm of the last step */
    float last_norm_clipped;
};

int sw_optim_init(struct sw_optim *o, const struct sw_optim_config *oc, struct sw_stage *st)
    SW_WARN_UNUSED;
void sw_optim_release(struct sw_optim *o);
/* Fresh moments and step count (CheckFree rebuild); lr_mult is left alone. */
int sw_optim_reset(struct sw_optim *o) SW_WARN_UNUSED;

/* The schedule at step (0-based): warmup then cosine, before lr_mult. */
float sw_lr_at(const struct sw_optim_config *oc, int step);

/* Gradient L2 norm of the stage's grad slab. */
double sw_optim_grad_norm(const struct sw_optim *o, const struct sw_stage *st);

/* One AdamW step on st->params with st->grads at learning rate lr * lr_mult,
 * after clipping; records last_norm.  -SW_ENONFINITE (and no update) when
 * the gradient norm is not finite. */
int sw_optim_update(struct sw_optim *o, struct sw_stage *st, float lr) SW_WARN_UNUSED;

#endif
