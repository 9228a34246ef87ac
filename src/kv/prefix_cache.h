// Prefix caching over the paged KV cache: every full block of a sequence is keyed by the hash of
// all tokens from position 0 to the block's end (chained: hash(parent key, block tokens)), so two
// requests sharing a prompt prefix share its blocks. The cache itself holds one reference on each
// block it indexes; a block only the cache references is evictable, least recently used first.
// Entries keep their tokens, so a hash collision can never hand out the wrong block.
#pragma once

#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "kv/block_pool.h"

namespace fathom {

class PrefixCache {
 public:
  explicit PrefixCache(int32_t block_size) : block_size_(block_size) {}

  // Key of the block holding tokens [i*bs, (i+1)*bs), given the key of the block before it (0 for the first).
  static uint64_t chain_key(uint64_t parent, const int32_t* tokens, int32_t n);

  // Blocks of the longest cached prefix of `tokens` (whole blocks only), in order. Marks them
  // recently used; the caller retains them for the sequence.
  std::vector<int32_t> lookup(const std::vector<int32_t>& tokens, int64_t max_blocks);
  // Indexes block `block` as holding block number `index` of `tokens` (tokens[0, (index+1)*bs)
  // must all be computed). No-op if that prefix is already cached. Retains the block.
  void insert(const std::vector<int32_t>& tokens, int64_t index, uint64_t parent_key, int32_t block, BlockPool& pool);
  // Whether the entry under chain key `key` indexes `block`.
  bool holds(uint64_t key, int32_t block) const;
  // Drops the entry under `key` if it indexes `block` (its rows are about to change) and
  // releases the cache's reference; returns whether it did.
  bool remove(uint64_t key, int32_t block, BlockPool& pool);
  // Releases up to n least-recently-used blocks that only the cache holds; returns how many.
  int32_t evict(int32_t n, BlockPool& pool);
  int32_t n_evictable(const BlockPool& pool) const;
  int32_t n_cached() const { return static_cast<int32_t>(entries_.size()); }

  // Walks entries in LRU order (oldest first): (block, tokens of the whole prefix up to and including it).
  struct EntryView {
    int32_t block;
    const std::vector<int32_t>* prefix_tokens;
  };
  std::vector<EntryView> entries_lru() const;

 private:
  struct Entry {
    int32_t block;                       // KV block id holding this prefix's last block_size tokens
    std::vector<int32_t> prefix_tokens;  // all tokens from position 0 through this block (collision check)
    std::list<uint64_t>::iterator lru;   // position in lru_
  };
  int32_t block_size_;
  std::unordered_map<uint64_t, Entry> entries_;  // chain key -> entry
  std::list<uint64_t> lru_;                      // chain keys, least recently used at the front
};

}  // namespace fathom
