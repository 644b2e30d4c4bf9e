#!/bin/sh
# Replays the committed stage-record fuzz corpus through the fuzz target,
# built with gcc and tests/fuzz/replay.c (no libFuzzer needed).  Prints TAP.
exec "${TEST_BUILDDIR:-.}/tests/fuzz/fuzz_record_replay" "${TEST_SRCDIR:-$(dirname "$0")}/fuzz/corpus/record"
