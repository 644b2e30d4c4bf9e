#!/bin/sh
# recovery_bench.sh BUILD_DIR [PRESET] [STAGES] - the cost of losing a node:
# a swarm on loopback (a bootstrap and one node per stage, --threads 1 each)
# trains a few steps, the node of a middle stage is killed with kill -9 and a
# newcomer with --stage auto is started as soon as a survivor declares it
# dead (NEWCOMER=now: at once, while the dead node's record is still fresh:
# auto trusts a record only once its node answered a ping or refreshed it;
# NEWCOMER=degraded: once `swarmctl status` also shows the run degraded);
# it rebuilds the stage by CheckFree from both neighbours.  Measured from
# the kill:
#   detection   the first "declared dead" of a survivor (and the first
#               "drivers paused" of the step leader),
#   transfer+rebuild  the newcomer's "recovery: stage K method M from ...:
#               B bytes in T ms (transfer X ms, rebuild R ms)" (T runs from
#               its first attempt, the set-up of the neighbours' stage copies
#               included, to the rebuilt stage; X from its first request for
#               the neighbours' parameters to their last piece; R the rebuild
#               after it), and the timestamps of its "chose stage",
#               "recovering stage" and "recovery:" lines,
#   first step  the first step the last stage completes after the recovery
#               (its step lines, seen by polling every 20 ms),
# beside the time the signed wire path takes for B bytes (the "signed" figure
# of `wire_bench --reps 3` at 64 MiB, run first on its own; WIRE_GBS=X skips
# it) and the ratio of the two throughputs.
#
# PRESET "stage50" (the default) is a model of d_model 1024, 16 heads, SwiGLU
# 2816, one block per stage: about 51 MB of parameters in a middle stage; any
# other name is a preset of swarm.conf(5) split in STAGES (default 4) stages.
# Batch 1 x 32 tokens, so that steps stay short on a small machine.
# Environment: WARM (steps before the kill, default 5), DEAD_MS (the nodes'
# --dead-ms; default: swarmd's), NEWCOMER (dead, now or degraded), KILL_STAGE (default STAGES/2), KEEP=1 keeps
# the logs.  Not part of make check.
set -u
BUILD=$(cd "${1:?usage: recovery_bench.sh BUILD_DIR [PRESET] [STAGES]}" && pwd)
PRESET=${2:-stage50}
STAGES=${3:-4}
WARM=${WARM:-5}
KILL_STAGE=${KILL_STAGE:-$((STAGES / 2))}
PY=${PYTHON3:-python3}
DEADOPT=""
[ -n "${DEAD_MS:-}" ] && DEADOPT="--dead-ms $DEAD_MS"
if [ "$STAGES" -lt 3 ] || [ "$KILL_STAGE" -lt 1 ] || [ "$KILL_STAGE" -ge $((STAGES - 1)) ]; then
    echo "recovery_bench: needs 3 stages or more and a middle stage to kill" >&2
    exit 2
fi
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive
DIR=$(mktemp -d "${TMPDIR:-/tmp}/recovery-bench.XXXXXX")
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    sleep 0.2
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    if [ "${KEEP:-0}" = 1 ]; then echo "logs kept in $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
now_ms() { date +%s%3N; }
# the nodes log in text (swarmd(1), OUTPUT): the timeline below reads the
# stderr lines' timestamps, and this poll runs every 20 ms, too often for a
# JSON parser beside the run it measures
last_step() { sed -n 's/^step=\([0-9]*\) loss=.*/\1/p' "$1" | tail -n 1 | grep . || echo -1; }

echo "command: $0 $*"
echo "env: WARM=$WARM KILL_STAGE=$KILL_STAGE NEWCOMER=${NEWCOMER:-dead} DEAD_MS=${DEAD_MS:-default} WIRE_GBS=${WIRE_GBS:-measured}"

# ---- the signed wire path, alone on the machine ----
if [ -z "${WIRE_GBS:-}" ]; then
    echo "wire: $BUILD/bench/wire_bench --reps 3"
    "$BUILD/bench/wire_bench" --reps 3 >"$DIR/wire.txt" 2>&1 || { cat "$DIR/wire.txt"; exit 1; }
    sed 's/^/  | /' "$DIR/wire.txt"
    WIRE_GBS=$(sed -n 's/^ *64 MiB .* signed *\([0-9.]*\) GB\/s.*/\1/p' "$DIR/wire.txt")
    [ -n "$WIRE_GBS" ] || { echo "recovery_bench: no 64 MiB line from wire_bench" >&2; exit 1; }
fi

# ---- the run ----
DATA=$DIR/corpus.txt
awk 'BEGIN { for (i = 0; i < 5000; i++) printf "the quick brown fox %d jumps over the lazy dog.\n", i }' >"$DATA"
if [ "$PRESET" = stage50 ]; then
    MODEL="preset = bench768
