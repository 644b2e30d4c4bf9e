#!/bin/sh
# t0320: --stage auto fills the stages in order (an empty stage first, lowest
# index), then joins the stage with the least total throughput.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..3"
write_manifest "$TMP/run.conf" 100000 4
"$SWARMCTL" manifest sign --run "$TMP/run.conf" --key "$TMP/owner" >/dev/null 2>&1
start_boot "$TMP/run.conf"
order=""
for i in 0 1 2 3; do
    start_node "$TMP/a$i.log" auto
    wait_for 10 grep -q "chose stage" "$TMP/a$i.log"
    order="$order$(sed -n 's/.*chose stage \([0-9]*\).*/\1/p' "$TMP/a$i.log")"
    # wait until the bootstrap lists it, so that the next one sees it
    wait_for 10 sh -c "\"$SWARMCTL\" peers --peer \"$BOOT\" | grep -c '^[0-9a-f]' | grep -qx $((i + 1))"
done
[ "$order" = "0123" ]
ok $? "four auto nodes took stages in order (got '$order')"
# let the swarm train so that every stage reports its capacity
wait_for 30 sh -c "\"$SWARMCTL\" status --peer \"$BOOT\" --json | \"$PY\" -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if all(s[\"capacity\"] > 0 for s in d[\"stages\"]) else 1)'"
ok $? "every stage reports a capacity"
"$SWARMCTL" status --peer "$BOOT" --json >"$TMP/before.json"
start_node "$TMP/a4.log" auto
wait_for 10 grep -q "chose stage" "$TMP/a4.log"
got=$(sed -n 's/.*chose stage \([0-9]*\).*/\1/p' "$TMP/a4.log")
want=$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(min(d["stages"], key=lambda s: s["capacity"])["stage"])' "$TMP/before.json")
"$PY" - "$TMP/before.json" "$got" <<'EOT'
import json, sys
d = json.load(open(sys.argv[1])); got = int(sys.argv[2])
caps = [s["capacity"] for s in d["stages"]]
print("# capacities before the fifth node: %s; it chose stage %d" % (caps, got))
# the capacities move while the swarm trains: accept a stage within 25% of the weakest
sys.exit(0 if caps[got] <= min(caps) * 1.25 else 1)
EOT
ok $? "the fifth auto node joined a weakest stage (chose $got, weakest before: $want)"
