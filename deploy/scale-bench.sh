#!/usr/bin/env bash
# Throughput of 1 and 2 `fathom serve` replicas behind nginx (deploy/nginx, least_conn) on this
# machine, with `fathom bench load` (offline scenario: all requests queued at once) through the
# balancer. Replicas share the machine's cores: THREADS_TOTAL (default: all) split between them.
# usage: deploy/scale-bench.sh [REQUESTS] [CONCURRENCY]
#   MODEL=FILE.gguf to use a model already written, else SYNTH="fathom synth options" (default a
#   2-layer Qwen2-1.5B shape in q4_K: real matrix widths, minutes to write); FATHOM_BIN.
set -euo pipefail
source "$(dirname "$0")/testing/lib.sh"
deploy_init scale-bench
REQUESTS=${1:-64} CONCURRENCY=${2:-16}
THREADS_TOTAL=${THREADS_TOTAL:-$(nproc)}
SYNTH=${SYNTH:---arch qwen2 --preset 1.5b --layers 2 --type q4_K}
if [[ -z ${MODEL:-} ]]; then
  MODEL=$WORK/model.gguf
  # shellcheck disable=SC2086
  "$FATHOM" synth $SYNTH -o "$MODEL" >"$WORK/synth.log" 2>&1 || die "synth: $(cat "$WORK/synth.log")"
fi
echo "model: $MODEL ($(du -h "$MODEL" | cut -f1)); $REQUESTS requests, $CONCURRENCY in flight, prompt 64 and output 64 tokens"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-34s %10s %10s %10s %10s %8s\n' setup "tokens/s" "req/s" "TTFT p50" "TPOT p50" errors

run() {  # run LABEL REPLICAS THREADS_EACH PARALLEL_EACH
  local label=$1 n=$2 threads=$3 parallel=$4 ports=() i
  for ((i = 1; i <= n; i++)); do
    start_replica "r$i" 0 -m "$MODEL" -t "$threads" --parallel "$parallel" --max-queue 256
    wait_healthy "r$i"
    ports+=("${REPLICA_PORT[r$i]}")
  done
  local port
  port=$(free_port)
  rm -rf "$WORK/nginx"
  start_nginx "$port" "${ports[@]}"
  "$FATHOM" bench load --url "http://127.0.0.1:$port/v1" --scenario offline --requests "$REQUESTS" \
    --concurrency "$CONCURRENCY" --prompt-len 64 --output-len 64 --json -q >"$WORK/$n.json"
  python3 - "$WORK/$n.json" "$label" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t, lat = r["throughput"], r["latency_ms"]
print(f"{sys.argv[2]:<34} {t['output_tokens_per_s']:>10.1f} {t['requests_per_s']:>10.2f} "
      f"{lat['ttft']['p50']:>8.0f}ms {lat['tpot']['p50']:>8.1f}ms {r['requests']['errors']:>8}")
PY
  # Stop this setup's replicas and nginx before the next one.
  for ((i = 1; i <= n; i++)); do kill "${REPLICA_PID[r$i]}"; wait "${REPLICA_PID[r$i]}" || true; unset "REPLICA_PID[r$i]"; done
  for pid in $EXTRA_PIDS; do kill "$pid"; wait "$pid" 2>/dev/null || true; done
  EXTRA_PIDS=""
}

half=$(( THREADS_TOTAL / 2 > 0 ? THREADS_TOTAL / 2 : 1 ))
run "1 replica, $THREADS_TOTAL threads" 1 "$THREADS_TOTAL" "$CONCURRENCY"
# One replica with one replica's share of the threads: what each of the two below has.
run "1 replica, $half thread(s)" 1 "$half" "$CONCURRENCY"
run "2 replicas, $half thread(s) each" 2 "$half" $(( CONCURRENCY / 2 ))
