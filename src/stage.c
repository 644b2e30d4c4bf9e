/*
 * stage.c - forward and backward of one pipeline stage (see stage.h).
 *
 * A block, in Hugging Face's order (x = the residual stream):
 *   ln1 = rmsnorm(x; input_layernorm)
 *   qkv = ln1 @ [q;k;v]^T, RoPE on q and k
 *   atty = causal_attention(qkv)
 *   xmid = x + atty @ o^T
 *   ln2 = rmsnorm(xmid; post_attention_layernorm)
 *   gu = ln2 @ [gate;up]^T,  sw = silu(gate) * up
 *   x' = xmid + sw @ down^T
 * The backward walks it in reverse with one buffer, dresid, holding the
 * gradient of the residual stream: the residual additions are free because
 * rmsnorm_backward accumulates into it (kernels.h).
 */
#include "sw.h"

#include <string.h>

#include "stage.h"

#define K (st->k)

static size_t
qkv_width(const struct sw_model_config *c)
{
    return (size_t)(c->n_heads + 2 * c->n_kv_heads) * (size_t)sw_model_head_size(c);
}

/* Carve `n` floats from a bump pointer. */
static float *
carve(float **p, size_t n)
{
    float *r = *p;
    *p += (n + 15) & ~(size_t)15; /* keep 64-byte alignment */
    return r;
}

static size_t
round16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

static size_t
slot_floats(const struct sw_stage *st)
{
    const struct sw_model_config *c = &st->cfg;
    size_t N = (size_t)st->N, C = (size_t)c->d_model, F = (size_t)c->ffn_hidden;
    size_t att = (size_t)st->B * c->n_heads * st->T * st->T;
    size_t AH = (size_t)c->n_heads * sw_model_head_size(c);
    size_t block = 3 * round16(N * C) + 2 * round16(N) + round16(N * qkv_width(c)) + round16(att) +
                   round16(N * AH) + round16(N * 2 * F) + round16(N * F);
    size_t n = (size_t)(st->nb + 1) * round16(N * C) + (size_t)st->nb * block;

    n += 2 * round16(N); /* tokens, targets (int32, same size as float) */
    if (st->lay.has_head)
        n += round16(N * C) + 2 * round16(N) + 2 * round16(N * (size_t)c->vocab_size);
    return n;
}

static int
slot_init(struct sw_stage *st, struct sw_stage_slot *sl)
{
    const struct sw_model_config *c = &st->cfg;
    size_t N = (size_t)st->N, C = (size_t)c->d_model, F = (size_t)c->ffn_hidden;
    size_t att = (size_t)st->B * c->n_heads * st->T * st->T;
    size_t AH = (size_t)c->n_heads * sw_model_head_size(c);
    size_t total = slot_floats(st);
    float *p;

    sl->resid = sw_calloc((size_t)st->nb + 1, sizeof(*sl->resid));
    sl->blocks = sw_calloc((size_t)SW_MAX(st->nb, 1), sizeof(*sl->blocks));
    sl->slab = K->alloc(total * sizeof(float));
    if (!sl->resid || !sl->blocks || !sl->slab)
        return -SW_ENOMEM;
    st->act_bytes += total * sizeof(float);
    p = sl->slab;
    sl->tokens = (int32_t *)carve(&p, N);
    sl->targets = (int32_t *)carve(&p, N);
    for (int j = 0; j <= st->nb; j++)
        sl->resid[j] = carve(&p, N * C);
    for (int j = 0; j < st->nb; j++) {
        struct sw_block_acts *a = &sl->blocks[j];
        a->ln1 = carve(&p, N * C);
        a->rstd1 = carve(&p, N);
        a->qkv = carve(&p, N * qkv_width(c));
        a->att = carve(&p, att);
        a->atty = carve(&p, N * AH);
        a->xmid = carve(&p, N * C);
        a->ln2 = carve(&p, N * C);
        a->rstd2 = carve(&p, N);
        a->gu = carve(&p, N * 2 * F);
        a->sw = carve(&p, N * F);
    }
    if (st->lay.has_head) {
        sl->lnf = carve(&p, N * C);
        sl->rstdf = carve(&p, N);
        sl->losses = carve(&p, N);
        sl->logits = carve(&p, N * (size_t)c->vocab_size);
        sl->probs = carve(&p, N * (size_t)c->vocab_size);
    }
    SW_ASSERT((size_t)(p - sl->slab) <= total);
    return 0;
}

