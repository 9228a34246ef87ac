#!/usr/bin/env bash
# Quantizes a GGUF with llama.cpp's own quantizer: llama_model_quantize from the peer's prebuilt
# libllama.so (node-llama-cpp 3.22.1, installed by ../shared/peer/setup.sh), called by
# scripts/peer-quantize.c, which this script compiles once against those shared libraries.
# Any llama.cpp file type works, the i-quants included; IMATRIX (from `fathom imatrix`, GGUF or
# legacy .dat) is handed to llama.cpp in-process, as llama-quantize does. The 1-2 bit i-quants
# (IQ1_*, IQ2_*, IQ3_XXS) need one: llama.cpp refuses them without.
#
# usage: scripts/peer-quantize.sh IN.gguf OUT.gguf FTYPE [IMATRIX] [THREADS]
#        (env: PEER_DIR, the peer's shared/peer folder; PEER_BUILD, where the program is built)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
if [ $# -lt 3 ] || [ $# -gt 5 ]; then
  echo "usage: $0 IN.gguf OUT.gguf FTYPE [IMATRIX] [THREADS]" >&2
  exit 2
fi
PEER_DIR=${PEER_DIR:-$here/../../shared/peer}
mods="$(bash "$PEER_DIR/setup.sh")"
bins="$mods/@node-llama-cpp/linux-x64/bins/linux-x64"
# The params struct declared in peer-quantize.c is the one of this llama.cpp release.
release="$(sed -n 's/.*"tag": *"\([^"]*\)".*/\1/p' "$mods/node-llama-cpp/llama/llama.cpp.info.json")"
if [ "$release" != "v0.5.0" ] || [ ! -f "$bins/libllama.$release.so" ]; then
  echo "peer-quantize: expected the peer's llama.cpp release v0.5.0 (found '$release' in $mods); check" >&2
  echo "  llama_model_quantize_params in its include/llama.h and update scripts/peer-quantize.c" >&2
  exit 1
fi

PEER_BUILD=${PEER_BUILD:-${XDG_CACHE_HOME:-$HOME/.cache}/fathom-peer/build}
mkdir -p "$PEER_BUILD"
exe="$PEER_BUILD/peer-quantize"
if [ ! -x "$exe" ] || [ "$here/peer-quantize.c" -nt "$exe" ]; then
  cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -o "$exe.tmp" "$here/peer-quantize.c" \
    -L"$bins" -l:"libllama.$release.so" -l:libggml-base.so -Wl,-rpath,"$bins"
  mv "$exe.tmp" "$exe"
fi

in="$1" out="$2" ftype="$3" imatrix="${4:--}" threads="${5:-0}"
exec "$exe" "$in" "$out" "$ftype" "$imatrix" "$threads"
