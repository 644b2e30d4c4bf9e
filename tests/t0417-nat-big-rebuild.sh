#!/bin/sh
# t0417: a CheckFree rebuild of a stage of 150 MB through a relay (issue 14,
# item 3, at the sizes users run).  A 4-stage run of one wide block a stage
# (d_model 1536, SwiGLU 6144: 37.7M parameters, 151 MB, a stage) on the NAT
# test network, each access link 10 ms one way: stages 1, 2 and 3 each
# behind a NAT of their own, so the bootstrap relays between them.  The
# stage-2 node is killed with -9 and a NATed newcomer (--stage auto)
# rebuilds the stage from both neighbours' parameters, both outbound-only:
# 302 MB of STATE pieces of 4 MiB, every one through the relay.  The
# transfer's rate is printed, never asserted on.  Setting up a stage this
# big holds a node's loop for seconds, which timed out every DHT contact of
# the NATed nodes: their tables emptied, their records were stored on
# themselves alone and stage 0 waited for stage 1 for good (now a node alone
# in the DHT joins it again, node.c rejoin_if_alone).
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/wan-lib.sh"
wan_need
wan_need_nat
echo "1..4"

watchdog 300

L=delay=10
wan_start b:1:$L s0:10:$L s1:11:nat,$L s2:12:nat,$L s3:13:nat,$L a:20:nat,$L
ok $? "6 hosts, stages 1-3 and the newcomer each behind a NAT of its own, 10 ms links"

wan_big_swarm 1536 6144
wait_steps 150 "$TMP/n3.log" 3 && wait_for 30 wan_relayed "$TMP/n1.log" &&
    wait_for 30 wan_relayed "$TMP/n3.log"; rc=$?
msgs "$TMP/n2.log" | grep "^info: stage 2 of 4" | sed 's/^/# /'
[ $rc -eq 0 ]
ok $? "4 stages of 151 MB train, stages 1-3 outbound-only with a relay"

kill -9 "$P2"
FAIL_STEP=$(last_step "$TMP/n3.log")
echo "# stage 2 killed after step $FAIL_STEP"
wan_newcomer_rebuilds "$TMP/new.log" a 2; rc=$?
events "$TMP/new.log" recovery bytes transfer_ms | head -n 1 | awk '$2 > 0 {
    printf "# %.1f MB in %.1f s through the relay: %.0f Mbit/s\n", $1 / 1e6, $2 / 1000,
        $1 * 8 / ($2 / 1000) / 1e6 }'
events "$TMP/new.log" recovery bytes | head -n 1 | awk '{ exit !($1 > 300e6) }' || rc=1
ok $rc "a NATed newcomer rebuilt stage 2 by CheckFree, 300+ MB from two outbound-only neighbours through the relay"

wait_steps 120 "$TMP/n3.log" $((FAIL_STEP + 3)); rc=$?
[ $rc -eq 0 ] || { diag_file "$TMP/new.log"; diag_file "$TMP/n1.log"; }
[ $rc -eq 0 ] && losses_finite_next "$TMP/n3.log" "$FAIL_STEP" 3
ok $? "the run trains on: 3 more steps, the loss finite"
