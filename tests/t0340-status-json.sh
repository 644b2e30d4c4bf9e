#!/bin/sh
# t0340: swarmctl status --json follows its documented schema (swarmctl(1));
# exit status 0 healthy, 1 degraded (a stage empty), 2 unreachable; a node
# leaves cleanly on SIGTERM; swarmd --metrics serves Prometheus text.  The
# calls that judge the health read the DHT for up to 5 s (--deadline-ms), so
# that a busy machine's slow answers make no stage "unknown".
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..9"
CHECK="$PY ${TEST_SRCDIR:-$(dirname "$0")}/check_status_json.py"
write_manifest "$TMP/run.conf" 100000 4
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
start_swarm n 0 1 2 "3 --metrics 127.0.0.1:0"
wait_for 30 sh -c "\"$SWARMCTL\" status --peer \"$BOOT\" --json | grep -q '\"step\":[1-9]'"
"$SWARMCTL" status --peer "$BOOT" --deadline-ms 5000 --json >"$TMP/s.json"; rc=$?
[ $rc -eq 0 ]; ok $? "status exits 0 on a healthy run"
$CHECK "$TMP/s.json" healthy &&
    "$PY" -c 'import json,sys; p=json.load(open(sys.argv[1]))["peers"]; sys.exit(0 if p and all(x["last_recovery"] is None for x in p) else 1)' "$TMP/s.json"
ok $? "status --json follows the schema (healthy; no last_recovery yet)"
"$SWARMCTL" status --peer "$BOOT" --deadline-ms 5000 >"$TMP/s.txt"; rc=$?
diag_file "$TMP/s.txt" 6
[ $rc -eq 0 ] && grep -q '^3 ' "$TMP/s.txt" && grep -q '^STAGE .* CAPACITY ' "$TMP/s.txt" &&
    ! grep -q '^recoveries' "$TMP/s.txt"
ok $? "status table has one row per stage, a capacity column and no recoveries"
metrics "$(metrics_port "$TMP/n3.log")" >"$TMP/metrics.txt"
grep -q '^swarm_node_loss [0-9]' "$TMP/metrics.txt" && grep -q '^# TYPE swarm_node_step counter' "$TMP/metrics.txt"
ok $? "--metrics serves Prometheus text"
kill -TERM "$P2"
wait_pid "$P2" 15 && [ "$WAIT_RC" -eq 0 ] && grep -q "left the run" "$TMP/n2.log"
ok $? "a node leaves cleanly on SIGTERM"
wait_for 10 sh -c "\"$SWARMCTL\" status --peer \"$BOOT\" --deadline-ms 5000 >/dev/null; [ \$? -eq 1 ]"
"$SWARMCTL" status --peer "$BOOT" --deadline-ms 5000 --json >"$TMP/d.json"; rc=$?
[ $rc -eq 1 ]; ok $? "status exits 1 when a stage is empty"
$CHECK "$TMP/d.json" degraded && grep -q '"stage":2,"nodes":0,"state":"empty"' "$TMP/d.json"
ok $? "status --json shows the empty stage (degraded)"
kill -TERM "$BOOT_PID"; wait_pid "$BOOT_PID" 10
"$SWARMCTL" status --peer "$BOOT" --timeout-ms 300 --json >"$TMP/u.json"; rc=$?
[ $rc -eq 2 ]; ok $? "status exits 2 when the peer is unreachable"
grep -q '"health":"unreachable"' "$TMP/u.json"; ok $? "unreachable JSON says so"
