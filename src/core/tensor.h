// A non-owning view of a tensor in ggml's convention: ne[0] is the innermost (contiguous)
// dimension, so a weight matrix [n_out, n_in] has ne = {n_in, n_out, 1, 1} and each row of
// n_in values is stored contiguously in its dtype's block format.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace fathom {

struct TensorView {
  std::string name;                 // GGUF tensor name, e.g. "blk.0.attn_q.weight"
  DType dtype = DType::F32;         // element/block format of `data`
  std::array<int64_t, 4> ne{1, 1, 1, 1};  // extents, ne[0] innermost
  int n_dims = 0;                   // number of meaningful dims (1..4)
  const void* data = nullptr;       // first byte (mmapped file or owned buffer)

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  size_t row_bytes() const { return row_size(dtype, ne[0]); }  // bytes of one ne[0] row
  int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
  size_t n_bytes() const { return row_bytes() * static_cast<size_t>(n_rows()); }
  const uint8_t* row(int64_t i) const { return static_cast<const uint8_t*>(data) + row_bytes() * static_cast<size_t>(i); }
  std::string shape_string() const;  // "[4096, 11008]"
};

}  // namespace fathom
