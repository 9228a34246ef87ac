// On-disk constants of the GGUF container shared by the reader and the writer (internal to
// src/gguf). Layout of a file, all little-endian:
//   magic "GGUF" | u32 version | count n_tensors | count n_kv
//   n_kv x (string key | u32 value type | value)
//   n_tensors x (string name | u32 n_dims | n_dims x dim | u32 ggml type | u64 offset)
//   padding to `alignment` | tensor data, each tensor at its aligned offset
// where count, dim and the length prefix of strings and arrays are u32 in version 1 and u64
// from version 2 on.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

#include "gguf/gguf.h"

namespace fathom::gguf {

static_assert(std::endian::native == std::endian::little,
              "the GGUF reader/writer copy little-endian fields straight from memory");

inline constexpr uint8_t kMagic[4] = {'G', 'G', 'U', 'F'};
inline constexpr uint32_t kWriteVersion = 3;  // version the writer produces
inline constexpr uint32_t kMaxVersion = 3;    // newest version the reader understands
inline constexpr uint32_t kMaxValueTypeId = static_cast<uint32_t>(ValueType::kFloat64);
inline constexpr char kAlignmentKey[] = "general.alignment";

// Bytes of a scalar value of type t; 0 for strings and arrays, whose size is variable.
inline size_t scalar_size(ValueType t) {
  switch (t) {
    case ValueType::kUint8: case ValueType::kInt8: case ValueType::kBool: return 1;
    case ValueType::kUint16: case ValueType::kInt16: return 2;
    case ValueType::kUint32: case ValueType::kInt32: case ValueType::kFloat32: return 4;
    case ValueType::kUint64: case ValueType::kInt64: case ValueType::kFloat64: return 8;
    case ValueType::kString: case ValueType::kArray: return 0;
  }
  return 0;
}

inline bool is_power_of_two(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// Rounds offset up to a multiple of alignment (a power of two); false if that overflows.
inline bool align_up(uint64_t offset, uint64_t alignment, uint64_t* out) {
  const uint64_t rem = offset & (alignment - 1);
  if (rem == 0) {
    *out = offset;
    return true;
  }
  return !__builtin_add_overflow(offset, alignment - rem, out);
}

}  // namespace fathom::gguf
