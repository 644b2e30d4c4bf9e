/*
 * checkfree.c - rebuild a lost stage from its neighbours (see checkfree.h).
 */
#include "sw.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "checkfree.h"

static const char *const rule_names[] = {"checkfree", "uniform", "copy-prev", "copy-next",
                                         "random"};

void
sw_checkfree_config_default(struct sw_checkfree_config *cc)
{
    cc->lr_bump = 1.1f;
    cc->clipped_norm = false;
}

float
sw_checkfree_weight(const struct sw_optim *o, bool clipped)
{
    return clipped ? o->last_norm_clipped : o->last_norm;
}

/* tensor of local block j, kind k, of st */
static const struct sw_tensor_info *
block_tensor(const struct sw_stage *st, int j, enum sw_tensor_kind kind)
{
    int idx = (st->lay.has_embed ? 1 : 0) + j * SW_BLOCK_NTENSORS + (kind - SW_T_ATTN_NORM);

    SW_ASSERT(j >= 0 && j < st->nb && idx < st->lay.ntensors);
    SW_ASSERT(st->lay.tensors[idx].kind == kind);
    return &st->lay.tensors[idx];
}

int
sw_checkfree_check(const struct sw_stage *dst, const struct sw_stage *a, const struct sw_stage *b,
                   char *why, size_t whylen)
{
    const struct sw_stage *nb[2] = {a, b};

    for (int i = 0; i < 2; i++) {
        if (!nb[i])
            continue;
        if (nb[i]->nb != dst->nb) {
            snprintf(why, whylen,
                     "stage %d owns %d block(s) but its neighbour stage %d owns %d: CheckFree "
                     "maps blocks one to one and needs equal block counts (pick a stage count "
                     "that divides the layers)",
                     dst->lay.s, dst->nb, nb[i]->lay.s, nb[i]->nb);
            return -SW_ESHAPE;
        }
        if (nb[i]->cfg.d_model != dst->cfg.d_model || nb[i]->cfg.ffn_hidden != dst->cfg.ffn_hidden ||
            nb[i]->cfg.n_heads != dst->cfg.n_heads || nb[i]->cfg.n_kv_heads != dst->cfg.n_kv_heads) {
            snprintf(why, whylen, "stage %d and stage %d have different model shapes", dst->lay.s,
                     nb[i]->lay.s);
            return -SW_ESHAPE;
        }
    }
    return 0;
}

static int
check_logged(const struct sw_stage *dst, const struct sw_stage *a, const struct sw_stage *b)
{
    char why[320];
    int err = sw_checkfree_check(dst, a, b, why, sizeof(why));

    if (err < 0)
        sw_log(SW_LOG_ERROR, "cannot rebuild stage %d: %s", dst->lay.s, why);
    return err;
}

int
sw_checkfree_average_blocks(struct sw_stage *dst, const struct sw_stage *a, float wa,
                            const struct sw_stage *b, float wb)
{
    int err;

    if ((err = check_logged(dst, a, b)) < 0)
        return err;
    if (!(isfinite(wa) && isfinite(wb) && wa >= 0 && wb >= 0 && wa + wb > 0)) {
        sw_log(SW_LOG_WARN, "stage %d: neighbour weights %g and %g unusable, averaging uniformly",
               dst->lay.s, (double)wa, (double)wb);
        wa = wb = 1.0f;
    }
    for (int j = 0; j < dst->nb; j++) {
        for (int kind = SW_T_ATTN_NORM; kind <= SW_T_DOWN; kind++) {
            const struct sw_tensor_info *td = block_tensor(dst, j, kind);
            const struct sw_tensor_info *ta = block_tensor(a, j, kind);
            const struct sw_tensor_info *tb = block_tensor(b, j, kind);

            SW_ASSERT(ta->numel == td->numel && tb->numel == td->numel);
            dst->k->weighted_average(dst->params + td->offset, a->params + ta->offset, wa,
                                     b->params + tb->offset, wb, td->numel);
        }
    }
    return dst->k->sync();
}

