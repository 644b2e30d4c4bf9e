#!/bin/sh
# scripts/fuzz.sh TARGET SECONDS [LIBFUZZER-OPTION...]
#
# Builds tests/fuzz/fuzz_TARGET.c with clang -fsanitize=fuzzer,address,undefined
# and fuzzes it for SECONDS on a copy of tests/fuzz/corpus/TARGET/ (the
# committed seeds are never modified).  Generic: the target's C file names
# the project sources it needs on one comment line,
#     fuzz-sources: net/identity.c net/wire.c
# (paths relative to the top of the tree); base/err.c base/log.c base/alloc.c
# base/hex.c are always added, and FUZZ_SOURCES adds more.  Libraries come from
# pkg-config (libsodium, msgpack, libzmq, libuv) plus -lm -lpthread.
#
# Output goes to $FUZZ_OUT (default /tmp/swarm-fuzz-TARGET): the binary,
# corpus/ (seeds + what the fuzzer found), crash-*/leak-*/timeout-* files
# and fuzz.log.  Exit status: 0 when the run ended without a finding.
# New interesting inputs may be copied back into tests/fuzz/corpus/TARGET/
# by hand (keep that corpus small).
#
# Needs Debian's clang (14) and libclang-rt-14-dev.
set -eu

if [ $# -lt 2 ]; then
    echo "usage: $0 TARGET SECONDS [libFuzzer options]" >&2
    exit 2
fi
name=$1
secs=$2
shift 2
top=$(cd "$(dirname "$0")/.." && pwd)
src=$top/tests/fuzz/fuzz_$name.c
seeds=$top/tests/fuzz/corpus/$name
out=${FUZZ_OUT:-/tmp/swarm-fuzz-$name}
CLANG=${CLANG:-clang}

test -f "$src" || { echo "$0: no fuzz target '$src'" >&2; exit 2; }
extra=$(sed -n 's/.*fuzz-sources:[[:space:]]*//p' "$src" | head -n 1)
sources=""
for f in base/err.c base/log.c base/alloc.c base/hex.c $extra ${FUZZ_SOURCES:-}; do
    case $f in
        /*) sources="$sources $f" ;;
        *) sources="$sources $top/$f" ;;
    esac
done
mkdir -p "$out/corpus"
cflags="-g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
 -fno-omit-frame-pointer -I$top/base -I$top/src -I$top/net -I$top/kernels -I$top/peers -I$top/tests \
 $(pkg-config --cflags libsodium msgpack libzmq libuv jansson)"
libs="$(pkg-config --libs libsodium msgpack libzmq libuv jansson) -lm -lpthread"
echo "building $out/fuzz_$name"
# shellcheck disable=SC2086
$CLANG $cflags -o "$out/fuzz_$name" "$src" $sources $libs
if [ -d "$seeds" ]; then
    cp -f "$seeds"/* "$out/corpus/" 2>/dev/null || true
fi
echo "fuzzing $name for $secs s (log: $out/fuzz.log)"
cd "$out"
status=0
"./fuzz_$name" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    "$@" corpus >"$out/fuzz.log" 2>&1 || status=$?
tail -n 25 "$out/fuzz.log"
ls "$out" | grep -E '^(crash|leak|timeout|oom)-' && status=1
exit $status
