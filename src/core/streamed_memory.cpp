#include "core/streamed_memory.h"

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

}  // namespace fathom
