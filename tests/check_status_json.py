#!/usr/bin/env python3
"""Validate `swarmctl status --json` against the schema documented in swarmctl(1).

usage: check_status_json.py FILE [EXPECTED_HEALTH]
"""
import json
import sys

HEX64 = set("0123456789abcdef")


def fail(msg):
    print("# schema: " + msg)
    sys.exit(1)


def want(obj, key, types, nullable=False):
    if key not in obj:
        fail("missing key %r" % key)
    v = obj[key]
    if v is None and nullable:
        return v
    if isinstance(v, bool) and bool not in types:
        fail("%r: bool where %s wanted" % (key, types))
    if not isinstance(v, types):
        fail("%r: %r is not %s" % (key, v, types))
    return v


def main():
    d = json.load(open(sys.argv[1]))
    num = (int, float)
    if want(d, "version", (int,)) != 1:
        fail("version is not 1")
    run = want(d, "run", (dict,))
    rid = want(run, "id", (str,))
    if len(rid) != 64 or set(rid) - HEX64:
        fail("run.id is not 64 hex digits")
    want(run, "name", (str,))
    owner = want(run, "owner", (str,))
    if len(owner) != 64 or set(owner) - HEX64:
        fail("run.owner is not 64 hex digits")
    S = want(run, "stages", (int,))
    steps = want(run, "steps", (int,))
    step = want(run, "step", (int,))
    want(run, "loss", num, nullable=True)
    want(run, "tokens_per_s", num)
    want(run, "nodes", (int,))
    unproven = want(run, "unproven", (int,))
    health = want(run, "health", (str,))
    if health not in ("healthy", "degraded"):
        fail("run.health %r" % health)
    finished = want(run, "finished", (bool,))
    if want(run, "state", (str,)) != ("finished" if finished else "running"):
        fail("run.state %r with finished %r" % (run["state"], finished))
    unanswered = want(run, "unanswered", (int,))
    want(run, "bootstrap", (str,))
    if not 0 <= step <= steps:
        fail("run.step out of range")
    stages = want(d, "stages", (list,))
    if len(stages) != S:
        fail("%d stage rows for %d stages" % (len(stages), S))
    bott = 0
    for i, s in enumerate(stages):
        if want(s, "stage", (int,)) != i:
            fail("stage rows out of order")
        n = want(s, "nodes", (int,))
        st = want(s, "state", (str,))
        if st not in ("ok", "empty", "stalled", "syncing", "done", "unknown"):
            fail("stage state %r" % st)
        if (n == 0) != (st in ("empty", "unknown") or (st == "done" and n == 0)):
            fail("stage %d: %d nodes but state %r" % (i, n, st))
        if want(s, "unproven", (int,)) < 0:
            fail("stage %d: negative unproven" % i)
        unproven -= s["unproven"]
        want(s, "step", (int,), nullable=(n == 0))
        want(s, "loss", num, nullable=True)
        want(s, "tokens_per_s", num)
        want(s, "capacity", num)
        want(s, "last_heard_s", num, nullable=(n == 0))
        want(s, "recoveries", (int,))
        bott += want(s, "bottleneck", (bool,))
        answered = want(s, "answered", (bool,))
        if st == "unknown" and answered:
            fail("stage %d unknown but answered" % i)
        unanswered -= st == "unknown"
    if bott > 1:
        fail("more than one bottleneck")
    if unproven != 0:
        fail("run.unproven is not the sum of the stages'")
    if unanswered != 0:
        fail("run.unanswered is not the count of unknown stages")
    peers = want(d, "peers", (list,))
    for p in peers:
        k = want(p, "key", (str,))
        if len(k) != 64 or set(k) - HEX64:
            fail("peer key")
        want(p, "endpoint", (str,))
        want(p, "proven", (bool,))
        if not 0 <= want(p, "stage", (int,)) < S:
            fail("peer stage")
        if want(p, "state", (str,)) not in ("syncing", "training", "leaving", "done", "joining"):
            fail("peer state")
        want(p, "step", (int,))
        want(p, "loss", num, nullable=True)
        want(p, "tokens_per_s", num)
        want(p, "capacity", num)
        want(p, "grad_norm", num)
        want(p, "hash", (str,))
        want(p, "last_heard_s", num)
        nrec = want(p, "recoveries", (int,))
        if want(p, "reach", (str,), nullable=True) not in (None, "unknown", "reachable",
                                                            "unreachable"):
            fail("peer reach")
        if p.get("mode", "direct") not in ("direct", "outbound-only"):
            fail("peer mode")
        relay = p.get("relay")
        if relay is not None and (not isinstance(relay, str) or not relay.startswith("tcp://")
                                  or p.get("mode") != "outbound-only"):
            fail("peer relay %r" % (relay,))
        lr = want(p, "last_recovery", (dict,), nullable=True)
        if lr is not None:
            if set(lr) != {"method", "from", "bytes", "seconds"}:
                fail("last_recovery keys %r" % sorted(lr))
            m = want(lr, "method", (str,))
            if not 0 < len(m) < 16 or not all("!" <= ch <= "~" for ch in m):
                fail("last_recovery.method %r" % m)
            f = want(lr, "from", (str,))
            if not 0 < len(f) < 128 or not all("!" <= ch <= "~" for ch in f):
                fail("last_recovery.from %r" % f)
            if want(lr, "bytes", (int,)) < 0 or want(lr, "seconds", num) < 0:
                fail("last_recovery: negative bytes or seconds")
            if nrec < 1:
                fail("a last_recovery but no recoveries")
    if len(sys.argv) > 2 and health != sys.argv[2]:
        fail("health %r, want %r" % (health, sys.argv[2]))
    print("# status JSON valid: %d stages, %d peers, step %d, health %s" % (S, len(peers), step, health))


main()
