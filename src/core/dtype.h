// Tensor element types, numbered exactly as GGUF/ggml numbers them (ggml_type), so a type id
// read from a file maps 1:1. Block formats store `block_size` values in `type_size` bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace fathom {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
};

struct DTypeTraits {
  const char* name;     // "q4_K" etc., as ggml prints it
  int64_t block_size;   // values per block (1 for plain types)
  size_t type_size;     // bytes per block
  bool is_quantized;
};

// Traits for a known type; nullopt for ids this build does not know (a file may carry them).
std::optional<DTypeTraits> dtype_traits(uint32_t type_id);
const DTypeTraits& traits(DType t);  // t must be a known type
const char* dtype_name(DType t);
// Parses "f32", "f16", "bf16", "q8_0", "q4_K" (case-insensitive).
std::optional<DType> parse_dtype(std::string_view name);

// Bytes for a row of n values; n must be a multiple of block_size.
inline size_t row_size(DType t, int64_t n) {
  const DTypeTraits& tr = traits(t);
  return static_cast<size_t>(n / tr.block_size) * tr.type_size;
}

constexpr int64_t kQK_K = 256;  // super-block size of the K-quants

}  // namespace fathom
