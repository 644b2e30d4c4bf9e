#!/bin/sh
# t0392: two adjacent stages lost, recovered from the keeper's checkpoint.
# A 4-stage run whose nodes were started with --from-checkpoint DIR (no
# checkpoint yet: the run seed) beside a keeper saving into DIR every 10
# steps; the nodes of stages 1 and 2 are killed with -9.  CheckFree cannot
# rebuild them, but DIR holds a checkpoint: the survivors wait instead of
# stopping, two newcomers started with --from-checkpoint DIR take stages 1
# and 2 with the checkpoint's tensors and AdamW state and resume the step in
# progress; 20 steps later the loss is finite and below its value at the
# failure.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..4"
write_manifest "$TMP/run.conf" 100000 4
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
start_keeper "$TMP/keeper.log" --dir "$TMP/ckpt" --every 10
start_swarm n 0 1 2 3 -- --from-checkpoint "$TMP/ckpt"
# the keeper's first commit, whatever its step: one of 10 or 20 only, and
# a keeper that missed both (a CI run: 10 and 30 missed, 40 committed)
# waited 60 s, the run past step 1800, where 20 steps no longer lower the loss
wait_for 60 has_ckpt "$TMP/keeper.log" '[1-9][0-9]*0'
wait_steps 30 "$TMP/n3.log" 25
kill -9 "$P1" "$P2"
fail_step=$(last_step "$TMP/n3.log")
echo "# stages 1 and 2 killed after step $fail_step"
msgs "$TMP/n0.log" | grep "seed's initialisation" | head -n 1 | sed 's/^/# /'
ckpt_steps "$TMP/keeper.log" | tail -n 2 | sed 's/^/# keeper committed step /'
wait_for 20 has_event "$TMP/n0.log" waiting_ckpt; rc=$?
msgs "$TMP/n0.log" waiting_ckpt | head -n 1 | sed 's/^/# /'
sleep 1
kill -0 "$P0" 2>/dev/null && kill -0 "$P3" 2>/dev/null && [ $rc -eq 0 ]
ok $? "the survivors see the adjacent loss, and wait for the checkpoint instead of stopping"
start_node "$TMP/new1.log" 1 --from-checkpoint "$TMP/ckpt"
start_node "$TMP/new2.log" 2 --from-checkpoint "$TMP/ckpt"
wait_for 30 has_event "$TMP/new1.log" recovery stage=1 method=checkpoint; r1=$?
wait_for 30 has_event "$TMP/new2.log" recovery stage=2 method=checkpoint; r2=$?
{ msgs "$TMP/new1.log" recovery; msgs "$TMP/new2.log" recovery; } | sed 's/^/# /'
[ $r1 -eq 0 ] && [ $r2 -eq 0 ]
ok $? "two newcomers rebuilt stages 1 and 2 from the keeper's checkpoint"
wait_steps 60 "$TMP/n3.log" $((fail_step + 20)); rc=$?
[ $rc -eq 0 ] || { diag_file "$TMP/n0.log"; diag_file "$TMP/new1.log"; }
loss_fell "$TMP/n3.log" "$TMP/n3.log" "$fail_step"
ok $? "training went on: 20 steps later the loss is finite and below its value at the failure"
"$SWARMCTL" status --peer "$BOOT" >/dev/null; rc=$?
[ $rc -eq 0 ]; ok $? "status is healthy again (exit $rc)"
