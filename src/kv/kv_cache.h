// Paged KV cache: every sequence owns a block table mapping its positions to blocks of
// `block_size` tokens from one shared BlockPool. Two layouts behind this one interface:
//   MHA (llama, qwen2, deepseek): per token per layer K = [n_head_kv * head_dim_k] and
//                                 V = [n_head_kv * head_dim_v];
//   MLA latent (deepseek2):       per token per layer one row of [kv_lora_rank + n_rot] values
//                                 shared by all heads (k_width), v_width = 0.
// Storage per layer is [n_blocks][block_size][row bytes], so a block's rows are contiguous. A row
// is stored in the cache's element type for K and for V (f32, f16, bf16, or the GGUF block
// formats q8_0/q4_0: 32-value blocks running over the whole row, so with heads narrower than a
// block one block spans several heads); writers hand f32 rows to store_k/store_v, readers
// convert the span they need.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "core/streamed_memory.h"
#include <memory>
#include <string>

#include "kv/block_pool.h"
#include "kv/prefix_cache.h"

namespace fathom {

struct KvCacheShape {
  int64_t n_layer = 0;      // layers with a cache
  int64_t k_width = 0;      // values per token per layer of K (or of the MLA latent)
  int64_t v_width = 0;      // values per token per layer of V (0 for the MLA latent layout)
  int32_t block_size = 16;  // tokens per block
  int64_t n_ctx_max = 0;    // per-sequence context limit (positions [0, n_ctx_max))
  DType k_type = DType::F32;  // element type of the stored K (or latent) rows
  DType v_type = DType::F32;  // element type of the stored V rows
};

// The element types of a cache's K and V rows as a user picks them (-ctk/-ctv); f16 unless asked.
struct KvCacheTypes {
  DType k = DType::F16;
  DType v = DType::F16;
};
// The shape with its rows stored in `types`.
inline KvCacheShape with_types(KvCacheShape shape, const KvCacheTypes& types) {
  shape.k_type = types.k;
  shape.v_type = types.v;
  return shape;
}

// The element types a cache can store: f32, f16, bf16, q8_0 and q4_0.
bool is_kv_cache_type(DType t);
// Parses a --cache-type-k/-v value ("f16", "q8_0", ...); nullopt for anything else.
std::optional<DType> parse_kv_cache_type(const std::string& name);
// kInvalidArgument when a type is not a cache type or a row width is not a multiple of its
// block (q8_0/q4_0 need rows of whole 32-value blocks), naming the type and the width.
Status check_kv_cache_types(const KvCacheShape& shape);
// Bytes of one token's K and V rows over all layers in the shape's types: what the pool holds
// per cached position, and the one figure `fathom plan` and the engine share.
int64_t kv_bytes_per_token(const KvCacheShape& shape);

// Block ids are int32 (BlockPool): the most blocks one pool can hold.
inline constexpr int64_t kMaxKvBlocks = INT32_MAX;
// Blocks a pool needs to hold n_seq full sequences of n_ctx tokens. kInvalidArgument for a
// non-positive input, kOutOfRange when the count overflows int64; callers compare it with
// kMaxKvBlocks (after the memory check, whose message says more).
Expected<int64_t> kv_pool_blocks(int64_t n_ctx, int32_t block_size, int64_t n_seq);
// kOutOfRange naming the request when n_blocks passes kMaxKvBlocks.
Status check_pool_addressable(int64_t n_blocks, int32_t block_size);
// Bytes a KvCache of `shape` with n_blocks blocks allocates (the figure allocated_bytes() reports
// once built); kOutOfRange when it does not fit in int64.
Expected<int64_t> kv_pool_bytes(const KvCacheShape& shape, int64_t n_blocks);

class KvCache {
 public:
  // Allocates the whole pool up front; callers size it with kv_pool_blocks/kv_pool_bytes first.
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

