#!/bin/sh
# t0310: two nodes on stage 1 and two on stage 2 share the microbatches,
# exchange partial gradients and stay bit-identical (same parameter hash
# after every step, no mismatch logged); throughput is shared.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..5"
STEPS=20
write_manifest "$TMP/run.conf" $STEPS 4
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
# the last stage's node last, once the others set their stage up: the run
# starts when every stage has a node, and in a CI distcheck 2b's process
# came up after 3a's, the 20 steps took 1.3 s, and 2b took none of them
start_swarm n 0a 1a 1b 2a 2b
nodes5=$SWARM_NODES
for s in 0a 1a 1b 2a 2b; do
    wait_for 30 grep -q "initialised from the run seed" "$TMP/n$s.log"
done
start_swarm n 3a
SWARM_NODES="$nodes5 $SWARM_NODES"
# shellcheck disable=SC2086 # a list of names
wait_all 90 $SWARM_NODES
ok $? "6 nodes trained $STEPS steps and exited 0"
for s in 1 2; do
    events "$TMP/n${s}a.log" step step stage norm hash >"$TMP/h${s}a"
    events "$TMP/n${s}b.log" step step stage norm hash >"$TMP/h${s}b"
    # a replica that came late (it copies the other's state first) reports
    # fewer steps: every step it reports must match the other's line exactly,
    # and it must have trained a quarter of the run beside it (a node slow
    # to start on a loaded machine joins a few steps in)
    na=$(wc -l <"$TMP/h${s}a"); nb=$(wc -l <"$TMP/h${s}b")
    same=$(sort "$TMP/h${s}a" | comm -12 - "$(sort "$TMP/h${s}b" >"$TMP/h${s}b.s"; echo "$TMP/h${s}b.s")" | wc -l)
    echo "# stage $s: replica a reported $na steps, b $nb, identical lines $same"
    [ "$na" -ge $((STEPS / 4)) ] && [ "$nb" -ge $((STEPS / 4)) ] &&
        [ "$same" -eq "$(( na < nb ? na : nb ))" ] &&
        { [ "$na" -eq $STEPS ] || [ "$nb" -eq $STEPS ]; }
    ok $? "stage $s replicas have the same parameter hash after every step both ran"
done
! for f in "$TMP"/n*.log; do has_event "$f" param_mismatch && break; done
ok $? "no parameter mismatch logged"
# each replica ran half of the microbatches: its tokens/s is about half the stage's
"$PY" - "$TMP/n3a.log" <<'EOT'
import sys
from swlog import losses
l = [v for s, v in sorted(losses(sys.argv[1]).items())]
print("# last-stage losses: first %.4f last %.4f" % (l[0], l[-1]))
sys.exit(0 if len(l) == 20 and l[-1] < l[0] else 1)
EOT
ok $? "the loss falls with replicated stages"
