#!/bin/sh
# rebalance_bench.sh [BUILD_DIR] [RUNS] - tokens/s of a 4-stage swarm on
# loopback before and after a middle stage loses its extra nodes, with
# rebalancing off ([balance] threshold = 0) and on (threshold 0.75), the
# two runs side by side, RUNS times each (default 3); medians printed.
#
# Each run (the demo's model and batch: preset small, 8 x 128 tokens, 4
# microbatches): one node pinned on each stage (--stage N) and five --stage auto
# nodes (they join the stages with the least capacity; with rebalancing on
# they may move already); once all train and the last stage took 10 more
# steps, tokens/s of the last stage over WINDOW seconds ("before"); then the
# auto nodes of stage 2 are killed (kill -9), SETTLE seconds pass (a move
# takes place there when rebalancing is on), and tokens/s over WINDOW
# seconds again ("after").  tokens/s = steps the last stage completed in the window
# x tokens per step, from its json step lines' elapsed_s.
#
# Nodes on one machine share its cores: a node killed gives its CPU time to
# the others, so a stage's capacity would not fall with its node count.  As
# root, each node therefore runs in a cgroup of its own (cgroup v1 cpu
# controller, CFS quota) limited to CPU_SHARE of a core (default 0.2: nine
# nodes use 1.8 cores), a machine of its own as far as compute goes; without
# root (or the controller) the nodes share the cores, and the figures say
# so.
set -u
BUILD=$(cd "${1:-build}" && pwd)
RUNS=${2:-3}
WINDOW=${WINDOW:-40}
SETTLE=${SETTLE:-40}
export TEST_BUILDDIR=$BUILD TEST_SRCDIR=$(cd "$(dirname "$0")/../tests" && pwd)
. "$TEST_SRCDIR/peers-lib.sh"
TOK=4096 # batch 8 x seq_len 128 x micro 4: the demo's run (scripts/swarm-demo.sh)
CPU_SHARE=${CPU_SHARE:-0.2}
CG=/sys/fs/cgroup/cpu
CGS=""
if [ "$(id -u)" -eq 0 ] && [ -w "$CG/cgroup.procs" ]; then
    THROTTLE=1
else
    THROTTLE=0
fi
# throttle PID: PID into a cgroup of its own, limited to CPU_SHARE of a core
throttle() {
    local g="$CG/swarm-bench-$$-$1"
    [ "$THROTTLE" = 1 ] || return 0
    mkdir -p "$g" && echo 100000 >"$g/cpu.cfs_period_us" &&
        awk -v s="$CPU_SHARE" 'BEGIN { printf "%d\n", s * 100000 }' >"$g/cpu.cfs_quota_us" &&
        echo "$1" >"$g/cgroup.procs" && CGS="$CGS $g"
}
release_cgroups() {
    for g in $CGS; do rmdir "$g" 2>/dev/null; done
    CGS=""
}
trap 'cleanup; release_cgroups' EXIT

# tps LOG T0 T1: tokens/s of the last stage's step lines with elapsed_s in [T0, T1)
tps() {
    "$PY" - "$1" "$2" "$3" "$TOK" <<'EOT'
import sys, swlog
t0, t1, tok = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
n = sum(1 for o in swlog.events(sys.argv[1], "step") if "loss" in o and t0 <= o["elapsed_s"] < t1)
print("%.0f" % (n * tok / (t1 - t0)))
EOT
}
# elapsed LOG: the elapsed_s of the last stage's last step line
elapsed() { sed -n 's/.*"elapsed_s":\([0-9.]*\).*/\1/p' "$1" | tail -n 1; }

one_run() { # one_run THRESHOLD TAG: prints "before after moves"
    local th=$1 tag=$2 x v victims t0 moves
    # the demo's model and batch: compute, not messages, sets the pace
    M_PRESET=small M_BATCH=8 M_SEQ_LEN=128 write_manifest "$TMP/$tag.conf" 1000000 4 "[balance]
threshold = $th
hold = 2
cooldown = 6"
    sign_manifest "$TMP/$tag.conf"
    start_boot "$TMP/$tag.conf"
    start_swarm "$tag" 0 1 2 3
    for p in "$P0" "$P1" "$P2" "$P3"; do throttle "$p"; done
    wait_steps 60 "$TMP/${tag}3.log" 5
    for x in x1 x2 x3 x4 x5; do
        start_node "$TMP/$tag$x.log" auto
        eval "P_$x=\$NODE_PID"
        throttle "$NODE_PID"
        wait_for 15 has_event "$TMP/$tag$x.log" chose_stage
        sleep 1
    done
    # steady: the last stage took 10 steps since every auto node took its first
    wait_for 120 sh -c "for x in x1 x2 x3 x4 x5; do grep -q '\"event\":\"step\"' \"$TMP/$tag\$x.log\" || exit 1; done"
    n0=$(last_steps "$TMP/${tag}3.log" | wc -l)
    wait_for 120 sh -c "[ \$(sed -n '/\"event\":\"step\".*\"loss\"/p' \"$TMP/${tag}3.log\" | wc -l) -ge $((n0 + 10)) ]"
    t0=$(elapsed "$TMP/${tag}3.log")
    sleep "$WINDOW"
    before=$(tps "$TMP/${tag}3.log" "$t0" "$(awk -v a="$t0" -v b="$WINDOW" 'BEGIN { print a + b }')")
    victims=""
    for x in x1 x2 x3 x4 x5; do
        v=$(stage_of "$TMP/$tag$x.log")
        [ "$v" = 2 ] && victims="$victims $x"
    done
    for x in $victims; do eval "kill -9 \$P_$x"; done
    sleep "$SETTLE"
    t0=$(elapsed "$TMP/${tag}3.log")
    sleep "$WINDOW"
    after=$(tps "$TMP/${tag}3.log" "$t0" "$(awk -v a="$t0" -v b="$WINDOW" 'BEGIN { print a + b }')")
    moves=$(cat "$TMP/$tag"x*.log | grep -c '"event":"moved"')
    stop_run
    release_cgroups
    echo "$before $after $moves ${victims:- none}"
}

if [ "$THROTTLE" = 1 ]; then
    how="each node limited to $CPU_SHARE of a core"
else
    how="nodes share the cores (not root: no per-node CPU limit)"
fi
echo "# $0 $*  (WINDOW=$WINDOW SETTLE=$SETTLE, $how, $(getconf _NPROCESSORS_ONLN) cores, load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%FT%TZ))"
echo "run  balance  tokens/s before  after  after/before  moves  killed"
for r in $(seq "$RUNS"); do
    for th in 0 0.75; do
        set -- $(one_run "$th" "r$r-$th-")
        printf '%-4s %-8s %-16s %-6s %-13s %-6s %s\n' "$r" "$th" "$1" "$2" \
            "$(awk -v a="$2" -v b="$1" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')" "$3" "$4"
        echo "$th $1 $2" >>"$TMP/all"
    done
done
"$PY" - "$TMP/all" <<'EOT'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {}
for th in ("0", "0.75"):
    r = [(float(b), float(a)) for t, b, a in rows if t == th]
    med[th] = (statistics.median(b for b, _ in r), statistics.median(a for _, a in r))
    print("median, balance %-5s: before %.0f, after %.0f tokens/s (after/before %.2f)" %
          (th, med[th][0], med[th][1], statistics.median(a / b for b, a in r)))
print("rebalancing on / off, medians: before %.2f, after %.2f" %
      (med["0.75"][0] / med["0"][0], med["0.75"][1] / med["0"][1]))
EOT
