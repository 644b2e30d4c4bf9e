/*
 * test_plan - plans, stage choice, microbatch dealing and routes
 * (peers/plan.h), without processes.
 */
#include "sw.h"

#include <math.h>
#include <string.h>

#include "checkfree.h"
#include "plan.h"
#include "tap.h"

static void
choose(void)
{
    int nodes[4] = {1, 0, 1, 0};
    double cap[4] = {100, 0, 50, 0};

    tap_ok(sw_plan_choose_stage(4, nodes, cap) == 1, "an empty stage first, lowest index");
    nodes[1] = 1;
    cap[1] = 80;
    tap_ok(sw_plan_choose_stage(4, nodes, cap) == 3, "then the next empty one");
    nodes[3] = 1;
    cap[3] = 70;
    tap_ok(sw_plan_choose_stage(4, nodes, cap) == 2, "all full: the least total capacity");
    cap[2] = 70;
    nodes[2] = 2;
    tap_ok(sw_plan_choose_stage(4, nodes, cap) == 3, "a tie: the stage with fewer nodes");
    nodes[2] = 1;
    tap_ok(sw_plan_choose_stage(4, nodes, cap) == 2, "a full tie: the lower index");
}

/* Rebalancing: the balance, the donor, the gain (plan.h). */
static void
rebalance(void)
{
    int nodes[4] = {3, 2, 1, 2}, b = -1;
    double cap[4] = {300, 200, 100, 200}, bal = -1;

    tap_ok(fabs(sw_plan_balance(4, nodes, cap, &b) - 0.5) < 1e-12 && b == 2,
           "balance: the bottleneck over the mean (100 / 200)");
    tap_ok(sw_plan_rebalance(4, nodes, cap, 0, 100, 0.75, &bal) == 2 && bal == 0.5,
           "a node of the richest stage moves to the bottleneck");
    tap_ok(sw_plan_rebalance(4, nodes, cap, 1, 100, 0.75, NULL) == -1 &&
               sw_plan_rebalance(4, nodes, cap, 2, 100, 0.75, NULL) == -1,
           "nodes of other stages stay");
    tap_ok(sw_plan_rebalance(4, nodes, cap, 0, 100, 0.45, NULL) == -1,
           "no move while the balance is above the threshold");
    nodes[0] = 2;
    cap[0] = 200;
    tap_ok(sw_plan_rebalance(4, nodes, cap, 0, 100, 0.99, NULL) == -1,
           "no move that only swaps the bottleneck (2,2,1,2 nodes)");
    cap[0] = 210;
    cap[2] = 190;
    nodes[2] = 2;
    tap_ok(sw_plan_rebalance(4, nodes, cap, 0, 105, 0.99, &bal) == -1 && bal > 0.9,
           "jitter between even stages moves nothing");
    nodes[2] = 0;
    cap[2] = 0;
    tap_ok(sw_plan_balance(4, nodes, cap, &b) == 0 && b == 2 &&
               sw_plan_rebalance(4, nodes, cap, 0, 105, 0.99, NULL) == -1,
           "an empty stage is recovery's work, not a move");
    nodes[2] = 1;
    cap[2] = 100;
    nodes[0] = 1;
    cap[0] = 400; /* one fast node: not a donor, however rich */
    tap_ok(sw_plan_rebalance(4, nodes, cap, 0, 400, 0.99, NULL) == -1 &&
               sw_plan_rebalance(4, nodes, cap, 1, 100, 0.99, NULL) == -1,
           "a stage of one node gives none, however rich; nor a donor the move leaves too poor");
    {
        int n2[4] = {2, 2, 2, 2}, n8[4] = {2, 2, 2, 12};
        double c2[4] = {170, 180, 330, 100}, c8[4] = {200, 200, 240, 100};
        tap_ok(sw_plan_rebalance(4, n2, c2, 2, 165, 0.75, NULL) == 3,
               "stages of unequal cost: a node of the cheap stage moves to the dear one");
        tap_ok(sw_plan_rebalance(4, n8, c8, 2, 120, 0.75, NULL) == -1,
               "no move where one more node of the dear stage's speed gains too little");
    }
    {   /* seen in t0398: the richest stage of two would be left too poor, the
         * stage of three slower nodes gives one */
        int n[4] = {2, 2, 1, 3};
        double c[4] = {115, 127, 51.5, 103.5};
        tap_ok(sw_plan_rebalance(4, n, c, 3, 34.5, 0.75, NULL) == 2 &&
                   sw_plan_rebalance(4, n, c, 1, 63.5, 0.75, NULL) == -1,
               "the donor keeps the most without one of its mean nodes");
    }
}

