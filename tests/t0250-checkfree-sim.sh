#!/bin/sh
# swarmsim train's failure simulator end to end, on the tiny preset (4
# stages of 1 block, 30 steps, a failure rate high enough to hit every
# strategy): every --recovery strategy runs to the end and writes its
# events; plain CheckFree skips boundary failures and says so; none stops
# with a message naming the lost stage; a saved schedule replays the same
# failures; checkpoint:N ends on the no-failure run's exact loss (a real
# rollback of parameters, AdamW state and data cursor); uneven stage cuts
# are refused.  Environment: TEST_BUILDDIR (swarmsim), TEST_SRCDIR.
SIM_TEST=t0250
. "${TEST_SRCDIR:-$(dirname "$0")}/sim-lib.sh"
check() { if [ "$1" = 0 ]; then ok "$2"; else notok "$2"; fi; }
val() { awk -v k="$2" '$1 == k {print $2}' "$1/summary.txt" 2>/dev/null; }

run() {
    out=$1
    shift
    bounded "$swarmsim" train --preset tiny --stages 4 --steps 30 --batch 4 --seq-len 32 \
        --threads 1 --sample-tokens 0 --eval-every 10 --log-every 10 --data "$data" \
        --out "$out" --step-seconds 120 --fail-seed 3 "$@" >"$out.log" 2>&1
}

echo "1..12"
for st in checkfree checkfree+ copy uniform random checkpoint:5 redundant; do
    d=$tmp/$(echo "$st" | tr ':+' '-p')
    run "$d" --recovery "$st" --fail-rate 0.9
    rc=$?
    f=$(val "$d" failures)
    [ "$rc" = 0 ] && [ "$(val "$d" status)" = done ] && [ "${f:-0}" -gt 0 ] &&
        [ "$(wc -l <"$d/events.csv")" -gt 1 ]
    check $? "--recovery $st runs to the end through $f failure(s) ($(val "$d" final_val))"
done
grep -q ',skip,"checkfree cannot rebuild boundary stage' "$tmp/checkfree/events.csv"
check $? "plain checkfree skips boundary failures and records why"

run "$tmp/none" --recovery none --fail-rate 0.9
rc=$?
[ "$rc" != 0 ] && grep -q "lost at step .* and --recovery none: stopping" "$tmp/none.log"
check $? "--recovery none stops with a message naming the lost stage"

run "$tmp/replay" --recovery checkfree --fail-schedule "$tmp/checkfree/failures.txt"
grep ',fail,' "$tmp/checkfree/events.csv" >"$tmp/a.ev"
grep ',fail,' "$tmp/replay/events.csv" >"$tmp/b.ev"
[ -s "$tmp/a.ev" ] && cmp -s "$tmp/a.ev" "$tmp/b.ev" && \
    [ "$(val "$tmp/replay" final_val)" = "$(val "$tmp/checkfree" final_val)" ]
check $? "a saved schedule replays the same failures and the same run"

run "$tmp/nofail" --recovery none
[ "$(val "$tmp/nofail" final_val)" = "$(val "$tmp/checkpoint-5" final_val)" ] &&
    [ "$(val "$tmp/checkpoint-5" rollbacks)" -gt 0 ]
check $? "checkpoint:5 rolls back $(val "$tmp/checkpoint-5" rollbacks) time(s) and ends on the no-failure loss"

bounded "$swarmsim" train --preset tiny --stages 3 --steps 2 --data "$data" --out "$tmp/uneven" \
    --recovery checkfree --fail-rate 0.1 >"$tmp/uneven.log" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -q "pick a stage count that divides the layers" "$tmp/uneven.log"
check $? "uneven stage cut (4 layers over 3 stages) refused for checkfree"

[ "$fails" -eq 0 ]