  // Prefix caching (off until enabled). reuse_prefix gives an empty sequence the cached blocks
  // of the longest cached prefix of `tokens` (whole blocks, always leaving the last token to be
  // computed) and returns how many tokens that covers. cache_computed_blocks indexes the
  // sequence's blocks that are now full (positions < n_computed). Evictable cached blocks count
  // as available: reserve() evicts them, least recently used first, when the free list runs out.
  void enable_prefix_cache();
  bool prefix_cache_enabled() const { return prefix_ != nullptr; }
  int64_t reuse_prefix(int32_t seq_id, const std::vector<int32_t>& tokens);
  void cache_computed_blocks(int32_t seq_id, const std::vector<int32_t>& tokens, int64_t n_computed);
  int32_t n_available_blocks() const;
  // Blocks held by live sequences (cached blocks no sequence uses are not counted).
  int32_t n_active_blocks() const { return pool_.n_total() - n_available_blocks(); }
  struct PrefixStats {
    int64_t query_tokens = 0;  // prompt tokens looked up
    int64_t hit_tokens = 0;    // of those, served from the cache
    int32_t cached_blocks = 0; // blocks the cache indexes now
  };
  PrefixStats prefix_stats() const;
  const PrefixCache* prefix_cache() const { return prefix_.get(); }
  // Restoring a saved prefix cache (kv_persist): take a free block to fill (never evicts; nullopt
  // when none is free), then either index it under its whole prefix `prefix_tokens` (a multiple
  // of block_size; the cache takes over the caller's reference) or hand it back.
  std::optional<int32_t> take_free_block() { return pool_.allocate(); }
  void index_restored_block(const std::vector<int32_t>& prefix_tokens, int32_t block);
  void return_block(int32_t block) { pool_.release(block); }

  // Context shift (runtime/context_shift.h); both leave the rows of positions [0, n_keep) as
  // they are, and `tokens` are the sequence's tokens before the shift (at least n_cached).
  // truncate_to_blocks keeps the whole blocks below n_keep, releasing the rest, and returns the
  // positions they cover (a multiple of block_size), from which the caller recomputes.
  int64_t truncate_to_blocks(int32_t seq_id, const std::vector<int32_t>& tokens, int64_t n_keep);
  // discard_positions drops positions [n_keep, n_keep + n_discard) of a sequence with n_cached
  // positions cached: the rows of [n_keep + n_discard, n_cached) move to [n_keep, n_cached -
  // n_discard), each layer's moved K rows passing through rotate_k (f32 [n_rows, k_width], in
  // place) and V rows copied as stored; blocks past the new end are released. A block that is
  // written and also held elsewhere is first taken out of the prefix cache (if this sequence
  // indexed it there) or, still shared with another sequence, replaced by a copy.
  // kOutOfMemory, nothing changed, when the copies need more blocks than are available.
  using RotateRows = std::function<void(float* rows, int64_t n_rows)>;
  Status discard_positions(int32_t seq_id, const std::vector<int32_t>& tokens, int64_t n_cached, int64_t n_keep,
                           int64_t n_discard, const RotateRows& rotate_k);

