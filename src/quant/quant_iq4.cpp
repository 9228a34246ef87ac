// Reference kernels of the non-linear 4-bit formats (iq4_nl, iq4_xs) and the ternary formats
// (tq1_0, tq2_0). The quantizers make the same rounding decisions as ggml's, so the bytes we write
// are the ecosystem's; the dot products sum integers per block and accumulate floats as ggml's
// vector kernels do. The decoding rules are written next to the block structs in blocks.h.
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/quant_impl.h"
#include "quant/scale_search.h"

namespace fathom::quant::detail {

namespace {

// Scale candidates tried on either side of the one mapping the largest value onto -127.
constexpr int kIq4ScaleTries = 7;

// Index of the codebook level nearest to x; a tie goes to the larger level.
int nearest_iq4_index(float x) {
  if (x <= kIq4nlValues[0]) return 0;
  if (x >= kIq4nlValues[15]) return 15;
  int upper = 1;  // first level above x
  while (x >= kIq4nlValues[upper]) ++upper;
  return x - kIq4nlValues[upper - 1] < kIq4nlValues[upper] - x ? upper - 1 : upper;
}

// Per-value weights of a group: importance * sqrt(sigma2 + x^2) with an imatrix, x^2 without.
void group_weights(const float* x, const float* importance, float sigma2, int n, float* weight) {
  for (int j = 0; j < n; ++j) weight[j] = importance ? importance[j] * std::sqrt(sigma2 + x[j] * x[j]) : x[j] * x[j];
}

// Weighted sums sum(w q x) and sum(w q^2) of rounding x * inverse_scale to the codebook.
struct Projection {
  float sum_qx = 0;
  float sum_q2 = 0;
};

Projection project(const float* x, const float* weight, int n, float inverse_scale, uint8_t* levels) {
  Projection p;
  for (int j = 0; j < n; ++j) {
    const int l = nearest_iq4_index(inverse_scale * x[j]);
    if (levels) levels[j] = static_cast<uint8_t>(l);
    const float q = kIq4nlValues[l];
    p.sum_qx += weight[j] * q * x[j];
    p.sum_q2 += weight[j] * q * q;
  }
  return p;
}

// Best scale of one 32-value group: start with the largest magnitude on level -127, take the
// least-squares scale of that rounding, then try 2 * kIq4ScaleTries + 1 neighbouring inverse
// scales and keep the one whose least-squares fit explains the most weighted energy.
// Groups below kGroupMaxEps get scale 0.
float iq4_group_scale(const float* x, const float* weight, int n) {
  float amax = 0, max = 0;
  for (int j = 0; j < n; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  if (amax < kGroupMaxEps) return 0;
  const float first = -max / kIq4nlValues[0];
  Projection p = project(x, weight, n, 1 / first, nullptr);
  float d = p.sum_qx / p.sum_q2;
  float best = d * p.sum_qx;
  for (int t = -kIq4ScaleTries; t <= kIq4ScaleTries; ++t) {
    p = project(x, weight, n, (static_cast<float>(t) + kIq4nlValues[0]) / max, nullptr);
    if (p.sum_q2 > 0 && p.sum_qx * p.sum_qx > best * p.sum_q2) {
      d = p.sum_qx / p.sum_q2;
      best = d * p.sum_qx;
    }
  }
  return d;
}

// Nibble packing shared with q4_0: value j < 16 in the low nibble of byte j, j >= 16 in the high
// nibble of byte j - 16, per 32 values.
void pack_nibbles(const uint8_t* levels, int n, uint8_t* qs) {
  for (int g = 0; g < n / 32; ++g)
    for (int j = 0; j < 16; ++j)
      qs[16 * g + j] = static_cast<uint8_t>(levels[32 * g + j] | (levels[32 * g + 16 + j] << 4));
}

float sum_of_squares(const float* x, int n) {
  float s = 0;
  for (int j = 0; j < n; ++j) s += x[j] * x[j];
  return s;
}

// sum(kIq4nlValues[index] * y) over one 32-value group of nibbles (q4_0 layout).
int32_t dot_iq4_group(const uint8_t* qs, const int8_t* y) {
  int32_t s = 0;
  for (int j = 0; j < 16; ++j) s += kIq4nlValues[qs[j] & 0xF] * y[j] + kIq4nlValues[qs[j] >> 4] * y[j + 16];
  return s;
}

// The 256 trits (0..2) of a tq1_0 block in value order.
void decode_tq1_0(const block_tq1_0& b, int8_t* t) {
  for (int v = 0; v < 160; ++v) t[v] = static_cast<int8_t>(tq1_0_trit(b.qs[v % 32], v / 32));
  for (int u = 0; u < 80; ++u) t[160 + u] = static_cast<int8_t>(tq1_0_trit(b.qs[32 + u % 16], u / 16));
  for (int u = 0; u < 16; ++u) t[240 + u] = static_cast<int8_t>(tq1_0_trit(b.qh[u % 4], u / 4));
}

// The 256 2-bit fields (0..3) of a tq2_0 block in value order.
void decode_tq2_0(const block_tq2_0& b, int8_t* t) {
  for (int c = 0; c < 2; ++c)
    for (int l = 0; l < 4; ++l)
      for (int m = 0; m < 32; ++m) t[128 * c + 32 * l + m] = static_cast<int8_t>((b.qs[32 * c + m] >> (2 * l)) & 3);
}

// x = d * (t - 1) for the fields t of ternary blocks decoded by Decode.
template <typename Block, void (*Decode)(const Block&, int8_t*)>
void dequantize_ternary(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const Block*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = fp16_to_fp32(b[i].d);
    int8_t t[kQK];
    Decode(b[i], t);
    for (int v = 0; v < kQK; ++v) dst[v] = static_cast<float>(t[v] - 1) * d;
  }
}

// Ternary level of x / d: -1, 0, 1 stored as 0, 1, 2 (rounding half away from zero).
int ternary(float x, float inverse_scale) { return static_cast<int>(std::lround(x * inverse_scale)) + 1; }

// Base-3 digits t[0], t[stride], ... (n of them, most significant first) as the byte
// ceil(value * 256 / 3^5): the trits become the leading digits of a base-3 fraction.
uint8_t pack_trits(const int* t, int n) {
  int value = 0;
  for (int k = 0; k < n; ++k) value = value * 3 + t[k];
  for (int k = n; k < 5; ++k) value *= 3;
  return static_cast<uint8_t>((value * 256 + 242) / 243);
}

float absmax(const float* x, int n) {
  float amax = 0;
  for (int j = 0; j < n; ++j) amax = std::fmax(amax, std::fabs(x[j]));
  return amax;
}

}  // namespace

void dequantize_iq4_nl(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const block_iq4_nl*>(src);
  for (int64_t i = 0; i < n / kQK4_NL; ++i, dst += kQK4_NL) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < 16; ++j) {
      dst[j] = d * kIq4nlValues[b[i].qs[j] & 0xF];
      dst[j + 16] = d * kIq4nlValues[b[i].qs[j] >> 4];
    }
  }
}

