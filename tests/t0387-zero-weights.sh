#!/bin/sh
# t0387: a stranger's process serves a run endpoint of its own (so its
# record is proven) and publishes a stage-0 record 12 steps ahead of the
# real stage-0 node's record (its step as the DHT tells: records lag the
# steps), with its hash and capacity; it answers STATE_GET with
# all-zero weights (issue 12: "a fake stage-0 node that answers STATE_GET
# had its all-zero weights copied").  A newcomer of stage 0 prefers the
# real node (a source whose step another node reached; the stranger's claim
# is its own), or, if it tries the stranger, refuses the all-zero copy (no
# other node attests it either), copies the real node's state and trains; the real
# stage-0 node never copies anything.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..4"
M_ADMISSION=open write_manifest "$TMP/run.conf" 100000 4
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
start_swarm n 0 1 2 3
wait_steps 60 "$TMP/n3.log" 5
start_bg "$TMP/zeros.log" "$BUILD/tests/test_peers_records" "$TMP/run.conf" "$BOOT" 60 zeros 0 12
ZEROS_PID=$LAST_PID
wait_for 10 grep -q "stranger serving at" "$TMP/zeros.log"
EP=$(sed -n 's/^# stranger serving at \([^ ]*\) .*/\1/p' "$TMP/zeros.log")
echo "# the stranger serves at $EP"
# its record in the DHT: status counts it (it is proven: it serves its endpoint)
wait_for 20 sh -c "\"$SWARMCTL\" peers --peer \"$BOOT\" --deadline-ms 2000 | grep -q \"$EP\$\""
ok $? "the stranger's stage-0 record is published and proven"
start_node "$TMP/new.log" 0
wait_for 60 grep -q "copied stage 0 from" "$TMP/new.log"
msgs "$TMP/new.log" | grep "copying stage 0\|copied stage 0\|refused the copy" | sed 's/^/# /'
! msgs "$TMP/new.log" | grep -q "copied stage 0 from $EP " &&
    msgs "$TMP/new.log" | grep -q "copied stage 0 from "
ok $? "the newcomer copied stage 0, not from the stranger"
msgs "$TMP/new.log" | grep -q "refused the copy of stage 0 from $EP " ||
    ! msgs "$TMP/new.log" | grep -q "copying stage 0 from $EP "
ok $? "it refused the stranger's state, or never tried its uncorroborated claim"
# stage 0's step lines carry no loss
steps0() { sed -n 's/^{"event":"step","step":\([0-9]*\),"stage":0,.*/\1/p' "$1" | tail -n 1; }
step=$(steps0 "$TMP/n0.log")
wait_for 60 sh -c "[ \"\$(sed -n 's/^{\"event\":\"step\",\"step\":\([0-9]*\),\"stage\":0,.*/\1/p' \"$TMP/new.log\" | tail -n 1)\" -ge $((step + 5)) ] 2>/dev/null" &&
    ! msgs "$TMP/n0.log" | grep -q "copying stage 0"
ok $? "the newcomer trains (5 steps past step $step) and the real stage-0 node never copied"
kill "$ZEROS_PID" 2>/dev/null
cat "$TMP/zeros.log"
exit 0
