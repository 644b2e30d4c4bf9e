#!/bin/sh
# t0300: 4 stages in 4 processes plus a bootstrap on loopback follow
# swarmsim train's loss trajectory (same manifest, seed, data) for 24 steps
# to <= 1e-5 relative per step.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..4"
STEPS=24
write_manifest "$TMP/run.conf" $STEPS 4
"$SWARMCTL" manifest sign --run "$TMP/run.conf" --key "$TMP/owner" >"$TMP/sign.log" 2>&1
ok $? "manifest signed"
OWNER=$("$SWARMCTL" key --key "$TMP/owner")
start_boot "$TMP/run.conf" --owner "$OWNER"
for s in 0 1 2 3; do
    start_node "$TMP/n$s.log" $s --owner "$OWNER"
    eval "P$s=\$NODE_PID"
done
all=0
for s in 0 1 2 3; do
    eval "p=\$P$s"
    if wait_pid "$p" 90 && [ "$WAIT_RC" -eq 0 ]; then :; else all=1; echo "# node $s did not finish"; diag_file "$TMP/n$s.log"; fi
done
ok $all "4 nodes trained $STEPS steps and exited 0"
"$SWARMSIM" train --preset tiny --stages 4 --steps $STEPS --seed 1337 --batch 4 --seq-len 32 \
    --micro 4 --lr 3e-3 --warmup 5 --data "$DATA" --threads 1 --sample-tokens 0 \
    --eval-every 0 --out "$TMP/sim" --log-level warn >"$TMP/sim.log" 2>&1
ok $? "swarmsim train ran"
match_sim "$TMP/sim" $STEPS "$TMP/n3.log"
ok $? "swarm losses match swarmsim to 1e-5 relative"
