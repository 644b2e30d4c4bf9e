#!/bin/sh
# t0403: a CheckFree rebuild over a slow link (issue 13, item 5).  A 4-stage
# run of 14 MB stages (d_model 512, SwiGLU 1536, one block a stage, int8
# activations) on the wide-area test network: every host 10 ms one way and
# 100 Mbit/s, but the newcomer's, 20 Mbit/s.  The node of stage 2 is killed
# with -9 and the newcomer (--stage auto) rebuilds the stage from both
# neighbours' parameters, 28 MB down its 20 Mbit/s link: about 12 s of
# transfer, where a fetch used to give a piece 3 s (the larger of the dead
# time and 2 s) from its request, with 8 pieces of 4 MiB asked at once from
# each neighbour: no piece came in time, and every rebuild failed.  Now a
# fetch fails only when a source stalls (fetch.h, "Slow links").  The
# transfer's rate is printed beside the link's, never asserted on.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/wan-lib.sh"
wan_need
echo "1..4"

watchdog 240

LINK=delay=10,rate=100,queue=100
wan_start b:1:$LINK s0:10:$LINK s1:11:$LINK s2:12:$LINK s3:13:$LINK a:20:delay=10,rate=20,queue=100
ok $? "6 hosts: 5 at 10 ms and 100 Mbit/s, the newcomer's at 20 Mbit/s"

wan_big_swarm 512 1536
wait_steps 120 "$TMP/n3.log" 5
ok $? "4 stages of 14 MB train over the network"

kill -9 "$P2"
FAIL_STEP=$(last_step "$TMP/n3.log")
wait_for 30 has_event "$TMP/n1.log" declared_dead stage=2
echo "# stage 2 killed after step $FAIL_STEP"
wan_node "$TMP/new.log" a auto
wait_for 120 has_event "$TMP/new.log" recovery stage=2 method=checkfree; rc=$?
msgs "$TMP/new.log" | grep "chose stage\|recovery:\|failed\|rebuild" | head -n 8 | sed 's/^/# /'
events "$TMP/new.log" recovery bytes transfer_ms | head -n 1 | awk '$2 > 0 {
    printf "# %.1f MB in %.1f s: %.1f Mbit/s down a 20 Mbit/s link\n", $1 / 1e6, $2 / 1000,
        $1 * 8 / ($2 / 1000) / 1e6 }'
[ $rc -eq 0 ]
ok $? "a newcomer behind a 20 Mbit/s link rebuilt stage 2 by CheckFree from both neighbours"

wait_steps 120 "$TMP/n3.log" $((FAIL_STEP + 5)); rc=$?
[ $rc -eq 0 ] || { diag_file "$TMP/new.log"; diag_file "$TMP/n1.log"; }
[ $rc -eq 0 ] && losses_finite_next "$TMP/n3.log" "$FAIL_STEP" 5
ok $? "the run trains on: 5 more steps, every loss finite"
