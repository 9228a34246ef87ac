#include "model/architecture.h"

#include "model/deepseek.h"
#include "model/dense_decoder.h"
#include "model/llama.h"
#include "model/mla.h"

namespace fathom {

KvCacheShape kv_cache_shape(const ModelConfig& config, int64_t n_ctx) {
  return config.arch == Arch::kDeepseek2 ? mla_kv_shape(config, n_ctx) : mha_kv_shape(config, n_ctx);
}

Expected<std::unique_ptr<Architecture>> make_architecture(const ModelConfig& config, const gguf::GgufFile& file) {
  switch (config.arch) {
    case Arch::kLlama: return make_llama(config, file);
    case Arch::kQwen2: return make_qwen2(config, file);
    case Arch::kDeepseek: return make_deepseek(config, file);
    case Arch::kDeepseek2: return make_deepseek2(config, file);
  }
  return error(ErrorCode::kInternal, "unhandled architecture");
}

}  // namespace fathom
