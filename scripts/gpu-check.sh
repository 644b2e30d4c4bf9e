#!/bin/sh
# gpu-check.sh [BUILD_DIR] - the checks that need an NVIDIA GPU, in one
# command, with the figures they give (issue 16, item 6):
#   1. a CUDA build (../configure --enable-cuda in BUILD_DIR, default
#      ./build-cuda: its own folder, never the CPU build's);
#   2. the CUDA parity tests: tests/test_cuda_parity (every op against the
#      CPU) and tests/test_stage_parity (a whole stage and a few training
#      steps on both backends); a skip counts as a failure here;
#   3. a 4-process swarm on loopback (a bootstrap, one `swarmd join --device
#      cuda` per stage): the node of stage 2 is killed with kill -9, a
#      newcomer (--stage auto --device cuda) rebuilds it by CheckFree, and
#      the run goes on;
#   4. the same with `[recovery] mode = checkfree+`, killing stage 0: the
#      newcomer rebuilds it by CheckFree+;
#   5. bench/stage_bench on cuda and on cpu (forward+backward GFLOP/s).
# It prints the steps, losses, rebuild times and GFLOP/s, and exits 0 when
# every check passed, 1 when one failed, and 77 (automake's "skipped") on a
# machine without an NVIDIA GPU or without nvcc, saying so.
#
# The swarm checks reuse tests/peers-lib.sh (processes killed on exit,
# manifest signing, the bootstrap's endpoint, waiting); the nodes' step and
# recovery lines are read in any of swarmd's forms (text "s:N trl:L" or
# "step=N loss=L", or --log-format json).  Environment: STEPS_BEFORE (steps
# before each kill, default 20), STEPS_AFTER (steps the run must go on
# after the rebuild, default 20), PRESET and SEQ_LEN (the swarm's model and
# sequence length, default small and 128),
# JOBS (make -j, default nproc), KEEP=1 keeps the logs.  To try the script
# itself on a machine without a GPU: SWARMS_ONLY=1 DEVICE=cpu PRESET=tiny
# SEQ_LEN=32 scripts/gpu-check.sh BUILD_DIR runs steps 3 and 4 alone, on the
# CPU, in an existing build.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$top/build-cuda}
STEPS_BEFORE=${STEPS_BEFORE:-20}
STEPS_AFTER=${STEPS_AFTER:-20}
PRESET=${PRESET:-small}
SEQ_LEN=${SEQ_LEN:-128}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
DEVICE=${DEVICE:-cuda}
FAILED=""
fail() { FAILED="$FAILED
  $1"; echo "FAIL: $1"; }
pass() { echo "ok: $1"; }

if [ "${SWARMS_ONLY:-0}" != 1 ]; then

# ---- 0. is there a GPU? ----
NVCC=$(command -v nvcc 2>/dev/null || true)
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu-check: no nvidia-smi here: this machine has no NVIDIA driver, nothing to check (skipped)"
    exit 77
fi
if ! nvidia-smi -L >"${TMPDIR:-/tmp}/gpu-check.$$" 2>&1 || ! grep -q '^GPU ' "${TMPDIR:-/tmp}/gpu-check.$$"; then
    echo "gpu-check: nvidia-smi finds no GPU, nothing to check (skipped):"
    sed 's/^/  /' "${TMPDIR:-/tmp}/gpu-check.$$"
    rm -f "${TMPDIR:-/tmp}/gpu-check.$$"
    exit 77
fi
echo "gpu-check: $(grep '^GPU ' "${TMPDIR:-/tmp}/gpu-check.$$" | head -n 1)"
rm -f "${TMPDIR:-/tmp}/gpu-check.$$"
if [ -z "$NVCC" ]; then
    echo "gpu-check: a GPU but no nvcc (the CUDA toolkit): cannot build the CUDA backend (skipped)"
    exit 77
fi
echo "gpu-check: nvcc $NVCC ($("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'))"

# ---- 1. the CUDA build ----
echo
echo "== 1. build with CUDA in $BUILD"
[ -x "$top/configure" ] || (cd "$top" && ./autogen.sh) || { echo "gpu-check: autogen.sh failed"; exit 1; }
mkdir -p "$BUILD" || exit 1
if [ ! -f "$BUILD/Makefile" ]; then
    (cd "$BUILD" && PATH="$(dirname "$NVCC"):$PATH" "$top/configure" --enable-cuda >configure.log 2>&1) ||
        { tail -n 20 "$BUILD/configure.log"; echo "gpu-check: configure --enable-cuda failed"; exit 1; }
fi
grep -q '^#define HAVE_CUDA 1' "$BUILD/config.h" ||
    { echo "gpu-check: $BUILD is not a CUDA build (config.h has no HAVE_CUDA)"; exit 1; }
if ! make -C "$BUILD" -j"$JOBS" all tests/test_cuda_parity tests/test_stage_parity \
        bench/stage_bench >"$BUILD/gpu-check-make.log" 2>&1; then
    tail -n 30 "$BUILD/gpu-check-make.log"
    echo "gpu-check: the CUDA build failed ($BUILD/gpu-check-make.log)"
    exit 1
fi
pass "CUDA build ($BUILD)"

# ---- 2. parity ----
echo
echo "== 2. CUDA parity tests"
for t in test_cuda_parity test_stage_parity; do
    out=$BUILD/tests/$t.gpu-check.log
    "$BUILD/tests/$t" >"$out" 2>&1
    rc=$?
    grep -E '^(ok|not ok)|max|diff' "$out" | sed 's/^/  | /' | tail -n 40
    if [ $rc -ne 0 ] || grep -q '^not ok' "$out"; then
        fail "tests/$t (exit $rc; $out)"
    elif grep -qi '# *skip' "$out" || ! grep -q '^ok' "$out"; then
        fail "tests/$t skipped on a machine with a GPU ($out)"
    else
        pass "tests/$t: $(grep -c '^ok' "$out") checks"
    fi
done

fi # SWARMS_ONLY

# ---- 3, 4. swarms on the GPU ----
TEST_BUILDDIR=$BUILD TEST_SRCDIR=$top/tests
export TEST_BUILDDIR TEST_SRCDIR
# peers-lib.sh: TMP, start_bg (killed on exit), sign_manifest, boot_endpoint, wait_for, wait_pid
. "$top/tests/peers-lib.sh"
[ "${KEEP:-0}" = 1 ] && n_fail=1 # its cleanup keeps $TMP when a test "failed"
TEXT=""
"$SWARMD" join --help 2>&1 | grep -q -- '--log-format' && TEXT="--log-format text"

# steps LOG: "STEP LOSS" of each step line of a last-stage LOG, any form
steps() {
    sed -n -e 's/^s:\([0-9][0-9]*\) trl:\([^ ]*\).*/\1 \2/p' \
        -e 's/^step=\([0-9][0-9]*\) loss=\([^ ]*\).*/\1 \2/p' \
        -e 's/^{"event":"step","step":\([0-9]*\),"stage":[0-9]*,"loss":\([^,]*\),.*/\1 \2/p' "$1"
}
last() { steps "$1" | awk '{ s = $1 } END { print s == "" ? -1 : s }'; }
# until_step SECONDS LOG N: until LOG's last stage completed step N
until_step() {
    for _ in $(seq $(($1 * 10))); do [ "$(last "$2")" -ge "$3" ] && return 0; sleep 0.1; done
    return 1
}
# finite LOG: every loss of LOG is a finite number
finite() { steps "$1" | awk '$2 !~ /^-?[0-9.]+(e[-+]?[0-9]+)?$/ { bad = 1 } END { exit bad }'; }

# swarm NAME MODE KILL: a swarm of MODE (checkfree, checkfree+) on cuda; the
# node of stage KILL killed after STEPS_BEFORE steps; a newcomer must rebuild
# it by MODE and the run go on STEPS_AFTER steps after the rebuild (the
# stage killed is never the last: its node logs the steps and losses)
swarm() {
    name=$1 mode=$2 kill=$3
    d=$TMP/$name
    mkdir -p "$d"
    cat >"$d/run.conf" <<EOT
[run]
name = gpu-check-$name
stages = 4
steps = 1000000
seed = 1337
[model]
preset = $PRESET
[batch]
size = 8
micro = 4
seq_len = $SEQ_LEN
[optim]
lr = 3e-3
warmup = 10
[recovery]
mode = $mode
[data]
path = $DATA
EOT
    sign_manifest "$d/run.conf" || { fail "$name: cannot sign the manifest"; diag_file "$TMP/sign.log" 2; return; }
    RUN_FILE=$d/run.conf # peers-lib's admit: a key and a certificate for each process
    admit "$name-boot"
    # shellcheck disable=SC2086
    start_bg "$d/boot.log" "$SWARMD" bootstrap --run "$d/run.conf" --listen 'tcp://127.0.0.1:*' $TEXT \
        $ADMIT_OPTS
    bpid=$LAST_PID
    boot_endpoint "$d/boot.log"
    [ -n "$BOOT" ] || { fail "$name: the bootstrap did not start"; diag_file "$d/boot.log"; return; }
    for s in 0 1 2 3; do
        admit "$name-n$s"
        # shellcheck disable=SC2086
        start_bg "$d/n$s.log" "$SWARMD" join --peer "$BOOT" --stage $s --device $DEVICE --threads 2 $TEXT \
            $ADMIT_OPTS
        eval "P$s=\$LAST_PID"
    done
    if ! until_step 300 "$d/n3.log" "$STEPS_BEFORE"; then
        fail "$name: no step $STEPS_BEFORE in 300 s on $DEVICE"
        for s in 0 1 2 3; do diag_file "$d/n$s.log" 5; done
        return
    fi
    eval "victim=\$P$kill"
    kstep=$(last "$d/n3.log")
    kill -9 "$victim"
    t_kill=$(now_ms)
    echo "  $name: killed the node of stage $kill (pid $victim) with kill -9 after step $kstep"
    # the newcomer once a survivor declared the node dead (what --stage auto trusts)
    wait_for 60 grep -q 'declared dead' "$d"/n*.log
    admit "$name-new"
    # shellcheck disable=SC2086
    start_bg "$d/new.log" "$SWARMD" join --peer "$BOOT" --stage auto --device $DEVICE --threads 2 $TEXT \
        $ADMIT_OPTS
    if ! wait_for 180 grep -q 'recovery: stage' "$d/new.log"; then
        fail "$name: no recovery of stage $kill in 180 s"
        diag_file "$d/new.log" 10
        return
    fi
    t_rec=$(now_ms)
    line=$(grep -h 'recovery: stage' "$d/new.log" | head -n 1 | sed 's/.*\(recovery: stage\)/\1/; s/"[,}].*//')
    echo "  $name: $line"
    echo "  $name: kill to recovery line seen: $((t_rec - t_kill)) ms"
    case $line in
    *"recovery: stage $kill method $mode "*) pass "$name: stage $kill rebuilt by $mode" ;;
    *) fail "$name: stage $kill not rebuilt by $mode: $line" ;;
    esac
    ms=$(echo "$line" | sed -n 's/.* \([0-9]*\) bytes in \([0-9]*\) ms.*/\1 bytes in \2 ms/p')
    echo "  $name: rebuild of stage $kill: ${ms:-?} (the newcomer's own figure)"
    rstep=$(last "$d/n3.log")
    want=$((rstep + STEPS_AFTER))
    if until_step 300 "$d/n3.log" "$want"; then
        pass "$name: the run went on to step $(last "$d/n3.log") (rebuilt at step $rstep)"
    else
        fail "$name: the run did not reach step $want after the rebuild in 300 s"
        diag_file "$d/n3.log" 5
    fi
    if finite "$d/n3.log"; then
        steps "$d/n3.log" | awk -v n="$name" 'NR == 1 { f = $0 } { l = $0 } END {
            split(f, a, " "); split(l, b, " ")
            printf "  %s: loss at step %s %s, at step %s %s\n", n, a[1], a[2], b[1], b[2] }'
    else
        fail "$name: a loss that is not a finite number ($d/n3.log)"
    fi
    for p in $P0 $P1 $P2 $P3 $LAST_PID $bpid; do kill "$p" 2>/dev/null; done
    sleep 1
}

echo
echo "== 3. swarm on $DEVICE: kill -9 a middle stage (2), CheckFree rebuild"
swarm checkfree checkfree 2
echo
echo "== 4. swarm on $DEVICE, [recovery] mode = checkfree+: kill -9 stage 0, CheckFree+ rebuild"
swarm checkfreeplus checkfree+ 0

# ---- 5. stage_bench ----
DEVS="cuda cpu"
if [ "${SWARMS_ONLY:-0}" = 1 ]; then
    DEVS=""
else
    echo
    echo "== 5. bench/stage_bench: cuda against cpu"
fi
for dev in $DEVS; do
    out=$TMP/stage_bench.$dev.txt
    echo "  \$ bench/stage_bench --device $dev --threads $JOBS"
    if "$BUILD/bench/stage_bench" --device $dev --threads "$JOBS" >"$out" 2>&1; then
        sed 's/^/  | /' "$out"
        pass "stage_bench --device $dev"
    else
        sed 's/^/  | /' "$out"
        fail "stage_bench --device $dev"
    fi
done

echo
if [ -n "$FAILED" ]; then
    echo "gpu-check: FAILED:$FAILED"
    n_fail=1
    exit 1
fi
echo "gpu-check: every check passed"
exit 0
