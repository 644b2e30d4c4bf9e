#!/bin/sh
# t0425: a keeper behind a slow home link still commits checkpoints while
# the run saves faster than it can pull (issue 13).  Each node serves the
# tensors of its newest local save; when it saved the next step, a pull
# that began on the one before used to fail ("failed (No such file or
# directory)") and the keeper aimed again, at a step it could not pull in
# time either, for as long as the run went on.  Now a node keeps the step
# before open after its next commit, and keeps a step that a pull is still
# asking for open while newer ones are committed (ckptnet.h, "Serving").
# A 2-stage run on two hosts with 50 Mbit/s links saves every 2 steps; the
# keeper's host has 2 Mbit/s: a stage (about 1.3 MB) takes it seconds, many
# saves long.  The keeper must commit twice, each checkpoint clean, each
# pulled while its nodes had saved at least two more steps.  Wall-clock
# figures are printed, never asserted on.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/wan-lib.sh"
wan_need
echo "1..3"

watchdog 170

FAST=delay=10,rate=50,queue=100
SLOW=delay=20,rate=2,queue=300
wan_start b:1:$FAST k:2:$SLOW s0:10:$FAST s1:11:$FAST
ok $? "4 hosts on $WNET.0/24; the keeper's at 2 Mbit/s, the nodes' at 50 Mbit/s"

EVERY=2
write_manifest "$TMP/run.conf" 100000 2 "[checkpoint]
every = $EVERY
keep = 2"
sign_manifest "$TMP/run.conf"
wan_boot b "$TMP/run.conf"
wan_keeper "$TMP/keeper.log" k --dir "$TMP/ckpt" --keep 2
wan_node "$TMP/n0.log" s0 0 --ckpt-dir "$TMP/local-0"
wan_node "$TMP/n1.log" s1 1 --ckpt-dir "$TMP/local-1"
wait_for 120 sh -c "[ \$(sed -n 's/^{\"event\":\"checkpoint\",\"step\":\([0-9]*\),.*/\1/p' \
    '$TMP/keeper.log' | wc -l) -ge 2 ]"; rc=$?
steps=$(ckpt_steps "$TMP/keeper.log" | tr '\n' ' ')
echo "# keeper committed: $steps(run at step $(last_step "$TMP/n1.log"))"
msgs "$TMP/keeper.log" | grep "collected in" | head -n 2 | sed 's/^/# /'
n_miss=$(msgs "$TMP/keeper.log" | grep -c "missed\|failed (No such file")
echo "# pulls that missed their step, or a piece of it: $n_miss"
[ $rc -eq 0 ] || { diag_file "$TMP/keeper.log"; diag_msgs "$TMP/n0.log"; }
[ $rc -eq 0 ] && "$SWARMCTL" checkpoint verify --dir "$TMP/ckpt" >"$TMP/verify.txt" 2>&1
rc=$?
[ $rc -eq 0 ] || diag_file "$TMP/verify.txt"
ok $rc "the keeper on the slow link committed two checkpoints (steps $steps), and they verify clean"

# each committed step K: both nodes had committed K + 2 x every locally
# before the keeper committed K (a pull longer than the nodes' window)
$PY - "$TMP/keeper.log" "$TMP/n0.log" "$TMP/n1.log" $EVERY <<'EOT'
import json, re, sys
from datetime import datetime

def ts(r):
    return datetime.strptime(r["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()

def lines(path):
    for l in open(path):
        try:
            yield json.loads(l)
        except ValueError:
            pass

every = int(sys.argv[4])
commits = []
for r in lines(sys.argv[1]):
    m = re.match(r"checkpoint step (\d+): \d+ stages", r.get("msg", ""))
    if m and "ts" in r:
        commits.append((int(m.group(1)), ts(r)))
saves = []
for path in sys.argv[2:4]:
    s = []
    for r in lines(path):
        m = re.match(r"local checkpoint step (\d+):", r.get("msg", ""))
        if m and "ts" in r:
            s.append((int(m.group(1)), ts(r)))
    saves.append(s)
good = 0
for k, t in commits[:2]:
    past = [max([st for st, at in s if at < t] or [0]) for s in saves]
    print("# step %d committed when the nodes had saved steps %s" % (k, past))
    good += all(p >= k + 2 * every for p in past)
sys.exit(0 if len(commits) >= 2 and good == 2 else 1)
EOT
ok $? "each was pulled while its nodes had saved at least two steps past it"
