// Model quantization the way llama.cpp's llama-quantize does it: the same per-tensor type mix
// (which tensors keep more bits), the same fallbacks for rows that do not fit a block format,
// the same tensor order and metadata, so files written here load in llama.cpp and vice versa.
// The mix (quant/ftype.h) is documented in docs/quantization.md.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "quant/ftype.h"

namespace fathom::gguf {
class GgufFile;
}

namespace fathom::convert {

// Per-column importance of each matmul's input (llama.cpp's imatrix): for a tensor with ne[0]
// columns and ne[2] matrices (experts), values holds ne[0] * ne[2] means of x^2.
using ImportanceMap = std::map<std::string, std::vector<float>, std::less<>>;

struct QuantizeOptions {
  quant::FileType ftype;             // target (quant/ftype.h: its type mix)
  int n_threads = 0;                 // 0: all cores
  const ImportanceMap* imatrix = nullptr;  // optional importance per tensor name
  bool keep_output_f16 = false;      // output.weight (or the tied token_embd) stays F16
  // Progress after each tensor: (index from 1, count, name, type written, bytes written so far,
  // total output bytes).
  std::function<void(size_t, size_t, const std::string&, DType, uint64_t, uint64_t)> on_tensor;
  std::function<void(const std::string&)> on_warning;  // requantizing, fallbacks, missing imatrix
};

// Summary of a finished run, for the CLI.
struct QuantizeReport {
  uint64_t bytes_in = 0;                  // tensor bytes of the input
  uint64_t bytes_out = 0;                 // tensor bytes of the output
  std::map<std::string, int> type_counts; // tensors per output type name
  int n_requantized = 0;                  // tensors that were already quantized in the input
  int n_with_imatrix = 0;                 // tensors quantized with importance weights
};

// Quantizes `in` into out_path. Metadata is copied (split keys dropped), then
// general.quantization_version = 2 and general.file_type = ftype.id are set last, as
// llama-quantize does. Low-bit types llama.cpp only writes with an imatrix are refused without one.
Expected<QuantizeReport> quantize_model(const gguf::GgufFile& in, const std::string& out_path, const QuantizeOptions& options);

}  // namespace fathom::convert
