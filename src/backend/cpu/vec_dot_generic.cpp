// Portable kernels for every weight type. Each block is first decoded into a small int8 array and
// then multiplied with straight int32 loops, a shape compilers auto-vectorise on any target. The
// ISA files replace the hot types with hand-written vector code.
#include <cstring>

#include "backend/cpu/vec_dot_internal.h"
#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/quant.h"

namespace fathom::cpu::detail {

namespace {

using namespace fathom::quant;

// sum(a[i] * b[i]) over n int8 pairs.
inline int32_t dot_i8(const int8_t* a, const int8_t* b, int n) {
  int32_t s = 0;
  for (int i = 0; i < n; ++i) s += static_cast<int32_t>(a[i]) * b[i];
  return s;
}

// sum((nibble - offset) * y) over a q4 block, read straight from the packed bytes: decoding into
// a temporary first makes compilers emit byte stores that stall the following vector loads.
inline int32_t dot_nibbles(const uint8_t* qs, int offset, const int8_t* y) {
  int32_t s = 0;
  for (int j = 0; j < 16; ++j) s += ((qs[j] & 0xF) - offset) * y[j] + ((qs[j] >> 4) - offset) * y[j + 16];
  return s;
}

// 32 values of a q5 block (nibbles plus 5th bits from qh) minus `offset`.
inline void decode_nibbles(const uint8_t* qs, uint32_t qh, int offset, int8_t* q) {
  for (int j = 0; j < 16; ++j) {
    q[j] = static_cast<int8_t>(((qs[j] & 0xF) | (((qh >> j) & 1u) << 4)) - offset);
    q[j + 16] = static_cast<int8_t>(((qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4)) - offset);
  }
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;  // x86 and the other targets we build for are little-endian, as GGUF is
}

float dot_q4_0(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q4_0*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK4_0; ++i) {
    sum += static_cast<float>(dot_nibbles(x[i].qs, 8, y[i].qs)) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
  }
  return sum;
}

float dot_q4_1(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q4_1*>(w);
  const auto* y = static_cast<const block_q8_1*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK4_1; ++i) {
    sum += static_cast<float>(dot_nibbles(x[i].qs, 0, y[i].qs)) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) +
           fp16_to_fp32(x[i].m) * fp16_to_fp32(y[i].s);
  }
  return sum;
}

float dot_q5_0(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q5_0*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK5_0; ++i) {
    int8_t q[32];
    decode_nibbles(x[i].qs, load_u32(x[i].qh), 16, q);
    sum += static_cast<float>(dot_i8(q, y[i].qs, 32)) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
  }
  return sum;
}

float dot_q5_1(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q5_1*>(w);
  const auto* y = static_cast<const block_q8_1*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK5_1; ++i) {
    int8_t q[32];
    decode_nibbles(x[i].qs, load_u32(x[i].qh), 0, q);
    sum += static_cast<float>(dot_i8(q, y[i].qs, 32)) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) +
           fp16_to_fp32(x[i].m) * fp16_to_fp32(y[i].s);
  }
  return sum;
}

float dot_q8_0(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q8_0*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK8_0; ++i)
    sum += static_cast<float>(dot_i8(x[i].qs, y[i].qs, 32)) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
  return sum;
}

float dot_q8_1(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q8_1*>(w);
  const auto* y = static_cast<const block_q8_1*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK8_1; ++i)
    sum += static_cast<float>(dot_i8(x[i].qs, y[i].qs, 32)) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
  return sum;
}

// 256 2-bit values of q2_K/q3_K: value 128c + 32s + l is bits 2s of qs[32c + l].
inline void decode_2bit(const uint8_t* qs, int8_t* q) {
  for (int c = 0; c < 2; ++c)
    for (int s = 0; s < 4; ++s)
      for (int l = 0; l < 32; ++l) q[128 * c + 32 * s + l] = static_cast<int8_t>((qs[32 * c + l] >> (2 * s)) & 3);
}

float dot_q2_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q2_K*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int8_t q[256];
    decode_2bit(x[i].qs, q);
    int32_t isum = 0, imin = 0;
    for (int j = 0; j < 16; ++j) {
      isum += (x[i].scales[j] & 0xF) * dot_i8(q + 16 * j, y[i].qs + 16 * j, 16);
      imin += (x[i].scales[j] >> 4) * y[i].bsums[j];
    }
    sum += y[i].d * fp16_to_fp32(x[i].d) * static_cast<float>(isum) -
           y[i].d * fp16_to_fp32(x[i].dmin) * static_cast<float>(imin);
  }
  return sum;
}

