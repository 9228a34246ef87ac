// A loaded model: the mapped GGUF file, its typed config, the architecture bound to its
// weights, and the backend the weights are placed on. Weights are used in place from the map.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "gguf/gguf.h"
#include "kv/kv_cache.h"
#include "model/architecture.h"
#include "model/batch.h"
#include "model/config.h"

namespace fathom {

struct LoadOptions {
  int n_threads = 0;  // 0: all cores
};

class Model {
 public:
  static Expected<std::unique_ptr<Model>> load(const std::string& path, const LoadOptions& options);
  static Expected<std::unique_ptr<Model>> from_file(std::unique_ptr<gguf::GgufFile> file, const LoadOptions& options);

  const ModelConfig& config() const { return config_; }
  const gguf::GgufFile& file() const { return *file_; }
  Backend& backend() { return *backend_; }

  KvCacheShape kv_shape(int64_t n_ctx) const { return arch_->kv_shape(n_ctx); }
  // Validates the batch (token ids, positions continuing each sequence), reserves cache blocks,
  // runs the architecture and fills logits ([batch.n_logits(), n_vocab]). On error nothing ran.
  Status forward(const Batch& batch, KvCache& kv, std::vector<float>& logits);

 private:
  std::unique_ptr<gguf::GgufFile> file_;
  ModelConfig config_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Architecture> arch_;
};

}  // namespace fathom
