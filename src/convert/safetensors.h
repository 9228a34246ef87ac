// Safetensors (Hugging Face's checkpoint format): reader and writer.
//
// Layout: u64 little-endian header length N; N bytes of JSON
//   {"__metadata__": {str: str}, "<name>": {"dtype": "BF16", "shape": [rows, cols],
//    "data_offsets": [begin, end]}, ...}
// then the data section; offsets are relative to its start (8 + N). The reader maps the file and
// checks everything a hostile file could lie about: N against the file size, the JSON, each
// dtype and shape (no overflow), offsets inside the data section and equal to shape x dtype size,
// and no two tensors overlapping. Tensor data is not aligned: read it with memcpy.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/mapped_file.h"
#include "core/status.h"

namespace fathom::convert {

enum class StDType { kF64, kF32, kF16, kBF16, kF8E4M3, kF8E5M2, kI64, kI32, kI16, kI8, kU8, kBool };

const char* st_dtype_name(StDType t);      // "F32", as the header spells it
size_t st_dtype_size(StDType t);            // bytes per element
std::optional<StDType> parse_st_dtype(std::string_view name);

struct StTensor {
  std::string name;             // e.g. "model.layers.0.self_attn.q_proj.weight"
  StDType dtype = StDType::kF32;
  std::vector<int64_t> shape;   // outermost first, as PyTorch: a Linear weight is [out, in]
  const uint8_t* data = nullptr;  // [n_bytes] inside the mapped file (unaligned)
  size_t n_bytes = 0;

  int64_t n_elements() const;
};

class SafetensorsFile {
 public:
  static Expected<std::unique_ptr<SafetensorsFile>> open(const std::string& path);
  // For tests and fuzzing: validates bytes already in memory.
  static Expected<std::unique_ptr<SafetensorsFile>> parse(std::unique_ptr<MappedFile> file);

  const std::string& path() const { return file_->path(); }
  const std::vector<StTensor>& tensors() const { return tensors_; }  // in data-offset order
  const StTensor* find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }  // __metadata__

 private:
  SafetensorsFile() = default;
  std::unique_ptr<MappedFile> file_;           // the whole file, mapped read-only
  std::vector<StTensor> tensors_;              // validated tensor entries
  std::map<std::string, size_t, std::less<>> index_;  // name -> index in tensors_
  std::map<std::string, std::string> metadata_;       // free-form __metadata__ strings
};

// DeepSeek-V3's FP8 format (OCP E4M3FN): 1 sign, 4 exponent (bias 7), 3 mantissa bits; no
// infinities; 0x7F and 0xFF are NaN; exponent 0 encodes subnormals m/8 * 2^-6.
float fp8_e4m3_to_f32(uint8_t v);

// out[n_elements] = the tensor's values as f32. F32, F16, BF16 and F8_E4M3 (raw, unscaled) are
// supported; other dtypes are kUnsupported.
Status st_to_f32(const StTensor& t, float* out);

// FP8 weights with 128x128 block scales (DeepSeek-V3 "weight_scale_inv"): for a [rows, cols]
// weight, w[r][c] = fp8(q[r][c]) * scale_inv[r / block][c / block]. scale_inv must be
// [ceil(rows / block), ceil(cols / block)] of F32/BF16/F16. out: [rows * cols].
Status dequant_fp8_blocks(const StTensor& weight, const StTensor& scale_inv, int64_t block, float* out);

// Builds a safetensors file (tests make tiny Hugging Face checkpoints with it).
class SafetensorsWriter {
 public:
  void add(std::string name, StDType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes);
  void add_f32(std::string name, std::vector<int64_t> shape, const float* values);  // stored F32
  void set_metadata(std::string key, std::string value);
  // Header padded with spaces to a multiple of 8 bytes, tensors in the order added.
  Expected<std::vector<uint8_t>> serialize() const;
  Status write(const std::string& path) const;

 private:
  struct Entry {
    std::string name;             // tensor name
    StDType dtype;                // element type
    std::vector<int64_t> shape;   // outermost first
    std::vector<uint8_t> bytes;   // [n_elements * dtype size] data
  };
  std::vector<Entry> entries_;                   // tensors in file order
  std::map<std::string, std::string> metadata_;  // __metadata__
};

}  // namespace fathom::convert
