/*
 * model.c - shapes, stage partition, tensor names and initialisation.
 * See model.h for the conventions.
 */
#include "sw.h"

#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model.h"

struct preset {
    const char *name;
    struct sw_model_config c;
};

/* V, C, L, NH, NKV, F, T, theta, eps, tied */
static const struct preset presets[] = {
    {"tiny", {256, 64, 4, 4, 2, 176, 64, 10000.0f, 1e-5f, false}},
    {"small", {256, 128, 8, 4, 4, 344, 128, 10000.0f, 1e-5f, false}},
    {"medium", {256, 384, 8, 6, 2, 1024, 256, 10000.0f, 1e-5f, false}},
    {"bench768", {256, 768, 4, 12, 12, 2048, 256, 10000.0f, 1e-5f, false}},
    {"bench2048", {256, 2048, 4, 16, 16, 5504, 512, 10000.0f, 1e-5f, false}},
};

int
sw_model_preset(const char *name, struct sw_model_config *c)
{
    for (size_t i = 0; i < SW_ARRAY_SIZE(presets); i++) {
        if (strcmp(presets[i].name, name) == 0) {
            *c = presets[i].c;
            return 0;
        }
    }
    return -SW_ENOENT;
}

const char *
sw_model_preset_names(void)
{
    return "tiny, small, medium, bench768, bench2048";
}

int
sw_model_config_check(const struct sw_model_config *c, char *why, size_t whylen)
{
#define BAD(...)                                                               \
    do {                                                                       \
        snprintf(why, whylen, __VA_ARGS__);                                    \
        return -SW_ECONFIG;                                                    \
    } while (0)
    if (c->vocab_size < 2 || c->vocab_size > 1 << 20)
        BAD("vocab_size %d out of range [2, %d]", c->vocab_size, 1 << 20);
    if (c->d_model < 2 || c->d_model > 65536)
        BAD("d_model %d out of range [2, 65536]", c->d_model);
    if (c->n_layers < 1 || c->n_layers > 1024)
        BAD("n_layers %d out of range [1, 1024]", c->n_layers);
    if (c->n_heads < 1 || c->d_model % c->n_heads != 0)
        BAD("n_heads %d must be >= 1 and divide d_model %d", c->n_heads, c->d_model);
    if ((c->d_model / c->n_heads) % 2 != 0)
        BAD("head size %d (d_model / n_heads) must be even for RoPE", c->d_model / c->n_heads);
    if (c->n_kv_heads < 1 || c->n_heads % c->n_kv_heads != 0)
        BAD("n_kv_heads %d must be >= 1 and divide n_heads %d", c->n_kv_heads, c->n_heads);
    if (c->ffn_hidden < 1 || c->ffn_hidden > 1 << 20)
        BAD("ffn_hidden %d out of range [1, %d]", c->ffn_hidden, 1 << 20);
    if (c->seq_len < 1 || c->seq_len > 1 << 16)
        BAD("seq_len %d out of range [1, 65536]", c->seq_len);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        BAD("rope_theta %g must be positive", (double)c->rope_theta);
    if (!(c->rms_eps > 0) || !(c->rms_eps < 1))
        BAD("rms_eps %g must be in (0, 1)", (double)c->rms_eps);
    return 0;
#undef BAD
}

void
sw_model_partition(const struct sw_model_config *c, int S, int s, int *l0, int *l1)
{
    int base = c->n_layers / S, extra = c->n_layers % S;

    SW_ASSERT(S >= 1 && s >= 0 && s < S);
    *l0 = s * base + SW_MIN(s, extra);
    *l1 = *l0 + base + (s < extra ? 1 : 0);
}

int
sw_model_check_stages(const struct sw_model_config *c, int S, char *why, size_t whylen)
{
    if (S < 1 || S > c->n_layers) {
        snprintf(why, whylen, "stage count %d out of range [1, %d] (one block per stage at least)",
                 S, c->n_layers);
        return -SW_ECONFIG;
    }
    if (c->tied && S > 1) {
        snprintf(why, whylen, "tie_word_embeddings needs a single stage: the embedding (stage 0) "
                              "and the head (stage %d) would live apart", S - 1);
        return -SW_ECONFIG;
    }
    return 0;
}

