#!/bin/sh
# swarm-demo.sh BUILD_DIR [STEPS] - a swarm on loopback: a bootstrap, a
# checkpoint keeper and one node per stage (4 stages, the "small" model)
# train on the English fortunes corpus (Debian's fortunes packages: the files
# of /usr/share/games/fortunes without a dot in their name), while `swarmctl
# status` is shown every few seconds.  It ends with a result: the keeper
# saves the run's last step, the nodes leave, the last `swarmctl status`
# shows the run finished, the model is exported in the Hugging Face layout
# (model.safetensors and config.json) into $DIR/model, DEMO_OUT if set, and
# `swarmsim sample` prints text from it.  Every process is stopped on exit,
# Ctrl-C included; the logs stay in $DIR (named at the end).
#
# DEMO_KILL=1 in the environment adds a failure: after a third of the steps
# the node of stage 2 is killed with kill -9; once status shows the run
# degraded (the stage empty: its node declared dead) a newcomer is started
# with --stage auto, takes the empty stage and rebuilds it by CheckFree from
# its neighbours.  The status shown meanwhile has stage 2 empty and the run
# degraded, then the stage back with its recovery counted (the RECOV
# column), and the loss goes on.
set -u
BUILD=${1:?usage: swarm-demo.sh BUILD_DIR [STEPS]}
STEPS=${2:-300}
BUILD=$(cd "$BUILD" && pwd)
FORTUNES=/usr/share/games/fortunes
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive
DIR=$(mktemp -d "${TMPDIR:-/tmp}/swarm-demo.XXXXXX")
OUT=${DEMO_OUT:-$DIR/model}
# the keeper's checkpoints: three in the run, and always its last step
EVERY=$(((STEPS + 2) / 3))
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    echo "logs: $DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# the last stage's step lines ("step=280 loss=2.0710 lr=...", swarmd(1)
# OUTPUT), as "STEP LOSS"
steps() {
    sed -n -e 's/^step=\([0-9][0-9]*\) loss=\([^ ]*\).*/\1 \2/p' "$DIR"/node*.log 2>/dev/null
}
# the last step line itself, as the node wrote it
last_line() {
    grep -h -E '^step=[0-9]+ loss=' "$DIR"/node*.log 2>/dev/null | tail -n 1
}
# alive PID...: 0 when one of them still runs
alive() {
    for p in "$@"; do kill -0 "$p" 2>/dev/null && return 0; done
    return 1
}
# wait_exit SECONDS PID...: until they all exited; 1 when one still runs
wait_exit() {
    wait_s=$1
    shift
    for _ in $(seq $((wait_s * 10))); do alive "$@" || return 0; sleep 0.1; done
    return 1
}

FILES=$(find "$FORTUNES" -maxdepth 1 -type f ! -name '*.*' 2>/dev/null | sort )
DATA=""
if [ -n "$FILES" ]; then
    # one file: inih reads lines of at most 200 bytes, too short for a list
    cat $FILES >"$DIR/fortunes.txt"
    DATA=$DIR/fortunes.txt
fi
if [ -z "$DATA" ]; then
    echo "swarm-demo: no fortunes in $FORTUNES (apt-get install fortunes-min fortunes)" >&2
    exit 1
fi
cat >"$DIR/run.conf" <<EOT
[run]
name = fortunes-demo
stages = 4
steps = $STEPS
seed = 1337

[model]
preset = small

[batch]
size = 8
micro = 4
seq_len = 128

[optim]
lr = 3e-3
warmup = 20

[data]
path = $DATA
EOT
"$BUILD/swarmctl" manifest sign --run "$DIR/run.conf" --key "$DIR/owner" || exit 1
OWNER=$("$BUILD/swarmctl" key --key "$DIR/owner")
# The run is in owner mode (swarm.conf(5), [admission]): a process takes part
# only with its key certified by the owner.  admit NAME: a key directory for
# the process NAME, and the owner's certificate for it; prints the swarmd
# options that present them.
admit() {
    "$BUILD/swarmctl" admit --key "$DIR/owner" --manifest "$DIR/run.conf" \
        --node "$("$BUILD/swarmctl" key --key "$DIR/keys/$1")" -o "$DIR/keys/$1.cert" \
        >>"$DIR/admit.log" || exit 1
    echo "--key $DIR/keys/$1 --cert $DIR/keys/$1.cert"
}
mkdir -p "$DIR/keys"
# the bootstrap runs with the owner's own key, which needs no certificate
"$BUILD/swarmd" bootstrap --run "$DIR/run.conf" --listen 'tcp://127.0.0.1:*' --owner "$OWNER" \
    --key "$DIR/owner" >"$DIR/boot.log" 2>&1 &
PIDS="$PIDS $!"
BOOT=""
for _ in $(seq 100); do
    BOOT=$(sed -n 's/^listening //p' "$DIR/boot.log" 2>/dev/null); [ -n "$BOOT" ] && break; sleep 0.05
