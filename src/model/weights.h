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

}  // namespace fathom