static void
add_tensor(struct sw_stage_layout *lay, enum sw_tensor_kind kind, int layer, int64_t rows,
           int64_t cols)
{
    static const char *const block_names[] = {
        [SW_T_ATTN_NORM] = "input_layernorm",
        [SW_T_Q] = "self_attn.q_proj",
        [SW_T_K] = "self_attn.k_proj",
        [SW_T_V] = "self_attn.v_proj",
        [SW_T_O] = "self_attn.o_proj",
        [SW_T_MLP_NORM] = "post_attention_layernorm",
        [SW_T_GATE] = "mlp.gate_proj",
        [SW_T_UP] = "mlp.up_proj",
        [SW_T_DOWN] = "mlp.down_proj",
    };
    struct sw_tensor_info *t = &lay->tensors[lay->ntensors++];

    memset(t, 0, sizeof(*t));
    t->kind = kind;
    t->layer = layer;
    if (kind == SW_T_EMBED)
        snprintf(t->name, sizeof(t->name), "model.embed_tokens.weight");
    else if (kind == SW_T_NORM)
        snprintf(t->name, sizeof(t->name), "model.norm.weight");
    else if (kind == SW_T_HEAD)
        snprintf(t->name, sizeof(t->name), "lm_head.weight");
    else
        snprintf(t->name, sizeof(t->name), "model.layers.%d.%s.weight", layer, block_names[kind]);
    if (cols > 0) {
        t->ndim = 2;
        t->shape[0] = rows;
        t->shape[1] = cols;
        t->numel = (size_t)rows * (size_t)cols;
    } else {
        t->ndim = 1;
        t->shape[0] = rows;
        t->numel = (size_t)rows;
    }
    /* decay the matrices of the blocks and the head; not norms, not the embedding */
    t->decay = t->ndim == 2 && kind != SW_T_EMBED;
    t->offset = lay->numel;
    lay->numel += t->numel;
}

int
sw_stage_layout_init(struct sw_stage_layout *lay, const struct sw_model_config *c, int S, int s)
{
    int C = c->d_model, HS = sw_model_head_size(c), F = c->ffn_hidden, V = c->vocab_size;
    int cap;

    memset(lay, 0, sizeof(*lay));
    lay->S = S;
    lay->s = s;
    sw_model_partition(c, S, s, &lay->l0, &lay->l1);
    lay->has_embed = s == 0;
    lay->has_head = s == S - 1;
    cap = 3 + SW_BLOCK_NTENSORS * (lay->l1 - lay->l0);
    lay->tensors = sw_calloc((size_t)cap, sizeof(*lay->tensors));
    if (!lay->tensors)
        return -SW_ENOMEM;
    if (lay->has_embed)
        add_tensor(lay, SW_T_EMBED, -1, V, C);
    for (int l = lay->l0; l < lay->l1; l++) {
        add_tensor(lay, SW_T_ATTN_NORM, l, C, 0);
        add_tensor(lay, SW_T_Q, l, (int64_t)c->n_heads * HS, C);
        add_tensor(lay, SW_T_K, l, (int64_t)c->n_kv_heads * HS, C);
        add_tensor(lay, SW_T_V, l, (int64_t)c->n_kv_heads * HS, C);
        add_tensor(lay, SW_T_O, l, C, (int64_t)c->n_heads * HS);
        add_tensor(lay, SW_T_MLP_NORM, l, C, 0);
        add_tensor(lay, SW_T_GATE, l, F, C);
        add_tensor(lay, SW_T_UP, l, F, C);
        add_tensor(lay, SW_T_DOWN, l, C, F);
    }
    if (lay->has_head) {
        add_tensor(lay, SW_T_NORM, -1, C, 0);
        if (!c->tied)
            add_tensor(lay, SW_T_HEAD, -1, V, C);
    }
    SW_ASSERT(lay->ntensors <= cap);
    return 0;
}