done
[ -n "$BOOT" ] || { echo "swarm-demo: the bootstrap did not start" >&2; cat "$DIR/boot.log" >&2; exit 1; }
echo "bootstrap on $BOOT; run manifest $DIR/run.conf"
# shellcheck disable=SC2046
"$BUILD/swarmd" keeper --peer "$BOOT" --owner "$OWNER" --dir "$DIR/ckpt" --every "$EVERY" \
    $(admit keeper) >"$DIR/keeper.log" 2>&1 &
KEEPER=$!
PIDS="$PIDS $KEEPER"
echo "keeper: a checkpoint every $EVERY steps and the last one into $DIR/ckpt"
# One node per stage, named (--stage auto chooses from the records the others
# published, which a busy machine may not have put yet).  The nodes linger
# after the last step until the keeper has saved it; then they are asked to
# leave (below).
NODES=""
for s in 0 1 2 3; do
    # shellcheck disable=SC2046
    "$BUILD/swarmd" join --peer "$BOOT" --stage $s --threads 1 --owner "$OWNER" \
        --linger-ms 600000 $(admit node$s) >"$DIR/node$s.log" 2>&1 &
    PIDS="$PIDS $!"
    NODES="$NODES $!"
    eval "NODE$s=\$!"
done
KILLED=0
while :; do
    sleep 3
    echo
    # generous limits: a demo on 2 cores keeps them busy, and a slow answer
    # should show late rather than as an unknown stage
    "$BUILD/swarmctl" status --peer "$BOOT" --deadline-ms 2000 --timeout-ms 5000 \
        >"$DIR/status.txt" 2>&1
    rc=$?
    cat "$DIR/status.txt"
    last_line
    grep -q '^run .* finished at step' "$DIR/status.txt" && break
    # shellcheck disable=SC2086
    if ! alive $NODES; then
        echo "swarm-demo: every node exited before the run finished" >&2
        exit 1
    fi
    if [ "${DEMO_KILL:-0}" = 1 ]; then
        step=$(steps | tail -n 1 | cut -d' ' -f1)
        if [ $KILLED -eq 0 ] && [ "${step:-0}" -ge $((STEPS / 3)) ]; then
            kill -9 "$NODE2"
            echo
            echo "=== DEMO_KILL: killed the node of stage 2 (pid $NODE2, node2.log) with kill -9 after step $step ==="
            KILLED=1
        elif [ $KILLED -eq 1 ] && [ $rc -eq 1 ]; then
            # shellcheck disable=SC2046
            "$BUILD/swarmd" join --peer "$BOOT" --stage auto --threads 1 --owner "$OWNER" \
                --linger-ms 600000 $(admit node4) >"$DIR/node4.log" 2>&1 &
            PIDS="$PIDS $!"
            NODES="$NODES $!"
            echo
            echo "=== DEMO_KILL: stage 2 empty, run degraded; a newcomer joins with --stage auto (node4.log) ==="
            KILLED=2
        elif [ $KILLED -eq 2 ] && grep -q 'recovery: stage' "$DIR/node4.log"; then
            echo
            grep -h 'recovery: stage' "$DIR/node4.log" | sed 's/^/=== DEMO_KILL: /'
            KILLED=3
        fi
    fi
done

echo
echo "=== the run's $STEPS steps are done; the keeper saves the last one ==="
if ! wait_exit 120 "$KEEPER"; then
    echo "swarm-demo: the keeper did not save the last step in 2 minutes (keeper.log)" >&2
    tail -n 5 "$DIR/keeper.log" >&2
    exit 1
fi
grep -h '^checkpoint ' "$DIR/keeper.log"
# the nodes leave (SIGTERM: a "leaving" record, then exit 0)
# shellcheck disable=SC2086
for p in $NODES; do kill -TERM "$p" 2>/dev/null; done
# shellcheck disable=SC2086
wait_exit 30 $NODES
# their records go within 10 s (a "leaving" one at once, when its put lands)
for _ in $(seq 15); do
    "$BUILD/swarmctl" status --peer "$BOOT" --deadline-ms 2000 --timeout-ms 5000 2>/dev/null |
        grep -q '^run .*  0 nodes' && break
    sleep 1
done
echo
echo "=== the nodes have left; the bootstrap still knows how the run ended ==="
"$BUILD/swarmctl" status --peer "$BOOT" --deadline-ms 2000 --timeout-ms 5000
echo
echo "loss, first and last steps:"
steps | sed -n '1p;$p' | sed 's/^\([0-9]*\) \(.*\)/step \1: loss \2/'
echo
"$BUILD/swarmctl" checkpoint export --dir "$DIR/ckpt" --out "$OUT" || exit 1
echo "model: $OUT (model.safetensors, config.json: Hugging Face LLaMA layout)"
echo
echo "=== swarmsim sample --model $OUT/model.safetensors --prompt 'The meaning of life is ' ==="
"$BUILD/swarmsim" sample --model "$OUT/model.safetensors" --prompt "The meaning of life is " \
    --tokens 200 --threads 2 || exit 1
echo
