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

#include "checkfree.h"
#include "codec.h"
#include "optim.h"
#include "snapshot.h"
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
    /* CheckFree+ (sw_sim_enable_swap): odd microbatches (counted over the
     * run, so M = 1 alternates steps) run the blocks of stage 1 before those
     * of stage 0 and those of S-1 before those of S-2; the embedding stays
     * first and the head last.  Stages 0 and S-1 then hold 2 activation
     * slots (slot 0: the first call of a microbatch, slot 1: the second).
     * reps[0] is stage 1's replica of the embedding, reps[1] stage S-2's of
     * the final norm and LM head, refreshed after every update. */
    bool swap;
    uint64_t micro;          /* microbatches run through sw_sim_forward_backward */
    /* how activations and their gradients cross a boundary in training
     * (codec.h): sw_sim_forward_backward encodes and decodes them as the
     * swarm's FWD and BWD do (SW_CODEC_FP32 after sw_sim_init: unchanged);
     * sw_sim_eval does not (the swarm has no distributed evaluation) */
    enum sw_codec codec;
    struct sw_checkfree_replica reps[2];
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

/* CheckFree+: turn on the swapped route of odd microbatches and the
 * replicas (see struct sw_sim).  Needs S >= 4 (so that stage 1 and S-2 are
 * distinct partners) and an untied head; -SW_ECONFIG (logged) otherwise.
 * Call before training; parameters are kept. */
int sw_sim_enable_swap(struct sw_sim *sim) SW_WARN_UNUSED;

/* Simulate the loss of stage s: its parameters and AdamW moments become
 * NaN (and its CheckFree+ replica, if it holds one), so that anything a
 * recovery forgets to rebuild shows up in the loss. */
int sw_sim_lose_stage(struct sw_sim *sim, int s) SW_WARN_UNUSED;

/* Rebuild stage s from its neighbours with rule (checkfree.h).  Under
 * CheckFree+ (plus = true): a lost boundary stage (0 or S-1) copies its
 * partner's (1 or S-2) blocks and takes the exact replica; a lost partner
 * copies the boundary stage's blocks back and refreshes its replica; any
 * other stage uses rule.  Fresh AdamW state and lr_mult = cc->lr_bump on s
 * only.  -SW_ELOST when the rule cannot rebuild s (boundary stage without
 * plus, or a missing neighbour). */
int sw_sim_rebuild(struct sw_sim *sim, int s, enum sw_checkfree_rule rule, bool plus,
                   const struct sw_checkfree_config *cc, uint64_t seed) SW_WARN_UNUSED;

/* A snapshot (snapshot.h) sized for sim's stages. */
int sw_sim_snapshot_init(struct sw_snapshot *snap, const struct sw_sim *sim) SW_WARN_UNUSED;
void sw_sim_snapshot_release(struct sw_snapshot *snap);
/* Copy the state into / out of the snapshot (out: replicas refreshed). */
int sw_sim_snapshot_save(struct sw_snapshot *snap, const struct sw_sim *sim) SW_WARN_UNUSED;
int sw_sim_snapshot_load(struct sw_sim *sim, const struct sw_snapshot *snap) SW_WARN_UNUSED;

/* Time (seconds, median of reps) of the forward and of the backward of one
 * microbatch through each stage: fwd[S], bwd[S].  Gradients are left
 * dirty (call before training or zero them). */
int sw_sim_time_stages(struct sw_sim *sim, const int32_t *inputs, const int32_t *targets,
                       int reps, double *fwd, double *bwd) SW_WARN_UNUSED;

/* Export to dir/model.safetensors + dir/config.json (dir is created). */
int sw_sim_export(const struct sw_sim *sim, const char *dir) SW_WARN_UNUSED;
/* Load parameters by Hugging Face name from a safetensors file (F32, BF16 or
 * F16); every tensor of every stage must be present with its shape. */
int sw_sim_import(struct sw_sim *sim, const char *path) SW_WARN_UNUSED;

/* A copy of tensor t of stage s's slab (params, grads, ...) on the host. */
int sw_sim_read_tensor(const struct sw_sim *sim, int s, const float *slab,
                       const struct sw_tensor_info *t, float *host) SW_WARN_UNUSED;

#endif
