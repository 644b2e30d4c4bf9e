#!/bin/sh
# t0411: the reachability verdict at join, on the NAT test network (issue
# 14, items 1 and 5; wan-lib.sh).  Every access link 50 ms one way, so a
# 200 ms round trip between two hosts.  A bootstrap on public host b, and
# one node each:
#   p  on public host p: "reachable at tcp://$WAN_p:PORT"
#   v  behind NAT, advertising its private address: "not reachable from the
#      internet ... (seen from <v's router>, not the advertised host)"
#   f  behind NAT, its router forwarding port 7400 to it, --advertise
#      tcp://<f's router>:7400: "reachable at tcp://<f's router>:7400"
#   g  behind NAT, --advertise tcp://<g's router>:7400 but nothing
#      forwarded: "not reachable ... (connection timed out)"
# Each logs exactly one verdict line (the unreachable ones then serve as
# outbound-only nodes); swarmctl status, from public host c,
# shows every node's verdict; v's metrics say unreachable; the bootstrap's
# count what it answered (2 ok, 1 host, 1 timeout).
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/wan-lib.sh"
wan_need
wan_need_nat
echo "1..8"

watchdog 150

L=delay=50
wan_start b:1:$L p:2:$L c:3:$L v:11:nat,$L f:12:nat,$L g:13:nat,$L
ok $? "6 hosts on $WNET.0/24, v, f and g each behind a NAT of its own, 200 ms round trips"
wan_forward f 7400

write_manifest "$TMP/run.conf" 100000 4
sign_manifest "$TMP/run.conf"
wan_boot b "$TMP/run.conf" --metrics 127.0.0.1:0
wan_node "$TMP/p.log" p 0
wan_node "$TMP/v.log" v 1 --metrics 127.0.0.1:0
wan_node "$TMP/f.log" f 2 --advertise "tcp://$WAN_PUB_f:7400"
wan_node "$TMP/g.log" g 3 --advertise "tcp://$WAN_PUB_g:7400"

# verdicts LOG: the reachability lines of a node's LOG
verdicts() { msgs "$1" | grep -E "^(info|warn): (reachable at|not reachable|reachability unknown)"; }
all_in() { for h in p v f g; do verdicts "$TMP/$h.log" >/dev/null || return 1; done; }
wait_for 60 all_in
for h in p v f g; do echo "# $h: $(verdicts "$TMP/$h.log")"; done

verdicts "$TMP/p.log" | grep -Eqx "info: reachable at tcp://$WAN_p:[0-9]+"
ok $? "a public node is reachable at its endpoint"

verdicts "$TMP/v.log" | grep -Fq "warn: not reachable from the internet at tcp://$WAN_v:" &&
    verdicts "$TMP/v.log" | grep -Fq "(seen from $WAN_PUB_v, not the advertised host)" &&
    verdicts "$TMP/v.log" | grep -Fq -- "--advertise tcp://$WAN_PUB_v:PORT"
ok $? "a NATed node is not reachable: seen from its router's address, told what to do"

verdicts "$TMP/f.log" | grep -Fqx "info: reachable at tcp://$WAN_PUB_f:7400"
ok $? "a NATed node with a forwarded port and --advertise is reachable there"

verdicts "$TMP/g.log" | grep -Fq "warn: not reachable from the internet at tcp://$WAN_PUB_g:7400 (connection timed out)"
ok $? "a NATed node advertising a port its router does not forward: connection timed out"

one=0
for h in p v f g; do [ "$(verdicts "$TMP/$h.log" | wc -l)" -eq 1 ] || one=1; done
[ $one -eq 0 ]
ok $? "each node logs exactly one verdict line"

# swarmctl status from another public host: every node's verdict and mode, from its record
# (by stage: p 0, v 1, f 2, g 3; the unreachable ones serve as outbound-only nodes, their
# records naming key:HEX)
want="0:reachable:direct 1:unreachable:outbound-only 2:reachable:direct 3:unreachable:outbound-only"
status_ok() {
    wan_on c "$SWARMCTL" status --peer "$BOOT" --json >"$TMP/status.json" 2>/dev/null
    "$PY" - "$TMP/status.json" $want <<'EOT'
import json, sys
d = json.load(open(sys.argv[1]))
seen = {"%d:%s:%s" % (p["stage"], p.get("reach"), p.get("mode")) for p in d["peers"]}
sys.exit(0 if seen == set(sys.argv[2:]) else 1)
EOT
}
wait_for 30 status_ok; rc=$?
wan_on c "$SWARMCTL" status --peer "$BOOT" >"$TMP/status.txt" 2>&1
sed -n '/^reachability/,$p' "$TMP/status.txt" | sed 's/^/# /'
# wan_metrics HOST LOG: the Prometheus page of the process of LOG on HOST
wan_metrics() {
    wan_on "$1" "$PY" -c 'import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode())' \
        "$(metrics_port "$2")"
}
m=$(wan_metrics v "$TMP/v.log" | grep '^swarm_node_reachable')
echo "$m" | sed 's/^/# v: /'
[ $rc -eq 0 ] && grep -q '^reachability (per node):' "$TMP/status.txt" &&
    echo "$m" | grep -qx 'swarm_node_reachable{verdict="unreachable"} 1'
ok $? "swarmctl status shows each node's verdict and mode, and v's metrics say unreachable"

# the bootstrap counted each answer: p and f ok, v host (not dialled), g timeout
m=$(wan_metrics b "$TMP/boot-b.log" | grep '^swarm_reach_answers_total')
echo "$m" | sed 's/^/# b: /'
echo "$m" | grep -qx 'swarm_reach_answers_total{res="ok"} 2' &&
    echo "$m" | grep -qx 'swarm_reach_answers_total{res="host"} 1' &&
    echo "$m" | grep -qx 'swarm_reach_answers_total{res="timeout"} 1'
ok $? "the bootstrap's metrics count its answers: 2 ok, 1 host (refused, not dialled), 1 timeout"
