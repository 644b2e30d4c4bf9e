#!/bin/sh
# t0414: relays (issue 14, item 3), on the NAT test network (wan-lib.sh).
# Every process on a host of its own, each access link 10 ms one way.  A
# 4-stage checkfree run of the tests' tiny model whose stage-1 and stage-2
# nodes each sit behind a NAT of their own: neither can dial the other, so
# their hop goes through a relay.  The bootstrap is the only relay at first
# (the public stage nodes run with --relay off):
#   - both NATed nodes are unreachable, serve as outbound-only nodes and name
#     the bootstrap as their relay (key:HEX@tcp://bootstrap);
#   - the run trains: its first 24 losses equal swarmsim's;
#   - swarmctl status, from a public host, proves both NATed nodes (through
#     their relay) and shows the relayed hop;
#   - kill -9 of the stage-2 node; a NATed newcomer (--stage auto) rebuilds
#     stage 2 by CheckFree (stage 1's parameters come through the relay) and
#     names a relay too; 20 steps later the loss is finite;
#   - a public stage-3 replica that relays joins, then the bootstrap (the
#     relay in use) is killed: both NATed nodes give it up, take the new
#     relay, and the run trains 20 more steps.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/wan-lib.sh"
wan_need
wan_need_nat
echo "1..9"

watchdog 280

L=delay=10
wan_start b:1:$L s0:10:$L s1:11:nat,$L s2:12:nat,$L s3:13:$L a:20:nat,$L c:30:$L r:31:$L
ok $? "8 hosts on $WNET.0/24, s1, s2 and a each behind a NAT of its own, 10 ms links"

STEPS=24
wan_tiny_run b
for s in 0 1 2 3; do
    case $s in
    0|3) wan_node "$TMP/n$s.log" "s$s" $s --no-relay ;;
    *) wan_node "$TMP/n$s.log" "s$s" $s --metrics 127.0.0.1:0 ;;
    esac
    eval "P$s=\$NODE_PID"
done

wait_for 60 wan_relayed "$TMP/n1.log" "$WAN_b" && wait_for 30 wan_relayed "$TMP/n2.log" "$WAN_b"; rc=$?
for s in 1 2; do msgs "$TMP/n$s.log" | grep "reachable\|outbound\|relay" | sed "s/^/# s$s: /"; done
[ $rc -eq 0 ]
ok $? "both NATed nodes are unreachable and name the bootstrap as their relay"

wait_steps 90 "$TMP/n3.log" $STEPS; rc=$?
[ $rc -eq 0 ] || { diag_file "$TMP/n2.log"; diag_file "$TMP/n1.log"; }
wan_tiny_sim $STEPS
[ $rc -eq 0 ] && match_sim "$TMP/sim" $STEPS "$TMP/n3.log"
ok $? "the run trains with stages 1 and 2 relayed: its first $STEPS losses equal swarmsim's"

# swarmctl status from a public host: both NATed nodes proven (through the relay), the hop
wan_on c "$SWARMCTL" status --peer "$BOOT" >"$TMP/status.txt" 2>&1
wan_on c "$SWARMCTL" status --peer "$BOOT" --json >"$TMP/status.json" 2>/dev/null
sed -n '/^reachability/,$p' "$TMP/status.txt" | sed 's/^/# /'
grep -Eq "^  stage 1 [0-9a-f]{16} -> stage 2 [0-9a-f]{16} through tcp://$WAN_b:" "$TMP/status.txt" &&
    "$PY" - "$TMP/status.json" "$WAN_b" <<'EOT'
import json, re, sys
d = json.load(open(sys.argv[1]))
got = sorted((p["stage"], p["reach"], p["mode"], p["proven"],
              re.sub(r"^tcp://(.*):[0-9]+$", r"\1", p["relay"] or "")) for p in d["peers"])
print("# peers:", got)
want = [(0, "reachable", "direct", True, ""), (1, "unreachable", "outbound-only", True, sys.argv[2]),
        (2, "unreachable", "outbound-only", True, sys.argv[2]), (3, "reachable", "direct", True, "")]
sys.exit(0 if got == want else 1)
EOT
ok $? "swarmctl status: the verdicts, both NATed nodes proven through their relay, the relayed hop"

m=$(wan_on s1 "$PY" -c 'import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode())' \
    "$(metrics_port "$TMP/n1.log")" | grep '^swarm_outbound_relay')
echo "$m" | sed 's/^/# s1: /'
echo "$m" | grep -qx 'swarm_outbound_relayed 1'
ok $? "s1's metrics say it names a proved relay"

# kill -9 the stage-2 node; a NATed newcomer rebuilds stage 2 (stage 1's half through the relay)
kill -9 "$P2"
FAIL_STEP=$(last_step "$TMP/n3.log")
wan_newcomer_rebuilds "$TMP/new.log" a 2
ok $? "a NATed newcomer rebuilt stage 2 by CheckFree (killed after step $FAIL_STEP) and names a relay"

wait_steps 90 "$TMP/n3.log" $((FAIL_STEP + 20)); rc=$?
[ $rc -eq 0 ] || { diag_file "$TMP/new.log"; diag_file "$TMP/n1.log"; diag_file "$TMP/n3.log"; }
[ $rc -eq 0 ] && loss_finite_after "$TMP/n3.log" "$FAIL_STEP"
ok $? "20 steps later the loss is finite"

# a second relay joins (a public replica of stage 3), then the bootstrap dies
wan_node "$TMP/r.log" r 3
wait_for 60 has_event "$TMP/r.log" recovery stage=3; rc=$?
[ $rc -eq 0 ] || diag_file "$TMP/r.log"
kill -9 "$BOOT_PID"
KILL_STEP=$(last_step "$TMP/n3.log")
wait_for 60 wan_relayed "$TMP/n1.log" "$WAN_r" && wait_for 30 wan_relayed "$TMP/new.log" "$WAN_r"; rc=$?
for f in n1 new; do msgs "$TMP/$f.log" | grep "relay" | tail -n 3 | sed "s/^/# $f: /"; done
[ $rc -eq 0 ] && msgs "$TMP/n1.log" | grep -q "^warn: relay tcp://$WAN_b:.* stopped answering"
ok $? "the bootstrap (the relay) killed: both NATed nodes take the new relay"

wait_steps 90 "$TMP/n3.log" $((KILL_STEP + 20)); rc=$?
[ $rc -eq 0 ] || { diag_file "$TMP/new.log"; diag_file "$TMP/n1.log"; diag_file "$TMP/n3.log"; }
[ $rc -eq 0 ] && loss_finite_after "$TMP/n3.log" "$KILL_STEP"
ok $? "the run trains 20 more steps (from step $KILL_STEP) through the new relay"
