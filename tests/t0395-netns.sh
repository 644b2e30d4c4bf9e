#!/bin/sh
# t0395: the kill tests of t0350 and t0355 with every process on its own
# host.  Each swarmd runs in its own network namespace with one veth to a
# bridge that lives in a "switch" namespace (10.77.X.0/24; the root
# namespace is never touched), and binds its own address
# (--listen tcp://10.77.X.Y:*).  When tc and sch_netem work, each switch
# port delays what it sends by 5 ms (5 ms one way between two hosts).
#
# Two 4-stage runs on the same network, one after the other, because the
# recovery mode is in the signed manifest and a 4-stage checkfree+ run
# rebuilds every stage by checkfree+ (stages 0, 1 and S-2, S-1):
#   A. recovery.mode checkfree: kill -9 stage 2's node; a newcomer with
#      --stage auto on another host rebuilds it by CheckFree from stages 1
#      and 3; 20 steps later the loss is finite and below its value at the
#      failure.
#   B. recovery.mode checkfree+ (as t0355): the same for stage 0, rebuilt
#      by checkfree+ from stage 1's blocks and embedding replica.
# swarmctl status runs on a host of its own.  Needs root and `ip netns`
# (else it skips); the namespaces and processes go on exit, failure or not.
# Wall-clock figures are printed, never asserted on.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"

skip() { echo "1..0 # SKIP $*"; exit 0; }
[ "$(id -u)" -eq 0 ] || skip "not root (ip netns needs CAP_SYS_ADMIN)"
command -v ip >/dev/null 2>&1 || skip "no ip(8)"

ID=$$
NET=10.77.$((ID % 250 + 1))
SW=sw$ID-switch
NSS=""          # the namespaces made so far, deleted by the EXIT trap
netns_cleanup() {
    cleanup
    for ns in $NSS; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    done
    for ns in $NSS; do ip netns del "$ns" 2>/dev/null; done
}
trap netns_cleanup EXIT
trap 'n_fail=$((n_fail + 1)); exit 1' TERM   # the watchdog's: keep the logs

# ns_add NAME: a namespace with lo up
ns_add() { ip netns add "$1" 2>/dev/null && NSS="$1 $NSS" && ip -n "$1" link set lo up; }

ns_add "$SW" || skip "ip netns add failed"
ip -n "$SW" link add "br$ID" type bridge && ip -n "$SW" link set "br$ID" up ||
    skip "cannot make a bridge in a namespace"
DELAY=""
# host NAME N: namespace sw$ID-NAME at $NET.N, a veth to the switch's bridge
host() {
    local ns=sw$ID-$1 p=p$ID-$2
    ns_add "$ns" &&
        ip -n "$SW" link add "$p" type veth peer name "h$ID-$2" netns "$ns" &&
        ip -n "$SW" link set "$p" master "br$ID" && ip -n "$SW" link set "$p" up &&
        ip -n "$ns" addr add "$NET.$2/24" dev "h$ID-$2" && ip -n "$ns" link set "h$ID-$2" up ||
        return 1
    if [ -z "$DELAY" ] || [ "$DELAY" = yes ]; then
        if ip netns exec "$SW" tc qdisc add dev "$p" root netem delay 5ms 2>/dev/null; then
            DELAY=yes
        else
            DELAY=no
        fi
    fi
}
# hosts: b boot, s0..s3 stages, a and p the newcomers of runs A and B, c swarmctl
for h in b:1 s0:10 s1:11 s2:12 s3:13 a:20 p:21 c:30; do
    host "${h%:*}" "${h#*:}" || skip "cannot make host ${h%:*} (veth in a namespace)"
done

echo "1..10"
echo "# hosts on $NET.0/24 behind bridge br$ID in namespace $SW"
if [ "$DELAY" = yes ]; then
    echo "# netem: 5 ms on each switch port"
else
    echo "# netem unavailable (tc or sch_netem): no added delay"
fi
ip netns exec "sw$ID-s0" ping -c 1 -W 2 "$NET.13" >"$TMP/ping.txt" 2>&1 &&
    sed -n 's/.*time=\(.*\)/# ping s0 -> s3: \1/p' "$TMP/ping.txt"

