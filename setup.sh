#!/bin/sh
# setup.sh - one command from a fresh Debian 12 machine to a running swarm.
#
#   ./setup.sh          install what is missing, build, run the demo swarm (main job)
#   ./setup.sh check    install what is missing, build, run `make check`
#   ./setup.sh build    install what is missing and build only
#
# Debian packages are installed with apt-get when run as root; otherwise the
# script prints the exact apt-get line to run and stops.  The build is out of
# tree in ./build (override with BUILD_DIR=...); extra configure flags come
# from CONFIGURE_FLAGS.
set -eu

cd "$(dirname "$0")"
top=$(pwd)
mode=${1:-demo}
build=${BUILD_DIR:-$top/build}

# What the build and the demo need (keep in sync with README.md): no Python.
packages="build-essential autoconf automake libtool pkg-config
  libzmq3-dev libsodium-dev libuv1-dev libmsgpack-dev libopenblas-dev
  libjansson-dev libinih-dev fortunes-min fortunes"
# What only the tests add: python3 reads the test logs and status JSON,
# numpy and torch run the reference test (t0200; it skips without them),
# iproute2's ip(8) makes the network namespaces of t0395 and t0400-t0411,
# nftables' nft(8) the NAT routers of t0410 and t0411.
check_packages="python3 python3-numpy python3-torch iproute2 nftables"

case "$mode" in
demo|check|build) ;;
-h|--help|help)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 0 ;;
*)
    echo "setup.sh: unknown mode '$mode' (demo, check or build)" >&2
    exit 2 ;;
esac

[ "$mode" = check ] && packages="$packages $check_packages"
missing=""
for p in $packages; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "setup.sh: installing:$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # shellcheck disable=SC2086
        apt-get install -y -qq --no-install-recommends $missing
    else
        echo "setup.sh: missing Debian packages; run this as root, then run me again:" >&2
        echo "  apt-get install -y$missing" >&2
        exit 1
    fi
fi

if [ ! -x configure ] || [ ! -f build-aux/tap-driver.sh ] || [ Makefile.am -nt configure ] ||
   [ configure.ac -nt configure ]; then
    ./autogen.sh
fi
mkdir -p "$build"
if [ ! -f "$build/Makefile" ]; then
    (cd "$build" && "$top/configure" ${CONFIGURE_FLAGS:-})
fi
jobs=$(nproc 2>/dev/null || echo 2)
make -C "$build" -j"$jobs"

case "$mode" in
build)
    exit 0 ;;
check)
    make -C "$build" -j"$jobs" check
    exit $? ;;
demo)
    exec "$top/scripts/swarm-demo.sh" "$build" "${DEMO_STEPS:-300}" ;;
esac
