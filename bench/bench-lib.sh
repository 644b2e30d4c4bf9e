# bench-lib.sh - the start the shell benches over the test network share
# (sourced, with BUILD set to the build directory): SRC, TEST_BUILDDIR and
# TEST_SRCDIR for tests/peers-lib.sh and tests/wan-lib.sh, which it sources;
# KEEP=1 keeps the logs.
SRC=$(cd "$(dirname "$0")/.." && pwd)
TEST_BUILDDIR=$BUILD TEST_SRCDIR=$SRC/tests
export TEST_BUILDDIR TEST_SRCDIR
. "$SRC/tests/peers-lib.sh"
. "$SRC/tests/wan-lib.sh"
[ "${KEEP:-0}" = 1 ] && n_fail=1 # peers-lib keeps the logs then
