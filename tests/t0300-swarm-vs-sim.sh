#!/bin/sh
# t0300: 4 stages in 4 processes plus a bootstrap on loopback follow
# swarmsim train's loss trajectory (same manifest, seed, data) for 24 steps
# to <= 1e-5 relative per step.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..4"
STEPS=24
write_manifest "$TMP/run.conf" $STEPS 4
sign_manifest "$TMP/run.conf"
ok $? "manifest signed"
OWNER=$(key_id)
start_boot "$TMP/run.conf" --owner "$OWNER"
start_swarm n 0 1 2 3 -- --owner "$OWNER"
wait_all 90 $SWARM_NODES
ok $? "4 nodes trained $STEPS steps and exited 0"
"$SWARMSIM" train --preset tiny --stages 4 --steps $STEPS --seed 1337 --batch 4 --seq-len 32 \
    --micro 4 --lr 3e-3 --warmup 5 --data "$DATA" --threads 1 --sample-tokens 0 \
    --eval-every 0 --out "$TMP/sim" --log-level warn >"$TMP/sim.log" 2>&1
ok $? "swarmsim train ran"
match_sim "$TMP/sim" $STEPS "$TMP/n3.log"
ok $? "swarm losses match swarmsim to 1e-5 relative"
