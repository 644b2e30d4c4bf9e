#!/bin/sh
# bytes_bench.sh BUILD_DIR - bytes on the wire a step with replicas, per
# codec pair (issue 13: "bytes on the wire per step <= 0.25 x fp32 with
# 8-bit activations and compressed replica gradients").  The demo's model
# (preset small, batch 8 x 128 tokens in 4 microbatches, 4 stages) with
# REPS nodes a stage (default 2), every process on a host of its own behind
# tests/wanemu at 0 ms and no rate limit: the emulator counts every IP
# packet each host sends (pipeline, partial gradients, barrier, DHT, pings).
# For each pair of PAIRS (default "fp32/fp32 int8/fp32 int8/int8 int8/int4
# int4/int4": [wire] activations / gradients, swarm.conf(5)) it prints the
# bytes of the steps from step FROM (default 4: start-up left out) to the
# last (STEPS, default 20) over their number, and that over the first
# pair's, measured in the same run.  Needs root, ip(8) and /dev/net/tun.
# Not part of make check (minutes).
set -u
BUILD=$(cd "${1:?usage: bytes_bench.sh BUILD_DIR}" && pwd)
STEPS=${STEPS:-20}
FROM=${FROM:-4}
REPS=${REPS:-2}
LIMIT_S=${LIMIT_S:-300}
PAIRS=${PAIRS:-fp32/fp32 int8/fp32 int8/int8 int8/int4 int4/int4}
BENCH_LIBS=wan-lib.sh
. "$(dirname "$0")/bench-lib.sh"
wan_need # prints why and exits 0 when the network cannot be made here
echo "# bytes_bench.sh $BUILD STEPS=$STEPS FROM=$FROM REPS=$REPS PAIRS='$PAIRS'"

# tx_total: every host's tx_bytes in the emulator's counters, now
tx_total() {
    wan_stats || { echo -; return; }
    wan_sum tx_bytes
}

FIRST=""
printf '%-10s %-10s %10s %8s %8s\n' activations gradients MB/step "x first" steps
for pair in $PAIRS; do
    a=${pair%/*} g=${pair#*/} d=$TMP/$a-$g hosts="b:1:queue=100,delay=0" i=0
    mkdir -p "$d"
    M_PRESET=small M_BATCH=8 M_SEQ_LEN=128 write_manifest "$d/run.conf" "$STEPS" 4 "[wire]
activations = $a
gradients = $g"
    sign_manifest "$d/run.conf"
    for s in 0 1 2 3; do
        for r in $(seq "$REPS"); do
            i=$((i + 1))
            hosts="$hosts s$s$r:$((10 + i)):queue=100,delay=0"
        done
    done
    # shellcheck disable=SC2086
    wan_start $hosts || { echo "$pair: no network"; continue; }
    wan_boot b "$d/run.conf"
    for s in 0 1 2 3; do
        for r in $(seq "$REPS"); do wan_node "$d/n$s$r.log" "s$s$r" $s --linger-ms 0; done
    done
    last=$d/n3$REPS.log
    if wait_for "$LIMIT_S" steps_done "$last" "$FROM"; then
        b0=$(tx_total)
        if wait_for "$LIMIT_S" steps_done "$last" $((STEPS - 1)); then
            b1=$(tx_total)
            n=$((STEPS - 1 - FROM))
            mb=$(awk -v a="$b0" -v b="$b1" -v n="$n" 'BEGIN { printf "%.2f", (b - a) / n / 1e6 }')
            [ -z "$FIRST" ] && FIRST=$mb
            printf '%-10s %-10s %10s %8s %8s\n' "$a" "$g" "$mb" \
                "$(awk -v a="$mb" -v b="$FIRST" 'BEGIN { printf "%.3f", a / b }')" "$n"
        else
            printf '%-10s %-10s hung at step %s\n' "$a" "$g" "$(last_step "$last")"
        fi
    else
        printf '%-10s %-10s did not reach step %s\n' "$a" "$g" "$FROM"
    fi
    wan_stop
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    PIDS=""
done
