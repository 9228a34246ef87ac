// Reference kernels of the 1-bit i-quants IQ1_S and IQ1_M. Each group of eight values is an entry
// of kIq1SGrid (values -1, 0, +1) picked by an 11-bit index, shifted by +-delta (kIq1SDelta) and
// scaled: x = d * ls * (grid value + delta), ls = 2s + 1 with a 3-bit s.
//   IQ1_S: per 32-value sub-block k, qh[k] holds the top 3 index bits of its four groups
//          (bits 3l..3l+2), s (bits 12..14) and the delta sign (bit 15, set: -delta); d is fp16.
//   IQ1_M: per 16 values a 3-bit s (sub-block k: bits 6(k%2)..+2 and +3..+5 of scale word k/2);
//          per 8 values the top 3 index bits and the delta sign (nibble l%2 of qh[2k + l/2]:
//          bits 0..2 index, bit 3 sign); the fp16 d is the top nibbles of the four scale words.
// The quantizer searches, per super-block, the scales, delta signs and grid entries that minimise
// the weighted squared error (weights: codebook_weights); it is fathom's own search, not ggml's
// (docs/decisions.md).
// The dots against Q8_K sum integers per super-block, the delta part from sums of the
// activations (Q8_K's bsums for IQ1_S), and scale once, as ggml does; the
// per-super-block accumulation is an explicit fma so every kernel (src/backend/cpu) can repeat it
// bit for bit whatever the compiler would contract.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/codebook_search.h"
#include "quant/iq1_grids.h"
#include "quant/quant_impl.h"
#include "quant/scale_search.h"

