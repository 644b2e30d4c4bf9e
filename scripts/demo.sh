#!/bin/sh
# demo.sh BUILD_DIR - the README's main job: train a small LLaMA-style model
# on English text from Debian's fortunes packages with the pipeline cut into
# 4 stages, printing the loss as it falls and a sample of text at the end.
#
# (Until swarmd lands, the stages run in one process: swarmsim.  The output
# goes to runs/demo: train.csv, model.safetensors, config.json.)
set -eu
build=${1:-build}
fortunes=/usr/share/games/fortunes
# the text files only: the folder also holds binary .dat indexes and .u8 links
data=$(find "$fortunes" -maxdepth 1 -type f ! -name '*.*' | sort | tr '\n' ',' | sed 's/,$//')
if [ -z "$data" ]; then
    echo "demo.sh: no text in $fortunes (install the fortunes and fortunes-min packages)" >&2
    exit 1
fi
steps=${DEMO_STEPS:-600}
echo "demo: swarmsim train, preset small, 4 stages, $steps steps on $(echo "$data" | tr ',' '\n' | wc -l) fortune files"
exec "$build/swarmsim" train --preset small --stages 4 --steps "$steps" --batch 8 --micro 1 \
    --lr 3e-3 --warmup 30 --eval-every 100 --log-every 20 --data "$data" --out runs/demo \
    --sample-tokens 300 --prompt "The meaning of life is "
