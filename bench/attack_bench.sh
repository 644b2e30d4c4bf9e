#!/bin/sh
# attack_bench.sh BUILD_DIR - the throughput an open run keeps under each
# attack of issue 12 that leaves its nodes in place, side by side with the
# undisturbed run ("Done when": >= 0.8 of it).  One open-admission 4-stage
# run (the attack tests' model: tests/t0382-t0384), then windows of WIN_S
# seconds (default 40) of the last stage's steps, alternating quiet and
# attacked, so that two quiet windows bracket each attack (a stranger's
# first record costs the run one PREPARE timeout, 5 s, once: see lead.h,
# "Whom a round waits for"; the windows are long enough to show what the
# attack costs the run from then on):
#   quiet, 1, quiet, 2, quiet, 3, quiet, 4, quiet, 6, quiet, 7, quiet, 8, quiet
# The attacks (tests/test_peers_attack, started with attack-lib.sh's
# attack_start; their numbers are the tests'):
#   1 PREPARE(step + 1000) to every node every 100 ms     (t0382)
#   2 a stage-0 record with the lowest key of the run     (t0382)
#   3 a stage-0 record at step + 1000 serving zeros       (t0382)
#   4 50 fake stage-2 records                              (t0383)
#   6 25000 valid requests from 200 keys                   (t0384)
#   7 20000 valid requests from 20000 fresh keys           (t0384)
#   8 20000 transport PINGs from one key                   (t0384)
# (5 kills a node: not a throughput figure.)  An attacked window begins
# LEAD_S (2) seconds after the helper is in the run (its records or first
# requests are out) and lasts WIN_S; a flood that has sent everything
# before the window ends is started again at once (a fresh helper: a second
# or so of its setup falls in the window), so that the whole window is
# under attack.  After each attack, SETTLE_S (5) seconds pass before the
# next quiet window (the helper's exit); what lingers after (records that
# live on) shows in that quiet window.
# Prints one line per attack: the quiet steps/s (the median of the two
# windows around it), the attacked steps/s and their ratio, and the command
# line that made them.  Exits 1 when a ratio is under 0.8 or the run did
# not start.  ATTACKS="1 3" runs only those; KEEP=1 keeps the logs.  A
# timing run: nothing else heavy should run meanwhile.  Not part of make
# check; `make bench` runs it.
set -u
BUILD=$(cd "${1:?usage: attack_bench.sh BUILD_DIR}" && pwd)
WIN_S=${WIN_S:-40}
LEAD_S=${LEAD_S:-2}
SETTLE_S=${SETTLE_S:-5}
BENCH_LIBS=attack-lib.sh
. "$(dirname "$0")/bench-lib.sh"
echo "# attack_bench.sh $BUILD WIN_S=$WIN_S LEAD_S=$LEAD_S SETTLE_S=$SETTLE_S ATTACKS=${ATTACKS:-1 2 3 4 6 7 8}"
[ -x "$ATTACK" ] || { echo "attack_bench: $ATTACK missing (make tests/test_peers_attack)"; exit 2; }
write_manifest "$TMP/run.conf" 1000000 4
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
start_swarm n 0 1 2 3
LOG_LAST=$LOG_3
wait_steps 120 "$LOG_LAST" 5 || { echo "attack_bench: the run did not start"; diag_file "$LOG_LAST"; exit 2; }
EPS=$(node_eps)
echo "# nodes: $EPS"

now() { date +%s.%N; }
# rate T0 S0 T1 S1: steps per second between (T0, S0) and (T1, S1)
rate() { awk -v t0="$1" -v s0="$2" -v t1="$3" -v s1="$4" 'BEGIN { printf "%.3f", (s1 - s0) / (t1 - t0) }'; }

