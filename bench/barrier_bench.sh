#!/bin/sh
# barrier_bench.sh BUILD_DIR - the time between two steps at the leader:
# from its update of step N (its debug line "step=N hash=H") to its GO of
# step N+1 ("step N+1: go"), the barrier (PREPARE, READY, GO; peers/lead.h)
# and whatever waits before it.  The demo's model (preset small: 4 stages,
# batch 8 x 128 tokens in 4 microbatches, [wire] activations = CODEC,
# default int8), one node a stage, STEPS steps (default 12), on loopback
# and, as root with tests/wanemu, with every process on a host of its own
# behind links LINK (default "delay=12.5,rate=100": 25 ms one way and
# 100 Mbit/s between two hosts, queues of 100 ms).  It prints, with the
# command line, per setting: s/step over the steps after the third, and the
# median and largest gap (ms) over the steps after the first.  Without root
# or tests/wanemu it runs loopback only and says why.  KEEP=1 keeps the
# logs.  Not part of make check (a minute); `make bench` runs it.
set -u
BUILD=$(cd "${1:?usage: barrier_bench.sh BUILD_DIR}" && pwd)
STEPS=${STEPS:-12}
CODEC=${CODEC:-int8}
LINK=${LINK:-delay=12.5,rate=100}
LIMIT_S=${LIMIT_S:-150}
BENCH_LIBS=wan-lib.sh
. "$(dirname "$0")/bench-lib.sh"

echo "# barrier_bench.sh $BUILD STEPS=$STEPS CODEC=$CODEC LINK='$LINK'"
M_PRESET=small M_BATCH=8 M_SEQ_LEN=128 write_manifest "$TMP/run.conf" "$STEPS" 4 "[wire]
activations = $CODEC"
sign_manifest "$TMP/run.conf"

# gaps LEADER_LOG: "MEDIAN MAX" of the leader's update-to-GO gaps (ms)
gaps() {
    "$PY" - "$1" <<'EOT'
import json, re, sys
from datetime import datetime
upd, go = {}, {}
for line in open(sys.argv[1]):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    msg, ts = o.get("msg", ""), o.get("ts")
    if not ts:
        continue
    t = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() * 1000.0
    m = re.match(r"step=(\d+) hash=", msg)
    if m:
        upd[int(m.group(1))] = t
    m = re.match(r"step (\d+): go$", msg)
    if m:
        go[int(m.group(1))] = t
g = sorted(go[n + 1] - upd[n] for n in upd if n >= 1 and n + 1 in go)
if not g:
    print("- -")
else:
    print("%.0f %.0f" % (g[len(g) // 2], g[-1]))
EOT
}

# run_setting NAME [wan]: one run; prints its line
run_setting() {
    local name=$1 d=$TMP/$1 line sps g p
    mkdir -p "$d"
    if [ "${2:-}" = wan ]; then
        wan_start "b:1:queue=100,$LINK" "s0:10:queue=100,$LINK" "s1:11:queue=100,$LINK" \
            "s2:12:queue=100,$LINK" "s3:13:queue=100,$LINK" || { echo "$name: no network"; return; }
        wan_boot b "$TMP/run.conf"
        wan_node "$d/n0.log" s0 0 --linger-ms 0 --log-level debug
        for s in 1 2 3; do wan_node "$d/n$s.log" "s$s" $s --linger-ms 0; done
    else
        start_boot "$TMP/run.conf"
        start_node "$d/n0.log" 0 --linger-ms 0 --log-level debug
        for s in 1 2 3; do start_node "$d/n$s.log" $s --linger-ms 0; done
    fi
    if ! wait_for "$LIMIT_S" steps_done "$d/n3.log" $((STEPS - 1)); then
        printf '%-20s hung at step %s\n' "$name" "$(last_step "$d/n3.log")"
    else
        line=$(wan_steady "$d/n3.log")
        sps=${line% *}
        g=$(gaps "$d/n0.log")
        printf '%-20s %8s %10s %8s\n' "$name" "$sps" "${g% *}" "${g#* }"
    fi
    # wanemu first: wait would wait for it too
    [ "${2:-}" = wan ] && wan_stop
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    PIDS=""
}

printf '%-20s %8s %10s %8s\n' setting s/step "gap ms" "max ms"
run_setting loopback
why=$(wan_need) # its own output only when it cannot (and then it exits a subshell)
if [ -z "$why" ]; then
    run_setting "$LINK" wan
else
    echo "# no emulated link: ${why#*SKIP }"
fi
exit 0
