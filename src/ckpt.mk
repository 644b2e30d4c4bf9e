# src/: checkpoints: atomic, checksummed, reshardable, saved behind training.
# Its own library, because it alone of the core needs libsodium (BLAKE2b-256
# checksums); it sits before libswcore.a in link order.
noinst_LIBRARIES += libswckpt.a
libswckpt_a_SOURCES = src/ckpt.h src/ckpt.c
libswckpt_a_CPPFLAGS = $(sw_src_cppflags) $(SODIUM_CFLAGS) $(JANSSON_CFLAGS)
sw_ckpt_ldadd = libswckpt.a $(sw_core_ldadd) $(SODIUM_LIBS)

# swarmsim train --ckpt-every/--resume and swarmsim checkpoint list|verify|export
swarmsim_SOURCES += src/ckptcli.h src/ckptcli.c
swarmsim_LDADD += libswckpt.a $(sw_core_ldadd) $(SODIUM_LIBS)

check_PROGRAMS += tests/test_ckpt
TESTS += tests/test_ckpt tests/t0260-ckpt-swarmsim.sh
tests_test_ckpt_SOURCES = tests/test_ckpt.c tests/tap.h
tests_test_ckpt_CPPFLAGS = $(AM_CPPFLAGS) $(SODIUM_CFLAGS)
tests_test_ckpt_LDADD = $(sw_ckpt_ldadd)
EXTRA_DIST += tests/t0260-ckpt-swarmsim.sh

# bench/ckpt_bench: blocking share of a step, write throughput against dd, load times
noinst_PROGRAMS += bench/ckpt_bench
bench_ckpt_bench_SOURCES = bench/ckpt_bench.c bench/bench.h
bench_ckpt_bench_CPPFLAGS = $(AM_CPPFLAGS) $(SODIUM_CFLAGS)
bench_ckpt_bench_LDADD = $(sw_ckpt_ldadd)
