# peers/: swarmd, swarmctl and what a node does.
sw_peers_cppflags = $(AM_CPPFLAGS) $(ZMQ_CFLAGS) $(SODIUM_CFLAGS) $(UV_CFLAGS) $(MSGPACK_CFLAGS) \
	$(INIH_CFLAGS)
sw_peers_ldadd = libswpeers.a libswckpt.a $(sw_net_ldadd) $(sw_core_ldadd) $(INIH_LIBS) \
	$(SODIUM_LIBS)

noinst_LIBRARIES += libswpeers.a
# The trainer core (trainer, step, lead, recover over plan, live, fetch) does
# no I/O; node.c and the roles (bootstrap.c, join.c, keeper.c) do.
libswpeers_a_SOURCES = peers/manifest.h peers/manifest.c peers/proto.h peers/proto.c \
	peers/admit.h peers/admit.c \
	peers/status.h peers/status.c peers/metrics.h peers/metrics.c \
	peers/plan.h peers/plan.c peers/live.h peers/live.c peers/fetch.h peers/fetch.c \
	peers/step.h peers/step.c peers/lead.h peers/lead.c peers/recover.h peers/recover.c \
	peers/trainer.h peers/trainer.c peers/compute.h peers/compute.c \
	peers/node.h peers/node.c peers/bootstrap.c peers/join.c peers/keeper.c \
	peers/ckptnet.h peers/ckptnet.c peers/cfgfile.h peers/cfgfile.c \
	peers/reach.h peers/reach.c
libswpeers_a_CPPFLAGS = $(sw_peers_cppflags)

bin_PROGRAMS += swarmd swarmctl
swarmd_SOURCES = peers/swarmd.c
swarmd_CPPFLAGS = $(sw_peers_cppflags)
swarmd_LDADD = $(sw_peers_ldadd)
swarmctl_SOURCES = peers/swarmctl.c src/ckptcli.h src/ckptcli.c
swarmctl_CPPFLAGS = $(sw_peers_cppflags)
swarmctl_LDADD = $(sw_peers_ldadd)

check_PROGRAMS += tests/test_manifest tests/test_plan tests/test_peers_foreign \
	tests/test_peers_rogue tests/test_peers_stranger tests/test_peers_attack tests/test_ckptnet \
	tests/test_peers_records
tests_test_manifest_SOURCES = tests/test_manifest.c tests/tap.h
tests_test_manifest_CPPFLAGS = $(sw_peers_cppflags)
tests_test_manifest_LDADD = $(sw_peers_ldadd)
tests_test_plan_SOURCES = tests/test_plan.c tests/tap.h
tests_test_ckptnet_SOURCES = tests/test_ckptnet.c tests/tap.h
tests_test_ckptnet_CPPFLAGS = $(sw_peers_cppflags)
tests_test_ckptnet_LDADD = $(sw_peers_ldadd)
tests_test_plan_CPPFLAGS = $(sw_peers_cppflags)
tests_test_plan_LDADD = $(sw_peers_ldadd)
check_PROGRAMS += tests/test_live tests/test_fetch tests/test_reach
TESTS += tests/test_live tests/test_fetch tests/test_reach
tests_test_reach_SOURCES = tests/test_reach.c tests/tap.h
tests_test_reach_CPPFLAGS = $(sw_peers_cppflags)
tests_test_reach_LDADD = $(sw_peers_ldadd)
tests_test_live_SOURCES = tests/test_live.c tests/tap.h
tests_test_live_CPPFLAGS = $(sw_peers_cppflags)
tests_test_live_LDADD = $(sw_peers_ldadd)
tests_test_fetch_SOURCES = tests/test_fetch.c tests/tap.h
tests_test_fetch_CPPFLAGS = $(sw_peers_cppflags)
tests_test_fetch_LDADD = $(sw_peers_ldadd)
check_PROGRAMS += tests/test_status tests/test_admit
tests_test_admit_SOURCES = tests/test_admit.c tests/tap.h
tests_test_admit_CPPFLAGS = $(sw_peers_cppflags)
tests_test_admit_LDADD = $(sw_peers_ldadd)
TESTS += tests/test_admit
tests_test_status_SOURCES = tests/test_status.c tests/tap.h
tests_test_status_CPPFLAGS = $(sw_peers_cppflags)
tests_test_status_LDADD = $(sw_peers_ldadd)
TESTS += tests/test_status