void
sw_stage_layout_release(struct sw_stage_layout *lay)
{
    sw_free(lay->tensors);
    lay->tensors = NULL;
    lay->ntensors = 0;
}

const struct sw_tensor_info *
sw_stage_layout_find(const struct sw_stage_layout *lay, enum sw_tensor_kind kind, int layer)
{
    for (int i = 0; i < lay->ntensors; i++)
        if (lay->tensors[i].kind == kind && (layer < 0 || lay->tensors[i].layer == layer))
            return &lay->tensors[i];
    return NULL;
}

const struct sw_tensor_info *
sw_stage_layout_find_name(const struct sw_stage_layout *lay, const char *name)
{
    for (int i = 0; i < lay->ntensors; i++)
        if (strcmp(lay->tensors[i].name, name) == 0)
            return &lay->tensors[i];
    return NULL;
}

bool
sw_model_same_tensors(const struct sw_model_config *a, const struct sw_model_config *b)
{
    return a->vocab_size == b->vocab_size && a->d_model == b->d_model &&
           a->n_layers == b->n_layers && a->n_heads == b->n_heads &&
           a->n_kv_heads == b->n_kv_heads && a->ffn_hidden == b->ffn_hidden && a->tied == b->tied;
}

size_t
sw_model_numel(const struct sw_model_config *c)
{
    size_t C = (size_t)c->d_model, HS = (size_t)sw_model_head_size(c), F = (size_t)c->ffn_hidden;
    size_t block = 2 * C + (size_t)c->n_heads * HS * C * 2 + (size_t)c->n_kv_heads * HS * C * 2 +
                   3 * F * C;

    return (size_t)c->vocab_size * C * (c->tied ? 1 : 2) + C + (size_t)c->n_layers * block;
}

double
sw_model_flops_per_token(const struct sw_model_config *c, int T, int l0, int l1, bool has_head)
{
    double C = c->d_model, HS = sw_model_head_size(c), F = c->ffn_hidden;
    double qkv = (c->n_heads + 2.0 * c->n_kv_heads) * HS * C, o = c->n_heads * HS * C;
    double mlp = 3.0 * F * C;
    /* causal attention: QK^T and PV over on average (T+1)/2 keys */
    double attn = 2.0 * 2.0 * c->n_heads * HS * (T + 1) / 2.0;
    double block = 2.0 * (qkv + o + mlp) + attn;
    double f = block * (l1 - l0);

    if (has_head)
        f += 2.0 * C * c->vocab_size;
    return f;
}

/* ---- deterministic initialisation ---- */

/* in (0, 1): never 0, so that log() in Box-Muller stays finite */
static double
uniform01(uint64_t *s)
{
    return ((sw_splitmix64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static uint64_t
name_hash(const char *name, uint64_t seed)
{
    uint64_t h = 1469598103934665603ull ^ seed;
    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return h;
}

void
sw_model_init_params(float *slab, const struct sw_stage_layout *lay,
                     const struct sw_model_config *c, uint64_t seed)
{
    for (int i = 0; i < lay->ntensors; i++) {
        const struct sw_tensor_info *t = &lay->tensors[i];
        float *p = slab + t->offset;
        uint64_t s = name_hash(t->name, seed);
        double std = 0.02;

        if (t->ndim == 1) {
            for (size_t j = 0; j < t->numel; j++)
                p[j] = 1.0f;
            continue;
        }
        if (t->kind == SW_T_O || t->kind == SW_T_DOWN)
            std /= sqrt(2.0 * c->n_layers);
        for (size_t j = 0; j < t->numel; j += 2) {
            /* Box-Muller: two normals per pair of uniforms */
            double u1 = uniform01(&s), u2 = uniform01(&s);
            double r = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
            p[j] = (float)(std * r * cos(th));
            if (j + 1 < t->numel)
                p[j + 1] = (float)(std * r * sin(th));
        }
    }
}
