# peers-lib.sh - shared by the t03NN swarm tests (sourced).
#
# Every process started with start_bg is killed by the EXIT trap, test
# failure or not; ports are ephemeral (the bootstrap binds tcp://127.0.0.1:*
# and prints the port it got).  Nodes started here log in swarmd's machine
# format (--log-format json, swarmd(1) OUTPUT): one JSON object a line, the
# step lines and the events (listening, recovery, declared_dead, ...) with a
# stable "event" name and fields; events, has_event and the Python module
# swlog (on PYTHONPATH) read them.  The helpers that tests poll (last_step,
# has_event, has_ckpt, ...) use sed and grep, on the members' order swarmd(1)
# documents: a Python start-up on a loaded machine can take seconds.
set -u
BUILD=${TEST_BUILDDIR:-$(pwd)}
SWARMD=$BUILD/swarmd
SWARMCTL=$BUILD/swarmctl
SWARMSIM=$BUILD/swarmsim
PY=${PYTHON3:-python3}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive
TMP=$(mktemp -d "${TMPDIR:-/tmp}/swarm-t03.XXXXXX")
PIDS=""
# swlog: the json logs, for the tests' Python; also `$PY -m swlog` (events, has_event)
cat >"$TMP/swlog.py" <<'EOT'
"""The json logs of swarmd --log-format json (swarmd(1), OUTPUT)."""
import json, math, sys

def objects(path):
    """Every JSON object of the log, in order (other lines are passed over)."""
    for line in open(path, errors="replace"):
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except ValueError:
                pass

def events(path, name, **want):
    """The objects of event NAME whose fields equal want's (compared as text)."""
    return [o for o in objects(path) if o.get("event") == name and
            all(k in o and str(o[k]) == str(v) for k, v in want.items())]

def losses(path):
    """{step: loss} of the last stage's step events (null, a loss that was not finite: nan)."""
    return {o["step"]: math.nan if o["loss"] is None else o["loss"]
            for o in events(path, "step") if "loss" in o}

def stage_of(path):
    """The stage a node serves now, as its log tells: its last stage choice
    (chose_stage) or move (moved, unstacked); -1 when none."""
    s = -1
    for o in objects(path):
        if o.get("event") == "chose_stage":
            s = o["stage"]
        elif o.get("event") in ("moved", "unstacked"):
            s = o["to"]
    return s

def main(argv):
    # events LOG EVENT [FIELD...]: each event's FIELDs on a line (absent: -)
    # has_event LOG EVENT [KEY=VALUE...]: exit 0 when one matches
    cmd, path, name, rest = argv[0], argv[1], argv[2], argv[3:]
    if cmd == "has_event":
        return 0 if events(path, name, **dict(a.split("=", 1) for a in rest)) else 1
    for o in events(path, name):
        print(" ".join(str(o.get(f, "-")) for f in rest))
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
EOT
export PYTHONPATH="$TMP${PYTHONPATH:+:$PYTHONPATH}"
n_test=0
n_fail=0

cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    sleep 0.2
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    # SW_TEST_KEEP=1: the logs are kept when every test passed too
    if [ "$n_fail" -eq 0 ] && [ -z "${SW_TEST_KEEP:-}" ]; then
        rm -rf "$TMP"
    else
        echo "# logs kept in $TMP"
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ok() { # ok COND_EXIT_STATUS DESCRIPTION
    n_test=$((n_test + 1))
    if [ "$1" -eq 0 ]; then echo "ok $n_test - $2"; else echo "not ok $n_test - $2"; n_fail=$((n_fail + 1)); fi
}

diag_file() { sed 's/^/# /' "$1" | tail -n "${2:-20}"; }

# diag_msgs LOG [N]: a node's last N (20) messages as TAP comments, with
# their times, the dropped-message warnings left out (a slow link's many
# stale DHT answers hid the lines that told why t0421 failed in CI)
diag_msgs() {
    grep -v '"msg":"dropped message' "$1" |
        sed -n 's/^{"ts":"[0-9-]*T\([^"]*\)".*"level":"\([a-z]*\)",.*"msg":"\(.*\)"}$/# \1 \2: \3/p' |
        tail -n "${2:-20}"
}

