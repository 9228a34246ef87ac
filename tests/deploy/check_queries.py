#!/usr/bin/env python3
"""Checks every query of the Grafana dashboard and the Prometheus alert rules against a live
fathom deployment:
  - each metric a PromQL query names is exported by a live replica's /metrics (`up` excepted:
    Prometheus makes it for each target);
  - Prometheus (scraping the replicas) evaluates each query without error, and has samples of
    each metric named;
  - each audit-log field a Loki query reads (`unwrap F`, `by (F)`) is in a real audit-log line.
usage: check_queries.py DASHBOARD.json ALERTS.yml METRICS.txt AUDIT.jsonl PROMETHEUS_URL
"""
import json
import re
import sys
import urllib.parse
import urllib.request

import yaml

PROMETHEUS_OWN = {"up"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$instance": ".+"}


def metric_names(expr):
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names (inside {} or by/without/on/ignoring/group_x lists), strings or durations."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        if m.group() in KEYWORDS or e[m.end():].lstrip().startswith("("):
            continue
        names.add(m.group())
    return names


def substitute(expr):
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    return expr


def prometheus_query(base, expr):
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)


def main():
    dashboard_path, alerts_path, metrics_path, audit_path, prometheus = sys.argv[1:6]
    # The extractor finds what it should, so a misspelt metric cannot slip through it.
    assert metric_names('histogram_quantile(0.99, sum by (le) (rate(fathom_bogus_bucket{le="1"}[5m])))') \
        == {"fathom_bogus_bucket"}
    assert metric_names("a_total / (b + c) > 0.9 and deriv(d[10m]) > 0") == {"a_total", "b", "c", "d"}

    dashboard = json.load(open(dashboard_path))
    promql, logql = [], []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            kind = target.get("datasource", panel["datasource"])["type"]
            (promql if kind == "prometheus" else logql).append((f"panel '{panel['title']}'", target["expr"]))
    for var in dashboard["templating"]["list"]:
        inner = re.fullmatch(r"label_values\((.+),\s*\w+\)", var["query"]["query"]).group(1)
        promql.append((f"variable {var['name']}", inner))
    for group in yaml.safe_load(open(alerts_path))["groups"]:
        for rule in group["rules"]:
            promql.append((f"rule {rule.get('alert') or rule.get('record')}", rule["expr"]))

    exported = set()
    for line in open(metrics_path):
        if line.strip() and not line.startswith("#"):
            exported.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group())

    errors, named = [], set()
    for where, expr in promql:
        names = metric_names(substitute(expr))
        if not names:
            errors.append(f"{where}: no metric found in {expr!r}")
        for name in sorted(names - exported - PROMETHEUS_OWN):
            errors.append(f"{where}: {name} is not in the live /metrics")
        named |= names
        answer = prometheus_query(prometheus, substitute(expr))
        if answer.get("status") != "success":
            errors.append(f"{where}: Prometheus cannot evaluate {expr!r}: {answer.get('error')}")
    for name in sorted(named):
        answer = prometheus_query(prometheus, f"count({name})")
        if answer.get("status") != "success" or not answer["data"]["result"]:
            errors.append(f"{name}: Prometheus has no samples of it")

    audit_fields = set(json.loads(open(audit_path).readline()))
    for where, expr in logql:
        fields = set(re.findall(r"unwrap\s+(\w+)", expr))
        fields |= {f.strip() for group in re.findall(r"\bby\s*\(([^)]*)\)", expr) for f in group.split(",")}
        for field in sorted(fields - audit_fields):
            errors.append(f"{where}: audit-log field {field} does not exist (a line has {sorted(audit_fields)})")

    for e in errors:
        print("  " + e)
    print(f"{len(promql)} PromQL queries naming {len(named)} metrics ({', '.join(sorted(named))}): "
          f"each exported by /metrics and evaluated by Prometheus; {len(logql)} Loki queries over the "
          f"audit log's fields; {len(errors)} problems")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
