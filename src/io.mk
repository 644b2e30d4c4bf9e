# src/ input and output: safetensors, JSON config, token data.
libswcore_a_SOURCES += src/safetensors.h src/safetensors.c src/hfconfig.h src/hfconfig.c \
	src/data.h src/data.c

# These tests need only libswcore.a and jansson.
sw_io_ldadd = libswcore.a libswbase.a $(JANSSON_LIBS) -lm -lpthread

check_PROGRAMS += tests/test_safetensors tests/test_hfconfig tests/test_data \
	tests/fuzz/fuzz_safetensors_replay
tests_test_safetensors_SOURCES = tests/test_safetensors.c tests/tap.h
tests_test_safetensors_LDADD = $(sw_io_ldadd)
tests_test_hfconfig_SOURCES = tests/test_hfconfig.c tests/tap.h
tests_test_hfconfig_LDADD = $(sw_io_ldadd)
tests_test_data_SOURCES = tests/test_data.c tests/tap.h
tests_test_data_LDADD = $(sw_io_ldadd)
tests_fuzz_fuzz_safetensors_replay_SOURCES = tests/fuzz/fuzz_safetensors.c tests/fuzz/replay.c
tests_fuzz_fuzz_safetensors_replay_LDADD = $(sw_io_ldadd)

TESTS += tests/test_safetensors tests/test_hfconfig tests/test_data \
	tests/t0520-fuzz-safetensors.sh
EXTRA_DIST += tests/t0520-fuzz-safetensors.sh tests/fuzz/corpus/safetensors
