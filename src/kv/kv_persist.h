// Saving the prefix cache to a file and restoring it in a later process (`fathom serve
// --kv-persist`), so a restarted server gets prefix hits on prompts it saw before.
//
// File layout (little-endian; format version kKvPersistVersion):
//   header   magic "FATHOMKV", u32 version, u64 model fingerprint, u32 K and u32 V element types
//            (GGUF type ids: 0 = f32, 1 = f16, 30 = bf16, 8 = q8_0, 2 = q4_0),
//            u32 block_size, i64 n_layer, k_width, v_width, u32 len + architecture bytes,
//            u64 n_entries, u64 checksum of the header bytes before it
//   entries  n_entries times, least recently used first:
//            u32 n_prefix_tokens (a multiple of block_size), i32 tokens[n_prefix_tokens],
//            per layer: K rows [block_size, k_width], then V rows [block_size, v_width], each in
//            its element type exactly as the cache stores it,
//            u64 checksum of the entry's bytes before it
//   trailer  magic "FKVEND\0\0", u64 n_entries; then end of file
// A file that does not match the cache (model, shape, element types, block size, version), is truncated,
// has trailing bytes or a bad checksum is rejected as a whole: restore() then leaves the cache
// exactly as it was and returns an error that says why.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/status.h"
#include "kv/kv_cache.h"

namespace fathom {

inline constexpr uint32_t kKvPersistVersion = 2;  // 2: K and V element types

// What ties a saved cache to the model that computed it. The KV shape and block size come from
// the cache itself; these are what the cache cannot know.
struct KvPersistModelKey {
  uint64_t fingerprint = 0;  // hash of the model file's identity (see Engine::create)
  std::string architecture;  // general.architecture, for the mismatch message and as a check
};

// Identity of a mapped model file without reading all of it: its size, where the tensor data
// starts, every header byte (metadata, tokenizer, tensor names, types, shapes and offsets), and
// 64 samples of 4 KiB spread over the tensor data (so re-synthesized or re-quantized weights
// with an identical header differ too). Independent of the file's path and time stamps.
uint64_t fingerprint_model_file(const uint8_t* data, size_t size, size_t data_offset);

struct KvPersistSaveStats {
  int64_t n_blocks = 0;  // cached blocks written
  int64_t n_bytes = 0;   // file size
};

struct KvPersistRestoreStats {
  int64_t n_entries = 0;          // blocks in the file
  int64_t n_restored = 0;         // blocks now indexed by the cache
  int64_t n_skipped_capacity = 0; // oldest blocks left out: the pool had no free block for them
  int64_t n_skipped_context = 0;  // prefixes longer than this cache's context
  int64_t n_skipped_orphan = 0;   // blocks whose parent prefix was not restored (unreachable)
};

// Writes every block the prefix cache indexes to `path` atomically (a temporary file in the same
// folder, renamed over `path`). The cache must have prefix caching enabled; it is not modified.
Expected<KvPersistSaveStats> save_prefix_cache(const KvCache& kv, const KvPersistModelKey& key, const std::string& path);

// Reads `path` into the prefix cache of `kv` (prefix caching enabled). Restored blocks come from
// the free list (nothing is evicted) and are held by the cache alone, so they are evictable like
// any cached block; the most recently used ones are kept when the pool cannot take them all.
// Any mismatch or damage: an error naming the file and the problem, and `kv` unchanged.
Expected<KvPersistRestoreStats> restore_prefix_cache(KvCache& kv, const KvPersistModelKey& key, const std::string& path);

}  // namespace fathom
