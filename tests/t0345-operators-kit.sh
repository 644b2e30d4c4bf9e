#!/bin/sh
# t0345: the operators' kit (contrib/).  A live swarm - a bootstrap, a node
# per stage, a keeper, and a late replica started from the example config of
# the systemd unit (swarmd join --config) - serves /metrics from every
# process, and every metric named in an expression of the Grafana dashboard
# is exported by one of them (check_grafana.py; a bogus name is caught).
# The late replica takes the config file's keys (its key, metrics, local
# saves) while the command line wins (--stage over the file's stage), and
# joins the run (copies its stage, trains).  A config file with an unknown
# key is refused with exit status 2 naming FILE:LINE.  The systemd unit runs
# swarmd join --config and does not restart on exit 2, 3 or 6.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..9"
SRC=${TEST_SRCDIR:-$(dirname "$0")}
KIT=$SRC/../contrib
CHECK="$PY $SRC/check_grafana.py"

$CHECK --self-test
ok $? "the PromQL reader finds the metric names of known expressions"

printf 'peer = tcp://127.0.0.1:1\n\n[join]\nthreads = 1\ntreads = 2\n' >"$TMP/bad.conf"
"$SWARMD" join --config "$TMP/bad.conf" >"$TMP/bad.log" 2>&1; rc=$?
diag_file "$TMP/bad.log" 2
[ $rc -eq 2 ] && grep -q "bad.conf:5: unknown key 'treads'" "$TMP/bad.log"
ok $? "swarmd join --config refuses an unknown key with exit 2 and FILE:LINE"

# swarmd.conf(5) lists the keys of each command: its options but --config
for cmd in bootstrap join keeper; do
    "$SWARMD" $cmd --help | sed -n 's/^  --\([a-z-]*\).*/\1/p' | grep -vx config >"$TMP/keys-$cmd"
done
"$PY" - "$SRC/../man/swarmd.conf.5" "$TMP" <<'EOT'
import re, sys
man = open(sys.argv[1]).read()
bad = 0
for cmd in ("bootstrap", "join", "keeper"):
    m = re.search(r"^\.Ss \\&\[%s\\&\]\n((?:\.Cm .*\n)+)" % cmd, man, re.M)
    listed = set(re.findall(r"[a-z][a-z-]*", m.group(1).replace(".Cm", ""))) if m else set()
    opts = set(open("%s/keys-%s" % (sys.argv[2], cmd)).read().split())
    if not opts or opts != listed:
        print("# [%s]: options not in swarmd.conf(5): %s; listed but no option: %s"
              % (cmd, sorted(opts - listed), sorted(listed - opts)))
        bad = 1
sys.exit(bad)
EOT
ok $? "swarmd.conf(5) lists each command's options as its keys"

unit=$KIT/systemd/swarmd@.service
grep -q '^ExecStart=.*/swarmd join --config /etc/swarm/%i\.conf$' "$unit" &&
    grep -q '^RestartPreventExitStatus=2 3 6$' "$unit" && grep -q '^Restart=on-failure$' "$unit" &&
    grep -q '^StateDirectory=swarm/%i$' "$unit"
ok $? "the systemd unit runs swarmd join --config and restarts on failure but not on 2, 3 or 6"

write_manifest "$TMP/run.conf" 100000 2 "[checkpoint]
every = 5"
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf" --metrics 127.0.0.1:0
start_swarm n 0 1 -- --metrics 127.0.0.1:0
admit keeper
start_bg "$TMP/keeper.log" "$SWARMD" keeper --peer "$BOOT" --dir "$TMP/ckpt" --keep 1 \
    --no-exit-at-end --metrics 127.0.0.1:0 $ADMIT_OPTS

# metric_ge PORT NAME MIN: the unlabelled sample NAME of a node's metrics is
# at least MIN (prints it)
metric_ge() {
    "$PY" - "$@" <<'EOT'
import re, sys, urllib.request
page = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode()
m = re.search(r"^%s (\S+)$" % re.escape(sys.argv[2]), page, re.M)
print(int(float(m.group(1))) if m else -1)
sys.exit(0 if m and float(m.group(1)) >= float(sys.argv[3]) else 1)
EOT
}
# port_of LOG: the metrics port a process logged, in swarmd's text or json
# log format (it waits up to 10 s for it)
port_of() {
    local p
    for _ in $(seq 100); do
        p=$(sed -n -e 's|.*metrics on http://[^ "]*:\([0-9]*\)/metrics.*|\1|p' \
            -e 's/.*"event":"metrics",.*"port":\([0-9]*\)[,}].*/\1/p' "$1" | head -n 1)
        if [ -n "$p" ]; then echo "$p"; return 0; fi
        sleep 0.1
    done
    return 1
}
port1=$(port_of "$LOG_1")
wait_for 60 metric_ge "$port1" swarm_node_step 3

