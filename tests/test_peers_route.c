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

    tap_plan(12);
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
    {
        double eq[3] = {50, 50, 50}, unk[3] = {80, 0, 40}, fast[2] = {300, 100};
        int out[8], rr = 1, cnt[2] = {0, 0};

        sw_route_assign(8, 3, eq, out);
        for (int m = 0; m < 8; m++)
            rr &= out[m] == sw_route_node_for(m, 3);
        tap_ok(rr, "equal throughputs: round robin");
        rr = 1;
        sw_route_assign(8, 3, unk, out);
        for (int m = 0; m < 8; m++)
            rr &= out[m] == sw_route_node_for(m, 3);
        tap_ok(rr, "an unknown throughput: round robin");
        sw_route_assign(8, 2, fast, out);
        for (int m = 0; m < 8; m++)
            cnt[out[m]]++;
        tap_ok(out[0] == 0 && out[1] == 1 && cnt[0] == 6 && cnt[1] == 2,
               "3x faster node: 6 of 8 microbatches (got %d, %d)", cnt[0], cnt[1]);
        sw_route_assign(1, 2, fast, out);
        tap_ok(out[0] == 0, "fewer microbatches than nodes: the first ones");
    }
    return tap_done();
}
