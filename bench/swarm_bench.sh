#!/bin/sh
# swarm_bench.sh BUILD_DIR [STEPS] [PRESET] - tokens/s of a 4-process swarm on
# loopback (bootstrap + one node per stage, --threads 1 each) against
# `swarmsim train` in one process with the same manifest, in the same run;
# prints both, their ratio, and the largest relative difference between
# the two loss curves.  Environment: DEVICE (auto, cpu or cuda: every node
# and swarmsim; several nodes share one GPU), RECOVERY (checkfree or
# checkfree+: the swapped route and the replicas).  Not part of make check.
set -u
BUILD=$(cd "${1:?usage: swarm_bench.sh BUILD_DIR [STEPS] [PRESET]}" && pwd)
STEPS=${2:-30}
PRESET=${3:-small}
SIMTHREADS=${SIMTHREADS:-0}
DEVICE=${DEVICE:-auto}
RECOVERY=${RECOVERY:-checkfree}
export OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive
DIR=$(mktemp -d "${TMPDIR:-/tmp}/swarm-bench.XXXXXX")
PIDS=""
trap 'for p in $PIDS; do kill $p 2>/dev/null; done; wait 2>/dev/null; rm -rf "$DIR"' EXIT
trap 'exit 130' INT TERM
FILES=$(find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.*' 2>/dev/null | sort )
DATA=""
if [ -n "$FILES" ]; then
    # one file: inih reads lines of at most 200 bytes, too short for a list
    cat $FILES >"$DIR/fortunes.txt"
    DATA=$DIR/fortunes.txt
fi
if [ -z "$DATA" ]; then
    awk 'BEGIN { for (i = 0; i < 20000; i++) printf "the quick brown fox %d jumps over the lazy dog.\n", i }' >"$DIR/c.txt"
    DATA=$DIR/c.txt
fi
cat >"$DIR/run.conf" <<EOT
[run]
stages = 4
steps = $STEPS
[model]
preset = $PRESET
[batch]
size = 8
micro = 8
seq_len = 128
[optim]
warmup = 5
[recovery]
mode = $RECOVERY
[data]
path = $DATA
EOT
"$BUILD/swarmctl" manifest sign --run "$DIR/run.conf" --key "$DIR/k" >/dev/null || exit 1
# The run is in owner mode (swarm.conf(5), [admission]): admit NAME prints
# the swarmd options of a fresh key for NAME and the owner's certificate for it.
admit() {
    mkdir -p "$DIR/keys"
    "$BUILD/swarmctl" admit --key "$DIR/k" --manifest "$DIR/run.conf" \
        --node "$("$BUILD/swarmctl" key --key "$DIR/keys/$1")" -o "$DIR/keys/$1.cert" >/dev/null ||
        exit 1
    echo "--key $DIR/keys/$1 --cert $DIR/keys/$1.cert"
}
# the nodes log in swarmd's machine format (--log-format json, swarmd(1) OUTPUT)
"$BUILD/swarmd" bootstrap --run "$DIR/run.conf" --listen 'tcp://127.0.0.1:*' --log-format json \
    --key "$DIR/k" >"$DIR/boot.log" 2>&1 &
PIDS="$PIDS $!"
# jfield LOG EVENT FIELD: FIELD of each EVENT object of LOG, one a line
jfield() {
    python3 -c 'import json, sys
for l in open(sys.argv[1], errors="replace"):
    if not l.startswith("{"): continue
    try: o = json.loads(l)
    except ValueError: continue
    if (o.get("event") or "") == sys.argv[2] and sys.argv[3] in o: print(o[sys.argv[3]])' "$@"
}
for _ in $(seq 100); do
    BOOT=$(sed -n 's/^{"event":"listening","ep":"\(.*\)"}$/\1/p' "$DIR/boot.log")
    [ -n "$BOOT" ] && break; sleep 0.05
done
NP=""
for s in 0 1 2 3; do
    # shellcheck disable=SC2046
    OMP_NUM_THREADS=1 "$BUILD/swarmd" join --peer "$BOOT" --stage $s --threads 1 --linger-ms 0 \
        --device "$DEVICE" --log-format json $(admit "n$s") >"$DIR/n$s.log" 2>&1 &
    NP="$NP $!"; PIDS="$PIDS $!"
done
for p in $NP; do wait $p; done
# swarm: tokens/s over the steady steps (the first 3 excluded: start-up)
SW=$(jfield "$DIR/n3.log" step tok_s | tail -n +4 |
     awk '{ s += 1 / $1; n++ } END { if (n) printf "%.0f", n / s; else print 0 }')
OMP_NUM_THREADS=${SIMTHREADS#0} "$BUILD/swarmsim" train --preset $PRESET --stages 4 --steps $STEPS \
    --batch 8 --micro 8 --seq-len 128 --warmup 5 --data "$DATA" --threads $SIMTHREADS \
    --sample-tokens 0 --eval-every 0 --out "$DIR/sim" --log-level warn --device "$DEVICE" \
    --recovery "$RECOVERY" >"$DIR/sim.log" 2>&1
SIM=$(sed -n 's/.* tok\/s=\([0-9]*\).*/\1/p' "$DIR/sim.log" | tail -n +4 |
      awk '{ s += 1 / $1; n++ } END { if (n) printf "%.0f", n / s; else print 0 }')
echo "preset $PRESET, 4 stages, batch 8 x 128 x 8 micro, $STEPS steps, device $DEVICE, recovery $RECOVERY"
jfield "$DIR/n0.log" "" msg | grep 'stage 0 of' | sed 's/^/node 0: /'
echo "swarm (4 processes, 1 thread each): $SW tokens/s"
echo "swarmsim (1 process, threads ${SIMTHREADS}): $SIM tokens/s"
awk -v a="$SW" -v b="$SIM" 'BEGIN { if (b > 0) printf "ratio swarm/swarmsim: %.3f\n", a / b }'
jfield "$DIR/n3.log" step loss >"$DIR/l.swarm"
tail -n +2 "$DIR/sim/train.csv" | cut -d, -f2 >"$DIR/l.sim"
paste "$DIR/l.swarm" "$DIR/l.sim" | awk '{ d = ($1 - $2) / $2; if (d < 0) d = -d; if (d > m) m = d; n++ }
    END { printf "loss curves: %d steps, largest relative difference swarm/swarmsim %.2g\n", n, m }'
