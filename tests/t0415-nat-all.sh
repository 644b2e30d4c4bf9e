#!/bin/sh
# t0415: every volunteer behind NAT but the bootstrap (issue 14, item 5), on
# the NAT test network (wan-lib.sh), each access link 10 ms one way.  A
# 4-stage checkfree run of the tests' tiny model whose four stage nodes each
# sit behind a NAT of their own: the bootstrap is the only node anyone can
# dial, so it is every node's relay, and every hop of the pipeline (and the
# leader's PREPAREs and GOs) goes through it:
#   - the verdict is right for every node: unreachable, outbound-only, the
#     bootstrap as relay;
#   - the run trains: its first 24 losses equal swarmsim's;
#   - swarmctl status, from a public host, proves all four through the
#     relay and shows the three relayed hops;
#   - kill -9 of the stage-2 node; a NATed newcomer (--stage auto) rebuilds
#     stage 2 by CheckFree, both halves through the relay; 20 steps later
#     the loss is finite.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/wan-lib.sh"
wan_need
wan_need_nat
echo "1..6"

watchdog 220

L=delay=10
wan_start b:1:$L s0:10:nat,$L s1:11:nat,$L s2:12:nat,$L s3:13:nat,$L a:20:nat,$L c:30:$L
ok $? "7 hosts on $WNET.0/24, every stage node and the newcomer behind a NAT of its own"

STEPS=24
wan_tiny_swarm

rc=0
for s in 0 1 2 3; do
    wait_for 60 wan_relayed "$TMP/n$s.log" "$WAN_b" || rc=1
    msgs "$TMP/n$s.log" | grep "^info: relay" | sed "s/^/# s$s: /"
done
[ $rc -eq 0 ]
ok $? "every stage node is unreachable, serves as an outbound-only node and names the bootstrap as its relay"

wait_steps 90 "$TMP/n3.log" $STEPS; rc=$?
[ $rc -eq 0 ] || { diag_file "$TMP/n0.log"; diag_file "$TMP/n2.log"; }
wan_tiny_sim $STEPS
[ $rc -eq 0 ] && match_sim "$TMP/sim" $STEPS "$TMP/n3.log"
ok $? "the run trains with every hop relayed: its first $STEPS losses equal swarmsim's"

wan_on c "$SWARMCTL" status --peer "$BOOT" >"$TMP/status.txt" 2>&1
wan_on c "$SWARMCTL" status --peer "$BOOT" --json >"$TMP/status.json" 2>/dev/null
sed -n '/^reachability/,$p' "$TMP/status.txt" | sed 's/^/# /'
[ "$(grep -Ec "^  stage [012] [0-9a-f]{16} -> stage [123] [0-9a-f]{16} through tcp://$WAN_b:" \
    "$TMP/status.txt")" = 3 ] &&
    "$PY" - "$TMP/status.json" "$WAN_b" <<'EOT'
import json, re, sys
d = json.load(open(sys.argv[1]))
got = sorted((p["stage"], p["reach"], p["mode"], p["proven"],
              re.sub(r"^tcp://(.*):[0-9]+$", r"\1", p["relay"] or "")) for p in d["peers"])
print("# peers:", got)
sys.exit(0 if got == [(s, "unreachable", "outbound-only", True, sys.argv[2])
                      for s in range(4)] else 1)
EOT
ok $? "swarmctl status: all four unreachable, outbound-only, proven through the relay; three relayed hops"

kill -9 "$P2"
FAIL_STEP=$(last_step "$TMP/n3.log")
wan_newcomer_rebuilds "$TMP/new.log" a 2
ok $? "a NATed newcomer rebuilt stage 2 by CheckFree through the relay (killed after step $FAIL_STEP)"

wait_steps 90 "$TMP/n3.log" $((FAIL_STEP + 20)); rc=$?
[ $rc -eq 0 ] || { diag_file "$TMP/new.log"; diag_file "$TMP/n1.log"; diag_file "$TMP/n3.log"; }
[ $rc -eq 0 ] && loss_finite_after "$TMP/n3.log" "$FAIL_STEP"
ok $? "20 steps later the loss is finite"