int
sw_stage_init(struct sw_stage *st, const struct sw_kernels *k, const struct sw_model_config *c,
              int S, int s, int B, int T, int n_slots, uint64_t seed)
{
    size_t N, C, F, V, att, AH, nscratch;
    float *host = NULL, *p;
    int HS, err;

    memset(st, 0, sizeof(*st));
    st->k = k;
    st->cfg = *c;
    SW_ASSERT(B >= 1 && T >= 1 && T <= c->seq_len && n_slots >= 1);
    err = sw_stage_layout_init(&st->lay, c, S, s);
    if (err < 0)
        return err;
    st->B = B;
    st->T = T;
    st->N = B * T;
    st->nb = st->lay.l1 - st->lay.l0;
    st->n_slots = n_slots;
    N = (size_t)st->N;
    C = (size_t)c->d_model;
    F = (size_t)c->ffn_hidden;
    V = (size_t)c->vocab_size;
    HS = sw_model_head_size(c);
    AH = (size_t)c->n_heads * HS;
    att = (size_t)B * c->n_heads * T * T;

    err = -SW_ENOMEM;
    st->params = K->alloc(st->lay.numel * sizeof(float));
    st->grads = K->alloc(st->lay.numel * sizeof(float));
    st->rope_cos = K->alloc((size_t)T * HS / 2 * sizeof(float));
    st->rope_sin = K->alloc((size_t)T * HS / 2 * sizeof(float));
    st->slots = sw_calloc((size_t)n_slots, sizeof(*st->slots));
    if (!st->params || !st->grads || !st->rope_cos || !st->rope_sin || !st->slots)
        goto out_release;
    for (int i = 0; i < n_slots; i++)
        if ((err = slot_init(st, &st->slots[i])) < 0)
            goto out_release;

    nscratch = round16(N * C) * 2 + round16(N * qkv_width(c)) + round16(att) + round16(N * AH) +
               round16(N * 2 * F) + round16(N * F) + (st->lay.has_head ? round16(N * V) : 0);
    err = -SW_ENOMEM;
    st->scratch = K->alloc(nscratch * sizeof(float));
    st->host_losses = sw_malloc(N * sizeof(float));
    if (!st->scratch || !st->host_losses)
        goto out_release;
    st->act_bytes += nscratch * sizeof(float);
    p = st->scratch;
    st->dresid = carve(&p, N * C);
    st->dln = carve(&p, N * C);
    st->dqkv = carve(&p, N * qkv_width(c));
    st->datt = carve(&p, att);
    st->datty = carve(&p, N * AH);
    st->dgu = carve(&p, N * 2 * F);
    st->dsw = carve(&p, N * F);
    if (st->lay.has_head)
        st->dlogits = carve(&p, N * V);

    /* parameters and RoPE tables, computed on the host and uploaded */
    host = sw_malloc(SW_MAX(st->lay.numel, (size_t)T * HS) * sizeof(float));
    if (!host)
        goto out_release;
    if (seed == SW_STAGE_NO_INIT)
        memset(host, 0, st->lay.numel * sizeof(float));
    else
        sw_model_init_params(host, &st->lay, c, seed);
    if ((err = K->copy_h2d(st->params, host, st->lay.numel * sizeof(float))) < 0)
        goto out_release;
    sw_rope_tables(host, host + (size_t)T * HS / 2, T, HS, c->rope_theta);
    if ((err = K->copy_h2d(st->rope_cos, host, (size_t)T * HS / 2 * sizeof(float))) < 0 ||
        (err = K->copy_h2d(st->rope_sin, host + (size_t)T * HS / 2,
                           (size_t)T * HS / 2 * sizeof(float))) < 0)
        goto out_release;
    sw_free(host);
    return K->sync();

out_release:
    sw_free(host);
    sw_stage_release(st);
    return err;
}

