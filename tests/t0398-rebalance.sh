#!/bin/sh
# t0398: rebalancing (manifest [balance], swarmd(1) Rebalancing).  A 4-stage
# run: one node pinned (--stage N) on each stage, and five --stage auto
# nodes that join the stages with the least capacity (one stage ends with
# three nodes).  A middle stage then loses its extra node (kill -9): the
# swarm's balance (the bottleneck stage's capacity over the mean) falls
# below the threshold, and after the hold an auto node of a richer stage
# moves there, copying its state from the node left, one node at a time.
# The run trains on; status shows that stage with two nodes again; pinned
# nodes never move; no node moves back and forth (hold, cool-down, gain).
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..6"
write_manifest "$TMP/run.conf" 100000 4 "[balance]
threshold = 0.75
hold = 2
cooldown = 6"
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
start_swarm n 0 1 2 3
wait_steps 60 "$TMP/n3.log" 5
for x in x1 x2 x3 x4 x5; do
    start_node "$TMP/$x.log" auto
    eval "P_$x=\$NODE_PID"
    wait_for 15 has_event "$TMP/$x.log" chose_stage
    sleep 1
done
# stages_now: "nodes nodes nodes nodes" of stages 0..3 in status --json
stages_now() {
    "$SWARMCTL" status --peer "$BOOT" --json |
        "$PY" -c 'import json,sys; print(" ".join(str(s["nodes"]) for s in json.load(sys.stdin)["stages"]))'
}
all_train() {
    for x in x1 x2 x3 x4 x5; do has_event "$TMP/$x.log" step || return 1; done
}
# every auto node trains (a step line of its own) before the kill
wait_for 60 all_train
ok $? "five --stage auto nodes joined and train"
echo "# nodes per stage before the kill: $(stages_now)"
for x in x1 x2 x3 x4 x5; do
    msgs "$TMP/$x.log" | grep "chose stage\|rebalance" | sed "s/^/# $x: /"
done
# the layout settles first: a move still under way (the joins left a stage
# slow) and the kill below would make one node's two moves look like a
# thrash; settled = no new move for 10 s (hold 2 + cooldown 6, and a margin)
nmoves() { cat "$TMP"/x*.log | grep -c '"event":"moved"'; }
i=0
while [ $i -lt 9 ]; do
    m0=$(nmoves); sleep 10
    [ "$(nmoves)" = "$m0" ] && break
    i=$((i + 1))
done
echo "# layout settled after $((i * 10 + 10)) s: $(stages_now)"
# the victim: stage 2 (else 1) when an auto node serves it; its auto nodes are killed
V=""; victims=""
for v in 2 1; do
    for x in x1 x2 x3 x4 x5; do
        [ "$(stage_of "$TMP/$x.log")" = $v ] && victims="$victims $x"
    done
    [ -n "$victims" ] && { V=$v; break; }
done
# moves_to STAGE: how many moves to STAGE the auto nodes' logs hold
moves_to() { cat "$TMP"/x*.log | grep '"event":"moved"' | grep -c "\"to\":$1"; }
moved_before=$(moves_to "$V")
for x in $victims; do
    eval "kill -9 \$P_$x"
done
t_kill=$(now_ms)
step_kill=$(last_step "$TMP/n3.log")
echo "# killed the auto node(s)$victims of stage $V after step $step_kill"
# a move to stage V, then stage V back to two nodes (counted, not read
# after the earlier moves: the logs are read file by file, so a new move in
# x1.log comes before an old one in x3.log)
more_moves_to() { [ "$(moves_to "$1")" -gt "$2" ]; }
wait_for 90 more_moves_to "$V" "$moved_before"
rc=$?
t_move=$(now_ms)
for x in x1 x2 x3 x4 x5; do
    msgs "$TMP/$x.log" | grep "rebalance" | sed "s/^/# $x: /"
done
ok $rc "an auto node moved to stage $V ($(( (t_move - t_kill) / 1000 )) s after the kill)"
v_nodes() { [ "$(stages_now | cut -d' ' -f$((V + 1)))" -ge 2 ]; }
wait_for 60 v_nodes
rc=$?
echo "# nodes per stage after the move: $(stages_now)"
ok $rc "status shows stage $V with two nodes again"
# the mover trains stage V: a step line of stage V in its log after its move
mover=x1
for x in x1 x2 x3 x4 x5; do
    has_event "$TMP/$x.log" moved to=$V && mover=$x
done
trains_v() {
    "$PY" - "$TMP/$mover.log" "$V" <<'EOT'
import sys, swlog
v = int(sys.argv[2])
objs = list(swlog.objects(sys.argv[1]))
moved = [i for i, o in enumerate(objs) if o.get("event") == "moved" and o.get("to") == v]
sys.exit(0 if moved and any(o.get("event") == "step" and o.get("stage") == v
                            for o in objs[moved[-1]:]) else 1)
EOT
}
wait_for 60 trains_v
ok $? "the mover ($mover) copied stage $V and trains it"
s_now=$(last_step "$TMP/n3.log")
wait_steps 60 "$TMP/n3.log" $((s_now + 20))
rc=$?
"$PY" - "$TMP/n3.log" <<'EOT'
import math, sys, swlog
l = swlog.losses(sys.argv[1])
print("# last stage: %d steps, last loss %.4f" % (len(l), l[max(l)]))
sys.exit(0 if all(math.isfinite(v) for v in l.values()) else 1)
EOT
[ $rc -eq 0 ] && [ $? -eq 0 ]
ok $? "the run trained 20 more steps after the move, every loss finite"
# no thrash: pinned nodes never moved; an auto node moved at most twice,
# and never straight back to the stage it came from
"$PY" - "$TMP" <<'EOT'
import glob, os, sys, swlog
bad = 0
for p in sorted(glob.glob(os.path.join(sys.argv[1], "n*.log"))):
    if swlog.events(p, "moved"):
        print("# pinned node %s moved" % os.path.basename(p)); bad = 1
for p in sorted(glob.glob(os.path.join(sys.argv[1], "x*.log"))):
    m = [(o["from"], o["to"]) for o in swlog.events(p, "moved")]
    print("# %s moves: %s" % (os.path.basename(p), m))
    if len(m) > 2 or any(a == (b[1], b[0]) for a, b in zip(m[1:], m)):
        bad = 1
sys.exit(bad)
EOT
ok $? "no pinned node moved, no auto node moved back and forth"
