#!/bin/sh
# Replays the committed certificate and revocation-list fuzz corpus through
# the fuzz target, built with gcc and tests/fuzz/replay.c (no libFuzzer
# needed).  Prints TAP.
exec "${TEST_BUILDDIR:-.}/tests/fuzz/fuzz_cert_replay" "${TEST_SRCDIR:-$(dirname "$0")}/fuzz/corpus/cert"