void dequantize_iq4_xs(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const block_iq4_xs*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d = fp16_to_fp32(b[i].d);
    for (int g = 0; g < 8; ++g, dst += 32) {
      const float dl = d * static_cast<float>(iq4_xs_scale(b[i], g));
      const uint8_t* qs = b[i].qs + 16 * g;
      for (int j = 0; j < 16; ++j) {
        dst[j] = dl * kIq4nlValues[qs[j] & 0xF];
        dst[j + 16] = dl * kIq4nlValues[qs[j] >> 4];
      }
    }
  }
}

void dequantize_tq1_0(const void* src, float* dst, int64_t n) {
  dequantize_ternary<block_tq1_0, decode_tq1_0>(src, dst, n);
}

void dequantize_tq2_0(const void* src, float* dst, int64_t n) {
  dequantize_ternary<block_tq2_0, decode_tq2_0>(src, dst, n);
}

void quantize_iq4_nl(const float* x, void* dst, int64_t n, const float* importance) {
  auto* y = static_cast<block_iq4_nl*>(dst);
  for (int64_t i = 0; i < n / kQK4_NL; ++i) {
    const float* xb = x + i * kQK4_NL;
    float weight[kQK4_NL];
    group_weights(xb, importance ? importance + i * kQK4_NL : nullptr,
                  sum_of_squares(xb, kQK4_NL) * 2.f / kQK4_NL, kQK4_NL, weight);
    const float d = iq4_group_scale(xb, weight, kQK4_NL);
    y[i].d = fp32_to_fp16(d);
    uint8_t levels[kQK4_NL];
    project(xb, weight, kQK4_NL, d ? 1 / d : 0.f, levels);
    pack_nibbles(levels, kQK4_NL, y[i].qs);
  }
}

