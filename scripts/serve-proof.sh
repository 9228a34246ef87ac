#!/usr/bin/env bash
# Serving proofs of `fathom serve` on one model (docs/benchmarks.md, "Serving"):
#   (a) aggregate generated tokens/s with 8 concurrent streams vs 1 stream (fathom bench load);
#   (b) time to first token of a request whose PREFIX_LEN-token prefix is in the prefix cache
#       (same prefix, different tail) vs the first request with that prefix (miss);
#   (c) the same hit after a restart with --kv-persist (the cache saved at SIGTERM, restored).
# TTFT is the time of a max_tokens=1 non-streaming request: prefill plus one sampled token.
#
# usage: scripts/serve-proof.sh [MODEL.gguf]     (default /tmp/models/qwen2-1.5b-q4_0.gguf;
#        synthesized when missing). Environment: FATHOM (binary, default build/bin/fathom),
#        THREADS (2), OUT_LEN (64), PROMPT_LEN (16 words), PREFIX_LEN (1000), ROUNDS (3).
set -euo pipefail

FATHOM=${FATHOM:-build/bin/fathom}
MODEL=${1:-/tmp/models/qwen2-1.5b-q4_0.gguf}
THREADS=${THREADS:-2}
OUT_LEN=${OUT_LEN:-64}
PROMPT_LEN=${PROMPT_LEN:-16}
PREFIX_LEN=${PREFIX_LEN:-1000}
ROUNDS=${ROUNDS:-3}
CTX=$(( (PREFIX_LEN + 64 + 15) / 16 * 16 ))

if [[ ! -f $MODEL ]]; then
  mkdir -p "$(dirname "$MODEL")"
  "$FATHOM" synth --arch qwen2 --preset 1.5b --type q4_0 -o "$MODEL"
fi

work=$(mktemp -d)
server_pid=
stop_server() {
  if [[ -n $server_pid ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
trap 'stop_server; rm -rf "$work"' EXIT

# start_server EXTRA_ARGS...: starts fathom serve on a free port, sets $url once it is ready.
start_server() {
  : >"$work/stdout"
  "$FATHOM" serve -m "$MODEL" -t "$THREADS" --port 0 --parallel 8 -c "$CTX" --temp 0 "$@" \
    >"$work/stdout" 2>>"$work/stderr" &
  server_pid=$!
  url=
  for _ in $(seq 1 600); do
    url=$(sed -n 's/^fathom serve: listening on //p' "$work/stdout")
    [[ -n $url ]] && curl -sf "$url/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "serve-proof: the server did not become ready; its log:" >&2
  cat "$work/stderr" >&2
  exit 1
}

# ttft PREFIX_SEED TAIL_SEED: seconds for a max_tokens=1 completion of PREFIX_LEN token ids drawn
# with PREFIX_SEED followed by 8 drawn with TAIL_SEED.
ttft() {
  python3 - "$1" "$2" "$PREFIX_LEN" >"$work/body.json" <<'EOF'
import json, random, sys
prefix_seed, tail_seed, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
prefix = random.Random(prefix_seed).sample(range(1000, 150000), n)
tail = random.Random(10**6 + tail_seed).sample(range(1000, 150000), 8)
print(json.dumps({"prompt": prefix + tail, "max_tokens": 1}))
EOF
  curl -sf -o /dev/null -w '%{time_total}\n' -H 'Content-Type: application/json' \
    --data-binary @"$work/body.json" "$url/v1/completions"
}

metric() { curl -sf "$url/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "model: $MODEL, threads: $THREADS, fathom: $FATHOM"
start_server --kv-persist "$work/kv"

# Warm-up: the first request faults the weights in from the page cache.
"$FATHOM" bench load --url "$url/v1" --scenario single-stream --requests 1 --prompt-len "$PROMPT_LEN" \
  --output-len 8 --seed 1 -q --json >/dev/null

# (a) one stream, then eight at once; prompts differ from run to run (seeds), so no prefix hits.
"$FATHOM" bench load --url "$url/v1" --scenario single-stream --requests 2 --prompt-len "$PROMPT_LEN" \
  --output-len "$OUT_LEN" --seed 2 -q --json >"$work/single.json"
"$FATHOM" bench load --url "$url/v1" --scenario offline --concurrency 8 --requests 8 --prompt-len "$PROMPT_LEN" \
  --output-len "$OUT_LEN" --seed 3 -q --json >"$work/multi.json"
single=$(jq '.throughput.output_tokens_per_s' "$work/single.json")
multi=$(jq '.throughput.output_tokens_per_s' "$work/multi.json")
echo "(a) generated tok/s: 1 stream $(printf %.2f "$single"), 8 streams $(printf %.2f "$multi")" \
  "(TPOT p50 $(jq '.latency_ms.tpot.p50 | round' "$work/single.json") ms vs $(jq '.latency_ms.tpot.p50 | round' "$work/multi.json") ms)" \
  "-> $(awk -v a="$multi" -v b="$single" 'BEGIN { printf "%.2f", a / b }')x"

# (b) per round: a new prefix (miss), then the same prefix with another tail (hit).
: >"$work/miss" ; : >"$work/hit"
for r in $(seq 1 "$ROUNDS"); do
  ttft "$((100 + r))" 1 >>"$work/miss"
  ttft "$((100 + r))" 2 >>"$work/hit"
done
miss=$(median <"$work/miss")
hit=$(median <"$work/hit")
echo "(b) TTFT of a $PREFIX_LEN-token prefix, median of $ROUNDS: miss $(printf %.3f "$miss") s, hit $(printf %.3f "$hit") s" \
  "-> $(awk -v a="$miss" -v b="$hit" 'BEGIN { printf "%.1f", a / b }')x (hit rate $(metric fathom_prefix_cache_hit_rate))"

# (c) restart with the cache saved at SIGTERM: round 1's prefix, a third tail.
stop_server
start_server --kv-persist "$work/kv"
restored=$(metric fathom_prefix_cache_restored_blocks)
# Warm-up again (page faults, lazy weight repacking), with a prompt unrelated to round 1's prefix.
"$FATHOM" bench load --url "$url/v1" --scenario single-stream --requests 1 --prompt-len "$PROMPT_LEN" \
  --output-len 8 --seed 4 -q --json >/dev/null
after=$(ttft 101 3)
echo "(c) after a restart with --kv-persist: $restored blocks restored; TTFT $(printf %.3f "$after") s" \
  "-> $(awk -v a="$miss" -v b="$after" 'BEGIN { printf "%.1f", a / b }')x faster than the miss"
grep -h "prefix cache:" "$work/stderr" | sed 's/^/    /'
