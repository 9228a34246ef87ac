// Reference kernels of the 32-value block formats (q4_0, q4_1, q5_0, q5_1, q8_0, q8_1).
// Rounding follows ggml's reference quantizers expression for expression, so our bytes match.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/quant_impl.h"
#include "quant/scale_search.h"

namespace fathom::quant::detail {

namespace {

// Largest |x| of a block and the signed value that has it (first one on ties).
struct SignedMax {
  float amax = 0;  // max |x|
  float max = 0;   // the x with that magnitude
};

SignedMax signed_max(const float* x, int n) {
  SignedMax r;
  for (int j = 0; j < n; ++j) {
    if (std::fabs(x[j]) > r.amax) {
      r.amax = std::fabs(x[j]);
      r.max = x[j];
    }
  }
  return r;
}

// The 5th bits of a q5 block as one little-endian word.
uint32_t load_qh(const uint8_t qh[4]) {
  return static_cast<uint32_t>(qh[0]) | static_cast<uint32_t>(qh[1]) << 8 | static_cast<uint32_t>(qh[2]) << 16 |
         static_cast<uint32_t>(qh[3]) << 24;
}

void store_qh(uint32_t v, uint8_t qh[4]) {
  for (int i = 0; i < 4; ++i) qh[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Unpacks a 32-value block's quants: nibble layout of q4_0/q4_1 plus optional 5th bits.
void unpack_nibbles(const uint8_t qs[16], uint32_t qh, int q[32]) {
  for (int j = 0; j < 16; ++j) {
    q[j] = (qs[j] & 0xF) | static_cast<int>(((qh >> j) & 1u) << 4);
    q[j + 16] = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
  }
}

// q4_0 with importance: weighted least-squares scale search (llama.cpp's imatrix approach);
// sigma2 keeps small weights from zeroing a value's influence entirely.
void quantize_q4_0_weighted(const float* x, block_q4_0* y, int64_t nb, const float* importance, float sigma2) {
  float weight[kQK4_0];
  int8_t L[kQK4_0];
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQK4_0;
    const float* qw = importance + i * kQK4_0;
    for (int j = 0; j < kQK4_0; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    const float d = make_qx_quants(kQK4_0, 8, xb, L, 1, weight);
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < 16; ++j) y[i].qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
  }
}

}  // namespace

void dequantize_q4_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const block_q4_0*>(src);
  for (int64_t i = 0; i < n / kQK4_0; ++i) {
    const float d = fp16_to_fp32(b[i].d);
    int q[32];
    unpack_nibbles(b[i].qs, 0, q);
    for (int j = 0; j < 32; ++j) dst[i * 32 + j] = static_cast<float>(q[j] - 8) * d;
  }
}

void dequantize_q4_1(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const block_q4_1*>(src);
  for (int64_t i = 0; i < n / kQK4_1; ++i) {
    const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
    int q[32];
    unpack_nibbles(b[i].qs, 0, q);
    for (int j = 0; j < 32; ++j) dst[i * 32 + j] = static_cast<float>(q[j]) * d + m;
  }
}

void dequantize_q5_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const block_q5_0*>(src);
  for (int64_t i = 0; i < n / kQK5_0; ++i) {
    const float d = fp16_to_fp32(b[i].d);
    int q[32];
    unpack_nibbles(b[i].qs, load_qh(b[i].qh), q);
    for (int j = 0; j < 32; ++j) dst[i * 32 + j] = static_cast<float>(q[j] - 16) * d;
  }
}

void dequantize_q5_1(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const block_q5_1*>(src);
  for (int64_t i = 0; i < n / kQK5_1; ++i) {
    const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
    int q[32];
    unpack_nibbles(b[i].qs, load_qh(b[i].qh), q);
    for (int j = 0; j < 32; ++j) dst[i * 32 + j] = static_cast<float>(q[j]) * d + m;
  }
}

void dequantize_q8_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const block_q8_0*>(src);
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < 32; ++j) dst[i * 32 + j] = static_cast<float>(b[i].qs[j]) * d;
  }
}

void dequantize_q8_1(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const block_q8_1*>(src);
  for (int64_t i = 0; i < n / kQK8_1; ++i) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < 32; ++j) dst[i * 32 + j] = static_cast<float>(b[i].qs[j]) * d;
  }
}

