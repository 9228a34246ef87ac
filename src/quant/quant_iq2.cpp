// Reference kernels of the 2-bit i-quants IQ2_XXS, IQ2_XS and IQ2_S: decoding and dot products
// as ggml defines them, and a quantizer of our own (below the decoders). A 256-value super-block is 32 groups of 8 values; a
// group stores a grid index (8 magnitudes, iq2_grids.h) and 8 sign bits, and every 16 or 32
// values share a 4-bit scale s:
//   x = d * (0.5 + s) * 0.25 * grid[j] * sign[j]        (d: the fp16 super-block scale)
// The dot product with Q8_K activations keeps the integer form (0.5 + s) * 0.25 = (2s + 1) / 8:
//   sum over super-blocks of (d * y.d) * sum_k (2 s_k + 1) * sum_{i in k} q_i * y_i,  times 1/8,
// the integer sum per super-block exact, the float accumulation in block order.
//
// Group l of 32-value unit u (values 32u + 8l .. +7):
//   IQ2_XXS: the unit's 8 bytes are two little-endian words w0, w1: index = byte l of w0, 7 sign
//            bits = bits 7l.. of w1, s = w1 >> 28 for all 32 values;
//   IQ2_XS:  qs[4u + l] = 9-bit index | 7 sign bits << 9; s = scales[u] low nibble for groups
//            0-1, high nibble for groups 2-3;
//   IQ2_S:   index = qs[4u + l] | bits 2l, 2l+1 of qh[u] << 8, sign byte = qs[32 + 4u + l] (all
//            8 bits stored); scales as IQ2_XS.
// IQ2_XXS and IQ2_XS store 7 sign bits and derive the 8th (iq_signs.h).
//
// The quantizer, per super-block: weights w = importance * sqrt(sigma2 + x^2) (sigma2 = 2 mean x^2
// of the super-block) with an imatrix, x^2 without. Each scale unit (32 values for IQ2_XXS, 16 for
// the others) tries kIq2ScaleTries scales; at each, every group takes its best grid entry and
// signs (iq2_search.h, which also settles the parity of the 7-bit sign formats), and the unit's
// least-squares scale for those entries is scored; the best fit wins. The largest unit scale then
// sets d (on s = 15), each unit takes the 4-bit s nearest its scale or a neighbouring one, with its
// entries chosen again at the scale it will decode with, and d is refitted by least squares to
// the chosen entries while that lowers the super-block's weighted error.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/fp16.h"
#include "core/status.h"
#include "quant/blocks.h"
#include "quant/iq2_grids.h"
#include "quant/iq2_search.h"
#include "quant/iq_signs.h"
#include "quant/quant_impl.h"
#include "quant/scale_search.h"

namespace fathom::quant::detail {

namespace {

// A super-block decoded: signed magnitudes and one 4-bit scale per 16 values.
struct Iq2Decoded {
  int8_t q[kQK];      // grid magnitude with its sign, per value
  uint8_t scale[16];  // s of values 16k .. 16k+15
};

// Group of 8 values from a grid entry and its sign mask.
void put_group(uint64_t entry, uint8_t signs, int8_t* q) {
  for (int j = 0; j < 8; ++j) {
    const auto magnitude = static_cast<int8_t>(entry >> (8 * j));
    q[j] = (signs >> j) & 1 ? static_cast<int8_t>(-magnitude) : magnitude;
  }
}

uint32_t load_u32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;  // little-endian, as GGUF
}

void decode(const block_iq2_xxs& b, Iq2Decoded& out) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(b.qs);
  for (int u = 0; u < 8; ++u) {
    const uint32_t indices = load_u32(bytes + 8 * u), signs = load_u32(bytes + 8 * u + 4);
    for (int l = 0; l < 4; ++l)
      put_group(kIq2xxsGrid[(indices >> (8 * l)) & 0xFF], iq_sign_byte(static_cast<uint8_t>(signs >> (7 * l))),
                out.q + 32 * u + 8 * l);
    out.scale[2 * u] = out.scale[2 * u + 1] = static_cast<uint8_t>(signs >> 28);
  }
}

void decode(const block_iq2_xs& b, Iq2Decoded& out) {
  for (int g = 0; g < 32; ++g)
    put_group(kIq2xsGrid[b.qs[g] & 511], iq_sign_byte(static_cast<uint8_t>(b.qs[g] >> 9)), out.q + 8 * g);
  for (int u = 0; u < 8; ++u) {
    out.scale[2 * u] = b.scales[u] & 0xF;
    out.scale[2 * u + 1] = b.scales[u] >> 4;
  }
}

