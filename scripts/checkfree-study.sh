#!/bin/sh
# checkfree-study.sh [BUILD_DIR] - the CheckFree study (docs/checkfree-study.md)
# in one command: every recovery strategy at every failure rate and seed,
# the no-failure reference, CheckFree+'s swaps without failures, and
# CheckFree with clipped instead of pre-clip weights; then the table
# (OUT/table.md) and the pictures (OUT/*.png).
#
# Every run writes its own folder (train.csv, val.csv, events.csv,
# failures.txt, summary.txt); a run whose summary.txt says "status done" is
# not run again, so an interrupted study resumes where it stopped.
#
# Knobs (environment), defaults = what docs/checkfree-study.md reports:
#   STEPS=300 BATCH=4 SEQ=128 STAGES=8 PRESET=small   model and run length
#   RATES="0.05 0.10 0.16"  SEEDS="1 2 3"             failures per stage per hour
#   STEP_SECONDS=120   simulated seconds of one step   CKPT=20  checkpoint:N
#   JOBS=2             runs in parallel (1 thread each)
#   EVAL_EVERY=25 VAL_BATCHES=8   OUT=runs/checkfree-study
#   DATA=...           default: Debian's fortunes (English text)
#   TARGET=            target validation loss (default: mean final loss of
#                      the no-failure runs + 0.10)
# The CheckFree study's full design is STEPS=3000 (a few thousand steps) at
# the same settings: about 10x the compute of the default.
set -eu
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
swarmsim=$build/swarmsim
[ -x "$swarmsim" ] || { echo "checkfree-study: no $swarmsim (build first: make swarmsim)" >&2; exit 1; }
STEPS=${STEPS:-300} BATCH=${BATCH:-4} SEQ=${SEQ:-128} STAGES=${STAGES:-8} PRESET=${PRESET:-small}
RATES=${RATES:-"0.05 0.10 0.16"} SEEDS=${SEEDS:-"1 2 3"}
STEP_SECONDS=${STEP_SECONDS:-120} CKPT=${CKPT:-20} JOBS=${JOBS:-2}
EVAL_EVERY=${EVAL_EVERY:-25} VAL_BATCHES=${VAL_BATCHES:-8}
OUT=${OUT:-runs/checkfree-study}
STRATEGIES=${STRATEGIES:-"checkfree checkfree+ copy uniform random checkpoint:$CKPT redundant"}
if [ -z "${DATA:-}" ]; then
    DATA=$(find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.*' 2>/dev/null | sort |
        tr '\n' ',' | sed 's/,$//')
    [ -n "$DATA" ] || { echo "checkfree-study: no fortunes text (apt-get install fortunes fortunes-min) and no DATA" >&2; exit 1; }
fi
mkdir -p "$OUT/runs"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

common="--preset $PRESET --stages $STAGES --steps $STEPS --batch $BATCH --seq-len $SEQ \
--threads 1 --eval-every $EVAL_EVERY --val-batches $VAL_BATCHES --log-every 50 \
--sample-tokens 0 --step-seconds $STEP_SECONDS"

# One line per run: NAME ARGS...  (names: strategy_rate_seed[_variant])
jobs=$OUT/jobs.txt
: >"$jobs"
# redundant computation's step-time factor: measured once, shared by its runs
factor_dir=$OUT/runs/factor
if ! grep -q '^status done' "$factor_dir/summary.txt" 2>/dev/null; then
    "$swarmsim" train $common --data "$DATA" --steps 1 --recovery redundant --out "$factor_dir" \
        >"$factor_dir.log" 2>&1
fi
factor=$(awk '$1 == "step_factor" {print $2}' "$factor_dir/summary.txt")
echo "checkfree-study: redundant computation factor $factor (measured, $factor_dir.log)"
for seed in $SEEDS; do
    s="--seed $((1000 + seed)) --fail-seed $seed"
    echo "none_0_$seed $s --recovery none --fail-rate 0" >>"$jobs"
    echo "checkfree+_0_$seed $s --recovery checkfree+ --fail-rate 0" >>"$jobs"
    for rate in $RATES; do
        for st in $STRATEGIES; do
            extra=
            [ "$st" = redundant ] && extra="--redundant-factor $factor"
            echo "${st}_${rate}_$seed $s --recovery $st --fail-rate $rate $extra" >>"$jobs"
        done
    done
    rmax=$(echo $RATES | tr ' ' '\n' | sort -g | tail -n 1)
    echo "checkfree_${rmax}_${seed}_clipped $s --recovery checkfree --fail-rate $rmax --cf-weights clipped" >>"$jobs"
done
n=$(wc -l <"$jobs")
echo "checkfree-study: $n runs, $JOBS at a time, into $OUT/runs"

run_one() {
    name=$1
    shift
    dir=$OUT/runs/$(echo "$name" | tr ':' '-')
    if grep -q '^status done' "$dir/summary.txt" 2>/dev/null; then
        return 0
    fi
    t0=$(date +%s)
    "$swarmsim" train $common --data "$DATA" --out "$dir" "$@" >"$dir.log" 2>&1 || true
    echo "  $name: $(awk '$1 == "final_val" || $1 == "failures" || $1 == "status" {printf "%s %s  ", $1, $2}' "$dir/summary.txt" 2>/dev/null) ($(($(date +%s) - t0)) s)"
}
# portable parallel loop: JOBS background workers over the job list
i=0
while read -r line; do
    i=$((i + 1))
    # shellcheck disable=SC2086
    run_one $line &
    if [ $((i % JOBS)) -eq 0 ]; then
        wait
    fi
done <"$jobs"
wait

sh "$here/checkfree-table.sh" "$OUT" "${TARGET:-}" >"$OUT/table.md"
echo "checkfree-study: table in $OUT/table.md"
for rate in $RATES; do
    args=
    for st in none $STRATEGIES; do
        r=$rate
        [ "$st" = none ] && r=0
        d=$OUT/runs/$(echo "${st}_${r}_1" | tr ':' '-')
        args="$args $d $st"
    done
    # shellcheck disable=SC2086
    sh "$here/plot.sh" "$OUT/val-rate-$rate.png" "validation loss, failure rate $rate per stage per hour (seed 1)" $args
done
sh "$here/plot.sh" "$OUT/val-swap-cost.png" "CheckFree+ swaps without failures (seed 1)" \
    "$OUT/runs/none_0_1" "no failures, plain route" "$OUT/runs/checkfree+_0_1" "no failures, CheckFree+ swaps"
echo "checkfree-study: pictures in $OUT/*.png"
