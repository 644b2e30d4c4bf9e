#!/bin/sh
# grad_codec_bench.sh BUILD_DIR - what the replicas' gradient codec
# ([wire] gradients, swarm.conf(5)) costs the loss: for each codec of
# CODECS (default "fp32 int8 int4") and each run seed of SEEDS (default
# "1337 1338 1339"), a swarm of 2 stages x 2 replicas (the tests' run:
# preset tiny, 4 microbatches of 4 x 32 tokens, int8 activations) on
# loopback trains STEPS steps (default 300), each replica sending its
# partial gradient in that codec (int8 and int4 with error feedback).  It
# prints per codec and seed the last stage's mean loss over the last 50
# steps (both replicas' losses, which are the same microbatches' when they
# step together) and the steps both stage-1 replicas took together (the
# steps where partials were exchanged), then per codec the mean over the
# seeds and its difference to fp32's.  Minutes; not part of make check.
set -u
BUILD=$(cd "${1:?usage: grad_codec_bench.sh BUILD_DIR}" && pwd)
STEPS=${STEPS:-300}
CODECS=${CODECS:-fp32 int8 int4}
SEEDS=${SEEDS:-1337 1338 1339}
. "$(dirname "$0")/bench-lib.sh"
echo "# grad_codec_bench.sh $BUILD STEPS=$STEPS CODECS='$CODECS' SEEDS='$SEEDS'"
printf '%-6s %-6s %10s %10s\n' codec seed "loss@last50" together
for c in $CODECS; do
    for seed in $SEEDS; do
        d=$TMP/$c-$seed
        mkdir -p "$d"
        M_SEED=$seed write_manifest "$d/run.conf" "$STEPS" 2 "[wire]
activations = int8
gradients = $c"
        sign_manifest "$d/run.conf"
        start_boot "$d/run.conf"
        start_big_2x2
        if ! wait_all $((STEPS * 4 + 120)) $SWARM_NODES; then
            printf '%-6s %-6s %10s\n' "$c" "$seed" failed
            stop_run
            continue
        fi
        for n in 1 1b; do cp "$TMP/n$n.log" "$d/n$n.log"; done
        "$PY" - "$d/n1.log" "$d/n1b.log" "$c" "$seed" >>"$TMP/results" <<'EOT'
import sys
from swlog import losses
a, b = losses(sys.argv[1]), losses(sys.argv[2])
sw = dict(b)
sw.update(a)
last = max(sw)
tail = [sw[s] for s in sw if s > last - 50]
print("%s %s %.4f %d" % (sys.argv[3], sys.argv[4], sum(tail) / len(tail), len(set(a) & set(b))))
EOT
        tail -n 1 "$TMP/results" | awk '{ printf "%-6s %-6s %10s %10s\n", $1, $2, $3, $4 }'
        stop_run
    done
done
echo "# per codec, the mean over the seeds (difference to fp32's)"
awk '{ s[$1] += $3; n[$1]++ } END {
    f = n["fp32"] ? s["fp32"] / n["fp32"] : 0
    for (c in s) printf "%-6s %.4f (%+.4f)\n", c, s[c] / n[c], f ? s[c] / n[c] - f : 0 }' \
    "$TMP/results" | sort
