#!/bin/sh
# t0410: hosts behind NAT on the wide-area test network (issue 14, item 5;
# wan-lib.sh: a "home router" namespace per NATed host, nftables masquerade,
# nothing let in that was not asked for from inside).  Four hosts:
#   b, c  public ($WNET.1, $WNET.2)
#   v, w  each behind a NAT of its own (192.168.11.2 behind $WNET.11,
#         192.168.12.2 behind $WNET.12)
# Asserted: a NATed host reaches a public one, which sees the router's
# public address and never the private one; a public host cannot open a
# connection to a NATed one, at its private address or at its router's;
# two NATed hosts cannot reach each other; a port the router forwards is
# reachable from outside.  Outcomes only (connected or not), no timings.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/wan-lib.sh"
wan_need
wan_need_nat
PROBE="${TEST_SRCDIR:-$(dirname "$0")}/wan_probe.py"
probe() { local h=$1; shift; wan_on "$h" "$PY" "$PROBE" "$@"; }
# refused T...: every try's outcome T is there, and none connected
refused() { for t in "$@"; do [ -n "$t" ] && [ "$t" != connected ] || return 1; done; }
echo "1..6"

watchdog 90

wan_start b:1 c:2 v:11:nat w:12:nat,delay=5
ok $? "4 hosts on $WNET.0/24, v and w each behind a NAT of its own"

# v -> b: a round trip over TCP; b sees v's router, not v
start_bg "$TMP/echo-b.log" wan_on b "$PY" "$PROBE" echo "$WAN_b" 7001
r=$(probe v rtt "$WAN_b" 7001 3)
wait_for 5 grep -q '^peer ' "$TMP/echo-b.log"
echo "# v ($WAN_v behind $WAN_PUB_v) -> b: $r; b saw: $(grep '^peer ' "$TMP/echo-b.log" | tr '\n' ' ')"
[ -n "$r" ] && grep -qx "peer $WAN_PUB_v" "$TMP/echo-b.log" && ! grep -q "peer 192\.168\." "$TMP/echo-b.log"
ok $? "a NATed host reaches a public one, which sees the router's public address only"

# v and w listen on every address of theirs; each can reach its own listener
start_bg "$TMP/echo-v.log" wan_on v "$PY" "$PROBE" echo 0.0.0.0 7001
start_bg "$TMP/echo-w.log" wan_on w "$PY" "$PROBE" echo 0.0.0.0 7001
lv=$(probe v rtt "$WAN_v" 7001 1)
lw=$(probe w rtt "$WAN_w" 7001 1)
echo "# v to itself: $lv; w to itself: $lw"

# b -> v, at its private address and at its router's public one
t1=$(probe b try "$WAN_v" 7001 3)
t2=$(probe b try "$WAN_PUB_v" 7001 3)
echo "# b -> $WAN_v:7001: $t1; b -> $WAN_PUB_v:7001: $t2"
[ -n "$lv" ] && refused "$t1" "$t2"
ok $? "a public host cannot open a connection to a NATed host (private or router address)"

# v <-> w, both ways, both addresses
t3=$(probe v try "$WAN_PUB_w" 7001 3)
t4=$(probe v try "$WAN_w" 7001 3)
t5=$(probe w try "$WAN_PUB_v" 7001 3)
t6=$(probe w try "$WAN_v" 7001 3)
echo "# v -> w: $t3 (public), $t4 (private); w -> v: $t5 (public), $t6 (private)"
[ -n "$lw" ] && refused "$t3" "$t4" "$t5" "$t6"
ok $? "two NATed hosts cannot reach each other"

# v's router forwards its port 7002 to v's 7003: c reaches it, and v sees c itself
wan_forward v 7002 7003
ok $? "v's router forwards port 7002 to v's 7003 (DNAT)"
start_bg "$TMP/echo-v3.log" wan_on v "$PY" "$PROBE" echo 0.0.0.0 7003
r=$(probe c rtt "$WAN_PUB_v" 7002 3)
wait_for 5 grep -q '^peer ' "$TMP/echo-v3.log"
t7=$(probe c try "$WAN_PUB_v" 7001 3)
echo "# c -> $WAN_PUB_v:7002: $r; v saw: $(grep '^peer ' "$TMP/echo-v3.log" | tr '\n' ' '); c -> $WAN_PUB_v:7001 still: $t7"
[ -n "$r" ] && grep -qx "peer $WAN_c" "$TMP/echo-v3.log" && refused "$t7"
ok $? "the forwarded port is reachable from a public host, and only that port"
