#!/bin/sh
# t0422: a copy resumes after its source stalled (issue 13; peers/fetch.h,
# Slow links).  2 stages of the wide model of t0418 (81 MB of state with
# the AdamW moments), each process on a host of its own, each access link
# 25 ms one way and 10 Mbit/s; stage 1's replica n1b joins late and copies
# from n1.  While the copy runs, n1 is stopped (SIGSTOP) for 20 s: no piece
# comes, and the copy stalls (4 gaps of 3.4 s without a piece).  Before,
# the copy then failed ("state copy from ... failed") and started over
# from nothing, 74 s of transfer at this rate; now the copier asks n1
# again for the pieces it has not sent, and once n1 goes on the copy ends
# without starting over.  n1 stops a second time 10 s after it went on: a
# source resumes from every stall after a piece (it resumed once only, and
# the copy failed).  Every node runs with --dead-ms 30000: a 20 s stop is
# no death here (a source declared dead is not resumed).
#   - n1b logged two resumes of its copy and no failed copy;
#   - it copied the 81 MB state (a recovery event) in one copy;
#   - it takes 2 steps with its twin after its copy.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/wan-lib.sh"
wan_need
echo "1..4"

watchdog 600

wan_wide_copier 30000
rc=$WIDE_RC
# about 10 MB of the copy in, n1 stops for 20 s; 10 s after it goes on
# (about 10 MB more), it stops for 20 s again
wait_for 120 grep -q "copying stage 1" "$TMP/n1b.log" && sleep 8
kill -STOP "$N1"
sleep 20
kill -CONT "$N1"
sleep 10
kill -STOP "$N1"
sleep 20
kill -CONT "$N1"
echo "# n1 stopped twice for 20 s"
wait_for 300 has_event "$TMP/n1b.log" recovery stage=1 method=copy; rc2=$?
msgs "$TMP/n1b.log" | grep "copying stage\|copied stage\|state copy" | sed 's/^/# n1b: /' | head -n 6
events "$TMP/n1b.log" recovery bytes ms step | head -n 1 |
    awk '{ printf "# copy: %.1f MB in %.1f s at step %d\n", $1 / 1e6, $2 / 1000, $3 }'
[ $rc -eq 0 ] && [ $rc2 -eq 0 ] || for n in n1b n1 n0; do echo "# $n:"; diag_msgs "$TMP/$n.log" 12; done

resumed=$(msgs "$TMP/n1b.log" | grep -c "state copy: a source stalled; asking it again")
failed=$(msgs "$TMP/n1b.log" | grep -c "state copy from .* failed")
[ $rc2 -eq 0 ] && [ "$resumed" -ge 2 ] && [ "$failed" -eq 0 ]
ok $? "the copier resumed its copy ($resumed time(s)) and no copy failed ($failed)"

copies=$(msgs "$TMP/n1b.log" | grep -c "copying stage 1")
bytes=$(events "$TMP/n1b.log" recovery bytes | head -n 1)
[ $rc2 -eq 0 ] && [ "$copies" -eq 1 ] && [ "${bytes:-0}" -gt 80000000 ]
ok $? "one copy ($copies) of the 81 MB state ($bytes bytes)"

wan_twin_ok $rc2
