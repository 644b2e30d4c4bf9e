#!/bin/sh
# t0391: a whole run restarts from its keeper's checkpoint.  A 4-stage run
# with a keeper (every 10 steps) is stopped entirely (every node, the
# bootstrap and the keeper); a new bootstrap of the same manifest and four
# nodes started with --from-checkpoint DIR restore their stages (parameters,
# AdamW state, step, data position) from the newest clean checkpoint and
# train on from its step: the first loss of the restarted run is the one the
# stopped run printed at that step, bit for bit, and the run finishes.  The
# same checkpoint restarts a 2-stage run (resharded by tensor name) whose
# first loss matches to 1e-5 relative; and so does a 2-stage run whose
# nodes, started with --from-checkpoint keeper, fetch their stages over the
# network from a keeper serving that folder.  A node that comes back after
# its neighbours restored takes the checkpoint too, not a CheckFree rebuild.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..7"
# the first run is stopped 2 steps after the keeper's commit of step 20 or
# 30 is seen: far enough from its last step at 25-50 steps a second
STEPS=80
write_manifest "$TMP/run.conf" $STEPS 4
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
B1=$BOOT_PID
start_keeper "$TMP/keeper.log" --dir "$TMP/ckpt" --every 10 --keep 2
KP=$KEEPER_PID
start_swarm a 0 1 2 3
# step 20 (or 30, should the keeper miss 20 on a loaded machine)
wait_for 60 has_ckpt "$TMP/keeper.log" '[23]0'; rc=$?
seen=$(ckpt_steps "$TMP/keeper.log" | grep -Ex '[23]0' | head -n 1)
wait_steps 30 "$TMP/a3.log" $((${seen:-20} + 2))
for p in $P0 $P1 $P2 $P3 $KP $B1; do kill "$p" 2>/dev/null; done
all=0
for p in $P0 $P1 $P2 $P3 $KP $B1; do wait_pid "$p" 20 || all=1; done
ckpt_steps "$TMP/keeper.log" | sed 's/^/# keeper committed step /'
stopped=$(last_step "$TMP/a3.log")
echo "# the first run stopped after step $stopped"
[ $rc -eq 0 ] && [ $all -eq 0 ] && [ "$stopped" -lt $((STEPS - 1)) ]
ok $? "the keeper saved step ${seen:-20}, then every process of the run stopped (at step $stopped)"
CK=$("$SWARMCTL" checkpoint list --dir "$TMP/ckpt" | sed -n 's/^step-0*\([0-9][0-9]*\) committed.*/\1/p' | head -n 1)
echo "# newest committed checkpoint: step $CK"
"$SWARMCTL" checkpoint verify --dir "$TMP/ckpt" >/dev/null 2>&1 && [ -n "$CK" ] && [ "$CK" -ge 20 ]
ok $? "the newest checkpoint (step $CK) is clean"

# the whole run again, from the checkpoint; stage 2's node comes last,
# when its neighbours are back at step $CK: CheckFree could rebuild stage 2
# from them, but the checkpoint holds its exact state at that step
start_boot "$TMP/run.conf"
start_swarm b 0 1 3 -- --from-checkpoint "$TMP/ckpt"
wait_for 60 has_event "$TMP/b1.log" restored
wait_for 60 has_event "$TMP/b3.log" restored
swarm_node b 2 --from-checkpoint "$TMP/ckpt"
SWARM_NODES="$SWARM_NODES 2"
wait_all 120 $SWARM_NODES; all=$?
has_event "$TMP/b2.log" recovery && msgs "$TMP/b2.log" recover | sed 's/^/# /'
{ msgs "$TMP/b0.log" restored; msgs "$TMP/b3.log" restored; } | sed 's/^/# /'
n=0
for f in "$TMP"/b[0-3].log; do has_event "$f" restored step="$CK" && n=$((n + 1)); done
[ $all -eq 0 ] && [ "$n" -eq 4 ] && [ "$(last_step "$TMP/b3.log")" -eq $((STEPS - 1)) ]
ok $? "four new nodes restored their stages from step $CK and trained to the end"
first=$(first_step "$TMP/b3.log")
a=$(loss_at "$TMP/a3.log" "$CK")
b=$(loss_at "$TMP/b3.log" "$CK")
echo "# loss at step $CK: stopped run $a, restarted run $b (first step of the restart: $first)"
[ "$first" = "$CK" ] && [ -n "$a" ] && [ "$a" = "$b" ]
ok $? "the restarted run goes on from step $CK with the stopped run's loss, bit for bit"
$PY - "$TMP/a3.log" "$TMP/b3.log" <<'EOT'
import sys
from swlog import losses
a, b = losses(sys.argv[1]), losses(sys.argv[2])
common = sorted(set(a) & set(b))
worst = max(abs(a[s] - b[s]) for s in common)
print("# %d steps in both runs, max loss difference %.3g; last loss %.4f (step %d)" % (len(common), worst, b[max(b)], max(b)))
sys.exit(0 if common and worst == 0 and b[max(b)] < a[min(a)] else 1)
EOT
ok $? "every step both runs took has the same loss; the loss kept falling"

# resharded: the same checkpoint into a 2-stage run
write_manifest "$TMP/run2.conf" $((CK + 2)) 2
sign_manifest "$TMP/run2.conf"
start_boot "$TMP/run2.conf"
start_swarm c 0 1 -- --from-checkpoint "$TMP/ckpt"
wait_all 60 $SWARM_NODES; all=$?
c=$(loss_at "$TMP/c1.log" "$CK")
echo "# 2 stages from the 4-stage checkpoint: loss at step $CK $c (4 stages: $a)"
[ $all -eq 0 ] && [ -n "$c" ] && has_event "$TMP/c0.log" restored saved_stages=4 &&
    $PY -c 'import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if abs(a - b) <= 1e-5 * abs(a) else 1)' "$a" "$c"
ok $? "a 2-stage run restarts from the 4-stage checkpoint with the same loss (1e-5)"

# the same, over the network: a keeper of the 2-stage run serves the folder
kill "$BOOT_PID" 2>/dev/null
start_boot "$TMP/run2.conf"
start_keeper "$TMP/keeper2.log" --dir "$TMP/ckpt" --every 1000
start_swarm d 0 1 -- --from-checkpoint keeper
wait_all 60 $SWARM_NODES; all=$?
d=$(loss_at "$TMP/d1.log" "$CK")
msgs "$TMP/d0.log" restored | sed 's/^/# /'
echo "# 2 stages fetched from the keeper: loss at step $CK $d (4 stages: $a)"
[ $all -eq 0 ] || diag_file "$TMP/keeper2.log"
[ $all -eq 0 ] && [ -n "$d" ] && has_event "$TMP/d0.log" restored saved_stages=4 &&
    events "$TMP/d0.log" restored from | grep -q "^keeper " &&
    $PY -c 'import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if abs(a - b) <= 1e-5 * abs(a) else 1)' "$a" "$d"
ok $? "a 2-stage run restarts from the keeper over the network (--from-checkpoint keeper), same loss"
