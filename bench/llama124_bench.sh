#!/bin/sh
# llama124_bench.sh BUILD_DIR - the CheckFree paper's LLaMA-124M shape over
# emulated home links (issue 13, benchmark goals): d_model 768, 12 blocks,
# 12 heads, SwiGLU 2048 (preset bench768 with n_layers = 12), the byte
# vocabulary (256: 85.4M parameters, 3 blocks and 85 MB of float32 a
# stage), in 4 stages x 2 replicas, batch 1 x 128 tokens in 4 microbatches,
# [wire] activations and gradients CODEC (default int8).  Every process
# runs on a host of its own behind tests/wanemu, each access link LINK
# (default "delay=25,rate=100": 50 ms one way and 100 Mbit/s between two
# hosts, queues of 100 ms).  It trains STEPS steps (default 20), then both
# nodes of stage 2 are killed with -9 and a newcomer (--stage auto, a host
# of its own) rebuilds the stage by CheckFree from stages 1 and 3; the run
# must take 3 more steps.  It prints, with the command line:
#   per stage, medians over the steps after the third of both replicas:
#     s/step    the step's time at the node (step_ms, swarmd(1)),
#     compute   its forwards and backwards (compute_ms),
#     wire      its host's busier direction's bytes a step (IP packets,
#               wanemu's counters between the third step and the last)
#               at the link's rate: serialisation, the least the link costs,
#     waiting   the rest: round trips, the neighbours' and replicas' compute
#               (on this 2-core machine 8 nodes share 2 cores, so compute
#               includes waiting for a core);
#   MB/step of every host, the recovery (bytes, transfer time, rate) and
#   the loss at the kill and 3 steps later.
#   and how many steps each node took (a replica that joins copies its
#   stage's 255 MB state from the other, STATE pieces of the source's
#   current step, while the leader's round waits for it: copy_bench.sh).
# NODE_OPTS: more swarmd join options for every node (e.g. --dead-ms 60000).
# Exits 1 when the run did not train STEPS steps within LIMIT_S (default
# 1800) or the rebuild or the 3 steps after it did not happen.  KEEP=1 keeps
# the logs.  Needs root, ip(8) and /dev/net/tun.  Not part of make check
# (minutes); `make bench` runs it.
set -u
BUILD=$(cd "${1:?usage: llama124_bench.sh BUILD_DIR}" && pwd)
STEPS=${STEPS:-20}
LINK=${LINK:-delay=25,rate=100}
CODEC=${CODEC:-int8}
LIMIT_S=${LIMIT_S:-1800}
BENCH_LIBS=wan-lib.sh
. "$(dirname "$0")/bench-lib.sh"
wan_need # prints why and exits 0 when the network cannot be made here
NODE_OPTS=${NODE_OPTS:-}
echo "# llama124_bench.sh $BUILD STEPS=$STEPS LINK=$LINK CODEC=$CODEC LIMIT_S=$LIMIT_S NODE_OPTS='$NODE_OPTS'"
RATE=$(echo "$LINK" | sed -n 's/.*rate=\([0-9.]*\).*/\1/p')

M_PRESET=bench768 M_BATCH=1 M_SEQ_LEN=128 M_MODEL="n_layers = 12" \
    write_manifest "$TMP/run.conf" 100000 4 "[wire]
activations = $CODEC
gradients = $CODEC"
sign_manifest "$TMP/run.conf"
L=queue=100,$LINK
wan_start b:1:$L s0a:10:$L s0b:11:$L s1a:12:$L s1b:13:$L s2a:14:$L s2b:15:$L s3a:16:$L \
    s3b:17:$L new:20:$L || { echo "llama124_bench: no network"; exit 2; }
wan_boot b "$TMP/run.conf"
# the last stage's two nodes last, once the others have set up their
# stages: the run starts when its last stage has a node, and a replica not
# ready by then must copy its stage's state from its twin (see above)
NODES="0a 0b 1a 1b 2a 2b 3a 3b"
for n in $NODES; do
    case $n in 3a) for m in 0a 0b 1a 1b 2a 2b; do
        wait_for 300 grep -q "stage ${m%?} initialised" "$TMP/n$m.log"; done ;; esac
    # shellcheck disable=SC2086
    wan_node "$TMP/n$n.log" "s$n" "${n%?}" --linger-ms 0 $NODE_OPTS
    eval "P$n=\$NODE_PID"
done

# the last stage's step count: the higher of its two nodes'
last3() {
    local a b
    a=$(last_step "$TMP/n3a.log"); b=$(last_step "$TMP/n3b.log")
    echo $((${a:--1} > ${b:--1} ? ${a:--1} : ${b:--1}))
}
at_least() { [ "$(last3)" -ge "$1" ]; }

