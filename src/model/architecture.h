// An architecture is a function of config, weights and the op set (backend/backend.h). It never
// mentions dtypes' bit layouts, paging or threads: those live behind Backend and KvCache.
#pragma once

#include <memory>
#include <vector>

#include "backend/backend.h"
#include "core/status.h"
#include "gguf/gguf.h"
#include "kv/kv_cache.h"
#include "model/batch.h"
#include "model/config.h"

namespace fathom {

class Architecture {
 public:
  virtual ~Architecture() = default;
  // Cache layout for this architecture with a per-sequence limit of n_ctx tokens.
  virtual KvCacheShape kv_shape(int64_t n_ctx) const = 0;
  // Runs the batch; writes logits of the rows flagged in batch.logits, in batch order, into
  // logits ([n_logits, n_vocab]). The cache must already cover every token's position.
  virtual void forward(const Batch& batch, KvCache& kv, Backend& backend, float* logits) = 0;
  // Context shift: cached K rows (the cache layout, f32 [n_rows, k_width]) stored with RoPE at
  // positions p are rotated in place to p + delta, as if computed there. Host memory.
  virtual void rotate_keys(Backend& backend, float* k_rows, int64_t n_rows, int32_t delta) const = 0;
};

// The cache layout the architecture named in the config uses (Architecture::kv_shape), from the
// config alone: what memory checks need before any weight is bound.
KvCacheShape kv_cache_shape(const ModelConfig& config, int64_t n_ctx);

// Looks up the architecture named in the config and binds its weights from the file; a missing
// or mis-shaped tensor is an error naming it and the shape expected.
Expected<std::unique_ptr<Architecture>> make_architecture(const ModelConfig& config, const gguf::GgufFile& file);

}  // namespace fathom
