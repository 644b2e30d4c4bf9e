#!/bin/sh
# churn_bench.sh BUILD_DIR - a churn soak (issue 12, item 6): a 4-stage run
# of 2 nodes per stage on loopback ([recovery] mode = checkfree+, every
# node saving locally, newcomers restoring --from-checkpoint keeper as the
# last resort, a keeper saving every 10 steps) trains for CHURN_S seconds
# (default 300) while, every 10 to 20 s (drawn from SEED, default 1), one
# node or a whole stage is killed with -9 (one event in three a whole
# stage) and, 2 to 4 s later, one newcomer with --stage auto per killed
# node joins.  It prints, with the command line that made them:
#   max stall     the longest time without a new step of the last stage
#                 (step lines of every node that served it, polled every
#                 0.2 s: a figure to 0.2 s),
#   steps/s       the last stage's steps over the run's time,
#   recoveries    by method (copy, checkfree, checkfree+, checkpoint),
#   idle          newcomers alive at the end that never trained a step,
#                 though they joined 30 s before the end or more,
# and exits 1 when a stall exceeded 30 s or a newcomer stayed idle.
# KEEP=1 keeps the logs.  Not part of make check (it runs minutes; `make
# bench` runs it).
set -u
BUILD=$(cd "${1:?usage: churn_bench.sh BUILD_DIR}" && pwd)
CHURN_S=${CHURN_S:-300}
SEED=${SEED:-1}
. "$(dirname "$0")/bench-lib.sh"
echo "# churn_bench.sh $BUILD CHURN_S=$CHURN_S SEED=$SEED"
S=4
write_manifest "$TMP/run.conf" 1000000 $S "[recovery]
mode = checkfree+

[checkpoint]
every = 10"
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
start_keeper "$TMP/keeper.log" --dir "$TMP/ckpt" --every 10 --keep 2
# every node saves locally (the keeper pulls from those saves); newcomers
# may restore from the keeper's checkpoint as the last resort (the first
# nodes may not: the keeper holds none yet)
NODE_OPTS="--ckpt-dir $TMP/local-%n"
# the nodes: NAME PID STAGE(-1: auto, not chosen yet) START_S, one a line
: >"$TMP/nodes"
add_node() { # add_node NAME STAGE|auto
    local o
    o=$(echo "$NODE_OPTS" | sed "s|%n|$1|g")
    # shellcheck disable=SC2086
    start_node "$TMP/n$1.log" "$2" $o
    echo "$1 $NODE_PID $([ "$2" = auto ] && echo -1 || echo "$2") $(date +%s)" >>"$TMP/nodes"
}
for st in 0 1 2 3; do add_node "${st}a" $st; add_node "${st}b" $st; done
# the last stage's steps over time: one "SECONDS STEP" line at each new step
"$PY" - "$TMP" "$((S - 1))" >"$TMP/steps.txt" <<'EOT' &
import glob, os, re, sys, time
d, last = sys.argv[1], sys.argv[2]
pat = re.compile(r'^\{"event":"step","step":(\d+),"stage":%s,' % last, re.M)
off, best = {}, -1
while os.path.exists(os.path.join(d, "nodes")):
    for f in glob.glob(os.path.join(d, "n*.log")):
        try:
            with open(f, errors="replace") as fh:
                fh.seek(off.get(f, 0))
                data = fh.read()
                cut = data.rfind("\n") + 1
                off[f] = off.get(f, 0) + len(data[:cut].encode("utf-8", "replace"))
        except OSError:
            continue
        for m in pat.finditer(data[:cut]):
            s = int(m.group(1))
            if s > best:
                best = s
                print("%.2f %d" % (time.time(), s), flush=True)
    time.sleep(0.2)
EOT
PIDS="$PIDS $!"
wait_steps 120 "$TMP/n3a.log" 5 || { echo "churn_bench: the run did not start"; diag_file "$TMP/n3a.log"; exit 2; }
echo "# warm: the last stage trained 5 steps; churn for $CHURN_S s"
# the events, drawn from SEED: "GAP KIND PICK DELAY" (KIND 0: a whole stage)
awk -v seed="$SEED" 'BEGIN { srand(seed); for (i = 0; i < 1000; i++)
    printf "%d %d %d %d\n", 10 + int(rand() * 11), int(rand() * 3), int(rand() * 1000), 2 + int(rand() * 3) }' \
    >"$TMP/events"
