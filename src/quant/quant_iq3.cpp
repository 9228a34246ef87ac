// Reference kernels of the 3-bit i-quants IQ3_XXS and IQ3_S. A 256-value super-block has one fp16
// scale d; each 32-value sub-block an odd integer scale ls = 2s + 1 (s 4 bits); each group of
// four values a grid index (kIq3XxsGrid / kIq3SGrid, four magnitudes) and each value a sign bit.
//   IQ3_XXS: x = d * ls / 4 * grid value * sign; 8 indices then a 32-bit word per sub-block:
//            bits 7l..7l+6 hold the signs of values 8l..8l+7 (the 8th by parity, iq_sign_byte),
//            bits 28..31 hold s.
//   IQ3_S:   x = d * ls * grid value * sign; 9-bit indices (low 8 bits in qs, the 9th of index
//            8k + j in bit j of qh[k]), explicit sign bits (value i: bit i % 8 of signs[i / 8]),
//            s of sub-block k in nibble k % 2 of scales[k / 2].
// The dots against Q8_K sum integers per super-block and scale once, as ggml does; the
// per-super-block accumulation is an explicit fma so every kernel (src/backend/cpu) can repeat it
// bit for bit whatever the compiler would contract.
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/iq3_grids.h"
#include "quant/iq_signs.h"
#include "quant/quant_impl.h"

namespace fathom::quant::detail {

namespace {

// Four grid magnitudes with signs (bit j of `signs` set: value j negative) into q[0..3].
void put_signed(uint32_t entry, unsigned signs, int8_t* q) {
  for (int j = 0; j < 4; ++j) {
    const int v = static_cast<int>((entry >> (8 * j)) & 0xFF);
    q[j] = static_cast<int8_t>((signs >> j) & 1 ? -v : v);
  }
}

// Signed grid values q[256] of one IQ3_XXS super-block and the odd scale of each sub-block.
void decode_iq3_xxs(const block_iq3_xxs& b, int8_t* q, int* ls) {
  const uint8_t* indices = b.qs;
  const uint8_t* words = b.qs + kQK / 4;
  for (int k = 0; k < 8; ++k) {
    uint32_t word;
    std::memcpy(&word, words + 4 * k, 4);
    ls[k] = 2 * static_cast<int>(word >> 28) + 1;
    for (int l = 0; l < 4; ++l) {
      const unsigned signs = iq_sign_byte(static_cast<uint8_t>(word >> (7 * l)));
      put_signed(kIq3XxsGrid[indices[8 * k + 2 * l]], signs, q + 32 * k + 8 * l);
      put_signed(kIq3XxsGrid[indices[8 * k + 2 * l + 1]], signs >> 4, q + 32 * k + 8 * l + 4);
    }
  }
}

void decode_iq3_s(const block_iq3_s& b, int8_t* q, int* ls) {
  for (int k = 0; k < 8; ++k) {
    ls[k] = 2 * ((b.scales[k / 2] >> (4 * (k % 2))) & 0xF) + 1;
    for (int j = 0; j < 8; ++j) {
      const int index = b.qs[8 * k + j] | (((b.qh[k] >> j) & 1) << 8);
      const unsigned signs = b.signs[4 * k + j / 2] >> (4 * (j % 2));
      put_signed(kIq3SGrid[static_cast<size_t>(index)], signs, q + 32 * k + 4 * j);
    }
  }
}

// sum over sub-blocks of ls[k] * (q . y) on that sub-block.
int32_t scaled_sum(const int8_t* q, const int* ls, const int8_t* y) {
  int32_t total = 0;
  for (int k = 0; k < 8; ++k) {
    int32_t s = 0;
    for (int i = 32 * k; i < 32 * k + 32; ++i) s += q[i] * y[i];
    total += ls[k] * s;
  }
  return total;
}

// Both formats: x = d * unit * ls * q, with unit 1/4 for IQ3_XXS and 1 for IQ3_S.
template <typename Block, void (*Decode)(const Block&, int8_t*, int*)>
void dequantize_iq3(const void* src, float* dst, int64_t n, float unit) {
  const auto* x = static_cast<const Block*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    int8_t q[256];
    int ls[8];
    Decode(x[i], q, ls);
    const float d = fp16_to_fp32(x[i].d);
    for (int k = 0; k < 8; ++k) {
      const float dl = d * unit * static_cast<float>(ls[k]);
      for (int j = 0; j < 32; ++j) dst[256 * i + 32 * k + j] = dl * static_cast<float>(q[32 * k + j]);
    }
  }
}

template <typename Block, void (*Decode)(const Block&, int8_t*, int*)>
float dot_iq3(const void* w, const void* a, int64_t n, float unit) {
  const auto* x = static_cast<const Block*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int8_t q[256];
    int ls[8];
    Decode(x[i], q, ls);
    sum = std::fma(fp16_to_fp32(x[i].d) * y[i].d, static_cast<float>(scaled_sum(q, ls, y[i].qs)), sum);
  }
  return unit * sum;
}

}  // namespace

void dequantize_iq3_xxs(const void* src, float* dst, int64_t n) {
  dequantize_iq3<block_iq3_xxs, decode_iq3_xxs>(src, dst, n, 0.25f);
}

void dequantize_iq3_s(const void* src, float* dst, int64_t n) {
  dequantize_iq3<block_iq3_s, decode_iq3_s>(src, dst, n, 1.0f);
}

float dot_iq3_xxs_q8_K(const void* w, const void* a, int64_t n) {
  return dot_iq3<block_iq3_xxs, decode_iq3_xxs>(w, a, n, 0.25f);
}

float dot_iq3_s_q8_K(const void* w, const void* a, int64_t n) {
  return dot_iq3<block_iq3_s, decode_iq3_s>(w, a, n, 1.0f);
}

}  // namespace fathom::quant::detail
