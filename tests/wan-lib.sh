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
#
# A host may sit behind a NAT (issue 14, item 5): its wan0, the wanemu
# link at the public address $WNET.N, is then in a "home router" namespace
# of its own (sw<pid>-NAME-gw) that masquerades what leaves by wan0 and lets
# in only what belongs to a connection opened from inside (nftables; a
# forwarded port with wan_forward), joined by a veth to the host's own
# namespace (sw<pid>-NAME), which has the private address 192.168.N.2/24
# and its default route via the router at 192.168.N.1.  Everything run on
# the host by name (wan_on, wan_node, wan_boot, wan_keeper) runs behind the
# NAT, binding the private address; wan_need_nat skips a test that needs
# them when nft(8) or the kernel's NAT is missing.
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

# wan_need_nat: skip the test (TAP) unless hosts behind NAT can be made
# (after wan_need): nft(8), and a namespace that takes a masquerade rule
wan_need_nat() {
    local why="" ns="sw$WAN_ID-natprobe"
    if ! command -v nft >/dev/null 2>&1; then why="no nft(8) (apt-get install nftables)"
    elif ! ip netns add "$ns" 2>/dev/null; then why="ip netns add failed"
    else
        if ! ip netns exec "$ns" nft -f - 2>/dev/null <<EOT
table ip swprobe {
    chain post { type nat hook postrouting priority srcnat; policy accept; oifname "wan0" masquerade; }
}
EOT
        then why="no NAT in this kernel (nftables masquerade refused)"
        fi
        ip netns del "$ns"
        [ -z "$why" ] && return 0
    fi
    echo "1..0 # SKIP $why"
    exit 0
}

# wan_nat NAME N: the namespaces of a host behind NAT (see the top): the
# router sw<pid>-NAME-gw, where wanemu will put wan0, and the host
# sw<pid>-NAME behind it
wan_nat() {
    local h="sw$WAN_ID-$1" gw="sw$WAN_ID-$1-gw" n=$2
    ip netns add "$gw" || return 1
    WAN_NSS="$gw $WAN_NSS"
    ip -n "$gw" link set lo up || return 1
    ip -n "$gw" link add lan0 type veth peer name eth0 netns "$h" || return 1
    ip -n "$gw" addr add "192.168.$n.1/24" dev lan0 || return 1
    ip -n "$gw" link set lan0 up || return 1
    ip -n "$h" addr add "192.168.$n.2/24" dev eth0 || return 1
    ip -n "$h" link set eth0 up || return 1
    ip -n "$h" route add default via "192.168.$n.1" || return 1
    ip netns exec "$gw" sysctl -q -w net.ipv4.ip_forward=1 || return 1
    # a home router: out by wan0 masqueraded; in only what answers a
    # connection from inside (and, later, the ports wan_forward opens)
    ip netns exec "$gw" nft -f - <<EOT || return 1
table ip swnat {
    chain prenat { type nat hook prerouting priority dstnat; policy accept; }
    chain postnat { type nat hook postrouting priority srcnat; policy accept; oifname "wan0" masquerade; }
    chain fwd_filter { type filter hook forward priority filter; policy drop;
        ct state established,related accept; iifname "lan0" oifname "wan0" accept; }
    chain in_filter { type filter hook input priority filter; policy drop;
        ct state established,related accept; iifname "lo" accept; iifname "lan0" accept; }
}
EOT
}

# wan_forward NAME PORT [HOSTPORT]: the router of NAT host NAME forwards TCP
# port PORT of its public address to HOSTPORT (default PORT) of the host
wan_forward() {
    local gw="sw$WAN_ID-$1-gw" a
    eval "a=\$WAN_$1"
    ip netns exec "$gw" nft add rule ip swnat prenat iifname "wan0" tcp dport "$2" \
        dnat to "$a:${3:-$2}" &&
    ip netns exec "$gw" nft add rule ip swnat fwd_filter iifname "wan0" ip daddr "$a" \
        tcp dport "${3:-$2}" ct status dnat accept
}

