/*
 * route.c - stage choice and microbatch assignment (see route.h).
 */
#include "sw.h"

#include <math.h>

#include "node.h"
#include "route.h"

void
sw_route_assign(int M, int n, const double *w, int *out)
{
    int load[SW_NODE_MAX_REPLICAS] = {0};
    bool equal = n > SW_NODE_MAX_REPLICAS;

    bool same = true;

    for (int i = 0; i < n && !equal; i++) {
        equal = !isfinite(w[i]) || w[i] <= 0; /* an unknown one: all alike */
        same &= w[i] == w[0];
    }
    equal |= same;
    for (int m = 0; m < M; m++) {
        int best = 0;

        if (equal || m < n) {
            out[m] = m % n;
            if (m < n && m < SW_NODE_MAX_REPLICAS)
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
