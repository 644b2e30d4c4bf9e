#!/bin/sh
# t0420: a stranger's READY answers do not hold an open run (issue 13).
# The helper publishes a training record of stage 1 under its own key and
# answers every PREPARE of the leader at once; in turn, while each lasts:
#   1. READY "copy" (a copy 3 s from its end), forever: the round waits for
#      a copier (lead.h, Copies), but once only; then no round waits for a
#      copy for 10 minutes;
#   2. READY "busy" (still summing the step before's partials), forever: the
#      leader waits only for replicas its own plan named, never for it;
#   3. READY ok with a key lower than any node's and a state of its own: the
#      leader planned the lowest key's state, so it put stage 1's real node
#      out of the plan, planned the helper (GO and FWD sent to it) and the
#      step stalled and was restarted every 5 s while the helper answered.
#   4. READY ok without a hash: the leader planned the helper beside stage
#      1's real node whatever its state (GO and FWD sent to it), and the
#      step stalled for 5 s and was restarted.
# After each: the run trains 10 more steps, and the helper got no GO, no FWD.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/attack-lib.sh"
echo "1..8"
attack_run 100000 0 1 2 3

# ready_attack NAME ANSWER...: the helper's answers ANSWER for 10 steps of
# the run after its record is in (6 s); RC 0 when the run took them and the
# helper was asked (a PREPARE reached it)
ready_attack() {
    local name=$1
    shift
    attack_start "$name" 300 ready 1 "$@"
    sleep 6
    advancing 10 150; RC=$?
    attack_stop
    echo "# PREPAREs the helper answered: $(received PREPARE)"
    [ -n "$AEP" ] && [ "$(received PREPARE)" -gt 0 ] || RC=1
    [ "$(received FWD)" = 0 ] && [ "$(received GO)" = 0 ]; RC2=$?
}

# ready_case N NAME "ANSWER..." PATTERN MAX D Db: attack N (ready_attack
# NAME ANSWER...); D: the run trained on; Db: the helper got no GO and no
# FWD, and the leader logged PATTERN (when not empty) MAX times at most
ready_case() {
    local n=$1 name=$2 ans=$3 pat=$4 max=$5 c=0
    if want "$n"; then
        # $ans unquoted: the helper's arguments, split on blanks
        ready_attack "$name" $ans
        [ -n "$pat" ] && c=$(grep -c "$pat" "$LOG_0")
        [ -n "$pat" ] && echo "# the leader logged '$pat' $c times"
        [ $RC -eq 0 ]
        ok $? "$6"
        [ $RC2 -eq 0 ] && [ "$c" -le "$max" ]
        ok $? "$7"
    else skip "$n" "$6" "$7"; fi
}

ready_case 1 copy copy "copies its stage's state" 1 \
    "1. READY copy from a stranger, forever: the run keeps training" \
    "1. the leader waited for its copy once at most, and it got no GO and no FWD"
ready_case 2 busy busy "sums its replicas" 0 \
    "2. READY busy from a stranger, forever: the run keeps training" \
    "2. the leader never waited for it, and it got no GO and no FWD"
ready_case 3 okl "ok low" "" 0 \
    "3. READY ok from a stranger of the lowest key with its own state: the run keeps training" \
    "3. the stranger got no GO and no FWD"
ready_case 4 nohash nohash "" 0 \
    "4. READY ok without a hash from a stranger: the run keeps training" \
    "4. the stranger got no GO and no FWD"
