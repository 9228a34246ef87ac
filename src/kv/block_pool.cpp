#include "kv/block_pool.h"

#include "core/status.h"

namespace fathom {

BlockPool::BlockPool(int32_t n_blocks) : ref_count_(static_cast<size_t>(n_blocks), 0) {
  free_.reserve(static_cast<size_t>(n_blocks));
  for (int32_t i = n_blocks - 1; i >= 0; --i) free_.push_back(i);
}

std::optional<int32_t> BlockPool::allocate() {
  if (free_.empty()) return std::nullopt;
  const int32_t block = free_.back();
  free_.pop_back();
  ref_count_[static_cast<size_t>(block)] = 1;
  return block;
}

void BlockPool::retain(int32_t block) {
  FATHOM_CHECK(block >= 0 && block < n_total() && ref_count_[static_cast<size_t>(block)] > 0);
  ++ref_count_[static_cast<size_t>(block)];
}

void BlockPool::release(int32_t block) {
  FATHOM_CHECK(block >= 0 && block < n_total() && ref_count_[static_cast<size_t>(block)] > 0);
  if (--ref_count_[static_cast<size_t>(block)] == 0) free_.push_back(block);
}

}  // namespace fathom
