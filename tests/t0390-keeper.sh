#!/bin/sh
# t0390: a keeper (swarmd keeper) beside a 4-stage run collects every
# stage's state (parameters, AdamW m/v/t, lr_mult, norms) at the same step
# boundary every 8 steps and commits them as one checkpoint, keeping 2; it
# exits once the run's last step is saved.  The nodes save their stages
# locally every 8 steps ([checkpoint] every, --ckpt-dir) and the keeper
# pulls the tensors from those files over the network (CKPT_GET).  swarmctl checkpoint list/verify pass on it,
# and its export loads in swarmsim eval with the loss of swarmsim train's own
# model after the same steps (swarm and swarmsim agree to 1e-5 per step).
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..7"
STEPS=24
write_manifest "$TMP/run.conf" $STEPS 4 "[checkpoint]
every = 8"
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
start_keeper "$TMP/keeper.log" --dir "$TMP/ckpt" --every 8 --keep 2
KP=$KEEPER_PID
start_swarm n 0 1 2 3 -- --ckpt-dir "$TMP/local-%n"
wait_all 120 $SWARM_NODES; all=$?
wait_pid "$KP" 30 && [ "$WAIT_RC" -eq 0 ] && [ $all -eq 0 ]; rc=$?
ckpt_steps "$TMP/keeper.log" | sed 's/^/# keeper committed step /'
[ $rc -eq 0 ] || diag_file "$TMP/keeper.log"
ok $rc "the run trained $STEPS steps and the keeper exited 0 after saving the last step"
msgs "$TMP/keeper.log" ckpt_stage_in | tail -n 4 | sed 's/^/# /'
n_local=$(events "$TMP/keeper.log" ckpt_stage_in step nodes | grep -c "^24 1$")
[ -f "$TMP/local-0/step-00000024/COMMIT" ] && [ -f "$TMP/local-3/step-00000024/COMMIT" ] &&
    [ "$n_local" -eq 4 ]
ok $? "every node saved step 24 locally and the keeper pulled all 4 stages from those saves"
steps=$(ckpt_steps "$TMP/keeper.log" | tr '\n' ' ')
# a step a stage went past before the keeper's request reached it is skipped
# (logged): on a loaded machine 8 or 16 may be missing, never 24
msgs "$TMP/keeper.log" | grep "missed" | sed 's/^/# /'
$PY -c 'import sys; s = [int(x) for x in sys.argv[1:]]; sys.exit(0 if len(s) >= 2 and s[-1] == 24 and all(x % 8 == 0 for x in s) and s == sorted(set(s)) else 1)' $steps
ok $? "the keeper saved every 8 steps and the last step (saved: $steps)"
kept=$(printf '%s\n' $steps | tail -n 2 | tr '\n' ' ')
"$SWARMCTL" checkpoint list --dir "$TMP/ckpt" >"$TMP/list.txt" 2>&1; rc=$?
diag_file "$TMP/list.txt" 5
listed=$(sed -n 's/^step-0*\([0-9][0-9]*\) committed.*/\1/p' "$TMP/list.txt" | sort -n | tr '\n' ' ')
[ $rc -eq 0 ] && [ "$listed" = "$kept" ]
ok $? "swarmctl checkpoint list: the 2 newest ($kept) kept (keep 2), older ones pruned"
"$SWARMCTL" checkpoint verify --dir "$TMP/ckpt" >"$TMP/verify.txt" 2>&1
ok $? "swarmctl checkpoint verify: every tensor of every step is clean"
"$SWARMCTL" checkpoint export --dir "$TMP/ckpt" --out "$TMP/export" >"$TMP/export.txt" 2>&1 &&
    "$SWARMSIM" eval --model "$TMP/export/model.safetensors" --data "$DATA" --seq-len 32 \
        --batch 4 --threads 1 >"$TMP/eval.txt" 2>&1 && grep -q "^loss " "$TMP/eval.txt"
rc=$?
[ $rc -eq 0 ] || { diag_file "$TMP/export.txt"; diag_file "$TMP/eval.txt"; }
ok $rc "swarmctl checkpoint export of step 24 loads in swarmsim eval"
"$SWARMSIM" train --preset tiny --stages 4 --steps $STEPS --seed 1337 --batch 4 --seq-len 32 \
    --micro 4 --lr 3e-3 --warmup 5 --data "$DATA" --threads 1 --sample-tokens 0 \
    --eval-every 0 --ckpt-every 24 --out "$TMP/sim" --log-level warn >"$TMP/sim.log" 2>&1 &&
    "$SWARMSIM" checkpoint export --dir "$TMP/sim/ckpt" --out "$TMP/simexp" >/dev/null 2>&1 &&
    "$SWARMSIM" eval --model "$TMP/simexp/model.safetensors" --data "$DATA" --seq-len 32 \
        --batch 4 --threads 1 >"$TMP/simeval.txt" 2>&1
rc=$?
a=$(sed -n 's/^loss \([0-9.]*\).*/\1/p' "$TMP/eval.txt" | head -n 1)
b=$(sed -n 's/^loss \([0-9.]*\).*/\1/p' "$TMP/simeval.txt" | head -n 1)
echo "# eval loss of the keeper's step 24: $a; of swarmsim train's step 24: $b"
[ $rc -eq 0 ] && $PY -c 'import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if abs(a - b) <= 1e-4 * abs(b) else 1)' "$a" "$b"
ok $? "the keeper's checkpoint is the model swarmsim trains (eval loss to 1e-4)"
