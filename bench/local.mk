# bench/: benchmarks that print figures (never part of make check's verdict).
noinst_PROGRAMS += bench/stage_bench
bench_stage_bench_SOURCES = bench/stage_bench.c bench/bench.h
bench_stage_bench_LDADD = $(sw_core_ldadd)
