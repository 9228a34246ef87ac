// A deepseek2 GGUF whose block_count includes DeepSeek-V3's NextN (MTP) layers: only the keys the
// layer counts need and one tensor, for the tests that the engine's config and plan's reader
// count those layers alike (tests/model/forward_test.cpp, tests/plan/model_gguf_test.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "gguf/gguf.h"

namespace fathom {

// 4 blocks of which n_nextn are NextN layers.
inline gguf::GgufWriter nextn_model(uint32_t n_nextn) {
  gguf::GgufWriter w;
  w.set_string("general.architecture", "deepseek2");
  w.set_u32("deepseek2.embedding_length", 8);
  w.set_u32("deepseek2.block_count", 4);
  w.set_u32("deepseek2.nextn_predict_layers", n_nextn);
  w.set_u32("deepseek2.attention.head_count", 2);
  w.set_u32("deepseek2.attention.kv_lora_rank", 4);
  w.set_u32("deepseek2.rope.dimension_count", 2);
  w.add_tensor_bytes("token_embd.weight", DType::F32, {8, 4}, std::vector<uint8_t>(8 * 4 * 4, 0));
  return w;
}

}  // namespace fathom
