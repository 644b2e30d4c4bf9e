#!/bin/sh
# t0396: with --from-checkpoint, CheckFree still comes first (DESIGN.md,
# "Recovery, in order of preference"; swarmd(1) Failures).  A 4-stage run
# whose nodes were started with --from-checkpoint DIR beside a keeper saving
# into DIR every 10 steps, as swarmd(1)'s EXAMPLES recommend; once DIR holds
# a checkpoint the node of stage 2 is killed with -9.  A newcomer, started
# with --stage auto --from-checkpoint DIR, must rebuild stage 2 by CheckFree
# from its two live neighbours, not roll it back to the checkpoint.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..2"
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
kill -9 "$P2"
fail_step=$(last_step "$TMP/n3.log")
echo "# stage 2 killed after step $fail_step"
ckpt_steps "$TMP/keeper.log" | tail -n 1 | sed 's/^/# keeper committed step /'
start_node "$TMP/new.log" auto --from-checkpoint "$TMP/ckpt"
wait_for 30 has_event "$TMP/new.log" recovery stage=2; rc=$?
msgs "$TMP/new.log" | grep "chose stage\|recovery:\|restored" | sed 's/^/# /'
[ $rc -eq 0 ] && has_event "$TMP/new.log" recovery stage=2 method=checkfree &&
    ! has_event "$TMP/new.log" recovery method=checkpoint
ok $? "the newcomer rebuilt stage 2 by CheckFree, not from the checkpoint"
wait_steps 60 "$TMP/n3.log" $((fail_step + 20)); rc=$?
[ $rc -eq 0 ] || diag_file "$TMP/new.log"
loss_fell "$TMP/n3.log" "$TMP/n3.log" "$fail_step"
ok $? "training went on: 20 steps later the loss is finite and below its value at the failure"
