#!/bin/sh
# t0380: a rogue process sends garbage frames, forged messages (bad
# signature), messages of another run, tensors of the wrong shape, tensors
# holding NaN, well-formed tensors from a key no node knows and malformed
# STATE_GET requests, to every node, while a 4-stage run trains.  The run is unaffected (its losses are
# swarmsim's to 1e-5), and the counters show the drops and the bans.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..4"
STEPS=80
# an open run ([admission] mode = open): in owner mode the strangers would be
# dropped before any of the checks this test is about (t0381 is that case)
M_ADMISSION=open write_manifest "$TMP/run.conf" $STEPS 4
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
start_swarm n 0 1 "2 --metrics 127.0.0.1:0 --linger-ms 8000" 3
wait_steps 60 "$TMP/n3.log" 3
EPS=$("$SWARMCTL" peers --peer "$BOOT" --json | "$PY" -c 'import json,sys; print(" ".join("%d=%s" % (p["stage"], p["endpoint"]) for p in json.load(sys.stdin)))')
"$BUILD/tests/test_peers_rogue" "$TMP/run.conf" 2.5 $EPS >"$TMP/rogue.log" 2>&1; rc=$?
rogue_end=$(last_step "$TMP/n3.log")
cat "$TMP/rogue.log"
echo "# the rogue was active from step 3 to step $rogue_end"
[ $rc -eq 0 ] && [ -n "$EPS" ] && [ "$rogue_end" -lt $((STEPS - 1)) ]
ok $? "the rogue sent its messages while the run trained"
metrics "$(metrics_port "$TMP/n2.log")" >"$TMP/metrics.txt"
grep 'dropped_total\|bans_total' "$TMP/metrics.txt" | grep -v '^#' | grep -v ' 0$' | sed 's/^/# /'
"$PY" - "$TMP/metrics.txt" <<'EOT'
import re, sys
m = dict(re.findall(r'^(swarm_\S+) (\S+)$', open(sys.argv[1]).read(), re.M))
def v(k): return float(m.get(k, 0))
want = ['swarm_wire_dropped_total{reason="malformed"}', 'swarm_wire_dropped_total{reason="signature"}',
        'swarm_wire_dropped_total{reason="run"}', 'swarm_wire_dropped_total{reason="nonfinite"}',
        'swarm_node_dropped_total{reason="banned"}', 'swarm_node_dropped_total{reason="unknown_sender"}',
        'swarm_node_dropped_total{reason="shape"}']
bad = [k for k in want if v(k) <= 0]
if bad: print("# no drops counted for: %s" % bad)
sys.exit(0 if not bad and v("swarm_node_bans_total") >= 3 else 1)
EOT
ok $? "a node counted every kind of drop and banned the senders of bad tensors and of a malformed request"
wait_all 60 $SWARM_NODES
ok $? "4 nodes trained $STEPS steps and exited 0"
"$SWARMSIM" train --preset tiny --stages 4 --steps $STEPS --seed 1337 --batch 4 --seq-len 32 \
    --micro 4 --lr 3e-3 --warmup 5 --data "$DATA" --threads 1 --sample-tokens 0 \
    --eval-every 0 --out "$TMP/sim" --log-level warn >"$TMP/sim.log" 2>&1
match_sim "$TMP/sim" $STEPS "$TMP/n3.log"
ok $? "the run is unaffected: its losses are swarmsim's to 1e-5"
