#!/bin/sh
# t0386: a stranger publishes 30 stage-2 records, each under a key of its
# own, claiming a training node with a huge capacity on an endpoint where
# nobody serves (issue 12: "records are unauthenticated claims").  No node
# proves them, so none counts them: swarmctl status lists them as unproven
# and counts 4 nodes, healthy; the nodes count them in their metrics; then
# stage 2's only node is killed, and a newcomer with --stage auto sees
# stage 2 as empty and chooses it, and the run trains on.
# An open run ([admission] mode = open): in an owner-mode run the stranger's
# records never get in (t0381).
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..5"
M_ADMISSION=open write_manifest "$TMP/run.conf" 100000 4
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
start_swarm n 0 "1 --metrics 127.0.0.1:0" 2 3
wait_steps 60 "$TMP/n3.log" 5
# a port where nobody listens
DEAD=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
start_bg "$TMP/fakes.log" "$BUILD/tests/test_peers_records" "$TMP/run.conf" "$BOOT" 40 fakes 30 2 "$DEAD"
FAKES_PID=$LAST_PID
unproven() { # FILE: stage 2's nodes, unproven, the run's nodes and health
    "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); s=d["stages"][2]; print(s["nodes"], s["unproven"], d["run"]["nodes"], d["run"]["health"])' "$1"
}
wait_for 20 sh -c "\"$SWARMCTL\" status --peer \"$BOOT\" --json --deadline-ms 2000 >\"$TMP/s.json\"; \"$PY\" -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))[\"stages\"][2][\"unproven\"] >= 20 else 1)' \"$TMP/s.json\" 2>/dev/null"
"$SWARMCTL" status --peer "$BOOT" --json --deadline-ms 2000 >"$TMP/s.json"; rc=$?
set -- $(unproven "$TMP/s.json")
echo "# status: stage 2 has $1 node(s) and $2 unproven records; the run $3 nodes, $4 (exit $rc)"
[ $rc -eq 0 ] && [ "$1" = 1 ] && [ "$2" -ge 20 ] && [ "$3" = 4 ] && [ "$4" = healthy ] &&
    $PY "${TEST_SRCDIR:-$(dirname "$0")}/check_status_json.py" "$TMP/s.json" healthy >/dev/null
ok $? "status counts the 4 real nodes, healthy, and lists the fakes as unproven"
"$SWARMCTL" status --peer "$BOOT" --deadline-ms 2000 >"$TMP/s.txt"
diag_file "$TMP/s.txt" 12
grep -q "^stage 2: [0-9]* unproven records" "$TMP/s.txt" && grep -q " 4 nodes .* unproven" "$TMP/s.txt"
ok $? "the status table says so"
# the node's own scans: its last one may have come before the fakes the
# status saw (CI: 15 of them), so it is read until it counts 20, 20 s at most
mport=$(metrics_port "$TMP/n1.log")
node_unproven() {
    metrics "$mport" >"$TMP/metrics.txt" 2>/dev/null || return 1
    n=$(sed -n 's/^swarm_node_unproven_records \([0-9]*\)$/\1/p' "$TMP/metrics.txt")
    [ "${n:-0}" -ge 20 ]
}
wait_for 20 node_unproven
grep 'unproven\|proofs_total' "$TMP/metrics.txt" | grep -v '^#' | sed 's/^/# /'
n=$(sed -n 's/^swarm_node_unproven_records \([0-9]*\)$/\1/p' "$TMP/metrics.txt")
[ "${n:-0}" -ge 20 ]
ok $? "a node leaves the fakes out of its table ($n unproven records)"
# stage 2's real node killed: only the fakes' records claim stage 2
kill -9 "$P2"
step=$(last_step "$TMP/n3.log")
start_node "$TMP/new.log" auto
wait_for 40 grep -q "chose stage" "$TMP/new.log"
msgs "$TMP/new.log" | grep "chose stage" | sed 's/^/# /'
msgs "$TMP/new.log" | grep -q "chose stage 2 "
ok $? "the newcomer (--stage auto) saw stage 2 as empty and chose it"
wait_steps 90 "$TMP/n3.log" $((step + 10))
ok $? "the run trained on: 10 more steps after stage 2 was rebuilt (from step $step)"
kill "$FAKES_PID" 2>/dev/null
exit 0
