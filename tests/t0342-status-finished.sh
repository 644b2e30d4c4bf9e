#!/bin/sh
# t0342: the end of a run is a state of swarmctl status: once the manifest's
# steps are done and every node has left (their records expired), status
# still says "finished at step N" (exit 0), from the end record the
# bootstrap published (status.h), and its JSON says state "finished".
# status reads the DHT for up to 5 s (--deadline-ms): a busy machine's slow
# answers must not make the end record or a stage "unknown".
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..4"
CHECK="$PY ${TEST_SRCDIR:-$(dirname "$0")}/check_status_json.py"
STEPS=12
write_manifest "$TMP/run.conf" $STEPS 4
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
start_swarm n 0 1 2 3
wait_all 120 0 1 2 3
ok $? "the four nodes train the $STEPS steps and exit 0"
# the nodes' records expire within 10 s of their last refresh
wait_for 30 sh -c "\"$SWARMCTL\" status --peer \"$BOOT\" --deadline-ms 5000 --json | grep -q '\"nodes\":0,'"
ok $? "every node's record is gone"
"$SWARMCTL" status --peer "$BOOT" --deadline-ms 5000 >"$TMP/f.txt"; rc=$?
diag_file "$TMP/f.txt" 6
[ $rc -eq 0 ] && grep -q "finished at step $STEPS " "$TMP/f.txt" && ! grep -q empty "$TMP/f.txt"
ok $? "status says finished at step $STEPS (exit 0), no stage empty"
"$SWARMCTL" status --peer "$BOOT" --deadline-ms 5000 --json >"$TMP/f.json"
$CHECK "$TMP/f.json" healthy &&
    "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1]))["run"]; sys.exit(0 if r["state"] == "finished" and r["finished"] and r["step"] == int(sys.argv[2]) else 1)' "$TMP/f.json" $STEPS
ok $? "status --json: state finished, step $STEPS"
