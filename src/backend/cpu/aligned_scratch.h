// A grow-only scratch buffer whose elements start on a 64-byte boundary: AMX tile rows are 64
// bytes, and a large std::vector's data() sits 16 bytes past a page, so every tile row loaded
// from it would straddle two cache lines. Internal to src/backend/cpu.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace fathom::cpu {

template <class T>
class AlignedScratch {
 public:
  // Room for n elements (kept, and grown only when needed); returns the first.
  T* get(size_t n) {
    if (v_.size() < n + kPad) v_.resize(n + kPad);
    return data();
  }
  // The first element of what the last get() sized.
  T* data() {
    const auto p = reinterpret_cast<uintptr_t>(v_.data());
    return reinterpret_cast<T*>((p + 63) & ~static_cast<uintptr_t>(63));
  }

 private:
  static constexpr size_t kPad = (64 + sizeof(T) - 1) / sizeof(T);
  std::vector<T> v_;
};

}  // namespace fathom::cpu