int
sw_checkfree_copy_blocks(struct sw_stage *dst, const struct sw_stage *src)
{
    int err;

    if ((err = check_logged(dst, src, NULL)) < 0)
        return err;
    for (int j = 0; j < dst->nb; j++) {
        for (int kind = SW_T_ATTN_NORM; kind <= SW_T_DOWN; kind++) {
            const struct sw_tensor_info *td = block_tensor(dst, j, kind);
            const struct sw_tensor_info *ts = block_tensor(src, j, kind);

            err = dst->k->copy_d2d(dst->params + td->offset, src->params + ts->offset,
                                   td->numel * sizeof(float));
            if (err < 0)
                return err;
        }
    }
    return dst->k->sync();
}

int
sw_checkfree_reset_optim(struct sw_optim *o, float lr_bump)
{
    int err = sw_optim_reset(o);

    if (err < 0)
        return err;
    o->lr_mult = lr_bump;
    o->last_norm = 0.0f;
    o->last_norm_clipped = 0.0f;
    return 0;
}

int
sw_checkfree_rebuild(struct sw_stage *dst, struct sw_optim *dst_opt, enum sw_checkfree_rule rule,
                     const struct sw_stage *prev, const struct sw_optim *prev_opt,
                     const struct sw_stage *next, const struct sw_optim *next_opt,
                     const struct sw_checkfree_config *cc, uint64_t seed)
{
    const char *name = rule_names[rule];
    bool need_prev = rule == SW_CF_CHECKFREE || rule == SW_CF_UNIFORM || rule == SW_CF_COPY_PREV;
    bool need_next = rule == SW_CF_CHECKFREE || rule == SW_CF_UNIFORM || rule == SW_CF_COPY_NEXT;
    int err;

    SW_ASSERT(rule >= SW_CF_CHECKFREE && rule <= SW_CF_RANDOM);
    if (rule != SW_CF_RANDOM && (dst->lay.has_embed || dst->lay.has_head)) {
        sw_log(SW_LOG_ERROR,
               "cannot rebuild stage %d with '%s': it owns the %s, which no neighbour holds",
               dst->lay.s, name, dst->lay.has_embed ? "embedding" : "final norm and LM head");
        return -SW_ELOST;
    }
    if ((need_prev && (!prev || !prev_opt)) || (need_next && (!next || !next_opt))) {
        sw_log(SW_LOG_ERROR, "cannot rebuild stage %d with '%s': a neighbour is missing",
               dst->lay.s, name);
        return -SW_ELOST;
    }
    switch (rule) {
    case SW_CF_CHECKFREE:
        err = sw_checkfree_average_blocks(dst, prev, sw_checkfree_weight(prev_opt, cc->clipped_norm),
                                          next, sw_checkfree_weight(next_opt, cc->clipped_norm));
        break;
    case SW_CF_UNIFORM:
        err = sw_checkfree_average_blocks(dst, prev, 1.0f, next, 1.0f);
        break;
    case SW_CF_COPY_PREV:
        err = sw_checkfree_copy_blocks(dst, prev);
        break;
    case SW_CF_COPY_NEXT:
        err = sw_checkfree_copy_blocks(dst, next);
        break;
    default:
        err = sw_stage_init_params(dst, seed); /* every tensor, as model.h draws them */
        break;
    }
    if (err < 0)
        return err;
    return sw_checkfree_reset_optim(dst_opt, cc->lr_bump);
}

/* ---- CheckFree+ replicas ---- */

int
sw_checkfree_replica_tensors(const struct sw_stage_layout *lay,
                             enum sw_checkfree_replica_kind kind, const struct sw_tensor_info **t)
{
    int n = kind == SW_CF_REPLICA_EMBED ? 1 : 2;

    if (kind == SW_CF_REPLICA_EMBED) {
        t[0] = sw_stage_layout_find(lay, SW_T_EMBED, -1);
    } else {
        t[0] = sw_stage_layout_find(lay, SW_T_NORM, -1);
        t[1] = sw_stage_layout_find(lay, SW_T_HEAD, -1);
    }
    for (int i = 0; i < n; i++)
        if (!t[i])
            return -SW_EINVAL;
    return n;
}

int
sw_checkfree_replica_init(struct sw_checkfree_replica *r, const struct sw_stage *owner,
                          enum sw_checkfree_replica_kind kind)
{
    const struct sw_tensor_info *src[2] = {NULL, NULL};

