#!/bin/sh
# status_bench.sh BUILD_DIR [CALLS] [STATUS OPTIONS...] - latency of
# `swarmctl status` on loopback: a bootstrap and 4 training nodes (the tiny
# model, one stage each, plus a replica of stages 1 and 2), then CALLS calls
# of `swarmctl status --peer BOOT` (default 12) on the quiet swarm and CALLS
# under churn: the replicas of stages 1 and 2 killed with kill -9 (their
# records and DHT contacts linger: up to 10 s and until pinged out) and
# newcomers joining with --stage auto between the calls.  Prints the median
# and the largest latency of each phase and the command that measured them,
# and the exit statuses seen.  Extra arguments go to every status call (for
# example --deadline-ms 1000); SWARMCTL=PATH measures another swarmctl (an
# older build, say) against the same swarmd.  Not part of make check: it
# measures time.
set -u
BUILD=$(cd "${1:?usage: status_bench.sh BUILD_DIR [CALLS] [STATUS OPTIONS...]}" && pwd)
CALLS=${2:-12}
shift
[ $# -gt 0 ] && shift
CTL=${SWARMCTL:-$BUILD/swarmctl}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive
DIR=$(mktemp -d "${TMPDIR:-/tmp}/status-bench.XXXXXX")
PIDS=""
trap 'for p in $PIDS; do kill $p 2>/dev/null; done; wait 2>/dev/null; rm -rf "$DIR"' EXIT
trap 'exit 130' INT TERM
awk 'BEGIN { for (i = 0; i < 20000; i++) printf "the quick brown fox %d jumps over the lazy dog.\n", i }' >"$DIR/c.txt"
cat >"$DIR/run.conf" <<EOT
[run]
name = status-bench
stages = 4
steps = 1000000
[model]
preset = tiny
[batch]
size = 4
micro = 4
seq_len = 32
[data]
path = $DIR/c.txt
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
"$BUILD/swarmd" bootstrap --run "$DIR/run.conf" --listen 'tcp://127.0.0.1:*' --key "$DIR/k" \
    >"$DIR/boot.log" 2>&1 &
PIDS="$PIDS $!"
BOOT=""
for _ in $(seq 100); do
    BOOT=$(sed -n 's/^listening //p' "$DIR/boot.log" 2>/dev/null); [ -n "$BOOT" ] && break; sleep 0.05
done
[ -n "$BOOT" ] || { echo "status_bench: the bootstrap did not start" >&2; exit 1; }

# node NAME STAGE: a training node in the background; its pid in $NODE
node() {
    # shellcheck disable=SC2046
    "$BUILD/swarmd" join --peer "$BOOT" --stage "$2" --threads 1 $(admit "$1") >"$DIR/$1.log" 2>&1 &
    NODE=$!
    PIDS="$PIDS $NODE"
}

# ms: the wall clock in milliseconds
ms() { date +%s%3N; }

# measure ARGS...: one status call; its latency (ms), exit status and
# count of unknown stages (no answer by the deadline) appended to $FILE
measure() {
    t0=$(ms)
    "$CTL" status --peer "$BOOT" "$@" >"$DIR/last.txt" 2>&1
    rc=$?
    t1=$(ms)
    unk=$(sed -n 's/^\([0-9]*\) stages* unknown:.*/\1/p' "$DIR/last.txt")
    echo "$((t1 - t0)) $rc ${unk:-0}" >>"$FILE"
}

# summary NAME FILE: median and largest latency, the exit statuses, the unknown stages
summary() {
    sort -n "$2" | awk -v name="$1" '{ t[NR] = $1; rc[$2]++; unk += $3 }
        END { m = NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
              s = ""; for (r in rc) s = s " " rc[r] "x" r
              printf "%-6s %2d calls  median %5.0f ms  max %5d ms  exit statuses:%s  unknown stages: %d\n",
                     name, NR, m, t[NR], s, unk }'
}

for s in 0 1 2 3; do node "n$s" "$s"; done
node r1 1; R1=$NODE
node r2 2; R2=$NODE
# wait until the run trains (a step completed)
for _ in $(seq 300); do
    "$BUILD/swarmctl" status --peer "$BOOT" --json 2>/dev/null | grep -q '"step":[1-9]' && break
    sleep 0.2
done
sleep 2
echo "# load: $(uptime | sed 's/.*load average/load average/')"
FILE=$DIR/quiet.txt
: >"$FILE"
for _ in $(seq "$CALLS"); do measure "$@"; sleep 0.3; done

# churn: kill -9 the replicas, then newcomers (--stage auto) and kills again
FILE=$DIR/churn.txt
: >"$FILE"
i=0
while [ $i -lt "$CALLS" ]; do
    case $((i % 6)) in
    0) kill -9 $R1 $R2 2>/dev/null ;;
    3) node "a$i" auto; R1=$NODE; node "b$i" auto; R2=$NODE ;;
    esac
    measure "$@"
    i=$((i + 1))
    sleep 0.3
done
echo "# command: $CTL status --peer $BOOT $*  (bootstrap + 6 tiny-model nodes on loopback)"
summary quiet "$DIR/quiet.txt"
summary churn "$DIR/churn.txt"
echo "# last status under churn:"
sed 's/^/#   /' "$DIR/last.txt"