# events LOG EVENT [FIELD...]: one line per EVENT of a node's LOG, its FIELDs
# separated by blanks (absent: -); Python, not for polling
events() { "$PY" -m swlog events "$@"; }

# stage_of LOG: the stage a --stage auto node serves now (its last choice or
# move; -1: neither)
stage_of() { "$PY" -c 'import sys, swlog; print(swlog.stage_of(sys.argv[1]))' "$1"; }

# has_event LOG EVENT [KEY=VALUE...]: 0 when LOG has an EVENT whose fields
# have these values (a number, or a string without quotes); for wait_for
has_event() {
    local log=$1 ev=$2
    shift 2
    has_event_filter "$@" <"$log" | grep -F -q -e "\"event\":\"$ev\"," -e "\"event\":\"$ev\"}"
}
has_event_filter() { # KEY=VALUE...: the lines of stdin that have every one
    local k v
    if [ $# -eq 0 ]; then cat; return; fi
    k=${1%%=*} v=${1#*=}
    shift
    grep -F -e "\"$k\":\"$v\"," -e "\"$k\":\"$v\"}" -e "\"$k\":$v," -e "\"$k\":$v}" |
        has_event_filter "$@"
}

# msgs LOG [EVENT]: "LEVEL: MSG" of each log line of LOG (of each EVENT), for
# diagnostics (escapes left as they are)
msgs() {
    if [ $# -gt 1 ]; then grep -F "\"event\":\"$2\"," "$1"; else cat "$1"; fi |
        sed -n 's/^{.*"level":"\([a-z]*\)",.*"msg":"\(.*\)"}$/\1: \2/p'
}

# stop_run: SIGTERM to every process start_bg started, then wait for them;
# the next run starts with none (the benches that run several in turn)
stop_run() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    PIDS=""
}

start_bg() { # start_bg LOG CMD...: run in the background, remember the pid
    local log=$1; shift
    "$@" >"$log" 2>&1 &
    PIDS="$PIDS $!"
    LAST_PID=$!
}

# write_manifest FILE STEPS STAGES [extra ini lines]: the tests' run (preset
# tiny, 4 microbatches of 4 x 32 tokens, seed 1337; M_PRESET, M_BATCH,
# M_SEQ_LEN, M_SEED change the model preset, the sequences, the tokens of a
# microbatch and the run seed; M_MODEL,
# lines under [model], overrides the preset's shape (d_model = 1024...);
# M_ADMISSION=open or owner writes an [admission] section, unset: none, that
# is mode owner)
write_manifest() {
    cat >"$1" <<EOT
[run]
name = t03
stages = $3
steps = $2
seed = ${M_SEED:-1337}

[model]
preset = ${M_PRESET:-tiny}
${M_MODEL:-}

[batch]
size = ${M_BATCH:-4}
micro = ${M_MICRO:-4}
seq_len = ${M_SEQ_LEN:-32}

[optim]
lr = 3e-3
warmup = 5

[data]
path = $DATA
EOT
    if [ -n "${M_ADMISSION:-}" ]; then printf '\n[admission]\nmode = %s\n' "$M_ADMISSION" >>"$1"; fi
    if [ $# -gt 3 ]; then printf '%s\n' "$4" >>"$1"; fi
}

DATA=$TMP/corpus.txt
# a small fixed English text: the test corpus of the data tests if present, else fortunes
for f in "${TEST_SRCDIR:-}/data/tiny.txt" /usr/share/games/fortunes/art; do
    if [ -f "$f" ]; then cat "$f" >"$DATA"; break; fi
done
if [ ! -s "$DATA" ]; then
    awk 'BEGIN { for (i = 0; i < 3000; i++) printf "the quick brown fox %d jumps over the lazy dog.\n", i }' >"$DATA"
fi

# sign_manifest FILE [KEY]: swarmctl manifest sign FILE (it writes
# FILE.sig) with the key directory KEY ($TMP/owner unless given; made on
# first use), its output appended to $TMP/sign.log; its exit status
sign_manifest() {
    OWNER_DIR=${2:-$TMP/owner}
    "$SWARMCTL" manifest sign --run "$1" --key "$OWNER_DIR" >>"$TMP/sign.log" 2>&1
}

# admit NAME [STAGE] [RUN]: a fresh key directory for a process named NAME
# and a certificate for it (swarmctl admit) signed by the owner of the last
# manifest signed ($OWNER_DIR), for the run RUN (a manifest file; the one
# start_boot serves unless given), good for STAGE (-1, any, unless given);
# sets ADMIT_OPTS to the swarmd options that present them (--key, --cert)
# and ADMIT_KEY to the key directory.
# Every process started here gets one: a run is in owner mode unless its
# manifest says [admission] mode = open (swarm.conf(5)).
KEYN=0
admit() {
    local dir
    KEYN=$((KEYN + 1))
    dir=$TMP/keys/$1.$KEYN
    mkdir -p "$TMP/keys"
    "$SWARMCTL" admit --key "${OWNER_DIR:-$TMP/owner}" --manifest "${3:-$RUN_FILE}" \
        --node "$("$SWARMCTL" key --key "$dir")" --stage "${2:--1}" -o "$dir.cert" \
        >>"$TMP/admit.log" 2>&1
    ADMIT_OPTS="--key $dir --cert $dir.cert"
    ADMIT_KEY=$dir
}

# key_id [KEY]: the public key (an --owner value) of the key directory KEY
# ($TMP/owner unless given; made on first use)
key_id() { "$SWARMCTL" key --key "${1:-$TMP/owner}"; }

# boot_endpoint LOG: wait up to 5 s for the listening event of a
# bootstrap's LOG (json, or the text line); sets BOOT to its endpoint (empty
# if it did not come)
boot_endpoint() {
    BOOT=""
    for _ in $(seq 100); do
        BOOT=$(sed -n -e 's/^{"event":"listening","ep":"\(.*\)"}$/\1/p' -e 's/^listening //p' \
            "$1" | head -n 1)
        [ -n "$BOOT" ] && break
        sleep 0.05
    done
}

# start_boot MANIFEST [extra options]: sets BOOT (its lobby endpoint)
start_boot() {
    local m=$1; shift
    RUN_FILE=$m
    admit boot
    # $ADMIT_OPTS unquoted: options and paths without blanks
    start_bg "$TMP/boot.log" "$SWARMD" bootstrap --run "$m" --listen 'tcp://127.0.0.1:*' \
        --log-format json $ADMIT_OPTS "$@"
    BOOT_PID=$LAST_PID
    boot_endpoint "$TMP/boot.log"
}

# start_keeper LOG [options]: swarmd keeper --peer $BOOT; sets KEEPER_PID
start_keeper() {
    local log=$1; shift
    admit "$(basename "$log" .log)"
    start_bg "$log" "$SWARMD" keeper --peer "$BOOT" --log-format json $ADMIT_OPTS "$@"
    KEEPER_PID=$LAST_PID
}

# ckpt_steps LOG: the steps a keeper's LOG says it committed, one a line
ckpt_steps() { sed -n 's/^{"event":"checkpoint","step":\([0-9]*\),.*/\1/p' "$1"; }

# has_ckpt LOG ERE: a keeper's LOG says it committed a step that matches ERE (whole)
has_ckpt() { ckpt_steps "$1" | grep -Eqx "$2"; }

# start_node LOG STAGE [options]: sets NODE_PID
start_node() {
    local log=$1 st=$2; shift 2
    admit "$(basename "$log" .log)"
    start_bg "$log" "$SWARMD" join --peer "$BOOT" --stage "$st" --threads 1 --log-format json \
        $ADMIT_OPTS "$@"
    NODE_PID=$LAST_PID
}

# start_swarm PREFIX SPEC... [-- OPTIONS...]: start_node once per SPEC, in
# the order given.  A SPEC is a node's NAME, optionally followed by options of
# that node alone ("3 --metrics 127.0.0.1:0": split on blanks, no quoting);
# NAME is the node's stage, optionally followed by letters that tell the
# nodes of a stage apart (0, 1a, 3b).  Each node gets OPTIONS, every %n in
# them replaced by its NAME, then its own options; it logs to
# $TMP/PREFIX<NAME>.log.  Sets P<NAME> to each node's pid, LOG_<NAME> to its
# log and SWARM_NODES to the NAMEs, in order.
start_swarm() {
    local prefix=$1 n=0 i refs="" a spec
    shift
    for a in "$@"; do [ "$a" = -- ] && break; n=$((n + 1)); done
    # OPTIONS, as references to this function's own arguments for eval
    i=$((n + 2))
    while [ $i -le $# ]; do refs="$refs \"\${$i}\""; i=$((i + 1)); done
    SWARM_NODES=""
    i=1
    while [ $i -le $n ]; do
        eval "spec=\${$i}"
        eval "swarm_node \"\$prefix\" \"\$spec\" $refs"
        SWARM_NODES="$SWARM_NODES ${spec%% *}"
        i=$((i + 1))
    done
}

# swarm_node PREFIX SPEC [OPTIONS...]: one node of start_swarm
swarm_node() {
    local prefix=$1 name=${2%% *} own="" k a
    case $2 in *" "*) own=${2#* } ;; esac
    shift 2
    k=$#
    for a in "$@"; do
        while :; do
            case $a in *%n*) a=${a%%"%n"*}$name${a#*"%n"} ;; *) break ;; esac
        done
        set -- "$@" "$a"
    done
    shift $k
    # $own unquoted: a node's own options are split on blanks
    start_node "$TMP/$prefix$name.log" "${name%%[!0-9]*}" "$@" $own
    eval "P$name=\$NODE_PID LOG_$name=\$TMP/\$prefix\$name.log"
}

# start_big_2x2 [OPTIONS...]: a big model's 2 stages x 2 replicas (nodes 1,
# 1b, 0, 0b, logging to $TMP/n<NAME>.log), stage 1's nodes first and
# initialised before stage 0's start, so that both are in the first plan;
# sets SWARM_NODES.  --dead-ms 15000: on 2 loaded cores a node busy with
# tensors of tens of MiB misses record refreshes for seconds (its compute
# blocks the event loop: issue 13, item 4), and false deaths are not what
# those tests are about.
start_big_2x2() {
    start_swarm n 1 1b -- --dead-ms 15000 "$@"
    wait_for 60 grep -q "stage 1 initialised" "$TMP/n1.log"
    wait_for 60 grep -q "stage 1 initialised" "$TMP/n1b.log"
    swarm_node n 0 --dead-ms 15000 "$@"
    swarm_node n 0b --dead-ms 15000 "$@"
    SWARM_NODES="1 1b 0 0b"
}

# wait_all SECONDS NAME...: wait for each node NAME of start_swarm in turn,
# up to SECONDS for each; 0 when every one exited 0, else 1, after naming
# each one that did not (still running, or its exit status) with the end of
# its log
wait_all() {
    local t=$1 name p log r=0
    shift
    for name in "$@"; do
        eval "p=\$P$name log=\$LOG_$name"
        if wait_pid "$p" "$t"; then
            [ "$WAIT_RC" -eq 0 ] && continue
            echo "# node $name did not finish (exit $WAIT_RC)"
        else
            echo "# node $name did not finish (still running after $t s)"
        fi
        diag_file "$log"
        r=1
    done
    return $r
}

# wait_pid PID SECONDS: 0 when it exited in time (its status in WAIT_RC)
wait_pid() {
    local i
    for i in $(seq $(($2 * 10))); do
        if ! kill -0 "$1" 2>/dev/null; then wait "$1"; WAIT_RC=$?; return 0; fi
        sleep 0.1
    done
    return 1
}

# wait_for SECONDS CMD...: poll until CMD succeeds
wait_for() {
    local t=$1 i; shift
    for i in $(seq $((t * 10))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    return 1
}

# watchdog SECONDS: the whole test in bounded time: after SECONDS it bails
# out (TAP) and the test ends, failed (its logs kept)
watchdog() {
    ( sleep "$1" >/dev/null 2>&1 </dev/null; echo "Bail out! $(basename "$0") ran past $1 s"
      kill -TERM $$ ) &
    PIDS="$PIDS $!"
    trap 'n_fail=$((n_fail + 1)); exit 1' TERM
}

# now_ms: wall clock in milliseconds (for the failure tests' figures)
now_ms() { date +%s%3N; }

# last_steps LOG: "STEP LOSS" of each step line of a last-stage LOG (the
# loss as swarmd wrote it: full precision, or null)
last_steps() {
    sed -n 's/^{"event":"step","step":\([0-9]*\),"stage":[0-9]*,"loss":\([^,]*\),.*/\1 \2/p' "$1"
}

# last_step LOG: the highest step of a last-stage log (-1: none)
last_step() { last_steps "$1" | awk '{ s = $1 } END { print s == "" ? -1 : s }'; }

# loss_at LOG STEP: the loss a last-stage LOG gave for STEP (empty: none)
loss_at() { last_steps "$1" | awk -v s="$2" '$1 == s { print $2; exit }'; }

# first_step LOG: the first step a last-stage LOG completed (empty: none)
first_step() { last_steps "$1" | awk '{ print $1; exit }'; }

# wait_steps SECONDS LOG N: until LOG's last stage completed step N
wait_steps() { wait_for "$1" steps_done "$2" "$3"; }
steps_done() { [ "$(last_step "$1")" -ge "$2" ]; }

# stage_state JSON_FILE STAGE: nodes and state of a stage in status --json
stage_state() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); s=d["stages"][int(sys.argv[2])]; print(s["nodes"], s["state"])' "$1" "$2"; }

# loss_fell LOG_BEFORE LOG_AFTER STEP [AFTER [WIDTH]]: AFTER (20) steps
# after STEP the last stage's loss is finite and below its value at STEP.
# One step's loss (4 x 32 tokens) swings by +-0.15 around the trend, so "the
# loss at" a step is the median of the WIDTH (8) steps that end there:
# STEP-WIDTH+1..STEP in LOG_BEFORE, STEP+AFTER-WIDTH+1..STEP+AFTER in
# LOG_AFTER (all of these must be there and finite).  Past step 60 the loss of
# the test model falls by about 0.05 in 20 steps, no more than the median of 8
# swings: a failure there needs a longer AFTER and a wider WIDTH.
loss_fell() {
    "$PY" - "$1" "$2" "$3" "${4:-20}" "${5:-8}" <<'EOT'
import math, statistics, sys
from swlog import losses
a, b = losses(sys.argv[1]), losses(sys.argv[2])
f, n, w = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
pre = [a[s] for s in range(max(0, f - w + 1), f + 1) if s in a]
post = [b[s] for s in range(f + n - w + 1, f + n + 1) if s in b]
if len(pre) < min(f + 1, w) or len(post) < w or not all(map(math.isfinite, pre + post)):
    print("# loss around the failure (step %d): %s; %d to %d steps later: %s"
          % (f, pre, n - w + 1, n, post))
    sys.exit(1)
before, after = statistics.median(pre), statistics.median(post)
print("# loss at the failure (step %d, median of steps %d-%d): %.6f; %d steps later (median of "
      "steps %d-%d): %.6f" % (f, max(0, f - w + 1), f, before, n, f + n - w + 1, f + n, after))
sys.exit(0 if after < before else 1)
EOT
}

# loss_finite_after LOG STEP: a last-stage LOG has a finite loss 20 steps
# after STEP (both printed)
loss_finite_after() {
    "$PY" - "$1" "$2" <<'EOT'
import math, sys
from swlog import losses
l = losses(sys.argv[1])
f = int(sys.argv[2])
after = l.get(f + 20)
print("# loss at step %d: %s; 20 steps later: %s" % (f, l.get(f), after))
sys.exit(0 if after is not None and math.isfinite(after) else 1)
EOT
}

# losses_finite_next LOG STEP N: LOG has the N losses after STEP, each finite (printed)
losses_finite_next() {
    "$PY" - "$1" "$2" "$3" <<'EOT'
import math, sys
from swlog import losses
l, f, n = losses(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
after = [l[s] for s in range(f + 1, f + 1 + n) if s in l]
print("# losses of the %d steps after step %d: %s" % (n, f, ["%.4f" % x for x in after]))
sys.exit(0 if len(after) == n and all(map(math.isfinite, after)) else 1)
EOT
}

# keeper_recovery LOG STAGE: LOG's node recovered STAGE from a keeper's
# checkpoint over the network (--from-checkpoint keeper)
keeper_recovery() { grep -Fq "\"event\":\"recovery\",\"stage\":$2,\"method\":\"checkpoint\",\"from\":\"keeper " "$1"; }

# recovered_on STATUS_JSON STAGE METHOD ADDR: swarmctl status --json shows
# a recovery of STAGE, and a node whose last recovery was by METHOD serving
# at host address ADDR (each such node printed)
recovered_on() {
    "$PY" - "$@" <<'EOT'
import json, sys
d = json.load(open(sys.argv[1]))
stage, method, addr = int(sys.argv[2]), sys.argv[3], sys.argv[4]
new = [p for p in d["peers"] if (p.get("last_recovery") or {}).get("method") == method]
for p in new:
    print("# recovered by %s on %s from %s" % (p["last_recovery"]["method"], p["endpoint"],
                                              p["last_recovery"]["from"]))
sys.exit(0 if d["stages"][stage]["recoveries"] >= 1 and new and addr + ":" in new[0]["endpoint"]
         else 1)
EOT
}

# both_steps LOG_A LOG_B [MAX]: how many steps two replicas both logged with
# the same gradient norm (steps taken together: each summed the other's
# partial), of the steps up to MAX when given (the logs are read one after
# the other while the run goes on: a cut-off read first counts both alike)
both_steps() {
    local max=${3:-999999999}
    events "$1" step step norm | awk -v m="$max" '$1 <= m' | sort >"$TMP/both.a"
    events "$2" step step norm | awk -v m="$max" '$1 <= m' | sort >"$TMP/both.b"
    comm -12 "$TMP/both.a" "$TMP/both.b" | wc -l
}

# big_model D_MODEL FFN: M_MODEL for write_manifest, the wide model of
# start_big_2x2 and sim_big (D_MODEL wide, SwiGLU FFN, 8 heads, 4 blocks)
big_model() {
    M_MODEL="d_model = $1
ffn_hidden = $2
n_heads = 8
n_kv_heads = 8
n_layers = 4"
}

# sim_big D_MODEL FFN [swarmsim options]: swarmsim train of start_big_2x2's
# model (D_MODEL wide, SwiGLU FFN, 8 heads, 4 blocks, 2 stages) on the
# tests' manifest with STEPS steps of M_SEQ_LEN tokens, into $TMP/sim; its
# exit status
sim_big() {
    local d=$1 f=$2
    shift 2
    cat >"$TMP/config.json" <<EOT
{"hidden_size": $d, "intermediate_size": $f, "num_attention_heads": 8,
 "num_key_value_heads": 8, "num_hidden_layers": 4, "vocab_size": 256,
 "max_position_embeddings": 64, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
 "tie_word_embeddings": false}
EOT
    "$SWARMSIM" train --config "$TMP/config.json" --stages 2 --steps "$STEPS" --seed 1337 \
        --batch 4 --seq-len "$M_SEQ_LEN" --micro 4 --lr 3e-3 --warmup 5 --data "$DATA" \
        --threads 1 --sample-tokens 0 --eval-every 0 --out "$TMP/sim" --log-level warn "$@" \
        >"$TMP/sim.log" 2>&1
}

# narrow_model: M_MODEL of a narrow model (d_model 64, SwiGLU 192, 4 heads,
# NARROW_LAYERS blocks, 2 by default) for microbatches of many tokens
# (t0305, t0306, t0388)
narrow_model() {
    M_MODEL="d_model = 64
ffn_hidden = 192
n_heads = 4
n_kv_heads = 4
n_layers = ${NARROW_LAYERS:-2}"
}

# narrow_swarm: narrow_model's 2-stage run of STEPS steps ($TMP/run.conf,
# signed), its bootstrap and start_swarm's nodes 0 and 1 (logs $TMP/n0.log,
# $TMP/n1.log)
narrow_swarm() {
    narrow_model
    write_manifest "$TMP/run.conf" "$STEPS" 2
    sign_manifest "$TMP/run.conf"
    start_boot "$TMP/run.conf"
    start_swarm n 0 1
}

# sim_narrow: swarmsim train of narrow_model's 2-stage run on the tests'
# manifest (STEPS steps of M_BATCH x M_SEQ_LEN tokens in M_MICRO
# microbatches), into $TMP/sim; its exit status
sim_narrow() {
    cat >"$TMP/config.json" <<EOT
{"hidden_size": 64, "intermediate_size": 192, "num_attention_heads": 4,
 "num_key_value_heads": 4, "num_hidden_layers": ${NARROW_LAYERS:-2}, "vocab_size": 256,
 "max_position_embeddings": 64, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
 "tie_word_embeddings": false}
EOT
    "$SWARMSIM" train --config "$TMP/config.json" --stages 2 --steps "$STEPS" --seed 1337 \
        --batch "$M_BATCH" --seq-len "$M_SEQ_LEN" --micro "$M_MICRO" --lr 3e-3 --warmup 5 \
        --data "$DATA" --threads 1 --sample-tokens 0 --eval-every 0 --out "$TMP/sim" \
        --log-level warn >"$TMP/sim.log" 2>&1
}

# no_mismatch: no node's log ($TMP/n*.log) reports a parameter mismatch
no_mismatch() { ! for f in "$TMP"/n*.log; do has_event "$f" param_mismatch && break; done; }

# together_2x2: the replicas of stage 0 (n0, n0b) and of stage 1 (n1, n1b)
# of start_big_2x2 each took 2 steps or more together (printed)
together_2x2() {
    local b0 b1
    b0=$(both_steps "$TMP/n0.log" "$TMP/n0b.log")
    b1=$(both_steps "$TMP/n1.log" "$TMP/n1b.log")
    echo "# steps taken together, with the same gradient norm: stage 0 $b0, stage 1 $b1"
    [ "$b0" -ge 2 ] && [ "$b1" -ge 2 ]
}

# match_sim SIM_DIR STEPS LOG...: the last stage's losses, read from the logs
# of every node of that stage (a replica that joined after step 0 logged only
# the later steps; where two logged a step they must agree), equal swarmsim
# train's (SIM_DIR/train.csv), STEPS of each, to 1e-5 relative (a run that
# went on past STEPS is compared on its first STEPS)
match_sim() {
    local sim=$1 steps=$2
    shift 2
    tail -n +2 "$sim/train.csv" | cut -d, -f2 >"$TMP/sim.txt"
    "$PY" - "$TMP/sim.txt" "$steps" "$@" <<'EOT'
import sys
from swlog import losses
sim = [float(x) for x in open(sys.argv[1])]
n = int(sys.argv[2])
sw = {}
for log in sys.argv[3:]:
    for s, l in sorted(losses(log).items()):
        if sw.setdefault(s, l) != l:
            print("# step %d: the last stage's nodes logged losses %s and %s" % (s, sw[s], l))
            sys.exit(1)
if len(sim) != n or [s for s in sorted(sw) if s < n] != list(range(n)):
    print("# steps: swarmsim %d, swarm %d (%d in 0..%d), want %d" %
          (len(sim), len(sw), sum(s < n for s in sw), n - 1, n)); sys.exit(1)
got = [sw[s] for s in range(n)]
worst = max(abs(a - b) / abs(a) for a, b in zip(sim, got))
print("# max relative loss difference to swarmsim over %d steps: %.3g (first %.6f, last %.6f)" %
      (n, worst, got[0], got[-1]))
sys.exit(0 if worst <= 1e-5 else 1)
EOT
}

# metrics_port LOG: the port of a node started with --metrics 127.0.0.1:0
# (its log names the one it got; text or json: the message is the same)
metrics_port() {
    wait_for 10 grep -q 'metrics on http://' "$1"
    sed -n 's|.*metrics on http://[^ ]*:\([0-9]*\)/metrics.*|\1|p' "$1" | head -n 1
}

# metrics PORT: the Prometheus page of a node's --metrics endpoint
metrics() {
    "$PY" - "$1" <<'EOT'
import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode())
EOT
}
