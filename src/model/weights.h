// Binding GGUF tensors to an architecture's weights with shape checks.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "gguf/gguf.h"

namespace fathom {

class WeightBinder {
 public:
  explicit WeightBinder(const gguf::GgufFile& file) : file_(file) {}

  // The tensor `name` with exactly shape ne (ne[0] innermost; trailing dims 1 may be omitted).
  Expected<TensorView> require(const std::string& name, std::vector<int64_t> ne) const;
  // Like require, but absence is fine (returns a view with data == nullptr).
  Expected<TensorView> optional(const std::string& name, std::vector<int64_t> ne) const;
  // A 1-D vector as f32 values (dequantized into `storage` unless it is already F32).
  Expected<const float*> require_f32(const std::string& name, int64_t n, std::vector<std::vector<float>>& storage) const;
  Expected<const float*> optional_f32(const std::string& name, int64_t n, std::vector<std::vector<float>>& storage) const;

 private:
  const gguf::GgufFile& file_;
};

// Block index of a "blk.N." tensor name, -1 for global tensors (token_embd, output, ...).
int64_t block_index(const std::string& name);

// Every matrix of the file a forward pass multiplies with, as the views the architectures pass
// to Backend::matmul (3-D expert tensors as one 2-D view per expert), for
// Backend::prepare_matmul_weights. Leaves out the token embedding (looked up by row) unless the
// output head is tied to it, and layers at or past n_layer (MTP/NextN layers the forward pass
// skips).
std::vector<TensorView> matmul_weight_views(const gguf::GgufFile& file, int64_t n_layer);

}  // namespace fathom