sw_peers_tests = tests/t0300-swarm-vs-sim.sh tests/t0301-swarm-vs-sim-plus.sh tests/t0302-big-stage.sh \
	tests/t0303-big-checkfree-plus.sh tests/t0304-codecs.sh tests/t0305-big-microbatch.sh \
	tests/t0306-compute-apart.sh \
	tests/t0310-replicas.sh tests/t0311-grad-int8.sh tests/t0312-grad-int4.sh \
	tests/t0320-stage-auto.sh \
	tests/t0330-bad-manifest.sh tests/t0340-status-json.sh tests/t0350-kill-checkfree.sh \
	tests/t0355-kill-checkfree-plus.sh tests/t0360-kill-replica.sh tests/t0370-kill-adjacent.sh \
	tests/t0380-rogue.sh tests/t0381-admission.sh tests/t0382-attack-prepare-records.sh \
	tests/t0383-attack-fake-records.sh tests/t0384-attack-floods.sh tests/t0386-fake-records.sh \
	tests/t0387-zero-weights.sh \
	tests/t0385-attack-pieces.sh tests/t0388-attack-hop-pieces.sh tests/t0389-keeper-records.sh \
	tests/t0390-keeper.sh tests/t0391-restart-from-checkpoint.sh \
	tests/t0392-keeper-adjacent.sh tests/t0393-keeper-network.sh tests/t0394-keeper-deaths.sh \
	tests/t0395-netns.sh tests/t0396-checkfree-before-checkpoint.sh \
	tests/t0398-rebalance.sh tests/t0399-second-signal.sh \
	tests/t0400-wan-net.sh tests/t0401-wan-swarm.sh tests/t0402-wan-keeper.sh tests/t0403-wan-rebuild.sh \
	tests/t0410-nat-net.sh tests/t0411-nat-verdict.sh tests/t0412-advertise.sh \
	tests/t0413-nat-outbound.sh \
	tests/t0414-nat-relay.sh tests/t0415-nat-all.sh tests/t0416-busy-nodes.sh \
	tests/t0417-nat-big-rebuild.sh tests/t0418-wan-late-replica.sh \
	tests/t0419-wan-slow-exchange.sh \
	tests/t0420-attack-ready.sh tests/t0421-wan-slow-copy.sh \
	tests/t0422-wan-copy-resume.sh tests/t0423-wan-copy-source-stopped.sh \
	tests/t0424-wan-copy-kept.sh tests/t0425-wan-keeper-slow-link.sh
TESTS += tests/test_manifest tests/test_plan tests/test_ckptnet $(sw_peers_tests)

# the wide-area test network of the t04NN tests and bench/wan_bench.sh
check_PROGRAMS += tests/wanemu
tests_wanemu_SOURCES = tests/wanemu.c
EXTRA_DIST += tests/wan-lib.sh tests/wan_probe.py

# The swarm protocol under deterministic simulation (the trainer core over a
# simulated network, a stub model): `tests/test_swarm_sim --seed N --verbose`
# replays one scenario.
check_PROGRAMS += tests/test_swarm_sim
TESTS += tests/test_swarm_sim
tests_test_swarm_sim_SOURCES = tests/test_swarm_sim.c tests/stub_model.h tests/stub_model.c \
	tests/tap.h
tests_test_swarm_sim_CPPFLAGS = $(sw_peers_cppflags)
tests_test_swarm_sim_LDADD = $(sw_peers_ldadd)
EXTRA_DIST += $(sw_peers_tests) tests/peers-lib.sh tests/attack-lib.sh tests/check_status_json.py \
	scripts/swarm-demo.sh bench/swarm_bench.sh tests/test_peers_foreign.c tests/test_peers_rogue.c \
	tests/test_peers_stranger.c
