// Reference kernels of the 3-bit i-quants IQ3_XXS and IQ3_S. A 256-value super-block has one fp16
// scale d; each 32-value sub-block an odd integer scale ls = 2s + 1 (s 4 bits); each group of
// four values a grid index (kIq3XxsGrid / kIq3SGrid, four magnitudes) and each value a sign bit.
//   IQ3_XXS: x = d * ls / 4 * grid value * sign; 8 indices then a 32-bit word per sub-block:
//            bits 7l..7l+6 hold the signs of values 8l..8l+7 (the 8th by parity, iq_sign_byte),
//            bits 28..31 hold s.
//   IQ3_S:   x = d * ls * grid value * sign; 9-bit indices (low 8 bits in qs, the 9th of index
//            8k + j in bit j of qh[k]), explicit sign bits (value i: bit i % 8 of signs[i / 8]),
//            s of sub-block k in nibble k % 2 of scales[k / 2].
// The quantizer searches, per super-block, the scales and grid entries that minimise the weighted
// squared error (weights: codebook_weights); it is fathom's own search, not ggml's, so the bytes
// differ from llama.cpp's while the error is comparable (docs/decisions.md).
// The dots against Q8_K sum integers per super-block and scale once, as ggml does; the
// per-super-block accumulation is an explicit fma so every kernel (src/backend/cpu) can repeat it
// bit for bit whatever the compiler would contract.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/codebook_search.h"
#include "quant/iq3_grids.h"
#include "quant/iq_signs.h"
#include "quant/quant_impl.h"
#include "quant/scale_search.h"

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

// ---- quantization ----

// Sub-block scales tried per sub-block before the super-block scale is fixed: the largest
// magnitude lands on the top level times kIq3FirstRatio .. kIq3LastRatio.
constexpr int kIq3ScaleTries = 16;
constexpr float kIq3FirstRatio = 0.55f, kIq3LastRatio = 1.35f;
// Super-block scales tried around the one giving the largest sub-block scale ls = 31, and odd
// scales tried on either side of each sub-block's rounded scale.
constexpr int kIq3SuperTries = 5;
constexpr float kIq3SuperStep = 0.03f;
constexpr int kIq3LsReach = 2;

// What the quantizer needs to know of a format: x = d * unit * ls * entry * sign.
struct Iq3Format {
  const Codebook& book;
  float unit;        // 1/4 (IQ3_XXS) or 1 (IQ3_S)
  float top_level;   // the grid's largest magnitude
  bool sign_parity;  // IQ3_XXS: each 8 values have an even number of negative signs
};

// One super-block's choices.
struct Iq3Choice {
  uint16_t d = 0;            // fp16 super-block scale
  int ls[8] = {};            // odd scale of each sub-block, 1..31
  uint16_t index[64] = {};   // grid entry of values 4g..4g+3
  bool negative[256] = {};   // stored sign of each value
};

// Weighted fit of one 32-value sub-block at a real scale: the best entry of each group for the
// targets a / scale, the error sum w (a - scale * v)^2 and the sums a least-squares rescale needs.
struct Iq3Fit {
  float error = 0;
  float sum_av = 0;  // sum w a v
  float sum_v2 = 0;  // sum w v^2
};

Iq3Fit fit_iq3_sub_block(const Codebook& book, const float* a, const float* w, float scale, uint16_t* index) {
  Iq3Fit fit;
  const float inverse = 1 / scale;
  for (int g = 0; g < 8; ++g) {
    float t[4];
    for (int j = 0; j < 4; ++j) t[j] = a[4 * g + j] * inverse;
    float err;
    const int e = book.search(t, w + 4 * g, &err);
    index[g] = static_cast<uint16_t>(e);
    fit.error += scale * scale * err;
    const float* v = book.entry(e);
    for (int j = 0; j < 4; ++j) {
      fit.sum_av += w[4 * g + j] * a[4 * g + j] * v[j];
      fit.sum_v2 += w[4 * g + j] * v[j] * v[j];
    }
  }
  return fit;
}

// The least-squares scale of the best of kIq3ScaleTries roundings of one sub-block (0 when the
// sub-block is empty).
float best_sub_block_scale(const Codebook& book, const float* a, const float* w, float top_level) {
  float amax = 0;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(a[j]));
  if (amax < kGroupMaxEps) return 0;
  float best_scale = amax / top_level, best_error = std::numeric_limits<float>::infinity();
  for (int i = 0; i < kIq3ScaleTries; ++i) {
    const float ratio =
        kIq3FirstRatio + (kIq3LastRatio - kIq3FirstRatio) * static_cast<float>(i) / (kIq3ScaleTries - 1);
    uint16_t index[8];
    const Iq3Fit fit = fit_iq3_sub_block(book, a, w, amax / (top_level * ratio), index);
    if (fit.sum_av <= 0 || fit.sum_v2 <= 0) continue;
    float sum_wa2 = 0;
    for (int j = 0; j < 32; ++j) sum_wa2 += w[j] * a[j] * a[j];
    const float error = sum_wa2 - fit.sum_av * fit.sum_av / fit.sum_v2;
    if (error < best_error) {
      best_error = error;
      best_scale = fit.sum_av / fit.sum_v2;
    }
  }
  return best_scale;
}