void
sw_stage_release(struct sw_stage *st)
{
    if (!st->k)
        return;
    if (st->view) {
        sw_stage_layout_release(&st->lay);
        memset(st, 0, sizeof(*st));
        return;
    }
    if (st->slots) {
        for (int i = 0; i < st->n_slots; i++) {
            K->free(st->slots[i].slab);
            sw_free(st->slots[i].resid);
            sw_free(st->slots[i].blocks);
        }
        sw_free(st->slots);
    }
    K->free(st->params);
    K->free(st->grads);
    K->free(st->rope_cos);
    K->free(st->rope_sin);
    K->free(st->scratch);
    sw_free(st->host_losses);
    sw_stage_layout_release(&st->lay);
    memset(st, 0, sizeof(*st));
}

int
sw_stage_init_params(struct sw_stage *st, uint64_t seed)
{
    float *host = sw_malloc(st->lay.numel * sizeof(float));
    int err;

    if (!host)
        return -SW_ENOMEM;
    sw_model_init_params(host, &st->lay, &st->cfg, seed);
    err = sw_stage_set_params(st, host);
    sw_free(host);
    return err;
}

int
sw_stage_view_init(struct sw_stage *st, const struct sw_kernels *k,
                   const struct sw_model_config *c, int S, int s, float *params)
{
    int err;

    memset(st, 0, sizeof(*st));
    if ((err = sw_stage_layout_init(&st->lay, c, S, s)) < 0)
        return err;
    st->k = k;
    st->cfg = *c;
    st->nb = st->lay.l1 - st->lay.l0;
    st->params = params;
    st->view = true;
    return 0;
}

int
sw_stage_zero_grad(struct sw_stage *st)
{
    return K->memset0(st->grads, st->lay.numel * sizeof(float));
}

/* parameter pointer of block tensor `kind` of local block j */
static float *
bparam(const struct sw_stage *st, float *slab, int j, enum sw_tensor_kind kind)
{
    /* tensors of block j start after the embedding (if any) */
    int idx = (st->lay.has_embed ? 1 : 0) + j * SW_BLOCK_NTENSORS + (kind - SW_T_ATTN_NORM);
    return slab + st->lay.tensors[idx].offset;
}

static float *
embed_param(const struct sw_stage *st, float *slab)
{
    return slab + st->lay.tensors[0].offset;
}

static float *
norm_param(const struct sw_stage *st, float *slab)
{
    return slab + sw_stage_layout_find(&st->lay, SW_T_NORM, -1)->offset;
}

/* the head matrix: lm_head, or the embedding when tied */
static float *
head_param(const struct sw_stage *st, float *slab)
{
    const struct sw_tensor_info *t = sw_stage_layout_find(&st->lay, SW_T_HEAD, -1);
    return t ? slab + t->offset : embed_param(st, slab);
}

static int
check_tokens(const int32_t *tok, int n, int V, const char *what)
{
    for (int i = 0; i < n; i++) {
        if (tok[i] < 0 || tok[i] >= V) {
            sw_log(SW_LOG_ERROR, "%s[%d] = %d out of the vocabulary [0, %d)", what, i, tok[i], V);
            return -SW_ERANGE;
        }
    }
    return 0;
}

