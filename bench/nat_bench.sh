#!/bin/sh
# nat_bench.sh BUILD_DIR - what NAT costs a run (issue 14, Benchmark): the
# demo's model (preset small, batch 8 x 128 tokens in 4 microbatches, one
# node a stage, --threads 1) trains STEPS steps (default 20) on the NAT test
# network (tests/wan-lib.sh), every process on a host of its own, each
# access link LINK (default "delay=5,rate=100": a 10 ms path between two
# hosts, 100 Mbit/s each way, every queue 100 ms), in two swarms:
#   public   every host public: every hop direct;
#   natted   every stage node behind a NAT of its own, the bootstrap public:
#            every node is outbound-only and every hop of the pipeline goes
#            through the bootstrap, the only relay (reach.h, Relays).
# The two alternate ROUNDS times (default 3) in the same run; it prints each
# run's s/step and tok/s (over the steps after the third), the medians, and
# natted's median tok/s over public's (the goal is >= 0.7).  CODEC sets the
# activations' codec ([wire] activations, swarm.conf(5); default fp32): the
# relay's link carries every hop's bytes, so their size counts.  Needs root,
# ip(8), /dev/net/tun and nft(8).  Not part of make check (minutes).
set -u
BUILD=$(cd "${1:?usage: nat_bench.sh BUILD_DIR}" && pwd)
STEPS=${STEPS:-20}
ROUNDS=${ROUNDS:-3}
LINK=${LINK:-delay=5,rate=100}
LIMIT_S=${LIMIT_S:-150}
CODEC=${CODEC:-fp32}
BENCH_LIBS=wan-lib.sh
. "$(dirname "$0")/bench-lib.sh"
wan_need     # each prints why and exits 0 when the network cannot be made here
wan_need_nat
echo "# nat_bench.sh $BUILD STEPS=$STEPS ROUNDS=$ROUNDS LINK=$LINK CODEC=$CODEC"
M_PRESET=small M_BATCH=8 M_SEQ_LEN=128 write_manifest "$TMP/run.conf" "$STEPS" 4 "[wire]
activations = $CODEC"
sign_manifest "$TMP/run.conf"
TOK=1024 # tokens a step: batch 8 x seq_len 128

# run_swarm NAME ROUND: one run of swarm NAME (public or natted); prints its
# line and appends its tok/s to $TMP/NAME.tps
run_swarm() {
    local name=$1 d=$TMP/$1-$2 nat="" l=queue=100,$LINK line sps tps p
    mkdir -p "$d"
    [ "$name" = natted ] && nat=nat,
    wan_start b:1:$l s0:10:$nat$l s1:11:$nat$l s2:12:$nat$l s3:13:$nat$l ||
        { echo "$name: no network"; return; }
    wan_boot b "$TMP/run.conf"
    for s in 0 1 2 3; do wan_node "$d/n$s.log" "s$s" $s --linger-ms 0; done
    if wait_for "$LIMIT_S" steps_done "$d/n3.log" $((STEPS - 1)); then
        line=$(wan_steady "$d/n3.log")
        sps=${line% *}
    else
        sps=-
    fi
    if [ "$sps" = - ]; then
        printf '%-7s %5s hung at step %s\n' "$name" "$2" "$(last_step "$d/n3.log")"
    else
        tps=$(awk -v s="$sps" -v t=$TOK 'BEGIN { printf "%.0f", t / s }')
        echo "$tps" >>"$TMP/$name.tps"
        printf '%-7s %5s %8s %8s %s\n' "$name" "$2" "$sps" "$tps" \
            "$(grep -c '"relay tcp://' "$d"/n*.log | awk -F: '{ n += $2 } END { print n }') relay lines"
    fi
    wan_stop
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    PIDS=""
}

median() { sort -n "$1" 2>/dev/null | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'; }

printf '%-7s %5s %8s %8s\n' swarm round s/step tok/s
for r in $(seq "$ROUNDS"); do
    run_swarm public "$r"
    run_swarm natted "$r"
done
pub=$(median "$TMP/public.tps")
nat=$(median "$TMP/natted.tps")
echo "median tok/s: public $pub, natted $nat; natted / public = $(awk -v a="$nat" -v b="$pub" \
    'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }') (goal >= 0.7)"