# wan_start [--mtu N] HOST...: HOST is NAME:N or NAME:N:LINK, LINK wanemu's
# link options without the address (delay=25,rate=100,loss=0.5,...) and
# "nat" for a host behind NAT (v:11:nat, v:11:nat,delay=10): makes the
# hosts and starts wanemu joining them; sets WAN_PID and, for each host,
# WAN_<NAME> to the address it binds and WAN_PUB_<NAME> to the one the
# others see it from ($WNET.N both, or 192.168.N.2 and its router's $WNET.N);
# returns 1 if the network did not come up in 10 s
wan_start() {
    local spec name rest n link ns args="" opts="" nat
    if [ "${1:-}" = --mtu ]; then opts="--mtu $2"; shift 2; fi
    for spec in "$@"; do
        name=${spec%%:*}
        rest=${spec#*:}
        n=${rest%%:*}
        link=""
        case $rest in *:*) link=,${rest#*:} ;; esac
        nat=0
        case $link, in *,nat,*) nat=1; link=$(echo "$link," | sed 's/,nat,/,/; s/,$//') ;; esac
        ip netns add "sw$WAN_ID-$name" || return 1
        WAN_NSS="sw$WAN_ID-$name $WAN_NSS"
        ip -n "sw$WAN_ID-$name" link set lo up || return 1
        eval "WAN_PUB_$name=\$WNET.\$n"
        if [ $nat = 1 ]; then
            wan_nat "$name" "$n" || return 1
            eval "WAN_$name=192.168.\$n.2"
            ns="sw$WAN_ID-$name-gw"
        else
            eval "WAN_$name=\$WNET.\$n"
            ns="sw$WAN_ID-$name"
        fi
        args="$args $ns,$WNET.$n$link"
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

# wan_stat HOST FIELD: one counter of host HOST (its router's, behind NAT)
# from the last wan_stats
wan_stat() {
    local a
    eval "a=\$WAN_PUB_$1"
    awk -v a="$a" -v f="$2" '$1 == a { for (i = 2; i <= NF; i++) { split($i, kv, "=");
        if (kv[1] == f) print kv[2] } }' "$TMP/wan.stats"
}

# wan_sum FIELD: one counter summed over every host of the last wan_stats
wan_sum() {
    awk -v f="$1" '{ for (i = 2; i <= NF; i++) { split($i, kv, "=");
        if (kv[1] == f) n += kv[2] } } END { printf "%.0f\n", n }' "$TMP/wan.stats"
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

# wan_tiny_run HOST [bootstrap options]: the tests' tiny model in a 4-stage
# run of 100000 steps ($TMP/run.conf, signed) and its bootstrap on HOST
# (sets BOOT, BOOT_PID)
wan_tiny_run() {
    local h=$1
    shift
    write_manifest "$TMP/run.conf" 100000 4
    sign_manifest "$TMP/run.conf"
    wan_boot "$h" "$TMP/run.conf" "$@"
}
# wan_tiny_swarm: wan_tiny_run's run, its bootstrap on host b and a node of
# each stage S on host sS (logs $TMP/nS.log; sets P0..P3)
wan_tiny_swarm() {
    local s
    wan_tiny_run b
    for s in 0 1 2 3; do
        wan_node "$TMP/n$s.log" "s$s" $s
        eval "P$s=\$NODE_PID"
    done
}
# wan_big_swarm D_MODEL FFN: a 4-stage run of big_model's model (one block a
# stage, 16-token sequences, int8 activations, 100000 steps; $TMP/run.conf,
# signed), its bootstrap on host b and a node of each stage S on host sS
# (logs $TMP/nS.log; sets P0..P3)
wan_big_swarm() {
    local s
    M_SEQ_LEN=16
    big_model "$1" "$2"
    write_manifest "$TMP/run.conf" 100000 4 "[wire]
activations = int8"
    sign_manifest "$TMP/run.conf"
    wan_boot b "$TMP/run.conf"
    for s in 0 1 2 3; do
        wan_node "$TMP/n$s.log" "s$s" $s
        eval "P$s=\$NODE_PID"
    done
}
# wan_wide_run LINK [manifest sections]: hosts b, s0, s1 and s1b, each
# access link LINK (one way, wanemu's), and a 2-stage run of 100000 steps
# of big_model 512 1536 (2 blocks, 27 MB of parameters a stage; 16-token
# sequences; $TMP/run.conf, signed) with its bootstrap on host b (t0418,
# t0419); WAN_D and WAN_FFN set other widths (t0423)
wan_wide_run() {
    local l=$1
    shift
    wan_start b:1:$l s0:10:$l s1:11:$l s1b:12:$l
    ok $? "4 hosts, each link $l"
    M_SEQ_LEN=16
    big_model "${WAN_D:-512}" "${WAN_FFN:-1536}"
    write_manifest "$TMP/run.conf" 100000 2 "$@"
    sign_manifest "$TMP/run.conf"
    wan_boot b "$TMP/run.conf"
}
# wan_wide_copier DEAD_MS: wan_wide_run over 25 ms + 10 Mbit/s links
# (WAN_RATE Mbit/s when set), int8
# activations and gradients; n0 (stage 0) and n1 (stage 1) with --dead-ms
# DEAD_MS, and once n1 has taken 2 steps (WIDE_RC: that wait's status) its
# replica n1b, which copies the stage from n1; N1 and N1B are their pids
# (t0422-t0424)
wan_wide_copier() {
    wan_wide_run "delay=25,rate=${WAN_RATE:-10},queue=100" "[wire]
activations = int8
gradients = int8"
    wan_node "$TMP/n0.log" s0 0 --dead-ms "$1"
    wait_for 120 grep -q "stage 0 initialised" "$TMP/n0.log"
    wan_node "$TMP/n1.log" s1 1 --dead-ms "$1"
    N1=$NODE_PID
    wait_steps 180 "$TMP/n1.log" 2
    WIDE_RC=$?
    wan_node "$TMP/n1b.log" s1b 1 --dead-ms "$1"
    N1B=$NODE_PID
    echo "# the replica of stage 1 started at step $(last_step "$TMP/n1.log")"
}