float dot_q3_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q3_K*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int8_t q[256];
    decode_2bit(x[i].qs, q);
    for (int s = 0; s < 8; ++s)
      for (int l = 0; l < 32; ++l) q[32 * s + l] = static_cast<int8_t>(q[32 * s + l] - (((x[i].hmask[l] >> s) & 1) ? 0 : 4));
    int32_t isum = 0;
    for (int j = 0; j < 16; ++j) isum += q3_K_scale(j, x[i].scales) * dot_i8(q + 16 * j, y[i].qs + 16 * j, 16);
    sum += y[i].d * fp16_to_fp32(x[i].d) * static_cast<float>(isum);
  }
  return sum;
}

// q4_K and q5_K (qh non-null) blocks: 8 sub-blocks of 32 with 6-bit scales and mins.
inline float dot_k45_block(const uint8_t* qs, const uint8_t* qh, uint16_t d, uint16_t dmin, const uint8_t* packed,
                           const block_q8_K& y) {
  int8_t q[256];
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      int lo = qs[32 * c + l] & 0xF, hi = qs[32 * c + l] >> 4;
      if (qh) {
        lo |= ((qh[l] >> (2 * c)) & 1) << 4;
        hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
      }
      q[64 * c + l] = static_cast<int8_t>(lo);
      q[64 * c + 32 + l] = static_cast<int8_t>(hi);
    }
  uint8_t scales[8], mins[8];
  unpack_scales_mins_k4(packed, scales, mins);
  int32_t isum = 0, imin = 0;
  for (int j = 0; j < 8; ++j) {
    isum += scales[j] * dot_i8(q + 32 * j, y.qs + 32 * j, 32);
    imin += mins[j] * (y.bsums[2 * j] + y.bsums[2 * j + 1]);
  }
  return y.d * fp16_to_fp32(d) * static_cast<float>(isum) - y.d * fp16_to_fp32(dmin) * static_cast<float>(imin);
}

float dot_q4_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q4_K*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) sum += dot_k45_block(x[i].qs, nullptr, x[i].d, x[i].dmin, x[i].scales, y[i]);
  return sum;
}

float dot_q5_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q5_K*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) sum += dot_k45_block(x[i].qs, x[i].qh, x[i].d, x[i].dmin, x[i].scales, y[i]);
  return sum;
}

float dot_q6_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q6_K*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int8_t q[256];
    for (int c = 0; c < 2; ++c) {
      const uint8_t* ql = x[i].ql + 64 * c;
      const uint8_t* qh = x[i].qh + 32 * c;
      for (int l = 0; l < 32; ++l) {
        q[128 * c + l] = static_cast<int8_t>(((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32);
        q[128 * c + 32 + l] = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
        q[128 * c + 64 + l] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        q[128 * c + 96 + l] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
    }
    int32_t isum = 0;
    for (int j = 0; j < 16; ++j) isum += x[i].scales[j] * dot_i8(q + 16 * j, y[i].qs + 16 * j, 16);
    sum += y[i].d * fp16_to_fp32(x[i].d) * static_cast<float>(isum);
  }
  return sum;
}

float dot_q8_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q8_K*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) sum += x[i].d * y[i].d * static_cast<float>(dot_i8(x[i].qs, y[i].qs, kQK));
  return sum;
}

