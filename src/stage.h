/*
 * stage.h - forward and backward of one pipeline stage on one backend.
 *
 * A stage owns blocks [l0, l1) of the model (plus the embedding on stage 0,
 * the final norm, LM head and loss on stage S-1), laid out as in model.h.
 * It owns four slabs of backend memory: params, grads (same offsets), and
 * per in-flight microbatch ("slot") the activations its backward needs.
 * The optimizer state lives in struct sw_optim (optim.h).
 *
 * The only thing that crosses a stage boundary is the residual stream
 * x[B*T, C] (forward) and its gradient (backward), as host fp32 buffers the
 * caller owns; tokens and targets are host int32 [B*T].
 *
 * Gradients accumulate over microbatches until sw_stage_zero_grad().  The
 * last stage's loss for a microbatch is the mean next-token cross-entropy
 * over its B*T positions; sw_stage_backward's loss_scale multiplies it (1/M
 * for a mean over M microbatches).
 *
 * `parts` selects what a call runs (SW_PART_ALL normally): CheckFree+ runs a
 * boundary stage's embedding or head apart from its blocks.  Without
 * SW_PART_EMBED a stage that owns the embedding takes x_in instead; without
 * SW_PART_HEAD a stage that owns the head writes x_out instead.  A call with
 * parts P must be paired with a backward with the same P on the same slot.
 *
 * Threading: a stage is used by one thread at a time.
 */
#ifndef SW_STAGE_H
#define SW_STAGE_H

#include "kernels.h"
#include "model.h"

enum sw_stage_parts {
    SW_PART_EMBED = 1 << 0,
    SW_PART_BLOCKS = 1 << 1,
    SW_PART_HEAD = 1 << 2,
    SW_PART_ALL = 7,
};

struct sw_block_acts {
    float *ln1;   /* [N, C]   input_layernorm output */
    float *rstd1; /* [N] */
    float *qkv;   /* [N, (NH+2*NKV)*HS]  after RoPE */
    float *att;   /* [B, NH, T, T] softmax probabilities */
    float *atty;  /* [N, NH*HS]  attention output before o_proj */
    float *xmid;  /* [N, C]   residual after attention */
    float *ln2;   /* [N, C] */
    float *rstd2; /* [N] */
    float *gu;    /* [N, 2F]  gate | up */
    float *sw;    /* [N, F]   silu(gate) * up */
};

struct sw_stage_slot {
    float *slab;                  /* one allocation for all of the below */
    int32_t *tokens;              /* [N]  stage 0 */
    int32_t *targets;             /* [N]  last stage */
    float **resid;                /* [nb+1] x [N, C]: resid[0] input, resid[j+1] out of block j */
    struct sw_block_acts *blocks; /* [nb] */
    float *lnf;                   /* [N, C]  last stage */
    float *rstdf;                 /* [N] */
    float *logits;                /* [N, V] */
    float *probs;                 /* [N, V] */
    float *losses;                /* [N] */
    unsigned parts;               /* parts of the last forward */
};

struct sw_stage {
    const struct sw_kernels *k;
    struct sw_model_config cfg;
    struct sw_stage_layout lay;
    int B, T, N, nb;      /* microbatch shape; N = B*T; nb = blocks */
    int n_slots;
    float *params;        /* [lay.numel] backend memory */
    bool view;            /* sw_stage_view_init: params are the caller's, nothing else */
    float *grads;         /* [lay.numel] */
    float *rope_cos;      /* [T, HS/2] */
    float *rope_sin;
    struct sw_stage_slot *slots;
    /* backward scratch, shared by slots */
    float *scratch;       /* one allocation for all of the below */
    float *dresid;        /* [N, C] */
    float *dln;           /* [N, C] */
    float *dqkv;          /* [N, QKV] */
    float *datt;          /* [B, NH, T, T] */
    float *datty;         /* [N, NH*HS] */
    float *dgu;           /* [N, 2F] */
    float *dsw;           /* [N, F] */
    float *dlogits;       /* [N, V] */
    float *host_losses;   /* [N] host */
    size_t act_bytes;     /* activation + scratch bytes, for reports */
};

/* Allocates everything; params are initialised from seed (sw_model_init_params),
 * or left zero with seed SW_STAGE_NO_INIT, for a caller about to fill them
 * (a CheckFree rebuild's copies of the neighbours). */
#define SW_STAGE_NO_INIT UINT64_MAX
int sw_stage_init(struct sw_stage *st, const struct sw_kernels *k, const struct sw_model_config *c,
                  int S, int s, int B, int T, int n_slots, uint64_t seed) SW_WARN_UNUSED;
void sw_stage_release(struct sw_stage *st);
/* The parameters drawn again from seed, as sw_stage_init draws them. */
int sw_stage_init_params(struct sw_stage *st, uint64_t seed) SW_WARN_UNUSED;
/* A parameters-only view of stage s of S over params (backend memory of
 * k, [lay.numel], owned by the caller): layout and params, no gradients and
 * no activations, so only what reads parameters takes it (CheckFree's
 * neighbour copies: src/checkfree.h); sw_stage_release frees the layout
 * only.  Cheap: no allocation besides the layout. */
int sw_stage_view_init(struct sw_stage *st, const struct sw_kernels *k,
                       const struct sw_model_config *c, int S, int s, float *params) SW_WARN_UNUSED;

int sw_stage_zero_grad(struct sw_stage *st) SW_WARN_UNUSED;

/* Forward of one microbatch into slot.  tokens: stage 0 (with SW_PART_EMBED);
 * x_in otherwise.  targets and loss: last stage (with SW_PART_HEAD); x_out
 * otherwise.  Tokens and targets must be < vocab_size (-SW_ERANGE if not). */
int sw_stage_forward(struct sw_stage *st, int slot, unsigned parts, const int32_t *tokens,
                     const float *x_in, const int32_t *targets, float *x_out,
                     float *loss) SW_WARN_UNUSED;
/* Backward of the microbatch in slot.  dx_out: from the next stage (NULL
 * when this call runs the head).  dx_in: gradient for the previous stage
 * (ignored when this call runs the embedding).  loss_scale: see above. */
int sw_stage_backward(struct sw_stage *st, int slot, const float *dx_out, float *dx_in,
                      float loss_scale) SW_WARN_UNUSED;

/* Copies of the parameters (host <-> backend), whole slab. */
int sw_stage_get_params(const struct sw_stage *st, float *host) SW_WARN_UNUSED;
int sw_stage_set_params(struct sw_stage *st, const float *host) SW_WARN_UNUSED;

#endif
