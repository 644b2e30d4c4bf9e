/*
 * test_peers_route - stage choice and microbatch dealing (peers/route.h).
 */
#include "sw.h"

#include "route.h"
#include "tap.h"

int
main(void)
{
    int nodes[4] = {1, 0, 1, 0};
    double cap[4] = {100, 0, 50, 0};
    int seen[3] = {0}, total = 0;

    tap_plan(8);
    tap_ok(sw_route_choose_stage(4, nodes, cap) == 1, "an empty stage first, lowest index");
    nodes[1] = 1;
    cap[1] = 80;
    tap_ok(sw_route_choose_stage(4, nodes, cap) == 3, "then the next empty one");
    nodes[3] = 1;
    cap[3] = 70;
    tap_ok(sw_route_choose_stage(4, nodes, cap) == 2, "all full: the least total capacity");
    cap[2] = 70;
    nodes[2] = 2;
    tap_ok(sw_route_choose_stage(4, nodes, cap) == 3, "a tie: the stage with fewer nodes");
    nodes[2] = 1;
    tap_ok(sw_route_choose_stage(4, nodes, cap) == 2, "a full tie: the lower index");
    for (int m = 0; m < 8; m++)
        seen[sw_route_node_for(m, 3)]++;
    tap_ok(seen[0] == 3 && seen[1] == 3 && seen[2] == 2, "8 microbatches over 3 nodes: 3, 3, 2");
    for (int i = 0; i < 3; i++)
        total += sw_route_owned(8, 3, i);
    tap_ok(total == 8 && sw_route_owned(8, 3, 2) == 2, "owned counts add up");
    tap_ok(sw_route_owned(2, 3, 2) == 0, "a node beyond M owns nothing");
    return tap_done();
}