  // Stored rows in the cache's types: k_row_bytes() / v_row_bytes() bytes each.
  size_t k_row_bytes() const { return row_size(shape_.k_type, shape_.k_width); }
  size_t v_row_bytes() const { return row_size(shape_.v_type, shape_.v_width); }
  uint8_t* k_data(int64_t layer, int32_t block, int32_t slot) {
    return k_[static_cast<size_t>(layer)].data() + (static_cast<size_t>(block) * static_cast<size_t>(shape_.block_size) + static_cast<size_t>(slot)) * k_row_bytes();
  }
  uint8_t* v_data(int64_t layer, int32_t block, int32_t slot) {
    return v_[static_cast<size_t>(layer)].data() + (static_cast<size_t>(block) * static_cast<size_t>(shape_.block_size) + static_cast<size_t>(slot)) * v_row_bytes();
  }
  const uint8_t* k_data(int64_t layer, int32_t block, int32_t slot) const { return const_cast<KvCache*>(this)->k_data(layer, block, slot); }
  const uint8_t* v_data(int64_t layer, int32_t block, int32_t slot) const { return const_cast<KvCache*>(this)->v_data(layer, block, slot); }
  // f32 views of the rows, for an f32 cache only (the accelerator backends mirror f32 caches).
  float* k_row(int64_t layer, int32_t block, int32_t slot) {
    FATHOM_CHECK(shape_.k_type == DType::F32);
    return reinterpret_cast<float*>(k_data(layer, block, slot));
  }
  float* v_row(int64_t layer, int32_t block, int32_t slot) {
    FATHOM_CHECK(shape_.v_type == DType::F32);
    return reinterpret_cast<float*>(v_data(layer, block, slot));
  }
  const float* k_row(int64_t layer, int32_t block, int32_t slot) const { return const_cast<KvCache*>(this)->k_row(layer, block, slot); }
  const float* v_row(int64_t layer, int32_t block, int32_t slot) const { return const_cast<KvCache*>(this)->v_row(layer, block, slot); }
  // f32 row of position `pos` of a sequence (must be reserved), for an f32 cache only.
  float* k_at(int64_t layer, int32_t seq_id, int64_t pos);
  float* v_at(int64_t layer, int32_t seq_id, int64_t pos);
  // The stored row of position `pos` of a sequence (must be reserved), in the cache's type: for
  // writers that convert rows themselves (the CPU backend's vector f16/bf16 conversion).
  uint8_t* k_slot(int64_t layer, int32_t seq_id, int64_t pos);
  uint8_t* v_slot(int64_t layer, int32_t seq_id, int64_t pos);
  // Converts an f32 row ([k_width] / [v_width]) to the cache's type into position `pos` of a
  // sequence (must be reserved).
  void store_k(int64_t layer, int32_t seq_id, int64_t pos, const float* values);
  void store_v(int64_t layer, int32_t seq_id, int64_t pos, const float* values);
  // The f32 values of a stored row (the reference path: a whole row at a time).
  void load_k(int64_t layer, int32_t block, int32_t slot, float* values) const;
  void load_v(int64_t layer, int32_t block, int32_t slot, float* values) const;

  const BlockPool& pool() const { return pool_; }
  size_t bytes_per_token() const { return static_cast<size_t>(kv_bytes_per_token(shape_)); }
  size_t total_bytes() const { return bytes_per_token() * static_cast<size_t>(pool_.n_total()) * static_cast<size_t>(shape_.block_size); }
  // Bytes the K and V buffers hold: what the pool took from the allocator.
  size_t allocated_bytes() const;

 private:
  KvCacheShape shape_;
  BlockPool pool_;
  struct SeqTable;
  // Chain keys of the first n_blocks blocks of `tokens` (PrefixCache::chain_key).
  std::vector<uint64_t> chain_keys(const std::vector<int32_t>& tokens, int64_t n_blocks) const;
  // Cuts a table's prefix-cache index to its first n_blocks blocks.
  void cut_index(SeqTable& t, const std::vector<int32_t>& tokens, int64_t n_blocks) const;
  // Position of `pos` of a sequence in the pool: (block, slot).
  std::pair<int32_t, int32_t> locate(int32_t seq_id, int64_t pos) const;

  // Huge-page memory: decode reads every cached row of a sequence once per step, as it reads
  // the weights.
  std::vector<StreamedBuffer> k_;  // [n_layer] of [n_blocks, block_size, k_row_bytes()]
  std::vector<StreamedBuffer> v_;  // [n_layer] of [n_blocks, block_size, v_row_bytes()]
  struct SeqTable {
    std::vector<int32_t> blocks;  // block ids in position order
    int64_t n_indexed = 0;        // leading blocks already offered to the prefix cache
    uint64_t last_key = 0;        // chain key of block n_indexed - 1 (0 when none)
  };
  std::unordered_map<int32_t, SeqTable> tables_;  // seq id -> its table
  std::unique_ptr<PrefixCache> prefix_;           // nullptr when prefix caching is off
  int64_t prefix_query_tokens_ = 0;               // statistics, see PrefixStats
  int64_t prefix_hit_tokens_ = 0;
};

}  // namespace fathom
