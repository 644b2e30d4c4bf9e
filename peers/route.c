/*
 * route.c - stage choice (see route.h).
 */
#include "sw.h"

#include "route.h"

int
sw_route_choose_stage(int S, const int *nodes, const double *cap)
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
