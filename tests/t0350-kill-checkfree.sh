#!/bin/sh
# t0350: kill -9 the node of a middle stage of a 4-stage run.  The leader
# declares it dead within the detection bound and pauses the drivers;
# swarmctl status shows the stage empty and the run degraded (exit 1).  A
# newcomer started with --stage auto takes the empty stage and rebuilds it
# by CheckFree from both neighbours (their parameters and gradient norms);
# the step in progress resumes, and 20 steps later the loss is finite and
# below its value at the failure.  The recovery is in the logs, in status
# (RECOV, and the newcomer's last_recovery: method, sources, bytes,
# duration) and in the newcomer's metrics.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..9"
write_manifest "$TMP/run.conf" 100000 4
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
start_swarm n 0 1 2 3
wait_steps 60 "$TMP/n3.log" 30
kill -9 "$P2"
t_kill=$(now_ms)
fail_step=$(last_step "$TMP/n3.log")
wait_for 15 has_event "$TMP/n1.log" declared_dead stage=2; rc=$?
t_dead=$(now_ms)
echo "# node of stage 2 killed after step $fail_step; declared dead by its neighbour after $((t_dead - t_kill)) ms"
{ msgs "$TMP/n0.log"; msgs "$TMP/n1.log"; } | grep "declared dead\|no node left" | head -n 3 | sed 's/^/# /'
[ $rc -eq 0 ] && [ $((t_dead - t_kill)) -le 6000 ]
ok $? "the killed node is declared dead within 6 s"
wait_for 15 sh -c "\"$SWARMCTL\" status --peer \"$BOOT\" >/dev/null; [ \$? -eq 1 ]"
"$SWARMCTL" status --peer "$BOOT" --json >"$TMP/d.json"; rc=$?
[ $rc -eq 1 ] && [ "$(stage_state "$TMP/d.json" 2)" = "0 empty" ] && grep -q '"health":"degraded"' "$TMP/d.json"
ok $? "status shows stage 2 empty and the run degraded (exit $rc)"
s_paused=$(last_step "$TMP/n3.log"); sleep 1
[ "$(last_step "$TMP/n3.log")" = "$s_paused" ]
ok $? "the drivers are paused (no step completes without stage 2)"
start_node "$TMP/new.log" auto --metrics 127.0.0.1:0
wait_for 30 has_event "$TMP/new.log" recovery stage=2 method=checkfree; rc=$?
msgs "$TMP/new.log" | grep "chose stage\|recovery:" | sed 's/^/# /'
[ $rc -eq 0 ] && msgs "$TMP/new.log" | grep -q "chose stage 2"
ok $? "a newcomer with --stage auto rebuilt stage 2 by CheckFree"
wait_steps 60 "$TMP/n3.log" $((fail_step + 20))
loss_fell "$TMP/n3.log" "$TMP/n3.log" "$fail_step"
ok $? "training went on: 20 steps later the loss is finite and below its value at the failure"
"$SWARMCTL" status --peer "$BOOT" --json >"$TMP/r.json"; rc=$?
diag_file "$TMP/r.json" 3
[ $rc -eq 0 ] && "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["stages"][2]["recoveries"] >= 1 else 1)' "$TMP/r.json"
ok $? "status is healthy again and counts the recovery of stage 2"
"$PY" ${TEST_SRCDIR:-$(dirname "$0")}/check_status_json.py "$TMP/r.json" healthy &&
"$PY" - "$TMP/r.json" <<'EOT'
import json, sys
d = json.load(open(sys.argv[1]))
lr = [p["last_recovery"] for p in d["peers"] if p["stage"] == 2 and p["last_recovery"]]
print("# stage 2 last_recovery: %s" % lr)
sys.exit(0 if len(lr) == 1 and lr[0]["method"] == "checkfree" and lr[0]["bytes"] > 0 and
         lr[0]["seconds"] > 0 and lr[0]["from"].count(",") == 1 else 1)
EOT
ok $? "status --json shows the newcomer's last recovery (checkfree, two sources, bytes > 0)"
"$SWARMCTL" status --peer "$BOOT" >"$TMP/r.txt"
diag_file "$TMP/r.txt" 12
grep -q '^recoveries' "$TMP/r.txt" && grep -Eq '^2 +[0-9a-f]{16} +checkfree +[0-9.]+ [kMG]?B ' "$TMP/r.txt" &&
    grep -q 'CAPACITY' "$TMP/r.txt"
ok $? "the status table has a capacity column and lists the recovery"
metrics "$(metrics_port "$TMP/new.log")" >"$TMP/metrics.txt"
grep '^swarm_node_recover' "$TMP/metrics.txt" | sed 's/^/# /'
grep -q '^swarm_node_recoveries_total 1' "$TMP/metrics.txt" &&
    grep -q "swarm_node_last_recovery_bytes{method=\"checkfree\",from=.*} [1-9]" "$TMP/metrics.txt"
ok $? "the newcomer's metrics show the recovery (method, bytes, duration)"
