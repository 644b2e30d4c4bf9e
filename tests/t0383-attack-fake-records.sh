#!/bin/sh
# t0383: fake stage records with dead endpoints do not steer an open run
# (issue 12).  One 4-stage run (stage 2 on a node with metrics):
#   4. 50 fake stage-2 records claiming 50M tokens/s, 49 with endpoints
#      nobody listens on and one at the attacker's own endpoint: swarmctl
#      status used to say "stage 2: 51 nodes, 50M tok/s, healthy",
#      throughput fell 8-13x and the attacker received PREPARE, GO and FWD
#      (real activations and targets).  The run must keep training, status
#      must not count the fakes as nodes of stage 2, and the attacker must
#      receive no FWD and no GO.
#   5. 30 fake stage-2 records, then the real stage-2 node killed and a
#      newcomer started with --stage auto: it used to choose stage 1 while
#      the leader planned the fakes one by one and stage 2 stayed empty.  The
#      newcomer must take stage 2 and the run train on.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/attack-lib.sh"
echo "1..5"
attack_run 100000 0 1 2 3

D4="4. 50 fake stage-2 records: the run keeps training"
D4b="4. swarmctl status does not count the 50 fakes as healthy nodes of stage 2"
D4c="4. the attacker received no FWD and no GO"
if want 4; then
    attack_start fakes 90 fakes 2 50
    sleep 4 # the records are in, and the nodes' scans saw them
    "$SWARMCTL" status --peer "$BOOT" >"$TMP/status4.txt" 2>&1
    "$SWARMCTL" status --peer "$BOOT" --json >"$TMP/status4.json" 2>&1
    grep -i "stage 2" "$TMP/status4.txt" | head -n 2 | sed 's/^/# status: /'
    advancing 10 90; rc=$?   # that it trains on; bench/attack_bench.sh measures how fast
    attack_stop
    [ $rc -eq 0 ] && [ -n "$AEP" ]
    ok $? "$D4"
    st=$(stage_state "$TMP/status4.json" 2 2>/dev/null)
    echo "# stage 2 in status --json: $st (nodes, state)"
    [ -n "$st" ] && [ "${st%% *}" -lt 50 ]
    ok $? "$D4b"
    [ "$(received FWD)" = 0 ] && [ "$(received GO)" = 0 ]
    ok $? "$D4c"
else skip 4 "$D4" "$D4b" "$D4c"; fi

D5="5. 30 fakes on stage 2, its node killed: a --stage auto newcomer takes stage 2"
D5b="5. the run trains again with the newcomer on stage 2"
if want 5; then
    attack_start fakes5 90 fakes 2 30
    sleep 4
    kill -9 "$P2"
    fail_step=$(last_step "$LOG_LAST")
    echo "# the stage-2 node killed after step $fail_step"
    sleep 1
    start_node "$TMP/new2.log" auto
    wait_for 30 has_event "$TMP/new2.log" chose_stage
    # the step in progress stalls first (up to 30 s) before the leader's
    # PREPARE round names stage 2 as the one it waits for ("nd" in its
    # record); the newcomer moves there, fails twice to copy from the fake
    # (10 s each) and rebuilds the stage by CheckFree
    wait_steps 120 "$LOG_LAST" $((fail_step + 10)); rc=$?
    s=$(stage_of "$TMP/new2.log")
    msgs "$TMP/new2.log" | grep -i "chose\|stage" | head -n 3 | sed 's/^/# /'
    echo "# the newcomer serves stage $s; the last stage is at step $(last_step "$LOG_LAST")"
    attack_stop
    [ "$s" = 2 ]
    ok $? "$D5"
    [ $rc -eq 0 ]
    ok $? "$D5b"
    # Not asserted, a known weakness (issue 12's closing note): the
    # stranger's live stage-2 node gets GOs and FWDs here (GO=5 FWD=4 in
    # most runs).  Traced (issue 13): the paused leader fills the emptied
    # stage with the first record there at the step (lead.c, fill_stages),
    # a newcomer taken on its record's word since it may have joined in the
    # step without a PREPARE; the step stalls 5 s and is restarted.
    echo "# the attacker received FWD=$(received FWD) GO=$(received GO)"
else skip 5 "$D5" "$D5b"; fi
