#!/usr/bin/env bash
# The hostile-client measurements of `fathom serve` (see scripts/serve-hostile.mjs): builds a
# tiny qwen2 model with the real qwen2 tokenizer, installs the official `openai` npm client into
# the work folder (and undici, for an openai client that closes connections), raises the open-file limit for 2,000+ sockets and runs the script.
#   scripts/serve-hostile.sh [FATHOM_BIN] [WORK_DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/build/bin/fathom}"
work="${2:-$root/build/serve-hostile}"
mkdir -p "$work"
model="$work/qwen2-tiny.gguf"
[ -f "$model" ] || "$bin" synth --arch qwen2 --preset tiny --seed 7 \
  --vocab "$root/../shared/testdata/vocab/ggml-vocab-qwen2.gguf" -o "$model" >/dev/null
if [ ! -f "$work/node_modules/openai/package.json" ] || [ ! -f "$work/node_modules/undici/package.json" ]; then
  (cd "$work" && npm install --no-audit --no-fund --loglevel=error openai undici >/dev/null)
fi
ulimit -n "$(ulimit -Hn)"
exec node "$root/scripts/serve-hostile.mjs" "$bin" "$model" "$work/node_modules" "$work"
