#include "core/streamed_memory.h"

#include <algorithm>
#include <cstring>

#include <sys/mman.h>

#include "core/status.h"

namespace fathom {

void* allocate_streamed(size_t bytes) {
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t rounded = (bytes + 63) / 64 * 64;
  if (bytes < kHuge) return std::aligned_alloc(64, rounded);
  void* p = nullptr;
  if (posix_memalign(&p, kHuge, rounded) != 0) return nullptr;
  madvise(p, bytes / kHuge * kHuge, MADV_HUGEPAGE);
  return p;
}

StreamedBuffer::StreamedBuffer(size_t bytes) : data_(static_cast<uint8_t*>(allocate_streamed(bytes)), std::free), size_(bytes) {
  FATHOM_CHECK_MSG(data_ != nullptr || bytes == 0, "out of memory allocating a streamed buffer");
  if (bytes > 0) std::memset(data_.get(), 0, bytes);
}

uint8_t* StreamedArena::allocate(size_t bytes) {
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t rounded = (bytes + 63) / 64 * 64;
  if (rounded > left_) {
    const size_t size = std::max(chunk_bytes_, (rounded + kHuge - 1) / kHuge * kHuge);
    auto* p = static_cast<uint8_t*>(allocate_streamed(size));
    if (p == nullptr) return nullptr;
    chunks_.emplace_back(p, std::free);
    next_ = p;
    left_ = size;
  }
  uint8_t* out = next_;
  next_ += rounded;
  left_ -= rounded;
  return out;
}

}  // namespace fathom
