#!/usr/bin/env bash
# Runs one libFuzzer target over a copy of its committed seed corpus, so the run may add inputs
# without touching the tree. Used by ctest (label `fuzz`) and `make fuzz`.
#   run_fuzzer.sh <fuzzer binary> <seed corpus dir> <artifact dir> [libFuzzer options...]
# A crash, leak, timeout or sanitizer report fails the run; the input that caused it is kept in
# <artifact dir> (reproduce: <fuzzer binary> <artifact>). Folders listed in <seed corpus
# dir>.shared-seeds, relative to the shared test data (../shared beside the checkout, or
# $FATHOM_SHARED_DIR), are read as further seeds: files the project uses but does not ship.
set -euo pipefail
fuzzer=$1 seeds=$2 artifacts=$3
shift 3
if [ ! -x "$fuzzer" ]; then
  echo "fuzz: $fuzzer was not built. The fuzz targets need clang++ and libclang-rt-14-dev" \
       "(scripts/install-deps.sh) and a fathom_fuzz_target() line in tests/fuzz/CMakeLists.txt." >&2
  exit 1
fi
if [ ! -d "$seeds" ] || [ -z "$(ls -A "$seeds")" ]; then
  echo "fuzz: seed corpus $seeds is missing or empty" >&2
  exit 1
fi
extra=()
if [ -f "$seeds.shared-seeds" ]; then
  shared=${FATHOM_SHARED_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)/shared}
  while read -r dir; do
    [ -n "$dir" ] || continue
    if [ ! -d "$shared/$dir" ]; then echo "fuzz: shared seed folder $shared/$dir is missing" >&2; exit 1; fi
    extra+=("$shared/$dir")
  done < "$seeds.shared-seeds"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/fathom-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -r "$seeds"/. "$work"/
mkdir -p "$artifacts"
# -timeout: seconds for one input; -rss_limit_mb: what one input may allocate. One worker, so a
# ctest run keeps to one core.
# The scratch copy comes first: libFuzzer writes new inputs into its first folder only.
"$fuzzer" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" "$@" "$work" "${extra[@]}"
