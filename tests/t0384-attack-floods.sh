#!/bin/sh
# t0384: floods of valid requests do not stall an open run (issue 12).
# One 4-stage run (metrics on every node); in turn:
#   6. 25000 valid requests (STATE_GET, CKPT_INFO_GET, PING) from 200 keys,
#      spread over the 4 nodes: 3 of ~12 such floods used to stall the run
#      for good (the nodes dropped the pipeline's own FWD/BWD/GO as "stale":
#      one sequence window per sender across ROUTER and DEALER);
#   7. 20000 of them from 20000 fresh keys;
#   8. 20000 transport PINGs from one key (all answered, training 40%
#      slower, and the rate-limit drops in no metric).
# During each (from its start) the run trains 20 more steps, and 10 more
# once the helper sent everything; the nodes' metrics count the
# requests they refused for their rate (a drop counter whose reason names a
# rate or limit is above 0).
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
. "${TEST_SRCDIR:-$(dirname "$0")}/attack-lib.sh"
echo "1..4"
write_manifest "$TMP/run.conf" 100000 4
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
start_swarm n 0 1 2 3 -- --metrics 127.0.0.1:0
LOG_LAST=$LOG_3
wait_steps 60 "$LOG_LAST" 5
EPS=$(node_eps)

D6="6. 25000 valid requests from 200 keys: the run keeps training"
if want 6; then
    attack_start flood6 120 flood 200 25000 $EPS
    advancing 20 90; rc=$?
    attack_finish 60
    A0=$(last_step "$LOG_LAST")
    advancing 10 60 || rc=1 # and after the flood
    [ $rc -eq 0 ] && [ -n "$AEP" ]
    ok $? "$D6"
else skip 6 "$D6"; fi

D7="7. 20000 valid requests from 20000 fresh keys: the run keeps training"
if want 7; then
    attack_start flood7 120 flood 0 20000 $EPS
    advancing 20 90; rc=$?
    attack_finish 60
    A0=$(last_step "$LOG_LAST")
    advancing 10 60 || rc=1 # and after the flood
    [ $rc -eq 0 ] && [ -n "$AEP" ]
    ok $? "$D7"
else skip 7 "$D7"; fi

D8="8. 20000 PINGs from one key: the run keeps training"
if want 8; then
    attack_start ping8 120 ping 20000 $EPS
    advancing 20 90; rc=$?
    attack_finish 60
    A0=$(last_step "$LOG_LAST")
    advancing 10 60 || rc=1 # and after the flood
    [ $rc -eq 0 ] && [ -n "$AEP" ]
    ok $? "$D8"
else skip 8 "$D8"; fi

D9="the floods' drops show in the nodes' metrics (a rate-limit drop counter above 0)"
for name in 0 1 2 3; do
    eval "log=\$LOG_$name"
    metrics "$(metrics_port "$log")" >"$TMP/metrics$name.txt" 2>/dev/null
done
cat "$TMP"/metrics?.txt | grep -i '^swarm_.*\(rate\|limit\).* [1-9][0-9]*$' | head -n 6 | sed 's/^/# /'
cat "$TMP"/metrics?.txt | grep -i -q '^swarm_.*\(rate\|limit\).* [1-9][0-9]*$'
ok $? "$D9"