void decode(const block_iq2_s& b, Iq2Decoded& out) {
  for (int g = 0; g < 32; ++g) {
    const int high = (b.qh[g / 4] >> (2 * (g % 4))) & 3;
    put_group(kIq2sGrid[b.qs[g] | high << 8], b.qs[32 + g], out.q + 8 * g);
  }
  for (int u = 0; u < 8; ++u) {
    out.scale[2 * u] = b.scales[u] & 0xF;
    out.scale[2 * u + 1] = b.scales[u] >> 4;
  }
}

template <typename Block>
void dequantize(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const Block*>(src);
  Iq2Decoded dec;
  for (int64_t i = 0; i < n / kQK; ++i) {
    decode(x[i], dec);
    const float d = fp16_to_fp32(x[i].d);
    for (int k = 0; k < 16; ++k) {
      const float dk = d * (0.5f + dec.scale[k]) * 0.25f;
      for (int v = 16 * k; v < 16 * k + 16; ++v) dst[v] = dk * dec.q[v];
    }
    dst += kQK;
  }
}

template <typename Block>
float dot(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const Block*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  Iq2Decoded dec;
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    decode(x[i], dec);
    int32_t block_sum = 0;
    for (int k = 0; k < 16; ++k) {
      int32_t s = 0;
      for (int v = 16 * k; v < 16 * k + 16; ++v) s += dec.q[v] * y[i].qs[v];
      block_sum += (2 * dec.scale[k] + 1) * s;
    }
    // An explicit fused multiply-add, so the result does not depend on whether the compiler
    // contracts (the vector kernels reproduce it bit for bit).
    sum = std::fma(fp16_to_fp32(x[i].d) * y[i].d, static_cast<float>(block_sum), sum);
  }
  return 0.125f * sum;
}

// ---- quantizer ----

// Scales tried per unit: the unit's largest magnitude on lattice coordinate 30, 34, ..., 58
// (43 is the largest grid magnitude; beyond it the largest values clip, below it they round to
// a lower level, and either can fit the rest better).
constexpr int kIq2ScaleTries = 8;
constexpr float kIq2FirstCoordinate = 30.f, kIq2CoordinateStep = 4.f;
// Rounds of refitting d to the chosen entries.
constexpr int kIq2RefitRounds = 2;

// A super-block being quantized: its groups, and per group the entry chosen and the data's signs.
struct Iq2Work {
  DType type;
  int unit_size;                   // values sharing a 4-bit scale: 32 (IQ2_XXS) or 16
  Iq2Group groups[32];             // |x|, weights, parity need of each group of 8
  uint8_t negative[32];            // bit j: value j of the group is negative in the data
  Iq2Choice choice[32];            // entry and sums of each group
  float unit_scale[16];            // least-squares scale of each unit before the 4-bit rounding
  int scale_code[16];              // 4-bit s of each unit
};

int groups_per_unit(const Iq2Work& w) { return w.unit_size / 8; }
int n_units(const Iq2Work& w) { return kQK / w.unit_size; }

// Sets up groups from one super-block. Non-finite values (and importances) count as zero, so a
// bad value cannot spread beyond its own super-block's decoded values.
void prepare(const float* x, const float* importance, Iq2Work& w) {
  float xs[kQK], imp[kQK];
  float sum_x2 = 0;
  for (int i = 0; i < kQK; ++i) {
    xs[i] = std::isfinite(x[i]) ? x[i] : 0.f;
    imp[i] = importance && std::isfinite(importance[i]) && importance[i] > 0 ? importance[i] : 0.f;
    sum_x2 += xs[i] * xs[i];
  }
  const float sigma2 = 2 * sum_x2 / kQK;
  const bool seven_sign_bits = w.type != DType::IQ2_S;
  for (int u = 0; u < n_units(w); ++u) {
    const int begin = u * w.unit_size;
    float total = 0;
    float weight[32];
    for (int i = 0; i < w.unit_size; ++i) {
      const float v = xs[begin + i];
      weight[i] = importance ? imp[begin + i] * std::sqrt(sigma2 + v * v) : v * v;
      total += weight[i];
    }
    // A unit the imatrix gives no weight (inputs never active) still keeps its values' shape.
    if (total == 0)
      for (int i = 0; i < w.unit_size; ++i) weight[i] = xs[begin + i] * xs[begin + i];
    for (int i = 0; i < w.unit_size; ++i) {
      Iq2Group& g = w.groups[(begin + i) / 8];
      g.magnitude[i % 8] = std::fabs(xs[begin + i]);
      g.weight[i % 8] = weight[i];
    }
  }
  for (int k = 0; k < 32; ++k) {
    uint8_t negative = 0;
    for (int j = 0; j < 8; ++j) negative |= static_cast<uint8_t>((xs[8 * k + j] < 0) << j);
    w.negative[k] = negative;
    w.groups[k].flip_one = seven_sign_bits && (std::popcount(negative) & 1);
  }
}

