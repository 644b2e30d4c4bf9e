#!/bin/sh
# t0401: a swarm over the wide-area test network (issue 13, item 2).  Every
# process on a host of its own (wan-lib.sh), each host's access link 10 ms
# one way, 50 Mbit/s, a 100 ms queue: 20 ms one way and a 40 ms round trip
# between two hosts, as between two home links in one country.  A 4-stage
# checkfree run of the tests' tiny model:
#   - trains, and its losses equal swarmsim's on the same manifest (its
#     first 24 steps, to 1e-5 relative);
#   - the node of stage 2 is killed with -9; its neighbour declares it dead;
#     a newcomer on another host with --stage auto rebuilds stage 2 by
#     CheckFree from stages 1 and 3; 20 steps later the loss is finite and
#     below its value at the failure;
#   - swarmctl status, from a host of its own, shows the recovery.
# Wall-clock figures (s/step, bytes on the wire a step) are printed, never
# asserted on.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/wan-lib.sh"
wan_need
echo "1..6"

watchdog 150

LINK=delay=10,rate=50,queue=100
wan_start b:1:$LINK s0:10:$LINK s1:11:$LINK s2:12:$LINK s3:13:$LINK a:20:$LINK c:30:$LINK
ok $? "7 hosts on $WNET.0/24, 10 ms and 50 Mbit/s each"

STEPS=24
wan_tiny_swarm
t0=$(now_ms)
wait_steps 60 "$TMP/n3.log" 30; rc=$?
t1=$(now_ms)
wan_stats
echo "$(first_step "$TMP/n3.log") $(last_step "$TMP/n3.log") $t0 $t1" | awk '{
    printf "# steps %d-%d in %.1f s from the start (set-up included)\n", $1, $2, ($4 - $3) / 1000 }'
awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] += kv[2] } }
     END { printf "# on the wire so far: %.2f MB in %d packets, %d dropped by queues\n",
           v["tx_bytes"] / 1e6, v["tx_pkts"], v["drop_queue"] }' "$TMP/wan.stats"
# the run's schedule is of 100000 steps: swarmsim stops after $STEPS of them
# (--max-iters; it then says, and exits 1, that the run was not finished)
wan_tiny_sim $STEPS
[ $rc -eq 0 ] && match_sim "$TMP/sim" $STEPS "$TMP/n3.log"
ok $? "4 stages on 4 hosts train, and their first $STEPS losses equal swarmsim's"

# kill -9 stage 2; stage 1 declares it dead
kill -9 "$P2"
k0=$(now_ms)
FAIL_STEP=$(last_step "$TMP/n3.log")
wait_for 20 has_event "$TMP/n1.log" declared_dead stage=2; rc=$?
echo "# stage 2 killed after step $FAIL_STEP; declared dead by stage 1 after $(($(now_ms) - k0)) ms"
[ $rc -eq 0 ]
ok $? "the killed node of stage 2 is declared dead by its neighbour"

wan_node "$TMP/new.log" a auto
wait_for 40 has_event "$TMP/new.log" recovery stage=2 method=checkfree; rc=$?
msgs "$TMP/new.log" | grep "chose stage\|recovery:" | sed 's/^/# /'
[ $rc -eq 0 ] && msgs "$TMP/new.log" | grep -q "chose stage 2"
ok $? "a newcomer on another host with --stage auto rebuilt stage 2 by CheckFree"

wait_steps 60 "$TMP/n3.log" $((FAIL_STEP + 20)); rc=$?
[ $rc -eq 0 ] || { diag_file "$TMP/new.log"; diag_file "$TMP/n1.log"; }
loss_fell "$TMP/n3.log" "$TMP/n3.log" "$FAIL_STEP"
ok $? "20 steps later the loss is finite and below its value at the failure"

wan_on c "$SWARMCTL" status --peer "$BOOT" --json >"$TMP/status.json"; rc=$?
[ $rc -eq 0 ] && recovered_on "$TMP/status.json" 2 checkfree "$WAN_a"
ok $? "status from another host is healthy and shows stage 2's recovery on the newcomer's host"
