# sim-lib.sh - what the swarmsim shell tests share (sourced, not run).
#
# Set SIM_TEST (the test's name, for the temporary folder) before sourcing.
# Gives: $swarmsim (skips the whole test when it is not built), one thread
# each for OpenMP and OpenBLAS unless set, $tmp (removed on exit), bounded
# CMD (at most 120 s), $data (a fixed English text of about 10 KB), and TAP
# counters: ok MSG, notok MSG ($n tests, $fails failures).
builddir=${TEST_BUILDDIR:-.}
swarmsim=$builddir/swarmsim
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
export OMP_NUM_THREADS OPENBLAS_NUM_THREADS
if [ ! -x "$swarmsim" ]; then
    echo "1..0 # SKIP $swarmsim not built"
    exit 0
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/${SIM_TEST:-sim}.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'rm -rf "$tmp"; exit 1' HUP INT TERM
if command -v timeout >/dev/null 2>&1; then
    bounded() { timeout 120 "$@"; }
else
    bounded() { "$@"; }
fi
data=$tmp/text.txt
i=0
while [ $i -lt 40 ]; do
    cat >>"$data" <<'TXT'
It was the best of times, it was the worst of times, it was the age of wisdom,
it was the age of foolishness, it was the epoch of belief, it was the epoch of
incredulity, it was the season of Light, it was the season of Darkness.
TXT
    i=$((i + 1))
done
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; }
