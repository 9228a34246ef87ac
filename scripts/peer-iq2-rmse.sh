#!/usr/bin/env bash
# Importance-weighted RMSE of fathom's IQ2_XXS/IQ2_XS/IQ2_S quantizers against ggml's own
# (ggml_quantize_chunk from the peer's prebuilt libggml-base.so, node-llama-cpp 3.22.1) on the
# same rows: scripts/peer-iq2-rmse.cpp, compiled against fathom's build (BUILD, default build/).
# tests/kernels/iq2_quantize_test.cpp pins fathom's figures and quotes ggml's.
#
# usage: scripts/peer-iq2-rmse.sh   (env: BUILD, PEER_DIR)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$here/.."
BUILD=${BUILD:-$root/build}
PEER_DIR=${PEER_DIR:-$root/../shared/peer}
mods="$(bash "$PEER_DIR/setup.sh")"
lib="$mods/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so"
[ -f "$lib" ] || { echo "peer-iq2-rmse: no $lib" >&2; exit 1; }
for a in libfathom_quant.a libfathom_core.a; do
  [ -f "$BUILD/$a" ] || { echo "peer-iq2-rmse: build $BUILD/$a first (cmake --build build --target fathom_quant)" >&2; exit 1; }
done
exe="$BUILD/peer-iq2-rmse"
c++ -std=c++20 -O2 -I"$root/src" -o "$exe" "$here/peer-iq2-rmse.cpp" "$BUILD/libfathom_quant.a" "$BUILD/libfathom_core.a" -ldl
exec "$exe" "$lib"
