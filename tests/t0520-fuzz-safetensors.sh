#!/bin/sh
# Replays the committed safetensors fuzz corpus through the reader (no
# libFuzzer needed); replay.c prints the TAP.
exec "$TEST_BUILDDIR/tests/fuzz/fuzz_safetensors_replay" "$TEST_SRCDIR/fuzz/corpus/safetensors"