dist_man_MANS += man/swarmd.1 man/swarmctl.1 man/swarm.conf.5
tests_test_peers_foreign_SOURCES = tests/test_peers_foreign.c
tests_test_peers_foreign_CPPFLAGS = $(sw_peers_cppflags)
tests_test_peers_foreign_LDADD = $(sw_peers_ldadd)
# the hostile helpers of the attack tests share tests/hostile.c
tests_test_peers_stranger_SOURCES = tests/test_peers_stranger.c tests/hostile.h tests/hostile.c
tests_test_peers_stranger_CPPFLAGS = $(sw_peers_cppflags)
tests_test_peers_stranger_LDADD = $(sw_peers_ldadd)
tests_test_peers_rogue_SOURCES = tests/test_peers_rogue.c tests/hostile.h tests/hostile.c
tests_test_peers_rogue_CPPFLAGS = $(sw_peers_cppflags)
tests_test_peers_rogue_LDADD = $(sw_peers_ldadd)
tests_test_peers_attack_SOURCES = tests/test_peers_attack.c tests/hostile.h tests/hostile.c
tests_test_peers_attack_CPPFLAGS = $(sw_peers_cppflags)
tests_test_peers_attack_LDADD = $(sw_peers_ldadd)
tests_test_peers_records_SOURCES = tests/test_peers_records.c tests/hostile.h tests/hostile.c
tests_test_peers_records_CPPFLAGS = $(sw_peers_cppflags)
tests_test_peers_records_LDADD = $(sw_peers_ldadd)
EXTRA_DIST += bench/recovery_bench.sh bench/rebalance_bench.sh

# swarmd --config FILE (peers/cfgfile.h), swarmd.conf(5); the operators' kit
# in contrib/ (a Grafana dashboard over the metrics, a systemd unit), which
# t0345 checks against the metrics a live swarm serves.
check_PROGRAMS += tests/test_cfgfile
TESTS += tests/test_cfgfile tests/t0345-operators-kit.sh
tests_test_cfgfile_SOURCES = tests/test_cfgfile.c tests/tap.h
tests_test_cfgfile_CPPFLAGS = $(sw_peers_cppflags)
tests_test_cfgfile_LDADD = $(sw_peers_ldadd)
dist_man_MANS += man/swarmd.conf.5
EXTRA_DIST += tests/t0345-operators-kit.sh tests/check_grafana.py contrib/grafana/swarm.json \
	contrib/systemd/swarmd@.service contrib/systemd/swarm-volunteer.conf

# Certificate and revocation-list fuzz target: make check replays the
# committed corpus with gcc (tests/fuzz/replay.c); scripts/fuzz.sh cert
# SECONDS fuzzes it with clang.
check_PROGRAMS += tests/fuzz/fuzz_cert_replay
TESTS += tests/t0530-fuzz-cert.sh
EXTRA_DIST += tests/t0530-fuzz-cert.sh tests/fuzz/corpus/cert
tests_fuzz_fuzz_cert_replay_SOURCES = tests/fuzz/fuzz_cert.c tests/fuzz/replay.c
tests_fuzz_fuzz_cert_replay_CPPFLAGS = $(sw_peers_cppflags)
tests_fuzz_fuzz_cert_replay_LDADD = $(sw_peers_ldadd)

# Reachability-message fuzz target (peers/reach.h), the same way:
# scripts/fuzz.sh reach SECONDS fuzzes it with clang.
check_PROGRAMS += tests/fuzz/fuzz_reach_replay
TESTS += tests/t0540-fuzz-reach.sh
EXTRA_DIST += tests/t0540-fuzz-reach.sh tests/fuzz/corpus/reach
tests_fuzz_fuzz_reach_replay_SOURCES = tests/fuzz/fuzz_reach.c tests/fuzz/replay.c
tests_fuzz_fuzz_reach_replay_CPPFLAGS = $(sw_peers_cppflags)
tests_fuzz_fuzz_reach_replay_LDADD = $(sw_peers_ldadd)

# Stage-record fuzz target (peers/status.h), the same way: scripts/fuzz.sh
# record SECONDS fuzzes it with clang.
check_PROGRAMS += tests/fuzz/fuzz_record_replay
TESTS += tests/t0541-fuzz-record.sh
EXTRA_DIST += tests/t0541-fuzz-record.sh tests/fuzz/corpus/record
tests_fuzz_fuzz_record_replay_SOURCES = tests/fuzz/fuzz_record.c tests/fuzz/replay.c
tests_fuzz_fuzz_record_replay_CPPFLAGS = $(sw_peers_cppflags)
tests_fuzz_fuzz_record_replay_LDADD = $(sw_peers_ldadd)
