#!/bin/sh
# t0400: the wide-area test network (tests/wanemu, wan-lib.sh) delays,
# rate-limits, queues and drops as it is told (issue 13, item 2).  Five
# hosts:
#   a  delay=20                       c  (nothing: 0 ms, unlimited)
#   b  delay=30, rate=20 Mbit/s       d  loss=10%
#   e  jitter=20
# The bounds asserted are the ones the router guarantees whatever the load
# of the machine: a packet never arrives before its delay, a link never
# carries more than its rate, every datagram is delivered or counted as
# dropped.  The measured figures are printed beside them; the upper bounds
# on time are loose (a loaded machine only adds delay).
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/wan-lib.sh"
wan_need
PROBE="${TEST_SRCDIR:-$(dirname "$0")}/wan_probe.py"
probe() { local h=$1; shift; wan_on "$h" "$PY" "$PROBE" "$@"; }
echo "1..7"

watchdog 100

wan_start a:1:delay=20 b:2:delay=30,rate=20 c:3 d:4:loss=10 e:5:jitter=20
ok $? "wanemu joined 5 namespaces on $WNET.0/24"

# round trips: a-b is 2 x (20 + 30) = 100 ms, a-c 2 x 20 = 40 ms
start_bg "$TMP/echo-b.log" wan_on b "$PY" "$PROBE" echo "$WAN_b" 7001
start_bg "$TMP/echo-c.log" wan_on c "$PY" "$PROBE" echo "$WAN_c" 7001
r_ab=$(probe a rtt "$WAN_b" 7001 11)
r_ac=$(probe a rtt "$WAN_c" 7001 11)
echo "# a-b: $r_ab (set: 100 ms); a-c: $r_ac (set: 40 ms)"
echo "$r_ab $r_ac" | awk '{ exit !($2 >= 100 && $3 < 300 && $6 >= 40 && $7 < 240) }'
ok $? "round trips are at least what the delays set (100 ms a-b, 40 ms a-c), and near it"

# rate: c sends 4 MB to b, whose link carries 20 Mbit/s of IP packets: the
# payload cannot go faster than that (headers take some of it)
g=$(probe c send "$WAN_b" 7001 4000000)
echo "# c->b 4 MB: $g (set: 20 Mbit/s at b)"
echo "$g" | awk '{ exit !($2 <= 20 && $2 >= 6) }'
ok $? "a 20 Mbit/s link carries at most 20 Mbit/s, and at least a third of it"

# udp_trial DST PORT N SIZE GAP_MS HOST FIELD: N datagrams of SIZE bytes,
# GAP_MS apart, from c to host DST's sink on PORT; sets GOT (what the sink
# received, empty if it said nothing), ORDER (1: in order) and DROPS (how
# much wanemu's counter FIELD of HOST grew meanwhile)
udp_trial() {
    local d0 a
    eval "a=\$WAN_$1"
    start_bg "$TMP/sink-$2.log" wan_on "$1" "$PY" "$PROBE" udp-sink "$a" "$2" 1
    wait_for 10 grep -q listening "$TMP/sink-$2.log"
    wan_stats; d0=$(wan_stat "$6" "$7")
    probe c udp-send "$a" "$2" "$3" "$4" "$5"
    wait_for 40 grep -q received "$TMP/sink-$2.log"
    wan_stats; DROPS=$(($(wan_stat "$6" "$7") - d0))
    GOT=$(awk '/received/ { print $2 }' "$TMP/sink-$2.log")
    ORDER=$(awk '/received/ { print $4 }' "$TMP/sink-$2.log")
}

# loss: 2000 datagrams, 2 ms apart, c to d (10% loss at d): every one is
# delivered or counted as lost (at the sender), and about a tenth are lost
udp_trial d 7002 2000 200 2 c drop_loss
echo "# c->d: 2000 sent, ${GOT:-?} received, $DROPS counted lost (set: 10%)"
[ -n "$GOT" ] && [ $((GOT + DROPS)) -eq 2000 ] && [ "$DROPS" -ge 120 ] && [ "$DROPS" -le 280 ]
ok $? "10% loss: about a tenth of the datagrams lost, each delivered or counted"

# queue: a burst of 600 datagrams of 1400 bytes c to b: b's downlink holds
# 100 ms at 20 Mbit/s (250 kB, ~180 datagrams), the rest is dropped at the tail
udp_trial b 7003 600 1400 0 b drop_queue
echo "# c->b burst: 600 sent, ${GOT:-?} received, $DROPS dropped by b's queue"
[ -n "$GOT" ] && [ $((GOT + DROPS)) -eq 600 ] && [ "$DROPS" -gt 0 ] && [ "$GOT" -ge 150 ]
ok $? "a burst past the 100 ms queue is dropped at the tail, the queue's worth delivered"

# jitter: round trips c-e vary (0-20 ms each way); 300 datagrams c to e,
# 1 ms apart, arrive in order, none lost
start_bg "$TMP/echo-e.log" wan_on e "$PY" "$PROBE" echo "$WAN_e" 7001
r_ce=$(probe c rtt "$WAN_e" 7001 11)
echo "# c-e: $r_ce (set: 0-40 ms)"
echo "$r_ce" | awk '{ exit !($4 >= $2 + 2 && $3 < 240) }' || r_ce=""
udp_trial e 7004 300 100 1 e drop_queue
echo "# c->e jittered: ${GOT:-?} of 300 received, in order: ${ORDER:-?}"
[ -n "$r_ce" ] && [ "$GOT" = 300 ] && [ "$ORDER" = 1 ]
ok $? "jitter varies the delay, never reorders, never loses"

# the counters add up: every packet a host sent reached its peer or was dropped
sleep 0.5   # nothing in flight
wan_stats
awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] += kv[2] } }
     END { printf "# all hosts: tx %d, rx %d, drops %d queue + %d loss\n",
           v["tx_pkts"], v["rx_pkts"], v["drop_queue"], v["drop_loss"];
           exit !(v["tx_pkts"] > 0 && v["tx_pkts"] == v["rx_pkts"] + v["drop_queue"] + v["drop_loss"]) }' \
    "$TMP/wan.stats"
ok $? "wanemu's counters add up: sent = delivered + dropped"
