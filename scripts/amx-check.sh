#!/usr/bin/env bash
# Verifies the AMX path on a CPU with AMX (Sapphire Rapids or later) in one command; what it
# checks is what the AMD development VM could not (docs/benchmarks.md, "AMX kernels").
#   1. `fathom devices` with FATHOM_CPU_ISA=amx reports "kernels   amx" (the tile permission was
#      granted); otherwise it stops with the reason fathom gives.
#   2. The kernel tests with FATHOM_CPU_ISA=amx: the real AMX table (Isa::kAmx, real tile
#      instructions) bit-exact with the scalar reference for every repacked type and shape, the
#      emulated table likewise, batch invariance; then again with FATHOM_CPU_ISA=avx512 (the
#      fallback path).
#   3. pp512 and tg64 of fathom on the AMX and the AVX-512 paths against the peer (llama.cpp,
#      ../shared/peer/run.sh), same files and threads, back to back, with the share of the AMX
#      BF16 peak (one 16x16x32 TDPBF16PS per 16 cycles: 512 multiply-adds per cycle per core)
#      that fathom's pp reached (pp512 takes the BF16 tiles: gemm.h, kAmxBf16MinTokens).
# Usage: scripts/amx-check.sh [-t THREADS] [-r REPS] [MODEL.gguf...]
# Without models it synthesizes the issue's four files (qwen2 1.5B shape Q4_0, Q8_0, Q4_K_M-like,
# deepseek2 V2-Lite shape 6 layers Q4_K) into $AMX_CHECK_DIR (default /tmp/fathom-amx-check).
# AMX_GHZ overrides the core clock used for the peak (default: the mean "cpu MHz" now).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
fathom="${FATHOM_BIN:-$here/build/bin/fathom}"
tests="$here/build/bin/test_kernels"
peer="$here/../shared/peer/run.sh"
threads=2 reps=3
while getopts "t:r:" o; do
  case $o in t) threads=$OPTARG;; r) reps=$OPTARG;; *) exit 2;; esac
done
shift $((OPTIND - 1))
[ -x "$fathom" ] && [ -x "$tests" ] || { echo "build first: cmake --build build --target fathom test_kernels" >&2; exit 1; }
[ -x "$peer" ] || { echo "peer not found at $peer" >&2; exit 1; }

echo "== 1. the AMX path is available"
FATHOM_CPU_ISA=amx "$fathom" devices --no-bench | grep -E '^(cpu|isa|kernels) '
FATHOM_CPU_ISA=amx "$fathom" devices --no-bench | grep -q '^kernels   amx' || { echo "AMX path not active" >&2; exit 1; }

echo "== 2. kernel tests on the AMX path, then on the AVX-512 fallback"
FATHOM_CPU_ISA=amx "$tests" --gtest_brief=1
FATHOM_CPU_ISA=avx512 "$tests" --gtest_brief=1

echo "== 3. pp512 / tg64 against the peer ($threads threads, $reps repetitions)"
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  dir="${AMX_CHECK_DIR:-/tmp/fathom-amx-check}"
  mkdir -p "$dir"
  synth() { [ -f "$dir/$1" ] || "$fathom" synth "${@:2}" -o "$dir/$1" >/dev/null; models+=("$dir/$1"); }
  synth q15-q4_0.gguf --arch qwen2 --preset 1.5b --type q4_0
  synth q15-q8_0.gguf --arch qwen2 --preset 1.5b --type q8_0
  synth q15-q4_k_m.gguf --arch qwen2 --preset 1.5b --type q4_K --output-type q6_K
  synth v2lite-6l-q4_k.gguf --arch deepseek2 --preset v2-lite --layers 6 --type q4_K
fi
ghz="${AMX_GHZ:-$(awk -F: '/^cpu MHz/ {s += $2; n++} END {printf "%.2f", n ? s / n / 1000 : 3}' /proc/cpuinfo)}"
printf "%-24s %9s %9s %9s %7s %8s %9s %9s %7s\n" model "pp amx" "pp avx512" "pp peer" "x peer" "AMX peak" "tg amx" "tg peer" "x peer"
for m in "${models[@]}"; do
  a=$(FATHOM_CPU_ISA=amx "$fathom" bench -m "$m" -t "$threads" -p 512 -n 64 -r "$reps" --json)
  v=$(FATHOM_CPU_ISA=avx512 "$fathom" bench -m "$m" -t "$threads" -p 512 -n 0 -r "$reps" --json)
  p=$("$peer" "$m" --threads "$threads" --pp 512 --tg 64 --reps "$reps" --json 2>/dev/null | tail -1)
  python3 - "$m" "$a" "$v" "$p" "$threads" "$ghz" <<'PY'
import json, os, sys
name, a, v, p = os.path.basename(sys.argv[1]), *(json.loads(s) for s in sys.argv[2:5])
threads, ghz = int(sys.argv[5]), float(sys.argv[6])
res = lambda f: {r["test"][:2]: r["tokens_per_second"] for r in f["results"]}
app, atg, vpp = res(a).get("pp", 0.0), res(a).get("tg", 0.0), res(v).get("pp", 0.0)
ppp = (p.get("pp_tok_s") or {}).get("mean", 0.0)
ptg = (p.get("tg_tok_s") or {}).get("mean", 0.0)
ratio = lambda x, y: x / y if y else float("nan")
peak = threads * ghz * 1e9 * 512  # bf16 multiply-adds per second
share = app * a["matmul_params_per_token"] / peak
print(f"{name[:24]:<24} {app:9.1f} {vpp:9.1f} {ppp:9.1f} {ratio(app, ppp):7.2f} {100 * share:7.1f}% {atg:9.2f} {ptg:9.2f} {ratio(atg, ptg):7.2f}")
PY
done
echo "AMX peak taken at $ghz GHz x $threads cores x 512 bf16 MAC/cycle"
