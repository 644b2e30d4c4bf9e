#!/bin/sh
# swarmsim checkpoints end to end, on the tiny preset (4 blocks, 4 stages):
# train --ckpt-every saves behind training and keeps --ckpt-keep steps; a run
# stopped at step 4 and resumed with --resume prints the uninterrupted run's
# losses (and learning rates) exactly; a resume into 2 stages (resharding)
# prints the same next loss; checkpoint list/verify name the steps; export
# writes the same model.safetensors as train's own export of step 8; a
# flipped manifest byte makes verify fail naming the manifest and resume
# fall back to the previous step.  Environment: TEST_BUILDDIR (swarmsim), TEST_SRCDIR.
SIM_TEST=t0260
. "${TEST_SRCDIR:-$(dirname "$0")}/sim-lib.sh"
check() { if eval "$2"; then ok "$1"; else notok "$1"; fi; }
common="--preset tiny --data $data --batch 2 --seq-len 32 --micro 2 --eval-every 0 --sample-tokens 0 --warmup 2"
# the step lines' step, loss and learning rate (not tok/s and elapsed, which vary)
losses() { sed -n 's/^\(step=[0-9]* loss=[^ ]* lr=[^ ]*\) .*/\1/p' "$1"; }

# the uninterrupted run, saving every 4 steps, keeping 2
bounded "$swarmsim" train $common --stages 4 --steps 12 --ckpt-every 4 --ckpt-keep 2 \
    --out "$tmp/full" >"$tmp/full.out" 2>"$tmp/full.err"
check "train --ckpt-every 4 --ckpt-keep 2 runs" '[ $? -eq 0 ]'
check "keeps the 2 newest steps (8, 12), each committed" \
    '[ -f "$tmp/full/ckpt/step-00000008/COMMIT" ] && [ -f "$tmp/full/ckpt/step-00000012/COMMIT" ] && [ ! -e "$tmp/full/ckpt/step-00000004" ]'
check "every save logs its blocking time" \
    '[ "$(grep -c "blocked .* ms" "$tmp/full.err")" -ge 3 ]'

# stopped after step 4, resumed to 12
bounded "$swarmsim" train $common --stages 4 --steps 12 --max-iters 4 --ckpt-every 4 \
    --out "$tmp/part" >/dev/null 2>"$tmp/part.err"
check "a run stopped after 4 steps left step 4" '[ -f "$tmp/part/ckpt/step-00000004/COMMIT" ]'
bounded "$swarmsim" train $common --stages 4 --steps 12 --resume "$tmp/part/ckpt" \
    --out "$tmp/resumed" >"$tmp/resumed.out" 2>"$tmp/resumed.err"
losses "$tmp/full.out" | sed -n '5,12p' >"$tmp/want"
losses "$tmp/resumed.out" >"$tmp/got"
check "resumed run prints the uninterrupted run's steps 4..11 exactly" \
    '[ -s "$tmp/got" ] && cmp -s "$tmp/want" "$tmp/got"'
check "resumed run's final model is the uninterrupted run's, byte for byte" \
    'cmp -s "$tmp/full/model.safetensors" "$tmp/resumed/model.safetensors"'

# resharding: 4 stages -> 2
bounded "$swarmsim" train $common --stages 2 --steps 5 --resume "$tmp/part/ckpt" \
    --out "$tmp/re2" >"$tmp/re2.out" 2>"$tmp/re2.err"
check "resume into 2 stages: step 4's loss equals the 4-stage run's" \
    '[ "$(losses "$tmp/re2.out" | sed -n 1p | cut -d" " -f1,2)" = "$(sed -n 1p "$tmp/want" | cut -d" " -f1,2)" ]'

# list, verify, export
"$swarmsim" checkpoint list --dir "$tmp/full/ckpt" >"$tmp/list" 2>&1
check "checkpoint list names steps 12 and 8" \
    'grep -q "^step-00000012 committed" "$tmp/list" && grep -q "^step-00000008 committed" "$tmp/list"'
"$swarmsim" checkpoint verify --dir "$tmp/full/ckpt" >"$tmp/verify" 2>&1
check "checkpoint verify: both clean, exit 0" \
    '[ $? -eq 0 ] && [ "$(grep -c " clean, 4 stage" "$tmp/verify")" -eq 2 ]'
"$swarmsim" checkpoint export --dir "$tmp/full/ckpt" --out "$tmp/export" >/dev/null 2>&1
check "checkpoint export = train's own export of the same step, byte for byte" \
    '[ $? -eq 0 ] && cmp -s "$tmp/full/model.safetensors" "$tmp/export/model.safetensors" && [ -f "$tmp/export/config.json" ]'
"$swarmsim" eval --model "$tmp/export/model.safetensors" --data "$data" --seq-len 32 \
    --batch 2 >"$tmp/eval" 2>&1
check "the export loads in swarmsim eval" 'grep -q "^loss " "$tmp/eval"'

# a flipped manifest byte
m=$tmp/full/ckpt/step-00000012/manifest.json
printf 'X' | dd of="$m" bs=1 seek=100 conv=notrunc 2>/dev/null
"$swarmsim" checkpoint verify --dir "$tmp/full/ckpt" >"$tmp/verify2" 2>&1
check "verify fails on a flipped manifest byte, naming the manifest" \
    '[ $? -ne 0 ] && grep -q "manifest.*checksum mismatch" "$tmp/verify2"'
bounded "$swarmsim" train $common --stages 4 --steps 9 --resume "$tmp/full/ckpt" \
    --out "$tmp/fb" >"$tmp/fb.out" 2>"$tmp/fb.err"
check "resume falls back to step 8 and says why" \
    'grep -q "restored step 8" "$tmp/fb.err" && grep -q "skipping .*step-00000012" "$tmp/fb.err"'

echo "1..$n"
[ $fails -eq 0 ]
