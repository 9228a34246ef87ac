// The naive FP32 reference forward pass, used by tests only (never by the engine): every weight
// dequantized to float, plain loops, double accumulation. It is written independently of the
// optimized path so that the two can check each other; keep it obviously correct, not fast.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/moe_routing.h"
#include "core/status.h"
#include "model/config.h"

namespace fathom::gguf {
class GgufFile;
}

namespace fathom {

// Logits [n_tokens, n_vocab] (row t = the next-token logits after tokens[0..t]) for one sequence
// processed from position 0. Supports llama and qwen2 (dense, GQA, optional QKV bias, normal or
// NEOX RoPE with optional linear scaling and llama3 rope_freqs), deepseek (llama attention +
// DeepSeekMoE) and deepseek2 (MLA without weight absorption, either GGUF MLA convention, YaRN,
// DeepSeekMoE with softmax/sigmoid gating, bias and group-limited routing). Errors: unsupported
// arch or rope scaling (YaRN outside deepseek2), missing or misshapen tensors, token ids out of range.
// routing, when given (deepseek, deepseek2), receives the routed experts the reference chose:
// [MoE layer, in layer order][token], best first, weights as floats. A test feeds them to the
// engine (Backend::moe_route), so the comparison does not hinge on near ties between selection
// scores, which the engine's 8-bit activations may break the other way.
using ReferenceRouting = std::vector<std::vector<Route>>;
Expected<std::vector<float>> reference_forward(const gguf::GgufFile& file, const ModelConfig& config,
                                               const std::vector<int32_t>& tokens, ReferenceRouting* routing = nullptr);

}  // namespace fathom
