#include "kv/prefix_cache.h"

#include <algorithm>

namespace fathom {

uint64_t PrefixCache::chain_key(uint64_t parent, const int32_t* tokens, int32_t n) {
  // FNV-1a over the parent key and the token ids; collisions are caught by the token check.
  uint64_t h = 1469598103934665603ull ^ parent;
  auto mix = [&h](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xffu;
      h *= 1099511628211ull;
    }
  };
  mix(parent);
  for (int32_t i = 0; i < n; ++i) mix(static_cast<uint32_t>(tokens[i]));
  return h;
}

std::vector<int32_t> PrefixCache::lookup(const std::vector<int32_t>& tokens, int64_t max_blocks) {
  std::vector<int32_t> blocks;
  uint64_t key = 0;
  for (int64_t i = 0; i < max_blocks; ++i) {
    const size_t end = static_cast<size_t>((i + 1) * block_size_);
    if (end > tokens.size()) break;
    key = chain_key(key, tokens.data() + i * block_size_, block_size_);
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.prefix_tokens.size() != end ||
        !std::equal(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(end), it->second.prefix_tokens.begin()))
      break;
    lru_.splice(lru_.end(), lru_, it->second.lru);
    blocks.push_back(it->second.block);
  }
  return blocks;
}

void PrefixCache::insert(const std::vector<int32_t>& tokens, int64_t index, uint64_t parent_key, int32_t block, BlockPool& pool) {
  const size_t end = static_cast<size_t>((index + 1) * block_size_);
  const uint64_t key = chain_key(parent_key, tokens.data() + index * block_size_, block_size_);
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    lru_.splice(lru_.end(), lru_, it->second.lru);
    return;
  }
  pool.retain(block);
  lru_.push_back(key);
  entries_.emplace(key, Entry{block, std::vector<int32_t>(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(end)),
                              std::prev(lru_.end())});
}

bool PrefixCache::holds(uint64_t key, int32_t block) const {
  auto it = entries_.find(key);
  return it != entries_.end() && it->second.block == block;
}

bool PrefixCache::remove(uint64_t key, int32_t block, BlockPool& pool) {
  if (!holds(key, block)) return false;
  auto it = entries_.find(key);
  lru_.erase(it->second.lru);
  entries_.erase(it);
  pool.release(block);
  return true;
}

int32_t PrefixCache::evict(int32_t n, BlockPool& pool) {
  int32_t evicted = 0;
  for (auto k = lru_.begin(); k != lru_.end() && evicted < n;) {
    auto it = entries_.find(*k);
    if (pool.ref_count(it->second.block) == 1) {
      pool.release(it->second.block);
      entries_.erase(it);
      k = lru_.erase(k);
      ++evicted;
    } else {
      ++k;
    }
  }
  return evicted;
}

int32_t PrefixCache::n_evictable(const BlockPool& pool) const {
  int32_t n = 0;
  for (const auto& [key, e] : entries_) n += pool.ref_count(e.block) == 1 ? 1 : 0;
  return n;
}

std::vector<PrefixCache::EntryView> PrefixCache::entries_lru() const {
  std::vector<EntryView> out;
  for (uint64_t key : lru_) {
    const Entry& e = entries_.at(key);
    out.push_back({e.block, &e.prefix_tokens});
  }
  return out;
}

}  // namespace fathom
