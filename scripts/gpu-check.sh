#!/usr/bin/env bash
# The prepared run for a lent GPU machine (the `device` tool: about 15 minutes of device time per
# session, all tries together). Runs what scripts/gpu-kit.sh built here, in priority order:
#   tests   the CUDA (and OpenCL, through the NVIDIA ICD if one is registered) device tests;
#   bench   the 7B-shape (DeepSeek-R1-Distill-Qwen-7B) Q4_0 synth model: pp512 and tg128 on the
#           GPU, with the GPU's measured copy bandwidth and f16 GEMM peak (issue 7's targets),
#           and tg32 with every op read back (FATHOM_CUDA_SYNC_OPS=1) and without CUDA graphs
#           (FATHOM_CUDA_GRAPHS=0), for what residency and graphs each bring;
#   serve   aggregate tok/s of 64 concurrent streams vs 1 through `fathom serve` on that model;
#   hybrid  V2-Lite shape Q4_K: tg on the CPU, all on the GPU, and with --cpu-moe.
# Each step has its own time limit and writes to $OUT (summary.txt first); a failing step does
# not stop the next.
#
# usage (device tool): run(command="OUT=$OUT scripts/gpu-check.sh", carry=[".gpu-kit"], timeout_s=600)
# Environment: STEPS (tests,bench,serve,hybrid), THREADS (nproc); DENSE_PRESET (7b) and
# MOE_PRESET (v2-lite) pick smaller synth shapes for a dry run without a GPU (small, tiny).
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-/tmp/gpu-check}
STEPS=${STEPS:-tests,bench,serve,hybrid}
THREADS=${THREADS:-$(nproc)}
DENSE_PRESET=${DENSE_PRESET:-7b}
MOE_PRESET=${MOE_PRESET:-v2-lite}
KIT=$PWD/.gpu-kit
F=$KIT/bin/fathom
mkdir -p "$OUT"
summary=$OUT/summary.txt
: >"$summary"
say() { echo "$*" | tee -a "$summary"; }
step() { [[ ",$STEPS," == *",$1,"* ]]; }

[[ -x $F ]] || { say "no $F: run scripts/gpu-kit.sh on the development machine and carry .gpu-kit"; exit 1; }
# cuBLAS from the machine's CUDA toolkit or PyTorch's wheel; the kit's own libraries first.
cublas_dir=$(python3 -c 'import nvidia.cublas, os; print(os.path.join(os.path.dirname(nvidia.cublas.__file__), "lib"))' 2>/dev/null || true)
export LD_LIBRARY_PATH="$KIT/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${cublas_dir}:${LD_LIBRARY_PATH:-}"
# The NVIDIA OpenCL driver, if the image has it but no ICD file names it.
if [[ ! -d /etc/OpenCL/vendors ]] && ls /usr/local/nvidia/lib64/libnvidia-opencl.so.1 >/dev/null 2>&1; then
  mkdir -p "$OUT/icd" && echo /usr/local/nvidia/lib64/libnvidia-opencl.so.1 >"$OUT/icd/nvidia.icd"
  export OCL_ICD_VENDORS=$OUT/icd
fi

say "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1 || true); $(nproc) CPUs"
"$F" devices >"$OUT/devices.txt" 2>&1
sed -n '/^cuda/p;/^opencl/p;/^backend/p' "$OUT/devices.txt" | tee -a "$summary"

if step tests; then
  mkdir -p "$(cat "$KIT/test-tmp-path")"
  for t in test_cuda test_opencl; do
    [[ -x $KIT/bin/$t ]] || continue
    timeout 240 "$KIT/bin/$t" >"$OUT/$t.log" 2>&1
    say "== $t: exit $? ($(grep -E '^\[  (PASSED|FAILED|SKIPPED) *\] [0-9]+ test' "$OUT/$t.log" | tr '\n' ' '))"
    grep -E '^\[  FAILED  \] [A-Za-z]' "$OUT/$t.log" | head -20 | tee -a "$summary"
    grep -E '^\[ nmse' "$OUT/$t.log" | sort | uniq -c | sort -rn | head -5 >>"$summary"
  done
fi

M7=/tmp/gpu-check-qwen2-$DENSE_PRESET-q4_0.gguf
if step bench || step serve; then
  [[ -f $M7 ]] || timeout 180 "$F" synth --arch qwen2 --preset "$DENSE_PRESET" --type q4_0 -q -t "$THREADS" -o "$M7" >>"$OUT/synth.log" 2>&1
