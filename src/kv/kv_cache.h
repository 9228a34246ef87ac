// Paged KV cache: every sequence owns a block table mapping its positions to blocks of
// `block_size` tokens from one shared BlockPool. Two layouts behind this one interface:
//   MHA (llama, qwen2, deepseek): per token per layer K = [n_head_kv * head_dim_k] and
//                                 V = [n_head_kv * head_dim_v];
//   MLA latent (deepseek2):       per token per layer one row of [kv_lora_rank + n_rot] values
//                                 shared by all heads (k_width), v_width = 0.
// Storage per layer is [n_blocks][block_size][width] floats, so a block's rows are contiguous.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "kv/block_pool.h"

namespace fathom {

struct KvCacheShape {
  int64_t n_layer = 0;      // layers with a cache
  int64_t k_width = 0;      // floats per token per layer of K (or of the MLA latent)
  int64_t v_width = 0;      // floats per token per layer of V (0 for the MLA latent layout)
  int32_t block_size = 16;  // tokens per block
  int64_t n_ctx_max = 0;    // per-sequence context limit (positions [0, n_ctx_max))
};

class KvCache {
 public:
  KvCache(const KvCacheShape& shape, int32_t n_blocks);

  const KvCacheShape& shape() const { return shape_; }
  // Makes the sequence's table cover positions [0, n_tokens). Fails, allocating nothing, with
  // kOutOfRange past n_ctx_max and kOutOfMemory when the pool cannot supply the blocks.
  Status reserve(int32_t seq_id, int64_t n_tokens);
  // Blocks needed beyond what the sequence holds to cover n_tokens.
  int32_t blocks_needed(int32_t seq_id, int64_t n_tokens) const;
  void free_sequence(int32_t seq_id);
  bool has_sequence(int32_t seq_id) const { return tables_.count(seq_id) != 0; }
  int64_t capacity(int32_t seq_id) const;  // positions covered by the table
  const std::vector<int32_t>& block_table(int32_t seq_id) const;
  // Shares the first n_blocks blocks of `from` with `to` (copy-free prefix reuse); `to` must be empty.
  void share_prefix(int32_t from, int32_t to, int32_t n_blocks);

  float* k_row(int64_t layer, int32_t block, int32_t slot) {
    return k_[static_cast<size_t>(layer)].data() + (static_cast<size_t>(block) * static_cast<size_t>(shape_.block_size) + static_cast<size_t>(slot)) * static_cast<size_t>(shape_.k_width);
  }
  float* v_row(int64_t layer, int32_t block, int32_t slot) {
    return v_[static_cast<size_t>(layer)].data() + (static_cast<size_t>(block) * static_cast<size_t>(shape_.block_size) + static_cast<size_t>(slot)) * static_cast<size_t>(shape_.v_width);
  }
  // Row of position `pos` of a sequence (must be reserved).
  float* k_at(int64_t layer, int32_t seq_id, int64_t pos);
  float* v_at(int64_t layer, int32_t seq_id, int64_t pos);

  const BlockPool& pool() const { return pool_; }
  size_t bytes_per_token() const { return static_cast<size_t>(shape_.n_layer * (shape_.k_width + shape_.v_width)) * sizeof(float); }
  size_t total_bytes() const { return bytes_per_token() * static_cast<size_t>(pool_.n_total()) * static_cast<size_t>(shape_.block_size); }

 private:
  KvCacheShape shape_;
  BlockPool pool_;
  std::vector<std::vector<float>> k_;  // [n_layer] of [n_blocks, block_size, k_width]
  std::vector<std::vector<float>> v_;  // [n_layer] of [n_blocks, block_size, v_width]
  std::unordered_map<int32_t, std::vector<int32_t>> tables_;  // seq id -> block ids in position order
};

}  // namespace fathom
