// Memory that is streamed from end to end again and again (repacked weights and the KV cache
// every decode step, the bandwidth probe's buffer): large buffers are 2 MiB-aligned and their
// whole 2 MiB pages asked to be transparent huge pages, so a pass over them pays one TLB miss
// per 2 MiB instead of one per 4 KiB page (decode read weights 40% faster so).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

namespace fathom {

// Buffers of 2 MiB and more are 2 MiB-aligned and the 2 MiB pages they cover advised
// MADV_HUGEPAGE (most distributions default THP to madvise; without THP the advice is ignored
// and the buffer works the same; a partial last page stays in small pages, so no memory beyond
// `bytes` is touched); smaller ones are 64-byte aligned. Free with std::free. nullptr when the
// memory cannot be had.
void* allocate_streamed(size_t bytes);

// allocate_streamed() as a standard allocator, for vectors that are streamed whole: a forward
// pass's activations (a 512-token prefill writes the 1.5B shape's gate and up products as two
// 18 MiB [tokens, n_ff] buffers in 16-row AMX tile stores, one 4 KiB page per row in small pages).
template <class T>
struct StreamedAllocator {
  using value_type = T;
  StreamedAllocator() = default;
  template <class U>
  StreamedAllocator(const StreamedAllocator<U>&) {}
  T* allocate(size_t n) {
    if (n > SIZE_MAX / sizeof(T)) throw std::bad_array_new_length();
    void* p = allocate_streamed(n * sizeof(T));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  template <class U>
  bool operator==(const StreamedAllocator<U>&) const { return true; }
};
template <class T>
using StreamedVector = std::vector<T, StreamedAllocator<T>>;

// An owned, zero-filled allocate_streamed() buffer.
class StreamedBuffer {
 public:
  StreamedBuffer() = default;
  // Aborts when the memory cannot be had (callers check the host's memory first).
  explicit StreamedBuffer(size_t bytes);
  uint8_t* data() { return data_.get(); }
  const uint8_t* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  std::unique_ptr<uint8_t, void (*)(void*)> data_{nullptr, std::free};
  size_t size_ = 0;
};

// Streamed buffers that are each too small to fill 2 MiB pages of their own (a model's repacked
// matrices: the 1.5B shape's attention projections are 0.2-1.3 MiB, its FFN matrices 7.7 MiB),
// carved back to back, 64-byte aligned, from 2 MiB-aligned huge-page chunks. Allocated one by
// one, a third of the 1.5B Q4_0 model's repacked weights sat in 4 KiB pages and decode streamed
// them ~20% slower than the rest. Pieces live as long as the arena. A chunk's unused tail is
// address space only: pages are faulted in on first touch, so at most the 2 MiB page a piece
// ends in is resident beyond the pieces themselves.
class StreamedArena {
 public:
  explicit StreamedArena(size_t chunk_bytes = size_t{64} << 20) : chunk_bytes_(chunk_bytes) {}
  // 64-byte aligned; nullptr when the memory cannot be had.
  uint8_t* allocate(size_t bytes);

 private:
  size_t chunk_bytes_;
  std::vector<std::unique_ptr<uint8_t, void (*)(void*)>> chunks_;
  uint8_t* next_ = nullptr;
  size_t left_ = 0;
};

}  // namespace fathom
