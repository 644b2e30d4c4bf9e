#!/bin/sh
# copy_bench.sh BUILD_DIR - a replica that joins a running stage of the
# CheckFree paper's LLaMA-124M shape copies its stage's state over a home
# link (issue 13, item 5).  The model is llama124_bench.sh's (preset
# bench768, 12 blocks, the byte vocabulary: 85 MB of parameters and 255 MB
# of state with the AdamW moments a stage), batch 1 x 128 tokens in 4
# microbatches, int8 activations and gradients, 4 stages of one node each,
# every process on a host of its own behind tests/wanemu, each access link
# LINK (default "delay=25,rate=20": 50 ms one way and 20 Mbit/s between two
# hosts, queues of 100 ms).  Once the run took step JOIN_AT (default 3) a
# second node of stage 1 joins; it copies the stage's state from the first
# (STATE pieces of its source's current step: the leader's round waits for
# it, peers/lead.h, Copies), then trains beside it.  It prints, with the
# command line:
#   the copy: bytes, time from the start of the newcomer's recovery, rate,
#   and that rate over the link's;
#   the leader's wait for it (the step it waited at, the time the copy had
#   left when it did, the pause between that step's update and the one
#   before);
#   the steps the newcomer took with its twin in TWIN_STEPS steps (default
#   3) after its copy.
# Exits 1 when the copy, or TWIN_STEPS steps of the newcomer with its twin,
# did not happen within LIMIT_S (default 900).  KEEP=1 keeps the logs.
# Needs root, ip(8) and /dev/net/tun.  Not part of make check (minutes);
# `make bench` runs it.
set -u
BUILD=$(cd "${1:?usage: copy_bench.sh BUILD_DIR}" && pwd)
LINK=${LINK:-delay=25,rate=20}
JOIN_AT=${JOIN_AT:-3}
TWIN_STEPS=${TWIN_STEPS:-3}
LIMIT_S=${LIMIT_S:-900}
BENCH_LIBS=wan-lib.sh
. "$(dirname "$0")/bench-lib.sh"
wan_need # prints why and exits 0 when the network cannot be made here
echo "# copy_bench.sh $BUILD LINK=$LINK JOIN_AT=$JOIN_AT TWIN_STEPS=$TWIN_STEPS LIMIT_S=$LIMIT_S"
RATE=$(echo "$LINK" | sed -n 's/.*rate=\([0-9.]*\).*/\1/p')

M_PRESET=bench768 M_BATCH=1 M_SEQ_LEN=128 M_MODEL="n_layers = 12" \
    write_manifest "$TMP/run.conf" 100000 4 "[wire]
activations = int8
gradients = int8"
sign_manifest "$TMP/run.conf"
L=queue=100,$LINK
wan_start b:1:$L s0:10:$L s1a:11:$L s2:12:$L s3:13:$L s1b:14:$L ||
    { echo "copy_bench: no network"; exit 2; }
wan_boot b "$TMP/run.conf"
for n in 0 1a 2 3; do
    case $n in 3) for m in 0 1a 2; do
        wait_for 300 grep -q "stage ${m%a} initialised" "$TMP/n$m.log"; done ;; esac
    wan_node "$TMP/n$n.log" "s$n" "${n%a}" --linger-ms 0
done
wait_for "$LIMIT_S" steps_done "$TMP/n3.log" "$JOIN_AT" ||
    { echo "copy_bench: no step $JOIN_AT in $LIMIT_S s"; exit 1; }
echo "# the run at step $(last_step "$TMP/n3.log"): node 1b joins stage 1"
wan_node "$TMP/n1b.log" s1b 1 --linger-ms 0
rc=0
wait_for "$LIMIT_S" has_event "$TMP/n1b.log" recovery stage=1 method=copy || rc=1
msgs "$TMP/n1b.log" | grep "copying stage\|copied stage" | sed 's/^/# 1b: /' | head -n 6
echo "# copies started: $(msgs "$TMP/n1b.log" | grep -c "copying stage")"
msgs "$TMP/n0.log" | grep "copies its stage's state\|waits for a copy\|not ready after" |
    sed 's/^/# 0: /' | head -n 4
if [ $rc -eq 0 ]; then
    events "$TMP/n1b.log" recovery bytes ms | head -n 1 | awk -v r="$RATE" '{
        mbit = $1 * 8 / ($2 / 1000) / 1e6
        printf "copy: %.1f MB in %.1f s: %.1f Mbit/s, %.2f of the link'"'"'s %s Mbit/s\n",
            $1 / 1e6, $2 / 1000, mbit, (r > 0 ? mbit / r : 0), r }'
    C=$(events "$TMP/n1b.log" recovery step | head -n 1)
    echo "# copied at step $C"
    twin() { [ "$(both_steps "$TMP/n1a.log" "$TMP/n1b.log")" -ge "$TWIN_STEPS" ]; }
    wait_for "$LIMIT_S" twin || rc=1
    # the pause: the time of the step the leader waited at against the others'
    "$PY" - "$TMP/n0.log" "$C" <<'EOT'
import statistics, sys
from swlog import events
st = {o["step"]: o["step_ms"] / 1000 for o in events(sys.argv[1], "step")}
c = int(sys.argv[2])
if c in st:
    print("# the leader's step %d: %.1f s (the copy's pause); median step %.1f s" %
          (c, st[c], statistics.median(st.values())))
EOT
fi
echo "# steps 1b took with its twin: $(both_steps "$TMP/n1a.log" "$TMP/n1b.log"); its first: $(events "$TMP/n1b.log" step step | head -n 1); the run at $(last_step "$TMP/n3.log")"
for n in 0 1a 2 3 1b; do
    printf '%s=%s ' "$n" "$(msgs "$TMP/n$n.log" | grep -c "passing it over")"
done | sed 's/^/# leaders passed over: /; s/ $//'
echo
[ $rc -eq 0 ] && echo "copy_bench: ok" ||
    { echo "copy_bench: the copy or the newcomer's steps did not happen"; diag_file "$TMP/n1b.log"; }
exit $rc