void quantize_q4_0(const float* x, void* dst, int64_t n, const float* importance) {
  auto* y = static_cast<block_q4_0*>(dst);
  const int64_t nb = n / kQK4_0;
  if (importance) {
    float sum_x2 = 0;
    for (int64_t i = 0; i < n; ++i) sum_x2 += x[i] * x[i];
    quantize_q4_0_weighted(x, y, nb, importance, sum_x2 / static_cast<float>(n));
    return;
  }
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQK4_0;
    // The largest-magnitude value lands exactly on -8, using the asymmetric range's extra step.
    const SignedMax m = signed_max(xb, kQK4_0);
    const float d = m.max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(xb[j] * id + 8.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(xb[j + 16] * id + 8.5f)));
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void quantize_q4_1(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<block_q4_1*>(dst);
  for (int64_t i = 0; i < n / kQK4_1; ++i) {
    const float* xb = x + i * kQK4_1;
    float min = xb[0], max = xb[0];
    for (int j = 1; j < kQK4_1; ++j) {
      min = std::min(min, xb[j]);
      max = std::max(max, xb[j]);
    }
    const float d = (max - min) / 15;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    y[i].m = fp32_to_fp16(min);
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>((xb[j] - min) * id + 0.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>((xb[j + 16] - min) * id + 0.5f)));
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void quantize_q5_0(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<block_q5_0*>(dst);
  for (int64_t i = 0; i < n / kQK5_0; ++i) {
    const float* xb = x + i * kQK5_0;
    const SignedMax m = signed_max(xb, kQK5_0);
    const float d = m.max / -16;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(31, static_cast<int>(static_cast<int8_t>(xb[j] * id + 16.5f)));
      const int q1 = std::min(31, static_cast<int>(static_cast<int8_t>(xb[j + 16] * id + 16.5f)));
      y[i].qs[j] = static_cast<uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= static_cast<uint32_t>((q0 & 0x10) >> 4) << j;
      qh |= static_cast<uint32_t>((q1 & 0x10) >> 4) << (j + 16);
    }
    store_qh(qh, y[i].qh);
  }
}

void quantize_q5_1(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<block_q5_1*>(dst);
  for (int64_t i = 0; i < n / kQK5_1; ++i) {
    const float* xb = x + i * kQK5_1;
    float min = xb[0], max = xb[0];
    for (int j = 1; j < kQK5_1; ++j) {
      min = std::min(min, xb[j]);
      max = std::max(max, xb[j]);
    }
    const float d = (max - min) / 31;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    y[i].m = fp32_to_fp16(min);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const int q0 = static_cast<uint8_t>((xb[j] - min) * id + 0.5f);
      const int q1 = static_cast<uint8_t>((xb[j + 16] - min) * id + 0.5f);
      y[i].qs[j] = static_cast<uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= static_cast<uint32_t>((q0 & 0x10) >> 4) << j;
      qh |= static_cast<uint32_t>((q1 & 0x10) >> 4) << (j + 16);
    }
    store_qh(qh, y[i].qh);
  }
}

void quantize_q8_0(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<block_q8_0*>(dst);
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    const float* xb = x + i * kQK8_0;
    float amax = 0;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < kQK8_0; ++j) y[i].qs[j] = static_cast<int8_t>(std::round(xb[j] * id));
  }
}

void quantize_q8_1(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<block_q8_1*>(dst);
  for (int64_t i = 0; i < n / kQK8_1; ++i) {
    const float* xb = x + i * kQK8_1;
    float amax = 0;
    for (int j = 0; j < kQK8_1; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    int sum = 0;
    for (int j = 0; j < kQK8_1; ++j) {
      y[i].qs[j] = static_cast<int8_t>(std::round(xb[j] * id));
      sum += y[i].qs[j];
    }
    y[i].s = fp32_to_fp16(static_cast<float>(sum) * d);
  }
}

float dot_q4_0_q8_0(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q4_0*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK4_0; ++i) {
    int q[32];
    unpack_nibbles(x[i].qs, 0, q);
    int sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += (q[j] - 8) * y[i].qs[j];
    sum += static_cast<float>(sumi) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
  }
  return sum;
}

float dot_q4_1_q8_1(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q4_1*>(w);
  const auto* y = static_cast<const block_q8_1*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK4_1; ++i) {
    int q[32];
    unpack_nibbles(x[i].qs, 0, q);
    int sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += q[j] * y[i].qs[j];
    // sum((q*d + m) * y) = d*dy*sum(q*qy) + m * (dy*sum(qy)), the last factor cached as s.
    sum += static_cast<float>(sumi) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) +
           fp16_to_fp32(x[i].m) * fp16_to_fp32(y[i].s);
  }
  return sum;
}

float dot_q5_0_q8_0(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q5_0*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK5_0; ++i) {
    int q[32];
    unpack_nibbles(x[i].qs, load_qh(x[i].qh), q);
    int sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += (q[j] - 16) * y[i].qs[j];
    sum += static_cast<float>(sumi) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
  }
  return sum;
}

float dot_q5_1_q8_1(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q5_1*>(w);
  const auto* y = static_cast<const block_q8_1*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK5_1; ++i) {
    int q[32];
    unpack_nibbles(x[i].qs, load_qh(x[i].qh), q);
    int sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += q[j] * y[i].qs[j];
    sum += static_cast<float>(sumi) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) +
           fp16_to_fp32(x[i].m) * fp16_to_fp32(y[i].s);
  }
  return sum;
}

float dot_q8_0_q8_0(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q8_0*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    int sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += x[i].qs[j] * y[i].qs[j];
    sum += static_cast<float>(sumi) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
  }
  return sum;
}

float dot_q8_1_q8_1(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q8_1*>(w);
  const auto* y = static_cast<const block_q8_1*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK8_1; ++i) {
    int sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += x[i].qs[j] * y[i].qs[j];
    sum += static_cast<float>(sumi) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
  }
  return sum;
}

}  // namespace fathom::quant::detail