    memset(r, 0, sizeof(*r));
    if ((r->ntensors = sw_checkfree_replica_tensors(&owner->lay, kind, src)) < 0) {
        sw_log(SW_LOG_ERROR, "stage %d has no %s to replicate", owner->lay.s,
               kind == SW_CF_REPLICA_EMBED ? "embedding" : "untied final norm and LM head");
        r->ntensors = 0;
        return -SW_EINVAL;
    }
    r->k = owner->k;
    r->kind = kind;
    for (int i = 0; i < r->ntensors; i++) {
        r->t[i] = *src[i];
        r->t[i].offset = r->numel;
        r->numel += src[i]->numel;
    }
    if (!(r->data = r->k->alloc(r->numel * sizeof(float)))) {
        memset(r, 0, sizeof(*r));
        return -SW_ENOMEM;
    }
    return sw_checkfree_replica_refresh(r, owner);
}

void
sw_checkfree_replica_release(struct sw_checkfree_replica *r)
{
    if (r->k)
        r->k->free(r->data);
    memset(r, 0, sizeof(*r));
}

/* the owner's (or dst's) tensor of replica tensor i, or NULL */
static const struct sw_tensor_info *
peer_tensor(const struct sw_checkfree_replica *r, const struct sw_stage *st, int i)
{
    const struct sw_tensor_info *t = sw_stage_layout_find(&st->lay, r->t[i].kind, -1);

    if (!t || t->numel != r->t[i].numel) {
        sw_log(SW_LOG_ERROR, "stage %d has no tensor '%s' of %zu values", st->lay.s, r->t[i].name,
               r->t[i].numel);
        return NULL;
    }
    return t;
}

int
sw_checkfree_replica_refresh(struct sw_checkfree_replica *r, const struct sw_stage *owner)
{
    int err;

    for (int i = 0; i < r->ntensors; i++) {
        const struct sw_tensor_info *t = peer_tensor(r, owner, i);
        if (!t)
            return -SW_ESHAPE;
        err = r->k->copy_d2d(r->data + r->t[i].offset, owner->params + t->offset,
                             t->numel * sizeof(float));
        if (err < 0)
            return err;
    }
    return r->k->sync();
}

int
sw_checkfree_replica_restore(const struct sw_checkfree_replica *r, struct sw_stage *dst)
{
    int err;

    for (int i = 0; i < r->ntensors; i++) {
        const struct sw_tensor_info *t = peer_tensor(r, dst, i);
        if (!t)
            return -SW_ESHAPE;
        err = r->k->copy_d2d(dst->params + t->offset, r->data + r->t[i].offset,
                             t->numel * sizeof(float));
        if (err < 0)
            return err;
    }
    return r->k->sync();
}

bool
sw_checkfree_replica_equal(const struct sw_checkfree_replica *r, const struct sw_stage *owner)
{
    bool same = true;

    for (int i = 0; same && i < r->ntensors; i++) {
        const struct sw_tensor_info *t = peer_tensor(r, owner, i);
        float *a = sw_malloc(r->t[i].numel * sizeof(float));
        float *b = sw_malloc(r->t[i].numel * sizeof(float));

        same = t && a && b &&
               r->k->copy_d2h(a, r->data + r->t[i].offset, t->numel * sizeof(float)) == 0 &&
               r->k->copy_d2h(b, owner->params + t->offset, t->numel * sizeof(float)) == 0 &&
               r->k->sync() == 0 && memcmp(a, b, t->numel * sizeof(float)) == 0;
        sw_free(a);
        sw_free(b);
    }
    return same;
}

struct sw_hop
sw_checkfree_hop(int S, bool swapped, int h)
{
    if (!swapped)
        return (struct sw_hop){h, 0, SW_PART_ALL};
    if (h == 0)
        return (struct sw_hop){0, 0, SW_PART_EMBED};
    if (h == 1)
        return (struct sw_hop){1, 0, SW_PART_ALL};
    if (h == 2)
        return (struct sw_hop){0, 1, SW_PART_BLOCKS};
    if (h < S - 1)
        return (struct sw_hop){h - 1, 0, SW_PART_ALL}; /* stages 2..S-3 at hops 3..S-2 */
    if (h == S - 1)
        return (struct sw_hop){S - 1, 0, SW_PART_BLOCKS};
    if (h == S)
        return (struct sw_hop){S - 2, 0, SW_PART_ALL};
    return (struct sw_hop){S - 1, 1, SW_PART_HEAD};
}
