/*
 * plan.h - the plan of a step and the routes through it (pure functions:
 * no I/O, no clock), so that tests and the swarm simulator check them
 * without processes.
 *
 * A plan is what the leader's GO carries (swarm-protocol(7), GO): per stage
 * the nodes that serve it in the step, in public-key order, each with its
 * endpoint and the capacity (tokens/s of compute time) it advertised.  Every
 * node derives the same assignment of the M microbatches to the nodes of
 * each stage from it (sw_plan_assign), so every node knows before the step
 * starts who sends it what, and who it sends to.  A replan of the running
 * step carries a higher version ("ver").
 *
 * Routes.  A microbatch visits the stages hop by hop: hops 0..S-1 are stages
 * 0..S-1 whole.  Under CheckFree+ every odd microbatch (counted across
 * steps, step * M + m, as swarmsim counts them) takes the swapped route of
 * S + 2 hops (src/checkfree.h, sw_checkfree_hop): stages 0 and S-1 see such
 * a microbatch twice, and visit k (0, 1) of microbatch m is u = m + k * M,
 * its activation slot and its place in the per-visit arrays.
 *
 * Stage choice (--stage auto): sw_plan_choose_stage.
 */
#ifndef SW_PLAN_H
#define SW_PLAN_H

#include "sw.h"

#include <msgpack.h>

#include "proto.h"

#define SW_PLAN_MAX SW_PROTO_MAX_REPLICAS /* nodes of one stage in a plan */

struct sw_plan {
    int S, M;
    uint64_t step, ver;
    int *cnt;                        /* [S] nodes of each stage */
    uint8_t (*pk)[32];               /* [S * SW_PLAN_MAX] stage s's i-th at s * SW_PLAN_MAX + i */
    char (*ep)[SW_PROTO_EP_MAX];     /* [S * SW_PLAN_MAX] */
    double *w;                       /* [S * SW_PLAN_MAX] advertised capacity */
    int *assign;                     /* [S, M] index into the stage's nodes */
};

int sw_plan_init(struct sw_plan *p, int S, int M) SW_WARN_UNUSED;
void sw_plan_release(struct sw_plan *p);
/* dst = src (same S and M). */
void sw_plan_copy(struct sw_plan *dst, const struct sw_plan *src);
/* No node in any stage. */
void sw_plan_clear(struct sw_plan *p);

/*
 * The leader builds a plan: nodes added in any order (a stage's nodes past
 * SW_PLAN_MAX are left out: false), then sw_plan_finish sorts each stage by
 * key and deals the microbatches.  Returns false from finish when a stage
 * has no node.
 */
bool sw_plan_add(struct sw_plan *p, int s, const uint8_t *pk, const char *ep, double w);
bool sw_plan_finish(struct sw_plan *p);

/*
 * GO's "plan": [[{pk, ep, w, mb}...] per stage].  "mb" (the microbatches the
 * node serves) only where the assignment is not the deal's (a replan that
 * kept each microbatch on the surviving node that had it: a node cannot take
 * back the gradient of one it ran, so a microbatch moved between two live
 * nodes would be counted twice); in a stage either every node has it or none.
 */
void sw_plan_pack(msgpack_packer *pk, const struct sw_plan *p);
/* Reads it (and deals the microbatches, or takes "mb"); -SW_EMSG when malformed. */
int sw_plan_parse(struct sw_plan *p, const msgpack_object *o) SW_WARN_UNUSED;

/* Index into pk/ep/w of the node serving microbatch m at stage s. */
static inline int
sw_plan_at(const struct sw_plan *p, int s, int m)
{
    return s * SW_PLAN_MAX + p->assign[s * p->M + m];
}

/* Index of pk among stage s's nodes, -1 when not there (s < 0: any stage,
 * then the index is into pk/ep/w). */
int sw_plan_find(const struct sw_plan *p, int s, const uint8_t *pk);
static inline bool
sw_plan_has(const struct sw_plan *p, const uint8_t *pk)
{
    return sw_plan_find(p, -1, pk) >= 0;
}

/*
 * Which node (index into the stage's nodes sorted by public key) serves
 * each microbatch at a stage of n nodes with advertised throughputs w[n]:
 * the first min(M, n) microbatches go one to each node, every later one to
 * the node that would finish it first, (load + 1) / w smallest, ties to the
 * lower index.  With equal throughputs, or any unknown (<= 0, not finite),
 * this is round robin, m mod n.
 */
void sw_plan_assign(int M, int n, const double *w, int *out);

/*
 * --stage auto: the lowest-index stage with no node, else the stage with the
 * least total capacity (tokens/s summed over its nodes; ties: fewer nodes,
 * then the lower index).  nodes[S], cap[S].
 */
int sw_plan_choose_stage(int S, const int *nodes, const double *cap);

/*
 * Rebalancing (manifest [balance]; trainer.c moves the node).  A stage's
 * capacity is its nodes' summed tokens/s; the balance of the swarm is the
 * bottleneck's (the lowest capacity, ties to the lower index) over the mean
 * stage capacity: 1 when even, 0 when a stage is empty.  The donor is the
 * stage of at least two nodes that keeps the most capacity without one of
 * its mean nodes, cap - cap / nodes (ties: more nodes, then the lower
 * index): every node computes the same donor from the same records.  A node of the donor, of capacity mine, moves to
 * the bottleneck when the balance is below threshold and both the donor
 * without it and the bottleneck with it end at or above SW_PLAN_MOVE_GAIN
 * x the bottleneck's capacity now (hysteresis: a move between two nearly
 * equal stages would only swap them, and measured capacities jitter).  At
 * the bottleneck it is counted as that stage's mean node scaled by its
 * speed among the donor's nodes (mine over the donor's mean), since stages
 * differ in cost per token: a node twice as fast as its stage's mean
 * brings twice the bottleneck's mean node.  A
 * move keeps the sum, so the mean stays; the balance rises unless another
 * stage ties with the bottleneck (then that one is the next bottleneck).
 * nodes[S], cap[S]; *balance (may be NULL) gets the balance.  Returns the
 * stage to move to, or -1 (from is not the donor, no move helps, the
 * balance is fine, or a stage is empty: recovery's work).
 */
#define SW_PLAN_MOVE_GAIN 1.1
double sw_plan_balance(int S, const int *nodes, const double *cap, int *bottleneck);
int sw_plan_rebalance(int S, const int *nodes, const double *cap, int from, double mine,
                      double threshold, double *balance);

/* ---- routes (see above) ---- */

/* Does microbatch m of step take the swapped route (plus: CheckFree+)? */
static inline bool
sw_plan_swapped(bool plus, uint64_t step, int M, int m)
{
    return plus && ((step * (uint64_t)M + (uint64_t)m) & 1);
}

/* Hops of the route (S, or S + 2 when swapped). */
static inline int
sw_plan_nhops(int S, bool swapped)
{
    return swapped ? S + 2 : S;
}

/* Stage of hop h, and the parts of it that run there (SW_PART_*). */
int sw_plan_hop_stage(int S, bool swapped, int h, unsigned *parts);
/* How many times such a microbatch visits stage j (1 or 2). */
int sw_plan_nvisits(int S, bool swapped, int j);
/* The hop of stage j's visit k. */
int sw_plan_visit_hop(int S, bool swapped, int j, int k);

#endif
