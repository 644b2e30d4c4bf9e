#!/bin/sh
# t0305: a microbatch whose activations are larger than one message
# (issue 13, item 1).  66560 tokens a microbatch (1040 sequences of 64) of
# a narrow model (d_model 64, 2 blocks, 2 stages): each FWD carries 17.3 MB
# of float32 activations and targets and each BWD 17.0 MB of gradients,
# above SW_WIRE_MAX_PAYLOAD (16 MiB), so both go in pieces of 8 MiB
# (swarm-protocol(7), FWD and BWD).  On the code before, the step stalled
# for good ("message too large").  The losses must equal swarmsim's for the
# same model and batch to 1e-5 relative: the pieces were put together right.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..3"
STEPS=3
M_SEQ_LEN=64
M_BATCH=1040
M_MICRO=1
narrow_swarm
wait_all 300 $SWARM_NODES
ok $? "2 stages, microbatches of 66560 tokens (FWD and BWD of 17 MB): $STEPS steps, exit 0"

sim_narrow
ok $? "swarmsim train of the same model and batch ran"
match_sim "$TMP/sim" $STEPS "$TMP/n1.log"
ok $? "the swarm's losses equal swarmsim's to 1e-5 relative"
