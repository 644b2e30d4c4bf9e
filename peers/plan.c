/*
 * plan.c - the plan of a step, microbatch dealing, stage choice, routes
 * (see plan.h).
 */
#include "sw.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "checkfree.h"
#include "plan.h"

int
sw_plan_init(struct sw_plan *p, int S, int M)
{
    size_t R = (size_t)S * SW_PLAN_MAX;

    memset(p, 0, sizeof(*p));
    p->S = S;
    p->M = M;
    p->cnt = sw_calloc((size_t)S, sizeof(int));
    p->pk = sw_calloc(R, 32);
    p->ep = sw_calloc(R, SW_PROTO_EP_MAX);
    p->w = sw_calloc(R, sizeof(double));
    p->assign = sw_calloc((size_t)S * (size_t)M, sizeof(int));
    if (!p->cnt || !p->pk || !p->ep || !p->w || !p->assign) {
        sw_plan_release(p);
        return -SW_ENOMEM;
    }
    return 0;
}

void
sw_plan_release(struct sw_plan *p)
{
    sw_free(p->cnt);
    sw_free(p->pk);
    sw_free(p->ep);
    sw_free(p->w);
    sw_free(p->assign);
    memset(p, 0, sizeof(*p));
}

void
sw_plan_copy(struct sw_plan *dst, const struct sw_plan *src)
{
    size_t R = (size_t)src->S * SW_PLAN_MAX;

    SW_ASSERT(dst->S == src->S && dst->M == src->M);
    memcpy(dst->cnt, src->cnt, (size_t)src->S * sizeof(int));
    memcpy(dst->pk, src->pk, R * 32);
    memcpy(dst->ep, src->ep, R * SW_PROTO_EP_MAX);
    memcpy(dst->w, src->w, R * sizeof(double));
    memcpy(dst->assign, src->assign, (size_t)src->S * (size_t)src->M * sizeof(int));
    dst->step = src->step;
    dst->ver = src->ver;
}

void
sw_plan_clear(struct sw_plan *p)
{
    memset(p->cnt, 0, (size_t)p->S * sizeof(int));
}

bool
sw_plan_add(struct sw_plan *p, int s, const uint8_t *pk, const char *ep, double w)
{
    int k, worst = -1;

    if (s < 0 || s >= p->S)
        return false;
    if (p->cnt[s] < SW_PLAN_MAX) {
        k = s * SW_PLAN_MAX + p->cnt[s]++;
    } else {
        /* full: the lowest keys stay (the leader takes them in key order) */
        for (int i = 0; i < SW_PLAN_MAX; i++)
            if (worst < 0 || memcmp(p->pk[s * SW_PLAN_MAX + i], p->pk[worst], 32) > 0)
                worst = s * SW_PLAN_MAX + i;
        if (memcmp(pk, p->pk[worst], 32) > 0)
            return false;
        k = worst;
    }
    memcpy(p->pk[k], pk, 32);
    snprintf(p->ep[k], SW_PROTO_EP_MAX, "%s", ep);
    p->w[k] = isfinite(w) && w > 0 ? w : 0.0;
    return true;
}

static void
deal(struct sw_plan *p, int s)
{
    sw_plan_assign(p->M, p->cnt[s], &p->w[s * SW_PLAN_MAX], &p->assign[s * p->M]);
}

bool
sw_plan_finish(struct sw_plan *p)
{
    bool ok = true;

    for (int s = 0; s < p->S; s++) {
        int base = s * SW_PLAN_MAX;
        /* insertion sort by key: at most SW_PLAN_MAX entries */
        for (int i = 1; i < p->cnt[s]; i++) {
            for (int j = i; j > 0 && memcmp(p->pk[base + j - 1], p->pk[base + j], 32) > 0; j--) {
                uint8_t tpk[32];
                char tep[SW_PROTO_EP_MAX];
                double tw = p->w[base + j];
                memcpy(tpk, p->pk[base + j], 32);
                memcpy(tep, p->ep[base + j], SW_PROTO_EP_MAX);
                memcpy(p->pk[base + j], p->pk[base + j - 1], 32);
                memcpy(p->ep[base + j], p->ep[base + j - 1], SW_PROTO_EP_MAX);
                p->w[base + j] = p->w[base + j - 1];
                memcpy(p->pk[base + j - 1], tpk, 32);
                memcpy(p->ep[base + j - 1], tep, SW_PROTO_EP_MAX);
                p->w[base + j - 1] = tw;
            }
        }
        if (p->cnt[s] == 0)
            ok = false;
        else
            deal(p, s);
    }
    return ok;
}

