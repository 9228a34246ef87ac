#!/usr/bin/env bash
# The main job on an embedded default model, offline: the real trained stories260K model from
# ../shared when present, otherwise a synthesized tiny model (random weights).
set -euo pipefail
fathom="${1:-build/bin/fathom}"
here="$(cd "$(dirname "$0")/.." && pwd)"
stories="$here/../shared/models/tinyllamas-stories-260k-f32.gguf"

if [ -f "$stories" ]; then
  echo "== fathom run on stories260K (a real 260K-parameter llama model trained on TinyStories) =="
  "$fathom" run -m "$stories" -p "Once upon a time" -n 128 --temp 0.8 --seed 42
else
  model="$here/build/demo-tiny.gguf"
  echo "== ../shared/models is not here: synthesizing a tiny qwen2 model =="
  "$fathom" synth --arch qwen2 --preset tiny -o "$model"
  echo "NOTE: this model has random weights, so its text is meaningless; it shows the pipeline runs."
  echo "      For real output run a DeepSeek GGUF, e.g.:"
  echo "      $fathom chat -m DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M.gguf"
  "$fathom" run -m "$model" -p "Hello" -n 32 --seed 42
fi
echo
echo "Next: '$fathom --help' lists every command; 'make test' runs the test suite."
