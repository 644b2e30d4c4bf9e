#!/bin/sh
# codec-study.sh [BUILD_DIR] - the activation codec study (docs/codec-study.md)
# in one command: swarmsim train on the CheckFree study's model and data with
# each activation codec (--act-codec, the swarm's [wire] activations) and
# seed, no failures; then the table (OUT/table.md): validation loss at the
# end and train loss over the last 50 steps per codec and seed, each against
# fp32 on the same seed, and the bytes a step that cross the stage
# boundaries.
#
# A run whose summary.txt says "status done" is not run again.
# Knobs (environment), defaults = what docs/codec-study.md reports:
#   STEPS=300 BATCH=4 SEQ=128 STAGES=8 PRESET=small MICRO=1  model and run
#   SEEDS="1 2 3" CODECS="fp32 bf16 int8 int4" LR=0.003
#   JOBS=2 EVAL_EVERY=25 VAL_BATCHES=8 OUT=runs/codec-study
#   DATA=...   default: Debian's fortunes (English text)
set -eu
build=${1:-build}
swarmsim=$build/swarmsim
[ -x "$swarmsim" ] || { echo "codec-study: no $swarmsim (build first: make swarmsim)" >&2; exit 1; }
STEPS=${STEPS:-300} BATCH=${BATCH:-4} SEQ=${SEQ:-128} STAGES=${STAGES:-8} PRESET=${PRESET:-small}
MICRO=${MICRO:-1} SEEDS=${SEEDS:-"1 2 3"} CODECS=${CODECS:-"fp32 bf16 int8 int4"} LR=${LR:-0.003}
JOBS=${JOBS:-2} EVAL_EVERY=${EVAL_EVERY:-25} VAL_BATCHES=${VAL_BATCHES:-8}
OUT=${OUT:-runs/codec-study}
if [ -z "${DATA:-}" ]; then
    DATA=$(find /usr/share/games/fortunes -maxdepth 1 -type f ! -name '*.*' 2>/dev/null | sort |
        tr '\n' ',' | sed 's/,$//')
    [ -n "$DATA" ] || { echo "codec-study: no fortunes text (apt-get install fortunes fortunes-min) and no DATA" >&2; exit 1; }
fi
mkdir -p "$OUT/runs"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
common="--preset $PRESET --stages $STAGES --steps $STEPS --batch $BATCH --seq-len $SEQ \
--micro $MICRO --lr $LR --threads 1 --eval-every $EVAL_EVERY --val-batches $VAL_BATCHES \
--log-every 50 --sample-tokens 0"

run_one() {
    dir=$OUT/runs/$1_$2
    if grep -q '^status done' "$dir/summary.txt" 2>/dev/null; then
        return 0
    fi
    t0=$(date +%s)
    # shellcheck disable=SC2086
    "$swarmsim" train $common --data "$DATA" --out "$dir" --seed $((1000 + $2)) \
        --act-codec "$1" >"$dir.log" 2>&1 || true
    echo "  $1 seed $2: $(awk '$1 == "final_val" || $1 == "status" {printf "%s %s  ", $1, $2}' \
        "$dir/summary.txt" 2>/dev/null) ($(($(date +%s) - t0)) s)"
}
i=0
for seed in $SEEDS; do
    for c in $CODECS; do
        i=$((i + 1))
        run_one "$c" "$seed" &
        if [ $((i % JOBS)) -eq 0 ]; then wait; fi
    done
done
wait

# the model's d_model, for the bytes a step
C=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["hidden_size"])' \
    "$OUT/runs/$(echo $CODECS | cut -d' ' -f1)_$(echo $SEEDS | cut -d' ' -f1)/config.json")
python3 - "$OUT" "$CODECS" "$SEEDS" "$STAGES" "$BATCH" "$SEQ" "$MICRO" "$C" "$STEPS" \
    >"$OUT/table.md" <<'EOT'
import csv, statistics, sys
out, codecs, seeds = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
S, B, T, M, C, steps = (int(x) for x in sys.argv[4:10])

def summary(d):
    kv = {}
    for line in open(d + "/summary.txt"):
        k, _, v = line.strip().partition(" ")
        kv[k] = v
    return kv

def tail_train(d, n=50):
    rows = list(csv.DictReader(open(d + "/train.csv")))
    return statistics.mean(float(r["loss"]) for r in rows[-n:])

def nbytes(codec, n):
    return {"fp32": 4 * n, "bf16": 2 * n, "int8": 4 * ((n + 63) // 64) + n,
            "int4": 4 * ((n + 63) // 64) + (n + 1) // 2}[codec]

val, tr = {}, {}
for c in codecs:
    for s in seeds:
        d = "%s/runs/%s_%s" % (out, c, s)
        val[c, s] = float(summary(d)["final_val"])
        tr[c, s] = tail_train(d)
n = B * T * C
print("| codec | bytes a step across the %d boundaries | x fp32 | final val loss (seeds %s) "
      "| mean | vs fp32, paired | train loss, last 50 steps, vs fp32 |" % (S - 1, ", ".join(seeds)))
print("|---|---|---|---|---|---|---|")
for c in codecs:
    b = M * (S - 1) * (2 * nbytes(c, n) + 4 * B * T)
    b32 = M * (S - 1) * (2 * nbytes("fp32", n) + 4 * B * T)
    dv = [val[c, s] - val["fp32", s] for s in seeds] if "fp32" in codecs else []
    dt = [tr[c, s] - tr["fp32", s] for s in seeds] if "fp32" in codecs else []
    print("| %s | %.2f MB | %.2f | %s | %.4f | %s | %s |" % (
        c, b / 1e6, b / b32, " / ".join("%.4f" % val[c, s] for s in seeds),
        statistics.mean(val[c, s] for s in seeds),
        "%+.4f (%+.4f to %+.4f)" % (statistics.mean(dv), min(dv), max(dv)) if dv else "-",
        "%+.4f (%+.4f to %+.4f)" % (statistics.mean(dt), min(dt), max(dt)) if dt else "-"))
spread = [max(val["fp32", s] for s in seeds) - min(val["fp32", s] for s in seeds)] \
    if "fp32" in codecs else []
if spread:
    print("\nfp32's final validation loss varies by %.4f across the seeds." % spread[0])
EOT
echo "codec-study: table in $OUT/table.md"
cat "$OUT/table.md"
