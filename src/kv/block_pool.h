// Fixed-size KV blocks shared by all sequences, reference-counted so a block can belong to
// several sequences (prefix sharing). Invariant: a block is on the free list iff its reference
// count is 0. The free list is a stack; a fresh pool hands out ids 0, 1, 2, ... in order, and
// a released block is the next one handed out (its memory is most likely still in cache).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace fathom {

class BlockPool {
 public:
  explicit BlockPool(int32_t n_blocks);

  std::optional<int32_t> allocate();  // a free block with ref count 1, or nullopt when exhausted
  void retain(int32_t block);         // one more owner
  void release(int32_t block);        // one owner fewer; back on the free list at 0

  int32_t n_total() const { return static_cast<int32_t>(ref_count_.size()); }
  int32_t n_free() const { return static_cast<int32_t>(free_.size()); }
  int32_t n_used() const { return n_total() - n_free(); }
  int32_t ref_count(int32_t block) const { return ref_count_[static_cast<size_t>(block)]; }

 private:
  std::vector<int32_t> free_;       // stack of free block ids; back() is handed out next
  std::vector<int32_t> ref_count_;  // [n_blocks] owners of each block
};

}  // namespace fathom
