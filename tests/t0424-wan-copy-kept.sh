#!/bin/sh
# t0424: a copy that failed leaves its pieces to the next copy (issue 13;
# recover.h and fetch.h, Kept pieces).  2 stages of the wide model of
# t0418 (81 MB of state with the AdamW moments), each process on a host
# of its own, each access link 25 ms one way and 20 Mbit/s; stage 1's
# replica n1b joins late and copies from n1.  Once the leader's round
# waits for the copy (n1 then stays at its step), n1 is stopped (SIGSTOP)
# until the copy fails: it stalls, resumes, stalls again.  Before, the next
# copy from n1 started over from nothing, and what the link had carried
# was lost; now it asks only for the pieces it lacks.  --dead-ms 30000:
# the stop is no death.
#   - n1b's copy failed while n1 was stopped;
#   - n1b then copied stage 1 (a recovery event), keeping the pieces the
#     failed copy got, more than 0 MB;
#   - it takes 2 steps with its twin after its copy.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/wan-lib.sh"
wan_need
echo "1..4"

watchdog 600

WAN_RATE=20 wan_wide_copier 30000
rc=$WIDE_RC
# the round waits for the copy: n1 is at the step its pieces are of
wait_for 180 grep -q "which copies its stage's state" "$TMP/n0.log" && sleep 5
kill -STOP "$N1"
wait_for 90 grep -q "state copy from .* failed" "$TMP/n1b.log"; rc1=$?
sleep 2
kill -CONT "$N1"
echo "# n1 stopped until the copy failed"
wait_for 240 has_event "$TMP/n1b.log" recovery stage=1 method=copy; rc2=$?
msgs "$TMP/n1b.log" | grep "copying stage\|copied stage\|state copy" | sed 's/^/# n1b: /' |
    cut -c 1-200 | head -n 8
events "$TMP/n1b.log" recovery bytes ms step | head -n 1 |
    awk '{ printf "# copy: %.1f MB in %.1f s at step %d\n", $1 / 1e6, $2 / 1000, $3 }'
if [ "$rc" -ne 0 ] || [ "$rc2" -ne 0 ]; then
    for n in n1b n1 n0; do echo "# $n:"; diag_msgs "$TMP/$n.log" 12; done
fi

[ $rc1 -eq 0 ]
ok $? "n1b's copy failed while n1 was stopped"

kept=$(msgs "$TMP/n1b.log" |
    sed -n 's/.*copied stage 1 .* \([0-9.]*\) MB of it kept from the last copy.*/\1/p')
[ $rc2 -eq 0 ] && awk -v k="${kept:-0}" 'BEGIN { exit !(k > 0) }'
ok $? "the copy after it kept the pieces the failed one got (${kept:-no} MB)"

wan_twin_ok $rc2
