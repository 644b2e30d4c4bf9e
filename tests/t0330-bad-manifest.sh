#!/bin/sh
# t0330: bad manifests are refused with a clear message and exit status 3:
# unsigned, wrong owner, edited after signing, malformed, out of range,
# unknown key; a joining node refuses a run signed by another owner; a
# node of another run is ignored (its messages are dropped as "run").
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..10"
write_manifest "$TMP/good.conf" 20 4
sign_manifest "$TMP/good.conf"
OWNER=$(key_id)
OTHER=$(key_id "$TMP/other")

boot_refuses() { # boot_refuses NAME MANIFEST PATTERN [options]
    local name=$1 m=$2 pat=$3; shift 3
    timeout 20 "$SWARMD" bootstrap --run "$m" --listen 'tcp://127.0.0.1:*' "$@" >"$TMP/$name.log" 2>&1
    rc=$?
    grep -q "$pat" "$TMP/$name.log" && [ $rc -eq 3 ]
    r=$?
    [ $r -eq 0 ] || { echo "# exit $rc"; diag_file "$TMP/$name.log" 5; }
    return $r
}

write_manifest "$TMP/unsigned.conf" 20 4
boot_refuses unsigned "$TMP/unsigned.conf" "is unsigned"
ok $? "unsigned manifest refused"
boot_refuses owner "$TMP/good.conf" "signed by owner" --owner "$OTHER"
ok $? "manifest of another owner refused"
cp "$TMP/good.conf" "$TMP/edited.conf"; cp "$TMP/good.conf.sig" "$TMP/edited.conf.sig"
sed -i 's/steps = 20/steps = 21/' "$TMP/edited.conf"
boot_refuses edited "$TMP/edited.conf" "bad signature"
ok $? "manifest edited after signing refused"
printf '[run]\nstages = 4\nthis is not ini\n' >"$TMP/malformed.conf"
boot_refuses malformed "$TMP/malformed.conf" "malformed.conf:3: "
ok $? "malformed manifest refused with file:line"
printf '[run]\nstages = 4\n\n[batch]\nsize = 0\n' >"$TMP/range.conf"
boot_refuses range "$TMP/range.conf" "range.conf:5: 'size' wants an integer in \[1, 65536\], got '0'"
ok $? "out-of-range value refused with file:line"
printf '[run]\nstages = 4\n[optim]\nlearning_rate = 1\n' >"$TMP/unknown.conf"
boot_refuses unknown "$TMP/unknown.conf" "unknown.conf:4: unknown key 'learning_rate'"
ok $? "unknown key refused with file:line"
printf '[model]\npreset = tiny\n[run]\nstages = 5\n' >"$TMP/stages.conf"
boot_refuses stages "$TMP/stages.conf" "run.stages"
ok $? "more stages than blocks refused"

start_boot "$TMP/good.conf" --owner "$OWNER"
timeout 20 "$SWARMD" join --peer "$BOOT" --stage 0 --owner "$OTHER" >"$TMP/join-owner.log" 2>&1
rc=$?
grep -q "not by the owner given with --owner" "$TMP/join-owner.log" && [ $rc -eq 3 ]
ok $? "a node refuses a run signed by another owner than --owner"

# another run (other seed: other run id) whose node tries to join this run's DHT
write_manifest "$TMP/other.conf" 20 4
sed -i 's/seed = 1337/seed = 7/' "$TMP/other.conf"
sign_manifest "$TMP/other.conf" "$TMP/other"
"$SWARMCTL" status --peer "$BOOT" --json >"$TMP/s1.json"
# a node of the other run asks our bootstrap's run transport for DHT nodes
OURS=$("$SWARMCTL" manifest --peer "$BOOT" | sed -n 's/^# bootstrap //p')
timeout 10 "$BUILD/tests/test_peers_foreign" "$OURS" "$TMP/other.conf" >"$TMP/foreign.log" 2>&1
rc=$?
diag_file "$TMP/foreign.log" 5
[ $rc -eq 0 ]
ok $? "a node of another run is ignored"
"$SWARMCTL" peers --peer "$BOOT" --json | "$PY" -c 'import json,sys; sys.exit(0 if json.load(sys.stdin) == [] else 1)'
ok $? "the DHT lists no foreign node"