T0=$(date +%s)
wait_for "$LIMIT_S" at_least 3 || { echo "llama124_bench: no step 3 in $LIMIT_S s"; exit 1; }
wan_stats && cp "$TMP/wan.stats" "$TMP/wan.3"
S3=$(last3)
wait_for "$LIMIT_S" at_least $((STEPS - 1)) || {
    echo "llama124_bench: $(last3) steps in $LIMIT_S s, not $STEPS"; exit 1; }
wan_stats && cp "$TMP/wan.stats" "$TMP/wan.end"
SN=$(last3)
echo "# $((SN + 1)) steps in $(($(date +%s) - T0)) s from the nodes' start"
msgs "$TMP/n1a.log" | grep "^info: stage 1 of 4" | sed 's/^/# /'

echo "stage  s/step  compute  wire  waiting  MB/step(up+down, per node)"
for st in 0 1 2 3; do
    "$PY" - "$TMP" "$st" "$RATE" "$((SN - S3))" "$S3" <<'EOT'
import statistics, sys
from swlog import events
d, st, rate, nsteps, s3 = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ip = {"0a": 10, "0b": 11, "1a": 12, "1b": 13, "2a": 14, "2b": 15, "3a": 16, "3b": 17}
def stats(f):
    r = {}
    for line in open(f):
        a = line.split()
        if len(a) < 2 or "=" not in a[1]:
            continue
        r[a[0].rsplit(".", 1)[1]] = {k: int(v) for k, v in (x.split("=") for x in a[1:])}
    return r
b3, be = stats(d + "/wan.3"), stats(d + "/wan.end")
step, comp, wire, mb = [], [], [], []
for n in (st + "a", st + "b"):
    h = str(ip[n])
    tx = (be[h]["tx_bytes"] - b3[h]["tx_bytes"]) / max(nsteps, 1)
    rx = (be[h]["rx_bytes"] - b3[h]["rx_bytes"]) / max(nsteps, 1)
    wire.append(max(tx, rx) * 8 / (rate * 1e6) if rate > 0 else 0)
    mb.append("%.1f" % ((tx + rx) / 1e6))
    for o in events("%s/n%s.log" % (d, n), "step"):
        if o["step"] > s3 and o.get("compute_ms", -1) >= 0:
            step.append(o["step_ms"] / 1000)
            comp.append(o["compute_ms"] / 1000)
if not step:
    print("%-6s -" % st)
    sys.exit(0)
s, c, w = statistics.median(step), statistics.median(comp), statistics.median(wire)
print("%-6s %6.2f  %7.2f  %4.2f  %7.2f  %s" % (st, s, c, w, max(s - c - w, 0), " ".join(mb)))
EOT
done

for n in $NODES; do
    printf '%s=%s ' "$n" "$(grep -c '^{"event":"step"' "$TMP/n$n.log")"
done | sed 's/^/# steps each node took: /; s/ $//'
echo

# a middle stage lost: both its nodes killed, a newcomer rebuilds it
FAIL_STEP=$(last3)
kill -9 "$P2a" "$P2b"
echo "# stage 2 (both nodes) killed after step $FAIL_STEP"
# shellcheck disable=SC2086
wan_node "$TMP/new.log" new auto --linger-ms 0 $NODE_OPTS
rc=0
wait_for 600 has_event "$TMP/new.log" recovery stage=2 method=checkfree || rc=1
msgs "$TMP/new.log" | grep "chose stage\|recovery:" | sed 's/^/# /'
events "$TMP/new.log" recovery bytes transfer_ms | head -n 1 | awk '$2 > 0 {
    printf "recovery: %.1f MB in %.1f s: %.0f Mbit/s\n", $1 / 1e6, $2 / 1000,
        $1 * 8 / ($2 / 1000) / 1e6 }'
[ $rc -eq 0 ] && { wait_for 600 at_least $((FAIL_STEP + 3)) || rc=1; }
if [ $rc -eq 0 ]; then
    echo "# after the rebuild: the last stage at step $(last3)"
    losses_finite_next "$TMP/n3a.log" "$FAIL_STEP" 3 || losses_finite_next "$TMP/n3b.log" "$FAIL_STEP" 3 || rc=1
fi
[ $rc -eq 0 ] && echo "llama124_bench: ok" || { echo "llama124_bench: the rebuild or the steps after it failed"; diag_file "$TMP/new.log"; }
exit $rc
