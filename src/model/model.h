// A loaded model: the mapped GGUF file, its typed config, the architecture bound to its
// weights, and the backend the weights are placed on. Weights are used in place from the map.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/backend_factory.h"
#include "gguf/gguf.h"
#include "kv/kv_cache.h"
#include "model/architecture.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/placement.h"

namespace fathom {

// The backend (n_threads, device, its options: backend/backend_factory.h), the placement, the file.
struct LoadOptions : BackendOptions {
  PlacementOptions placement{};  // which tensors go on the accelerator (--gpu-layers, --cpu-moe, --override-tensor)
  MapOptions map{};              // load(): the file mapped (default) or read, locked or not (--no-mmap, --mlock)
};

// The k largest logits of each logits row (Backend::top_candidates): what greedy and top-k
// sampling need, without reading whole rows back from a device.
struct TopLogits {
  int64_t k = 0;               // asked for; on return min(k, n_vocab)
  std::vector<int32_t> ids;    // [n_logits, k], largest first, equal values by lower id
  std::vector<float> values;   // [n_logits, k]
};

class Model {
 public:
  static Expected<std::unique_ptr<Model>> load(const std::string& path, const LoadOptions& options);
  static Expected<std::unique_ptr<Model>> from_file(std::unique_ptr<gguf::GgufFile> file, const LoadOptions& options);

  const ModelConfig& config() const { return config_; }
  const gguf::GgufFile& file() const { return *file_; }
  Backend& backend() { return *backend_; }
  // Where each tensor runs: all on the CPU unless an accelerator started (model/placement.h).
  const Placement& placement() const { return placement_; }

  KvCacheShape kv_shape(int64_t n_ctx) const { return arch_->kv_shape(n_ctx); }
  // Validates the batch (token ids, positions continuing each sequence), reserves cache blocks,
  // runs the architecture and fills logits ([batch.n_logits(), n_vocab]). On error nothing ran.
  Status forward(const Batch& batch, KvCache& kv, std::vector<float>& logits);
  // The same pass, but only each logits row's top.k largest logits come back (TopLogits).
  Status forward_top(const Batch& batch, KvCache& kv, TopLogits& top);
  // Context shift: whether cached keys can be re-rotated in the host cache. Not with an
  // accelerator, whose cache mirror would not see rows changed on the host.
  bool can_rotate_keys() const { return placement_.device == "cpu"; }
  // Rotates cached K rows ([n_rows, k_width] f32, RoPE at p) to p + delta (Architecture::rotate_keys).
  void rotate_keys(float* k_rows, int64_t n_rows, int32_t delta) { arch_->rotate_keys(*backend_, k_rows, n_rows, delta); }

 private:
  std::unique_ptr<gguf::GgufFile> file_;
  ModelConfig config_;
  Placement placement_;
  std::shared_ptr<Backend> backend_;  // shared: a PlacedBackend shares its CPU backend with the device's delegate
  std::unique_ptr<Architecture> arch_;
  // [n_logits, n_vocab] where forward_top's pass writes the logits; only each row's top.k is read
  // back (a device may leave the rest stale here)
  std::vector<float> top_logits_;

  Status check_batch(const Batch& batch, KvCache& kv);  // validates and reserves cache blocks
};

// One forward pass of `arch` on `backend`, bracketed by begin_forward / end_forward (backend.h),
// run a second time when the backend lost the first (a failed CUDA graph): the pass is
// idempotent, since it writes the same KV rows again. logits: [batch.n_logits(), n_vocab], on
// the host at return unless `top` is given, which gets each row's k largest instead (logits is
// then only the buffer the backend names them by). kUnavailable when the backend lost both.
Status run_forward(Architecture& arch, Backend& backend, const Batch& batch, KvCache& kv, int64_t n_vocab, float* logits,
                   TopLogits* top = nullptr);

// Weight bytes one decode step (one token) reads from memory: every tensor the forward pass
// uses (matrices, norms, biases), with token_embd counted as the one row get_rows reads unless
// it doubles as the output head (no output.weight: then all of it), and routed expert stacks
// (ffn_{gate,up,down}_exps) at n_expert_used / n_expert (shared experts in full). Tensors the
// forward pass does not run are left out: MTP/NextN blocks, and attn_kv_b where the split
// attn_k_b/attn_v_b exist. Divides the memory bandwidth into the decode speed bound.
uint64_t weight_bytes_per_token(const gguf::GgufFile& file, const ModelConfig& config);

// The same walk, also counting the weights one token multiplies with (matrix elements, MoE at
// n_expert_used experts; the embedding only when it is the output head): 2 x matmul_params is
// a token's FLOPs in the matrix products, the prefill's compute bound. include: only tensors
// whose name it accepts (e.g. those placed on one device); null: all.
struct TokenWeights {
  uint64_t bytes = 0;
  int64_t matmul_params = 0;
};
TokenWeights weights_per_token(const gguf::GgufFile& file, const ModelConfig& config,
                               const std::function<bool(const std::string& name)>& include = nullptr);

}  // namespace fathom
