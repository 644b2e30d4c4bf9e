# attack-lib.sh - shared by the attack tests t0382-t0384 and t0420 (sourced after
# peers-lib.sh): the hostile helper tests/test_peers_attack (issue 12) in
# the background, and what the tests check after each attack.
ATTACK=$BUILD/tests/test_peers_attack

# The attacks run in an OPEN run ([admission] mode = open: strangers take
# part), where only authenticated roles, verified state and per-key limits
# defend it; write_manifest writes the mode (once admission exists).
export M_ADMISSION=open

# attack_run STEPS NODE...: the run attacked: 4 stages of STEPS steps,
# owner-signed, its bootstrap and start_swarm n NODE... (LOG_LAST: the last
# stage's log), once it trained 5 steps
attack_run() {
    write_manifest "$TMP/run.conf" "$1" 4
    shift
    sign_manifest "$TMP/run.conf"
    start_boot "$TMP/run.conf"
    start_swarm n "$@"
    LOG_LAST=$LOG_3
    wait_steps 60 "$LOG_LAST" 5
}

# node_eps: "STAGE=ENDPOINT ..." of the run's nodes (swarmctl peers)
node_eps() {
    "$SWARMCTL" peers --peer "$BOOT" --json |
        "$PY" -c 'import json,sys; print(" ".join("%d=%s" % (p["stage"], p["endpoint"]) for p in json.load(sys.stdin)))'
}

# attack_start NAME SECONDS MODE ARGS...: the helper in the background,
# its output in $TMP/attack-NAME.log; waits until it is in the run (its
# first line) and sets APID, ALOG, AEP (its run endpoint) and A0 (the last
# stage's step when it began)
attack_start() {
    local name=$1 secs=$2
    shift 2
    ALOG=$TMP/attack-$name.log
    start_bg "$ALOG" "$ATTACK" "$TMP/run.conf" "$BOOT" "$secs" "$@"
    APID=$LAST_PID
    wait_for 30 grep -q "^# attack: $1 from" "$ALOG"
    AEP=$(sed -n "s/^# attack: $1 from \([^ ]*\) .*/\1/p" "$ALOG" | head -n 1)
    A0=$(last_step "$LOG_LAST")
}

# attack_stop: SIGTERM the helper (it prints what it received) and wait
attack_stop() {
    kill -TERM "$APID" 2>/dev/null
    wait_pid "$APID" 30 || kill -9 "$APID" 2>/dev/null
    sed 's/^\([^#]\)/# \1/' "$ALOG"
}

# attack_during NAME SECONDS MODE ARGS...: attack_start, then the run is
# to train 10 more steps within 90 s (advancing: that it trains on, not how
# fast; bench/attack_bench.sh measures the throughput under each attack),
# then attack_stop; RC: 0 when it did and the helper was in the run
attack_during() {
    attack_start "$@"
    advancing 10 90; RC=$?
    attack_stop
    [ -n "$AEP" ] || RC=1
}

# advancing N SECONDS: the last stage completes N more steps after the
# attack began (A0) within SECONDS (a bound for a stalled run, not a measure)
advancing() {
    wait_steps "$2" "$LOG_LAST" $((A0 + $1)); local rc=$?
    echo "# the last stage was at step $A0 when the attack began, at $(last_step "$LOG_LAST") now"
    return $rc
}

# received TYPE: how many TYPE messages the helper says it received
received() { sed -n "s/^# attack: received.* $1=\([0-9]*\).*/\1/p" "$ALOG" | tail -n 1; }

# copied_from_attacker: 0 when some node's log says it copied state from
# the helper's endpoint (a copy done, or a recovery event naming it)
copied_from_attacker() {
    [ -n "$AEP" ] && cat "$TMP"/n*.log "$TMP"/new*.log 2>/dev/null | grep -F "$AEP" |
        grep -q -e "copied" -e '"event":"recovery"'
}

# want N: attack N is to run (ATTACKS="1 3" runs only those; default all),
# so that a failing attack that stalls the run can be looked at alone
want() { [ -z "${ATTACKS:-}" ] || case " $ATTACKS " in *" $1 "*) true ;; *) false ;; esac; }

# skip N DESCRIPTION...: the TAP lines of an attack left out
skip() { shift; for d in "$@"; do ok 0 "$d # SKIP not in ATTACKS"; done; }

# attack_finish SECONDS: let the helper end by itself (a flood sends all it
# was told to), SIGTERM after SECONDS
attack_finish() {
    wait_pid "$APID" "$1" || attack_stop
    sed 's/^\([^#]\)/# \1/' "$ALOG"
}
