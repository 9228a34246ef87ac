#!/usr/bin/env bash
# Quantization quality on the DeepSeek-R1-Distill-Qwen-1.5B-shape synth model: file size, KL
# divergence and top-1 agreement against F16 for Q8_0, Q6_K, Q5_K_M, Q4_K_M and Q4_0, each
# with and without an importance matrix, in one kl-divergence pass (the base runs once).
#
# Text: the repository's own docs and headers (*.md and src/*.h) at commit TEXT_REV, so the
# numbers are reproducible whatever the working tree holds. The first EVAL_BYTES bytes are
# evaluated (CHUNKS chunks of CTX tokens: 40 x 512 = 20,480 tokens), the rest calibrates the
# imatrix (CALIB_CHUNKS chunks).
#
# PRESET (default 1.5b) picks another qwen2 synth shape, e.g. `small` for a run that fits a few
# minutes on a busy machine.
#
# usage: scripts/quant-quality.sh   (env: FATHOM, DIR, THREADS, TEXT_REV, CHUNKS, CTX, TYPES, VARIANTS, PRESET)
set -euo pipefail

cd "$(dirname "$0")/.."
FATHOM=${FATHOM:-build/bin/fathom}
DIR=${DIR:-/tmp/fathom-quant-quality}
THREADS=${THREADS:-2}
TEXT_REV=${TEXT_REV:-f0613c7}
EVAL_BYTES=${EVAL_BYTES:-90000}
CTX=${CTX:-512}
CHUNKS=${CHUNKS:-40}
CALIB_CHUNKS=${CALIB_CHUNKS:-8}
TYPES=${TYPES:-"Q8_0 Q6_K Q5_K_M Q4_K_M Q4_0"}
VARIANTS=${VARIANTS:-"plain imatrix"}
VOCAB=${VOCAB:-../shared/testdata/vocab/ggml-vocab-qwen2.gguf}
PRESET=${PRESET:-1.5b}

mkdir -p "$DIR"
F16="$DIR/qwen2-$PRESET-f16.gguf"
if [ ! -f "$F16" ]; then
  echo "== synthesizing $F16"
  "$FATHOM" synth --arch qwen2 --preset "$PRESET" --type f16 --vocab "$VOCAB" -t "$THREADS" -o "$F16"
fi

echo "== text from $TEXT_REV"
git ls-tree -r --name-only "$TEXT_REV" | grep -E '(\.md$|^src/.*\.h$)' | while read -r f; do git show "$TEXT_REV:$f"; done \
  > "$DIR/all.txt"
head -c "$EVAL_BYTES" "$DIR/all.txt" > "$DIR/eval.txt"
tail -c +"$((EVAL_BYTES + 1))" "$DIR/all.txt" > "$DIR/calib.txt"
wc -c "$DIR/eval.txt" "$DIR/calib.txt"

if [[ " $VARIANTS " == *" imatrix "* ]] && [ ! -f "$DIR/imatrix.gguf" ]; then
  echo "== imatrix"
  "$FATHOM" imatrix -m "$F16" -f "$DIR/calib.txt" -o "$DIR/imatrix.gguf" --chunks "$CALIB_CHUNKS" -t "$THREADS"
fi

# One kl-divergence pass per variant (5 models loaded next to the base fit in 24 GiB).
for variant in $VARIANTS; do
  models=()
  for t in $TYPES; do
    out="$DIR/$t-$variant.gguf"
    if [ ! -f "$out" ]; then
      echo "== quantize $t ($variant)"
      extra=()
      [ "$variant" = imatrix ] && extra=(--imatrix "$DIR/imatrix.gguf")
      "$FATHOM" quantize "$F16" "$out" "$t" "${extra[@]}" -t "$THREADS" -q
    fi
    models+=(-m "$out")
  done
  echo "== kl-divergence against F16, $variant ($CHUNKS chunks of $CTX tokens)"
  "$FATHOM" kl-divergence --base "$F16" "${models[@]}" -f "$DIR/eval.txt" --ctx "$CTX" --chunks "$CHUNKS" -t "$THREADS"
done
ls -l "$F16"