static void
block_forward(struct sw_stage *st, struct sw_stage_slot *sl, int j)
{
    const struct sw_model_config *c = &st->cfg;
    struct sw_block_acts *a = &sl->blocks[j];
    int N = st->N, C = c->d_model, F = c->ffn_hidden, HS = sw_model_head_size(c);
    int NH = c->n_heads, NKV = c->n_kv_heads, QKV = (int)qkv_width(c);
    float *x = sl->resid[j], *xout = sl->resid[j + 1], *P = st->params;

    K->rmsnorm_forward(a->ln1, a->rstd1, x, bparam(st, P, j, SW_T_ATTN_NORM), N, C, c->rms_eps);
    K->matmul_forward(a->qkv, a->ln1, bparam(st, P, j, SW_T_Q), N, C, QKV);
    K->rope_forward(a->qkv, st->rope_cos, st->rope_sin, st->B, st->T, NH, NKV, HS);
    K->attention_forward(a->atty, a->att, a->qkv, st->B, st->T, NH, NKV, HS);
    K->matmul_forward(a->xmid, a->atty, bparam(st, P, j, SW_T_O), N, NH * HS, C);
    K->residual_forward(a->xmid, a->xmid, x, (size_t)N * C);
    K->rmsnorm_forward(a->ln2, a->rstd2, a->xmid, bparam(st, P, j, SW_T_MLP_NORM), N, C,
                       c->rms_eps);
    K->matmul_forward(a->gu, a->ln2, bparam(st, P, j, SW_T_GATE), N, C, 2 * F);
    K->swiglu_forward(a->sw, a->gu, N, F);
    K->matmul_forward(xout, a->sw, bparam(st, P, j, SW_T_DOWN), N, F, C);
    K->residual_forward(xout, xout, a->xmid, (size_t)N * C);
}

static void
block_backward(struct sw_stage *st, struct sw_stage_slot *sl, int j)
{
    const struct sw_model_config *c = &st->cfg;
    struct sw_block_acts *a = &sl->blocks[j];
    int N = st->N, C = c->d_model, F = c->ffn_hidden, HS = sw_model_head_size(c);
    int NH = c->n_heads, NKV = c->n_kv_heads, QKV = (int)qkv_width(c);
    float *x = sl->resid[j], *P = st->params, *G = st->grads;

    /* MLP branch: dresid holds d(x') */
    K->matmul_backward(st->dsw, bparam(st, G, j, SW_T_DOWN), st->dresid, a->sw,
                       bparam(st, P, j, SW_T_DOWN), N, F, C);
    K->swiglu_backward(st->dgu, st->dsw, a->gu, N, F);
    K->matmul_backward(st->dln, bparam(st, G, j, SW_T_GATE), st->dgu, a->ln2,
                       bparam(st, P, j, SW_T_GATE), N, C, 2 * F);
    K->rmsnorm_backward(st->dresid, bparam(st, G, j, SW_T_MLP_NORM), st->dln, a->xmid,
                        bparam(st, P, j, SW_T_MLP_NORM), a->rstd2, N, C);
    /* attention branch: dresid now holds d(xmid) */
    K->matmul_backward(st->datty, bparam(st, G, j, SW_T_O), st->dresid, a->atty,
                       bparam(st, P, j, SW_T_O), N, NH * HS, C);
    K->attention_backward(st->dqkv, st->datt, st->datty, a->qkv, a->att, st->B, st->T, NH, NKV,
                          HS);
    K->rope_backward(st->dqkv, st->rope_cos, st->rope_sin, st->B, st->T, NH, NKV, HS);
    K->matmul_backward(st->dln, bparam(st, G, j, SW_T_Q), st->dqkv, a->ln1,
                       bparam(st, P, j, SW_T_Q), N, C, QKV);
    K->rmsnorm_backward(st->dresid, bparam(st, G, j, SW_T_ATTN_NORM), st->dln, x,
                        bparam(st, P, j, SW_T_ATTN_NORM), a->rstd1, N, C);
}