static void
assign(void)
{
    double eq[3] = {50, 50, 50}, unk[3] = {80, 0, 40}, fast[2] = {300, 100};
    int out[8], rr = 1, cnt[3] = {0, 0, 0};

    sw_plan_assign(8, 3, eq, out);
    for (int m = 0; m < 8; m++) {
        rr &= out[m] == m % 3;
        cnt[out[m]]++;
    }
    tap_ok(rr && cnt[0] == 3 && cnt[1] == 3 && cnt[2] == 2,
           "equal throughputs: round robin, 8 microbatches over 3 nodes: 3, 3, 2");
    rr = 1;
    sw_plan_assign(8, 3, unk, out);
    for (int m = 0; m < 8; m++)
        rr &= out[m] == m % 3;
    tap_ok(rr, "an unknown throughput: round robin");
    cnt[0] = cnt[1] = 0;
    sw_plan_assign(8, 2, fast, out);
    for (int m = 0; m < 8; m++)
        cnt[out[m]]++;
    tap_ok(out[0] == 0 && out[1] == 1 && cnt[0] == 6 && cnt[1] == 2,
           "3x faster node: 6 of 8 microbatches (got %d, %d)", cnt[0], cnt[1]);
    sw_plan_assign(1, 2, fast, out);
    tap_ok(out[0] == 0, "fewer microbatches than nodes: the first ones");
}

static void
key(uint8_t pk[32], int v)
{
    memset(pk, 0, 32);
    pk[0] = (uint8_t)v;
}

