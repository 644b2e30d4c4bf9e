#!/bin/sh
# swarmsim eval against an independent PyTorch reference of Hugging Face's
# LlamaForCausalLM (tests/ref/llama_ref.py, float64 autograd): after a few
# training steps (so that no weight is at its initialisation), the loss must
# agree to 1e-4 and every tensor's gradient norm to 1e-3 relative.
#
# Shapes: the tiny preset (untied head, grouped KV heads 4/2, trained with 2
# stages); a hand-written config.json with tied embeddings and
# num_key_value_heads == num_attention_heads, leaving rms_norm_eps, rope_theta
# and num_key_value_heads to Hugging Face's defaults; and an llm.c token file
# with vocab 320, one KV head for 8 query heads, rope_theta 500000, eval
# windows shorter than max_position_embeddings (trained with 3 stages).
#
# Needs a python3 that imports torch and numpy (Debian: python3-torch); skips
# otherwise.  Environment: TEST_BUILDDIR (swarmsim), TEST_SRCDIR (tests/).

srcdir=${TEST_SRCDIR:-$(dirname "$0")}
builddir=${TEST_BUILDDIR:-.}
swarmsim=$builddir/swarmsim
ref=$srcdir/ref/llama_ref.py
fixture=/usr/share/common-licenses/GPL-3

# The C side single-threaded unless told otherwise: shared CI machines.
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
export OMP_NUM_THREADS OPENBLAS_NUM_THREADS

py=
for c in /usr/bin/python3 "${PYTHON3:-}" python3; do
    [ -n "$c" ] || continue
    if "$c" -c 'import torch, numpy' >/dev/null 2>&1; then
        py=$c
        break
    fi
done
if [ -z "$py" ]; then
    echo "1..0 # SKIP no python3 with torch"
    exit 0
fi
if [ ! -x "$swarmsim" ]; then
    echo "1..0 # SKIP $swarmsim not built"
    exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/t0200.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'rm -rf "$tmp"; exit 1' HUP INT TERM

# Bounded time for every command (coreutils timeout when present).
if command -v timeout >/dev/null 2>&1; then
    bounded() { timeout 120 "$@"; }
else
    bounded() { "$@"; }
fi

if [ ! -r "$fixture" ]; then
    fixture=$tmp/fixture.txt
    i=0
    while [ $i -lt 60 ]; do
        cat >>"$fixture" <<'EOF'
It was the best of times, it was the worst of times, it was the age of wisdom,
it was the age of foolishness, it was the epoch of belief, it was the epoch of
incredulity, it was the season of Light, it was the season of Darkness, it was
the spring of hope, it was the winter of despair, we had everything before us,
we had nothing before us, we were all going direct to Heaven, we were all
going direct the other way.
EOF
        i=$((i + 1))
    done
fi

n=0
fails=0
ok() {
    n=$((n + 1))
    echo "ok $n - $1"
}
notok() {
    n=$((n + 1))
    fails=$((fails + 1))
    echo "not ok $n - $1"
}
# show a file as TAP diagnostics
diag() {
    sed 's/^/# /' "$1" | tail -n "${2:-20}"
}

echo "1..10"

# 1: the reference itself against hand computations and finite differences
if bounded "$py" "$ref" --self-test >"$tmp/self.out" 2>&1; then
    ok "reference self-test (explicit loops, finite differences)"
else
    diag "$tmp/self.out"
    notok "reference self-test (explicit loops, finite differences)"
fi

