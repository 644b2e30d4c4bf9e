#!/bin/sh
# t0306: forwards and backwards run on the stage's own compute thread, so
# the node's event loop is never held by a block of compute (issue 13,
# item 4): it answers pings, publishes its record and takes messages while
# a block computes.  A narrow, deep model (d_model 64, 8 blocks, 4 a stage)
# with microbatches of 8192 tokens: each visit computes for a good part of
# a second, its messages are 2 MiB.  Each step line says how long the node
# computed in the step (compute_ms, 4 visits) and the longest its loop was
# held by one call into the training (held_ms).  On the code before, the
# loop ran every forward and backward itself: held_ms was at least one
# visit's compute.  Here it must stay under half of an average visit's
# (compute_ms / 8), side by side in the same run; and the losses still
# equal swarmsim's: computing apart changes no result.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..3"
STEPS=4
M_SEQ_LEN=64
M_BATCH=256
M_MICRO=2
NARROW_LAYERS=8
narrow_swarm
wait_all 300 $SWARM_NODES
ok $? "2 stages of 4 blocks, microbatches of 8192 tokens: $STEPS steps, exit 0"

# "stage step compute_ms held_ms" of every step line after a node's first
# (its compute_ms is -1 there)
held() {
    sed -n 's/^{"event":"step","step":\([0-9]*\),"stage":\([0-9]*\),.*"compute_ms":\([0-9]*\),"held_ms":\([0-9]*\)}$/\2 \1 \3 \4/p' "$@"
}
held "$TMP/n0.log" "$TMP/n1.log" >"$TMP/held"
sed 's/^/# stage step compute_ms held_ms: /' "$TMP/held"
[ "$(wc -l <"$TMP/held")" -ge $((2 * (STEPS - 1))) ] &&
    awk '{ if ($4 * 8 >= $3) bad = 1 } END { exit bad }' "$TMP/held"
ok $? "every step: the loop was held under an eighth of the step's compute (half a visit)"

sim_narrow
match_sim "$TMP/sim" $STEPS "$TMP/n1.log"
ok $? "the swarm's losses equal swarmsim's to 1e-5 relative"
