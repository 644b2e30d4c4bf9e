#!/bin/sh
# t0360: two nodes serve stage 1 of a 4-stage run; one is killed with -9 in
# the middle of the run.  The leader drops it from the step in progress
# (its microbatches are planned again through the other node of stage 1,
# which resends nothing twice: its neighbours resend what they had sent to
# the dead node), no recovery is needed, no step is lost or repeated, and
# the survivor trains on alone.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..5"
# longer steps (8 microbatches of 8 sequences), so that the kill lands inside one
write_manifest "$TMP/run.conf" 100000 4
sed -i 's/^size = 4$/size = 8/; s/^micro = 4$/micro = 8/' "$TMP/run.conf"
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
start_swarm n "0a --log-level debug" 1a 1b 2a 3a
wait_steps 60 "$TMP/n3a.log" 12
# kill it right after the leader started a step (its GO), so that microbatches are in flight
"$PY" - "$TMP/n0a.log" "$P1b" <<'EOT'
import os, re, sys, time
log, pid = sys.argv[1], int(sys.argv[2])
# the leader's debug line "step N: go", at the end of its JSON object
seen = len(re.findall(r': go"}$', open(log).read(), re.M))
end = time.time() + 10
while time.time() < end:
    if len(re.findall(r': go"}$', open(log).read(), re.M)) > seen:
        time.sleep(0.005)
        break
    time.sleep(0.001)
os.kill(pid, 9)
EOT
t_kill=$(now_ms)
fail_step=$(last_step "$TMP/n3a.log")
wait_for 15 grep -q "planning without it" "$TMP/n0a.log"; rc=$?
t_dead=$(now_ms)
{ msgs "$TMP/n0a.log"; msgs "$TMP/n1a.log"; } | grep "declared dead\|planning without it\|planned again" | head -n 4 | sed 's/^/# /'
echo "# replica of stage 1 killed after step $fail_step; planned out after $((t_dead - t_kill)) ms"
[ $rc -eq 0 ]; ok $? "the leader planned the step again without the dead replica"
wait_steps 60 "$TMP/n3a.log" $((fail_step + 10)); rc=$?
[ $rc -eq 0 ]; ok $? "training went on for 10 more steps with one node on stage 1"
"$PY" - "$TMP/n3a.log" <<'EOT'
import sys
from swlog import events
s = [o["step"] for o in events(sys.argv[1], "step") if "loss" in o]
print("# last stage completed steps %d..%d (%d lines)" % (s[0], s[-1], len(s)))
sys.exit(0 if s == list(range(s[0], s[-1] + 1)) and s[0] == 0 else 1)
EOT
ok $? "no step lost or repeated (every step from 0 completed once)"
! for f in "$TMP"/n*.log; do has_event "$f" recovery && break; done
ok $? "no recovery was needed"
# the dead node's record is left out of the summary once it is older than 5 s
wait_for 10 sh -c "\"$SWARMCTL\" status --peer \"$BOOT\" --json >\"$TMP/s.json\" && [ \"\$(\"$PY\" -c 'import json,sys; s=json.load(open(sys.argv[1]))[\"stages\"][1]; print(s[\"nodes\"], s[\"state\"])' \"$TMP/s.json\")\" = '1 ok' ]"
"$SWARMCTL" status --peer "$BOOT" --json >"$TMP/s.json"; rc=$?
[ $rc -eq 0 ] && [ "$(stage_state "$TMP/s.json" 1)" = "1 ok" ]
ok $? "status: healthy, stage 1 has one node (exit $rc)"
