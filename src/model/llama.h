// Constructors of the architectures (one file each).
#pragma once

#include <memory>

#include "model/architecture.h"

namespace fathom {

Expected<std::unique_ptr<Architecture>> make_llama(const ModelConfig& config, const gguf::GgufFile& file);
Expected<std::unique_ptr<Architecture>> make_qwen2(const ModelConfig& config, const gguf::GgufFile& file);

}  // namespace fathom
