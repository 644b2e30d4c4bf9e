# bench-lib.sh - the start the shell benches share (sourced, with BUILD set
# to the build directory): SRC, TEST_BUILDDIR and TEST_SRCDIR for
# tests/peers-lib.sh, which it sources, then each of the libraries of tests/
# that BENCH_LIBS names ("wan-lib.sh", "attack-lib.sh"); KEEP=1 keeps the
# logs.
SRC=$(cd "$(dirname "$0")/.." && pwd)
TEST_BUILDDIR=$BUILD TEST_SRCDIR=$SRC/tests
export TEST_BUILDDIR TEST_SRCDIR
. "$SRC/tests/peers-lib.sh"
for bench_lib in ${BENCH_LIBS:-}; do
    . "$SRC/tests/$bench_lib"
done
[ "${KEEP:-0}" = 1 ] && n_fail=1 # peers-lib keeps the logs then
