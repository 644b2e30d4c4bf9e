# base/: what every layer may include (sw.h and config.h, errors, logging,
# allocation, the splitmix64 PRNG, hex encoding) and nothing else; it
# includes no other folder.  libswbase.a comes last in every link line.
noinst_LIBRARIES += libswbase.a
libswbase_a_SOURCES = base/sw.h base/rng.h base/err.h base/err.c base/log.h base/log.c \
	base/alloc.h base/alloc.c base/hex.h base/hex.c
libswbase_a_CPPFLAGS = $(sw_base_cppflags)

check_PROGRAMS += tests/test_log
TESTS += tests/test_log
tests_test_log_SOURCES = tests/test_log.c tests/tap.h
tests_test_log_CPPFLAGS = $(sw_base_cppflags) -I$(top_srcdir)/tests
tests_test_log_LDADD = libswbase.a -lpthread
