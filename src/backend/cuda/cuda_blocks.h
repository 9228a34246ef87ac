// GGUF block decoding shared by the CUDA kernels and the host: plain C++ that nvcc compiles for
// the device and g++ for tests/kernels/cuda_blocks_test.cpp, which holds every decoder bit-exact
// to quant::dequantize_row. So the kernels run exactly the code the host test verifies (up to
// nvcc contracting a * b - c into one fused multiply-add). The half/bfloat conversions and the
// K-quant scale unpacking are the project's own (core/fp16.h, quant/blocks.h), marked
// FATHOM_HOST_DEVICE so the kernels call the same functions.
//
// Unit of work: a group of 8 consecutive values of a row. A weight row of n values is n / 8
// groups; a 32-value block holds 4, a 256-value K-quant super-block 32 (one per warp lane), and
// a group never straddles a block, nor a sub-block scale of the K-quants.
#pragma once

#include <math.h>  // fabsf, fmaxf, roundf on host and device
#include <cstdint>

#include "core/dtype.h"
#include "core/fp16.h"
#include "core/host_device.h"
#include "quant/blocks.h"


namespace fathom::cuda {

constexpr int kGroupValues = 8;  // values one decoder call produces

// Decoder<T>: kValues values in kBytes bytes per block; group(block, g, out) writes values
// 8g .. 8g + 7 of the block. The float formats count 8 values as a block.
template <DType T>
struct Decoder;

template <>
struct Decoder<DType::F32> {
  static constexpr int kValues = 8;
  static constexpr int kBytes = 32;
  FATHOM_HOST_DEVICE static void group(const uint8_t* block, int, float* out) {
    for (int i = 0; i < 8; ++i) out[i] = reinterpret_cast<const float*>(block)[i];
  }
};

template <>
struct Decoder<DType::F16> {
  static constexpr int kValues = 8;
  static constexpr int kBytes = 16;
  FATHOM_HOST_DEVICE static void group(const uint8_t* block, int, float* out) {
    for (int i = 0; i < 8; ++i) out[i] = fp16_to_fp32(reinterpret_cast<const uint16_t*>(block)[i]);
  }
};

template <>
struct Decoder<DType::BF16> {
  static constexpr int kValues = 8;
  static constexpr int kBytes = 16;
  FATHOM_HOST_DEVICE static void group(const uint8_t* block, int, float* out) {
    for (int i = 0; i < 8; ++i) out[i] = bf16_to_fp32(reinterpret_cast<const uint16_t*>(block)[i]);
  }
};

template <>
struct Decoder<DType::Q4_0> {
  static constexpr int kValues = quant::kQK4_0;
  static constexpr int kBytes = sizeof(quant::block_q4_0);
  // Values 0..15 are the low nibbles of qs, 16..31 the high ones: groups 0, 1 low, 2, 3 high.
  FATHOM_HOST_DEVICE static void group(const uint8_t* block, int g, float* out) {
    const auto& b = *reinterpret_cast<const quant::block_q4_0*>(block);
    const float d = fp16_to_fp32(b.d);
    const uint8_t* qs = b.qs + 8 * (g % 2);
    const int shift = 4 * (g / 2);
    for (int i = 0; i < 8; ++i) out[i] = static_cast<float>(((qs[i] >> shift) & 0xF) - 8) * d;
  }
};

template <>
struct Decoder<DType::Q8_0> {
  static constexpr int kValues = quant::kQK8_0;
  static constexpr int kBytes = sizeof(quant::block_q8_0);
  FATHOM_HOST_DEVICE static void group(const uint8_t* block, int g, float* out) {
    const auto& b = *reinterpret_cast<const quant::block_q8_0*>(block);
    const float d = fp16_to_fp32(b.d);
    for (int i = 0; i < 8; ++i) out[i] = static_cast<float>(b.qs[8 * g + i]) * d;
  }
};

// q4_K/q5_K: sub-block j = g / 4 holds values 32j .. 32j + 31; chunk c = j / 2 of 64 values
// keeps them in the low (j even) or high (j odd) nibbles of qs[32c .. 32c + 31].
template <>
struct Decoder<DType::Q4_K> {
  static constexpr int kValues = quant::kQK;
  static constexpr int kBytes = sizeof(quant::block_q4_K);
  FATHOM_HOST_DEVICE static void group(const uint8_t* block, int g, float* out) {
    const auto& b = *reinterpret_cast<const quant::block_q4_K*>(block);
    const int j = g / 4;
    uint8_t scale, min;
    quant::unpack_scale_min_k4(j, b.scales, &scale, &min);
    const float d = fp16_to_fp32(b.d) * static_cast<float>(scale), m = fp16_to_fp32(b.dmin) * static_cast<float>(min);
    const uint8_t* qs = b.qs + 32 * (j / 2) + 8 * (g % 4);
    const int shift = 4 * (j % 2);
    for (int i = 0; i < 8; ++i) out[i] = d * static_cast<float>((qs[i] >> shift) & 0xF) - m;
  }
};

template <>
struct Decoder<DType::Q5_K> {
  static constexpr int kValues = quant::kQK;
  static constexpr int kBytes = sizeof(quant::block_q5_K);
  // As q4_K; the 5th bit of value 32j + l is bit j of qh[l].
  FATHOM_HOST_DEVICE static void group(const uint8_t* block, int g, float* out) {
    const auto& b = *reinterpret_cast<const quant::block_q5_K*>(block);
    const int j = g / 4, l0 = 8 * (g % 4);
    uint8_t scale, min;
    quant::unpack_scale_min_k4(j, b.scales, &scale, &min);
    const float d = fp16_to_fp32(b.d) * static_cast<float>(scale), m = fp16_to_fp32(b.dmin) * static_cast<float>(min);
    const uint8_t* qs = b.qs + 32 * (j / 2) + l0;
    const int shift = 4 * (j % 2);
    for (int i = 0; i < 8; ++i) {
      const int q = ((qs[i] >> shift) & 0xF) | (((b.qh[l0 + i] >> j) & 1) << 4);
      out[i] = d * static_cast<float>(q) - m;
    }
  }
};

template <>
struct Decoder<DType::Q6_K> {
  static constexpr int kValues = quant::kQK;
  static constexpr int kBytes = sizeof(quant::block_q6_K);
  // 128-value chunk c = g / 16 splits into quarters r = (g / 4) % 4 of 32 values: the low 4 bits
  // are the low (r < 2) or high nibbles of ql[64c + 32 (r % 2) + l], the top 2 bits are bits
  // 2r, 2r + 1 of qh[32c + l]. Scale k / 16 covers two groups.
  FATHOM_HOST_DEVICE static void group(const uint8_t* block, int g, float* out) {
    const auto& b = *reinterpret_cast<const quant::block_q6_K*>(block);
    const int c = g / 16, r = (g / 4) % 4, l0 = 8 * (g % 4);
    const float d = fp16_to_fp32(b.d) * static_cast<float>(b.scales[g / 2]);
    const uint8_t* ql = b.ql + 64 * c + 32 * (r % 2) + l0;
    const uint8_t* qh = b.qh + 32 * c + l0;
    const int shift = 4 * (r / 2);
    for (int i = 0; i < 8; ++i) {
      const int q = ((ql[i] >> shift) & 0xF) | (((qh[i] >> (2 * r)) & 3) << 4);
      out[i] = d * static_cast<float>(q - 32);
    }
  }
};

// The iq4_nl/iq4_xs codebook (quant::kIq4nlValues) as two words of eight int8 levels each, level
// k in byte k % 8: scalars, which device code may read where a namespace-scope constexpr array
// cannot be indexed. Made from the table itself, at compile time.
constexpr uint64_t pack_iq4nl_levels(int first) {
  uint64_t word = 0;
  for (int k = 7; k >= 0; --k) word = (word << 8) | static_cast<uint8_t>(quant::kIq4nlValues[first + k]);
  return word;
}
constexpr uint64_t kIq4nlLevelsLow = pack_iq4nl_levels(0);   // levels 0..7
constexpr uint64_t kIq4nlLevelsHigh = pack_iq4nl_levels(8);  // levels 8..15

// quant::kIq4nlValues[index] for index < 16.
FATHOM_HOST_DEVICE inline float iq4nl_level(int index) {
  const uint64_t word = index < 8 ? kIq4nlLevelsLow : kIq4nlLevelsHigh;
  return static_cast<float>(static_cast<int8_t>(static_cast<uint8_t>(word >> (8 * (index & 7)))));
}

// iq4_nl: q4_0's nibble order (groups 0, 1 low nibbles, 2, 3 high), each nibble a codebook index.
template <>
struct Decoder<DType::IQ4_NL> {
  static constexpr int kValues = quant::kQK4_NL;
  static constexpr int kBytes = sizeof(quant::block_iq4_nl);
  FATHOM_HOST_DEVICE static void group(const uint8_t* block, int g, float* out) {
    const auto& b = *reinterpret_cast<const quant::block_iq4_nl*>(block);
    const float d = fp16_to_fp32(b.d);
    const uint8_t* qs = b.qs + 8 * (g % 2);
    const int shift = 4 * (g / 2);
    for (int i = 0; i < 8; ++i) out[i] = d * iq4nl_level((qs[i] >> shift) & 0xF);
  }
};

// iq4_xs: sub-block j = g / 4 (32 values, scale d * iq4_xs_scale(j)) laid out as an iq4_nl
// block in qs[16j .. 16j + 15].
template <>
struct Decoder<DType::IQ4_XS> {
  static constexpr int kValues = quant::kQK;
  static constexpr int kBytes = sizeof(quant::block_iq4_xs);
  FATHOM_HOST_DEVICE static void group(const uint8_t* block, int g, float* out) {
    const auto& b = *reinterpret_cast<const quant::block_iq4_xs*>(block);
    const int j = g / 4;
    const float dl = fp16_to_fp32(b.d) * static_cast<float>(quant::iq4_xs_scale(b, j));
    const uint8_t* qs = b.qs + 16 * j + 8 * (g % 2);
    const int shift = 4 * ((g % 4) / 2);
    for (int i = 0; i < 8; ++i) out[i] = dl * iq4nl_level((qs[i] >> shift) & 0xF);
  }
};

// Group g of a row (g < n / 8).
template <DType T>
FATHOM_HOST_DEVICE inline void decode_group(const uint8_t* row, int64_t g, float* out) {
  constexpr int kPerBlock = Decoder<T>::kValues / kGroupValues;
  Decoder<T>::group(row + (g / kPerBlock) * Decoder<T>::kBytes, static_cast<int>(g % kPerBlock), out);
}

// Values per block of the weight types the matmul kernels decode (the float formats: a
// group), 0 for the others. A row must hold a whole number of such blocks.
constexpr int64_t matmul_block_values(DType t) {
  switch (t) {
    case DType::F32: case DType::F16: case DType::BF16: return kGroupValues;
    case DType::Q4_0: case DType::Q8_0: case DType::IQ4_NL: return 32;
    case DType::Q4_K: case DType::Q5_K: case DType::Q6_K: case DType::IQ4_XS: return 256;
    default: return 0;
  }
}

// ---- KV cache rows (kv/kv_cache.h) in their stored types ----------------------------------
// The attention kernel reads rows of f32, f16 or q8_0 (32-value blocks running over the whole
// row, so a head may start inside a block); bf16 and q4_0 caches attend on the CPU.
constexpr bool attention_reads(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::Q8_0; }

// Value e of a cache row stored as T.
template <DType T>
FATHOM_HOST_DEVICE inline float kv_value(const uint8_t* row, int64_t e) {
  static_assert(T == DType::F32 || T == DType::F16 || T == DType::Q8_0, "attention_reads(T)");
  if constexpr (T == DType::F32) {
    return reinterpret_cast<const float*>(row)[e];
  } else if constexpr (T == DType::F16) {
    return fp16_to_fp32(reinterpret_cast<const uint16_t*>(row)[e]);
  } else {
    const auto& b = reinterpret_cast<const quant::block_q8_0*>(row)[e / quant::kQK8_0];
    return static_cast<float>(b.qs[e % quant::kQK8_0]) * fp16_to_fp32(b.d);
  }
}

// One q8_0 block of a cache row as the reference quantizer makes it (quant::quantize_row_ref):
// qs[j] = round(x[j] / d) for the scale d = max |x| / 127, which the caller stores as f16 (the
// host's fp32_to_fp16 and the device's __float2half_rn both round to nearest even).
FATHOM_HOST_DEVICE inline float quantize_q8_0_block(const float* x, int8_t* qs) {
  float amax = 0.0f;
  for (int j = 0; j < quant::kQK8_0; ++j) amax = fmaxf(amax, fabsf(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < quant::kQK8_0; ++j) qs[j] = static_cast<int8_t>(roundf(x[j] * id));
  return d;
}

}  // namespace fathom::cuda