fi
if step bench && [[ -f $M7 ]]; then
  timeout 180 "$F" bench -m "$M7" -t "$THREADS" --device cuda -p 512 -n 128 -r 3 >"$OUT/bench-7b.txt" 2>&1
  say "== bench qwen2 $DENSE_PRESET Q4_0 on cuda: exit $?"
  grep -E '^backend|^(pp|tg)[0-9]|^gpu|^bandwidth|runs the matrix' "$OUT/bench-7b.txt" | tee -a "$summary"
  # The same decode with every op's outputs read back at once (no activation residency), for the ratio.
  FATHOM_CUDA_SYNC_OPS=1 timeout 60 "$F" bench -m "$M7" -t "$THREADS" --device cuda -p 0 -n 32 -r 1 >"$OUT/bench-7b-sync-ops.txt" 2>&1
  say "== the same, FATHOM_CUDA_SYNC_OPS=1: $(grep -E '^tg' "$OUT/bench-7b-sync-ops.txt" || tail -1 "$OUT/bench-7b-sync-ops.txt")"
  FATHOM_CUDA_GRAPHS=0 timeout 60 "$F" bench -m "$M7" -t "$THREADS" --device cuda -p 0 -n 32 -r 1 >"$OUT/bench-7b-no-graphs.txt" 2>&1
  say "== the same, FATHOM_CUDA_GRAPHS=0: $(grep -E '^tg' "$OUT/bench-7b-no-graphs.txt" || tail -1 "$OUT/bench-7b-no-graphs.txt")"
fi

if step serve && [[ -f $M7 ]]; then
  "$F" serve -m "$M7" -t "$THREADS" --device cuda --port 0 --parallel 64 -c 512 --temp 0 >"$OUT/serve.out" 2>"$OUT/serve.err" &
  pid=$!
  url=
  for _ in $(seq 1 300); do
    url=$(sed -n 's/^fathom serve: listening on //p' "$OUT/serve.out")
    [[ -n $url ]] && "$F" bench load --url "$url/v1" --scenario single-stream --requests 1 --prompt-len 16 --output-len 4 -q --json \
      >/dev/null 2>&1 && break
    url=
    sleep 0.5
  done
  if [[ -n $url ]]; then
    timeout 120 "$F" bench load --url "$url/v1" --scenario single-stream --requests 2 --prompt-len 16 --output-len 128 --seed 2 -q \
      --json >"$OUT/serve-1.json" 2>>"$OUT/serve.err"
    timeout 120 "$F" bench load --url "$url/v1" --scenario offline --concurrency 64 --requests 64 --prompt-len 16 --output-len 128 \
      --seed 3 -q --json >"$OUT/serve-64.json" 2>>"$OUT/serve.err"
    python3 - "$OUT/serve-1.json" "$OUT/serve-64.json" <<'EOF' | tee -a "$summary"
import json, sys
one, many = (json.load(open(p)) for p in sys.argv[1:3])
a, b = one["throughput"]["output_tokens_per_s"], many["throughput"]["output_tokens_per_s"]
print(f"== serve: 1 stream {a:.1f} tok/s, 64 streams {b:.1f} tok/s -> {b / a:.1f}x "
      f"(TPOT p50 {one['latency_ms']['tpot']['p50']:.1f} vs {many['latency_ms']['tpot']['p50']:.1f} ms)")
EOF
  else
    say "== serve: the server did not come up"; tail -5 "$OUT/serve.err" | tee -a "$summary"
  fi
  kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
fi

if step hybrid; then
  MV=/tmp/gpu-check-deepseek2-$MOE_PRESET-q4_k.gguf
  [[ -f $MV ]] || timeout 240 "$F" synth --arch deepseek2 --preset "$MOE_PRESET" --type q4_K -q -t "$THREADS" -o "$MV" >>"$OUT/synth.log" 2>&1
  if [[ -f $MV ]]; then
    for placement in "--device cpu" "--device cuda" "--device cuda --cpu-moe"; do
      # shellcheck disable=SC2086
      timeout 150 "$F" bench -m "$MV" -t "$THREADS" $placement -p 0 -n 64 -r 2 --bw-mib 0 >"$OUT/bench-v2lite.txt" 2>&1
      say "== deepseek2 $MOE_PRESET Q4_K $placement: $(grep -E '^tg' "$OUT/bench-v2lite.txt" || tail -1 "$OUT/bench-v2lite.txt")"
    done
  fi
fi
say "== done $(date -u +%T)"