// Chooses the entries of unit u's groups at `scale`; returns the unit's cost (weighted error
// minus sum w x^2), and A and B summed over the unit.
float choose_unit(Iq2Work& w, int u, float scale, Iq2Choice* out, float* sum_a, float* sum_b) {
  float a = 0, b = 0;
  for (int k = u * groups_per_unit(w); k < (u + 1) * groups_per_unit(w); ++k) {
    out[k] = iq2_search_fast(w.type, w.groups[k], scale);
    a += out[k].sum_wxg;
    b += out[k].sum_wg2;
  }
  if (sum_a) *sum_a = a;
  if (sum_b) *sum_b = b;
  return scale * (scale * b - 2 * a);
}

// The best least-squares scale of unit u over kIq2ScaleTries starting scales (0 for a unit with
// nothing to fit).
float fit_unit(Iq2Work& w, int u) {
  float amax = 0;
  for (int k = u * groups_per_unit(w); k < (u + 1) * groups_per_unit(w); ++k)
    for (int j = 0; j < 8; ++j) amax = std::max(amax, w.groups[k].magnitude[j]);
  if (amax < kGroupMaxEps) return 0;
  float best_score = 0, best_scale = 0;
  Iq2Choice trial[32];
  for (int t = 0; t < kIq2ScaleTries; ++t) {
    const float scale = amax / (kIq2FirstCoordinate + kIq2CoordinateStep * t);
    float a, b;
    choose_unit(w, u, scale, trial, &a, &b);
    // A / B fits the scale; the error then drops by A^2 / B below sum w x^2.
    if (a > 0 && b > 0 && a * a > best_score * b) {
      best_score = a * a / b;
      best_scale = a / b;
    }
  }
  return best_scale;
}

// Decoded scale of 4-bit code s under super-block scale d: d * (0.5 + s) * 0.25.
float unit_scale_of(float d, int s) { return d * (2 * s + 1) * 0.125f; }

// With d fixed, each unit takes the code (nearest to its fitted scale, or one either side) whose
// re-chosen entries give the least cost. Returns the super-block's cost.
float assign_codes(Iq2Work& w, float d) {
  float total = 0;
  Iq2Choice trial[32];
  for (int u = 0; u < n_units(w); ++u) {
    const int nearest = clamp_int(nearest_int((w.unit_scale[u] / d * 8 - 1) / 2), 0, 15);
    float best = std::numeric_limits<float>::max();
    const int first = std::max(0, nearest - 1);
    for (int s = first; s <= std::min(15, nearest + 1); ++s) {
      const float cost = choose_unit(w, u, unit_scale_of(d, s), trial, nullptr, nullptr);
      if (s == first || cost < best) {
        best = cost;
        w.scale_code[u] = s;
        for (int k = u * groups_per_unit(w); k < (u + 1) * groups_per_unit(w); ++k) w.choice[k] = trial[k];
      }
    }
    total += best;
  }
  return total;
}

// Fills w.choice and w.scale_code; returns d (0: the super-block is stored as zeros).
float quantize_super_block(Iq2Work& w) {
  float max_scale = 0;
  for (int u = 0; u < n_units(w); ++u) {
    w.unit_scale[u] = fit_unit(w, u);
    max_scale = std::max(max_scale, w.unit_scale[u]);
  }
  if (!(max_scale > 0)) return 0;
  // fp16 holds d up to 65504: larger values saturate there rather than decode as infinity.
  float d = fp16_to_fp32(fp32_to_fp16(std::min(max_scale * 8 / 31, 65504.f)));
  if (!(d > 0)) return 0;  // below fp16's range
  float cost = assign_codes(w, d);
  for (int round = 0; round < kIq2RefitRounds; ++round) {
    // With codes and entries fixed the error is quadratic in d: d = sum k A / sum k^2 B, k = (2s+1)/8.
    float num = 0, den = 0;
    for (int u = 0; u < n_units(w); ++u) {
      const float k = (2 * w.scale_code[u] + 1) * 0.125f;
      for (int g = u * groups_per_unit(w); g < (u + 1) * groups_per_unit(w); ++g) {
        num += k * w.choice[g].sum_wxg;
        den += k * k * w.choice[g].sum_wg2;
      }
    }
    if (!(num > 0 && den > 0)) break;
    const float refit = fp16_to_fp32(fp32_to_fp16(std::min(num / den, 65504.f)));
    if (!(refit > 0) || refit == d) break;
    Iq2Work trial = w;
    const float trial_cost = assign_codes(trial, refit);
    if (!(trial_cost < cost)) break;
    w = trial;
    d = refit;
    cost = trial_cost;
  }
  return d;
}

