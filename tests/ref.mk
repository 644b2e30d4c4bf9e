# tests/ref.mk - swarmsim eval against an independent PyTorch reference of
# Hugging Face's LlamaForCausalLM (needs python3-torch; skips without it).
# Included from Makefile.am.
TESTS += tests/t0200-reference.sh
EXTRA_DIST += tests/t0200-reference.sh tests/ref/llama_ref.py
