#!/bin/sh
# t0301: under recovery.mode checkfree+ the swarm runs CheckFree+'s swapped
# route on every odd microbatch (stages 0 and S-1 visited twice) and the
# embedding/head replicas reach the partners.  Six processes (two on each
# boundary stage, so the swapped visits also run on replicas, which sum
# their partial gradients) follow swarmsim train --recovery checkfree+ (the
# same swapped route in one process) for 16 steps to <= 1e-5 relative per
# step.  The leader starts once every stage has a node, so one of a stage's
# two nodes may join a few steps in (by copy): the losses are read from both
# stage-3 logs.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..6"
STEPS=16
write_manifest "$TMP/run.conf" $STEPS 4 "[recovery]
mode = checkfree+"
sign_manifest "$TMP/run.conf"
ok $? "manifest signed"
OWNER=$(key_id)
start_boot "$TMP/run.conf" --owner "$OWNER"
start_swarm n 0 0b 1 2 3 3b -- --owner "$OWNER" --log-level debug
wait_all 90 $SWARM_NODES
ok $? "6 nodes trained $STEPS steps with the swapped route and exited 0"
"$SWARMSIM" train --preset tiny --stages 4 --steps $STEPS --seed 1337 --batch 4 --seq-len 32 \
    --micro 4 --lr 3e-3 --warmup 5 --data "$DATA" --threads 1 --sample-tokens 0 \
    --eval-every 0 --recovery checkfree+ --out "$TMP/sim" --log-level warn >"$TMP/sim.log" 2>&1
ok $? "swarmsim train --recovery checkfree+ ran"
match_sim "$TMP/sim" $STEPS "$TMP/n3.log" "$TMP/n3b.log"
ok $? "swarm losses match swarmsim's swapped route to 1e-5 relative"
! for f in "$TMP"/n*.log; do has_event "$f" param_mismatch && break; done
ok $? "the replicas of the boundary stages stayed bit-identical"
# the partners got the owners' replicas (stage 1: embedding, stage 2 = S-2: head)
n1=$(grep -c 'replica .* step' "$TMP/n1.log")
n2=$(grep -c 'replica .* step' "$TMP/n2.log")
test "$n1" -ge $((STEPS - 1)) && test "$n2" -ge $((STEPS - 1))
ok $? "stages 1 and 2 received the embedding and head replicas ($n1 and $n2 updates)"