alive() { # the live nodes: NAME PID STAGE (auto ones with the stage their log names)
    while read -r name pid st t; do
        kill -0 "$pid" 2>/dev/null || continue
        [ "$st" = -1 ] && st=$(stage_of "$TMP/n$name.log")
        echo "$name $pid $st"
    done <"$TMP/nodes"
}
start=$(date +%s)
k=0 nk=0 nnew=0
while read -r gap kind pick delay; do
    [ $(($(date +%s) - start + gap)) -ge "$CHURN_S" ] && break
    sleep "$gap"
    [ $(($(date +%s) - start)) -ge "$CHURN_S" ] && break
    alive >"$TMP/alive"
    n=$(wc -l <"$TMP/alive")
    [ "$n" -gt 0 ] || break
    victim=$(sed -n "$((pick % n + 1))p" "$TMP/alive")
    vst=$(echo "$victim" | cut -d' ' -f3)
    if [ "$kind" -eq 0 ] && [ "$vst" -ge 0 ]; then
        awk -v s="$vst" '$3 == s' "$TMP/alive" >"$TMP/victims"
        what="stage $vst"
    else
        echo "$victim" >"$TMP/victims"
        what="node $(echo "$victim" | cut -d' ' -f1) (stage $vst)"
    fi
    nv=$(wc -l <"$TMP/victims")
    k=$((k + 1)) nk=$((nk + nv))
    echo "# $(($(date +%s) - start)) s: event $k: kill -9 $what ($nv node$([ "$nv" -gt 1 ] && echo s)) at step $(tail -n 1 "$TMP/steps.txt" | cut -d' ' -f2)"
    while read -r name pid st; do kill -9 "$pid" 2>/dev/null; done <"$TMP/victims"
    # reaped here, so that the shell's "Killed" notices stay out of the output
    while read -r name pid st; do wait "$pid" 2>/dev/null; done <"$TMP/victims"
    sleep "$delay"
    i=0
    while [ $i -lt "$nv" ]; do
        nnew=$((nnew + 1)); i=$((i + 1))
        NODE_OPTS="$NODE_OPTS --from-checkpoint keeper" add_node "new$nnew" auto
    done
done <"$TMP/events"
rest=$((CHURN_S - ($(date +%s) - start)))
[ "$rest" -gt 0 ] && sleep "$rest"
end=$(date +%s)
rm -f "$TMP/nodes.done"; cp "$TMP/nodes" "$TMP/nodes.done"
# the figures
"$PY" - "$TMP" "$start" "$end" "$k" "$nk" <<'EOT'
import glob, json, os, sys
d, start, end, events, killed = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
pts = [tuple(map(float, l.split())) for l in open(os.path.join(d, "steps.txt")) if l.strip()]
inside = [(t, s) for t, s in pts if start <= t <= end]
times = [start] + [t for t, s in inside] + [end]
stall = max(b - a for a, b in zip(times, times[1:]))
at = max(zip(times, times[1:]), key=lambda p: p[1] - p[0])
before = [s for t, s in pts if t <= start]
s0 = before[-1] if before else (inside[0][1] if inside else 0)
s1 = inside[-1][1] if inside else s0
methods = {}
for f in glob.glob(os.path.join(d, "n*.log")):
    for line in open(f, errors="replace"):
        if line.startswith("{") and '"event":"recovery"' in line:
            try:
                m = json.loads(line).get("method", "?")
            except ValueError:
                continue
            methods[m] = methods.get(m, 0) + 1
idle = []
for line in open(os.path.join(d, "nodes.done")):
    name, pid, st, t0 = line.split()
    if not name.startswith("new") or float(t0) > end - 30:
        continue
    try:
        os.kill(int(pid), 0)
    except OSError:
        continue  # killed by the churn: not idle by its own doing
    log = open(os.path.join(d, "n%s.log" % name), errors="replace").read()
    if '"event":"step"' not in log:
        idle.append(name)
print("churn: %d kill events (%d nodes) in %.0f s" % (events, killed, end - start))
print("max stall: %.1f s (from %.0f s to %.0f s into the churn)" % (stall, at[0] - start, at[1] - start))
print("steps/s: %.2f (steps %d to %d of the last stage)" % ((s1 - s0) / max(end - start, 1), s0, s1))
print("recoveries: " + ", ".join("%s %d" % (m, methods.get(m, 0)) for m in ("copy", "checkfree", "checkfree+", "checkpoint")) +
      "".join(", %s %d" % (m, c) for m, c in sorted(methods.items()) if m not in ("copy", "checkfree", "checkfree+", "checkpoint")))
print("newcomers that never trained: %d%s" % (len(idle), (" (" + " ".join(idle) + ")") if idle else ""))
sys.exit(1 if stall > 30 or idle else 0)
EOT
rc=$?
rm -f "$TMP/nodes" # ends the step poller
[ $rc -eq 0 ] && echo "churn_bench: ok" || { echo "churn_bench: FAILED (a stall over 30 s, or an idle newcomer)"; n_fail=1; }
exit $rc