# quiet: one undisturbed window; its steps/s appended to $TMP/quiet
quiet() {
    local t0 s0 t1 s1
    t0=$(now) s0=$(last_step "$LOG_LAST")
    sleep "$WIN_S"
    t1=$(now) s1=$(last_step "$LOG_LAST")
    r=$(rate "$t0" "$s0" "$t1" "$s1")
    echo "$r" >>"$TMP/quiet"
    echo "# quiet: steps $s0 to $s1 in $WIN_S s: $r steps/s"
}

# attacked N FLOOD(0|1) MODE ARGS...: one attacked window; its steps/s in AR
attacked() {
    local n=$1 flood=$2 t0 s0 t1 s1 end runs=1
    shift 2
    # the helper's own time: past the window (SIGTERM ends it)
    attack_start "a$n" $((WIN_S + LEAD_S + 30)) "$@"
    sleep "$LEAD_S"
    t0=$(now) s0=$(last_step "$LOG_LAST")
    end=$(($(date +%s) + WIN_S))
    while [ "$(date +%s)" -lt "$end" ]; do
        if [ "$flood" = 1 ] && ! kill -0 "$APID" 2>/dev/null; then
            wait "$APID" 2>/dev/null
            sed 's/^\([^#]\)/# \1/' "$ALOG" | tail -n 1
            attack_start "a$n" $((WIN_S + 30)) "$@"
            runs=$((runs + 1))
        fi
        sleep 0.2
    done
    t1=$(now) s1=$(last_step "$LOG_LAST")
    attack_stop | tail -n 1
    AR=$(rate "$t0" "$s0" "$t1" "$s1")
    echo "# attack $n: steps $s0 to $s1 in $WIN_S s: $AR steps/s$([ "$flood" = 1 ] && echo " (the helper started $runs times)")"
    sleep "$SETTLE_S"
}

: >"$TMP/quiet"
: >"$TMP/results"
quiet
for n in 1 2 3 4 6 7 8; do
    want $n || continue
    case $n in
        1) what="PREPARE(step+1000)"; attacked 1 0 prepare 1000 $EPS ;;
        2) what="lowest-key stage-0 record"; attacked 2 0 record 0 0 low ;;
        3) what="stage-0 record step+1000, zeros"; attacked 3 0 record 0 1000 zero ;;
        4) what="50 fake stage-2 records"; attacked 4 0 fakes 2 50 ;;
        6) what="25k requests from 200 keys"; attacked 6 1 flood 200 25000 $EPS ;;
        7) what="20k requests from fresh keys"; attacked 7 1 flood 0 20000 $EPS ;;
        8) what="20k PINGs from one key"; attacked 8 1 ping 20000 $EPS ;;
    esac
    before=$(tail -n 1 "$TMP/quiet")
    quiet
    after=$(tail -n 1 "$TMP/quiet")
    echo "$n|$what|$before|$after|$AR" >>"$TMP/results"
done

echo "attack                                 quiet steps/s (before, after)    attacked   ratio"
rc=0
while IFS='|' read -r n what before after ar; do
    line=$(awk -v n="$n" -v w="$what" -v b="$before" -v a="$after" -v r="$ar" 'BEGIN {
        q = (b + a) / 2 # the median of two windows
        ratio = q > 0 ? r / q : 0
        printf "%d %-34s %6.2f (%6.2f, %6.2f)          %6.2f   %5.2f%s\n", n, w, q, b, a, r, ratio, ratio < 0.8 ? "  UNDER 0.8" : ""
    }')
    echo "$line"
    case $line in *"UNDER 0.8"*) rc=1 ;; esac
done <"$TMP/results"
echo "# made by: $0 $BUILD (WIN_S=$WIN_S LEAD_S=$LEAD_S SETTLE_S=$SETTLE_S ATTACKS=${ATTACKS:-all})"
[ $rc -eq 0 ] && echo "attack_bench: ok (every ratio >= 0.8)" || { echo "attack_bench: some attack left under 0.8 of the quiet throughput"; }
exit $rc