d_model = 1024
n_heads = 16
n_kv_heads = 16
ffn_hidden = 2816
n_layers = $STAGES
max_seq_len = 64"
else
    MODEL="preset = $PRESET"
fi
cat >"$DIR/run.conf" <<EOT
[run]
name = recovery-bench
stages = $STAGES
steps = 100000
seed = 1337

[model]
$MODEL

[batch]
size = 1
micro = 1
seq_len = 32

[optim]
lr = 1e-3
warmup = 5

[data]
path = $DATA
EOT
echo "manifest:"
sed -n '/^\[model\]/,/^\[optim\]/p' "$DIR/run.conf" | grep -v '^\[optim\]' | sed 's/^/  | /'
"$BUILD/swarmctl" manifest sign --run "$DIR/run.conf" --key "$DIR/owner" >/dev/null || exit 1
# The run is in owner mode (swarm.conf(5), [admission]): admit NAME prints
# the swarmd options of a fresh key for NAME and the owner's certificate for it.
admit() {
    mkdir -p "$DIR/keys"
    "$BUILD/swarmctl" admit --key "$DIR/owner" --manifest "$DIR/run.conf" \
        --node "$("$BUILD/swarmctl" key --key "$DIR/keys/$1")" -o "$DIR/keys/$1.cert" >/dev/null ||
        exit 1
    echo "--key $DIR/keys/$1 --cert $DIR/keys/$1.cert"
}
"$BUILD/swarmd" bootstrap --run "$DIR/run.conf" --listen 'tcp://127.0.0.1:*' $DEADOPT \
    --key "$DIR/owner" >"$DIR/boot.log" 2>&1 &
PIDS="$PIDS $!"
BOOT=""
for _ in $(seq 100); do
    BOOT=$(sed -n 's/^listening //p' "$DIR/boot.log"); [ -n "$BOOT" ] && break; sleep 0.05
done
[ -n "$BOOT" ] || { echo "recovery_bench: the bootstrap did not start" >&2; cat "$DIR/boot.log" >&2; exit 1; }
LAST=$((STAGES - 1))
for s in $(seq 0 $LAST); do
    # shellcheck disable=SC2046
    "$BUILD/swarmd" join --peer "$BOOT" --stage "$s" --threads 1 $DEADOPT $(admit "n$s") \
        >"$DIR/n$s.log" 2>&1 &
    PIDS="$PIDS $!"
    eval "P$s=\$!"
done
echo "swarm: bootstrap $BOOT, $STAGES nodes (--threads 1); waiting for step $WARM"
i=0
while [ "$(last_step "$DIR/n$LAST.log")" -lt "$WARM" ]; do
    i=$((i + 1))
    if [ $i -gt 3000 ]; then
        echo "recovery_bench: no step $WARM in 300 s" >&2; tail -n 5 "$DIR"/n*.log >&2; exit 1
    fi
    sleep 0.1
done

# ---- the kill ----
eval "VICTIM=\$P$KILL_STAGE"
KSTEP=$(last_step "$DIR/n$LAST.log")
kill -9 "$VICTIM"
T_KILL=$(now_ms)
echo "killed the node of stage $KILL_STAGE (pid $VICTIM) after step $KSTEP"
if [ "${NEWCOMER:-dead}" != now ]; then
    i=0
    until grep -q 'declared dead' "$DIR"/n*.log 2>/dev/null; do
        i=$((i + 1)); [ $i -gt 1500 ] && break; sleep 0.02
    done
fi
if [ "${NEWCOMER:-dead}" = degraded ]; then
    # what an operator watching `swarmctl status` would do (its summary
    # leaves out records 4.5 s old, so this comes later)
    i=0
    until "$BUILD/swarmctl" status --peer "$BOOT" >/dev/null 2>&1; [ $? -eq 1 ]; do
        i=$((i + 1)); [ $i -gt 300 ] && break; sleep 0.05
    done
fi
# shellcheck disable=SC2046
"$BUILD/swarmd" join --peer "$BOOT" --stage auto --threads 1 $DEADOPT $(admit new) >"$DIR/new.log" 2>&1 &
PIDS="$PIDS $!"
T_NEW=$(now_ms)
echo "newcomer --stage auto started $((T_NEW - T_KILL)) ms after the kill (NEWCOMER=${NEWCOMER:-dead})"
# the last stage's steps, each with the time it was first seen
prev=$KSTEP
: >"$DIR/steps.txt"
rec_seen=0
i=0
while :; do
    s=$(last_step "$DIR/n$LAST.log")
    if [ "$s" != "$prev" ]; then echo "$s $(now_ms)" >>"$DIR/steps.txt"; prev=$s; fi
    if [ $rec_seen -eq 0 ] && grep -q '^.* recovery: stage' "$DIR/new.log"; then rec_seen=1; rec_step=$s; fi
    [ $rec_seen -eq 1 ] && [ "$s" -gt "$rec_step" ] && break
    i=$((i + 1))
    if [ $(($(now_ms) - T_KILL)) -gt 120000 ]; then
        echo "recovery_bench: no recovery and step after it in 120 s" >&2; break
    fi
    sleep 0.02
