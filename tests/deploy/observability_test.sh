#!/usr/bin/env bash
# The shipped Prometheus configuration and rules (deploy/prometheus) and Grafana dashboard
# (deploy/grafana) against two live `fathom serve` replicas:
#   promtool check config / check rules / test rules on the shipped files;
#   promtool check metrics on each replica's live /metrics;
#   the real Prometheus, with the shipped scrape configuration (targets replaced), scrapes both
#   replicas until both targets are up and loads the rules;
#   every dashboard and rule query names only exported metrics and evaluates (check_queries.py).
set -euo pipefail
TESTS_DIR=$(cd "$(dirname "$0")" && pwd)
source "$TESTS_DIR/../../deploy/testing/lib.sh"
deploy_init observability
PROM_DIR=$DEPLOY_DIR/prometheus
for tool in prometheus promtool; do
  command -v $tool >/dev/null || die "$tool not found: scripts/install-deps.sh installs Debian's prometheus"
done

echo "== promtool on the shipped files"
promtool check config "$PROM_DIR/prometheus.yml"
promtool check rules "$PROM_DIR/alerts.yml"
(cd "$PROM_DIR" && promtool test rules alerts_test.yml)

"$FATHOM" synth --arch llama --preset tiny -o "$WORK/tiny.gguf" >"$WORK/synth.log" 2>&1 || die "synth: $(cat "$WORK/synth.log")"
for r in a b; do
  start_replica $r 0 -m "$WORK/tiny.gguf" -t 1 --api-key test-key --audit-log "$WORK/audit-$r.jsonl"
done
wait_healthy a
wait_healthy b
# Traffic, so that the histograms, the per-status counters and the audit log have samples.
python3 "$DEPLOY_DIR/testing/stream_load.py" conversation --url "http://127.0.0.1:${REPLICA_PORT[a]}" \
  --api-key test-key --conversation c1 --turns 3 --max-tokens 8 >/dev/null
python3 "$DEPLOY_DIR/testing/stream_load.py" conversation --url "http://127.0.0.1:${REPLICA_PORT[b]}" \
  --api-key test-key --conversation c2 --turns 1 --max-tokens 8 >/dev/null

echo "== promtool check metrics on the live /metrics"
for r in a b; do
  metrics "${REPLICA_PORT[$r]}" >"$WORK/metrics-$r.txt"
  problems=$(promtool check metrics <"$WORK/metrics-$r.txt" 2>&1) || die "promtool check metrics, replica $r: $problems"
  [[ -z $problems ]] || die "promtool check metrics, replica $r: $problems"
  echo "replica $r: $(grep -c '^# TYPE' "$WORK/metrics-$r.txt") metrics, no problems"
done

echo "== Prometheus scrapes both replicas with the shipped configuration"
mkdir -p "$WORK/prometheus"
cp "$PROM_DIR/alerts.yml" "$WORK/prometheus/"
python3 - "$PROM_DIR/prometheus.yml" "$WORK/prometheus/prometheus.yml" "${REPLICA_PORT[a]}" "${REPLICA_PORT[b]}" <<'PY'
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
# Only the targets (compose service names) and the intervals (seconds, not a test's minute) change.
config["global"].update(scrape_interval="1s", evaluation_interval="1s")
job = next(j for j in config["scrape_configs"] if j["job_name"] == "fathom")
job["scrape_timeout"] = "1s"
job["static_configs"] = [{"targets": [f"127.0.0.1:{p}" for p in sys.argv[3:5]]}]
yaml.safe_dump(config, open(sys.argv[2], "w"))
PY
promtool check config "$WORK/prometheus/prometheus.yml" >/dev/null
PROM_PORT=$(free_port)
prometheus --config.file="$WORK/prometheus/prometheus.yml" --storage.tsdb.path="$WORK/prometheus/data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus/log" 2>&1 &
EXTRA_PIDS+=" $!"
PROM=http://127.0.0.1:$PROM_PORT
python3 - "$PROM" <<'PY' || die "Prometheus targets not up: $(tail -5 "$WORK/prometheus/log")"
import json, sys, time, urllib.request
deadline = time.monotonic() + 30
while True:
    try:
        targets = json.load(urllib.request.urlopen(sys.argv[1] + "/api/v1/targets", timeout=2))["data"]["activeTargets"]
        rules = json.load(urllib.request.urlopen(sys.argv[1] + "/api/v1/rules", timeout=2))["data"]["groups"]
    except OSError:
        targets, rules = [], []
    up = [t for t in targets if t["health"] == "up"]
    # Three scrapes at least, so that rate() over the samples has something to work with.
    if len(up) == 2 and len(targets) == 2 and rules and all(r["health"] == "ok" for g in rules for r in g["rules"]):
        time.sleep(2)
        print(f"targets up: {', '.join(t['scrapeUrl'] for t in up)}; "
              f"{sum(len(g['rules']) for g in rules)} rules loaded and evaluated without error")
        break
    if time.monotonic() > deadline:
        sys.exit(f"targets: {[(t['scrapeUrl'], t['health'], t.get('lastError')) for t in targets]}")
    time.sleep(0.2)
PY

echo "== every dashboard and rule query against the live deployment"
cat "$WORK/metrics-a.txt" "$WORK/metrics-b.txt" >"$WORK/metrics.txt"
python3 "$TESTS_DIR/check_queries.py" "$DEPLOY_DIR/grafana/dashboards/fathom.json" "$PROM_DIR/alerts.yml" \
  "$WORK/metrics.txt" "$WORK/audit-a.jsonl" "$PROM"
echo "observability: PASS in $SECONDS s"