// Float rows: 8 independent partial sums so the loop vectorises without -ffast-math.
template <float (*Load)(const void*, int64_t)>
float dot_float_row(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const float*>(a);
  float part[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) part[l] += Load(w, i + l) * x[i + l];
  for (; i < n; ++i) part[0] += Load(w, i) * x[i];
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

inline float load_f32(const void* w, int64_t i) { return static_cast<const float*>(w)[i]; }
// Branch-free half -> float (exact, incl. subnormals, inf, NaN), so the f16 loop vectorises;
// core's fp16_to_fp32 normalises subnormals in a loop. Normal and special values: move the
// exponent and mantissa into place and rescale by 2^112 (inf/NaN land on exponent 255);
// subnormals: mantissa m under exponent 126 is the float 0.5 + m * 2^-24; subtract 0.5.
inline float half_to_float(uint16_t h) {
  const uint32_t two_w = static_cast<uint32_t>(h) << 17;  // sign shifted out
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t bits = (two_w >> 4) + (0xE0u << 23);
  float normalized;
  std::memcpy(&normalized, &bits, 4);
  normalized *= 0x1.0p-112f;
  bits = (two_w >> 17) | (126u << 23);
  float denormalized;
  std::memcpy(&denormalized, &bits, 4);
  denormalized -= 0.5f;
  uint32_t out_n, out_d;
  std::memcpy(&out_n, &normalized, 4);
  std::memcpy(&out_d, &denormalized, 4);
  const uint32_t out = sign | (two_w < (1u << 27) ? out_d : out_n);
  float f;
  std::memcpy(&f, &out, 4);
  return f;
}
inline float load_f16(const void* w, int64_t i) { return half_to_float(static_cast<const uint16_t*>(w)[i]); }
inline float load_bf16(const void* w, int64_t i) { return bf16_to_fp32(static_cast<const uint16_t*>(w)[i]); }

// Types whose portable kernel is the reference twin itself (its loops are already integer sums
// per block, and the codebook lookups do not vectorise as plain loops); the ISA files supply
// their vector kernels.
template <DType T>
float dot_reference(const void* w, const void* a, int64_t n) {
  return quant::vec_dot_ref(T, n, w, a);
}

void quantize_q8_0(const float* x, void* dst, int64_t n) { quant::quantize_row_ref(DType::Q8_0, x, dst, n); }
void quantize_q8_1(const float* x, void* dst, int64_t n) { quant::quantize_row_ref(DType::Q8_1, x, dst, n); }
void quantize_q8_K(const float* x, void* dst, int64_t n) { quant::quantize_row_ref(DType::Q8_K, x, dst, n); }

}  // namespace

void install_generic(Kernels& k) {
  set_dot(k, DType::F32, dot_rows<dot_float_row<load_f32>>, false);
  set_dot(k, DType::F16, dot_rows<dot_float_row<load_f16>>, false);
  set_dot(k, DType::BF16, dot_rows<dot_float_row<load_bf16>>, false);
  set_dot(k, DType::Q4_0, dot_rows<dot_q4_0>, false);
  set_dot(k, DType::Q4_1, dot_rows<dot_q4_1>, false);
  set_dot(k, DType::Q5_0, dot_rows<dot_q5_0>, false);
  set_dot(k, DType::Q5_1, dot_rows<dot_q5_1>, false);
  set_dot(k, DType::Q8_0, dot_rows<dot_q8_0>, false);
  set_dot(k, DType::Q8_1, dot_rows<dot_q8_1>, false);
  set_dot(k, DType::Q2_K, dot_rows<dot_q2_K>, false);
  set_dot(k, DType::Q3_K, dot_rows<dot_q3_K>, false);
  set_dot(k, DType::Q4_K, dot_rows<dot_q4_K>, false);
  set_dot(k, DType::Q5_K, dot_rows<dot_q5_K>, false);
  set_dot(k, DType::Q6_K, dot_rows<dot_q6_K>, false);
  set_dot(k, DType::Q8_K, dot_rows<dot_q8_K>, false);
  set_dot(k, DType::IQ2_XXS, dot_rows<dot_reference<DType::IQ2_XXS>>, false);
  set_dot(k, DType::IQ2_XS, dot_rows<dot_reference<DType::IQ2_XS>>, false);
  set_dot(k, DType::IQ2_S, dot_rows<dot_reference<DType::IQ2_S>>, false);
  set_dot(k, DType::IQ3_XXS, dot_rows<dot_reference<DType::IQ3_XXS>>, false);
  set_dot(k, DType::IQ3_S, dot_rows<dot_reference<DType::IQ3_S>>, false);
  set_dot(k, DType::IQ1_S, dot_rows<dot_reference<DType::IQ1_S>>, false);
  set_dot(k, DType::IQ1_M, dot_rows<dot_reference<DType::IQ1_M>>, false);
  set_dot(k, DType::IQ4_NL, dot_rows<dot_reference<DType::IQ4_NL>>, false);
  set_dot(k, DType::IQ4_XS, dot_rows<dot_reference<DType::IQ4_XS>>, false);
  set_dot(k, DType::TQ1_0, dot_rows<dot_reference<DType::TQ1_0>>, false);
  set_dot(k, DType::TQ2_0, dot_rows<dot_reference<DType::TQ2_0>>, false);
  k.quantize_q8_0 = quantize_q8_0;
  k.quantize_q8_1 = quantize_q8_1;
  k.quantize_q8_K = quantize_q8_K;
}

}  // namespace fathom::cpu::detail
