#!/bin/sh
# Replays the DHT fuzz corpus (tests/fuzz/corpus/dht) through the gcc build of
# tests/fuzz/fuzz_dht.c; fuzz_dht_replay prints the TAP itself.
: "${TEST_BUILDDIR:=.}"
: "${TEST_SRCDIR:=$(dirname "$0")}"
bin="$TEST_BUILDDIR/tests/fuzz/fuzz_dht_replay"
if [ ! -x "$bin" ]; then
    echo "1..0 # SKIP $bin not built"
    exit 0
fi
exec "$bin" "$TEST_SRCDIR/fuzz/corpus/dht"
