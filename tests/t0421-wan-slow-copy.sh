#!/bin/sh
# t0421: a replica that joins a running stage over a 10 Mbit/s link copies
# its stage's state in more than a minute, and trains (issue 13, item 5;
# peers/lead.h, Copies and Long rounds).  2 stages of the wide model of
# t0418 (27 MB of parameters, 81 MB of state with the AdamW moments), stage
# 0 served by two replicas, every process on a host of its own, each
# access link 25 ms one way and 10 Mbit/s (50 ms and 10 Mbit/s between two
# hosts).  A copy takes pieces of its source's current step only, and the
# leader's round waited for a copier only when its copy ended within 60 s
# of the PREPARE: this one takes about 80 s, so on the code before it was
# never waited for, every step restarted it, and it never finished.  Now
# the wait grows with the stage's state (4 Mbit/s at least).  While the
# round waits, the nodes that answered hear the leader's PREPARE again
# every 10 s: a node that hears nothing from the leader for 30 s passes it
# over, and the other stage-0 replica would then lead the same step.
#   - the replica copies the 81 MB state (a recovery event);
#   - the leader logged that it waited for it;
#   - the replica takes 2 steps with its twin (the same gradient norm at
#     the same step) after its copy;
#   - no node passed the leader over.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/wan-lib.sh"
wan_need
echo "1..5"

watchdog 720

l=delay=25,rate=10,queue=100
wan_start b:1:$l s0:10:$l s0b:13:$l s1:11:$l s1b:12:$l
ok $? "5 hosts, each link $l"
M_SEQ_LEN=16
big_model 512 1536
write_manifest "$TMP/run.conf" 100000 2 "[wire]
activations = int8
gradients = int8"
sign_manifest "$TMP/run.conf"
wan_boot b "$TMP/run.conf"
wan_node "$TMP/n0.log" s0 0
wan_node "$TMP/n0b.log" s0b 0
# stage 1 last, once both stage-0 nodes have set up theirs: the run starts
# when every stage has a node, and a stage-0 node not ready by then copies
# its stage's state (a second copier, beside the one this test is about)
for n in n0 n0b; do
    wait_for 120 grep -q "stage 0 initialised" "$TMP/$n.log"
done
wan_node "$TMP/n1.log" s1 1
wait_steps 180 "$TMP/n1.log" 2; rc=$?
msgs "$TMP/n1.log" | grep "^info: stage 1 of 2" | sed 's/^/# /'
wan_node "$TMP/n1b.log" s1b 1
echo "# the replica of stage 1 started at step $(last_step "$TMP/n1.log")"
wait_for 300 has_event "$TMP/n1b.log" recovery stage=1 method=copy; rc2=$?
msgs "$TMP/n1b.log" | grep "copying stage\|copied stage" | sed 's/^/# n1b: /' | head -n 6
events "$TMP/n1b.log" recovery bytes ms step | head -n 1 |
    awk '{ printf "# copy: %.1f MB in %.1f s at step %d\n", $1 / 1e6, $2 / 1000, $3 }'
[ $rc -eq 0 ] && [ $rc2 -eq 0 ] || for n in n1b n1 n0 n0b; do echo "# $n:"; diag_msgs "$TMP/$n.log" 12; done
[ $rc -eq 0 ] && [ $rc2 -eq 0 ]
ok $? "the late replica copied the 81 MB state over its 10 Mbit/s link"

for f in "$TMP/n0.log" "$TMP/n0b.log"; do
    msgs "$f" | grep "copies its stage's state\|waits for a copy\|not ready after" |
        sed "s|^|# $(basename "$f" .log): |" | head -n 3
done
cat "$TMP/n0.log" "$TMP/n0b.log" | msgs /dev/stdin | grep -q "which copies its stage's state"
ok $? "the leader's round waited for the copier"

wan_twin_ok $rc2

n=0
for f in "$TMP"/n*.log; do
    c=$(msgs "$f" | grep -c "passing it over")
    [ "$c" -eq 0 ] || { echo "# $(basename "$f" .log) passed $c leader(s) over:"; msgs "$f" | grep "passing it over" | sed 's/^/#   /' | head -n 3; }
    n=$((n + c))
done
[ $n -eq 0 ]
ok $? "no node passed the leader over while the round waited"