// Sign byte of group k as stored: the data's signs with the chosen flip applied.
uint8_t sign_byte(const Iq2Work& w, int k) {
  uint8_t s = w.negative[k];
  if (w.choice[k].flipped >= 0) s ^= static_cast<uint8_t>(1 << w.choice[k].flipped);
  return s;
}

void store(const Iq2Work& w, float d, block_iq2_xxs& b) {
  std::memset(&b, 0, sizeof(b));
  b.d = fp32_to_fp16(d);
  if (d == 0) return;
  auto* bytes = reinterpret_cast<uint8_t*>(b.qs);
  for (int u = 0; u < 8; ++u) {
    uint32_t indices = 0, signs = static_cast<uint32_t>(w.scale_code[u]) << 28;
    for (int l = 0; l < 4; ++l) {
      const int k = 4 * u + l;
      FATHOM_CHECK(std::popcount(sign_byte(w, k)) % 2 == 0);
      indices |= static_cast<uint32_t>(w.choice[k].index) << (8 * l);
      signs |= static_cast<uint32_t>(sign_byte(w, k) & 0x7F) << (7 * l);
    }
    std::memcpy(bytes + 8 * u, &indices, 4);
    std::memcpy(bytes + 8 * u + 4, &signs, 4);
  }
}

// The 16-value codes as IQ2_XS and IQ2_S hold them: two per byte, low nibble first.
void store_scales(const Iq2Work& w, uint8_t* scales) {
  for (int u = 0; u < 8; ++u) scales[u] = static_cast<uint8_t>(w.scale_code[2 * u] | w.scale_code[2 * u + 1] << 4);
}

void store(const Iq2Work& w, float d, block_iq2_xs& b) {
  std::memset(&b, 0, sizeof(b));
  b.d = fp32_to_fp16(d);
  if (d == 0) return;
  for (int k = 0; k < 32; ++k) {
    FATHOM_CHECK(std::popcount(sign_byte(w, k)) % 2 == 0);
    b.qs[k] = static_cast<uint16_t>(w.choice[k].index | (sign_byte(w, k) & 0x7F) << 9);
  }
  store_scales(w, b.scales);
}

void store(const Iq2Work& w, float d, block_iq2_s& b) {
  std::memset(&b, 0, sizeof(b));
  b.d = fp32_to_fp16(d);
  if (d == 0) return;
  for (int k = 0; k < 32; ++k) {
    b.qs[k] = static_cast<uint8_t>(w.choice[k].index & 0xFF);
    b.qh[k / 4] = static_cast<uint8_t>(b.qh[k / 4] | (w.choice[k].index >> 8) << (2 * (k % 4)));
    b.qs[32 + k] = sign_byte(w, k);
  }
  store_scales(w, b.scales);
}

template <typename Block>
void quantize(DType type, const float* x, void* dst, int64_t n, const float* importance) {
  auto* y = static_cast<Block*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i) {
    Iq2Work w;
    w.type = type;
    w.unit_size = type == DType::IQ2_XXS ? 32 : 16;
    prepare(x + i * kQK, importance ? importance + i * kQK : nullptr, w);
    const float d = quantize_super_block(w);
    store(w, d, y[i]);
  }
}

}  // namespace

void dequantize_iq2_xxs(const void* src, float* dst, int64_t n) { dequantize<block_iq2_xxs>(src, dst, n); }
void dequantize_iq2_xs(const void* src, float* dst, int64_t n) { dequantize<block_iq2_xs>(src, dst, n); }
void dequantize_iq2_s(const void* src, float* dst, int64_t n) { dequantize<block_iq2_s>(src, dst, n); }
float dot_iq2_xxs_q8_K(const void* w, const void* a, int64_t n) { return dot<block_iq2_xxs>(w, a, n); }
float dot_iq2_xs_q8_K(const void* w, const void* a, int64_t n) { return dot<block_iq2_xs>(w, a, n); }
float dot_iq2_s_q8_K(const void* w, const void* a, int64_t n) { return dot<block_iq2_s>(w, a, n); }
void quantize_iq2_xxs(const float* x, void* dst, int64_t n, const float* importance) {
  quantize<block_iq2_xxs>(DType::IQ2_XXS, x, dst, n, importance);
}
void quantize_iq2_xs(const float* x, void* dst, int64_t n, const float* importance) {
  quantize<block_iq2_xs>(DType::IQ2_XS, x, dst, n, importance);
}
void quantize_iq2_s(const float* x, void* dst, int64_t n, const float* importance) {
  quantize<block_iq2_s>(DType::IQ2_S, x, dst, n, importance);
}

}  // namespace fathom::quant::detail