# start_boot_ns RUN MANIFEST: a bootstrap on host b; sets BOOT
start_boot_ns() {
    RUN_FILE=$2
    admit "$1-boot"
    start_bg "$TMP/$1-boot.log" ip netns exec "sw$ID-b" "$SWARMD" bootstrap --run "$2" \
        --listen "tcp://$NET.1:*" --log-format json $ADMIT_OPTS
    boot_endpoint "$TMP/$1-boot.log"
    echo "# run $1: bootstrap on $BOOT"
}
# start_node_ns LOG HOST N STAGE: a node on host HOST ($NET.N); sets NODE_PID
start_node_ns() {
    admit "$(basename "$1" .log)"
    start_bg "$1" ip netns exec "sw$ID-$2" "$SWARMD" join --peer "$BOOT" --stage "$4" \
        --threads 1 --listen "tcp://$NET.$3:*" --log-format json $ADMIT_OPTS
    NODE_PID=$LAST_PID
}
# start_run RUN MANIFEST: bootstrap and stages 0-3 on their hosts; sets P0..P3, RUN_PIDS
start_run() {
    start_boot_ns "$1" "$2"
    RUN_PIDS=$LAST_PID
    for s in 0 1 2 3; do
        start_node_ns "$TMP/$1-n$s.log" "s$s" $((10 + s)) $s
        eval "P$s=\$NODE_PID"
        RUN_PIDS="$RUN_PIDS $NODE_PID"
    done
}
# status_json RUN FILE: swarmctl status --json from host c; its exit in RC
status_json() { ip netns exec "sw$ID-c" "$SWARMCTL" status --peer "$BOOT" --json >"$2"; RC=$?; }
# on_hosts FILE: every peer of FILE (status --json) is on a host address of its own
on_hosts() {
    "$PY" - "$1" "$NET" <<'EOT'
import json, sys
d = json.load(open(sys.argv[1])); net = sys.argv[2] + "."
hosts = [p["endpoint"].split("//")[1].rsplit(":", 1)[0] for p in d["peers"]]
print("# peers on %s" % " ".join(sorted(set(hosts))))
sys.exit(0 if hosts and all(h.startswith(net) for h in hosts) else 1)
EOT
}
# kill_stage RUN STAGE PID NEIGHBOUR: kill -9, wait for the neighbour's "declared dead"
kill_stage() {
    local t0 rc
    kill -9 "$3"
    t0=$(now_ms)
    FAIL_STEP=$(last_step "$TMP/$1-n3.log")
    wait_for 15 has_event "$TMP/$1-n$4.log" declared_dead stage="$2"; rc=$?
    echo "# run $1: node of stage $2 killed after step $FAIL_STEP;" \
        "declared dead by stage $4 after $(($(now_ms) - t0)) ms"
    msgs "$TMP/$1-n$4.log" declared_dead | head -n 1 | sed 's/^/# /'
    return $rc
}

# the whole test in bounded time: a watchdog ends it after 110 s
( sleep 110 >/dev/null 2>&1 </dev/null; echo "Bail out! t0395 ran past 110 s"; kill -TERM $ID ) &
PIDS="$PIDS $!"

# --- run A: checkfree, stage 2 ---
write_manifest "$TMP/a.conf" 100000 4
sign_manifest "$TMP/a.conf"
start_run A "$TMP/a.conf"
wait_steps 40 "$TMP/A-n3.log" 30
status_json A "$TMP/A-s.json"
[ "$(last_step "$TMP/A-n3.log")" -ge 30 ] && [ $RC -eq 0 ] && on_hosts "$TMP/A-s.json"
ok $? "run A: four stages on four hosts train (step 30), status from another host"
kill_stage A 2 "$P2" 1
ok $? "run A: the killed node of stage 2 is declared dead by its neighbour"
start_node_ns "$TMP/A-new.log" a 20 auto
wait_for 30 has_event "$TMP/A-new.log" recovery stage=2 method=checkfree; rc=$?
msgs "$TMP/A-new.log" | grep "chose stage\|recovery:" | sed 's/^/# /'
[ $rc -eq 0 ] && msgs "$TMP/A-new.log" | grep -q "chose stage 2"
ok $? "run A: a newcomer on another host with --stage auto rebuilt stage 2 by CheckFree"
wait_steps 40 "$TMP/A-n3.log" $((FAIL_STEP + 20))
loss_fell "$TMP/A-n3.log" "$TMP/A-n3.log" "$FAIL_STEP"
ok $? "run A: 20 steps later the loss is finite and below its value at the failure"
status_json A "$TMP/A-r.json"
[ $RC -eq 0 ] && recovered_on "$TMP/A-r.json" 2 checkfree "$NET.20"
ok $? "run A: status is healthy and shows the recovery of stage 2 on the newcomer's host"
# every process of run A goes before run B starts (two runs would share the CPUs)
for p in $RUN_PIDS $NODE_PID; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done

# --- run B: checkfree+, stage 0 ---
write_manifest "$TMP/b.conf" 100000 4 "[recovery]
mode = checkfree+"
sign_manifest "$TMP/b.conf"
start_run B "$TMP/b.conf"
wait_steps 40 "$TMP/B-n3.log" 30
status_json B "$TMP/B-s.json"
[ "$(last_step "$TMP/B-n3.log")" -ge 30 ] && [ $RC -eq 0 ] && on_hosts "$TMP/B-s.json"
ok $? "run B (checkfree+): four stages on four hosts train (step 30)"
kill_stage B 0 "$P0" 1
ok $? "run B: the killed node of stage 0 is declared dead by its neighbour"
start_node_ns "$TMP/B-new.log" p 21 auto
wait_for 30 has_event "$TMP/B-new.log" recovery stage=0 method=checkfree+; rc=$?
msgs "$TMP/B-new.log" | grep "chose stage\|recovery:\|replica is of" | sed 's/^/# /'
[ $rc -eq 0 ] && msgs "$TMP/B-new.log" | grep -q "chose stage 0" &&
    has_event "$TMP/B-new.log" recovery stage=0 method=checkfree+ replica=embedding
ok $? "run B: a newcomer on another host rebuilt stage 0 by checkfree+ (blocks, embedding replica)"
wait_steps 40 "$TMP/B-n3.log" $((FAIL_STEP + 20))
loss_fell "$TMP/B-n3.log" "$TMP/B-n3.log" "$FAIL_STEP"
ok $? "run B: 20 steps later the loss is finite and below its value at the failure"
status_json B "$TMP/B-r.json"
[ $RC -eq 0 ] && recovered_on "$TMP/B-r.json" 0 checkfree+ "$NET.21"
ok $? "run B: status is healthy and shows the checkfree+ recovery of stage 0 on the newcomer's host"
