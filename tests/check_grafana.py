#!/usr/bin/env python3
"""check_grafana.py - a Grafana dashboard charts only metrics swarmd exports.

    check_grafana.py DASHBOARD.json METRICS.txt...   exit 0, or 1 naming each
                                                     missing metric and its panel
    check_grafana.py --names EXPR                    the metric names of EXPR
    check_grafana.py --self-test                     the PromQL reader on known cases

METRICS.txt are scrapes of /metrics (Prometheus text exposition) from the
processes of a live swarm; a name counts as exported when a sample line of
one of them has it.  The names an expression uses are what is left of its
PromQL once strings, label matchers ({...}), ranges ([...]), Grafana
variables ($x, ${x}, [[x]]), numbers and durations, label lists
(by/without/on/ignoring/group_left/group_right (...)), functions and
aggregations (an identifier before '(') and keywords are taken out.
Template variables' label_values(METRIC, label) and query_result(EXPR) count
as expressions too.  The dashboard's structure is checked as well: unique
panel ids, a title and a grid position on each panel, at least one target on
each non-row panel, and a datasource that is the ${datasource} variable.
"""
import json
import re
import sys

AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
            "and", "or", "unless", "atan2", "inf", "nan", "start", "end"}
LABEL_LISTS = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)"
TOKEN = re.compile(r"[0-9][0-9A-Za-z_.]*|[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?")


def metric_names(expr):
    """The metric names an expression uses, as a sorted list."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', " ", expr)  # strings
    e = re.sub(r"\$\{[^}]*\}|\[\[[^\]]*\]\]|\$[A-Za-z_]\w*", " ", e)      # Grafana variables
    e = re.sub(r"\{[^{}]*\}", " ", e)                                     # label matchers
    e = re.sub(r"\[[^\[\]]*\]", " ", e)                                   # ranges, subqueries
    e = re.sub(LABEL_LISTS, " ", e)
    names = set()
    for m in TOKEN.finditer(e):
        tok = m.group(0)
        if tok[0].isdigit() or m.group(1):     # a number or duration; a function's name
            continue
        if tok in KEYWORDS or tok in AGGREGATIONS:
            continue
        names.add(tok)
    return sorted(names)


def variable_exprs(var):
    """PromQL expressions in a template variable's query."""
    q = var.get("query", "")
    if isinstance(q, dict):
        q = q.get("query", "")
    if not isinstance(q, str) or var.get("type") != "query":
        return []
    m = re.match(r"\s*label_values\((.*),\s*[A-Za-z_]\w*\s*\)\s*$", q)
    if m:
        return [m.group(1)]
    m = re.match(r"\s*(?:query_result|metrics)\((.*)\)\s*$", q)
    if m:
        return [m.group(1)]
    return []


def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))


def exprs(dash, problems):
    """(where, expr) of every PromQL expression of the dashboard; structural
    problems are appended to problems."""
    out, ids = [], set()
    for p in walk(dash.get("panels", [])):
        title = p.get("title", "")
        where = "panel %s '%s'" % (p.get("id"), title)
        if not title or "gridPos" not in p:
            problems.append("%s: no title or no gridPos" % where)
        if p.get("id") in ids:
            problems.append("%s: id used twice" % where)
        ids.add(p.get("id"))
        if p.get("type") == "row":
            continue
        ts = p.get("targets", [])
        if not ts:
            problems.append("%s: no targets" % where)
        for t in [p] + ts:
            ds = t.get("datasource")
            if ds is not None and (ds.get("type") != "prometheus" or ds.get("uid") != "${datasource}"):
                problems.append("%s: datasource %s is not the ${datasource} variable" % (where, ds))
        for t in ts:
            if not t.get("expr", "").strip():
                problems.append("%s: target %s has no expr" % (where, t.get("refId")))
            else:
                out.append((where, t["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        for e in variable_exprs(v):
            out.append(("variable '%s'" % v.get("name"), e))
    return out


def exported(paths):
    names = set()
    for path in paths:
        for line in open(path, errors="replace"):
            m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)[{ ]", line)
            if m and not line.startswith("#"):
                names.add(m.group(1))
    return names


def check(dash_path, metric_paths):
    try:
        dash = json.load(open(dash_path))
    except ValueError as err:
        print("# %s: not JSON: %s" % (dash_path, err))
        return 1
    problems = []
    have = exported(metric_paths)
    used = set()
    es = exprs(dash, problems)
    if not es:
        problems.append("no expressions at all")
    for where, e in es:
        names = metric_names(e)
        if not names and not where.startswith("variable"):
            problems.append("%s: '%s' uses no metric" % (where, e))
        for n in names:
            used.add(n)
            if n not in have:
                problems.append("%s: '%s': metric %s is exported by none of the processes"
                                % (where, e, n))
    for p in problems:
        print("# " + p)
    print("# %d expressions, %d metric names used, %d exported; exported but not charted: %s"
          % (len(es), len(used), len(have), " ".join(sorted(have - used)) or "none"))
    return 1 if problems else 0


SELF_TEST = [
    ('swarm_run_step', ["swarm_run_step"]),
    ('max(swarm_run_step{job=~"$job", instance=~"$instance"})', ["swarm_run_step"]),
    ('sum by (reason) (rate(swarm_wire_dropped_total{job="a"}[$__rate_interval]))',
     ["swarm_wire_dropped_total"]),
    ('sum(rate(a_total[5m])) by (instance) / on (instance) group_left(stage) b_info',
     ["a_total", "b_info"]),
    ('count(swarm_stage_nodes == 0) or vector(0)', ["swarm_stage_nodes"]),
    ('histogram_quantile(0.9, sum by (le) (rate(x_bucket[1m]))) > 1e3 and y offset 5m',
     ["x_bucket", "y"]),
    ('label_replace(up_ish, "dst", "$1", "src", "(.*)") * ${scale}', ["up_ish"]),
    ('topk(3, swarm_bogus_metric)', ["swarm_bogus_metric"]),
    ('max_over_time(deriv(q:rate5m[10m:1m])[1h:])', ["q:rate5m"]),
]


def self_test():
    bad = 0
    for e, want in SELF_TEST:
        got = metric_names(e)
        if got != want:
            print("# %s: got %s, want %s" % (e, got, want))
            bad = 1
    q = variable_exprs({"type": "query", "query": {"query": 'label_values(swarm_info{job=~"$job"}, instance)'}})
    if [n for e in q for n in metric_names(e)] != ["swarm_info"]:
        print("# label_values: got %s" % q)
        bad = 1
    return bad


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "--self-test":
        sys.exit(self_test())
    if len(sys.argv) == 3 and sys.argv[1] == "--names":
        print(" ".join(metric_names(sys.argv[2])))
        sys.exit(0)
    if len(sys.argv) < 3:
        print(__doc__.split("\n\n")[1])
        sys.exit(2)
    sys.exit(check(sys.argv[1], sys.argv[2:]))