int
sw_stage_forward(struct sw_stage *st, int slot, unsigned parts, const int32_t *tokens,
                 const float *x_in, const int32_t *targets, float *x_out, float *loss)
{
    const struct sw_model_config *c = &st->cfg;
    struct sw_stage_slot *sl;
    size_t N = (size_t)st->N, C = (size_t)c->d_model;
    bool embed = st->lay.has_embed && (parts & SW_PART_EMBED);
    bool head = st->lay.has_head && (parts & SW_PART_HEAD);
    bool blocks = parts & SW_PART_BLOCKS;
    float *x;
    int err;

    SW_ASSERT(slot >= 0 && slot < st->n_slots);
    sl = &st->slots[slot];
    sl->parts = parts;
    if (embed) {
        if ((err = check_tokens(tokens, st->N, c->vocab_size, "token")) < 0)
            return err;
        if ((err = K->copy_h2d(sl->tokens, tokens, N * sizeof(int32_t))) < 0)
            return err;
        K->embedding_forward(sl->resid[0], sl->tokens, embed_param(st, st->params), st->N,
                             (int)C);
    } else if ((err = K->copy_h2d(sl->resid[0], x_in, N * C * sizeof(float))) < 0) {
        return err;
    }
    if (blocks)
        for (int j = 0; j < st->nb; j++)
            block_forward(st, sl, j);
    x = sl->resid[blocks ? st->nb : 0];
    if (head) {
        double sum = 0;

        if ((err = check_tokens(targets, st->N, c->vocab_size, "target")) < 0)
            return err;
        if ((err = K->copy_h2d(sl->targets, targets, N * sizeof(int32_t))) < 0)
            return err;
        K->rmsnorm_forward(sl->lnf, sl->rstdf, x, norm_param(st, st->params), st->N, (int)C,
                           c->rms_eps);
        K->matmul_forward(sl->logits, sl->lnf, head_param(st, st->params), st->N, (int)C,
                          c->vocab_size);
        K->crossentropy_forward(sl->losses, sl->probs, sl->logits, sl->targets, st->N,
                                c->vocab_size);
        if ((err = K->copy_d2h(st->host_losses, sl->losses, N * sizeof(float))) < 0)
            return err;
        for (size_t i = 0; i < N; i++)
            sum += st->host_losses[i];
        *loss = (float)(sum / (double)N);
    } else if ((err = K->copy_d2h(x_out, x, N * C * sizeof(float))) < 0) {
        return err;
    }
    return K->last_error();
}

int
sw_stage_backward(struct sw_stage *st, int slot, const float *dx_out, float *dx_in,
                  float loss_scale)
{
    const struct sw_model_config *c = &st->cfg;
    struct sw_stage_slot *sl;
    size_t N = (size_t)st->N, C = (size_t)c->d_model;
    bool embed, head, blocks;
    float *x;
    int err;

    SW_ASSERT(slot >= 0 && slot < st->n_slots);
    sl = &st->slots[slot];
    embed = st->lay.has_embed && (sl->parts & SW_PART_EMBED);
    head = st->lay.has_head && (sl->parts & SW_PART_HEAD);
    blocks = sl->parts & SW_PART_BLOCKS;
    x = sl->resid[blocks ? st->nb : 0];
    if (head) {
        K->crossentropy_backward(st->dlogits, sl->probs, sl->targets, loss_scale / (float)N,
                                 st->N, c->vocab_size);
        K->matmul_backward(st->dln, head_param(st, st->grads), st->dlogits, sl->lnf,
                           head_param(st, st->params), st->N, (int)C, c->vocab_size);
        if ((err = K->memset0(st->dresid, N * C * sizeof(float))) < 0)
            return err;
        K->rmsnorm_backward(st->dresid, norm_param(st, st->grads), st->dln, x,
                            norm_param(st, st->params), sl->rstdf, st->N, (int)C);
    } else if ((err = K->copy_h2d(st->dresid, dx_out, N * C * sizeof(float))) < 0) {
        return err;
    }
    if (blocks)
        for (int j = st->nb - 1; j >= 0; j--)
            block_backward(st, sl, j);
    if (embed)
        K->embedding_backward(embed_param(st, st->grads), st->dresid, sl->tokens, st->N, (int)C);
    else if ((err = K->copy_d2h(dx_in, st->dresid, N * C * sizeof(float))) < 0)
        return err;
    return K->last_error();
}

int
sw_stage_get_params(const struct sw_stage *st, float *host)
{
    int err = K->copy_d2h(host, st->params, st->lay.numel * sizeof(float));
    return err < 0 ? err : K->sync();
}

int
sw_stage_set_params(struct sw_stage *st, const float *host)
{
    int err = K->copy_h2d(st->params, host, st->lay.numel * sizeof(float));
    return err < 0 ? err : K->sync();
}