namespace fathom::quant::detail {

namespace {

// One super-block decoded: grid values, integer scale per 16 values, delta sign per 8 values.
struct Iq1Block {
  float d;        // super-block scale
  int8_t q[256];  // grid values -1, 0, +1
  int ls[16];     // odd scale of values 16j..16j+15
  int delta[32];  // +1 or -1: sign of the delta of values 8g..8g+7
};

void put_group(int index, int8_t* q) {
  const uint64_t entry = kIq1SGrid[static_cast<size_t>(index)];
  for (int j = 0; j < 8; ++j) q[j] = static_cast<int8_t>(static_cast<uint8_t>(entry >> (8 * j)));
}

void decode_iq1_s(const block_iq1_s& b, Iq1Block& out) {
  out.d = fp16_to_fp32(b.d);
  for (int k = 0; k < 8; ++k) {
    const unsigned h = b.qh[k];
    out.ls[2 * k] = out.ls[2 * k + 1] = 2 * static_cast<int>((h >> 12) & 7) + 1;
    for (int l = 0; l < 4; ++l) {
      put_group(b.qs[4 * k + l] | static_cast<int>(((h >> (3 * l)) & 7) << 8), out.q + 32 * k + 8 * l);
      out.delta[4 * k + l] = h & 0x8000 ? -1 : 1;
    }
  }
}

void decode_iq1_m(const block_iq1_m& b, Iq1Block& out) {
  uint16_t words[4];
  std::memcpy(words, b.scales, sizeof(words));
  out.d = fp16_to_fp32(iq1_m_scale_bits(words));
  for (int k = 0; k < 8; ++k) {
    const unsigned w = words[k / 2] >> (6 * (k % 2));
    out.ls[2 * k] = 2 * static_cast<int>(w & 7) + 1;
    out.ls[2 * k + 1] = 2 * static_cast<int>((w >> 3) & 7) + 1;
    for (int l = 0; l < 4; ++l) {
      const unsigned nibble = (b.qh[2 * k + l / 2] >> (4 * (l % 2))) & 0xF;
      put_group(b.qs[4 * k + l] | static_cast<int>((nibble & 7) << 8), out.q + 32 * k + 8 * l);
      out.delta[4 * k + l] = nibble & 8 ? -1 : 1;
    }
  }
}

void dequantize_iq1(const Iq1Block& b, float delta, float* dst) {
  for (int i = 0; i < 256; ++i) {
    const float dl = b.d * static_cast<float>(b.ls[i / 16]);
    dst[i] = dl * (static_cast<float>(b.q[i]) + (b.delta[i / 8] < 0 ? -delta : delta));
  }
}

// sum ls * (q . y) over the block.
int32_t grid_sum(const Iq1Block& b, const int8_t* y) {
  int32_t total = 0;
  for (int j = 0; j < 16; ++j) {
    int32_t s = 0;
    for (int i = 16 * j; i < 16 * j + 16; ++i) s += b.q[i] * y[i];
    total += b.ls[j] * s;
  }
  return total;
}

// ---- quantization ----

// Unit scales tried per scale unit before the super-block scale is fixed: the largest magnitude
// lands on (1 + delta) times kIq1FirstRatio .. kIq1LastRatio (ternary values clip much more than
// the 3-bit grids' do).
constexpr int kIq1ScaleTries = 16;
constexpr float kIq1FirstRatio = 0.7f, kIq1LastRatio = 2.8f;
// Super-block scales tried around the one giving the largest unit scale ls = 15, and odd scales
// tried on either side of each unit's rounded scale.
constexpr int kIq1SuperTries = 5;
constexpr float kIq1SuperStep = 0.04f;
constexpr int kIq1LsReach = 2;

// What the quantizer needs to know of a format: x = d * ls * (entry + delta * sign).
struct Iq1Format {
  int unit_values;       // values sharing one ls: 32 (IQ1_S) or 16 (IQ1_M)
  bool delta_per_group;  // IQ1_M: a delta sign per 8 values; IQ1_S: one per unit
  float delta;
};

// One super-block's choices.
struct Iq1Choice {
  uint16_t d = 0;           // fp16 super-block scale
  int ls[16] = {};          // odd scale of each 16 values, 1..15 (IQ1_S: equal in pairs)
  uint16_t index[32] = {};  // grid entry of values 8g..8g+7
  bool minus[32] = {};      // delta sign of values 8g..8g+7 (IQ1_S: equal in fours)
};

// Weighted fit of one unit at a real scale: for each delta sign the best entry of each group for
// the targets x / scale -+ delta; then the sign (per unit or per group) with the least error.
struct Iq1Fit {
  float error = 0;
  float sum_xv = 0;  // sum w x v, v = entry + signed delta
  float sum_v2 = 0;  // sum w v^2
};

Iq1Fit fit_iq1_unit(const Iq1Format& f, const float* x, const float* w, float scale, uint16_t* index, bool* minus) {
  const Codebook& book = iq1_codebook();
  const int n_groups = f.unit_values / 8;
  int entry[4][2];
  float err[4][2];
  const float inverse = 1 / scale;
  for (int g = 0; g < n_groups; ++g)
    for (int sign = 0; sign < 2; ++sign) {
      const float delta = sign ? -f.delta : f.delta;
      float t[8];
      for (int j = 0; j < 8; ++j) t[j] = x[8 * g + j] * inverse - delta;
      entry[g][sign] = book.search(t, w + 8 * g, &err[g][sign]);
    }
  int unit_sign = 0;
  if (!f.delta_per_group) {
    float total[2] = {0, 0};
    for (int g = 0; g < n_groups; ++g) {
      total[0] += err[g][0];
      total[1] += err[g][1];
    }
    unit_sign = total[1] < total[0];
  }
  Iq1Fit fit;
  for (int g = 0; g < n_groups; ++g) {
    const int sign = f.delta_per_group ? err[g][1] < err[g][0] : unit_sign;
    index[g] = static_cast<uint16_t>(entry[g][sign]);
    minus[g] = sign;
    fit.error += scale * scale * err[g][sign];
    const float* e = book.entry(entry[g][sign]);
    for (int j = 0; j < 8; ++j) {
      const float v = e[j] + (sign ? -f.delta : f.delta);
      fit.sum_xv += w[8 * g + j] * x[8 * g + j] * v;
      fit.sum_v2 += w[8 * g + j] * v * v;
    }
  }
  return fit;
}

// The least-squares scale of the best of kIq1ScaleTries roundings of one unit (0 when empty).
float best_unit_scale(const Iq1Format& f, const float* x, const float* w) {
  float amax = 0, sum_wx2 = 0;
  for (int j = 0; j < f.unit_values; ++j) {
    amax = std::max(amax, std::fabs(x[j]));
    sum_wx2 += w[j] * x[j] * x[j];
  }
  if (amax < kGroupMaxEps) return 0;
  const float top = 1 + f.delta;
  float best_scale = amax / top, best_error = std::numeric_limits<float>::infinity();
  for (int i = 0; i < kIq1ScaleTries; ++i) {
    const float ratio =
        kIq1FirstRatio + (kIq1LastRatio - kIq1FirstRatio) * static_cast<float>(i) / (kIq1ScaleTries - 1);
    uint16_t index[4];
    bool minus[4];
    const Iq1Fit fit = fit_iq1_unit(f, x, w, amax / (top * ratio), index, minus);
    if (fit.sum_xv <= 0 || fit.sum_v2 <= 0) continue;
    const float error = sum_wx2 - fit.sum_xv * fit.sum_xv / fit.sum_v2;
    if (error < best_error) {
      best_error = error;
      best_scale = fit.sum_xv / fit.sum_v2;
    }
  }
  return best_scale;
}

// The choices for one super-block: the unit scales that fit best, then kIq1SuperTries fp16
// super-block scales, each with the best odd ls near every unit's scale; the least total error
// wins.
void choose_iq1(const Iq1Format& f, const float* x, const float* w, Iq1Choice& out) {
  out = Iq1Choice{};
  const int n_units = kQK / f.unit_values, groups_per_unit = f.unit_values / 8;
  float scale[16], max_scale = 0;
  for (int u = 0; u < n_units; ++u) {
    scale[u] = best_unit_scale(f, x + f.unit_values * u, w + f.unit_values * u);
    max_scale = std::max(max_scale, scale[u]);
  }
  if (max_scale == 0) return;
  float best_total = std::numeric_limits<float>::infinity();
  for (int i = 0; i < kIq1SuperTries; ++i) {
    const float factor = 1 + kIq1SuperStep * static_cast<float>(i - kIq1SuperTries / 2);
    const uint16_t d_bits = fp32_to_fp16(max_scale / 15 * factor);
    const float d = fp16_to_fp32(d_bits);
    if (!(d > 0) || !std::isfinite(d)) continue;
    Iq1Choice c;
    float total = 0;
    for (int u = 0; u < n_units && total < best_total; ++u) {
      const float* xu = x + f.unit_values * u;
      const float* wu = w + f.unit_values * u;
      const int rounded = 2 * clamp_int(nearest_int((scale[u] / d - 1) / 2), 0, 7) + 1;
      const int first = std::max(1, rounded - 2 * kIq1LsReach);
      float best = std::numeric_limits<float>::infinity();
      for (int ls = first; ls <= std::min(15, rounded + 2 * kIq1LsReach); ls += 2) {
        uint16_t index[4];
        bool minus[4];
        const Iq1Fit fit = fit_iq1_unit(f, xu, wu, d * static_cast<float>(ls), index, minus);
        if (fit.error < best || ls == first) {
          best = fit.error;
          for (int h = 0; h < f.unit_values / 16; ++h) c.ls[f.unit_values / 16 * u + h] = ls;
          std::copy(index, index + groups_per_unit, c.index + groups_per_unit * u);
          std::copy(minus, minus + groups_per_unit, c.minus + groups_per_unit * u);
        }
      }
      total += best;
    }
    if (total < best_total) {
      best_total = total;
      c.d = d_bits;
      out = c;
    }
  }
}

void pack_iq1_s(const Iq1Choice& c, block_iq1_s& b) {
  b.d = c.d;
  for (int k = 0; k < 8; ++k) {
    unsigned h = static_cast<unsigned>((c.ls[2 * k] - 1) / 2) << 12 | (c.minus[4 * k] ? 0x8000u : 0u);
    for (int l = 0; l < 4; ++l) {
      b.qs[4 * k + l] = static_cast<uint8_t>(c.index[4 * k + l]);
      h |= static_cast<unsigned>(c.index[4 * k + l] >> 8) << (3 * l);
    }
    b.qh[k] = static_cast<uint16_t>(h);
  }
}

void pack_iq1_m(const Iq1Choice& c, block_iq1_m& b) {
  uint16_t words[4] = {};
  for (int k = 0; k < 8; ++k) {
    const auto pair = static_cast<unsigned>((c.ls[2 * k] - 1) / 2 | (c.ls[2 * k + 1] - 1) / 2 << 3);
    words[k / 2] = static_cast<uint16_t>(words[k / 2] | pair << (6 * (k % 2)));
    for (int l = 0; l < 4; ++l) {
      const int g = 4 * k + l;
      b.qs[g] = static_cast<uint8_t>(c.index[g]);
      const unsigned nibble = static_cast<unsigned>(c.index[g] >> 8) | (c.minus[g] ? 8u : 0u);
      b.qh[2 * k + l / 2] = static_cast<uint8_t>(b.qh[2 * k + l / 2] | nibble << (4 * (l % 2)));
    }
  }
  for (int i = 0; i < 4; ++i) words[i] = static_cast<uint16_t>(words[i] | ((c.d >> (4 * i)) & 0xF) << 12);
  std::memcpy(b.scales, words, sizeof(words));
}

}  // namespace

void quantize_iq1_s(const float* x, void* dst, int64_t n, const float* importance) {
  quantize_codebook_blocks<block_iq1_s>({32, false, kIq1SDelta}, choose_iq1, pack_iq1_s, x, dst, n, importance);
}

void quantize_iq1_m(const float* x, void* dst, int64_t n, const float* importance) {
  quantize_codebook_blocks<block_iq1_m>({16, true, kIq1MDelta}, choose_iq1, pack_iq1_m, x, dst, n, importance);
}

void dequantize_iq1_s(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_iq1_s*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    Iq1Block b;
    decode_iq1_s(x[i], b);
    dequantize_iq1(b, kIq1SDelta, dst + 256 * i);
  }
}

