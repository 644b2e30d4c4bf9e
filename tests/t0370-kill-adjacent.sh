#!/bin/sh
# t0370: the nodes of two adjacent stages (1 and 2 of 4) are killed with -9.
# CheckFree cannot rebuild either (each lost its other neighbour) and the
# run keeps no checkpoint: every surviving node stops within a bounded time
# with a message naming the lost stages and what would recover them, and
# exits 5 (swarmd(1), EXIT STATUS); a newcomer for the run exits 5 too,
# also after every record but the survivors' last ones expired.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..4"
write_manifest "$TMP/run.conf" 100000 4
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
start_swarm n 0 1 2 3
wait_steps 60 "$TMP/n3.log" 10
kill -9 "$P1" "$P2"
t_kill=$(now_ms)
r0=1; r3=1
wait_pid "$P0" 25 && r0=$WAIT_RC
wait_pid "$P3" 25 && r3=$WAIT_RC
t_stop=$(now_ms)
echo "# stages 1 and 2 killed; the survivors stopped $((t_stop - t_kill)) ms later (exit $r0 and $r3)"
grep -h "cannot go on" "$TMP/n0.log" | sed 's/^/# /'
[ "$r0" -eq 5 ] && [ "$r3" -eq 5 ] && [ $((t_stop - t_kill)) -le 20000 ]
ok $? "both survivors stopped within 20 s with exit status 5"
# each names the stages it found lost and what would recover them (one may see
# the other leave first, and name that stage)
grep -q "lost stages\{0,1\} [0-9, ]*: .*checkpoint" "$TMP/n0.log" &&
    grep -q "lost stages\{0,1\} [0-9, ]*: .*checkpoint" "$TMP/n3.log" &&
    grep -q "lost stages [0-9, ]*1, 2[,:] .*adjacent" "$TMP/n0.log" "$TMP/n3.log"
ok $? "their message names the lost stages and what would recover them"
# the newcomer comes once the killed nodes' records expired (ttl 10 s from
# their last put), as when the survivors are slow to stop: it used to find
# an empty table and train the run from the seed (a CI run, 2026-12-07);
# the survivors' last records say the run is lost, for an hour
sleep $((11 - ($(now_ms) - t_kill) / 1000 > 0 ? 11 - ($(now_ms) - t_kill) / 1000 : 0))
start_node "$TMP/new.log" auto
wait_pid "$NODE_PID" 30; rc=$?
grep -h "cannot recover" "$TMP/new.log" | sed 's/^/# /'
[ $rc -eq 0 ] && [ "$WAIT_RC" -eq 5 ] && grep -q "cannot recover stage .*lost stages" "$TMP/new.log"
ok $? "a newcomer cannot recover them either: exit 5 with the reason"
"$SWARMCTL" status --peer "$BOOT" >/dev/null; rc=$?
[ $rc -eq 1 ]; ok $? "status says degraded (exit $rc)"
