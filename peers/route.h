/*
 * route.h - pure decisions of the pipeline, kept apart so that tests can
 * check them without processes: which stage a newcomer takes, how a step's
 * microbatches are dealt over the nodes of each stage.
 */
#ifndef SW_ROUTE_H
#define SW_ROUTE_H

#include "sw.h"

/*
 * --stage auto: the lowest-index stage with no node, else the stage with the
 * least total capacity (tokens/s summed over its nodes; ties: fewer nodes,
 * then the lower index).  nodes[S], cap[S].
 */
int sw_route_choose_stage(int S, const int *nodes, const double *cap);

/*
 * Which node (index into the stage's nodes sorted by public key) serves
 * each microbatch at a stage of n nodes with advertised throughputs w[n]
 * (the leader's GO carries them, so every node computes the same out[M]):
 * the first min(M, n) microbatches go one to each node, every later one to
 * the node that would finish it first, (load + 1) / w smallest, ties to the
 * lower index.  With equal throughputs, or any unknown (<= 0, not finite),
 * this is round robin, m mod n (sw_route_node_for).  Being known to all
 * before the step starts, it lets every node accumulate the microbatches it
 * owns in microbatch order.
 */
void sw_route_assign(int M, int n, const double *w, int *out);

/* Round robin: node serving microbatch m at a stage of n nodes. */
static inline int
sw_route_node_for(int m, int n)
{
    return m % n;
}

/* Microbatches of M a node of index i among n owns. */
static inline int
sw_route_owned(int M, int n, int i)
{
    return i < M ? (M - i + n - 1) / n : 0;
}

#endif
