#!/bin/sh
# t0381: admission in owner mode (the default; swarm-protocol(7), ADMISSION).
# A 2-stage run whose every process holds a certificate of the run owner
# trains; a node without a certificate, with an expired one, with one for
# another run, naming another key or another stage cannot join (exit 6); a stranger
# (valid keys and run id, well-formed PREPARE of step + 1000000, a fake
# stage-0 record, STATE_GET, PINGs, one with another run's certificate) gets
# no answer, its messages are counted as admission drops and no handler sees
# them; a replica admitted by a delegate trains, and when the delegate is
# revoked mid-run (`swarmctl revoke`) leaves with exit 6 while the run
# trains on to its last step.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..7"
# the run outlives the revocation (at about step 200) by more than n0's
# 10 s between reads of the list, at 40 steps a second too
STEPS=1000
write_manifest "$TMP/run.conf" $STEPS 2
sign_manifest "$TMP/run.conf"
write_manifest "$TMP/other.conf" 50 2 # another run of the same owner
start_boot "$TMP/run.conf"
start_swarm n 0 "1 --metrics 127.0.0.1:0 --linger-ms 3000"
wait_steps 60 "$TMP/n1.log" 3
ok $? "an owner-mode run trains, each of its processes with a certificate"

# joiners the run refuses: exit 6, before they bind anything
refused() { # refused NAME WANT OPTIONS...: swarmd join exits 6 and logs WANT
    local name=$1 want=$2 rc
    shift 2
    timeout 20 "$SWARMD" join --peer "$BOOT" --threads 1 "$@" >"$TMP/$name.log" 2>&1
    rc=$?
    if [ $rc -ne 6 ] || ! grep -q "not admitted.*$want" "$TMP/$name.log"; then
        echo "# $name: exit $rc, want 6 and 'not admitted ... $want'"
        diag_file "$TMP/$name.log" 5
        return 1
    fi
}
r=0
refused nocert "certified" --stage 1 || r=1
admit foreign -1 "$TMP/other.conf"
refused foreign "another run" --stage 1 $ADMIT_OPTS || r=1
admit x
CERT_X=$TMP/keys/x.$KEYN.cert
admit y
refused othernode "another key" --stage 1 --key "$ADMIT_KEY" --cert "$CERT_X" || r=1
admit s1 1
refused otherstage "stage 1 only" --stage 0 $ADMIT_OPTS || r=1
admit expired # its certificate again, expired in 2001
"$SWARMCTL" admit --key "$OWNER_DIR" --manifest "$TMP/run.conf" --expires 1000000000 \
    --node "$("$SWARMCTL" key --key "$ADMIT_KEY")" -o "$ADMIT_KEY.cert" >>"$TMP/admit.log"
refused expired "has expired" --stage 1 $ADMIT_OPTS || r=1
ok $r "no certificate, an expired one, another run's, another key's, another stage's: refused with exit 6"

# a stranger; swarmctl reads the run without a certificate (a DHT client)
# (a busy machine may answer a read late: read again, with time to spare)
eps() {
    EPS=$("$SWARMCTL" peers --peer "$BOOT" --json --deadline-ms 2000 2>>"$TMP/peers.err" |
        "$PY" -c 'import json,sys; print(" ".join("%d=%s" % (p["stage"], p["endpoint"]) for p in json.load(sys.stdin)))')
    [ "$(echo "$EPS" | wc -w)" -eq 2 ]
}
for _ in 1 2 3 4 5; do eps && break; sleep 1; done
echo "# nodes: $EPS"
"$SWARMCTL" admit --key "$OWNER_DIR" --manifest "$TMP/other.conf" \
    --node "$("$BUILD/tests/test_peers_stranger" --key)" -o "$TMP/foreign.cert" >>"$TMP/admit.log"
"$BUILD/tests/test_peers_stranger" "$TMP/run.conf" 2.5 "$TMP/foreign.cert" $EPS \
    >"$TMP/stranger.log" 2>&1
rc=$?
cat "$TMP/stranger.log"
[ $rc -eq 0 ] && [ "$(echo "$EPS" | wc -w)" -eq 2 ]
ok $? "swarmctl peers lists the 2 nodes; the stranger's requests to them got no answer"
metrics "$(metrics_port "$TMP/n1.log")" >"$TMP/metrics.txt"
grep 'admit\|unknown_sender\|banned' "$TMP/metrics.txt" | grep -v '^#' | sed 's/^/# /'
"$PY" - "$TMP/metrics.txt" <<'EOT'
import re, sys
m = dict(re.findall(r'^(swarm_\S+) (\S+)$', open(sys.argv[1]).read(), re.M))
def v(k): return float(m.get(k, 0))
ok = (v('swarm_wire_dropped_total{reason="admit"}') > 0 and
      v('swarm_admit_refused_total{reason="nocert"}') > 0 and
      v('swarm_admit_refused_total{reason="run"}') > 0 and
      # a few honest ones count there too (a PREPARE of a leader not yet in
      # the table, at start-up); the stranger's hundreds would show
      v('swarm_node_dropped_total{reason="unknown_sender"}') < 10 and
      v('swarm_node_dropped_total{reason="banned"}') == 0)
sys.exit(0 if ok else 1)
EOT
ok $? "a node counted them as admission drops (nocert, run) and no handler saw one"

# a replica of stage 1 admitted by a delegate of the owner; the delegate is
# revoked once the replica trains
admit delegate
DKEY=$ADMIT_KEY
"$SWARMCTL" admit --key "$OWNER_DIR" --manifest "$TMP/run.conf" --delegate \
    --node "$("$SWARMCTL" key --key "$DKEY")" -o "$DKEY.cert" >>"$TMP/admit.log"
admit n1b
"$SWARMCTL" admit --key "$DKEY" --cert "$DKEY.cert" --manifest "$TMP/run.conf" \
    --node "$("$SWARMCTL" key --key "$ADMIT_KEY")" -o "$ADMIT_KEY.cert" >>"$TMP/admit.log"
start_bg "$TMP/n1b.log" "$SWARMD" join --peer "$BOOT" --stage 1 --threads 1 --log-format json \
    $ADMIT_OPTS
P1B=$LAST_PID
REVOKED=$("$SWARMCTL" key --key "$DKEY")
wait_for 60 grep -q '"event":"step"' "$TMP/n1b.log"
"$SWARMCTL" revoke --key "$OWNER_DIR" --peer "$BOOT" "$REVOKED" >"$TMP/revoke.log" 2>&1
rc=$?
cat "$TMP/revoke.log" | sed 's/^/# /'
rev_step=$(last_step "$TMP/n1.log")
wait_pid "$P1B" 40 && [ "$WAIT_RC" -eq 6 ] && [ $rc -eq 0 ] && grep -q 'revoked' "$TMP/n1b.log"
ok $? "a replica admitted by a delegate trained; the delegate revoked at step $rev_step, it left with exit 6"
# the replica can leave before n0's next read of the list (every 10 s)
[ "$rev_step" -lt $((STEPS - 1)) ] && wait_for 25 grep -q 'revocation list' "$TMP/n0.log"
ok $? "the revocation came mid-run and the other nodes read the list"
wait_all 240 $SWARM_NODES && [ "$(last_step "$TMP/n1.log")" -eq $((STEPS - 1)) ]
ok $? "the run trained on to its last step, and its nodes exited 0"
