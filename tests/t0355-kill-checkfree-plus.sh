#!/bin/sh
# t0355: CheckFree+ across processes.  A 4-stage run signed with
# recovery.mode = checkfree+ trains with the swapped route; stage 1 keeps a
# replica of the embedding and stage 2 (S-2) one of the final norm and LM
# head.  kill -9 the node of stage 0: a newcomer with --stage auto takes the
# stage and rebuilds it from stage 1 (its blocks and the embedding replica);
# 20 steps later the loss is finite and below its value at the failure.
# Then the same for stage 3 (S-1), rebuilt from stage 2 with the head
# replica, 40 steps on (medians of 16 steps): its failure comes past step
# 60, where 20 steps of training lower the loss by less than its medians of
# 8 swing (CI: 2.75 at the failure, 2.77 20 steps on, 2.6 30 steps on).
# The recoveries are in the logs and in status (method checkfree+).
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..6"
write_manifest "$TMP/run.conf" 100000 4 "[recovery]
mode = checkfree+"
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
start_swarm n 0 1 2 3


# rebuild STAGE PID NEIGHBOUR PARTNER REPLICA LOSSLOG AFTER WIDTH: kill -9 the
# node of STAGE, wait for NEIGHBOUR's node to declare it dead, start a newcomer with
# --stage auto, which must rebuild STAGE by checkfree+ from PARTNER's blocks
# and REPLICA; then the loss (last stage: LOSSLOG after the rebuild) must fall
# in AFTER steps (loss_fell: medians of WIDTH steps)
rebuild() {
    local st=$1 pid=$2 nb=$3 partner=$4 what=$5 after=$6 n=$7 w=$8 fail rc
    kill -9 "$pid"
    fail=$(last_step "$TMP/n3.log")
    echo "# node of stage $st killed after step $fail"
    wait_for 15 has_event "$TMP/n$nb.log" declared_dead stage="$st"
    start_node "$TMP/new$st.log" auto
    wait_for 40 has_event "$TMP/new$st.log" recovery stage="$st" method=checkfree+; rc=$?
    msgs "$TMP/new$st.log" | grep "chose stage\|recovery:\|replica is of" | sed 's/^/# /'
    [ $rc -eq 0 ] && msgs "$TMP/new$st.log" | grep -q "chose stage $st" &&
        has_event "$TMP/new$st.log" recovery stage="$st" method=checkfree+ replica="$what"
    ok $? "a newcomer with --stage auto rebuilt stage $st from stage $partner's blocks and $what replica"
    [ "$after" = new ] && after=$TMP/new$st.log || after=$TMP/n3.log
    wait_steps 90 "$after" $((fail + n))
    loss_fell "$TMP/n3.log" "$after" "$fail" "$n" "$w"
    ok $? "after stage $st's rebuild the loss $n steps on is finite and below its value at the failure"
}

wait_steps 60 "$TMP/n3.log" 30
rebuild 0 "$P0" 1 1 embedding old 20 8
rebuild 3 "$P3" 2 2 head new 40 16

"$SWARMCTL" status --peer "$BOOT" --json >"$TMP/r.json"; rc=$?
diag_file "$TMP/r.json" 3
[ $rc -eq 0 ] && "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["stages"][0]["recoveries"] >= 1 and d["stages"][3]["recoveries"] >= 1 else 1)' "$TMP/r.json"
ok $? "status is healthy and counts the recoveries of stages 0 and 3"
grep -q 'checkfree+' "$TMP/r.json"
ok $? "status names the method checkfree+"