done

# ---- the figures ----
echo
echo "logs:"
grep -h 'declared dead\|no node left' "$DIR"/n*.log | head -n 4 | sed 's/^/  | /'
grep -h 'chose stage\|recovering stage\|recovery:\|interrupted\|cannot' "$DIR/new.log" | sed 's/^/  | /'
"$PY" - "$DIR" "$T_KILL" "$KSTEP" "$WIRE_GBS" "$KILL_STAGE" "$LAST" "$T_NEW" <<'EOT'
import calendar, glob, re, sys, time
d, t_kill, kstep, wire_gbs, ks, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
t_new = int(sys.argv[7])
TS = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z ")
def ms(line):
    m = TS.match(line)
    if not m:
        return None
    v = [int(x) for x in m.groups()]
    return calendar.timegm((v[0], v[1], v[2], v[3], v[4], v[5], 0, 0, 0)) * 1000 + v[6]
def first(files, pat):
    best = None
    for f in files:
        for line in open(f, errors="replace"):
            if pat in line:
                t = ms(line)
                if t is not None and t >= t_kill - 50 and (best is None or t < best[0]):
                    best = (t, line.rstrip())
                break
    return best
surv = [f for f in sorted(glob.glob(d + "/n*.log")) if not f.endswith("/n%d.log" % ks)]
new = [d + "/new.log"]
dead = first(surv, "declared dead")
paused = first(surv, "drivers paused")
chose = first(new, "stage auto: chose stage")
start = first(new, "recovering stage")
rec = first(new, " recovery: stage")
steps = [tuple(map(int, l.split())) for l in open(d + "/steps.txt")]
def rel(e):
    return "%6d ms" % (e[0] - t_kill) if e else "   none  "
print()
print("timeline from the kill (wall clock, log timestamps):")
print("  detection: first 'declared dead' by a survivor   %s" % rel(dead))
print("             drivers paused (stage left empty)     %s" % rel(paused))
print("  newcomer:  chose its stage                       %s   %s" % (rel(chose), re.sub(r".*chose ", "chose ", chose[1]) if chose else ""))
print("             started the transfer                  %s" % rel(start))
print("             stage rebuilt (recovery line)         %s" % rel(rec))
B = T = X = R = None
if rec:
    m = re.search(r"recovery: stage (\d+) method (\S+) .*: (\d+) bytes in (\d+) ms", rec[1])
    if m:
        st, meth, B, T = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        print("             stage %d method %s: %d bytes (%.1f MB) in %d ms (set-up + transfer + rebuild)" % (st, meth, B, B / 1e6, T))
    m = re.search(r"\(transfer (\d+) ms, rebuild (\d+) ms\)", rec[1])
    if m:
        X, R = int(m.group(1)), int(m.group(2))
after = [s for s in steps if rec and s[1] >= rec[0]]
fs = after[0] if after else None
if fs:
    print("  first step completed after the recovery: step %d at %6d ms  (%d ms after the rebuild)" % (fs[0], fs[1] - t_kill, fs[1] - rec[0]))
    print("  steps completed between the kill and the rebuild: %s" % ([s[0] for s in steps if s[1] < rec[0]] or "none"))
print()
print("split of the kill-to-first-step time:")
if dead:
    print("  detection                       %6d ms" % (dead[0] - t_kill))
if dead and start:
    print("  detection to transfer start     %6d ms  (newcomer start-up and stage choice overlap the detection)" % max(0, start[0] - dead[0]))
if start:
    print("  newcomer start to transfer start %5d ms  (manifest, DHT join, records checked, stage set up)" % (start[0] - t_new))
if T is not None:
    print("  set-up + transfer + rebuild (T) %6d ms" % T)
if X is not None:
    print("    of which transfer             %6d ms  (first piece asked for to last piece in)" % X)
    print("    of which rebuild              %6d ms  (weighted average, fresh AdamW, hash)" % R)
if fs and rec:
    print("  rebuild to first step           %6d ms" % (fs[1] - rec[0]))
    print("  total, kill to first step       %6d ms" % (fs[1] - t_kill))
if B and T:
    wire_ms = B / (wire_gbs * 1e9) * 1e3
    rec_gbs = B / (T / 1e3) / 1e9
    print()
    print("signed wire path (wire_bench, 64 MiB, signed): %.2f GB/s -> %d bytes in %.0f ms" % (wire_gbs, B, wire_ms))
    print("recovery (B / T, set-up and rebuild included): %.2f GB/s, ratio to the wire path %.2f" % (rec_gbs, rec_gbs / wire_gbs))
    if X:
        x_gbs = B / (max(X, 1) / 1e3) / 1e9
        print("state transfer alone (B / transfer):           %.2f GB/s" % x_gbs)
        print("ratio transfer/wire: %.2f" % (x_gbs / wire_gbs))
EOT
