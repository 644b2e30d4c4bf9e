#!/bin/sh
# t0382: a stranger's PREPARE and fake stage-0 records do not steer an open
# run (issue 12).  One 4-stage run; in turn, while each lasts:
#   1. PREPARE(step + 1000) to every node every 100 ms from an unknown key
#      (the run used to stall for good: "behind the run ...: copying state
#      again");
#   2. a stage-0 record with the lowest key of the run, at the run's step
#      (it used to freeze the run silently while the record lived);
#   3. a stage-0 record claiming step + 1000 whose node answers STATE_GET
#      with all-zero weights (the real stage-0 node used to "copy stage 0
#      from <attacker>" forever, or copied the zeros).
# After each: the run keeps training (20 more steps), nothing was copied
# from the attacker and it received no FWD and no GO.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/attack-lib.sh"
echo "1..7"
attack_run 100000 0 1 2 3
EPS=$(node_eps)
echo "# nodes: $EPS"

D1="1. PREPARE(step + 1000) from a stranger: the run keeps training"
if want 1; then
    attack_during prepare 60 prepare 1000 $EPS
    [ $RC -eq 0 ]
    ok $? "$D1"
else skip 1 "$D1"; fi

D2="2. a fake stage-0 record with the lowest key: the run keeps training"
D2b="2. the fake stage-0 node received no FWD and no GO, and nothing was copied from it"
if want 2; then
    attack_during record 60 record 0 0 low
    [ $RC -eq 0 ]
    ok $? "$D2"
    [ "$(received FWD)" = 0 ] && [ "$(received GO)" = 0 ] && ! copied_from_attacker
    ok $? "$D2b"
else skip 2 "$D2" "$D2b"; fi

D3="3. a fake stage-0 record at step + 1000 serving zero weights: the run keeps training"
D3b="3. no node copied state from the fake stage-0 node"
D3c="3. the fake stage-0 node received no FWD and no GO"
if want 3; then
    attack_during record 60 record 0 1000 zero
    cat "$TMP"/n*.log | grep -F "$AEP" | msgs /dev/stdin | head -n 3 | sed 's/^/# /'
    [ $RC -eq 0 ]
    ok $? "$D3"
    echo "# the fake stage-0 node was asked for its state $(received STATE_GET) times"
    ! copied_from_attacker
    ok $? "$D3b"
    [ "$(received FWD)" = 0 ] && [ "$(received GO)" = 0 ]
    ok $? "$D3c"
else skip 3 "$D3" "$D3b" "$D3c"; fi
A0=$(last_step "$LOG_LAST")
advancing 10 60
ok $? "the run still trains after the attacks"
