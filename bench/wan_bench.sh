#!/bin/sh
# wan_bench.sh BUILD_DIR - the demo's model over emulated internet links
# (issue 13, item 2): a 4-stage run (preset small, batch 8 x 128 tokens in
# 4 microbatches, one node a stage, --threads 1) trains STEPS steps (default
# 20) on loopback and then, one setting after the other, with every process
# on a host of its own behind tests/wanemu (tests/wan-lib.sh).  A link
# setting is the path between two hosts: "25 ms" is 25 ms one way (each
# host's access link adds half), a rate is each host's up- and downlink, a
# loss the path's (half at each end), every queue 100 ms.  It prints, per
# setting and activation codec ([wire] activations, swarm.conf(5); CODECS,
# default "fp32 int8"), beside loopback's in the same run:
#   s/step     over the steps after the third (start-up left out),
#   tok/s      tokens of those steps over their time,
#   x lo       tok/s over loopback's with the same codec,
#   x lo32     tok/s over loopback's with fp32,
#   MB/step    bytes on the wire a step (IP packets, every host's sent),
#   drops      packets the queues dropped,
# or "hung at step N" when the run did not finish within LIMIT_S (default
# 150).  PRESET changes the model preset (default small, the demo's).
# SETTINGS overrides the list ("NAME:LINK ...", LINK wanemu's link
# options of one host).  Needs root, ip(8) and /dev/net/tun.  Not part of
# make check (minutes).
set -u
BUILD=$(cd "${1:?usage: wan_bench.sh BUILD_DIR}" && pwd)
STEPS=${STEPS:-20}
PRESET=${PRESET:-small}
LIMIT_S=${LIMIT_S:-150}
BENCH_LIBS=wan-lib.sh
. "$(dirname "$0")/bench-lib.sh"
wan_need # prints why and exits 0 when the network cannot be made here
SETTINGS=${SETTINGS:-"0ms:delay=0 25ms:delay=12.5 25ms+100M:delay=12.5,rate=100
25ms+100M+0.5%:delay=12.5,rate=100,loss=0.25 0ms+20M:delay=0,rate=20
50ms+100M:delay=25,rate=100 50ms+20M:delay=25,rate=20"}
CODECS=${CODECS:-fp32 int8}
echo "# wan_bench.sh $BUILD STEPS=$STEPS LIMIT_S=$LIMIT_S CODECS='$CODECS' PRESET=$PRESET"
for c in $CODECS; do
    M_PRESET=$PRESET M_BATCH=8 M_SEQ_LEN=128 write_manifest "$TMP/$c.conf" "$STEPS" 4 "[wire]
activations = $c"
    sign_manifest "$TMP/$c.conf"
done
TOK=1024 # tokens a step: batch 8 x seq_len 128

# run_setting CODEC NAME [LINK]: one run; no LINK: loopback.  Prints its line.
LO32=""
run_setting() {
    local codec=$1 name=$2 link=${3:-} d=$TMP/$1-$2 rc p line sps n tps mb drops lo
    mkdir -p "$d"
    if [ -z "$link" ]; then
        start_boot "$TMP/$codec.conf"
        for s in 0 1 2 3; do start_node "$d/n$s.log" $s --linger-ms 0; done
    else
        link=",$link"
        wan_start b:1:queue=100$link s0:10:queue=100$link s1:11:queue=100$link \
            s2:12:queue=100$link s3:13:queue=100$link || { echo "$name: no network"; return; }
        wan_boot b "$TMP/$codec.conf"
        for s in 0 1 2 3; do wan_node "$d/n$s.log" "s$s" $s --linger-ms 0; done
    fi
    wait_for "$LIMIT_S" steps_done "$d/n3.log" $((STEPS - 1)); rc=$?
    [ -n "$link" ] && wan_stats
    line=$(wan_steady "$d/n3.log")
    sps=${line% *}
    n=${line#* }
    if [ $rc -ne 0 ] || [ "$sps" = - ]; then
        printf '%-16s %-5s hung at step %s (no step for the rest of %s s)\n' "$name" "$codec" \
            "$(last_step "$d/n3.log")" "$LIMIT_S"
    else
        tps=$(awk -v s="$sps" -v t=$TOK 'BEGIN { printf "%.0f", t / s }')
        [ -z "$link" ] && eval "LO_$codec=\$tps"
        [ -z "$LO32" ] && [ -z "$link" ] && [ "$codec" = fp32 ] && LO32=$tps
        mb=- drops=-
        if [ -n "$link" ]; then
            mb=$(awk -v b="$(wan_sum tx_bytes)" -v n="$n" 'BEGIN { printf "%.2f", b / n / 1e6 }')
            drops=$(wan_sum drop_queue)
        fi
        eval "lo=\${LO_$codec:-}"
        printf '%-16s %-5s %8s %8s %6s %6s %8s %6s\n' "$name" "$codec" "$sps" "$tps" \
            "$(awk -v a="$tps" -v b="$lo" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')" \
            "$(awk -v a="$tps" -v b="$LO32" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')" \
            "$mb" "$drops"
    fi
    # wanemu first: wait would wait for it too
    [ -n "$link" ] && wan_stop
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    PIDS=""
}

printf '%-16s %-5s %8s %8s %6s %6s %8s %6s\n' link codec s/step tok/s "x lo" "x lo32" MB/step drops
for c in $CODECS; do run_setting "$c" loopback; done
for st in $SETTINGS; do
    for c in $CODECS; do run_setting "$c" "${st%%:*}" "${st#*:}"; done
done
