#!/bin/sh
# t0412: --advertise and IPv6 endpoints on loopback (issue 14, items 1 and
# 4).  A run on [::1]: the bootstrap and a node bind IPv6 endpoints, the
# node joins and is "reachable at tcp://[::1]:P".  A run on 127.0.0.1: a
# node whose --advertise
# names 127.0.0.1 with a port of its choosing is known by that endpoint
# (swarmctl status --json lists it) and is reachable there; a node whose
# --advertise names another host (127.0.0.2, where nothing of it listens)
# is told it was seen from 127.0.0.1 and is not reachable; bad --advertise
# values exit 2 with the reason.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..5"

watchdog 120

bad=0
for a in "tcp://example.org:7000" "tcp://127.0.0.1" "tcp://127.0.0.1:0" "tcp://127.0.0.1:70000" \
         "udp://127.0.0.1:7000" "tcp://[::1:7000" "tcp://::1:7000"; do
    "$SWARMD" join --peer tcp://127.0.0.1:1 --advertise "$a" >"$TMP/bad.log" 2>&1
    rc=$?
    grep -q -- "--advertise: want" "$TMP/bad.log" && [ $rc -eq 2 ] || { bad=1; echo "# '$a': rc $rc"; diag_file "$TMP/bad.log" 3; }
done
[ $bad -eq 0 ]
ok $? "a bad --advertise (a name, no port, port 0 or out of range, not tcp, broken IPv6) exits 2 with the reason"

# verdict LOG: the reachability line of a node's LOG, once it is there
verdict() { msgs "$1" | grep -E "^(info|warn): (reachable at|not reachable|reachability unknown)"; }

write_manifest "$TMP/run.conf" 100000 2
sign_manifest "$TMP/run.conf"
RUN_FILE=$TMP/run.conf
admit boot
start_bg "$TMP/boot.log" "$SWARMD" bootstrap --run "$TMP/run.conf" --listen 'tcp://[::1]:*' \
    --log-format json $ADMIT_OPTS
boot_endpoint "$TMP/boot.log"
echo "# bootstrap: $BOOT"
start_node "$TMP/n0.log" 0 --listen 'tcp://[::1]:*'
wait_for 30 verdict "$TMP/n0.log"
v0=$(verdict "$TMP/n0.log")
echo "# n0: $v0"
case $BOOT in "tcp://[::1]:"*) ;; *) BOOT="" ;; esac
[ -n "$BOOT" ] && echo "$v0" | grep -Eq '^info: reachable at tcp://\[::1\]:[0-9]+$'
ok $? "on IPv6 loopback a node joins, and is reachable at its tcp://[::1]:PORT"

# an IPv4 run: a port of its own choosing, advertised as 127.0.0.1 (the
# run transport binds it)
write_manifest "$TMP/run4.conf" 100000 2
sign_manifest "$TMP/run4.conf"
start_boot "$TMP/run4.conf"
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_node "$TMP/n1.log" 1 --listen 'tcp://127.0.0.1:*' --advertise "tcp://127.0.0.1:$PORT"
wait_for 30 verdict "$TMP/n1.log"
v1=$(verdict "$TMP/n1.log")
echo "# n1: $v1"
[ "$v1" = "info: reachable at tcp://127.0.0.1:$PORT" ]
ok $? "a node with --advertise tcp://127.0.0.1:$PORT is reachable there"

ok_status() {
    "$SWARMCTL" status --peer "$BOOT" --json >"$TMP/status.json" 2>/dev/null
    "$PY" - "$TMP/status.json" "tcp://127.0.0.1:$PORT" <<'EOT'
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if any(p["endpoint"] == sys.argv[2] and p.get("reach") == "reachable"
                  for p in d["peers"]) else 1)
EOT
}
wait_for 20 ok_status
ok $? "its stage record names the advertised endpoint, and swarmctl status says reachable"

# another host than the one it connects from: not dialled, told why
start_node "$TMP/n2.log" 1 --listen 'tcp://127.0.0.1:*' --advertise 'tcp://127.0.0.2:*'
wait_for 30 verdict "$TMP/n2.log"
v2=$(verdict "$TMP/n2.log")
echo "# n2: $v2"
echo "$v2" | grep -Fq "warn: not reachable from the internet at tcp://127.0.0.2:" &&
    echo "$v2" | grep -Fq "(seen from 127.0.0.1, not the advertised host)" &&
    echo "$v2" | grep -Fq -- "--advertise tcp://127.0.0.1:PORT"
ok $? "a node advertising another host is told it was seen from 127.0.0.1 and is not reachable"
