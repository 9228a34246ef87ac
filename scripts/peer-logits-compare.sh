#!/usr/bin/env bash
# fathom against llama.cpp on files quantized by llama.cpp itself: for each file type, a qwen2
# and a deepseek2 synth model are quantized with scripts/peer-quantize.sh (with an imatrix from
# `fathom imatrix`), then `fathom logits` and the peer's logits.sh run the same prompts on the
# same file. Prints per model and type: top-1 agreement over the prompts, and the max |fathom -
# peer| over the peer's top-5 logits of every prompt (looked up by token id in fathom's top 100).
#
# With QUANTIZER=fathom the files are written by `fathom quantize` (same imatrix) instead, so the
# peer reads fathom's quantizer output.
#
# usage: scripts/peer-logits-compare.sh   (env: FATHOM, DIR, THREADS, TYPES, MODELS, PROMPTS, QUANTIZER)
#   TYPES   llama.cpp file types (default "Q4_K_M Q3_K_M Q2_K")
#   MODELS  any of qwen2 deepseek2 (default both): qwen2 small in F32 with the qwen2 vocab;
#           deepseek2 V2-Lite shape cut to 2 layers (1 dense, 1 MoE) in F16
#   PROMPTS prompts separated by '|'
set -euo pipefail

cd "$(dirname "$0")/.."
FATHOM=${FATHOM:-build/bin/fathom}
DIR=${DIR:-/tmp/fathom-peer-compare}
THREADS=${THREADS:-2}
TYPES=${TYPES:-"Q4_K_M Q3_K_M Q2_K"}
MODELS=${MODELS:-"qwen2 deepseek2"}
PROMPTS=${PROMPTS:-"The quick brown fox|Once upon a time there was a|def fibonacci(n):"}
SHARED=${SHARED:-../shared}
PEER_TIMEOUT=${PEER_TIMEOUT:-600}  # seconds per peer logits.sh call
PEER=${PEER:-$SHARED/peer}
QUANTIZER=${QUANTIZER:-peer}  # peer (scripts/peer-quantize.sh) or fathom (`fathom quantize`)
mkdir -p "$DIR"

# Source model and imatrix per architecture.
prepare() {
  local model=$1 src="$DIR/$1-src.gguf"
  if [ ! -f "$src" ]; then
    case "$model" in
      qwen2) "$FATHOM" synth --arch qwen2 --preset small --type f32 --vocab "$SHARED/testdata/vocab/ggml-vocab-qwen2.gguf" \
               -o "$src" -q -t "$THREADS" ;;
      deepseek2) "$FATHOM" synth --arch deepseek2 --preset v2-lite --layers 2 --type f16 \
               --vocab "$SHARED/testdata/vocab/ggml-vocab-deepseek-llm.gguf" -o "$src" -q -t "$THREADS" ;;
      *) echo "unknown model $model (qwen2 or deepseek2)" >&2; exit 2 ;;
    esac
  fi
  if [ ! -f "$DIR/$model-imatrix.gguf" ]; then
    if [ ! -f "$DIR/calib.txt" ]; then
      cat docs/*.md > "$DIR/docs.txt"
      head -c 60000 "$DIR/docs.txt" > "$DIR/calib.txt"
    fi
    "$FATHOM" imatrix -m "$src" -f "$DIR/calib.txt" -o "$DIR/$model-imatrix.gguf" --chunks 2 --ctx 256 -t "$THREADS" \
      > "$DIR/$model-imatrix.log" 2>&1
  fi
}

printf '%-10s %-8s %-7s %-14s %s\n' model type top-1 "max|dlogit|" "note"
for model in $MODELS; do
  prepare "$model"
  for t in $TYPES; do
    out="$DIR/$model-$t.gguf"
    [ "$QUANTIZER" = fathom ] && out="$DIR/$model-$t.fathom.gguf"
    if [ ! -f "$out" ] && [ "$QUANTIZER" = fathom ]; then
      "$FATHOM" quantize "$DIR/$model-src.gguf" "$out" "$t" --imatrix "$DIR/$model-imatrix.gguf" -t "$THREADS" -q \
        > "$DIR/$model-$t.quantize.log" 2>&1 || { echo "fathom quantize $model $t failed: see $DIR/$model-$t.quantize.log" >&2; continue; }
    elif [ ! -f "$out" ]; then
      bash scripts/peer-quantize.sh "$DIR/$model-src.gguf" "$out" "$t" "$DIR/$model-imatrix.gguf" "$THREADS" \
        > "$DIR/$model-$t.quantize.log" 2>&1 || { echo "peer quantize $model $t failed: see $DIR/$model-$t.quantize.log" >&2; continue; }
    fi
    results="$DIR/$model-$t.results"
    : > "$results"
    IFS='|' read -r -a prompts <<< "$PROMPTS"
    for p in "${prompts[@]}"; do
      # The Node binding has been seen to hang on exit: bound each call.
      peer_json=$(timeout "$PEER_TIMEOUT" bash "$PEER/logits.sh" "$out" "$p" --top 5 2>/dev/null | tail -1) || true
      [[ "$peer_json" == "{"* ]] || peer_json='{"error": "peer logits.sh failed or timed out"}'
      if ! ours_json=$("$FATHOM" logits -m "$out" -p "$p" --top 100 --json -t "$THREADS" 2>"$DIR/$model-$t.fathom.err"); then
        ours_json='{"error": "'"$(tail -1 "$DIR/$model-$t.fathom.err" | tr -d '"\\')"'"}'
      fi
      printf '%s\n%s\n' "$peer_json" "$(tr -d '\n' <<< "$ours_json")" >> "$results"
    done
    python3 - "$model" "$t" "$results" <<'EOF'
import json, sys
model, ftype, path = sys.argv[1:4]
lines = open(path).read().splitlines()
agree, n, worst, note = 0, 0, 0.0, ""
for peer_line, ours_line in zip(lines[0::2], lines[1::2]):
    peer, ours = json.loads(peer_line), json.loads(ours_line)
    if "error" in peer:
        note = "peer: " + peer["error"]
        continue
    if "error" in ours:
        note = "fathom: " + ours["error"]
        break
    top = ours["positions"][-1]["top"]
    logit = {e["id"]: e["logit"] for e in top}
    n += 1
    agree += top[0]["id"] == peer["top"][0][0]
    for tok, value in peer["top"]:
        if tok not in logit:
            note = f"peer top-5 id {tok} not in fathom's top 100"
            continue
        worst = max(worst, abs(logit[tok] - value))
if n == 0:
    print(f"{model:<10} {ftype:<8} {'-':<7} {'-':<14} {note}")
else:
    print(f"{model:<10} {ftype:<8} {f'{agree}/{n}':<7} {worst:<14.5f} {note}")
EOF
  done
done
