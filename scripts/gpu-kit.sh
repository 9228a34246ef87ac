#!/usr/bin/env bash
# Prepares, on the development machine, what a lent GPU machine (the `device` tool) needs to run
# scripts/gpu-check.sh without building: fathom and the accelerator test binaries built for any
# x86-64 CPU with AVX2 (FATHOM_NATIVE off: the GPU host's CPU is not this one) and Hopper/Ampere
# GPUs, plus the Debian shared libraries they load that a CUDA image may lack. Left behind: glibc
# and the C++ runtime (the image's are as new or newer, and cuBLAS needs the image's own), and
# cuBLAS itself (hundreds of MiB; the GPU machine's CUDA 13 toolkit has it).
#
# usage: scripts/gpu-kit.sh            -> .gpu-kit/{bin,lib} (git-ignored; pass it in `carry`)
# Environment: BUILD_DIR (build-gpu), JOBS (nproc).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build-gpu}
JOBS=${JOBS:-$(nproc)}
KIT=.gpu-kit

cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DFATHOM_NATIVE=OFF -DFATHOM_CUDA=on \
  -DCMAKE_CUDA_ARCHITECTURES="80-real;90" >/dev/null
targets=(fathom test_cuda)
[[ $(cmake --build "$BUILD_DIR" --target help) == *" test_opencl"* ]] && targets+=(test_opencl)
cmake --build "$BUILD_DIR" -j "$JOBS" --target "${targets[@]}"

rm -rf "$KIT"
mkdir -p "$KIT/bin" "$KIT/lib"
for t in "${targets[@]}"; do
  [[ -x $BUILD_DIR/bin/$t ]] && strip -o "$KIT/bin/$t" "$BUILD_DIR/bin/$t"
done
# The libraries outside glibc and CUDA's math libraries (the image's own are used for those).
for lib in $(ldd "$KIT"/bin/* | awk '/=> \// { print $3 }' | sort -u); do
  case $(basename "$lib") in
    libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|ld-linux*|libstdc++*|libgcc_s*|libcublas*|libcuda.so*) ;;
    *) cp -L "$lib" "$KIT/lib/" ;;
  esac
done
# The test binaries write their synth models under the build tree's test-tmp, a path compiled
# in; gpu-check.sh creates it there.
grep -o '/[^"]*/test-tmp' "$BUILD_DIR/tests/CMakeFiles/test_cuda.dir/flags.make" | head -1 >"$KIT/test-tmp-path"
du -sh "$KIT"
echo "kit ready: run on the GPU machine with carry [\"$KIT\"]: scripts/gpu-check.sh"