/* Is stage s's assignment the one the deal gives?  (GO then carries none.) */
static bool
dealt(const struct sw_plan *p, int s)
{
    int *want = sw_malloc((size_t)p->M * sizeof(int));
    bool same = true;

    if (!want)
        return false;
    sw_plan_assign(p->M, p->cnt[s], &p->w[s * SW_PLAN_MAX], want);
    for (int m = 0; m < p->M && same; m++)
        same = want[m] == p->assign[s * p->M + m];
    sw_free(want);
    return same;
}

void
sw_plan_pack(msgpack_packer *pk, const struct sw_plan *p)
{
    msgpack_pack_array(pk, (size_t)p->S);
    for (int s = 0; s < p->S; s++) {
        bool own = !dealt(p, s);
        msgpack_pack_array(pk, (size_t)p->cnt[s]);
        for (int i = 0; i < p->cnt[s]; i++) {
            int k = s * SW_PLAN_MAX + i, n = 0;
            msgpack_pack_map(pk, own ? 4 : 3);
            sw_proto_pack_key(pk, "pk");
            sw_proto_pack_bin(pk, p->pk[k], 32);
            sw_proto_pack_key(pk, "ep");
            sw_proto_pack_str(pk, p->ep[k]);
            sw_proto_pack_key(pk, "w");
            msgpack_pack_double(pk, p->w[k]);
            if (!own)
                continue;
            /* a replan that kept each microbatch on the node that had it */
            sw_proto_pack_key(pk, "mb");
            for (int m = 0; m < p->M; m++)
                n += p->assign[s * p->M + m] == i;
            msgpack_pack_array(pk, (size_t)n);
            for (int m = 0; m < p->M; m++)
                if (p->assign[s * p->M + m] == i)
                    msgpack_pack_uint32(pk, (uint32_t)m);
        }
    }
}

/* A stage's own assignment ("mb" of every node, or of none); -SW_EMSG when
 * some carry one and others not, or they do not serve each microbatch once. */
static int
parse_mb(struct sw_plan *p, int s, const msgpack_object *a)
{
    int *as = &p->assign[s * p->M], with = 0;

    for (uint32_t i = 0; i < a->via.array.size; i++)
        with += sw_proto_get(&a->via.array.ptr[i], "mb") != NULL;
    if (with == 0)
        return 0;
    if (with != (int)a->via.array.size)
        return -SW_EMSG;
    for (int m = 0; m < p->M; m++)
        as[m] = -1;
    for (uint32_t i = 0; i < a->via.array.size; i++) {
        const msgpack_object *mo = sw_proto_get(&a->via.array.ptr[i], "mb");
        if (mo->type != MSGPACK_OBJECT_ARRAY || mo->via.array.size > (uint32_t)p->M)
            return -SW_EMSG;
        for (uint32_t j = 0; j < mo->via.array.size; j++) {
            const msgpack_object *x = &mo->via.array.ptr[j];
            if (x->type != MSGPACK_OBJECT_POSITIVE_INTEGER || x->via.u64 >= (uint64_t)p->M ||
                as[x->via.u64] >= 0)
                return -SW_EMSG;
            as[x->via.u64] = (int)i;
        }
    }
    for (int m = 0; m < p->M; m++)
        if (as[m] < 0)
            return -SW_EMSG;
    return 0;
}

int
sw_plan_parse(struct sw_plan *p, const msgpack_object *o)
{
    static const char *const nk[] = {"pk", "ep", "w", "mb", NULL};

    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != (uint32_t)p->S)
        return -SW_EMSG;
    for (int s = 0; s < p->S; s++) {
        const msgpack_object *a = &o->via.array.ptr[s];
        if (a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size == 0 ||
            a->via.array.size > SW_PLAN_MAX)
            return -SW_EMSG;
        p->cnt[s] = (int)a->via.array.size;
        for (uint32_t i = 0; i < a->via.array.size; i++) {
            const msgpack_object *e = &a->via.array.ptr[i];
            int k = s * SW_PLAN_MAX + (int)i;
            const uint8_t *pk;
            size_t pl = 32;
            if (!sw_proto_only(e, nk) || sw_proto_get_bin(e, "pk", &pk, &pl) < 0 ||
                sw_proto_get_str(e, "ep", p->ep[k], SW_PROTO_EP_MAX) < 0 ||
                sw_proto_get_f64(e, "w", &p->w[k]) < 0)
                return -SW_EMSG;
            memcpy(p->pk[k], pk, 32);
        }
        deal(p, s);
        if (parse_mb(p, s, a) < 0)
            return -SW_EMSG;
    }
    return 0;
}

