#!/bin/sh
# t0385: floods of valid, correctly signed requests at one node while a
# 4-stage run trains (issue 12, floods): 20000 transport PINGs from one key,
# 2000 STATE_GETs from another, 5 PINGs from each of 2000 fresh keys.  The
# node answers at most its limits' bursts plus their rates over the flood's
# time (swarm-protocol(7) RATE LIMITS), counts the rest in
# swarm_ratelimit_drops_total (or as "admit" drops, where the run admits its
# members only), and the run is unaffected: no pipeline message is lost (its
# losses are swarmsim's to 1e-5).
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..5"
STEPS=200
write_manifest "$TMP/run.conf" $STEPS 4
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
start_swarm n 0 1 "2 --metrics 127.0.0.1:0 --linger-ms 8000" 3
wait_steps 60 "$TMP/n3.log" 3
EP=$("$SWARMCTL" peers --peer "$BOOT" --json | "$PY" -c 'import json,sys; print(next(p["endpoint"] for p in json.load(sys.stdin) if p["stage"] == 2))')
"$BUILD/tests/test_peers_flood" "$TMP/run.conf" 2 "$EP" 20000 >"$TMP/flood.log" 2>&1; rc=$?
flood_end=$(last_step "$TMP/n3.log")
cat "$TMP/flood.log"
echo "# the flood ran from step 3 to step $flood_end"
[ $rc -eq 0 ] && [ -n "$EP" ] && [ "$flood_end" -lt $((STEPS - 1)) ]
ok $? "the flood was sent while the run trained"
# per key PING 20/s burst 100; STATE_GET 128/s burst 1024; fresh keys share
# PING's global bucket, 160/s burst 800 (peers/node.c, net/transport.h)
"$PY" - "$TMP/flood.log" <<'EOT'
import re, sys
m = re.search(r'answered PING (\d+) STATE (\d+) FRESH (\d+) SECONDS ([\d.]+)', open(sys.argv[1]).read())
p, s, f, t = int(m.group(1)), int(m.group(2)), int(m.group(3)), float(m.group(4))
lim = [(p, 100 + 20 * t), (s, 1024 + 128 * t), (f, 800 + 160 * t)]
print("# answered %d PINGs, %d STATE_GETs, %d fresh PINGs in %.1f s; bounds %s" %
      (p, s, f, t, ", ".join("%.0f" % b for _, b in lim)))
sys.exit(0 if all(a <= b + 1 for a, b in lim) else 1)
EOT
ok $? "the node answered within burst + rate * t for each limit"
metrics "$(metrics_port "$TMP/n2.log")" >"$TMP/metrics.txt"
grep 'ratelimit\|reason="stale"\|reason="replay"' "$TMP/metrics.txt" | grep -v '^#' | sed 's/^/# /'
"$PY" - "$TMP/metrics.txt" "$TMP/flood.log" <<'EOT'
import re, sys
m = dict(re.findall(r'^(swarm_\S+) (\S+)$', open(sys.argv[1]).read(), re.M))
a = re.search(r'answered PING (\d+) STATE (\d+) FRESH (\d+)', open(sys.argv[2]).read())
p, s, f = int(a.group(1)), int(a.group(2)), int(a.group(3))
def v(k): return float(m.get(k, 0))
ping, state = v('swarm_ratelimit_drops_total{type="ping"}'), v('swarm_ratelimit_drops_total{type="state_get"}')
wire, admit = v('swarm_wire_dropped_total{reason="ratelimit"}'), v('swarm_wire_dropped_total{reason="admit"}')
# every flood message not answered was dropped by a limit (honest drops would
# only add), or, in a run that admits members only, before it as "admit"
ok = (wire + admit >= 32000 - p - s - f and wire >= ping + state and
      (admit > 0 or (ping >= 30000 - p - f and state >= 2000 - s)) and
      'swarm_ratelimit_drops_total{type="ping"}' in m and 'swarm_ratelimit_drops_total{type="dht"}' in m)
sys.exit(0 if ok else 1)
EOT
ok $? "the flooded node counted the drops per type in its metrics"
wait_all 60 $SWARM_NODES
ok $? "4 nodes trained $STEPS steps and exited 0"
"$SWARMSIM" train --preset tiny --stages 4 --steps $STEPS --seed 1337 --batch 4 --seq-len 32 \
    --micro 4 --lr 3e-3 --warmup 5 --data "$DATA" --threads 1 --sample-tokens 0 \
    --eval-every 0 --out "$TMP/sim" --log-level warn >"$TMP/sim.log" 2>&1
match_sim "$TMP/sim" $STEPS "$TMP/n3.log"
ok $? "the run is unaffected: its losses are swarmsim's to 1e-5"