# The late replica: the example config with its values pointed at this run
# (each key must be in the example already) and stage = 0, which --stage 1
# on the command line overrides; its certificate, for the key it will make.
"$SWARMCTL" admit --key "$OWNER_DIR" --manifest "$TMP/run.conf" \
    --node "$("$SWARMCTL" key --key "$TMP/key-1b")" -o "$TMP/1b.cert" >>"$TMP/admit.log" 2>&1
"$PY" - "$KIT/systemd/swarm-volunteer.conf" "$TMP/volunteer.conf" "peer=$BOOT" stage=0 \
    'listen=tcp://127.0.0.1:*' threads=1 "key=$TMP/key-1b" "cert=$TMP/1b.cert" \
    "ckpt-dir=$TMP/local-1b" \
    metrics=127.0.0.1:0 <<'EOT'
import re, sys
text = open(sys.argv[1]).read()
for kv in sys.argv[3:]:
    k, v = kv.split("=", 1)
    text, n = re.subn(r"(?m)^%s = .*$" % re.escape(k), lambda m: "%s = %s" % (k, v), text)
    if n != 1:
        sys.exit("# the example config has %d lines '%s = ...', want 1" % (n, k))
open(sys.argv[2], "w").write(text)
EOT
rc=$?
step0=$(metric_ge "$port1" swarm_node_step 0)
start_bg "$TMP/n1b.log" "$SWARMD" join --config "$TMP/volunteer.conf" --stage 1
P1b=$LAST_PID
port1b=$(port_of "$TMP/n1b.log")
[ $rc -eq 0 ] && [ -n "$port1b" ] && wait_for 60 metric_ge "$port1b" swarm_node_step $((step0 + 3)) &&
    metric_ge "$port1b" swarm_node_recoveries_total 1 >/dev/null && [ -f "$TMP/key-1b/node.key" ]
rc=$?
[ $rc -eq 0 ] || diag_file "$TMP/n1b.log"
ok $rc "a node started from the example config joins the run (a key in its key dir, a copy, steps)"

# scrape every process until each dashboard metric is exported (a recovery's
# metrics come once the replica copied its stage, the loss once steps ran)
: >"$TMP/ports"
for log in boot n0 n1 keeper n1b; do
    port=$(port_of "$TMP/$log.log")
    echo "$log $port" >>"$TMP/ports"
done
scrape() {
    local log port r=0
    while read -r log port; do
        metrics "$port" >"$TMP/m-$log.txt" 2>>"$TMP/scrape.err" || r=1
    done <"$TMP/ports"
    return $r
}
DASH=$KIT/grafana/swarm.json
M="$TMP/m-boot.txt $TMP/m-n0.txt $TMP/m-n1.txt $TMP/m-keeper.txt $TMP/m-n1b.txt"
found=1
for _ in $(seq 60); do
    if scrape && $CHECK "$DASH" $M >"$TMP/check.log" 2>&1; then found=0; break; fi
    sleep 1
done
sed 's/^\([^#]\)/# \1/' "$TMP/check.log"
[ $found -eq 0 ] || sed 's/^/# /' "$TMP/ports"
[ $found -eq 0 ]
ok $? "every metric of the Grafana dashboard is exported by the bootstrap, a node or the keeper"

grep -q '^swarm_node_stage 1$' "$TMP/m-n1b.txt" &&
    grep -q '^swarm_node_last_recovery_bytes{method="copy",' "$TMP/m-n1b.txt" &&
    grep -q '^swarm_info{run="[0-9a-f]*",role="node"} 1$' "$TMP/m-n1b.txt"
ok $? "the command line's --stage 1 won over the file's stage = 0; the node copied its stage"

"$PY" - "$DASH" "$TMP/bogus.json" <<'EOT'
import json, sys
d = json.load(open(sys.argv[1]))
p = dict(d["panels"][-1], id=9999, title="bogus")
p["targets"] = [dict(p["targets"][0], expr='sum by (instance) (rate(swarm_node_bogus_total[5m]))')]
d["panels"].append(p)
json.dump(d, open(sys.argv[2], "w"))
EOT
$CHECK "$TMP/bogus.json" $M >"$TMP/bogus.log" 2>&1; rc=$?
[ $rc -eq 1 ] && grep -q "panel 9999 'bogus'.*metric swarm_node_bogus_total is exported by none" \
    "$TMP/bogus.log" && [ "$(grep -c 'exported by none' "$TMP/bogus.log")" -eq 1 ]
ok $? "a dashboard expression over a metric no process exports fails, naming it"

"$SWARMD" join --config "$TMP/volunteer.conf" --stage 1 --bogus-option 1 >"$TMP/usage.log" 2>&1
[ $? -eq 2 ] && kill -0 "$P1b" && grep -q "unknown option '--bogus-option'" "$TMP/usage.log"
ok $? "a bad command-line option is still refused alongside --config"