/* A plan built, packed, parsed back; kept keys; diffs. */
static void
plans(void)
{
    struct sw_plan p, q;
    uint8_t pk[32], buf[65536];
    struct sw_wire_buf b;
    msgpack_packer mp;
    msgpack_unpacked u;
    int ok;

    if (sw_plan_init(&p, 3, 2) < 0 || sw_plan_init(&q, 3, 2) < 0)
        exit(1);
    key(pk, 9);
    sw_plan_add(&p, 1, pk, "tcp://b:2", 10);
    key(pk, 3);
    sw_plan_add(&p, 1, pk, "tcp://a:1", 10);
    tap_ok(!sw_plan_finish(&p), "a stage without a node: no plan");
    key(pk, 1);
    sw_plan_add(&p, 0, pk, "tcp://z:0", -5);
    key(pk, 7);
    sw_plan_add(&p, 2, pk, "tcp://c:3", 1);
    tap_ok(sw_plan_finish(&p), "every stage has a node: a plan");
    tap_ok(p.pk[SW_PLAN_MAX][0] == 3 && p.pk[SW_PLAN_MAX + 1][0] == 9 &&
               !strcmp(p.ep[SW_PLAN_MAX], "tcp://a:1") && p.w[0] == 0,
           "a stage's nodes sorted by key, endpoints with them, bad capacities zero");
    key(pk, 9);
    tap_ok(sw_plan_find(&p, 1, pk) == 1 && sw_plan_find(&p, 0, pk) == -1 && sw_plan_has(&p, pk),
           "found where it serves");
    p.step = 5;
    p.ver = 2;
    sw_wire_buf_init(&b, buf, sizeof(buf));
    sw_wire_buf_packer(&mp, &b);
    sw_plan_pack(&mp, &p);
    msgpack_unpacked_init(&u);
    ok = sw_wire_unpack(buf, b.len, &u) == 0 && sw_plan_parse(&q, &u.data) == 0;
    tap_ok(ok && !memcmp(q.cnt, p.cnt, 3 * sizeof(int)) && !memcmp(q.assign, p.assign, 6 * sizeof(int)) &&
               !memcmp(q.pk, p.pk, 3 * SW_PLAN_MAX * 32),
           "GO's plan packs and parses back to the same plan");
    msgpack_unpacked_destroy(&u);
    /* a replan that kept stage 1's microbatches where they were: both on key 9 */
    p.assign[1 * 2 + 0] = p.assign[1 * 2 + 1] = 1;
    sw_wire_buf_init(&b, buf, sizeof(buf));
    sw_wire_buf_packer(&mp, &b);
    sw_plan_pack(&mp, &p);
    msgpack_unpacked_init(&u);
    ok = sw_wire_unpack(buf, b.len, &u) == 0 && sw_plan_parse(&q, &u.data) == 0;
    tap_ok(ok && !memcmp(q.assign, p.assign, 6 * sizeof(int)),
           "an assignment that is not the deal's (\"mb\") packs and parses back");
    msgpack_unpacked_destroy(&u);
    {
        /* stage 1: key 3 serves microbatch 0, key 9 microbatch 0 too */
        static const char *const bad[] = {"mb twice", "mb missing", "mb out of range",
                                          "mb on one node only"};
        static const int mbs[][2][2] = {{{1, 0}, {1, 0}}, {{1, 0}, {0, 0}},
                                        {{1, 0}, {2, 5}}, {{2, 0}, {-1, 0}}};
        int refused = 0;
        for (int c = 0; c < 4; c++) {
            sw_wire_buf_init(&b, buf, sizeof(buf));
            sw_wire_buf_packer(&mp, &b);
            msgpack_pack_array(&mp, 3);
            for (int s = 0; s < 3; s++) {
                msgpack_pack_array(&mp, (size_t)p.cnt[s]);
                for (int i = 0; i < p.cnt[s]; i++) {
                    int k = s * SW_PLAN_MAX + i, n = s == 1 ? mbs[c][i][0] : -1;
                    msgpack_pack_map(&mp, n >= 0 ? 4 : 3);
                    sw_proto_pack_key(&mp, "pk");
                    sw_proto_pack_bin(&mp, p.pk[k], 32);
                    sw_proto_pack_key(&mp, "ep");
                    sw_proto_pack_str(&mp, p.ep[k]);
                    sw_proto_pack_key(&mp, "w");
                    msgpack_pack_double(&mp, p.w[k]);
                    if (n < 0)
                        continue;
                    sw_proto_pack_key(&mp, "mb");
                    msgpack_pack_array(&mp, (size_t)n);
                    for (int j = 0; j < n; j++)
                        msgpack_pack_uint32(&mp, (uint32_t)(j == 0 ? mbs[c][i][1] : 1));
                }
            }
            msgpack_unpacked_init(&u);
            if (sw_wire_unpack(buf, b.len, &u) == 0 && sw_plan_parse(&q, &u.data) < 0)
                refused++;
            else
                tap_diag("accepted a plan with %s", bad[c]);
            msgpack_unpacked_destroy(&u);
        }
        tap_ok(refused == 4, "a plan whose \"mb\" serves a microbatch twice, none, out of range, "
               "or on some nodes only is refused");
    }
    for (int i = 0; i < SW_PLAN_MAX + 2; i++) {
        key(pk, 100 - i);
        sw_plan_add(&q, 0, pk, "tcp://x:1", 1);
    }
    tap_ok(q.cnt[0] == SW_PLAN_MAX && sw_plan_finish(&q) && q.pk[0][0] == 1 &&
               q.pk[SW_PLAN_MAX - 1][0] == 97,
           "a full stage keeps its lowest keys");
    sw_plan_release(&p);
    sw_plan_release(&q);
}

/* The swapped route: every stage's visits are the hops that name it. */
static void
routes(void)
{
    int ok = 1;

    for (int S = 4; S <= 7; S++) {
        for (int sw = 0; sw < 2; sw++) {
            int seen[8][2] = {{0}};
            for (int h = 0; h < sw_plan_nhops(S, sw); h++) {
                struct sw_hop hop = sw_checkfree_hop(S, sw, h);
                ok &= hop.stage >= 0 && hop.stage < S && hop.visit < 2;
                ok &= sw_plan_hop_stage(S, sw, h, NULL) == hop.stage;
                ok &= sw_plan_visit_hop(S, sw, hop.stage, hop.visit) == h;
                seen[hop.stage][hop.visit]++;
            }
            for (int j = 0; j < S; j++)
                for (int k = 0; k < 2; k++)
                    ok &= seen[j][k] == (k < sw_plan_nvisits(S, sw, j));
        }
    }
    tap_ok(ok, "routes of 4 to 7 stages: each visit of each stage is one hop, both ways");
    tap_ok(!sw_plan_swapped(true, 0, 4, 0) && sw_plan_swapped(true, 0, 4, 1) &&
               sw_plan_swapped(true, 1, 3, 0) && !sw_plan_swapped(false, 0, 4, 1),
           "odd microbatches, counted across steps, take the swapped route under checkfree+");
}

int
main(void)
{
    tap_plan(30);
    choose();
    rebalance();
    assign();
    plans();
    routes();
    return tap_done();
}
