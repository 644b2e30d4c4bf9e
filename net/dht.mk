# net/: the Kademlia DHT (sans-I/O core and its glue).
libswnet_a_SOURCES += net/dht.h net/dht.c net/dht_codec.h net/dht_codec.c \
	net/dhtnode.h net/dhtnode.c

check_PROGRAMS += tests/test_dht tests/test_dht_codec tests/test_dhtnode
TESTS += tests/test_dht tests/test_dht_codec tests/test_dhtnode

tests_test_dht_SOURCES = tests/test_dht.c
tests_test_dht_CPPFLAGS = $(sw_net_cppflags)
tests_test_dht_LDADD = $(sw_net_ldadd) $(sw_core_ldadd)

tests_test_dht_codec_SOURCES = tests/test_dht_codec.c
tests_test_dht_codec_CPPFLAGS = $(sw_net_cppflags)
tests_test_dht_codec_LDADD = $(sw_net_ldadd) $(sw_core_ldadd)

tests_test_dhtnode_SOURCES = tests/test_dhtnode.c
tests_test_dhtnode_CPPFLAGS = $(sw_net_cppflags)
tests_test_dhtnode_LDADD = $(sw_net_ldadd) $(sw_core_ldadd)

# DHT fuzz target: make check replays the committed corpus with gcc
# (tests/fuzz/replay.c); scripts/fuzz.sh dht SECONDS fuzzes it with clang.
check_PROGRAMS += tests/fuzz/fuzz_dht_replay
TESTS += tests/t0510-fuzz-dht.sh
EXTRA_DIST += tests/t0510-fuzz-dht.sh tests/fuzz/corpus/dht
tests_fuzz_fuzz_dht_replay_SOURCES = tests/fuzz/fuzz_dht.c tests/fuzz/replay.c
tests_fuzz_fuzz_dht_replay_CPPFLAGS = $(sw_net_cppflags)
tests_fuzz_fuzz_dht_replay_LDADD = $(sw_net_ldadd) $(sw_core_ldadd)
