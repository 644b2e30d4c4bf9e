# bench/: benchmarks that print figures (never part of make check's verdict).
noinst_PROGRAMS += bench/stage_bench
bench_stage_bench_SOURCES = bench/stage_bench.c bench/bench.h
bench_stage_bench_LDADD = $(sw_core_ldadd)

# make bench: the benchmarks meant to run unattended, one after the other
# (minutes each; never part of make check).  churn_bench.sh: the churn soak
# (CHURN_S, SEED in the environment); attack_bench.sh: the run's throughput
# under each attack of tests/t0382-t0384 beside the undisturbed run's
# (WIN_S, ATTACKS in the environment; it needs the hostile helper);
# wan_bench.sh: the demo's model over emulated internet links beside
# loopback (STEPS, SETTINGS; root and tests/wanemu, else it says why and
# skips); nat_bench.sh: the all-public swarm beside the all-NATed-but-the-
# bootstrap one (ROUNDS, LINK; root, tests/wanemu and nft, else it skips);
# llama124_bench.sh: the LLaMA-124M shape in 4 stages x 2 replicas over
# 50 ms + 100 Mbit/s links, its time a step split, and a middle stage
# rebuilt (STEPS, LINK, CODEC; root and tests/wanemu, else it skips);
# copy_bench.sh: a replica joining a running stage of that shape copies its
# 255 MB state over 50 ms + 20 Mbit/s (LINK, JOIN_AT, TWIN_STEPS; root and
# tests/wanemu, else it skips); grad_codec_bench.sh: the loss of 2 stages x
# 2 replicas per codec of the replicas' partial gradients (STEPS, CODECS,
# SEEDS); barrier_bench.sh: the leader's time from one step's update to the
# next step's GO, on loopback and over LINK (STEPS, CODEC; the link needs
# root and tests/wanemu, else loopback only); bytes_bench.sh: the bytes on
# the wire a step of 4 stages x 2 replicas per pair of activation and
# gradient codecs (STEPS, REPS, PAIRS; root and tests/wanemu, else it skips).
sw_bench_runs = bench/churn_bench.sh bench/attack_bench.sh bench/wan_bench.sh bench/nat_bench.sh \
	bench/llama124_bench.sh bench/copy_bench.sh bench/grad_codec_bench.sh bench/barrier_bench.sh \
	bench/bytes_bench.sh
EXTRA_DIST += $(sw_bench_runs) bench/bench-lib.sh
bench: swarmd swarmctl swarmsim tests/test_peers_attack$(EXEEXT) tests/wanemu$(EXEEXT)
	@rc=0; for b in $(sw_bench_runs); do \
	    echo "== $$b"; $(SHELL) $(srcdir)/$$b $(abs_top_builddir) || rc=1; \
	done; exit $$rc
.PHONY: bench
