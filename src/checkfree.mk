# src/: CheckFree recovery math and the failure simulator.
libswcore_a_SOURCES += src/checkfree.h src/checkfree.c src/failsim.h src/failsim.c

check_PROGRAMS += tests/test_checkfree
TESTS += tests/test_checkfree tests/t0250-checkfree-sim.sh
tests_test_checkfree_SOURCES = tests/test_checkfree.c tests/tap.h
tests_test_checkfree_LDADD = $(sw_core_ldadd)

EXTRA_DIST += tests/t0250-checkfree-sim.sh scripts/checkfree-study.sh scripts/checkfree-table.sh \
	scripts/plot.sh \
	docs/checkfree-study.md docs/checkfree-val-rate-0.05.png docs/checkfree-val-rate-0.10.png \
	docs/checkfree-val-rate-0.16.png docs/checkfree-swap-cost.png
