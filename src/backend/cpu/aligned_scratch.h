// A grow-only scratch buffer whose elements start on a 64-byte boundary: AMX tile rows are 64
// bytes, and a large std::vector's data() sits 16 bytes past a page, so every tile row loaded
// from it would straddle two cache lines. From 2 MiB on it sits in huge pages
// (core/streamed_memory.h): the tokens of a long prefill are read as tiles of 16 rows. Internal
// to src/backend/cpu.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/streamed_memory.h"

namespace fathom::cpu {

template <class T>
class AlignedScratch {
 public:
  // Room for n elements (kept, and grown only when needed); returns the first.
  T* get(size_t n) {
    if (v_.size() < n) v_.resize(n);
    return data();
  }
  // The first element of what the last get() sized.
  T* data() { return v_.data(); }

 private:
  StreamedVector<T> v_;  // allocate_streamed: 64-byte aligned
};

}  // namespace fathom::cpu
