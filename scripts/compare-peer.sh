#!/usr/bin/env bash
# Runs `fathom bench` and the peer (llama.cpp prebuilt, ../shared/peer) on the same files with
# the same threads, back to back in one run, and prints a ratio table.
# Usage: scripts/compare-peer.sh [-t THREADS] [-p 512] [-n 128] [-r 3] [-d DEPTH] MODEL.gguf...
# With -d, both measure after DEPTH tokens already in the cache (fathom bench -d; the peer through
# scripts/peer-depth.mjs, since ../shared/peer/run.sh has no depth option).
# Generation is also compared against the peer's tg x 1.2, its native-build equivalent
# (../shared/peer/README.md: the Node binding costs ~15-20% per generated token).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
fathom="${FATHOM_BIN:-$here/build/bin/fathom}"
peer="$here/../shared/peer/run.sh"
threads=2 pp=512 tg=128 reps=3 depth=0
while getopts "t:p:n:r:d:" o; do
  case $o in t) threads=$OPTARG;; p) pp=$OPTARG;; n) tg=$OPTARG;; r) reps=$OPTARG;; d) depth=$OPTARG;; *) exit 2;; esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-t THREADS] [-p PP] [-n TG] [-r REPS] [-d DEPTH] MODEL.gguf..." >&2; exit 2; }
[[ $depth =~ ^[0-9]+$ ]] || { echo "-d must be a token count, got $depth" >&2; exit 2; }
[ -x "$fathom" ] || { echo "build first: make (no $fathom)" >&2; exit 1; }
[ -x "$peer" ] || { echo "peer not found at $peer" >&2; exit 1; }

run_peer() {
  if [ "$depth" -eq 0 ]; then
    "$peer" "$1" --threads "$threads" --pp "$pp" --tg "$tg" --reps "$reps" --json
  else
    # The script must sit beside the peer's node_modules for node to resolve node-llama-cpp.
    local mods
    mods="$("$(dirname "$peer")/setup.sh")"
    cp "$here/scripts/peer-depth.mjs" "$(dirname "$mods")/peer-depth.mjs"
    node "$(dirname "$mods")/peer-depth.mjs" "$1" --threads "$threads" --depth "$depth" --pp "$pp" --tg "$tg" --reps "$reps" --json
  fi
}

[ "$depth" -eq 0 ] || echo "depth: $depth tokens in the cache before every run"
printf "%-44s %9s %9s %7s %9s %9s %7s %8s\n" model "pp fathom" "pp peer" ratio "tg fathom" "tg peer" ratio "vs x1.2"
for m in "$@"; do
  f=$("$fathom" bench -m "$m" -t "$threads" -p "$pp" -n "$tg" -r "$reps" -d "$depth" --json)
  p=$(run_peer "$m" 2>/dev/null | tail -1)
  python3 - "$m" "$f" "$p" <<'PY'
import json, os, sys
name, f, p = os.path.basename(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
res = {r["test"][:2]: r["tokens_per_second"] for r in f["results"]}
fpp, ftg = res.get("pp", 0.0), res.get("tg", 0.0)
ppp = (p.get("pp_tok_s") or {}).get("mean", 0.0)
ptg = (p.get("tg_tok_s") or {}).get("mean", 0.0)
ratio = lambda a, b: a / b if b else float("nan")
print(f"{name[:44]:<44} {fpp:9.2f} {ppp:9.2f} {ratio(fpp, ppp):7.2f} {ftg:9.2f} {ptg:9.2f} {ratio(ftg, ptg):7.2f} {ratio(ftg, 1.2 * ptg):8.2f}")
bw = f.get("bandwidth_gb_s")
if bw:
    print(f"{'':44} machine read bandwidth {bw:.1f} GB/s; tg bound {f.get('tg_bound_tok_s', 0):.1f} tok/s; fathom at {100 * ftg / f.get('tg_bound_tok_s', 1):.0f}% of bound")
PY
done
