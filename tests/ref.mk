# tests/ref.mk - swarmsim eval against an independent PyTorch reference of
# Hugging Face's LlamaForCausalLM (needs python3-torch; skips without it),
# and sim-lib.sh, the preamble the swarmsim shell tests share.
# Included from Makefile.am.
TESTS += tests/t0200-reference.sh
EXTRA_DIST += tests/t0200-reference.sh tests/ref/llama_ref.py
EXTRA_DIST += tests/sim-lib.sh
