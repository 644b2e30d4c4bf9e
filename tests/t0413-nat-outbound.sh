#!/bin/sh
# t0413: an outbound-only node (issue 14, item 2), on the NAT test network
# (wan-lib.sh).  Every process on a host of its own, each access link 10 ms
# one way.  A 4-stage checkfree run of the tests' tiny model whose stage-2
# node sits behind a NAT of its own, no port forwarded; everything else is
# public:
#   - the NATed node's verdict is "not reachable", it serves as an
#     outbound-only node (its record's endpoint is key:<its key>), and the
#     run trains: its first 24 losses equal swarmsim's;
#   - swarmctl status, from a public host, shows the node's mode;
#   - kill -9 of the NATed node; a NATed newcomer (--stage auto, behind a
#     NAT of its own) rebuilds stage 2 by CheckFree and serves as an
#     outbound-only node too; 20 steps later the loss is finite.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/wan-lib.sh"
wan_need
wan_need_nat
echo "1..7"

watchdog 200

L=delay=10
wan_start b:1:$L s0:10:$L s1:11:$L s2:12:nat,$L s3:13:$L a:20:nat,$L c:30:$L
ok $? "7 hosts on $WNET.0/24, s2 and a each behind a NAT of its own, 10 ms links"

STEPS=24
wan_tiny_run b
for s in 0 1 2 3; do
    if [ $s = 2 ]; then wan_node "$TMP/n$s.log" "s$s" $s --metrics 127.0.0.1:0
    else wan_node "$TMP/n$s.log" "s$s" $s; fi
    eval "P$s=\$NODE_PID"
done

# outbound LOG: the node of LOG found itself unreachable and serves over its own connections
outbound() {
    msgs "$1" | grep -q "^warn: not reachable from the internet at tcp://" &&
        msgs "$1" | grep -q "^info: serving as an outbound-only node: stage record endpoint key:"
}
wait_for 60 outbound "$TMP/n2.log"; rc=$?
msgs "$TMP/n2.log" | grep "reachable\|outbound" | sed 's/^/# /'
[ $rc -eq 0 ]
ok $? "the NATed node is not reachable and serves as an outbound-only node"

wait_steps 90 "$TMP/n3.log" $STEPS; rc=$?
[ $rc -eq 0 ] || { diag_file "$TMP/n2.log"; diag_file "$TMP/n1.log"; }
wan_tiny_sim $STEPS
[ $rc -eq 0 ] && match_sim "$TMP/sim" $STEPS "$TMP/n3.log"
ok $? "the run trains with stage 2 outbound-only: its first $STEPS losses equal swarmsim's"

# swarmctl status from a public host: stage 2's node, unreachable, outbound-only
wan_on c "$SWARMCTL" status --peer "$BOOT" >"$TMP/status.txt" 2>&1
wan_on c "$SWARMCTL" status --peer "$BOOT" --json >"$TMP/status.json" 2>/dev/null
sed -n '/^reachability/,$p' "$TMP/status.txt" | sed 's/^/# /'
m=$(wan_on s2 "$PY" -c 'import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode())' \
    "$(metrics_port "$TMP/n2.log")" | grep '^swarm_node_outbound_only')
echo "# s2: $m"
grep -Eq '^2 +[0-9a-f]{16} +unreachable +outbound-only +key:[0-9a-f]{64}' "$TMP/status.txt" &&
    "$PY" - "$TMP/status.json" <<'EOT' && [ "$m" = "swarm_node_outbound_only 1" ]
import json, sys
d = json.load(open(sys.argv[1]))
modes = sorted((p["stage"], p["mode"], p["reach"]) for p in d["peers"])
print("# modes:", modes)
sys.exit(0 if modes == [(0, "direct", "reachable"), (1, "direct", "reachable"),
                        (2, "outbound-only", "unreachable"), (3, "direct", "reachable")] else 1)
EOT
ok $? "swarmctl status shows stage 2's node unreachable and outbound-only; its metrics too"

# kill -9 the NATed node; a NATed newcomer rebuilds stage 2
kill -9 "$P2"
FAIL_STEP=$(last_step "$TMP/n3.log")
wan_node "$TMP/new.log" a auto
wait_for 60 has_event "$TMP/new.log" recovery stage=2 method=checkfree; rc=$?
msgs "$TMP/new.log" | grep "chose stage\|recovery:\|reachable\|outbound" | sed 's/^/# /'
[ $rc -eq 0 ] && msgs "$TMP/new.log" | grep -q "chose stage 2"
ok $? "a NATed newcomer with --stage auto rebuilt stage 2 by CheckFree (killed after step $FAIL_STEP)"

wait_for 30 outbound "$TMP/new.log"
ok $? "the newcomer serves as an outbound-only node too"

wait_steps 90 "$TMP/n3.log" $((FAIL_STEP + 20)); rc=$?
[ $rc -eq 0 ] || { diag_file "$TMP/new.log"; diag_file "$TMP/n1.log"; diag_file "$TMP/n3.log"; }
[ $rc -eq 0 ] && loss_finite_after "$TMP/n3.log" "$FAIL_STEP"
ok $? "20 steps later the loss is finite"