# wan_twin_ok COPY_RC: once its copy is in (COPY_RC 0), n1b takes 2 steps
# with n1 within 180 s; says so (ok) with the steps counted (t0421-t0423)
wan_twin_ok() {
    local rc=1
    if [ "$1" -eq 0 ]; then
        wait_for 180 eval '[ "$(both_steps "$TMP/n1.log" "$TMP/n1b.log")" -ge 2 ]'
        rc=$?
    fi
    echo "# steps with its twin: $(both_steps "$TMP/n1.log" "$TMP/n1b.log"); its first:" \
        "$(first_step "$TMP/n1b.log"); the run at $(last_step "$TMP/n1.log")"
    [ $rc -eq 0 ] || diag_msgs "$TMP/n1b.log"
    ok $rc "the replica took 2 steps with its twin after its copy"
}

# wan_tiny_sim STEPS: swarmsim train of wan_tiny_run's run, its first STEPS
# steps, into $TMP/sim (--max-iters: swarmsim then says, and exits 1, that
# the run was not finished; match_sim reads what it wrote)
wan_tiny_sim() {
    "$SWARMSIM" train --preset tiny --stages 4 --steps 100000 --max-iters "$1" --seed 1337 \
        --batch 4 --seq-len 32 --micro 4 --lr 3e-3 --warmup 5 --data "$DATA" --threads 1 \
        --sample-tokens 0 --eval-every 0 --out "$TMP/sim" --log-level warn >"$TMP/sim.log" 2>&1
}

# wan_relayed LOG [ADDR]: the node of LOG found itself unreachable, serves as
# an outbound-only node and proved a relay at ADDR (any relay when empty;
# reach.h, Relays)
wan_relayed() {
    msgs "$1" | grep -q "^warn: not reachable from the internet at tcp://" &&
        msgs "$1" | grep -q "^info: relay tcp://${2:-}.* passes messages for this node"
}

# wan_newcomer_rebuilds LOG HOST STAGE: a --stage auto newcomer on HOST
# (behind NAT) chose STAGE, rebuilt it by CheckFree and proved a relay
wan_newcomer_rebuilds() {
    local rc
    wan_node "$1" "$2" auto
    wait_for 60 has_event "$1" recovery stage="$3" method=checkfree; rc=$?
    msgs "$1" | grep "chose stage\|recovery:\|reachable\|relay" | sed 's/^/# /'
    [ $rc -eq 0 ] && msgs "$1" | grep -q "chose stage $3" && wait_for 30 wan_relayed "$1"
}

# wan_steady LOG: "S_PER_STEP STEPS" over the steps after the third of a
# last-stage LOG ("- 0" with fewer than two of them; the benches)
wan_steady() {
    "$PY" - "$1" <<'EOT'
import sys
from swlog import events
t = {o["step"]: o["elapsed_s"] for o in events(sys.argv[1], "step") if "elapsed_s" in o}
s = sorted(k for k in t if k >= 3)
if len(s) < 2:
    print("- 0")
else:
    print("%.3f %d" % ((t[s[-1]] - t[s[0]]) / (s[-1] - s[0]), s[-1] + 1))
EOT
}
