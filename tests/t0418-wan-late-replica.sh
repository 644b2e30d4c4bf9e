#!/bin/sh
# t0418: a replica that joins a running stage over a link slower than a
# step copies its stage's state and trains (issue 13, items 4 and 5;
# peers/lead.h, Copies).  2 stages of a wide model (d_model 512, SwiGLU
# 1536, 2 blocks a stage: 27 MB of parameters, 81 MB of state with the
# AdamW moments), every process on a host of its own, each access link
# 10 ms one way and 100 Mbit/s.  The run steps in well under a second; the
# copy takes seconds.  A copy takes pieces of its source's current step
# only, so on the code before every step restarted it: the replica copied
# for the rest of the run and never took a step.  Now it answers the
# leader's PREPARE with the time its copy has left, the leader's round
# waits for it (once), and it joins:
#   - the leader logs that it waited for the copier;
#   - the replica then takes steps together with its twin (the same
#     gradient norm at the same step: each summed the other's partial),
#     5 of its first 12 at least (int8 activations and partials: in a CI
#     run with fp32 partials of 27 MB, the twin's READY waited for the
#     exchange longer than the PREPARE timeout on the loaded machine, the
#     twin fell out of a plan and copied in turn, with the round waiting
#     for it too).
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/wan-lib.sh"
wan_need
echo "1..3"

watchdog 300

wan_wide_run delay=10,rate=100,queue=100 "[wire]
activations = int8
gradients = int8"
wan_node "$TMP/n0.log" s0 0
wan_node "$TMP/n1.log" s1 1
wait_steps 120 "$TMP/n1.log" 5; rc=$?
msgs "$TMP/n1.log" | grep "^info: stage 1 of 2" | sed 's/^/# /'
wan_node "$TMP/n1b.log" s1b 1
J0=$(last_step "$TMP/n1.log")
echo "# the replica of stage 1 started at step $J0"
wait_for 120 steps_done "$TMP/n1b.log" 0 && wait_steps 90 "$TMP/n1b.log" $(($(first_step "$TMP/n1b.log") + 12)); rc2=$?
both=$(both_steps "$TMP/n1.log" "$TMP/n1b.log")
msgs "$TMP/n1b.log" | grep "copying stage\|copied stage" | sed 's/^/# n1b: /' | head -n 8
echo "# copies started: $(msgs "$TMP/n1b.log" | grep -c "copying stage"); its first step: $(first_step "$TMP/n1b.log"); steps with its twin: $both; the run at $(last_step "$TMP/n1.log")"
[ $rc -eq 0 ] && [ $rc2 -eq 0 ] || { diag_file "$TMP/n1b.log"; diag_file "$TMP/n0.log"; }
[ $rc -eq 0 ] && [ $rc2 -eq 0 ] && [ "$both" -ge 5 ]
ok $? "the late replica copied the 81 MB state and took 5 of its first 12 steps with its twin"

msgs "$TMP/n0.log" | grep "copies its stage's state\|waits for a copy" | sed 's/^/# n0: /' | head -n 3
msgs "$TMP/n0.log" | grep -q "which copies its stage's state"
ok $? "the leader's round waited for the copier"
