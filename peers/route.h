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
 * Node (index into the stage's nodes sorted by public key) serving
 * microbatch m at a stage of n nodes: round robin, m mod n.  With nodes of
 * equal speed this is the least-loaded choice and, being a function of m
 * alone, every node knows in advance which microbatches it owns and so can
 * accumulate them in microbatch order.
 */
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
