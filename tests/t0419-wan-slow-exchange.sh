#!/bin/sh
# t0419: replicas whose partial gradients take longer over their link than
# the leader's PREPARE timeout still take every step together (issue 13,
# item 4; peers/lead.h, Exchanges).  2 stages of a wide model (d_model 512,
# SwiGLU 1536, 2 blocks a stage: 27 MB of float32 partials), stage 1 on two
# nodes from the start, every process on a host of its own, each access
# link 10 ms one way and 20 Mbit/s: each replica's partial takes 11 s, the
# leader's next PREPARE times out after 5 s.  On the code before, the
# replicas' READYs waited for the exchange, the round went without them,
# and they copied their stage's state again (which the next round again
# outlasted).  Now a replica whose partial pieces still come in answers
# "busy" at once, and the round waits for it:
#   - the leader logs that it waited for a replica summing the step before;
#   - the two replicas take their first 4 steps together (the same
#     gradient norm at each: each summed the other's partial), and neither
#     copied its stage's state.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/wan-lib.sh"
wan_need
echo "1..3"

watchdog 300

wan_wide_run delay=10,rate=20,queue=100
# stage 1's two nodes first: the first step, planned once a node of each
# stage is in, then has both (a replica that comes later copies its state,
# t0418)
wan_node "$TMP/n1.log" s1 1
wan_node "$TMP/n1b.log" s1b 1
seeded() { grep -q "initialised from the run seed" "$1"; }
wait_for 60 seeded "$TMP/n1.log" && wait_for 60 seeded "$TMP/n1b.log"
wan_node "$TMP/n0.log" s0 0
wait_steps 240 "$TMP/n1.log" 4 && wait_steps 60 "$TMP/n1b.log" 4; rc=$?
msgs "$TMP/n1.log" | grep "^info: stage 1 of 2" | sed 's/^/# /'
both=$(both_steps "$TMP/n1.log" "$TMP/n1b.log" 3)
copies=$( (msgs "$TMP/n1.log"; msgs "$TMP/n1b.log") | grep -c "copying stage")
echo "# steps 0-3 both replicas took together: $both; copies started: $copies; the run at $(last_step "$TMP/n1.log")"
[ $rc -eq 0 ] || { diag_file "$TMP/n1b.log"; diag_file "$TMP/n0.log"; }
[ $rc -eq 0 ] && [ "$both" -eq 4 ] && [ "$copies" -eq 0 ]
ok $? "the replicas took steps 0-3 together, neither copied its state"

msgs "$TMP/n0.log" | grep "sums its replicas' gradients" | sed 's/^/# n0: /' | head -n 3
msgs "$TMP/n0.log" | grep -q "sums its replicas' gradients"
ok $? "the leader's rounds waited for the replicas summing the step before"
