/*
 * model.h - a LLaMA model's shape, its cut into pipeline stages, and the
 * names and places of its tensors.
 *
 * Conventions are Hugging Face LlamaForCausalLM's: RoPE rotate_half over split
 * halves, linear weights [out, in], RMSNorm weight multiplies the normalised
 * input, tensor names below.  The global name is the identity of a tensor
 * everywhere (checkpoints, state transfer, recovery).
 *
 * Stages: the L blocks are cut into S contiguous groups, as even as possible
 * (the first L % S stages get one block more).  Stage 0 also owns
 * model.embed_tokens.weight; stage S-1 owns model.norm.weight and
 * lm_head.weight (and computes the loss).  With tie_word_embeddings the head
 * is the embedding, which only works when one stage owns both: S must be 1.
 *
 * Slab layout of a stage (in floats, 64-byte aligned tensors are not needed:
 * BLAS takes any float*): [embed] then per block
 *   input_layernorm, q_proj, k_proj, v_proj, o_proj,
 *   post_attention_layernorm, gate_proj, up_proj, down_proj
 * then [norm, lm_head].  q/k/v are adjacent, so [q;k;v] is one row-stacked
 * weight [(NH+2*NKV)*HS, C] for one GEMM; gate/up likewise ([2F, C]).
 * The grads, AdamW m and v slabs of a stage use the same offsets.
 */
#ifndef SW_MODEL_H
#define SW_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SW_NAME_MAX 96

struct sw_model_config {
    int vocab_size;  /* V */
    int d_model;     /* C, hidden_size */
    int n_layers;    /* L, num_hidden_layers */
    int n_heads;     /* NH, num_attention_heads */
    int n_kv_heads;  /* NKV, num_key_value_heads; divides NH */
    int ffn_hidden;  /* F, intermediate_size */
    int seq_len;     /* T max, max_position_embeddings */
    float rope_theta; /* 10000 */
    float rms_eps;    /* 1e-5 */
    bool tied;        /* tie_word_embeddings */
};

enum sw_tensor_kind {
    SW_T_EMBED = 0,  /* model.embed_tokens.weight [V, C] */
    SW_T_ATTN_NORM,  /* model.layers.i.input_layernorm.weight [C] */
    SW_T_Q,          /* ...self_attn.q_proj.weight [NH*HS, C] */
    SW_T_K,          /* ...self_attn.k_proj.weight [NKV*HS, C] */
    SW_T_V,          /* ...self_attn.v_proj.weight [NKV*HS, C] */
    SW_T_O,          /* ...self_attn.o_proj.weight [C, NH*HS] */
    SW_T_MLP_NORM,   /* ...post_attention_layernorm.weight [C] */
    SW_T_GATE,       /* ...mlp.gate_proj.weight [F, C] */
    SW_T_UP,         /* ...mlp.up_proj.weight [F, C] */
    SW_T_DOWN,       /* ...mlp.down_proj.weight [C, F] */
    SW_T_NORM,       /* model.norm.weight [C] */
    SW_T_HEAD,       /* lm_head.weight [V, C] */
    SW_T_NKINDS
};

#define SW_BLOCK_NTENSORS 9 /* SW_T_ATTN_NORM .. SW_T_DOWN */

struct sw_tensor_info {
    char name[SW_NAME_MAX];  /* Hugging Face name */
    enum sw_tensor_kind kind;
    int layer;               /* global block index; -1 outside blocks */
    int ndim;                /* 1 or 2 */
    int64_t shape[2];        /* [rows, cols] or [n] */
    size_t numel;
    size_t offset;           /* in floats, from the start of the stage's slab */
    bool decay;              /* AdamW weight decay applies (2-D weights only) */
};

struct sw_stage_layout {
    int S, s;                /* stage s of S */
    int l0, l1;              /* blocks [l0, l1) */
    bool has_embed, has_head;
    int ntensors;
    struct sw_tensor_info *tensors; /* owned; sw_stage_layout_release frees */
    size_t numel;            /* floats in the slab */
};

/* Presets: "tiny" (CI-sized), "small", "medium", "gpt2ish" ... ; -SW_ENOENT if unknown. */
int sw_model_preset(const char *name, struct sw_model_config *c) __attribute__((warn_unused_result));
/* Comma-separated preset names, for --help. */
const char *sw_model_preset_names(void);

/* 0 or -SW_ECONFIG with a reason in why[] naming the field. */
int sw_model_config_check(const struct sw_model_config *c, char *why, size_t whylen)
    __attribute__((warn_unused_result));
static inline int sw_model_head_size(const struct sw_model_config *c) { return c->d_model / c->n_heads; }

/* Blocks [*l0, *l1) of stage s of S. */
void sw_model_partition(const struct sw_model_config *c, int S, int s, int *l0, int *l1);
/* 0, or -SW_ECONFIG when S is out of [1, L] or tied with S > 1. */
int sw_model_check_stages(const struct sw_model_config *c, int S, char *why, size_t whylen)
    __attribute__((warn_unused_result));

int sw_stage_layout_init(struct sw_stage_layout *lay, const struct sw_model_config *c, int S, int s)
    __attribute__((warn_unused_result));
void sw_stage_layout_release(struct sw_stage_layout *lay);
/* Tensor of the layout with this kind (and global layer for block tensors), or NULL. */
const struct sw_tensor_info *sw_stage_layout_find(const struct sw_stage_layout *lay,
                                                  enum sw_tensor_kind kind, int layer);
const struct sw_tensor_info *sw_stage_layout_find_name(const struct sw_stage_layout *lay,
                                                       const char *name);

/* Same tensors (names and shapes): the fields that size the parameters
 * agree; seq_len, rope_theta and rms_eps may differ. */
bool sw_model_same_tensors(const struct sw_model_config *a, const struct sw_model_config *b);
/* Parameter count of the whole model. */
size_t sw_model_numel(const struct sw_model_config *c);
/* Forward FLOPs per token of blocks [l0,l1) plus embed/head parts (2*params-ish + attention). */
double sw_model_flops_per_token(const struct sw_model_config *c, int T, int l0, int l1,
                                bool has_head);

/* Deterministic initialisation of a stage's parameters (host slab of
 * lay->numel floats) from the run seed: each tensor is drawn from its own
 * stream keyed by (seed, global name), so the same tensor gets the same
 * values whatever the stage count.  Norms = 1, linear/embedding ~ N(0, 0.02),
 * o_proj and down_proj scaled by 1/sqrt(2L) (GPT-2 style). */
void sw_model_init_params(float *slab, const struct sw_stage_layout *lay,
                          const struct sw_model_config *c, uint64_t seed);

#endif
