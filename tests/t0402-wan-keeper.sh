#!/bin/sh
# t0402: adjacent loss over the wide-area test network, recovered from the
# keeper (issue 13, item 2).  Every process on a host of its own
# (wan-lib.sh), each access link 10 ms one way, 50 Mbit/s, a 100 ms queue
# (a 40 ms round trip between two hosts).  A 4-stage run whose nodes save
# their stage into their own --ckpt-dir every 10 steps; the keeper, on its
# own host, collects each step's tensors from them over the network and
# commits it.  Stages 1 and 2 are killed with -9 (adjacent: CheckFree
# cannot rebuild them); the survivors, started with --from-checkpoint
# keeper, wait; two newcomers on two more hosts fetch their stages from
# the keeper over the network and the run goes on 20 steps, its loss
# finite.  Wall-clock figures are printed, never asserted on.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/wan-lib.sh"
wan_need
echo "1..5"

watchdog 170

LINK=delay=10,rate=50,queue=100
wan_start b:1:$LINK k:2:$LINK s0:10:$LINK s1:11:$LINK s2:12:$LINK s3:13:$LINK \
    x:21:$LINK y:22:$LINK
ok $? "8 hosts on $WNET.0/24, 10 ms and 50 Mbit/s each"

write_manifest "$TMP/run.conf" 100000 4 "[checkpoint]
every = 10
keep = 1000"
sign_manifest "$TMP/run.conf"
wan_boot b "$TMP/run.conf"
wan_keeper "$TMP/keeper.log" k --dir "$TMP/ckpt" --keep 2
for s in 0 1 2 3; do
    wan_node "$TMP/n$s.log" "s$s" $s --ckpt-dir "$TMP/local-$s" --from-checkpoint keeper
    eval "P$s=\$NODE_PID"
done
wait_for 90 has_ckpt "$TMP/keeper.log" '[1-9]0'; rc=$?
K=$(ckpt_steps "$TMP/keeper.log" | head -n 1)
msgs "$TMP/keeper.log" | grep "^info: checkpoint step" | head -n 2 | sed 's/^/# /'
[ $rc -eq 0 ] || { diag_file "$TMP/keeper.log"; diag_file "$TMP/n1.log"; }
[ $rc -eq 0 ] && "$SWARMCTL" checkpoint verify --dir "$TMP/ckpt" >"$TMP/verify.txt" 2>&1
rc=$?
[ $rc -eq 0 ] || diag_file "$TMP/verify.txt"
ok $rc "the keeper on its own host committed step ${K:-?} over the network, and it verifies clean"

wait_steps 40 "$TMP/n3.log" $((${K:-0} + 5))
kill -9 "$P1" "$P2"
fail_step=$(last_step "$TMP/n3.log")
echo "# stages 1 and 2 killed after step $fail_step"
wait_for 30 has_event "$TMP/n0.log" waiting_ckpt; rc=$?
msgs "$TMP/n0.log" | grep "waiting for nodes started" | head -n 1 | sed 's/^/# /'
sleep 1
kill -0 "$P0" 2>/dev/null && kill -0 "$P3" 2>/dev/null && [ $rc -eq 0 ]
ok $? "the survivors see the adjacent loss and wait for the keeper's checkpoint"

wan_node "$TMP/new1.log" x 1 --from-checkpoint keeper
wan_node "$TMP/new2.log" y 2 --from-checkpoint keeper
wait_for 40 keeper_recovery "$TMP/new1.log" 1; r1=$?
wait_for 40 keeper_recovery "$TMP/new2.log" 2; r2=$?
{ msgs "$TMP/new1.log"; msgs "$TMP/new2.log"; } | grep "fetching\|recovery:" | sed 's/^/# /'
[ $r1 -eq 0 ] && [ $r2 -eq 0 ] || { diag_file "$TMP/new1.log"; diag_file "$TMP/keeper.log"; }
[ $r1 -eq 0 ] && [ $r2 -eq 0 ]
ok $? "two newcomers on two more hosts fetched stages 1 and 2 from the keeper"

wait_steps 60 "$TMP/n3.log" $((fail_step + 20)); rc=$?
[ $rc -eq 0 ] || { diag_file "$TMP/n0.log"; diag_file "$TMP/new1.log"; }
loss_finite_after "$TMP/n3.log" "$fail_step"
ok $? "training went on 20 steps with a finite loss"
