// Constructors of the DeepSeek MoE architectures (deepseek.cpp, deepseek2.cpp).
#pragma once

#include <memory>

#include "model/architecture.h"

namespace fathom {

Expected<std::unique_ptr<Architecture>> make_deepseek(const ModelConfig& config, const gguf::GgufFile& file);
Expected<std::unique_ptr<Architecture>> make_deepseek2(const ModelConfig& config, const gguf::GgufFile& file);

}  // namespace fathom
