# src/: the trainer core (no networking).
noinst_LIBRARIES += libswcore.a
libswcore_a_CPPFLAGS = $(sw_src_cppflags)
libswcore_a_SOURCES = src/cfg.h src/cfg.c src/model.h src/model.c \
	src/stage.h src/stage.c src/optim.h src/optim.c
libswcore_a_SOURCES += src/sim.h src/sim.c src/snapshot.h src/codec.h src/codec.c

dist_man_MANS += man/swarmsim.1
bin_PROGRAMS += swarmsim
swarmsim_SOURCES = src/swarmsim.c
swarmsim_CPPFLAGS = $(sw_src_cppflags)
swarmsim_LDADD = $(sw_core_ldadd)

check_PROGRAMS += tests/test_stage
TESTS += tests/test_stage
tests_test_stage_SOURCES = tests/test_stage.c tests/tap.h
tests_test_stage_LDADD = $(sw_core_ldadd)

check_PROGRAMS += tests/test_codec
TESTS += tests/test_codec
tests_test_codec_SOURCES = tests/test_codec.c tests/tap.h
tests_test_codec_CPPFLAGS = $(sw_src_cppflags)
tests_test_codec_LDADD = $(sw_core_ldadd)
