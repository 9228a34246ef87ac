// qwen2: DeepSeek-R1-Distill-Qwen. The llama graph (llama.cpp) with biases on the q/k/v
// projections and NEOX rotary pairs (x[i], x[i + n_rot/2]); ModelConfig sets the rope type from
// the architecture name, and the dense decoder binds the biases when present.
#include "model/llama.h"

namespace fathom {

Expected<std::unique_ptr<Architecture>> make_qwen2(const ModelConfig& config, const gguf::GgufFile& file) {
  if (!file.find_tensor("blk.0.attn_q.bias"))
    return error(ErrorCode::kInvalidFile, file.path() + ": qwen2 model without attn_q.bias tensors (is the architecture right?)");
  return make_llama(config, file);
}

}  // namespace fathom
