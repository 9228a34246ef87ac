#include "kv/kv_cache.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <limits>

#include "quant/quant.h"

namespace fathom {

bool is_kv_cache_type(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::Q8_0 || t == DType::Q4_0;
}

std::optional<DType> parse_kv_cache_type(const std::string& name) {
  const std::optional<DType> t = parse_dtype(name);
  if (!t || !is_kv_cache_type(*t)) return std::nullopt;
  return t;
}

namespace {

Status check_cache_type(const char* what, DType t, int64_t width) {
  if (!is_kv_cache_type(t))
    return error(ErrorCode::kInvalidArgument, strprintf("%s cache type %s is not one of f32, f16, bf16, q8_0, q4_0", what, dtype_name(t)));
  const int64_t block = traits(t).block_size;
  if (width % block != 0)
    return error(ErrorCode::kInvalidArgument, strprintf("a %s %s cache stores rows of whole %lld-value blocks; this model's %s rows "
                                                        "have %lld values (use f16 or bf16)",
                                                        dtype_name(t), what, static_cast<long long>(block), what,
                                                        static_cast<long long>(width)));
  return Status::ok();
}

}  // namespace

Status check_kv_cache_types(const KvCacheShape& shape) {
  FATHOM_RETURN_IF_ERROR(check_cache_type("K", shape.k_type, shape.k_width));
  return check_cache_type("V", shape.v_type, shape.v_width);
}

int64_t kv_bytes_per_token(const KvCacheShape& shape) {
  return shape.n_layer * static_cast<int64_t>(row_size(shape.k_type, shape.k_width) + row_size(shape.v_type, shape.v_width));
}

Expected<int64_t> kv_pool_blocks(int64_t n_ctx, int32_t block_size, int64_t n_seq) {
  if (n_ctx <= 0 || block_size <= 0 || n_seq <= 0)
    return error(ErrorCode::kInvalidArgument, strprintf("context %lld, block size %d and sequence count %lld must be positive",
                                                        static_cast<long long>(n_ctx), block_size, static_cast<long long>(n_seq)));
  const int64_t per_seq = n_ctx / block_size + (n_ctx % block_size != 0 ? 1 : 0);  // no n_ctx + block_size - 1 overflow
  int64_t n_blocks = 0;
  if (__builtin_mul_overflow(per_seq, n_seq, &n_blocks))
    return error(ErrorCode::kOutOfRange, strprintf("%lld sequences of %lld tokens overflow a KV block count; use a shorter "
                                                   "context or fewer sequences",
                                                   static_cast<long long>(n_seq), static_cast<long long>(n_ctx)));
  return n_blocks;
}

Status check_pool_addressable(int64_t n_blocks, int32_t block_size) {
  if (n_blocks <= kMaxKvBlocks) return Status::ok();
  return error(ErrorCode::kOutOfRange, strprintf("the KV cache needs %lld blocks of %d tokens, more than the %lld one pool "
                                                 "can address; use a shorter context or fewer sequences",
                                                 static_cast<long long>(n_blocks), block_size, static_cast<long long>(kMaxKvBlocks)));
}

Expected<int64_t> kv_pool_bytes(const KvCacheShape& shape, int64_t n_blocks) {
  // Each product in the order the constructor forms its buffer sizes, each checked: a context
  // from the command line times the layer widths must not wrap.
  // The widths come from a model file: the row bytes are formed after a bound on them.
  int64_t slots = 0, per_layer = 0, bytes = 0;
  const bool overflow = shape.k_width < 0 || shape.v_width < 0 || shape.k_width > (int64_t{1} << 40) ||
                        shape.v_width > (int64_t{1} << 40) ||
                        __builtin_mul_overflow(n_blocks, static_cast<int64_t>(shape.block_size), &slots) ||
                        __builtin_mul_overflow(slots, static_cast<int64_t>(row_size(shape.k_type, shape.k_width) +
                                                                           row_size(shape.v_type, shape.v_width)),
                                               &per_layer) ||
                        __builtin_mul_overflow(per_layer, shape.n_layer, &bytes);
  if (overflow)
    return error(ErrorCode::kOutOfRange, strprintf("a KV cache of %lld blocks of %d tokens over %lld layers needs more than "
                                                   "2^63 bytes; use a shorter context or fewer sequences",
                                                   static_cast<long long>(n_blocks), shape.block_size, static_cast<long long>(shape.n_layer)));
  return bytes;
}

KvCache::KvCache(const KvCacheShape& shape, int32_t n_blocks) : shape_(shape), pool_(n_blocks) {
  const size_t slots = static_cast<size_t>(n_blocks) * static_cast<size_t>(shape.block_size);
  k_.reserve(static_cast<size_t>(shape.n_layer));
  v_.reserve(static_cast<size_t>(shape.n_layer));
  for (int64_t l = 0; l < shape.n_layer; ++l) {
    k_.emplace_back(slots * k_row_bytes());
    v_.emplace_back(slots * v_row_bytes());
  }
}

size_t KvCache::allocated_bytes() const {
  size_t bytes = 0;
  for (const StreamedBuffer& k : k_) bytes += k.size();
  for (const StreamedBuffer& v : v_) bytes += v.size();
  return bytes;
}

int32_t KvCache::blocks_needed(int32_t seq_id, int64_t n_tokens) const {
  const int64_t want = (n_tokens + shape_.block_size - 1) / shape_.block_size;
  auto it = tables_.find(seq_id);
  const int64_t have = it == tables_.end() ? 0 : static_cast<int64_t>(it->second.blocks.size());
  return want > have ? static_cast<int32_t>(want - have) : 0;
}

Status KvCache::reserve(int32_t seq_id, int64_t n_tokens) {
  if (n_tokens > shape_.n_ctx_max)
    return error(ErrorCode::kOutOfRange, strprintf("context limit exceeded: %lld tokens requested, the context holds %lld "
                                                   "(raise it with --ctx-size)",
                                                   static_cast<long long>(n_tokens), static_cast<long long>(shape_.n_ctx_max)));
  const int32_t need = blocks_needed(seq_id, n_tokens);
  if (need > n_available_blocks())
    return error(ErrorCode::kOutOfMemory, strprintf("KV cache full: %d more blocks needed, %d available of %d", need,
                                                    n_available_blocks(), pool_.n_total()));
  if (need > pool_.n_free()) prefix_->evict(need - pool_.n_free(), pool_);
  std::vector<int32_t>& table = tables_[seq_id].blocks;
  for (int32_t i = 0; i < need; ++i) table.push_back(*pool_.allocate());
  return Status::ok();
}

void KvCache::free_sequence(int32_t seq_id) {
  auto it = tables_.find(seq_id);
  if (it == tables_.end()) return;
  for (int32_t block : it->second.blocks) pool_.release(block);
  tables_.erase(it);
}

int64_t KvCache::capacity(int32_t seq_id) const {
  auto it = tables_.find(seq_id);
  return it == tables_.end() ? 0 : static_cast<int64_t>(it->second.blocks.size()) * shape_.block_size;
}

const std::vector<int32_t>& KvCache::block_table(int32_t seq_id) const {
  static const std::vector<int32_t> kEmpty;
  auto it = tables_.find(seq_id);
  return it == tables_.end() ? kEmpty : it->second.blocks;
}

void KvCache::share_prefix(int32_t from, int32_t to, int32_t n_blocks) {
  const std::vector<int32_t>& src = block_table(from);
  FATHOM_CHECK(n_blocks <= static_cast<int32_t>(src.size()) && !has_sequence(to));
  std::vector<int32_t>& dst = tables_[to].blocks;
  for (int32_t i = 0; i < n_blocks; ++i) {
    pool_.retain(src[static_cast<size_t>(i)]);
    dst.push_back(src[static_cast<size_t>(i)]);
  }
}

std::pair<int32_t, int32_t> KvCache::locate(int32_t seq_id, int64_t pos) const {
  const std::vector<int32_t>& table = tables_.at(seq_id).blocks;
  FATHOM_CHECK(pos >= 0 && pos / shape_.block_size < static_cast<int64_t>(table.size()));
  return {table[static_cast<size_t>(pos / shape_.block_size)], static_cast<int32_t>(pos % shape_.block_size)};
}

float* KvCache::k_at(int64_t layer, int32_t seq_id, int64_t pos) {
  const auto [block, slot] = locate(seq_id, pos);
  return k_row(layer, block, slot);
}

float* KvCache::v_at(int64_t layer, int32_t seq_id, int64_t pos) {
  const auto [block, slot] = locate(seq_id, pos);
  return v_row(layer, block, slot);
}

uint8_t* KvCache::k_slot(int64_t layer, int32_t seq_id, int64_t pos) {
  const auto [block, slot] = locate(seq_id, pos);
  return k_data(layer, block, slot);
}

uint8_t* KvCache::v_slot(int64_t layer, int32_t seq_id, int64_t pos) {
  const auto [block, slot] = locate(seq_id, pos);
  return v_data(layer, block, slot);
}

void KvCache::store_k(int64_t layer, int32_t seq_id, int64_t pos, const float* values) {
  quant::quantize_row_ref(shape_.k_type, values, k_slot(layer, seq_id, pos), shape_.k_width);
}

void KvCache::store_v(int64_t layer, int32_t seq_id, int64_t pos, const float* values) {
  quant::quantize_row_ref(shape_.v_type, values, v_slot(layer, seq_id, pos), shape_.v_width);
}

void KvCache::load_k(int64_t layer, int32_t block, int32_t slot, float* values) const {
  quant::dequantize_row(shape_.k_type, k_data(layer, block, slot), values, shape_.k_width);
}

void KvCache::load_v(int64_t layer, int32_t block, int32_t slot, float* values) const {
  quant::dequantize_row(shape_.v_type, v_data(layer, block, slot), values, shape_.v_width);
}

void KvCache::enable_prefix_cache() {
  if (!prefix_) prefix_ = std::make_unique<PrefixCache>(shape_.block_size);
}

int32_t KvCache::n_available_blocks() const {
  return pool_.n_free() + (prefix_ ? prefix_->n_evictable(pool_) : 0);
}

int64_t KvCache::reuse_prefix(int32_t seq_id, const std::vector<int32_t>& tokens) {
  if (!prefix_ || tokens.empty()) return 0;
  FATHOM_CHECK(!has_sequence(seq_id));
  prefix_query_tokens_ += static_cast<int64_t>(tokens.size());
  // The last token is always computed: its logits are what the request needs next.
  const int64_t max_blocks = (static_cast<int64_t>(tokens.size()) - 1) / shape_.block_size;
  const std::vector<int32_t> blocks = prefix_->lookup(tokens, max_blocks);
  if (blocks.empty()) return 0;
  SeqTable& t = tables_[seq_id];
  for (int32_t b : blocks) {
    pool_.retain(b);
    t.blocks.push_back(b);
  }
  t.n_indexed = static_cast<int64_t>(blocks.size());
  for (int64_t i = 0; i < t.n_indexed; ++i)
    t.last_key = PrefixCache::chain_key(t.last_key, tokens.data() + i * shape_.block_size, shape_.block_size);
  const int64_t hit = t.n_indexed * shape_.block_size;
  prefix_hit_tokens_ += hit;
  return hit;
}

void KvCache::cache_computed_blocks(int32_t seq_id, const std::vector<int32_t>& tokens, int64_t n_computed) {
  if (!prefix_) return;
  auto it = tables_.find(seq_id);
  if (it == tables_.end()) return;
  SeqTable& t = it->second;
  const int64_t full = std::min<int64_t>(n_computed / shape_.block_size, static_cast<int64_t>(t.blocks.size()));
  for (; t.n_indexed < full; ++t.n_indexed) {
    prefix_->insert(tokens, t.n_indexed, t.last_key, t.blocks[static_cast<size_t>(t.n_indexed)], pool_);
    t.last_key = PrefixCache::chain_key(t.last_key, tokens.data() + t.n_indexed * shape_.block_size, shape_.block_size);
  }
}

std::vector<uint64_t> KvCache::chain_keys(const std::vector<int32_t>& tokens, int64_t n_blocks) const {
  std::vector<uint64_t> keys(static_cast<size_t>(n_blocks));
  uint64_t key = 0;
  for (int64_t i = 0; i < n_blocks; ++i)
    keys[static_cast<size_t>(i)] = key = PrefixCache::chain_key(key, tokens.data() + i * shape_.block_size, shape_.block_size);
  return keys;
}

void KvCache::cut_index(SeqTable& t, const std::vector<int32_t>& tokens, int64_t n_blocks) const {
  if (t.n_indexed <= n_blocks) return;
  t.n_indexed = n_blocks;
  t.last_key = n_blocks > 0 ? chain_keys(tokens, n_blocks).back() : 0;
}

int64_t KvCache::truncate_to_blocks(int32_t seq_id, const std::vector<int32_t>& tokens, int64_t n_keep) {
  SeqTable& t = tables_.at(seq_id);
  const int64_t kept = std::min<int64_t>(n_keep / shape_.block_size, static_cast<int64_t>(t.blocks.size()));
  for (size_t i = static_cast<size_t>(kept); i < t.blocks.size(); ++i) pool_.release(t.blocks[i]);
  t.blocks.resize(static_cast<size_t>(kept));
  cut_index(t, tokens, kept);
  return kept * shape_.block_size;
}

Status KvCache::discard_positions(int32_t seq_id, const std::vector<int32_t>& tokens, int64_t n_cached, int64_t n_keep,
                                  int64_t n_discard, const RotateRows& rotate_k) {
  SeqTable& t = tables_.at(seq_id);
  const int64_t bs = shape_.block_size, new_end = n_cached - n_discard;
  FATHOM_CHECK(n_keep >= 0 && n_discard > 0 && new_end >= n_keep && n_cached <= capacity(seq_id) &&
               n_cached <= static_cast<int64_t>(tokens.size()));
  const int64_t first = n_keep / bs;               // the first block written
  const int64_t last = (new_end + bs - 1) / bs;    // blocks the sequence keeps
  // Blocks written are made this sequence's alone. One another sequence also holds is copied
  // (its rows, and any prefix-cache entry for it, stay as they are); one only the prefix cache
  // shares, under this sequence's entry, leaves the cache. Entries of blocks past the new end
  // stay: those rows do not change.
  const int64_t indexed = std::min(t.n_indexed, last);
  const std::vector<uint64_t> keys = chain_keys(tokens, indexed);
  auto cached_here = [&](int64_t i) {
    return prefix_ && i < indexed && prefix_->holds(keys[static_cast<size_t>(i)], t.blocks[static_cast<size_t>(i)]);
  };
  std::vector<int64_t> to_copy;
  for (int64_t i = first; i < last; ++i)
    if (pool_.ref_count(t.blocks[static_cast<size_t>(i)]) - (cached_here(i) ? 1 : 0) > 1) to_copy.push_back(i);
  const int32_t copies = static_cast<int32_t>(to_copy.size());
  if (copies > n_available_blocks())
    return error(ErrorCode::kOutOfMemory, strprintf("KV cache full: shifting the context needs %d private blocks, %d available",
                                                    copies, n_available_blocks()));
  for (int64_t i = first; i < indexed; ++i)
    if (pool_.ref_count(t.blocks[static_cast<size_t>(i)]) == 2 && cached_here(i))
      prefix_->remove(keys[static_cast<size_t>(i)], t.blocks[static_cast<size_t>(i)], pool_);
  cut_index(t, tokens, std::min(t.n_indexed, first));
  if (copies > pool_.n_free()) prefix_->evict(copies - pool_.n_free(), pool_);
  for (int64_t i : to_copy) {
    int32_t& block = t.blocks[static_cast<size_t>(i)];
    const int32_t copy = *pool_.allocate();
    for (int64_t l = 0; l < shape_.n_layer; ++l) {
      std::memcpy(k_data(l, copy, 0), k_data(l, block, 0), k_row_bytes() * static_cast<size_t>(bs));
      if (v_row_bytes() > 0) std::memcpy(v_data(l, copy, 0), v_data(l, block, 0), v_row_bytes() * static_cast<size_t>(bs));
    }
    pool_.release(block);
    block = copy;
  }
  // Rows move down in position order, a chunk at a time: a chunk's sources are all read before
  // its destinations (lower positions) are written, and later chunks read only higher positions.
  constexpr int64_t kChunk = 256;
  std::vector<float> rows(static_cast<size_t>(std::min(kChunk, new_end - n_keep) * shape_.k_width));
  for (int64_t l = 0; l < shape_.n_layer; ++l) {
    for (int64_t at = n_keep; at < new_end; at += kChunk) {
      const int64_t n = std::min(kChunk, new_end - at);
      for (int64_t j = 0; j < n; ++j) {
        const auto [block, slot] = locate(seq_id, at + j + n_discard);
        load_k(l, block, slot, rows.data() + j * shape_.k_width);
      }
      rotate_k(rows.data(), n);
      for (int64_t j = 0; j < n; ++j) {
        const auto [src_block, src_slot] = locate(seq_id, at + j + n_discard);
        const auto [dst_block, dst_slot] = locate(seq_id, at + j);
        quant::quantize_row_ref(shape_.k_type, rows.data() + j * shape_.k_width, k_data(l, dst_block, dst_slot), shape_.k_width);
        if (v_row_bytes() > 0) std::memcpy(v_data(l, dst_block, dst_slot), v_data(l, src_block, src_slot), v_row_bytes());
      }
    }
  }
  for (size_t i = static_cast<size_t>(last); i < t.blocks.size(); ++i) pool_.release(t.blocks[i]);
  t.blocks.resize(static_cast<size_t>(last));
  return Status::ok();
}

void KvCache::index_restored_block(const std::vector<int32_t>& prefix_tokens, int32_t block) {
  FATHOM_CHECK(prefix_ && !prefix_tokens.empty() && prefix_tokens.size() % static_cast<size_t>(shape_.block_size) == 0);
  const int64_t index = static_cast<int64_t>(prefix_tokens.size()) / shape_.block_size - 1;
  uint64_t parent_key = 0;
  for (int64_t i = 0; i < index; ++i)
    parent_key = PrefixCache::chain_key(parent_key, prefix_tokens.data() + i * shape_.block_size, shape_.block_size);
  // insert() retains the block unless that prefix is already cached; either way the caller's
  // reference is dropped, so the block ends up held by the cache alone or freed.
  prefix_->insert(prefix_tokens, index, parent_key, block, pool_);
  pool_.release(block);
}

KvCache::PrefixStats KvCache::prefix_stats() const {
  PrefixStats s;
  s.query_tokens = prefix_query_tokens_;
  s.hit_tokens = prefix_hit_tokens_;
  s.cached_blocks = prefix_ ? prefix_->n_cached() : 0;
  return s;
}

}  // namespace fathom
