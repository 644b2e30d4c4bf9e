#!/bin/sh
# t0399: a second signal never kills a node.  swarmd(1) promises exit 0 on
# SIGTERM or SIGINT, a second one included; the signal handles used to
# close while the teardown still ran (libuv puts the default action back
# when the last handle of a signal closes), so a second signal that came
# during the teardown ended the process with 143 (2 to 4 of 8 trials).
# Eight trials on a replica of stage 1 of a training 2-stage run: once it
# trained a step it gets SIGTERM and, a varied moment later, a second
# SIGTERM (SIGINT then SIGTERM in every other trial) and then a burst of
# both while it exits; each trial must exit 0.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..2"
write_manifest "$TMP/run.conf" 100000 2
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
start_swarm n 0 1
wait_steps 60 "$TMP/n1.log" 2
ok $? "a 2-stage run trains"
codes=""
bad=0
t=1
for delay in 0 0.02 0.05 0.1 0.2 0.4 0.8 1.5; do
    log=$TMP/r$t.log
    start_node "$log" 1
    pid=$NODE_PID
    if ! wait_for 60 has_event "$log" step; then
        echo "# trial $t: the replica never trained a step"; diag_file "$log" 5
        bad=$((bad + 1)); codes="$codes -"; kill -9 "$pid" 2>/dev/null; t=$((t + 1)); continue
    fi
    # how it joined (a copy refused as 'ahead' of lagging records once kept
    # it from ever training: recover.c, copy_verify)
    msgs "$log" | grep -E "copied stage|refused the copy" | sed "s/^/# trial $t: /" | cut -c1-200
    first=TERM
    [ $((t % 2)) -eq 0 ] && first=INT
    kill -$first "$pid"
    sleep "$delay"
    kill -TERM "$pid" 2>/dev/null
    # and more while it tears down, until it is gone
    for _ in $(seq 40); do
        kill -0 "$pid" 2>/dev/null || break
        kill -TERM "$pid" 2>/dev/null; sleep 0.005; kill -INT "$pid" 2>/dev/null; sleep 0.02
    done
    if wait_pid "$pid" 30; then rc=$WAIT_RC; else rc=running; kill -9 "$pid" 2>/dev/null; fi
    codes="$codes $rc"
    if [ "$rc" != 0 ]; then
        echo "# trial $t ($first, then TERM $delay s later): exit $rc"; diag_file "$log" 8
        bad=$((bad + 1))
    fi
    t=$((t + 1))
done
echo "# exit statuses of the 8 trials:$codes"
[ $bad -eq 0 ]
ok $? "8 nodes given two signals (and more during their teardown) exited 0"