void quantize_iq4_xs(const float* x, void* dst, int64_t n, const float* importance) {
  auto* y = static_cast<block_iq4_xs*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float* xb = x + i * kQK;
    const float sigma2 = sum_of_squares(xb, kQK) * 2.f / kQK;
    float scales[8];
    float weight[32];
    float max_scale = 0, amax_scale = 0;
    for (int g = 0; g < 8; ++g) {
      group_weights(xb + 32 * g, importance ? importance + i * kQK + 32 * g : nullptr, sigma2, 32, weight);
      scales[g] = iq4_group_scale(xb + 32 * g, weight, 32);
      if (std::fabs(scales[g]) > amax_scale) {
        amax_scale = std::fabs(scales[g]);
        max_scale = scales[g];
      }
    }
    // The largest group scale lands on -32, the 6-bit scales' extra negative step.
    const float d = -max_scale / 32;
    const float id = d ? 1 / d : 0.f;
    std::memset(&y[i], 0, sizeof(block_iq4_xs));
    y[i].d = fp32_to_fp16(d);
    uint8_t levels[kQK];
    for (int g = 0; g < 8; ++g) {
      const int l = clamp_int(nearest_int(id * scales[g]), -32, 31);
      const float dl = d * static_cast<float>(l);
      project(xb + 32 * g, weight, 32, dl ? 1 / dl : 0.f, levels + 32 * g);
      const int stored = l + 32;
      y[i].scales_l[g / 2] = static_cast<uint8_t>(y[i].scales_l[g / 2] | ((stored & 0xF) << (4 * (g % 2))));
      y[i].scales_h = static_cast<uint16_t>(y[i].scales_h | ((stored >> 4) << (2 * g)));
    }
    pack_nibbles(levels, kQK, y[i].qs);
  }
}

void quantize_tq1_0(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<block_tq1_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float* xb = x + i * kQK;
    const float d = absmax(xb, kQK);
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    int t[5];
    for (int m = 0; m < 32; ++m) {
      for (int k = 0; k < 5; ++k) t[k] = ternary(xb[m + 32 * k], id);
      y[i].qs[m] = pack_trits(t, 5);
    }
    for (int m = 0; m < 16; ++m) {
      for (int k = 0; k < 5; ++k) t[k] = ternary(xb[160 + m + 16 * k], id);
      y[i].qs[32 + m] = pack_trits(t, 5);
    }
    for (int m = 0; m < 4; ++m) {
      for (int k = 0; k < 4; ++k) t[k] = ternary(xb[240 + m + 4 * k], id);
      y[i].qh[m] = pack_trits(t, 4);
    }
  }
}

void quantize_tq2_0(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<block_tq2_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float* xb = x + i * kQK;
    const float d = absmax(xb, kQK);
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int c = 0; c < 2; ++c)
      for (int m = 0; m < 32; ++m) {
        int byte = 0;
        for (int l = 0; l < 4; ++l) byte |= (ternary(xb[128 * c + 32 * l + m], id) & 3) << (2 * l);
        y[i].qs[32 * c + m] = static_cast<uint8_t>(byte);
      }
  }
}

float dot_iq4_nl_q8_0(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_iq4_nl*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK4_NL; ++i)
    sum += (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) * static_cast<float>(dot_iq4_group(x[i].qs, y[i].qs));
  return sum;
}

float dot_iq4_xs_q8_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_iq4_xs*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int32_t isum = 0;
    for (int g = 0; g < 8; ++g) isum += iq4_xs_scale(x[i], g) * dot_iq4_group(x[i].qs + 16 * g, y[i].qs + 32 * g);
    sum += (fp16_to_fp32(x[i].d) * y[i].d) * static_cast<float>(isum);
  }
  return sum;
}

namespace {

// sum((t - 1) * y) over a block of 256 ternary fields.
int32_t dot_ternary(const int8_t* t, const int8_t* y) {
  int32_t s = 0;
  for (int v = 0; v < kQK; ++v) s += (t[v] - 1) * y[v];
  return s;
}

// Ternary blocks decoded by Decode, dotted with q8_K: integers per block, then one float step.
template <typename Block, void (*Decode)(const Block&, int8_t*)>
float dot_ternary_q8_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const Block*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int8_t t[kQK];
    Decode(x[i], t);
    sum += static_cast<float>(dot_ternary(t, y[i].qs)) * (fp16_to_fp32(x[i].d) * y[i].d);
  }
  return sum;
}

}  // namespace

float dot_tq1_0_q8_K(const void* w, const void* a, int64_t n) {
  return dot_ternary_q8_K<block_tq1_0, decode_tq1_0>(w, a, n);
}

float dot_tq2_0_q8_K(const void* w, const void* a, int64_t n) {
  return dot_ternary_q8_K<block_tq2_0, decode_tq2_0>(w, a, n);
}

}  // namespace fathom::quant::detail
