/*
 * sim.h - the in-process pipeline: all S stages of a model in one process.
 *
 * The research and demo tool (swarmsim) and the reference the networked
 * swarm is checked against.  A step is M microbatches of B x T tokens; each
 * microbatch runs forward through stages 0..S-1, handing the residual stream
 * x[B*T, C] from stage to stage through host buffers exactly as the network
 * would, then backward S-1..0; gradients accumulate; after the M-th every
 * stage takes its own AdamW step (per-stage clipping).  The step's loss is
 * the mean of the microbatch losses.  Running microbatches one after the
 * other instead of GPipe's fill-and-drain gives the same sums in the same
 * order as a pipeline that accumulates in microbatch order.
 *
 * Export/import: one safetensors file with Hugging Face names and a
 * config.json beside it (Hugging Face LlamaForCausalLM layout).
 */
#ifndef SW_SIM_H
#define SW_SIM_H

#include "optim.h"
#include "stage.h"

struct sw_sim {
    struct sw_model_config cfg;
    const struct sw_kernels *k;
    int S, B, T, M;
    struct sw_stage *stages; /* [S] */
    struct sw_optim *opts;   /* [S] */
    float *x;                /* host [N, C]: the boundary activation in flight */
    float *dx;               /* host [N, C]: its gradient */
    int step;                /* steps taken */
};

int sw_sim_init(struct sw_sim *sim, const struct sw_kernels *k, const struct sw_model_config *c,
                int S, int B, int T, int M, const struct sw_optim_config *oc, uint64_t seed)
    SW_WARN_UNUSED;
void sw_sim_release(struct sw_sim *sim);

/* One training step.  inputs/targets: M microbatches of B*T tokens each,
 * back to back.  lr: the schedule's value (each stage multiplies by its own
 * lr_mult).  *loss: mean loss over the M microbatches, before the update. */
int sw_sim_step(struct sw_sim *sim, const int32_t *inputs, const int32_t *targets, float lr,
                float *loss) SW_WARN_UNUSED;

/* Forward and backward of one microbatch into the gradient slabs (no
 * update, no zeroing): the building block of sw_sim_step and of gradient
 * checks.  loss_scale: see sw_stage_backward. */
int sw_sim_forward_backward(struct sw_sim *sim, const int32_t *inputs, const int32_t *targets,
                            float loss_scale, float *loss) SW_WARN_UNUSED;
int sw_sim_zero_grad(struct sw_sim *sim) SW_WARN_UNUSED;

/* Mean loss of one microbatch, forward only. */
int sw_sim_eval(struct sw_sim *sim, const int32_t *inputs, const int32_t *targets, float *loss)
    SW_WARN_UNUSED;

/* Logits [B*T, V] of the last forward's microbatch (host copy). */
int sw_sim_logits(struct sw_sim *sim, float *host) SW_WARN_UNUSED;

/* Copy every stage's parameters from src (same model, any S, B, T). */
int sw_sim_copy_params(struct sw_sim *dst, const struct sw_sim *src) SW_WARN_UNUSED;

/* Export to dir/model.safetensors + dir/config.json (dir is created). */
int sw_sim_export(const struct sw_sim *sim, const char *dir) SW_WARN_UNUSED;
/* Load parameters by Hugging Face name from a safetensors file (F32, BF16 or
 * F16); every tensor of every stage must be present with its shape. */
int sw_sim_import(struct sw_sim *sim, const char *path) SW_WARN_UNUSED;

/* A copy of tensor t of stage s's slab (params, grads, ...) on the host. */
int sw_sim_read_tensor(const struct sw_sim *sim, int s, const float *slab,
                       const struct sw_tensor_info *t, float *host) SW_WARN_UNUSED;

#endif