void dequantize_iq1_m(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const block_iq1_m*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    Iq1Block b;
    decode_iq1_m(x[i], b);
    dequantize_iq1(b, kIq1MDelta, dst + 256 * i);
  }
}

float dot_iq1_s_q8_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_iq1_s*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    Iq1Block b;
    decode_iq1_s(x[i], b);
    // The delta is shared by a whole 32-value sub-block: its sum of activations is two bsums.
    int32_t delta_sum = 0;
    for (int k = 0; k < 8; ++k) delta_sum += b.ls[2 * k] * b.delta[4 * k] * (y[i].bsums[2 * k] + y[i].bsums[2 * k + 1]);
    const float sums = static_cast<float>(grid_sum(b, y[i].qs)) + kIq1SDelta * static_cast<float>(delta_sum);
    sum = std::fma(b.d * y[i].d, sums, sum);
  }
  return sum;
}

float dot_iq1_m_q8_K(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_iq1_m*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    Iq1Block b;
    decode_iq1_m(x[i], b);
    int32_t delta_sum = 0;  // per 8 values, finer than Q8_K's bsums: summed from the activations
    for (int g = 0; g < 32; ++g) {
      int32_t s = 0;
      for (int j = 8 * g; j < 8 * g + 8; ++j) s += y[i].qs[j];
      delta_sum += b.ls[g / 2] * b.delta[g] * s;
    }
    const float sums = static_cast<float>(grid_sum(b, y[i].qs)) + kIq1MDelta * static_cast<float>(delta_sum);
    sum = std::fma(b.d * y[i].d, sums, sum);
  }
  return sum;
}

}  // namespace fathom::quant::detail
