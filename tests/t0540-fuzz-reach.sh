#!/bin/sh
# Replays the committed reachability-message fuzz corpus through the fuzz
# target, built with gcc and tests/fuzz/replay.c (no libFuzzer needed).
# Prints TAP.
exec "${TEST_BUILDDIR:-.}/tests/fuzz/fuzz_reach_replay" "${TEST_SRCDIR:-$(dirname "$0")}/fuzz/corpus/reach"
