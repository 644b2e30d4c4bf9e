#!/bin/sh
# swarm-demo.sh BUILD_DIR [STEPS] - a swarm on loopback: a bootstrap and one
# node per stage (4 stages, the "small" model) train on the English fortunes
# corpus (Debian's fortunes packages: the files of /usr/share/games/fortunes
# without a dot in their name), while `swarmctl status` is shown every few
# seconds.  Every process is stopped on exit, Ctrl-C included.
#
# DEMO_KILL=1 in the environment adds a failure: after a third of the steps
# the node of stage 2 is killed with kill -9; once status shows the run
# degraded (the stage empty: its node declared dead) a newcomer is started with --stage auto, takes the empty stage and
# rebuilds it by CheckFree from its neighbours.  The status shown meanwhile
# has stage 2 empty and the run degraded, then the stage back with its
# recovery counted (the RECOV column), and the loss goes on.
set -u
BUILD=${1:?usage: swarm-demo.sh BUILD_DIR [STEPS]}
STEPS=${2:-300}
BUILD=$(cd "$BUILD" && pwd)
FORTUNES=/usr/share/games/fortunes
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive
DIR=$(mktemp -d "${TMPDIR:-/tmp}/swarm-demo.XXXXXX")
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    echo "logs: $DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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
"$BUILD/swarmd" bootstrap --run "$DIR/run.conf" --listen 'tcp://127.0.0.1:*' --owner "$OWNER" \
    >"$DIR/boot.log" 2>&1 &
PIDS="$PIDS $!"
BOOT=""
for _ in $(seq 100); do
    BOOT=$(sed -n 's/^listening //p' "$DIR/boot.log"); [ -n "$BOOT" ] && break; sleep 0.05
done
[ -n "$BOOT" ] || { echo "swarm-demo: the bootstrap did not start" >&2; cat "$DIR/boot.log" >&2; exit 1; }
echo "bootstrap on $BOOT; run manifest $DIR/run.conf"
for s in 0 1 2 3; do
    "$BUILD/swarmd" join --peer "$BOOT" --stage auto --threads 1 --owner "$OWNER" \
        >"$DIR/node$s.log" 2>&1 &
    PIDS="$PIDS $!"
    eval "NODE$s=\$!"
    sleep 0.7 # let each one publish its DHT record: auto then fills the stages in order
done
KILLED=0
while :; do
    sleep 3
    echo
    "$BUILD/swarmctl" status --peer "$BOOT"
    rc=$?
    grep -h 'trl:' "$DIR"/node*.log | tail -n 1
    if [ "${DEMO_KILL:-0}" = 1 ]; then
        step=$(grep -h 'trl:' "$DIR"/node*.log | tail -n 1 | sed -n 's/^s:\([0-9]*\) .*/\1/p')
        if [ $KILLED -eq 0 ] && [ "${step:-0}" -ge $((STEPS / 3)) ]; then
            for s in 0 1 2 3; do
                if grep -q 'chose stage 2 ' "$DIR/node$s.log"; then
                    eval "victim=\$NODE$s"
                    kill -9 "$victim"
                    echo
                    echo "=== DEMO_KILL: killed the node of stage 2 (pid $victim, node$s.log) with kill -9 after step $step ==="
                    KILLED=1
                fi
            done
        elif [ $KILLED -eq 1 ] && [ $rc -eq 1 ]; then
            "$BUILD/swarmd" join --peer "$BOOT" --stage auto --threads 1 --owner "$OWNER" \
                >"$DIR/node4.log" 2>&1 &
            PIDS="$PIDS $!"
            echo
            echo "=== DEMO_KILL: stage 2 empty, run degraded; a newcomer joins with --stage auto (node4.log) ==="
            KILLED=2
        elif [ $KILLED -eq 2 ] && grep -q 'recovery: stage' "$DIR/node4.log"; then
            echo
            grep -h 'recovery: stage' "$DIR/node4.log" | sed 's/^/=== DEMO_KILL: /'
            KILLED=3
        fi
    fi
    if grep -q 'run finished' "$DIR"/node*.log 2>/dev/null && [ $rc -ne 2 ]; then
        n=$(grep -l 'run finished' "$DIR"/node*.log | wc -l)
        [ "$n" -eq 4 ] && break
    fi
done
echo
echo "loss, first and last steps:"
grep -h 'trl:' "$DIR"/node*.log | sed -n '1p;$p'
