#!/bin/sh
# t0416: busy nodes are not declared dead (issue 13, item 4; peers/live.h,
# Busy nodes).  A 2-stage run of the medium preset (batch 8 x 128 tokens in
# 4 microbatches, one thread a node) with the shortest dead time swarmd
# takes, --dead-ms 500: a block of compute holds a node's loop longer than
# a ping's 167 ms, so before its record said how long ("blk"), its peers
# declared it dead while it computed.  Since then forwards and backwards
# run on a compute thread (t0306); what still holds the loop is the update,
# the parameter hash and the big messages (256-268 ms here, 2026-12-05;
# 1.6-2.1 s when the loop computed).  Now:
#   - each node's metrics show its longest block (above 0: measured);
#   - 8 steps train, and no node declares another dead;
#   - kill -9 of the stage-1 node: the stage-0 node declares it dead within
#     its dead time plus its block (its port refused at once on loopback).
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..3"

watchdog 240

M_PRESET=medium M_BATCH=8 M_SEQ_LEN=128 write_manifest "$TMP/run.conf" 100000 2
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf" --dead-ms 500
for s in 0 1; do
    start_node "$TMP/n$s.log" $s --dead-ms 500 --metrics 127.0.0.1:0
    eval "P$s=\$NODE_PID"
done

STEPS=8
wait_steps 180 "$TMP/n1.log" $STEPS; rc=$?
blk0=$(metrics "$(metrics_port "$TMP/n0.log")" | sed -n 's/^swarm_node_loop_block_ms //p')
blk1=$(metrics "$(metrics_port "$TMP/n1.log")" | sed -n 's/^swarm_node_loop_block_ms //p')
echo "# longest block: stage 0 ${blk0:-?} ms, stage 1 ${blk1:-?} ms"
[ $rc -eq 0 ] && [ "${blk0:-0}" -gt 0 ] && [ "${blk1:-0}" -gt 0 ]
ok $? "each node publishes the longest block of its loop"

deaths=$(cat "$TMP/n0.log" "$TMP/n1.log" "$TMP/boot.log" | grep -c '"event":"declared_dead"')
[ $rc -eq 0 ] || { diag_file "$TMP/n0.log"; diag_file "$TMP/n1.log"; }
msgs "$TMP/n0.log" | grep "declared dead" | sed 's/^/# n0: /' | head -n 5
msgs "$TMP/n1.log" | grep "declared dead" | sed 's/^/# n1: /' | head -n 5
[ $rc -eq 0 ] && [ "$deaths" -eq 0 ]
ok $? "$STEPS steps trained with --dead-ms 500 and no node declared dead ($deaths deaths)"

kill -9 "$P1"
wait_for 30 has_event "$TMP/n0.log" declared_dead stage=1; rc=$?
msgs "$TMP/n0.log" | grep "declared dead" | sed 's/^/# /'
[ $rc -eq 0 ]
ok $? "a killed node is still declared dead"
