#!/bin/sh
# t0320: --stage auto fills the stages in order (an empty stage first, lowest
# index), then joins the stage with the least total throughput.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..3"
write_manifest "$TMP/run.conf" 100000 4
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
order=""
for i in 0 1 2 3; do
    start_node "$TMP/a$i.log" auto
    wait_for 10 grep -q "chose stage" "$TMP/a$i.log"
    order="$order$(msgs "$TMP/a$i.log" | sed -n 's/.*chose stage \([0-9]*\).*/\1/p')"
    # wait until the bootstrap lists it, so that the next one sees it
    wait_for 10 sh -c "\"$SWARMCTL\" peers --peer \"$BOOT\" | grep -c '^[0-9a-f]' | grep -qx $((i + 1))"
done
[ "$order" = "0123" ]
ok $? "four auto nodes took stages in order (got '$order')"
# let the swarm train so that every stage reports its capacity
wait_for 30 sh -c "\"$SWARMCTL\" status --peer \"$BOOT\" --json | \"$PY\" -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if all(s[\"capacity\"] > 0 for s in d[\"stages\"]) else 1)'"
ok $? "every stage reports a capacity"
start_node "$TMP/a4.log" auto
wait_for 10 grep -q "chose stage" "$TMP/a4.log"
# the rule, checked against what the node itself saw when it chose (the
# capacities move while the swarm trains, so a separate snapshot would race):
# every stage has a node, so the least total throughput wins
line=$(msgs "$TMP/a4.log" | grep "chose stage" | head -n 1)
"$PY" - "$line" <<'EOT'
import re, sys
m = re.search(r"chose stage (\d+) .*saw (.*)\)$", sys.argv[1])
got = int(m.group(1))
seen = [tuple(map(float, x.split("/"))) for x in m.group(2).split()]
print("# the fifth node saw (nodes, tokens/s) %s and chose stage %d" % (seen, got))
ok = all(c >= 1 for c, _ in seen) and seen[got][1] == min(t for _, t in seen)
sys.exit(0 if ok else 1)
EOT
ok $? "the fifth auto node joined the weakest stage it saw ($(echo "$line" | sed 's/.*chose //'))"
