#!/bin/sh
# t0423: a newcomer whose only source stops for longer than the copy can
# wait waits for it, and does not leave the run (issue 13; peers/recover.c,
# rebuild_tick).  2 stages of a wide model (256 wide, 21 MB of state
# with the AdamW moments; recovery.mode = checkfree, so
# nothing but a copy can give a newcomer the last stage), each process on a
# host of its own, each access link 25 ms one way and 10 Mbit/s; stage 1's
# replica n1b joins late and copies from n1, which is stopped (SIGSTOP)
# for 40 s while the copy runs.  The copy stalls, resumes, stalls again and
# fails; n1's record has lapsed by then (its ttl is 10 s), so stage 1
# looked empty to n1b, which stopped at once: "cannot recover stage 1 ...:
# stage 1 owns the final norm and LM head" and exit 5, a volunteer gone for
# a source's pause.  Now a newcomer waits a dead time for a lost stage to
# come back, as the nodes in the run do, and copies n1 again once it goes
# on.  --dead-ms 60000: a 40 s stop is no death here.  (With it, the
# leader waited for no copy of this 21 MB stage: the PREPARE timeout,
# --dead-ms, was counted inside the 60 s copy wait, and the copy,
# restarted by every step, never ended: peers/lead.h, Copies.)
#   - n1b's first copy failed, and n1b did not stop;
#   - n1b then copied stage 1 (a recovery event), the leader's round
#     waiting for it, and takes 2 steps with n1.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/wan-lib.sh"
wan_need
echo "1..4"

watchdog 600

WAN_D=256 WAN_FFN=768 wan_wide_copier 60000
rc=$WIDE_RC
wait_for 120 grep -q "copying stage 1" "$TMP/n1b.log" && sleep 8
kill -STOP "$N1"
wait_for 60 grep -q "state copy from .* failed" "$TMP/n1b.log"; rc1=$?
sleep 5
stopped=0
kill -0 "$N1B" 2>/dev/null || stopped=1
sleep 30
kill -CONT "$N1"
echo "# n1 stopped for about 40 s"
kill -0 "$N1B" 2>/dev/null || stopped=1
wait_for 240 has_event "$TMP/n1b.log" recovery stage=1 method=copy; rc2=$?
msgs "$TMP/n1b.log" | grep "copying stage\|copied stage\|state copy\|cannot recover\|waiting" |
    sed 's/^/# n1b: /' | cut -c 1-160 | uniq | head -n 8
events "$TMP/n1b.log" recovery bytes ms step | head -n 1 |
    awk '{ printf "# copy: %.1f MB in %.1f s at step %d\n", $1 / 1e6, $2 / 1000, $3 }'
[ $rc -eq 0 ] && [ $rc2 -eq 0 ] || for n in n1b n1 n0; do echo "# $n:"; diag_msgs "$TMP/$n.log" 12; done

[ $rc1 -eq 0 ] && [ $stopped -eq 0 ] && ! msgs "$TMP/n1b.log" | grep -q "cannot recover"
ok $? "n1b's copy failed while n1 was stopped, and n1b stayed (stopped: $stopped)"

msgs "$TMP/n0.log" | grep "copies its stage's state" | sed 's/^/# n0: /' | head -n 2
[ $rc2 -eq 0 ] && msgs "$TMP/n0.log" | grep -q "which copies its stage's state"
ok $? "n1b copied stage 1 once n1 went on, the leader's round waiting for it"

wan_twin_ok $rc2