int
sw_plan_find(const struct sw_plan *p, int s, const uint8_t *pk)
{
    int s0 = s < 0 ? 0 : s, s1 = s < 0 ? p->S : s + 1;

    for (int j = s0; j < s1; j++)
        for (int i = 0; i < p->cnt[j]; i++)
            if (!memcmp(p->pk[j * SW_PLAN_MAX + i], pk, 32))
                return s < 0 ? j * SW_PLAN_MAX + i : i;
    return -1;
}

void
sw_plan_assign(int M, int n, const double *w, int *out)
{
    int load[SW_PLAN_MAX] = {0};
    bool equal = n > SW_PLAN_MAX, same = true;

    for (int i = 0; i < n && !equal; i++) {
        equal = !isfinite(w[i]) || w[i] <= 0; /* an unknown one: all alike */
        same &= w[i] == w[0];
    }
    equal |= same;
    for (int m = 0; m < M; m++) {
        int best = 0;

        if (equal || m < n) {
            out[m] = m % n;
            if (m < n && m < SW_PLAN_MAX)
                load[m]++;
            continue;
        }
        for (int i = 1; i < n; i++) /* (load_i + 1) / w_i < (load_best + 1) / w_best */
            if ((load[i] + 1) * w[best] < (load[best] + 1) * w[i])
                best = i;
        out[m] = best;
        load[best]++;
    }
}

int
sw_plan_choose_stage(int S, const int *nodes, const double *cap)
{
    int best = 0;

    for (int s = 0; s < S; s++)
        if (nodes[s] == 0)
            return s;
    for (int s = 1; s < S; s++) {
        if (cap[s] < cap[best] || (cap[s] == cap[best] && nodes[s] < nodes[best]))
            best = s;
    }
    return best;
}

double
sw_plan_balance(int S, const int *nodes, const double *cap, int *bottleneck)
{
    double sum = 0;
    int b = 0;

    for (int s = 0; s < S; s++) {
        if (nodes[s] == 0 || !(cap[s] > 0) || !isfinite(cap[s])) {
            if (bottleneck)
                *bottleneck = s;
            return 0;
        }
        sum += cap[s];
        if (cap[s] < cap[b])
            b = s;
    }
    if (bottleneck)
        *bottleneck = b;
    return S > 0 ? cap[b] / (sum / S) : 1;
}

int
sw_plan_rebalance(int S, const int *nodes, const double *cap, int from, double mine,
                  double threshold, double *balance)
{
    int b, donor = -1;
    double bal = sw_plan_balance(S, nodes, cap, &b), there;

    if (balance)
        *balance = bal;
    if (bal <= 0 || bal >= threshold || from < 0 || from >= S || from == b || !(mine > 0))
        return -1;
    for (int s = 0; s < S; s++) { /* the most left without one of its mean nodes */
        double left = cap[s] - cap[s] / nodes[s], best;
        if (nodes[s] < 2)
            continue;
        best = donor < 0 ? 0 : cap[donor] - cap[donor] / nodes[donor];
        if (donor < 0 || left > best || (left == best && nodes[s] > nodes[donor]))
            donor = s;
    }
    if (donor != from)
        return -1;
    /* there it adds the bottleneck's mean node, scaled by how fast it is
     * among the donor's nodes (stages differ in cost per token) */
    there = cap[b] / nodes[b] * (mine / (cap[from] / nodes[from]));
    if (cap[from] - mine < SW_PLAN_MOVE_GAIN * cap[b] ||
        cap[b] + there < SW_PLAN_MOVE_GAIN * cap[b])
        return -1;
    return b;
}

int
sw_plan_hop_stage(int S, bool swapped, int h, unsigned *parts)
{
    struct sw_hop hop = sw_checkfree_hop(S, swapped, h);

    if (parts)
        *parts = hop.parts;
    return hop.stage;
}

int
sw_plan_nvisits(int S, bool swapped, int j)
{
    return swapped && (j == 0 || j == S - 1) ? 2 : 1;
}

int
sw_plan_visit_hop(int S, bool swapped, int j, int k)
{
    if (!swapped)
        return j;
    if (j == 0)
        return k ? 2 : 0;
    if (j == S - 1)
        return k ? S + 1 : S - 1;
    if (j == S - 2)
        return S;
    return j == 1 ? 1 : j + 1;
}
