# net/: identity, wire envelopes, transport.
# net/dht.mk (included after this file) appends the DHT to libswnet_a_SOURCES.

# The library sees base/ and net/ only; its tests and benchmark see every
# folder (AM_CPPFLAGS).
sw_net_pkg_cflags = $(ZMQ_CFLAGS) $(SODIUM_CFLAGS) $(UV_CFLAGS) $(MSGPACK_CFLAGS)
sw_net_cppflags = $(AM_CPPFLAGS) $(sw_net_pkg_cflags)

noinst_LIBRARIES += libswnet.a
libswnet_a_SOURCES = net/identity.h net/identity.c net/wire.h net/wire.c \
	net/transport.h net/transport.c net/blake2b4.h net/blake2b4.c
libswnet_a_CPPFLAGS = $(sw_base_cppflags) -I$(top_srcdir)/net $(sw_net_pkg_cflags)

check_PROGRAMS += tests/test_identity tests/test_wire tests/test_transport \
	tests/test_transport_route
TESTS += tests/test_identity tests/test_wire tests/test_transport tests/test_transport_route

tests_test_identity_SOURCES = tests/test_identity.c
tests_test_identity_CPPFLAGS = $(sw_net_cppflags)
tests_test_identity_LDADD = $(sw_net_ldadd) $(sw_core_ldadd)

tests_test_wire_SOURCES = tests/test_wire.c
tests_test_wire_CPPFLAGS = $(sw_net_cppflags)
tests_test_wire_LDADD = $(sw_net_ldadd) $(sw_core_ldadd)

tests_test_transport_SOURCES = tests/test_transport.c
tests_test_transport_CPPFLAGS = $(sw_net_cppflags)
tests_test_transport_LDADD = $(sw_net_ldadd) $(sw_core_ldadd)

tests_test_transport_route_SOURCES = tests/test_transport_route.c
tests_test_transport_route_CPPFLAGS = $(sw_net_cppflags)
tests_test_transport_route_LDADD = $(sw_net_ldadd) $(sw_core_ldadd)

# Envelope fuzz target: make check replays the committed corpus with gcc
# (tests/fuzz/replay.c); scripts/fuzz.sh wire SECONDS fuzzes it with clang.
check_PROGRAMS += tests/fuzz/fuzz_wire_replay
TESTS += tests/t0500-fuzz-wire.sh
EXTRA_DIST += tests/t0500-fuzz-wire.sh tests/fuzz/corpus/wire scripts/fuzz.sh
tests_fuzz_fuzz_wire_replay_SOURCES = tests/fuzz/fuzz_wire.c tests/fuzz/replay.c
tests_fuzz_fuzz_wire_replay_CPPFLAGS = $(sw_net_cppflags)
tests_fuzz_fuzz_wire_replay_LDADD = $(sw_net_ldadd) $(sw_core_ldadd)

# Benchmark (never part of make check): bench/wire_bench
noinst_PROGRAMS += bench/wire_bench
bench_wire_bench_SOURCES = bench/wire_bench.c bench/bench.h
bench_wire_bench_CPPFLAGS = $(sw_net_cppflags)
bench_wire_bench_LDADD = $(sw_net_ldadd) $(sw_core_ldadd)

dist_man_MANS += man/swarm-protocol.7
