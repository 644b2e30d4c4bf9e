#!/bin/sh
# t0355: CheckFree+ across processes.  A 4-stage run signed with
# recovery.mode = checkfree+ trains with the swapped route; stage 1 keeps a
# replica of the embedding and stage 2 (S-2) one of the final norm and LM
# head.  kill -9 the node of stage 0: a newcomer with --stage auto takes the
# stage and rebuilds it from stage 1 (its blocks and the embedding replica);
# 20 steps later the loss is finite and below its value at the failure.
# Then the same for stage 3 (S-1), rebuilt from stage 2 with the head
# replica.  The recoveries are in the logs and in status (method checkfree+).
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..6"
write_manifest "$TMP/run.conf" 100000 4 "[recovery]
mode = checkfree+"
"$SWARMCTL" manifest sign --run "$TMP/run.conf" --key "$TMP/owner" >/dev/null 2>&1
start_boot "$TMP/run.conf"
for s in 0 1 2 3; do
    start_node "$TMP/n$s.log" $s
    eval "P$s=\$NODE_PID"
done

# loss_fell LOG_BEFORE LOG_AFTER STEP: the loss 20 steps after STEP is finite and lower
loss_fell() {
    "$PY" - "$1" "$2" "$3" <<'EOT'
import math, re, sys
def read(p):
    return {int(s): float(v) for s, v in re.findall(r"^s:(\d+) trl:([0-9.naif]+)", open(p).read(), re.M)}
a, b, f = read(sys.argv[1]), read(sys.argv[2]), int(sys.argv[3])
before = a.get(f); after = b.get(f + 20)
print("# loss at the failure (step %d): %s; 20 steps later: %s" % (f, before, after))
sys.exit(0 if before is not None and after is not None and math.isfinite(after) and after < before else 1)
EOT
}

# --- stage 0 ---
wait_steps 60 "$TMP/n3.log" 30
kill -9 "$P0"
fail0=$(last_step "$TMP/n3.log")
echo "# node of stage 0 killed after step $fail0"
wait_for 15 grep -q "of stage 0 declared dead" "$TMP/n1.log"
start_node "$TMP/new0.log" auto
wait_for 40 grep -q "recovery: stage 0 method checkfree+" "$TMP/new0.log"; rc=$?
grep -h "chose stage\|recovery:\|replica is of" "$TMP/new0.log" | sed 's/^/# /'
[ $rc -eq 0 ] && grep -q "chose stage 0" "$TMP/new0.log" &&
    grep -q "recovery: stage 0 method checkfree+ .*embedding replica" "$TMP/new0.log"
ok $? "a newcomer with --stage auto rebuilt stage 0 from stage 1's blocks and embedding replica"
wait_steps 60 "$TMP/n3.log" $((fail0 + 20))
loss_fell "$TMP/n3.log" "$TMP/n3.log" "$fail0"
ok $? "after stage 0's rebuild the loss 20 steps on is finite and below its value at the failure"

# --- stage 3 (S-1) ---
kill -9 "$P3"
fail3=$(last_step "$TMP/n3.log")
echo "# node of stage 3 killed after step $fail3"
wait_for 15 grep -q "of stage 3 declared dead" "$TMP/n2.log"
start_node "$TMP/new3.log" auto
wait_for 40 grep -q "recovery: stage 3 method checkfree+" "$TMP/new3.log"; rc=$?
grep -h "chose stage\|recovery:\|replica is of" "$TMP/new3.log" | sed 's/^/# /'
[ $rc -eq 0 ] && grep -q "chose stage 3" "$TMP/new3.log" &&
    grep -q "recovery: stage 3 method checkfree+ .*head replica" "$TMP/new3.log"
ok $? "a newcomer with --stage auto rebuilt stage 3 from stage 2's blocks and head replica"
wait_steps 60 "$TMP/new3.log" $((fail3 + 20))
loss_fell "$TMP/n3.log" "$TMP/new3.log" "$fail3"
ok $? "after stage 3's rebuild the loss 20 steps on is finite and below its value at the failure"

"$SWARMCTL" status --peer "$BOOT" --json >"$TMP/r.json"; rc=$?
diag_file "$TMP/r.json" 3
[ $rc -eq 0 ] && "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["stages"][0]["recoveries"] >= 1 and d["stages"][3]["recoveries"] >= 1 else 1)' "$TMP/r.json"
ok $? "status is healthy and counts the recoveries of stages 0 and 3"
grep -q 'checkfree+' "$TMP/r.json"
ok $? "status names the method checkfree+"