# check NAME DIR CONFIG DATA T B: eval + reference + comparison (2 TAP lines)
check() {
    name=$1 dir=$2 config=$3 data=$4 T=$5 B=$6
    if bounded "$swarmsim" eval --model "$dir/model.safetensors" --config "$config" \
        --data "$data" --seq-len "$T" --batch "$B" --grad-norms >"$dir/eval.out" \
        2>"$dir/eval.err"; then
        ok "$name: swarmsim eval (T $T, B $B): $(head -n 1 "$dir/eval.out")"
    else
        diag "$dir/eval.err"
        notok "$name: swarmsim eval (T $T, B $B)"
        n=$((n + 1))
        fails=$((fails + 1))
        echo "not ok $n - $name: reference comparison # eval failed"
        return
    fi
    if bounded "$py" "$ref" --model "$dir/model.safetensors" --config "$config" --data "$data" \
        --seq-len "$T" --batch "$B" --threads 2 --compare "$dir/eval.out" >"$dir/cmp.out" \
        2>&1; then
        sed 's/^\([^#]\)/# \1/' "$dir/cmp.out"
        ok "$name: agrees with the reference (loss 1e-4, grad norms 1e-3 rel)"
    else
        sed 's/^\([^#]\)/# \1/' "$dir/cmp.out"
        notok "$name: agrees with the reference (loss 1e-4, grad norms 1e-3 rel)"
    fi
}

# train NAME DIR ARGS...: a few steps so the weights move off their init
train() {
    name=$1 dir=$2
    shift 2
    if bounded "$swarmsim" train --steps 30 --out "$dir" --sample-tokens 0 --eval-every 0 \
        --log-every 10 "$@" >"$dir.train" 2>&1 && [ -s "$dir/model.safetensors" ]; then
        ok "$name: train 30 steps ($(grep '^step=29 loss=' "$dir.train" | cut -d' ' -f2))"
        return 0
    fi
    diag "$dir.train"
    notok "$name: train 30 steps"
    return 1
}

# --- shape 1: tiny preset, untied, 4 query heads over 2 KV heads, 2 stages
d=$tmp/tiny
if train "tiny (untied, GQA 4/2)" "$d" --preset tiny --data "$fixture" --stages 2 \
    --batch 8 --seq-len 64; then
    check "tiny (untied, GQA 4/2)" "$d" "$d/config.json" "$fixture" 64 4
else
    for _ in 1 2; do notok "tiny: skipped, training failed"; done
fi

# --- shape 2: own config, tied embeddings, n_kv == n_heads (field omitted),
# rms_norm_eps and rope_theta left to Hugging Face's defaults (1e-6, 10000)
d=$tmp/tied
cat >"$tmp/tied.json" <<'EOF'
{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "vocab_size": 256,
  "hidden_size": 48,
  "intermediate_size": 128,
  "num_hidden_layers": 2,
  "num_attention_heads": 3,
  "max_position_embeddings": 32,
  "tie_word_embeddings": true,
  "hidden_act": "silu"
}
EOF
if train "tied (MHA 3/3, HF defaults)" "$d" --config "$tmp/tied.json" --data "$fixture" \
    --stages 1 --batch 8 --seq-len 32; then
    check "tied (MHA 3/3, HF defaults)" "$d" "$tmp/tied.json" "$fixture" 32 6
else
    for _ in 1 2; do notok "tied: skipped, training failed"; done
fi

# --- shape 3: llm.c token file, vocab 320, 8 query heads over 1 KV head,
# rope_theta 500000, eval windows shorter than max_position_embeddings
d=$tmp/mqa
cat >"$tmp/mqa.json" <<'EOF'
{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "vocab_size": 320,
  "hidden_size": 64,
  "intermediate_size": 96,
  "num_hidden_layers": 3,
  "num_attention_heads": 8,
  "num_key_value_heads": 1,
  "max_position_embeddings": 48,
  "rms_norm_eps": 1e-6,
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "hidden_act": "silu"
}
EOF
if ! bounded "$py" "$ref" --write-tokens "$tmp/tokens.bin" --vocab 320 --count 20000 \
    --seed 7 >"$tmp/tok.err" 2>&1; then
    diag "$tmp/tok.err"
    for _ in 1 2 3; do notok "mqa: skipped, writing the token file failed"; done
elif train "mqa (vocab 320 token file, MQA 8/1)" "$d" --config "$tmp/mqa.json" \
    --data "$tmp/tokens.bin" --stages 3 --batch 8 --seq-len 48; then
    check "mqa (vocab 320 token file, MQA 8/1)" "$d" "$tmp/mqa.json" "$tmp/tokens.bin" 40 5
else
    for _ in 1 2; do notok "mqa: skipped, training failed"; done
fi

[ "$fails" -eq 0 ]
