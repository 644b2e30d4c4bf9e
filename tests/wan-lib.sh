# wan-lib.sh - a wide-area test network for the t04NN tests and
# bench/wan_bench.sh (sourced after peers-lib.sh).
#
# Each host is a network namespace of its own (sw<pid>-NAME, lo up) with
# one device, wan0, at $WNET.N/24; tests/wanemu routes between them with
# each host's one-way delay, jitter, rate, loss and queue (wanemu.c says
# how a packet crosses).  The namespaces are made here and deleted by the
# EXIT trap, failure or not, after every process in them is killed; the
# root namespace is never touched.  Needs root, ip(8) and /dev/net/tun:
# wan_need skips the test otherwise.
WANEMU=$BUILD/tests/wanemu
WAN_ID=$$
WNET=10.78.$((WAN_ID % 250 + 1))
WAN_NSS=""
WAN_PID=""

wan_cleanup() {
    local ns p
    # wanemu first: cleanup waits for every child, and wanemu is not in PIDS
    [ -n "$WAN_PID" ] && kill "$WAN_PID" 2>/dev/null
    cleanup
    for ns in $WAN_NSS; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    done
    for ns in $WAN_NSS; do ip netns del "$ns" 2>/dev/null; done
}
trap wan_cleanup EXIT

# wan_stop: the network goes (every process in its hosts killed, wanemu
# asked to write its counters and leave, the namespaces deleted); another
# wan_start may follow
wan_stop() {
    local ns p
    for ns in $WAN_NSS; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    done
    if [ -n "$WAN_PID" ]; then kill "$WAN_PID" 2>/dev/null; wait "$WAN_PID" 2>/dev/null; fi
    WAN_PID=""
    for ns in $WAN_NSS; do ip netns del "$ns" 2>/dev/null; done
    WAN_NSS=""
}

# wan_need: skip the test (TAP) unless this machine can make the network
wan_need() {
    local why=""
    if [ "$(id -u)" -ne 0 ]; then why="not root (namespaces and TUN devices need it)"
    elif ! command -v ip >/dev/null 2>&1; then why="no ip(8)"
    elif [ ! -c /dev/net/tun ]; then why="no /dev/net/tun"
    elif [ ! -x "$WANEMU" ]; then why="no $WANEMU (make tests/wanemu)"
    elif ! ip netns add "sw$WAN_ID-probe" 2>/dev/null; then why="ip netns add failed"
    elif ! ip -n "sw$WAN_ID-probe" tuntap add dev wanprobe mode tun 2>/dev/null; then
        ip netns del "sw$WAN_ID-probe"
        why="cannot make a TUN device in a namespace (ip tuntap add)"
    else ip netns del "sw$WAN_ID-probe"; return 0
    fi
    echo "1..0 # SKIP $why"
    exit 0
}

# wan_start [--mtu N] HOST...: HOST is NAME:N or NAME:N:LINK, LINK wanemu's
# link options without the address (delay=25,rate=100,loss=0.5,...): makes
# the hosts and starts wanemu joining them; sets WAN_PID and, for each host,
# WAN_<NAME> to its address; returns 1 if the network did not come up in 10 s
wan_start() {
    local spec name rest n link args="" opts=""
    if [ "${1:-}" = --mtu ]; then opts="--mtu $2"; shift 2; fi
    for spec in "$@"; do
        name=${spec%%:*}
        rest=${spec#*:}
        n=${rest%%:*}
        link=""
        case $rest in *:*) link=,${rest#*:} ;; esac
        ip netns add "sw$WAN_ID-$name" || return 1
        WAN_NSS="sw$WAN_ID-$name $WAN_NSS"
        ip -n "sw$WAN_ID-$name" link set lo up || return 1
        eval "WAN_$name=\$WNET.\$n"
        args="$args sw$WAN_ID-$name,$WNET.$n$link"
    done
    # $opts, $args unquoted: no blanks in them
    "$WANEMU" --stats "$TMP/wan.stats" --seed 1 $opts $args >"$TMP/wanemu.log" 2>&1 &
    WAN_PID=$!
    for _ in $(seq 200); do
        grep -q '^ready$' "$TMP/wanemu.log" && return 0
        kill -0 "$WAN_PID" 2>/dev/null || break
        sleep 0.05
    done
    diag_file "$TMP/wanemu.log"
    return 1
}

# wan_on HOST CMD...: run CMD in HOST's namespace
wan_on() { local h=$1; shift; ip netns exec "sw$WAN_ID-$h" "$@"; }

# wan_stats: wanemu's counters now, in $TMP/wan.stats (wanemu.c: one line a host)
wan_stats() {
    rm -f "$TMP/wan.stats"
    kill -USR1 "$WAN_PID" 2>/dev/null || return 1
    for _ in $(seq 100); do [ -s "$TMP/wan.stats" ] && return 0; sleep 0.05; done
    return 1
}

# wan_stat HOST FIELD: one counter of host HOST from the last wan_stats
wan_stat() {
    local a
    eval "a=\$WAN_$1"
    awk -v a="$a" -v f="$2" '$1 == a { for (i = 2; i <= NF; i++) { split($i, kv, "=");
        if (kv[1] == f) print kv[2] } }' "$TMP/wan.stats"
}

# The swarm on the network: processes as start_boot, start_node and
# start_keeper start them, each on a host of its own, binding its host's
# address.
# wan_boot HOST MANIFEST [options]: sets BOOT, BOOT_PID
wan_boot() {
    local h=$1 m=$2 a
    shift 2
    eval "a=\$WAN_$h"
    RUN_FILE=$m
    admit "boot-$h"
    start_bg "$TMP/boot-$h.log" ip netns exec "sw$WAN_ID-$h" "$SWARMD" bootstrap --run "$m" \
        --listen "tcp://$a:*" --log-format json $ADMIT_OPTS "$@"
    BOOT_PID=$LAST_PID
    boot_endpoint "$TMP/boot-$h.log"
}
# wan_node LOG HOST STAGE [options]: sets NODE_PID
wan_node() {
    local log=$1 h=$2 st=$3 a
    shift 3
    eval "a=\$WAN_$h"
    admit "$(basename "$log" .log)"
    start_bg "$log" ip netns exec "sw$WAN_ID-$h" "$SWARMD" join --peer "$BOOT" --stage "$st" \
        --threads 1 --listen "tcp://$a:*" --log-format json $ADMIT_OPTS "$@"
    NODE_PID=$LAST_PID
}
# wan_keeper LOG HOST [options]: sets KEEPER_PID
wan_keeper() {
    local log=$1 h=$2 a
    shift 2
    eval "a=\$WAN_$h"
    admit "$(basename "$log" .log)"
    start_bg "$log" ip netns exec "sw$WAN_ID-$h" "$SWARMD" keeper --peer "$BOOT" \
        --listen "tcp://$a:*" --log-format json $ADMIT_OPTS "$@"
    KEEPER_PID=$LAST_PID
}