// Signed magnitudes a[256] the grid must approximate and the stored signs: |x|, except that in
// a sign-parity format each 8 values with an odd number of negatives store the cheapest value's
// sign wrongly (least w x^2), whose target becomes -|x| (the grid then picks its smallest level).
void iq3_targets(const float* x, const float* w, bool sign_parity, float* a, bool* negative) {
  for (int i = 0; i < 256; ++i) {
    a[i] = std::fabs(x[i]);
    negative[i] = x[i] < 0;
  }
  if (!sign_parity) return;
  for (int l = 0; l < 32; ++l) {
    int n_negative = 0, cheapest = 8 * l;
    for (int i = 8 * l; i < 8 * l + 8; ++i) {
      n_negative += negative[i];
      if (w[i] * x[i] * x[i] < w[cheapest] * x[cheapest] * x[cheapest]) cheapest = i;
    }
    if (n_negative % 2 == 0) continue;
    negative[cheapest] = !negative[cheapest];
    a[cheapest] = -a[cheapest];
  }
}

// The choices for one super-block: the sub-block scales that fit best, then kIq3SuperTries fp16
// super-block scales, each with the best odd ls near every sub-block's scale; the least total
// error wins.
void choose_iq3(const Iq3Format& f, const float* x, const float* w, Iq3Choice& out) {
  out = Iq3Choice{};
  float a[256];
  iq3_targets(x, w, f.sign_parity, a, out.negative);
  float scale[8], max_scale = 0;
  for (int k = 0; k < 8; ++k) {
    scale[k] = best_sub_block_scale(f.book, a + 32 * k, w + 32 * k, f.top_level);
    max_scale = std::max(max_scale, scale[k]);
  }
  if (max_scale == 0) return;
  float best_total = std::numeric_limits<float>::infinity();
  for (int i = 0; i < kIq3SuperTries; ++i) {
    const float factor = 1 + kIq3SuperStep * static_cast<float>(i - kIq3SuperTries / 2);
    const uint16_t d_bits = fp32_to_fp16(max_scale / (31 * f.unit) * factor);
    const float d = fp16_to_fp32(d_bits);
    if (!(d > 0) || !std::isfinite(d)) continue;
    Iq3Choice c;
    float total = 0;
    for (int k = 0; k < 8 && total < best_total; ++k) {
      const int rounded = 2 * clamp_int(nearest_int((scale[k] / (d * f.unit) - 1) / 2), 0, 15) + 1;
      float best = std::numeric_limits<float>::infinity();
      for (int ls = std::max(1, rounded - 2 * kIq3LsReach); ls <= std::min(31, rounded + 2 * kIq3LsReach); ls += 2) {
        uint16_t index[8];
        const float sub_scale = d * f.unit * static_cast<float>(ls);
        const Iq3Fit fit = fit_iq3_sub_block(f.book, a + 32 * k, w + 32 * k, sub_scale, index);
        if (fit.error < best || ls == std::max(1, rounded - 2 * kIq3LsReach)) {
          best = fit.error;
          c.ls[k] = ls;
          std::copy(index, index + 8, c.index + 8 * k);
        }
      }
      total += best;
    }
    if (total < best_total) {
      best_total = total;
      c.d = d_bits;
      std::copy(out.negative, out.negative + 256, c.negative);
      out = c;
    }
  }
}

void pack_iq3_xxs(const Iq3Choice& c, block_iq3_xxs& b) {
  b.d = c.d;
  for (int g = 0; g < 64; ++g) b.qs[g] = static_cast<uint8_t>(c.index[g]);
  for (int k = 0; k < 8; ++k) {
    uint32_t word = static_cast<uint32_t>((c.ls[k] - 1) / 2) << 28;
    for (int l = 0; l < 4; ++l)
      for (int j = 0; j < 7; ++j)
        if (c.negative[32 * k + 8 * l + j]) word |= 1u << (7 * l + j);
    std::memcpy(b.qs + kQK / 4 + 4 * k, &word, 4);
  }
}

void pack_iq3_s(const Iq3Choice& c, block_iq3_s& b) {
  b.d = c.d;
  for (int g = 0; g < 64; ++g) {
    b.qs[g] = static_cast<uint8_t>(c.index[g]);
    b.qh[g / 8] = static_cast<uint8_t>(b.qh[g / 8] | ((c.index[g] >> 8) << (g % 8)));
  }
  for (int i = 0; i < 256; ++i)
    if (c.negative[i]) b.signs[i / 8] = static_cast<uint8_t>(b.signs[i / 8] | (1 << (i % 8)));
  for (int k = 0; k < 8; ++k)
    b.scales[k / 2] = static_cast<uint8_t>(b.scales[k / 2] | (((c.ls[k] - 1) / 2) << (4 * (k % 2))));
}

}  // namespace

void quantize_iq3_xxs(const float* x, void* dst, int64_t n, const float* importance) {
  quantize_codebook_blocks<block_iq3_xxs>({iq3_xxs_codebook(), 0.25f, 62, true}, choose_iq3, pack_iq3_xxs, x, dst, n,
                                         importance);
}

void quantize_iq3_s(const float* x, void* dst, int64_t n, const float* importance) {
  quantize_codebook_blocks<block_iq3_s>({iq3_s_codebook(), 1.0f, 15, false}, choose_iq3, pack_iq3_s, x, dst, n, importance);
}

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
